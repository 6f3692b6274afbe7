//! The AMQP 1.0 primitive types that Rust has no exact counterpart for
//! (AMQP 1.0 §1.6). Strings and symbols keep their wire bytes, so decoding
//! them copies nothing.

use bytes::Bytes;
use std::fmt;

use super::{DecodeError, DecodeResult, Encode, Value};

/// An AMQP `string`: UTF-8, validated once, held as the received bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Str(Bytes);

impl Str {
    /// Wraps bytes after checking they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> DecodeResult<Self> {
        std::str::from_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8("string"))?;
        Ok(Self(bytes))
    }
    /// A string from a `'static` literal, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        // Validated at construction, so this cannot fail (and the crate
        // forbids the unchecked conversion).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    /// The UTF-8 bytes, shared with the buffer it was decoded from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// An AMQP `symbol`: a name from a constrained domain (AMQP 1.0 §1.6.21).
/// The spec says ASCII; we accept any UTF-8 and reject anything else.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Symbol(Str);

impl Symbol {
    /// Wraps bytes after checking they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> DecodeResult<Self> {
        std::str::from_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8("symbol"))?;
        Ok(Self(Str(bytes)))
    }
    /// A symbol from a `'static` literal, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Str::from_static(s))
    }
    /// The symbol's text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    /// The bytes, shared with the buffer it was decoded from.
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }
}

macro_rules! text_impls {
    ($t:ident, $wrap:expr) => {
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $wrap(Bytes::copy_from_slice(s.as_bytes()))
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                $wrap(Bytes::from(s.into_bytes()))
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
text_impls!(Str, Str);
text_impls!(Symbol, |b| Symbol(Str(b)));

/// An AMQP `timestamp`: milliseconds since the Unix epoch (AMQP 1.0 §1.6.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// An AMQP `uuid` (RFC 4122 byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

/// An IEEE 754 decimal32, kept as its raw big-endian bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Decimal32(pub [u8; 4]);
/// An IEEE 754 decimal64, kept as its raw big-endian bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Decimal64(pub [u8; 8]);
/// An IEEE 754 decimal128, kept as its raw big-endian bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Decimal128(pub [u8; 16]);

/// The descriptor of a described type: a numeric code or a symbolic name
/// (AMQP 1.0 §1.5). Codes are `domain-id << 32 | descriptor-id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Descriptor {
    /// The numeric form, e.g. `0x10` for `amqp:open:list`.
    Code(u64),
    /// The symbolic form, e.g. `amqp:open:list`.
    Symbol(Symbol),
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Descriptor::Code(c) => write!(f, "0x{:08x}:0x{:08x}", c >> 32, c & 0xffff_ffff),
            Descriptor::Symbol(s) => f.write_str(s),
        }
    }
}

/// A described value whose descriptor this crate has no type for.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// What the value is.
    pub descriptor: Descriptor,
    /// The value itself.
    pub value: Value,
}

/// An AMQP `map` with arbitrary keys, in wire order (AMQP 1.0 §1.6.23).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map(pub Vec<(Value, Value)>);

impl Map {
    /// The value under `key`, comparing keys as symbols or strings by text.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }
}

/// AMQP `fields`: a map whose keys are symbols (AMQP 1.0 §2.8.14).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields(pub Vec<(Symbol, Value)>);

impl Fields {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }
}

/// A field declared `multiple="true"` with symbol type: on the wire either
/// one symbol or an array of symbols (AMQP 1.0 §1.4, "multiple").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Symbols(pub Vec<Symbol>);

impl Symbols {
    /// Whether `name` is one of the symbols.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.as_str() == name)
    }
}

impl<const N: usize> From<[&'static str; N]> for Symbols {
    fn from(names: [&'static str; N]) -> Self {
        Symbols(names.into_iter().map(Symbol::from_static).collect())
    }
}

/// An AMQP `array`: a sequence of values of one type sharing one constructor
/// (AMQP 1.0 §1.6.24). Build it with [`Array::new`], which checks the
/// elements share a type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Array(Vec<Value>);

impl Array {
    /// An array of `elements`, or `None` if they are not all of one type
    /// (one encoding constructor must fit them all) or the decoder would
    /// refuse the array: an element constructor carries one descriptor at
    /// most, and zero-width elements (nulls) can number no more than the
    /// constructor has bytes, since the decoder bounds an array's count by
    /// its size (see [`Decoder::read_array_header`](super::Decoder::read_array_header)).
    pub fn new(elements: Vec<Value>) -> Option<Self> {
        let ok = elements.windows(2).all(|w| w[0].same_array_type(&w[1]));
        let decodable = match elements.first() {
            Some(Value::Described(d)) => match d.value {
                Value::Described(_) => false,
                Value::Null => elements.len() <= 2 + d.descriptor.to_bytes().len(),
                _ => true,
            },
            Some(Value::Null) => elements.len() <= 1,
            _ => true,
        };
        (ok && decodable).then_some(Self(elements))
    }
    pub(crate) fn from_decoded(elements: Vec<Value>) -> Self {
        Self(elements)
    }
    /// The elements.
    pub fn elements(&self) -> &[Value] {
        &self.0
    }
}
