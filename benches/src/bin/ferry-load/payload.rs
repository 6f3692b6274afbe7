//! The messages: one `data` section whose first 8 bytes are the intended
//! send time (ns since the Unix epoch), padded to the requested size.

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{SystemTime, UNIX_EPOCH};

/// Smallest body: the timestamp and a sequence number.
pub const MIN_SIZE: usize = 16;

/// Section header of a data section with a 32-bit length (AMQP 1.0 §3.2.6).
const PREFIX: [u8; 4] = [0x00, 0x53, 0x75, 0xb0];

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A message of `size` body bytes stamped with `sent_ns`.
pub fn encode(size: usize, sent_ns: u64, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size + 8);
    b.put_slice(&PREFIX);
    b.put_u32(size as u32);
    b.put_u64(sent_ns);
    b.put_u64(seq);
    b.resize(8 + size, b'x');
    b.freeze()
}

/// The send stamp of a message made by [`encode`], if it is one.
pub fn sent_ns(message: &[u8]) -> Option<u64> {
    if message.len() < 16 || message[..4] != PREFIX {
        return None;
    }
    Some(u64::from_be_bytes(message[8..16].try_into().ok()?))
}
