//! The run's event log: one readable line per thing that happened, stamped
//! with virtual time. Two runs of the same seed produce the same lines, so
//! the log doubles as the determinism witness.

use std::fmt::Display;
use std::fmt::Write as _;
use std::time::Duration;

use crate::clock::VTime;

/// The lines of one run.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    lines: Vec<String>,
    echo: bool,
}

impl EventLog {
    /// An empty log. With `echo`, lines are also printed as they come
    /// (handy when replaying a seed).
    pub fn new(echo: bool) -> Self {
        Self {
            lines: Vec::new(),
            echo,
        }
    }

    /// Records that `who` did or saw `what` at virtual time `at`.
    pub fn push(&mut self, at: Duration, who: &str, what: impl Display) {
        let mut line = String::new();
        let _ = write!(line, "[{}] {who:<8} {what}", VTime(at));
        if self.echo {
            eprintln!("{line}");
        }
        self.lines.push(line);
    }

    /// Every line so far.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The last `n` lines, joined.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }

    /// A 64-bit FNV-1a digest of every line: equal logs, equal digests.
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for line in &self.lines {
            for b in line.bytes().chain(std::iter::once(b'\n')) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_and_digested() {
        let mut a = EventLog::new(false);
        a.push(Duration::from_millis(1500), "A", "up");
        assert_eq!(a.lines()[0], "[   1.500000s] A        up");
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.push(Duration::ZERO, "B", "x");
        assert_ne!(a.digest(), b.digest());
        assert_eq!(b.tail(1), "[   0.000000s] B        x");
    }
}
