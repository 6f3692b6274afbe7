//! `FERRY_…` environment variables as configuration overrides.
//!
//! Scheme: `FERRY_` + key path, path segments separated by a double
//! underscore, array entries by their index (from 0), case-insensitive:
//!
//! | variable | key |
//! |---|---|
//! | `FERRY_ROUTER__ID` | `router.id` |
//! | `FERRY_LIMITS__MAX_FRAME_SIZE` | `limits.max_frame_size` |
//! | `FERRY_LISTENER__0__PORT` | `listener[0].port` |
//! | `FERRY_LISTENER__0__SASL_MECHANISMS=ANONYMOUS,PLAIN` | `listener[0].sasl_mechanisms` (comma-separated) |
//! | `FERRY_HTTP__PORT=8080` | `http.port` (with `FERRY_HTTP__HOST`, turns the HTTP endpoint on) |
//!
//! Variables without a double underscore (`FERRY_CONFIG`, `FERRY_BIN`, …)
//! are not configuration keys and are ignored, except those that look like a
//! key written with a single underscore (`FERRY_LOG_LEVEL`), which are
//! rejected with a hint.

use std::ffi::OsString;
use std::fmt::Write;

use ::config::{Value, ValueKind};

use super::error::ConfigError;

/// Prefix of every configuration variable.
pub const PREFIX: &str = "FERRY_";
/// Separator between key path segments in a variable name.
pub const SEPARATOR: &str = "__";
/// Top-level sections of the configuration.
const SECTIONS: [&str; 12] = [
    "router",
    "broker",
    "listener",
    "connector",
    "address",
    "limits",
    "log",
    "tls",
    "auth",
    "vhost",
    "management",
    "http",
];
/// Largest array index accepted (guards against allocating a huge array).
const MAX_INDEX: usize = 9_999;
/// Keys whose value is a list, given comma-separated.
const LIST_KEYS: [&str; 2] = ["sasl_mechanisms", "routers"];
/// Keys of a `[[vhost.group]]` whose value is a list (`auth.users` is a
/// path).
const GROUP_LIST_KEYS: [&str; 3] = ["users", "send", "receive"];

/// One configuration override taken from the environment.
#[derive(Debug, Clone)]
pub(crate) struct EnvOverride {
    /// The variable's name, as set.
    pub var: String,
    /// The key path in `config` crate syntax, e.g. `listener[0].port`.
    pub path: String,
    /// The value, with the variable's name as its origin.
    pub value: Value,
}

/// The overrides among `vars`, sorted by variable name.
pub(crate) fn overrides<I>(vars: I) -> Result<Vec<EnvOverride>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = strip_prefix_ignore_case(name, PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        if !rest.contains(SEPARATOR) {
            reject_lookalike(name, &rest)?;
            continue;
        }
        let path = key_path(&rest).map_err(|reason| ConfigError::Env {
            var: name.to_owned(),
            reason,
        })?;
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            reason: "value is not valid UTF-8".to_owned(),
        })?;
        let leaf = path.rsplit(['.', '[']).next().unwrap_or_default();
        let origin = Some(name.to_owned());
        let is_list = LIST_KEYS.contains(&leaf)
            || path == "management.users"
            || (path.starts_with("vhost[")
                && path.contains(".group[")
                && GROUP_LIST_KEYS.contains(&leaf));
        let kind = if is_list {
            ValueKind::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::new(origin.as_ref(), item))
                    .collect(),
            )
        } else {
            ValueKind::String(value)
        };
        found.push(EnvOverride {
            var: name.to_owned(),
            path,
            value: Value::new(origin.as_ref(), kind),
        });
    }
    found.sort_by(|a, b| a.var.cmp(&b.var));
    Ok(found)
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// `listener__0__port` → `listener[0].port`.
fn key_path(rest: &str) -> Result<String, String> {
    let mut path = String::new();
    for (i, segment) in rest.split(SEPARATOR).enumerate() {
        if segment.is_empty() {
            return Err("empty key segment (three or more underscores in a row?)".to_owned());
        }
        let is_index = segment.chars().all(|c| c.is_ascii_digit());
        if is_index {
            if i == 0 {
                return Err("the first segment must be a section name, not an index".to_owned());
            }
            match segment.parse::<usize>() {
                Ok(index) if index <= MAX_INDEX => {
                    let _ = write!(path, "[{index}]");
                }
                _ => {
                    return Err(format!(
                        "index {segment} is too large (at most {MAX_INDEX})"
                    ));
                }
            }
            continue;
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("'{segment}' is not a valid key name"));
        }
        if i > 0 {
            path.push('.');
        }
        path.push_str(segment);
    }
    Ok(path)
}

/// Reject `FERRY_LOG_LEVEL`-style names: a section followed by a single
/// underscore is almost surely a key with the wrong separator.
fn reject_lookalike(name: &str, rest: &str) -> Result<(), ConfigError> {
    let is_section = SECTIONS.contains(&rest);
    let Some(section) = SECTIONS.iter().find(|section| {
        is_section
            || rest
                .strip_prefix(**section)
                .is_some_and(|r| r.starts_with('_'))
    }) else {
        return Ok(());
    };
    let reason = if is_section {
        format!(
            "a whole section cannot be set; set one key, e.g. {PREFIX}{}__<KEY>",
            section.to_ascii_uppercase()
        )
    } else {
        let after = &rest[section.len() + 1..];
        let suggestion = match after.split_once('_') {
            Some((index, key)) if index.chars().all(|c| c.is_ascii_digit()) => {
                format!("{section}__{index}__{key}")
            }
            _ => format!("{section}__{after}"),
        };
        format!(
            "separate sections and keys with a double underscore: did you mean {PREFIX}{}?",
            suggestion.to_ascii_uppercase()
        )
    };
    Err(ConfigError::Env {
        var: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn paths(pairs: &[(&str, &str)]) -> Vec<String> {
        overrides(vars(pairs))
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect()
    }

    #[test]
    fn names_map_to_key_paths() {
        assert_eq!(
            paths(&[
                ("FERRY_ROUTER__ID", "A"),
                ("FERRY_LIMITS__MAX_FRAME_SIZE", "1024"),
                ("FERRY_LISTENER__0__PORT", "1"),
                ("ferry_connector__12__cost", "2"),
            ]),
            [
                "limits.max_frame_size",
                "listener[0].port",
                "router.id",
                "connector[12].cost",
            ]
        );
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        assert!(
            paths(&[
                ("FERRY_BIN", "/x"),
                ("FERRY_CONFIG", "a.toml"),
                ("PATH", "/")
            ])
            .is_empty()
        );
    }

    #[test]
    fn list_keys_split_on_commas() {
        let found = overrides(vars(&[(
            "FERRY_LISTENER__0__SASL_MECHANISMS",
            "ANONYMOUS, PLAIN",
        )]))
        .unwrap();
        let list: Vec<String> = found[0].value.clone().try_deserialize().unwrap();
        assert_eq!(list, ["ANONYMOUS", "PLAIN"]);
    }

    #[test]
    fn single_underscore_lookalikes_are_rejected_with_a_hint() {
        let error = overrides(vars(&[("FERRY_LOG_LEVEL", "debug")])).unwrap_err();
        assert!(
            error.to_string().contains("did you mean FERRY_LOG__LEVEL?"),
            "{error}"
        );
        let error = overrides(vars(&[("FERRY_LISTENER_0_PORT", "1")])).unwrap_err();
        assert!(
            error.to_string().contains("FERRY_LISTENER__0__PORT"),
            "{error}"
        );
    }

    #[test]
    fn malformed_names_are_rejected() {
        assert!(overrides(vars(&[("FERRY_LIMITS____X", "1")])).is_err());
        assert!(overrides(vars(&[("FERRY_0__X", "1")])).is_err());
        assert!(overrides(vars(&[("FERRY_LOG__LE.VEL", "1")])).is_err());
        assert!(overrides(vars(&[("FERRY_LISTENER__99999999999__PORT", "1")])).is_err());
    }
}
