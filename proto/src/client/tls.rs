//! TLS for the client: trust only the given CA file, present a client
//! certificate if given one (rustls with the *ring* provider).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::ClientError;

/// How a client sets up TLS: the configuration, and the name the
/// server's certificate must carry.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls configuration.
    pub config: Arc<ClientConfig>,
    /// The server name to verify (and send as SNI).
    pub server_name: String,
}

/// A client configuration trusting the certificates in `ca` (PEM), and
/// presenting `identity` (PEM certificate chain and key files) if given.
///
/// # Errors
///
/// [`ClientError::Tls`] naming the file that cannot be used.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, ClientError> {
    let fail = |path: &Path, why: String| ClientError::Tls(format!("{}: {why}", path.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| fail(ca, e.to_string()))? {
        let cert = cert.map_err(|e| fail(ca, e.to_string()))?;
        roots.add(cert).map_err(|e| fail(ca, e.to_string()))?;
    }
    // *ring*: no C toolchain beyond what ring builds, no OpenSSL; it has
    // no post-quantum key exchange, hence the deprecation.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(cert, e.to_string()))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| fail(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| fail(key, e.to_string()))?
        }
    };
    config.alpn_protocols = vec![b"amqp".to_vec()];
    Ok(config)
}
