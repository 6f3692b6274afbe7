//! Control traffic has priority over data: a saturated inter-router
//! connection must not delay HELLOs into a false neighbour loss.
//!
//! Router A dials router B through a proxy that carries A → B at a few
//! hundred KiB/s (B → A unthrottled), and a producer on A sends 64 KiB
//! messages to a consumer on B as fast as credit allows: megabytes of
//! data queue up in A for the slow hop, for several `hello_max_age`s.
//! Neither router may lose the other meanwhile.
//!
//! Also: two neighbours on loopback with producers sending large messages
//! as fast as they can (both routers' processes busy) for several times
//! the silence limit; and what an idle link costs in bytes a second.

#[path = "../support/proton.rs"]
mod proton;
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
use router::{mesh_router, mesh_toml, start_mesh_router};
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

/// Neither `a` nor `b` (routers "A" and "B", connected to each other)
/// logged losing the other or connected to it more than once.
fn neither_lost_the_other(a: &str, b: &str, context: &str) {
    for (name, log) in [("A", a), ("B", b)] {
        let other = if name == "A" { "B" } else { "A" };
        let lost = [
            format!("neighbour {other} silent"),
            format!("neighbour {other} disconnected"),
        ];
        assert!(
            !lost.iter().any(|l| log.contains(l.as_str())),
            "{name} lost its neighbour ({context}):\n{log}"
        );
        assert_eq!(
            router::neighbours_connected(log),
            [other],
            "{name} reconnected ({context}):\n{log}"
        );
    }
}

/// How long the loopback link stays busy: ten times the silence limit.
const BUSY: Duration = Duration::from_secs(8);

/// Message size on the busy loopback link.
const LARGE: usize = 512 * 1024;

/// Router A dials B over loopback; four producers on A send 512 KiB
/// messages to a consumer on B as fast as credit allows, for ten times
/// the silence after which a neighbour is dropped. The routers' processes
/// are as busy as the machine lets them be; neither may drop the other.
/// The consumer has credit all along and no link fails: every outcome is
/// `accepted`, none `released` (streamed messages from several producers
/// wait their turn on the one data link; credit a producer sends on is not
/// taken back for another producer, nor for a congested connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_traffic_on_loopback_does_not_lose_the_neighbour() {
    let b_port = free_port();
    let b = mesh_router("B", Some(b_port), &[], "");
    let a = mesh_router("A", None, &[(b_port, 1)], "");

    let mut consumer = b.client().await;
    let rx = consumer.open_receiver("heavy", 100).await.unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let consuming = tokio::spawn(async move {
        loop {
            let Ok(d) = consumer.receive(rx).await else {
                return;
            };
            consumer.accept(&d).unwrap();
            count.fetch_add(1, Ordering::Relaxed);
            if consumer.credit(rx) < 50 {
                consumer.flow(rx, 100).await.unwrap();
            }
        }
    });

    let body = Message::new(Body::data(vec![9u8; LARGE])).encode();
    // Outcomes: accepted, released, anything else (`modified`: a link
    // lost).
    let outcomes: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let mut producing = Vec::new();
    for _ in 0..4 {
        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("heavy")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), producer.wait_credit(tx))
            .await
            .expect("credit once A knows of B's consumer")
            .unwrap();
        let (body, outcomes) = (body.clone(), outcomes.clone());
        producing.push(tokio::spawn(async move {
            loop {
                while producer.credit(tx) > 0 {
                    producer
                        .send_nowait(tx, Bytes::clone(&body), false)
                        .unwrap();
                }
                let outcome = producer.next_outcome().await.unwrap();
                let kind = match outcome.state {
                    Some(DeliveryState::Accepted) => 0,
                    Some(DeliveryState::Released) => 1,
                    _ => 2,
                };
                outcomes[kind].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(BUSY).await;
    for p in producing {
        p.abort();
    }
    consuming.abort();
    let received = received.load(Ordering::Relaxed);
    let [accepted, released, other] = [0, 1, 2].map(|k| outcomes[k].load(Ordering::Relaxed));
    let mib = received * LARGE as u64 / (1024 * 1024);
    eprintln!(
        "busy loopback link: {received} messages of {} KiB in {BUSY:?} ({} MiB/s; {accepted} \
         accepted, {released} released, {other} other outcomes), no neighbour lost",
        LARGE / 1024,
        mib / BUSY.as_secs()
    );
    let context = format!("{received} messages of 512 KiB crossed");
    neither_lost_the_other(&a.ferry.stderr(), &b.ferry.stderr(), &context);
    assert!(received > 0, "nothing crossed the link");
    assert_eq!(
        other, 0,
        "outcomes other than accepted or released: a link lost?"
    );
    assert_eq!(
        released,
        0,
        "{released} of {} outcomes released while the consumer had credit",
        accepted + released
    );
}

/// A TCP proxy to `to` that counts the bytes it carries each way.
/// Returns its port and the counters (towards `to`, back).
async fn counting_proxy(to: SocketAddr) -> (u16, Arc<[AtomicU64; 2]>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let counters = counts.clone();
    tokio::spawn(async move {
        while let Ok((from, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(to).await else {
                continue;
            };
            let (from_r, from_w) = from.into_split();
            let (up_r, up_w) = upstream.into_split();
            tokio::spawn(carry(from_r, up_w, counters.clone(), 0));
            tokio::spawn(carry(up_r, from_w, counters.clone(), 1));
        }
    });
    (port, counts)
}

/// Copies `r` to `w`, counting the bytes in `counters[dir]`.
async fn carry(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    counters: Arc<[AtomicU64; 2]>,
    dir: usize,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        counters[dir].fetch_add(n as u64, Ordering::Relaxed);
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// How long the idle link's bytes are counted.
const IDLE: Duration = Duration::from_secs(10);

/// What an idle inter-router link costs: router A dials B through a proxy
/// that counts the bytes; once they are neighbours and settled, the bytes
/// each way over ten seconds (HELLOs every second, advertisements every
/// five, empty frames keeping the link alive in between), in plain TCP
/// and over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_costs_a_few_hundred_bytes_a_second() {
    for tls in [false, true] {
        let b_port = free_port();
        let b = start_mesh_router(&mesh_toml("B", Some(b_port), &[], tls), Some(b_port), "");
        let (proxy, counts) = counting_proxy(SocketAddr::from(([127, 0, 0, 1], b_port))).await;
        let a = start_mesh_router(&mesh_toml("A", None, &[(proxy, 1)], tls), None, "");
        // Neighbours, and past the exchanges of a new adjacency.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while router::neighbours_connected(&a.ferry.stderr()).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "A never met B");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = [0, 1].map(|d| counts[d].load(Ordering::Relaxed));
        tokio::time::sleep(IDLE).await;
        let [to_b, to_a] =
            [0, 1].map(|d| (counts[d].load(Ordering::Relaxed) - before[d]) / IDLE.as_secs());
        let how = if tls { "TLS" } else { "plain TCP" };
        eprintln!(
            "idle inter-router link ({how}): A -> B {to_b} B/s, B -> A {to_a} B/s (payload bytes, \
             without TCP/IP headers)"
        );
        neither_lost_the_other(&a.ferry.stderr(), &b.ferry.stderr(), "idle link");
        for (way, rate) in [("A -> B", to_b), ("B -> A", to_a)] {
            assert!(rate < 2048, "{how}: {way} {rate} B/s on an idle link");
            // At least the keep-alive: a frame every 200 ms.
            assert!(rate >= 40, "{how}: {way} only {rate} B/s: no keep-alive?");
        }
    }
}

/// How long the mesh is watched after a forgery.
const AFTER_FORGERY: Duration = Duration::from_secs(10);

/// A hostile router (Qpid Proton, `tests/interop/fake_router.py`) joins
/// the line A - B - C at B with a valid certificate, sends forged records
/// and leaves: records of C just above C's own, with no links, unsigned,
/// signed with its own certificate, and bearing C's genuine signature of
/// another record; one about C at the largest version a record may claim,
/// one beyond any valid version, and one claiming to be B itself. B
/// refuses the first three for their signatures (each said in its log),
/// C stays in reach (a probe failing in the last 5 s at most: under load a
/// probe may miss its 500 ms); the mesh carries no storm of control messages (the C - B link
/// is counted through a proxy) and logs no flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_cost_seconds_not_a_storm() {
    let b_port = free_port();
    let b = mesh_router("B", Some(b_port), &[], "");
    let (proxy, counts) = counting_proxy(SocketAddr::from(([127, 0, 0, 1], b_port))).await;
    let a = mesh_router("A", None, &[(b_port, 1)], "");
    let c = mesh_router("C", None, &[(proxy, 1)], "");

    let mut consumer = c.client().await;
    let rx = consumer.open_receiver("orders", 1000).await.unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let consuming = tokio::spawn(async move {
        while let Ok(d) = consumer.receive(rx).await {
            consumer.accept(&d).unwrap();
            count.fetch_add(1, Ordering::Relaxed);
            if consumer.credit(rx) < 500 {
                consumer.flow(rx, 1000).await.unwrap();
            }
        }
    });
    let mut producer = a.client().await;
    let tx = producer.open_sender(Some("orders")).await.unwrap();
    let body = Message::new(Body::data(b"order".to_vec())).encode();
    // One message A -> C, accepted: the mesh works before the forgery.
    let deliver = async |producer: &mut ferry_proto::client::Client, wait: Duration| {
        let sent = tokio::time::timeout(wait, async {
            producer.wait_credit(tx).await?;
            producer.send(tx, Bytes::clone(&body)).await
        });
        matches!(sent.await, Ok(Ok(Some(DeliveryState::Accepted))))
    };
    assert!(
        deliver(&mut producer, Duration::from_secs(20)).await,
        "no path A -> C before the forgery"
    );

    let warns_before = [&a, &b, &c].map(|r| warnings(&r.ferry.stderr()));
    let pki = router::Pki::mesh();
    let z = pki.router_files("Z");
    let ca = pki.ca_pem.to_string_lossy().into_owned();
    let summary = proton::script(
        "fake_router.py",
        &format!("amqps://127.0.0.1:{b_port}"),
        &[
            &ca,
            &z.cert.to_string_lossy(),
            &z.key.to_string_lossy(),
            "Z",
            "C",
        ],
        &|| format!("B:\n{}", b.ferry.stderr()),
    )
    .await;
    assert_eq!(summary["peer"], "B", "{summary}");
    assert_eq!(
        summary["sent"].as_array().map(Vec::len),
        Some(6),
        "{summary}"
    );
    assert_eq!(
        summary["genuine"][2], true,
        "C's record is signed: {summary}"
    );
    let forged = tokio::time::Instant::now();
    let bytes_before = [0, 1].map(|d| counts[d].load(Ordering::Relaxed));

    // Probe A -> C every 100 ms: the last probe that failed says how long
    // C was out of reach.
    let mut lost_until = Duration::ZERO;
    let mut probes = 0;
    while forged.elapsed() < AFTER_FORGERY {
        let started = forged.elapsed();
        if !deliver(&mut producer, Duration::from_millis(500)).await {
            lost_until = forged.elapsed();
        }
        probes += 1;
        let next = started + Duration::from_millis(100);
        tokio::time::sleep_until(forged + next).await;
    }
    let bytes = [0, 1].map(|d| counts[d].load(Ordering::Relaxed) - bytes_before[d]);
    let warns = [&a, &b, &c].map(|r| warnings(&r.ferry.stderr()));
    eprintln!(
        "after the forgery: C out of reach from A for {lost_until:?} ({probes} probes); \
         C - B link {} B to B, {} B back in {AFTER_FORGERY:?}; warnings A {}, B {}, C {}",
        bytes[0],
        bytes[1],
        warns[0] - warns_before[0],
        warns[1] - warns_before[1],
        warns[2] - warns_before[2],
    );
    let logs = || {
        format!(
            "A:\n{}\nB:\n{}\nC:\n{}",
            a.ferry.stderr(),
            b.ferry.stderr(),
            c.ferry.stderr()
        )
    };
    assert!(
        lost_until < Duration::from_secs(5),
        "C out of reach for {lost_until:?}\n{}",
        logs()
    );
    let b_log = b.ferry.stderr();
    for why in [
        "the record is not signed",
        "the signer's certificate does not name router C",
        "the signature does not match the record",
    ] {
        assert!(
            b_log.contains(&format!(
                "refused a record of router C relayed by neighbour Z: {why}"
            )),
            "B did not refuse a forgery with {why:?}\n{}",
            logs()
        );
    }
    // An idle link costs a few hundred bytes a second; a storm, megabytes.
    for (way, n) in ["C -> B", "B -> C"].iter().zip(bytes) {
        assert!(
            n < 64 * 1024,
            "{way}: {n} bytes in {AFTER_FORGERY:?}: a storm?\n{}",
            logs()
        );
    }
    for (name, (now, before)) in ["A", "B", "C"].iter().zip(warns.iter().zip(warns_before)) {
        assert!(
            now - before <= 20,
            "{name} logged {} warnings after the forgery\n{}",
            now - before,
            logs()
        );
    }
    consuming.abort();
}

/// The warning lines in a router's log.
fn warnings(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" WARN ")).count()
}
