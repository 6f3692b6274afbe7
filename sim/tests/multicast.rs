//! Multicast across routers: meshes with cycles (triangles, rings, grids,
//! full meshes), consumers on several routers, producers on one or more.
//!
//! Without faults every consumer gets every message exactly once and the
//! producer's outcome combines the consumers' answers (rejected >
//! accepted > modified > released). Under faults (kills, cuts, silent
//! partitions) the step invariants hold (no consumer gets one attempt
//! twice, no `accepted` without a consumer that accepted, `released` only
//! if every consumer that got it released it, buffers bounded), every
//! producer finishes once the faults heal, and messages sent after that
//! reach every consumer exactly once again. Regression tests for the
//! multicast bugs the simulator found close the file's fault-free part.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{assert_ok, assert_settled, consumer, converged, producer};
use ferry_sim::client::{App, OutcomeWeights};
use ferry_sim::ledger::{Fate, Outcome};
use ferry_sim::rng::SimRng;
use ferry_sim::{Fault, Mesh, Shape, Topology};

const M: &str = "multicast/news";

/// Consumer credit: small enough that credit, not pacing, bounds the flow
/// (the slowest consumer's credit drives a multicast producer).
const CREDIT: u32 = 10;

/// Copies of each of producer `p`'s messages (by number, any attempt) that
/// each consumer got.
fn copies(mesh: &Mesh, p: usize) -> BTreeMap<usize, BTreeMap<u32, u32>> {
    let mut out: BTreeMap<usize, BTreeMap<u32, u32>> = BTreeMap::new();
    for (k, c, _) in mesh.ledger().receipts() {
        if usize::from(k.producer) == p {
            *out.entry(c).or_default().entry(k.seq).or_default() += 1;
        }
    }
    out
}

fn messages(mesh: &Mesh, p: usize) -> u32 {
    match &mesh.client(p).app {
        App::Producer(spec) => spec.spec.messages,
        App::Consumer(_) => panic!("c{p} is a consumer"),
    }
}

/// Every consumer in `consumers` got one copy of each of producer `p`'s
/// messages (by number, whatever the attempt).
fn assert_one_copy_each(mesh: &Mesh, p: usize, consumers: &[usize]) {
    let n = messages(mesh, p);
    let got = copies(mesh, p);
    for &c in consumers {
        let per = got.get(&c).cloned().unwrap_or_default();
        let missing: Vec<u32> = (0..n).filter(|s| !per.contains_key(s)).collect();
        let twice: Vec<(u32, u32)> = per
            .iter()
            .filter(|(_, k)| **k > 1)
            .map(|(s, k)| (*s, *k))
            .collect();
        assert!(
            missing.is_empty() && twice.is_empty(),
            "c{c} from c{p}: missing {missing:?}, more than once {twice:?}\n{}",
            mesh.log().tail(60)
        );
    }
}

/// Every consumer in `consumers` got every message of every producer in
/// `producers` exactly once, each sent once and accepted.
fn assert_exactly_once(mesh: &Mesh, producers: &[usize], consumers: &[usize]) {
    for &p in producers {
        let n = messages(mesh, p);
        assert_one_copy_each(mesh, p, consumers);
        let fates: Vec<Fate> = mesh
            .ledger()
            .attempts()
            .filter(|(k, _)| usize::from(k.producer) == p)
            .map(|(_, f)| f)
            .collect();
        assert_eq!(fates.len(), n as usize, "c{p} sent some messages again");
        assert!(
            fates.iter().all(|f| *f == Fate::Settled(Outcome::Accepted)),
            "c{p}: {fates:?}"
        );
    }
}

/// The producer's outcome of every attempt is the consumers' answers
/// combined (rejected > accepted > modified > released), every consumer
/// answered every attempt it got, and every consumer in `consumers` got
/// every attempt once. Only without faults: a lost link turns a copy's
/// answer into `modified`.
fn assert_combined_outcomes(mesh: &Mesh, consumers: &[usize]) {
    let rank = |o: Outcome| match o {
        Outcome::Rejected => 4,
        Outcome::Accepted => 3,
        Outcome::Modified => 2,
        Outcome::Released => 1,
    };
    let mut answers: BTreeMap<_, Vec<(usize, Option<Outcome>)>> = BTreeMap::new();
    for (k, c, a) in mesh.ledger().receipts() {
        answers.entry(k).or_default().push((c, a));
    }
    for (k, fate) in mesh.ledger().attempts() {
        let got = answers.remove(&k).unwrap_or_default();
        let mut who: Vec<usize> = got.iter().map(|(c, _)| *c).collect();
        who.sort_unstable();
        assert_eq!(who, consumers, "{k} reached {got:?}");
        let Fate::Settled(told) = fate else {
            panic!("{k}: {fate:?}");
        };
        let want = got
            .iter()
            .map(|(c, a)| a.unwrap_or_else(|| panic!("c{c} never answered {k}")))
            .max_by_key(|o| rank(*o))
            .expect("reached consumers");
        assert_eq!(told, want, "{k}: consumers answered {got:?}");
    }
}

/// A converged mesh (`FERRY_SIM_ECHO=1` prints its event log as it runs).
fn mesh(topology: Topology, seed: u64) -> Mesh {
    let echo = std::env::var_os("FERRY_SIM_ECHO").is_some_and(|v| v == "1");
    converged(Mesh::builder().topology(topology).echo(echo).build(seed))
}

fn triangle() -> Topology {
    Topology::with_routers(["A", "B", "C"])
        .link("A", "B", 1)
        .link("B", "C", 1)
        .link("C", "A", 1)
}

/// A ring of five with uneven costs: A-B-C-D-E-A.
fn ring5() -> Topology {
    Topology::with_routers(["A", "B", "C", "D", "E"])
        .link("A", "B", 1)
        .link("B", "C", 2)
        .link("C", "D", 1)
        .link("D", "E", 3)
        .link("E", "A", 1)
}

/// Runs until every message is done, `max` at most, then checks the
/// settled state.
fn run_settled(mesh: &mut Mesh, max: Duration) {
    let deadline = mesh.now() + max;
    while mesh.now() < deadline && mesh.failure().is_none() && mesh.check_delivered().is_err() {
        mesh.run_for(Duration::from_millis(200));
    }
    assert_settled(mesh);
}

/// Lets the consumers' addresses reach every table and the data links
/// attach before the producers start.
fn settle_consumers(mesh: &mut Mesh) {
    mesh.run_for(Duration::from_secs(1));
    assert_ok(mesh);
}

#[test]
fn every_consumer_gets_every_message_once_in_a_triangle() {
    let mut mesh = mesh(triangle(), 1);
    let consumers: Vec<usize> = ["A", "B", "B", "C"]
        .iter()
        .map(|r| mesh.add_consumer(r, consumer(M, CREDIT)))
        .collect();
    settle_consumers(&mut mesh);
    let p = mesh.add_producer("A", producer(M, 100));
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_exactly_once(&mesh, &[p], &consumers);
    let s = mesh.summary();
    assert_eq!(s.counts.received, 400, "{s}");
    assert_eq!(s.loops_caught, 0, "{s}");
}

/// An anonymous sender (null target, routed by `to`) is tied to no
/// address, so the tree from its router has no data links until it sends
/// to the address (regression: every message released, for ever, to
/// consumers on other routers). Its first messages are released while
/// the links attach; every message ends accepted, each consumer with one
/// copy of each.
#[test]
fn an_anonymous_sender_reaches_every_consumer_of_a_multicast_address() {
    let mut mesh = mesh(ring5(), 4);
    let consumers: Vec<usize> = ["A", "C", "D"]
        .iter()
        .map(|r| mesh.add_consumer(r, consumer(M, CREDIT)))
        .collect();
    settle_consumers(&mut mesh);
    let mut spec = producer(M, 100);
    spec.anonymous = true;
    let p = mesh.add_producer("A", spec);
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_one_copy_each(&mesh, p, &consumers);
    let s = mesh.summary();
    assert_eq!(s.counts.accepted, 100, "{s}");
}

#[test]
fn every_consumer_gets_every_message_once_in_a_ring_from_two_producers() {
    let mut mesh = mesh(ring5(), 2);
    let consumers: Vec<usize> = ["A", "B", "D", "E"]
        .iter()
        .map(|r| mesh.add_consumer(r, consumer(M, CREDIT)))
        .collect();
    settle_consumers(&mut mesh);
    let producers = vec![
        mesh.add_producer("A", producer(M, 80)),
        mesh.add_producer("C", producer(M, 80)),
    ];
    run_settled(&mut mesh, Duration::from_secs(15));
    assert_exactly_once(&mesh, &producers, &consumers);
    assert_eq!(mesh.summary().loops_caught, 0);
}

/// Rings, grids, full meshes and random meshes with cycles, random costs,
/// consumers on about half the routers and producers on a few.
#[test]
fn every_consumer_gets_every_message_once_in_every_shape_with_cycles() {
    let shapes = [
        (Shape::Ring, 4),
        (Shape::Ring, 6),
        (Shape::Grid, 9),
        (Shape::Full, 5),
        (Shape::Random, 8),
    ];
    for (i, (shape, n)) in shapes.into_iter().enumerate() {
        let seed = 100 + i as u64;
        let mut rng = SimRng::new(seed);
        let topology = Topology::generate(shape, n, &mut rng).with_random_costs(4, &mut rng);
        let ids = topology.routers.clone();
        let mut mesh = mesh(topology, seed);
        let mut consumers = Vec::new();
        for r in &ids {
            if consumers.is_empty() || rng.percent(50) {
                consumers.push(mesh.add_consumer(r, consumer(M, CREDIT)));
            }
        }
        settle_consumers(&mut mesh);
        let producers: Vec<usize> = (0..rng.range_usize(1, 3))
            .map(|_| {
                let at = &ids[rng.index(ids.len())];
                mesh.add_producer(at, producer(M, 40))
            })
            .collect();
        let deadline = mesh.now() + Duration::from_secs(20);
        while mesh.now() < deadline && mesh.check_delivered().is_err() {
            mesh.run_for(Duration::from_millis(200));
        }
        if let Err(v) = mesh.check_settled() {
            panic!("{shape} of {n}: {v}\n{}", mesh.log().tail(80));
        }
        assert_exactly_once(&mesh, &producers, &consumers);
        assert_eq!(mesh.summary().loops_caught, 0, "{shape} of {n}");
    }
}

#[test]
fn the_producer_is_told_the_consumers_outcomes_combined() {
    let mut mesh = mesh(ring5(), 3);
    let mut spec = consumer(M, CREDIT);
    spec.outcomes = OutcomeWeights {
        accept: 4,
        reject: 1,
        release: 2,
        modify: 2,
    };
    let consumers: Vec<usize> = ["B", "C", "E"]
        .iter()
        .map(|r| mesh.add_consumer(r, spec.clone()))
        .collect();
    settle_consumers(&mut mesh);
    mesh.add_producer("A", producer(M, 60));
    run_settled(&mut mesh, Duration::from_secs(20));
    assert_combined_outcomes(&mesh, &consumers);
    let s = mesh.summary();
    assert!(
        s.counts.rejected > 0 && s.counts.modified + s.counts.released > 0,
        "{s}"
    );
}

#[test]
fn pre_settled_multicast_reaches_each_consumer_once() {
    let mut mesh = mesh(triangle(), 4);
    let consumers: Vec<usize> = ["A", "B", "C"]
        .iter()
        .map(|r| mesh.add_consumer(r, consumer(M, CREDIT)))
        .collect();
    settle_consumers(&mut mesh);
    let mut spec = producer(M, 60);
    spec.presettled = true;
    let p = mesh.add_producer("B", spec);
    run_settled(&mut mesh, Duration::from_secs(10));
    // Sent is done: let the last copies arrive.
    mesh.run_for(Duration::from_millis(500));
    assert_one_copy_each(&mesh, p, &consumers);
}

#[test]
fn messages_larger_than_a_frame_reach_every_consumer_once() {
    let mut mesh = mesh(ring5(), 5);
    let consumers: Vec<usize> = ["B", "C", "D"]
        .iter()
        .map(|r| mesh.add_consumer(r, consumer(M, CREDIT)))
        .collect();
    settle_consumers(&mut mesh);
    let mut spec = producer(M, 20);
    spec.body_size = 100_000;
    let p = mesh.add_producer("E", spec);
    run_settled(&mut mesh, Duration::from_secs(20));
    assert_exactly_once(&mesh, &[p], &consumers);
}

#[test]
fn a_producer_gets_credit_only_once_a_remote_consumer_is_there_and_loses_it_when_all_go() {
    let mut mesh = mesh(ring5(), 6);
    let p = mesh.add_producer("A", producer(M, 30));
    mesh.run_for(Duration::from_secs(1));
    assert_eq!(mesh.client(p).credit(), 0, "no consumer anywhere yet");
    let c = mesh.add_consumer("D", consumer(M, CREDIT));
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_exactly_once(&mesh, &[p], &[c]);
    assert!(mesh.client(p).credit() > 0);
    mesh.stop_consumers();
    mesh.run_for(Duration::from_secs(2));
    assert!(mesh.check_no_credit().is_ok(), "{}", mesh.log().tail(40));
}

/// The line A – B – C with a consumer of credit 4 on A, settled.
fn line_with_a_small_consumer_on_a() -> (Mesh, usize) {
    let line = Topology::with_routers(["A", "B", "C"])
        .link("A", "B", 1)
        .link("B", "C", 1);
    let mut mesh = mesh(line, 5);
    let c = mesh.add_consumer("A", consumer(M, 4));
    settle_consumers(&mut mesh);
    (mesh, c)
}

/// Regression (found by the simulator; fixed by attaching a tree's data
/// links only where it has producers upstream): every router attached a
/// data link per origin router's tree, producers or not, and at a
/// consumer's router they all shared its credit. In the line A – B – C
/// with a consumer of credit 4 on A, the links of trees B and C (no
/// producers at all) took 2 credits each and a producer on A got none.
#[test]
fn trees_without_producers_do_not_starve_a_producer_beside_a_consumer() {
    let (mut mesh, c) = line_with_a_small_consumer_on_a();
    let p = mesh.add_producer("A", producer(M, 20));
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_exactly_once(&mesh, &[p], &[c]);
}

/// The same in a 3 × 3 grid: a producer on the middle router, beside a
/// consumer of credit 10, with consumers on the corners too (it used to
/// share the middle consumer with 8 trees, in shares of 2, and never sent).
#[test]
fn trees_without_producers_do_not_starve_a_producer_in_a_grid() {
    let mut rng = SimRng::new(10);
    let topology = Topology::generate(Shape::Grid, 9, &mut rng).with_random_costs(3, &mut rng);
    let mut mesh = mesh(topology, 10);
    let consumers: Vec<usize> = ["R0", "R2", "R4", "R6", "R8"]
        .iter()
        .map(|r| mesh.add_consumer(r, consumer(M, 10)))
        .collect();
    settle_consumers(&mut mesh);
    let p = mesh.add_producer("R4", producer(M, 40));
    run_settled(&mut mesh, Duration::from_secs(20));
    assert_exactly_once(&mesh, &[p], &consumers);
}

/// Regression (found by the simulator; fixed by taking multicast credit
/// back from idle clients): two multicast producers that had sent their
/// one message held 2 credits each of the consumer's 4, and a third got
/// none, for good.
#[test]
fn idle_multicast_producers_do_not_starve_a_busy_one() {
    let mut mesh = mesh(Topology::with_routers(["A"]), 5);
    let c = mesh.add_consumer("A", consumer(M, 4));
    mesh.add_producer("A", producer(M, 1));
    mesh.add_producer("A", producer(M, 1));
    mesh.run_for(Duration::from_secs(1));
    let p = mesh.add_producer("A", producer(M, 20));
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_exactly_once(&mesh, &[p], &[c]);
}

/// Regression (found by the simulator; fixed by draining a neighbour's
/// idle link instead of never taking its credit back): the data links of
/// trees whose producers had finished kept their fair share of a
/// consumer's credit, and once `(producers - 1) × share >= credit` a
/// producer with messages got nothing, for good. Here the consumer on A
/// (credit 4) is shared by A's producer and the links of trees B and C,
/// whose producers sent one message each: they held 2 credits each, and
/// the producer on A was granted none.
#[test]
fn idle_trees_give_their_credit_back_to_a_busy_producer() {
    let (mut mesh, c) = line_with_a_small_consumer_on_a();
    let idle = [
        mesh.add_producer("B", producer(M, 1)),
        mesh.add_producer("C", producer(M, 1)),
    ];
    mesh.run_for(Duration::from_secs(2));
    let p = mesh.add_producer("A", producer(M, 20));
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_exactly_once(&mesh, &[p], &[c]);
    assert_exactly_once(&mesh, &idle, &[c]);
}

/// A data link cut back while copies are on their way to it: in the line
/// A – B – C with a consumer on A and a producer on C, a producer beside
/// the consumer arrives and A cuts B's link of tree C to its share. B's
/// link to A now has less credit than B promised C, and C's copies still
/// on the (slow) link B – C arrive at B with nowhere to go at once. They
/// wait at B for the credit of the link to A, streamed ones with their
/// later frames, instead of being refused (a multicast copy cannot be
/// refused alone: its siblings elsewhere in the tree may have been
/// delivered). Nothing is lost, nothing sent twice, and both producers are
/// told `accepted` for everything.
#[test]
fn copies_promised_before_a_cut_wait_for_credit_instead_of_being_refused() {
    for body_size in [32, 100_000] {
        let (mut mesh, c) = line_with_a_small_consumer_on_a();
        let c = [c, mesh.add_consumer("B", consumer(M, 4))];
        settle_consumers(&mut mesh);
        mesh.inject(Fault::Delay {
            a: "B".into(),
            b: "C".into(),
            extra: Duration::from_millis(20),
        });
        let mut fast = producer(M, 100);
        fast.interval = Duration::from_millis(1);
        fast.body_size = body_size;
        let far = mesh.add_producer("C", fast.clone());
        // The near producer comes while C's copies are on the slow link
        // (the assertion below checks that some had to wait).
        mesh.run_for(Duration::from_millis(200));
        fast.body_size = 32;
        let near = mesh.add_producer("A", fast);
        run_settled(&mut mesh, Duration::from_secs(30));
        assert_exactly_once(&mesh, &[far, near], &c);
        let held = mesh.summary().router.held;
        assert!(
            held > 0,
            "body {body_size}: no copy had to wait: the test shows nothing"
        );
        println!("body {body_size}: {held} copies waited for credit");
    }
}

/// Regression (found by the simulator in a 3 × 3 grid; fixed by stamping
/// each multicast message with its origin's tree): a copy still in flight
/// on the old tree when the tree changed was forwarded on the new one, and
/// a consumer got the same delivery twice.
///
/// Square P – A – X – B – P (costs P-A 1, A-X 1, P-B 1, B-X 2), consumers
/// on X and on B, a producer on P. P's tree is P → A → X and P → B; the
/// link P – B is slow (500 ms). P sends m: X gets it through A at once,
/// and the copy for B is still on the slow link when A – X is cut. P's
/// tree is now P → B → X, and B is X's parent in it: B used to forward the
/// late copy to X, which had it already. Now B sees the copy's stamp is
/// not that of P's tree as B sees it, and gives it to its own consumer
/// only.
#[test]
fn a_copy_late_on_the_old_tree_is_not_forwarded_on_the_new_one() {
    let square = Topology::with_routers(["P", "A", "X", "B"])
        .link("P", "A", 1)
        .link("A", "X", 1)
        .link("P", "B", 1)
        .link("B", "X", 2);
    let mut mesh = mesh(square, 11);
    let consumers = [
        mesh.add_consumer("X", consumer(M, 10)),
        mesh.add_consumer("B", consumer(M, 10)),
    ];
    mesh.inject(Fault::Delay {
        a: "P".into(),
        b: "B".into(),
        extra: Duration::from_millis(500),
    });
    mesh.run_for(Duration::from_secs(3));
    let p = mesh.add_producer("P", producer(M, 1));
    // Until X has m (B's copy is still on the slow link).
    while mesh.ledger().counts.received == 0 && mesh.now() < Duration::from_secs(10) {
        mesh.run_for(Duration::from_millis(5));
    }
    assert_eq!(mesh.ledger().counts.received, 1, "X has it, B not yet");
    mesh.inject(Fault::Cut {
        a: "A".into(),
        b: "X".into(),
    });
    run_settled(&mut mesh, Duration::from_secs(5));
    assert_ok(&mesh);
    assert_exactly_once(&mesh, &[p], &consumers);
}

/// Consumers on `placed`, a producer on each of `at` streaming to them
/// (faster than they take messages, so copies are in flight everywhere);
/// `fault` comes in the middle, lasts `lasts` and heals. Every step
/// invariant holds all along, every message is settled, and the fault
/// disturbed the flow (some consumer missed a message or got it again,
/// or some producer was told something other than `accepted`). Then new
/// producers' messages reach every consumer exactly once again, and with
/// the consumers gone no producer keeps credit.
fn survive(mut mesh: Mesh, at: &[&str], placed: &[&str], fault: Fault, lasts: Duration) {
    let mut slow = consumer(M, CREDIT);
    slow.delay = Duration::from_millis(4);
    let consumers: Vec<usize> = placed
        .iter()
        .map(|r| mesh.add_consumer(r, slow.clone()))
        .collect();
    settle_consumers(&mut mesh);
    let producers: Vec<usize> = at
        .iter()
        .map(|r| {
            let mut spec = producer(M, 200);
            spec.interval = Duration::from_millis(2);
            mesh.add_producer(r, spec)
        })
        .collect();
    mesh.run_for(Duration::from_millis(400));
    mesh.inject(fault.clone());
    mesh.run_for(lasts);
    assert_ok(&mesh);
    mesh.heal(fault);
    assert!(
        mesh.run_until_converged(Duration::from_secs(30)).is_some(),
        "{}",
        mesh.log().tail(60)
    );
    run_settled(&mut mesh, Duration::from_secs(20));
    let s = mesh.summary();
    let disturbed = s.counts.sent > s.counts.accepted
        || producers.iter().any(|&p| {
            let got = copies(&mesh, p);
            consumers.iter().any(|c| {
                got.get(c)
                    .is_none_or(|per| per.len() < 200 || per.values().any(|k| *k > 1))
            })
        });
    assert!(disturbed, "the fault changed nothing\n{s}");
    // Healed (every consumer back and known everywhere): new messages
    // reach every consumer exactly once again.
    let deadline = mesh.now() + Duration::from_secs(30);
    while mesh.now() < deadline
        && !(consumers.iter().all(|&c| mesh.client(c).is_attached())
            && mesh.check_addresses().is_ok())
    {
        mesh.run_for(Duration::from_millis(100));
    }
    settle_consumers(&mut mesh);
    let after: Vec<usize> = at
        .iter()
        .map(|r| mesh.add_producer(r, producer(M, 40)))
        .collect();
    run_settled(&mut mesh, Duration::from_secs(10));
    assert_exactly_once(&mesh, &after, &consumers);
    mesh.stop_consumers();
    mesh.run_for(Duration::from_secs(3));
    assert!(mesh.check_no_credit().is_ok(), "{}", mesh.log().tail(40));
    println!("{}", mesh.summary());
}

/// B is on the tree from A to C and D.
#[test]
fn killing_a_router_of_the_tree_heals_and_loses_no_accepted_message() {
    survive(
        mesh(ring5(), 7),
        &["A"],
        &["B", "C", "D", "E"],
        Fault::Kill { router: "B".into() },
        Duration::from_secs(2),
    );
}

#[test]
fn a_cut_link_of_the_trees_reroutes_and_heals() {
    survive(
        mesh(ring5(), 8),
        &["A", "D"],
        &["B", "C", "D"],
        Fault::Cut {
            a: "B".into(),
            b: "C".into(),
        },
        Duration::from_secs(2),
    );
}

/// Nobody sees EOF: until HELLOs age out, copies sent across vanish.
#[test]
fn a_silent_partition_splits_the_trees_and_heals() {
    survive(
        mesh(ring5(), 9),
        &["C", "A"],
        &["A", "B", "D", "E"],
        Fault::Partition {
            routers: vec!["A".into(), "B".into()],
        },
        Duration::from_secs(6),
    );
}

#[test]
fn killing_the_producers_router_in_a_grid_heals() {
    let mut rng = SimRng::new(10);
    let topology = Topology::generate(Shape::Grid, 9, &mut rng).with_random_costs(3, &mut rng);
    survive(
        mesh(topology, 10),
        &["R4", "R0"],
        &["R0", "R2", "R4", "R6", "R8"],
        Fault::Kill {
            router: "R4".into(),
        },
        Duration::from_secs(3),
    );
}
