//! `ferry stat`: what management says, as tables for people (`-n`, `-a`,
//! `-l`, `-c`, `-m`) or JSON for scripts.

use ferry_proto::codec::Value;

use super::client::Table;

/// What `ferry stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `-n`: the routers of the mesh.
    Nodes,
    /// `-a`: the addresses.
    Addresses,
    /// `-l`: the links.
    Links,
    /// `-c`: the connections.
    Connections,
    /// `-m`: memory and counters.
    Memory,
}

impl View {
    /// The entity type it reads.
    pub fn entity_type(self) -> &'static str {
        match self {
            View::Nodes => "org.apache.qpid.dispatch.router.node",
            View::Addresses => "org.apache.qpid.dispatch.router.address",
            View::Links => "org.apache.qpid.dispatch.router.link",
            View::Connections => "org.apache.qpid.dispatch.connection",
            View::Memory => "org.apache.qpid.dispatch.router",
        }
    }

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            View::Nodes => "Routers in the mesh",
            View::Addresses => "Addresses",
            View::Links => "Links",
            View::Connections => "Connections",
            View::Memory => "Memory and counters",
        }
    }

    /// Column headers and the attributes they show.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            View::Nodes => &[
                ("router-id", "id"),
                ("next-hop", "nextHop"),
                ("link", "routerLink"),
                ("cost", "cost"),
                ("neighbours", "linkState"),
            ],
            View::Addresses => &[
                ("address", "address"),
                ("distrib", "distribution"),
                ("local", "subscriberCount"),
                ("remote", "remoteCount"),
                ("producers", "producerCount"),
                ("in", "deliveriesIngress"),
                ("out", "deliveriesEgress"),
                ("thru", "deliveriesTransit"),
            ],
            View::Links => &[
                ("type", "linkType"),
                ("dir", "linkDir"),
                ("conn", "connectionId"),
                ("id", "identity"),
                ("address", "address"),
                ("credit", "capacity"),
                ("undel", "undeliveredCount"),
                ("unsett", "unsettledCount"),
                ("deliv", "deliveryCount"),
                ("presett", "presettledCount"),
                ("acc", "acceptedCount"),
                ("rej", "rejectedCount"),
                ("rel", "releasedCount"),
                ("mod", "modifiedCount"),
                ("stuck", "deliveriesStuck"),
            ],
            View::Connections => &[
                ("id", "identity"),
                ("host", "host"),
                ("container", "container"),
                ("role", "role"),
                ("dir", "dir"),
                ("tls", "isEncrypted"),
                ("sasl", "sasl"),
                ("user", "user"),
                ("vhost", "tenant"),
                ("uptime-s", "uptimeSeconds"),
            ],
            View::Memory => &[
                ("version", "version"),
                ("mode", "mode"),
                ("uptime-s", "uptimeSeconds"),
                ("rss-bytes", "memoryUsage"),
                ("worker-threads", "workerThreads"),
                ("connections", "connectionCount"),
                ("links", "linkCount"),
                ("addresses", "addrCount"),
                ("routers", "nodeCount"),
                ("deliveries-in", "deliveriesIngress"),
                ("deliveries-out", "deliveriesEgress"),
                ("deliveries-transit", "deliveriesTransit"),
                ("presettled", "presettledDeliveries"),
                ("accepted", "acceptedDeliveries"),
                ("rejected", "rejectedDeliveries"),
                ("released", "releasedDeliveries"),
                ("modified", "modifiedDeliveries"),
                ("dropped-presettled", "droppedPresettledDeliveries"),
                ("released-no-route", "releasedNoRoute"),
                ("expired", "expiredDeliveries"),
                ("stuck", "deliveriesStuck"),
            ],
        }
    }

    /// The attributes to ask for.
    pub fn attributes(self) -> Vec<&'static str> {
        let mut names: Vec<&str> = self.columns().iter().map(|(_, a)| *a).collect();
        if self == View::Nodes {
            names.push("identity");
        }
        names
    }
}

/// `table` as text under a title saying whose it is (`source`, e.g.
/// `router B` or `at amqp://host:5672`): a column per attribute (`-m`: a
/// line per attribute).
pub fn render(view: View, source: &str, table: &Table) -> String {
    let columns = view.columns();
    let mut out = format!("{} ({source})\n", view.title());
    if view == View::Memory {
        let width = columns.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
        for (header, attr) in columns {
            let value = if table.rows.is_empty() {
                "-".to_string()
            } else {
                show(table.get(0, attr))
            };
            out += &format!("  {header:<width$}  {value}\n");
        }
        return out;
    }
    let cells: Vec<Vec<String>> = (0..table.rows.len())
        .map(|i| columns.iter().map(|(_, a)| show(table.get(i, a))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(c, (h, _))| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    out += &line(columns.iter().map(|(h, _)| *h).collect());
    out += &format!(
        "  {}\n",
        "=".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    );
    for row in &cells {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `table` as JSON: an array of objects, one per entity, every attribute
/// asked for.
pub fn json(table: &Table) -> String {
    let rows: Vec<serde_json::Value> = table
        .rows
        .iter()
        .map(|row| {
            serde_json::Value::Object(
                table
                    .names
                    .iter()
                    .zip(row)
                    .map(|(n, v)| (n.clone(), to_json(v)))
                    .collect(),
            )
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_default()
}

/// `v` as indented JSON.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(&to_json(v)).unwrap_or_default()
}

/// A value for a table cell: text as is, null as `-`, lists joined.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            if items.is_empty() {
                "-".into()
            } else {
                items.join(",")
            }
        }
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => match to_json(other) {
            serde_json::Value::String(s) => s,
            j => j.to_string(),
        },
    }
}

/// An AMQP value as JSON (types without a JSON equivalent as text).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Ubyte(x) => (*x).into(),
        Value::Ushort(x) => (*x).into(),
        Value::Uint(x) => (*x).into(),
        Value::Ulong(x) => (*x).into(),
        Value::Byte(x) => (*x).into(),
        Value::Short(x) => (*x).into(),
        Value::Int(x) => (*x).into(),
        Value::Long(x) => (*x).into(),
        Value::Float(x) => serde_json::Number::from_f64((*x).into()).map_or(J::Null, J::Number),
        Value::Double(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Symbol(s) => J::String(s.to_string()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.0.iter()
                .map(|(k, v)| {
                    let key = k.as_text().map_or_else(|| format!("{k:?}"), str::to_string);
                    (key, to_json(v))
                })
                .collect(),
        ),
        other => J::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::codec::Str;

    fn s(t: &str) -> Value {
        Value::String(Str::from(t))
    }

    #[test]
    fn a_table_shows_one_line_per_entity_under_its_headers() {
        let table = Table {
            names: View::Nodes
                .attributes()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            rows: vec![
                vec![
                    s("A"),
                    s("(self)"),
                    Value::Null,
                    Value::Ulong(0),
                    Value::List(vec![s("B")]),
                    s("A"),
                ],
                vec![
                    s("B"),
                    Value::Null,
                    Value::Ulong(3),
                    Value::Ulong(1),
                    Value::List(vec![s("A")]),
                    s("B"),
                ],
            ],
        };
        let text = render(View::Nodes, "router A", &table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Routers in the mesh (router A)");
        assert!(
            lines[1].starts_with("  router-id  next-hop  link  cost  neighbours"),
            "{text}"
        );
        assert_eq!(lines[3], "  A          (self)    -     0     B");
        assert_eq!(lines[4], "  B          -         3     1     A");
        let json: serde_json::Value = serde_json::from_str(&json(&table)).unwrap();
        assert_eq!(json[1]["routerLink"], 3);
        assert_eq!(json[0]["linkState"][0], "B");
    }
}
