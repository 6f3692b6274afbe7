//! The messages: one `data` section whose body starts with the send stamp
//! (ns since the Unix epoch) and an id (producer index and sequence number),
//! padded to the requested size.
//!
//! ```text
//! 00 53 75 b0 <len:u32>   data section, vbin32
//! <sent_ns:u64>           send stamp (see `Producer::run` for which time)
//! <id:u64>                producer index << 40 | sequence number
//! 'x' …                   padding up to --size body bytes
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use ferry_proto::message::{Body, Header, Message, MessageView};
use std::time::{SystemTime, UNIX_EPOCH};

/// Smallest body: the timestamp and the id.
pub const MIN_SIZE: usize = 16;

/// Bits of the id that hold the sequence number.
const SEQ_BITS: u32 = 40;

/// Most producers one run can have (the producer index is 24 bits).
pub const MAX_PRODUCERS: usize = 1 << (64 - SEQ_BITS);

/// Section header of a data section with a 32-bit length (AMQP 1.0 §3.2.6).
const PREFIX: [u8; 4] = [0x00, 0x53, 0x75, 0xb0];

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A message of `size` body bytes stamped with `sent_ns`, message `seq` of
/// producer `producer`.
pub fn encode(size: usize, sent_ns: u64, producer: u32, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size + 8);
    b.put_slice(&PREFIX);
    b.put_u32(size as u32);
    b.put_u64(sent_ns);
    b.put_u64((u64::from(producer) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1)));
    b.resize(8 + size, b'x');
    b.freeze()
}

/// The header section of a message of `priority` (AMQP 1.0 §3.2.1), to
/// put before what [`encode`] makes.
pub fn header(priority: u8) -> Bytes {
    Message::new(Body::Empty)
        .with_header(Header {
            priority: Some(priority),
            ..Header::default()
        })
        .encode()
}

/// [`encode`], behind `header` (empty: none).
pub fn encode_with(header: &[u8], size: usize, sent_ns: u64, producer: u32, seq: u64) -> Bytes {
    if header.is_empty() {
        return encode(size, sent_ns, producer, seq);
    }
    let mut b = BytesMut::with_capacity(header.len() + size + 8);
    b.put_slice(header);
    b.put_slice(&encode(size, sent_ns, producer, seq));
    b.freeze()
}

/// The priority in a message's header, if it has a header with one.
pub fn priority(message: &Bytes) -> Option<u8> {
    // Descriptor 0x00 0x53 0x70: the header section, always first.
    if message.get(..3)? != [0x00, 0x53, 0x70] {
        return None;
    }
    MessageView::parse(message.clone())
        .ok()?
        .header()
        .ok()??
        .priority
}

/// What [`decode`] reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub producer: u32,
    pub seq: u64,
}

fn stamp(body: &[u8]) -> Option<Stamp> {
    let sent_ns = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    Some(Stamp {
        sent_ns,
        producer: (id >> SEQ_BITS) as u32,
        seq: id & ((1 << SEQ_BITS) - 1),
    })
}

/// The stamp of a message made by [`encode`]. Fast path: the message is
/// exactly what we sent. Otherwise (an intermediary added a header or
/// annotations, or re-encoded the body as vbin8) the sections are parsed to
/// find the first data section.
pub fn decode(message: &Bytes) -> Option<Stamp> {
    if message.len() >= 24 && message[..4] == PREFIX {
        return stamp(&message[8..]);
    }
    let view = MessageView::parse(message.clone()).ok()?;
    let body = view.body_bytes()?;
    // Descriptor 0x00 0x53 0x75 (data), then vbin8 or vbin32.
    match body.get(..4)? {
        [0x00, 0x53, 0x75, 0xa0] => stamp(body.get(5..)?),
        [0x00, 0x53, 0x75, 0xb0] => stamp(body.get(8..)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::message::{Body, Message};

    #[test]
    fn round_trip() {
        let m = encode(100, 42, 999, 123_456);
        assert_eq!(m.len(), 108);
        let s = decode(&m).unwrap();
        assert_eq!((s.sent_ns, s.producer, s.seq), (42, 999, 123_456));
    }

    #[test]
    fn found_behind_a_header_with_its_priority() {
        let m = encode_with(&header(9), 100, 42, 7, 5);
        let s = decode(&m).unwrap();
        assert_eq!((s.sent_ns, s.producer, s.seq), (42, 7, 5));
        assert_eq!(priority(&m), Some(9));
        assert_eq!(priority(&encode(100, 42, 7, 5)), None);
        assert_eq!(encode_with(&[], 100, 42, 7, 5), encode(100, 42, 7, 5));
    }

    #[test]
    fn found_behind_annotations_and_in_vbin8() {
        let m = encode(16, 7, 3, 9);
        let body = m.slice(8..).to_vec();
        let re = Message::new(Body::data(body))
            .with_message_annotation("x-opt-test", ferry_proto::codec::Value::Uint(1))
            .encode();
        let s = decode(&re).unwrap();
        assert_eq!((s.sent_ns, s.producer, s.seq), (7, 3, 9));
    }
}
