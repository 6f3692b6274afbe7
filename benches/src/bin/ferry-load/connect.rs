//! How a connection is made from a URL and the command line: `amqp://` or
//! `amqps://` (TLS, trusting `--ca`), SASL from the URL's user and password
//! or `--sasl`, a client certificate from `--cert`/`--key`.

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use ferry_proto::client::{ClientOptions, ClientTls, Url};
use ferry_proto::engine::SaslClientConfig;

use crate::args::{Args, Sasl};

/// The address to dial and the options for `url`.
pub fn options(
    args: &Args,
    url: &str,
    container_id: String,
) -> anyhow::Result<(String, ClientOptions)> {
    let parsed = Url::parse(url)?;
    let tls = if parsed.tls {
        Some(ClientTls {
            config: tls_config(args)?,
            server_name: args
                .server_name
                .clone()
                .unwrap_or_else(|| parsed.host.clone()),
        })
    } else {
        None
    };
    let sasl = sasl(args, &parsed)?;
    Ok((
        parsed.address(),
        ClientOptions {
            container_id,
            tls,
            sasl: Some(sasl),
            hostname: args.vhost.clone(),
            ..ClientOptions::default()
        },
    ))
}

/// The SASL exchange: `--sasl`, else PLAIN when the URL has a user, else
/// EXTERNAL with a client certificate, else ANONYMOUS.
fn sasl(args: &Args, url: &Url) -> anyhow::Result<SaslClientConfig> {
    let credentials = || -> anyhow::Result<(String, String)> {
        match (&url.user, &url.password) {
            (Some(u), Some(p)) => Ok((u.clone(), p.clone())),
            _ => anyhow::bail!("--sasl {:?} needs user:password@ in the URL", args.sasl),
        }
    };
    let chosen = args.sasl.unwrap_or(if url.user.is_some() {
        Sasl::Plain
    } else if args.cert.is_some() {
        Sasl::External
    } else {
        Sasl::Anonymous
    });
    Ok(match chosen {
        Sasl::Anonymous => SaslClientConfig::Anonymous,
        Sasl::External => SaslClientConfig::External,
        Sasl::Plain => {
            let (username, password) = credentials()?;
            SaslClientConfig::Plain { username, password }
        }
        Sasl::ScramSha256 => {
            let (username, password) = credentials()?;
            let mut nonce = [0u8; 18];
            getrandom::fill(&mut nonce).context("random nonce")?;
            let nonce = nonce.iter().map(|b| format!("{b:02x}")).collect();
            SaslClientConfig::ScramSha256 {
                username,
                password,
                nonce,
            }
        }
    })
}

/// The TLS configuration, made once for every connection of the run.
fn tls_config(args: &Args) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let ca = args
        .ca
        .as_deref()
        .context("amqps:// needs --ca FILE: the trust anchors for the endpoint's certificate")?;
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => anyhow::bail!("--cert and --key go together"),
    };
    let mut config = ferry_proto::client::client_config(ca, identity)?;
    if args.no_tls_resumption {
        // Every connection a full handshake (the costly case for the
        // endpoint), not a resumption of an earlier session.
        config.resumption = rustls::client::Resumption::disabled();
    }
    let config = Arc::new(config);
    Ok(CONFIG.get_or_init(|| config).clone())
}
