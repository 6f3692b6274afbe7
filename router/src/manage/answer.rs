//! The read-only operations, answered from a [`Snapshot`]: QUERY, READ and
//! the GET-… introspection operations. Pure: no sockets, no core.

use ferry_proto::codec::{Map, Str, Value};

use super::entities::{EntityType, Snapshot};
use super::request::{Operation, Request, Response};

fn s(text: impl Into<String>) -> Value {
    Value::String(Str::from(text.into()))
}

fn map(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Map(Map(entries.into_iter().map(|(k, v)| (s(k), v)).collect()))
}

/// The operations each type supports.
pub fn operations(t: EntityType) -> &'static [&'static str] {
    match t {
        EntityType::Connector | EntityType::Listener | EntityType::ConfigAddress => {
            &["CREATE", "READ", "UPDATE", "DELETE", "QUERY"]
        }
        _ => &["READ", "QUERY"],
    }
}

/// The entity type a request names, or the response saying why not.
pub fn entity_type(req: &Request) -> Result<EntityType, Response> {
    let Some(name) = req.entity_type.as_deref() else {
        return Err(Response::status(400, "no entity type given"));
    };
    EntityType::from_name(name)
        .ok_or_else(|| Response::status(404, format!("no entity type {name:?} here")))
}

/// Answers a read-only operation.
pub fn answer(req: &Request, snapshot: &Snapshot) -> Response {
    match &req.operation {
        Operation::Query => entity_type(req).map_or_else(|e| e, |t| query(req, snapshot, t)),
        Operation::Read => entity_type(req).map_or_else(|e| e, |t| read(req, snapshot, t)),
        Operation::GetTypes => Response::ok(map(
            types(req).map(|t| (t.name(), Value::List(vec![s("org.amqp.management")])))
        )),
        Operation::GetAttributes => Response::ok(map(types(req).map(|t| {
            let names = t.attributes().iter().map(|a| s(*a)).collect();
            (t.name(), Value::List(names))
        }))),
        Operation::GetOperations => Response::ok(map(types(req).map(|t| {
            let names = operations(t).iter().map(|a| s(*a)).collect();
            (t.name(), Value::List(names))
        }))),
        Operation::GetMgmtNodes => {
            let me = snapshot.table.me();
            let nodes = snapshot
                .table
                .routers()
                .filter(|r| *r != me)
                .map(|r| s(format!("amqp:/_topo/0/{r}/$management")))
                .collect();
            Response::ok(Value::List(nodes))
        }
        Operation::Create | Operation::Update | Operation::Delete => {
            Response::status(501, "not supported for this entity type")
        }
        Operation::Other(op) => Response::status(501, format!("unknown operation {op:?}")),
    }
}

/// The types a GET-… request is about: the one named, else all.
fn types(req: &Request) -> impl Iterator<Item = EntityType> {
    let only = req.entity_type.as_deref().map(EntityType::from_name);
    EntityType::ALL
        .into_iter()
        .filter(move |t| only.is_none_or(|o| o == Some(*t)))
}

fn query(req: &Request, snapshot: &Snapshot, t: EntityType) -> Response {
    let all = t.attributes();
    let names: Vec<&str> = if req.attribute_names.is_empty() {
        all.to_vec()
    } else {
        req.attribute_names.iter().map(String::as_str).collect()
    };
    // Attributes this type does not have come back null, as in Qpid
    // Dispatch Router's agent for attributes of a newer version.
    let columns: Vec<Option<usize>> = names
        .iter()
        .map(|n| all.iter().position(|a| a == n))
        .collect();
    let rows = snapshot.rows(t);
    let results = rows
        .into_iter()
        .skip(req.offset)
        .take(req.count.unwrap_or(usize::MAX))
        .map(|row| {
            Value::List(
                columns
                    .iter()
                    .map(|c| c.map_or(Value::Null, |i| row[i].clone()))
                    .collect(),
            )
        })
        .collect();
    Response::ok(map([
        (
            "attributeNames".to_string(),
            Value::List(names.iter().map(|n| s(*n)).collect()),
        ),
        ("results".to_string(), Value::List(results)),
    ]))
}

fn read(req: &Request, snapshot: &Snapshot, t: EntityType) -> Response {
    let wanted = |row: &Vec<Value>| {
        let text = |i: usize| row[i].as_text().map(str::to_string);
        match (&req.identity, &req.name) {
            (Some(id), _) => text(0).as_ref() == Some(id),
            (None, Some(name)) => text(1).as_ref() == Some(name),
            (None, None) => t == EntityType::Router,
        }
    };
    if req.identity.is_none() && req.name.is_none() && t != EntityType::Router {
        return Response::status(400, "READ needs a name or an identity");
    }
    match snapshot.rows(t).into_iter().find(wanted) {
        Some(row) => Response::ok(map(t.attributes().iter().map(|a| a.to_string()).zip(row))),
        None => Response::status(404, "no such entity"),
    }
}
