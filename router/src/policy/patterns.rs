//! Address patterns of a group: exact names, prefixes (`events.*`,
//! `replies/*`) and `*` for every address.

use std::collections::HashSet;

/// A set of address patterns, checked in one hash lookup and a scan of
/// the prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    all: bool,
    exact: HashSet<String>,
    /// Prefixes, each ending with its `.` or `/`, longest first.
    prefixes: Vec<String>,
}

impl Patterns {
    /// The patterns of `list` (validated by the configuration).
    pub fn new(list: &[String]) -> Self {
        let mut p = Self::default();
        for pattern in list {
            if pattern == "*" {
                p.all = true;
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                p.prefixes.push(prefix.to_string());
            } else {
                p.exact.insert(pattern.clone());
            }
        }
        p.normalize();
        p
    }

    /// Adds `other`'s patterns.
    pub fn extend(&mut self, other: &Self) {
        self.all |= other.all;
        self.exact.extend(other.exact.iter().cloned());
        self.prefixes.extend(other.prefixes.iter().cloned());
        self.normalize();
    }

    fn normalize(&mut self) {
        self.prefixes
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        self.prefixes.dedup();
    }

    /// Whether `address` matches: `events.*` matches `events.x` and
    /// `events.x.y`, not `events` nor `eventsx`.
    pub fn matches(&self, address: &str) -> bool {
        self.all
            || self.exact.contains(address)
            || self
                .prefixes
                .iter()
                .any(|p| address.len() > p.len() && address.starts_with(p.as_str()))
    }
}
