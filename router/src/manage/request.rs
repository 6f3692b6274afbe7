//! Management requests and responses as messages (AMQP Management 1.0,
//! as Qpid Dispatch Router speaks it): the operation and its arguments in
//! application-properties, a map or list in an amqp-value body; the
//! response carries `statusCode` and `statusDescription` and goes to the
//! request's `reply-to` with the request's correlation-id (else its
//! message-id).

use bytes::Bytes;
use ferry_proto::codec::{Map, Str, Value};
use ferry_proto::message::{Body, Message, MessageId, Properties};

/// The type of the management node itself.
const MANAGEMENT_NODE_TYPE: &str = "org.amqp.management";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Entities of a type, chosen attributes.
    Query,
    /// One entity.
    Read,
    /// A new entity.
    Create,
    /// Change an entity.
    Update,
    /// Remove an entity.
    Delete,
    /// The entity types.
    GetTypes,
    /// The attributes of each type.
    GetAttributes,
    /// The operations of each type.
    GetOperations,
    /// The other routers' management nodes.
    GetMgmtNodes,
    /// Anything else (answered 501).
    Other(String),
}

impl Operation {
    fn parse(name: &str) -> Self {
        match name {
            "QUERY" => Operation::Query,
            "READ" => Operation::Read,
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "GET-TYPES" => Operation::GetTypes,
            "GET-ATTRIBUTES" => Operation::GetAttributes,
            "GET-OPERATIONS" => Operation::GetOperations,
            "GET-MGMT-NODES" => Operation::GetMgmtNodes,
            other => Operation::Other(other.to_string()),
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The operation.
    pub operation: Operation,
    /// `entityType` (QUERY, GET-…) or `type` (entity operations).
    pub entity_type: Option<String>,
    /// The entity's `name`.
    pub name: Option<String>,
    /// The entity's `identity`.
    pub identity: Option<String>,
    /// QUERY: the attributes wanted (empty: all).
    pub attribute_names: Vec<String>,
    /// QUERY: rows to skip.
    pub offset: usize,
    /// QUERY: rows wanted at most.
    pub count: Option<usize>,
    /// CREATE and UPDATE: the attributes given.
    pub attributes: Map,
    /// Where the response goes.
    pub reply: ReplyTo,
}

/// Where a response goes and what it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTo {
    /// The request's `reply-to`.
    pub address: Str,
    /// The request's correlation-id, else its message-id.
    pub correlation: Option<MessageId>,
}

/// A message that is not a request that can be carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Where to say so, if the message says.
    pub reply: Option<ReplyTo>,
    /// Why.
    pub why: BadRequest,
}

/// Why a message is not a request that can be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// No `reply-to`: nowhere to answer (dropped).
    #[error("no reply-to")]
    NoReplyTo,
    /// Answered 400 with this description.
    #[error("{0}")]
    Invalid(String),
}

/// Parses a request, or says why it cannot be one. A request without a
/// reply address cannot be answered; one with a malformed section is
/// answered `400` if its reply address can be read.
pub fn parse(payload: Bytes) -> Result<Request, Refused> {
    let message = Message::decode(payload).map_err(|e| Refused {
        reply: None,
        why: BadRequest::Invalid(e.to_string()),
    })?;
    let properties = message.properties.unwrap_or_default();
    let Some(address) = properties.reply_to else {
        return Err(Refused {
            reply: None,
            why: BadRequest::NoReplyTo,
        });
    };
    let reply = ReplyTo {
        address,
        correlation: properties.correlation_id.or(properties.message_id),
    };
    let refuse = |why: &str| Refused {
        reply: Some(reply.clone()),
        why: BadRequest::Invalid(why.to_string()),
    };
    let props = message.application_properties.unwrap_or_default();
    let text = |key: &str| props.get(key).and_then(Value::as_text).map(str::to_string);
    let number = |key: &str| props.get(key).and_then(as_count);
    let Some(operation) = text("operation") else {
        return Err(refuse("no operation"));
    };
    let body = match message.body {
        Body::AmqpValue(Value::Map(m)) => m,
        Body::AmqpValue(Value::Null) | Body::Empty => Map::default(),
        Body::AmqpValue(Value::List(_)) => Map::default(),
        _ => return Err(refuse("the body must be an amqp-value map")),
    };
    let attribute_names = match body.get("attributeNames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::List(names)) => names
            .iter()
            .map(|v| v.as_text().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| refuse("attributeNames must be strings"))?,
        Some(_) => return Err(refuse("attributeNames must be a list")),
    };
    // QUERY and the GET-… operations name the type as `entityType`, and
    // `type` is then the management node's own (`org.amqp.management`).
    let entity_type = text("entityType")
        .or_else(|| text("type"))
        .filter(|t| t != MANAGEMENT_NODE_TYPE);
    Ok(Request {
        operation: Operation::parse(&operation),
        entity_type,
        name: text("name"),
        identity: text("identity"),
        attribute_names,
        offset: number("offset").unwrap_or(0),
        count: number("count"),
        attributes: body,
        reply,
    })
}

/// An integer argument of any integer type (negative: none).
fn as_count(v: &Value) -> Option<usize> {
    let n: i128 = match *v {
        Value::Byte(x) => x.into(),
        Value::Short(x) => x.into(),
        Value::Int(x) => x.into(),
        Value::Long(x) => x.into(),
        _ => v.as_u64()?.into(),
    };
    usize::try_from(n).ok()
}

/// A response: a status (HTTP codes, as the spec uses) and a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// `statusCode`.
    pub status: u16,
    /// `statusDescription`.
    pub description: String,
    /// The amqp-value body.
    pub body: Value,
}

impl Response {
    /// `200 OK` with `body`.
    pub fn ok(body: Value) -> Self {
        Self::with(200, "OK", body)
    }

    /// A status with no body.
    pub fn status(status: u16, description: impl Into<String>) -> Self {
        Self::with(status, description, Value::Map(Map::default()))
    }

    /// A status with a body.
    pub fn with(status: u16, description: impl Into<String>, body: Value) -> Self {
        Self {
            status,
            description: description.into(),
            body,
        }
    }

    /// The response message.
    pub fn encode(&self, reply: &ReplyTo) -> Bytes {
        let properties = Properties {
            to: Some(reply.address.clone()),
            correlation_id: reply.correlation.clone(),
            ..Properties::default()
        };
        Message::new(Body::AmqpValue(self.body.clone()))
            .with_properties(properties)
            .with_application_property("statusCode", Value::Int(self.status.into()))
            .with_application_property(
                "statusDescription",
                Value::String(Str::from(self.description.as_str())),
            )
            .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: &str, props: &[(&str, Value)], body: Value) -> Bytes {
        let mut m = Message::new(Body::AmqpValue(body)).with_properties(Properties {
            reply_to: Some("_dynamic/A/1".into()),
            correlation_id: Some(MessageId::Ulong(7)),
            ..Properties::default()
        });
        m = m.with_application_property("operation", Value::String(op.into()));
        for (k, v) in props {
            m = m.with_application_property(*k, v.clone());
        }
        m.encode()
    }

    #[test]
    fn a_query_is_read_with_its_arguments() {
        let body = Value::Map(Map(vec![(
            Value::String("attributeNames".into()),
            Value::List(vec![Value::String("id".into())]),
        )]));
        let r = parse(request(
            "QUERY",
            &[
                ("entityType", Value::String("router.node".into())),
                ("offset", Value::Int(2)),
                ("count", Value::Long(500)),
            ],
            body,
        ))
        .unwrap();
        assert_eq!(r.operation, Operation::Query);
        assert_eq!(r.entity_type.as_deref(), Some("router.node"));
        assert_eq!(r.attribute_names, ["id"]);
        assert_eq!((r.offset, r.count), (2, Some(500)));
        assert_eq!(r.reply.correlation, Some(MessageId::Ulong(7)));
    }

    #[test]
    fn a_request_without_an_operation_is_answered_400_to_its_reply_address() {
        let m = Message::new(Body::AmqpValue(Value::Null)).with_properties(Properties {
            reply_to: Some("r".into()),
            ..Properties::default()
        });
        let refused = parse(m.encode()).unwrap_err();
        assert_eq!(
            refused.reply.map(|r| r.address.to_string()).as_deref(),
            Some("r")
        );
        assert_eq!(refused.why, BadRequest::Invalid("no operation".into()));
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        for bytes in [
            &b""[..],
            b"\x00\x53\x77\xa1\xff",
            b"\x00\x53\x73\xc0\x03\x01\x40",
        ] {
            assert!(parse(Bytes::copy_from_slice(bytes)).is_err());
        }
    }

    #[test]
    fn the_response_carries_status_and_correlation() {
        let reply = ReplyTo {
            address: "r".into(),
            correlation: Some(MessageId::Ulong(7)),
        };
        let bytes = Response::status(404, "no such entity").encode(&reply);
        let m = Message::decode(bytes).unwrap();
        let props = m.application_properties.unwrap();
        assert_eq!(props.get("statusCode"), Some(&Value::Int(404)));
        let p = m.properties.unwrap();
        assert_eq!(p.correlation_id, Some(MessageId::Ulong(7)));
        assert_eq!(p.to.as_deref(), Some("r"));
    }
}
