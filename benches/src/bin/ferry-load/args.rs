//! Command line.

use clap::Parser;

/// Settle mode of the producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Settle {
    /// Sent unsettled (at least once): at most `--window` deliveries in
    /// flight per producer, each outcome (accepted, rejected, released,
    /// modified) counted; a message that never reaches a consumer is "lost".
    Unsettled,
    /// Sent pre-settled (at most once): an endpoint may drop them; a
    /// message that never reaches a consumer is "dropped".
    Presettled,
}

/// The link each `--idle` connection holds (`--idle-link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleLink {
    /// A receiver from the address, granted --credit.
    Receiver,
    /// A sender to the address.
    Sender,
}

const ABOUT: &str = "A router-agnostic AMQP 1.0 load generator";

const LONG_ABOUT: &str = "\
A router-agnostic AMQP 1.0 load generator.

Opens --producers sender connections and --consumers receiver connections to
any AMQP 1.0 endpoint (a router, a broker, or the mesh of routers you name
with --producer-url/--consumer-url), all on one address, and reports
throughput, one-way latency percentiles and what became of every message.
It needs nothing but URLs: it does not start or configure the endpoint.

Every message carries its send time and an id (producer, sequence number) in
its body, so consumers measure latency and count each message once: lost,
dropped and duplicated messages are reported, not guessed.

The clock starts once every producer is attached and one has link credit
(so connection set-up and mesh convergence are not timed) and stops at the
last message received (at the last outcome, without consumers). While it
runs, a progress line is printed on stderr every --progress seconds; the
report goes to stdout, as text or, with --json, as one JSON object.";

const AFTER_LONG_HELP: &str = "\
EXAMPLES:
    # Against a router you started yourself:
    ferry-load --url amqp://127.0.0.1:5672 --size 100 --count 200000

    # Pre-settled, 1 KiB, 4 producers and 2 consumers, for 20 seconds:
    ferry-load --url amqp://host:5672 --producers 4 --consumers 2 \\
        --size 1024 --settle presettled --duration 20

    # Open loop at 10,000 msg/s, latency from each message's intended send time:
    ferry-load --url amqp://host:5672 --rate 10000 --duration 10

    # Across a mesh: producers on router A, consumers on router C:
    ferry-load --producer-url amqp://a:5672 --consumer-url amqp://c:5672

    # Multicast 1 -> 10 (every consumer must get every message):
    ferry-load --url amqp://host:5672 --address multicast.load --consumers 10 --multicast

    # 1,000 producers at 10 msg/s each (the process needs ~1,000 fds: ulimit -n):
    ferry-load --url amqp://host:5672 --producers 1000 --rate 10000 --duration 20

    # The generator's own ceiling, against an in-process sink:
    ferry-load --sink --count 500000

    # 10,000 idle connections held for 60 s (memory per connection):
    ferry-load --url amqp://host:5672 --idle 10000 --hold 60

    # The same, each holding a receiver on its own address, as devices do:
    ferry-load --url amqp://host:5672 --idle 10000 --hold 60 \\
        --idle-link receiver --address 'device/{i}' --credit 10

OUTPUT (text, or the same fields with --json):
    sent, received          transfers sent by producers; deliveries received
                            by consumers (a multicast message counts once
                            per consumer)
    received_unique         deliveries of this run's messages that were not
                            duplicates (per consumer for --multicast, over
                            all consumers otherwise)
    duplicates, foreign     deliveries seen before; deliveries that are not
                            this run's messages (no stamp, or stamped by
                            another ferry-load process: latency is still
                            recorded for those)
    accepted, rejected,     outcomes of unsettled deliveries; `unsettled` is
    released, modified,     what was sent but never got an outcome
    unsettled
    expected                deliveries the consumers should see: sent minus
                            rejected/released/modified, times --consumers
                            with --multicast
    lost / dropped          expected minus received_unique: `lost` for
                            unsettled runs (should be 0), `dropped` for
                            pre-settled runs (an endpoint may drop those)
    msgs_per_s, mb_per_s    deliveries received per second (body bytes);
                            without consumers, outcomes (or sends) per second
    per_consumer            each consumer's deliveries and rate
    send_msgs_per_s         transfers sent per second over the producers' run
    latency                 p50, p90, p99, p99.9, max in microseconds, one-way
                            from the send stamp to arrival at the consumer.
                            Closed loop: the stamp is the actual send time.
                            Open loop (--rate): the earlier of the intended
                            and the actual send time, so a producer held back
                            by the endpoint is charged for the wait
                            (coordinated omission). With producers and
                            consumers on different machines, their clocks
                            must agree.
    generator_cpu_s         this process's user+system CPU time over the run
                            (from /proc/self/stat; null where unavailable)
    error                   the first failure, if any (exit status 1)

EXIT STATUS:
    0 the run completed (even with lost or dropped messages: read the report)
    1 a connection or link failed (the report, with `error`, is still printed)
    2 invalid command line";

/// The SASL mechanism a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sasl {
    /// No credentials.
    Anonymous,
    /// The URL's user and password, in clear inside the connection (use
    /// with amqps).
    Plain,
    /// The URL's user and password, by SCRAM-SHA-256 (RFC 7677): the
    /// password never crosses the wire.
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// The identity of the client certificate (--cert/--key).
    External,
}

/// A router-agnostic AMQP 1.0 load generator.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferry-load",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Args {
    /// Endpoint for producers and consumers:
    /// `amqp[s]://[user:password@]host[:port]` (port 5672, or 5671 for
    /// amqps; a path is ignored). amqps: TLS, verified against --ca.
    #[arg(long, default_value = "amqp://127.0.0.1:5672", value_name = "URL")]
    pub url: String,

    /// Endpoints for producers, comma-separated (overrides --url for
    /// producers). Producer i connects to URL number i modulo their count.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    pub producer_url: Vec<String>,

    /// Endpoints for consumers, comma-separated (overrides --url for
    /// consumers). Consumer i connects to URL number i modulo their count.
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    pub consumer_url: Vec<String>,

    /// Producer connections (each one connection, one session, one sender
    /// link, one tokio task; all in this process). 0: consumers only, for
    /// --duration seconds, e.g. with the producers in another ferry-load
    /// process or on another machine (latency is still measured; nothing
    /// counts as lost).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub producers: usize,

    /// Consumer connections (each one connection, one session, one receiver
    /// link). 0: no consumers; then msgs/s counts outcomes (unsettled) or
    /// sends (pre-settled), and nothing is lost or dropped by definition.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub consumers: usize,

    /// Address producers send to (link target) and consumers receive from
    /// (link source).
    #[arg(long, default_value = "load", value_name = "ADDRESS")]
    pub address: String,

    /// Message body size in bytes, at least 16 (the send stamp and the
    /// message id). On the wire each message has 8 more bytes (the data
    /// section's header); MB/s counts body bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub size: usize,

    /// Messages each producer sends (ignored with --duration).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub count: u64,

    /// Send for this many seconds instead of --count messages.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Settle mode of the producers.
    #[arg(long, value_enum, default_value_t = Settle::Unsettled)]
    pub settle: Settle,

    /// Unsettled deliveries in flight per producer, at most: a producer
    /// waits for outcomes before sending more (the endpoint's credit
    /// limits it too). Ignored for pre-settled runs.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub window: usize,

    /// Total target rate in messages/s over all producers (open loop):
    /// each producer sends every producers/RATE seconds, the producers
    /// staggered evenly, and latency counts from the intended send time.
    /// Without it: closed loop, each producer as fast as credit and
    /// --window allow.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,

    /// Credit each consumer grants; it tops up to this when half is used.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub credit: u32,

    /// Producers give every message a header with this priority (AMQP 1.0
    /// §3.2.1: 0 to 9, higher first; without it, no header: priority 4).
    /// Consumers report latency per priority for messages that carry one.
    #[arg(long, value_name = "0-255")]
    pub priority: Option<u8>,

    /// Each consumer takes at most this many messages a second (a slow
    /// consumer: it reads from its connection only when it takes the next
    /// messages, so the endpoint's output to it backs up). Without it:
    /// as fast as they come.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub consume_rate: Option<f64>,

    /// Consumers' socket receive buffer in bytes (`SO_RCVBUF`, set before
    /// connecting): what the kernel holds for a consumer that has not read
    /// it yet. Without it, the system's (on Linux autotuned, up to
    /// `net.ipv4.tcp_rmem`'s maximum: megabytes on loopback).
    #[arg(long, value_name = "BYTES")]
    pub recv_buffer: Option<u32>,

    /// The address is multicast: every consumer expects every message
    /// (expected deliveries = sent × consumers). Without it every message
    /// is expected once, by any consumer.
    #[arg(long)]
    pub multicast: bool,

    /// Each consumer closes its connection right after it has received and
    /// accepted this many messages, without waiting for the run to end
    /// (the producers still wait for every outcome). With a consumer on
    /// another router than the producer, this checks that a consumer's
    /// last outcomes still reach the producer when its connection ends at
    /// once (`benches/false-outcome.sh`).
    #[arg(long, value_name = "N")]
    pub close_after: Option<u64>,

    /// After the producers finish, wait at most this many seconds for
    /// messages still on their way (the wait ends sooner once everything
    /// expected arrived, or once nothing arrived for --quiet-ms).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub drain_secs: f64,

    /// After the producers finish, stop waiting once nothing has arrived
    /// for this many milliseconds (pre-settled messages an endpoint dropped
    /// will never come).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub quiet_ms: u64,

    /// Seconds to wait for every producer to be attached, and one granted
    /// credit, before the clock starts (a mesh needs a moment to learn
    /// where the consumers are).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub start_timeout: f64,

    /// Seconds to wait after the consumers attach before the producers
    /// connect: in a mesh, time for every router to learn of every
    /// consumer (a multicast producer granted credit before then would not
    /// reach the consumers the mesh does not know of yet).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub start_delay: f64,

    /// Connections opened at once while connecting (producers, consumers
    /// and --idle connections).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub connect_concurrency: usize,

    /// Instead of an endpoint, use a trivial AMQP peer inside this process
    /// (the same `ferry_proto` engine, nothing routed): it accepts every
    /// message the producers send, and sends the consumers as many stamped
    /// messages as the producers send in all (every consumer all of them
    /// with --multicast). Measures the generator's own ceiling; the peer
    /// shares the process and its CPU, so the ceiling is a lower bound.
    /// --url and friends are ignored.
    #[arg(long)]
    pub sink: bool,

    /// Instead of sending: open this many idle connections (each with a
    /// session, no links), print `idle connections open: N` on stderr, and
    /// hold them for --hold seconds. For measuring an endpoint's memory per
    /// connection. Needs N file descriptors (ulimit -n).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle: usize,

    /// With --idle: attach one link on each idle connection's session, as
    /// an IoT device holds one: a receiver granted --credit, or a sender.
    /// Its address is --address with `{i}` replaced by the connection's
    /// number (e.g. `--address 'device/{i}'`: one address per device).
    #[arg(long, value_enum, value_name = "ROLE")]
    pub idle_link: Option<IdleLink>,

    /// Seconds to hold the --idle connections.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub hold: f64,

    /// Seconds between progress lines on stderr; 0: none. On a terminal the
    /// line is rewritten in place.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub progress: f64,

    /// Print the report as one JSON object on stdout (fields: see OUTPUT
    /// in --help).
    #[arg(long)]
    pub json: bool,

    /// PEM trust anchors for amqps:// endpoints (only these are trusted).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,

    /// PEM client certificate to present over amqps (with --key).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,

    /// The name the endpoint's certificate must carry [default: the URL's
    /// host].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// The host name sent in each connection's open: the virtual host
    /// (tenant) on a router with `[[vhost]]`s.
    #[arg(long, value_name = "NAME")]
    pub vhost: Option<String>,

    /// amqps: a full TLS handshake for every connection, no session
    /// resumption (for measuring an endpoint's handshake rate).
    #[arg(long)]
    pub no_tls_resumption: bool,

    /// SASL mechanism [default: plain with user:password@ in the URL,
    /// external with --cert, else anonymous].
    #[arg(long, value_enum, value_name = "MECHANISM")]
    pub sasl: Option<Sasl>,
}

fn positive(name: &str, v: f64) -> anyhow::Result<()> {
    if !(v.is_finite() && v > 0.0) {
        anyhow::bail!("{name} must be a positive number of seconds or messages/s, got {v}");
    }
    Ok(())
}

impl Args {
    /// Checks option combinations clap cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.size < crate::payload::MIN_SIZE {
            anyhow::bail!("--size must be at least {}", crate::payload::MIN_SIZE);
        }
        if self.size > u32::MAX as usize - 16 {
            anyhow::bail!("--size is too large");
        }
        if self.producers == 0
            && self.idle == 0
            && (self.consumers == 0 || self.duration.is_none() || self.sink)
        {
            anyhow::bail!(
                "--producers 0 (consumers only) needs --consumers and --duration, and no --sink"
            );
        }
        if self.producers >= crate::payload::MAX_PRODUCERS {
            anyhow::bail!(
                "--producers must be below {}",
                crate::payload::MAX_PRODUCERS
            );
        }
        if self.window == 0 {
            anyhow::bail!("--window must be at least 1");
        }
        if self.credit == 0 {
            anyhow::bail!("--credit must be at least 1");
        }
        if self.connect_concurrency == 0 {
            anyhow::bail!("--connect-concurrency must be at least 1");
        }
        if let Some(r) = self.consume_rate {
            positive("--consume-rate", r)?;
        }
        if let Some(r) = self.rate {
            positive("--rate", r)?;
        }
        if let Some(d) = self.duration {
            positive("--duration", d)?;
        }
        positive("--start-timeout", self.start_timeout)?;
        if !(self.drain_secs.is_finite() && self.drain_secs >= 0.0) {
            anyhow::bail!("--drain-secs must be 0 or more");
        }
        if !(self.progress.is_finite() && self.progress >= 0.0) {
            anyhow::bail!("--progress must be 0 or more");
        }
        if self.idle_link.is_some() && self.idle == 0 {
            anyhow::bail!("--idle-link needs --idle");
        }
        if !(self.hold.is_finite() && self.hold >= 0.0) {
            anyhow::bail!("--hold must be 0 or more");
        }
        if !self.sink {
            for u in self.producer_urls().iter().chain(&self.consumer_urls()) {
                crate::connect::options(self, u, String::new())?;
            }
        }
        Ok(())
    }

    /// Producer endpoints.
    pub fn producer_urls(&self) -> Vec<String> {
        if self.producer_url.is_empty() {
            vec![self.url.clone()]
        } else {
            self.producer_url.clone()
        }
    }

    /// Consumer endpoints.
    pub fn consumer_urls(&self) -> Vec<String> {
        if self.consumer_url.is_empty() {
            vec![self.url.clone()]
        } else {
            self.consumer_url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_an_address_and_a_login() {
        use ferry_proto::engine::SaslClientConfig;
        let args = Args::parse_from(["ferry-load"]);
        let (addr, o) = crate::connect::options(&args, "amqp://u:p@h:1/x", "c".into()).unwrap();
        assert_eq!(addr, "h:1");
        assert!(matches!(o.sasl, Some(SaslClientConfig::Plain { .. })));
        let (addr, o) = crate::connect::options(&args, "amqp://[::1]", "c".into()).unwrap();
        assert_eq!(addr, "[::1]:5672");
        assert_eq!(o.sasl, Some(SaslClientConfig::Anonymous));
        assert!(
            crate::connect::options(&args, "amqps://h", "c".into()).is_err(),
            "amqps without --ca"
        );
        assert!(crate::connect::options(&args, "h:1", "c".into()).is_err());
        let scram = Args::parse_from(["ferry-load", "--sasl", "scram-sha-256"]);
        assert!(
            crate::connect::options(&scram, "amqp://h", "c".into()).is_err(),
            "no user"
        );
    }

    #[test]
    fn help_documents_every_option() {
        use clap::CommandFactory;
        let cmd = Args::command();
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(
                a.get_help().is_some() || a.get_long_help().is_some(),
                "--{id} has no help"
            );
        }
    }
}
