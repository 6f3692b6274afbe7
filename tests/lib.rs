//! Shared helpers for the black-box tests: find the real `ferry` binary, run
//! it as a child process with a hard timeout on every wait, and clean up.
//!
//! The binary is built by this package itself (the `ferry-under-test` bin
//! target compiles `router/src/main.rs`), so `cargo test` and `cargo nextest
//! run` always test the current source. Set `FERRY_BIN` to test another
//! build (e.g. a release binary).
//!
//! Children never inherit the caller's `FERRY_…` or `RUST_LOG` variables;
//! pass the ones a test needs explicitly. Readiness is the router's log line
//! `listening on ADDRESS (ROLE)` on stderr, printed at the default `info`
//! level: a test that raises the level must wait by connecting instead.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The default bound on every wait in these helpers.
pub const WAIT: Duration = Duration::from_secs(15);

/// Name of the bin target of this package that builds the router.
const BIN_NAME: &str = "ferry-under-test";

/// Path of the `ferry` binary under test: `$FERRY_BIN` if set, else the
/// `ferry-under-test` binary next to the running test executable
/// (`target/<profile>/`).
pub fn ferry_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/
    let mut dir = exe.parent().expect("executable directory").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("{BIN_NAME}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the tests through cargo (which builds it), or set FERRY_BIN",
        bin.display()
    );
    bin
}

/// Adds `name` to the users file `users` with the real `ferry user add`,
/// the password on stdin.
pub fn user_add(users: &Path, name: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(ferry_bin())
        .args(["user", "add", name, "--users"])
        .arg(users)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry user add");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write the password");
    let out = child.wait_with_output().expect("ferry user add");
    assert!(
        out.status.success(),
        "ferry user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port free on 127.0.0.1 for both TCP and UDP, reserved for this test
/// process until it exits. Prefer port 0 plus [`Ferry::wait_listening`]
/// where possible.
///
/// Taken below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port handed out by binding
/// port 0 lies in that range, and any outgoing connection made before the
/// router binds it (a client, another test's connector) can take it
/// (`Address already in use`). Tests run as parallel processes, so each
/// port is also claimed with a lock on a file in the temporary directory,
/// released by the kernel when the claiming process ends.
pub fn free_port() -> u16 {
    static CLAIMS: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    const LOWEST: u16 = 20_000;
    let below = ephemeral_low().min(32_768);
    if below <= LOWEST + 1_000 {
        return bound_port("127.0.0.1:0");
    }
    let span = u32::from(below - LOWEST);
    let dir = std::env::temp_dir().join("ferry-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port claims directory");
    let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos()),
    );
    for step in 0..span {
        let port = LOWEST + ((seed.wrapping_add(step) % span) as u16);
        let Ok(file) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let address = format!("127.0.0.1:{port}");
        if TcpListener::bind(&address).is_ok() && std::net::UdpSocket::bind(&address).is_ok() {
            CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            return port;
        }
    }
    bound_port("127.0.0.1:0")
}

/// The lowest port of the kernel's ephemeral range (Linux), else 32768.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn bound_port(address: &str) -> u16 {
    TcpListener::bind(address)
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create one under the system's temporary directory. Always a new
    /// directory: a directory some static keeps (the mesh PKI's) outlives
    /// its process, and once process ids wrap, a later test process with
    /// the same id would find that one's files (a router certificate from
    /// another CA: every TLS handshake of the run failed).
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        loop {
            let path = std::env::temp_dir().join(format!(
                "ferry-tests-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Self { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create temporary directory {}: {e}", path.display()),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` inside the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write temporary file");
        path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A TOML configuration with one `normal` listener on `127.0.0.1:port`.
pub fn listener_config(port: u16) -> String {
    format!("[[listener]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"normal\"\n")
}

/// Output of a finished `ferry` run.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Text collected from a child's pipe by a background thread.
#[derive(Debug, Default)]
struct Captured {
    /// The text so far, and whether the pipe has reached its end.
    state: Mutex<(String, bool)>,
    grew: Condvar,
}

impl Captured {
    /// Read `pipe` to its end on a thread, appending line by line.
    fn collect(pipe: impl Read + Send + 'static) -> Arc<Self> {
        let captured = Arc::new(Self::default());
        let sink = captured.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                sink.state.lock().unwrap().0.push_str(&line);
                sink.grew.notify_all();
                line.clear();
            }
            sink.state.lock().unwrap().1 = true;
            sink.grew.notify_all();
        });
        captured
    }

    fn snapshot(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.clone()
    }

    /// Wait until `done` returns `Some` on the text so far and whether the
    /// pipe has ended, or `timeout`.
    fn wait_for<T>(&self, timeout: Duration, done: impl Fn(&str, bool) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(found) = done(&state.0, state.1) {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self.grew.wait_timeout(state, left).unwrap().0;
        }
    }

    /// The whole text once the pipe has ended (or what there is after
    /// `timeout`).
    fn complete(&self, timeout: Duration) -> String {
        self.wait_for(timeout, |text, ended| ended.then(|| text.to_owned()))
            .unwrap_or_else(|| self.snapshot())
    }
}

/// A running `ferry` child process; killed (SIGKILL, its pid only) on drop
/// if it is still running.
#[derive(Debug)]
pub struct Ferry {
    child: Child,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    status: Option<ExitStatus>,
    config_dir: Option<TempDir>,
}

impl Ferry {
    /// Start `ferry ARGS` with `envs` added to a clean environment (no
    /// inherited `FERRY_…` or `RUST_LOG`).
    pub fn spawn<I, S>(args: I, envs: &[(&str, &str)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_under(&[], args, envs)
    }

    /// As [`spawn`](Self::spawn), run through the command `prefix`, which
    /// must exec `ferry ARGS` in its own process (e.g. `ip netns exec NS`:
    /// the child's pid is then the router's). An empty `prefix` runs
    /// `ferry` itself.
    pub fn spawn_under<I, S>(prefix: &[&str], args: I, envs: &[(&str, &str)]) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(ferry_bin());
                command
            }
            None => Command::new(ferry_bin()),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            let upper = name.to_string_lossy().to_ascii_uppercase();
            if upper.starts_with("FERRY_") || upper == "RUST_LOG" {
                command.env_remove(&name);
            }
        }
        command.envs(envs.iter().copied());
        let mut child = command.spawn().expect("spawn ferry");
        let stdout = Captured::collect(child.stdout.take().expect("stdout"));
        let stderr = Captured::collect(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
            status: None,
            config_dir: None,
        }
    }

    /// Start `ferry run -c FILE` with `toml` as the file, and wait until it
    /// logs its `listening on` lines (one per `[[listener]]`).
    pub fn start(toml: &str) -> Self {
        let dir = TempDir::new();
        let path = dir.write("ferry.toml", toml);
        let mut ferry = Self::spawn(
            ["run", "--config"]
                .map(OsStr::new)
                .into_iter()
                .chain([path.as_os_str()]),
            &[],
        );
        ferry.config_dir = Some(dir);
        let listeners = toml.matches("[[listener]]").count();
        ferry.wait_listening(listeners, WAIT);
        ferry
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until the router has logged `count` `listening on ADDRESS`
    /// lines and its `started:` line (its endpoints, readiness included,
    /// are then set up); returns the addresses (actual ports, also for
    /// port 0). Panics with the output so far on timeout or early exit.
    pub fn wait_listening(&mut self, count: usize, timeout: Duration) -> Vec<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.stderr.wait_for(Duration::from_millis(100), |text, _| {
                let addrs = listening_addrs(text);
                (addrs.len() >= count && text.contains(": started: ")).then_some(addrs)
            });
            if let Some(addrs) = found {
                return addrs;
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "ferry exited ({status}) before listening; stderr:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "ferry not listening after {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Connect to `addr`, retrying until `timeout`.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> TcpStream {
        let deadline = Instant::now() + timeout;
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(stream) => return stream,
                Err(error) if Instant::now() >= deadline => {
                    panic!(
                        "cannot connect to {addr}: {error}; stderr:\n{}",
                        self.stderr()
                    )
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.snapshot()
    }

    /// Waits (polling, at most `limit`) until the log has a line containing
    /// `needle`, and returns it; `None` after `limit`.
    pub async fn logged(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .stderr
                .snapshot()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned);
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.snapshot()
    }

    /// Send SIGTERM to the child (through `kill -TERM PID`).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Send SIGINT to the child, as ctrl-c does.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Wait for the child to exit, at most `timeout`; `None` if it is still
    /// running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the child to exit (panicking after `timeout`, having killed
    /// it) and for its output to be complete.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let Some(status) = self.wait_exit(timeout) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "ferry still running after {timeout:?}; stderr:\n{}",
                self.stderr()
            );
        };
        // The pipes close at exit; the reader threads then finish.
        Finished {
            status,
            stdout: self.stdout.complete(WAIT),
            stderr: self.stderr.complete(WAIT),
        }
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            self.print_log_tail();
        }
    }
}

impl Ferry {
    /// Print the end of the router's log above a failing test's panic:
    /// its last lines at info level and above (debug lines are left out
    /// to keep the story short); the whole log goes to a file in the
    /// directory `FERRY_TEST_LOGS` names, if set.
    fn print_log_tail(&self) {
        const LINES: usize = 60;
        let log = self.stderr.snapshot();
        if let Some(dir) = std::env::var_os("FERRY_TEST_LOGS") {
            let path = Path::new(&dir).join(format!("ferry-{}.log", self.child.id()));
            match std::fs::write(&path, &log) {
                Ok(()) => eprintln!(
                    "--- ferry pid {}: whole log in {}",
                    self.child.id(),
                    path.display()
                ),
                Err(e) => eprintln!("--- ferry pid {}: {}: {e}", self.child.id(), path.display()),
            }
        }
        let kept: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .collect();
        let tail = &kept[kept.len().saturating_sub(LINES)..];
        eprintln!(
            "--- ferry pid {}: last {} log lines at info and above ---\n{}",
            self.child.id(),
            tail.len(),
            tail.join("\n")
        );
    }
}

/// Run `ferry ARGS` to completion (see [`Ferry::spawn`] for the
/// environment), killing it and panicking after `timeout`.
pub fn run_ferry<I, S>(args: I, envs: &[(&str, &str)], timeout: Duration) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ferry::spawn(args, envs).finish(timeout)
}

/// The addresses in `listening on ADDRESS (ROLE)` log lines (the HTTP
/// endpoint's `http listening on ADDRESS` is not a listener: see
/// [`http_addr`]).
pub fn listening_addrs(log: &str) -> Vec<SocketAddr> {
    log.lines()
        .filter(|line| !line.contains("http listening on "))
        .filter_map(|line| line.split("listening on ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The address in the `http listening on ADDRESS` log line, if any.
pub fn http_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|line| line.split("http listening on ").nth(1))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// A message with one amqp-value section holding `s` (AMQP 1.0 §3.2.8),
/// encoded with Ferry's own codec: what interop tests send.
pub fn amqp_value(s: &str) -> bytes::Bytes {
    use ferry_proto::codec::{Described, Descriptor, Encode, Value};
    Value::Described(Box::new(Described {
        descriptor: Descriptor::Code(0x77),
        value: Value::String(s.into()),
    }))
    .to_bytes()
}

/// The string in a message's amqp-value section, whatever sections precede
/// it (peers may add a header or properties).
pub fn body_string(payload: bytes::Bytes) -> String {
    use ferry_proto::codec::{Decode, Decoder, Descriptor, Value};
    let mut d = Decoder::new(payload);
    while !d.is_empty() {
        if let Value::Described(section) = Value::decode(&mut d).expect("valid section")
            && section.descriptor == Descriptor::Code(0x77)
            && let Value::String(s) = section.value
        {
            return s.to_string();
        }
    }
    panic!("no amqp-value section");
}

/// Sends `n` unsettled messages (`body(i)` for the i-th) on `tx` as fast
/// as its credit allows, asserting each outcome is `accepted`; returns how
/// many were accepted (all of them) once every outcome is in.
pub async fn send_all_accepted(
    producer: &mut ferry_proto::client::Client,
    tx: ferry_proto::engine::LinkId,
    n: usize,
    body: impl Fn(usize) -> bytes::Bytes,
) -> usize {
    use ferry_proto::definitions::DeliveryState;
    let (mut sent, mut accepted) = (0, 0);
    while accepted < n {
        if sent < n && producer.credit(tx) > 0 {
            producer.send_nowait(tx, body(sent), false).unwrap();
            sent += 1;
            continue;
        }
        let o = producer.next_outcome().await.unwrap();
        assert_eq!(o.state, Some(DeliveryState::Accepted));
        accepted += 1;
        if sent < n && producer.credit(tx) == 0 {
            let _ = tokio::time::timeout(Duration::from_millis(1), producer.wait_credit(tx)).await;
        }
    }
    accepted
}

/// Runs `fut` for at most `limit`, failing the test with `what` after that.
pub async fn within<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {limit:?}"))
}
