//! The live console: a static page compiled into the binary
//! (`console.html`: HTML, CSS and JavaScript, nothing fetched from
//! elsewhere) and the JSON it polls. Read-only, and served to clients on
//! the router's own host only (a loopback peer: reach it through `ssh -L`
//! or `kubectl port-forward`), since `[http]` has neither TLS nor logins
//! and the console shows what management shows.

use serde_json::{Value, json};

use crate::core::Core;

/// The page.
pub const PAGE: &str = include_str!("console.html");

/// `/api/mesh`: this router, the routers it reaches with their cost and
/// next hop, and the links between them (each once).
pub fn mesh(core: &Core) -> Value {
    let table = core.mesh().table();
    let me = table.me();
    let routers: Vec<Value> = table
        .routers()
        .map(|r| {
            json!({
                "id": r.as_str(),
                "cost": table.cost(r),
                "nextHop": table.next_hop(r).map(|h| h.as_str()),
            })
        })
        .collect();
    let mut edges = Vec::new();
    for r in table.routers() {
        for (n, cost) in table.neighbours_of(r) {
            if r < n {
                edges.push(json!({"a": r.as_str(), "b": n.as_str(), "cost": cost}));
            }
        }
    }
    json!({"router": me.as_str(), "routers": routers, "edges": edges})
}

/// `/api/addresses`: every address this router knows, with its counts.
pub fn addresses(core: &Core) -> Value {
    let rows: Vec<Value> = core
        .address_reports()
        .into_iter()
        .map(|a| {
            json!({
                "address": a.name,
                "distribution": a.distribution,
                "local": a.local_consumers,
                "producers": a.local_producers,
                "remote": a.remote_routers,
                "in": a.ingress,
                "out": a.egress,
                "transit": a.transit,
            })
        })
        .collect();
    Value::Array(rows)
}

/// `/api/links`: every link of every connection, with its counts.
pub async fn links(core: &Core) -> Value {
    let mut rows = Vec::new();
    for c in crate::manage::reports(core).await {
        for l in &c.links {
            rows.push(json!({
                "id": format!("{}.{}", c.id.0, l.id),
                "connection": c.id.0,
                "peer": if c.container.is_empty() { c.host.clone() } else { c.container.clone() },
                "role": c.role.as_str(),
                "type": l.kind.as_str(),
                "dir": l.dir.as_str(),
                "address": l.address,
                "credit": l.credit,
                "delivered": l.delivered,
                "unsettled": l.unsettled,
                "stuck": l.stuck,
            }));
        }
    }
    Value::Array(rows)
}
