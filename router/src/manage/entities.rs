//! The entity types management serves and their attributes, with Qpid
//! Dispatch Router's type and attribute names wherever the concept is the
//! same (so its `qdstat` and `qdmanage` read Ferry), Ferry's own beside
//! them. Rows are built from a [`Snapshot`]: plain data the agent gathered,
//! so this file needs neither sockets nor the running core.

use std::sync::Arc;

use ferry_proto::codec::{Str, Value};

use crate::config::{AddressConfig, Config, ConnectorConfig, ListenerConfig, Named};
use crate::core::{AddressReport, ConnReport, Dir, LinkReport};
use crate::routing::{RouterId, RoutingTable};

/// The prefix of Qpid Dispatch Router's entity type names.
const QDR: &str = "org.apache.qpid.dispatch.";

/// An entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityType {
    /// This router.
    Router,
    /// A `[[listener]]`.
    Listener,
    /// A `[[connector]]` (from the configuration or created at run time).
    Connector,
    /// An `[[address]]` prefix.
    ConfigAddress,
    /// A `[[tls]]` profile.
    SslProfile,
    /// A connection.
    Connection,
    /// A link.
    Link,
    /// A router of the mesh.
    Node,
    /// An address this router knows.
    Address,
}

impl EntityType {
    /// Every type, in documentation order.
    pub const ALL: [EntityType; 9] = [
        EntityType::Router,
        EntityType::Listener,
        EntityType::Connector,
        EntityType::ConfigAddress,
        EntityType::SslProfile,
        EntityType::Connection,
        EntityType::Link,
        EntityType::Node,
        EntityType::Address,
    ];

    /// The short name (after `org.apache.qpid.dispatch.`).
    pub fn short(self) -> &'static str {
        match self {
            EntityType::Router => "router",
            EntityType::Listener => "listener",
            EntityType::Connector => "connector",
            EntityType::ConfigAddress => "router.config.address",
            EntityType::SslProfile => "sslProfile",
            EntityType::Connection => "connection",
            EntityType::Link => "router.link",
            EntityType::Node => "router.node",
            EntityType::Address => "router.address",
        }
    }

    /// The full name.
    pub fn name(self) -> String {
        format!("{QDR}{}", self.short())
    }

    /// The type named `name`, full or short.
    pub fn from_name(name: &str) -> Option<Self> {
        let short = name.strip_prefix(QDR).unwrap_or(name);
        Self::ALL.into_iter().find(|t| t.short() == short)
    }

    /// Its attributes, in the order rows hold them.
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            EntityType::Router => &[
                "identity",
                "name",
                "type",
                "id",
                "mode",
                "version",
                "area",
                "addrCount",
                "linkCount",
                "nodeCount",
                "connectionCount",
                "uptimeSeconds",
                "memoryUsage",
                "deliveriesIngress",
                "deliveriesEgress",
                "deliveriesTransit",
                "droppedPresettledDeliveries",
                "presettledDeliveries",
                "acceptedDeliveries",
                "rejectedDeliveries",
                "releasedDeliveries",
                "modifiedDeliveries",
                "deliveriesStuck",
                "deliveriesDelayed1Sec",
                "deliveriesDelayed10Sec",
                "deliveriesRedirectedToFallback",
                "deliveriesIngressRouteContainer",
                "deliveriesEgressRouteContainer",
                "linkRouteCount",
                "autoLinkCount",
                "workerThreads",
                "releasedNoRoute",
                "expiredDeliveries",
            ],
            EntityType::Listener => &[
                "identity",
                "name",
                "type",
                "host",
                "port",
                "role",
                "saslMechanisms",
                "authenticatePeer",
                "sslProfile",
                "clientCert",
            ],
            EntityType::Connector => &[
                "identity",
                "name",
                "type",
                "host",
                "port",
                "role",
                "cost",
                "sslProfile",
                "serverName",
            ],
            EntityType::ConfigAddress => &["identity", "name", "type", "prefix", "distribution"],
            EntityType::SslProfile => &[
                "identity",
                "name",
                "type",
                "certFile",
                "privateKeyFile",
                "caCertFile",
                "minVersion",
            ],
            EntityType::Connection => &[
                "identity",
                "name",
                "type",
                "host",
                "container",
                "role",
                "dir",
                "protocol",
                "isAuthenticated",
                "user",
                "sasl",
                "isEncrypted",
                "sslProto",
                "sslCipher",
                "tenant",
                "uptimeSeconds",
                "lastDlvSeconds",
                "operStatus",
                "linkCount",
            ],
            EntityType::Link => &[
                "identity",
                "name",
                "type",
                "linkType",
                "linkDir",
                "connectionId",
                "peer",
                "owningAddr",
                "capacity",
                "undeliveredCount",
                "unsettledCount",
                "deliveryCount",
                "presettledCount",
                "droppedPresettledCount",
                "acceptedCount",
                "rejectedCount",
                "releasedCount",
                "modifiedCount",
                "deliveriesDelayed1Sec",
                "deliveriesDelayed10Sec",
                "deliveriesStuck",
                "creditAvailable",
                "zeroCreditSeconds",
                "adminStatus",
                "operStatus",
                "linkName",
                "priority",
                "settleRate",
                "address",
            ],
            EntityType::Node => &[
                "identity",
                "name",
                "type",
                "id",
                "protocolVersion",
                "linkState",
                "nextHop",
                "routerLink",
                "validOrigins",
                "address",
                "cost",
                "lastTopoChange",
            ],
            EntityType::Address => &[
                "identity",
                "name",
                "type",
                "key",
                "distribution",
                "inProcess",
                "subscriberCount",
                "remoteCount",
                "containerCount",
                "remoteHostRouters",
                "deliveriesIngress",
                "deliveriesEgress",
                "deliveriesTransit",
                "deliveriesToContainer",
                "deliveriesFromContainer",
                "deliveriesRedirectedToFallback",
                "priority",
                "address",
                "producerCount",
            ],
        }
    }
}

/// What the router is and does, gathered for one request.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration (TLS profiles).
    pub config: Arc<Config>,
    /// Listeners: the configuration's and those created at run time.
    pub listeners: Vec<Managed<ListenerConfig>>,
    /// Connectors: the configuration's and those created at run time.
    pub connectors: Vec<Managed<ConnectorConfig>>,
    /// Address prefixes: the configuration's and those created at run time.
    pub prefixes: Vec<Managed<AddressConfig>>,
    /// Every connection that answered.
    pub conns: Vec<ConnReport>,
    /// Every address this router knows.
    pub addresses: Vec<AddressReport>,
    /// The routing table.
    pub table: Arc<RoutingTable>,
    /// Neighbours and the id of the connection to each.
    pub neighbours: Vec<(RouterId, u64)>,
    /// Router-wide counters.
    pub counters: Counters,
}

/// Router-wide figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Resident memory, bytes (0: unknown).
    pub rss_bytes: u64,
    /// Pre-settled deliveries dropped for want of a consumer.
    pub dropped_presettled: u64,
    /// Unsettled deliveries released for want of a consumer.
    pub released_no_route: u64,
    /// Deliveries whose time to live passed in the router.
    pub expired: u64,
    /// Deliveries unsettled for longer than `stuck_delivery_ms`.
    pub stuck: u64,
    /// Threads serving connections.
    pub worker_threads: u64,
}

/// One entity: its attribute values, in [`EntityType::attributes`] order.
pub type Row = Vec<Value>;

fn s(text: impl Into<String>) -> Value {
    Value::String(Str::from(text.into()))
}

fn opt(text: Option<impl Into<String>>) -> Value {
    text.map_or(Value::Null, s)
}

fn n(x: u64) -> Value {
    Value::Ulong(x)
}

fn list(items: impl IntoIterator<Item = String>) -> Value {
    Value::List(items.into_iter().map(s).collect())
}

impl Snapshot {
    /// Every entity of type `t`.
    pub fn rows(&self, t: EntityType) -> Vec<Row> {
        let ty = || s(t.name());
        match t {
            EntityType::Router => vec![self.router_row(ty())],
            EntityType::Listener => self.listeners.iter().map(Managed::row).collect(),
            EntityType::Connector => self.connectors.iter().map(Managed::row).collect(),
            EntityType::ConfigAddress => self.prefixes.iter().map(Managed::row).collect(),
            EntityType::SslProfile => self
                .config
                .tls
                .iter()
                .map(|p| {
                    let path = |p: &Option<std::path::PathBuf>| {
                        opt(p.as_ref().map(|p| p.to_string_lossy().into_owned()))
                    };
                    vec![
                        s(p.name.clone()),
                        s(p.name.clone()),
                        ty(),
                        path(&p.cert),
                        path(&p.key),
                        path(&p.ca),
                        s(p.min_version.as_str()),
                    ]
                })
                .collect(),
            EntityType::Connection => self.conns.iter().map(|c| connection_row(c, ty())).collect(),
            EntityType::Link => self
                .conns
                .iter()
                .flat_map(|c| c.links.iter().map(move |l| (c, l)))
                .map(|(c, l)| {
                    let id = format!("{}.{}", c.id.0, l.id);
                    vec![
                        s(id.clone()),
                        s(id),
                        ty(),
                        s(l.kind.as_str()),
                        s(l.dir.as_str()),
                        s(c.id.0.to_string()),
                        Value::Null,
                        opt(l.address.as_ref().map(|a| format!("M0{a}"))),
                        n(l.credit.into()),
                        n(l.undelivered),
                        n(l.unsettled),
                        n(l.delivered),
                        n(l.presettled),
                        n(0),
                        n(l.accepted),
                        n(l.rejected),
                        n(l.released),
                        n(l.modified),
                        n(0),
                        n(0),
                        n(l.stuck),
                        n(l.credit.into()),
                        n(0),
                        s("enabled"),
                        s("up"),
                        s(l.name.clone()),
                        n(4),
                        n(0),
                        opt(l.address.clone()),
                    ]
                })
                .collect(),
            EntityType::Node => self.node_rows(&ty),
            EntityType::Address => self
                .addresses
                .iter()
                .map(|a| {
                    let key = format!("M0{}", a.name);
                    let remote: Vec<String> = self
                        .table
                        .routers_for(&a.name)
                        .map(|r| r.as_str().to_string())
                        .collect();
                    vec![
                        s(key.clone()),
                        s(key.clone()),
                        ty(),
                        s(key),
                        s(a.distribution),
                        n(0),
                        n(a.local_consumers.into()),
                        n(a.remote_routers.into()),
                        n(0),
                        list(remote),
                        n(a.ingress),
                        n(a.egress),
                        n(a.transit),
                        n(0),
                        n(0),
                        n(0),
                        Value::Int(-1),
                        s(a.name.clone()),
                        n(a.local_producers.into()),
                    ]
                })
                .collect(),
        }
    }

    fn router_row(&self, ty: Value) -> Row {
        let id = self.table.me().as_str().to_string();
        let links: usize = self.conns.iter().map(|c| c.links.len()).sum();
        let sum = |f: fn(&AddressReport) -> u64| self.addresses.iter().map(f).sum::<u64>();
        let c = &self.counters;
        // Outcomes as consumers gave them: counted on the links out.
        let out = |f: fn(&LinkReport) -> u64| {
            self.conns
                .iter()
                .flat_map(|c| &c.links)
                .filter(|l| l.dir == Dir::Out)
                .map(f)
                .sum::<u64>()
        };
        vec![
            s(id.clone()),
            s(id.clone()),
            ty,
            s(id),
            s(self.config.router.mode.as_str()),
            s(env!("CARGO_PKG_VERSION")),
            s("0"),
            n(self.addresses.len() as u64),
            n(links as u64),
            n(self.table.routers().count() as u64),
            n(self.conns.len() as u64),
            n(c.uptime_secs),
            n(c.rss_bytes),
            n(sum(|a| a.ingress)),
            n(sum(|a| a.egress)),
            n(sum(|a| a.transit)),
            n(c.dropped_presettled),
            n(out(|l| l.presettled)),
            n(out(|l| l.accepted)),
            n(out(|l| l.rejected)),
            n(out(|l| l.released)),
            n(out(|l| l.modified)),
            n(c.stuck),
            n(0),
            n(0),
            n(0),
            n(0),
            n(0),
            n(0),
            n(0),
            n(c.worker_threads),
            n(c.released_no_route),
            n(c.expired),
        ]
    }

    fn node_rows(&self, ty: &dyn Fn() -> Value) -> Vec<Row> {
        let me = self.table.me();
        self.table
            .routers()
            .map(|r| {
                let id = r.as_str().to_string();
                let neighbour = self.neighbours.iter().find(|(n, _)| n == r);
                // Qpid Dispatch Router's convention: a neighbour has no
                // next hop but a router link; others a next hop.
                let (next_hop, router_link) = match neighbour {
                    Some((_, conn)) => (Value::Null, n(*conn)),
                    None if r == me => (s("(self)"), Value::Null),
                    None => (opt(self.table.next_hop(r).map(|h| h.as_str())), Value::Null),
                };
                let links: Vec<String> = self
                    .table
                    .neighbours_of(r)
                    .map(|(n, _)| n.as_str().to_string())
                    .collect();
                vec![
                    s(id.clone()),
                    s(id.clone()),
                    ty(),
                    s(id.clone()),
                    n(1),
                    list(links),
                    next_hop,
                    router_link,
                    list(Vec::new()),
                    s(format!("amqp:/_topo/0/{id}/$management")),
                    self.table.cost(r).map_or(Value::Null, |c| n(c.into())),
                    Value::Null,
                ]
            })
            .collect()
    }
}

fn connection_row(c: &ConnReport, ty: Value) -> Row {
    let authenticated = c.mechanism.is_some();
    vec![
        s(c.id.0.to_string()),
        s(c.id.0.to_string()),
        ty,
        s(c.host.clone()),
        s(c.container.clone()),
        s(c.role.as_str()),
        s(c.dir.as_str()),
        s("amqp"),
        Value::Bool(authenticated),
        opt(c.user.clone()),
        opt(c.mechanism.clone()),
        Value::Bool(c.tls),
        // The version and suite are not kept yet: "TLS" says only that.
        opt(c.tls.then_some("TLS")),
        opt(c.tls.then_some("")),
        opt(c.vhost.clone()),
        n(c.uptime.as_secs()),
        Value::Null,
        s("up"),
        n(c.links.len() as u64),
    ]
}

/// An entity of the configuration (listener, connector, address prefix)
/// as management names it: its identity derives from what it is, its name
/// is the one CREATE gave (else the identity).
#[derive(Debug, Clone, PartialEq)]
pub struct Managed<C> {
    /// `listener/host:port`, `connector/host:port`, `address/prefix`.
    pub id: String,
    /// The name CREATE gave, else the identity.
    pub name: String,
    /// What it is.
    pub config: C,
}

/// What a configuration entity is in management.
pub trait Configured: Clone {
    /// Its entity type.
    const TYPE: EntityType;
    /// Its identity.
    fn id(&self) -> String;
    /// Its attributes after `identity`, `name` and `type`, in
    /// [`EntityType::attributes`] order.
    fn values(&self) -> Vec<Value>;
}

impl<C: Configured> Managed<C> {
    /// `config` under `name`.
    pub fn of(name: String, config: &C) -> Self {
        Self {
            id: config.id(),
            name,
            config: config.clone(),
        }
    }

    /// Its row.
    pub fn row(&self) -> Row {
        let mut row = vec![s(self.id.clone()), s(self.name.clone()), s(C::TYPE.name())];
        row.extend(self.config.values());
        row
    }

    /// Its attributes by name (a CREATE's or UPDATE's response body).
    pub fn attributes(&self) -> Value {
        let names = C::TYPE.attributes().iter().map(|a| s(*a));
        Value::Map(ferry_proto::codec::Map(names.zip(self.row()).collect()))
    }
}

impl Configured for ListenerConfig {
    const TYPE: EntityType = EntityType::Listener;

    fn id(&self) -> String {
        format!("listener/{}:{}", self.host, self.port)
    }

    fn values(&self) -> Vec<Value> {
        vec![
            s(self.host.clone()),
            s(self.port.to_string()),
            s(self.role.as_str()),
            s(self.sasl_mechanisms.join(" ")),
            Value::Bool(self.require_sasl),
            opt(self.tls.clone()),
            s(self.client_cert.as_str()),
        ]
    }
}

impl Configured for ConnectorConfig {
    const TYPE: EntityType = EntityType::Connector;

    fn id(&self) -> String {
        format!("connector/{}:{}", self.host, self.port)
    }

    fn values(&self) -> Vec<Value> {
        vec![
            s(self.host.clone()),
            s(self.port.to_string()),
            s(self.role.as_str()),
            n(self.cost.into()),
            opt(self.tls.clone()),
            opt(self.server_name.clone()),
        ]
    }
}

impl Configured for AddressConfig {
    const TYPE: EntityType = EntityType::ConfigAddress;

    fn id(&self) -> String {
        format!("address/{}", self.prefix)
    }

    fn values(&self) -> Vec<Value> {
        vec![s(self.prefix.clone()), s(self.distribution_name())]
    }
}
