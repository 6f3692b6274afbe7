//! The step loop. Each step brings the mesh to quiescence at the current
//! instant (routing inputs, endpoint inboxes, clients, bytes on the wire
//! that have arrived, closed connections, until nothing moves), checks the
//! invariants, then jumps virtual time to the earliest pending event: a
//! pipe arrival, a router, endpoint or client timer, a connector redial, a
//! scheduled fault.

use std::time::{Duration, Instant};

use super::Mesh;
use crate::client::Ctx;
use crate::fault::Action;
use crate::violation::{Invariant, Violation};

/// Rounds of one quiescence before the step is declared stuck.
const MAX_ROUNDS: usize = 100_000;
/// Steps at one instant before time is declared stuck.
const MAX_SAME_INSTANT: usize = 10_000;

impl Mesh {
    /// Runs for `d` of virtual time (or until an invariant fails).
    pub fn run_for(&mut self, d: Duration) {
        let until = self.clock.elapsed() + d;
        self.run_until(until);
    }

    /// Runs until virtual time `t` (or until an invariant fails).
    pub fn run_until(&mut self, t: Duration) {
        let end = self.clock.at(t);
        let mut same = 0;
        loop {
            if self.failure().is_some() {
                return;
            }
            self.settle();
            if self.failure().is_some() || self.clock.now() >= end {
                return;
            }
            let next = self.next_event().map_or(end, |n| n.min(end));
            if next <= self.clock.now() {
                same += 1;
                if same > MAX_SAME_INSTANT {
                    let v = Violation::new(
                        self.clock.elapsed(),
                        Invariant::Liveness,
                        "a timer stays due: time cannot advance",
                    );
                    return self.fail(v);
                }
            } else {
                same = 0;
            }
            self.clock.advance_to(next);
            self.fire_due();
        }
    }

    /// Runs until every table matches the true topology, at most `max`.
    /// Returns how long it took.
    pub fn run_until_converged(&mut self, max: Duration) -> Option<Duration> {
        let start = self.clock.elapsed();
        let deadline = start + max;
        loop {
            self.settle();
            if self.failure().is_some() {
                return None;
            }
            if self.check_tables().is_ok() {
                return Some(self.clock.elapsed() - start);
            }
            if self.clock.elapsed() >= deadline {
                return None;
            }
            let next = (self.clock.elapsed() + Duration::from_millis(50)).min(deadline);
            self.run_until(next);
        }
    }

    /// Brings the mesh to quiescence at the current instant, then checks
    /// the step invariants.
    pub(crate) fn settle(&mut self) {
        let mut tables = false;
        for round in 0.. {
            let mut progress = false;
            let (p, t) = self.pump_routing();
            progress |= p;
            tables |= t;
            progress |= self.pump_inboxes();
            progress |= self.pump_clients();
            progress |= self.pump_transmit();
            progress |= self.pump_arrivals();
            progress |= self.reap();
            if !progress {
                break;
            }
            if round > MAX_ROUNDS {
                let v = Violation::new(
                    self.clock.elapsed(),
                    Invariant::Liveness,
                    "the mesh does not quiesce at one instant",
                );
                return self.fail(v);
            }
        }
        self.check_step(tables);
    }

    fn pump_routing(&mut self) -> (bool, bool) {
        let now = self.clock.now();
        let (mut progress, mut tables) = (false, false);
        for i in 0..self.routers.len() {
            let Some(node) = self.routers[i].node.as_mut() else {
                continue;
            };
            let report = node.pump_routing(now);
            let described = report.new_table;
            progress |= report.inputs > 0;
            let who = self.routers[i].id.clone();
            for n in report.notes {
                self.note(&who, n);
            }
            if let Some(d) = described {
                tables = true;
                self.note(&who, format_args!("table: {d}"));
            }
        }
        (progress, tables)
    }

    fn pump_inboxes(&mut self) -> bool {
        let now = self.clock.now();
        let mut n = 0;
        for r in &mut self.routers {
            if let Some(node) = r.node.as_mut() {
                n += node.pump_inboxes(now);
            }
        }
        n > 0
    }

    fn pump_clients(&mut self) -> bool {
        let now = self.clock.now();
        let at = self.clock.elapsed();
        let mut progress = false;
        for c in &mut self.clients {
            let mut ctx = Ctx {
                now,
                at,
                ledger: &mut self.ledger,
                log: &mut self.log,
                violations: &mut self.violations,
            };
            progress |= c.poll(&mut ctx);
        }
        progress
    }

    /// The earliest thing that will happen.
    fn next_event(&self) -> Option<Instant> {
        let routers = self
            .routers
            .iter()
            .filter_map(|r| r.node.as_ref().and_then(|n| n.poll_timeout()));
        let clients = self.clients.iter().flat_map(|c| {
            [
                c.reconnect_at,
                c.next_wakeup(),
                c.conn.as_ref().and_then(|cc| cc.engine.poll_timeout()),
            ]
            .into_iter()
            .flatten()
        });
        let dials = self
            .links
            .iter()
            .filter(|l| self.routers[l.a].is_up())
            .filter_map(|l| l.next_dial);
        let actions = self.actions.keys().next().map(|(at, _)| self.clock.at(*at));
        routers
            .chain(clients)
            .chain(dials)
            .chain(actions)
            .chain(self.next_arrival())
            .min()
    }

    /// Runs everything due now: scheduled actions, redials, reconnects,
    /// endpoint and client timers (routing timers run in `settle`).
    fn fire_due(&mut self) {
        let now = self.clock.now();
        let elapsed = self.clock.elapsed();
        while let Some(entry) = self.actions.first_entry() {
            if entry.key().0 > elapsed {
                break;
            }
            let action = entry.remove();
            self.perform(action);
        }
        for l in 0..self.links.len() {
            if self.links[l].next_dial.is_some_and(|t| t <= now) {
                self.dial(l);
            }
        }
        for c in 0..self.clients.len() {
            if self.clients[c].reconnect_at.is_some_and(|t| t <= now) {
                self.connect_client(c);
            }
            if let Some(cc) = self.clients[c].conn.as_mut()
                && cc.engine.poll_timeout().is_some_and(|t| t <= now)
            {
                cc.engine.handle_timeout(now);
            }
        }
        for r in &mut self.routers {
            if let Some(node) = r.node.as_mut() {
                node.handle_timeouts(now);
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Inject(f) => self.inject(f),
            Action::Heal(f) => self.heal(f),
            Action::CheckCredit { epoch } => {
                if epoch == self.monitor.epoch
                    && let Err(e) = self.check_credit()
                {
                    let v = Violation::new(
                        self.clock.elapsed(),
                        crate::violation::Invariant::Credit,
                        e,
                    );
                    self.fail(v);
                }
            }
        }
    }
}
