//! `/readyz`: whether the router is ready for traffic.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{Config, RouterMode};
use crate::core::Core;
use crate::metrics::reaches_another_router;

/// What readiness depends on, besides the core.
#[derive(Debug)]
pub struct Readiness {
    listeners_bound: AtomicBool,
    /// An interior router with `[[connector]]`s: ready only once routing
    /// has converged with a neighbour.
    needs_neighbour: bool,
}

impl Readiness {
    /// Readiness for the router `config` describes, before its listeners
    /// are bound.
    pub fn new(config: &Config) -> Self {
        Self {
            listeners_bound: AtomicBool::new(false),
            needs_neighbour: config.router.mode == RouterMode::Interior
                && !config.connectors.is_empty(),
        }
    }

    /// Every `[[listener]]` is bound.
    pub fn listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else what it waits for, in one line: every
    /// listener bound; and for an interior router with connectors, a
    /// neighbour connected, every neighbour change handled by the routing
    /// task, and a routing table with a path to another router.
    pub fn check(&self, core: &Core) -> Result<(), &'static str> {
        if !self.listeners_bound.load(Ordering::Acquire) {
            return Err("listeners not bound");
        }
        if !self.needs_neighbour {
            return Ok(());
        }
        let mesh = core.mesh();
        if mesh.neighbour_count() == 0 {
            return Err("no neighbour up");
        }
        if !mesh.topology_settled() || !reaches_another_router(&mesh.table()) {
            return Err("routing not converged");
        }
        Ok(())
    }
}
