//! Source and target termini (AMQP 1.0 §3.5), and the transaction
//! coordinator target (§4.5.1), which the router recognises only to refuse.

use bytes::BytesMut;

use super::{DeliveryState, TerminusDurability, TerminusExpiryPolicy};
use crate::codec::{
    Decode, DecodeError, DecodeResult, Decoder, Descriptor, Encode, Fields, Map, Str, Symbol,
    Symbols,
};

crate::composite! {
    /// Where messages come from (AMQP 1.0 §3.5.3).
    pub struct Source("amqp:source:list", 0x28) {
        /// The node's address.
        pub address: Option<Str>,
        /// What is kept durably (default none).
        pub durable: Option<TerminusDurability>,
        /// When the terminus expires (default session-end).
        pub expiry_policy: Option<TerminusExpiryPolicy>,
        /// Seconds before expiry once the policy triggers (default 0).
        pub timeout: Option<u32>,
        /// Ask the peer to create a node and assign its address.
        pub dynamic: Option<bool>,
        /// Properties of the dynamic node.
        pub dynamic_node_properties: Option<Fields>,
        /// `move` (competing consumers) or `copy` (browse).
        pub distribution_mode: Option<Symbol>,
        /// Filters on the messages to transfer.
        pub filter: Option<Map>,
        /// Outcome for deliveries settled without one.
        pub default_outcome: Option<DeliveryState>,
        /// Outcomes the source supports.
        pub outcomes: Option<Symbols>,
        /// Extension capabilities.
        pub capabilities: Option<Symbols>,
    }
}

crate::composite! {
    /// Where messages go (AMQP 1.0 §3.5.4).
    pub struct Target("amqp:target:list", 0x29) {
        /// The node's address.
        pub address: Option<Str>,
        /// What is kept durably (default none).
        pub durable: Option<TerminusDurability>,
        /// When the terminus expires (default session-end).
        pub expiry_policy: Option<TerminusExpiryPolicy>,
        /// Seconds before expiry once the policy triggers (default 0).
        pub timeout: Option<u32>,
        /// Ask the peer to create a node and assign its address.
        pub dynamic: Option<bool>,
        /// Properties of the dynamic node.
        pub dynamic_node_properties: Option<Fields>,
        /// Extension capabilities.
        pub capabilities: Option<Symbols>,
    }
}

crate::composite! {
    /// The target of a link to a transaction coordinator (AMQP 1.0 §4.5.1).
    pub struct Coordinator("amqp:coordinator:list", 0x30) {
        /// Transaction capabilities asked for.
        pub capabilities: Option<Symbols>,
    }
}

impl Source {
    /// A source for `address`.
    pub fn new(address: impl Into<Str>) -> Self {
        Self {
            address: Some(address.into()),
            ..Self::default()
        }
    }
}

impl Target {
    /// A target for `address`.
    pub fn new(address: impl Into<Str>) -> Self {
        Self {
            address: Some(address.into()),
            ..Self::default()
        }
    }
}

/// The target field of an attach: a node, or a transaction coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetTerminus {
    /// An ordinary target.
    Target(Target),
    /// A transaction coordinator.
    Coordinator(Coordinator),
}

impl Decode for TargetTerminus {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        let mut peek = d.clone();
        let descriptor = if code == crate::codec::format::DESCRIBED {
            Some(peek.read_descriptor()?)
        } else {
            None
        };
        let coordinator = match descriptor {
            Some(Descriptor::Code(c)) => c == Coordinator::CODE,
            Some(Descriptor::Symbol(s)) => s.as_str() == Coordinator::NAME,
            None => false,
        };
        if coordinator {
            Coordinator::decode_body(code, d).map(TargetTerminus::Coordinator)
        } else {
            Target::decode_body(code, d).map(TargetTerminus::Target)
        }
        .map_err(|e| match e {
            DecodeError::UnexpectedDescriptor { found, .. } => DecodeError::UnexpectedDescriptor {
                expected: "target or coordinator",
                found,
            },
            e => e,
        })
    }
}

impl Encode for TargetTerminus {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            TargetTerminus::Target(t) => t.encode(buf),
            TargetTerminus::Coordinator(c) => c.encode(buf),
        }
    }
}
