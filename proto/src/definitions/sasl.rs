//! SASL frames (AMQP 1.0 §5.3.3).

use bytes::{Bytes, BytesMut};

use super::SaslCode;
use crate::codec::{
    Decode, DecodeError, DecodeResult, Decoder, Descriptor, Encode, Str, Symbol, Symbols,
};

crate::composite! {
    /// The server's mechanisms (AMQP 1.0 §5.3.3.1).
    pub struct SaslMechanisms("amqp:sasl-mechanisms:list", 0x40) {
        /// Mechanisms the server supports.
        pub sasl_server_mechanisms: Symbols,
    }
}

crate::composite! {
    /// The client's chosen mechanism and first response (AMQP 1.0 §5.3.3.2).
    pub struct SaslInit("amqp:sasl-init:list", 0x41) {
        /// The mechanism.
        pub mechanism: Symbol,
        /// The initial response (e.g. PLAIN's `\0user\0password`).
        pub initial_response: Option<Bytes>,
        /// The host the client is connecting to.
        pub hostname: Option<Str>,
    }
}

crate::composite! {
    /// A server challenge (AMQP 1.0 §5.3.3.3).
    pub struct SaslChallenge("amqp:sasl-challenge:list", 0x42) {
        /// Challenge data.
        pub challenge: Bytes,
    }
}

crate::composite! {
    /// A client response (AMQP 1.0 §5.3.3.4).
    pub struct SaslResponse("amqp:sasl-response:list", 0x43) {
        /// Response data.
        pub response: Bytes,
    }
}

crate::composite! {
    /// The result of authentication (AMQP 1.0 §5.3.3.5).
    pub struct SaslOutcome("amqp:sasl-outcome:list", 0x44) {
        /// Success or why not.
        pub code: SaslCode,
        /// Additional data on success.
        pub additional_data: Option<Bytes>,
    }
}

/// Any SASL frame body.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum SaslFrame {
    Mechanisms(SaslMechanisms),
    Init(SaslInit),
    Challenge(SaslChallenge),
    Response(SaslResponse),
    Outcome(SaslOutcome),
}

impl Decode for SaslFrame {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        if code != crate::codec::format::DESCRIBED {
            return Err(DecodeError::UnexpectedFormat {
                expected: "sasl frame",
                found: code,
            });
        }
        let descriptor = d.read_descriptor()?;
        let code = match &descriptor {
            Descriptor::Code(c) => *c,
            Descriptor::Symbol(s) => match s.as_str() {
                SaslMechanisms::NAME => SaslMechanisms::CODE,
                SaslInit::NAME => SaslInit::CODE,
                SaslChallenge::NAME => SaslChallenge::CODE,
                SaslResponse::NAME => SaslResponse::CODE,
                SaslOutcome::NAME => SaslOutcome::CODE,
                _ => u64::MAX,
            },
        };
        Ok(match code {
            SaslMechanisms::CODE => SaslFrame::Mechanisms(SaslMechanisms::decode_fields(d)?),
            SaslInit::CODE => SaslFrame::Init(SaslInit::decode_fields(d)?),
            SaslChallenge::CODE => SaslFrame::Challenge(SaslChallenge::decode_fields(d)?),
            SaslResponse::CODE => SaslFrame::Response(SaslResponse::decode_fields(d)?),
            SaslOutcome::CODE => SaslFrame::Outcome(SaslOutcome::decode_fields(d)?),
            _ => {
                return Err(DecodeError::UnexpectedDescriptor {
                    expected: "sasl frame",
                    found: descriptor.to_string(),
                });
            }
        })
    }
}

impl Encode for SaslFrame {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            SaslFrame::Mechanisms(f) => f.encode(buf),
            SaslFrame::Init(f) => f.encode(buf),
            SaslFrame::Challenge(f) => f.encode(buf),
            SaslFrame::Response(f) => f.encode(buf),
            SaslFrame::Outcome(f) => f.encode(buf),
        }
    }
}
