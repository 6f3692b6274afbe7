//! The life of an address across a mesh of real `ferry` processes: how
//! fast a producer's credit follows a consumer two hops away (and goes when
//! it goes), memory with a slow consumer three hops away, a killed router
//! that restarts with the same id and rejoins, and a rejection travelling
//! back over two hops.
//!
//! Timings are printed (`--nocapture`), never asserted: performance is
//! measured by the benches.

#[path = "../support/router.rs"]
mod router;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::client::{Client, ClientOptions, Outcome};
use ferry_proto::codec::{Fields, Symbol, Value};
use ferry_proto::definitions::{DeliveryState, Error, Rejected};
use ferry_proto::engine::LinkId;
use ferry_proto::message::{Body, Message};
use ferry_tests::{WAIT, free_port, within};
use router::{Restartable, Router, line, mesh_router};

/// Time for a mesh to converge, generously (HELLO every second).
const CONVERGE: Duration = Duration::from_secs(20);

/// The bound on a consumer's credit reaching a producer two hops away, or
/// being taken back: far above what it takes, far below "never".
const CREDIT_WAIT: Duration = Duration::from_secs(10);

fn msg(body: &str) -> Bytes {
    Message::new(Body::data(body.as_bytes().to_vec())).encode()
}

/// Proves the routers between `from` and `to` know each other: a consumer
/// on `to` gives a producer on `from` credit. Both links are closed after.
async fn converge(from: &Router, to: &Router, address: &str) {
    let mut consumer = to.client().await;
    let rx = consumer.open_receiver(address, 1).await.unwrap();
    let mut producer = from.client().await;
    let tx = producer.open_sender(Some(address)).await.unwrap();
    within("mesh convergence", CONVERGE, producer.wait_credit(tx))
        .await
        .unwrap();
    consumer.close_link(rx).await.unwrap();
    producer.close_link(tx).await.unwrap();
}

/// Drives `client` for `period` (it has no background task: credit and
/// outcomes arrive only while something awaits it). Returns the outcomes
/// that arrived meanwhile.
async fn pump(client: &mut Client, period: Duration) -> Vec<Outcome> {
    let deadline = tokio::time::Instant::now() + period;
    let mut outcomes = Vec::new();
    while let Ok(o) = tokio::time::timeout_at(deadline, client.next_outcome()).await {
        outcomes.push(o.unwrap());
    }
    outcomes
}

/// Drives `client` until its sender `link` holds no credit, at most
/// `limit`. Returns how long it took (`None`: still credit after `limit`)
/// and the outcomes that arrived meanwhile.
async fn until_no_credit(
    client: &mut Client,
    link: LinkId,
    limit: Duration,
) -> (Option<Duration>, Vec<Outcome>) {
    let start = Instant::now();
    let mut outcomes = Vec::new();
    while client.credit(link) > 0 {
        if start.elapsed() >= limit {
            return (None, outcomes);
        }
        // Short slices, so that the moment the credit goes is seen to the
        // millisecond.
        outcomes.extend(pump(client, Duration::from_millis(1)).await);
    }
    (Some(start.elapsed()), outcomes)
}

/// Credit latency both ways in a line A - B - C: a producer on A holds no
/// credit while no consumer exists, gets credit once a consumer attaches on
/// C, and loses it once that consumer detaches; a message sent in the race
/// with the consumer's detach comes back `released` (or
/// `modified{delivery-failed}`), never `accepted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_credit_follows_a_consumer_two_hops_away() {
    let (a, _b, c) = line();
    converge(&a, &c, "warm-up").await;

    let mut producer = a.client().await;
    let mut consumer = c.client().await;
    let mut attach_to_credit = Vec::new();
    let mut detach_to_zero = Vec::new();
    let (mut raced_released, mut raced_failed) = (0, 0);
    for round in 0..5 {
        let address = format!("latency-{round}");
        let tx = producer.open_sender(Some(&address)).await.unwrap();
        // No consumer anywhere: no credit (the mesh has converged, so this
        // is the steady state, not a transient one).
        let quiet = if round == 0 { 2000 } else { 500 };
        let early =
            tokio::time::timeout(Duration::from_millis(quiet), producer.wait_credit(tx)).await;
        assert!(
            early.is_err() && producer.credit(tx) == 0,
            "round {round}: the producer got credit with no consumer in the mesh"
        );

        // The producer waits on its own task, so the moment its credit
        // arrives is seen at once.
        let waiter = tokio::spawn(async move {
            let credit = tokio::time::timeout(CREDIT_WAIT, producer.wait_credit(tx)).await;
            (Instant::now(), credit, producer)
        });
        let t0 = Instant::now();
        let rx = consumer.open_receiver(&address, 20).await.unwrap();
        let attached = t0.elapsed();
        let (credited_at, credit, p) = waiter.await.unwrap();
        producer = p;
        let credit = credit
            .unwrap_or_else(|_| {
                panic!(
                    "round {round}: no credit on A {CREDIT_WAIT:?} after a consumer attached on C"
                )
            })
            .unwrap();
        let latency = credited_at - t0;
        eprintln!(
            "credit latency round {round}: consumer attach on C took {attached:?}; credit {credit} on A {latency:?} after the attach began"
        );
        attach_to_credit.push(latency);
        assert!(
            (1..=20).contains(&credit),
            "round {round}: the producer holds {credit} credit for 20 granted"
        );

        // The path carries a message.
        producer.send_nowait(tx, msg("before"), false).unwrap();
        producer.flush().await.unwrap();
        let d = within("delivery on C", CREDIT_WAIT, consumer.receive(rx))
            .await
            .unwrap();
        assert_eq!(d.payload, msg("before"));
        consumer.accept(&d).unwrap();
        if consumer.credit(rx) < 10 {
            consumer.flow(rx, 20).await.unwrap();
        } else {
            consumer.flush().await.unwrap();
        }
        let o = within("outcome on A", CREDIT_WAIT, producer.next_outcome())
            .await
            .unwrap();
        assert_eq!(o.state, Some(DeliveryState::Accepted));

        // The consumer detaches (and the router has answered the detach).
        let credit_before = producer.credit(tx);
        assert!(credit_before > 0, "round {round}: credit not replenished");
        consumer.close_link(rx).await.unwrap();
        let t1 = Instant::now();
        // A send racing the credit cut: it may still be made under the old
        // credit, and then it has nowhere to go.
        let raced = producer.send_nowait(tx, msg("raced"), false).unwrap();
        producer.flush().await.unwrap();
        let (gone, mut outcomes) = until_no_credit(&mut producer, tx, CREDIT_WAIT).await;
        let gone = gone.unwrap_or_else(|| {
            panic!(
                "round {round}: the producer on A still holds {} credit {CREDIT_WAIT:?} after the only consumer detached",
                producer.credit(tx)
            )
        });
        let since_detach = t1.elapsed();
        detach_to_zero.push(since_detach);
        eprintln!(
            "credit withdrawal round {round}: credit {credit_before} -> 0 on A {since_detach:?} after the consumer's detach completed on C ({gone:?} after the raced send)"
        );
        // Credit stays at 0: nothing more can be sent (the client refuses
        // to send without credit).
        outcomes.extend(pump(&mut producer, Duration::from_secs(1)).await);
        assert_eq!(
            producer.credit(tx),
            0,
            "round {round}: credit came back with no consumer"
        );
        assert!(producer.send_nowait(tx, msg("late"), false).is_err());
        // The raced message is settled, never `accepted`: `released` when a
        // router found no consumer for it, or `modified{delivery-failed}`
        // when it was in flight on a data link that its sender closed as the
        // address was withdrawn (the router then cannot know its fate).
        if !outcomes.iter().any(|o| o.id == raced) {
            outcomes.push(
                within(
                    "outcome of the raced send",
                    CREDIT_WAIT,
                    producer.next_outcome(),
                )
                .await
                .unwrap(),
            );
        }
        let [outcome] = &outcomes[..] else {
            panic!("round {round}: outcomes after the consumer detached: {outcomes:?}");
        };
        assert_eq!(outcome.id, raced);
        match &outcome.state {
            Some(DeliveryState::Released) => raced_released += 1,
            Some(DeliveryState::Modified(m)) if m.delivery_failed == Some(true) => {
                raced_failed += 1
            }
            other => panic!("round {round}: the raced message was settled {other:?}"),
        }
        producer.close_link(tx).await.unwrap();
    }
    attach_to_credit.sort();
    detach_to_zero.sort();
    eprintln!(
        "credit latency over {} rounds (A - B - C): attach on C -> credit on A min {:?} median {:?} max {:?}; detach on C -> no credit on A min {:?} median {:?} max {:?}",
        attach_to_credit.len(),
        attach_to_credit[0],
        attach_to_credit[attach_to_credit.len() / 2],
        attach_to_credit[attach_to_credit.len() - 1],
        detach_to_zero[0],
        detach_to_zero[detach_to_zero.len() / 2],
        detach_to_zero[detach_to_zero.len() - 1],
    );
    eprintln!(
        "messages sent racing the consumer's detach: {raced_released} released, {raced_failed} modified{{delivery-failed}}"
    );
}

/// Size of the body of each message of the slow-consumer test: several
/// frames each (frames are at most 64 KiB), so they are streamed hop by
/// hop. Large enough that the ~12 s at the consumer's pace carry ~65 MiB
/// through every router: a router that kept even a fraction of what passes
/// through it would show in its RSS (see [`GROWTH_MARGIN`]).
const LARGE: usize = 256 * 1024;

/// Message `i` of the slow-consumer test: a [`LARGE`] body ending in `i`.
fn large(i: u64) -> Bytes {
    let mut body = vec![0x5a; LARGE];
    body[LARGE - 8..].copy_from_slice(&i.to_be_bytes());
    Message::new(Body::data(body)).encode()
}

/// The index [`large`] put in a message.
fn large_index(payload: &Bytes) -> u64 {
    let tail: [u8; 8] = payload[payload.len() - 8..].try_into().unwrap();
    u64::from_be_bytes(tail)
}

/// Resident set size of process `pid`, in bytes (`VmRSS` in
/// `/proc/PID/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

const MIB: u64 = 1024 * 1024;

/// Limits of every router of the slow-consumer test. They bound what a
/// router can hold for this one address and producer, however long the
/// consumer is slow:
///
/// - deliveries: at most the credit it granted on its one incoming link for
///   the address (the producer's on A, the upstream neighbour's data link on
///   B, C and D), at most one window `W` (`link_credit_window` = 16), so
///   16 × 256 KiB = 4 MiB of messages (and in fact less: the credit
///   reflects the consumer's 10);
/// - bytes in flight from one producer connection, until the next hop's
///   connection task has taken them: `max_in_flight_bytes_per_producer` =
///   8 MiB.
///
/// So a router holds at most ~12 MiB of message data (counting both bounds
/// in full, though they overlap).
const SLOW_LIMITS: &str =
    "[limits]\nlink_credit_window = 16\nmax_in_flight_bytes_per_producer = 8388608\n";

/// How far above its RSS before any message a router may go: the ~12 MiB of
/// message data [`SLOW_LIMITS`] allows, plus allocator slack (glibc malloc
/// keeps per-thread arenas, each with its own high-water mark, so RSS rises
/// in steps of a few MiB before it levels off). Measured: peaks 7–20 MiB
/// above the start in 12 s runs, and level at 15–17 MiB above it over a
/// 60 s run that carried ~300 MiB through every router. A router that kept
/// the ~65 MiB that pass through it in this test would be far above.
const RSS_MARGIN: u64 = 32 * MIB;

/// How much the peak RSS of the last third of the run may exceed that of
/// the first third. Between the two, ~40 MiB of messages pass through every
/// router: memory that grows with traffic (a router keeping every message,
/// or half of each) shows here, while the allocator's steps (up to ~8 MiB
/// seen) do not.
const GROWTH_MARGIN: u64 = 16 * MIB;

/// A slow consumer three hops away (A - B - C - D, producer on A, consumer
/// on D taking one 256 KiB message per 50 ms) while the producer sends as
/// fast as its credit allows for 12 s: every router's memory stays within a
/// bound set by the configured limits and does not keep growing, and every
/// message the producer was told was accepted reached the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_three_hops_away_keeps_router_memory_flat() {
    const WARM_UP: Duration = Duration::from_secs(2);
    const SUSTAIN: Duration = Duration::from_secs(12);
    const PACE: Duration = Duration::from_millis(50);
    const CONSUMER_CREDIT: u32 = 10;

    let test = async {
        let (c_port, d_port) = (free_port(), free_port());
        let b_port = free_port();
        let d = mesh_router("D", Some(d_port), &[], SLOW_LIMITS);
        let c = mesh_router("C", Some(c_port), &[(d_port, 1)], SLOW_LIMITS);
        let b = mesh_router("B", Some(b_port), &[(c_port, 1)], SLOW_LIMITS);
        let a = mesh_router("A", None, &[(b_port, 1)], SLOW_LIMITS);
        converge(&a, &d, "warm-up").await;
        let routers = [("A", &a), ("B", &b), ("C", &c), ("D", &d)];
        let pids: Vec<u32> = routers.iter().map(|(_, r)| r.ferry.pid()).collect();

        // RSS of every router, every 200 ms, from the first message on.
        let stop_sampling = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop_sampling.clone();
            let pids = pids.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut samples: Vec<(Duration, Vec<u64>)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    samples.push((start.elapsed(), pids.iter().map(|&p| rss(p)).collect()));
                    std::thread::sleep(Duration::from_millis(200));
                }
                samples
            })
        };

        // The slow consumer on D: one message per PACE, each accepted.
        let stop_consuming = Arc::new(AtomicBool::new(false));
        let mut consumer = d.client().await;
        let rx = consumer
            .open_receiver("slow", CONSUMER_CREDIT)
            .await
            .unwrap();
        let consuming = {
            let stop = stop_consuming.clone();
            tokio::spawn(async move {
                let mut received = BTreeSet::new();
                let mut duplicates = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(d) =
                        tokio::time::timeout(Duration::from_millis(200), consumer.receive(rx))
                            .await
                    else {
                        continue;
                    };
                    let d = d.unwrap();
                    let i = large_index(&d.payload);
                    assert_eq!(d.payload, large(i), "message {i} arrived altered");
                    if !received.insert(i) {
                        duplicates += 1;
                    }
                    tokio::time::sleep(PACE).await;
                    consumer.accept(&d).unwrap();
                    if consumer.credit(rx) < CONSUMER_CREDIT / 2 {
                        consumer.flow(rx, CONSUMER_CREDIT).await.unwrap();
                    } else {
                        consumer.flush().await.unwrap();
                    }
                }
                (received, duplicates, consumer)
            })
        };

        // The producer on A: as fast as credit allows, unsettled.
        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("slow")).await.unwrap();
        within("credit on A", CONVERGE, producer.wait_credit(tx))
            .await
            .unwrap();
        let started = Instant::now();
        let mut outstanding: HashMap<u32, u64> = HashMap::new();
        let mut accepted = BTreeSet::new();
        let mut other = Vec::new();
        let mut sent = 0u64;
        let mut max_outstanding = 0usize;
        let mut max_credit = 0u32;
        let mut record = |o: Outcome, outstanding: &mut HashMap<u32, u64>| {
            let i = outstanding
                .remove(&o.id.0)
                .expect("an outcome for a delivery we sent, once");
            match o.state {
                Some(DeliveryState::Accepted) => {
                    accepted.insert(i);
                }
                state => other.push((i, state)),
            }
        };
        loop {
            let sending = started.elapsed() < WARM_UP + SUSTAIN;
            if sending {
                max_credit = max_credit.max(producer.credit(tx));
                while producer.credit(tx) > 0 {
                    let id = producer.send_nowait(tx, large(sent), false).unwrap();
                    outstanding.insert(id.0, sent);
                    sent += 1;
                }
                max_outstanding = max_outstanding.max(outstanding.len());
                producer.flush().await.unwrap();
            } else if outstanding.is_empty() {
                break;
            }
            if outstanding.is_empty() {
                // Waiting for credit, which the consumer's pace gives back.
                let _ = tokio::time::timeout(Duration::from_millis(500), producer.wait_credit(tx))
                    .await;
                continue;
            }
            let o = within(
                "an outcome on A (a slow consumer still settles)",
                Duration::from_secs(10),
                producer.next_outcome(),
            )
            .await
            .unwrap();
            record(o, &mut outstanding);
            for o in producer.take_outcomes().collect::<Vec<_>>() {
                record(o, &mut outstanding);
            }
        }
        let elapsed = started.elapsed();
        stop_sampling.store(true, Ordering::Relaxed);
        stop_consuming.store(true, Ordering::Relaxed);
        let samples = sampler.join().unwrap();
        let (received, duplicates, _consumer) =
            within("the consumer stops", WAIT, consuming).await.unwrap();

        eprintln!(
            "slow consumer 3 hops away: {sent} × {} KiB sent in {elapsed:?}, {} accepted, {} other outcomes, {} received ({duplicates} duplicates); producer credit ≤ {max_credit}, outstanding ≤ {max_outstanding}",
            LARGE / 1024,
            accepted.len(),
            other.len(),
            received.len()
        );
        // Nothing the producer was told was accepted is missing.
        let lost: Vec<_> = accepted.difference(&received).collect();
        assert!(lost.is_empty(), "accepted but never received: {lost:?}");
        assert!(
            other.is_empty(),
            "outcomes other than accepted with a live consumer: {other:?}"
        );
        assert_eq!(duplicates, 0, "the consumer got messages twice");
        assert!(
            accepted.len() >= 100,
            "too little traffic to say anything about memory: {} messages",
            accepted.len()
        );

        // Memory: the samples after warm-up, in thirds.
        let steady: Vec<&Vec<u64>> = samples
            .iter()
            .filter(|(t, _)| *t >= WARM_UP)
            .map(|(_, v)| v)
            .collect();
        assert!(steady.len() >= 30, "too few RSS samples: {}", steady.len());
        let third = steady.len() / 3;
        for (r, (name, _)) in routers.iter().enumerate() {
            let series: Vec<u64> = steady.iter().map(|v| v[r]).collect();
            let baseline = series[0];
            let peak = *series.iter().max().unwrap();
            let first = *series[..third].iter().max().unwrap();
            let last = *series[series.len() - third..].iter().max().unwrap();
            let before = samples[0].1[r];
            eprintln!(
                "router {name}: RSS {:.1} MiB before traffic, {:.1} MiB after warm-up, peak {:.1} MiB; peak of first third {:.1} MiB, of last third {:.1} MiB",
                before as f64 / MIB as f64,
                baseline as f64 / MIB as f64,
                peak as f64 / MIB as f64,
                first as f64 / MIB as f64,
                last as f64 / MIB as f64,
            );
            // Measured from before any message, so the warm-up's
            // allocations count against the margin too.
            assert!(
                peak <= before + RSS_MARGIN,
                "router {name}: RSS reached {peak} bytes, more than {RSS_MARGIN} above {before} before traffic"
            );
            assert!(
                last <= first + GROWTH_MARGIN,
                "router {name}: RSS keeps growing: peak {first} bytes in the first third, {last} in the last"
            );
        }
    };
    within("slow-consumer test", Duration::from_secs(60), test).await;
}

/// Twenty messages from `producer` to `consumer`, one at a time, each
/// accepted; the consumer tops its credit up to 20.
async fn exchange(producer: &mut Client, tx: LinkId, consumer: &mut Client, rx: LinkId, tag: &str) {
    for i in 0..20 {
        let body = msg(&format!("{tag} {i}"));
        within("credit on A", CREDIT_WAIT, producer.wait_credit(tx))
            .await
            .unwrap();
        producer.send_nowait(tx, body.clone(), false).unwrap();
        producer.flush().await.unwrap();
        let d = within("delivery on C", CREDIT_WAIT, consumer.receive(rx))
            .await
            .unwrap();
        assert_eq!(d.payload, body, "{tag}: message {i}");
        consumer.accept(&d).unwrap();
        if consumer.credit(rx) < 10 {
            consumer.flow(rx, 20).await.unwrap();
        } else {
            consumer.flush().await.unwrap();
        }
        let o = within("outcome on A", CREDIT_WAIT, producer.next_outcome())
            .await
            .unwrap();
        assert_eq!(o.state, Some(DeliveryState::Accepted), "{tag}: message {i}");
    }
}

async fn client_at(addr: SocketAddr) -> Client {
    Client::connect(addr, ClientOptions::default())
        .await
        .expect("connect to ferry")
}

/// Line A - B - C; C is SIGKILLed (its process only) and started again
/// with the same id, config file and ports. Once C is dead the producer on
/// A holds no credit; once the new C has a consumer, the producer gets
/// credit again and messages arrive and are accepted.
///
/// `c_listens`: B dials C's inter-router listener (so B's connector must
/// reconnect) instead of C dialing B.
async fn restarted_router_rejoins(c_listens: bool) {
    let test = async {
        let c_client_port = free_port();
        let c_inter_port = free_port();
        let b_port = free_port();
        let pki = router::Pki::mesh();
        let mut c_toml = format!(
            "[router]\nid = \"C\"\nmode = \"interior\"\n\n[[listener]]\nhost = \"127.0.0.1\"\nport = {c_client_port}\nrole = \"normal\"\n\n"
        );
        c_toml += &pki.profile("mesh", &pki.router_files("C"));
        let transport = router::MeshTransport::from_env();
        if c_listens {
            for t in transport.listeners() {
                c_toml += &format!(
                    "[[listener]]\nhost = \"127.0.0.1\"\nport = {c_inter_port}\nrole = \"inter-router\"\ntls = \"mesh\"\nclient_cert = \"required\"\ntransport = \"{t}\"\n\n"
                );
            }
        } else {
            c_toml += &format!(
                "[[connector]]\nhost = \"127.0.0.1\"\nport = {b_port}\nrole = \"inter-router\"\ncost = 1\ntls = \"mesh\"\ntransport = \"{}\"\n\n",
                transport.connector()
            );
        }
        let c_conf = Restartable::new(c_toml);
        let c_addr: SocketAddr = ([127, 0, 0, 1], c_client_port).into();
        // Whoever is dialed starts first.
        let mut c = c_listens.then(|| c_conf.start());
        let b_connects: &[(u16, u32)] = if c_listens { &[(c_inter_port, 1)] } else { &[] };
        let _b = mesh_router("B", Some(b_port), b_connects, "");
        if c.is_none() {
            c = Some(c_conf.start());
        }
        let a = mesh_router("A", None, &[(b_port, 1)], "");

        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("rejoin")).await.unwrap();
        // Before: the line works.
        let mut consumer = client_at(c_addr).await;
        let rx = consumer.open_receiver("rejoin", 20).await.unwrap();
        within("credit on A", CONVERGE, producer.wait_credit(tx))
            .await
            .unwrap();
        exchange(&mut producer, tx, &mut consumer, rx, "before").await;

        // The producer holds credit (the consumer keeps granting some)…
        let held = within("credit on A", CREDIT_WAIT, producer.wait_credit(tx))
            .await
            .unwrap();
        // …until C is SIGKILLed (the child we started, by its pid; Ferry's
        // drop).
        let old_pid = c.as_ref().unwrap().pid();
        let killed = Instant::now();
        drop(c.take());
        drop(consumer);
        let (gone, outcomes) = until_no_credit(&mut producer, tx, CREDIT_WAIT).await;
        assert!(outcomes.is_empty(), "outcomes with nothing in flight");
        assert!(
            gone.is_some(),
            "the producer on A still holds {} credit {CREDIT_WAIT:?} after C (the only consumer's router) was killed",
            producer.credit(tx)
        );
        let gone = killed.elapsed();

        // Start C again: same file, same id, same ports.
        let restarted = Instant::now();
        c = Some(c_conf.start());
        assert_ne!(c.as_ref().unwrap().pid(), old_pid);
        let mut consumer = client_at(c_addr).await;
        let rx = consumer.open_receiver("rejoin", 20).await.unwrap();
        let credit = within(
            "credit on A after C restarted",
            CONVERGE,
            producer.wait_credit(tx),
        )
        .await
        .unwrap();
        let rejoined = restarted.elapsed();
        assert!(credit <= 20, "the producer holds {credit} for 20 granted");
        exchange(&mut producer, tx, &mut consumer, rx, "after").await;
        eprintln!(
            "restart (C {}): credit on A {held} -> 0 {gone:?} after SIGKILL of C; C restarted {:?} after the kill; credit back on A {rejoined:?} after the restart began",
            if c_listens {
                "listens, B dials"
            } else {
                "dials B"
            },
            restarted - killed,
        );
    };
    within("restart test", Duration::from_secs(90), test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_router_that_dials_rejoins_and_routes() {
    restarted_router_rejoins(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_router_that_is_dialed_rejoins_and_routes() {
    restarted_router_rejoins(true).await;
}

/// Line A - B - C: a consumer on C rejects a message with an error of its
/// own; the producer on A gets `rejected` with that very error (condition,
/// description and info), carried back over two hops.
#[tokio::test]
async fn a_rejection_travels_back_over_two_hops_with_its_error() {
    let test = async {
        let (a, _b, c) = line();
        let mut consumer = c.client().await;
        let rx = consumer.open_receiver("verdicts", 10).await.unwrap();
        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("verdicts")).await.unwrap();
        within("credit on A", CONVERGE, producer.wait_credit(tx))
            .await
            .unwrap();
        let error = Error {
            condition: Symbol::from_static("app:invalid-order"),
            description: Some("order 7 has no lines".into()),
            info: Some(Fields(vec![(
                Symbol::from_static("order"),
                Value::String("o-7".into()),
            )])),
        };
        let verdicts = [
            DeliveryState::Accepted,
            DeliveryState::Rejected(Rejected {
                error: Some(error.clone()),
            }),
            DeliveryState::Rejected(Rejected { error: None }),
            DeliveryState::Accepted,
        ];
        for (i, verdict) in verdicts.into_iter().enumerate() {
            within("credit on A", CREDIT_WAIT, producer.wait_credit(tx))
                .await
                .unwrap();
            let body = msg(&format!("order {i}"));
            let id = producer.send_nowait(tx, body.clone(), false).unwrap();
            producer.flush().await.unwrap();
            let d = within("delivery on C", CREDIT_WAIT, consumer.receive(rx))
                .await
                .unwrap();
            assert_eq!(d.payload, body);
            consumer.settle(&d, verdict.clone()).unwrap();
            consumer.flush().await.unwrap();
            let o = within("outcome on A", CREDIT_WAIT, producer.next_outcome())
                .await
                .unwrap();
            assert_eq!(o.id, id);
            assert_eq!(o.state, Some(verdict), "outcome of message {i}");
        }
    };
    within("rejection test", Duration::from_secs(60), test).await;
}
