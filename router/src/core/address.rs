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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_proto::engine::LinkId;
use smallvec::{SmallVec, smallvec};

use super::budget::ByteBudget;
use super::by_link::{ByLink, Keyed, LinkKey};
use super::message::{ConnHandle, ConnId, ToConn};
use super::report::AddressReport;
use crate::config::Distribution;
use crate::metrics::{AddressCounters, ConnRole, DeliveryCounters};
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
    /// The router at the other end of an edge connection: on an interior
    /// router, an edge router attached to it; on an edge router, its
    /// interior uplink. Its links carry that router's clients' traffic
    /// (the interior advertises an edge's consumers as its own), so they
    /// count as this router's own, except that a delivery never goes back
    /// across the edge connection it came on.
    Edge(RouterId),
}

impl Hop {
    /// Whether the link serves clients of this router, directly or through
    /// an edge connection: what the mesh sees as this router's own.
    pub fn is_own(&self) -> bool {
        !matches!(self, Self::Neighbor(_))
    }

    /// Whether the link leads to a neighbour in the mesh (deliveries to it
    /// carry the trace; see `core::trace`).
    pub fn is_neighbour(&self) -> bool {
        matches!(self, Self::Neighbor(_))
    }
}

/// The path cost of an edge connection: an edge router prefers its own
/// clients (cost 0) to its uplink, and an interior its own clients to an
/// edge's.
const EDGE_COST: u32 = 1;

#[derive(Debug)]
struct Consumer {
    conn: ConnHandle,
    link: LinkId,
    to: Hop,
    /// Multicast data link: the router whose tree it belongs to.
    tree: Option<RouterId>,
    /// Deliveries the router may still route to it: its link's credit
    /// less what is routed to it and not yet sent. Below zero when more is
    /// routed to it than its link can take now: multicast copies from a
    /// neighbour (promised credit upstream, they wait for the link's
    /// credit; see [`Address::route`]), or deliveries routed just before
    /// its credit was lowered (they come back with [`Address::refund`]).
    credit: i64,
    /// Its credit as its last flow left it (what it grants, before the
    /// router routes any of it): producers' fair parts are reckoned on it,
    /// so that credit on its way to the consumer, which comes back with its
    /// next flow, does not look like a shortage (see [`Part`]).
    level: i64,
    /// Its connection's peer is not reading (see `Links::set_congested`).
    congested: bool,
    /// A data link to a neighbour: we told it that producers it serves
    /// wait for credit here (see [`Address::offer_demand`]).
    offered: bool,
}

impl Consumer {
    /// The credit producers may be promised on it: none while its
    /// connection is congested (its peer is not reading). What producers
    /// hold already still reaches it: withheld credit holds them back,
    /// nothing is released or dropped for it.
    fn available(&self) -> u32 {
        if self.congested {
            return 0;
        }
        self.credit_left()
    }

    /// Its credit left, congested or not: what producers may keep.
    fn credit_left(&self) -> u32 {
        u32::try_from(self.credit.max(0)).unwrap_or(u32::MAX)
    }

    /// The credit producers may be promised on it (`keeping`: the credit
    /// they may keep, which its congestion does not take back).
    fn promised(&self, keeping: bool) -> u32 {
        if keeping {
            self.credit_left()
        } else {
            self.available()
        }
    }
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
    /// It used credit since `active` was last brought up to date.
    used: bool,
    /// When it last used credit or got credit from none.
    active: Instant,
    /// When it last used credit (`None`: never).
    last_used: Option<Instant>,
    /// Until when it is taken to have nothing to send: set when its idle
    /// credit is taken back, cleared when it uses credit. Meanwhile it
    /// takes back nobody's credit (else idle producers would take it from
    /// each other, round and round), and spare credit goes first to
    /// producers short of their share.
    quiet_until: Instant,
    /// How long it was last made quiet: doubled at each reclaim while it
    /// uses nothing (an idle producer competes ever more rarely), cleared
    /// when it uses credit.
    quiet_for: Duration,
    /// Short of its share at its last grant, and not quiet.
    short: bool,
    /// Its credit is to be taken back at its next grant (idle lease).
    reclaim: bool,
    /// It may have messages waiting for credit: a client's link or an edge
    /// router's is taken to (they do not say; until found idle); a
    /// neighbour's data link, when the neighbour says so (its flow's
    /// `available`: producers wait behind it there).
    wants: bool,
    /// It wants credit and holds none (and is not quiet): demand to carry
    /// towards the consumers.
    starved: bool,
    /// Its connection's byte budget: while it is exhausted the router is
    /// not reading the producer's transfers, so it is not idle (what it
    /// sent waits in its socket; see [`IDLE_LEASE`]).
    budget: Option<Arc<ByteBudget>>,
}

impl Keyed for Producer {
    fn key(&self) -> LinkKey {
        (self.conn.id, self.link)
    }
}

impl Producer {
    /// Whether the router holds back reading its transfers (over its byte
    /// budget, or the router's).
    fn held_back(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.exhausted())
    }
}

/// Whether `p` produces for `tree` and comes across an edge connection as
/// `from` does (see [`Address::add_producer`]).
fn same_source(p: &Producer, tree: &Option<RouterId>, from: &Hop) -> bool {
    p.tree == *tree && matches!(p.from, Hop::Edge(_)) == matches!(from, Hop::Edge(_))
}

/// Which consumers a multicast delivery may reach on this router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every consumer along the tree it follows: local consumers and the
    /// tree's data links to this router's children (valid origins).
    Tree,
    /// Local consumers only: a copy sent on a tree this router no longer
    /// sees (its stamp is not this router's; see
    /// `RoutingTable::tree_stamp`). Copies travel only along the edges of
    /// the tree they were stamped with, so this router gets at most one
    /// copy and its consumers may have it; sent on, it could reach a
    /// consumer that the new tree serves from elsewhere.
    Local,
}

/// Whether a delivery of `address` that came `from` may go on `to`.
pub fn serves(table: &RoutingTable, address: &str, from: &Hop, to: &Hop) -> bool {
    path_cost(table, address, from, to).is_some()
}

/// Anycast: the path cost from here to the nearest consumer of `address`
/// that a delivery which came `from` may reach through `to` (0 for a local
/// consumer); `None` if it may not go that way (back where it came from,
/// or off the shortest paths; see `RoutingTable::via`).
fn path_cost(table: &RoutingTable, address: &str, from: &Hop, to: &Hop) -> Option<u32> {
    match (to, from) {
        (Hop::Local, _) => Some(0),
        (Hop::Edge(_), _) | (Hop::Neighbor(_), Hop::Neighbor(_)) if from == to => None,
        (Hop::Edge(_), _) => Some(EDGE_COST),
        (Hop::Neighbor(n), Hop::Neighbor(p)) => table.via(address, Some(p), n),
        (Hop::Neighbor(n), Hop::Local | Hop::Edge(_)) => table.via(address, None, n),
    }
}

/// Multicast: whether a delivery that entered the mesh at `origin` and
/// came `from` may go to consumer `c`: every local consumer, and (reaching
/// the whole tree) the data links of `origin`'s tree. A delivery goes on
/// along the tree only if it came from this router's parent in that tree
/// (its next hop towards `origin`): anything else is a moment of
/// disagreement between routing tables, and forwarding it could make
/// duplicates.
fn serves_tree(
    table: &RoutingTable,
    origin: &RouterId,
    from: &Hop,
    c: &Consumer,
    reach: Reach,
) -> bool {
    if reach == Reach::Local {
        return c.to.is_own() && from != &c.to;
    }
    if let Hop::Neighbor(p) = from
        && table.next_hop(origin) != Some(p)
    {
        return false;
    }
    match &c.to {
        Hop::Local => true,
        Hop::Edge(_) => from != &c.to,
        Hop::Neighbor(n) => c.tree.as_ref() == Some(origin) && from != &c.to && n != origin,
    }
}

#[derive(Debug, Default)]
struct State {
    consumers: Vec<Consumer>,
    producers: ByLink<Producer>,
    /// Round-robin start for ties between consumers.
    next: usize,
    /// The producers' credit, summed (kept, not counted: a grant is then
    /// independent of the number of producers).
    held: i64,
    /// How many producers are short of their share.
    shorts: usize,
    /// How many producers are starved (see `Producer::starved`).
    starved: usize,
    /// No lease runs out before then (`None`: not known).
    lease_due: Option<Instant>,
    /// Where in `producers` the next [`notify_first`] starts.
    notify_from: usize,
    /// When a producer was last found to have used credit (at its grant).
    last_use: Option<Instant>,
    /// An anonymous sender on this router has sent to this multicast
    /// address: its tree from this router keeps its data links while the
    /// address lasts, as for a producer attached to it.
    anonymous: bool,
    /// Deliveries routed, for management: from clients, to clients, and
    /// from neighbours (counted under the lock already taken to route).
    ingress: u64,
    egress: u64,
    transit: u64,
}

/// Where one delivery goes: consumer links, their connections, and
/// whether each leads to a neighbour router. Inline for one (anycast):
/// no allocation per delivery.
pub type Targets = SmallVec<[(ConnHandle, LinkId, bool); 1]>;

/// The producer link a delivery came on, when its credit is drawn from the
/// address (not an anonymous sender's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credited {
    pub conn: ConnId,
    pub link: LinkId,
    /// It came on credit the router had taken back (in flight when the
    /// lower grant reached the producer, AMQP 1.0 §2.6.7): promised all
    /// the same.
    pub revoked: bool,
}

/// Where [`Address::route`] sends a delivery.
#[derive(Debug, Default)]
pub struct Routed {
    pub targets: Targets,
    /// The delivery was promised credit (anycast: sent on credit this
    /// router granted, held still or taken back, that no consumer has now;
    /// multicast: every copy, see [`Address::route_excluding`]): where a
    /// consumer's link has no credit it waits for some rather than being
    /// given back (see [`Forwarded::wait`]).
    ///
    /// [`Forwarded::wait`]: crate::core::Forwarded::wait
    pub wait: bool,
}

/// An address with its links on this router.
#[derive(Debug)]
pub struct Address {
    name: String,
    distribution: Distribution,
    state: Mutex<State>,
    /// Its delivery counters, resolved once (the message path only
    /// increments them).
    counters: AddressCounters,
}

impl Address {
    /// A new address with no links, counted nowhere.
    pub fn new(name: String, distribution: Distribution) -> Self {
        Self::with_counters(name, distribution, AddressCounters::detached())
    }

    /// A new address with no links, counted with `counters`.
    pub fn with_counters(
        name: String,
        distribution: Distribution,
        counters: AddressCounters,
    ) -> Self {
        Self {
            name,
            distribution,
            state: Mutex::default(),
            counters,
        }
    }

    /// The delivery counters of links of connections of `role`.
    pub fn counters(&self, role: ConnRole) -> &Arc<DeliveryCounters> {
        self.counters.role(role)
    }

    /// The credit its producers hold, summed.
    pub fn credit_held(&self) -> i64 {
        self.lock().held
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
        let first_local = to.is_own() && !s.consumers.iter().any(|c| c.to.is_own());
        // Most addresses have one consumer (a device's own): room for one.
        if s.consumers.capacity() == 0 {
            s.consumers.reserve_exact(1);
        }
        s.consumers.push(Consumer {
            conn,
            link,
            to,
            tree,
            credit: 0,
            level: 0,
            congested: false,
            offered: false,
        });
        // Nothing to hand out yet, but producers across an edge connection
        // learn that there is a consumer to reach (`links::interest`).
        notify_producers(&mut s);
        first_local
    }

    /// Removes a consumer; producers are told to recompute their credit.
    /// Returns whether it was the last local consumer.
    pub fn remove_consumer(&self, conn: ConnId, link: LinkId) -> bool {
        let mut s = self.lock();
        let before = s.consumers.iter().any(|c| c.to.is_own());
        s.consumers
            .retain(|c| !(c.conn.id == conn && c.link == link));
        notify_producers(&mut s);
        before && !s.consumers.iter().any(|c| c.to.is_own())
    }

    /// Tells every producer to recompute its credit (the paths changed).
    pub fn recredit_producers(&self) {
        notify_producers(&mut self.lock());
    }

    /// The connections of this router's clients with a link on the
    /// address (not neighbours' data links).
    pub fn local_conns(&self) -> Vec<ConnHandle> {
        let s = self.lock();
        let consumers = s
            .consumers
            .iter()
            .filter(|c| c.to == Hop::Local)
            .map(|c| &c.conn);
        let producers = s
            .producers
            .iter()
            .filter(|p| p.from == Hop::Local)
            .map(|p| &p.conn);
        consumers.chain(producers).cloned().collect()
    }

    /// The connections of every consumer of the address.
    pub fn consumer_conns(&self) -> Vec<ConnHandle> {
        let s = self.lock();
        s.consumers.iter().map(|c| c.conn.clone()).collect()
    }

    /// Changes a consumer's credit by `delta` (its link's flow changed);
    /// producers are told when there is more to hand out.
    pub fn adjust_consumer_credit(
        &self,
        table: &RoutingTable,
        conn: ConnId,
        link: LinkId,
        delta: i64,
    ) {
        self.add_consumer_credit(table, conn, link, delta, None);
    }

    /// A consumer's flow changed its credit by `delta`, stating a
    /// link-credit of `level` (its window: deliveries on their way to it
    /// count in it still).
    pub fn consumer_flow(
        &self,
        table: &RoutingTable,
        conn: ConnId,
        link: LinkId,
        delta: i64,
        level: u32,
    ) {
        self.add_consumer_credit(table, conn, link, delta, Some(level));
    }

    /// Adds `delta` to a consumer's credit, and sets its level (`None`:
    /// lowered to its credit if that was lowered, raised to it if it rose
    /// above).
    fn add_consumer_credit(
        &self,
        table: &RoutingTable,
        conn: ConnId,
        link: LinkId,
        delta: i64,
        level: Option<u32>,
    ) {
        let mut s = self.lock();
        let Some(i) = s
            .consumers
            .iter()
            .position(|c| c.conn.id == conn && c.link == link)
        else {
            return;
        };
        let c = &mut s.consumers[i];
        c.credit = c.credit.saturating_add(delta);
        c.level = match level {
            Some(l) => i64::from(l),
            None if delta < 0 => c.level.min(c.credit.max(0)),
            None => c.level.max(c.credit),
        };
        if delta > 0 && self.every_part_is_one(&s) {
            // Only a producer holding none can take more: as many of them
            // as credits came free are told, from a rotating place, of
            // those this consumer serves (the others are told at later
            // flows, or ask at their recheck). Telling every producer at
            // each flow cost a fan-in of N producers N messages and grants
            // per flow.
            let to = s.consumers[i].to.clone();
            let serves = |p: &Producer| serves(table, &self.name, &p.from, &to);
            notify_empty(&mut s, u32::try_from(delta).unwrap_or(u32::MAX), serves);
        } else if delta != 0 {
            notify_producers(&mut s);
        }
    }

    /// Anycast, with at least as many producers as the consumers' level
    /// summed: every producer's fair part is one credit (see `grant`),
    /// whatever consumers it may use.
    fn every_part_is_one(&self, s: &State) -> bool {
        let level: i64 = s.consumers.iter().map(|c| c.level.max(0)).sum();
        self.distribution != Distribution::Multicast
            && level > 0
            && s.producers.len() as i64 >= level
    }

    /// A consumer's connection became congested, or no longer is: while it
    /// is, the consumer promises producers no credit; when it is not any
    /// more, producers are told to ask again.
    pub fn set_congested(&self, conn: ConnId, link: LinkId, congested: bool) {
        let mut s = self.lock();
        if let Some(c) = s
            .consumers
            .iter_mut()
            .find(|c| c.conn.id == conn && c.link == link)
        {
            c.congested = congested;
        }
        if !congested {
            notify_producers(&mut s);
        }
    }

    /// Adds a producer holding no credit (`tree`: for a producer link from
    /// a neighbour, the router where its deliveries entered the mesh).
    /// Returns whether it is the first producer of its tree (producers
    /// across an edge connection counted apart from the others: an edge
    /// router's uplink follows its own clients' producers).
    pub fn add_producer(
        &self,
        conn: ConnHandle,
        link: LinkId,
        from: Hop,
        tree: Option<RouterId>,
        budget: Option<Arc<ByteBudget>>,
        now: Instant,
    ) -> bool {
        let mut s = self.lock();
        let first = !s.producers.iter().any(|p| same_source(p, &tree, &from));
        let wants = !from.is_neighbour();
        // The others' parts shrink: those holding more than the new part
        // may let them keep are told to recompute. One holding none has
        // nothing to lower, and will ask with the new share when it does;
        // an anycast producer keeps what it holds within its fair part,
        // which is one credit at least (see `grant`), so one holding a
        // single credit keeps it. Telling every producer cost O(producers)
        // per attach, O(producers²) when 10,000 devices attach to one
        // address at once; telling every holder, the same beside a
        // consumer granting as many credits as there are devices.
        let kept = if self.distribution == Distribution::Multicast {
            0
        } else {
            1
        };
        for p in s.producers.iter().filter(|p| p.granted > kept) {
            p.conn.post(ToConn::Recredit { link: p.link });
        }
        let replaced = s.producers.push(Producer {
            conn,
            link,
            from,
            tree,
            budget,
            granted: 0,
            used: false,
            active: now,
            last_used: None,
            quiet_until: now,
            quiet_for: Duration::ZERO,
            short: false,
            reclaim: false,
            wants,
            starved: false,
        });
        // (A link is added once; added again, it would start afresh.)
        if let Some(old) = replaced {
            s.held -= i64::from(old.granted);
            s.shorts -= usize::from(old.short);
            s.starved -= usize::from(old.starved);
        }
        first
    }

    /// Whether a producer of `tree`'s deliveries is attached (`None`: a
    /// producer on this router). A multicast tree has data links only
    /// where it has producers upstream.
    pub fn has_producers_of(&self, tree: Option<&RouterId>) -> bool {
        let s = self.lock();
        (tree.is_none() && s.anonymous) || s.producers.iter().any(|p| p.tree.as_ref() == tree)
    }

    /// An anonymous sender on this router sends to the address: returns
    /// whether it is the first (see [`has_producers_of`](Self::has_producers_of)).
    /// An anonymous sender is tied to no address, so the tree its messages
    /// follow gets its data links only once it is used: the first messages
    /// are released, as while any tree is incomplete.
    pub fn mark_anonymous(&self) -> bool {
        !std::mem::replace(&mut self.lock().anonymous, true)
    }

    /// Removes a producer, returning its unused credit to the budget.
    /// Returns whether it was the last producer of its tree (see
    /// [`add_producer`](Self::add_producer)).
    pub fn remove_producer(&self, conn: ConnId, link: LinkId) -> bool {
        let mut s = self.lock();
        let Some(gone) = s.producers.remove((conn, link)) else {
            return false;
        };
        let held = gone.granted;
        s.held -= i64::from(held);
        s.shorts -= usize::from(gone.short);
        s.starved -= usize::from(gone.starved);
        if s.starved == 0 {
            // (With others still starved, what the data links were told
            // stands until the next grant.)
            withdraw_demand(&mut s);
        }
        // Only credit it held comes free; telling every producer about a
        // producer that held none costs O(producers) for nothing (and
        // O(producers²) when they all leave at once).
        if held > 0 {
            notify_producers(&mut s);
        }
        !s.producers
            .iter()
            .any(|p| same_source(p, &gone.tree, &gone.from))
    }

    /// Whether a consumer link leads anywhere but `to`: on an interior
    /// router, whether an edge router's producers have a consumer to reach
    /// in the mesh (see `links::interest`).
    pub fn has_consumers_besides(&self, to: &Hop) -> bool {
        self.lock().consumers.iter().any(|c| &c.to != to)
    }

    /// Whether this router's own clients (not an edge connection's, not a
    /// neighbour's) produce to the address, and whether they consume from
    /// it: what an edge router's uplink carries (see `links::edge`).
    pub fn client_links(&self) -> (bool, bool) {
        let s = self.lock();
        (
            s.producers.iter().any(|p| p.from == Hop::Local),
            s.consumers.iter().any(|c| c.to == Hop::Local),
        )
    }

    /// Whether clients of this router, directly or through an edge router
    /// attached to it, produce to the address, and whether they consume
    /// from it: a brokered address's use (see `core::brokered`).
    pub fn own_links(&self) -> (bool, bool) {
        let s = self.lock();
        (
            s.producers.iter().any(|p| p.from.is_own()),
            s.consumers.iter().any(|c| c.to.is_own()),
        )
    }

    /// The credit a producer link should now hold, and when to ask again
    /// if it is short of its share. The budget (the credit of the consumers
    /// this producer may use) is shared fairly: no producer holds more than
    /// its share (the budget divided among the producers, rounded up), its
    /// fair part (anycast: the consumers' level divided among them, rounded
    /// down, see [`Part`]) or `window`, and all together never more than
    /// the budget. Within its fair part a producer above its momentary
    /// share keeps what it holds and is topped up only once back within
    /// it; what it holds is cut only when the consumers' credit itself is
    /// gone, or for idleness (below). A cut is safe: what the producer sent
    /// on the credit before the cut reached it is routed as promised
    /// (see [`route`](Self::route)).
    ///
    /// Credit is a lease: a producer short of its share takes back the
    /// credit of producers that have held more than their fair part for
    /// [`IDLE_LEASE`] without using any (an idle client, a neighbour's data
    /// link with nothing to send). When the consumers grant fewer credits
    /// than there are producers, idle credit so moves round until the
    /// producers with messages to send have it — rather than staying, for
    /// good, with whoever took it first.
    pub fn grant(
        &self,
        table: &RoutingTable,
        conn: ConnId,
        link: LinkId,
        window: u32,
        now: Instant,
    ) -> Grant {
        let mut s = self.lock();
        let Some(i) = s.producers.position((conn, link)) else {
            return Grant::default();
        };
        let p = &s.producers[i];
        // What it may be promised (`keeping: false`), and what it may keep
        // of what it holds (`true`; see below).
        let part_of = |keeping: bool| match self.distribution {
            // (Multicast credit is not kept: see below.)
            Distribution::Multicast => multicast_part(table, &self.name, &s, p),
            _ => {
                let (budget, level) = s
                    .consumers
                    .iter()
                    .filter(|c| serves(table, &self.name, &p.from, &c.to))
                    .fold((0i64, 0i64), |(b, l), c| {
                        (b + i64::from(c.promised(keeping)), l + c.level)
                    });
                Part::of(budget, s.producers.len(), s.held - i64::from(p.granted))
                    .with_level(level, s.producers.len())
            }
        };
        let part = part_of(false);
        let congested =
            self.distribution != Distribution::Multicast && s.consumers.iter().any(|c| c.congested);
        let keep = if congested { part_of(true) } else { part };
        let window = i64::from(window);
        let s = &mut *s;
        let others_short = s.shorts > usize::from(s.producers[i].short);
        let p = &mut s.producers[i];
        let before = p.granted;
        let used = std::mem::take(&mut p.used);
        if used {
            // It used some since the last grant: not idle after all.
            p.active = now;
            p.last_used = Some(now);
            s.last_use = Some(now);
            p.quiet_until = now;
            p.quiet_for = Duration::ZERO;
        }
        // Anycast: nobody holds more than its fair part, what every producer
        // can hold at once (the consumers' level shared out, rounded down;
        // one at least). A first producer that took the window alone is cut
        // down to it when others come; shared rounded up, a few producers
        // held two credits each while others had none, for seconds.
        let anycast = self.distribution != Distribution::Multicast;
        let fair = part.level_floor.max(1);
        let cap = if anycast { fair } else { i64::MAX };
        let mut credit = part.share.min(part.left).clamp(0, window).min(cap);
        // Within that, what it holds is taken back only where the
        // consumers' own credit is gone (or, below, for idleness): a
        // producer above its momentary share keeps what it holds and is
        // not topped up until it is back within it; a congested consumer
        // promises nothing more, but takes back nothing either. Multicast
        // shares are cut as they come. What a producer sent before a cut
        // reached it was promised, and waits for a consumer's credit where
        // none is left (`route`).
        if anycast {
            let kept = keep.left.clamp(0, window).min(i64::from(before));
            credit = credit.max(kept.min(cap));
        }
        // A neighbour's data link is not cut by a little: where routes form
        // a cycle, its credit feeds back into its own budget, and cuts of
        // one credit went round the cycle for ever (the simulator's
        // randomized seeds 91 and 396). What it keeps beyond its part is at
        // most an eighth of it; deliveries sent on it wait for a
        // consumer's credit (`route`).
        let spared = p.from != Hop::Local
            && credit > 0
            && credit < i64::from(before)
            && i64::from(before) - credit <= (i64::from(before) / 8).max(1);
        if spared {
            credit = i64::from(before);
        }
        // Anycast: a router's link (a neighbour's data link, an edge
        // connection's) carries what the producers behind it send: while
        // other producers use credit, it is topped up only if it used some
        // within a lease too, from one credit that lets a first message
        // through. Idle, it held a fair part that this
        // router's busy producers needed: a producer and a consumer on one
        // router with a neighbour went at a tenth of their speed alone.
        // Capped while nobody sent, a chain of idle links held one credit
        // between them and an anonymous sender's messages (which ask for
        // no credit) found none (ferry-sim tests/edge.rs seed 668). (A
        // multicast tree's links exist only where the tree has producers,
        // and its shares are cut as they come.)
        let busy = p
            .last_used
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE_LEASE);
        let others_busy = s
            .last_use
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE_LEASE);
        if anycast && p.from != Hop::Local && !busy && others_busy {
            credit = credit.min(i64::from(before).max(1));
        }
        let reclaimed = std::mem::take(&mut p.reclaim) && !used && !p.held_back();
        if reclaimed {
            // Taken back down to what every producer can hold at once of
            // what the consumers have now (of their level, if less: credit
            // on its way to them comes back only with their next flow,
            // which may wait for what the idle hold).
            let guaranteed = part.floor.min(part.level_floor).min(window);
            if i64::from(before) > guaranteed {
                tracing::debug!(
                    "{}: credit {} of a producer idle for a lease taken back",
                    self.name,
                    i64::from(before) - guaranteed
                );
            }
            credit = credit.min(guaranteed);
        } else if now < p.quiet_until && others_short {
            // Just found idle: producers that may have messages go first.
            credit = credit.min(i64::from(before));
        }
        // Found idle: it held credit a whole lease without using any, and
        // loses it, taken back here or because the consumers' credit went
        // (the next router took its own lease back). Quiet only where the
        // consumers grant fewer credits than there are producers:
        // otherwise there is one for it as soon as their credit is back,
        // and a device that sends now and then must not wait seconds for
        // it. Not a data link whose neighbour says producers wait behind
        // it. Taken back by the next router first, an idle client here
        // took the credit again each time it came back, ahead of the
        // producers that waited for it (a starved one holding none was
        // never short of a share of none).
        let idle =
            reclaimed || (before > 0 && !used && now >= p.active + IDLE_LEASE && !p.held_back());
        if idle && credit == 0 && part.level_floor == 0 && !(p.wants && p.from.is_neighbour()) {
            p.quiet_for = (p.quiet_for * 2).clamp(IDLE_LEASE, MAX_QUIET);
            p.quiet_until = now + p.quiet_for;
        }
        if before == 0 && credit > 0 {
            p.active = now; // a new lease
        }
        s.held += credit - i64::from(p.granted);
        p.granted = credit as u32;
        let wanted = part.share.min(window).min(cap) - credit;
        // Short: below what an even split guarantees (the rounded-down
        // share), or with nothing at all. Not merely below the rounded-up
        // share, which not every producer can have at once: two idle
        // producers would take credit from each other for ever.
        let short =
            wanted > 0 && (credit == 0 || credit < part.floor.min(window)) && now >= p.quiet_until;
        s.shorts = s.shorts + usize::from(short) - usize::from(p.short);
        p.short = short;
        let (quiet_until, wants) = (p.quiet_until, p.wants);
        let recheck = if short {
            reclaim_idle(
                s,
                i,
                wanted,
                part.floor.min(part.level_floor).min(window),
                now,
            )
        } else if (wanted > 0 || wants) && now < quiet_until {
            // Quiet for now; it may have messages again later. One that
            // wants credit asks again even where there is none to share:
            // starved then, it makes this router ask the next one.
            Some(quiet_until)
        } else {
            None
        };
        if s.producers[i].granted < before {
            // Credit came free: the producers short of theirs may take it.
            let freed = before - s.producers[i].granted;
            notify_short(s, i, freed);
        }
        debug_assert_eq!(
            s.held,
            s.producers
                .iter()
                .map(|q| i64::from(q.granted))
                .sum::<i64>()
        );
        debug_assert_eq!(s.shorts, s.producers.iter().filter(|q| q.short).count());
        let p = &s.producers[i];
        let starved = p.wants && p.granted == 0 && now >= p.quiet_until;
        if set_starved(s, i, starved) || starved {
            self.offer_demand(table, s);
        }
        Grant {
            credit: s.producers[i].granted,
            recheck,
        }
    }

    /// A neighbour's data link told whether producers wait behind it (its
    /// flow's `available`). Wanting, it competes for credit at once (not
    /// quiet), is told first when credit comes, and, where this router has
    /// none for it, makes this router ask the next one in turn.
    pub fn set_wants(
        &self,
        table: &RoutingTable,
        conn: ConnId,
        link: LinkId,
        wants: bool,
        now: Instant,
    ) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let Some(i) = s.producers.position((conn, link)) else {
            return;
        };
        let p = &mut s.producers[i];
        p.wants = wants;
        if wants {
            p.quiet_until = now;
            p.quiet_for = Duration::ZERO;
        }
        let starved = wants && p.granted == 0;
        if set_starved(s, i, starved) {
            self.offer_demand(table, s);
        }
    }

    /// Tells each data link to a neighbour whether producers it serves are
    /// starved here, when that changed: demand goes towards the consumers
    /// hop by hop, as credit comes back from them. Without it, credit
    /// spread over a big mesh's idle data links (each keeps one) never
    /// reached a producer behind links that held none: nobody on its path
    /// was short of a share of nothing (the 1,000-router simulation).
    /// Only a delivery's possible paths carry its producer's demand
    /// ([`serves`]), so demand never goes round a cycle.
    fn offer_demand(&self, table: &RoutingTable, s: &mut State) {
        if self.distribution == Distribution::Multicast {
            return;
        }
        let State {
            consumers,
            producers,
            starved,
            ..
        } = s;
        for c in consumers.iter_mut().filter(|c| c.to.is_neighbour()) {
            let waiting = *starved > 0
                && producers
                    .iter()
                    .any(|p| p.starved && serves(table, &self.name, &p.from, &c.to));
            if waiting != c.offered {
                c.offered = waiting;
                c.conn.post(ToConn::Demand {
                    link: c.link,
                    waiting,
                });
            }
        }
    }

    /// Routes one delivery that came `from`, on producer link `producer`
    /// (`None`: an anonymous sender, whose credit is not drawn from this
    /// address): takes one of the producer's credit and one of each chosen
    /// consumer's. Empty when no consumer can take it. `reach` limits a
    /// multicast delivery (anycast ignores it).
    pub fn route(
        &self,
        table: &RoutingTable,
        from: &Hop,
        producer: Option<Credited>,
        reach: Reach,
    ) -> Routed {
        self.route_excluding(table, from, producer, None, reach)
    }

    /// As [`route`](Self::route), never choosing the consumer `exclude`
    /// (the one that just released the delivery).
    pub fn route_excluding(
        &self,
        table: &RoutingTable,
        from: &Hop,
        producer: Option<Credited>,
        exclude: Option<(ConnId, LinkId)>,
        reach: Reach,
    ) -> Routed {
        let mut guard = self.lock();
        let s = &mut *guard;
        let (routed, ran_out) = self.route_in(s, table, from, producer, exclude, reach);
        if ran_out {
            self.offer_demand(table, s);
        }
        routed
    }

    /// [`route_excluding`](Self::route_excluding) under the lock; also
    /// returns whether the producer used its last credit and may want more.
    fn route_in(
        &self,
        s: &mut State,
        table: &RoutingTable,
        from: &Hop,
        producer: Option<Credited>,
        exclude: Option<(ConnId, LinkId)>,
        reach: Reach,
    ) -> (Routed, bool) {
        let mut origin = table.me();
        // Whether the delivery came on credit this router granted, held
        // still or taken back since: it was promised, so where no consumer
        // has credit now it waits for some rather than being refused (see
        // below).
        let mut covered = false;
        let mut ran_out = false;
        if let Some(from) = producer
            && let Some(p) = s.producers.get_mut((from.conn, from.link))
        {
            covered = from.revoked;
            if p.granted > 0 {
                p.granted -= 1;
                s.held -= 1;
                covered = true;
            }
            p.used = true;
            if p.granted == 0 && p.wants && !p.starved {
                // Its last credit: it may have more to send.
                p.starved = true;
                s.starved += 1;
                ran_out = true;
            }
            if let Some(tree) = &p.tree {
                origin = tree;
            }
        }
        let name = &self.name;
        // Anycast: the path cost to a consumer the delivery may go to (0
        // for a local one), one routing-table question per consumer.
        let usable = |c: &Consumer| -> Option<u32> {
            if c.credit <= 0 || exclude == Some((c.conn.id, c.link)) {
                return None;
            }
            path_cost(table, name, from, &c.to)
        };
        let n = s.consumers.len();
        let mut wait = false;
        let targets: Targets = match self.distribution {
            Distribution::Multicast => {
                // Every consumer the delivery should reach takes a copy, or
                // none does: a consumer left out would silently miss it,
                // while a release tells the producer. A copy from a
                // neighbour cannot be refused whole (its siblings elsewhere
                // in the tree have theirs): it was promised credit here,
                // and where the credit has been lowered since (taken back,
                // or a consumer's flow), it waits for the link's credit.
                // So does a client's delivery sent on credit this router
                // granted: it was promised too, and the consumer without
                // credit now is typically a tree link just attached for a
                // router that came into the tree after the grant (its
                // credit is on its way). A client's delivery with no credit
                // behind it, or while the tree lacks a link to a router
                // with consumers, is refused: it could not go everywhere.
                let reaches = |c: &Consumer| serves_tree(table, origin, from, c, reach);
                // A copy from a neighbour or an edge connection: its
                // siblings went elsewhere already.
                let neighbour = from != &Hop::Local;
                if !neighbour
                    && (!tree_complete(table, &self.name, &s.consumers, origin)
                        || (!covered && s.consumers.iter().any(|c| reaches(c) && c.credit <= 0)))
                {
                    return (Routed::default(), ran_out);
                }
                // Promised (a neighbour's copy, a client's on credit
                // granted): a copy for a consumer without credit waits.
                wait = true;
                s.consumers
                    .iter_mut()
                    .filter(|c| reaches(c))
                    .map(|c| {
                        c.credit -= 1;
                        (c.conn.clone(), c.link, c.to.is_neighbour())
                    })
                    .collect()
            }
            _ if covered && !s.consumers.iter().any(|c| usable(c).is_some()) => {
                // Promised, and no consumer has credit now (the router took
                // back what the producer sent on, or a consumer lowered
                // its own): the consumer with the most credit, the nearest
                // among equals, takes it, and it waits on that consumer's
                // link for its credit. At most the credit taken back can so
                // wait (the engine counts it: `Connection::flow`).
                let Some((i, _)) = (0..n)
                    .filter_map(|i| {
                        let c = &s.consumers[i];
                        if exclude == Some((c.conn.id, c.link)) {
                            return None;
                        }
                        let cost = path_cost(table, name, from, &c.to)?;
                        Some((i, (std::cmp::Reverse(c.credit), cost)))
                    })
                    .min_by_key(|&(_, key)| key)
                else {
                    return (Routed::default(), ran_out);
                };
                let c = &mut s.consumers[i];
                c.credit -= 1;
                wait = true;
                smallvec![(c.conn.clone(), c.link, c.to.is_neighbour())]
            }
            Distribution::Closest => {
                // Local consumers first, then the nearest router; among
                // equals, the first attached.
                let Some((i, _)) = (0..n)
                    .filter_map(|i| Some((i, usable(&s.consumers[i])?)))
                    .min_by_key(|&(_, cost)| cost)
                else {
                    return (Routed::default(), ran_out);
                };
                let c = &mut s.consumers[i];
                c.credit -= 1;
                smallvec![(c.conn.clone(), c.link, c.to.is_neighbour())]
            }
            Distribution::Balanced => {
                // The consumer with the most credit, weighted down by its
                // path cost (a local consumer costs 0); ties go round-robin.
                let start = s.next;
                let best = (0..n)
                    .map(|i| (start + i) % n)
                    .filter_map(|i| {
                        let c = &s.consumers[i];
                        let cost = u64::from(usable(c)?).min(1 << 20);
                        let score = u64::from(c.available()) * 1024 / (1 + cost);
                        Some((score, std::cmp::Reverse((i + n - start) % n), i))
                    })
                    .max();
                let Some((_, _, i)) = best else {
                    return (Routed::default(), ran_out);
                };
                s.next = (i + 1) % n;
                let c = &mut s.consumers[i];
                c.credit -= 1;
                smallvec![(c.conn.clone(), c.link, c.to.is_neighbour())]
            }
        };
        if !targets.is_empty() {
            match from {
                Hop::Local | Hop::Edge(_) => s.ingress += 1,
                Hop::Neighbor(_) => s.transit += 1,
            }
            s.egress += targets.iter().filter(|(_, _, remote)| !remote).count() as u64;
        }
        (Routed { targets, wait }, ran_out)
    }

    /// The address as management shows it (`remote_routers` from `table`).
    pub fn report(&self, table: &RoutingTable) -> AddressReport {
        let s = self.lock();
        AddressReport {
            name: self.name.clone(),
            distribution: crate::config::Named::as_str(self.distribution),
            local_consumers: s.consumers.iter().filter(|c| c.to.is_own()).count() as u32,
            local_producers: s.producers.iter().filter(|p| p.from.is_own()).count() as u32,
            remote_routers: table.routers_for(&self.name).count() as u32,
            ingress: s.ingress,
            egress: s.egress,
            transit: s.transit,
        }
    }

    /// Its credit as the router reckons it, one line, for a person reading
    /// a stalled run (the simulator's liveness failures): each consumer's
    /// hop, credit and level; each producer's hop, credit held, and its
    /// lease state as of `now`.
    pub fn describe_credit(&self, now: Instant) -> String {
        let s = self.lock();
        let hop = |h: &Hop| match h {
            Hop::Local => "local".to_string(),
            Hop::Neighbor(r) => r.to_string(),
            Hop::Edge(r) => format!("edge {r}"),
        };
        let ms = |d: Duration| d.as_millis();
        let consumers: Vec<String> = s
            .consumers
            .iter()
            .map(|c| {
                let congested = if c.congested { " congested" } else { "" };
                format!(
                    "to {} credit {} level {}{congested}",
                    hop(&c.to),
                    c.credit,
                    c.level
                )
            })
            .collect();
        let producers: Vec<String> = s
            .producers
            .iter()
            .map(|p| {
                let mut flags = String::new();
                if p.short {
                    flags.push_str(" short");
                }
                if p.starved {
                    flags.push_str(" starved");
                } else if p.wants && p.from.is_neighbour() {
                    flags.push_str(" wants");
                }
                if p.reclaim {
                    flags.push_str(" reclaim");
                }
                if p.quiet_until > now {
                    flags.push_str(&format!(" quiet {}ms", ms(p.quiet_until - now)));
                }
                let used = p
                    .last_used
                    .map_or("never".into(), |t| format!("{}ms ago", ms(now - t)));
                format!(
                    "from {} granted {} used {used}{flags}",
                    hop(&p.from),
                    p.granted
                )
            })
            .collect();
        format!(
            "consumers [{}] producers [{}] held {} shorts {}",
            consumers.join("; "),
            producers.join("; "),
            s.held,
            s.shorts
        )
    }

    /// Accounts a producer's delivery that is not routed (it expired): it
    /// used one of the producer's credit.
    pub fn route_none(&self, conn: ConnId, link: LinkId) {
        let mut guard = self.lock();
        let s = &mut *guard;
        if let Some(p) = s.producers.get_mut((conn, link)) {
            if p.granted > 0 {
                p.granted -= 1;
                s.held -= 1;
            }
            p.used = true;
        }
    }

    /// Gives back consumer credit taken by [`route`](Self::route) for a
    /// delivery that was not sent after all.
    pub fn refund(&self, conn: ConnId, link: LinkId) {
        let mut s = self.lock();
        if let Some(c) = s
            .consumers
            .iter_mut()
            .find(|c| c.conn.id == conn && c.link == link)
        {
            c.credit += 1;
        }
        notify_producers(&mut s);
    }
}

/// How long a producer may hold credit without using any while another
/// producer of the address is short of its share; then the credit is taken
/// back (a receiver may lower link credit at any time, AMQP 1.0 §2.6.7;
/// what the producer sent meanwhile is released if no consumer can take
/// it).
pub const IDLE_LEASE: Duration = Duration::from_millis(250);

/// The longest a producer whose credit was taken back for idleness stays
/// quiet (see `Producer::quiet_for`).
const MAX_QUIET: Duration = Duration::from_secs(8);

/// What [`Address::grant`] decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The credit the producer link should hold.
    pub credit: u32,
    /// When to grant again: the producer is short of its share and some
    /// other producer's lease runs out then.
    pub recheck: Option<Instant>,
}

/// A producer's fair part of some credit.
///
/// Two measures: the credit the consumers have now (less what is on its
/// way to them), which bounds what may be promised; and their level, the
/// credit their last flows granted, which says what is fair. Between two
/// flows of a consumer, credit spent on deliveries on their way to it is
/// gone from the first and not from the second: reckoned on the first, a
/// thousand producers sharing a consumer's thousand credits would find
/// themselves short as soon as half of it was on its way, and take each
/// other's credit for idleness (devices that send once in a while are
/// idle most of the time) — the cause of seconds of latency for some.
#[derive(Debug, Clone, Copy)]
struct Part {
    /// Its share: the credit divided among the producers, rounded up.
    share: i64,
    /// The same, rounded down: what every producer can have at once.
    floor: i64,
    /// What the other producers leave of it.
    left: i64,
    /// Its share of the consumers' level, rounded up: what it may keep
    /// while others are short.
    level_share: i64,
    /// The same, rounded down: what idleness does not take back.
    level_floor: i64,
}

impl Part {
    /// The part of `credit`, shared by `sharing` producers, of which the
    /// others hold `held_by_others` (its level taken to be `credit`).
    fn of(credit: i64, sharing: usize, held_by_others: i64) -> Self {
        let n = sharing.max(1) as i64;
        Part {
            share: (credit + n - 1) / n,
            floor: credit / n,
            left: credit - held_by_others,
            level_share: (credit + n - 1) / n,
            level_floor: credit / n,
        }
    }

    /// With the consumers' level `level`, shared by `sharing` producers.
    fn with_level(self, level: i64, sharing: usize) -> Self {
        let n = sharing.max(1) as i64;
        Part {
            level_share: (level + n - 1) / n,
            level_floor: level / n,
            ..self
        }
    }
}

/// Whether `origin`'s tree for `address` has its data link to every
/// child router that leads to consumers.
fn tree_complete(
    table: &RoutingTable,
    address: &str,
    consumers: &[Consumer],
    origin: &RouterId,
) -> bool {
    table.multicast_next(origin, address).iter().all(|n| {
        consumers
            .iter()
            .any(|c| c.tree.as_ref() == Some(origin) && matches!(&c.to, Hop::Neighbor(m) if m == n))
    })
}

/// Multicast credit for producer `p`: every consumer its deliveries reach
/// must take each one, so its part is the smallest of its parts of those
/// consumers' credit (none while the tree's links are not all there). A
/// local consumer is shared by every producer; a tree's data link only by
/// the producers of that tree.
fn multicast_part(table: &RoutingTable, address: &str, s: &State, p: &Producer) -> Part {
    let me = table.me();
    let origin = p.tree.as_ref().unwrap_or(me);
    // Until the tree's link to every child leading to consumers is
    // attached, a copy could not go everywhere it should: no credit.
    if !tree_complete(table, address, &s.consumers, origin) {
        return Part::of(0, 1, 0);
    }
    let mut part = Part::of(0, 1, 0);
    for (n, c) in s
        .consumers
        .iter()
        .filter(|c| serves_tree(table, origin, &p.from, c, Reach::Tree))
        .enumerate()
    {
        let (sharing, held) = s
            .producers
            .iter()
            // A producer that came across an edge connection never
            // delivers back across it (`serves_tree`): it shares no credit
            // of the consumer there.
            .filter(|q| !matches!(c.to, Hop::Edge(_)) || q.from != c.to)
            .filter(|q| c.to.is_own() || c.tree.as_ref() == Some(q.tree.as_ref().unwrap_or(me)))
            .fold((0, 0), |(n, h), q| (n + 1, h + i64::from(q.granted)));
        let of_c = Part::of(
            i64::from(c.available()),
            sharing,
            held - i64::from(p.granted),
        );
        part = if n == 0 {
            of_c
        } else {
            Part {
                share: part.share.min(of_c.share),
                floor: part.floor.min(of_c.floor),
                left: part.left.min(of_c.left),
                level_share: part.level_share.min(of_c.level_share),
                level_floor: part.level_floor.min(of_c.level_floor),
            }
        };
    }
    part
}

/// Producer `i` is `wanted` credits short of its share: marks producers
/// whose lease ran out for their credit to be taken back (and tells them),
/// until that covers `wanted`. Returns when the next lease runs out, if
/// more is wanted. Scans the producers only once a lease may have run out.
///
/// What a producer sent before its cut reached it is routed as it comes: a
/// client's message refused whole if it finds no consumer credit (released
/// to the client, which sends it again), a neighbour's multicast copy held
/// until the credit comes (see [`Address::route`]).
fn reclaim_idle(
    s: &mut State,
    i: usize,
    mut wanted: i64,
    guaranteed: i64,
    now: Instant,
) -> Option<Instant> {
    if let Some(due) = s.lease_due
        && now < due
    {
        return Some(due);
    }
    let mut next: Option<Instant> = None;
    for (j, q) in s.producers.iter_mut().enumerate() {
        if j == i || i64::from(q.granted) <= guaranteed || q.reclaim {
            continue;
        }
        if std::mem::take(&mut q.used) || q.held_back() {
            // It is sending, or would be were the router reading it: its
            // lease goes on.
            q.active = now;
        }
        let due = q.active + IDLE_LEASE;
        if due <= now {
            q.reclaim = true;
            q.conn.post(ToConn::Recredit { link: q.link });
            wanted -= i64::from(q.granted) - guaranteed;
            if wanted <= 0 {
                s.lease_due = None; // the scan stopped short
                return None;
            }
        } else {
            next = Some(next.map_or(due, |n| n.min(due)));
        }
    }
    // With nothing to take back now, none can be before a lease from now
    // (credit granted from now on starts a lease): no scan until then.
    let next = next.unwrap_or(now + IDLE_LEASE);
    s.lease_due = Some(next);
    Some(next)
}

/// Sets producer `i`'s starved flag, keeping the count; returns whether
/// it changed.
fn set_starved(s: &mut State, i: usize, starved: bool) -> bool {
    let p = &mut s.producers[i];
    if p.starved == starved {
        return false;
    }
    p.starved = starved;
    s.starved = s.starved + usize::from(starved) - usize::from(!starved);
    true
}

/// No producer is starved any more: data links told otherwise are told so.
fn withdraw_demand(s: &mut State) {
    for c in s.consumers.iter_mut().filter(|c| c.offered) {
        c.offered = false;
        c.conn.post(ToConn::Demand {
            link: c.link,
            waiting: false,
        });
    }
}

/// Tells producers short of their share, but `i`, to ask again: as many
/// as `freed` credits came free (each can take one; one not told asks at
/// its own recheck). Telling every short producer for each credit freed
/// made a fan-in of N producers cost O(N²) grants per credit, each a scan
/// of the N: 4,000 senders took 5.8 s to attach beside a consumer.
fn notify_short(s: &mut State, i: usize, freed: u32) {
    notify_first(s, freed as usize, |j, p| j != i && p.short);
}

/// Tells producers holding no credit to ask again, as many as `freed`
/// credits came free: first those not found idle since they last used
/// credit that may have messages waiting (a client's link; a data link
/// whose neighbour says producers wait behind it), then other data links
/// not found idle, then idle ones if credits are left. An idle one told
/// first would take the credit a sender waits for, and hold it for a lease.
fn notify_empty(s: &mut State, freed: u32, serves: impl Fn(&Producer) -> bool) {
    let idle = |p: &Producer| p.quiet_for > Duration::ZERO;
    let waiting = |p: &Producer| p.wants;
    let empty = |p: &Producer| p.granted == 0 && serves(p);
    let mut left = freed as usize;
    left -= notify_first(s, left, |_, p| empty(p) && !idle(p) && waiting(p));
    left -= notify_first(s, left, |_, p| empty(p) && !idle(p) && !waiting(p));
    notify_first(s, left, |_, p| empty(p) && idle(p));
}

/// Tells every producer to ask again. The first told ask first: where
/// the credit that came free is less than the producers without any
/// want, the last told go without.
fn notify_producers(s: &mut State) {
    notify_first(s, usize::MAX, |_, _| true);
}

/// Tells the first `count` producers that `wants` to ask again, in list
/// order from another place each time, far from the last (5/8 of the way
/// round), so that it is never the same producers: told in list order,
/// the producers at its end went without round after round, for seconds.
/// Returns how many it told.
fn notify_first(s: &mut State, count: usize, wants: impl Fn(usize, &Producer) -> bool) -> usize {
    let n = s.producers.len();
    if n == 0 || count == 0 {
        return 0;
    }
    let start = s.notify_from % n;
    s.notify_from = start + n * 5 / 8 + 1;
    (start..n)
        .chain(0..start)
        .map(|j| (j, &s.producers[j]))
        .filter(|(j, p)| wants(*j, p))
        .take(count)
        .map(|(_, p)| p.conn.post(ToConn::Recredit { link: p.link }))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> (ConnHandle, crate::core::Inbox<ToConn>) {
        let (tx, rx) = crate::core::inbox();
        (ConnHandle { id: ConnId(id), tx }, rx)
    }

    fn table() -> RoutingTable {
        RoutingTable::standalone(RouterId::from("me"))
    }

    /// A fixed start time for the tests' clocks.
    fn now() -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    /// Adds a local producer on connection and link `n` for each `n` of
    /// `ids`; returns their connections' inboxes.
    fn local_producers(a: &Address, ids: std::ops::Range<u64>) -> Vec<crate::core::Inbox<ToConn>> {
        ids.map(|n| {
            let (p, rx) = conn(n);
            a.add_producer(p, link(n), Hop::Local, None, None, now());
            rx
        })
        .collect()
    }

    fn credited(conn: u64, n: u64) -> Option<Credited> {
        Some(Credited {
            conn: ConnId(conn),
            link: link(n),
            revoked: false,
        })
    }

    fn link(n: u64) -> LinkId {
        ferry_proto::engine::LinkId::from_raw(n)
    }

    #[test]
    fn a_delivery_never_goes_back_across_the_edge_connection_it_came_on() {
        let a = Address::new("q".into(), Distribution::Closest);
        let edge = Hop::Edge(RouterId::from("E1"));
        let (local, _lrx) = conn(1);
        let (uplink, _urx) = conn(2);
        a.add_consumer(local, link(1), Hop::Local, None);
        a.add_consumer(uplink, link(2), edge.clone(), None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 1);
        a.adjust_consumer_credit(&table(), ConnId(2), link(2), 5);
        // A client's delivery: its own router's consumer first (the edge
        // connection costs more), then across the edge connection.
        let to = |r: Routed| r.targets.iter().map(|t| t.1).collect::<Vec<_>>();
        assert_eq!(
            to(a.route(&table(), &Hop::Local, None, Reach::Tree)),
            [link(1)]
        );
        assert_eq!(
            to(a.route(&table(), &Hop::Local, None, Reach::Tree)),
            [link(2)]
        );
        // From across that edge connection: never back there.
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 1);
        assert_eq!(to(a.route(&table(), &edge, None, Reach::Tree)), [link(1)]);
        assert!(
            a.route(&table(), &edge, None, Reach::Tree)
                .targets
                .is_empty()
        );
        assert!(a.has_consumers_besides(&edge));
        a.remove_consumer(ConnId(1), link(1));
        assert!(!a.has_consumers_besides(&edge));
    }

    #[test]
    fn producers_share_the_consumer_budget_without_overlap() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, _prx) = conn(2);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.add_producer(p.clone(), link(2), Hop::Local, None, None, now());
        a.add_producer(p, link(3), Hop::Local, None, None, now());
        assert_eq!(
            a.grant(&table(), ConnId(2), link(2), 10, now()).credit,
            0,
            "no credit without consumer credit"
        );
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 15);
        // Shared fairly: half of 15 each, rounded down (what both can hold
        // at once), never more than 15.
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, now()).credit, 7);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, now()).credit, 7);
    }

    #[test]
    fn a_producer_above_its_share_is_cut_down_to_it_for_a_newcomer() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 10);
        a.add_producer(p.clone(), link(2), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 10);
        while prx.try_recv().is_some() {}
        // A second producer arrives: the first is told to recompute, and
        // is cut down to its share at once (a first producer took the
        // window, hundreds came after it)…
        a.add_producer(p, link(3), Hop::Local, None, None, t0);
        assert!(matches!(prx.try_recv(), Some(ToConn::Recredit { link: l }) if l == link(2)));
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 5);
        // …and the second gets the rest.
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250, t0).credit, 5);
    }

    /// A newcomer shrinks the others' shares, but only a producer holding
    /// credit has anything to recompute: those holding none are not told
    /// (else an attach storm of N producers on one address posts N²/2
    /// messages: 10,000 senders took 77 s to attach).
    #[test]
    fn a_newcomer_tells_only_producers_holding_credit() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (holder, mut hrx) = conn(2);
        let (idle, mut irx) = conn(3);
        let t0 = now();
        a.add_producer(idle.clone(), link(3), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table(), ConnId(3), link(3), 250, t0).credit, 0);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 10);
        a.add_producer(holder, link(2), Hop::Local, None, None, t0);
        assert!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit > 0);
        while hrx.try_recv().is_some() {}
        while irx.try_recv().is_some() {}
        a.add_producer(idle, link(4), Hop::Local, None, None, t0);
        assert!(matches!(hrx.try_recv(), Some(ToConn::Recredit { link: l }) if l == link(2)));
        assert!(
            irx.try_recv().is_none(),
            "a producer holding no credit was told"
        );
    }

    /// Once the consumers grant fewer credits than there are producers,
    /// every holder holds one, which a newcomer does not take from it (an
    /// anycast fair part is one credit at least): telling each holder of
    /// each newcomer made 10,000 senders beside a consumer granting 1,000
    /// credits attach in 50 s.
    #[test]
    fn a_newcomer_tells_no_producer_holding_one_credit() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 2);
        let mut holders = local_producers(&a, 2..4);
        for n in 2..4 {
            assert_eq!(a.grant(&table(), ConnId(n), link(n), 250, t0).credit, 1);
        }
        for rx in &mut holders {
            while rx.try_recv().is_some() {}
        }
        let (newcomer, _nrx) = conn(4);
        a.add_producer(newcomer, link(4), Hop::Local, None, None, t0);
        for rx in &mut holders {
            assert!(rx.try_recv().is_none(), "a holder of one credit was told");
        }
        // Asking all the same, each keeps its credit.
        for n in 2..4 {
            assert_eq!(a.grant(&table(), ConnId(n), link(n), 250, t0).credit, 1);
        }
        assert_eq!(a.grant(&table(), ConnId(4), link(4), 250, t0).credit, 0);
    }

    /// With as many producers as the consumer's credit, a flow's new
    /// credit is told to as many producers holding none as it brings, and
    /// to no holder (who could not take more): telling every producer at
    /// each flow cost a fan-in of N producers N grants per flow.
    #[test]
    fn a_flow_tells_as_many_empty_producers_as_it_brings_credits() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.consumer_flow(&table(), ConnId(1), link(1), 2, 2);
        let mut rxs = local_producers(&a, 2..5);
        let held: Vec<u32> = (2..5)
            .map(|n| a.grant(&table(), ConnId(n), link(n), 250, t0).credit)
            .collect();
        assert_eq!(held, [1, 1, 0]);
        // Producer 2 sends its credit's message; the consumer takes it
        // and gives the credit back.
        assert!(
            !a.route(&table(), &Hop::Local, credited(2, 2), Reach::Tree)
                .targets
                .is_empty()
        );
        for rx in &mut rxs {
            while rx.try_recv().is_some() {}
        }
        a.consumer_flow(&table(), ConnId(1), link(1), 1, 2);
        let told: Vec<bool> = rxs.iter_mut().map(|rx| rx.try_recv().is_some()).collect();
        assert!(!told[1], "producer 3, holding its one credit, was told");
        assert_eq!(told.iter().filter(|t| **t).count(), 1, "told: {told:?}");
    }

    /// A producer that held credit a lease without using any is found idle
    /// when the consumers' credit goes (the next router took back its own
    /// lease), not only when another producer takes it back: else it took
    /// the credit again each time it came back, ahead of the producer
    /// waiting for it (the simulator's producer behind idle data links).
    #[test]
    fn a_producer_that_loses_credit_it_never_used_is_found_idle() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.consumer_flow(&table(), ConnId(1), link(1), 1, 1);
        let _rxs = local_producers(&a, 2..4);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 1);
        assert_eq!(a.grant(&table(), ConnId(3), link(3), 250, t0).credit, 0);
        let t1 = t0 + IDLE_LEASE;
        a.consumer_flow(&table(), ConnId(1), link(1), -1, 0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t1).credit, 0);
        a.consumer_flow(&table(), ConnId(1), link(1), 1, 1);
        let t2 = t1 + Duration::from_millis(1);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t2).credit, 0);
        assert_eq!(a.grant(&table(), ConnId(3), link(3), 250, t2).credit, 1);
    }

    /// A flow is told only to producers the consumer can serve: one whose
    /// deliveries may not go that way (back across the edge connection
    /// they came on) cannot take its credit, and told in place of one that
    /// can, the other went without for good (it had asked when there was
    /// nothing, so it had no recheck): the 1,000-router simulation's
    /// producer left with messages and no credit.
    #[test]
    fn a_flow_tells_the_producers_its_consumer_can_serve() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let edge = Hop::Edge(RouterId::from("E1"));
        let (c, _crx) = conn(1);
        let t0 = now();
        a.add_consumer(c, link(1), edge.clone(), None);
        let mut across: Vec<_> = (2..5)
            .map(|n| {
                let (p, rx) = conn(n);
                a.add_producer(p, link(n), edge.clone(), None, None, t0);
                rx
            })
            .collect();
        let mut local = local_producers(&a, 5..6).remove(0);
        for n in 2..6 {
            assert_eq!(a.grant(&table(), ConnId(n), link(n), 250, t0).credit, 0);
        }
        for rx in across.iter_mut().chain([&mut local]) {
            while rx.try_recv().is_some() {}
        }
        a.consumer_flow(&table(), ConnId(1), link(1), 1, 1);
        assert!(
            local.try_recv().is_some(),
            "the producer it serves was not told"
        );
        assert!(across.iter_mut().all(|rx| rx.try_recv().is_none()));
        assert_eq!(a.grant(&table(), ConnId(5), link(5), 250, t0).credit, 1);
    }

    /// A's table in a mesh A - B where B has consumers of `q`.
    fn table_towards_b() -> RoutingTable {
        use crate::routing::tests::harness::{Net, id};
        let (a, b) = (id("A"), id("B"));
        let mut net = Net::with_topology(&[a.clone(), b.clone()], &[(a.clone(), b.clone(), 1)]);
        net.add_address(&b, "q");
        net.pump();
        net.table(&a).clone()
    }

    fn demands(rx: &mut crate::core::Inbox<ToConn>) -> Vec<bool> {
        std::iter::from_fn(|| rx.try_recv())
            .filter_map(|m| match m {
                ToConn::Demand { waiting, .. } => Some(waiting),
                _ => None,
            })
            .collect()
    }

    /// A producer waiting for credit that this router has none to give
    /// makes the data link towards the consumers say so (its flow's
    /// `available`), once; the link is told again when the producer has
    /// credit. A producer that came from that very neighbour does not make
    /// the link ask: demand follows the paths a delivery may take, so it
    /// never goes round a cycle.
    #[test]
    fn a_starved_producer_asks_the_next_router_for_credit() {
        let table = table_towards_b();
        let b = Hop::Neighbor(RouterId::from("B"));
        let a = Address::new("q".into(), Distribution::Balanced);
        let t0 = now();
        let (link_to_b, mut to_b) = conn(1);
        a.add_consumer(link_to_b, link(1), b.clone(), None);
        let (from_b, _) = conn(2);
        a.add_producer(from_b, link(2), b.clone(), None, None, t0);
        a.set_wants(&table, ConnId(2), link(2), true, t0);
        assert_eq!(a.grant(&table, ConnId(2), link(2), 250, t0).credit, 0);
        assert!(demands(&mut to_b).is_empty(), "demand went back to B");

        let (local, _lrx) = conn(3);
        a.add_producer(local, link(3), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table, ConnId(3), link(3), 250, t0).credit, 0);
        assert_eq!(demands(&mut to_b), [true]);
        assert_eq!(a.grant(&table, ConnId(3), link(3), 250, t0).credit, 0);
        assert!(demands(&mut to_b).is_empty(), "told twice");

        a.consumer_flow(&table, ConnId(1), link(1), 1, 1);
        assert_eq!(a.grant(&table, ConnId(3), link(3), 250, t0).credit, 1);
        assert_eq!(demands(&mut to_b), [false]);
        // It sends its one message: it may have more.
        let routed = a.route(&table, &Hop::Local, credited(3, 3), Reach::Tree);
        assert_eq!(routed.targets.len(), 1);
        assert_eq!(demands(&mut to_b), [true]);
    }

    /// A client producer found idle where the consumers' credit is gone
    /// asks again when its quiet time ends, and, still holding none, makes
    /// the data link towards the consumers ask: a device that sends again
    /// after a long silence is not left waiting for a flow that nobody
    /// asks for.
    #[test]
    fn a_quiet_producer_asks_again_and_carries_its_demand_on() {
        let table = table_towards_b();
        let a = Address::new("q".into(), Distribution::Balanced);
        let t0 = now();
        let (link_to_b, mut to_b) = conn(1);
        a.add_consumer(link_to_b, link(1), Hop::Neighbor(RouterId::from("B")), None);
        a.consumer_flow(&table, ConnId(1), link(1), 1, 1);
        let (p, _prx) = conn(2);
        a.add_producer(p, link(2), Hop::Local, None, None, t0);
        let (q, _qrx) = conn(3);
        a.add_producer(q, link(3), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table, ConnId(2), link(2), 250, t0).credit, 1);
        let t1 = t0 + IDLE_LEASE;
        a.consumer_flow(&table, ConnId(1), link(1), -1, 0);
        let g = a.grant(&table, ConnId(2), link(2), 250, t1);
        assert_eq!(g.credit, 0);
        let due = g
            .recheck
            .expect("a quiet producer that wants credit asks again");
        assert!(due > t1);
        let _ = demands(&mut to_b);
        assert_eq!(a.grant(&table, ConnId(2), link(2), 250, due).credit, 0);
        assert_eq!(demands(&mut to_b), [true]);
    }

    /// A producer the router is not reading (over its byte budget) sends
    /// nothing the router sees, yet is not idle: what it sent waits in its
    /// socket, on the credit it holds. Taking that credit back for
    /// idleness is not for it; once read again and unused, it is idle.
    #[test]
    fn a_producer_held_back_by_its_byte_budget_keeps_its_credit() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, _prx) = conn(2);
        let t0 = now();
        let budget = ByteBudget::new(1000);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 2);
        a.add_producer(
            p.clone(),
            link(2),
            Hop::Local,
            None,
            Some(budget.clone()),
            t0,
        );
        a.add_producer(p.clone(), link(3), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 1);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250, t0).credit, 1);
        let charge = budget.charge(1000);
        // A third producer, short, a lease later: the idle one gives its
        // credit back, the one held back keeps its own.
        a.add_producer(p, link(4), Hop::Local, None, None, t0);
        let later = t0 + IDLE_LEASE;
        assert_eq!(a.grant(&table(), ConnId(2), link(4), 250, later).credit, 0);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250, later).credit, 0);
        assert_eq!(
            a.grant(&table(), ConnId(2), link(2), 250, later).credit,
            1,
            "held back, not idle"
        );
        assert_eq!(a.grant(&table(), ConnId(2), link(4), 250, later).credit, 1);
        drop(charge);
        let much_later = later + IDLE_LEASE;
        assert_eq!(
            a.grant(&table(), ConnId(2), link(3), 250, much_later)
                .credit,
            0
        );
        assert_eq!(
            a.grant(&table(), ConnId(2), link(2), 250, much_later)
                .credit,
            0,
            "read again and unused: idle"
        );
    }

    /// Credit taken back from a producer (cut to its share for others, or
    /// for idleness) may have been sent on before the cut reached it: those
    /// deliveries were promised, so where no consumer has credit for them
    /// they wait for some rather than being released. A delivery that was
    /// never promised is released.
    #[test]
    fn what_a_producer_sent_on_credit_taken_back_waits_for_a_consumer() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, _prx) = conn(2);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 10);
        a.add_producer(p.clone(), link(2), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 10);
        // Its consumer's connection is congested: nothing more is
        // promised, nothing it holds is taken back.
        a.set_congested(ConnId(1), link(1), true);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 10);
        a.set_congested(ConnId(1), link(1), false);
        a.add_producer(p, link(3), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250, t0).credit, 0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 5);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250, t0).credit, 5);
        let route = |link_no, revoked| {
            let from = Credited {
                conn: ConnId(2),
                link: link(link_no),
                revoked,
            };
            a.route(&table(), &Hop::Local, Some(from), Reach::Tree)
        };
        // The first had sent all 10 before its cut reached it: 5 on the
        // credit it holds, 5 on credit taken back. The consumer has credit
        // for every one of them.
        for revoked in [false, true] {
            for _ in 0..5 {
                let r = route(2, revoked);
                assert_eq!((r.targets.len(), r.wait), (1, false));
            }
        }
        // The second sends on the credit it holds: the consumer has none
        // left for it, so each waits for the consumer's credit.
        for _ in 0..5 {
            let r = route(3, false);
            assert_eq!((r.targets.len(), r.wait), (1, true));
        }
        // A delivery beyond any credit granted is released.
        assert!(route(3, false).targets.is_empty());
        // The consumer lowers its credit: that is taken back (no more is
        // promised until what waits is through).
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 3);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 250, t0).credit, 0);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 250, t0).credit, 0);
    }

    #[test]
    fn credit_is_cut_when_the_consumer_leaves() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        a.add_consumer(c, link(1), Hop::Local, None);
        a.add_producer(p, link(2), Hop::Local, None, None, now());
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 5);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, now()).credit, 5);
        a.remove_consumer(ConnId(1), link(1));
        assert!(matches!(prx.try_recv(), Some(ToConn::Recredit { .. })));
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, now()).credit, 0);
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
            a.adjust_consumer_credit(&table(), ConnId(1), link(1), 10);
            a.adjust_consumer_credit(&table(), ConnId(1), link(2), 10);
            let picks: Vec<LinkId> = (0..10)
                .map(|_| a.route(&table(), &Hop::Local, None, Reach::Tree).targets[0].1)
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
        a.add_producer(p, link(3), Hop::Local, None, None, now());
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 10);
        a.adjust_consumer_credit(&table(), ConnId(1), link(2), 3);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 100, now()).credit, 3);
        assert_eq!(
            a.route(&table(), &Hop::Local, credited(2, 3), Reach::Tree)
                .targets
                .len(),
            2
        );
    }

    #[test]
    fn a_multicast_copy_from_a_neighbour_is_never_refused_for_want_of_credit() {
        let a = Address::new("m".into(), Distribution::Multicast);
        let (c, _crx) = conn(1);
        let (p, _prx) = conn(2);
        a.add_consumer(c.clone(), link(1), Hop::Local, None);
        a.add_consumer(c, link(2), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 1);
        // A client's message needs credit at every consumer, or is
        // refused whole.
        a.add_producer(p.clone(), link(3), Hop::Local, None, None, now());
        assert!(
            a.route(&table(), &Hop::Local, credited(2, 3), Reach::Tree)
                .targets
                .is_empty()
        );
        // A neighbour's copy was promised credit (since taken back): every
        // consumer gets it, one without credit owes it. (Local reach: the
        // standalone table knows no tree of `n`.)
        let n = Hop::Neighbor(RouterId::from("n"));
        a.add_producer(
            p,
            link(4),
            n.clone(),
            Some(RouterId::from("n")),
            None,
            now(),
        );
        let targets = a.route(&table(), &n, credited(2, 4), Reach::Local);
        assert_eq!(targets.targets.len(), 2);
        // The debt is paid before anything more is promised.
        a.adjust_consumer_credit(&table(), ConnId(1), link(2), 1);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, now()).credit, 0);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 1);
        a.adjust_consumer_credit(&table(), ConnId(1), link(2), 1);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, now()).credit, 1);
    }

    #[test]
    fn a_clients_multicast_delivery_on_granted_credit_waits_for_a_new_consumer() {
        let a = Address::new("m".into(), Distribution::Multicast);
        let (c, _crx) = conn(1);
        let (p, _prx) = conn(2);
        a.add_consumer(c.clone(), link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 5);
        a.add_producer(p.clone(), link(3), Hop::Local, None, None, now());
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, now()).credit, 5);
        // A consumer attaches after the grant, with no credit yet (in a
        // mesh: a tree link to a router that just joined the tree). The
        // delivery sent on the credit granted reaches both; the new
        // consumer owes its copy.
        a.add_consumer(c, link(2), Hop::Local, None);
        let route = || {
            a.route(&table(), &Hop::Local, credited(2, 3), Reach::Tree)
                .targets
        };
        assert_eq!(route().len(), 2);
        // Nothing more is granted until the new consumer has credit…
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, now()).credit, 0);
        // …and a delivery beyond the credit granted is refused whole.
        assert!(route().is_empty());
    }

    #[test]
    fn idle_credit_is_taken_back_for_a_producer_short_of_its_share() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 2);
        a.add_producer(p.clone(), link(2), Hop::Local, None, None, t0);
        a.add_producer(p.clone(), link(3), Hop::Local, None, None, t0);
        a.add_producer(p, link(4), Hop::Local, None, None, t0);
        // Two producers take one each of the consumer's 2 and send nothing.
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, t0).credit, 1);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, t0).credit, 1);
        while prx.try_recv().is_some() {}
        // The third gets none, and is told when to ask again.
        let g = a.grant(&table(), ConnId(2), link(4), 10, t0);
        assert_eq!(
            g,
            Grant {
                credit: 0,
                recheck: Some(t0 + IDLE_LEASE)
            }
        );
        assert!(
            prx.try_recv().is_none(),
            "leases still running: nobody told"
        );
        // Then the idle leases have run out: their holders are told…
        let later = t0 + IDLE_LEASE;
        assert_eq!(a.grant(&table(), ConnId(2), link(4), 10, later).credit, 0);
        let told: Vec<LinkId> = std::iter::from_fn(|| prx.try_recv())
            .map(|m| match m {
                ToConn::Recredit { link } => link,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(told, [link(2)], "one idle lease covers what is wanted");
        // …give their credit back, and the short producer is told to take it.
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, later).credit, 0);
        assert!(matches!(prx.try_recv(), Some(ToConn::Recredit { link: l }) if l == link(4)));
        assert_eq!(a.grant(&table(), ConnId(2), link(4), 10, later).credit, 1);
    }

    /// A thousand devices sharing a consumer's thousand credits, each
    /// sending now and then: one whose credit was taken back for idleness
    /// while the consumer's credit was on its way is not made to wait
    /// (quiet) for a lease or more: the consumer grants one credit per
    /// producer, and its next flow gives the idle one its credit back.
    #[test]
    fn an_idle_producer_has_its_credit_back_when_the_consumer_grants_enough() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.consumer_flow(&table(), ConnId(1), link(1), 3, 3);
        for l in 2..5 {
            a.add_producer(p.clone(), link(l), Hop::Local, None, None, t0);
        }
        for l in 2..5 {
            assert_eq!(a.grant(&table(), ConnId(2), link(l), 10, t0).credit, 1);
        }
        // Link 2 sends its one; a lease later it is short, and the first
        // idle producer gives its credit back to it.
        a.route(&table(), &Hop::Local, credited(2, 2), Reach::Tree);
        let later = t0 + IDLE_LEASE;
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, later).credit, 0);
        while prx.try_recv().is_some() {}
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, later).credit, 0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, later).credit, 1);
        // The consumer's flow gives its credit back: link 3 has its one at
        // once, not a lease later.
        a.consumer_flow(&table(), ConnId(1), link(1), 1, 3);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, later).credit, 1);
    }

    #[test]
    fn a_producer_using_its_credit_keeps_its_lease() {
        let a = Address::new("q".into(), Distribution::Balanced);
        let (c, _crx) = conn(1);
        let (p, mut prx) = conn(2);
        let t0 = now();
        a.add_consumer(c, link(1), Hop::Local, None);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 2);
        a.add_producer(p.clone(), link(2), Hop::Local, None, None, t0);
        a.add_producer(p, link(3), Hop::Local, None, None, t0);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, t0).credit, 1);
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, t0).credit, 1);
        // Link 2 sends one, and its credit comes back at once.
        let later = t0 + IDLE_LEASE;
        a.route(&table(), &Hop::Local, credited(2, 2), Reach::Tree);
        a.adjust_consumer_credit(&table(), ConnId(1), link(1), 1);
        assert_eq!(a.grant(&table(), ConnId(2), link(2), 10, later).credit, 1);
        while prx.try_recv().is_some() {}
        // Link 3 is short of nothing; link 2's lease is fresh: neither is
        // taken back.
        assert_eq!(a.grant(&table(), ConnId(2), link(3), 10, later).credit, 1);
        assert!(prx.try_recv().is_none());
    }
}
