//! Dialing `[[broker]]`s: connect (TCP, TLS if the broker has a
//! profile), run the connection until it ends (its links are attached
//! by `driver::links::broker`), wait, redial.
//!
//! Back-off: 100 ms after a connection that lasted at least a second,
//! doubling after every failed attempt up to 2 s. A failure is logged
//! when it starts or changes, not at every attempt; a connection that
//! came up is logged by the connection (`broker NAME connected`), its end
//! here.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{BrokerConfig, broker::broker_password};
use crate::core::Core;
use crate::security::Security;
use crate::shutdown::Shutdown;
use crate::transport::Transport;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const STABLE: Duration = Duration::from_secs(1);

/// Why a broker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to {target}: {why}")]
    Connect {
        /// `host:port`.
        target: String,
        /// The operating system's reason, or the timeout.
        why: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {target} failed: {why}")]
    Tls {
        /// `host:port`.
        target: String,
        /// The handshake's error.
        why: String,
    },
    /// The password file could not be read.
    #[error("{0}")]
    Password(String),
    /// The connection ended before the broker opened it (SASL refused,
    /// not an AMQP 1.0 broker, …).
    #[error("the connection to {target} ended before the broker opened it ({why})")]
    NotOpened {
        /// `host:port`.
        target: String,
        /// How it ended.
        why: &'static str,
    },
}

/// Dials `broker` until shutdown.
pub async fn run(
    core: Arc<Core>,
    security: Arc<Security>,
    broker: BrokerConfig,
    shutdown: Shutdown,
) {
    let target = format!("{}:{}", broker.host, broker.port);
    let mut backoff = MIN_BACKOFF;
    let mut failing: Option<String> = None;
    while !shutdown.is_triggered() {
        let begun = Instant::now();
        let result = tokio::select! {
            r = attempt(&core, &security, &broker, &target, &shutdown) => r,
            () = shutdown.triggered() => return,
        };
        if shutdown.is_triggered() {
            return;
        }
        match result {
            Ok(why) if begun.elapsed() >= STABLE => {
                tracing::warn!(
                    "broker {} disconnected ({why}); what was in flight to it goes back to its producers, reconnecting",
                    broker.name
                );
                failing = None;
                backoff = MIN_BACKOFF;
            }
            // Opened and ended at once (a link refused, say), or not
            // opened: logged once while it goes on the same way.
            failed => {
                let line = match failed {
                    Ok(why) => format!("the connection ended within a second of opening ({why})"),
                    Err(e) => e.to_string(),
                };
                if failing.as_deref() != Some(line.as_str()) {
                    tracing::warn!(
                        "broker {}: {line}; retrying, at most {} s apart",
                        broker.name,
                        MAX_BACKOFF.as_secs()
                    );
                    failing = Some(line);
                }
            }
        }
        let wait = backoff.saturating_sub(begun.elapsed());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.triggered() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: returns how it ended once it was open.
async fn attempt(
    core: &Arc<Core>,
    security: &Arc<Security>,
    broker: &BrokerConfig,
    target: &str,
    shutdown: &Shutdown,
) -> Result<&'static str, BrokerError> {
    let password = broker_password(broker).map_err(BrokerError::Password)?;
    let transport = connect(broker, security, core, target).await?;
    let deadline = std::time::Instant::now() + core.limits().handshake_timeout();
    let (opened, why) = crate::driver::dial_broker(
        transport,
        core.clone(),
        security.clone(),
        broker,
        password,
        deadline,
        shutdown.clone(),
    )
    .await;
    if opened {
        Ok(why)
    } else {
        Err(BrokerError::NotOpened {
            target: target.to_string(),
            why,
        })
    }
}

async fn connect(
    broker: &BrokerConfig,
    security: &Security,
    core: &Core,
    target: &str,
) -> Result<Transport, BrokerError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(BrokerError::Connect {
                target: target.into(),
                why: e.to_string(),
            });
        }
        Err(_) => {
            return Err(BrokerError::Connect {
                target: target.into(),
                why: format!("no answer within {CONNECT_TIMEOUT:?}"),
            });
        }
    };
    let _ = stream.set_nodelay(true);
    let Some(profile) = &broker.tls else {
        return Ok(Transport::Tcp(stream));
    };
    let config = security
        .tls
        .client(profile)
        .ok_or_else(|| BrokerError::Tls {
            target: target.into(),
            why: format!("tls profile {profile:?} has no ca"),
        })?;
    let name = broker.server_name.as_deref().unwrap_or(&broker.host);
    crate::tls::connect(stream, config, name, core.limits().handshake_timeout())
        .await
        .map(|s| s.transport)
        .map_err(|e| BrokerError::Tls {
            target: target.into(),
            why: e.to_string(),
        })
}
