//! Every decoder is total: malformed input of any kind is a `DecodeError` or
//! `FrameError` (the specific one asserted for each targeted case), never a
//! panic, a stack overflow or an allocation sized by an untrusted length.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{BufMut, Bytes, BytesMut};
use ferry_proto::codec::{
    Decode, DecodeError, Decoder, Described, Descriptor, Encode, Fields, MAX_DEPTH, Map, Str,
    Symbol, Symbols, Value,
};
use ferry_proto::definitions::{
    Attach, Begin, Close, DeliveryState, Disposition, Error, Flow, Open, Performative, Role,
    SaslCode, SaslFrame, SaslInit, SaslMechanisms, SenderSettleMode, SequenceNo, Source, Target,
    TargetTerminus, TerminusExpiryPolicy, Transfer, condition,
};
use ferry_proto::frame::{
    Frame, FrameError, Layer, decode_frame, encode_amqp_frame, encode_sasl_frame,
};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// An allocator that remembers the largest allocation made on each thread, so
// a test can check a hostile length never sized one.
// ---------------------------------------------------------------------------

struct MaxAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: forwards to `System` unchanged; only records sizes.
unsafe impl GlobalAlloc for MaxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: MaxAlloc = MaxAlloc;

/// Runs `f` and returns its result with the largest single allocation it
/// made on this thread.
fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(|l| l.get()))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Bytes from hex, in groups separated by spaces (`"d0 00000004"`), with
/// ASCII text quoted: `'abc'`.
fn h(s: &str) -> Bytes {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if let Some(text) = tok.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            out.extend_from_slice(text.as_bytes());
        } else {
            assert!(tok.len() % 2 == 0, "hex bytes come in pairs: {tok}");
            for pair in tok.as_bytes().chunks(2) {
                let pair = std::str::from_utf8(pair).expect("ascii");
                out.push(u8::from_str_radix(pair, 16).expect("hex byte"));
            }
        }
    }
    Bytes::from(out)
}

fn value(hex: &str) -> Result<Value, DecodeError> {
    Value::from_bytes(h(hex))
}

fn perf(hex: &str) -> Result<Performative, DecodeError> {
    Performative::from_bytes(h(hex))
}

/// An AMQP frame (type 0, data offset 2, channel 0) around `body`.
fn amqp_frame(body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(8 + body.len() as u32);
    buf.put_slice(&[2, 0, 0, 0]);
    buf.put_slice(body);
    buf
}

fn sasl_frame(body: &[u8]) -> BytesMut {
    let mut buf = amqp_frame(body);
    buf[5] = 1;
    buf
}

fn truncated(r: Result<impl std::fmt::Debug, DecodeError>) -> bool {
    matches!(r, Err(DecodeError::Truncated { .. }))
}

/// A value nested `depth` levels deep, each level built by `wrap` around
/// the encoding of the level below.
fn nest(depth: usize, innermost: &[u8], wrap: impl Fn(&[u8]) -> Vec<u8>) -> Bytes {
    let mut cur = innermost.to_vec();
    for _ in 0..depth {
        cur = wrap(&cur);
    }
    Bytes::from(cur)
}

fn list32_of_one(inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0xd0];
    v.extend_from_slice(&(inner.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(inner);
    v
}

/// A frame of each kind the decoders handle, for mutation and truncation.
fn sample_frames() -> Vec<(Layer, BytesMut)> {
    let mut out = Vec::new();
    let open = Performative::Open(Box::new(Open {
        container_id: "container".into(),
        hostname: Some("host".into()),
        max_frame_size: Some(65536),
        channel_max: Some(7),
        offered_capabilities: Some(Symbols::from(["ANONYMOUS-RELAY"])),
        properties: Some(Fields(vec![(
            Symbol::from("product"),
            Value::String(Str::from("ferry")),
        )])),
        ..Open::default()
    }));
    let attach = Performative::Attach(Box::new(Attach {
        name: "link".into(),
        role: Role::Receiver,
        snd_settle_mode: Some(SenderSettleMode::Settled),
        source: Some(Source {
            address: Some("q".into()),
            expiry_policy: Some(TerminusExpiryPolicy::LinkDetach),
            filter: Some(Map(vec![(
                Value::Symbol(Symbol::from("f")),
                Value::Described(Box::new(Described {
                    descriptor: Descriptor::Code(0x0000_468c_0000_0004),
                    value: Value::String(Str::from("a = 1")),
                })),
            )])),
            default_outcome: Some(DeliveryState::Accepted),
            ..Source::default()
        }),
        target: Some(TargetTerminus::Target(Target::new("t"))),
        initial_delivery_count: Some(SequenceNo(0)),
        ..Attach::default()
    }));
    let flow = Performative::Flow(Flow {
        next_incoming_id: Some(SequenceNo(1)),
        incoming_window: 100,
        link_credit: Some(10),
        drain: Some(true),
        ..Flow::default()
    });
    let disposition = Performative::Disposition(Disposition {
        role: Role::Receiver,
        first: SequenceNo(4),
        settled: Some(true),
        state: Some(DeliveryState::Rejected(
            ferry_proto::definitions::Rejected {
                error: Some(Error::new(condition::DECODE_ERROR, "x")),
            },
        )),
        ..Disposition::default()
    });
    let close = Performative::Close(Close {
        error: Some(Error::new(condition::FRAMING_ERROR, "bad frame")),
    });
    for p in [
        open,
        Performative::Begin(Begin {
            remote_channel: Some(1),
            incoming_window: 10,
            ..Begin::default()
        }),
        attach,
        flow,
        disposition,
        close,
    ] {
        let mut buf = BytesMut::new();
        encode_amqp_frame(3, &p, &[], &mut buf);
        out.push((Layer::Amqp, buf));
    }
    let mut buf = BytesMut::new();
    encode_amqp_frame(
        0,
        &Performative::Transfer(Transfer {
            delivery_id: Some(SequenceNo(0)),
            delivery_tag: Some(Bytes::from_static(b"tag")),
            ..Transfer::default()
        }),
        b"\x00\x53\x77\xa1\x02hi",
        &mut buf,
    );
    out.push((Layer::Amqp, buf));
    for f in [
        SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: Symbols::from(["PLAIN", "ANONYMOUS"]),
        }),
        SaslFrame::Init(SaslInit {
            mechanism: Symbol::from("PLAIN"),
            initial_response: Some(Bytes::from_static(b"\0u\0p")),
            hostname: Some("h".into()),
        }),
        SaslFrame::Outcome(ferry_proto::definitions::SaslOutcome {
            code: SaslCode::Auth,
            additional_data: None,
        }),
    ] {
        let mut buf = BytesMut::new();
        encode_sasl_frame(&f, &mut buf);
        out.push((Layer::Sasl, buf));
    }
    out
}

/// Decodes frames from `buf` until it needs more bytes or fails, checking
/// whatever decodes re-encodes to an equal frame.
fn drain_frames(mut buf: BytesMut, max: u32, layer: Layer) {
    while let Ok(Some(frame)) = decode_frame(&mut buf, max, layer) {
        let mut again = BytesMut::new();
        match &frame {
            Frame::Amqp {
                channel,
                performative,
                payload,
            } => encode_amqp_frame(*channel, performative, payload, &mut again),
            Frame::Sasl(f) => encode_sasl_frame(f, &mut again),
            Frame::Empty => continue,
        }
        assert_eq!(
            decode_frame(&mut again, u32::MAX, layer),
            Ok(Some(frame)),
            "a decoded frame re-encodes to itself"
        );
    }
}

/// Decodes `bytes` as every type this crate decodes, checking nothing
/// panics and anything that decodes re-encodes to an equal value.
fn decode_as_everything(bytes: &Bytes) {
    fn check<T: Decode + Encode + PartialEq + std::fmt::Debug>(bytes: &Bytes) {
        if let Ok(v) = T::from_bytes(bytes.clone()) {
            assert_eq!(T::from_bytes(v.to_bytes()).as_ref(), Ok(&v));
        }
    }
    check::<Value>(bytes);
    check::<Performative>(bytes);
    check::<SaslFrame>(bytes);
    check::<DeliveryState>(bytes);
    check::<Source>(bytes);
    check::<TargetTerminus>(bytes);
    check::<Error>(bytes);
    check::<Fields>(bytes);
    check::<Symbols>(bytes);
    check::<Map>(bytes);
    check::<Str>(bytes);
    check::<Symbol>(bytes);
    check::<u32>(bytes);
    check::<u64>(bytes);
    check::<bool>(bytes);
    check::<char>(bytes);
    let mut d = Decoder::new(bytes.clone());
    let _ = d.read_raw_value();
}

// ---------------------------------------------------------------------------
// Totality properties
// ---------------------------------------------------------------------------

/// A small value generator, to build structurally plausible garbage.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u32>().prop_map(Value::Uint),
        (0u64..0x50).prop_map(Value::Ulong),
        any::<i64>().prop_map(Value::Long),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        any::<char>().prop_map(Value::Char),
        "[a-z:-]{0,12}".prop_map(|s| Value::Symbol(Symbol::from(s))),
        ".{0,12}".prop_map(|s| Value::String(Str::from(s))),
        vec(any::<u8>(), 0..12).prop_map(|b| Value::Binary(Bytes::from(b))),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..12).prop_map(Value::List),
            vec((inner.clone(), inner.clone()), 0..3).prop_map(|kv| Value::Map(Map(kv))),
            (
                prop_oneof![
                    (0u64..0x50).prop_map(Descriptor::Code),
                    "amqp:[a-z-]{0,12}:list".prop_map(|s| Descriptor::Symbol(Symbol::from(s))),
                ],
                inner
            )
                .prop_map(|(descriptor, value)| Value::Described(Box::new(
                    Described { descriptor, value }
                ))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let bytes = Bytes::from(bytes);
        decode_as_everything(&bytes);
        for max in [512, 4096, u32::MAX] {
            drain_frames(BytesMut::from(&bytes[..]), max, Layer::Amqp);
            drain_frames(BytesMut::from(&bytes[..]), max, Layer::Sasl);
        }
    }

    /// Arbitrary bytes after a valid frame header and a performative's
    /// descriptor, to get past the first checks.
    #[test]
    fn arbitrary_performative_bodies_never_panic(
        code in prop_oneof![0x10u8..=0x18, 0x40u8..=0x44, 0x1du8..=0x30],
        body in vec(any::<u8>(), 0..200),
    ) {
        let mut b = vec![0x00, 0x53, code];
        b.extend_from_slice(&body);
        let b = Bytes::from(b);
        decode_as_everything(&b);
        drain_frames(amqp_frame(&b), u32::MAX, Layer::Amqp);
        drain_frames(sasl_frame(&b), u32::MAX, Layer::Sasl);
    }

    /// Well-formed values in the wrong places: any field list under any
    /// known descriptor.
    #[test]
    fn arbitrary_field_lists_never_panic(
        code in prop_oneof![0x10u64..=0x18, 0x40u64..=0x44, 0x1du64..=0x30],
        fields in vec(arb_value(), 0..16),
    ) {
        let v = Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(code),
            value: Value::List(fields),
        }));
        let b = v.to_bytes();
        decode_as_everything(&b);
        drain_frames(amqp_frame(&b), u32::MAX, Layer::Amqp);
        drain_frames(sasl_frame(&b), u32::MAX, Layer::Sasl);
    }

    /// Valid frames with a few bytes overwritten.
    #[test]
    fn mutated_frames_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let frames = sample_frames();
        let (layer, mut buf) = frames[pick.index(frames.len())].clone();
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        let body = buf.clone().freeze().slice(8..);
        decode_as_everything(&body);
        drain_frames(buf, 1 << 20, layer);
    }
}

// ---------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------

#[test]
fn every_prefix_of_a_frame_waits_for_more() {
    for (layer, frame) in sample_frames() {
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(
                decode_frame(&mut buf, 1 << 20, layer),
                Ok(None),
                "cut {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }
}

#[test]
fn every_prefix_of_a_frame_body_is_truncated() {
    for (layer, frame) in sample_frames() {
        let body = &frame[8..];
        // The transfer's payload may be cut anywhere: stop at the
        // performative.
        let end = match layer {
            Layer::Amqp => {
                let mut d = Decoder::new(Bytes::copy_from_slice(body));
                Performative::decode(&mut d).unwrap();
                d.position()
            }
            Layer::Sasl => body.len(),
        };
        for cut in 1..end {
            let prefix = Bytes::copy_from_slice(&body[..cut]);
            // As a value, a performative and a frame whose size matches the
            // shortened body.
            assert!(truncated(Value::from_bytes(prefix.clone())), "cut {cut}");
            let r = match layer {
                Layer::Amqp => Performative::from_bytes(prefix.clone()).map(drop),
                Layer::Sasl => SaslFrame::from_bytes(prefix.clone()).map(drop),
            };
            assert!(truncated(r), "cut {cut}");
            let mut buf = match layer {
                Layer::Amqp => amqp_frame(&prefix),
                Layer::Sasl => sasl_frame(&prefix),
            };
            assert!(
                matches!(
                    decode_frame(&mut buf, 1 << 20, layer),
                    Err(FrameError::Decode(DecodeError::Truncated { .. }))
                ),
                "cut {cut}"
            );
        }
    }
}

#[test]
fn truncated_primitives() {
    for hex in [
        "",
        "50",
        "60 01",
        "70 000000",
        "52",
        "80 00",
        "53",
        "71 00",
        "54",
        "81",
        "55",
        "72 0000",
        "82 00",
        "73 000000",
        "83 00",
        "98 00",
        "74",
        "84",
        "94 00",
        "56",
        "a0",
        "a0 02 00",
        "b0 00000001",
        "a1 05 'abc'",
        "b1 00",
        "a3 01",
        "b3 00000002 'a'",
        "00",
        "00 53",
        "00 53 01",
        "00 a3 03 'ab'",
    ] {
        assert!(truncated(value(hex)), "{hex:?}: {:?}", value(hex));
    }
}

// ---------------------------------------------------------------------------
// Wrong constructors and values
// ---------------------------------------------------------------------------

#[test]
fn undefined_format_codes() {
    for code in 0u8..=255 {
        if ferry_proto::codec::format::is_defined(code) {
            continue;
        }
        assert_eq!(
            Value::from_bytes(Bytes::from(vec![code, 0, 0, 0, 0, 0, 0, 0, 0])),
            Err(DecodeError::InvalidFormatCode(code))
        );
    }
    // Inside a list, as an array element constructor, as a descriptor.
    assert_eq!(
        value("c0 02 01 ff"),
        Err(DecodeError::InvalidFormatCode(0xff))
    );
    assert_eq!(
        value("e0 02 01 57"),
        Err(DecodeError::InvalidFormatCode(0x57))
    );
    assert_eq!(value("00 2f 40"), Err(DecodeError::InvalidFormatCode(0x2f)));
}

#[test]
fn wrong_constructors() {
    let unexpected = |expected: &'static str, found: u8| {
        Err::<(), _>(DecodeError::UnexpectedFormat { expected, found })
    };
    assert_eq!(
        u32::from_bytes(h("a3 01 'a'")).map(drop),
        unexpected("uint", 0xa3)
    );
    assert_eq!(
        u64::from_bytes(h("52 01")).map(drop),
        unexpected("ulong", 0x52)
    );
    assert_eq!(
        bool::from_bytes(h("43")).map(drop),
        unexpected("boolean", 0x43)
    );
    assert_eq!(
        Str::from_bytes(h("a3 01 'a'")).map(drop),
        unexpected("string", 0xa3)
    );
    assert_eq!(
        Symbol::from_bytes(h("a1 01 'a'")).map(drop),
        unexpected("symbol", 0xa1)
    );
    assert_eq!(Map::from_bytes(h("45")).map(drop), unexpected("map", 0x45));
    assert_eq!(
        Symbols::from_bytes(h("a1 01 'a'")).map(drop),
        unexpected("symbol or array of symbols", 0xa1)
    );
    // A performative must be a described list.
    assert_eq!(perf("45").map(drop), unexpected("performative", 0x45));
    assert_eq!(
        perf("00 53 10 c1 01 00").map(drop),
        unexpected("list (composite body)", 0xc1)
    );
    // A descriptor is a ulong or a symbol.
    assert_eq!(
        perf("00 a1 03 'abc' 45").map(drop),
        unexpected("descriptor (ulong or symbol)", 0xa1)
    );
    assert_eq!(
        perf("00 70 00000010 45").map(drop),
        unexpected("descriptor (ulong or symbol)", 0x70)
    );
    // open's container-id is a string, not a symbol.
    assert_eq!(
        perf("00 53 10 c0 04 01 a3 01 'c'").map(drop),
        unexpected("string", 0xa3)
    );
    // begin's next-outgoing-id is a uint.
    assert_eq!(
        perf("00 53 11 c0 04 02 40 55 01").map(drop),
        unexpected("uint", 0x55)
    );
    // An array of symbols whose elements are strings.
    assert_eq!(
        Symbols::from_bytes(h("e0 04 01 a1 01 'a'")).map(drop),
        unexpected("symbol", 0xa1)
    );
    // A symbol array with a descriptor.
    assert_eq!(
        Symbols::from_bytes(h("e0 06 01 00 53 01 a3 00")).map(drop),
        unexpected("symbol array", 0x00)
    );
    // The variable-width reader refuses fixed-width codes.
    let mut d = Decoder::new(h("00"));
    assert_eq!(
        d.read_variable_len(0x70),
        Err(DecodeError::UnexpectedFormat {
            expected: "variable-width value",
            found: 0x70
        })
    );
    // Compound readers refuse other codes.
    let mut d = Decoder::new(h("00"));
    assert!(matches!(
        d.read_compound(0xe0),
        Err(DecodeError::UnexpectedFormat { found: 0xe0, .. })
    ));
    assert!(matches!(
        d.read_array_header(0xc0),
        Err(DecodeError::UnexpectedFormat { found: 0xc0, .. })
    ));
}

#[test]
fn values_outside_restricted_types() {
    let invalid = |ty: &'static str, v: &str| {
        Err::<(), _>(DecodeError::InvalidValue {
            ty,
            value: v.to_string(),
        })
    };
    assert_eq!(
        bool::from_bytes(h("56 02")).map(drop),
        invalid("boolean", "2")
    );
    assert_eq!(
        value("56 ff"),
        Err(DecodeError::InvalidValue {
            ty: "boolean",
            value: "255".into()
        })
    );
    // attach with snd-settle-mode 3.
    assert_eq!(
        perf("00 53 12 c0 08 04 a1 01 'n' 43 42 50 03").map(drop),
        invalid("sender-settle-mode", "3")
    );
    // sasl-outcome with code 9.
    assert_eq!(
        SaslFrame::from_bytes(h("00 53 44 c0 03 01 50 09")).map(drop),
        invalid("sasl-code", "9")
    );
    // source with expiry-policy "soon".
    assert_eq!(
        Source::from_bytes(h("00 53 28 c0 09 03 40 40 a3 04 'soon'")).map(drop),
        invalid("terminus-expiry-policy", "soon")
    );
    // source with durable 7.
    assert_eq!(
        Source::from_bytes(h("00 53 28 c0 04 02 40 52 07")).map(drop),
        invalid("terminus-durability", "7")
    );
}

#[test]
fn missing_mandatory_fields() {
    assert_eq!(
        perf("00 53 10 45"),
        Err(DecodeError::MissingField("container_id"))
    );
    assert_eq!(
        perf("00 53 10 c0 02 01 40"),
        Err(DecodeError::MissingField("container_id"))
    );
    // begin without incoming-window.
    assert_eq!(
        perf("00 53 11 c0 03 02 40 43"),
        Err(DecodeError::MissingField("incoming_window"))
    );
    // attach with a null role.
    assert_eq!(
        perf("00 53 12 c0 06 03 a1 01 'n' 43 40"),
        Err(DecodeError::MissingField("role"))
    );
    assert_eq!(
        SaslFrame::from_bytes(h("00 53 41 45")),
        Err(DecodeError::MissingField("mechanism"))
    );
    assert_eq!(
        Error::from_bytes(h("00 53 1d 45")),
        Err(DecodeError::MissingField("condition"))
    );
}

// ---------------------------------------------------------------------------
// Sizes and counts
// ---------------------------------------------------------------------------

#[test]
fn sizes_past_the_buffer() {
    for hex in [
        "c0 05 01 40",
        "c0 ff 00",
        "d0 00000008 00000001 40",
        "d0 ffffffff 00000000",
        "c1 05 02 40 40",
        "d1 ffffffff 00000000",
        "e0 05 01 40",
        "e0 ff 01 52",
        "f0 00000010 00000001 70 00000000",
        "f0 ffffffff 00000000",
        "a0 03 'ab'",
        "b0 ffffffff",
        "a1 ff 'abc'",
        "b1 80000000 'abc'",
        "a3 02 'a'",
        "b3 ffffffff 'a'",
    ] {
        let (r, largest) = largest_alloc(|| value(hex));
        assert!(truncated(r.clone()), "{hex}: {r:?}");
        assert!(largest < 4096, "{hex}: allocated {largest} bytes");
    }
}

#[test]
fn counts_past_the_size() {
    assert_eq!(
        value("c0 01 05"),
        Err(DecodeError::InvalidLength("compound count"))
    );
    assert_eq!(
        value("d0 00000004 ffffffff"),
        Err(DecodeError::InvalidLength("compound count"))
    );
    assert_eq!(
        value("d1 00000006 fffffffe 40 40"),
        Err(DecodeError::InvalidLength("compound count"))
    );
    assert_eq!(value("c0 00"), Err(DecodeError::InvalidLength("compound8")));
    assert_eq!(
        value("d0 00000003 000000"),
        Err(DecodeError::InvalidLength("compound32"))
    );
    assert_eq!(value("e0 00"), Err(DecodeError::InvalidLength("array8")));
    assert_eq!(
        value("f0 00000002 0000"),
        Err(DecodeError::InvalidLength("array32"))
    );
    assert_eq!(
        value("e0 02 05 40"),
        Err(DecodeError::InvalidLength("array count"))
    );
    // A count within the size but more elements than the bytes hold.
    assert!(truncated(value("c0 03 02 52 01")));
    assert!(truncated(value("e0 03 02 52 01")));
    // Fewer elements than the bytes hold.
    assert_eq!(value("c0 03 01 40 40"), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(
        value("e0 04 01 52 01 02"),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(value("41 41"), Err(DecodeError::TrailingBytes(1)));
    // A composite's list with an element missing for its count.
    assert!(truncated(perf("00 53 18 c0 03 02 00 53")));
}

#[test]
fn four_billion_zero_width_elements_fail_fast() {
    for hex in [
        "f0 00000005 ffffffff 40",
        "f0 00000005 ffffffff 41",
        "f0 00000005 ffffffff 43",
        "f0 00000005 ffffffff 45",
        "f0 00000008 ffffffff 00 53 01 40",
        "e0 02 ff 40",
    ] {
        let start = std::time::Instant::now();
        let (r, largest) = largest_alloc(|| value(hex));
        assert_eq!(r, Err(DecodeError::InvalidLength("array count")), "{hex}");
        assert!(largest < 4096, "{hex}: allocated {largest} bytes");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
    // The same as a symbol array (open's capabilities) and in a frame.
    let (r, largest) = largest_alloc(|| Symbols::from_bytes(h("f0 00000005 ffffffff a3")));
    assert_eq!(r, Err(DecodeError::InvalidLength("array count")));
    assert!(largest < 4096);
    let mut frame = amqp_frame(&h(
        "00 53 10 c0 14 08 a1 01 'c' 40 40 40 40 40 40 f0 00000005 ffffffff a3",
    ));
    let (r, largest) = largest_alloc(|| decode_frame(&mut frame, 512, Layer::Amqp));
    assert_eq!(
        r,
        Err(FrameError::Decode(DecodeError::InvalidLength(
            "array count"
        )))
    );
    assert!(largest < 4096);
    // Lists and maps claiming many elements are bounded by size too.
    let (r, largest) = largest_alloc(|| value("d0 0000ffff ffffffff"));
    assert!(truncated(r));
    assert!(largest < 4096);
}

#[test]
fn odd_map_counts() {
    assert_eq!(value("c1 02 01 40"), Err(DecodeError::OddMapCount(1)));
    assert_eq!(
        value("d1 00000007 00000003 40 40 40"),
        Err(DecodeError::OddMapCount(3))
    );
    assert_eq!(
        Fields::from_bytes(h("c1 04 03 40 40 40")),
        Err(DecodeError::OddMapCount(3))
    );
    // In open's properties, in a frame: a decode error.
    let mut frame = amqp_frame(&h(
        "00 53 10 c0 10 0a a1 01 'c' 40 40 40 40 40 40 40 40 c1 02 01 40",
    ));
    let err = decode_frame(&mut frame, 512, Layer::Amqp).unwrap_err();
    assert_eq!(err, FrameError::Decode(DecodeError::OddMapCount(1)));
    assert_eq!(err.condition(), condition::DECODE_ERROR);
}

// ---------------------------------------------------------------------------
// Depth
// ---------------------------------------------------------------------------

#[test]
fn deeply_nested_lists_are_too_deep() {
    let deep = nest(10_000, &[0x45], list32_of_one);
    assert_eq!(
        Value::from_bytes(deep.clone()),
        Err(DecodeError::TooDeep(MAX_DEPTH))
    );
    let mut d = Decoder::new(deep.clone());
    // Skipping a value does not recurse into it, so it is fine.
    assert_eq!(d.read_raw_value(), Ok(deep.clone()));
    // As a field past the last one open defines (which a later version of
    // the spec might add): skipped without descending into it.
    let mut body = h("00 53 10 d0").to_vec();
    let fields = [&h("a1 01 'c' 40 40 40 40 40 40 40 40 40")[..], &deep[..]].concat();
    body.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    body.extend_from_slice(&11u32.to_be_bytes());
    body.extend_from_slice(&fields);
    let mut frame = amqp_frame(&body);
    assert!(matches!(
        decode_frame(&mut frame, u32::MAX, Layer::Amqp),
        Ok(Some(Frame::Amqp {
            performative: Performative::Open(_),
            ..
        }))
    ));
    // As open's properties: not a map.
    let mut body = h("00 53 10 d0").to_vec();
    let fields = [&h("a1 01 'c' 40 40 40 40 40 40 40 40")[..], &deep[..]].concat();
    body.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    body.extend_from_slice(&10u32.to_be_bytes());
    body.extend_from_slice(&fields);
    let mut frame = amqp_frame(&body);
    assert_eq!(
        decode_frame(&mut frame, u32::MAX, Layer::Amqp),
        Err(FrameError::Decode(DecodeError::UnexpectedFormat {
            expected: "fields (map)",
            found: 0xd0
        }))
    );
    // Nested maps as a property value: too deep.
    let deep_map = nest(10_000, &[0x40], |inner| {
        let mut v = vec![0xd1];
        v.extend_from_slice(&(inner.len() as u32 + 5).to_be_bytes());
        v.extend_from_slice(&2u32.to_be_bytes());
        v.push(0x40);
        v.extend_from_slice(inner);
        v
    });
    let props = [
        &h("d1")[..],
        &(deep_map.len() as u32 + 7).to_be_bytes(),
        &h("00000002 a3 01 'k'"),
        &deep_map,
    ]
    .concat();
    let mut body = h("00 53 10 d0").to_vec();
    let fields = [&h("a1 01 'c' 40 40 40 40 40 40 40 40")[..], &props[..]].concat();
    body.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    body.extend_from_slice(&10u32.to_be_bytes());
    body.extend_from_slice(&fields);
    assert_eq!(
        Performative::from_bytes(Bytes::from(body)),
        Err(DecodeError::TooDeep(MAX_DEPTH))
    );
}

#[test]
fn deeply_nested_arrays_and_described_values_are_too_deep() {
    let arrays = nest(10_000, &h("f0 00000005 00000000 40"), |inner| {
        // An array of one array: the inner array's constructor is the
        // element constructor, its body the element.
        let mut v = vec![0xf0];
        v.extend_from_slice(&(inner.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(inner);
        v
    });
    assert_eq!(
        Value::from_bytes(arrays),
        Err(DecodeError::TooDeep(MAX_DEPTH))
    );
    let described = nest(10_000, &[0x40], |inner| {
        [&[0x00, 0x53, 0x01][..], inner].concat()
    });
    assert_eq!(
        Value::from_bytes(described.clone()),
        Err(DecodeError::TooDeep(MAX_DEPTH))
    );
    // Skipping recurses through described values, and stops too.
    let mut d = Decoder::new(described);
    assert_eq!(d.read_raw_value(), Err(DecodeError::TooDeep(MAX_DEPTH)));
    // In a frame, as a field past the last one close defines.
    let deep = nest(10_000, &[0x40], |inner| {
        [&[0x00, 0x53, 0x01][..], inner].concat()
    });
    let mut body = h("00 53 18 d0").to_vec();
    let fields = [&h("40")[..], &deep[..]].concat();
    body.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    body.extend_from_slice(&2u32.to_be_bytes());
    body.extend_from_slice(&fields);
    let mut frame = amqp_frame(&body);
    assert_eq!(
        decode_frame(&mut frame, u32::MAX, Layer::Amqp),
        Err(FrameError::Decode(DecodeError::TooDeep(MAX_DEPTH)))
    );
}

#[test]
fn nesting_up_to_the_limit_decodes() {
    // MAX_DEPTH compounds, the innermost a list0.
    let ok = nest(MAX_DEPTH - 1, &[0x45], list32_of_one);
    assert!(Value::from_bytes(ok).is_ok());
    let too_deep = nest(MAX_DEPTH, &[0x45], list32_of_one);
    assert_eq!(
        Value::from_bytes(too_deep),
        Err(DecodeError::TooDeep(MAX_DEPTH))
    );
}

#[test]
fn nested_described_descriptors() {
    // A descriptor must be a ulong or a symbol, not another described value.
    let err = Err(DecodeError::UnexpectedFormat {
        expected: "descriptor (ulong or symbol)",
        found: 0x00,
    });
    assert_eq!(value("00 00 53 01 40 40"), err);
    let many = Bytes::from([vec![0u8; 10_000], vec![0x40]].concat());
    assert_eq!(Value::from_bytes(many.clone()), err);
    assert_eq!(
        Performative::from_bytes(many.clone()).map(drop),
        err.clone().map(drop)
    );
    assert_eq!(
        SaslFrame::from_bytes(many.clone()).map(drop),
        err.clone().map(drop)
    );
    assert_eq!(
        DeliveryState::from_bytes(many.clone()).map(drop),
        err.clone().map(drop)
    );
    assert_eq!(
        TargetTerminus::from_bytes(many.clone()).map(drop),
        err.clone().map(drop)
    );
    // Skipping them (an unknown trailing field) stops at the depth limit.
    let mut d = Decoder::new(many);
    assert_eq!(d.skip_value(), Err(DecodeError::TooDeep(MAX_DEPTH)));
    // As an array's element constructor: one descriptor only.
    assert_eq!(
        value("e0 06 01 00 53 01 00 53 02 52 01"),
        Err(DecodeError::InvalidFormatCode(0x00))
    );
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

#[test]
fn invalid_utf8() {
    for hex in [
        "a1 02 c328",
        "a1 01 ff",
        "b1 00000003 eda080",
        "a1 02 'a' 80",
    ] {
        assert_eq!(value(hex), Err(DecodeError::InvalidUtf8("string")), "{hex}");
    }
    for hex in ["a3 02 c328", "b3 00000001 fe"] {
        assert_eq!(value(hex), Err(DecodeError::InvalidUtf8("symbol")), "{hex}");
    }
    // In a descriptor, an array of symbols, a fields key, a map key.
    assert_eq!(
        value("00 a3 01 ff 40"),
        Err(DecodeError::InvalidUtf8("symbol"))
    );
    assert_eq!(
        perf("00 a3 01 ff 45"),
        Err(DecodeError::InvalidUtf8("symbol"))
    );
    assert_eq!(
        value("e0 06 02 a3 01 'a' 01 ff"),
        Err(DecodeError::InvalidUtf8("symbol"))
    );
    assert_eq!(
        Symbols::from_bytes(h("e0 06 02 a3 01 'a' 01 ff")),
        Err(DecodeError::InvalidUtf8("symbol"))
    );
    assert_eq!(
        Fields::from_bytes(h("c1 05 02 a3 01 ff 40")),
        Err(DecodeError::InvalidUtf8("symbol"))
    );
    assert_eq!(
        value("c1 05 02 a1 01 ff 40"),
        Err(DecodeError::InvalidUtf8("string"))
    );
    // open's container-id.
    assert_eq!(
        perf("00 53 10 c0 04 01 a1 01 ff"),
        Err(DecodeError::InvalidUtf8("string"))
    );
    // A SASL mechanism.
    assert_eq!(
        SaslFrame::from_bytes(h("00 53 41 c0 04 01 a3 01 c3")),
        Err(DecodeError::InvalidUtf8("symbol"))
    );
}

#[test]
fn invalid_chars() {
    for (hex, c) in [
        ("73 0000d800", 0xd800),
        ("73 0000dfff", 0xdfff),
        ("73 00110000", 0x110000),
        ("73 ffffffff", 0xffff_ffff),
    ] {
        assert_eq!(value(hex), Err(DecodeError::InvalidChar(c)), "{hex}");
    }
    assert_eq!(
        value("e0 06 01 73 0000d800"),
        Err(DecodeError::InvalidChar(0xd800))
    );
    assert_eq!(value("73 0010ffff"), Ok(Value::Char('\u{10ffff}')));
}

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

#[test]
fn unknown_descriptors() {
    let unknown = |expected: &'static str, found: &str| {
        Err::<(), _>(DecodeError::UnexpectedDescriptor {
            expected,
            found: found.to_string(),
        })
    };
    assert_eq!(
        perf("00 53 19 45").map(drop),
        unknown("performative", "0x00000000:0x00000019")
    );
    assert_eq!(
        perf("00 80 0000000100000010 45").map(drop),
        unknown("performative", "0x00000001:0x00000010")
    );
    assert_eq!(
        perf("00 a3 0d 'amqp:foo:list' 45").map(drop),
        unknown("performative", "amqp:foo:list")
    );
    // A SASL frame where a performative belongs, and the other way round.
    assert_eq!(
        perf("00 53 40 45").map(drop),
        unknown("performative", "0x00000000:0x00000040")
    );
    assert_eq!(
        SaslFrame::from_bytes(h("00 53 10 45")).map(drop),
        unknown("sasl frame", "0x00000000:0x00000010")
    );
    assert_eq!(
        DeliveryState::from_bytes(h("00 53 28 45")).map(drop),
        unknown("delivery-state", "0x00000000:0x00000028")
    );
    assert_eq!(
        DeliveryState::from_bytes(h("00 a3 0f 'amqp:error:list' 45")).map(drop),
        unknown("delivery-state", "amqp:error:list")
    );
    assert_eq!(
        TargetTerminus::from_bytes(h("00 53 28 45")).map(drop),
        unknown("target or coordinator", "0x00000000:0x00000028")
    );
    assert_eq!(
        Source::from_bytes(h("00 53 29 45")).map(drop),
        unknown("amqp:source:list", "0x00000000:0x00000029")
    );
    assert_eq!(
        Error::from_bytes(h("00 a3 03 'err' 45")).map(drop),
        unknown("amqp:error:list", "err")
    );
    // Not described at all.
    assert_eq!(
        DeliveryState::from_bytes(h("45")).map(drop),
        Err(DecodeError::UnexpectedFormat {
            expected: "delivery-state",
            found: 0x45
        })
    );
    assert_eq!(
        Source::from_bytes(h("45")).map(drop),
        Err(DecodeError::UnexpectedFormat {
            expected: "amqp:source:list",
            found: 0x45
        })
    );
    // A frame whose performative is unknown: a decode error.
    let mut frame = amqp_frame(&h("00 53 19 45"));
    let err = decode_frame(&mut frame, 512, Layer::Amqp).unwrap_err();
    assert!(matches!(
        err,
        FrameError::Decode(DecodeError::UnexpectedDescriptor { .. })
    ));
    assert_eq!(err.condition(), condition::DECODE_ERROR);
}

// ---------------------------------------------------------------------------
// Frame headers
// ---------------------------------------------------------------------------

#[test]
fn frame_size_past_max_is_refused_without_buffering() {
    for size in [513u32, 65_536, 1 << 31, u32::MAX] {
        let mut buf = BytesMut::with_capacity(8);
        buf.put_u32(size);
        buf.put_slice(&[2, 0, 0, 0]);
        let (r, largest) = largest_alloc(|| decode_frame(&mut buf, 512, Layer::Amqp));
        assert_eq!(r, Err(FrameError::TooLarge { size, max: 512 }));
        assert!(largest < 1024, "allocated {largest}");
        assert!(buf.capacity() < 1024, "capacity {}", buf.capacity());
        assert_eq!(buf.len(), 8, "nothing consumed");
        assert_eq!(r.unwrap_err().condition(), condition::FRAMING_ERROR);
    }
    // The SASL layer checks the same.
    let mut buf = BytesMut::from(&h("ffffffff 02 01 0000")[..]);
    assert_eq!(
        decode_frame(&mut buf, 512, Layer::Sasl),
        Err(FrameError::TooLarge {
            size: u32::MAX,
            max: 512
        })
    );
    // Within max-frame-size, a partial frame grows the buffer only to the
    // frame's size.
    let mut buf = BytesMut::from(&h("00010000 02 00 0000")[..]);
    assert_eq!(decode_frame(&mut buf, 1 << 20, Layer::Amqp), Ok(None));
    assert!(buf.capacity() <= 1 << 17, "capacity {}", buf.capacity());
}

#[test]
fn bad_frame_headers() {
    let bad = |hex: &str, layer| {
        let mut buf = BytesMut::from(&h(hex)[..]);
        decode_frame(&mut buf, 1 << 20, layer)
    };
    for hex in [
        "00000000 02 00 0000",
        "00000007 02 00 0000",
        "00000001 02 00 0000",
    ] {
        assert_eq!(
            bad(hex, Layer::Amqp),
            Err(FrameError::BadHeader("size below 8")),
            "{hex}"
        );
    }
    // Data offset below 2 (the header itself) or past the frame.
    for hex in [
        "00000008 00 00 0000",
        "00000008 01 00 0000",
        "0000000c 01 00 0000 00000000",
        "00000008 03 00 0000",
        "0000000c 04 00 0000 00000000",
        "00000010 ff 00 0000 0000000000000000",
    ] {
        assert_eq!(
            bad(hex, Layer::Amqp),
            Err(FrameError::BadHeader("data offset outside the frame")),
            "{hex}"
        );
        assert_eq!(
            bad(hex, Layer::Sasl),
            Err(FrameError::BadHeader("data offset outside the frame")),
            "{hex}"
        );
    }
    // The header is checked before the body is waited for.
    assert_eq!(
        bad("00000100 01 00 0000", Layer::Amqp),
        Err(FrameError::BadHeader("data offset outside the frame"))
    );
    // Frame types.
    assert_eq!(
        bad("00000008 02 01 0000", Layer::Amqp),
        Err(FrameError::BadType(1))
    );
    assert_eq!(
        bad("00000008 02 00 0000", Layer::Sasl),
        Err(FrameError::BadType(0))
    );
    assert_eq!(
        bad("00000008 02 07 0000", Layer::Amqp),
        Err(FrameError::BadType(7))
    );
    // An empty SASL frame is not a heartbeat.
    assert_eq!(
        bad("00000008 02 01 0000", Layer::Sasl),
        Err(FrameError::BadHeader("empty SASL frame"))
    );
    // An extended header that fills the frame: a heartbeat.
    assert_eq!(
        bad("0000000c 03 00 0000 00000000", Layer::Amqp),
        Ok(Some(Frame::Empty))
    );
    for e in [
        FrameError::BadHeader("x"),
        FrameError::BadType(3),
        FrameError::TooLarge { size: 1, max: 0 },
    ] {
        assert_eq!(e.condition(), condition::FRAMING_ERROR);
    }
}

#[test]
fn frame_bodies_must_fill_the_frame() {
    // close then a stray byte: only a transfer carries a payload.
    let mut frame = amqp_frame(&h("00 53 18 45 00"));
    assert_eq!(
        decode_frame(&mut frame, 512, Layer::Amqp),
        Err(FrameError::Decode(DecodeError::TrailingBytes(1)))
    );
    let mut frame = sasl_frame(&h("00 53 44 c0 03 01 50 00 40 40"));
    assert_eq!(
        decode_frame(&mut frame, 512, Layer::Sasl),
        Err(FrameError::Decode(DecodeError::TrailingBytes(2)))
    );
    // A performative in a SASL frame and a SASL frame in an AMQP frame.
    let mut frame = sasl_frame(&h("00 53 18 45"));
    assert!(matches!(
        decode_frame(&mut frame, 512, Layer::Sasl),
        Err(FrameError::Decode(DecodeError::UnexpectedDescriptor { .. }))
    ));
    let mut frame = amqp_frame(&h("00 53 44 c0 03 01 50 00"));
    assert!(matches!(
        decode_frame(&mut frame, 512, Layer::Amqp),
        Err(FrameError::Decode(DecodeError::UnexpectedDescriptor { .. }))
    ));
}

#[test]
fn role_is_a_boolean() {
    // disposition with a uint role.
    assert_eq!(
        perf("00 53 15 c0 03 02 43 43").map(drop),
        Err(DecodeError::UnexpectedFormat {
            expected: "boolean",
            found: 0x43
        })
    );
    assert!(matches!(
        perf("00 53 15 c0 03 02 41 43"),
        Ok(Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: SequenceNo(0),
            ..
        }))
    ));
}

// ---------------------------------------------------------------------------
// Regressions found by fuzzing (proto/fuzz)
// ---------------------------------------------------------------------------

/// A header claiming a frame of 3 GiB, under a max-frame-size of 4 GiB
/// (AMQP's default), made `decode_frame` reserve the whole frame at once
/// (fuzz artifact `c0 09 01 c0 06 01 c1 03 02 40 45`).
#[test]
fn fuzz_huge_frame_within_max_reserves_a_bounded_step() {
    for layer in [Layer::Amqp, Layer::Sasl] {
        let mut buf = BytesMut::from(&h("c00901c0 06 01 c103 02 40 45")[..]);
        let (r, largest) = largest_alloc(|| decode_frame(&mut buf, u32::MAX, layer));
        // The data offset (6 words) is inside the claimed frame; the type
        // byte is 0x01 (SASL).
        match layer {
            Layer::Sasl => assert_eq!(r, Ok(None)),
            Layer::Amqp => assert_eq!(r, Err(FrameError::BadType(1))),
        }
        assert!(largest <= 1 << 17, "allocated {largest}");
        assert!(buf.capacity() <= 1 << 17, "capacity {}", buf.capacity());
    }
    // Fed in pieces, the buffer grows with the bytes that actually come.
    let mut buf = BytesMut::from(&h("fffffff0 02 00 0000")[..]);
    for _ in 0..4 {
        assert_eq!(decode_frame(&mut buf, u32::MAX, Layer::Amqp), Ok(None));
        assert!(buf.capacity() <= 1 << 18, "capacity {}", buf.capacity());
        buf.extend_from_slice(&[0x40; 1000]);
    }
}

/// An array of described nulls whose descriptor was sent in its 9-byte
/// form decoded (the count was bounded by the constructor's bytes as sent),
/// but re-encoded with the 2-byte descriptor it failed to decode. Found by
/// analysis while writing the fuzz target's re-encoding check.
#[test]
fn zero_width_array_bound_ignores_how_wide_the_descriptor_was_sent() {
    let wide = h("e0 0c 0b 00 80 0000000000000001 40");
    assert_eq!(
        Value::from_bytes(wide),
        Err(DecodeError::InvalidLength("array count"))
    );
    // As many as the smallest constructor (00 53 01 40) has bytes decode,
    // whatever width the descriptor is sent in, and re-encode decodably.
    for hex in [
        "e0 05 04 00 53 01 40",
        "e0 0c 04 00 80 0000000000000001 40",
        "f0 0000000f 00000004 00 80 0000000000000001 40",
    ] {
        let v = value(hex).unwrap();
        assert_eq!(Value::from_bytes(v.to_bytes()), Ok(v));
    }
    assert_eq!(
        value("e0 0c 05 00 80 0000000000000001 41"),
        Err(DecodeError::InvalidLength("array count"))
    );
}
