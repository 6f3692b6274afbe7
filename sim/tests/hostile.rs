//! The hostile-router fault (issue #20): a member of the mesh with a
//! valid key of its own forges other routers' records, replays old
//! genuine ones, or advertises every address in use. With signed records
//! the first two cost nothing; the third attracts traffic, and nothing
//! may be lost to it. See sim/README.md, *The hostile-router fault*.

mod common;

use std::time::Duration;

use common::{assert_ok, assert_settled, consumer, converged, producer};
use ferry_sim::{Fault, Hostile, Mesh};

/// A ring A-B-C-D with H, the hostile router, beside A and C: H is on
/// no shortest path the tables need (its links cost 3).
fn mesh(seed: u64, signing: bool) -> Mesh {
    Mesh::builder()
        .routers(["A", "B", "C", "D", "H"])
        .link("A", "B", 1)
        .link("B", "C", 1)
        .link("C", "D", 1)
        .link("D", "A", 1)
        .link("H", "A", 3)
        .link("C", "H", 3)
        .signing(signing)
        .build(seed)
}

const HONEST: [&str; 4] = ["A", "B", "C", "D"];

/// Control messages the routers received so far.
fn control(mesh: &Mesh) -> u64 {
    mesh.summary().control.messages
}

/// Runs `d` in steps of 10 ms; returns when and how some router's table
/// first disagreed with the true topology (`check_tables`: a route
/// missing, or one the topology does not have) or with where consumers
/// are (`check_addresses`), if one did.
fn watch_tables(mesh: &mut Mesh, d: Duration) -> Option<String> {
    let mut first = None;
    let end = mesh.now() + d;
    while mesh.now() < end {
        mesh.run_for(Duration::from_millis(10));
        assert_ok(mesh);
        if first.is_none()
            && let Err(e) = mesh.check_tables().and_then(|()| mesh.check_addresses())
        {
            first = Some(format!("at {:?}: {e}", mesh.now()));
        }
    }
    first
}

/// Clients: a consumer of q on C, a producer on A; a consumer of r on D,
/// a producer on B.
fn traffic(mesh: &mut Mesh, messages: u32) -> [usize; 2] {
    mesh.add_consumer("C", consumer("q", 50));
    mesh.add_consumer("D", consumer("r", 50));
    let p = mesh.add_producer("A", producer("q", messages));
    let r = mesh.add_producer("B", producer("r", messages));
    [p, r]
}

#[test]
fn forged_records_change_nothing_when_records_are_signed() {
    let mut m = converged(mesh(3, true));
    traffic(&mut m, 400);
    m.run_for(Duration::from_secs(1));
    // The cost of the protocol without the fault, per second.
    let c0 = control(&m);
    assert!(watch_tables(&mut m, Duration::from_secs(1)).is_none());
    let baseline = control(&m) - c0;

    m.inject(Fault::Hostile {
        router: "H".into(),
        how: Hostile::Forge,
    });
    let c1 = control(&m);
    let (_, _, refused0) = m.signatures().unwrap();
    // Two seconds: twenty rounds, each victim forged five times.
    let wrong = watch_tables(&mut m, Duration::from_secs(2));
    assert_eq!(wrong, None, "{}", m.log().tail(60));
    m.check_addresses().unwrap();
    let report = m.hostile_report("H").unwrap();
    let during = control(&m) - c1;
    // Every forged record was refused, and none was flooded on: the
    // neighbours received the forgeries and the protocol's usual traffic
    // (at most a request per forged delta or advertisement, and its
    // answer), no storm.
    let (_, _, refused) = m.signatures().unwrap();
    assert!(report.forged >= 20 * 2 * 15, "{report:?}");
    // Signed forgeries reach the signature check and fail it (unsigned
    // ones, and those past the version limit, are dropped before it):
    // several a round per neighbour.
    assert!(refused - refused0 >= 20 * 2 * 4, "{refused} {report:?}");
    println!(
        "control messages: {baseline} in the second before the fault, {during} in its two seconds, of which {} forged",
        report.forged
    );
    // Besides the forgeries, the protocol's own rate and at most a
    // request and its answer per round and neighbour: no amplification.
    let rounds = 21;
    assert!(
        during - report.forged <= 2 * baseline + 2 * rounds * 2,
        "control messages: {baseline} in a second before, {during} in two under the fault, {} forged",
        report.forged
    );
    m.heal(Fault::Hostile {
        router: "H".into(),
        how: Hostile::Forge,
    });
    m.run_for(Duration::from_secs(10));
    assert_settled(&mut m);
    let s = m.summary();
    assert_eq!(s.counts.accepted, 800, "{s}");
    assert_eq!(s.counts.released + s.counts.modified, 0, "{s}");
}

#[test]
fn forged_records_cut_a_router_off_when_records_are_not_signed() {
    // The same attack on a mesh that does not sign: the forged
    // link-state records are believed, and some honest router loses its
    // route to a running victim. So signatures are what protect above.
    let mut m = converged(mesh(3, false));
    m.inject(Fault::Hostile {
        router: "H".into(),
        how: Hostile::Forge,
    });
    let wrong = watch_tables(&mut m, Duration::from_secs(2));
    println!("{wrong:?}");
    assert!(
        wrong.is_some_and(|w| w.contains("is None")),
        "the forgeries took no effect"
    );
    assert!(m.signatures().is_none());
}

#[test]
fn replayed_records_change_nothing() {
    let mut m = converged(mesh(5, true));
    traffic(&mut m, 600);
    m.run_for(Duration::from_millis(500));
    let hostile = Fault::Hostile {
        router: "H".into(),
        how: Hostile::Replay,
    };
    // The records H captures from now on: D's consumer reattaching after
    // D's restart adds address records to them.
    m.inject(hostile.clone());
    m.run_for(Duration::from_millis(500));
    // Make what H captured old: D restarts (a new instance), A-B is cut
    // and restored (new link-state versions of A and B).
    for (fault, heal) in [
        (Fault::Kill { router: "D".into() }, true),
        (
            Fault::Cut {
                a: "A".into(),
                b: "B".into(),
            },
            true,
        ),
    ] {
        m.inject(fault.clone());
        assert!(
            m.run_until_converged(Duration::from_secs(5)).is_some(),
            "{}",
            m.log().tail(60)
        );
        if heal {
            m.heal(fault);
            assert!(
                m.run_until_converged(Duration::from_secs(5)).is_some(),
                "{}",
                m.log().tail(60)
            );
        }
    }
    // D's consumer is back and known everywhere.
    m.run_for(Duration::from_secs(1));
    let c1 = control(&m);
    let r1 = m.hostile_report("H").unwrap().replayed;
    // Two seconds of replays of old records: the tables stay right.
    let wrong = watch_tables(&mut m, Duration::from_secs(2));
    assert_eq!(wrong, None, "{}", m.log().tail(60));
    m.check_addresses().unwrap();
    let report = m.hostile_report("H").unwrap();
    let replayed = report.replayed - r1;
    assert!(replayed >= 20 * 2 * 8, "{report:?}");
    assert!(report.captured > 10, "{report:?}");
    // The simulator's copy of the signed payloads matches the router's
    // (the genuine records it captured verify over it): forgeries are
    // refused for the right reason.
    assert!(report.captured_verified.0 > 10, "{report:?}");
    assert_eq!(report.captured_verified.1, 0, "{report:?}");
    // Replays are stale: received, not flooded on.
    let during = control(&m) - c1;
    println!("control messages: {during} in two seconds of replays, of which {replayed} replayed");
    assert!(
        during < replayed + replayed / 2 + 400,
        "{during} control messages, {replayed} replayed"
    );
    m.heal(hostile);
    m.run_for(Duration::from_secs(10));
    assert_settled(&mut m);
    let s = m.summary();
    assert_eq!(s.counts.accepted, 1200, "{s}");
}

#[test]
fn a_router_advertising_every_address_loses_no_message() {
    let mut m = converged(mesh(7, true));
    let hostile = Fault::Hostile {
        router: "H".into(),
        how: Hostile::AdvertiseAll,
    };
    // A producer whose address has no consumer anywhere, and the
    // consumers of q and r, before the fault: H advertises every address
    // a client uses.
    let orphan = m.add_producer("B", producer("nowhere", 20));
    m.add_consumer("C", consumer("q", 50));
    m.add_consumer("D", consumer("r", 50));
    m.run_for(Duration::from_millis(200));
    m.inject(hostile.clone());
    m.run_for(Duration::from_millis(500));
    // Its own record, validly signed, is believed: every honest router
    // maps every address to H too.
    for r in HONEST {
        let t = m.table(r).unwrap();
        for a in ["q", "r", "nowhere"] {
            assert!(
                t.routers_for(a).any(|x| x.as_str() == "H"),
                "{r}: {a} not at H"
            );
        }
    }
    m.check_addresses().unwrap();
    // Producers of q and r under the lure, from routers on both sides.
    for (at, a) in [("A", "q"), ("B", "r"), ("H", "q"), ("D", "q")] {
        m.add_producer(at, producer(a, 150));
    }
    m.run_for(Duration::from_secs(3));
    assert_ok(&m);
    let lured = m.summary();
    let (routed, released) = m.routed_by("H").unwrap();
    println!("under the lure: H routed {routed}, released {released}\n{lured}");
    // Credit comes from consumers, not from address records: the lure
    // got the orphan producer none (the step check of orphan credit
    // holds it all along).
    assert_eq!(m.client(orphan).credit(), 0);
    // Nor did it attract any: H routed its own producer's messages only.
    assert_eq!((routed, released), (150, 0), "{}", m.log().tail(40));
    m.heal(hostile);
    m.run_for(Duration::from_secs(15));
    assert_settled(&mut m);
    let s = m.summary();
    // Nothing lost: every message of q and r accepted by its consumer,
    // whatever H did with those it attracted.
    assert_eq!(s.counts.lost, 0, "{s}");
    assert_eq!(s.counts.accepted, 600, "{s}");
    assert_eq!(
        m.client(orphan).credit(),
        0,
        "no credit for an address no one consumes"
    );
    println!("after: {s}");
}

#[test]
fn a_nearer_router_advertising_a_closest_address_attracts_nothing() {
    // H next to A (cost 1), the only consumer of a closest address two
    // and four away: if the lure drew traffic, the producer on A would
    // send it to H, which has nowhere to put it.
    let mut m = converged(
        Mesh::builder()
            .routers(["A", "B", "C", "H"])
            .link("A", "B", 2)
            .link("B", "C", 2)
            .link("A", "H", 1)
            .build(11),
    );
    m.add_consumer("C", consumer("closest.x", 50));
    m.run_for(Duration::from_millis(200));
    let hostile = Fault::Hostile {
        router: "H".into(),
        how: Hostile::AdvertiseAll,
    };
    m.inject(hostile.clone());
    m.run_for(Duration::from_millis(500));
    let t = m.table("A").unwrap();
    assert!(t.routers_for("closest.x").any(|r| r.as_str() == "H"));
    m.add_producer("A", producer("closest.x", 100));
    m.add_producer("B", producer("closest.x", 100));
    m.run_for(Duration::from_secs(3));
    assert_ok(&m);
    // Under the lure every message reached the real consumer: H got none.
    let s = m.summary();
    assert_eq!((s.counts.sent, s.counts.accepted), (200, 200), "{s}");
    assert_eq!(m.routed_by("H"), Some((0, 0)));
    m.heal(hostile);
    m.run_for(Duration::from_secs(5));
    assert_settled(&mut m);
}
