//! QUIC between routers (`transport = "quic"`, RFC 9000): quinn over the
//! TLS profiles' rustls material (TLS 1.3, both routers' certificates,
//! ALPN [`ALPN_QUIC`](crate::tls::ALPN_QUIC)), and AMQP mapped onto its
//! streams ([`Streams`]; docs/ROUTING.md, *QUIC*).
//!
//! A QUIC connection carries one AMQP connection. Silence is still the
//! AMQP idle timeout's to detect (the same 800 ms as over TCP, its empty
//! frames on a stream of their own); QUIC's own idle timeout is a
//! backstop above it, so a QUIC connection lost is a neighbour lost the
//! way a TCP one is.

mod streams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use streams::{Dest, Streams, dest, is_open};

use crate::tls::CertNames;

/// QUIC's idle timeout: above the AMQP idle timeout of inter-router
/// connections, which decides first.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Streams a peer may open: one per AMQP session, and a router opens a
/// handful.
const MAX_STREAMS: u32 = 64;

/// Receive window of one stream: one session's frames in flight.
const STREAM_WINDOW: u32 = 4 << 20;

/// Receive and send windows of a connection.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// The transport parameters of every inter-router QUIC connection.
fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(MAX_STREAMS.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .send_window(u64::from(CONNECTION_WINDOW))
        .max_idle_timeout(Some(
            IDLE_TIMEOUT
                .try_into()
                .expect("2 s is a valid idle timeout"),
        ))
        // The AMQP empty frames every 200 ms keep the path busy enough.
        .keep_alive_interval(None);
    Arc::new(t)
}

/// The quinn server configuration of a QUIC listener from its profile's
/// current material.
pub fn server_config(crypto: Arc<quinn::crypto::rustls::QuicServerConfig>) -> quinn::ServerConfig {
    let mut config = quinn::ServerConfig::with_crypto(crypto);
    config.transport_config(transport_config());
    config
}

/// A UDP endpoint accepting QUIC connections on `addr` with `crypto`
/// (each connection may be accepted with newer material:
/// [`quinn::Incoming::accept_with`]).
///
/// # Errors
///
/// The socket's (e.g. the port is in use).
pub fn listen(
    addr: SocketAddr,
    crypto: Arc<quinn::crypto::rustls::QuicServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::server(server_config(crypto), addr)
}

/// Why a QUIC connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The host did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The UDP socket.
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    /// quinn refused to start (bad server name, …).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed or the peer went away.
    #[error("QUIC handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    /// Not finished within the limit.
    #[error("QUIC handshake not finished in {0:?}")]
    Timeout(Duration),
}

/// The names in the peer's certificate (verified against the profile's
/// `ca` by the handshake).
pub fn peer_names(conn: &quinn::Connection) -> Option<CertNames> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    crate::tls::peer_names(Some(&certs))
}

/// Finishes the handshake of an accepted connection within `timeout`.
///
/// # Errors
///
/// A [`QuicError`].
pub async fn accept(
    incoming: quinn::Incoming,
    crypto: Arc<quinn::crypto::rustls::QuicServerConfig>,
    timeout: Duration,
) -> Result<quinn::Connection, QuicError> {
    let connecting = incoming.accept_with(Arc::new(server_config(crypto)))?;
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| QuicError::Timeout(timeout))?
        .map_err(QuicError::Handshake)
}

/// Dials `host:port` from a fresh endpoint, verifying the server's
/// certificate for `server_name`, within `timeout`.
///
/// # Errors
///
/// A [`QuicError`].
pub async fn connect(
    host: &str,
    port: u16,
    server_name: &str,
    crypto: Arc<quinn::crypto::rustls::QuicClientConfig>,
    timeout: Duration,
) -> Result<quinn::Connection, QuicError> {
    let target = format!("{host}:{port}");
    let addr = tokio::net::lookup_host(&target)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| QuicError::Resolve(target.clone()))?;
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(local).map_err(QuicError::Socket)?;
    let mut config = quinn::ClientConfig::new(crypto);
    config.transport_config(transport_config());
    let connecting = endpoint.connect_with(config, addr, server_name)?;
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| QuicError::Timeout(timeout))?
        .map_err(QuicError::Handshake)
}
