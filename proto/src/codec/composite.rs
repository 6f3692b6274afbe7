//! Composite types (AMQP 1.0 §1.4): a descriptor plus a list of fields, with
//! trailing null fields omitted. [`composite!`](crate::composite) declares
//! one as a struct; [`Field`] says how each field type treats null.

use bytes::BytesMut;

use super::{
    CompoundWriter, Decode, DecodeError, DecodeResult, Decoder, Descriptor, Encode, encode,
    format as fc,
};

/// How a field's Rust type maps to the wire: `Option<T>` is null when
/// absent; any other type is mandatory and a null or missing value is a
/// decode error.
pub trait Field: Sized {
    /// The field's value when the list ended before it or it was null.
    fn absent(name: &'static str) -> DecodeResult<Self>;
    /// Decodes a present, non-null field.
    fn decode_present(d: &mut Decoder) -> DecodeResult<Self>;
    /// Writes the field (null when absent).
    fn encode_field(&self, buf: &mut BytesMut);
    /// Whether the field encodes as null (so it can be left off the end).
    fn is_null(&self) -> bool;
}

impl<T: Decode + Encode> Field for T {
    fn absent(name: &'static str) -> DecodeResult<Self> {
        Err(DecodeError::MissingField(name))
    }
    fn decode_present(d: &mut Decoder) -> DecodeResult<Self> {
        T::decode(d)
    }
    fn encode_field(&self, buf: &mut BytesMut) {
        self.encode(buf)
    }
    fn is_null(&self) -> bool {
        false
    }
}

impl<T: Decode + Encode> Field for Option<T> {
    fn absent(_: &'static str) -> DecodeResult<Self> {
        Ok(None)
    }
    fn decode_present(d: &mut Decoder) -> DecodeResult<Self> {
        T::decode(d).map(Some)
    }
    fn encode_field(&self, buf: &mut BytesMut) {
        match self {
            Some(v) => v.encode(buf),
            None => encode::null(buf),
        }
    }
    fn is_null(&self) -> bool {
        self.is_none()
    }
}

/// Reads the fields of a composite's list in order.
#[derive(Debug)]
pub struct FieldReader {
    remaining: u32,
    body: Decoder,
}

impl FieldReader {
    /// Reads the list header (after the descriptor).
    pub fn new(d: &mut Decoder) -> DecodeResult<Self> {
        let code = d.read_format()?;
        if !matches!(code, fc::LIST0 | fc::LIST8 | fc::LIST32) {
            return Err(DecodeError::UnexpectedFormat {
                expected: "list (composite body)",
                found: code,
            });
        }
        let c = d.read_compound(code)?;
        Ok(Self {
            remaining: c.count,
            body: c.body,
        })
    }

    /// The next field; `name` is used in the error when a mandatory field
    /// is missing.
    pub fn next<T: Field>(&mut self, name: &'static str) -> DecodeResult<T> {
        if self.remaining == 0 {
            return T::absent(name);
        }
        self.remaining -= 1;
        if self.body.next_is_null() {
            self.body.advance(1)?;
            return T::absent(name);
        }
        T::decode_present(&mut self.body)
    }

    /// Skips fields a later version of the spec may add, then checks the
    /// list's size matched its contents.
    pub fn finish(mut self) -> DecodeResult<()> {
        for _ in 0..self.remaining {
            self.body.skip_value()?;
        }
        self.body.finish()
    }
}

/// Writes a composite's field list, leaving trailing nulls off.
#[derive(Debug)]
#[must_use = "the field list must be finished"]
pub struct FieldWriter {
    list: CompoundWriter,
    count: u32,
    kept_len: usize,
    kept_count: u32,
}

impl FieldWriter {
    /// Writes the descriptor and starts the list.
    pub fn begin(code: u64, buf: &mut BytesMut) -> Self {
        encode::descriptor_code(code, buf);
        let list = CompoundWriter::begin(false, buf);
        let kept_len = buf.len();
        Self {
            list,
            count: 0,
            kept_len,
            kept_count: 0,
        }
    }

    /// Writes the next field.
    pub fn field<T: Field>(&mut self, value: &T, buf: &mut BytesMut) {
        value.encode_field(buf);
        self.count += 1;
        if !value.is_null() {
            self.kept_len = buf.len();
            self.kept_count = self.count;
        }
    }

    /// Ends the list.
    pub fn finish(self, buf: &mut BytesMut) {
        buf.truncate(self.kept_len);
        self.list.finish(self.kept_count, true, buf);
    }
}

/// Reads a described value's descriptor and checks it is `code` or `name`.
pub fn expect_descriptor(
    code: u8,
    d: &mut Decoder,
    expected_code: u64,
    expected_name: &'static str,
) -> DecodeResult<()> {
    if code != fc::DESCRIBED {
        return Err(DecodeError::UnexpectedFormat {
            expected: expected_name,
            found: code,
        });
    }
    match d.read_descriptor()? {
        Descriptor::Code(c) if c == expected_code => Ok(()),
        Descriptor::Symbol(s) if s.as_str() == expected_name => Ok(()),
        other => Err(DecodeError::UnexpectedDescriptor {
            expected: expected_name,
            found: other.to_string(),
        }),
    }
}

/// Declares a composite type (AMQP 1.0 §1.4) as a struct with `Decode` and
/// `Encode`: fields in wire order, `Option<T>` for optional fields.
#[macro_export]
#[doc(hidden)]
macro_rules! composite {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($sym:literal, $code:literal) {
            $( $(#[$fmeta:meta])* pub $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }

        impl $name {
            /// The numeric descriptor.
            pub const CODE: u64 = $code;
            /// The symbolic descriptor.
            pub const NAME: &'static str = $sym;

            /// Decodes the field list (after the descriptor).
            #[allow(unused_mut)]
            pub fn decode_fields(d: &mut $crate::codec::Decoder) -> $crate::codec::DecodeResult<Self> {
                let mut r = $crate::codec::FieldReader::new(d)?;
                let v = Self { $( $field: r.next(stringify!($field))?, )* };
                r.finish()?;
                Ok(v)
            }
        }

        impl $crate::codec::Decode for $name {
            fn decode_body(code: u8, d: &mut $crate::codec::Decoder) -> $crate::codec::DecodeResult<Self> {
                $crate::codec::expect_descriptor(code, d, $code, $sym)?;
                Self::decode_fields(d)
            }
        }

        impl $crate::codec::Encode for $name {
            #[allow(unused_mut)]
            fn encode(&self, buf: &mut bytes::BytesMut) {
                let mut w = $crate::codec::FieldWriter::begin($code, buf);
                $( w.field(&self.$field, buf); )*
                w.finish(buf);
            }
        }
    };
}
