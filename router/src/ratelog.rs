//! Log lines that a peer can cause, rate-limited: a flood of bad
//! handshakes or failed logins must not turn into a flood of log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `burst` lines through per `window`; the lines held back
/// are counted and reported in one line when the next window opens.
#[derive(Debug)]
pub struct RateLimited {
    what: &'static str,
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    started: Option<Instant>,
    logged: u32,
    held_back: u64,
}

impl RateLimited {
    /// A limiter for lines about `what` (named in the summary line).
    pub fn new(what: &'static str, burst: u32, window: Duration) -> Self {
        Self {
            what,
            burst,
            window,
            state: Mutex::default(),
        }
    }

    /// Runs `log` unless this window's lines are used up.
    pub fn note(&self, log: impl FnOnce()) {
        let now = Instant::now();
        let (allowed, summary) = {
            let mut s = self.state.lock().expect("not poisoned");
            let mut summary = 0;
            if s.started.is_none_or(|t| now >= t + self.window) {
                summary = std::mem::take(&mut s.held_back);
                s.started = Some(now);
                s.logged = 0;
            }
            let allowed = s.logged < self.burst;
            if allowed {
                s.logged += 1;
            } else {
                s.held_back += 1;
            }
            (allowed, summary)
        };
        if summary > 0 {
            tracing::warn!(
                "{} more {} not logged (at most {} per {:?})",
                summary,
                self.what,
                self.burst,
                self.window
            );
        }
        if allowed {
            log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_beyond_the_burst_are_held_back() {
        let limit = RateLimited::new("lines", 3, Duration::from_secs(3600));
        let mut logged = 0;
        for _ in 0..10 {
            limit.note(|| logged += 1);
        }
        assert_eq!(logged, 3);
        assert_eq!(limit.state.lock().unwrap().held_back, 7);
    }
}
