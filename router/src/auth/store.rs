//! The users loaded in memory: lookups, decoys for unknown users, and the
//! SASL PLAIN check.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use ferry_proto::scram::{KEY_LEN, Verifier};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::error::UsersError;
use super::file;
use super::{DECOY_KEY_LEN, DEFAULT_ITERATIONS, MAX_SALT_LEN, SALT_LEN};

/// The users a router knows: name → SCRAM-SHA-256 [`Verifier`]. Never a
/// password.
///
/// For a name it does not know, [`UserStore::decoy`] makes a verifier
/// that looks like a real one, so that neither SCRAM (same salt every time
/// for the same name, same iteration count as real users, failure only at
/// the proof) nor PLAIN (same PBKDF2 work) tells whether a user exists
/// (the "mock authentication" of PostgreSQL's SCRAM, for one).
#[derive(Clone)]
pub struct UserStore {
    users: HashMap<String, Verifier>,
    decoy_key: [u8; DECOY_KEY_LEN],
    decoy_iterations: u32,
    decoy_salt_len: usize,
}

impl UserStore {
    /// Load and check the users file at `path` (format in
    /// `router/CONFIG.md`, "`[auth]` users file"). A missing file is an
    /// error; so is any invalid entry, a duplicate name, an unknown key, or
    /// a file over [`super::MAX_FILE_LEN`] bytes.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = file::read(path)?.ok_or_else(|| UsersError::NotFound {
            path: path.to_owned(),
        })?;
        let parsed = file::parse(path, &text)?;
        let decoy_key = match parsed.decoy_key {
            Some(key) => key,
            None => derived_decoy_key(&parsed.users)?,
        };
        Ok(Self::with_decoy_key(parsed.users, decoy_key))
    }

    /// A store of `users` (a later duplicate name wins), with a random
    /// decoy key: for tests and for callers that build verifiers
    /// themselves. Fails only if the system has no randomness.
    pub fn from_verifiers(
        users: impl IntoIterator<Item = (String, Verifier)>,
    ) -> Result<Self, UsersError> {
        Ok(Self::with_decoy_key(users, file::random()?))
    }

    fn with_decoy_key(
        users: impl IntoIterator<Item = (String, Verifier)>,
        decoy_key: [u8; DECOY_KEY_LEN],
    ) -> Self {
        let users: HashMap<String, Verifier> = users.into_iter().collect();
        let decoy_iterations = most_common(users.values().map(|v| v.iterations as usize))
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(DEFAULT_ITERATIONS);
        let decoy_salt_len = most_common(users.values().map(|v| v.salt.len()))
            .unwrap_or(SALT_LEN)
            .clamp(1, MAX_SALT_LEN);
        Self {
            users,
            decoy_key,
            decoy_iterations,
            decoy_salt_len,
        }
    }

    /// The verifier of user `name`, if there is one.
    pub fn lookup(&self, name: &str) -> Option<&Verifier> {
        self.users.get(name)
    }

    /// A fake verifier for a user that does not exist: the same for the
    /// same name every time (its salt is what a SCRAM client sees), the
    /// most common iteration count and salt length of the real users (4096
    /// and 16 bytes for an empty store), and keys that no password gives
    /// (random-looking HMAC output, no PBKDF2: cheap).
    ///
    /// Derived with HMAC-SHA-256 from the store's decoy key: the file's
    /// `decoy_key` (written by `ferry user add`), or, in a file without
    /// one, a key derived from all its entries' secret keys — stable
    /// across restarts until the file changes.
    pub fn decoy(&self, name: &str) -> Verifier {
        Verifier {
            salt: self.decoy_bytes(b"salt", name, self.decoy_salt_len),
            iterations: self.decoy_iterations,
            stored_key: hmac(&self.decoy_key, &[b"stored_key\0", name.as_bytes()]),
            server_key: hmac(&self.decoy_key, &[b"server_key\0", name.as_bytes()]),
        }
    }

    /// The verifier to challenge `name` with in SCRAM: the user's, or the
    /// name's decoy. Either way the exchange goes on to the proof, which a
    /// decoy never accepts.
    pub fn verifier_or_decoy(&self, name: &str) -> Verifier {
        self.lookup(name)
            .cloned()
            .unwrap_or_else(|| self.decoy(name))
    }

    /// SASL PLAIN: whether `password` is user `name`'s. Does the PBKDF2
    /// work of a check whether or not the user exists (against its decoy),
    /// so the time taken does not tell; the comparison is constant-time.
    pub fn check_plain(&self, name: &str, password: &str) -> bool {
        match self.users.get(name) {
            Some(verifier) => verifier.check_password(password),
            None => {
                let decoy = self.decoy(name);
                // Kept, not optimized away: the time is the point.
                std::hint::black_box(decoy.check_password(std::hint::black_box(password)));
                false
            }
        }
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users' names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// `len` bytes for `name` under `label`: HMAC(key, label NUL counter
    /// name) blocks, concatenated.
    fn decoy_bytes(&self, label: &[u8], name: &str, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len.next_multiple_of(KEY_LEN));
        let mut counter = 0u8;
        while bytes.len() < len {
            bytes.extend_from_slice(&hmac(
                &self.decoy_key,
                &[label, b"\0", &[counter], name.as_bytes()],
            ));
            counter = counter.wrapping_add(1);
        }
        bytes.truncate(len);
        bytes
    }
}

impl fmt::Debug for UserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserStore")
            .field("users", &self.users.len())
            .field("decoy_iterations", &self.decoy_iterations)
            .finish_non_exhaustive()
    }
}

/// The decoy key of a file without `decoy_key`: HMAC over every entry's
/// name, salt, count and keys (in name order), secret as long as the keys
/// are. Random for a file with no users (nothing to hide then).
fn derived_decoy_key(users: &[(String, Verifier)]) -> Result<[u8; DECOY_KEY_LEN], UsersError> {
    if users.is_empty() {
        return file::random();
    }
    let mut sorted: Vec<&(String, Verifier)> = users.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"ferry users decoy key v1")
        .expect("HMAC accepts a key of any length");
    for (name, verifier) in sorted {
        for part in [name.as_bytes(), &verifier.salt] {
            Mac::update(&mut mac, &(part.len() as u64).to_be_bytes());
            Mac::update(&mut mac, part);
        }
        Mac::update(&mut mac, &verifier.iterations.to_be_bytes());
        Mac::update(&mut mac, &verifier.stored_key);
        Mac::update(&mut mac, &verifier.server_key);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// The most frequent value (the largest of equally frequent ones).
fn most_common(values: impl Iterator<Item = usize>) -> Option<usize> {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(value, count)| (count, value))
        .map(|(value, _)| value)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts a key of any length");
    for part in parts {
        Mac::update(&mut mac, part);
    }
    mac.finalize().into_bytes().into()
}
