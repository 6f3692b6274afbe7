//! TLS (rustls, with the *ring* provider: no OpenSSL): named profiles
//! (`[[tls]]`), the handshakes of listeners and connectors, the names in
//! a peer's certificate, and certificate rotation without restart.
//!
//! Only a profile's `ca` is trusted for peer certificates, never the
//! system's store. A profile whose files change on disk (or on SIGHUP) is
//! read again: new handshakes use the new material, established
//! connections carry on with theirs, and a bad new file is logged and the
//! old material kept.

mod material;
mod names;
mod records;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpStream;

pub use material::{ALPN_AMQP, ALPN_QUIC, MaterialError, provider};
pub use names::CertNames;
pub use records::RecordKeys;

use crate::config::{ClientCert, Config, TlsProfileConfig};
use crate::transport::Transport;
use material::Material;

/// Every `[[tls]]` profile of the configuration, as currently loaded.
#[derive(Debug, Default)]
pub struct TlsProfiles {
    profiles: HashMap<String, Profile>,
}

#[derive(Debug)]
struct Profile {
    config: TlsProfileConfig,
    current: RwLock<Arc<Material>>,
    /// The files' modification stamps at the last load attempt.
    stamps: Mutex<Vec<Stamp>>,
}

/// What tells a file changed: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(profile: &TlsProfileConfig) -> Vec<Stamp> {
    let files: [&Option<PathBuf>; 3] = [&profile.cert, &profile.key, &profile.ca];
    files
        .into_iter()
        .flatten()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

impl TlsProfiles {
    /// Loads every profile of `config`.
    ///
    /// # Errors
    ///
    /// The first profile whose files cannot be used, naming the key and
    /// the file.
    pub fn load(config: &Config) -> Result<Self, MaterialError> {
        let mut profiles = HashMap::new();
        for profile in &config.tls {
            let stamps = stamps(profile);
            let material = Material::load(profile)?;
            profiles.insert(
                profile.name.clone(),
                Profile {
                    config: profile.clone(),
                    current: RwLock::new(Arc::new(material)),
                    stamps: Mutex::new(stamps),
                },
            );
        }
        Ok(Self { profiles })
    }

    /// Profile `name`'s material as currently loaded.
    pub(crate) fn material(&self, name: &str) -> Option<Arc<Material>> {
        let profile = self.profiles.get(name)?;
        Some(profile.current.read().expect("not poisoned").clone())
    }

    /// The server configuration of profile `name` for a listener with
    /// `client_cert` (validation made sure it exists).
    pub fn server(&self, name: &str, client_cert: ClientCert) -> Option<Arc<ServerConfig>> {
        let m = self.material(name)?;
        match client_cert {
            ClientCert::None => m.server_none.clone(),
            ClientCert::Optional => m.server_optional.clone(),
            ClientCert::Required => m.server_required.clone(),
        }
    }

    /// The client configuration of profile `name`.
    pub fn client(&self, name: &str) -> Option<Arc<ClientConfig>> {
        self.material(name)?.client.clone()
    }

    /// The QUIC server configuration of profile `name` (a client
    /// certificate required; validation made sure the profile has one).
    pub fn quic_server(&self, name: &str) -> Option<Arc<QuicServerConfig>> {
        self.material(name)?.quic_server.clone()
    }

    /// The QUIC client configuration of profile `name`.
    pub fn quic_client(&self, name: &str) -> Option<Arc<QuicClientConfig>> {
        self.material(name)?.quic_client.clone()
    }

    /// Reads again every profile whose files changed since they were last
    /// read (every profile when `force`, as on SIGHUP). A profile that no
    /// longer loads keeps its current material; the error is logged.
    pub fn reload(&self, force: bool) {
        for (name, profile) in &self.profiles {
            let now = stamps(&profile.config);
            {
                let mut seen = profile.stamps.lock().expect("not poisoned");
                if !force && *seen == now {
                    continue;
                }
                *seen = now;
            }
            match Material::load(&profile.config) {
                Ok(material) => {
                    *profile.current.write().expect("not poisoned") = Arc::new(material);
                    tracing::info!(
                        profile = %name,
                        "tls profile reloaded: new handshakes use its new certificate and ca"
                    );
                }
                Err(error) => tracing::warn!(
                    profile = %name,
                    "cannot reload tls profile, keeping the material in use: {error}"
                ),
            }
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not finish it in time (`limits.handshake_timeout_ms`).
    #[error("TLS handshake not finished in {0:?}")]
    Timeout(Duration),
    /// The peer's certificate, a protocol error, or the socket.
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
    /// `server_name` is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

/// A connection with TLS set up: its transport, and the names in the
/// peer's certificate if it presented one (verified against the `ca`).
#[derive(Debug)]
pub struct Secured {
    /// The transport, to run AMQP over.
    pub transport: Transport,
    /// The peer certificate's names.
    pub peer: Option<CertNames>,
}

pub(crate) fn peer_names(
    certs: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Option<CertNames> {
    certs?.first().and_then(CertNames::of)
}

/// Server side: runs the handshake on an accepted socket.
///
/// # Errors
///
/// A [`HandshakeError`]; the alert that tells the peer why was sent.
pub async fn accept(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<Secured, HandshakeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    secured(timeout, acceptor.accept(tcp), |s| {
        let (tcp, tls) = s.into_inner();
        (tcp, tls.into())
    })
    .await
}

/// Client side: runs the handshake on a dialed socket, verifying the
/// server's certificate for `server_name`.
///
/// # Errors
///
/// A [`HandshakeError`].
pub async fn connect(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    server_name: &str,
    timeout: Duration,
) -> Result<Secured, HandshakeError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| HandshakeError::ServerName(server_name.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    secured(timeout, connector.connect(name, tcp), |s| {
        let (tcp, tls) = s.into_inner();
        (tcp, tls.into())
    })
    .await
}

/// Runs `handshake` within `timeout`, then takes the socket and the
/// rustls state out of the stream it made.
async fn secured<S>(
    timeout: Duration,
    handshake: impl std::future::Future<Output = std::io::Result<S>>,
    split: impl FnOnce(S) -> (TcpStream, rustls::Connection),
) -> Result<Secured, HandshakeError> {
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
        .map_err(HandshakeError::Failed)?;
    let (tcp, tls) = split(stream);
    let peer = peer_names(tls.peer_certificates());
    Ok(Secured {
        transport: Transport::tls(tcp, tls),
        peer,
    })
}
