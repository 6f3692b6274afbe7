//! The effective configuration as TOML (`ferry check-config` prints it).

use std::fmt::{self, Display, Formatter, Write};

use super::model::{Config, Named};

impl Display for Config {
    /// TOML that loads back into an equal `Config`, every key spelled out.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "[router]")?;
        writeln!(f, "id = {}", quote(&self.router.id))?;
        writeln!(f, "mode = {}", quote(self.router.mode.as_str()))?;
        if let Some(v) = &self.router.default_vhost {
            writeln!(f, "default_vhost = {}", quote(v))?;
        }
        for listener in &self.listeners {
            writeln!(f, "\n[[listener]]")?;
            writeln!(f, "host = {}", quote(&listener.host))?;
            writeln!(f, "port = {}", listener.port)?;
            writeln!(f, "role = {}", quote(listener.role.as_str()))?;
            writeln!(f, "sasl_mechanisms = {}", list(&listener.sasl_mechanisms))?;
            writeln!(f, "require_sasl = {}", listener.require_sasl)?;
            if let Some(tls) = &listener.tls {
                writeln!(f, "tls = {}", quote(tls))?;
            }
            writeln!(f, "client_cert = {}", quote(listener.client_cert.as_str()))?;
            writeln!(
                f,
                "allow_plain_without_tls = {}",
                listener.allow_plain_without_tls
            )?;
            writeln!(
                f,
                "allow_unauthenticated_routers = {}",
                listener.allow_unauthenticated_routers
            )?;
            writeln!(f, "transport = {}", quote(listener.transport.as_str()))?;
        }
        for connector in &self.connectors {
            writeln!(f, "\n[[connector]]")?;
            writeln!(f, "host = {}", quote(&connector.host))?;
            writeln!(f, "port = {}", connector.port)?;
            writeln!(f, "role = {}", quote(connector.role.as_str()))?;
            writeln!(f, "cost = {}", connector.cost)?;
            if let Some(tls) = &connector.tls {
                writeln!(f, "tls = {}", quote(tls))?;
            }
            if let Some(name) = &connector.server_name {
                writeln!(f, "server_name = {}", quote(name))?;
            }
            writeln!(
                f,
                "allow_unauthenticated_routers = {}",
                connector.allow_unauthenticated_routers
            )?;
            writeln!(f, "transport = {}", quote(connector.transport.as_str()))?;
        }
        for profile in &self.tls {
            writeln!(f, "\n[[tls]]")?;
            writeln!(f, "name = {}", quote(&profile.name))?;
            for (key, path) in [
                ("cert", &profile.cert),
                ("key", &profile.key),
                ("ca", &profile.ca),
            ] {
                if let Some(path) = path {
                    writeln!(f, "{key} = {}", quote(&path.to_string_lossy()))?;
                }
            }
            writeln!(f, "min_version = {}", quote(profile.min_version.as_str()))?;
        }
        if let Some(users) = &self.auth.users {
            writeln!(f, "\n[auth]")?;
            writeln!(f, "users = {}", quote(&users.to_string_lossy()))?;
        }
        if !self.management.users.is_empty() {
            writeln!(f, "\n[management]")?;
            writeln!(f, "users = {}", list(&self.management.users))?;
        }
        for vhost in &self.vhosts {
            writeln!(f, "\n[[vhost]]")?;
            writeln!(f, "name = {}", quote(&vhost.name))?;
            if let Some(n) = vhost.max_connections {
                writeln!(f, "max_connections = {n}")?;
            }
            if let Some(n) = vhost.max_connections_per_user {
                writeln!(f, "max_connections_per_user = {n}")?;
            }
            if let Some(n) = vhost.max_message_size {
                writeln!(f, "max_message_size = {n}")?;
            }
            if let Some(n) = vhost.max_links_per_connection {
                writeln!(f, "max_links_per_connection = {n}")?;
            }
            for group in &vhost.groups {
                writeln!(f, "\n[[vhost.group]]")?;
                writeln!(f, "name = {}", quote(&group.name))?;
                writeln!(f, "users = {}", list(&group.users))?;
                writeln!(f, "send = {}", list(&group.send))?;
                writeln!(f, "receive = {}", list(&group.receive))?;
                writeln!(f, "dynamic_reply = {}", group.dynamic_reply)?;
                if let Some(n) = group.max_connections_per_user {
                    writeln!(f, "max_connections_per_user = {n}")?;
                }
                if let Some(n) = group.max_message_size {
                    writeln!(f, "max_message_size = {n}")?;
                }
                if let Some(n) = group.max_links_per_connection {
                    writeln!(f, "max_links_per_connection = {n}")?;
                }
            }
        }
        for address in &self.addresses {
            writeln!(f, "\n[[address]]")?;
            writeln!(f, "prefix = {}", quote(&address.prefix))?;
            writeln!(f, "distribution = {}", quote(address.distribution_name()))?;
            if let Some(broker) = &address.broker {
                writeln!(f, "broker = {}", quote(broker))?;
            }
        }
        for b in &self.brokers {
            writeln!(f, "\n[[broker]]")?;
            writeln!(f, "name = {}", quote(&b.name))?;
            writeln!(f, "host = {}", quote(&b.host))?;
            writeln!(f, "port = {}", b.port)?;
            for (key, value) in [
                ("tls", &b.tls),
                ("server_name", &b.server_name),
                ("user", &b.user),
            ] {
                if let Some(v) = value {
                    writeln!(f, "{key} = {}", quote(v))?;
                }
            }
            if b.password.is_some() {
                // Never printed: `ferry check-config` output is shared.
                writeln!(f, "password = \"(hidden)\"")?;
            }
            if let Some(path) = &b.password_file {
                writeln!(f, "password_file = {}", quote(&path.to_string_lossy()))?;
            }
            writeln!(f, "routers = {}", list(&b.routers))?;
            writeln!(f, "queue_prefix = {}", quote(&b.queue_prefix))?;
            writeln!(f, "topic_prefix = {}", quote(&b.topic_prefix))?;
        }
        if let Some(http) = &self.http {
            writeln!(f, "\n[http]")?;
            writeln!(f, "host = {}", quote(&http.host))?;
            writeln!(f, "port = {}", http.port)?;
        }
        let limits = &self.limits;
        writeln!(f, "\n[limits]")?;
        writeln!(f, "max_connections = {}", limits.max_connections)?;
        writeln!(f, "max_frame_size = {}", limits.max_frame_size)?;
        writeln!(
            f,
            "max_sessions_per_connection = {}",
            limits.max_sessions_per_connection
        )?;
        writeln!(
            f,
            "max_links_per_connection = {}",
            limits.max_links_per_connection
        )?;
        writeln!(f, "max_message_size = {}", limits.max_message_size)?;
        writeln!(f, "link_credit_window = {}", limits.link_credit_window)?;
        writeln!(
            f,
            "max_in_flight_bytes_per_producer = {}",
            limits.max_in_flight_bytes_per_producer
        )?;
        writeln!(f, "handshake_timeout_ms = {}", limits.handshake_timeout_ms)?;
        writeln!(
            f,
            "max_connections_per_host = {}",
            limits.max_connections_per_host
        )?;
        writeln!(f, "stuck_delivery_ms = {}", limits.stuck_delivery_ms)?;
        writeln!(f, "max_buffered_bytes = {}", limits.max_buffered_bytes)?;

        writeln!(f, "\n[log]")?;
        writeln!(f, "level = {}", quote(&self.log.level))
    }
}

/// A TOML array of basic strings.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::config::model::{AddressConfig, ConnectorConfig, Distribution, Role, RouterMode};

    #[test]
    fn rendered_toml_loads_back_equal() {
        let mut config = Config::embedded_default();
        config.router.mode = RouterMode::Interior;
        config.router.id = "A".into();
        config.listeners[0].role = Role::InterRouter;
        config.listeners[0].require_sasl = true;
        config.listeners[0].host = "::1".into();
        config.connectors.push(ConnectorConfig {
            tls: Some("mesh".into()),
            server_name: Some("b.example".into()),
            ..ConnectorConfig::new("10.0.0.2", 5673, 3)
        });
        config.tls.push(crate::config::TlsProfileConfig {
            name: "mesh".into(),
            cert: Some("/etc/ferry/c.pem".into()),
            key: Some("/etc/ferry/k.pem".into()),
            ca: Some("/etc/ferry/ca.pem".into()),
            min_version: crate::config::TlsVersion::V1_3,
        });
        config.listeners[0].tls = Some("mesh".into());
        config.listeners[0].client_cert = crate::config::ClientCert::Required;
        config.auth.users = Some("/etc/ferry/users.toml".into());
        config.router.default_vhost = Some("public".into());
        config.vhosts.push(crate::config::VhostConfig {
            name: "public".into(),
            max_connections: Some(10),
            max_connections_per_user: Some(2),
            max_message_size: Some(1024),
            max_links_per_connection: Some(5),
            groups: vec![crate::config::GroupConfig {
                name: "apps".into(),
                users: vec!["alice".into(), "$anonymous".into()],
                send: vec!["orders".into(), "events.*".into()],
                receive: vec!["*".into()],
                dynamic_reply: true,
                ..Default::default()
            }],
        });
        config.addresses.push(AddressConfig {
            prefix: "we\"ird\\\n".into(),
            distribution: Distribution::Multicast,
            brokered: None,
            broker: None,
        });
        config.limits.max_frame_size = 4096;

        let dir = std::env::temp_dir().join(format!("ferry-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rendered.toml");
        std::fs::write(&path, config.to_string()).unwrap();
        let loaded = Config::load_with_env(Some(&path), Vec::<(OsString, OsString)>::new());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.unwrap(), config);
    }
}
