//! Pacing of table computations in a storm of routing changes: RFC 8405's
//! SPF back-off, simplified. The first change after a quiet spell is
//! computed at once, so a lone failure reroutes without delay; while
//! changes keep coming, computations are spaced by a hold that doubles from
//! `spf_hold_min` up to `spf_hold_max`, and one computation covers
//! everything that arrived during the hold.
//!
//! Why: a cold start of n routers floods about n records to every router
//! within milliseconds, and each router computed its whole table (one
//! Dijkstra over the mesh) for nearly every one of them: about 300
//! computations per router in the first 35 ms of a 1,000-router mesh.

use std::time::{Duration, Instant};

/// When the next table computation may run.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    /// The hold set after the last computation.
    hold: Duration,
    /// The last computation's time plus `hold`; `None` before the first.
    not_before: Option<Instant>,
}

impl Pacer {
    /// When a computation asked for at `now` may run (`now` or later).
    pub(super) fn due(&self, now: Instant) -> Instant {
        self.not_before.map_or(now, |at| at.max(now))
    }

    /// A computation ran at `now`. After a quiet spell (nothing computed
    /// for `max` past the hold) the hold starts again from `min`;
    /// otherwise it doubles, up to `max`.
    pub(super) fn computed(&mut self, now: Instant, min: Duration, max: Duration) {
        let quiet = self.not_before.is_none_or(|at| now >= at + max);
        self.hold = if quiet {
            min
        } else {
            (self.hold * 2).clamp(min, max)
        };
        self.not_before = Some(now + self.hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(2);
    const MAX: Duration = Duration::from_millis(50);

    #[test]
    fn the_first_change_is_computed_at_once_and_a_storm_is_spaced_out() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        assert_eq!(pacer.due(t0), t0);
        pacer.computed(t0, MIN, MAX);
        let mut at = t0;
        let mut holds = Vec::new();
        for _ in 0..7 {
            let next = pacer.due(at);
            holds.push((next - at).as_millis());
            at = next;
            pacer.computed(at, MIN, MAX);
        }
        assert_eq!(holds, [2, 4, 8, 16, 32, 50, 50]);
    }

    #[test]
    fn after_a_quiet_spell_the_hold_starts_again() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        for i in 0..6 {
            pacer.computed(t0 + Duration::from_millis(i), MIN, MAX);
        }
        let later = pacer.due(t0) + MAX;
        assert_eq!(
            pacer.due(later),
            later,
            "a change after the quiet spell waits for nothing"
        );
        pacer.computed(later, MIN, MAX);
        assert_eq!(pacer.due(later), later + MIN);
    }
}
