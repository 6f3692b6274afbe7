//! The AMQP 1.0 type system (AMQP 1.0 part 1): encoding and decoding of every
//! primitive, described and compound type over `bytes::Bytes`.
//!
//! Decoding is zero-copy (binary, string and symbol values are slices of the
//! input) and total (every malformed input is a [`DecodeError`]).

mod composite;
mod decode;
pub mod encode;
mod error;
pub mod format;
mod primitive;
mod types;
mod value;

pub use composite::{Field, FieldReader, FieldWriter, expect_descriptor};
pub use decode::{ArrayHeader, Compound, Decoder, MAX_DEPTH};
pub use encode::{CompoundWriter, Encode};
pub use error::{DecodeError, DecodeResult};
pub use types::{
    Array, Decimal32, Decimal64, Decimal128, Described, Descriptor, Fields, Map, Str, Symbol,
    Symbols, Timestamp, Uuid,
};
pub use value::Value;

/// A value that can be read from AMQP 1.0 encoding.
pub trait Decode: Sized {
    /// Reads one value, constructor first.
    fn decode(d: &mut Decoder) -> DecodeResult<Self> {
        let code = d.read_format()?;
        Self::decode_body(code, d)
    }

    /// Reads the rest of a value whose constructor was `code`.
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self>;

    /// Decodes a buffer that must hold exactly one value.
    fn from_bytes(bytes: bytes::Bytes) -> DecodeResult<Self> {
        let mut d = Decoder::new(bytes);
        let v = Self::decode(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}
