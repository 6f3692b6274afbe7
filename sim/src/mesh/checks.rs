//! The invariant checks that need the whole mesh: after every step
//! (buffers, credit of producers whose address has no consumer at all,
//! convergence), and once the mesh has settled (tables, addresses, credit,
//! every message settled).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ferry_router::routing::{RouterId, RoutingTable};

use super::Mesh;
use crate::client::{App, SimClient};
use crate::fault::Action;
use crate::monitor::{ConvergenceRecord, Sides};
use crate::paths::ExpectedPaths;
use crate::tap::{Dir, WireEvent};
use crate::violation::{Invariant, Violation};

/// How a liveness failure names credit parked on links that cannot use
/// it (see [`Mesh::parked_credit`]).
pub const PARKED: &str = "credit parked on idle links";

/// How a liveness failure names credit of a multicast address parked on
/// links that cannot use it (the router never takes multicast credit back
/// from a data link).
pub const MULTICAST_PARKED: &str = "multicast credit parked on idle links";

/// The name of a multicast data link starts so, then names its tree's
/// origin router (`ferry:tree:<origin>:<router>:<address>`).
const TREE_LINK: &str = "ferry:tree:";

/// How a liveness failure names an anonymous sender whose messages span
/// several frames.
pub const STREAMED: &str = "larger than a frame";

/// How long after the tables converge producers' credit must reflect
/// the consumers they can reach.
pub const CREDIT_GRACE: Duration = Duration::from_secs(2);

/// The usable links of a topology: (router, router, cost).
type Edges = Vec<(usize, usize, u32)>;

/// A table check's answer.
type Verdict = Result<(), String>;

/// What the checks keep between calls: the expected paths of the last
/// topology seen, and each router's table verdict (see
/// [`Mesh::check_tables`]).
#[derive(Debug, Default)]
pub(crate) struct CheckCache {
    /// The usable links of the last topology, and its paths.
    paths: RefCell<Option<(Edges, Arc<ExpectedPaths>)>>,
    tables: RefCell<TableVerdicts>,
}

/// Per router, the table last checked and its verdict, against `paths`.
#[derive(Debug, Default)]
struct TableVerdicts {
    paths: Option<Arc<ExpectedPaths>>,
    by_router: Vec<Option<(Arc<RoutingTable>, Verdict)>>,
}

impl Mesh {
    fn sides(&self, conn: &super::SimConn, dir: Dir) -> Sides {
        Sides {
            conn: conn.id,
            from: conn.router_at(dir.from_side()),
            to: conn.router_at(dir.to_side()),
            traced: matches!(conn.kind, super::conns::ConnKind::Router { .. }),
        }
    }

    /// Wire events as the sender sent them.
    pub(crate) fn on_sent(&mut self, conn: &super::SimConn, dir: Dir, events: &[WireEvent]) {
        let s = self.sides(conn, dir);
        if let Some((inv, detail)) = self.monitor.sent(s, events, &self.names) {
            let v = Violation::new(self.clock.elapsed(), inv, detail);
            self.fail(v);
        }
    }

    /// Wire events as the receiver got them.
    pub(crate) fn on_received(&mut self, conn: &super::SimConn, dir: Dir, events: &[WireEvent]) {
        let s = self.sides(conn, dir);
        if let Some(r) = s.to {
            self.touch(r);
        }
        for n in self.monitor.received(s, events, &self.names) {
            let who = s.to.map_or("?".into(), |r| self.names[r].clone());
            self.note(&who, n);
        }
    }

    /// The checks after every step.
    pub(crate) fn check_step(&mut self, tables_changed: bool) {
        self.flush_violations();
        if self.failure().is_some() {
            return;
        }
        if let Err(e) = self.check_buffers() {
            return self.fail(Violation::new(self.clock.elapsed(), Invariant::Buffer, e));
        }
        if let Err(e) = self.check_orphan_credit() {
            return self.fail(Violation::new(self.clock.elapsed(), Invariant::Credit, e));
        }
        if !self.edges.is_empty() {
            self.watch_edges();
            if self.failure().is_some() {
                return;
            }
        }
        if self.monitor.pending.is_some() && (tables_changed || self.monitor.dirty) {
            self.monitor.dirty = false;
            if self.check_tables().is_ok() {
                let p = self.monitor.pending.take().expect("pending");
                let (after, kind, overlapped, delayed) = (p.after, p.kind, p.overlapped, p.delayed);
                let took = self.clock.now().duration_since(p.at);
                self.note(
                    "CHECK",
                    format_args!("tables converged {took:?} after {after}"),
                );
                let (m0, b0) = self.monitor.control_at_change;
                self.monitor.convergence.push(ConvergenceRecord {
                    after,
                    kind,
                    overlapped,
                    delayed,
                    routers: self.routers.len() - self.edges.len(),
                    took,
                    control: (self.control.messages - m0, self.control.bytes - b0),
                });
                let epoch = self.monitor.epoch;
                self.schedule(
                    self.clock.elapsed() + CREDIT_GRACE,
                    Action::CheckCredit { epoch },
                );
            }
        }
    }

    /// Each router holds at most the deliveries it granted credit for, and
    /// each producer connection's bytes in flight stay within its budget.
    ///
    /// Incremental: only the routers whose code ran in this step are
    /// checked. What the check reads of a router (the deliveries the wire
    /// shows it holding, the links it receives on, its endpoints' budgets)
    /// changes only when its code runs (it sends, receives or closes), and
    /// every router was checked when it started; the first failing router
    /// in index order is the one a check of every router would name.
    fn check_buffers(&self) -> Result<(), String> {
        let window = i64::from(self.options.limits.link_credit_window);
        let byte_limit = self.options.limits.max_in_flight_bytes_per_producer
            + u64::from(self.options.limits.max_frame_size);
        for &r in &self.sched.touched {
            let router = &self.routers[r];
            let Some(node) = &router.node else {
                continue;
            };
            let mut links = 0;
            for id in node.endpoints.keys() {
                let Some(c) = self.conns.get(id) else {
                    continue;
                };
                for d in Dir::BOTH {
                    if c.router_at(d.to_side()) == Some(r) && c.alive[d.to_side()] {
                        links += self.monitor.links_in(c.id, d);
                    }
                }
            }
            let held = self.monitor.held(r) as i64;
            if held > window * links {
                return Err(format!(
                    "{} holds {held} deliveries with {links} incoming links of credit {window}: {:?}",
                    router.id,
                    self.monitor.held_keys(r)
                ));
            }
            for (id, ep) in &node.endpoints {
                let used = ep.bytes_in_flight();
                if used > byte_limit {
                    return Err(format!(
                        "{} conn {id}: {used} bytes in flight, over {byte_limit}",
                        router.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The addresses some consumer of the run uses.
    fn consumer_addresses(&self) -> BTreeSet<String> {
        self.clients
            .iter()
            .filter(|c| matches!(c.app, App::Consumer(_)))
            .map(SimClient::routed_address)
            .collect()
    }

    /// A producer whose address no consumer of the run ever uses never
    /// holds credit.
    fn check_orphan_credit(&self) -> Result<(), String> {
        let used = self.consumer_addresses();
        for c in &self.clients {
            if matches!(c.app, App::Producer(_))
                && !used.contains(&c.routed_address())
                && c.credit() > 0
            {
                return Err(format!(
                    "{} holds credit {} for {}, which has no consumer anywhere",
                    c.name,
                    c.credit(),
                    c.address()
                ));
            }
        }
        Ok(())
    }

    /// Shortest paths over the true topology: running routers, and links
    /// that are neither cut nor silent. Computed once per topology: the
    /// usable links are the key (`O(links)` to compare), the paths
    /// (`O(n · m log n)` to compute) are shared until they change.
    pub(crate) fn expected_paths(&self) -> Arc<ExpectedPaths> {
        let edges: Vec<(usize, usize, u32)> = self
            .links
            .iter()
            .filter(|l| {
                self.routers[l.a].is_up()
                    && self.routers[l.b].is_up()
                    && !l.cut
                    && !l.is_silent()
                    && self.group[l.a] == self.group[l.b]
            })
            .map(|l| (l.a, l.b, l.cost))
            .collect();
        let mut cache = self.checks.paths.borrow_mut();
        if let Some((key, paths)) = cache.as_ref()
            && *key == edges
            && paths.len() == self.routers.len()
        {
            return paths.clone();
        }
        let paths = Arc::new(ExpectedPaths::new(self.routers.len(), &edges));
        *cache = Some((edges, paths.clone()));
        paths
    }

    /// Whether every running router's table has the shortest paths of the
    /// true topology: the same reachable routers, costs and next hops.
    ///
    /// Incremental: a router's verdict is kept with the table it was
    /// reached on and the paths it was checked against (tables are
    /// immutable and shared, so pointer equality is identity); only the
    /// routers whose table changed since, or all of them when the
    /// topology did, are checked again, each in `O(n)`. The answer is the
    /// full check's, error message included: the first failing router in
    /// index order, its first wrong entry.
    pub fn check_tables(&self) -> Result<(), String> {
        let expected = self.expected_paths();
        let mut verdicts = self.checks.tables.borrow_mut();
        if !verdicts
            .paths
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &expected))
        {
            verdicts.paths = Some(expected.clone());
            verdicts.by_router.clear();
        }
        verdicts.by_router.resize_with(self.routers.len(), || None);
        for (u, router) in self.routers.iter().enumerate() {
            let Some(node) = &router.node else {
                continue;
            };
            let table = node.core.mesh().table();
            if let Some((seen, verdict)) = &verdicts.by_router[u]
                && Arc::ptr_eq(seen, &table)
            {
                verdict.clone()?;
                continue;
            }
            let verdict = self.check_table(u, &table, &expected);
            verdicts.by_router[u] = Some((table, verdict.clone()));
            verdict?;
        }
        Ok(())
    }

    /// Whether router `u`'s `table` has the shortest paths of `expected`.
    fn check_table(
        &self,
        u: usize,
        table: &RoutingTable,
        expected: &ExpectedPaths,
    ) -> Result<(), String> {
        let router = &self.routers[u];
        for (v, id) in self.ids.iter().enumerate() {
            let want = expected.dist(u, v);
            let got = table.cost(id).map(u64::from);
            if got != want {
                return Err(format!(
                    "{}: cost to {} is {got:?}, expected {want:?}",
                    router.id, id
                ));
            }
            let want_hop = expected.next_hop(u, v).map(|w| self.names[w].as_str());
            let got_hop = table.next_hop(id).map(RouterId::as_str);
            if got_hop != want_hop {
                return Err(format!(
                    "{}: next hop to {} is {got_hop:?}, expected {want_hop:?}",
                    router.id, id
                ));
            }
        }
        Ok(())
    }

    /// Whether consumer `c` counts as present: attached on a running router.
    fn present(&self, c: &crate::client::SimClient) -> bool {
        matches!(c.app, App::Consumer(_))
            && !c.stopped
            && c.is_attached()
            && self.routers[c.router].is_up()
    }

    /// Whether every running router knows which reachable routers have
    /// consumers for each address (anycast and multicast).
    pub fn check_addresses(&self) -> Result<(), String> {
        let expected = self.expected_paths();
        for address in self.consumer_addresses() {
            for (u, router) in self.routers.iter().enumerate() {
                let Some(node) = &router.node else {
                    continue;
                };
                let table = node.core.mesh().table();
                let got: BTreeSet<&str> =
                    table.routers_for(&address).map(RouterId::as_str).collect();
                let lures = self.lures();
                let hostile = lures
                    .iter()
                    .filter(|(_, a)| *a == address)
                    .map(|(h, _)| *h)
                    .filter(|h| self.routers[*h].is_up());
                // A consumer on an edge router counts at the interior
                // router its uplink is attached to, which advertises it.
                let want: BTreeSet<&str> = self
                    .clients
                    .iter()
                    .filter(|c| c.routed_address() == address && self.present(c))
                    .filter_map(|c| self.host(c.router))
                    .chain(hostile)
                    .filter(|r| *r != u && expected.dist(u, *r).is_some())
                    .map(|r| self.routers[r].id.as_str())
                    .collect();
                if got != want {
                    return Err(format!(
                        "{}: consumers of {address} at {got:?}, expected {want:?}",
                        router.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Producers hold credit only where a consumer of their address is
    /// reachable. It holds under the hostile fault too: a router
    /// advertising an address it has no consumer of grants no credit for
    /// it (credit comes from consumers, not from address records).
    pub fn check_credit(&self) -> Result<(), String> {
        let expected = self.expected_paths();
        for p in &self.clients {
            if !matches!(p.app, App::Producer(_)) || p.credit() == 0 {
                continue;
            }
            let reachable = self.clients.iter().any(|c| {
                c.routed_address() == p.routed_address()
                    && self.present(c)
                    && self.reaches(&expected, p.router, c.router)
            });
            if !reachable {
                return Err(format!(
                    "{} on {} holds credit {} for {}, with no consumer reachable",
                    p.name,
                    self.routers[p.router].id,
                    p.credit(),
                    p.address()
                ));
            }
        }
        Ok(())
    }

    /// Whether a client of router `from` reaches a client of router `to`
    /// in the true topology: on the same router, or through the
    /// interior routers their edge routers' uplinks are attached to.
    fn reaches(&self, expected: &ExpectedPaths, from: usize, to: usize) -> bool {
        from == to
            || self
                .host(from)
                .zip(self.host(to))
                .is_some_and(|(a, b)| expected.dist(a, b).is_some())
    }

    /// Credit for `address` parked where it cannot be used: by producers
    /// that have nothing left to send, and on inter-router links whose
    /// sending router has no unfinished producer of the address and no
    /// useful link into it (a link is useful if its sending router has an
    /// unfinished producer, or a useful link into it). A multicast data
    /// link carries one origin router's tree (`ferry:tree:<origin>:…`): it
    /// is useful only if its origin has an unfinished producer. One line
    /// per holder, e.g. `R4->R3 holds 4`, `R4->R3 (tree R1) holds 2` or
    /// `c3 (done) holds 4`.
    pub fn parked_credit(&self, address: &str) -> Vec<String> {
        let n = self.routers.len();
        let mut producing = vec![false; n];
        for c in &self.clients {
            if let App::Producer(p) = &c.app
                && c.routed_address() == address
                && !p.is_done()
            {
                producing[c.router] = true;
            }
        }
        // (from, to, held, multicast tree) for the address's data links.
        let links: Vec<(usize, usize, u32, Option<usize>)> = self
            .conns
            .values()
            .flat_map(|conn| {
                conn.tap
                    .credits()
                    .filter(|(_, c)| c.address.as_deref() == Some(address))
                    .filter_map(|(name, c)| {
                        let from = conn.router_at(c.dir.from_side())?;
                        let to = conn.router_at(c.dir.to_side())?;
                        let tree = name
                            .strip_prefix(TREE_LINK)
                            .and_then(|rest| rest.split(':').next())
                            .and_then(|origin| self.router_index(origin));
                        Some((from, to, c.held(), tree))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut useful = producing.clone();
        loop {
            let mut changed = false;
            for &(from, to, _, tree) in &links {
                if tree.is_none() && useful[from] && !useful[to] {
                    useful[to] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let idle_producers = self.clients.iter().filter_map(|c| match &c.app {
            App::Producer(p) if c.routed_address() == address && p.is_done() && c.credit() > 0 => {
                Some(format!("{} (done) holds {}", c.name, c.credit()))
            }
            _ => None,
        });
        links
            .iter()
            .filter(|(from, _, held, tree)| match tree {
                Some(origin) => *held > 0 && !producing[*origin],
                None => *held > 0 && !useful[*from],
            })
            .map(|(from, to, held, tree)| {
                let tree =
                    tree.map_or(String::new(), |o| format!(" (tree {})", self.routers[o].id));
                format!(
                    "{}->{}{tree} holds {held}",
                    self.routers[*from].id, self.routers[*to].id
                )
            })
            .chain(idle_producers)
            .collect()
    }

    /// The address's credit as each router reckons it, from router `from`
    /// along its consumer links towards the consumers (a dozen routers at
    /// most): where a held delivery waits, and why.
    fn credit_chain(&self, address: &str, from: usize) -> Vec<String> {
        let now = self.clock.now();
        let mut seen = std::collections::BTreeSet::from([from]);
        let mut queue = std::collections::VecDeque::from([from]);
        let mut lines = Vec::new();
        while let Some(r) = queue.pop_front() {
            if lines.len() >= 12 {
                break;
            }
            let Some(node) = self.routers[r].node.as_ref() else {
                continue;
            };
            let Some(a) = node.core.lookup(address) else {
                lines.push(format!("{}: no such address", self.routers[r].id));
                continue;
            };
            let described = a.describe_credit(now);
            for (n, _) in self.routers.iter().enumerate() {
                if !seen.contains(&n) && described.contains(&format!("to {} ", self.routers[n].id))
                {
                    seen.insert(n);
                    queue.push_back(n);
                }
            }
            lines.push(format!("{}: {described}", self.routers[r].id));
        }
        lines
    }

    /// Whether every producer whose address has a consumer has finished:
    /// every message accepted or rejected (or sent, if pre-settled), and
    /// nothing is held in a router or waiting at a consumer.
    pub fn check_delivered(&self) -> Result<(), String> {
        let used = self.consumer_addresses();
        for c in &self.clients {
            match &c.app {
                App::Producer(p) if used.contains(&c.routed_address()) && !p.is_done() => {
                    let stuck: Vec<String> = self
                        .ledger
                        .in_flight()
                        .filter(|k| usize::from(k.producer) == c.index)
                        .take(5)
                        .map(|k| {
                            let at: Vec<&str> = self
                                .monitor
                                .holders(k)
                                .map(|r| self.routers[r].id.as_str())
                                .collect();
                            if at.is_empty() {
                                k.to_string()
                            } else {
                                format!("{k} held by {}", at.join(", "))
                            }
                        })
                        .collect();
                    let parked = self.parked_credit(&c.routed_address());
                    let parked = if parked.is_empty() {
                        String::new()
                    } else {
                        let what = if super::is_multicast(&p.spec.address) {
                            MULTICAST_PARKED
                        } else {
                            PARKED
                        };
                        format!("; {what}: {}", parked.join(", "))
                    };
                    let anonymous = if p.spec.anonymous {
                        let frame = self.options.limits.max_frame_size as usize;
                        let streamed = if p.spec.body_size > frame {
                            format!(" of {}-byte messages, {STREAMED}", p.spec.body_size)
                        } else {
                            String::new()
                        };
                        format!(
                            "; anonymous sender with link credit {}{streamed}",
                            c.link_credit()
                        )
                    } else {
                        String::new()
                    };
                    // From the router holding its delivery, or with none
                    // in flight, from its own.
                    let holder = self
                        .ledger
                        .in_flight()
                        .find(|k| usize::from(k.producer) == c.index)
                        .and_then(|k| self.monitor.holders(k).next());
                    let (from, what) = match holder {
                        Some(r) => (r, "the holder"),
                        None => (c.router, "its router"),
                    };
                    let lines = self.credit_chain(&c.routed_address(), from);
                    let chain = format!("; credit from {what} on: {}", lines.join(" | "));
                    return Err(format!(
                        "{} has {} messages not done (credit {}, unsettled {stuck:?}){parked}{anonymous}{chain}",
                        c.name,
                        p.remaining(),
                        c.credit()
                    ));
                }
                App::Consumer(k) if k.unanswered() > 0 => {
                    return Err(format!(
                        "{} has {} deliveries unanswered",
                        c.name,
                        k.unanswered()
                    ));
                }
                _ => {}
            }
        }
        for (r, router) in self.routers.iter().enumerate() {
            if self.monitor.held(r) > 0 {
                return Err(format!(
                    "{} still holds {:?}",
                    router.id,
                    self.monitor.held_keys(r)
                ));
            }
        }
        Ok(())
    }

    /// The checks once the mesh has settled: every table right, every
    /// address known where it should be, credit only where a consumer is
    /// reachable, and every message done. Records and returns the first
    /// failure.
    pub fn check_settled(&mut self) -> Result<(), Violation> {
        if let Some(v) = self.failure() {
            return Err(v.clone());
        }
        let at = self.clock.elapsed();
        let checks = [
            (Invariant::Paths, self.check_tables()),
            (Invariant::Addresses, self.check_addresses()),
            (Invariant::Credit, self.check_credit()),
            (Invariant::Liveness, self.check_delivered()),
        ];
        for (inv, r) in checks {
            if let Err(e) = r {
                let v = Violation::new(at, inv, e);
                self.fail(v.clone());
                return Err(v);
            }
        }
        Ok(())
    }

    /// With every consumer gone, no producer may hold credit.
    pub fn check_no_credit(&mut self) -> Result<(), Violation> {
        for c in &self.clients {
            if c.credit() > 0 {
                let v = Violation::new(
                    self.clock.elapsed(),
                    Invariant::Credit,
                    format!(
                        "{} holds credit {} for {} after every consumer left",
                        c.name,
                        c.credit(),
                        c.address()
                    ),
                );
                self.fail(v.clone());
                return Err(v);
            }
        }
        Ok(())
    }
}
