//! Checks that serde cannot express: ranges, cross-field rules, uniqueness.

use std::collections::HashMap;

use super::model::{
    AddressConfig, ClientCert, Config, ConnectorConfig, Limits, ListenerConfig, Named, Role,
    RouterMode, TlsProfileConfig, TransportKind,
};

/// SASL mechanisms the router implements.
pub const SUPPORTED_SASL_MECHANISMS: [&str; 4] =
    ["ANONYMOUS", "PLAIN", "SCRAM-SHA-256", "EXTERNAL"];
/// AMQP's smallest allowed `max-frame-size` (spec §2.7.1, MIN-MAX-FRAME-SIZE).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
/// Most connections `limits.max_connections` may allow.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 24;
/// Longest router id accepted.
pub const MAX_ROUTER_ID_LEN: usize = 64;

/// A rule the configuration breaks, at `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// Full key, e.g. `listener[1].role`.
    pub key: String,
    /// What is wrong, e.g. `must be at least 512`.
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// True for 1 to 64 ASCII letters, digits, `.`, `-` and `_` (host names fit).
pub(crate) fn is_valid_router_id(id: &str) -> bool {
    (1..=MAX_ROUTER_ID_LEN).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Checks for entities created at run time through management: the rules
/// of the configuration file apply to them too (e.g. TLS on an
/// inter-router connector unless its peer is on loopback).
///
/// # Errors
///
/// What is wrong, naming the attribute.
impl Config {
    /// Whether this router may run `connector` besides its own.
    pub fn check_connector(&self, connector: &ConnectorConfig) -> Result<(), String> {
        let mut config = self.clone();
        config.connectors = vec![connector.clone()];
        check_alone(&config, "connector[0].")
    }

    /// Whether this router may run `listener` besides its own.
    pub fn check_listener(&self, listener: &ListenerConfig) -> Result<(), String> {
        let mut config = self.clone();
        config.listeners = vec![listener.clone()];
        check_alone(&config, "listener[0].")
    }

    /// Whether `address` is a valid `[[address]]` entry.
    pub fn check_address(&self, address: &AddressConfig) -> Result<(), String> {
        let mut config = self.clone();
        config.addresses = vec![address.clone()];
        check_alone(&config, "address[0].")
    }
}

fn check_alone(config: &Config, key: &str) -> Result<(), String> {
    validate(config).map_err(|e| format!("{}: {}", e.key.replace(key, ""), e.reason))
}

pub(crate) fn validate(config: &Config) -> Result<(), Invalid> {
    if !is_valid_router_id(&config.router.id) {
        return Err(invalid(
            "router.id",
            format!(
                "must be 1 to {MAX_ROUTER_ID_LEN} ASCII letters, digits, '.', '-' or '_', found {:?}",
                config.router.id
            ),
        ));
    }
    if config.listeners.is_empty() && config.connectors.is_empty() {
        return Err(invalid(
            "listener",
            "no [[listener]] and no [[connector]]: the router would be unreachable",
        ));
    }
    validate_tls_profiles(config)?;
    validate_listeners(config)?;
    validate_connectors(config)?;
    validate_addresses(config)?;
    validate_brokers(config)?;
    validate_vhosts(config)?;
    validate_limits(&config.limits)?;
    validate_http(config)?;
    if let Err(error) = super::logging::log_filter(&config.log.level) {
        return Err(invalid("log.level", error));
    }
    Ok(())
}

fn validate_listeners(config: &Config) -> Result<(), Invalid> {
    let mode = config.router.mode;
    let mut seen = HashMap::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let key = |field: &str| format!("listener[{i}].{field}");
        if listener.host.trim().is_empty() {
            return Err(invalid(key("host"), "must not be empty"));
        }
        let allowed = match listener.role {
            Role::Normal => true,
            Role::InterRouter | Role::Edge => mode == RouterMode::Interior,
        };
        if !allowed {
            return Err(invalid(
                key("role"),
                format!(
                    "role \"{}\" needs router.mode = \"interior\" (mode is \"{}\")",
                    listener.role,
                    mode.as_str()
                ),
            ));
        }
        for mechanism in &listener.sasl_mechanisms {
            if !SUPPORTED_SASL_MECHANISMS.contains(&mechanism.as_str()) {
                return Err(invalid(
                    key("sasl_mechanisms"),
                    format!(
                        "unsupported mechanism {mechanism:?} (supported: {})",
                        SUPPORTED_SASL_MECHANISMS.join(", ")
                    ),
                ));
            }
        }
        if listener.require_sasl && listener.sasl_mechanisms.is_empty() {
            return Err(invalid(
                key("sasl_mechanisms"),
                "must not be empty when require_sasl = true",
            ));
        }
        validate_listener_security(config, i)?;
        if listener.port != 0
            && let Some(first) = seen.insert(
                (listener.host.as_str(), listener.port, listener.transport),
                i,
            )
        {
            return Err(invalid(
                format!("listener[{i}]"),
                format!(
                    "same host and port as listener[{first}] ({}:{})",
                    listener.host, listener.port
                ),
            ));
        }
    }
    Ok(())
}

/// `[http]`: a host to bind, on a port no AMQP listener has (port 0, an
/// ephemeral port, may repeat).
fn validate_http(config: &Config) -> Result<(), Invalid> {
    let Some(http) = &config.http else {
        return Ok(());
    };
    if http.host.trim().is_empty() {
        return Err(invalid("http.host", "must not be empty"));
    }
    if http.port != 0
        && let Some(i) = config.listeners.iter().position(|l| {
            l.host == http.host && l.port == http.port && l.transport == TransportKind::Tcp
        })
    {
        return Err(invalid(
            "http.port",
            format!(
                "same host and port as listener[{i}] ({}:{})",
                http.host, http.port
            ),
        ));
    }
    Ok(())
}

fn validate_connectors(config: &Config) -> Result<(), Invalid> {
    let mode = config.router.mode;
    for (i, connector) in config.connectors.iter().enumerate() {
        let key = |field: &str| format!("connector[{i}].{field}");
        if connector.host.trim().is_empty() {
            return Err(invalid(key("host"), "must not be empty"));
        }
        if connector.port == 0 {
            return Err(invalid(key("port"), "must be 1 to 65535"));
        }
        if connector.cost == 0 {
            return Err(invalid(key("cost"), "must be at least 1"));
        }
        let needed = match connector.role {
            Role::Normal => {
                return Err(invalid(
                    key("role"),
                    "connectors dial routers: use \"inter-router\" or \"edge\"",
                ));
            }
            Role::InterRouter => RouterMode::Interior,
            Role::Edge => RouterMode::Edge,
        };
        if mode != needed {
            return Err(invalid(
                key("role"),
                format!(
                    "role \"{}\" needs router.mode = \"{}\" (mode is \"{}\")",
                    connector.role,
                    needed.as_str(),
                    mode.as_str()
                ),
            ));
        }
        if connector.transport == TransportKind::Quic && connector.role == Role::Edge {
            return Err(invalid(
                key("transport"),
                "quic carries connections between interior routers only: an edge uplink runs over tcp",
            ));
        }
        if connector.transport == TransportKind::Quic && connector.tls.is_none() {
            return Err(invalid(
                key("tls"),
                "quic always runs TLS 1.3 with the routers' certificates: set tls",
            ));
        }
        match &connector.tls {
            Some(name) => {
                let profile =
                    profile(config, name).ok_or_else(|| unknown_profile(key("tls"), name))?;
                if profile.ca.is_none() {
                    return Err(invalid(
                        key("tls"),
                        format!("profile {name:?} has no ca to verify the router dialed"),
                    ));
                }
                if profile.cert.is_none() {
                    return Err(invalid(
                        key("tls"),
                        format!(
                            "profile {name:?} has no cert: a router proves who it is with its certificate"
                        ),
                    ));
                }
            }
            None if !connector.allow_unauthenticated_routers && !is_loopback(&connector.host) => {
                return Err(invalid(
                    key("tls"),
                    format!(
                        "dialing {} without TLS neither authenticates the router nor encrypts the mesh; set tls (or allow_unauthenticated_routers = true)",
                        connector.host
                    ),
                ));
            }
            None => {}
        }
        if connector.server_name.is_some() && connector.tls.is_none() {
            return Err(invalid(key("server_name"), "needs tls"));
        }
    }
    Ok(())
}

fn profile<'a>(config: &'a Config, name: &str) -> Option<&'a TlsProfileConfig> {
    config.tls.iter().find(|p| p.name == name)
}

fn unknown_profile(key: String, name: &str) -> Invalid {
    invalid(key, format!("no [[tls]] profile is named {name:?}"))
}

/// `localhost` or a loopback IP literal: only processes of this host can
/// reach it.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn validate_tls_profiles(config: &Config) -> Result<(), Invalid> {
    let mut seen = HashMap::new();
    for (i, profile) in config.tls.iter().enumerate() {
        let key = |field: &str| format!("tls[{i}].{field}");
        if profile.name.trim().is_empty() {
            return Err(invalid(key("name"), "must not be empty"));
        }
        if let Some(first) = seen.insert(profile.name.as_str(), i) {
            return Err(invalid(
                key("name"),
                format!("{:?} is already the name of tls[{first}]", profile.name),
            ));
        }
        if profile.cert.is_some() != profile.key.is_some() {
            let missing = if profile.cert.is_some() {
                "key"
            } else {
                "cert"
            };
            return Err(invalid(key(missing), "cert and key go together"));
        }
        if profile.cert.is_none() && profile.ca.is_none() {
            return Err(invalid(
                key("cert"),
                "a profile needs a cert and key, a ca, or both",
            ));
        }
    }
    Ok(())
}

/// TLS, client certificates and SASL of listener `i`: nothing that
/// authenticates may be left open by leaving a key out.
fn validate_listener_security(config: &Config, i: usize) -> Result<(), Invalid> {
    let listener = &config.listeners[i];
    let key = |field: &str| format!("listener[{i}].{field}");
    let offers = |m: &str| listener.sasl_mechanisms.iter().any(|x| x == m);
    let profile = match &listener.tls {
        Some(name) => {
            let profile = profile(config, name).ok_or_else(|| unknown_profile(key("tls"), name))?;
            if profile.cert.is_none() {
                return Err(invalid(
                    key("tls"),
                    format!("profile {name:?} has no cert and key to serve TLS with"),
                ));
            }
            Some(profile)
        }
        None => None,
    };
    if listener.transport == TransportKind::Quic {
        if listener.role != Role::InterRouter {
            return Err(invalid(
                key("transport"),
                "quic carries connections between routers only: set role = \"inter-router\"",
            ));
        }
        if profile.is_none() {
            return Err(invalid(
                key("tls"),
                "quic always runs TLS 1.3 with the routers' certificates: set tls and client_cert = \"required\"",
            ));
        }
    }
    if listener.client_cert != ClientCert::None {
        match profile {
            None => return Err(invalid(key("client_cert"), "needs tls")),
            Some(p) if p.ca.is_none() => {
                return Err(invalid(
                    key("client_cert"),
                    format!(
                        "profile {:?} has no ca to verify client certificates against",
                        p.name
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if offers("EXTERNAL") && listener.client_cert == ClientCert::None {
        return Err(invalid(
            key("sasl_mechanisms"),
            "EXTERNAL takes the identity from the client certificate: set client_cert = \"optional\" or \"required\"",
        ));
    }
    if (offers("PLAIN") || offers("SCRAM-SHA-256")) && config.auth.users.is_none() {
        return Err(invalid(
            key("sasl_mechanisms"),
            "PLAIN and SCRAM-SHA-256 check passwords against the users file: set [auth] users",
        ));
    }
    if listener.role != Role::Normal {
        let what = listener.role;
        if profile.is_some() && listener.client_cert != ClientCert::Required {
            return Err(invalid(
                key("client_cert"),
                format!(
                    "routers prove who they are with their certificate: an {what} listener with tls needs client_cert = \"required\""
                ),
            ));
        }
        if profile.is_none()
            && !listener.allow_unauthenticated_routers
            && !is_loopback(&listener.host)
        {
            return Err(invalid(
                key("tls"),
                format!(
                    "an {what} listener on {} without TLS lets anyone who reaches it join the mesh; set tls and client_cert = \"required\" (or allow_unauthenticated_routers = true)",
                    listener.host
                ),
            ));
        }
    }
    Ok(())
}

fn validate_addresses(config: &Config) -> Result<(), Invalid> {
    let mut seen = HashMap::new();
    for (i, address) in config.addresses.iter().enumerate() {
        if address.prefix.is_empty() {
            return Err(invalid(format!("address[{i}].prefix"), "must not be empty"));
        }
        if let Some(first) = seen.insert(address.prefix.as_str(), i) {
            return Err(invalid(
                format!("address[{i}].prefix"),
                format!(
                    "{:?} is already the prefix of address[{first}]",
                    address.prefix
                ),
            ));
        }
    }
    Ok(())
}

/// `[[broker]]` entries, and the brokered `[[address]]` entries naming
/// them.
fn validate_brokers(config: &Config) -> Result<(), Invalid> {
    let mut seen = HashMap::new();
    for (i, broker) in config.brokers.iter().enumerate() {
        let key = |field: &str| format!("broker[{i}].{field}");
        if broker.name.trim().is_empty() {
            return Err(invalid(key("name"), "must not be empty"));
        }
        if let Some(first) = seen.insert(broker.name.as_str(), i) {
            return Err(invalid(
                key("name"),
                format!("{:?} is already the name of broker[{first}]", broker.name),
            ));
        }
        if broker.host.trim().is_empty() {
            return Err(invalid(key("host"), "must not be empty"));
        }
        if broker.port == 0 {
            return Err(invalid(key("port"), "must be 1 to 65535"));
        }
        if let Some(name) = &broker.tls {
            let profile = profile(config, name).ok_or_else(|| unknown_profile(key("tls"), name))?;
            if profile.ca.is_none() {
                return Err(invalid(
                    key("tls"),
                    format!("profile {name:?} has no ca to verify the broker dialed"),
                ));
            }
        }
        if broker.server_name.is_some() && broker.tls.is_none() {
            return Err(invalid(key("server_name"), "needs tls"));
        }
        if broker.password.is_some() && broker.password_file.is_some() {
            return Err(invalid(
                key("password_file"),
                "give password or password_file, not both",
            ));
        }
        if (broker.password.is_some() || broker.password_file.is_some()) && broker.user.is_none() {
            return Err(invalid(key("user"), "a password needs a user"));
        }
        if broker.user.is_some() && broker.password.is_none() && broker.password_file.is_none() {
            return Err(invalid(
                key("password"),
                "user needs password or password_file",
            ));
        }
        if let Some(bad) = broker.routers.iter().find(|r| !is_valid_router_id(r)) {
            return Err(invalid(
                key("routers"),
                format!("{bad:?} is not a router id"),
            ));
        }
    }
    for (i, address) in config.addresses.iter().enumerate() {
        let key = format!("address[{i}].broker");
        match (address.brokered, &address.broker) {
            (Some(kind), None) => {
                return Err(invalid(
                    key,
                    format!(
                        "distribution \"{kind}\" needs broker, the name of a [[broker]] that stores its messages"
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    key,
                    format!(
                        "only a \"queue\" or \"topic\" address has a broker (distribution is \"{}\")",
                        address.distribution.as_str()
                    ),
                ));
            }
            (Some(_), Some(name)) if !config.brokers.iter().any(|b| &b.name == name) => {
                return Err(invalid(key, format!("no [[broker]] is named {name:?}")));
            }
            _ => {}
        }
        if address.brokered.is_some() && address.prefix.starts_with(crate::config::BROKERED_PREFIX)
        {
            return Err(invalid(
                format!("address[{i}].prefix"),
                format!("{:?} is reserved", crate::config::BROKERED_PREFIX),
            ));
        }
    }
    Ok(())
}

/// True for 1 to 64 ASCII letters, digits, `.`, `-` and `_`: a vhost name
/// is a host name, and never holds the `/` that scopes addresses.
fn is_valid_vhost_name(name: &str) -> bool {
    is_valid_router_id(name)
}

/// An address pattern: exact, a prefix ending `.*` or `/*`, or `*`.
pub(crate) fn is_valid_pattern(pattern: &str) -> bool {
    match pattern.find('*') {
        None => !pattern.is_empty(),
        Some(i) => {
            pattern == "*"
                || (i == pattern.len() - 1
                    && i >= 2
                    && matches!(pattern.as_bytes()[i - 1], b'.' | b'/'))
        }
    }
}

fn validate_vhosts(config: &Config) -> Result<(), Invalid> {
    let mut names = HashMap::new();
    for (i, vhost) in config.vhosts.iter().enumerate() {
        let key = |field: &str| format!("vhost[{i}].{field}");
        if !is_valid_vhost_name(&vhost.name) {
            return Err(invalid(
                key("name"),
                format!(
                    "must be 1 to 64 ASCII letters, digits, '.', '-' or '_', found {:?}",
                    vhost.name
                ),
            ));
        }
        if let Some(first) = names.insert(vhost.name.as_str(), i) {
            return Err(invalid(
                key("name"),
                format!("{:?} is already the name of vhost[{first}]", vhost.name),
            ));
        }
        at_least_one(
            &key,
            [
                ("max_connections", vhost.max_connections.map(|n| n as u64)),
                (
                    "max_connections_per_user",
                    vhost.max_connections_per_user.map(|n| n as u64),
                ),
                ("max_message_size", vhost.max_message_size),
                (
                    "max_links_per_connection",
                    vhost.max_links_per_connection.map(u64::from),
                ),
            ],
        )?;
        let mut groups = HashMap::new();
        for (j, group) in vhost.groups.iter().enumerate() {
            let key = |field: &str| format!("vhost[{i}].group[{j}].{field}");
            if group.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            at_least_one(
                &key,
                [
                    (
                        "max_connections_per_user",
                        group.max_connections_per_user.map(|n| n as u64),
                    ),
                    ("max_message_size", group.max_message_size),
                    (
                        "max_links_per_connection",
                        group.max_links_per_connection.map(u64::from),
                    ),
                ],
            )?;
            if let Some(first) = groups.insert(group.name.as_str(), j) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is already the name of group[{first}]", group.name),
                ));
            }
            if group.users.iter().any(|u| u.is_empty()) {
                return Err(invalid(key("users"), "a user name must not be empty"));
            }
            for (field, patterns) in [("send", &group.send), ("receive", &group.receive)] {
                if let Some(bad) = patterns.iter().find(|p| !is_valid_pattern(p)) {
                    return Err(invalid(
                        key(field),
                        format!(
                            "{bad:?} is not a pattern: an address, a prefix ending \".*\" or \"/*\", or \"*\""
                        ),
                    ));
                }
            }
        }
    }
    if let Some(default) = &config.router.default_vhost
        && !names.contains_key(default.as_str())
    {
        return Err(invalid(
            "router.default_vhost",
            format!("no [[vhost]] is named {default:?}"),
        ));
    }
    Ok(())
}

/// Each limit given (`Some`) must be at least 1; `key` names its field.
fn at_least_one<const N: usize>(
    key: &dyn Fn(&str) -> String,
    limits: [(&str, Option<u64>); N],
) -> Result<(), Invalid> {
    match limits.iter().find(|(_, value)| *value == Some(0)) {
        Some((field, _)) => Err(invalid(key(field), "must be at least 1")),
        None => Ok(()),
    }
}

/// The longest `stuck_delivery_ms`: a day.
const MAX_STUCK_DELIVERY_MS: u64 = 86_400_000;

fn validate_limits(limits: &Limits) -> Result<(), Invalid> {
    let at_least_one = [
        ("max_connections", limits.max_connections as u64),
        (
            "max_sessions_per_connection",
            u64::from(limits.max_sessions_per_connection),
        ),
        (
            "max_links_per_connection",
            u64::from(limits.max_links_per_connection),
        ),
        ("max_message_size", limits.max_message_size),
        ("link_credit_window", u64::from(limits.link_credit_window)),
        ("handshake_timeout_ms", limits.handshake_timeout_ms),
    ];
    for (field, value) in at_least_one {
        if value == 0 {
            return Err(invalid(format!("limits.{field}"), "must be at least 1"));
        }
    }
    if limits.max_buffered_bytes != 0
        && limits.max_buffered_bytes < limits.max_in_flight_bytes_per_producer
    {
        return Err(invalid(
            "limits.max_buffered_bytes",
            format!(
                "must be 0 (a quarter of the memory) or at least limits.max_in_flight_bytes_per_producer ({})",
                limits.max_in_flight_bytes_per_producer
            ),
        ));
    }
    if limits.stuck_delivery_ms > MAX_STUCK_DELIVERY_MS {
        return Err(invalid(
            "limits.stuck_delivery_ms",
            format!("must be at most {MAX_STUCK_DELIVERY_MS} (a day)"),
        ));
    }
    if limits.max_connections > MAX_CONNECTIONS_LIMIT {
        return Err(invalid(
            "limits.max_connections",
            format!("must be at most {MAX_CONNECTIONS_LIMIT}"),
        ));
    }
    if limits.max_frame_size < MIN_MAX_FRAME_SIZE {
        return Err(invalid(
            "limits.max_frame_size",
            format!(
                "must be at least {MIN_MAX_FRAME_SIZE} (AMQP's minimum), found {}",
                limits.max_frame_size
            ),
        ));
    }
    if limits.max_in_flight_bytes_per_producer < u64::from(limits.max_frame_size) {
        return Err(invalid(
            "limits.max_in_flight_bytes_per_producer",
            format!(
                "must be at least limits.max_frame_size ({}), found {}",
                limits.max_frame_size, limits.max_in_flight_bytes_per_producer
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{AddressConfig, ConnectorConfig, Distribution};

    fn base() -> Config {
        Config::embedded_default()
    }

    fn key_of(config: &Config) -> String {
        validate(config).expect_err("should be invalid").key
    }

    #[test]
    fn embedded_default_is_valid() {
        validate(&base()).unwrap();
    }

    #[test]
    fn router_id_must_be_a_simple_name() {
        for id in ["", "a b", "a/b", &"x".repeat(65)] {
            let mut config = base();
            config.router.id = id.to_owned();
            assert_eq!(key_of(&config), "router.id", "{id:?}");
        }
        assert!(is_valid_router_id("router-1.example_com"));
    }

    #[test]
    fn a_router_needs_a_listener_or_connector() {
        let mut config = base();
        config.listeners.clear();
        assert_eq!(key_of(&config), "listener");
    }

    #[test]
    fn duplicate_listeners_are_rejected_but_port_zero_may_repeat() {
        let mut config = base();
        config.listeners.push(config.listeners[0].clone());
        assert_eq!(key_of(&config), "listener[1]");
        config.listeners[0].port = 0;
        config.listeners[1].port = 0;
        validate(&config).unwrap();
    }

    #[test]
    fn http_needs_a_host_and_its_own_port() {
        let mut config = base();
        let listener = &config.listeners[0];
        config.http = Some(crate::config::model::HttpConfig {
            host: listener.host.clone(),
            port: listener.port,
        });
        assert_eq!(key_of(&config), "http.port");
        config.http.as_mut().unwrap().port = 0;
        validate(&config).unwrap();
        config.http.as_mut().unwrap().host = " ".into();
        assert_eq!(key_of(&config), "http.host");
    }

    #[test]
    fn inter_router_roles_need_the_right_mode() {
        let mut config = base();
        config.listeners[0].role = Role::InterRouter;
        assert_eq!(key_of(&config), "listener[0].role");
        config.router.mode = RouterMode::Interior;
        validate(&config).unwrap();

        config.connectors.push(ConnectorConfig {
            role: Role::Edge,
            ..ConnectorConfig::new("127.0.0.2", 5673, 1)
        });
        assert_eq!(key_of(&config), "connector[0].role");
        config.connectors[0].role = Role::InterRouter;
        validate(&config).unwrap();
        config.connectors[0].cost = 0;
        assert_eq!(key_of(&config), "connector[0].cost");
    }

    #[test]
    fn edge_listeners_follow_the_inter_router_trust_rules_and_uplinks_run_over_tcp() {
        let mut config = base();
        config.router.mode = RouterMode::Interior;
        config.listeners[0].role = Role::Edge;
        validate(&config).unwrap(); // loopback: plain allowed, as inter-router
        config.listeners[0].host = "0.0.0.0".into();
        assert_eq!(key_of(&config), "listener[0].tls");
        config.listeners[0].allow_unauthenticated_routers = true;
        validate(&config).unwrap();

        let mut edge = base();
        edge.router.mode = RouterMode::Edge;
        edge.connectors.push(ConnectorConfig {
            role: Role::Edge,
            transport: TransportKind::Quic,
            ..ConnectorConfig::new("127.0.0.2", 5674, 1)
        });
        assert_eq!(key_of(&edge), "connector[0].transport");
        edge.connectors[0].transport = TransportKind::Tcp;
        validate(&edge).unwrap();
    }

    #[test]
    fn unsupported_sasl_mechanisms_are_rejected() {
        let mut config = base();
        config.listeners[0].sasl_mechanisms = vec!["CRAM-MD5".into()];
        assert_eq!(key_of(&config), "listener[0].sasl_mechanisms");
        config.listeners[0].sasl_mechanisms.clear();
        validate(&config).unwrap();
        config.listeners[0].require_sasl = true;
        assert_eq!(key_of(&config), "listener[0].sasl_mechanisms");
    }

    fn profile(name: &str, cert: bool, ca: bool) -> TlsProfileConfig {
        TlsProfileConfig {
            name: name.into(),
            cert: cert.then(|| "c.pem".into()),
            key: cert.then(|| "k.pem".into()),
            ca: ca.then(|| "ca.pem".into()),
            min_version: Default::default(),
        }
    }

    #[test]
    fn password_mechanisms_need_a_users_file_and_external_a_client_cert() {
        let mut config = base();
        config.listeners[0].sasl_mechanisms = vec!["SCRAM-SHA-256".into()];
        assert_eq!(key_of(&config), "listener[0].sasl_mechanisms");
        config.auth.users = Some("users.toml".into());
        validate(&config).unwrap();
        config.listeners[0].sasl_mechanisms = vec!["EXTERNAL".into()];
        assert_eq!(key_of(&config), "listener[0].sasl_mechanisms");
        config.tls.push(profile("server", true, true));
        config.listeners[0].tls = Some("server".into());
        config.listeners[0].client_cert = ClientCert::Optional;
        validate(&config).unwrap();
    }

    #[test]
    fn tls_profiles_are_named_complete_and_fit_their_use() {
        let mut config = base();
        config.listeners[0].tls = Some("server".into());
        assert_eq!(key_of(&config), "listener[0].tls");
        config.tls.push(profile("server", false, true));
        assert_eq!(key_of(&config), "listener[0].tls", "no cert to serve with");
        config.tls[0] = profile("server", true, false);
        validate(&config).unwrap();
        config.listeners[0].client_cert = ClientCert::Required;
        assert_eq!(key_of(&config), "listener[0].client_cert", "no ca");
        config.tls[0].key = None;
        assert_eq!(key_of(&config), "tls[0].key");
        config.tls[0] = profile("server", true, true);
        config.tls.push(profile("server", true, true));
        assert_eq!(key_of(&config), "tls[1].name");
    }

    #[test]
    fn the_mesh_is_authenticated_unless_told_otherwise() {
        let mut config = base();
        config.router.mode = RouterMode::Interior;
        config.listeners[0].role = Role::InterRouter;
        config.listeners[0].host = "0.0.0.0".into();
        assert_eq!(key_of(&config), "listener[0].tls");
        config.listeners[0].allow_unauthenticated_routers = true;
        validate(&config).unwrap();
        config.listeners[0].allow_unauthenticated_routers = false;
        config.tls.push(profile("mesh", true, true));
        config.listeners[0].tls = Some("mesh".into());
        assert_eq!(
            key_of(&config),
            "listener[0].client_cert",
            "a router without a certificate would be admitted"
        );
        config.listeners[0].client_cert = ClientCert::Required;
        validate(&config).unwrap();

        config
            .connectors
            .push(ConnectorConfig::new("ferry-1.ferry", 5673, 1));
        assert_eq!(key_of(&config), "connector[0].tls");
        config.connectors[0].tls = Some("mesh".into());
        validate(&config).unwrap();
        config.connectors[0].host = "localhost".into();
        config.connectors[0].tls = None;
        validate(&config).unwrap();
    }

    #[test]
    fn quic_is_for_routers_and_always_authenticated() {
        let mut config = base();
        config.router.mode = RouterMode::Interior;
        config.listeners[0].transport = TransportKind::Quic;
        assert_eq!(key_of(&config), "listener[0].transport", "clients");
        config.listeners[0].role = Role::InterRouter;
        assert_eq!(key_of(&config), "listener[0].tls", "even on loopback");
        config.tls.push(profile("mesh", true, true));
        config.listeners[0].tls = Some("mesh".into());
        assert_eq!(key_of(&config), "listener[0].client_cert");
        config.listeners[0].client_cert = ClientCert::Required;
        validate(&config).unwrap();
        // TCP and UDP ports are distinct: the same number is no clash.
        let mut tcp = config.listeners[0].clone();
        tcp.transport = TransportKind::Tcp;
        config.listeners.push(tcp.clone());
        validate(&config).unwrap();
        config.listeners.push(tcp);
        assert_eq!(key_of(&config), "listener[2]");
        config.listeners.pop();

        let mut connector = ConnectorConfig::new("127.0.0.1", 5673, 1);
        connector.transport = TransportKind::Quic;
        config.connectors.push(connector);
        assert_eq!(key_of(&config), "connector[0].tls", "even on loopback");
        config.connectors[0].tls = Some("mesh".into());
        validate(&config).unwrap();
    }

    #[test]
    fn vhosts_are_named_and_their_patterns_checked() {
        use crate::config::model::{GroupConfig, VhostConfig};
        let mut config = base();
        config.router.default_vhost = Some("a".into());
        assert_eq!(key_of(&config), "router.default_vhost");
        config.vhosts.push(VhostConfig {
            name: "a".into(),
            max_connections: None,
            max_connections_per_user: Some(0),
            max_message_size: None,
            max_links_per_connection: None,
            groups: vec![GroupConfig {
                name: "g".into(),
                users: vec!["*".into()],
                send: vec!["orders".into(), "events.*".into(), "a/*".into(), "*".into()],
                receive: vec!["ev*nts".into()],
                dynamic_reply: false,
                ..Default::default()
            }],
        });
        assert_eq!(key_of(&config), "vhost[0].max_connections_per_user");
        config.vhosts[0].max_connections_per_user = None;
        assert_eq!(key_of(&config), "vhost[0].group[0].receive");
        config.vhosts[0].groups[0].receive = vec!["replies.*".into()];
        validate(&config).unwrap();
        config.vhosts.push(config.vhosts[0].clone());
        assert_eq!(key_of(&config), "vhost[1].name");
        config.vhosts[1].name = "b/c".into();
        assert_eq!(key_of(&config), "vhost[1].name", "no '/' in a vhost name");
        for bad in ["", "*x", "x*", ".*", "a*.b"] {
            assert!(!is_valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn duplicate_address_prefixes_are_rejected() {
        let mut config = base();
        for _ in 0..2 {
            config.addresses.push(AddressConfig {
                prefix: "m".into(),
                distribution: Distribution::Multicast,
                brokered: None,
                broker: None,
            });
        }
        assert_eq!(key_of(&config), "address[1].prefix");
    }

    #[test]
    fn limits_have_floors() {
        let mut config = base();
        config.limits.max_frame_size = 511;
        assert_eq!(key_of(&config), "limits.max_frame_size");
        config.limits.max_frame_size = 512;
        config.limits.max_connections = 0;
        assert_eq!(key_of(&config), "limits.max_connections");
        config.limits.max_connections = usize::MAX;
        assert_eq!(key_of(&config), "limits.max_connections");
        config.limits.max_connections = 1;
        config.limits.max_in_flight_bytes_per_producer = 100;
        assert_eq!(key_of(&config), "limits.max_in_flight_bytes_per_producer");
    }

    #[test]
    fn log_level_must_parse() {
        let mut config = base();
        config.log.level = "info,=[".into();
        assert_eq!(key_of(&config), "log.level");
        config.log.level = "verbose".into();
        assert_eq!(key_of(&config), "log.level");
        config.log.level = "info,ferry_router=debug".into();
        validate(&config).unwrap();
    }
}
