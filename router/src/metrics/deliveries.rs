//! Per-address delivery counters: resolved once, when an [`Address`] is
//! created, so that the message path only increments atomics.
//!
//! [`Address`]: crate::core::Address

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_proto::definitions::DeliveryState;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;

/// A counter on a cache line of its own: the counters of one address are
/// incremented from different threads (a producer's, a consumer's), and
/// side by side they would bounce one line between the cores per message.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct PaddedU64(AtomicU64);

impl prometheus_client::metrics::counter::Atomic<u64> for PaddedU64 {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    fn inc_by(&self, v: u64) -> u64 {
        self.0.fetch_add(v, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A delivery counter (see [`PaddedU64`]).
pub type Counter = prometheus_client::metrics::counter::Counter<u64, PaddedU64>;

/// The role of the connection a link belongs to, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnRole {
    /// A client (accepted on a `normal` listener), or an edge router
    /// (on an `edge` listener: its traffic is its clients').
    Normal,
    /// Another router (an `inter-router` listener or a `[[connector]]`,
    /// an edge router's uplink included).
    InterRouter,
}

impl ConnRole {
    /// Both roles, in the order [`AddressCounters`] holds them.
    pub const ALL: [Self; 2] = [Self::Normal, Self::InterRouter];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::InterRouter => "inter-router",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl EncodeLabelValue for ConnRole {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The labels of the per-address delivery counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The longest matching `[[address]]` prefix, `dynamic` or `other`.
    pub prefix: String,
    /// The role of the link's connection.
    pub role: ConnRole,
}

/// How a delivery was settled back to its producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted by a consumer.
    Accepted,
    /// Released: not processed (e.g. no consumer).
    Released,
    /// Rejected: invalid, or expired.
    Rejected,
    /// Modified: not delivered, e.g. the consumer went away with it.
    Modified,
}

impl Outcome {
    const ALL: [Self; 4] = [
        Self::Accepted,
        Self::Released,
        Self::Rejected,
        Self::Modified,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Released => "released",
            Self::Rejected => "rejected",
            Self::Modified => "modified",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The labels of the settled-deliveries counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// As [`DeliveryLabels::prefix`].
    pub prefix: String,
    /// The role of the producer's connection.
    pub role: ConnRole,
    /// The outcome.
    pub outcome: Outcome,
}

/// The counter families the handles below point into.
#[derive(Debug, Default)]
pub(super) struct DeliveryFamilies {
    pub received: Family<DeliveryLabels, Counter>,
    pub sent: Family<DeliveryLabels, Counter>,
    pub settled: Family<OutcomeLabels, Counter>,
    pub dropped: Family<DeliveryLabels, Counter>,
    pub expired: Family<DeliveryLabels, Counter>,
}

/// The counters of one address prefix and connection role. Each field
/// shares its atomic with a series of the registry (or with nothing, for
/// an address made outside a router: [`AddressCounters::detached`]).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Deliveries that came in on a producer link, routed or refused.
    pub received: Counter,
    /// Deliveries sent on a consumer link.
    pub sent: Counter,
    /// Pre-settled deliveries dropped for want of a consumer.
    pub dropped: Counter,
    /// Deliveries whose time to live passed in the router.
    pub expired: Counter,
    outcomes: [Counter; 4],
}

impl DeliveryCounters {
    fn registered(families: &DeliveryFamilies, labels: DeliveryLabels) -> Self {
        let outcome = |outcome| {
            families
                .settled
                .get_or_create(&OutcomeLabels {
                    prefix: labels.prefix.clone(),
                    role: labels.role,
                    outcome,
                })
                .clone()
        };
        Self {
            received: families.received.get_or_create(&labels).clone(),
            sent: families.sent.get_or_create(&labels).clone(),
            dropped: families.dropped.get_or_create(&labels).clone(),
            expired: families.expired.get_or_create(&labels).clone(),
            outcomes: Outcome::ALL.map(outcome),
        }
    }

    /// Counts an outcome passed back to a producer (a non-terminal state,
    /// `received`, is not an outcome and is not counted).
    pub fn settled(&self, state: &DeliveryState) {
        let outcome = match state {
            DeliveryState::Accepted => Outcome::Accepted,
            DeliveryState::Released => Outcome::Released,
            DeliveryState::Rejected(_) => Outcome::Rejected,
            DeliveryState::Modified(_) => Outcome::Modified,
            DeliveryState::Received(_) => return,
        };
        self.outcomes[outcome as usize].inc();
    }
}

/// The counters of one address, one set per connection role.
#[derive(Debug, Clone)]
pub struct AddressCounters([Arc<DeliveryCounters>; 2]);

impl AddressCounters {
    pub(super) fn registered(families: &DeliveryFamilies, prefix: &str) -> Self {
        Self(ConnRole::ALL.map(|role| {
            Arc::new(DeliveryCounters::registered(
                families,
                DeliveryLabels {
                    prefix: prefix.to_owned(),
                    role,
                },
            ))
        }))
    }

    /// Counters in no registry: for an address made outside a router
    /// (unit tests, the simulator).
    pub fn detached() -> Self {
        Self(ConnRole::ALL.map(|_| Arc::default()))
    }

    /// The counters for links of connections of `role`.
    pub fn role(&self, role: ConnRole) -> &Arc<DeliveryCounters> {
        &self.0[role.index()]
    }
}
