//! One simulated router: the real forwarding core, the real routing
//! protocol state machine and the real sans-IO connection endpoints, with
//! no sockets, tasks or clock. The simulator plays the part of the async
//! driver (`ferry_router::driver`) and of the routing task
//! (`ferry_router::mesh::control::run`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ferry_router::config::{
    AddressConfig, Config, ConnectorConfig, Distribution, GroupConfig, Limits, ListenerConfig,
    LogConfig, Role, RouterConfig, RouterMode, VhostConfig,
};
use ferry_router::core::Core;
use ferry_router::driver::Endpoint;
use ferry_router::mesh::RoutingInput;
use ferry_router::mesh::control::{apply, publish};
use ferry_router::routing::{Auth, ControlMessage, RouterId, Routing, RoutingConfig, RoutingTable};
use tokio::sync::mpsc::UnboundedReceiver;

/// The address prefix the simulator configures as multicast.
pub const MULTICAST_PREFIX: &str = "multicast";
/// The address prefix the simulator configures as closest.
pub const CLOSEST_PREFIX: &str = "closest";

/// The configuration of simulated router `id`.
pub fn router_config(
    id: &str,
    limits: &Limits,
    connectors: Vec<ConnectorConfig>,
    vhosts: &[String],
) -> Config {
    let everything = || vec!["*".to_string()];
    let vhosts = vhosts
        .iter()
        .map(|name| VhostConfig {
            name: name.clone(),
            max_connections: None,
            max_connections_per_user: None,
            max_message_size: None,
            max_links_per_connection: None,
            groups: vec![GroupConfig {
                name: "everyone".into(),
                users: vec![ferry_router::policy::ANONYMOUS.into()],
                send: everything(),
                receive: everything(),
                dynamic_reply: true,
                ..Default::default()
            }],
        })
        .collect();
    let listener = |port, role| ListenerConfig::new("sim", port, role);
    Config {
        router: RouterConfig {
            id: id.to_string(),
            mode: RouterMode::Interior,
            default_vhost: None,
        },
        listeners: vec![
            listener(5672, Role::Normal),
            listener(5673, Role::InterRouter),
        ],
        connectors,
        brokers: Vec::new(),
        addresses: vec![
            AddressConfig {
                prefix: MULTICAST_PREFIX.into(),
                distribution: Distribution::Multicast,
                brokered: None,
                broker: None,
            },
            AddressConfig {
                prefix: CLOSEST_PREFIX.into(),
                distribution: Distribution::Closest,
                brokered: None,
                broker: None,
            },
        ],
        limits: limits.clone(),
        log: LogConfig::default(),
        tls: Vec::new(),
        auth: Default::default(),
        vhosts,
        management: Default::default(),
        http: None,
    }
}

/// The configuration of simulated edge router `id`: `[router] mode =
/// "edge"`, a client listener only, and `connectors` (each `role =
/// "edge"`, in order of preference) for its uplink.
pub fn edge_config(
    id: &str,
    limits: &Limits,
    connectors: Vec<ConnectorConfig>,
    vhosts: &[String],
) -> Config {
    let mut config = router_config(id, limits, connectors, vhosts);
    config.router.mode = RouterMode::Edge;
    config.listeners.retain(|l| l.role == Role::Normal);
    config
}

/// The port of an interior router's edge listener (`role = "edge"`).
pub const EDGE_PORT: u16 = 5674;

/// A running router.
#[derive(Debug)]
pub struct Node {
    /// The forwarding core.
    pub core: Arc<Core>,
    /// The routing protocol.
    pub routing: Routing,
    input: UnboundedReceiver<RoutingInput>,
    /// Its connections, by the simulator's connection id.
    pub endpoints: BTreeMap<u64, Endpoint>,
    /// The table last published.
    pub table: Arc<RoutingTable>,
    /// The span its work runs in (`router{id=A}`), as each task of the
    /// real router runs in it: log lines of the router code say which
    /// router they are about.
    pub span: tracing::Span,
    /// Under the hostile-router fault: the link-state and address records
    /// of other routers this router received, as they came (genuine
    /// signatures included), for the fault to replay. `None`: not kept.
    pub capture: Option<Vec<ControlMessage>>,
}

/// What one [`Node::pump_routing`] did.
#[derive(Debug, Default)]
pub struct RoutingReport {
    /// Inputs applied (neighbour up/down, control messages, addresses).
    pub inputs: usize,
    /// Neighbours that came up or went down, for the log.
    pub notes: Vec<String>,
    /// A new table was published: how it differs from the previous one.
    pub new_table: Option<String>,
    /// Control messages received from neighbours, by kind: (kind, bytes
    /// of the encoded message).
    pub control: Vec<(&'static str, usize)>,
}

/// The kind of a control message, for the protocol's cost report.
pub fn control_kind(msg: &ferry_router::routing::ControlMessage) -> &'static str {
    use ferry_router::routing::ControlMessage as M;
    match msg {
        M::Hello { .. } => "HELLO",
        M::RouterAdvert { .. } => "RA",
        M::RouterDigest { .. } => "RAD",
        M::LinkState { .. } => "LS",
        M::LinkStateRequest { .. } => "LSR",
        M::MobileAddresses { .. } => "MA",
        M::MobileAddressRequest { .. } => "MAR",
    }
}

impl Node {
    /// Starts router `config` as instance `instance` at `now`. With
    /// `auth` (a mesh that signs: [`crate::pki`]) its routing signs the
    /// records it originates and believes only records their originator
    /// signed.
    pub fn start(
        config: &Config,
        instance: u64,
        routing: RoutingConfig,
        auth: Option<Auth>,
        now: Instant,
    ) -> Self {
        let span = ferry_router::router_span(&config.router.id);
        let _in = span.clone().entered();
        let core = Arc::new(Core::with_instance(config, instance));
        let input = core
            .mesh()
            .take_input()
            .expect("a fresh core's routing input is there to take");
        let mut routing = Routing::new(core.mesh().id().clone(), instance, routing, now);
        if let Some(auth) = auth {
            routing = routing.with_auth(auth);
        }
        publish(&mut routing, &core);
        let table = core.mesh().table();
        Self {
            core,
            routing,
            input,
            endpoints: BTreeMap::new(),
            table,
            span,
            capture: None,
        }
    }

    /// Feeds every queued routing input to the protocol, publishes what
    /// it says, and runs its timer if due.
    pub fn pump_routing(&mut self, now: Instant) -> RoutingReport {
        let _in = self.span.enter();
        let mut report = RoutingReport::default();
        while let Ok(input) = self.input.try_recv() {
            match &input {
                RoutingInput::Up { neighbor, cost } => {
                    report
                        .notes
                        .push(format!("neighbour {neighbor} up (cost {cost})"));
                }
                RoutingInput::Down { neighbor } => {
                    report.notes.push(format!("neighbour {neighbor} down"));
                }
                RoutingInput::Message { msg, size, .. } => {
                    report.control.push((control_kind(msg), *size));
                    if let Some(capture) = &mut self.capture {
                        crate::hostile::capture(capture, self.core.mesh().id(), msg);
                    }
                }
                RoutingInput::LocalAddress { .. } => {}
            }
            apply(&mut self.routing, input, now);
            report.inputs += 1;
        }
        if self.routing.poll_timeout().is_some_and(|t| t <= now) {
            self.routing.handle_timeout(now);
            report.inputs += 1;
        }
        publish(&mut self.routing, &self.core);
        let table = self.core.mesh().table();
        if !Arc::ptr_eq(&table, &self.table) {
            report.new_table = Some(describe_change(&self.table, &table));
            self.table = table;
        }
        report
    }

    /// Lets every endpoint handle what other endpoints posted to it.
    /// Returns how many messages were handled.
    pub fn pump_inboxes(&mut self, now: Instant) -> usize {
        let _in = self.span.enter();
        let mut total = 0;
        for ep in self.endpoints.values_mut() {
            loop {
                let n = ep.handle_inbox(64, now);
                total += n;
                if n < 64 {
                    break;
                }
            }
        }
        total
    }

    /// The earliest timer of the routing protocol or an endpoint.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let eps = self.endpoints.values().filter_map(Endpoint::poll_timeout);
        self.routing.poll_timeout().into_iter().chain(eps).min()
    }

    /// Runs the endpoint timers due at `now`.
    pub fn handle_timeouts(&mut self, now: Instant) -> bool {
        let _in = self.span.enter();
        let mut fired = false;
        for ep in self.endpoints.values_mut() {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
                fired = true;
            }
        }
        fired
    }
}

/// A router of the mesh, running or not.
#[derive(Debug)]
pub struct SimRouter {
    /// Its id.
    pub id: String,
    /// Its configuration.
    pub config: Config,
    /// The running router, if it is up.
    pub node: Option<Node>,
    /// The instance number of the current (or last) run.
    pub instance: u64,
}

impl SimRouter {
    /// A router that is not started yet.
    pub fn new(id: String, config: Config) -> Self {
        Self {
            id,
            config,
            node: None,
            instance: 0,
        }
    }

    /// Whether it is running.
    pub fn is_up(&self) -> bool {
        self.node.is_some()
    }
}

/// The addresses of a table, as `@address -> routers` entries.
fn address_entries(t: &RoutingTable) -> BTreeMap<String, String> {
    t.addresses()
        .map(|(a, at)| {
            let at: Vec<&str> = at.map(|r| r.as_str()).collect();
            (format!("@{a}"), at.join("+"))
        })
        .collect()
}

/// A route of a table: next hop (`-` for none) and cost.
fn route(t: &RoutingTable, r: &RouterId) -> (Option<RouterId>, u32) {
    (t.next_hop(r).cloned(), t.cost(r).unwrap_or(u32::MAX))
}

/// Describes how a table differs from the previous one, for the log:
/// `R3:R2(4)` for a new or changed route, `-R3` for a router no longer
/// reachable, `@q:R3+R4` for the routers with consumers of `q`. Entries
/// in id order, the new and changed ones first, then the gone ones.
///
/// Both tables list their routers in id order, so the routes are
/// compared in one merged walk and only the changed ones are written:
/// `O(n)` comparisons per table change rather than `n` lines formatted
/// and sorted twice.
pub fn describe_change(old: &RoutingTable, new: &RoutingTable) -> String {
    let me = new.me();
    let mut changed: Vec<(String, String)> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    let mut olds = old.routers().filter(|r| *r != old.me()).peekable();
    let mut news = new.routers().filter(|r| *r != me).peekable();
    loop {
        match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(o), Some(n)) if o == n => {
                let (a, b) = (route(old, o), route(new, n));
                if a != b {
                    changed.push((n.to_string(), describe_route(&b)));
                }
                olds.next();
                news.next();
            }
            (Some(o), n) if n.is_none_or(|n| o < n) => {
                gone.push(o.to_string());
                olds.next();
            }
            (_, Some(n)) => {
                changed.push((n.to_string(), describe_route(&route(new, n))));
                news.next();
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
    let (old_a, new_a) = (address_entries(old), address_entries(new));
    changed.extend(
        new_a
            .iter()
            .filter(|(k, v)| old_a.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    gone.extend(old_a.keys().filter(|k| !new_a.contains_key(*k)).cloned());
    changed.sort();
    gone.sort();
    let parts: Vec<String> = changed
        .into_iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .chain(gone.into_iter().map(|k| format!("-{k}")))
        .collect();
    if parts.is_empty() {
        "unchanged".into()
    } else {
        parts.join(" ")
    }
}

fn describe_route((hop, cost): &(Option<RouterId>, u32)) -> String {
    let hop = hop.as_ref().map_or("-", RouterId::as_str);
    format!("{hop}({cost})")
}
