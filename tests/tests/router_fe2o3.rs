//! The router on one node, black-box, with fe2o3-amqp (an independently
//! written AMQP 1.0 implementation) at both ends: anycast, multicast,
//! load sharing, request/reply through a dynamic address, outcomes passed
//! back, anonymous
//! senders, a refused dynamic target and expiry.
//!
//! Each test starts its own `ferry`; every client runs on its own
//! connection, and every wait is bounded by [`LIMIT`].

#[path = "../support/router.rs"]
mod router;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::{SendError, SenderAttachError};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, ErrorCondition};
use fe2o3_amqp::types::messaging::{
    AmqpValue, Message, MessageId, Modified, Outcome, Properties, Source, Target,
};
use fe2o3_amqp::types::primitives::{OrderedMap, Symbol, Timestamp, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use router::Router;

/// Bound on every exchange in these tests.
const LIMIT: Duration = Duration::from_secs(30);

const MULTICAST: &str = "[[address]]\nprefix = \"multicast\"\ndistribution = \"multicast\"\n";

/// A connection and a session on it.
struct Client {
    connection: fe2o3_amqp::connection::ConnectionHandle<()>,
    session: SessionHandle<()>,
}

impl Client {
    async fn connect(router: &Router, id: &str) -> Self {
        let mut connection = bounded("connect", Connection::open(id, router.url().as_str()))
            .await
            .unwrap_or_else(|e| panic!("{id}: connect to ferry: {e:?}"));
        let session = bounded("begin", Session::begin(&mut connection))
            .await
            .unwrap_or_else(|e| panic!("{id}: begin session: {e:?}"));
        Self {
            connection,
            session,
        }
    }

    async fn sender(&mut self, name: &str, address: &str) -> Sender {
        bounded("attach", Sender::attach(&mut self.session, name, address))
            .await
            .unwrap_or_else(|e| panic!("attach sender {name} to {address}: {e:?}"))
    }

    async fn receiver(&mut self, name: &str, address: &str) -> Receiver {
        bounded("attach", Receiver::attach(&mut self.session, name, address))
            .await
            .unwrap_or_else(|e| panic!("attach receiver {name} to {address}: {e:?}"))
    }

    /// Ends the session and closes the connection; errors here do not
    /// matter to the tests (the router may already have gone).
    async fn close(mut self) {
        quietly(self.session.end()).await;
        quietly(self.connection.close()).await;
    }
}

/// Waits a little for a clean close; its result does not matter to the
/// tests (the router may already have gone).
async fn quietly<T>(f: impl Future<Output = T>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
}

/// Runs `f` to completion within [`LIMIT`], naming `what` if it does not.
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done after {LIMIT:?}"))
}

/// A message with an amqp-value string body.
fn text_message(body: String, properties: Option<Properties>) -> Message<AmqpValue<String>> {
    Message::builder()
        .properties(properties)
        .value(body)
        .build()
}

fn body_text(message: &Message<String>) -> String {
    message.body.clone()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends `n` messages `m0…` without waiting between them; returns every
/// outcome, in order.
async fn send_all(sender: &mut Sender, n: usize) -> Vec<Outcome> {
    let mut pending: Vec<DeliveryFut<Result<Outcome, SendError>>> = Vec::with_capacity(n);
    for i in 0..n {
        pending.push(
            sender
                .send_batchable(text_message(format!("m{i}"), None))
                .await
                .unwrap_or_else(|e| panic!("send m{i}: {e:?}")),
        );
    }
    let mut outcomes = Vec::with_capacity(n);
    for (i, fut) in pending.into_iter().enumerate() {
        outcomes.push(
            fut.await
                .unwrap_or_else(|e| panic!("outcome of m{i}: {e:?}")),
        );
    }
    outcomes
}

/// Receives `n` messages on `receiver`, accepting each; returns the bodies.
async fn receive_all(receiver: &mut Receiver, n: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let d = receiver
            .recv::<String>()
            .await
            .unwrap_or_else(|e| panic!("receive after {} messages: {e:?}", got.len()));
        receiver.accept(&d).await.expect("accept");
        got.push(body_text(d.message()));
    }
    got
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

/// "n accepted; first others: #i Outcome…" for failure messages.
fn outcome_summary(outcomes: &[Outcome]) -> String {
    let others: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Outcome::Accepted(_)))
        .take(5)
        .map(|(i, o)| format!("#{i} {o:?}"))
        .collect();
    format!(
        "{} of {} accepted; first others: {others:?}",
        count_accepted(outcomes),
        outcomes.len()
    )
}

fn count_accepted(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Accepted(_)))
        .count()
}

#[tokio::test]
async fn fe2o3_a_thousand_anycast_messages_all_arrive_and_are_accepted() {
    let r = Router::start("");
    let n = 1000;
    let mut consumer = Client::connect(&r, "fe2o3-consumer").await;
    let mut rx = consumer.receiver("consumer", "anycast.q").await;
    let consuming = tokio::spawn(async move {
        let got = receive_all(&mut rx, n).await;
        quietly(rx.close()).await;
        consumer.close().await;
        got
    });
    let mut producer = Client::connect(&r, "fe2o3-producer").await;
    let mut tx = producer.sender("producer", "anycast.q").await;
    let outcomes = bounded("sending 1000 messages", send_all(&mut tx, n)).await;
    // Checked first: a message not accepted never reaches the consumer,
    // which would otherwise wait for it until the time limit.
    assert_eq!(
        count_accepted(&outcomes),
        n,
        "every delivery must reach the consumer (which keeps granting credit) and be \
         settled accepted to the producer: {}",
        outcome_summary(&outcomes)
    );
    let got = bounded("receiving 1000 messages", consuming)
        .await
        .expect("consumer task");
    assert_eq!(
        got,
        numbered(n),
        "the consumer must get every message once, in order"
    );
    quietly(tx.close()).await;
    producer.close().await;
}

#[tokio::test]
async fn fe2o3_two_consumers_on_one_address_share_the_load() {
    let r = Router::start("");
    let n = 400;
    let mut consumers = Vec::new();
    for i in 0..2 {
        let mut c = Client::connect(&r, &format!("fe2o3-consumer-{i}")).await;
        let rx = c.receiver(&format!("consumer-{i}"), "shared.q").await;
        consumers.push((c, rx));
    }
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (i, (c, mut rx)) in consumers.into_iter().enumerate() {
        let mut done = done_rx.clone();
        let got_tx = got_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let d = tokio::select! {
                    d = rx.recv::<String>() => d.expect("receive"),
                    _ = done.changed() => break,
                };
                rx.accept(&d).await.expect("accept");
                let _ = got_tx.send(i);
                got.push(body_text(d.message()));
            }
            quietly(rx.close()).await;
            c.close().await;
            got
        }));
    }
    let mut producer = Client::connect(&r, "fe2o3-producer").await;
    let mut tx = producer.sender("producer", "shared.q").await;
    // The router shares among the consumers whose credit it knows: a
    // consumer's first flow may reach it after a whole batch has gone to
    // the other (it did, 43 ms late, under CPU contention). So messages
    // go one at a time until each consumer has had one, then the batch.
    let mut warmed = [false; 2];
    bounded("a message reaching each consumer", async {
        for k in 0.. {
            let outcome = tx
                .send(text_message(format!("warm-up {k}"), None))
                .await
                .unwrap_or_else(|e| panic!("send warm-up {k}: {e:?}"));
            assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
            while let Ok(i) = got_rx.try_recv() {
                warmed[i] = true;
            }
            if warmed.iter().all(|w| *w) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Every outcome in means every message reached (and was accepted by) a
    // consumer.
    let outcomes = bounded("sending 400 messages", send_all(&mut tx, n)).await;
    done_tx.send(true).unwrap();
    let mut shares = Vec::new();
    for t in tasks {
        let got = bounded("consumer finishing", t)
            .await
            .expect("consumer task");
        shares.push(
            got.into_iter()
                .filter(|b| !b.starts_with("warm-up"))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        count_accepted(&outcomes),
        n,
        "{}",
        outcome_summary(&outcomes)
    );
    let all: Vec<&String> = shares.iter().flatten().collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), n, "total received must equal sent");
    assert_eq!(distinct.len(), n, "no message may arrive twice");
    for (i, s) in shares.iter().enumerate() {
        assert!(
            s.len() >= n / 4,
            "consumer {i} got only {} of {n} (shares {:?})",
            s.len(),
            shares.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    quietly(tx.close()).await;
    producer.close().await;
}

#[tokio::test]
async fn fe2o3_three_multicast_consumers_each_get_every_message_once() {
    let r = Router::start(MULTICAST);
    let n = 200;
    let mut tasks = Vec::new();
    // All three are attached before the producer: a multicast producer's
    // credit is the smallest consumer credit, so none can miss a message.
    for i in 0..3 {
        let mut c = Client::connect(&r, &format!("fe2o3-consumer-{i}")).await;
        let mut rx = c.receiver(&format!("consumer-{i}"), "multicast.news").await;
        tasks.push(tokio::spawn(async move {
            let got = receive_all(&mut rx, n).await;
            quietly(rx.close()).await;
            c.close().await;
            got
        }));
    }
    let mut producer = Client::connect(&r, "fe2o3-producer").await;
    let mut tx = producer.sender("producer", "multicast.news").await;
    let outcomes = bounded("sending multicast", send_all(&mut tx, n)).await;
    assert_eq!(
        count_accepted(&outcomes),
        n,
        "all copies accepted: the producer's outcome is accepted: {}",
        outcome_summary(&outcomes)
    );
    for (i, t) in tasks.into_iter().enumerate() {
        let got = bounded("multicast consumer", t)
            .await
            .expect("consumer task");
        assert_eq!(
            got,
            numbered(n),
            "multicast consumer {i} must get every message exactly once, in order"
        );
    }
    quietly(tx.close()).await;
    producer.close().await;
}

#[tokio::test]
async fn fe2o3_fifty_requests_get_replies_through_a_dynamic_reply_address() {
    let r = Router::start("");
    let n = 50;
    // The server: consumes "service", answers each request to its reply_to
    // on an anonymous sender (routed by `to`), correlated by message id.
    let mut server = Client::connect(&r, "fe2o3-server").await;
    let mut requests = server.receiver("server-in", "service").await;
    let mut replies_out = bounded(
        "attach",
        Sender::builder()
            .name("server-out")
            .target(Target::builder().build())
            .attach(&mut server.session),
    )
    .await
    .expect("attach an anonymous sender");
    let serving = tokio::spawn(async move {
        let mut reply_outcomes = Vec::new();
        for _ in 0..n {
            let d = requests.recv::<String>().await.expect("receive a request");
            requests.accept(&d).await.expect("accept the request");
            let props = d.message().properties.clone().expect("request properties");
            let reply = text_message(
                format!("answer to {}", body_text(d.message())),
                Some(Properties {
                    to: props.reply_to.clone(),
                    correlation_id: props.message_id.clone(),
                    ..Properties::default()
                }),
            );
            reply_outcomes.push(replies_out.send(reply).await.expect("send a reply"));
        }
        quietly(requests.close()).await;
        quietly(replies_out.close()).await;
        server.close().await;
        reply_outcomes
    });

    let mut requester = Client::connect(&r, "fe2o3-requester").await;
    let mut replies = bounded(
        "attach",
        Receiver::builder()
            .name("replies")
            .source(Source::builder().dynamic(true).build())
            .attach(&mut requester.session),
    )
    .await
    .expect("attach a dynamic receiver");
    let reply_to = replies
        .source()
        .as_ref()
        .and_then(|s| s.address.clone())
        .expect("the router returns the dynamic address in its attach");
    assert!(
        reply_to.starts_with("_dynamic/test/"),
        "dynamic address `_dynamic/<router-id>/<n>`, got {reply_to:?}"
    );
    let mut tx = requester.sender("requests", "service").await;
    let exchange = async {
        let mut pending = Vec::new();
        for i in 0..n {
            let request = text_message(
                format!("question {i}"),
                Some(Properties {
                    message_id: Some(MessageId::String(format!("req-{i}"))),
                    reply_to: Some(reply_to.clone()),
                    ..Properties::default()
                }),
            );
            pending.push(tx.send_batchable(request).await.expect("send a request"));
        }
        let mut got = Vec::new();
        for _ in 0..n {
            let d = replies.recv::<String>().await.expect("receive a reply");
            replies.accept(&d).await.expect("accept the reply");
            got.push(d.into_message());
        }
        let mut outcomes = Vec::new();
        for p in pending {
            outcomes.push(p.await.expect("request outcome"));
        }
        (got, outcomes)
    };
    let (got, request_outcomes) = bounded("50 request/replies", exchange).await;
    let reply_outcomes = bounded("server", serving).await.expect("server task");

    let mut ids = BTreeSet::new();
    for m in &got {
        let props = m.properties.as_ref().expect("reply properties");
        let Some(MessageId::String(id)) = &props.correlation_id else {
            panic!("reply without a string correlation id: {props:?}");
        };
        let i = id.strip_prefix("req-").expect("req-N");
        assert_eq!(body_text(m), format!("answer to question {i}"));
        assert_eq!(props.to.as_deref(), Some(reply_to.as_str()));
        ids.insert(id.clone());
    }
    assert_eq!(
        ids,
        (0..n).map(|i| format!("req-{i}")).collect(),
        "one reply per request, matched by correlation id"
    );
    assert_eq!(
        count_accepted(&request_outcomes),
        n,
        "requests: {}",
        outcome_summary(&request_outcomes)
    );
    assert_eq!(
        count_accepted(&reply_outcomes),
        n,
        "replies: {}",
        outcome_summary(&reply_outcomes)
    );
    quietly(tx.close()).await;
    quietly(replies.close()).await;
    requester.close().await;
}

/// What the consumer does with the message named by its body.
const ACTIONS: [&str; 4] = ["accept", "reject", "release", "modify"];

fn reject_error() -> AmqpErrorBody {
    let mut info = OrderedMap::new();
    info.insert(Symbol::from("reason"), Value::String("test".into()));
    AmqpErrorBody::new(
        AmqpError::PreconditionFailed,
        Some("rejected by the fe2o3 consumer".to_string()),
        Some(info),
    )
}

fn modified() -> Modified {
    let mut annotations = OrderedMap::new();
    annotations.insert(
        Symbol::from("x-opt-test"),
        Value::String("annotated".into()),
    );
    annotations.insert(Symbol::from("x-opt-count"), Value::Int(7));
    Modified {
        delivery_failed: Some(true),
        undeliverable_here: Some(true),
        message_annotations: Some(annotations),
    }
}

#[tokio::test]
async fn fe2o3_reject_release_and_modified_reach_the_producer() {
    let r = Router::start("");
    let mut consumer = Client::connect(&r, "fe2o3-consumer").await;
    let mut rx = consumer.receiver("consumer", "outcomes.q").await;
    let consuming = tokio::spawn(async move {
        for _ in ACTIONS {
            let d = rx.recv::<String>().await.expect("receive");
            match body_text(d.message()).as_str() {
                "accept" => rx.accept(&d).await,
                "reject" => rx.reject(&d, reject_error()).await,
                "release" => rx.release(&d).await,
                "modify" => rx.modify(&d, modified()).await,
                other => panic!("unexpected message {other}"),
            }
            .expect("settle");
        }
        quietly(rx.close()).await;
        consumer.close().await;
    });
    let mut producer = Client::connect(&r, "fe2o3-producer").await;
    let mut tx = producer.sender("producer", "outcomes.q").await;
    let mut outcomes = Vec::new();
    for action in ACTIONS {
        let outcome = bounded(action, tx.send(text_message(action.to_string(), None)))
            .await
            .unwrap_or_else(|e| panic!("send {action}: {e:?}"));
        outcomes.push(outcome);
    }
    bounded("consumer", consuming).await.expect("consumer task");
    assert!(
        matches!(outcomes[0], Outcome::Accepted(_)),
        "{:?}",
        outcomes[0]
    );
    match &outcomes[1] {
        Outcome::Rejected(rejected) => assert_eq!(
            rejected.error.as_ref(),
            Some(&reject_error()),
            "the rejected outcome must carry the consumer's error (condition, description, info)"
        ),
        other => panic!("expected rejected, got {other:?}"),
    }
    assert!(
        matches!(outcomes[2], Outcome::Released(_)),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(
        outcomes[3],
        Outcome::Modified(modified()),
        "modified must keep delivery-failed, undeliverable-here and message-annotations"
    );
    quietly(tx.close()).await;
    producer.close().await;
}

#[tokio::test]
async fn fe2o3_anonymous_sender_is_routed_by_to_and_unroutable_is_released() {
    let r = Router::start("");
    let mut consumer = Client::connect(&r, "fe2o3-consumer").await;
    let mut rx_a = consumer.receiver("consumer-a", "anon.a").await;
    let mut rx_b = consumer.receiver("consumer-b", "anon.b").await;
    let mut producer = Client::connect(&r, "fe2o3-producer").await;
    // Anonymous messages are not held against consumer credit: make sure
    // the router has both consumers' credit first (a sender to an address
    // gets credit only then).
    for address in ["anon.a", "anon.b"] {
        let mut probe = producer.sender(&format!("probe {address}"), address).await;
        let probing = async {
            let outcome = probe
                .send_batchable(text_message(format!("probe {address}"), None))
                .await
                .expect("send the probe");
            let receiver = if address == "anon.a" {
                &mut rx_a
            } else {
                &mut rx_b
            };
            let d = receiver.recv::<String>().await.expect("receive the probe");
            receiver.accept(&d).await.expect("accept the probe");
            outcome.await
        };
        let outcome = bounded("probe", probing).await.expect("probe outcome");
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
        quietly(probe.close()).await;
    }
    let mut anonymous = bounded(
        "attach",
        Sender::builder()
            .name("anonymous")
            .target(Target::builder().build())
            .attach(&mut producer.session),
    )
    .await
    .expect("attach an anonymous sender");
    let to = |address: &str| {
        Some(Properties {
            to: Some(address.to_string()),
            ..Properties::default()
        })
    };
    let exchange = async {
        let mut pending = Vec::new();
        for i in 0..10 {
            let address = if i % 2 == 0 { "anon.a" } else { "anon.b" };
            let fut = anonymous
                .send_batchable(text_message(format!("m{i}"), to(address)))
                .await
                .expect("send");
            pending.push(fut);
        }
        let a = receive_all(&mut rx_a, 5).await;
        let b = receive_all(&mut rx_b, 5).await;
        let mut outcomes = Vec::new();
        for p in pending {
            outcomes.push(p.await.expect("outcome"));
        }
        let lost = anonymous
            .send(text_message("lost".into(), to("anon.nowhere")))
            .await
            .expect("outcome of the unroutable message");
        (a, b, outcomes, lost)
    };
    let (a, b, outcomes, lost) = bounded("anonymous routing", exchange).await;
    assert_eq!(
        a,
        ["m0", "m2", "m4", "m6", "m8"],
        "anon.a gets what was sent to it"
    );
    assert_eq!(
        b,
        ["m1", "m3", "m5", "m7", "m9"],
        "anon.b gets what was sent to it"
    );
    assert_eq!(
        count_accepted(&outcomes),
        10,
        "{}",
        outcome_summary(&outcomes)
    );
    assert!(
        matches!(lost, Outcome::Released(_)),
        "a message to an address without consumer comes back released, got {lost:?}"
    );
    quietly(anonymous.close()).await;
    quietly(rx_a.close()).await;
    quietly(rx_b.close()).await;
    producer.close().await;
    consumer.close().await;
}

#[tokio::test]
async fn fe2o3_a_sender_with_a_dynamic_target_is_refused_with_not_implemented() {
    let r = Router::start("");
    let mut client = Client::connect(&r, "fe2o3-client").await;
    let attach = Sender::builder()
        .name("dynamic-target")
        .target(Target::builder().dynamic(true).build())
        .attach(&mut client.session);
    match bounded("attach with a dynamic target", attach).await {
        Err(SenderAttachError::RemoteClosedWithError(error)) => {
            assert_eq!(
                error.condition,
                ErrorCondition::AmqpError(AmqpError::NotImplemented),
                "{error:?}"
            );
            assert!(
                error.description.as_deref().is_some_and(|d| !d.is_empty()),
                "the error explains itself: {error:?}"
            );
        }
        Err(other) => panic!("refused, but without the router's error: {other:?}"),
        Ok(_) => panic!("a sender with a dynamic target was attached; the router must refuse it"),
    }
    // That the connection carries on after a refusal is checked with
    // Proton (router_proton.rs): fe2o3 0.18 answers this refusal with two
    // detaches for the one handle when the router's attach and detach
    // arrive together, and the second (for a handle no longer attached) is
    // a protocol error the router rightly closes the connection for.
    client.close().await;
}

#[tokio::test]
async fn fe2o3_an_expired_message_is_rejected_with_ferry_expired() {
    let r = Router::start("");
    let mut consumer = Client::connect(&r, "fe2o3-consumer").await;
    let mut rx = consumer.receiver("consumer", "expiry.q").await;
    let mut producer = Client::connect(&r, "fe2o3-producer").await;
    let mut tx = producer.sender("producer", "expiry.q").await;
    let expired = text_message(
        "expired".into(),
        Some(
            Properties::builder()
                .absolute_expiry_time(Timestamp::from_milliseconds(now_ms() - 60_000))
                .build(),
        ),
    );
    let exchange = async {
        let expired = tx
            .send(expired)
            .await
            .expect("outcome of the expired message");
        let live = tx
            .send_batchable(text_message("live".into(), None))
            .await
            .expect("send live");
        let first = rx.recv::<String>().await.expect("receive");
        rx.accept(&first).await.expect("accept");
        (
            expired,
            live.await.expect("outcome of live"),
            body_text(first.message()),
        )
    };
    let (expired, live, first) = bounded("expiry", exchange).await;
    match &expired {
        Outcome::Rejected(rejected) => {
            let error = rejected
                .error
                .as_ref()
                .expect("an error with the rejection");
            assert_eq!(
                error.condition,
                ErrorCondition::Custom(Symbol::from("ferry:expired")),
                "{error:?}"
            );
        }
        other => panic!("expected rejected with ferry:expired, got {other:?}"),
    }
    assert_eq!(first, "live", "the expired message must not be delivered");
    assert!(matches!(live, Outcome::Accepted(_)), "{live:?}");
    quietly(tx.close()).await;
    quietly(rx.close()).await;
    producer.close().await;
    consumer.close().await;
}
