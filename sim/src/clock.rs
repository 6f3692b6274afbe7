//! Virtual time. The simulation never reads the wall clock while it runs:
//! every instant it hands the router is a fixed base plus a virtual offset
//! that only the simulator moves.

use std::fmt;
use std::time::{Duration, Instant};

/// The virtual clock of one run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    elapsed: Duration,
}

impl Clock {
    /// A clock at virtual time zero. `base` is only an anchor for the
    /// `Instant`s the router needs; nothing depends on its value.
    pub fn new(base: Instant) -> Self {
        Self {
            base,
            elapsed: Duration::ZERO,
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The instant `d` after the start of the run.
    pub fn at(&self, d: Duration) -> Instant {
        self.base + d
    }

    /// Virtual time of `t` since the start of the run (zero before it).
    pub fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.base)
    }

    /// Moves time forward to `t` (never backwards).
    pub fn advance_to(&mut self, t: Instant) {
        let d = self.since_start(t);
        if d > self.elapsed {
            self.elapsed = d;
        }
    }
}

/// A virtual time, printed as seconds with microseconds (`12.000345s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VTime(pub Duration);

impl fmt::Display for VTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>4}.{:06}s", self.0.as_secs(), self.0.subsec_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_only_moves_forward() {
        let base = Instant::now();
        let mut c = Clock::new(base);
        c.advance_to(base + Duration::from_secs(2));
        c.advance_to(base + Duration::from_secs(1));
        assert_eq!(c.elapsed(), Duration::from_secs(2));
        assert_eq!(VTime(c.elapsed()).to_string(), "   2.000000s");
    }
}
