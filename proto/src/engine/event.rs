//! What the engine reports to its user.

use bytes::Bytes;

use super::{LinkId, SessionId};
use crate::codec::{Fields, Str, Symbols};
use crate::definitions::{
    Attach, DeliveryState, Error, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo, Source,
    TargetTerminus,
};

/// Something that happened on the connection. Drain with
/// [`Connection::poll_event`](super::Connection::poll_event).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// SASL finished successfully (server side: the peer authenticated as
    /// `user`, `None` for ANONYMOUS).
    Authenticated {
        /// The mechanism used.
        mechanism: String,
        /// The authenticated user, if the mechanism names one.
        user: Option<String>,
    },
    /// Server: the peer chose `mechanism`, one we offer other than
    /// ANONYMOUS (AMQP 1.0 §5.3.3.2). Answer with
    /// [`sasl_challenge`](super::Connection::sasl_challenge),
    /// [`sasl_accept`](super::Connection::sasl_accept) or
    /// [`sasl_refuse`](super::Connection::sasl_refuse); input waits
    /// until then.
    SaslInit {
        /// The mechanism.
        mechanism: String,
        /// The initial response (e.g. PLAIN's `\0user\0password`).
        initial_response: Option<Bytes>,
        /// The host name the client asked for.
        hostname: Option<Str>,
    },
    /// Server: the peer's answer to our challenge (AMQP 1.0 §5.3.3.4);
    /// answer as for [`SaslInit`](Event::SaslInit).
    SaslResponse {
        /// The response.
        response: Bytes,
    },
    /// The peer's open arrived: the connection is usable.
    Opened {
        /// The peer's container id.
        container_id: Str,
        /// The host the peer asked for (a virtual host, to a router).
        hostname: Option<Str>,
        /// The peer's offered capabilities.
        offered_capabilities: Option<Symbols>,
        /// The peer's connection properties.
        properties: Option<Fields>,
    },
    /// A session began: the peer's begin answered ours, or the peer began
    /// one (the engine answers it).
    SessionBegun {
        /// The session.
        session: SessionId,
        /// Whether the peer initiated it.
        remote: bool,
    },
    /// The session ended (its links are reported detached first).
    SessionEnded {
        /// The session.
        session: SessionId,
        /// The peer's error, if it gave one.
        error: Option<Error>,
    },
    /// The peer attached a link; answer with
    /// [`accept_attach`](super::Connection::accept_attach) or
    /// [`refuse_attach`](super::Connection::refuse_attach).
    AttachRequested {
        /// The new link (its role is the opposite of `attach.role`).
        link: LinkId,
        /// The session it belongs to.
        session: SessionId,
        /// The peer's attach.
        attach: Box<Attach>,
    },
    /// The peer answered our attach.
    Attached {
        /// The link.
        link: LinkId,
        /// The peer's attach (a null source or target means the peer
        /// refused; a detach follows).
        attach: Box<Attach>,
    },
    /// The link detached: by the peer (the engine answers), or in answer to
    /// ours, or because its session ended.
    Detached {
        /// The link.
        link: LinkId,
        /// Whether the link was closed rather than only detached.
        closed: bool,
        /// The peer's error, if any.
        error: Option<Error>,
    },
    /// A sending link's credit changed (the peer sent a flow).
    Credit {
        /// The link.
        link: LinkId,
        /// Credit now available to send.
        credit: u32,
        /// The link-credit the flow stated: the receiver's window, which
        /// counts deliveries on their way to it as credit still (`credit`
        /// does not).
        granted: u32,
        /// Whether the peer asked us to drain (use up the credit or give it
        /// back with [`drained`](super::Connection::drained)).
        drain: bool,
    },
    /// The sender of a receiving link told how many deliveries wait for
    /// credit (the `available` of its flow, AMQP 1.0 §2.6.7), a number
    /// other than it last told.
    Available {
        /// The link.
        link: LinkId,
        /// Deliveries waiting at the sender.
        available: u32,
    },
    /// A receiving link's drain completed: the peer used up or returned
    /// the credit.
    Drained {
        /// The link.
        link: LinkId,
    },
    /// A transfer frame arrived on a receiving link.
    Transfer(IncomingTransfer),
    /// The peer changed the state of one of our deliveries (sending link)
    /// or settled one of its deliveries (receiving link).
    Disposition {
        /// The link the delivery is on.
        link: LinkId,
        /// The delivery id.
        delivery: SequenceNo,
        /// The new state, if the peer gave one.
        state: Option<DeliveryState>,
        /// Whether the peer settled it.
        settled: bool,
    },
    /// The connection is finished; nothing more will happen. `error` is
    /// the peer's close error, or the one we closed with.
    Closed {
        /// The error, if the close carried one.
        error: Option<Error>,
        /// Whether the peer initiated the close (or vanished).
        by_peer: bool,
    },
}

/// One transfer frame of a delivery on a receiving link. A delivery that
/// spans frames arrives as several, the last with `more == false`; the
/// payloads concatenate to the message.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingTransfer {
    /// The link.
    pub link: LinkId,
    /// The delivery id.
    pub delivery: SequenceNo,
    /// The delivery tag (on every frame, copied from the first).
    pub tag: Bytes,
    /// Whether this is the delivery's first frame.
    pub first: bool,
    /// More frames of this delivery follow.
    pub more: bool,
    /// The sender settled the delivery (at-most-once).
    pub settled: bool,
    /// The sender aborted the delivery: discard what arrived of it.
    pub aborted: bool,
    /// The message format (0: AMQP message).
    pub message_format: u32,
    /// First frame only: the delivery came on credit we had taken back
    /// (sent before our lower grant reached the sender, AMQP 1.0 §2.6.7).
    pub revoked: bool,
    /// The bytes in this frame (a slice of the input buffer).
    pub payload: Bytes,
}

/// What to attach: the local half of an attach.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkSpec {
    /// The link name, unique for this container pair and direction.
    pub name: String,
    /// Our role.
    pub role: Role,
    /// The source terminus.
    pub source: Option<Source>,
    /// The target terminus.
    pub target: Option<TargetTerminus>,
    /// Sender settle mode.
    pub snd_settle_mode: SenderSettleMode,
    /// Receiver settle mode.
    pub rcv_settle_mode: ReceiverSettleMode,
    /// Largest message we accept (receiver), if limited.
    pub max_message_size: Option<u64>,
    /// Link properties.
    pub properties: Option<Fields>,
    /// Capabilities offered.
    pub offered_capabilities: Option<Symbols>,
    /// Capabilities desired.
    pub desired_capabilities: Option<Symbols>,
    /// Receiver: take transfers beyond the credit granted instead of
    /// detaching the link with `transfer-limit-exceeded` (AMQP 1.0
    /// §2.6.7 forbids them). For peers known to overshoot: RabbitMQ
    /// 3.x's AMQP 1.0 plugin computes its credit from a delivery count
    /// that lags what its queue has already handed it, so it sends a few
    /// more than granted now and then.
    pub tolerate_overshoot: bool,
}
