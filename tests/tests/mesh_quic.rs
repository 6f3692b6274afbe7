//! Meshes over QUIC (`transport = "quic"`), black-box: a line of three
//! routers whose links are all QUIC, and a mixed one (QUIC and TCP), carry
//! messages end to end with credit and settlement, and a QUIC neighbour
//! killed is a neighbour lost. The mesh tests of `mesh.rs`, `mesh_heal.rs`
//! and `mesh_lifecycle.rs` run over QUIC and mixed meshes too, with
//! `FERRY_TEST_MESH_TRANSPORT=quic` / `mixed` (`.ci/run` does).

#[path = "../support/router.rs"]
mod router;

use std::time::Duration;

use bytes::Bytes;
use ferry_proto::definitions::DeliveryState;
use ferry_proto::message::{Body, Message};
use ferry_tests::free_port;
use router::{MeshTransport, Router, mesh_toml_over, start_mesh_router};

const CONVERGE: Duration = Duration::from_secs(20);

fn msg(body: &str) -> Bytes {
    Message::new(Body::data(body.as_bytes().to_vec())).encode()
}

fn start(id: &str, inter: Option<u16>, connect: &[(u16, u32)], over: MeshTransport) -> Router {
    start_mesh_router(&mesh_toml_over(id, inter, connect, true, over), inter, "")
}

/// Waits until `router`'s log says `text`.
async fn logged(router: &Router, text: &str) -> String {
    ferry_tests::within("the log line", CONVERGE, async {
        loop {
            let log = router.ferry.stderr();
            if log.contains(text) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Sends `n` messages from `a` to a consumer on `c`; every outcome is
/// `accepted` and every message arrives once, in order.
async fn send_across(a: &Router, c: &Router, address: &str, n: usize) {
    let mut consumer = c.client().await;
    let rx = consumer.open_receiver(address, 50).await.unwrap();
    let mut producer = a.client().await;
    let tx = producer.open_sender(Some(address)).await.unwrap();
    ferry_tests::within("credit across the mesh", CONVERGE, producer.wait_credit(tx))
        .await
        .unwrap();
    let send = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for i in 0..n {
            outcomes.push(producer.send(tx, msg(&format!("m{i}"))).await.unwrap());
        }
        outcomes
    });
    for i in 0..n {
        let d = ferry_tests::within("a delivery", CONVERGE, consumer.receive(rx))
            .await
            .unwrap();
        assert_eq!(d.payload, msg(&format!("m{i}")), "message {i}");
        consumer.accept(&d).unwrap();
        if consumer.credit(rx) < 25 {
            consumer.flow(rx, 50).await.unwrap();
        }
    }
    consumer.flush().await.unwrap();
    let outcomes = ferry_tests::within("every outcome", CONVERGE, send)
        .await
        .unwrap();
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.as_ref(), Some(&DeliveryState::Accepted), "outcome {i}");
    }
}

#[tokio::test]
async fn a_line_over_quic_carries_messages_end_to_end() {
    let b_port = free_port();
    let b = start("B", Some(b_port), &[], MeshTransport::Quic);
    let a = start("A", None, &[(b_port, 1)], MeshTransport::Quic);
    let c = start("C", None, &[(b_port, 1)], MeshTransport::Quic);
    let log = logged(&b, "neighbour C connected").await;
    assert!(log.contains("listening on 127.0.0.1:"), "{log}");
    assert!(log.contains("(inter-router, quic)"), "{log}");
    for id in ["A", "C"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("neighbour {id} connected")))
            .unwrap();
        assert!(line.contains(", QUIC)"), "{line}");
    }
    send_across(&a, &c, "orders", 500).await;
}

#[tokio::test]
async fn a_mixed_mesh_carries_messages_across_quic_and_tcp_links() {
    // B listens on TCP and QUIC at one port number; A dials it over QUIC,
    // C over TCP.
    let b_port = free_port();
    let b = start("B", Some(b_port), &[], MeshTransport::Mixed);
    let a = start("A", None, &[(b_port, 1)], MeshTransport::Quic);
    let c = start_mesh_router(
        &mesh_toml_over("C", None, &[(b_port, 1)], true, MeshTransport::Tcp),
        None,
        "",
    );
    let log = logged(&b, "neighbour C connected").await;
    let log = if log.contains("neighbour A connected") {
        log
    } else {
        logged(&b, "neighbour A connected").await
    };
    let line = |id: &str| {
        log.lines()
            .find(|l| l.contains(&format!("neighbour {id} connected")))
            .unwrap()
            .to_owned()
    };
    assert!(line("A").contains(", QUIC)"), "{}", line("A"));
    assert!(line("C").contains(", TLS)"), "{}", line("C"));
    send_across(&a, &c, "mixed", 300).await;
    send_across(&c, &a, "back", 300).await;
}

#[tokio::test]
async fn a_quic_neighbour_killed_is_a_neighbour_lost_and_traffic_reroutes() {
    // A dials B (QUIC, cost 1) and C (QUIC, cost 5); B dials C.
    let (b_port, c_port) = (free_port(), free_port());
    let c = start("C", Some(c_port), &[], MeshTransport::Quic);
    let b = start("B", Some(b_port), &[(c_port, 1)], MeshTransport::Quic);
    let a = start("A", None, &[(b_port, 1), (c_port, 5)], MeshTransport::Quic);
    logged(&a, "neighbour C connected").await;
    send_across(&a, &c, "before", 100).await;
    drop(b); // SIGKILL: no QUIC close, no AMQP close.
    logged(&a, "neighbour B disconnected").await;
    send_across(&a, &c, "after", 100).await;
}

/// A QUIC listener authenticates the routers that dial it as a TLS one
/// does: a router whose certificate comes from another CA is refused at
/// the handshake, and the router serves on.
#[tokio::test]
async fn a_quic_listener_refuses_a_router_certificate_from_another_ca() {
    let port = free_port();
    let r = start("R", Some(port), &[], MeshTransport::Quic);
    let stranger = router::Pki::new("stranger");
    let mesh = router::Pki::mesh();
    let trusted = mesh_toml_over("Y", None, &[(port, 1)], true, MeshTransport::Quic);
    let y_toml = trusted.replace(
        &mesh.profile("mesh", &mesh.router_files("Y")),
        &stranger.profile("mesh", &stranger.router_files("Y")),
    );
    assert_ne!(y_toml, trusted, "Y's profile is the stranger's");
    let y = start_mesh_router(&y_toml, None, "");
    logged(&r, "connection refused").await;
    logged(&y, "QUIC handshake failed").await;
    assert_eq!(router::neighbours_connected(&r.ferry.stderr()), [""; 0]);
    assert_eq!(router::neighbours_connected(&y.ferry.stderr()), [""; 0]);
    let mut client = r.client().await;
    client.open_receiver("still-here", 1).await.unwrap();
}

/// A connector checks the router it dials over QUIC: a listener whose
/// certificate names B while its open claims X is refused.
#[tokio::test]
async fn a_quic_connector_refuses_a_listener_whose_certificate_names_another_router() {
    let port = free_port();
    let pki = router::Pki::mesh();
    let x_toml = mesh_toml_over("X", Some(port), &[], true, MeshTransport::Quic).replace(
        &pki.profile("mesh", &pki.router_files("X")),
        &pki.profile("mesh", &pki.router_files("B")),
    );
    let _x = start_mesh_router(&x_toml, Some(port), "");
    let a = start("A", None, &[(port, 1)], MeshTransport::Quic);
    logged(&a, "claims to be router X but its certificate names B").await;
    assert_eq!(router::neighbours_connected(&a.ferry.stderr()), [""; 0]);
}
