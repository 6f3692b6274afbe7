//! The router on one node, with our own client: anycast, credit, settlement.

#[path = "../support/router.rs"]
mod router;

use std::time::Duration;

use ferry_proto::definitions::DeliveryState;
use ferry_proto::message::Message;
use router::Router;

fn msg(body: &str) -> bytes::Bytes {
    Message::new(ferry_proto::message::Body::data(body.as_bytes().to_vec())).encode()
}

#[tokio::test]
async fn a_message_goes_from_producer_to_consumer_and_is_accepted() {
    let r = Router::start("");
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("q", 10).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("q")).await.unwrap();
    let credit = tokio::time::timeout(Duration::from_secs(5), producer.wait_credit(tx))
        .await
        .expect("producer gets credit")
        .unwrap();
    assert!(credit > 0);
    let send = tokio::spawn(async move {
        let outcome = producer.send(tx, msg("hello")).await.unwrap();
        (producer, outcome)
    });
    let d = consumer.receive(rx).await.unwrap();
    assert_eq!(d.payload, msg("hello"));
    consumer.accept(&d).unwrap();
    consumer.flush().await.unwrap();
    let (_producer, outcome) = send.await.unwrap();
    assert_eq!(outcome, Some(DeliveryState::Accepted));
}
