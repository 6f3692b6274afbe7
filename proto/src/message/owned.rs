//! An owned, fully decoded message (AMQP 1.0 §3.2), for clients and tests.
//! The router's data path uses [`MessageView`](super::MessageView) instead.

use bytes::{Bytes, BytesMut};

use super::section::Sections;
use super::{
    AnnotationKey, Annotations, ApplicationProperties, Body, Header, Properties, SectionKind,
};
use crate::codec::{Decode, DecodeResult, Decoder, Encode, Str, Value};

/// A message: every section decoded. Build one with [`Message::new`] and
/// the `with_*` methods, or set the public fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// The header section (§3.2.1).
    pub header: Option<Header>,
    /// The delivery-annotations section (§3.2.2).
    pub delivery_annotations: Option<Annotations>,
    /// The message-annotations section (§3.2.3).
    pub message_annotations: Option<Annotations>,
    /// The properties section (§3.2.4).
    pub properties: Option<Properties>,
    /// The application-properties section (§3.2.5).
    pub application_properties: Option<ApplicationProperties>,
    /// The body: data, amqp-sequence or amqp-value sections (§3.2.6–3.2.8).
    pub body: Body,
    /// The footer section (§3.2.9).
    pub footer: Option<Annotations>,
}

impl Message {
    /// A message with `body` and no other section.
    pub fn new(body: impl Into<Body>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Sets the header section.
    pub fn with_header(mut self, header: Header) -> Self {
        self.header = Some(header);
        self
    }

    /// Sets the properties section.
    pub fn with_properties(mut self, properties: Properties) -> Self {
        self.properties = Some(properties);
        self
    }

    /// Sets `properties.to`, adding a properties section if there is none.
    pub fn with_to(mut self, to: impl Into<Str>) -> Self {
        self.properties.get_or_insert_with(Properties::default).to = Some(to.into());
        self
    }

    /// Adds a delivery annotation.
    pub fn with_delivery_annotation(mut self, key: impl Into<AnnotationKey>, value: Value) -> Self {
        self.delivery_annotations
            .get_or_insert_with(Annotations::new)
            .insert(key, value);
        self
    }

    /// Adds a message annotation.
    pub fn with_message_annotation(mut self, key: impl Into<AnnotationKey>, value: Value) -> Self {
        self.message_annotations
            .get_or_insert_with(Annotations::new)
            .insert(key, value);
        self
    }

    /// Adds an application property.
    pub fn with_application_property(mut self, key: impl Into<Str>, value: Value) -> Self {
        self.application_properties
            .get_or_insert_with(ApplicationProperties::new)
            .insert(key, value);
        self
    }

    /// Adds a footer annotation.
    pub fn with_footer(mut self, key: impl Into<AnnotationKey>, value: Value) -> Self {
        self.footer
            .get_or_insert_with(Annotations::new)
            .insert(key, value);
        self
    }

    /// Appends the message's sections to `buf`, in the order of §3.2.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        if let Some(h) = &self.header {
            h.encode(buf);
        }
        encode_map_section(
            SectionKind::DeliveryAnnotations,
            &self.delivery_annotations,
            buf,
        );
        encode_map_section(
            SectionKind::MessageAnnotations,
            &self.message_annotations,
            buf,
        );
        if let Some(p) = &self.properties {
            p.encode(buf);
        }
        if let Some(ap) = &self.application_properties {
            SectionKind::ApplicationProperties.encode_descriptor(buf);
            ap.encode(buf);
        }
        self.body.encode_sections(buf);
        encode_map_section(SectionKind::Footer, &self.footer, buf);
    }

    /// The encoded message: the payload of a transfer (or of several,
    /// split by the sender).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Decodes every section of an encoded message. Binary, string and
    /// symbol values are slices of `bytes`, not copies. A message split
    /// over several transfers must be concatenated first.
    pub fn decode(bytes: Bytes) -> DecodeResult<Self> {
        let mut sections = Sections::new(&bytes, 0, bytes.len());
        let mut m = Message::default();
        while let Some(s) = sections.next_section()? {
            let value = bytes.slice(s.value..s.end);
            if s.kind.is_body() {
                m.body.push_section(s.kind, value)?;
                continue;
            }
            let mut d = Decoder::new(value);
            match s.kind {
                SectionKind::Header => m.header = Some(Header::decode_fields(&mut d)?),
                SectionKind::DeliveryAnnotations => {
                    m.delivery_annotations = Some(Annotations::decode(&mut d)?)
                }
                SectionKind::MessageAnnotations => {
                    m.message_annotations = Some(Annotations::decode(&mut d)?)
                }
                SectionKind::Properties => m.properties = Some(Properties::decode_fields(&mut d)?),
                SectionKind::ApplicationProperties => {
                    m.application_properties = Some(ApplicationProperties::decode(&mut d)?)
                }
                SectionKind::Footer => m.footer = Some(Annotations::decode(&mut d)?),
                SectionKind::Data | SectionKind::AmqpSequence | SectionKind::AmqpValue => {}
            }
            d.finish()?;
        }
        Ok(m)
    }
}

/// Writes an annotations-valued section (delivery-annotations,
/// message-annotations, footer) if present.
pub(crate) fn encode_map_section(kind: SectionKind, map: &Option<Annotations>, buf: &mut BytesMut) {
    if let Some(map) = map {
        kind.encode_descriptor(buf);
        map.encode(buf);
    }
}
