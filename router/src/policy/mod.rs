//! Tenants: virtual hosts (`[[vhost]]`) that scope addresses, the groups
//! of users and the addresses each may use, and per-vhost limits.
//!
//! A client's vhost is the `hostname` of its `open` (AMQP 1.0 §2.7.1; as
//! Qpid Dispatch Router does), else `[router] default_vhost`, else it is
//! refused. Inside the router and across the mesh its addresses are
//! *scoped*: `orders` of vhost `a` is `a/orders` in the address table, the
//! routing protocol and the data links, so tenants never meet; a client
//! only ever sees its own names. Permissions are checked at attach (and
//! per message for anonymous senders) against the groups the connection's
//! user is in, found once per connection ([`Tenant`]).

mod admission;
mod patterns;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use admission::{Admission, Admissions};
pub use patterns::Patterns;

use crate::config::{Config, VhostConfig};

/// The group member that stands for any authenticated user.
pub const ANY_USER: &str = "*";
/// The group member that stands for clients that did not authenticate.
pub const ANONYMOUS: &str = "$anonymous";

/// Every vhost of the configuration, compiled.
#[derive(Debug)]
pub struct Policy {
    vhosts: HashMap<String, Arc<Vhost>>,
    default: Option<String>,
}

/// One vhost: its limits and groups.
#[derive(Debug)]
pub struct Vhost {
    name: String,
    /// Its limits.
    pub limits: VhostLimits,
    groups: Vec<Group>,
}

/// A vhost's limits (`None`: the router's own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VhostLimits {
    /// Client connections open at once on this router.
    pub max_connections: Option<usize>,
    /// Client connections of one user open at once on this router.
    pub max_connections_per_user: Option<usize>,
    /// Largest message.
    pub max_message_size: Option<u64>,
    /// Links per connection.
    pub max_links_per_connection: Option<u32>,
}

#[derive(Debug)]
struct Group {
    any_user: bool,
    anonymous: bool,
    users: HashSet<String>,
    send: Arc<Patterns>,
    receive: Arc<Patterns>,
    dynamic_reply: bool,
    /// Its limits (`None`: the vhost's).
    limits: VhostLimits,
}

impl Group {
    fn has(&self, user: Option<&str>) -> bool {
        match user {
            None => self.anonymous,
            Some(u) => self.any_user || self.users.contains(u),
        }
    }
}

impl Policy {
    /// The policy of `config`; `None` without `[[vhost]]` (no policy:
    /// every client may use every address, unscoped).
    pub fn from_config(config: &Config) -> Option<Self> {
        if config.vhosts.is_empty() {
            return None;
        }
        let vhosts = config
            .vhosts
            .iter()
            .map(|v| (v.name.to_ascii_lowercase(), Arc::new(Vhost::compile(v))))
            .collect();
        Some(Self {
            vhosts,
            default: config
                .router
                .default_vhost
                .as_ref()
                .map(|d| d.to_ascii_lowercase()),
        })
    }

    /// The vhost of a client whose `open` names `hostname`: the vhost of
    /// that name (host names compare without regard to ASCII case), else
    /// the default one, if any.
    pub fn vhost(&self, hostname: Option<&str>) -> Option<&Arc<Vhost>> {
        hostname
            .and_then(|h| self.vhosts.get(&h.to_ascii_lowercase()))
            .or_else(|| self.vhosts.get(self.default.as_deref()?))
    }

    /// The vhost named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Vhost>> {
        self.vhosts.get(&name.to_ascii_lowercase())
    }

    /// Every vhost's name, as configured, in order.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.vhosts.values().map(|v| v.name()).collect();
        names.sort_unstable();
        names
    }
}

impl Vhost {
    fn compile(config: &VhostConfig) -> Self {
        let groups = config
            .groups
            .iter()
            .map(|g| Group {
                any_user: g.users.iter().any(|u| u == ANY_USER),
                anonymous: g.users.iter().any(|u| u == ANONYMOUS),
                users: g
                    .users
                    .iter()
                    .filter(|u| *u != ANY_USER && *u != ANONYMOUS)
                    .cloned()
                    .collect(),
                send: Arc::new(Patterns::new(&g.send)),
                receive: Arc::new(Patterns::new(&g.receive)),
                dynamic_reply: g.dynamic_reply,
                limits: VhostLimits {
                    max_connections: None,
                    max_connections_per_user: g.max_connections_per_user,
                    max_message_size: g.max_message_size,
                    max_links_per_connection: g.max_links_per_connection,
                },
            })
            .collect();
        Self {
            name: config.name.clone(),
            limits: VhostLimits {
                max_connections: config.max_connections,
                max_connections_per_user: config.max_connections_per_user,
                max_message_size: config.max_message_size,
                max_links_per_connection: config.max_links_per_connection,
            },
            groups,
        }
    }

    /// The vhost's name, as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What `user` (`None`: not authenticated) may do here: the union of
    /// the groups it is in. A limit one of its groups sets replaces the
    /// vhost's; where several set it, the most generous wins (as the
    /// permissions are the union of the groups').
    pub fn tenant(&self, user: Option<&str>) -> Tenant {
        let mut t = Tenant {
            vhost: self.name.clone(),
            send: Vec::new(),
            receive: Vec::new(),
            dynamic_reply: false,
            limits: self.limits,
        };
        let mut own = VhostLimits::default();
        for g in self.groups.iter().filter(|g| g.has(user)) {
            t.send.push(g.send.clone());
            t.receive.push(g.receive.clone());
            t.dynamic_reply |= g.dynamic_reply;
            own.max_connections_per_user = own
                .max_connections_per_user
                .max(g.limits.max_connections_per_user);
            own.max_message_size = own.max_message_size.max(g.limits.max_message_size);
            own.max_links_per_connection = own
                .max_links_per_connection
                .max(g.limits.max_links_per_connection);
        }
        let l = &mut t.limits;
        l.max_connections_per_user = own.max_connections_per_user.or(l.max_connections_per_user);
        l.max_message_size = own.max_message_size.or(l.max_message_size);
        l.max_links_per_connection = own.max_links_per_connection.or(l.max_links_per_connection);
        t
    }
}

/// What one client connection may do: its vhost and its user's
/// permissions there (its groups' patterns, shared, not copied: a
/// connection costs a few pointers whatever the policy's size).
#[derive(Debug, Clone)]
pub struct Tenant {
    vhost: String,
    send: Vec<Arc<Patterns>>,
    receive: Vec<Arc<Patterns>>,
    dynamic_reply: bool,
    /// Its limits: the vhost's, or its groups' where they set them.
    pub limits: VhostLimits,
}

impl Tenant {
    /// The vhost's name.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The name of the client's `address` inside the router and the mesh.
    pub fn scope(&self, address: &str) -> String {
        scoped(&self.vhost, address)
    }

    /// Whether it may send to `address`.
    pub fn may_send(&self, address: &str) -> bool {
        self.send.iter().any(|p| p.matches(address))
    }

    /// Whether it may receive from `address`.
    pub fn may_receive(&self, address: &str) -> bool {
        self.receive.iter().any(|p| p.matches(address))
    }

    /// Whether it may attach dynamic (reply-to) receivers.
    pub fn may_reply(&self) -> bool {
        self.dynamic_reply
    }
}

/// `address` of `vhost`, as named inside the router and the mesh.
pub fn scoped(vhost: &str, address: &str) -> String {
    format!("{vhost}/{address}")
}

/// The client's part of a scoped address (everything after the vhost).
pub fn unscoped(address: &str) -> &str {
    address.split_once('/').map_or(address, |(_, rest)| rest)
}

#[cfg(test)]
mod tests;
