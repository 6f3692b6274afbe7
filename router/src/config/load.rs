//! Loading: the embedded default or a file, then `FERRY_…` overrides, then
//! deserialisation and validation, with every error reworded to one line.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use ::config::{Config as Raw, ConfigError as RawError, File, FileFormat, Value};

use super::env::{self, EnvOverride};
use super::error::{ConfigError, Origin, one_line};
use super::model::Config;
use super::validate::{Invalid, validate};

/// The embedded default configuration, used when no file is given: a
/// standalone router with one `normal` listener on 127.0.0.1:5672.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

impl Config {
    /// The embedded default configuration ([`DEFAULT_TOML`]), without
    /// environment overrides.
    ///
    /// # Panics
    ///
    /// Never: the embedded default is valid (a unit test checks).
    pub fn embedded_default() -> Self {
        build(DEFAULT_TOML, Origin::Default, &[])
            .expect("the embedded default configuration is valid (tested)")
    }

    /// Load the configuration for this process: `path` (or the embedded
    /// default when `None`), overridden by the process's `FERRY_…`
    /// environment variables, then validated.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file, key or variable at fault.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars_os())
    }

    /// Like [`Config::load`], with the environment given explicitly (for
    /// tests): `vars` are `(name, value)` pairs.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_with_env<I>(path: Option<&Path>, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let (text, origin) = match path {
            Some(path) => (read(path)?, Origin::File(path.to_owned())),
            None => (DEFAULT_TOML.to_owned(), Origin::Default),
        };
        let overrides = env::overrides(vars)?;
        build(&text, origin, &overrides)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_owned(),
        },
        _ => ConfigError::Unreadable {
            path: path.to_owned(),
            reason: error.to_string(),
        },
    })
}

fn build(text: &str, origin: Origin, overrides: &[EnvOverride]) -> Result<Config, ConfigError> {
    let base = File::from_str(text, FileFormat::Toml);
    let mut origins = Origins {
        base: origin,
        base_raw: None,
        env: overrides,
    };
    let base_raw = Raw::builder()
        .add_source(base.clone())
        .build()
        .map_err(|error| origins.translate(error))?;
    origins.base_raw = Some(base_raw);

    let mut builder = Raw::builder().add_source(base);
    for o in overrides {
        builder = builder
            .set_override(&o.path, o.value.clone())
            .map_err(|error| ConfigError::Env {
                var: o.var.clone(),
                reason: one_line(&error.to_string()),
            })?;
    }
    let raw = builder.build().map_err(|error| origins.translate(error))?;
    let config: Config = raw
        .try_deserialize()
        .map_err(|error| origins.translate(error))?;
    validate(&config).map_err(|Invalid { key, reason }| ConfigError::InvalidValue {
        origin: origins.of(&key),
        key,
        reason,
    })?;
    Ok(config)
}

/// Knows where each key came from, to name it in errors.
struct Origins<'a> {
    /// The file, or the embedded default.
    base: Origin,
    /// The file alone, to tell its entries from those the environment added.
    base_raw: Option<Raw>,
    /// The environment overrides.
    env: &'a [EnvOverride],
}

impl Origins<'_> {
    /// Where `key` was set: the variable that set it, the variable that
    /// created the entry holding it, or else the file.
    fn of(&self, key: &str) -> Origin {
        if let Some(o) = self.env.iter().find(|o| o.path == key) {
            return Origin::Env(o.var.clone());
        }
        for ancestor in ancestors(key) {
            if self.base_has(ancestor) {
                break;
            }
            if let Some(o) = self.env.iter().find(|o| is_under(&o.path, ancestor)) {
                return Origin::EnvEntry(o.var.clone());
            }
        }
        self.base.clone()
    }

    fn base_has(&self, key: &str) -> bool {
        self.base_raw
            .as_ref()
            .is_some_and(|raw| raw.get::<Value>(key).is_ok())
    }

    /// One clear error from whatever the `config` crate reported.
    fn translate(&self, error: RawError) -> ConfigError {
        self.translate_at(None, error)
    }

    fn translate_at(&self, at: Option<String>, error: RawError) -> ConfigError {
        let at = at.map(|key| normalize_key(&key));
        match error {
            RawError::FileParse { cause, .. } => ConfigError::Syntax {
                origin: self.base.clone(),
                reason: one_line(&cause.to_string()),
            },
            RawError::Type {
                origin,
                unexpected,
                expected,
                key,
            } => {
                let key = key
                    .map(|key| normalize_key(&key))
                    .or(at)
                    .unwrap_or_default();
                let found = unexpected.to_string();
                if found == "unit value" {
                    return self.missing(key);
                }
                let origin = match origin {
                    Some(var) if var.starts_with(env::PREFIX) => Origin::Env(var),
                    _ => self.of(&key),
                };
                ConfigError::InvalidValue {
                    key,
                    origin,
                    reason: format!("expected {}, found {found}", reword_expected(expected)),
                }
            }
            RawError::At { error, key, .. } => self.translate_at(key.or(at), *error),
            RawError::Message(message) => self.translate_message(at, &message),
            RawError::NotFound(key) => {
                let key = normalize_key(&key);
                ConfigError::MissingKey {
                    origin: self.of(&key),
                    key,
                }
            }
            other => ConfigError::Other(one_line(&other.to_string())),
        }
    }

    /// `key` is absent. When it is an array entry, absent because an
    /// environment variable set a later one, say so.
    fn missing(&self, key: String) -> ConfigError {
        if let Some((array, _)) = key.strip_suffix(']').and_then(|k| k.rsplit_once('['))
            && let Some(o) = self.env.iter().find(|o| {
                o.path.starts_with(array)
                    && o.path[array.len()..].starts_with('[')
                    && !self.base_has(&o.path)
                    && !is_under(&o.path, &key)
            })
        {
            return ConfigError::Env {
                var: o.var.clone(),
                reason: format!("{key} does not exist; number {array} entries from 0 without gaps"),
            };
        }
        ConfigError::MissingKey {
            origin: self.of(&key),
            key,
        }
    }

    /// Serde's messages: unknown/missing field, unknown variant, and others.
    fn translate_message(&self, at: Option<String>, message: &str) -> ConfigError {
        let quoted = backticked(message);
        let join = |field: &str| match &at {
            Some(at) if !at.is_empty() => format!("{at}.{field}"),
            _ => field.to_owned(),
        };
        if message.starts_with("unknown field")
            && let Some((field, expected)) = quoted.split_first()
        {
            let key = join(field);
            let origin = match self.of(&key) {
                Origin::EnvEntry(var) => Origin::Env(var),
                origin => origin,
            };
            return ConfigError::UnknownKey {
                origin,
                hint: hint(field, expected, &join),
                key,
            };
        }
        if message.starts_with("missing field")
            && let Some(field) = quoted.first()
        {
            let key = join(field);
            return ConfigError::MissingKey {
                origin: self.of(&key),
                key,
            };
        }
        let key = at.unwrap_or_default();
        if message.starts_with("invalid type: unit value") {
            return self.missing(key);
        }
        ConfigError::InvalidValue {
            origin: self.of(&key),
            key,
            reason: reword_serde(&one_line(message)),
        }
    }
}

/// The `config` crate writes `listener[0]port`; make it `listener[0].port`.
fn normalize_key(key: &str) -> String {
    let mut normal = String::with_capacity(key.len() + 4);
    let mut after_index = false;
    for c in key.chars() {
        if after_index && c != '.' && c != '[' {
            normal.push('.');
        }
        after_index = c == ']';
        normal.push(c);
    }
    normal
}

/// `a.b[1].c` → `a.b[1].c`, `a.b[1]`, `a.b`, `a`.
fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    let cuts = key
        .char_indices()
        .filter(|&(_, c)| c == '.' || c == '[')
        .map(|(i, _)| i);
    std::iter::once(key.len())
        .chain(cuts.collect::<Vec<_>>().into_iter().rev())
        .map(move |end| &key[..end])
}

/// True when `path` is `ancestor` or lies inside it.
fn is_under(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The words between backticks in a serde message.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// ` (did you mean 'x'?)` for a near miss, else the list of valid keys.
fn hint(field: &str, expected: &[&str], join: &dyn Fn(&str) -> String) -> String {
    let closest = expected
        .iter()
        .map(|candidate| (edit_distance(field, candidate), candidate))
        .min();
    match closest {
        Some((distance, candidate)) if distance <= (field.len() / 3).max(1) => {
            format!(" (did you mean '{}'?)", join(candidate))
        }
        _ if expected.is_empty() => String::new(),
        _ => format!(" (valid keys: {})", expected.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Serde's `invalid type: A, expected B` as `expected B, found A`, with
/// TOML's words for tables and arrays.
fn reword_serde(message: &str) -> String {
    let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return message.to_owned();
    };
    let toml_words = |text: &str| {
        if text.starts_with("struct ") || text == "map" || text == "a map" {
            "a table".to_owned()
        } else if text == "a sequence" || text == "sequence" {
            "an array".to_owned()
        } else {
            text.to_owned()
        }
    };
    format!(
        "expected {}, found {}",
        toml_words(expected),
        toml_words(found)
    )
}

/// The `config` crate's type names, in words a user knows.
fn reword_expected(expected: &str) -> String {
    let bits = expected
        .strip_prefix("an unsigned ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|bits| bits.parse::<u32>().ok());
    match bits {
        Some(bits) if bits < 64 => format!("a whole number from 0 to {}", (1u64 << bits) - 1),
        Some(_) => "a whole number, 0 or more".to_owned(),
        None => expected.to_owned(),
    }
}

#[cfg(test)]
mod tests;
