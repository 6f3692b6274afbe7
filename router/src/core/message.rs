//! What connection tasks tell each other: deliveries forwarded to a
//! consumer, outcomes travelling back to the producer, credit changes.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use ferry_proto::definitions::{DeliveryState, Modified, SequenceNo};
use ferry_proto::engine::LinkId;

/// Identifies a connection task across the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The way to reach a connection task. The channel is unbounded because
/// what flows on it is bounded elsewhere: deliveries by the consumer's
/// credit, their bytes by the producers' byte budgets, outcomes by the
/// producer's credit, credit notices by links.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Which connection.
    pub id: ConnId,
    /// Its inbox.
    pub tx: super::Outbox<ToConn>,
}

impl ConnHandle {
    /// Posts to the connection; if it has gone, what needed an answer
    /// gets one ([`ToConn::bounce`]).
    pub fn post(&self, msg: ToConn) {
        if let Err(msg) = self.tx.send(msg) {
            msg.bounce();
        }
    }
}

impl ToConn {
    /// Answers what a message to a connection that has gone (or went
    /// before reading it) leaves unanswered: a delivery it was to send
    /// goes back to its producer `released` — never sent, so never
    /// delivered (AMQP 1.0 §3.4.4) — rather than being dropped with no
    /// outcome at all. Nothing else needs one: the connection's teardown
    /// settled what it had sent, and outcomes for its producers have
    /// nobody left to reach.
    pub fn bounce(self) {
        if let ToConn::Deliver {
            delivery: Forwarded {
                origin: Some(o), ..
            },
            ..
        } = self
        {
            o.settle(DeliveryState::Released);
        }
    }
}

/// A message to a connection task.
#[derive(Debug)]
pub enum ToConn {
    /// Send (the first frame of) a delivery on one of your consumer links.
    Deliver {
        /// The consumer link.
        link: LinkId,
        /// The delivery.
        delivery: Forwarded,
    },
    /// The next frame of a delivery started with [`ToConn::Deliver`].
    Continue {
        /// The consumer link.
        link: LinkId,
        /// Identifies the delivery: its origin key.
        key: StreamKey,
        /// The bytes.
        payload: Bytes,
        /// More frames follow.
        more: bool,
        /// The producer aborted the delivery.
        aborted: bool,
        /// Held against the producer's byte budget until sent on.
        charge: Option<super::Charge>,
        /// The delivery's priority ([`Forwarded::priority`]): its frames
        /// wait in the same queue as its first.
        priority: u8,
    },
    /// The outcome of a delivery your producer link sent.
    Settle {
        /// The producer link.
        link: LinkId,
        /// The producer's delivery id.
        delivery: SequenceNo,
        /// The consumer's outcome.
        state: DeliveryState,
    },
    /// Consumer credit for the address of your producer link changed:
    /// recompute its credit.
    Recredit {
        /// The producer link.
        link: LinkId,
    },
    /// Producers this data link serves wait for credit on this router, or
    /// no longer do: tell the neighbour (the link's `available`).
    Demand {
        /// The consumer link (a data link to a neighbour).
        link: LinkId,
        /// Whether producers wait.
        waiting: bool,
    },
    /// Send this routing protocol message to your peer router.
    Control(crate::routing::ControlMessage),
    /// The routing table changed: bring your data links up to date.
    PathsChanged,
    /// Edge router's uplink: this router's clients' links on `address`
    /// changed; bring the uplink's links for it up to date.
    UplinkAddress {
        /// The address.
        address: String,
    },
    /// The tenants' policy was reloaded: detach the links your client may
    /// no longer use.
    PolicyChanged,
    /// To a broker's connection: which brokered addresses have producers or
    /// consumers in the mesh changed; attach or detach their links.
    BrokerDemand,
    /// Management asks what the connection and its links are doing.
    Report(tokio::sync::oneshot::Sender<super::ConnReport>),
}

/// Identifies a delivery in flight across frames: producer connection,
/// link and delivery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The producer's connection.
    pub conn: ConnId,
    /// The producer's link.
    pub link: LinkId,
    /// The producer's delivery id.
    pub delivery: SequenceNo,
}

/// A delivery on its way to a consumer.
#[derive(Debug)]
pub struct Forwarded {
    /// The message bytes (or the first frame's, if `more`).
    pub payload: Bytes,
    /// More frames follow ([`ToConn::Continue`]).
    pub more: bool,
    /// Pre-settled by the producer: forward settled, nobody to tell.
    pub settled: bool,
    /// Where the outcome goes, for unsettled deliveries.
    pub origin: Option<Origin>,
    /// Identifies the delivery across frames.
    pub key: StreamKey,
    /// Drop the message (rejecting it to its producer) if it is still in
    /// the router at this time.
    pub expires: Option<Instant>,
    /// Held against the producer's byte budget until sent on.
    pub charge: Option<super::Charge>,
    /// How to send it elsewhere if it cannot be delivered here.
    pub retry: Option<Retry>,
    /// If the consumer's link has no credit, wait for it rather than give
    /// the delivery back: it was promised credit (a multicast copy; an
    /// anycast delivery sent on credit the router granted, see
    /// `Address::route`).
    pub wait: bool,
    /// `header.priority` (AMQP 1.0 §3.2.1, 0 to 9): where deliveries wait
    /// in the router, a higher one goes first (see `core::priority`).
    pub priority: u8,
}

/// What a consumer's task needs to send a delivery to another consumer
/// when its own releases it or is gone: no needless bounce back to the
/// producer. Only complete, unsettled anycast deliveries have one.
#[derive(Debug, Clone)]
pub struct Retry {
    /// The address it was routed by.
    pub address: std::sync::Arc<super::Address>,
    /// Where it came from (decides which consumers may take it).
    pub from: super::Hop,
    /// The message as it reached this router.
    pub payload: Bytes,
    /// Consumers tried so far.
    pub attempts: u8,
    /// Its priority ([`Forwarded::priority`]).
    pub priority: u8,
}

/// The producer side of an unsettled delivery: where its outcome goes.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The producer's connection.
    pub conn: ConnHandle,
    /// The producer's link.
    pub link: LinkId,
    /// The producer's delivery id.
    pub delivery: SequenceNo,
    /// For multicast: the copies whose outcomes are combined.
    pub fanout: Option<Arc<Fanout>>,
}

impl Origin {
    /// Reports a copy's outcome. For anycast it goes straight back; for
    /// multicast, once every copy has one, the combined outcome does.
    pub fn settle(&self, state: DeliveryState) {
        let state = match &self.fanout {
            None => Some(state),
            Some(f) => f.record(state),
        };
        if let Some(state) = state {
            self.conn.post(ToConn::Settle {
                link: self.link,
                delivery: self.delivery,
                state,
            });
        }
    }
}

/// The outcomes of a multicast delivery's copies, combined once all are
/// in. Precedence (highest wins): rejected > accepted > modified > released,
/// so a producer learns of any consumer that found the message invalid,
/// and otherwise that it was accepted if any consumer accepted it.
#[derive(Debug)]
pub struct Fanout {
    inner: Mutex<(usize, Option<DeliveryState>)>,
}

impl Fanout {
    /// Tracks `copies` outcomes.
    pub fn new(copies: usize) -> Self {
        Self {
            inner: Mutex::new((copies, None)),
        }
    }

    /// Records one copy's outcome; returns the combined outcome when it was
    /// the last.
    pub fn record(&self, state: DeliveryState) -> Option<DeliveryState> {
        let mut g = self.inner.lock().expect("fanout lock");
        let best = match g.1.take() {
            Some(prev) if rank(&prev) >= rank(&state) => prev,
            _ => state,
        };
        g.0 = g.0.saturating_sub(1);
        if g.0 == 0 {
            Some(best)
        } else {
            g.1 = Some(best);
            None
        }
    }
}

fn rank(s: &DeliveryState) -> u8 {
    match s {
        DeliveryState::Rejected(_) => 4,
        DeliveryState::Accepted => 3,
        DeliveryState::Modified(_) => 2,
        DeliveryState::Released | DeliveryState::Received(_) => 1,
    }
}

/// The outcome for a delivery that reached a consumer whose fate is then
/// unknown (link or connection lost): redeliverable, counted as a failed
/// attempt (AMQP 1.0 §3.4.5).
pub fn delivery_failed() -> DeliveryState {
    DeliveryState::Modified(Modified {
        delivery_failed: Some(true),
        ..Modified::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::definitions::Rejected;

    #[test]
    fn fanout_waits_for_every_copy_and_applies_precedence() {
        let f = Fanout::new(3);
        assert_eq!(f.record(DeliveryState::Released), None);
        assert_eq!(f.record(DeliveryState::Accepted), None);
        assert_eq!(f.record(delivery_failed()), Some(DeliveryState::Accepted));
        let f = Fanout::new(2);
        let rejected = DeliveryState::Rejected(Rejected::default());
        assert_eq!(f.record(rejected.clone()), None);
        assert_eq!(f.record(DeliveryState::Accepted), Some(rejected));
    }
}
