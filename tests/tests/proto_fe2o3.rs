//! Interoperability of the `ferry_proto` engine with fe2o3-amqp, an
//! independently written AMQP 1.0 implementation, in both roles: our
//! client against fe2o3's acceptor, and fe2o3's client against a server
//! built on our engine.

#[path = "../support/mini_broker.rs"]
mod mini_broker;

use std::time::Duration;

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, SaslAnonymousMechanism, SessionAcceptor,
};
use fe2o3_amqp::types::messaging::Outcome;
use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::definitions::DeliveryState;
use ferry_tests::{amqp_value, body_string};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn ferry_client_sends_to_and_receives_from_fe2o3_acceptor() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let acceptor = ConnectionAcceptor::builder()
            .container_id("fe2o3-acceptor")
            .sasl_acceptor(SaslAnonymousMechanism::new())
            .build();
        let mut connection = acceptor.accept(stream).await.unwrap();
        let mut session = SessionAcceptor::new()
            .accept(&mut connection)
            .await
            .unwrap();
        let links = LinkAcceptor::new();
        let LinkEndpoint::Receiver(mut receiver) = links.accept(&mut session).await.unwrap() else {
            panic!("expected our sender first");
        };
        let mut got = Vec::new();
        for _ in 0..10 {
            let delivery = receiver.recv::<String>().await.unwrap();
            receiver.accept(&delivery).await.unwrap();
            got.push(delivery.body().clone());
        }
        let LinkEndpoint::Sender(mut sender) = links.accept(&mut session).await.unwrap() else {
            panic!("expected our receiver second");
        };
        let mut outcomes = Vec::new();
        for i in 0..5 {
            outcomes.push(sender.send(format!("from fe2o3 {i}")).await.unwrap());
        }
        // Keep the connection up until the client closes it.
        let _ = connection.on_close().await;
        (got, outcomes)
    });

    let mut client = Client::connect(addr, ClientOptions::default())
        .await
        .unwrap();
    let sender = client.open_sender(Some("q")).await.unwrap();
    for i in 0..10 {
        let outcome = client
            .send(sender, amqp_value(&format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(outcome, Some(DeliveryState::Accepted));
    }
    let receiver = client.open_receiver("q", 10).await.unwrap();
    for i in 0..5 {
        let d = client.receive(receiver).await.unwrap();
        assert_eq!(body_string(d.payload.clone()), format!("from fe2o3 {i}"));
        client.accept(&d).unwrap();
    }
    client.flush().await.unwrap();
    // Give fe2o3 its last disposition before closing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.close().await.unwrap();

    let (got, outcomes) = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Accepted(_))),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn fe2o3_client_sends_to_and_receives_from_a_ferry_engine_server() {
    let (addr, queues) = mini_broker::start().await;
    let url = format!("amqp://{addr}");
    let run = async {
        let mut connection = fe2o3_amqp::Connection::open("fe2o3-client", url.as_str())
            .await
            .unwrap();
        let mut session = fe2o3_amqp::Session::begin(&mut connection).await.unwrap();
        let mut sender = fe2o3_amqp::Sender::attach(&mut session, "s", "q")
            .await
            .unwrap();
        for i in 0..20 {
            let outcome = sender.send(format!("n{i}")).await.unwrap();
            assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
        }
        // A message spanning many frames (the broker's max-frame-size is 64 KiB).
        let big = "x".repeat(300_000);
        let outcome = sender.send(big.clone()).await.unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)));
        sender.close().await.unwrap();

        let mut receiver = fe2o3_amqp::Receiver::attach(&mut session, "r", "q")
            .await
            .unwrap();
        for i in 0..20 {
            let d = receiver.recv::<String>().await.unwrap();
            assert_eq!(d.body(), &format!("n{i}"));
            receiver.accept(&d).await.unwrap();
        }
        let d = receiver.recv::<String>().await.unwrap();
        assert_eq!(d.body().len(), big.len());
        receiver.accept(&d).await.unwrap();
        receiver.close().await.unwrap();
        session.end().await.unwrap();
        connection.close().await.unwrap();
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .expect("fe2o3 exchange timed out");
    assert!(queues.lock().unwrap().get("q").is_none_or(|q| q.is_empty()));
}
