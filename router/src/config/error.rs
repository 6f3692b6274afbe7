//! Configuration errors: every variant displays as one line that names the
//! key, and the file or environment variable it came from.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The file given with `--config`.
    File(PathBuf),
    /// The embedded default configuration (no `--config` given).
    Default,
    /// A `FERRY_…` environment variable set this very key.
    Env(String),
    /// A `FERRY_…` environment variable created the entry holding the key
    /// (e.g. `FERRY_LISTENER__1__PORT` created `listener[1]`).
    EnvEntry(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "in {}", path.display()),
            Self::Default => f.write_str("in the built-in default configuration"),
            Self::Env(var) => write!(f, "from environment variable {var}"),
            Self::EnvEntry(var) => write!(f, "in the entry created by environment variable {var}"),
        }
    }
}

/// Why the configuration could not be loaded. Display is a single line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` does not exist.
    #[error("config file not found: {}", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file given with `--config` exists but cannot be read.
    #[error("cannot read config file {}: {reason}", path.display())]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("invalid TOML {origin}: {reason}")]
    Syntax {
        /// The file (or the embedded default).
        origin: Origin,
        /// Line, column and what the parser expected.
        reason: String,
    },
    /// A key that the configuration does not have.
    #[error("unknown key '{key}' {origin}{hint}")]
    UnknownKey {
        /// Full key, e.g. `limits.max_frmae_size`.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// ` (did you mean …?)` or ` (valid keys: …)`, possibly empty.
        hint: String,
    },
    /// A required key is absent.
    #[error("missing key '{key}' {origin}")]
    MissingKey {
        /// Full key, e.g. `listener[0].host`.
        key: String,
        /// The file (or environment variable) holding the incomplete entry.
        origin: Origin,
    },
    /// A key has a value of the wrong type or outside its allowed range.
    #[error("invalid value for '{key}' {origin}: {reason}")]
    InvalidValue {
        /// Full key, e.g. `listener[0].port`.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// What was expected and what was found.
        reason: String,
    },
    /// A `FERRY_…` environment variable that cannot be a configuration key.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Anything else the `config` crate reports.
    #[error("{0}")]
    Other(String),
}

/// Collapse a possibly multi-line message (TOML parse errors draw a
/// snippet) into one line: the position line, then the explanation.
pub(crate) fn one_line(message: &str) -> String {
    let mut parts = Vec::new();
    for line in message.lines().map(str::trim_end) {
        let trimmed = line.trim_start();
        // Snippet lines look like `3 | text`, `  |`, or `  ^^^`.
        let is_snippet = trimmed.is_empty()
            || trimmed.starts_with('|')
            || trimmed.starts_with('^')
            || trimmed
                .split_once('|')
                .is_some_and(|(gutter, _)| gutter.trim().chars().all(|c| c.is_ascii_digit()));
        if !is_snippet {
            parts.push(
                trimmed
                    .trim_start_matches("TOML parse error at ")
                    .to_owned(),
            );
        }
    }
    if parts.is_empty() {
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_snippets_collapse_to_one_line() {
        let message = "TOML parse error at line 2, column 7\n  |\n2 | port = \n  |       ^\nstring values must be quoted, expected literal string\n";
        assert_eq!(
            one_line(message),
            "line 2, column 7: string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn every_error_displays_as_one_line() {
        let errors = [
            ConfigError::NotFound {
                path: "x.toml".into(),
            },
            ConfigError::UnknownKey {
                key: "limits.x".into(),
                origin: Origin::Env("FERRY_LIMITS__X".into()),
                hint: String::new(),
            },
            ConfigError::Syntax {
                origin: Origin::Default,
                reason: one_line("a\nb\n"),
            },
        ];
        for error in errors {
            assert!(!error.to_string().contains('\n'), "{error}");
        }
    }
}
