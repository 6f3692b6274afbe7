//! Message priority (AMQP 1.0 §3.2.1) across a mesh of real `ferry`
//! processes: where deliveries wait inside the routers, a higher priority
//! goes first (docs/ROUTING.md, *Message priority*).

#[path = "../support/http.rs"]
mod http;
#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::client::Client;
use ferry_proto::definitions::DeliveryState;
use ferry_proto::engine::LinkId;
use ferry_proto::message::{Body, Header, Message};
use ferry_tests::{http_addr, within};
use router::{Router, mesh_toml, start_mesh_router};

/// Time for each step, generously (a debug build, three routers).
const LIMIT: Duration = Duration::from_secs(60);

/// Priority-0 messages sent first.
const BACKLOG: usize = 900;
/// Priority-9 messages sent after them, on the same link.
const URGENT: usize = 20;
/// Body size: with the consumer not reading, the backlog (14 MiB) is more
/// than the socket buffers (Linux's default `tcp_wmem` lets C's grow to
/// 4 MiB; the consumer's does not grow while it does not read) and C's
/// output (1 MiB) take, so most of it waits in the router.
const SIZE: usize = 16 * 1024;

/// Credit a producer link (a client's, or a neighbour's data link) may
/// hold: more than the whole exchange, so the producer can send all of
/// it at once and all of it is routed to the consumer's router.
const LIMITS: &str = "[limits]\nlink_credit_window = 1000\n\n";

/// `[http]` on an ephemeral loopback port (to read C's counters).
const HTTP: &str = "[http]\nhost = \"127.0.0.1\"\nport = 0\n\n";

/// A line of routers A - B - C, over TLS (as the other mesh tests) or
/// plain TCP; C serves its metrics.
fn line(tls: bool) -> (Router, Router, Router) {
    let b_port = ferry_tests::free_port();
    let b = start_mesh_router(
        &mesh_toml("B", Some(b_port), &[], tls),
        Some(b_port),
        LIMITS,
    );
    let a = start_mesh_router(&mesh_toml("A", None, &[(b_port, 1)], tls), None, LIMITS);
    let c = start_mesh_router(
        &mesh_toml("C", None, &[(b_port, 1)], tls),
        None,
        &format!("{LIMITS}{HTTP}"),
    );
    (a, b, c)
}

/// A message of `priority` whose body starts with its priority and number.
fn message(priority: u8, n: usize) -> Bytes {
    let mut body = format!("{priority}:{n}:").into_bytes();
    body.resize(SIZE, b'.');
    Message::new(Body::data(body))
        .with_header(Header {
            priority: Some(priority),
            ..Header::default()
        })
        .encode()
}

/// The priority and number [`message`] wrote.
fn label(payload: &Bytes) -> (u8, usize) {
    let m = Message::decode(payload.clone()).expect("a message");
    let Body::Data(data) = m.body else {
        panic!("a data body")
    };
    let text = String::from_utf8_lossy(&data[0][..16]).into_owned();
    let mut parts = text.split(':');
    let p = parts.next().unwrap().parse().unwrap();
    let n = parts.next().unwrap().parse().unwrap();
    (p, n)
}

/// Sends `messages` on `tx` in order, as fast as credit allows, and waits
/// for every outcome; returns how many were accepted.
async fn send_all(mut client: Client, tx: LinkId, messages: Vec<Bytes>) -> usize {
    let total = messages.len();
    let mut messages = messages.into_iter();
    let (mut sent, mut outcomes, mut accepted) = (0, 0, 0);
    while sent < total {
        let credit = client.wait_credit(tx).await.expect("credit");
        for m in messages.by_ref().take(credit as usize) {
            client.send_nowait(tx, m, false).expect("send");
            sent += 1;
        }
        client.flush().await.expect("flush");
        for o in client.take_outcomes() {
            outcomes += 1;
            accepted += usize::from(o.state == Some(DeliveryState::Accepted));
        }
    }
    while outcomes < total {
        let o = client.next_outcome().await.expect("outcome");
        outcomes += 1;
        accepted += usize::from(o.state == Some(DeliveryState::Accepted));
    }
    accepted
}

/// Deliveries that came in to router `http` from other routers
/// (`ferry_deliveries_in_total`, role `inter-router`).
async fn from_routers(http: SocketAddr) -> u64 {
    let body = tokio::task::spawn_blocking(move || http::get(http, "/metrics").body)
        .await
        .expect("scrape");
    body.lines()
        .filter(|l| l.starts_with("ferry_deliveries_in_total{") && l.contains("inter-router"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn priority_9_overtakes_a_priority_0_backlog_across_three_routers() {
    overtakes(true).await;
}

#[tokio::test]
async fn priority_9_overtakes_a_priority_0_backlog_over_tcp() {
    overtakes(false).await;
}

/// A producer on A sends a backlog of priority-0 messages, then
/// priority-9 ones on the same link, to a consumer on C that is not
/// reading: the backlog waits in C (the consumer's socket buffers and
/// C's output first, in order; the rest held by C's connection task,
/// where priority applies). When the consumer reads, the priority-9
/// messages come ahead of most of the backlog. Without priority every
/// queue in the mesh is first in, first out, and one link's messages
/// arrive in the order sent: the priority-9 ones last.
async fn overtakes(tls: bool) {
    let (a, _b, c) = line(tls);
    let http = http_addr(&c.ferry.stderr()).expect("C's `http listening on` line");
    let total = BACKLOG + URGENT;
    let mut consumer = c.client().await;
    // Credit for everything: what holds the backlog back is the consumer's
    // reading, not its credit.
    let rx = consumer
        .open_receiver("prio", total as u32)
        .await
        .expect("receiver");
    let mut producer = a.client().await;
    let tx = producer.open_sender(Some("prio")).await.expect("sender");
    within("credit once the mesh knows the consumer", LIMIT, async {
        producer.wait_credit(tx).await.expect("credit")
    })
    .await;

    let messages: Vec<Bytes> = (0..BACKLOG)
        .map(|n| message(0, n))
        .chain((0..URGENT).map(|n| message(9, n)))
        .collect();
    let sending = tokio::spawn(send_all(producer, tx, messages));
    // The consumer reads nothing until every message has reached C.
    within("every message reaches C", LIMIT, async {
        while from_routers(http).await < total as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let order = within("every message reaches the consumer", LIMIT, async {
        let mut order = Vec::with_capacity(total);
        while order.len() < total {
            let d = consumer.receive(rx).await.expect("delivery");
            consumer.accept(&d).expect("accept");
            order.push(label(&d.payload));
        }
        consumer.flush().await.expect("flush");
        order
    })
    .await;
    let accepted = within("every outcome reaches the producer", LIMIT, sending)
        .await
        .expect("producer task");
    assert_eq!(accepted, total, "every message accepted");

    // Each priority arrives in the order it was sent.
    for (p, sent) in [(0, BACKLOG), (9, URGENT)] {
        let numbers: Vec<usize> = order
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|&(_, n)| n)
            .collect();
        assert_eq!(
            numbers,
            (0..sent).collect::<Vec<_>>(),
            "priority {p} in order"
        );
    }
    // The priority-9 messages, sent after the whole backlog, overtook most
    // of what waited in C: priority-0 messages arrived after the last one.
    let last_urgent = order.iter().rposition(|&(p, _)| p == 9).unwrap();
    let overtaken = order[last_urgent..]
        .iter()
        .filter(|&&(p, _)| p == 0)
        .count();
    println!(
        "the last priority-9 message arrived {}th of {total}; {overtaken} priority-0 messages after it",
        last_urgent + 1
    );
    assert!(
        overtaken >= BACKLOG / 4,
        "the last priority-9 message arrived {}th of {total}, ahead of only {overtaken} \
         of the {BACKLOG} priority-0 messages sent before it",
        last_urgent + 1
    );
}
