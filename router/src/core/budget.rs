//! The bounds on bytes in flight through the router: each producer
//! connection's (`limits.max_in_flight_bytes_per_producer`) inside the
//! router-wide one (`limits.max_buffered_bytes`). Every frame a
//! producer's task forwards carries a [`Charge`] against its budget and,
//! through it, the router's; the consumer's task drops it once the frame
//! is in its engine (or the frame is discarded). A producer over either
//! stops reading its socket until charges are returned, so slow consumers
//! hold back fast producers instead of filling the router's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// A producer's charges reach the router's budget in steps of this many
/// bytes: one shared atomic operation per step rather than per message
/// (the router's budget is then over by less than a step per producer).
const STEP: u64 = 64 * 1024;

/// Steps taken by `bytes` in use.
fn steps(bytes: u64) -> u64 {
    bytes.div_ceil(STEP)
}

/// How often a producer held back by the router-wide bound looks again
/// (its wake-up is shared by every producer, and a producer that starts
/// waiting just after one is not woken by it).
const ROUTER_RECHECK: Duration = Duration::from_millis(20);

/// A budget of bytes in flight.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
    freed: Notify,
    /// The router-wide budget this one is part of.
    parent: Option<Arc<ByteBudget>>,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Self::within(limit, None)
    }

    /// A budget of `limit` bytes whose charges count against `parent` too.
    pub fn within(limit: u64, parent: Option<Arc<ByteBudget>>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            freed: Notify::new(),
            parent,
        })
    }

    /// Charges `bytes`; the charge is returned when the result drops.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if let Some(p) = &self.parent {
            let more = steps(before + bytes) - steps(before);
            if more > 0 {
                p.used.fetch_add(more * STEP, Ordering::Relaxed);
            }
        }
        Charge {
            budget: self.clone(),
            bytes,
        }
    }

    /// Whether the producer must stop reading for now: its budget is
    /// spent, or the router's is and it has bytes in flight. A connection
    /// with none in flight is still read (its handshake, its first
    /// deliveries: at most its credit's worth), so that new clients are
    /// not locked out while others hold the router's budget.
    pub fn exhausted(&self) -> bool {
        let used = self.used.load(Ordering::Relaxed);
        used >= self.limit || (used > 0 && self.parent.as_ref().is_some_and(|p| p.exhausted()))
    }

    /// Bytes in flight now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Completes when some charge may have been returned since the last
    /// call: this budget's own, or the router's (woken, or looked at again
    /// every [`ROUTER_RECHECK`]).
    pub async fn freed(&self) {
        match &self.parent {
            Some(p) if p.exhausted() => tokio::select! {
                () = self.freed.notified() => {}
                () = p.freed.notified() => {}
                () = tokio::time::sleep(ROUTER_RECHECK) => {}
            },
            _ => self.freed.notified().await,
        }
    }

    /// Returns `bytes`; returns what was in use before.
    fn give_back(&self, bytes: u64, wake_all: bool) -> u64 {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        if before >= self.limit && before - bytes < self.limit {
            if wake_all {
                self.freed.notify_waiters();
            } else {
                self.freed.notify_one();
            }
        }
        before
    }
}

/// Bytes charged to a [`ByteBudget`], returned on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let before = self.budget.give_back(self.bytes, false);
        if let Some(p) = &self.budget.parent {
            let fewer = steps(before) - steps(before - self.bytes);
            if fewer > 0 {
                // Every producer held back by the router's bound may go on.
                p.give_back(fewer * STEP, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_returned_on_drop() {
        let b = ByteBudget::new(100);
        let c1 = b.charge(60);
        assert!(!b.exhausted());
        let c2 = b.charge(60);
        assert!(b.exhausted());
        drop(c1);
        assert!(!b.exhausted());
        drop(c2);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn the_routers_budget_holds_back_every_producer() {
        let router = ByteBudget::new(4 * STEP);
        let a = ByteBudget::within(3 * STEP, Some(router.clone()));
        let b = ByteBudget::within(3 * STEP, Some(router.clone()));
        let ca = a.charge(2 * STEP + 1);
        assert_eq!(router.used(), 3 * STEP, "counted in whole steps");
        assert!(!a.exhausted() && !b.exhausted());
        let cb = b.charge(STEP);
        assert!(
            a.exhausted() && b.exhausted(),
            "the router's four steps are taken"
        );
        let c = ByteBudget::within(3 * STEP, Some(router.clone()));
        assert!(!c.exhausted(), "nothing in flight: still read");
        drop(ca);
        assert!(!a.exhausted() && !b.exhausted());
        drop(cb);
        assert_eq!(router.used(), 0);
    }

    #[test]
    fn many_small_charges_return_the_routers_bytes_exactly() {
        let router = ByteBudget::new(u64::MAX);
        let a = ByteBudget::within(u64::MAX, Some(router.clone()));
        let charges: Vec<Charge> = (0..10_000).map(|i| a.charge(100 + i % 7)).collect();
        assert_eq!(router.used(), a.used().div_ceil(STEP) * STEP);
        drop(charges);
        assert_eq!((a.used(), router.used()), (0, 0));
    }
}
