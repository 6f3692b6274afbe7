//! The nine performatives of the transport layer (AMQP 1.0 §2.7).

use bytes::{Bytes, BytesMut};

use super::{
    DeliveryState, Error, Handle, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo, Source,
    TargetTerminus,
};
use crate::codec::{
    Decode, DecodeError, DecodeResult, Decoder, Descriptor, Encode, Fields, Map, Str, Symbols,
};

crate::composite! {
    /// Negotiates connection parameters (AMQP 1.0 §2.7.1).
    pub struct Open("amqp:open:list", 0x10) {
        /// The sender's container id.
        pub container_id: Str,
        /// The name of the host the sender is connecting to.
        pub hostname: Option<Str>,
        /// Largest frame the sender accepts (default 4294967295; min 512).
        pub max_frame_size: Option<u32>,
        /// Highest channel number the sender accepts (default 65535).
        pub channel_max: Option<u16>,
        /// The sender's idle timeout in milliseconds.
        pub idle_time_out: Option<u32>,
        /// Locales the sender may write in.
        pub outgoing_locales: Option<Symbols>,
        /// Locales the sender wants to read.
        pub incoming_locales: Option<Symbols>,
        /// Extensions the sender supports.
        pub offered_capabilities: Option<Symbols>,
        /// Extensions the sender may use.
        pub desired_capabilities: Option<Symbols>,
        /// Connection properties.
        pub properties: Option<Fields>,
    }
}

crate::composite! {
    /// Begins a session on a channel (AMQP 1.0 §2.7.2).
    pub struct Begin("amqp:begin:list", 0x11) {
        /// The peer's channel, when answering its begin.
        pub remote_channel: Option<u16>,
        /// The transfer-id of the sender's next transfer.
        pub next_outgoing_id: SequenceNo,
        /// How many transfers the sender will accept.
        pub incoming_window: u32,
        /// How many transfers the sender may send.
        pub outgoing_window: u32,
        /// Highest handle the sender accepts (default 4294967295).
        pub handle_max: Option<Handle>,
        /// Extensions the sender supports.
        pub offered_capabilities: Option<Symbols>,
        /// Extensions the sender may use.
        pub desired_capabilities: Option<Symbols>,
        /// Session properties.
        pub properties: Option<Fields>,
    }
}

crate::composite! {
    /// Attaches a link to a session (AMQP 1.0 §2.7.3).
    pub struct Attach("amqp:attach:list", 0x12) {
        /// The link's name, unique per container pair and direction.
        pub name: Str,
        /// The sender's handle for the link.
        pub handle: Handle,
        /// The sender's role on the link.
        pub role: Role,
        /// Settlement policy for the sender (default mixed).
        pub snd_settle_mode: Option<SenderSettleMode>,
        /// Settlement policy for the receiver (default first).
        pub rcv_settle_mode: Option<ReceiverSettleMode>,
        /// The source terminus.
        pub source: Option<Source>,
        /// The target terminus.
        pub target: Option<TargetTerminus>,
        /// Unsettled state, for link recovery.
        pub unsettled: Option<Map>,
        /// Whether `unsettled` is incomplete.
        pub incomplete_unsettled: Option<bool>,
        /// The sender's delivery count, for a sending link.
        pub initial_delivery_count: Option<SequenceNo>,
        /// Largest message the sender accepts (0 or absent: no limit).
        pub max_message_size: Option<u64>,
        /// Extensions the sender supports.
        pub offered_capabilities: Option<Symbols>,
        /// Extensions the sender may use.
        pub desired_capabilities: Option<Symbols>,
        /// Link properties.
        pub properties: Option<Fields>,
    }
}

crate::composite! {
    /// Session and link flow state (AMQP 1.0 §2.7.4).
    pub struct Flow("amqp:flow:list", 0x13) {
        /// Expected next incoming transfer-id (absent before begin is known).
        pub next_incoming_id: Option<SequenceNo>,
        /// The sender's incoming window.
        pub incoming_window: u32,
        /// The sender's next outgoing transfer-id.
        pub next_outgoing_id: SequenceNo,
        /// The sender's outgoing window.
        pub outgoing_window: u32,
        /// The link, when this flow carries link state.
        pub handle: Option<Handle>,
        /// The link's delivery count.
        pub delivery_count: Option<SequenceNo>,
        /// The link's credit.
        pub link_credit: Option<u32>,
        /// Messages the sender has available.
        pub available: Option<u32>,
        /// Use up all credit, then advance the delivery count.
        pub drain: Option<bool>,
        /// Ask the peer to answer with its own flow state.
        pub echo: Option<bool>,
        /// Link state properties.
        pub properties: Option<Fields>,
    }
}

crate::composite! {
    /// Transfers (a frame of) a message (AMQP 1.0 §2.7.5). The payload
    /// follows the performative in the frame and is not a field.
    pub struct Transfer("amqp:transfer:list", 0x14) {
        /// The link.
        pub handle: Handle,
        /// The delivery id (mandatory on a delivery's first transfer).
        pub delivery_id: Option<SequenceNo>,
        /// The delivery tag (mandatory on a delivery's first transfer).
        pub delivery_tag: Option<Bytes>,
        /// The message format (0 for AMQP messages).
        pub message_format: Option<u32>,
        /// Whether the sender has settled.
        pub settled: Option<bool>,
        /// More transfers of this delivery follow.
        pub more: Option<bool>,
        /// Receiver settle mode for this delivery.
        pub rcv_settle_mode: Option<ReceiverSettleMode>,
        /// The sender's delivery state.
        pub state: Option<DeliveryState>,
        /// Resuming a delivery.
        pub resume: Option<bool>,
        /// The delivery is aborted; discard what was received of it.
        pub aborted: Option<bool>,
        /// A hint that the peer need not flush yet.
        pub batchable: Option<bool>,
    }
}

crate::composite! {
    /// Updates the state of a range of deliveries (AMQP 1.0 §2.7.6).
    pub struct Disposition("amqp:disposition:list", 0x15) {
        /// The role of the sender of this disposition.
        pub role: Role,
        /// First delivery id of the range.
        pub first: SequenceNo,
        /// Last delivery id of the range (default `first`).
        pub last: Option<SequenceNo>,
        /// Whether the deliveries are now settled.
        pub settled: Option<bool>,
        /// The new state.
        pub state: Option<DeliveryState>,
        /// A hint that the peer need not flush yet.
        pub batchable: Option<bool>,
    }
}

crate::composite! {
    /// Detaches a link (AMQP 1.0 §2.7.7).
    pub struct Detach("amqp:detach:list", 0x16) {
        /// The link.
        pub handle: Handle,
        /// Whether the link is closed, not only detached.
        pub closed: Option<bool>,
        /// Why.
        pub error: Option<Error>,
    }
}

crate::composite! {
    /// Ends a session (AMQP 1.0 §2.7.8).
    pub struct End("amqp:end:list", 0x17) {
        /// Why.
        pub error: Option<Error>,
    }
}

crate::composite! {
    /// Closes a connection (AMQP 1.0 §2.7.9).
    pub struct Close("amqp:close:list", 0x18) {
        /// Why.
        pub error: Option<Error>,
    }
}

/// Any performative: the body of an AMQP frame (AMQP 1.0 §2.7).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Performative {
    // The two large, rare performatives are boxed so that every frame, a
    // transfer above all, moves a small value.
    Open(Box<Open>),
    Begin(Begin),
    Attach(Box<Attach>),
    Flow(Flow),
    Transfer(Transfer),
    Disposition(Disposition),
    Detach(Detach),
    End(End),
    Close(Close),
}

impl Performative {
    /// The performative's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::Attach(_) => "attach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Detach(_) => "detach",
            Performative::End(_) => "end",
            Performative::Close(_) => "close",
        }
    }
}

impl Decode for Performative {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        if code != crate::codec::format::DESCRIBED {
            return Err(DecodeError::UnexpectedFormat {
                expected: "performative",
                found: code,
            });
        }
        let descriptor = d.read_descriptor()?;
        let code = match &descriptor {
            Descriptor::Code(c) => *c,
            Descriptor::Symbol(s) => match s.as_str() {
                Open::NAME => Open::CODE,
                Begin::NAME => Begin::CODE,
                Attach::NAME => Attach::CODE,
                Flow::NAME => Flow::CODE,
                Transfer::NAME => Transfer::CODE,
                Disposition::NAME => Disposition::CODE,
                Detach::NAME => Detach::CODE,
                End::NAME => End::CODE,
                Close::NAME => Close::CODE,
                _ => u64::MAX,
            },
        };
        Ok(match code {
            Open::CODE => Performative::Open(Box::new(Open::decode_fields(d)?)),
            Begin::CODE => Performative::Begin(Begin::decode_fields(d)?),
            Attach::CODE => Performative::Attach(Box::new(Attach::decode_fields(d)?)),
            Flow::CODE => Performative::Flow(Flow::decode_fields(d)?),
            Transfer::CODE => Performative::Transfer(Transfer::decode_fields(d)?),
            Disposition::CODE => Performative::Disposition(Disposition::decode_fields(d)?),
            Detach::CODE => Performative::Detach(Detach::decode_fields(d)?),
            End::CODE => Performative::End(End::decode_fields(d)?),
            Close::CODE => Performative::Close(Close::decode_fields(d)?),
            _ => {
                return Err(DecodeError::UnexpectedDescriptor {
                    expected: "performative",
                    found: descriptor.to_string(),
                });
            }
        })
    }
}

impl Encode for Performative {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Performative::Open(p) => p.encode(buf),
            Performative::Begin(p) => p.encode(buf),
            Performative::Attach(p) => p.encode(buf),
            Performative::Flow(p) => p.encode(buf),
            Performative::Transfer(p) => p.encode(buf),
            Performative::Disposition(p) => p.encode(buf),
            Performative::Detach(p) => p.encode(buf),
            Performative::End(p) => p.encode(buf),
            Performative::Close(p) => p.encode(buf),
        }
    }
}
