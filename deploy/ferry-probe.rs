//! `ferry-probe`: the container health check of the Ferry image.
//!
//! Two modes, by its one argument (or `FERRY_HEALTH_ADDR` when there is
//! none; default `http://127.0.0.1:8080/readyz`):
//!
//! - `http://HOST:PORT/PATH`: sends `GET /PATH` to the router's `[http]`
//!   endpoint and expects status 200 (`/readyz`: ready for traffic;
//!   `/healthz`: alive). The router's one-line answer to anything else
//!   (e.g. 503 `no neighbour up`) is printed.
//! - `HOST:PORT`: connects to an AMQP listener, sends an AMQP SASL protocol
//!   header and expects the router's protocol header back: the listener is
//!   bound and its connection handling answers (for a router without
//!   `[http]`).
//!
//! Exit status 0 when healthy, 1 otherwise, with one line on stderr. The
//! image has no shell, so this is its health check (Docker `HEALTHCHECK`,
//! Compose `healthcheck`, Kubernetes `exec` probes).
//!
//! Standard library only: `deploy/build-image.sh` compiles it with `rustc`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
/// "AMQP", protocol id 3 (SASL), version 1.0.0.
const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// Bytes of an HTTP response read at most (the router's answers are short;
/// `/metrics` is not a probe's business).
const MAX_RESPONSE: u64 = 64 * 1024;

fn connect(target: &str) -> Result<TcpStream, String> {
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))?;
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{target}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(s)
}

fn probe_amqp(target: &str) -> Result<(), String> {
    let mut s = connect(target)?;
    s.write_all(&SASL_HEADER).map_err(|e| format!("{target}: send: {e}"))?;
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).map_err(|e| format!("{target}: no AMQP header back: {e}"))?;
    if &reply[..4] != b"AMQP" {
        return Err(format!("{target}: not an AMQP header: {reply:02x?}"));
    }
    Ok(())
}

/// `rest`: what follows `http://`, e.g. `127.0.0.1:8080/readyz`.
fn probe_http(url: &str, rest: &str) -> Result<(), String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = connect(authority)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| format!("{url}: send: {e}"))?;
    let mut response = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|e| format!("{url}: no answer: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .filter(|_| text.starts_with("HTTP/"))
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    if status == "200" {
        return Ok(());
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b.trim());
    Err(format!("{url}: status {status}: {}", body.lines().next().unwrap_or("")))
}

fn main() -> ExitCode {
    let target = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FERRY_HEALTH_ADDR").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080/readyz".to_string());
    let result = match target.strip_prefix("http://") {
        Some(rest) => probe_http(&target, rest),
        None => probe_amqp(&target),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-probe: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
