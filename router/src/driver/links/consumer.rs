//! The consumer side: delivering, and passing outcomes back.

use super::*;

impl Links {
    pub(super) fn deliver(&mut self, engine: &mut Connection, link: LinkId, f: Forwarded) {
        let Some(c) = self
            .consumers
            .get_mut(&link)
            .filter(|c| !c.retiring && !c.dormant)
        else {
            // The consumer went away (or its data link is retiring) before
            // we could send: never sent on, so another consumer may have it.
            if let Some(o) = f.origin {
                self.reforward(o, f.retry, link);
            }
            return;
        };
        if f.wait && (engine.credit(link) == 0 || !c.held.is_empty()) {
            self.core.stats.held.fetch_add(1, Ordering::Relaxed);
            c.held.push_back(Held::Start(f));
            self.note_starved(engine, link);
            return;
        }
        if !c.held.is_empty() || engine.is_sending(link) {
            // The link is still sending another delivery's later frames
            // (from another producer, streamed through): a link carries
            // one delivery at a time, so this one waits its turn, in
            // order, charged to its producer's byte budget. It was routed
            // on credit the link has: refusing it would release a message
            // that a consumer can take.
            c.held.push_back(Held::Start(f));
            return;
        }
        self.send_delivery(engine, link, f);
    }

    /// Sends a delivery routed to consumer link `link` (known to exist),
    /// unless it has expired; one it cannot send goes back.
    fn send_delivery(&mut self, engine: &mut Connection, link: LinkId, f: Forwarded) {
        let tag = self.tag();
        let c = self.consumers.get_mut(&link).expect("a consumer link");
        if f.expires.is_some_and(|at| self.now >= at) {
            self.core.stats.expired.fetch_add(1, Ordering::Relaxed);
            c.address.counters(self.role).expired.inc();
            c.address.refund(self.me.id, link);
            if let Some(o) = f.origin {
                o.settle(expired_outcome());
            }
            if f.more {
                c.streams.insert(f.key, None);
            }
            return;
        }
        match engine.send(link, tag, f.payload, f.settled, f.more) {
            Ok(id) => {
                c.address.counters(self.role).sent.inc();
                c.reported = c.reported.saturating_sub(1);
                c.counts.sent(f.settled);
                if let Some(o) = f.origin {
                    c.outstanding.insert(id, (o, f.retry, self.now));
                    if self.stuck_check.is_none() {
                        self.stuck_check =
                            self.core.limits().stuck_delivery().map(|d| self.now + d);
                    }
                }
                if f.more {
                    c.streams.insert(f.key, Some(id));
                }
            }
            Err(_) => {
                c.address.refund(self.me.id, link);
                if f.more {
                    c.streams.insert(f.key, None);
                }
                if let Some(o) = f.origin {
                    self.reforward(o, f.retry, link);
                }
            }
        }
    }

    /// Sends what waits on consumer link `link` as far as it can: the
    /// later frames of every delivery sent, in order; and, once no other
    /// delivery is being sent on the link, the next delivery (while the
    /// link has credit [`next_held`], by priority; without, the first),
    /// if it waits for credit ([`Forwarded::wait`]) while there is credit
    /// (the others wait behind it).
    pub(super) fn send_held(&mut self, engine: &mut Connection, link: LinkId) {
        self.send_waiting(engine, link);
        self.note_starved(engine, link);
    }

    /// Starts the clock of [`PROMISED_WAIT`] on consumer link `link` if a
    /// delivery there waits for credit the link does not have, from now
    /// unless it already runs.
    fn note_starved(&mut self, engine: &Connection, link: LinkId) {
        if let Some(c) = self.consumers.get_mut(&link)
            && c.starved_since.is_none()
            && engine.credit(link) == 0
            && c.held.iter().any(waits_for_credit)
        {
            c.starved_since = Some(self.now);
            self.starved_check.get_or_insert(self.now + PROMISED_WAIT);
        }
    }

    /// [`send_held`](Self::send_held)'s sending.
    fn send_waiting(&mut self, engine: &mut Connection, link: LinkId) {
        loop {
            let Some(c) = self.consumers.get_mut(&link) else {
                return;
            };
            let before = c.held.len();
            if before == 0 {
                return;
            }
            // The later frames of deliveries sent go on.
            let held = std::mem::take(&mut c.held);
            let mut waiting: VecDeque<Held> = VecDeque::with_capacity(held.len());
            for h in held {
                match h {
                    Held::More { ref frame, .. } if is_held(&waiting, frame.key) => {
                        waiting.push_back(h)
                    }
                    Held::More { frame, .. } => self.send_frame(engine, link, frame),
                    start => waiting.push_back(start),
                }
            }
            let Some(c) = self.consumers.get_mut(&link) else {
                return;
            };
            c.held = waiting;
            // Then the next delivery, if the link is free: by priority if
            // the link has credit; without, the first, as before priority
            // (one routed on credit the link no longer has is sent and
            // given back if refused; one that waits for credit stops the
            // others behind it).
            let credit = engine.credit(link) > 0;
            let next = if credit {
                next_held(&c.held, c.overtakes)
            } else {
                c.held
                    .iter()
                    .position(|h| matches!(h, Held::Start(_)))
                    .map(|i| (i, 0))
            };
            if !engine.is_sending(link)
                && let Some((i, overtakes)) = next
                && let Some(Held::Start(f)) = c.held.get(i)
                && (credit || !f.wait)
            {
                c.overtakes = overtakes;
                let Some(Held::Start(f)) = c.held.remove(i) else {
                    unreachable!("a delivery at {i}");
                };
                c.starved_since = None;
                self.send_delivery(engine, link, f);
            }
            let Some(c) = self.consumers.get_mut(&link) else {
                return;
            };
            // Its later frames, or the next delivery, may go now: again,
            // while that moves anything.
            if c.held.len() == before {
                return;
            }
        }
    }

    /// When to look for deliveries waiting too long for credit.
    pub(super) fn poll_starved(&self) -> Option<Instant> {
        self.starved_check
    }

    /// Deliveries that have waited [`PROMISED_WAIT`] for a consumer link's
    /// credit with nothing sent on it go to another consumer, or back to
    /// their producer released; those that cannot be sent elsewhere (a
    /// multicast copy, a delivery streamed in several frames) wait on.
    pub(super) fn check_starved(&mut self, engine: &Connection) {
        if self.starved_check.is_none_or(|at| self.now < at) {
            return;
        }
        let now = self.now;
        // When the next link's wait runs out.
        let mut next: Option<Instant> = None;
        let mut due = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        let mut links: Vec<LinkId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.starved_since.is_some())
            .map(|(l, _)| *l)
            .collect();
        links.sort();
        for link in links {
            let c = self.consumers.get_mut(&link).expect("a consumer link");
            let since = c.starved_since.expect("starved");
            if engine.credit(link) > 0 || !c.held.iter().any(waits_for_credit) {
                c.starved_since = None;
                continue;
            }
            if now < since + PROMISED_WAIT {
                due(since + PROMISED_WAIT);
                continue;
            }
            let movable =
                |f: &Forwarded| f.wait && !f.more && f.retry.is_some() && f.origin.is_some();
            let (gone, kept): (VecDeque<Held>, VecDeque<Held>) = std::mem::take(&mut c.held)
                .into_iter()
                .partition(|h| matches!(h, Held::Start(f) if movable(f)));
            c.held = kept;
            // What cannot go elsewhere waits on, checked again later.
            c.starved_since = c.held.iter().any(waits_for_credit).then_some(now);
            if c.starved_since.is_some() {
                due(now + PROMISED_WAIT);
            }
            let address = c.address.clone();
            if !gone.is_empty() {
                tracing::debug!(
                    "{}: {} deliveries waited {PROMISED_WAIT:?} for credit on link {link:?}: sent elsewhere or back",
                    address.name(),
                    gone.len()
                );
            }
            for h in gone {
                let Held::Start(f) = h else { continue };
                self.core
                    .stats
                    .gave_up_waiting
                    .fetch_add(1, Ordering::Relaxed);
                address.refund(self.me.id, link);
                if let (Some(origin), retry) = (f.origin, f.retry) {
                    self.reforward(origin, retry, link);
                }
            }
        }
        self.starved_check = next;
    }

    /// Sends a delivery that consumer link `not` did not take (released it,
    /// or could not be sent to) to another consumer, or, if none can take
    /// it or it has been tried enough, settles it released to its producer.
    fn reforward(&mut self, origin: Origin, retry: Option<Retry>, not: LinkId) {
        /// Consumers tried before the delivery goes back to its producer.
        const MAX_ATTEMPTS: u8 = 3;
        let Some(retry) = retry.filter(|r| r.attempts < MAX_ATTEMPTS) else {
            tracing::debug!(
                "a delivery not taken by link {not:?} goes back to its producer released"
            );
            return origin.settle(DeliveryState::Released);
        };
        let table = self.core.mesh().table();
        let targets = retry.address.route_excluding(
            &table,
            &retry.from,
            None,
            Some((self.me.id, not)),
            Reach::Tree,
        );
        let Some((conn, link, to_router)) = targets.targets.into_iter().next() else {
            tracing::debug!("a delivery not taken by link {not:?} has no other consumer: released");
            return origin.settle(DeliveryState::Released);
        };
        let from_router = matches!(retry.from, Hop::Neighbor(_));
        let me = self.core.mesh().id().clone();
        let payload = producer::Shaped::default().get(
            &retry.payload,
            to_router,
            from_router,
            me.as_str(),
            true,
        );
        let key = StreamKey {
            conn: origin.conn.id,
            link: origin.link,
            delivery: origin.delivery,
        };
        conn.post(ToConn::Deliver {
            link,
            delivery: Forwarded {
                payload,
                more: false,
                settled: false,
                origin: Some(origin),
                key,
                expires: None,
                charge: None,
                priority: retry.priority,
                retry: Some(Retry {
                    attempts: retry.attempts + 1,
                    ..retry
                }),
                wait: false,
            },
        });
    }

    pub(super) fn continue_delivery(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        frame: Frame,
        charge: Option<Charge>,
    ) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        if is_held(&c.held, frame.key) {
            c.held.push_back(Held::More {
                frame,
                _charge: charge,
            });
            return;
        }
        let last = !frame.more || frame.aborted;
        self.send_frame(engine, link, frame);
        if last && !engine.is_sending(link) {
            // The link is free: the next delivery waiting for it goes.
            self.send_held(engine, link);
        }
    }

    /// Sends a later frame of a delivery being sent on `link`.
    fn send_frame(&mut self, engine: &mut Connection, link: LinkId, frame: Frame) {
        let Frame {
            key,
            payload,
            more,
            aborted,
        } = frame;
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
            self.check_retiring(engine, link);
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
        if !settled {
            let _ = engine.disposition(link, delivery, None, true);
        }
        if let Some((origin, retry, _)) = c.outstanding.remove(&delivery) {
            c.counts.outcome(state.as_ref().filter(|_| terminal));
            match state.filter(|_| terminal) {
                // Not processed: another consumer may take it.
                Some(DeliveryState::Released) => self.reforward(origin, retry, link),
                Some(state) => origin.settle(state),
                // Settled without an outcome: its fate is unknown to us.
                None => origin.settle(delivery_failed()),
            }
            self.check_retiring(engine, link);
        }
    }

    pub(super) fn detached(&mut self, link: LinkId) {
        self.edge_link_gone(link);
        if let Some(p) = self.producers.remove(&link) {
            self.producers.shrink_sparse();
            if p.address.is_none() {
                self.anonymous_outcomes.retain(|(l, _), _| *l != link);
            }
            if let Some(a) = &p.address {
                self.forget_interest(a.name());
                if a.remove_producer(self.me.id, link) {
                    self.core.tree_producers_changed(a);
                }
                self.core.own_links_changed(a, &self.hop());
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
                if let Some(Inbound::Streaming {
                    key,
                    targets,
                    priority,
                }) = self.inbound.remove(&k)
                {
                    for (conn, clink, _) in targets {
                        conn.post(ToConn::Continue {
                            link: clink,
                            key,
                            payload: Bytes::new(),
                            more: false,
                            aborted: true,
                            charge: None,
                            priority,
                        });
                    }
                }
            }
        }
        if let Some(c) = self.consumers.remove(&link) {
            self.consumers.shrink_sparse();
            self.data_link_gone(link);
            if c.address.remove_consumer(self.me.id, link) && c.to.is_own() {
                self.core.local_consumers(&c.address, false);
            }
            self.core.own_links_changed(&c.address, &c.to);
            self.core.release(&c.address);
            // Never sent: nobody has it.
            for h in c.held {
                if let Held::Start(Forwarded {
                    origin: Some(o), ..
                }) = h
                {
                    o.settle(DeliveryState::Released);
                }
            }
            // Sent to the consumer but not settled: fate unknown.
            let mut outstanding: Vec<_> = c.outstanding.into_iter().collect();
            outstanding.sort_by_key(|(id, _)| id.0);
            for (_, (origin, _, _)) in outstanding {
                origin.settle(delivery_failed());
            }
        }
    }
}

/// Whether `h` is a delivery that waits for its link's credit
/// ([`Forwarded::wait`]).
fn waits_for_credit(h: &Held) -> bool {
    matches!(h, Held::Start(f) if f.wait)
}

/// The delivery in `held` to send next on its link (AMQP 1.0 §3.2.1): the
/// first of the highest priority, unless [`MAX_OVERTAKES`] were sent in a
/// row ahead of an older one of lower priority — then the oldest, the
/// first in `held`. With its index, the count of those in a row once it
/// is sent (`overtakes`: the count so far).
pub(super) fn next_held(held: &VecDeque<Held>, overtakes: u32) -> Option<(usize, u32)> {
    let mut starts = held.iter().enumerate().filter_map(|(i, h)| match h {
        Held::Start(f) => Some((i, f.priority)),
        Held::More { .. } => None,
    });
    let (first, first_priority) = starts.next()?;
    let (best, _) = starts.fold(
        (first, first_priority),
        |best, s| {
            if s.1 > best.1 { s } else { best }
        },
    );
    if best == first {
        Some((first, 0))
    } else if overtakes < MAX_OVERTAKES {
        Some((best, overtakes + 1))
    } else {
        Some((first, 0))
    }
}

/// Whether the delivery `key` waits in `held` (its later frames wait
/// behind it).
fn is_held(held: &VecDeque<Held>, key: StreamKey) -> bool {
    held.iter()
        .any(|h| matches!(h, Held::Start(f) if f.more && f.key == key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ConnId;

    fn start(n: u32, priority: u8) -> Held {
        Held::Start(Forwarded {
            payload: Bytes::new(),
            more: true,
            settled: true,
            origin: None,
            key: key(n),
            expires: None,
            charge: None,
            retry: None,
            wait: false,
            priority,
        })
    }

    fn key(n: u32) -> StreamKey {
        StreamKey {
            conn: ConnId(0),
            link: LinkId::from_raw(0),
            delivery: SequenceNo(n),
        }
    }

    fn more(n: u32) -> Held {
        Held::More {
            frame: Frame {
                key: key(n),
                payload: Bytes::new(),
                more: false,
                aborted: false,
            },
            _charge: None,
        }
    }

    /// The deliveries in the order [`next_held`] sends them (each taken
    /// out with its later frames, as `send_held` does).
    fn order(mut held: VecDeque<Held>) -> Vec<u32> {
        let mut overtakes = 0;
        let mut sent = Vec::new();
        while let Some((i, o)) = next_held(&held, overtakes) {
            overtakes = o;
            let Some(Held::Start(f)) = held.remove(i) else {
                panic!("a delivery at {i}");
            };
            let k = f.key;
            held.retain(|h| !matches!(h, Held::More { frame, .. } if frame.key == k));
            sent.push(k.delivery.0);
        }
        sent
    }

    #[test]
    fn the_highest_priority_goes_first_then_in_order() {
        let held = VecDeque::from([start(0, 0), more(0), start(1, 4), start(2, 9), more(2)]);
        assert_eq!(order(held), [2, 1, 0]);
        assert_eq!(next_held(&VecDeque::from([more(7)]), 0), None);
    }

    #[test]
    fn the_oldest_goes_after_max_overtakes_in_a_row() {
        let mut held = VecDeque::from([start(0, 0), start(1, 0)]);
        held.extend((100..120).map(|n| start(n, 9)));
        let sent = order(held);
        let m = MAX_OVERTAKES as usize;
        assert_eq!(sent[m], 0);
        assert_eq!(sent[2 * m + 1], 1);
        assert_eq!(sent.len(), 22);
    }
}
