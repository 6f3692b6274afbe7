//! The bound on a producer connection's bytes in flight through the router
//! (`limits.max_in_flight_bytes_per_producer`). Every frame a producer's
//! task forwards carries a [`Charge`] against the producer's budget; the
//! consumer's task drops it once the frame is in its engine (or the frame is
//! discarded). A producer over budget stops reading its socket until
//! charges are returned, so a slow consumer holds back a fast producer
//! instead of filling the router's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// One producer connection's budget.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
    freed: Notify,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            freed: Notify::new(),
        })
    }

    /// Charges `bytes`; the charge is returned when the result drops.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            budget: self.clone(),
            bytes,
        }
    }

    /// Whether the producer must stop reading for now.
    pub fn exhausted(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.limit
    }

    /// Bytes in flight now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Completes when some charge has been returned since the last call.
    pub async fn freed(&self) {
        self.freed.notified().await
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
        let before = self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        if before >= self.budget.limit && before - self.bytes < self.budget.limit {
            self.budget.freed.notify_one();
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
}
