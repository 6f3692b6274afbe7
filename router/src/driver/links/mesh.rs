//! The inter-router side of a connection: recognising the peer router,
//! the control link that carries the routing protocol, and one data link
//! per address towards the peer for every address whose consumers it
//! leads to (a data link is a consumer link of this router and a producer
//! link of the peer, so credit and outcomes cross hops the way they cross
//! a single router).

use std::collections::{HashMap, VecDeque};

use ferry_proto::codec::{Fields, Value};
use ferry_proto::definitions::{SenderSettleMode, Source, Target};
use ferry_proto::engine::SessionId;

use super::*;
use crate::config::Distribution;
use crate::mesh::identity;
use crate::routing::ControlMessage;

/// The address of the control link (AMQP target on the peer).
pub const CONTROL_ADDRESS: &str = "_ferry/control";

/// Credit we grant the peer's control link.
const CONTROL_CREDIT: u32 = 1024;

/// Control messages kept while the control link has no credit.
const CONTROL_BACKLOG: usize = 4096;

/// Link property naming the tree of a multicast data link: the router
/// where its deliveries entered the mesh.
const TREE: &str = "ferry:tree";

/// Data sessions of an inter-router connection over QUIC: each is a QUIC
/// stream, so data links on different lanes never wait for each other's
/// lost packets or large messages (docs/ROUTING.md, *QUIC*).
pub(crate) const QUIC_LANES: usize = 8;

/// The data sessions of a connection and the data links each carries; a
/// data link goes on the lane carrying the fewest when its key is first
/// seen, and on that same lane whenever it is attached again: lanes are
/// independent streams, and a re-attach on another lane could reach the
/// peer before the detach of the link of that name (§2.6.1: names are
/// unique per connection and direction), which the peer refuses.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    sessions: Vec<SessionId>,
    links: Vec<usize>,
    lane_of: HashMap<LinkId, usize>,
    /// The lane of each data link key used on this connection (more than
    /// one lane only), kept after its link is gone so that a re-attach
    /// follows the detach; bounded by [`forget_unused`](Self::forget_unused).
    by_key: HashMap<DataKey, usize>,
}

/// Keys of links gone that [`Lanes`] remembers beyond the live ones before
/// it forgets them (addresses come and go: reply addresses, a tenant's
/// queues). A forgotten key's detach was sent at least this many new keys
/// ago, far longer than its answer takes.
const LANE_MEMORY: usize = 1024;

impl Lanes {
    pub(super) fn add(&mut self, session: SessionId) {
        self.sessions.push(session);
        self.links.push(0);
    }

    pub(super) fn first(&self) -> Option<SessionId> {
        self.sessions.first().copied()
    }

    /// The lane of data link `key`: the one it had on this connection,
    /// else the one with the fewest data links (the first of equals).
    fn lane_for(&mut self, key: &DataKey) -> (usize, SessionId) {
        if self.sessions.len() == 1 {
            return (0, self.sessions[0]); // one stream: nothing to overtake
        }
        let links = &self.links;
        let lane = *self.by_key.entry(key.clone()).or_insert_with(|| {
            (0..links.len())
                .min_by_key(|&i| links[i])
                .expect("lanes exist once the peer is known")
        });
        (lane, self.sessions[lane])
    }

    fn carry(&mut self, lane: usize, link: LinkId) {
        self.links[lane] += 1;
        self.lane_of.insert(link, lane);
    }

    /// Forgets the lanes of keys no live link has (`live`: the data links
    /// by key) once more than [`LANE_MEMORY`] of them are remembered.
    fn forget_unused(&mut self, live: &HashMap<DataKey, LinkId>) {
        if self.by_key.len() > live.len() + LANE_MEMORY {
            self.by_key.retain(|key, _| live.contains_key(key));
        }
    }

    fn drop_link(&mut self, link: LinkId) {
        if let Some(lane) = self.lane_of.remove(&link) {
            self.links[lane] -= 1;
        }
    }
}

/// Accepts the peer's link of pre-settled router-to-router messages
/// (control, interest) as its receiver, with `credit`; returns whether it
/// could.
pub(super) fn accept_settled(
    engine: &mut Connection,
    link: LinkId,
    attach: &Attach,
    credit: u32,
) -> bool {
    let spec = LinkSpec {
        name: attach.name.to_string(),
        role: Role::Receiver,
        source: attach.source.clone(),
        target: attach.target.clone(),
        snd_settle_mode: SenderSettleMode::Settled,
        ..LinkSpec::default()
    };
    engine.accept_attach(link, spec).is_ok() && engine.flow(link, credit, false).is_ok()
}

/// Settles `released` what waits on consumer link `c` (never sent: nobody
/// has it), dropping the later frames held with it; returns how many.
pub(super) fn release_held(c: &mut Consumer) -> usize {
    let mut released = 0;
    for h in std::mem::take(&mut c.held) {
        if let Held::Start(Forwarded {
            origin: Some(o), ..
        }) = h
        {
            o.settle(DeliveryState::Released);
            released += 1;
        }
    }
    released
}

/// Which data link: its address and, for multicast, its tree.
pub(super) type DataKey = (String, Option<RouterId>);

/// The tree of the peer's multicast data link being attached, if it names
/// one.
pub(super) fn tree_of(attach: &Attach) -> Option<RouterId> {
    let tree = attach.properties.as_ref()?.get(TREE)?.as_text()?;
    Some(RouterId::from(tree))
}

/// What a connection is expected to be, from where it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnKind {
    /// Accepted on a `normal` listener: a client; routers are refused.
    Client,
    /// Accepted on an `inter-router` listener: must be a router;
    /// `authenticated`: over TLS with a verified client certificate,
    /// which must name the router.
    InterRouterListener { authenticated: bool },
    /// Dialed by a `[[connector]]` with this cost: must be a router;
    /// `authenticated`: over TLS, and the server's certificate must name
    /// the router.
    Connector { cost: u32, authenticated: bool },
    /// Dialed for a `[[broker]]`: a message broker, whose links this
    /// router attaches (see `links::broker`).
    Broker,
    /// Accepted on an `edge` listener: must be an edge router;
    /// `authenticated` as for an inter-router listener.
    EdgeListener { authenticated: bool },
    /// Dialed by an edge router's `role = "edge"` connector: its uplink,
    /// which must reach an interior router's edge listener;
    /// `authenticated` as for a connector (see `links::edge`).
    Uplink { authenticated: bool },
}

impl ConnKind {
    /// Whether the peer's certificate must name the router it claims to be.
    pub(super) fn authenticated(self) -> bool {
        match self {
            Self::Client | Self::Broker => false,
            Self::InterRouterListener { authenticated }
            | Self::Connector { authenticated, .. }
            | Self::EdgeListener { authenticated }
            | Self::Uplink { authenticated } => authenticated,
        }
    }
}

/// The two ends of a connection, as far as its socket tells.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ends {
    /// This router's address.
    pub local: Option<std::net::SocketAddr>,
    /// The peer's.
    pub peer: Option<std::net::SocketAddr>,
    /// Whether the connection runs over QUIC.
    pub quic: bool,
}

/// An address for a log line (`?` when the socket did not tell).
fn addr(a: Option<std::net::SocketAddr>) -> String {
    a.map_or_else(|| "?".to_owned(), |a| a.to_string())
}

/// Why an inter-router connection did not come up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// In the operator's words.
    pub why: String,
    /// Whether it is logged already (the connector need not say it again).
    pub logged: bool,
}

/// Per-connection inter-router state: what every connection has (its
/// kind and ends), and what only a connection to another router uses,
/// boxed and made only for those (an idle client's connection does not
/// carry it: about 480 bytes).
#[derive(Debug)]
pub(crate) struct MeshState {
    kind: ConnKind,
    /// The names in the peer's verified certificate. Boxed, as `failure`:
    /// a client's connection seldom has either.
    cert: Option<Box<crate::tls::CertNames>>,
    /// The socket's two addresses.
    ends: Ends,
    /// Why the connection was refused (by us, or by the peer's close).
    failure: Option<Box<Failure>>,
    /// `None` on a client's connection (and a broker's, until used).
    router: Option<Box<RouterSide>>,
}

/// What a connection to another router (inter-router or edge) holds.
#[derive(Debug, Default)]
pub(super) struct RouterSide {
    pub(super) peer: Option<RouterId>,
    /// The data sessions ("lanes"): one over TCP, [`QUIC_LANES`] over
    /// QUIC, where each session is a stream of its own.
    pub(super) lanes: Lanes,
    pub(super) control_out: Option<LinkId>,
    pub(super) control_in: Option<LinkId>,
    pub(super) backlog: VecDeque<ControlMessage>,
    /// Our data links to the peer, by address and, for multicast, tree
    /// (an edge router's uplink: its links to the interior router).
    pub(super) data: HashMap<DataKey, LinkId>,
    /// The connection ended because the peer fell silent.
    pub(super) silent: bool,
    /// The router at the other end of an edge connection, once it is up.
    pub(super) edge: Option<RouterId>,
    /// An edge router's uplink: its links from the interior router, by
    /// address.
    pub(super) edge_in: HashMap<String, LinkId>,
    /// An edge router's uplink: the interior router that opened it, until
    /// it is seen to keep it open.
    pub(super) uplink_opened: Option<RouterId>,
    /// Edge connection: the link the interior router tells the edge on
    /// which of its addresses have a consumer in the mesh (see
    /// `links::interest`): ours on an interior router, the peer's on an edge.
    pub(super) interest_link: Option<LinkId>,
    /// Interior router: what the edge was last told, by address, and the
    /// addresses it is yet to be told about (coalesced).
    pub(super) interest: HashMap<String, bool>,
    pub(super) interest_pending: std::collections::BTreeSet<String>,
    /// Edge router's uplink: the addresses the interior said have a
    /// consumer in the mesh.
    pub(super) wanted: std::collections::HashSet<String>,
    /// Edge router's uplink: its relay links, by relay address (one per
    /// vhost, see `links::edge`).
    pub(super) relays: std::collections::BTreeMap<String, LinkId>,
    /// Interior router's edge connection: the vhost of each relay link
    /// that carries a vhost's clients' anonymous deliveries.
    pub(super) relay_vhosts: HashMap<LinkId, String>,
}

/// The router side of a connection that has none.
static NO_ROUTER: std::sync::LazyLock<RouterSide> = std::sync::LazyLock::new(RouterSide::default);

impl MeshState {
    pub(crate) fn new(kind: ConnKind, cert: Option<crate::tls::CertNames>, ends: Ends) -> Self {
        let router = !matches!(kind, ConnKind::Client | ConnKind::Broker);
        Self {
            kind,
            cert: cert.map(Box::new),
            ends,
            failure: None,
            router: router.then(Box::default),
        }
    }

    /// Its router side (empty on a client's connection).
    pub(super) fn r(&self) -> &RouterSide {
        self.router.as_deref().unwrap_or(&NO_ROUTER)
    }

    /// Its router side, made if there was none.
    pub(super) fn r_mut(&mut self) -> &mut RouterSide {
        self.router.get_or_insert_with(Box::default)
    }

    /// Its router side, if it has one: for forgetting what it may hold.
    pub(super) fn r_if(&mut self) -> Option<&mut RouterSide> {
        self.router.as_deref_mut()
    }

    /// The router at the other end of an edge connection, once it is up.
    pub(crate) fn edge(&self) -> Option<&RouterId> {
        self.r().edge.as_ref()
    }

    /// Whether this is an edge router's uplink (up or not).
    pub(super) fn is_uplink(&self) -> bool {
        matches!(self.kind, ConnKind::Uplink { .. })
    }

    /// The kind of connection.
    pub(super) fn kind(&self) -> ConnKind {
        self.kind
    }

    /// The socket's two addresses.
    pub(super) fn ends(&self) -> Ends {
        self.ends
    }

    /// The connection ended because nothing came from the peer for the
    /// idle timeout ([`NEIGHBOUR_SILENCE`](crate::mesh::NEIGHBOUR_SILENCE)
    /// on inter-router connections).
    pub(crate) fn set_silent(&mut self) {
        self.r_mut().silent = true;
    }

    /// Whether it did.
    pub(crate) fn silent(&self) -> bool {
        self.r().silent
    }

    /// The peer router, on an inter-router connection that is up.
    pub(crate) fn peer(&self) -> Option<&RouterId> {
        self.r().peer.as_ref()
    }

    /// Why the connection was refused, if it was.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.failure.as_deref()
    }

    /// The connection closed: the peer's close error, if it refused us.
    pub(crate) fn closed(&mut self, error: Option<&Error>, by_peer: bool) {
        if let (Some(error), true, None, None) = (error, by_peer, &self.failure, &self.r().peer) {
            let why = error
                .description
                .as_deref()
                .map_or_else(|| error.condition.to_string(), str::to_owned);
            self.failure = Some(Box::new(Failure {
                why: format!("refused by the router there: {why}"),
                logged: false,
            }));
        }
    }

    /// Whether this router dialed the connection (a `[[connector]]`).
    pub(crate) fn dialed(&self) -> bool {
        matches!(
            self.kind,
            ConnKind::Connector { .. } | ConnKind::Uplink { .. }
        )
    }

    /// The peer's address, if the socket told.
    pub(crate) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.ends.peer
    }

    /// The routing protocol's links (out, in), once attached.
    pub(crate) fn control_links(&self) -> [Option<LinkId>; 2] {
        [self.r().control_out, self.r().control_in]
    }

    pub(crate) fn is_control_out(&self, link: LinkId) -> bool {
        self.r().control_out == Some(link)
    }

    pub(crate) fn is_control_in(&self, link: LinkId) -> bool {
        self.r().control_in == Some(link)
    }

    /// Whether `link` is the peer's control link being attached.
    pub(crate) fn is_control_attach(&self, attach: &Attach) -> bool {
        self.r().peer.is_some()
            && matches!(&attach.target, Some(TargetTerminus::Target(t))
                if t.address.as_deref() == Some(CONTROL_ADDRESS))
    }
}

impl Links {
    /// The peer's open arrived: decide what the connection is. On an
    /// authenticated inter-router connection the peer's certificate
    /// (verified against the profile's `ca` in the handshake) must name
    /// the router id its open claims (docs/ROUTING.md, trust model).
    pub(super) fn opened(
        &mut self,
        engine: &mut Connection,
        properties: Option<&Fields>,
        hostname: Option<&str>,
    ) {
        let peer = identity::peer(properties);
        // Where routers authenticate, a stranger is refused as one.
        let unwelcome = if self.mesh.kind.authenticated() {
            condition::UNAUTHORIZED_ACCESS
        } else {
            condition::NOT_ALLOWED
        };
        let cost = match (self.mesh.kind, &peer) {
            (ConnKind::Broker, _) => return self.broker_opened(engine),
            (ConnKind::EdgeListener { .. } | ConnKind::Uplink { .. }, _) => {
                return self.edge_opened(engine, peer);
            }
            (ConnKind::Client, Some(p)) if p.edge => {
                return self.refuse(
                    engine,
                    condition::NOT_ALLOWED,
                    format!(
                        "edge router {} connected to a normal listener; use an edge listener",
                        p.id
                    ),
                );
            }
            (ConnKind::InterRouterListener { .. }, Some(p)) if p.edge => {
                return self.refuse(
                    engine,
                    unwelcome,
                    format!(
                        "edge router {} connected to an inter-router listener; use an edge listener",
                        p.id
                    ),
                );
            }
            (ConnKind::Client, None) => return self.admit_client(engine, hostname),
            (ConnKind::Client, Some(p)) => {
                return self.refuse(
                    engine,
                    condition::NOT_ALLOWED,
                    format!(
                        "router {} connected to a normal listener; use an inter-router listener",
                        p.id
                    ),
                );
            }
            (ConnKind::Connector { .. }, None) => {
                return self.refuse(
                    engine,
                    unwelcome,
                    "what answered is not a Ferry router's inter-router listener (its open \
                     names no router; a normal listener's port?)"
                        .into(),
                );
            }
            (ConnKind::InterRouterListener { .. }, None) => {
                return self.refuse(
                    engine,
                    unwelcome,
                    "only Ferry routers may use an inter-router listener".into(),
                );
            }
            (ConnKind::Connector { cost, .. }, Some(_)) => cost,
            (ConnKind::InterRouterListener { .. }, Some(p)) => p.cost.unwrap_or(1),
        };
        let peer = peer.expect("matched above");
        if !self.proven(engine, &peer) {
            return;
        }
        let mesh = self.core.mesh();
        if let Err(e) = mesh.connect(peer.id.clone(), cost, self.me.clone()) {
            return self.refuse(engine, condition::NOT_ALLOWED, e.to_string());
        }
        let (way, at) = match self.mesh.kind {
            ConnKind::Connector { .. } => ("to", self.mesh.ends.peer),
            _ => ("from", self.mesh.ends.peer),
        };
        let tls = match (self.mesh.ends.quic, self.mesh.kind.authenticated()) {
            (true, _) => ", QUIC",
            (false, true) => ", TLS",
            (false, false) => "",
        };
        tracing::info!(
            "neighbour {} connected ({way} {}, cost {cost}{tls})",
            peer.id,
            addr(at)
        );
        self.mesh.r_mut().peer = Some(peer.id);
        let lanes = if self.mesh.ends.quic { QUIC_LANES } else { 1 };
        for _ in 0..lanes {
            let Ok(session) = engine.begin_session() else {
                break;
            };
            self.mesh.r_mut().lanes.add(session);
        }
        let Some(session) = self.mesh.r().lanes.first() else {
            return;
        };
        // Control traffic has its own session, marked priority: its frames
        // go out ahead of queued data, so a saturated data path cannot
        // delay a HELLO into a false neighbour loss.
        let control = match engine.begin_session() {
            Ok(control) => {
                let _ = engine.set_priority(control);
                control
            }
            Err(_) => session,
        };
        let spec = LinkSpec {
            name: format!("ferry:control:{}", mesh.id()),
            role: Role::Sender,
            source: Some(Source::default()),
            target: Some(TargetTerminus::Target(Target::new(CONTROL_ADDRESS))),
            snd_settle_mode: SenderSettleMode::Settled,
            ..LinkSpec::default()
        };
        self.mesh.r_mut().control_out = engine.attach(control, spec).ok();
        self.sync_data_links(engine);
    }

    /// Whether the peer router is who its open says: on an authenticated
    /// connection its certificate must name the id it claims, and it must
    /// not have this router's id. If not, the connection is refused.
    pub(super) fn proven(&mut self, engine: &mut Connection, peer: &identity::PeerRouter) -> bool {
        if self.mesh.kind.authenticated()
            && !self
                .mesh
                .cert
                .as_ref()
                .is_some_and(|c| c.names(peer.id.as_str()))
        {
            let named = self
                .mesh
                .cert
                .as_ref()
                .and_then(|c| c.identity())
                .unwrap_or("nothing")
                .to_string();
            self.refuse(
                engine,
                condition::UNAUTHORIZED_ACCESS,
                format!(
                    "a peer claims to be router {} but its certificate names {named}",
                    peer.id
                ),
            );
            return false;
        }
        if &peer.id == self.core.mesh().id() {
            self.same_id(engine, peer);
            return false;
        }
        true
    }

    /// Refuses the inter-router connection with `why`. A connector's
    /// refusals are told by the connector, once per change (see
    /// `mesh::connector`); a listener's once per peer address and reason,
    /// since the peer's connector retries every few seconds.
    pub(super) fn refuse(
        &mut self,
        engine: &mut Connection,
        condition: ErrorCondition,
        why: String,
    ) {
        if !self.mesh.dialed() {
            let from = addr(self.mesh.ends.peer);
            let ip = self.mesh.ends.peer.map(|a| a.ip().to_string());
            let key = format!("refused {}: {why}", ip.as_deref().unwrap_or("?"));
            let what = match self.mesh.kind {
                ConnKind::EdgeListener { .. } => "edge",
                _ => "inter-router",
            };
            if self.core.mesh().first_time(&key) {
                tracing::warn!("{what} connection from {from} refused: {why}");
            } else {
                tracing::debug!("{what} connection from {from} refused again: {why}");
            }
        }
        engine.close(Some(Error::new(condition, why.as_str())));
        self.mesh.failure = Some(Box::new(Failure { why, logged: false }));
    }

    /// The peer router has this router's id: either it is this very router
    /// (a connector dials one of its own listeners) or another router was
    /// given the same id. Said once, at `error`, with both addresses.
    fn same_id(&mut self, engine: &mut Connection, peer: &identity::PeerRouter) {
        let mesh = self.core.mesh();
        let (local, remote) = (addr(self.mesh.ends.local), addr(self.mesh.ends.peer));
        let dialed = self.mesh.dialed();
        let (key, why, told) = if peer.instance == mesh.instance() {
            (
                format!("itself {}", peer.instance),
                format!(
                    "this router connected to itself ({local} and {remote}): \
                     a connector dials one of its own inter-router listeners"
                ),
                "this router connected to itself".to_owned(),
            )
        } else {
            let (this, other) = if dialed {
                (
                    format!("this one (dialing from {local})"),
                    format!("the one at {remote}"),
                )
            } else {
                (
                    format!("this one (at {local})"),
                    format!("the one connecting from {remote}"),
                )
            };
            (
                format!("same id {}", peer.instance),
                format!(
                    "two routers share the id {}: {this} and {other}; \
                     give each router its own [router] id",
                    peer.id
                ),
                format!("router id {} is taken: this router has it", peer.id),
            )
        };
        if mesh.first_time(&key) {
            tracing::error!("{why}");
        } else {
            tracing::debug!("{why} (again)");
        }
        engine.close(Some(Error::new(condition::NOT_ALLOWED, told.as_str())));
        self.mesh.failure = Some(Box::new(Failure { why, logged: true }));
    }

    /// The peer ended what an inter-router connection cannot do without
    /// (its control link, or a session): without a control link the
    /// neighbour would only age out while the connection stayed up, and
    /// without the data session no data link could be attached. Closing
    /// the connection takes the link down at once at both ends (the
    /// connector dials again).
    pub(super) fn mesh_broken(&mut self, engine: &mut Connection, why: &str) {
        if !engine.is_open() || engine.is_finished() {
            return; // closing or gone already: its links end with it
        }
        match &self.mesh.r().peer {
            Some(peer) => tracing::warn!("{why}; closing the connection to neighbour {peer}"),
            None => tracing::warn!("{why}; closing the inter-router connection"),
        }
        engine.close(Some(Error::new(condition::PRECONDITION_FAILED, why)));
    }

    /// Accepts the peer's control link (called from attach).
    pub(super) fn accept_control(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) {
        if accept_settled(engine, link, attach, CONTROL_CREDIT) {
            self.mesh.r_mut().control_in = Some(link);
        }
    }

    /// A control message from the peer.
    pub(super) fn control_transfer(&mut self, engine: &mut Connection, t: IncomingTransfer) {
        let Some(peer) = self.mesh.r().peer.clone() else {
            return;
        };
        // Control messages are small and single-frame; anything else is
        // not ours.
        if !t.more && !t.aborted {
            let size = t.payload.len();
            match ControlMessage::decode(t.payload) {
                Ok(msg) => self.core.mesh().control_received(peer, msg, size),
                Err(e) => tracing::warn!("bad control message from neighbour {peer}: {e}"),
            }
        }
        if engine.credit(t.link) < CONTROL_CREDIT / 2 {
            let _ = engine.flow(t.link, CONTROL_CREDIT, false);
        }
    }

    /// Sends a control message to the peer, or keeps it until credit comes.
    pub(super) fn send_control(&mut self, engine: &mut Connection, msg: ControlMessage) {
        if self.mesh.r().backlog.len() >= CONTROL_BACKLOG {
            self.mesh.r_mut().backlog.pop_front();
        }
        self.mesh.r_mut().backlog.push_back(msg);
        self.flush_control(engine);
    }

    pub(super) fn control_credit(&mut self, engine: &mut Connection, _credit: u32) {
        self.flush_control(engine);
    }

    fn flush_control(&mut self, engine: &mut Connection) {
        let Some(link) = self.mesh.r().control_out else {
            return;
        };
        while engine.credit(link) > 0 {
            let Some(msg) = self.mesh.r_mut().backlog.pop_front() else {
                return;
            };
            let tag = self.tag();
            if engine.send(link, tag, msg.encode(), true, false).is_err() {
                return;
            }
        }
    }

    /// Makes our data links to the peer match the routing table: for
    /// anycast, one per address with consumers on a router the peer is our
    /// next hop to; for multicast, one per address and tree (origin router)
    /// in which the peer is our child leading to consumers.
    pub(super) fn sync_data_links(&mut self, engine: &mut Connection) {
        if self.mesh.is_uplink() {
            return self.sync_uplink(engine);
        }
        let (Some(peer), Some(_)) = (self.mesh.r().peer.clone(), self.mesh.r().lanes.first())
        else {
            return;
        };
        let table = self.core.mesh().table();
        let mut wanted: std::collections::BTreeSet<DataKey> = Default::default();
        for (address, mut routers) in table.addresses() {
            if address.starts_with(crate::core::DEMAND_PREFIX) {
                continue; // a note for the brokers' routers: no traffic
            }
            let local = self.core.lookup(address);
            let distribution = local
                .as_ref()
                .map_or_else(|| self.core.distribution(address), |a| a.distribution());
            if distribution == Distribution::Multicast {
                let Some(local) = local else {
                    continue; // no producer here: no tree goes through
                };
                for origin in table.routers() {
                    let tree = (origin != table.me()).then_some(origin);
                    if local.has_producers_of(tree)
                        && table.multicast_next(origin, address).contains(&peer)
                    {
                        wanted.insert((address.to_string(), Some(origin.clone())));
                    }
                }
            } else if routers.any(|d| table.next_hop(d) == Some(&peer)) {
                wanted.insert((address.to_string(), None));
            }
        }
        let mut gone: Vec<LinkId> = self
            .mesh
            .r()
            .data
            .iter()
            .filter(|(k, l)| !wanted.contains(*k) && !self.is_retiring(**l))
            .map(|(_, l)| *l)
            .collect();
        gone.sort();
        for link in gone {
            self.retire(engine, link);
        }
        for key in wanted {
            if let Some(&link) = self.mesh.r().data.get(&key) {
                if self.is_retiring(link) {
                    self.unretire(link, key.1);
                }
                continue;
            }
            self.attach_data_link(engine, key, Hop::Neighbor(peer.clone()));
        }
    }

    /// Attaches our data link `key` to the peer, a consumer of its address
    /// leading `to` the peer.
    pub(super) fn attach_data_link(&mut self, engine: &mut Connection, key: DataKey, to: Hop) {
        let (address, tree) = &key;
        let me = self.core.mesh().id();
        let (name, properties) = match tree {
            None => (format!("ferry:data:{me}:{address}"), None),
            Some(origin) => (
                format!("ferry:tree:{origin}:{me}:{address}"),
                Some(Fields(vec![(
                    Symbol::from_static(TREE),
                    Value::String(origin.as_str().into()),
                )])),
            ),
        };
        let spec = LinkSpec {
            name,
            role: Role::Sender,
            source: Some(Source::new(address.as_str())),
            target: Some(TargetTerminus::Target(Target::new(address.as_str()))),
            snd_settle_mode: SenderSettleMode::Mixed,
            properties,
            ..LinkSpec::default()
        };
        let (lane, session) = self.mesh.r_mut().lanes.lane_for(&key);
        let Ok(link) = engine.attach(session, spec) else {
            return;
        };
        self.mesh.r_mut().lanes.carry(lane, link);
        let a = self.core.address(address);
        self.add_consumer_link(link, a, to, tree.clone());
        self.mesh.r_mut().data.insert(key, link);
    }

    /// Forgets a data link that went away.
    pub(super) fn data_link_gone(&mut self, link: LinkId) {
        let Some(r) = self.mesh.r_if() else {
            return;
        };
        r.data.retain(|_, l| *l != link);
        r.lanes.drop_link(link);
        r.lanes.forget_unused(&r.data);
    }

    /// Whether `link` is a data link waiting for its outcomes before it
    /// is detached.
    pub(super) fn is_retiring(&self, link: LinkId) -> bool {
        self.consumers.get(&link).is_some_and(|c| c.retiring)
    }

    /// Takes a data link the routing no longer wants out of use: nothing
    /// more is routed to it, and what waits on it for credit (never sent)
    /// is released; it is detached only once every delivery sent on it
    /// has its outcome ([`finish_retiring`](Self::finish_retiring)).
    ///
    /// Detaching at once would settle those deliveries `modified` while
    /// the peer's outcomes for them may be on their way: the peer's
    /// consumer may have accepted them, and the withdrawal of its address
    /// that made this link unwanted travels on the priority control
    /// session, ahead of the dispositions it followed (and a connection
    /// task may read the one before the other). Once our detach is sent
    /// the engine forgets the link's unsettled deliveries, and the peer,
    /// detaching its end, drops the outcomes it has not sent yet (AMQP 1.0
    /// §2.6.6, §2.7.7: a closed link's unsettled state is gone). A
    /// delivery's outcome always comes while the connection lasts (the
    /// peer settles what it cannot deliver, `released` or `modified`), so
    /// the wait is bounded by the deliveries in flight; if the connection
    /// drops first they are settled `modified` as for any lost link.
    pub(super) fn retire(&mut self, engine: &mut Connection, link: LinkId) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        c.retiring = true;
        c.dormant = false; // out of its address either way
        c.address.remove_consumer(self.me.id, link);
        let released = release_held(c);
        let address = c.address.clone();
        self.core.release(&address);
        if released > 0 {
            tracing::debug!(
                "data link to {} retired (the routes changed): {released} deliveries not yet sent on it released",
                address.name()
            );
        }
        self.finish_retiring(engine, link);
    }

    /// Takes retiring data link `link` back into use: the routes want it
    /// again before the outcomes it waited for came (a consumer that went
    /// and came back at once, a route that flapped). Detaching it and
    /// attaching another would leave the address without a path
    /// meanwhile, and the messages routed then would be released.
    pub(super) fn unretire(&mut self, link: LinkId, tree: Option<RouterId>) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        c.retiring = false;
        // Its address may have been dropped as unused meanwhile.
        let a = self.core.address(c.address.name());
        a.add_consumer(self.me.clone(), link, c.to.clone(), tree);
        if self.congested {
            a.set_congested(self.me.id, link, true);
        }
        // Nothing waits on it (retiring released that): all its credit is
        // the address's again.
        a.adjust_consumer_credit(
            &self.core.mesh().table(),
            self.me.id,
            link,
            i64::from(c.reported),
        );
        tracing::debug!(
            "data link for {} wanted again before it retired: back in use",
            a.name()
        );
        c.address = a;
    }

    /// Detaches retiring data link `link` if nothing sent on it is waiting
    /// for its outcome or its later frames; returns whether it did.
    pub(super) fn finish_retiring(&mut self, engine: &mut Connection, link: LinkId) -> bool {
        let done = self
            .consumers
            .get(&link)
            .is_some_and(|c| c.retiring && c.outstanding.is_empty() && c.streams.is_empty());
        if done {
            let _ = engine.detach(link, true, None);
            self.detached(link);
        }
        done
    }

    /// After an outcome or a last frame on `link`: a retiring link with
    /// nothing left in flight is detached, and the data links are synced
    /// again (its address may be wanted again by now).
    pub(super) fn check_retiring(&mut self, engine: &mut Connection, link: LinkId) {
        let Some(address) = self
            .consumers
            .get(&link)
            .filter(|c| c.retiring)
            .map(|c| c.address.clone())
        else {
            return;
        };
        if !self.finish_retiring(engine, link) {
            return;
        }
        if self.mesh.is_uplink() {
            self.sync_uplink_address(engine, address.name());
        } else {
            self.sync_data_links(engine);
        }
    }
}
