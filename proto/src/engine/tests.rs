//! Engine tests: two engines wired back to back in memory, with virtual
//! time (the `Pair` of quinn-proto's tests).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::definitions::{
    DeliveryState, Rejected, Role, SaslCode, SequenceNo, Source, Target, TargetTerminus, condition,
};
use connection::{FIRST_QUIET, QUIET};

struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

impl Pair {
    fn new(client: ConnectionConfig, server: ConnectionConfig) -> Self {
        let now = Instant::now();
        let mut p = Pair {
            client: Connection::client(client, now),
            server: Connection::server(server, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
        };
        p.drive();
        p
    }

    fn default_pair() -> Self {
        Self::new(ConnectionConfig::default(), ConnectionConfig::default())
    }

    /// A server taking frames of at most 512 bytes, the least there is:
    /// a 2,000-byte message takes several.
    fn small_frames() -> Self {
        let server = ConnectionConfig {
            max_frame_size: 512,
            ..Default::default()
        };
        Self::new(ConnectionConfig::default(), server)
    }

    /// The client sends `n` one-byte deliveries on `link`, tagged 0, 1, …
    /// (not yet exchanged: see [`drive`](Self::drive)).
    fn send_small(&mut self, link: LinkId, n: u8, settled: bool) {
        for i in 0..n {
            let tag = Bytes::from(vec![i]);
            self.client
                .send(link, tag, Bytes::from_static(b"x"), settled, false)
                .unwrap();
        }
    }

    /// Exchanges bytes until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit(self.now) {
                self.server.handle_input(&b, self.now);
                moved = true;
            }
            while let Some(b) = self.server.poll_transmit(self.now) {
                self.client.handle_input(&b, self.now);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Opens a session and a client sender to a server receiver that the
    /// server accepts and grants `credit`.
    fn sender_link(&mut self, credit: u32) -> (LinkId, LinkId) {
        let s = self.client.begin_session().unwrap();
        self.drive();
        let link = self
            .client
            .attach(
                s,
                LinkSpec {
                    name: "l".into(),
                    role: Role::Sender,
                    source: Some(Source::new("src")),
                    target: Some(TargetTerminus::Target(Target::new("q"))),
                    ..LinkSpec::default()
                },
            )
            .unwrap();
        self.drive();
        let remote = self.take_attach_request();
        self.server
            .accept_attach(
                remote,
                LinkSpec {
                    role: Role::Receiver,
                    target: Some(TargetTerminus::Target(Target::new("q"))),
                    ..LinkSpec::default()
                },
            )
            .unwrap();
        self.server.flow(remote, credit, false).unwrap();
        self.drive();
        (link, remote)
    }

    fn take_attach_request(&mut self) -> LinkId {
        let i = self
            .server_events
            .iter()
            .position(|e| matches!(e, Event::AttachRequested { .. }))
            .expect("attach requested");
        match self.server_events.remove(i) {
            Event::AttachRequested { link, .. } => link,
            _ => unreachable!(),
        }
    }

    fn server_transfers(&mut self) -> Vec<IncomingTransfer> {
        let mut out = Vec::new();
        self.server_events.retain(|e| match e {
            Event::Transfer(t) => {
                out.push(t.clone());
                false
            }
            _ => true,
        });
        out
    }
}

#[test]
fn open_exchanges_container_ids() {
    let p = Pair::new(
        ConnectionConfig {
            container_id: "cli".into(),
            ..Default::default()
        },
        ConnectionConfig {
            container_id: "srv".into(),
            ..Default::default()
        },
    );
    assert!(p.client.is_open() && p.server.is_open());
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Opened { container_id, .. } if container_id == "srv"))
    );
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::Opened { container_id, .. } if container_id == "cli"))
    );
}

#[test]
fn sasl_anonymous_then_open() {
    let p = Pair::new(
        ConnectionConfig {
            sasl_client: Some(SaslClientConfig::Anonymous),
            ..Default::default()
        },
        ConnectionConfig {
            sasl_server: Some(SaslServerConfig::default()),
            ..Default::default()
        },
    );
    assert!(p.server_events.iter().any(
        |e| matches!(e, Event::Authenticated { mechanism, user: None } if mechanism == "ANONYMOUS")
    ));
    assert!(p.client.is_open() && p.server.is_open());
}

/// A server offering PLAIN: answers the SaslInit event the way a router
/// would, checking `alice`/`secret`.
fn plain_pair(password: &str) -> Pair {
    let server = ConnectionConfig {
        sasl_server: Some(SaslServerConfig {
            mechanisms: vec!["PLAIN".into()],
            required: true,
        }),
        ..Default::default()
    };
    let client = ConnectionConfig {
        sasl_client: Some(SaslClientConfig::Plain {
            username: "alice".into(),
            password: password.into(),
        }),
        ..Default::default()
    };
    let mut p = Pair::new(client, server);
    let i = p
        .server_events
        .iter()
        .position(|e| matches!(e, Event::SaslInit { .. }))
        .expect("the PLAIN init is handed to the user");
    let Event::SaslInit {
        mechanism,
        initial_response,
        ..
    } = p.server_events.remove(i)
    else {
        unreachable!()
    };
    assert_eq!(mechanism, "PLAIN");
    match parse_plain(&initial_response.unwrap()) {
        Some((u, pw)) if u == "alice" && pw == "secret" => {
            p.server.sasl_accept("PLAIN", Some(u), None).unwrap();
        }
        _ => p
            .server
            .sasl_refuse(SaslCode::Auth, "bad password")
            .unwrap(),
    }
    p.drive();
    p
}

#[test]
fn sasl_plain_waits_for_the_users_decision() {
    let ok = plain_pair("secret");
    assert!(
        ok.server_events
            .iter()
            .any(|e| matches!(e, Event::Authenticated { user: Some(u), .. } if u == "alice"))
    );
    assert!(ok.client.is_open() && ok.server.is_open());
    let mut bad = plain_pair("wrong");
    assert!(bad.client.is_finished() && bad.server.is_finished());
    assert!(
        !bad.server_events
            .iter()
            .any(|e| matches!(e, Event::Opened { .. }))
    );
    let closed = bad.server_events.iter().find_map(|e| match e {
        Event::Closed { error, .. } => error.clone(),
        _ => None,
    });
    assert_eq!(
        closed.map(|e| e.condition),
        Some(condition::UNAUTHORIZED_ACCESS)
    );
    assert_eq!(
        bad.server.sasl_accept("PLAIN", None, None),
        Err(EngineError::Closed)
    );
}

/// A server offering PLAIN that has been sent the SASL header, a PLAIN
/// init and then `more`, and now decides.
fn deciding_server(more: &[u8]) -> Connection {
    let now = Instant::now();
    let mut server = Connection::server(
        ConnectionConfig {
            sasl_server: Some(SaslServerConfig {
                mechanisms: vec!["PLAIN".into()],
                required: true,
            }),
            ..Default::default()
        },
        now,
    );
    let mut input = bytes::BytesMut::new();
    input.extend_from_slice(&crate::frame::ProtocolHeader::Sasl.bytes());
    let init = crate::definitions::SaslFrame::Init(crate::definitions::SaslInit {
        mechanism: crate::codec::Symbol::from_static("PLAIN"),
        initial_response: Some(Bytes::from_static(b"\0alice\0secret")),
        hostname: None,
    });
    crate::frame::encode_sasl_frame(&init, &mut input);
    input.extend_from_slice(more);
    server.handle_input(&input, now);
    server
}

#[test]
fn input_pipelined_behind_sasl_init_waits_for_the_decision() {
    // At once the AMQP header and an open behind the init.
    let mut more = bytes::BytesMut::new();
    more.extend_from_slice(&crate::frame::ProtocolHeader::Amqp.bytes());
    let open = crate::definitions::Performative::Open(Box::default());
    crate::frame::encode_amqp_frame(0, &open, &[], &mut more);
    let mut server = deciding_server(&more);
    let mut events = std::iter::from_fn(|| server.poll_event());
    assert!(matches!(events.next(), Some(Event::SaslInit { .. })));
    assert!(events.next().is_none(), "the open waits for the decision");
    server
        .sasl_accept("PLAIN", Some("alice".into()), None)
        .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Authenticated { .. }, Event::Opened { .. }]
        ),
        "the waiting open follows the outcome: {events:?}"
    );
    assert_eq!(
        server.sasl_accept("PLAIN", None, None),
        Err(EngineError::NotDeciding)
    );
}

#[test]
fn a_server_deciding_refuses_unbounded_pipelined_input() {
    let mut server = deciding_server(&[]);
    assert!(!server.is_finished());
    server.handle_input(&vec![0u8; 70_000], Instant::now());
    assert!(server.is_finished());
}

#[test]
fn server_requiring_sasl_refuses_a_bare_amqp_header() {
    let p = Pair::new(
        ConnectionConfig::default(),
        ConnectionConfig {
            sasl_server: Some(SaslServerConfig {
                required: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    assert!(p.server.is_finished());
    assert!(p.client.is_finished());
}

#[test]
fn a_delivery_flows_and_its_outcome_comes_back() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(10);
    assert_eq!(p.client.credit(snd), 10);
    let id = p
        .client
        .send(
            snd,
            Bytes::from_static(b"t1"),
            Bytes::from_static(b"hello"),
            false,
            false,
        )
        .unwrap();
    p.drive();
    let t = p.server_transfers();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].payload, Bytes::from_static(b"hello"));
    assert_eq!(t[0].tag, Bytes::from_static(b"t1"));
    assert!(t[0].first && !t[0].more && !t[0].settled);
    p.server
        .disposition(rcv, t[0].delivery, Some(DeliveryState::Accepted), true)
        .unwrap();
    p.drive();
    assert!(p.client_events.contains(&Event::Disposition {
        link: snd,
        delivery: id,
        state: Some(DeliveryState::Accepted),
        settled: true,
    }));
    assert_eq!(p.client.credit(snd), 9);
}

#[test]
fn a_quiet_connection_gives_back_its_buffers_and_carries_on() {
    let mut p = Pair::default_pair();
    let (snd, _rcv) = p.sender_link(10);
    assert!(
        p.server.events.capacity() > 0,
        "the handshake queued events"
    );
    // The first time, once the handshake has settled for FIRST_QUIET.
    p.now += FIRST_QUIET / 2;
    p.server.handle_timeout(p.now);
    assert!(p.server.events.capacity() > 0);
    let trim = p.server.poll_timeout().expect("a deadline");
    assert!(
        trim <= p.now + FIRST_QUIET,
        "the trim is one of the deadlines"
    );
    p.now += FIRST_QUIET;
    p.server.handle_timeout(p.now);
    assert_eq!(p.server.events.capacity(), 0);
    let heartbeat_or_idle = p.server.poll_timeout().expect("idle timer");
    assert!(heartbeat_or_idle > p.now + QUIET, "nothing left to trim");
    // A heartbeat (an empty frame) is not traffic that re-arms it.
    p.now += Duration::from_secs(5);
    p.server.handle_input(&[0, 0, 0, 8, 2, 0, 0, 0], p.now);
    let next = p.server.poll_timeout().expect("idle timer");
    assert!(next > p.now + QUIET, "a heartbeat re-armed the trim");
    // And the connection works as before.
    p.send_small(snd, 1, false);
    p.drive();
    assert_eq!(p.server_transfers().len(), 1);
    // Later quiet spells: not before a quiet second, so a busy
    // connection keeps its buffers.
    assert!(p.server.events.capacity() > 0);
    p.now += QUIET / 2;
    p.server.handle_timeout(p.now);
    assert!(p.server.events.capacity() > 0);
    p.now += QUIET;
    p.server.handle_timeout(p.now);
    assert_eq!(p.server.events.capacity(), 0);
}

#[test]
fn sending_without_credit_is_refused() {
    let mut p = Pair::default_pair();
    let (snd, _) = p.sender_link(0);
    let r = p.client.send(snd, Bytes::new(), Bytes::new(), true, false);
    assert_eq!(r, Err(EngineError::NoCredit));
}

#[test]
fn large_messages_are_split_at_the_peer_max_frame_size_and_reassemble() {
    let mut p = Pair::small_frames();
    let (snd, _) = p.sender_link(1);
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    p.client
        .send(
            snd,
            Bytes::from_static(b"big"),
            Bytes::from(body.clone()),
            true,
            false,
        )
        .unwrap();
    p.drive();
    let t = p.server_transfers();
    assert!(t.len() > 19, "{} frames", t.len());
    assert!(t[..t.len() - 1].iter().all(|f| f.more));
    assert!(!t.last().unwrap().more);
    assert!(t[0].first && t[1..].iter().all(|f| !f.first));
    let joined: Vec<u8> = t.iter().flat_map(|f| f.payload.to_vec()).collect();
    assert_eq!(joined, body);
}

#[test]
fn consecutive_dispositions_merge_into_one_range() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(100);
    p.send_small(snd, 50, false);
    p.drive();
    let t = p.server_transfers();
    for f in &t {
        p.server
            .disposition(rcv, f.delivery, Some(DeliveryState::Accepted), true)
            .unwrap();
    }
    let bytes = p.server.poll_transmit(p.now).unwrap();
    // One disposition frame covers all 50.
    assert!(bytes.len() < 40, "{} bytes", bytes.len());
    p.client.handle_input(&bytes, p.now);
    p.drive();
    let n = p
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::Disposition { settled: true, .. }))
        .count();
    assert_eq!(n, 50);
}

#[test]
fn rejected_outcome_carries_its_error() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(1);
    p.client
        .send(
            snd,
            Bytes::from_static(b"t"),
            Bytes::from_static(b"m"),
            false,
            false,
        )
        .unwrap();
    p.drive();
    let t = p.server_transfers();
    let state = DeliveryState::Rejected(Rejected {
        error: Some(crate::definitions::Error::new(
            condition::DECODE_ERROR,
            "bad",
        )),
    });
    p.server
        .disposition(rcv, t[0].delivery, Some(state.clone()), true)
        .unwrap();
    p.drive();
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Disposition { state: Some(s), .. } if *s == state))
    );
}

#[test]
fn drain_returns_unused_credit() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(5);
    p.server.flow(rcv, 5, true).unwrap();
    p.drive();
    assert!(
        p.client_events.iter().any(
            |e| matches!(e, Event::Credit { link, credit: 5, drain: true, .. } if *link == snd)
        )
    );
    p.client.drained(snd).unwrap();
    p.drive();
    assert!(p.server_events.contains(&Event::Drained { link: rcv }));
    assert_eq!(p.client.credit(snd), 0);
}

/// A sender that drains while some of its transfers wait for the
/// receiver's session window states its count as of the transfers before
/// its flow on the wire: counting the waiting ones too, it told the
/// receiver their credit was given back, and the receiver detached the
/// link when they came ("transfer without link credit").
#[test]
fn a_drain_answered_with_transfers_waiting_for_the_session_window_loses_none() {
    let server = ConnectionConfig {
        session_window: 2,
        ..Default::default()
    };
    let mut p = Pair::new(ConnectionConfig::default(), server);
    let (snd, rcv) = p.sender_link(10);
    p.server.flow(rcv, 10, true).unwrap();
    while let Some(b) = p.server.poll_transmit(p.now) {
        p.client.handle_input(&b, p.now);
    }
    // Two transfers fit the server's window; three wait for it to open.
    p.send_small(snd, 5, true);
    p.client.drained(snd).unwrap();
    p.drive();
    assert!(
        !p.client_events
            .iter()
            .any(|e| matches!(e, Event::Detached { .. })),
        "{:?}",
        p.client_events
    );
    assert_eq!(p.server_transfers().len(), 5);
    assert!(p.server_events.contains(&Event::Drained { link: rcv }));
}

/// A sender tells the receiver how many deliveries wait for credit (the
/// flow's `available`); the receiver hears of each change once, and the
/// credit it granted stands.
#[test]
fn a_senders_offer_reaches_the_receiver_once_per_change() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(0);
    p.server_events.clear();
    p.client.offer(snd, 3).unwrap();
    p.client.offer(snd, 3).unwrap();
    p.drive();
    let offers = |p: &Pair| -> Vec<u32> {
        p.server_events
            .iter()
            .filter_map(|e| match e {
                Event::Available { link, available } if *link == rcv => Some(*available),
                _ => None,
            })
            .collect()
    };
    assert_eq!(offers(&p), [3]);
    p.server.flow(rcv, 2, false).unwrap();
    p.client.offer(snd, 0).unwrap();
    p.drive();
    assert_eq!(offers(&p), [3, 0]);
    assert_eq!(p.client.credit(snd), 2);
    assert_eq!(p.server.offer(rcv, 1), Err(EngineError::WrongRole));
}

#[test]
fn the_peer_detaching_is_answered_and_reported() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(1);
    let err = crate::definitions::Error::new(condition::NOT_FOUND, "no such address");
    p.server.detach(rcv, true, Some(err.clone())).unwrap();
    p.drive();
    assert!(p.client_events.contains(&Event::Detached {
        link: snd,
        closed: true,
        error: Some(err),
    }));
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::Detached { link, .. } if *link == rcv))
    );
    assert_eq!(
        p.client.send(snd, Bytes::new(), Bytes::new(), true, false),
        Err(EngineError::UnknownLink)
    );
}

#[test]
fn refused_attach_gets_a_null_terminus_and_an_error() {
    let mut p = Pair::default_pair();
    let s = p.client.begin_session().unwrap();
    p.drive();
    let link = p
        .client
        .attach(
            s,
            LinkSpec {
                name: "r".into(),
                role: Role::Receiver,
                source: Some(Source::new("nowhere")),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.drive();
    let remote = p.take_attach_request();
    p.server
        .refuse_attach(
            remote,
            crate::definitions::Error::new(condition::NOT_FOUND, "nope"),
        )
        .unwrap();
    p.drive();
    // Our source is null (refused); the peer's target is echoed.
    assert!(p.client_events.iter().any(
        |e| matches!(e, Event::Attached { link: l, attach } if *l == link && attach.source.is_none())
    ));
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Detached { link: l, error: Some(err), .. } if *l == link && err.condition == condition::NOT_FOUND
    )));
}

#[test]
fn ending_a_session_detaches_its_links() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(1);
    let session = p.client.link_session(snd).unwrap();
    p.client.end_session(session, None).unwrap();
    p.drive();
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::Detached { link, .. } if *link == rcv))
    );
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { .. }))
    );
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { session: s, .. } if *s == session))
    );
}

#[test]
fn close_is_answered_and_both_sides_finish() {
    let mut p = Pair::default_pair();
    p.client.close(None);
    p.drive();
    assert!(p.client.is_finished() && p.server.is_finished());
    assert!(p.server_events.contains(&Event::Closed {
        error: None,
        by_peer: true
    }));
    assert!(p.client_events.contains(&Event::Closed {
        error: None,
        by_peer: true
    }));
}

#[test]
fn idle_peer_is_closed_with_resource_limit_exceeded() {
    let mut p = Pair::new(
        ConnectionConfig {
            idle_timeout: None,
            ..Default::default()
        },
        ConnectionConfig {
            idle_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    // The engine's deadlines, in turn (the first gives back the
    // handshake's buffers), until the idle timeout's.
    while !p.server.is_finished() {
        p.now = p.server.poll_timeout().expect("idle timer armed");
        p.server.handle_timeout(p.now);
    }
    p.drive();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), by_peer: true } if err.condition == condition::RESOURCE_LIMIT_EXCEEDED
    )));
}

#[test]
fn heartbeats_keep_an_idle_connection_alive() {
    let mut p = Pair::new(
        ConnectionConfig::default(),
        ConnectionConfig {
            idle_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    // The client sends an empty frame before the server's (halved, 5 s)
    // advertised timeout; run a minute of virtual time.
    for _ in 0..60 {
        p.now += Duration::from_secs(1);
        p.client.handle_timeout(p.now);
        p.server.handle_timeout(p.now);
        p.drive();
    }
    assert!(p.client.is_open() && p.server.is_open());
}

#[test]
fn garbage_after_open_closes_with_a_framing_error() {
    let mut p = Pair::default_pair();
    p.server.handle_input(&[0, 0, 0, 4, 2, 0, 0, 0], p.now);
    p.drive();
    assert!(p.server.is_finished());
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), .. } if err.condition == condition::FRAMING_ERROR
    )));
}

#[test]
fn frame_on_unknown_handle_ends_the_session_with_unattached_handle() {
    let mut p = Pair::default_pair();
    let (snd, _) = p.sender_link(1);
    let mut buf = bytes::BytesMut::new();
    let flow = crate::definitions::Flow {
        handle: Some(crate::definitions::Handle(77)),
        link_credit: Some(1),
        ..Default::default()
    };
    crate::frame::encode_amqp_frame(
        0,
        &crate::definitions::Performative::Flow(flow),
        &[],
        &mut buf,
    );
    p.client.handle_input(&buf, p.now);
    p.drive();
    // A session error (AMQP 1.0 §2.8.16): the session ends, the connection stays.
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Detached { link, .. } if *link == snd))
    );
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::SessionEnded { error: Some(err), .. } if err.condition == condition::UNATTACHED_HANDLE
    )));
    assert!(p.client.is_open() && p.server.is_open());
    assert!(p.client.begin_session().is_ok());
}

#[test]
fn transfer_without_credit_detaches_the_link() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(1);
    // Make the client believe it has credit the server never gave.
    p.client.links.get_mut(&snd).unwrap().credit = 3;
    p.send_small(snd, 2, true);
    p.drive();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Detached { link, error: Some(err), .. } if *link == snd && err.condition == condition::TRANSFER_LIMIT_EXCEEDED
    )));
    assert_eq!(p.server_transfers().len(), 1);
    let _ = rcv;
}

/// AMQP 1.0 §2.6.7: a flow the receiver sent before the sender's latest
/// transfers reached it gives the sender no credit beyond its limit — here
/// the limit is already passed, so none at all.
#[test]
fn a_stale_flow_gives_the_sender_no_credit() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(4);
    p.send_small(snd, 3, true);
    // The server lowers the credit to 2 before the transfers reach it: its
    // flow says delivery-count 0, link-credit 2 — a limit of 2, while the
    // client has sent 3.
    p.server.flow(rcv, 2, false).unwrap();
    while let Some(b) = p.server.poll_transmit(p.now) {
        p.client.handle_input(&b, p.now);
    }
    assert_eq!(p.client.credit(snd), 0, "credit from a stale flow");
    assert!(
        p.client
            .send(
                snd,
                Bytes::from_static(b"t"),
                Bytes::from_static(b"m"),
                true,
                false
            )
            .is_err()
    );
    // Once everything is exchanged, nothing was sent beyond credit.
    p.drive();
    assert!(
        !p.client_events
            .iter()
            .any(|e| matches!(e, Event::Detached { .. }))
    );
    assert_eq!(p.server_transfers().len(), 3);
}

/// Credit the receiver takes back (AMQP 1.0 §2.6.7) may have been sent on
/// already: those transfers are welcome and marked `revoked`. The lower
/// grant asks the sender for its state (echo); once its answer shows it
/// has seen the grant, nothing more is owed, and a transfer beyond credit
/// ends the link.
#[test]
fn credit_taken_back_is_honoured_until_the_sender_has_seen_it() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(4);
    p.send_small(snd, 3, true);
    // The server takes the credit back before the transfers reach it.
    p.server.flow(rcv, 1, false).unwrap();
    p.drive();
    let revoked: Vec<bool> = p.server_transfers().iter().map(|t| t.revoked).collect();
    assert_eq!(revoked, [false, true, true]);
    assert_eq!(p.client.credit(snd), 0);
    // The client answered the echo: it has seen the grant, so a transfer
    // beyond it is a transfer without credit.
    p.client.links.get_mut(&snd).unwrap().credit = 1;
    p.send_small(snd, 1, true);
    p.drive();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Detached { link, error: Some(err), .. } if *link == snd && err.condition == condition::TRANSFER_LIMIT_EXCEEDED
    )));
    assert!(p.server_transfers().is_empty());
}

/// The sender's answer to an earlier echo, crossing a new grant and a new
/// cut, states the very limit we cut back to: it does not show that the
/// sender saw the new cut, and what it sends on the new grant is still
/// taken (ferry-sim tests/edge.rs seed 301: the router detached the link
/// for a "transfer without link credit" it had granted).
#[test]
fn an_answer_to_an_earlier_echo_does_not_end_what_a_later_cut_owes() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(4);
    let out = |c: &mut Connection, now| {
        let mut bytes = Vec::new();
        while let Some(b) = c.poll_transmit(now) {
            bytes.extend_from_slice(&b);
        }
        bytes
    };
    // A cut (echo), and the sender's answer, held back.
    p.server.flow(rcv, 0, false).unwrap();
    let cut = out(&mut p.server, p.now);
    p.client.handle_input(&cut, p.now);
    let answer = out(&mut p.client, p.now);
    assert!(!answer.is_empty(), "the sender answers the echo");
    // A new grant, which the sender sees, then a new cut, which it does not.
    p.server.flow(rcv, 4, false).unwrap();
    let grant = out(&mut p.server, p.now);
    p.client.handle_input(&grant, p.now);
    assert_eq!(p.client.credit(snd), 4);
    p.server.flow(rcv, 0, false).unwrap();
    let _second_cut = out(&mut p.server, p.now);
    p.send_small(snd, 1, true);
    let transfer = out(&mut p.client, p.now);
    // The old answer, then the transfer sent on the new grant.
    p.server.handle_input(&answer, p.now);
    p.server.handle_input(&transfer, p.now);
    let events: Vec<Event> = std::iter::from_fn(|| p.server.poll_event()).collect();
    let revoked: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(t) if t.link == rcv => Some(t.revoked),
            _ => None,
        })
        .collect();
    assert_eq!(
        revoked,
        [true],
        "the transfer is taken, as sent on credit taken back"
    );
    let detach = out(&mut p.server, p.now);
    p.client.handle_input(&detach, p.now);
    assert!(
        !std::iter::from_fn(|| p.client.poll_event())
            .any(|e| matches!(e, Event::Detached { link, .. } if link == snd)),
        "no detach for a transfer sent on credit granted"
    );
}

/// A flow asking for our state (echo) that crossed our detach is not
/// answered: the peer has forgotten the handle by the time an answer would
/// reach it (AMQP 1.0 §2.6.5), and would end the session over it.
#[test]
fn no_flow_follows_our_detach() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(4);
    // Lowering credit asks the sender for its state.
    p.server.flow(rcv, 1, false).unwrap();
    p.client.detach(snd, true, None).unwrap();
    p.drive();
    let ended = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { error: Some(_), .. }))
    };
    assert!(!ended(&p.server_events) && !ended(&p.client_events));
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::Detached { link, .. } if *link == rcv))
    );
}

#[test]
fn session_window_holds_transfers_until_a_flow_opens_it() {
    let mut p = Pair::new(
        ConnectionConfig::default(),
        ConnectionConfig {
            session_window: 4,
            ..Default::default()
        },
    );
    let (snd, _) = p.sender_link(100);
    p.send_small(snd, 20, true);
    p.drive();
    // The server refills its window as it goes; all arrive, none beyond it.
    assert_eq!(p.server_transfers().len(), 20);
    assert!(p.server.is_open());
}

#[test]
fn multi_frame_abort_is_reported() {
    let mut p = Pair::default_pair();
    let (snd, _) = p.sender_link(1);
    let id = p
        .client
        .send(
            snd,
            Bytes::from_static(b"t"),
            Bytes::from_static(b"part"),
            false,
            true,
        )
        .unwrap();
    p.client.abort(snd, id).unwrap();
    p.drive();
    let t = p.server_transfers();
    assert_eq!(t.len(), 2);
    assert!(t[0].more && t[1].aborted && !t[1].more);
    assert_eq!(t[1].delivery, SequenceNo(0));
}

mod priority;

/// A peer that attaches and detaches at once (before we answer) gets both
/// answered: our attach, then our detach (AMQP 1.0 §2.6.3), so its link
/// closes; answering the attach later is refused as an unknown link.
#[test]
fn an_attach_detached_before_it_is_answered_is_answered_both_ways() {
    let mut p = Pair::default_pair();
    let s = p.client.begin_session().unwrap();
    p.drive();
    let link = p
        .client
        .attach(
            s,
            LinkSpec {
                name: "quick".into(),
                role: Role::Receiver,
                source: Some(Source::new("q")),
                target: Some(TargetTerminus::Target(Target::default())),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.client.detach(link, true, None).unwrap();
    p.drive();
    let remote = p.take_attach_request();
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Detached { link: l, .. } if *l == link)),
        "the client's link closed: {:?}",
        p.client_events
    );
    assert_eq!(
        p.server.accept_attach(remote, LinkSpec::default()),
        Err(EngineError::UnknownLink)
    );
    assert!(p.client.is_open() && p.server.is_open());
}

/// AMQP 1.0 §2.8.7: a delivery-tag is at most 32 octets; a longer one
/// detaches the link with `amqp:invalid-field`, and nothing is delivered.
#[test]
fn a_delivery_tag_over_32_octets_detaches_the_link() {
    let mut p = Pair::default_pair();
    let (snd, _) = p.sender_link(5);
    p.client
        .send(
            snd,
            Bytes::from(vec![7u8; 32]),
            Bytes::from_static(b"ok"),
            true,
            false,
        )
        .unwrap();
    p.client
        .send(
            snd,
            Bytes::from(vec![7u8; 33]),
            Bytes::from_static(b"no"),
            true,
            false,
        )
        .unwrap();
    p.drive();
    assert_eq!(p.server_transfers().len(), 1, "the 32-octet tag passes");
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Detached { link, error: Some(err), .. }
            if *link == snd && err.condition == condition::INVALID_FIELD
    )));
    assert!(p.client.is_open() && p.server.is_open());
}

/// AMQP 1.0 §2.6.1: link names are unique per direction between two
/// containers; a second attach of an attached link's name is refused and
/// the first link carries on.
#[test]
fn a_second_link_with_the_same_name_and_direction_is_refused() {
    let mut p = Pair::default_pair();
    let (first, rcv) = p.sender_link(5);
    let s = p.client.begin_session().unwrap();
    p.drive();
    let second = p
        .client
        .attach(
            s,
            LinkSpec {
                name: "l".into(),
                role: Role::Sender,
                target: Some(TargetTerminus::Target(Target::new("q"))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.drive();
    assert!(
        !p.server_events
            .iter()
            .any(|e| matches!(e, Event::AttachRequested { .. })),
        "the router's link logic never sees it"
    );
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Detached { link, error: Some(err), .. }
            if *link == second && err.condition == condition::INVALID_FIELD
    )));
    p.send_small(first, 1, true);
    p.drive();
    assert_eq!(p.server_transfers().len(), 1);
    let _ = rcv;
}

/// Delivery ids come from one counter per session (AMQP 1.0 §2.7.5): a
/// new delivery that skips ahead closes the connection with
/// `amqp:invalid-field`, as Qpid Proton does.
#[test]
fn a_jump_in_delivery_ids_closes_the_connection() {
    let mut p = Pair::default_pair();
    let (snd, _) = p.sender_link(5);
    p.send_small(snd, 2, true);
    p.drive();
    assert_eq!(p.server_transfers().len(), 2);
    let session = p.client.links[&snd].session;
    p.client
        .sessions
        .get_mut(&session)
        .unwrap()
        .next_delivery_id = SequenceNo(1_000_000);
    p.send_small(snd, 1, true);
    p.drive();
    assert!(p.server_transfers().is_empty());
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), .. } if err.condition == condition::INVALID_FIELD
    )));
}

/// Deliveries the sender sent before our detach reached it are dropped,
/// yet took their delivery-ids: the session's next delivery, on another
/// link, is in sequence. Found as a false `modified` between an edge and
/// an interior router: a delivery raced an edge's detach, the next one
/// on the uplink closed the connection as "out of sequence", and what
/// was in flight on it failed.
#[test]
fn deliveries_dropped_on_a_link_we_detached_keep_the_delivery_ids_in_sequence() {
    let mut p = Pair::small_frames();
    let (snd, rcv) = p.sender_link(5);
    let session = p.client.links[&snd].session;
    p.send_small(snd, 1, false);
    p.drive();
    assert_eq!(p.server_transfers().len(), 1);
    // The server detaches while the client sends one small delivery and
    // one in several frames.
    p.server.detach(rcv, true, None).unwrap();
    p.send_small(snd, 1, false);
    p.client
        .send(
            snd,
            Bytes::from_static(b"big"),
            Bytes::from(vec![7u8; 2_000]),
            false,
            false,
        )
        .unwrap();
    p.drive();
    assert!(
        p.server_transfers().is_empty(),
        "dropped on the detached link"
    );
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Detached { link, .. } if *link == snd))
    );
    // Another link on the same session.
    let spec = LinkSpec {
        name: "l2".into(),
        role: Role::Sender,
        target: Some(TargetTerminus::Target(Target::new("q"))),
        ..LinkSpec::default()
    };
    let snd = p.client.attach(session, spec).unwrap();
    p.drive();
    let rcv = p.take_attach_request();
    let spec = LinkSpec {
        role: Role::Receiver,
        ..LinkSpec::default()
    };
    p.server.accept_attach(rcv, spec).unwrap();
    p.server.flow(rcv, 1, false).unwrap();
    p.drive();
    p.send_small(snd, 1, false);
    p.drive();
    assert_eq!(p.server_transfers().len(), 1, "the next delivery arrives");
    let closed = |events: &[Event]| events.iter().any(|e| matches!(e, Event::Closed { .. }));
    assert!(!closed(&p.server_events) && !closed(&p.client_events));
}

/// Found by the router's fuzz target (router/fuzz): a peer announcing the
/// least max-frame-size, 512, attached a link with a 600-byte name; the
/// answering attach echoed the name in a frame of over 600 bytes. Now
/// that frame is not sent and the connection is closed with
/// amqp:frame-size-too-small.
#[test]
fn a_frame_over_the_peers_max_frame_size_is_not_sent_and_closes() {
    let client = ConnectionConfig {
        max_frame_size: 512,
        ..ConnectionConfig::default()
    };
    let mut p = Pair::new(client, ConnectionConfig::default());
    let s = p.client.begin_session().unwrap();
    p.drive();
    let name = "n".repeat(600);
    p.client
        .attach(
            s,
            LinkSpec {
                name: name.clone(),
                role: Role::Sender,
                target: Some(TargetTerminus::Target(Target::new("q"))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.drive();
    let remote = p.take_attach_request();
    p.server
        .accept_attach(
            remote,
            LinkSpec {
                role: Role::Receiver,
                target: Some(TargetTerminus::Target(Target::new("q"))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    // Written after the frame that did not fit: not sent either.
    let _ = p.server.flow(remote, 10, false);
    let mut sent = Vec::new();
    while let Some(b) = p.server.poll_transmit(p.now) {
        sent.extend_from_slice(&b);
    }
    let mut buf = bytes::BytesMut::from(&sent[..]);
    let mut frames = Vec::new();
    while let Ok(Some(f)) =
        crate::frame::decode_frame(&mut buf, u32::MAX, crate::frame::Layer::Amqp)
    {
        frames.push(f);
    }
    assert!(buf.is_empty(), "whole frames");
    assert!(
        matches!(&frames[..], [crate::frame::Frame::Amqp {
            performative: crate::definitions::Performative::Close(c), ..
        }] if c.error.as_ref().is_some_and(|e| e.condition == condition::FRAME_SIZE_TOO_SMALL)),
        "only a close with amqp:frame-size-too-small: {frames:?}"
    );
    assert!(p.server.is_finished());
    p.client.handle_input(&sent, p.now);
    p.drive();
    assert!(
        !p.client_events
            .iter()
            .any(|e| matches!(e, Event::Attached { .. }))
    );
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), .. } if err.condition == condition::FRAME_SIZE_TOO_SMALL
    )));
}
