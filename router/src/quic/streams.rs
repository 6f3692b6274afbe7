//! AMQP over QUIC streams: each AMQP session on a unidirectional stream
//! of its own, so that a lost packet or a large message holds back only
//! its session's frames, never another session's.
//!
//! Each side opens its streams and writes whole AMQP frames on them:
//! - the *connection stream*, opened first (so the peer accepts it
//!   first): the protocol headers, SASL frames, `open`, `close` and the
//!   empty frames of the idle timeout (AMQP 1.0 §2.4.5);
//! - one *session stream* per channel, opened when the channel's first
//!   frame (its `begin`) is written, carrying every frame of that channel
//!   for the connection's life.
//!
//! Frames keep AMQP's order within a session (§2.5: transfer and
//! disposition ids are per session), which is all AMQP needs, with two
//! exceptions across streams that the reader restores: a session's frames
//! are handed to the engine only after the peer's `open`, and the peer's
//! `close` only after every session stream the peer finished before it
//! (the writer finishes its session streams, and waits for the peer to
//! acknowledge them, before it writes `close`), so no disposition sent
//! before a close is lost to it.
//!
//! Towards the connection task this looks like a byte stream of whole
//! frames, read and written without waiting ([`Streams::read`],
//! [`Streams::try_write`]): frames from different streams interleave at
//! frame boundaries. Writing takes everything at once: what waits for
//! quinn is bounded per session by the AMQP session window (see
//! `driver::endpoint`, `QUIC_SESSION_WINDOW`), not here, so that a
//! session's backlog holds back no other session.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::transport::ReadOutcome;

/// quinn serves streams of a higher priority first: the connection's own
/// frames (and so its keep-alives) before any session's.
const CONNECTION_PRIORITY: i32 = 1;

/// Received frames queued for the connection task beyond which the
/// readers stop reading (QUIC's flow control then holds the peer back).
const INBOUND_MAX: usize = 1 << 20;

/// Bytes handed to the connection task per read at most.
const READ_BUDGET: usize = 256 * 1024;

/// Bytes asked of quinn per read of a stream.
const CHUNK: usize = 64 * 1024;

/// How long a close waits for the session streams to be acknowledged
/// (writing) or finished (reading).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// AMQP performative descriptor codes (AMQP 1.0 §2.7).
const OPEN: u64 = 0x10;
const CLOSE: u64 = 0x18;

/// One AMQP connection over a QUIC connection.
pub struct Streams {
    conn: quinn::Connection,
    local: SocketAddr,
    inbound: Arc<Inbound>,
    /// The connection stream's writer; `None` once closed.
    connection: Option<Writer>,
    /// A session stream's writer per channel.
    sessions: HashMap<u16, Writer>,
    /// Bytes written that do not yet make a whole frame.
    partial: BytesMut,
    /// The acceptor and readers, aborted when the connection is dropped.
    readers: JoinHandle<()>,
}

struct Writer {
    tx: mpsc::UnboundedSender<Bytes>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("peer", &self.conn.remote_address())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// Frames received, for the connection task.
#[derive(Default)]
struct Inbound {
    state: Mutex<InState>,
    /// Room for more.
    space: Notify,
}

#[derive(Default)]
struct InState {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// The connection stream ended (or the connection did).
    ended: bool,
    /// The connection task, waiting for something to read or the end.
    reader: Option<Waker>,
}

impl InState {
    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

impl Inbound {
    /// Queues `chunk` (whole frames), waiting while the queue is full.
    async fn push(&self, chunk: Bytes) {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut s = self.state.lock().expect("inbound lock");
                if s.bytes < INBOUND_MAX || s.queue.is_empty() {
                    s.bytes += chunk.len();
                    s.queue.push_back(chunk);
                    s.wake_reader();
                    return;
                }
            }
            space.await;
        }
    }

    fn end(&self) {
        let mut s = self.state.lock().expect("inbound lock");
        s.ended = true;
        s.wake_reader();
    }
}

impl Streams {
    /// Takes over `conn` (handshake done; `local`: our address): opens
    /// our connection stream and starts reading the peer's streams.
    /// `max_frame`: the largest frame accepted (our `max-frame-size`);
    /// a larger one is handed on by its header alone, for the engine to
    /// refuse.
    ///
    /// # Errors
    ///
    /// The connection is already gone.
    pub async fn new(
        conn: quinn::Connection,
        local: SocketAddr,
        max_frame: usize,
    ) -> io::Result<Self> {
        let send = conn.open_uni().await.map_err(io::Error::other)?;
        let _ = send.set_priority(CONNECTION_PRIORITY);
        let connection = Writer::spawn(Ok(send));
        let inbound = Arc::new(Inbound::default());
        let readers = tokio::spawn(accept_streams(conn.clone(), inbound.clone(), max_frame));
        Ok(Self {
            conn,
            local,
            inbound,
            connection: Some(connection),
            sessions: HashMap::new(),
            partial: BytesMut::new(),
            readers,
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Ready when there is something to read, or the end (polled, so
    /// that waiting holds no future).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.inbound.state.lock().expect("inbound lock");
        if !s.queue.is_empty() || s.ended {
            return Poll::Ready(());
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Hands what was received to `sink`, in order, without waiting.
    pub fn read(&mut self, sink: &mut impl FnMut(&[u8])) -> ReadOutcome {
        let (chunks, ended) = {
            let mut s = self.inbound.state.lock().expect("inbound lock");
            let mut chunks = Vec::new();
            let mut taken = 0;
            while taken < READ_BUDGET
                && let Some(chunk) = s.queue.pop_front()
            {
                taken += chunk.len();
                chunks.push(chunk);
            }
            s.bytes -= taken;
            (chunks, s.ended && s.queue.is_empty())
        };
        if !chunks.is_empty() {
            self.inbound.space.notify_waiters();
        }
        for chunk in &chunks {
            sink(chunk);
        }
        if ended {
            ReadOutcome::Eof
        } else {
            ReadOutcome::Open
        }
    }

    /// Takes all of `data` (frames as the engine wrote them; a frame cut
    /// at the end is kept until the rest comes) onto the streams, without
    /// copying whole frames.
    pub fn write(&mut self, data: Bytes) {
        let data = if self.partial.is_empty() {
            data
        } else {
            self.partial.extend_from_slice(&data);
            self.partial.split().freeze()
        };
        let mut at = 0;
        let mut run: Option<(Dest, usize)> = None;
        while let Unit::Whole(len) = unit(&data[at..], usize::MAX) {
            let dest = dest(&data[at..at + len]);
            match run {
                Some((d, _)) if d == dest => {}
                Some((d, start)) => {
                    self.send(d, data.slice(start..at));
                    run = Some((dest, at));
                }
                None => run = Some((dest, at)),
            }
            at += len;
        }
        if let Some((d, start)) = run {
            self.send(d, data.slice(start..at));
        }
        self.partial.extend_from_slice(&data[at..]);
    }

    /// Queues `chunk` (whole frames) for `dest`.
    fn send(&mut self, dest: Dest, chunk: Bytes) {
        let writer = match dest {
            Dest::Connection => self.connection.as_ref(),
            Dest::Close => {
                self.close_with(chunk);
                return;
            }
            Dest::Session(channel) => {
                let conn = &self.conn;
                Some(
                    self.sessions
                        .entry(channel)
                        .or_insert_with(|| Writer::spawn(Err(conn.clone())))
                        as &Writer,
                )
            }
        };
        if let Some(writer) = writer {
            let _ = writer.tx.send(chunk);
        }
    }

    /// Writes the AMQP `close` after the session streams: they are
    /// finished, and the close waits (bounded) until the peer has
    /// acknowledged them.
    fn close_with(&mut self, close: Bytes) {
        let Some(connection) = self.connection.as_ref() else {
            return;
        };
        let tx = connection.tx.clone();
        let sessions: Vec<JoinHandle<()>> = self.sessions.drain().map(|(_, w)| w.task).collect();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                for task in sessions {
                    let _ = task.await;
                }
            })
            .await;
            let _ = tx.send(close);
        });
    }

    /// Ends our side: every stream finished and acknowledged (bounded by
    /// the caller), then the QUIC connection closed.
    pub async fn shutdown(&mut self) {
        let mut tasks: Vec<JoinHandle<()>> = self.sessions.drain().map(|(_, w)| w.task).collect();
        if let Some(connection) = self.connection.take() {
            tasks.push(connection.task);
        }
        for task in tasks {
            let _ = task.await;
        }
        self.conn.close(0u32.into(), b"closed");
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.readers.abort();
        for w in self.sessions.values().chain(&self.connection) {
            w.task.abort();
        }
        self.conn.close(0u32.into(), b"closed");
    }
}

impl Writer {
    /// A writer task on `send`, or on a stream it opens on `conn`.
    fn spawn(send: Result<quinn::SendStream, quinn::Connection>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let task = tokio::spawn(async move {
            let send = match send {
                Ok(send) => Ok(send),
                Err(conn) => conn.open_uni().await,
            };
            let Ok(mut send) = send else {
                return;
            };
            let mut failed = false;
            while let Some(chunk) = rx.recv().await {
                if send.write_chunk(chunk).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if !failed && send.finish().is_ok() {
                // Acknowledged (or the peer stopped reading, or the
                // connection is gone): what the close waits for.
                let _ = send.stopped().await;
            }
        });
        Self { tx, task }
    }
}

/// Where a frame goes (the simulator's QUIC-style links use the same
/// rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    /// The connection stream.
    Connection,
    /// The connection stream, after the session streams.
    Close,
    /// The session stream of a channel.
    Session(u16),
}

/// The next unit of a byte stream of AMQP frames.
#[derive(Debug, PartialEq, Eq)]
enum Unit {
    /// A protocol header (8 bytes) or a whole frame of this length.
    Whole(usize),
    /// More bytes are needed.
    Incomplete,
    /// A frame whose size is below 8 bytes or above the bound.
    Bad,
}

/// The unit at the start of `buf`, frames of at most `max` bytes.
fn unit(buf: &[u8], max: usize) -> Unit {
    if buf.len() < 8 {
        return Unit::Incomplete;
    }
    if &buf[..4] == b"AMQP" {
        return Unit::Whole(8);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if size < 8 || size > max {
        Unit::Bad
    } else if buf.len() < size {
        Unit::Incomplete
    } else {
        Unit::Whole(size)
    }
}

/// Whether `buf` is whole frames of at most `max` bytes, and nothing else.
fn whole_frames(buf: &[u8], max: usize) -> bool {
    let mut at = 0;
    while at < buf.len() {
        match unit(&buf[at..], max) {
            Unit::Whole(len) => at += len,
            _ => return false,
        }
    }
    true
}

/// Where the whole unit `frame` goes (§2.3: size, doff, type, channel).
pub fn dest(frame: &[u8]) -> Dest {
    if frame.len() < 8 || &frame[..4] == b"AMQP" || frame[5] != 0 {
        return Dest::Connection; // protocol header or SASL frame
    }
    let channel = u16::from_be_bytes([frame[6], frame[7]]);
    let body = frame.get(usize::from(frame[4]) * 4..).unwrap_or_default();
    match performative(body) {
        None | Some(OPEN) => Dest::Connection, // empty: a keep-alive
        Some(CLOSE) => Dest::Close,
        Some(_) => Dest::Session(channel),
    }
}

/// Whether the whole unit `frame` is an AMQP `open`.
pub fn is_open(frame: &[u8]) -> bool {
    frame.len() > 8
        && &frame[..4] != b"AMQP"
        && frame[5] == 0
        && performative(frame.get(usize::from(frame[4]) * 4..).unwrap_or_default()) == Some(OPEN)
}

/// The descriptor code of a frame body's performative (§1.5: `0x00`
/// then a `smallulong` or `ulong`); `None` for an empty body. A body
/// that does not start so is given a code no performative has.
fn performative(body: &[u8]) -> Option<u64> {
    match body {
        [] => None,
        [0x00, 0x53, code, ..] => Some(u64::from(*code)),
        [0x00, 0x80, rest @ ..] if rest.len() >= 8 => Some(u64::from_be_bytes(
            rest[..8].try_into().expect("eight bytes"),
        )),
        _ => Some(u64::MAX),
    }
}

/// Accepts the peer's streams: the first is its connection stream, the
/// rest its session streams.
async fn accept_streams(conn: quinn::Connection, inbound: Arc<Inbound>, max_frame: usize) {
    let (opened, opened_rx) = watch::channel(false);
    let (active, active_rx) = watch::channel(0usize);
    let active = Arc::new(active);
    let mut readers = tokio::task::JoinSet::new();
    let Ok(first) = conn.accept_uni().await else {
        inbound.end();
        return;
    };
    {
        let inbound = inbound.clone();
        readers.spawn(async move {
            read_connection_stream(first, &inbound, max_frame, opened, active_rx).await;
            inbound.end();
        });
    }
    loop {
        tokio::select! {
            accepted = conn.accept_uni() => match accepted {
                Ok(recv) => {
                    active.send_modify(|n| *n += 1);
                    let (inbound, mut opened, active) =
                        (inbound.clone(), opened_rx.clone(), active.clone());
                    readers.spawn(async move {
                        let _ = opened.wait_for(|o| *o).await;
                        if !read_session_stream(recv, &inbound, max_frame).await {
                            inbound.end();
                        }
                        active.send_modify(|n| *n -= 1);
                    });
                }
                Err(_) => break,
            },
            Some(_) = readers.join_next() => {}
        }
    }
    inbound.end();
    while readers.join_next().await.is_some() {}
}

/// Reads the peer's connection stream frame by frame: its `open` lets
/// the session streams through; its `close` waits for them to finish.
async fn read_connection_stream(
    mut recv: quinn::RecvStream,
    inbound: &Inbound,
    max_frame: usize,
    opened: watch::Sender<bool>,
    mut active: watch::Receiver<usize>,
) {
    let mut buf = BytesMut::new();
    loop {
        loop {
            match unit(&buf, max_frame) {
                Unit::Whole(len) => {
                    let frame = buf.split_to(len).freeze();
                    match dest(&frame) {
                        Dest::Close => {
                            let _ = tokio::time::timeout(CLOSE_WAIT, active.wait_for(|n| *n == 0))
                                .await;
                            inbound.push(frame).await;
                        }
                        _ => {
                            let open = is_open(&frame);
                            inbound.push(frame).await;
                            if open {
                                opened.send_replace(true);
                            }
                        }
                    }
                }
                Unit::Incomplete => break,
                Unit::Bad => {
                    // The header alone: the engine refuses the frame
                    // with the AMQP error.
                    inbound.push(buf.split_to(8).freeze()).await;
                    return;
                }
            }
        }
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Reads a session stream, handing on whole frames as they come; returns
/// whether it ended cleanly (finished by the peer).
async fn read_session_stream(
    mut recv: quinn::RecvStream,
    inbound: &Inbound,
    max_frame: usize,
) -> bool {
    let mut buf = BytesMut::new();
    loop {
        let mut whole = 0;
        let bad = loop {
            match unit(&buf[whole..], max_frame) {
                Unit::Whole(len) => whole += len,
                Unit::Incomplete => break false,
                Unit::Bad => break true,
            }
        };
        if bad {
            inbound.push(buf.split_to(whole + 8).freeze()).await;
            return false;
        }
        if whole > 0 {
            inbound.push(buf.split_to(whole).freeze()).await;
        }
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => {
                // Whole frames as they came need no copy.
                if buf.is_empty() && whole_frames(&chunk.bytes, max_frame) {
                    inbound.push(chunk.bytes).await;
                } else {
                    buf.extend_from_slice(&chunk.bytes);
                }
            }
            Ok(None) => return buf.is_empty(),
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(channel: u16, body: &[u8]) -> Vec<u8> {
        let mut f = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend([2, 0]);
        f.extend(channel.to_be_bytes());
        f.extend(body);
        f
    }

    #[test]
    fn frames_go_to_the_connection_stream_or_their_sessions() {
        assert_eq!(dest(b"AMQP\x00\x01\x00\x00"), Dest::Connection);
        assert_eq!(dest(&frame(0, &[])), Dest::Connection, "keep-alive");
        assert_eq!(dest(&frame(0, &[0, 0x53, 0x10, 0x45])), Dest::Connection);
        assert_eq!(dest(&frame(0, &[0, 0x53, 0x18, 0x45])), Dest::Close);
        assert_eq!(dest(&frame(0, &[0, 0x53, 0x11, 0x45])), Dest::Session(0));
        assert_eq!(dest(&frame(7, &[0, 0x53, 0x14, 0x45])), Dest::Session(7));
        let ulong = [0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x18, 0x45];
        assert_eq!(dest(&frame(3, &ulong)), Dest::Close);
        let mut sasl = frame(0, &[0, 0x53, 0x41]);
        sasl[5] = 1;
        assert_eq!(dest(&sasl), Dest::Connection);
    }

    #[test]
    fn units_are_whole_frames_bounded_in_size() {
        let f = frame(1, &[0, 0x53, 0x14, 0x45]);
        assert_eq!(unit(&f, 64), Unit::Whole(f.len()));
        assert_eq!(unit(&f[..9], 64), Unit::Incomplete);
        assert_eq!(unit(&f, 8), Unit::Bad);
        assert_eq!(unit(&[0, 0, 0, 4, 2, 0, 0, 0], 64), Unit::Bad);
        assert_eq!(unit(b"AMQP\x03\x01\x00\x00rest", 64), Unit::Whole(8));
    }
}
