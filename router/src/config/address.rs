//! Address prefix matching: which `[[address]]` entry governs an address.

use super::model::{AddressConfig, Config, Distribution};

impl Config {
    /// The distribution for `address`: that of the longest `[[address]]`
    /// prefix matching it, or [`Distribution::Balanced`] when none matches.
    ///
    /// A prefix matches on token boundaries (`.` and `/`): prefix `multicast`
    /// matches `multicast`, `multicast.news` and `multicast/news`, but not
    /// `multicastle`. A prefix that itself ends in `.` or `/` matches any
    /// address that starts with it.
    pub fn distribution_for(&self, address: &str) -> Distribution {
        distribution_in(&self.addresses, address)
    }
}

/// The distribution `entries` give `address` (see
/// [`Config::distribution_for`]).
pub fn distribution_in(entries: &[AddressConfig], address: &str) -> Distribution {
    longest_match(entries, address)
        .map(|entry| entry.distribution)
        .unwrap_or_default()
}

/// The entry with the longest prefix matching `address`, if any.
pub(super) fn longest_match<'a>(
    entries: &'a [AddressConfig],
    address: &str,
) -> Option<&'a AddressConfig> {
    entries
        .iter()
        .filter(|entry| prefix_matches(&entry.prefix, address))
        .max_by_key(|entry| entry.prefix.len())
}

/// True when `prefix` matches `address` on a token boundary.
pub(crate) fn prefix_matches(prefix: &str, address: &str) -> bool {
    let Some(rest) = address.strip_prefix(prefix) else {
        return false;
    };
    rest.is_empty() || prefix.ends_with(['.', '/']) || rest.starts_with(['.', '/'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefixes: &[(&str, Distribution)]) -> Config {
        let mut config = Config::embedded_default();
        config.addresses = prefixes
            .iter()
            .map(|&(prefix, distribution)| AddressConfig {
                prefix: prefix.to_owned(),
                distribution,
                brokered: None,
                broker: None,
            })
            .collect();
        config
    }

    #[test]
    fn unmatched_addresses_are_balanced() {
        let config = config(&[("multicast", Distribution::Multicast)]);
        assert_eq!(config.distribution_for("orders"), Distribution::Balanced);
        assert_eq!(config.distribution_for(""), Distribution::Balanced);
    }

    #[test]
    fn prefix_matches_on_token_boundaries() {
        let config = config(&[("multicast", Distribution::Multicast)]);
        for address in ["multicast", "multicast.news", "multicast/news/x"] {
            assert_eq!(config.distribution_for(address), Distribution::Multicast);
        }
        assert_eq!(
            config.distribution_for("multicastle"),
            Distribution::Balanced
        );
        assert_eq!(
            config.distribution_for("x.multicast"),
            Distribution::Balanced
        );
    }

    #[test]
    fn prefix_ending_in_separator_matches_its_children() {
        let config = config(&[("queue/", Distribution::Closest)]);
        assert_eq!(config.distribution_for("queue/a"), Distribution::Closest);
        assert_eq!(config.distribution_for("queue"), Distribution::Balanced);
    }

    #[test]
    fn longest_prefix_wins_whatever_the_order() {
        let entries = [
            ("a.b", Distribution::Closest),
            ("a", Distribution::Multicast),
            ("a.b.c", Distribution::Balanced),
        ];
        let config = config(&entries);
        assert_eq!(config.distribution_for("a.x"), Distribution::Multicast);
        assert_eq!(config.distribution_for("a.b.x"), Distribution::Closest);
        assert_eq!(config.distribution_for("a.b.c.d"), Distribution::Balanced);
        assert_eq!(config.distribution_for("a.bc"), Distribution::Multicast);
    }
}
