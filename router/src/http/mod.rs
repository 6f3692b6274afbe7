//! The HTTP endpoint (`[http]`): `GET /metrics` (Prometheus text format),
//! `/healthz` (the process is alive), `/readyz` (ready for traffic;
//! see [`Readiness::check`]), and the live console (`/console` and the
//! JSON it polls, `/api/…`; to loopback clients only). HTTP/1.1, GET and HEAD only, bounded: at
//! most [`MAX_CONNECTIONS`] connections at once (more are closed at
//! once), [`HEADER_TIMEOUT`] to send a request's headers, and
//! [`CONNECTION_LIFETIME`] per connection.

mod console;
mod ready;
mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::Request;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub use ready::Readiness;

use crate::config::HttpConfig;
use crate::core::Core;
use crate::shutdown::Shutdown;

/// HTTP connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection is served at most (a scraper that keeps its
/// connection open reconnects after it).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Bytes of a request's headers read at most.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket could not be bound.
    #[error("cannot listen on http {host}:{port}: {source}")]
    Bind {
        /// `http.host`.
        host: String,
        /// `http.port`.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
}

/// What the requests are answered from.
#[derive(Debug)]
pub struct State {
    /// The router's core (its metrics, its mesh).
    pub core: Arc<Core>,
    /// Whether the listeners are bound, and what else `/readyz` waits for.
    pub readiness: Readiness,
    /// The deliveries in flight, last counted.
    pub in_flight: InFlightCount,
}

/// How old a count of the deliveries in flight `/metrics` may show.
const IN_FLIGHT_EVERY: Duration = Duration::from_secs(1);

/// The deliveries in flight, counted from every connection's report (see
/// `manage::reports`) at most once per [`IN_FLIGHT_EVERY`] and by one
/// request at a time, however often and by however many `/metrics` is
/// scraped: each count asks every connection task.
#[derive(Debug, Default)]
pub struct InFlightCount(tokio::sync::Mutex<Option<(std::time::Instant, u64)>>);

impl InFlightCount {
    /// The count, made now if the last is too old.
    pub async fn get(&self, core: &Core) -> u64 {
        let mut last = self.0.lock().await;
        if let Some((at, n)) = *last
            && at.elapsed() < IN_FLIGHT_EVERY
        {
            return n;
        }
        let n = crate::manage::reports(core)
            .await
            .iter()
            .flat_map(|c| &c.links)
            .filter(|l| l.dir == crate::core::Dir::Out)
            .map(|l| l.unsettled + l.undelivered)
            .sum();
        *last = Some((std::time::Instant::now(), n));
        n
    }
}

/// The endpoint's bound socket.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
}

impl HttpServer {
    /// Binds `config.host:config.port`.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound (in use, not local, not resolvable).
    pub async fn bind(config: &HttpConfig) -> Result<Self, HttpError> {
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|source| HttpError::Bind {
                host: config.host.clone(),
                port: config.port,
                source,
            })?;
        Ok(Self { listener })
    }

    /// The address bound (the actual port, also for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves requests until `shutdown` fires.
    pub async fn run(self, state: Arc<State>, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.triggered() => return,
            };
            let Ok((stream, peer)) = accepted else {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Over the bound, the connection is closed unanswered.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let state = state.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(
                async move {
                    let _slot = slot;
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let response = routes::respond(
                                &state,
                                peer,
                                request.method(),
                                request.uri().path(),
                            )
                            .await;
                            Ok::<_, Infallible>(response.map(Full::new))
                        }
                    });
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(MAX_HEADER_BYTES)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                        () = shutdown.triggered() => {}
                    }
                }
                .in_current_span(),
            );
        }
    }
}
