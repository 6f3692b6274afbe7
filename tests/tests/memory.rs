//! A consumer that grants credit and then stops reading its socket, fed by
//! 50 pre-settled producers: its consumer links promise no more credit once
//! its connection is congested, so the router's memory stays bounded (and
//! under `[limits] max_buffered_bytes` when it is set), another consumer is
//! served meanwhile, and the bytes held are given back when it goes.

#[path = "../support/http.rs"]
mod http;
#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::client::{Client, ClientError};
use ferry_proto::definitions::DeliveryState;
use ferry_proto::engine::EngineError;
use ferry_proto::message::{Body, Message};
use ferry_tests::http_addr;
use router::Router;

/// Producers sending to the stuck consumer.
const PRODUCERS: usize = 50;
/// How long they send.
const FLOOD: Duration = Duration::from_secs(3);

fn message(size: usize) -> Bytes {
    Message::new(Body::data(vec![b'x'; size])).encode()
}

/// The router's resident memory, from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A metric's value from `/metrics` (summed over its series).
fn metric(endpoint: SocketAddr, name: &str) -> f64 {
    http::get(endpoint, "/metrics")
        .body
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Floods a consumer that never reads from [`PRODUCERS`] pre-settled
/// producers (while a second consumer is served, if `other`); returns the
/// router's growth in resident memory at its peak.
async fn flood(router: &Router, size: usize, other: bool) -> u64 {
    let pid = router.ferry.pid();
    // The stuck consumer: a large credit, then never read again.
    let mut stuck = router.client().await;
    stuck.open_receiver("stuck", 1_000_000).await.unwrap();
    let baseline = rss(pid);

    let started = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..PRODUCERS {
        let mut p = router.client().await;
        producers.push(tokio::spawn(async move {
            let tx = p.open_sender(Some("stuck")).await.unwrap();
            let body = message(size);
            while started.elapsed() < FLOOD {
                // No credit for a while once the consumer is full: wait a
                // little, then look at the clock again.
                let sent = tokio::time::timeout(
                    Duration::from_millis(200),
                    p.send_settled(tx, body.clone()),
                )
                .await;
                match sent {
                    // The router took its credit back between our look
                    // and our send (it may lower credit at any time).
                    Ok(Err(ClientError::Engine(EngineError::NoCredit))) | Err(_) | Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("a producer failed: {e}"),
                }
            }
            p
        }));
    }
    // Meanwhile another consumer is served: unsettled, all accepted.
    let other = other.then(|| {
        let router_addr = router.addr;
        tokio::spawn(async move {
            let options = ferry_proto::client::ClientOptions::default;
            let mut fine = Client::connect(router_addr, options()).await.unwrap();
            let rx = fine.open_receiver("fine", 100).await.unwrap();
            let mut sender = Client::connect(router_addr, options()).await.unwrap();
            let tx = sender.open_sender(Some("fine")).await.unwrap();
            let receiving = tokio::spawn(async move {
                for _ in 0..50 {
                    let d = fine.receive(rx).await.unwrap();
                    fine.accept(&d).unwrap();
                }
                fine.flush().await.unwrap();
                fine
            });
            let mut outcomes = Vec::new();
            for _ in 0..50 {
                outcomes.push(sender.send(tx, message(100)).await.unwrap());
            }
            let _fine = receiving.await.unwrap();
            outcomes
        })
    });

    let mut peak = baseline;
    while started.elapsed() < FLOOD + Duration::from_millis(500) {
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(other) = other {
        // Served while the stuck consumer still holds what it holds.
        let outcomes = tokio::time::timeout(Duration::from_secs(20), other)
            .await
            .expect("the other consumer was served during the flood")
            .unwrap();
        assert!(outcomes.iter().all(|o| *o == Some(DeliveryState::Accepted)));
    }
    for p in producers {
        drop(p.await.unwrap());
    }
    drop(stuck);
    eprintln!(
        "the router grew by {} MiB at its peak",
        (peak - baseline) >> 20
    );
    peak - baseline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_keeps_the_router_under_its_bound() {
    // The router's default bound (a quarter of the machine's memory):
    // what holds is the consumer's own, its congestion.
    let router = Router::start("[http]\nhost = \"127.0.0.1\"\nport = 0\n");
    let endpoint = http_addr(&router.ferry.stderr()).unwrap();
    let growth = flood(&router, 4096, true).await;
    // What its producers held credit for when it stopped (20 × 250 × 4 KiB
    // at most), its connection's output and allocator slack; without the
    // bound each producer could hold 16 MiB.
    assert!(growth < 48 << 20, "the router grew by {} MiB", growth >> 20);
    // The consumer has gone: the bytes held are given back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(endpoint, "ferry_buffered_bytes") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "bytes still held after the consumer left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Done-when of the issue: with `max_buffered_bytes` set, 50
/// producers to a consumer that stopped reading keep the router under it
/// (whichever bound holds first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_producers_stay_under_a_configured_router_wide_bound() {
    let router = Router::start("[limits]\nmax_buffered_bytes = 33554432\n");
    let growth = flood(&router, 16384, false).await;
    assert!(
        growth < (32 + 16) << 20,
        "the router grew by {} MiB over its 32 MiB bound",
        growth >> 20
    );
}
