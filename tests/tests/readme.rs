//! The README's Python snippets, run as written (only the router's URL
//! changed to the test router's) with Qpid Proton: a new user's first
//! commands must work, and the producer must not wait forever when no
//! consumer is attached.
//!
//! The Python is `/usr/bin/python3` with Debian's `python3-qpid-proton`,
//! or the one `FERRY_PYTHON` names (e.g. a virtual environment with
//! `pip install python-qpid-proton`, as the README says).

#[path = "../support/router.rs"]
mod router;

use std::process::{Output, Stdio};
use std::time::Duration;

use router::Router;
use tokio::process::Command;

/// The URL the README's snippets use.
const README_URL: &str = "amqp://127.0.0.1:5672";

/// What the producer says when nobody can take its message.
const NO_CONSUMER: &str =
    "no consumer yet: Ferry grants credit only when a consumer can take the message";

fn python() -> String {
    std::env::var("FERRY_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// Every `python3 -c '…'` program of the README, in order.
fn snippets() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let mut found = Vec::new();
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("python3 -c '") {
        let program = &rest[start + "python3 -c '".len()..];
        let end = program.find('\'').expect("the closing quote of a snippet");
        found.push(program[..end].to_owned());
        rest = &program[end + 1..];
    }
    found
}

/// The README's first consumer and producer (the "Run it" section).
fn consumer_and_producer() -> (String, String) {
    let all = snippets();
    let first = |what: &str| {
        all.iter()
            .find(|s| s.contains(what))
            .unwrap_or_else(|| panic!("no snippet with {what} in the README"))
            .clone()
    };
    (first("create_receiver"), first("create_sender"))
}

/// Starts `program` against `url` (in place of the README's).
fn spawn(program: &str, url: &str) -> tokio::process::Child {
    assert!(program.contains(README_URL), "{program}");
    Command::new(python())
        .arg("-c")
        .arg(program.replace(README_URL, url))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with Qpid Proton (see the README, or set FERRY_PYTHON)")
}

async fn finish(child: tokio::process::Child, what: &str) -> Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the README's {what} still running after 60 s"))
        .expect("wait for python")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_readme_producer_gives_up_saying_why_when_no_consumer_is_attached() {
    let r = Router::start("");
    let (_, producer) = consumer_and_producer();
    let started = std::time::Instant::now();
    let out = finish(spawn(&producer, &r.url()), "producer").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end(), NO_CONSUMER, "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "gave up too soon"
    );
}

#[tokio::test]
async fn the_readme_consumer_gets_what_the_readme_producer_sends() {
    let r = Router::start("");
    let (consumer, producer) = consumer_and_producer();
    let receiving = spawn(&consumer, &r.url());
    let out = finish(spawn(&producer, &r.url()), "producer").await;
    assert!(
        out.status.success(),
        "producer: {}\nrouter log:\n{}",
        text(&out.stderr),
        r.ferry.stderr()
    );
    assert_eq!(text(&out.stdout), "accepted\n");
    let got = finish(receiving, "consumer").await;
    assert!(got.status.success(), "consumer: {}", text(&got.stderr));
    assert_eq!(text(&got.stdout), "hello\n");
}

/// Every snippet that sends gives up after a while, saying why, rather
/// than hang (the mesh and container sections' too).
#[test]
fn every_readme_producer_has_a_timeout() {
    let senders: Vec<String> = snippets()
        .into_iter()
        .filter(|s| s.contains(".send("))
        .collect();
    assert!(senders.len() >= 2, "{senders:?}");
    for s in senders {
        assert!(
            s.contains("timeout=") && s.contains(NO_CONSUMER),
            "a README producer without a timeout:\n{s}"
        );
    }
}
