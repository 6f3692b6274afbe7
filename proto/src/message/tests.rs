//! Round trips, lazy-view agreement with the full decode, the
//! message-annotations rewrite, and totality on malformed input.

use bytes::{Buf, Bytes};

use super::*;
use crate::codec::{Decode, DecodeError, Str, Symbol, Timestamp, Uuid, Value};
use crate::definitions::SequenceNo;

fn full_properties() -> Properties {
    Properties {
        message_id: Some(MessageId::String("id-1".into())),
        user_id: Some(Bytes::from_static(b"alice")),
        to: Some("orders/eu".into()),
        subject: Some("new".into()),
        reply_to: Some("replies/42".into()),
        correlation_id: Some(MessageId::Uuid(Uuid([7; 16]))),
        content_type: Some(Symbol::from_static("application/json")),
        content_encoding: Some(Symbol::from_static("gzip")),
        absolute_expiry_time: Some(Timestamp(1_700_000_060_000)),
        creation_time: Some(Timestamp(1_700_000_000_000)),
        group_id: Some("g".into()),
        group_sequence: Some(SequenceNo(3)),
        reply_to_group_id: Some("rg".into()),
    }
}

fn sample(body: Body) -> Message {
    Message::new(body)
        .with_header(Header {
            durable: Some(true),
            priority: Some(7),
            ttl: Some(30_000),
            first_acquirer: None,
            delivery_count: Some(2),
        })
        .with_delivery_annotation("x-opt-hop", Value::Uint(1))
        .with_message_annotation("x-opt-ingress", Value::String("A".into()))
        .with_message_annotation(0x1234_u64, Value::Long(-5))
        .with_properties(full_properties())
        .with_application_property("colour", Value::String("red".into()))
        .with_application_property("n", Value::Int(-1))
        .with_footer("x-opt-sig", Value::Binary(Bytes::from_static(b"\x01\x02")))
}

fn bodies() -> Vec<Body> {
    vec![
        Body::Empty,
        Body::data(Bytes::from_static(b"hello")),
        Body::Data(vec![Bytes::from(vec![1u8; 300]), Bytes::new()]),
        Body::AmqpSequence(vec![vec![Value::Uint(1), Value::Null], vec![]]),
        Body::AmqpValue(Value::Map(crate::codec::Map(vec![(
            Value::String("k".into()),
            Value::List(vec![Value::Bool(true)]),
        )]))),
    ]
}

#[test]
fn every_body_kind_round_trips() {
    for body in bodies() {
        let m = sample(body);
        assert_eq!(Message::decode(m.encode()).unwrap(), m);
    }
}

#[test]
fn empty_message_round_trips() {
    let m = Message::default();
    assert!(m.encode().is_empty());
    assert_eq!(Message::decode(Bytes::new()).unwrap(), m);
    let v = MessageView::parse(Bytes::new()).unwrap();
    assert_eq!(v.to(), Ok(None));
    assert_eq!(v.header(), Ok(None));
    assert!(v.bare_message_bytes().is_empty());
}

/// Every accessor of the view gives what the full decode gives.
fn assert_view_agrees(bytes: Bytes) {
    let m = Message::decode(bytes.clone()).unwrap();
    let v = MessageView::parse(bytes).unwrap();
    let p = m.properties.clone().unwrap_or_default();
    assert_eq!(v.header().unwrap(), m.header);
    assert_eq!(v.delivery_annotations().unwrap(), m.delivery_annotations);
    assert_eq!(v.message_annotations().unwrap(), m.message_annotations);
    assert_eq!(v.properties().unwrap(), m.properties);
    assert_eq!(
        v.application_properties().unwrap(),
        m.application_properties
    );
    assert_eq!(v.body().unwrap(), m.body);
    assert_eq!(v.footer().unwrap(), m.footer);
    assert_eq!(v.to().unwrap(), p.to);
    assert_eq!(v.to_str().unwrap(), p.to.as_deref());
    assert_eq!(v.reply_to().unwrap(), p.reply_to);
    assert_eq!(v.subject().unwrap(), p.subject);
    assert_eq!(v.message_id().unwrap(), p.message_id);
    assert_eq!(v.correlation_id().unwrap(), p.correlation_id);
    assert_eq!(v.absolute_expiry_time().unwrap(), p.absolute_expiry_time);
    assert_eq!(v.creation_time().unwrap(), p.creation_time);
    assert_eq!(v.group_id().unwrap(), p.group_id);
    assert_eq!(v.to_message().unwrap(), m);
}

#[test]
fn view_agrees_with_full_decode() {
    for body in bodies() {
        assert_view_agrees(sample(body).encode());
    }
    assert_view_agrees(Message::new(Body::data(Bytes::from_static(b"x"))).encode());
    assert_view_agrees(Message::default().with_to("q").encode());
}

#[test]
fn to_is_a_slice_of_the_message() {
    let bytes = sample(Body::data(Bytes::from_static(b"x"))).encode();
    let v = MessageView::parse(bytes.clone()).unwrap();
    let to = v.to().unwrap().unwrap();
    assert_eq!(to, "orders/eu");
    let offset = to.as_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
    assert!(offset < bytes.len());
}

#[test]
fn hand_encoded_message_parses() {
    // header{durable}, message-annotations{x-opt-a: "b"},
    // properties{message-id "id1", user-id null, to "queue"},
    // amqp-value "hi"
    let mut b = vec![0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0x41];
    b.extend_from_slice(&[0x00, 0x53, 0x72, 0xc1, 0x0d, 0x02, 0xa3, 0x07]);
    b.extend_from_slice(b"x-opt-a\xa1\x01b");
    b.extend_from_slice(&[0x00, 0x53, 0x73, 0xc0, 0x0e, 0x03, 0xa1, 0x03]);
    b.extend_from_slice(b"id1\x40\xa1\x05queue");
    b.extend_from_slice(b"\x00\x53\x77\xa1\x02hi");
    let v = MessageView::parse(Bytes::from(b)).unwrap();
    assert_eq!(v.to().unwrap().unwrap(), "queue");
    assert_eq!(v.reply_to().unwrap(), None);
    assert_eq!(v.header().unwrap().unwrap().durable, Some(true));
    assert_eq!(
        v.message_annotations().unwrap().unwrap().get("x-opt-a"),
        Some(&Value::String("b".into()))
    );
    assert_eq!(
        v.body().unwrap(),
        Body::AmqpValue(Value::String("hi".into()))
    );
    assert_eq!(v.body_kind(), Some(SectionKind::AmqpValue));
}

#[test]
fn symbolic_and_long_descriptors_are_accepted() {
    let mut b = vec![0x00, 0xa3, 20];
    b.extend_from_slice(b"amqp:properties:list");
    b.extend_from_slice(&[0xc0, 0x06, 0x03, 0x40, 0x40, 0xa1, 0x01, b'q']);
    b.extend_from_slice(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x75, 0xa0, 0x01, 0xff]);
    let v = MessageView::parse(Bytes::from(b)).unwrap();
    assert_eq!(v.to().unwrap().unwrap(), "q");
    assert_eq!(v.body().unwrap(), Body::data(Bytes::from_static(b"\xff")));
}

fn encode_sections(parts: &[Message]) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    parts.iter().for_each(|m| m.encode_into(&mut buf));
    buf.freeze()
}

#[test]
fn sections_out_of_order_are_refused() {
    let props = Message::default().with_to("q");
    let header = Message::default().with_header(Header::default());
    let value = Message::new(Value::Null);
    let data = Message::new(Body::data(Bytes::new()));
    let seq = Message::new(Body::AmqpSequence(vec![vec![]]));
    let footer = Message {
        footer: Some(Annotations::new()),
        ..Message::default()
    };
    for bad in [
        vec![props.clone(), header.clone()],
        vec![header.clone(), header.clone()],
        vec![value.clone(), value.clone()],
        vec![data.clone(), value.clone()],
        vec![data.clone(), seq.clone()],
        vec![data.clone(), props.clone()],
        vec![data.clone(), footer.clone(), data.clone()],
        vec![footer.clone(), footer.clone()],
    ] {
        let bytes = encode_sections(&bad);
        assert!(
            matches!(
                MessageView::parse(bytes.clone()),
                Err(DecodeError::InvalidValue { .. })
            ),
            "{bad:?}"
        );
        assert!(Message::decode(bytes).is_err());
    }
    let ok = encode_sections(&[header, props, data.clone(), data, footer]);
    assert!(MessageView::parse(ok).is_ok());
}

#[test]
fn malformed_sections_are_errors() {
    let cases: &[&[u8]] = &[
        &[0x40],                               // not described
        &[0x00, 0x53, 0x10, 0x45],             // open, not a section
        &[0x00, 0x53, 0x70, 0xa1, 0x00],       // header not a list
        &[0x00, 0x53, 0x72, 0x45],             // annotations not a map
        &[0x00, 0x53, 0x75, 0xa1, 0x00],       // data not binary
        &[0x00, 0x53, 0x73, 0xc0, 0x05, 0x01], // truncated list
        &[0x00, 0x53, 0x77],                   // value missing
        &[0x00, 0x53, 0x77, 0xff],             // undefined format code
        &[0x00, 0x53],                         // truncated descriptor
    ];
    for case in cases {
        assert!(
            MessageView::parse(Bytes::from_static(case)).is_err(),
            "{case:02x?}"
        );
    }
}

#[test]
fn malformed_inside_is_an_error_on_access() {
    // properties: a list8 claiming 3 fields whose `to` is a symbol.
    let b = [0x00, 0x53, 0x73, 0xc0, 0x05, 0x03, 0x40, 0x40, 0xa3, 0x00];
    let v = MessageView::parse(Bytes::copy_from_slice(&b)).unwrap();
    assert!(v.to().is_err());
    assert_eq!(v.message_id(), Ok(None));
    assert!(v.properties().is_err());
    // header list claiming more elements than bytes.
    let b = [0x00, 0x53, 0x70, 0xc0, 0x01, 0x05];
    let v = MessageView::parse(Bytes::copy_from_slice(&b)).unwrap();
    assert!(v.header().is_err());
}

/// The rewritten message has the new annotations and, section for
/// section, the same bytes as before everywhere else.
fn check_rewrite(original: &Message) {
    let bytes = original.encode();
    let view = MessageView::parse(bytes.clone()).unwrap();
    let mut ma = view.message_annotations().unwrap().unwrap_or_default();
    ma.insert(
        "x-opt-ferry-trace",
        Value::List(vec![Value::String("A".into())]),
    );
    let out = view.with_message_annotations(&ma);
    let [before, _, after] = out.parts().clone();
    // The untouched parts are slices of the original buffer.
    for part in [&before, &after] {
        if !part.is_empty() {
            let off = part.as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(&bytes[off..off + part.len()], &part[..]);
        }
    }
    let new = MessageView::parse(out.to_bytes()).unwrap();
    assert_eq!(new.message_annotations().unwrap(), Some(ma));
    for kind in [
        SectionKind::Header,
        SectionKind::DeliveryAnnotations,
        SectionKind::Properties,
        SectionKind::ApplicationProperties,
        SectionKind::Footer,
    ] {
        assert_eq!(
            new.section_bytes(kind),
            view.section_bytes(kind),
            "{kind:?}"
        );
    }
    assert_eq!(new.body_bytes(), view.body_bytes());
    assert_eq!(new.bare_message_bytes(), view.bare_message_bytes());
    let mut expected = original.clone();
    expected.message_annotations = new.message_annotations().unwrap();
    assert_eq!(Message::decode(out.to_bytes()).unwrap(), expected);
}

#[test]
fn rewrite_replaces_or_inserts_message_annotations() {
    let full = sample(Body::data(Bytes::from(vec![9u8; 1000])));
    check_rewrite(&full);
    let mut no_ma = full.clone();
    no_ma.message_annotations = None;
    check_rewrite(&no_ma);
    let mut no_da = no_ma.clone();
    no_da.delivery_annotations = None;
    check_rewrite(&no_da);
    let mut bare = no_da.clone();
    bare.header = None;
    check_rewrite(&bare);
    check_rewrite(&Message::default());
}

#[test]
fn rewrite_keeps_body_bytes_shared() {
    let m = Message::new(Body::data(Bytes::from(vec![5u8; 4096]))).with_to("q");
    let bytes = m.encode();
    let view = MessageView::parse(bytes.clone()).unwrap();
    let out = view.with_message_annotations(&Annotations::new());
    let body = view.body_bytes().unwrap();
    let after = &out.parts()[2];
    assert_eq!(
        after.as_ptr(),
        view.section_bytes(SectionKind::Properties)
            .unwrap()
            .as_ptr()
    );
    assert_eq!(
        after.as_ptr() as usize + after.len(),
        body.as_ptr() as usize + body.len()
    );
    // Annotations go first when there is no header or delivery-annotations.
    assert!(out.parts()[0].is_empty());
}

#[test]
fn rewrite_with_a_reused_scratch_buffer() {
    let m = sample(Body::data(Bytes::from_static(b"payload")));
    let view = MessageView::parse(m.encode()).unwrap();
    let mut scratch = bytes::BytesMut::with_capacity(1024);
    scratch.extend_from_slice(b"stale");
    let mut ma = Annotations::new();
    for i in 0..3u64 {
        ma.insert("x-opt-n", Value::Ulong(i));
        let out = view.with_message_annotations_in(&ma, &mut scratch);
        assert_eq!(out, view.with_message_annotations(&ma));
        assert!(scratch.is_empty());
    }
}

#[test]
fn message_bytes_is_a_buf() {
    let m = sample(Body::data(Bytes::from_static(b"payload")));
    let view = MessageView::parse(m.encode()).unwrap();
    let mut out = view.with_message_annotations(&Annotations::new());
    let whole = out.to_bytes();
    assert_eq!(out.remaining(), whole.len());
    let mut io = [std::io::IoSlice::new(&[]); 4];
    assert_eq!(out.chunks_vectored(&mut io), 3);
    let mut collected = Vec::new();
    while out.has_remaining() {
        let n = out.chunk().len().min(5);
        collected.extend_from_slice(&out.chunk()[..n]);
        out.advance(n);
    }
    assert_eq!(collected, whole);
}

#[test]
fn annotations_maps_insert_replace_remove() {
    let mut a = Annotations::new();
    assert_eq!(a.insert("k", Value::Uint(1)), None);
    assert_eq!(a.insert(7u64, Value::Uint(2)), None);
    assert_eq!(a.insert("k", Value::Uint(3)), Some(Value::Uint(1)));
    assert_eq!(a.len(), 2);
    assert_eq!(a.get("k"), Some(&Value::Uint(3)));
    assert_eq!(a.remove(&AnnotationKey::Ulong(7)), Some(Value::Uint(2)));
    assert_eq!(a.iter().count(), 1);
    let fields = crate::codec::Fields(vec![(Symbol::from_static("x"), Value::Null)]);
    assert_eq!(Annotations::from(fields).get("x"), Some(&Value::Null));
    let mut p = ApplicationProperties::new();
    p.insert(Str::from("a"), Value::Bool(true));
    assert_eq!(p.get("a"), Some(&Value::Bool(true)));
    assert!(!p.is_empty());
}

#[test]
fn header_defaults() {
    let h = Header::default();
    assert_eq!(h.priority_or_default(), 4);
    assert!(!h.durable_or_default());
    assert!(!h.first_acquirer_or_default());
    assert_eq!(h.delivery_count_or_default(), 0);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-z/.-]{0,12}"
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u32>().prop_map(Value::Uint),
            any::<i64>().prop_map(Value::Long),
            arb_text().prop_map(|s| Value::String(s.into())),
            arb_text().prop_map(|s| Value::Symbol(s.into())),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Value::Binary(b.into())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(Value::List)
        })
    }

    fn arb_annotations() -> impl Strategy<Value = Annotations> {
        let key = prop_oneof![
            arb_text().prop_map(|s| AnnotationKey::Symbol(s.into())),
            any::<u64>().prop_map(AnnotationKey::Ulong),
        ];
        prop::collection::vec((key, arb_value()), 0..4).prop_map(Annotations)
    }

    fn arb_id() -> impl Strategy<Value = MessageId> {
        prop_oneof![
            any::<u64>().prop_map(MessageId::Ulong),
            any::<[u8; 16]>().prop_map(|u| MessageId::Uuid(Uuid(u))),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| MessageId::Binary(b.into())),
            arb_text().prop_map(|s| MessageId::String(s.into())),
        ]
    }

    fn opt_str() -> impl Strategy<Value = Option<Str>> {
        prop::option::of(arb_text().prop_map(Str::from))
    }

    fn arb_properties() -> impl Strategy<Value = Properties> {
        let ts = || prop::option::of(any::<i64>().prop_map(Timestamp));
        (
            (prop::option::of(arb_id()), opt_str(), opt_str(), opt_str()),
            (prop::option::of(arb_id()), ts(), ts(), opt_str()),
            prop::option::of(any::<u32>()),
        )
            .prop_map(
                |((id, to, subject, reply_to), (cid, exp, created, group), seq)| Properties {
                    message_id: id,
                    to,
                    subject,
                    reply_to,
                    correlation_id: cid,
                    absolute_expiry_time: exp,
                    creation_time: created,
                    group_id: group,
                    group_sequence: seq.map(SequenceNo),
                    ..Properties::default()
                },
            )
    }

    fn arb_header() -> impl Strategy<Value = Header> {
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<u8>()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<u32>()),
        )
            .prop_map(
                |(durable, priority, ttl, first_acquirer, delivery_count)| Header {
                    durable,
                    priority,
                    ttl,
                    first_acquirer,
                    delivery_count,
                },
            )
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            Just(Body::Empty),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 1..3)
                .prop_map(|v| Body::Data(v.into_iter().map(Bytes::from).collect())),
            prop::collection::vec(prop::collection::vec(arb_value(), 0..3), 1..3)
                .prop_map(Body::AmqpSequence),
            arb_value().prop_map(Body::AmqpValue),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            prop::option::of(arb_header()),
            prop::option::of(arb_annotations()),
            prop::option::of(arb_annotations()),
            prop::option::of(arb_properties()),
            prop::option::of(
                prop::collection::vec((arb_text().prop_map(Str::from), arb_value()), 0..3)
                    .prop_map(ApplicationProperties),
            ),
            arb_body(),
            prop::option::of(arb_annotations()),
        )
            .prop_map(|(header, da, ma, properties, ap, body, footer)| Message {
                header,
                delivery_annotations: da,
                message_annotations: ma,
                properties,
                application_properties: ap,
                body,
                footer,
            })
    }

    /// Calls every accessor; only a panic can fail this.
    fn poke(bytes: Bytes) {
        let _ = Message::decode(bytes.clone());
        if let Ok(v) = MessageView::parse(bytes) {
            let _ = (
                v.to(),
                v.to_str(),
                v.reply_to(),
                v.subject(),
                v.message_id(),
            );
            let _ = (
                v.correlation_id(),
                v.absolute_expiry_time(),
                v.creation_time(),
            );
            let _ = (v.group_id(), v.header(), v.delivery_annotations());
            let _ = (
                v.message_annotations(),
                v.properties(),
                v.application_properties(),
            );
            let _ = (v.body(), v.footer(), v.to_message(), v.bare_message_bytes());
            let _ = v.with_message_annotations(&Annotations::new()).to_bytes();
            // Where the full decoders succeed, the lazy readers agree.
            if let Some(h) = v.section_bytes(SectionKind::Header) {
                assert_eq!(v.header().ok().flatten(), Header::from_bytes(h).ok());
            }
            if let Some(Ok(p)) = v
                .section_bytes(SectionKind::Properties)
                .map(Properties::from_bytes)
            {
                assert_eq!(v.to_str(), Ok(p.to.as_deref()));
                assert_eq!(v.to(), Ok(p.to));
                assert_eq!(v.reply_to(), Ok(p.reply_to));
                assert_eq!(v.creation_time(), Ok(p.creation_time));
                assert_eq!(v.message_id(), Ok(p.message_id));
            }
        }
    }

    proptest! {
        #[test]
        fn messages_round_trip_and_the_view_agrees(m in arb_message()) {
            let bytes = m.encode();
            prop_assert_eq!(Message::decode(bytes.clone()).unwrap(), m.clone());
            assert_view_agrees(bytes);
            check_rewrite(&m);
        }

        #[test]
        fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
            poke(Bytes::from(b));
        }

        #[test]
        fn damaged_messages_never_panic(
            m in arb_message(),
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let bytes = m.encode();
            if !bytes.is_empty() {
                let mut damaged = bytes.to_vec();
                for (at, v) in &flips {
                    let i = at.index(damaged.len());
                    damaged[i] = *v;
                }
                poke(Bytes::from(damaged));
                poke(bytes.slice(..cut.index(bytes.len())));
            }
        }
    }
}
