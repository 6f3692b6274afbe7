//! The users file on disk: its TOML shape, bounded reading, validation,
//! and the atomic rewrite behind [`add_user`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferry_proto::scram::{KEY_LEN, Verifier};
use serde::{Deserialize, Serialize};

use super::error::{EntryProblem, NameProblem, PasswordProblem, UsersError};
use super::{
    DECOY_KEY_LEN, MAX_FILE_LEN, MAX_ITERATIONS, MAX_NAME_LEN, MAX_PASSWORD_LEN, MAX_SALT_LEN,
    MIN_ITERATIONS, SALT_LEN,
};

/// The comment at the top of every file `add_user` writes.
const HEADER: &str = "\
# Ferry users: SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), never passwords.
# Add a user or change a password with: ferry user add NAME --users FILE
";

/// The whole file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsersFile {
    /// Base64 of 32 random bytes: the key decoys for unknown users are
    /// derived from (see `UserStore::decoy`). Written by `add_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) decoy_key: Option<String>,
    /// The `[[user]]` tables, in file order.
    #[serde(default)]
    pub(super) user: Vec<UserEntry>,
}

/// One `[[user]]` table, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserEntry {
    name: String,
    /// Signed, so that a negative or huge count gets the range message.
    iterations: i64,
    salt: String,
    stored_key: String,
    server_key: String,
}

impl UserEntry {
    fn new(name: &str, verifier: &Verifier) -> Self {
        Self {
            name: name.to_owned(),
            iterations: i64::from(verifier.iterations),
            salt: BASE64.encode(&verifier.salt),
            stored_key: BASE64.encode(verifier.stored_key),
            server_key: BASE64.encode(verifier.server_key),
        }
    }

    fn verifier(&self) -> Result<Verifier, EntryProblem> {
        validate_name(&self.name).map_err(EntryProblem::Name)?;
        let iterations = check_iterations(self.iterations).ok_or(EntryProblem::Iterations {
            found: self.iterations,
        })?;
        let salt = BASE64
            .decode(&self.salt)
            .map_err(|_| EntryProblem::NotBase64 { field: "salt" })?;
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return Err(EntryProblem::SaltLength { len: salt.len() });
        }
        Ok(Verifier {
            salt,
            iterations,
            stored_key: decode_key(&self.stored_key, "stored_key")?,
            server_key: decode_key(&self.server_key, "server_key")?,
        })
    }
}

fn decode_key(value: &str, field: &'static str) -> Result<[u8; KEY_LEN], EntryProblem> {
    let bytes = BASE64
        .decode(value)
        .map_err(|_| EntryProblem::NotBase64 { field })?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| EntryProblem::KeyLength {
        field,
        len: bytes.len(),
    })
}

/// `Some(count)` if `count` is within [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`].
fn check_iterations(count: i64) -> Option<u32> {
    u32::try_from(count)
        .ok()
        .filter(|count| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(count))
}

/// Whether `name` can be a user's: 1 to [`MAX_NAME_LEN`] bytes, no control
/// characters (so no NUL, SASL PLAIN's separator, and nothing that would
/// garble a log line).
pub fn validate_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        Err(NameProblem::Empty)
    } else if name.len() > MAX_NAME_LEN {
        Err(NameProblem::TooLong { len: name.len() })
    } else if name.chars().any(char::is_control) {
        Err(NameProblem::ControlCharacter)
    } else {
        Ok(())
    }
}

/// Whether `password` can be stored: 1 to [`MAX_PASSWORD_LEN`] bytes, no
/// NUL (SASL PLAIN could not send it).
pub fn validate_password(password: &str) -> Result<(), PasswordProblem> {
    if password.is_empty() {
        Err(PasswordProblem::Empty)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(PasswordProblem::TooLong)
    } else if password.contains('\0') {
        Err(PasswordProblem::Nul)
    } else {
        Ok(())
    }
}

/// The file's text, `None` if it does not exist. At most [`MAX_FILE_LEN`]
/// bytes are read.
pub(super) fn read(path: &Path) -> Result<Option<String>, UsersError> {
    let read_error = |source| UsersError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(UsersError::TooLarge {
            path: path.to_owned(),
            max: MAX_FILE_LEN,
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| UsersError::NotUtf8 {
            path: path.to_owned(),
        })
}

/// The file parsed and every entry checked: its raw form (to rewrite it),
/// the decoy key if it has one, and the verifiers by name.
pub(super) struct Parsed {
    pub(super) file: UsersFile,
    pub(super) decoy_key: Option<[u8; DECOY_KEY_LEN]>,
    pub(super) users: Vec<(String, Verifier)>,
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Parsed, UsersError> {
    let file: UsersFile = toml::from_str(text).map_err(|error| UsersError::Syntax {
        path: path.to_owned(),
        reason: describe(&error, text),
    })?;
    let decoy_key = match &file.decoy_key {
        None => None,
        Some(value) => {
            let bytes = BASE64.decode(value).ok();
            let key = bytes
                .as_deref()
                .and_then(|bytes| <[u8; DECOY_KEY_LEN]>::try_from(bytes).ok());
            Some(key.ok_or_else(|| UsersError::Syntax {
                path: path.to_owned(),
                reason: format!("decoy_key is not {DECOY_KEY_LEN} bytes of base64"),
            })?)
        }
    };
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut users = Vec::with_capacity(file.user.len());
    for (index, entry) in file.user.iter().enumerate() {
        let verifier = entry.verifier().map_err(|problem| UsersError::Entry {
            path: path.to_owned(),
            index,
            name: entry.name.clone(),
            problem,
        })?;
        if let Some(&first) = first_index.get(entry.name.as_str()) {
            return Err(UsersError::Duplicate {
                path: path.to_owned(),
                index,
                first,
                name: entry.name.clone(),
            });
        }
        first_index.insert(&entry.name, index);
        users.push((entry.name.clone(), verifier));
    }
    Ok(Parsed {
        file,
        decoy_key,
        users,
    })
}

/// A TOML error as one line: `line L, column C (user[I]): message`.
fn describe(error: &toml::de::Error, text: &str) -> String {
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // The entry the position falls in: the number of `[[user]]` headers
    // starting before it, less one.
    let headers = before
        .lines()
        .filter(|l| {
            let code = l.split('#').next().unwrap_or_default();
            code.split_whitespace().collect::<String>() == "[[user]]"
        })
        .count();
    match headers.checked_sub(1) {
        Some(index) => format!("line {line}, column {column} (user[{index}]): {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// What [`add_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new entry, after the others.
    New,
    /// The entry of that name replaced, in place.
    Replaced,
}

impl std::fmt::Display for Added {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::New => "added",
            Self::Replaced => "updated",
        })
    }
}

/// Add `name` with `password` to the users file at `path`, or replace its
/// entry (in place, keeping the others as they are). Creates the file if
/// missing.
///
/// The new verifier has a fresh 16-byte random salt and `iterations`
/// rounds (at least [`MIN_ITERATIONS`], RFC 7677 §4). The file is written
/// whole to a temporary file in the same directory (mode 0600 on Unix),
/// synced, then renamed over `path`: a reader sees the old file or the new
/// one, never a mix. The file is rewritten by serialization, so comments
/// other than the standard header are not kept. Two concurrent additions
/// to the same file may lose one of them.
///
/// An existing file must be valid (every entry, as [`super::UserStore::load`]
/// checks): a broken file is reported, not overwritten. A file without a
/// `decoy_key` gets one.
pub fn add_user(
    path: &Path,
    name: &str,
    password: &str,
    iterations: u32,
) -> Result<Added, UsersError> {
    validate_name(name).map_err(|reason| UsersError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    validate_password(password).map_err(UsersError::InvalidPassword)?;
    let iterations = check_iterations(i64::from(iterations)).ok_or(UsersError::Iterations {
        found: i64::from(iterations),
    })?;
    let mut file = match read(path)? {
        Some(text) => parse(path, &text)?.file,
        None => UsersFile::default(),
    };
    if file.decoy_key.is_none() {
        file.decoy_key = Some(BASE64.encode(random::<DECOY_KEY_LEN>()?));
    }
    let verifier = Verifier::derive(password, &random::<SALT_LEN>()?, iterations);
    let entry = UserEntry::new(name, &verifier);
    let added = match file.user.iter_mut().find(|user| user.name == name) {
        Some(existing) => {
            *existing = entry;
            Added::Replaced
        }
        None => {
            file.user.push(entry);
            Added::New
        }
    };
    let write_error = |source| UsersError::Write {
        path: path.to_owned(),
        source,
    };
    let body = toml::to_string(&file).map_err(|error| write_error(io::Error::other(error)))?;
    write_atomically(path, format!("{HEADER}\n{body}").as_bytes()).map_err(write_error)?;
    Ok(added)
}

/// `N` bytes from the operating system's random number generator.
pub(super) fn random<const N: usize>() -> Result<[u8; N], UsersError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| UsersError::Random(error.to_string()))?;
    Ok(bytes)
}

/// Write `contents` to a new file beside `path` (mode 0600 on Unix), sync
/// it, rename it over `path`, and sync the directory.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Some(file_name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        ));
    };
    let suffix: String = random::<8>()
        .map_err(io::Error::other)?
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let temp = dir.join(format!(".{}.{suffix}.tmp", file_name.to_string_lossy()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&temp, path)
        });
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    // Make the rename itself durable; not all systems can sync a directory.
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
