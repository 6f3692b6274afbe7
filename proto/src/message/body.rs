//! The body of a message, "application-data" (AMQP 1.0 §3.2): data
//! (§3.2.6), amqp-sequence (§3.2.7) or amqp-value (§3.2.8) sections.

use bytes::{Bytes, BytesMut};

use super::SectionKind;
use crate::codec::{
    CompoundWriter, Decode, DecodeError, DecodeResult, Decoder, Encode, Value, encode, format as fc,
};

/// A message body.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Body {
    /// No body section. The spec requires one; some clients send none, so
    /// it is accepted (see the [module docs](super)).
    #[default]
    Empty,
    /// One `data` section per element: opaque binary (§3.2.6). Encoding an
    /// empty vector writes no section, which decodes as [`Body::Empty`].
    Data(Vec<Bytes>),
    /// One `amqp-sequence` section per element, each a list (§3.2.7).
    /// Encoding an empty vector writes no section, like `Data`.
    AmqpSequence(Vec<Vec<Value>>),
    /// A single `amqp-value` section (§3.2.8).
    AmqpValue(Value),
}

impl Body {
    /// A body of one data section.
    pub fn data(bytes: impl Into<Bytes>) -> Self {
        Body::Data(vec![bytes.into()])
    }

    /// Appends the body's sections to `buf`.
    pub fn encode_sections(&self, buf: &mut BytesMut) {
        match self {
            Body::Empty => {}
            Body::Data(parts) => {
                for part in parts {
                    SectionKind::Data.encode_descriptor(buf);
                    encode::variable(fc::VBIN8, part, buf);
                }
            }
            Body::AmqpSequence(lists) => {
                for items in lists {
                    SectionKind::AmqpSequence.encode_descriptor(buf);
                    let w = CompoundWriter::begin(false, buf);
                    items.iter().for_each(|v| v.encode(buf));
                    w.finish(items.len() as u32, true, buf);
                }
            }
            Body::AmqpValue(v) => {
                SectionKind::AmqpValue.encode_descriptor(buf);
                v.encode(buf);
            }
        }
    }

    /// Adds one body section's value (the bytes after its descriptor) to
    /// the body. The section order was already checked, so a section of
    /// another kind than the body's cannot come here.
    pub(crate) fn push_section(&mut self, kind: SectionKind, value: Bytes) -> DecodeResult<()> {
        let mut d = Decoder::new(value);
        match (kind, &mut *self) {
            (SectionKind::Data, Body::Empty) => *self = Body::Data(vec![Bytes::decode(&mut d)?]),
            (SectionKind::Data, Body::Data(parts)) => parts.push(Bytes::decode(&mut d)?),
            (SectionKind::AmqpSequence, Body::Empty) => {
                *self = Body::AmqpSequence(vec![decode_list(&mut d)?])
            }
            (SectionKind::AmqpSequence, Body::AmqpSequence(lists)) => {
                lists.push(decode_list(&mut d)?)
            }
            (SectionKind::AmqpValue, Body::Empty) => {
                *self = Body::AmqpValue(Value::decode(&mut d)?)
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    ty: "message body (AMQP 1.0 §3.2)",
                    value: kind.name().to_string(),
                });
            }
        }
        d.finish()
    }
}

fn decode_list(d: &mut Decoder) -> DecodeResult<Vec<Value>> {
    match Value::decode(d)? {
        Value::List(items) => Ok(items),
        _ => Err(DecodeError::InvalidValue {
            ty: "amqp-sequence",
            value: "not a list".to_string(),
        }),
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Body::AmqpValue(v)
    }
}
