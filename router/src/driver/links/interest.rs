//! Interest: an interior router tells each edge router attached to it
//! which of the addresses the edge produces to have a consumer in the mesh
//! beyond that edge (docs/ARCHITECTURE.md, *Edge routers*).
//!
//! An edge runs no routing protocol, and its sending link's credit alone
//! cannot tell "no consumer" from "all credit in flight". The interior
//! attaches a link of its own to the edge (target
//! [`INTEREST_ADDRESS`], pre-settled) and sends `[address, has-consumers]`
//! (an amqp-value list) for each address the edge has a producer link on,
//! whenever the answer changes. The edge's sending link for an address is
//! in use only while the answer is yes (`Links::follow_interest`).

use super::mesh::DataKey;
use super::*;

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

impl Links {
    /// Interior router: attaches the interest link to the edge router
    /// just attached.
    pub(super) fn attach_interest(&mut self, engine: &mut Connection) {
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
        self.mesh.r_mut().interest_link = engine.attach(session, spec).ok();
    }

    /// Interior router, for an edge router's producer link `link`: tells
    /// the edge whether the link's address has a consumer to reach beyond
    /// the edge itself, when that changed. The edge takes its sending link
    /// for the address into use, or out of it, accordingly: the edge runs
    /// no routing protocol, and the link's credit alone cannot tell "no
    /// consumer" from "all credit in flight".
    pub(super) fn tell_interest(&mut self, engine: &mut Connection, link: LinkId) {
        let (Some(edge), false) = (&self.mesh.r().edge, self.mesh.is_uplink()) else {
            return;
        };
        let Some(Producer {
            address: Some(a), ..
        }) = self.producers.get(&link)
        else {
            return;
        };
        let has = a.has_consumers_besides(&Hop::Edge(edge.clone()));
        if self.mesh.r().interest.get(a.name()) == Some(&has) {
            return;
        }
        self.mesh.r_mut().interest.insert(a.name().to_owned(), has);
        self.mesh
            .r_mut()
            .interest_pending
            .insert(a.name().to_owned());
        self.flush_interest(engine);
    }

    /// Interior router: the edge's producer link for `address` is gone; a
    /// new one is told afresh.
    pub(super) fn forget_interest(&mut self, address: &str) {
        if self.mesh.r().edge.is_some() && !self.mesh.is_uplink() {
            self.mesh.r_mut().interest.remove(address);
            self.mesh.r_mut().interest_pending.remove(address);
        }
    }

    /// Interior router: sends what the edge is yet to be told, as far as
    /// the interest link's credit goes. Each message is an amqp-value
    /// list `[address, has-consumers]`, pre-settled.
    pub(super) fn flush_interest(&mut self, engine: &mut Connection) {
        let Some(link) = self.mesh.r().interest_link else {
            return;
        };
        while engine.credit(link) > 0 {
            let Some(address) = self.mesh.r_mut().interest_pending.pop_first() else {
                return;
            };
            let Some(&has) = self.mesh.r().interest.get(&address) else {
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
        if !is_interest || self.mesh.r().interest_link.is_some() {
            return false;
        }
        if super::mesh::accept_settled(engine, link, attach, INTEREST_CREDIT) {
            self.mesh.r_mut().interest_link = Some(link);
        }
        true
    }

    /// Whether `link` is the interior's interest link, on an edge's uplink.
    pub(super) fn is_interest_in(&self, link: LinkId) -> bool {
        self.mesh.is_uplink() && self.mesh.r().interest_link == Some(link)
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
            self.mesh.r_mut().wanted.insert(address.clone());
        } else {
            self.mesh.r_mut().wanted.remove(&address);
        }
        self.core.mesh().edges().set_decided(&address, true);
        let key: DataKey = (address, None);
        if let Some(&link) = self.mesh.r().data.get(&key) {
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
    pub(super) fn follow_interest(&mut self, link: LinkId) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        if c.retiring {
            return;
        }
        let wanted = self.mesh.r().wanted.contains(c.address.name());
        if wanted && c.dormant {
            let a = self.core.address(c.address.name());
            a.add_consumer(self.me.clone(), link, c.to.clone(), None);
            if self.congested {
                a.set_congested(self.me.id, link, true);
            }
            a.adjust_consumer_credit(
                &self.core.mesh().table(),
                self.me.id,
                link,
                i64::from(c.reported),
            );
            c.address = a;
            c.dormant = false;
        } else if !wanted && !c.dormant {
            c.dormant = true;
            c.address.remove_consumer(self.me.id, link);
            let released = super::mesh::release_held(c);
            if released > 0 {
                tracing::debug!(
                    "{released} deliveries to {} waiting on the uplink released: \
                     no consumer in the mesh",
                    c.address.name()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interest_message_reads_back_and_anything_else_is_refused() {
        let m = interest_message("telemetry/7", true);
        assert_eq!(read_interest(m), Some(("telemetry/7".into(), true)));
        let m = interest_message("q", false);
        assert_eq!(read_interest(m), Some(("q".into(), false)));
        assert_eq!(read_interest(Bytes::from_static(b"\x00\x53\x77")), None);
        assert_eq!(read_interest(Bytes::new()), None);
        let other = amqp_value("not a list");
        assert_eq!(read_interest(other), None);
    }

    fn amqp_value(s: &str) -> Bytes {
        use ferry_proto::codec::{Described, Descriptor, Encode, Value};
        Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(0x77),
            value: Value::String(s.into()),
        }))
        .to_bytes()
    }
}
