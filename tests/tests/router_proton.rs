//! The router on one node, black-box, with Qpid Proton (the reference AMQP
//! 1.0 implementation, through its Python binding) at both ends: anycast,
//! load sharing, multicast, request/reply through a dynamic address,
//! outcomes passed back, full-fidelity messages, pre-settled delivery,
//! anonymous senders, refused links and expiry, what the router says it
//! is in its open; and one exchange across
//! clients (a Proton requester, an fe2o3-amqp server).
//!
//! Each test starts its own `ferry` and runs one `tests/interop/router_*.py`
//! script, which prints a JSON summary line. Needs `python3-qpid-proton`
//! (Debian) for `/usr/bin/python3`, or a Python named by `FERRY_PYTHON`;
//! `.ci/run` installs it. Without it these tests fail: they are never
//! skipped.

#[path = "../support/proton.rs"]
mod proton;
#[path = "../support/router.rs"]
mod router;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fe2o3_amqp::types::messaging::{Message, Outcome, Properties, Target};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use router::Router;
use serde_json::{Value, json};

/// Bound on waits of the tests here.
const LIMIT: Duration = Duration::from_secs(60);

const MULTICAST: &str = "[[address]]\nprefix = \"multicast\"\ndistribution = \"multicast\"\n";

/// Runs `tests/interop/SCRIPT URL ARGS…` against `router` and returns its
/// JSON summary.
async fn proton(router: &Router, script: &str, args: &[&str]) -> Value {
    proton::script(script, &router.url(), args, &|| router.ferry.stderr()).await
}

/// The sequence numbers each consumer received, from a router_flow.py summary.
fn received(summary: &Value) -> Vec<Vec<u64>> {
    summary["received"]
        .as_array()
        .expect("received")
        .iter()
        .map(|c| {
            c.as_array()
                .expect("per-consumer list")
                .iter()
                .map(|s| s.as_u64().expect("sequence number"))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn proton_a_thousand_anycast_messages_all_arrive_and_are_accepted() {
    let r = Router::start("");
    let s = proton(&r, "router_flow.py", &["anycast.q", "1000", "1", "anycast"]).await;
    let got = received(&s);
    assert_eq!(
        got[0],
        (0..1000).collect::<Vec<u64>>(),
        "the consumer must get every message once, in order"
    );
    assert_eq!(
        s["outcomes"],
        json!({"accepted": 1000}),
        "every delivery must be settled accepted to the producer"
    );
    assert_eq!(
        s["arrived_settled"],
        json!([0]),
        "unsettled messages must arrive unsettled"
    );
}

#[tokio::test]
async fn proton_two_consumers_on_one_address_share_the_load() {
    let r = Router::start("");
    let n = 400;
    let s = proton(&r, "router_flow.py", &["shared.q", "400", "2", "anycast"]).await;
    let got = received(&s);
    let all: Vec<u64> = got.iter().flatten().copied().collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), n, "total received must equal sent: {got:?}");
    assert_eq!(
        distinct,
        (0..n as u64).collect(),
        "every message exactly once across both consumers"
    );
    for (i, c) in got.iter().enumerate() {
        assert!(
            c.len() >= n / 4,
            "consumer {i} got only {} of {n} (shares: {:?})",
            c.len(),
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(
            c.windows(2).all(|w| w[0] < w[1]),
            "consumer {i} got its share out of order: {c:?}"
        );
    }
    assert_eq!(s["outcomes"], json!({"accepted": 400}));
}

#[tokio::test]
async fn proton_three_multicast_consumers_each_get_every_message_once() {
    let r = Router::start(MULTICAST);
    let s = proton(
        &r,
        "router_flow.py",
        &["multicast.news", "200", "3", "multicast"],
    )
    .await;
    let got = received(&s);
    assert_eq!(got.len(), 3);
    for (i, c) in got.iter().enumerate() {
        assert_eq!(
            *c,
            (0..200).collect::<Vec<u64>>(),
            "multicast consumer {i} must get every message exactly once, in order"
        );
    }
    assert_eq!(
        s["outcomes"],
        json!({"accepted": 200}),
        "each multicast delivery settles accepted once all copies are accepted"
    );
}

#[tokio::test]
async fn proton_fifty_requests_get_replies_through_a_dynamic_reply_address() {
    let r = Router::start("");
    let s = proton(&r, "router_request_reply.py", &["service", "50"]).await;
    let reply_address = s["reply_address"].as_str().expect("a dynamic address");
    assert!(
        reply_address.starts_with("_dynamic/test/"),
        "the router assigns `_dynamic/<router-id>/<n>`, got {reply_address:?}"
    );
    let saw: BTreeSet<&str> = s["server_saw_reply_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(saw, BTreeSet::from([reply_address]));
    let replies = s["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 50, "{replies:?}");
    let ids: BTreeSet<String> = replies
        .iter()
        .map(|m| {
            let id = m["correlation_id"].as_str().expect("correlation id");
            let n = id.strip_prefix("req-").expect("req-N");
            assert_eq!(m["body"], format!("answer to question {n}"));
            assert_eq!(m["to"], reply_address);
            id.to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        (0..50).map(|i| format!("req-{i}")).collect(),
        "one reply per request, matched by correlation id"
    );
    assert_eq!(s["request_outcomes"], json!({"accepted": 50}));
    assert_eq!(s["reply_outcomes"], json!({"accepted": 50}));
}

#[tokio::test]
async fn proton_requester_gets_replies_from_an_fe2o3_server_through_a_dynamic_address() {
    let r = Router::start("");
    let n = 20;
    // The server, in fe2o3: consumes "interop.service" and answers each
    // request on an anonymous sender, to its reply_to, correlated by id.
    let setup = async {
        let mut connection = Connection::open("fe2o3-server", r.url().as_str())
            .await
            .expect("fe2o3 connects");
        let mut session = Session::begin(&mut connection).await.expect("session");
        let requests = Receiver::attach(&mut session, "server-in", "interop.service")
            .await
            .expect("attach the server's receiver");
        let replies = Sender::builder()
            .name("server-out")
            .target(Target::builder().build())
            .attach(&mut session)
            .await
            .expect("attach an anonymous sender");
        (connection, session, requests, replies)
    };
    let (mut connection, mut session, mut requests, mut replies) =
        tokio::time::timeout(LIMIT, setup)
            .await
            .expect("fe2o3 server set up in time");
    let server = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for _ in 0..n {
            let d = requests.recv::<String>().await.expect("a request");
            requests.accept(&d).await.expect("accept the request");
            let props = d.message().properties.clone().expect("request properties");
            let reply = Message::builder()
                .properties(Properties {
                    to: props.reply_to.clone(),
                    correlation_id: props.message_id.clone(),
                    ..Properties::default()
                })
                .value(format!("answer to {}", d.body()))
                .build();
            outcomes.push(replies.send(reply).await.expect("send the reply"));
        }
        // A clean close, briefly; its result does not matter here.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = requests.close().await;
            let _ = replies.close().await;
            let _ = session.end().await;
            let _ = connection.close().await;
        })
        .await;
        outcomes
    });

    let s = proton(
        &r,
        "router_request_reply.py",
        &["interop.service", "20", "external-server"],
    )
    .await;
    let outcomes = tokio::time::timeout(LIMIT, server)
        .await
        .expect("fe2o3 server finishes")
        .expect("server task");
    let reply_address = s["reply_address"].as_str().expect("a dynamic address");
    assert!(
        reply_address.starts_with("_dynamic/test/"),
        "{reply_address:?}"
    );
    let replies = s["replies"].as_array().unwrap();
    let ids: BTreeSet<&str> = replies
        .iter()
        .map(|m| {
            let id = m["correlation_id"].as_str().expect("correlation id");
            let i = id.strip_prefix("req-").expect("req-N");
            assert_eq!(m["body"], format!("answer to question {i}"));
            assert_eq!(m["to"], reply_address);
            id
        })
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("req-{i}")).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect(),
        "one reply per request, matched by correlation id"
    );
    assert_eq!(replies.len(), n);
    assert_eq!(s["request_outcomes"], json!({"accepted": n}));
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Accepted(_))),
        "the fe2o3 server's replies must be accepted by the Proton requester: {outcomes:?}"
    );
}

#[tokio::test]
async fn proton_reject_release_and_modified_reach_the_producer() {
    let r = Router::start("");
    let s = proton(&r, "router_outcomes.py", &["outcomes.q"]).await;
    let o = &s["outcomes"];
    assert_eq!(o["accept"], json!({"state": "accepted", "settled": true}));
    assert_eq!(
        o["reject"],
        json!({
            "state": "rejected",
            "settled": true,
            "condition": {
                "name": "amqp:precondition-failed",
                "description": "rejected by the test consumer",
                "info": {"reason": "test", "code": 42},
            },
        }),
        "the rejected outcome must carry the consumer's error condition, description and info"
    );
    assert_eq!(o["release"], json!({"state": "released", "settled": true}));
    assert_eq!(
        o["modify-failed-undeliverable-annotated"],
        json!({
            "state": "modified",
            "settled": true,
            "failed": true,
            "undeliverable": true,
            "annotations": {"x-opt-test": "annotated", "x-opt-count": 7},
        }),
        "modified must keep delivery-failed, undeliverable-here and message-annotations"
    );
    assert_eq!(
        o["modify-failed"],
        json!({"state": "modified", "settled": true, "failed": true, "undeliverable": false, "annotations": null})
    );
    assert_eq!(
        o["modify-undeliverable"],
        json!({"state": "modified", "settled": true, "failed": false, "undeliverable": true, "annotations": null})
    );
}

#[tokio::test]
async fn proton_a_message_with_every_section_arrives_identical() {
    let r = Router::start("");
    let s = proton(&r, "router_fidelity.py", &["fidelity.q"]).await;
    let messages = s["messages"].as_array().unwrap();
    let names: Vec<&str> = messages
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["amqp-value", "data", "amqp-sequence"]);
    for m in messages {
        let name = &m["name"];
        assert_eq!(
            m["mismatches"],
            json!([]),
            "message with a {name} body was altered by the router"
        );
        let body = name.as_str().unwrap();
        let mut expected = vec![
            "header",
            "delivery-annotations",
            "properties",
            "application-properties",
            body,
            "footer",
        ];
        if m["router_annotations"] == json!([]) {
            expected.insert(2, "message-annotations");
        }
        assert_eq!(
            m["identical_sections"],
            json!(expected),
            "{name}: sections not byte-identical"
        );
        assert_eq!(m["arrived_settled"], json!(false));
    }
    assert_eq!(s["outcomes"], json!(["accepted", "accepted", "accepted"]));
}

#[tokio::test]
async fn proton_presettled_messages_are_delivered_presettled() {
    let r = Router::start("");
    let s = proton(
        &r,
        "router_flow.py",
        &["presettled.q", "300", "1", "anycast", "presettled"],
    )
    .await;
    let got = received(&s);
    assert_eq!(
        got[0],
        (0..300).collect::<Vec<u64>>(),
        "the consumer gave credit for every pre-settled message: none may be dropped"
    );
    assert_eq!(
        s["arrived_settled"],
        json!([300]),
        "pre-settled messages must be forwarded pre-settled"
    );
    assert_eq!(
        s["outcomes"],
        json!({}),
        "no outcome for pre-settled deliveries"
    );
}

#[tokio::test]
async fn proton_anonymous_sender_is_routed_by_to_and_unroutable_is_released() {
    let r = Router::start("");
    let s = proton(
        &r,
        "router_anonymous.py",
        &["anon.a", "anon.b", "anon.nowhere", "20"],
    )
    .await;
    let even: Vec<String> = (0..20).step_by(2).map(|i| format!("m{i}")).collect();
    let odd: Vec<String> = (1..20).step_by(2).map(|i| format!("m{i}")).collect();
    assert_eq!(
        s["received"],
        json!({"anon.a": even, "anon.b": odd}),
        "each message must reach the consumer of its `to`, and only that one"
    );
    let outcomes: BTreeMap<String, String> = serde_json::from_value(s["outcomes"].clone()).unwrap();
    for i in 0..20 {
        assert_eq!(outcomes[&format!("m{i}")], "accepted", "m{i}: {outcomes:?}");
    }
    assert_eq!(
        outcomes["lost"], "released",
        "a message to an address without consumer comes back released"
    );
}

#[tokio::test]
async fn proton_links_the_router_cannot_serve_are_refused_with_an_error() {
    let r = Router::start("");
    let s = proton(&r, "router_refusals.py", &[]).await;
    assert_eq!(
        s.get("connection_error"),
        None,
        "a refused link must not close the connection: {s}"
    );
    for name in ["coordinator", "dynamic-target", "copy-source"] {
        let link = &s["links"][name];
        assert_eq!(
            link["remote_opened"],
            json!(true),
            "{name}: the router answers the attach: {link}"
        );
        assert_eq!(
            link["remote_terminus_type"],
            json!("null"),
            "{name}: a refused attach carries a null terminus (AMQP 1.0 §2.6.3): {link}"
        );
        assert_eq!(
            link["remote_closed"],
            json!(true),
            "{name}: the router detaches: {link}"
        );
        assert_eq!(
            link["condition"]["name"],
            json!("amqp:not-implemented"),
            "{name}: detach error: {link}"
        );
        assert!(
            link["condition"]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{name}: the error explains itself: {link}"
        );
    }
    assert_eq!(
        s["after"],
        json!({"opened": true, "source": "still-serving"}),
        "the connection still serves links after the refusals"
    );
}

#[tokio::test]
async fn proton_an_expired_message_is_rejected_with_ferry_expired() {
    let r = Router::start("");
    let s = proton(&r, "router_expiry.py", &["expiry.q"]).await;
    let expired = &s["outcomes"]["expired"];
    assert_eq!(
        expired["state"],
        json!("rejected"),
        "expired message outcome: {expired}"
    );
    assert_eq!(
        expired["condition"]["name"],
        json!("ferry:expired"),
        "{expired}"
    );
    assert_eq!(s["outcomes"]["live-ttl"]["state"], json!("accepted"));
    assert_eq!(s["outcomes"]["live"]["state"], json!("accepted"));
    assert_eq!(
        s["consumer_got"],
        json!(["live-ttl", "live"]),
        "the expired message must not be delivered"
    );
}

/// The router says what it is in its open, as Qpid Dispatch Router does:
/// `product` and `version` (tools that discover the broker type read
/// them); a client gets no router id or instance (those are for routers).
#[tokio::test]
async fn proton_reads_product_and_version_in_the_routers_open() {
    let r = Router::start("");
    let s = proton(&r, "router_identity.py", &[]).await;
    assert_eq!(
        s["properties"],
        json!({"product": "ferry", "version": env!("CARGO_PKG_VERSION")}),
        "{s}"
    );
}
