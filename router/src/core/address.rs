//! One address: its consumers and producers on this router, and the credit
//! rule that ties them together.
//!
//! Credit, end to end on one node: the credit this router grants to the
//! producers of an address never exceeds what its consumers granted the
//! router. For anycast the budget is the sum of the consumers' credit; for
//! multicast it is the smallest consumer credit (the slowest consumer
//! drives). Each producer is topped up to at most `window` from what is
//! left of the budget, so two producers are never promised the same
//! consumer credit. With no consumer the budget is 0. The lock is per
//! address: producers and consumers of different addresses never contend.
//!
//! In a mesh, a consumer may be a link to a neighbour router (which grants
//! credit for its own consumers further on), and a producer may be a link
//! from one. A delivery from neighbour P may only go on to neighbour N when
//! this router lies on P's shortest path to a router with consumers that N
//! leads to (see [`serves`]): deliveries follow shortest paths and never
//! loop, and a producer's budget counts only the consumers it may use.
//!
//! Multicast follows the valid-origin rule instead: a message that entered
//! the mesh at router O goes along O's shortest-path tree only, and each
//! tree has its own data links (a link's `tree` is its O). Credit on a
//! tree's links depends only on links further down the same tree, so the
//! credit of a mesh with cycles never waits on itself.

use std::sync::Mutex;

use ferry_proto::engine::LinkId;

use super::message::{ConnHandle, ConnId, ToConn};
use crate::config::Distribution;
use crate::routing::{RouterId, RoutingTable};

/// Which side a link leads to: a client of this router, or a neighbour
/// router (for a consumer link: where deliveries go; for a producer link:
/// where they come from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A client connected to this router.
    Local,
    /// A neighbour router.
    Neighbor(RouterId),
}

#[derive(Debug)]
struct Consumer {
    conn: ConnHandle,
    link: LinkId,
    to: Hop,
    /// Multicast data link: the router whose tree it belongs to.
    tree: Option<RouterId>,
    /// Deliveries the router may still route to it.
    credit: u32,
}

#[derive(Debug)]
struct Producer {
    conn: ConnHandle,
    link: LinkId,
    from: Hop,
    /// Multicast data link: the router where its deliveries entered the
    /// mesh (`None`: this one).
    tree: Option<RouterId>,
    /// Credit the producer holds (mirrors its link's credit).
    granted: u32,
}

/// Whether a delivery of `address` that came `from` may go on `to`.
pub fn serves(table: &RoutingTable, address: &str, from: &Hop, to: &Hop) -> bool {
    let Hop::Neighbor(n) = to else {
        return true;
    };
    if matches!(from, Hop::Neighbor(p) if p == n) {
        return false;
    }
    table.routers_for(address).any(|d| {
        table.next_hop(d) == Some(n)
            && match from {
                Hop::Local => true,
                Hop::Neighbor(p) => table.is_next_hop_of(p, d),
            }
    })
}

/// Multicast: whether a delivery that entered the mesh at `origin` and
/// came `from` may go to consumer `c`: every local consumer, and the data
/// links of `origin`'s tree. A delivery is taken only from this router's
/// parent in that tree (its next hop towards `origin`): anything else is a
/// moment of disagreement between routing tables, and forwarding it could
/// make duplicates.
fn serves_tree(table: &RoutingTable, origin: &RouterId, from: &Hop, c: &Consumer) -> bool {
    if let Hop::Neighbor(p) = from
        && table.next_hop(origin) != Some(p)
    {
        return false;
    }
    match &c.to {
        Hop::Local => true,
        Hop::Neighbor(n) => c.tree.as_ref() == Some(origin) && from != &c.to && n != origin,
    }
}

/// The path cost to the nearest consumer a link leads to (0 for local).
fn cost(table: &RoutingTable, address: &str, to: &Hop) -> u32 {
    match to {
        Hop::Local => 0,
        Hop::Neighbor(n) => table
            .routers_for(address)
            .filter(|d| table.next_hop(d) == Some(n))
            .filter_map(|d| table.cost(d))
            .min()
            .unwrap_or(u32::MAX),
    }
}

#[derive(Debug, Default)]
struct State {
    consumers: Vec<Consumer>,
    producers: Vec<Producer>,
    /// Round-robin start for ties between consumers.
    next: usize,
}

/// Where one delivery goes: consumer links, their connections, and
/// whether each leads to a neighbour router.
pub type Targets = Vec<(ConnHandle, LinkId, bool)>;

/// An address with its links on this router.
#[derive(Debug)]
pub struct Address {
    name: String,
    distribution: Distribution,
    state: Mutex<State>,
}

impl Address {
    /// A new address with no links.
    pub fn new(name: String, distribution: Distribution) -> Self {
        Self {
            name,
            distribution,
            state: Mutex::default(),
        }
    }

    /// The address.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How deliveries are distributed.
    pub fn distribution(&self) -> Distribution {
        self.distribution
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("address lock poisoned")
    }

    /// Whether no link uses the address any more.
    pub fn is_unused(&self) -> bool {
        let s = self.lock();
        s.consumers.is_empty() && s.producers.is_empty()
    }

    /// Whether the address has a consumer.
    pub fn has_consumers(&self) -> bool {
        !self.lock().consumers.is_empty()
    }

    /// Adds a consumer with no credit yet (`tree`: for a multicast data
    /// link, the router whose tree it belongs to). Returns whether it is the
    /// first local consumer (the address now has consumers on this router).
    pub fn add_consumer(
        &self,
        conn: ConnHandle,
        link: LinkId,
        to: Hop,
        tree: Option<RouterId>,
    ) -> bool {
        let mut s = self.lock();
        let first_local = to == Hop::Local && !s.consumers.iter().any(|c| c.to == Hop::Local);
        s.consumers.push(Consumer {
            conn,
            link,
            to,
            tree,
            credit: 0,
        });
        first_local
    }

    /// Removes a consumer; producers are told to recompute their credit.
    /// Returns whether it was the last local consumer.
    pub fn remove_consumer(&self, conn: ConnId, link: LinkId) -> bool {
        let mut s = self.lock();
        let before = s.consumers.iter().any(|c| c.to == Hop::Local);
        s.consumers
            .retain(|c| !(c.conn.id == conn && c.link == link));
        notify_producers(&s);
        before && !s.consumers.iter().any(|c| c.to == Hop::Local)
    }

    /// Tells every producer to recompute its credit (the paths changed).
    pub fn recredit_producers(&self) {
        notify_producers(&self.lock());
    }

    /// Changes a consumer's credit by `delta` (its link's flow changed);
    /// producers are told when there is more to hand out.
    pub fn adjust_consumer_credit(&self, conn: ConnId, link: LinkId, delta: i64) {
        let mut s = self.lock();
        if let Some(c) = s
            .consumers
            .iter_mut()
            .find(|c| c.conn.id == conn && c.link == link)
        {
            c.credit = (c.credit as i64 + delta).clamp(0, u32::MAX as i64) as u32;
        }
        if delta != 0 {
            notify_producers(&s);
        }
    }

    /// Adds a producer holding no credit (`tree`: for a multicast data link
    /// from a neighbour, the router where its deliveries entered the mesh).
    pub fn add_producer(&self, conn: ConnHandle, link: LinkId, from: Hop, tree: Option<RouterId>) {
        let mut s = self.lock();
        // The others' shares shrink: they are told to give some back.
        notify_producers(&s);
        s.producers.push(Producer {
            conn,
            link,
            from,
            tree,
            granted: 0,
        });
    }

    /// Removes a producer, returning its unused credit to the budget.
    pub fn remove_producer(&self, conn: ConnId, link: LinkId) {
        let mut s = self.lock();
        let held: u32 = s
            .producers
            .iter()
            .filter(|p| p.conn.id == conn && p.link == link)
            .map(|p| p.granted)
            .sum();
        s.producers
            .retain(|p| !(p.conn.id == conn && p.link == link));
        // Only credit it held comes free; telling every producer about a
        // producer that held none costs O(producers) for nothing (and
        // O(producers²) when they all leave at once).
        if held > 0 {
            notify_producers(&s);
        }
    }

    /// The credit a producer link should now hold. The budget (the credit
    /// of the consumers this producer may use) is shared fairly: no
    /// producer holds more than its share (the budget divided among the
    /// producers, rounded up) or `window`, and all together never more
    /// than the budget. A producer above its share is cut back, and the
    /// others are told, so an idle producer (an upstream router's link
    /// with nothing to send, say) cannot sit on credit a busy one needs.
    pub fn grant(&self, table: &RoutingTable, conn: ConnId, link: LinkId, window: u32) -> u32 {
        let mut s = self.lock();
        let Some(i) = s
            .producers
            .iter()
            .position(|p| p.conn.id == conn && p.link == link)
        else {
            return 0;
        };
        let p = &s.producers[i];
        let target = match self.distribution {
            Distribution::Multicast => multicast_target(table, &s, p),
            _ => {
                let budget = s
                    .consumers
                    .iter()
                    .filter(|c| serves(table, &self.name, &p.from, &c.to))
                    .fold(0i64, |acc, c| acc + i64::from(c.credit));
                let held: i64 = s.producers.iter().map(|q| i64::from(q.granted)).sum();
                fair(budget, s.producers.len(), held - i64::from(p.granted))
            }
        };
        let p = &mut s.producers[i];
        let before = p.granted;
        p.granted = target.clamp(0, i64::from(window)) as u32;
        let cut = p.granted < before;
        if cut {
            // Credit came free: the others may take their share of it.
            for other in s
                .producers
                .iter()
                .filter(|o| !(o.conn.id == conn && o.link == link))
            {
                other.conn.post(ToConn::Recredit { link: other.link });
            }
        }
        s.producers[i].granted
    }

    /// Routes one delivery that came `from`, on producer link `producer`
    /// (`None`: an anonymous sender, whose credit is not drawn from this
    /// address): takes one of the producer's credit and one of each chosen
    /// consumer's. Empty when no consumer can take it.
    pub fn route(
        &self,
        table: &RoutingTable,
        from: &Hop,
        producer: Option<(ConnId, LinkId)>,
    ) -> Targets {
        self.route_excluding(table, from, producer, None)
    }

    /// As [`route`](Self::route), never choosing the consumer `exclude`
    /// (the one that just released the delivery).
    pub fn route_excluding(
        &self,
        table: &RoutingTable,
        from: &Hop,
        producer: Option<(ConnId, LinkId)>,
        exclude: Option<(ConnId, LinkId)>,
    ) -> Targets {
        let mut s = self.lock();
        let mut origin = table.me();
        if let Some((conn, link)) = producer
            && let Some(p) = s
                .producers
                .iter_mut()
                .find(|p| p.conn.id == conn && p.link == link)
        {
            p.granted = p.granted.saturating_sub(1);
            if let Some(tree) = &p.tree {
                origin = tree;
            }
        }
        let origin = origin.clone();
        let name = &self.name;
        let usable = |c: &Consumer| {
            c.credit > 0 && exclude != Some((c.conn.id, c.link)) && serves(table, name, from, &c.to)
        };
        let n = s.consumers.len();
        match self.distribution {
            Distribution::Multicast => s
                .consumers
                .iter_mut()
                .filter(|c| {
                    c.credit > 0
                        && exclude != Some((c.conn.id, c.link))
                        && serves_tree(table, &origin, from, c)
                })
                .map(|c| {
                    c.credit -= 1;
                    (c.conn.clone(), c.link, c.to != Hop::Local)
                })
                .collect(),
            Distribution::Closest => {
                // Local consumers first, then the nearest router; among
                // equals, the first attached.
                let Some(i) = (0..n)
                    .filter(|&i| usable(&s.consumers[i]))
                    .min_by_key(|&i| cost(table, name, &s.consumers[i].to))
                else {
                    return Vec::new();
                };
                let c = &mut s.consumers[i];
                c.credit -= 1;
                vec![(c.conn.clone(), c.link, c.to != Hop::Local)]
            }
            Distribution::Balanced => {
                // The consumer with the most credit, weighted down by its
                // path cost (a local consumer costs 0); ties go round-robin.
                let start = s.next;
                let score = |c: &Consumer| {
                    let cost = u64::from(cost(table, name, &c.to)).min(1 << 20);
                    u64::from(c.credit) * 1024 / (1 + cost)
                };
                let best = (0..n)
                    .map(|i| (start + i) % n)
                    .filter(|&i| usable(&s.consumers[i]))
                    .max_by_key(|&i| {
                        (
                            score(&s.consumers[i]),
                            std::cmp::Reverse((i + n - start) % n),
                        )
                    });
                let Some(i) = best else {
                    return Vec::new();
                };
                s.next = (i + 1) % n;
                let c = &mut s.consumers[i];
                c.credit -= 1;
                vec![(c.conn.clone(), c.link, c.to != Hop::Local)]
            }
        }
    }

    /// Accounts a producer's delivery that is not routed (it expired): it
    /// used one of the producer's credit.
    pub fn route_none(&self, conn: ConnId, link: LinkId) {
        let mut s = self.lock();
        if let Some(p) = s
            .producers
            .iter_mut()
            .find(|p| p.conn.id == conn && p.link == link)
        {
            p.granted = p.granted.saturating_sub(1);
        }
    }

    /// Gives back consumer credit taken by [`route`](Self::route) for a
    /// delivery that was not sent after all.
    pub fn refund(&self, conn: ConnId, link: LinkId) {
        self.adjust_consumer_credit(conn, link, 1);
    }
}

/// A producer's fair part of `credit` shared by `sharing` producers, of
/// which the others hold `held_by_others`: its share (rounded up), and
/// never more than what the others leave.
fn fair(credit: i64, sharing: usize, held_by_others: i64) -> i64 {
    let sharing = sharing.max(1) as i64;
    ((credit + sharing - 1) / sharing).min(credit - held_by_others)
}

/// Multicast credit for producer `p`: every consumer its deliveries reach
/// must take each one, so it gets the smallest of its fair parts of those
/// consumers' credit. A local consumer is shared by every producer; a tree's
/// data link only by the producers of that tree.
fn multicast_target(table: &RoutingTable, s: &State, p: &Producer) -> i64 {
    let me = table.me();
    let origin = p.tree.as_ref().unwrap_or(me);
    s.consumers
        .iter()
        .filter(|c| serves_tree(table, origin, &p.from, c))
        .map(|c| {
            let (sharing, held) = s
                .producers
                .iter()
                .filter(|q| {
                    c.to == Hop::Local || c.tree.as_ref() == Some(q.tree.as_ref().unwrap_or(me))
                })
                .fold((0, 0), |(n, h), q| (n + 1, h + i64::from(q.granted)));
            fair(i64::from(c.credit), sharing, held - i64::from(p.granted))
        })
        .min()
        .unwrap_or(0)
}

fn notify_producers(s: &State) {
    for p in &s.producers {
        p.conn.post(ToConn::Recredit { link: p.link });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn conn(id: u64) -> (ConnHandle, mpsc::UnboundedReceiver<ToConn>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ConnHandle { id: ConnId(id), tx }, rx)
    }

    fn table() -> RoutingTable {
        RoutingTable::standalone(RouterId::from("me"))
    }

    fn link(n: u64) -> LinkId {
        ferry_proto::engine::LinkId::from_raw(n)
    }

    #[test]
    fn producers_share_the_consumer_budget_without_overlap() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, _prx) = conn(2);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.add_producer(p.clone(), link(2), Hop::Local, None);
        a.add_producer(p, link(3), Hop::Local, None);
        assert_eq!(
            a.grant(&table(), ConnId(2), link(2), 10),
            0,
            "no credit without consumer credit"
        );
        a.adjust_consumer_credit(ConnId(1), link(1), 15);
        // Shared fairly: half of 15 each, rounded up, never more than 15.
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10), 8);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10), 7);
    }

    #[test]
    fn an_idle_producer_gives_back_credit_to_a_new_one() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(ConnId(1), link(1), 10);
        a.add_producer(p.clone(), link(2), Hop::Local, None);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250), 10);
        while prx.try_recv().is_ok() {}
        // A second producer arrives: the first is told to recompute, gives
        // back half, and the second is told there is credit again.
        a.add_producer(p, link(3), Hop::Local, None);
        assert!(matches!(prx.try_recv(), Ok(ToConn::Recredit { link: l }) if l == link(2)));
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250), 0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250), 5);
        assert!(matches!(prx.try_recv(), Ok(ToConn::Recredit { link: l }) if l == link(3)));
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250), 5);
    }

    #[test]
    fn credit_is_cut_when_the_consumer_leaves() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.add_producer(p, link(2), Hop::Local, None);
        a.adjust_consumer_credit(ConnId(1), link(1), 5);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10), 5);
        a.remove_consumer(ConnId(1), link(1));
        assert!(matches!(prx.try_recv(), Ok(ToConn::Recredit { .. })));
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10), 0);
    }

    #[test]
    fn balanced_spreads_and_closest_prefers_the_first() {
        for (dist, expect_spread) in [
            (Distribution::Balanced, true),
            (Distribution::Closest, false),
        ] {
            let a = Address::new("q".into(), dist);
            let (c, _rx) = conn(1);
            a.add_consumer(c.clone(), link(1), Hop::Local, None);
            a.add_consumer(c, link(2), Hop::Local, None);
            a.adjust_consumer_credit(ConnId(1), link(1), 10);
            a.adjust_consumer_credit(ConnId(1), link(2), 10);
            let picks: Vec<LinkId> = (0..10)
                .map(|_| a.route(&table(), &Hop::Local, None)[0].1)
                .collect();
            let to_first = picks.iter().filter(|l| **l == link(1)).count();
            if expect_spread {
                assert_eq!(to_first, 5, "{picks:?}");
            } else {
                assert_eq!(to_first, 10);
            }
        }
    }

    #[test]
    fn multicast_budget_is_the_slowest_consumer() {
        let a = Address::new("m".into(), Distribution::Multicast);
        let (c, _rx) = conn(1);
        let (p, _prx) = conn(2);
        a.add_consumer(c.clone(), link(1), Hop::Local, None);
        a.add_consumer(c, link(2), Hop::Local, None);
        a.add_producer(p, link(3), Hop::Local, None);
        a.adjust_consumer_credit(ConnId(1), link(1), 10);
        a.adjust_consumer_credit(ConnId(1), link(2), 3);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 100), 3);
        assert_eq!(
            a.route(&table(), &Hop::Local, Some((ConnId(2), link(3))))
                .len(),
            2
        );
    }
}
