//! The `endpoint` fuzz target: one router core with one or two
//! connections (`ferry_router::driver::Endpoint`, the engine and the link
//! logic, without sockets), each given a valid handshake, then driven by an
//! arbitrary sequence of well-typed frames (every performative, with field
//! values drawn mostly from small domains so they meet the router's state),
//! whole messages split over transfers, routing-protocol messages, raw
//! garbage, end of stream and the passing of time. Between steps the
//! router's inboxes and routing protocol are pumped, as the async driver and
//! the routing task would.
//!
//! Checked besides "no panic": every byte the router sends parses as
//! protocol headers and frames, no frame exceeds the max-frame-size the peer
//! announced, output stays bounded by input, a connection the router ends
//! on its own is closed with an AMQP error, and once every connection is
//! torn down the router holds no connection and no buffered bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use ferry_proto::codec::{Fields, Map, Str, Symbol, Symbols, Value};
use ferry_proto::definitions::{
    Attach, Begin, Close, DeliveryState, Detach, Disposition, End, Error, Flow, Handle, Modified,
    Open, Performative, ReceiverSettleMode, Rejected, Role as AmqpRole, SaslFrame, SaslInit,
    SenderSettleMode, SequenceNo, Source, Target, TargetTerminus, TerminusDurability,
    TerminusExpiryPolicy, Transfer, condition,
};
use ferry_proto::frame::{
    Frame, Layer, ProtocolHeader, decode_frame, encode_amqp_frame, encode_empty_frame,
    encode_sasl_frame,
};
use ferry_proto::message::{Body, Message};
use ferry_router::config::{
    AddressConfig, Config, Distribution, GroupConfig, Limits, ListenerConfig, LogConfig, Role,
    RouterConfig, RouterMode, VhostConfig,
};
use ferry_router::core::Core;
use ferry_router::driver::{Endpoint, Peer};
use ferry_router::mesh::RoutingInput;
use ferry_router::mesh::control::{apply, publish};
use ferry_router::mesh::identity;
use ferry_router::routing::{Advert, ControlMessage, RouterId, Routing, RoutingConfig};
use ferry_router::security::Security;

/// The router under test.
const ROUTER_ID: &str = "R";
/// Most steps run per input (longer inputs are cut).
const MAX_STEPS: usize = 256;
/// Rounds of pumping inboxes and routing after a step before giving up on
/// quiescence (two connections of one router can keep each other busy
/// only while there is work from the input).
const MAX_PUMP_ROUNDS: usize = 64;

// ---------------------------------------------------------------------
// The input.

/// One fuzz case.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// Connection 0: a client on a normal listener or a router on an
    /// inter-router listener.
    pub first: PeerKind,
    /// Connection 1, if any: a client on a normal listener.
    pub second: Option<Handshake>,
    /// Whether a vhost policy is configured.
    pub policy: bool,
    /// Small limits (max frame size, buffered bytes, links).
    pub small_limits: bool,
    /// What the peers do.
    pub steps: Vec<Step>,
}

/// Who connection 0 is.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum PeerKind {
    /// A client.
    Client(Handshake),
    /// A router.
    Router(RouterHello),
}

/// A client's handshake.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Handshake {
    /// SASL ANONYMOUS first, or a bare AMQP header.
    pub sasl: bool,
    /// The max-frame-size in its open.
    pub max_frame: FrameSize,
    /// Its idle-time-out.
    pub idle: Idle,
    /// Its channel-max.
    pub channel_max: Option<u8>,
    /// Names the configured vhost as hostname.
    pub vhost: bool,
    /// Sessions begun right after the open, on channels 0.. (0–3).
    pub sessions: u8,
}

/// A router's handshake on the inter-router listener.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct RouterHello {
    /// SASL ANONYMOUS first, or a bare AMQP header.
    pub sasl: bool,
    /// The router id it claims.
    pub id: RouterName,
    /// Its instance number.
    pub instance: N64,
    /// The cost it proposes.
    pub cost: Option<u8>,
    /// The max-frame-size in its open.
    pub max_frame: FrameSize,
    /// Its idle-time-out.
    pub idle: Idle,
    /// Sessions begun right after the open, on channels 0.. (0–3).
    pub sessions: u8,
}

/// A max-frame-size.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum FrameSize {
    /// None: unlimited.
    Default,
    /// 512, the least allowed.
    Min,
    /// 4096.
    Small,
    /// 65536.
    Large,
    /// 512 + n.
    Odd(u16),
}

impl FrameSize {
    fn value(self) -> Option<u32> {
        match self {
            FrameSize::Default => None,
            FrameSize::Min => Some(512),
            FrameSize::Small => Some(4096),
            FrameSize::Large => Some(65536),
            FrameSize::Odd(n) => Some(512 + u32::from(n)),
        }
    }
}

/// An idle-time-out.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Idle {
    /// None.
    None,
    /// 0: none either.
    Zero,
    /// Short.
    Short,
    /// Any number of milliseconds.
    Any(u32),
}

impl Idle {
    fn value(self) -> Option<u32> {
        match self {
            Idle::None => None,
            Idle::Zero => Some(0),
            Idle::Short => Some(100),
            Idle::Any(n) => Some(n),
        }
    }
}

/// A router id: a few names, this router's own among them.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum RouterName {
    /// The peer's usual name.
    P,
    /// This router.
    R,
    /// A third router.
    Q,
    /// A fourth.
    X,
    /// An empty id.
    Empty,
}

impl RouterName {
    fn as_str(self) -> &'static str {
        match self {
            RouterName::P => "P",
            RouterName::R => ROUTER_ID,
            RouterName::Q => "Q",
            RouterName::X => "X",
            RouterName::Empty => "",
        }
    }

    fn id(self) -> RouterId {
        RouterId::from(self.as_str())
    }
}

/// A 32-bit number, mostly small.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum N32 {
    /// 0..16.
    Small(u8),
    /// Near the top.
    Max(u8),
    /// Around 2^31 (serial-number arithmetic's edge).
    Half(u8),
    /// Anything.
    Any(u32),
}

impl N32 {
    fn value(self) -> u32 {
        match self {
            N32::Small(n) => u32::from(n % 16),
            N32::Max(n) => u32::MAX - u32::from(n % 4),
            N32::Half(n) => (1u32 << 31).wrapping_add(u32::from(n % 4)).wrapping_sub(2),
            N32::Any(n) => n,
        }
    }
}

/// A 64-bit number, mostly small.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum N64 {
    /// 0..16.
    Small(u8),
    /// Near the top.
    Max(u8),
    /// Around 2^62 (the routing protocol's forgery bound).
    Edge(u8),
    /// Anything.
    Any(u64),
}

impl N64 {
    fn value(self) -> u64 {
        match self {
            N64::Small(n) => u64::from(n % 16),
            N64::Max(n) => u64::MAX - u64::from(n % 4),
            N64::Edge(n) => (1u64 << 62).wrapping_add(u64::from(n % 4)).wrapping_sub(2),
            N64::Any(n) => n,
        }
    }
}

/// Which connection a step is for (1 falls back to 0 when there is no
/// second connection).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Conn(pub bool);

/// A channel, 0..4.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Chan(pub u8);

impl Chan {
    fn value(self) -> u16 {
        u16::from(self.0 % 4)
    }
}

/// A link handle, 0..8 mostly.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum H {
    /// 0..8.
    Small(u8),
    /// Anything.
    Any(u32),
}

impl H {
    fn value(self) -> Handle {
        Handle(match self {
            H::Small(n) => u32::from(n % 8),
            H::Any(n) => n,
        })
    }
}

/// An address.
#[derive(Arbitrary, Debug, Clone)]
pub enum Addr {
    /// `q0`..`q3`: balanced.
    Queue(u8),
    /// `multicast/m0`, `multicast/m1`.
    Multicast(u8),
    /// `closest/c`.
    Closest,
    /// The routing protocol's control address.
    Control,
    /// Management.
    Management,
    /// The empty address.
    Empty,
    /// Within the vhost.
    Scoped(u8),
    /// Any text.
    Text(String),
}

impl Addr {
    fn text(&self) -> String {
        match self {
            Addr::Queue(n) => format!("q{}", n % 4),
            Addr::Multicast(n) => format!("multicast/m{}", n % 2),
            Addr::Closest => "closest/c".into(),
            Addr::Control => "_ferry/control".into(),
            Addr::Management => "$management".into(),
            Addr::Empty => String::new(),
            Addr::Scoped(n) => format!("v/q{}", n % 2),
            Addr::Text(s) => s.clone(),
        }
    }
}

/// A terminus (source or target).
#[derive(Arbitrary, Debug, Clone)]
pub struct Terminus {
    /// Its address, if any.
    pub address: Option<Addr>,
    /// Dynamic.
    pub dynamic: Option<bool>,
    /// Durability, 0..3.
    pub durable: Option<u8>,
    /// Expiry policy.
    pub expiry: Option<u8>,
    /// Timeout.
    pub timeout: Option<N32>,
    /// A distribution mode.
    pub distribution: Option<bool>,
    /// A filter.
    pub filter: bool,
    /// A coordinator instead (target only).
    pub coordinator: bool,
}

impl Terminus {
    fn common(
        &self,
    ) -> (
        Option<Str>,
        Option<TerminusDurability>,
        Option<TerminusExpiryPolicy>,
    ) {
        let address = self.address.as_ref().map(|a| Str::from(a.text()));
        let durable = self.durable.map(|d| match d % 3 {
            0 => TerminusDurability::None,
            1 => TerminusDurability::Configuration,
            _ => TerminusDurability::UnsettledState,
        });
        let expiry = self.expiry.map(|e| match e % 4 {
            0 => TerminusExpiryPolicy::LinkDetach,
            1 => TerminusExpiryPolicy::SessionEnd,
            2 => TerminusExpiryPolicy::ConnectionClose,
            _ => TerminusExpiryPolicy::Never,
        });
        (address, durable, expiry)
    }

    fn source(&self) -> Source {
        let (address, durable, expiry_policy) = self.common();
        Source {
            address,
            durable,
            expiry_policy,
            timeout: self.timeout.map(N32::value),
            dynamic: self.dynamic,
            distribution_mode: self
                .distribution
                .map(|m| Symbol::from_static(if m { "copy" } else { "move" })),
            filter: self.filter.then(|| {
                Map(vec![(
                    Value::Symbol(Symbol::from_static("f")),
                    Value::String(Str::from("x")),
                )])
            }),
            ..Source::default()
        }
    }

    fn target(&self) -> TargetTerminus {
        if self.coordinator {
            return TargetTerminus::Coordinator(Default::default());
        }
        let (address, durable, expiry_policy) = self.common();
        TargetTerminus::Target(Target {
            address,
            durable,
            expiry_policy,
            timeout: self.timeout.map(N32::value),
            dynamic: self.dynamic,
            ..Target::default()
        })
    }
}

/// An error, when one is sent.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ErrorKind {
    /// None.
    None,
    /// `amqp:internal-error`.
    Internal,
    /// `amqp:link:stolen`.
    Stolen,
}

impl ErrorKind {
    fn value(self) -> Option<Error> {
        match self {
            ErrorKind::None => None,
            ErrorKind::Internal => Some(Error::new(condition::INTERNAL_ERROR, "fuzz")),
            ErrorKind::Stolen => Some(Error::new(condition::STOLEN, "fuzz")),
        }
    }
}

/// A delivery state.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum State {
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
    /// Released.
    Released,
    /// Modified.
    Modified(bool, bool),
    /// Received.
    Received(u32, u64),
}

impl State {
    fn value(self) -> DeliveryState {
        match self {
            State::Accepted => DeliveryState::Accepted,
            State::Rejected => DeliveryState::Rejected(Rejected {
                error: Some(Error::new(condition::INTERNAL_ERROR, "no")),
            }),
            State::Released => DeliveryState::Released,
            State::Modified(failed, here) => DeliveryState::Modified(Modified {
                delivery_failed: Some(failed),
                undeliverable_here: Some(here),
                message_annotations: None,
            }),
            State::Received(n, o) => DeliveryState::Received(ferry_proto::definitions::Received {
                section_number: n,
                section_offset: o,
            }),
        }
    }
}

/// A delivery id: the next one on the channel (tracked by the harness),
/// none (a continuation) or a given one.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum DeliveryId {
    /// The next one on this channel.
    Next,
    /// None.
    Omitted,
    /// This one.
    Given(N32),
}

/// A performative other than transfer, with arbitrary field values.
#[derive(Arbitrary, Debug, Clone)]
pub enum Perf {
    /// A second open.
    Open,
    /// Begin.
    Begin {
        /// Answering the router's begin on this channel.
        remote_channel: Option<Chan>,
        /// next-outgoing-id.
        next_outgoing_id: N32,
        /// incoming-window.
        incoming_window: N32,
        /// outgoing-window.
        outgoing_window: N32,
        /// handle-max.
        handle_max: Option<N32>,
    },
    /// Attach.
    Attach {
        /// Link name, `l0`..`l3` or any.
        name: Result<u8, String>,
        /// Handle.
        handle: H,
        /// The peer's role: receiver (a consumer) or sender (a producer).
        receiver: bool,
        /// snd-settle-mode, 0..2.
        snd_settle: Option<u8>,
        /// rcv-settle-mode.
        rcv_second: Option<bool>,
        /// Source.
        source: Option<Terminus>,
        /// Target.
        target: Option<Terminus>,
        /// initial-delivery-count.
        initial_delivery_count: Option<N32>,
        /// max-message-size.
        max_message_size: Option<N64>,
        /// A multicast tree property (inter-router data links).
        tree: Option<RouterName>,
        /// Capabilities.
        capabilities: Option<u8>,
    },
    /// Flow.
    Flow {
        /// next-incoming-id.
        next_incoming_id: Option<N32>,
        /// incoming-window.
        incoming_window: N32,
        /// next-outgoing-id.
        next_outgoing_id: N32,
        /// outgoing-window.
        outgoing_window: N32,
        /// handle.
        handle: Option<H>,
        /// delivery-count.
        delivery_count: Option<N32>,
        /// link-credit.
        link_credit: Option<N32>,
        /// available.
        available: Option<N32>,
        /// drain.
        drain: Option<bool>,
        /// echo.
        echo: Option<bool>,
    },
    /// Disposition.
    Disposition {
        /// Role: true for receiver.
        receiver: bool,
        /// first.
        first: N32,
        /// last.
        last: Option<N32>,
        /// settled.
        settled: Option<bool>,
        /// state.
        state: Option<State>,
    },
    /// Detach.
    Detach {
        /// handle.
        handle: H,
        /// closed.
        closed: Option<bool>,
        /// error.
        error: ErrorKind,
    },
    /// End.
    End(ErrorKind),
    /// Close.
    Close(ErrorKind),
}

/// A message body and the sections around it.
#[derive(Arbitrary, Debug, Clone)]
pub struct Msg {
    /// `properties.to`.
    pub to: Option<Addr>,
    /// `properties.reply-to`.
    pub reply_to: Option<Addr>,
    /// A header with a ttl.
    pub ttl: Option<u32>,
    /// A trace annotation (`x-opt-ferry-trace`), as a list of router ids.
    pub trace: Option<Vec<RouterName>>,
    /// Some other message annotation.
    pub annotation: Option<u8>,
    /// The body.
    pub body: Vec<u8>,
}

impl Msg {
    fn encode(&self) -> Bytes {
        let mut m = Message::new(Body::Data(vec![Bytes::copy_from_slice(&self.body)]));
        if let Some(to) = &self.to {
            m = m.with_to(to.text());
        }
        if let Some(r) = &self.reply_to {
            m.properties.get_or_insert_with(Default::default).reply_to = Some(r.text().into());
        }
        if let Some(ttl) = self.ttl {
            m = m.with_header(ferry_proto::message::Header {
                ttl: Some(ttl),
                ..Default::default()
            });
        }
        if let Some(trace) = &self.trace {
            let ids = trace
                .iter()
                .map(|r| Value::String(Str::from(r.as_str())))
                .collect();
            m = m.with_message_annotation("x-opt-ferry-trace", Value::List(ids));
        }
        if let Some(a) = self.annotation {
            m = m.with_message_annotation("x-opt-fuzz", Value::Ubyte(a));
        }
        m.encode()
    }
}

/// A routing-protocol message (sent on the control link by a router peer).
#[derive(Arbitrary, Debug, Clone)]
pub enum Control {
    /// HELLO.
    Hello(RouterName, N64, Vec<RouterName>),
    /// RA.
    Advert(RouterName, RouterName, N64, N64, N64),
    /// LSU.
    LinkState(RouterName, N64, N64, Vec<(RouterName, u8)>),
    /// LSR.
    LinkStateRequest(RouterName),
    /// MAU.
    Mobile(RouterName, N64, N64, Vec<Addr>, Vec<Addr>, bool),
    /// MAR.
    MobileRequest(RouterName),
}

impl Control {
    fn message(&self) -> ControlMessage {
        match self {
            Control::Hello(id, instance, seen) => ControlMessage::Hello {
                id: id.id(),
                instance: instance.value(),
                seen: seen.iter().map(|r| r.id()).collect(),
            },
            Control::Advert(from, id, instance, ls, ma) => ControlMessage::RouterAdvert {
                id: from.id(),
                adverts: vec![Advert {
                    id: id.id(),
                    instance: instance.value(),
                    ls_seq: ls.value(),
                    ma_seq: ma.value(),
                }],
            },
            Control::LinkState(id, instance, seq, n) => ControlMessage::LinkState {
                id: id.id(),
                instance: instance.value(),
                seq: seq.value(),
                neighbors: n.iter().map(|(r, c)| (r.id(), u32::from(*c))).collect(),
                sig: None,
            },
            Control::LinkStateRequest(id) => ControlMessage::LinkStateRequest { id: id.id() },
            Control::Mobile(id, instance, seq, added, removed, full) => {
                ControlMessage::MobileAddresses {
                    id: id.id(),
                    instance: instance.value(),
                    seq: seq.value(),
                    added: added.iter().map(Addr::text).collect(),
                    removed: removed.iter().map(Addr::text).collect(),
                    full: *full,
                    sig: None,
                }
            }
            Control::MobileRequest(id) => ControlMessage::MobileAddressRequest { id: id.id() },
        }
    }
}

/// What a transfer carries.
#[derive(Arbitrary, Debug, Clone)]
pub enum Payload {
    /// A message.
    Message(Msg),
    /// A routing-protocol message.
    Control(Control),
    /// Any bytes.
    Raw(Vec<u8>),
}

impl Payload {
    fn bytes(&self) -> Bytes {
        match self {
            Payload::Message(m) => m.encode(),
            Payload::Control(c) => c.message().encode(),
            Payload::Raw(b) => Bytes::copy_from_slice(b),
        }
    }
}

/// One thing a peer (or time) does.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    /// A performative other than transfer.
    Frame(Conn, Chan, Perf),
    /// One transfer frame.
    Transfer {
        /// Connection.
        conn: Conn,
        /// Channel.
        chan: Chan,
        /// Handle.
        handle: H,
        /// Delivery id.
        id: DeliveryId,
        /// Delivery tag, if any (length, up to 40).
        tag: Option<u8>,
        /// settled.
        settled: Option<bool>,
        /// more.
        more: Option<bool>,
        /// aborted.
        aborted: Option<bool>,
        /// resume.
        resume: Option<bool>,
        /// message-format.
        format: Option<N32>,
        /// The payload.
        payload: Payload,
    },
    /// A whole delivery, split over transfers of at most `split` bytes of
    /// payload each.
    Delivery {
        /// Connection.
        conn: Conn,
        /// Channel.
        chan: Chan,
        /// Handle.
        handle: H,
        /// Settled.
        settled: bool,
        /// Bytes per frame (0: one frame).
        split: u8,
        /// The payload.
        payload: Payload,
    },
    /// Answers what the router began and attached, grants credit to its
    /// senders (those it attached, and its answers to the peer's
    /// receivers) and settles what it delivered.
    Answer(Conn, State),
    /// Raw bytes into the stream.
    Garbage(Conn, Vec<u8>),
    /// A frame with any body.
    BadFrame(Conn, Chan, Vec<u8>),
    /// A heartbeat.
    Heartbeat(Conn),
    /// Time passes; due timers run.
    Advance(u16),
    /// The peer's end of the stream.
    Eof(Conn),
    /// The connection's output is backlogged, or no longer.
    Congested(Conn, bool),
    /// The router closes the connection (as on shutdown).
    Shutdown(Conn),
}

// ---------------------------------------------------------------------
// Parsing a byte stream as AMQP, one direction.

/// Parses one direction of a connection as headers and frames.
#[derive(Debug, Default)]
struct Stream {
    buf: BytesMut,
    /// Expecting a protocol header next.
    header: bool,
    layer: Option<Layer>,
    /// The stream stopped parsing (garbage, or the end).
    broken: bool,
    frames: Vec<(u16, Performative, Bytes, usize)>,
    /// A SASL outcome was seen.
    sasl_done: bool,
}

impl Stream {
    fn new() -> Self {
        Self {
            header: true,
            ..Self::default()
        }
    }

    /// Parses `data`; `Err` when it is not AMQP.
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        if self.broken {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.header {
                if self.buf.len() < 8 {
                    return Ok(());
                }
                let h: [u8; 8] = self.buf[..8].try_into().expect("8 bytes");
                let _ = self.buf.split_to(8);
                match ProtocolHeader::parse(&h) {
                    Ok(ProtocolHeader::Sasl) => self.layer = Some(Layer::Sasl),
                    Ok(ProtocolHeader::Amqp) => self.layer = Some(Layer::Amqp),
                    _ => {
                        self.broken = true;
                        return Err(format!("bad protocol header {h:02x?}"));
                    }
                }
                self.header = false;
                continue;
            }
            let layer = self.layer.expect("a header came first");
            let before = self.buf.len();
            match decode_frame(&mut self.buf, u32::MAX, layer) {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Sasl(f))) => {
                    if let SaslFrame::Outcome(_) = f {
                        self.sasl_done = true;
                        self.header = true;
                    }
                }
                Ok(Some(Frame::Amqp {
                    channel,
                    performative,
                    payload,
                })) => {
                    let size = before - self.buf.len();
                    self.frames.push((channel, performative, payload, size));
                }
                Ok(Some(Frame::Empty)) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(format!("undecodable frame: {e}"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------
// The harness.

/// One connection under test and its peer's bookkeeping.
struct Side {
    ep: Endpoint,
    /// What the peer sent, parsed.
    input: Stream,
    /// What the router sent, parsed.
    output: Stream,
    /// Output frames already looked at.
    seen: usize,
    in_bytes: usize,
    out_bytes: usize,
    /// The max-frame-size the peer announced.
    peer_max_frame: u32,
    /// Next delivery id per channel.
    next_delivery: BTreeMap<u16, u32>,
    /// The router's channels mapped to the peer's.
    channels: BTreeMap<u16, u16>,
    /// The router's attaches not yet answered: (router channel, attach).
    to_answer: Vec<(u16, Box<Attach>)>,
    /// The router's begins not yet answered: router channel.
    begins: Vec<u16>,
    /// Deliveries the router sent unsettled, not yet settled: (router
    /// channel, delivery id).
    unsettled: Vec<(u16, u32)>,
    /// Handles the peer used for answers.
    next_handle: u32,
    /// Links the peer attached: (name, as receiver) to (channel, handle),
    /// so that an answer tells the router's replies from its own attaches.
    peer_links: BTreeMap<(String, bool), (u16, Handle)>,
    /// The peer ended its stream.
    eof: bool,
    /// The router was told to close.
    shut: bool,
    /// The peer's input stopped parsing (garbage).
    garbage: bool,
    /// The router sent a close: with an error?
    router_close: Option<bool>,
    /// The router's close came before any close from the peer.
    router_closed_first: bool,
    /// The peer sent a close.
    peer_close: bool,
    finished: bool,
    /// On the inter-router listener.
    router_role: bool,
}

impl Side {
    fn new(ep: Endpoint) -> Self {
        Self {
            ep,
            input: Stream::new(),
            output: Stream::new(),
            seen: 0,
            in_bytes: 0,
            out_bytes: 0,
            peer_max_frame: u32::MAX,
            next_delivery: BTreeMap::new(),
            channels: BTreeMap::new(),
            to_answer: Vec::new(),
            begins: Vec::new(),
            unsettled: Vec::new(),
            next_handle: 100,
            peer_links: BTreeMap::new(),
            eof: false,
            shut: false,
            garbage: false,
            router_close: None,
            router_closed_first: false,
            peer_close: false,
            finished: false,
            router_role: false,
        }
    }

    /// Feeds bytes from the peer.
    fn send(&mut self, bytes: &[u8], now: Instant) {
        if self.eof || self.finished {
            return;
        }
        self.in_bytes += bytes.len();
        if self.input.push(bytes).is_err() {
            self.garbage = true;
        }
        for (_, p, _, _) in &self.input.frames {
            if matches!(p, Performative::Close(_)) {
                self.peer_close = true;
            }
        }
        self.input.frames.clear();
        self.ep.handle_input(bytes, now);
    }

    fn frame(&mut self, channel: u16, p: &Performative, payload: &[u8], now: Instant) {
        let mut buf = BytesMut::new();
        encode_amqp_frame(channel, p, payload, &mut buf);
        self.send(&buf, now);
    }

    /// Takes the router's output and checks it.
    fn drain(&mut self, now: Instant) {
        let mut step_out = 0usize;
        while let Some(bytes) = self.ep.poll_transmit(now) {
            step_out += bytes.len();
            assert!(
                step_out <= 64 << 20,
                "runaway output: over 64 MiB from one step"
            );
            if let Err(e) = self.output.push(&bytes) {
                panic!("the router sent something that is not AMQP: {e}");
            }
        }
        self.out_bytes += step_out;
        for i in self.seen..self.output.frames.len() {
            let (channel, p, _, size) = &self.output.frames[i];
            let channel = *channel;
            if !matches!(p, Performative::Open(_)) {
                assert!(
                    *size as u64 <= u64::from(self.peer_max_frame),
                    "a {} frame of {size} bytes, over the peer's max-frame-size {}",
                    p.name(),
                    self.peer_max_frame
                );
            }
            stats::frame(p, self.router_role);
            if stats::verbose() {
                match p {
                    Performative::Detach(Detach { error: Some(e), .. })
                    | Performative::End(End { error: Some(e) })
                    | Performative::Close(Close { error: Some(e) }) => eprintln!(
                        "FERRY_FUZZ_ERROR {} {}: {}",
                        p.name(),
                        e.condition,
                        e.description.as_deref().unwrap_or("")
                    ),
                    _ => {}
                }
            }
            match p {
                Performative::Close(c) => {
                    if self.router_close.is_none() {
                        self.router_close = Some(c.error.is_some());
                        self.router_closed_first = !self.peer_close;
                    }
                }
                Performative::Begin(b) => match b.remote_channel {
                    Some(ours) => {
                        self.channels.insert(channel, ours);
                    }
                    None => self.begins.push(channel),
                },
                Performative::Attach(a) => {
                    self.to_answer.push((channel, a.clone()));
                }
                Performative::Transfer(t) => {
                    if let Some(id) = t.delivery_id
                        && t.settled != Some(true)
                    {
                        self.unsettled.push((channel, id.0));
                    }
                }
                _ => {}
            }
        }
        self.seen = self.output.frames.len();
        // Parsed frames are kept only as far as needed.
        if self.seen > 1024 {
            self.output.frames.clear();
            self.seen = 0;
        }
        if self.ep.is_finished() {
            self.finished = true;
        }
    }

    /// Answers the router's begins and attaches, grants credit, settles.
    fn answer(&mut self, state: State, now: Instant) {
        for rc in std::mem::take(&mut self.begins) {
            let ours = rc % 4;
            self.channels.insert(rc, ours);
            let begin = Performative::Begin(Begin {
                remote_channel: Some(rc),
                next_outgoing_id: SequenceNo(0),
                incoming_window: 2048,
                outgoing_window: 2048,
                handle_max: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            });
            self.frame(ours, &begin, &[], now);
        }
        for (rc, a) in std::mem::take(&mut self.to_answer) {
            let key = (a.name.to_string(), a.role == AmqpRole::Sender);
            if let Some(&(channel, handle)) = self.peer_links.get(&key) {
                // The router's answer to the peer's attach: a receiver of
                // the peer's gets credit.
                if a.role == AmqpRole::Sender {
                    let flow = Performative::Flow(Flow {
                        next_incoming_id: Some(SequenceNo(0)),
                        incoming_window: 2048,
                        next_outgoing_id: SequenceNo(0),
                        outgoing_window: 2048,
                        handle: Some(handle),
                        delivery_count: Some(a.initial_delivery_count.unwrap_or_default()),
                        link_credit: Some(100),
                        ..Flow::default()
                    });
                    self.frame(channel, &flow, &[], now);
                }
                continue;
            }
            let Some(&ours) = self.channels.get(&rc) else {
                continue;
            };
            let handle = Handle(self.next_handle);
            self.next_handle += 1;
            let receiver = a.role == AmqpRole::Sender;
            let attach = Attach {
                name: a.name.clone(),
                handle,
                role: if receiver {
                    AmqpRole::Receiver
                } else {
                    AmqpRole::Sender
                },
                snd_settle_mode: a.snd_settle_mode,
                rcv_settle_mode: a.rcv_settle_mode,
                source: a.source.clone(),
                target: a.target.clone(),
                initial_delivery_count: (!receiver).then_some(SequenceNo(0)),
                ..Attach::default()
            };
            self.frame(ours, &Performative::Attach(Box::new(attach)), &[], now);
            if receiver {
                let flow = Performative::Flow(Flow {
                    next_incoming_id: Some(SequenceNo(0)),
                    incoming_window: 2048,
                    next_outgoing_id: SequenceNo(0),
                    outgoing_window: 2048,
                    handle: Some(handle),
                    delivery_count: Some(SequenceNo(0)),
                    link_credit: Some(100),
                    ..Flow::default()
                });
                self.frame(ours, &flow, &[], now);
            }
        }
        for (rc, id) in std::mem::take(&mut self.unsettled) {
            let Some(&ours) = self.channels.get(&rc) else {
                continue;
            };
            let d = Performative::Disposition(Disposition {
                role: AmqpRole::Receiver,
                first: SequenceNo(id),
                last: None,
                settled: Some(true),
                state: Some(state.value()),
                batchable: None,
            });
            self.frame(ours, &d, &[], now);
        }
    }
}

fn config(input: &Input) -> Config {
    let everything = || vec!["*".to_string()];
    let vhosts = if input.policy {
        vec![VhostConfig {
            name: "v".into(),
            max_connections: None,
            max_connections_per_user: None,
            max_message_size: Some(4096),
            max_links_per_connection: Some(8),
            groups: vec![GroupConfig {
                name: "everyone".into(),
                users: vec![ferry_router::policy::ANONYMOUS.into()],
                send: everything(),
                receive: vec!["q*".into(), "multicast/*".into()],
                dynamic_reply: true,
                ..Default::default()
            }],
        }]
    } else {
        Vec::new()
    };
    let mut limits = Limits {
        // Not 0, which would read the machine's memory on every case.
        max_buffered_bytes: 64 << 20,
        ..Limits::default()
    };
    if input.small_limits {
        limits.max_frame_size = 512;
        limits.max_links_per_connection = 4;
        limits.max_sessions_per_connection = 2;
        limits.max_buffered_bytes = 4096;
        limits.max_in_flight_bytes_per_producer = 2048;
        limits.link_credit_window = 4;
        limits.max_message_size = 2048;
    }
    Config {
        router: RouterConfig {
            id: ROUTER_ID.into(),
            mode: RouterMode::Interior,
            default_vhost: None,
        },
        listeners: vec![
            ListenerConfig::new("fuzz", 5672, Role::Normal),
            ListenerConfig::new("fuzz", 5673, Role::InterRouter),
        ],
        connectors: Vec::new(),
        addresses: vec![
            AddressConfig {
                prefix: "multicast".into(),
                distribution: Distribution::Multicast,
            },
            AddressConfig {
                prefix: "closest".into(),
                distribution: Distribution::Closest,
            },
        ],
        limits,
        log: LogConfig::default(),
        tls: Vec::new(),
        auth: Default::default(),
        vhosts,
        management: Default::default(),
        http: None,
    }
}

/// The bytes of a handshake: headers, SASL init and open.
fn handshake(
    sasl: bool,
    max_frame: Option<u32>,
    idle: Option<u32>,
    channel_max: Option<u16>,
    hostname: Option<&str>,
    properties: Option<Fields>,
    sessions: u8,
) -> BytesMut {
    let mut buf = BytesMut::new();
    if sasl {
        buf.extend_from_slice(&ProtocolHeader::Sasl.bytes());
        encode_sasl_frame(
            &SaslFrame::Init(SaslInit {
                mechanism: Symbol::from_static("ANONYMOUS"),
                initial_response: Some(Bytes::from_static(b"fuzz")),
                hostname: None,
            }),
            &mut buf,
        );
    }
    buf.extend_from_slice(&ProtocolHeader::Amqp.bytes());
    let open = Open {
        container_id: Str::from("fuzz-peer"),
        hostname: hostname.map(Str::from),
        max_frame_size: max_frame,
        channel_max,
        idle_time_out: idle,
        properties,
        ..Open::default()
    };
    encode_amqp_frame(0, &Performative::Open(Box::new(open)), &[], &mut buf);
    for channel in 0..u16::from(sessions % 4) {
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: SequenceNo(0),
            incoming_window: 2048,
            outgoing_window: 2048,
            handle_max: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        encode_amqp_frame(channel, &Performative::Begin(begin), &[], &mut buf);
    }
    buf
}

fn perf(p: &Perf, side: &Side) -> Performative {
    let _ = side;
    match p {
        Perf::Open => Performative::Open(Box::new(Open {
            container_id: Str::from("again"),
            ..Open::default()
        })),
        Perf::Begin {
            remote_channel,
            next_outgoing_id,
            incoming_window,
            outgoing_window,
            handle_max,
        } => Performative::Begin(Begin {
            remote_channel: remote_channel.map(Chan::value),
            next_outgoing_id: SequenceNo(next_outgoing_id.value()),
            incoming_window: incoming_window.value(),
            outgoing_window: outgoing_window.value(),
            handle_max: handle_max.map(|h| Handle(h.value())),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }),
        Perf::Attach {
            name,
            handle,
            receiver,
            snd_settle,
            rcv_second,
            source,
            target,
            initial_delivery_count,
            max_message_size,
            tree,
            capabilities,
        } => {
            let name = match name {
                Ok(n) => format!("l{}", n % 4),
                Err(s) => s.clone(),
            };
            Performative::Attach(Box::new(Attach {
                name: Str::from(name),
                handle: handle.value(),
                role: if *receiver {
                    AmqpRole::Receiver
                } else {
                    AmqpRole::Sender
                },
                snd_settle_mode: snd_settle.map(|m| match m % 3 {
                    0 => SenderSettleMode::Unsettled,
                    1 => SenderSettleMode::Settled,
                    _ => SenderSettleMode::Mixed,
                }),
                rcv_settle_mode: rcv_second.map(|s| {
                    if s {
                        ReceiverSettleMode::Second
                    } else {
                        ReceiverSettleMode::First
                    }
                }),
                source: source.as_ref().map(Terminus::source),
                target: target.as_ref().map(Terminus::target),
                initial_delivery_count: initial_delivery_count.map(|n| SequenceNo(n.value())),
                max_message_size: max_message_size.map(N64::value),
                properties: tree.map(|t| {
                    Fields(vec![(
                        Symbol::from_static("ferry:tree"),
                        Value::String(Str::from(t.as_str())),
                    )])
                }),
                offered_capabilities: capabilities.map(|c| match c % 3 {
                    0 => Symbols::from(["ANONYMOUS-RELAY"]),
                    1 => Symbols::from(["shared"]),
                    _ => Symbols::from(["topic", "queue"]),
                }),
                desired_capabilities: capabilities.map(|_| Symbols::from(["ANONYMOUS-RELAY"])),
                ..Attach::default()
            }))
        }
        Perf::Flow {
            next_incoming_id,
            incoming_window,
            next_outgoing_id,
            outgoing_window,
            handle,
            delivery_count,
            link_credit,
            available,
            drain,
            echo,
        } => Performative::Flow(Flow {
            next_incoming_id: next_incoming_id.map(|n| SequenceNo(n.value())),
            incoming_window: incoming_window.value(),
            next_outgoing_id: SequenceNo(next_outgoing_id.value()),
            outgoing_window: outgoing_window.value(),
            handle: handle.map(H::value),
            delivery_count: delivery_count.map(|n| SequenceNo(n.value())),
            link_credit: link_credit.map(N32::value),
            available: available.map(N32::value),
            drain: *drain,
            echo: *echo,
            properties: None,
        }),
        Perf::Disposition {
            receiver,
            first,
            last,
            settled,
            state,
        } => Performative::Disposition(Disposition {
            role: if *receiver {
                AmqpRole::Receiver
            } else {
                AmqpRole::Sender
            },
            first: SequenceNo(first.value()),
            last: last.map(|n| SequenceNo(n.value())),
            settled: *settled,
            state: state.map(State::value),
            batchable: None,
        }),
        Perf::Detach {
            handle,
            closed,
            error,
        } => Performative::Detach(Detach {
            handle: handle.value(),
            closed: *closed,
            error: error.value(),
        }),
        Perf::End(e) => Performative::End(End { error: e.value() }),
        Perf::Close(e) => Performative::Close(Close { error: e.value() }),
    }
}

/// The router: its core, its routing protocol and its connections.
struct Router {
    core: Arc<Core>,
    routing: Routing,
    input: tokio::sync::mpsc::UnboundedReceiver<RoutingInput>,
    sides: Vec<Side>,
}

impl Router {
    /// Lets the routing protocol and the connections' inboxes run until
    /// nothing moves (or a bound).
    fn pump(&mut self, now: Instant) {
        for _ in 0..MAX_PUMP_ROUNDS {
            let mut moved = 0;
            while let Ok(input) = self.input.try_recv() {
                apply(&mut self.routing, input, now);
                moved += 1;
            }
            if self.routing.poll_timeout().is_some_and(|t| t <= now) {
                self.routing.handle_timeout(now);
            }
            publish(&mut self.routing, &self.core);
            for side in &mut self.sides {
                moved += side.ep.handle_inbox(64, now);
                side.drain(now);
            }
            if moved == 0 {
                break;
            }
        }
    }

    fn side(&mut self, conn: Conn) -> &mut Side {
        let i = usize::from(conn.0).min(self.sides.len() - 1);
        &mut self.sides[i]
    }
}

/// Runs one fuzz case.
pub fn run(input: &Input) {
    let t0 = Instant::now();
    let mut now = t0;
    let config = config(input);
    let core = Arc::new(Core::with_instance(&config, 1));
    let routing_input = core
        .mesh()
        .take_input()
        .expect("a fresh core's routing input is there to take");
    let mut routing = Routing::new(core.mesh().id().clone(), 1, RoutingConfig::default(), now);
    publish(&mut routing, &core);
    // One for the process: `Security::none` asks the machine for its
    // parallelism, a system call, and holds nothing a case could change
    // but the rate of refusal log lines.
    static SECURITY: std::sync::OnceLock<Arc<Security>> = std::sync::OnceLock::new();
    let security = SECURITY.get_or_init(|| Arc::new(Security::none()));
    let mut router = Router {
        core: core.clone(),
        routing,
        input: routing_input,
        sides: Vec::new(),
    };

    // Connection 0, and 1 if there is one.
    let mut hellos = Vec::new();
    let client = |h: &Handshake| {
        let hostname = (input.policy && h.vhost).then_some("v");
        (
            Role::Normal,
            h.max_frame.value(),
            handshake(
                h.sasl,
                h.max_frame.value(),
                h.idle.value(),
                h.channel_max.map(u16::from),
                hostname,
                None,
                h.sessions,
            ),
        )
    };
    match &input.first {
        PeerKind::Client(h) => hellos.push(client(h)),
        PeerKind::Router(r) => {
            let mut props =
                identity::properties(&r.id.id(), r.instance.value(), r.cost.map(u32::from));
            props.push(("x".into(), "y".into()));
            let fields = Fields(
                props
                    .into_iter()
                    .map(|(k, v)| (Symbol::from(k), Value::String(Str::from(v))))
                    .collect(),
            );
            hellos.push((
                Role::InterRouter,
                r.max_frame.value(),
                handshake(
                    r.sasl,
                    r.max_frame.value(),
                    r.idle.value(),
                    None,
                    None,
                    Some(fields),
                    r.sessions,
                ),
            ));
        }
    }
    if let Some(h) = &input.second {
        hellos.push(client(h));
    }
    for (role, max_frame, _) in &hellos {
        let listener = ListenerConfig::new("fuzz", 5672, *role);
        let ep = Endpoint::accepted(core.clone(), &listener, security, Peer::default(), now);
        let mut side = Side::new(ep);
        side.peer_max_frame = max_frame.unwrap_or(u32::MAX);
        side.router_role = *role == Role::InterRouter;
        router.sides.push(side);
    }
    for (i, (_, _, bytes)) in hellos.iter().enumerate() {
        router.sides[i].send(bytes, now);
        router.sides[i].drain(now);
    }
    router.pump(now);

    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            Step::Frame(conn, chan, p) => {
                let side = router.side(*conn);
                let p = perf(p, side);
                if let Performative::Attach(a) = &p {
                    let key = (a.name.to_string(), a.role == AmqpRole::Receiver);
                    side.peer_links.insert(key, (chan.value(), a.handle));
                }
                side.frame(chan.value(), &p, &[], now);
            }
            Step::Transfer {
                conn,
                chan,
                handle,
                id,
                tag,
                settled,
                more,
                aborted,
                resume,
                format,
                payload,
            } => {
                let side = router.side(*conn);
                let channel = chan.value();
                let delivery_id = match id {
                    DeliveryId::Next => {
                        let next = side.next_delivery.entry(channel).or_insert(0);
                        let id = *next;
                        *next = next.wrapping_add(1);
                        Some(SequenceNo(id))
                    }
                    DeliveryId::Omitted => None,
                    DeliveryId::Given(n) => Some(SequenceNo(n.value())),
                };
                let t = Transfer {
                    handle: handle.value(),
                    delivery_id,
                    delivery_tag: tag.map(|n| Bytes::from(vec![b't'; usize::from(n % 41)])),
                    message_format: format.map(N32::value),
                    settled: *settled,
                    more: *more,
                    rcv_settle_mode: None,
                    state: None,
                    resume: *resume,
                    aborted: *aborted,
                    batchable: None,
                };
                let body = payload.bytes();
                side.frame(channel, &Performative::Transfer(t), &body, now);
            }
            Step::Delivery {
                conn,
                chan,
                handle,
                settled,
                split,
                payload,
            } => {
                let side = router.side(*conn);
                let channel = chan.value();
                let next = side.next_delivery.entry(channel).or_insert(0);
                let id = *next;
                *next = next.wrapping_add(1);
                let body = payload.bytes();
                let chunk = if *split == 0 {
                    body.len().max(1)
                } else {
                    usize::from(*split)
                };
                let mut parts: Vec<&[u8]> = body.chunks(chunk).collect();
                if parts.is_empty() {
                    parts.push(&[]);
                }
                let n = parts.len();
                for (i, part) in parts.into_iter().enumerate() {
                    let first = i == 0;
                    let t = Transfer {
                        handle: handle.value(),
                        delivery_id: first.then_some(SequenceNo(id)),
                        delivery_tag: first.then(|| Bytes::from(id.to_be_bytes().to_vec())),
                        message_format: first.then_some(0),
                        settled: first.then_some(*settled),
                        more: Some(i + 1 < n),
                        ..Transfer::default()
                    };
                    side.frame(channel, &Performative::Transfer(t), part, now);
                }
            }
            Step::Answer(conn, state) => router.side(*conn).answer(*state, now),
            Step::Garbage(conn, bytes) => router.side(*conn).send(bytes, now),
            Step::BadFrame(conn, chan, body) => {
                let mut buf = BytesMut::new();
                let size = (8 + body.len()) as u32;
                buf.extend_from_slice(&size.to_be_bytes());
                buf.extend_from_slice(&[2, 0]);
                buf.extend_from_slice(&chan.value().to_be_bytes());
                buf.extend_from_slice(body);
                router.side(*conn).send(&buf, now);
            }
            Step::Heartbeat(conn) => {
                let mut buf = BytesMut::new();
                encode_empty_frame(&mut buf);
                router.side(*conn).send(&buf, now);
            }
            Step::Advance(ms) => {
                now += Duration::from_millis(u64::from(*ms) * 4);
                for side in &mut router.sides {
                    if !side.finished && side.ep.poll_timeout().is_some_and(|t| t <= now) {
                        side.ep.handle_timeout(now);
                    }
                }
            }
            Step::Eof(conn) => {
                let side = router.side(*conn);
                if !side.eof && !side.finished {
                    side.eof = true;
                    side.ep.handle_eof(now);
                }
            }
            Step::Congested(conn, on) => router.side(*conn).ep.set_congested(*on),
            Step::Shutdown(conn) => {
                let side = router.side(*conn);
                if !side.finished {
                    side.shut = true;
                    side.ep.close(
                        Error::new(condition::CONNECTION_FORCED, "router shutting down"),
                        now,
                    );
                }
            }
        }
        for side in &mut router.sides {
            side.drain(now);
        }
        router.pump(now);
    }

    // Checks, then the end of every connection.
    let steps = input.steps.len().min(MAX_STEPS);
    for side in &mut router.sides {
        let bound = (1 << 20) + 1024 * (side.in_bytes + 64 * steps);
        assert!(
            side.out_bytes <= bound,
            "{} bytes out for {} in",
            side.out_bytes,
            side.in_bytes
        );
        if let Some(with_error) = side.router_close
            && side.router_closed_first
            && !side.garbage
        {
            assert!(
                with_error,
                "the router closed the connection without an error"
            );
        }
        if side.finished && !side.eof && !side.garbage && !side.peer_close {
            assert_eq!(
                side.router_close,
                Some(true),
                "the connection ended without a close carrying an error"
            );
        }
        side.ep.handle_eof(now);
        side.drain(now);
    }
    for side in &mut router.sides {
        side.ep.teardown(now);
    }
    router.pump(now);
    let Router {
        core: _,
        routing,
        input,
        sides,
    } = router;
    drop(sides);
    drop(input);
    drop(routing);
    assert!(
        core.connections().is_empty(),
        "connections left registered after teardown"
    );
    assert_eq!(
        core.buffered().used(),
        0,
        "bytes left charged to the router's budget after every connection ended"
    );
    let _ = t0;
    stats::case_done();
}

/// With `FERRY_FUZZ_STATS=1` in the environment, counts the frames the
/// router sent over all cases run and prints the totals after each case:
/// run the target over a corpus with `-runs=0` to see how far it gets
/// (the last line holds the totals).
mod stats {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use ferry_proto::definitions::Performative;

    const KINDS: [&str; 9] = [
        "open",
        "begin",
        "attach",
        "flow",
        "transfer",
        "disposition",
        "detach",
        "end",
        "close",
    ];
    static CLIENT: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];
    static ROUTER: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];
    static CASES: AtomicU64 = AtomicU64::new(0);

    /// `FERRY_FUZZ_STATS=2`: also every error the router sends.
    pub(super) fn verbose() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var("FERRY_FUZZ_STATS").is_ok_and(|v| v == "2"))
    }

    fn on() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("FERRY_FUZZ_STATS").is_some())
    }

    pub(super) fn frame(p: &Performative, router: bool) {
        if !on() {
            return;
        }
        let i = KINDS.iter().position(|k| *k == p.name()).expect("a kind");
        let table = if router { &ROUTER } else { &CLIENT };
        table[i].fetch_add(1, Relaxed);
    }

    /// Frames of `kind` sent to clients so far (counted when on).
    #[cfg(test)]
    pub(super) fn sent_to_clients(kind: &str) -> u64 {
        let i = KINDS.iter().position(|k| *k == kind).expect("a kind");
        CLIENT[i].load(Relaxed)
    }

    pub(super) fn case_done() {
        if !on() {
            return;
        }
        let cases = CASES.fetch_add(1, Relaxed) + 1;
        let show = |t: &[AtomicU64; 9]| {
            KINDS
                .iter()
                .zip(t)
                .map(|(k, n)| format!("{k}={}", n.load(Relaxed)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "FERRY_FUZZ_STATS cases={cases} | sent to clients: {} | sent to routers: {}",
            show(&CLIENT),
            show(&ROUTER)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminus(address: Option<Addr>) -> Terminus {
        Terminus {
            address,
            dynamic: None,
            durable: None,
            expiry: None,
            timeout: None,
            distribution: None,
            filter: false,
            coordinator: false,
        }
    }

    fn attach(name: u8, handle: u8, receiver: bool, address: Addr) -> Step {
        let (source, target) = if receiver {
            (Some(terminus(Some(address))), Some(terminus(None)))
        } else {
            (Some(terminus(None)), Some(terminus(Some(address))))
        };
        Step::Frame(
            Conn(false),
            Chan(0),
            Perf::Attach {
                name: Ok(name),
                handle: H::Small(handle),
                receiver,
                snd_settle: None,
                rcv_second: None,
                source,
                target,
                initial_delivery_count: Some(N32::Small(0)),
                max_message_size: None,
                tree: None,
                capabilities: None,
            },
        )
    }

    /// The harness reaches the router's data path: a consumer and a
    /// producer on one client connection, a message from one to the other.
    #[test]
    fn a_message_crosses_the_router() {
        // SAFETY: set before any thread of this test binary reads it.
        unsafe { std::env::set_var("FERRY_FUZZ_STATS", "2") };
        let input = Input {
            first: PeerKind::Client(Handshake {
                sasl: true,
                max_frame: FrameSize::Default,
                idle: Idle::None,
                channel_max: None,
                vhost: false,
                sessions: 1,
            }),
            second: None,
            policy: false,
            small_limits: false,
            steps: vec![
                attach(0, 0, true, Addr::Queue(0)),
                Step::Answer(Conn(false), State::Accepted),
                attach(1, 1, false, Addr::Queue(0)),
                Step::Delivery {
                    conn: Conn(false),
                    chan: Chan(0),
                    handle: H::Small(1),
                    settled: false,
                    split: 0,
                    payload: Payload::Message(Msg {
                        to: None,
                        reply_to: None,
                        ttl: None,
                        trace: None,
                        annotation: None,
                        body: b"hello".to_vec(),
                    }),
                },
                Step::Answer(Conn(false), State::Accepted),
            ],
        };
        run(&input);
        assert!(
            stats::sent_to_clients("transfer") > 0,
            "no transfer reached the consumer"
        );
    }
}
