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

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use ferry_proto::codec::{Timestamp, Value};
use ferry_proto::message::{Body, Header, Message, Properties};
use ferry_router::core::trace::Trace;

/// Counts every allocation, then defers to the system allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

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

/// Heap allocations per call of `op`, averaged over `n` calls.
fn allocations_per_op(n: u64, mut op: impl FnMut()) -> f64 {
    op(); // warm up (lazy statics, buffer growth)
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        op();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
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
