//! The Ferry AMQP 1.0 router: configuration, listeners and shutdown.
//!
//! The binary (`src/main.rs`) loads a [`config::Config`], binds every
//! listener with [`listener::Server::bind`], and serves connections with
//! [`listener::Server::run`] until one of the [`shutdown::Signals`] arrives.
//! What happens on each accepted connection is the
//! [`listener::ConnectionHandler`] seam, where the AMQP engine plugs in.

pub mod auth;
pub mod broker;
pub mod config;
pub mod core;
pub mod driver;
pub mod edge;
pub mod http;
pub mod listener;
pub mod manage;
pub mod memory_release;
pub mod mesh;
pub mod metrics;
pub mod policy;
pub mod quic;
pub mod ratelog;
pub mod reload;
pub mod routing;
pub mod security;
pub mod shutdown;
pub mod tls;
pub mod transport;

/// The span every log line of router `id` is written in: `router{id=A}`,
/// so that the logs of several routers (in one terminal, or in one
/// simulator process) can be told apart. The binary runs each of its tasks
/// in it; the simulator enters it whenever it runs one of its routers.
///
/// Its level is `ERROR`, the most severe, so that it is enabled whatever
/// level the filter lets through (a span a filter disables would leave
/// lines without it); its target is this crate's, so that directives for
/// `ferry_router` enable it.
pub fn router_span(id: &str) -> tracing::Span {
    tracing::span!(target: "ferry_router", tracing::Level::ERROR, "router", id = %id)
}
