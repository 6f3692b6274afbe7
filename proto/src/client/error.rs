//! Client errors.

use crate::definitions::Error;
use crate::engine::EngineError;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The engine refused the command.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// The wait named here took longer than the configured timeout.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer refused the link.
    #[error("link refused: {}", describe(.0))]
    Refused(Option<Error>),
    /// The link was detached.
    #[error("link detached: {}", describe(.0))]
    Detached(Option<Error>),
    /// The connection closed.
    #[error("connection closed: {}", describe(.0))]
    ConnectionClosed(Option<Error>),
    /// A URL that cannot be used.
    #[error("bad URL {0}")]
    Url(String),
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// The peer did something this client does not expect.
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

fn describe(e: &Option<Error>) -> String {
    match e {
        None => "no error given".into(),
        Some(e) => match &e.description {
            Some(d) => format!("{} ({d})", e.condition),
            None => e.condition.to_string(),
        },
    }
}

impl ClientError {
    /// The AMQP error condition, if the peer gave one.
    pub fn condition(&self) -> Option<&str> {
        match self {
            ClientError::Refused(Some(e))
            | ClientError::Detached(Some(e))
            | ClientError::ConnectionClosed(Some(e)) => Some(e.condition.as_str()),
            _ => None,
        }
    }
}
