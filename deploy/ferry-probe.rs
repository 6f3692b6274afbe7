//! `ferry-probe`: the container health check of the Ferry image.
//!
//! Connects to a Ferry listener (default `127.0.0.1:5672`; an argument or
//! `FERRY_HEALTH_ADDR` changes it), sends an AMQP SASL protocol header and
//! expects the router's protocol header back: the listener is bound and its
//! connection handling answers. Exit status 0 when healthy, 1 otherwise, with
//! one line on stderr. The image has no shell, so this is its health check
//! (Docker `HEALTHCHECK`, Kubernetes `exec` probe).
//!
//! Standard library only: `deploy/build-image.sh` compiles it with `rustc`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
/// "AMQP", protocol id 3 (SASL), version 1.0.0.
const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";

fn probe(target: &str) -> Result<(), String> {
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{target}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.write_all(&SASL_HEADER).map_err(|e| format!("{target}: send: {e}"))?;
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).map_err(|e| format!("{target}: no AMQP header back: {e}"))?;
    if &reply[..4] != b"AMQP" {
        return Err(format!("{target}: not an AMQP header: {reply:02x?}"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let target = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FERRY_HEALTH_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:5672".to_string());
    match probe(&target) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-probe: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
