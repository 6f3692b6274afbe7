//! The map types of the message sections: `annotations` (AMQP 1.0 §3.2.10),
//! used by delivery-annotations, message-annotations and footer, and
//! application-properties (§3.2.5).

use bytes::BytesMut;

use crate::codec::{
    CompoundWriter, Decode, DecodeError, DecodeResult, Decoder, Encode, Fields, Str, Symbol, Value,
    format as fc,
};

/// A key of an annotations map: a symbol or a ulong (AMQP 1.0 §3.2.10).
/// Symbol keys starting `x-opt-` may be ignored by a receiver; others must
/// be understood.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnnotationKey {
    /// A symbolic key, e.g. `x-opt-ferry-trace`.
    Symbol(Symbol),
    /// A numeric key (domain-qualified like a descriptor code).
    Ulong(u64),
}

impl AnnotationKey {
    /// The key's text, for a symbol key.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnnotationKey::Symbol(s) => Some(s.as_str()),
            AnnotationKey::Ulong(_) => None,
        }
    }
}

impl From<Symbol> for AnnotationKey {
    fn from(s: Symbol) -> Self {
        AnnotationKey::Symbol(s)
    }
}

impl From<&str> for AnnotationKey {
    fn from(s: &str) -> Self {
        AnnotationKey::Symbol(s.into())
    }
}

impl From<u64> for AnnotationKey {
    fn from(v: u64) -> Self {
        AnnotationKey::Ulong(v)
    }
}

impl Decode for AnnotationKey {
    fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
        match code {
            fc::SYM8 | fc::SYM32 => Symbol::decode_body(code, d).map(AnnotationKey::Symbol),
            fc::ULONG | fc::SMALLULONG | fc::ULONG0 => {
                u64::decode_body(code, d).map(AnnotationKey::Ulong)
            }
            _ => Err(DecodeError::UnexpectedFormat {
                expected: "annotation key (symbol or ulong)",
                found: code,
            }),
        }
    }
}

impl Encode for AnnotationKey {
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            AnnotationKey::Symbol(s) => s.encode(buf),
            AnnotationKey::Ulong(v) => v.encode(buf),
        }
    }
}

/// Declares a map type with typed keys, in wire order, with lookup,
/// insertion and the map codec.
macro_rules! keyed_map {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($key:ty, $what:literal);
        $lookup:ident => $as_str:expr
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name(pub Vec<($key, Value)>);

        impl $name {
            /// An empty map.
            pub fn new() -> Self {
                Self::default()
            }

            /// Number of entries.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether there are no entries.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// The value under the key whose text is `key`.
            pub fn $lookup(&self, key: &str) -> Option<&Value> {
                let text: fn(&$key) -> Option<&str> = $as_str;
                self.0.iter().find(|(k, _)| text(k) == Some(key)).map(|(_, v)| v)
            }

            /// Sets `key` to `value`, in place if the key is there (keeping
            /// the order), else at the end. Returns the old value.
            pub fn insert(&mut self, key: impl Into<$key>, value: Value) -> Option<Value> {
                let key = key.into();
                match self.0.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => Some(std::mem::replace(v, value)),
                    None => {
                        self.0.push((key, value));
                        None
                    }
                }
            }

            /// Removes `key`, returning its value.
            pub fn remove(&mut self, key: &$key) -> Option<Value> {
                let i = self.0.iter().position(|(k, _)| k == key)?;
                Some(self.0.remove(i).1)
            }

            /// The entries, in wire order.
            pub fn iter(&self) -> impl Iterator<Item = &($key, Value)> {
                self.0.iter()
            }
        }

        impl Decode for $name {
            fn decode_body(code: u8, d: &mut Decoder) -> DecodeResult<Self> {
                if !matches!(code, fc::MAP8 | fc::MAP32) {
                    return Err(DecodeError::UnexpectedFormat { expected: $what, found: code });
                }
                let mut c = d.read_compound(code)?;
                let mut entries = Vec::with_capacity(c.count as usize / 2);
                for _ in 0..c.count / 2 {
                    let k = <$key>::decode(&mut c.body)?;
                    let v = Value::decode(&mut c.body)?;
                    entries.push((k, v));
                }
                c.body.finish()?;
                Ok(Self(entries))
            }
        }

        impl Encode for $name {
            fn encode(&self, buf: &mut BytesMut) {
                let w = CompoundWriter::begin(true, buf);
                for (k, v) in &self.0 {
                    k.encode(buf);
                    v.encode(buf);
                }
                w.finish(self.0.len() as u32 * 2, true, buf);
            }
        }
    };
}

keyed_map! {
    /// An `annotations` map (AMQP 1.0 §3.2.10): the value of the
    /// delivery-annotations (§3.2.2), message-annotations (§3.2.3) and
    /// footer (§3.2.9) sections. Keys are symbols or ulongs.
    pub struct Annotations(AnnotationKey, "annotations (map)");
    get => AnnotationKey::as_str
}

keyed_map! {
    /// The application-properties section's map (AMQP 1.0 §3.2.5): string
    /// keys. The spec limits values to simple types (no map, list or
    /// array); that is the application's business, so any value decodes.
    pub struct ApplicationProperties(Str, "application-properties (map)");
    get => |k: &Str| Some(k.as_str())
}

impl From<Fields> for Annotations {
    /// Annotations from a `fields` map, e.g. the `message-annotations` of
    /// a modified outcome (AMQP 1.0 §3.4.5), to merge into a message.
    fn from(f: Fields) -> Self {
        Self(
            f.0.into_iter()
                .map(|(k, v)| (AnnotationKey::Symbol(k), v))
                .collect(),
        )
    }
}
