//! Routing protocol tests: meshes of [`Routing`] instances in memory with
//! virtual time (see [`harness`]), and the control message codec.

mod codec;
pub(crate) mod harness;
mod signed;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use harness::{Edge, Net, Rng, id};

use super::{ControlMessage, RouterId};

fn ids(names: &[&str]) -> Vec<RouterId> {
    names.iter().map(|n| id(n)).collect()
}

fn edge(a: &str, b: &str, cost: u32) -> Edge {
    (id(a), id(b), cost)
}

fn line3() -> (Vec<RouterId>, Vec<Edge>) {
    (
        ids(&["A", "B", "C"]),
        vec![edge("A", "B", 1), edge("B", "C", 1)],
    )
}

/// A ring with uneven costs: some shortest paths go the long way round.
fn ring5() -> (Vec<RouterId>, Vec<Edge>) {
    (
        ids(&["A", "B", "C", "D", "E"]),
        vec![
            edge("A", "B", 1),
            edge("B", "C", 2),
            edge("C", "D", 1),
            edge("D", "E", 3),
            edge("E", "A", 1),
        ],
    )
}

/// Every pair linked; the direct links A–C and B–D cost more than two hops.
fn mesh4() -> (Vec<RouterId>, Vec<Edge>) {
    (
        ids(&["A", "B", "C", "D"]),
        vec![
            edge("A", "B", 1),
            edge("A", "C", 5),
            edge("A", "D", 1),
            edge("B", "C", 1),
            edge("B", "D", 4),
            edge("C", "D", 1),
        ],
    )
}

/// A 3×3 grid, `r00`…`r22`; `cost(i)` gives the cost of the i-th link.
fn grid3(cost: impl Fn(usize) -> u32) -> (Vec<RouterId>, Vec<Edge>) {
    let name = |r: usize, c: usize| format!("r{r}{c}");
    let mut names = Vec::new();
    let mut edges = Vec::new();
    for r in 0..3 {
        for c in 0..3 {
            names.push(id(&name(r, c)));
            if c + 1 < 3 {
                edges.push((id(&name(r, c)), id(&name(r, c + 1)), cost(edges.len())));
            }
            if r + 1 < 3 {
                edges.push((id(&name(r, c)), id(&name(r + 1, c)), cost(edges.len())));
            }
        }
    }
    (names, edges)
}

/// Loop-free anycast and multicast trees, checked on every router's table.
fn check_forwarding(net: &Net) -> Result<(), String> {
    let routers: Vec<RouterId> = net.nodes.keys().cloned().collect();
    // Anycast: following next hops from any src reaches any reachable dest
    // without revisiting a router, each hop accepts the delivery
    // (is_next_hop_of), and no other neighbour would.
    for src in &routers {
        for dest in &routers {
            if src == dest || !net.table(src).is_reachable(dest) {
                continue;
            }
            let mut cur = src.clone();
            let mut visited = BTreeSet::from([src.clone()]);
            while cur != *dest {
                let hop = net
                    .table(&cur)
                    .next_hop(dest)
                    .ok_or(format!("{cur} has no next hop to {dest}"))?
                    .clone();
                if !net.nodes[&cur].is_adjacent(&hop) {
                    return Err(format!("{cur}'s next hop {hop} is not adjacent"));
                }
                if !net.table(&hop).is_next_hop_of(&cur, dest) {
                    return Err(format!("{hop} refuses {src}→{dest} from {cur}"));
                }
                for other in net.nodes[&cur].adjacent() {
                    if *other != hop && net.table(other).is_next_hop_of(&cur, dest) {
                        return Err(format!("{other} would also take {cur}→{dest}"));
                    }
                }
                if !visited.insert(hop.clone()) {
                    return Err(format!("loop on {src}→{dest} at {hop}"));
                }
                cur = hop;
            }
        }
    }
    // Multicast: from each origin, the children edges reach every router
    // the origin can reach exactly once, each child over a link, each child
    // accepting the copy from its parent (valid origin).
    for origin in &routers {
        let mut reached: BTreeMap<RouterId, usize> = BTreeMap::from([(origin.clone(), 1)]);
        let mut queue = VecDeque::from([origin.clone()]);
        while let Some(r) = queue.pop_front() {
            for child in net.table(&r).multicast_children(origin) {
                if !net.nodes[&r].is_adjacent(&child) {
                    return Err(format!("{r}'s child {child} for {origin} is not adjacent"));
                }
                if net.table(&child).next_hop(origin) != Some(&r) {
                    return Err(format!("{child} does not take {origin}'s copies from {r}"));
                }
                *reached.entry(child.clone()).or_default() += 1;
                queue.push_back(child);
            }
        }
        let want: BTreeSet<&RouterId> = net.table(origin).routers().collect();
        let got: BTreeSet<&RouterId> = reached.keys().collect();
        if want != got {
            return Err(format!(
                "multicast from {origin} reaches {got:?}, not {want:?}"
            ));
        }
        if let Some((r, n)) = reached.iter().find(|(_, n)| **n != 1) {
            return Err(format!("multicast from {origin} reaches {r} {n} times"));
        }
    }
    Ok(())
}

fn converges(names: &[RouterId], edges: &[Edge]) {
    let mut net = Net::with_topology(names, edges);
    net.check_paths(edges).unwrap();
    check_forwarding(&net).unwrap();
    // Timers running do not disturb it.
    net.run_for(3 * net.config.ra_interval);
    net.check_paths(edges).unwrap();
    check_forwarding(&net).unwrap();
}

#[test]
fn line_of_3_converges() {
    let (names, edges) = line3();
    converges(&names, &edges);
}

#[test]
fn ring_of_5_converges() {
    let (names, edges) = ring5();
    converges(&names, &edges);
}

#[test]
fn full_mesh_of_4_converges() {
    let (names, edges) = mesh4();
    converges(&names, &edges);
}

#[test]
fn grid_3x3_converges_with_ties_broken_alike() {
    // Unit costs: many equal-cost paths, so the tie-break matters.
    let (names, edges) = grid3(|_| 1);
    converges(&names, &edges);
}

#[test]
fn grid_3x3_converges_with_uneven_costs() {
    let (names, edges) = grid3(|i| [1, 3, 2, 1, 4, 1, 2, 2, 1, 3, 1, 2][i]);
    converges(&names, &edges);
}

#[test]
fn converges_whatever_the_order_links_come_up() {
    let (names, edges) = grid3(|i| (i % 3) as u32 + 1);
    let mut rng = Rng::new(7);
    for _ in 0..5 {
        let mut order = edges.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut net = Net::new(&names);
        net.reorder = true;
        for (a, b, c) in &order {
            net.connect(a, b, *c);
            net.pump();
        }
        net.reorder = false;
        net.run_for(net.config.hello_interval * 2);
        net.check_paths(&edges).unwrap();
        check_forwarding(&net).unwrap();
    }
}

/// A cold start floods every record to every router at once: with the
/// default pacing (`pacer.rs`) the tables are computed fewer times, only
/// as time passes, and come out the same.
#[test]
fn a_cold_start_is_computed_in_few_paced_tables() {
    let names: Vec<RouterId> = (0..24).map(|i| id(&format!("r{i:02}"))).collect();
    let edges: Vec<Edge> = (0..names.len())
        .flat_map(|i| {
            let next = names[(i + 1) % names.len()].clone();
            let across = names[(i + 5) % names.len()].clone();
            [(names[i].clone(), next, 1), (names[i].clone(), across, 3)]
        })
        .collect();
    let cold_start = |net: &mut Net| {
        for n in &names {
            net.start(n, 1);
        }
        for (a, b, c) in &edges {
            net.connect(a, b, *c);
        }
        net.pump();
    };
    let mut unpaced = Net::new(&[]);
    cold_start(&mut unpaced);
    unpaced.check_paths(&edges).unwrap();

    let mut paced = Net::new(&[]);
    paced.config = super::RoutingConfig::default();
    cold_start(&mut paced);
    assert!(
        paced.check_paths(&edges).is_err(),
        "no time has passed: the storm's tables are still on hold"
    );
    paced.run_for(paced.config.spf_hold_max * 4);
    paced.check_paths(&edges).unwrap();
    check_forwarding(&paced).unwrap();
    let total = |net: &Net| net.table_updates.values().sum::<usize>();
    assert!(
        total(&paced) * 10 < total(&unpaced),
        "paced: {} tables, unpaced: {}",
        total(&paced),
        total(&unpaced)
    );
}

#[test]
fn link_cost_is_the_larger_of_the_two_ends() {
    let mut net = Net::new(&ids(&["A", "B", "C"]));
    net.connect_costs(&id("A"), &id("B"), 1, 5);
    net.connect(&id("A"), &id("C"), 2);
    net.connect(&id("C"), &id("B"), 2);
    net.pump();
    // A–B costs 5 (not 1): A reaches B through C at 4.
    assert_eq!(net.table(&id("A")).cost(&id("B")), Some(4));
    assert_eq!(net.table(&id("A")).next_hop(&id("B")), Some(&id("C")));
    assert_eq!(net.table(&id("B")).next_hop(&id("A")), Some(&id("C")));
    net.check_paths(&net.live_edges()).unwrap();
}

#[test]
fn a_cut_link_reroutes_at_once() {
    let (names, edges) = ring5();
    let mut net = Net::with_topology(&names, &edges);
    assert_eq!(net.table(&id("A")).next_hop(&id("C")), Some(&id("B")));
    net.cut(&id("A"), &id("B"));
    net.pump(); // no time passes
    let remaining: Vec<Edge> = edges[1..].to_vec();
    net.check_paths(&remaining).unwrap();
    check_forwarding(&net).unwrap();
    assert_eq!(net.table(&id("A")).next_hop(&id("C")), Some(&id("E")));
    assert_eq!(net.table(&id("A")).cost(&id("B")), Some(1 + 3 + 1 + 2));
    // And back.
    net.connect(&id("A"), &id("B"), 1);
    net.pump();
    net.check_paths(&edges).unwrap();
}

#[test]
fn a_cut_that_partitions_the_mesh_leaves_two_meshes() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    net.cut(&id("B"), &id("C"));
    net.pump();
    net.check_paths(&edges[..1]).unwrap();
    check_forwarding(&net).unwrap();
    let t = net.table(&id("C"));
    assert_eq!(t.routers().collect::<Vec<_>>(), vec![&id("C")]);
    // Merge again.
    net.connect(&id("B"), &id("C"), 1);
    net.pump();
    net.check_paths(&edges).unwrap();
}

#[test]
fn a_silent_partition_is_detected_after_hello_max_age() {
    let (names, edges) = ring5();
    let mut net = Net::with_topology(&names, &edges);
    let cfg = net.config.clone();
    net.run_for(Duration::from_millis(2500));
    // The link A–B goes silent; nobody is told.
    net.block(&id("A"), &id("B"));
    net.run_for(cfg.hello_max_age - cfg.hello_interval - Duration::from_millis(100));
    assert_eq!(
        net.table(&id("A")).next_hop(&id("B")),
        Some(&id("B")),
        "down before hello_max_age"
    );
    net.run_for(cfg.hello_interval + Duration::from_millis(200));
    net.check_paths(&edges[1..]).unwrap();
    check_forwarding(&net).unwrap();
    // It heals when the link carries messages again.
    net.unblock(&id("A"), &id("B"));
    net.run_for(2 * cfg.hello_interval);
    net.check_paths(&edges).unwrap();
    check_forwarding(&net).unwrap();
}

#[test]
fn a_one_way_silence_takes_the_link_down_at_both_ends() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    // Only B→C is lost: C stops hearing B, then B sees C's HELLO without it.
    let lost = Rc::new(Cell::new(true));
    let l = lost.clone();
    net.drop = Some(Box::new(move |from, to, _| {
        l.get() && from.as_str() == "B" && to.as_str() == "C"
    }));
    net.run_for(net.config.hello_max_age + net.config.hello_interval);
    net.check_paths(&edges[..1]).unwrap();
    assert!(!net.nodes[&id("B")].is_adjacent(&id("C")));
    lost.set(false);
    net.run_for(2 * net.config.hello_interval);
    net.check_paths(&edges).unwrap();
}

#[test]
fn a_restarted_router_wins_with_its_new_instance() {
    let names = ids(&["A", "B", "C", "D"]);
    let edges = vec![
        edge("A", "B", 1),
        edge("B", "C", 1),
        edge("C", "D", 1),
        edge("D", "A", 1),
    ];
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&b, "old");
    // Flap B–C so B's link-state sequence number climbs.
    for _ in 0..5 {
        net.cut(&b, &c);
        net.pump();
        net.connect(&b, &c, 1);
        net.pump();
    }
    let before = net.nodes[&a].ls.version(&b).unwrap();
    assert!(before.seq > 5);
    assert_eq!(net.table(&a).routers_for("old").collect::<Vec<_>>(), [&b]);

    // B dies: its address is unmapped at once, its records stay (purge).
    net.isolate(&b);
    net.pump();
    assert!(!net.table(&a).is_reachable(&b));
    assert_eq!(net.table(&a).routers_for("old").count(), 0);
    assert_eq!(net.nodes[&a].ls.version(&b), Some(before));

    // B comes back as instance 2: its sequence numbers restart, yet its
    // records replace the old ones everywhere.
    net.run_for(Duration::from_secs(1));
    net.start(&b, 2);
    net.connect(&a, &b, 1);
    net.connect(&b, &c, 1);
    net.pump();
    let after = net.nodes[&a].ls.version(&b).unwrap();
    assert_eq!(after.instance, 2);
    assert!(after.seq < before.seq);
    net.check_paths(&edges).unwrap();
    check_forwarding(&net).unwrap();
    net.add_address(&b, "new");
    net.pump();
    net.check_addresses(&["old", "new"]).unwrap();
    assert_eq!(
        net.table(&id("D")).routers_for("new").collect::<Vec<_>>(),
        [&b]
    );
}

#[test]
fn a_router_restarted_with_a_reused_instance_moves_past_its_old_records() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&b, "x");
    net.add_address(&b, "y");
    for _ in 0..3 {
        net.cut(&b, &c);
        net.pump();
        net.connect(&b, &c, 1);
        net.pump();
    }
    let before = net.nodes[&a].ls.version(&b).unwrap();
    net.isolate(&b);
    net.pump();
    net.start(&b, 1); // same instance: a misconfiguration
    net.connect(&a, &b, 1);
    net.connect(&b, &c, 1);
    net.pump();
    let after = net.nodes[&a].ls.version(&b).unwrap();
    assert!(after > before, "{after:?} vs {before:?}");
    net.check_paths(&edges).unwrap();
    // The old process's addresses are gone everywhere.
    net.check_addresses(&["x", "y"]).unwrap();
    assert_eq!(net.table(&a).routers_for("x").count(), 0);
}

#[test]
fn addresses_appear_and_disappear_at_remote_routers() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    let at = |net: &Net, r: &RouterId, addr: &str| -> Vec<String> {
        net.table(r)
            .routers_for(addr)
            .map(|r| r.to_string())
            .collect()
    };
    net.add_address(&c, "q");
    net.pump();
    assert_eq!(at(&net, &a, "q"), ["C"]);
    net.add_address(&b, "q");
    net.pump();
    assert_eq!(at(&net, &a, "q"), ["B", "C"]);
    assert_eq!(at(&net, &b, "q"), ["C"], "own consumers are not listed");
    net.remove_address(&c, "q");
    net.pump();
    assert_eq!(at(&net, &a, "q"), ["B"]);
    // Idempotent add and remove.
    net.add_address(&c, "r");
    net.add_address(&c, "r");
    net.remove_address(&c, "nothing");
    net.pump();
    assert_eq!(net.nodes[&c].local.seq, 3);
    net.check_addresses(&["q", "r", "nothing"]).unwrap();

    // C becomes unreachable: its addresses go at once, without a timer.
    net.cut(&b, &c);
    net.pump();
    assert!(at(&net, &a, "r").is_empty());
    assert_eq!(at(&net, &a, "q"), ["B"]);
    // C comes back: its addresses are back.
    net.connect(&b, &c, 1);
    net.pump();
    assert_eq!(at(&net, &a, "r"), ["C"]);

    // A silent partition unmaps them once it is detected.
    net.block(&a, &b);
    net.run_for(net.config.hello_max_age + net.config.hello_interval);
    assert!(at(&net, &a, "q").is_empty());
    assert!(at(&net, &a, "r").is_empty());
    net.check_addresses(&["q", "r"]).unwrap();
}

#[test]
fn a_sequence_gap_triggers_a_full_resync_at_once() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, c) = (id("A"), id("C"));
    // A misses C's first delta.
    let dropped = Rc::new(Cell::new(0));
    let d = dropped.clone();
    net.drop = Some(Box::new(move |_, to, msg| {
        let hit = to.as_str() == "A"
            && d.get() == 0
            && matches!(msg, ControlMessage::MobileAddresses { .. });
        if hit {
            d.set(1);
        }
        hit
    }));
    net.add_address(&c, "x1");
    net.pump();
    assert_eq!(dropped.get(), 1);
    assert_eq!(net.table(&a).routers_for("x1").count(), 0);
    // The next delta shows the gap; A asks for the full list and has both,
    // with no time passing.
    net.add_address(&c, "x2");
    net.pump();
    assert_eq!(net.table(&a).routers_for("x1").collect::<Vec<_>>(), [&c]);
    assert_eq!(net.table(&a).routers_for("x2").collect::<Vec<_>>(), [&c]);
}

/// A router's address record can arrive before its link-state record
/// (they travel as separate floods): it is kept until the router is
/// reachable, not forgotten as if the router had gone away, so its
/// addresses are mapped as soon as the link state catches up — not at the
/// next advertisement, 5 s later.
#[test]
fn an_address_record_that_comes_before_its_router_is_reachable_is_kept() {
    let names = ids(&["A", "B"]);
    let mut net = Net::with_topology(&names, &[edge("A", "B", 1)]);
    let (a, b, c, d) = (id("A"), id("B"), id("C"), id("D"));
    net.start(&c, 1);
    net.add_address(&c, "x");
    // A misses the link state that would make C reachable, and so gets
    // C's address record first.
    let lossy = Rc::new(Cell::new(true));
    let l = lossy.clone();
    net.drop = Some(Box::new(move |_, to, msg| {
        l.get() && to.as_str() == "A" && matches!(msg, ControlMessage::LinkState { .. })
    }));
    net.connect(&b, &c, 1);
    net.pump();
    assert!(!net.table(&a).is_reachable(&c));
    lossy.set(false);
    // New link state from B and C (D joins them both), with no time
    // passing: no advertisement comes.
    net.start(&d, 1);
    net.connect(&b, &d, 1);
    net.connect(&c, &d, 1);
    net.pump();
    assert!(net.table(&a).is_reachable(&c));
    assert_eq!(net.table(&a).routers_for("x").collect::<Vec<_>>(), [&c]);
}

/// A router that (re)joined while part of the mesh was cut off never got
/// that part's records (only reachable routers are advertised). When the
/// cut heals, the records that changed are flooded, the others not: the
/// routers that gain reach advertise the gained routers to their
/// neighbours at once, so the newcomer asks for what it lacks — with no
/// time passing, not at the next advertisement, 5 s later.
#[test]
fn a_router_that_joined_during_a_partition_learns_the_far_side_when_it_heals() {
    let names = ids(&["A", "B", "C", "D", "E"]);
    let edges = vec![
        edge("A", "B", 1),
        edge("B", "C", 1),
        edge("C", "D", 1),
        edge("D", "E", 1),
    ];
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c, d, e) = (id("A"), id("B"), id("C"), id("D"), id("E"));
    net.add_address(&e, "far");
    net.cut(&c, &d);
    net.pump();
    // A restarts with nothing: B tells it of A, B and C only.
    net.isolate(&a);
    net.start(&a, 2);
    net.connect(&a, &b, 1);
    net.pump();
    assert!(
        net.nodes[&a].ls.version(&e).is_none(),
        "A holds no record of E"
    );
    // The cut heals: C's and D's records change and flood; E's do not.
    net.connect(&c, &d, 1);
    net.pump();
    assert!(net.table(&a).is_reachable(&e), "{:?}", net.table(&a));
    assert_eq!(net.table(&a).routers_for("far").collect::<Vec<_>>(), [&e]);
}

#[test]
fn a_lost_link_state_update_heals_at_the_next_advertisement() {
    let names = ids(&["A", "B", "C", "D"]);
    let edges = vec![edge("A", "B", 1), edge("B", "C", 1), edge("C", "D", 1)];
    let mut net = Net::with_topology(&names, &edges);
    let lossy = Rc::new(Cell::new(true));
    let l = lossy.clone();
    net.drop = Some(Box::new(move |_, to, msg| {
        l.get() && to.as_str() == "A" && matches!(msg, ControlMessage::LinkState { .. })
    }));
    let (a, d) = (id("A"), id("D"));
    net.add_address(&d, "far");
    net.cut(&id("C"), &d);
    net.pump();
    // A missed the news: it still routes to D.
    assert!(net.table(&a).is_reachable(&d));
    lossy.set(false);
    net.run_for(net.config.ra_interval + Duration::from_millis(100));
    net.check_paths(&edges[..2]).unwrap();
    assert_eq!(net.table(&a).routers_for("far").count(), 0);
}

/// Once converged, the periodic advertisements are digests only: a few
/// dozen bytes per link per `ra_interval` whatever the mesh's size, where
/// the lists cost about 40 bytes per router. A lost address update still
/// heals at the next one: the digests differ, the lists follow.
#[test]
fn a_converged_mesh_sends_digests_not_lists() {
    let (names, edges) = ring5();
    let mut net = Net::with_topology(&names, &edges);
    net.run_for(Duration::from_secs(1));
    let seen: Rc<RefCell<BTreeMap<&'static str, u32>>> = Rc::default();
    let lossy = Rc::new(Cell::new(false));
    let (s, l) = (seen.clone(), lossy.clone());
    net.drop = Some(Box::new(move |_, to, msg| {
        *s.borrow_mut().entry(msg.opcode()).or_default() += 1;
        l.get() && to.as_str() == "A" && matches!(msg, ControlMessage::MobileAddresses { .. })
    }));
    net.run_for(3 * net.config.ra_interval);
    let digests = 3 * 2 * edges.len() as u32;
    assert_eq!(seen.borrow().get("RAD"), Some(&digests), "{seen:?}");
    assert_eq!(seen.borrow().get("RA"), None, "{seen:?}");

    lossy.set(true);
    net.add_address(&id("C"), "far");
    net.pump();
    assert_eq!(net.table(&id("A")).routers_for("far").count(), 0);
    lossy.set(false);
    seen.borrow_mut().clear();
    net.run_for(net.config.ra_interval);
    assert_eq!(
        net.table(&id("A")).routers_for("far").collect::<Vec<_>>(),
        [&id("C")]
    );
    // A and its two neighbours disagreed; no one else.
    assert_eq!(seen.borrow().get("RA"), Some(&4), "{seen:?}");
}

#[test]
fn dropped_and_reordered_updates_heal_within_a_few_ra_intervals() {
    for seed in 1..=4u64 {
        let (names, mut edges) = grid3(|i| (i % 4) as u32 + 1);
        let mut net = Net::with_topology(&names, &edges);
        net.reorder = true;
        net.rng = Rng::new(seed);
        let mut loss = Rng::new(seed * 31);
        // Half of everything but HELLOs is lost.
        net.drop = Some(Box::new(move |_, _, msg| {
            !matches!(msg, ControlMessage::Hello { .. }) && loss.below(2) == 0
        }));
        let mut rng = Rng::new(seed * 17);
        let addresses = ["a0", "a1", "a2", "a3"];
        for step in 0..30 {
            let r = names[rng.below(names.len())].clone();
            let addr = addresses[rng.below(addresses.len())];
            if rng.below(3) == 0 {
                net.remove_address(&r, addr);
            } else {
                net.add_address(&r, addr);
            }
            if step % 10 == 5 {
                // A topology change too.
                let (a, b, c) = edges.remove(rng.below(edges.len()));
                net.cut(&a, &b);
                net.pump();
                net.run_for(Duration::from_millis(300));
                net.connect(&a, &b, c + 1);
                edges.push((a, b, c + 1));
            }
            net.pump();
            net.run_for(Duration::from_millis(200));
        }
        // The faults stop; the periodic advertisements repair the rest.
        net.drop = None;
        net.reorder = false;
        net.run_for(2 * net.config.ra_interval);
        net.check_paths(&edges)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.check_addresses(&addresses)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        check_forwarding(&net).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn records_of_long_unreachable_routers_are_purged() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&c, "z");
    net.pump();
    assert_eq!(net.table(&a).routers_for("z").collect::<Vec<_>>(), [&c]);
    net.cut(&b, &c);
    net.pump();
    // Its addresses go at once (see the restart test below); its link
    // state after `purge_after`.
    assert!(net.nodes[&a].mobile.get(&c).is_none());
    let purge = net.config.purge_after;
    net.run_for(purge - Duration::from_secs(1));
    assert!(net.nodes[&a].ls.get(&c).is_some());
    net.run_for(Duration::from_secs(2));
    assert!(net.nodes[&a].ls.get(&c).is_none());
    assert!(net.nodes[&a].unreachable_since.is_empty());
    // A merge brings everything back.
    net.connect(&b, &c, 1);
    net.pump();
    net.check_paths(&edges).unwrap();
    assert_eq!(net.table(&a).routers_for("z").collect::<Vec<_>>(), [&c]);
}

/// A partition that heals before the purge, no router restarted: the
/// addresses forgotten at the cut come back with the merge (the
/// advertisements show the gap, a full list follows).
#[test]
fn addresses_come_back_when_a_partition_heals() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&c, "z");
    net.pump();
    net.cut(&b, &c);
    net.pump();
    assert_eq!(net.table(&a).routers_for("z").count(), 0);
    net.run_for(Duration::from_secs(5));
    net.connect(&b, &c, 1);
    net.pump();
    assert_eq!(net.table(&a).routers_for("z").collect::<Vec<_>>(), [&c]);
    net.check_addresses(&["z"]).unwrap();
}

#[test]
fn poll_table_gives_a_table_only_when_it_changed() {
    let (names, edges) = ring5();
    let mut net = Net::with_topology(&names, &edges);
    net.run_for(Duration::from_secs(1));
    let before = net.table_updates.clone();
    net.run_for(4 * net.config.ra_interval);
    assert_eq!(
        net.table_updates, before,
        "periodic traffic changed no table"
    );
    assert!(net.delivered > 0);
    net.add_address(&id("C"), "x");
    net.pump();
    for n in &names {
        let want = before[n] + usize::from(*n != id("C"));
        assert_eq!(net.table_updates[n], want, "{n}");
    }
}

#[test]
fn poll_timeout_and_a_lone_router() {
    let mut net = Net::new(&ids(&["A"]));
    let a = id("A");
    assert!(net.nodes[&a].poll_timeout().is_some());
    net.add_address(&a, "x");
    net.run_for(Duration::from_secs(10));
    let t = net.table(&a);
    assert_eq!(t.me(), &a);
    assert_eq!(t.cost(&a), Some(0));
    assert_eq!(t.next_hop(&a), None);
    assert_eq!(t.routers_for("x").count(), 0);
    assert_eq!(t.multicast_children(&a), Vec::<RouterId>::new());
    assert!(!t.is_next_hop_of(&id("B"), &a));
    // A connection to itself is ignored.
    let now = net.now;
    net.router(&a).neighbor_connected(a.clone(), 1, now);
    assert_eq!(net.router(&a).poll_transmit(), None);
}

#[test]
fn multicast_next_reaches_each_consumer_router_once_along_the_origin_tree() {
    let (names, edges) = ring5();
    let mut net = Net::with_topology(&names, &edges);
    let consumers = ids(&["C", "E"]);
    for r in &consumers {
        net.add_address(r, "m");
    }
    net.pump();
    for origin in &names {
        let mut reached: BTreeMap<RouterId, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([origin.clone()]);
        while let Some(r) = queue.pop_front() {
            let next = net.table(&r).multicast_next(origin, "m");
            if next.is_empty() {
                assert!(
                    consumers.contains(&r) || r == *origin,
                    "{r} is a dead branch of {origin}'s tree"
                );
            }
            for child in next {
                assert_eq!(net.table(&child).next_hop(origin), Some(&r), "valid origin");
                *reached.entry(child.clone()).or_default() += 1;
                queue.push_back(child);
            }
        }
        for c in consumers.iter().filter(|c| *c != origin) {
            assert_eq!(reached.get(c), Some(&1), "{c} from {origin}: {reached:?}");
        }
        assert!(reached.values().all(|n| *n == 1), "{reached:?}");
    }
    // No consumers: nowhere to go.
    assert!(
        net.table(&id("A"))
            .multicast_next(&id("A"), "none")
            .is_empty()
    );
}

#[test]
fn tree_stamps_agree_across_routers_and_change_only_with_the_tree() {
    let (names, edges) = ring5();
    let mut net = Net::with_topology(&names, &edges);
    let stamps = |net: &Net, origin: &RouterId| -> BTreeSet<Option<u64>> {
        names
            .iter()
            .map(|r| net.table(r).tree_stamp(origin))
            .collect()
    };
    let before: Vec<u64> = names
        .iter()
        .map(|o| {
            let s = stamps(&net, o);
            assert_eq!(s.len(), 1, "every router has the same stamp for {o}'s tree");
            s.into_iter().next().unwrap().expect("reachable")
        })
        .collect();
    let distinct: BTreeSet<&u64> = before.iter().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "each origin's tree its own stamp"
    );
    // An address appearing changes no tree.
    net.add_address(&id("C"), "m");
    net.pump();
    for (o, s) in names.iter().zip(&before) {
        assert_eq!(stamps(&net, o), BTreeSet::from([Some(*s)]));
    }
    // A cut changes every tree that used the link, and the routers agree
    // again once converged.
    net.cut(&id("A"), &id("B"));
    net.pump();
    for (o, s) in names.iter().zip(&before) {
        let now = stamps(&net, o);
        assert_eq!(now.len(), 1, "{o}: {now:?}");
        assert_ne!(now, BTreeSet::from([Some(*s)]), "{o}'s tree used A–B");
    }
    assert_eq!(net.table(&id("A")).tree_stamp(&id("nobody")), None);
}

/// A router killed and restarted (a new instance) with a consumer for the
/// same address: the others map the address to it once, when its new
/// instance says so. They must not map it from the old instance's record
/// when the router becomes reachable again, unmap it when the new instance
/// shows up, and map it again: every flap detaches and attaches the data
/// links of the address, and a message crossing one comes back
/// `modified{delivery-failed}`.
#[test]
fn a_restarted_router_s_address_is_mapped_once_not_flapped() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&c, "x");
    net.pump();
    assert_eq!(net.table(&a).routers_for("x").collect::<Vec<_>>(), [&c]);
    net.isolate(&c);
    net.pump();
    assert_eq!(net.table(&a).routers_for("x").count(), 0);
    net.run_for(Duration::from_secs(1));
    net.history.clear();
    net.start(&c, 2);
    net.add_address(&c, "x");
    net.connect(&b, &c, 1);
    net.pump();
    let mapped: Vec<bool> = net.history[&a]
        .iter()
        .map(|t| t.routers_for("x").any(|r| *r == c))
        .collect();
    assert_eq!(mapped.last(), Some(&true), "{mapped:?}");
    let first = mapped.iter().position(|m| *m).unwrap();
    assert!(
        mapped[first..].iter().all(|m| *m),
        "x mapped, unmapped and mapped again at A: {mapped:?}"
    );
}

/// `via` (what the data path asks per delivery) agrees with its definition
/// from next hops, costs and `is_next_hop_of`, for every router, address
/// holder, neighbour and previous hop.
#[test]
fn via_is_the_loop_free_cost_through_a_neighbour() {
    let (names, edges) = mesh4();
    let mut net = Net::with_topology(&names, &edges);
    for holder in ["B", "C", "D"] {
        net.add_address(&id(holder), "q");
    }
    net.pump();
    for r in &names {
        let t = net.table(r);
        for to in &names {
            for from in names.iter().map(Some).chain([None]) {
                let want = t
                    .routers_for("q")
                    .filter(|d| t.next_hop(d) == Some(to))
                    .filter(|d| from.is_none_or(|p| t.is_next_hop_of(p, d)))
                    .filter_map(|d| t.cost(d))
                    .min();
                assert_eq!(t.via("q", from, to), want, "{r}: via {to} from {from:?}");
            }
        }
        assert_eq!(t.via("none", None, &names[0]), None);
    }
}

/// A neighbour forges C's link-state record with instance and sequence
/// at the maximum (issue #20): it is refused, C stays reachable, and
/// nothing floods.
#[test]
fn a_forged_record_beyond_the_version_limit_is_refused() {
    let (names, edges) = line3();
    let mut net = Net::with_topology(&names, &edges);
    let (a, b, c) = (id("A"), id("B"), id("C"));
    net.add_address(&c, "q");
    net.run_for(Duration::from_secs(10));
    let before = net.nodes[&a].ls.version(&c).unwrap();
    let forged = ControlMessage::LinkState {
        id: c.clone(),
        instance: u64::MAX,
        seq: u64::MAX,
        neighbors: Vec::new(),
        sig: None,
    };
    let now = net.now;
    net.nodes
        .get_mut(&a)
        .unwrap()
        .handle_message(&b, forged, now);
    let delivered = net.delivered;
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.nodes[&a].ls.version(&c), Some(before));
    assert_eq!(net.table(&a).routers_for("q").collect::<Vec<_>>(), [&c]);
    // Ten seconds of HELLOs and advertisements between three routers.
    assert!(
        net.delivered - delivered < 100,
        "a storm: {}",
        net.delivered - delivered
    );
}

/// A forged record of C at the largest instance and sequence number a
/// record could claim without a bound on instances ahead of the clock:
/// refused (it would leave C no instance to move to), C stays reachable.
#[test]
fn a_record_claiming_an_instance_far_ahead_of_the_clock_is_refused() {
    let names = ids(&["F", "A", "B", "C"]);
    let edges = vec![edge("F", "A", 1), edge("A", "B", 1), edge("B", "C", 1)];
    let mut net = Net::with_topology(&names, &edges);
    let (f, a, c) = (id("F"), id("A"), id("C"));
    net.add_address(&c, "q");
    net.run_for(Duration::from_secs(10));
    let before = net.nodes[&a].ls.version(&c).unwrap();
    let instance = net.nodes[&c].instance();
    // A day and an hour ahead of every router's clock here (their first
    // instances are close together).
    let ahead = instance + super::INSTANCE_AHEAD + 3_600_000_000_000;
    for forged in [ahead, super::VERSION_LIMIT - 1] {
        let forged = ControlMessage::LinkState {
            id: c.clone(),
            instance: forged,
            seq: super::VERSION_LIMIT - 1,
            neighbors: Vec::new(),
            sig: None,
        };
        let now = net.now;
        net.nodes
            .get_mut(&a)
            .unwrap()
            .handle_message(&f, forged, now);
    }
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.nodes[&c].instance(), instance, "C did not have to move");
    assert_eq!(
        net.nodes[&a].ls.version(&c).map(|v| v.instance),
        Some(before.instance)
    );
    assert_eq!(net.table(&a).routers_for("q").collect::<Vec<_>>(), [&c]);
}

/// A forged record of C just inside the limit (its sequence number the
/// last one allowed), sent to A by its neighbour F: it floods to C, which
/// moves past it to its next instance at once; the mesh takes C's record
/// and the exchange ends.
#[test]
fn a_router_moves_past_a_forged_record_of_itself_even_at_the_last_sequence_number() {
    let names = ids(&["F", "A", "B", "C"]);
    let edges = vec![edge("F", "A", 1), edge("A", "B", 1), edge("B", "C", 1)];
    let mut net = Net::with_topology(&names, &edges);
    let (f, a, c) = (id("F"), id("A"), id("C"));
    net.add_address(&c, "q");
    net.run_for(Duration::from_secs(10));
    let instance = net.nodes[&c].instance();
    let forged = ControlMessage::LinkState {
        id: c.clone(),
        instance,
        seq: super::VERSION_LIMIT - 1,
        neighbors: Vec::new(),
        sig: None,
    };
    let now = net.now;
    net.nodes
        .get_mut(&a)
        .unwrap()
        .handle_message(&f, forged, now);
    let delivered = net.delivered;
    net.run_for(Duration::from_secs(10));
    assert_eq!(
        net.nodes[&c].instance(),
        instance + 1,
        "C moved to its next instance"
    );
    let at_a = net.nodes[&a].ls.version(&c).unwrap();
    assert_eq!((at_a.instance, at_a.seq), (instance + 1, 1));
    assert_eq!(net.table(&a).routers_for("q").collect::<Vec<_>>(), [&c]);
    net.check_paths(&edges).unwrap();
    assert!(
        net.delivered - delivered < 200,
        "a storm: {}",
        net.delivered - delivered
    );
}
