//! A connection this router dialed to a message broker (`[[broker]]`).
//!
//! Once the broker's `open` arrives, the router attaches, per brokered
//! address `X` naming this broker, links on demand (as Qpid Dispatch
//! Router's auto-links do, but for prefixes: see `core::brokered`):
//!
//! - while some router of the mesh has client producers of `X`, a sending
//!   link, target the broker's node for `X`: in the address
//!   table a *consumer* of `X` whose credit is the broker's (AMQP 1.0
//!   §2.6.7), so producers of `X` anywhere in the mesh get credit only
//!   as far as the broker grants it, and their deliveries' outcomes are
//!   the broker's (`accepted`: the broker stored it, §3.4.2);
//! - while some router has client consumers of `X`, a receiving link,
//!   source the same node (for a topic, the subscription: none while
//!   nobody consumes): a *producer* of
//!   `_brokered/X` (see `core::brokered`), given credit as consumers of
//!   `X` anywhere in the mesh grant it, like any producer; each
//!   consumer's outcome goes back to the broker as the disposition of
//!   the broker's delivery (released or modified ones are redelivered
//!   by the broker, §3.4.4, §3.4.5).
//!
//! Each address's links have a session of their own: RabbitMQ 3.x ends
//! the whole session when it refuses one link (a reserved or forbidden
//! queue name), and that must cost no other address its links. A link is
//! detached once the mesh has left its use unused for [`LINGER`], the
//! session ended with the address's last link. Everything else is the client connection's code:
//! the links are a consumer and a producer like a client's. When the
//! connection ends, what was sent to the broker unsettled is settled to
//! its producers `modified{delivery-failed}` (fate unknown: resend), what
//! waited for the link `released`; the broker redelivers what it had sent
//! us unsettled (its own rule for a lost link). A link (or session) the
//! broker ends takes its address's other link with it; they are attached
//! again after [`RETRY`] while still in use.

use std::collections::BTreeMap;

use super::*;
use crate::config::{BrokerConfig, brokered_entry};
use crate::core::BrokerUse;
use ferry_proto::engine::SessionId;

/// How long an address's links stay attached after the mesh stopped using
/// it: clients that come and go (a connection per request) do not make the
/// router attach and detach each time.
const LINGER: Duration = Duration::from_secs(5);

/// How long after the broker detached (or refused) an address's link the
/// router attaches it again, if the address is still in use.
const RETRY: Duration = Duration::from_secs(2);

/// Which of an address's links: to the broker (its producers'
/// messages) or from it (its consumers'). The receiving one sorts first:
/// attached together, a topic's subscription exists before anything is
/// published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    From,
    To,
}

impl Dir {
    /// Whom the link serves, in a log line.
    fn serves(self) -> &'static str {
        match self {
            Self::From => "consumers",
            Self::To => "producers",
        }
    }
}

/// A link to or from the broker: its address and direction.
type Key = (String, Dir);

/// The broker side of a connection to a broker.
pub(crate) struct BrokerLinks {
    /// The `[[broker]]` entry.
    config: BrokerConfig,
    /// The broker's `open` arrived.
    opened: bool,
    /// The links attached to the broker, with what each serves.
    links: HashMap<LinkId, Key>,
    /// The other way round.
    attached: BTreeMap<Key, LinkId>,
    /// Each address with a link attached: its session.
    sessions: BTreeMap<String, SessionId>,
    /// Sessions of addresses the broker detached a link of without saying
    /// why: the end of the session it then sends says it.
    unexplained: HashMap<SessionId, String>,
    /// Links that wait: attached ones the mesh no longer uses (detached at
    /// the instant given), and ones the broker took away (attached again
    /// at the instant given, if in use).
    waiting: BTreeMap<Key, Instant>,
    /// Links attached so far: each link's name is new (an address attached
    /// again may meet its old link's detach still on its way).
    serial: u64,
}

impl BrokerLinks {
    pub(crate) fn new(config: BrokerConfig) -> Self {
        Self {
            config,
            opened: false,
            links: HashMap::new(),
            attached: BTreeMap::new(),
            sessions: BTreeMap::new(),
            unexplained: HashMap::new(),
            waiting: BTreeMap::new(),
            serial: 0,
        }
    }

    /// When a link is next due to be detached or retried.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.values().min().copied()
    }

    /// Whether `session` is one of an address's.
    pub(super) fn is_address_session(&self, session: SessionId) -> bool {
        self.unexplained.contains_key(&session) || self.sessions.values().any(|s| *s == session)
    }
}

/// The broker's node as a target whose configuration is durable (AMQP
/// 1.0 §3.5.5): RabbitMQ 3.x declares the queue it names durable only
/// then, and a non-durable queue loses what it accepted when the broker
/// restarts.
fn durable_target(node: &str) -> ferry_proto::definitions::Target {
    let mut t = ferry_proto::definitions::Target::new(node);
    t.durable = Some(ferry_proto::definitions::TerminusDurability::Configuration);
    t
}

/// The broker's node as a durable source (see [`durable_target`]).
fn durable_source(node: &str) -> ferry_proto::definitions::Source {
    let mut s = ferry_proto::definitions::Source::new(node);
    s.durable = Some(ferry_proto::definitions::TerminusDurability::Configuration);
    s
}

impl Links {
    /// This connection leads to a broker.
    pub(crate) fn set_broker(&mut self, config: BrokerConfig) {
        self.broker = Some(Box::new(BrokerLinks::new(config)));
        self.core.register_broker(self.me.clone());
    }

    /// Whether `link` is one of the broker's links.
    pub(super) fn is_broker_link(&self, link: LinkId) -> bool {
        self.broker
            .as_ref()
            .is_some_and(|b| b.links.contains_key(&link))
    }

    /// The broker's `open` arrived: attach the links of the addresses in
    /// use.
    pub(super) fn broker_opened(&mut self, engine: &mut Connection) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        broker.opened = true;
        let config = &broker.config;
        tracing::info!(
            "broker {} connected ({}:{})",
            config.name,
            config.host,
            config.port
        );
        self.follow_broker_demand(engine);
    }

    /// Attaches the links the mesh now uses of the addresses naming this
    /// broker, and detaches those unused for [`LINGER`] (see
    /// `core::brokered`). Called when the demand changes and at the
    /// instants [`BrokerLinks::poll_timeout`] names.
    pub(super) fn follow_broker_demand(&mut self, engine: &mut Connection) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        if !broker.opened {
            return;
        }
        let now = self.now;
        let prefixes = self.core.prefixes();
        let name = broker.config.name.clone();
        let mut wanted: BTreeMap<Key, String> = BTreeMap::new();
        for (x, BrokerUse { produced, consumed }) in self.core.broker_demand() {
            let Some(entry) = brokered_entry(&prefixes, &x) else {
                continue;
            };
            let (Some(kind), true) = (entry.brokered, entry.broker.as_deref() == Some(&*name))
            else {
                continue;
            };
            let node = broker.config.node(kind, &x);
            if consumed {
                wanted.insert((x.clone(), Dir::From), node.clone());
            }
            if produced {
                wanted.insert((x, Dir::To), node);
            }
        }
        let mut attach = Vec::new();
        for (key, node) in &wanted {
            let retry_later = broker.waiting.get(key).is_some_and(|at| *at > now);
            if broker.attached.contains_key(key) {
                broker.waiting.remove(key); // in use again: no longer lingering
            } else if !retry_later {
                broker.waiting.remove(key);
                attach.push((key.clone(), node.clone()));
            }
        }
        let unused: Vec<Key> = broker
            .attached
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        let mut detach = Vec::new();
        for key in unused {
            let at = *broker.waiting.entry(key.clone()).or_insert(now + LINGER);
            if at <= now {
                broker.waiting.remove(&key);
                detach.push(key);
            }
        }
        // Retries of links no longer in use are dropped.
        let attached = &broker.attached;
        broker
            .waiting
            .retain(|k, _| attached.contains_key(k) || wanted.contains_key(k));
        for ((x, dir), node) in attach {
            let Some(session) = self.broker_session(engine, &x) else {
                if let Some(b) = self.broker.as_mut() {
                    b.waiting.insert((x, dir), now + RETRY);
                }
                continue;
            };
            match dir {
                Dir::From => self.attach_from_broker(engine, session, &x, &node),
                Dir::To => self.attach_to_broker(engine, session, &x, &node),
            }
            tracing::debug!(
                "broker {name}: attached {node} for {x}'s {} (in use in the mesh)",
                dir.serves()
            );
        }
        for (x, dir) in detach {
            self.detach_broker_link(engine, &(x.clone(), dir));
            tracing::debug!(
                "broker {name}: detached {x}'s link for its {} (unused in the mesh for {} s)",
                dir.serves(),
                LINGER.as_secs()
            );
        }
    }

    /// Address `x`'s session with the broker, begun if it has none.
    fn broker_session(&mut self, engine: &mut Connection, x: &str) -> Option<SessionId> {
        let broker = self.broker.as_mut()?;
        if let Some(s) = broker.sessions.get(x) {
            return Some(*s);
        }
        let Ok(session) = engine.begin_session() else {
            let line = format!(
                "broker {}: no session left for {x} (one per address in use, \
                 limits.max_sessions_per_connection); trying again in {} s",
                broker.config.name,
                RETRY.as_secs()
            );
            if self.core.mesh().first_time(&line) {
                tracing::warn!("{line}");
            }
            return None;
        };
        broker.sessions.insert(x.to_owned(), session);
        Some(session)
    }

    /// Detaches one link to or from the broker (what it holds goes back
    /// as when a consumer or producer detaches); the address's session
    /// ends with its last link.
    fn detach_broker_link(&mut self, engine: &mut Connection, key: &Key) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        let Some(link) = broker.attached.remove(key) else {
            return;
        };
        broker.links.remove(&link);
        let last = !broker.attached.keys().any(|(x, _)| *x == key.0);
        let session = last.then(|| broker.sessions.remove(&key.0)).flatten();
        self.detached(link);
        let _ = engine.detach(link, true, None);
        if let Some(s) = session {
            let _ = engine.end_session(s, None);
        }
    }

    /// Detaches every link of address `x` and ends its session; returns
    /// the session.
    fn detach_broker_address(&mut self, engine: &mut Connection, x: &str) -> Option<SessionId> {
        let session = self.broker.as_ref()?.sessions.get(x).copied();
        for dir in [Dir::From, Dir::To] {
            self.detach_broker_link(engine, &(x.to_owned(), dir));
        }
        // An address whose links were all gone already still had its
        // session.
        if let Some(s) = self.broker.as_mut().and_then(|b| b.sessions.remove(x)) {
            let _ = engine.end_session(s, None);
        }
        session
    }

    /// The link producers' messages for `address` go to the broker on.
    fn attach_to_broker(
        &mut self,
        engine: &mut Connection,
        session: ferry_proto::engine::SessionId,
        address: &str,
        node: &str,
    ) {
        let spec = LinkSpec {
            name: self.broker_link_name("to", address),
            role: Role::Sender,
            source: Some(ferry_proto::definitions::Source::new(address)),
            target: Some(TargetTerminus::Target(durable_target(node))),
            snd_settle_mode: SenderSettleMode::Unsettled,
            ..LinkSpec::default()
        };
        let Ok(link) = engine.attach(session, spec) else {
            return;
        };
        let a = self.core.address(address);
        if self.add_consumer_link(link, a.clone(), Hop::Local, None) {
            self.core.local_consumers(&a, true);
        }
        self.broker_link_attached(link, (address.to_owned(), Dir::To));
    }

    /// The link the broker's stored messages for `address` come in on.
    fn attach_from_broker(
        &mut self,
        engine: &mut Connection,
        session: ferry_proto::engine::SessionId,
        address: &str,
        node: &str,
    ) {
        let spec = LinkSpec {
            name: self.broker_link_name("from", address),
            role: Role::Receiver,
            source: Some(durable_source(node)),
            target: Some(TargetTerminus::Target(
                ferry_proto::definitions::Target::new(address),
            )),
            snd_settle_mode: SenderSettleMode::Unsettled,
            rcv_settle_mode: ReceiverSettleMode::First,
            max_message_size: Some(self.max_message_size()),
            tolerate_overshoot: true,
            ..LinkSpec::default()
        };
        let Ok(link) = engine.attach(session, spec) else {
            return;
        };
        let fed = self.core.consumer_address(address.to_string());
        let a = self.core.address(&fed);
        self.add_producer_link(link, a, Hop::Local);
        self.broker_link_attached(link, (address.to_owned(), Dir::From));
    }

    /// A fresh name for a link to or from the broker for `address`.
    fn broker_link_name(&mut self, direction: &str, address: &str) -> String {
        let me = self.core.router_id().to_string();
        let serial = self.broker.as_mut().map_or(0, |b| {
            b.serial += 1;
            b.serial
        });
        format!("ferry:{me}:{direction}:{address}:{serial}")
    }

    fn broker_link_attached(&mut self, link: LinkId, key: Key) {
        if let Some(b) = self.broker.as_mut() {
            b.links.insert(link, key.clone());
            b.attached.insert(key, link);
        }
    }

    /// The broker answered an attach: a receiving link gets its credit
    /// now (the broker counts it from its attach, §2.6.7).
    pub(super) fn broker_attached(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) {
        let refused = match attach.role {
            Role::Sender => attach.source.is_none(),
            Role::Receiver => attach.target.is_none(),
        };
        if refused {
            // A detach with the broker's reason follows.
            return;
        }
        if self.producers.contains_key(&link) {
            self.recredit(engine, link);
        }
    }

    /// The broker detached one of its links (a queue deleted, a node it
    /// refuses, or the broker going away): the address's other link and
    /// its session go too, and both links are attached again after
    /// [`RETRY`] if the address is still in use. The links this router
    /// detached are not its: their answers come to [`Links::detached`] as
    /// for any link.
    pub(super) fn broker_detached(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        error: Option<&Error>,
    ) {
        self.detached(link);
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        let Some(key) = broker.links.remove(&link) else {
            return;
        };
        broker.attached.remove(&key);
        let address = key.0;
        for dir in [Dir::From, Dir::To] {
            broker
                .waiting
                .insert((address.clone(), dir), self.now + RETRY);
        }
        let session = self.detach_broker_address(engine, &address);
        match (error, session) {
            (Some(e), _) => self.broker_refused(engine, &address, Some(e)),
            // RabbitMQ ends the session with the reason and detaches its
            // links without one.
            (None, Some(session)) => {
                if let Some(b) = self.broker.as_mut() {
                    b.unexplained.insert(session, address);
                }
            }
            (None, None) => self.broker_refused(engine, &address, None),
        }
    }

    /// The broker ended one of the addresses' sessions (RabbitMQ 3.x does
    /// when it refuses a link on it).
    pub(super) fn broker_session_ended(
        &mut self,
        engine: &mut Connection,
        session: SessionId,
        error: Option<&Error>,
    ) {
        let Some(broker) = self.broker.as_mut() else {
            return;
        };
        if let Some(address) = broker.unexplained.remove(&session) {
            return self.broker_refused(engine, &address, error);
        }
        let Some(address) = broker
            .sessions
            .iter()
            .find(|(_, s)| **s == session)
            .map(|(x, _)| x.clone())
        else {
            return;
        };
        for dir in [Dir::From, Dir::To] {
            broker
                .waiting
                .insert((address.clone(), dir), self.now + RETRY);
        }
        self.detach_broker_address(engine, &address);
        self.broker_refused(engine, &address, error);
    }

    /// Logs why the broker took an address's links away: once at `warn`,
    /// then at `debug` (a broker refusing a link does so at every retry).
    fn broker_refused(&self, engine: &Connection, address: &str, error: Option<&Error>) {
        if !engine.is_open() {
            // The connection is ending: its end is logged once, by the
            // dialer.
            return;
        }
        let name = self.broker.as_ref().map_or("", |b| b.config.name.as_str());
        let why = error
            .map(|e| match e.description.as_deref() {
                Some(d) => format!("{}: {d}", e.condition),
                None => e.condition.to_string(),
            })
            .unwrap_or_else(|| "no reason given".into());
        let line = format!(
            "broker {name} detached the link for {address} ({why}); attaching it again in {} s if still in use",
            RETRY.as_secs()
        );
        if self.core.mesh().first_time(&line) {
            tracing::warn!("{line}");
        } else {
            tracing::debug!("{line}");
        }
    }
}
