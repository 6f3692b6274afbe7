//! The client side of management, for `ferry stat` and `ferry manage`:
//! a connection to any router, a dynamic reply address, and requests to
//! that router's `$management` or to another router's
//! `_topo/0/<id>/$management` across the mesh.

use bytes::Bytes;
use ferry_proto::client::{Client, ClientError, ClientOptions};
use ferry_proto::codec::{Map, Str, Value};
use ferry_proto::engine::LinkId;
use ferry_proto::message::{Body, Message, MessageId, Properties};

use super::agent::{LOCAL_NODE, topo_node};

/// What went wrong with a management request.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The connection or a link failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The router answered with an error status.
    #[error("{status} {description}")]
    Status {
        /// `statusCode`.
        status: u16,
        /// `statusDescription`.
        description: String,
    },
    /// The response is not what management sends.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// A response: status, description, body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `statusCode`.
    pub status: u16,
    /// `statusDescription`.
    pub description: String,
    /// The body.
    pub body: Value,
}

/// The rows of a QUERY, by attribute name.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The attribute names, in order.
    pub names: Vec<String>,
    /// The rows, each in `names` order.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// Row `i`'s value of attribute `name` (null if there is none).
    pub fn get(&self, i: usize, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|c| self.rows.get(i)?.get(c))
            .unwrap_or(&NULL)
    }
}

/// Responses the reply address takes at once.
const CREDIT: u32 = 16;

/// Rows asked for per QUERY (as qdstat does).
const PAGE: usize = 500;

/// A management session with one router.
pub struct Manager {
    client: Client,
    sender: LinkId,
    replies: LinkId,
    reply_to: String,
    next: u64,
}

impl Manager {
    /// Connects to `addr` and opens links to the management node of
    /// `router` (`None`: the router connected to).
    ///
    /// # Errors
    ///
    /// The connection or a link failed (e.g. management refused).
    pub async fn connect(
        addr: &str,
        options: ClientOptions,
        router: Option<&str>,
    ) -> Result<Self, ManageError> {
        let mut client = Client::connect(addr, options).await?;
        let (replies, reply_to) = client.open_dynamic_receiver(CREDIT).await?;
        let node = router.map_or_else(|| LOCAL_NODE.to_string(), topo_node);
        let sender = client.open_sender(Some(&node)).await?;
        Ok(Self {
            client,
            sender,
            replies,
            reply_to,
            next: 0,
        })
    }

    /// Sends one request and waits for its response.
    ///
    /// # Errors
    ///
    /// The request could not be sent or no response came.
    pub async fn call(
        &mut self,
        operation: &str,
        properties: &[(&str, Value)],
        body: Value,
    ) -> Result<Answer, ManageError> {
        self.next += 1;
        let id = MessageId::Ulong(self.next);
        let mut m = Message::new(Body::AmqpValue(body)).with_properties(Properties {
            message_id: Some(id.clone()),
            reply_to: Some(Str::from(self.reply_to.as_str())),
            ..Properties::default()
        });
        m = m.with_application_property("operation", text(operation));
        for (k, v) in properties {
            m = m.with_application_property(*k, v.clone());
        }
        self.client.send(self.sender, m.encode()).await?;
        loop {
            let delivery = self.client.receive(self.replies).await?;
            if !delivery.settled {
                self.client.accept(&delivery)?;
            }
            self.client.flow(self.replies, CREDIT).await?;
            let m = Message::decode(Bytes::clone(&delivery.payload))
                .map_err(|e| ManageError::Malformed(e.to_string()))?;
            let props = m.properties.unwrap_or_default();
            if props.correlation_id.as_ref() != Some(&id) {
                continue; // a late answer to an earlier request
            }
            let app = m.application_properties.unwrap_or_default();
            let status = app
                .get("statusCode")
                .and_then(|v| match *v {
                    Value::Int(x) => u16::try_from(x).ok(),
                    _ => v.as_u64().and_then(|x| u16::try_from(x).ok()),
                })
                .ok_or_else(|| ManageError::Malformed("no statusCode".into()))?;
            let description = app
                .get("statusDescription")
                .and_then(Value::as_text)
                .unwrap_or_default()
                .to_string();
            let body = match m.body {
                Body::AmqpValue(v) => v,
                _ => Value::Null,
            };
            return Ok(Answer {
                status,
                description,
                body,
            });
        }
    }

    /// Every entity of `entity_type` (all attributes if `attributes` is
    /// empty), a page at a time.
    ///
    /// # Errors
    ///
    /// A failed request or an error status.
    pub async fn query(
        &mut self,
        entity_type: &str,
        attributes: &[&str],
    ) -> Result<Table, ManageError> {
        let mut table = Table::default();
        loop {
            let body = Value::Map(Map(vec![(
                text("attributeNames"),
                Value::List(attributes.iter().map(|a| text(a)).collect()),
            )]));
            let props = [
                ("entityType", text(entity_type)),
                ("offset", Value::Ulong(table.rows.len() as u64)),
                ("count", Value::Ulong(PAGE as u64)),
            ];
            let answer = ok(self.call("QUERY", &props, body).await?)?;
            let Value::Map(m) = answer.body else {
                return Err(ManageError::Malformed("QUERY body is not a map".into()));
            };
            if table.names.is_empty() {
                table.names = texts(m.get("attributeNames"))?;
            }
            let Some(Value::List(rows)) = m.get("results") else {
                return Err(ManageError::Malformed("QUERY body has no results".into()));
            };
            let got = rows.len();
            for row in rows {
                match row {
                    Value::List(values) => table.rows.push(values.clone()),
                    _ => return Err(ManageError::Malformed("a result is not a list".into())),
                }
            }
            if got < PAGE {
                return Ok(table);
            }
        }
    }

    /// Closes the connection.
    ///
    /// # Errors
    ///
    /// The close failed (the requests were answered already).
    pub async fn close(self) -> Result<(), ManageError> {
        Ok(self.client.close().await?)
    }
}

/// The answer if its status is a success, else the error it is.
///
/// # Errors
///
/// [`ManageError::Status`] for a status outside 200–299.
pub fn ok(answer: Answer) -> Result<Answer, ManageError> {
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(ManageError::Status {
            status: answer.status,
            description: answer.description,
        })
    }
}

/// A string value.
pub fn text(s: &str) -> Value {
    Value::String(Str::from(s))
}

fn texts(v: Option<&Value>) -> Result<Vec<String>, ManageError> {
    match v {
        Some(Value::List(items)) => items
            .iter()
            .map(|i| i.as_text().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ManageError::Malformed("attributeNames are not strings".into())),
        _ => Err(ManageError::Malformed("no attributeNames".into())),
    }
}
