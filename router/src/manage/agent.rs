//! The management agent: one task per router, a consumer of `$management`
//! (this router's clients only: not advertised) and of
//! `_topo/0/<router-id>/$management` (advertised, so a request from a
//! client of any router of the mesh is routed here). It answers each
//! request to its `reply-to`, routed like any message, pre-settled.
//!
//! Who may send to these addresses is decided where the request enters
//! the mesh (see `driver::links::tenancy`): a request arriving from a
//! neighbour was let in by the neighbour, authenticated as a router.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::definitions::{DeliveryState, Rejected, SequenceNo};
use ferry_proto::engine::LinkId;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::answer::{answer, entity_type};
use super::change::Changes;
use super::entities::{Counters, Snapshot};
use super::request::{BadRequest, Operation, Refused, ReplyTo, Request, Response, parse};
use crate::config::Config;
use crate::core::{
    Address, ConnHandle, ConnReport, Core, DYNAMIC_PREFIX, EDGE_RELAY, Forwarded, Hop, Reach,
    StreamKey, ToConn,
};
use crate::listener::Listeners;
use crate::security::Security;
use crate::shutdown::Shutdown;

/// The management node of this router, for its own clients.
pub const LOCAL_NODE: &str = "$management";

/// The management node of router `id`, for any client of the mesh.
pub fn topo_node(id: &str) -> String {
    format!("_topo/0/{id}/$management")
}

/// Whether `address` is a management node (this router's or another's).
pub fn is_management(address: &str) -> bool {
    address == LOCAL_NODE
        || address
            .strip_prefix("_topo/0/")
            .and_then(|rest| rest.strip_suffix("/$management"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Requests the agent takes at once (its consumer credit on each node).
const CREDIT: i64 = 16;
/// How long a connection has to report before it is left out.
const REPORT_WAIT: Duration = Duration::from_secs(2);
/// How long a response waits for its reply address to have a consumer
/// with credit (a client's dynamic reply address may still be on its way
/// across the mesh).
const REPLY_WAIT: Duration = Duration::from_secs(3);

/// The management agent.
pub struct Agent {
    core: Arc<Core>,
    me: ConnHandle,
    config: Arc<Config>,
    inbox: crate::core::Inbox<ToConn>,
    nodes: [(LinkId, Arc<Address>); 2],
    started: Instant,
    /// Listeners, connectors and prefixes changed at run time.
    changes: Changes,
    replier: Arc<Replier>,
    /// Responses being sent at most at once (each waits for credit up to
    /// [`REPLY_WAIT`]); past it the agent waits before taking a request.
    replying: Arc<tokio::sync::Semaphore>,
}

impl Agent {
    /// Registers the agent's nodes with the core.
    pub fn new(
        core: Arc<Core>,
        security: Arc<Security>,
        config: Config,
        listeners: Listeners,
    ) -> Self {
        let (tx, inbox) = crate::core::inbox();
        let me = ConnHandle {
            id: core.next_conn_id(),
            tx,
        };
        let local = (LinkId::from_raw(1), core.address(LOCAL_NODE));
        let topo = (
            LinkId::from_raw(2),
            core.address(&topo_node(core.router_id())),
        );
        for (link, address) in [&local, &topo] {
            address.add_consumer(me.clone(), *link, Hop::Local, None);
            address.adjust_consumer_credit(&core.mesh().table(), me.id, *link, CREDIT);
        }
        // Only the mesh-wide node is advertised.
        core.local_consumers(&topo.1, true);
        let conn = me.id;
        let config = Arc::new(config);
        Self {
            core: core.clone(),
            me,
            inbox,
            nodes: [local, topo],
            started: Instant::now(),
            changes: Changes::new(core.clone(), security, config.clone(), listeners),
            config,
            replier: Arc::new(Replier {
                core,
                conn,
                next_delivery: std::sync::atomic::AtomicU32::new(0),
            }),
            replying: Arc::new(tokio::sync::Semaphore::new(CREDIT as usize)),
        }
    }

    /// Serves requests until `shutdown`.
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let msg = tokio::select! {
                m = self.inbox.recv() => m,
                () = shutdown.triggered() => None,
            };
            let Some(msg) = msg else { break };
            if let ToConn::Deliver { link, delivery } = msg {
                self.request(delivery, &shutdown).await;
                if let Some((_, address)) = self.nodes.iter().find(|(l, _)| *l == link) {
                    address.adjust_consumer_credit(&self.core.mesh().table(), self.me.id, link, 1);
                }
            }
            // Later frames of a request too large for one are dropped
            // (the request was refused on its first); nothing else is
            // addressed to the agent.
        }
        for (link, address) in &self.nodes {
            address.remove_consumer(self.me.id, *link);
        }
    }

    async fn request(&mut self, f: Forwarded, shutdown: &Shutdown) {
        if f.more {
            if let Some(o) = f.origin {
                o.settle(DeliveryState::Rejected(Rejected::default()));
            }
            tracing::debug!("management request in several frames refused");
            return;
        }
        if let Some(o) = f.origin {
            o.settle(DeliveryState::Accepted);
        }
        let (reply, response) = match parse(f.payload) {
            Ok(req) => {
                let response = self.answer(&req, shutdown).await;
                (req.reply, response)
            }
            Err(Refused {
                reply: Some(reply),
                why: BadRequest::Invalid(why),
            }) => (reply, Response::status(400, why)),
            Err(refused) => {
                tracing::debug!("management request not answered: {}", refused.why);
                return;
            }
        };
        let Ok(slot) = self.replying.clone().acquire_owned().await else {
            return;
        };
        let replier = self.replier.clone();
        tokio::spawn(
            async move {
                replier.reply(reply, response).await;
                drop(slot);
            }
            .in_current_span(),
        );
    }

    async fn answer(&mut self, req: &Request, shutdown: &Shutdown) -> Response {
        match req.operation {
            Operation::Create | Operation::Delete | Operation::Update => match entity_type(req) {
                Ok(t) => self.changes.apply(t, req, shutdown).await,
                Err(e) => e,
            },
            _ => answer(req, &self.snapshot().await),
        }
    }

    /// Asks every connection for its report and reads the core.
    async fn snapshot(&self) -> Snapshot {
        let conns = reports(&self.core).await;
        let stats = &self.core.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Snapshot {
            config: self.config.clone(),
            listeners: self.changes.listeners(),
            connectors: self.changes.connectors(),
            prefixes: self.changes.prefixes(),
            conns,
            addresses: self.core.address_reports(),
            table: self.core.mesh().table(),
            neighbours: self.core.mesh().neighbour_conns(),
            counters: Counters {
                uptime_secs: self.started.elapsed().as_secs(),
                rss_bytes: rss_bytes(),
                dropped_presettled: load(&stats.dropped_presettled),
                released_no_route: load(&stats.released_no_route),
                expired: load(&stats.expired),
                stuck: self.core.metrics().stuck(),
                worker_threads: tokio::runtime::Handle::current().metrics().num_workers() as u64,
            },
        }
    }
}

/// Sends responses, each in a task of its own: waiting for one reply
/// address to have credit holds up no other request.
struct Replier {
    core: Arc<Core>,
    /// The agent's connection id, for the deliveries' keys.
    conn: crate::core::ConnId,
    next_delivery: std::sync::atomic::AtomicU32,
}

impl Replier {
    /// Sends the response to `reply_to`, waiting a little for a consumer
    /// with credit; dropped (and logged) if none comes.
    async fn reply(self: Arc<Self>, reply: ReplyTo, r: Response) {
        let reply_to = reply.address.as_str();
        let payload = r.encode(&reply);
        let give_up = Instant::now() + REPLY_WAIT;
        loop {
            if self.send(reply_to, &payload) {
                return;
            }
            if Instant::now() >= give_up {
                tracing::debug!("management response to {reply_to} dropped: no consumer");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn send(&self, reply_to: &str, payload: &Bytes) -> bool {
        let table = self.core.mesh().table();
        let route = |a: Arc<Address>| a.route(&table, &Hop::Local, None, Reach::Tree).targets;
        let mut targets = self.reply_address(reply_to).map(route).unwrap_or_default();
        if targets.is_empty() && self.core.is_edge() {
            // A request that came up from the mesh: the answer (its `to`
            // is `reply_to`) goes back through the uplink's relay.
            targets = self.core.lookup(EDGE_RELAY).map(route).unwrap_or_default();
        }
        if targets.is_empty() {
            return false;
        }
        let n = self
            .next_delivery
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = StreamKey {
            conn: self.conn,
            link: LinkId::from_raw(0),
            delivery: SequenceNo(n),
        };
        for (conn, link, _) in targets {
            conn.post(ToConn::Deliver {
                link,
                delivery: Forwarded {
                    payload: payload.clone(),
                    more: false,
                    settled: true,
                    origin: None,
                    key,
                    expires: None,
                    charge: None,
                    retry: None,
                    wait: false,
                    priority: ferry_proto::message::Header::DEFAULT_PRIORITY,
                },
            });
        }
        true
    }

    /// The address `reply_to` names. Under a policy a client's addresses
    /// are scoped to its vhost, which the request does not carry: a
    /// dynamic address (unique in the mesh) is found by its unscoped name.
    fn reply_address(&self, reply_to: &str) -> Option<Arc<Address>> {
        if let Some(a) = self.core.lookup(reply_to) {
            return Some(a);
        }
        if self.core.policy().is_none() || !reply_to.starts_with(DYNAMIC_PREFIX) {
            return None;
        }
        let scoped = self
            .core
            .address_names()
            .into_iter()
            .find(|name| crate::policy::unscoped(name) == reply_to)?;
        self.core.lookup(&scoped)
    }
}

/// Every connection's report: each connection task is asked
/// ([`ToConn::Report`]) and answers from its own state; one that has not
/// answered within [`REPORT_WAIT`] (or has ended) is left out.
pub async fn reports(core: &Core) -> Vec<ConnReport> {
    let mut pending = Vec::new();
    for conn in core.connections() {
        let (tx, rx) = oneshot::channel();
        conn.post(ToConn::Report(tx));
        pending.push(rx);
    }
    let deadline = tokio::time::Instant::now() + REPORT_WAIT;
    let mut conns = Vec::new();
    for rx in pending {
        if let Ok(Ok(report)) = tokio::time::timeout_at(deadline, rx).await {
            conns.push(report);
        }
    }
    conns
}

/// The process's resident memory, from `/proc/self/status` (0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_addresses_are_recognised_exactly() {
        assert!(is_management("$management"));
        assert!(is_management("_topo/0/B/$management"));
        for other in [
            "$management2",
            "_topo/0//$management",
            "_topo/0/B/x/$management",
            "_topo/1/B/$management",
            "orders",
        ] {
            assert!(!is_management(other), "{other}");
        }
    }
}
