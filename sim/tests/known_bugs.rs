//! Router bugs the simulator found, each as a failing test (ignored so
//! that the suite passes until the router is fixed; run them with
//! `cargo test -p ferry-sim --test known_bugs -- --ignored`). When one is
//! fixed, move its test to `scripted.rs` without the `#[ignore]`, and drop
//! the matching exemption in `Failure::known_bug`.

mod common;

use std::time::Duration;

use common::{assert_settled, consumer, converged, producer};
use ferry_sim::Mesh;

/// Idle producers at their fair share starve a busy one.
///
/// An address's budget (here one consumer's credit, 4) is shared among its
/// producers in shares of `ceil(budget / producers)`. Two producers that
/// have sent everything they had hold 2 each — their share, so nobody
/// cuts them back — and a third producer, with messages to send, is
/// granted `min(share, spare) = 0`, for good: idle holders at their share
/// use up the budget whenever `(producers - 1) × share >= budget`.
///
/// In a mesh the idle holders are mostly neighbours' data links: every
/// neighbour that leads towards consumers attaches one, whether or not it
/// has producers, and a router's budget is only what its own downstream
/// link was granted (at most the credit window), so a router with a local
/// producer and two idle upstream neighbours starves its producer as soon
/// as its budget is 4 or less.
#[test]
#[ignore = "router bug: idle producers at their (rounded-up) fair share starve a busy one"]
fn idle_producers_at_their_share_starve_a_busy_one() {
    let mut mesh = converged(Mesh::builder().routers(["A"]).build(5));
    mesh.add_consumer("A", consumer("q", 4));
    mesh.add_producer("A", producer("q", 1));
    mesh.add_producer("A", producer("q", 1));
    mesh.run_for(Duration::from_secs(1));
    mesh.add_producer("A", producer("q", 20));
    mesh.run_for(Duration::from_secs(10));
    // Fails: "c3 has 20 messages not done (credit 0, unsettled []);
    // credit parked on idle links: c1 (done) holds 2, c2 (done) holds 2".
    assert_settled(&mut mesh);
}
