//! `[[broker]]` and brokered `[[address]]` entries (`distribution =
//! "queue"` or `"topic"`, `broker = "<name>"`): addresses whose messages
//! a message broker stores, reached over an AMQP 1.0 connection the
//! router dials (see `crate::broker`).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::model::{AddressConfig, Distribution, Named};

/// `[[broker]]`: a message broker this router dials as an AMQP 1.0
/// client, to store the messages of the addresses that name it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// What `[[address]] broker` calls it.
    pub name: String,
    /// Host name or IP address of the broker.
    pub host: String,
    /// Its AMQP port (RabbitMQ serves AMQP 1.0 on its AMQP 0-9-1 port).
    pub port: u16,
    /// TLS profile (`[[tls]] name`): verify the broker's certificate
    /// against its `ca` (and present its `cert`, if it has one).
    #[serde(default)]
    pub tls: Option<String>,
    /// The name the broker's certificate must carry. Default: `host`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// SASL PLAIN user name. None: SASL ANONYMOUS.
    #[serde(default)]
    pub user: Option<String>,
    /// SASL PLAIN password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// A file whose first line is the SASL PLAIN password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The router ids that dial this broker. Empty (the default): every
    /// router whose configuration has the entry.
    #[serde(default)]
    pub routers: Vec<String>,
    /// The broker's node for a `queue` address is this followed by the
    /// address (RabbitMQ 3.x: `/queue/<name>`, declared if absent).
    #[serde(default = "default_queue_prefix")]
    pub queue_prefix: String,
    /// The broker's node for a `topic` address is this followed by the
    /// address (RabbitMQ 3.x: `/topic/<routing key>`, the `amq.topic`
    /// exchange).
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
}

fn default_queue_prefix() -> String {
    "/queue/".into()
}

fn default_topic_prefix() -> String {
    "/topic/".into()
}

impl BrokerConfig {
    /// Whether router `id` dials this broker.
    pub fn dialed_by(&self, id: &str) -> bool {
        self.routers.is_empty() || self.routers.iter().any(|r| r == id)
    }

    /// The broker's node (target and source address) for `address`.
    pub fn node(&self, kind: Brokered, address: &str) -> String {
        match kind {
            Brokered::Queue => format!("{}{address}", self.queue_prefix),
            Brokered::Topic => format!("{}{address}", self.topic_prefix),
        }
    }
}

/// What a broker does with a brokered address's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brokered {
    /// Stored once; each goes to one consumer (competing consumers).
    Queue,
    /// Published; every consumer gets each (one subscription per router
    /// that dials the broker, shared by its consumers anywhere).
    Topic,
}

impl Brokered {
    /// The name in `distribution`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Topic => "topic",
        }
    }
}

/// What `distribution` says: a routing distribution, or a brokered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(super) enum EntryDistribution {
    Routed(Distribution),
    Brokered(Brokered),
}

impl TryFrom<String> for EntryDistribution {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let trimmed = name.trim();
        if trimmed.eq_ignore_ascii_case("queue") {
            return Ok(Self::Brokered(Brokered::Queue));
        }
        if trimmed.eq_ignore_ascii_case("topic") {
            return Ok(Self::Brokered(Brokered::Topic));
        }
        Distribution::from_name(&name)
            .map(Self::Routed)
            .map_err(|_| {
                format!(
                    "expected one of \"closest\", \"balanced\", \"multicast\", \"queue\", \"topic\", found {name:?}"
                )
            })
    }
}

/// An `[[address]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddressEntry {
    prefix: String,
    distribution: EntryDistribution,
    #[serde(default)]
    broker: Option<String>,
}

impl From<AddressEntry> for AddressConfig {
    fn from(e: AddressEntry) -> Self {
        let (distribution, brokered) = match e.distribution {
            EntryDistribution::Routed(d) => (d, None),
            // Producers' messages go to the closest link to the broker.
            EntryDistribution::Brokered(b) => (Distribution::Closest, Some(b)),
        };
        Self {
            prefix: e.prefix,
            distribution,
            brokered,
            broker: e.broker,
        }
    }
}

impl AddressConfig {
    /// The `distribution` as written in the configuration.
    pub fn distribution_name(&self) -> &'static str {
        match self.brokered {
            Some(b) => b.as_str(),
            None => self.distribution.as_str(),
        }
    }
}

impl fmt::Display for Brokered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the address table names the consumers of a brokered address:
/// they are fed by the broker's links only, never straight by its
/// producers (whose messages go to the broker).
pub const BROKERED_PREFIX: &str = "_brokered/";

/// The brokered entry governing `address`, if any: its longest matching
/// prefix, when that entry is a brokered one (prefixes match as for any
/// `[[address]]` entry, see [`super::Config::distribution_for`]).
pub fn brokered_entry<'a>(
    entries: &'a [AddressConfig],
    address: &str,
) -> Option<&'a AddressConfig> {
    super::address::longest_match(entries, address).filter(|e| e.brokered.is_some())
}

/// The password for `broker`: `password`, or the first line of
/// `password_file`.
///
/// # Errors
///
/// The file cannot be read.
pub fn broker_password(broker: &BrokerConfig) -> Result<Option<String>, String> {
    if let Some(p) = &broker.password {
        return Ok(Some(p.clone()));
    }
    let Some(path) = &broker.password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
    Ok(Some(text.lines().next().unwrap_or("").to_string()))
}
