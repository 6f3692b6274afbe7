//! Watching a connection's frames: which links exist, which deliveries
//! cross, their message ids and router traces, and their settlements. Also
//! where a deliberately injected bug rewrites frames (see [`Tamper`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use ferry_proto::definitions::{DeliveryState, Performative, Role, TargetTerminus};
use ferry_proto::message::{MessageId, MessageView};
use ferry_router::core::trace;

use crate::frames::{FrameReader, ItemKind, encode};
use crate::ledger::MsgKey;

/// A direction on a connection: from side 0 (the dialer or the client) to
/// side 1 (the accepting router), or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Side 0 to side 1.
    Forward,
    /// Side 1 to side 0.
    Back,
}

impl Dir {
    /// Both directions.
    pub const BOTH: [Dir; 2] = [Dir::Forward, Dir::Back];

    /// As an index (0 forward, 1 back).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The other direction.
    pub fn reverse(self) -> Dir {
        match self {
            Dir::Forward => Dir::Back,
            Dir::Back => Dir::Forward,
        }
    }

    /// The side that sends in this direction.
    pub fn from_side(self) -> usize {
        self.index()
    }

    /// The side that receives.
    pub fn to_side(self) -> usize {
        1 - self.index()
    }
}

/// A deliberately injected bug on one direction of a connection, to show
/// that the invariants catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Dispositions saying `released` are rewritten to `accepted`.
    ReleasedToAccepted,
    /// Dispositions from a receiver vanish.
    DropDispositions,
    /// Dispositions saying `accepted` are rewritten to
    /// `modified{delivery-failed}` (what issue #19's router did to the
    /// last outcomes before a consumer left).
    AcceptedToModified,
}

/// A link as seen on the wire.
#[derive(Debug, Clone)]
struct WireLink {
    name: String,
    sender: bool,
    address: Option<String>,
}

/// The credit a link's sender holds, as the wire shows it: the limit the
/// receiver's last flow set (its delivery-count plus link-credit) less
/// the deliveries the sender has sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCredit {
    /// The link's address.
    pub address: Option<String>,
    /// The direction deliveries flow.
    pub dir: Dir,
    sent: u32,
    limit: Option<u32>,
}

impl LinkCredit {
    /// The credit the sender holds now (0 before the first flow).
    pub fn held(&self) -> u32 {
        self.limit.map_or(0, |l| {
            let h = l.wrapping_sub(self.sent);
            if h > u32::MAX / 2 { 0 } else { h }
        })
    }
}

/// Something seen on a connection.
#[derive(Debug, Clone)]
pub enum WireEvent {
    /// The first (or only) frame of a delivery.
    Transfer {
        /// The direction.
        dir: Dir,
        /// The link's address (target for a sender's attach).
        address: Option<String>,
        /// Pre-settled.
        settled: bool,
        /// More frames follow.
        more: bool,
        /// The message's key, if its message-id is one of ours.
        key: Option<MsgKey>,
        /// The routers the message says it visited.
        trace: Vec<String>,
        /// Where it is, for its settlement: (channel, delivery id).
        slot: (u16, u32),
        /// The link's handle (the sender's).
        handle: u32,
    },
    /// A receiver settled deliveries it got in `dir.reverse()`.
    Settled {
        /// The direction of the disposition.
        dir: Dir,
        /// The deliveries' slots in `dir.reverse()`.
        slots: Vec<(u16, u32)>,
        /// The outcome.
        state: Option<DeliveryState>,
    },
    /// A link on which `dir`'s sender sends was attached.
    SenderAttached {
        /// The direction deliveries will flow.
        dir: Dir,
    },
    /// A detach, end or close saying that the peer broke the protocol.
    Violation {
        /// The direction of the frame (its sender blames its receiver).
        dir: Dir,
        /// The frame, e.g. `detach h1 (amqp:link:transfer-limit-exceeded: …)`.
        frame: String,
    },
    /// Such a link went.
    SenderDetached {
        /// The direction deliveries flowed.
        dir: Dir,
        /// The sender's channel and handle of the link.
        link: (u16, u32),
    },
}

#[derive(Debug, Default)]
struct Half {
    reader: FrameReader,
    /// Our channel → the peer's channel, for each session.
    channels: BTreeMap<u16, u16>,
    links: BTreeMap<(u16, u32), WireLink>,
    /// Links with a delivery whose next frame is a continuation.
    partial: BTreeSet<(u16, u32)>,
}

/// The watcher of one connection.
#[derive(Debug, Default)]
pub struct ConnTap {
    halves: [Half; 2],
    credits: BTreeMap<String, LinkCredit>,
    logging: bool,
    lines: Vec<String>,
}

impl ConnTap {
    /// One line per AMQP frame read by the last [`process`](Self::process)
    /// call, when frame logging is on.
    pub fn take_frame_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    /// The credit each link's sender holds, by link name.
    pub fn credits(&self) -> impl Iterator<Item = (&str, &LinkCredit)> {
        self.credits.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// Logs a line per frame from now on.
    pub fn log_frames(&mut self) {
        self.logging = true;
    }

    /// Reads `bytes` travelling in `dir`, applies `tamper` if any, and
    /// returns the bytes to deliver and what was seen in them. `bytes` are
    /// whole frames (what an engine's `poll_transmit` gives), so a rewrite
    /// never has to split one.
    pub fn process(
        &mut self,
        dir: Dir,
        bytes: Bytes,
        tamper: Option<Tamper>,
    ) -> (Bytes, Vec<WireEvent>) {
        let items = self.halves[dir.index()]
            .reader
            .feed(&bytes, tamper.is_some());
        let mut out = tamper.map(|_| BytesMut::with_capacity(bytes.len()));
        let mut events = Vec::new();
        for item in items {
            let ItemKind::Amqp {
                channel,
                performative,
                payload,
            } = item.kind
            else {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(&item.raw);
                }
                continue;
            };
            let performative = match (tamper, performative) {
                (Some(Tamper::DropDispositions), Performative::Disposition(d))
                    if d.role == Role::Receiver =>
                {
                    continue;
                }
                (Some(Tamper::AcceptedToModified), Performative::Disposition(mut d))
                    if d.state == Some(DeliveryState::Accepted) =>
                {
                    d.state = Some(DeliveryState::Modified(
                        ferry_proto::definitions::Modified {
                            delivery_failed: Some(true),
                            ..Default::default()
                        },
                    ));
                    let p = Performative::Disposition(d);
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&encode(channel, &p, &[]));
                    }
                    p
                }
                (Some(Tamper::ReleasedToAccepted), Performative::Disposition(mut d))
                    if d.state == Some(DeliveryState::Released) =>
                {
                    d.state = Some(DeliveryState::Accepted);
                    let p = Performative::Disposition(d);
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&encode(channel, &p, &[]));
                    }
                    p
                }
                (_, p) => {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&item.raw);
                    }
                    p
                }
            };
            if self.logging {
                self.lines.push(describe(channel, &performative, &payload));
            }
            let error = match &performative {
                Performative::Detach(d) => d.error.as_ref(),
                Performative::End(e) => e.error.as_ref(),
                Performative::Close(c) => c.error.as_ref(),
                _ => None,
            };
            if error.is_some_and(|e| broken(&e.condition)) {
                events.push(WireEvent::Violation {
                    dir,
                    frame: describe(channel, &performative, &payload),
                });
            }
            self.interpret(dir, channel, performative, payload, &mut events);
        }
        (out.map_or(bytes, BytesMut::freeze), events)
    }

    fn interpret(
        &mut self,
        dir: Dir,
        channel: u16,
        p: Performative,
        payload: Bytes,
        events: &mut Vec<WireEvent>,
    ) {
        let (i, r) = (dir.index(), dir.reverse().index());
        match p {
            Performative::Begin(b) => {
                if let Some(theirs) = b.remote_channel {
                    self.halves[i].channels.insert(channel, theirs);
                    self.halves[r].channels.insert(theirs, channel);
                }
            }
            Performative::Attach(a) => {
                let sender = a.role == Role::Sender;
                let address = if sender {
                    match &a.target {
                        Some(TargetTerminus::Target(t)) => {
                            t.address.as_ref().map(|s| s.to_string())
                        }
                        _ => None,
                    }
                } else {
                    a.source
                        .as_ref()
                        .and_then(|s| s.address.as_ref().map(|s| s.to_string()))
                };
                if sender {
                    self.credits.insert(
                        a.name.to_string(),
                        LinkCredit {
                            address: address.clone(),
                            dir,
                            sent: a.initial_delivery_count.map_or(0, |c| c.0),
                            limit: None,
                        },
                    );
                }
                let link = WireLink {
                    name: a.name.to_string(),
                    sender,
                    address,
                };
                let link_id = (channel, a.handle.0);
                let old = self.halves[i].links.insert(link_id, link);
                if old.is_some_and(|l| l.sender) {
                    events.push(WireEvent::SenderDetached { dir, link: link_id });
                }
                if sender {
                    events.push(WireEvent::SenderAttached { dir });
                }
            }
            Performative::Detach(d) => {
                self.halves[i].partial.remove(&(channel, d.handle.0));
                if let Some(l) = self.halves[i].links.remove(&(channel, d.handle.0)) {
                    self.credits.remove(&l.name);
                    if l.sender {
                        events.push(WireEvent::SenderDetached {
                            dir,
                            link: (channel, d.handle.0),
                        });
                    }
                }
            }
            Performative::Flow(f) => {
                let Some(h) = f.handle else {
                    return;
                };
                if let Some(l) = self.halves[i]
                    .links
                    .get(&(channel, h.0))
                    .filter(|l| !l.sender)
                    && let Some(c) = self.credits.get_mut(&l.name)
                {
                    let count = f.delivery_count.map_or(c.sent, |d| d.0);
                    c.limit = Some(count.wrapping_add(f.link_credit.unwrap_or(0)));
                }
            }
            Performative::End(_) => self.forget(dir, |c| c == channel, events),
            Performative::Close(_) => self.forget(dir, |_| true, events),
            Performative::Transfer(t) => {
                let link = (channel, t.handle.0);
                let half = &mut self.halves[i];
                let continuation = half.partial.contains(&link);
                let more = t.more == Some(true);
                if more && t.aborted != Some(true) {
                    half.partial.insert(link);
                } else {
                    half.partial.remove(&link);
                }
                if continuation {
                    return;
                }
                let Some(id) = t.delivery_id else {
                    return;
                };
                let address = half.links.get(&link).and_then(|l| l.address.clone());
                if let Some(c) = half
                    .links
                    .get(&link)
                    .and_then(|l| self.credits.get_mut(&l.name))
                {
                    c.sent = c.sent.wrapping_add(1);
                }
                let (key, trace) = if more {
                    (None, Vec::new())
                } else {
                    (message_key(&payload), trace::visited(&payload))
                };
                events.push(WireEvent::Transfer {
                    dir,
                    address,
                    settled: t.settled == Some(true),
                    more,
                    key,
                    trace,
                    slot: (channel, id.0),
                    handle: t.handle.0,
                });
            }
            Performative::Disposition(d) if d.role == Role::Receiver => {
                // The deliveries are the peer's, on the peer's channel.
                let Some(&theirs) = self.halves[i].channels.get(&channel) else {
                    return;
                };
                if d.settled != Some(true) {
                    return;
                }
                let last = d.last.unwrap_or(d.first);
                let n = last.distance_from(d.first).min(1 << 16);
                let slots = (0..=n)
                    .map(|k| (theirs, d.first.0.wrapping_add(k)))
                    .collect();
                events.push(WireEvent::Settled {
                    dir,
                    slots,
                    state: d.state,
                });
            }
            Performative::Open(_) | Performative::Disposition(_) => {}
        }
    }

    /// Forgets the links of `dir` on channels matching `which`.
    fn forget(&mut self, dir: Dir, which: impl Fn(u16) -> bool, events: &mut Vec<WireEvent>) {
        let half = &mut self.halves[dir.index()];
        let gone: Vec<(u16, u32)> = half
            .links
            .keys()
            .filter(|(c, _)| which(*c))
            .copied()
            .collect();
        for k in gone {
            half.partial.remove(&k);
            if let Some(l) = half.links.remove(&k) {
                self.credits.remove(&l.name);
                if l.sender {
                    events.push(WireEvent::SenderDetached { dir, link: k });
                }
            }
        }
    }
}

/// A frame in a few words, for the log.
fn describe(channel: u16, p: &Performative, payload: &Bytes) -> String {
    match p {
        Performative::Open(o) => format!("open {}", o.container_id),
        Performative::Begin(b) => format!("ch{channel} begin (remote {:?})", b.remote_channel),
        Performative::Attach(a) => {
            let addr = match (&a.source, &a.target) {
                (_, Some(TargetTerminus::Target(t))) if a.role == Role::Sender => {
                    t.address.as_ref().map(|s| s.to_string())
                }
                (Some(s), _) => s.address.as_ref().map(|s| s.to_string()),
                _ => None,
            };
            format!(
                "ch{channel} attach h{} {:?} {} {addr:?}",
                a.handle.0, a.role, a.name
            )
        }
        Performative::Flow(f) => format!(
            "ch{channel} flow h{:?} credit {:?} count {:?} drain {:?} (session: next in {:?} window {}, next out {} window {})",
            f.handle.map(|h| h.0),
            f.link_credit,
            f.delivery_count.map(|d| d.0),
            f.drain,
            f.next_incoming_id.map(|n| n.0),
            f.incoming_window,
            f.next_outgoing_id.0,
            f.outgoing_window
        ),
        Performative::Transfer(t) => {
            let key = message_key(payload).map_or("-".into(), |k| k.to_string());
            format!(
                "ch{channel} transfer h{} id {:?} settled {:?} more {:?} {key}",
                t.handle.0,
                t.delivery_id.map(|d| d.0),
                t.settled,
                t.more
            )
        }
        Performative::Disposition(d) => format!(
            "ch{channel} disposition {:?} {}..{:?} settled {:?} {:?}",
            d.role,
            d.first.0,
            d.last.map(|l| l.0),
            d.settled,
            d.state.as_ref().map(|s| format!("{s:?}"))
        ),
        Performative::Detach(d) => format!(
            "ch{channel} detach h{} closed {:?}{}",
            d.handle.0,
            d.closed,
            error_of(d.error.as_ref())
        ),
        Performative::End(e) => format!("ch{channel} end{}", error_of(e.error.as_ref())),
        Performative::Close(c) => format!(
            "close {:?}",
            c.error.as_ref().map(|e| e.condition.to_string())
        ),
    }
}

/// Whether `condition` says the peer broke the protocol (AMQP 1.0
/// §2.8.15–2.8.18). Between the mesh's own engines none may occur:
/// refusals (`not-allowed`, `not-found`), idle timeouts
/// (`resource-limit-exceeded`) and forced closes are not among them.
fn broken(condition: &ferry_proto::definitions::ErrorCondition) -> bool {
    use ferry_proto::definitions::condition::*;
    [
        DECODE_ERROR,
        INVALID_FIELD,
        NOT_IMPLEMENTED,
        ILLEGAL_STATE,
        FRAMING_ERROR,
        WINDOW_VIOLATION,
        ERRANT_LINK,
        HANDLE_IN_USE,
        UNATTACHED_HANDLE,
        TRANSFER_LIMIT_EXCEEDED,
    ]
    .contains(condition)
}

/// ` (condition: description)` for an error, for the log.
fn error_of(error: Option<&ferry_proto::definitions::Error>) -> String {
    error.map_or(String::new(), |e| {
        format!(
            " ({}: {})",
            e.condition,
            e.description.as_deref().unwrap_or("")
        )
    })
}

/// The key carried in a message's message-id, if it is one of ours.
pub fn message_key(payload: &Bytes) -> Option<MsgKey> {
    match MessageView::parse(payload.clone())
        .ok()?
        .message_id()
        .ok()?
    {
        Some(MessageId::Ulong(id)) => Some(MsgKey::unpack(id)),
        _ => None,
    }
}
