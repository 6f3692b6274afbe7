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

use super::mesh::DataKey;
use super::*;
use crate::mesh::identity::PeerRouter;

/// The target of the link an interior router tells an edge router on
/// which of the addresses it produces to have a consumer in the mesh.
const INTEREST_ADDRESS: &str = "_ferry/edge-interest";

/// Credit the edge router grants the interest link (re-granted at half).
const INTEREST_CREDIT: u32 = 1024;

/// An interest message: `[address, has-consumers]` as an amqp-value.
fn interest_message(address: &str, has: bool) -> Bytes {
    use ferry_proto::codec::{Described, Descriptor, Encode, Value};
    Value::Described(Box::new(Described {
        descriptor: Descriptor::Code(0x77),
        value: Value::List(vec![Value::String(address.into()), Value::Bool(has)]),
    }))
    .to_bytes()
}

/// Reads an [`interest_message`].
fn read_interest(payload: Bytes) -> Option<(String, bool)> {
    use ferry_proto::codec::{Decode, Decoder, Descriptor, Value};
    let mut d = Decoder::new(payload);
    let Value::Described(section) = Value::decode(&mut d).ok()? else {
        return None;
    };
    if section.descriptor != Descriptor::Code(0x77) {
        return None;
    }
    let Value::List(items) = section.value else {
        return None;
    };
    match items.as_slice() {
        [Value::String(a), Value::Bool(has)] => Some((a.to_string(), *has)),
        _ => None,
    }
}

/// Addresses that never cross an uplink: the router's own management node
/// and the mesh's internal addresses.
fn stays_on_the_edge(address: &str) -> bool {
    address.starts_with('$') || address.starts_with("_ferry/")
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
            self.mesh.uplink_opened = Some(peer.id);
            return;
        }
        if let Err(e) = self.core.mesh().edges().attach(peer.id.clone(), self.me.id) {
            return self.refuse(engine, condition::NOT_ALLOWED, e.to_string());
        }
        let (at, tls) = self.described();
        tracing::info!("edge router {} connected (from {at}{tls})", peer.id);
        self.mesh.edge = Some(peer.id);
        let Ok(session) = engine.begin_session() else {
            return;
        };
        let spec = LinkSpec {
            name: format!("ferry:edge-interest:{}", self.core.mesh().id()),
            role: Role::Sender,
            source: Some(ferry_proto::definitions::Source::default()),
            target: Some(TargetTerminus::Target(
                ferry_proto::definitions::Target::new(INTEREST_ADDRESS),
            )),
            snd_settle_mode: SenderSettleMode::Settled,
            ..LinkSpec::default()
        };
        self.mesh.interest_link = engine.attach(session, spec).ok();
    }

    /// Interior router, for an edge router's producer link `link`: tells
    /// the edge whether the link's address has a consumer to reach beyond
    /// the edge itself, when that changed. The edge takes its sending link
    /// for the address into use, or out of it, accordingly: the edge runs
    /// no routing protocol, and the link's credit alone cannot tell "no
    /// consumer" from "all credit in flight".
    pub(super) fn tell_interest(&mut self, engine: &mut Connection, link: LinkId) {
        let (Some(edge), false) = (&self.mesh.edge, self.mesh.is_uplink()) else {
            return;
        };
        let Some(Producer {
            address: Some(a), ..
        }) = self.producers.get(&link)
        else {
            return;
        };
        let has = a.has_consumers_besides(&Hop::Edge(edge.clone()));
        if self.mesh.interest.get(a.name()) == Some(&has) {
            return;
        }
        self.mesh.interest.insert(a.name().to_owned(), has);
        self.mesh.interest_pending.insert(a.name().to_owned());
        self.flush_interest(engine);
    }

    /// Interior router: the edge's producer link for `address` is gone; a
    /// new one is told afresh.
    pub(super) fn forget_interest(&mut self, address: &str) {
        if self.mesh.edge.is_some() && !self.mesh.is_uplink() {
            self.mesh.interest.remove(address);
            self.mesh.interest_pending.remove(address);
        }
    }

    /// Interior router: sends what the edge is yet to be told, as far as
    /// the interest link's credit goes. Each message is an amqp-value
    /// list `[address, has-consumers]`, pre-settled.
    pub(super) fn flush_interest(&mut self, engine: &mut Connection) {
        let Some(link) = self.mesh.interest_link else {
            return;
        };
        while engine.credit(link) > 0 {
            let Some(address) = self.mesh.interest_pending.pop_first() else {
                return;
            };
            let Some(&has) = self.mesh.interest.get(&address) else {
                continue;
            };
            let body = interest_message(&address, has);
            let tag = self.tag();
            if engine.send(link, tag, body, true, false).is_err() {
                return;
            }
        }
    }

    /// Edge router's uplink: accepts the interior's interest link.
    pub(super) fn accept_interest(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) -> bool {
        let is_interest = attach.role == Role::Sender
            && matches!(&attach.target, Some(TargetTerminus::Target(t))
                if t.address.as_deref() == Some(INTEREST_ADDRESS));
        if !is_interest || self.mesh.interest_link.is_some() {
            return false;
        }
        let spec = LinkSpec {
            name: attach.name.to_string(),
            role: Role::Receiver,
            source: attach.source.clone(),
            target: attach.target.clone(),
            snd_settle_mode: SenderSettleMode::Settled,
            ..LinkSpec::default()
        };
        if engine.accept_attach(link, spec).is_ok() {
            let _ = engine.flow(link, INTEREST_CREDIT, false);
            self.mesh.interest_link = Some(link);
        }
        true
    }

    /// Whether `link` is the interior's interest link, on an edge's uplink.
    pub(super) fn is_interest_in(&self, link: LinkId) -> bool {
        self.mesh.is_uplink() && self.mesh.interest_link == Some(link)
    }

    /// Edge router's uplink: the interior says whether an address has a
    /// consumer in the mesh.
    pub(super) fn interest_transfer(&mut self, engine: &mut Connection, t: IncomingTransfer) {
        if engine.credit(t.link) < INTEREST_CREDIT / 2 {
            let _ = engine.flow(t.link, INTEREST_CREDIT, false);
        }
        let Some((address, has)) = (!t.more && !t.aborted)
            .then(|| read_interest(t.payload))
            .flatten()
        else {
            tracing::warn!("unreadable interest message from the interior router");
            return;
        };
        if has {
            self.mesh.wanted.insert(address.clone());
        } else {
            self.mesh.wanted.remove(&address);
        }
        self.core.mesh().edges().set_decided(&address, true);
        let key: DataKey = (address, None);
        if let Some(&link) = self.mesh.data.get(&key) {
            self.follow_interest(link);
        }
        if let Some(a) = self.core.lookup(&key.0) {
            a.recredit_producers();
        }
    }

    /// Edge router's uplink: sending link `link` is in use (a consumer of
    /// its address) while the interior says the mesh has a consumer of it;
    /// otherwise it is dormant, and what waited on it for credit goes back
    /// `released` (never sent): in the mesh a data link whose address lost
    /// its last consumer retires the same way.
    fn follow_interest(&mut self, link: LinkId) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        if c.retiring {
            return;
        }
        let wanted = self.mesh.wanted.contains(c.address.name());
        if wanted && c.dormant {
            let a = self.core.address(c.address.name());
            a.add_consumer(self.me.clone(), link, c.to.clone(), None);
            if self.congested {
                a.set_congested(self.me.id, link, true);
            }
            a.adjust_consumer_credit(self.me.id, link, i64::from(c.reported));
            c.address = a;
            c.dormant = false;
        } else if !wanted && !c.dormant {
            c.dormant = true;
            c.address.remove_consumer(self.me.id, link);
            let held = std::mem::take(&mut c.held);
            let name = c.address.name().to_owned();
            let mut released = 0;
            for h in held {
                if let Held::Start(Forwarded {
                    origin: Some(o), ..
                }) = h
                {
                    o.settle(DeliveryState::Released);
                    released += 1;
                }
            }
            if released > 0 {
                tracing::debug!(
                    "{released} deliveries to {name} waiting on the uplink released: \
                     no consumer in the mesh"
                );
            }
        }
    }

    /// Edge router's uplink, after the events of one input: the interior
    /// router opened the connection and has not closed it at once (as it
    /// does to refuse us, its close following its open): the uplink is up.
    pub(super) fn announce_uplink(&mut self, engine: &mut Connection) {
        let Some(interior) = self.mesh.uplink_opened.take() else {
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
        self.mesh.edge = Some(interior);
        let Ok(session) = engine.begin_session() else {
            return;
        };
        self.mesh.lanes.add(session);
        self.sync_uplink(engine);
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
        names.extend(self.mesh.data.keys().map(|(a, _)| a.clone()));
        names.extend(self.mesh.edge_in.keys().cloned());
        for name in names {
            self.sync_uplink_address(engine, &name);
        }
    }

    /// Edge router's uplink: a sending link for `address` while this
    /// router's clients produce to it, a receiving link while they consume
    /// from it.
    pub(super) fn sync_uplink_address(&mut self, engine: &mut Connection, address: &str) {
        let (Some(interior), Some(_)) = (self.mesh.edge.clone(), self.mesh.lanes.first()) else {
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
        match (produced, self.mesh.data.get(&key).copied()) {
            (true, Some(link)) if self.is_retiring(link) => {
                self.unretire(link, None);
                self.follow_interest(link);
            }
            (true, None) => {
                self.attach_data_link(engine, key.clone(), Hop::Edge(interior.clone()));
                if let Some(&link) = self.mesh.data.get(&key) {
                    self.follow_interest(link);
                }
            }
            (false, Some(link)) if !self.is_retiring(link) => {
                self.core.mesh().edges().set_decided(address, false);
                self.mesh.wanted.remove(address);
                self.retire(engine, link);
            }
            _ => {}
        }
        match (consumed, self.mesh.edge_in.get(address).copied()) {
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
        let Some(session) = self.mesh.lanes.first() else {
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
        self.mesh.edge_in.insert(address.to_owned(), link);
    }

    /// Whether `link` is an uplink's receiving link.
    pub(super) fn is_from_interior(&self, link: LinkId) -> bool {
        self.mesh.is_uplink() && self.producers.contains_key(&link)
    }

    /// An uplink's receiving link is gone.
    pub(super) fn edge_link_gone(&mut self, link: LinkId) {
        self.mesh.edge_in.retain(|_, l| *l != link);
    }

    /// The edge connection ended: an edge's uplink is down, an interior
    /// forgets the edge router.
    pub(super) fn edge_teardown(&mut self) {
        let Some(peer) = self.mesh.edge.clone() else {
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
