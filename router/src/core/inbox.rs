//! A connection task's inbox: an unbounded multi-producer,
//! single-consumer channel that allocates nothing until used.
//!
//! Tokio's unbounded channel allocates its first block of 32 slots when
//! made: with a [`ToConn`](super::ToConn) of about 200 bytes, 6.5 KiB for
//! every connection, most of an idle connection's memory. Here the queue
//! is a `VecDeque` behind a mutex, empty (unallocated) until a message
//! arrives. The receiver takes everything queued at once (one lock per
//! batch, not per message) into a second `VecDeque` it owns, and lets go
//! of that one's storage when it finds nothing more to do, if it grew
//! large, so a connection that once saw a burst does not keep its buffer.
//!
//! Like tokio's channel: receiving takes from the task's cooperative
//! budget (a busy inbox cannot keep a task from yielding forever);
//! [`recv`](Inbox::recv) gives `None` once every sender is gone and the
//! queue is empty; a message sent after the receiver was dropped is
//! given back to the sender (and so dropped, as it would be unread).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Capacity (in messages) beyond which the receiver frees its buffer once
/// drained. Below it the buffer is kept, so that steady traffic does not
/// allocate per batch.
const KEEP: usize = 16;

/// Makes an inbox and its first sender.
pub fn inbox<T>() -> (Outbox<T>, Inbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            closed: false,
        }),
        senders: AtomicUsize::new(1),
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        Inbox {
            shared,
            batch: VecDeque::new(),
        },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Live [`Outbox`]es.
    senders: AtomicUsize,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver, waiting for a message.
    waker: Option<Waker>,
    /// The receiver is gone.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side; clone it for each sender.
pub struct Outbox<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a waiting receiver learns there is no more.
            let waker = self.shared.lock().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> Outbox<T> {
    /// Queues `msg`; gives it back if the receiver is gone.
    ///
    /// # Errors
    ///
    /// The message, if the receiver was dropped.
    pub fn send(&self, msg: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        if state.closed {
            drop(state);
            return Err(msg);
        }
        state.queue.push_back(msg);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether `other` sends to the same inbox.
    pub fn same_inbox(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// The receiving side.
pub struct Inbox<T> {
    shared: Arc<Shared<T>>,
    /// Messages taken from the queue, not yet handed out.
    batch: VecDeque<T>,
}

impl<T> std::fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("batch", &self.batch.len())
            .finish_non_exhaustive()
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        // Dropped outside the lock: dropping a message may post to
        // another inbox (or, through a sender it holds, touch this one).
        drop(queued);
    }
}

impl<T> Inbox<T> {
    /// Takes no more messages (later sends are given back to their
    /// senders) and returns those not read yet, in order.
    pub fn close(&mut self) -> Vec<T> {
        let mut state = self.shared.lock();
        state.closed = true;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        self.batch.drain(..).chain(queued).collect()
    }

    /// The next message, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        if let Some(m) = self.batch.pop_front() {
            return Some(m);
        }
        match self.refill(None) {
            Refill::Got(m) => Some(m),
            Refill::Empty | Refill::Ended => None,
        }
    }

    /// Waits for the next message; `None` once every sender is gone and
    /// nothing is queued.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message (see [`recv`](Self::recv)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        if let Some(m) = self.batch.pop_front() {
            coop.made_progress();
            return Poll::Ready(Some(m));
        }
        match self.refill(Some(cx.waker())) {
            Refill::Got(m) => {
                coop.made_progress();
                Poll::Ready(Some(m))
            }
            Refill::Ended => Poll::Ready(None),
            Refill::Empty => Poll::Pending,
        }
    }

    /// With the batch empty: takes what is queued and hands out the first;
    /// if nothing is, registers `waker` (if any) and lets go of a large
    /// batch buffer.
    fn refill(&mut self, waker: Option<&Waker>) -> Refill<T> {
        let mut state = self.shared.lock();
        if state.queue.is_empty() {
            // Read under the lock: a sender queues under it before it
            // counts itself gone, so its last message is seen first.
            let ended = self.shared.senders.load(Ordering::Acquire) == 0;
            if let Some(waker) = waker.filter(|_| !ended) {
                match &mut state.waker {
                    Some(w) if w.will_wake(waker) => {}
                    w => *w = Some(waker.clone()),
                }
            }
            drop(state);
            if self.batch.capacity() > KEEP {
                self.batch = VecDeque::new();
            }
            return if ended { Refill::Ended } else { Refill::Empty };
        }
        std::mem::swap(&mut state.queue, &mut self.batch);
        drop(state);
        match self.batch.pop_front() {
            Some(m) => Refill::Got(m),
            None => Refill::Empty,
        }
    }
}

/// What [`Inbox::refill`] found.
enum Refill<T> {
    Got(T),
    Empty,
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_order_and_allocates_nothing_until_used() {
        let (tx, mut rx) = inbox::<u32>();
        assert_eq!(rx.shared.lock().queue.capacity(), 0);
        assert_eq!(rx.try_recv(), None);
        let tx2 = tx.clone();
        assert!(tx.same_inbox(&tx2));
        for i in 0..100 {
            tx.send(i).unwrap();
            if i % 7 == 0 {
                tx2.send(1000 + i).unwrap();
            }
        }
        let mut got = Vec::new();
        while let Some(m) = rx.try_recv() {
            got.push(m);
        }
        let mine: Vec<_> = got.iter().copied().filter(|m| *m < 1000).collect();
        assert_eq!(mine, (0..100).collect::<Vec<_>>());
        assert_eq!(got.len(), 100 + 15);
        // Drained: the large buffer is let go of.
        assert_eq!(rx.batch.capacity(), 0);
    }

    #[test]
    fn a_closed_inbox_returns_what_was_unread_and_gives_later_messages_back() {
        let (tx, mut rx) = inbox::<u32>();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_recv(), Some(0));
        tx.send(5).unwrap();
        assert_eq!(rx.close(), [1, 2, 3, 4, 5]);
        assert_eq!(tx.send(6), Err(6));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn a_dropped_receiver_gives_messages_back_and_drops_the_queued() {
        let (tx, rx) = inbox::<Arc<()>>();
        let held = Arc::new(());
        tx.send(held.clone()).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&held), 1, "the queued message dropped");
        assert!(tx.send(held.clone()).is_err());
    }

    #[tokio::test]
    async fn recv_waits_for_a_message_and_ends_with_the_last_sender() {
        let (tx, mut rx) = inbox::<u32>();
        let tx2 = tx.clone();
        let t = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(1).unwrap();
            drop(tx);
            tokio::task::yield_now().await;
            tx2.send(2).unwrap();
        });
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
        t.await.unwrap();
    }
}
