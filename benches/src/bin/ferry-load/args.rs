//! Command line.

use clap::Parser;

/// Settle mode of the producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Settle {
    /// Unsettled, at most `--window` in flight per producer; outcomes counted.
    Unsettled,
    /// Pre-settled (at most once).
    Presettled,
}

/// A router-agnostic AMQP 1.0 load generator.
#[derive(Debug, Clone, Parser)]
#[command(name = "ferry-load", version)]
pub struct Args {
    /// Endpoint for producers and consumers (`amqp://host:port`).
    #[arg(long, default_value = "amqp://127.0.0.1:5672")]
    pub url: String,
    /// Endpoints for producers (comma-separated; overrides --url; round-robin).
    #[arg(long, value_delimiter = ',')]
    pub producer_url: Vec<String>,
    /// Endpoints for consumers (comma-separated; overrides --url; round-robin).
    #[arg(long, value_delimiter = ',')]
    pub consumer_url: Vec<String>,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Address to send to and receive from.
    #[arg(long, default_value = "load")]
    pub address: String,
    /// Message body size in bytes (at least 16: the send timestamp).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages per producer (ignored with --duration).
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Run for this many seconds instead of a count.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Settle mode.
    #[arg(long, value_enum, default_value_t = Settle::Unsettled)]
    pub settle: Settle,
    /// Unsettled deliveries in flight per producer, at most.
    #[arg(long, default_value_t = 1000)]
    pub window: usize,
    /// Total target rate in messages/s over all producers (open loop,
    /// latency measured from the intended send time). Without it: as fast
    /// as possible (closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Credit each consumer keeps granted.
    #[arg(long, default_value_t = 1000)]
    pub credit: u32,
    /// Consumers each expect every message (multicast address).
    #[arg(long)]
    pub multicast: bool,
    /// Seconds consumers wait for stragglers after producers finish.
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// Send to an in-process AMQP sink instead (the generator's ceiling).
    #[arg(long)]
    pub sink: bool,
    /// Instead of sending: open this many idle connections (each with a
    /// session), print `idle connections open: N`, and hold them for
    /// `--hold` seconds. For measuring a router's memory per connection.
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// Seconds to hold idle connections.
    #[arg(long, default_value_t = 30.0)]
    pub hold: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Checks option combinations clap cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.size < crate::payload::MIN_SIZE {
            anyhow::bail!("--size must be at least {}", crate::payload::MIN_SIZE);
        }
        if self.producers == 0 {
            anyhow::bail!("--producers must be at least 1");
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

/// `host:port` of an `amqp://host:port[/...]` URL.
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or_else(|| anyhow::anyhow!("only amqp:// URLs are supported: {url}"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    if hostport.contains(':') {
        Ok(hostport.to_string())
    } else {
        Ok(format!("{hostport}:5672"))
    }
}
