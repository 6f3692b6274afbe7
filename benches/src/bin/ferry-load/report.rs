//! Counters shared by the tasks, what each consumer hands back, and the
//! final report.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use crate::args::{Args, Settle};

/// What every task adds to, read by the progress line and the report.
pub struct Shared {
    /// Transfers sent, per producer.
    pub sent: Vec<AtomicU64>,
    /// Deliveries received, per consumer.
    pub received: Vec<AtomicU64>,
    pub received_bytes: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub released: AtomicU64,
    pub modified: AtomicU64,
    /// Messages the in-process source sent to consumers (`--sink`).
    pub generated: AtomicU64,
    /// Nanoseconds from the start to the last delivery received (0: none).
    pub last_receive_ns: AtomicU64,
    /// Set to `true` when the clock starts.
    pub started: watch::Sender<bool>,
    /// Set when every producer has finished.
    pub producers_done: AtomicBool,
    /// Producers done sending (and with their outcomes), and when the
    /// first and the last were.
    pub finished: AtomicU64,
    pub first_finished: Mutex<Option<Instant>>,
    pub last_finished: Mutex<Option<Instant>>,
    /// Set to `true` when finished producers may detach.
    pub release: watch::Sender<bool>,
    /// Set to `true` to stop every task.
    pub stop: watch::Sender<bool>,
    /// The first failure.
    pub error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(producers: usize, consumers: usize) -> Self {
        Self {
            sent: (0..producers).map(|_| AtomicU64::new(0)).collect(),
            received: (0..consumers).map(|_| AtomicU64::new(0)).collect(),
            received_bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            released: AtomicU64::new(0),
            modified: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            last_receive_ns: AtomicU64::new(0),
            started: watch::channel(false).0,
            producers_done: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            first_finished: Mutex::new(None),
            last_finished: Mutex::new(None),
            release: watch::channel(false).0,
            stop: watch::channel(false).0,
            error: Mutex::new(None),
        }
    }

    pub fn sent_total(&self) -> u64 {
        self.sent.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    pub fn received_total(&self) -> u64 {
        self.received
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    pub fn outcomes(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed) + self.settled_away()
    }

    /// Deliveries the endpoint settled without accepting them: they are
    /// not expected at a consumer.
    pub fn settled_away(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
            + self.released.load(Ordering::Relaxed)
            + self.modified.load(Ordering::Relaxed)
    }

    /// Deliveries the consumers should see in all.
    pub fn expected(&self, args: &Args, consumers: usize) -> u64 {
        if args.sink {
            // What the in-process source sends (see `sink`).
            return match args.duration {
                Some(_) => self.generated.load(Ordering::Relaxed),
                None => {
                    let total = args.count.saturating_mul(args.producers as u64);
                    match args.multicast {
                        true => total.saturating_mul(consumers as u64),
                        false => total,
                    }
                }
            };
        }
        let arrived = self.sent_total().saturating_sub(self.settled_away());
        if args.multicast {
            arrived * consumers as u64
        } else {
            arrived
        }
    }

    /// Records the first failure and stops the run.
    pub fn fail(&self, what: String) {
        let mut e = self.error.lock().expect("lock");
        if e.is_none() {
            *e = Some(what);
        }
        drop(e);
        self.release.send_replace(true);
        self.stop.send_replace(true);
    }

    /// A producer is done sending.
    pub fn producer_finished(&self) {
        let now = Instant::now();
        self.first_finished.lock().expect("lock").get_or_insert(now);
        *self.last_finished.lock().expect("lock") = Some(now);
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    pub fn started(&self) -> bool {
        *self.started.borrow()
    }

    pub fn producers_done(&self) -> bool {
        self.producers_done.load(Ordering::Relaxed)
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Waits until a flag is set. (Never hold the `watch::Ref` that
/// `wait_for` returns across an await: it is a read lock, and a task
/// setting a flag would wait for it.)
pub async fn set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|f| *f).await;
}

/// A histogram of microseconds from 1 µs to 1000 s, 3 significant figures.
/// The percentiles of `h` (messages of `priority`, if given).
fn percentiles(h: &Histogram<u64>, priority: Option<u8>) -> Latency {
    Latency {
        priority,
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: (h.mean() * 10.0).round() / 10.0,
        samples: h.len(),
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("valid histogram bounds")
}

/// Which messages one consumer has seen: a bitmap per producer.
#[derive(Debug, Default)]
pub struct Seen {
    pub bits: Vec<Vec<u64>>,
}

impl Seen {
    /// Marks a message; `false` if it was seen before.
    pub fn insert(&mut self, producer: usize, seq: u64) -> bool {
        let p = producer;
        if self.bits.len() <= p {
            self.bits.resize_with(p + 1, Vec::new);
        }
        let words = &mut self.bits[p];
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if words.len() <= w {
            words.resize((w + 1).max(words.len() * 2), 0);
        }
        let fresh = words[w] & (1 << b) == 0;
        words[w] |= 1 << b;
        fresh
    }

    /// Adds `other`'s messages; returns how many were in both.
    pub fn merge(&mut self, other: &Seen) -> u64 {
        let mut both = 0;
        if self.bits.len() < other.bits.len() {
            self.bits.resize_with(other.bits.len(), Vec::new);
        }
        for (mine, theirs) in self.bits.iter_mut().zip(&other.bits) {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), 0);
            }
            for (m, t) in mine.iter_mut().zip(theirs) {
                both += u64::from((*m & t).count_ones());
                *m |= t;
            }
        }
        both
    }
}

/// What a consumer hands back when it stops.
pub struct ConsumerResult {
    pub index: usize,
    pub received: u64,
    /// Deliveries it had not seen before.
    pub unique: u64,
    /// Deliveries without our stamp (not made by ferry-load).
    pub foreign: u64,
    pub latency: Histogram<u64>,
    /// The same, per header priority, for messages with one (`--priority`).
    pub by_priority: std::collections::BTreeMap<u8, Histogram<u64>>,
    pub seen: Seen,
    pub error: Option<String>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// The header priority of the messages counted (`latency_by_priority`
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub samples: u64,
}

/// One consumer's share.
#[derive(Debug, Serialize)]
pub struct PerConsumer {
    pub received: u64,
    pub received_unique: u64,
    pub msgs_per_s: f64,
}

/// The run's result: printed as text, or as JSON with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// The command line, shell-quoted.
    pub command: String,
    pub cores: usize,
    pub sink: bool,
    pub producer_urls: Vec<String>,
    pub consumer_urls: Vec<String>,
    pub address: String,
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    pub settle: &'static str,
    pub multicast: bool,
    pub window: usize,
    pub credit: u32,
    pub target_rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub count_per_producer: Option<u64>,
    /// Seconds from the start (every producer has credit) to the last
    /// delivery received (the last outcome or send, without consumers).
    pub elapsed_s: f64,
    /// Seconds from the start until the producers finished.
    pub send_elapsed_s: f64,
    pub sent: u64,
    pub received: u64,
    pub received_unique: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub released: u64,
    pub modified: u64,
    pub unsettled: u64,
    pub expected: u64,
    /// Expected but not received, unsettled runs (null otherwise).
    pub lost: Option<u64>,
    /// Expected but not received, pre-settled runs (null otherwise).
    pub dropped: Option<u64>,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub send_msgs_per_s: f64,
    pub per_consumer: Vec<PerConsumer>,
    pub latency: Option<Latency>,
    /// Latency of the messages with a header priority, per priority
    /// (`--priority`), highest first.
    pub latency_by_priority: Vec<Latency>,
    pub generator_cpu_s: Option<f64>,
    pub error: Option<String>,
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// What `Report::build` needs besides the arguments.
pub struct Outcome<'a> {
    pub shared: &'a Shared,
    pub consumers: Vec<ConsumerResult>,
    pub producer_urls: Vec<String>,
    pub consumer_urls: Vec<String>,
    pub start: Option<Instant>,
    pub producers_done: Option<Instant>,
    pub cpu_s: Option<f64>,
}

impl Report {
    pub fn build(args: &Args, o: Outcome<'_>) -> Self {
        let s = o.shared;
        let consumers = o.consumers.len().max(s.received.len());
        let sent = s.sent_total();
        let accepted = s.accepted.load(Ordering::Relaxed);
        let unsettled = match args.settle {
            Settle::Unsettled => sent.saturating_sub(s.outcomes()),
            Settle::Presettled => 0,
        };
        let send_elapsed = match (o.start, o.producers_done) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let last_ns = s.last_receive_ns.load(Ordering::Relaxed);
        let elapsed = if consumers > 0 && last_ns > 0 {
            last_ns as f64 / 1e9
        } else {
            send_elapsed
        };

        let mut latency = new_histogram();
        let mut received = 0;
        let mut unique_sum = 0;
        let mut foreign = 0;
        let mut union = Seen::default();
        let mut overlap = 0;
        let mut per_consumer: Vec<PerConsumer> = (0..consumers)
            .map(|i| {
                let r = s.received.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
                PerConsumer {
                    received: r,
                    received_unique: 0,
                    msgs_per_s: rate(r, elapsed),
                }
            })
            .collect();
        for c in &o.consumers {
            let _ = latency.add(&c.latency);
            received += c.received;
            unique_sum += c.unique;
            foreign += c.foreign;
            if !args.multicast {
                overlap += union.merge(&c.seen);
            }
            if let Some(p) = per_consumer.get_mut(c.index) {
                p.received = c.received;
                p.received_unique = c.unique;
                p.msgs_per_s = rate(c.received, elapsed);
            }
        }
        if o.consumers.is_empty() {
            received = s.received_total();
            unique_sum = received;
        }
        // Anycast: a message two consumers got is a duplicate too.
        let received_unique = if args.multicast {
            unique_sum
        } else {
            unique_sum - overlap
        };
        let expected = if consumers == 0 {
            0
        } else {
            s.expected(args, consumers)
        };
        let missing = expected.saturating_sub(received_unique);
        let check_missing = consumers > 0 && args.producers > 0 && !args.sink && o.start.is_some();
        let (lost, dropped) = match (check_missing, args.settle) {
            (false, _) => (None, None),
            (true, Settle::Unsettled) => (Some(missing), None),
            (true, Settle::Presettled) => (None, Some(missing)),
        };
        let moved = if consumers > 0 {
            received
        } else if args.settle == Settle::Unsettled {
            accepted
        } else {
            sent
        };
        let latency = (!latency.is_empty()).then(|| percentiles(&latency, None));
        let mut by_priority = std::collections::BTreeMap::<u8, Histogram<u64>>::new();
        for c in &o.consumers {
            for (p, h) in &c.by_priority {
                let _ = by_priority.entry(*p).or_insert_with(new_histogram).add(h);
            }
        }
        let latency_by_priority = by_priority
            .iter()
            .rev()
            .map(|(p, h)| percentiles(h, Some(*p)))
            .collect();
        let error = s
            .error
            .lock()
            .expect("lock")
            .clone()
            .or_else(|| o.consumers.iter().find_map(|c| c.error.clone()));
        Report {
            tool: "ferry-load",
            version: env!("CARGO_PKG_VERSION"),
            command: command_line(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            sink: args.sink,
            producer_urls: o.producer_urls,
            consumer_urls: o.consumer_urls,
            address: args.address.clone(),
            producers: args.producers,
            consumers,
            size: args.size,
            settle: match args.settle {
                Settle::Unsettled => "unsettled",
                Settle::Presettled => "presettled",
            },
            multicast: args.multicast,
            window: args.window,
            credit: args.credit,
            target_rate: args.rate,
            duration_s: args.duration,
            count_per_producer: args.duration.is_none().then_some(args.count),
            elapsed_s: elapsed,
            send_elapsed_s: send_elapsed,
            sent,
            received,
            received_unique,
            duplicates: received.saturating_sub(received_unique + foreign),
            foreign,
            accepted,
            rejected: s.rejected.load(Ordering::Relaxed),
            released: s.released.load(Ordering::Relaxed),
            modified: s.modified.load(Ordering::Relaxed),
            unsettled,
            expected,
            lost,
            dropped,
            msgs_per_s: rate(moved, elapsed),
            mb_per_s: rate(moved, elapsed) * args.size as f64 / 1e6,
            send_msgs_per_s: rate(sent, send_elapsed),
            per_consumer,
            latency,
            latency_by_priority,
            generator_cpu_s: o.cpu_s,
            error,
        }
    }
}

/// This process's command line, quoted for a POSIX shell.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// User+system CPU seconds of this process so far, from /proc/self/stat.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces), in ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux configuration in use.
    100.0
}

fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match (self.target_rate, self.duration_s) {
            (Some(r), _) => format!("open loop at {r:.0} msg/s"),
            (None, _) => "closed loop".to_string(),
        };
        writeln!(
            f,
            "{} producer(s), {} consumer(s){}, {} B, {}, {}, {:.2} s{}",
            self.producers,
            self.consumers,
            if self.multicast { " (multicast)" } else { "" },
            self.size,
            self.settle,
            mode,
            self.elapsed_s,
            if self.sink { ", in-process sink" } else { "" },
        )?;
        writeln!(
            f,
            "sent {}  received {} ({} unique, {} duplicates, {} foreign)",
            num(self.sent),
            num(self.received),
            num(self.received_unique),
            num(self.duplicates),
            num(self.foreign)
        )?;
        if self.settle == "unsettled" {
            writeln!(
                f,
                "outcomes: accepted {}  rejected {}  released {}  modified {}  none {}",
                num(self.accepted),
                num(self.rejected),
                num(self.released),
                num(self.modified),
                num(self.unsettled)
            )?;
        }
        match (self.lost, self.dropped) {
            (Some(l), _) => writeln!(f, "lost {} of {} expected", num(l), num(self.expected))?,
            (_, Some(d)) => writeln!(
                f,
                "dropped {} of {} expected ({:.3} %)",
                num(d),
                num(self.expected),
                if self.expected > 0 {
                    d as f64 * 100.0 / self.expected as f64
                } else {
                    0.0
                }
            )?,
            _ => {}
        }
        writeln!(
            f,
            "throughput {:.0} msg/s  {:.2} MB/s  (sent {:.0} msg/s)",
            self.msgs_per_s, self.mb_per_s, self.send_msgs_per_s
        )?;
        if self.per_consumer.len() > 1 {
            let min = self.per_consumer.iter().map(|c| c.received).min();
            let max = self.per_consumer.iter().map(|c| c.received).max();
            writeln!(
                f,
                "per consumer: {:.0} msg/s on average, {} to {} messages",
                self.msgs_per_s / self.per_consumer.len() as f64,
                num(min.unwrap_or(0)),
                num(max.unwrap_or(0))
            )?;
        }
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}  ({} samples)",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.samples
            )?;
        }
        for l in &self.latency_by_priority {
            writeln!(
                f,
                "  priority {}: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}  ({} samples)",
                l.priority.unwrap_or_default(),
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us,
                l.mean_us,
                l.samples
            )?;
        }
        if let Some(c) = self.generator_cpu_s {
            writeln!(f, "ferry-load CPU {c:.2} s")?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}
