//! The consumer side: delivering, and passing outcomes back.

use super::*;

impl Links {
    pub(super) fn deliver(&mut self, engine: &mut Connection, link: LinkId, f: Forwarded) {
        let Some(c) = self.consumers.get_mut(&link) else {
            // The consumer went away before we could send: never sent on.
            if let Some(o) = f.origin {
                o.settle(DeliveryState::Released);
            }
            return;
        };
        let drop_with = if f.expires.is_some_and(|at| self.now >= at) {
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

    pub(super) fn continue_delivery(
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

    pub(super) fn consumer_disposition(
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

    pub(super) fn detached(&mut self, link: LinkId) {
        if let Some(p) = self.producers.remove(&link) {
            if let Some(a) = &p.address {
                a.remove_producer(self.me.id, link);
                self.core.release(a);
            }
            // Deliveries still arriving from it are aborted downstream.
            let mut keys: Vec<_> = self
                .inbound
                .keys()
                .filter(|(l, _)| *l == link)
                .copied()
                .collect();
            // A fixed order keeps runs reproducible (the simulator's seeds).
            keys.sort_by_key(|(l, d)| (*l, d.0));
            for k in keys {
                if let Some(Inbound::Streaming { key, targets }) = self.inbound.remove(&k) {
                    for (conn, clink, _) in targets {
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
            self.data_link_gone(link);
            if c.address.remove_consumer(self.me.id, link) && c.to == Hop::Local {
                self.core.local_consumers(&c.address, false);
            }
            self.core.release(&c.address);
            // Sent to the consumer but not settled: fate unknown.
            let mut outstanding: Vec<_> = c.outstanding.into_iter().collect();
            outstanding.sort_by_key(|(id, _)| id.0);
            for (_, origin) in outstanding {
                origin.settle(delivery_failed());
            }
        }
    }
}
