//! The mesh: inter-router connections and the routing protocol's place in
//! the running router. The protocol itself is the sans-IO
//! [`Routing`](crate::routing::Routing) state machine; here it gets a task,
//! a clock and sockets:
//!
//! - [`Mesh`] (held by the core) publishes the current routing table and
//!   knows which connection task serves each neighbour;
//! - [`control`] runs the `Routing` machine in one task, fed by the
//!   connection tasks;
//! - [`connector`] dials `[[connector]]`s, redialing with capped
//!   exponential backoff and jitter;
//! - [`identity`] is how routers recognise each other in `open`;
//! - [`edge`] knows who is connected across edge connections.

pub mod connector;
pub mod control;
pub mod edge;
pub mod identity;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::core::{ConnHandle, ConnId, ToConn};
use crate::routing::{ControlMessage, RouterId, RoutingTable};

/// How long an inter-router connection may go without a byte from the
/// neighbour before the neighbour is taken as lost and the connection
/// dropped (its process stopped or hung, or the path to it cut without a
/// FIN or RST). It is the AMQP idle timeout of inter-router connections
/// (AMQP 1.0 §2.4.5): each router advertises half of it in its `open`, and
/// its engine sends an empty frame whenever it has sent nothing for half
/// the peer's advertised value, so an idle link carries a frame at least
/// every quarter of it (200 ms). Any frame counts, data included: a link
/// busy with data is heard from all the time, whatever waits behind the
/// data. A quarter gives a neighbour three missed beats (600 ms of its
/// process not running) before it is taken as lost; detection comes 600
/// to 800 ms after it falls silent. `docs/ROUTING.md` ("Silent
/// neighbours") has the reasoning and the cost.
pub const NEIGHBOUR_SILENCE: Duration = Duration::from_millis(800);

/// What connection tasks tell the routing task.
#[derive(Debug)]
pub enum RoutingInput {
    /// An inter-router connection to `neighbor` is up.
    Up {
        /// The neighbour.
        neighbor: RouterId,
        /// The link cost.
        cost: u32,
    },
    /// It went down.
    Down {
        /// The neighbour.
        neighbor: RouterId,
    },
    /// A control message arrived from a neighbour.
    Message {
        /// The neighbour.
        from: RouterId,
        /// The message.
        msg: ControlMessage,
        /// Its encoded size in bytes, as it arrived (for accounting).
        size: usize,
    },
    /// The address gained (`true`) or lost its last local consumer.
    LocalAddress {
        /// The address.
        address: String,
        /// Whether it now has local consumers.
        present: bool,
    },
}

/// A neighbour is connected already (a second connection is refused).
#[derive(Debug, thiserror::Error)]
#[error("router {0} is already connected")]
pub struct AlreadyConnected(pub RouterId);

/// The router's view of the mesh, shared by every task.
#[derive(Debug)]
pub struct Mesh {
    id: RouterId,
    instance: u64,
    table: RwLock<Arc<RoutingTable>>,
    neighbors: Mutex<HashMap<RouterId, ConnHandle>>,
    input: mpsc::UnboundedSender<RoutingInput>,
    input_rx: Mutex<Option<mpsc::UnboundedReceiver<RoutingInput>>>,
    /// Problems with other routers already logged (see
    /// [`first_time`](Self::first_time)).
    reported: Mutex<HashSet<String>>,
    /// Neighbours come and gone, as reported to the routing task, and as
    /// handled by it (a table computed after each): equal when the table
    /// is up to date with every neighbour change.
    topology_reported: AtomicU64,
    topology_applied: AtomicU64,
    /// Edge connections: an edge router's uplink, an interior's edges.
    edges: edge::Edges,
}

/// Problems [`Mesh::first_time`] remembers at most; past it, it forgets
/// them all and starts again (a peer cannot grow the set without bound).
const MAX_REPORTED: usize = 1024;

impl Mesh {
    /// The mesh of router `id`, started as instance `instance`.
    pub fn new(id: RouterId, instance: u64) -> Self {
        let (input, rx) = mpsc::unbounded_channel();
        Self {
            table: RwLock::new(Arc::new(RoutingTable::standalone(id.clone()))),
            id,
            instance,
            neighbors: Mutex::default(),
            input,
            input_rx: Mutex::new(Some(rx)),
            reported: Mutex::default(),
            topology_reported: AtomicU64::new(0),
            topology_applied: AtomicU64::new(0),
            edges: edge::Edges::default(),
        }
    }

    /// The routing task handled `n` more neighbour changes and published
    /// the table computed after them.
    pub fn topology_applied(&self, n: u64) {
        self.topology_applied.fetch_add(n, Ordering::Release);
    }

    /// Whether the routing table was computed after every neighbour change
    /// reported so far.
    pub fn topology_settled(&self) -> bool {
        self.topology_applied.load(Ordering::Acquire)
            == self.topology_reported.load(Ordering::Acquire)
    }

    /// Whether the problem `key` names is new: true the first time, false
    /// after. A router retries a connection every few seconds; what goes
    /// wrong the same way each time is worth one line, not one a retry.
    pub fn first_time(&self, key: &str) -> bool {
        let mut reported = self.reported.lock().expect("reported lock");
        if reported.contains(key) {
            return false;
        }
        if reported.len() >= MAX_REPORTED {
            reported.clear();
        }
        reported.insert(key.to_owned())
    }

    /// How many neighbours are connected.
    pub fn neighbour_count(&self) -> usize {
        self.neighbors.lock().expect("neighbors lock").len()
    }

    /// Edge connections (see [`edge`]).
    pub fn edges(&self) -> &edge::Edges {
        &self.edges
    }

    /// This router's id.
    pub fn id(&self) -> &RouterId {
        &self.id
    }

    /// This router's instance number (new at every start).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The current routing table (cheap: an `Arc` clone).
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.read().expect("table lock").clone()
    }

    /// Swaps in a new routing table.
    pub fn set_table(&self, table: Arc<RoutingTable>) {
        *self.table.write().expect("table lock") = table;
    }

    /// Registers the connection task serving `neighbor`.
    pub fn connect(
        &self,
        neighbor: RouterId,
        cost: u32,
        conn: ConnHandle,
    ) -> Result<(), AlreadyConnected> {
        let mut n = self.neighbors.lock().expect("neighbors lock");
        if n.contains_key(&neighbor) {
            return Err(AlreadyConnected(neighbor));
        }
        n.insert(neighbor.clone(), conn);
        self.topology_reported.fetch_add(1, Ordering::Release);
        let _ = self.input.send(RoutingInput::Up { neighbor, cost });
        Ok(())
    }

    /// The connection task `conn` no longer serves `neighbor`; returns
    /// whether it did until now.
    pub fn disconnect(&self, neighbor: &RouterId, conn: ConnId) -> bool {
        let mut n = self.neighbors.lock().expect("neighbors lock");
        if n.get(neighbor).is_some_and(|h| h.id == conn) {
            n.remove(neighbor);
            self.topology_reported.fetch_add(1, Ordering::Release);
            let _ = self.input.send(RoutingInput::Down {
                neighbor: neighbor.clone(),
            });
            return true;
        }
        false
    }

    /// The neighbours and the id of the connection serving each, by id.
    pub fn neighbour_conns(&self) -> Vec<(RouterId, u64)> {
        let n = self.neighbors.lock().expect("neighbors lock");
        let mut all: Vec<(RouterId, u64)> = n.iter().map(|(r, h)| (r.clone(), h.id.0)).collect();
        all.sort();
        all
    }

    /// A control message of `size` bytes arrived from `from`.
    pub fn control_received(&self, from: RouterId, msg: ControlMessage, size: usize) {
        let _ = self.input.send(RoutingInput::Message { from, msg, size });
    }

    /// An address gained its first or lost its last local consumer.
    pub fn local_address(&self, address: &str, present: bool) {
        let _ = self.input.send(RoutingInput::LocalAddress {
            address: address.to_string(),
            present,
        });
    }

    /// Posts to the connection task serving `neighbor`, if connected.
    pub fn post(&self, neighbor: &RouterId, msg: ToConn) {
        if let Some(h) = self.neighbors.lock().expect("neighbors lock").get(neighbor) {
            h.post(msg);
        }
    }

    /// Posts to every neighbour's connection task.
    pub fn post_all(&self, msg: impl Fn() -> ToConn) {
        let n = self.neighbors.lock().expect("neighbors lock");
        let mut ids: Vec<&RouterId> = n.keys().collect();
        ids.sort();
        for id in ids {
            n[id].post(msg());
        }
    }

    /// The routing task's inbox: taken once, by [`control::run`] or by a
    /// simulator driving [`control::apply`] itself.
    pub fn take_input(&self) -> Option<mpsc::UnboundedReceiver<RoutingInput>> {
        self.input_rx.lock().expect("input lock").take()
    }
}
