//! Edge connections as the rest of the router sees them: on an edge
//! router, its one uplink to an interior router; on an interior router,
//! the edge routers attached to it. The links across an edge connection
//! are `driver::links::edge`'s; here is only who is connected, so that
//! the core can tell the uplink when its clients' addresses change.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::core::{ConnHandle, ConnId, ToConn};
use crate::routing::RouterId;

/// An edge router of that id is attached already.
#[derive(Debug, thiserror::Error)]
#[error("edge router {0} is already connected")]
pub struct EdgeTaken(pub RouterId);

/// Who is connected across edge connections.
#[derive(Debug, Default)]
pub struct Edges {
    /// Edge router: the interior router its uplink leads to.
    uplink: Mutex<Option<(RouterId, ConnHandle)>>,
    /// Interior router: the edge routers attached, by id.
    attached: Mutex<HashMap<RouterId, ConnId>>,
    /// Edge router: the addresses whose uplink link the interior has told
    /// about (whether the mesh has a consumer), since the uplink came up.
    decided: Mutex<std::collections::HashSet<String>>,
}

impl Edges {
    /// Edge router: the uplink to `interior` is up, served by `conn`.
    pub fn uplink_up(&self, interior: RouterId, conn: ConnHandle) {
        *self.uplink.lock().expect("uplink lock") = Some((interior, conn));
    }

    /// Edge router: the uplink served by `conn` went down.
    pub fn uplink_down(&self, conn: ConnId) {
        let mut uplink = self.uplink.lock().expect("uplink lock");
        if uplink.as_ref().is_some_and(|(_, h)| h.id == conn) {
            *uplink = None;
            self.decided.lock().expect("decided lock").clear();
        }
    }

    /// Edge router: the interior told (`true`) whether the mesh has a
    /// consumer of `address`, or the uplink's link for it is gone.
    pub fn set_decided(&self, address: &str, decided: bool) {
        let mut d = self.decided.lock().expect("decided lock");
        if decided {
            d.insert(address.to_owned());
        } else {
            d.remove(address);
        }
    }

    /// Edge router: whether a multicast producer of `address` must wait
    /// for the interior's word on it: the uplink is up and has not been
    /// told yet whether the mesh has a consumer (its first copies would
    /// reach this edge's consumers only).
    pub fn undecided(&self, address: &str) -> bool {
        self.uplink.lock().expect("uplink lock").is_some()
            && !self.decided.lock().expect("decided lock").contains(address)
    }

    /// Edge router: the interior router its uplink leads to, if up.
    pub fn uplink(&self) -> Option<RouterId> {
        let uplink = self.uplink.lock().expect("uplink lock");
        uplink.as_ref().map(|(id, _)| id.clone())
    }

    /// Edge router: the clients' links on `address` changed; the uplink
    /// brings its own links for it up to date.
    pub fn address_changed(&self, address: &str) {
        if let Some((_, conn)) = &*self.uplink.lock().expect("uplink lock") {
            conn.post(ToConn::UplinkAddress {
                address: address.to_owned(),
            });
        }
    }

    /// Interior router: edge router `edge` attached on `conn`. One
    /// connection per edge router: a second (a restarted edge while the
    /// old connection lingers) is refused until the first is gone, and the
    /// edge fails over meanwhile.
    pub fn attach(&self, edge: RouterId, conn: ConnId) -> Result<(), EdgeTaken> {
        let mut attached = self.attached.lock().expect("edges lock");
        if attached.contains_key(&edge) {
            return Err(EdgeTaken(edge));
        }
        attached.insert(edge, conn);
        Ok(())
    }

    /// Interior router: the edge router's connection `conn` ended; returns
    /// whether it was the one attached.
    pub fn detach(&self, edge: &RouterId, conn: ConnId) -> bool {
        let mut attached = self.attached.lock().expect("edges lock");
        if attached.get(edge) == Some(&conn) {
            attached.remove(edge);
            return true;
        }
        false
    }
}
