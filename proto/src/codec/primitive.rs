//! `Decode` and `Encode` for the primitive types and the small wrappers of
//! `types` (AMQP 1.0 §1.6). Each decoder accepts every encoding the spec
//! allows for its type (e.g. `uint0`, `smalluint` and `uint` for `u32`).

use bytes::{BufMut, Bytes, BytesMut};

use super::format as fc;
use super::{
    CompoundWriter, Decimal32, Decimal64, Decimal128, Decode, DecodeError, DecodeResult, Decoder,
    Descriptor, Encode, Fields, Map, Str, Symbol, Symbols, Timestamp, Uuid, Value, encode,
};

fn unexpected<T>(expected: &'static str, found: u8) -> DecodeResult<T> {
    Err(DecodeError::UnexpectedFormat { expected, found })
}

impl Decode for bool {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::TRUE => Ok(true),
            fc::FALSE => Ok(false),
            fc::BOOLEAN => match d.read_u8()? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(DecodeError::InvalidValue {
                    ty: "boolean",
                    value: v.to_string(),
                }),
            },
            _ => unexpected("boolean", code),
        }
    }
}
impl Encode for bool {
    fn encode(&self, buf: &mut BytesMut) {
        encode::boolean(*self, buf)
    }
}

macro_rules! fixed {
    ($t:ty, $name:literal, $code:path, $read:ident, $put:ident) => {
        impl Decode for $t {
            fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
                match code {
                    $code => Ok(d.$read()? as $t),
                    _ => unexpected($name, code),
                }
            }
        }
        impl Encode for $t {
            fn encode(&self, buf: &mut BytesMut) {
                buf.put_u8($code);
                buf.$put(*self);
            }
        }
    };
}
fixed!(u8, "ubyte", fc::UBYTE, read_u8, put_u8);
fixed!(u16, "ushort", fc::USHORT, read_u16, put_u16);
fixed!(i16, "short", fc::SHORT, read_u16, put_i16);

impl Decode for i8 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::BYTE => Ok(d.read_u8()? as i8),
            _ => unexpected("byte", code),
        }
    }
}
impl Encode for i8 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&[fc::BYTE, *self as u8]);
    }
}

impl Decode for u32 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::UINT => d.read_u32(),
            fc::SMALLUINT => Ok(d.read_u8()?.into()),
            fc::UINT0 => Ok(0),
            _ => unexpected("uint", code),
        }
    }
}
impl Encode for u32 {
    fn encode(&self, buf: &mut BytesMut) {
        encode::uint(*self, buf)
    }
}

impl Decode for u64 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::ULONG => d.read_u64(),
            fc::SMALLULONG => Ok(d.read_u8()?.into()),
            fc::ULONG0 => Ok(0),
            _ => unexpected("ulong", code),
        }
    }
}
impl Encode for u64 {
    fn encode(&self, buf: &mut BytesMut) {
        encode::ulong(*self, buf)
    }
}

impl Decode for i32 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::INT => Ok(d.read_u32()? as i32),
            fc::SMALLINT => Ok((d.read_u8()? as i8).into()),
            _ => unexpected("int", code),
        }
    }
}
impl Encode for i32 {
    fn encode(&self, buf: &mut BytesMut) {
        encode::int(*self, buf)
    }
}

impl Decode for i64 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::LONG => Ok(d.read_u64()? as i64),
            fc::SMALLLONG => Ok((d.read_u8()? as i8).into()),
            _ => unexpected("long", code),
        }
    }
}
impl Encode for i64 {
    fn encode(&self, buf: &mut BytesMut) {
        encode::long(*self, buf)
    }
}

impl Decode for f32 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::FLOAT => Ok(f32::from_bits(d.read_u32()?)),
            _ => unexpected("float", code),
        }
    }
}
impl Encode for f32 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(fc::FLOAT);
        buf.put_u32(self.to_bits());
    }
}

impl Decode for f64 {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::DOUBLE => Ok(f64::from_bits(d.read_u64()?)),
            _ => unexpected("double", code),
        }
    }
}
impl Encode for f64 {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(fc::DOUBLE);
        buf.put_u64(self.to_bits());
    }
}

impl Decode for char {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::CHAR => {
                let v = d.read_u32()?;
                char::from_u32(v).ok_or(DecodeError::InvalidChar(v))
            }
            _ => unexpected("char", code),
        }
    }
}
impl Encode for char {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(fc::CHAR);
        buf.put_u32(*self as u32);
    }
}

impl Decode for Timestamp {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::TIMESTAMP => Ok(Timestamp(d.read_u64()? as i64)),
            _ => unexpected("timestamp", code),
        }
    }
}
impl Encode for Timestamp {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(fc::TIMESTAMP);
        buf.put_i64(self.0);
    }
}

impl Decode for Uuid {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::UUID => Ok(Uuid(d.read_array()?)),
            _ => unexpected("uuid", code),
        }
    }
}
impl Encode for Uuid {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(fc::UUID);
        buf.put_slice(&self.0);
    }
}

macro_rules! decimal {
    ($t:ident, $code:path, $name:literal) => {
        impl Decode for $t {
            fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
                match code {
                    $code => Ok($t(d.read_array()?)),
                    _ => unexpected($name, code),
                }
            }
        }
        impl Encode for $t {
            fn encode(&self, buf: &mut BytesMut) {
                buf.put_u8($code);
                buf.put_slice(&self.0);
            }
        }
    };
}
decimal!(Decimal32, fc::DECIMAL32, "decimal32");
decimal!(Decimal64, fc::DECIMAL64, "decimal64");
decimal!(Decimal128, fc::DECIMAL128, "decimal128");

impl Decode for Bytes {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::VBIN8 | fc::VBIN32 => {
                let len = d.read_variable_len(code)?;
                d.read_bytes(len)
            }
            _ => unexpected("binary", code),
        }
    }
}
impl Encode for Bytes {
    fn encode(&self, buf: &mut BytesMut) {
        encode::variable(fc::VBIN8, self, buf)
    }
}

impl Decode for Str {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::STR8 | fc::STR32 => {
                let len = d.read_variable_len(code)?;
                Str::from_utf8(d.read_bytes(len)?)
            }
            _ => unexpected("string", code),
        }
    }
}
impl Encode for Str {
    fn encode(&self, buf: &mut BytesMut) {
        encode::variable(fc::STR8, self.as_bytes(), buf)
    }
}

impl Decode for Symbol {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::SYM8 | fc::SYM32 => {
                let len = d.read_variable_len(code)?;
                Symbol::from_utf8(d.read_bytes(len)?)
            }
            _ => unexpected("symbol", code),
        }
    }
}
impl Encode for Symbol {
    fn encode(&self, buf: &mut BytesMut) {
        encode::variable(fc::SYM8, self.as_bytes(), buf)
    }
}

impl Encode for Descriptor {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Descriptor::Code(c) => encode::ulong(*c, buf),
            Descriptor::Symbol(s) => s.encode(buf),
        }
    }
}

impl Decode for Map {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        if !matches!(code, fc::MAP8 | fc::MAP32) {
            return unexpected("map", code);
        }
        let mut c = d.read_compound(code)?;
        let mut pairs = Vec::with_capacity(c.count as usize / 2);
        for _ in 0..c.count / 2 {
            let k = Value::decode(&mut c.body)?;
            let v = Value::decode(&mut c.body)?;
            pairs.push((k, v));
        }
        c.body.finish()?;
        Ok(Map(pairs))
    }
}
impl Map {
    pub(crate) fn encode_with(&self, compact: bool, buf: &mut BytesMut) {
        let w = CompoundWriter::begin(true, buf);
        for (k, v) in &self.0 {
            k.encode(buf);
            v.encode(buf);
        }
        w.finish(self.0.len() as u32 * 2, compact, buf);
    }
}
impl Encode for Map {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_with(true, buf)
    }
}

impl Decode for Fields {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        if !matches!(code, fc::MAP8 | fc::MAP32) {
            return unexpected("fields (map)", code);
        }
        let mut c = d.read_compound(code)?;
        let mut pairs = Vec::with_capacity(c.count as usize / 2);
        for _ in 0..c.count / 2 {
            let k = Symbol::decode(&mut c.body)?;
            let v = Value::decode(&mut c.body)?;
            pairs.push((k, v));
        }
        c.body.finish()?;
        Ok(Fields(pairs))
    }
}
impl Encode for Fields {
    fn encode(&self, buf: &mut BytesMut) {
        let w = CompoundWriter::begin(true, buf);
        for (k, v) in &self.0 {
            k.encode(buf);
            v.encode(buf);
        }
        w.finish(self.0.len() as u32 * 2, true, buf);
    }
}

impl Decode for Symbols {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::SYM8 | fc::SYM32 => Ok(Symbols(vec![Symbol::decode_body(code, d)?])),
            fc::ARRAY8 | fc::ARRAY32 => {
                let mut h = d.read_array_header(code)?;
                if h.descriptor.is_some() {
                    return unexpected("symbol array", fc::DESCRIBED);
                }
                let mut out = Vec::with_capacity(h.count as usize);
                for _ in 0..h.count {
                    out.push(Symbol::decode_body(h.element_code, &mut h.body)?);
                }
                h.body.finish()?;
                Ok(Symbols(out))
            }
            _ => unexpected("symbol or array of symbols", code),
        }
    }
}
impl Encode for Symbols {
    fn encode(&self, buf: &mut BytesMut) {
        let all_short = self.0.iter().all(|s| s.len() <= 255);
        let (code, width) = if all_short {
            (fc::SYM8, 1)
        } else {
            (fc::SYM32, 4)
        };
        let body: usize = self.0.iter().map(|s| s.len() + width).sum::<usize>() + 1;
        if body < 255 && self.0.len() <= 255 {
            buf.put_slice(&[fc::ARRAY8, (body + 1) as u8, self.0.len() as u8]);
        } else {
            buf.put_u8(fc::ARRAY32);
            buf.put_u32((body + 4) as u32);
            buf.put_u32(self.0.len() as u32);
        }
        buf.put_u8(code);
        for s in &self.0 {
            if all_short {
                buf.put_u8(s.len() as u8);
            } else {
                buf.put_u32(s.len() as u32);
            }
            buf.put_slice(s.as_bytes());
        }
    }
}
