//! Router bugs the simulator found, each as a failing test (ignored so
//! that the suite passes until the router is fixed; run them with
//! `cargo test -p ferry-sim --test known_bugs -- --ignored`). When one is
//! fixed, drop its `#[ignore]`, and the matching exemption in
//! `Failure::known_bug`.

mod common;

use std::time::Duration;

use common::{assert_settled, consumer, converged, producer};
use ferry_sim::Mesh;

/// Credit parked on an idle upstream link starves a producer.
///
/// A and B are linked; a consumer with credit 5 and a producer of 100
/// messages are both on A; B has no client at all. B attaches a data link
/// to A for `q` (A has consumers), and A hands that link part of the
/// consumer's credit, as it does every upstream link. B never uses it and
/// A never takes it back, while the local producer's credit is topped up
/// only from what is left: within a few messages all of the consumer's
/// credit sits on B's idle link and the producer is stuck at credit 0
/// for good, with a consumer that has credit and nothing to do.
///
/// The same happens one hop further out (a router's budget is the credit
/// of its downstream data link, at most the credit window, and any idle
/// upstream neighbour can take all of it), and with an idle client
/// producer (one that has sent everything keeps what it was granted).
#[test]
#[ignore = "router bug: credit parked on idle upstream links is never reclaimed"]
fn credit_parked_on_an_idle_neighbour_starves_a_local_producer() {
    let mut mesh = converged(
        Mesh::builder()
            .routers(["A", "B"])
            .link("A", "B", 1)
            .build(3),
    );
    mesh.add_consumer("A", consumer("q", 5));
    mesh.add_producer("A", producer("q", 100));
    mesh.run_for(Duration::from_secs(30));
    // Fails: "c1 has 93 messages not done (credit 0, unsettled []);
    // credit parked on idle links: B->A holds 5".
    assert_settled(&mut mesh);
}

/// The same with an idle client producer: a producer that has sent all it
/// had keeps the whole budget, and a second producer never gets any.
#[test]
#[ignore = "router bug: credit parked on idle producers is never reclaimed"]
fn credit_parked_on_an_idle_producer_starves_another() {
    let mut mesh = converged(Mesh::builder().routers(["A"]).build(4));
    mesh.add_consumer("A", consumer("q", 4));
    mesh.add_producer("A", producer("q", 1));
    mesh.run_for(Duration::from_secs(1));
    mesh.add_producer("A", producer("q", 20));
    mesh.run_for(Duration::from_secs(10));
    // Fails: "c2 has 20 messages not done (credit 0, unsettled []);
    // credit parked on idle links: c1 (done) holds 4".
    assert_settled(&mut mesh);
}
