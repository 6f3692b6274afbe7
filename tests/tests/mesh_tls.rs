//! The authenticated mesh, black-box: an inter-router listener with TLS
//! and `client_cert = "required"` admits a router only if its certificate
//! verifies against the profile's CA and names the router id it claims;
//! a connector checks the listener's certificate the same way. Everything
//! else is refused and logged, and the router carries on. (The other mesh
//! tests run their meshes over mutual TLS too: `support/router.rs`.)

#[path = "../support/router.rs"]
mod router;

use std::time::Duration;

use ferry_proto::client::{Client, ClientError, ClientOptions, ClientTls};
use ferry_proto::definitions::condition;
use ferry_tests::free_port;
use router::{Issued, Pki, Usage, mesh_router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

/// Connects to an inter-router port as router `claims`, presenting
/// `identity` signed by `pki`; returns how the router closed it.
async fn join_as(port: u16, claims: &str, pki: &Pki, identity: Option<&Issued>) -> ClientError {
    let options = ClientOptions {
        properties: vec![
            ("ferry:router-id".into(), claims.into()),
            ("ferry:instance".into(), "1".into()),
        ],
        tls: Some(ClientTls {
            config: pki.client_config(identity),
            server_name: "127.0.0.1".into(),
        }),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    match Client::connect(("127.0.0.1", port), options).await {
        Err(e) => e,
        Ok(mut c) => {
            // Refused after the open: the close follows.
            let rx = c.open_receiver("x", 1).await;
            match (rx, c.closed_by_peer()) {
                (_, Some(e)) => ClientError::ConnectionClosed(e.clone()),
                (Err(e), None) => e,
                (Ok(_), None) => panic!("{claims} joined the mesh"),
            }
        }
    }
}

/// Waits until `router`'s log contains `text`.
async fn logged(router: &router::Router, text: &str) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !router.ferry.stderr().contains(text) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not logged: {text}\n{}",
            router.ferry.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_router_certificate_claiming_another_id_is_refused() {
    let port = free_port();
    let r = mesh_router("R", Some(port), &[], "");
    let pki = Pki::mesh();
    // A genuine certificate for router B, used to claim to be X.
    let e = join_as(port, "X", pki, Some(&pki.router_files("B"))).await;
    assert_eq!(
        e.condition(),
        Some(condition::UNAUTHORIZED_ACCESS.as_str()),
        "{e}"
    );
    logged(&r, "claims to be router X but its certificate names B").await;
    // The same certificate, as the router it names, is admitted.
    let options = ClientOptions {
        properties: vec![
            ("ferry:router-id".into(), "B".into()),
            ("ferry:instance".into(), "1".into()),
        ],
        tls: Some(ClientTls {
            config: pki.client_config(Some(&pki.router_files("B"))),
            server_name: "127.0.0.1".into(),
        }),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    // Our client refuses the control link the router attaches once it has
    // admitted a router, and the router then closes the connection: that
    // close may come before `connect` returns. Admission is the log line.
    let b = Client::connect(("127.0.0.1", port), options).await;
    logged(&r, "neighbour B connected (from 127.0.0.1:").await;
    if let Err(e) = b {
        assert_eq!(
            e.condition(),
            Some(condition::PRECONDITION_FAILED.as_str()),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_client_certificate_on_the_inter_router_port_is_refused() {
    let port = free_port();
    let r = mesh_router("R", Some(port), &[], "");
    let pki = Pki::mesh();
    let alice = pki.issue("alice-client", Some("alice"), &[], Usage::Client, false);
    // A trusted certificate, but no router behind it.
    let options = ClientOptions {
        tls: Some(ClientTls {
            config: pki.client_config(Some(&alice)),
            server_name: "127.0.0.1".into(),
        }),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let e = match Client::connect(("127.0.0.1", port), options).await {
        Err(e) => e,
        Ok(mut c) => {
            let _ = c.open_receiver("x", 1).await;
            ClientError::ConnectionClosed(c.closed_by_peer().cloned().flatten())
        }
    };
    assert_eq!(
        e.condition(),
        Some(condition::UNAUTHORIZED_ACCESS.as_str()),
        "{e}"
    );
    logged(&r, "only Ferry routers may use an inter-router listener").await;
    let mut client = r.client().await;
    client.open_receiver("still-here", 1).await.unwrap();
}

#[tokio::test]
async fn untrusted_certificates_and_plain_tcp_cannot_reach_the_inter_router_port() {
    let port = free_port();
    let r = mesh_router("R", Some(port), &[], "");
    // A router certificate from another CA.
    let stranger = Pki::new("stranger");
    let forged = stranger.router("Y");
    let e = join_as(port, "Y", Pki::mesh(), Some(&forged)).await;
    assert!(
        !matches!(e, ClientError::ConnectionClosed(None)),
        "an untrusted router was admitted"
    );
    // No certificate at all: the handshake's alert says so.
    let e = join_as(port, "Y", Pki::mesh(), None).await;
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    // Plain AMQP.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    raw.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(LIMIT, raw.read_to_end(&mut reply))
        .await
        .expect("closed")
        .ok();
    assert!(!reply.starts_with(b"AMQP"));
    let mut client = r.client().await;
    client.open_receiver("still-here", 1).await.unwrap();
    assert_eq!(router::neighbours_connected(&r.ferry.stderr()), [""; 0]);
}

/// A connector checks the router it dials: a listener whose certificate
/// names B while its open claims X is refused by the dialing router.
#[tokio::test]
async fn a_connector_refuses_a_listener_whose_certificate_names_another_router() {
    let port = free_port();
    let pki = Pki::mesh();
    // Router X serving with B's certificate.
    let b_cert = pki.router_files("B");
    let x_toml = router::mesh_toml("X", Some(port), &[], true).replace(
        &pki.profile("mesh", &pki.router_files("X")),
        &pki.profile("mesh", &b_cert),
    );
    let _x = router::start_mesh_router(&x_toml, Some(port), "");
    let a = mesh_router("A", None, &[(port, 1)], "");
    logged(&a, "claims to be router X but its certificate names B").await;
    assert_eq!(router::neighbours_connected(&a.ferry.stderr()), [""; 0]);
}
