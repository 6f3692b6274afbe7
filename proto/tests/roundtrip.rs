//! Round-trip properties of the type-system codec, the performatives and the
//! SASL frames: `decode(encode(x)) == x`, the decoder consumes exactly the
//! encoding, and every alternative encoding AMQP allows for a value (the
//! wide forms, symbolic descriptors, trailing nulls, unknown trailing
//! fields) decodes to the same thing.

use bytes::{BufMut, Bytes, BytesMut};
use ferry_proto::codec::{
    Array, Decimal32, Decimal64, Decimal128, Decode, Decoder, Described, Descriptor, Encode,
    Fields, Map, Str, Symbol, Symbols, Timestamp, Uuid, Value, format as fc,
};
use ferry_proto::definitions::{
    Accepted, Attach, Begin, Close, Coordinator, DeliveryState, Detach, Disposition, End, Error,
    Flow, Handle, Modified, Open, Performative, Received, ReceiverSettleMode, Rejected, Released,
    Role, SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
    SenderSettleMode, SequenceNo, Source, Target, TargetTerminus, TerminusDurability,
    TerminusExpiryPolicy, Transfer,
};
use ferry_proto::frame::{
    Frame, Layer, decode_frame, encode_amqp_frame, encode_empty_frame, encode_sasl_frame,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Strategies: values
// ---------------------------------------------------------------------------

/// Every numeric descriptor this crate gives a meaning to. Generic values use
/// other codes, so that rewriting known descriptors to their symbolic form
/// (see `symbolic`) never touches user data.
const KNOWN_CODES: &[(u64, &str)] = &[
    (0x10, "amqp:open:list"),
    (0x11, "amqp:begin:list"),
    (0x12, "amqp:attach:list"),
    (0x13, "amqp:flow:list"),
    (0x14, "amqp:transfer:list"),
    (0x15, "amqp:disposition:list"),
    (0x16, "amqp:detach:list"),
    (0x17, "amqp:end:list"),
    (0x18, "amqp:close:list"),
    (0x1d, "amqp:error:list"),
    (0x23, "amqp:received:list"),
    (0x24, "amqp:accepted:list"),
    (0x25, "amqp:rejected:list"),
    (0x26, "amqp:released:list"),
    (0x27, "amqp:modified:list"),
    (0x28, "amqp:source:list"),
    (0x29, "amqp:target:list"),
    (0x30, "amqp:coordinator:list"),
    (0x40, "amqp:sasl-mechanisms:list"),
    (0x41, "amqp:sasl-init:list"),
    (0x42, "amqp:sasl-challenge:list"),
    (0x43, "amqp:sasl-response:list"),
    (0x44, "amqp:sasl-outcome:list"),
];

fn arb_symbol() -> impl Strategy<Value = Symbol> {
    prop_oneof![
        8 => "[a-zA-Z0-9:._-]{0,24}",
        1 => "x-[a-z]{300,320}", // sym32
    ]
    .prop_map(Symbol::from)
}

fn arb_str() -> impl Strategy<Value = Str> {
    prop_oneof![
        8 => any::<String>(),
        1 => "[a-z\u{e9}\u{1f600}]{256,300}", // str32
    ]
    .prop_map(Str::from)
}

fn arb_binary() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..40),
        1 => vec(any::<u8>(), 256..300), // vbin32
    ]
    .prop_map(Bytes::from)
}

fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    prop_oneof![
        any::<u64>()
            .prop_filter("not a known descriptor", |c| KNOWN_CODES
                .iter()
                .all(|(k, _)| k != c))
            .prop_map(Descriptor::Code),
        (0u64..=255)
            .prop_filter("not a known descriptor", |c| KNOWN_CODES
                .iter()
                .all(|(k, _)| k != c))
            .prop_map(Descriptor::Code),
        "com\\.example:[a-z]{0,12}".prop_map(|s| Descriptor::Symbol(Symbol::from(s))),
    ]
}

fn arb_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN != NaN", |f| !f.is_nan())
}

fn arb_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan())
}

fn arb_char() -> impl Strategy<Value = char> {
    any::<char>()
}

/// Strategies for each scalar type, one per type, so arrays can pick one.
fn scalar_kinds() -> Vec<BoxedStrategy<Value>> {
    vec![
        Just(Value::Null).boxed(),
        any::<bool>().prop_map(Value::Bool).boxed(),
        any::<u8>().prop_map(Value::Ubyte).boxed(),
        any::<u16>().prop_map(Value::Ushort).boxed(),
        prop_oneof![Just(0u32), 1..=255u32, any::<u32>()]
            .prop_map(Value::Uint)
            .boxed(),
        prop_oneof![Just(0u64), 1..=255u64, any::<u64>()]
            .prop_map(Value::Ulong)
            .boxed(),
        any::<i8>().prop_map(Value::Byte).boxed(),
        any::<i16>().prop_map(Value::Short).boxed(),
        prop_oneof![-128..=127i32, any::<i32>()]
            .prop_map(Value::Int)
            .boxed(),
        prop_oneof![-128..=127i64, any::<i64>()]
            .prop_map(Value::Long)
            .boxed(),
        arb_f32().prop_map(Value::Float).boxed(),
        arb_f64().prop_map(Value::Double).boxed(),
        any::<[u8; 4]>()
            .prop_map(|b| Value::Decimal32(Decimal32(b)))
            .boxed(),
        any::<[u8; 8]>()
            .prop_map(|b| Value::Decimal64(Decimal64(b)))
            .boxed(),
        any::<[u8; 16]>()
            .prop_map(|b| Value::Decimal128(Decimal128(b)))
            .boxed(),
        arb_char().prop_map(Value::Char).boxed(),
        any::<i64>()
            .prop_map(|t| Value::Timestamp(Timestamp(t)))
            .boxed(),
        any::<[u8; 16]>().prop_map(|u| Value::Uuid(Uuid(u))).boxed(),
        arb_binary().prop_map(Value::Binary).boxed(),
        arb_str().prop_map(Value::String).boxed(),
        arb_symbol().prop_map(Value::Symbol).boxed(),
    ]
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    proptest::strategy::Union::new(scalar_kinds())
}

/// A homogeneous array of `kind`. Arrays of nulls are limited by the
/// decoder (at most as many zero-width elements as the element constructor
/// has bytes): `Array::new` refuses longer ones, and so do we here.
fn array_of(kind: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    vec(kind, 0..max)
        .prop_filter_map("array the decoder would refuse", |items| {
            Array::new(items).map(Value::Array)
        })
        .boxed()
}

/// An array of described values: one descriptor, elements of one kind.
fn described_array_of(kind: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    (arb_descriptor(), vec(kind, 0..max))
        .prop_filter_map("array the decoder would refuse", |(descriptor, items)| {
            let items = items
                .into_iter()
                .map(|value| {
                    Value::Described(Box::new(Described {
                        descriptor: descriptor.clone(),
                        value,
                    }))
                })
                .collect();
            Array::new(items).map(Value::Array)
        })
        .boxed()
}

fn arb_value_depth(depth: u32) -> BoxedStrategy<Value> {
    arb_scalar()
        .prop_recursive(depth, 48, 6, |inner| {
            // Element strategies for arrays of compounds: each list, map or
            // array has its own constructor inside, so elements may differ.
            let lists = vec(inner.clone(), 0..4).prop_map(Value::List).boxed();
            let maps = vec((inner.clone(), inner.clone()), 0..3)
                .prop_map(|kv| Value::Map(Map(kv)))
                .boxed();
            let arrays =
                proptest::strategy::Union::new(scalar_kinds().into_iter().map(|k| array_of(k, 4)))
                    .boxed();
            let scalar_arrays =
                proptest::strategy::Union::new(scalar_kinds().into_iter().map(|k| array_of(k, 6)));
            let described_arrays = proptest::strategy::Union::new(
                scalar_kinds().into_iter().map(|k| described_array_of(k, 5)),
            );
            let compound_arrays = proptest::strategy::Union::new([
                array_of(lists.clone(), 3),
                array_of(maps.clone(), 3),
                array_of(arrays.clone(), 3),
                described_array_of(lists.clone(), 3),
                described_array_of(maps.clone(), 3),
                described_array_of(arrays, 3),
            ]);
            prop_oneof![
                3 => lists,
                2 => maps,
                2 => scalar_arrays,
                1 => described_arrays,
                1 => compound_arrays,
                2 => (arb_descriptor(), inner)
                    .prop_map(|(descriptor, value)| Value::Described(Box::new(Described {
                        descriptor,
                        value,
                    }))),
            ]
        })
        .boxed()
}

fn arb_value() -> BoxedStrategy<Value> {
    arb_value_depth(4)
}

/// Values carried inside performatives (properties, filters, ...): smaller.
fn arb_small_value() -> BoxedStrategy<Value> {
    arb_value_depth(2)
}

// ---------------------------------------------------------------------------
// Strategies: definitions
// ---------------------------------------------------------------------------

fn arb_symbols() -> BoxedStrategy<Symbols> {
    vec(arb_symbol(), 0..4).prop_map(Symbols).boxed()
}

fn arb_fields() -> BoxedStrategy<Fields> {
    vec((arb_symbol(), arb_small_value()), 0..4)
        .prop_map(Fields)
        .boxed()
}

fn arb_map() -> BoxedStrategy<Map> {
    vec((arb_small_value(), arb_small_value()), 0..4)
        .prop_map(Map)
        .boxed()
}

fn arb_error() -> BoxedStrategy<Error> {
    (
        arb_symbol(),
        option::of(arb_str()),
        option::of(arb_fields()),
    )
        .prop_map(|(condition, description, info)| Error {
            condition,
            description,
            info,
        })
        .boxed()
}

fn arb_delivery_state() -> BoxedStrategy<DeliveryState> {
    prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(section_number, section_offset)| {
            DeliveryState::Received(Received {
                section_number,
                section_offset,
            })
        }),
        Just(DeliveryState::Accepted),
        option::of(arb_error()).prop_map(|error| DeliveryState::Rejected(Rejected { error })),
        Just(DeliveryState::Released),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(arb_fields())
        )
            .prop_map(
                |(delivery_failed, undeliverable_here, message_annotations)| {
                    DeliveryState::Modified(Modified {
                        delivery_failed,
                        undeliverable_here,
                        message_annotations,
                    })
                }
            ),
    ]
    .boxed()
}

fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 1..=255u32, any::<u32>()]
}

fn arb_seq() -> impl Strategy<Value = SequenceNo> {
    arb_u32().prop_map(SequenceNo)
}

fn arb_handle() -> impl Strategy<Value = Handle> {
    arb_u32().prop_map(Handle)
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Sender), Just(Role::Receiver)]
}

fn arb_snd_settle_mode() -> impl Strategy<Value = SenderSettleMode> {
    prop_oneof![
        Just(SenderSettleMode::Unsettled),
        Just(SenderSettleMode::Settled),
        Just(SenderSettleMode::Mixed),
    ]
}

fn arb_rcv_settle_mode() -> impl Strategy<Value = ReceiverSettleMode> {
    prop_oneof![
        Just(ReceiverSettleMode::First),
        Just(ReceiverSettleMode::Second)
    ]
}

fn arb_durability() -> impl Strategy<Value = TerminusDurability> {
    prop_oneof![
        Just(TerminusDurability::None),
        Just(TerminusDurability::Configuration),
        Just(TerminusDurability::UnsettledState),
    ]
}

fn arb_expiry() -> impl Strategy<Value = TerminusExpiryPolicy> {
    prop_oneof![
        Just(TerminusExpiryPolicy::LinkDetach),
        Just(TerminusExpiryPolicy::SessionEnd),
        Just(TerminusExpiryPolicy::ConnectionClose),
        Just(TerminusExpiryPolicy::Never),
    ]
}

fn arb_source() -> BoxedStrategy<Source> {
    (
        (
            option::of(arb_str()),
            option::of(arb_durability()),
            option::of(arb_expiry()),
            option::of(arb_u32()),
            option::of(any::<bool>()),
            option::of(arb_fields()),
        ),
        (
            option::of(arb_symbol()),
            option::of(arb_map()),
            option::of(arb_delivery_state()),
            option::of(arb_symbols()),
            option::of(arb_symbols()),
        ),
    )
        .prop_map(
            |(
                (address, durable, expiry_policy, timeout, dynamic, dynamic_node_properties),
                (distribution_mode, filter, default_outcome, outcomes, capabilities),
            )| Source {
                address,
                durable,
                expiry_policy,
                timeout,
                dynamic,
                dynamic_node_properties,
                distribution_mode,
                filter,
                default_outcome,
                outcomes,
                capabilities,
            },
        )
        .boxed()
}

fn arb_target() -> BoxedStrategy<Target> {
    (
        option::of(arb_str()),
        option::of(arb_durability()),
        option::of(arb_expiry()),
        option::of(arb_u32()),
        option::of(any::<bool>()),
        option::of(arb_fields()),
        option::of(arb_symbols()),
    )
        .prop_map(
            |(
                address,
                durable,
                expiry_policy,
                timeout,
                dynamic,
                dynamic_node_properties,
                capabilities,
            )| Target {
                address,
                durable,
                expiry_policy,
                timeout,
                dynamic,
                dynamic_node_properties,
                capabilities,
            },
        )
        .boxed()
}

fn arb_target_terminus() -> BoxedStrategy<TargetTerminus> {
    prop_oneof![
        3 => arb_target().prop_map(TargetTerminus::Target),
        1 => option::of(arb_symbols())
            .prop_map(|capabilities| TargetTerminus::Coordinator(Coordinator { capabilities })),
    ]
    .boxed()
}

fn arb_open() -> BoxedStrategy<Open> {
    (
        (
            arb_str(),
            option::of(arb_str()),
            option::of(arb_u32()),
            option::of(any::<u16>()),
            option::of(arb_u32()),
        ),
        (
            option::of(arb_symbols()),
            option::of(arb_symbols()),
            option::of(arb_symbols()),
            option::of(arb_symbols()),
            option::of(arb_fields()),
        ),
    )
        .prop_map(
            |(
                (container_id, hostname, max_frame_size, channel_max, idle_time_out),
                (
                    outgoing_locales,
                    incoming_locales,
                    offered_capabilities,
                    desired_capabilities,
                    properties,
                ),
            )| Open {
                container_id,
                hostname,
                max_frame_size,
                channel_max,
                idle_time_out,
                outgoing_locales,
                incoming_locales,
                offered_capabilities,
                desired_capabilities,
                properties,
            },
        )
        .boxed()
}

fn arb_begin() -> BoxedStrategy<Begin> {
    (
        option::of(any::<u16>()),
        arb_seq(),
        arb_u32(),
        arb_u32(),
        option::of(arb_handle()),
        option::of(arb_symbols()),
        option::of(arb_symbols()),
        option::of(arb_fields()),
    )
        .prop_map(
            |(
                remote_channel,
                next_outgoing_id,
                incoming_window,
                outgoing_window,
                handle_max,
                offered_capabilities,
                desired_capabilities,
                properties,
            )| Begin {
                remote_channel,
                next_outgoing_id,
                incoming_window,
                outgoing_window,
                handle_max,
                offered_capabilities,
                desired_capabilities,
                properties,
            },
        )
        .boxed()
}

fn arb_attach() -> BoxedStrategy<Attach> {
    (
        (
            arb_str(),
            arb_handle(),
            arb_role(),
            option::of(arb_snd_settle_mode()),
            option::of(arb_rcv_settle_mode()),
            option::of(arb_source()),
            option::of(arb_target_terminus()),
        ),
        (
            option::of(arb_map()),
            option::of(any::<bool>()),
            option::of(arb_seq()),
            option::of(prop_oneof![Just(0u64), any::<u64>()]),
            option::of(arb_symbols()),
            option::of(arb_symbols()),
            option::of(arb_fields()),
        ),
    )
        .prop_map(
            |(
                (name, handle, role, snd_settle_mode, rcv_settle_mode, source, target),
                (
                    unsettled,
                    incomplete_unsettled,
                    initial_delivery_count,
                    max_message_size,
                    offered_capabilities,
                    desired_capabilities,
                    properties,
                ),
            )| Attach {
                name,
                handle,
                role,
                snd_settle_mode,
                rcv_settle_mode,
                source,
                target,
                unsettled,
                incomplete_unsettled,
                initial_delivery_count,
                max_message_size,
                offered_capabilities,
                desired_capabilities,
                properties,
            },
        )
        .boxed()
}

fn arb_flow() -> BoxedStrategy<Flow> {
    (
        (
            option::of(arb_seq()),
            arb_u32(),
            arb_seq(),
            arb_u32(),
            option::of(arb_handle()),
            option::of(arb_seq()),
        ),
        (
            option::of(arb_u32()),
            option::of(arb_u32()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(arb_fields()),
        ),
    )
        .prop_map(
            |(
                (
                    next_incoming_id,
                    incoming_window,
                    next_outgoing_id,
                    outgoing_window,
                    handle,
                    delivery_count,
                ),
                (link_credit, available, drain, echo, properties),
            )| Flow {
                next_incoming_id,
                incoming_window,
                next_outgoing_id,
                outgoing_window,
                handle,
                delivery_count,
                link_credit,
                available,
                drain,
                echo,
                properties,
            },
        )
        .boxed()
}

fn arb_transfer() -> BoxedStrategy<Transfer> {
    (
        (
            arb_handle(),
            option::of(arb_seq()),
            option::of(arb_binary()),
            option::of(arb_u32()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
        ),
        (
            option::of(arb_rcv_settle_mode()),
            option::of(arb_delivery_state()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (handle, delivery_id, delivery_tag, message_format, settled, more),
                (rcv_settle_mode, state, resume, aborted, batchable),
            )| Transfer {
                handle,
                delivery_id,
                delivery_tag,
                message_format,
                settled,
                more,
                rcv_settle_mode,
                state,
                resume,
                aborted,
                batchable,
            },
        )
        .boxed()
}

fn arb_disposition() -> BoxedStrategy<Disposition> {
    (
        arb_role(),
        arb_seq(),
        option::of(arb_seq()),
        option::of(any::<bool>()),
        option::of(arb_delivery_state()),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(role, first, last, settled, state, batchable)| Disposition {
                role,
                first,
                last,
                settled,
                state,
                batchable,
            },
        )
        .boxed()
}

fn arb_performative() -> BoxedStrategy<Performative> {
    prop_oneof![
        arb_open().prop_map(|o| Performative::Open(Box::new(o))),
        arb_begin().prop_map(Performative::Begin),
        arb_attach().prop_map(|a| Performative::Attach(Box::new(a))),
        arb_flow().prop_map(Performative::Flow),
        arb_transfer().prop_map(Performative::Transfer),
        arb_disposition().prop_map(Performative::Disposition),
        (
            arb_handle(),
            option::of(any::<bool>()),
            option::of(arb_error())
        )
            .prop_map(|(handle, closed, error)| Performative::Detach(Detach {
                handle,
                closed,
                error
            })),
        option::of(arb_error()).prop_map(|error| Performative::End(End { error })),
        option::of(arb_error()).prop_map(|error| Performative::Close(Close { error })),
    ]
    .boxed()
}

fn arb_sasl_code() -> impl Strategy<Value = SaslCode> {
    prop_oneof![
        Just(SaslCode::Ok),
        Just(SaslCode::Auth),
        Just(SaslCode::Sys),
        Just(SaslCode::SysPerm),
        Just(SaslCode::SysTemp),
    ]
}

fn arb_sasl_frame() -> BoxedStrategy<SaslFrame> {
    prop_oneof![
        arb_symbols().prop_map(
            |sasl_server_mechanisms| SaslFrame::Mechanisms(SaslMechanisms {
                sasl_server_mechanisms
            })
        ),
        (
            arb_symbol(),
            option::of(arb_binary()),
            option::of(arb_str())
        )
            .prop_map(|(mechanism, initial_response, hostname)| SaslFrame::Init(
                SaslInit {
                    mechanism,
                    initial_response,
                    hostname,
                }
            )),
        arb_binary().prop_map(|challenge| SaslFrame::Challenge(SaslChallenge { challenge })),
        arb_binary().prop_map(|response| SaslFrame::Response(SaslResponse { response })),
        (arb_sasl_code(), option::of(arb_binary())).prop_map(|(code, additional_data)| {
            SaslFrame::Outcome(SaslOutcome {
                code,
                additional_data,
            })
        }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Decodes `T` from `encoded` followed by a sentinel byte, checking the
/// decoder stops exactly at the end of the encoding.
fn decode_exact<T: Decode>(encoded: &Bytes) -> T {
    let mut with_tail = BytesMut::from(&encoded[..]);
    with_tail.put_u8(0xa5);
    let mut d = Decoder::new(with_tail.freeze());
    let v = T::decode(&mut d).expect("decodes");
    assert_eq!(
        d.position(),
        encoded.len(),
        "decoder must consume exactly the encoding"
    );
    assert_eq!(d.remaining(), 1);
    v
}

fn check_round_trip<T: Decode + Encode + PartialEq + std::fmt::Debug>(v: &T) -> Bytes {
    let encoded = v.to_bytes();
    let decoded: T = decode_exact(&encoded);
    assert_eq!(&decoded, v);
    // And as a whole buffer.
    assert_eq!(&T::from_bytes(encoded.clone()).expect("from_bytes"), v);
    encoded
}

/// Writes `v` in the widest encoding AMQP allows for it: `uint`/`ulong`/
/// `int`/`long` instead of their small forms, `boolean` with a byte body,
/// 32-bit sizes for binary, strings, symbols, lists, maps and arrays, and
/// `ulong` or `sym32` descriptors.
fn wide(v: &Value, buf: &mut BytesMut) {
    if let Value::Described(d) = v {
        buf.put_u8(fc::DESCRIBED);
        wide_descriptor(&d.descriptor, buf);
        wide(&d.value, buf);
        return;
    }
    buf.put_u8(wide_code(v));
    wide_body(v, buf);
}

fn wide_descriptor(d: &Descriptor, buf: &mut BytesMut) {
    match d {
        Descriptor::Code(c) => {
            buf.put_u8(fc::ULONG);
            buf.put_u64(*c);
        }
        Descriptor::Symbol(s) => {
            buf.put_u8(fc::SYM32);
            buf.put_u32(s.len() as u32);
            buf.put_slice(s.as_bytes());
        }
    }
}

fn wide_code(v: &Value) -> u8 {
    match v {
        Value::Null => fc::NULL,
        Value::Bool(_) => fc::BOOLEAN,
        Value::Ubyte(_) => fc::UBYTE,
        Value::Ushort(_) => fc::USHORT,
        Value::Uint(_) => fc::UINT,
        Value::Ulong(_) => fc::ULONG,
        Value::Byte(_) => fc::BYTE,
        Value::Short(_) => fc::SHORT,
        Value::Int(_) => fc::INT,
        Value::Long(_) => fc::LONG,
        Value::Float(_) => fc::FLOAT,
        Value::Double(_) => fc::DOUBLE,
        Value::Decimal32(_) => fc::DECIMAL32,
        Value::Decimal64(_) => fc::DECIMAL64,
        Value::Decimal128(_) => fc::DECIMAL128,
        Value::Char(_) => fc::CHAR,
        Value::Timestamp(_) => fc::TIMESTAMP,
        Value::Uuid(_) => fc::UUID,
        Value::Binary(_) => fc::VBIN32,
        Value::String(_) => fc::STR32,
        Value::Symbol(_) => fc::SYM32,
        Value::List(_) => fc::LIST32,
        Value::Map(_) => fc::MAP32,
        Value::Array(_) => fc::ARRAY32,
        Value::Described(_) => fc::DESCRIBED,
    }
}

fn wide_body(v: &Value, buf: &mut BytesMut) {
    match v {
        Value::Null => {}
        Value::Bool(b) => buf.put_u8(*b as u8),
        Value::Ubyte(x) => buf.put_u8(*x),
        Value::Ushort(x) => buf.put_u16(*x),
        Value::Uint(x) => buf.put_u32(*x),
        Value::Ulong(x) => buf.put_u64(*x),
        Value::Byte(x) => buf.put_i8(*x),
        Value::Short(x) => buf.put_i16(*x),
        Value::Int(x) => buf.put_i32(*x),
        Value::Long(x) => buf.put_i64(*x),
        Value::Float(x) => buf.put_f32(*x),
        Value::Double(x) => buf.put_f64(*x),
        Value::Decimal32(x) => buf.put_slice(&x.0),
        Value::Decimal64(x) => buf.put_slice(&x.0),
        Value::Decimal128(x) => buf.put_slice(&x.0),
        Value::Char(c) => buf.put_u32(*c as u32),
        Value::Timestamp(t) => buf.put_i64(t.0),
        Value::Uuid(u) => buf.put_slice(&u.0),
        Value::Binary(b) => {
            buf.put_u32(b.len() as u32);
            buf.put_slice(b);
        }
        Value::String(s) => {
            buf.put_u32(s.len() as u32);
            buf.put_slice(s.as_bytes());
        }
        Value::Symbol(s) => {
            buf.put_u32(s.len() as u32);
            buf.put_slice(s.as_bytes());
        }
        Value::List(items) => {
            let mut body = BytesMut::new();
            items.iter().for_each(|i| wide(i, &mut body));
            buf.put_u32(body.len() as u32 + 4);
            buf.put_u32(items.len() as u32);
            buf.put_slice(&body);
        }
        Value::Map(m) => {
            let mut body = BytesMut::new();
            for (k, v) in &m.0 {
                wide(k, &mut body);
                wide(v, &mut body);
            }
            buf.put_u32(body.len() as u32 + 4);
            buf.put_u32(m.0.len() as u32 * 2);
            buf.put_slice(&body);
        }
        Value::Array(a) => {
            let mut body = BytesMut::new();
            let inner = |e: &Value| -> Value {
                match e {
                    Value::Described(d) => d.value.clone(),
                    v => v.clone(),
                }
            };
            match a.elements().first() {
                None => body.put_u8(fc::NULL),
                Some(Value::Described(d)) => {
                    body.put_u8(fc::DESCRIBED);
                    wide_descriptor(&d.descriptor, &mut body);
                    body.put_u8(wide_code(&d.value));
                }
                Some(first) => body.put_u8(wide_code(first)),
            }
            for e in a.elements() {
                wide_body(&inner(e), &mut body);
            }
            buf.put_u32(body.len() as u32 + 4);
            buf.put_u32(a.elements().len() as u32);
            buf.put_slice(&body);
        }
        Value::Described(_) => unreachable!("handled by wide()"),
    }
}

fn wide_bytes(v: &Value) -> Bytes {
    let mut buf = BytesMut::new();
    wide(v, &mut buf);
    buf.freeze()
}

/// Rewrites every known numeric descriptor to its symbolic form.
fn symbolic(v: Value) -> Value {
    match v {
        Value::Described(d) => {
            let Described { descriptor, value } = *d;
            let descriptor = match descriptor {
                Descriptor::Code(c) => match KNOWN_CODES.iter().find(|(k, _)| *k == c) {
                    Some((_, name)) => Descriptor::Symbol(Symbol::from(*name)),
                    None => Descriptor::Code(c),
                },
                s => s,
            };
            Value::Described(Box::new(Described {
                descriptor,
                value: symbolic(value),
            }))
        }
        Value::List(items) => Value::List(items.into_iter().map(symbolic).collect()),
        Value::Map(m) => Value::Map(Map(m
            .0
            .into_iter()
            .map(|(k, v)| (symbolic(k), symbolic(v)))
            .collect())),
        Value::Array(a) => Value::Array(
            Array::new(a.elements().iter().cloned().map(symbolic).collect())
                .expect("still homogeneous"),
        ),
        v => v,
    }
}

/// The composite's field list with `extra` appended: trailing nulls, or
/// fields a later version of the spec might add.
fn with_extra_fields(v: Value, extra: &[Value]) -> Value {
    match v {
        Value::Described(d) => {
            let Described { descriptor, value } = *d;
            let Value::List(mut fields) = value else {
                panic!("composite body is a list")
            };
            fields.extend_from_slice(extra);
            Value::Described(Box::new(Described {
                descriptor,
                value: Value::List(fields),
            }))
        }
        other => panic!("not a composite: {other:?}"),
    }
}

/// Checks every alternative encoding of a composite decodes to `expected`:
/// the wide form, symbolic descriptors (wide and compact), and the field
/// list with trailing nulls and unknown trailing fields.
fn check_alternative_encodings<T: Decode + PartialEq + std::fmt::Debug>(
    encoded: &Bytes,
    expected: &T,
) {
    let as_value = Value::from_bytes(encoded.clone()).expect("a composite is a valid value");
    // Through `Value` and back (not always byte-identical: an empty array
    // of symbols re-encodes with a null element constructor).
    let decoded_generic: T = decode_exact(&as_value.to_bytes());
    assert_eq!(&decoded_generic, expected, "re-encoded as a value");
    let decoded_wide: T = decode_exact(&wide_bytes(&as_value));
    assert_eq!(&decoded_wide, expected, "wide encoding");
    let sym = symbolic(as_value.clone());
    let decoded_sym: T = decode_exact(&sym.to_bytes());
    assert_eq!(&decoded_sym, expected, "symbolic descriptors");
    let decoded_sym_wide: T = decode_exact(&wide_bytes(&sym));
    assert_eq!(&decoded_sym_wide, expected, "symbolic descriptors, wide");
    let nulls = with_extra_fields(as_value.clone(), &[Value::Null, Value::Null]);
    let decoded_nulls: T = decode_exact(&nulls.to_bytes());
    assert_eq!(&decoded_nulls, expected, "explicit trailing nulls");
    // Appending past the declared fields: trailing nulls aside, the decoder
    // skips fields a later version of the spec might add.
    let extra = with_extra_fields(
        as_value,
        &[
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
    );
    let decoded_extra: T = decode_exact(&extra.to_bytes());
    assert_eq!(&decoded_extra, expected, "nulls past the last field");
}

fn amqp_frame_round_trip(channel: u16, p: &Performative, payload: &[u8]) {
    let mut buf = BytesMut::new();
    encode_amqp_frame(channel, p, payload, &mut buf);
    let len = buf.len();
    // Every proper prefix asks for more bytes and leaves the buffer alone.
    for cut in [0, 1, 7, 8, len / 2, len - 1] {
        let mut partial = BytesMut::from(&buf[..cut.min(len - 1)]);
        assert_eq!(decode_frame(&mut partial, u32::MAX, Layer::Amqp), Ok(None));
        assert_eq!(partial.len(), cut.min(len - 1));
    }
    // Two frames back to back decode one at a time.
    let mut two = buf.clone();
    two.extend_from_slice(&buf);
    for _ in 0..2 {
        let frame = decode_frame(&mut two, len as u32, Layer::Amqp)
            .expect("valid frame")
            .expect("complete frame");
        assert_eq!(
            frame,
            Frame::Amqp {
                channel,
                performative: p.clone(),
                payload: Bytes::copy_from_slice(payload),
            }
        );
    }
    assert!(two.is_empty(), "decode_frame consumes exactly one frame");
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #[test]
    fn value_round_trips(v in arb_value()) {
        let encoded = check_round_trip(&v);
        // Re-encoding what was decoded is byte-identical.
        prop_assert_eq!(Value::from_bytes(encoded.clone()).unwrap().to_bytes(), encoded);
    }

    #[test]
    fn value_wide_encoding_decodes_the_same(v in arb_value()) {
        let encoded = wide_bytes(&v);
        let decoded: Value = decode_exact(&encoded);
        prop_assert_eq!(decoded, v);
    }

    #[test]
    fn raw_value_skipping_matches_decoding(v in arb_value(), tail in vec(any::<u8>(), 0..4)) {
        for encoded in [v.to_bytes(), wide_bytes(&v)] {
            let mut buf = BytesMut::from(&encoded[..]);
            buf.extend_from_slice(&tail);
            let mut d = Decoder::new(buf.freeze());
            let raw = d.read_raw_value().unwrap();
            prop_assert_eq!(&raw, &encoded);
            prop_assert_eq!(d.remaining(), tail.len());
        }
    }

    #[test]
    fn symbols_round_trip(s in arb_symbols()) {
        check_round_trip(&s);
    }

    #[test]
    fn fields_round_trip(f in arb_fields()) {
        check_round_trip(&f);
    }

    #[test]
    fn delivery_state_round_trips(s in arb_delivery_state()) {
        let encoded = check_round_trip(&s);
        check_alternative_encodings(&encoded, &s);
    }

    #[test]
    fn source_round_trips(s in arb_source()) {
        let encoded = check_round_trip(&s);
        check_alternative_encodings(&encoded, &s);
    }

    #[test]
    fn target_terminus_round_trips(t in arb_target_terminus()) {
        let encoded = check_round_trip(&t);
        check_alternative_encodings(&encoded, &t);
    }

    #[test]
    fn error_round_trips(e in arb_error()) {
        let encoded = check_round_trip(&e);
        check_alternative_encodings(&encoded, &e);
    }

    #[test]
    fn performative_round_trips(p in arb_performative()) {
        let encoded = check_round_trip(&p);
        check_alternative_encodings(&encoded, &p);
    }

    #[test]
    fn performative_frame_round_trips(
        p in arb_performative(),
        channel in any::<u16>(),
        payload in vec(any::<u8>(), 0..64),
    ) {
        let payload: &[u8] = if matches!(p, Performative::Transfer(_)) { &payload } else { &[] };
        amqp_frame_round_trip(channel, &p, payload);
    }

    #[test]
    fn sasl_frame_round_trips(f in arb_sasl_frame()) {
        let encoded = check_round_trip(&f);
        check_alternative_encodings(&encoded, &f);
        let mut buf = BytesMut::new();
        encode_sasl_frame(&f, &mut buf);
        let len = buf.len();
        let mut partial = BytesMut::from(&buf[..len - 1]);
        prop_assert_eq!(decode_frame(&mut partial, u32::MAX, Layer::Sasl), Ok(None));
        let frame = decode_frame(&mut buf, len as u32, Layer::Sasl).unwrap().unwrap();
        prop_assert_eq!(frame, Frame::Sasl(f));
        prop_assert!(buf.is_empty());
    }

    /// A frame with an extended header (data offset past 2) skips it.
    #[test]
    fn extended_header_is_skipped(
        p in arb_performative(),
        ext in vec(any::<u8>(), 0..5).prop_map(|v| v.repeat(4)),
        channel in any::<u16>(),
    ) {
        let body = p.to_bytes();
        let size = 8 + ext.len() + body.len();
        let mut buf = BytesMut::new();
        buf.put_u32(size as u32);
        buf.put_u8(2 + (ext.len() / 4) as u8);
        buf.put_u8(0);
        buf.put_u16(channel);
        buf.put_slice(&ext);
        buf.put_slice(&body);
        let frame = decode_frame(&mut buf, u32::MAX, Layer::Amqp).unwrap().unwrap();
        prop_assert_eq!(frame, Frame::Amqp { channel, performative: p, payload: Bytes::new() });
    }

    #[test]
    fn uint_encodings_agree(v in any::<u32>()) {
        let mut forms = vec![[&[fc::UINT][..], &v.to_be_bytes()].concat()];
        if v <= 255 {
            forms.push(vec![fc::SMALLUINT, v as u8]);
        }
        if v == 0 {
            forms.push(vec![fc::UINT0]);
        }
        for f in forms {
            prop_assert_eq!(u32::from_bytes(Bytes::from(f.clone())), Ok(v));
            prop_assert_eq!(Value::from_bytes(Bytes::from(f)), Ok(Value::Uint(v)));
        }
    }

    #[test]
    fn ulong_encodings_agree(v in prop_oneof![0..=300u64, any::<u64>()]) {
        let mut forms = vec![[&[fc::ULONG][..], &v.to_be_bytes()].concat()];
        if v <= 255 {
            forms.push(vec![fc::SMALLULONG, v as u8]);
        }
        if v == 0 {
            forms.push(vec![fc::ULONG0]);
        }
        for f in forms {
            prop_assert_eq!(u64::from_bytes(Bytes::from(f.clone())), Ok(v));
            prop_assert_eq!(Value::from_bytes(Bytes::from(f)), Ok(Value::Ulong(v)));
        }
    }

    #[test]
    fn int_and_long_encodings_agree(v in any::<i8>()) {
        let int_forms = [
            vec![fc::SMALLINT, v as u8],
            [&[fc::INT][..], &i32::from(v).to_be_bytes()].concat(),
        ];
        for f in int_forms {
            prop_assert_eq!(i32::from_bytes(Bytes::from(f.clone())), Ok(v.into()));
            prop_assert_eq!(Value::from_bytes(Bytes::from(f)), Ok(Value::Int(v.into())));
        }
        let long_forms = [
            vec![fc::SMALLLONG, v as u8],
            [&[fc::LONG][..], &i64::from(v).to_be_bytes()].concat(),
        ];
        for f in long_forms {
            prop_assert_eq!(i64::from_bytes(Bytes::from(f.clone())), Ok(v.into()));
            prop_assert_eq!(Value::from_bytes(Bytes::from(f)), Ok(Value::Long(v.into())));
        }
    }

    #[test]
    fn variable_width_encodings_agree(b in vec(any::<u8>(), 0..255), s in "[a-z]{0,255}") {
        let bin8 = [&[fc::VBIN8, b.len() as u8][..], &b].concat();
        let bin32 = [&[fc::VBIN32][..], &(b.len() as u32).to_be_bytes(), &b].concat();
        for f in [bin8, bin32] {
            prop_assert_eq!(Bytes::from_bytes(Bytes::from(f.clone())), Ok(Bytes::from(b.clone())));
            prop_assert_eq!(Value::from_bytes(Bytes::from(f)), Ok(Value::Binary(Bytes::from(b.clone()))));
        }
        let s = s.as_bytes();
        for (code8, code32) in [(fc::STR8, fc::STR32), (fc::SYM8, fc::SYM32)] {
            let short = [&[code8, s.len() as u8][..], s].concat();
            let long = [&[code32][..], &(s.len() as u32).to_be_bytes(), s].concat();
            let a = Value::from_bytes(Bytes::from(short)).unwrap();
            let b = Value::from_bytes(Bytes::from(long)).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.as_text(), std::str::from_utf8(s).ok());
        }
    }
}

// ---------------------------------------------------------------------------
// Targeted cases: the encodings AMQP allows for a type all decode
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

fn v(hex: &str) -> Value {
    Value::from_bytes(h(hex)).expect("valid encoding")
}

fn described(descriptor: Descriptor, value: Value) -> Value {
    Value::Described(Box::new(Described { descriptor, value }))
}

fn array(items: Vec<Value>) -> Value {
    Value::Array(Array::new(items).expect("homogeneous"))
}

#[test]
fn boolean_encodings() {
    assert_eq!(v("41"), Value::Bool(true));
    assert_eq!(v("42"), Value::Bool(false));
    assert_eq!(v("56 01"), Value::Bool(true));
    assert_eq!(v("56 00"), Value::Bool(false));
    assert_eq!(bool::from_bytes(h("56 01")), Ok(true));
    assert_eq!(bool::from_bytes(h("42")), Ok(false));
}

#[test]
fn list_encodings() {
    let empty = Value::List(vec![]);
    assert_eq!(v("45"), empty);
    assert_eq!(v("c0 01 00"), empty);
    assert_eq!(v("d0 00000004 00000000"), empty);
    let two = Value::List(vec![Value::Uint(7), Value::Null]);
    assert_eq!(v("c0 04 02 52 07 40"), two);
    assert_eq!(v("d0 00000007 00000002 52 07 40"), two);
    assert_eq!(v("d0 0000000a 00000002 70 00000007 40"), two);
    // The encoder picks the smallest form.
    assert_eq!(empty.to_bytes(), h("45"));
    assert_eq!(two.to_bytes(), h("c0 04 02 52 07 40"));
}

#[test]
fn map_encodings() {
    let m = Value::Map(Map(vec![(
        Value::Symbol(Symbol::from("k")),
        Value::Bool(true),
    )]));
    assert_eq!(v("c1 05 02 a3 01 'k' 41"), m);
    assert_eq!(v("d1 0000000c 00000002 b3 00000001 'k' 56 01"), m);
    assert_eq!(m.to_bytes(), h("c1 05 02 a3 01 'k' 41"));
    assert_eq!(v("c1 01 00"), Value::Map(Map::default()));
    assert_eq!(v("d1 00000004 00000000"), Value::Map(Map::default()));
}

#[test]
fn array_encodings() {
    let uints = array(vec![Value::Uint(1), Value::Uint(2)]);
    assert_eq!(v("e0 04 02 52 01 02"), uints, "smalluint elements");
    assert_eq!(v("e0 0a 02 70 00000001 00000002"), uints);
    assert_eq!(v("f0 0000000d 00000002 70 00000001 00000002"), uints);
    assert_eq!(uints.to_bytes(), h("e0 0a 02 70 00000001 00000002"));
    // Zero-width element constructors, within the decoder's count bound.
    assert_eq!(v("e0 02 01 43"), array(vec![Value::Uint(0)]));
    assert_eq!(v("e0 02 01 44"), array(vec![Value::Ulong(0)]));
    assert_eq!(v("e0 02 01 41"), array(vec![Value::Bool(true)]));
    assert_eq!(v("e0 02 01 40"), array(vec![Value::Null]));
    assert_eq!(v("e0 02 01 45"), array(vec![Value::List(vec![])]));
    assert_eq!(
        v("e0 04 02 56 01 00"),
        array(vec![Value::Bool(true), Value::Bool(false)])
    );
    assert_eq!(
        v("e0 04 02 53 00 ff"),
        array(vec![Value::Ulong(0), Value::Ulong(255)])
    );
    assert_eq!(
        v("e0 04 02 54 ff 01"),
        array(vec![Value::Int(-1), Value::Int(1)])
    );
    assert_eq!(
        v("e0 04 02 55 80 7f"),
        array(vec![Value::Long(-128), Value::Long(127)])
    );
    // Lists in an array: list8 and list32 elements.
    let lists = array(vec![Value::List(vec![Value::Null]), Value::List(vec![])]);
    assert_eq!(v("e0 07 02 c0 02 01 40 01 00"), lists);
    assert_eq!(
        v("e0 13 02 d0 00000005 00000001 40 00000004 00000000"),
        lists
    );
    // Maps in an array.
    assert_eq!(
        v("e0 06 02 c1 01 00 01 00"),
        array(vec![Value::Map(Map::default()), Value::Map(Map::default())])
    );
    // Symbols: sym8 and sym32 elements.
    let syms = array(vec![
        Value::Symbol(Symbol::from("a")),
        Value::Symbol(Symbol::from("bc")),
    ]);
    assert_eq!(v("e0 07 02 a3 01 'a' 02 'bc'"), syms);
    assert_eq!(v("e0 0d 02 b3 00000001 'a' 00000002 'bc'"), syms);
    assert_eq!(
        v("f0 00000010 00000002 b3 00000001 'a' 00000002 'bc'"),
        syms
    );
    // Arrays of arrays: each inner array has its own element constructor.
    assert_eq!(
        v("e0 09 02 e0 02 01 43 03 01 52 07"),
        array(vec![
            array(vec![Value::Uint(0)]),
            array(vec![Value::Uint(7)]),
        ])
    );
    // An empty array, whatever its constructor.
    assert_eq!(v("e0 02 00 70"), Value::Array(Array::default()));
    assert_eq!(v("f0 00000005 00000000 a1"), Value::Array(Array::default()));
}

#[test]
fn described_array_encodings() {
    let numeric = array(vec![
        described(Descriptor::Code(0x77), Value::Uint(1)),
        described(Descriptor::Code(0x77), Value::Uint(2)),
    ]);
    assert_eq!(v("e0 07 02 00 53 77 52 01 02"), numeric);
    assert_eq!(
        v("e0 14 02 00 80 0000000000000077 70 00000001 00000002"),
        numeric
    );
    check_round_trip(&numeric);
    let symbolic = array(vec![described(
        Descriptor::Symbol(Symbol::from("x:y")),
        Value::Bool(true),
    )]);
    assert_eq!(v("e0 08 01 00 a3 03 'x:y' 41"), symbolic);
    assert_eq!(v("e0 0c 01 00 b3 00000003 'x:y' 56 01"), symbolic);
    check_round_trip(&symbolic);
    // Described nulls: as many as the constructor has bytes.
    let nulls = vec![described(Descriptor::Code(0), Value::Null); 3];
    assert_eq!(v("e0 04 03 00 44 40"), array(nulls.clone()));
    check_round_trip(&array(nulls));
}

#[test]
fn descriptor_encodings() {
    let expected = described(Descriptor::Code(0), Value::Null);
    assert_eq!(v("00 44 40"), expected);
    assert_eq!(v("00 53 00 40"), expected);
    assert_eq!(v("00 80 0000000000000000 40"), expected);
    let sym = described(Descriptor::Symbol(Symbol::from("a:b")), Value::Null);
    assert_eq!(v("00 a3 03 'a:b' 40"), sym);
    assert_eq!(v("00 b3 00000003 'a:b' 40"), sym);
    // A described value whose value is described.
    assert_eq!(
        v("00 53 01 00 a3 01 'x' 45"),
        described(
            Descriptor::Code(1),
            described(Descriptor::Symbol(Symbol::from("x")), Value::List(vec![]))
        )
    );
}

#[test]
fn symbols_field_accepts_a_single_symbol() {
    assert_eq!(
        Symbols::from_bytes(h("a3 05 'PLAIN'")),
        Ok(Symbols::from(["PLAIN"]))
    );
    assert_eq!(
        Symbols::from_bytes(h("b3 00000005 'PLAIN'")),
        Ok(Symbols::from(["PLAIN"]))
    );
    assert_eq!(
        Symbols::from_bytes(h("e0 07 02 a3 01 'a' 02 'bc'")),
        Ok(Symbols::from(["a", "bc"]))
    );
    // An open whose offered-capabilities is one symbol, not an array.
    let p = Performative::from_bytes(h(
        "00 53 10 c0 0f 08 a1 01 'c' 40 40 40 40 40 40 a3 03 'abc'",
    ))
    .unwrap();
    let Performative::Open(open) = p else {
        panic!("an open")
    };
    assert_eq!(open.container_id, "c");
    assert_eq!(open.offered_capabilities, Some(Symbols::from(["abc"])));
}

#[test]
fn performatives_with_symbolic_descriptors() {
    let close = Performative::Close(Close {
        error: Some(Error::new(
            ferry_proto::definitions::condition::DECODE_ERROR,
            "bad",
        )),
    });
    let bytes = h("00 a3 0f 'amqp:close:list' c0 2e 01 \
         00 a3 0f 'amqp:error:list' c0 19 02 a3 11 'amqp:decode-error' a1 03 'bad'");
    assert_eq!(Performative::from_bytes(bytes), Ok(close.clone()));
    let numeric = h("00 53 18 c0 1f 01 00 53 1d c0 19 02 a3 11 'amqp:decode-error' a1 03 'bad'");
    assert_eq!(Performative::from_bytes(numeric.clone()), Ok(close.clone()));
    assert_eq!(close.to_bytes(), numeric);
    // Wide numeric descriptors.
    let wide = h("00 80 0000000000000018 c0 1f 01 \
         00 53 1d c0 19 02 a3 11 'amqp:decode-error' a1 03 'bad'");
    assert_eq!(Performative::from_bytes(wide), Ok(close));
}

#[test]
fn every_delivery_state_in_a_disposition_frame() {
    for state in [
        DeliveryState::Received(Received {
            section_number: 3,
            section_offset: 1 << 40,
        }),
        DeliveryState::Accepted,
        DeliveryState::Rejected(Rejected {
            error: Some(Error::new(Symbol::from("amqp:internal-error"), "x")),
        }),
        DeliveryState::Rejected(Rejected { error: None }),
        DeliveryState::Released,
        DeliveryState::Modified(Modified {
            delivery_failed: Some(true),
            undeliverable_here: Some(false),
            message_annotations: Some(Fields(vec![(Symbol::from("x-opt-a"), Value::Long(-5))])),
        }),
        DeliveryState::Modified(Modified::default()),
    ] {
        let p = Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: SequenceNo(1),
            last: Some(SequenceNo(9)),
            settled: Some(true),
            state: Some(state),
            batchable: None,
        });
        amqp_frame_round_trip(0, &p, &[]);
    }
    // The unit-struct outcomes are composites of their own too.
    check_round_trip(&Accepted {});
    check_round_trip(&Released {});
    assert_eq!(
        DeliveryState::from_bytes(h("00 a3 12 'amqp:accepted:list' 45")),
        Ok(DeliveryState::Accepted)
    );
}

#[test]
fn default_performatives_round_trip() {
    for p in [
        Performative::Open(Box::default()),
        Performative::Begin(Begin::default()),
        Performative::Attach(Box::default()),
        Performative::Flow(Flow::default()),
        Performative::Transfer(Transfer::default()),
        Performative::Disposition(Disposition::default()),
        Performative::Detach(Detach::default()),
        Performative::End(End::default()),
        Performative::Close(Close::default()),
    ] {
        let encoded = check_round_trip(&p);
        check_alternative_encodings(&encoded, &p);
        amqp_frame_round_trip(1, &p, &[]);
    }
    // A close with no fields is the smallest composite: list0.
    assert_eq!(
        Performative::Close(Close::default()).to_bytes(),
        h("00 53 18 45")
    );
}

#[test]
fn transfer_payload_is_carried() {
    let t = Performative::Transfer(Transfer {
        handle: Handle(0),
        delivery_id: Some(SequenceNo(0)),
        delivery_tag: Some(Bytes::from_static(b"t")),
        message_format: Some(0),
        ..Transfer::default()
    });
    amqp_frame_round_trip(5, &t, &h("00 53 75 a0 03 'abc'"));
}

#[test]
fn heartbeat_round_trips() {
    let mut buf = BytesMut::new();
    encode_empty_frame(&mut buf);
    encode_empty_frame(&mut buf);
    assert_eq!(
        decode_frame(&mut buf, 512, Layer::Amqp),
        Ok(Some(Frame::Empty))
    );
    assert_eq!(
        decode_frame(&mut buf, 512, Layer::Amqp),
        Ok(Some(Frame::Empty))
    );
    assert!(buf.is_empty());
}

#[test]
fn array_new_refuses_what_one_constructor_cannot_carry() {
    assert!(Array::new(vec![Value::Uint(1), Value::Ulong(1)]).is_none());
    assert!(
        Array::new(vec![
            described(Descriptor::Code(1), Value::Null),
            described(Descriptor::Code(2), Value::Null),
        ])
        .is_none()
    );
    // A descriptor inside a descriptor: the decoder takes one per array.
    assert!(
        Array::new(vec![described(
            Descriptor::Code(1),
            described(Descriptor::Code(2), Value::Uint(1))
        )])
        .is_none()
    );
    // More zero-width elements than the constructor has bytes.
    assert!(Array::new(vec![Value::Null]).is_some());
    assert!(Array::new(vec![Value::Null, Value::Null]).is_none());
    assert!(Array::new(vec![described(Descriptor::Code(0), Value::Null); 3]).is_some());
    assert!(Array::new(vec![described(Descriptor::Code(0), Value::Null); 4]).is_none());
}
