//! An in-memory mesh of [`Routing`] instances with virtual time, in the
//! manner of quinn-proto's `Pair`: messages go through their AMQP encoding,
//! are delivered instantly (in order, or shuffled), can be dropped by a
//! filter or by a silent partition, and time jumps to the earliest timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::routing::{
    ControlMessage, RecordAuth, RouterId, Routing, RoutingConfig, RoutingTable, Signature,
    SignatureError,
};

/// A link between two routers, with its cost.
pub type Edge = (RouterId, RouterId, u32);

/// A small deterministic generator (xorshift64*), so runs replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

type DropFilter = Box<dyn FnMut(&RouterId, &RouterId, &ControlMessage) -> bool>;

pub struct Net {
    pub now: Instant,
    pub config: RoutingConfig,
    pub nodes: BTreeMap<RouterId, Routing>,
    /// The latest table each router's `poll_table` gave.
    pub tables: BTreeMap<RouterId, Arc<RoutingTable>>,
    /// How many tables each router's `poll_table` gave.
    pub table_updates: BTreeMap<RouterId, usize>,
    /// Every table each router's `poll_table` gave, in order.
    pub history: BTreeMap<RouterId, Vec<Arc<RoutingTable>>>,
    /// Connected links (a < b) and their cost (the larger end's).
    links: BTreeMap<(RouterId, RouterId), u32>,
    /// Directions whose messages vanish (the connection stays up).
    blocked: BTreeSet<(RouterId, RouterId)>,
    queue: VecDeque<(RouterId, RouterId, ControlMessage)>,
    /// Drops a message if it returns true.
    pub drop: Option<DropFilter>,
    /// Deliver queued messages in random order.
    pub reorder: bool,
    pub rng: Rng,
    pub delivered: u64,
    /// Routers sign their records ([`TestAuth`]) and check others'.
    pub signed: bool,
}

/// A test PKI: a router's "certificate" is its id, its signature a hash
/// of a secret of its id and the payload, so a router signs only as
/// itself.
#[derive(Debug)]
pub struct TestAuth(pub RouterId);

impl TestAuth {
    fn mac(id: &RouterId, payload: &[u8]) -> Bytes {
        let mut h = Sha256::new();
        h.update(b"secret of ");
        h.update(id.as_str());
        h.update(payload);
        Bytes::copy_from_slice(&h.finalize())
    }
}

impl RecordAuth for TestAuth {
    fn sign(&self, payload: &[u8]) -> Result<Signature, SignatureError> {
        Ok(Signature {
            certs: vec![Bytes::copy_from_slice(self.0.as_str().as_bytes())],
            scheme: 0,
            value: Self::mac(&self.0, payload),
        })
    }

    fn verify(
        &self,
        origin: &RouterId,
        payload: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        if sig.certs.first().map(|c| &c[..]) != Some(origin.as_str().as_bytes()) {
            return Err(SignatureError::NotNamed(origin.clone()));
        }
        if sig.value != Self::mac(origin, payload) {
            return Err(SignatureError::Mismatch);
        }
        Ok(())
    }
}

pub fn id(name: &str) -> RouterId {
    RouterId::from(name)
}

fn key(a: &RouterId, b: &RouterId) -> (RouterId, RouterId) {
    if a < b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl Net {
    pub fn new(names: &[RouterId]) -> Self {
        let now = Instant::now();
        // Messages cross the net in no time, and table computations are
        // paced in time (`pacer.rs`): unpaced, a `pump` converges. The
        // pacing is tested with the default config set on an empty net.
        let config = RoutingConfig {
            spf_hold_min: Duration::ZERO,
            spf_hold_max: Duration::ZERO,
            ..RoutingConfig::default()
        };
        let mut net = Self {
            now,
            config: config.clone(),
            nodes: BTreeMap::new(),
            tables: BTreeMap::new(),
            table_updates: BTreeMap::new(),
            history: BTreeMap::new(),
            links: BTreeMap::new(),
            blocked: BTreeSet::new(),
            queue: VecDeque::new(),
            drop: None,
            reorder: false,
            rng: Rng::new(0x5eed),
            delivered: 0,
            signed: false,
        };
        for n in names {
            net.start(n, 1);
        }
        net
    }

    /// As [`with_topology`](Self::with_topology), every router signing
    /// its records and checking others' ([`TestAuth`]).
    pub fn signed(names: &[RouterId], edges: &[Edge]) -> Self {
        let mut net = Self::new(&[]);
        net.signed = true;
        for n in names {
            net.start(n, 1);
        }
        for (a, b, c) in edges {
            net.connect(a, b, *c);
        }
        net.pump();
        net
    }

    /// A mesh of `edges`, connected and converged.
    pub fn with_topology(names: &[RouterId], edges: &[Edge]) -> Self {
        let mut net = Self::new(names);
        for (a, b, c) in edges {
            net.connect(a, b, *c);
        }
        net.pump();
        net
    }

    /// (Re)starts router `n` with `instance`, with no connection.
    pub fn start(&mut self, n: &RouterId, instance: u64) {
        let mut r = Routing::new(n.clone(), instance, self.config.clone(), self.now);
        if self.signed {
            r = r.with_auth(Arc::new(TestAuth(n.clone())));
        }
        self.nodes.insert(n.clone(), r);
        self.tables.remove(n);
        self.drain(n);
    }

    pub fn connect(&mut self, a: &RouterId, b: &RouterId, cost: u32) {
        self.connect_costs(a, b, cost, cost);
    }

    /// A connection whose ends were configured with different costs.
    pub fn connect_costs(&mut self, a: &RouterId, b: &RouterId, cost_a: u32, cost_b: u32) {
        self.links.insert(key(a, b), cost_a.max(cost_b));
        let now = self.now;
        self.nodes
            .get_mut(a)
            .unwrap()
            .neighbor_connected(b.clone(), cost_a, now);
        self.nodes
            .get_mut(b)
            .unwrap()
            .neighbor_connected(a.clone(), cost_b, now);
        self.drain(a);
        self.drain(b);
    }

    /// The connection drops: both ends are told.
    pub fn cut(&mut self, a: &RouterId, b: &RouterId) {
        self.links.remove(&key(a, b));
        let now = self.now;
        self.nodes.get_mut(a).unwrap().neighbor_disconnected(b, now);
        self.nodes.get_mut(b).unwrap().neighbor_disconnected(a, now);
        self.drain(a);
        self.drain(b);
    }

    /// Every link of `n` drops (as when its process dies).
    pub fn isolate(&mut self, n: &RouterId) {
        let ends: Vec<RouterId> = self
            .links
            .keys()
            .filter_map(|(a, b)| {
                if a == n {
                    Some(b.clone())
                } else if b == n {
                    Some(a.clone())
                } else {
                    None
                }
            })
            .collect();
        for m in ends {
            self.cut(n, &m);
        }
    }

    /// Messages between `a` and `b` vanish from now on; nobody is told.
    pub fn block(&mut self, a: &RouterId, b: &RouterId) {
        self.blocked.insert((a.clone(), b.clone()));
        self.blocked.insert((b.clone(), a.clone()));
    }

    pub fn unblock(&mut self, a: &RouterId, b: &RouterId) {
        self.blocked.remove(&(a.clone(), b.clone()));
        self.blocked.remove(&(b.clone(), a.clone()));
    }

    /// The links messages cross: connected and not blocked.
    pub fn live_edges(&self) -> Vec<Edge> {
        self.links
            .iter()
            .filter(|((a, b), _)| !self.blocked.contains(&(a.clone(), b.clone())))
            .map(|((a, b), c)| (a.clone(), b.clone(), *c))
            .collect()
    }

    pub fn router(&mut self, n: &RouterId) -> &mut Routing {
        self.nodes.get_mut(n).unwrap()
    }

    pub fn add_address(&mut self, n: &RouterId, address: &str) {
        self.router(n).add_local_address(address);
        self.drain(n);
    }

    pub fn remove_address(&mut self, n: &RouterId, address: &str) {
        self.router(n).remove_local_address(address);
        self.drain(n);
    }

    pub fn table(&self, n: &RouterId) -> &RoutingTable {
        &self.tables[n]
    }

    /// Takes `n`'s output: messages into the queue, its table if new.
    fn drain(&mut self, n: &RouterId) {
        let r = self.nodes.get_mut(n).unwrap();
        while let Some((to, msg)) = r.poll_transmit() {
            self.queue.push_back((n.clone(), to, msg));
        }
        if let Some(t) = r.poll_table() {
            self.history.entry(n.clone()).or_default().push(t.clone());
            self.tables.insert(n.clone(), t);
            *self.table_updates.entry(n.clone()).or_default() += 1;
        }
    }

    /// Delivers messages until none is left (no time passes).
    pub fn pump(&mut self) {
        let names: Vec<RouterId> = self.nodes.keys().cloned().collect();
        for n in &names {
            self.drain(n);
        }
        let mut count = 0u64;
        while !self.queue.is_empty() {
            count += 1;
            assert!(count < 1_000_000, "control traffic does not settle");
            let mut i = if self.reorder {
                self.rng.below(self.queue.len())
            } else {
                0
            };
            // HELLOs on one link stay in order (as on a real connection);
            // everything else may overtake anything.
            if let (from, to, ControlMessage::Hello { .. }) = &self.queue[i] {
                i = self
                    .queue
                    .iter()
                    .position(|(f, t, m)| {
                        f == from && t == to && matches!(m, ControlMessage::Hello { .. })
                    })
                    .unwrap_or(i);
            }
            let (from, to, msg) = self.queue.remove(i).unwrap();
            if !self.links.contains_key(&key(&from, &to))
                || self.blocked.contains(&(from.clone(), to.clone()))
            {
                continue;
            }
            if let Some(drop) = self.drop.as_mut()
                && drop(&from, &to, &msg)
            {
                continue;
            }
            let wire = msg.encode();
            let decoded = ControlMessage::decode(wire).expect("own encoding decodes");
            assert_eq!(decoded, msg, "encoding round trip");
            let now = self.now;
            self.nodes
                .get_mut(&to)
                .unwrap()
                .handle_message(&from, decoded, now);
            self.delivered += 1;
            self.drain(&to);
        }
    }

    /// Runs timers and traffic until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .nodes
                .values()
                .filter_map(Routing::poll_timeout)
                .min()
                .expect("a timer is always armed");
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let names: Vec<RouterId> = self.nodes.keys().cloned().collect();
            for n in &names {
                let r = self.nodes.get_mut(n).unwrap();
                if r.poll_timeout().is_some_and(|t| t <= now) {
                    r.handle_timeout(now);
                }
                self.drain(n);
            }
        }
    }

    /// Checks every router's table against shortest paths computed
    /// independently (Floyd–Warshall) over `edges`.
    pub fn check_paths(&self, edges: &[Edge]) -> Result<(), String> {
        let names: Vec<RouterId> = self.nodes.keys().cloned().collect();
        let expected = Expected::new(&names, edges);
        for (i, u) in names.iter().enumerate() {
            let t = self.table(u);
            if !Arc::ptr_eq(&self.tables[u], self.nodes[u].table()) {
                return Err(format!("{u}: poll_table did not give the current table"));
            }
            for (j, v) in names.iter().enumerate() {
                let want_cost = expected.dist(i, j);
                let want_hop = expected.next_hop(i, j).map(|k| &names[k]);
                let got_cost = t.cost(v).map(u64::from);
                if got_cost != want_cost {
                    return Err(format!(
                        "{u}: cost to {v} is {got_cost:?}, expected {want_cost:?}"
                    ));
                }
                if t.next_hop(v) != want_hop {
                    return Err(format!(
                        "{u}: next hop to {v} is {:?}, expected {want_hop:?}",
                        t.next_hop(v)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks that every router's view of `address` is the set of the
    /// other routers that have it and that it can reach.
    pub fn check_addresses(&self, addresses: &[&str]) -> Result<(), String> {
        for (u, t) in &self.tables {
            for a in addresses {
                let got: Vec<&RouterId> = t.routers_for(a).collect();
                let want: Vec<&RouterId> = self
                    .nodes
                    .iter()
                    .filter(|(v, r)| {
                        *v != u && t.is_reachable(v) && r.local_addresses().any(|x| x == *a)
                    })
                    .map(|(v, _)| v)
                    .collect();
                if got != want {
                    return Err(format!("{u}: {a} at {got:?}, expected {want:?}"));
                }
            }
        }
        Ok(())
    }
}

/// All-pairs shortest paths by Floyd–Warshall, and the next hop the
/// protocol promises: among the neighbours on a shortest path, the one with
/// the smallest id.
pub struct Expected {
    n: usize,
    dist: Vec<u64>,
    /// adjacency: (neighbour, cost) per node
    adj: Vec<Vec<(usize, u64)>>,
    names: Vec<RouterId>,
}

const INF: u64 = u64::MAX / 4;

impl Expected {
    pub fn new(names: &[RouterId], edges: &[Edge]) -> Self {
        let n = names.len();
        let pos = |r: &RouterId| names.iter().position(|x| x == r).unwrap();
        let mut dist = vec![INF; n * n];
        let mut adj = vec![Vec::new(); n];
        for i in 0..n {
            dist[i * n + i] = 0;
        }
        for (a, b, c) in edges {
            let (i, j, c) = (pos(a), pos(b), u64::from((*c).max(1)));
            dist[i * n + j] = dist[i * n + j].min(c);
            dist[j * n + i] = dist[j * n + i].min(c);
            adj[i].push((j, c));
            adj[j].push((i, c));
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    let via = dist[i * n + k] + dist[k * n + j];
                    if via < dist[i * n + j] {
                        dist[i * n + j] = via;
                    }
                }
            }
        }
        Self {
            n,
            dist,
            adj,
            names: names.to_vec(),
        }
    }

    pub fn dist(&self, i: usize, j: usize) -> Option<u64> {
        let d = self.dist[i * self.n + j];
        (d < INF).then_some(d)
    }

    pub fn next_hop(&self, i: usize, j: usize) -> Option<usize> {
        let d = self.dist(i, j)?;
        if i == j {
            return None;
        }
        self.adj[i]
            .iter()
            .filter(|&&(w, c)| self.dist(w, j).is_some_and(|dw| dw + c == d))
            .map(|&(w, _)| w)
            .min_by(|&a, &b| self.names[a].cmp(&self.names[b]))
    }
}
