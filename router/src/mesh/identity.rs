//! Who is at the other end: connection properties in `open` (AMQP 1.0
//! §2.7.1 `properties`). Every open the router sends says what it is,
//! `product = "ferry"` and `version`, as Qpid Dispatch Router's does
//! (tools read them to tell which broker or router they talk to). Routers
//! recognise each other by more: a router's open on an inter-router
//! connection carries its id, its instance number and, from the dialing
//! side, the link cost. A client's open carries none of these.

use ferry_proto::codec::{Fields, Value};

use crate::routing::RouterId;

/// Property: the product, [`PRODUCT_NAME`] (the key Qpid Dispatch Router
/// and Qpid Proton use).
pub const PRODUCT: &str = "product";
/// Property: the product's version.
pub const VERSION: &str = "version";
/// The value of [`PRODUCT`].
pub const PRODUCT_NAME: &str = "ferry";

/// Property: the router's id.
pub const ROUTER_ID: &str = "ferry:router-id";
/// Property: the router's instance number (decimal).
pub const INSTANCE: &str = "ferry:instance";
/// Property: the cost of the link, set by the dialing router (decimal).
pub const COST: &str = "ferry:cost";
/// Property: `"edge"` from an edge router dialing its uplink (an edge
/// router is no mesh neighbour: an inter-router listener refuses it, and
/// an edge listener takes nothing else).
pub const MODE: &str = "ferry:mode";

/// A router's identity as read from its open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRouter {
    /// Its id.
    pub id: RouterId,
    /// Its instance number.
    pub instance: u64,
    /// The link cost it proposes, if it dialed.
    pub cost: Option<u32>,
    /// It is an edge router dialing its uplink.
    pub edge: bool,
}

/// The open properties every connection gets: what this is.
pub fn product() -> Vec<(String, String)> {
    vec![
        (PRODUCT.to_string(), PRODUCT_NAME.to_string()),
        (VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]
}

/// The open properties announcing this router on an inter-router
/// connection: [`product`], and its id, instance and (dialing) cost.
pub fn properties(id: &RouterId, instance: u64, cost: Option<u32>) -> Vec<(String, String)> {
    let mut p = product();
    p.extend([
        (ROUTER_ID.to_string(), id.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
    ]);
    if let Some(c) = cost {
        p.push((COST.to_string(), c.to_string()));
    }
    p
}

/// The open properties of an edge router dialing its uplink: its id and
/// instance, and [`MODE`] `"edge"`.
pub fn edge_properties(id: &RouterId, instance: u64) -> Vec<(String, String)> {
    let mut p = properties(id, instance, None);
    p.push((MODE.to_string(), "edge".to_string()));
    p
}

/// The peer router in `properties`, if the peer is one.
pub fn peer(properties: Option<&Fields>) -> Option<PeerRouter> {
    let p = properties?;
    let text = |k: &str| p.get(k).and_then(Value::as_text).map(str::to_string);
    let id = text(ROUTER_ID)?;
    Some(PeerRouter {
        id: RouterId::from(id.as_str()),
        instance: text(INSTANCE).and_then(|s| s.parse().ok()).unwrap_or(0),
        cost: text(COST).and_then(|s| s.parse().ok()),
        edge: text(MODE).as_deref() == Some("edge"),
    })
}
