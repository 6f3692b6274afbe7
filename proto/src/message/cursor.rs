//! A borrowed cursor for the lazy message paths. It makes the same checks
//! as [`Decoder`](crate::codec::Decoder) (AMQP 1.0 §1.6 encodings, sizes
//! within the buffer, nesting bounded by [`MAX_DEPTH`]), but over `&[u8]`:
//! scanning and skipping touch no reference count of the shared buffer,
//! which on the router's hot path costs more than the scanning itself.
//! Offsets are absolute in the buffer it was made from.

use crate::codec::format::{self as fc, fixed_width, is_defined};
use crate::codec::{DecodeError, DecodeResult, MAX_DEPTH, Timestamp};

/// A position in `buf[..end]`.
#[derive(Debug, Clone)]
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf[start..end]`; `start..end` must lie in `buf`.
    #[inline]
    pub fn new(buf: &'a [u8], start: usize, end: usize) -> Self {
        let end = end.min(buf.len());
        Self {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// Offset of the cursor in the buffer.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether the cursor is at its end.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// Fails unless the cursor is at its end.
    #[inline]
    pub fn finish(&self) -> DecodeResult<()> {
        match self.end - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    #[inline(always)]
    fn need(&self, n: usize) -> DecodeResult<()> {
        let remaining = self.end - self.pos;
        if remaining < n {
            Err(DecodeError::Truncated {
                needed: n - remaining,
            })
        } else {
            Ok(())
        }
    }

    /// The next byte, not consumed.
    #[inline(always)]
    pub fn peek_u8(&self) -> DecodeResult<u8> {
        self.need(1)?;
        Ok(self.buf[self.pos])
    }

    /// Reads a byte.
    #[inline(always)]
    pub fn u8(&mut self) -> DecodeResult<u8> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Ok(b)
    }

    /// The next `N` bytes, not consumed; `None` if fewer remain.
    #[inline(always)]
    pub fn peek<const N: usize>(&self) -> Option<[u8; N]> {
        if self.end - self.pos < N {
            return None;
        }
        self.buf.get(self.pos..self.pos + N)?.try_into().ok()
    }

    /// Skips `n` bytes.
    #[inline(always)]
    pub fn advance(&mut self, n: usize) -> DecodeResult<()> {
        self.need(n)?;
        self.pos += n;
        Ok(())
    }

    /// Takes `n` bytes.
    #[inline(always)]
    pub fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        self.need(n)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a big-endian `u32`.
    #[inline(always)]
    pub fn u32(&mut self) -> DecodeResult<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads a big-endian `u64`.
    #[inline(always)]
    pub fn u64(&mut self) -> DecodeResult<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Reads a format code, rejecting undefined ones.
    #[inline(always)]
    pub fn format(&mut self) -> DecodeResult<u8> {
        let code = self.u8()?;
        if is_defined(code) {
            Ok(code)
        } else {
            Err(DecodeError::InvalidFormatCode(code))
        }
    }

    /// Reads the size of a binary, string or symbol with format `code`,
    /// checking the bytes are there.
    #[inline(always)]
    pub fn variable_len(&mut self, code: u8) -> DecodeResult<usize> {
        let len = match code >> 4 {
            0xa => self.u8()? as usize,
            0xb => self.u32()? as usize,
            _ => {
                return Err(DecodeError::UnexpectedFormat {
                    expected: "variable-width value",
                    found: code,
                });
            }
        };
        self.need(len)?;
        Ok(len)
    }

    /// Reads a list header (`list0`, `list8`, `list32`): the element count
    /// and a cursor over exactly the elements, which this one skips.
    #[inline(always)]
    pub fn list(&mut self, code: u8) -> DecodeResult<(u32, Cursor<'a>)> {
        let (size, count) = match code {
            fc::LIST0 => (0, 0),
            fc::LIST8 => {
                let size = self.u8()? as usize;
                self.need(size)?;
                if size < 1 {
                    return Err(DecodeError::InvalidLength("compound8"));
                }
                (size - 1, self.u8()? as u32)
            }
            fc::LIST32 => {
                let size = self.u32()? as usize;
                self.need(size)?;
                if size < 4 {
                    return Err(DecodeError::InvalidLength("compound32"));
                }
                (size - 4, self.u32()?)
            }
            _ => {
                return Err(DecodeError::UnexpectedFormat {
                    expected: "list",
                    found: code,
                });
            }
        };
        if count as usize > size {
            return Err(DecodeError::InvalidLength("compound count"));
        }
        let body = Cursor {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + size,
        };
        self.pos += size;
        Ok((count, body))
    }

    /// Skips one value, constructor included.
    #[inline]
    pub fn skip_value(&mut self) -> DecodeResult<()> {
        let code = self.format()?;
        self.skip_body(code)
    }

    /// Skips the body of a value whose format code was `code`, by its
    /// width or size prefix; described values by their descriptor and
    /// value, at most [`MAX_DEPTH`] deep.
    #[inline(always)]
    pub fn skip_body(&mut self, code: u8) -> DecodeResult<()> {
        if code == fc::DESCRIBED {
            return self.skip_described(0);
        }
        self.skip_plain(code)
    }

    /// Skips a described value's descriptor and value (after its `0x00`).
    #[cold]
    #[inline(never)]
    fn skip_described(&mut self, depth: usize) -> DecodeResult<()> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        for _ in 0..2 {
            match self.format()? {
                fc::DESCRIBED => self.skip_described(depth + 1)?,
                code => self.skip_plain(code)?,
            }
        }
        Ok(())
    }

    /// Skips the body of a value that is not described.
    #[inline(always)]
    fn skip_plain(&mut self, code: u8) -> DecodeResult<()> {
        let len = match fixed_width(code) {
            Some(w) => w,
            None => match code >> 4 {
                0xa | 0xc | 0xe => self.u8()? as usize,
                0xb | 0xd | 0xf => self.u32()? as usize,
                _ => return Err(DecodeError::InvalidFormatCode(code)),
            },
        };
        self.need(len)?;
        self.pos += len;
        Ok(())
    }

    /// Whether the next value is `null`; if so, consumes it.
    #[inline(always)]
    pub fn take_null(&mut self) -> bool {
        let null = self.peek_u8() == Ok(fc::NULL);
        if null {
            self.pos += 1;
        }
        null
    }
}

/// A primitive read straight from a [`Cursor`], with the encodings its
/// [`Decode`](crate::codec::Decode) implementation accepts.
pub(super) trait Primitive: Sized {
    /// Reads one value, constructor first.
    fn read(c: &mut Cursor<'_>) -> DecodeResult<Self>;
}

fn unexpected<T>(expected: &'static str, found: u8) -> DecodeResult<T> {
    Err(DecodeError::UnexpectedFormat { expected, found })
}

impl Primitive for bool {
    #[inline]
    fn read(c: &mut Cursor<'_>) -> DecodeResult<Self> {
        match c.format()? {
            fc::TRUE => Ok(true),
            fc::FALSE => Ok(false),
            fc::BOOLEAN => match c.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(DecodeError::InvalidValue {
                    ty: "boolean",
                    value: v.to_string(),
                }),
            },
            code => unexpected("boolean", code),
        }
    }
}

impl Primitive for u8 {
    #[inline]
    fn read(c: &mut Cursor<'_>) -> DecodeResult<Self> {
        match c.format()? {
            fc::UBYTE => c.u8(),
            code => unexpected("ubyte", code),
        }
    }
}

impl Primitive for u32 {
    #[inline]
    fn read(c: &mut Cursor<'_>) -> DecodeResult<Self> {
        match c.format()? {
            fc::UINT => c.u32(),
            fc::SMALLUINT => Ok(c.u8()?.into()),
            fc::UINT0 => Ok(0),
            code => unexpected("uint", code),
        }
    }
}

impl Primitive for Timestamp {
    #[inline]
    fn read(c: &mut Cursor<'_>) -> DecodeResult<Self> {
        match c.format()? {
            fc::TIMESTAMP => Ok(Timestamp(c.u64()? as i64)),
            code => unexpected("timestamp", code),
        }
    }
}

/// Reads the fields of a composite's list in order, like
/// [`FieldReader`](crate::codec::FieldReader), for fields that are
/// [`Primitive`]s.
pub(super) struct Fields<'a> {
    remaining: u32,
    body: Cursor<'a>,
}

impl<'a> Fields<'a> {
    /// Reads the list header at the cursor.
    #[inline(always)]
    pub fn new(c: &mut Cursor<'a>) -> DecodeResult<Self> {
        let code = c.format()?;
        let (remaining, body) = c.list(code)?;
        Ok(Self { remaining, body })
    }

    /// The next field; `None` if absent or null.
    #[inline(always)]
    pub fn next<T: Primitive>(&mut self) -> DecodeResult<Option<T>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        if self.body.take_null() {
            return Ok(None);
        }
        T::read(&mut self.body).map(Some)
    }

    /// Skips `n` fields; `false` if the list ended first.
    #[inline(always)]
    pub fn skip(&mut self, n: u32) -> DecodeResult<bool> {
        if n > self.remaining {
            return Ok(false);
        }
        for _ in 0..n {
            self.body.skip_value()?;
        }
        self.remaining -= n;
        Ok(true)
    }

    /// A cursor at the next field, if it is present and not null, giving
    /// up the reader.
    #[inline(always)]
    pub fn into_next(mut self) -> Option<Cursor<'a>> {
        (self.remaining > 0 && !self.body.take_null()).then_some(self.body)
    }

    /// Skips the remaining fields and checks the list size matched them.
    #[inline]
    pub fn finish(mut self) -> DecodeResult<()> {
        let n = self.remaining;
        self.skip(n)?;
        self.body.finish()
    }
}
