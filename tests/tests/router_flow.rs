//! The router on one node, driven by Ferry's own client: credit that
//! follows consumers, settlement that follows consumers, large messages,
//! many connections.

#[path = "../support/router.rs"]
mod router;

use std::time::Duration;

use bytes::Bytes;
use ferry_proto::client::Client;
use ferry_proto::definitions::{DeliveryState, Modified};
use ferry_proto::message::{Body, Message};
use router::Router;

const LIMIT: Duration = Duration::from_secs(30);

fn msg(body: &[u8]) -> Bytes {
    Message::new(Body::data(body.to_vec())).encode()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

#[tokio::test]
async fn a_sender_has_no_credit_until_a_consumer_attaches() {
    let r = Router::start("");
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("lonely")).await.unwrap();
    // With no consumer, waiting for credit must time out.
    let early = tokio::time::timeout(Duration::from_millis(500), producer.wait_credit(tx)).await;
    assert!(early.is_err(), "credit without a consumer: {early:?}");
    assert_eq!(producer.credit(tx), 0);

    let mut consumer = r.client().await;
    let _rx = consumer.open_receiver("lonely", 7).await.unwrap();
    let credit = tokio::time::timeout(Duration::from_secs(1), producer.wait_credit(tx))
        .await
        .expect("credit within a second of the consumer attaching")
        .unwrap();
    assert_eq!(credit, 7, "the producer's credit reflects the consumer's");
}

#[tokio::test]
async fn producer_credit_never_exceeds_the_consumers() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let _rx = consumer.open_receiver("budget", 5).await.unwrap();
    let mut a = r.client().await;
    let mut b = r.client().await;
    let ta = a.open_sender(Some("budget")).await.unwrap();
    let tb = b.open_sender(Some("budget")).await.unwrap();
    within("credit a", a.wait_credit(ta)).await.unwrap();
    // The router shares the 5 between them; let both hear their final
    // credit (reading only: nothing is pending to write).
    for _ in 0..2 {
        let _ = tokio::time::timeout(Duration::from_millis(300), a.next_outcome()).await;
        let _ = tokio::time::timeout(Duration::from_millis(300), b.next_outcome()).await;
    }
    let (ca, cb) = (a.credit(ta), b.credit(tb));
    assert!(cb > 0, "the second producer got no share of the credit");
    assert!(
        ca + cb <= 5,
        "producers hold {ca} + {cb} credit for 5 of the consumer's"
    );
}

#[tokio::test]
async fn a_thousand_messages_all_arrive_and_are_accepted() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("bulk", 100).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("bulk")).await.unwrap();
    let n = 1000;
    let send = tokio::spawn(async move {
        ferry_tests::send_all_accepted(&mut producer, tx, n, |i| msg(format!("m{i}").as_bytes()))
            .await
    });
    for i in 0..n {
        let d = within("receive", consumer.receive(rx)).await.unwrap();
        assert_eq!(d.payload, msg(format!("m{i}").as_bytes()), "in order");
        consumer.accept(&d).unwrap();
        if i % 50 == 49 {
            consumer.flow(rx, 100).await.unwrap();
        }
    }
    consumer.flush().await.unwrap();
    assert_eq!(within("outcomes", send).await.unwrap(), n);
}

#[tokio::test]
async fn a_20_mib_message_arrives_intact() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("big", 1).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("big")).await.unwrap();
    let body: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let payload = msg(&body);
    let expected = payload.clone();
    let send = tokio::spawn(async move { producer.send(tx, payload).await.unwrap() });
    let d = within("big receive", consumer.receive(rx)).await.unwrap();
    assert_eq!(d.payload.len(), expected.len());
    assert!(d.payload == expected, "20 MiB message differs");
    consumer.accept(&d).unwrap();
    consumer.flush().await.unwrap();
    assert_eq!(
        within("big outcome", send).await.unwrap(),
        Some(DeliveryState::Accepted)
    );
}

#[tokio::test]
async fn outcomes_other_than_accepted_reach_the_producer() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("verdicts", 10).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("verdicts")).await.unwrap();
    let modified = DeliveryState::Modified(Modified {
        delivery_failed: Some(true),
        undeliverable_here: Some(true),
        message_annotations: None,
    });
    let rejected = DeliveryState::Rejected(ferry_proto::definitions::Rejected {
        error: Some(ferry_proto::definitions::Error::new(
            ferry_proto::definitions::condition::DECODE_ERROR,
            "cannot parse",
        )),
    });
    for state in [DeliveryState::Released, modified, rejected] {
        within("credit", producer.wait_credit(tx)).await.unwrap();
        producer.send_nowait(tx, msg(b"judge me"), false).unwrap();
        producer.flush().await.unwrap();
        let d = within("receive", consumer.receive(rx)).await.unwrap();
        consumer.settle(&d, state.clone()).unwrap();
        consumer.flush().await.unwrap();
        let o = within("outcome", producer.next_outcome()).await.unwrap();
        assert_eq!(o.state, Some(state));
    }
}

#[tokio::test]
async fn a_consumer_that_leaves_with_unsettled_deliveries_fails_them_back() {
    let r = Router::start("");
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("flaky")).await.unwrap();
    // One consumer detaches its link, another drops its connection.
    for drop_connection in [false, true] {
        let mut consumer = r.client().await;
        let rx = consumer.open_receiver("flaky", 10).await.unwrap();
        within("credit", producer.wait_credit(tx)).await.unwrap();
        producer.send_nowait(tx, msg(b"in flight"), false).unwrap();
        producer.flush().await.unwrap();
        let _unsettled = within("receive", consumer.receive(rx)).await.unwrap();
        if drop_connection {
            drop(consumer);
        } else {
            consumer.close_link(rx).await.unwrap();
        }
        let o = within("outcome", producer.next_outcome()).await.unwrap();
        match o.state {
            Some(DeliveryState::Modified(m)) => assert_eq!(m.delivery_failed, Some(true)),
            other => panic!("expected modified(delivery-failed), got {other:?}"),
        }
    }
}

#[tokio::test]
async fn five_hundred_connections_are_served_at_once() {
    let r = Router::start("");
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for i in 0..250 {
        let mut c = r.client().await;
        let rx = c.open_receiver(&format!("pair-{i}"), 1).await.unwrap();
        consumers.push((c, rx));
        let mut p = r.client().await;
        let tx = p.open_sender(Some(&format!("pair-{i}"))).await.unwrap();
        producers.push((p, tx));
    }
    let mut sends = Vec::new();
    for (i, (mut p, tx)) in producers.into_iter().enumerate() {
        sends.push(tokio::spawn(async move {
            let outcome = p.send(tx, msg(format!("to {i}").as_bytes())).await.unwrap();
            (p, outcome)
        }));
    }
    for (i, (c, rx)) in consumers.iter_mut().enumerate() {
        let d = within("receive", c.receive(*rx)).await.unwrap();
        assert_eq!(d.payload, msg(format!("to {i}").as_bytes()));
        c.accept(&d).unwrap();
        c.flush().await.unwrap();
    }
    for s in sends {
        let (_p, outcome) = within("outcome", s).await.unwrap();
        assert_eq!(outcome, Some(DeliveryState::Accepted));
    }
}

#[tokio::test]
async fn sigterm_closes_connections_with_an_amqp_close_and_exits_zero() {
    let mut r = Router::start("");
    let mut client: Client = r.client().await;
    let _rx = client.open_receiver("anything", 1).await.unwrap();
    r.ferry.terminate();
    let err = within("close", client.receive(_rx)).await.unwrap_err();
    assert_eq!(err.condition(), Some("amqp:connection:forced"), "{err}");
    let status = r.ferry.wait_exit(LIMIT).expect("ferry exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn a_stalled_consumer_holds_back_a_large_message_instead_of_filling_memory() {
    let r = Router::start("[limits]\nmax_in_flight_bytes_per_producer = 1048576\n");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("stalled", 1).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("stalled")).await.unwrap();
    within("credit", producer.wait_credit(tx)).await.unwrap();
    let before = rss_kib(r.ferry.pid());
    // 64 MiB, while the consumer does not read its socket at all.
    let body = vec![7u8; 64 * 1024 * 1024];
    let payload = msg(&body);
    let len = payload.len();
    let send = tokio::spawn(async move {
        let r = producer.send(tx, payload).await;
        (producer, r)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_kib(r.ferry.pid());
    assert!(
        during < before + 32 * 1024,
        "router RSS grew from {before} KiB to {during} KiB with a stalled consumer"
    );
    assert!(
        !send.is_finished(),
        "the producer cannot have finished sending"
    );
    // Once the consumer reads, everything arrives.
    let d = within("receive", consumer.receive(rx)).await.unwrap();
    assert_eq!(d.payload.len(), len);
    consumer.accept(&d).unwrap();
    consumer.flush().await.unwrap();
    let (_p, outcome) = within("outcome", send).await.unwrap();
    assert_eq!(outcome.unwrap(), Some(DeliveryState::Accepted));
}

#[tokio::test]
async fn at_full_speed_nothing_is_released_while_a_consumer_has_credit() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("fast", 1000).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("fast")).await.unwrap();
    let n = 30_000u32;
    let send = tokio::spawn(async move {
        let (mut sent, mut in_flight, mut states) = (0u32, 0u32, Vec::new());
        while sent < n || in_flight > 0 {
            if sent < n && in_flight < 1000 && producer.credit(tx) > 0 {
                producer.send_nowait(tx, msg(b"quick"), false).unwrap();
                sent += 1;
                in_flight += 1;
                if sent.is_multiple_of(64) {
                    producer.flush().await.unwrap();
                }
                continue;
            }
            if in_flight == 0 {
                producer.wait_credit(tx).await.unwrap();
                continue;
            }
            let o = producer.next_outcome().await.unwrap();
            states.push(o.state);
            in_flight -= 1;
        }
        states
    });
    let mut received = 0;
    while received < n {
        let d = within("receive", consumer.receive(rx)).await.unwrap();
        consumer.accept(&d).unwrap();
        received += 1;
        while let Some(d) = consumer.try_receive(rx) {
            consumer.accept(&d).unwrap();
            received += 1;
        }
        if consumer.credit(rx) < 500 {
            consumer.flow(rx, 1000).await.unwrap();
        }
    }
    consumer.flush().await.unwrap();
    let states = within("outcomes", send).await.unwrap();
    let not_accepted = states
        .iter()
        .filter(|s| **s != Some(DeliveryState::Accepted))
        .count();
    assert_eq!(not_accepted, 0, "{not_accepted} of {n} not accepted");
}

#[tokio::test]
async fn a_released_delivery_goes_to_another_consumer_before_the_producer() {
    let r = Router::start("");
    let mut picky = r.client().await;
    let rx_picky = picky.open_receiver("work", 10).await.unwrap();
    let mut willing = r.client().await;
    let rx_willing = willing.open_receiver("work", 10).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("work")).await.unwrap();
    let n = 10;
    let send = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for i in 0..n {
            outcomes.push(
                producer
                    .send(tx, msg(format!("w{i}").as_bytes()))
                    .await
                    .unwrap(),
            );
        }
        outcomes
    });
    // `picky` releases whatever it gets; `willing` accepts.
    let released = tokio::spawn(async move {
        let mut released = 0;
        loop {
            let Ok(Ok(d)) =
                tokio::time::timeout(Duration::from_secs(3), picky.receive(rx_picky)).await
            else {
                return released;
            };
            picky.settle(&d, DeliveryState::Released).unwrap();
            picky.flush().await.unwrap();
            released += 1;
        }
    });
    let mut got = Vec::new();
    while got.len() < n {
        let d = within("receive", willing.receive(rx_willing))
            .await
            .unwrap();
        got.push(d.payload.clone());
        willing.accept(&d).unwrap();
        willing.flush().await.unwrap();
    }
    let outcomes = within("outcomes", send).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Some(DeliveryState::Accepted)),
        "released deliveries bounced back to the producer: {outcomes:?}"
    );
    let released = released.await.unwrap();
    assert!(released > 0, "the test never exercised a release");
}

#[tokio::test]
async fn an_anonymous_sender_s_large_message_is_routed_by_its_to() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("anon-big", 1).await.unwrap();
    let mut producer = r.client().await;
    // An anonymous sender's credit is not the address's: a message sent
    // before the router has the consumer's credit is released (no route
    // yet). A named sender's credit says the router has it.
    let probe = producer.open_sender(Some("anon-big")).await.unwrap();
    within("credit", producer.wait_credit(probe)).await.unwrap();
    producer.close_link(probe).await.unwrap();
    let tx = producer.open_sender(None).await.unwrap();
    // 2 MiB: many frames, buffered by the router only until `to` is read.
    let payload = Message::new(Body::data(vec![3u8; 2 * 1024 * 1024]))
        .with_to("anon-big")
        .encode();
    let expected = payload.clone();
    let send = tokio::spawn(async move { producer.send(tx, payload).await.unwrap() });
    let d = within("receive", consumer.receive(rx)).await.unwrap();
    assert!(d.payload == expected, "the message differs");
    consumer.accept(&d).unwrap();
    consumer.flush().await.unwrap();
    assert_eq!(
        within("outcome", send).await.unwrap(),
        Some(DeliveryState::Accepted)
    );
}

/// Fewer credits than producers: producers that took their share and went
/// quiet must not keep a producer with messages to send at zero. Their
/// credit is a lease, taken back once idle.
#[tokio::test]
async fn idle_producers_give_their_credit_to_one_with_messages() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("scarce", 2).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut p = r.client().await;
        let tx = p.open_sender(Some("scarce")).await.unwrap();
        within("an idle producer's credit", p.wait_credit(tx))
            .await
            .unwrap();
        idle.push(p);
    }
    let mut busy = r.client().await;
    let tx = busy.open_sender(Some("scarce")).await.unwrap();
    let n = 20;
    let send = tokio::spawn(async move {
        for i in 0..n {
            let outcome = busy
                .send(tx, msg(format!("m{i}").as_bytes()))
                .await
                .unwrap();
            assert_eq!(outcome, Some(DeliveryState::Accepted));
        }
    });
    for _ in 0..n {
        let d = within("a delivery from the busy producer", consumer.receive(rx))
            .await
            .unwrap();
        consumer.accept(&d).unwrap();
        consumer.flow(rx, 1).await.unwrap();
    }
    within("the busy producer's outcomes", send).await.unwrap();
    drop(idle);
}

/// Several producers stream large (multi-frame) messages to one consumer
/// as fast as credit allows, joining one after another while the first
/// is sending. A consumer link carries one delivery at a time, so a
/// delivery routed to it while another producer's message is still
/// streaming through must wait its turn, and a producer sending on the
/// credit it holds must not have it taken back for a newcomer (its
/// transfers on the way would find none): every outcome is `accepted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_messages_from_several_producers_are_all_accepted() {
    const PRODUCERS: usize = 4;
    const EACH: usize = 60;
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("streams", 100).await.unwrap();
    let payload = msg(&vec![7u8; 512 * 1024]);
    let len = payload.len();
    let consuming = tokio::spawn(async move {
        let mut received = 0u32;
        while let Ok(d) = consumer.receive(rx).await {
            assert_eq!(d.payload.len(), len);
            consumer.accept(&d).unwrap();
            received += 1;
            if consumer.credit(rx) < 50 {
                consumer.flow(rx, 100).await.unwrap();
            }
        }
        received
    });
    let mut sending = Vec::new();
    for _ in 0..PRODUCERS {
        let mut producer = r.client().await;
        let tx = producer.open_sender(Some("streams")).await.unwrap();
        within("credit", producer.wait_credit(tx)).await.unwrap();
        let payload = payload.clone();
        sending.push(tokio::spawn(async move {
            let (mut sent, mut states) = (0, Vec::new());
            while states.len() < EACH {
                while sent < EACH && producer.credit(tx) > 0 {
                    producer.send_nowait(tx, payload.clone(), false).unwrap();
                    sent += 1;
                }
                producer.flush().await.unwrap();
                if sent == states.len() {
                    // Nothing in flight: what comes next is credit, not an
                    // outcome (waiting for an outcome here hung the test
                    // when the router had taken this producer's credit
                    // for the others).
                    producer.wait_credit(tx).await.unwrap();
                    continue;
                }
                states.push(producer.next_outcome().await.unwrap().state);
            }
            states
        }));
        // The next producer comes while this one is sending.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes = Vec::new();
    for s in sending {
        outcomes.extend(within("outcomes", s).await.unwrap());
    }
    consuming.abort();
    let n = outcomes.len();
    let not_accepted: Vec<_> = outcomes
        .into_iter()
        .filter(|s| *s != Some(DeliveryState::Accepted))
        .collect();
    assert!(
        not_accepted.is_empty(),
        "{} of {n} not accepted: {:?}",
        not_accepted.len(),
        &not_accepted[..not_accepted.len().min(5)]
    );
}

/// A delivery sent on credit the router granted, whose consumer takes its
/// credit back (AMQP 1.0 §2.6.7 lets a receiver lower it) with no other
/// consumer to take it, waits on that consumer's link for credit; when the
/// credit does not come it goes back to its producer `released` after the
/// router's promised-credit wait (2 s) instead of waiting for good, and
/// the consumer never gets it (issue #17: a 1,000-router simulation held
/// one delivery so for good).
#[tokio::test]
async fn a_delivery_waiting_for_credit_taken_back_comes_back_released() {
    let r = Router::start("");
    let mut c = r.client().await;
    let rx = c.open_receiver("promised", 1).await.unwrap();
    let tx = c.open_sender(Some("promised")).await.unwrap();
    within("credit", c.wait_credit(tx)).await.unwrap();
    // In one write, so the router reads them in this order: the consumer's
    // credit taken back, then the message sent on the credit granted for it.
    c.engine().flow(rx, 0, false).unwrap();
    let id = c.send_nowait(tx, msg(b"promised"), false).unwrap();
    c.flush().await.unwrap();
    let outcome = within("the outcome", c.next_outcome()).await.unwrap();
    assert_eq!(outcome.id, id);
    assert_eq!(
        outcome.state,
        Some(DeliveryState::Released),
        "a delivery no consumer took came back as {:?}",
        outcome.state
    );
    // Given back, not still held for the consumer: credit again brings
    // nothing.
    c.flow(rx, 1).await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(500), c.receive(rx)).await;
    assert!(
        got.is_err(),
        "the consumer got a message its producer was told was released"
    );
}
