//! Message priority where deliveries wait inside a connection task (AMQP
//! 1.0 §3.2.1: `header.priority`, 0 to 9, default 4, higher is more
//! urgent).
//!
//! A connection task whose output is backlogged (its peer — a slow
//! consumer, or the next router — is not taking it) holds the messages
//! other tasks post to it. [`Waiting`] is that queue. What it hands out
//! first:
//!
//! 1. Everything that is not a delivery (outcomes travelling back to
//!    producers, credit notices, path changes, reports), in order: they
//!    are small, and data must not hold them back.
//! 2. Deliveries (and the later frames of a delivery streamed over
//!    several, which keep its priority and so stay behind its first),
//!    highest priority first, in order of arrival within a priority.
//! 3. Without starving the lower ones: after [`MAX_OVERTAKES`] messages in
//!    a row went ahead of an older one of lower priority, the oldest
//!    waiting message goes next, whatever its priority. A lower priority
//!    so gets at least one message in `MAX_OVERTAKES + 1` while higher
//!    ones keep coming, and waits behind at most that many newcomers.
//!
//! The queue costs nothing until a message is held: a connection whose
//! output keeps up never builds it (its messages are handled as they
//! come), and an idle one keeps one pointer for it.

use std::collections::VecDeque;

use super::fields::MAX_PRIORITY;
use super::message::ToConn;

/// Messages handed out from a higher priority, in a row, ahead of an older
/// message of a lower one, before the oldest waiting message goes.
pub const MAX_OVERTAKES: u32 = 8;

/// Priorities told apart (0 to [`MAX_PRIORITY`]).
const LEVELS: usize = MAX_PRIORITY as usize + 1;

/// Messages held by a connection task, handed out by priority (see the
/// module's documentation).
#[derive(Debug, Default)]
pub struct Waiting {
    /// Allocated when the first message is held, dropped when drained.
    queues: Option<Box<Queues>>,
}

#[derive(Debug, Default)]
struct Queues {
    /// What is not a delivery: handed out first, in order.
    other: VecDeque<ToConn>,
    /// Deliveries and their later frames by priority, each with its
    /// arrival number, in order of arrival.
    lanes: [VecDeque<(u64, ToConn)>; LEVELS],
    /// The next arrival number.
    next: u64,
    /// Messages handed out in a row ahead of an older one.
    overtakes: u32,
}

impl Waiting {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queues.is_none()
    }

    /// Holds `msg`.
    pub fn push(&mut self, msg: ToConn) {
        let q = self.queues.get_or_insert_with(Box::default);
        match priority(&msg) {
            None => q.other.push_back(msg),
            Some(p) => {
                let n = q.next;
                q.next += 1;
                q.lanes[usize::from(p.min(MAX_PRIORITY))].push_back((n, msg));
            }
        }
    }

    /// The next message to handle (see the module's documentation).
    pub fn pop(&mut self) -> Option<ToConn> {
        let q = self.queues.as_mut()?;
        let msg = q.pop();
        if q.is_empty() {
            self.queues = None;
        }
        msg
    }
}

impl Queues {
    fn is_empty(&self) -> bool {
        self.other.is_empty() && self.lanes.iter().all(VecDeque::is_empty)
    }

    fn pop(&mut self) -> Option<ToConn> {
        if let Some(m) = self.other.pop_front() {
            return Some(m);
        }
        let highest = self.lanes.iter().rposition(|l| !l.is_empty())?;
        // The oldest message waiting, at the front of some lane.
        let oldest = (0..highest)
            .filter_map(|i| Some((self.lanes[i].front()?.0, i)))
            .min()
            .map(|(_, i)| i)
            .filter(|&i| {
                self.lanes[i].front().map(|f| f.0) < self.lanes[highest].front().map(|f| f.0)
            });
        let lane = match oldest {
            // Nothing older waits below: no overtaking.
            None => {
                self.overtakes = 0;
                highest
            }
            Some(_) if self.overtakes < MAX_OVERTAKES => {
                self.overtakes += 1;
                highest
            }
            Some(old) => {
                self.overtakes = 0;
                old
            }
        };
        self.lanes[lane].pop_front().map(|(_, m)| m)
    }
}

/// A delivery's priority, or `None` for a message that is not data.
fn priority(msg: &ToConn) -> Option<u8> {
    match msg {
        ToConn::Deliver { delivery, .. } => Some(delivery.priority),
        ToConn::Continue { priority, .. } => Some(*priority),
        ToConn::Settle { .. }
        | ToConn::Recredit { .. }
        | ToConn::Demand { .. }
        | ToConn::Control(_)
        | ToConn::PathsChanged
        | ToConn::UplinkAddress { .. }
        | ToConn::PolicyChanged
        | ToConn::BrokerDemand
        | ToConn::Report(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ConnId, Forwarded, StreamKey};
    use bytes::Bytes;
    use ferry_proto::definitions::SequenceNo;
    use ferry_proto::engine::LinkId;

    fn deliver(n: u32, priority: u8) -> ToConn {
        ToConn::Deliver {
            link: LinkId::from_raw(0),
            delivery: Forwarded {
                payload: Bytes::new(),
                more: false,
                settled: true,
                origin: None,
                key: StreamKey {
                    conn: ConnId(0),
                    link: LinkId::from_raw(0),
                    delivery: SequenceNo(n),
                },
                expires: None,
                charge: None,
                retry: None,
                wait: false,
                priority,
            },
        }
    }

    /// What comes out: (delivery id, priority) of deliveries, `(u32::MAX,
    /// 0)` for anything else.
    fn drain(w: &mut Waiting) -> Vec<(u32, u8)> {
        std::iter::from_fn(|| w.pop())
            .map(|m| match m {
                ToConn::Deliver { delivery, .. } => (delivery.key.delivery.0, delivery.priority),
                ToConn::Continue { key, priority, .. } => (key.delivery.0, priority),
                _ => (u32::MAX, 0),
            })
            .collect()
    }

    #[test]
    fn higher_priority_goes_first_and_order_holds_within_a_priority() {
        let mut w = Waiting::default();
        assert!(w.is_empty());
        w.push(deliver(0, 4));
        w.push(deliver(1, 9));
        w.push(deliver(2, 4));
        w.push(deliver(3, 9));
        w.push(ToConn::PathsChanged);
        w.push(deliver(4, 200)); // served as 9
        assert!(!w.is_empty());
        assert_eq!(
            drain(&mut w),
            [(u32::MAX, 0), (1, 9), (3, 9), (4, 200), (0, 4), (2, 4)]
        );
        assert!(w.is_empty());
        assert!(w.queues.is_none(), "drained: the queues are let go of");
    }

    #[test]
    fn a_later_frame_stays_behind_its_first() {
        let mut w = Waiting::default();
        w.push(deliver(0, 0));
        w.push(deliver(1, 7));
        w.push(ToConn::Continue {
            link: LinkId::from_raw(0),
            key: StreamKey {
                conn: ConnId(0),
                link: LinkId::from_raw(0),
                delivery: SequenceNo(1),
            },
            payload: Bytes::new(),
            more: false,
            aborted: false,
            charge: None,
            priority: 7,
        });
        assert_eq!(drain(&mut w), [(1, 7), (1, 7), (0, 0)]);
    }

    #[test]
    fn the_oldest_goes_after_max_overtakes_in_a_row() {
        let mut w = Waiting::default();
        for i in 0..3 {
            w.push(deliver(i, 0));
        }
        for i in 100..130 {
            w.push(deliver(i, 9));
        }
        let out = drain(&mut w);
        let lows: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, (_, p))| *p == 0)
            .map(|(i, _)| i)
            .collect();
        let m = MAX_OVERTAKES as usize;
        // Each low-priority delivery waits behind exactly MAX_OVERTAKES
        // newer ones, and they keep their order.
        assert_eq!(lows, [m, 2 * m + 1, 3 * m + 2]);
        let low_ids: Vec<u32> = lows.iter().map(|&i| out[i].0).collect();
        assert_eq!(low_ids, [0, 1, 2]);
        assert_eq!(out.len(), 33);
    }

    #[test]
    fn no_overtaking_is_counted_when_nothing_older_waits() {
        let mut w = Waiting::default();
        for i in 0..20 {
            w.push(deliver(i, 9));
        }
        // Younger than every priority-9 delivery: nothing overtakes it
        // until it is the oldest.
        w.push(deliver(20, 0));
        let out = drain(&mut w);
        assert_eq!(out.last(), Some(&(20, 0)));
        // Interleaved arrivals: 9s arriving after the 0 overtake it, at
        // most MAX_OVERTAKES of them.
        for i in 0..2 {
            w.push(deliver(i, 9));
        }
        w.push(deliver(2, 0));
        for i in 3..20 {
            w.push(deliver(i, 9));
        }
        let out = drain(&mut w);
        let pos = out.iter().position(|&(_, p)| p == 0).unwrap();
        assert_eq!(pos, 2 + MAX_OVERTAKES as usize);
    }
}
