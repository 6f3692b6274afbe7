//! The Ferry AMQP 1.0 router: configuration, listeners and shutdown.
//!
//! The binary (`src/main.rs`) loads a [`config::Config`], binds every
//! listener with [`listener::Server::bind`], and serves connections with
//! [`listener::Server::run`] until one of the [`shutdown::Signals`] arrives.
//! What happens on each accepted connection is the
//! [`listener::ConnectionHandler`] seam, where the AMQP engine plugs in.

pub mod auth;
pub mod config;
pub mod core;
pub mod driver;
pub mod listener;
pub mod mesh;
pub mod policy;
pub mod ratelog;
pub mod reload;
pub mod routing;
pub mod security;
pub mod shutdown;
pub mod tls;
pub mod transport;
