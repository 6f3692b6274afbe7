//! Path computation: the routing table a router derives from its link-state
//! and mobile address databases.
//!
//! The graph holds a link only if both ends report it (each end's record
//! lists the other), with the larger of the two ends' costs (at least 1).
//! Costs are symmetric, so the shortest-path tree rooted at a router `d`
//! gives every router's next hop towards `d`: its parent in that tree.
//! Among equal-cost parents the one with the smallest router id wins, so
//! every router with the same databases computes the same trees, whatever
//! order Dijkstra visits nodes in. That common view is what makes
//! [`RoutingTable::is_next_hop_of`] (and [`RoutingTable::via`], which the
//! data path asks) and [`RoutingTable::multicast_children`] loop-free, and
//! [`RoutingTable::tree_stamp`] equal wherever a tree is seen alike.
//!
//! The graph is petgraph's compressed rows (`Csr`) and Dijkstra keeps its
//! distances in a vector: a table of a 1,000-router mesh is built without
//! a hash map per search or an allocation per node.
//!
//! Cost: building a table runs Dijkstra once, from this router, which gives
//! its costs, its next hops and its own tree. The tree rooted at another
//! router, needed only by those questions, is computed the first time it is
//! asked for and kept in the table (a `OnceLock` per router: lock-free once
//! computed); so is its stamp.

// A fast seeded hasher: the data path looks routers and addresses up
// here for every delivery.
use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::sync::{Arc, OnceLock};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::Directed;
use petgraph::csr::Csr;

use super::RouterId;
use super::linkstate::{Claims, LinkStateDb};
use super::mobile::MobileDb;

/// No parent: the root of a tree, or no such router.
const NONE: u32 = u32::MAX;

/// A router's forwarding view of the mesh: the reachable routers, the next
/// hop and cost to each, every router's next hop towards every other (for
/// loop-free forwarding checks), and which reachable remote routers have
/// consumers for which address. Immutable and cheap to share; the routing
/// state machine makes a new one on every change (see
/// [`Routing::poll_table`](super::Routing::poll_table)).
#[derive(Clone)]
pub struct RoutingTable {
    me: RouterId,
    /// This router's index in `routers`.
    me_index: u32,
    /// Reachable routers (this one included), sorted by id: index order is
    /// id order.
    routers: Vec<RouterId>,
    index: HashMap<RouterId, u32>,
    /// The reachable part of the graph; node `i` is `routers[i]`.
    graph: Graph,
    /// Its links as (a, b, cost) with a < b, sorted: what equality compares.
    links: Vec<(u32, u32, u64)>,
    /// `cost[i]`: the path cost from this router to `routers[i]`.
    cost: Vec<u64>,
    /// `next_hop[i]`: this router's next hop towards `routers[i]`.
    next_hop: Vec<u32>,
    /// `trees[d][v]`: the next hop of `routers[v]` towards `routers[d]`,
    /// computed on first use.
    trees: Vec<OnceLock<Vec<u32>>>,
    /// `stamps[d]`: the stamp of `routers[d]`'s tree, computed on first use.
    stamps: Vec<OnceLock<u64>>,
    /// Per address, the reachable remote routers with consumers, by
    /// index, sorted (index order is id order).
    addresses: HashMap<Arc<str>, Vec<u32>>,
}

impl PartialEq for RoutingTable {
    /// Two tables are equal if they are of the same router, over the same
    /// graph, with the same addresses: everything else derives from those.
    fn eq(&self, other: &Self) -> bool {
        self.me == other.me
            && self.routers == other.routers
            && self.links == other.links
            && self.addresses == other.addresses
    }
}

impl Eq for RoutingTable {}

impl fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hops: Vec<_> = self
            .routers
            .iter()
            .zip(&self.cost)
            .zip(&self.next_hop)
            .map(|((r, c), h)| (r, c, self.routers.get(*h as usize)))
            .collect();
        f.debug_struct("RoutingTable")
            .field("me", &self.me)
            .field("routes", &hops)
            .field(
                "addresses",
                &self
                    .addresses()
                    .map(|(a, r)| (a, r.collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RoutingTable {
    /// The table of a router that knows of no other.
    pub fn standalone(me: RouterId) -> Self {
        let graph = Graph::new(1, &[]);
        Self {
            me_index: 0,
            routers: vec![me.clone()],
            index: [(me.clone(), 0)].into_iter().collect(),
            me,
            graph,
            links: Vec::new(),
            cost: vec![0],
            next_hop: vec![NONE],
            trees: vec![OnceLock::from(vec![NONE])],
            stamps: vec![OnceLock::new()],
            addresses: HashMap::new(),
        }
    }

    /// Computes the table of router `me` from its databases.
    pub(crate) fn compute(me: &RouterId, ls: &LinkStateDb, mobile: &MobileDb) -> Self {
        // Every known router by position (id order), and the links both
        // ends report, at the larger of the two costs (at least 1).
        let all: Vec<Claims<'_>> = ls.claims().collect();
        // Slot to position; positions follow id order, as do each record's
        // claims, so each record's claims come out sorted by position.
        let mut pos = vec![NONE; ls.slot_count()];
        for (i, (_, slot, _)) in all.iter().enumerate() {
            pos[*slot as usize] = i as u32;
        }
        let Some(me_all) = ls
            .slot_of(me)
            .map(|slot| pos[slot as usize])
            .filter(|&i| i != NONE)
        else {
            return Self::standalone(me.clone());
        };
        // Each record's claims: record `a`'s are
        // `claims[claim_start[a]..claim_start[a + 1]]`.
        let mut claim_start: Vec<u32> = Vec::with_capacity(all.len() + 1);
        let mut claims: Vec<(u32, u32)> = Vec::new();
        for (_, _, theirs) in &all {
            claim_start.push(claims.len() as u32);
            claims.extend(theirs.iter().filter_map(|&(slot, c)| {
                let j = pos[slot as usize];
                (j != NONE).then_some((j, c))
            }));
        }
        claim_start.push(claims.len() as u32);
        let claims_of = |a: usize| &claims[claim_start[a] as usize..claim_start[a + 1] as usize];
        // The links both ends claim, (a, b, cost) with a < b, in order.
        let mut both: Vec<(u32, u32, u64)> = Vec::new();
        for a in 0..all.len() {
            for &(b, ca) in claims_of(a).iter().filter(|(b, _)| a < *b as usize) {
                let theirs = claims_of(b as usize);
                if let Ok(k) = theirs.binary_search_by_key(&(a as u32), |&(j, _)| j) {
                    let cost = u64::from(ca.max(theirs[k].1).max(1));
                    both.push((a as u32, b, cost));
                }
            }
        }
        let whole = Graph::new(all.len(), &both);

        // The routers reachable from us, in id order, renumbered.
        let mut reachable = vec![false; all.len()];
        reachable[me_all as usize] = true;
        let mut stack = vec![me_all];
        while let Some(v) = stack.pop() {
            for (w, _) in whole.neighbors(v as usize) {
                if !std::mem::replace(&mut reachable[w as usize], true) {
                    stack.push(w);
                }
            }
        }
        let mut renumber = vec![NONE; all.len()];
        let mut routers = Vec::new();
        for (i, (id, _, _)) in all.iter().enumerate() {
            if reachable[i] {
                renumber[i] = routers.len() as u32;
                routers.push((*id).clone());
            }
        }
        let index: HashMap<RouterId, u32> = routers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u32))
            .collect();
        // Renumbering keeps the order, so the links stay sorted.
        let links: Vec<(u32, u32, u64)> = both
            .iter()
            .filter(|(a, _, _)| reachable[*a as usize])
            .map(|&(a, b, cost)| (renumber[a as usize], renumber[b as usize], cost))
            .collect();
        debug_assert!(links.is_sorted());
        let graph = Graph::new(routers.len(), &links);

        // Our next hop towards d: the smallest-id neighbour w on a shortest
        // path (cost(me, w) + dist(w, d) == dist(me, d)), i.e. our parent
        // in d's tree. One Dijkstra gives it: in order of distance, the
        // smallest first hop of d is the smallest over d's predecessors p
        // on shortest paths of p's smallest first hop (d itself if p is us).
        // A predecessor is strictly closer (costs are at least 1), so it
        // comes first in the order Dijkstra settles nodes in.
        let me_i = index[me] as usize;
        let (cost, order) = graph.dijkstra(me_i);
        let mut next_hop = vec![NONE; routers.len()];
        for v in order.into_iter().map(|v| v as usize).filter(|&v| v != me_i) {
            next_hop[v] = graph
                .neighbors(v)
                .filter(|&(p, c)| cost[p as usize] + c == cost[v])
                .map(|(p, _)| {
                    if p as usize == me_i {
                        v as u32
                    } else {
                        next_hop[p as usize]
                    }
                })
                .min()
                .unwrap_or(NONE);
        }

        let mut addresses: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (id, record) in mobile.iter() {
            let Some(&i) = index.get(id).filter(|_| id != me) else {
                continue;
            };
            for a in &record.addresses {
                addresses.entry(a.clone()).or_default().push(i);
            }
        }
        // mobile.iter() is in id order, so each list is sorted already.

        // Our own tree comes free from our distances.
        let trees: Vec<OnceLock<Vec<u32>>> = routers.iter().map(|_| OnceLock::new()).collect();
        let _ = trees[me_i].set(parents(&graph, me_i, &cost));

        Self {
            me: me.clone(),
            me_index: me_i as u32,
            stamps: routers.iter().map(|_| OnceLock::new()).collect(),
            trees,
            routers,
            index,
            graph,
            links,
            cost,
            next_hop,
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
        self.routers.get(self.next_hop[d] as usize)
    }

    /// The path cost to router `to` (0 for this router); `None` if `to` is
    /// unreachable. Saturates at `u32::MAX`.
    pub fn cost(&self, to: &RouterId) -> Option<u32> {
        let i = *self.index.get(to)? as usize;
        Some(u32::try_from(self.cost[i]).unwrap_or(u32::MAX))
    }

    /// The neighbours of reachable router `id` in the graph, with the
    /// link costs (none if `id` is unreachable).
    pub fn neighbours_of(&self, id: &RouterId) -> impl Iterator<Item = (&RouterId, u64)> {
        let i = self.index.get(id).copied();
        self.links.iter().filter_map(move |&(a, b, cost)| {
            let i = i?;
            let other = if a == i {
                b
            } else if b == i {
                a
            } else {
                return None;
            };
            Some((&self.routers[other as usize], cost))
        })
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
        self.addresses
            .get(address)
            .into_iter()
            .flatten()
            .map(|&i| &self.routers[i as usize])
    }

    /// Every address with consumers at reachable remote routers, with
    /// those routers (sorted by id), in no particular order.
    pub fn addresses(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &RouterId>)> {
        self.addresses.iter().map(|(a, r)| {
            let routers = r.iter().map(|&i| &self.routers[i as usize]);
            (&**a, routers)
        })
    }

    /// Anycast through neighbour `to`: the path cost to the nearest router
    /// with consumers for `address` that this router reaches through `to`
    /// (its next hop towards it) — and, for a delivery that came from
    /// neighbour `from`, only those towards which this router is `from`'s
    /// next hop (loop-free, see [`is_next_hop_of`](Self::is_next_hop_of)).
    /// `None` if there is none. The data path asks this for every delivery
    /// and every consumer link to a neighbour: it looks up three keys, then
    /// works on indices. Saturates at `u32::MAX`.
    pub fn via(&self, address: &str, from: Option<&RouterId>, to: &RouterId) -> Option<u32> {
        let dests = self.addresses.get(address)?;
        let to = *self.index.get(to)?;
        let from = match from {
            Some(p) => Some(*self.index.get(p)?),
            None => None,
        };
        let me = self.me_index;
        dests
            .iter()
            .map(|&d| d as usize)
            .filter(|&d| self.next_hop[d] == to)
            .filter(|&d| from.is_none_or(|f| self.tree(d as u32)[f as usize] == me))
            .map(|d| u32::try_from(self.cost[d]).unwrap_or(u32::MAX))
            .min()
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
        self.tree(d)[f as usize] == self.me_index
    }

    /// Multicast valid origins: the neighbours this router forwards a
    /// message that entered the mesh at `origin` to, i.e. its children in
    /// `origin`'s shortest-path tree, sorted by id. A message from `origin`
    /// should only be accepted from this router's parent in that tree
    /// ([`next_hop`](Self::next_hop)`(origin)`), or locally if `origin` is
    /// this router. Empty if `origin` is unreachable.
    pub fn multicast_children(&self, origin: &RouterId) -> Vec<RouterId> {
        let Some(&o) = self.index.get(origin) else {
            return Vec::new();
        };
        let me = self.me_index;
        let tree = self.tree(o);
        let mut children: Vec<u32> = self
            .graph
            .neighbors(me as usize)
            .map(|(w, _)| w)
            .filter(|&w| tree[w as usize] == me)
            .collect();
        children.sort_unstable();
        children
            .into_iter()
            .map(|w| self.routers[w as usize].clone())
            .collect()
    }

    /// The children of this router in `origin`'s shortest-path tree whose
    /// subtree holds a router with consumers for `address`: where a
    /// multicast message that entered the mesh at `origin` goes on from
    /// here, sorted by id. Empty if `origin` is unreachable.
    pub fn multicast_next(&self, origin: &RouterId, address: &str) -> Vec<RouterId> {
        let Some(&o) = self.index.get(origin) else {
            return Vec::new();
        };
        let me = self.me_index;
        let tree = self.tree(o);
        let mut next: Vec<u32> = Vec::new();
        for d in self.routers_for(address) {
            // Walk up from the consumer's router towards the origin; if the
            // walk passes through this router, the node below it is a child
            // leading to that consumer.
            let mut v = self.index[d];
            while v != o && v != NONE {
                let parent = tree[v as usize];
                if parent == me {
                    next.push(v);
                    break;
                }
                v = parent;
            }
        }
        next.sort_unstable();
        next.dedup();
        next.into_iter()
            .map(|w| self.routers[w as usize].clone())
            .collect()
    }

    /// Multicast tree versions: a digest of `origin`'s shortest-path tree
    /// (every reachable router and its parent in the tree, by id), so that
    /// two routers with the same view of that tree compute the same stamp,
    /// whatever else they know. The origin writes its stamp into each
    /// multicast message it sends into the mesh, and a router forwards a
    /// copy only if its own stamp for the tree is the same: every router a
    /// message passes then forwards it along one and the same tree, so no
    /// consumer gets it twice, even while the tree changes under it. `None`
    /// if `origin` is unreachable.
    pub fn tree_stamp(&self, origin: &RouterId) -> Option<u64> {
        let o = *self.index.get(origin)?;
        Some(*self.stamps[o as usize].get_or_init(|| {
            let tree = self.tree(o);
            self.routers
                .iter()
                .zip(tree)
                .fold(FNV_OFFSET, |h, (r, &parent)| {
                    let parent = self.routers.get(parent as usize).map_or("", |p| p.as_str());
                    fnv(fnv(h, r.as_str()), parent)
                })
        }))
    }

    /// The shortest-path tree rooted at `routers[root]`: each router's
    /// parent (its next hop towards the root).
    fn tree(&self, root: u32) -> &[u32] {
        self.trees[root as usize].get_or_init(|| {
            let (dist, _) = self.graph.dijkstra(root as usize);
            parents(&self.graph, root as usize, &dist)
        })
    }
}

/// The shortest-path tree rooted at `root`, given the distances from it:
/// each node's parent is the smallest-index (smallest-id) neighbour on a
/// shortest path. Costs are at least 1, so a parent is strictly closer to
/// the root: the parents form a tree.
fn parents(graph: &Graph, root: usize, dist: &[u64]) -> Vec<u32> {
    (0..graph.node_count())
        .map(|v| {
            if v == root {
                return NONE;
            }
            graph
                .neighbors(v)
                .filter(|&(w, c)| dist[w as usize] + c == dist[v])
                .map(|(w, _)| w)
                .min()
                .unwrap_or(NONE)
        })
        .collect()
}

/// FNV-1a (64 bits): a digest that is the same in every build of every
/// router, unlike `std`'s hashers, which may change between releases.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `text`, length first (ids may hold any character), into `h`.
fn fnv(h: u64, text: &str) -> u64 {
    (text.len() as u32)
        .to_le_bytes()
        .iter()
        .chain(text.as_bytes())
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// An undirected graph in compressed rows (petgraph's `Csr`, each link
/// stored in both directions): node `v`'s neighbours and link costs are
/// two slices, built in one pass over the sorted links — no per-node
/// allocation, and Dijkstra keeps its distances in a vector rather than a
/// hash map.
#[derive(Clone, Debug)]
struct Graph {
    csr: Csr<(), u64, Directed, u32>,
    /// Nodes, some perhaps without links (the `Csr` knows those up to the
    /// last with a link).
    n: usize,
}

impl Graph {
    /// `n` nodes joined by `links` (a, b, cost).
    fn new(n: usize, links: &[(u32, u32, u64)]) -> Self {
        let mut both: Vec<(u32, u32, u64)> = links
            .iter()
            .flat_map(|&(a, b, cost)| [(a, b, cost), (b, a, cost)])
            .collect();
        both.sort_unstable();
        let csr = Csr::from_sorted_edges(&both).expect("sorted just above");
        Self { csr, n }
    }

    fn node_count(&self) -> usize {
        self.n
    }

    /// The neighbours of node `v` with the link costs.
    fn neighbors(&self, v: usize) -> impl Iterator<Item = (u32, u64)> + '_ {
        let (to, cost): (&[u32], &[u64]) = if v < self.csr.node_count() {
            (
                self.csr.neighbors_slice(v as u32),
                self.csr.edges_slice(v as u32),
            )
        } else {
            (&[], &[])
        };
        to.iter().copied().zip(cost.iter().copied())
    }

    /// Dijkstra from node `from`: the distance to every node, by index
    /// (every node of the graph is reachable), and the nodes in the order
    /// they were settled (by distance).
    fn dijkstra(&self, from: usize) -> (Vec<u64>, Vec<u32>) {
        let n = self.node_count();
        let mut dist = vec![u64::MAX / 4; n];
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        let mut heap = BinaryHeap::new();
        dist[from] = 0;
        heap.push(Reverse((0u64, from as u32)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if std::mem::replace(&mut done[v as usize], true) {
                continue;
            }
            order.push(v);
            for (w, c) in self.neighbors(v as usize) {
                let via = d + c;
                if via < dist[w as usize] {
                    dist[w as usize] = via;
                    heap.push(Reverse((via, w)));
                }
            }
        }
        (dist, order)
    }
}
