//! Edge routers (issue #16): real `ferry` processes in `mode = "edge"`,
//! each with one uplink to an interior router (`role = "edge"` connectors,
//! tried in order), carrying their clients' traffic into the mesh; clients
//! of one edge served locally; failover to the next interior router when
//! the uplink dies, losing nothing that was accepted.
//!
//! Timings are printed (`--nocapture`), only generous liveness bounds are
//! asserted.

#[path = "../support/router.rs"]
mod router;

#[path = "../support/edge.rs"]
mod edge;

#[path = "../support/proton.rs"]
mod proton;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::definitions::{DeliveryState, SequenceNo};
use ferry_proto::engine::LinkId;
use ferry_proto::message::{Body, Message};
use ferry_tests::{TempDir, free_port, run_ferry, within};

use edge::{
    Node, UPLINK_WAIT, edge_connected, edge_toml, interior_toml, logged_after, uplink_connected,
    uplink_lost, uplinks_connected,
};

/// Time for a mesh (or an edge's uplink) to carry a consumer's credit to a
/// producer, generously.
const CONVERGE: Duration = Duration::from_secs(20);

/// The bound on traffic resuming after an edge's interior router dies:
/// far above the second it should take, far below "never".
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

fn msg(body: &str) -> Bytes {
    Message::new(Body::data(body.as_bytes().to_vec())).encode()
}

/// A message with `body` followed by `padding` dots.
fn padded(body: &str, padding: usize) -> Bytes {
    let mut bytes = body.as_bytes().to_vec();
    bytes.resize(bytes.len() + padding, b'.');
    Message::new(Body::data(bytes)).encode()
}

/// The text of a message made by [`msg`] or [`padded`] (without its
/// padding), for error messages.
fn text(payload: &Bytes) -> String {
    match Message::decode(payload.clone()).map(|m| m.body) {
        Ok(Body::Data(sections)) => sections
            .iter()
            .map(|s| String::from_utf8_lossy(s).trim_end_matches('.').to_owned())
            .collect(),
        _ => format!("{payload:?}"),
    }
}

async fn wait_credit(client: &mut Client, link: LinkId, what: &str) -> u32 {
    within(what, CONVERGE, client.wait_credit(link))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Sends `n` unsettled messages (`body(i)` for the i-th) on `tx` as fast
/// as its credit allows, asserting each outcome is `accepted`; returns how
/// many were accepted (all of them) once every outcome is in. Unlike
/// `ferry_tests::send_all_accepted`, waits for credit, not for an outcome,
/// when nothing is in flight.
async fn send_all_accepted(
    producer: &mut Client,
    tx: LinkId,
    n: usize,
    body: impl Fn(usize) -> Bytes,
) -> usize {
    let mut in_flight = HashMap::new();
    let (mut sent, mut accepted) = (0, 0);
    while accepted < n {
        while sent < n && producer.credit(tx) > 0 {
            let id = producer.send_nowait(tx, body(sent), false).unwrap();
            in_flight.insert(id, sent);
            sent += 1;
        }
        producer.flush().await.unwrap();
        if in_flight.is_empty() {
            within(
                &format!("credit for message {sent} of {n}"),
                CONVERGE,
                producer.wait_credit(tx),
            )
            .await
            .unwrap();
            continue;
        }
        let first = within(
            &format!("an outcome ({} in flight)", in_flight.len()),
            CONVERGE,
            producer.next_outcome(),
        )
        .await
        .unwrap();
        let outcomes: Vec<_> = std::iter::once(first)
            .chain(producer.take_outcomes())
            .collect();
        for o in outcomes {
            let i = in_flight
                .remove(&o.id)
                .unwrap_or_else(|| panic!("an outcome for unknown delivery {:?}", o.id));
            assert_eq!(
                o.state,
                Some(DeliveryState::Accepted),
                "outcome of message {i} ({:?})",
                text(&body(i))
            );
            accepted += 1;
        }
    }
    accepted
}

/// Sends one unsettled message once `tx` has credit (and still has it:
/// credit the router takes back is waited for again), and waits for its
/// outcome.
async fn send_one(producer: &mut Client, tx: LinkId, message: Bytes) -> Option<DeliveryState> {
    while producer.credit(tx) == 0 {
        producer.wait_credit(tx).await.unwrap();
    }
    let id = producer.send_nowait(tx, message, false).unwrap();
    producer.flush().await.unwrap();
    loop {
        let o = producer.next_outcome().await.unwrap();
        if o.id == id {
            return o.state;
        }
    }
}

/// Receives `n` messages on `rx`, accepting each and keeping the credit
/// topped up; returns their payloads in arrival order.
async fn receive_n(consumer: &mut Client, rx: LinkId, n: usize, credit: u32) -> Vec<Bytes> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let d = within("a delivery", CONVERGE, consumer.receive(rx))
            .await
            .unwrap();
        got.push(d.payload.clone());
        consumer.accept(&d).unwrap();
        if consumer.credit(rx) < credit / 2 {
            consumer.flow(rx, credit).await.unwrap();
        }
    }
    consumer.flush().await.unwrap();
    got
}

/// `n` messages `{tag} {i}` from `producer` to `consumer` (both driven
/// here): every one accepted, every one received once, in order.
async fn exchange(
    producer: &mut Client,
    tx: LinkId,
    consumer: &mut Client,
    rx: LinkId,
    tag: &str,
    n: usize,
) {
    let (accepted, got) = tokio::join!(
        send_all_accepted(producer, tx, n, |i| msg(&format!("{tag} {i}"))),
        receive_n(consumer, rx, n, 20),
    );
    assert_eq!(accepted, n);
    let expected: Vec<Bytes> = (0..n).map(|i| msg(&format!("{tag} {i}"))).collect();
    assert_in_order(&got, &expected);
}

/// `got` is `expected`: each message once, in order; names the first
/// difference.
fn assert_in_order(got: &[Bytes], expected: &[Bytes]) {
    if let Some(i) = (0..got.len().min(expected.len())).find(|&i| got[i] != expected[i]) {
        panic!(
            "delivery {i} is {:?}, expected {:?}",
            text(&got[i]),
            text(&expected[i])
        );
    }
    assert_eq!(got.len(), expected.len(), "number of deliveries");
}

/// One interior router I, edges E1 and E2 each with an uplink to it. A
/// producer on E1 has no credit while no consumer exists anywhere; once a
/// consumer attaches on E2, 500 unsettled messages from E1 are all
/// accepted, and the consumer gets each once, in order. The interior
/// advertises E2's consumer as its own: a producer on I reaches it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_edges_reach_each_other_through_the_interior() {
    let i = edge::interior("I");
    let e1 = edge::edge("E1", &[&i]);
    let e2 = edge::edge("E2", &[&i]);
    for e in [&e1, &e2] {
        let line = e.wait_uplink("I").await;
        assert!(
            line.contains(&format!("(to 127.0.0.1:{})", i.edge_port())),
            "{}'s uplink line does not name I's edge listener: {line}",
            e.id
        );
        i.wait_log(&edge_connected(&e.id), UPLINK_WAIT).await;
    }

    // Edge routers are not neighbours: they run no routing protocol.
    let log = i.log();
    assert!(
        !log.contains("neighbour E1") && !log.contains("neighbour E2"),
        "I took an edge router for a neighbour: {log}"
    );

    let mut producer = e1.client().await;
    let tx = producer.open_sender(Some("telemetry")).await.unwrap();
    // No consumer anywhere: no credit.
    let early = tokio::time::timeout(Duration::from_secs(2), producer.wait_credit(tx)).await;
    assert!(
        early.is_err() && producer.credit(tx) == 0,
        "the producer on E1 got credit with no consumer anywhere"
    );

    let mut consumer = e2.client().await;
    let rx = consumer.open_receiver("telemetry", 50).await.unwrap();
    let credit = wait_credit(
        &mut producer,
        tx,
        "credit on E1 once a consumer attached on E2",
    )
    .await;
    assert!(
        credit <= 50,
        "the producer holds {credit} credit for 50 granted"
    );

    const N: usize = 500;
    let body = |i: usize| msg(&format!("t{i}"));
    let receive = tokio::spawn(async move {
        let got = receive_n(&mut consumer, rx, N, 50).await;
        // Nothing more: a copy of one of them would arrive now.
        let extra = tokio::time::timeout(Duration::from_millis(500), consumer.receive(rx)).await;
        (
            got,
            extra.ok().map(|d| d.map(|d| text(&d.payload))),
            consumer,
        )
    });
    let t0 = Instant::now();
    let accepted = within(
        "outcomes of 500 messages E1 -> I -> E2",
        Duration::from_secs(60),
        send_all_accepted(&mut producer, tx, N, body),
    )
    .await;
    let elapsed = t0.elapsed();
    assert_eq!(accepted, N);
    let (got, extra, mut consumer) = within("the consumer on E2", CONVERGE, receive)
        .await
        .unwrap();
    let expected: Vec<Bytes> = (0..N).map(body).collect();
    assert_in_order(&got, &expected);
    assert!(extra.is_none(), "an extra delivery on E2: {extra:?}");
    eprintln!("edge to edge: {N} messages E1 -> I -> E2 accepted in {elapsed:?}");

    // The consumer on E2 is I's as far as I's own clients are concerned.
    let mut on_i = i.client().await;
    let tx_i = on_i.open_sender(Some("telemetry")).await.unwrap();
    wait_credit(&mut on_i, tx_i, "credit on I for E2's consumer").await;
    exchange(&mut on_i, tx_i, &mut consumer, rx, "from I", 20).await;
}

/// Deliveries `ferry stat -a` on `node` counts for `address` (in, out,
/// transit), summed over its rows.
async fn address_deliveries(node: &Node, address: &str) -> (u64, u64, u64) {
    let (addr, address) = (node.addr, address.to_owned());
    let rows = tokio::task::spawn_blocking(move || router::stat(addr, &["-a"]))
        .await
        .unwrap();
    let count = |row: &serde_json::Value, key: &str| row[key].as_u64().unwrap_or(0);
    rows.iter()
        .filter(|r| r["address"] == address.as_str())
        .fold((0, 0, 0), |(i, o, t), r| {
            (
                i + count(r, "deliveriesIngress"),
                o + count(r, "deliveriesEgress"),
                t + count(r, "deliveriesTransit"),
            )
        })
}

/// Management across edges: a client of edge router E2 reads interior
/// router I's connections (`ferry stat --router I`) and edge router E1's
/// (`--router E1`). The requests go up E2's uplink; I passes E1's on down
/// E1's uplink; the answers come back to the client's reply address on E2
/// (E1's up its uplink's relay). I lets only the user "admin" manage it:
/// the edges' links get in as a router's, each edge having applied its own
/// rule to its client (here: a client on its own host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_are_managed_across_edges() {
    let admin_only = "[management]\nusers = [\"admin\"]\n\n";
    let i = edge::start(
        "I",
        &format!(
            "{admin_only}{}",
            interior_toml("I", None, &[], false, false)
        ),
    );
    let e1 = edge::edge("E1", &[&i]);
    let e2 = edge::edge("E2", &[&i]);
    for e in [&e1, &e2] {
        e.wait_uplink("I").await;
    }
    let url = format!("amqp://{}", e2.addr);
    let (on_i, on_e1) = tokio::task::spawn_blocking(move || {
        // Asked until answered: E1's node reaches E2 once the routes have
        // (a few routing-protocol rounds; bounded by CONVERGE).
        let ask = |router: &str| {
            let args = ["stat", "--json", "--url", &url, "-c", "--router", router];
            let out = run_ferry(args, &[], Duration::from_secs(10));
            out.status
                .success()
                .then(|| serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout).ok())
                .flatten()
        };
        let deadline = Instant::now() + CONVERGE;
        loop {
            let answers = (ask("I"), ask("E1"));
            if (answers.0.is_some() && answers.1.is_some()) || Instant::now() > deadline {
                return answers;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    let (Some(on_i), Some(on_e1)) = (on_i, on_e1) else {
        panic!(
            "ferry stat --router I / E1 through E2 never answered; I:\n{}\nE1:\n{}",
            i.log(),
            e1.log()
        );
    };
    let containers = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .filter_map(|c| c["container"].as_str().map(str::to_owned))
            .collect()
    };
    let (on_i, on_e1) = (containers(&on_i), containers(&on_e1));
    assert!(
        on_i.contains(&"E1".to_owned()) && on_i.contains(&"E2".to_owned()),
        "I's connections, read from E2, are both edges' uplinks: {on_i:?}"
    );
    assert_eq!(on_e1, ["I"], "E1's connections, read from E2: its uplink");
}

/// A producer and a consumer on one edge exchange messages without the
/// interior router (none of their deliveries shows on it), and go on doing
/// so, on their links and on new ones, once it has been killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_on_one_edge_never_need_the_uplink() {
    let mut i = edge::interior("I");
    let e1 = edge::edge("E1", &[&i]);
    e1.wait_uplink("I").await;

    let mut consumer = e1.client().await;
    let rx = consumer.open_receiver("local", 20).await.unwrap();
    let mut producer = e1.client().await;
    let tx = producer.open_sender(Some("local")).await.unwrap();
    wait_credit(&mut producer, tx, "credit on E1 for a consumer on E1").await;
    exchange(&mut producer, tx, &mut consumer, rx, "before", 100).await;
    let on_i = address_deliveries(&i, "local").await;
    assert_eq!(
        on_i,
        (0, 0, 0),
        "deliveries between clients of E1 crossed the uplink: I counts (in, out, transit) {on_i:?} for their address"
    );

    let (killed, _) = i.kill();
    e1.wait_log(&uplink_lost("I"), UPLINK_WAIT).await;
    eprintln!(
        "E1 saw its uplink go {:?} after I's SIGKILL",
        killed.elapsed()
    );
    // The links of before carry on…
    exchange(&mut producer, tx, &mut consumer, rx, "after", 100).await;
    // …and new ones work too, with no interior router at all.
    let rx2 = consumer.open_receiver("local-2", 20).await.unwrap();
    let tx2 = producer.open_sender(Some("local-2")).await.unwrap();
    wait_credit(
        &mut producer,
        tx2,
        "credit on E1 for a new consumer on E1 with the interior router gone",
    )
    .await;
    exchange(&mut producer, tx2, &mut consumer, rx2, "alone", 50).await;
    assert_eq!(
        uplinks_connected(&e1.log()),
        ["I"],
        "E1's uplinks (I is dead: it cannot have connected again)"
    );
}

/// Qpid Proton's anonymous sender (null target, each message routed by its
/// `to`) on an edge router: a message for a consumer on the interior
/// router goes up the edge's relay, one for a consumer on the edge stays
/// there (none of them shows on the interior), one for an address with
/// no consumer anywhere comes back released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proton_anonymous_sender_on_an_edge_reaches_the_mesh_and_the_edge() {
    let i = edge::interior("I");
    let e1 = edge::edge("E1", &[&i]);
    proton_anonymous_sender_on_edge(&i, &e1).await;
    assert_eq!(
        address_deliveries(&i, "anon.near").await,
        (0, 0, 0),
        "a message for a consumer on E1 crossed the uplink"
    );
}

/// The same in a vhost (the default one of both routers, so Proton's
/// clients land in it): the interior must route what comes up the relay
/// in the sender's vhost, where its consumer is (`t1/anon.far`), not
/// under the bare `to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proton_anonymous_sender_in_a_vhost_on_an_edge_reaches_the_mesh() {
    let tenanted = |toml: String| {
        toml.replacen("[router]\n", "[router]\ndefault_vhost = \"t1\"\n", 1) + &open_vhost("t1")
    };
    let i = edge::start(
        "I",
        &tenanted(edge::interior_toml("I", None, &[], false, false)),
    );
    let e1 = edge::start(
        "E1",
        &tenanted(edge::edge_toml("E1", &[i.edge_port()], false)),
    );
    proton_anonymous_sender_on_edge(&i, &e1).await;
}

/// A `[[vhost]]` where anyone may send and receive anything.
fn open_vhost(name: &str) -> String {
    format!(
        "[[vhost]]\nname = \"{name}\"\n[[vhost.group]]\nname = \"all\"\nusers = [\"$anonymous\"]\nsend = [\"*\"]\nreceive = [\"*\"]\n\n"
    )
}

/// Runs `router_anonymous.py` on edge `e1` (uplink to `i`): even messages
/// to a consumer on `i`, odd ones to one on `e1`, one to no consumer.
async fn proton_anonymous_sender_on_edge(i: &Node, e1: &Node) {
    e1.wait_uplink("I").await;
    let url = |n: &Node| format!("amqp://{}", n.addr);
    let (on_i, on_e1) = (url(i), url(e1));
    let s = proton::script(
        "router_anonymous.py",
        &on_e1,
        &["anon.far", "anon.near", "anon.nowhere", "20", &on_i, &on_e1],
        &|| format!("I:\n{}\nE1:\n{}", i.log(), e1.log()),
    )
    .await;
    let even: Vec<String> = (0..20).step_by(2).map(|n| format!("m{n}")).collect();
    let odd: Vec<String> = (1..20).step_by(2).map(|n| format!("m{n}")).collect();
    assert_eq!(
        s["received"],
        serde_json::json!({"anon.far": even, "anon.near": odd}),
        "each message must reach the consumer of its `to`, and only that one"
    );
    for n in 0..20 {
        assert_eq!(s["outcomes"][format!("m{n}")], "accepted", "m{n}: {s}");
    }
    assert_eq!(
        s["outcomes"]["lost"], "released",
        "no consumer anywhere: {s}"
    );
}

/// A vhost the edge's policy gains on reload (SIGHUP) gets its relay: an
/// anonymous sender in it on the edge reaches its consumer on the
/// interior, in that vhost only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_added_on_an_edge_by_reload_gets_its_relay() {
    let i = edge::start(
        "I",
        &(edge::interior_toml("I", None, &[], false, false)
            + &open_vhost("t1")
            + &open_vhost("t2")),
    );
    let edge_toml = edge::edge_toml("E1", &[i.edge_port()], false) + &open_vhost("t1");
    let e1 = edge::start("E1", &edge_toml);
    e1.wait_uplink("I").await;
    let in_vhost = |v: &str| ClientOptions {
        hostname: Some(v.into()),
        ..ClientOptions::default()
    };
    let mut consumer = Client::connect(i.addr, in_vhost("t2")).await.unwrap();
    let rx = consumer.open_receiver("q", 10).await.unwrap();
    let mut other = Client::connect(i.addr, in_vhost("t1")).await.unwrap();
    let other_rx = other.open_receiver("q", 10).await.unwrap();

    std::fs::write(e1.config(), edge_toml + &open_vhost("t2")).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &e1.ferry.pid().to_string()])
        .status();
    e1.wait_log("policy reloaded", UPLINK_WAIT).await;
    let mut producer = Client::connect(e1.addr, in_vhost("t2")).await.unwrap();
    let tx = producer.open_sender(None).await.unwrap();
    let message = Message::new(Body::data(b"to t2".to_vec()))
        .with_to("q")
        .encode();
    let received = tokio::spawn(async move { receive_n(&mut consumer, rx, 1, 10).await });
    // The relay's credit may come a moment after the reload is logged.
    let deadline = Instant::now() + CONVERGE;
    loop {
        match send_one(&mut producer, tx, message.clone()).await {
            Some(DeliveryState::Accepted) => break,
            state => assert!(
                Instant::now() < deadline,
                "last outcome {state:?}\nI:\n{}\nE1:\n{}",
                i.log(),
                e1.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.await.unwrap();
    assert_eq!(text(&got[0]), "to t2");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.receive(other_rx))
            .await
            .is_err(),
        "t1's consumer of q got t2's message"
    );
}

/// An edge goes round its list: from I1 (first) to I2 when I1 dies,
/// stays on I2 when I1 comes back (one uplink, no fail-back), and returns
/// to I1 when I2 dies. Its consumer follows it: a producer on whichever
/// interior router it is attached to reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_goes_round_its_list_of_interior_routers() {
    let (p1, p2) = (free_port(), free_port());
    let toml1 = edge::interior_toml_at("I1", None, &[], false, false, p1);
    let toml2 = edge::interior_toml_at("I2", None, &[], false, false, p2);
    let mut i1 = edge::start("I1", &toml1);
    let mut i2 = edge::start("I2", &toml2);
    let e = edge::start("E1", &edge_toml("E1", &[p1, p2], false));
    e.wait_uplink("I1").await;

    let mut consumer = e.client().await;
    let rx = consumer.open_receiver("round", 20).await.unwrap();
    // Through I1…
    let mut producer = i1.client().await;
    let tx = producer.open_sender(Some("round")).await.unwrap();
    wait_credit(&mut producer, tx, "credit on I1 for E1's consumer").await;
    exchange(&mut producer, tx, &mut consumer, rx, "via I1", 20).await;
    drop(producer);

    // …then I2…
    let (killed, _) = i1.kill();
    e.wait_uplink("I2").await;
    eprintln!("E1 on I2 {:?} after I1's SIGKILL", killed.elapsed());
    let mut producer = i2.client().await;
    let tx = producer.open_sender(Some("round")).await.unwrap();
    wait_credit(&mut producer, tx, "credit on I2 for E1's consumer").await;
    exchange(&mut producer, tx, &mut consumer, rx, "via I2", 20).await;
    drop(producer);

    // …where it stays when I1 is back…
    let i1 = edge::start("I1", &toml1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        uplinks_connected(&e.log()),
        ["I1", "I2"],
        "E1's uplinks once I1 is back (one uplink: it stays on I2)"
    );
    assert!(
        !i1.log().contains(&edge_connected("E1")),
        "E1 connected to I1 again while its uplink to I2 was up"
    );

    // …and back to I1 when I2 dies.
    let (killed, _) = i2.kill();
    e.wait_log(&uplink_lost("I2"), UPLINK_WAIT).await;
    let deadline = Instant::now() + UPLINK_WAIT;
    while uplinks_connected(&e.log()).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "E1 did not go back to I1 after I2 died: {}",
            e.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("E1 back on I1 {:?} after I2's SIGKILL", killed.elapsed());
    assert_eq!(uplinks_connected(&e.log()), ["I1", "I2", "I1"]);
    let mut producer = i1.client().await;
    let tx = producer.open_sender(Some("round")).await.unwrap();
    wait_credit(
        &mut producer,
        tx,
        "credit on the restarted I1 for E1's consumer",
    )
    .await;
    exchange(&mut producer, tx, &mut consumer, rx, "via I1 again", 20).await;
}

/// A producer's credit on E1 follows a consumer on E2 both ways: it comes
/// when the consumer attaches and goes (to 0, and stays there) when it
/// detaches; a message sent in the race is never `accepted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_credit_on_one_edge_follows_a_consumer_on_another() {
    let i = edge::interior("I");
    let e1 = edge::edge("E1", &[&i]);
    let e2 = edge::edge("E2", &[&i]);
    e1.wait_uplink("I").await;
    e2.wait_uplink("I").await;
    let mut producer = e1.client().await;
    let mut consumer = e2.client().await;
    let tx = producer.open_sender(Some("follow")).await.unwrap();
    for round in 0..3 {
        let t0 = Instant::now();
        let rx = consumer.open_receiver("follow", 20).await.unwrap();
        let credit = wait_credit(&mut producer, tx, &format!("round {round}: credit on E1")).await;
        eprintln!(
            "round {round}: credit {credit} on E1 {:?} after a consumer attached on E2",
            t0.elapsed()
        );
        assert!(
            (1..=20).contains(&credit),
            "round {round}: {credit} credit for 20 granted"
        );
        exchange(
            &mut producer,
            tx,
            &mut consumer,
            rx,
            &format!("r{round}"),
            10,
        )
        .await;

        consumer.close_link(rx).await.unwrap();
        let t1 = Instant::now();
        let raced = producer.send_nowait(tx, msg("raced"), false).ok();
        producer.flush().await.unwrap();
        let mut outcomes = Vec::new();
        while producer.credit(tx) > 0 {
            assert!(
                t1.elapsed() < CONVERGE,
                "round {round}: E1's producer still holds {} credit {CONVERGE:?} after the only consumer detached",
                producer.credit(tx)
            );
            if let Ok(o) =
                tokio::time::timeout(Duration::from_millis(5), producer.next_outcome()).await
            {
                outcomes.push(o.unwrap());
            }
        }
        eprintln!(
            "round {round}: E1's credit gone {:?} after the consumer's detach",
            t1.elapsed()
        );
        // It stays gone.
        let back = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if producer.credit(tx) > 0 {
                    return;
                }
                match producer.next_outcome().await {
                    Ok(o) => outcomes.push(o),
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await;
        assert!(
            back.is_err(),
            "round {round}: credit came back with no consumer"
        );
        if let Some(raced) = raced {
            if !outcomes.iter().any(|o| o.id == raced) {
                outcomes.push(
                    within(
                        "the raced message's outcome",
                        CONVERGE,
                        producer.next_outcome(),
                    )
                    .await
                    .unwrap(),
                );
            }
            let o = outcomes
                .iter()
                .find(|o| o.id == raced)
                .expect("the raced outcome");
            assert!(
                matches!(
                    o.state,
                    Some(DeliveryState::Released) | Some(DeliveryState::Modified(_))
                ),
                "round {round}: the message raced with the consumer's detach: {:?}",
                o.state
            );
        }
    }
}

/// Multicast across edges: consumers of one multicast address on I, E1 and
/// E2; producers on E1, on I and on E2 in turn. Every consumer gets every
/// message once, and every producer's messages are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_reaches_every_consumer_on_every_edge_once() {
    const MULTICAST: &str = "[[address]]\nprefix = \"multicast\"\ndistribution = \"multicast\"\n\n";
    const N: usize = 20;
    let i = edge::start(
        "I",
        &(interior_toml("I", None, &[], false, false) + MULTICAST),
    );
    let e1 = edge::start(
        "E1",
        &(edge_toml("E1", &[i.edge_port()], false) + MULTICAST),
    );
    let e2 = edge::start(
        "E2",
        &(edge_toml("E2", &[i.edge_port()], false) + MULTICAST),
    );
    e1.wait_uplink("I").await;
    e2.wait_uplink("I").await;
    let mut consumers = Vec::new();
    for node in [&i, &e1, &e2] {
        let mut c = node.client().await;
        let rx = c.open_receiver("multicast.news", 50).await.unwrap();
        consumers.push((node.id.clone(), c, rx));
    }
    // Time for the edges' consumers to be known across the uplinks (a
    // multicast message goes to the consumers known when it is sent).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let receiving: Vec<_> = consumers
        .into_iter()
        .map(|(id, mut c, rx)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                // Until told to stop, and nothing came for 500 ms.
                loop {
                    match tokio::time::timeout(Duration::from_millis(500), c.receive(rx)).await {
                        // The router went (the test failed and ends).
                        Ok(Err(_)) => return (id, got),
                        Ok(Ok(d)) => {
                            got.push(text(&d.payload));
                            c.accept(&d).unwrap();
                            if c.credit(rx) < 25 {
                                c.flow(rx, 50).await.unwrap();
                            } else {
                                c.flush().await.unwrap();
                            }
                        }
                        Err(_) if stop.load(Ordering::SeqCst) => return (id, got),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    // Each producer in turn; the first message without `accepted` (or
    // without an outcome in 10 s) ends the sending, and what the consumers
    // got is told with it.
    let mut failure = None;
    'producers: for node in [&e1, &i, &e2] {
        let mut p = node.client().await;
        let tx = p.open_sender(Some("multicast.news")).await.unwrap();
        wait_credit(&mut p, tx, &format!("credit on {} for multicast", node.id)).await;
        for k in 0..N {
            let outcome = tokio::time::timeout(
                Duration::from_secs(10),
                send_one(&mut p, tx, msg(&format!("from {} {k}", node.id))),
            )
            .await;
            if outcome != Ok(Some(DeliveryState::Accepted)) {
                failure = Some(format!(
                    "message {k} from {}: {}",
                    node.id,
                    match outcome {
                        Ok(state) => format!("outcome {state:?}"),
                        Err(_) => "no outcome in 10 s".into(),
                    }
                ));
                break 'producers;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut got_all = Vec::new();
    for r in receiving {
        let (id, mut got) = within("a consumer", CONVERGE, r).await.unwrap();
        got.sort();
        got_all.push((id, got));
    }
    if let Some(failure) = failure {
        panic!("{failure}; the consumers got {got_all:?}");
    }
    let mut expected: Vec<String> = ["E1", "I", "E2"]
        .iter()
        .flat_map(|id| (0..N).map(move |k| format!("from {id} {k}")))
        .collect();
    expected.sort();
    for (id, got) in got_all {
        assert_eq!(got, expected, "what the consumer on {id} got");
    }
}

/// What the failover test's producers share with it.
#[derive(Default)]
struct Shared {
    /// Set: send nothing new, only resend what comes back.
    stop_new: AtomicBool,
    /// When I1 was killed.
    killed_at: Mutex<Option<Instant>>,
    /// Accepted outcomes, per producer.
    accepted: [AtomicU64; 2],
    /// Accepted outcomes of messages sent after the kill, per producer.
    accepted_after_kill: [AtomicU64; 2],
    /// Bytes of padding in each message (0: a few bytes each; over the
    /// connections' 64 KiB frames: messages streamed in several frames).
    padding: usize,
}

impl Shared {
    fn killed_at(&self) -> Option<Instant> {
        *self.killed_at.lock().unwrap()
    }
}

/// What a producer of the failover test did.
#[derive(Debug, Default)]
struct Report {
    name: String,
    /// Distinct messages.
    messages: u64,
    /// Transfers, resends included.
    sent: u64,
    /// Bodies of the messages accepted (each once: an accepted message is
    /// not resent).
    accepted: Vec<Bytes>,
    released: u64,
    modified: u64,
    /// Outcomes other than accepted, released and modified.
    unexpected: Vec<String>,
    /// From the kill to the first accepted outcome of a message sent after
    /// it.
    first_accept_after_kill: Option<Duration>,
    /// Messages sent whose outcome never came (within the bound).
    unresolved: Vec<Bytes>,
    /// Messages that came back released or modified and could not be
    /// sent again (no credit within the bound).
    unsent: usize,
    /// A client error that stopped the producer.
    error: Option<String>,
}

/// Sends unsettled messages `{name} {n}` on `tx` as fast as credit allows
/// until `shared.stop_new`, resending whatever comes back released or
/// modified (at-least-once); then resends until every message has been
/// accepted (or has another outcome), at most `drain` after the stop.
async fn produce(
    mut client: Client,
    tx: LinkId,
    name: &str,
    index: usize,
    shared: Arc<Shared>,
    drain: Duration,
) -> Report {
    let mut report = Report {
        name: name.to_owned(),
        ..Report::default()
    };
    // In flight: body, and whether it was sent after the kill.
    let mut in_flight: HashMap<SequenceNo, (Bytes, bool)> = HashMap::new();
    let mut resend: VecDeque<Bytes> = VecDeque::new();
    let mut deadline = None;
    let result: Result<(), ferry_proto::client::ClientError> = async {
        loop {
            let killed = shared.killed_at();
            let stop = shared.stop_new.load(Ordering::SeqCst);
            if stop && deadline.is_none() {
                deadline = Some(Instant::now() + drain);
            }
            let mut sent_now = false;
            while client.credit(tx) > 0 {
                let body = match resend.pop_front() {
                    Some(body) => body,
                    None if !stop => {
                        report.messages += 1;
                        padded(&format!("{name} {}", report.messages), shared.padding)
                    }
                    None => break,
                };
                let id = client.send_nowait(tx, body.clone(), false)?;
                in_flight.insert(id, (body, killed.is_some()));
                report.sent += 1;
                sent_now = true;
            }
            if sent_now {
                client.flush().await?;
            }
            if stop && in_flight.is_empty() && resend.is_empty() {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            let mut outcomes = Vec::new();
            if in_flight.is_empty() {
                // No credit and nothing to wait for but credit.
                if let Ok(r) =
                    tokio::time::timeout(Duration::from_millis(50), client.wait_credit(tx)).await
                {
                    r?;
                }
            } else if let Ok(o) =
                tokio::time::timeout(Duration::from_millis(50), client.next_outcome()).await
            {
                outcomes.push(o?);
            }
            outcomes.extend(client.take_outcomes());
            for o in outcomes {
                let Some((body, after_kill)) = in_flight.remove(&o.id) else {
                    report
                        .unexpected
                        .push(format!("an outcome for unknown delivery {:?}", o.id));
                    continue;
                };
                match o.state {
                    Some(DeliveryState::Accepted) => {
                        shared.accepted[index].fetch_add(1, Ordering::SeqCst);
                        if after_kill {
                            shared.accepted_after_kill[index].fetch_add(1, Ordering::SeqCst);
                            if report.first_accept_after_kill.is_none() {
                                report.first_accept_after_kill =
                                    killed.or(shared.killed_at()).map(|t| t.elapsed());
                            }
                        }
                        report.accepted.push(body);
                    }
                    Some(DeliveryState::Released) => {
                        report.released += 1;
                        resend.push_back(body);
                    }
                    Some(DeliveryState::Modified(_)) => {
                        report.modified += 1;
                        resend.push_back(body);
                    }
                    other => report
                        .unexpected
                        .push(format!("{:?}: outcome {other:?}", text(&body))),
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report.unresolved = in_flight.into_values().map(|(body, _)| body).collect();
    report.unsent = resend.len();
    report
}

/// Receives on `rx` until `stop` (and nothing arrived for 100 ms),
/// accepting everything and counting each body in `received`.
async fn consume(
    mut client: Client,
    rx: LinkId,
    received: Arc<Mutex<HashMap<Bytes, u32>>>,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let mut deliveries = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(100), client.receive(rx)).await {
            Ok(Ok(first)) => {
                let mut next = Some(first);
                while let Some(d) = next {
                    *received
                        .lock()
                        .unwrap()
                        .entry(d.payload.clone())
                        .or_default() += 1;
                    deliveries += 1;
                    client.accept(&d).map_err(|e| e.to_string())?;
                    next = client.try_receive(rx);
                }
                if client.credit(rx) < 50 {
                    client.flow(rx, 100).await.map_err(|e| e.to_string())?;
                } else {
                    client.flush().await.map_err(|e| e.to_string())?;
                }
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) if stop.load(Ordering::SeqCst) => return Ok(deliveries),
            Err(_) => {}
        }
    }
}

/// Polls until `done`, at most `limit`; whether it came.
async fn until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The acceptance test. Interior routers I1 and I2 (meshed over
/// mutual TLS); edges E1 and E2 list I1 then I2, E3 and E4 list I2 then
/// I1. Consumers of one anycast address on E3 and E4; producers on E1 and
/// E2 send unsettled messages, each body unique, without pause. I1 is
/// SIGKILLed under load; the producers go on, resending what comes back
/// released or modified. Nothing accepted may be lost, every message
/// sent gets an outcome, and traffic resumes through I2 (within
/// [`FAILOVER_LIMIT`]; the failover time is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_fails_over_when_its_interior_router_dies_under_load_and_nothing_accepted_is_lost()
{
    fail_over_under_load(Death::Kill, "I1", 0).await;
}

/// As the acceptance test, with messages of 200 KB: each is streamed over
/// several frames on every connection, and some are cut off mid-way by the
/// kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_fails_over_with_large_messages_in_flight_and_nothing_accepted_is_lost() {
    fail_over_under_load(Death::Kill, "I1", 200_000).await;
}

/// As the acceptance test, with the consumers' interior router (I2)
/// killed: E3 and E4 fail over to I1, which advertises their consumers in
/// I2's stead, and the producers on E1 and E2 (which stay on I1) resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_fails_over_when_the_consumers_interior_router_dies_under_load() {
    fail_over_under_load(Death::Kill, "I2", 0).await;
}

/// As the acceptance test, with I1 falling silent (SIGSTOP: its sockets
/// stay open, nothing more comes from it) instead of dying: the edges
/// notice by their uplink's idle timeout, fail over to I2, and settle
/// what was in flight through I1 for their producers to send again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_fails_over_when_its_interior_router_falls_silent_under_load() {
    fail_over_under_load(Death::Silence, "I1", 0).await;
}

/// How the failover tests take I1 away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// SIGKILL: its connections close at once.
    Kill,
    /// SIGSTOP: its connections stay open, silent (it is SIGKILLed when
    /// the test ends).
    Silence,
}

/// The failover test: `victim` (I1, the producers' interior router, or
/// I2, the consumers') is taken away by `death` under load.
/// Messages carry `padding` bytes more than their name.
async fn fail_over_under_load(death: Death, victim: &str, padding: usize) {
    const ADDRESS: &str = "work";
    // Accepted messages per producer before the kill, and after it.
    let load: u64 = if padding > 0 { 30 } else { 300 };

    let i1_port = free_port();
    let mut i1 = edge::start("I1", &interior_toml("I1", Some(i1_port), &[], true, false));
    let mut i2 = edge::start(
        "I2",
        &interior_toml("I2", None, &[(i1_port, 1)], true, false),
    );
    i2.wait_log("neighbour I1 connected", CONVERGE).await;
    let e1 = edge::edge("E1", &[&i1, &i2]);
    let e2 = edge::edge("E2", &[&i1, &i2]);
    let e3 = edge::edge("E3", &[&i2, &i1]);
    let e4 = edge::edge("E4", &[&i2, &i1]);
    for (e, first) in [(&e1, &i1), (&e2, &i1), (&e3, &i2), (&e4, &i2)] {
        e.wait_uplink(&first.id).await;
        first.wait_log(&edge_connected(&e.id), UPLINK_WAIT).await;
    }

    // Consumers on E3 and E4.
    let received: Arc<Mutex<HashMap<Bytes, u32>>> = Arc::default();
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for e in [&e3, &e4] {
        let mut client = e.client().await;
        let rx = client.open_receiver(ADDRESS, 100).await.unwrap();
        consumers.push(tokio::spawn(consume(
            client,
            rx,
            received.clone(),
            stop_consumers.clone(),
        )));
    }

    // Producers on E1 and E2, once their credit shows the consumers.
    let shared = Arc::new(Shared {
        padding,
        ..Shared::default()
    });
    let mut producers = Vec::new();
    for (index, e) in [&e1, &e2].into_iter().enumerate() {
        let mut client = e.client().await;
        let tx = client.open_sender(Some(ADDRESS)).await.unwrap();
        wait_credit(
            &mut client,
            tx,
            &format!("credit on {} for the consumers on E3 and E4", e.id),
        )
        .await;
        let (name, shared) = (e.id.clone(), shared.clone());
        producers.push(tokio::spawn(async move {
            produce(client, tx, &name, index, shared, Duration::from_secs(30)).await
        }));
    }

    // Under load (for a second at least)…
    let started = Instant::now();
    let loaded = until(Duration::from_secs(60), || {
        started.elapsed() >= Duration::from_secs(1)
            && shared
                .accepted
                .iter()
                .all(|a| a.load(Ordering::SeqCst) >= load)
    })
    .await;
    assert!(
        loaded,
        "the producers did not get {load} messages each accepted in 60 s: {:?}",
        shared.accepted
    );
    // …the victim dies.
    let before: Vec<u64> = shared
        .accepted
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    let (killed, killed_wall) = {
        let node = if victim == "I1" { &mut i1 } else { &mut i2 };
        match death {
            Death::Kill => node.kill(),
            Death::Silence => node.stop(),
        }
    };
    let survivor = if victim == "I1" { &i2 } else { &i1 };
    // The edges that had the victim as their uplink, and the others.
    let (moved, stayed) = if victim == "I1" {
        ([&e1, &e2], [&e3, &e4])
    } else {
        ([&e3, &e4], [&e1, &e2])
    };
    *shared.killed_at.lock().unwrap() = Some(killed);
    // Sending goes on, for two seconds at least.
    let resumed = until(Duration::from_secs(60), || {
        killed.elapsed() >= Duration::from_secs(2)
            && shared
                .accepted_after_kill
                .iter()
                .all(|a| a.load(Ordering::SeqCst) >= load)
    })
    .await;
    shared.stop_new.store(true, Ordering::SeqCst);
    let mut reports = Vec::new();
    for p in producers {
        reports.push(
            within("a producer's end", Duration::from_secs(60), p)
                .await
                .unwrap(),
        );
    }

    // Every accepted message reaches a consumer.
    let accepted: Vec<Bytes> = reports
        .iter()
        .flat_map(|r| r.accepted.iter().cloned())
        .collect();
    until(Duration::from_secs(20), || {
        let received = received.lock().unwrap();
        accepted.iter().all(|b| received.contains_key(b))
    })
    .await;
    // A moment more, for copies still on their way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_consumers.store(true, Ordering::SeqCst);
    let mut deliveries = 0;
    for c in consumers {
        deliveries += within("a consumer's end", CONVERGE, c)
            .await
            .unwrap()
            .expect("a consumer's connection failed");
    }
    let received = received.lock().unwrap().clone();
    let lost: Vec<String> = accepted
        .iter()
        .filter(|b| !received.contains_key(*b))
        .map(text)
        .collect();
    let duplicates: u64 = received.values().map(|&n| u64::from(n) - 1).sum();

    // What the logs say about the uplinks.
    let e1_log = e1.log();
    let moved_log = moved[0].log();
    let reconnected = moved_log
        .lines()
        .find(|l| l.contains(&uplink_connected(&survivor.id)))
        .map(str::to_owned);
    let log_failover = reconnected
        .as_deref()
        .and_then(|l| logged_after(l, killed_wall));
    eprintln!(
        "edge failover ({death:?} {victim}, +{padding} B): {victim} taken away after {before:?} accepted (E1, E2); first accepted outcome of a message sent after that: E1 {:?}, E2 {:?}; {}'s log has its uplink to {} {log_failover:?} after it",
        reports[0].first_accept_after_kill,
        reports[1].first_accept_after_kill,
        moved[0].id,
        survivor.id,
    );
    for r in &reports {
        eprintln!(
            "edge failover ({death:?} {victim}, +{padding} B): {}: {} messages, {} transfers, {} accepted, {} released, {} modified, {} unexpected, {} without outcome, {} not resent",
            r.name,
            r.messages,
            r.sent,
            r.accepted.len(),
            r.released,
            r.modified,
            r.unexpected.len(),
            r.unresolved.len(),
            r.unsent
        );
    }
    eprintln!(
        "edge failover ({death:?} {victim}, +{padding} B): consumers on E3, E4: {deliveries} deliveries, {} distinct, {duplicates} duplicates; {} accepted but never received",
        received.len(),
        lost.len()
    );

    // The verdict: nothing accepted lost…
    assert!(
        lost.is_empty(),
        "{} messages accepted but never received, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    for r in &reports {
        assert_eq!(r.error, None, "{}'s producer failed", r.name);
        assert!(
            r.unexpected.is_empty(),
            "{}: outcomes other than accepted/released/modified: {:?}",
            r.name,
            &r.unexpected[..r.unexpected.len().min(10)]
        );
        // …every message sent got an outcome…
        assert!(
            r.unresolved.is_empty(),
            "{}: {} messages sent never got an outcome (30 s after the producers stopped), e.g. {:?}",
            r.name,
            r.unresolved.len(),
            r.unresolved.iter().take(10).map(text).collect::<Vec<_>>()
        );
        assert_eq!(
            r.unsent, 0,
            "{}: messages released/modified could not be sent again",
            r.name
        );
        // …and traffic resumed.
        let first = r.first_accept_after_kill.unwrap_or_else(|| {
            panic!(
                "{}: no message sent after {victim}'s death was accepted; E1's log:\n{e1_log}",
                r.name
            )
        });
        assert!(
            first <= FAILOVER_LIMIT,
            "{}: traffic resumed only {first:?} after {victim}'s death",
            r.name
        );
    }
    assert!(
        resumed,
        "the producers did not get {load} more messages accepted within 60 s of the kill: {:?}",
        shared.accepted_after_kill
    );
    // The victim's edges moved to the survivor, the others stayed where
    // they were.
    for e in moved {
        let log = e.log();
        assert!(
            log.contains(&uplink_lost(victim)),
            "{} never logged its uplink to {victim} lost",
            e.id
        );
        assert_eq!(
            uplinks_connected(&log),
            [victim, survivor.id.as_str()],
            "{}'s uplinks, in order",
            e.id
        );
        survivor.wait_log(&edge_connected(&e.id), UPLINK_WAIT).await;
    }
    for e in stayed {
        let log = e.log();
        assert_eq!(
            uplinks_connected(&log),
            [survivor.id.as_str()],
            "{}'s uplinks",
            e.id
        );
        assert!(
            !log.contains(&uplink_lost(&survivor.id)),
            "{} lost its uplink to {}",
            e.id,
            survivor.id
        );
    }
}

/// A TLS uplink: the edge proves its id with its certificate (as routers
/// do to each other); clients on both sides reach each other. An edge
/// whose certificate names another router gets no uplink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_uplink_over_tls_needs_a_certificate_naming_the_edge() {
    let i = edge::start("TI", &interior_toml("TI", None, &[], false, true));
    let e = edge::start("TE", &edge_toml("TE", &[i.edge_port()], true));
    let line = e.wait_uplink("TI").await;
    eprintln!("{line}");
    i.wait_log(&edge_connected("TE"), UPLINK_WAIT).await;

    // Edge to interior…
    let mut consumer = i.client().await;
    let rx = consumer.open_receiver("secure-up", 20).await.unwrap();
    let mut producer = e.client().await;
    let tx = producer.open_sender(Some("secure-up")).await.unwrap();
    wait_credit(&mut producer, tx, "credit on TE for a consumer on TI").await;
    exchange(&mut producer, tx, &mut consumer, rx, "up", 50).await;
    // …and interior to edge.
    let mut consumer = e.client().await;
    let rx = consumer.open_receiver("secure-down", 20).await.unwrap();
    let mut producer = i.client().await;
    let tx = producer.open_sender(Some("secure-down")).await.unwrap();
    wait_credit(&mut producer, tx, "credit on TI for a consumer on TE").await;
    exchange(&mut producer, tx, &mut consumer, rx, "down", 50).await;

    // TX presents TE's certificate.
    let impostor = edge::start(
        "TX",
        &edge_toml("TE", &[i.edge_port()], true).replace("id = \"TE\"", "id = \"TX\""),
    );
    let mut producer = impostor.client().await;
    let tx = producer.open_sender(Some("secure-up")).await.unwrap();
    let credit = tokio::time::timeout(Duration::from_secs(4), producer.wait_credit(tx)).await;
    assert!(
        credit.is_err() && producer.credit(tx) == 0,
        "an edge with another router's certificate reached a consumer on TI"
    );
    assert!(
        !i.log().contains(&edge_connected("TX")),
        "TI took TX with TE's certificate"
    );
    // Refused, TX tries again with the connectors' back-off (100 ms
    // doubling to 1 s: under ten attempts in these 4 s), and does not say
    // its uplink is up.
    let log = impostor.log();
    let attempts = i
        .log()
        .lines()
        .filter(|l| l.contains(" accepted on ") && l.contains(" (edge)"))
        .count()
        - 1; // TE's
    let connected = uplinks_connected(&log).len();
    let uplink_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("uplink"))
        .take(6)
        .collect();
    assert!(
        attempts <= 20 && connected == 0,
        "TX, refused by TI (its certificate names TE), dialed TI {attempts} times in 4 s \
         (expected the connectors' back-off: at most 20) and logged its uplink connected \
         {connected} times (expected none); its first uplink lines:\n{}",
        uplink_lines.join("\n")
    );
}

/// An interior router takes one edge router per id: a second edge router
/// with the id of one connected is refused, and tries again with the
/// connectors' back-off (not at once, forever), without saying its uplink
/// is up. The first one carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_edge_router_with_the_same_id_is_refused_and_backs_off() {
    let i = edge::interior("I");
    let first = edge::edge("E1", &[&i]);
    first.wait_uplink("I").await;
    let second = edge::edge("E1", &[&i]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The edge listener's connections after the first's.
    let attempts = i
        .log()
        .lines()
        .filter(|l| l.contains(" accepted on ") && l.contains(" (edge)"))
        .count()
        - 1;
    let log = second.log();
    let connected = uplinks_connected(&log).len();
    let uplink_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("uplink"))
        .take(6)
        .collect();
    assert!(attempts >= 1, "the second E1 never dialed I: {log}");
    assert!(
        attempts <= 20 && connected == 0,
        "the second E1, refused by I (E1 is connected), dialed I {attempts} times in 3 s \
         (expected the connectors' back-off: at most 20) and logged its uplink connected \
         {connected} times (expected none); its first uplink lines:\n{}",
        uplink_lines.join("\n")
    );
    // The first is still I's E1.
    let mut consumer = first.client().await;
    let rx = consumer.open_receiver("still-first", 20).await.unwrap();
    let mut producer = i.client().await;
    let tx = producer.open_sender(Some("still-first")).await.unwrap();
    wait_credit(&mut producer, tx, "credit on I for the first E1's consumer").await;
    exchange(&mut producer, tx, &mut consumer, rx, "first", 10).await;
    assert_eq!(uplinks_connected(&first.log()), ["I"]);
}

/// The one line `ferry run` and `ferry check-config` print for a
/// configuration it refuses (exit status 2).
fn config_error(toml: &str) -> Vec<(String, String)> {
    let dir = TempDir::new();
    let path = dir.write("ferry.toml", toml);
    // check-config first: if it accepts the file, `run` is not tried (it
    // would listen where the test asked it not to).
    ["check-config", "run"]
        .into_iter()
        .map(|command| {
            let done = run_ferry(
                [command.as_ref(), "--config".as_ref(), path.as_os_str()],
                &[],
                Duration::from_secs(10),
            );
            assert_eq!(
                done.status.code(),
                Some(2),
                "{command} did not refuse:\n{toml}\n{done:?}"
            );
            let lines: Vec<&str> = done.stderr.lines().collect();
            assert_eq!(
                lines.len(),
                1,
                "{command}: expected one stderr line, got:\n{}",
                done.stderr
            );
            (
                lines[0].to_owned(),
                format!(
                    "ferry: config error: invalid value for '{{}}' in {}: ",
                    path.display()
                ),
            )
        })
        .collect()
}

/// Asserts that `toml` is refused with the error for `key`, `reason`
/// being (the start of) what the line says about it.
fn assert_refused(toml: &str, key: &str, reason: &str) {
    for (line, prefix) in config_error(toml) {
        let expected = prefix.replace("{}", key) + reason;
        assert!(
            line.starts_with(&expected),
            "expected {expected:?}…, got {line:?}"
        );
    }
}

const NORMAL: &str = "[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n\n";

#[test]
fn edge_connectors_and_listeners_need_the_right_mode() {
    let port = free_port();
    let connector =
        format!("[[connector]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"edge\"\n");
    for mode in ["interior", "standalone"] {
        assert_refused(
            &format!("[router]\nid = \"I\"\nmode = \"{mode}\"\n\n{NORMAL}{connector}"),
            "connector[0].role",
            &format!("role \"edge\" needs router.mode = \"edge\" (mode is \"{mode}\")"),
        );
    }
    // An edge router accepts no edge routers, and dials no inter-router
    // connections.
    assert_refused(
        &format!(
            "[router]\nid = \"E\"\nmode = \"edge\"\n\n{NORMAL}[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"edge\"\n\n{connector}"
        ),
        "listener[1].role",
        "role \"edge\" needs router.mode = \"interior\" (mode is \"edge\")",
    );
    assert_refused(
        &format!(
            "[router]\nid = \"E\"\nmode = \"edge\"\n\n{NORMAL}{}",
            connector.replace("\"edge\"", "\"inter-router\"")
        ),
        "connector[0].role",
        "role \"inter-router\" needs router.mode = \"interior\" (mode is \"edge\")",
    );
    // An uplink runs over TCP (QUIC is for links between interior routers).
    let pki = router::Pki::mesh();
    let toml = format!(
        "{}[router]\nid = \"CE\"\nmode = \"edge\"\n\n{NORMAL}{connector}tls = \"mesh\"\ntransport = \"quic\"\n",
        pki.profile("mesh", &pki.router_files("CE"))
    );
    for (line, prefix) in config_error(&toml) {
        let expected = prefix.replace("{}", "connector[0].transport");
        assert!(
            line.starts_with(&expected) && line.contains("tcp"),
            "expected {expected:?}… saying an uplink runs over tcp, got {line:?}"
        );
    }
}

/// As for inter-router listeners: an edge listener without TLS only on
/// loopback, and with TLS only with client certificates required (edge
/// routers prove their ids with them).
#[test]
fn an_edge_listener_off_loopback_needs_tls_with_client_certificates() {
    let interior = format!("[router]\nid = \"I\"\nmode = \"interior\"\n\n{NORMAL}");
    for host in ["0.0.0.0", "192.0.2.1"] {
        let toml =
            format!("{interior}[[listener]]\nhost = \"{host}\"\nport = 0\nrole = \"edge\"\n");
        for (line, prefix) in config_error(&toml) {
            let expected = prefix.replace("{}", "listener[1].tls");
            assert!(
                line.starts_with(&expected) && line.contains(host),
                "expected {expected:?}… naming {host}, got {line:?}"
            );
        }
    }
    let pki = router::Pki::mesh();
    let toml = format!(
        "{}{interior}[[listener]]\nhost = \"0.0.0.0\"\nport = 0\nrole = \"edge\"\ntls = \"mesh\"\n",
        pki.profile("mesh", &pki.router_files("CI"))
    );
    for (line, prefix) in config_error(&toml) {
        let expected = prefix.replace("{}", "listener[1].client_cert");
        assert!(
            line.starts_with(&expected) && line.contains("client_cert = \"required\""),
            "expected {expected:?}… asking for client_cert = \"required\", got {line:?}"
        );
    }
}
