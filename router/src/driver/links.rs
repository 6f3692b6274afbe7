//! The links of one connection and what the router does with them:
//! producer links (the client sends, we receive) route each delivery to
//! consumers; consumer links (we send) deliver what producers route to
//! them and pass the outcome back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::Symbol;
use ferry_proto::definitions::{
    Attach, DeliveryState, Error, ErrorCondition, ReceiverSettleMode, Rejected, Role,
    SenderSettleMode, SequenceNo, TargetTerminus, condition,
};
use ferry_proto::engine::{Connection, Event, IncomingTransfer, LinkId, LinkSpec};

use crate::core::{
    Address, ByteBudget, ConnHandle, Core, Fanout, Forwarded, Origin, StreamKey, Targets, ToConn,
    delivery_failed, routing_fields,
};

/// The condition a message is rejected with when its time to live has
/// passed before it could be delivered.
pub const EXPIRED: ErrorCondition = Symbol::from_static("ferry:expired");

struct Producer {
    /// `None`: an anonymous sender, routed by each message's `to`.
    address: Option<Arc<Address>>,
}

/// A producer delivery arriving over several frames.
enum Inbound {
    /// Being forwarded frame by frame to these consumers.
    Streaming { key: StreamKey, targets: Targets },
    /// Anonymous sender: held until `to` can be read.
    Buffering { buf: BytesMut, settled: bool },
    /// Refused (no route, expired): the rest is dropped.
    Discard,
}

struct Consumer {
    address: Arc<Address>,
    /// The link credit last reported to the address, less sends since.
    reported: u32,
    /// Unsettled deliveries sent to the client, by our delivery id.
    outstanding: HashMap<SequenceNo, Origin>,
    /// Deliveries being sent over several frames: `None` once dropped.
    streams: HashMap<StreamKey, Option<SequenceNo>>,
}

/// The link state of one connection.
pub(super) struct Links {
    core: Arc<Core>,
    me: ConnHandle,
    producers: HashMap<LinkId, Producer>,
    consumers: HashMap<LinkId, Consumer>,
    inbound: HashMap<(LinkId, SequenceNo), Inbound>,
    next_tag: u64,
    /// Producer links whose credit to top up once the queued events are
    /// handled: the engine has already counted transfers whose events are
    /// still queued, so topping up in between would grant twice.
    recredit_pending: Vec<LinkId>,
    /// Bytes this connection's producers have in flight in the router.
    pub(super) budget: Arc<ByteBudget>,
}

fn refusal(condition: ErrorCondition, description: &str) -> Error {
    Error::new(condition, description)
}

impl Links {
    pub(super) fn new(core: Arc<Core>, me: ConnHandle) -> Self {
        Self {
            me,
            producers: HashMap::new(),
            consumers: HashMap::new(),
            inbound: HashMap::new(),
            next_tag: 0,
            recredit_pending: Vec::new(),
            budget: ByteBudget::new(core.limits().max_in_flight_bytes_per_producer),
            core,
        }
    }

    fn window(&self) -> u32 {
        self.core.limits().link_credit_window
    }

    /// Handles every event the engine has queued.
    pub(super) fn handle_events(&mut self, engine: &mut Connection) {
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::AttachRequested { link, attach, .. } => self.attach(engine, link, &attach),
                Event::Credit {
                    link,
                    credit,
                    drain,
                } => self.consumer_credit(engine, link, credit, drain),
                Event::Transfer(t) => self.transfer(engine, t),
                Event::Disposition {
                    link,
                    delivery,
                    state,
                    settled,
                } => self.consumer_disposition(engine, link, delivery, state, settled),
                Event::Detached { link, .. } => self.detached(link),
                Event::Authenticated { .. }
                | Event::Opened { .. }
                | Event::SessionBegun { .. }
                | Event::SessionEnded { .. }
                | Event::Attached { .. }
                | Event::Drained { .. }
                | Event::Closed { .. } => {}
            }
        }
        for link in std::mem::take(&mut self.recredit_pending) {
            self.recredit(engine, link);
        }
    }

    /// Handles a message from another connection task.
    pub(super) fn handle_message(&mut self, engine: &mut Connection, msg: ToConn) {
        match msg {
            ToConn::Deliver { link, delivery } => self.deliver(engine, link, delivery),
            ToConn::Continue {
                link,
                key,
                payload,
                more,
                aborted,
                charge: _charge,
            } => self.continue_delivery(engine, link, key, payload, more, aborted),
            ToConn::Settle {
                link,
                delivery,
                state,
            } => {
                if self.producers.contains_key(&link) {
                    let _ = engine.disposition(link, delivery, Some(state), true);
                }
            }
            ToConn::Recredit { link } => self.recredit(engine, link),
        }
    }

    /// Releases everything this connection holds in the core.
    pub(super) fn teardown(&mut self) {
        let links: Vec<LinkId> = self
            .producers
            .keys()
            .chain(self.consumers.keys())
            .copied()
            .collect();
        for link in links {
            self.detached(link);
        }
    }

    // ---- attach ----

    fn attach(&mut self, engine: &mut Connection, link: LinkId, attach: &Attach) {
        let count = self.producers.len() + self.consumers.len();
        let max = self.core.limits().max_links_per_connection as usize;
        let result = if count >= max {
            Err(refusal(
                condition::RESOURCE_LIMIT_EXCEEDED,
                &format!("at most {max} links per connection"),
            ))
        } else {
            match attach.role {
                Role::Sender => self.attach_producer(engine, link, attach),
                Role::Receiver => self.attach_consumer(engine, link, attach),
            }
        };
        if let Err(error) = result {
            tracing::debug!(name = %attach.name, error = ?error.description, "link refused");
            let _ = engine.refuse_attach(link, error);
        }
    }

    fn attach_producer(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) -> Result<(), Error> {
        let target = match &attach.target {
            Some(TargetTerminus::Target(t)) => t,
            Some(TargetTerminus::Coordinator(_)) => {
                return Err(refusal(
                    condition::NOT_IMPLEMENTED,
                    "transactions are not supported: Ferry routes, it does not store",
                ));
            }
            None => return Err(refusal(condition::INVALID_FIELD, "attach has no target")),
        };
        if target.dynamic == Some(true) {
            return Err(refusal(
                condition::NOT_IMPLEMENTED,
                "dynamic targets are not supported; attach a dynamic receiver for a reply address",
            ));
        }
        let address = target.address.as_deref().map(|a| self.core.address(a));
        let spec = LinkSpec {
            name: attach.name.to_string(),
            role: Role::Receiver,
            source: attach.source.clone(),
            target: attach.target.clone(),
            snd_settle_mode: attach.snd_settle_mode.unwrap_or_default(),
            rcv_settle_mode: ReceiverSettleMode::First,
            max_message_size: Some(self.core.limits().max_message_size),
            ..LinkSpec::default()
        };
        engine
            .accept_attach(link, spec)
            .map_err(|e| refusal(condition::INTERNAL_ERROR, &e.to_string()))?;
        match &address {
            Some(a) => a.add_producer(self.me.clone(), link),
            // Anonymous senders get a fixed window: their messages' addresses
            // are unknown until they arrive (unroutable ones are released).
            None => {
                let _ = engine.flow(link, self.window(), false);
            }
        }
        tracing::debug!(name = %attach.name, address = ?address.as_ref().map(|a| a.name()), "producer attached");
        self.producers.insert(link, Producer { address });
        self.recredit(engine, link);
        Ok(())
    }

    fn attach_consumer(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) -> Result<(), Error> {
        let Some(source) = &attach.source else {
            return Err(refusal(condition::INVALID_FIELD, "attach has no source"));
        };
        if source.distribution_mode.as_deref() == Some("copy") {
            return Err(refusal(
                condition::NOT_IMPLEMENTED,
                "distribution-mode copy (browsing) needs a queue; Ferry routes, it does not store",
            ));
        }
        let name = if source.dynamic == Some(true) {
            self.core.dynamic_address()
        } else {
            match &source.address {
                Some(a) => a.to_string(),
                None => {
                    return Err(refusal(
                        condition::INVALID_FIELD,
                        "source has no address and is not dynamic",
                    ));
                }
            }
        };
        let mut answer = source.clone();
        answer.address = Some(name.as_str().into());
        // Filters are not supported: leaving them out of our source tells
        // the client they are not applied (AMQP 1.0 §3.5.3).
        answer.filter = None;
        let spec = LinkSpec {
            name: attach.name.to_string(),
            role: Role::Sender,
            source: Some(answer),
            target: attach.target.clone(),
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: attach.rcv_settle_mode.unwrap_or_default(),
            ..LinkSpec::default()
        };
        engine
            .accept_attach(link, spec)
            .map_err(|e| refusal(condition::INTERNAL_ERROR, &e.to_string()))?;
        let address = self.core.address(&name);
        address.add_consumer(self.me.clone(), link);
        tracing::debug!(name = %attach.name, address = %name, "consumer attached");
        self.consumers.insert(
            link,
            Consumer {
                address,
                reported: 0,
                outstanding: HashMap::new(),
                streams: HashMap::new(),
            },
        );
        Ok(())
    }

    // ---- credit ----

    /// Sets a producer link's credit to what its address's budget allows.
    fn recredit(&mut self, engine: &mut Connection, link: LinkId) {
        let Some(Producer { address: Some(a) }) = self.producers.get(&link) else {
            return;
        };
        let credit = a.grant(self.me.id, link, self.window());
        if credit != engine.credit(link) {
            let _ = engine.flow(link, credit, false);
        }
    }

    fn consumer_credit(&mut self, engine: &mut Connection, link: LinkId, credit: u32, drain: bool) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        let delta = credit as i64 - c.reported as i64;
        c.reported = credit;
        c.address.adjust_consumer_credit(self.me.id, link, delta);
        if drain {
            // Nothing is queued here for a consumer: what producers have not
            // sent yet cannot be promised, so the credit goes back now.
            let _ = engine.drained(link);
            c.address
                .adjust_consumer_credit(self.me.id, link, -(c.reported as i64));
            c.reported = 0;
        }
    }

    // ---- producer side ----

    fn transfer(&mut self, engine: &mut Connection, t: IncomingTransfer) {
        let key = (t.link, t.delivery);
        if t.first {
            let Some(p) = self.producers.get(&t.link) else {
                return;
            };
            match p.address.clone() {
                Some(a) => self.route(engine, &t, t.payload.clone(), t.settled, Some(a), true),
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
                None => self.route_anonymous(engine, &t, t.payload.clone(), t.settled),
            }
            return;
        }
        let Some(inbound) = self.inbound.get_mut(&key) else {
            return;
        };
        let done = !t.more || t.aborted;
        match inbound {
            Inbound::Streaming { key, targets } => {
                for (conn, link) in targets.iter() {
                    conn.post(ToConn::Continue {
                        link: *link,
                        key: *key,
                        payload: t.payload.clone(),
                        more: t.more,
                        aborted: t.aborted,
                        charge: Some(self.budget.charge(t.payload.len() as u64)),
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
    /// it is complete.
    fn try_route_buffered(&mut self, engine: &mut Connection, t: &IncomingTransfer) {
        let key = (t.link, t.delivery);
        let Some(Inbound::Buffering { buf, settled }) = self.inbound.get(&key) else {
            return;
        };
        let settled = *settled || t.settled;
        let prefix = Bytes::copy_from_slice(buf);
        if !t.more || routing_fields(&prefix).complete {
            self.inbound.remove(&key);
            self.route_anonymous_with(engine, t, prefix, settled);
        }
    }

    fn route_anonymous(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        payload: Bytes,
        settled: bool,
    ) {
        self.route_anonymous_with(engine, t, payload, settled);
        // Anonymous credit is a fixed window, refilled as it is used.
        let window = self.window();
        if engine.credit(t.link) < window / 2 {
            let _ = engine.flow(t.link, window, false);
        }
    }

    fn route_anonymous_with(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        payload: Bytes,
        settled: bool,
    ) {
        let to = routing_fields(&payload).to;
        let address = to.as_deref().and_then(|to| self.core.lookup(to));
        match address {
            Some(a) => self.route(engine, t, payload, settled, Some(a), false),
            None => self.refuse_delivery(engine, t, settled, DeliveryState::Released, t.more),
        }
    }

    /// Routes the first frame (or all) of a delivery to `address`.
    /// `credited`: the producer's credit comes from the address budget.
    fn route(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        payload: Bytes,
        settled: bool,
        address: Option<Arc<Address>>,
        credited: bool,
    ) {
        let more = t.more && !t.aborted;
        let Some(address) = address else {
            return self.refuse_delivery(engine, t, settled, DeliveryState::Released, more);
        };
        let fields = routing_fields(&payload);
        let expires = match expiry(fields.ttl, fields.absolute_expiry_time) {
            Expiry::Expired => {
                self.core.stats.expired.fetch_add(1, Ordering::Relaxed);
                let state = expired_outcome();
                if credited {
                    address.route_none(self.me.id, t.link);
                }
                return self.refuse_delivery(engine, t, settled, state, more);
            }
            Expiry::At(at) => Some(at),
            Expiry::Never => None,
        };
        let from = credited.then_some((self.me.id, t.link));
        let targets = address.route(from);
        if targets.is_empty() {
            self.refuse_delivery(engine, t, settled, DeliveryState::Released, more);
        } else {
            self.core.stats.routed.fetch_add(1, Ordering::Relaxed);
            let key = StreamKey {
                conn: self.me.id,
                link: t.link,
                delivery: t.delivery,
            };
            let multicast = address.distribution() == crate::config::Distribution::Multicast;
            let origin = (!settled).then(|| Origin {
                conn: self.me.clone(),
                link: t.link,
                delivery: t.delivery,
                fanout: multicast.then(|| Arc::new(Fanout::new(targets.len()))),
            });
            for (conn, link) in &targets {
                conn.post(ToConn::Deliver {
                    link: *link,
                    delivery: Forwarded {
                        payload: payload.clone(),
                        more,
                        settled,
                        origin: origin.clone(),
                        key,
                        expires,
                        charge: Some(self.budget.charge(payload.len() as u64)),
                    },
                });
            }
            if more {
                self.inbound
                    .insert((t.link, t.delivery), Inbound::Streaming { key, targets });
            }
        }
        if credited
            && engine.credit(t.link) <= self.window() / 2
            && !self.recredit_pending.contains(&t.link)
        {
            self.recredit_pending.push(t.link);
        }
    }

    /// Settles a producer's delivery without forwarding it (or counts a
    /// dropped pre-settled one), discarding any further frames of it.
    fn refuse_delivery(
        &mut self,
        engine: &mut Connection,
        t: &IncomingTransfer,
        settled: bool,
        state: DeliveryState,
        more: bool,
    ) {
        if settled {
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
            let _ = engine.disposition(t.link, t.delivery, Some(state), true);
        }
        if more {
            self.inbound.insert((t.link, t.delivery), Inbound::Discard);
        }
    }

    // ---- consumer side ----

    fn deliver(&mut self, engine: &mut Connection, link: LinkId, f: Forwarded) {
        let Some(c) = self.consumers.get_mut(&link) else {
            // The consumer went away before we could send: never sent on.
            if let Some(o) = f.origin {
                o.settle(DeliveryState::Released);
            }
            return;
        };
        let drop_with = if f.expires.is_some_and(|at| Instant::now() >= at) {
            self.core.stats.expired.fetch_add(1, Ordering::Relaxed);
            Some(expired_outcome())
        } else {
            self.next_tag += 1;
            let tag = Bytes::copy_from_slice(&self.next_tag.to_be_bytes());
            match engine.send(link, tag, f.payload, f.settled, f.more) {
                Ok(id) => {
                    c.reported = c.reported.saturating_sub(1);
                    if let Some(o) = f.origin.clone() {
                        c.outstanding.insert(id, o);
                    }
                    if f.more {
                        c.streams.insert(f.key, Some(id));
                    }
                    None
                }
                Err(_) => Some(DeliveryState::Released),
            }
        };
        if let Some(state) = drop_with {
            c.address.refund(self.me.id, link);
            if let Some(o) = f.origin {
                o.settle(state);
            }
            if f.more {
                c.streams.insert(f.key, None);
            }
        }
    }

    fn continue_delivery(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        key: StreamKey,
        payload: Bytes,
        more: bool,
        aborted: bool,
    ) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        let Some(slot) = c.streams.get(&key).copied() else {
            return;
        };
        if let Some(id) = slot {
            if aborted {
                let _ = engine.abort(link, id);
                // The producer aborted: its delivery is gone, nobody to tell.
                c.outstanding.remove(&id);
            } else if engine.send_more(link, id, payload, more).is_err() {
                c.streams.insert(key, None);
                return;
            }
        }
        if !more || aborted {
            c.streams.remove(&key);
        }
    }

    fn consumer_disposition(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        delivery: SequenceNo,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        let terminal = state.as_ref().is_some_and(DeliveryState::is_terminal);
        if !terminal && !settled {
            return;
        }
        if let Some(origin) = c.outstanding.remove(&delivery) {
            // Settled without an outcome: its fate is unknown to us.
            origin.settle(state.filter(|_| terminal).unwrap_or_else(delivery_failed));
        }
        if !settled {
            let _ = engine.disposition(link, delivery, None, true);
        }
    }

    fn detached(&mut self, link: LinkId) {
        if let Some(p) = self.producers.remove(&link) {
            if let Some(a) = &p.address {
                a.remove_producer(self.me.id, link);
                self.core.release(a);
            }
            // Deliveries still arriving from it are aborted downstream.
            let keys: Vec<_> = self
                .inbound
                .keys()
                .filter(|(l, _)| *l == link)
                .copied()
                .collect();
            for k in keys {
                if let Some(Inbound::Streaming { key, targets }) = self.inbound.remove(&k) {
                    for (conn, clink) in targets {
                        conn.post(ToConn::Continue {
                            link: clink,
                            key,
                            payload: Bytes::new(),
                            more: false,
                            aborted: true,
                            charge: None,
                        });
                    }
                }
            }
        }
        if let Some(c) = self.consumers.remove(&link) {
            c.address.remove_consumer(self.me.id, link);
            self.core.release(&c.address);
            // Sent to the consumer but not settled: fate unknown.
            for (_, origin) in c.outstanding {
                origin.settle(delivery_failed());
            }
        }
    }
}

enum Expiry {
    Never,
    At(Instant),
    Expired,
}

/// When a message expires: `ttl` counts from its arrival here (AMQP 1.0
/// §3.2.1), `absolute-expiry-time` is wall-clock (§3.2.4); the earlier wins.
fn expiry(ttl: Option<u32>, absolute_ms: Option<i64>) -> Expiry {
    let now = Instant::now();
    let mut at = ttl.map(|ms| now + Duration::from_millis(ms.into()));
    if let Some(abs) = absolute_ms.filter(|ms| *ms > 0) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if abs <= now_ms {
            return Expiry::Expired;
        }
        let abs_at = now + Duration::from_millis((abs - now_ms) as u64);
        at = Some(at.map_or(abs_at, |t| t.min(abs_at)));
    }
    match at {
        Some(t) if t <= now => Expiry::Expired,
        Some(t) => Expiry::At(t),
        None => Expiry::Never,
    }
}

fn expired_outcome() -> DeliveryState {
    DeliveryState::Rejected(Rejected {
        error: Some(Error::new(
            EXPIRED,
            "the message's time to live passed before it could be delivered",
        )),
    })
}
