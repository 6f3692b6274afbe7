//! Refusing a connection over `limits.max_connections` the AMQP way: the
//! peer gets the protocol header exchange, our `open`, and a `close` with
//! `amqp:resource-limit-exceeded` (AMQP 1.0 §2.4.1 allows closing right
//! after open), so its user sees why instead of a reset socket. A peer
//! that logs in first gets the SASL outcome `sys-temp` instead. On a TLS
//! listener the socket is just closed: a handshake is not worth its cost
//! to say no.

use std::time::{Duration, Instant};

use ferry_proto::definitions::{Error, SaslCode, condition};
use ferry_proto::engine::{Connection, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Limits, ListenerConfig};

/// How long a refusal may take before the socket is just dropped.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Speaks just enough AMQP on `stream` to close it with `reason`.
pub async fn refuse(
    mut stream: TcpStream,
    listener: &ListenerConfig,
    limits: &Limits,
    reason: String,
) {
    if listener.tls.is_some() {
        return;
    }
    let config = super::engine_config("ferry", limits, listener, false);
    let mut engine = Connection::server(config, Instant::now());
    let run = async {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(ev) = engine.poll_event() {
                match ev {
                    Event::Opened { .. } => engine.close(Some(Error::new(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        reason.as_str(),
                    ))),
                    Event::SaslInit { .. } => {
                        let _ = engine.sasl_refuse(SaslCode::SysTemp, &reason);
                    }
                    _ => {}
                }
            }
            while let Some(bytes) = engine.poll_transmit(Instant::now()) {
                stream.write_all(&bytes).await?;
            }
            if engine.is_finished() {
                return Ok::<_, std::io::Error>(());
            }
            match stream.read(&mut buf).await? {
                0 => engine.handle_eof(),
                n => engine.handle_input(&buf[..n], Instant::now()),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, run).await;
}
