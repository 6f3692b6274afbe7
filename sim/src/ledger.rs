//! The ledger of every message: each attempt a producer made, what the
//! producer was told, what consumers got and what they answered. The
//! message-level invariants are checked here as the events come.

use std::collections::BTreeMap;
use std::fmt;

use ferry_proto::definitions::DeliveryState;

use crate::violation::Invariant;

/// One attempt to send one message: the producer, the message's sequence
/// number, and the attempt (a resend after `released`, `modified` or a
/// lost link is a new attempt of the same message). Travels as the AMQP
/// message-id (a ulong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgKey {
    /// The producer's client index.
    pub producer: u16,
    /// The message's number at that producer.
    pub seq: u32,
    /// The attempt (0 for the first send).
    pub attempt: u16,
}

impl MsgKey {
    /// As a message-id.
    pub fn pack(self) -> u64 {
        (u64::from(self.producer) << 48) | (u64::from(self.seq) << 16) | u64::from(self.attempt)
    }

    /// From a message-id.
    pub fn unpack(id: u64) -> Self {
        Self {
            producer: (id >> 48) as u16,
            seq: (id >> 16) as u32,
            attempt: id as u16,
        }
    }
}

impl fmt::Display for MsgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}.{}#{}", self.producer, self.seq, self.attempt)
    }
}

/// A delivery outcome (AMQP 1.0 §3.4), without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// `accepted`.
    Accepted,
    /// `rejected`.
    Rejected,
    /// `released`.
    Released,
    /// `modified`.
    Modified,
}

impl Outcome {
    /// The outcome of a delivery state (`received` is none).
    pub fn of(state: &DeliveryState) -> Option<Self> {
        Some(match state {
            DeliveryState::Accepted => Outcome::Accepted,
            DeliveryState::Rejected(_) => Outcome::Rejected,
            DeliveryState::Released => Outcome::Released,
            DeliveryState::Modified(_) => Outcome::Modified,
            DeliveryState::Received(_) => return None,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::Released => "released",
            Outcome::Modified => "modified",
        })
    }
}

/// How a producer's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Still unsettled.
    InFlight,
    /// Pre-settled: nobody will say.
    PreSettled,
    /// The producer was told this.
    Settled(Outcome),
    /// The producer's link or connection went before an outcome came.
    Lost,
}

#[derive(Debug, Clone)]
struct Attempt {
    fate: Fate,
    multicast: bool,
    body: u64,
    /// The topology epoch when it was sent, and whether a failure was in
    /// effect then (see [`Ledger::faulted`]).
    epoch: u64,
    faulted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Receipt {
    consumer: usize,
    answer: Option<Outcome>,
    /// The topology epoch when it came.
    epoch: u64,
}

/// How a duplicate names a second copy of a multicast delivery at one
/// consumer that came after the topology changed (a copy late on the old
/// tree, forwarded on the new one).
pub const AFTER_TREE_CHANGE: &str = "the topology changed in between";

/// Counters for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Attempts sent (unsettled).
    pub sent: u64,
    /// Pre-settled messages sent.
    pub sent_presettled: u64,
    /// Producer outcomes, by kind.
    pub accepted: u64,
    /// `rejected` outcomes.
    pub rejected: u64,
    /// `released` outcomes.
    pub released: u64,
    /// `modified` outcomes.
    pub modified: u64,
    /// Attempts whose producer link went before an outcome.
    pub lost: u64,
    /// Deliveries consumers got (copies included).
    pub received: u64,
    /// Messages that reached consumers more than once (legitimately: the
    /// producer sent it again, or the router re-forwarded a delivery a
    /// consumer released).
    pub redelivered: u64,
    /// Deliveries a router re-forwarded to a consumer after another one
    /// released them.
    pub reforwarded: u64,
}

/// Every attempt and every receipt of a run.
#[derive(Debug, Default)]
pub struct Ledger {
    attempts: BTreeMap<MsgKey, Attempt>,
    receipts: BTreeMap<MsgKey, Vec<Receipt>>,
    /// Per logical message (producer, seq): how many deliveries reached
    /// consumers.
    per_message: BTreeMap<(u16, u32), u32>,
    /// The counters.
    pub counts: Counts,
    /// The topology epoch (how many times the true topology changed); the
    /// mesh keeps it up to date.
    pub epoch: u64,
    /// Whether a failure is in effect (a router down, a link cut or
    /// silent, a partition); the mesh keeps it up to date. An attempt in
    /// flight while none was in effect and the epoch did not move saw no
    /// failure anywhere in the mesh.
    pub faulted: bool,
    /// Clients' virtual hosts (by client index), under a policy.
    vhosts: BTreeMap<usize, String>,
}

impl Ledger {
    /// Client `client` is in virtual host `vhost`.
    pub fn set_vhost(&mut self, client: usize, vhost: &str) {
        self.vhosts.insert(client, vhost.to_string());
    }

    /// A producer sent an attempt (`presettled`: at most once, nobody
    /// answers) whose body hashes to `body`.
    pub fn sent(&mut self, key: MsgKey, presettled: bool, multicast: bool, body: u64) {
        let fate = if presettled {
            self.counts.sent_presettled += 1;
            Fate::PreSettled
        } else {
            self.counts.sent += 1;
            Fate::InFlight
        };
        self.attempts.insert(
            key,
            Attempt {
                fate,
                multicast,
                body,
                epoch: self.epoch,
                faulted: self.faulted,
            },
        );
    }

    /// Consumer `consumer` got `key` with a body hashing to `body`. A
    /// duplicate is a second delivery of one attempt, unless every earlier
    /// one was released by its consumer (and so was re-forwarded); for
    /// multicast, a second copy at the same consumer.
    pub fn received(
        &mut self,
        consumer: usize,
        key: MsgKey,
        body: u64,
    ) -> Result<(), (Invariant, String)> {
        let Some(attempt) = self.attempts.get(&key) else {
            return Err((Invariant::Phantom, format!("{key} was never sent")));
        };
        let (from, to) = (
            self.vhosts.get(&usize::from(key.producer)),
            self.vhosts.get(&consumer),
        );
        if from != to {
            return Err((
                Invariant::Isolation,
                format!("{key} from vhost {from:?} reached c{consumer} in vhost {to:?}"),
            ));
        }
        if attempt.body != body {
            return Err((
                Invariant::Phantom,
                format!("{key} arrived with other bytes"),
            ));
        }
        let receipts = self.receipts.entry(key).or_default();
        // Anycast: a delivery a consumer released may go to another
        // consumer (the router re-forwards it); otherwise one delivery
        // reaches one consumer once.
        let dup = if attempt.multicast {
            receipts.iter().any(|r| r.consumer == consumer)
        } else {
            receipts.iter().any(|r| r.answer != Some(Outcome::Released))
        };
        if dup {
            let who: Vec<String> = receipts
                .iter()
                .map(|r| format!("c{}", r.consumer))
                .collect();
            let epoch = self.epoch;
            let moved = attempt.multicast
                && receipts
                    .iter()
                    .any(|r| r.consumer == consumer && r.epoch != epoch);
            return Err((
                Invariant::Duplicate,
                format!(
                    "{key} delivered to c{consumer}, already delivered to {}{}",
                    who.join(","),
                    if moved {
                        format!(" ({AFTER_TREE_CHANGE})")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        let again = !receipts.is_empty();
        receipts.push(Receipt {
            consumer,
            answer: None,
            epoch: self.epoch,
        });
        self.counts.received += 1;
        if again && !attempt.multicast {
            self.counts.reforwarded += 1;
        }
        if !attempt.multicast {
            let n = self.per_message.entry((key.producer, key.seq)).or_default();
            *n += 1;
            if *n == 2 {
                self.counts.redelivered += 1;
            }
        }
        Ok(())
    }

    /// Consumer `consumer` settled `key` with `outcome`.
    pub fn answered(&mut self, consumer: usize, key: MsgKey, outcome: Outcome) {
        if let Some(r) = self
            .receipts
            .get_mut(&key)
            .and_then(|rs| rs.iter_mut().rev().find(|r| r.consumer == consumer))
        {
            r.answer = Some(outcome);
        }
    }

    /// The producer of `key` was told `outcome`. Checks that a consumer
    /// gave it: `accepted` and `rejected` must come from a consumer (some
    /// consumer, for multicast); `released` or `modified` never for a
    /// delivery a consumer accepted or rejected, unless a failure was in
    /// effect somewhere in the mesh while it was in flight; and `released`
    /// only for a delivery every consumer that got it released (none
    /// accepted, rejected or modified it, or lost it with its link).
    pub fn settled(&mut self, key: MsgKey, outcome: Outcome) -> Result<(), (Invariant, String)> {
        match outcome {
            Outcome::Accepted => self.counts.accepted += 1,
            Outcome::Rejected => self.counts.rejected += 1,
            Outcome::Released => self.counts.released += 1,
            Outcome::Modified => self.counts.modified += 1,
        }
        // A failure anywhere in the mesh while it was in flight: one in
        // effect when it was sent or now, or any change of the topology
        // (each failure and each healing moves the epoch) in between.
        let failure = self
            .attempts
            .get(&key)
            .is_none_or(|a| a.faulted || self.faulted || a.epoch != self.epoch);
        if let Some(a) = self.attempts.get_mut(&key) {
            a.fate = Fate::Settled(outcome);
        }
        let receipts = self.receipts.get(&key).map_or(&[][..], Vec::as_slice);
        let answers: Vec<Outcome> = receipts.iter().filter_map(|r| r.answer).collect();
        let gave = |o: Outcome| answers.contains(&o);
        let settled_by_consumer = gave(Outcome::Accepted) || gave(Outcome::Rejected);
        match outcome {
            Outcome::Accepted | Outcome::Rejected if !gave(outcome) => Err((
                Invariant::OutcomeWithoutConsumer,
                format!("producer told {key} {outcome}, consumers answered {answers:?}"),
            )),
            // The consumer's outcome reached its router; with nothing
            // failing on the way back, the producer must get it.
            Outcome::Released | Outcome::Modified if settled_by_consumer && !failure => Err((
                Invariant::FalseOutcome,
                format!(
                    "producer told {key} {outcome}, consumers answered {answers:?}, \
                     and no failure was in effect while it was in flight"
                ),
            )),
            // A copy a consumer got comes back as its answer, or as
            // `modified` if its link went first (a router re-forwards a
            // delivery only after its consumer released it). So
            // `released` means every consumer that got it released it.
            Outcome::Released if receipts.iter().any(|r| r.answer != Some(Outcome::Released)) => {
                let got: Vec<String> = receipts
                    .iter()
                    .map(|r| format!("c{} {:?}", r.consumer, r.answer))
                    .collect();
                Err((
                    Invariant::ReleasedAfterSettlement,
                    format!(
                        "producer told {key} released, but consumers got it: {}",
                        got.join(", ")
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The producer's link went with `key` unsettled.
    pub fn lost(&mut self, key: MsgKey) {
        if let Some(a) = self.attempts.get_mut(&key)
            && a.fate == Fate::InFlight
        {
            a.fate = Fate::Lost;
            self.counts.lost += 1;
        }
    }

    /// How `key` ended, if it was sent.
    pub fn fate(&self, key: MsgKey) -> Option<Fate> {
        self.attempts.get(&key).map(|a| a.fate)
    }

    /// Attempts still waiting for an outcome.
    pub fn in_flight(&self) -> impl Iterator<Item = MsgKey> + '_ {
        self.attempts
            .iter()
            .filter(|(_, a)| a.fate == Fate::InFlight)
            .map(|(k, _)| *k)
    }

    /// Every delivery a consumer got, in key order: the attempt, the
    /// consumer's client index, and its answer (`None` if it gave none,
    /// or did not say yet, or got it pre-settled).
    pub fn receipts(&self) -> impl Iterator<Item = (MsgKey, usize, Option<Outcome>)> + '_ {
        self.receipts
            .iter()
            .flat_map(|(k, rs)| rs.iter().map(move |r| (*k, r.consumer, r.answer)))
    }

    /// Every attempt sent, in key order, with its fate.
    pub fn attempts(&self) -> impl Iterator<Item = (MsgKey, Fate)> + '_ {
        self.attempts.iter().map(|(k, a)| (*k, a.fate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u32, attempt: u16) -> MsgKey {
        MsgKey {
            producer: 1,
            seq,
            attempt,
        }
    }

    #[test]
    fn keys_round_trip_through_message_ids() {
        let k = MsgKey {
            producer: 513,
            seq: 70_000,
            attempt: 3,
        };
        assert_eq!(MsgKey::unpack(k.pack()), k);
    }

    #[test]
    fn accepted_needs_a_consumer_that_accepted() {
        let mut l = Ledger::default();
        l.sent(key(1, 0), false, false, 9);
        assert_eq!(
            l.settled(key(1, 0), Outcome::Accepted).unwrap_err().0,
            Invariant::OutcomeWithoutConsumer
        );
        l.sent(key(2, 0), false, false, 9);
        l.received(0, key(2, 0), 9).unwrap();
        l.answered(0, key(2, 0), Outcome::Accepted);
        l.settled(key(2, 0), Outcome::Accepted).unwrap();
        l.sent(key(3, 0), false, false, 9);
        l.received(0, key(3, 0), 9).unwrap();
        l.answered(0, key(3, 0), Outcome::Accepted);
        // Even with a failure on the way (which excuses `modified`).
        l.epoch += 1;
        assert_eq!(
            l.settled(key(3, 0), Outcome::Released).unwrap_err().0,
            Invariant::ReleasedAfterSettlement
        );
    }

    #[test]
    fn an_accepted_delivery_is_not_failed_back_unless_something_failed() {
        let mut l = Ledger::default();
        let accepted = |l: &mut Ledger, seq| {
            l.sent(key(seq, 0), false, false, 9);
            l.received(0, key(seq, 0), 9).unwrap();
            l.answered(0, key(seq, 0), Outcome::Accepted);
        };
        // Nothing failed: neither `modified` nor `released`.
        for (seq, outcome) in [(1, Outcome::Modified), (2, Outcome::Released)] {
            accepted(&mut l, seq);
            assert_eq!(
                l.settled(key(seq, 0), outcome).unwrap_err().0,
                Invariant::FalseOutcome
            );
        }
        // Rejected alike.
        l.sent(key(3, 0), false, false, 9);
        l.received(0, key(3, 0), 9).unwrap();
        l.answered(0, key(3, 0), Outcome::Rejected);
        assert_eq!(
            l.settled(key(3, 0), Outcome::Modified).unwrap_err().0,
            Invariant::FalseOutcome
        );
        // A failure in effect when it was sent, when settled, or one that
        // came and went in between: its link may have gone, `modified`.
        accepted(&mut l, 4);
        l.faulted = true;
        l.settled(key(4, 0), Outcome::Modified).unwrap();
        accepted(&mut l, 5);
        l.faulted = false;
        l.settled(key(5, 0), Outcome::Modified).unwrap();
        accepted(&mut l, 6);
        l.epoch += 2;
        l.settled(key(6, 0), Outcome::Modified).unwrap();
        // A consumer that answered `modified` itself is no false outcome.
        l.sent(key(7, 0), false, false, 9);
        l.received(0, key(7, 0), 9).unwrap();
        l.answered(0, key(7, 0), Outcome::Modified);
        l.settled(key(7, 0), Outcome::Modified).unwrap();
    }

    #[test]
    fn released_only_if_every_consumer_that_got_it_released_it() {
        let mut l = Ledger::default();
        l.sent(key(1, 0), false, true, 9);
        l.received(0, key(1, 0), 9).unwrap();
        l.received(1, key(1, 0), 9).unwrap();
        l.answered(0, key(1, 0), Outcome::Released);
        l.answered(1, key(1, 0), Outcome::Released);
        l.settled(key(1, 0), Outcome::Released).unwrap();
        // A copy a consumer got and did not release (modified, or no
        // answer: its link went) makes `released` a lie.
        for answer in [Some(Outcome::Modified), None] {
            l.sent(key(2, 0), false, true, 9);
            l.received(0, key(2, 0), 9).unwrap();
            l.answered(0, key(2, 0), Outcome::Released);
            l.received(1, key(2, 0), 9).unwrap();
            if let Some(a) = answer {
                l.answered(1, key(2, 0), a);
            }
            assert_eq!(
                l.settled(key(2, 0), Outcome::Released).unwrap_err().0,
                Invariant::ReleasedAfterSettlement
            );
            l = Ledger::default();
        }
        // Anycast alike: released by one consumer, re-forwarded to another
        // whose link went.
        l.sent(key(3, 0), false, false, 9);
        l.received(0, key(3, 0), 9).unwrap();
        l.answered(0, key(3, 0), Outcome::Released);
        l.received(1, key(3, 0), 9).unwrap();
        assert_eq!(
            l.settled(key(3, 0), Outcome::Released).unwrap_err().0,
            Invariant::ReleasedAfterSettlement
        );
    }

    #[test]
    fn duplicates_and_phantoms_are_caught() {
        let mut l = Ledger::default();
        l.sent(key(1, 0), false, false, 9);
        l.received(0, key(1, 0), 9).unwrap();
        assert_eq!(
            l.received(1, key(1, 0), 9).unwrap_err().0,
            Invariant::Duplicate
        );
        // Released by its consumer, it may go to another.
        l.sent(key(2, 0), false, false, 9);
        l.received(0, key(2, 0), 9).unwrap();
        l.answered(0, key(2, 0), Outcome::Released);
        l.received(1, key(2, 0), 9).unwrap();
        assert_eq!(l.counts.reforwarded, 1);
        assert_eq!(
            l.received(0, key(5, 0), 9).unwrap_err().0,
            Invariant::Phantom
        );
        // A resend is a new attempt: its delivery is no duplicate.
        l.sent(key(1, 1), false, false, 9);
        l.received(1, key(1, 1), 9).unwrap();
        assert_eq!(l.counts.redelivered, 2);
        // Multicast: one copy per consumer.
        l.sent(key(7, 0), false, true, 9);
        l.received(0, key(7, 0), 9).unwrap();
        l.received(1, key(7, 0), 9).unwrap();
        let (inv, detail) = l.received(1, key(7, 0), 9).unwrap_err();
        assert_eq!(inv, Invariant::Duplicate);
        assert!(!detail.contains(AFTER_TREE_CHANGE), "{detail}");
        // A second copy after the topology changed says so.
        l.epoch += 1;
        let (_, detail) = l.received(0, key(7, 0), 9).unwrap_err();
        assert!(detail.contains(AFTER_TREE_CHANGE), "{detail}");
    }
}
