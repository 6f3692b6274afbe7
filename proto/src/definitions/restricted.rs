//! Restricted types (AMQP 1.0 §1.3): a base type limited to some values or
//! given a meaning. Each is a newtype or enum so a handle cannot be passed
//! where a delivery id is meant.

use bytes::BytesMut;

use crate::codec::{Decode, DecodeError, DecodeResult, Decoder, Encode, Symbol};

/// A link handle, unique per session and direction (AMQP 1.0 §2.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Handle(pub u32);

/// A 32-bit serial number, compared with RFC 1982 arithmetic: delivery ids,
/// transfer ids and delivery counts all wrap (AMQP 1.0 §2.8.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SequenceNo(pub u32);

impl SequenceNo {
    /// `self + n`, wrapping.
    pub fn wrapping_add(self, n: u32) -> Self {
        Self(self.0.wrapping_add(n))
    }
    /// `self - other` as a distance, wrapping.
    pub fn distance_from(self, other: SequenceNo) -> u32 {
        self.0.wrapping_sub(other.0)
    }
    /// Whether `self` comes before `other` in serial order.
    pub fn precedes(self, other: SequenceNo) -> bool {
        self != other && other.0.wrapping_sub(self.0) < 1 << 31
    }
}

macro_rules! newtype_codec {
    ($t:ident, $inner:ty) => {
        impl Decode for $t {
            fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
                <$inner>::decode_body(code, d).map($t)
            }
        }
        impl Encode for $t {
            fn encode(&self, buf: &mut BytesMut) {
                self.0.encode(buf)
            }
        }
    };
}
newtype_codec!(Handle, u32);
newtype_codec!(SequenceNo, u32);

/// Declares an enum restricted from a base type, with its wire values.
macro_rules! restricted_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $base:ty, $ty_name:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $val:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )* }

        impl Decode for $name {
            fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
                let v = <$base>::decode_body(code, d)?;
                $( if v == $val { return Ok($name::$variant); } )*
                Err(DecodeError::InvalidValue { ty: $ty_name, value: format!("{v:?}") })
            }
        }
        impl Encode for $name {
            fn encode(&self, buf: &mut BytesMut) {
                let v: $base = match self { $( $name::$variant => $val, )* };
                v.encode(buf)
            }
        }
    };
}

restricted_enum! {
    /// Which end of a link (AMQP 1.0 §2.8.1).
    #[derive(Default)]
    pub enum Role: bool, "role" {
        /// Sends messages.
        #[default]
        Sender = false,
        /// Receives messages.
        Receiver = true,
    }
}

restricted_enum! {
    /// How the sender settles (AMQP 1.0 §2.8.2).
    #[derive(Default)]
    pub enum SenderSettleMode: u8, "sender-settle-mode" {
        /// Every delivery is sent unsettled.
        Unsettled = 0,
        /// Every delivery is sent settled (at most once).
        Settled = 1,
        /// Either, per delivery.
        #[default]
        Mixed = 2,
    }
}

restricted_enum! {
    /// How the receiver settles (AMQP 1.0 §2.8.3).
    #[derive(Default)]
    pub enum ReceiverSettleMode: u8, "receiver-settle-mode" {
        /// The receiver settles as soon as it has an outcome.
        #[default]
        First = 0,
        /// The receiver settles after the sender has.
        Second = 1,
    }
}

restricted_enum! {
    /// What state a terminus keeps durably (AMQP 1.0 §3.5.5).
    #[derive(Default)]
    pub enum TerminusDurability: u32, "terminus-durability" {
        /// Nothing.
        #[default]
        None = 0,
        /// The terminus' configuration.
        Configuration = 1,
        /// Configuration and unsettled state.
        UnsettledState = 2,
    }
}

restricted_enum! {
    /// The outcome of a SASL exchange (AMQP 1.0 §5.3.3.6).
    #[derive(Default)]
    pub enum SaslCode: u8, "sasl-code" {
        /// Authenticated.
        #[default]
        Ok = 0,
        /// Bad credentials.
        Auth = 1,
        /// A system error.
        Sys = 2,
        /// A permanent system error.
        SysPerm = 3,
        /// A transient system error.
        SysTemp = 4,
    }
}

/// When an expiring terminus expires (AMQP 1.0 §3.5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TerminusExpiryPolicy {
    /// When the link detaches.
    LinkDetach,
    /// When the session ends (the default).
    #[default]
    SessionEnd,
    /// When the connection closes.
    ConnectionClose,
    /// Never.
    Never,
}

impl TerminusExpiryPolicy {
    fn symbol(self) -> &'static str {
        match self {
            Self::LinkDetach => "link-detach",
            Self::SessionEnd => "session-end",
            Self::ConnectionClose => "connection-close",
            Self::Never => "never",
        }
    }
}

impl Decode for TerminusExpiryPolicy {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        let s = Symbol::decode_body(code, d)?;
        Ok(match s.as_str() {
            "link-detach" => Self::LinkDetach,
            "session-end" => Self::SessionEnd,
            "connection-close" => Self::ConnectionClose,
            "never" => Self::Never,
            other => {
                return Err(DecodeError::InvalidValue {
                    ty: "terminus-expiry-policy",
                    value: other.to_string(),
                });
            }
        })
    }
}
impl Encode for TerminusExpiryPolicy {
    fn encode(&self, buf: &mut BytesMut) {
        Symbol::from_static(self.symbol()).encode(buf)
    }
}
