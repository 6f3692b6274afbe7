//! The nine section kinds (AMQP 1.0 §3.2.1–3.2.9) and the scanner that
//! finds section boundaries and checks their order without decoding them.

use bytes::BytesMut;

use super::cursor::Cursor;
use crate::codec::{DecodeError, DecodeResult, Descriptor, encode, format as fc};

/// A message section, by its descriptor (AMQP 1.0 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `header` (0x70, §3.2.1).
    Header,
    /// `delivery-annotations` (0x71, §3.2.2).
    DeliveryAnnotations,
    /// `message-annotations` (0x72, §3.2.3).
    MessageAnnotations,
    /// `properties` (0x73, §3.2.4).
    Properties,
    /// `application-properties` (0x74, §3.2.5).
    ApplicationProperties,
    /// `data` (0x75, §3.2.6): a body section holding binary.
    Data,
    /// `amqp-sequence` (0x76, §3.2.7): a body section holding a list.
    AmqpSequence,
    /// `amqp-value` (0x77, §3.2.8): the single body section, any value.
    AmqpValue,
    /// `footer` (0x78, §3.2.9).
    Footer,
}

impl SectionKind {
    /// The numeric descriptor.
    pub const fn code(self) -> u64 {
        match self {
            SectionKind::Header => 0x70,
            SectionKind::DeliveryAnnotations => 0x71,
            SectionKind::MessageAnnotations => 0x72,
            SectionKind::Properties => 0x73,
            SectionKind::ApplicationProperties => 0x74,
            SectionKind::Data => 0x75,
            SectionKind::AmqpSequence => 0x76,
            SectionKind::AmqpValue => 0x77,
            SectionKind::Footer => 0x78,
        }
    }

    /// The symbolic descriptor.
    pub const fn name(self) -> &'static str {
        match self {
            SectionKind::Header => "amqp:header:list",
            SectionKind::DeliveryAnnotations => "amqp:delivery-annotations:map",
            SectionKind::MessageAnnotations => "amqp:message-annotations:map",
            SectionKind::Properties => "amqp:properties:list",
            SectionKind::ApplicationProperties => "amqp:application-properties:map",
            SectionKind::Data => "amqp:data:binary",
            SectionKind::AmqpSequence => "amqp:amqp-sequence:list",
            SectionKind::AmqpValue => "amqp:amqp-value:*",
            SectionKind::Footer => "amqp:footer:map",
        }
    }

    pub(crate) const ALL: [SectionKind; 9] = [
        SectionKind::Header,
        SectionKind::DeliveryAnnotations,
        SectionKind::MessageAnnotations,
        SectionKind::Properties,
        SectionKind::ApplicationProperties,
        SectionKind::Data,
        SectionKind::AmqpSequence,
        SectionKind::AmqpValue,
        SectionKind::Footer,
    ];

    /// The kind with numeric descriptor `code`.
    #[inline(always)]
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0x70..=0x78 => Some(Self::ALL[(code - 0x70) as usize]),
            _ => None,
        }
    }

    /// The kind with symbolic descriptor `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this is a body section (data, amqp-sequence, amqp-value).
    #[inline(always)]
    pub const fn is_body(self) -> bool {
        matches!(
            self,
            SectionKind::Data | SectionKind::AmqpSequence | SectionKind::AmqpValue
        )
    }

    /// Position in the message layout (§3.2), 0 to [`RANKS`] - 1; the
    /// body kinds share one.
    #[inline(always)]
    pub(crate) fn rank(self) -> usize {
        match self {
            SectionKind::Header => 0,
            SectionKind::DeliveryAnnotations => 1,
            SectionKind::MessageAnnotations => 2,
            SectionKind::Properties => 3,
            SectionKind::ApplicationProperties => 4,
            SectionKind::Data | SectionKind::AmqpSequence | SectionKind::AmqpValue => 5,
            SectionKind::Footer => 6,
        }
    }

    /// Checks the format code of the section's value is of the section's
    /// type: list, map, binary, or anything for amqp-value.
    #[inline(always)]
    fn check_value_code(self, code: u8) -> DecodeResult<()> {
        let (ok, expected) = match self {
            SectionKind::Header => (is_list(code), "list (header section)"),
            SectionKind::Properties => (is_list(code), "list (properties section)"),
            SectionKind::AmqpSequence => (is_list(code), "list (amqp-sequence section)"),
            SectionKind::Data => (
                matches!(code, fc::VBIN8 | fc::VBIN32),
                "binary (data section)",
            ),
            SectionKind::AmqpValue => (true, ""),
            SectionKind::DeliveryAnnotations
            | SectionKind::MessageAnnotations
            | SectionKind::ApplicationProperties
            | SectionKind::Footer => (matches!(code, fc::MAP8 | fc::MAP32), "map (section)"),
        };
        if ok {
            Ok(())
        } else {
            Err(DecodeError::UnexpectedFormat {
                expected,
                found: code,
            })
        }
    }

    /// Writes the section's constructor: `0x00` and the numeric descriptor.
    pub(crate) fn encode_descriptor(self, buf: &mut BytesMut) {
        encode::descriptor_code(self.code(), buf);
    }
}

/// Number of distinct positions in the message layout.
pub(crate) const RANKS: usize = 7;

fn is_list(code: u8) -> bool {
    matches!(code, fc::LIST0 | fc::LIST8 | fc::LIST32)
}

/// Where one section lies in the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawSection {
    /// Which section.
    pub kind: SectionKind,
    /// Offset of its `0x00` constructor.
    pub start: usize,
    /// Offset of its value (after the descriptor).
    pub value: usize,
    /// Offset just past its value.
    pub end: usize,
}

/// Walks the sections of an encoded message, checking their order
/// (§3.2) and that each value has its section's type, skipping each value
/// by its size prefix. The values' insides are not checked.
#[derive(Debug)]
pub(crate) struct Sections<'a> {
    c: Cursor<'a>,
    /// The lowest rank the next section may have.
    next_rank: usize,
    /// The body kind, once a body section was seen.
    body: Option<SectionKind>,
}

impl<'a> Sections<'a> {
    /// Walks the sections in `buf[start..end]`; offsets are in `buf`.
    #[inline]
    pub fn new(buf: &'a [u8], start: usize, end: usize) -> Self {
        Self {
            c: Cursor::new(buf, start, end),
            next_rank: 0,
            body: None,
        }
    }

    /// The next section, or `None` at the end of the buffer.
    #[inline(always)]
    pub fn next_section(&mut self) -> DecodeResult<Option<RawSection>> {
        if self.c.is_empty() {
            return Ok(None);
        }
        let start = self.c.position();
        // Fast path: `0x00 0x53 0x70..=0x78`, the constructor every client
        // writes, checked with one bounds check.
        let kind = match self.c.peek::<3>() {
            Some([fc::DESCRIBED, fc::SMALLULONG, code @ 0x70..=0x78]) => {
                self.c.advance(3)?;
                SectionKind::ALL[usize::from(code - 0x70)]
            }
            _ => self.read_constructor()?,
        };
        self.check_order(kind)?;
        let value = self.c.position();
        let code = self.c.format()?;
        kind.check_value_code(code)?;
        self.c.skip_body(code)?;
        Ok(Some(RawSection {
            kind,
            start,
            value,
            end: self.c.position(),
        }))
    }

    /// Reads a section's constructor: `0x00` and a descriptor, a `ulong`
    /// code or a symbol (AMQP 1.0 §1.5), off the fast path.
    #[cold]
    #[inline(never)]
    fn read_constructor(&mut self) -> DecodeResult<SectionKind> {
        let c = self.c.u8()?;
        if c != fc::DESCRIBED {
            return Err(DecodeError::UnexpectedFormat {
                expected: "message section (described value, AMQP 1.0 §3.2)",
                found: c,
            });
        }
        self.read_descriptor()
    }

    /// Reads a descriptor and maps it to a section kind.
    fn read_descriptor(&mut self) -> DecodeResult<SectionKind> {
        let code = self.c.format()?;
        let found = match code {
            fc::SMALLULONG | fc::ULONG | fc::ULONG0 => {
                let v = match code {
                    fc::SMALLULONG => self.c.u8()?.into(),
                    fc::ULONG => self.c.u64()?,
                    _ => 0,
                };
                if let Some(kind) = SectionKind::from_code(v) {
                    return Ok(kind);
                }
                Descriptor::Code(v).to_string()
            }
            fc::SYM8 | fc::SYM32 => {
                let len = self.c.variable_len(code)?;
                let name = std::str::from_utf8(self.c.take(len)?)
                    .map_err(|_| DecodeError::InvalidUtf8("symbol"))?;
                if let Some(kind) = SectionKind::from_name(name) {
                    return Ok(kind);
                }
                name.to_string()
            }
            _ => {
                return Err(DecodeError::UnexpectedFormat {
                    expected: "descriptor (ulong or symbol)",
                    found: code,
                });
            }
        };
        Err(DecodeError::UnexpectedDescriptor {
            expected: "message section (AMQP 1.0 §3.2)",
            found,
        })
    }

    #[inline(always)]
    fn check_order(&mut self, kind: SectionKind) -> DecodeResult<()> {
        // Body sections repeat only as more of the same kind, and
        // amqp-value never repeats.
        let repeat_ok = match self.body {
            Some(prev) if kind.is_body() => prev == kind && kind != SectionKind::AmqpValue,
            _ => true,
        };
        let ok = self.next_rank <= kind.rank() && repeat_ok;
        if !ok {
            return Err(DecodeError::InvalidValue {
                ty: "message section order (AMQP 1.0 §3.2)",
                value: format!("{} out of place", kind.name()),
            });
        }
        if kind.is_body() {
            self.body = Some(kind);
            self.next_rank = kind.rank();
        } else {
            self.next_rank = kind.rank() + 1;
        }
        Ok(())
    }
}
