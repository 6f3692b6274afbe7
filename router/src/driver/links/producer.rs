//! The producer side: routing each incoming delivery.

use super::*;
use crate::config::Distribution;
use crate::metrics::DeliveryCounters;
use crate::routing::RoutingTable;

impl Links {
    pub(super) fn transfer(&mut self, engine: &mut Connection, t: IncomingTransfer) {
        let key = (t.link, t.delivery);
        if t.first {
            let Some(p) = self.producers.get_mut(&t.link) else {
                return;
            };
            p.counts.sent(t.settled);
            let anonymous = p.address.is_none();
            match p.address.clone() {
                Some(a) => {
                    let fields = routing_fields(&t.payload);
                    self.route(engine, &t, t.payload.clone(), fields, t.settled, a)
                }
                None if t.more && !t.aborted => {
                    let mut buf = BytesMut::new();
                    buf.extend_from_slice(&t.payload);
                    self.inbound.insert(
                        key,
                        Inbound::Buffering {
                            buf,
                            settled: t.settled,
                        },
                    );
                    self.try_route_buffered(engine, &t);
                }
                None if t.aborted => {}
                None => {
                    let fields = routing_fields(&t.payload);
                    self.route_anonymous_with(engine, &t, t.payload.clone(), t.settled, fields)
                }
            }
            if anonymous {
                // Anonymous credit is a fixed window, refilled as deliveries
                // begin (whether routed at once or buffered until `to` is
                // readable).
                let window = self.window();
                if engine.credit(t.link) < window / 2 {
                    let _ = engine.flow(t.link, window, false);
                }
            }
            return;
        }
        let Some(inbound) = self.inbound.get_mut(&key) else {
            return;
        };
        let done = !t.more || t.aborted;
        match inbound {
            Inbound::Streaming {
                key,
                targets,
                priority,
            } => {
                for (conn, link, _) in targets.iter() {
                    conn.post(ToConn::Continue {
                        link: *link,
                        key: *key,
                        payload: t.payload.clone(),
                        more: t.more,
                        aborted: t.aborted,
                        charge: Some(
                            budget_in(&mut self.budget, &self.core).charge(t.payload.len() as u64),
                        ),
                        priority: *priority,
                    });
                }
            }
            Inbound::Buffering { buf, .. } => {
                if t.aborted {
                    self.inbound.remove(&key);
                    return;
                }
                buf.extend_from_slice(&t.payload);
                return self.try_route_buffered(engine, &t);
            }
            Inbound::Discard => {}
        }
        if done {
            self.inbound.remove(&key);
        }
    }

    /// Routes a buffered anonymous delivery once its `to` is readable or
    /// it is complete. Only a bounded prefix is ever parsed: properties
    /// come before the body, so if `to` is not readable in the first
    /// [`ROUTING_PREFIX`] bytes the delivery is routed when complete.
    pub(super) fn try_route_buffered(&mut self, engine: &mut Connection, t: &IncomingTransfer) {
        /// How far into a buffered message `to` is looked for.
        const ROUTING_PREFIX: usize = 64 * 1024;
        let key = (t.link, t.delivery);
        let Some(Inbound::Buffering { buf, settled }) = self.inbound.get_mut(&key) else {
            return;
        };
        let settled = *settled || t.settled;
        let fields = if !t.more {
            None
        } else if buf.len() - t.payload.len() < ROUTING_PREFIX {
            // Still within the prefix: look again (a copy of at most it).
            let n = buf.len().min(ROUTING_PREFIX);
            let f = routing_fields(&Bytes::copy_from_slice(&buf[..n]));
            if !f.complete {
                return;
            }
            Some(f)
        } else {
            return;
        };
        let payload = std::mem::take(buf).freeze();
        self.inbound.remove(&key);
        let fields = fields.unwrap_or_else(|| routing_fields(&payload));
        self.route_anonymous_with(engine, t, payload, settled, fields);
    }

    pub(super) fn route_anonymous_with(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        payload: Bytes,
        settled: bool,
        fields: RoutingFields,
    ) {
        if let Some(to) = fields.to.as_deref()
            && let Err(error) = self.may_send(to)
        {
            let rejected = DeliveryState::Rejected(Rejected { error: Some(error) });
            let counters = self.unrouted(to);
            return self.refuse_delivery(engine, t, settled, rejected, t.more, &counters);
        }
        let address = fields
            .to
            .as_deref()
            .and_then(|to| self.core.lookup(&self.scoped_to(t.link, to)));
        // On an edge router, an address it has never seen may have
        // consumers in the mesh: up the relay.
        match address.or_else(|| self.edge_relay()) {
            Some(a) => self.route(engine, t, payload, fields, settled, a),
            None => {
                let counters = self.unrouted(fields.to.as_deref().unwrap_or_default());
                let released = DeliveryState::Released;
                self.refuse_delivery(engine, t, settled, released, t.more, &counters)
            }
        }
    }

    /// The counters of a delivery for `to` that has no address on this
    /// router (counted in when it is refused: the rare path).
    fn unrouted(&self, to: &str) -> Arc<DeliveryCounters> {
        let counters = self.core.metrics().for_address(to).role(self.role).clone();
        counters.received.inc();
        counters
    }

    /// Routes the first frame (or all) of a delivery to `address`.
    pub(super) fn route(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        payload: Bytes,
        fields: RoutingFields,
        settled: bool,
        address: Arc<Address>,
    ) {
        let more = t.more && !t.aborted;
        let counters = address.counters(self.role);
        counters.received.inc();
        // An anonymous sender's credit is its own window, not the address's.
        let credited = self
            .producers
            .get(&t.link)
            .is_some_and(|p| p.address.is_some());
        let expires = match expiry(self.now, fields.ttl, fields.absolute_expiry_time) {
            Expiry::Expired => {
                self.core.stats.expired.fetch_add(1, Ordering::Relaxed);
                counters.expired.inc();
                let state = expired_outcome();
                if credited {
                    address.route_none(self.me.id, t.link);
                }
                return self.refuse_delivery(engine, t, settled, state, more, counters);
            }
            Expiry::At(at) => Some(at),
            Expiry::Never => None,
        };
        let me = self.core.mesh().id().clone();
        let table = self.core.mesh().table();
        // The trace is read once, for the loop check and the forms sent on.
        let mut shaped = Shaped::default();
        if more && self.mesh.peer().is_none() && !shaped.readable(&payload) {
            // A client's message whose annotations do not end in its first
            // frame: the router could neither replace nor strip a trace in
            // them (it reads only the first frame of a streamed message).
            if credited {
                address.route_none(self.me.id, t.link);
            }
            let error = ferry_proto::definitions::Error::new(
                condition::INVALID_FIELD,
                "the header, delivery and message annotations must fit in the first transfer frame",
            );
            let rejected = DeliveryState::Rejected(Rejected { error: Some(error) });
            return self.refuse_delivery(engine, t, settled, rejected, more, counters);
        }
        let reach = if self.mesh.peer().is_some() && shaped.visited(&payload, me.as_str()) {
            // Back where it has been: routing tables disagree for a moment.
            Err("loop detected")
        } else if address.distribution() == Distribution::Multicast {
            self.stamp_multicast(t.link, &mut shaped, &payload, &table, &me)
        } else {
            Ok(Reach::Tree)
        };
        let reach = match reach {
            Ok(reach) => reach,
            Err(why) => {
                tracing::debug!("delivery to {}: {why}; released", address.name());
                if credited {
                    address.route_none(self.me.id, t.link);
                }
                let released = DeliveryState::Released;
                return self.refuse_delivery(engine, t, settled, released, more, counters);
            }
        };
        // An anonymous sender's delivery is routed as a client's, an edge
        // router's relay's too (see `links::edge`).
        let hop = if credited { self.hop() } else { Hop::Local };
        let from = credited.then_some(Credited {
            conn: self.me.id,
            link: t.link,
            revoked: t.revoked,
        });
        let Routed { targets, wait } = match self.relay_for(&address, credited) {
            Some(relay) => relay.route(&table, &Hop::Local, None, Reach::Tree),
            None => {
                if !credited
                    && address.distribution() == Distribution::Multicast
                    && address.mark_anonymous()
                {
                    self.core.tree_producers_changed(&address);
                }
                address.route(&table, &hop, from, reach)
            }
        };
        if targets.is_empty() {
            tracing::debug!(
                "delivery to {}: no consumer can take it now; released",
                address.name()
            );
            self.refuse_delivery(engine, t, settled, DeliveryState::Released, more, counters);
        } else {
            self.core.stats.routed.fetch_add(1, Ordering::Relaxed);
            let key = StreamKey {
                conn: self.me.id,
                link: t.link,
                delivery: t.delivery,
            };
            let multicast = address.distribution() == Distribution::Multicast;
            let origin = (!settled).then(|| Origin {
                conn: self.me.clone(),
                link: t.link,
                delivery: t.delivery,
                fanout: multicast.then(|| Arc::new(Fanout::new(targets.len()))),
            });
            if !settled && !credited {
                // An anonymous sender's outcome is counted with the
                // address its delivery went to, known here only.
                self.anonymous_outcomes
                    .insert((t.link, t.delivery), counters.clone());
            }
            // Complete unsettled anycast deliveries can be re-forwarded if
            // their consumer releases them.
            let retry = (!settled && !more && !multicast).then(|| Retry {
                address: address.clone(),
                from: hop.clone(),
                payload: payload.clone(),
                attempts: 1,
                priority: fields.priority,
            });
            for (i, (conn, link, to_router)) in targets.iter().enumerate() {
                // The first frame of a streamed message is shaped too: the
                // message annotations come first (see `trace`).
                let payload = shaped.get(
                    &payload,
                    *to_router,
                    self.mesh.peer().is_some(),
                    me.as_str(),
                    i + 1 == targets.len(),
                );
                let charge = Some(self.budget().charge(payload.len() as u64));
                conn.post(ToConn::Deliver {
                    link: *link,
                    delivery: Forwarded {
                        payload,
                        more,
                        settled,
                        origin: origin.clone(),
                        key,
                        expires,
                        charge,
                        retry: retry.clone(),
                        wait,
                        priority: fields.priority,
                    },
                });
            }
            if more {
                self.inbound.insert(
                    (t.link, t.delivery),
                    Inbound::Streaming {
                        key,
                        targets,
                        priority: fields.priority,
                    },
                );
            }
        }
        // Asked again once half is used: a client's link at half its
        // window, a neighbour's at half its last grant.
        let low = match self.mesh.peer() {
            Some(_) => self.producers.get(&t.link).map_or(0, |p| p.grant),
            None => self.window(),
        } / 2;
        if credited && engine.credit(t.link) <= low && !self.recredit_pending.contains(&t.link) {
            self.recredit_pending.push(t.link);
        }
    }

    /// Multicast tree versions (see `RoutingTable::tree_stamp`): a message
    /// from a client gets this router's stamp for its own tree; a copy
    /// from a neighbour goes on along the tree only if its stamp is this
    /// router's stamp for the tree it follows, and otherwise reaches local
    /// consumers only. A copy sent on a tree that has changed since (a
    /// slow link, then a cut elsewhere) would otherwise be forwarded on the
    /// new tree too, and reach some consumer twice.
    fn stamp_multicast(
        &self,
        link: LinkId,
        shaped: &mut Shaped,
        payload: &Bytes,
        table: &RoutingTable,
        me: &RouterId,
    ) -> Result<Reach, &'static str> {
        if self.mesh.peer().is_none() {
            if table.routers().nth(1).is_none() {
                return Ok(Reach::Tree); // no other router: no copy leaves
            }
            if !shaped.readable(payload) {
                // Its trace could not be written: the next router would
                // not know which tree it follows.
                return Err("multicast message annotations beyond its first frame");
            }
            shaped.stamp = table.tree_stamp(me);
            return Ok(Reach::Tree);
        }
        let origin = self.producers.get(&link).and_then(|p| p.tree.as_ref());
        match origin.and_then(|o| table.tree_stamp(o)) {
            Some(stamp) if shaped.stamp(payload) == Some(stamp) => Ok(Reach::Tree),
            _ => {
                let tree = origin.map_or_else(|| "this router's".to_owned(), |o| format!("{o}'s"));
                tracing::debug!(
                    "multicast copy sent on {tree} tree, which has changed: local consumers only"
                );
                Ok(Reach::Local)
            }
        }
    }

    /// Settles a producer's delivery without forwarding it (or counts a
    /// dropped pre-settled one), discarding any further frames of it;
    /// `counters`: its address's, for this connection's role.
    pub(super) fn refuse_delivery(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        settled: bool,
        state: DeliveryState,
        more: bool,
        counters: &DeliveryCounters,
    ) {
        if settled {
            counters.dropped.inc();
            self.core
                .stats
                .dropped_presettled
                .fetch_add(1, Ordering::Relaxed);
        } else {
            if state == DeliveryState::Released {
                self.core
                    .stats
                    .released_no_route
                    .fetch_add(1, Ordering::Relaxed);
            }
            counters.settled(&state);
            let _ = engine.disposition(t.link, t.delivery, Some(state), true);
        }
        if more {
            self.inbound.insert((t.link, t.delivery), Inbound::Discard);
        }
    }
}

/// A message in the form each kind of target gets, made at most once each:
/// to another router with this router in its trace, to a client without
/// the mesh's annotations. One `Shaped` per message: its trace is read
/// once, on first use, for all of them.
#[derive(Default)]
pub(super) struct Shaped {
    trace: Option<trace::Trace>,
    traced: Option<Bytes>,
    stripped: Option<Bytes>,
    /// A multicast message entering the mesh here: the stamp of this
    /// router's tree, written first in its trace.
    stamp: Option<u64>,
}

impl Shaped {
    fn trace(&mut self, message: &Bytes) -> &trace::Trace {
        self.trace
            .get_or_insert_with(|| trace::Trace::read(message))
    }

    /// Whether `message` has passed through router `me` before.
    pub(super) fn visited(&mut self, message: &Bytes, me: &str) -> bool {
        self.trace(message).has_visited(me)
    }

    /// The tree stamp `message` carries, if any.
    fn stamp(&mut self, message: &Bytes) -> Option<u64> {
        self.trace(message).stamp()
    }

    /// Whether the trace of `message` can be read (and so written).
    fn readable(&mut self, message: &Bytes) -> bool {
        self.trace(message).is_readable()
    }

    /// `message` (as it reached this router, from a router if
    /// `from_router`) for a target that is a router if `to_router`. For
    /// the `last` target the form made is handed over rather than cloned:
    /// the first clone of a freshly built `Bytes` allocates.
    pub(super) fn get(
        &mut self,
        message: &Bytes,
        to_router: bool,
        from_router: bool,
        me: &str,
        last: bool,
    ) -> Bytes {
        if !to_router && !from_router {
            return message.clone();
        }
        let Shaped {
            trace: read,
            traced,
            stripped,
            stamp,
        } = self;
        let trace = read.get_or_insert_with(|| trace::Trace::read(message));
        let cache = if to_router { traced } else { stripped };
        let form = cache.take().unwrap_or_else(|| {
            if !to_router {
                trace.strip()
            } else if from_router {
                trace.with_hop(me).unwrap_or_else(|| message.clone())
            } else {
                trace.begin(me, *stamp).unwrap_or_else(|| message.clone())
            }
        });
        if !last {
            *cache = Some(form.clone());
        }
        form
    }
}
