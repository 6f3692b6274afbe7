//! Building a mesh: `Mesh::builder().routers(["A","B","C"]).link("A","B",1)…build(seed)`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_router::config::{ConnectorConfig, Limits, ListenerConfig, Role};
use ferry_router::routing::RoutingConfig;

use super::{Mesh, Options, SimEdge, SimLink, Uplink};
use crate::clock::Clock;
use crate::ledger::Ledger;
use crate::log::EventLog;
use crate::monitor::Monitor;
use crate::report::RouterTotals;
use crate::rng::SimRng;
use crate::router::{EDGE_PORT, SimRouter, edge_config, router_config};
use crate::topology::Topology;

/// Describes a mesh to build.
#[derive(Debug, Clone, Default)]
pub struct MeshBuilder {
    topology: Topology,
    options: Options,
    /// Edge routers: id, and the interior routers of its edge connectors
    /// in order of preference.
    edges: Vec<(String, Vec<String>)>,
}

impl MeshBuilder {
    /// Adds routers with these ids.
    pub fn routers<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.topology
            .routers
            .extend(ids.into_iter().map(Into::into));
        self
    }

    /// Adds a link: `a` dials `b`, both use `cost`.
    pub fn link(mut self, a: &str, b: &str, cost: u32) -> Self {
        self.topology = self.topology.link(a, b, cost);
        self
    }

    /// Uses a whole topology (e.g. a generated one).
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// Adds edge router `id` (`mode = "edge"`), whose edge connectors
    /// dial `interiors` (interior routers of the topology) in this order
    /// of preference: one uplink at a time, failing over to the next
    /// (see `mesh/edges.rs`).
    pub fn edge<S: Into<String>>(
        mut self,
        id: &str,
        interiors: impl IntoIterator<Item = S>,
    ) -> Self {
        self.edges.push((
            id.to_string(),
            interiors.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// The routing protocol's timers.
    pub fn routing(mut self, config: RoutingConfig) -> Self {
        self.options.routing = config;
        self
    }

    /// Router limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// Inter-router link latencies are drawn from `lo..=hi`.
    pub fn link_latency(mut self, lo: Duration, hi: Duration) -> Self {
        self.options.link_latency = (lo, hi.max(lo));
        self
    }

    /// Gives every router these virtual hosts (tenants), each letting its
    /// anonymous clients do anything; clients pick one with
    /// [`Mesh::set_vhost`].
    pub fn vhosts<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.options.vhosts = names.into_iter().map(Into::into).collect();
        self
    }

    /// Limits each direction of every inter-router link to `bytes_per_sec`
    /// (by default only latency: see [`Options::bandwidth`]).
    pub fn bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.options.bandwidth = Some(bytes_per_sec);
        self
    }

    /// The chance, in percent, that each inter-router link is QUIC-style
    /// (100: every link). See [`Options::quic`](super::Options::quic).
    pub fn quic(mut self, percent: u64) -> Self {
        self.options.quic = percent;
        self
    }

    /// Whether routers sign their routing records and check others'
    /// (on by default: see [`Options::signing`](super::Options::signing)).
    pub fn signing(mut self, on: bool) -> Self {
        self.options.signing = on;
        self
    }

    /// Prints the event log as it happens.
    pub fn echo(mut self, echo: bool) -> Self {
        self.options.echo = echo;
        self
    }

    /// Builds the mesh for `seed`: routers are started at virtual time 0
    /// and their connectors dial at once. Nothing runs until a `run_*`.
    ///
    /// # Panics
    ///
    /// If a link names an unknown router, links a router to itself, or two
    /// routers share an id.
    pub fn build(self, seed: u64) -> Mesh {
        let Self {
            topology,
            options,
            edges,
        } = self;
        let mut ids = topology.routers.clone();
        ids.extend(edges.iter().map(|(id, _)| id.clone()));
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "router ids must be unique");
        let index: BTreeMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let mut rng = SimRng::new(seed);
        let mut latency_rng = rng.fork();
        // Drawn apart, so that the run's other choices do not depend on it.
        let mut quic_rng = SimRng::new(seed ^ 0x5155_4943_4c4e_4b53);
        let quic = options.quic.min(100);
        let now = Instant::now();
        let clock = Clock::new(now);
        let links: Vec<SimLink> = topology
            .links
            .iter()
            .map(|l| {
                let a = *index
                    .get(l.a.as_str())
                    .unwrap_or_else(|| panic!("no router {}", l.a));
                let b = *index
                    .get(l.b.as_str())
                    .unwrap_or_else(|| panic!("no router {}", l.b));
                assert_ne!(a, b, "a link from {} to itself", l.a);
                let (lo, hi) = options.link_latency;
                SimLink {
                    a,
                    b,
                    cost: l.cost.max(1),
                    latency: latency_rng.duration(lo, hi),
                    quic: quic > 0 && quic_rng.percent(quic),
                    extra: Duration::ZERO,
                    cut: false,
                    blackholed: false,
                    oneway: [false, false],
                    conn: None,
                    next_dial: None,
                    backoff: super::conns::MIN_BACKOFF,
                    connected_at: None,
                    tamper: [None, None],
                    heard: [None, None],
                    broken_at: None,
                }
            })
            .collect();
        // Drawn apart, so that a mesh without edge routers is as before.
        let mut edge_rng = SimRng::new(seed ^ 0xed6e_0000_ed6e);
        let edges: Vec<SimEdge> = edges
            .iter()
            .map(|(id, interiors)| {
                assert!(!interiors.is_empty(), "edge router {id} has no connector");
                let uplinks = interiors
                    .iter()
                    .map(|i| {
                        let interior = *index
                            .get(i.as_str())
                            .unwrap_or_else(|| panic!("no router {i}"));
                        let (lo, hi) = options.link_latency;
                        Uplink {
                            interior,
                            latency: edge_rng.duration(lo, hi),
                            cut: false,
                        }
                    })
                    .collect();
                SimEdge::new(index[id.as_str()], uplinks)
            })
            .collect();
        for e in &edges {
            for u in &e.uplinks {
                assert!(
                    !edges.iter().any(|x| x.router == u.interior),
                    "edge router {} dials edge router {}",
                    ids[e.router],
                    ids[u.interior]
                );
            }
        }
        let routers: Vec<SimRouter> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                if let Some(e) = edges.iter().find(|e| e.router == i) {
                    let connectors = e
                        .uplinks
                        .iter()
                        .map(|u| {
                            let mut c = ConnectorConfig::new(ids[u.interior].clone(), EDGE_PORT, 1);
                            c.role = Role::Edge;
                            c
                        })
                        .collect();
                    let config = edge_config(id, &options.limits, connectors, &options.vhosts);
                    return SimRouter::new(id.clone(), config);
                }
                let connectors = links
                    .iter()
                    .filter(|l| l.a == i)
                    .map(|l| ConnectorConfig::new(ids[l.b].clone(), 5673, l.cost))
                    .collect();
                let mut config = router_config(id, &options.limits, connectors, &options.vhosts);
                if !edges.is_empty() {
                    config
                        .listeners
                        .push(ListenerConfig::new("sim", EDGE_PORT, Role::Edge));
                }
                SimRouter::new(id.clone(), config)
            })
            .collect();
        let n = routers.len();
        let pki = options.signing.then(|| crate::pki::SimPki::new(seed));
        let mut mesh = Mesh {
            security: std::sync::Arc::new(ferry_router::security::Security::none()),
            seed,
            wire_seed: seed,
            quic_overtakes: 0,
            clock,
            rng,
            log: EventLog::new(options.echo),
            options,
            names: ids.clone(),
            routers,
            links,
            edges,
            group: vec![0; n],
            conns: BTreeMap::new(),
            clients: Vec::new(),
            ledger: Ledger::default(),
            monitor: Monitor::new(n),
            actions: BTreeMap::new(),
            violations: Vec::new(),
            totals: RouterTotals::default(),
            faults_injected: 0,
            ids: ids.iter().map(|id| id.as_str().into()).collect(),
            checks: Default::default(),
            sched: Default::default(),
            control: Default::default(),
            pki,
            hostile: BTreeMap::new(),
            hostile_generation: 0,
            hostile_ended: Vec::new(),
            logged_violations: 0,
            next_conn: 0,
            next_action: 0,
        };
        mesh.note(
            "SIM",
            format_args!(
                "seed {seed}: {} routers, {} links",
                mesh.routers.len() - mesh.edges.len(),
                mesh.links.len()
            ),
        );
        for e in 0..mesh.edges.len() {
            let via: Vec<&str> = mesh.edges[e]
                .uplinks
                .iter()
                .map(|u| mesh.names[u.interior].as_str())
                .collect();
            let line = format!(
                "edge router {}: uplink through {}",
                mesh.names[mesh.edges[e].router],
                via.join(", ")
            );
            mesh.note("SIM", line);
        }
        for i in 0..n {
            mesh.start_router(i);
        }
        mesh.topology_changed("start", "start");
        mesh
    }
}
