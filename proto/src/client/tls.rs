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

/// The crypto provider of every TLS connection Ferry makes or accepts:
/// *ring* (no OpenSSL, no aws-lc), with the fast choices first. *ring*'s
/// defaults put P-384 key exchange first (no assembly in *ring*: a
/// millisecond per handshake) and SHA-384 suites first (no SHA-512
/// instructions on common CPUs); X25519 and AES-128-GCM with SHA-256 cost
/// a fraction of that and are as widely supported. rustls deprecates
/// *ring* for lacking post-quantum key exchange.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as suite;
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    provider.cipher_suites = vec![
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS13_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(provider)
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
    let builder = ClientConfig::builder_with_provider(crypto_provider())
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
