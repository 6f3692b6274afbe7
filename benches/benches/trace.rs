//! The router's per-hop handling of its trace annotation
//! (`ferry_router::core::trace`), on a 100 B message in a line of three
//! routers A → B → C, as the producer side of each router does it for
//! one delivery:
//!
//! - `ingress` (A, from a client): the message with A's hop added;
//! - `interior` (B): the loop check (has B been visited?), then the message
//!   with B's hop added;
//! - `egress` (C, to a client): the loop check, then the message without
//!   the trace;
//! - `interior_app_annotations`: B again, on a message whose client set
//!   two message annotations of its own.
//!
//! Before the criterion runs, a counting global allocator reports heap
//! allocations per operation for the same operations.
//!
//! Run: `cargo bench -p ferry-benches --bench trace -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use ferry_benches::{Counting, allocations_per_op};
use ferry_proto::codec::{Timestamp, Value};
use ferry_proto::message::{Body, Header, Message, Properties};
use ferry_router::core::trace::Trace;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A typical client message (as in the codec bench): durable header,
/// properties, one application property and a 100 B data body, with the
/// given message annotations.
fn message(annotations: &[(&str, Value)]) -> Bytes {
    let mut m = Message::new(Body::data(vec![0xab; 100]))
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
        .with_application_property("tenant", Value::String("acme".into()));
    for (k, v) in annotations {
        m = m.with_message_annotation(*k, v.clone());
    }
    m.encode()
}

/// At A, from a client: A's hop added.
fn ingress(m: &Bytes) -> Bytes {
    Trace::read(m).with_hop("A").unwrap()
}

/// At B: the loop check, then B's hop added.
fn interior(m: &Bytes) -> Bytes {
    let t = Trace::read(m);
    assert!(!t.has_visited("B"));
    t.with_hop("B").unwrap()
}

/// At C, to a client: the loop check, then the trace removed.
fn egress(m: &Bytes) -> Bytes {
    let t = Trace::read(m);
    assert!(!t.has_visited("C"));
    t.strip()
}

/// What one router does with one delivery's first bytes.
type Hop = fn(&Bytes) -> Bytes;

/// The operations and their inputs: what each router of the line gets.
fn cases() -> Vec<(&'static str, Hop, Bytes)> {
    let client = message(&[]);
    let app = message(&[
        ("x-opt-app-region", Value::String("eu-west".into())),
        ("x-opt-app-priority", Value::Uint(3)),
    ]);
    let at_b = ingress(&client);
    let at_c = interior(&at_b);
    assert_eq!(egress(&at_c), client, "restored byte for byte");
    vec![
        ("ingress", ingress as Hop, client),
        ("interior", interior, at_b),
        ("egress", egress, at_c),
        ("interior_app_annotations", interior, ingress(&app)),
    ]
}

fn bench_trace(c: &mut Criterion) {
    let mut g = c.benchmark_group("trace");
    for (name, op, input) in cases() {
        g.bench_function(name, |b| b.iter(|| op(black_box(&input))));
    }
    g.finish();
}

fn report_allocations() {
    println!("heap allocations per operation (counting global allocator):");
    for (name, op, input) in cases() {
        let per_op = allocations_per_op(10_000, || {
            black_box(op(black_box(&input)));
        });
        println!("  {name:<30} {per_op:.3}");
    }
}

criterion_group!(benches, bench_trace);

fn main() {
    report_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
