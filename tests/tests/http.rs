//! The `[http]` endpoint of the real binary: health, errors, `/metrics`
//! parsed by an independent Prometheus text parser and checked against
//! what the test sent, `/readyz` following the mesh, and bad `[http]`
//! keys refused by `check-config`.

#[path = "../support/http.rs"]
mod http;
#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::message::{Body, Message};
use ferry_tests::{Ferry, TempDir, WAIT, free_port, http_addr, run_ferry};
use prometheus_parse::{Scrape, Value};
use router::{Router, mesh_toml, start_mesh_router};

/// `[http]` on an ephemeral loopback port.
const HTTP: &str = "[http]\nhost = \"127.0.0.1\"\nport = 0\n";

/// The HTTP endpoint's address, from its `http listening on` line.
fn endpoint(ferry: &Ferry) -> SocketAddr {
    http_addr(&ferry.stderr())
        .unwrap_or_else(|| panic!("no `http listening on` line; stderr:\n{}", ferry.stderr()))
}

fn msg(body: &str) -> Bytes {
    Message::new(Body::data(body.as_bytes().to_vec())).encode()
}

#[test]
fn healthz_answers_ok_unknown_paths_404_and_other_methods_405() {
    let r = Router::start(HTTP);
    let addr = endpoint(&r.ferry);

    let health = http::get(addr, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");

    let ready = http::get(addr, "/readyz");
    assert_eq!(ready.status, 200, "a standalone router is ready once bound");
    assert_eq!(ready.body, "ready\n");

    assert_eq!(http::get(addr, "/nowhere").status, 404);
    let post = http::request(addr, "POST", "/metrics").unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    let head = http::request(addr, "HEAD", "/metrics").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.body);
}

/// The value of the one sample of `metric` whose labels are all `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{metric}: unexpected value {other:?}"),
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one sample of {metric} with {labels:?}, found {found:?}"
    );
    found[0]
}

#[tokio::test]
async fn metrics_count_what_was_sent_per_configured_prefix() {
    let r = Router::start(&format!(
        "[[address]]\nprefix = \"orders\"\ndistribution = \"balanced\"\n\n{HTTP}"
    ));
    let addr = endpoint(&r.ferry);
    let mut consumer = r.client().await;
    let rx = consumer.open_receiver("orders.eu", 100).await.unwrap();
    // A reply address: dynamic, never a series of its own.
    let dynamic = consumer.open_dynamic_receiver(10).await.unwrap();
    let mut producer = r.client().await;
    let tx = producer.open_sender(Some("orders.eu")).await.unwrap();
    let n = 1000;
    let send = tokio::spawn(async move {
        ferry_tests::send_all_accepted(&mut producer, tx, n, |i| msg(&format!("m{i}"))).await;
        producer
    });
    for i in 0..n {
        let d = tokio::time::timeout(WAIT, consumer.receive(rx))
            .await
            .expect("receive in time")
            .unwrap();
        consumer.accept(&d).unwrap();
        if i % 50 == 49 {
            consumer.flow(rx, 100).await.unwrap();
        }
    }
    consumer.flush().await.unwrap();
    let _producer = tokio::time::timeout(WAIT, send)
        .await
        .expect("every outcome in time")
        .unwrap();

    let response = tokio::task::spawn_blocking(move || http::get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.headers
    );
    let scrape = Scrape::parse(response.body.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text parser reads /metrics");

    let orders = [("prefix", "orders"), ("role", "normal")];
    let delivered_in = value(&scrape, "ferry_deliveries_in_total", &orders);
    let delivered_out = value(&scrape, "ferry_deliveries_out_total", &orders);
    assert!(delivered_in >= 1000.0, "in: {delivered_in}");
    assert!(delivered_out >= 1000.0, "out: {delivered_out}");
    let accepted = value(
        &scrape,
        "ferry_deliveries_settled_total",
        &[
            ("prefix", "orders"),
            ("role", "normal"),
            ("outcome", "accepted"),
        ],
    );
    assert!(accepted >= 1000.0, "accepted: {accepted}");
    assert_eq!(
        value(
            &scrape,
            "ferry_deliveries_in_total",
            &[("prefix", "other"), ("role", "normal")]
        ),
        0.0,
        "nothing was sent outside the prefix"
    );
    // Every outcome is back: nothing waits in the router.
    assert_eq!(value(&scrape, "ferry_deliveries_in_flight", &[]), 0.0);
    // The test holds two client connections, a producer link and two
    // consumer links.
    assert_eq!(
        value(&scrape, "ferry_connections_open", &[("role", "normal")]),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            "ferry_connections_open",
            &[("role", "inter-router")]
        ),
        0.0
    );
    assert_eq!(
        value(&scrape, "ferry_links_open", &[("direction", "in")]),
        1.0
    );
    assert_eq!(
        value(&scrape, "ferry_links_open", &[("direction", "out")]),
        2.0
    );
    assert!(value(&scrape, "ferry_resident_memory_bytes", &[]) > 0.0);

    // Bounded cardinality: no label carries an address.
    for sample in &scrape.samples {
        for (name, label) in sample.labels.iter() {
            assert!(
                !label.contains("orders.eu") && !label.contains("_dynamic"),
                "{} has {name}={label:?}: an address as a label",
                sample.metric
            );
        }
    }
    drop(dynamic);
}

/// Polls `/readyz` every 50 ms until it answers 200, for at most `limit`;
/// returns the answers seen before.
fn wait_ready(addr: SocketAddr, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let r = http::get(addr, "/readyz");
        if r.status == 200 {
            return seen;
        }
        assert_eq!(r.status, 503, "{r:?}");
        if seen.last() != Some(&r.body) {
            seen.push(r.body.clone());
        }
        assert!(
            Instant::now() < deadline,
            "not ready after {limit:?}; answers: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn readyz_waits_for_routing_to_converge_with_a_neighbour() {
    // Plain inter-router TCP on loopback, as allowed.
    let b_port = free_port();
    let a = start_mesh_router(&mesh_toml("A", None, &[(b_port, 1)], false), None, HTTP);
    let addr = endpoint(&a.ferry);
    // The endpoint answers while the listeners bind, a moment before the
    // router knows they are bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut waiting = http::get(addr, "/readyz");
    while waiting.body == "listeners not bound\n" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        waiting = http::get(addr, "/readyz");
    }
    assert_eq!(waiting.status, 503);
    assert_eq!(waiting.body, "no neighbour up\n");
    // Still not ready a moment later: its neighbour is not there.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http::get(addr, "/readyz").status, 503);

    let b = start_mesh_router(&mesh_toml("B", Some(b_port), &[], false), Some(b_port), "");
    let seen = wait_ready(addr, Duration::from_secs(10));
    for answer in &seen {
        assert!(
            ["no neighbour up\n", "routing not converged\n"].contains(&answer.as_str()),
            "unexpected /readyz answer {answer:?}"
        );
    }
    // Ready means the routing table has a path to B.
    let metrics = http::get(addr, "/metrics").body;
    let scrape = Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(value(&scrape, "ferry_neighbours_up", &[]), 1.0);
    assert!(value(&scrape, "ferry_routing_reroutes_total", &[]) >= 1.0);
    assert_eq!(
        value(
            &scrape,
            "ferry_connections_open",
            &[("role", "inter-router")]
        ),
        1.0
    );
    drop(b);
}

/// `ferry check-config` on `base` followed by `http`, in a file of `dir`.
fn check_config(dir: &TempDir, base: &str, http: &str) -> ferry_tests::Finished {
    let path = dir.write("ferry.toml", &format!("{base}{http}"));
    run_ferry(
        [
            "check-config".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ],
        &[],
        WAIT,
    )
}

#[test]
fn bad_http_keys_are_refused_by_check_config_in_one_line() {
    let dir = TempDir::new();
    let base = "[[listener]]\nhost = \"127.0.0.1\"\nport = 5672\n\n";
    for (http, expected) in [
        ("[http]\nhost = \"127.0.0.1\"\nport = 70000\n", "http.port"),
        (
            "[http]\nhost = \"127.0.0.1\"\nport = 8080\npath = \"/m\"\n",
            "http.path",
        ),
        ("[http]\nhost = \"127.0.0.1\"\n", "http.port"),
        ("[http]\nhost = \"127.0.0.1\"\nport = 5672\n", "http.port"),
    ] {
        let done = check_config(&dir, base, http);
        assert_eq!(done.status.code(), Some(2), "{http}: {}", done.stderr);
        let lines: Vec<&str> = done.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {http:?}: {lines:?}");
        assert!(
            lines[0].contains(expected),
            "{http:?}: {:?} does not name {expected}",
            lines[0]
        );
    }
    // A good one is printed back.
    let good = "[http]\nhost = \"0.0.0.0\"\nport = 8080\n";
    let done = check_config(&dir, base, good);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stdout.contains(good), "{}", done.stdout);
}
