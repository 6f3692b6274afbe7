//! SASL negotiation (AMQP 1.0 §5.3): the server offers mechanisms, the
//! client picks one, the server answers with an outcome. ANONYMOUS and
//! PLAIN (RFC 4616) on both sides.

use bytes::Bytes;

use super::config::{SaslClientConfig, SaslServerConfig};
use crate::codec::{Symbol, Symbols};
use crate::definitions::{SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome};

/// Where the SASL exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaslState {
    /// Server: mechanisms sent, waiting for init.
    ServerAwaitInit,
    /// Client: waiting for the server's mechanisms.
    ClientAwaitMechanisms,
    /// Client: init sent, waiting for the outcome.
    ClientAwaitOutcome,
}

/// The result of handling one SASL frame.
#[derive(Debug)]
pub(crate) enum SaslStep {
    /// Send this frame and wait for the next.
    Reply(SaslFrame, SaslState),
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
    let mut names = Vec::new();
    if cfg.plain.is_some() {
        names.push(Symbol::from_static("PLAIN"));
    }
    if cfg.anonymous {
        names.push(Symbol::from_static("ANONYMOUS"));
    }
    SaslFrame::Mechanisms(SaslMechanisms {
        sasl_server_mechanisms: Symbols(names),
    })
}

fn outcome(code: SaslCode) -> Option<SaslFrame> {
    Some(SaslFrame::Outcome(SaslOutcome {
        code,
        additional_data: None,
    }))
}

/// Server side: handles the client's frame.
pub(crate) fn server_step(cfg: &SaslServerConfig, frame: SaslFrame) -> SaslStep {
    let SaslFrame::Init(init) = frame else {
        return SaslStep::Failed {
            reply: outcome(SaslCode::Sys),
            reason: "expected sasl-init".into(),
        };
    };
    match init.mechanism.as_str() {
        "ANONYMOUS" if cfg.anonymous => SaslStep::Done {
            reply: outcome(SaslCode::Ok),
            mechanism: "ANONYMOUS".into(),
            user: None,
        },
        "PLAIN" if cfg.plain.is_some() => {
            let check = cfg.plain.as_ref().expect("checked above");
            match parse_plain(init.initial_response.as_deref().unwrap_or_default()) {
                Some((user, pass)) if check(&user, &pass) => SaslStep::Done {
                    reply: outcome(SaslCode::Ok),
                    mechanism: "PLAIN".into(),
                    user: Some(user),
                },
                _ => SaslStep::Failed {
                    reply: outcome(SaslCode::Auth),
                    reason: "PLAIN authentication failed".into(),
                },
            }
        }
        other => SaslStep::Failed {
            reply: outcome(SaslCode::Auth),
            reason: format!("mechanism {other} not offered"),
        },
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let pass = std::str::from_utf8(parts.next()?).ok()?.to_string();
    parts.next().is_none().then_some((user, pass))
}

/// Client side: handles the server's frame.
pub(crate) fn client_step(cfg: &SaslClientConfig, state: SaslState, frame: SaslFrame) -> SaslStep {
    match (state, frame) {
        (SaslState::ClientAwaitMechanisms, SaslFrame::Mechanisms(m)) => {
            let offered = &m.sasl_server_mechanisms;
            let (mechanism, response) = match cfg {
                SaslClientConfig::Plain { username, password } if offered.contains("PLAIN") => {
                    let mut r = vec![0u8];
                    r.extend_from_slice(username.as_bytes());
                    r.push(0);
                    r.extend_from_slice(password.as_bytes());
                    ("PLAIN", Some(Bytes::from(r)))
                }
                SaslClientConfig::Anonymous if offered.contains("ANONYMOUS") => {
                    ("ANONYMOUS", Some(Bytes::from_static(b"anonymous")))
                }
                _ => {
                    return SaslStep::Failed {
                        reply: None,
                        reason: format!("server offers none of our mechanisms: {:?}", offered.0),
                    };
                }
            };
            SaslStep::Reply(
                SaslFrame::Init(SaslInit {
                    mechanism: Symbol::from_static(mechanism),
                    initial_response: response,
                    hostname: None,
                }),
                SaslState::ClientAwaitOutcome,
            )
        }
        (SaslState::ClientAwaitOutcome, SaslFrame::Outcome(o)) if o.code == SaslCode::Ok => {
            SaslStep::Done {
                reply: None,
                mechanism: match cfg {
                    SaslClientConfig::Anonymous => "ANONYMOUS".into(),
                    SaslClientConfig::Plain { .. } => "PLAIN".into(),
                },
                user: match cfg {
                    SaslClientConfig::Anonymous => None,
                    SaslClientConfig::Plain { username, .. } => Some(username.clone()),
                },
            }
        }
        (SaslState::ClientAwaitOutcome, SaslFrame::Outcome(o)) => SaslStep::Failed {
            reply: None,
            reason: format!("authentication failed: {:?}", o.code),
        },
        (_, f) => SaslStep::Failed {
            reply: None,
            reason: format!("unexpected SASL frame {f:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn plain_response_parses() {
        assert_eq!(
            parse_plain(b"\0user\0pw"),
            Some(("user".into(), "pw".into()))
        );
        assert_eq!(parse_plain(b"user"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
    }

    #[test]
    fn plain_checks_credentials() {
        let cfg = SaslServerConfig {
            anonymous: false,
            plain: Some(Arc::new(|u, p| u == "u" && p == "p")),
            required: true,
        };
        let init = |resp: &'static [u8]| {
            SaslFrame::Init(SaslInit {
                mechanism: Symbol::from_static("PLAIN"),
                initial_response: Some(Bytes::from_static(resp)),
                hostname: None,
            })
        };
        assert!(matches!(
            server_step(&cfg, init(b"\0u\0p")),
            SaslStep::Done { .. }
        ));
        assert!(matches!(
            server_step(&cfg, init(b"\0u\0x")),
            SaslStep::Failed { .. }
        ));
        let anon = SaslFrame::Init(SaslInit {
            mechanism: Symbol::from_static("ANONYMOUS"),
            ..SaslInit::default()
        });
        assert!(matches!(server_step(&cfg, anon), SaslStep::Failed { .. }));
    }
}
