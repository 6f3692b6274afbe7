//! Path computation: the routing table a router derives from its link-state
//! and mobile address databases.
//!
//! The graph holds a link only if both ends report it (each end's record
//! lists the other), with the larger of the two ends' costs. Costs are
//! symmetric, so one shortest-path tree rooted at each router `d` gives
//! every router's next hop towards `d`: its parent in that tree. Among
//! equal-cost parents the one with the smallest router id wins, so every
//! router with the same databases computes the same trees, whatever order
//! Dijkstra visits nodes in. That common view is what makes
//! [`RoutingTable::is_next_hop_of`] and [`RoutingTable::multicast_children`]
//! loop-free.

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;

use super::RouterId;
use super::linkstate::LinkStateDb;
use super::mobile::MobileDb;

/// No parent: the root of a tree.
const ROOT: u32 = u32::MAX;

/// A router's forwarding view of the mesh: the reachable routers, the next
/// hop and cost to each, every router's next hop towards every other (for
/// loop-free forwarding checks), and which reachable remote routers have
/// consumers for which address. Immutable; the routing state machine makes
/// a new one on every change (see [`Routing::poll_table`](super::Routing::poll_table)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    me: RouterId,
    /// Reachable routers (this one included), sorted by id.
    routers: Vec<RouterId>,
    index: HashMap<RouterId, u32>,
    /// `cost[i]`: the path cost from this router to `routers[i]`.
    cost: Vec<u64>,
    /// `parent[d][v]`: the next hop of `routers[v]` towards `routers[d]`
    /// (`ROOT` for `v == d`).
    parent: Vec<Vec<u32>>,
    /// Per address, the reachable remote routers with consumers, sorted.
    addresses: HashMap<Arc<str>, Vec<RouterId>>,
}

impl RoutingTable {
    /// The table of a router that knows of no other.
    pub fn standalone(me: RouterId) -> Self {
        let mut index = HashMap::new();
        index.insert(me.clone(), 0);
        Self {
            routers: vec![me.clone()],
            me,
            index,
            cost: vec![0],
            parent: vec![vec![ROOT]],
            addresses: HashMap::new(),
        }
    }

    /// Computes the table of router `me` from its databases.
    pub(crate) fn compute(me: &RouterId, ls: &LinkStateDb, mobile: &MobileDb) -> Self {
        // The graph of every known router and of the links both ends report.
        let mut graph: UnGraph<RouterId, u64> = UnGraph::default();
        let mut nodes: HashMap<&RouterId, NodeIndex> = HashMap::new();
        for (id, _) in ls.iter() {
            nodes.insert(id, graph.add_node(id.clone()));
        }
        if !nodes.contains_key(me) {
            return Self::standalone(me.clone());
        }
        for (a, record) in ls.iter() {
            for b in record.neighbors.keys() {
                if a < b
                    && let (Some(cost), Some(&nb)) = (ls.link_cost(a, b), nodes.get(b))
                {
                    graph.add_edge(nodes[a], nb, u64::from(cost));
                }
            }
        }

        let from_me = petgraph::algo::dijkstra(&graph, nodes[me], None, |e| *e.weight());
        let mut routers: Vec<RouterId> = from_me.keys().map(|n| graph[*n].clone()).collect();
        routers.sort();
        let index: HashMap<RouterId, u32> = routers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u32))
            .collect();
        let cost = routers.iter().map(|r| from_me[&nodes[r]]).collect();

        let parent = routers
            .iter()
            .map(|root| {
                let dist = petgraph::algo::dijkstra(&graph, nodes[root], None, |e| *e.weight());
                routers
                    .iter()
                    .map(|v| {
                        if v == root {
                            return ROOT;
                        }
                        let nv = nodes[v];
                        let dv = dist[&nv];
                        // The smallest id among the neighbours on a shortest
                        // path. Costs are at least 1, so parents are strictly
                        // closer to the root: the parents form a tree.
                        graph
                            .edges(nv)
                            .filter_map(|e| {
                                let w = if e.source() == nv {
                                    e.target()
                                } else {
                                    e.source()
                                };
                                (dist.get(&w)? + e.weight() == dv).then(|| &graph[w])
                            })
                            .min()
                            .map_or(ROOT, |w| index[w])
                    })
                    .collect()
            })
            .collect();

        let mut addresses: HashMap<Arc<str>, Vec<RouterId>> = HashMap::new();
        for (id, record) in mobile.iter() {
            if id == me || !index.contains_key(id) {
                continue;
            }
            for a in &record.addresses {
                addresses.entry(a.clone()).or_default().push(id.clone());
            }
        }
        // mobile.iter() is in id order, so each list is sorted already.

        Self {
            me: me.clone(),
            routers,
            index,
            cost,
            parent,
            addresses,
        }
    }

    /// This router.
    pub fn me(&self) -> &RouterId {
        &self.me
    }

    /// The neighbour to send to for router `to`; `None` if `to` is
    /// unreachable or this router.
    pub fn next_hop(&self, to: &RouterId) -> Option<&RouterId> {
        let d = *self.index.get(to)? as usize;
        let me = self.index[&self.me] as usize;
        self.router(self.parent[d][me])
    }

    /// The path cost to router `to` (0 for this router); `None` if `to` is
    /// unreachable. Saturates at `u32::MAX`.
    pub fn cost(&self, to: &RouterId) -> Option<u32> {
        let i = *self.index.get(to)? as usize;
        Some(u32::try_from(self.cost[i]).unwrap_or(u32::MAX))
    }

    /// Whether router `id` is reachable (this router is).
    pub fn is_reachable(&self, id: &RouterId) -> bool {
        self.index.contains_key(id)
    }

    /// The reachable routers, this one included, sorted by id.
    pub fn routers(&self) -> impl Iterator<Item = &RouterId> {
        self.routers.iter()
    }

    /// The reachable remote routers that have consumers for `address`,
    /// sorted by id. This router's own consumers are not listed.
    pub fn routers_for(&self, address: &str) -> impl Iterator<Item = &RouterId> {
        self.addresses.get(address).into_iter().flatten()
    }

    /// Every address with consumers at reachable remote routers, with
    /// those routers (sorted by id), in no particular order.
    pub fn addresses(&self) -> impl Iterator<Item = (&str, &[RouterId])> {
        self.addresses.iter().map(|(a, r)| (&**a, r.as_slice()))
    }

    /// Loop-free anycast: whether a delivery that reached this router from
    /// neighbour `from`, bound for router `dest`, may go on towards `dest`,
    /// i.e. whether this router is `from`'s next hop towards `dest`. Every
    /// router computes the same next hops (same databases, deterministic
    /// tie-break), so a delivery that follows this rule follows one
    /// shortest path and never loops. `false` if either is unreachable.
    pub fn is_next_hop_of(&self, from: &RouterId, dest: &RouterId) -> bool {
        let (Some(&f), Some(&d)) = (self.index.get(from), self.index.get(dest)) else {
            return false;
        };
        self.parent[d as usize][f as usize] == self.index[&self.me]
    }

    /// Multicast valid origins: the neighbours this router forwards a
    /// message that entered the mesh at `origin` to, i.e. its children in
    /// `origin`'s shortest-path tree. A message from `origin` should only be
    /// accepted from this router's parent in that tree
    /// (`next_hop(origin)`), or locally if `origin` is this router. Empty if
    /// `origin` is unreachable.
    pub fn multicast_children(&self, origin: &RouterId) -> Vec<RouterId> {
        let Some(&o) = self.index.get(origin) else {
            return Vec::new();
        };
        let me = self.index[&self.me];
        self.parent[o as usize]
            .iter()
            .enumerate()
            .filter(|&(_, &p)| p == me)
            .map(|(v, _)| self.routers[v].clone())
            .collect()
    }

    fn router(&self, i: u32) -> Option<&RouterId> {
        self.routers.get(i as usize)
    }
}
