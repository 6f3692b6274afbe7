//! Running a Qpid Proton script of `tests/interop/` against a router.
#![allow(dead_code)] // each test binary uses a different part

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

/// Bound on one script run, above every script's own time-out (20 s for
/// most, up to 150 s given on the command line): a script that gives up
/// prints what it saw, which says more than a kill.
const LIMIT: Duration = Duration::from_secs(180);

fn python() -> String {
    std::env::var("FERRY_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// Runs `tests/interop/SCRIPT URL ARGS…` and returns its JSON summary,
/// after checking that it finished in time and kept its connections;
/// `router_log` is shown when it did not.
pub async fn script(
    script: &str,
    url: &str,
    args: &[&str],
    router_log: &dyn Fn() -> String,
) -> Value {
    let path = format!("{}/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let child = Command::new(python())
        .arg(&path)
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with Qpid Proton (apt-get install python3-qpid-proton)");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} still running after {LIMIT:?} (killed)"))
        .expect("wait for the proton script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nrouter log:\n{}",
        out.status,
        router_log()
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{script} printed no summary; stderr: {stderr}"));
    let summary: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{script} summary is not JSON ({e}): {line}"));
    assert_eq!(
        summary["timeout"],
        json!(false),
        "{script} did not complete within its own timeout; what it saw: {summary}\nrouter log:\n{}",
        router_log()
    );
    assert_eq!(
        summary.get("failed"),
        None,
        "{script} lost its connection to the router: {summary}\nrouter log:\n{}",
        router_log()
    );
    summary
}
