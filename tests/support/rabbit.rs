//! A RabbitMQ 3.10 broker (Debian `rabbitmq-server`, with its AMQP 1.0
//! plugin) started by a test: its own node name, ports (AMQP and Erlang
//! distribution on free loopback ports), data and log directories, and
//! its own `epmd` on a free port (started here as a child, not the
//! system-wide daemon), so parallel tests never share anything. Stopped
//! by pid only: the broker's, then its `epmd`'s.
#![allow(dead_code)] // each test binary uses a different part

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{TempDir, free_port};

/// Where the Debian package puts the server.
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// How long a start may take (about 10 s on two cores).
const START: Duration = Duration::from_secs(90);

/// A running broker; stopped on drop.
pub struct Rabbit {
    /// Its AMQP (0-9-1 and 1.0) port on 127.0.0.1.
    pub port: u16,
    node: String,
    dist_port: u16,
    epmd_port: u16,
    broker: Option<Child>,
    epmd: Child,
    dir: TempDir,
}

impl Rabbit {
    /// Starts a fresh broker and waits until it takes AMQP connections.
    /// Panics (the test fails) if the server is not installed or does
    /// not come up in time.
    pub fn start() -> Self {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: apt-get install rabbitmq-server (the broker tests need a real broker)"
        );
        let dir = TempDir::new();
        let port = free_port();
        let dist_port = free_port();
        let epmd_port = free_port();
        let node = format!("ferrytest{port}@localhost");
        dir.write("enabled_plugins", "[rabbitmq_amqp1_0].\n");
        dir.write(
            "rabbitmq.conf",
            &format!(
                "listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\ndefault_user = ferry\ndefault_pass = ferry-secret\n"
            ),
        );
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("epmd (Erlang, a dependency of rabbitmq-server)");
        let mut rabbit = Self {
            port,
            node,
            dist_port,
            epmd_port,
            broker: None,
            epmd,
            dir,
        };
        rabbit.run();
        rabbit
    }

    /// Starts the server on this broker's node, ports and data.
    fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("server.out")).expect("server log");
        let child = Command::new(SERVER)
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        self.broker = Some(child);
        let deadline = Instant::now() + START;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.broker.as_mut().map(Child::try_wait) {
                panic!("rabbitmq-server exited ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "rabbitmq-server not listening after {START:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the server printed.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    /// `amqp://user:password@127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("amqp://ferry:ferry-secret@127.0.0.1:{}", self.port)
    }

    /// The `[[broker]]` entry for it, named `name`, dialed by `routers`.
    pub fn toml(&self, name: &str, routers: &[&str]) -> String {
        let routers: Vec<String> = routers.iter().map(|r| format!("{r:?}")).collect();
        format!(
            "[[broker]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"ferry\"\npassword = \"ferry-secret\"\nrouters = [{}]\n\n",
            self.port,
            routers.join(", ")
        )
    }

    /// Stops the server (SIGTERM: a clean stop, as a restart does), and
    /// waits for it to exit (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.broker.take() else {
            return;
        };
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Still running: the script and the Erlang VM it started (whose
        // pid the server wrote), by pid.
        let _ = child.kill();
        let _ = child.wait();
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid")) {
            signal(pid.trim().parse().unwrap_or(0), "KILL");
        }
    }

    /// Starts the server again, on the same node, ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Kills the broker's Erlang VM at once (SIGKILL, by the pid it
    /// wrote: a crash, nothing flushed), waits for its script to exit,
    /// and starts it again on the same node, ports and data.
    pub fn crash_and_restart(&mut self) {
        let pid = std::fs::read_to_string(self.dir.path().join("pid")).unwrap_or_default();
        let pid: u32 = pid.trim().parse().expect("the broker wrote its pid");
        signal(pid, "KILL");
        if let Some(mut child) = self.broker.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.run();
    }
}

fn signal(pid: u32, name: &str) {
    if pid == 0 {
        return;
    }
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        self.stop();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
    }
}
