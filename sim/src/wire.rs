//! One direction of a simulated connection: an ordered byte stream with a
//! latency, that can end (EOF) or fall silent (a black hole: bytes vanish
//! and no EOF comes, as when a network partition hides a TCP peer). A
//! pipe may have a bandwidth: bytes then leave one after the other at that
//! rate (what waits behind a large message waits for it, as in a TCP
//! stream), and a sender whose unsent bytes fill the socket buffer
//! ([`SEND_BUFFER`]) is not given more until they drain.
//!
//! A pipe may also be QUIC-style ([`Pipe::quic`]): each frame travels on
//! its stream (the connection stream, or its session's: [`stream_of`],
//! the rule of `ferry_router::quic::streams`), frames of one stream
//! arrive in order, and a frame may be held up (a lost packet waiting
//! for its retransmission) without holding up the other streams.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_router::quic::is_open;

use crate::rng::SimRng;
use crate::tap::WireEvent;

/// The stream a frame travels on over QUIC, and the stream of one whole
/// unit (a protocol header or a frame): the router's own rule
/// (`ferry_router::quic::dest`).
pub use ferry_router::quic::{Dest as Stream, dest as stream_of};

/// Splits bytes an engine wrote (whole frames) into its units: protocol
/// headers and frames. A trailing partial unit stays one unit.
pub fn units(bytes: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let len = if rest.len() >= 8 && &rest[..4] == b"AMQP" {
            8
        } else if rest.len() >= 8 {
            let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            size.clamp(8, rest.len())
        } else {
            rest.len()
        };
        out.push(bytes.slice(at..at + len));
        at += len;
    }
    out
}

/// The chance, in percent, that a frame on a QUIC-style pipe is held up
/// as if its packet had been lost.
pub const QUIC_LOSS_PERCENT: u64 = 20;

/// The state of a QUIC-style pipe.
#[derive(Debug)]
struct Quic {
    /// Draws which frames are held up, and for how long.
    rng: SimRng,
    /// Each stream's last arrival (frames of a stream keep their order).
    last: BTreeMap<Stream, Instant>,
    /// When the sender's `open` arrives: its session frames wait for it.
    open_at: Option<Instant>,
    /// The latest arrival of anything sent so far (a `close` and the
    /// EOF wait for it).
    latest: Option<Instant>,
}

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
    /// What is in flight: arrival, send order, stream, segment. Ordered
    /// by arrival unless the pipe is QUIC-style.
    queue: VecDeque<(Instant, u64, Stream, Segment)>,
    /// The send order of the next segment.
    seq: u64,
    /// QUIC-style: streams delivered independently.
    quic: Option<Quic>,
    /// Frames (QUIC-style) delivered before a frame of another stream
    /// sent earlier.
    pub overtakes: u64,
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

    /// A QUIC-style pipe: frames sent with [`Pipe::send_frame`] travel on
    /// their streams, each frame held up with the chance
    /// [`QUIC_LOSS_PERCENT`] for one to three latencies (plus up to 2 ms)
    /// as if its packet were lost and sent again, drawn from `rng`.
    pub fn quic(rate: Option<u64>, rng: SimRng) -> Self {
        Self {
            quic: Some(Quic {
                rng,
                last: BTreeMap::new(),
                open_at: None,
                latest: None,
            }),
            ..Self::with_rate(rate)
        }
    }

    /// Whether the pipe is QUIC-style.
    pub fn is_quic(&self) -> bool {
        self.quic.is_some()
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
        self.send_frame(now, latency, Stream::Connection, bytes, events);
    }

    /// Sends one frame (or header) on `stream`: on a QUIC-style pipe it
    /// keeps its order only among the frames of its stream (a session's
    /// frames wait for the `open`, a `close` for everything sent before
    /// it); on any other pipe this is [`Pipe::send`].
    pub fn send_frame(
        &mut self,
        now: Instant,
        latency: Duration,
        stream: Stream,
        bytes: Bytes,
        events: Vec<WireEvent>,
    ) {
        self.sent_bytes += bytes.len() as u64;
        if self.blackholed || self.closed {
            self.lost_bytes += bytes.len() as u64;
            return;
        }
        let sent = self.leaves(now, bytes.len());
        let seq = self.next_seq();
        let Some(q) = self.quic.as_mut() else {
            let at = self.arrival(sent, latency);
            self.queue
                .push_back((at, seq, stream, Segment::Data(bytes, events)));
            return;
        };
        let mut at = sent + latency;
        if q.rng.percent(QUIC_LOSS_PERCENT) {
            let lo = latency.max(Duration::from_micros(100));
            at += q.rng.duration(lo, 3 * lo + Duration::from_millis(2));
        }
        let fifo = match stream {
            Stream::Close => Stream::Connection,
            s => s,
        };
        if let Some(last) = q.last.get(&fifo) {
            at = at.max(*last);
        }
        match stream {
            Stream::Session(_) => {
                if let Some(open) = q.open_at {
                    at = at.max(open);
                }
            }
            Stream::Close => {
                if let Some(latest) = q.latest {
                    at = at.max(latest);
                }
            }
            Stream::Connection => {
                if q.open_at.is_none() && stream_of(&bytes) == Stream::Connection && is_open(&bytes)
                {
                    q.open_at = Some(at);
                }
            }
        }
        q.last.insert(fifo, at);
        q.latest = Some(q.latest.map_or(at, |l| l.max(at)));
        self.queue
            .push_back((at, seq, stream, Segment::Data(bytes, events)));
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// When `len` bytes sent now have left (with a rate).
    fn leaves(&mut self, now: Instant, len: usize) -> Instant {
        match self.rate {
            Some(rate) => {
                let start = self.free_at.map_or(now, |f| f.max(now));
                let took = len as u64 * 1_000_000_000 / rate;
                let done = start + Duration::from_nanos(took);
                self.free_at = Some(done);
                done
            }
            None => now,
        }
    }

    /// Closes the stream: the peer sees EOF after the bytes already sent.
    pub fn close(&mut self, now: Instant, latency: Duration) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.blackholed {
            let mut at = self.arrival(self.free_at.map_or(now, |f| f.max(now)), latency);
            if let Some(latest) = self.quic.as_ref().and_then(|q| q.latest) {
                at = at.max(latest);
            }
            let seq = self.next_seq();
            self.queue
                .push_back((at, seq, Stream::Connection, Segment::Eof));
        }
    }

    /// Resets the stream at once (as a TCP RST): what is in flight is lost
    /// and the peer sees EOF now.
    pub fn reset(&mut self, now: Instant) {
        self.queue.clear();
        self.blackholed = false;
        self.closed = true;
        let seq = self.next_seq();
        self.queue
            .push_back((now, seq, Stream::Connection, Segment::Eof));
    }

    /// Makes the pipe silent: what is in flight and everything sent from
    /// now on is lost, and no EOF will come.
    pub fn blackhole(&mut self) {
        for (_, _, _, s) in self.queue.drain(..) {
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
        if self.quic.is_some() {
            return self.queue.iter().map(|(at, ..)| *at).min();
        }
        self.queue.front().map(|(at, ..)| *at)
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
    ///
    /// On a QUIC-style pipe, the frame that arrived first (the earlier
    /// sent among those that arrived together), with the frames of its
    /// stream that arrived with it and were sent right after it (one read
    /// of one stream).
    pub fn receive(&mut self, now: Instant) -> Option<Segment> {
        if self.quic.is_none() {
            if self.queue.front().is_some_and(|(at, ..)| *at <= now) {
                return self.queue.pop_front().map(|(.., s)| s);
            }
            return None;
        }
        let first = self.next_quic(now)?;
        let (at, seq, stream, seg) = self.queue.remove(first).expect("in the queue");
        self.count_overtake(seq);
        let Segment::Data(mut bytes, mut events) = seg else {
            return Some(seg);
        };
        let fifo = |s: Stream| {
            if s == Stream::Close {
                Stream::Connection
            } else {
                s
            }
        };
        while let Some(next) = self.next_quic(now) {
            let (nat, _, nstream, nseg) = &self.queue[next];
            if *nat != at || fifo(*nstream) != fifo(stream) || matches!(nseg, Segment::Eof) {
                break;
            }
            let (_, nseq, _, nseg) = self.queue.remove(next).expect("in the queue");
            self.count_overtake(nseq);
            if let Segment::Data(b, e) = nseg {
                let mut joined = bytes::BytesMut::from(&bytes[..]);
                joined.extend_from_slice(&b);
                bytes = joined.freeze();
                events.extend(e);
            }
        }
        Some(Segment::Data(bytes, events))
    }

    /// The index of the next segment to deliver on a QUIC-style pipe, if
    /// one has arrived.
    fn next_quic(&self, now: Instant) -> Option<usize> {
        self.queue
            .iter()
            .enumerate()
            .filter(|(_, (at, ..))| *at <= now)
            .min_by_key(|(_, (at, seq, ..))| (*at, *seq))
            .map(|(i, _)| i)
    }

    /// Counts a delivery of the segment sent `seq`th that overtakes one
    /// sent before it.
    fn count_overtake(&mut self, seq: u64) {
        if self.queue.iter().any(|(_, s, ..)| *s < seq) {
            self.overtakes += 1;
        }
    }

    fn arrival(&self, now: Instant, latency: Duration) -> Instant {
        let at = now + latency;
        match self.queue.back() {
            Some((last, ..)) if *last > at => *last,
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

    /// A frame on `channel` whose body starts with performative `code`
    /// and carries `tag` (enough for [`stream_of`]).
    fn frame(channel: u16, code: u8, tag: u16) -> Bytes {
        let [c0, c1] = channel.to_be_bytes();
        let [t0, t1] = tag.to_be_bytes();
        Bytes::from(vec![0, 0, 0, 13, 2, 0, c0, c1, 0x00, 0x53, code, t0, t1])
    }

    fn units_of(s: Option<Segment>) -> Vec<Bytes> {
        match s {
            Some(Segment::Data(b, _)) => units(&b),
            _ => vec![],
        }
    }

    #[test]
    fn streams_are_those_of_the_router() {
        use ferry_proto::definitions::{Begin, Close, Open, Performative};
        let enc = |ch, p: Performative| crate::frames::encode(ch, &p, &[]);
        assert_eq!(stream_of(b"AMQP\x00\x01\x00\x00"), Stream::Connection);
        assert_eq!(
            stream_of(&enc(0, Performative::Open(Box::<Open>::default()))),
            Stream::Connection
        );
        assert_eq!(
            stream_of(&enc(3, Performative::Begin(Begin::default()))),
            Stream::Session(3)
        );
        assert_eq!(
            stream_of(&enc(0, Performative::Close(Close::default()))),
            Stream::Close
        );
        let mut empty = bytes::BytesMut::new();
        ferry_proto::frame::encode_empty_frame(&mut empty);
        assert_eq!(stream_of(&empty), Stream::Connection);
        let two: Bytes = [frame(1, 0x14, 1), frame(2, 0x14, 2)].concat().into();
        assert_eq!(units(&two).len(), 2);
    }

    /// On a QUIC-style pipe frames of different sessions overtake each
    /// other, but never one of their own session; sessions wait for the
    /// `open`, the `close` for everything sent before it, the EOF for all.
    #[test]
    fn a_quic_pipe_reorders_sessions_but_not_a_session() {
        let t0 = Instant::now();
        let mut p = Pipe::quic(None, SimRng::new(7));
        assert!(p.is_quic());
        let lat = Duration::from_millis(2);
        let mut t = t0;
        p.send_frame(
            t,
            lat,
            Stream::Connection,
            Bytes::from_static(b"AMQP\x00\x01\x00\x00"),
            vec![],
        );
        let open = frame(0, 0x10, 0);
        p.send_frame(t, lat, stream_of(&open), open, vec![]);
        for tag in 1..=400u16 {
            t += Duration::from_micros(50);
            let f = frame(1 + tag % 3, 0x14, tag);
            p.send_frame(t, lat, stream_of(&f), f, vec![]);
        }
        let close = frame(0, 0x18, 401);
        assert_eq!(stream_of(&close), Stream::Close);
        p.send_frame(t, lat, Stream::Close, close, vec![]);
        p.close(t, lat);
        let end = t0 + Duration::from_secs(1);
        let mut got = Vec::new();
        let mut eof = false;
        while let Some(s) = p.receive(end) {
            assert!(!eof, "nothing after the EOF");
            if matches!(s, Segment::Eof) {
                eof = true;
            }
            got.extend(units_of(Some(s)));
        }
        assert!(eof);
        assert_eq!(got.len(), 403);
        assert_eq!(&got[0][..4], b"AMQP");
        let tag = |f: &Bytes| u16::from_be_bytes([f[11], f[12]]);
        assert_eq!(tag(&got[1]), 0, "the open first");
        assert_eq!(tag(&got[402]), 401, "the close last");
        let mut last = [0u16; 4];
        let mut overtaken = 0;
        let mut highest = 0;
        for f in &got[2..402] {
            let ch = usize::from(u16::from_be_bytes([f[6], f[7]]));
            assert!(tag(f) > last[ch], "a session's frames in order");
            last[ch] = tag(f);
            if tag(f) < highest {
                overtaken += 1;
            }
            highest = highest.max(tag(f));
        }
        assert!(
            overtaken > 10,
            "sessions overtook each other {overtaken} times"
        );
        assert!(p.overtakes > 0);
    }

    /// Sent at the same time with no hold-up, frames keep their order.
    #[test]
    fn a_plain_pipe_never_reorders() {
        let t0 = Instant::now();
        let mut p = Pipe::default();
        for tag in 1..=50u16 {
            let f = frame(1 + tag % 3, 0x14, tag);
            p.send_frame(t0, Duration::from_millis(1), stream_of(&f), f, vec![]);
        }
        let mut tags = Vec::new();
        while let Some(s) = p.receive(t0 + Duration::from_secs(1)) {
            tags.extend(
                units_of(Some(s))
                    .iter()
                    .map(|f| u16::from_be_bytes([f[11], f[12]])),
            );
        }
        assert_eq!(tags, (1..=50).collect::<Vec<_>>());
        assert_eq!(p.overtakes, 0);
    }
}
