//! The encoder side: helpers that write the smallest valid encoding of each
//! primitive (AMQP 1.0 §1.6) and a writer for lists and maps whose size is
//! back-patched once the elements are written.

use bytes::{BufMut, BytesMut};

use super::format as fc;

/// A value that can be written in AMQP 1.0 encoding.
pub trait Encode {
    /// Appends the value's encoding (constructor and body) to `buf`.
    fn encode(&self, buf: &mut BytesMut);

    /// The encoding in a fresh buffer.
    fn to_bytes(&self) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// Writes `null`.
pub fn null(buf: &mut BytesMut) {
    buf.put_u8(fc::NULL);
}

/// Writes a boolean in its one-byte form.
pub fn boolean(v: bool, buf: &mut BytesMut) {
    buf.put_u8(if v { fc::TRUE } else { fc::FALSE });
}

/// Writes a `uint` in its smallest form.
pub fn uint(v: u32, buf: &mut BytesMut) {
    match v {
        0 => buf.put_u8(fc::UINT0),
        1..=255 => buf.put_slice(&[fc::SMALLUINT, v as u8]),
        _ => {
            buf.put_u8(fc::UINT);
            buf.put_u32(v);
        }
    }
}

/// Writes a `ulong` in its smallest form.
pub fn ulong(v: u64, buf: &mut BytesMut) {
    match v {
        0 => buf.put_u8(fc::ULONG0),
        1..=255 => buf.put_slice(&[fc::SMALLULONG, v as u8]),
        _ => {
            buf.put_u8(fc::ULONG);
            buf.put_u64(v);
        }
    }
}

/// Writes an `int` in its smallest form.
pub fn int(v: i32, buf: &mut BytesMut) {
    if let Ok(small) = i8::try_from(v) {
        buf.put_slice(&[fc::SMALLINT, small as u8]);
    } else {
        buf.put_u8(fc::INT);
        buf.put_i32(v);
    }
}

/// Writes a `long` in its smallest form.
pub fn long(v: i64, buf: &mut BytesMut) {
    if let Ok(small) = i8::try_from(v) {
        buf.put_slice(&[fc::SMALLLONG, small as u8]);
    } else {
        buf.put_u8(fc::LONG);
        buf.put_i64(v);
    }
}

/// Writes a variable-width value (binary, string or symbol) with the 8- or
/// 32-bit size form as its length requires. `code8` is the short form's
/// format code; the long form's is `code8 + 0x10`.
pub fn variable(code8: u8, bytes: &[u8], buf: &mut BytesMut) {
    if let Ok(len) = u8::try_from(bytes.len()) {
        buf.put_slice(&[code8, len]);
    } else {
        buf.put_u8(code8 + 0x10);
        buf.put_u32(bytes.len() as u32);
    }
    buf.put_slice(bytes);
}

/// Writes the constructor of a described type with a numeric descriptor.
pub fn descriptor_code(code: u64, buf: &mut BytesMut) {
    buf.put_u8(fc::DESCRIBED);
    ulong(code, buf);
}

/// Writes a list or map: call [`begin`](Self::begin), write the elements,
/// then [`finish`](Self::finish) with their count. The header is written in
/// the 32-bit form and shrunk to the 8-bit (or `list0`) form when it fits.
#[derive(Debug)]
#[must_use = "a compound must be finished"]
pub struct CompoundWriter {
    start: usize,
    map: bool,
}

impl CompoundWriter {
    /// Starts a list (`map == false`) or map.
    pub fn begin(map: bool, buf: &mut BytesMut) -> Self {
        let start = buf.len();
        buf.put_u8(if map { fc::MAP32 } else { fc::LIST32 });
        buf.put_u64(0); // size and count, patched in finish
        Self { start, map }
    }

    /// Completes the value, given the number of elements written (for a
    /// map, keys plus values). `compact` allows the shorter headers; arrays
    /// of lists and maps need the 32-bit form throughout.
    pub fn finish(self, count: u32, compact: bool, buf: &mut BytesMut) {
        let body_start = self.start + 9;
        let body_len = buf.len() - body_start;
        if compact && count == 0 && !self.map {
            buf.truncate(self.start);
            buf.put_u8(fc::LIST0);
        } else if compact && body_len < 255 && count <= 255 {
            buf[self.start] = if self.map { fc::MAP8 } else { fc::LIST8 };
            buf[self.start + 1] = (body_len + 1) as u8;
            buf[self.start + 2] = count as u8;
            buf.copy_within(body_start.., self.start + 3);
            buf.truncate(self.start + 3 + body_len);
        } else {
            let size = (body_len + 4) as u32;
            buf[self.start + 1..self.start + 5].copy_from_slice(&size.to_be_bytes());
            buf[self.start + 5..self.start + 9].copy_from_slice(&count.to_be_bytes());
        }
    }

    /// Where this compound's encoding starts in the buffer.
    pub fn start(&self) -> usize {
        self.start
    }
}
