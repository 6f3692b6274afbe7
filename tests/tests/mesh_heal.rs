//! Silent neighbours and healed links, with real `ferry` processes:
//!
//! - a router whose process is stopped (SIGSTOP: its connections stay
//!   open, its kernel still acknowledges, nothing answers) is dropped by
//!   its neighbours and routed around within a second;
//! - the middle router of a line restarted five times under steady
//!   traffic: every message accepted exactly once, and the path back
//!   within about a second of each restart.
//!
//! The figures are printed (`--nocapture`); the bounds asserted are
//! generous (twice the target), as the machine running the tests may be
//! loaded. benches/RESULTS.md has the figures and the command.

#[path = "../support/router.rs"]
mod router;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::definitions::{DeliveryState, SequenceNo};
use ferry_proto::message::{Body, Message};
use ferry_tests::{Ferry, free_port, within};
use router::{Restartable, Router, mesh_router, mesh_toml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Time for a mesh to converge, generously.
const CONVERGE: Duration = Duration::from_secs(20);

/// The target for noticing a silent neighbour, rerouting, and coming back
/// after a restart; tests assert twice it.
const TARGET: Duration = Duration::from_secs(1);

/// Message `i`: its index as the body.
fn msg(i: u64) -> Bytes {
    Message::new(Body::data(i.to_be_bytes().to_vec())).encode()
}

/// The index [`msg`] put in a message.
fn index(payload: &Bytes) -> u64 {
    let tail: [u8; 8] = payload[payload.len() - 8..].try_into().unwrap();
    u64::from_be_bytes(tail)
}

/// `kill -SIG PID`, for a process this test started.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Sends SIGCONT to a process this test stopped, when dropped (so that a
/// failing test leaves no stopped process behind; the `Ferry` handle then
/// kills it).
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}

/// How many lines of `log` contain `what`.
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Waits until `router`'s log has more than `before` lines with `what`,
/// at most `limit`; returns when it saw it.
async fn log_line(router: &Ferry, what: &str, before: usize, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if count(&router.stderr(), what) > before {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A consumer on `router` for `address` that accepts everything and
/// counts each message index it receives.
async fn consume(router: &Router, address: &str) -> Arc<Mutex<HashMap<u64, u32>>> {
    let mut consumer = router.client().await;
    let rx = consumer.open_receiver(address, 50).await.unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok(d) = consumer.receive(rx).await {
            *counts.lock().unwrap().entry(index(&d.payload)).or_insert(0) += 1;
            consumer.accept(&d).unwrap();
            if consumer.credit(rx) < 25 {
                consumer.flow(rx, 50).await.unwrap();
            } else {
                consumer.flush().await.unwrap();
            }
        }
    });
    seen
}

/// A triangle: A dials B (cost 1) and C (cost 5), B dials C (cost 1), so
/// A reaches C through B. B's process is stopped: A (and C) must notice
/// that nothing comes from B any more, drop it, and A must send on the
/// direct link. A producer on A sends one message at a time to a consumer
/// on C, resending what comes back `modified` or `released`; the time
/// from the stop to the first message accepted after it is the time to
/// reroute. B is then let run again (SIGCONT) and must rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_neighbour_is_dropped_and_routed_around_within_a_second() {
    let test = async {
        let (b_port, c_port) = (free_port(), free_port());
        let c = mesh_router("C", Some(c_port), &[], "");
        let b = mesh_router("B", Some(b_port), &[(c_port, 1)], "");
        let a = mesh_router("A", None, &[(b_port, 1), (c_port, 5)], "");
        let seen = consume(&c, "silent").await;

        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("silent")).await.unwrap();
        within("credit on A", CONVERGE, producer.wait_credit(tx))
            .await
            .unwrap();
        // Credit can come while A still routes to C directly (B's links
        // come up a moment later), and a message sent then may be released
        // when the route moves to B: wait until it has.
        let through_b = "routing table changed: B via B (cost 1), C via B (cost 2)";
        let routed = a.ferry.logged(through_b, CONVERGE).await;
        assert!(
            routed.is_some(),
            "A not routing through B after {CONVERGE:?}"
        );
        // Converged, through B: 20 messages one at a time.
        let mut next = 0u64;
        for _ in 0..20 {
            let state = within("an outcome", CONVERGE, producer.send(tx, msg(next)))
                .await
                .unwrap();
            assert_eq!(state, Some(DeliveryState::Accepted));
            next += 1;
        }
        let a_log = a.ferry.stderr();
        assert!(
            a_log.contains("routing table changed: B via B (cost 1), C via B (cost 2)"),
            "A does not route through B:\n{a_log}"
        );

        // Steady traffic, one message at a time, on its own task.
        let stop = Arc::new(AtomicBool::new(false));
        // Each message accepted: when it was (last) sent, when accepted.
        let accepted_at: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
        let retried = Arc::new(AtomicU64::new(0));
        let producing = {
            let (stop, accepted_at, retried) = (stop.clone(), accepted_at.clone(), retried.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let sent_at = Instant::now();
                    let state = within("an outcome", CONVERGE, producer.send(tx, msg(next)))
                        .await
                        .unwrap();
                    match state {
                        Some(DeliveryState::Accepted) => {
                            accepted_at.lock().unwrap().push((sent_at, Instant::now()));
                            next += 1;
                        }
                        Some(DeliveryState::Released | DeliveryState::Modified(_)) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("message {next}: {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                next
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;

        let lost = "neighbour B disconnected: nothing heard from it";
        let (a_before, c_before) = (
            count(&a.ferry.stderr(), lost),
            count(&c.ferry.stderr(), lost),
        );
        signal(b.ferry.pid(), "STOP");
        let stopped = Stopped(b.ferry.pid());
        // The time `kill` returned (it is spawned as a process of its
        // own): the figures count from there, so they are short of the
        // real ones by at most the time `kill` took to exit.
        let stopped_at = Instant::now();
        let (a_noticed, c_noticed) = tokio::join!(
            log_line(&a.ferry, lost, a_before, 10 * TARGET),
            log_line(&c.ferry, lost, c_before, 10 * TARGET)
        );
        // Traffic goes on through A - C: the first message sent after the
        // stop (the one in flight then comes back `modified` and is sent
        // again) is accepted.
        let rerouted = loop {
            let first = accepted_at
                .lock()
                .unwrap()
                .iter()
                .find(|(sent, _)| *sent > stopped_at)
                .map(|(_, t)| *t);
            if let Some(t) = first {
                break t - stopped_at;
            }
            assert!(
                stopped_at.elapsed() < 10 * TARGET,
                "nothing accepted for {:?} after B stopped:\n{}",
                stopped_at.elapsed(),
                a.ferry.stderr()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a_noticed = a_noticed.map(|t| t - stopped_at);
        let c_noticed = c_noticed.map(|t| t - stopped_at);

        // B runs again: it rejoins.
        let connected = "neighbour B connected";
        let before = count(&a.ferry.stderr(), connected);
        let resumed_at = Instant::now();
        drop(stopped);
        let back = log_line(&a.ferry, connected, before, 20 * TARGET)
            .await
            .map(|t| t - resumed_at);
        stop.store(true, Ordering::Relaxed);
        let sent = within("the producer's end", CONVERGE, producing)
            .await
            .unwrap();
        let retried = retried.load(Ordering::Relaxed);
        eprintln!(
            "silent neighbour (SIGSTOP of B): A dropped B after {a_noticed:?}, C after \
             {c_noticed:?}; first message accepted through A - C {rerouted:?} after the stop \
             ({retried} resent); B back as A's neighbour {back:?} after SIGCONT"
        );
        let a_log = a.ferry.stderr();
        let a_noticed = a_noticed.unwrap_or_else(|| panic!("A never dropped B:\n{a_log}"));
        assert!(a_noticed < 2 * TARGET, "A dropped B after {a_noticed:?}");
        let c_noticed = c_noticed.unwrap_or_else(|| panic!("C never dropped B"));
        assert!(c_noticed < 2 * TARGET, "C dropped B after {c_noticed:?}");
        assert!(rerouted < 2 * TARGET, "rerouted after {rerouted:?}");
        assert!(back.is_some(), "B never came back:\n{a_log}");
        // Every message accepted once by the producer reached the consumer.
        let seen = seen.lock().unwrap();
        for i in 0..sent {
            assert!(
                seen.contains_key(&i),
                "message {i} accepted, never received"
            );
        }
    };
    within("silent neighbour test", Duration::from_secs(120), test).await;
}

/// What the producer of the rolling-restart test saw.
#[derive(Default)]
struct Produced {
    /// When each message was accepted, by index.
    accepted: HashMap<u64, Instant>,
    /// Outcomes `modified` (fate unknown: resent) and `released`.
    modified: u64,
    released: u64,
    /// Messages accepted twice (must stay 0: each is resent only after a
    /// non-`accepted` outcome).
    twice: u64,
}

/// Line A - B - C (A and C dial B); a producer on A sends to a consumer
/// on C at a steady pace, up to 20 unsettled, resending what comes back
/// `modified` or `released`. B is restarted five times (SIGTERM, then
/// SIGKILL, in turn), down for 0.3 to 3 s, each time on the same ports. Every message must be
/// accepted exactly once and reach the consumer; a message reaches it
/// twice only after a `modified` resend. After each restart the path must
/// be back (a message accepted) soon after B listens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_router_restarted_five_times_under_load_loses_nothing() {
    let test = async {
        let b_port = free_port();
        let b_conf = Restartable::new(mesh_toml("B", Some(b_port), &[], true));
        let mut b = Some(b_conf.start());
        let a = mesh_router("A", None, &[(b_port, 1)], "");
        let c = mesh_router("C", None, &[(b_port, 1)], "");
        let seen = consume(&c, "rolling").await;

        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("rolling")).await.unwrap();
        within("credit on A", CONVERGE, producer.wait_credit(tx))
            .await
            .unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let produced: Arc<Mutex<Produced>> = Arc::default();
        let producing = {
            let (stop, produced) = (stop.clone(), produced.clone());
            tokio::spawn(async move {
                let mut next = 0u64;
                let mut resend: Vec<u64> = Vec::new();
                let mut unsettled: HashMap<SequenceNo, u64> = HashMap::new();
                let mut last_send = Instant::now();
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    if stopping && resend.is_empty() && unsettled.is_empty() {
                        return next;
                    }
                    // About 200 messages a second, at most 20 unsettled.
                    while unsettled.len() < 20
                        && producer.credit(tx) > 0
                        && last_send.elapsed() >= Duration::from_millis(5)
                        && (!resend.is_empty() || !stopping)
                    {
                        let i = resend.pop().unwrap_or_else(|| {
                            next += 1;
                            next - 1
                        });
                        let id = producer.send_nowait(tx, msg(i), false).unwrap();
                        unsettled.insert(id, i);
                        last_send = Instant::now();
                    }
                    producer.flush().await.unwrap();
                    let Ok(o) =
                        tokio::time::timeout(Duration::from_millis(5), producer.next_outcome())
                            .await
                    else {
                        continue;
                    };
                    let o = o.unwrap();
                    let i = unsettled
                        .remove(&o.id)
                        .expect("an outcome for a delivery sent");
                    let mut p = produced.lock().unwrap();
                    match o.state {
                        Some(DeliveryState::Accepted) => {
                            if p.accepted.insert(i, Instant::now()).is_some() {
                                p.twice += 1;
                            }
                        }
                        Some(DeliveryState::Modified(_)) => {
                            p.modified += 1;
                            resend.push(i);
                        }
                        Some(DeliveryState::Released) => {
                            p.released += 1;
                            resend.push(i);
                        }
                        other => panic!("message {i}: {other:?}"),
                    }
                }
            })
        };
        let last_accepted =
            |produced: &Mutex<Produced>| produced.lock().unwrap().accepted.values().max().copied();
        tokio::time::sleep(Duration::from_secs(1)).await;

        let mut figures = Vec::new();
        for round in 0..5 {
            let old = b.take().unwrap();
            let down_at = Instant::now();
            let how = if round % 2 == 0 { "SIGTERM" } else { "SIGKILL" };
            if round % 2 == 0 {
                old.terminate();
                drop(old.finish(Duration::from_secs(10)));
            } else {
                drop(old); // SIGKILL, this process only
            }
            // Down for a while, as a restarting process is: long enough,
            // in some rounds, for the connectors' back-off to reach its
            // cap.
            let down = [300, 2000, 500, 3000, 1000][round];
            tokio::time::sleep(Duration::from_millis(down)).await;
            b = Some(b_conf.start());
            let listening_at = Instant::now();
            let back = loop {
                if let Some(t) = last_accepted(&produced)
                    && t > listening_at
                {
                    break t - listening_at;
                }
                assert!(
                    listening_at.elapsed() < Duration::from_secs(20),
                    "round {round}: nothing accepted 20 s after B restarted\nA:\n{}\nC:\n{}",
                    a.ferry.stderr(),
                    c.ferry.stderr()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            figures.push((how, listening_at - down_at, back));
            // Steady traffic for a while before the next restart.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }

        stop.store(true, Ordering::Relaxed);
        let sent = within("every outcome", Duration::from_secs(30), producing)
            .await
            .unwrap();
        // The consumer's last accepts are on their way to the producer
        // already; the consumer itself has seen them.
        let p = produced.lock().unwrap();
        let seen = seen.lock().unwrap();
        let missing: Vec<u64> = (0..sent).filter(|i| !seen.contains_key(i)).collect();
        let duplicates: u32 = seen.values().map(|n| n - 1).sum();
        for (round, (how, down, back)) in figures.iter().enumerate() {
            eprintln!(
                "rolling restart {round} ({how}): B down for {down:?}; first message accepted \
                 {back:?} after B listened again"
            );
        }
        eprintln!(
            "rolling restart: {sent} messages, each accepted once; {} modified and {} released \
             (resent); {duplicates} reached the consumer twice",
            p.modified, p.released
        );
        assert_eq!(p.twice, 0, "messages accepted twice");
        assert_eq!(p.accepted.len() as u64, sent, "messages never accepted");
        assert!(missing.is_empty(), "accepted, never received: {missing:?}");
        assert!(
            u64::from(duplicates) <= p.modified,
            "{duplicates} messages reached the consumer twice, only {} were resent after \
             `modified`",
            p.modified
        );
        for (round, (_, _, back)) in figures.iter().enumerate() {
            assert!(
                *back < 2 * TARGET,
                "round {round}: the path was back {back:?} after B listened again"
            );
        }
    };
    within("rolling restart test", Duration::from_secs(180), test).await;
}

/// A TCP proxy to `to` whose connections can be made silent at once
/// ([`Blackhole::cut`]): from then on it carries nothing either way but
/// keeps the sockets open (no FIN, no RST), as a path does whose far end
/// vanished (a container gone with its network namespace, a cable cut).
/// Connections made after a cut are carried as usual.
struct Blackhole {
    port: u16,
    generation: Arc<AtomicU64>,
}

impl Blackhole {
    async fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = Arc::new(AtomicU64::new(0));
        let current = generation.clone();
        tokio::spawn(async move {
            while let Ok((from, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let born = current.load(Ordering::Relaxed);
                let (from_r, from_w) = from.into_split();
                let (up_r, up_w) = upstream.into_split();
                tokio::spawn(carry_until_cut(from_r, up_w, current.clone(), born));
                tokio::spawn(carry_until_cut(up_r, from_w, current.clone(), born));
            }
        });
        Self { port, generation }
    }

    /// Makes every connection carried so far silent.
    fn cut(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

/// Copies `r` to `w` until the proxy's generation moves past `born`; then
/// holds both open, carrying nothing, for a minute.
async fn carry_until_cut(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(10), r.read(&mut buf)).await;
        if generation.load(Ordering::Relaxed) != born {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let n = match read {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Line A - B - C, C dialing B through a proxy. The proxy makes C's
/// connection silent (nothing carried, nothing closed), as when B's
/// container vanishes with its network, or a cable is cut: B and C must
/// both drop the connection, and C, its connector no longer waiting on a
/// dead connection, must dial again (through the proxy, which carries new
/// connections) and the path come back. Before the silence was noticed
/// on the connection itself, C's connector waited on the dead connection
/// for as long as the kernel kept it, which on a silent path with nothing
/// to send is forever: C never reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gone_silent_is_dropped_and_dialed_again() {
    let test = async {
        let b_port = free_port();
        let b = mesh_router("B", Some(b_port), &[], "");
        let proxy = Blackhole::start(b_port).await;
        let a = mesh_router("A", None, &[(b_port, 1)], "");
        let c = mesh_router("C", None, &[(proxy.port, 1)], "");
        let seen = consume(&c, "cut").await;
        let mut producer = a.client().await;
        let tx = producer.open_sender(Some("cut")).await.unwrap();
        within("credit on A", CONVERGE, producer.wait_credit(tx))
            .await
            .unwrap();
        for i in 0..10 {
            let state = within("an outcome", CONVERGE, producer.send(tx, msg(i)))
                .await
                .unwrap();
            assert_eq!(state, Some(DeliveryState::Accepted));
        }

        let lost = "disconnected: nothing heard from it";
        let connected = "neighbour B connected";
        let (b_before, c_before) = (
            count(&b.ferry.stderr(), lost),
            count(&c.ferry.stderr(), lost),
        );
        let c_connected = count(&c.ferry.stderr(), connected);
        let cut_at = Instant::now();
        proxy.cut();
        let (b_noticed, c_noticed, c_back) = tokio::join!(
            log_line(&b.ferry, lost, b_before, 10 * TARGET),
            log_line(&c.ferry, lost, c_before, 10 * TARGET),
            log_line(&c.ferry, connected, c_connected, 20 * TARGET),
        );
        // The path is back: a message from A reaches C (sent again while
        // it comes back `released`: the routers may be converging still).
        let mut tries = 0;
        let state = loop {
            tries += 1;
            let state = within(
                "an outcome after the cut",
                CONVERGE,
                producer.send(tx, msg(10)),
            )
            .await
            .unwrap();
            if tries == 20
                || !matches!(
                    state,
                    Some(DeliveryState::Released | DeliveryState::Modified(_))
                )
            {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let path_back = cut_at.elapsed();
        let [b_noticed, c_noticed, c_back] =
            [b_noticed, c_noticed, c_back].map(|t| t.map(|t| t - cut_at));
        eprintln!(
            "silent connection (proxy stops carrying B - C): B dropped C after {b_noticed:?}, \
             C dropped B after {c_noticed:?}; C connected to B again {c_back:?} after the cut \
             (the drop plus the redial); a message from A accepted at C {path_back:?} after it \
             ({tries} tries)"
        );
        let c_log = c.ferry.stderr();
        assert!(
            b_noticed.is_some_and(|t| t < 2 * TARGET),
            "B dropped C after {b_noticed:?}"
        );
        assert!(
            c_noticed.is_some_and(|t| t < 2 * TARGET),
            "C dropped B after {c_noticed:?}:\n{c_log}"
        );
        // Noticing (under a second) and redialing (at once: the connection
        // had lasted).
        assert!(
            c_back.is_some_and(|t| t < 3 * TARGET),
            "C connected to B again after {c_back:?}:\n{c_log}"
        );
        assert_eq!(state, Some(DeliveryState::Accepted));
        assert!(seen.lock().unwrap().contains_key(&10));
    };
    within("silent connection test", Duration::from_secs(120), test).await;
}
