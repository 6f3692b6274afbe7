//! Careless and hostile peers, black-box: sockets that never finish the
//! handshake are closed after `limits.handshake_timeout_ms` while real
//! clients are served, and one address cannot take more than
//! `limits.max_connections_per_host` connections.

#[path = "../support/router.rs"]
mod router;

use std::time::Duration;

use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::definitions::{Open, Performative, condition};
use ferry_proto::frame::{self, Frame, Layer, ProtocolHeader};
use router::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_open_sockets_are_closed_after_the_handshake_timeout() {
    let r = Router::start("[limits]\nhandshake_timeout_ms = 1500\n");
    // 500 that say nothing, 500 that send half a protocol header.
    let mut sockets = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"AMQP").await.unwrap();
        }
        sockets.push(s);
    }
    // A real client is served while they are all open.
    let mut client = r.client().await;
    let rx = client.open_receiver("still-served", 1).await.unwrap();
    assert_eq!(client.credit(rx), 1);
    // Every one of them is closed by the router, soon after the timeout.
    let closed = async {
        for s in &mut sockets {
            let mut buf = [0u8; 64];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {} // the router's protocol header, then nothing
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the router closed every silent socket");
    // The real client, open in time, is still there.
    client.open_receiver("still-there", 1).await.unwrap();
    let log = r.ferry.stderr();
    let lines = log
        .matches("no AMQP open within the handshake timeout")
        .count();
    assert!(
        (1..=100).contains(&lines),
        "{lines} log lines for 1,000 sockets"
    );
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let r = Router::start("[limits]\nmax_connections_per_host = 5\n");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(r.client().await);
    }
    let options = ClientOptions {
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let e = Client::connect(r.addr, options.clone()).await.unwrap_err();
    assert_eq!(
        e.condition(),
        Some(condition::RESOURCE_LIMIT_EXCEEDED.as_str()),
        "{e}"
    );
    // Another address is served: its open is answered, and no close
    // follows.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
    let mut other = socket.connect(r.addr).await.unwrap();
    let mut hello = bytes::BytesMut::from(&ProtocolHeader::Amqp.bytes()[..]);
    let open = Performative::Open(Box::new(Open {
        container_id: "from-elsewhere".into(),
        ..Open::default()
    }));
    frame::encode_amqp_frame(0, &open, &[], &mut hello);
    other.write_all(&hello).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), other.read_to_end(&mut reply)).await;
    let mut frames = bytes::BytesMut::from(&reply[8..]);
    let mut performatives = Vec::new();
    while let Ok(Some(Frame::Amqp { performative, .. })) =
        frame::decode_frame(&mut frames, 1 << 16, Layer::Amqp)
    {
        performatives.push(performative.name());
    }
    assert_eq!(performatives, ["open"], "served from another address");
    let _ = held.pop();
    // A place given back is taken again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(r.addr, options.clone()).await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that attaches a receiver and detaches it in the same write
/// (Proton does, closing a link in the callback that opened it) gets the
/// router's attach and then its detach, and its link is closed.
#[tokio::test]
async fn an_attach_and_its_detach_in_one_read_are_both_answered() {
    use ferry_proto::definitions::{Attach, Begin, Detach, Handle, Role, SequenceNo, Source};
    let r = Router::start("");
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut out = bytes::BytesMut::from(&ProtocolHeader::Amqp.bytes()[..]);
    let frames = [
        Performative::Open(Box::new(Open {
            container_id: "quick".into(),
            ..Open::default()
        })),
        Performative::Begin(Begin {
            remote_channel: None,
            next_outgoing_id: SequenceNo(0),
            incoming_window: 100,
            outgoing_window: 100,
            ..Begin::default()
        }),
        Performative::Attach(Box::new(Attach {
            name: "opened-and-closed".into(),
            handle: Handle(0),
            role: Role::Receiver,
            source: Some(Source::new("q")),
            ..Attach::default()
        })),
        Performative::Detach(Detach {
            handle: Handle(0),
            closed: Some(true),
            error: None,
        }),
    ];
    for f in &frames {
        frame::encode_amqp_frame(0, f, &[], &mut out);
    }
    s.write_all(&out).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = bytes::BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(&"detach") && tokio::time::Instant::now() < deadline {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk))
            .await
            .map_or(0, |r| r.unwrap_or(0));
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= 8 && buf.starts_with(b"AMQP") {
            let _ = buf.split_to(8);
        }
        while let Ok(Some(Frame::Amqp { performative, .. })) =
            frame::decode_frame(&mut buf, 1 << 16, Layer::Amqp)
        {
            seen.push(performative.name());
        }
    }
    assert_eq!(
        seen,
        ["open", "begin", "attach", "detach"],
        "answered: {seen:?}"
    );
}

/// A client's message whose annotations run past its first frame is
/// refused (`rejected`, `amqp:invalid-field`): the router reads only a
/// streamed message's first frame, so it could neither strip nor replace
/// a trace the client put in them. A large body with small annotations
/// goes through.
#[tokio::test]
async fn annotations_past_the_first_frame_are_refused_a_large_body_is_not() {
    use bytes::Bytes;
    use ferry_proto::codec::Value;
    use ferry_proto::definitions::DeliveryState;
    use ferry_proto::message::{Body, Message};

    let router = Router::start("");
    let mut consumer = router.client().await;
    let rx = consumer.open_receiver("big", 10).await.unwrap();
    let received = tokio::spawn(async move {
        let d = consumer.receive(rx).await.unwrap();
        consumer.accept(&d).unwrap();
        consumer.flush().await.unwrap();
        Message::decode(d.payload).unwrap()
    });
    let mut producer = router.client().await;
    let tx = producer.open_sender(Some("big")).await.unwrap();
    let forged = Message::new(Body::data(b"x".to_vec()))
        .with_message_annotation(
            "x-opt-ferry-trace",
            Value::List(vec![Value::String("forged".into())]),
        )
        .with_message_annotation(
            "x-opt-padding",
            Value::Binary(Bytes::from(vec![0u8; 100_000])),
        );
    match producer.send(tx, forged.encode()).await.unwrap() {
        Some(DeliveryState::Rejected(r)) => {
            assert_eq!(r.error.map(|e| e.condition), Some(condition::INVALID_FIELD))
        }
        other => panic!("annotations of 100 kB were {other:?}"),
    }
    let large = Message::new(Body::data(vec![b'y'; 200_000]))
        .with_message_annotation("x-opt-note", Value::String("small".into()));
    assert_eq!(
        producer.send(tx, large.encode()).await.unwrap(),
        Some(DeliveryState::Accepted)
    );
    let got = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the large message")
        .unwrap();
    assert_eq!(got.body, Body::data(vec![b'y'; 200_000]));
}
