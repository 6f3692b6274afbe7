//! What the step loop needs to know to work only where something can
//! happen, so that a step costs what it does rather than the size of the
//! mesh: which routers may have work (their code ran, or a timer of theirs
//! is due), which connections may have bytes to move or a side to close,
//! and when each router's timers and each connection's next arrival fall.
//!
//! The rule that keeps runs identical to a loop over everything: a router
//! or connection is skipped only when visiting it would do nothing. A
//! router's routing inputs and endpoint inboxes are fed by its own code
//! only, and its timers change only when its code runs; so a router none of
//! whose code ran since it was last pumped, and none of whose timers is
//! due, has nothing to do. Every call into a router's code goes through
//! [`Sched::touch`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The step loop's work lists and timer indexes.
#[derive(Debug, Default)]
pub(crate) struct Sched {
    /// Routers to pump in the next round (their code ran, or a timer is
    /// due).
    pub busy: BTreeSet<usize>,
    /// Routers whose code ran during this step: their timers are indexed
    /// again, their buffers checked, at its end.
    pub touched: BTreeSet<usize>,
    /// Connections that kept output they could not send, or that a fault
    /// touched: looked at in every round until they have nothing to do.
    pub sticky: BTreeSet<u64>,
    /// Connections with a client end.
    pub client_conns: BTreeSet<u64>,
    /// Each running router's earliest timer (routing or endpoint).
    timers: BTreeSet<(Instant, usize)>,
    timer_of: BTreeMap<usize, Instant>,
    /// Each connection's earliest arrival (either direction).
    arrivals: BTreeSet<(Instant, u64)>,
    arrival_of: BTreeMap<u64, Instant>,
    /// Steps run (instants brought to quiescence).
    pub steps: u64,
    /// Rounds run, over every step.
    pub rounds: u64,
}

impl Sched {
    /// Router `r`'s code ran (or will): pump it in the next round, index
    /// its timers again at the end of the step.
    pub fn touch(&mut self, r: usize) {
        self.busy.insert(r);
        self.touched.insert(r);
    }

    /// Router `r`'s earliest timer is now `at`.
    pub fn set_timer(&mut self, r: usize, at: Option<Instant>) {
        if let Some(old) = self.timer_of.remove(&r) {
            self.timers.remove(&(old, r));
        }
        if let Some(at) = at {
            self.timer_of.insert(r, at);
            self.timers.insert((at, r));
        }
    }

    /// The earliest router timer.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The routers with a timer due by `now`.
    pub fn due_routers(&self, now: Instant) -> impl Iterator<Item = usize> + '_ {
        self.timers
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|(_, r)| *r)
    }

    /// Connection `id`'s earliest arrival is now `at`.
    pub fn set_arrival(&mut self, id: u64, at: Option<Instant>) {
        if let Some(old) = self.arrival_of.remove(&id) {
            self.arrivals.remove(&(old, id));
        }
        if let Some(at) = at {
            self.arrival_of.insert(id, at);
            self.arrivals.insert((at, id));
        }
    }

    /// The earliest arrival on any connection.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.arrivals.first().map(|(at, _)| *at)
    }

    /// The connections with something arrived by `now`, by id.
    pub fn arrived(&self, now: Instant) -> BTreeSet<u64> {
        self.arrivals
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Connection `id` is gone.
    pub fn forget_conn(&mut self, id: u64) {
        self.set_arrival(id, None);
        self.sticky.remove(&id);
        self.client_conns.remove(&id);
    }
}
