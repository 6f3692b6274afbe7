//! Invariant state fed by what crosses the wire: deliveries each router
//! holds (received, not yet sent on or settled), loops, and the tracking
//! of convergence after each topology change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ledger::MsgKey;
use crate::paths::ExpectedPaths;
use crate::tap::{Dir, WireEvent};
use crate::violation::Invariant;

/// How long the tables took to match the true topology after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvergenceRecord {
    /// The change (a fault, its healing, or the start).
    pub after: String,
    /// Its kind (`router kill`, `heal: link restored`, `start`, …: see
    /// [`CHANGE_KINDS`](crate::fault::CHANGE_KINDS)).
    pub kind: &'static str,
    /// It came while the previous change had not converged yet: the time
    /// includes what was left of that one's.
    pub overlapped: bool,
    /// A link of the mesh was delayed (the delay fault) when it came: news
    /// crossing that link took longer.
    pub delayed: bool,
    /// Routers in the mesh.
    pub routers: usize,
    /// Virtual time from the change to correct tables everywhere.
    pub took: Duration,
    /// Control messages the routers received from the change to correct
    /// tables everywhere (every kind, HELLOs and advertisements
    /// included), and their bytes.
    pub control: (u64, u64),
}

/// What one side of a connection is, for the wire checks.
#[derive(Debug, Clone, Copy)]
pub struct Sides {
    /// The connection.
    pub conn: u64,
    /// The router sending in this direction, if a router.
    pub from: Option<usize>,
    /// The router receiving, if a router.
    pub to: Option<usize>,
    /// An inter-router connection of the mesh, whose messages carry the
    /// routers' trace (an edge router's uplink does not: messages cross
    /// it as to and from a client, and cannot loop through it, as an
    /// edge router has one uplink and never sends a delivery back on the
    /// connection it came on).
    pub traced: bool,
}

/// A held delivery: where it came in (connection, direction, and the
/// sender's channel and delivery id).
type Slot = (u64, Dir, (u16, u32));

/// A held delivery's message and the handle of the link it came on.
type Held = (MsgKey, u32);

/// A change the tables have not caught up with yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// What it was.
    pub after: String,
    /// Its kind.
    pub kind: &'static str,
    /// When.
    pub at: Instant,
    /// It came while an earlier one was pending.
    pub overlapped: bool,
    /// A link was delayed when it came.
    pub delayed: bool,
}

/// The wire-fed invariant state of a run.
#[derive(Debug)]
pub struct Monitor {
    held: Vec<BTreeMap<Slot, Held>>,
    links_in: BTreeMap<(u64, Dir), i64>,
    /// Messages that came back to a router they had visited (the router
    /// releases them: its trace check caught the loop).
    pub loops_caught: u64,
    /// Convergence after each topology change.
    pub convergence: Vec<ConvergenceRecord>,
    /// The change the tables have not caught up with yet, and when.
    pub pending: Option<Pending>,
    /// Shortest paths of the true topology.
    pub expected: Option<Arc<ExpectedPaths>>,
    /// Counts topology changes.
    pub epoch: u64,
    /// The topology changed since the last table check.
    pub dirty: bool,
    /// Changes that came before the previous one had converged.
    pub superseded: u64,
    /// The control messages and bytes received so far when the pending
    /// change happened.
    pub control_at_change: (u64, u64),
}

impl Monitor {
    /// The state for `routers` routers.
    pub fn new(routers: usize) -> Self {
        Self {
            held: vec![BTreeMap::new(); routers],
            links_in: BTreeMap::new(),
            loops_caught: 0,
            convergence: Vec::new(),
            pending: None,
            expected: None,
            epoch: 0,
            dirty: false,
            superseded: 0,
            control_at_change: (0, 0),
        }
    }

    /// The topology changed at `now`: tables must converge to `expected`.
    pub fn topology_changed(
        &mut self,
        why: &str,
        kind: &'static str,
        delayed: bool,
        now: Instant,
        expected: Arc<ExpectedPaths>,
    ) {
        self.epoch += 1;
        let overlapped = self.pending.is_some();
        if overlapped {
            self.superseded += 1;
        }
        self.pending = Some(Pending {
            after: why.to_string(),
            kind,
            at: now,
            overlapped,
            delayed,
        });
        self.expected = Some(expected);
        self.dirty = true;
    }

    /// What the sender of `events` did: deliveries it sent on and
    /// deliveries it settled are no longer held by it. Returns a failed
    /// check, if any.
    pub fn sent(
        &mut self,
        s: Sides,
        events: &[WireEvent],
        names: &[String],
    ) -> Option<(Invariant, String)> {
        let mut failed = None;
        for e in events {
            if let WireEvent::Violation { frame, .. } = e {
                let who =
                    |side: Option<usize>| side.map_or("a client".to_string(), |r| names[r].clone());
                return Some((
                    Invariant::Protocol,
                    format!(
                        "{} says {} broke the protocol (conn {}): {frame}",
                        who(s.from),
                        who(s.to),
                        s.conn
                    ),
                ));
            }
        }
        let r = s.from?;
        for e in events {
            match e {
                WireEvent::Transfer {
                    key: Some(k),
                    trace,
                    ..
                } => {
                    if let Some(slot) = self.held[r]
                        .iter()
                        .find(|(_, (v, _))| v == k)
                        .map(|(slot, _)| *slot)
                    {
                        self.held[r].remove(&slot);
                    }
                    if s.traced {
                        let mut sorted = trace.clone();
                        sorted.sort();
                        sorted.dedup();
                        if sorted.len() != trace.len() {
                            failed = Some((
                                Invariant::Loop,
                                format!("{} forwarded {k} with trace {trace:?}", names[r]),
                            ));
                        } else if trace.last() != Some(&names[r]) {
                            failed = Some((
                                Invariant::Loop,
                                format!(
                                    "{} forwarded {k} with trace {trace:?}, not ending with it",
                                    names[r]
                                ),
                            ));
                        }
                    }
                }
                WireEvent::Settled { dir, slots, .. } => {
                    for slot in slots {
                        self.held[r].remove(&(s.conn, dir.reverse(), *slot));
                    }
                }
                _ => {}
            }
        }
        failed
    }

    /// What the receiver of `events` got: unsettled deliveries it now
    /// holds, links it receives on, messages back where they had been.
    /// Returns notes for the log.
    pub fn received(&mut self, s: Sides, events: &[WireEvent], names: &[String]) -> Vec<String> {
        let mut notes = Vec::new();
        let Some(r) = s.to else {
            return notes;
        };
        for e in events {
            match e {
                WireEvent::Transfer {
                    dir,
                    settled,
                    key,
                    trace,
                    slot,
                    handle,
                    ..
                } => {
                    if let Some(k) = key
                        && !settled
                    {
                        self.held[r].insert((s.conn, *dir, *slot), (*k, *handle));
                    }
                    if s.traced && trace.iter().any(|t| *t == names[r]) {
                        self.loops_caught += 1;
                        let k = key.map_or("?".into(), |k| k.to_string());
                        notes.push(format!("{k} came back (trace {trace:?}): loop caught"));
                    }
                }
                WireEvent::SenderAttached { dir } => {
                    *self.links_in.entry((s.conn, *dir)).or_default() += 1;
                }
                WireEvent::SenderDetached { dir, link } => {
                    *self.links_in.entry((s.conn, *dir)).or_default() -= 1;
                    // The link is gone: what came on it and was neither
                    // sent on nor settled can no longer be settled on it
                    // (its sender settled it on its side).
                    let (conn, dir, (channel, handle)) = (s.conn, *dir, *link);
                    self.held[r].retain(|(c, d, (ch, _)), (_, h)| {
                        !(*c == conn && *d == dir && *ch == channel && *h == handle)
                    });
                }
                WireEvent::Settled { .. } | WireEvent::Violation { .. } => {}
            }
        }
        notes
    }

    /// Deliveries router `r` holds.
    pub fn held(&self, r: usize) -> usize {
        self.held[r].len()
    }

    /// The held deliveries of router `r`, for messages.
    pub fn held_keys(&self, r: usize) -> Vec<MsgKey> {
        self.held[r].values().map(|(k, _)| *k).collect()
    }

    /// The routers holding a copy of `key` (received, neither sent on
    /// nor settled).
    pub fn holders(&self, key: MsgKey) -> impl Iterator<Item = usize> + '_ {
        (0..self.held.len()).filter(move |&r| self.held[r].values().any(|(k, _)| *k == key))
    }

    /// Links on which `conn` delivers in `dir`.
    pub fn links_in(&self, conn: u64, dir: Dir) -> i64 {
        self.links_in.get(&(conn, dir)).copied().unwrap_or(0).max(0)
    }

    /// `conn` is gone.
    pub fn forget_conn(&mut self, conn: u64) {
        for h in &mut self.held {
            h.retain(|(c, _, _), _| *c != conn);
        }
        self.links_in.retain(|(c, _), _| *c != conn);
    }

    /// Router `r` died: it holds nothing.
    pub fn router_down(&mut self, r: usize) {
        self.held[r].clear();
    }
}
