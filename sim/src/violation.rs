//! What an invariant check reports when it fails.

use std::fmt;
use std::time::Duration;

use crate::clock::VTime;

/// The invariants the simulator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// A producer got `accepted` (or `rejected`) that no consumer gave.
    OutcomeWithoutConsumer,
    /// A producer got `released` for a delivery a consumer got and did
    /// not release ("released" promises it was not processed).
    ReleasedAfterSettlement,
    /// A producer got `released` or `modified` for a delivery a consumer
    /// accepted (or rejected) while nothing failed in the mesh: the
    /// consumer's outcome was lost on its way back (issue #19).
    FalseOutcome,
    /// A consumer got the same delivery twice (or a multicast consumer
    /// the same message twice, or a pre-settled message arrived twice).
    Duplicate,
    /// A consumer got a message no producer sent, or with other bytes.
    Phantom,
    /// A message passed through a router twice.
    Loop,
    /// A consumer got a message from a producer of another virtual host
    /// (tenants must never meet).
    Isolation,
    /// A router holds more deliveries than it granted credit for, or a
    /// producer has more bytes in flight than its budget.
    Buffer,
    /// A producer holds credit with no consumer reachable.
    Credit,
    /// A routing table disagrees with the shortest paths of the true
    /// topology once the mesh has settled.
    Paths,
    /// A routing table's address view disagrees with where consumers are.
    Addresses,
    /// One of the mesh's own AMQP endpoints (routers and the simulator's
    /// clients, all `ferry_proto` engines) told its peer that the peer
    /// broke the protocol: a detach, end or close with a condition such as
    /// `amqp:link:transfer-limit-exceeded` or
    /// `amqp:session:unattached-handle`.
    Protocol,
    /// A router declared a neighbour lost (it left its two-way
    /// neighbours: connection dropped, or HELLOs aged out or stopped
    /// listing it) while their link delivered frames both ways within
    /// the silence limit and nothing disturbed it: a busy link taken for
    /// a dead one (issue #17).
    NeighbourLoss,
    /// Something that must finish did not (messages never settled, a mesh
    /// that never converges, a step that never quiesces).
    Liveness,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::OutcomeWithoutConsumer => "outcome-without-consumer",
            Invariant::ReleasedAfterSettlement => "released-after-settlement",
            Invariant::FalseOutcome => "false-outcome",
            Invariant::Duplicate => "duplicate",
            Invariant::Phantom => "phantom",
            Invariant::Loop => "loop",
            Invariant::Isolation => "isolation",
            Invariant::Buffer => "buffer-bound",
            Invariant::Credit => "credit-without-consumer",
            Invariant::Paths => "paths",
            Invariant::Addresses => "addresses",
            Invariant::Protocol => "protocol",
            Invariant::NeighbourLoss => "false-neighbour-loss",
            Invariant::Liveness => "liveness",
        })
    }
}

/// A failed invariant, when, and the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{}] invariant {invariant} violated: {detail}", VTime(*at))]
pub struct Violation {
    /// Virtual time of the failure.
    pub at: Duration,
    /// Which invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` at `at`.
    pub fn new(at: Duration, invariant: Invariant, detail: impl Into<String>) -> Self {
        Self {
            at,
            invariant,
            detail: detail.into(),
        }
    }
}
