//! Control traffic has priority over data: a saturated inter-router
//! connection must not delay HELLOs into a false neighbour loss.
//!
//! Router A dials router B through a proxy that carries A → B at a few
//! hundred KiB/s (B → A unthrottled), and a producer on A sends 64 KiB
//! messages to a consumer on B as fast as credit allows: megabytes of
//! data queue up in A for the slow hop, for several `hello_max_age`s.
//! Neither router may lose the other meanwhile.

#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::definitions::DeliveryState;
use ferry_proto::message::{Body, Message};
use ferry_tests::free_port;
use router::mesh_router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How fast the proxy carries A → B.
const RATE: u64 = 256 * 1024;

/// How long the hop stays saturated: several `hello_max_age`s (3 s).
const SATURATED: Duration = Duration::from_secs(10);

/// A TCP proxy to `to` that carries what its client sends at `RATE`
/// bytes per second, and the answers at full speed. Its receive buffer is
/// small, so the backlog stays in the sender (the router), where
/// priority can act, not in the proxy's kernel buffers. Returns its port.
async fn throttled_proxy(to: SocketAddr) -> u16 {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((from, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(to).await else {
                continue;
            };
            let (mut from_r, mut from_w) = from.into_split();
            let (mut up_r, mut up_w) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_r, &mut from_w).await;
            });
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                let mut carried = 0u64;
                let mut buf = vec![0; 4096];
                loop {
                    let n = match from_r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if up_w.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    carried += n as u64;
                    let due = Duration::from_micros(carried * 1_000_000 / RATE);
                    tokio::time::sleep_until(start + due).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_hop_does_not_lose_the_neighbour() {
    let b_port = free_port();
    let b = mesh_router("B", Some(b_port), &[], "");
    let proxy = throttled_proxy(SocketAddr::from(([127, 0, 0, 1], b_port))).await;
    let a = mesh_router("A", None, &[(proxy, 1)], "");

    // A consumer on B that takes everything at once.
    let mut consumer = b.client().await;
    let rx = consumer.open_receiver("bulk", 200).await.unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let consuming = tokio::spawn(async move {
        loop {
            let Ok(d) = consumer.receive(rx).await else {
                return;
            };
            consumer.accept(&d).unwrap();
            count.fetch_add(1, Ordering::Relaxed);
            if consumer.credit(rx) < 100 {
                consumer.flow(rx, 200).await.unwrap();
            }
        }
    });

    // A producer on A, sending 64 KiB messages as fast as credit allows.
    let mut producer = a.client().await;
    let tx = producer.open_sender(Some("bulk")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), producer.wait_credit(tx))
        .await
        .expect("credit once A knows of B's consumer")
        .unwrap();
    let body = Message::new(Body::data(vec![7u8; 64 * 1024])).encode();
    let most_unsettled = Arc::new(AtomicU64::new(0));
    let most = most_unsettled.clone();
    let producing = tokio::spawn(async move {
        let (mut sent, mut settled) = (0u64, 0u64);
        loop {
            while producer.credit(tx) > 0 {
                producer
                    .send_nowait(tx, Bytes::clone(&body), false)
                    .unwrap();
                sent += 1;
            }
            most.fetch_max(sent - settled, Ordering::Relaxed);
            let outcome = producer.next_outcome().await.unwrap();
            assert_eq!(outcome.state, Some(DeliveryState::Accepted));
            settled += 1;
        }
    });

    tokio::time::sleep(SATURATED).await;
    producing.abort();
    consuming.abort();

    let unsettled = most_unsettled.load(Ordering::Relaxed);
    let received = received.load(Ordering::Relaxed);
    let (a_log, b_log) = (a.ferry.stderr(), b.ferry.stderr());
    for (name, log) in [("A", &a_log), ("B", &b_log)] {
        let other = if name == "A" { "B" } else { "A" };
        let lost = [
            format!("neighbour {other} silent"),
            format!("neighbour {other} disconnected"),
        ];
        assert!(
            !lost.iter().any(|l| log.contains(l.as_str())),
            "{name} lost its neighbour while the hop was saturated \
             ({unsettled} messages of 64 KiB unsettled at most, {received} received):\n{log}"
        );
        assert_eq!(
            router::neighbours_connected(log),
            [other],
            "{name} reconnected:\n{log}"
        );
    }
    // The hop was saturated: far more queued than it carried.
    assert!(
        unsettled * 64 * 1024 > 4 * RATE,
        "only {unsettled} messages were ever queued"
    );
    let carried = received * 64 * 1024;
    assert!(
        carried <= RATE * (SATURATED.as_secs() + 5),
        "{received} messages crossed a {RATE} B/s hop"
    );
}
