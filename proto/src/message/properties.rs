//! The properties section (AMQP 1.0 §3.2.4) and the message-id types
//! (§3.2.11–3.2.15).

use bytes::{Bytes, BytesMut};

use crate::codec::{
    Decode, DecodeError, DecodeResult, Decoder, Encode, Str, Symbol, Timestamp, Uuid, format as fc,
};
use crate::definitions::SequenceNo;

/// A message or correlation id: one of the four types that provide
/// `message-id` (AMQP 1.0 §3.2.11–3.2.14).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// `message-id-ulong` (§3.2.11).
    Ulong(u64),
    /// `message-id-uuid` (§3.2.12).
    Uuid(Uuid),
    /// `message-id-binary` (§3.2.13).
    Binary(Bytes),
    /// `message-id-string` (§3.2.14).
    String(Str),
}

impl Decode for MessageId {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        Ok(match code {
            fc::ULONG | fc::SMALLULONG | fc::ULONG0 => MessageId::Ulong(u64::decode_body(code, d)?),
            fc::UUID => MessageId::Uuid(Uuid::decode_body(code, d)?),
            fc::VBIN8 | fc::VBIN32 => MessageId::Binary(Bytes::decode_body(code, d)?),
            fc::STR8 | fc::STR32 => MessageId::String(Str::decode_body(code, d)?),
            _ => {
                return Err(DecodeError::UnexpectedFormat {
                    expected: "message-id (ulong, uuid, binary or string)",
                    found: code,
                });
            }
        })
    }
}

impl Encode for MessageId {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            MessageId::Ulong(v) => v.encode(buf),
            MessageId::Uuid(v) => v.encode(buf),
            MessageId::Binary(v) => v.encode(buf),
            MessageId::String(v) => v.encode(buf),
        }
    }
}

impl From<u64> for MessageId {
    fn from(v: u64) -> Self {
        MessageId::Ulong(v)
    }
}

impl From<Uuid> for MessageId {
    fn from(v: Uuid) -> Self {
        MessageId::Uuid(v)
    }
}

impl From<Bytes> for MessageId {
    fn from(v: Bytes) -> Self {
        MessageId::Binary(v)
    }
}

impl From<Str> for MessageId {
    fn from(v: Str) -> Self {
        MessageId::String(v)
    }
}

impl From<&str> for MessageId {
    fn from(v: &str) -> Self {
        MessageId::String(v.into())
    }
}

crate::composite! {
    /// The immutable properties of the bare message (AMQP 1.0 §3.2.4).
    /// Addresses are `address-string`s (§3.2.16), the only type that
    /// provides `address`.
    pub struct Properties("amqp:properties:list", 0x73) {
        /// Application-assigned id, unique per message.
        pub message_id: Option<MessageId>,
        /// The identity of the user who produced the message.
        pub user_id: Option<Bytes>,
        /// The node the message is destined for: what the router routes on.
        pub to: Option<Str>,
        /// A summary, for the application.
        pub subject: Option<Str>,
        /// The node to send replies to.
        pub reply_to: Option<Str>,
        /// The id of the message this one relates to (e.g. answers).
        pub correlation_id: Option<MessageId>,
        /// MIME type of a `data` body (RFC 2046).
        pub content_type: Option<Symbol>,
        /// Content encoding of a `data` body (RFC 2616 §14.11).
        pub content_encoding: Option<Symbol>,
        /// When the message is considered expired.
        pub absolute_expiry_time: Option<Timestamp>,
        /// When the message was created.
        pub creation_time: Option<Timestamp>,
        /// The group the message belongs to.
        pub group_id: Option<Str>,
        /// The message's position in its group.
        pub group_sequence: Option<SequenceNo>,
        /// The group replies should belong to.
        pub reply_to_group_id: Option<Str>,
    }
}

/// Positions of the properties fields in the list (AMQP 1.0 §3.2.4), for
/// the lazy readers of [`MessageView`](super::MessageView).
pub(crate) mod field {
    pub const MESSAGE_ID: u32 = 0;
    pub const TO: u32 = 2;
    pub const SUBJECT: u32 = 3;
    pub const REPLY_TO: u32 = 4;
    pub const CORRELATION_ID: u32 = 5;
    pub const ABSOLUTE_EXPIRY_TIME: u32 = 8;
    pub const CREATION_TIME: u32 = 9;
    pub const GROUP_ID: u32 = 10;
}
