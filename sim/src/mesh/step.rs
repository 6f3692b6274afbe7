//! The step loop. Each step brings the mesh to quiescence at the current
//! instant (routing inputs, endpoint inboxes, clients, bytes on the wire
//! that have arrived, closed connections, until nothing moves), checks the
//! invariants, then jumps virtual time to the earliest pending event: a
//! pipe arrival, a router, endpoint or client timer, a connector redial, a
//! scheduled fault.

use std::collections::BTreeSet;
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
    ///
    /// Each round visits only the routers that may have work (their code
    /// ran, or a timer of theirs is due) and the connections that may have
    /// bytes to move or a side to close (see [`super::sched`]): a step
    /// costs what happens in it, not the size of the mesh.
    pub(crate) fn settle(&mut self) {
        self.sched.steps += 1;
        let now = self.clock.now();
        let due: Vec<usize> = self.sched.due_routers(now).collect();
        self.sched.busy.extend(due);
        let mut tables = false;
        for round in 0.. {
            self.sched.rounds += 1;
            let busy = std::mem::take(&mut self.sched.busy);
            let mut progress = false;
            let (p, t) = self.pump_routing(&busy);
            progress |= p;
            tables |= t;
            progress |= self.pump_inboxes(&busy);
            progress |= self.pump_clients();
            progress |= self.pump_transmit(&busy);
            progress |= self.pump_arrivals();
            progress |= self.reap(&busy);
            if !progress {
                break;
            }
            if round > MAX_ROUNDS {
                let v = Violation::new(
                    self.clock.elapsed(),
                    Invariant::Liveness,
                    "the mesh does not quiesce at one instant",
                );
                self.index_timers();
                return self.fail(v);
            }
        }
        self.index_timers();
        self.check_step(tables);
        self.sched.touched.clear();
    }

    /// Indexes again the timers of the routers whose code ran.
    fn index_timers(&mut self) {
        let touched: Vec<usize> = self.sched.touched.iter().copied().collect();
        for r in touched {
            let at = self.routers[r].node.as_ref().and_then(|n| n.poll_timeout());
            self.sched.set_timer(r, at);
        }
    }

    /// Router `r`'s code runs: pump it in the next round.
    pub(crate) fn touch(&mut self, r: usize) {
        self.sched.touch(r);
    }

    fn pump_routing(&mut self, busy: &BTreeSet<usize>) -> (bool, bool) {
        let now = self.clock.now();
        let (mut progress, mut tables) = (false, false);
        for &i in busy {
            let Some(node) = self.routers[i].node.as_mut() else {
                continue;
            };
            let before: Vec<ferry_router::routing::RouterId> =
                node.routing.adjacent().cloned().collect();
            let report = node.pump_routing(now);
            let lost: Vec<String> = before
                .iter()
                .filter(|n| !node.routing.is_adjacent(n))
                .map(|n| n.to_string())
                .collect();
            let described = report.new_table;
            for (kind, bytes) in report.control {
                self.control.add(kind, bytes as u64);
            }
            progress |= report.inputs > 0;
            if report.inputs > 0 {
                self.sched.touch(i);
            }
            let who = self.routers[i].id.clone();
            for n in report.notes {
                self.note(&who, n);
            }
            if let Some(d) = described {
                tables = true;
                self.note(&who, format_args!("table: {d}"));
            }
            for n in lost {
                self.neighbour_lost(i, &n);
            }
        }
        (progress, tables)
    }

    /// Router `r` no longer counts `neighbour` among its two-way
    /// neighbours (its connection dropped, or its HELLOs aged out or
    /// stopped listing `r`). That is a false loss if their link delivered
    /// frames both ways within the silence limit
    /// ([`NEIGHBOUR_SILENCE`](ferry_router::mesh::NEIGHBOUR_SILENCE)) and
    /// nothing disturbed it (no connection of it closed, reset, silenced
    /// or dialed, the neighbour not killed) for the routing protocol's
    /// `hello_max_age` plus the silence limit: time for the news of a
    /// disturbance to reach both ends and for HELLOs to age.
    fn neighbour_lost(&mut self, r: usize, neighbour: &str) {
        let now = self.clock.now();
        let who = self.routers[r].id.clone();
        // Losing a neighbour is a failure in the mesh, whatever caused it
        // (a delay of more than the silence limit's margin drops a link
        // that nothing cut): outcomes in flight over it may be lost, as
        // the false-outcome check allows across a failure.
        self.monitor.epoch += 1;
        self.ledger.epoch = self.monitor.epoch;
        let Some(n) = self.router_index(neighbour) else {
            return;
        };
        let Some(l) = self
            .links
            .iter()
            .position(|l| (l.a, l.b) == (r, n) || (l.a, l.b) == (n, r))
        else {
            return;
        };
        let link = &self.links[l];
        let silence = ferry_router::mesh::NEIGHBOUR_SILENCE;
        let window = self.options.routing.hello_max_age + silence;
        let since = |t: Option<Instant>| t.map(|t| now.duration_since(t));
        let (to_r, to_n) = if link.a == r { (1, 0) } else { (0, 1) };
        let heard_by_r = since(link.heard[to_r]);
        let heard_by_n = since(link.heard[to_n]);
        let broken = since(link.broken_at);
        let faulty = link.cut
            || link.is_silent()
            || self.group[link.a] != self.group[link.b]
            || !self.routers[n].is_up()
            || link.conn.is_none();
        let fresh = |h: Option<Duration>| h.is_some_and(|h| h < silence);
        if faulty || broken.is_none_or(|b| b < window) || !fresh(heard_by_r) || !fresh(heard_by_n) {
            return;
        }
        let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{}", d.as_millis()));
        let v = Violation::new(
            self.clock.elapsed(),
            Invariant::NeighbourLoss,
            format!(
                "{who} declared neighbour {neighbour} lost although their link delivers frames \
                 both ways: {who} heard from it {} ms ago, {neighbour} from {who} {} ms ago \
                 (silence limit {} ms), nothing disturbed the link for {} ms",
                ms(heard_by_r),
                ms(heard_by_n),
                silence.as_millis(),
                ms(broken)
            ),
        );
        self.fail(v);
    }

    fn pump_inboxes(&mut self, busy: &BTreeSet<usize>) -> bool {
        let now = self.clock.now();
        let mut n = 0;
        for &i in busy {
            if let Some(node) = self.routers[i].node.as_mut() {
                let handled = node.pump_inboxes(now);
                if handled > 0 {
                    self.sched.touch(i);
                }
                n += handled;
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

    /// The earliest thing that will happen. Router timers and arrivals
    /// come from their indexes; clients and connectors (a few per router
    /// at most) are looked at one by one.
    fn next_event(&self) -> Option<Instant> {
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
        let uplinks = self
            .edges
            .iter()
            .filter(|e| self.routers[e.router].is_up())
            .filter_map(|e| e.next_dial);
        let actions = self.actions.keys().next().map(|(at, _)| self.clock.at(*at));
        self.sched
            .next_timer()
            .into_iter()
            .chain(clients)
            .chain(dials)
            .chain(uplinks)
            .chain(actions)
            .chain(self.sched.next_arrival())
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
        for e in 0..self.edges.len() {
            if self.edges[e].next_dial.is_some_and(|t| t <= now) {
                self.dial_uplink(e);
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
        // The routers with a timer due, and those whose code ran since
        // their timers were indexed (new endpoints, restarted routers):
        // for any other, handling timeouts would do nothing.
        let mut due: BTreeSet<usize> = self.sched.due_routers(now).collect();
        due.extend(self.sched.touched.iter().copied());
        for r in due {
            if let Some(node) = self.routers[r].node.as_mut() {
                node.handle_timeouts(now);
                self.sched.touch(r);
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Inject(f) => self.inject(f),
            Action::HostileTick { router, generation } => {
                self.hostile_scheduled_tick(&router, generation);
            }
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
