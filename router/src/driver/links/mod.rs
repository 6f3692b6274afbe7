//! The links of one connection and what the router does with them:
//! producer links (the client sends, we receive) route each delivery to
//! consumers; consumer links (we send) deliver what producers route to
//! them and pass the outcome back.

mod attach;
mod broker;
mod consumer;
mod credit;
mod edge;
mod expiry;
mod interest;
mod login;
mod mesh;
mod producer;
mod report;
mod tenancy;

pub(crate) use login::Login;
pub use mesh::Failure;
pub(crate) use mesh::QUIC_LANES;
pub(crate) use mesh::{ConnKind, Ends, MeshState};

use expiry::{Expiry, expired_outcome, expiry};

use std::collections::VecDeque;

// A fast seeded hasher: these maps are looked up several times per
// delivery, where SipHash showed in profiles.
use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::Symbol;
use ferry_proto::definitions::{
    Attach, DeliveryState, Error, ErrorCondition, ReceiverSettleMode, Rejected, Role,
    SenderSettleMode, SequenceNo, TargetTerminus, condition,
};
use ferry_proto::engine::{Connection, Event, IncomingTransfer, LinkId, LinkSpec, SmallMap};

use crate::core::{
    Address, ByteBudget, Charge, ConnHandle, Core, Credited, Fanout, Forwarded, Hop, MAX_OVERTAKES,
    Origin, Reach, Retry, Routed, RoutingFields, StreamKey, Targets, ToConn, delivery_failed,
    routing_fields, trace,
};
use crate::metrics::{ConnRole, LinkDirection, Open};
use crate::routing::RouterId;

/// The condition a message is rejected with when its time to live has
/// passed before it could be delivered.
pub const EXPIRED: ErrorCondition = Symbol::from_static("ferry:expired");

struct Producer {
    /// `None`: an anonymous sender, routed by each message's `to`.
    address: Option<Arc<Address>>,
    /// A link from a neighbour: the router where its deliveries entered
    /// the mesh (for multicast, the tree they follow).
    tree: Option<RouterId>,
    /// What crossed the link, for management.
    counts: report::Counts,
    /// The credit last granted (a neighbour's data link asks again when it
    /// has used half: see `Links::credit_window`).
    grant: u32,
    /// Counted in `ferry_links_open` while it lives.
    _open: Open,
}

/// A producer delivery arriving over several frames.
enum Inbound {
    /// Being forwarded frame by frame to these consumers.
    Streaming {
        key: StreamKey,
        targets: Targets,
        /// The delivery's priority (its later frames keep it).
        priority: u8,
    },
    /// Anonymous sender: held until `to` can be read.
    Buffering { buf: BytesMut, settled: bool },
    /// Refused (no route, expired): the rest is dropped.
    Discard,
}

struct Consumer {
    address: Arc<Address>,
    /// Where the link leads: a client, or a neighbour router.
    to: Hop,
    /// The link credit last reported to the address, less sends since.
    reported: u32,
    /// Unsettled deliveries sent to the client, by our delivery id: how
    /// to re-forward each if released, and when it was sent.
    outstanding: HashMap<SequenceNo, (Origin, Option<Retry>, Instant)>,
    /// Deliveries being sent over several frames: `None` once dropped.
    streams: SmallMap<StreamKey, Option<SequenceNo>>,
    /// Deliveries waiting for the link: for its credit (see
    /// `Forwarded::wait`; at most what was promised upstream beyond the
    /// link's credit), or for another delivery being streamed on it to
    /// end (at most the credit the address gave for the link); with the
    /// later frames of those sent over several. Every frame here stays
    /// charged to its producer's byte budget. In order of arrival; the
    /// next delivery to go is chosen by priority ([`next_held`]).
    held: VecDeque<Held>,
    /// Deliveries sent from `held` in a row ahead of an older one of
    /// lower priority (see [`next_held`]).
    overtakes: u32,
    /// Since when deliveries in `held` have waited for the link's credit
    /// with nothing sent (`None`: none waits for it; see [`PROMISED_WAIT`]).
    starved_since: Option<Instant>,
    /// A data link the routing no longer wants: it takes no new
    /// deliveries and is detached once every delivery sent on it has its
    /// outcome (see `Links::retire`).
    retiring: bool,
    /// An edge's uplink link whose address has no consumer in the mesh:
    /// out of its address until the interior says it has one
    /// (`links::interest`).
    dormant: bool,
    /// What crossed the link, for management.
    counts: report::Counts,
    /// Deliveries unsettled for longer than `[limits] stuck_delivery_ms`.
    stuck: report::Stuck,
    /// Counted in `ferry_links_open` while it lives.
    _open: Open,
}

/// What waits on a consumer link for credit.
enum Held {
    /// A delivery (or its first frame).
    Start(Forwarded),
    /// A later frame of a delivery held here, keeping its producer's byte
    /// budget charged while it waits.
    More {
        frame: Frame,
        _charge: Option<Charge>,
    },
}

/// A later frame of a delivery sent over several ([`ToConn::Continue`]).
struct Frame {
    key: StreamKey,
    payload: Bytes,
    more: bool,
    aborted: bool,
}

/// The link state of one connection.
pub(crate) struct Links {
    core: Arc<Core>,
    me: ConnHandle,
    producers: SmallMap<LinkId, Producer>,
    /// Boxed: most connections have a handful at most, kept in a vector.
    consumers: SmallMap<LinkId, Box<Consumer>>,
    inbound: HashMap<(LinkId, SequenceNo), Inbound>,
    /// Delivery tags handed out so far.
    next_tag: u64,
    /// Where delivery tags are cut from: one allocation per
    /// [`TAG_BATCH`] tags rather than one per delivery.
    tags: BytesMut,
    /// Producer links whose credit to top up once the queued events are
    /// handled: the engine has already counted transfers whose events are
    /// still queued, so topping up in between would grant twice.
    recredit_pending: Vec<LinkId>,
    /// Bytes this connection's producers have in flight in the router.
    /// Made with the first producer link: a connection that only
    /// receives has none.
    pub(crate) budget: Option<Arc<ByteBudget>>,
    /// Inter-router state: the peer router, control and data links.
    mesh: MeshState,
    /// The time given with the input being handled.
    now: Instant,
    /// Producer links short of credit, and when to ask for it again.
    rechecks: SmallMap<LinkId, Instant>,

    /// The login in progress (a listener offering more than ANONYMOUS),
    /// dropped once the peer is in.
    login: Option<Box<Login>>,
    /// Who the peer authenticated as (`None`: not authenticated).
    user: Option<String>,
    /// A client's vhost and permissions, under a policy.
    tenancy: Option<Box<tenancy::Tenancy>>,
    /// What management shows of the connection.
    about: report::About,
    /// When to look for stuck deliveries next (`None`: none unsettled).
    stuck_check: Option<Instant>,
    /// When to look next for deliveries waiting too long for a consumer
    /// link's credit (`None`: none waits).
    starved_check: Option<Instant>,
    /// This connection's stuck deliveries, counted in the metrics.
    stuck_total: u64,
    /// The peer is not taking what is sent to it (see
    /// [`set_congested`](Self::set_congested)).
    congested: bool,
    /// The counters of the addresses anonymous senders' unsettled
    /// deliveries went to, until their outcomes come back.
    anonymous_outcomes: HashMap<(LinkId, SequenceNo), Arc<crate::metrics::DeliveryCounters>>,
    /// Whose connection this is, for the metrics' `role` label.
    role: ConnRole,
    /// On a connection to a broker: its links.
    broker: Option<Box<broker::BrokerLinks>>,
    /// Counted in `ferry_connections_open` while it lives.
    _open: Open,
}

/// Delivery tags cut from one buffer.
const TAG_BATCH: usize = 1024;

/// How long deliveries promised credit (`Forwarded::wait`) wait on a
/// consumer link whose credit does not come, with nothing sent on it,
/// before they go to another consumer or back to their producer released
/// (never sent, so safe to send again). The credit they wait for is
/// normally on its way (a receiver may lower link credit at any time,
/// AMQP 1.0 §2.6.7, and what was sent meanwhile is promised); but where
/// the route changed and the link's receiver has no credit to give, it
/// never came: a 1,000-router simulation held one delivery so for good
/// while its producer's later messages went another way.
const PROMISED_WAIT: Duration = Duration::from_secs(2);

/// The byte budget in `slot`, made there the first time (see
/// [`Links::budget`](Links#structfield.budget)); a function of the two
/// fields so that it can be called while others are borrowed.
fn budget_in<'a>(slot: &'a mut Option<Arc<ByteBudget>>, core: &Core) -> &'a Arc<ByteBudget> {
    slot.get_or_insert_with(|| {
        ByteBudget::within(
            core.limits().max_in_flight_bytes_per_producer,
            Some(core.buffered().clone()),
        )
    })
}

fn refusal(condition: ErrorCondition, description: &str) -> Error {
    Error::new(condition, description)
}

impl Links {
    pub(crate) fn new(
        core: Arc<Core>,
        me: ConnHandle,
        kind: ConnKind,
        cert: Option<crate::tls::CertNames>,
        ends: Ends,
        tls: bool,
        login: Option<Login>,
    ) -> Self {
        core.register(me.clone());
        let role = match kind {
            // An edge router's traffic is its clients'.
            ConnKind::Client | ConnKind::Broker | ConnKind::EdgeListener { .. } => ConnRole::Normal,
            ConnKind::InterRouterListener { .. }
            | ConnKind::Connector { .. }
            | ConnKind::Uplink { .. } => ConnRole::InterRouter,
        };
        Self {
            role,
            broker: None,
            _open: core.metrics().connection_opened(role),
            mesh: MeshState::new(kind, cert, ends),
            login: login.map(Box::new),
            user: None,
            tenancy: None,
            about: report::About::new(tls),
            stuck_check: None,
            starved_check: None,
            stuck_total: 0,
            anonymous_outcomes: HashMap::new(),
            congested: false,
            now: Instant::now(),
            me,
            producers: SmallMap::new(),
            consumers: SmallMap::new(),
            inbound: HashMap::new(),
            next_tag: 0,
            tags: BytesMut::new(),
            recredit_pending: Vec::new(),
            rechecks: SmallMap::new(),

            budget: None,
            core,
        }
    }

    /// The producers' byte budget, made with the first producer.
    fn budget(&mut self) -> &Arc<ByteBudget> {
        budget_in(&mut self.budget, &self.core)
    }

    /// A fresh delivery tag (8 bytes, big-endian count): a slice of a
    /// shared buffer, so tags cost no allocation each.
    fn tag(&mut self) -> Bytes {
        if self.tags.capacity() < 8 {
            self.tags = BytesMut::with_capacity(8 * TAG_BATCH);
        }
        self.next_tag += 1;
        self.tags.extend_from_slice(&self.next_tag.to_be_bytes());
        self.tags.split().freeze()
    }

    fn window(&self) -> u32 {
        self.core.limits().link_credit_window
    }

    /// The most credit a producer link on this connection may hold: a
    /// client's, `link_credit_window`; a neighbour's data link carries
    /// what every producer behind it sends, so it may hold all the credit
    /// its address's consumers grant it (its budget bounds it). Capped at
    /// the window, a mesh gave a thousand producers behind one hop a
    /// quarter of the consumer's credit to share.
    fn credit_window(&self) -> u32 {
        match self.hop() {
            Hop::Neighbor(_) | Hop::Edge(_) => u32::MAX,
            Hop::Local => self.window(),
        }
    }

    /// Handles every event the engine has queued.
    pub(crate) fn handle_events(&mut self, engine: &mut Connection, now: Instant) {
        self.now = now;
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::AttachRequested { link, attach, .. } => {
                    if self.mesh.is_control_attach(&attach)
                        && let Some(session) = engine.link_session(link)
                    {
                        // The peer's control session: what we send on it
                        // (the attach's answer, credit) goes ahead of data
                        // too.
                        let _ = engine.set_priority(session);
                    }
                    self.attach(engine, link, &attach)
                }
                Event::Credit { link, credit, .. } if self.mesh.is_control_out(link) => {
                    self.control_credit(engine, credit)
                }
                Event::Credit { link, .. }
                    if !self.mesh.is_uplink() && self.mesh.r().interest_link == Some(link) =>
                {
                    self.flush_interest(engine)
                }
                Event::Credit {
                    link,
                    credit,
                    granted,
                    drain,
                } => self.consumer_credit(engine, link, credit, granted, drain),
                Event::Available { link, available } => self.producer_wants(link, available),
                Event::Transfer(t) if self.mesh.is_control_in(t.link) => {
                    self.control_transfer(engine, t)
                }
                Event::Transfer(t) if self.is_interest_in(t.link) => {
                    self.interest_transfer(engine, t)
                }
                Event::Transfer(t) => self.transfer(engine, t),
                Event::Disposition {
                    link,
                    delivery,
                    state,
                    settled,
                } => self.consumer_disposition(engine, link, delivery, state, settled),
                Event::Detached { link, .. }
                    if self.mesh.is_control_in(link) || self.mesh.is_control_out(link) =>
                {
                    self.mesh_broken(engine, "the routing control link was detached")
                }
                Event::SessionEnded { .. } if self.is_inter_router() => {
                    self.mesh_broken(engine, "a session of the inter-router connection ended")
                }
                Event::SessionEnded { .. } if self.mesh.is_uplink() => {
                    self.mesh_broken(engine, "the interior router ended the uplink's session")
                }
                Event::SessionEnded { session, error }
                    if self
                        .broker
                        .as_ref()
                        .is_some_and(|b| b.is_address_session(session)) =>
                {
                    self.broker_session_ended(engine, session, error.as_ref())
                }
                Event::Detached { link, error, .. } if self.is_broker_link(link) => {
                    self.broker_detached(engine, link, error.as_ref())
                }
                Event::Detached { link, .. } => self.detached(link),
                Event::Opened {
                    properties,
                    hostname,
                    container_id,
                    ..
                } => {
                    self.about.container = container_id.to_string();
                    self.opened(engine, properties.as_ref(), hostname.as_deref())
                }
                Event::Attached { link, attach } if self.is_broker_link(link) => {
                    self.broker_attached(engine, link, &attach)
                }
                // The interior answered an uplink's receiving link: it gets
                // its credit now.
                Event::Attached { link, .. } if self.is_from_interior(link) => {
                    self.recredit(engine, link)
                }
                Event::Attached { .. } => {}
                Event::SaslInit {
                    mechanism,
                    initial_response,
                    ..
                } => match &mut self.login {
                    Some(login) => login.init(engine, &mechanism, initial_response),
                    None => {
                        let _ = engine.sasl_refuse(
                            ferry_proto::definitions::SaslCode::Auth,
                            "no login expected",
                        );
                    }
                },
                Event::SaslResponse { response } => {
                    if let Some(login) = &mut self.login {
                        login.response(engine, &response);
                    }
                }
                Event::Authenticated { user, mechanism } => {
                    self.login = None;
                    if let Some(user) = &user {
                        tracing::debug!(user, mechanism, "logged in");
                    }
                    self.user = user;
                    self.about.mechanism = crate::config::SUPPORTED_SASL_MECHANISMS
                        .into_iter()
                        .find(|m| *m == mechanism);
                }
                Event::Closed { error, by_peer } => {
                    self.log_close(error.as_ref(), by_peer);
                    self.mesh.closed(error.as_ref(), by_peer);
                }
                Event::SessionBegun { .. } | Event::SessionEnded { .. } | Event::Drained { .. } => {
                }
            }
        }
        for link in std::mem::take(&mut self.recredit_pending) {
            self.recredit(engine, link);
        }
        self.announce_uplink(engine);
    }

    /// Handles a message from another connection task.
    pub(crate) fn handle_message(&mut self, engine: &mut Connection, msg: ToConn, now: Instant) {
        self.now = now;
        match msg {
            ToConn::Deliver { link, delivery } => self.deliver(engine, link, delivery),
            ToConn::Continue {
                link,
                key,
                payload,
                more,
                aborted,
                charge,
                priority: _,
            } => {
                let frame = Frame {
                    key,
                    payload,
                    more,
                    aborted,
                };
                self.continue_delivery(engine, link, frame, charge)
            }
            ToConn::Settle {
                link,
                delivery,
                state,
            } => {
                if let Some(p) = self.producers.get_mut(&link) {
                    p.counts.outcome(Some(&state));
                    // Counted here, on the producer's task: the consumer's
                    // never touches the producer's counters.
                    match &p.address {
                        Some(a) => a.counters(self.role).settled(&state),
                        None => {
                            if let Some(c) = self.anonymous_outcomes.remove(&(link, delivery)) {
                                c.settled(&state);
                            }
                        }
                    }
                    let _ = engine.disposition(link, delivery, Some(state), true);
                }
            }
            ToConn::Recredit { link } => {
                self.recredit(engine, link);
                self.tell_interest(engine, link);
            }
            ToConn::Demand { link, waiting } => {
                if self.consumers.contains_key(&link) {
                    let _ = engine.offer(link, u32::from(waiting));
                }
            }
            ToConn::Control(msg) => self.send_control(engine, msg),
            ToConn::PathsChanged => self.sync_data_links(engine),
            ToConn::UplinkAddress { address } => self.sync_uplink_address(engine, &address),
            ToConn::PolicyChanged => self.policy_changed(engine),
            ToConn::BrokerDemand => self.follow_broker_demand(engine),
            ToConn::Report(reply) => {
                let _ = reply.send(self.report(engine));
            }
        }
    }

    /// See [`Endpoint::poll_login`](super::Endpoint::poll_login).
    pub(crate) fn poll_login(&mut self) -> Option<crate::security::PlainCheck> {
        self.login.as_mut()?.poll_check()
    }

    /// See [`Endpoint::login_checked`](super::Endpoint::login_checked).
    pub(crate) fn login_checked(&mut self, engine: &mut Connection, ok: bool) {
        if let Some(login) = &mut self.login {
            login.checked(engine, ok);
        }
    }

    /// Why the connection was refused, if it was (see [`Failure`]).
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.mesh.failure()
    }

    /// The neighbour the connection served, if it came up as one.
    pub(crate) fn neighbour(&self) -> Option<&RouterId> {
        self.mesh.peer()
    }

    /// The router at the other end of an edge connection, if it came up.
    pub(crate) fn edge_peer(&self) -> Option<&RouterId> {
        self.mesh.edge()
    }

    /// Whether the peer is another router.
    pub(crate) fn is_inter_router(&self) -> bool {
        self.mesh.peer().is_some()
    }

    /// Logs the error a connection was closed with, if any: by a router
    /// peer, a warning (something is wrong with the mesh); otherwise for
    /// debugging (a client's, or one this router closed with, which its
    /// reason logged already, or the engine did for a protocol error).
    fn log_close(&self, error: Option<&Error>, by_peer: bool) {
        let Some(e) = error else {
            return;
        };
        let id = self.me.id.0;
        let error = match e.description.as_deref() {
            Some(why) => format!("{}: {why}", e.condition),
            None => e.condition.to_string(),
        };
        match (by_peer, self.mesh.peer().or(self.mesh.edge())) {
            (true, Some(router)) => {
                tracing::warn!("connection {id}: router {router} closed it with {error}")
            }
            (true, None) => tracing::debug!("connection {id}: the peer closed it with {error}"),
            (false, _) => tracing::debug!("connection {id}: closed with {error}"),
        }
    }

    /// Whether the peer is another router, a neighbour or across an edge
    /// connection.
    pub(crate) fn is_router_peer(&self) -> bool {
        self.mesh.peer().is_some() || self.mesh.edge().is_some()
    }

    /// Registers consumer link `link` of `address`, leading `to` (for a
    /// multicast data link, of `tree`); returns whether it is the
    /// address's first consumer of this router's own (see
    /// `Address::add_consumer`).
    fn add_consumer_link(
        &mut self,
        link: LinkId,
        address: Arc<Address>,
        to: Hop,
        tree: Option<RouterId>,
    ) -> bool {
        let first = address.add_consumer(self.me.clone(), link, to.clone(), tree);
        if self.congested {
            address.set_congested(self.me.id, link, true);
        }
        self.consumers.insert(
            link,
            Box::new(Consumer {
                address,
                to,
                reported: 0,
                outstanding: Default::default(),
                streams: Default::default(),
                held: VecDeque::new(),
                overtakes: 0,
                starved_since: None,
                retiring: false,
                dormant: false,
                counts: Default::default(),
                stuck: Default::default(),
                _open: self.core.metrics().link_opened(LinkDirection::Out),
            }),
        );
        first
    }

    /// Registers producer link `link` of `address`, a link this router
    /// attached (to a broker, an edge router's uplink) whose deliveries
    /// come `from` there and start their way through the mesh here.
    fn add_producer_link(&mut self, link: LinkId, address: Arc<Address>, from: Hop) {
        let budget = Some(self.budget().clone());
        if address.add_producer(self.me.clone(), link, from, None, budget, self.now) {
            self.core.tree_producers_changed(&address);
        }
        self.producers.insert(
            link,
            Producer {
                address: Some(address),
                tree: None,
                counts: Default::default(),
                grant: 0,
                _open: self.core.metrics().link_opened(LinkDirection::In),
            },
        );
    }

    /// Which side this connection's links lead to.
    fn hop(&self) -> Hop {
        match (self.mesh.peer(), self.mesh.edge()) {
            (Some(p), _) => Hop::Neighbor(p.clone()),
            (None, Some(e)) => Hop::Edge(e.clone()),
            (None, None) => Hop::Local,
        }
    }

    /// The connection's output is (or no longer is) backlogged: its peer
    /// is not reading what is sent. Meanwhile its consumer links promise
    /// producers no credit (what they hold still comes, and waits in this
    /// task's inbox, charged to their byte budgets): a consumer that stops
    /// reading holds about the credit producers had when it stopped, not
    /// every producer's budget. Called on every turn of the driver; acts
    /// on a change only.
    pub(crate) fn set_congested(&mut self, congested: bool) {
        if congested == self.congested {
            return;
        }
        self.congested = congested;
        let mut links: Vec<LinkId> = self.consumers.keys().copied().collect();
        links.sort();
        for link in links {
            let c = &self.consumers[&link];
            c.address.set_congested(self.me.id, link, congested);
        }
    }

    /// The engine ended the connection: nothing came from the peer for its
    /// idle timeout.
    pub(crate) fn went_silent(&mut self) {
        self.mesh.set_silent();
    }

    /// Releases everything this connection holds in the core.
    pub(crate) fn teardown(&mut self, now: Instant) {
        self.now = now;
        let mut links: Vec<LinkId> = self
            .producers
            .keys()
            .chain(self.consumers.keys())
            .copied()
            .collect();
        links.sort();
        for link in links {
            self.detached(link);
        }
        if let Some(peer) = self.mesh.peer()
            && self.core.mesh().disconnect(peer, self.me.id)
        {
            if self.mesh.silent() {
                tracing::warn!(
                    "neighbour {peer} disconnected: nothing heard from it for {} ms \
                     (its process stopped or hung, or the path to it is cut)",
                    crate::mesh::NEIGHBOUR_SILENCE.as_millis()
                );
            } else {
                tracing::info!("neighbour {peer} disconnected");
            }
        }
        self.edge_teardown();
        self.set_stuck_total(0);
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.core.unregister(self.me.id);
        if self.broker.is_some() {
            self.core.unregister_broker(self.me.id);
        }
    }
}
