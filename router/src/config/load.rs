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
        text,
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
    /// Its text.
    text: &'a str,
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
            RawError::FileParse { cause, .. } => {
                let message = cause.to_string();
                ConfigError::Syntax {
                    origin: self.base.clone(),
                    reason: self
                        .unquoted_string(&message)
                        .unwrap_or_else(|| one_line(&message)),
                }
            }
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
                    reason: wrong_type(expected, &found),
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

/// What a value of the wrong type or out of range gets told: `must be
/// 0–65535, found 70000`; `must be a whole number, found string "abc"`.
/// `found` is the `config` crate's description of the value (`64-bit
/// unsigned integer `70000``, `string "abc"`, `boolean `true``, …).
fn wrong_type(expected: &str, found: &str) -> String {
    // The value between backticks, for numbers and booleans.
    let plain = found
        .strip_suffix('`')
        .and_then(|rest| rest.rsplit_once('`'))
        .map(|(kind, value)| (kind.trim(), value));
    let number = plain
        .filter(|(kind, _)| kind.ends_with("integer"))
        .map(|(_, value)| value);
    let found = match (plain, found) {
        (Some((_, value)), _) => value.to_owned(),
        (None, "sequence") => "an array".to_owned(),
        (None, "map") => "a table".to_owned(),
        (None, other) => other.to_owned(),
    };
    match unsigned_range(expected) {
        // A whole number, only too large (or negative).
        Some(range) if number.is_some() => format!("must be {range}, found {found}"),
        Some(range) => format!("must be a whole number {range}, found {found}"),
        None if expected == "an integer" => format!("must be a whole number, found {found}"),
        None => format!("expected {expected}, found {found}"),
    }
}

/// `0–65535` for the `config` crate's "an unsigned 16 bit integer".
fn unsigned_range(expected: &str) -> Option<String> {
    let bits = expected
        .strip_prefix("an unsigned ")?
        .split(' ')
        .next()?
        .parse::<u32>()
        .ok()?;
    Some(if bits < 64 {
        format!("0–{}", (1u64 << bits) - 1)
    } else {
        "0 or more".to_owned()
    })
}

impl Origins<'_> {
    /// The TOML parser's error for a string value written without quotes
    /// (`host = 127.0.0.1` reads as a malformed float: "invalid float,
    /// expected nothing"), told in words that say what to do.
    fn unquoted_string(&self, message: &str) -> Option<String> {
        let line_no: usize = message
            .split("line ")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let line = self.text.lines().nth(line_no.checked_sub(1)?)?;
        let (key, value) = line.split_once('=')?;
        let (key, value) = (key.trim(), value.split('#').next()?.trim());
        let bare_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let quotable = !value.is_empty()
            && !value.starts_with(['"', '\'', '[', '{'])
            && !value.contains('"')
            // A valid value: the error is about something else.
            && toml::from_str::<toml::Table>(&format!("x = {value}")).is_err();
        (bare_key && quotable).then(|| {
            format!(
                "line {line_no}: {value} is not a TOML value; quote strings: {key} = \"{value}\""
            )
        })
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

/// One rule for every unknown key, in every section and in the
/// environment: ` (did you mean 'x'? valid keys: …)` when a valid key is
/// a near miss, else ` (valid keys: …)`.
fn hint(field: &str, expected: &[&str], join: &dyn Fn(&str) -> String) -> String {
    if expected.is_empty() {
        return String::new();
    }
    let closest = expected
        .iter()
        .map(|candidate| (edit_distance(field, candidate), candidate))
        .min();
    let valid = expected.join(", ");
    match closest {
        Some((distance, candidate)) if distance <= (field.len() / 3).max(1) => {
            format!(" (did you mean '{}'? valid keys: {valid})", join(candidate))
        }
        _ => format!(" (valid keys: {valid})"),
    }
}

/// Edits between `a` and `b` (Levenshtein, with a swap of two adjacent
/// characters counted as one edit: `mdoe` is one from `mode`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows: two back (for swaps), one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
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

#[cfg(test)]
mod tests;
