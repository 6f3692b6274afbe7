//! Edge connections: an edge router's uplink to an interior router, and
//! an interior router's end of it.
//!
//! An edge router runs no routing protocol. Its uplink carries, per
//! address, what its own clients need of the mesh, as links the edge
//! attaches (as Qpid Dispatch Router's edge routers do):
//!
//! - for an address its clients produce to, a sending link: on the edge
//!   a consumer of the address leading to the interior router (credit
//!   from the interior, which grants it from every consumer in the mesh
//!   but the edge's own); on the interior a producer, as a client's
//!   would be;
//! - for an address its clients consume from, a receiving link: on the
//!   edge a producer of the address (credit from the edge's own consumers
//!   only); on the interior a consumer, which the interior advertises
//!   into the mesh as its own.
//!
//! Both ends mark these links [`Hop::Edge`]: a delivery never goes back
//! across the edge connection it came on, so the credit of the two
//! directions never feeds itself, and an edge's own producers and
//! consumers meet on the edge (its clients first: the uplink costs more).
//! Links follow the edge's clients: one comes when the address gets its
//! first client link of that direction, and goes (a sending link once
//! its deliveries have their outcomes, like a data link that retires)
//! when it loses its last.
//!
//! A client's anonymous delivery (or one to an address the edge has no
//! link for yet) goes up a relay link ([`RELAY`]), and the interior
//! routes it by its `to`. Under a policy `to` names an address in the
//! client's vhost, so the edge attaches one relay link per vhost besides
//! the plain one (the edge's management answers use that): its source
//! names the vhost (`{vhost}/_ferry/edge-relay`), and the interior scopes
//! the `to` of whatever comes up it to that vhost. The message itself is
//! not changed on the way.

use super::mesh::DataKey;
use super::*;
use crate::config::Distribution;
use crate::mesh::identity::PeerRouter;
use crate::policy::scoped;

use crate::core::EDGE_RELAY as RELAY;

/// Addresses that never cross an uplink: the router's own management node
/// and the mesh's internal addresses.
fn stays_on_the_edge(address: &str) -> bool {
    address.starts_with('$') || address.starts_with("_ferry/")
}

/// The vhost whose relay `source` names (`{vhost}/_ferry/edge-relay`).
fn relay_vhost(source: &str) -> Option<&str> {
    let vhost = source.strip_suffix(RELAY)?.strip_suffix('/')?;
    (!vhost.is_empty() && !vhost.contains('/')).then_some(vhost)
}

impl Links {
    /// The peer's open arrived on an edge connection: an edge router on an
    /// edge listener, an interior router's edge listener on an uplink.
    pub(super) fn edge_opened(&mut self, engine: &mut Connection, peer: Option<PeerRouter>) {
        let uplink = self.mesh.is_uplink();
        let peer = match peer {
            Some(p) if p.edge != uplink => p,
            Some(p) if uplink => {
                return self.refuse(
                    engine,
                    condition::NOT_ALLOWED,
                    format!(
                        "router {} is an edge router too: an edge router's connector dials an interior router's edge listener",
                        p.id
                    ),
                );
            }
            Some(p) => {
                return self.refuse(
                    engine,
                    condition::NOT_ALLOWED,
                    format!(
                        "router {} is not an edge router; interior routers connect to an inter-router listener",
                        p.id
                    ),
                );
            }
            None if uplink => {
                return self.refuse(
                    engine,
                    condition::NOT_ALLOWED,
                    "what answered is not a Ferry router's edge listener (its open names no router)"
                        .into(),
                );
            }
            None => {
                let unwelcome = if self.mesh.kind().authenticated() {
                    condition::UNAUTHORIZED_ACCESS
                } else {
                    condition::NOT_ALLOWED
                };
                return self.refuse(
                    engine,
                    unwelcome,
                    "only Ferry edge routers may use an edge listener".into(),
                );
            }
        };
        if !self.proven(engine, &peer) {
            return;
        }
        if uplink {
            // Up once the interior keeps it open (see `announce_uplink`).
            self.mesh.r_mut().uplink_opened = Some(peer.id);
            return;
        }
        if let Err(e) = self.core.mesh().edges().attach(peer.id.clone(), self.me.id) {
            return self.refuse(engine, condition::NOT_ALLOWED, e.to_string());
        }
        let (at, tls) = self.described();
        tracing::info!("edge router {} connected (from {at}{tls})", peer.id);
        self.mesh.r_mut().edge = Some(peer.id);
        self.attach_interest(engine);
    }

    /// Edge router's uplink, after the events of one input: the interior
    /// router opened the connection and has not closed it at once (as it
    /// does to refuse us, its close following its open): the uplink is up.
    pub(super) fn announce_uplink(&mut self, engine: &mut Connection) {
        // Called on every connection: a client's has no router side to make.
        let Some(interior) = self.mesh.r_if().and_then(|r| r.uplink_opened.take()) else {
            return;
        };
        if !engine.is_open() {
            return;
        }
        let (at, tls) = self.described();
        tracing::info!("uplink to interior router {interior} connected (to {at}{tls})");
        self.core
            .mesh()
            .edges()
            .uplink_up(interior.clone(), self.me.clone());
        self.mesh.r_mut().edge = Some(interior.clone());
        let Ok(session) = engine.begin_session() else {
            return;
        };
        self.mesh.r_mut().lanes.add(session);
        self.sync_relays(engine);
        self.sync_uplink(engine);
    }

    /// Edge router's uplink: a relay link for clients of no vhost and one
    /// for each vhost of the policy (see the module docs).
    pub(super) fn sync_relays(&mut self, engine: &mut Connection) {
        if !self.mesh.is_uplink() {
            return;
        }
        let Some(interior) = self.mesh.r().edge.clone() else {
            return;
        };
        let mut wanted = vec![RELAY.to_owned()];
        if let Some(policy) = self.core.policy() {
            wanted.extend(policy.names().into_iter().map(|v| scoped(v, RELAY)));
        }
        let gone: Vec<LinkId> = (self.mesh.r().relays.iter())
            .filter(|(name, _)| !wanted.contains(name))
            .map(|(_, link)| *link)
            .collect();
        for link in gone {
            let _ = engine.detach(link, true, None);
            self.detached(link);
        }
        for name in wanted {
            if !self.mesh.r().relays.contains_key(&name) {
                self.attach_relay(engine, interior.clone(), name);
            }
        }
    }

    /// Edge router's uplink: attaches the relay link of relay address
    /// `relay`.
    fn attach_relay(&mut self, engine: &mut Connection, interior: RouterId, relay: String) {
        let Some(session) = self.mesh.r().lanes.first() else {
            return;
        };
        let me = self.core.mesh().id();
        let suffix = relay_vhost(&relay).map_or_else(String::new, |v| format!(":{v}"));
        let spec = LinkSpec {
            name: format!("ferry:edge:{me}:relay{suffix}"),
            role: Role::Sender,
            source: Some(ferry_proto::definitions::Source::new(relay.as_str())),
            target: Some(TargetTerminus::Target(
                ferry_proto::definitions::Target::default(),
            )),
            snd_settle_mode: SenderSettleMode::Mixed,
            ..LinkSpec::default()
        };
        let Ok(link) = engine.attach(session, spec) else {
            return;
        };
        let address = self.core.address(&relay);
        self.add_consumer_link(link, address, Hop::Edge(interior), None);
        self.mesh.r_mut().relays.insert(relay, link);
    }

    /// Interior router's edge connection: an anonymous link attached by the
    /// edge; a vhost's relay is noted (see the module docs).
    pub(super) fn note_relay(&mut self, link: LinkId, attach: &Attach) {
        if self.mesh.is_uplink() || self.mesh.edge().is_none() {
            return;
        }
        let source = attach.source.as_ref().and_then(|s| s.address.as_deref());
        if let Some(vhost) = source.and_then(relay_vhost) {
            let vhost = vhost.to_owned();
            self.mesh.r_mut().relay_vhosts.insert(link, vhost);
        }
    }

    /// The name in the mesh of `to`, a delivery's address on anonymous
    /// link `link`: scoped to the client's vhost, or on an interior
    /// router to the vhost of the edge's relay it came up.
    pub(super) fn scoped_to(&self, link: LinkId, to: &str) -> String {
        match self.mesh.r().relay_vhosts.get(&link) {
            Some(vhost) => scoped(vhost, to),
            None => self.scoped(to),
        }
    }

    /// Edge router with its uplink up: the address of the relay of the
    /// client's vhost (for a client's delivery; checked per anonymous
    /// delivery, so an interior router answers without a lookup).
    pub(super) fn edge_relay(&self) -> Option<Arc<Address>> {
        if !self.core.is_edge() || self.hop() != Hop::Local {
            return None;
        }
        let relay = self.tenancy.as_ref().and_then(|t| t.relay.as_deref());
        self.core
            .lookup(relay.unwrap_or(RELAY))
            .filter(|r| r.has_consumers())
    }

    /// Whether a client's anonymous delivery to `address` goes up the
    /// relay, on an edge router with its uplink up: an anycast address
    /// with a consumer on the edge is served there (a producer and a
    /// consumer on one edge never cross the uplink; if that consumer has
    /// no credit, the message is released even if the mesh has another);
    /// any other goes up, multicast too, and the interior serves the
    /// edge's own consumers as well (a relayed delivery is routed there as
    /// a client's, so it may come back down to them), every copy or none.
    pub(super) fn relay_for(&self, address: &Address, credited: bool) -> Option<Arc<Address>> {
        if credited || stays_on_the_edge(address.name()) {
            return None;
        }
        let relay = self.edge_relay()?;
        let local = address.distribution() != Distribution::Multicast && address.client_links().1;
        (!local).then_some(relay)
    }

    /// The peer's address, and `", TLS"` if it proved who it is over TLS.
    fn described(&self) -> (String, &'static str) {
        let at = self
            .mesh
            .ends()
            .peer
            .map_or_else(|| "?".to_owned(), |a| a.to_string());
        let tls = if self.mesh.kind().authenticated() {
            ", TLS"
        } else {
            ""
        };
        (at, tls)
    }

    /// Edge router's uplink: brings the links of every address up to date.
    pub(super) fn sync_uplink(&mut self, engine: &mut Connection) {
        let mut names: std::collections::BTreeSet<String> =
            self.core.address_names().into_iter().collect();
        names.extend(self.mesh.r().data.keys().map(|(a, _)| a.clone()));
        names.extend(self.mesh.r().edge_in.keys().cloned());
        for name in names {
            self.sync_uplink_address(engine, &name);
        }
    }

    /// Edge router's uplink: a sending link for `address` while this
    /// router's clients produce to it, a receiving link while they consume
    /// from it.
    pub(super) fn sync_uplink_address(&mut self, engine: &mut Connection, address: &str) {
        let (Some(interior), Some(_)) = (self.mesh.r().edge.clone(), self.mesh.r().lanes.first())
        else {
            return;
        };
        if !self.mesh.is_uplink() || stays_on_the_edge(address) {
            return;
        }
        let (produced, consumed) = self
            .core
            .lookup(address)
            .map_or((false, false), |a| a.client_links());
        let key: DataKey = (address.to_owned(), None);
        match (produced, self.mesh.r().data.get(&key).copied()) {
            (true, Some(link)) if self.is_retiring(link) => {
                self.unretire(link, None);
                self.follow_interest(link);
            }
            (true, None) => {
                self.attach_data_link(engine, key.clone(), Hop::Edge(interior.clone()));
                if let Some(&link) = self.mesh.r().data.get(&key) {
                    self.follow_interest(link);
                }
            }
            (false, Some(link)) if !self.is_retiring(link) => {
                self.core.mesh().edges().set_decided(address, false);
                self.mesh.r_mut().wanted.remove(address);
                self.retire(engine, link);
            }
            _ => {}
        }
        match (consumed, self.mesh.r().edge_in.get(address).copied()) {
            (true, None) => self.attach_from_interior(engine, address, interior),
            (false, Some(link)) => {
                let _ = engine.detach(link, true, None);
                self.detached(link);
            }
            _ => {}
        }
    }

    /// Edge router's uplink: the link the mesh's messages for `address`
    /// come in on, a producer of it that this router's consumers give
    /// credit to (its credit is granted once the interior answers).
    fn attach_from_interior(&mut self, engine: &mut Connection, address: &str, interior: RouterId) {
        let Some(session) = self.mesh.r().lanes.first() else {
            return;
        };
        let me = self.core.mesh().id();
        let spec = LinkSpec {
            name: format!("ferry:edge:{me}:{address}"),
            role: Role::Receiver,
            source: Some(ferry_proto::definitions::Source::new(address)),
            target: Some(TargetTerminus::Target(
                ferry_proto::definitions::Target::new(address),
            )),
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            max_message_size: Some(self.max_message_size()),
            ..LinkSpec::default()
        };
        let Ok(link) = engine.attach(session, spec) else {
            return;
        };
        let a = self.core.address(address);
        self.add_producer_link(link, a, Hop::Edge(interior));
        self.mesh.r_mut().edge_in.insert(address.to_owned(), link);
    }

    /// Whether `link` is an uplink's receiving link.
    pub(super) fn is_from_interior(&self, link: LinkId) -> bool {
        self.mesh.is_uplink() && self.producers.contains_key(&link)
    }

    /// A link of an edge connection is gone: an uplink's receiving link or
    /// relay, an edge's relay on the interior.
    pub(super) fn edge_link_gone(&mut self, link: LinkId) {
        if let Some(r) = self.mesh.r_if() {
            r.edge_in.retain(|_, l| *l != link);
            r.relays.retain(|_, l| *l != link);
            r.relay_vhosts.remove(&link);
        }
    }

    /// The edge connection ended: an edge's uplink is down, an interior
    /// forgets the edge router.
    pub(super) fn edge_teardown(&mut self) {
        let Some(peer) = self.mesh.r().edge.clone() else {
            return;
        };
        let edges = self.core.mesh().edges();
        if self.mesh.is_uplink() {
            edges.uplink_down(self.me.id);
        } else if edges.detach(&peer, self.me.id) {
            if self.mesh.silent() {
                tracing::warn!(
                    "edge router {peer} disconnected: nothing heard from it for {} ms",
                    crate::mesh::NEIGHBOUR_SILENCE.as_millis()
                );
            } else {
                tracing::info!("edge router {peer} disconnected");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_names_its_vhost() {
        assert_eq!(relay_vhost("t1/_ferry/edge-relay"), Some("t1"));
        assert_eq!(relay_vhost(RELAY), None);
        assert_eq!(relay_vhost("/_ferry/edge-relay"), None);
        assert_eq!(relay_vhost("a/b/_ferry/edge-relay"), None);
        assert_eq!(relay_vhost(&scoped("t1", RELAY)), Some("t1"));
    }
}
