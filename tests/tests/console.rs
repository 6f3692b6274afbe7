//! The live console in headless Chromium (Debian's `chromium`, run as
//! the browser it is: `--dump-dom` after the page's scripts have polled,
//! `--screenshot` for a picture): it shows the three routers of a mesh,
//! and one fewer within a second of one being killed. The screenshot is
//! kept in `target/test-artifacts/console.png`. The console's JSON is
//! refused to clients off the router's host.

#[path = "../support/http.rs"]
mod http;
#[path = "../support/router.rs"]
mod router;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::http_addr;
use router::mesh_router;

/// `[http]` on an ephemeral loopback port.
const HTTP: &str = "[http]\nhost = \"127.0.0.1\"\nport = 0\n";

/// Chromium, headless, on `url`, with `args`; a bounded run. Its own
/// virtual time lets the page's polls run `budget_ms` before it reports.
fn chromium(url: &str, args: &[&str], budget_ms: u32) -> String {
    let browser = std::env::var("FERRY_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempdir_path("chromium-profile");
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--window-size=1280,900",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{browser} (apt-get install chromium): {e}"));
    assert!(
        out.status.success(),
        "{browser} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferry-console-{}-{name}", std::process::id()))
}

/// The routers the page draws, from its DOM.
fn routers_shown(endpoint: SocketAddr) -> Vec<String> {
    let dom = chromium(&format!("http://{endpoint}/console"), &["--dump-dom"], 2000);
    let mut ids: Vec<String> = dom
        .split("data-router=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_console_draws_the_mesh_and_loses_a_killed_router_within_a_second() {
    let b_port = ferry_tests::free_port();
    let b = mesh_router("B", Some(b_port), &[], "");
    let a = mesh_router("A", None, &[(b_port, 1)], HTTP);
    let c = mesh_router("C", None, &[(b_port, 1)], "");
    let endpoint = http_addr(&a.ferry.stderr()).expect("A's http listening line");

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut shown = routers_shown(endpoint);
    while shown != ["A", "B", "C"] {
        assert!(Instant::now() < deadline, "the console shows {shown:?}");
        std::thread::sleep(Duration::from_millis(200));
        shown = routers_shown(endpoint);
    }

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("console.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &format!("http://{endpoint}/console"),
        &[&format!("--screenshot={}", png.display())],
        2000,
    );
    let image = std::fs::read(&png).expect("the screenshot");
    assert!(image.starts_with(b"\x89PNG"), "a PNG");

    // Killed outright (SIGKILL, its pid only): no AMQP close, B sees
    // the connection drop.
    let status = Command::new("kill")
        .args(["-KILL", &c.ferry.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    // What a page loaded now shows: polled within its first second.
    let shown = routers_shown(endpoint);
    assert_eq!(
        shown,
        ["A", "B"],
        "{:?} after C was killed",
        killed.elapsed()
    );
    drop(b);
}

#[test]
fn the_console_is_served_to_the_routers_own_host_only() {
    let a = router::Router::start("[http]\nhost = \"0.0.0.0\"\nport = 0\n");
    let port = http_addr(&a.ferry.stderr())
        .expect("http listening line")
        .port();
    let near = SocketAddr::from(([127, 0, 0, 1], port));
    let page = http::get(near, "/console");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Ferry console</title>"));
    let mesh = http::get(near, "/api/mesh");
    assert_eq!(mesh.status, 200);
    let json: serde_json::Value = serde_json::from_str(&mesh.body).unwrap();
    assert_eq!(json["router"], "test");
    // From another address of this host (not loopback): refused, while
    // the metrics are served.
    let other = non_loopback_ip().expect("a non-loopback address to test from");
    let far = SocketAddr::new(other, port);
    for path in ["/console", "/api/mesh", "/api/addresses", "/api/links"] {
        assert_eq!(http::get(far, path).status, 403, "{path} from {other}");
    }
    assert_eq!(http::get(far, "/metrics").status, 200);
}

fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // The address the host would use to reach the outside: no packet is
    // sent by connecting a UDP socket.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback()).then_some(ip)
}
