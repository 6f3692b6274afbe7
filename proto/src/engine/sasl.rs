//! SASL negotiation (AMQP 1.0 §5.3): the server offers mechanisms, the
//! client picks one, challenges and responses may follow, and the server
//! ends with an outcome.
//!
//! ```text
//!  server                                   client
//!   AwaitInit    <--- sasl-init ----------  AwaitMechanisms -> AwaitOutcome
//!   Deciding     (the user: challenge, accept or refuse)
//!   AwaitResponse --- sasl-challenge --->   AwaitOutcome
//!   Deciding     <--- sasl-response ------
//!   (done)       ---- sasl-outcome ----->   (done)
//! ```
//!
//! The server completes `ANONYMOUS` itself; every other mechanism it
//! offers is decided by its user ([`Event::SaslInit`], then
//! [`Connection::sasl_accept`] and friends), since checking credentials
//! may take time (a password hash) that an engine must not spend inline.
//! The client side runs ANONYMOUS, PLAIN (RFC 4616), EXTERNAL (RFC 4422
//! appendix A) and SCRAM-SHA-256 (RFC 5802, RFC 7677) by itself.
//!
//! [`Event::SaslInit`]: super::Event::SaslInit
//! [`Connection::sasl_accept`]: super::Connection::sasl_accept

use bytes::Bytes;

use super::config::{SaslClientConfig, SaslServerConfig};
use crate::codec::{Symbol, Symbols};
use crate::definitions::{
    SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};
use crate::scram;

/// The name of the mechanism that needs no credentials.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Where the SASL exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaslState {
    /// Server: mechanisms sent, waiting for init.
    ServerAwaitInit,
    /// Server: the user is deciding on the peer's last frame; input waits.
    ServerDeciding,
    /// Server: challenge sent, waiting for the response.
    ServerAwaitResponse,
    /// Client: waiting for the server's mechanisms.
    ClientAwaitMechanisms,
    /// Client: init or response sent, waiting for a challenge or the
    /// outcome.
    ClientAwaitOutcome,
}

/// The client's mechanism in progress (SCRAM needs state between steps).
#[derive(Debug, Default)]
pub(crate) enum ClientMechanism {
    /// Nothing chosen yet, or a mechanism with no further steps.
    #[default]
    Simple,
    /// SCRAM: client-first sent, waiting for server-first. Boxed, as
    /// below: most connections never use SCRAM as clients.
    ScramFirst(Box<scram::ClientAwaitServerFirst>),
    /// SCRAM: client-final sent, waiting for server-final in the outcome.
    ScramFinal(Box<scram::ClientAwaitServerFinal>),
}

/// The result of handling one SASL frame.
#[derive(Debug)]
pub(crate) enum SaslStep {
    /// Send this frame and wait for the next.
    Reply(SaslFrame, SaslState),
    /// Server: the user must decide (the event to surface).
    Decide(super::Event),
    /// Authentication succeeded (server: send the outcome first).
    Done {
        reply: Option<SaslFrame>,
        mechanism: String,
        user: Option<String>,
    },
    /// Authentication failed (server: send the outcome first).
    Failed {
        reply: Option<SaslFrame>,
        reason: String,
    },
}

/// The mechanisms frame a server sends.
pub(crate) fn server_mechanisms(cfg: &SaslServerConfig) -> SaslFrame {
    SaslFrame::Mechanisms(SaslMechanisms {
        sasl_server_mechanisms: Symbols(
            cfg.mechanisms
                .iter()
                .map(|m| Symbol::from(m.as_str()))
                .collect(),
        ),
    })
}

/// A sasl-outcome frame.
pub(crate) fn outcome(code: SaslCode, additional_data: Option<Bytes>) -> SaslFrame {
    SaslFrame::Outcome(SaslOutcome {
        code,
        additional_data,
    })
}

/// Server side: handles the client's frame in `state`.
pub(crate) fn server_step(cfg: &SaslServerConfig, state: SaslState, frame: SaslFrame) -> SaslStep {
    match (state, frame) {
        (SaslState::ServerAwaitInit, SaslFrame::Init(init)) => {
            let mechanism = init.mechanism.as_str();
            if !cfg.mechanisms.iter().any(|m| m == mechanism) {
                return SaslStep::Failed {
                    reply: Some(outcome(SaslCode::Auth, None)),
                    reason: format!("mechanism {mechanism} not offered"),
                };
            }
            if mechanism == ANONYMOUS {
                return SaslStep::Done {
                    reply: Some(outcome(SaslCode::Ok, None)),
                    mechanism: ANONYMOUS.into(),
                    user: None,
                };
            }
            SaslStep::Decide(super::Event::SaslInit {
                mechanism: mechanism.to_string(),
                initial_response: init.initial_response,
                hostname: init.hostname,
            })
        }
        (SaslState::ServerAwaitResponse, SaslFrame::Response(r)) => {
            SaslStep::Decide(super::Event::SaslResponse {
                response: r.response,
            })
        }
        (_, f) => SaslStep::Failed {
            reply: Some(outcome(SaslCode::Sys, None)),
            reason: format!("unexpected SASL frame {}", frame_name(&f)),
        },
    }
}

fn frame_name(f: &SaslFrame) -> &'static str {
    match f {
        SaslFrame::Mechanisms(_) => "sasl-mechanisms",
        SaslFrame::Init(_) => "sasl-init",
        SaslFrame::Challenge(_) => "sasl-challenge",
        SaslFrame::Response(_) => "sasl-response",
        SaslFrame::Outcome(_) => "sasl-outcome",
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`; an authzid other than
/// the user itself is refused (we do not act on behalf of others).
pub fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|b| *b == 0);
    let authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let pass = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let authzid_ok = authzid.is_empty() || authzid == user.as_bytes();
    (parts.next().is_none() && authzid_ok && !user.is_empty()).then_some((user, pass))
}

/// Client side: handles the server's frame.
pub(crate) fn client_step(
    cfg: &SaslClientConfig,
    mech: &mut ClientMechanism,
    state: SaslState,
    frame: SaslFrame,
) -> SaslStep {
    let failed = |reason: String| SaslStep::Failed {
        reply: None,
        reason,
    };
    match (state, frame) {
        (SaslState::ClientAwaitMechanisms, SaslFrame::Mechanisms(m)) => {
            let offered = &m.sasl_server_mechanisms;
            let name = cfg.mechanism();
            if !offered.contains(name) {
                return failed(format!(
                    "the server does not offer {name} (it offers {:?})",
                    offered.0
                ));
            }
            let response = match cfg {
                SaslClientConfig::Anonymous => Bytes::from_static(b"anonymous"),
                SaslClientConfig::External => Bytes::new(),
                SaslClientConfig::Plain { username, password } => {
                    let mut r = vec![0u8];
                    r.extend_from_slice(username.as_bytes());
                    r.push(0);
                    r.extend_from_slice(password.as_bytes());
                    Bytes::from(r)
                }
                SaslClientConfig::ScramSha256 {
                    username,
                    password,
                    nonce,
                } => match scram::ScramClient::start(username, password, nonce) {
                    Ok((first, next)) => {
                        *mech = ClientMechanism::ScramFirst(Box::new(next));
                        Bytes::from(first)
                    }
                    Err(e) => return failed(format!("SCRAM: {e}")),
                },
            };
            SaslStep::Reply(
                SaslFrame::Init(SaslInit {
                    mechanism: Symbol::from_static(name),
                    initial_response: Some(response),
                    hostname: None,
                }),
                SaslState::ClientAwaitOutcome,
            )
        }
        (SaslState::ClientAwaitOutcome, SaslFrame::Challenge(c)) => match std::mem::take(mech) {
            ClientMechanism::ScramFirst(first) => match first.handle(&c.challenge) {
                Ok((reply, next)) => {
                    *mech = ClientMechanism::ScramFinal(Box::new(next));
                    SaslStep::Reply(
                        SaslFrame::Response(SaslResponse {
                            response: Bytes::from(reply),
                        }),
                        SaslState::ClientAwaitOutcome,
                    )
                }
                Err(e) => failed(format!("SCRAM: {e}")),
            },
            _ => failed("unexpected sasl-challenge".into()),
        },
        (SaslState::ClientAwaitOutcome, SaslFrame::Outcome(o)) if o.code == SaslCode::Ok => {
            // SCRAM: the server proves it knows the verifier (RFC 5802
            // §3, server-final in the outcome's additional data).
            if let ClientMechanism::ScramFinal(last) = std::mem::take(mech) {
                let data = o.additional_data.unwrap_or_default();
                if let Err(e) = last.handle(&data) {
                    return failed(format!("SCRAM: the server did not prove itself: {e}"));
                }
            } else if matches!(cfg, SaslClientConfig::ScramSha256 { .. }) {
                return failed("SCRAM: outcome before the exchange finished".into());
            }
            SaslStep::Done {
                reply: None,
                mechanism: cfg.mechanism().into(),
                user: cfg.username().map(str::to_string),
            }
        }
        (SaslState::ClientAwaitOutcome, SaslFrame::Outcome(o)) => {
            failed(format!("authentication failed: {:?}", o.code))
        }
        (_, f) => failed(format!("unexpected {}", frame_name(&f))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_response_parses() {
        assert_eq!(
            parse_plain(b"\0user\0pw"),
            Some(("user".into(), "pw".into()))
        );
        assert_eq!(
            parse_plain(b"user\0user\0pw"),
            Some(("user".into(), "pw".into()))
        );
        assert_eq!(parse_plain(b"other\0user\0pw"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"user"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
    }

    fn init(mechanism: &'static str) -> SaslFrame {
        SaslFrame::Init(SaslInit {
            mechanism: Symbol::from_static(mechanism),
            initial_response: Some(Bytes::from_static(b"\0u\0p")),
            hostname: None,
        })
    }

    #[test]
    fn the_server_completes_anonymous_and_hands_other_mechanisms_to_its_user() {
        let cfg = SaslServerConfig {
            mechanisms: vec!["PLAIN".into(), ANONYMOUS.into()],
            required: true,
        };
        let step = server_step(&cfg, SaslState::ServerAwaitInit, init(ANONYMOUS));
        assert!(matches!(step, SaslStep::Done { user: None, .. }));
        let step = server_step(&cfg, SaslState::ServerAwaitInit, init("PLAIN"));
        assert!(matches!(
            step,
            SaslStep::Decide(super::super::Event::SaslInit { ref mechanism, .. }) if mechanism == "PLAIN"
        ));
        let step = server_step(&cfg, SaslState::ServerAwaitInit, init("EXTERNAL"));
        assert!(matches!(step, SaslStep::Failed { .. }));
    }
}
