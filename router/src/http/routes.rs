//! What each request gets: the endpoints, without I/O.

use bytes::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};

use std::net::SocketAddr;

use super::{State, console};

/// The endpoints served.
const PATHS: [&str; 7] = [
    "/metrics",
    "/healthz",
    "/readyz",
    "/console",
    "/api/mesh",
    "/api/addresses",
    "/api/links",
];

/// The response to `method` on `path` from `peer` (a query string is
/// ignored).
pub async fn respond(
    state: &State,
    peer: SocketAddr,
    method: &Method,
    path: &str,
) -> Response<Bytes> {
    if !PATHS.contains(&path) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let in_flight = state.in_flight.get(&state.core).await;
            state.core.metrics().set_in_flight(in_flight);
            let body = state.core.metrics().render(&state.core);
            let mut response = Response::new(Bytes::from(body));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/console" | "/api/mesh" | "/api/addresses" | "/api/links" if !peer.ip().is_loopback() => {
            text(
                StatusCode::FORBIDDEN,
                "the console is served to this router's host only (ssh -L, kubectl port-forward)\n",
            )
        }
        "/console" => {
            let mut response = Response::new(Bytes::from_static(console::PAGE.as_bytes()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        "/api/mesh" => json(&console::mesh(&state.core)),
        "/api/addresses" => json(&console::addresses(&state.core)),
        "/api/links" => json(&console::links(&state.core).await),
        _ => match state.readiness.check(&state.core) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
        },
    }
}

fn json(value: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(value.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::copy_from_slice(body.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
