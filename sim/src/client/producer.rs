//! A producer: sends numbered messages when it has credit. Unsettled, it
//! sends each message again (a new attempt) after `released`, `modified`
//! or a lost link, until a consumer accepts or rejects it; pre-settled, it
//! sends each once.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::definitions::{DeliveryState, SequenceNo};
use ferry_proto::engine::{Connection, LinkId};
use ferry_proto::message::{Body, Header, Message, MessageId, MessageView, Properties};

use super::{Ctx, body_hash};
use crate::ledger::{MsgKey, Outcome};

/// What a producer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSpec {
    /// The address it sends to.
    pub address: String,
    /// How many messages.
    pub messages: u32,
    /// Send pre-settled (at most once).
    pub presettled: bool,
    /// Least time between two sends.
    pub interval: Duration,
    /// Body size in bytes.
    pub body_size: usize,
    /// Attach with no target address (an anonymous sender) and set each
    /// message's `to` instead. The router grants anonymous senders a fixed
    /// window whatever the consumers, so the credit checks leave them out.
    pub anonymous: bool,
}

/// A producer's state.
#[derive(Debug)]
pub struct Producer {
    /// What it does.
    pub spec: ProducerSpec,
    /// Messages to send (or send again), by number.
    queue: VecDeque<u32>,
    attempts: Vec<u16>,
    /// Messages that need no more sending.
    done: Vec<bool>,
    /// Unsettled attempts by delivery id.
    in_flight: BTreeMap<u32, MsgKey>,
    next_send: Option<Instant>,
    multicast: bool,
}

impl Producer {
    /// A producer that has sent nothing yet; `multicast` if its address is.
    pub fn new(spec: ProducerSpec, multicast: bool) -> Self {
        let n = spec.messages;
        Self {
            queue: (0..n).collect(),
            attempts: vec![0; n as usize],
            done: vec![false; n as usize],
            in_flight: BTreeMap::new(),
            next_send: None,
            multicast,
            spec,
        }
    }

    /// Whether every message needs no more sending (accepted, rejected, or
    /// sent pre-settled).
    pub fn is_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }

    /// Messages not yet done.
    pub fn remaining(&self) -> usize {
        self.done.iter().filter(|d| !**d).count()
    }

    /// Sends what credit and pacing allow.
    pub(super) fn act(
        &mut self,
        index: usize,
        engine: &mut Connection,
        link: LinkId,
        tags: &mut u64,
        name: &str,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let mut sent = false;
        while engine.credit(link) > 0
            && !self.queue.is_empty()
            && self.next_send.is_none_or(|t| t <= ctx.now)
        {
            let seq = self.queue.pop_front().expect("not empty");
            let key = MsgKey {
                producer: index as u16,
                seq,
                attempt: self.attempts[seq as usize],
            };
            let payload = self.message(key);
            let body = MessageView::parse(payload.clone())
                .ok()
                .and_then(|v| v.body_bytes())
                .map_or(0, |b| body_hash(&b));
            *tags += 1;
            let tag = Bytes::copy_from_slice(&tags.to_be_bytes());
            match engine.send(link, tag, payload, self.spec.presettled, false) {
                Ok(id) => {
                    ctx.ledger
                        .sent(key, self.spec.presettled, self.multicast, body);
                    if self.spec.presettled {
                        self.done[seq as usize] = true;
                        ctx.note(name, format_args!("send {key} pre-settled"));
                    } else {
                        self.in_flight.insert(id.0, key);
                        ctx.note(name, format_args!("send {key}"));
                    }
                    sent = true;
                }
                Err(e) => {
                    self.queue.push_front(seq);
                    ctx.note(name, format_args!("send {key} failed: {e}"));
                    break;
                }
            }
            if !self.spec.interval.is_zero() {
                self.next_send = Some(ctx.now + self.spec.interval);
            }
        }
        sent
    }

    /// When it next wants to send, given its credit.
    pub(super) fn next_wakeup(&self, credit: u32) -> Option<Instant> {
        if credit == 0 || self.queue.is_empty() {
            return None;
        }
        self.next_send
    }

    pub(super) fn disposition(
        &mut self,
        delivery: SequenceNo,
        state: Option<DeliveryState>,
        settled: bool,
        name: &str,
        ctx: &mut Ctx<'_>,
    ) {
        if !settled {
            return;
        }
        let Some(key) = self.in_flight.remove(&delivery.0) else {
            return;
        };
        let Some(outcome) = state.as_ref().and_then(Outcome::of) else {
            ctx.note(name, format_args!("{key} settled without outcome"));
            ctx.ledger.lost(key);
            self.again(key);
            return;
        };
        ctx.note(name, format_args!("outcome {key} {outcome}"));
        if let Err(v) = ctx.ledger.settled(key, outcome) {
            ctx.fail(v);
        }
        match outcome {
            Outcome::Accepted | Outcome::Rejected => self.done[key.seq as usize] = true,
            Outcome::Released | Outcome::Modified => self.again(key),
        }
    }

    /// The link went: every unsettled attempt's fate is unknown; send again.
    pub(super) fn link_lost(&mut self, name: &str, ctx: &mut Ctx<'_>) {
        let lost: Vec<MsgKey> = std::mem::take(&mut self.in_flight).into_values().collect();
        if !lost.is_empty() {
            ctx.note(
                name,
                format_args!("link lost with {} unsettled", lost.len()),
            );
        }
        for key in lost.into_iter().rev() {
            ctx.ledger.lost(key);
            self.attempts[key.seq as usize] = key.attempt + 1;
            self.queue.push_front(key.seq);
        }
    }

    fn again(&mut self, key: MsgKey) {
        self.attempts[key.seq as usize] = key.attempt + 1;
        self.queue.push_back(key.seq);
    }

    fn message(&self, key: MsgKey) -> Bytes {
        let mut body = vec![0u8; self.spec.body_size];
        let mut x = u64::from(key.producer) << 32 | u64::from(key.seq);
        for b in &mut body {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            *b = (x >> 56) as u8;
        }
        // Priorities 0 to 9 in turn (AMQP 1.0 §3.2.1), so that where the
        // routers hold deliveries they reorder them, under every fault.
        let priority = ((key.seq + u32::from(key.producer)) % 10) as u8;
        let mut message = Message::new(Body::data(body))
            .with_header(Header {
                priority: Some(priority),
                ..Header::default()
            })
            .with_properties(Properties {
                message_id: Some(MessageId::Ulong(key.pack())),
                ..Properties::default()
            });
        if self.spec.anonymous {
            message = message.with_to(self.spec.address.as_str());
        }
        message.encode()
    }
}
