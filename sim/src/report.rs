//! What a run did: counters, router statistics, convergence times, and the
//! convergence report over many runs (per topology size).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::clock::VTime;
use crate::ledger::Counts;
use crate::monitor::ConvergenceRecord;

/// The routers' own counters (`ferry_router::core::Stats`), summed over
/// every router and every instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterTotals {
    /// Deliveries routed to at least one consumer.
    pub routed: u64,
    /// Unsettled deliveries released for want of a consumer.
    pub released_no_route: u64,
    /// Pre-settled deliveries dropped for want of a consumer.
    pub dropped_presettled: u64,
    /// Deliveries rejected because they expired.
    pub expired: u64,
    /// Multicast copies from a neighbour that waited for credit.
    pub held: u64,
}

/// The summary of one run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Routers in the mesh.
    pub routers: usize,
    /// Links in the topology.
    pub links: usize,
    /// Clients.
    pub clients: usize,
    /// Faults injected.
    pub faults: usize,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// Message counters.
    pub counts: Counts,
    /// Loops the routers' trace check caught.
    pub loops_caught: u64,
    /// The routers' counters.
    pub router: RouterTotals,
    /// Convergence after each topology change.
    pub convergence: Vec<ConvergenceRecord>,
    /// Lines in the event log.
    pub log_lines: usize,
    /// Digest of the event log (equal runs, equal digests).
    pub digest: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "seed {}: {} routers, {} links, {} clients, {} faults, {} simulated",
            self.seed,
            self.routers,
            self.links,
            self.clients,
            self.faults,
            VTime(self.virtual_time)
        )?;
        writeln!(
            f,
            "messages: sent {} (+{} pre-settled), accepted {}, rejected {}, released {}, modified {}, lost with their link {}",
            c.sent, c.sent_presettled, c.accepted, c.rejected, c.released, c.modified, c.lost
        )?;
        writeln!(
            f,
            "received {} deliveries ({} re-forwarded after a release); {} messages delivered more than once; no unexplained duplicate",
            c.received, c.reforwarded, c.redelivered
        )?;
        writeln!(
            f,
            "routers: routed {}, released for want of a consumer {}, pre-settled dropped {}, multicast copies held for credit {}; loops caught by the trace {}",
            self.router.routed,
            self.router.released_no_route,
            self.router.dropped_presettled,
            self.router.held,
            self.loops_caught
        )?;
        let stats = ConvergenceStats::of(self.convergence.iter().map(|r| r.took));
        writeln!(
            f,
            "convergence after {} topology changes: {stats}",
            self.convergence.len()
        )?;
        for r in &self.convergence {
            writeln!(f, "  {:>10.3}s after {}", r.took.as_secs_f64(), r.after)?;
        }
        write!(
            f,
            "event log: {} lines, digest {:016x}",
            self.log_lines, self.digest
        )
    }
}

/// Min, median, 95th percentile and max of convergence times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvergenceStats {
    /// How many.
    pub count: usize,
    /// Fastest.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// Slowest.
    pub max: Duration,
}

impl ConvergenceStats {
    /// The statistics of `times`.
    pub fn of(times: impl Iterator<Item = Duration>) -> Self {
        let mut v: Vec<Duration> = times.collect();
        v.sort();
        if v.is_empty() {
            return Self::default();
        }
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            count: v.len(),
            min: v[0],
            p50: at(0.5),
            p95: at(0.95),
            max: v[v.len() - 1],
        }
    }
}

impl fmt::Display for ConvergenceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "min {:.3}s, median {:.3}s, p95 {:.3}s, max {:.3}s",
            self.min.as_secs_f64(),
            self.p50.as_secs_f64(),
            self.p95.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
}

/// Convergence times over many runs, per topology size.
#[derive(Debug, Clone, Default)]
pub struct ConvergenceReport {
    by_size: BTreeMap<usize, Vec<Duration>>,
}

impl ConvergenceReport {
    /// Adds a run's records (the initial convergence of the mesh is left
    /// out: it measures start-up, not recovery).
    pub fn add(&mut self, records: &[ConvergenceRecord]) {
        for r in records.iter().filter(|r| r.after != "start") {
            self.by_size.entry(r.routers).or_default().push(r.took);
        }
    }

    /// The statistics per topology size.
    pub fn rows(&self) -> Vec<(usize, ConvergenceStats)> {
        self.by_size
            .iter()
            .map(|(n, v)| (*n, ConvergenceStats::of(v.iter().copied())))
            .collect()
    }
}

impl fmt::Display for ConvergenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "virtual time from a topology change to correct tables everywhere:"
        )?;
        writeln!(f, "routers  changes   min      median   p95      max")?;
        for (n, s) in self.rows() {
            writeln!(
                f,
                "{n:>7}  {:>7}  {:>7.3}s {:>7.3}s {:>7.3}s {:>7.3}s",
                s.count,
                s.min.as_secs_f64(),
                s.p50.as_secs_f64(),
                s.p95.as_secs_f64(),
                s.max.as_secs_f64()
            )?;
        }
        Ok(())
    }
}
