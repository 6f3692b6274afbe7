//! How a command-line tool reaches an endpoint: an `amqp://` or
//! `amqps://` URL, the TLS files, and the SASL mechanism — shared by
//! `ferry stat`, `ferry manage` and `ferry-load`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;

use super::{ClientError, ClientOptions, ClientTls, Url, client_config};
use crate::engine::SaslClientConfig;

/// A SASL mechanism to log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// No credentials.
    Anonymous,
    /// The URL's user and password, in clear inside the connection (use
    /// with amqps).
    Plain,
    /// The URL's user and password by SCRAM-SHA-256 (RFC 7677): the
    /// password never crosses the wire.
    ScramSha256,
    /// The identity of the client certificate.
    External,
}

/// Where the TLS material and credentials come from.
#[derive(Debug, Clone, Default)]
pub struct Dial {
    /// Trust anchors for the endpoint's certificate (PEM); needed by
    /// `amqps://`.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key: Option<PathBuf>,
    /// The name the endpoint's certificate must carry (default: the
    /// URL's host).
    pub server_name: Option<String>,
    /// The mechanism (default: PLAIN when the URL has a user, else
    /// EXTERNAL with a client certificate, else ANONYMOUS).
    pub sasl: Option<Mechanism>,
    /// The `hostname` of the `open`: the vhost, to a router with tenants.
    pub vhost: Option<String>,
}

impl Dial {
    /// The TLS configuration: trust `ca`, present `cert`/`key` if given.
    ///
    /// # Errors
    ///
    /// No `ca`, `cert` without `key` or the reverse, or a file that
    /// cannot be used.
    pub fn tls_config(&self) -> Result<ClientConfig, ClientError> {
        let ca = self.ca.as_deref().ok_or_else(|| {
            ClientError::Tls(
                "amqps:// needs a CA file: the trust anchors for the endpoint's certificate".into(),
            )
        })?;
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => {
                return Err(ClientError::Tls(
                    "a certificate and its key go together".into(),
                ));
            }
        };
        client_config(ca, identity)
    }

    /// The address to dial and the options for `url`, with `tls` (made by
    /// [`tls_config`](Self::tls_config)) if it is `amqps://`.
    ///
    /// # Errors
    ///
    /// A bad URL, TLS material, or credentials the mechanism needs.
    pub fn options(
        &self,
        url: &str,
        container_id: String,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<(String, ClientOptions), ClientError> {
        let parsed = Url::parse(url)?;
        let tls = if parsed.tls {
            let config = match tls {
                Some(c) => c,
                None => Arc::new(self.tls_config()?),
            };
            Some(ClientTls {
                config,
                server_name: self
                    .server_name
                    .clone()
                    .unwrap_or_else(|| parsed.host.clone()),
            })
        } else {
            None
        };
        let sasl = self.sasl_config(&parsed)?;
        Ok((
            parsed.address(),
            ClientOptions {
                container_id,
                tls,
                sasl: Some(sasl),
                hostname: self.vhost.clone(),
                ..ClientOptions::default()
            },
        ))
    }

    fn sasl_config(&self, url: &Url) -> Result<SaslClientConfig, ClientError> {
        let credentials = || -> Result<(String, String), ClientError> {
            match (&url.user, &url.password) {
                (Some(u), Some(p)) => Ok((u.clone(), p.clone())),
                _ => Err(ClientError::Url(
                    "PLAIN and SCRAM-SHA-256 need user:password@ in the URL".into(),
                )),
            }
        };
        let chosen = self.sasl.unwrap_or(if url.user.is_some() {
            Mechanism::Plain
        } else if self.cert.is_some() {
            Mechanism::External
        } else {
            Mechanism::Anonymous
        });
        Ok(match chosen {
            Mechanism::Anonymous => SaslClientConfig::Anonymous,
            Mechanism::External => SaslClientConfig::External,
            Mechanism::Plain => {
                let (username, password) = credentials()?;
                SaslClientConfig::Plain { username, password }
            }
            Mechanism::ScramSha256 => {
                let (username, password) = credentials()?;
                let mut nonce = [0u8; 18];
                getrandom::fill(&mut nonce)
                    .map_err(|e| ClientError::Tls(format!("no random nonce: {e}")))?;
                SaslClientConfig::ScramSha256 {
                    username,
                    password,
                    nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
                }
            }
        })
    }
}
