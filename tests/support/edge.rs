//! Edge routers for a test: interior routers with an `edge` listener, edge
//! routers whose `edge` connectors dial them (in order of preference), and
//! what their logs say about the uplinks.
//!
//! Include after `router.rs`:
//! `#[path = "../support/router.rs"] mod router;`
//! `#[path = "../support/edge.rs"] mod edge;`
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_proto::client::{Client, ClientOptions};
use ferry_tests::{Ferry, TempDir, WAIT};

use super::router::{Pki, mesh_toml};

/// How long an uplink (or its loss) may take to show in a log: far above
/// what it takes (an edge dials its next interior router within a second),
/// far below "never".
pub const UPLINK_WAIT: Duration = Duration::from_secs(15);

/// A running router of an edge test: interior or edge.
pub struct Node {
    /// Its id.
    pub id: String,
    /// The process (SIGKILLed on drop by `Ferry` if still running).
    pub ferry: Ferry,
    /// Where clients connect (its `normal` listener).
    pub addr: SocketAddr,
    /// Where edge routers connect (an interior router's `edge` listener).
    pub edge_addr: Option<SocketAddr>,
    _dir: TempDir,
}

impl Node {
    /// A connected client.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr, ClientOptions::default())
            .await
            .unwrap_or_else(|e| panic!("connect to {} at {}: {e}", self.id, self.addr))
    }

    /// The port of the `edge` listener (interior routers only).
    pub fn edge_port(&self) -> u16 {
        self.edge_addr
            .unwrap_or_else(|| panic!("{} has no edge listener", self.id))
            .port()
    }

    /// Its configuration file.
    pub fn config(&self) -> std::path::PathBuf {
        self._dir.path().join("ferry.toml")
    }

    /// Everything the router logged so far.
    pub fn log(&self) -> String {
        self.ferry.stderr()
    }

    /// SIGKILL (the router's pid only, through `kill -KILL PID`): its
    /// connections drop without an AMQP close. Returns the moment of the
    /// kill, as an instant and as wall-clock time (for log timestamps).
    /// Waits (bounded) until the process has gone.
    pub fn kill(&mut self) -> (Instant, SystemTime) {
        let wall = SystemTime::now();
        let at = Instant::now();
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(self.ferry.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", self.ferry.pid());
        assert!(
            self.ferry.wait_exit(WAIT).is_some(),
            "{} still running {WAIT:?} after SIGKILL",
            self.id
        );
        (at, wall)
    }

    /// SIGSTOP (through `kill -STOP PID`): the router stops, its sockets
    /// stay open and silent. `Ferry`'s drop SIGKILLs it. Returns the
    /// moment, as [`kill`](Self::kill) does.
    pub fn stop(&mut self) -> (Instant, SystemTime) {
        let wall = SystemTime::now();
        let at = Instant::now();
        let status = Command::new("kill")
            .arg("-STOP")
            .arg(self.ferry.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -STOP {} failed", self.ferry.pid());
        (at, wall)
    }

    /// Waits until the log has a line containing `needle` (polling), at
    /// most `limit`; returns the line. Panics with the log otherwise.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let line = self.ferry.logged(needle, limit).await;
        line.unwrap_or_else(|| {
            panic!(
                "{}'s log has no line with {needle:?} after {limit:?}; log:\n{}",
                self.id,
                self.log()
            )
        })
    }

    /// Waits until this edge router logs its uplink to interior router
    /// `interior` connected; returns the line.
    pub async fn wait_uplink(&self, interior: &str) -> String {
        self.wait_log(&uplink_connected(interior), UPLINK_WAIT)
            .await
    }
}

/// An edge router's log line (prefix) for an uplink that came up.
pub fn uplink_connected(interior: &str) -> String {
    format!("uplink to interior router {interior} connected (to 127.0.0.1:")
}

/// An edge router's log line (prefix) for an uplink that went.
pub fn uplink_lost(interior: &str) -> String {
    format!("uplink to interior router {interior} lost (")
}

/// An interior router's log line (prefix) for an edge router that came.
pub fn edge_connected(edge: &str) -> String {
    format!("edge router {edge} connected (from ")
}

/// An interior router's log line for an edge router that went.
pub fn edge_disconnected(edge: &str) -> String {
    format!("edge router {edge} disconnected")
}

/// The interior routers an edge's log says its uplink connected to, one
/// entry per `uplink to interior router X connected (…)` line, in order.
pub fn uplinks_connected(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split_once("uplink to interior router ")?.1;
            let (id, _) = rest.split_once(" connected (")?;
            Some(id.to_owned())
        })
        .collect()
}

/// The configuration of an interior router: that of a mesh router
/// ([`mesh_toml`]: a normal listener on port 0, an inter-router listener on
/// `inter_port` if given, connectors to the inter-router ports `connect`
/// with their costs; mutual TLS between interior routers if `mesh_tls`)
/// plus an `edge` listener on 127.0.0.1 port 0, over TLS with the router's
/// certificate and `client_cert = "required"` if `edge_tls`.
pub fn interior_toml(
    id: &str,
    inter_port: Option<u16>,
    connect: &[(u16, u32)],
    mesh_tls: bool,
    edge_tls: bool,
) -> String {
    interior_toml_at(id, inter_port, connect, mesh_tls, edge_tls, 0)
}

/// [`interior_toml`] with the edge listener on `edge_port` (a router
/// restarted on the same file is found by its edge routers again).
pub fn interior_toml_at(
    id: &str,
    inter_port: Option<u16>,
    connect: &[(u16, u32)],
    mesh_tls: bool,
    edge_tls: bool,
    edge_port: u16,
) -> String {
    let mut toml = mesh_toml(id, inter_port, connect, mesh_tls);
    if edge_tls && !mesh_tls {
        // mesh_toml wrote no profile: add the one the edge listener uses.
        let pki = Pki::mesh();
        toml = pki.profile("mesh", &pki.router_files(id)) + &toml;
    }
    toml += &format!("[[listener]]\nhost = \"127.0.0.1\"\nport = {edge_port}\nrole = \"edge\"\n");
    if edge_tls {
        toml += "tls = \"mesh\"\nclient_cert = \"required\"\n";
    }
    toml + "\n"
}

/// The configuration of edge router `id`: a normal listener on 127.0.0.1
/// port 0 and one `edge` connector per port of `uplinks`, in that order
/// (of preference); over TLS with the edge's certificate (naming `id`) if
/// `tls`.
pub fn edge_toml(id: &str, uplinks: &[u16], tls: bool) -> String {
    let mut toml = format!("[router]\nid = \"{id}\"\nmode = \"edge\"\n\n");
    if tls {
        let pki = Pki::mesh();
        toml += &pki.profile("mesh", &pki.router_files(id));
    }
    toml += "[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n\n";
    for port in uplinks {
        toml += &format!("[[connector]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"edge\"\n");
        if tls {
            toml += "tls = \"mesh\"\n";
        }
        toml += "\n";
    }
    toml
}

/// Starts `ferry run` on `toml` (the router's id is `id`) and waits until
/// it listens; finds its normal and edge listeners by the roles its
/// `listening on ADDR (ROLE)` lines name.
pub fn start(id: &str, toml: &str) -> Node {
    let dir = TempDir::new();
    let path = dir.write("ferry.toml", toml);
    let mut ferry = Ferry::spawn(
        ["run".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[("RUST_LOG", "info,ferry_router=debug")],
    );
    let listeners = toml.matches("[[listener]]").count();
    ferry.wait_listening(listeners, WAIT);
    let log = ferry.stderr();
    let addr = listening(&log, "normal")
        .unwrap_or_else(|| panic!("{id} has no normal listener; log:\n{log}"));
    let edge_addr = listening(&log, "edge");
    Node {
        id: id.to_owned(),
        ferry,
        addr,
        edge_addr,
        _dir: dir,
    }
}

/// The address of the first `listening on ADDR (ROLE)` line for `role`.
fn listening(log: &str, role: &str) -> Option<SocketAddr> {
    let suffix = format!(" ({role})");
    log.lines()
        .filter(|line| !line.contains("http listening on "))
        .filter_map(|line| line.split("listening on ").nth(1))
        .find(|rest| rest.trim_end().ends_with(&suffix))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// A standalone interior router `id` with an edge listener (plain TCP on
/// loopback), no inter-router listener.
pub fn interior(id: &str) -> Node {
    start(id, &interior_toml(id, None, &[], false, false))
}

/// An edge router `id` dialing the edge listeners of `uplinks`, in order.
pub fn edge(id: &str, uplinks: &[&Node]) -> Node {
    let ports: Vec<u16> = uplinks.iter().map(|n| n.edge_port()).collect();
    start(id, &edge_toml(id, &ports, false))
}

/// The time of day (seconds since midnight UTC) of a log line's leading
/// RFC 3339 timestamp (`2026-12-06T10:14:23.915005Z  INFO …`).
pub fn log_time_of_day(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.strip_suffix('Z')?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The time of day (seconds since midnight UTC) of `t`.
pub fn time_of_day(t: SystemTime) -> f64 {
    let since = t.duration_since(UNIX_EPOCH).expect("after 1970");
    (since.as_secs() % 86_400) as f64 + f64::from(since.subsec_micros()) / 1e6
}

/// How long after `t` the log line was written (negative: before), from
/// its timestamp; across midnight too.
pub fn logged_after(line: &str, t: SystemTime) -> Option<Duration> {
    let mut d = log_time_of_day(line)? - time_of_day(t);
    if d < -43_200.0 {
        d += 86_400.0;
    }
    (d >= 0.0).then(|| Duration::from_secs_f64(d))
}
