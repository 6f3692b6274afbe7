//! Interoperability of the `ferry_proto` engine with Qpid Proton, the
//! reference AMQP 1.0 implementation (through its Python binding), in both
//! roles. Needs `python3-qpid-proton` (Debian) for `/usr/bin/python3`, or a
//! Python named by `FERRY_PYTHON`; `.ci/run` installs it. Without it these
//! tests fail: they are never skipped.

#[path = "../support/mini_broker.rs"]
mod mini_broker;

use std::process::Stdio;
use std::time::Duration;

use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::definitions::DeliveryState;
use ferry_tests::{amqp_value, body_string, free_port};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

fn python() -> String {
    std::env::var("FERRY_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn script(name: &str) -> String {
    format!("{}/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn proton_client_sends_to_and_receives_from_a_ferry_engine_server() {
    let (addr, _queues) = mini_broker::start().await;
    let child = Command::new(python())
        .arg(script("proton_client.py"))
        .arg(format!("amqp://{addr}"))
        .arg("q")
        .arg("25")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with Qpid Proton (apt-get install python3-qpid-proton)");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("proton client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "proton client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let received = summary["received"].as_array().unwrap();
    assert_eq!(received.len(), 25);
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m["body"], format!("p{i}"));
        assert_eq!(m["subject"], "interop");
        assert_eq!(m["i"], i);
    }
}

#[tokio::test]
async fn ferry_client_sends_to_and_receives_from_a_proton_server() {
    let port = free_port();
    let mut child = Command::new(python())
        .arg(script("proton_server.py"))
        .arg(port.to_string())
        .arg("5")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with Qpid Proton (apt-get install python3-qpid-proton)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.as_deref(), Some("READY"));

    let mut client = Client::connect(("127.0.0.1", port), ClientOptions::default())
        .await
        .unwrap();
    let sender = client.open_sender(Some("examples")).await.unwrap();
    for i in 0..10 {
        let outcome = client
            .send(sender, amqp_value(&format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(outcome, Some(DeliveryState::Accepted));
    }
    let receiver = client.open_receiver("examples", 5).await.unwrap();
    for i in 0..5 {
        let d = client.receive(receiver).await.unwrap();
        assert_eq!(body_string(d.payload.clone()), format!("from proton {i}"));
        client.accept(&d).unwrap();
    }
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.close().await.unwrap();

    let summary = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("summary line");
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(summary["received"], serde_json::json!(expected));
    assert_eq!(summary["outcomes"], serde_json::json!(vec!["accepted"; 5]));
    let _ = tokio::time::timeout(LIMIT, child.wait()).await;
}
