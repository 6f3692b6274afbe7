//! `Value`: any AMQP 1.0 value, for the places the spec types as `*` and for
//! maps, lists and annotations whose contents the router only carries.

use bytes::{BufMut, Bytes, BytesMut};

use super::format as fc;
use super::{
    Array, CompoundWriter, Decimal32, Decimal64, Decimal128, Decode, DecodeError, DecodeResult,
    Decoder, Described, Encode, Map, Str, Symbol, Timestamp, Uuid, encode,
};

/// Any AMQP 1.0 value (AMQP 1.0 §1.6).
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Ubyte(u8),
    Ushort(u16),
    Uint(u32),
    Ulong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Decimal32(Decimal32),
    Decimal64(Decimal64),
    Decimal128(Decimal128),
    Char(char),
    Timestamp(Timestamp),
    Uuid(Uuid),
    Binary(Bytes),
    String(Str),
    Symbol(Symbol),
    List(Vec<Value>),
    Map(Map),
    Array(Array),
    Described(Box<Described>),
}

impl Value {
    /// The text of a string or symbol.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            Value::Symbol(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The value of any unsigned integer type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Ubyte(v) => Some(v.into()),
            Value::Ushort(v) => Some(v.into()),
            Value::Uint(v) => Some(v.into()),
            Value::Ulong(v) => Some(v),
            _ => None,
        }
    }

    /// Whether two values can share one array constructor.
    pub(crate) fn same_array_type(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Described(a), Value::Described(b)) => {
                a.descriptor == b.descriptor && a.value.same_array_type(&b.value)
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    /// Decodes the body of a value whose constructor was `code`.
    fn decode_body_inner(code: u8, d: &mut Decoder) -> DecodeResult<Value> {
        Ok(match code {
            fc::DESCRIBED => d.nested(|d| {
                let descriptor = d.read_descriptor()?;
                let value = Value::decode(d)?;
                Ok(Value::Described(Box::new(Described { descriptor, value })))
            })?,
            fc::NULL => Value::Null,
            fc::BOOLEAN | fc::TRUE | fc::FALSE => Value::Bool(bool::decode_body(code, d)?),
            fc::UBYTE => Value::Ubyte(d.read_u8()?),
            fc::USHORT => Value::Ushort(d.read_u16()?),
            fc::UINT | fc::SMALLUINT | fc::UINT0 => Value::Uint(u32::decode_body(code, d)?),
            fc::ULONG | fc::SMALLULONG | fc::ULONG0 => Value::Ulong(u64::decode_body(code, d)?),
            fc::BYTE => Value::Byte(d.read_u8()? as i8),
            fc::SHORT => Value::Short(d.read_u16()? as i16),
            fc::INT | fc::SMALLINT => Value::Int(i32::decode_body(code, d)?),
            fc::LONG | fc::SMALLLONG => Value::Long(i64::decode_body(code, d)?),
            fc::FLOAT => Value::Float(f32::from_bits(d.read_u32()?)),
            fc::DOUBLE => Value::Double(f64::from_bits(d.read_u64()?)),
            fc::DECIMAL32 => Value::Decimal32(Decimal32(d.read_array()?)),
            fc::DECIMAL64 => Value::Decimal64(Decimal64(d.read_array()?)),
            fc::DECIMAL128 => Value::Decimal128(Decimal128(d.read_array()?)),
            fc::CHAR => Value::Char(char::decode_body(code, d)?),
            fc::TIMESTAMP => Value::Timestamp(Timestamp(d.read_u64()? as i64)),
            fc::UUID => Value::Uuid(Uuid(d.read_array()?)),
            fc::VBIN8 | fc::VBIN32 => Value::Binary(Bytes::decode_body(code, d)?),
            fc::STR8 | fc::STR32 => Value::String(Str::decode_body(code, d)?),
            fc::SYM8 | fc::SYM32 => Value::Symbol(Symbol::decode_body(code, d)?),
            fc::LIST0 | fc::LIST8 | fc::LIST32 => {
                let mut c = d.read_compound(code)?;
                let mut items = Vec::with_capacity(c.count as usize);
                for _ in 0..c.count {
                    items.push(Value::decode(&mut c.body)?);
                }
                c.body.finish()?;
                Value::List(items)
            }
            fc::MAP8 | fc::MAP32 => Value::Map(Map::decode_body(code, d)?),
            fc::ARRAY8 | fc::ARRAY32 => {
                let mut h = d.read_array_header(code)?;
                let mut items = Vec::with_capacity(h.count as usize);
                for _ in 0..h.count {
                    let v = Value::decode_body(h.element_code, &mut h.body)?;
                    items.push(match &h.descriptor {
                        Some(descriptor) => Value::Described(Box::new(Described {
                            descriptor: descriptor.clone(),
                            value: v,
                        })),
                        None => v,
                    });
                }
                h.body.finish()?;
                Value::Array(Array::from_decoded(items))
            }
            other => return Err(DecodeError::InvalidFormatCode(other)),
        })
    }

    /// The format code this value takes as an array element.
    /// `max_len` is the longest variable-width body among the elements.
    fn array_element_code(&self, max_len: Option<usize>) -> u8 {
        match self {
            Value::Null => fc::NULL,
            Value::Bool(_) => fc::BOOLEAN,
            Value::Ubyte(_) => fc::UBYTE,
            Value::Ushort(_) => fc::USHORT,
            Value::Uint(_) => fc::UINT,
            Value::Ulong(_) => fc::ULONG,
            Value::Byte(_) => fc::BYTE,
            Value::Short(_) => fc::SHORT,
            Value::Int(_) => fc::INT,
            Value::Long(_) => fc::LONG,
            Value::Float(_) => fc::FLOAT,
            Value::Double(_) => fc::DOUBLE,
            Value::Decimal32(_) => fc::DECIMAL32,
            Value::Decimal64(_) => fc::DECIMAL64,
            Value::Decimal128(_) => fc::DECIMAL128,
            Value::Char(_) => fc::CHAR,
            Value::Timestamp(_) => fc::TIMESTAMP,
            Value::Uuid(_) => fc::UUID,
            Value::Binary(_) | Value::String(_) | Value::Symbol(_) => {
                let code8 = match self {
                    Value::Binary(_) => fc::VBIN8,
                    Value::String(_) => fc::STR8,
                    _ => fc::SYM8,
                };
                if max_len.unwrap_or(0) <= 255 {
                    code8
                } else {
                    code8 + 0x10
                }
            }
            Value::List(_) => fc::LIST32,
            Value::Map(_) => fc::MAP32,
            Value::Array(_) => fc::ARRAY32,
            Value::Described(_) => fc::DESCRIBED,
        }
    }

    fn variable_len(&self) -> usize {
        match self {
            Value::Binary(b) => b.len(),
            Value::String(s) => s.len(),
            Value::Symbol(s) => s.len(),
            _ => 0,
        }
    }

    /// Writes this value with the constructor `code`, which must be one
    /// [`array_element_code`](Self::array_element_code) gives for it:
    /// compounds take their 32-bit form, variable-width values the width
    /// `code` names.
    fn encode_as(&self, code: u8, buf: &mut BytesMut) {
        match self {
            Value::Binary(_) | Value::String(_) | Value::Symbol(_) => {
                let bytes: &[u8] = match self {
                    Value::Binary(b) => b,
                    Value::String(s) => s.as_bytes(),
                    Value::Symbol(s) => s.as_bytes(),
                    _ => unreachable!("matched above"),
                };
                buf.put_u8(code);
                if code >> 4 == 0xa {
                    buf.put_u8(bytes.len() as u8);
                } else {
                    buf.put_u32(bytes.len() as u32);
                }
                buf.put_slice(bytes);
            }
            Value::List(items) => {
                let w = CompoundWriter::begin(false, buf);
                items.iter().for_each(|i| i.encode(buf));
                w.finish(items.len() as u32, false, buf);
            }
            Value::Map(m) => m.encode_with(false, buf),
            Value::Array(a) => encode_array(a.elements(), false, buf),
            Value::Null => buf.put_u8(fc::NULL),
            Value::Bool(v) => buf.put_slice(&[fc::BOOLEAN, *v as u8]),
            Value::Uint(v) => {
                buf.put_u8(fc::UINT);
                buf.put_u32(*v)
            }
            Value::Ulong(v) => {
                buf.put_u8(fc::ULONG);
                buf.put_u64(*v)
            }
            Value::Int(v) => {
                buf.put_u8(fc::INT);
                buf.put_i32(*v)
            }
            Value::Long(v) => {
                buf.put_u8(fc::LONG);
                buf.put_i64(*v)
            }
            // Every other type has exactly one encoding.
            other => other.encode(buf),
        }
    }
}

/// Writes an array of `elements` (which must share a type). `compact` picks
/// `array8` when it fits.
fn encode_array(elements: &[Value], compact: bool, buf: &mut BytesMut) {
    let start = buf.len();
    buf.put_u8(fc::ARRAY32);
    buf.put_u64(0); // size and count, patched below
    fn inner(e: &Value) -> &Value {
        match e {
            Value::Described(d) => &d.value,
            v => v,
        }
    }
    let max_len = elements.iter().map(|e| inner(e).variable_len()).max();
    let (descriptor, code) = match elements.first() {
        None => (None, fc::NULL),
        Some(Value::Described(d)) => (Some(&d.descriptor), d.value.array_element_code(max_len)),
        Some(first) => (None, first.array_element_code(max_len)),
    };
    if let Some(descriptor) = descriptor {
        buf.put_u8(fc::DESCRIBED);
        descriptor.encode(buf);
    }
    buf.put_u8(code);
    for e in elements {
        let pos = buf.len();
        inner(e).encode_as(code, buf);
        // Drop the per-element constructor: the array's one covers it.
        buf.copy_within(pos + 1.., pos);
        buf.truncate(buf.len() - 1);
    }
    let body_len = buf.len() - start - 9;
    let count = elements.len() as u32;
    if compact && body_len < 255 && count <= 255 {
        buf[start] = fc::ARRAY8;
        buf[start + 1] = (body_len + 1) as u8;
        buf[start + 2] = count as u8;
        buf.copy_within(start + 9.., start + 3);
        buf.truncate(start + 3 + body_len);
    } else {
        buf[start + 1..start + 5].copy_from_slice(&((body_len + 4) as u32).to_be_bytes());
        buf[start + 5..start + 9].copy_from_slice(&count.to_be_bytes());
    }
}

impl Decode for Value {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        Value::decode_body_inner(code, d)
    }
}

impl Encode for Value {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Value::Null => encode::null(buf),
            Value::Bool(v) => encode::boolean(*v, buf),
            Value::Ubyte(v) => buf.put_slice(&[fc::UBYTE, *v]),
            Value::Ushort(v) => {
                buf.put_u8(fc::USHORT);
                buf.put_u16(*v)
            }
            Value::Uint(v) => encode::uint(*v, buf),
            Value::Ulong(v) => encode::ulong(*v, buf),
            Value::Byte(v) => buf.put_slice(&[fc::BYTE, *v as u8]),
            Value::Short(v) => {
                buf.put_u8(fc::SHORT);
                buf.put_i16(*v)
            }
            Value::Int(v) => encode::int(*v, buf),
            Value::Long(v) => encode::long(*v, buf),
            Value::Float(v) => {
                buf.put_u8(fc::FLOAT);
                buf.put_u32(v.to_bits())
            }
            Value::Double(v) => {
                buf.put_u8(fc::DOUBLE);
                buf.put_u64(v.to_bits())
            }
            Value::Decimal32(v) => {
                buf.put_u8(fc::DECIMAL32);
                buf.put_slice(&v.0)
            }
            Value::Decimal64(v) => {
                buf.put_u8(fc::DECIMAL64);
                buf.put_slice(&v.0)
            }
            Value::Decimal128(v) => {
                buf.put_u8(fc::DECIMAL128);
                buf.put_slice(&v.0)
            }
            Value::Char(c) => c.encode(buf),
            Value::Timestamp(t) => t.encode(buf),
            Value::Uuid(u) => u.encode(buf),
            Value::Binary(b) => encode::variable(fc::VBIN8, b, buf),
            Value::String(s) => s.encode(buf),
            Value::Symbol(s) => s.encode(buf),
            Value::List(items) => {
                let w = CompoundWriter::begin(false, buf);
                items.iter().for_each(|i| i.encode(buf));
                w.finish(items.len() as u32, true, buf);
            }
            Value::Map(m) => m.encode(buf),
            Value::Array(a) => encode_array(a.elements(), true, buf),
            Value::Described(d) => {
                buf.put_u8(fc::DESCRIBED);
                d.descriptor.encode(buf);
                d.value.encode(buf);
            }
        }
    }
}
