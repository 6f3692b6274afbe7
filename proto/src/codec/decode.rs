//! The decoder: a cursor over a `Bytes` buffer. Check then parse: every read
//! checks the bytes are there first, and every slice it hands out shares the
//! buffer instead of copying it.

use bytes::Bytes;

use super::format::{self as fc, fixed_width, is_defined};
use super::{DecodeError, DecodeResult, Descriptor, Encode, Symbol};

/// The deepest nesting of compound and described values we decode. AMQP sets
/// no limit; without one, a few bytes of nested list headers would exhaust
/// the stack.
pub const MAX_DEPTH: usize = 32;

/// A cursor over an encoded buffer.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    buf: Bytes,
    pos: usize,
    depth: usize,
}

/// The header of a list or map: how many elements, and a decoder over
/// exactly their bytes.
#[derive(Debug)]
pub struct Compound {
    /// Number of elements (for a map: keys plus values).
    pub count: u32,
    /// A decoder over the elements' bytes only.
    pub body: Decoder,
}

/// The header of an array: element count, the shared element constructor and
/// a decoder over the element bodies.
#[derive(Debug)]
pub struct ArrayHeader {
    /// Number of elements.
    pub count: u32,
    /// The descriptor, for an array of described values.
    pub descriptor: Option<Descriptor>,
    /// The format code every element body is encoded with.
    pub element_code: u8,
    /// A decoder over the element bodies.
    pub body: Decoder,
}

impl Decoder {
    /// A decoder over `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Offset of the cursor from the start of the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> Bytes {
        self.buf.slice(self.pos..)
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> DecodeResult<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn need(&self, n: usize) -> DecodeResult<()> {
        if self.remaining() < n {
            Err(DecodeError::Truncated {
                needed: n - self.remaining(),
            })
        } else {
            Ok(())
        }
    }

    /// The next byte, without consuming it.
    pub fn peek_u8(&self) -> DecodeResult<u8> {
        self.need(1)?;
        Ok(self.buf[self.pos])
    }

    /// Reads one byte.
    pub fn read_u8(&mut self) -> DecodeResult<u8> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads `N` bytes into an array.
    pub fn read_array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        self.need(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// Reads a big-endian `u16`.
    pub fn read_u16(&mut self) -> DecodeResult<u16> {
        self.read_array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian `u32`.
    pub fn read_u32(&mut self) -> DecodeResult<u32> {
        self.read_array().map(u32::from_be_bytes)
    }

    /// Reads a big-endian `u64`.
    pub fn read_u64(&mut self) -> DecodeResult<u64> {
        self.read_array().map(u64::from_be_bytes)
    }

    /// Takes the next `n` bytes as a slice of the buffer (no copy).
    pub fn read_bytes(&mut self, n: usize) -> DecodeResult<Bytes> {
        self.need(n)?;
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Skips `n` bytes.
    pub fn advance(&mut self, n: usize) -> DecodeResult<()> {
        self.need(n)?;
        self.pos += n;
        Ok(())
    }

    /// Reads a format code, rejecting codes AMQP does not define.
    pub fn read_format(&mut self) -> DecodeResult<u8> {
        let code = self.read_u8()?;
        if is_defined(code) {
            Ok(code)
        } else {
            Err(DecodeError::InvalidFormatCode(code))
        }
    }

    /// Whether the next value is `null` (without consuming it).
    pub fn next_is_null(&self) -> bool {
        self.peek_u8() == Ok(fc::NULL)
    }

    /// A decoder over the next `len` bytes, one level deeper.
    fn child(&mut self, len: usize) -> DecodeResult<Decoder> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        let buf = self.read_bytes(len)?;
        Ok(Decoder {
            buf,
            pos: 0,
            depth: self.depth + 1,
        })
    }

    /// Runs `f` one nesting level deeper (for described values, whose
    /// descriptors can nest without a compound around them).
    pub(crate) fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> DecodeResult<T>,
    ) -> DecodeResult<T> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep(MAX_DEPTH));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// Reads the size of a variable-width value (binary, string, symbol)
    /// whose format code was `code`, checking the bytes are present.
    pub fn read_variable_len(&mut self, code: u8) -> DecodeResult<usize> {
        let len = match code >> 4 {
            0xa => self.read_u8()? as usize,
            0xb => self.read_u32()? as usize,
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

    /// Reads the header of a list (`list0`, `list8`, `list32`) or map
    /// (`map8`, `map32`) whose format code was `code`.
    pub fn read_compound(&mut self, code: u8) -> DecodeResult<Compound> {
        let (size, count) = match code {
            fc::LIST0 => {
                return Ok(Compound {
                    count: 0,
                    body: self.child(0)?,
                });
            }
            fc::LIST8 | fc::MAP8 => {
                let size = self.read_u8()? as usize;
                self.need(size)?;
                if size < 1 {
                    return Err(DecodeError::InvalidLength("compound8"));
                }
                (size - 1, self.read_u8()? as u32)
            }
            fc::LIST32 | fc::MAP32 => {
                let size = self.read_u32()? as usize;
                self.need(size)?;
                if size < 4 {
                    return Err(DecodeError::InvalidLength("compound32"));
                }
                (size - 4, self.read_u32()?)
            }
            _ => {
                return Err(DecodeError::UnexpectedFormat {
                    expected: "list or map",
                    found: code,
                });
            }
        };
        // Every element takes at least one byte (its constructor): a count
        // past the size is a lie, and would size allocations.
        if count as usize > size {
            return Err(DecodeError::InvalidLength("compound count"));
        }
        if matches!(code, fc::MAP8 | fc::MAP32) && count % 2 != 0 {
            return Err(DecodeError::OddMapCount(count));
        }
        Ok(Compound {
            count,
            body: self.child(size)?,
        })
    }

    /// Reads the header of an array (`array8`, `array32`) whose format code
    /// was `code`, including the shared element constructor.
    pub fn read_array_header(&mut self, code: u8) -> DecodeResult<ArrayHeader> {
        let (size, count) = match code {
            fc::ARRAY8 => {
                let size = self.read_u8()? as usize;
                self.need(size)?;
                if size < 1 {
                    return Err(DecodeError::InvalidLength("array8"));
                }
                (size - 1, self.read_u8()? as u32)
            }
            fc::ARRAY32 => {
                let size = self.read_u32()? as usize;
                self.need(size)?;
                if size < 4 {
                    return Err(DecodeError::InvalidLength("array32"));
                }
                (size - 4, self.read_u32()?)
            }
            _ => {
                return Err(DecodeError::UnexpectedFormat {
                    expected: "array",
                    found: code,
                });
            }
        };
        // Bound the element count by the byte size even for zero-width
        // element types (null, true, uint0, ...): otherwise four bytes could
        // claim four billion elements. Legitimate arrays never come close.
        if count as usize > size {
            return Err(DecodeError::InvalidLength("array count"));
        }
        let mut body = self.child(size)?;
        let mut element_code = body.read_format()?;
        let mut descriptor = None;
        if element_code == fc::DESCRIBED {
            descriptor = Some(body.read_descriptor()?);
            element_code = body.read_format()?;
            if element_code == fc::DESCRIBED {
                return Err(DecodeError::InvalidFormatCode(element_code));
            }
        }
        // Zero-width elements are bounded by the constructor's bytes alone:
        // count those as the encoder writes them (a descriptor can be sent
        // wider than it needs), so whatever decodes re-encodes decodably.
        if fixed_width(element_code) == Some(0) {
            let constructor = 1 + descriptor.as_ref().map_or(0, |d| 1 + d.to_bytes().len());
            if count as usize > constructor {
                return Err(DecodeError::InvalidLength("array count"));
            }
        }
        Ok(ArrayHeader {
            count,
            descriptor,
            element_code,
            body,
        })
    }

    /// Reads a descriptor (after the `0x00` of a described value): a `ulong`
    /// code or a symbol (AMQP 1.0 §1.5).
    pub fn read_descriptor(&mut self) -> DecodeResult<Descriptor> {
        let code = self.read_format()?;
        match code {
            fc::ULONG => Ok(Descriptor::Code(self.read_u64()?)),
            fc::SMALLULONG => Ok(Descriptor::Code(self.read_u8()? as u64)),
            fc::ULONG0 => Ok(Descriptor::Code(0)),
            fc::SYM8 | fc::SYM32 => {
                let len = self.read_variable_len(code)?;
                Ok(Descriptor::Symbol(Symbol::from_utf8(
                    self.read_bytes(len)?,
                )?))
            }
            _ => Err(DecodeError::UnexpectedFormat {
                expected: "descriptor (ulong or symbol)",
                found: code,
            }),
        }
    }

    /// Skips one complete value (constructor and body).
    pub fn skip_value(&mut self) -> DecodeResult<()> {
        let code = self.read_format()?;
        self.skip_body(code)
    }

    /// Skips the body of a value whose format code was `code`.
    pub fn skip_body(&mut self, code: u8) -> DecodeResult<()> {
        if code == fc::DESCRIBED {
            return self.nested(|d| {
                d.skip_value()?; // descriptor
                d.skip_value()
            });
        }
        if let Some(w) = fixed_width(code) {
            return self.advance(w);
        }
        let len = match code >> 4 {
            0xa | 0xc | 0xe => self.read_u8()? as usize,
            0xb | 0xd | 0xf => self.read_u32()? as usize,
            _ => return Err(DecodeError::InvalidFormatCode(code)),
        };
        self.advance(len)
    }

    /// Takes the next complete value as raw encoded bytes (no copy): for
    /// carrying a value through without decoding it.
    pub fn read_raw_value(&mut self) -> DecodeResult<Bytes> {
        let start = self.pos;
        self.skip_value()?;
        Ok(self.buf.slice(start..self.pos))
    }
}
