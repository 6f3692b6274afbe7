//! The router's metrics, in the Prometheus text format (`GET /metrics` of
//! the `[http]` endpoint; every metric is listed in `docs/METRICS.md`).
//!
//! The message path touches only atomics: each [`Address`] gets its
//! [`AddressCounters`] (handles sharing the registry's atomics) once, when
//! it is created, and connection tasks increment those. What the message
//! path does not count (credit held by producers, bytes buffered, RSS,
//! neighbours) is read from the core when scraped, in
//! [`Metrics::render`].
//!
//! [`Address`]: crate::core::Address

mod deliveries;
pub(crate) mod process;
mod routing;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use deliveries::{AddressCounters, ConnRole, DeliveryCounters};
pub use routing::{CONVERGENCE_WINDOW, RoutingMetrics, next_hops_changed, reaches_another_router};

use crate::config::Config;
use crate::core::{Core, DYNAMIC_PREFIX};
use deliveries::DeliveryFamilies;

/// The `prefix` label of addresses no `[[address]]` prefix matches.
pub const OTHER_PREFIX: &str = "other";
/// The `prefix` label of dynamic (reply) addresses.
pub const DYNAMIC_LABEL: &str = "dynamic";

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Which way a link carries deliveries: in (a producer's link) or out
/// (a consumer's).
pub use crate::core::Dir as LinkDirection;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoleLabel {
    role: ConnRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Something open (a connection, a link), counted in a gauge while its
/// `Open` lives.
#[derive(Debug)]
pub struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric of one router.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The configured `[[address]]` prefixes and their counters.
    prefixes: Vec<(String, AddressCounters)>,
    other: AddressCounters,
    dynamic: AddressCounters,
    connections: [Gauge; 2],
    links: [Gauge; 2],
    credit_granted: Gauge,
    bytes_buffered: Gauge,
    in_flight: Gauge,
    neighbours_up: Gauge,
    stuck_deliveries: Gauge,
    resident_memory: Gauge,
    /// What the routing task reports.
    pub routing: RoutingMetrics,
}

impl Metrics {
    /// The metrics of the router `config` describes: one series per
    /// configured `[[address]]` prefix (plus `other` and `dynamic`) and
    /// connection role.
    pub fn new(config: &Config) -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let families = DeliveryFamilies::default();
        let in_flight = Gauge::default();
        let counters = |prefix: &str| AddressCounters::registered(&families, prefix);
        let prefixes = config
            .addresses
            .iter()
            .map(|a| (a.prefix.clone(), counters(&a.prefix)))
            .collect();
        let other = counters(OTHER_PREFIX);
        let dynamic = counters(DYNAMIC_LABEL);
        let connections = Family::<RoleLabel, Gauge>::default();
        let links = Family::<DirectionLabel, Gauge>::default();
        let metrics = Self {
            prefixes,
            other,
            dynamic,
            connections: ConnRole::ALL
                .map(|role| connections.get_or_create(&RoleLabel { role }).clone()),
            links: ["in", "out"]
                .map(|direction| links.get_or_create(&DirectionLabel { direction }).clone()),
            in_flight: in_flight.clone(),
            credit_granted: Gauge::default(),
            bytes_buffered: Gauge::default(),
            neighbours_up: Gauge::default(),
            stuck_deliveries: Gauge::default(),
            resident_memory: Gauge::default(),
            routing: RoutingMetrics::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "deliveries_in",
            "Deliveries received on producer links, routed or refused",
            families.received,
        );
        r.register(
            "deliveries_out",
            "Deliveries sent on consumer links",
            families.sent,
        );
        r.register(
            "deliveries_settled",
            "Outcomes passed back to producers for unsettled deliveries",
            families.settled,
        );
        r.register(
            "deliveries_dropped",
            "Pre-settled deliveries dropped for want of a consumer",
            families.dropped,
        );
        r.register(
            "deliveries_expired",
            "Deliveries whose time to live passed in the router",
            families.expired,
        );
        r.register(
            "deliveries_in_flight",
            "Unsettled deliveries sent or waiting to be sent to consumers, without their outcome yet (multicast: per copy; counted when scraped)",
            in_flight.clone(),
        );
        r.register(
            "connections_open",
            "AMQP connections open, by role",
            connections,
        );
        r.register(
            "links_open",
            "Links open that carry deliveries, by direction (in: producers, out: consumers)",
            links,
        );
        r.register(
            "credit_granted",
            "Link credit held by producers of named addresses",
            metrics.credit_granted.clone(),
        );
        r.register_with_unit(
            "buffered",
            "Bytes of producers' messages held in the router",
            Unit::Bytes,
            metrics.bytes_buffered.clone(),
        );
        r.register(
            "neighbours_up",
            "Inter-router neighbours connected",
            metrics.neighbours_up.clone(),
        );
        r.register(
            "routing_recomputations",
            "Routing tables computed and published (each differs from the one before)",
            metrics.routing.recomputations.clone(),
        );
        r.register(
            "routing_reroutes",
            "Routing tables that changed the next hop to some router",
            metrics.routing.reroutes.clone(),
        );
        r.register_with_unit(
            "routing_convergence",
            "Time from the latest neighbour up or down to the last next-hop change after it",
            Unit::Seconds,
            metrics.routing.convergence.clone(),
        );
        r.register(
            "stuck_deliveries",
            "Deliveries sent to a consumer and unsettled for longer than [limits] stuck_delivery_ms",
            metrics.stuck_deliveries.clone(),
        );
        r.register_with_unit(
            "resident_memory",
            "Resident set size of the process",
            Unit::Bytes,
            metrics.resident_memory.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The counters for an address (as the client names it: under a
    /// policy, without its vhost): those of its longest matching
    /// `[[address]]` prefix, else `dynamic` or `other`. Called once per
    /// address, when it is created.
    pub fn for_address(&self, address: &str) -> AddressCounters {
        self.prefixes
            .iter()
            .filter(|(prefix, _)| crate::config::prefix_matches(prefix, address))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, c)| c)
            .unwrap_or(if address.starts_with(DYNAMIC_PREFIX) {
                &self.dynamic
            } else {
                &self.other
            })
            .clone()
    }

    /// A connection of `role` is open while the result lives.
    pub fn connection_opened(&self, role: ConnRole) -> Open {
        Open::new(&self.connections[role as usize])
    }

    /// A link is open while the result lives.
    pub fn link_opened(&self, direction: LinkDirection) -> Open {
        Open::new(&self.links[direction as usize])
    }

    /// Sets `ferry_deliveries_in_flight` (counted from the connections'
    /// reports when scraped: nothing on the message path).
    pub fn set_in_flight(&self, n: u64) {
        self.in_flight.set(clamp(n));
    }

    /// Changes `ferry_stuck_deliveries` by `delta`: each connection adds
    /// what its own check found since the last (see `[limits]
    /// stuck_delivery_ms`).
    pub fn add_stuck(&self, delta: i64) {
        self.stuck_deliveries.inc_by(delta);
    }

    /// Deliveries unsettled for longer than `stuck_delivery_ms`, at each
    /// connection's last check.
    pub fn stuck(&self) -> u64 {
        u64::try_from(self.stuck_deliveries.get()).unwrap_or(0)
    }

    /// The metrics of `core` (whose metrics these are) in the Prometheus
    /// text format, version 0.0.4 ([`CONTENT_TYPE`]). The figures not
    /// counted on the message path are read now.
    pub fn render(&self, core: &Core) -> String {
        self.bytes_buffered.set(clamp(core.buffered().used()));
        self.credit_granted.set(core.credit_held());
        self.neighbours_up
            .set(clamp(core.mesh().neighbour_count() as u64));
        if let Some(rss) = process::resident_bytes() {
            self.resident_memory.set(clamp(rss));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
