//! What an operator reads: the logs of real `ferry` processes at the
//! default level (and at `debug`), as a newcomer running the three-router
//! mesh of the README sees them in one terminal. One event, one line, in
//! the operator's words, each naming its router; a connector that cannot
//! connect says so, once, and what the router waits for; two routers
//! given the same id are told so, once each, at `error`.

#[path = "../support/router.rs"]
mod router;

use std::time::{Duration, Instant};

use ferry_proto::client::{Client, ClientOptions};
use ferry_tests::{Ferry, TempDir, WAIT, free_port};
use router::{mesh_toml, neighbours_connected};

/// A router of a plain loopback mesh (as `deploy/local/` runs them), at
/// the default log level unless `rust_log` says otherwise.
struct Node {
    ferry: Ferry,
    client: std::net::SocketAddr,
    _dir: TempDir,
}

fn start(id: &str, inter: Option<u16>, dial: &[u16], rust_log: Option<&str>) -> Node {
    let connect: Vec<(u16, u32)> = dial.iter().map(|&p| (p, 1)).collect();
    let dir = TempDir::new();
    let path = dir.write("ferry.toml", &mesh_toml(id, inter, &connect, false));
    let env: Vec<(&str, &str)> = rust_log.map(|l| ("RUST_LOG", l)).into_iter().collect();
    let mut ferry = Ferry::spawn(
        ["run".as_ref(), "--config".as_ref(), path.as_os_str()],
        &env,
    );
    let addrs = ferry.wait_listening(1 + usize::from(inter.is_some()), WAIT);
    let client = *addrs
        .iter()
        .find(|a| Some(a.port()) != inter)
        .expect("the normal listener");
    Node {
        ferry,
        client,
        _dir: dir,
    }
}

/// Waits until `done` holds for the log of `node`.
fn wait_log(node: &Node, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&node.ferry.stderr()) {
        assert!(
            Instant::now() < deadline,
            "{what}; log:\n{}",
            node.ferry.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of `log` that contain `text`.
fn lines_with<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(text)).collect()
}

/// Every line names its router, says `neighbour` (never `neighbor`), and
/// holds no debug dump (`Some(…)`) and no instance number (a run of more
/// than twelve digits: ports and timestamps have fewer).
fn assert_readable(id: &str, log: &str) {
    for line in log.lines() {
        assert!(
            line.contains(&format!(" router{{id={id}}}: ")),
            "a line of router {id} does not name it: {line}\n{log}"
        );
        assert!(!line.contains("neighbor"), "{line}");
        assert!(!line.contains("Some("), "{line}");
        let longest_number = line
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_number <= 12, "a number no user knows: {line}");
    }
}

/// The local mesh of the README: A listens, B listens and dials A, C
/// dials A and B. Each router logs each neighbour coming up once (not
/// twice, as `inter-router connection up` and `neighbour connected` did),
/// going once, and every line carries its router id.
#[test]
fn a_three_router_mesh_logs_one_line_per_event_naming_each_router() {
    let (pa, pb) = (free_port(), free_port());
    let a = start("A", Some(pa), &[], None);
    let b = start("B", Some(pb), &[pa], None);
    let c = start("C", None, &[pa, pb], None);
    for (node, others) in [(&a, ["B", "C"]), (&b, ["A", "C"]), (&c, ["A", "B"])] {
        wait_log(node, "not every neighbour connected", |log| {
            let mut got = neighbours_connected(log);
            got.sort_unstable();
            got == others
        });
    }
    // The dialing side names where it dialed, the other where from.
    let b_log = b.ferry.stderr();
    assert_eq!(
        lines_with(&b_log, "neighbour A connected").len(),
        1,
        "{b_log}"
    );
    assert!(
        b_log.contains(&format!(
            "neighbour A connected (to 127.0.0.1:{pa}, cost 1)"
        )),
        "{b_log}"
    );
    assert!(
        b_log.contains("neighbour C connected (from 127.0.0.1:"),
        "{b_log}"
    );
    // An interior router says what it waits for when it starts.
    assert!(
        b_log.contains(&format!(
            "started: ferry {}, interior router; waiting for neighbours \
             (dialing 127.0.0.1:{pa}; routers may dial 127.0.0.1:{pb})",
            env!("CARGO_PKG_VERSION")
        )),
        "{b_log}"
    );

    b.ferry.terminate();
    for node in [&a, &c] {
        wait_log(node, "B's going not logged", |log| {
            log.contains("neighbour B disconnected")
        });
    }
    let mut b = b;
    assert_eq!(b.ferry.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    for (id, node) in [("A", &a), ("B", &b), ("C", &c)] {
        let log = node.ferry.stderr();
        assert_readable(id, &log);
        for other in ["A", "B", "C"].into_iter().filter(|o| *o != id) {
            assert_eq!(
                lines_with(&log, &format!("neighbour {other} connected")).len(),
                1,
                "router {id}, neighbour {other}:\n{log}"
            );
        }
    }
}

/// At `debug`: a client's connection is accepted in one line, not two,
/// and links name their address as the user wrote it.
#[tokio::test]
async fn debug_lines_say_each_event_once_in_plain_words() {
    let r = start("D", None, &[], Some("debug"));
    let mut client = Client::connect(r.client, ClientOptions::default())
        .await
        .unwrap();
    client.open_receiver("greetings", 10).await.unwrap();
    let _tx = client.open_sender(Some("greetings")).await.unwrap();
    client.close().await.unwrap();
    wait_log(&r, "the connection's end not logged", |log| {
        // (Connection ids are the router's own: the management agent has
        // one too.)
        log.contains("connection ") && log.contains("ended") && log.contains("producer")
    });
    let log = r.ferry.stderr();
    assert_readable("D", &log);
    assert_eq!(lines_with(&log, "accepted").len(), 1, "{log}");
    assert!(
        lines_with(&log, "consumer ")
            .iter()
            .any(|l| l.ends_with("attached to greetings")),
        "{log}"
    );
    assert!(
        lines_with(&log, "producer ")
            .iter()
            .any(|l| l.ends_with("attached to greetings")),
        "{log}"
    );
}

/// A mistyped peer port: the connector says at `warn`, at the default
/// level, that it cannot connect and that the router has no neighbour
/// yet — once, not at every retry; when a router appears there, the
/// neighbour line says it joined.
#[test]
fn a_connector_that_cannot_connect_says_so_once() {
    let nobody = free_port();
    let r = start("R", None, &[nobody], None);
    let expected =
        format!("WARN router{{id=R}}: connector[0] to 127.0.0.1:{nobody}: cannot connect: ");
    wait_log(&r, "the failure not logged", |log| log.contains(&expected));
    // Retries 100 ms, 200 ms, … apart: several in 4 s, all silent.
    std::thread::sleep(Duration::from_secs(4));
    let log = r.ferry.stderr();
    let failures = lines_with(&log, "cannot connect");
    assert_eq!(failures.len(), 1, "{log}");
    assert!(
        failures[0].ends_with(
            "; retrying, at most 1 s apart; no neighbour yet, so messages reach only \
             this router's own consumers"
        ),
        "{log}"
    );
    // The router it was waiting for turns up.
    let _s = start("S", Some(nobody), &[], None);
    wait_log(&r, "S never joined", |log| {
        log.contains(&format!(
            "neighbour S connected (to 127.0.0.1:{nobody}, cost 1)"
        ))
    });
    assert_readable("R", &r.ferry.stderr());
}

/// Two routers given the same id: each says so once, at `error`, with
/// both addresses — not "connected to itself", not at every retry.
#[test]
fn two_routers_with_the_same_id_are_told_once_each() {
    let port = free_port();
    let first = start("A", Some(port), &[], None);
    let second = start("A", None, &[port], None);
    for node in [&first, &second] {
        wait_log(node, "the shared id not told", |log| {
            log.contains("two routers share the id A")
        });
    }
    // The second one redials 100 ms, 200 ms, … apart: several times in 4 s.
    std::thread::sleep(Duration::from_secs(4));
    let (first_log, second_log) = (first.ferry.stderr(), second.ferry.stderr());
    for log in [&first_log, &second_log] {
        let told = lines_with(log, "two routers share the id A");
        assert_eq!(told.len(), 1, "{log}");
        assert!(told[0].contains(" ERROR router{id=A}: "), "{log}");
        assert!(!log.contains("itself"), "{log}");
        assert!(
            told[0].ends_with("; give each router its own [router] id"),
            "{log}"
        );
        assert!(neighbours_connected(log).is_empty(), "{log}");
    }
    // Both addresses: the listener's and the dialer's.
    let told = lines_with(&first_log, "two routers share")[0];
    assert!(
        told.contains(&format!(
            "this one (at 127.0.0.1:{port}) and the one connecting from 127.0.0.1:"
        )),
        "{told}"
    );
    let told = lines_with(&second_log, "two routers share")[0];
    assert!(
        told.contains(&format!("and the one at 127.0.0.1:{port};"))
            && told.contains("this one (dialing from 127.0.0.1:"),
        "{told}"
    );
}

/// A connector that dials the router's own inter-router listener: said
/// once, as what it is.
#[test]
fn a_router_dialing_itself_is_told_once() {
    let port = free_port();
    let dir = TempDir::new();
    let toml = mesh_toml("A", Some(port), &[(port, 1)], false);
    let path = dir.write("ferry.toml", &toml);
    let mut ferry = Ferry::spawn(["run".as_ref(), "--config".as_ref(), path.as_os_str()], &[]);
    ferry.wait_listening(2, WAIT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ferry.stderr().contains("this router connected to itself") {
        assert!(Instant::now() < deadline, "{}", ferry.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(4));
    let log = ferry.stderr();
    let told = lines_with(&log, "connected to itself");
    assert_eq!(told.len(), 1, "{log}");
    assert!(
        told[0].contains(" ERROR router{id=A}: ")
            && told[0].ends_with("a connector dials one of its own inter-router listeners"),
        "{log}"
    );
    assert!(!log.contains("two routers share"), "{log}");
}

/// The other mistyped port: a connector that dials a router's client
/// (normal) listener. Each end says what is wrong, once.
#[test]
fn a_connector_dialing_a_client_port_says_so_once_at_both_ends() {
    let s = start("S", None, &[], None);
    let r = start("R", None, &[s.client.port()], None);
    wait_log(&r, "the dialer did not say", |log| {
        log.contains("is not a Ferry router's inter-router listener")
    });
    wait_log(&s, "the listener did not say", |log| {
        log.contains("use an inter-router listener")
    });
    std::thread::sleep(Duration::from_secs(4));
    let (r_log, s_log) = (r.ferry.stderr(), s.ferry.stderr());
    let told = lines_with(&r_log, "inter-router listener");
    assert_eq!(told.len(), 1, "{r_log}");
    assert!(
        told[0].contains(&format!(
            " WARN router{{id=R}}: connector[0] to {}: what answered is not a Ferry \
             router's inter-router listener (its open names no router; a normal \
             listener's port?); retrying",
            s.client
        )),
        "{r_log}"
    );
    let told = lines_with(&s_log, "use an inter-router listener");
    assert_eq!(told.len(), 1, "{s_log}");
    assert!(
        told[0].contains(" WARN router{id=S}: inter-router connection from 127.0.0.1:")
            && told[0].ends_with(
                "refused: router R connected to a normal listener; use an inter-router listener"
            ),
        "{s_log}"
    );
    assert_readable("R", &r_log);
    assert_readable("S", &s_log);
}
