//! Reading a profile's PEM files and building rustls configurations from
//! them. Every error names the profile's key and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::records::RecordMaterial;
use crate::config::{TlsProfileConfig, TlsVersion};

/// ALPN protocol id offered and accepted (RFC 7301); a client that offers
/// ALPN without it is refused, one that offers none is served.
pub const ALPN_AMQP: &[u8] = b"amqp";

/// ALPN protocol id of AMQP over QUIC between Ferry routers: Ferry's own
/// mapping of sessions onto streams (docs/ROUTING.md, *QUIC*), so a QUIC
/// peer that does not speak it fails the handshake instead of the AMQP.
pub const ALPN_QUIC: &[u8] = b"ferry-amqp/1";

/// Largest PEM file read: certificates and keys are kilobytes.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A profile's material could not be used. Displays as one line naming
/// the profile, the key and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tls profile {profile:?}: {key} = {}: {reason}", path.display())]
pub struct MaterialError {
    /// The profile's name.
    pub profile: String,
    /// The key: `cert`, `key` or `ca`.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// The crypto provider: the one of every TLS connection Ferry makes
/// ([`ferry_proto::client::crypto_provider`]: *ring*, fast choices first).
pub fn provider() -> Arc<CryptoProvider> {
    ferry_proto::client::crypto_provider()
}

/// A profile's configurations, built from its files as they were read.
pub struct Material {
    /// Server side, by client-certificate policy (none without `cert`;
    /// optional and required without `ca`).
    pub server_none: Option<Arc<ServerConfig>>,
    pub server_optional: Option<Arc<ServerConfig>>,
    pub server_required: Option<Arc<ServerConfig>>,
    /// Client side (needs `ca`; presents `cert` when there is one).
    pub client: Option<Arc<ClientConfig>>,
    /// QUIC between routers (TLS 1.3, [`ALPN_QUIC`]): server side, a
    /// client certificate required (needs `cert` and `ca`).
    pub quic_server: Option<Arc<QuicServerConfig>>,
    /// QUIC client side, presenting `cert` (needs `cert` and `ca`).
    pub quic_client: Option<Arc<QuicClientConfig>>,
    /// Signing routing records and checking other routers' (needs `cert`,
    /// `key` and `ca`).
    pub records: Option<RecordMaterial>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("server_none", &self.server_none.is_some())
            .field("server_optional", &self.server_optional.is_some())
            .field("server_required", &self.server_required.is_some())
            .field("client", &self.client.is_some())
            .field("quic_server", &self.quic_server.is_some())
            .field("quic_client", &self.quic_client.is_some())
            .field("records", &self.records.is_some())
            .finish()
    }
}

impl Material {
    /// Reads `profile`'s files and builds its configurations.
    ///
    /// # Errors
    ///
    /// The first file that is missing, unreadable, not PEM, holds no
    /// certificate or key, or a key that does not match the certificate.
    pub fn load(profile: &TlsProfileConfig) -> Result<Self, MaterialError> {
        let fail = |key: &'static str, path: &Path, reason: String| MaterialError {
            profile: profile.name.clone(),
            key,
            path: path.to_owned(),
            reason,
        };
        let provider = provider();
        let versions = versions(profile.min_version);
        let identity = match (&profile.cert, &profile.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert).map_err(|r| fail("cert", cert, r))?;
                let der = read_key(key).map_err(|r| fail("key", key, r))?;
                let certified = CertifiedKey::from_der(chain.clone(), der.clone_key(), &provider)
                    .map_err(|e| fail("key", key, describe(&e)))?;
                drop(certified);
                Some((chain, der))
            }
            _ => None,
        };
        let roots = match &profile.ca {
            Some(ca) => Some(Arc::new(read_roots(ca).map_err(|r| fail("ca", ca, r))?)),
            None => None,
        };
        let server_with =
            |verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
             versions: &[&'static SupportedProtocolVersion],
             alpn: &[u8]| {
                let (chain, key) = identity.as_ref()?;
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .expect("the ring provider supports TLS 1.2 and 1.3");
                let builder = match verifier {
                    Some(v) => builder.with_client_cert_verifier(v),
                    None => builder.with_no_client_auth(),
                };
                let mut config = builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .expect("checked by CertifiedKey::from_der");
                config.alpn_protocols = vec![alpn.to_vec()];
                Some(config)
            };
        let server = |verifier| server_with(verifier, versions, ALPN_AMQP).map(Arc::new);
        let client_verifier = |optional: bool| -> Result<_, MaterialError> {
            let Some(roots) = &roots else { return Ok(None) };
            let builder =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let builder = if optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            let ca = profile.ca.as_deref().expect("roots come from ca");
            builder
                .build()
                .map(Some)
                .map_err(|e| fail("ca", ca, e.to_string()))
        };
        let optional = client_verifier(true)?;
        let required = client_verifier(false)?;
        let client_with = |versions: &[&'static SupportedProtocolVersion],
                           alpn: &[u8]|
         -> Result<Option<ClientConfig>, MaterialError> {
            let Some(roots) = &roots else { return Ok(None) };
            let ca = profile.ca.as_deref().expect("roots come from ca");
            let verifier =
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| fail("ca", ca, e.to_string()))?;
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .expect("the ring provider supports TLS 1.2 and 1.3")
                .with_webpki_verifier(verifier);
            let mut config = match &identity {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .expect("checked by CertifiedKey::from_der"),
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Some(config))
        };
        let client = client_with(versions, ALPN_AMQP)?.map(Arc::new);
        // QUIC: TLS 1.3 only (RFC 9001 §4.2), and both routers prove who
        // they are; the ring provider has QUIC's initial suite.
        let tls13 = self::versions(TlsVersion::V1_3);
        let quic_server = match (&required, &identity) {
            (Some(verifier), Some(_)) => server_with(Some(verifier.clone()), tls13, ALPN_QUIC)
                .map(|c| QuicServerConfig::try_from(c).expect("ring has TLS13_AES_128_GCM_SHA256"))
                .map(Arc::new),
            _ => None,
        };
        let quic_client = match &identity {
            Some(_) => client_with(tls13, ALPN_QUIC)?.map(|c| {
                Arc::new(QuicClientConfig::try_from(c).expect("ring has TLS13_AES_128_GCM_SHA256"))
            }),
            None => None,
        };
        let records = match (&identity, &required) {
            (Some((chain, key)), Some(verifier)) => {
                let key = provider
                    .key_provider
                    .load_private_key(key.clone_key())
                    .expect("checked by CertifiedKey::from_der");
                Some(RecordMaterial::new(key, chain, verifier.clone()))
            }
            _ => None,
        };
        Ok(Self {
            records,
            server_none: server(None),
            server_optional: optional.and_then(|v| server(Some(v))),
            server_required: required.and_then(|v| server(Some(v))),
            client,
            quic_server,
            quic_client,
        })
    }
}

fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static FROM_1_2: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_1_3: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::V1_2 => &FROM_1_2,
        TlsVersion::V1_3 => &ONLY_1_3,
    }
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".into(),
        other => other.to_string(),
    }
}

/// The file's bytes, bounded.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("larger than {MAX_PEM_BYTES} bytes"));
    }
    Ok(bytes)
}

/// Every certificate of a PEM file, in order.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_bounded(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (BEGIN CERTIFICATE) in it".into());
    }
    for (i, cert) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("certificate {} does not parse: {e}", i + 1))?;
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 or SEC1.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_bounded(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no private key (PEM PKCS#8, PKCS#1 or SEC1) in it".to_string()
        }
        other => format!("not a valid PEM private key: {other}"),
    })
}

/// The trust anchors of a PEM file.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("not a usable trust anchor: {e}"))?;
    }
    Ok(roots)
}
