//! What the routing task reports: tables published, next-hop changes, and
//! how long the table took to settle after a neighbour came or went.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::routing::RoutingTable;

/// A next-hop change later than this after a neighbour came or went is
/// not counted in the convergence time: it is taken to have another cause
/// (a change elsewhere in the mesh).
pub const CONVERGENCE_WINDOW: Duration = Duration::from_secs(60);

/// The routing metrics.
#[derive(Debug, Default)]
pub struct RoutingMetrics {
    pub(super) recomputations: Counter,
    pub(super) reroutes: Counter,
    pub(super) convergence: Gauge<f64, AtomicU64>,
    /// When a neighbour last came up or went down.
    changed: Mutex<Option<Instant>>,
}

impl RoutingMetrics {
    /// A neighbour connection came up or went down (a topology change
    /// seen by this router) at `now`.
    pub fn topology_changed(&self, now: Instant) {
        *self.changed.lock().expect("routing metrics lock") = Some(now);
    }

    /// The routing task published `new` in place of `old` at `now`.
    pub fn table_published(&self, old: &RoutingTable, new: &RoutingTable, now: Instant) {
        self.recomputations.inc();
        if !next_hops_changed(old, new) {
            return;
        }
        self.reroutes.inc();
        let changed = *self.changed.lock().expect("routing metrics lock");
        if let Some(since) = changed {
            let took = now.saturating_duration_since(since);
            if took <= CONVERGENCE_WINDOW {
                self.convergence.set(took.as_secs_f64());
            }
        }
    }
}

/// Whether some router is reached through another neighbour in `new` than
/// in `old` (or became reachable, or unreachable).
pub fn next_hops_changed(old: &RoutingTable, new: &RoutingTable) -> bool {
    old.routers()
        .chain(new.routers())
        .any(|r| old.next_hop(r) != new.next_hop(r))
}

/// Whether `table` has a path to at least one other router.
pub fn reaches_another_router(table: &RoutingTable) -> bool {
    table.routers().any(|r| table.next_hop(r).is_some())
}
