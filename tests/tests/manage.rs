//! AMQP management against real `ferry` processes: raw requests from Qpid
//! Proton (QUERY, READ, CREATE and DELETE of a connector that brings a
//! fourth router into the mesh; listeners and address prefixes created,
//! updated and deleted at run time), `ferry stat` reading a three-router mesh
//! from one router and another router through it, stuck deliveries, and
//! who may manage.

#[path = "../support/proton.rs"]
mod proton;
#[path = "../support/router.rs"]
mod router;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::client::ClientError;
use ferry_proto::message::{Body, Message};
use ferry_tests::{free_port, run_ferry};
use router::{Router, ferry_at, line, mesh_router, stat, stat_until};
use serde_json::{Value, json};

/// Time for a mesh to converge, generously.
const CONVERGE: Duration = Duration::from_secs(20);

/// The `field` of every entity, sorted.
fn field(entities: &[Value], field: &str) -> Vec<String> {
    let mut v: Vec<String> = entities
        .iter()
        .map(|e| e[field].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

fn msg(body: &str) -> Bytes {
    Message::new(Body::data(body.as_bytes().to_vec())).encode()
}

#[tokio::test]
async fn qpid_proton_queries_reads_creates_and_deletes_through_management() {
    let (a, _b, _c) = line();
    stat_until(a.addr, &["-n"], |n| n.len() == 3);
    // A fourth router, with an inter-router listener nobody dials yet.
    let d_port = free_port();
    let d = mesh_router("D", Some(d_port), &[], "");
    let port = d_port.to_string();
    let summary = proton::script(
        "management.py",
        &a.url(),
        &["127.0.0.1", &port, "mesh", "4"],
        &|| format!("A:\n{}\nD:\n{}", a.ferry.stderr(), d.ferry.stderr()),
    )
    .await;
    assert_eq!(summary["router"], json!([{"id": "A", "mode": "interior"}]));
    assert_eq!(summary["nodes"], json!(["A", "B", "C"]));
    assert!(
        summary["connections"]
            .as_array()
            .unwrap()
            .contains(&json!(["inter-router", "out"])),
        "A dials B: {summary}"
    );
    assert!(
        summary["connections"]
            .as_array()
            .unwrap()
            .contains(&json!(["normal", "in"])),
        "the script's own connection: {summary}"
    );
    assert!(
        summary["link_types"]
            .as_array()
            .unwrap()
            .contains(&json!("router-control")),
        "{summary}"
    );
    assert_eq!(summary["read_router"], json!([200, "A"]));
    assert_eq!(summary["types"], json!(true));
    let connector = format!("connector/127.0.0.1:{d_port}");
    assert_eq!(
        summary["create"],
        json!([201, "Created", "to-D", connector])
    );
    assert_eq!(summary["nodes_after_create"], json!(["A", "B", "C", "D"]));
    assert_eq!(summary["read_connector"], json!([200, "127.0.0.1"]));
    assert_eq!(summary["delete"], json!([204, "No Content"]));
    assert_eq!(summary["read_deleted"], json!(404));
    // Routers are not deleted through management.
    assert_eq!(summary["delete_node"], json!(501));
    // The deleted connector's connection goes: D leaves the mesh.
    stat_until(a.addr, &["-n"], |n| field(n, "id") == ["A", "B", "C"]);
}

#[tokio::test]
async fn qpid_proton_creates_updates_and_deletes_listeners_and_prefixes() {
    // Interior: its listeners may take the inter-router role.
    let router = Router::start_with_env(
        "[[address]]\nprefix = \"configured\"\ndistribution = \"closest\"\n",
        &[("FERRY_ROUTER__MODE", "interior")],
    );
    let port = free_port();
    let summary = proton::script(
        "management_changes.py",
        &router.url(),
        &[&port.to_string()],
        &|| router.ferry.stderr(),
    )
    .await;
    let id = format!("listener/127.0.0.1:{port}");
    assert_eq!(summary["listener_create"], json!([201, "extra", id]));
    assert_eq!(summary["listener_served"], "served");
    assert_eq!(summary["listener_exchange"], "hello");
    assert_eq!(summary["listener_again"], 409, "same host and port");
    let plain = &summary["listener_update_plain"];
    assert_eq!(plain[0], 400, "PLAIN needs a users file: {plain}");
    assert!(plain[1].as_str().unwrap().contains("users"), "{plain}");
    assert_eq!(summary["listener_update_port"], 400, "the port names it");
    assert_eq!(
        summary["listener_update"],
        json!([200, "inter-router"]),
        "{}\n{}",
        summary["listener_update_why"],
        router.ferry.stderr()
    );
    assert_eq!(summary["listener_read"], json!([200, "inter-router"]));
    let late = summary["listener_late"].as_str().unwrap();
    assert!(
        late.contains("only Ferry routers may use an inter-router listener"),
        "a client connecting after the UPDATE: {late}"
    );
    assert_eq!(summary["listener_early_carries_on"], "hello");
    assert_eq!(summary["listener_delete"], json!([204, "No Content"]));
    assert_eq!(summary["listener_delete_again"], 404);
    assert_eq!(summary["listener_after_delete"], "refused");
    assert_eq!(summary["listeners_left"], 1, "the configuration's");

    assert_eq!(summary["prefix_create"], json!([201, "multicast"]));
    assert_eq!(summary["prefix_again"], 409);
    assert_eq!(summary["prefix_bad"], 400);
    assert_eq!(summary["multicast_copies"], 2, "news.sport is multicast");
    assert_eq!(summary["prefix_delete"], 204);
    assert_eq!(summary["balanced_copies"], 1, "news.weather is balanced");
    assert_eq!(summary["prefix_delete_configured"], 403);
    // `ferry manage` does the same from the command line.
    let manage = |args: &[&str]| ferry_at(router.addr, &["manage"], args);
    let t = "router.config.address";
    manage(&[
        "create",
        "--type",
        t,
        "prefix=alerts",
        "distribution=multicast",
    ]);
    let updated = manage(&[
        "update",
        "--type",
        t,
        "--name",
        "address/alerts",
        "distribution=closest",
    ]);
    assert!(updated.contains("closest"), "{updated}");
    let rows: Value = serde_json::from_str(&manage(&["query", "--type", t])).unwrap();
    let mut prefixes: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["prefix"].as_str().unwrap().into(),
                r["distribution"].as_str().unwrap().into(),
            )
        })
        .collect();
    prefixes.sort();
    assert_eq!(
        prefixes,
        [
            ("alerts".into(), "closest".into()),
            ("configured".into(), "closest".into())
        ]
    );

    let log = router.ferry.stderr();
    for line in [
        "listener on 127.0.0.1:",
        "created through management",
        "updated through management",
        "deleted through management",
        "no longer listening on 127.0.0.1:",
    ] {
        assert!(log.contains(line), "{line:?} not logged:\n{log}");
    }
}

#[tokio::test]
async fn ferry_stat_reads_the_whole_mesh_from_one_router() {
    let (a, _b, c) = line();
    let nodes = stat_until(a.addr, &["-n"], |n| n.len() == 3);
    assert_eq!(field(&nodes, "id"), ["A", "B", "C"]);
    let c_row = nodes.iter().find(|n| n["id"] == "C").unwrap();
    assert_eq!(c_row["nextHop"], "B", "A reaches C through B: {nodes:?}");
    assert_eq!(c_row["cost"], 2);

    // A consumer on C and 10 messages from a producer on A.
    let mut consumer = c.client().await;
    let rx = consumer.open_receiver("orders", 100).await.unwrap();
    let consumed = tokio::spawn(async move {
        for _ in 0..10 {
            let d = consumer.receive(rx).await.unwrap();
            consumer.accept(&d).unwrap();
        }
        consumer.flush().await.unwrap();
        consumer
    });
    let mut producer = a.client().await;
    let tx = producer.open_sender(Some("orders")).await.unwrap();
    for i in 0..10 {
        let outcome = tokio::time::timeout(CONVERGE, producer.send(tx, msg(&format!("m{i}"))))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no outcome for m{i}\nA:\n{}\nC:\n{}",
                    a.ferry.stderr(),
                    c.ferry.stderr()
                )
            })
            .unwrap();
        assert_eq!(
            outcome,
            Some(ferry_proto::definitions::DeliveryState::Accepted)
        );
    }
    let _consumer = consumed.await.unwrap();

    let addresses = stat(a.addr, &["-a"]);
    let orders = addresses
        .iter()
        .find(|x| x["address"] == "orders")
        .unwrap_or_else(|| panic!("no orders on A: {addresses:?}"));
    assert_eq!(orders["remoteCount"], 1, "C has its consumer");
    assert_eq!(orders["deliveriesIngress"], 10, "{orders}");
    assert_eq!(orders["producerCount"], 1);

    let links = stat(a.addr, &["-l"]);
    let ours = links
        .iter()
        .find(|l| l["address"] == "orders" && l["linkType"] == "endpoint")
        .unwrap_or_else(|| panic!("no producer link on A: {links:?}"));
    assert_eq!(
        (ours["linkDir"].as_str(), ours["deliveryCount"].as_u64()),
        (Some("in"), Some(10))
    );
    assert_eq!(ours["acceptedCount"], 10, "{ours}");

    // C, asked through A: its connections include the consumer's.
    let remote = stat(a.addr, &["-c", "--router", "C"]);
    assert!(
        remote.iter().any(|c| c["role"] == "normal"),
        "C's client connection, read through A: {remote:?}"
    );
    assert!(remote.iter().any(|c| c["role"] == "inter-router"));
    let remote_links = stat(a.addr, &["-l", "--router", "C"]);
    let delivered: u64 = remote_links
        .iter()
        .filter(|l| {
            l["address"] == "orders" && l["linkDir"] == "out" && l["linkType"] == "endpoint"
        })
        .map(|l| l["deliveryCount"].as_u64().unwrap())
        .sum();
    assert_eq!(
        delivered, 10,
        "C delivered 10 to its consumer: {remote_links:?}"
    );

    let memory = stat(a.addr, &["-m"]);
    assert_eq!(memory[0]["nodeCount"], 3, "{memory:?}");
    assert!(memory[0]["memoryUsage"].as_u64().unwrap() > 1 << 20);

    // The table form says the same for people.
    let out = run_ferry(
        ["stat", "-n", "--url", a.url().as_str()],
        &[],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", out.stderr);
    let rows: Vec<&str> = out.stdout.lines().skip(3).collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(rows[2].starts_with("  C          B "), "{}", out.stdout);
}

#[tokio::test]
async fn a_delivery_left_unsettled_is_reported_stuck() {
    let router = Router::start("[limits]\nstuck_delivery_ms = 300\n");
    let mut consumer = router.client().await;
    let rx = consumer.open_receiver("slow", 10).await.unwrap();
    let mut producer = router.client().await;
    let tx = producer.open_sender(Some("slow")).await.unwrap();
    producer.wait_credit(tx).await.unwrap();
    producer
        .send_nowait(tx, msg("never settled"), false)
        .unwrap();
    producer.flush().await.unwrap();
    // Received, never settled.
    let _held = consumer.receive(rx).await.unwrap();
    let links = stat_until(router.addr, &["-l"], |links| {
        links.iter().any(|l| l["deliveriesStuck"] == 1)
    });
    let stuck = links.iter().find(|l| l["deliveriesStuck"] == 1).unwrap();
    assert_eq!(
        (
            stuck["address"].as_str(),
            stuck["linkDir"].as_str(),
            stuck["unsettledCount"].as_u64()
        ),
        (Some("slow"), Some("out"), Some(1))
    );
    let memory = stat(router.addr, &["-m"]);
    assert_eq!(memory[0]["deliveriesStuck"], 1);
    let log = router.ferry.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unsettled for over"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once for the link: {log}");
    assert!(
        lines[0].contains("1 deliveries to slow unsettled for over 0.3 s"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn management_is_refused_to_users_it_does_not_name_and_never_consumed() {
    let router = Router::start("[management]\nusers = [\"admin\"]\n");
    let mut client = router.client().await;
    let condition = |r: Result<ferry_proto::engine::LinkId, ClientError>| {
        r.err().and_then(|e| e.condition().map(str::to_string))
    };
    let unauthorized = Some("amqp:unauthorized-access".to_string());
    assert_eq!(
        condition(client.open_sender(Some("$management")).await),
        unauthorized
    );
    // Not across the mesh either, nor by taking the agent's requests.
    assert_eq!(
        condition(client.open_sender(Some("_topo/0/test/$management")).await),
        unauthorized
    );
    assert_eq!(
        condition(client.open_receiver("$management", 10).await),
        unauthorized
    );
    // The connection carries on.
    let tx = client.open_sender(Some("other")).await.unwrap();
    assert!(!client.is_detached(tx));
    // ferry stat says why, with exit status 1.
    let out = run_ferry(
        ["stat", "-n", "--url", router.url().as_str()],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stderr.contains("management is allowed to the users"),
        "{}",
        out.stderr
    );
}

/// A request whose reply address never takes a response (the agent waits
/// 3 s for one) holds up no other client's request.
#[tokio::test]
async fn a_reply_address_without_a_consumer_holds_up_no_other_request() {
    use ferry_proto::codec::Value;
    use ferry_proto::message::Properties;
    let router = Router::start("");
    let mut stray = router.client().await;
    let tx = stray.open_sender(Some("$management")).await.unwrap();
    let request = Message::new(Body::AmqpValue(Value::Null))
        .with_properties(Properties {
            reply_to: Some("nobody-listens-here".into()),
            ..Properties::default()
        })
        .with_application_property("operation", Value::String("GET-TYPES".into()));
    assert_eq!(
        stray.send(tx, request.encode()).await.unwrap(),
        Some(ferry_proto::definitions::DeliveryState::Accepted)
    );
    let started = Instant::now();
    let nodes = stat(router.addr, &["-n"]);
    assert_eq!(field(&nodes, "id"), ["test"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}, behind the stray request's 3 s wait",
        started.elapsed()
    );
}
