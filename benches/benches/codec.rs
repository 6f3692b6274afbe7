//! Codec micro-benchmarks: transfer frame decoding, the lazy message view
//! (reading the routing field `properties.to`), the message-annotations
//! rewrite, and performative encoding.
//!
//! Before the criterion runs, a counting global allocator reports heap
//! allocations per operation for the same operations.
//!
//! Run: `cargo bench -p ferry-benches --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use ferry_benches::{Counting, allocations_per_op};
use ferry_proto::codec::{Encode, Timestamp, Value};
use ferry_proto::definitions::{
    DeliveryState, Disposition, Flow, Handle, Performative, Role, SequenceNo, Transfer,
};
use ferry_proto::frame::{Layer, decode_frame, encode_amqp_frame};
use ferry_proto::message::{Annotations, Body, Header, Message, MessageView, Properties};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A typical client message: durable header, properties with a 36-char
/// message id, `to`, `reply-to` and creation time, one application
/// property, and a data body of `body_len` bytes.
fn message(body_len: usize) -> Bytes {
    Message::new(Body::data(vec![0xab; body_len]))
        .with_header(Header {
            durable: Some(true),
            ..Header::default()
        })
        .with_properties(Properties {
            message_id: Some("5f0c8a52-6a51-4b7e-9d7e-2b6f1a0e9c31".into()),
            to: Some("orders/eu/incoming".into()),
            reply_to: Some("replies/client-17".into()),
            creation_time: Some(Timestamp(1_700_000_000_000)),
            ..Properties::default()
        })
        .with_application_property("tenant", Value::String("acme".into()))
        .encode()
}

/// One encoded transfer frame carrying `payload`.
fn transfer_frame(payload: &[u8]) -> BytesMut {
    let transfer = Performative::Transfer(Transfer {
        handle: Handle(0),
        delivery_id: Some(SequenceNo(1)),
        delivery_tag: Some(Bytes::from_static(&[0, 0, 0, 1])),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    });
    let mut buf = BytesMut::new();
    encode_amqp_frame(1, &transfer, payload, &mut buf);
    buf
}

/// `count` copies of `frame` in one read buffer, already in the shared
/// representation a connection's read buffer has after its first frame
/// (so decoding measures the steady state, not the one-off promotion).
fn read_buffer(frame: &[u8], count: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(frame.len() * count);
    for _ in 0..count {
        buf.extend_from_slice(frame);
    }
    drop(buf.split_off(buf.len()));
    buf
}

fn flow() -> Flow {
    Flow {
        next_incoming_id: Some(SequenceNo(100)),
        incoming_window: 2048,
        next_outgoing_id: SequenceNo(200),
        outgoing_window: 2048,
        handle: Some(Handle(3)),
        delivery_count: Some(SequenceNo(150)),
        link_credit: Some(250),
        ..Flow::default()
    }
}

fn disposition() -> Disposition {
    Disposition {
        role: Role::Receiver,
        first: SequenceNo(1000),
        last: Some(SequenceNo(1031)),
        settled: Some(true),
        state: Some(DeliveryState::Accepted),
        batchable: None,
    }
}

fn router_annotations() -> Annotations {
    let mut a = Annotations::new();
    a.insert("x-opt-ferry-ingress", Value::String("router-A".into()));
    a.insert(
        "x-opt-ferry-trace",
        Value::List(vec![Value::String("router-A".into())]),
    );
    a
}

fn bench_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("transfer_frame_decode");
    g.throughput(Throughput::Elements(1));
    for (name, body_len) in [("100B", 100), ("64KiB", 64 * 1024)] {
        let frame = transfer_frame(&message(body_len));
        // Batches of 64 frames keep the 64 KiB case's inputs at 4 MiB.
        g.bench_function(name, |b| {
            b.iter_batched(
                || read_buffer(&frame, 1),
                |mut buf| decode_frame(&mut buf, u32::MAX, Layer::Amqp),
                BatchSize::NumIterations(64),
            )
        });
    }
    g.finish();
}

fn bench_view(c: &mut Criterion) {
    let bytes = message(100);
    // Make the buffer shared, as a frame payload slice is.
    drop(bytes.slice(..));
    let view = MessageView::parse(bytes.clone()).unwrap();
    let annotations = router_annotations();
    let mut g = c.benchmark_group("message_view");
    g.throughput(Throughput::Elements(1));
    // The payload is moved into the view, as the router does with a
    // frame's payload; the clone happens in setup, the drops after timing.
    // Batches of 1024 keep the outputs in cache (SmallInput would hold
    // millions of views, and time their cache misses).
    g.bench_function("parse+to", |b| {
        b.iter_batched(
            || bytes.clone(),
            |payload| {
                let v = MessageView::parse(payload).unwrap();
                let to = v.to().unwrap();
                (v, to)
            },
            BatchSize::NumIterations(1024),
        )
    });
    g.bench_function("parse+to_str", |b| {
        b.iter_batched(
            || bytes.clone(),
            |payload| {
                let v = MessageView::parse(payload).unwrap();
                black_box(v.to_str().unwrap());
                v
            },
            BatchSize::NumIterations(1024),
        )
    });
    // What the router reads to route: the address and the header (ttl,
    // priority, delivery-count).
    g.bench_function("routing fields: parse+to_str+header", |b| {
        b.iter_batched(
            || bytes.clone(),
            |payload| {
                let v = MessageView::parse(payload).unwrap();
                black_box(v.to_str().unwrap());
                black_box(v.header().unwrap());
                v
            },
            BatchSize::NumIterations(1024),
        )
    });
    // The same with the payload's refcount increment and the drops of the
    // view and the address timed too.
    g.bench_function("parse+to incl. clone+drop", |b| {
        b.iter(|| {
            let v = MessageView::parse(black_box(bytes.clone())).unwrap();
            black_box(v.to().unwrap());
        })
    });
    g.bench_function("parse", |b| {
        b.iter_batched(
            || bytes.clone(),
            |payload| MessageView::parse(payload).unwrap(),
            BatchSize::NumIterations(1024),
        )
    });
    g.bench_function("to (parsed view)", |b| {
        b.iter(|| black_box(&view).to().unwrap())
    });
    g.bench_function("header (parsed view)", |b| {
        b.iter(|| black_box(&view).header().unwrap())
    });
    g.bench_function("rewrite message-annotations", |b| {
        b.iter(|| black_box(&view).with_message_annotations(&annotations))
    });
    let mut scratch = BytesMut::with_capacity(64 * 1024);
    g.bench_function("rewrite message-annotations (reused scratch)", |b| {
        b.iter(|| black_box(&view).with_message_annotations_in(&annotations, &mut scratch))
    });
    g.bench_function("full decode (Message::decode)", |b| {
        b.iter(|| Message::decode(black_box(bytes.clone())).unwrap())
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("performative_encode");
    g.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(256);
    let f = flow();
    g.bench_function("flow", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&f).encode(&mut buf);
        })
    });
    let d = disposition();
    g.bench_function("disposition", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&d).encode(&mut buf);
        })
    });
    g.finish();
}

fn report_allocations() {
    const N: u64 = 10_000;
    let bytes = message(100);
    drop(bytes.slice(..));
    let view = MessageView::parse(bytes.clone()).unwrap();
    let annotations = router_annotations();
    let mut scratch = BytesMut::with_capacity(64 * 1024);
    let mut rows = vec![
        (
            "message_view parse+to",
            allocations_per_op(N, || {
                let v = MessageView::parse(black_box(bytes.clone())).unwrap();
                black_box(v.to().unwrap());
            }),
        ),
        (
            "message_view parse+to_str",
            allocations_per_op(N, || {
                let v = MessageView::parse(black_box(bytes.clone())).unwrap();
                black_box(v.to_str().unwrap());
            }),
        ),
        (
            "message_view routing fields: parse+to_str+header",
            allocations_per_op(N, || {
                let v = MessageView::parse(black_box(bytes.clone())).unwrap();
                black_box(v.to_str().unwrap());
                black_box(v.header().unwrap());
            }),
        ),
        (
            "message_view to (parsed view)",
            allocations_per_op(N, || {
                black_box(black_box(&view).to().unwrap());
            }),
        ),
        (
            "message_view header (parsed view)",
            allocations_per_op(N, || {
                black_box(black_box(&view).header().unwrap());
            }),
        ),
        (
            "message_view rewrite message-annotations",
            allocations_per_op(N, || {
                black_box(view.with_message_annotations(&annotations));
            }),
        ),
        (
            "message_view rewrite message-annotations (reused scratch)",
            allocations_per_op(N, || {
                black_box(view.with_message_annotations_in(&annotations, &mut scratch));
            }),
        ),
        (
            "full decode (Message::decode)",
            allocations_per_op(N, || {
                black_box(Message::decode(bytes.clone()).unwrap());
            }),
        ),
    ];
    for (name, body_len) in [
        ("transfer_frame_decode 100B", 100),
        ("transfer_frame_decode 64KiB", 64 * 1024),
    ] {
        let frame = transfer_frame(&message(body_len));
        let count = 64;
        let mut buf = read_buffer(&frame, count as usize + 1);
        rows.push((
            name,
            allocations_per_op(count, || {
                black_box(decode_frame(&mut buf, u32::MAX, Layer::Amqp).unwrap());
            }),
        ));
    }
    let mut out = BytesMut::with_capacity(256);
    let (f, d) = (flow(), disposition());
    rows.push((
        "performative_encode flow",
        allocations_per_op(N, || {
            out.clear();
            f.encode(&mut out);
        }),
    ));
    rows.push((
        "performative_encode disposition",
        allocations_per_op(N, || {
            out.clear();
            d.encode(&mut out);
        }),
    ));
    println!(
        "message sizes: 100 B body {} B encoded, transfer frame {} B; 64 KiB body frame {} B",
        bytes.len(),
        transfer_frame(&bytes).len(),
        transfer_frame(&message(64 * 1024)).len(),
    );
    println!("heap allocations per operation (counting global allocator):");
    for (name, per_op) in rows {
        println!("  {name:<60} {per_op:.3}");
    }
}

criterion_group!(benches, bench_frames, bench_view, bench_encode);

fn main() {
    report_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
