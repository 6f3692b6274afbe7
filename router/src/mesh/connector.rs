//! Dialing `[[connector]]`s: connect, run the inter-router connection until
//! it ends, wait, redial.
//!
//! Reconnect policy: attempts start at most once per *back-off*, which
//! starts at 100 ms and doubles after every attempt up to 1 s; each wait
//! is the back-off scaled by a random factor in [0.5, 1) ("equal jitter",
//! so routers restarted together do not redial in step), less the time
//! the attempt itself took. A connection that came up as a neighbour and
//! lasted at least a second resets the back-off: the first redial after
//! it drops is at once, the next ones 50–100 ms, 100–200 ms, … apart. So
//! a peer that is reachable again is redialed within a second (the cap),
//! however long it was away and however often it restarted; a peer that
//! stays down gets at most one attempt a second, which costs it a refused
//! TCP connection (or nothing at all, if the host is unreachable: an
//! attempt gives up after 500 ms without an answer). A peer that accepts and
//! drops the connection at once is not redialed faster than that either:
//! the reset needs a connection that lasted.
//!
//! What goes wrong is logged when it changes, not at every retry (see
//! [`Attempts`]): the first failure at `warn`, saying what the router waits
//! for; the same failure again only as a reminder, after a minute, then
//! less and less often. A connection that comes up is logged by the
//! connection itself (`neighbour B connected`).

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{ConnectorConfig, Limits, TransportKind};
use crate::core::Core;
use crate::driver::Dialed;
use crate::security::Security;
use crate::shutdown::Shutdown;
use crate::transport::Transport;

/// The first back-off, and the one after a connection that lasted.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The largest back-off: a peer reachable again is redialed within it.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a TCP connect (or QUIC handshake) may take. Over a path that
/// is cut (no answer at all), an attempt in progress when the path comes
/// back would wait for the kernel's next SYN retransmission (1 s, then
/// 3 s, 7 s, … after the first); a fresh attempt sends a fresh SYN
/// instead. Half a second, so that an attempt begun just before a heal
/// and the back-off wait after it (what is left of 0.5–1 s) end within
/// about a second (issue #17: a healed link back in under a second). A
/// SYN into a silent path costs the peer nothing; a path with a round
/// trip over 500 ms cannot carry an inter-router connection.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A neighbour connection that lived this long resets the back-off.
const STABLE: Duration = Duration::from_secs(1);
/// The first reminder that a failure goes on; each next one waits twice
/// as long, up to [`MAX_REMINDER`].
const FIRST_REMINDER: Duration = Duration::from_secs(60);
/// The longest wait between two reminders.
const MAX_REMINDER: Duration = Duration::from_secs(3600);

/// Dials `connector` (the `index`th `[[connector]]`) until shutdown.
pub async fn run(
    core: Arc<Core>,
    security: Arc<Security>,
    index: usize,
    connector: ConnectorConfig,
    shutdown: Shutdown,
) {
    let target = format!("{}:{}", connector.host, connector.port);
    let over = match connector.transport {
        TransportKind::Tcp => "",
        TransportKind::Quic => " over QUIC",
    };
    let mut attempts = Attempts::new(format!("connector[{index}] to {target}{over}"));
    let mut backoff = MIN_BACKOFF;
    while !shutdown.is_triggered() {
        let begun = Instant::now();
        let connected = tokio::select! {
            r = connect(&connector, &security, core.limits()) => r,
            _ = shutdown.triggered() => return,
        };
        let outcome = match connected {
            Ok((transport, cert)) => {
                let started = Instant::now();
                // The peer's AMQP open, within the limit.
                let deadline = std::time::Instant::now() + core.limits().handshake_timeout();
                let outcome = crate::driver::dial(
                    transport,
                    cert,
                    core.clone(),
                    security.clone(),
                    &connector,
                    deadline,
                    shutdown.clone(),
                )
                .await;
                if matches!(outcome, Dialed::Neighbour(_)) && started.elapsed() >= STABLE {
                    backoff = MIN_BACKOFF;
                }
                outcome
            }
            Err(why) => failed(why),
        };
        if shutdown.is_triggered() {
            return;
        }
        let isolated = core.mesh().neighbour_count() == 0;
        if let Some(line) = attempts.record(outcome, isolated, Instant::now()) {
            tracing::warn!("{line}");
        }
        // Attempts start at most once per (jittered) back-off: the time
        // the attempt took counts towards the wait.
        let wait = jitter(backoff).saturating_sub(begun.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.triggered() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn failed(why: String) -> Dialed {
    Dialed::Refused(crate::driver::Failure { why, logged: false })
}

/// A connector's attempts, and what of them is worth a log line.
#[derive(Debug)]
pub struct Attempts {
    /// `connector[0] to 127.0.0.1:5791`.
    name: String,
    failing: Option<Failing>,
}

/// The same failure, attempt after attempt.
#[derive(Debug)]
struct Failing {
    why: String,
    since: Instant,
    attempts: u32,
    next_reminder: Instant,
    reminder_every: Duration,
}

impl Attempts {
    /// No attempt yet; `name` says which connector in log lines.
    pub fn new(name: String) -> Self {
        Self {
            name,
            failing: None,
        }
    }

    /// One attempt went as `outcome`, at `now`; `isolated`: this router has
    /// no neighbour at all. Returns the line to log at `warn`, if any: the
    /// first failure, a different failure, or a reminder that one goes on.
    pub fn record(&mut self, outcome: Dialed, isolated: bool, now: Instant) -> Option<String> {
        let (why, logged) = match outcome {
            // The connection logged its neighbour coming and going.
            Dialed::Neighbour(_) => {
                self.failing = None;
                return None;
            }
            Dialed::Refused(failure) => (failure.why, failure.logged),
            Dialed::Ended(how) => (
                format!("the connection ended before the router there said who it is ({how})"),
                false,
            ),
        };
        if let Some(f) = &mut self.failing
            && f.why == why
        {
            f.attempts += 1;
            if now < f.next_reminder {
                return None;
            }
            f.next_reminder = now + f.reminder_every;
            f.reminder_every = (f.reminder_every * 2).min(MAX_REMINDER);
            return Some(format!(
                "{}: still failing after {} attempts in {}: {why}",
                self.name,
                f.attempts,
                minutes(now - f.since),
            ));
        }
        self.failing = Some(Failing {
            why: why.clone(),
            since: now,
            attempts: 1,
            next_reminder: now + FIRST_REMINDER,
            reminder_every: FIRST_REMINDER * 2,
        });
        if logged {
            return None;
        }
        let waiting = if isolated {
            "; no neighbour yet, so messages reach only this router's own consumers"
        } else {
            ""
        };
        Some(format!(
            "{}: {why}; retrying, at most {} s apart{waiting}",
            self.name,
            MAX_BACKOFF.as_secs()
        ))
    }
}

/// `45s`, `3m`, `2h5m`.
fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// Connects to the connector's peer: TCP (and TLS if the connector has
/// a profile: the server's certificate must verify against the profile's
/// `ca` for `server_name`, default `host`), or QUIC. Says why not in the
/// words of the log line.
pub(crate) async fn connect(
    connector: &ConnectorConfig,
    security: &Security,
    limits: &Limits,
) -> Result<(Transport, Option<crate::tls::CertNames>), String> {
    let name = connector.server_name.as_deref().unwrap_or(&connector.host);
    if connector.transport == TransportKind::Quic {
        let crypto = connector
            .tls
            .as_deref()
            .and_then(|p| security.tls.quic_client(p))
            .ok_or("the tls profile has no cert for QUIC")?;
        let conn = crate::quic::connect(
            &connector.host,
            connector.port,
            name,
            crypto,
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        let cert = crate::quic::peer_names(&conn);
        let local = conn.local_ip().map_or_else(
            || std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            |ip| (ip, 0).into(),
        );
        let streams = crate::quic::Streams::new(conn, local, limits.max_frame_size as usize)
            .await
            .map_err(|e| format!("the QUIC connection ended at once: {e}"))?;
        return Ok((Transport::Quic(Box::new(streams)), cert));
    }
    let target = format!("{}:{}", connector.host, connector.port);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
        Err(_) => {
            return Err(format!(
                "cannot connect: no answer within {CONNECT_TIMEOUT:?}"
            ));
        }
    };
    let _ = stream.set_nodelay(true);
    let Some(profile) = &connector.tls else {
        return Ok((Transport::Tcp(stream), None));
    };
    let config = security
        .tls
        .client(profile)
        .expect("validated: the connector's profile has a ca");
    let secured = crate::tls::connect(stream, config, name, limits.handshake_timeout())
        .await
        .map_err(|e| e.to_string())?;
    Ok((secured.transport, secured.peer))
}

/// `d` scaled by a random factor in [0.5, 1): never more than `d`, so the
/// cap on the back-off is a cap on the wait.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let unit = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(why: &str) -> Dialed {
        failed(why.to_owned())
    }

    #[test]
    fn a_failure_is_logged_once_then_reminded_ever_less_often() {
        let t0 = Instant::now();
        let mut a = Attempts::new("connector[0] to 127.0.0.1:5799".into());
        let refused_111 = "cannot connect: Connection refused (os error 111)";
        assert_eq!(
            a.record(refused(refused_111), true, t0).as_deref(),
            Some(
                "connector[0] to 127.0.0.1:5799: cannot connect: Connection refused (os error 111); \
                 retrying, at most 1 s apart; no neighbour yet, so messages reach only this \
                 router's own consumers"
            )
        );
        // Retries every few seconds: silent for a minute.
        let mut lines = Vec::new();
        for s in 1..=60 * 4 {
            let now = t0 + Duration::from_secs(s);
            lines.extend(a.record(refused(refused_111), true, now));
        }
        assert_eq!(
            lines,
            [
                "connector[0] to 127.0.0.1:5799: still failing after 61 attempts in 1m: \
                 cannot connect: Connection refused (os error 111)",
                "connector[0] to 127.0.0.1:5799: still failing after 181 attempts in 3m: \
                 cannot connect: Connection refused (os error 111)",
            ]
        );
        // Another failure is news at once; with neighbours, no isolation.
        let now = t0 + Duration::from_secs(300);
        let line = a
            .record(refused("TLS handshake failed: x"), false, now)
            .unwrap();
        assert_eq!(
            line,
            "connector[0] to 127.0.0.1:5799: TLS handshake failed: x; retrying, at most 1 s apart"
        );
        // Up: nothing (the connection says it); the next failure is news.
        assert_eq!(a.record(Dialed::Neighbour("B".into()), false, now), None);
        assert!(
            a.record(refused("TLS handshake failed: x"), false, now)
                .is_some()
        );
        // A failure logged where it happened is not said again.
        let logged = Dialed::Refused(crate::driver::Failure {
            why: "two routers share the id A".into(),
            logged: true,
        });
        assert_eq!(a.record(logged.clone(), false, now), None);
        assert_eq!(a.record(logged, false, now), None);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_backoff() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(
                j >= Duration::from_secs(1) && j < Duration::from_secs(2),
                "{j:?}"
            );
        }
    }
}
