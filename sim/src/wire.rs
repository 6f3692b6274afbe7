//! One direction of a simulated connection: an ordered byte stream with a
//! latency, that can end (EOF) or fall silent (a black hole: bytes vanish
//! and no EOF comes, as when a network partition hides a TCP peer). A
//! pipe may have a bandwidth: bytes then leave one after the other at that
//! rate (what waits behind a large message waits for it, as in a TCP
//! stream), and a sender whose unsent bytes fill the socket buffer
//! ([`SEND_BUFFER`]) is not given more until they drain.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::tap::WireEvent;

/// The bytes a pipe with a bandwidth takes before its sender has to wait
/// (a socket's send buffer).
pub const SEND_BUFFER: u64 = 256 * 1024;

/// What a pipe delivers.
#[derive(Debug, Clone)]
pub enum Segment {
    /// Bytes, in order, with what the watcher saw in them (for the
    /// receiver's side of the invariants).
    Data(Bytes, Vec<WireEvent>),
    /// The sender closed the stream.
    Eof,
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct Pipe {
    queue: VecDeque<(Instant, Segment)>,
    /// Set once the EOF is queued: nothing more is accepted.
    closed: bool,
    /// Silent: everything sent is lost, nothing arrives.
    blackholed: bool,
    /// Bytes sent into the pipe (lost ones included).
    pub sent_bytes: u64,
    /// Bytes that vanished in a black hole.
    pub lost_bytes: u64,
    /// Bytes per second, if limited.
    rate: Option<u64>,
    /// When the bytes sent so far will all have left (with a rate).
    free_at: Option<Instant>,
}

impl Pipe {
    /// A pipe carrying at most `rate` bytes per second (`None`: no limit).
    pub fn with_rate(rate: Option<u64>) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0),
            ..Self::default()
        }
    }

    /// When the sender may write again, if its unsent bytes fill the
    /// send buffer now.
    pub fn writable_at(&self, now: Instant) -> Option<Instant> {
        let rate = self.rate?;
        let free_at = self.free_at?;
        let buffer = Duration::from_nanos(SEND_BUFFER * 1_000_000_000 / rate);
        (free_at > now + buffer).then(|| free_at - buffer)
    }

    /// Sends `bytes`, to arrive `latency` from `now` but never before what
    /// was sent earlier (a stream keeps its order whatever the delay).
    pub fn send(&mut self, now: Instant, latency: Duration, bytes: Bytes, events: Vec<WireEvent>) {
        self.sent_bytes += bytes.len() as u64;
        if self.blackholed || self.closed {
            self.lost_bytes += bytes.len() as u64;
            return;
        }
        let sent = match self.rate {
            Some(rate) => {
                let start = self.free_at.map_or(now, |f| f.max(now));
                let took = bytes.len() as u64 * 1_000_000_000 / rate;
                let done = start + Duration::from_nanos(took);
                self.free_at = Some(done);
                done
            }
            None => now,
        };
        let at = self.arrival(sent, latency);
        self.queue.push_back((at, Segment::Data(bytes, events)));
    }

    /// Closes the stream: the peer sees EOF after the bytes already sent.
    pub fn close(&mut self, now: Instant, latency: Duration) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.blackholed {
            let at = self.arrival(self.free_at.map_or(now, |f| f.max(now)), latency);
            self.queue.push_back((at, Segment::Eof));
        }
    }

    /// Resets the stream at once (as a TCP RST): what is in flight is lost
    /// and the peer sees EOF now.
    pub fn reset(&mut self, now: Instant) {
        self.queue.clear();
        self.blackholed = false;
        self.closed = true;
        self.queue.push_back((now, Segment::Eof));
    }

    /// Makes the pipe silent: what is in flight and everything sent from
    /// now on is lost, and no EOF will come.
    pub fn blackhole(&mut self) {
        for (_, s) in self.queue.drain(..) {
            if let Segment::Data(b, _) = s {
                self.lost_bytes += b.len() as u64;
            }
        }
        self.blackholed = true;
    }

    /// Whether the pipe is silent.
    pub fn is_blackholed(&self) -> bool {
        self.blackholed
    }

    /// Whether the sender closed the stream.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the next segment arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// When something happens next: an arrival, or the sender may write
    /// again (the step loop wakes up then).
    pub fn next_event(&self, now: Instant) -> Option<Instant> {
        self.next_arrival()
            .into_iter()
            .chain(self.writable_at(now))
            .min()
    }

    /// The next segment if it has arrived by `now`.
    pub fn receive(&mut self, now: Instant) -> Option<Segment> {
        if self.queue.front().is_some_and(|(at, _)| *at <= now) {
            return self.queue.pop_front().map(|(_, s)| s);
        }
        None
    }

    fn arrival(&self, now: Instant, latency: Duration) -> Instant {
        let at = now + latency;
        match self.queue.back() {
            Some((last, _)) if *last > at => *last,
            _ => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: Option<Segment>) -> Option<Vec<u8>> {
        match s? {
            Segment::Data(b, _) => Some(b.to_vec()),
            Segment::Eof => Some(b"EOF".to_vec()),
        }
    }

    #[test]
    fn order_is_kept_whatever_the_latency() {
        let t0 = Instant::now();
        let mut p = Pipe::default();
        p.send(
            t0,
            Duration::from_millis(10),
            Bytes::from_static(b"a"),
            vec![],
        );
        p.send(
            t0,
            Duration::from_millis(1),
            Bytes::from_static(b"b"),
            vec![],
        );
        p.close(t0, Duration::ZERO);
        assert!(p.receive(t0 + Duration::from_millis(5)).is_none());
        let t = t0 + Duration::from_millis(10);
        assert_eq!(data(p.receive(t)), Some(b"a".to_vec()));
        assert_eq!(data(p.receive(t)), Some(b"b".to_vec()));
        assert_eq!(data(p.receive(t)), Some(b"EOF".to_vec()));
        assert!(p.is_empty());
    }

    #[test]
    fn a_bandwidth_makes_bytes_wait_behind_earlier_ones() {
        let t0 = Instant::now();
        let mut p = Pipe::with_rate(Some(1_000_000)); // 1 MB/s
        let big = Bytes::from(vec![0u8; 500_000]);
        p.send(t0, Duration::from_millis(1), big, vec![]);
        p.send(
            t0,
            Duration::from_millis(1),
            Bytes::from_static(b"x"),
            vec![],
        );
        // 500 kB take 0.5 s: the small one arrives after, not at 1 ms.
        let first = Duration::from_millis(501);
        assert_eq!(p.next_arrival(), Some(t0 + first));
        // 256 KiB may wait unsent: the sender writes again once the rest left.
        let w = p.writable_at(t0).expect("buffer full");
        assert!(w > t0 + Duration::from_millis(200) && w < t0 + Duration::from_millis(300));
        assert_eq!(p.writable_at(w), None);
        assert_eq!(Pipe::default().writable_at(t0), None);
    }

    #[test]
    fn a_black_hole_swallows_everything_silently() {
        let t0 = Instant::now();
        let mut p = Pipe::default();
        p.send(t0, Duration::ZERO, Bytes::from_static(b"a"), vec![]);
        p.blackhole();
        p.send(t0, Duration::ZERO, Bytes::from_static(b"b"), vec![]);
        p.close(t0, Duration::ZERO);
        assert!(p.receive(t0).is_none());
        assert_eq!(p.lost_bytes, 2);
        p.reset(t0);
        assert_eq!(data(p.receive(t0)), Some(b"EOF".to_vec()));
    }
}
