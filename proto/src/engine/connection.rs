//! The connection: protocol headers, SASL, open/close, heartbeats, and the
//! dispatch of frames to sessions and links (`session.rs`, `link.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::config::ConnectionConfig;
use super::error::EngineError;
use super::event::Event;
use super::ids::{LinkId, SessionId};
use super::link::Link;
use super::output::{Mark, Output};
use super::sasl::{self, ClientMechanism, SaslState, SaslStep};
use super::session::Session;
use super::small_map::SmallMap;
use crate::codec::{Str, Symbol, Symbols};
use crate::definitions::{
    Close, Error, ErrorCondition, Open, Performative, SaslChallenge, SaslCode, SaslFrame, condition,
};
use crate::frame::{self, Frame, Layer, MIN_MAX_FRAME_SIZE, ProtocolHeader};

/// What the connection expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Server: the client's first protocol header.
    ServerHeader,
    /// Server: the AMQP header that follows a successful SASL exchange.
    ServerAmqpHeaderAfterSasl,
    /// Client: the server's SASL header.
    ClientSaslHeader,
    /// Client: the server's AMQP header.
    ClientAmqpHeader,
    /// SASL frames.
    Sasl(SaslState),
    /// AMQP frames.
    Amqp,
    /// Finished: input is ignored.
    Done,
}

/// How long a connection must have sent and received nothing before it
/// gives back the room of its empty buffers (see `Connection::trim`).
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// The same, the first time: a new connection gives back what its
/// handshake needed as soon as it has settled. In a storm of new
/// connections (devices reconnecting after a restart), what one gives
/// back is then reused by those still arriving instead of staying behind
/// as holes among them; once is cheap, so later quiet spells wait
/// [`QUIET`].
pub(crate) const FIRST_QUIET: Duration = Duration::from_millis(100);

/// The length of an empty frame, a heartbeat (AMQP 1.0 §2.4.5).
const EMPTY_FRAME_LEN: usize = 8;

/// One AMQP connection, as a state machine. See the [module docs](super).
pub struct Connection {
    pub(crate) config: Arc<ConnectionConfig>,
    server: bool,
    phase: Phase,
    inbuf: BytesMut,
    /// Client: the SASL mechanism in progress.
    sasl_client: ClientMechanism,
    pub(crate) out: Output,
    pub(crate) events: VecDeque<Event>,
    open_sent: bool,
    pub(crate) remote_open: bool,
    close_sent: bool,
    pub(crate) remote_max_frame_size: u32,
    pub(crate) remote_channel_max: u16,
    remote_idle_timeout: Option<Duration>,
    last_received: Instant,
    last_sent: Instant,
    /// Its buffers were given back since the last traffic (see
    /// `Connection::trim`).
    trimmed: bool,
    /// It has been trimmed before (later quiet spells wait [`QUIET`]).
    trimmed_once: bool,
    /// Values boxed here and in `links`: a large map's spare room costs
    /// a pointer per entry, not a session's or a link's state.
    pub(crate) sessions: SmallMap<SessionId, Box<Session>>,
    pub(crate) local_channels: SmallMap<u16, SessionId>,
    pub(crate) remote_channels: SmallMap<u16, SessionId>,
    pub(crate) links: SmallMap<LinkId, Box<Link>>,
    next_session_id: u32,
    next_link_id: u64,
    /// The last frame written, if it was a disposition that a following one
    /// may extend.
    pub(crate) last_disposition: Option<super::link::LastDisposition>,
    /// A frame that did not fit the peer's max-frame-size was written
    /// (and taken back): what it was. The connection is closed with
    /// `amqp:frame-size-too-small` before anything else goes out.
    oversize: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("phase", &self.phase)
            .field("sessions", &self.sessions.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(config: Arc<ConnectionConfig>, server: bool, now: Instant) -> Self {
        let mut config = config;
        if config.max_frame_size < MIN_MAX_FRAME_SIZE {
            Arc::make_mut(&mut config).max_frame_size = MIN_MAX_FRAME_SIZE;
        }
        Self {
            config,
            server,
            phase: Phase::Done,
            inbuf: BytesMut::new(),
            sasl_client: ClientMechanism::default(),
            out: Output::default(),
            events: VecDeque::new(),
            open_sent: false,
            remote_open: false,
            close_sent: false,
            remote_max_frame_size: MIN_MAX_FRAME_SIZE,
            remote_channel_max: 0,
            remote_idle_timeout: None,
            last_received: now,
            last_sent: now,
            trimmed: false,
            trimmed_once: false,
            sessions: SmallMap::new(),
            local_channels: SmallMap::new(),
            remote_channels: SmallMap::new(),
            links: SmallMap::new(),
            next_session_id: 0,
            next_link_id: 0,
            last_disposition: None,
            oversize: None,
        }
    }

    /// A connection we accepted: it waits for the client's protocol header.
    pub fn server(config: impl Into<Arc<ConnectionConfig>>, now: Instant) -> Self {
        let mut c = Self::new(config.into(), true, now);
        c.phase = Phase::ServerHeader;
        c
    }

    /// A connection we initiate: the protocol header (and, without SASL,
    /// our open) are queued for transmission at once.
    pub fn client(config: impl Into<Arc<ConnectionConfig>>, now: Instant) -> Self {
        let mut c = Self::new(config.into(), false, now);
        if c.config.sasl_client.is_some() {
            c.out.raw().extend_from_slice(&ProtocolHeader::Sasl.bytes());
            c.phase = Phase::ClientSaslHeader;
        } else {
            c.start_amqp_client();
        }
        c
    }

    fn start_amqp_client(&mut self) {
        self.out
            .raw()
            .extend_from_slice(&ProtocolHeader::Amqp.bytes());
        self.send_open();
        self.phase = Phase::ClientAmqpHeader;
    }

    // ---- getters ----

    /// Whether the peer's open has arrived and the connection is not
    /// closing.
    pub fn is_open(&self) -> bool {
        self.remote_open && self.open_sent && !self.close_sent
    }

    /// Whether the peer's open has arrived (whatever happened since).
    pub fn peer_opened(&self) -> bool {
        self.remote_open
    }

    /// Whether the connection has finished: flush [`poll_transmit`]
    /// (Self::poll_transmit) and drop the transport.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The largest frame the peer accepts.
    pub fn remote_max_frame_size(&self) -> u32 {
        self.remote_max_frame_size
    }

    /// Bytes waiting in the output buffer, not yet taken by
    /// [`poll_transmit`](Self::poll_transmit) (for backpressure).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    // ---- inputs ----

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if !data.is_empty() {
            self.last_received = now;
        }
        if data.len() > EMPTY_FRAME_LEN {
            self.trimmed = false;
        }
        self.inbuf.extend_from_slice(data);
        if self.phase == Phase::Sasl(SaslState::ServerDeciding)
            && self.inbuf.len() > self.config.max_frame_size as usize
        {
            // The peer may pipeline its AMQP header and open behind its
            // SASL frame, but not without bound while we decide.
            let error = Error::new(
                condition::FRAMING_ERROR,
                "too much input before the SASL outcome",
            );
            return self.finish(Some(error), false);
        }
        self.process_input();
    }

    /// The transport closed: the peer is gone.
    pub fn handle_eof(&mut self) {
        if self.phase != Phase::Done {
            self.finish(None, true);
        }
    }

    /// Call when `now` reaches [`poll_timeout`](Self::poll_timeout): sends
    /// heartbeats and enforces our idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if let Some(idle) = self.config.idle_timeout
            && self.idle_applies()
            && now >= self.last_received + idle
        {
            self.fail(
                condition::RESOURCE_LIMIT_EXCEEDED,
                "local-idle-timeout expired",
            );
            return;
        }
        if let Some(hb) = self.heartbeat_deadline()
            && now >= hb
            && self.out.is_empty()
        {
            frame::encode_empty_frame(self.out.raw());
        }
        if self.trim_deadline().is_some_and(|t| now >= t) {
            self.trim();
        }
    }

    /// When the buffers left empty after the last traffic are given back:
    /// [`QUIET`] after it, [`FIRST_QUIET`] the first time (`None`: given
    /// back since). A connection
    /// that goes idle keeps none of the room its handshake or its last
    /// burst needed; a busy one reuses its buffers. Heartbeats alone (empty
    /// frames) do not count as traffic here: an idle connection is not
    /// woken a second after each of them.
    fn trim_deadline(&self) -> Option<Instant> {
        let quiet = if self.trimmed_once {
            QUIET
        } else {
            FIRST_QUIET
        };
        (!self.trimmed).then(|| self.last_received.max(self.last_sent) + quiet)
    }

    /// Gives back the room of the empty event queue and input and output
    /// buffers.
    fn trim(&mut self) {
        self.trimmed = true;
        self.trimmed_once = true;
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.inbuf.is_empty() {
            self.inbuf = BytesMut::new();
        }
        if self.out.is_empty() {
            self.last_disposition = None;
            self.out.trim();
        }
    }

    /// Our idle timeout holds in every phase (a peer that connects and
    /// says nothing must not hold a connection forever), except while
    /// our user decides on the peer's SASL frame: the silence is ours.
    fn idle_applies(&self) -> bool {
        self.phase != Phase::Sasl(SaslState::ServerDeciding)
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        let remote = self.remote_idle_timeout?;
        (self.phase == Phase::Amqp).then(|| self.last_sent + remote / 2)
    }

    // ---- outputs ----

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.close_if_oversize();
        self.events.pop_front()
    }

    /// Bytes to send to the peer, if any: call until `None` after every
    /// input or command, and write what it gives in order.
    ///
    /// Output comes in chunks of whole frames, at most 64 KiB unless one
    /// frame is larger, and frames of [priority](Self::set_priority)
    /// sessions come ahead of normal output not yet taken. So a driver
    /// that takes the next chunk only when the socket has taken the last
    /// one keeps priority frames waiting behind at most one chunk.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.close_if_oversize();
        let bytes = self.out.take()?;
        self.last_sent = now;
        if bytes.len() > EMPTY_FRAME_LEN {
            self.trimmed = false;
        }
        self.last_disposition = None;
        Some(bytes)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let idle = self
            .config
            .idle_timeout
            .filter(|_| self.idle_applies())
            .map(|i| self.last_received + i);
        [idle, self.heartbeat_deadline(), self.trim_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- connection-level commands ----

    /// Closes the connection (AMQP 1.0 §2.4.3). Links and sessions end
    /// with it; [`Event::Closed`] follows when the peer answers (or at once
    /// if it is already gone).
    pub fn close(&mut self, error: Option<Error>) {
        if self.close_sent || self.phase == Phase::Done {
            return;
        }
        if self.phase != Phase::Amqp && !self.open_sent {
            // Nothing negotiated yet: just stop.
            self.finish(error, false);
            return;
        }
        if !self.open_sent {
            self.send_open();
        }
        self.write_frame(0, &Performative::Close(Close { error }), &[]);
        self.close_sent = true;
    }

    // ---- internals ----

    pub(crate) fn alloc_session_id(&mut self) -> SessionId {
        self.next_session_id += 1;
        SessionId(self.next_session_id)
    }

    pub(crate) fn alloc_link_id(&mut self) -> LinkId {
        self.next_link_id += 1;
        LinkId(self.next_link_id)
    }

    /// Writes an AMQP frame to the output buffer; returns where.
    ///
    /// A frame larger than the peer's max-frame-size (a performative with
    /// long fields: an attach echoing a peer's long link name or address)
    /// is not sent: nothing more is, and the connection is closed with
    /// `amqp:frame-size-too-small` (AMQP 1.0 §2.8.15: the smallest encoding
    /// of the performative does not fit) when the output or the events are
    /// next polled. Transfers are split to fit by the send path; an open
    /// goes out before the peer's max-frame-size is known.
    pub(crate) fn write_frame(&mut self, channel: u16, p: &Performative, payload: &[u8]) -> Mark {
        self.last_disposition = None;
        let mark = self.out.frame(channel, p, payload);
        let size = self.out.written_since(mark);
        let closing = matches!(p, Performative::Close(_));
        if self.oversize.is_some() && !closing {
            self.out.rewind(mark);
        } else if size > self.remote_max_frame_size as usize && !matches!(p, Performative::Open(_))
        {
            self.out.rewind(mark);
            self.oversize = Some(format!(
                "a {} frame of {size} bytes does not fit the peer's max-frame-size {}",
                p.name(),
                self.remote_max_frame_size
            ));
        }
        mark
    }

    /// Closes the connection if a frame did not fit (see
    /// [`write_frame`](Self::write_frame)).
    fn close_if_oversize(&mut self) {
        if let Some(why) = self.oversize.take()
            && self.phase != Phase::Done
        {
            self.fail(condition::FRAME_SIZE_TOO_SMALL, why);
        }
    }

    fn send_open(&mut self) {
        let idle = self
            .config
            .idle_timeout
            .map(|d| (d.as_millis() / 2).min(u32::MAX as u128) as u32);
        let props = (!self.config.properties.is_empty()).then(|| {
            crate::codec::Fields(
                self.config
                    .properties
                    .iter()
                    .map(|(k, v)| {
                        (
                            Symbol::from(k.as_str()),
                            crate::codec::Value::String(Str::from(v.as_str())),
                        )
                    })
                    .collect(),
            )
        });
        let caps = (!self.config.offered_capabilities.is_empty()).then(|| {
            Symbols(
                self.config
                    .offered_capabilities
                    .iter()
                    .map(|c| Symbol::from(c.as_str()))
                    .collect(),
            )
        });
        let open = Open {
            container_id: Str::from(self.config.container_id.as_str()),
            hostname: self.config.hostname.as_deref().map(Str::from),
            max_frame_size: Some(self.config.max_frame_size),
            channel_max: Some(self.config.channel_max),
            idle_time_out: idle,
            offered_capabilities: caps,
            properties: props,
            ..Open::default()
        };
        self.write_frame(0, &Performative::Open(Box::new(open)), &[]);
        self.open_sent = true;
    }

    /// Ends the connection for a protocol violation by the peer: close with
    /// `condition` and stop reading (AMQP 1.0 §2.4.3: after a close with an
    /// error we need not wait for the answer).
    pub(crate) fn fail(&mut self, condition: ErrorCondition, description: impl Into<String>) {
        let error = Error::new(condition, Str::from(description.into()));
        if self.phase == Phase::Amqp || self.open_sent {
            if !self.open_sent {
                self.send_open();
            }
            if !self.close_sent {
                self.write_frame(
                    0,
                    &Performative::Close(Close {
                        error: Some(error.clone()),
                    }),
                    &[],
                );
                self.close_sent = true;
            }
        }
        self.finish(Some(error), false);
    }

    /// Marks the connection finished: every link and session is reported
    /// gone, then [`Event::Closed`].
    fn finish(&mut self, error: Option<Error>, by_peer: bool) {
        let mut links: Vec<LinkId> = self.links.keys().copied().collect();
        links.sort();
        for link in links {
            self.events.push_back(Event::Detached {
                link,
                closed: false,
                error: None,
            });
        }
        let mut sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
        sessions.sort();
        for session in sessions {
            self.events.push_back(Event::SessionEnded {
                session,
                error: None,
            });
        }
        self.links.clear();
        self.sessions.clear();
        self.out.clear_priorities();
        self.local_channels.clear();
        self.remote_channels.clear();
        self.phase = Phase::Done;
        self.inbuf = BytesMut::new();
        self.events.push_back(Event::Closed { error, by_peer });
    }

    fn process_input(&mut self) {
        loop {
            match self.phase {
                Phase::Done => return,
                Phase::ServerHeader
                | Phase::ServerAmqpHeaderAfterSasl
                | Phase::ClientSaslHeader
                | Phase::ClientAmqpHeader => {
                    if self.inbuf.len() < 8 {
                        return;
                    }
                    let raw: [u8; 8] = self.inbuf[..8].try_into().expect("8 bytes");
                    let _ = self.inbuf.split_to(8);
                    self.handle_header(ProtocolHeader::parse(&raw));
                }
                Phase::Sasl(SaslState::ServerDeciding) => return,
                Phase::Sasl(state) => {
                    match frame::decode_frame(
                        &mut self.inbuf,
                        self.config.max_frame_size,
                        Layer::Sasl,
                    ) {
                        Ok(None) => return,
                        Ok(Some(Frame::Sasl(f))) => self.handle_sasl(state, f),
                        Ok(Some(_)) => unreachable!("the SASL layer yields SASL frames"),
                        Err(e) => {
                            // No AMQP close is possible before the AMQP layer.
                            let error = Error::new(e.condition(), Str::from(e.to_string()));
                            self.finish(Some(error), false);
                        }
                    }
                }
                Phase::Amqp => {
                    match frame::decode_frame(
                        &mut self.inbuf,
                        self.config.max_frame_size,
                        Layer::Amqp,
                    ) {
                        Ok(None) => return,
                        Ok(Some(Frame::Empty)) => {}
                        Ok(Some(Frame::Amqp {
                            channel,
                            performative,
                            payload,
                        })) => self.handle_frame(channel, performative, payload),
                        Ok(Some(Frame::Sasl(_))) => {
                            unreachable!("the AMQP layer yields AMQP frames")
                        }
                        Err(e) => self.fail(e.condition(), e.to_string()),
                    }
                }
            }
        }
    }

    fn handle_header(&mut self, header: Result<ProtocolHeader, [u8; 8]>) {
        use ProtocolHeader as H;
        match (self.phase, header) {
            (Phase::ServerHeader, Ok(H::Sasl)) if self.config.sasl_server.is_some() => {
                self.out.raw().extend_from_slice(&H::Sasl.bytes());
                let cfg = self.config.sasl_server.as_ref().expect("checked");
                frame::encode_sasl_frame(&sasl::server_mechanisms(cfg), self.out.raw());
                self.phase = Phase::Sasl(SaslState::ServerAwaitInit);
            }
            (Phase::ServerHeader, Ok(H::Amqp))
                if !self.config.sasl_server.as_ref().is_some_and(|s| s.required) =>
            {
                self.out.raw().extend_from_slice(&H::Amqp.bytes());
                self.phase = Phase::Amqp;
            }
            (Phase::ServerAmqpHeaderAfterSasl, Ok(H::Amqp)) => {
                self.out.raw().extend_from_slice(&H::Amqp.bytes());
                self.phase = Phase::Amqp;
            }
            (Phase::ClientSaslHeader, Ok(H::Sasl)) => {
                self.phase = Phase::Sasl(SaslState::ClientAwaitMechanisms);
            }
            (Phase::ClientAmqpHeader, Ok(H::Amqp)) => self.phase = Phase::Amqp,
            (phase, got) => {
                // AMQP 1.0 §2.2: answer a header we cannot serve with the
                // one we would accept, then close the socket.
                if phase == Phase::ServerHeader {
                    let ours = if self.config.sasl_server.is_some() {
                        H::Sasl
                    } else {
                        H::Amqp
                    };
                    self.out.raw().extend_from_slice(&ours.bytes());
                }
                let what = match got {
                    Ok(h) => format!("{h:?} protocol header"),
                    Err(raw) => format!("bad protocol header {raw:?}"),
                };
                let error = Error::new(
                    condition::FRAMING_ERROR,
                    Str::from(format!("unexpected {what}")),
                );
                self.finish(Some(error), false);
            }
        }
    }

    fn handle_sasl(&mut self, state: SaslState, f: SaslFrame) {
        let step = if self.server {
            let cfg = self.config.sasl_server.as_ref().expect("server SASL phase");
            sasl::server_step(cfg, state, f)
        } else {
            let cfg = self.config.sasl_client.as_ref().expect("client SASL phase");
            sasl::client_step(cfg, &mut self.sasl_client, state, f)
        };
        match step {
            SaslStep::Reply(reply, next) => {
                frame::encode_sasl_frame(&reply, self.out.raw());
                self.phase = Phase::Sasl(next);
            }
            SaslStep::Decide(event) => {
                self.events.push_back(event);
                self.phase = Phase::Sasl(SaslState::ServerDeciding);
            }
            SaslStep::Done {
                reply,
                mechanism,
                user,
            } => self.sasl_done(reply, mechanism, user),
            SaslStep::Failed { reply, reason } => self.sasl_failed(reply, reason),
        }
    }

    fn sasl_done(&mut self, reply: Option<SaslFrame>, mechanism: String, user: Option<String>) {
        if let Some(reply) = reply {
            frame::encode_sasl_frame(&reply, self.out.raw());
        }
        self.events
            .push_back(Event::Authenticated { mechanism, user });
        if self.server {
            self.phase = Phase::ServerAmqpHeaderAfterSasl;
        } else {
            self.start_amqp_client();
        }
    }

    fn sasl_failed(&mut self, reply: Option<SaslFrame>, reason: String) {
        if let Some(reply) = reply {
            frame::encode_sasl_frame(&reply, self.out.raw());
        }
        let error = Error::new(condition::UNAUTHORIZED_ACCESS, Str::from(reason));
        self.finish(Some(error), false);
    }

    /// Whether we are the server and the peer's last SASL frame awaits
    /// our decision.
    fn sasl_deciding(&self) -> Result<(), EngineError> {
        match self.phase {
            Phase::Sasl(SaslState::ServerDeciding) => Ok(()),
            Phase::Done => Err(EngineError::Closed),
            _ => Err(EngineError::NotDeciding),
        }
    }

    /// Server: answers the peer's [`Event::SaslInit`] or
    /// [`Event::SaslResponse`] with a challenge (AMQP 1.0 §5.3.3.3).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotDeciding`] unless such an event awaits an answer.
    pub fn sasl_challenge(&mut self, challenge: Bytes) -> Result<(), EngineError> {
        self.sasl_deciding()?;
        let frame = SaslFrame::Challenge(SaslChallenge { challenge });
        frame::encode_sasl_frame(&frame, self.out.raw());
        self.phase = Phase::Sasl(SaslState::ServerAwaitResponse);
        Ok(())
    }

    /// Server: the peer authenticated as `user` with `mechanism`: send
    /// the outcome `ok` (with `additional_data`, e.g. SCRAM's
    /// server-final) and go on to the AMQP layer, with the input that
    /// waited.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotDeciding`] unless an event awaits an answer.
    pub fn sasl_accept(
        &mut self,
        mechanism: &str,
        user: Option<String>,
        additional_data: Option<Bytes>,
    ) -> Result<(), EngineError> {
        self.sasl_deciding()?;
        let reply = sasl::outcome(SaslCode::Ok, additional_data);
        self.sasl_done(Some(reply), mechanism.to_string(), user);
        self.process_input();
        Ok(())
    }

    /// Server: authentication failed: send the outcome `code` (AMQP 1.0
    /// §5.3.3.6: `auth` for bad credentials) and end the connection with
    /// `amqp:unauthorized-access` and `reason` (reported in
    /// [`Event::Closed`], never sent: the outcome says all the peer
    /// should learn).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotDeciding`] unless an event awaits an answer.
    pub fn sasl_refuse(&mut self, code: SaslCode, reason: &str) -> Result<(), EngineError> {
        self.sasl_deciding()?;
        self.sasl_failed(Some(sasl::outcome(code, None)), reason.to_string());
        Ok(())
    }

    fn handle_frame(&mut self, channel: u16, p: Performative, payload: Bytes) {
        if self.close_sent && !matches!(p, Performative::Close(_)) {
            return; // AMQP 1.0 §2.4.3: discard everything until the close.
        }
        if !self.remote_open {
            return match p {
                Performative::Open(open) => self.handle_open(*open),
                other => self.fail(
                    condition::ILLEGAL_STATE,
                    format!("{} before open", other.name()),
                ),
            };
        }
        match p {
            Performative::Open(_) => self.fail(condition::ILLEGAL_STATE, "second open"),
            Performative::Close(close) => {
                if !self.close_sent {
                    self.write_frame(0, &Performative::Close(Close::default()), &[]);
                    self.close_sent = true;
                }
                self.finish(close.error, true);
            }
            Performative::Begin(b) => self.handle_begin(channel, b),
            Performative::End(e) => self.handle_end(channel, e),
            Performative::Attach(a) => self.handle_attach(channel, *a),
            Performative::Detach(d) => self.handle_detach(channel, d),
            Performative::Flow(f) => self.handle_flow(channel, f),
            Performative::Transfer(t) => self.handle_transfer(channel, t, payload),
            Performative::Disposition(d) => self.handle_disposition(channel, d),
        }
    }

    fn handle_open(&mut self, open: Open) {
        let max_frame = open.max_frame_size.unwrap_or(u32::MAX);
        if max_frame < MIN_MAX_FRAME_SIZE {
            return self.fail(
                condition::INVALID_FIELD,
                format!("max-frame-size {max_frame} is below 512"),
            );
        }
        self.remote_open = true;
        self.remote_max_frame_size = max_frame;
        self.remote_channel_max = open.channel_max.unwrap_or(u16::MAX);
        self.remote_idle_timeout = open
            .idle_time_out
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms.into()));
        if !self.open_sent {
            self.send_open();
        }
        self.events.push_back(Event::Opened {
            container_id: open.container_id,
            hostname: open.hostname,
            offered_capabilities: open.offered_capabilities,
            properties: open.properties,
        });
    }
}

impl Connection {
    pub(crate) fn open_sent(&self) -> bool {
        self.open_sent
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }
}

/// Gives back the room of a map left mostly empty: a hash map never
/// shrinks by itself (a link's maps after a burst of links or unsettled
/// deliveries: 1,000 links detached left about 100 KiB per connection; the
/// router's address table after 20,000 addresses came and went, 1 MiB).
/// Only maps with room for more than 128 entries, at most a quarter used,
/// are shrunk, to twice what they hold: a map that fills and empties again
/// is rehashed a bounded number of times per doubling, as when it grew.
pub fn shrink_sparse<K, V, S>(map: &mut std::collections::HashMap<K, V, S>)
where
    K: Eq + std::hash::Hash,
    S: std::hash::BuildHasher,
{
    if map.capacity() > 128 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}
