//! The output buffer: what the connection has to send, in two queues.
//!
//! AMQP 1.0 §2.1 and §2.3: frames of different channels (sessions) may be
//! interleaved on the connection, but the frames of one session must stay
//! in order — transfer ids are sequential within a session (§2.5.6), and a
//! link's attach, flow, transfers and detach must arrive in the order they
//! were sent. So priority is per session, never per link: the frames of a
//! *priority* session ([`Connection::set_priority`](super::Connection::set_priority))
//! go to their own queue, which is handed out ahead of normal output not
//! yet handed out.
//!
//! Normal output is handed out in chunks of whole frames of at most
//! [`CHUNK`] bytes (a larger frame is a chunk of its own), so priority
//! frames queued later wait behind at most one chunk, and never land in
//! the middle of a frame.
//!
//! A priority session's first frames (its begin, and the connection's open
//! before it) may be in normal output when it is marked: priority output
//! waits until the normal output written before the marking has been
//! handed out (the barrier), so nothing of the session overtakes its begin.
//! Connection-level frames (open, close, heartbeats, SASL) are always
//! normal output: a close must not overtake what was queued before it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::definitions::Performative;
use crate::frame;

/// The most normal output handed out at once, unless one frame is larger.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Room for a transfer's performative when deciding, before encoding it,
/// whether its frame still fits the chunk being filled. A frame that turns
/// out larger is moved to the next chunk after encoding (rare).
const PERFORMATIVE_ROOM: usize = 128;

/// Where a frame was written, to rewrite it (a disposition merged with the
/// next one) while nothing else has been written or handed out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    priority: bool,
    offset: usize,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Normal output being filled: the newest frames.
    current: BytesMut,
    /// Normal output sealed into chunks of whole frames, oldest first.
    sealed: VecDeque<Bytes>,
    /// Bytes in `sealed`.
    sealed_len: usize,
    /// Normal bytes handed out so far.
    taken: u64,
    /// Boxed: only a router's connections to its neighbours have priority
    /// sessions.
    priority: Option<Box<Priority>>,
}

/// The priority queue of an [`Output`].
#[derive(Debug, Default)]
struct Priority {
    /// Output of priority sessions.
    out: BytesMut,
    /// Priority output waits until `taken` reaches this.
    barrier: u64,
    /// Local channels of priority sessions (a handful at most).
    channels: Vec<u16>,
}

impl Output {
    /// Bytes waiting, in both queues.
    pub fn len(&self) -> usize {
        self.sealed_len + self.current.len() + self.priority.as_ref().map_or(0, |p| p.out.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives back the room of its empty buffers.
    pub fn trim(&mut self) {
        if self.is_empty() {
            self.current = BytesMut::new();
            self.sealed = VecDeque::new();
            if let Some(p) = &mut self.priority {
                p.out = BytesMut::new();
            }
        }
    }

    /// Normal output for bytes that are not AMQP frames of a session
    /// (protocol headers, SASL frames, heartbeats).
    pub fn raw(&mut self) -> &mut BytesMut {
        &mut self.current
    }

    /// Appends an AMQP frame to the queue its channel belongs to.
    pub fn frame(&mut self, channel: u16, p: &Performative, payload: &[u8]) -> Mark {
        let connection_level = matches!(p, Performative::Open(_) | Performative::Close(_));
        if let Some(prio) = &mut self.priority
            && !connection_level
            && prio.channels.contains(&channel)
        {
            let offset = prio.out.len();
            frame::encode_amqp_frame(channel, p, payload, &mut prio.out);
            return Mark {
                priority: true,
                offset,
            };
        }
        if !self.current.is_empty()
            && self.current.len() + payload.len() + PERFORMATIVE_ROOM > CHUNK
        {
            self.seal();
            // Output is coming in bulk: room for a whole chunk at once,
            // rather than growing (and copying) the buffer step by step.
            self.current
                .reserve(CHUNK.max(payload.len() + PERFORMATIVE_ROOM));
        }
        let start = self.current.len();
        frame::encode_amqp_frame(channel, p, payload, &mut self.current);
        if start > 0 && self.current.len() > CHUNK {
            // Larger than foreseen: the frame starts the next chunk.
            let frame = self.current.split_off(start);
            self.seal();
            self.current = frame;
            return Mark {
                priority: false,
                offset: 0,
            };
        }
        Mark {
            priority: false,
            offset: start,
        }
    }

    /// The bytes written from `mark` on (the size of the frame written
    /// there, right after it was).
    pub fn written_since(&self, mark: Mark) -> usize {
        let buf = match &self.priority {
            Some(p) if mark.priority => &p.out,
            _ => &self.current,
        };
        buf.len() - mark.offset
    }

    /// Removes what was written from `mark` on. Only valid while nothing
    /// else was written or handed out since.
    pub fn rewind(&mut self, mark: Mark) {
        match &mut self.priority {
            Some(p) if mark.priority => p.out.truncate(mark.offset),
            _ => self.current.truncate(mark.offset),
        }
    }

    /// Makes the frames on `channel` priority output from now on.
    pub fn prioritize(&mut self, channel: u16) {
        // Seal, so that the barrier is a chunk boundary.
        self.seal();
        let barrier = self.taken + self.sealed_len as u64;
        let p = self.priority.get_or_insert_default();
        if !p.channels.contains(&channel) {
            p.channels.push(channel);
        }
        p.barrier = barrier;
    }

    /// Frames on `channel` are normal output again (its session is gone).
    pub fn unprioritize(&mut self, channel: u16) {
        if let Some(p) = &mut self.priority {
            p.channels.retain(|c| *c != channel);
        }
    }

    /// Forgets every priority channel (the connection is over).
    pub fn clear_priorities(&mut self) {
        if let Some(p) = &mut self.priority {
            p.channels.clear();
        }
    }

    /// The next bytes to send: priority output first (once past the
    /// barrier), else the oldest chunk of normal output.
    pub fn take(&mut self) -> Option<Bytes> {
        if let Some(p) = &mut self.priority
            && !p.out.is_empty()
            && self.taken >= p.barrier
        {
            return Some(p.out.split().freeze());
        }
        let chunk = match self.sealed.pop_front() {
            Some(c) => {
                self.sealed_len -= c.len();
                c
            }
            None if !self.current.is_empty() => self.current.split().freeze(),
            None => {
                debug_assert!(
                    self.priority.as_ref().is_none_or(|p| p.out.is_empty()),
                    "the barrier is in normal output"
                );
                return None;
            }
        };
        self.taken += chunk.len() as u64;
        Some(chunk)
    }

    fn seal(&mut self) {
        if !self.current.is_empty() {
            let chunk = self.current.split().freeze();
            self.sealed_len += chunk.len();
            self.sealed.push_back(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{Attach, Flow, Handle, Transfer};
    use crate::frame::{Frame, Layer};

    fn transfer() -> Performative {
        Performative::Transfer(Transfer {
            handle: Handle(0),
            ..Transfer::default()
        })
    }

    /// The frames in `chunk`; panics unless it is whole frames.
    fn count_frames(chunk: &[u8]) -> usize {
        let mut buf = BytesMut::from(chunk);
        let mut n = 0;
        while !buf.is_empty() {
            match frame::decode_frame(&mut buf, u32::MAX, Layer::Amqp) {
                Ok(Some(Frame::Amqp { .. })) => n += 1,
                other => panic!("not a whole frame: {other:?}"),
            }
        }
        n
    }

    #[test]
    fn a_frame_larger_than_foreseen_starts_the_next_chunk() {
        let mut out = Output::default();
        out.frame(1, &transfer(), &vec![0; CHUNK - 200]);
        // No payload, but a performative far larger than the room kept for
        // one: it does not fit the first chunk.
        let attach = Performative::Attach(Box::new(Attach {
            name: "x".repeat(1000).as_str().into(),
            ..Attach::default()
        }));
        out.frame(1, &attach, &[]);
        let flow = out.frame(1, &Performative::Flow(Flow::default()), &[]);
        out.rewind(flow);
        let first = out.take().unwrap();
        assert!(first.len() <= CHUNK);
        assert_eq!(count_frames(&first), 1);
        let second = out.take().unwrap();
        assert_eq!(count_frames(&second), 1, "the flow was rewound");
        assert!(out.take().is_none());
        assert!(out.is_empty());
    }

    #[test]
    fn priority_waits_for_the_barrier_then_overtakes() {
        let mut out = Output::default();
        let half = vec![0; CHUNK / 2 - 200];
        for _ in 0..4 {
            out.frame(0, &transfer(), &half);
        }
        out.frame(1, &Performative::Flow(Flow::default()), &[]); // its begin, say
        out.prioritize(1);
        out.frame(0, &transfer(), &half);
        out.frame(1, &transfer(), b"control");
        let total = out.len();
        let mut sizes = Vec::new();
        while let Some(c) = out.take() {
            sizes.push(c.len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), total);
        // Two chunks of two data frames (the second with the session's
        // first frame), then the priority frame before the last data.
        assert_eq!(sizes.len(), 4, "{sizes:?}");
        assert!(sizes[..2].iter().all(|s| *s > CHUNK - 500 && *s <= CHUNK));
        assert!(sizes[2] < 100, "{sizes:?}");
        assert!(sizes[3] > CHUNK / 4, "{sizes:?}");
    }
}
