//! An edge router's uplink: one connection at a time to an interior
//! router, through its `role = "edge"` connectors in order.
//!
//! Failover: when the uplink ends, the next connector (round robin) is
//! dialed at once; the router waits only after a whole round of connectors
//! failed, with the mesh connectors' back-off (100 ms doubling to 1 s,
//! with jitter). An interior router killed is noticed at once (the socket
//! closes) or, if it fell silent, after the uplink's idle timeout
//! ([`NEIGHBOUR_SILENCE`](crate::mesh::NEIGHBOUR_SILENCE)), so the edge is
//! attached to the next interior router within a second. It stays there:
//! it does not go back to the first connector when that router returns
//! (every failback would release what is in flight once more).
//!
//! A failure is logged when it changes, not at every attempt.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ConnectorConfig;
use crate::core::Core;
use crate::driver::Dialed;
use crate::mesh::connector::{connect, jitter};
use crate::security::Security;
use crate::shutdown::Shutdown;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// An uplink that lasted this long resets the back-off.
const STABLE: Duration = Duration::from_secs(1);

/// Keeps an uplink through `connectors` (an edge router's `role = "edge"`
/// connectors, in order of preference) until shutdown.
pub async fn run(
    core: Arc<Core>,
    security: Arc<Security>,
    connectors: Vec<ConnectorConfig>,
    shutdown: Shutdown,
) {
    if connectors.is_empty() {
        return;
    }
    let mut next = 0;
    let mut failed_in_a_row = 0;
    let mut backoff = MIN_BACKOFF;
    let mut failing: Option<String> = None;
    while !shutdown.is_triggered() {
        let connector = &connectors[next];
        let target = format!("{}:{}", connector.host, connector.port);
        next = (next + 1) % connectors.len();
        let begun = Instant::now();
        let connected = tokio::select! {
            r = connect(connector, &security, core.limits()) => r,
            () = shutdown.triggered() => return,
        };
        let why = match connected {
            Err(why) => why,
            Ok((transport, cert)) => {
                let deadline = std::time::Instant::now() + core.limits().handshake_timeout();
                let dialed = crate::driver::dial(
                    transport,
                    cert,
                    core.clone(),
                    security.clone(),
                    connector,
                    deadline,
                    shutdown.clone(),
                )
                .await;
                if shutdown.is_triggered() {
                    return;
                }
                match dialed {
                    // Refused after its open (an id already attached, a
                    // certificate naming another router): a failed dial.
                    Dialed::Refused(f) => f.why,
                    Dialed::Neighbour(interior) => {
                        let to = &connectors[next];
                        tracing::warn!(
                            "uplink to interior router {interior} lost (it was up {:.1} s); \
                             failing over to {}:{}; what was in flight on it goes back to \
                             its producers",
                            begun.elapsed().as_secs_f64(),
                            to.host,
                            to.port
                        );
                        failing = None;
                        if begun.elapsed() >= STABLE {
                            failed_in_a_row = 0;
                            backoff = MIN_BACKOFF;
                            continue;
                        }
                        // Up and gone at once: no faster than failed dials.
                        format!("the uplink to interior router {interior} ended at once")
                    }
                    Dialed::Ended(how) => how.to_string(),
                }
            }
        };
        let line = format!("uplink to {target}: {why}");
        if failing.as_deref() != Some(line.as_str()) {
            tracing::warn!("{line}; trying the next edge connector");
            failing = Some(line);
        }
        failed_in_a_row += 1;
        if failed_in_a_row < connectors.len() {
            continue;
        }
        // A whole round failed: wait before the next.
        failed_in_a_row = 0;
        let wait = jitter(backoff);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.triggered() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
