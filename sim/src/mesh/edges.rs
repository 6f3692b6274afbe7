//! Edge routers: an edge router's uplink dialer, a copy of the policy of
//! `ferry_router::edge::run` (the simulator cannot run that tokio task):
//! one uplink at a time through the edge's `role = "edge"` connectors in
//! order; when an uplink that lasted a second ends the next connector
//! (round robin) is dialed at once; a connector that fails (or whose
//! uplink ended within a second of the dial) is followed at once by the
//! next; only after a whole round failed does the dialer wait, 100 ms
//! doubling to 1 s with jitter (seeded); no fail-back. And the check that
//! an edge whose uplink ended is attached again within a bounded time when
//! one of its interior routers can be reached.

use std::time::{Duration, Instant};

use ferry_router::config::{ListenerConfig, Role};
use ferry_router::driver::{Endpoint, Peer};

use super::Mesh;
use super::conns::{ConnKind, End, SimConn};
use crate::violation::{Invariant, Violation};
use crate::wire::Pipe;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a connect to a router that does not answer takes to fail
/// (`mesh::connector`'s `CONNECT_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// An uplink that lasted this long from its dial resets the back-off
/// (`edge::STABLE`); one that ended sooner counts as a failed dial.
const STABLE: Duration = Duration::from_secs(1);

/// An edge router that lost an uplink that had lasted a second, while
/// another of its interior routers could be reached, is attached again
/// within this long (plus [`CONNECT_TIMEOUT`] for each of its interior
/// routers that is up but cannot be reached: the dialer may try it
/// first). An uplink that ended sooner counts as a failed dial, which may
/// end a round: then [`REATTACH_BOUND`] applies.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(1);

/// An edge router none of whose interior routers could be reached (or
/// whose uplink ended within a second of its dial) is attached again
/// within this long after one can be (or after the loss) (the dialer may have
/// just begun an attempt that fails after [`CONNECT_TIMEOUT`], then wait
/// its longest back-off, 1.5 s with jitter), plus [`CONNECT_TIMEOUT`] per
/// interior router up but not reachable.
pub const REATTACH_BOUND: Duration = Duration::from_secs(3);

/// One `role = "edge"` connector of an edge router.
#[derive(Debug, Clone)]
pub struct Uplink {
    /// The interior router it dials (its edge listener).
    pub interior: usize,
    /// One-way latency.
    pub latency: Duration,
    /// Cut (the cut fault between the edge and the interior router): its
    /// connection is reset, none can be made until healed.
    pub cut: bool,
}

/// An edge router of the mesh and its uplink dialer's state.
#[derive(Debug, Clone)]
pub struct SimEdge {
    /// The router's index.
    pub router: usize,
    /// Its edge connectors, in order of preference.
    pub uplinks: Vec<Uplink>,
    /// The connector dialed next.
    next: usize,
    /// Connectors that failed in a row since the last uplink came up or
    /// the last back-off.
    failed_in_a_row: usize,
    backoff: Duration,
    /// When the dialer dials next (`None`: an attempt or an uplink is
    /// under way, or the router is down).
    pub next_dial: Option<Instant>,
    /// The uplink connection being made or up, and its connector.
    pub conn: Option<(u64, usize)>,
    /// When the connection in `conn` was dialed.
    dialed_at: Option<Instant>,
    /// The last uplink lost had lasted [`STABLE`]: the dialer tries the
    /// next connector at once, whatever came before.
    lost_stable: bool,
    /// The interior router its uplink is attached to (the interior's open
    /// has arrived).
    pub attached: Option<usize>,
    /// Since when it has had no uplink (running).
    detached_since: Option<Instant>,
    /// Since when one of its interior routers has been reachable.
    reachable_since: Option<Instant>,
    /// An uplink came up since the router (re)started.
    had_uplink: bool,
    /// Uplinks that came up, after the first of each run of the router.
    pub failovers: u64,
    /// The longest time it went without an uplink while an interior
    /// router could be reached.
    pub longest_detached: Duration,
}

impl SimEdge {
    /// An edge router `router` with these connectors.
    pub fn new(router: usize, uplinks: Vec<Uplink>) -> Self {
        Self {
            router,
            uplinks,
            next: 0,
            failed_in_a_row: 0,
            backoff: MIN_BACKOFF,
            next_dial: None,
            conn: None,
            dialed_at: None,
            lost_stable: false,
            attached: None,
            detached_since: None,
            reachable_since: None,
            had_uplink: false,
            failovers: 0,
            longest_detached: Duration::ZERO,
        }
    }
}

/// What the edge routers of a run did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeReport {
    /// Edge routers.
    pub edges: usize,
    /// Uplinks that came up after an earlier one of the same run of the
    /// router ended (failovers and re-attachments).
    pub failovers: u64,
    /// The longest an edge router went without an uplink while one of its
    /// interior routers could be reached.
    pub longest_detached: Duration,
}

impl Mesh {
    /// The edge index of router `r`, if it is an edge router.
    pub(crate) fn edge_of(&self, r: usize) -> Option<usize> {
        self.edges.iter().position(|e| e.router == r)
    }

    /// Where router `r`'s clients are in the mesh's view: an interior
    /// router itself; an edge router, the interior router its uplink is
    /// attached to (`None` without an uplink).
    pub(crate) fn host(&self, r: usize) -> Option<usize> {
        match self.edge_of(r) {
            None => Some(r),
            Some(e) => self.edges[e].attached,
        }
    }

    /// Edge router `r` (re)started: its dialer begins with its first
    /// connector, at once.
    pub(crate) fn edge_started(&mut self, r: usize) {
        let now = self.clock.now();
        if let Some(e) = self.edge_of(r) {
            let edge = &mut self.edges[e];
            edge.next = 0;
            edge.failed_in_a_row = 0;
            edge.backoff = MIN_BACKOFF;
            edge.next_dial = Some(now);
            edge.conn = None;
            edge.attached = None;
            edge.detached_since = Some(now);
            edge.lost_stable = true;
            edge.had_uplink = false;
        }
    }

    /// Edge router `r` died: its dialer with it.
    pub(crate) fn edge_killed(&mut self, r: usize) {
        if let Some(e) = self.edge_of(r) {
            let edge = &mut self.edges[e];
            edge.next_dial = None;
            edge.attached = None;
            edge.detached_since = None;
        }
    }

    /// Whether the uplink of edge `e` through connector `slot` is silent
    /// (a partition between the edge and its interior router).
    pub(crate) fn uplink_silent(&self, e: usize, slot: usize) -> bool {
        let edge = &self.edges[e];
        self.group[edge.router] != self.group[edge.uplinks[slot].interior]
    }

    /// Edge `e`'s dialer dials its next connector.
    pub(crate) fn dial_uplink(&mut self, e: usize) {
        let now = self.clock.now();
        let r = self.edges[e].router;
        self.edges[e].next_dial = None;
        if !self.routers[r].is_up() || self.edges[e].conn.is_some() {
            return;
        }
        let slot = self.edges[e].next;
        self.edges[e].next = (slot + 1) % self.edges[e].uplinks.len();
        let i = self.edges[e].uplinks[slot].interior;
        let (ide, idi) = (self.routers[r].id.clone(), self.routers[i].id.clone());
        if !self.routers[i].is_up() || self.edges[e].uplinks[slot].cut {
            self.note(&ide, format_args!("uplink to {idi}: refused"));
            return self.uplink_failed(e, Duration::ZERO);
        }
        if self.uplink_silent(e, slot) {
            self.note(&ide, format_args!("uplink to {idi}: no answer"));
            return self.uplink_failed(e, CONNECT_TIMEOUT);
        }
        let id = self.next_conn_id();
        let connector = {
            let mut c = ferry_router::config::ConnectorConfig::new(
                idi.clone(),
                crate::router::EDGE_PORT,
                1,
            );
            c.role = Role::Edge;
            c
        };
        let core_e = self.routers[r].node.as_ref().expect("up").core.clone();
        let core_i = self.routers[i].node.as_ref().expect("up").core.clone();
        let ep_e = Endpoint::dialed(core_e, &connector, Peer::default(), now);
        let listener = ListenerConfig::new("sim", crate::router::EDGE_PORT, Role::Edge);
        let ep_i = Endpoint::accepted(core_i, &listener, &self.security, Peer::default(), now);
        for (router, ep) in [(r, ep_e), (i, ep_i)] {
            self.routers[router]
                .node
                .as_mut()
                .expect("up")
                .endpoints
                .insert(id, ep);
            self.touch(router);
        }
        self.edges[e].conn = Some((id, slot));
        self.edges[e].dialed_at = Some(now);
        self.conns.insert(
            id,
            Box::new(SimConn {
                id,
                kind: ConnKind::Uplink { edge: e, slot },
                pipes: [0, 1].map(|_| Pipe::with_rate(None)),
                tap: self.new_tap(),
                alive: [true, true],
                ends: [End::Router(r), End::Router(i)],
            }),
        );
        self.note(&ide, format_args!("conn {id}: uplink dialed {idi}"));
    }

    /// An attempt of edge `e`'s dialer failed (it took `left` more from
    /// now): the next connector at once, or after a whole round the
    /// back-off.
    fn uplink_failed(&mut self, e: usize, left: Duration) {
        let now = self.clock.now();
        let edge = &mut self.edges[e];
        edge.failed_in_a_row += 1;
        if edge.failed_in_a_row < edge.uplinks.len() {
            edge.next_dial = Some(now + left);
            return;
        }
        edge.failed_in_a_row = 0;
        let backoff = edge.backoff;
        let wait = self.jitter(backoff);
        let edge = &mut self.edges[e];
        edge.backoff = (backoff * 2).min(MAX_BACKOFF);
        edge.next_dial = Some(now + left + wait);
    }

    /// Edge `e`'s uplink connection ended on the edge's side (`came_up`:
    /// the uplink came up, the interior having opened it and kept it
    /// open): if it came up and lasted [`STABLE`] from its dial, the next
    /// connector at once, the back-off reset; if not, a failed attempt.
    /// `running`: the edge router is still running.
    pub(crate) fn uplink_ended(&mut self, e: usize, came_up: bool, running: bool) {
        let now = self.clock.now();
        let r = self.edges[e].router;
        let edge = &mut self.edges[e];
        edge.conn = None;
        let lived = edge
            .dialed_at
            .take()
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        let stable = came_up && lived >= STABLE;
        if edge.attached.is_some() {
            edge.lost_stable = stable;
        }
        if let Some(i) = edge.attached.take()
            && running
        {
            edge.detached_since = Some(now);
            let (ide, idi) = (self.routers[r].id.clone(), self.routers[i].id.clone());
            self.note(&ide, format_args!("uplink to {idi} lost"));
        }
        if !running || !self.routers[r].is_up() {
            return;
        }
        if stable {
            let edge = &mut self.edges[e];
            edge.failed_in_a_row = 0;
            edge.backoff = MIN_BACKOFF;
            edge.next_dial = Some(now);
        } else {
            self.uplink_failed(e, Duration::ZERO);
        }
    }

    /// After every step: notes the uplinks that came up, and checks that
    /// no edge router stays without an uplink longer than the bounds
    /// while one of its interior routers can be reached.
    pub(crate) fn watch_edges(&mut self) {
        let now = self.clock.now();
        for e in 0..self.edges.len() {
            let r = self.edges[e].router;
            let Some(node) = self.routers[r].node.as_ref() else {
                continue;
            };
            if let Some((id, slot)) = self.edges[e].conn
                && self.edges[e].attached.is_none()
                && node
                    .endpoints
                    .get(&id)
                    .is_some_and(|ep| ep.edge_peer().is_some())
            {
                let i = self.edges[e].uplinks[slot].interior;
                let edge = &mut self.edges[e];
                edge.attached = Some(i);
                let mut took = None;
                if let Some(since) = edge.detached_since.take() {
                    let reachable = edge.reachable_since.map_or(now, |t| t.max(since));
                    let d = now.saturating_duration_since(reachable);
                    edge.longest_detached = edge.longest_detached.max(d);
                    took = Some(now.duration_since(since));
                }
                let (ide, idi) = (self.routers[r].id.clone(), self.routers[i].id.clone());
                let took = took.map_or(String::new(), |d| {
                    format!(" ({} ms without one)", d.as_millis())
                });
                self.note(&ide, format_args!("conn {id}: uplink to {idi} up{took}"));
                let edge = &mut self.edges[e];
                if edge.had_uplink {
                    edge.failovers += 1;
                }
                edge.had_uplink = true;
            }
            let (mut reachable, mut silent) = (false, 0u32);
            for slot in 0..self.edges[e].uplinks.len() {
                let u = &self.edges[e].uplinks[slot];
                if self.routers[u.interior].is_up() && !u.cut {
                    if self.uplink_silent(e, slot) {
                        silent += 1;
                    } else {
                        reachable = true;
                    }
                }
            }
            let edge = &mut self.edges[e];
            if !reachable {
                edge.reachable_since = None;
                continue;
            }
            let since = *edge.reachable_since.get_or_insert(now);
            let Some(lost) = edge.detached_since else {
                continue;
            };
            let (start, bound) = if since > lost {
                (since, REATTACH_BOUND)
            } else if edge.lost_stable {
                (lost, FAILOVER_BOUND)
            } else {
                (lost, REATTACH_BOUND)
            };
            let bound = bound + CONNECT_TIMEOUT * silent;
            if now > start + bound {
                let ide = self.routers[r].id.clone();
                let can: Vec<&str> = self.edges[e]
                    .uplinks
                    .iter()
                    .enumerate()
                    .filter(|(s, u)| {
                        self.routers[u.interior].is_up() && !u.cut && !self.uplink_silent(e, *s)
                    })
                    .map(|(_, u)| self.routers[u.interior].id.as_str())
                    .collect();
                let v = Violation::new(
                    self.clock.elapsed(),
                    Invariant::Liveness,
                    format!(
                        "edge router {ide} has had no uplink for {} ms (since {:?} into the run) \
                         although {} could be reached for {} ms (bound {} ms)",
                        now.duration_since(lost).as_millis(),
                        self.clock.elapsed() - now.duration_since(lost),
                        can.join(" and "),
                        now.duration_since(since).as_millis(),
                        bound.as_millis()
                    ),
                );
                return self.fail(v);
            }
        }
    }

    /// What the edge routers did, if the mesh has any.
    pub(crate) fn edge_report(&self) -> Option<EdgeReport> {
        (!self.edges.is_empty()).then(|| EdgeReport {
            edges: self.edges.len(),
            failovers: self.edges.iter().map(|e| e.failovers).sum(),
            longest_detached: self
                .edges
                .iter()
                .map(|e| e.longest_detached)
                .max()
                .unwrap_or_default(),
        })
    }
}
