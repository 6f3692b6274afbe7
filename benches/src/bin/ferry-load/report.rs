//! Counters shared by the tasks, and the final report.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Args, Settle};

/// What every task adds to.
pub struct Shared {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub released: AtomicU64,
    pub modified: AtomicU64,
    /// Latency in microseconds, merged from every consumer.
    pub latency: Mutex<Histogram<u64>>,
    pub last_receive: Mutex<Option<Instant>>,
    pub start: Mutex<Option<Instant>>,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            released: AtomicU64::new(0),
            modified: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
            last_receive: Mutex::new(None),
            start: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    /// Deliveries the consumers should see in all.
    pub fn expected_deliveries(&self, consumers: usize, multicast: bool) -> u64 {
        let sent = self.sent.load(Ordering::Relaxed);
        let settled_away = self.rejected.load(Ordering::Relaxed)
            + self.released.load(Ordering::Relaxed)
            + self.modified.load(Ordering::Relaxed);
        let arrived = sent.saturating_sub(settled_away);
        if multicast {
            arrived * consumers as u64
        } else {
            arrived
        }
    }

    /// When the last message arrived.
    pub fn last_receive(&self) -> Option<Instant> {
        *self.last_receive.lock().expect("lock")
    }
}

/// A histogram of microseconds from 1 µs to 100 s, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub samples: u64,
}

/// The run's result.
#[derive(Debug, Serialize)]
pub struct Report {
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    pub settle: &'static str,
    pub target_rate: Option<f64>,
    pub elapsed_s: f64,
    pub sent: u64,
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub released: u64,
    pub modified: u64,
    /// Messages per second: received by consumers, or (no consumers)
    /// settled or sent by producers.
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub latency: Option<Latency>,
}

impl Report {
    pub fn build(args: &Args, s: &Shared, start: Instant, end: Instant) -> Self {
        let elapsed = (end - start).as_secs_f64().max(1e-9);
        let received = s.received.load(Ordering::Relaxed);
        let sent = s.sent.load(Ordering::Relaxed);
        let accepted = s.accepted.load(Ordering::Relaxed);
        let consumers = if args.sink { 0 } else { args.consumers };
        let moved = if consumers > 0 {
            received
        } else if args.settle == Settle::Unsettled {
            accepted
        } else {
            sent
        };
        let h = s.latency.lock().expect("lock");
        let latency = (!h.is_empty()).then(|| Latency {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            samples: h.len(),
        });
        Report {
            producers: args.producers,
            consumers,
            size: args.size,
            settle: match args.settle {
                Settle::Unsettled => "unsettled",
                Settle::Presettled => "presettled",
            },
            target_rate: args.rate,
            elapsed_s: elapsed,
            sent,
            received,
            accepted,
            rejected: s.rejected.load(Ordering::Relaxed),
            released: s.released.load(Ordering::Relaxed),
            modified: s.modified.load(Ordering::Relaxed),
            msgs_per_s: moved as f64 / elapsed,
            mb_per_s: moved as f64 * args.size as f64 / elapsed / 1e6,
            latency,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} producer(s), {} consumer(s), {} B, {}, {:.2} s",
            self.producers, self.consumers, self.size, self.settle, self.elapsed_s
        )?;
        writeln!(
            f,
            "sent {}  received {}  accepted {}  rejected {}  released {}  modified {}",
            self.sent, self.received, self.accepted, self.rejected, self.released, self.modified
        )?;
        writeln!(
            f,
            "throughput {:.0} msg/s  {:.2} MB/s",
            self.msgs_per_s, self.mb_per_s
        )?;
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.samples
            )?;
        }
        Ok(())
    }
}
