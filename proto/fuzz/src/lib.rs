//! The checks behind the `frame` fuzz target, and the seed corpus, as a
//! library so both the target and the `seed` binary use them.

pub mod engine;

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::{
    Array, Decimal32, Decimal64, Decimal128, Decode, Decoder, Described, Descriptor, Encode,
    Fields, Map, Str, Symbol, Symbols, Timestamp, Uuid, Value,
};
use ferry_proto::definitions::{
    Attach, Begin, Close, Coordinator, DeliveryState, Detach, Disposition, End, Error, Flow,
    Modified, Open, Performative, Received, Rejected, Role, SaslChallenge, SaslCode, SaslFrame,
    SaslInit, SaslMechanisms, SaslOutcome, SaslResponse, SenderSettleMode, SequenceNo, Source,
    Target, TargetTerminus, TerminusDurability, TerminusExpiryPolicy, Transfer, condition,
};
use ferry_proto::frame::{
    Frame, Layer, decode_frame, encode_amqp_frame, encode_empty_frame, encode_sasl_frame,
};

/// The max-frame-sizes frames are decoded with.
const MAX_FRAME_SIZES: [u32; 4] = [512, 4096, 1 << 20, u32::MAX];

/// Feeds `data` to every decoder: `decode_frame` for both layers and a few
/// max-frame-sizes, and `Value`, `Performative` and `SaslFrame` decoding of
/// the whole input and of the input past an 8-byte frame header. Anything
/// that decodes must re-encode to something that decodes to it again.
pub fn check(data: &[u8]) {
    for layer in [Layer::Amqp, Layer::Sasl] {
        for max in MAX_FRAME_SIZES {
            frames(data, max, layer);
        }
    }
    let whole = Bytes::copy_from_slice(data);
    bodies(&whole);
    if whole.len() > 8 {
        bodies(&whole.slice(8..));
    }
}

fn bodies(b: &Bytes) {
    if let Ok(v) = Value::from_bytes(b.clone()) {
        round_trip(&v);
    }
    // A value at the front of a longer buffer: decoding and skipping agree
    // on where it ends.
    let mut d = Decoder::new(b.clone());
    if Value::decode(&mut d).is_ok() {
        let mut s = Decoder::new(b.clone());
        s.skip_value().expect("a value that decodes can be skipped");
        assert_eq!(s.position(), d.position(), "skip and decode disagree");
    }
    if let Ok(p) = Performative::from_bytes(b.clone()) {
        round_trip(&p);
    }
    if let Ok(f) = SaslFrame::from_bytes(b.clone()) {
        round_trip(&f);
    }
}

/// Decodes frames from `data` until more bytes are needed or one fails.
fn frames(data: &[u8], max: u32, layer: Layer) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode_frame(&mut buf, max, layer) {
            Ok(Some(frame)) => {
                let used = before - buf.len();
                assert!(used >= 8 && used <= max as usize, "frame of {used} bytes");
                frame_round_trip(&frame, layer);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "waiting consumes nothing");
                break;
            }
            Err(_) => break,
        }
    }
}

fn frame_round_trip(frame: &Frame, layer: Layer) {
    let mut buf = BytesMut::new();
    match frame {
        Frame::Amqp {
            channel,
            performative,
            payload,
        } => encode_amqp_frame(*channel, performative, payload, &mut buf),
        Frame::Sasl(f) => encode_sasl_frame(f, &mut buf),
        Frame::Empty => encode_empty_frame(&mut buf),
    }
    let encoded = buf.clone();
    let again = decode_frame(&mut buf, u32::MAX, layer)
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is complete");
    assert!(buf.is_empty(), "re-encoded frame fully consumed");
    if equals_itself(frame) {
        assert_eq!(&again, frame, "frame round trip");
    }
    // NaN floats compare unequal: compare encodings too.
    let mut buf2 = BytesMut::new();
    match &again {
        Frame::Amqp {
            channel,
            performative,
            payload,
        } => encode_amqp_frame(*channel, performative, payload, &mut buf2),
        Frame::Sasl(f) => encode_sasl_frame(f, &mut buf2),
        Frame::Empty => encode_empty_frame(&mut buf2),
    }
    assert_eq!(buf2, encoded, "re-encoding is stable");
}

/// Whether `x == x`: false when it holds a NaN float somewhere.
#[allow(clippy::eq_op)]
fn equals_itself<T: PartialEq>(x: &T) -> bool {
    x == x
}

/// `decode(encode(x)) == x` (where `x == x`, which NaN floats break), and
/// re-encoding is stable byte for byte.
fn round_trip<T: Decode + Encode + PartialEq + std::fmt::Debug>(x: &T) {
    let encoded = x.to_bytes();
    let again = match T::from_bytes(encoded.clone()) {
        Ok(again) => again,
        Err(e) => panic!("{x:?} encodes to {encoded:?}, which fails to decode: {e}"),
    };
    if equals_itself(x) {
        assert_eq!(&again, x, "round trip");
    }
    assert_eq!(again.to_bytes(), encoded, "re-encoding is stable");
}

/// A seed corpus: valid encodings of every performative, SASL frame and
/// value type, as frames and as bare values.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let frame = |p: &Performative, payload: &[u8]| {
        let mut buf = BytesMut::new();
        encode_amqp_frame(1, p, payload, &mut buf);
        buf.to_vec()
    };
    for p in performatives() {
        out.push(frame(&p, &[]));
        out.push(p.to_bytes().to_vec());
    }
    let transfer = Performative::Transfer(Transfer {
        delivery_id: Some(SequenceNo(7)),
        delivery_tag: Some(Bytes::from_static(b"\x00\x01")),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    });
    out.push(frame(&transfer, b"\x00\x53\x77\xa1\x05hello"));
    for f in sasl_frames() {
        let mut buf = BytesMut::new();
        encode_sasl_frame(&f, &mut buf);
        out.push(buf.to_vec());
        out.push(f.to_bytes().to_vec());
    }
    // A connection's opening frames back to back, and heartbeats.
    let mut buf = BytesMut::new();
    for p in performatives().into_iter().take(3) {
        encode_amqp_frame(0, &p, &[], &mut buf);
        encode_empty_frame(&mut buf);
    }
    out.push(buf.to_vec());
    for v in values() {
        out.push(v.to_bytes().to_vec());
    }
    out
}

fn sym(s: &str) -> Symbol {
    Symbol::from(s)
}

fn values() -> Vec<Value> {
    let scalars = vec![
        Value::Null,
        Value::Bool(true),
        Value::Ubyte(7),
        Value::Ushort(700),
        Value::Uint(0),
        Value::Uint(200),
        Value::Uint(70_000),
        Value::Ulong(0),
        Value::Ulong(9),
        Value::Ulong(1 << 40),
        Value::Byte(-1),
        Value::Short(-300),
        Value::Int(-5),
        Value::Int(1 << 20),
        Value::Long(-5),
        Value::Long(1 << 40),
        Value::Float(1.5),
        Value::Double(-2.25),
        Value::Decimal32(Decimal32([1, 2, 3, 4])),
        Value::Decimal64(Decimal64([1; 8])),
        Value::Decimal128(Decimal128([2; 16])),
        Value::Char('\u{1f600}'),
        Value::Timestamp(Timestamp(1_700_000_000_000)),
        Value::Uuid(Uuid([0xab; 16])),
        Value::Binary(Bytes::from_static(b"\x00\xff")),
        Value::String(Str::from("h\u{e9}llo")),
        Value::Symbol(sym("x-opt-key")),
    ];
    let mut out = scalars.clone();
    out.push(Value::List(scalars.clone()));
    out.push(Value::Map(Map(scalars
        .iter()
        .cloned()
        .zip(scalars.iter().rev().cloned())
        .collect())));
    out.push(Value::Array(
        Array::new(vec![Value::Uint(1), Value::Uint(70_000)]).expect("homogeneous"),
    ));
    out.push(Value::Array(
        Array::new(vec![
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Symbol(sym("com.example:t")),
                value: Value::List(vec![Value::Bool(false)]),
            })),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Symbol(sym("com.example:t")),
                value: Value::List(vec![]),
            })),
        ])
        .expect("homogeneous"),
    ));
    out.push(Value::Array(
        Array::new(vec![
            Value::Array(Array::new(vec![Value::Symbol(sym("a"))]).expect("homogeneous")),
            Value::Array(Array::new(vec![Value::Long(1)]).expect("homogeneous")),
        ])
        .expect("homogeneous"),
    ));
    out.push(Value::Described(Box::new(Described {
        descriptor: Descriptor::Code(0x0000_468c_0000_0004),
        value: Value::String(Str::from("a = 1")),
    })));
    out.push(Value::List(vec![Value::List(vec![Value::Map(Map(vec![
        (Value::Null, Value::List(vec![])),
    ]))])]));
    out
}

fn error() -> Error {
    Error {
        condition: condition::NOT_FOUND,
        description: Some("no such node".into()),
        info: Some(Fields(vec![(sym("address"), Value::String("q".into()))])),
    }
}

fn performatives() -> Vec<Performative> {
    let fields = Fields(vec![
        (sym("product"), Value::String("ferry".into())),
        (sym("n"), Value::Long(3)),
    ]);
    vec![
        Performative::Open(Box::new(Open {
            container_id: "ferry".into(),
            hostname: Some("localhost".into()),
            max_frame_size: Some(65_536),
            channel_max: Some(255),
            idle_time_out: Some(30_000),
            outgoing_locales: Some(Symbols::from(["en-US"])),
            incoming_locales: None,
            offered_capabilities: Some(Symbols::from(["ANONYMOUS-RELAY"])),
            desired_capabilities: Some(Symbols::default()),
            properties: Some(fields.clone()),
        })),
        Performative::Begin(Begin {
            remote_channel: Some(0),
            next_outgoing_id: SequenceNo(1),
            incoming_window: 2048,
            outgoing_window: 2048,
            handle_max: Some(ferry_proto::definitions::Handle(255)),
            properties: Some(fields.clone()),
            ..Begin::default()
        }),
        Performative::Attach(Box::new(Attach {
            name: "sender-link".into(),
            handle: ferry_proto::definitions::Handle(0),
            role: Role::Sender,
            snd_settle_mode: Some(SenderSettleMode::Mixed),
            rcv_settle_mode: None,
            source: Some(Source {
                address: Some("queue".into()),
                durable: Some(TerminusDurability::UnsettledState),
                expiry_policy: Some(TerminusExpiryPolicy::Never),
                timeout: Some(60),
                dynamic: Some(false),
                dynamic_node_properties: Some(fields.clone()),
                distribution_mode: Some(sym("move")),
                filter: Some(Map(vec![(
                    Value::Symbol(sym("f")),
                    Value::Described(Box::new(Described {
                        descriptor: Descriptor::Symbol(sym("apache.org:selector-filter:string")),
                        value: Value::String("x > 1".into()),
                    })),
                )])),
                default_outcome: Some(DeliveryState::Modified(Modified {
                    delivery_failed: Some(true),
                    undeliverable_here: None,
                    message_annotations: Some(fields.clone()),
                })),
                outcomes: Some(Symbols::from(["amqp:accepted:list", "amqp:rejected:list"])),
                capabilities: Some(Symbols::from(["queue"])),
            }),
            target: Some(TargetTerminus::Target(Target::new("queue"))),
            unsettled: Some(Map(vec![(
                Value::Binary(Bytes::from_static(b"tag")),
                Value::Null,
            )])),
            incomplete_unsettled: Some(false),
            initial_delivery_count: Some(SequenceNo(0)),
            max_message_size: Some(1 << 20),
            offered_capabilities: None,
            desired_capabilities: Some(Symbols::from(["x"])),
            properties: Some(fields.clone()),
        })),
        Performative::Attach(Box::new(Attach {
            name: "txn".into(),
            role: Role::Sender,
            target: Some(TargetTerminus::Coordinator(Coordinator {
                capabilities: Some(Symbols::from(["amqp:local-transactions"])),
            })),
            ..Attach::default()
        })),
        Performative::Flow(Flow {
            next_incoming_id: Some(SequenceNo(3)),
            incoming_window: 100,
            next_outgoing_id: SequenceNo(4),
            outgoing_window: 100,
            handle: Some(ferry_proto::definitions::Handle(0)),
            delivery_count: Some(SequenceNo(0)),
            link_credit: Some(50),
            available: Some(0),
            drain: Some(false),
            echo: Some(true),
            properties: Some(fields),
        }),
        Performative::Transfer(Transfer {
            handle: ferry_proto::definitions::Handle(0),
            delivery_id: Some(SequenceNo(0)),
            delivery_tag: Some(Bytes::from_static(b"t")),
            message_format: Some(0),
            settled: Some(true),
            more: Some(false),
            rcv_settle_mode: Some(ferry_proto::definitions::ReceiverSettleMode::Second),
            state: Some(DeliveryState::Received(Received {
                section_number: 0,
                section_offset: 10,
            })),
            resume: Some(false),
            aborted: Some(false),
            batchable: Some(true),
        }),
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: SequenceNo(0),
            last: Some(SequenceNo(10)),
            settled: Some(true),
            state: Some(DeliveryState::Accepted),
            batchable: Some(false),
        }),
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: SequenceNo(11),
            state: Some(DeliveryState::Rejected(Rejected {
                error: Some(error()),
            })),
            ..Disposition::default()
        }),
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: SequenceNo(12),
            state: Some(DeliveryState::Released),
            ..Disposition::default()
        }),
        Performative::Detach(Detach {
            handle: ferry_proto::definitions::Handle(0),
            closed: Some(true),
            error: Some(error()),
        }),
        Performative::End(End {
            error: Some(error()),
        }),
        Performative::Close(Close { error: None }),
        Performative::Close(Close {
            error: Some(error()),
        }),
    ]
}

fn sasl_frames() -> Vec<SaslFrame> {
    vec![
        SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: Symbols::from(["PLAIN", "ANONYMOUS"]),
        }),
        SaslFrame::Init(SaslInit {
            mechanism: sym("PLAIN"),
            initial_response: Some(Bytes::from_static(b"\0user\0pass")),
            hostname: Some("localhost".into()),
        }),
        SaslFrame::Challenge(SaslChallenge {
            challenge: Bytes::from_static(b"nonce"),
        }),
        SaslFrame::Response(SaslResponse {
            response: Bytes::from_static(b"proof"),
        }),
        SaslFrame::Outcome(SaslOutcome {
            code: SaslCode::Ok,
            additional_data: Some(Bytes::from_static(b"ok")),
        }),
    ]
}
