//! The router's side of SASL on a connection it accepted (AMQP 1.0 §5.3):
//! the engine completes ANONYMOUS and hands every other mechanism here.
//!
//! - `PLAIN` (RFC 4616): the password is checked against the user's
//!   SCRAM verifier, a PBKDF2 that the connection task runs off its
//!   thread ([`Login::poll_check`]); refused outside TLS unless
//!   `allow_plain_without_tls`.
//! - `SCRAM-SHA-256` (RFC 5802, RFC 7677): an unknown user gets a decoy
//!   verifier and fails at the proof, like a wrong password.
//! - `EXTERNAL` (RFC 4422 appendix A): the identity of the verified
//!   client certificate; an authorization identity other than it is
//!   refused.
//!
//! A failed login gets outcome `auth` and the connection ends with
//! `amqp:unauthorized-access`: the same reply, after the same work,
//! whether the user exists or not. It is logged with the peer's address
//! and the user name, never the password.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use ferry_proto::definitions::SaslCode;
use ferry_proto::engine::{Connection, parse_plain};
use ferry_proto::scram;

use crate::auth::UserStore;
use crate::security::{PlainCheck, Security};

/// Longest user name logged (a name is the peer's input).
const MAX_LOGGED_NAME: usize = 64;

/// One connection's login in progress.
pub(crate) struct Login {
    security: Arc<Security>,
    users: Option<Arc<UserStore>>,
    peer: Option<SocketAddr>,
    /// The verified client certificate's identity, for EXTERNAL.
    external: Option<String>,
    /// Whether PLAIN may be used here (TLS, or allowed without).
    plain_allowed: bool,
    state: State,
}

enum State {
    Idle,
    /// PLAIN: the check to run, then waiting for its result.
    Plain {
        check: Option<PlainCheck>,
        user: String,
    },
    /// SCRAM: server-first sent, waiting for client-final.
    Scram {
        user: String,
        exchange: scram::ServerAwaitFinal,
    },
}

impl Login {
    pub(crate) fn new(
        security: Arc<Security>,
        peer: Option<SocketAddr>,
        external: Option<String>,
        plain_allowed: bool,
    ) -> Self {
        Self {
            users: security.users(),
            security,
            peer,
            external,
            plain_allowed,
            state: State::Idle,
        }
    }

    /// The peer chose `mechanism` (the engine checked we offer it).
    pub(crate) fn init(
        &mut self,
        engine: &mut Connection,
        mechanism: &str,
        response: Option<Bytes>,
    ) {
        let response = response.unwrap_or_default();
        match mechanism {
            "EXTERNAL" => self.external(engine, &response),
            "PLAIN" => self.plain(engine, &response),
            "SCRAM-SHA-256" => self.scram_first(engine, &response),
            other => self.refuse(engine, other, None, "mechanism not implemented"),
        }
    }

    /// The peer's response to our challenge.
    pub(crate) fn response(&mut self, engine: &mut Connection, response: &[u8]) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Scram { user, exchange } => match exchange.finish(response) {
                Ok(server_final) => {
                    let _ = engine.sasl_accept(
                        "SCRAM-SHA-256",
                        Some(user),
                        Some(Bytes::from(server_final)),
                    );
                }
                Err(e) => self.refuse(engine, "SCRAM-SHA-256", Some(&user), &e.to_string()),
            },
            _ => self.refuse(engine, "?", None, "unexpected sasl-response"),
        }
    }

    /// A PLAIN check to run off the connection's thread, if one waits.
    pub(crate) fn poll_check(&mut self) -> Option<PlainCheck> {
        match &mut self.state {
            State::Plain { check, .. } => check.take(),
            _ => None,
        }
    }

    /// The PLAIN check's result.
    pub(crate) fn checked(&mut self, engine: &mut Connection, ok: bool) {
        let State::Plain { user, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        if ok {
            let _ = engine.sasl_accept("PLAIN", Some(user), None);
        } else {
            self.refuse(engine, "PLAIN", Some(&user), "wrong user name or password");
        }
    }

    fn external(&mut self, engine: &mut Connection, authzid: &[u8]) {
        let Some(identity) = self.external.clone() else {
            return self.refuse(engine, "EXTERNAL", None, "no client certificate");
        };
        // RFC 4422 appendix A: an empty response asks for the identity
        // the certificate gives; another one we do not grant.
        if !authzid.is_empty() && authzid != identity.as_bytes() {
            let asked = String::from_utf8_lossy(authzid).into_owned();
            return self.refuse(
                engine,
                "EXTERNAL",
                Some(&asked),
                "the certificate is not for this identity",
            );
        }
        let _ = engine.sasl_accept("EXTERNAL", Some(identity), None);
    }

    fn plain(&mut self, engine: &mut Connection, response: &[u8]) {
        if !self.plain_allowed {
            return self.refuse(engine, "PLAIN", None, "PLAIN is not allowed without TLS");
        }
        let (Some((user, password)), Some(store)) = (parse_plain(response), self.users.clone())
        else {
            return self.refuse(engine, "PLAIN", None, "malformed PLAIN response");
        };
        self.state = State::Plain {
            check: Some(PlainCheck {
                peer: self.peer.map(|p| p.ip()),
                user: user.clone(),
                password,
                store,
            }),
            user,
        };
    }

    fn scram_first(&mut self, engine: &mut Connection, client_first: &[u8]) {
        let Some(store) = &self.users else {
            return self.refuse(engine, "SCRAM-SHA-256", None, "no users");
        };
        let first = match scram::parse_client_first(client_first) {
            Ok(first) => first,
            Err(e) => return self.refuse(engine, "SCRAM-SHA-256", None, &e.to_string()),
        };
        let user = first.username().to_string();
        let verifier = store.verifier_or_decoy(&user);
        let (server_first, exchange) = match first.challenge(verifier, &server_nonce()) {
            Ok(challenge) => challenge,
            Err(e) => return self.refuse(engine, "SCRAM-SHA-256", Some(&user), &e.to_string()),
        };
        if engine.sasl_challenge(Bytes::from(server_first)).is_ok() {
            self.state = State::Scram { user, exchange };
        }
    }

    fn refuse(&mut self, engine: &mut Connection, mechanism: &str, user: Option<&str>, why: &str) {
        self.state = State::Idle;
        let peer = self.peer;
        let user: Option<String> = user.map(|u| u.chars().take(MAX_LOGGED_NAME).collect());
        self.security.failed_logins.note(|| {
            let from = peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
            let user = user.as_deref().unwrap_or("");
            tracing::warn!(from, user, mechanism, "login failed: {why}");
        });
        let _ = engine.sasl_refuse(SaslCode::Auth, why);
    }
}

/// A fresh server nonce (RFC 5802 §5.1: printable, no comma): 18 random
/// bytes, base64.
fn server_nonce() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
