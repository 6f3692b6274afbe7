//! Checks that serde cannot express: ranges, cross-field rules, uniqueness.

use std::collections::HashMap;

use super::model::{Config, Limits, Named, Role, RouterMode};

/// SASL mechanisms the router implements.
pub const SUPPORTED_SASL_MECHANISMS: [&str; 1] = ["ANONYMOUS"];
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

/// The first rule `config` breaks, if any.
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
    validate_listeners(config)?;
    validate_connectors(config)?;
    validate_addresses(config)?;
    validate_limits(&config.limits)?;
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        return Err(invalid(
            "log.level",
            format!("not a level or filter: {error}"),
        ));
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
        if listener.port != 0
            && let Some(first) = seen.insert((listener.host.as_str(), listener.port), i)
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
    ];
    for (field, value) in at_least_one {
        if value == 0 {
            return Err(invalid(format!("limits.{field}"), "must be at least 1"));
        }
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
    fn inter_router_roles_need_the_right_mode() {
        let mut config = base();
        config.listeners[0].role = Role::InterRouter;
        assert_eq!(key_of(&config), "listener[0].role");
        config.router.mode = RouterMode::Interior;
        validate(&config).unwrap();

        config.connectors.push(ConnectorConfig {
            host: "10.0.0.2".into(),
            port: 5673,
            role: Role::Edge,
            cost: 1,
        });
        assert_eq!(key_of(&config), "connector[0].role");
        config.connectors[0].role = Role::InterRouter;
        validate(&config).unwrap();
        config.connectors[0].cost = 0;
        assert_eq!(key_of(&config), "connector[0].cost");
    }

    #[test]
    fn unsupported_sasl_mechanisms_are_rejected() {
        let mut config = base();
        config.listeners[0].sasl_mechanisms = vec!["PLAIN".into()];
        assert_eq!(key_of(&config), "listener[0].sasl_mechanisms");
        config.listeners[0].sasl_mechanisms.clear();
        validate(&config).unwrap();
        config.listeners[0].require_sasl = true;
        assert_eq!(key_of(&config), "listener[0].sasl_mechanisms");
    }

    #[test]
    fn duplicate_address_prefixes_are_rejected() {
        let mut config = base();
        for _ in 0..2 {
            config.addresses.push(AddressConfig {
                prefix: "m".into(),
                distribution: Distribution::Multicast,
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
        config.log.level = "info,ferry_router=debug".into();
        validate(&config).unwrap();
    }
}
