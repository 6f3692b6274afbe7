//! What a connection task reports about itself when management asks
//! ([`ToConn::Report`](super::ToConn::Report)): plain data, copied out of
//! the task, so management never reaches into a connection's state.

use std::time::Duration;

use super::ConnId;

/// One connection, as management shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnReport {
    /// The connection's id in the router.
    pub id: ConnId,
    /// The peer's address (`host:port`), if the transport has one.
    pub host: String,
    /// The container id the peer gave in its `open` (empty before it).
    pub container: String,
    /// A client, or a neighbour router.
    pub role: ConnRole,
    /// Whether the peer dialed this router (`In`) or this router dialed it.
    pub dir: Dir,
    /// Who the peer authenticated as, and how.
    pub user: Option<String>,
    /// The SASL mechanism the peer used, if it used SASL.
    pub mechanism: Option<String>,
    /// Whether the connection runs over TLS.
    pub tls: bool,
    /// The client's vhost, under a policy.
    pub vhost: Option<String>,
    /// How long the connection has been up.
    pub uptime: Duration,
    /// Its links.
    pub links: Vec<LinkReport>,
}

/// A connection's role (Qpid Dispatch Router's names, and the metrics'
/// `role` label).
pub use crate::metrics::ConnRole;

/// A direction, as management shows it: of a connection (who dialed) or of
/// a link (deliveries into the router or out of it). The discriminants
/// index the metrics' per-direction gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Into the router: the peer dialed / the peer sends.
    In,
    /// Out of the router: the router dialed / the router sends.
    Out,
}

impl Dir {
    /// The name management uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// What a link is for (Qpid Dispatch Router's `linkType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A client's link.
    Endpoint,
    /// The routing protocol's link between two routers.
    RouterControl,
    /// A data link between two routers.
    InterRouter,
}

impl LinkKind {
    /// The name management uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Endpoint => "endpoint",
            LinkKind::RouterControl => "router-control",
            LinkKind::InterRouter => "inter-router",
        }
    }
}

/// One link, as management shows it. Counts are since the link attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    /// The link's handle in the connection.
    pub id: u32,
    /// The link's name.
    pub name: String,
    /// Deliveries into the router (the peer sends) or out of it.
    pub dir: Dir,
    /// What the link is for.
    pub kind: LinkKind,
    /// The address it is attached to (`None`: an anonymous sender).
    pub address: Option<String>,
    /// Link credit: what the router granted (in) or was granted (out).
    pub credit: u32,
    /// Deliveries waiting in the router for the link's credit (out).
    pub undelivered: u64,
    /// Deliveries sent and not yet settled by the consumer (out).
    pub unsettled: u64,
    /// Deliveries that crossed the link.
    pub delivered: u64,
    /// Of them, pre-settled.
    pub presettled: u64,
    /// Outcomes: accepted.
    pub accepted: u64,
    /// Outcomes: rejected.
    pub rejected: u64,
    /// Outcomes: released.
    pub released: u64,
    /// Outcomes: modified.
    pub modified: u64,
    /// Deliveries unsettled for longer than `[limits] stuck_delivery_ms`.
    pub stuck: u64,
}

impl LinkReport {
    /// A link with nothing counted yet.
    pub fn new(id: u32, name: String, dir: Dir, kind: LinkKind, address: Option<String>) -> Self {
        Self {
            id,
            name,
            dir,
            kind,
            address,
            credit: 0,
            undelivered: 0,
            unsettled: 0,
            delivered: 0,
            presettled: 0,
            accepted: 0,
            rejected: 0,
            released: 0,
            modified: 0,
            stuck: 0,
        }
    }
}

/// One address of this router, as management shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressReport {
    /// The address (scoped to its vhost under a policy).
    pub name: String,
    /// How it distributes deliveries.
    pub distribution: &'static str,
    /// Consumer links of this router's clients.
    pub local_consumers: u32,
    /// Producer links of this router's clients.
    pub local_producers: u32,
    /// Remote routers with consumers for it.
    pub remote_routers: u32,
    /// Deliveries from this router's clients.
    pub ingress: u64,
    /// Deliveries to this router's clients.
    pub egress: u64,
    /// Deliveries from a neighbour router.
    pub transit: u64,
}
