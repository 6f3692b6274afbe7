//! One task per connection: the thin async driver around an
//! [`Endpoint`] (the engine plus the router's link logic, without I/O — the
//! `quinn` to its `quinn-proto`). It moves bytes between the socket and the
//! endpoint, fires its timer, and feeds it messages from other connection
//! tasks.

mod endpoint;
mod links;
mod refuse;

pub use endpoint::Endpoint;
pub use refuse::refuse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use ferry_proto::definitions::{Error, condition};
use tokio::net::TcpStream;

use crate::config::ConnectorConfig;
use crate::core::Core;
use crate::listener::{Accepted, Socket};
use crate::security::Security;
use crate::shutdown::Shutdown;
use crate::tls::CertNames;
use crate::transport::{ReadOutcome, Transport};
pub use endpoint::Peer;
use endpoint::engine_config;
pub use links::Failure;

thread_local! {
    /// Where sockets are read into, one per runtime thread.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Output waiting for the socket beyond which the task stops handling
/// messages from its inbox (they wait, still charged to their producers'
/// byte budgets, which holds the producers back) — except routing-protocol
/// messages, which go out on the priority control session ahead of it.
const MAX_OUTPUT: usize = 1 << 20;

/// Unsent bytes an inter-router socket may hold (`TCP_NOTSENT_LOWAT`,
/// Linux). On a congested path the kernel's send buffer grows to
/// megabytes, and the priority control session's frames, however early
/// the engine hands them out, would wait behind them; with this bound
/// they wait behind at most this much and one chunk. Bytes in flight
/// (the path's bandwidth × delay) are not limited by it.
const MESH_NOTSENT_LOWAT: u32 = 128 * 1024;

/// Messages from other tasks handled between two socket writes.
const MAX_BATCH: usize = 64;

/// How long we wait for the peer's close after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves one accepted connection until it closes or the router shuts
/// down: the TLS handshake first if the listener has a profile.
///
/// Not an `async fn`: its arguments would stay in the future for the
/// connection's lifetime. What the handshakes need is boxed and gone once
/// they are done: an idle connection's future holds only what serving it
/// takes.
pub fn serve(
    accepted: Accepted,
    core: Arc<Core>,
    security: Arc<Security>,
) -> impl Future<Output = ()> + Send {
    let peer = accepted.peer;
    let shutdown = accepted.shutdown.clone();
    let secured = Box::pin(secure(accepted, core, security.clone()));
    async move {
        let Some((transport, endpoint, deadline)) = secured.await else {
            return;
        };
        let (endpoint, reason) = Task::run(transport, endpoint, security, deadline, shutdown).await;
        tracing::debug!("connection {} from {peer} ended: {reason}", endpoint.id().0);
    }
}

/// The handshakes of an accepted connection (TLS or QUIC's), and its
/// endpoint; `None` if it did not get that far. Also returns the deadline
/// for the peer's AMQP open.
async fn secure(
    accepted: Accepted,
    core: Arc<Core>,
    security: Arc<Security>,
) -> Option<(Transport, Box<Endpoint>, Instant)> {
    let Accepted {
        stream,
        peer,
        local,
        listener,
        limits,
        shutdown,
        ..
    } = accepted;
    // TLS (or QUIC's), SASL and the peer's AMQP open, within the limit.
    let deadline = Instant::now() + limits.handshake_timeout();
    let secured = match stream {
        Socket::Quic(incoming) => tokio::select! {
            r = Box::pin(accept_quic(*incoming, &listener, &security, &limits, local)) => {
                r.map_err(|e| e.to_string())
            }
            () = shutdown.triggered() => return None,
        },
        Socket::Tcp(stream) => {
            if listener.role != crate::config::Role::Normal {
                limit_unsent(&stream);
            }
            match &listener.tls {
                None => Ok((Transport::Tcp(stream), None)),
                Some(profile) => {
                    let Some(config) = security.tls.server(profile, listener.client_cert) else {
                        tracing::error!(
                            "tls profile {profile:?} cannot serve the listener on {local}"
                        );
                        return None;
                    };
                    tokio::select! {
                        // Boxed: the handshake's state is large, and held
                        // inline it would make every connection's future
                        // as large for the connection's lifetime.
                        r = Box::pin(crate::tls::accept(stream, config, limits.handshake_timeout())) => {
                            r.map(|s| (s.transport, s.peer)).map_err(|e| e.to_string())
                        }
                        () = shutdown.triggered() => return None,
                    }
                }
            }
        }
    };
    let (transport, cert) = match secured {
        Ok(secured) => secured,
        Err(error) => {
            security.refusals.note(|| {
                // deploy/chaos.sh reads this line.
                tracing::warn!(%peer, "connection refused: {error}");
            });
            return None;
        }
    };
    let over = match transport {
        Transport::Tcp(_) => "",
        Transport::Tls(_) => " over TLS",
        Transport::Quic(_) => " over QUIC",
    };
    let who = Peer {
        addr: Some(peer),
        local: Some(local),
        tls: !over.is_empty(),
        quic: matches!(transport, Transport::Quic(_)),
        cert,
    };
    // Boxed: the connection's future would otherwise hold the endpoint
    // several times over (in `Task::run`'s arguments and in its `Task`),
    // as async fns keep a moved-from local's slot.
    let endpoint = Box::new(Endpoint::accepted(
        core,
        &listener,
        &security,
        who,
        Instant::now(),
    ));
    tracing::debug!(
        "connection {} from {peer} accepted on {local} ({}){over}",
        endpoint.id().0,
        listener.role
    );
    Some((transport, endpoint, deadline))
}

/// The QUIC handshake of an accepted connection (the listener's profile
/// as loaded now), then its streams.
async fn accept_quic(
    incoming: quinn::Incoming,
    listener: &crate::config::ListenerConfig,
    security: &Security,
    limits: &crate::config::Limits,
    local: std::net::SocketAddr,
) -> Result<(Transport, Option<CertNames>), crate::quic::QuicError> {
    let crypto = listener
        .tls
        .as_deref()
        .and_then(|p| security.tls.quic_server(p))
        .ok_or_else(|| {
            crate::quic::QuicError::Socket(std::io::Error::other("no QUIC material in the profile"))
        })?;
    let conn = crate::quic::accept(incoming, crypto, limits.handshake_timeout()).await?;
    let cert = crate::quic::peer_names(&conn);
    let streams = crate::quic::Streams::new(conn, local, limits.max_frame_size as usize)
        .await
        .map_err(crate::quic::QuicError::Socket)?;
    Ok((Transport::Quic(Box::new(streams)), cert))
}

/// How an inter-router connection this router dialed went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialed {
    /// It came up: the neighbour it served (now gone), or for an edge
    /// router's uplink, the interior router.
    Neighbour(crate::routing::RouterId),
    /// It was refused, by this router or by the router dialed.
    Refused(Failure),
    /// It ended before the peer said who it is (`why`).
    Ended(&'static str),
}

/// Runs an inter-router connection this router dialed for `connector`
/// over `transport` (TLS done if the connector has a profile; `cert`:
/// the names in the server's certificate), until it closes or the router
/// shuts down.
pub async fn dial(
    transport: Transport,
    cert: Option<CertNames>,
    core: Arc<Core>,
    security: Arc<Security>,
    connector: &ConnectorConfig,
    deadline: Instant,
    shutdown: Shutdown,
) -> Dialed {
    if let Some(tcp) = transport.tcp() {
        limit_unsent(tcp);
    }
    let who = Peer {
        addr: transport.peer_addr(),
        local: transport.local_addr(),
        tls: !matches!(transport, Transport::Tcp(_)),
        quic: matches!(transport, Transport::Quic(_)),
        cert,
    };
    let endpoint = Box::new(Endpoint::dialed(core, connector, who, Instant::now()));
    let (endpoint, reason) = Task::run(transport, endpoint, security, deadline, shutdown).await;
    tracing::debug!(
        "connection {} to {}:{} ended: {reason}",
        endpoint.id().0,
        connector.host,
        connector.port
    );
    match (
        endpoint.neighbour().or(endpoint.edge_peer()),
        endpoint.failure(),
    ) {
        (Some(neighbour), _) => Dialed::Neighbour(neighbour.clone()),
        (None, Some(failure)) => Dialed::Refused(failure.clone()),
        (None, None) => Dialed::Ended(reason),
    }
}

/// Runs a connection this router dialed to `broker` over `transport`
/// (TLS done if the broker has a profile) until it closes or the router
/// shuts down. Returns whether the broker opened it, and why it ended.
pub async fn dial_broker(
    transport: Transport,
    core: Arc<Core>,
    security: Arc<Security>,
    broker: &crate::config::BrokerConfig,
    password: Option<String>,
    deadline: Instant,
    shutdown: Shutdown,
) -> (bool, &'static str) {
    let who = Peer {
        addr: transport.peer_addr(),
        local: transport.local_addr(),
        tls: !matches!(transport, Transport::Tcp(_)),
        quic: false,
        cert: None,
    };
    let endpoint = Box::new(Endpoint::broker(
        core,
        broker,
        password,
        who,
        Instant::now(),
    ));
    let (endpoint, reason) = Task::run(transport, endpoint, security, deadline, shutdown).await;
    (endpoint.peer_opened(), reason)
}

struct Task {
    transport: Transport,
    endpoint: Box<Endpoint>,
    security: Arc<Security>,
    /// Output taken from the endpoint and not yet written: one chunk of
    /// whole frames (at most 64 KiB unless one frame is larger), so that
    /// priority output the endpoint queues meanwhile waits behind no more.
    pending: Bytes,
}

impl Task {
    /// Drives `endpoint` over `stream` until the connection is over, then
    /// releases what it holds; returns it and why it ended. (Not an
    /// `async fn`, whose arguments would stay in the future beside the
    /// task they were moved into.)
    fn run(
        transport: Transport,
        endpoint: Box<Endpoint>,
        security: Arc<Security>,
        opened_by: Instant,
        shutdown: Shutdown,
    ) -> impl Future<Output = (Box<Endpoint>, &'static str)> + Send {
        let mut task = Task {
            transport,
            endpoint,
            security,
            pending: Bytes::new(),
        };
        async move {
            let reason = task.serve(opened_by, shutdown).await;
            task.endpoint.teardown(Instant::now());
            (task.endpoint, reason)
        }
    }

    /// Serves until the connection is over; a peer whose AMQP open has
    /// not arrived by `opened_by` is dropped.
    async fn serve(&mut self, opened_by: Instant, shutdown: Shutdown) -> &'static str {
        let opened_by = tokio::time::Instant::from_std(opened_by);
        let mut closing_since: Option<tokio::time::Instant> = None;
        // What arrived with the end of a TLS handshake is already read.
        self.read_ready();
        let mut login = None;
        loop {
            // Write what the socket takes now; the rest waits for it to be
            // writable while the task goes on reading (a slow peer must not
            // stop us hearing from it, e.g. its HELLOs).
            if self.write_now().is_err() {
                self.endpoint.handle_eof(Instant::now());
                return "write failed";
            }
            if self.endpoint.is_finished() {
                if self.endpoint.went_silent() {
                    return "nothing heard from the peer within the idle timeout";
                }
                let _ = tokio::time::timeout(CLOSE_GRACE, self.flush()).await;
                return "closed";
            }
            if login.is_none()
                && let Some(check) = self.endpoint.poll_login()
            {
                login = Some(Box::pin(self.security.check_plain(check)));
            }
            let timer = self
                .endpoint
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let close_deadline = closing_since.map(|t| t + CLOSE_GRACE);
            // One timer for all three deadlines: each `Sleep` held in the
            // `select!` is memory every idle connection keeps.
            let open_deadline = (!self.endpoint.peer_opened()).then_some(opened_by);
            let wake = [timer, close_deadline, open_deadline]
                .into_iter()
                .flatten()
                .min();
            // A producer with too many bytes in flight is not read from
            // until some are delivered (see `core::budget`).
            // Boxed, and only while paused: inline, its timer and wake-ups
            // would be memory every idle connection keeps.
            let freed = self
                .endpoint
                .paused_on()
                .map(|budget| Box::pin(async move { budget.freed().await }));
            let paused = freed.is_some();
            let writing = !self.pending.is_empty() || self.transport.wants_write();
            // (Over QUIC, output leaves the engine at once for the stream
            // writers, which hold at most each session's window: one
            // lane's backlog cannot hold back the others' messages.)
            let backlogged = self.pending.len() + self.endpoint.output_backlog() > MAX_OUTPUT;
            self.endpoint.set_congested(backlogged);
            let held = self.endpoint.has_held();
            tokio::select! {
                r = std::future::poll_fn(|cx| self.transport.poll_writable(cx)), if writing => {
                    if r.is_err() {
                        self.endpoint.handle_eof(Instant::now());
                    }
                }
                checked = async { login.as_mut().expect("guarded").await }, if login.is_some() => {
                    login = None;
                    self.endpoint.login_checked(checked, Instant::now());
                }
                () = async { freed.expect("guarded").await }, if paused => {}
                r = std::future::poll_fn(|cx| self.transport.poll_readable(cx)), if !paused => match r {
                    Ok(()) => self.read_ready(),
                    Err(_) => self.endpoint.handle_eof(Instant::now()),
                },
                Some(msg) = self.endpoint.inbox().recv() => {
                    let now = Instant::now();
                    if backlogged {
                        // Routing-protocol messages still go out (on the
                        // priority session, ahead of the backlog); the rest
                        // waits for the output to drain.
                        self.endpoint.hold_message(msg, now);
                    } else {
                        self.endpoint.handle_message(msg, now);
                        // Take more of what is queued before writing, but
                        // not without bound: the engine's output buffer is
                        // memory too.
                        self.endpoint.handle_inbox(MAX_BATCH, now);
                    }
                }
                _ = std::future::ready(()), if held && !backlogged => {
                    self.endpoint.handle_inbox(MAX_BATCH, Instant::now());
                }
                _ = sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if close_deadline.is_some_and(|d| now >= d) {
                        return "peer did not answer close";
                    }
                    if open_deadline.is_some_and(|d| now >= d) {
                        let peer = self.transport.peer_addr();
                        self.security.refusals.note(|| {
                            tracing::warn!(?peer, "connection closed: no AMQP open within the handshake timeout");
                        });
                        return "no open in time";
                    }
                    // What the peer sent while this task waited to run
                    // counts as heard: after a stall of this process the
                    // timer and the socket are ready at once, and the
                    // timer must not win that race into a false silence.
                    if !paused {
                        self.read_ready();
                    }
                    self.endpoint.handle_timeout(Instant::now());
                }
                _ = shutdown.triggered(), if closing_since.is_none() => {
                    closing_since = Some(tokio::time::Instant::now());
                    let error = Error::new(condition::CONNECTION_FORCED, "router shutting down");
                    self.endpoint.close(error, Instant::now());
                }
            }
        }
    }

    /// Writes pending output as far as the socket takes it without waiting.
    fn write_now(&mut self) -> std::io::Result<()> {
        self.transport.flush_now()?;
        loop {
            if self.pending.is_empty() {
                match self.endpoint.poll_transmit(Instant::now()) {
                    Some(bytes) => self.pending = bytes,
                    None => return Ok(()),
                }
            }
            match self.transport.try_write(&self.pending) {
                // Written out: let go of the chunk's buffer (an empty
                // `Bytes` still holds it), which an idle connection would
                // otherwise keep for good.
                Ok(n) if n == self.pending.len() => self.pending = Bytes::new(),
                Ok(n) => self.pending.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all pending output, waiting as needed, then ends our side
    /// of the transport.
    async fn flush(&mut self) -> std::io::Result<()> {
        loop {
            if self.pending.is_empty() {
                match self.endpoint.poll_transmit(Instant::now()) {
                    Some(bytes) => self.pending = bytes,
                    None => return self.transport.shutdown().await,
                }
            }
            self.transport.write_all(&self.pending).await?;
            self.pending = Bytes::new();
        }
    }

    /// Reads what the transport has into the endpoint. The buffer is per
    /// thread, not per connection: an idle connection costs no buffer.
    fn read_ready(&mut self) {
        let now = Instant::now();
        let (transport, endpoint) = (&mut self.transport, &mut self.endpoint);
        let read = READ_BUF
            .with_borrow_mut(|buf| transport.read(buf, |data| endpoint.handle_input(data, now)));
        match read {
            Ok(ReadOutcome::Open) => {}
            Ok(ReadOutcome::Eof) => self.endpoint.handle_eof(now),
            Err(error) => {
                if error.kind() == std::io::ErrorKind::InvalidData {
                    // A TLS error: the alert is queued; send what we can.
                    let _ = self.transport.flush_now();
                    tracing::debug!("connection {}: TLS error: {error}", self.endpoint.id().0);
                }
                self.endpoint.handle_eof(now);
            }
        }
    }
}

/// Bounds the unsent bytes the kernel holds for an inter-router socket
/// (see [`MESH_NOTSENT_LOWAT`]); elsewhere than Linux, does nothing.
fn limit_unsent(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(MESH_NOTSENT_LOWAT) {
        tracing::debug!("cannot set TCP_NOTSENT_LOWAT: {e}");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
