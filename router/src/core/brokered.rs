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

use super::Core;
use crate::config::{BROKERED_PREFIX, Brokered, Distribution, brokered_entry};

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
