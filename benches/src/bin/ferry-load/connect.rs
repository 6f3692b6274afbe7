//! How a connection is made from a URL and the command line: `amqp://` or
//! `amqps://` (TLS, trusting `--ca`), SASL from the URL's user and password
//! or `--sasl`, a client certificate from `--cert`/`--key`
//! ([`ferry_proto::client::Dial`] does the work).

use std::sync::{Arc, OnceLock};

use ferry_proto::client::{ClientOptions, Dial, Mechanism};

use crate::args::{Args, Sasl};

/// The address to dial and the options for `url`.
pub fn options(
    args: &Args,
    url: &str,
    container_id: String,
) -> anyhow::Result<(String, ClientOptions)> {
    let dial = dial(args);
    let tls = if url.starts_with("amqps://") {
        Some(tls_config(args, &dial)?)
    } else {
        None
    };
    Ok(dial.options(url, container_id, tls)?)
}

fn dial(args: &Args) -> Dial {
    Dial {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        server_name: args.server_name.clone(),
        sasl: args.sasl.map(|s| match s {
            Sasl::Anonymous => Mechanism::Anonymous,
            Sasl::Plain => Mechanism::Plain,
            Sasl::ScramSha256 => Mechanism::ScramSha256,
            Sasl::External => Mechanism::External,
        }),
        vhost: args.vhost.clone(),
    }
}

/// The TLS configuration, made once for every connection of the run.
fn tls_config(args: &Args, dial: &Dial) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let mut config = dial.tls_config()?;
    if args.no_tls_resumption {
        // Every connection a full handshake (the costly case for the
        // endpoint), not a resumption of an earlier session.
        config.resumption = rustls::client::Resumption::disabled();
    }
    let config = Arc::new(config);
    Ok(CONFIG.get_or_init(|| config).clone())
}
