//! The control message encoding: round trips, and malformed input giving
//! an error rather than a panic.

use bytes::Bytes;
use ferry_proto::codec::{Map, Str, Value};
use ferry_proto::message::{Body, Message};

use super::harness::{Rng, id};
use crate::routing::{Advert, ControlMessage, RoutingError, Signature, digest};

fn samples() -> Vec<ControlMessage> {
    vec![
        ControlMessage::Hello {
            id: id("A"),
            instance: 1,
            seen: vec![],
        },
        ControlMessage::Hello {
            id: id("router-1.example_com"),
            instance: u64::MAX,
            seen: vec![id("B"), id("C"), id("Ω")],
        },
        ControlMessage::RouterAdvert {
            id: id("B"),
            adverts: vec![
                Advert {
                    id: id("B"),
                    instance: 1_700_000_000_000,
                    ls_seq: 0,
                    ma_seq: u64::MAX,
                },
                Advert {
                    id: id("C"),
                    instance: 3,
                    ls_seq: 42,
                    ma_seq: 0,
                },
            ],
        },
        ControlMessage::LinkState {
            id: id("C"),
            instance: 3,
            seq: 42,
            neighbors: vec![(id("A"), 1), (id("B"), u32::MAX), (id("D"), 0)],
            sig: Some(Signature {
                certs: vec![Bytes::from_static(b"cert"), Bytes::new()],
                scheme: 0x0403,
                value: Bytes::from_static(&[7; 72]),
            }),
        },
        ControlMessage::LinkState {
            id: id("C"),
            instance: 3,
            seq: 1,
            neighbors: vec![],
            sig: None,
        },
        ControlMessage::LinkStateRequest { id: id("D") },
        ControlMessage::MobileAddresses {
            id: id("E"),
            instance: 9,
            seq: 7,
            added: vec!["orders".into(), "a/b/c".into(), "x".repeat(300)],
            removed: vec!["gone".into()],
            full: false,
            sig: None,
        },
        ControlMessage::MobileAddresses {
            id: id("E"),
            instance: 9,
            seq: 8,
            added: vec![],
            removed: vec![],
            full: true,
            sig: Some(Signature {
                certs: vec![],
                scheme: 0x0807,
                value: Bytes::from_static(b"sig"),
            }),
        },
        ControlMessage::MobileAddressRequest { id: id("F") },
        ControlMessage::RouterAdvert {
            id: id("B"),
            adverts: vec![],
        },
        ControlMessage::RouterDigest {
            id: id("B"),
            routers: 1000,
            digest: 0x9e37_79b9_7f4a_7c15,
        },
    ]
}

/// Two routers holding the same versions compute the same digest, in any
/// order; a version moved by one changes it.
#[test]
fn the_digest_depends_on_the_versions_not_their_order() {
    let advert = |name: &str, ls_seq: u64| Advert {
        id: id(name),
        instance: 7,
        ls_seq,
        ma_seq: 2,
    };
    let list = [advert("A", 1), advert("B", 5), advert("C", 9)];
    let mut shuffled = list.clone();
    shuffled.reverse();
    assert_eq!(digest(&list), digest(&shuffled));
    let moved = [advert("A", 1), advert("B", 6), advert("C", 9)];
    assert_ne!(digest(&list), digest(&moved));
    // Swapped between routers, the same numbers are other versions.
    let swapped = [advert("A", 5), advert("B", 1), advert("C", 9)];
    assert_ne!(digest(&list), digest(&swapped));
    // Fixed across builds and machines (every router must agree): the
    // value computed apart, in Python, from the rule in `digest`.
    assert_eq!(digest(&[]), 0);
    assert_eq!(digest(&list[..1]), 0x1531_1d9f_40c3_902e);
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let wire = m.encode();
        // One amqp-value section: 0x00 0x53 0x77, then a map.
        assert_eq!(&wire[..3], &[0x00, 0x53, 0x77], "{m:?}");
        assert!(matches!(wire[3], 0xc1 | 0xd1), "{m:?}");
        assert_eq!(ControlMessage::decode(wire).unwrap(), m);
    }
}

#[test]
fn other_sections_and_unknown_keys_are_ignored() {
    let m = &samples()[3];
    let Ok(Message {
        body: Body::AmqpValue(Value::Map(mut map)),
        ..
    }) = Message::decode(m.encode())
    else {
        panic!("not a map");
    };
    map.0
        .push((Value::String(Str::from("future")), Value::Bool(true)));
    let wire = Message::new(Body::AmqpValue(Value::Map(map)))
        .with_to("_topo/B")
        .encode();
    assert_eq!(ControlMessage::decode(wire).unwrap(), *m);
}

/// The map of a message, to tamper with.
fn map_of(m: &ControlMessage) -> Map {
    match Message::decode(m.encode()).unwrap().body {
        Body::AmqpValue(Value::Map(map)) => map,
        other => panic!("{other:?}"),
    }
}

fn set(map: &mut Map, key: &str, value: Value) {
    map.0.retain(|(k, _)| k.as_text() != Some(key));
    map.0.push((Value::String(Str::from(key)), value));
}

fn decode_body(body: Body) -> Result<ControlMessage, RoutingError> {
    ControlMessage::decode(Message::new(body).encode())
}

fn decode_map(map: Map) -> Result<ControlMessage, RoutingError> {
    decode_body(Body::AmqpValue(Value::Map(map)))
}

#[test]
fn wrong_shapes_are_errors() {
    let lsu = &samples()[3];
    assert_eq!(
        decode_body(Body::data(Bytes::from_static(b"hello"))),
        Err(RoutingError::NotAMap)
    );
    assert_eq!(
        decode_body(Body::AmqpValue(Value::List(vec![]))),
        Err(RoutingError::NotAMap)
    );
    assert_eq!(decode_body(Body::Empty), Err(RoutingError::NotAMap));

    let mut m = map_of(lsu);
    m.0.retain(|(k, _)| k.as_text() != Some("opcode"));
    assert_eq!(decode_map(m), Err(RoutingError::MissingField("opcode")));

    let mut m = map_of(lsu);
    set(&mut m, "opcode", Value::String(Str::from("BOGUS")));
    assert_eq!(
        decode_map(m),
        Err(RoutingError::UnknownOpcode("BOGUS".into()))
    );

    let mut m = map_of(lsu);
    set(&mut m, "version", Value::Uint(2));
    assert_eq!(decode_map(m), Err(RoutingError::UnsupportedVersion(2)));

    let mut m = map_of(lsu);
    set(&mut m, "instance", Value::String(Str::from("1")));
    assert!(matches!(
        decode_map(m),
        Err(RoutingError::InvalidField {
            field: "instance",
            ..
        })
    ));

    let mut m = map_of(lsu);
    set(&mut m, "ls_seq", Value::Null);
    assert_eq!(decode_map(m), Err(RoutingError::MissingField("ls_seq")));

    let mut m = map_of(lsu);
    let too_costly = Map(vec![(
        Value::String(Str::from("A")),
        Value::Ulong(u64::from(u32::MAX) + 1),
    )]);
    set(&mut m, "neighbors", Value::Map(too_costly));
    assert!(matches!(
        decode_map(m),
        Err(RoutingError::InvalidField {
            field: "neighbors",
            ..
        })
    ));

    let mut m = map_of(lsu);
    set(&mut m, "id", Value::String(Str::from("")));
    assert!(matches!(
        decode_map(m),
        Err(RoutingError::InvalidField { field: "id", .. })
    ));

    let mut m = map_of(&samples()[1]);
    set(&mut m, "seen", Value::List(vec![Value::Uint(3)]));
    assert!(matches!(
        decode_map(m),
        Err(RoutingError::InvalidField { field: "seen", .. })
    ));

    let mut m = map_of(&samples()[6]);
    set(&mut m, "full", Value::Uint(1));
    assert!(matches!(
        decode_map(m),
        Err(RoutingError::InvalidField { field: "full", .. })
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(ControlMessage::decode(Bytes::new()).is_err());
    let mut rng = Rng::new(99);
    for _ in 0..5000 {
        let len = rng.below(80);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(ControlMessage::decode(Bytes::from(bytes)).is_err());
    }
    // Garbage that starts like an amqp-value section.
    for _ in 0..5000 {
        let len = rng.below(60);
        let mut bytes = vec![0x00, 0x53, 0x77];
        bytes.extend((0..len).map(|_| rng.next() as u8));
        assert!(ControlMessage::decode(Bytes::from(bytes)).is_err());
    }
}

#[test]
fn truncated_and_corrupted_messages_do_not_panic() {
    let mut rng = Rng::new(5);
    for m in samples() {
        let wire = m.encode();
        for len in 0..wire.len() {
            assert!(
                ControlMessage::decode(wire.slice(..len)).is_err(),
                "{m:?} cut at {len}"
            );
        }
        for _ in 0..200 {
            let mut bytes = wire.to_vec();
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
            // Either outcome is fine; not panicking is the point.
            let _ = ControlMessage::decode(Bytes::from(bytes));
        }
    }
}
