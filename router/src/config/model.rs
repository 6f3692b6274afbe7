//! The configuration entities, as deserialised from TOML and `FERRY_…`
//! environment variables. Defaults live here, next to the fields they fill.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A configuration enum, written as one of a few names (any letter case).
pub trait Named: Copy + Sized + 'static {
    /// Every value, in documentation order.
    const ALL: &'static [Self];

    /// The name used in the configuration.
    fn as_str(self) -> &'static str;

    /// The value named `name` (case-insensitive).
    ///
    /// # Errors
    ///
    /// A message listing the valid names.
    fn from_name(name: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                let names: Vec<String> = Self::ALL
                    .iter()
                    .map(|v| format!("{:?}", v.as_str()))
                    .collect();
                format!("expected one of {}, found {name:?}", names.join(", "))
            })
    }
}

/// `Display`, `FromStr` and `TryFrom<String>` (for serde) through [`Named`].
macro_rules! named_impls {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(name: &str) -> Result<Self, String> {
                Self::from_name(name)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(name: String) -> Result<Self, String> {
                Self::from_name(&name)
            }
        }
    )*};
}

named_impls!(
    RouterMode,
    Role,
    Distribution,
    ClientCert,
    TlsVersion,
    TransportKind
);

/// The whole router configuration: one value of this type drives a router.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[router]`: identity and mode of this router.
    #[serde(default)]
    pub router: RouterConfig,
    /// `[[listener]]`: sockets this router accepts connections on.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `[[connector]]`: other routers this router dials.
    #[serde(default, rename = "connector")]
    pub connectors: Vec<ConnectorConfig>,
    /// `[[address]]`: distribution per address prefix.
    #[serde(default, rename = "address")]
    pub addresses: Vec<AddressConfig>,
    /// `[[broker]]`: message brokers that store the messages of
    /// `distribution = "queue"` and `"topic"` addresses.
    #[serde(default, rename = "broker")]
    pub brokers: Vec<super::broker::BrokerConfig>,
    /// `[limits]`: resource limits, all with safe defaults.
    #[serde(default)]
    pub limits: Limits,
    /// `[log]`: logging.
    #[serde(default)]
    pub log: LogConfig,
    /// `[[tls]]`: TLS profiles, referenced by name from listeners and
    /// connectors.
    #[serde(default, rename = "tls")]
    pub tls: Vec<TlsProfileConfig>,
    /// `[auth]`: who may log in.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[[vhost]]`: tenants. None: no policy, every client may use every
    /// address.
    #[serde(default, rename = "vhost")]
    pub vhosts: Vec<VhostConfig>,
    /// `[management]`: who may use the `$management` node.
    #[serde(default)]
    pub management: ManagementConfig,
    /// `[http]`: the HTTP endpoint (metrics, health, readiness). None: no
    /// HTTP listener (the default).
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

/// `[management]`: who may use AMQP management (`$management`, `ferry
/// stat`, `ferry manage`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementConfig {
    /// The users (SASL identities; `$anonymous` for clients that did not
    /// authenticate) allowed to manage the router. Empty (the default):
    /// only clients connected from a loopback address may.
    pub users: Vec<String>,
}

/// `[http]`: where the HTTP endpoint listens (`GET /metrics`, `/healthz`,
/// `/readyz`). Present means on; both keys are required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Host name or IP address to bind, e.g. `127.0.0.1` or `0.0.0.0`.
    pub host: String,
    /// TCP port; 0 lets the operating system pick one (the log line
    /// `http listening on …` tells which).
    pub port: u16,
}

/// `[[vhost]]`: a virtual host, one tenant: clients whose `open` names it
/// as `hostname`, their own addresses, what each group of users may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhostConfig {
    /// Matched against the `hostname` of a client's `open`.
    pub name: String,
    /// Client connections to this vhost open at once on this router.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Client connections of one user to this vhost open at once on this
    /// router (unauthenticated clients count as one user).
    #[serde(default)]
    pub max_connections_per_user: Option<usize>,
    /// Largest message a link of this vhost accepts (below the router's
    /// `limits.max_message_size`).
    #[serde(default)]
    pub max_message_size: Option<u64>,
    /// Links per connection of this vhost.
    #[serde(default)]
    pub max_links_per_connection: Option<u32>,
    /// `[[vhost.group]]`: who may do what.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
}

/// `[[vhost.group]]`: users, the addresses they may use, and limits that
/// replace the vhost's for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Unique in its vhost.
    pub name: String,
    /// SASL identities; `"*"`: any authenticated user; `"$anonymous"`:
    /// clients that did not authenticate (ANONYMOUS or no SASL).
    #[serde(default)]
    pub users: Vec<String>,
    /// Addresses the group may send to (patterns: exact, a prefix ending
    /// `.*` or `/*`, or `*` for all).
    #[serde(default)]
    pub send: Vec<String>,
    /// Addresses the group may receive from (same patterns).
    #[serde(default)]
    pub receive: Vec<String>,
    /// May attach dynamic (reply-to) receivers.
    #[serde(default)]
    pub dynamic_reply: bool,
    /// For its users, instead of the vhost's `max_connections_per_user`.
    #[serde(default)]
    pub max_connections_per_user: Option<usize>,
    /// For its users' links, instead of the vhost's `max_message_size`.
    #[serde(default)]
    pub max_message_size: Option<u64>,
    /// For its users' connections, instead of the vhost's
    /// `max_links_per_connection`.
    #[serde(default)]
    pub max_links_per_connection: Option<u32>,
}

/// `[router]`: who this router is and what part it plays in a mesh.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Router id, unique in the mesh. Defaults to the host name, or `ferry`
    /// when the host name cannot be read.
    pub id: String,
    /// Role of the router in a mesh.
    pub mode: RouterMode,
    /// With `[[vhost]]`s: the vhost of clients whose `open` names no
    /// configured vhost (or none). Without it, they are refused.
    pub default_vhost: Option<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            id: default_router_id(),
            mode: RouterMode::Standalone,
            default_vhost: None,
        }
    }
}

/// The default router id: the host name when it can be read, else `ferry`.
pub fn default_router_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && super::validate::is_valid_router_id(name))
        .unwrap_or_else(|| "ferry".to_owned())
}

/// `router.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum RouterMode {
    /// A single router serving clients; no inter-router connections.
    Standalone,
    /// A member of the mesh's interior: takes part in the routing protocol.
    Interior,
    /// A leaf router that attaches to interior routers through `edge`
    /// connectors and does not take part in the routing protocol.
    Edge,
}

impl Named for RouterMode {
    const ALL: &'static [Self] = &[Self::Standalone, Self::Interior, Self::Edge];

    fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Interior => "interior",
            Self::Edge => "edge",
        }
    }
}

/// What kind of peer a listener or connector expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Role {
    /// AMQP clients (producers and consumers).
    Normal,
    /// Another interior router of the mesh (needs `router.mode = "interior"`).
    InterRouter,
    /// An edge router and its interior uplink: an interior router listens
    /// with this role, an edge router connects with it.
    Edge,
}

impl Named for Role {
    const ALL: &'static [Self] = &[Self::Normal, Self::InterRouter, Self::Edge];

    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::InterRouter => "inter-router",
            Self::Edge => "edge",
        }
    }
}

/// `[[listener]]`: a socket the router accepts connections on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Host name or IP address to bind, e.g. `127.0.0.1` or `0.0.0.0`.
    pub host: String,
    /// TCP port; 0 lets the operating system pick one (the log line
    /// `listening on …` tells which).
    pub port: u16,
    /// Kind of peer expected on this listener.
    #[serde(default = "default_listener_role")]
    pub role: Role,
    /// SASL mechanisms offered when the peer starts with a SASL header.
    #[serde(default = "default_sasl_mechanisms")]
    pub sasl_mechanisms: Vec<String>,
    /// When true, a peer must negotiate SASL; when false (the default) a bare
    /// AMQP protocol header is accepted too — unless the listener offers
    /// no `ANONYMOUS`, which makes SASL required whatever this says.
    #[serde(default)]
    pub require_sasl: bool,
    /// TLS profile (`[[tls]] name`): TLS first, then SASL and AMQP inside
    /// it (amqps). None: plain TCP.
    #[serde(default)]
    pub tls: Option<String>,
    /// Whether peers must present a certificate, verified against the
    /// profile's `ca`.
    #[serde(default)]
    pub client_cert: ClientCert,
    /// Offer `PLAIN` outside TLS (passwords in clear text on the wire).
    #[serde(default)]
    pub allow_plain_without_tls: bool,
    /// An `inter-router` listener without TLS on an address other than
    /// loopback lets anyone who reaches it join the mesh: refused at
    /// start-up unless this is true.
    #[serde(default)]
    pub allow_unauthenticated_routers: bool,
    /// `tcp` (the default) or `quic` (UDP; inter-router listeners only,
    /// with a TLS profile: QUIC always runs TLS 1.3 and requires the
    /// peer router's certificate).
    #[serde(default)]
    pub transport: TransportKind,
}

/// `transport` of a listener or connector: what carries AMQP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum TransportKind {
    /// TCP, optionally with TLS (the `tls` profile).
    #[default]
    Tcp,
    /// QUIC over UDP (RFC 9000), TLS 1.3 built in: each AMQP session on
    /// a stream of its own (docs/ROUTING.md, *QUIC*).
    Quic,
}

impl Named for TransportKind {
    const ALL: &'static [Self] = &[Self::Tcp, Self::Quic];

    fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }
}

/// `listener.client_cert`: whether peers must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum ClientCert {
    /// No certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a peer without one is admitted (and
    /// cannot use SASL EXTERNAL); one that presents an untrusted one is not.
    Optional,
    /// A trusted certificate is required to complete the TLS handshake.
    Required,
}

impl Named for ClientCert {
    const ALL: &'static [Self] = &[Self::None, Self::Optional, Self::Required];

    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// `[[tls]]`: a TLS profile: our certificate and key, and the trust
/// anchors peers' certificates are verified against. Only `ca` is ever
/// trusted, never the system's certificate store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProfileConfig {
    /// The name listeners and connectors refer to.
    pub name: String,
    /// PEM certificate chain, ours first.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM trust anchors for the peer's certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Lowest TLS version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
}

/// `tls.min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl Named for TlsVersion {
    const ALL: &'static [Self] = &[Self::V1_2, Self::V1_3];

    fn as_str(self) -> &'static str {
        match self {
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        }
    }
}

/// `[auth]`: who may log in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The users file (`ferry user add` writes it): SCRAM-SHA-256
    /// verifiers, never passwords. Needed by `PLAIN` and `SCRAM-SHA-256`.
    pub users: Option<PathBuf>,
}

impl ListenerConfig {
    /// A listener on `host:port` for `role`, every other key at its
    /// default.
    pub fn new(host: impl Into<String>, port: u16, role: Role) -> Self {
        Self {
            host: host.into(),
            port,
            role,
            sasl_mechanisms: default_sasl_mechanisms(),
            require_sasl: false,
            tls: None,
            client_cert: ClientCert::None,
            allow_plain_without_tls: false,
            allow_unauthenticated_routers: false,
            transport: TransportKind::Tcp,
        }
    }
}

fn default_listener_role() -> Role {
    Role::Normal
}

/// The SASL mechanisms offered by default: `ANONYMOUS`, as stock Qpid Proton
/// and Qpid JMS clients send it.
pub fn default_sasl_mechanisms() -> Vec<String> {
    vec!["ANONYMOUS".to_owned()]
}

/// `[[connector]]`: another router this router dials (and redials).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Host name or IP address of the peer router.
    pub host: String,
    /// TCP port of the peer router's listener.
    pub port: u16,
    /// Kind of link: `inter-router` (interior to interior, the default) or
    /// `edge` (edge router to its interior uplink).
    #[serde(default = "default_connector_role")]
    pub role: Role,
    /// Path cost of this connection for the routing protocol (at least 1).
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// TLS profile (`[[tls]] name`): verify the peer's certificate against
    /// its `ca`, present its `cert`.
    #[serde(default)]
    pub tls: Option<String>,
    /// The name the peer's certificate must carry. Default: `host`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Dial without TLS a host other than loopback (the peer is not
    /// authenticated, the traffic not encrypted).
    #[serde(default)]
    pub allow_unauthenticated_routers: bool,
    /// `tcp` (the default) or `quic` (the peer's listener must be a QUIC
    /// one; needs `tls`).
    #[serde(default)]
    pub transport: TransportKind,
}

impl ConnectorConfig {
    /// An inter-router connector to `host:port` with `cost`, every other
    /// key at its default.
    pub fn new(host: impl Into<String>, port: u16, cost: u32) -> Self {
        Self {
            host: host.into(),
            port,
            role: Role::InterRouter,
            cost,
            tls: None,
            server_name: None,
            allow_unauthenticated_routers: false,
            transport: TransportKind::Tcp,
        }
    }
}

fn default_connector_role() -> Role {
    Role::InterRouter
}

fn default_cost() -> u32 {
    1
}

/// `[[address]]`: how messages to addresses under a prefix are distributed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "super::broker::AddressEntry")]
pub struct AddressConfig {
    /// Address prefix, matched on `.` and `/` boundaries (see
    /// [`Config::distribution_for`]); a brokered entry's is the whole
    /// address, matched exactly.
    pub prefix: String,
    /// Distribution for matching addresses (a brokered address's: the
    /// closest link to its broker).
    pub distribution: Distribution,
    /// `distribution = "queue"` or `"topic"`: the broker stores the
    /// messages (see `config::broker`).
    pub brokered: Option<super::broker::Brokered>,
    /// The `[[broker]]` (its `name`) that stores them.
    pub broker: Option<String>,
}

/// How a message to an address is distributed among its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Distribution {
    /// Anycast to the consumer with the lowest path cost (local first).
    Closest,
    /// Anycast spread by available credit, weighted by cost. The default for
    /// addresses that match no prefix.
    #[default]
    Balanced,
    /// Every consumer gets one copy.
    Multicast,
}

impl Named for Distribution {
    const ALL: &'static [Self] = &[Self::Closest, Self::Balanced, Self::Multicast];

    fn as_str(self) -> &'static str {
        match self {
            Self::Closest => "closest",
            Self::Balanced => "balanced",
            Self::Multicast => "multicast",
        }
    }
}

/// `[limits]`: resource limits. Exceeding one yields an AMQP error on the
/// connection or link concerned, never a crash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections open at once, over all listeners.
    pub max_connections: usize,
    /// Largest AMQP frame, in bytes, offered in `open` (at least 512).
    pub max_frame_size: u32,
    /// Sessions per connection (AMQP `channel-max` + 1).
    pub max_sessions_per_connection: u16,
    /// Links per connection, over all its sessions.
    pub max_links_per_connection: u32,
    /// Largest message, in bytes, a link accepts.
    pub max_message_size: u64,
    /// Credit the router grants on one incoming link at most (the per-hop
    /// window W of the credit scheme).
    pub link_credit_window: u32,
    /// Bytes of one producer's messages the router holds in flight at most.
    pub max_in_flight_bytes_per_producer: u64,
    /// Milliseconds from accepting a connection (or dialing one) to the
    /// peer's AMQP `open`, TLS and SASL included; a peer that takes longer
    /// is disconnected.
    pub handshake_timeout_ms: u64,
    /// Connections open at once from one client address, over all
    /// listeners (0: no bound).
    pub max_connections_per_host: usize,
    /// A delivery sent to a consumer and unsettled for this long is
    /// counted as stuck (per link, in management and metrics) and logged
    /// once per link (0: not checked).
    pub stuck_delivery_ms: u64,
    /// Bytes of messages in flight through the router at most, over every
    /// producer (0: a quarter of the memory the process may use).
    pub max_buffered_bytes: u64,
}

impl Limits {
    /// [`handshake_timeout_ms`](Self::handshake_timeout_ms) as a duration.
    pub fn handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.handshake_timeout_ms)
    }

    /// The router-wide bound on bytes in flight:
    /// [`max_buffered_bytes`](Self::max_buffered_bytes), or when it is 0 a
    /// quarter of the memory the process may use (its cgroup's limit, else
    /// the machine's), at least 64 MiB.
    pub fn buffered_bytes(&self) -> u64 {
        if self.max_buffered_bytes > 0 {
            return self.max_buffered_bytes;
        }
        (super::memory::available() / 4).max(64 * 1024 * 1024)
    }

    /// [`stuck_delivery_ms`](Self::stuck_delivery_ms) as a duration
    /// (`None`: not checked).
    pub fn stuck_delivery(&self) -> Option<std::time::Duration> {
        (self.stuck_delivery_ms > 0)
            .then(|| std::time::Duration::from_millis(self.stuck_delivery_ms))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16_384,
            max_frame_size: 65_536,
            max_sessions_per_connection: 256,
            max_links_per_connection: 8_192,
            max_message_size: 100 * 1024 * 1024,
            link_credit_window: 250,
            max_in_flight_bytes_per_producer: 16 * 1024 * 1024,
            handshake_timeout_ms: 10_000,
            max_connections_per_host: 0,
            stuck_delivery_ms: 10_000,
            max_buffered_bytes: 0,
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
    /// `tracing` directives each naming one, such as
    /// `info,ferry_router=debug` (checked by [`log_filter`](super::log_filter)).
    /// `RUST_LOG`, when set, wins over this.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}
