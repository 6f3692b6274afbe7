//! What a run did: counters, router statistics, convergence times, and the
//! convergence report over many runs (per topology size and per kind of
//! change).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
    /// Deliveries promised credit that waited for it.
    pub held: u64,
    /// Of those, deliveries that gave up waiting (`PROMISED_WAIT`).
    pub gave_up_waiting: u64,
}

/// Control messages the routers received from their neighbours, by kind
/// (`HELLO`, `RA`, `LS`, `LSR`, `MA`, `MAR`). Bytes are those of the
/// encoded control message (the AMQP message body); each also travels in
/// a transfer frame of its own, about 30 bytes more on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlCost {
    /// Messages, every kind.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// (messages, bytes) by kind.
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
}

impl ControlCost {
    /// One message of `kind`, `bytes` long, was received.
    pub fn add(&mut self, kind: &'static str, bytes: u64) {
        self.messages += 1;
        self.bytes += bytes;
        let k = self.by_kind.entry(kind).or_default();
        k.0 += 1;
        k.1 += bytes;
    }
}

/// An estimate of one router's routing state in memory, from the sizes of
/// its structures on a 64-bit target (see `sim/README.md`): the link-state
/// database (a B-tree entry per router: id, version and a B-tree of its
/// neighbours with their ids) and the routing table (router list, id
/// index, graph in compressed rows, links, costs, next hops, the slots of
/// the lazily computed trees and stamps). Each shortest-path tree the data
/// path asks for adds `4 × routers` bytes (at most one per router).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutingMemory {
    /// Routers known.
    pub routers: usize,
    /// Links between them.
    pub links: usize,
    /// The link-state database, in bytes.
    pub linkstate: usize,
    /// The routing table without trees, in bytes.
    pub table: usize,
    /// One computed shortest-path tree, in bytes.
    pub tree: usize,
}

impl RoutingMemory {
    /// The estimate for `routers` routers, `links` links and ids of
    /// `id_len` bytes.
    pub fn estimate(routers: usize, links: usize, id_len: usize) -> Self {
        // An id: an `Arc<str>` (16 bytes) and its heap block (16 + text,
        // rounded to 8).
        let id = 16 + (16 + id_len).div_ceil(8) * 8;
        // B-tree entries cost about 1.5 times their key and value.
        let record = (id + 16 + 24) * 3 / 2;
        let neighbour = (id + 4) * 3 / 2;
        let linkstate = routers * record + 2 * links * neighbour;
        // Router list 16, id index ~28 (key, value, control byte, load),
        // row start 4, cost 8, next hop 4, tree slot 32, stamp slot 16 per
        // router; 2 × 16 (rows) + 16 (links) per link.
        let table = routers * (16 + 28 + 4 + 8 + 4 + 32 + 16) + links * (2 * 16 + 16);
        Self {
            routers,
            links,
            linkstate,
            table,
            tree: 4 * routers,
        }
    }
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
    /// Control messages the routers received.
    pub control: ControlCost,
    /// The routing state of the router with the largest table, estimated.
    pub memory: Option<RoutingMemory>,
    /// QUIC-style links, and the frames their pipes delivered before a
    /// frame of another stream sent earlier (cross-stream reordering).
    pub quic: (usize, u64),
    /// Signatures of routing records made, checked and refused by every
    /// router (`None`: the mesh does not sign; [`crate::pki`]).
    pub signatures: Option<(u64, u64, u64)>,
    /// Hostile routers of the run ([`crate::hostile`]), and what each did.
    pub hostile: Vec<(
        String,
        crate::hostile::Hostile,
        crate::hostile::HostileReport,
    )>,
    /// The edge routers, their failovers and the longest one went
    /// without an uplink while it could have had one (`None`: no edge
    /// router).
    pub edges: Option<crate::mesh::EdgeReport>,
    /// Steps and rounds the simulator ran.
    pub steps: (u64, u64),
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
            "seed {}: {} routers, {} links, {} clients, {} faults, {} of virtual time",
            self.seed,
            self.routers,
            self.links,
            self.clients,
            self.faults,
            seconds(self.virtual_time)
        )?;
        if let Some(e) = &self.edges {
            writeln!(
                f,
                "edge routers: {}; {} after an uplink ended; longest without an uplink while an interior router could be reached: {} ms",
                e.edges,
                plural(e.failovers, "uplink came up", "uplinks came up"),
                e.longest_detached.as_millis()
            )?;
        }
        if self.quic.0 > 0 {
            writeln!(
                f,
                "QUIC-style links: {} of {}; {} delivered ahead of an earlier frame of another stream",
                self.quic.0,
                self.links,
                plural(self.quic.1, "frame", "frames")
            )?;
        }
        writeln!(
            f,
            "messages: sent {} (+{} pre-settled), accepted {}, rejected {}, released {}, modified {}, lost with their link {}",
            c.sent, c.sent_presettled, c.accepted, c.rejected, c.released, c.modified, c.lost
        )?;
        write!(
            f,
            "consumers got {} ({} re-forwarded after a consumer released them)",
            plural(c.received, "delivery", "deliveries"),
            c.reforwarded
        )?;
        match c.redelivered {
            0 => writeln!(f, "; no message reached consumers more than once")?,
            n => writeln!(
                f,
                "; {} reached consumers more than once, as separate deliveries: \
                 re-forwarded after a release, or sent again by the producer after \
                 released, modified or a lost link (at-least-once)",
                plural(n, "message", "messages")
            )?,
        }
        writeln!(
            f,
            "routers: routed {}, released for want of a consumer {}, pre-settled dropped {}, deliveries held for credit {} (gave up waiting {}); loops caught by the trace {}",
            self.router.routed,
            self.router.released_no_route,
            self.router.dropped_presettled,
            self.router.held,
            self.router.gave_up_waiting,
            self.loops_caught
        )?;
        let stats = ConvergenceStats::of(self.convergence.iter().map(|r| r.took));
        writeln!(
            f,
            "convergence after {} topology changes: {stats}",
            self.convergence.len()
        )?;
        for r in &self.convergence {
            writeln!(
                f,
                "  {:>10.3}s after {}{} ({} control msgs, {} bytes per router)",
                r.took.as_secs_f64(),
                r.after,
                if r.overlapped {
                    " (came before the previous change converged)"
                } else {
                    ""
                },
                r.control.0 / self.routers.max(1) as u64,
                r.control.1 / self.routers.max(1) as u64
            )?;
        }
        self.fmt_routing(f)?;
        match self.signatures {
            Some((made, checked, refused)) => writeln!(
                f,
                "signed records: {made} signatures made (a hostile router's included), {checked} checked, {refused} refused"
            )?,
            None => writeln!(f, "signed records: off")?,
        }
        for (router, how, r) in &self.hostile {
            writeln!(
                f,
                "hostile {router} ({how}): {} forged and {} replayed records sent, {} captured, {} addresses advertised",
                r.forged,
                r.replayed,
                r.captured,
                r.lures.len()
            )?;
        }
        writeln!(
            f,
            "simulator: {} steps, {} rounds",
            self.steps.0, self.steps.1
        )?;
        write!(
            f,
            "event log: {} lines, digest {:016x}",
            self.log_lines, self.digest
        )
    }
}

impl Summary {
    /// The routing protocol's cost: control traffic per router, per kind
    /// and per topology change, and the routing state's memory.
    fn fmt_routing(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.routers.max(1) as f64;
        let secs = self.virtual_time.as_secs_f64().max(1e-9);
        let c = &self.control;
        writeln!(
            f,
            "routing protocol: {} control messages received, {} bytes; per router {:.0} msgs/s, {:.0} bytes/s of virtual time",
            c.messages,
            c.bytes,
            c.messages as f64 / n / secs,
            c.bytes as f64 / n / secs
        )?;
        let kinds: Vec<String> = c
            .by_kind
            .iter()
            .map(|(k, (m, b))| format!("{k} {m} ({b} bytes)"))
            .collect();
        writeln!(f, "  by kind: {}", kinds.join(", "))?;
        let changes: Vec<&ConvergenceRecord> = self
            .convergence
            .iter()
            .filter(|r| r.after != "start")
            .collect();
        if let Some(start) = self.convergence.iter().find(|r| r.after == "start") {
            writeln!(
                f,
                "  cold start: tables right everywhere after {:.3}s, {:.0} msgs and {:.0} bytes per router",
                start.took.as_secs_f64(),
                start.control.0 as f64 / n,
                start.control.1 as f64 / n
            )?;
        }
        if !changes.is_empty() {
            let per = |pick: fn(&ConvergenceRecord) -> u64| {
                let mut v: Vec<u64> = changes.iter().map(|r| pick(r)).collect();
                v.sort_unstable();
                let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / n;
                (at(0.5), at(0.95), v[v.len() - 1] as f64 / n)
            };
            let (m50, m95, mmax) = per(|r| r.control.0);
            let (b50, b95, bmax) = per(|r| r.control.1);
            writeln!(
                f,
                "  per router per topology change (from the change to right tables, every kind): msgs median {m50:.0}, p95 {m95:.0}, max {mmax:.0}; bytes median {b50:.0}, p95 {b95:.0}, max {bmax:.0}"
            )?;
        }
        if let Some(m) = &self.memory {
            writeln!(
                f,
                "  routing state per router (estimate, {} routers, {} links): link-state database {} KiB, table {} KiB, + {} KiB per shortest-path tree computed",
                m.routers,
                m.links,
                m.linkstate / 1024,
                m.table / 1024,
                m.tree.div_ceil(1024)
            )?;
        }
        Ok(())
    }
}

/// `1 message`, `2 messages`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration in seconds, as short as exact to the millisecond: `63.5 s`,
/// `60 s`, `0.125 s`.
pub fn seconds(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
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

/// Convergence times over many runs, per topology size and per kind of
/// change (fault or healing).
#[derive(Debug, Clone, Default)]
pub struct ConvergenceReport {
    by_size: BTreeMap<usize, Vec<Duration>>,
    by_kind: BTreeMap<&'static str, Vec<Duration>>,
    overlapped: BTreeMap<&'static str, Vec<Duration>>,
    undelayed: BTreeMap<&'static str, Vec<Duration>>,
}

impl ConvergenceReport {
    /// Adds a run's records (the initial convergence of the mesh is left
    /// out: it measures start-up, not recovery).
    pub fn add(&mut self, records: &[ConvergenceRecord]) {
        for r in records.iter().filter(|r| r.after != "start") {
            self.by_size.entry(r.routers).or_default().push(r.took);
            if r.overlapped {
                self.overlapped.entry(r.kind).or_default().push(r.took);
                continue;
            }
            self.by_kind.entry(r.kind).or_default().push(r.took);
            if !r.delayed {
                self.undelayed.entry(r.kind).or_default().push(r.took);
            }
        }
    }

    /// The statistics per topology size.
    pub fn rows(&self) -> Vec<(usize, ConvergenceStats)> {
        self.by_size
            .iter()
            .map(|(n, v)| (*n, ConvergenceStats::of(v.iter().copied())))
            .collect()
    }

    /// The statistics per kind of change, of the changes that came when
    /// the tables were right (the time is that change's alone), in the
    /// order of [`CHANGE_KINDS`](crate::fault::CHANGE_KINDS) (kinds not
    /// seen are left out), with the target of their 95th percentile.
    pub fn kinds(&self) -> Vec<(&'static str, ConvergenceStats, Option<Duration>)> {
        Self::per_kind(&self.by_kind)
    }

    /// The same for the changes that came with the tables right and no
    /// link delayed (the delay fault slows the news that cross it).
    pub fn undelayed_kinds(&self) -> Vec<(&'static str, ConvergenceStats, Option<Duration>)> {
        Self::per_kind(&self.undelayed)
    }

    /// The same for the changes that came while an earlier one had not
    /// converged yet (the time, from the later change, includes what was
    /// left of the earlier one's).
    pub fn overlapped_kinds(&self) -> Vec<(&'static str, ConvergenceStats, Option<Duration>)> {
        Self::per_kind(&self.overlapped)
    }

    fn per_kind(
        map: &BTreeMap<&'static str, Vec<Duration>>,
    ) -> Vec<(&'static str, ConvergenceStats, Option<Duration>)> {
        crate::fault::CHANGE_KINDS
            .iter()
            .filter_map(|(kind, target)| {
                let v = map.get(kind)?;
                Some((*kind, ConvergenceStats::of(v.iter().copied()), *target))
            })
            .collect()
    }

    /// Every heal (restart, link restored, partition or black hole ended,
    /// heal everything) together, of the changes that came when the
    /// tables were right.
    pub fn heals(&self) -> ConvergenceStats {
        ConvergenceStats::of(
            self.by_kind
                .iter()
                .filter(|(k, _)| k.starts_with("heal"))
                .flat_map(|(_, v)| v.iter().copied()),
        )
    }
}

fn row(f: &mut fmt::Formatter<'_>, name: &str, s: &ConvergenceStats) -> fmt::Result {
    write!(
        f,
        "{name:>24}  {:>7}  {:>7.3}s {:>7.3}s {:>7.3}s {:>7.3}s",
        s.count,
        s.min.as_secs_f64(),
        s.p50.as_secs_f64(),
        s.p95.as_secs_f64(),
        s.max.as_secs_f64()
    )
}

impl fmt::Display for ConvergenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "virtual time from a topology change to correct tables everywhere:"
        )?;
        writeln!(
            f,
            "{:>24}  changes   min      median   p95      max",
            "routers"
        )?;
        for (n, s) in self.rows() {
            row(f, &n.to_string(), &s)?;
            writeln!(f)?;
        }
        writeln!(
            f,
            "per kind, changes that came with the tables right (target: issue #17, for the p95):"
        )?;
        writeln!(
            f,
            "{:>24}  changes   min      median   p95      max      target",
            "kind"
        )?;
        for (kind, s, target) in self.kinds() {
            row(f, kind, &s)?;
            match target {
                Some(t) if s.p95 < t => writeln!(f, "  < {} met", seconds(t))?,
                Some(t) => writeln!(f, "  < {} MISSED", seconds(t))?,
                None => writeln!(f)?,
            }
        }
        let heals = self.heals();
        if heals.count > 0 {
            row(f, "every heal", &heals)?;
            let t = Duration::from_secs(1);
            let verdict = if heals.p95 < t { "met" } else { "MISSED" };
            writeln!(f, "  < {} {verdict}", seconds(t))?;
        }
        let undelayed = self.undelayed_kinds();
        if !undelayed.is_empty() {
            writeln!(
                f,
                "per kind, of those the ones with no link delayed (the delay fault slows the news crossing it):"
            )?;
            for (kind, s, target) in undelayed {
                row(f, kind, &s)?;
                match target {
                    Some(t) if s.p95 < t => writeln!(f, "  < {} met", seconds(t))?,
                    Some(t) => writeln!(f, "  < {} MISSED", seconds(t))?,
                    None => writeln!(f)?,
                }
            }
        }
        let overlapped = self.overlapped_kinds();
        if !overlapped.is_empty() {
            writeln!(
                f,
                "per kind, changes that came before the previous one had converged (time from the later one):"
            )?;
            for (kind, s, _) in overlapped {
                row(f, kind, &s)?;
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(received: u64, reforwarded: u64, redelivered: u64) -> String {
        Summary {
            seed: 7,
            routers: 20,
            links: 31,
            clients: 40,
            faults: 10,
            virtual_time: Duration::from_millis(63_500),
            counts: Counts {
                received,
                reforwarded,
                redelivered,
                ..Counts::default()
            },
            loops_caught: 0,
            router: RouterTotals::default(),
            convergence: Vec::new(),
            control: ControlCost::default(),
            memory: None,
            quic: (0, 0),
            signatures: None,
            hostile: Vec::new(),
            edges: None,
            steps: (0, 0),
            log_lines: 3,
            digest: 1,
        }
        .to_string()
    }

    #[test]
    fn the_summary_reads_as_sentences() {
        let one = summary(1000, 2, 1);
        let lines: Vec<&str> = one.lines().collect();
        assert_eq!(
            lines[0],
            "seed 7: 20 routers, 31 links, 40 clients, 10 faults, 63.5 s of virtual time"
        );
        assert_eq!(
            lines[2],
            "consumers got 1000 deliveries (2 re-forwarded after a consumer released them); \
             1 message reached consumers more than once, as separate deliveries: re-forwarded \
             after a release, or sent again by the producer after released, modified or a \
             lost link (at-least-once)"
        );
        let none = summary(1, 0, 0);
        assert_eq!(
            none.lines().nth(2).unwrap(),
            "consumers got 1 delivery (0 re-forwarded after a consumer released them); \
             no message reached consumers more than once"
        );
        assert!(summary(5, 0, 2).contains("; 2 messages reached consumers more than once"));
    }

    #[test]
    fn seconds_are_as_short_as_exact() {
        assert_eq!(seconds(Duration::from_millis(63_500)), "63.5 s");
        assert_eq!(seconds(Duration::from_secs(60)), "60 s");
        assert_eq!(seconds(Duration::from_millis(125)), "0.125 s");
        assert_eq!(seconds(Duration::ZERO), "0 s");
    }
}
