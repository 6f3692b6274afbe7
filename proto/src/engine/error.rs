//! Errors of engine commands: the caller asked for something the protocol
//! state does not allow. Protocol errors by the peer are not returned: the
//! engine closes the connection and reports them as events.

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The connection is closing or closed.
    #[error("connection is closed")]
    Closed,
    /// The connection is not open yet (commands that send frames wait for
    /// the open exchange to start).
    #[error("connection is not open yet")]
    NotOpen,
    /// A SASL decision was given while none was asked for.
    #[error("no SASL exchange awaits a decision")]
    NotDeciding,
    /// No such session, or it has ended.
    #[error("unknown or ended session")]
    UnknownSession,
    /// No such link, or it has detached.
    #[error("unknown or detached link")]
    UnknownLink,
    /// The link has the other role.
    #[error("link has the wrong role for this command")]
    WrongRole,
    /// A sender link has no credit.
    #[error("no link credit")]
    NoCredit,
    /// The link is still sending another delivery (`more` was set).
    #[error("another delivery on this link is incomplete")]
    DeliveryInProgress,
    /// No delivery with that id is in progress or unsettled on the link.
    #[error("unknown delivery")]
    UnknownDelivery,
    /// The peer's channel-max or handle-max leaves no free number.
    #[error("no free channel or handle")]
    Exhausted,
    /// The message exceeds the peer's max-message-size for the link.
    #[error("message of {size} bytes exceeds the link's max-message-size {max}")]
    MessageTooLarge {
        /// The message's size so far.
        size: u64,
        /// The limit.
        max: u64,
    },
}
