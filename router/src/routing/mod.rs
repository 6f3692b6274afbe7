//! The routing protocol between routers: link state, as in Qpid Dispatch
//! Router, as a pure state machine. No sockets, no tasks, no clock: the
//! caller passes time in, feeds it what neighbours send, and sends what it
//! asks for, so the simulator runs it unchanged. `docs/ROUTING.md` has the
//! message formats and the rules.
//!
//! [`Routing`] has the usual four kinds of methods:
//!
//! - inputs: [`neighbor_connected`](Routing::neighbor_connected),
//!   [`neighbor_disconnected`](Routing::neighbor_disconnected),
//!   [`handle_message`](Routing::handle_message),
//!   [`handle_timeout`](Routing::handle_timeout);
//! - commands: [`add_local_address`](Routing::add_local_address),
//!   [`remove_local_address`](Routing::remove_local_address);
//! - outputs, to poll after every input or command:
//!   [`poll_transmit`](Routing::poll_transmit) until `None`,
//!   [`poll_table`](Routing::poll_table), and
//!   [`poll_timeout`](Routing::poll_timeout) to re-arm the one timer;
//! - getters.
//!
//! ```text
//!  neighbour state (per inter-router connection)
//!
//!   connected ──HELLO heard──▶ heard ──its HELLO lists us──▶ two-way
//!       ▲                       │  ▲                          │
//!       └──── hello_max_age ────┘  └── HELLO without us ──────┤
//!             of silence                                      │
//!       ◀──────────────── hello_max_age of silence ───────────┘
//!   (disconnect: gone at once, from any state)
//! ```
//!
//! Only two-way neighbours are in this router's link-state record and get
//! floods and advertisements; HELLOs go to every connected neighbour.

mod id;
mod linkstate;
mod message;
mod mobile;
mod neighbor;
mod pacer;
mod signature;
mod table;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ratelog::RateLimited;

pub use id::RouterId;
pub use message::{
    ADVERTS_PER_MESSAGE, Advert, ControlMessage, PROTOCOL_VERSION, RoutingError, digest,
};
pub use signature::{
    Auth, RecordAuth, Signature, SignatureError, addresses_payload, link_state_payload,
};
pub use table::RoutingTable;

use id::Version;
use linkstate::{LinkStateDb, LsRecord, Offer};
use mobile::{LocalAddresses, MobileDb, Update, full_message};
use neighbor::Neighbor;
use pacer::Pacer;

/// Timers of the routing protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// How often a HELLO goes to each connected neighbour (default 1 s).
    /// Also the least time between two requests for the same record.
    pub hello_interval: Duration,
    /// Silence after which a neighbour is down (default 3 s). Should be a
    /// few `hello_interval`s.
    pub hello_max_age: Duration,
    /// How often each two-way neighbour is told the versions of every
    /// record this router holds, so lost or reordered updates are noticed
    /// and asked for (default 5 s).
    pub ra_interval: Duration,
    /// How long the records of an unreachable router are kept before they
    /// are forgotten (default 60 s). Its addresses leave the routing table
    /// at once; the records are kept so a quick merge needs no resync.
    pub purge_after: Duration,
    /// The least time between two table computations while changes keep
    /// coming (default 2 ms); the first change after a quiet spell is
    /// computed at once (`pacer.rs`).
    pub spf_hold_min: Duration,
    /// What that time doubles up to in a long storm of changes, such as a
    /// cold start of a large mesh (default 50 ms).
    pub spf_hold_max: Duration,
}

/// Instance and sequence numbers at or above this are refused: no real
/// router reaches them (an instance is a start time in nanoseconds since
/// 1970, 2^62 is in 2116; a sequence number counts changes), so a record
/// claiming one is forged or corrupt, and accepting it could leave its
/// router no number above it (issue #20). A router whose own sequence
/// number would reach it moves to its next instance instead.
pub const VERSION_LIMIT: u64 = 1 << 62;

/// How far ahead of this router's own clock another router's instance
/// may be, in instance units (nanoseconds): a day. An instance is its
/// router's start time, so a record claiming one further ahead is forged
/// or corrupt. Without this bound a record claiming the largest instance
/// below [`VERSION_LIMIT`] would leave its router no instance to move to;
/// with it, a router pushed past a forged record is at most a day ahead,
/// and moves on again from there (issue #20).
pub const INSTANCE_AHEAD: u64 = 86_400 * 1_000_000_000;

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            hello_interval: Duration::from_secs(1),
            hello_max_age: Duration::from_secs(3),
            ra_interval: Duration::from_secs(5),
            purge_after: Duration::from_secs(60),
            spf_hold_min: Duration::from_millis(2),
            spf_hold_max: Duration::from_millis(50),
        }
    }
}

/// What a [`Routing::summary`] is computed from. The table is held, so a
/// new table cannot be taken for it at the same address.
#[derive(Debug)]
struct SummaryKey {
    table: Arc<RoutingTable>,
    ls: u64,
    mobile: u64,
    local: Version,
}

impl PartialEq for SummaryKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.table, &other.table)
            && (self.ls, self.mobile, self.local) == (other.ls, other.mobile, other.local)
    }
}

/// The instance and sequence numbers of `msg`, if the instance reaches
/// `instances` or the sequence number [`VERSION_LIMIT`].
fn out_of_bounds(msg: &ControlMessage, instances: u64) -> Option<(u64, u64)> {
    let beyond = |instance: u64, seq: u64| {
        (instance >= instances || seq >= VERSION_LIMIT).then_some((instance, seq))
    };
    match msg {
        ControlMessage::Hello { instance, .. } => beyond(*instance, 0),
        ControlMessage::RouterAdvert { adverts, .. } => adverts
            .iter()
            .find_map(|a| beyond(a.instance, a.ls_seq.max(a.ma_seq))),
        ControlMessage::RouterDigest { .. } => None,
        ControlMessage::LinkState { instance, seq, .. }
        | ControlMessage::MobileAddresses { instance, seq, .. } => beyond(*instance, *seq),
        ControlMessage::LinkStateRequest { .. } | ControlMessage::MobileAddressRequest { .. } => {
            None
        }
    }
}

/// Which record a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Request {
    LinkState,
    Mobile,
}

/// The routing protocol state of one router. See the [module docs](self).
#[derive(Debug)]
pub struct Routing {
    me: RouterId,
    instance: u64,
    config: RoutingConfig,
    neighbors: BTreeMap<RouterId, Neighbor>,
    /// Every router's link-state record, ours included.
    ls: LinkStateDb,
    /// Remote routers' addresses.
    mobile: MobileDb,
    /// Our addresses.
    local: LocalAddresses,
    out: VecDeque<(RouterId, ControlMessage)>,
    next_hello: Instant,
    next_ra: Instant,
    /// When each record was last asked for.
    requested: HashMap<(Request, RouterId), Instant>,
    /// Log lines a neighbour can cause, rate-limited: records refused (out
    /// of bounds, not signed by their router), messages claiming another
    /// sender, and records of this router it has to move past.
    refused: RateLimited,
    moved_past: RateLimited,
    /// Routers with records that are not reachable, and since when.
    unreachable_since: BTreeMap<RouterId, Instant>,
    /// The earliest of those instants (`poll_timeout` is read after every
    /// input; a scan of every unreachable router there cost a 1,000-router
    /// simulation 7 % of its time).
    first_unreachable: Option<Instant>,
    /// Neighbours to send advertisements to at the end of this input.
    pending_adverts: BTreeSet<RouterId>,
    /// Our last [`summary`](Self::summary), and what it was computed from.
    summary_of: Option<(SummaryKey, (u32, u64))>,
    /// Re-flood our link-state record even if unchanged (someone had a
    /// newer one of us).
    force_ls: bool,
    /// Flood our full address list (someone had a newer one of us).
    force_ma_full: bool,
    /// The databases changed: recompute the table when next needed.
    dirty: bool,
    /// When that may be.
    pacer: Pacer,
    /// The time of the latest input.
    clock: Instant,
    /// Our first instance and when we started: the clock other routers'
    /// instances are checked against ([`INSTANCE_AHEAD`]).
    origin: (u64, Instant),
    table: Arc<RoutingTable>,
    table_fresh: bool,
    /// Signs our records and checks others' (a mesh that signs); `None`:
    /// records are neither signed nor checked.
    auth: Option<Auth>,
    /// Our address record's signature, and the version it signs.
    local_sig: Option<(Version, Signature)>,
}

impl Routing {
    /// A router `id` in its run number `instance`, which must be greater
    /// than that of any earlier run of a router with this id (e.g. the
    /// start time in milliseconds since the epoch): a restarted router's
    /// records win over its old ones by instance, whatever their sequence
    /// numbers.
    pub fn new(id: RouterId, instance: u64, config: RoutingConfig, now: Instant) -> Self {
        let mut ls = LinkStateDb::default();
        ls.set(
            &id,
            LsRecord {
                version: Version::new(instance, 0),
                neighbors: BTreeMap::new(),
                sig: None,
            },
        );
        Self {
            table: Arc::new(RoutingTable::standalone(id.clone())),
            me: id,
            instance,
            next_hello: now + config.hello_interval,
            next_ra: now + config.ra_interval,
            config,
            neighbors: BTreeMap::new(),
            ls,
            mobile: MobileDb::default(),
            local: LocalAddresses::default(),
            out: VecDeque::new(),
            requested: HashMap::new(),
            unreachable_since: BTreeMap::new(),
            first_unreachable: None,
            pending_adverts: BTreeSet::new(),
            summary_of: None,
            force_ls: false,
            force_ma_full: false,
            dirty: false,
            pacer: Pacer::default(),
            clock: now,
            origin: (instance, now),
            table_fresh: true,
            auth: None,
            local_sig: None,
            refused: RateLimited::new("refused routing records", 5, Duration::from_secs(10)),
            moved_past: RateLimited::new(
                "records of this router moved past",
                5,
                Duration::from_secs(10),
            ),
        }
    }

    /// This router signs the records it originates with `auth`, and
    /// believes another router's record only if `auth` verifies its
    /// signature as that router's (`signature.rs`). Call it before any
    /// input.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        if let Some(mut own) = self.ls.get(&self.me).cloned() {
            own.sig = self.sign(&link_state_payload(
                &self.me,
                own.version.instance,
                own.version.seq,
                &own.neighbors,
            ));
            self.ls.set(&self.me, own);
        }
        self
    }

    // ----- getters -----

    /// This router's id.
    pub fn id(&self) -> &RouterId {
        &self.me
    }

    /// This router's instance number (it only moves up, if another router
    /// reports a newer instance of this id: see `docs/ROUTING.md`).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The timers in use.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// The routing table as of the last [`poll_table`](Self::poll_table)
    /// (which is what brings it up to date).
    pub fn table(&self) -> &Arc<RoutingTable> {
        &self.table
    }

    /// Whether `neighbor` is connected and two-way (adjacent).
    pub fn is_adjacent(&self, neighbor: &RouterId) -> bool {
        self.neighbors.get(neighbor).is_some_and(Neighbor::two_way)
    }

    /// The two-way neighbours, sorted by id.
    pub fn adjacent(&self) -> impl Iterator<Item = &RouterId> {
        self.neighbors
            .iter()
            .filter(|(_, n)| n.two_way())
            .map(|(id, _)| id)
    }

    /// This router's addresses with local consumers, as advertised.
    pub fn local_addresses(&self) -> impl Iterator<Item = &str> {
        self.local.current().iter().map(|a| &**a)
    }

    // ----- inputs -----

    /// An inter-router connection to `neighbor` is up, with this router's
    /// `cost` for it (from its connector or listener; 0 counts as 1). Call
    /// it before handing over any message from `neighbor`. The link is used
    /// once the neighbour's HELLO lists this router, at the larger of the
    /// two ends' costs (each end floods its own cost; path computation
    /// takes the maximum, so both ends agree). Calling it again for a
    /// connected neighbour changes the cost.
    pub fn neighbor_connected(&mut self, neighbor: RouterId, cost: u32, now: Instant) {
        if neighbor == self.me {
            tracing::warn!("inter-router connection to this router itself ignored");
            return;
        }
        self.neighbors
            .entry(neighbor.clone())
            .and_modify(|n| n.cost = cost.max(1))
            .or_insert_with(|| Neighbor::new(cost));
        let hello = self.hello();
        self.out.push_back((neighbor, hello));
        self.flush(now, false);
    }

    /// The connection to `neighbor` dropped: it is down at once, and
    /// messages still queued for it are dropped.
    pub fn neighbor_disconnected(&mut self, neighbor: &RouterId, now: Instant) {
        if self.neighbors.remove(neighbor).is_some() {
            self.out.retain(|(to, _)| to != neighbor);
            self.pending_adverts.remove(neighbor);
        }
        self.flush(now, false);
    }

    /// A control message from connected neighbour `from` (messages from a
    /// router that is not connected are ignored).
    pub fn handle_message(&mut self, from: &RouterId, msg: ControlMessage, now: Instant) {
        if !self.neighbors.contains_key(from) {
            tracing::debug!("control message from {from}, not a neighbour: ignored");
            return;
        }
        if let Some((instance, seq)) = out_of_bounds(&msg, self.instance_limit(now)) {
            self.refused.note(|| {
                tracing::warn!(
                    "refused a routing record from neighbour {from}: instance {instance} or sequence {seq} is beyond what any router reaches (forged or corrupt)"
                );
            });
            return;
        }
        let flood = match &msg {
            ControlMessage::Hello { id, instance, seen } => {
                self.on_hello(from, id, *instance, seen, now);
                false
            }
            ControlMessage::RouterAdvert { id, adverts } => {
                if id == from {
                    for a in adverts {
                        self.on_advert(from, &a.id, a.instance, a.ls_seq, a.ma_seq, now);
                    }
                } else {
                    self.refused.note(|| {
                        tracing::warn!("RA from neighbour {from} claiming to be {id} ignored");
                    });
                }
                false
            }
            ControlMessage::RouterDigest {
                id,
                routers,
                digest,
            } => {
                if id == from {
                    self.on_digest(from, (*routers, *digest));
                } else {
                    self.refused.note(|| {
                        tracing::warn!(
                            "RA digest from neighbour {from} claiming to be {id} ignored"
                        );
                    });
                }
                false
            }
            ControlMessage::LinkState {
                id,
                instance,
                seq,
                neighbors,
                sig,
            } => self.on_link_state(from, id, Version::new(*instance, *seq), neighbors, sig),
            ControlMessage::LinkStateRequest { id } => {
                if let Some(m) = self.ls.message(id) {
                    self.out.push_back((from.clone(), m));
                }
                false
            }
            ControlMessage::MobileAddresses {
                id,
                instance,
                seq,
                added,
                removed,
                full,
                sig,
            } => {
                let version = Version::new(*instance, *seq);
                let update = (added.as_slice(), removed.as_slice(), *full);
                self.on_mobile(from, id, version, update, sig.as_ref(), now)
            }
            ControlMessage::MobileAddressRequest { id } => {
                let answer = if *id == self.me {
                    Some(self.local_full())
                } else {
                    self.mobile.message(id)
                };
                if let Some(m) = answer {
                    self.out.push_back((from.clone(), m));
                }
                false
            }
        };
        if flood {
            self.flood(&msg, Some(from));
        }
        self.flush(now, false);
    }

    /// Runs the timers due at `now`: HELLOs, neighbour expiry, periodic
    /// advertisements, purge of long-unreachable routers. Call it when the
    /// instant [`poll_timeout`](Self::poll_timeout) gave has come (calling it
    /// early or more often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        let max_age = self.config.hello_max_age;
        for (id, n) in &mut self.neighbors {
            if n.expire(now, max_age) {
                tracing::info!(
                    "neighbour {id} silent for {:?} (hello_max_age): taken as down",
                    max_age
                );
            }
        }
        if now >= self.next_hello {
            self.next_hello = now + self.config.hello_interval;
            let hello = self.hello();
            for id in self.neighbors.keys() {
                self.out.push_back((id.clone(), hello.clone()));
            }
        }
        let digests_due = now >= self.next_ra;
        if digests_due {
            self.next_ra = now + self.config.ra_interval;
        }
        self.refresh();
        // A request's time matters for a `hello_interval` only; kept, the
        // stamps of records asked for and never received (routers an RA
        // named that nobody has) would pile up.
        let interval = self.config.hello_interval;
        self.requested.retain(|_, &mut at| now < at + interval);
        let purge_after = self.config.purge_after;
        let due: Vec<RouterId> = self
            .unreachable_since
            .iter()
            .filter(|&(_, &since)| since + purge_after <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            tracing::debug!("records of router {id}, unreachable, purged");
            self.unreachable_since.remove(&id);
            self.ls.remove(&id);
            self.mobile.remove(&id);
            self.requested.retain(|(_, r), _| *r != id);
            self.dirty = true;
        }
        self.first_unreachable = self.unreachable_since.values().min().copied();
        self.flush(now, digests_due);
    }

    // ----- commands -----

    /// This router now has local consumers for `address` (a no-op if it
    /// already had). The caller counts consumers: call it for the first
    /// and [`remove_local_address`](Self::remove_local_address) after the
    /// last. The change is flooded at once as a delta.
    pub fn add_local_address(&mut self, address: &str) {
        self.local.add(address);
        self.flush_addresses();
    }

    /// The last local consumer for `address` went away (a no-op if there
    /// was none).
    pub fn remove_local_address(&mut self, address: &str) {
        self.local.remove(address);
        self.flush_addresses();
    }

    // ----- outputs -----

    /// The next control message to send, and the neighbour to send it to.
    /// Call it after every input until it returns `None`. Flooding is
    /// already expanded into one message per neighbour.
    pub fn poll_transmit(&mut self) -> Option<(RouterId, ControlMessage)> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    /// Re-read it after every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let max_age = self.config.hello_max_age;
        let purge_after = self.config.purge_after;
        let deadlines = self.neighbors.values().filter_map(|n| n.deadline(max_age));
        let purge = self.first_unreachable.map(|t| t + purge_after);
        let table = self.dirty.then(|| self.pacer.due(self.clock));
        [self.next_hello, self.next_ra]
            .into_iter()
            .chain(table)
            .chain(deadlines)
            .chain(purge)
            .min()
    }

    /// The routing table, if it changed since the last call (the first call
    /// returns the initial table). Call it after every input, or after a
    /// batch of them: the table is recomputed here, once for all the
    /// changes since the last call, so a driver that hands over every
    /// queued message before polling pays for one computation. In a storm
    /// of changes the computation waits for the pacer (`pacer.rs`):
    /// [`poll_timeout`](Self::poll_timeout) then names when. The caller
    /// swaps it in for the data path (e.g. an `Arc` behind a lock held for
    /// a pointer copy).
    pub fn poll_table(&mut self) -> Option<Arc<RoutingTable>> {
        self.refresh();
        std::mem::take(&mut self.table_fresh).then(|| self.table.clone())
    }

    // ----- message handlers -----

    fn on_hello(
        &mut self,
        from: &RouterId,
        id: &RouterId,
        instance: u64,
        seen: &[RouterId],
        now: Instant,
    ) {
        if id != from {
            self.refused.note(|| {
                tracing::warn!("HELLO from neighbour {from} claiming to be {id} ignored");
            });
            return;
        }
        let lists_us = seen.contains(&self.me);
        let Some(n) = self.neighbors.get_mut(from) else {
            return;
        };
        let was_heard = n.heard();
        let was_two_way = n.two_way();
        n.last_heard = Some(now);
        n.lists_us = lists_us;
        let two_way = n.two_way();
        if !was_heard || !lists_us {
            // Answer at once, listing it, so it turns two-way without
            // waiting for our next HELLO.
            let hello = self.hello();
            self.out.push_back((from.clone(), hello));
        }
        if two_way && !was_two_way {
            self.pending_adverts.insert(from.clone());
        }
        self.saw_instance(from, instance);
    }

    fn on_advert(
        &mut self,
        from: &RouterId,
        id: &RouterId,
        instance: u64,
        ls_seq: u64,
        ma_seq: u64,
        now: Instant,
    ) {
        if *id == self.me {
            if self.auth.is_some() {
                // An advertisement is not signed: ask for the records it
                // claims, and move past them only if they prove ours.
                if Version::new(instance, ls_seq) > self.ls.version(id).unwrap_or_default() {
                    self.request(Request::LinkState, from, id, now);
                }
                if Version::new(instance, ma_seq) > Version::new(self.instance, self.local.seq) {
                    self.request(Request::Mobile, from, id, now);
                }
                return;
            }
            self.check_self_ls(Version::new(instance, ls_seq));
            self.check_self_ma(Version::new(instance, ma_seq));
            return;
        }
        if self.auth.is_none() {
            // Signed, only a record proves a new instance.
            self.saw_instance(id, instance);
        }
        if Some(Version::new(instance, ls_seq)) > self.ls.version(id) {
            self.request(Request::LinkState, from, id, now);
        }
        // No record is the same as sequence 0: no addresses.
        let ours = self.mobile.get(id).map(|r| r.version).unwrap_or_default();
        if ma_seq > 0 && Version::new(instance, ma_seq) > ours {
            self.request(Request::Mobile, from, id, now);
        }
    }

    /// A neighbour's digest of its versions: if ours differs, one of us
    /// lacks a record, so it gets our whole list, and asks for what it
    /// lacks; what we lack shows when our own digest reaches it.
    fn on_digest(&mut self, from: &RouterId, theirs: (u32, u64)) {
        self.refresh();
        if self.summary() != theirs {
            self.pending_adverts.insert(from.clone());
        }
    }

    /// How many routers we advertise, and the digest of their versions:
    /// computed again only when the table or a record changed (every
    /// neighbour's digest is compared with it; at 1,000 routers, computing
    /// it for each was the largest cost of a simulation between changes).
    fn summary(&mut self) -> (u32, u64) {
        let key = SummaryKey {
            table: self.table.clone(),
            ls: self.ls.generation(),
            mobile: self.mobile.generation(),
            local: Version::new(self.instance, self.local.seq),
        };
        if let Some((of, summary)) = &self.summary_of
            && *of == key
        {
            debug_assert_eq!(*summary, self.compute_summary());
            return *summary;
        }
        let summary = self.compute_summary();
        self.summary_of = Some((key, summary));
        summary
    }

    fn compute_summary(&self) -> (u32, u64) {
        let mut n = 0u32;
        let versions = self.versions(self.table.routers()).inspect(|_| n += 1);
        let digest = digest(versions);
        (n, digest)
    }

    /// Returns whether to flood the message on.
    fn on_link_state(
        &mut self,
        from: &RouterId,
        id: &RouterId,
        version: Version,
        neighbors: &[(RouterId, u32)],
        sig: &Option<Signature>,
    ) -> bool {
        let neighbors: BTreeMap<RouterId, u32> = neighbors
            .iter()
            .filter(|(n, _)| n != id)
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        // Only a record newer than ours changes anything: only such a
        // record's signature is checked.
        let newer = Some(version) > self.ls.version(id);
        if newer
            && !self.verified(
                from,
                id,
                &link_state_payload(id, version.instance, version.seq, &neighbors),
                sig,
            )
        {
            return false;
        }
        if *id == self.me {
            self.check_self_ls(version);
            if Some(version) < self.ls.version(id)
                && let Some(m) = self.ls.message(id)
            {
                self.out.push_back((from.clone(), m));
            }
            return false;
        }
        self.saw_instance(id, version.instance);
        let record = LsRecord {
            version,
            neighbors,
            sig: sig.clone(),
        };
        match self.ls.offer(id, record) {
            Offer::Stored => {
                self.requested.remove(&(Request::LinkState, id.clone()));
                self.dirty = true;
                true
            }
            Offer::Older => {
                // The sender is behind: give it our newer copy.
                if let Some(m) = self.ls.message(id) {
                    self.out.push_back((from.clone(), m));
                }
                false
            }
            Offer::Same => false,
        }
    }

    /// Returns whether to flood the message on. `update` is the added
    /// and removed addresses and whether it is the full list.
    fn on_mobile(
        &mut self,
        from: &RouterId,
        id: &RouterId,
        version: Version,
        (added, removed, full): (&[String], &[String], bool),
        sig: Option<&Signature>,
        now: Instant,
    ) -> bool {
        if *id == self.me {
            if self.auth.is_none() {
                self.check_self_ma(version);
            } else if version > Version::new(self.instance, self.local.seq) {
                // Only a full list can prove ours: ask for one.
                if !full {
                    self.request(Request::Mobile, from, id, now);
                } else {
                    let set: BTreeSet<&str> = added.iter().map(String::as_str).collect();
                    let payload = addresses_payload(id, version.instance, version.seq, set);
                    if self.verified(from, id, &payload, &sig.cloned()) {
                        self.check_self_ma(version);
                    }
                }
            }
            return false;
        }
        let auth = self.auth.clone();
        let check = |set: &BTreeSet<Arc<str>>| match &auth {
            Some(auth) => {
                let payload =
                    addresses_payload(id, version.instance, version.seq, set.iter().map(|a| &**a));
                auth.verify(id, &payload, sig.ok_or(SignatureError::Missing)?)
            }
            None => Ok(()),
        };
        let check: Option<mobile::Check<'_>> = auth.is_some().then_some(&check);
        if auth.is_none() {
            // Unsigned, any update shows the instance (a gap too).
            self.saw_instance(id, version.instance);
        }
        match self
            .mobile
            .apply(id, version, added, removed, full, sig, check)
        {
            Update::Applied => {
                // Signed: once the record is proven.
                self.saw_instance(id, version.instance);
                if full {
                    self.requested.remove(&(Request::Mobile, id.clone()));
                }
                self.dirty = true;
                true
            }
            Update::Gap => {
                self.request(Request::Mobile, from, id, now);
                false
            }
            Update::Refused(why) => {
                self.refuse(from, id, &why);
                false
            }
            Update::Stale => false,
        }
    }

    /// Whether `sig` proves `payload` is router `id`'s (always, in a mesh
    /// that does not sign). A record that is not is logged (rate-limited)
    /// and dropped.
    fn verified(
        &mut self,
        from: &RouterId,
        id: &RouterId,
        payload: &[u8],
        sig: &Option<Signature>,
    ) -> bool {
        let Some(auth) = &self.auth else { return true };
        let result = match sig {
            Some(sig) => auth.verify(id, payload, sig),
            None => Err(SignatureError::Missing),
        };
        match result {
            Ok(()) => true,
            Err(why) => {
                self.refuse(from, id, &why);
                false
            }
        }
    }

    fn refuse(&mut self, from: &RouterId, id: &RouterId, why: &SignatureError) {
        self.refused.note(|| {
            tracing::warn!(
                "refused a record of router {id} relayed by neighbour {from}: {why} (forged, corrupt, or from a router outside this mesh's ca)"
            );
        });
    }

    /// `payload` signed by this router, if the mesh signs. A key that
    /// cannot sign is logged: the record goes out unsigned, and the other
    /// routers refuse it.
    fn sign(&self, payload: &[u8]) -> Option<Signature> {
        let auth = self.auth.as_ref()?;
        match auth.sign(payload) {
            Ok(sig) => Some(sig),
            Err(e) => {
                tracing::error!("cannot sign this router's routing record: {e}");
                None
            }
        }
    }

    // ----- helpers -----

    /// Our HELLO: the neighbours heard from lately.
    fn hello(&self) -> ControlMessage {
        ControlMessage::Hello {
            id: self.me.clone(),
            instance: self.instance,
            seen: self
                .neighbors
                .iter()
                .filter(|(_, n)| n.heard())
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }

    /// Our full address list.
    fn local_full(&mut self) -> ControlMessage {
        let version = Version::new(self.instance, self.local.seq);
        let sig = self.local_sig(version);
        full_message(&self.me, version, self.local.current(), sig)
    }

    /// The signature of our address record as it is, at `version`.
    fn local_sig(&mut self, version: Version) -> Option<Signature> {
        self.auth.as_ref()?;
        match &self.local_sig {
            Some((v, sig)) if *v == version => Some(sig.clone()),
            _ => {
                let current = self.local.current().iter().map(|a| &**a);
                let sig = self.sign(&addresses_payload(
                    &self.me,
                    version.instance,
                    version.seq,
                    current,
                ))?;
                self.local_sig = Some((version, sig.clone()));
                Some(sig)
            }
        }
    }

    /// Sends `msg` to every two-way neighbour but `except`.
    fn flood(&mut self, msg: &ControlMessage, except: Option<&RouterId>) {
        for (id, n) in &self.neighbors {
            if n.two_way() && Some(id) != except {
                self.out.push_back((id.clone(), msg.clone()));
            }
        }
    }

    /// Asks neighbour `to` for its copy of a record of `id`, unless that
    /// record was asked for less than a `hello_interval` ago.
    fn request(&mut self, kind: Request, to: &RouterId, id: &RouterId, now: Instant) {
        let key = (kind, id.clone());
        if self
            .requested
            .get(&key)
            .is_some_and(|&t| now < t + self.config.hello_interval)
        {
            return;
        }
        self.requested.insert(key, now);
        let msg = match kind {
            Request::LinkState => ControlMessage::LinkStateRequest { id: id.clone() },
            Request::Mobile => ControlMessage::MobileAddressRequest { id: id.clone() },
        };
        self.out.push_back((to.clone(), msg));
    }

    /// Router `id` runs `instance` now: the records of an older instance
    /// describe a process that is gone. Its addresses are dropped, and its
    /// link-state record too (until the new one arrives, the router is
    /// unreachable rather than reached over links it may no longer have).
    fn saw_instance(&mut self, id: &RouterId, instance: u64) {
        if *id == self.me {
            return;
        }
        if self.mobile.saw_instance(id, instance) {
            self.dirty = true;
        }
        if self.ls.version(id).is_some_and(|v| v.instance < instance) {
            self.ls.remove(id);
            self.dirty = true;
        }
    }

    /// The instances other routers' records may claim at `now`: below
    /// [`INSTANCE_AHEAD`] past our own clock (our first instance plus the
    /// time since), and below [`VERSION_LIMIT`].
    fn instance_limit(&self, now: Instant) -> u64 {
        let (instance, started) = self.origin;
        let elapsed =
            u64::try_from(now.saturating_duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        instance
            .saturating_add(elapsed)
            .saturating_add(INSTANCE_AHEAD)
            .min(VERSION_LIMIT)
    }

    /// Our next instance, when a sequence number of ours would reach
    /// [`VERSION_LIMIT`]: every record starts again at sequence 1 and wins
    /// by instance.
    fn next_instance(&mut self) {
        self.instance += 1;
        self.local.seq = 0;
        self.force_ls = true;
        self.force_ma_full = true;
        tracing::warn!(
            "this router's sequence numbers ran out: it now announces itself as instance {}",
            self.instance
        );
    }

    /// Someone holds our link-state record at `version`. If that is newer
    /// than ours (we restarted with a reused instance number, or a clock
    /// went backwards), move past it.
    fn check_self_ls(&mut self, version: Version) {
        let own = self.ls.version(&self.me).unwrap_or_default();
        if version <= own {
            return;
        }
        self.moved_past.note(|| {
            tracing::warn!(
                "the mesh holds a newer link-state record of this router (it restarted with an \
                 instance number used before, its clock went back, or a neighbour forged it): \
                 moving past it"
            );
        });
        self.adopt_instance(version.instance);
        if version.instance == self.instance
            && let Some(record) = self.ls.get(&self.me).cloned()
        {
            let seq = if record.version.instance == self.instance {
                record.version.seq.max(version.seq)
            } else {
                version.seq
            };
            self.ls.set(
                &self.me,
                LsRecord {
                    version: Version::new(self.instance, seq),
                    ..record
                },
            );
        }
        self.force_ls = true;
    }

    /// Someone holds our address record at `version`: as for
    /// [`check_self_ls`](Self::check_self_ls).
    fn check_self_ma(&mut self, version: Version) {
        if version <= Version::new(self.instance, self.local.seq) {
            return;
        }
        self.moved_past.note(|| {
            tracing::warn!(
                "the mesh holds a newer address record of this router (it restarted with an \
                 instance number used before, its clock went back, or a neighbour forged it): \
                 moving past it"
            );
        });
        self.adopt_instance(version.instance);
        if version.instance == self.instance {
            self.local.seq = self.local.seq.max(version.seq);
        }
        self.force_ma_full = true;
    }

    fn adopt_instance(&mut self, instance: u64) {
        if instance > self.instance {
            self.instance = instance;
            self.force_ls = true;
            self.force_ma_full = true;
        }
    }

    /// Floods our address changes.
    fn flush_addresses(&mut self) {
        if std::mem::take(&mut self.force_ma_full) {
            let _ = self.local.take_delta();
            self.local.seq += 1;
            let full = self.local_full();
            self.flood(&full, None);
        } else if let Some((added, removed)) = self.local.take_delta() {
            let sig = self.local_sig(Version::new(self.instance, self.local.seq));
            let delta = ControlMessage::MobileAddresses {
                id: self.me.clone(),
                instance: self.instance,
                seq: self.local.seq,
                added,
                removed,
                full: false,
                sig,
            };
            self.flood(&delta, None);
        }
    }

    /// Ends every input: floods our own records if they changed and sends
    /// the advertisements due (`digests_due`: the periodic digest to every
    /// two-way neighbour too).
    fn flush(&mut self, now: Instant, digests_due: bool) {
        self.clock = now;
        let own_ls = self.ls.version(&self.me);
        if self.local.seq >= VERSION_LIMIT - 1
            || own_ls.is_some_and(|v| v.instance == self.instance && v.seq >= VERSION_LIMIT - 1)
        {
            self.next_instance();
        }
        let two_way: BTreeMap<RouterId, u32> = self
            .neighbors
            .iter()
            .filter(|(_, n)| n.two_way())
            .map(|(id, n)| (id.clone(), n.cost))
            .collect();
        let own = self.ls.get(&self.me);
        if std::mem::take(&mut self.force_ls) || own.map(|r| &r.neighbors) != Some(&two_way) {
            let seq = match own {
                Some(r) if r.version.instance == self.instance => r.version.seq + 1,
                _ => 1,
            };
            let version = Version::new(self.instance, seq);
            let sig = self.sign(&link_state_payload(
                &self.me,
                version.instance,
                version.seq,
                &two_way,
            ));
            self.ls.set(
                &self.me,
                LsRecord {
                    version,
                    neighbors: two_way,
                    sig,
                },
            );
            if let Some(m) = self.ls.message(&self.me) {
                self.flood(&m, None);
            }
            self.dirty = true;
        }
        self.flush_addresses();
        if self.pending_adverts.is_empty() && !digests_due {
            return;
        }
        // Advertisements list the reachable routers: bring the table up to date.
        self.refresh();
        let listed = std::mem::take(&mut self.pending_adverts);
        let listed: Vec<RouterId> = listed
            .into_iter()
            .filter(|id| self.is_adjacent(id))
            .collect();
        if !listed.is_empty() {
            // The versions of every record we hold of a reachable router
            // (ourselves included).
            let adverts = self.adverts(self.table.routers());
            for to in &listed {
                self.send_adverts(to, &adverts);
            }
        }
        if digests_due {
            let (routers, digest) = self.summary();
            let adjacent: Vec<RouterId> = self
                .adjacent()
                .filter(|id| !listed.contains(id))
                .cloned()
                .collect();
            for to in adjacent {
                let msg = ControlMessage::RouterDigest {
                    id: self.me.clone(),
                    routers,
                    digest,
                };
                self.out.push_back((to, msg));
            }
        }
    }

    /// The versions of the records we hold of `routers`.
    fn adverts<'a>(&self, routers: impl Iterator<Item = &'a RouterId>) -> Vec<Advert> {
        self.versions(routers).collect()
    }

    /// The same, one at a time.
    fn versions<'a>(
        &self,
        routers: impl Iterator<Item = &'a RouterId>,
    ) -> impl Iterator<Item = Advert> {
        routers.filter_map(|id| {
            if *id == self.me {
                let own = self.ls.version(id).unwrap_or_default();
                return Some(Advert {
                    id: id.clone(),
                    instance: self.instance,
                    ls_seq: own.seq,
                    ma_seq: self.local.seq,
                });
            }
            let ls = self.ls.version(id)?;
            let ma_seq = self
                .mobile
                .get(id)
                .filter(|m| m.version.instance == ls.instance)
                .map_or(0, |m| m.version.seq);
            Some(Advert {
                id: id.clone(),
                instance: ls.instance,
                ls_seq: ls.seq,
                ma_seq,
            })
        })
    }

    /// `adverts` to neighbour `to`, [`ADVERTS_PER_MESSAGE`] to a message.
    fn send_adverts(&mut self, to: &RouterId, adverts: &[Advert]) {
        for chunk in adverts.chunks(ADVERTS_PER_MESSAGE) {
            let msg = ControlMessage::RouterAdvert {
                id: self.me.clone(),
                adverts: chunk.to_vec(),
            };
            self.out.push_back((to.clone(), msg));
        }
    }

    /// Recomputes the table if the databases changed and the pacer allows
    /// it (else [`poll_timeout`](Self::poll_timeout) names when it will);
    /// notes which routers became unreachable (as of the latest input).
    fn refresh(&mut self) {
        let now = self.clock;
        if !self.dirty || self.pacer.due(now) > now {
            return;
        }
        self.dirty = false;
        self.pacer
            .computed(now, self.config.spf_hold_min, self.config.spf_hold_max);
        let table = RoutingTable::compute(&self.me, &self.ls, &self.mobile);
        let known = self
            .ls
            .iter()
            .map(|(id, _)| id)
            .chain(self.mobile.iter().map(|(id, _)| id));
        for id in known {
            if table.is_reachable(id) {
                self.unreachable_since.remove(id);
            } else if !self.unreachable_since.contains_key(id) {
                self.unreachable_since.insert(id.clone(), now);
            }
        }
        self.first_unreachable = self.unreachable_since.values().min().copied();
        // A router that went out of reach has its addresses forgotten, not
        // just unmapped: when it is reachable again, maybe restarted, its
        // own word maps them (an advertisement shows the gap, a full list
        // follows). Kept, the old record would map them the moment the
        // router is reachable, its new instance unmap them, and its first
        // update map them again: each flap detaches and attaches the
        // address's data links, racing the messages on them. A record of
        // a router not reachable yet is fresh (it came after the router
        // was last seen): kept, so its addresses are mapped as soon as
        // the link state makes it reachable, not 5 s later at the next
        // advertisement (address and link-state records travel apart).
        let gone: Vec<RouterId> = self
            .mobile
            .iter()
            .map(|(id, _)| id)
            .filter(|id| self.table.is_reachable(id) && !table.is_reachable(id))
            .cloned()
            .collect();
        for id in gone {
            self.mobile.remove(&id);
        }
        // Routers that came within reach (a partition healed, a router
        // joined): each two-way neighbour is told the versions we hold of
        // them at once. Their records may not have changed, so nothing
        // floods them, and a neighbour that missed them while they were
        // out of reach (records of unreachable routers are not advertised:
        // one restarted meanwhile holds none) would otherwise lack them
        // until the next advertisement, `ra_interval` later.
        let gained: Vec<&RouterId> = table
            .routers()
            .filter(|id| **id != self.me && !self.table.is_reachable(id))
            .collect();
        if !gained.is_empty() {
            let adverts = self.adverts(gained.into_iter());
            let adjacent: Vec<RouterId> = self.adjacent().cloned().collect();
            for to in &adjacent {
                self.send_adverts(to, &adverts);
            }
        }
        if table != *self.table {
            self.table = Arc::new(table);
            self.table_fresh = true;
        }
    }
}
