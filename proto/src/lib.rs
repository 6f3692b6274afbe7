//! AMQP 1.0 for Ferry, as a sans-IO state machine.
//!
//! Bytes and time go in; events and bytes come out. Nothing here opens a
//! socket or reads a clock, so every protocol rule can be tested in memory.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod definitions;
pub mod engine;
pub mod frame;
pub mod message;
pub mod scram;
