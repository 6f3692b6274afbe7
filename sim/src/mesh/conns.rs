//! Simulated connections: dialing and accepting (the connector loop of
//! `ferry_router::mesh::connector`, with seeded jitter), client connects,
//! moving bytes through pipes, and closing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::engine::Connection;
use ferry_router::config::{ConnectorConfig, ListenerConfig, Role};
use ferry_router::driver::{Endpoint, Peer};

use super::Mesh;
use crate::client::Ctx;
use crate::rng::SimRng;
use crate::tap::{ConnTap, Dir, Tamper};
use crate::wire::{self, Pipe, Segment};

pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A connection that lived this long resets the connector's backoff.
const STABLE: Duration = Duration::from_secs(1);

/// What a connection joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// Two routers over topology link `link` (side 0 dialed).
    Router {
        /// The link's index.
        link: usize,
    },
    /// An edge router's uplink (side 0, the edge) to an interior router's
    /// edge listener (side 1).
    Uplink {
        /// The edge's index among the mesh's edge routers.
        edge: usize,
        /// Its connector's index in the edge's connectors.
        slot: usize,
    },
    /// A client (side 0) and its router (side 1).
    Client {
        /// The client's index.
        client: usize,
    },
}

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Router(usize),
    Client(usize),
}

/// A simulated connection: two pipes and a watcher.
#[derive(Debug)]
pub struct SimConn {
    /// Its id.
    pub id: u64,
    /// What it joins.
    pub kind: ConnKind,
    pub(crate) pipes: [Pipe; 2],
    pub(crate) tap: ConnTap,
    /// Whether each side is still there.
    pub(crate) alive: [bool; 2],
    pub(crate) ends: [End; 2],
}

impl SimConn {
    /// The router at `side`, if a router is there.
    pub(crate) fn router_at(&self, side: usize) -> Option<usize> {
        match self.ends[side] {
            End::Router(r) => Some(r),
            End::Client(_) => None,
        }
    }
}

fn listener(role: Role) -> ListenerConfig {
    ListenerConfig::new("sim", 0, role)
}

impl Mesh {
    /// The connector of link `l` tries to connect.
    pub(crate) fn dial(&mut self, l: usize) {
        let now = self.clock.now();
        let (a, b) = (self.links[l].a, self.links[l].b);
        self.links[l].next_dial = None;
        if !self.routers[a].is_up() || self.links[l].conn.is_some() {
            return;
        }
        let (ida, idb) = (self.routers[a].id.clone(), self.routers[b].id.clone());
        let link = &self.links[l];
        if !self.routers[b].is_up() || link.cut {
            self.note(&ida, format_args!("dial {idb}: refused"));
            return self.redial_later(l, Duration::ZERO, Duration::ZERO);
        }
        if link.is_silent() || self.group[a] != self.group[b] {
            self.note(&ida, format_args!("dial {idb}: no answer"));
            return self.redial_later(l, Duration::ZERO, CONNECT_TIMEOUT);
        }
        let cost = link.cost;
        let quic = link.quic;
        let id = self.next_conn_id();
        let connector = ConnectorConfig::new(idb.clone(), 5673, cost);
        let core_a = self.routers[a].node.as_ref().expect("up").core.clone();
        let core_b = self.routers[b].node.as_ref().expect("up").core.clone();
        let peer = Peer {
            quic,
            ..Peer::default()
        };
        let ep_a = Endpoint::dialed(core_a, &connector, peer.clone(), now);
        let ep_b = Endpoint::accepted(
            core_b,
            &listener(Role::InterRouter),
            &self.security,
            peer,
            now,
        );
        self.routers[a]
            .node
            .as_mut()
            .expect("up")
            .endpoints
            .insert(id, ep_a);
        self.routers[b]
            .node
            .as_mut()
            .expect("up")
            .endpoints
            .insert(id, ep_b);
        self.links[l].conn = Some(id);
        self.links[l].connected_at = Some(now);
        self.links[l].heard = [None, None];
        self.links[l].broken_at = Some(now);
        self.touch(a);
        self.touch(b);
        self.conns.insert(
            id,
            Box::new(SimConn {
                id,
                kind: super::conns::ConnKind::Router { link: l },
                pipes: [0u64, 1].map(|dir| {
                    if quic {
                        // Its own source, so that the other choices of the
                        // run do not depend on how many frames it carries.
                        let mix = self.wire_seed ^ 0x5155_4943 ^ (id << 1 | dir);
                        Pipe::quic(self.options.bandwidth, SimRng::new(mix))
                    } else {
                        Pipe::with_rate(self.options.bandwidth)
                    }
                }),
                tap: self.new_tap(),
                alive: [true, true],
                ends: [End::Router(a), End::Router(b)],
            }),
        );
        let over = if quic { " over QUIC" } else { "" };
        self.note(&ida, format_args!("conn {id}: dialed {idb}{over}"));
    }

    /// Schedules the next attempt of link `l`'s connector. Attempts start
    /// at most once per jittered back-off, as in
    /// `ferry_router::mesh::connector`: the attempt that began `spent` ago
    /// and ends `left` from now counts towards the wait.
    fn redial_later(&mut self, l: usize, spent: Duration, left: Duration) {
        let backoff = self.links[l].backoff;
        let wait = self.jitter(backoff).saturating_sub(spent).max(left);
        let link = &mut self.links[l];
        link.backoff = (backoff * 2).min(MAX_BACKOFF);
        link.next_dial = Some(self.clock.now() + wait);
    }

    /// Link `l`'s connection ended on the dialing side: dial again later.
    fn link_ended(&mut self, l: usize) {
        let now = self.clock.now();
        let link = &mut self.links[l];
        link.conn = None;
        let lived = link
            .connected_at
            .take()
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        if lived >= STABLE {
            link.backoff = MIN_BACKOFF;
        }
        if self.routers[link.a].is_up() {
            self.redial_later(l, lived, Duration::ZERO);
        }
    }

    /// Client `c` tries to connect to its router.
    pub(crate) fn connect_client(&mut self, c: usize) {
        let now = self.clock.now();
        self.clients[c].reconnect_at = None;
        let r = self.clients[c].router;
        let name = self.clients[c].name.clone();
        if !self.routers[r].is_up() {
            self.note(&name, "connect: refused");
            let mut ctx = Ctx {
                now,
                at: self.clock.elapsed(),
                ledger: &mut self.ledger,
                log: &mut self.log,
                violations: &mut self.violations,
            };
            self.clients[c].disconnected(&mut ctx);
            return;
        }
        let id = self.next_conn_id();
        let node = self.routers[r].node.as_mut().expect("up");
        let ep = Endpoint::accepted(
            node.core.clone(),
            &listener(Role::Normal),
            &self.security,
            Peer::default(),
            now,
        );
        node.endpoints.insert(id, ep);
        self.touch(r);
        self.sched.client_conns.insert(id);
        let engine = self.clients[c].engine(now);
        self.clients[c].connected(id, engine);
        self.conns.insert(
            id,
            Box::new(SimConn {
                id,
                kind: ConnKind::Client { client: c },
                pipes: Default::default(),
                tap: self.new_tap(),
                alive: [true, true],
                ends: [End::Client(c), End::Router(r)],
            }),
        );
        let rid = self.routers[r].id.clone();
        self.note(&name, format_args!("conn {id}: connected to {rid}"));
    }

    pub(crate) fn new_tap(&self) -> ConnTap {
        let mut tap = ConnTap::default();
        if self.options.log_frames {
            tap.log_frames();
        }
        tap
    }

    /// The one-way latency on `conn` now.
    fn latency(&self, conn: &SimConn) -> Duration {
        match conn.kind {
            ConnKind::Router { link } => self.links[link].latency + self.links[link].extra,
            ConnKind::Uplink { edge, slot } => self.edges[edge].uplinks[slot].latency,
            ConnKind::Client { .. } => self.options.client_latency,
        }
    }

    fn tamper(&self, conn: &SimConn, dir: Dir) -> Option<Tamper> {
        match conn.kind {
            ConnKind::Router { link } => self.links[link].tamper[dir.index()],
            ConnKind::Uplink { .. } | ConnKind::Client { .. } => None,
        }
    }

    fn engine_mut(&mut self, end: End, id: u64) -> Option<EndMut<'_>> {
        match end {
            End::Router(r) => {
                let node = self.routers[r].node.as_mut()?;
                let span = node.span.clone();
                self.sched.touch(r);
                node.endpoints.get_mut(&id).map(|e| EndMut::Router(e, span))
            }
            End::Client(c) => self.clients[c]
                .conn
                .as_mut()
                .filter(|cc| cc.id == id)
                .map(|cc| EndMut::Client(&mut cc.engine)),
        }
    }

    /// Moves what `side` of `conn` has to send into its pipe. Returns
    /// whether there was anything.
    fn transmit_side(&mut self, conn: &mut SimConn, side: usize) -> bool {
        let now = self.clock.now();
        let dir = if side == 0 { Dir::Forward } else { Dir::Back };
        let latency = self.latency(conn);
        let tamper = self.tamper(conn, dir);
        let mut any = false;
        loop {
            if conn.pipes[dir.index()].writable_at(now).is_some() {
                break; // the send buffer is full
            }
            let Some(bytes) = self
                .engine_mut(conn.ends[side], conn.id)
                .and_then(|mut e| e.poll_transmit(now))
            else {
                break;
            };
            any = true;
            if conn.pipes[dir.index()].is_quic() {
                // Frame by frame: each goes on its stream.
                for unit in wire::units(&bytes) {
                    let stream = wire::stream_of(&unit);
                    let (out, events) = conn.tap.process(dir, unit, tamper);
                    self.log_frame_lines(conn, side);
                    self.on_sent(conn, dir, &events);
                    if !out.is_empty() {
                        conn.pipes[dir.index()].send_frame(now, latency, stream, out, events);
                    }
                }
                continue;
            }
            let (out, events) = conn.tap.process(dir, bytes, tamper);
            self.log_frame_lines(conn, side);
            self.on_sent(conn, dir, &events);
            conn.pipes[dir.index()].send(now, latency, out, events);
        }
        self.index_arrival(conn);
        any
    }

    /// Logs the frames the watcher of `conn` saw `side` send.
    fn log_frame_lines(&mut self, conn: &mut SimConn, side: usize) {
        let lines = conn.tap.take_frame_lines();
        if !lines.is_empty() {
            let who = match conn.ends[side] {
                End::Router(r) => self.routers[r].id.clone(),
                End::Client(c) => self.clients[c].name.clone(),
            };
            for l in lines {
                self.note(&who, format_args!("conn {} > {l}", conn.id));
            }
        }
    }

    /// Whether `end` has output waiting.
    fn has_output(&self, end: End, id: u64) -> bool {
        match end {
            End::Router(r) => self.routers[r]
                .node
                .as_ref()
                .and_then(|n| n.endpoints.get(&id))
                .is_some_and(|ep| ep.output_backlog() > 0),
            End::Client(c) => self.clients[c]
                .conn
                .as_ref()
                .is_some_and(|cc| cc.id == id && cc.engine.pending_output() > 0),
        }
    }

    /// The connections that may have output to send or a side to close
    /// in this round: those of the routers whose code ran in it or the
    /// round before (`busy`, and `sched.busy` so far), those with a
    /// client end, and those left with something to do.
    fn candidates(&self, busy: &BTreeSet<usize>) -> BTreeSet<u64> {
        let mut ids: BTreeSet<u64> = self.sched.sticky.clone();
        ids.extend(self.sched.client_conns.iter().copied());
        for &r in busy.iter().chain(&self.sched.busy) {
            if let Some(node) = &self.routers[r].node {
                ids.extend(node.endpoints.keys().copied());
            }
        }
        ids
    }

    /// Whether a live side of `c` has output waiting.
    fn wants_transmit(&self, c: &SimConn) -> bool {
        (0..2).any(|s| c.alive[s] && self.has_output(c.ends[s], c.id))
    }

    /// Every live side of every connection sends what it has (only the
    /// candidates can have anything).
    pub(crate) fn pump_transmit(&mut self, busy: &BTreeSet<usize>) -> bool {
        let ids: Vec<u64> = self
            .candidates(busy)
            .into_iter()
            .filter(|id| self.conns.get(id).is_some_and(|c| self.wants_transmit(c)))
            .collect();
        let mut progress = false;
        for id in ids {
            let Some(mut conn) = self.conns.remove(&id) else {
                continue;
            };
            for side in 0..2 {
                if conn.alive[side] {
                    progress |= self.transmit_side(&mut conn, side);
                }
            }
            // Output that would not go (none so far) is looked at again
            // in every round, as a loop over every connection would.
            if self.wants_transmit(&conn) {
                self.sched.sticky.insert(id);
            } else {
                self.sched.sticky.remove(&id);
            }
            self.conns.insert(id, conn);
        }
        progress
    }

    /// Indexes `conn`'s earliest arrival again (its pipes changed).
    pub(crate) fn index_arrival(&mut self, conn: &SimConn) {
        let now = self.clock.now();
        let at = conn.pipes.iter().filter_map(|p| p.next_event(now)).min();
        self.sched.set_arrival(conn.id, at);
    }

    /// Delivers, on each connection and in each direction, the first
    /// segment that has arrived; the rest wait for the next round of the
    /// step, after routing and inboxes have run. In the router a
    /// connection task reads what its socket has, and other tasks — the
    /// routing task, the other connections — may run between two reads,
    /// so what a peer wrote in two chunks (the priority control session's
    /// and the data session's, say) may be handled with a routing change
    /// in between: delivering it all at once would hide those orders.
    pub(crate) fn pump_arrivals(&mut self) -> bool {
        let now = self.clock.now();
        let ids = self.sched.arrived(now);
        let mut progress = false;
        for id in ids {
            let Some(mut conn) = self.conns.remove(&id) else {
                continue;
            };
            for dir in Dir::BOTH {
                let to = dir.to_side();
                loop {
                    if conn.alive[to] && self.paused(conn.ends[to], id) {
                        break;
                    }
                    let Some(seg) = conn.pipes[dir.index()].receive(now) else {
                        break;
                    };
                    progress = true;
                    if !conn.alive[to] {
                        continue; // nobody reads: drop what arrived
                    }
                    if let ConnKind::Router { link } = conn.kind {
                        let link = &mut self.links[link];
                        match seg {
                            Segment::Data(..) => link.heard[dir.index()] = Some(now),
                            Segment::Eof => link.broken_at = Some(now),
                        }
                    }
                    match seg {
                        Segment::Data(bytes, events) => {
                            self.on_received(&conn, dir, &events);
                            if let Some(mut e) = self.engine_mut(conn.ends[to], id) {
                                e.handle_input(&bytes, now);
                            }
                        }
                        Segment::Eof => {
                            if let Some(mut e) = self.engine_mut(conn.ends[to], id) {
                                e.handle_eof(now);
                            }
                        }
                    }
                    break; // one read per round
                }
                self.quic_overtakes += std::mem::take(&mut conn.pipes[dir.index()].overtakes);
            }
            self.index_arrival(&conn);
            self.conns.insert(id, conn);
        }
        progress
    }

    /// A client connection over its producers' byte budget is not read
    /// from (as in the router's driver).
    fn paused(&mut self, end: End, id: u64) -> bool {
        match end {
            End::Router(r) => self.routers[r]
                .node
                .as_ref()
                .and_then(|n| n.endpoints.get(&id))
                .is_some_and(Endpoint::should_pause),
            End::Client(_) => false,
        }
    }

    /// Whether `side` of `conn` is alive and its engine has finished.
    fn finished(&self, conn: &SimConn, side: usize) -> bool {
        conn.alive[side]
            && match conn.ends[side] {
                End::Router(r) => self.routers[r]
                    .node
                    .as_ref()
                    .and_then(|n| n.endpoints.get(&conn.id))
                    .is_none_or(Endpoint::is_finished),
                End::Client(c) => self.clients[c]
                    .conn
                    .as_ref()
                    .filter(|cc| cc.id == conn.id)
                    .is_none_or(|cc| cc.engine.is_finished()),
            }
    }

    /// Closes the sides whose engine has finished: flush, EOF, teardown
    /// (only the candidates can have one).
    pub(crate) fn reap(&mut self, busy: &BTreeSet<usize>) -> bool {
        let ids: Vec<u64> = self
            .candidates(busy)
            .into_iter()
            .filter(|id| {
                self.conns
                    .get(id)
                    .is_some_and(|c| self.finished(c, 0) || self.finished(c, 1))
            })
            .collect();
        let mut progress = false;
        for id in ids {
            let Some(mut conn) = self.conns.remove(&id) else {
                continue;
            };
            for side in 0..2 {
                if self.finished(&conn, side) {
                    progress = true;
                    self.transmit_side(&mut conn, side);
                    self.close_side(&mut conn, side, true);
                }
            }
            if conn.alive.iter().any(|a| *a) {
                self.conns.insert(id, conn);
            } else {
                self.monitor.forget_conn(id);
                self.sched.forget_conn(id);
            }
        }
        progress
    }

    /// Side `side` of `conn` is gone: its outgoing pipe ends with EOF (the
    /// peer reads what was sent, then EOF); `teardown`: the router's
    /// endpoint releases what it holds (false when the process died).
    pub(crate) fn close_side(&mut self, conn: &mut SimConn, side: usize, teardown: bool) {
        let now = self.clock.now();
        let latency = self.latency(conn);
        conn.pipes[side].close(now, latency);
        self.index_arrival(conn);
        conn.alive[side] = false;
        if let ConnKind::Router { link } = conn.kind {
            self.links[link].broken_at = Some(now);
        }
        match conn.ends[side] {
            End::Router(r) => {
                self.touch(r);
                let who = self.routers[r].id.clone();
                let mut came_up = false;
                if let Some(node) = self.routers[r].node.as_mut()
                    && let Some(mut ep) = node.endpoints.remove(&conn.id)
                {
                    came_up = ep.edge_peer().is_some();
                    if teardown {
                        let _in = node.span.enter();
                        ep.teardown(now);
                    }
                }
                self.note(&who, format_args!("conn {}: closed", conn.id));
                if let ConnKind::Uplink { edge, .. } = conn.kind
                    && side == 0
                {
                    self.uplink_ended(edge, came_up, teardown);
                }
                if let super::conns::ConnKind::Router { link } = conn.kind
                    && side == 0
                {
                    if teardown {
                        self.link_ended(link);
                    } else {
                        self.links[link].conn = None;
                    }
                }
            }
            End::Client(c) => {
                let who = self.clients[c].name.clone();
                self.note(&who, format_args!("conn {}: closed", conn.id));
                let mut ctx = Ctx {
                    now,
                    at: self.clock.elapsed(),
                    ledger: &mut self.ledger,
                    log: &mut self.log,
                    violations: &mut self.violations,
                };
                self.clients[c].disconnected(&mut ctx);
            }
        }
    }

    /// Resets `conn` at once: both sides see EOF now.
    pub(crate) fn reset_conn(&mut self, id: u64) {
        let now = self.clock.now();
        if let Some(conn) = self.conns.remove(&id) {
            let mut conn = conn;
            if let ConnKind::Router { link } = conn.kind {
                self.links[link].broken_at = Some(now);
            }
            for p in &mut conn.pipes {
                p.reset(now);
            }
            self.index_arrival(&conn);
            self.conns.insert(id, conn);
        }
    }
}

/// A connection end's engine (a router's, with the router's span).
enum EndMut<'a> {
    Router(&'a mut Endpoint, tracing::Span),
    Client(&'a mut Connection),
}

impl EndMut<'_> {
    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        match self {
            EndMut::Router(e, span) => span.in_scope(|| e.poll_transmit(now)),
            EndMut::Client(c) => c.poll_transmit(now),
        }
    }

    fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        match self {
            EndMut::Router(e, span) => span.in_scope(|| e.handle_input(bytes, now)),
            EndMut::Client(c) => c.handle_input(bytes, now),
        }
    }

    fn handle_eof(&mut self, now: Instant) {
        match self {
            EndMut::Router(e, span) => span.in_scope(|| e.handle_eof(now)),
            EndMut::Client(c) => c.handle_eof(),
        }
    }
}
