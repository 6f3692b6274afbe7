//! The lazy message view: section boundaries found once, fields read on
//! demand. This is what the router does with every message it forwards
//! (AMQP 1.0 §3.2), so parsing is O(number of sections) and reading
//! `properties.to` allocates nothing.

use bytes::Bytes;

use super::cursor::{Cursor, Fields, Primitive};
use super::properties::field;
use super::section::{RANKS, Sections};
use super::{
    Annotations, ApplicationProperties, Body, Header, Message, MessageId, Properties, SectionKind,
};
use crate::codec::{Decode, DecodeError, DecodeResult, Decoder, Str, Timestamp, format as fc};

/// Where a section (or, for the body, the run of body sections) lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// Offset of the first section's `0x00`.
    pub start: usize,
    /// Offset of the (first) section's value.
    pub value: usize,
    /// Offset just past the (last) section.
    pub end: usize,
}

/// A [`Span`] in 12 bytes, so the view stays small enough to pass around
/// cheaply; `end == 0` means absent (a section takes at least 3 bytes).
#[derive(Debug, Clone, Copy, Default)]
struct Packed {
    start: u32,
    value: u32,
    end: u32,
}

/// A parsed-on-demand message over its encoded bytes (AMQP 1.0 §3.2).
///
/// [`parse`](Self::parse) checks the section structure: every section is a
/// described value with a section descriptor, in the order of §3.2, each at
/// most once (body sections as one run of a single kind, amqp-value at most
/// once), each value of its section's type, every size within the buffer.
/// It does not look inside the values: the accessors decode what they need
/// and report a malformed inside as a [`DecodeError`](crate::codec::DecodeError)
/// then. No input makes any of them panic.
///
/// The view holds one `Bytes` (a reference count, not a copy); every slice
/// it hands out shares it. A message spread over several transfer frames
/// must be concatenated into one `Bytes` before parsing.
#[derive(Debug, Clone)]
pub struct MessageView {
    bytes: Bytes,
    /// Indexed by [`SectionKind::rank`].
    spans: [Packed; RANKS],
    body_kind: Option<SectionKind>,
}

const HEADER: usize = 0;
const DELIVERY_ANNOTATIONS: usize = 1;
const MESSAGE_ANNOTATIONS: usize = 2;
const PROPERTIES: usize = 3;
const APPLICATION_PROPERTIES: usize = 4;
const BODY: usize = 5;
const FOOTER: usize = 6;

impl MessageView {
    /// Finds the sections of an encoded message, without decoding them.
    /// Cost: a few byte reads per section, whatever the sizes; no heap
    /// allocation unless the input is malformed (the error may allocate).
    pub fn parse(bytes: Bytes) -> DecodeResult<Self> {
        if u32::try_from(bytes.len()).is_err() {
            return Err(DecodeError::InvalidLength("message over 4 GiB"));
        }
        let mut spans = [Packed::default(); RANKS];
        let mut body_kind = None;
        let mut sections = Sections::new(&bytes, 0, bytes.len());
        while let Some(s) = sections.next_section()? {
            // Offsets fit: the buffer's length does.
            let slot = &mut spans[s.kind.rank()];
            if s.kind.is_body() && slot.end != 0 {
                // A further body section of the same kind extends the run.
                slot.end = s.end as u32;
            } else {
                *slot = Packed {
                    start: s.start as u32,
                    value: s.value as u32,
                    end: s.end as u32,
                };
            }
            if s.kind.is_body() {
                body_kind = Some(s.kind);
            }
        }
        Ok(Self {
            bytes,
            spans,
            body_kind,
        })
    }

    /// Where the section at layout position `slot` lies, if present.
    #[inline]
    fn slot(&self, slot: usize) -> Option<Span> {
        let p = self.spans[slot];
        (p.end != 0).then_some(Span {
            start: p.start as usize,
            value: p.value as usize,
            end: p.end as usize,
        })
    }

    /// The whole encoded message.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The encoded message, giving up the view.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub(super) fn span(&self, kind: SectionKind) -> Option<Span> {
        let span = self.slot(kind.rank())?;
        match kind.is_body() && self.body_kind != Some(kind) {
            true => None,
            false => Some(span),
        }
    }

    /// Whether the message has a section of `kind`.
    pub fn has(&self, kind: SectionKind) -> bool {
        self.span(kind).is_some()
    }

    /// The encoded section of `kind`, descriptor included, as a slice of
    /// the message. For a body kind: every body section, if the body is of
    /// that kind.
    pub fn section_bytes(&self, kind: SectionKind) -> Option<Bytes> {
        self.span(kind).map(|s| self.bytes.slice(s.start..s.end))
    }

    /// Which kind of section the body is made of; `None` without a body.
    pub fn body_kind(&self) -> Option<SectionKind> {
        self.body_kind
    }

    /// The encoded body sections, descriptors included.
    pub fn body_bytes(&self) -> Option<Bytes> {
        self.slot(BODY).map(|s| self.bytes.slice(s.start..s.end))
    }

    /// The bare message (AMQP 1.0 §3.2): properties, application-properties
    /// and body, the part no intermediary may change. Empty if the message
    /// has none of them.
    pub fn bare_message_bytes(&self) -> Bytes {
        let bare = || (PROPERTIES..=BODY).filter_map(|i| self.slot(i));
        let start = bare().map(|s| s.start).next();
        let end = bare().map(|s| s.end).next_back();
        match (start, end) {
            (Some(start), Some(end)) => self.bytes.slice(start..end),
            _ => Bytes::new(),
        }
    }

    /// A decoder over the value of the section in `slot`.
    fn value(&self, slot: usize) -> Option<Decoder> {
        self.slot(slot)
            .map(|s| Decoder::new(self.bytes.slice(s.value..s.end)))
    }

    /// Decodes the value of the section in `slot` with `f`, which must
    /// consume it exactly.
    fn decode_section<T>(
        &self,
        slot: usize,
        f: impl FnOnce(&mut Decoder) -> DecodeResult<T>,
    ) -> DecodeResult<Option<T>> {
        let Some(mut d) = self.value(slot) else {
            return Ok(None);
        };
        let v = f(&mut d)?;
        d.finish()?;
        Ok(Some(v))
    }

    /// The header (§3.2.1), decoded; it holds no heap data. `None` means
    /// every field takes its default.
    pub fn header(&self) -> DecodeResult<Option<Header>> {
        let Some(span) = self.slot(HEADER) else {
            return Ok(None);
        };
        let mut c = Cursor::new(&self.bytes, span.value, span.end);
        let mut f = Fields::new(&mut c)?;
        let header = Header {
            durable: f.next()?,
            priority: f.next()?,
            ttl: f.next()?,
            first_acquirer: f.next()?,
            delivery_count: f.next()?,
        };
        f.finish()?;
        c.finish()?;
        Ok(Some(header))
    }

    /// The delivery-annotations (§3.2.2), decoded.
    pub fn delivery_annotations(&self) -> DecodeResult<Option<Annotations>> {
        self.decode_section(DELIVERY_ANNOTATIONS, Annotations::decode)
    }

    /// The message-annotations (§3.2.3), decoded.
    pub fn message_annotations(&self) -> DecodeResult<Option<Annotations>> {
        self.decode_section(MESSAGE_ANNOTATIONS, Annotations::decode)
    }

    /// The whole properties section (§3.2.4), decoded. To read one field,
    /// the field's own accessor is cheaper.
    pub fn properties(&self) -> DecodeResult<Option<Properties>> {
        self.decode_section(PROPERTIES, Properties::decode_fields)
    }

    /// The application-properties (§3.2.5), decoded.
    pub fn application_properties(&self) -> DecodeResult<Option<ApplicationProperties>> {
        self.decode_section(APPLICATION_PROPERTIES, ApplicationProperties::decode)
    }

    /// The footer (§3.2.9), decoded.
    pub fn footer(&self) -> DecodeResult<Option<Annotations>> {
        self.decode_section(FOOTER, Annotations::decode)
    }

    /// The body (§3.2.6–3.2.8), decoded; data sections are slices of the
    /// message, not copies.
    pub fn body(&self) -> DecodeResult<Body> {
        let mut body = Body::Empty;
        let Some(span) = self.slot(BODY) else {
            return Ok(body);
        };
        let mut sections = Sections::new(&self.bytes, span.start, span.end);
        while let Some(s) = sections.next_section()? {
            body.push_section(s.kind, self.bytes.slice(s.value..s.end))?;
        }
        Ok(body)
    }

    /// Every section, decoded: the same as [`Message::decode`].
    pub fn to_message(&self) -> DecodeResult<Message> {
        Message::decode(self.bytes.clone())
    }

    /// A cursor at field `index` of the properties list, having skipped
    /// the fields before it by their size prefixes. `None` if there is no
    /// properties section, the list is shorter, or the field is null.
    #[inline(always)]
    fn properties_field(&self, index: u32) -> DecodeResult<Option<Cursor<'_>>> {
        let Some(span) = self.slot(PROPERTIES) else {
            return Ok(None);
        };
        let mut c = Cursor::new(&self.bytes, span.value, span.end);
        let mut fields = Fields::new(&mut c)?;
        if !fields.skip(index)? {
            return Ok(None);
        }
        Ok(fields.into_next())
    }

    /// The range of a string field of the properties (not yet checked to
    /// be UTF-8: the caller's conversion does that, once).
    #[inline(always)]
    fn str_range(&self, index: u32) -> DecodeResult<Option<(usize, usize)>> {
        let Some(mut c) = self.properties_field(index)? else {
            return Ok(None);
        };
        let code = c.format()?;
        if !matches!(code, fc::STR8 | fc::STR32) {
            return Err(DecodeError::UnexpectedFormat {
                expected: "string",
                found: code,
            });
        }
        let len = c.variable_len(code)?;
        let start = c.position();
        Ok(Some((start, start + len)))
    }

    /// A string field of the properties, as a slice of the message.
    fn str_field(&self, index: u32) -> DecodeResult<Option<Str>> {
        Ok(match self.str_range(index)? {
            Some((start, end)) => Some(Str::from_utf8(self.bytes.slice(start..end))?),
            None => None,
        })
    }

    fn primitive_field<T: Primitive>(&self, index: u32) -> DecodeResult<Option<T>> {
        match self.properties_field(index)? {
            Some(mut c) => T::read(&mut c).map(Some),
            None => Ok(None),
        }
    }

    fn message_id_field(&self, index: u32) -> DecodeResult<Option<MessageId>> {
        let (Some(c), Some(span)) = (self.properties_field(index)?, self.slot(PROPERTIES)) else {
            return Ok(None);
        };
        let mut d = Decoder::new(self.bytes.slice(c.position()..span.end));
        MessageId::decode(&mut d).map(Some)
    }

    /// `properties.to` (§3.2.4), the address the router routes on. Reads
    /// only that field, skipping message-id and user-id by their sizes.
    /// Allocates nothing: the string is a slice of the message (a
    /// reference count, once the buffer is shared, as a frame payload is).
    pub fn to(&self) -> DecodeResult<Option<Str>> {
        self.str_field(field::TO)
    }

    /// `properties.to` borrowed from the view: like [`to`](Self::to)
    /// without touching the buffer's reference count, for a lookup that
    /// needs no owned copy (e.g. in the router's address table).
    pub fn to_str(&self) -> DecodeResult<Option<&str>> {
        Ok(match self.str_range(field::TO)? {
            Some((start, end)) => Some(
                std::str::from_utf8(&self.bytes[start..end])
                    .map_err(|_| DecodeError::InvalidUtf8("string"))?,
            ),
            None => None,
        })
    }

    /// `properties.reply-to` (§3.2.4).
    pub fn reply_to(&self) -> DecodeResult<Option<Str>> {
        self.str_field(field::REPLY_TO)
    }

    /// `properties.subject` (§3.2.4).
    pub fn subject(&self) -> DecodeResult<Option<Str>> {
        self.str_field(field::SUBJECT)
    }

    /// `properties.message-id` (§3.2.4).
    pub fn message_id(&self) -> DecodeResult<Option<MessageId>> {
        self.message_id_field(field::MESSAGE_ID)
    }

    /// `properties.correlation-id` (§3.2.4).
    pub fn correlation_id(&self) -> DecodeResult<Option<MessageId>> {
        self.message_id_field(field::CORRELATION_ID)
    }

    /// `properties.absolute-expiry-time` (§3.2.4).
    pub fn absolute_expiry_time(&self) -> DecodeResult<Option<Timestamp>> {
        self.primitive_field(field::ABSOLUTE_EXPIRY_TIME)
    }

    /// `properties.creation-time` (§3.2.4).
    pub fn creation_time(&self) -> DecodeResult<Option<Timestamp>> {
        self.primitive_field(field::CREATION_TIME)
    }

    /// `properties.group-id` (§3.2.4).
    pub fn group_id(&self) -> DecodeResult<Option<Str>> {
        self.str_field(field::GROUP_ID)
    }
}
