//! The `error` type and the error conditions AMQP 1.0 defines (§2.8.14–2.8.18).

use crate::codec::{Fields, Str, Symbol};

/// An error condition: a symbol, one of [`condition`]'s or a
/// vendor-defined one.
pub type ErrorCondition = Symbol;

crate::composite! {
    /// Details of an error (AMQP 1.0 §2.8.14), carried by close, end, detach
    /// and the rejected outcome.
    pub struct Error("amqp:error:list", 0x1d) {
        /// What went wrong, e.g. [`condition::DECODE_ERROR`].
        pub condition: ErrorCondition,
        /// Human-readable detail.
        pub description: Option<Str>,
        /// Machine-readable detail.
        pub info: Option<Fields>,
    }
}

impl Error {
    /// An error with a condition and a description.
    pub fn new(condition: ErrorCondition, description: impl Into<Str>) -> Self {
        Self {
            condition,
            description: Some(description.into()),
            info: None,
        }
    }
}

/// The error condition symbols of AMQP 1.0 (§2.8.15–2.8.18).
pub mod condition {
    use super::ErrorCondition;

    macro_rules! conditions {
        ($( $(#[$m:meta])* $name:ident = $sym:literal ),* $(,)?) => {
            $( $(#[$m])* pub const $name: ErrorCondition = ErrorCondition::from_static($sym); )*
        };
    }

    conditions! {
        /// An internal error occurred.
        INTERNAL_ERROR = "amqp:internal-error",
        /// A peer tried to use a node that does not exist.
        NOT_FOUND = "amqp:not-found",
        /// A peer lacks the permission for an action.
        UNAUTHORIZED_ACCESS = "amqp:unauthorized-access",
        /// Data could not be decoded.
        DECODE_ERROR = "amqp:decode-error",
        /// A peer exceeded its resource allocation.
        RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded",
        /// A peer tried something it is not allowed to.
        NOT_ALLOWED = "amqp:not-allowed",
        /// An invalid field was passed in a frame body.
        INVALID_FIELD = "amqp:invalid-field",
        /// The peer tried to use a feature we do not implement.
        NOT_IMPLEMENTED = "amqp:not-implemented",
        /// A resource is locked.
        RESOURCE_LOCKED = "amqp:resource-locked",
        /// A precondition failed.
        PRECONDITION_FAILED = "amqp:precondition-failed",
        /// A resource was deleted.
        RESOURCE_DELETED = "amqp:resource-deleted",
        /// A frame arrived in a state that does not allow it.
        ILLEGAL_STATE = "amqp:illegal-state",
        /// A frame had to be larger than the negotiated maximum frame size.
        FRAME_SIZE_TOO_SMALL = "amqp:frame-size-too-small",
        /// An operator closed the connection.
        CONNECTION_FORCED = "amqp:connection:forced",
        /// A frame was malformed (bad size, type, or channel).
        FRAMING_ERROR = "amqp:connection:framing-error",
        /// The container is elsewhere.
        CONNECTION_REDIRECT = "amqp:connection:redirect",
        /// A transfer arrived outside the session's incoming window.
        WINDOW_VIOLATION = "amqp:session:window-violation",
        /// A link in the session misbehaved.
        ERRANT_LINK = "amqp:session:errant-link",
        /// An attach used a handle already in use.
        HANDLE_IN_USE = "amqp:session:handle-in-use",
        /// A frame used a handle that is not attached.
        UNATTACHED_HANDLE = "amqp:session:unattached-handle",
        /// An operator detached the link.
        DETACH_FORCED = "amqp:link:detach-forced",
        /// The peer sent more messages than it had credit for.
        TRANSFER_LIMIT_EXCEEDED = "amqp:link:transfer-limit-exceeded",
        /// A message was larger than the link's maximum message size.
        MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded",
        /// The node is elsewhere.
        LINK_REDIRECT = "amqp:link:redirect",
        /// Another link took over this link's name.
        STOLEN = "amqp:link:stolen",
    }
}
