//! A connection this router dialed to a message broker (`[[broker]]`).
//!
//! Once the broker's `open` arrives the router attaches, per brokered
//! address `X` naming this broker (as Qpid Dispatch Router's auto-links
//! do, for addresses configured one by one):
//!
//! - a sending link, target the broker's node for `X`: in the address
//!   table a *consumer* of `X` whose credit is the broker's (AMQP 1.0
//!   §2.6.7), so producers of `X` anywhere in the mesh get credit only
//!   as far as the broker grants it, and their deliveries' outcomes are
//!   the broker's (`accepted`: the broker stored it, §3.4.2);
//! - a receiving link, source the same node: a *producer* of
//!   `_brokered/X` (see `core::brokered`), given credit as consumers of
//!   `X` anywhere in the mesh grant it, like any producer; each
//!   consumer's outcome goes back to the broker as the disposition of
//!   the broker's delivery (released or modified ones are redelivered
//!   by the broker, §3.4.4, §3.4.5).
//!
//! Everything else is the client connection's code: the links are a
//! consumer and a producer like a client's. When the connection ends,
//! what was sent to the broker unsettled is settled to its producers
//! `modified{delivery-failed}` (fate unknown: resend), what waited for
//! the link `released`; the broker redelivers what it had sent us
//! unsettled (its own rule for a lost link). A link the broker detaches
//! ends the connection, so that the dialer attaches everything afresh.

use super::*;
use crate::config::{BrokerConfig, Brokered};

/// The broker side of a connection to a broker.
pub(crate) struct BrokerLinks {
    /// The `[[broker]]` entry.
    config: BrokerConfig,
    /// The links attached to the broker, with the address each serves.
    links: HashMap<LinkId, String>,
}

impl BrokerLinks {
    pub(crate) fn new(config: BrokerConfig) -> Self {
        Self {
            config,
            links: HashMap::new(),
        }
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
    }

    /// Whether `link` is one of the broker's links.
    pub(super) fn is_broker_link(&self, link: LinkId) -> bool {
        self.broker
            .as_ref()
            .is_some_and(|b| b.links.contains_key(&link))
    }

    /// The broker's `open` arrived: attach the links of every address
    /// naming it.
    pub(super) fn broker_opened(&mut self, engine: &mut Connection) {
        let Some(broker) = self.broker.as_ref() else {
            return;
        };
        let name = broker.config.name.clone();
        let config = broker.config.clone();
        let Ok(session) = engine.begin_session() else {
            return;
        };
        let prefixes = self.core.prefixes();
        let mut served = Vec::new();
        for entry in prefixes.iter() {
            let (Some(kind), Some(b)) = (entry.brokered, &entry.broker) else {
                continue;
            };
            if *b != name {
                continue;
            }
            let node = config.node(kind, &entry.prefix);
            self.attach_to_broker(engine, session, &entry.prefix, &node);
            self.attach_from_broker(engine, session, &entry.prefix, &node, kind);
            served.push(entry.prefix.clone());
        }
        tracing::info!(
            "broker {name} connected ({}:{}); attached {} address{}: {}",
            config.host,
            config.port,
            served.len(),
            if served.len() == 1 { "" } else { "es" },
            served.join(", ")
        );
    }

    /// The link producers' messages for `address` go to the broker on.
    fn attach_to_broker(
        &mut self,
        engine: &mut Connection,
        session: ferry_proto::engine::SessionId,
        address: &str,
        node: &str,
    ) {
        let me = self.core.router_id().to_string();
        let spec = LinkSpec {
            name: format!("ferry:{me}:to:{address}"),
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
        if let Some(b) = self.broker.as_mut() {
            b.links.insert(link, address.to_string());
        }
    }

    /// The link the broker's stored messages for `address` come in on.
    fn attach_from_broker(
        &mut self,
        engine: &mut Connection,
        session: ferry_proto::engine::SessionId,
        address: &str,
        node: &str,
        kind: Brokered,
    ) {
        let me = self.core.router_id().to_string();
        let spec = LinkSpec {
            name: format!("ferry:{me}:from:{address}"),
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
        debug_assert!(fed != address || kind == Brokered::Queue);
        let a = self.core.address(&fed);
        self.add_producer_link(link, a, Hop::Local);
        if let Some(b) = self.broker.as_mut() {
            b.links.insert(link, address.to_string());
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

    /// The broker detached one of its links (a queue deleted, refused,
    /// or the broker going away): the connection ends, and the dialer
    /// attaches everything again on a fresh one.
    pub(super) fn broker_detached(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        error: Option<&Error>,
    ) {
        let address = self
            .broker
            .as_mut()
            .and_then(|b| b.links.remove(&link))
            .unwrap_or_default();
        let name = self
            .broker
            .as_ref()
            .map(|b| b.config.name.clone())
            .unwrap_or_default();
        let why = error
            .and_then(|e| e.description.as_deref().map(str::to_owned))
            .or_else(|| error.map(|e| e.condition.to_string()))
            .unwrap_or_else(|| "no reason given".into());
        self.detached(link);
        if !engine.is_open() {
            // The connection is ending: its end is logged once, by the
            // dialer.
            return;
        }
        // Said once at `warn`: a broker refusing a link does so at every
        // redial.
        let line = format!("broker {name} detached the link for {address}: {why}; reconnecting");
        if self.core.mesh().first_time(&line) {
            tracing::warn!("{line}");
        } else {
            tracing::debug!("{line}");
        }
        engine.close(Some(Error::new(
            condition::INTERNAL_ERROR,
            "a link to the broker was detached",
        )));
    }
}
