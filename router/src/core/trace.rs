//! The router's own message annotation: the trace of routers a message has
//! passed through (`x-opt-ferry-trace`, a list of router ids), for loop
//! protection while routing tables disagree.
//!
//! Every function here works on a message's first bytes: the message
//! annotations come before the properties and the body (AMQP 1.0 §3.2), so
//! the first frame of a message streamed over several frames is enough,
//! and the later frames pass on untouched. If the first bytes end before
//! the annotations are known, the message goes on as it is, relying on the
//! loop-free next-hop rules alone.

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::{Decode, Decoder, Descriptor, Encode, Map, Str, Symbol, Value, encode};

/// The annotation key.
pub const TRACE: &str = "x-opt-ferry-trace";

/// The descriptor code of the message-annotations section (AMQP 1.0 §3.2.3).
const MESSAGE_ANNOTATIONS: u64 = 0x72;

/// The message-annotations section in a message's first bytes: where it
/// is (or, absent, where it goes: after header and delivery annotations)
/// and its map.
struct Located {
    start: usize,
    end: usize,
    map: Option<Map>,
}

/// Finds the message annotations in `prefix`; `None` if the sections
/// before them do not end within `prefix`, or are malformed.
fn locate(prefix: &Bytes) -> Option<Located> {
    let mut d = Decoder::new(prefix.clone());
    loop {
        let start = d.position();
        let mut probe = d.clone();
        if probe.read_format().ok()? != 0x00 {
            return None;
        }
        let code = match probe.read_descriptor().ok()? {
            Descriptor::Code(c) => c,
            Descriptor::Symbol(_) => return None,
        };
        if code > MESSAGE_ANNOTATIONS {
            return Some(Located {
                start,
                end: start,
                map: None,
            });
        }
        let section = d.read_raw_value().ok()?;
        if code == MESSAGE_ANNOTATIONS {
            let mut sd = Decoder::new(section);
            sd.read_format().ok()?;
            sd.read_descriptor().ok()?;
            return Some(Located {
                start,
                end: d.position(),
                map: Some(Map::decode(&mut sd).ok()?),
            });
        }
    }
}

/// `prefix` with its message annotations replaced by `map` (none if
/// `None`), every other byte kept.
fn splice(prefix: &Bytes, at: &Located, map: Option<&Map>) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + 64);
    out.extend_from_slice(&prefix[..at.start]);
    if let Some(map) = map {
        encode::descriptor_code(MESSAGE_ANNOTATIONS, &mut out);
        map.encode(&mut out);
    }
    out.extend_from_slice(&prefix[at.end..]);
    out.freeze()
}

/// The routers a message has visited, read from its first bytes (empty if
/// it does not say or cannot be parsed).
pub fn visited(prefix: &Bytes) -> Vec<String> {
    let Some(Located { map: Some(ma), .. }) = locate(prefix) else {
        return Vec::new();
    };
    match ma.get(TRACE) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| v.as_text().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The message's first bytes with `router` appended to its trace; only
/// the message-annotations section changes. `None` if they cannot be
/// parsed (the message is then forwarded unchanged).
pub fn with_hop(prefix: &Bytes, router: &str) -> Option<Bytes> {
    let at = locate(prefix)?;
    let mut ma = at.map.clone().unwrap_or_default();
    let hop = Value::String(Str::from(router));
    match ma.0.iter_mut().find(|(k, _)| k.as_text() == Some(TRACE)) {
        Some((_, Value::List(items))) => items.push(hop),
        Some((_, other)) => *other = Value::List(vec![hop]),
        None => ma.0.push((
            Value::Symbol(Symbol::from_static(TRACE)),
            Value::List(vec![hop]),
        )),
    }
    Some(splice(prefix, &at, Some(&ma)))
}

/// The message's first bytes without this router mesh's annotations, for
/// delivery to a client: the trace key is removed, and the
/// message-annotations section with it when nothing else was in it, so a
/// message that had none arrives byte for byte as it was sent. Unchanged
/// if there is nothing to remove.
pub fn strip(prefix: &Bytes) -> Bytes {
    let Some(at) = locate(prefix) else {
        return prefix.clone();
    };
    let Some(mut ma) = at.map.clone() else {
        return prefix.clone();
    };
    let before = ma.0.len();
    ma.0.retain(|(k, _)| k.as_text() != Some(TRACE));
    if ma.0.len() == before {
        return prefix.clone();
    }
    splice(prefix, &at, (!ma.0.is_empty()).then_some(&ma))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::message::{Body, Message, MessageView};

    #[test]
    fn hops_accumulate_and_the_body_is_untouched() {
        let m = Message::new(Body::data(b"payload".to_vec())).encode();
        assert!(visited(&m).is_empty());
        let once = with_hop(&m, "A").unwrap();
        let twice = with_hop(&once, "B").unwrap();
        assert_eq!(visited(&twice), vec!["A".to_string(), "B".to_string()]);
        let body = |b: &Bytes| MessageView::parse(b.clone()).unwrap().body_bytes();
        assert_eq!(body(&twice), body(&m));
        assert_eq!(strip(&twice), m, "stripping restores the original bytes");
        assert_eq!(strip(&m), m);
    }

    #[test]
    fn the_first_frame_of_a_streamed_message_carries_the_trace() {
        let m = Message::new(Body::data(vec![7u8; 100_000]))
            .with_message_annotation("x-opt-app", Value::Uint(7))
            .encode();
        let (first, rest) = (m.slice(..1000), m.slice(1000..));
        let traced = with_hop(&with_hop(&first, "A").unwrap(), "B").unwrap();
        assert_eq!(visited(&traced), ["A", "B"]);
        let mut whole = BytesMut::from(&traced[..]);
        whole.extend_from_slice(&rest);
        let whole = whole.freeze();
        assert_eq!(
            visited(&whole),
            ["A", "B"],
            "the same as on the whole message"
        );
        assert_eq!(strip(&traced), first);
        // Too short to know where the annotations end: left alone.
        assert_eq!(with_hop(&m.slice(..3), "A"), None);
        assert_eq!(strip(&m.slice(..3)), m.slice(..3));
    }

    #[test]
    fn stripping_keeps_other_annotations() {
        let m = Message::new(Body::data(b"x".to_vec()))
            .with_message_annotation("x-opt-app", Value::Uint(7))
            .encode();
        assert_eq!(strip(&with_hop(&m, "A").unwrap()), m);
    }
}
