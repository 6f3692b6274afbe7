//! Routing-table recompute time (path computation on petgraph) for
//! generated meshes of 10, 100 and 1,000 routers.
//!
//! Each mesh is a seeded random graph: every router links to a random
//! earlier one (so the mesh is connected), plus up to as many extra links
//! as there are routers, between random pairs: about four neighbours each;
//! link costs are 1..=10. One router of the mesh (the middle one by id) is
//! a real [`Routing`] state machine, converged on the whole mesh through
//! its public inputs, as a running router would be.
//!
//! - `routing_recompute`: what that router does on a topology change: a
//!   link elsewhere in the mesh goes down or comes back up (the two cases
//!   alternate), i.e. one `LinkState` record arrives from a neighbour, is
//!   stored and flooded on, and `poll_table` recomputes the table (graph
//!   from the records, reachability, Dijkstra from this router, next hops,
//!   own tree).
//! - `routing_input_no_change`: the same input carrying a record the router
//!   already holds (no recompute): the message-handling share of the above.
//! - `routing_first_tree`: the first `is_next_hop_of` for a destination on a
//!   new table, which computes that destination's shortest-path tree (one
//!   Dijkstra plus parents); later calls for it are lookups.
//! - `routing_all_trees`: `multicast_children` for every origin on a new
//!   table, which computes every router's tree (n - 1 Dijkstras): the worst
//!   case of the lazily computed trees, paid once per table.
//!
//! Before the criterion runs, the bench prints each mesh's shape.
//!
//! Run: `cargo bench -p ferry-benches --bench routing`

use std::collections::{BTreeSet, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group};
use ferry_router::routing::{ControlMessage, RouterId, Routing, RoutingConfig, RoutingTable};

/// Mesh sizes, in routers.
const SIZES: [usize; 3] = [10, 100, 1000];

/// A small deterministic generator (xorshift64*), so every run benches the
/// same meshes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A generated mesh: router `i` is `ids[i]`, its links `adj[i]` (neighbour,
/// cost), both ends of a link with the same cost.
struct Mesh {
    ids: Vec<RouterId>,
    adj: Vec<Vec<(usize, u32)>>,
}

impl Mesh {
    /// `n` routers `r0000`, `r0001`, … (id order is index order): a random
    /// recursive tree (router `i` links to a random `j < i`) plus `n`
    /// attempts at an extra link between a random pair (self-links and
    /// duplicates skipped), costs uniform in 1..=10.
    fn generate(n: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let ids = (0..n).map(|i| RouterId::from(format!("r{i:04}"))).collect();
        let mut edges = BTreeSet::new();
        let mut adj = vec![Vec::new(); n];
        let mut link = |a: usize, b: usize, rng: &mut Rng| {
            if a != b && edges.insert((a.min(b), a.max(b))) {
                let cost = 1 + rng.below(10) as u32;
                adj[a].push((b, cost));
                adj[b].push((a, cost));
            }
        };
        for i in 1..n {
            let j = rng.below(i);
            link(i, j, &mut rng);
        }
        for _ in 0..n {
            let (a, b) = (rng.below(n), rng.below(n));
            link(a, b, &mut rng);
        }
        for a in &mut adj {
            a.sort_unstable();
        }
        Self { ids, adj }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn links(&self) -> usize {
        self.adj.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// Hop counts from `from` (BFS), skipping link `without` if given;
    /// `usize::MAX` for an unreachable router.
    fn hops(&self, from: usize, without: Option<(usize, usize)>) -> Vec<usize> {
        let mut hops = vec![usize::MAX; self.len()];
        hops[from] = 0;
        let mut queue = VecDeque::from([from]);
        while let Some(v) = queue.pop_front() {
            for &(w, _) in &self.adj[v] {
                if without == Some((v, w)) || without == Some((w, v)) {
                    continue;
                }
                if hops[w] == usize::MAX {
                    hops[w] = hops[v] + 1;
                    queue.push_back(w);
                }
            }
        }
        hops
    }

    /// Router `v`'s link-state record at sequence `seq`, without its link
    /// to `drop` if given.
    fn link_state(&self, v: usize, seq: u64, drop: Option<usize>) -> ControlMessage {
        ControlMessage::LinkState {
            id: self.ids[v].clone(),
            instance: 1,
            seq,
            neighbors: self.adj[v]
                .iter()
                .filter(|&&(w, _)| Some(w) != drop)
                .map(|&(w, c)| (self.ids[w].clone(), c))
                .collect(),
            sig: None,
        }
    }
}

/// The router whose tables are measured, and the link that goes down and
/// up in the recompute bench.
struct Scenario {
    mesh: Mesh,
    me: usize,
    /// A neighbour of `me`: where records arrive from.
    via: usize,
    /// `(a, b)`: neither end is `me`, and the mesh stays connected without
    /// it. `a` re-floods its record.
    link: (usize, usize),
}

impl Scenario {
    fn new(n: usize) -> Self {
        let mesh = Mesh::generate(n, 0x5eed_0000 + n as u64);
        let me = n / 2;
        let via = mesh.adj[me][0].0;
        // The first link, by (a, b), away from `me` whose loss disconnects
        // nothing.
        let link = (0..n)
            .filter(|&a| a != me)
            .flat_map(|a| mesh.adj[a].iter().map(move |&(b, _)| (a, b)))
            .find(|&(a, b)| b != me && !mesh.hops(me, Some((a, b))).contains(&usize::MAX))
            .expect("a mesh with a link off a cycle");
        Self {
            mesh,
            me,
            via,
            link,
        }
    }

    /// `me` as a running router: connected to its neighbours (two-way),
    /// holding every router's link-state record, table computed.
    fn converged(&self) -> (Routing, Instant) {
        let Mesh { ids, adj } = &self.mesh;
        let now = Instant::now();
        let me = &ids[self.me];
        let mut r = Routing::new(me.clone(), 1, RoutingConfig::default(), now);
        for &(w, cost) in &adj[self.me] {
            r.neighbor_connected(ids[w].clone(), cost, now);
            let hello = ControlMessage::Hello {
                id: ids[w].clone(),
                instance: 1,
                seen: vec![me.clone()],
            };
            r.handle_message(&ids[w], hello, now);
        }
        for v in (0..self.mesh.len()).filter(|&v| v != self.me) {
            r.handle_message(&ids[self.via], self.mesh.link_state(v, 1, None), now);
        }
        while r.poll_transmit().is_some() {}
        let table = r.poll_table().expect("a first table");
        assert_eq!(table.routers().count(), self.mesh.len(), "not converged");
        (r, now)
    }

    /// A new table of the converged router, no tree computed but its own.
    fn table(&self) -> RoutingTable {
        let (r, _) = self.converged();
        RoutingTable::clone(r.table())
    }
}

fn print_meshes(scenarios: &[Scenario]) {
    println!("generated meshes (seeded; costs 1..=10):");
    for s in scenarios {
        let m = &s.mesh;
        let degrees: Vec<usize> = m.adj.iter().map(Vec::len).collect();
        let hops = m.hops(s.me, None);
        println!(
            "  {:>4} routers: {:>4} links, degree mean {:.1} max {}, \
             measuring router {} ({} neighbours, up to {} hops from the others), \
             link toggled {}-{}",
            m.len(),
            m.links(),
            2.0 * m.links() as f64 / m.len() as f64,
            degrees.iter().max().unwrap(),
            m.ids[s.me],
            degrees[s.me],
            hops.iter().max().unwrap(),
            m.ids[s.link.0],
            m.ids[s.link.1],
        );
    }
}

fn bench_recompute(c: &mut Criterion, scenarios: &[Scenario]) {
    let mut g = c.benchmark_group("routing_recompute");
    g.sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for s in scenarios {
        let (mut r, now) = s.converged();
        let via = s.mesh.ids[s.via].clone();
        let (a, b) = s.link;
        let mut seq = 1;
        // Every input is a newer record of `a`: odd ones without the link
        // to `b` (down), even ones with it (up), so each changes the graph.
        g.bench_function(format!("{} routers", s.mesh.len()), |bench| {
            bench.iter_batched(
                || {
                    seq += 1;
                    s.mesh.link_state(a, seq, (seq % 2 == 0).then_some(b))
                },
                |msg| {
                    r.handle_message(&via, msg, now);
                    while r.poll_transmit().is_some() {}
                    r.poll_table().expect("the table changed")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_no_change(c: &mut Criterion, scenarios: &[Scenario]) {
    let mut g = c.benchmark_group("routing_input_no_change");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for s in scenarios {
        let (mut r, now) = s.converged();
        let via = s.mesh.ids[s.via].clone();
        let msg = s.mesh.link_state(s.link.0, 1, None);
        g.bench_function(format!("{} routers", s.mesh.len()), |bench| {
            bench.iter_batched(
                || msg.clone(),
                |msg| {
                    r.handle_message(&via, msg, now);
                    while r.poll_transmit().is_some() {}
                    assert!(r.poll_table().is_none());
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_first_tree(c: &mut Criterion, scenarios: &[Scenario]) {
    let mut g = c.benchmark_group("routing_first_tree");
    g.sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    for s in scenarios {
        let table = s.table();
        let ids = &s.mesh.ids;
        // From a neighbour of ours towards router 0 (not us).
        let (from, dest) = (ids[s.via].clone(), ids[0].clone());
        g.bench_function(format!("{} routers", s.mesh.len()), |bench| {
            bench.iter_batched(
                || table.clone(),
                |t| {
                    black_box(t.is_next_hop_of(&from, &dest));
                    t
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_all_trees(c: &mut Criterion, scenarios: &[Scenario]) {
    let mut g = c.benchmark_group("routing_all_trees");
    // Over 100 ms an iteration at 1,000 routers: 10 samples, flat (the
    // same iteration count in each).
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    for s in scenarios {
        let table = s.table();
        let ids = &s.mesh.ids;
        g.bench_function(format!("{} routers", s.mesh.len()), |bench| {
            bench.iter_batched(
                || table.clone(),
                |t| {
                    for origin in ids {
                        black_box(t.multicast_children(origin));
                    }
                    t
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let scenarios: Vec<Scenario> = SIZES.iter().map(|&n| Scenario::new(n)).collect();
    print_meshes(&scenarios);
    bench_recompute(c, &scenarios);
    bench_no_change(c, &scenarios);
    bench_first_tree(c, &scenarios);
    bench_all_trees(c, &scenarios);
}

criterion_group! {
    name = routing;
    // No HTML plots, fewer bootstrap resamples: keeps the whole run under
    // a minute on 2 cores. The medians in `target/criterion/routing_*/*/
    // new/estimates.json` are what `RESULTS.md` shows.
    config = Criterion::default().without_plots().nresamples(20_000);
    targets = benches
}

fn main() {
    routing();
    Criterion::default().configure_from_args().final_summary();
}
