//! Ferry's deterministic simulator: in-process meshes of real routers —
//! the same forwarding core, routing protocol and AMQP engine as the
//! `ferry` binary — over simulated links, with virtual time, a seeded
//! random source for every choice, fault injection, and invariant checks
//! after every step and once the mesh has settled.
//!
//! The model is `quinn-proto`'s test `Pair`, grown to N routers: each
//! router is a [`ferry_router::core::Core`], a
//! [`ferry_router::routing::Routing`] machine and one
//! [`ferry_router::driver::Endpoint`] per connection; the simulator plays
//! the parts of the async driver and of the routing task, moving bytes
//! between endpoints through [`wire::Pipe`]s and jumping virtual time to
//! the next event.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferry_sim::{Mesh, client::{ConsumerSpec, OutcomeWeights, ProducerSpec}};
//!
//! let mut mesh = Mesh::builder()
//!     .routers(["A", "B", "C"])
//!     .link("A", "B", 1)
//!     .link("B", "C", 1)
//!     .build(7);
//! mesh.add_consumer("C", ConsumerSpec {
//!     address: "q".into(), credit: 10, delay: Duration::ZERO,
//!     outcomes: OutcomeWeights::ACCEPT_ALL, close_after: None,
//! });
//! mesh.add_producer("A", ProducerSpec {
//!     address: "q".into(), messages: 20, presettled: false,
//!     interval: Duration::from_millis(5), body_size: 16, anonymous: false,
//! });
//! mesh.run_for(Duration::from_secs(10));
//! mesh.check_settled().unwrap();
//! println!("{}", mesh.summary());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod clock;
pub mod fault;
pub mod frames;
pub mod hostile;
pub mod ledger;
pub mod log;
pub mod mesh;
pub mod monitor;
pub mod paths;
pub mod pki;
pub mod report;
pub mod rng;
pub mod router;
pub mod scenario;
pub mod tap;
pub mod topology;
pub mod violation;
pub mod wire;

pub use fault::{Action, Fault};
pub use hostile::{Hostile, HostileReport};
pub use mesh::{Mesh, MeshBuilder};
pub use scenario::{Failure, Scenario};
pub use topology::{Shape, Topology};
pub use violation::{Invariant, Violation};
