//! Dialing `[[connector]]`s: connect, run the inter-router connection until
//! it ends, wait, redial. The wait doubles from 100 ms up to 10 s, with
//! ±50 % jitter so that routers restarted together do not redial in step;
//! a connection that lasted a while resets it.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::ConnectorConfig;
use crate::core::Core;
use crate::security::Security;
use crate::shutdown::Shutdown;
use crate::transport::Transport;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// Dials `connector` until shutdown.
pub async fn run(
    core: Arc<Core>,
    security: Arc<Security>,
    connector: ConnectorConfig,
    shutdown: Shutdown,
) {
    let target = format!("{}:{}", connector.host, connector.port);
    let mut backoff = MIN_BACKOFF;
    while !shutdown.is_triggered() {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target));
        let connected = tokio::select! {
            r = attempt => r,
            _ = shutdown.triggered() => return,
        };
        match connected {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::debug!(%target, "connector connected");
                let started = tokio::time::Instant::now();
                // TLS and the peer's AMQP open, within the limit.
                let deadline = std::time::Instant::now() + core.limits().handshake_timeout();
                let secured = tokio::select! {
                    r = secure(stream, &security, &connector, core.limits().handshake_timeout()) => r,
                    _ = shutdown.triggered() => return,
                };
                match secured {
                    Ok((transport, cert)) => {
                        crate::driver::dial(
                            transport,
                            cert,
                            core.clone(),
                            security.clone(),
                            &connector,
                            deadline,
                            shutdown.clone(),
                        )
                        .await;
                    }
                    Err(error) => tracing::warn!(%target, "connector: {error}"),
                }
                if started.elapsed() >= STABLE {
                    backoff = MIN_BACKOFF;
                }
            }
            Ok(Err(e)) => tracing::debug!(%target, error = %e, "connector cannot connect"),
            Err(_) => tracing::debug!(%target, "connector timed out connecting"),
        }
        let wait = jitter(backoff);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.triggered() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The TLS handshake, if the connector has a profile: the server's
/// certificate must verify against the profile's `ca` for `server_name`
/// (default: `host`).
async fn secure(
    stream: TcpStream,
    security: &Security,
    connector: &ConnectorConfig,
    timeout: Duration,
) -> Result<(Transport, Option<crate::tls::CertNames>), crate::tls::HandshakeError> {
    let Some(profile) = &connector.tls else {
        return Ok((Transport::Tcp(stream), None));
    };
    let config = security
        .tls
        .client(profile)
        .expect("validated: the connector's profile has a ca");
    let name = connector.server_name.as_deref().unwrap_or(&connector.host);
    let secured = crate::tls::connect(stream, config, name, timeout).await?;
    Ok((secured.transport, secured.peer))
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let unit = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_either_side() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(
                j >= Duration::from_secs(1) && j < Duration::from_secs(3),
                "{j:?}"
            );
        }
    }
}
