//! The control messages routers exchange over inter-router connections,
//! and their AMQP 1.0 encoding: a message with one `amqp-value` section
//! (AMQP 1.0 §3.2.8) holding a map with string keys. The keys and types of
//! each message are listed in `docs/ROUTING.md`.

use std::borrow::Borrow;

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::{DecodeError, Described, Descriptor, Encode, Map, Str, Value};
use ferry_proto::message::{Body, Message};

use super::RouterId;
use super::signature::Signature;

/// The descriptor code of the `amqp-value` section (AMQP 1.0 §3.2.8).
const AMQP_VALUE: u64 = 0x77;

/// The version of the control message format this module writes and reads.
pub const PROTOCOL_VERSION: u64 = 1;

/// Why bytes are not a control message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The bytes are not a valid AMQP 1.0 message.
    #[error("malformed AMQP message: {0}")]
    Decode(#[from] DecodeError),
    /// The message's body is not one `amqp-value` section holding a map.
    #[error("control message body is not an amqp-value map")]
    NotAMap,
    /// A key the message requires is absent.
    #[error("control message lacks {0:?}")]
    MissingField(&'static str),
    /// A key holds a value of another type than the format says.
    #[error("control message field {field:?} is not {expected}")]
    InvalidField {
        /// The key.
        field: &'static str,
        /// What the format requires there.
        expected: &'static str,
    },
    /// An `opcode` this router does not know.
    #[error("unknown control message opcode {0:?}")]
    UnknownOpcode(String),
    /// A format version this router does not speak.
    #[error("unsupported control message version {0}")]
    UnsupportedVersion(u64),
}

/// A routing protocol message, sent to one neighbour. See `docs/ROUTING.md`
/// for what each one means and when it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// Sent on every inter-router connection each `hello_interval`.
    Hello {
        /// The sender.
        id: RouterId,
        /// The sender's instance number.
        instance: u64,
        /// The neighbours the sender has heard a HELLO from lately.
        seen: Vec<RouterId>,
    },
    /// "I hold these routers' records at these versions": sent by router
    /// `id` to every two-way neighbour each `ra_interval`, one entry per
    /// reachable router (the sender included), and when a neighbour
    /// becomes two-way; at most [`ADVERTS_PER_MESSAGE`] entries a message.
    RouterAdvert {
        /// The sender.
        id: RouterId,
        /// The versions it holds.
        adverts: Vec<Advert>,
    },
    /// "The versions I hold of the `routers` routers I reach come to
    /// `digest`" ([`digest`]): sent by router `id` to every two-way
    /// neighbour each `ra_interval` instead of the whole list. A neighbour
    /// whose own summary differs answers with the list (a
    /// [`RouterAdvert`](Self::RouterAdvert)); one that agrees says nothing,
    /// so a converged mesh spends a few dozen bytes per link per interval
    /// however many routers it has.
    RouterDigest {
        /// The sender.
        id: RouterId,
        /// How many routers the digest covers.
        routers: u32,
        /// The digest of their versions.
        digest: u64,
    },
    /// Router `id`'s link-state record: its two-way neighbours and the cost
    /// it configured for each link. Flooded when newer than what a router has.
    LinkState {
        /// The router the record is about.
        id: RouterId,
        /// That router's instance number.
        instance: u64,
        /// The record's sequence number within the instance.
        seq: u64,
        /// Its two-way neighbours with its link costs.
        neighbors: Vec<(RouterId, u32)>,
        /// Router `id`'s signature of the record (absent in a mesh that
        /// does not sign: `signature.rs`).
        sig: Option<Signature>,
    },
    /// "Send me your copy of router `id`'s link-state record."
    LinkStateRequest {
        /// The router whose record is wanted.
        id: RouterId,
    },
    /// Router `id`'s addresses with local consumers: a delta (`added`,
    /// `removed`) on top of sequence number `seq - 1`, or with `full` the
    /// whole list (in `added`), which replaces what the receiver had.
    MobileAddresses {
        /// The router the addresses are at.
        id: RouterId,
        /// That router's instance number.
        instance: u64,
        /// The sequence number of the record after this update.
        seq: u64,
        /// Addresses that gained consumers (with `full`: all of them).
        added: Vec<String>,
        /// Addresses that lost their last consumer (empty with `full`).
        removed: Vec<String>,
        /// Whether `added` is the complete list.
        full: bool,
        /// Router `id`'s signature of the record as it stands after this
        /// update (absent in a mesh that does not sign).
        sig: Option<Signature>,
    },
    /// "Send me your copy of router `id`'s addresses, in full."
    MobileAddressRequest {
        /// The router whose addresses are wanted.
        id: RouterId,
    },
}

/// The versions of one router's records, as a neighbour holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The router the versions are about.
    pub id: RouterId,
    /// Its instance number.
    pub instance: u64,
    /// The sequence number of its link-state record.
    pub ls_seq: u64,
    /// The sequence number of its mobile address record (0: none).
    pub ma_seq: u64,
}

/// The most entries one RA carries (about 40 bytes each): a mesh of a
/// thousand routers advertises in four messages per neighbour, not a
/// thousand.
pub const ADVERTS_PER_MESSAGE: usize = 256;

/// The digest of a list of advertised versions, the same whatever their
/// order: the wrapping sum of each entry's [`Advert::hash`]. Fixed here,
/// not taken from a hasher that may change between builds: two routers
/// must compute the same digest of the same versions.
pub fn digest<A: Borrow<Advert>>(adverts: impl IntoIterator<Item = A>) -> u64 {
    adverts
        .into_iter()
        .fold(0, |sum, a| sum.wrapping_add(a.borrow().hash()))
}

impl Advert {
    /// This entry's part of a [`digest`]: FNV-1a of the id, then each
    /// number mixed in with SplitMix64's finalizer.
    pub fn hash(&self) -> u64 {
        fn mix(mut z: u64) -> u64 {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        let id = self
            .id
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        [self.instance, self.ls_seq, self.ma_seq]
            .into_iter()
            .fold(mix(id), |h, n| mix(h ^ n))
    }
}

/// Map keys.
mod key {
    pub const OPCODE: &str = "opcode";
    pub const VERSION: &str = "version";
    pub const ID: &str = "id";
    pub const INSTANCE: &str = "instance";
    pub const SEEN: &str = "seen";
    pub const LS_SEQ: &str = "ls_seq";
    pub const MA_SEQ: &str = "ma_seq";
    pub const NEIGHBORS: &str = "neighbors";
    pub const ADDED: &str = "added";
    pub const REMOVED: &str = "removed";
    pub const FULL: &str = "full";
    pub const SIG: &str = "sig";
    pub const ADVERTS: &str = "adverts";
    pub const ROUTERS: &str = "routers";
    pub const DIGEST: &str = "digest";
}

/// Opcodes, the value under `opcode`.
mod op {
    pub const HELLO: &str = "HELLO";
    pub const RA: &str = "RA";
    pub const RAD: &str = "RAD";
    pub const LSU: &str = "LSU";
    pub const LSR: &str = "LSR";
    pub const MAU: &str = "MAU";
    pub const MAR: &str = "MAR";
}

impl ControlMessage {
    /// The router the message is from (HELLO) or about (every other kind).
    pub fn id(&self) -> &RouterId {
        match self {
            ControlMessage::Hello { id, .. }
            | ControlMessage::RouterAdvert { id, .. }
            | ControlMessage::RouterDigest { id, .. }
            | ControlMessage::LinkState { id, .. }
            | ControlMessage::LinkStateRequest { id }
            | ControlMessage::MobileAddresses { id, .. }
            | ControlMessage::MobileAddressRequest { id } => id,
        }
    }

    /// The wire opcode: `HELLO`, `RA`, `RAD`, `LSU`, `LSR`, `MAU` or `MAR`.
    pub fn opcode(&self) -> &'static str {
        match self {
            ControlMessage::Hello { .. } => op::HELLO,
            ControlMessage::RouterAdvert { .. } => op::RA,
            ControlMessage::RouterDigest { .. } => op::RAD,
            ControlMessage::LinkState { .. } => op::LSU,
            ControlMessage::LinkStateRequest { .. } => op::LSR,
            ControlMessage::MobileAddresses { .. } => op::MAU,
            ControlMessage::MobileAddressRequest { .. } => op::MAR,
        }
    }

    /// The message as a complete AMQP 1.0 message: one `amqp-value`
    /// section holding the map, ready to be the payload of a transfer.
    pub fn encode(&self) -> Bytes {
        let mut m = MapBuilder::default();
        m.text(key::OPCODE, self.opcode());
        m.put(key::VERSION, Value::Uint(PROTOCOL_VERSION as u32));
        m.text(key::ID, self.id().as_str());
        match self {
            ControlMessage::Hello { instance, seen, .. } => {
                m.put(key::INSTANCE, Value::Ulong(*instance));
                m.put(key::SEEN, text_list(seen.iter().map(RouterId::as_str)));
            }
            ControlMessage::RouterAdvert { adverts, .. } => {
                let entries = adverts
                    .iter()
                    .map(|a| {
                        Value::List(vec![
                            string(a.id.as_str()),
                            Value::Ulong(a.instance),
                            Value::Ulong(a.ls_seq),
                            Value::Ulong(a.ma_seq),
                        ])
                    })
                    .collect();
                m.put(key::ADVERTS, Value::List(entries));
            }
            ControlMessage::RouterDigest {
                routers, digest, ..
            } => {
                m.put(key::ROUTERS, Value::Uint(*routers));
                m.put(key::DIGEST, Value::Ulong(*digest));
            }
            ControlMessage::LinkState {
                instance,
                seq,
                neighbors,
                sig,
                ..
            } => {
                m.put(key::INSTANCE, Value::Ulong(*instance));
                m.put(key::LS_SEQ, Value::Ulong(*seq));
                let links = neighbors
                    .iter()
                    .map(|(id, cost)| (string(id.as_str()), Value::Uint(*cost)))
                    .collect();
                m.put(key::NEIGHBORS, Value::Map(Map(links)));
                put_sig(&mut m, sig.as_ref());
            }
            ControlMessage::MobileAddresses {
                instance,
                seq,
                added,
                removed,
                full,
                sig,
                ..
            } => {
                m.put(key::INSTANCE, Value::Ulong(*instance));
                m.put(key::MA_SEQ, Value::Ulong(*seq));
                m.put(key::ADDED, text_list(added.iter().map(String::as_str)));
                m.put(key::REMOVED, text_list(removed.iter().map(String::as_str)));
                m.put(key::FULL, Value::Bool(*full));
                put_sig(&mut m, sig.as_ref());
            }
            ControlMessage::LinkStateRequest { .. }
            | ControlMessage::MobileAddressRequest { .. } => {}
        }
        let section = Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(AMQP_VALUE),
            value: Value::Map(Map(m.0)),
        }));
        let mut buf = BytesMut::new();
        section.encode(&mut buf);
        buf.freeze()
    }

    /// Reads a control message from a complete AMQP 1.0 message (other
    /// sections than the body, such as properties, are allowed and
    /// ignored, as are unknown map keys). Malformed input is an error,
    /// never a panic.
    pub fn decode(bytes: Bytes) -> Result<Self, RoutingError> {
        let message = Message::decode(bytes)?;
        let Body::AmqpValue(Value::Map(map)) = &message.body else {
            return Err(RoutingError::NotAMap);
        };
        let f = Fields(map);
        if let Some(v) = f.opt(key::VERSION) {
            let v = v.as_u64().ok_or(RoutingError::InvalidField {
                field: key::VERSION,
                expected: "an unsigned integer",
            })?;
            if v != PROTOCOL_VERSION {
                return Err(RoutingError::UnsupportedVersion(v));
            }
        }
        let opcode = f.text(key::OPCODE)?;
        let id = f.router_id(key::ID)?;
        Ok(match opcode {
            op::HELLO => ControlMessage::Hello {
                id,
                instance: f.u64(key::INSTANCE)?,
                seen: f
                    .list(key::SEEN)?
                    .iter()
                    .map(|v| as_router_id(v, key::SEEN))
                    .collect::<Result<_, _>>()?,
            },
            op::RA => ControlMessage::RouterAdvert {
                id,
                adverts: f
                    .list(key::ADVERTS)?
                    .iter()
                    .map(as_advert)
                    .collect::<Result<_, _>>()?,
            },
            op::RAD => ControlMessage::RouterDigest {
                id,
                routers: u32::try_from(f.u64(key::ROUTERS)?)
                    .map_err(|_| invalid(key::ROUTERS, "a uint"))?,
                digest: f.u64(key::DIGEST)?,
            },
            op::LSU => {
                let Value::Map(links) = f.get(key::NEIGHBORS)? else {
                    return Err(invalid(key::NEIGHBORS, "a map"));
                };
                let neighbors = links
                    .0
                    .iter()
                    .map(|(k, v)| {
                        let cost = v
                            .as_u64()
                            .and_then(|c| u32::try_from(c).ok())
                            .ok_or(invalid(key::NEIGHBORS, "a map of costs (uint)"))?;
                        Ok((as_router_id(k, key::NEIGHBORS)?, cost))
                    })
                    .collect::<Result<_, RoutingError>>()?;
                ControlMessage::LinkState {
                    id,
                    instance: f.u64(key::INSTANCE)?,
                    seq: f.u64(key::LS_SEQ)?,
                    neighbors,
                    sig: f.sig()?,
                }
            }
            op::LSR => ControlMessage::LinkStateRequest { id },
            op::MAU => ControlMessage::MobileAddresses {
                id,
                instance: f.u64(key::INSTANCE)?,
                seq: f.u64(key::MA_SEQ)?,
                added: f.strings(key::ADDED)?,
                removed: f.strings(key::REMOVED)?,
                full: match f.get(key::FULL)? {
                    Value::Bool(b) => *b,
                    _ => return Err(invalid(key::FULL, "a boolean")),
                },
                sig: f.sig()?,
            },
            op::MAR => ControlMessage::MobileAddressRequest { id },
            other => return Err(RoutingError::UnknownOpcode(other.to_owned())),
        })
    }
}

/// The entries of the map being encoded, in order.
#[derive(Default)]
struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    fn put(&mut self, key: &'static str, value: Value) {
        self.0.push((Value::String(Str::from_static(key)), value));
    }
    fn text(&mut self, key: &'static str, text: &str) {
        self.put(key, string(text));
    }
}

fn string(text: &str) -> Value {
    Value::String(Str::from(text))
}

fn text_list<'a>(items: impl Iterator<Item = &'a str>) -> Value {
    Value::List(items.map(string).collect())
}

fn invalid(field: &'static str, expected: &'static str) -> RoutingError {
    RoutingError::InvalidField { field, expected }
}

/// A signature, as `[scheme, signature, [certificate, ...]]` (a ushort,
/// binaries). Nothing when absent.
fn put_sig(m: &mut MapBuilder, sig: Option<&Signature>) {
    let Some(sig) = sig else { return };
    let certs = sig.certs.iter().cloned().map(Value::Binary).collect();
    m.put(
        key::SIG,
        Value::List(vec![
            Value::Ushort(sig.scheme),
            Value::Binary(sig.value.clone()),
            Value::List(certs),
        ]),
    );
}

/// An RA entry: `[id, instance, ls_seq, ma_seq]`.
fn as_advert(v: &Value) -> Result<Advert, RoutingError> {
    const SHAPE: &str = "a list of [id, instance, ls_seq, ma_seq]";
    let Value::List(items) = v else {
        return Err(invalid(key::ADVERTS, SHAPE));
    };
    let [id, instance, ls_seq, ma_seq] = items.as_slice() else {
        return Err(invalid(key::ADVERTS, SHAPE));
    };
    let n = |v: &Value| v.as_u64().ok_or(invalid(key::ADVERTS, SHAPE));
    Ok(Advert {
        id: as_router_id(id, key::ADVERTS)?,
        instance: n(instance)?,
        ls_seq: n(ls_seq)?,
        ma_seq: n(ma_seq)?,
    })
}

/// A router id: a non-empty string (or symbol).
fn as_router_id(v: &Value, field: &'static str) -> Result<RouterId, RoutingError> {
    match v.as_text() {
        Some(t) if !t.is_empty() => Ok(RouterId::from(t)),
        _ => Err(invalid(field, "a non-empty string")),
    }
}

/// Typed access to the decoded map.
struct Fields<'a>(&'a Map);

impl Fields<'_> {
    fn opt(&self, key: &'static str) -> Option<&Value> {
        self.0.get(key).filter(|v| !matches!(v, Value::Null))
    }
    fn get(&self, key: &'static str) -> Result<&Value, RoutingError> {
        self.opt(key).ok_or(RoutingError::MissingField(key))
    }
    fn text(&self, key: &'static str) -> Result<&str, RoutingError> {
        self.get(key)?.as_text().ok_or(invalid(key, "a string"))
    }
    fn router_id(&self, key: &'static str) -> Result<RouterId, RoutingError> {
        as_router_id(self.get(key)?, key)
    }
    fn u64(&self, key: &'static str) -> Result<u64, RoutingError> {
        self.get(key)?
            .as_u64()
            .ok_or(invalid(key, "an unsigned integer"))
    }
    /// A list or an array; an absent list is empty.
    fn list(&self, key: &'static str) -> Result<&[Value], RoutingError> {
        match self.opt(key) {
            None => Ok(&[]),
            Some(Value::List(items)) => Ok(items),
            Some(Value::Array(a)) => Ok(a.elements()),
            Some(_) => Err(invalid(key, "a list")),
        }
    }
    /// The signature under [`key::SIG`], if any.
    fn sig(&self) -> Result<Option<Signature>, RoutingError> {
        const SHAPE: &str = "[scheme (ushort), signature (binary), [certificate (binary)]]";
        let Some(v) = self.opt(key::SIG) else {
            return Ok(None);
        };
        let binary = |v: &Value| match v {
            Value::Binary(b) => Ok(b.clone()),
            _ => Err(invalid(key::SIG, SHAPE)),
        };
        match v {
            Value::List(items) => match items.as_slice() {
                [Value::Ushort(scheme), value, Value::List(certs)] => Ok(Some(Signature {
                    scheme: *scheme,
                    value: binary(value)?,
                    certs: certs.iter().map(binary).collect::<Result<_, _>>()?,
                })),
                _ => Err(invalid(key::SIG, SHAPE)),
            },
            _ => Err(invalid(key::SIG, SHAPE)),
        }
    }
    fn strings(&self, key: &'static str) -> Result<Vec<String>, RoutingError> {
        self.list(key)?
            .iter()
            .map(|v| {
                v.as_text()
                    .map(str::to_owned)
                    .ok_or(invalid(key, "a list of strings"))
            })
            .collect()
    }
}
