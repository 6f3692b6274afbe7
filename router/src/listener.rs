//! Listeners: bind every `[[listener]]`, accept connections, cap their
//! number, and hand each one to the [`ConnectionHandler`] seam; on shutdown,
//! stop accepting and wait (bounded) for the connections to finish.
//!
//! Modelled on mini-redis's `server.rs`. Over `limits.max_connections`, a
//! new connection is accepted and refused the AMQP way (`open`, then `close`
//! with `amqp:resource-limit-exceeded`, see [`crate::driver::refuse`]),
//! rather than left waiting in the kernel's backlog. At most
//! [`MAX_REFUSALS`] refusals run at once; beyond that the socket is just
//! closed, so a flood of connections costs nothing.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, info, warn};

use crate::config::{Config, Limits, ListenerConfig, TransportKind};
use crate::security::Security;
use crate::shutdown::{self, Shutdown, Trigger};

/// How long [`Server::run`] waits, after shutdown starts, for connection
/// tasks to finish before aborting them.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Refusals (over the connection limit) in progress at once, at most.
pub const MAX_REFUSALS: usize = 64;

/// First pause after a failed `accept`; doubles up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after failed `accept`s (e.g. out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A boxed future returned by a [`ConnectionHandler`].
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// **The seam**: what the router does with each accepted connection.
///
/// Called once per connection, on the accept loop; the returned future runs
/// in its own task, which is the connection's lifetime: the connection slot
/// (see `limits.max_connections`) is freed when it completes. It should
/// complete soon after `accepted.shutdown` fires (closing the connection
/// cleanly, e.g. with an AMQP `close`); after [`DEFAULT_GRACE`] it is
/// aborted. The AMQP engine's connection driver plugs in here.
pub type ConnectionHandler = Arc<dyn Fn(Accepted) -> BoxFuture + Send + Sync + 'static>;

/// Make a [`ConnectionHandler`] from an async function or closure.
pub fn connection_handler<F, Fut>(handler: F) -> ConnectionHandler
where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |accepted| Box::pin(handler(accepted)))
}

/// An accepted connection's socket.
#[derive(Debug)]
pub enum Socket {
    /// TCP, with `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A QUIC connection attempt, its handshake not yet done (it is the
    /// connection task's to finish, within the handshake timeout).
    Quic(Box<quinn::Incoming>),
}

/// An accepted connection, as handed to the [`ConnectionHandler`].
#[derive(Debug)]
pub struct Accepted {
    /// The socket.
    pub stream: Socket,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The local address it was accepted on.
    pub local: SocketAddr,
    /// The `[[listener]]` that accepted it (role, SASL settings).
    pub listener: Arc<ListenerConfig>,
    /// The router's `[limits]`.
    pub limits: Arc<Limits>,
    /// Fires when the router shuts down.
    pub shutdown: Shutdown,
}

/// A listener could not be bound. Display names the address; the
/// operating system's reason is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (listener[{index}])")]
pub struct BindError {
    /// Position of the `[[listener]]` in the configuration.
    pub index: usize,
    /// `host:port` as configured.
    pub address: String,
    /// The operating system's reason.
    #[source]
    pub source: io::Error,
}

/// How a [`Server::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Connection tasks still running at the end of the grace period, and
    /// therefore aborted.
    pub aborted: usize,
}

/// One bound listener.
struct Bound {
    index: usize,
    /// What new connections get (changed by management's UPDATE).
    config: watch::Receiver<Arc<ListenerConfig>>,
    socket: Listening,
    local: SocketAddr,
    /// Set for a listener added at run time: the configuration's stay
    /// until the router stops.
    deletion: Option<Deletion>,
}

/// How a listener added at run time is deleted.
struct Deletion {
    /// Fires when management deletes it.
    requested: Shutdown,
    /// Answered once its socket is closed, so that a DELETE is answered
    /// only when nothing more can connect.
    done: oneshot::Sender<()>,
}

/// A bound listener's socket.
enum Listening {
    Tcp(TcpListener),
    /// A QUIC endpoint on a UDP socket.
    Quic(quinn::Endpoint),
}

impl Listening {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr(),
            Self::Quic(e) => e.local_addr(),
        }
    }

    async fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((Socket::Tcp(stream), peer))
            }
            Self::Quic(e) => match e.accept().await {
                Some(incoming) => {
                    let peer = incoming.remote_address();
                    Ok((Socket::Quic(Box::new(incoming)), peer))
                }
                None => std::future::pending().await,
            },
        }
    }

    /// Stops accepting; connections accepted carry on.
    fn close(self) {
        if let Self::Quic(e) = self {
            e.set_server_config(None);
        }
    }
}

impl Bound {
    async fn new(
        index: usize,
        listener: &ListenerConfig,
        security: &Security,
    ) -> Result<Self, BindError> {
        let address = host_port(&listener.host, listener.port);
        let bind_error = |source| BindError {
            index,
            address: address.clone(),
            source,
        };
        let socket = match listener.transport {
            TransportKind::Tcp => Listening::Tcp(
                TcpListener::bind((listener.host.as_str(), listener.port))
                    .await
                    .map_err(bind_error)?,
            ),
            TransportKind::Quic => {
                let crypto = listener
                    .tls
                    .as_deref()
                    .and_then(|p| security.tls.quic_server(p))
                    .ok_or_else(|| {
                        bind_error(io::Error::other(
                            "quic needs a tls profile with cert, key and ca",
                        ))
                    })?;
                let addr = tokio::net::lookup_host((listener.host.as_str(), listener.port))
                    .await
                    .map_err(bind_error)?
                    .next()
                    .ok_or_else(|| bind_error(io::Error::other("the host does not resolve")))?;
                Listening::Quic(crate::quic::listen(addr, crypto).map_err(bind_error)?)
            }
        };
        let local = socket.local_addr().map_err(bind_error)?;
        Ok(Self {
            index,
            config: watch::Sender::new(Arc::new(listener.clone())).subscribe(),
            socket,
            local,
            deletion: None,
        })
    }
}

impl Bound {
    /// `127.0.0.1:5672 (normal)`, `0.0.0.0:5673 (inter-router, quic)`.
    fn describe(&self) -> String {
        let config = self.config.borrow();
        match config.transport {
            TransportKind::Tcp => format!("{} ({})", self.local, config.role),
            TransportKind::Quic => format!("{} ({}, quic)", self.local, config.role),
        }
    }
}

/// Every listener of a configuration, bound and not yet accepting.
pub struct Server {
    bound: Vec<Bound>,
    limits: Arc<Limits>,
    grace: Duration,
    added: mpsc::UnboundedReceiver<Bound>,
    listeners: Listeners,
}

/// Adds listeners to a running [`Server`] (management's CREATE): they
/// share its connection limits and its shutdown.
#[derive(Debug, Clone)]
pub struct Listeners {
    tx: mpsc::UnboundedSender<Bound>,
    security: Arc<Security>,
}

impl Listeners {
    /// Binds `listener` and has the server accept on it while the
    /// returned [`Added`] lives; then it stops accepting, and the
    /// connections it accepted carry on until they end or the router
    /// stops.
    ///
    /// # Errors
    ///
    /// A [`BindError`] if the socket cannot be bound or the server has
    /// stopped.
    pub async fn add(&self, index: usize, listener: &ListenerConfig) -> Result<Added, BindError> {
        let mut bound = Bound::new(index, listener, &self.security).await?;
        let (stop, requested) = shutdown::channel();
        let (done, closed) = oneshot::channel();
        let (config, rx) = watch::channel(Arc::new(listener.clone()));
        bound.deletion = Some(Deletion { requested, done });
        bound.config = rx;
        let local = bound.local;
        self.tx.send(bound).map_err(|_| BindError {
            index,
            address: local.to_string(),
            source: io::Error::other("the router is stopping"),
        })?;
        Ok(Added {
            local,
            config,
            stop,
            closed,
        })
    }
}

/// A listener added at run time: accepting until dropped.
#[derive(Debug)]
pub struct Added {
    /// The bound address (the port the system chose for port 0).
    pub local: SocketAddr,
    config: watch::Sender<Arc<ListenerConfig>>,
    /// Dropped (or fired), the listener stops accepting.
    stop: Trigger,
    /// Answered once the socket is closed.
    closed: oneshot::Receiver<()>,
}

impl Added {
    /// Replaces the settings connections accepted from now on get (role,
    /// SASL, TLS); those already accepted keep theirs.
    pub fn update(&self, listener: ListenerConfig) {
        self.config.send_replace(Arc::new(listener));
    }

    /// Stops accepting; completes once the socket is closed (a client
    /// connecting afterwards is refused by the operating system). The
    /// connections accepted before carry on.
    pub async fn close(self) {
        self.stop.fire();
        // An error: the accept loop has ended, its socket with it.
        let _ = self.closed.await;
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// `host:port`, with brackets around IPv6 literals.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Server {
    /// Bind every `[[listener]]` of `config`, in order; the first failure
    /// (e.g. port in use) is returned and nothing is left bound. Logs
    /// `listening on ADDR (ROLE)` for each once all are bound.
    ///
    /// # Errors
    ///
    /// A [`BindError`] naming the first listener that could not be bound.
    pub async fn bind(config: &Config, security: Arc<Security>) -> Result<Self, BindError> {
        let mut bound = Vec::with_capacity(config.listeners.len());
        for (index, listener) in config.listeners.iter().enumerate() {
            bound.push(Bound::new(index, listener, &security).await?);
        }
        for b in &bound {
            info!("listening on {}", b.describe());
        }
        let (tx, added) = mpsc::unbounded_channel();
        Ok(Self {
            bound,
            limits: Arc::new(config.limits.clone()),
            grace: DEFAULT_GRACE,
            added,
            listeners: Listeners { tx, security },
        })
    }

    /// A handle to add listeners while the server runs.
    pub fn listeners(&self) -> Listeners {
        self.listeners.clone()
    }

    /// The bound addresses, in configuration order (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound.iter().map(|b| b.local).collect()
    }

    /// Replace [`DEFAULT_GRACE`].
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Accept connections on every listener and pass each to `handler`,
    /// until `stop` completes. Then stop accepting, signal every connection
    /// task through its [`Shutdown`], wait up to the grace period for them
    /// to finish, and abort those left.
    pub async fn run(
        mut self,
        handler: ConnectionHandler,
        stop: impl Future<Output = ()>,
    ) -> Drained {
        let (trigger, shutdown) = shutdown::channel();
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let hosts = Arc::new(Hosts::default());
        let mut loops = JoinSet::new();
        let accept = |bound| AcceptLoop {
            bound,
            handler: handler.clone(),
            limits: self.limits.clone(),
            slots: slots.clone(),
            hosts: hosts.clone(),
            shutdown: shutdown.clone(),
            grace: self.grace,
        };
        for bound in std::mem::take(&mut self.bound) {
            loops.spawn(accept(bound).run().in_current_span());
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(bound) = self.added.recv() => {
                    info!("listening on {}", bound.describe());
                    loops.spawn(accept(bound).run().in_current_span());
                }
            }
        }
        self.added.close();
        trigger.fire();
        let mut drained = Drained::default();
        while let Some(result) = loops.join_next().await {
            match result {
                Ok(aborted) => drained.aborted += aborted,
                Err(error) => error!("accept loop failed: {error}"),
            }
        }
        drained
    }
}

/// Connections open per client address (`limits.max_connections_per_host`).
#[derive(Debug, Default)]
struct Hosts {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A connection counted against its address; gives its place back on drop.
struct HostSlot {
    hosts: Arc<Hosts>,
    ip: std::net::IpAddr,
}

impl Hosts {
    /// Counts a connection from `ip` if fewer than `max` are open (0: no
    /// bound).
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<HostSlot> {
        let mut open = self.open.lock().expect("hosts lock");
        let n = open.entry(ip).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(HostSlot {
            hosts: self.clone(),
            ip,
        })
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let mut open = self.hosts.open.lock().expect("hosts lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// One listener's accept loop and the connection tasks it spawned.
struct AcceptLoop {
    bound: Bound,
    handler: ConnectionHandler,
    limits: Arc<Limits>,
    slots: Arc<Semaphore>,
    hosts: Arc<Hosts>,
    shutdown: Shutdown,
    grace: Duration,
}

impl AcceptLoop {
    /// Accept until shutdown, then drain; returns the number of connection
    /// tasks aborted at the end of the grace period.
    async fn run(self) -> usize {
        let Self {
            mut bound,
            handler,
            limits,
            slots,
            hosts,
            shutdown,
            grace,
        } = self;
        let mut tasks = JoinSet::new();
        let mut backoff = MIN_ACCEPT_BACKOFF;
        let mut refusing = false;
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
        let (requested, mut done) = match bound.deletion.take() {
            Some(d) => (Some(d.requested), Some(d.done)),
            None => (None, None),
        };
        let deleted = async {
            match &requested {
                Some(requested) => requested.triggered().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deleted);
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.triggered() => break,
                () = &mut deleted => {
                    info!(
                        "no longer listening on {}; the {} connection(s) it accepted carry on",
                        bound.local, tasks.len()
                    );
                    return close(bound.socket, done.take(), tasks, &shutdown, grace).await;
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    report(done);
                    continue;
                }
                accepted = bound.socket.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff = MIN_ACCEPT_BACKOFF;
                    accepted
                }
                Err(error) => {
                    warn!(
                        "listener[{}] cannot accept: {error}; retrying in {backoff:?}",
                        bound.index
                    );
                    tokio::select! {
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            };
            let listener = bound.config.borrow().clone();
            let over_host =
                |peer: SocketAddr| hosts.take(peer.ip(), limits.max_connections_per_host);
            let taken = slots
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|slot| (slot, over_host(peer)));
            let (slot, host) = match taken {
                Some((slot, Some(host))) => (slot, host),
                Some((_, None)) => {
                    debug!("connection from {peer} refused: too many from its address");
                    let reason = format!(
                        "the router serves at most {} connections from one address",
                        limits.max_connections_per_host
                    );
                    refuse(&refusals, stream, &listener, &limits, reason);
                    continue;
                }
                None => {
                    if !refusing {
                        warn!(
                            "connection limit reached (limits.max_connections = {}); closing new connections until one ends",
                            limits.max_connections
                        );
                        refusing = true;
                    }
                    debug!("connection from {peer} refused: limit reached");
                    let reason = format!(
                        "the router serves at most {} connections",
                        limits.max_connections
                    );
                    refuse(&refusals, stream, &listener, &limits, reason);
                    continue;
                }
            };
            if refusing {
                info!("below the connection limit again; accepting");
                refusing = false;
            }
            if let Socket::Tcp(tcp) = &stream
                && let Err(error) = tcp.set_nodelay(true)
            {
                debug!("cannot set TCP_NODELAY on the connection from {peer}: {error}");
            }
            let connection = handler(Accepted {
                stream,
                peer,
                local: bound.local,
                listener,
                limits: limits.clone(),
                shutdown: shutdown.clone(),
            });
            tasks.spawn(
                async move {
                    connection.await;
                    drop((slot, host));
                }
                .in_current_span(),
            );
        }
        bound.socket.close();
        drain(tasks, grace).await
    }
}

/// A deleted listener: its socket closed, its connections served until
/// they end or the router stops.
async fn close(
    socket: Listening,
    done: Option<oneshot::Sender<()>>,
    mut tasks: JoinSet<()>,
    shutdown: &Shutdown,
    grace: Duration,
) -> usize {
    socket.close();
    if let Some(done) = done {
        let _ = done.send(());
    }
    loop {
        tokio::select! {
            () = shutdown.triggered() => return drain(tasks, grace).await,
            done = tasks.join_next() => match done {
                Some(done) => report(done),
                None => return 0,
            },
        }
    }
}

/// Refuses `stream` the AMQP way (see [`crate::driver::refuse`]) if
/// fewer than [`MAX_REFUSALS`] refusals are running, else just closes it.
/// A QUIC attempt is refused by QUIC (`CONNECTION_REFUSED`).
fn refuse(
    refusals: &Arc<Semaphore>,
    stream: Socket,
    listener: &Arc<ListenerConfig>,
    limits: &Arc<Limits>,
    reason: String,
) {
    let stream = match stream {
        Socket::Tcp(stream) => stream,
        Socket::Quic(incoming) => return incoming.refuse(),
    };
    if let Ok(permit) = refusals.clone().try_acquire_owned() {
        let (listener, limits) = (listener.clone(), limits.clone());
        tokio::spawn(
            async move {
                crate::driver::refuse(stream, &listener, &limits, reason).await;
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

/// Wait up to `grace` for `tasks`, then abort those left; returns how many
/// were aborted.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) -> usize {
    let finish = async {
        while let Some(done) = tasks.join_next().await {
            report(done);
        }
    };
    if tokio::time::timeout(grace, finish).await.is_ok() {
        return 0;
    }
    let aborted = tasks.len();
    warn!("{aborted} connection(s) still open after {grace:?}; aborting them");
    tasks.shutdown().await;
    aborted
}

/// Log a connection task that panicked (a bug in the handler).
fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        error!("connection task panicked: {error}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn none() -> Arc<Security> {
        Arc::new(Security::none())
    }

    fn config(max_connections: usize) -> Config {
        let mut config = Config::embedded_default();
        config.listeners[0].port = 0;
        config.limits.max_connections = max_connections;
        config
    }

    /// Echoes until the peer closes or shutdown fires; reports each peer.
    fn echo(seen: mpsc::UnboundedSender<SocketAddr>) -> ConnectionHandler {
        connection_handler(move |accepted: Accepted| {
            let seen = seen.clone();
            async move {
                let _ = seen.send(accepted.peer);
                let Socket::Tcp(mut stream) = accepted.stream else {
                    return;
                };
                let mut buf = [0u8; 64];
                loop {
                    tokio::select! {
                        () = accepted.shutdown.triggered() => break,
                        read = stream.read(&mut buf) => match read {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        },
                    }
                }
            }
        })
    }

    async fn start(
        server: Server,
        handler: ConnectionHandler,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<Drained>,
    ) {
        let addr = server.local_addrs()[0];
        let (stop_tx, stop_rx) = oneshot::channel();
        let run = tokio::spawn(server.run(handler, async {
            let _ = stop_rx.await;
        }));
        (addr, stop_tx, run)
    }

    #[tokio::test]
    async fn serves_connections_and_drains_on_shutdown() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let server = Server::bind(&config(10), none()).await.unwrap();
        let (addr, stop, run) = start(server, echo(seen_tx)).await;

        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"AMQP").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(WAIT, client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"AMQP");
        assert_eq!(seen.recv().await, Some(client.local_addr().unwrap()));

        stop.send(()).unwrap();
        let drained = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
        assert_eq!(drained, Drained { aborted: 0 });
        // The handler ended on shutdown, closing the connection...
        let read = tokio::time::timeout(WAIT, client.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)));
        // ...and the listener is gone.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn over_the_limit_connections_are_refused_with_an_amqp_close() {
        use ferry_proto::definitions::{Open, Performative, condition};
        use ferry_proto::frame::{self, Frame, Layer, ProtocolHeader};

        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let server = Server::bind(&config(1), none()).await.unwrap();
        let (addr, stop, run) = start(server, echo(seen_tx)).await;

        let first = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(WAIT, seen.recv()).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut hello = bytes::BytesMut::from(&ProtocolHeader::Amqp.bytes()[..]);
        let open = Performative::Open(Box::new(Open {
            container_id: "one-too-many".into(),
            ..Open::default()
        }));
        frame::encode_amqp_frame(0, &open, &[], &mut hello);
        second.write_all(&hello).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(WAIT, second.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        let mut frames = bytes::BytesMut::from(&reply[8..]);
        let mut closed_with = None;
        while let Ok(Some(f)) = frame::decode_frame(&mut frames, 1 << 16, Layer::Amqp) {
            if let Frame::Amqp {
                performative: Performative::Close(c),
                ..
            } = f
            {
                closed_with = c.error.map(|e| e.condition);
            }
        }
        assert_eq!(closed_with, Some(condition::RESOURCE_LIMIT_EXCEEDED));
        let mut buf = [0u8; 1];

        // Once the first ends, its slot is free again.
        drop(first);
        let third_served = async {
            loop {
                let mut third = TcpStream::connect(addr).await.unwrap();
                third.write_all(b"x").await.unwrap();
                if matches!(third.read(&mut buf).await, Ok(1)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, third_served).await.unwrap();
        stop.send(()).unwrap();
        tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn handlers_ignoring_shutdown_are_aborted_after_the_grace() {
        let stubborn = connection_handler(|accepted: Accepted| async move {
            let _stream = accepted.stream;
            std::future::pending::<()>().await;
        });
        let server = Server::bind(&config(10), none())
            .await
            .unwrap()
            .with_grace(Duration::from_millis(100));
        let (addr, stop, run) = start(server, stubborn).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        // Make sure the connection was accepted before stopping.
        client.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let drained = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
        assert_eq!(drained, Drained { aborted: 1 });
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(WAIT, client.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "aborted task closed its socket"
        );
    }

    #[tokio::test]
    async fn a_port_in_use_fails_bind_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut config = config(10);
        config.listeners.insert(0, config.listeners[0].clone());
        config.listeners[1].port = port;
        let error = Server::bind(&config, none()).await.unwrap_err();
        assert_eq!(error.index, 1);
        assert_eq!(error.source.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            error.to_string(),
            format!("cannot listen on 127.0.0.1:{port} (listener[1])")
        );
    }

    #[test]
    fn ipv6_literals_are_bracketed() {
        assert_eq!(host_port("::1", 5672), "[::1]:5672");
        assert_eq!(host_port("localhost", 5672), "localhost:5672");
    }
}
