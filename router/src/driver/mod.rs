//! One task per connection: the thin async driver around the sans-IO
//! engine (the `quinn` to `ferry_proto`'s `quinn-proto`). It moves bytes
//! between the socket and the engine, fires the engine's timer, and hands
//! engine events and messages from other connection tasks to the link
//! logic in [`links`].

mod links;
mod refuse;

pub use refuse::refuse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto::definitions::{Error, condition};
use ferry_proto::engine::{Connection, ConnectionConfig, SaslClientConfig, SaslServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::{ConnectorConfig, Limits, ListenerConfig, Role};
use crate::core::{ConnHandle, Core, ToConn};
use crate::listener::Accepted;
use crate::mesh::identity;
use crate::shutdown::Shutdown;
use links::{ConnKind, Links};

thread_local! {
    /// Where sockets are read into, one per runtime thread.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Messages from other tasks handled between two socket writes.
const MAX_BATCH: usize = 64;

/// How long we wait for the peer's close after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves one accepted client connection until it closes or the router
/// shuts down.
pub async fn serve(accepted: Accepted, core: Arc<Core>) {
    let Accepted {
        stream,
        peer,
        listener,
        shutdown,
        ..
    } = accepted;
    let kind = match listener.role {
        Role::InterRouter => ConnKind::InterRouterListener,
        // Edge uplinks are not implemented yet; an edge listener serves
        // clients.
        Role::Normal | Role::Edge => ConnKind::Client,
    };
    let mut config = engine_config(core.router_id(), core.limits(), &listener);
    if kind == ConnKind::InterRouterListener {
        config.properties = identity::properties(core.mesh().id(), core.mesh().instance(), None);
    }
    let engine = Connection::server(config, Instant::now());
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = ConnHandle {
        id: core.next_conn_id(),
        tx,
    };
    tracing::debug!(conn = handle.id.0, %peer, "connection accepted");
    let mut task = Task {
        stream,
        engine,
        rx,
        links: Links::new(core, handle.clone(), kind),
    };
    let reason = task.run(shutdown).await;
    task.links.teardown();
    tracing::debug!(conn = handle.id.0, %peer, reason, "connection ended");
}

/// Runs an inter-router connection this router dialed for `connector`,
/// until it closes or the router shuts down.
pub async fn dial(
    stream: TcpStream,
    core: Arc<Core>,
    connector: &ConnectorConfig,
    shutdown: Shutdown,
) {
    let limits = core.limits();
    let config = ConnectionConfig {
        container_id: core.router_id().to_string(),
        max_frame_size: limits.max_frame_size,
        channel_max: limits.max_sessions_per_connection.saturating_sub(1),
        max_sessions: limits.max_sessions_per_connection.into(),
        max_links_per_session: u32::MAX,
        sasl_client: Some(SaslClientConfig::Anonymous),
        properties: identity::properties(
            core.mesh().id(),
            core.mesh().instance(),
            Some(connector.cost),
        ),
        ..ConnectionConfig::default()
    };
    let engine = Connection::client(config, Instant::now());
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = ConnHandle {
        id: core.next_conn_id(),
        tx,
    };
    let mut task = Task {
        stream,
        engine,
        rx,
        links: Links::new(
            core,
            handle.clone(),
            ConnKind::Connector {
                cost: connector.cost,
            },
        ),
    };
    let reason = task.run(shutdown).await;
    task.links.teardown();
    tracing::debug!(conn = handle.id.0, host = %connector.host, port = connector.port, reason, "connector connection ended");
}

/// The engine settings for a connection accepted on `listener`.
fn engine_config(
    container_id: &str,
    limits: &Limits,
    listener: &ListenerConfig,
) -> ConnectionConfig {
    let mechanisms = &listener.sasl_mechanisms;
    ConnectionConfig {
        container_id: container_id.to_string(),
        max_frame_size: limits.max_frame_size,
        channel_max: limits.max_sessions_per_connection.saturating_sub(1),
        max_sessions: limits.max_sessions_per_connection.into(),
        max_links_per_session: limits.max_links_per_connection,
        // No mechanisms configured: SASL is refused, a bare AMQP header only.
        sasl_server: (!mechanisms.is_empty()).then(|| SaslServerConfig {
            anonymous: mechanisms
                .iter()
                .any(|m| m.eq_ignore_ascii_case("ANONYMOUS")),
            plain: None,
            required: listener.require_sasl,
        }),
        ..ConnectionConfig::default()
    }
}

struct Task {
    stream: TcpStream,
    engine: Connection,
    rx: mpsc::UnboundedReceiver<ToConn>,
    links: Links,
}

impl Task {
    async fn run(&mut self, shutdown: Shutdown) -> &'static str {
        let mut closing_since: Option<tokio::time::Instant> = None;
        loop {
            self.links.handle_events(&mut self.engine);
            if let Err(e) = self.flush().await {
                tracing::debug!(error = %e, "write failed");
                self.engine.handle_eof();
                self.links.handle_events(&mut self.engine);
                return "write failed";
            }
            if self.engine.is_finished() {
                return "closed";
            }
            let timer = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let close_deadline = closing_since.map(|t| t + CLOSE_GRACE);
            let wake = match (timer, close_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A producer with too many bytes in flight is not read from
            // until some are delivered (see `core::budget`).
            let paused = self.links.budget.exhausted();
            let budget = self.links.budget.clone();
            tokio::select! {
                _ = budget.freed(), if paused => {}
                r = self.stream.readable(), if !paused => match r {
                    Ok(()) => self.read_ready(),
                    Err(_) => self.engine.handle_eof(),
                },
                Some(msg) = self.rx.recv() => {
                    self.links.handle_message(&mut self.engine, msg);
                    // Take more of what is queued before writing, but not
                    // without bound: the engine's output buffer is memory too.
                    for _ in 0..MAX_BATCH {
                        let Ok(msg) = self.rx.try_recv() else { break };
                        self.links.handle_message(&mut self.engine, msg);
                    }
                }
                _ = sleep_until(wake) => {
                    if close_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return "peer did not answer close";
                    }
                    self.engine.handle_timeout(Instant::now());
                }
                _ = shutdown.triggered(), if closing_since.is_none() => {
                    closing_since = Some(tokio::time::Instant::now());
                    self.engine.close(Some(Error::new(
                        condition::CONNECTION_FORCED,
                        "router shutting down",
                    )));
                }
            }
        }
    }

    /// Reads what the socket has into the engine. The buffer is per
    /// thread, not per connection: an idle connection costs no buffer.
    fn read_ready(&mut self) {
        READ_BUF.with_borrow_mut(|buf| match self.stream.try_read(buf) {
            Ok(0) => self.engine.handle_eof(),
            Ok(n) => self.engine.handle_input(&buf[..n], Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => self.engine.handle_eof(),
        });
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(bytes) = self.engine.poll_transmit(Instant::now()) {
            self.stream.write_all(&bytes).await?;
        }
        Ok(())
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
