//! [`Endpoint`]: one router-side AMQP connection without I/O — the engine
//! and the router's link logic — so the async driver and the simulator run
//! the same code. Bytes and time go in; bytes come out; messages from other
//! connections arrive in its inbox.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_proto::definitions::Error;
use ferry_proto::engine::{Connection, ConnectionConfig, SaslClientConfig, SaslServerConfig};

use super::links::{ConnKind, Ends, Failure, Links, Login};
use crate::config::{ClientCert, ConnectorConfig, Limits, ListenerConfig, Role};
use crate::core::{ByteBudget, ConnHandle, ConnId, Core, Inbox, ToConn, Waiting};
use crate::mesh::identity;
use crate::security::{PlainCheck, Security};
use crate::tls::CertNames;

/// Who is at the other end, as far as the transport can tell.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Its address.
    pub addr: Option<std::net::SocketAddr>,
    /// This router's end of the connection.
    pub local: Option<std::net::SocketAddr>,
    /// Whether the connection runs over TLS (QUIC's included).
    pub tls: bool,
    /// Whether it runs over QUIC.
    pub quic: bool,
    /// The names in its certificate, verified against the profile's `ca`
    /// (a client certificate, or the server's on a connector).
    pub cert: Option<CertNames>,
}

/// Sessions an inter-router connection needs on each side, whatever
/// `max_sessions_per_connection` says: each router begins its data
/// sessions (one over TCP, several "lanes" over QUIC) and a (priority)
/// control session.
const MESH_SESSIONS: u16 = 2 * (super::links::QUIC_LANES as u16 + 1);

/// One connection of this router, as a state machine.
pub struct Endpoint {
    engine: Connection,
    links: Links,
    inbox: Inbox<ToConn>,
    /// Messages taken from the inbox while output was backlogged (see
    /// [`hold_message`](Self::hold_message)), to handle first, by
    /// priority (`core::Waiting`).
    held: Waiting,
    id: ConnId,
    /// The engine ended the connection because nothing came from the
    /// peer for its idle timeout.
    silent: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How long a broker may stay silent before its connection is dropped
/// (and redialed).
const BROKER_SILENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl Endpoint {
    fn new(
        core: Arc<Core>,
        engine: Connection,
        kind: ConnKind,
        peer: Peer,
        login: Option<Login>,
    ) -> Self {
        let ends = Ends {
            local: peer.local,
            peer: peer.addr,
            quic: peer.quic,
        };
        let (tx, inbox) = crate::core::inbox();
        let handle = ConnHandle {
            id: core.next_conn_id(),
            tx,
        };
        let id = handle.id;
        Self {
            engine,
            links: Links::new(core, handle, kind, peer.cert, ends, peer.tls, login),
            inbox,
            held: Waiting::default(),
            id,
            silent: false,
        }
    }

    /// A connection accepted on `listener` from `peer`: it waits for the
    /// peer's protocol header.
    pub fn accepted(
        core: Arc<Core>,
        listener: &ListenerConfig,
        security: &Arc<Security>,
        peer: Peer,
        now: Instant,
    ) -> Self {
        let kind = match listener.role {
            Role::InterRouter => ConnKind::InterRouterListener {
                authenticated: peer.tls && listener.client_cert == ClientCert::Required,
            },
            Role::Edge => ConnKind::EdgeListener {
                authenticated: peer.tls && listener.client_cert == ClientCert::Required,
            },
            Role::Normal => ConnKind::Client,
        };
        let mut config = engine_config(core.router_id(), core.limits(), listener, peer.tls);
        if listener.role != Role::Normal {
            config.properties =
                identity::properties(core.mesh().id(), core.mesh().instance(), None);
            config.idle_timeout = Some(crate::mesh::NEIGHBOUR_SILENCE);
        }
        if listener.role == Role::InterRouter {
            mesh_sessions(&mut config, peer.quic);
        }
        let login = config.sasl_server.as_ref().is_some_and(|s| {
            s.mechanisms
                .iter()
                .any(|m| m != ferry_proto::engine::ANONYMOUS)
        });
        let login = login.then(|| {
            Login::new(
                security.clone(),
                peer.addr,
                peer.cert
                    .as_ref()
                    .and_then(|c| c.identity())
                    .map(str::to_string),
                peer.tls || listener.allow_plain_without_tls,
            )
        });
        Self::new(
            core,
            Connection::server(shared(config), now),
            kind,
            peer,
            login,
        )
    }

    /// A connection this router dialed for `connector` to `peer`: its
    /// protocol header and open are queued at once.
    pub fn dialed(core: Arc<Core>, connector: &ConnectorConfig, peer: Peer, now: Instant) -> Self {
        let limits = core.limits();
        let mut config = ConnectionConfig {
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
            idle_timeout: Some(crate::mesh::NEIGHBOUR_SILENCE),
            ..ConnectionConfig::default()
        };
        let kind = if connector.role == Role::Edge {
            config.properties = identity::edge_properties(core.mesh().id(), core.mesh().instance());
            ConnKind::Uplink {
                authenticated: peer.tls,
            }
        } else {
            mesh_sessions(&mut config, peer.quic);
            ConnKind::Connector {
                cost: connector.cost,
                authenticated: peer.tls,
            }
        };
        Self::new(core, Connection::client(config, now), kind, peer, None)
    }

    /// A connection this router dialed to the broker `broker` (`password`:
    /// its SASL PLAIN password, read at each dial): its protocol header
    /// and open are queued at once; the links follow the broker's open.
    pub fn broker(
        core: Arc<Core>,
        broker: &crate::config::BrokerConfig,
        password: Option<String>,
        peer: Peer,
        now: Instant,
    ) -> Self {
        let limits = core.limits();
        let sasl = match (&broker.user, password) {
            (Some(user), Some(password)) => SaslClientConfig::Plain {
                username: user.clone(),
                password,
            },
            _ => SaslClientConfig::Anonymous,
        };
        let config = ConnectionConfig {
            container_id: core.router_id().to_string(),
            hostname: Some(broker.host.clone()),
            max_frame_size: limits.max_frame_size,
            channel_max: limits.max_sessions_per_connection.saturating_sub(1),
            max_sessions: limits.max_sessions_per_connection.into(),
            max_links_per_session: u32::MAX,
            sasl_client: Some(sasl),
            // Brokers heartbeat in whole seconds (RabbitMQ: at half the
            // idle time-out we offer, rounded down; under 2 s, never).
            idle_timeout: Some(BROKER_SILENCE),
            ..ConnectionConfig::default()
        };
        let mut endpoint = Self::new(
            core,
            Connection::client(config, now),
            ConnKind::Broker,
            peer,
            None,
        );
        endpoint.links.set_broker(broker.clone());
        endpoint
    }

    /// This connection's id in the router.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The neighbour router this connection served, if it came up as an
    /// inter-router connection.
    pub fn neighbour(&self) -> Option<&crate::routing::RouterId> {
        self.links.neighbour()
    }

    /// The router at the other end, if it came up as an edge connection
    /// (an edge router's uplink, an interior's edge router).
    pub fn edge_peer(&self) -> Option<&crate::routing::RouterId> {
        self.links.edge_peer()
    }

    /// Why the inter-router connection was refused (by this router or by
    /// the peer), if it was.
    pub fn failure(&self) -> Option<&Failure> {
        self.links.failure()
    }

    /// Bytes from the peer.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.engine.handle_input(data, now);
        self.links.handle_events(&mut self.engine, now);
    }

    /// The transport closed.
    pub fn handle_eof(&mut self, now: Instant) {
        self.engine.handle_eof();
        self.links.handle_events(&mut self.engine, now);
    }

    /// The time reached [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        let finished = self.engine.is_finished();
        self.engine.handle_timeout(now);
        if !finished && self.engine.is_finished() {
            // The engine ends a connection from its timer only when its
            // idle timeout passed without a byte from the peer.
            self.silent = true;
            self.links.went_silent();
        }
        self.links.handle_events(&mut self.engine, now);
        self.links.handle_timeout(&mut self.engine, now);
    }

    /// Handles one message from another connection (after the messages
    /// [held](Self::hold_message) before it, which
    /// [`handle_inbox`](Self::handle_inbox) handles).
    pub fn handle_message(&mut self, msg: ToConn, now: Instant) {
        if self.held.is_empty() || matches!(msg, ToConn::Control(_)) {
            self.links.handle_message(&mut self.engine, msg, now);
            self.links.handle_events(&mut self.engine, now);
        } else {
            self.held.push(msg);
        }
    }

    /// Takes a message from the inbox while output is backlogged: a
    /// routing-protocol message is handled at once (it goes out on the
    /// priority control session, ahead of the backlog; held behind data
    /// it could delay a HELLO into a false neighbour loss); anything else
    /// is held for [`handle_inbox`](Self::handle_inbox), which hands
    /// deliveries out by their priority (AMQP 1.0 §3.2.1; `core::Waiting`).
    pub fn hold_message(&mut self, msg: ToConn, now: Instant) {
        if matches!(msg, ToConn::Control(_)) {
            self.links.handle_message(&mut self.engine, msg, now);
            self.links.handle_events(&mut self.engine, now);
        } else {
            self.held.push(msg);
        }
    }

    /// Whether messages are held (see [`hold_message`](Self::hold_message)).
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Handles up to `max` messages from other connections without
    /// waiting, held ones first; returns how many.
    pub fn handle_inbox(&mut self, max: usize, now: Instant) -> usize {
        let mut n = 0;
        while n < max {
            let Some(msg) = self.held.pop().or_else(|| self.inbox.try_recv()) else {
                break;
            };
            self.links.handle_message(&mut self.engine, msg, now);
            n += 1;
        }
        self.links.handle_events(&mut self.engine, now);
        n
    }

    /// The inbox, for a driver to wait on.
    pub fn inbox(&mut self) -> &mut Inbox<ToConn> {
        &mut self.inbox
    }

    /// Bytes to send to the peer.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.engine.poll_transmit(now)
    }

    /// Bytes of output not yet taken by [`poll_transmit`](Self::poll_transmit).
    pub fn output_backlog(&self) -> usize {
        self.engine.pending_output()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.engine.poll_timeout(), self.links.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// See `Links::set_congested`.
    pub fn set_congested(&mut self, congested: bool) {
        self.links.set_congested(congested);
    }

    /// Whether the peer's AMQP open has arrived.
    pub fn peer_opened(&self) -> bool {
        self.engine.peer_opened()
    }

    /// Whether the connection is over (flush, then drop the transport).
    pub fn is_finished(&self) -> bool {
        self.engine.is_finished()
    }

    /// Whether the connection ended because the peer fell silent (nothing
    /// from it for the idle timeout): drop the transport without waiting
    /// to flush what is queued, as a peer that sends nothing may read
    /// nothing either, and what the connection holds (deliveries sent over
    /// it, its place in the mesh) is settled and rerouted only once it is
    /// torn down.
    pub fn went_silent(&self) -> bool {
        self.silent
    }

    /// The producers' byte budget: while it is exhausted, do not read —
    /// except on a connection to another router (inter-router or edge),
    /// where not reading would also hold back its heartbeats and HELLOs
    /// and lose the peer; there deliveries stay bounded by link credit.
    /// Bytes this connection's producers have in flight in the router.
    pub fn bytes_in_flight(&self) -> u64 {
        self.links.budget.as_ref().map_or(0, |b| b.used())
    }

    /// Whether reading should pause for the byte budget now.
    pub fn should_pause(&self) -> bool {
        self.paused_on().is_some()
    }

    /// The budget that reading should pause for now, if any.
    pub fn paused_on(&self) -> Option<Arc<ByteBudget>> {
        self.links
            .budget
            .as_ref()
            .filter(|b| b.exhausted() && !self.links.is_router_peer())
            .cloned()
    }

    /// A PLAIN login's password check to run off this thread (see
    /// [`Security::check_plain`]), then report with
    /// [`login_checked`](Self::login_checked).
    pub fn poll_login(&mut self) -> Option<PlainCheck> {
        self.links.poll_login()
    }

    /// The result of the check [`poll_login`](Self::poll_login) gave.
    pub fn login_checked(&mut self, ok: bool, now: Instant) {
        self.links.login_checked(&mut self.engine, ok);
        self.links.handle_events(&mut self.engine, now);
    }

    /// Closes the connection with `error` (e.g. on shutdown).
    pub fn close(&mut self, error: Error, now: Instant) {
        self.engine.close(Some(error));
        self.links.handle_events(&mut self.engine, now);
    }

    /// Releases what the connection holds in the router (its links and
    /// its place in the mesh). Call once, when it is over.
    pub fn teardown(&mut self, now: Instant) {
        self.links.teardown(now);
        // What came for it and was not read, and what comes from now on,
        // is answered where it needs an answer (a delivery to send).
        while let Some(msg) = self.held.pop() {
            msg.bounce();
        }
        for msg in self.inbox.close() {
            msg.bounce();
        }
    }
}

/// Each session's incoming window (in frames) on an inter-router
/// connection over QUIC: it bounds the bytes of one session (one QUIC
/// stream, one lane) between the two routers' engines to 128 frames (8 MiB
/// at the default `max_frame_size`), so that one lane of large messages
/// cannot fill the connection's buffers ahead of the others, while a lane
/// of small messages still has 128 in flight (docs/ROUTING.md, *QUIC*).
const QUIC_SESSION_WINDOW: u32 = 128;

/// Raises the session limits of an inter-router connection's engine to
/// what the mesh needs; over QUIC, bounds each session's frames in flight.
fn mesh_sessions(config: &mut ConnectionConfig, quic: bool) {
    config.max_sessions = config.max_sessions.max(MESH_SESSIONS.into());
    config.channel_max = config.channel_max.max(MESH_SESSIONS - 1);
    if quic {
        config.session_window = QUIC_SESSION_WINDOW;
    }
}

/// Distinct engine settings kept for sharing (see [`shared`]).
const SHARED_CONFIGS: usize = 16;

/// `config`, shared with the connections that have equal settings (every
/// client of a listener has the same): one copy between them rather than
/// one each (some 450 bytes with its strings). The [`SHARED_CONFIGS`]
/// settings used last are kept.
fn shared(config: ConnectionConfig) -> Arc<ConnectionConfig> {
    static CONFIGS: std::sync::Mutex<Vec<Arc<ConnectionConfig>>> =
        std::sync::Mutex::new(Vec::new());
    let mut configs = CONFIGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = match configs.iter().position(|c| **c == config) {
        Some(i) => configs.remove(i),
        None => Arc::new(config),
    };
    if configs.len() == SHARED_CONFIGS {
        configs.remove(0);
    }
    configs.push(found.clone());
    found
}

/// The engine settings for a connection accepted on `listener`, over TLS
/// or not.
pub(super) fn engine_config(
    container_id: &str,
    limits: &Limits,
    listener: &ListenerConfig,
    tls: bool,
) -> ConnectionConfig {
    // PLAIN outside TLS would put passwords on the wire in clear: not
    // offered there unless the listener allows it.
    let mechanisms: Vec<String> = listener
        .sasl_mechanisms
        .iter()
        .filter(|m| tls || listener.allow_plain_without_tls || m.as_str() != "PLAIN")
        .cloned()
        .collect();
    // A listener that offers no ANONYMOUS authenticates: skipping SASL
    // with a bare AMQP header must not get around it.
    let required = listener.require_sasl
        || !mechanisms.is_empty()
            && !mechanisms
                .iter()
                .any(|m| m == ferry_proto::engine::ANONYMOUS);
    ConnectionConfig {
        container_id: container_id.to_string(),
        max_frame_size: limits.max_frame_size,
        channel_max: limits.max_sessions_per_connection.saturating_sub(1),
        max_sessions: limits.max_sessions_per_connection.into(),
        max_links_per_session: limits.max_links_per_connection,
        // No mechanisms configured: SASL is refused, a bare AMQP header only.
        sasl_server: (!mechanisms.is_empty() || required).then_some(SaslServerConfig {
            mechanisms,
            required,
        }),
        properties: identity::product(),
        ..ConnectionConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_settings_are_shared_and_different_ones_are_not() {
        let config = |id: &str| ConnectionConfig {
            container_id: id.into(),
            properties: identity::product(),
            ..ConnectionConfig::default()
        };
        let a = shared(config("shared-test-a"));
        let b = shared(config("shared-test-a"));
        assert!(Arc::ptr_eq(&a, &b), "one copy for equal settings");
        let c = shared(config("shared-test-c"));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.container_id, "shared-test-c");
    }
}
