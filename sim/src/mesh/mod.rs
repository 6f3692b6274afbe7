//! The simulated mesh: routers, the links between them, clients, and the
//! virtual network that joins them. The step loop is in [`step`](self),
//! connections in `conns`, faults in `faults`, the settled-state checks in
//! `checks`.

mod builder;
mod checks;
mod conns;
mod edges;
mod faults;
mod sched;
mod step;

pub use builder::MeshBuilder;
pub use checks::{CREDIT_GRACE, MULTICAST_PARKED, PARKED, STREAMED};
pub use conns::SimConn;
pub use edges::{EdgeReport, FAILOVER_BOUND, REATTACH_BOUND, SimEdge, Uplink};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_router::config::Limits;
use ferry_router::routing::{RoutingConfig, RoutingTable};

use crate::client::{App, Consumer, ConsumerSpec, Ctx, Producer, ProducerSpec, SimClient};
use crate::clock::Clock;
use crate::fault::Action;
use crate::ledger::Ledger;
use crate::log::EventLog;
use crate::monitor::Monitor;
use crate::report::{RouterTotals, Summary};
use crate::rng::SimRng;
use crate::router::{MULTICAST_PREFIX, SimRouter};
use crate::tap::Tamper;
use crate::violation::Violation;

/// Settings of a mesh that are not its topology.
#[derive(Debug, Clone)]
pub struct Options {
    /// The routing protocol's timers.
    pub routing: RoutingConfig,
    /// Router limits.
    pub limits: Limits,
    /// Latency between a client and its router.
    pub client_latency: Duration,
    /// Inter-router link latencies are drawn from this range.
    pub link_latency: (Duration, Duration),
    /// Bytes per second each direction of an inter-router link carries
    /// (`None`: no limit, bytes take only the latency). With a limit a
    /// sender whose unsent bytes fill the send buffer waits
    /// ([`wire::SEND_BUFFER`](crate::wire::SEND_BUFFER)).
    pub bandwidth: Option<u64>,
    /// The chance, in percent, that an inter-router link is QUIC-style
    /// (its routers see a QUIC connection: 8 data lanes, session window
    /// 128; its pipes deliver each stream in order but the streams
    /// independently: [`Pipe::quic`](crate::wire::Pipe::quic)). 0: none.
    pub quic: u64,
    /// Print log lines as they happen.
    pub echo: bool,
    /// Log every AMQP frame (with `FERRY_SIM_FRAMES=1`).
    pub log_frames: bool,
    /// Routers sign their routing records and check others'
    /// ([`crate::pki`]: a simulated PKI, one key per router).
    pub signing: bool,
    /// Virtual hosts every router has (`[[vhost]]`, anonymous clients may
    /// do anything in each); empty: no policy.
    pub vhosts: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            routing: RoutingConfig::default(),
            limits: Limits::default(),
            client_latency: Duration::from_micros(100),
            link_latency: (Duration::from_micros(200), Duration::from_millis(5)),
            bandwidth: None,
            quic: 0,
            echo: false,
            log_frames: std::env::var_os("FERRY_SIM_FRAMES").is_some_and(|v| v == "1"),
            vhosts: Vec::new(),
            signing: crate::scenario::signing_default(),
        }
    }
}

/// An inter-router link of the true topology, with its connector's state.
#[derive(Debug, Clone)]
pub struct SimLink {
    /// The dialing router.
    pub a: usize,
    /// The accepting router.
    pub b: usize,
    /// The link cost.
    pub cost: u32,
    /// One-way latency.
    pub latency: Duration,
    /// QUIC-style: its connections are QUIC connections to the routers,
    /// and its pipes deliver streams independently.
    pub quic: bool,
    /// Added latency (the delay fault).
    pub extra: Duration,
    /// Cut: connections reset, none can be made.
    pub cut: bool,
    /// Silent: bytes vanish.
    pub blackholed: bool,
    /// Silent one way: bytes a→b (0) or b→a (1) vanish.
    pub oneway: [bool; 2],
    /// The live connection, if any.
    pub conn: Option<u64>,
    /// When the connector dials next.
    pub next_dial: Option<Instant>,
    backoff: Duration,
    connected_at: Option<Instant>,
    /// Injected bugs, per direction (a→b, b→a).
    pub tamper: [Option<Tamper>; 2],
    /// When bytes of its connection last reached the receiving router, per
    /// direction (a→b, b→a); reset when a connection is dialed.
    pub heard: [Option<Instant>; 2],
    /// When it was last disturbed: a connection of it closed, reset or
    /// silenced, or dialed.
    pub broken_at: Option<Instant>,
}

impl SimLink {
    /// Whether bytes vanish on it, in either direction (a partition
    /// aside).
    pub fn is_silent(&self) -> bool {
        self.blackholed || self.oneway.iter().any(|o| *o)
    }
}

/// A deterministic in-process mesh of real routers. Build one with
/// [`Mesh::builder`].
pub struct Mesh {
    /// No TLS, no users: simulated connections are plain AMQP.
    pub(crate) security: std::sync::Arc<ferry_router::security::Security>,
    pub(crate) seed: u64,
    /// The seed the mesh was built with (QUIC-style pipes draw from it).
    pub(crate) wire_seed: u64,
    /// Frames QUIC-style pipes delivered ahead of an earlier frame of
    /// another stream.
    pub(crate) quic_overtakes: u64,
    pub(crate) clock: Clock,
    pub(crate) rng: SimRng,
    pub(crate) log: EventLog,
    pub(crate) options: Options,
    pub(crate) routers: Vec<SimRouter>,
    /// The router ids, by index.
    pub(crate) names: Vec<String>,
    pub(crate) links: Vec<SimLink>,
    /// The edge routers and their uplink dialers.
    pub(crate) edges: Vec<SimEdge>,
    /// Partition group of each router (0: the main one).
    pub(crate) group: Vec<u32>,
    pub(crate) conns: BTreeMap<u64, Box<SimConn>>,
    pub(crate) clients: Vec<SimClient>,
    pub(crate) ledger: Ledger,
    pub(crate) monitor: Monitor,
    pub(crate) actions: BTreeMap<(Duration, u64), Action>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) totals: RouterTotals,
    pub(crate) faults_injected: usize,
    /// The router ids as routing sees them, by index.
    pub(crate) ids: Vec<ferry_router::routing::RouterId>,
    /// What the checks keep between calls.
    pub(crate) checks: checks::CheckCache,
    /// Where the step loop has work.
    pub(crate) sched: sched::Sched,
    /// Control messages the routers received.
    pub(crate) control: crate::report::ControlCost,
    /// The mesh's PKI, if routers sign their records.
    pub(crate) pki: Option<Arc<crate::pki::SimPki>>,
    /// Routers under the hostile fault, by index.
    pub(crate) hostile: BTreeMap<usize, crate::hostile::HostileState>,
    /// Injections of the hostile fault so far.
    pub(crate) hostile_generation: u64,
    /// What healed hostile routers did, in order.
    pub(crate) hostile_ended: Vec<(
        String,
        crate::hostile::Hostile,
        crate::hostile::HostileReport,
    )>,
    logged_violations: usize,
    next_conn: u64,
    next_action: u64,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("seed", &self.seed)
            .field("now", &self.clock.elapsed())
            .field("routers", &self.routers.len())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// A builder: routers, links, options, then [`MeshBuilder::build`].
    pub fn builder() -> MeshBuilder {
        MeshBuilder::default()
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The ledger of messages.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The first failed invariant, if any. The run stops at it.
    pub fn failure(&self) -> Option<&Violation> {
        self.violations.first()
    }

    /// The router ids, in id order.
    pub fn router_ids(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The interior routers' ids (not the edge routers'), in id order.
    pub fn interior_ids(&self) -> Vec<String> {
        (0..self.routers.len())
            .filter(|&r| self.edge_of(r).is_none())
            .map(|r| self.names[r].clone())
            .collect()
    }

    /// Whether router `id` is an edge router.
    pub fn is_edge(&self, id: &str) -> bool {
        self.router_index(id)
            .is_some_and(|r| self.edge_of(r).is_some())
    }

    /// The edge routers, each with the interior routers its edge
    /// connectors dial, in order of preference.
    pub fn edge_uplinks(&self) -> Vec<(String, Vec<String>)> {
        self.edges
            .iter()
            .map(|e| {
                let via = e.uplinks.iter().map(|u| self.names[u.interior].clone());
                (self.names[e.router].clone(), via.collect())
            })
            .collect()
    }

    /// The interior router edge router `id`'s uplink is attached to now
    /// (`None`: no uplink, or `id` is not an edge router).
    pub fn uplink_of(&self, id: &str) -> Option<String> {
        let e = self.edge_of(self.router_index(id)?)?;
        self.edges[e].attached.map(|i| self.names[i].clone())
    }

    /// The index of router `id`.
    pub fn router_index(&self, id: &str) -> Option<usize> {
        self.routers.iter().position(|r| r.id == id)
    }

    /// Whether router `id` is running.
    pub fn is_up(&self, id: &str) -> bool {
        self.router_index(id)
            .is_some_and(|i| self.routers[i].is_up())
    }

    /// The routing table router `id` uses now (`None` if it is down).
    pub fn table(&self, id: &str) -> Option<Arc<RoutingTable>> {
        let r = &self.routers[self.router_index(id)?];
        r.node.as_ref().map(|n| n.core.mesh().table())
    }

    /// The topology's links: (dialer, acceptor, cost).
    pub fn links(&self) -> Vec<(String, String, u32)> {
        self.links
            .iter()
            .map(|l| {
                (
                    self.routers[l.a].id.clone(),
                    self.routers[l.b].id.clone(),
                    l.cost,
                )
            })
            .collect()
    }

    /// Client `i`.
    pub fn client(&self, i: usize) -> &SimClient {
        &self.clients[i]
    }

    /// Puts client `i` in virtual host `vhost` (the `hostname` of its
    /// open), before it first connects.
    pub fn set_vhost(&mut self, i: usize, vhost: &str) {
        self.clients[i].vhost = Some(vhost.to_string());
        self.ledger.set_vhost(i, vhost);
    }

    /// How many clients there are.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Adds a producer on router `router`; it connects at once. Returns
    /// its client index.
    pub fn add_producer(&mut self, router: &str, spec: ProducerSpec) -> usize {
        let multicast = is_multicast(&spec.address);
        self.add_client(router, App::Producer(Producer::new(spec, multicast)))
    }

    /// Adds a consumer on router `router`; it connects at once. Returns
    /// its client index.
    pub fn add_consumer(&mut self, router: &str, spec: ConsumerSpec) -> usize {
        self.add_client(router, App::Consumer(Consumer::new(spec)))
    }

    fn add_client(&mut self, router: &str, app: App) -> usize {
        let r = self
            .router_index(router)
            .unwrap_or_else(|| panic!("no router {router}"));
        let index = self.clients.len();
        let rng = self.rng.fork();
        let now = self.clock.now();
        let client = SimClient::new(index, r, app, now, rng);
        let what = match &client.app {
            App::Producer(p) => format!(
                "producer of {} msgs of {} bytes to {}{}{}",
                p.spec.messages,
                p.spec.body_size,
                p.spec.address,
                if p.spec.presettled {
                    " (pre-settled)"
                } else {
                    ""
                },
                if p.spec.anonymous { " (anonymous)" } else { "" }
            ),
            App::Consumer(c) => format!(
                "consumer of {} (credit {}, {:?} per msg)",
                c.spec.address, c.spec.credit, c.spec.delay
            ),
        };
        self.note(&client.name.clone(), format_args!("new {what} on {router}"));
        self.clients.push(client);
        index
    }

    /// Detaches every consumer (they stay detached).
    pub fn stop_consumers(&mut self) {
        let at = self.clock.elapsed();
        let now = self.clock.now();
        for c in &mut self.clients {
            if matches!(c.app, App::Consumer(_)) {
                let mut ctx = Ctx {
                    now,
                    at,
                    ledger: &mut self.ledger,
                    log: &mut self.log,
                    violations: &mut self.violations,
                };
                c.stop(&mut ctx);
            }
        }
    }

    /// Schedules `action` at virtual time `at`.
    pub fn schedule(&mut self, at: Duration, action: Action) {
        self.next_action += 1;
        self.actions.insert((at, self.next_action), action);
    }

    /// What the run did, so far.
    pub fn summary(&self) -> Summary {
        let mut totals = self.totals.clone();
        for r in &self.routers {
            if let Some(n) = &r.node {
                totals.add(&n.core.stats);
            }
        }
        Summary {
            seed: self.seed,
            routers: self.routers.len() - self.edges.len(),
            links: self.links.len(),
            clients: self.clients.len(),
            faults: self.faults_injected,
            virtual_time: self.clock.elapsed(),
            counts: self.ledger.counts.clone(),
            loops_caught: self.monitor.loops_caught,
            router: totals,
            convergence: self.monitor.convergence.clone(),
            control: self.control.clone(),
            memory: self.routing_memory(),
            quic: (
                self.links.iter().filter(|l| l.quic).count(),
                self.quic_overtakes,
            ),
            signatures: self.signatures(),
            hostile: self.hostile_reports(),
            edges: self.edge_report(),
            steps: (self.sched.steps, self.sched.rounds),
            log_lines: self.log.lines().len(),
            digest: self.log.digest(),
        }
    }

    /// An estimate of the routing state of the running router with the
    /// largest table (see [`RoutingMemory`](crate::report::RoutingMemory)).
    fn routing_memory(&self) -> Option<crate::report::RoutingMemory> {
        let node = self
            .routers
            .iter()
            .filter_map(|r| r.node.as_ref())
            .max_by_key(|n| n.table.routers().count())?;
        let table = &node.table;
        let routers = table.routers().count();
        let id_bytes: usize = table.routers().map(|r| r.as_str().len()).sum();
        let ends: usize = table
            .routers()
            .map(|r| table.neighbours_of(r).count())
            .sum();
        Some(crate::report::RoutingMemory::estimate(
            routers,
            ends / 2,
            id_bytes / routers.max(1),
        ))
    }

    pub(crate) fn note(&mut self, who: &str, what: impl std::fmt::Display) {
        self.log.push(self.clock.elapsed(), who, what);
    }

    pub(crate) fn fail(&mut self, v: Violation) {
        self.violations.push(v);
        self.flush_violations();
    }

    /// Logs the violations not logged yet (clients record theirs directly).
    pub(crate) fn flush_violations(&mut self) {
        while self.logged_violations < self.violations.len() {
            let line = self.violations[self.logged_violations].to_string();
            self.note("CHECK", line);
            self.logged_violations += 1;
        }
    }

    pub(crate) fn next_conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    /// Draws `d` scaled by a factor in [0.5, 1.5] (connector jitter).
    pub(crate) fn jitter(&mut self, d: Duration) -> Duration {
        self.rng.duration(d / 2, d)
    }
}

/// Whether `address` is configured multicast in simulated routers.
pub fn is_multicast(address: &str) -> bool {
    address == MULTICAST_PREFIX
        || address
            .strip_prefix(MULTICAST_PREFIX)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('.'))
}

impl RouterTotals {
    pub(crate) fn add(&mut self, s: &ferry_router::core::Stats) {
        self.routed += s.routed.load(Ordering::Relaxed);
        self.released_no_route += s.released_no_route.load(Ordering::Relaxed);
        self.dropped_presettled += s.dropped_presettled.load(Ordering::Relaxed);
        self.expired += s.expired.load(Ordering::Relaxed);
        self.held += s.held.load(Ordering::Relaxed);
        self.gave_up_waiting += s.gave_up_waiting.load(Ordering::Relaxed);
    }
}
