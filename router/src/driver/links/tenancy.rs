//! A client connection's tenant: its vhost (from the `hostname` of its
//! `open`), what its user may do there, and the checks at attach, per
//! anonymous message and on policy reload (see [`crate::policy`]).

use super::*;
use crate::manage::is_management;
use crate::policy::{Admission, Tenant};

/// A client's place in a vhost: its permissions and its count against
/// the vhost's connection limits (given back when the connection goes).
pub(crate) struct Tenancy {
    pub(super) tenant: Tenant,
    /// On an edge router: the address of its vhost's relay (see
    /// `links::edge`), named once rather than per anonymous delivery.
    pub(super) relay: Option<String>,
    _admission: Admission,
}

fn unauthorized(why: String) -> Error {
    Error::new(condition::UNAUTHORIZED_ACCESS, why)
}

/// Addresses the mesh uses for itself (`_ferry/control`, an edge's
/// relay): no client may send to them or consume from them.
fn reserved(address: &str) -> Result<(), Error> {
    if address.starts_with("_ferry/") {
        return Err(refusal(
            condition::NOT_ALLOWED,
            "addresses beginning with _ferry/ are the mesh's own",
        ));
    }
    Ok(())
}

impl Links {
    /// A client's open arrived: under a policy, find its vhost and count
    /// it; refuse it (`amqp:unauthorized-access`, or
    /// `amqp:resource-limit-exceeded` over a limit) if it has none.
    pub(super) fn admit_client(&mut self, engine: &mut Connection, hostname: Option<&str>) {
        let Some(policy) = self.core.policy() else {
            return;
        };
        let user = self.user.as_deref();
        let Some(vhost) = policy.vhost(hostname) else {
            tracing::info!(hostname, user, "connection refused: no such vhost");
            let why = format!("no virtual host {:?} here", hostname.unwrap_or(""));
            return engine.close(Some(unauthorized(why)));
        };
        let tenant = vhost.tenant(user);
        match self
            .core
            .admissions()
            .admit(vhost.name(), user, &tenant.limits)
        {
            Ok(admission) => {
                let relay = self
                    .core
                    .is_edge()
                    .then(|| tenant.scope(crate::core::EDGE_RELAY));
                self.tenancy = Some(Box::new(Tenancy {
                    tenant,
                    relay,
                    _admission: admission,
                }));
            }
            Err(why) => {
                tracing::info!(vhost = vhost.name(), user, "connection refused: {why}");
                engine.close(Some(Error::new(condition::RESOURCE_LIMIT_EXCEEDED, why)));
            }
        }
    }

    /// The client's tenant, under a policy.
    pub(super) fn tenant(&self) -> Option<&Tenant> {
        self.tenancy.as_ref().map(|t| &t.tenant)
    }

    /// The name of a client's `address` in the router and the mesh
    /// (scoped to its vhost under a policy).
    /// Management nodes belong to no vhost.
    pub(super) fn scoped(&self, address: &str) -> String {
        match self.tenant() {
            Some(t) if !is_management(address) => t.scope(address),
            _ => address.to_string(),
        }
    }

    /// Whether the client may send to `address` (to a management node:
    /// whether it may manage).
    pub(super) fn may_send(&self, address: &str) -> Result<(), Error> {
        reserved(address)?;
        if is_management(address) {
            return self.may_manage();
        }
        match self.tenant() {
            Some(t) if !t.may_send(address) => Err(unauthorized(format!(
                "not allowed to send to {address:?} in vhost {}",
                t.vhost()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the client may receive from `address` (`None`: a dynamic
    /// reply address).
    pub(super) fn may_receive(&self, address: Option<&str>) -> Result<(), Error> {
        address.map_or(Ok(()), reserved)?;
        if address.is_some_and(|a| is_management(a) && !self.is_edge_management(a)) {
            return Err(unauthorized(
                "management requests are for the router, not for clients".into(),
            ));
        }
        let Some(t) = self.tenant() else {
            return Ok(());
        };
        let allowed = match address {
            Some(a) => t.may_receive(a),
            None => t.may_reply(),
        };
        if allowed {
            return Ok(());
        }
        Err(unauthorized(match address {
            Some(a) => format!("not allowed to receive from {a:?} in vhost {}", t.vhost()),
            None => format!("not allowed dynamic reply addresses in vhost {}", t.vhost()),
        }))
    }

    /// Whether `address` is the management node of the edge router on this
    /// (interior router's) edge connection: the edge's uplink receives its
    /// requests from the mesh (docs/ARCHITECTURE.md, *Edge routers*).
    fn is_edge_management(&self, address: &str) -> bool {
        !self.mesh.is_uplink()
            && self
                .mesh
                .edge()
                .is_some_and(|e| address == crate::manage::topo_node(e.as_str()))
    }

    /// Whether the client may use management: a user `[management] users`
    /// names, or when it names none, a client on a loopback address. A
    /// router may (a neighbour, an edge router or the interior an edge's
    /// uplink leads to): it let the request in, under these rules.
    pub(super) fn may_manage(&self) -> Result<(), Error> {
        if self.is_router_peer() {
            return Ok(());
        }
        let users = &self.core.management().users;
        let allowed = if users.is_empty() {
            self.mesh.peer_addr().is_some_and(|a| a.ip().is_loopback())
        } else {
            let me = self.user.as_deref().unwrap_or(crate::policy::ANONYMOUS);
            users.iter().any(|u| u == me)
        };
        if allowed {
            return Ok(());
        }
        Err(unauthorized(if users.is_empty() {
            "management is allowed from this router's host only ([management] users names no one)"
                .into()
        } else {
            "management is allowed to the users [management] users names".into()
        }))
    }

    /// Links over the vhost's limit: the client's own, else the router's.
    pub(super) fn max_links(&self) -> usize {
        let router = self.core.limits().max_links_per_connection;
        let vhost = self
            .tenant()
            .and_then(|t| t.limits.max_links_per_connection);
        vhost.map_or(router, |v| v.min(router)) as usize
    }

    /// Largest message a link of this connection accepts.
    pub(super) fn max_message_size(&self) -> u64 {
        let router = self.core.limits().max_message_size;
        let vhost = self.tenant().and_then(|t| t.limits.max_message_size);
        vhost.map_or(router, |v| v.min(router))
    }

    /// The policy was reloaded: take the client's permissions from it and
    /// detach (`amqp:unauthorized-access`) every link they no longer
    /// allow; a vhost that is gone closes the connection. An edge router's
    /// uplink has a relay for each vhost of the new policy.
    pub(super) fn policy_changed(&mut self, engine: &mut Connection) {
        self.sync_relays(engine);
        let (Some(policy), Some(tenancy)) = (self.core.policy(), self.tenancy.as_mut()) else {
            return;
        };
        let Some(vhost) = policy.get(tenancy.tenant.vhost()) else {
            let why = format!("vhost {} was removed", tenancy.tenant.vhost());
            tracing::info!("{why}; closing its client's connection");
            return engine.close(Some(unauthorized(why)));
        };
        tenancy.tenant = vhost.tenant(self.user.as_deref());
        let mut revoked: Vec<(LinkId, Error)> = Vec::new();
        for (link, p) in &self.producers {
            if let Some(a) = &p.address
                && let Err(e) = self.may_send(crate::policy::unscoped(a.name()))
            {
                revoked.push((*link, e));
            }
        }
        for (link, c) in &self.consumers {
            let name = crate::policy::unscoped(c.address.name());
            let address = (!name.starts_with(crate::core::DYNAMIC_PREFIX)).then_some(name);
            if let Err(e) = self.may_receive(address) {
                revoked.push((*link, e));
            }
        }
        revoked.sort_by_key(|(l, _)| *l);
        for (link, error) in revoked {
            tracing::info!(
                error = error.description.as_deref().unwrap_or(""),
                "link detached: permission revoked"
            );
            let _ = engine.detach(link, true, Some(error));
            self.detached(link);
        }
    }
}
