//! A small async AMQP 1.0 client on tokio, driving the sans-IO
//! [`engine`](crate::engine): connect, open senders and receivers, send,
//! receive, settle. Made for Ferry's own tests, tools and load generator.
//!
//! One [`Client`] is one connection with one session, driven by whichever
//! method is awaiting: no background task, no locks. Methods that wait
//! (attach, credit, outcome, delivery) drive the socket until their event
//! arrives and buffer every other event for later calls.

mod dial;
mod error;
mod tls;
mod url;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};

pub use dial::{Dial, Mechanism};
pub use error::ClientError;
pub use tls::{ClientTls, client_config, crypto_provider};
pub use url::Url;

use crate::definitions::{
    DeliveryState, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo, Source, Target,
    TargetTerminus,
};
use crate::engine::{
    Connection, ConnectionConfig, Event, LinkId, LinkSpec, SaslClientConfig, SessionId,
};

thread_local! {
    /// Where sockets are read into, one per thread: an idle client costs
    /// no buffer.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Our container id.
    pub container_id: String,
    /// SASL to perform; `None` sends the bare AMQP header.
    pub sasl: Option<SaslClientConfig>,
    /// Largest frame we accept.
    pub max_frame_size: u32,
    /// Our idle timeout (we advertise half).
    pub idle_timeout: Option<Duration>,
    /// How long any single wait may take before [`ClientError::Timeout`].
    pub timeout: Duration,
    /// Connection properties sent in our open (AMQP 1.0 §2.7.1).
    pub properties: Vec<(String, String)>,
    /// TLS first (amqps), if set.
    pub tls: Option<ClientTls>,
    /// The host name sent in our open (a virtual host, for some servers).
    pub hostname: Option<String>,
    /// The socket's receive buffer (`SO_RCVBUF`), set before connecting:
    /// the most the kernel holds of what the peer sends while we do not
    /// read, as a slow reader on a real network bounds it. `None`: the
    /// system's (on Linux, autotuned up to `tcp_rmem`'s maximum).
    pub recv_buffer: Option<u32>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            container_id: format!("ferry-client-{}", std::process::id()),
            sasl: Some(SaslClientConfig::Anonymous),
            max_frame_size: 65536,
            idle_timeout: Some(Duration::from_secs(60)),
            timeout: Duration::from_secs(30),
            properties: Vec::new(),
            tls: None,
            hostname: None,
            recv_buffer: None,
        }
    }
}

/// The socket, with TLS or without.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Waits for input and hands it to `sink`; returns how many bytes
    /// (0: the peer closed). Reads into the thread's buffer, borrowed only
    /// inside a poll, so an idle client holds none. Cancel-safe.
    async fn read_into(&mut self, mut sink: impl FnMut(&[u8])) -> std::io::Result<usize> {
        use std::pin::Pin;
        use std::task::Poll;
        use tokio::io::{AsyncRead, ReadBuf};
        std::future::poll_fn(|cx| {
            READ_BUF.with_borrow_mut(|buf| {
                let mut read = ReadBuf::new(buf);
                let polled = match self {
                    Self::Tcp(s) => Pin::new(s).poll_read(cx, &mut read),
                    Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, &mut read),
                };
                match polled {
                    Poll::Ready(Ok(())) => {
                        let n = read.filled().len();
                        if n > 0 {
                            sink(read.filled());
                        }
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
        })
        .await
    }
}

/// A message that arrived on a receiver, reassembled from its frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The receiving link.
    pub link: LinkId,
    /// The delivery id, for [`Client::settle`].
    pub id: SequenceNo,
    /// The delivery tag.
    pub tag: Bytes,
    /// The encoded message.
    pub payload: Bytes,
    /// Whether the sender settled it already.
    pub settled: bool,
}

/// An outcome of one of our deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The sending link.
    pub link: LinkId,
    /// The delivery id [`Client::send_nowait`] returned.
    pub id: SequenceNo,
    /// The receiver's outcome (`None` if it settled without one).
    pub state: Option<DeliveryState>,
}

#[derive(Debug, Default)]
struct LinkBuf {
    attached: Option<Box<crate::definitions::Attach>>,
    detached: Option<Option<crate::definitions::Error>>,
    partial: Option<(SequenceNo, Bytes, bool, BytesMut)>,
    deliveries: VecDeque<Delivery>,
    drained: bool,
}

/// One connection with one session. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    engine: Connection,
    session: SessionId,
    links: HashMap<LinkId, LinkBuf>,
    outcomes: VecDeque<Outcome>,
    closed: Option<Option<crate::definitions::Error>>,
    timeout: Duration,
    next_tag: u64,
    next_name: u64,
}

impl Client {
    /// Connects, negotiates SASL and open, and begins a session.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let connect = async {
            let Some(size) = options.recv_buffer else {
                return TcpStream::connect(addr).await;
            };
            let mut last = None;
            for addr in tokio::net::lookup_host(addr).await? {
                let socket = match addr {
                    std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                socket.set_recv_buffer_size(size)?;
                match socket.connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
            }))
        };
        let stream = tokio::time::timeout(options.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout("connect"))??;
        stream.set_nodelay(true)?;
        let stream = match &options.tls {
            None => Stream::Tcp(stream),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                    .map_err(|_| {
                        ClientError::Tls(format!("bad server name {:?}", tls.server_name))
                    })?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = tokio::time::timeout(options.timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| ClientError::Timeout("TLS handshake"))?
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                Stream::Tls(Box::new(stream))
            }
        };
        let config = ConnectionConfig {
            container_id: options.container_id.clone(),
            hostname: options.hostname.clone(),
            max_frame_size: options.max_frame_size,
            idle_timeout: options.idle_timeout,
            sasl_client: options.sasl.clone(),
            properties: options.properties.clone(),
            ..ConnectionConfig::default()
        };
        let engine = Connection::client(config, Instant::now());
        let mut c = Client {
            stream,
            engine,
            session: SessionId(0),
            links: HashMap::new(),
            outcomes: VecDeque::new(),
            closed: None,
            timeout: options.timeout,
            next_tag: 0,
            next_name: 0,
        };
        let mut opened = false;
        c.drive_until("open", |ev, _| {
            if matches!(ev, Some(Event::Opened { .. })) {
                opened = true;
            }
            opened
        })
        .await?;
        c.session = match c.engine.begin_session() {
            Ok(session) => session,
            // Closed by the peer right after its open: say why.
            Err(crate::engine::EngineError::Closed) => {
                return Err(ClientError::ConnectionClosed(c.closed.clone().flatten()));
            }
            Err(e) => return Err(e.into()),
        };
        let session = c.session;
        let mut begun = false;
        c.drive_until("begin", |ev, _| {
            if matches!(ev, Some(Event::SessionBegun { session: s, .. }) if *s == session) {
                begun = true;
            }
            begun
        })
        .await?;
        Ok(c)
    }

    /// How the peer closed the connection, if it has: `Some(error)`.
    pub fn closed_by_peer(&self) -> Option<&Option<crate::definitions::Error>> {
        self.closed.as_ref()
    }

    /// The engine, for what this API does not wrap.
    pub fn engine(&mut self) -> &mut Connection {
        &mut self.engine
    }

    fn link_name(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}-{}-{}", std::process::id(), self.next_name)
    }

    async fn attach(
        &mut self,
        spec: LinkSpec,
    ) -> Result<(LinkId, Box<crate::definitions::Attach>), ClientError> {
        let link = self.engine.attach(self.session, spec)?;
        self.links.insert(link, LinkBuf::default());
        self.drive_until("attach", |_, links| {
            links
                .get(&link)
                .is_some_and(|b| b.attached.is_some() || b.detached.is_some())
        })
        .await?;
        // A refusal is an attach with a null terminus followed by detach:
        // wait a moment for the detach so its error can be reported.
        let buf = &self.links[&link];
        let attach = buf.attached.clone();
        let refused = attach
            .as_ref()
            .is_none_or(|a| a.source.is_none() || a.target.is_none());
        if refused {
            self.drive_until("detach after refusal", |_, links| {
                links.get(&link).is_some_and(|b| b.detached.is_some())
            })
            .await?;
            let err = self.links[&link].detached.clone().flatten();
            return Err(ClientError::Refused(err));
        }
        Ok((link, attach.expect("attached")))
    }

    /// Opens a sender to `address` (`None`: the anonymous relay, routing by
    /// each message's `to`).
    pub async fn open_sender(&mut self, address: Option<&str>) -> Result<LinkId, ClientError> {
        let name = self.link_name("sender");
        let spec = LinkSpec {
            name,
            role: Role::Sender,
            source: Some(Source::default()),
            target: Some(TargetTerminus::Target(Target {
                address: address.map(Into::into),
                ..Target::default()
            })),
            snd_settle_mode: SenderSettleMode::Mixed,
            ..LinkSpec::default()
        };
        Ok(self.attach(spec).await?.0)
    }

    /// Opens a receiver from `address` and grants it `credit`.
    pub async fn open_receiver(
        &mut self,
        address: &str,
        credit: u32,
    ) -> Result<LinkId, ClientError> {
        let source = Source::new(address);
        let (link, _) = self.open_receiver_with(source, credit).await?;
        Ok(link)
    }

    /// Opens a receiver on a dynamic node (AMQP 1.0 §3.5.3, `dynamic`):
    /// returns the link and the address the peer assigned.
    pub async fn open_dynamic_receiver(
        &mut self,
        credit: u32,
    ) -> Result<(LinkId, String), ClientError> {
        let source = Source {
            dynamic: Some(true),
            ..Source::default()
        };
        let (link, attach) = self.open_receiver_with(source, credit).await?;
        let address = attach
            .source
            .and_then(|s| s.address)
            .ok_or(ClientError::Protocol("dynamic source without an address"))?;
        Ok((link, address.to_string()))
    }

    /// Opens a receiver with a source of your making.
    pub async fn open_receiver_with(
        &mut self,
        source: Source,
        credit: u32,
    ) -> Result<(LinkId, Box<crate::definitions::Attach>), ClientError> {
        let name = self.link_name("receiver");
        let spec = LinkSpec {
            name,
            role: Role::Receiver,
            source: Some(source),
            target: Some(TargetTerminus::Target(Target::default())),
            rcv_settle_mode: ReceiverSettleMode::First,
            ..LinkSpec::default()
        };
        let (link, attach) = self.attach(spec).await?;
        if credit > 0 {
            self.engine.flow(link, credit, false)?;
            self.flush().await?;
        }
        Ok((link, attach))
    }

    /// Sets a receiver's credit.
    pub async fn flow(&mut self, link: LinkId, credit: u32) -> Result<(), ClientError> {
        self.engine.flow(link, credit, false)?;
        self.flush().await
    }

    /// Asks the sender to use up or return the receiver's credit, and
    /// waits until it has.
    pub async fn drain(&mut self, link: LinkId) -> Result<(), ClientError> {
        let credit = self.engine.credit(link);
        if let Some(b) = self.links.get_mut(&link) {
            b.drained = false;
        }
        self.engine.flow(link, credit, true)?;
        self.drive_until("drain", |_, links| {
            links.get(&link).is_some_and(|b| b.drained)
        })
        .await
    }

    /// A sender's current credit.
    pub fn credit(&self, link: LinkId) -> u32 {
        self.engine.credit(link)
    }

    /// Waits until a sender has credit; returns it.
    pub async fn wait_credit(&mut self, link: LinkId) -> Result<u32, ClientError> {
        let engine_credit = |c: &Client| c.engine.credit(link);
        if engine_credit(self) > 0 {
            return Ok(engine_credit(self));
        }
        self.drive_until("credit", |ev, links| {
            matches!(ev, Some(Event::Credit { link: l, credit, .. }) if *l == link && *credit > 0)
                || links.get(&link).is_some_and(|b| b.detached.is_some())
        })
        .await?;
        self.check_link(link)?;
        Ok(self.engine.credit(link))
    }

    fn check_link(&self, link: LinkId) -> Result<(), ClientError> {
        if let Some(err) = &self.closed {
            return Err(ClientError::ConnectionClosed(err.clone()));
        }
        match self.links.get(&link).and_then(|b| b.detached.clone()) {
            Some(err) => Err(ClientError::Detached(err)),
            None => Ok(()),
        }
    }

    /// Sends an encoded message without waiting (the sender must have
    /// credit). Returns the delivery id; its outcome comes from
    /// [`next_outcome`](Self::next_outcome) unless `settled`.
    pub fn send_nowait(
        &mut self,
        link: LinkId,
        message: Bytes,
        settled: bool,
    ) -> Result<SequenceNo, ClientError> {
        self.next_tag += 1;
        let tag = Bytes::copy_from_slice(&self.next_tag.to_be_bytes());
        Ok(self.engine.send(link, tag, message, settled, false)?)
    }

    /// Sends an encoded message unsettled once the sender has credit, and
    /// waits for its outcome.
    pub async fn send(
        &mut self,
        link: LinkId,
        message: Bytes,
    ) -> Result<Option<DeliveryState>, ClientError> {
        self.wait_credit(link).await?;
        let id = self.send_nowait(link, message, false)?;
        loop {
            if let Some(i) = self
                .outcomes
                .iter()
                .position(|o| o.link == link && o.id == id)
            {
                return Ok(self.outcomes.remove(i).expect("found").state);
            }
            self.check_link(link)?;
            self.step("outcome").await?;
        }
    }

    /// Sends a message pre-settled once the sender has credit.
    pub async fn send_settled(&mut self, link: LinkId, message: Bytes) -> Result<(), ClientError> {
        self.wait_credit(link).await?;
        self.send_nowait(link, message, true)?;
        self.flush().await
    }

    /// The next outcome of any of our unsettled deliveries.
    pub async fn next_outcome(&mut self) -> Result<Outcome, ClientError> {
        loop {
            if let Some(o) = self.outcomes.pop_front() {
                return Ok(o);
            }
            self.step("outcome").await?;
        }
    }

    /// Outcomes that have arrived, without waiting.
    pub fn take_outcomes(&mut self) -> impl Iterator<Item = Outcome> + '_ {
        self.outcomes.drain(..)
    }

    /// Waits for the next message on `link`.
    pub async fn receive(&mut self, link: LinkId) -> Result<Delivery, ClientError> {
        loop {
            if let Some(d) = self
                .links
                .get_mut(&link)
                .and_then(|b| b.deliveries.pop_front())
            {
                return Ok(d);
            }
            self.check_link(link)?;
            if !self.links.contains_key(&link) {
                return Err(ClientError::Detached(None));
            }
            self.step("delivery").await?;
        }
    }

    /// A message that has already arrived on `link`, without waiting.
    pub fn try_receive(&mut self, link: LinkId) -> Option<Delivery> {
        self.links
            .get_mut(&link)
            .and_then(|b| b.deliveries.pop_front())
    }

    /// Settles a received delivery with an outcome (queued; sent with the
    /// next wait or [`flush`](Self::flush)).
    pub fn settle(&mut self, delivery: &Delivery, state: DeliveryState) -> Result<(), ClientError> {
        if delivery.settled {
            return Ok(());
        }
        Ok(self
            .engine
            .disposition(delivery.link, delivery.id, Some(state), true)?)
    }

    /// Accepts a received delivery.
    pub fn accept(&mut self, delivery: &Delivery) -> Result<(), ClientError> {
        self.settle(delivery, DeliveryState::Accepted)
    }

    /// Detaches (closes) a link and waits for the answer.
    pub async fn close_link(&mut self, link: LinkId) -> Result<(), ClientError> {
        self.engine.detach(link, true, None)?;
        self.drive_until("detach", |_, links| {
            links.get(&link).is_none_or(|b| b.detached.is_some())
        })
        .await
    }

    /// Whether a link has been detached (by either side).
    pub fn is_detached(&self, link: LinkId) -> bool {
        self.links.get(&link).is_none_or(|b| b.detached.is_some())
    }

    /// The error a link was detached with, if it was detached.
    pub fn detach_error(&self, link: LinkId) -> Option<Option<crate::definitions::Error>> {
        self.links.get(&link).and_then(|b| b.detached.clone())
    }

    /// Closes the connection and waits for the peer's close.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.engine.close(None);
        let r = self.drive_until("close", |_, _| false).await;
        match r {
            Err(ClientError::ConnectionClosed(None)) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes everything the engine has queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(bytes) = self.engine.poll_transmit(Instant::now()) {
            self.stream.write_all(&bytes).await?;
        }
        Ok(())
    }

    /// Processes buffered events, then reads once (or fires a timer).
    /// Drives I/O until `done` says so; `done` sees each event and the
    /// link buffers.
    async fn drive_until(
        &mut self,
        what: &'static str,
        mut done: impl FnMut(Option<&Event>, &HashMap<LinkId, LinkBuf>) -> bool,
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if done(None, &self.links) {
                return Ok(());
            }
            self.flush().await?;
            // Absorb every queued event before deciding, so that state
            // which arrives together (a detach and the close behind it) is
            // seen together.
            let mut hit = false;
            while let Some(ev) = self.engine.poll_event() {
                hit |= done(Some(&ev), &self.links);
                self.absorb(ev);
            }
            if hit || done(None, &self.links) {
                self.flush().await?;
                return Ok(());
            }
            if let Some(err) = &self.closed {
                return Err(ClientError::ConnectionClosed(err.clone()));
            }
            self.read_once(what, deadline).await?;
        }
    }

    async fn step(&mut self, what: &'static str) -> Result<(), ClientError> {
        let mut fired = false;
        self.drive_until(what, |ev, _| {
            fired |= ev.is_some();
            fired
        })
        .await
    }

    async fn read_once(
        &mut self,
        what: &'static str,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClientError> {
        let timer = self
            .engine
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        let wake = timer.map_or(deadline, |t| t.min(deadline));
        let now = Instant::now;
        let (stream, engine) = (&mut self.stream, &mut self.engine);
        tokio::select! {
            r = stream.read_into(|data| engine.handle_input(data, now())) => {
                if r? == 0 {
                    self.engine.handle_eof();
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if wake >= deadline {
                    return Err(ClientError::Timeout(what));
                }
                self.engine.handle_timeout(Instant::now());
            }
        }
        Ok(())
    }

    fn absorb(&mut self, ev: Event) {
        match ev {
            Event::Attached { link, attach } => {
                self.links.entry(link).or_default().attached = Some(attach);
            }
            Event::Detached { link, error, .. } => {
                let b = self.links.entry(link).or_default();
                b.detached = Some(error);
                // Pending outcomes of a detached link will never come.
            }
            Event::AttachRequested { link, .. } => {
                let _ = self.engine.refuse_attach(
                    link,
                    crate::definitions::Error::new(
                        crate::definitions::condition::NOT_IMPLEMENTED,
                        "this client does not accept links",
                    ),
                );
            }
            Event::Drained { link } => self.links.entry(link).or_default().drained = true,
            Event::Available { .. } => {}
            Event::Transfer(t) => {
                let b = self.links.entry(t.link).or_default();
                if t.aborted {
                    b.partial = None;
                    return;
                }
                if t.first && !t.more {
                    // A single-frame delivery: its payload is the message,
                    // no copy.
                    b.deliveries.push_back(Delivery {
                        link: t.link,
                        id: t.delivery,
                        tag: t.tag,
                        payload: t.payload,
                        settled: t.settled,
                    });
                    return;
                }
                let (id, tag, settled, mut data) = match b.partial.take() {
                    Some(p) => p,
                    None => (t.delivery, t.tag.clone(), t.settled, BytesMut::new()),
                };
                data.extend_from_slice(&t.payload);
                if t.more {
                    b.partial = Some((id, tag, settled || t.settled, data));
                } else {
                    b.deliveries.push_back(Delivery {
                        link: t.link,
                        id,
                        tag,
                        payload: data.freeze(),
                        settled: settled || t.settled,
                    });
                }
            }
            Event::Disposition {
                link,
                delivery,
                state,
                settled,
            } => {
                let terminal = state.as_ref().is_some_and(DeliveryState::is_terminal);
                if settled || terminal {
                    self.outcomes.push_back(Outcome {
                        link,
                        id: delivery,
                        state,
                    });
                }
            }
            Event::Closed { error, .. } => self.closed = Some(error),
            Event::Authenticated { .. }
            | Event::SaslInit { .. }
            | Event::SaslResponse { .. }
            | Event::Opened { .. }
            | Event::SessionBegun { .. }
            | Event::SessionEnded { .. }
            | Event::Credit { .. } => {}
        }
    }
}
