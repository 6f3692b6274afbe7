//! Bad input and limits: a misbehaving peer gets an AMQP error on its own
//! connection or link; everyone else carries on.

#[path = "../support/router.rs"]
mod router;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_proto::definitions::{DeliveryState, Performative, condition};
use ferry_proto::frame::{self, Frame, Layer, ProtocolHeader};
use ferry_proto::message::{Body, Message};
use router::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

fn msg(body: &[u8]) -> Bytes {
    Message::new(Body::data(body.to_vec())).encode()
}

/// Reads until the router closes the socket; returns everything it sent.
async fn read_to_close(stream: &mut TcpStream) -> BytesMut {
    let mut all = BytesMut::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(LIMIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("router did not close the connection; sent {all:?}"),
        }
    }
}

/// The condition of the `close` among the AMQP frames in `bytes` (after
/// the 8-byte protocol header).
fn close_condition(mut bytes: BytesMut) -> Option<String> {
    let _ = bytes.split_to(8);
    while let Ok(Some(f)) = frame::decode_frame(&mut bytes, 1 << 20, Layer::Amqp) {
        if let Frame::Amqp {
            performative: Performative::Close(c),
            ..
        } = f
        {
            return c.error.map(|e| e.condition.to_string());
        }
    }
    None
}

/// A producer/consumer round trip, proving the router still serves.
async fn still_serves(r: &Router) {
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("alive", 1).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("alive")).await.unwrap();
    let send = tokio::spawn(async move { producer.send(tx, msg(b"ping")).await.unwrap() });
    let d = tokio::time::timeout(LIMIT, consumer.receive(rx))
        .await
        .unwrap()
        .unwrap();
    consumer.accept(&d).unwrap();
    consumer.flush().await.unwrap();
    let outcome = tokio::time::timeout(LIMIT, send).await.unwrap().unwrap();
    assert_eq!(outcome, Some(DeliveryState::Accepted));
}

#[tokio::test]
async fn random_bytes_close_that_connection_only() {
    let r = Router::start("");
    // A client mid-conversation on another connection must not notice.
    let mut bystander = r.client().await;
    let rx = bystander.open_receiver("alive-too", 1).await.unwrap();
    let mut seed = 0x2545_f491_u32;
    for round in 0..20 {
        let mut stream = TcpStream::connect(r.addr).await.unwrap();
        let garbage: Vec<u8> = (0..(64 + round * 97))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = stream.write_all(&garbage).await;
        read_to_close(&mut stream).await;
    }
    still_serves(&r).await;
    assert!(!bystander.is_detached(rx));
}

#[tokio::test]
async fn an_oversized_frame_length_is_a_framing_error() {
    let r = Router::start("");
    let mut stream = TcpStream::connect(r.addr).await.unwrap();
    stream
        .write_all(&ProtocolHeader::Amqp.bytes())
        .await
        .unwrap();
    let mut open = BytesMut::new();
    frame::encode_amqp_frame(
        0,
        &Performative::Open(Box::new(ferry_proto::definitions::Open {
            container_id: "rogue".into(),
            ..Default::default()
        })),
        &[],
        &mut open,
    );
    stream.write_all(&open).await.unwrap();
    // A frame header claiming 4 GiB.
    stream
        .write_all(&[0xff, 0xff, 0xff, 0xf0, 2, 0, 0, 0])
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert_eq!(&reply[..8], &ProtocolHeader::Amqp.bytes());
    assert_eq!(
        close_condition(reply).as_deref(),
        Some(condition::FRAMING_ERROR.as_str())
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn a_malformed_performative_is_a_decode_error() {
    let r = Router::start("");
    let mut stream = TcpStream::connect(r.addr).await.unwrap();
    stream
        .write_all(&ProtocolHeader::Amqp.bytes())
        .await
        .unwrap();
    // An open whose container-id string claims more bytes than the frame has.
    let body = [0x00, 0x53, 0x10, 0xc0, 0x04, 0x01, 0xa1, 0x40, b'x'];
    let size = (8 + body.len()) as u32;
    let mut f = size.to_be_bytes().to_vec();
    f.extend_from_slice(&[2, 0, 0, 0]);
    f.extend_from_slice(&body);
    stream.write_all(&f).await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert_eq!(
        close_condition(reply).as_deref(),
        Some(condition::DECODE_ERROR.as_str())
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_detaches_its_link() {
    let r = Router::start("[limits]\nmax_message_size = 1000\n");
    let mut consumer = r.client().await;
    let _rx = consumer.open_receiver("small", 10).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("small")).await.unwrap();
    tokio::time::timeout(LIMIT, producer.wait_credit(tx))
        .await
        .unwrap()
        .unwrap();
    // Split so that no single frame exceeds the limit our client checks.
    let engine = producer.engine();
    let id = engine
        .send(
            tx,
            Bytes::from_static(b"t"),
            Bytes::from(vec![0u8; 600]),
            false,
            true,
        )
        .unwrap();
    engine
        .send_more(tx, id, Bytes::from(vec![0u8; 600]), false)
        .unwrap();
    producer.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let detach = loop {
        if let Some(e) = producer.detach_error(tx) {
            break e;
        }
        assert!(tokio::time::Instant::now() < deadline, "link not detached");
        // Drive the connection until the detach arrives.
        let _ = tokio::time::timeout(Duration::from_millis(100), producer.next_outcome()).await;
    };
    assert_eq!(
        detach.map(|e| e.condition.to_string()).as_deref(),
        Some(condition::MESSAGE_SIZE_EXCEEDED.as_str())
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn links_past_the_limit_are_refused() {
    let r = Router::start("[limits]\nmax_links_per_connection = 2\n");
    // A client that honours the advertised handle-max cannot ask for a third.
    let mut c = r.client().await;
    c.open_receiver("a", 1).await.unwrap();
    c.open_receiver("b", 1).await.unwrap();
    let err = c.open_receiver("c", 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            ferry_proto::client::ClientError::Engine(ferry_proto::engine::EngineError::Exhausted)
        ),
        "{err}"
    );
    // One that ignores it is closed with a framing error (AMQP 1.0 §2.7.2).
    let mut stream = TcpStream::connect(r.addr).await.unwrap();
    let mut out = BytesMut::new();
    out.extend_from_slice(&ProtocolHeader::Amqp.bytes());
    let frames = [
        Performative::Open(Box::new(ferry_proto::definitions::Open {
            container_id: "greedy".into(),
            ..Default::default()
        })),
        Performative::Begin(ferry_proto::definitions::Begin {
            incoming_window: 100,
            outgoing_window: 100,
            ..Default::default()
        }),
        Performative::Attach(Box::new(ferry_proto::definitions::Attach {
            name: "third".into(),
            handle: ferry_proto::definitions::Handle(2),
            role: ferry_proto::definitions::Role::Receiver,
            source: Some(ferry_proto::definitions::Source::new("x")),
            ..Default::default()
        })),
    ];
    for p in &frames {
        frame::encode_amqp_frame(0, p, &[], &mut out);
    }
    stream.write_all(&out).await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert_eq!(
        close_condition(reply).as_deref(),
        Some(condition::FRAMING_ERROR.as_str())
    );
    still_serves(&r).await;
}

#[tokio::test]
async fn unservable_links_are_refused_with_a_reason() {
    let r = Router::start("");
    let mut c = r.client().await;
    let source = ferry_proto::definitions::Source {
        distribution_mode: Some("copy".into()),
        address: Some("browse-me".into()),
        ..Default::default()
    };
    let err = c.open_receiver_with(source, 1).await.unwrap_err();
    assert_eq!(
        err.condition(),
        Some(condition::NOT_IMPLEMENTED.as_str()),
        "{err}"
    );
    let no_address = ferry_proto::definitions::Source::default();
    let err = c.open_receiver_with(no_address, 1).await.unwrap_err();
    assert_eq!(
        err.condition(),
        Some(condition::INVALID_FIELD.as_str()),
        "{err}"
    ); // The mesh's own addresses (an edge router's relay, the routing
    // protocol's link) are no client's.
    for address in ["_ferry/edge-relay", "_ferry/control"] {
        let err = c.open_receiver(address, 1).await.unwrap_err();
        assert_eq!(
            err.condition(),
            Some(condition::NOT_ALLOWED.as_str()),
            "{err}"
        );
        let err = c.open_sender(Some(address)).await.unwrap_err();
        assert_eq!(
            err.condition(),
            Some(condition::NOT_ALLOWED.as_str()),
            "{err}"
        );
    }
    still_serves(&r).await;
}
