//! What management sees of a connection ([`ToConn::Report`]) and the
//! stuck-delivery check: deliveries a consumer has left unsettled for
//! longer than `[limits] stuck_delivery_ms` are counted per link and
//! logged once per link.

use super::*;
use crate::core::{ConnReport, ConnRole, Dir, LinkKind, LinkReport};

/// How often stuck deliveries are counted again while some are.
const STUCK_RECHECK: Duration = Duration::from_secs(1);

/// What crossed one link (plain counters: the connection task owns them).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    delivered: u64,
    presettled: u64,
    accepted: u64,
    rejected: u64,
    released: u64,
    modified: u64,
}

impl Counts {
    /// A delivery crossed the link.
    pub(super) fn sent(&mut self, settled: bool) {
        self.delivered += 1;
        self.presettled += u64::from(settled);
    }

    /// A delivery's outcome (`None`: settled without one).
    pub(super) fn outcome(&mut self, state: Option<&DeliveryState>) {
        match state {
            Some(DeliveryState::Accepted) => self.accepted += 1,
            Some(DeliveryState::Rejected(_)) => self.rejected += 1,
            Some(DeliveryState::Released) => self.released += 1,
            Some(DeliveryState::Modified(_)) => self.modified += 1,
            Some(DeliveryState::Received(_)) | None => {}
        }
    }

    fn fill(&self, r: &mut LinkReport) {
        r.delivered = self.delivered;
        r.presettled = self.presettled;
        r.accepted = self.accepted;
        r.rejected = self.rejected;
        r.released = self.released;
        r.modified = self.modified;
    }
}

/// A consumer link's stuck deliveries.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stuck {
    /// At the last check.
    count: u64,
    /// Already logged (once per link).
    logged: bool,
}

/// What management shows of the connection beyond its links.
#[derive(Debug)]
pub(super) struct About {
    /// The container id of the peer's `open`.
    pub(super) container: String,
    /// The SASL mechanism the peer logged in with: one the router
    /// implements (the engine completes only those offered), so no copy.
    pub(super) mechanism: Option<&'static str>,
    tls: bool,
    since: Instant,
}

impl About {
    pub(super) fn new(tls: bool) -> Self {
        Self {
            container: String::new(),
            mechanism: None,
            tls,
            since: Instant::now(),
        }
    }
}

impl Links {
    /// The connection and its links, for management.
    pub(super) fn report(&self, engine: &Connection) -> ConnReport {
        let inter_router = self.is_inter_router();
        let kind = if inter_router {
            LinkKind::InterRouter
        } else {
            LinkKind::Endpoint
        };
        let name = |link: LinkId| engine.link_name(link).unwrap_or_default().to_string();
        // A client sees its own addresses, without its vhost.
        let tenant = self.tenant().is_some();
        let address = |a: &Address| {
            let name = a.name();
            Some(
                if tenant {
                    crate::policy::unscoped(name)
                } else {
                    name
                }
                .to_string(),
            )
        };
        let mut links = Vec::new();
        for (&link, p) in &self.producers {
            let mut r = LinkReport::new(
                id(link),
                name(link),
                Dir::In,
                kind,
                p.address.as_deref().and_then(address),
            );
            r.credit = engine.credit(link);
            p.counts.fill(&mut r);
            links.push(r);
        }
        for (&link, c) in &self.consumers {
            let mut r = LinkReport::new(id(link), name(link), Dir::Out, kind, address(&c.address));
            r.credit = engine.credit(link);
            r.undelivered = c.held.len() as u64;
            r.unsettled = c.outstanding.len() as u64;
            r.stuck = c.stuck.count;
            c.counts.fill(&mut r);
            links.push(r);
        }
        let [control_out, control_in] = self.mesh.control_links();
        for (link, dir) in [(control_out, Dir::Out), (control_in, Dir::In)] {
            if let Some(link) = link {
                let mut r =
                    LinkReport::new(id(link), name(link), dir, LinkKind::RouterControl, None);
                r.credit = engine.credit(link);
                links.push(r);
            }
        }
        links.sort_by_key(|l| l.id);
        ConnReport {
            id: self.me.id,
            host: self
                .mesh
                .peer_addr()
                .map_or_else(String::new, |a| a.to_string()),
            container: self.about.container.clone(),
            role: if inter_router {
                ConnRole::InterRouter
            } else {
                ConnRole::Normal
            },
            dir: if self.mesh.dialed() {
                Dir::Out
            } else {
                Dir::In
            },
            user: self.user.clone(),
            mechanism: self.about.mechanism.map(str::to_owned),
            tls: self.about.tls,
            vhost: self.tenant().map(|t| t.vhost().to_string()),
            uptime: self.now.saturating_duration_since(self.about.since),
            links,
        }
    }

    /// When to count stuck deliveries next.
    pub(super) fn poll_stuck(&self) -> Option<Instant> {
        self.stuck_check
    }

    /// Counts, per consumer link, the deliveries unsettled for longer than
    /// `[limits] stuck_delivery_ms`, if it is time; logs a link the first
    /// time it has any.
    pub(super) fn check_stuck(&mut self) {
        let (Some(at), Some(after)) = (self.stuck_check, self.core.limits().stuck_delivery())
        else {
            return;
        };
        if self.now < at {
            return;
        }
        let now = self.now;
        let mut next: Option<Instant> = None;
        let mut total = 0;
        let mut links: Vec<LinkId> = self.consumers.keys().copied().collect();
        links.sort();
        for link in links {
            let c = self.consumers.get_mut(&link).expect("a consumer link");
            let mut count = 0;
            for (_, _, sent) in c.outstanding.values() {
                let due = *sent + after;
                if due <= now {
                    count += 1;
                } else {
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            if count > 0 {
                next = Some(next.map_or(now + STUCK_RECHECK, |n| n.min(now + STUCK_RECHECK)));
            }
            let first = count > 0 && !c.stuck.logged;
            c.stuck = Stuck {
                count,
                logged: c.stuck.logged || count > 0,
            };
            total += count;
            if first {
                let address = c.address.name().to_string();
                let peer = self.peer_text();
                tracing::warn!(
                    "{count} deliveries to {address} unsettled for over {} s on link {} to {peer}",
                    after.as_secs_f64(),
                    link.get(),
                );
            }
        }
        self.set_stuck_total(total);
        self.stuck_check = next;
    }

    /// Sets this connection's share of the router's stuck deliveries.
    pub(super) fn set_stuck_total(&mut self, total: u64) {
        let delta = i64::try_from(total).unwrap_or(i64::MAX)
            - i64::try_from(self.stuck_total).unwrap_or(i64::MAX);
        if delta != 0 {
            self.core.metrics().add_stuck(delta);
        }
        self.stuck_total = total;
    }

    /// The peer in the operator's words: a router, or a client's address
    /// and container id.
    fn peer_text(&self) -> String {
        match self.mesh.peer() {
            Some(router) => format!("router {router}"),
            None => {
                let host = self
                    .mesh
                    .peer_addr()
                    .map_or_else(|| "?".to_string(), |a| a.to_string());
                format!("client {host} ({})", self.about.container)
            }
        }
    }
}

/// A link's id as management shows it.
fn id(link: LinkId) -> u32 {
    u32::try_from(link.get()).unwrap_or(u32::MAX)
}
