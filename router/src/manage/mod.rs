//! AMQP management (OASIS AMQP Management 1.0, as Qpid Dispatch Router
//! implements it): a `$management` node on every router, reachable by
//! the router's own clients, and `_topo/0/<router-id>/$management`,
//! reachable from anywhere in the mesh.
//!
//! - [`request`]: requests and responses as messages;
//! - [`entities`]: entity types, attributes, and rows from a snapshot;
//! - [`answer`]: the read-only operations;
//! - [`change`]: CREATE, UPDATE and DELETE;
//! - [`agent`]: the task that serves both nodes;
//! - [`client`] and [`stat`]: `ferry manage` and `ferry stat`.

pub mod agent;
pub mod answer;
pub mod change;
pub mod client;
pub mod entities;
pub mod request;
pub mod stat;

pub use agent::{Agent, LOCAL_NODE, is_management, reports, topo_node};
