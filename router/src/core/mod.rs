//! The forwarding core shared by every connection task: the address table
//! and the rules for routing on one node. Deliveries never pass through a
//! central task: a producer's connection task routes each message straight
//! to the consumer's connection task, and the outcome comes straight back.
//! The only shared state is the per-address lock of [`Address`].

mod address;
mod brokered;
mod budget;
mod by_link;
mod fields;
mod inbox;
mod message;
mod priority;
mod report;
pub mod trace;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use address::{Address, Credited, Grant, Hop, IDLE_LEASE, Reach, Routed, Targets, serves};
pub use brokered::{BrokerUse, DEMAND_PREFIX};
pub use budget::{ByteBudget, Charge};
pub use fields::{MAX_PRIORITY, RoutingFields, routing_fields};
pub use inbox::{Inbox, Outbox, inbox};
pub use message::{
    ConnHandle, ConnId, Fanout, Forwarded, Origin, Retry, StreamKey, ToConn, delivery_failed,
};
pub use priority::{MAX_OVERTAKES, Waiting};
pub use report::{AddressReport, ConnReport, ConnRole, Dir, LinkKind, LinkReport};

use crate::config::{AddressConfig, Config, Distribution, Limits, RouterMode};
use crate::mesh::Mesh;
use crate::metrics::Metrics;
use crate::policy::{Admissions, Policy};
use crate::routing::RouterId;

/// What the names of dynamic (reply) addresses start with.
pub const DYNAMIC_PREFIX: &str = "_dynamic/";

/// On an edge router, the address of its relay: an anonymous sending link
/// on the uplink (null target), a consumer of this address on the edge.
/// A client's anonymous delivery (routed by its `to`) that the edge does
/// not serve itself goes up on it (`driver::links::edge`), and the
/// interior routes it by its `to`, as its own client's; so do the
/// management agent's responses to requests from the mesh.
pub const EDGE_RELAY: &str = "_ferry/edge-relay";

/// Counters of what the core has done, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Deliveries routed to at least one consumer.
    pub routed: AtomicU64,
    /// Unsettled deliveries released for want of a consumer.
    pub released_no_route: AtomicU64,
    /// Pre-settled deliveries dropped for want of a consumer.
    pub dropped_presettled: AtomicU64,
    /// Deliveries rejected because their time to live had passed.
    pub expired: AtomicU64,
    /// Deliveries promised credit (multicast copies from a neighbour,
    /// anycast deliveries sent on credit granted) that waited for their
    /// consumer link's credit (it was lowered after they were promised it).
    pub held: AtomicU64,
    /// Of those, deliveries whose link's credit did not come in time
    /// (`PROMISED_WAIT`): sent to another consumer or back released.
    pub gave_up_waiting: AtomicU64,
}

/// The shared forwarding core.
#[derive(Debug)]
pub struct Core {
    router_id: String,
    addresses: RwLock<HashMap<String, Arc<Address>>>,
    config: Config,
    /// The `[[address]]` prefixes in use: the configuration's, as changed
    /// at run time through management.
    prefixes: RwLock<Arc<[AddressConfig]>>,
    /// The tenants' policy, if `[[vhost]]`s are configured (whether there
    /// is one is fixed at start: it decides how addresses are named).
    policy: Option<RwLock<Arc<Policy>>>,
    /// Client connections per vhost and user.
    admissions: Arc<Admissions>,
    mesh: Mesh,
    /// Every connection task, for management to ask ([`ToConn::Report`]).
    conns: Mutex<BTreeMap<ConnId, ConnHandle>>,
    /// Brokered addresses in use, for the broker connections.
    demand: Mutex<brokered::Demand>,
    next_conn: AtomicU64,
    next_dynamic: AtomicU64,
    /// What the core has done.
    pub stats: Stats,
    /// The metrics `GET /metrics` shows.
    metrics: Metrics,
    /// The router-wide bound on bytes in flight
    /// (`limits.max_buffered_bytes`), every producer's budget part of it.
    buffered: Arc<ByteBudget>,
}

impl Core {
    /// A core for the router `config` describes, with a fresh instance
    /// number.
    pub fn new(config: &Config) -> Self {
        Self::with_instance(config, instance_number())
    }

    /// A core with a given instance number (for the simulator, which needs
    /// reproducible runs).
    pub fn with_instance(config: &Config, instance: u64) -> Self {
        Self {
            router_id: config.router.id.clone(),
            addresses: RwLock::default(),
            config: config.clone(),
            prefixes: RwLock::new(config.addresses.clone().into()),
            policy: Policy::from_config(config).map(|p| RwLock::new(Arc::new(p))),
            admissions: Arc::default(),
            mesh: Mesh::new(RouterId::from(config.router.id.as_str()), instance),
            conns: Mutex::default(),
            demand: Mutex::default(),
            next_conn: AtomicU64::new(0),
            next_dynamic: AtomicU64::new(0),
            stats: Stats::default(),
            metrics: Metrics::new(config),
            buffered: ByteBudget::new(config.limits.buffered_bytes()),
        }
    }

    /// The router's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The router's limits.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The router-wide budget of bytes in flight.
    pub fn buffered(&self) -> &Arc<ByteBudget> {
        &self.buffered
    }

    /// Who may use management.
    pub fn management(&self) -> &crate::config::ManagementConfig {
        &self.config.management
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The distribution for `address`: that of the longest matching
    /// `[[address]]` prefix, else balanced (under a policy, prefixes match
    /// the client's part of a scoped address). An address keeps the
    /// distribution it was created with while it is in use.
    pub fn distribution(&self, address: &str) -> Distribution {
        if let Some(d) = self.fed_by_broker(address) {
            return d;
        }
        let prefixes = self.prefixes.read().expect("prefixes lock").clone();
        crate::config::distribution_in(&prefixes, self.unscoped(address))
    }

    /// The `[[address]]` prefixes in use.
    pub fn prefixes(&self) -> Arc<[AddressConfig]> {
        self.prefixes.read().expect("prefixes lock").clone()
    }

    /// Replaces the prefixes (management): they govern addresses created
    /// from now on; one in use keeps its distribution until it is
    /// forgotten (no link, no consumer anywhere), as in Qpid Dispatch
    /// Router.
    pub fn set_prefixes(&self, prefixes: Vec<AddressConfig>) {
        *self.prefixes.write().expect("prefixes lock") = prefixes.into();
    }

    /// `address` as its client named it: under a policy, without its
    /// vhost.
    fn unscoped<'a>(&self, address: &'a str) -> &'a str {
        if self.policy.is_some() {
            crate::policy::unscoped(address)
        } else {
            address
        }
    }

    /// The tenants' policy, if `[[vhost]]`s are configured.
    pub fn policy(&self) -> Option<Arc<Policy>> {
        Some(self.policy.as_ref()?.read().expect("policy lock").clone())
    }

    /// Client connections per vhost and user.
    pub fn admissions(&self) -> &Arc<Admissions> {
        &self.admissions
    }

    /// Replaces the policy (a reload): every connection with links checks
    /// them against it ([`ToConn::PolicyChanged`]), an edge router's
    /// uplink its relays.
    ///
    /// # Errors
    ///
    /// If `[[vhost]]`s would appear or disappear: that changes how every
    /// address is named, and needs a restart.
    pub fn set_policy(&self, policy: Option<Policy>) -> Result<(), &'static str> {
        match (&self.policy, policy) {
            (Some(current), Some(new)) => {
                *current.write().expect("policy lock") = Arc::new(new);
            }
            (None, None) => return Ok(()),
            _ => return Err("adding the first [[vhost]] or removing the last needs a restart"),
        }
        let mut conns: Vec<ConnHandle> = self
            .addresses
            .read()
            .expect("table lock")
            .values()
            .flat_map(|a| a.local_conns())
            .collect();
        // An edge router's uplink: its relays follow the vhosts.
        if let Some(relay) = self.lookup(EDGE_RELAY) {
            conns.extend(relay.consumer_conns());
        }
        conns.sort_by_key(|c| c.id);
        conns.dedup_by_key(|c| c.id);
        for c in conns {
            c.post(ToConn::PolicyChanged);
        }
        Ok(())
    }

    /// The address, created if new. Links hold the returned `Arc`.
    pub fn address(&self, name: &str) -> Arc<Address> {
        if let Some(a) = self.addresses.read().expect("table lock").get(name) {
            return a.clone();
        }
        let mut table = self.addresses.write().expect("table lock");
        table
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Address::with_counters(
                    name.to_string(),
                    self.distribution(name),
                    self.metrics.for_address(self.unscoped(name)),
                ))
            })
            .clone()
    }

    /// The address if it exists (for routing by `to`: no address, no route).
    pub fn lookup(&self, name: &str) -> Option<Arc<Address>> {
        self.addresses
            .read()
            .expect("table lock")
            .get(name)
            .cloned()
    }

    /// Drops the address from the table if no link uses it. Links register
    /// with an address while it is in the table, so an unused address is
    /// held by no link and can go.
    pub fn release(&self, address: &Arc<Address>) {
        let mut table = self.addresses.write().expect("table lock");
        if address.is_unused()
            && table
                .get(address.name())
                .is_some_and(|a| Arc::ptr_eq(a, address))
        {
            table.remove(address.name());
            crate::memory_release::shrink_sparse(&mut table);
        }
    }

    /// A unique address for a dynamic node (AMQP 1.0 §3.5.3 `dynamic`),
    /// e.g. for a request/reply client's reply-to.
    pub fn dynamic_address(&self) -> String {
        let n = self.next_dynamic.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{DYNAMIC_PREFIX}{}/{n}", self.router_id)
    }

    /// The names of the addresses in the table.
    pub fn address_names(&self) -> Vec<String> {
        self.addresses
            .read()
            .expect("table lock")
            .keys()
            .cloned()
            .collect()
    }

    /// The credit producers of named addresses hold, over every address
    /// (for the metrics: takes each address's lock in turn).
    pub fn credit_held(&self) -> i64 {
        self.all_addresses().iter().map(|a| a.credit_held()).sum()
    }

    /// Every address in the table (taken out of it: the table's lock is
    /// not held while they are used).
    fn all_addresses(&self) -> Vec<Arc<Address>> {
        self.addresses
            .read()
            .expect("table lock")
            .values()
            .cloned()
            .collect()
    }

    /// How many addresses are in the table.
    pub fn address_count(&self) -> usize {
        self.addresses.read().expect("table lock").len()
    }
}

impl Core {
    /// A connection task started: management can ask it for a report.
    pub fn register(&self, conn: ConnHandle) {
        self.conns.lock().expect("conns lock").insert(conn.id, conn);
    }

    /// A connection task ended.
    pub fn unregister(&self, conn: ConnId) {
        self.conns.lock().expect("conns lock").remove(&conn);
    }

    /// Every connection task, in id order.
    pub fn connections(&self) -> Vec<ConnHandle> {
        self.conns
            .lock()
            .expect("conns lock")
            .values()
            .cloned()
            .collect()
    }

    /// Every address of this router, as management shows it, by name.
    pub fn address_reports(&self) -> Vec<AddressReport> {
        let table = self.mesh.table();
        let mut reports: BTreeMap<String, AddressReport> = self
            .addresses
            .read()
            .expect("table lock")
            .values()
            .map(|a| (a.name().to_string(), a.report(&table)))
            .collect();
        // Addresses with consumers elsewhere only (not the mesh's notes
        // of which brokered addresses its routers use).
        for (name, routers) in table.addresses() {
            if !reports.contains_key(name) && !name.starts_with(DEMAND_PREFIX) {
                let report = AddressReport {
                    name: name.to_string(),
                    distribution: crate::config::Named::as_str(self.distribution(name)),
                    local_consumers: 0,
                    local_producers: 0,
                    remote_routers: routers.count() as u32,
                    ingress: 0,
                    egress: 0,
                    transit: 0,
                };
                reports.insert(name.to_string(), report);
            }
        }
        reports.into_values().collect()
    }
}

impl Core {
    /// The router's id (also its AMQP container id).
    pub fn router_id(&self) -> &str {
        &self.router_id
    }

    /// Whether this is an edge router (`mode = "edge"`).
    pub fn is_edge(&self) -> bool {
        self.config.router.mode == RouterMode::Edge
    }
}

impl Core {
    /// The mesh: routing table and neighbours.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The address gained its first (`true`) or lost its last local
    /// consumer: the mesh advertises it.
    pub fn local_consumers(&self, address: &Address, present: bool) {
        self.mesh.local_address(address.name(), present);
    }

    /// A link of this router's own (`to` a client, or an edge router
    /// attached to it: [`Hop::is_own`]) on `address` came or went: an
    /// edge router's uplink follows its clients' producers and consumers,
    /// and the broker connections follow both for a brokered address
    /// (`core::brokered`).
    pub fn own_links_changed(&self, address: &Address, to: &Hop) {
        match to {
            Hop::Local => self.mesh.edges().address_changed(address.name()),
            Hop::Edge(_) => {}
            Hop::Neighbor(_) => return,
        }
        self.brokered_links_changed(address);
    }

    /// The address gained its first or lost its last producer of some
    /// tree: for a multicast address, the connections to neighbours make
    /// or drop that tree's data links (trees have links only where they
    /// have producers, so idle trees hold no consumer's credit).
    pub fn tree_producers_changed(&self, address: &Address) {
        if address.distribution() == Distribution::Multicast {
            self.mesh.post_all(|| ToConn::PathsChanged);
        }
    }

    /// The routing table changed: every producer's credit is recomputed,
    /// since which consumers it may use depends on the paths.
    pub fn paths_changed(&self) {
        self.wake_brokers();
        let mut addresses = self.all_addresses();
        addresses.sort_by(|a, b| a.name().cmp(b.name()));
        for a in addresses {
            a.recredit_producers();
        }
    }
}

/// A number that differs at every start of the router: wall-clock
/// nanoseconds (AMQP routers compare instance numbers only for equality
/// and order of restarts).
fn instance_number() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
