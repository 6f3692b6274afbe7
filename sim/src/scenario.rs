//! Random scenarios: a topology, traffic and a fault schedule drawn from
//! one seed, run to the end and checked. The randomized test and the
//! command line both run these.

use std::time::Duration;

use crate::client::{ConsumerSpec, OutcomeWeights, ProducerSpec};
use crate::fault::{Action, Fault};
use crate::mesh::Mesh;
use crate::report::Summary;
use crate::rng::SimRng;
use crate::topology::{Shape, Topology};
use crate::violation::Violation;

/// What to simulate; the seed fills in every detail left open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Routers.
    pub routers: usize,
    /// Topology shape.
    pub shape: Shape,
    /// Faults to inject.
    pub faults: usize,
    /// Link costs are drawn from `1..=max_cost`.
    pub max_cost: u32,
    /// Messages per producer, drawn from this range.
    pub messages: (u32, u32),
    /// Anycast addresses.
    pub addresses: usize,
    /// The chance, in percent, that the run has a multicast address too
    /// (consumers and producers on any routers).
    pub multicast: u64,
    /// The chance, in percent, that the routers have two virtual hosts
    /// (tenants) and the traffic is drawn once per tenant, with the same
    /// address names: the isolation invariant checks they never meet.
    pub tenants: u64,
    /// Faults start within this long after the mesh first converged.
    pub fault_window: Duration,
    /// The routers' per-link credit window (`limits.link_credit_window`).
    pub credit_window: u32,
    /// Consumer credit is drawn from this range.
    pub consumer_credit: (u32, u32),
    /// The chance, in percent, that an inter-router link is QUIC-style
    /// (`Options::quic`; 0: none, 100: every link).
    pub quic: u64,
    /// Routers sign their routing records ([`crate::pki`]). On by
    /// default; `FERRY_SIM_SIGNING=0` turns it off.
    pub signing: bool,
    /// The chance, in percent, that one router of the run turns hostile
    /// for a while ([`Fault::Hostile`], of a kind drawn with it), drawn
    /// apart from the run's other choices. Only in a mesh that signs.
    pub hostile: u64,
    /// The kind of the hostile router's misbehaviour (`None`: drawn).
    pub hostile_how: Option<crate::hostile::Hostile>,
    /// Edge routers (`E1`, `E2`, …), each with edge connectors to two
    /// interior routers drawn from the seed (one if the mesh has one
    /// router), in order of preference; clients attach to them as to
    /// interior routers, and the kills may hit them. With any, one more
    /// fault kills the preferred interior router of one of them.
    pub edges: usize,
    /// Print the event log as it happens.
    pub echo: bool,
}

/// Whether routers sign by default: yes, unless `FERRY_SIM_SIGNING=0`.
pub fn signing_default() -> bool {
    std::env::var_os("FERRY_SIM_SIGNING").is_none_or(|v| v != "0")
}

/// A failed run: its seed, the failed invariant and the event log.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The scenario.
    pub scenario: Scenario,
    /// What failed.
    pub violation: Violation,
    /// The run's summary up to the failure.
    pub summary: Summary,
    /// The whole event log.
    pub log: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail_start = self.log.len().saturating_sub(60);
        writeln!(f, "seed {} FAILED: {}", self.scenario.seed, self.violation)?;
        writeln!(f, "scenario: {:?}", self.scenario)?;
        writeln!(
            f,
            "--- last {} of {} log lines ---",
            self.log.len() - tail_start,
            self.log.len()
        )?;
        for line in &self.log[tail_start..] {
            writeln!(f, "{line}")?;
        }
        if self.scenario.edges > 0 {
            return write!(
                f,
                "replay with: FERRY_SIM_SEED={} cargo test -p ferry-sim --test edge -- --nocapture",
                self.scenario.seed
            );
        }
        if self.scenario.quic > 0 {
            return write!(
                f,
                "replay with: FERRY_SIM_SEED={} FERRY_SIM_QUIC={} cargo test -p ferry-sim --test quic -- --nocapture",
                self.scenario.seed, self.scenario.quic
            );
        }
        write!(
            f,
            "replay with: FERRY_SIM_SEED={} cargo test -p ferry-sim --test randomized -- --nocapture",
            self.scenario.seed
        )
    }
}

impl Scenario {
    /// A scenario whose size is drawn from the seed too: 2 to 8 routers,
    /// any shape, 1 to 6 faults (what the randomized test runs).
    pub fn random(seed: u64) -> Self {
        let mut rng = SimRng::new(seed ^ 0x5ce1_a210);
        let routers = rng.range_usize(2, 8);
        Self {
            seed,
            routers,
            shape: Shape::ALL[rng.index(Shape::ALL.len())],
            faults: rng.range_usize(1, 6),
            max_cost: if rng.percent(50) { 1 } else { 4 },
            messages: (5, 40),
            addresses: rng.range_usize(1, 3),
            multicast: 50,
            tenants: 30,
            fault_window: Duration::from_secs(20),
            credit_window: 4,
            consumer_credit: (30, 60),
            quic: 0,
            signing: signing_default(),
            hostile: 0,
            hostile_how: None,
            edges: 0,
            echo: false,
        }
    }

    /// A scenario of a given size.
    pub fn sized(seed: u64, routers: usize, shape: Shape, faults: usize) -> Self {
        Self {
            seed,
            routers,
            shape,
            faults,
            max_cost: 4,
            messages: (10, 50),
            addresses: 3,
            multicast: 50,
            tenants: 30,
            fault_window: Duration::from_secs(10 + 3 * faults as u64),
            credit_window: 4,
            consumer_credit: (30, 60),
            quic: 0,
            signing: signing_default(),
            hostile: 0,
            hostile_how: None,
            edges: 0,
            echo: false,
        }
    }

    /// Builds the mesh, its clients and its fault schedule (nothing runs).
    pub fn build(&self) -> Mesh {
        let mut rng = SimRng::new(self.seed);
        let mut topo_rng = rng.fork();
        let mut traffic_rng = rng.fork();
        let mut fault_rng = rng.fork();
        let topology = Topology::generate(self.shape, self.routers, &mut topo_rng)
            .with_random_costs(self.max_cost, &mut topo_rng);
        let limits = ferry_router::config::Limits {
            link_credit_window: self.credit_window,
            ..Default::default()
        };
        // Drawn apart from the run's other choices, so that a seed's
        // topology, traffic and faults do not depend on it.
        let tenants: &[&str] = if SimRng::new(self.seed ^ 0x007e_4a47).percent(self.tenants) {
            &["t1", "t2"]
        } else {
            &[]
        };
        // Drawn apart, so that a run without edge routers is as before.
        let mut edge_rng = SimRng::new(self.seed ^ 0xed6e_5eed);
        let mut builder = Mesh::builder();
        for e in 0..self.edges {
            let mut interiors = topology.routers.clone();
            edge_rng.shuffle(&mut interiors);
            interiors.truncate(2);
            builder = builder.edge(&format!("E{}", e + 1), interiors);
        }
        let mut mesh = builder
            .topology(topology)
            .limits(limits)
            .vhosts(tenants.iter().copied())
            .quic(self.quic)
            .signing(self.signing)
            .echo(self.echo)
            .build(rng.next_u64());
        // The mesh's own seed is drawn from the scenario's: the summary
        // names the scenario's, the one that replays the run (`--seed`).
        mesh.seed = self.seed;
        if tenants.is_empty() {
            self.add_traffic(&mut mesh, &mut traffic_rng);
        } else {
            for vhost in tenants {
                let first = mesh.client_count();
                self.add_traffic(&mut mesh, &mut traffic_rng);
                for c in first..mesh.client_count() {
                    mesh.set_vhost(c, vhost);
                }
            }
        }
        self.schedule_faults(&mut mesh, &mut fault_rng);
        self.schedule_hostile(&mut mesh);
        mesh
    }

    /// With the chance [`hostile`](Self::hostile), one router turns
    /// hostile in the fault window for 1 to 12 s: drawn from a source of
    /// its own, so the run's other choices stay as they were.
    fn schedule_hostile(&self, mesh: &mut Mesh) {
        let mut rng = SimRng::new(self.seed ^ 0x4057_11e5);
        if !self.signing || !rng.percent(self.hostile) {
            return;
        }
        let ids = mesh.interior_ids();
        let router = ids[rng.index(ids.len())].clone();
        let drawn = crate::hostile::Hostile::ALL[rng.index(3)];
        let how = self.hostile_how.unwrap_or(drawn);
        let at = Duration::from_secs(3) + rng.duration(Duration::ZERO, self.fault_window);
        let lasts = rng.duration(Duration::from_secs(1), Duration::from_secs(12));
        let fault = Fault::Hostile { router, how };
        mesh.schedule(at, Action::Inject(fault.clone()));
        mesh.schedule(at + lasts, Action::Heal(fault));
    }

    fn add_traffic(&self, mesh: &mut Mesh, rng: &mut SimRng) {
        let ids = mesh.router_ids();
        let pick = |rng: &mut SimRng| ids[rng.index(ids.len())].clone();
        let careful = rng.percent(60);
        for a in 0..self.addresses {
            let address = if rng.percent(30) {
                format!("closest/q{a}")
            } else {
                format!("q{a}")
            };
            for _ in 0..rng.range_usize(1, 3) {
                let spec = self.consumer(&address, careful, rng);
                let at = pick(rng);
                mesh.add_consumer(&at, spec);
            }
            for _ in 0..rng.range_usize(1, 3) {
                let spec = self.producer(&address, rng.percent(25), rng);
                let at = pick(rng);
                mesh.add_producer(&at, spec);
            }
        }
        if rng.percent(self.multicast) {
            // Multicast across the mesh: consumers and producers anywhere
            // (now and then several on one router).
            for _ in 0..rng.range_usize(1, 4) {
                let spec = self.consumer("multicast/m", careful, rng);
                let at = pick(rng);
                mesh.add_consumer(&at, spec);
            }
            for _ in 0..rng.range_usize(1, 2) {
                let spec = self.producer("multicast/m", rng.percent(30), rng);
                let at = pick(rng);
                mesh.add_producer(&at, spec);
            }
        }
        if rng.percent(30) {
            let at = pick(rng);
            let spec = self.producer("nobody", false, rng);
            mesh.add_producer(&at, spec);
        }
    }

    fn consumer(&self, address: &str, careful: bool, rng: &mut SimRng) -> ConsumerSpec {
        let slow = rng.percent(20);
        ConsumerSpec {
            address: address.into(),
            credit: rng.range(
                u64::from(self.consumer_credit.0),
                u64::from(self.consumer_credit.1),
            ) as u32,
            delay: if slow {
                rng.duration(Duration::from_millis(50), Duration::from_millis(300))
            } else {
                rng.duration(Duration::ZERO, Duration::from_millis(20))
            },
            outcomes: if careful {
                OutcomeWeights::ACCEPT_ALL
            } else {
                OutcomeWeights {
                    accept: 85,
                    reject: 5,
                    release: 5,
                    modify: 5,
                }
            },
            close_after: None,
        }
    }

    fn producer(&self, address: &str, presettled: bool, rng: &mut SimRng) -> ProducerSpec {
        // Anonymous senders (null target, routed by `to`) for anycast.
        let anonymous = !address.starts_with("multicast") && rng.percent(15);
        ProducerSpec {
            address: address.into(),
            messages: rng.range(u64::from(self.messages.0), u64::from(self.messages.1)) as u32,
            presettled,
            interval: rng.duration(Duration::from_millis(5), Duration::from_millis(50)),
            // Now and then a message larger than a frame (streamed).
            body_size: if rng.percent(5) {
                rng.range_usize(70_000, 150_000)
            } else {
                rng.range_usize(1, 200)
            },
            anonymous,
        }
    }

    fn schedule_faults(&self, mesh: &mut Mesh, rng: &mut SimRng) {
        let ids = mesh.router_ids();
        let links = mesh.links();
        let consumers: Vec<usize> = (0..mesh.client_count())
            .filter(|&c| matches!(mesh.client(c).app, crate::client::App::Consumer(_)))
            .collect();
        // Faults on the same target do not overlap.
        let mut busy: Vec<(String, Duration, Duration)> = Vec::new();
        let start = Duration::from_secs(3);
        for _ in 0..self.faults {
            let at = start + rng.duration(Duration::ZERO, self.fault_window);
            let lasts = rng.duration(Duration::from_secs(1), Duration::from_secs(12));
            let link = (!links.is_empty()).then(|| links[rng.index(links.len())].clone());
            let kind = rng.weighted(&[25, 20, 15, 10, 15, 15]);
            let (target, fault) = match (kind, link) {
                (0, _) => {
                    let r = ids[rng.index(ids.len())].clone();
                    (r.clone(), Fault::Kill { router: r })
                }
                (1, Some((a, b, _))) => (format!("{a}-{b}"), Fault::Cut { a, b }),
                (2, _) if ids.len() >= 3 => {
                    let mut side = ids.clone();
                    rng.shuffle(&mut side);
                    side.truncate(rng.range_usize(1, ids.len() - 1));
                    side.sort();
                    ("partition".to_string(), Fault::Partition { routers: side })
                }
                (3, Some((a, b, _))) => {
                    // One way or both, drawn apart from the run's other
                    // choices: runs without a black hole stay as they were.
                    let mut own = SimRng::new(self.seed ^ 0x0e_3a7 ^ at.as_nanos() as u64);
                    let fault = match own.index(4) {
                        0 => Fault::OneWay {
                            from: a.clone(),
                            to: b.clone(),
                        },
                        1 => Fault::OneWay {
                            from: b.clone(),
                            to: a.clone(),
                        },
                        _ => Fault::Blackhole {
                            a: a.clone(),
                            b: b.clone(),
                        },
                    };
                    (format!("{a}-{b}"), fault)
                }
                (4, Some((a, b, _))) => {
                    let extra = rng.duration(Duration::from_millis(20), Duration::from_millis(800));
                    (format!("{a}-{b}"), Fault::Delay { a, b, extra })
                }
                (5, _) if !consumers.is_empty() => {
                    let client = consumers[rng.index(consumers.len())];
                    let delay = rng.duration(Duration::from_millis(200), Duration::from_secs(2));
                    (format!("c{client}"), Fault::SlowConsumer { client, delay })
                }
                _ => continue,
            };
            let end = at + lasts;
            if busy
                .iter()
                .any(|(t, s, e)| *t == target && at < *e && *s < end)
            {
                continue;
            }
            busy.push((target, at, end));
            mesh.schedule(at, Action::Inject(fault.clone()));
            mesh.schedule(end, Action::Heal(fault));
        }
        self.schedule_edge_fault(mesh, &busy);
    }

    /// With edge routers: one more fault, the kill of the preferred
    /// interior router of one of them (where its uplink most likely is),
    /// so that it fails over; and in half the runs the cut of an edge
    /// router's uplink to its preferred interior router (the connection
    /// resets, the interior router stays). Drawn from a source of its
    /// own.
    fn schedule_edge_fault(&self, mesh: &mut Mesh, busy: &[(String, Duration, Duration)]) {
        let edges = mesh.edge_uplinks();
        if edges.is_empty() {
            return;
        }
        let mut rng = SimRng::new(self.seed ^ 0xed6e_fa17);
        let (_, interiors) = &edges[rng.index(edges.len())];
        let router = interiors[0].clone();
        let at = Duration::from_secs(3) + rng.duration(Duration::ZERO, self.fault_window);
        let end = at + rng.duration(Duration::from_secs(1), Duration::from_secs(12));
        if !busy
            .iter()
            .any(|(t, s, e)| *t == router && at < *e && *s < end)
        {
            let fault = Fault::Kill { router };
            mesh.schedule(at, Action::Inject(fault.clone()));
            mesh.schedule(end, Action::Heal(fault));
        }
        if rng.percent(50) {
            let (edge, interiors) = &edges[rng.index(edges.len())];
            let at = Duration::from_secs(3) + rng.duration(Duration::ZERO, self.fault_window);
            let end = at + rng.duration(Duration::from_secs(1), Duration::from_secs(12));
            let fault = Fault::Cut {
                a: edge.clone(),
                b: interiors[0].clone(),
            };
            mesh.schedule(at, Action::Inject(fault.clone()));
            mesh.schedule(end, Action::Heal(fault));
        }
    }

    /// When the last scheduled fault is healed, at the latest.
    fn faults_over(&self) -> Duration {
        Duration::from_secs(3) + self.fault_window + Duration::from_secs(13)
    }

    /// Runs the scenario: faults, then healing, then until every message
    /// is settled; checks every invariant on the way and at the end; then
    /// detaches every consumer and checks that no producer keeps credit.
    pub fn run(&self) -> Result<Summary, Box<Failure>> {
        let mut mesh = self.build();
        let result = self.drive(&mut mesh);
        result.map_err(|violation| {
            Box::new(Failure {
                scenario: self.clone(),
                violation,
                summary: mesh.summary(),
                log: mesh.log().lines().to_vec(),
            })
        })
    }

    /// [`run`](Self::run) on a mesh already built, returning it too.
    pub fn drive(&self, mesh: &mut Mesh) -> Result<Summary, Violation> {
        mesh.run_until(self.faults_over());
        if let Some(v) = mesh.failure() {
            return Err(v.clone());
        }
        mesh.heal_all();
        // Settle: tables right and every message done, within a bound;
        // give up early once nothing has moved for a long while.
        let deadline = mesh.now() + Duration::from_secs(180);
        let mut last = (mesh.ledger().counts.clone(), mesh.now());
        while mesh.now() < deadline && mesh.failure().is_none() {
            mesh.run_for(Duration::from_millis(500));
            let tables = mesh.check_tables().is_ok() && mesh.check_addresses().is_ok();
            if tables && mesh.check_delivered().is_ok() {
                break;
            }
            if mesh.ledger().counts != last.0 || !tables {
                last = (mesh.ledger().counts.clone(), mesh.now());
            } else if mesh.now() - last.1 >= Duration::from_secs(30) {
                break;
            }
        }
        mesh.run_for(crate::mesh::CREDIT_GRACE);
        mesh.check_settled()?;
        mesh.stop_consumers();
        mesh.run_for(Duration::from_secs(5));
        if let Some(v) = mesh.failure() {
            return Err(v.clone());
        }
        mesh.check_no_credit()?;
        Ok(mesh.summary())
    }
}
