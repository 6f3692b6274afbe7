//! Starting the real `ferry` binary for a test, on a free port.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_proto::client::{Client, ClientOptions};
use ferry_tests::{Ferry, TempDir, WAIT, run_ferry};
use serde_json::Value;

#[path = "pki.rs"]
mod pki;
#[allow(unused_imports)] // each test binary uses a different part
pub use pki::{Issued, Pki, Usage};

/// A running router and the address of its one client listener.
pub struct Router {
    /// The process (terminated on drop by `Ferry`).
    pub ferry: Ferry,
    /// Where clients connect.
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Router {
    /// Starts `ferry run` with one normal listener on a free port, plus
    /// `extra` TOML (address rules, limits).
    pub fn start(extra: &str) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// As [`start`](Self::start), with environment variables.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let toml = format!(
            "[router]\nid = \"test\"\n\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n\n{extra}"
        );
        let path = dir.write("ferry.toml", &toml);
        let mut ferry = Ferry::spawn(["run".as_ref(), "--config".as_ref(), path.as_os_str()], env);
        let addr = ferry.wait_listening(1, WAIT)[0];
        Router {
            ferry,
            addr,
            _dir: dir,
        }
    }

    /// A connected client.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr, ClientOptions::default())
            .await
            .expect("connect to ferry")
    }

    /// `amqp://host:port`.
    pub fn url(&self) -> String {
        format!("amqp://{}", self.addr)
    }
}

/// `ferry COMMAND --url amqp://ADDR ARGS` run to completion against the
/// router whose client listener is `addr`: what it printed (it must
/// succeed).
pub fn ferry_at(addr: SocketAddr, command: &[&str], args: &[&str]) -> String {
    let url = format!("amqp://{addr}");
    let mut all = command.to_vec();
    all.extend_from_slice(&["--url", url.as_str()]);
    all.extend_from_slice(args);
    let out = run_ferry(all, &[], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ferry {command:?} {args:?} failed: {}",
        out.stderr
    );
    out.stdout
}

/// `ferry stat --json ARGS` against the router at `addr`: the entities it
/// printed.
pub fn stat(addr: SocketAddr, args: &[&str]) -> Vec<Value> {
    let out = ferry_at(addr, &["stat", "--json"], args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Polls [`stat`] until `done` holds, or panics after 20 s.
pub fn stat_until(addr: SocketAddr, args: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = stat(addr, args);
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "ferry stat {args:?} never showed what was expected; last: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the router at `addr` knows consumers of `address` on
/// `remote` other routers (its `remoteCount`): a multicast message sent
/// before that misses the consumers it does not know of yet.
pub async fn wait_remote_consumers(addr: SocketAddr, address: &str, remote: u64) {
    let address = address.to_owned();
    tokio::task::spawn_blocking(move || {
        stat_until(addr, &["-a"], |rows| {
            rows.iter()
                .any(|r| r["address"] == address.as_str() && r["remoteCount"] == remote)
        })
    })
    .await
    .expect("ferry stat");
}

/// A router of a test mesh: a normal listener on a free port, optionally an
/// inter-router listener on `inter_port`, and connectors to the
/// inter-router ports of others (`(port, cost)`). Routers authenticate
/// each other over mutual TLS, with certificates from [`Pki::mesh`].
pub fn mesh_router(
    id: &str,
    inter_port: Option<u16>,
    connect: &[(u16, u32)],
    extra: &str,
) -> Router {
    start_mesh_router(&mesh_toml(id, inter_port, connect, true), inter_port, extra)
}

/// What carries the test meshes' inter-router links, from
/// `FERRY_TEST_MESH_TRANSPORT`: `tcp` (the default), `quic` (every link),
/// or `mixed` (every inter-router listener on TCP and QUIC at the same
/// port number, connectors alternating between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshTransport {
    Tcp,
    Quic,
    Mixed,
}

impl MeshTransport {
    /// The transport the environment asks for.
    pub fn from_env() -> Self {
        match std::env::var("FERRY_TEST_MESH_TRANSPORT").as_deref() {
            Ok("quic") => Self::Quic,
            Ok("mixed") => Self::Mixed,
            Ok("tcp") | Err(_) => Self::Tcp,
            Ok(other) => panic!("FERRY_TEST_MESH_TRANSPORT={other}: expected tcp, quic or mixed"),
        }
    }

    /// The transports inter-router listeners run.
    pub fn listeners(self) -> &'static [&'static str] {
        match self {
            Self::Tcp => &["tcp"],
            Self::Quic => &["quic"],
            Self::Mixed => &["tcp", "quic"],
        }
    }

    /// The transport of the next connector written.
    pub fn connector(self) -> &'static str {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
            Self::Mixed => {
                ["quic", "tcp"][NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2]
            }
        }
    }
}

/// The configuration [`mesh_router`] runs; `tls: false`: the inter-router
/// listener and connectors in plain TCP (allowed on loopback), whatever
/// [`MeshTransport::from_env`] says (QUIC always runs TLS).
pub fn mesh_toml(id: &str, inter_port: Option<u16>, connect: &[(u16, u32)], tls: bool) -> String {
    let transport = if tls {
        MeshTransport::from_env()
    } else {
        MeshTransport::Tcp
    };
    mesh_toml_over(id, inter_port, connect, tls, transport)
}

/// [`mesh_toml`] over `transport` (QUIC needs `tls`).
pub fn mesh_toml_over(
    id: &str,
    inter_port: Option<u16>,
    connect: &[(u16, u32)],
    tls: bool,
    transport: MeshTransport,
) -> String {
    let pki = Pki::mesh();
    let mut toml = format!("[router]\nid = \"{id}\"\nmode = \"interior\"\n\n");
    let secure = if tls {
        toml += &pki.profile("mesh", &pki.router_files(id));
        "tls = \"mesh\"\n"
    } else {
        ""
    };
    toml += "[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n\n";
    if let Some(p) = inter_port {
        let client_cert = if tls {
            "client_cert = \"required\"\n"
        } else {
            ""
        };
        for t in transport.listeners() {
            toml += &format!(
                "[[listener]]\nhost = \"127.0.0.1\"\nport = {p}\nrole = \"inter-router\"\n{secure}{client_cert}transport = \"{t}\"\n\n"
            );
        }
    }
    for (port, cost) in connect {
        let t = transport.connector();
        toml += &format!(
            "[[connector]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"inter-router\"\ncost = {cost}\n{secure}transport = \"{t}\"\n\n"
        );
    }
    toml
}

/// Starts `ferry run` on `toml` + `extra`, with an inter-router listener
/// on `inter_port` if given.
pub fn start_mesh_router(toml: &str, inter_port: Option<u16>, extra: &str) -> Router {
    let toml = format!("{toml}{extra}");
    let dir = TempDir::new();
    let path = dir.write("ferry.toml", &toml);
    let mut ferry = Ferry::spawn(
        ["run".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[("RUST_LOG", "info,ferry_router=debug")],
    );
    let listeners = toml.matches("[[listener]]").count();
    let addrs = ferry.wait_listening(listeners, WAIT);
    let addr = *addrs
        .iter()
        .find(|a| Some(a.port()) != inter_port)
        .expect("the normal listener");
    Router {
        ferry,
        addr,
        _dir: dir,
    }
}

/// The neighbours a router's log says connected, one entry per
/// `neighbour X connected (…)` line, in order.
pub fn neighbours_connected(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| {
            line.split_once("neighbour ")?
                .1
                .split_once(" connected (")?
                .0
                .into()
        })
        .collect()
}

/// A line of three routers A - B - C: A and C dial B.
pub fn line() -> (Router, Router, Router) {
    let b_port = ferry_tests::free_port();
    let b = mesh_router("B", Some(b_port), &[], "");
    let a = mesh_router("A", None, &[(b_port, 1)], "");
    let c = mesh_router("C", None, &[(b_port, 1)], "");
    (a, b, c)
}

/// A router process started from a config file of our own, so that it can
/// be stopped and started again with exactly the same file (and so the
/// same id and ports).
pub struct Restartable {
    _dir: TempDir,
    path: PathBuf,
    listeners: usize,
}

impl Restartable {
    /// Writes `toml` to a file of its own.
    pub fn new(toml: String) -> Self {
        let dir = TempDir::new();
        let path = dir.write("ferry.toml", &toml);
        let listeners = toml.matches("[[listener]]").count();
        Self {
            _dir: dir,
            path,
            listeners,
        }
    }

    /// Starts `ferry run` on the file and waits until it listens.
    pub fn start(&self) -> Ferry {
        let mut ferry = Ferry::spawn(
            ["run".as_ref(), "--config".as_ref(), self.path.as_os_str()],
            &[("RUST_LOG", "info,ferry_router=debug")],
        );
        ferry.wait_listening(self.listeners, WAIT);
        ferry
    }
}
