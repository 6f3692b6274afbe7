//! Rewriting the message-annotations section (AMQP 1.0 §3.2.3) of a
//! message in flight, keeping every other byte: what a router does to add
//! its annotations (ingress, trace) without re-encoding the message.

use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{Annotations, MessageView, SectionKind};
use crate::codec::Encode;

/// An encoded message in three parts: the bytes before the
/// message-annotations section, the new section, and the bytes after it.
/// The first and last are slices of the original message (no copy). It is
/// a [`Buf`], with vectored chunks for `writev`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageBytes {
    parts: [Bytes; 3],
}

impl MessageBytes {
    /// The parts, in order: header and delivery-annotations; the
    /// message-annotations section; everything after it.
    pub fn parts(&self) -> &[Bytes; 3] {
        &self.parts
    }

    /// The parts, giving up the value.
    pub fn into_parts(self) -> [Bytes; 3] {
        self.parts
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the message to `buf` (copies).
    pub fn write_to(&self, buf: &mut BytesMut) {
        buf.reserve(self.len());
        self.parts.iter().for_each(|p| buf.put_slice(p));
    }

    /// The message in one contiguous buffer (copies).
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.write_to(&mut buf);
        buf.freeze()
    }
}

impl Buf for MessageBytes {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        self.parts
            .iter()
            .find(|p| !p.is_empty())
            .map_or(&[], |p| p.as_ref())
    }

    /// Panics if `cnt` exceeds [`remaining`](Buf::remaining), as `Buf`
    /// requires.
    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len(), "advance past the end of MessageBytes");
        for p in &mut self.parts {
            let n = cnt.min(p.len());
            p.advance(n);
            cnt -= n;
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for p in self.parts.iter().filter(|p| !p.is_empty()) {
            let Some(slot) = dst.get_mut(n) else { break };
            *slot = IoSlice::new(p);
            n += 1;
        }
        n
    }
}

impl MessageView {
    /// The message with its message-annotations section replaced by
    /// `annotations`, or, if it had none, with one inserted where §3.2
    /// puts it (after header and delivery-annotations). Every other
    /// section keeps its bytes: the parts before and after are slices of
    /// this view's buffer. An empty `annotations` still writes a section
    /// (an empty map).
    pub fn with_message_annotations(&self, annotations: &Annotations) -> MessageBytes {
        // One allocation for typical router annotations; grows if needed.
        let mut scratch = BytesMut::with_capacity(128);
        self.with_message_annotations_in(annotations, &mut scratch)
    }

    /// Like [`with_message_annotations`](Self::with_message_annotations),
    /// encoding the new section in `scratch` (cleared first) and splitting
    /// it off: with a buffer reused across messages (e.g. one per
    /// connection), the rewrite allocates only when the buffer runs out of
    /// room.
    pub fn with_message_annotations_in(
        &self,
        annotations: &Annotations,
        scratch: &mut BytesMut,
    ) -> MessageBytes {
        let (cut, resume) = match self.span(SectionKind::MessageAnnotations) {
            Some(s) => (s.start, s.end),
            None => {
                let before = self
                    .span(SectionKind::DeliveryAnnotations)
                    .or(self.span(SectionKind::Header));
                let at = before.map_or(0, |s| s.end);
                (at, at)
            }
        };
        scratch.clear();
        SectionKind::MessageAnnotations.encode_descriptor(scratch);
        annotations.encode(scratch);
        let section = scratch.split().freeze();
        let bytes = self.bytes();
        MessageBytes {
            parts: [bytes.slice(..cut), section, bytes.slice(resume..)],
        }
    }
}
