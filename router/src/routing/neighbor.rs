//! The HELLO state of one connected neighbour.

use std::time::{Duration, Instant};

/// A router this one has an inter-router connection to.
#[derive(Debug, Clone)]
pub(crate) struct Neighbor {
    /// This end's cost for the link (at least 1).
    pub cost: u32,
    /// When its last HELLO arrived, if within `hello_max_age`.
    pub last_heard: Option<Instant>,
    /// Whether its last HELLO listed this router.
    pub lists_us: bool,
}

impl Neighbor {
    /// A neighbour just connected, not heard from yet.
    pub fn new(cost: u32) -> Self {
        Self {
            cost: cost.max(1),
            last_heard: None,
            lists_us: false,
        }
    }

    /// Heard from lately: listed in our HELLOs.
    pub fn heard(&self) -> bool {
        self.last_heard.is_some()
    }

    /// Heard from lately and hears us: adjacent, part of our link state.
    pub fn two_way(&self) -> bool {
        self.heard() && self.lists_us
    }

    /// When it is declared down if nothing more is heard.
    pub fn deadline(&self, max_age: Duration) -> Option<Instant> {
        self.last_heard.map(|t| t + max_age)
    }

    /// Nothing heard for `max_age`: forget what it said. Returns whether it
    /// was heard until now.
    pub fn expire(&mut self, now: Instant, max_age: Duration) -> bool {
        if self.deadline(max_age).is_some_and(|d| d <= now) {
            self.last_heard = None;
            self.lists_us = false;
            return true;
        }
        false
    }
}
