//! Brokered addresses (`distribution = "queue"` / `"topic"`) in the
//! address table. A brokered address `X` is two addresses here:
//!
//! - `X` itself, whose only consumers are the router's links *to* the
//!   broker (clients' producers' messages go to the broker, and their
//!   `accepted` is the broker's);
//! - `_brokered/X`, whose consumers are the clients that attach a
//!   receiver to `X`, and whose only producers are the links *from* the
//!   broker. So a consumer only ever gets what the broker delivered, and
//!   its outcome settles the broker's delivery.
//!
//! Both are advertised and routed through the mesh like any address.
//!
//! A broker's links for `X` exist only while the mesh uses them (attach on
//! demand): a router whose clients produce to `X` advertises
//! `_ferry/broker-demand/in/X` as its own address through the routing
//! protocol, one whose clients consume from it `_ferry/broker-demand/out/X`,
//! and the routers dialing the broker attach `X`'s sending link while any
//! router advertises the first, its receiving link while any advertises
//! the second (`driver::links::broker`).

use std::collections::BTreeMap;

use super::{Address, ConnHandle, ConnId, Core, ToConn};
use crate::config::{BROKERED_PREFIX, Brokered, Distribution, brokered_entry};

/// What the addresses a router advertises for brokered addresses its
/// clients use begin with.
pub const DEMAND_PREFIX: &str = "_ferry/broker-demand/";
/// Followed by a brokered address `X`: this router's clients produce to it.
const PRODUCED: &str = "_ferry/broker-demand/in/";
/// Followed by a brokered address `X`: this router's clients consume from it.
const CONSUMED: &str = "_ferry/broker-demand/out/";

/// How a brokered address is used: by producers, by consumers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerUse {
    /// Some router's clients produce to it.
    pub produced: bool,
    /// Some router's clients consume from it.
    pub consumed: bool,
}

/// Which brokered addresses this router's clients use, and the broker
/// connections to tell when that, or the mesh's use, changes.
#[derive(Debug, Default)]
pub(super) struct Demand {
    /// Brokered addresses with a client producer or consumer here.
    local: BTreeMap<String, BrokerUse>,
    /// This router's connections to brokers.
    brokers: BTreeMap<ConnId, ConnHandle>,
}

impl Demand {
    fn wake_brokers(&self) {
        for b in self.brokers.values() {
            b.post(ToConn::BrokerDemand);
        }
    }
}

impl Core {
    /// The brokered entry for `address` (as its client named it), if any.
    pub fn brokered(&self, address: &str) -> Option<Brokered> {
        let prefixes = self.prefixes();
        brokered_entry(&prefixes, self.unscoped(address)).and_then(|e| e.brokered)
    }

    /// The address table's name for the consumers of `address`: for a
    /// brokered address, the one the broker's links feed.
    pub fn consumer_address(&self, address: String) -> String {
        if self.brokered(&address).is_some() {
            format!("{BROKERED_PREFIX}{address}")
        } else {
            address
        }
    }

    /// The distribution of the address the broker's links feed, if
    /// `address` is one: a topic's messages reach every consumer, a
    /// queue's one each.
    pub(super) fn fed_by_broker(&self, address: &str) -> Option<Distribution> {
        let fed = address.strip_prefix(BROKERED_PREFIX)?;
        Some(match self.brokered(fed)? {
            Brokered::Queue => Distribution::Balanced,
            Brokered::Topic => Distribution::Multicast,
        })
    }
}

impl Core {
    /// A link of a client (or of an edge router attached here) on
    /// `address` came or went: if the address is a brokered one (or the
    /// one its consumers are registered under), whether this router's
    /// clients use it may have changed; if it did, the mesh and this
    /// router's broker connections are told.
    pub(super) fn brokered_links_changed(&self, address: &Address) {
        let name = address.name();
        let brokered = name.strip_prefix(BROKERED_PREFIX).unwrap_or(name);
        if self.brokered(brokered).is_none() {
            return;
        }
        // Read under the lock: two tasks changing the address's links at
        // once leave the answer of the later reading, which saw both.
        let mut demand = self.demand.lock().expect("demand lock");
        let now = BrokerUse {
            produced: self.lookup(brokered).is_some_and(|a| a.own_links().0),
            consumed: self
                .lookup(&format!("{BROKERED_PREFIX}{brokered}"))
                .is_some_and(|a| a.own_links().1),
        };
        let before = if now == BrokerUse::default() {
            demand.local.remove(brokered)
        } else {
            demand.local.insert(brokered.to_owned(), now)
        }
        .unwrap_or_default();
        if now == before {
            return;
        }
        if now.produced != before.produced {
            let name = format!("{PRODUCED}{brokered}");
            self.mesh.local_address(&name, now.produced);
        }
        if now.consumed != before.consumed {
            let name = format!("{CONSUMED}{brokered}");
            self.mesh.local_address(&name, now.consumed);
        }
        demand.wake_brokers();
    }

    /// The brokered addresses that some router of the mesh, this one
    /// included, has client producers or consumers of, and which.
    pub fn broker_demand(&self) -> BTreeMap<String, BrokerUse> {
        let mut wanted = self.demand.lock().expect("demand lock").local.clone();
        let table = self.mesh.table();
        for (a, _) in table.addresses() {
            if let Some(x) = a.strip_prefix(PRODUCED) {
                wanted.entry(x.to_owned()).or_default().produced = true;
            } else if let Some(x) = a.strip_prefix(CONSUMED) {
                wanted.entry(x.to_owned()).or_default().consumed = true;
            }
        }
        wanted
    }

    /// `conn` leads to a broker: it is told when the demand changes.
    pub fn register_broker(&self, conn: ConnHandle) {
        let mut demand = self.demand.lock().expect("demand lock");
        demand.brokers.insert(conn.id, conn);
    }

    /// A broker's connection ended.
    pub fn unregister_broker(&self, conn: ConnId) {
        self.demand
            .lock()
            .expect("demand lock")
            .brokers
            .remove(&conn);
    }

    /// The routing table changed (other routers' demand with it): the
    /// broker connections look again.
    pub(super) fn wake_brokers(&self) {
        self.demand.lock().expect("demand lock").wake_brokers();
    }
}
