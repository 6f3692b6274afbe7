//! Delivery states and outcomes (AMQP 1.0 §3.4).

use bytes::BytesMut;

use super::Error;
use crate::codec::{Decode, DecodeError, DecodeResult, Decoder, Descriptor, Encode, Fields};

crate::composite! {
    /// Partial receipt, for resuming a delivery (AMQP 1.0 §3.4.1).
    pub struct Received("amqp:received:list", 0x23) {
        /// The section being received.
        pub section_number: u32,
        /// The offset within it.
        pub section_offset: u64,
    }
}

crate::composite! {
    /// The receiver processed the message (AMQP 1.0 §3.4.2).
    pub struct Accepted("amqp:accepted:list", 0x24) {}
}

crate::composite! {
    /// The message is invalid and will not be processed (AMQP 1.0 §3.4.3).
    pub struct Rejected("amqp:rejected:list", 0x25) {
        /// Why.
        pub error: Option<Error>,
    }
}

crate::composite! {
    /// The message was not processed and may be redelivered (AMQP 1.0 §3.4.4).
    pub struct Released("amqp:released:list", 0x26) {}
}

crate::composite! {
    /// The message was not processed; redeliver with changes (AMQP 1.0 §3.4.5).
    pub struct Modified("amqp:modified:list", 0x27) {
        /// Count this attempt as failed (increment the delivery count).
        pub delivery_failed: Option<bool>,
        /// Do not redeliver to this receiver.
        pub undeliverable_here: Option<bool>,
        /// Annotations to merge into the message.
        pub message_annotations: Option<Fields>,
    }
}

/// The state of a delivery as one end sees it: an outcome, or partial
/// receipt (AMQP 1.0 §3.4). Transactional states are not supported.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryState {
    /// Partially received.
    Received(Received),
    /// Accepted (terminal).
    Accepted,
    /// Rejected (terminal).
    Rejected(Rejected),
    /// Released (terminal).
    Released,
    /// Modified (terminal).
    Modified(Modified),
}

impl DeliveryState {
    /// Whether the state is an outcome (everything but `received`).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, DeliveryState::Received(_))
    }
}

impl Decode for DeliveryState {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        if code != crate::codec::format::DESCRIBED {
            return Err(DecodeError::UnexpectedFormat {
                expected: "delivery-state",
                found: code,
            });
        }
        let descriptor = d.read_descriptor()?;
        let code = match &descriptor {
            Descriptor::Code(c) => *c,
            Descriptor::Symbol(s) => match s.as_str() {
                Received::NAME => Received::CODE,
                Accepted::NAME => Accepted::CODE,
                Rejected::NAME => Rejected::CODE,
                Released::NAME => Released::CODE,
                Modified::NAME => Modified::CODE,
                _ => u64::MAX,
            },
        };
        Ok(match code {
            Received::CODE => DeliveryState::Received(Received::decode_fields(d)?),
            Accepted::CODE => {
                Accepted::decode_fields(d)?;
                DeliveryState::Accepted
            }
            Rejected::CODE => DeliveryState::Rejected(Rejected::decode_fields(d)?),
            Released::CODE => {
                Released::decode_fields(d)?;
                DeliveryState::Released
            }
            Modified::CODE => DeliveryState::Modified(Modified::decode_fields(d)?),
            _ => {
                return Err(DecodeError::UnexpectedDescriptor {
                    expected: "delivery-state",
                    found: descriptor.to_string(),
                });
            }
        })
    }
}

impl Encode for DeliveryState {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            DeliveryState::Received(r) => r.encode(buf),
            DeliveryState::Accepted => Accepted {}.encode(buf),
            DeliveryState::Rejected(r) => r.encode(buf),
            DeliveryState::Released => Released {}.encode(buf),
            DeliveryState::Modified(m) => m.encode(buf),
        }
    }
}
