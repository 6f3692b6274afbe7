//! The router's own message annotation: the trace of routers a message has
//! passed through (`x-opt-ferry-trace`, a list of router ids), for loop
//! protection while routing tables disagree. A multicast message's trace
//! starts with a `ulong`: the stamp of the tree it follows, as its origin
//! router saw that tree (see `RoutingTable::tree_stamp`); the routers it
//! passes forward it only if they see the same tree.
//!
//! Every function here works on a message's first bytes: the message
//! annotations come before the properties and the body (AMQP 1.0 §3.2), so
//! the first frame of a message streamed over several frames is enough,
//! and the later frames pass on untouched. If the first bytes end before
//! the annotations are known, a message from another router goes on as it
//! is, relying on the loop-free next-hop rules alone; one from a client is
//! rejected where it enters (a trace in it could be neither replaced nor
//! stripped).
//!
//! A router reads the trace once per delivery ([`Trace::read`]) and asks
//! that one reading everything: whether it has been here before
//! ([`Trace::has_visited`]), and the message with its hop added
//! ([`Trace::with_hop`]) or with the trace removed ([`Trace::strip`]). The
//! reading decodes nothing but the trace list: the other annotations are
//! walked as raw entries (their framing checked, their contents not) and
//! copied into the new section byte for byte, so the new first bytes cost
//! one allocation.

use bytes::{BufMut, Bytes, BytesMut};
use ferry_proto::codec::{
    CompoundWriter, DecodeError, DecodeResult, Decoder, Descriptor, encode, format as fc,
};
use smallvec::SmallVec;

/// The annotation key.
pub const TRACE: &str = "x-opt-ferry-trace";

/// The descriptor code of the message-annotations section (AMQP 1.0 §3.2.3).
const MESSAGE_ANNOTATIONS: u64 = 0x72;

/// The encoded descriptor of the message-annotations section, as
/// [`encode::descriptor_code`] writes it.
const MA_DESCRIPTOR: [u8; 3] = [fc::DESCRIBED, fc::SMALLULONG, MESSAGE_ANNOTATIONS as u8];

/// The trace of one message, read once from its first bytes (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct Trace {
    prefix: Bytes,
    /// `None` if the first bytes end before the annotations are known, or
    /// are malformed: the message then goes on unchanged.
    at: Option<Located>,
}

/// A byte range of the prefix (`Range` is not `Copy`).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn len(self) -> usize {
        self.end - self.start
    }
}

/// The message-annotations section in a message's first bytes: where it
/// is (or, absent, where it goes: after header and delivery annotations)
/// and its map.
#[derive(Debug, Clone)]
struct Located {
    section: Span,
    map: Option<Entries>,
}

/// The map of the message annotations, as raw entries.
#[derive(Debug, Clone)]
struct Entries {
    /// The entries' bytes (the map's body, after its header).
    body: Span,
    /// How many keys and values.
    count: u32,
    /// The first entry with the trace key.
    trace: Option<TraceEntry>,
}

/// The trace's entry in the map.
#[derive(Debug, Clone)]
struct TraceEntry {
    /// Key and value.
    entry: Span,
    /// The key alone (a symbol, or a string as some clients send it).
    key: Span,
    /// The list; `None` if the value is not a list (it is then replaced by
    /// a list on the next hop, and names no router).
    list: Option<List>,
    /// Whether a later entry has the trace key too (all of them are
    /// stripped; only this one counts and grows).
    again: bool,
}

impl Trace {
    /// Reads the trace from a message's first bytes. Never fails: first
    /// bytes it cannot read leave the message as it is.
    pub fn read(prefix: &Bytes) -> Trace {
        Trace {
            prefix: prefix.clone(),
            at: locate(prefix).ok().flatten(),
        }
    }

    /// The routers the message has visited, in order (none if it does not
    /// say or cannot be parsed).
    pub fn hops(&self) -> impl Iterator<Item = &str> {
        self.hop_bytes().filter_map(|b| std::str::from_utf8(b).ok())
    }

    /// Whether router `router` is in the trace.
    pub fn has_visited(&self, router: &str) -> bool {
        self.hop_bytes().any(|b| b == router.as_bytes())
    }

    /// The text items of the trace list, as bytes (checked UTF-8 by `read`).
    fn hop_bytes(&self) -> impl Iterator<Item = &[u8]> {
        let hops = self
            .at
            .as_ref()
            .and_then(|at| Some(&at.map.as_ref()?.trace.as_ref()?.list.as_ref()?.hops));
        hops.into_iter()
            .flatten()
            .map(|h| &self.prefix[h.start..h.end])
    }

    /// Whether the message annotations could be read from the first bytes
    /// (if not, the message goes on unchanged).
    pub fn is_readable(&self) -> bool {
        self.at.is_some()
    }

    /// The tree stamp of a multicast message (see the module docs), if the
    /// trace starts with one.
    pub fn stamp(&self) -> Option<u64> {
        self.at
            .as_ref()?
            .map
            .as_ref()?
            .trace
            .as_ref()?
            .list
            .as_ref()?
            .stamp
    }

    /// The first bytes with this router appended to the trace; only the
    /// message-annotations section changes. `None` if they cannot be
    /// parsed (the message is then forwarded unchanged).
    pub fn with_hop(&self, router: &str) -> Option<Bytes> {
        self.rewrite(router, None)
    }

    /// The first bytes of a message entering the mesh at this router: the
    /// trace is this router alone, after the tree `stamp` if given. Any
    /// trace a client wrote is replaced: it names no router of ours, and
    /// a stamp in it would be forged.
    pub fn begin(&self, router: &str, stamp: Option<u64>) -> Option<Bytes> {
        self.rewrite(router, Some(stamp))
    }

    /// The first bytes with a new trace list: the old one's items (`fresh`
    /// is `None`) or only the stamp given, then `router`.
    fn rewrite(&self, router: &str, fresh: Option<Option<u64>>) -> Option<Bytes> {
        let at = self.at.as_ref()?;
        let empty = Span {
            start: at.section.end,
            end: at.section.end,
        };
        // The new map's body: the entries before the trace, its key, the
        // new list, the entries after it.
        let (before, key, items, after, count) = match &at.map {
            None => (empty, None, None, empty, 2),
            Some(m) => match &m.trace {
                None => (m.body, None, None, empty, m.count.checked_add(2)?),
                Some(t) => (
                    Span {
                        start: m.body.start,
                        end: t.entry.start,
                    },
                    Some(t.key),
                    t.list.as_ref().map(|l| (l.items, l.count)),
                    Span {
                        start: t.entry.end,
                        end: m.body.end,
                    },
                    m.count,
                ),
            },
        };
        let (items, n_items) = match fresh {
            None => items.unwrap_or((empty, 0)),
            Some(_) => (empty, 0),
        };
        let stamp = fresh.flatten();
        let stamp_len = stamp.map_or(0, ulong_len);
        let key_len = key.map_or(variable_len(TRACE.len()), Span::len);
        let list_body = items.len() + stamp_len + variable_len(router.len());
        let list_count = n_items.checked_add(1 + u32::from(stamp.is_some()))?;
        let map_body =
            before.len() + key_len + header_len(list_body, list_count) + list_body + after.len();
        if map_body > u32::MAX as usize - 4 {
            return None;
        }
        let section = MA_DESCRIPTOR.len() + header_len(map_body, count) + map_body;
        let len = self.prefix.len() - at.section.len() + section;

        let p = &self.prefix[..];
        let mut out = BytesMut::with_capacity(len);
        out.put_slice(&p[..at.section.start]);
        out.put_slice(&MA_DESCRIPTOR);
        compound_header(fc::MAP8, fc::MAP32, map_body, count, &mut out);
        out.put_slice(&p[before.start..before.end]);
        match key {
            Some(k) => out.put_slice(&p[k.start..k.end]),
            None => encode::variable(fc::SYM8, TRACE.as_bytes(), &mut out),
        }
        compound_header(fc::LIST8, fc::LIST32, list_body, list_count, &mut out);
        if let Some(stamp) = stamp {
            encode::ulong(stamp, &mut out);
        }
        out.put_slice(&p[items.start..items.end]);
        encode::variable(fc::STR8, router.as_bytes(), &mut out);
        out.put_slice(&p[after.start..after.end]);
        out.put_slice(&p[at.section.end..]);
        debug_assert_eq!(out.len(), len);
        // Exactly the capacity: freezing takes the buffer as it is.
        Some(out.freeze())
    }

    /// The first bytes without this router mesh's annotations, for
    /// delivery to a client: the trace key is removed, and the
    /// message-annotations section with it when nothing else was in it, so
    /// a message that had none arrives byte for byte as it was sent.
    /// Unchanged if there is nothing to remove.
    pub fn strip(&self) -> Bytes {
        let Some(Located {
            section,
            map: Some(m),
        }) = &self.at
        else {
            return self.prefix.clone();
        };
        let Some(t) = &m.trace else {
            return self.prefix.clone();
        };
        if t.again {
            return self
                .strip_every(*section, m)
                .unwrap_or_else(|_| self.prefix.clone());
        }
        let p = &self.prefix[..];
        let count = m.count - 2;
        let body = m.body.len() - t.entry.len();
        let section_len = match count {
            0 => 0,
            // Smaller than the map that was there: the 32-bit size fits.
            _ => MA_DESCRIPTOR.len() + header_len(body, count) + body,
        };
        let mut out = BytesMut::with_capacity(p.len() - section.len() + section_len);
        out.put_slice(&p[..section.start]);
        if count > 0 {
            out.put_slice(&MA_DESCRIPTOR);
            compound_header(fc::MAP8, fc::MAP32, body, count, &mut out);
            out.put_slice(&p[m.body.start..t.entry.start]);
            out.put_slice(&p[t.entry.end..m.body.end]);
        }
        out.put_slice(&p[section.end..]);
        out.freeze()
    }

    /// `strip` for a map with the trace key more than once: walks the
    /// entries again, keeping those with another key.
    fn strip_every(&self, section: Span, m: &Entries) -> DecodeResult<Bytes> {
        let p = &self.prefix[..];
        let mut out = BytesMut::with_capacity(p.len());
        out.put_slice(&p[..section.start]);
        out.put_slice(&MA_DESCRIPTOR);
        let w = CompoundWriter::begin(true, &mut out);
        let mut d = Decoder::new(self.prefix.slice(m.body.start..m.body.end));
        let mut kept = 0;
        for _ in 0..m.count / 2 {
            let start = m.body.start + d.position();
            let is_trace = is_trace_key(&mut d, p, m.body.start)?;
            d.skip_value()?;
            if !is_trace {
                out.put_slice(&p[start..m.body.start + d.position()]);
                kept += 2;
            }
        }
        if kept == 0 {
            out.truncate(section.start);
        } else {
            w.finish(kept, true, &mut out);
        }
        out.put_slice(&p[section.end..]);
        Ok(out.freeze())
    }
}

/// Finds the message annotations in `prefix` and the trace in them,
/// walking the map's entries once; `Ok(None)` or an error if the first
/// bytes end before the annotations do, or do not read as a message.
fn locate(prefix: &Bytes) -> DecodeResult<Option<Located>> {
    let p = &prefix[..];
    let mut d = Decoder::new(prefix.clone());
    loop {
        let start = d.position();
        if d.read_format()? != fc::DESCRIBED {
            return Ok(None);
        }
        let code = match d.read_descriptor()? {
            Descriptor::Code(c) => c,
            Descriptor::Symbol(_) => return Ok(None),
        };
        if code > MESSAGE_ANNOTATIONS {
            let section = Span { start, end: start };
            return Ok(Some(Located { section, map: None }));
        }
        if code < MESSAGE_ANNOTATIONS {
            d.skip_value()?;
            continue;
        }
        let map_code = d.read_format()?;
        if !matches!(map_code, fc::MAP8 | fc::MAP32) {
            return Ok(None);
        }
        let c = d.read_compound(map_code)?;
        let end = d.position();
        let body = Span {
            start: end - c.body.remaining(),
            end,
        };
        let mut entries = c.body;
        let mut trace: Option<TraceEntry> = None;
        for _ in 0..c.count / 2 {
            let entry = body.start + entries.position();
            let is_trace = is_trace_key(&mut entries, p, body.start)?;
            match &mut trace {
                None if is_trace => {
                    let key = Span {
                        start: entry,
                        end: body.start + entries.position(),
                    };
                    let list = trace_items(&mut entries, p, body.start)?;
                    trace = Some(TraceEntry {
                        entry: Span {
                            start: entry,
                            end: body.start + entries.position(),
                        },
                        key,
                        list,
                        again: false,
                    });
                }
                Some(t) if is_trace => {
                    t.again = true;
                    entries.skip_value()?;
                }
                _ => entries.skip_value()?,
            }
        }
        entries.finish()?;
        let section = Span { start, end };
        let map = Some(Entries {
            body,
            count: c.count,
            trace,
        });
        return Ok(Some(Located { section, map }));
    }
}

/// Reads a map key: whether it is the trace key (as a symbol or string).
/// `base` is where `d`'s buffer starts in `p`.
fn is_trace_key(d: &mut Decoder, p: &[u8], base: usize) -> DecodeResult<bool> {
    Ok(read_text(d, base)?.is_some_and(|t| p[t.start..t.end] == *TRACE.as_bytes()))
}

/// Router ids in a trace: inline for the few hops of most paths.
type Hops = SmallVec<[Span; 4]>;

/// The trace's list, as read.
#[derive(Debug, Clone)]
struct List {
    /// The items' bytes and their count.
    items: Span,
    count: u32,
    /// The first item, if it is a `ulong`: the tree stamp.
    stamp: Option<u64>,
    /// Where the text items (router ids, checked UTF-8) are.
    hops: Hops,
}

/// Reads the trace's value: if a list, its items (each read, text checked
/// UTF-8, as decoding the trace always did) and the stamp, if the first is
/// a `ulong`; any other value is skipped.
fn trace_items(d: &mut Decoder, p: &[u8], base: usize) -> DecodeResult<Option<List>> {
    let code = d.read_format()?;
    if !matches!(code, fc::LIST0 | fc::LIST8 | fc::LIST32) {
        d.skip_body(code)?;
        return Ok(None);
    }
    let mut list = d.read_compound(code)?;
    let end = base + d.position();
    let items = Span {
        start: end - list.body.remaining(),
        end,
    };
    let stamp = match list.body.peek_u8() {
        Ok(code @ (fc::ULONG0 | fc::SMALLULONG | fc::ULONG)) if list.count > 0 => {
            list.body.read_u8()?;
            Some(match code {
                fc::ULONG0 => 0,
                fc::SMALLULONG => u64::from(list.body.read_u8()?),
                _ => list.body.read_u64()?,
            })
        }
        _ => None,
    };
    let rest = list.count - u32::from(stamp.is_some());
    let mut hops = Hops::new();
    for _ in 0..rest {
        if let Some(t) = read_text(&mut list.body, items.start)? {
            std::str::from_utf8(&p[t.start..t.end])
                .map_err(|_| DecodeError::InvalidUtf8("trace"))?;
            hops.push(t);
        }
    }
    list.body.finish()?;
    Ok(Some(List {
        items,
        count: list.count,
        stamp,
        hops,
    }))
}

/// Reads one value; if it is a string or symbol, where its text is (`d`'s
/// buffer starting at `base`). Anything else is skipped.
fn read_text(d: &mut Decoder, base: usize) -> DecodeResult<Option<Span>> {
    let code = d.read_format()?;
    if matches!(code, fc::STR8 | fc::STR32 | fc::SYM8 | fc::SYM32) {
        let len = d.read_variable_len(code)?;
        let start = base + d.position();
        d.advance(len)?;
        Ok(Some(Span {
            start,
            end: start + len,
        }))
    } else {
        d.skip_body(code)?;
        Ok(None)
    }
}

/// The encoded size of a `ulong`, as [`encode::ulong`] writes it.
fn ulong_len(v: u64) -> usize {
    match v {
        0 => 1,
        1..=255 => 2,
        _ => 9,
    }
}

/// The encoded size of a string or symbol of `len` bytes.
fn variable_len(len: usize) -> usize {
    if len <= 0xff { 2 + len } else { 5 + len }
}

/// Whether a list or map of `body` bytes and `count` elements takes the
/// one-byte header, as [`CompoundWriter`] writes it compact.
fn short_header(body: usize, count: u32) -> bool {
    body < 0xff && count <= 0xff
}

/// The size of the header [`compound_header`] writes.
fn header_len(body: usize, count: u32) -> usize {
    if short_header(body, count) { 3 } else { 9 }
}

/// Writes a list or map header the way [`CompoundWriter`] finishes a
/// compact one (`count` is never 0 here, so no `list0`). `body` must fit
/// the 32-bit size.
fn compound_header(code8: u8, code32: u8, body: usize, count: u32, out: &mut BytesMut) {
    if short_header(body, count) {
        out.put_slice(&[code8, body as u8 + 1, count as u8]);
    } else {
        out.put_u8(code32);
        out.put_u32(body as u32 + 4);
        out.put_u32(count);
    }
}

/// The routers a message has visited, read from its first bytes (empty if
/// it does not say or cannot be parsed).
pub fn visited(prefix: &Bytes) -> Vec<String> {
    Trace::read(prefix).hops().map(str::to_string).collect()
}
#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::codec::{Decode, Encode, Map, Str, Symbol, Value};
    use ferry_proto::message::{AnnotationKey, Body, Header, Message, MessageView};

    fn with_hop(prefix: &Bytes, router: &str) -> Option<Bytes> {
        Trace::read(prefix).with_hop(router)
    }

    fn strip(prefix: &Bytes) -> Bytes {
        Trace::read(prefix).strip()
    }

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
    fn a_multicast_trace_carries_its_stamp_over_every_hop_and_never_to_clients() {
        let m = Message::new(Body::data(b"payload".to_vec()))
            .with_message_annotation("x-opt-app", Value::Uint(7))
            .encode();
        let t = Trace::read(&m);
        assert_eq!(t.stamp(), None);
        let origin = t.begin("A", Some(0xfeed_f00d)).unwrap();
        let hop = with_hop(&origin, "B").unwrap();
        let t = Trace::read(&hop);
        assert_eq!(t.stamp(), Some(0xfeed_f00d));
        assert_eq!(t.hops().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(t.strip(), m, "clients get the bytes sent");
        // A client's own trace, forged stamp included, is replaced.
        let forged = with_hop(&Trace::read(&m).begin("X", Some(1)).unwrap(), "A").unwrap();
        let again = Trace::read(&forged).begin("A", Some(2)).unwrap();
        assert_eq!(Trace::read(&again).stamp(), Some(2));
        assert_eq!(visited(&again), ["A"]);
    }

    #[test]
    fn stripping_keeps_other_annotations() {
        let m = Message::new(Body::data(b"x".to_vec()))
            .with_message_annotation("x-opt-app", Value::Uint(7))
            .encode();
        assert_eq!(strip(&with_hop(&m, "A").unwrap()), m);
    }

    /// The implementation this one replaced, which decoded the whole map
    /// into `Value`s and encoded it again: on canonically encoded
    /// messages (as clients and `Value` write them) both must give the
    /// same bytes.
    mod decoding {
        use super::*;

        struct Located {
            start: usize,
            end: usize,
            map: Option<Map>,
        }

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

        pub fn stamp(prefix: &Bytes) -> Option<u64> {
            let Some(Located { map: Some(ma), .. }) = locate(prefix) else {
                return None;
            };
            match ma.get(TRACE) {
                Some(Value::List(items)) => match items.first() {
                    Some(Value::Ulong(s)) => Some(*s),
                    _ => None,
                },
                _ => None,
            }
        }

        pub fn begin(prefix: &Bytes, router: &str, stamp: Option<u64>) -> Option<Bytes> {
            let at = locate(prefix)?;
            let mut ma = at.map.clone().unwrap_or_default();
            let list = Value::List(
                stamp
                    .map(Value::Ulong)
                    .into_iter()
                    .chain([Value::String(Str::from(router))])
                    .collect(),
            );
            match ma.0.iter_mut().find(|(k, _)| k.as_text() == Some(TRACE)) {
                Some((_, v)) => *v = list,
                None => ma.0.push((Value::Symbol(Symbol::from_static(TRACE)), list)),
            }
            Some(splice(prefix, &at, Some(&ma)))
        }

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
    }

    fn sym(s: &str) -> Value {
        Value::Symbol(Symbol::from(s))
    }

    fn string(s: &str) -> Value {
        Value::String(Str::from(s))
    }

    fn hops(names: &[&str]) -> Value {
        Value::List(names.iter().map(|n| string(n)).collect())
    }

    /// Header and delivery annotations, to put before the annotations.
    fn head() -> Bytes {
        let header = Header {
            durable: Some(true),
            ..Header::default()
        };
        Message::new(Body::Empty)
            .with_header(header)
            .with_delivery_annotation("x-da", Value::Uint(1))
            .encode()
    }

    /// A message of `head`, a message-annotations section of `map` (its
    /// bytes as given), properties and a body.
    fn message_with(head: &[u8], ma: Option<&[u8]>) -> Bytes {
        let tail = Message::new(Body::data(b"payload".to_vec()))
            .with_to("queue")
            .encode();
        let mut m = BytesMut::from(head);
        if let Some(ma) = ma {
            encode::descriptor_code(MESSAGE_ANNOTATIONS, &mut m);
            m.extend_from_slice(ma);
        }
        m.extend_from_slice(&tail);
        m.freeze()
    }

    fn message(head: &[u8], ma: Option<Vec<(Value, Value)>>) -> Bytes {
        message_with(head, ma.map(|e| Map(e).to_bytes()).as_deref())
    }

    /// The message annotations of an encoded message, in wire order.
    fn annotations(m: &Bytes) -> Vec<(AnnotationKey, Value)> {
        Message::decode(m.clone())
            .unwrap()
            .message_annotations
            .map(|a| a.0)
            .unwrap_or_default()
    }

    /// Messages with every shape of trace and annotations the router meets.
    fn corpus() -> Vec<Bytes> {
        let many: Vec<String> = (0..100).map(|i| format!("router-{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for head in [Bytes::new(), head()] {
            let ma = |e: Vec<(Value, Value)>| message(&head, Some(e));
            out.extend([
                message(&head, None),
                ma(vec![]),
                ma(vec![(sym("x-opt-app"), Value::Uint(7))]),
                ma(vec![(sym(TRACE), hops(&["A"]))]),
                ma(vec![(sym(TRACE), hops(&[]))]),
                ma(vec![
                    (sym("x-a"), Value::Uint(1)),
                    (sym(TRACE), hops(&["A", "B"])),
                    (sym("x-b"), string("after")),
                ]),
                // Some clients write symbol keys as strings.
                ma(vec![
                    (string(TRACE), hops(&["A"])),
                    (sym("x-b"), Value::Null),
                ]),
                ma(vec![
                    (sym(TRACE), string("A")),
                    (sym("x-b"), Value::Uint(2)),
                ]),
                ma(vec![(
                    sym(TRACE),
                    Value::List(vec![Value::Uint(1), string("A"), Value::Null, sym("C")]),
                )]),
                ma(vec![
                    (sym("x-a"), Value::Uint(1)),
                    (sym(TRACE), hops(&["A"])),
                    (sym("x-b"), Value::Uint(2)),
                    (sym(TRACE), hops(&["Z"])),
                ]),
                ma(vec![(sym(TRACE), hops(&["A"])), (sym(TRACE), hops(&["Z"]))]),
                ma(vec![
                    (Value::Ulong(0x1234), hops(&["not", "a", "trace"])),
                    (sym(TRACE), hops(&many)),
                    (sym("x-big"), Value::Binary(Bytes::from(vec![1u8; 300]))),
                ]),
                ma(vec![(sym(TRACE), hops(&many[..20]))]),
                // Multicast: a tree stamp first, in each width.
                ma(vec![(
                    sym(TRACE),
                    Value::List(vec![Value::Ulong(0), string("A")]),
                )]),
                ma(vec![
                    (sym("x-a"), Value::Uint(1)),
                    (
                        sym(TRACE),
                        Value::List(vec![Value::Ulong(7), string("A"), string("B")]),
                    ),
                ]),
                ma(vec![(
                    sym(TRACE),
                    Value::List(vec![Value::Ulong(u64::MAX - 5), string("A")]),
                )]),
                ma(vec![(sym(TRACE), Value::List(vec![Value::Ulong(9)]))]),
                ma(vec![
                    (sym("x-pad"), Value::Binary(Bytes::from(vec![0u8; 230]))),
                    (sym(TRACE), hops(&["A"])),
                ]),
            ]);
            // Around the sizes where the list and the map take the long
            // header, with a hop added.
            for len in [226, 227, 228, 229, 248, 249, 250, 251] {
                out.push(ma(vec![(sym(TRACE), hops(&[&"x".repeat(len)]))]));
            }
        }
        out
    }

    #[test]
    fn the_same_bytes_as_decoding_the_whole_map() {
        let long = "r".repeat(300);
        for m in corpus() {
            // Every prefix too: the first frame of a streamed message may
            // end anywhere.
            for n in 0..=m.len() {
                let p = m.slice(..n);
                let t = Trace::read(&p);
                let want = decoding::visited(&p);
                assert_eq!(t.hops().collect::<Vec<_>>(), want, "{p:02x?}");
                assert_eq!(visited(&p), want);
                for r in ["A", "B", "Z", "router-099"] {
                    assert_eq!(t.has_visited(r), want.iter().any(|h| h == r));
                }
                for r in ["B", long.as_str()] {
                    let hop = t.with_hop(r);
                    assert_eq!(hop, decoding::with_hop(&p, r), "{p:02x?}");
                    assert_eq!(with_hop(&p, r), hop);
                }
                assert_eq!(t.stamp(), decoding::stamp(&p), "{p:02x?}");
                for stamp in [None, Some(0), Some(200), Some(0xfeed_f00d_dead_beef)] {
                    assert_eq!(
                        t.begin("B", stamp),
                        decoding::begin(&p, "B", stamp),
                        "{p:02x?}"
                    );
                }
                assert_eq!(t.strip(), decoding::strip(&p), "{p:02x?}");
                assert_eq!(strip(&p), t.strip());
            }
        }
    }

    #[test]
    fn other_entries_keep_their_place_around_the_trace() {
        let m = message(
            &head(),
            Some(vec![
                (sym("x-a"), Value::Uint(1)),
                (sym(TRACE), hops(&["A"])),
                (sym("x-b"), string("after")),
            ]),
        );
        let traced = with_hop(&m, "B").unwrap();
        assert_eq!(
            annotations(&traced),
            [
                ("x-a".into(), Value::Uint(1)),
                (TRACE.into(), hops(&["A", "B"])),
                ("x-b".into(), string("after")),
            ]
        );
        let without = message(
            &head(),
            Some(vec![
                (sym("x-a"), Value::Uint(1)),
                (sym("x-b"), string("after")),
            ]),
        );
        assert_eq!(strip(&traced), without);
        assert_eq!(strip(&m), without);
    }

    #[test]
    fn a_trace_that_is_not_a_list_names_no_router_and_is_replaced() {
        let m = message(
            &[],
            Some(vec![
                (sym(TRACE), string("A")),
                (sym("x-b"), Value::Uint(2)),
            ]),
        );
        let t = Trace::read(&m);
        assert_eq!(t.hops().count(), 0);
        assert!(!t.has_visited("A"));
        assert_eq!(
            annotations(&t.with_hop("B").unwrap()),
            [(TRACE.into(), hops(&["B"])), ("x-b".into(), Value::Uint(2))]
        );
        assert_eq!(
            t.strip(),
            message(&[], Some(vec![(sym("x-b"), Value::Uint(2))]))
        );
    }

    #[test]
    fn a_prefix_ending_before_the_annotations_do_goes_on_unchanged() {
        let entries = vec![(sym("x-a"), Value::Uint(1)), (sym(TRACE), hops(&["A"]))];
        let ends = head().len() + 3 + Map(entries.clone()).to_bytes().len();
        let m = message(&head(), Some(entries));
        let whole = with_hop(&m, "B").unwrap();
        let grown = whole.len() - m.len();
        let mut cut = 0;
        for n in 0..=m.len() {
            let p = m.slice(..n);
            let t = Trace::read(&p);
            match t.with_hop("B") {
                None => {
                    cut = n;
                    assert!(!t.has_visited("A"));
                    assert_eq!(t.strip(), p);
                }
                Some(traced) => {
                    assert_eq!(traced, whole.slice(..n + grown));
                    assert!(t.has_visited("A"));
                }
            }
        }
        assert_eq!(cut + 1, ends, "known exactly where the section ends");
    }

    #[test]
    fn malformed_annotations_go_on_unchanged() {
        let entry = |m: &mut BytesMut| {
            sym(TRACE).encode(m);
            hops(&["A"]).encode(m);
        };
        let mut odd = BytesMut::new();
        entry(&mut odd);
        sym("x-lone-key").encode(&mut odd);
        let mut bad_utf8 = BytesMut::new();
        sym(TRACE).encode(&mut bad_utf8);
        bad_utf8.extend_from_slice(&[fc::LIST8, 4, 1, fc::STR8, 1, 0xff]);
        let map8 = |count: u8, body: &[u8]| {
            let mut m = vec![fc::MAP8, body.len() as u8 + 1, count];
            m.extend_from_slice(body);
            m
        };
        let mut trailing = BytesMut::new();
        entry(&mut trailing);
        trailing.extend_from_slice(&[fc::NULL]);
        for ma in [
            map8(3, &odd),
            map8(4, &odd),
            map8(2, &bad_utf8),
            map8(2, &trailing),
            map8(200, &trailing),
            vec![fc::NULL],
            vec![fc::LIST0],
            vec![fc::MAP8, 0],
            vec![fc::MAP8, 200, 2],
        ] {
            let m = message_with(&head(), Some(&ma));
            let t = Trace::read(&m);
            assert_eq!(decoding::with_hop(&m, "B"), None, "{ma:02x?}");
            assert_eq!(t.with_hop("B"), None, "{ma:02x?}");
            assert_eq!(t.strip(), m);
            assert_eq!(t.hops().count(), 0);
        }
        // A section with a symbolic descriptor, or not described at all.
        for first in [&[0x00, fc::SYM8, 1, b'x', fc::NULL][..], &[fc::NULL][..]] {
            let m = message_with(first, None);
            assert_eq!(with_hop(&m, "B"), None);
            assert_eq!(strip(&m), m);
        }
    }

    #[test]
    fn other_entries_are_carried_as_they_were_encoded() {
        // A wider encoding than needed (str32 for a short string) and a
        // string that is not UTF-8: neither is decoded, both are kept.
        let mut body = BytesMut::new();
        sym("x-wide").encode(&mut body);
        body.extend_from_slice(&[fc::STR32, 0, 0, 0, 2, b'o', b'k']);
        sym("x-raw").encode(&mut body);
        body.extend_from_slice(&[fc::STR8, 1, 0xff]);
        let mut ma = vec![fc::MAP32];
        ma.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        ma.extend_from_slice(&4u32.to_be_bytes());
        ma.extend_from_slice(&body);
        let m = message_with(&[], Some(&ma));

        let traced = with_hop(&m, "A").unwrap();
        assert_eq!(visited(&traced), ["A"]);
        let start = traced
            .windows(body.len())
            .position(|w| w == &body[..])
            .expect("the entries' bytes unchanged");
        // The header is written compact, as `Map` writes it.
        assert_eq!(traced[start - 3], fc::MAP8);
        // Stripped, the entries are the same bytes again, under the
        // compact header.
        let mut compact = vec![fc::MAP8, body.len() as u8 + 1, 4];
        compact.extend_from_slice(&body);
        assert_eq!(strip(&traced), message_with(&[], Some(&compact)));
    }
}
