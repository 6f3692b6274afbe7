//! Injecting and healing faults, and starting and killing routers.

use super::Mesh;
use super::conns::ConnKind;
use crate::client::App;
use crate::fault::Fault;
use crate::router::Node;

impl Mesh {
    /// Starts (or restarts) router `i` with the next instance number; its
    /// connectors dial at once.
    pub(crate) fn start_router(&mut self, i: usize) {
        let now = self.clock.now();
        let r = &mut self.routers[i];
        r.instance += 1;
        let auth = self
            .pki
            .as_ref()
            .map(|pki| pki.auth_for(&r.id) as ferry_router::routing::Auth);
        r.node = Some(Node::start(
            &r.config,
            r.instance,
            self.options.routing.clone(),
            auth,
            now,
        ));
        let (id, instance) = (r.id.clone(), r.instance);
        self.touch(i);
        self.note(&id, format_args!("started (instance {instance})"));
        for l in &mut self.links {
            if l.a == i {
                l.next_dial = Some(now);
                l.backoff = super::conns::MIN_BACKOFF;
            }
        }
        self.edge_started(i);
    }

    /// Router `i`'s process dies: its connections drop (peers read what it
    /// had sent, then EOF), and everything it held is gone.
    fn kill_router(&mut self, i: usize) {
        let Some(node) = self.routers[i].node.take() else {
            return;
        };
        self.totals.add(&node.core.stats);
        drop(node);
        self.touch(i);
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(mut conn) = self.conns.remove(&id) else {
                continue;
            };
            for side in 0..2 {
                if conn.alive[side] && conn.router_at(side) == Some(i) {
                    self.close_side(&mut conn, side, false);
                }
            }
            if conn.alive.iter().any(|a| *a) {
                self.sched.sticky.insert(id);
                self.conns.insert(id, conn);
            } else {
                self.monitor.forget_conn(id);
                self.sched.forget_conn(id);
            }
        }
        self.monitor.router_down(i);
        self.edge_killed(i);
        let id = self.routers[i].id.clone();
        self.note(&id, "killed");
    }

    /// Injects `fault` now.
    pub fn inject(&mut self, fault: Fault) {
        self.faults_injected += 1;
        self.note("FAULT", format_args!("inject {fault}"));
        match &fault {
            Fault::Kill { router } => {
                if let Some(i) = self.router_index(router) {
                    self.kill_router(i);
                }
            }
            Fault::Cut { a, b } => {
                for l in self.links_between(a, b) {
                    self.links[l].cut = true;
                    if let Some(c) = self.links[l].conn {
                        self.reset_conn(c);
                    }
                }
                for (e, slot) in self.uplinks_between(a, b) {
                    self.edges[e].uplinks[slot].cut = true;
                    if let Some((c, through)) = self.edges[e].conn
                        && through == slot
                    {
                        self.reset_conn(c);
                    }
                }
            }
            Fault::Partition { routers } => {
                for r in routers {
                    if let Some(i) = self.router_index(r) {
                        self.group[i] = 1;
                    }
                }
                self.apply_silence();
            }
            Fault::Blackhole { a, b } => {
                for l in self.links_between(a, b) {
                    self.links[l].blackholed = true;
                }
                self.apply_silence();
            }
            Fault::OneWay { from, to } => {
                for l in self.links_between(from, to) {
                    let dir = usize::from(self.routers[self.links[l].a].id != *from);
                    self.links[l].oneway[dir] = true;
                }
                self.apply_silence();
            }
            Fault::Delay { a, b, extra } => {
                for l in self.links_between(a, b) {
                    self.links[l].extra = *extra;
                }
            }
            Fault::SlowConsumer { client, delay } => {
                if let Some(App::Consumer(k)) = self.clients.get_mut(*client).map(|c| &mut c.app) {
                    k.extra_delay = *delay;
                }
            }
            Fault::Tamper { from, to, how } => {
                for l in self.links_between(from, to) {
                    let dir = usize::from(self.routers[self.links[l].a].id != *from);
                    self.links[l].tamper[dir] = Some(*how);
                }
            }
            Fault::Hostile { router, how } => self.hostile_begin(router, *how),
        }
        if self.edge_fault(&fault) {
            self.edge_changed();
        } else if let Some(kind) = fault.kind() {
            self.topology_changed(&fault.to_string(), kind);
        }
    }

    /// Heals `fault` now.
    pub fn heal(&mut self, fault: Fault) {
        self.note("FAULT", format_args!("heal {fault}"));
        match &fault {
            Fault::Kill { router } => {
                if let Some(i) = self.router_index(router)
                    && !self.routers[i].is_up()
                {
                    self.start_router(i);
                }
            }
            Fault::Cut { a, b } => {
                for l in self.links_between(a, b) {
                    self.links[l].cut = false;
                }
                for (e, slot) in self.uplinks_between(a, b) {
                    self.edges[e].uplinks[slot].cut = false;
                }
            }
            Fault::Partition { .. } => {
                self.group.iter_mut().for_each(|g| *g = 0);
                self.reset_silent();
            }
            Fault::Blackhole { a, b } => {
                for l in self.links_between(a, b) {
                    self.links[l].blackholed = false;
                }
                self.reset_silent();
            }
            Fault::OneWay { from, to } => {
                for l in self.links_between(from, to) {
                    self.links[l].oneway = [false, false];
                }
                self.reset_silent();
            }
            Fault::Delay { a, b, .. } => {
                for l in self.links_between(a, b) {
                    self.links[l].extra = std::time::Duration::ZERO;
                }
            }
            Fault::SlowConsumer { client, .. } => {
                if let Some(App::Consumer(k)) = self.clients.get_mut(*client).map(|c| &mut c.app) {
                    k.extra_delay = std::time::Duration::ZERO;
                }
            }
            Fault::Tamper { from, to, .. } => {
                for l in self.links_between(from, to) {
                    self.links[l].tamper = [None, None];
                }
            }
            Fault::Hostile { router, .. } => self.hostile_end(router),
        }
        if self.edge_fault(&fault) {
            self.edge_changed();
        } else if let Some(kind) = fault.heal_kind() {
            self.topology_changed(&format!("heal {fault}"), kind);
        }
    }

    /// Whether `fault` is the kill of an edge router or the cut of an
    /// edge router's uplink: it changes no table (an edge router is no
    /// member of the routing protocol), so it is no topology change to
    /// converge from.
    fn edge_fault(&self, fault: &Fault) -> bool {
        match fault {
            Fault::Kill { router } => self.is_edge(router),
            Fault::Cut { a, b } => self.is_edge(a) || self.is_edge(b),
            _ => false,
        }
    }

    /// The uplinks (edge, connector) between routers `a` and `b`, either
    /// way round.
    fn uplinks_between(&self, a: &str, b: &str) -> Vec<(usize, usize)> {
        let (Some(a), Some(b)) = (self.router_index(a), self.router_index(b)) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for (e, edge) in self.edges.iter().enumerate() {
            for (slot, u) in edge.uplinks.iter().enumerate() {
                let ends = (edge.router, u.interior);
                if ends == (a, b) || ends == (b, a) {
                    found.push((e, slot));
                }
            }
        }
        found
    }

    /// An edge router was killed or restarted: a failure in the mesh for
    /// the false-outcome check (its uplink's deliveries in flight are
    /// lost), though no table changes.
    fn edge_changed(&mut self) {
        self.monitor.epoch += 1;
        self.ledger.epoch = self.monitor.epoch;
        self.ledger.faulted = self.faulted();
    }

    /// Whether a failure is in effect somewhere in the mesh.
    fn faulted(&self) -> bool {
        self.routers.iter().any(|r| !r.is_up())
            || self.links.iter().any(|l| l.cut || l.is_silent())
            || self.group.iter().any(|g| *g != 0)
            || self.edges.iter().flat_map(|e| &e.uplinks).any(|u| u.cut)
    }

    /// Heals every fault: restarts dead routers, restores links, ends
    /// partitions, delays and slow consumers.
    pub fn heal_all(&mut self) {
        self.note("FAULT", "heal everything");
        let hostile: Vec<String> = self
            .hostile
            .keys()
            .map(|&i| self.routers[i].id.clone())
            .collect();
        for router in hostile {
            self.hostile_end(&router);
        }
        let mut changed = false;
        for i in 0..self.routers.len() {
            if !self.routers[i].is_up() {
                self.start_router(i);
                changed = true;
            }
        }
        for u in self.edges.iter_mut().flat_map(|e| &mut e.uplinks) {
            u.cut = false;
        }
        for l in &mut self.links {
            changed |= l.cut || l.is_silent();
            l.cut = false;
            l.blackholed = false;
            l.oneway = [false, false];
            l.extra = std::time::Duration::ZERO;
            l.tamper = [None, None];
        }
        changed |= self.group.iter().any(|g| *g != 0);
        self.group.iter_mut().for_each(|g| *g = 0);
        self.reset_silent();
        for c in &mut self.clients {
            if let App::Consumer(k) = &mut c.app {
                k.extra_delay = std::time::Duration::ZERO;
            }
        }
        if changed {
            self.topology_changed("heal everything", crate::fault::HEAL_ALL);
        }
    }

    fn links_between(&self, a: &str, b: &str) -> Vec<usize> {
        let (Some(a), Some(b)) = (self.router_index(a), self.router_index(b)) else {
            return Vec::new();
        };
        (0..self.links.len())
            .filter(|&l| {
                let (x, y) = (self.links[l].a, self.links[l].b);
                (x, y) == (a, b) || (x, y) == (b, a)
            })
            .collect()
    }

    /// Whether bytes between routers `a` and `b` over link `l` vanish.
    fn silent(&self, l: usize) -> bool {
        let link = &self.links[l];
        link.is_silent() || self.group[link.a] != self.group[link.b]
    }

    /// Makes the connections of silent links silent (in the silent
    /// direction only, for a one-way black hole).
    fn apply_silence(&mut self) {
        for l in 0..self.links.len() {
            if self.silent(l)
                && let Some(c) = self.links[l].conn
                && let Some(mut conn) = self.conns.remove(&c)
            {
                let link = &self.links[l];
                let both = link.blackholed || self.group[link.a] != self.group[link.b];
                for (d, p) in conn.pipes.iter_mut().enumerate() {
                    if both || link.oneway[d] {
                        p.blackhole();
                    }
                }
                self.links[l].broken_at = Some(self.clock.now());
                self.index_arrival(&conn);
                self.conns.insert(c, conn);
            }
        }
        for e in 0..self.edges.len() {
            if let Some((c, slot)) = self.edges[e].conn
                && self.uplink_silent(e, slot)
                && let Some(mut conn) = self.conns.remove(&c)
            {
                for p in &mut conn.pipes {
                    p.blackhole();
                }
                self.index_arrival(&conn);
                self.conns.insert(c, conn);
            }
        }
    }

    /// Resets the connections that fell silent on links that no longer
    /// are (TCP would have given up on them; new ones are made).
    fn reset_silent(&mut self) {
        let silent: Vec<u64> = self
            .conns
            .values()
            .filter(|c| match c.kind {
                ConnKind::Router { link } => {
                    !self.silent(link) && c.pipes.iter().any(|p| p.is_blackholed())
                }
                ConnKind::Uplink { edge, slot } => {
                    !self.uplink_silent(edge, slot) && c.pipes.iter().any(|p| p.is_blackholed())
                }
                ConnKind::Client { .. } => false,
            })
            .map(|c| c.id)
            .collect();
        for c in silent {
            self.note("SIM", format_args!("conn {c}: reset after the silence"));
            self.reset_conn(c);
        }
    }

    /// The true topology changed (or the mesh started): the tables must
    /// converge to it again.
    pub(crate) fn topology_changed(&mut self, why: &str, kind: &'static str) {
        let now = self.clock.now();
        let expected = self.expected_paths();
        if self.monitor.pending.is_none() {
            self.monitor.control_at_change = (self.control.messages, self.control.bytes);
        }
        let delayed = self.links.iter().any(|l| !l.extra.is_zero());
        self.monitor
            .topology_changed(why, kind, delayed, now, expected);
        self.ledger.epoch = self.monitor.epoch;
        self.ledger.faulted = self.faulted();
    }
}
