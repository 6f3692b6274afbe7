//! The routing task: runs the [`Routing`] state machine with the real
//! clock, feeds it what connection tasks report, sends its control
//! messages through the neighbours' connection tasks, and publishes each
//! new routing table. [`apply`] and [`publish`] are the task's two halves
//! without I/O, for the simulator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::{Core, ToConn};
use crate::routing::{Auth, Routing, RoutingConfig};
use crate::shutdown::Shutdown;

use super::RoutingInput;

/// Runs until shutdown. Call once per router. With `auth`, the router
/// signs its records and believes only signed ones.
pub async fn run(core: Arc<Core>, config: RoutingConfig, auth: Option<Auth>, shutdown: Shutdown) {
    let mesh = core.mesh();
    let Some(mut input) = mesh.take_input() else {
        return;
    };
    let mut routing = Routing::new(mesh.id().clone(), mesh.instance(), config, Instant::now());
    if let Some(auth) = auth {
        routing = routing.with_auth(auth);
    }
    // Neighbour changes handled since the last table was published.
    let mut topology = 0;
    loop {
        publish(&mut routing, &core);
        mesh.topology_applied(std::mem::take(&mut topology));
        let wake = routing
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            msg = input.recv() => {
                let Some(msg) = msg else { return };
                if matches!(msg, RoutingInput::Up { .. } | RoutingInput::Down { .. }) {
                    core.metrics().routing.topology_changed(Instant::now());
                    topology += 1;
                }
                apply(&mut routing, msg, Instant::now());
            }
            _ = tokio::time::sleep_until(wake.into()) => routing.handle_timeout(Instant::now()),
            _ = shutdown.triggered() => return,
        }
    }
}

/// Feeds one report from a connection task to the routing machine.
pub fn apply(routing: &mut Routing, input: RoutingInput, now: Instant) {
    match input {
        // The connection tasks log neighbours coming and going (one line
        // each, with the address): not again here.
        RoutingInput::Up { neighbor, cost } => routing.neighbor_connected(neighbor, cost, now),
        RoutingInput::Down { neighbor } => routing.neighbor_disconnected(&neighbor, now),
        RoutingInput::Message { from, msg, .. } => routing.handle_message(&from, msg, now),
        RoutingInput::LocalAddress {
            address,
            present: true,
        } => routing.add_local_address(&address),
        RoutingInput::LocalAddress {
            address,
            present: false,
        } => routing.remove_local_address(&address),
    }
}

/// Sends the routing machine's control messages to the neighbours'
/// connection tasks, and swaps in its table if it changed.
pub fn publish(routing: &mut Routing, core: &Core) {
    let mesh = core.mesh();
    while let Some((to, msg)) = routing.poll_transmit() {
        mesh.post(&to, ToConn::Control(msg));
    }
    if let Some(table) = routing.poll_table() {
        tracing::debug!("routing table changed: {}", describe(&table));
        let metrics = &core.metrics().routing;
        metrics.table_published(&mesh.table(), &table, Instant::now());
        mesh.set_table(table);
        mesh.post_all(|| ToConn::PathsChanged);
        core.paths_changed();
    }
}

/// A routing table in a line: `B via B (cost 1), C via B (cost 2);
/// addresses: orders at C`.
fn describe(table: &crate::routing::RoutingTable) -> String {
    let me = table.me();
    let routes: Vec<String> = table
        .routers()
        .filter(|r| *r != me)
        .map(|r| match (table.next_hop(r), table.cost(r)) {
            (Some(hop), Some(cost)) => format!("{r} via {hop} (cost {cost})"),
            _ => format!("{r} unreachable"),
        })
        .collect();
    let addresses: Vec<String> = table
        .addresses()
        .map(|(a, routers)| {
            let at: Vec<String> = routers.map(ToString::to_string).collect();
            format!("{a} at {}", at.join(", "))
        })
        .collect();
    format!(
        "{}; addresses: {}",
        if routes.is_empty() {
            "no other router".to_owned()
        } else {
            routes.join(", ")
        },
        if addresses.is_empty() {
            "none".to_owned()
        } else {
            addresses.join("; ")
        }
    )
}
