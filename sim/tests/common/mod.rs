//! Helpers shared by the scripted tests.
#![allow(dead_code)]

use std::time::Duration;

use ferry_sim::Mesh;
use ferry_sim::client::{ConsumerSpec, OutcomeWeights, ProducerSpec};

/// A consumer that accepts everything, 1 ms per message.
pub fn consumer(address: &str, credit: u32) -> ConsumerSpec {
    ConsumerSpec {
        address: address.into(),
        credit,
        delay: Duration::from_millis(1),
        outcomes: OutcomeWeights::ACCEPT_ALL,
        close_after: None,
    }
}

/// An unsettled producer, one message every 5 ms.
pub fn producer(address: &str, messages: u32) -> ProducerSpec {
    ProducerSpec {
        address: address.into(),
        messages,
        presettled: false,
        interval: Duration::from_millis(5),
        body_size: 32,
        anonymous: false,
    }
}

/// A converged mesh from a builder.
pub fn converged(mesh: Mesh) -> Mesh {
    let mut mesh = mesh;
    let took = mesh.run_until_converged(Duration::from_secs(10));
    assert!(took.is_some(), "no convergence\n{}", mesh.log().tail(60));
    mesh
}

/// Asserts the settled-state invariants, printing the log tail if not.
pub fn assert_settled(mesh: &mut Mesh) {
    if let Err(v) = mesh.check_settled() {
        panic!("{v}\n{}", mesh.log().tail(80));
    }
}

/// Asserts no invariant failed so far.
pub fn assert_ok(mesh: &Mesh) {
    if let Some(v) = mesh.failure() {
        panic!("{v}\n{}", mesh.log().tail(80));
    }
}
