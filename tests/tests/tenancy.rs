//! Tenants, black-box: virtual hosts (the `hostname` of a client's open)
//! isolate addresses across a mesh; groups of users may send and receive
//! only on their patterns; per-vhost and per-user connection limits; a
//! policy reloaded by SIGHUP applies to new attaches and detaches the
//! links it no longer allows. Clients: ours, fe2o3-amqp and Qpid Proton.

#[path = "../support/proton.rs"]
mod proton;
#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::time::Duration;

use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use ferry_proto::client::{Client, ClientError, ClientOptions};
use ferry_proto::definitions::{DeliveryState, condition};
use ferry_proto::engine::SaslClientConfig;
use ferry_tests::{Ferry, TempDir, WAIT, amqp_value, body_string, free_port, user_add};
use router::mesh_router;

const LIMIT: Duration = Duration::from_secs(30);

/// Two vhosts whose anonymous clients may do anything in their own.
const TWO_TENANTS: &str = r#"
[[vhost]]
name = "a"
[[vhost.group]]
name = "everyone"
users = ["$anonymous"]
send = ["*"]
receive = ["*"]

[[vhost]]
name = "b"
[[vhost.group]]
name = "everyone"
users = ["$anonymous"]
send = ["*"]
receive = ["*"]
"#;

fn options(vhost: &str, sasl: SaslClientConfig) -> ClientOptions {
    ClientOptions {
        hostname: Some(vhost.into()),
        sasl: Some(sasl),
        timeout: LIMIT,
        ..ClientOptions::default()
    }
}

fn anonymous(vhost: &str) -> ClientOptions {
    options(vhost, SaslClientConfig::Anonymous)
}

/// Tenants a and b both use the address `orders` over the line A - B - C:
/// each consumer on C (fe2o3 in a, Proton in b) gets exactly its own
/// tenant's messages from producers on A (ours in a, fe2o3 in b).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_the_same_address_names_never_meet_across_a_mesh() {
    const N: usize = 20;
    let b_port = free_port();
    let _b = mesh_router("B", Some(b_port), &[], TWO_TENANTS);
    let a = mesh_router("A", None, &[(b_port, 1)], TWO_TENANTS);
    let c = mesh_router("C", None, &[(b_port, 1)], TWO_TENANTS);

    // Tenant a's consumer on C: fe2o3-amqp, hostname "a".
    let mut a_conn = Connection::builder()
        .container_id("fe2o3-a")
        .hostname("a")
        .open(format!("amqp://{}", c.addr).as_str())
        .await
        .unwrap();
    let mut a_session = Session::begin(&mut a_conn).await.unwrap();
    let mut a_consumer = Receiver::attach(&mut a_session, "rx", "orders")
        .await
        .unwrap();

    let c_url = format!("amqp://{}", c.addr);
    let log = || c.ferry.stderr();
    // Tenant b's consumer on C: Qpid Proton, virtual_host "b".
    let n = N.to_string();
    let args = ["receive", "b", "orders", n.as_str()];
    let b_consumer = proton::script("router_vhost.py", &c_url, &args, &log);
    let producers = async {
        // Tenant a's producer on A: our client, hostname "a".
        let mut a_producer = Client::connect(a.addr, anonymous("a")).await.unwrap();
        let tx = a_producer.open_sender(Some("orders")).await.unwrap();
        for i in 0..N {
            let state = a_producer
                .send(tx, amqp_value(&format!("a-{i}")))
                .await
                .unwrap();
            // Accepted by a's consumer (accepted below, as it arrives).
            assert!(state.is_some());
        }
        // Tenant b's producer on A: fe2o3-amqp, hostname "b".
        let mut b_conn = Connection::builder()
            .container_id("fe2o3-b")
            .hostname("b")
            .open(format!("amqp://{}", a.addr).as_str())
            .await
            .unwrap();
        let mut b_session = Session::begin(&mut b_conn).await.unwrap();
        let mut b_producer = Sender::attach(&mut b_session, "tx", "orders")
            .await
            .unwrap();
        for i in 0..N {
            let outcome = b_producer.send(format!("b-{i}")).await.unwrap();
            assert!(outcome.is_accepted(), "{outcome:?}");
        }
        b_producer.close().await.unwrap();
        b_session.end().await.unwrap();
        b_conn.close().await.unwrap();
    };
    let a_received = async {
        let mut got = Vec::new();
        while got.len() < N {
            let d = tokio::time::timeout(LIMIT, a_consumer.recv::<String>())
                .await
                .expect("tenant a's messages arrive")
                .unwrap();
            got.push(d.body().clone());
            a_consumer.accept(&d).await.unwrap();
        }
        // Nothing more comes: none of b's messages.
        let extra = tokio::time::timeout(Duration::from_secs(1), a_consumer.recv::<String>()).await;
        assert!(extra.is_err(), "tenant a got more: {extra:?}");
        got
    };
    let (b_summary, (), a_got) = tokio::join!(b_consumer, producers, a_received);
    let want = |t: &str| (0..N).map(|i| format!("{t}-{i}")).collect::<Vec<_>>();
    assert_eq!(a_got, want("a"));
    let b_got: Vec<String> = b_summary["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(b_got, want("b"));
}

#[tokio::test]
async fn a_client_naming_no_vhost_is_refused_unless_there_is_a_default() {
    let r = router::Router::start(TWO_TENANTS);
    let e = Client::connect(r.addr, anonymous("c")).await.unwrap_err();
    assert_eq!(
        e.condition(),
        Some(condition::UNAUTHORIZED_ACCESS.as_str()),
        "{e}"
    );
    // With a default vhost, an unknown hostname lands there.
    let with_default =
        router::Router::start_with_env(TWO_TENANTS, &[("FERRY_ROUTER__DEFAULT_VHOST", "b")]);
    let mut c = Client::connect(with_default.addr, anonymous("elsewhere"))
        .await
        .unwrap();
    c.open_receiver("orders", 1).await.unwrap();
}

/// One router with users and one vhost, "shop": alice may send to
/// `orders` and `events.*` and receive `replies.*`; bob may receive
/// `orders` and `events.*`.
struct Shop {
    ferry: Ferry,
    addr: SocketAddr,
    config: std::path::PathBuf,
    _dir: TempDir,
}

const ALICE: &str = "alice-password";
const BOB: &str = "bob-password";

fn shop_toml(users: &std::path::Path, alice_sends: &str) -> String {
    format!(
        r#"[router]
id = "shop-router"

[auth]
users = "{users}"

[[listener]]
host = "127.0.0.1"
port = 0
sasl_mechanisms = ["PLAIN"]
allow_plain_without_tls = true

[[vhost]]
name = "shop"
max_connections = 5
max_connections_per_user = 3

[[vhost.group]]
name = "apps"
users = ["alice"]
send = [{alice_sends}]
receive = ["replies.*"]

[[vhost.group]]
name = "audit"
users = ["bob"]
receive = ["orders", "events.*"]
"#,
        users = users.display()
    )
}

impl Shop {
    fn start() -> Self {
        let dir = TempDir::new();
        let users = dir.path().join("users.toml");
        user_add(&users, "alice", ALICE);
        user_add(&users, "bob", BOB);
        let config = dir.write("ferry.toml", &shop_toml(&users, r#""orders", "events.*""#));
        let mut ferry = Ferry::spawn(
            ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
            &[("RUST_LOG", "info")],
        );
        let addr = ferry.wait_listening(1, WAIT)[0];
        Self {
            ferry,
            addr,
            config,
            _dir: dir,
        }
    }

    async fn login(&self, user: &str, password: &str) -> Result<Client, ClientError> {
        let sasl = SaslClientConfig::Plain {
            username: user.into(),
            password: password.into(),
        };
        Client::connect(self.addr, options("shop", sasl)).await
    }

    async fn alice(&self) -> Client {
        self.login("alice", ALICE).await.unwrap()
    }

    async fn bob(&self) -> Client {
        self.login("bob", BOB).await.unwrap()
    }
}

fn refused_with(result: Result<ferry_proto::engine::LinkId, ClientError>) -> Option<String> {
    match result {
        Ok(_) => None,
        Err(e) => e.condition().map(str::to_string),
    }
}

#[tokio::test]
async fn users_send_and_receive_only_on_their_patterns() {
    let shop = Shop::start();
    let mut bob = shop.bob().await;
    let rx = bob.open_receiver("orders", 10).await.unwrap();
    let mut alice = shop.alice().await;
    assert_eq!(
        refused_with(alice.open_sender(Some("payments")).await).as_deref(),
        Some("amqp:unauthorized-access")
    );
    assert_eq!(
        refused_with(alice.open_receiver("orders", 1).await).as_deref(),
        Some("amqp:unauthorized-access"),
        "alice may not consume orders"
    );
    assert_eq!(
        refused_with(bob.open_sender(Some("orders")).await).as_deref(),
        Some("amqp:unauthorized-access")
    );
    // The connection is still up: what is allowed still works.
    let tx = alice.open_sender(Some("orders")).await.unwrap();
    alice.wait_credit(tx).await.unwrap();
    alice.send_nowait(tx, amqp_value("order 1"), false).unwrap();
    alice.flush().await.unwrap();
    let d = bob.receive(rx).await.unwrap();
    assert_eq!(body_string(d.payload.clone()), "order 1");
    bob.accept(&d).unwrap();
    bob.flush().await.unwrap();
    assert_eq!(
        alice.next_outcome().await.unwrap().state,
        Some(DeliveryState::Accepted)
    );
    // An anonymous sender: each message's `to` is checked.
    let anon = alice.open_sender(None).await.unwrap();
    alice.wait_credit(anon).await.unwrap();
    let to = |address: &str| {
        ferry_proto::message::Message {
            properties: Some(ferry_proto::message::Properties {
                to: Some(address.into()),
                ..Default::default()
            }),
            ..ferry_proto::message::Message::new(ferry_proto::codec::Value::String("x".into()))
        }
        .encode()
    };
    let state = alice.send(anon, to("payments")).await.unwrap();
    match state {
        Some(DeliveryState::Rejected(r)) => assert_eq!(
            r.error.map(|e| e.condition),
            Some(condition::UNAUTHORIZED_ACCESS)
        ),
        other => panic!("a message to payments was {other:?}"),
    }
    let log = shop.ferry.stderr();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn connections_are_limited_per_vhost_and_per_user() {
    let shop = Shop::start();
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(shop.alice().await);
    }
    let e = shop.login("alice", ALICE).await.unwrap_err();
    assert_eq!(
        e.condition(),
        Some(condition::RESOURCE_LIMIT_EXCEEDED.as_str()),
        "a fourth connection of alice: {e}"
    );
    let mut bobs = vec![shop.bob().await, shop.bob().await];
    let e = shop.login("bob", BOB).await.unwrap_err();
    assert_eq!(
        e.condition(),
        Some(condition::RESOURCE_LIMIT_EXCEEDED.as_str()),
        "a sixth connection to the vhost: {e}"
    );
    // A place given back is taken again.
    bobs.pop().unwrap().close().await.unwrap();
    alices.pop().unwrap().close().await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match shop.login("bob", BOB).await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A group's limits replace the vhost's for its users: devices (anonymous
/// clients) get 2 connections and 2 links each where the vhost allows 10.
#[tokio::test]
async fn a_group_limits_its_users_below_the_vhost() {
    let dir = TempDir::new();
    let config = dir.write(
        "ferry.toml",
        r#"[router]
id = "iot"

[[listener]]
host = "127.0.0.1"
port = 0

[[vhost]]
name = "iot"
max_connections_per_user = 10
max_links_per_connection = 10

[[vhost.group]]
name = "devices"
users = ["$anonymous"]
send = ["telemetry"]
receive = ["commands"]
max_connections_per_user = 2
max_links_per_connection = 2
max_message_size = 200
"#,
    );
    let mut ferry = Ferry::spawn(
        ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
        &[],
    );
    let addr = ferry.wait_listening(1, WAIT)[0];
    let mut first = Client::connect(addr, anonymous("iot")).await.unwrap();
    let _second = Client::connect(addr, anonymous("iot")).await.unwrap();
    let e = Client::connect(addr, anonymous("iot")).await.unwrap_err();
    assert_eq!(
        e.condition(),
        Some(condition::RESOURCE_LIMIT_EXCEEDED.as_str()),
        "a third device connection: {e}"
    );
    first.open_sender(Some("telemetry")).await.unwrap();
    first.open_receiver("commands", 1).await.unwrap();
    assert_eq!(
        refused_with(first.open_sender(Some("telemetry")).await).as_deref(),
        Some(condition::RESOURCE_LIMIT_EXCEEDED.as_str()),
        "a third link"
    );
}

/// Alice's right to send to `orders` is taken away in the file, and SIGHUP
/// makes it so: her link on `orders` is detached, a new attach is
/// refused; her `events.*` traffic and bob's links carry on, nothing lost.
#[tokio::test]
async fn a_policy_reloaded_by_sighup_revokes_links_and_spares_the_rest() {
    let shop = Shop::start();
    let mut bob = shop.bob().await;
    let orders_rx = bob.open_receiver("orders", 100).await.unwrap();
    let events_rx = bob.open_receiver("events.x", 100).await.unwrap();
    let mut alice = shop.alice().await;
    let orders = alice.open_sender(Some("orders")).await.unwrap();
    let events = alice.open_sender(Some("events.x")).await.unwrap();
    alice.wait_credit(orders).await.unwrap();
    alice.wait_credit(events).await.unwrap();

    let users = shop.config.with_file_name("users.toml");
    std::fs::write(&shop.config, shop_toml(&users, r#""events.*""#)).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &shop.ferry.pid().to_string()])
        .status();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !shop.ferry.stderr().contains("policy reloaded") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            shop.ferry.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Her orders link is detached with unauthorized-access (a round trip
    // on the connection reads the detach).
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !shop.ferry.stderr().contains("permission revoked") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders link not revoked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.open_sender(Some("events.y")).await.unwrap();
    assert!(alice.is_detached(orders));
    assert_eq!(
        alice.detach_error(orders).flatten().map(|e| e.condition),
        Some(condition::UNAUTHORIZED_ACCESS)
    );
    assert_eq!(
        refused_with(alice.open_sender(Some("orders")).await).as_deref(),
        Some("amqp:unauthorized-access")
    );
    // events.x carries on: 50 messages, every one accepted.
    for i in 0..50 {
        alice.wait_credit(events).await.unwrap();
        alice
            .send_nowait(events, amqp_value(&format!("e{i}")), false)
            .unwrap();
        alice.flush().await.unwrap();
        let d = bob.receive(events_rx).await.unwrap();
        assert_eq!(body_string(d.payload.clone()), format!("e{i}"));
        bob.accept(&d).unwrap();
        bob.flush().await.unwrap();
        assert_eq!(
            alice.next_outcome().await.unwrap().state,
            Some(DeliveryState::Accepted)
        );
    }
    assert!(!bob.is_detached(orders_rx), "bob may still receive orders");
}
