//! A consumer: keeps its link credit at its window less what it is still
//! processing, takes `delay` per message (one at a time, so a long delay
//! makes a slow consumer), and answers each unsettled delivery with an
//! outcome drawn from its weights.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry_proto::definitions::{DeliveryState, Modified, Rejected, SequenceNo};
use ferry_proto::engine::{Connection, IncomingTransfer, LinkId};
use ferry_proto::message::MessageView;

use super::{Ctx, body_hash};
use crate::ledger::{MsgKey, Outcome};
use crate::rng::SimRng;
use crate::tap::message_key;
use crate::violation::Invariant;

/// Relative weights of the outcomes a consumer gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeWeights {
    /// `accepted`.
    pub accept: u64,
    /// `rejected`.
    pub reject: u64,
    /// `released`.
    pub release: u64,
    /// `modified`.
    pub modify: u64,
}

impl OutcomeWeights {
    /// Always `accepted`.
    pub const ACCEPT_ALL: Self = Self {
        accept: 1,
        reject: 0,
        release: 0,
        modify: 0,
    };
}

/// What a consumer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The address it receives from.
    pub address: String,
    /// Its credit window.
    pub credit: u32,
    /// Processing time per message.
    pub delay: Duration,
    /// The outcomes it gives.
    pub outcomes: OutcomeWeights,
    /// Close the connection right after answering this many deliveries,
    /// and stay away (a consumer that leaves as soon as it has what it
    /// wanted: its last outcomes must still reach the producers).
    pub close_after: Option<u64>,
}

/// A consumer's state.
#[derive(Debug)]
pub struct Consumer {
    /// What it does.
    pub spec: ConsumerSpec,
    /// Extra processing time per message (the "slow consumer" fault).
    pub extra_delay: Duration,
    /// Deliveries being processed: when done, delivery id, key.
    pending: VecDeque<(Instant, u32, Option<MsgKey>)>,
    busy_until: Option<Instant>,
    partial: Option<(u32, bool, BytesMut)>,
    /// Deliveries answered so far.
    answered: u64,
}

impl Consumer {
    /// A consumer with nothing received yet.
    pub fn new(spec: ConsumerSpec) -> Self {
        Self {
            spec,
            extra_delay: Duration::ZERO,
            pending: VecDeque::new(),
            busy_until: None,
            partial: None,
            answered: 0,
        }
    }

    /// Whether it has answered all it wanted and closes its connection
    /// (see [`ConsumerSpec::close_after`]).
    pub fn leaving(&self) -> bool {
        self.spec.close_after.is_some_and(|n| self.answered >= n)
    }

    /// Deliveries received and not yet answered.
    pub fn unanswered(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn attached(&mut self, engine: &mut Connection, link: LinkId) {
        let _ = engine.flow(link, self.spec.credit, false);
    }

    pub(super) fn transfer(
        &mut self,
        t: IncomingTransfer,
        index: usize,
        name: &str,
        engine: &mut Connection,
        ctx: &mut Ctx<'_>,
    ) {
        let _ = engine;
        if t.aborted {
            self.partial = None;
            return;
        }
        let (id, settled, payload) = match self.partial.take() {
            Some((id, settled, mut buf)) => {
                buf.extend_from_slice(&t.payload);
                if t.more {
                    self.partial = Some((id, settled, buf));
                    return;
                }
                (id, settled, buf.freeze())
            }
            None if t.more => {
                self.partial = Some((t.delivery.0, t.settled, BytesMut::from(&t.payload[..])));
                return;
            }
            None => (t.delivery.0, t.settled, t.payload),
        };
        let key = message_key(&payload);
        let body = MessageView::parse(payload.clone())
            .ok()
            .and_then(|v| v.body_bytes())
            .map_or(0, |b| body_hash(&b));
        match key {
            Some(key) => {
                ctx.note(
                    name,
                    format_args!("recv {key}{}", if settled { " pre-settled" } else { "" }),
                );
                if let Err(v) = ctx.ledger.received(index, key, body) {
                    ctx.fail(v);
                }
            }
            None => ctx.fail((
                Invariant::Phantom,
                format!("{name} got a message without our id"),
            )),
        }
        if !settled {
            let start = self.busy_until.map_or(ctx.now, |b| b.max(ctx.now));
            let due = start + self.spec.delay + self.extra_delay;
            self.busy_until = Some(due);
            self.pending.push_back((due, id, key));
        }
    }

    /// Answers what is processed, and tops the credit up.
    pub(super) fn act(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        rng: &mut SimRng,
        index: usize,
        name: &str,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        if self.leaving() {
            return false; // closed its connection: nothing more to do
        }
        let mut acted = false;
        while self
            .pending
            .front()
            .is_some_and(|(due, _, _)| *due <= ctx.now)
        {
            let (_, id, key) = self.pending.pop_front().expect("checked");
            let w = self.spec.outcomes;
            let outcome = match rng.weighted(&[w.accept, w.reject, w.release, w.modify]) {
                0 => Outcome::Accepted,
                1 => Outcome::Rejected,
                2 => Outcome::Released,
                _ => Outcome::Modified,
            };
            let state = match outcome {
                Outcome::Accepted => DeliveryState::Accepted,
                Outcome::Rejected => DeliveryState::Rejected(Rejected::default()),
                Outcome::Released => DeliveryState::Released,
                Outcome::Modified => DeliveryState::Modified(Modified {
                    delivery_failed: Some(true),
                    ..Modified::default()
                }),
            };
            if engine
                .disposition(link, SequenceNo(id), Some(state), true)
                .is_ok()
                && let Some(key) = key
            {
                ctx.ledger.answered(index, key, outcome);
                ctx.note(name, format_args!("answer {key} {outcome}"));
            }
            acted = true;
            self.answered += 1;
            if self.leaving() {
                // Right behind the last disposition, in the same output.
                engine.close(None);
                ctx.note(name, "closing its connection (answered all it wanted)");
                return true;
            }
        }
        let want = self.spec.credit.saturating_sub(self.pending.len() as u32);
        if engine.credit(link) < want {
            let _ = engine.flow(link, want, false);
            acted = true;
        }
        acted
    }

    /// When the next delivery is processed.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        self.pending.front().map(|(due, _, _)| *due)
    }

    /// The link went: what was being processed can no longer be answered.
    pub(super) fn link_lost(&mut self) {
        self.pending.clear();
        self.busy_until = None;
        self.partial = None;
    }
}
