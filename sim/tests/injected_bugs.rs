//! Deliberately injected bugs, each caught by an invariant: the proof that
//! the checks can fail. The bugs are rewrites of frames on one inter-router
//! hop (`Fault::Tamper`), applied by the simulator, not the router.

mod common;

use std::time::Duration;

use common::{consumer, converged, producer};
use ferry_sim::client::OutcomeWeights;
use ferry_sim::tap::Tamper;
use ferry_sim::{Fault, Invariant, Mesh};

fn line3() -> Mesh {
    converged(
        Mesh::builder()
            .routers(["A", "B", "C"])
            .link("A", "B", 1)
            .link("B", "C", 1)
            .build(21),
    )
}

#[test]
fn released_turned_into_accepted_on_one_hop_is_caught() {
    let mut mesh = line3();
    // The consumer releases everything: nothing is ever accepted.
    let mut spec = consumer("q", 10);
    spec.outcomes = OutcomeWeights {
        accept: 0,
        reject: 0,
        release: 1,
        modify: 0,
    };
    mesh.add_consumer("C", spec);
    mesh.add_producer("A", producer("q", 10));
    mesh.inject(Fault::Tamper {
        from: "C".into(),
        to: "B".into(),
        how: Tamper::ReleasedToAccepted,
    });
    mesh.run_for(Duration::from_secs(5));
    let v = mesh.failure().expect("the rewrite is caught");
    assert_eq!(v.invariant, Invariant::OutcomeWithoutConsumer, "{v}");
    assert!(v.detail.contains("accepted"), "{v}");
    assert!(mesh.log().tail(5).contains("CHECK"), "the log says so");
}

#[test]
fn dropped_dispositions_on_one_hop_are_caught() {
    let mut mesh = line3();
    mesh.add_consumer("C", consumer("q", 10));
    mesh.add_producer("A", producer("q", 10));
    mesh.inject(Fault::Tamper {
        from: "C".into(),
        to: "B".into(),
        how: Tamper::DropDispositions,
    });
    mesh.run_for(Duration::from_secs(10));
    // Every step's checks pass (nothing wrong was said), but the messages
    // never settle: the settled-state check catches it.
    assert!(mesh.failure().is_none());
    let v = mesh.check_settled().unwrap_err();
    assert_eq!(v.invariant, Invariant::Liveness, "{v}");
    assert!(v.detail.contains("not done"), "{v}");
}

#[test]
fn accepted_turned_into_modified_on_one_hop_is_caught() {
    let mut mesh = line3();
    mesh.add_consumer("C", consumer("q", 10));
    mesh.add_producer("A", producer("q", 10));
    mesh.inject(Fault::Tamper {
        from: "B".into(),
        to: "A".into(),
        how: Tamper::AcceptedToModified,
    });
    mesh.run_for(Duration::from_secs(5));
    let v = mesh.failure().expect("the rewrite is caught");
    assert_eq!(v.invariant, Invariant::FalseOutcome, "{v}");
    assert!(v.detail.contains("modified"), "{v}");
}

#[test]
fn without_the_bug_the_same_runs_pass() {
    for how in [
        Tamper::ReleasedToAccepted,
        Tamper::DropDispositions,
        Tamper::AcceptedToModified,
    ] {
        let mut mesh = line3();
        mesh.add_consumer("C", consumer("q", 10));
        mesh.add_producer("A", producer("q", 10));
        let fault = Fault::Tamper {
            from: "C".into(),
            to: "B".into(),
            how,
        };
        mesh.inject(fault.clone());
        mesh.heal(fault);
        mesh.run_for(Duration::from_secs(5));
        mesh.check_settled().unwrap();
    }
}

/// Tenants meet where routers do not scope their addresses: the same
/// clients in two vhosts of a mesh without `[[vhost]]` (no policy) share
/// `q`, and the isolation invariant says so; with the vhosts configured
/// they never meet.
#[test]
fn tenants_that_meet_are_caught_and_a_policy_keeps_them_apart() {
    let run = |vhosts: &[&str]| {
        let mut mesh = converged(
            Mesh::builder()
                .routers(["A", "B", "C"])
                .link("A", "B", 1)
                .link("B", "C", 1)
                .vhosts(vhosts.iter().copied())
                .build(23),
        );
        let c = mesh.add_consumer("C", consumer("q", 10));
        let p = mesh.add_producer("A", producer("q", 10));
        let other = mesh.add_consumer("C", consumer("q", 10));
        mesh.set_vhost(c, "t1");
        mesh.set_vhost(p, "t1");
        mesh.set_vhost(other, "t2");
        mesh.run_for(Duration::from_secs(5));
        mesh
    };
    let mesh = run(&[]);
    let v = mesh.failure().expect("tenants met");
    assert_eq!(v.invariant, Invariant::Isolation, "{v}");
    let mut mesh = run(&["t1", "t2"]);
    common::assert_settled(&mut mesh);
    common::assert_ok(&mesh);
}

/// A routing protocol that ages a neighbour's HELLOs out faster than they
/// come (`hello_max_age` 300 ms, HELLOs every second) drops a neighbour
/// whose link is fine: the false-neighbour-loss invariant catches it.
#[test]
fn a_neighbour_dropped_while_its_link_delivers_is_caught() {
    let routing = ferry_router::routing::RoutingConfig {
        hello_max_age: Duration::from_millis(300),
        ..Default::default()
    };
    let mut mesh = Mesh::builder()
        .routers(["A", "B"])
        .link("A", "B", 1)
        .routing(routing)
        .build(21);
    mesh.run_for(Duration::from_secs(10));
    let v = mesh.failure().expect("the false loss is caught");
    println!("{v}");
    assert_eq!(v.invariant, Invariant::NeighbourLoss, "{v}");
}
