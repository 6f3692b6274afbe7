//! The sans-IO connection engine (AMQP 1.0 part 2 and §5.3), in the manner
//! of `quinn-proto`: feed it bytes and the time, take out events and bytes.
//!
//! A [`Connection`] has four kinds of methods:
//! - inputs: [`handle_input`](Connection::handle_input) (bytes from the
//!   peer), [`handle_timeout`](Connection::handle_timeout) (the time
//!   reached [`poll_timeout`](Connection::poll_timeout)) and
//!   [`handle_eof`](Connection::handle_eof);
//! - outputs: [`poll_event`](Connection::poll_event) and
//!   [`poll_transmit`](Connection::poll_transmit), to be drained after
//!   every input or command;
//! - commands: begin a session (and mark it priority), attach a link,
//!   grant credit, send, settle, detach, end, close;
//! - getters.
//!
//! ```text
//!  connection (AMQP 1.0 §2.4.6, simplified to what we track)
//!
//!   START --hdr--> HDR_EXCH --open sent/rcvd--> OPENED --close sent--> CLOSE_SENT
//!                                                  |                       |
//!                                             close rcvd              close rcvd
//!                                                  v                       v
//!                                           (answer close) --------->  END
//! ```

mod config;
mod connection;
mod error;
mod event;
mod ids;
mod link;
mod output;
mod sasl;
mod session;
mod small_map;

pub use config::{ConnectionConfig, SaslClientConfig, SaslServerConfig};
pub use connection::{Connection, shrink_sparse};
pub use error::EngineError;
pub use event::{Event, IncomingTransfer, LinkSpec};
pub use ids::{LinkId, SessionId};
pub use sasl::{ANONYMOUS, parse_plain};
pub use small_map::SmallMap;

#[cfg(test)]
mod tests;
