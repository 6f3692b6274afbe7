//! The router's own message annotation: the trace of routers a message has
//! passed through (`x-opt-ferry-trace`, a list of router ids), for loop
//! protection while routing tables disagree. Only complete (single-frame)
//! messages carry it; a message streamed over several frames is forwarded
//! as it is, relying on the loop-free next-hop rules alone.

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::{Decode, Decoder, Descriptor, Encode, Map, Str, Value, encode};
use ferry_proto::message::MessageView;

/// The annotation key.
pub const TRACE: &str = "x-opt-ferry-trace";

/// The routers a message has visited, if it says (empty if it does not or
/// cannot be parsed).
pub fn visited(message: &Bytes) -> Vec<String> {
    let Ok(view) = MessageView::parse(message.clone()) else {
        return Vec::new();
    };
    let Ok(Some(ma)) = view.message_annotations() else {
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

/// The message with `router` appended to its trace; only the
/// message-annotations section changes. `None` if the message cannot be
/// parsed (it is then forwarded unchanged).
pub fn with_hop(message: &Bytes, router: &str) -> Option<Bytes> {
    let view = MessageView::parse(message.clone()).ok()?;
    let mut ma = view.message_annotations().ok()?.unwrap_or_default();
    let mut trace = match ma.get(TRACE) {
        Some(Value::List(items)) => items.clone(),
        _ => Vec::new(),
    };
    trace.push(Value::String(Str::from(router)));
    ma.insert(TRACE, Value::List(trace));
    Some(view.with_message_annotations(&ma).to_bytes())
}

/// The message without this router mesh's annotations, for delivery to a
/// client: the trace key is removed, and the message-annotations section
/// with it when nothing else was in it, so a message that had none arrives
/// byte for byte as it was sent. Unchanged if there is nothing to remove.
pub fn strip(message: &Bytes) -> Bytes {
    let Some(stripped) = try_strip(message) else {
        return message.clone();
    };
    stripped
}

fn try_strip(message: &Bytes) -> Option<Bytes> {
    const MESSAGE_ANNOTATIONS: u64 = 0x72;
    let mut d = Decoder::new(message.clone());
    // Sections before the message annotations (header, delivery annotations).
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
            return None; // no message annotations
        }
        let section = d.read_raw_value().ok()?;
        if code < MESSAGE_ANNOTATIONS {
            continue;
        }
        let mut sd = Decoder::new(section);
        sd.read_format().ok()?;
        sd.read_descriptor().ok()?;
        let mut ma = Map::decode(&mut sd).ok()?;
        let before = ma.0.len();
        ma.0.retain(|(k, _)| k.as_text() != Some(TRACE));
        if ma.0.len() == before {
            return None;
        }
        let mut out = BytesMut::with_capacity(message.len());
        out.extend_from_slice(&message[..start]);
        if !ma.0.is_empty() {
            encode::descriptor_code(MESSAGE_ANNOTATIONS, &mut out);
            ma.encode(&mut out);
        }
        out.extend_from_slice(&message[d.position()..]);
        return Some(out.freeze());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::message::{Body, Message};

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
    fn stripping_keeps_other_annotations() {
        let m = Message::new(Body::data(b"x".to_vec()))
            .with_message_annotation("x-opt-app", Value::Uint(7))
            .encode();
        assert_eq!(strip(&with_hop(&m, "A").unwrap()), m);
    }
}
