//! The few message fields the router reads: `properties.to` for links with
//! no target address, the expiry fields and the priority (AMQP 1.0 §3.2.1,
//! §3.2.4).
//! Read from the message's leading bytes only, since a large message's
//! first frame holds its header and properties but not its body.

use bytes::Bytes;
use ferry_proto::codec::{Decode, Decoder, Descriptor, Str};
use ferry_proto::message::{Header, Properties};

/// What routing needs from a message.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingFields {
    /// `header.priority` (AMQP 1.0 §3.2.1), 4 when absent, at most
    /// [`MAX_PRIORITY`].
    pub priority: u8,
    /// `properties.to`.
    pub to: Option<Str>,
    /// `header.ttl`, milliseconds.
    pub ttl: Option<u32>,
    /// `properties.absolute-expiry-time`, ms since the epoch.
    pub absolute_expiry_time: Option<i64>,
    /// `properties.creation-time`, ms since the epoch.
    pub creation_time: Option<i64>,
    /// Whether the properties section (or the body, proving there is none)
    /// was reached, so `to` is final.
    pub complete: bool,
}

impl Default for RoutingFields {
    fn default() -> Self {
        Self {
            priority: Header::DEFAULT_PRIORITY,
            to: None,
            ttl: None,
            absolute_expiry_time: None,
            creation_time: None,
            complete: false,
        }
    }
}

/// The highest priority the router tells apart: AMQP 1.0 §3.2.1 asks for
/// at least ten levels (0 to 9); a higher value is served as 9.
pub const MAX_PRIORITY: u8 = 9;

const HEADER: u64 = 0x70;
const DELIVERY_ANNOTATIONS: u64 = 0x71;
const MESSAGE_ANNOTATIONS: u64 = 0x72;
const PROPERTIES: u64 = 0x73;

/// Reads the routing fields from the start of a message. Stops at the
/// first section that is incomplete or malformed, leaving `complete` false.
pub fn routing_fields(prefix: &Bytes) -> RoutingFields {
    let mut out = RoutingFields::default();
    let mut d = Decoder::new(prefix.clone());
    while !d.is_empty() {
        let mut probe = d.clone();
        let Ok(0x00) = probe.read_format() else {
            return out;
        };
        let code = match probe.read_descriptor() {
            Ok(Descriptor::Code(c)) => c,
            _ => return out,
        };
        match code {
            HEADER => match Header::decode(&mut d) {
                Ok(h) => {
                    out.ttl = h.ttl;
                    out.priority = h.priority_or_default().min(MAX_PRIORITY);
                }
                Err(_) => return out,
            },
            DELIVERY_ANNOTATIONS | MESSAGE_ANNOTATIONS => {
                if d.skip_value().is_err() {
                    return out;
                }
            }
            PROPERTIES => {
                if let Ok(p) = Properties::decode(&mut d) {
                    out.to = p.to;
                    out.absolute_expiry_time = p.absolute_expiry_time.map(|t| t.0);
                    out.creation_time = p.creation_time.map(|t| t.0);
                    out.complete = true;
                }
                return out;
            }
            _ => {
                // Application properties or the body: no properties section.
                out.complete = true;
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::message::{Body, Message};

    fn with_priority(priority: Option<u8>) -> Bytes {
        let mut m = Message::new(Body::data(b"x".to_vec()));
        m.header = Some(Header {
            priority,
            ..Header::default()
        });
        m.encode()
    }

    #[test]
    fn priority_is_read_from_the_header_with_its_default_and_cap() {
        assert_eq!(routing_fields(&with_priority(Some(9))).priority, 9);
        assert_eq!(routing_fields(&with_priority(Some(0))).priority, 0);
        assert_eq!(routing_fields(&with_priority(Some(200))).priority, 9);
        assert_eq!(routing_fields(&with_priority(None)).priority, 4);
        let bare = Message::new(Body::data(b"x".to_vec())).encode();
        assert_eq!(routing_fields(&bare).priority, 4);
    }
}
