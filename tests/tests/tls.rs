//! TLS and SASL on the `ferry` binary, black-box: amqps with our client
//! and with fe2o3-amqp over rustls, SASL PLAIN, SCRAM-SHA-256 and
//! EXTERNAL against a users file made with `ferry user add`, refusals
//! (bad passwords, unknown users, plaintext on the TLS port, untrusted,
//! expired and misnamed certificates, a flood of failed logins), and
//! certificate rotation under a running router. Certificates are made in
//! the test (rcgen). After every refusal the router still serves.

#[path = "../support/proton.rs"]
mod proton;
#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fe2o3_amqp::sasl_profile::{SaslProfile, SaslScramSha256};
use fe2o3_amqp::types::messaging::Outcome;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ferry_proto::client::{Client, ClientError, ClientOptions, ClientTls};
use ferry_proto::codec::Symbol;
use ferry_proto::definitions::{SaslCode, SaslFrame, SaslInit};
use ferry_proto::engine::SaslClientConfig;
use ferry_proto::frame::{self, Frame, Layer, ProtocolHeader};
use ferry_tests::{Ferry, TempDir, WAIT, user_add};
use router::{Issued, Pki, Usage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// Bound on anything a test waits for.
const LIMIT: Duration = Duration::from_secs(20);

/// A router with two client listeners: amqps (`tls`, client certificates
/// optional, every mechanism) and plain TCP offering only password
/// mechanisms (PLAIN allowed there, for the tests that need no TLS).
struct Secure {
    ferry: Ferry,
    tls: SocketAddr,
    plain: SocketAddr,
    server: Issued,
    pki: Pki,
    _dir: TempDir,
}

impl Secure {
    fn start() -> Self {
        Self::start_with(|pki| pki.server("server"), "")
    }

    fn start_with(server: impl FnOnce(&Pki) -> Issued, extra: &str) -> Self {
        let pki = Pki::new("clients");
        let server = server(&pki);
        let dir = TempDir::new();
        let users = dir.path().join("users.toml");
        user_add(&users, USER, PASSWORD);
        let toml = format!(
            "[router]\nid = \"secure\"\n\n{profile}\
             [auth]\nusers = \"{users}\"\n\n\
             [[listener]]\nhost = \"127.0.0.1\"\nport = 0\ntls = \"server\"\nclient_cert = \"optional\"\n\
             sasl_mechanisms = [\"ANONYMOUS\", \"PLAIN\", \"SCRAM-SHA-256\", \"EXTERNAL\"]\n\n\
             [[listener]]\nhost = \"127.0.0.1\"\nport = 0\n\
             sasl_mechanisms = [\"PLAIN\", \"SCRAM-SHA-256\"]\nallow_plain_without_tls = true\n\n{extra}",
            profile = pki.profile("server", &server),
            users = users.display(),
        );
        let path = dir.write("ferry.toml", &toml);
        let mut ferry = Ferry::spawn(
            ["run".as_ref(), "--config".as_ref(), path.as_os_str()],
            &[("RUST_LOG", "info,ferry_router::driver=debug")],
        );
        let addrs = ferry.wait_listening(2, WAIT);
        Self {
            ferry,
            tls: addrs[0],
            plain: addrs[1],
            server,
            pki,
            _dir: dir,
        }
    }

    fn tls_options(&self, identity: Option<&Issued>, sasl: SaslClientConfig) -> ClientOptions {
        ClientOptions {
            tls: Some(ClientTls {
                config: self.pki.client_config(identity),
                server_name: "localhost".into(),
            }),
            sasl: Some(sasl),
            timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        }
    }

    /// An amqps client logged in as ANONYMOUS.
    async fn anonymous(&self) -> Result<Client, ClientError> {
        Client::connect(
            self.tls,
            self.tls_options(None, SaslClientConfig::Anonymous),
        )
        .await
    }

    /// Checks that a new amqps client still gets a link and credit.
    async fn still_serves(&self) {
        let mut client = self
            .anonymous()
            .await
            .unwrap_or_else(|e| panic!("the router stopped serving: {e}\n{}", self.ferry.stderr()));
        let rx = client.open_receiver("still-here", 1).await.unwrap();
        assert_eq!(client.credit(rx), 1);
    }
}

fn scram(user: &str, password: &str) -> SaslClientConfig {
    SaslClientConfig::ScramSha256 {
        username: user.into(),
        password: password.into(),
        nonce: format!("test-nonce-{}", std::process::id()),
    }
}

fn plain(user: &str, password: &str) -> SaslClientConfig {
    SaslClientConfig::Plain {
        username: user.into(),
        password: password.into(),
    }
}

/// The AMQP error a refused connection closed with.
fn closed_with(result: Result<Client, ClientError>) -> Option<String> {
    match result {
        Ok(_) => None,
        Err(e) => Some(e.condition().map_or_else(|| e.to_string(), str::to_string)),
    }
}

#[tokio::test]
async fn an_amqps_client_sends_and_receives_through_the_router() {
    let r = Secure::start();
    let mut consumer = r.anonymous().await.unwrap();
    let rx = consumer.open_receiver("tls-q", 10).await.unwrap();
    let mut producer = r.anonymous().await.unwrap();
    let tx = producer.open_sender(Some("tls-q")).await.unwrap();
    exchange(&mut producer, tx, &mut consumer, rx, "over TLS").await;
}

/// One message from `producer` on `tx` to `consumer` on `rx`, accepted,
/// and the accept back at the producer.
async fn exchange(
    producer: &mut Client,
    tx: ferry_proto::engine::LinkId,
    consumer: &mut Client,
    rx: ferry_proto::engine::LinkId,
    body: &str,
) {
    producer.wait_credit(tx).await.unwrap();
    producer
        .send_nowait(tx, ferry_tests::amqp_value(body), false)
        .unwrap();
    producer.flush().await.unwrap();
    let delivery = consumer.receive(rx).await.unwrap();
    assert_eq!(ferry_tests::body_string(delivery.payload.clone()), body);
    consumer.accept(&delivery).unwrap();
    consumer.flush().await.unwrap();
    let outcome = producer.next_outcome().await.unwrap();
    assert_eq!(
        outcome.state,
        Some(ferry_proto::definitions::DeliveryState::Accepted),
        "the consumer's accept reached the producer"
    );
}

#[tokio::test]
async fn our_client_logs_in_with_plain_and_scram_over_tls() {
    let r = Secure::start();
    for sasl in [plain(USER, PASSWORD), scram(USER, PASSWORD)] {
        let mechanism = sasl.mechanism();
        let mut c = Client::connect(r.tls, r.tls_options(None, sasl))
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}\n{}", r.ferry.stderr()));
        c.open_receiver("logged-in", 1).await.unwrap();
    }
    let log = r.ferry.stderr();
    assert!(log.contains("mechanism=\"PLAIN\"") && log.contains("mechanism=\"SCRAM-SHA-256\""));
}

/// fe2o3-amqp (an independent AMQP 1.0 implementation) over rustls:
/// SASL PLAIN and SCRAM-SHA-256, then a message each way.
#[tokio::test]
async fn fe2o3_over_rustls_logs_in_with_plain_and_scram_sha_256() {
    let r = Secure::start();
    let profiles: [(&str, SaslProfile); 2] = [
        (
            "PLAIN",
            SaslProfile::Plain {
                username: USER.into(),
                password: PASSWORD.into(),
            },
        ),
        ("SCRAM", SaslScramSha256::new(USER, PASSWORD).into()),
    ];
    for (name, profile) in profiles {
        let connector = tokio_rustls::TlsConnector::from(r.pki.client_config(None));
        let tcp = TcpStream::connect(r.tls).await.unwrap();
        let tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let mut connection = Connection::builder()
            .container_id(format!("fe2o3-{name}"))
            .scheme("amqp") // TLS is already in the stream
            .sasl_profile(profile)
            .open_with_stream(tls)
            .await
            .unwrap_or_else(|e| panic!("fe2o3 {name}: {e:?}\n{}", r.ferry.stderr()));
        let mut session = Session::begin(&mut connection).await.unwrap();
        let address = format!("fe2o3-{name}");
        let mut receiver = Receiver::attach(&mut session, "rx", address.as_str())
            .await
            .unwrap();
        let mut sender = Sender::attach(&mut session, "tx", address.as_str())
            .await
            .unwrap();
        let outcome = tokio::spawn(async move {
            let o = sender.send(format!("hello via {name}")).await.unwrap();
            (sender, o)
        });
        let delivery = tokio::time::timeout(LIMIT, receiver.recv::<String>())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.body(), &format!("hello via {name}"));
        receiver.accept(&delivery).await.unwrap();
        let (sender, o) = tokio::time::timeout(LIMIT, outcome).await.unwrap().unwrap();
        assert!(matches!(o, Outcome::Accepted(_)), "{o:?}");
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
        session.end().await.unwrap();
        connection.close().await.unwrap();
    }
}

/// Logs in with PLAIN over the plain listener, by hand, from `from`;
/// returns every byte the router sent until it closed the socket.
async fn raw_plain_login(to: SocketAddr, from: [u8; 4], user: &str, password: &str) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut out = BytesMut::from(&ProtocolHeader::Sasl.bytes()[..]);
    let init = SaslFrame::Init(SaslInit {
        mechanism: Symbol::from_static("PLAIN"),
        initial_response: Some(Bytes::from(format!("\0{user}\0{password}"))),
        hostname: None,
    });
    frame::encode_sasl_frame(&init, &mut out);
    stream.write_all(&out).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut reply))
        .await
        .expect("the router answers a login and closes")
        .unwrap();
    reply
}

/// The SASL outcome code in a raw reply (after the SASL header and the
/// mechanisms frame).
fn outcome_code(reply: &[u8]) -> Option<SaslCode> {
    let mut frames = BytesMut::from(reply.get(8..)?);
    while let Ok(Some(f)) = frame::decode_frame(&mut frames, 1 << 16, Layer::Sasl) {
        if let Frame::Sasl(SaslFrame::Outcome(o)) = f {
            return Some(o.code);
        }
    }
    None
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_refusal() {
    let r = Secure::start();
    let wrong = raw_plain_login(r.plain, [127, 0, 0, 1], USER, "wrong").await;
    let unknown = raw_plain_login(r.plain, [127, 0, 0, 1], "mallory", PASSWORD).await;
    assert_eq!(outcome_code(&wrong), Some(SaslCode::Auth));
    assert_eq!(wrong, unknown, "the reply tells whether the user exists");
    // Through a client: refused with unauthorized-access, both ways.
    for sasl in [
        scram(USER, "wrong"),
        scram("mallory", PASSWORD),
        plain(USER, "wrong"),
    ] {
        let refused = closed_with(Client::connect(r.tls, r.tls_options(None, sasl)).await);
        assert_eq!(
            refused.as_deref(),
            Some("amqp:unauthorized-access"),
            "bad credentials"
        );
    }
    let log = r.ferry.stderr();
    assert!(log.contains("login failed"), "{log}");
    assert!(!log.contains("wrong") || !log.contains("password=\"wrong\""));
    assert!(!log.contains(PASSWORD), "a password reached the log");
    r.still_serves().await;
}

#[tokio::test]
async fn a_listener_without_anonymous_admits_only_known_users() {
    let r = Secure::start();
    // A bare AMQP header (no SASL) and ANONYMOUS are both refused.
    let bare = ClientOptions {
        sasl: None,
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    assert!(Client::connect(r.plain, bare).await.is_err());
    let anonymous = ClientOptions {
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let refused = closed_with(Client::connect(r.plain, anonymous).await);
    assert_eq!(
        refused.as_deref(),
        Some("amqp:unauthorized-access"),
        "anonymous got in"
    );
    let ok = ClientOptions {
        sasl: Some(scram(USER, PASSWORD)),
        ..ClientOptions::default()
    };
    Client::connect(r.plain, ok).await.unwrap();
}

#[tokio::test]
async fn external_takes_the_identity_from_the_client_certificate() {
    let r = Secure::start();
    let alice = r
        .pki
        .issue("alice", Some("alice"), &[], Usage::Client, false);
    let mut c = Client::connect(
        r.tls,
        r.tls_options(Some(&alice), SaslClientConfig::External),
    )
    .await
    .unwrap();
    c.open_receiver("external", 1).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !r
        .ferry
        .stderr()
        .contains("user=\"alice\" mechanism=\"EXTERNAL\"")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            r.ferry.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Without a certificate, EXTERNAL has no identity to give.
    let refused =
        closed_with(Client::connect(r.tls, r.tls_options(None, SaslClientConfig::External)).await);
    assert!(refused.is_some(), "EXTERNAL without a certificate got in");
    r.still_serves().await;
}

#[tokio::test]
async fn plaintext_on_the_tls_port_and_tls_on_the_plain_port_are_closed() {
    let r = Secure::start();
    // An AMQP header where a TLS ClientHello belongs.
    let mut raw = TcpStream::connect(r.tls).await.unwrap();
    raw.write_all(&ProtocolHeader::Amqp.bytes()).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(LIMIT, raw.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "the router kept a plaintext peer on its TLS port"
    );
    assert!(
        !reply.starts_with(b"AMQP"),
        "spoke AMQP in clear on a TLS port"
    );
    // A TLS handshake on the plain port.
    let connector = tokio_rustls::TlsConnector::from(r.pki.client_config(None));
    let tcp = TcpStream::connect(r.plain).await.unwrap();
    let handshake = tokio::time::timeout(
        LIMIT,
        connector.connect("localhost".try_into().unwrap(), tcp),
    )
    .await
    .expect("the handshake ends");
    assert!(
        handshake.is_err(),
        "a TLS handshake succeeded on a plain port"
    );
    r.still_serves().await;
}

#[tokio::test]
async fn untrusted_expired_and_misnamed_certificates_are_refused() {
    let r = Secure::start();
    let stranger = Pki::new("stranger");
    let untrusted = stranger.issue("eve", Some("eve"), &[], Usage::Client, false);
    let expired = r.pki.issue("old", Some("old"), &[], Usage::Client, true);
    for (what, identity) in [("untrusted", &untrusted), ("expired", &expired)] {
        let options = ClientOptions {
            tls: Some(ClientTls {
                // Our client trusts the router; the router must not trust it.
                config: Arc::new(
                    ferry_proto::client::client_config(
                        &r.pki_ca(),
                        Some((&identity.cert, &identity.key)),
                    )
                    .unwrap(),
                ),
                server_name: "localhost".into(),
            }),
            sasl: Some(SaslClientConfig::External),
            timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        assert!(
            Client::connect(r.tls, options).await.is_err(),
            "an {what} client certificate was accepted"
        );
    }
    // The router's certificate is for localhost, not for another name.
    let misnamed = ClientOptions {
        tls: Some(ClientTls {
            config: r.pki.client_config(None),
            server_name: "ferry.example".into(),
        }),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let e = Client::connect(r.tls, misnamed).await.unwrap_err();
    assert!(e.to_string().contains("tls"), "{e}");
    // A client that trusts another CA refuses the router.
    let other = ClientOptions {
        tls: Some(ClientTls {
            config: stranger.client_config(None),
            server_name: "localhost".into(),
        }),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    assert!(Client::connect(r.tls, other).await.is_err());
    r.still_serves().await;

    // A router whose own certificate has expired is refused by clients.
    let stale = Secure::start_with(
        |pki| {
            pki.issue(
                "stale",
                Some("localhost"),
                &["localhost"],
                Usage::Server,
                true,
            )
        },
        "",
    );
    let e = stale.anonymous().await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
}

impl Secure {
    fn pki_ca(&self) -> PathBuf {
        self.pki.ca_pem.clone()
    }
}

/// Thousands of failed PLAIN logins from 127.0.0.2 while a known user
/// logs in again and again from 127.0.0.1: every failure gets its `auth`
/// outcome, every good login succeeds meanwhile, and the log stays short
/// (failed logins are rate-limited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_failed_logins_leave_everyone_else_served() {
    const FAILURES: usize = 10_000;
    const AT_ONCE: usize = 32;
    let r = Secure::start();
    let plain_addr = r.plain;
    let refused = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..AT_ONCE {
        let (refused, next) = (refused.clone(), next.clone());
        flood.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < FAILURES {
                let reply = raw_plain_login(plain_addr, [127, 0, 0, 2], USER, "guess").await;
                if outcome_code(&reply) == Some(SaslCode::Auth) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Meanwhile a known user logs in, again and again, from elsewhere.
    let mut logins = 0;
    while refused.load(Ordering::Relaxed) < FAILURES / 2 {
        let ok = ClientOptions {
            sasl: Some(plain(USER, PASSWORD)),
            timeout: LIMIT,
            ..ClientOptions::default()
        };
        let mut c = Client::connect(plain_addr, ok)
            .await
            .unwrap_or_else(|e| panic!("a good login failed during the flood: {e}"));
        c.open_receiver("during-the-flood", 1).await.unwrap();
        logins += 1;
    }
    for f in flood {
        tokio::time::timeout(Duration::from_secs(300), f)
            .await
            .expect("the flood ends")
            .unwrap();
    }
    assert_eq!(refused.load(Ordering::Relaxed), FAILURES);
    assert!(logins >= 1);
    let log = r.ferry.stderr();
    let lines = log.matches("login failed").count();
    assert!(
        lines < FAILURES / 10,
        "{lines} log lines for {FAILURES} failed logins"
    );
    assert!(
        log.contains("more failed logins not logged"),
        "no summary line"
    );
    r.still_serves().await;
}

/// The subject CN of the certificate a new handshake with `addr` shows.
async fn served_cn(addr: SocketAddr, pki: &Pki) -> Option<String> {
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(None));
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .ok()?;
    let cert = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_handshakes_while_established_links_flow() {
    let r = Secure::start_with(
        |pki| {
            pki.issue(
                "rotating",
                Some("localhost"),
                &["localhost"],
                Usage::Server,
                false,
            )
        },
        "",
    );
    assert_eq!(served_cn(r.tls, &r.pki).await.as_deref(), Some("localhost"));
    // An established link, before the rotation.
    let mut consumer = r.anonymous().await.unwrap();
    let rx = consumer.open_receiver("rotation", 100).await.unwrap();
    let mut producer = r.anonymous().await.unwrap();
    let tx = producer.open_sender(Some("rotation")).await.unwrap();
    exchange(&mut producer, tx, &mut consumer, rx, "before").await;

    // Rotate: a new certificate and key in place of the old files.
    let new = r
        .pki
        .issue("new", Some("rotated"), &["localhost"], Usage::Server, false);
    std::fs::copy(&new.key, &r.server.key).unwrap();
    std::fs::copy(&new.cert, &r.server.cert).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while served_cn(r.tls, &r.pki).await.as_deref() != Some("rotated") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new handshakes still get the old certificate\n{}",
            r.ferry.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exchange(&mut producer, tx, &mut consumer, rx, "after").await;

    // A corrupt file is logged, and the certificate in use stays.
    std::fs::write(&r.server.cert, "not a certificate").unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !r.ferry.stderr().contains("cannot reload tls profile") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            r.ferry.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_cn(r.tls, &r.pki).await.as_deref(), Some("rotated"));
    exchange(&mut producer, tx, &mut consumer, rx, "still").await;
    // SIGHUP reads the files again at once (and keeps the old material).
    let _ = Command::new("kill")
        .args(["-HUP", &r.ferry.pid().to_string()])
        .status();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !r.ferry.stderr().contains("SIGHUP received") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            r.ferry.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.still_serves().await;
}

/// Qpid Proton (Python, OpenSSL underneath) over TLS: SASL PLAIN with the
/// users file, EXTERNAL with a client certificate, and a wrong password
/// refused.
#[tokio::test]
async fn proton_logs_in_with_plain_and_external_over_tls() {
    let r = Secure::start();
    let url = format!("amqps://{}", r.tls);
    let ca = r.pki.ca_pem.display().to_string();
    let log = || r.ferry.stderr();
    let plain = proton::script("router_tls.py", &url, &[&ca, "plain", USER, PASSWORD], &log).await;
    assert_eq!(plain["received"], "hello over TLS from Proton", "{plain}");
    assert_eq!(plain["accepted"], true);

    let bob = r.pki.issue("bob", Some("bob"), &[], Usage::Client, false);
    let (cert, key) = (
        bob.cert.display().to_string(),
        bob.key.display().to_string(),
    );
    let external =
        proton::script("router_tls.py", &url, &[&ca, "external", &cert, &key], &log).await;
    assert_eq!(external["accepted"], true, "{external}");
    assert!(log().contains("user=\"bob\" mechanism=\"EXTERNAL\""));

    let refused =
        proton::script("router_tls.py", &url, &[&ca, "refused", USER, "nope"], &log).await;
    assert_eq!(refused["received"], serde_json::Value::Null);
    let errors = refused["transport_errors"].to_string();
    assert!(
        errors.contains("unauthorized-access") || errors.contains("Authentication failed"),
        "{errors}"
    );
    r.still_serves().await;
}
