//! The users file: who may connect with SASL `SCRAM-SHA-256` or `PLAIN`,
//! stored as SCRAM-SHA-256 verifiers ([RFC 5802] §3, [RFC 7677]), never as
//! passwords.
//!
//! ```toml
//! # Ferry users: SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), never passwords.
//! decoy_key = "base64 of 32 random bytes"
//!
//! [[user]]
//! name = "alice"
//! iterations = 4096
//! salt = "base64…"
//! stored_key = "base64…"
//! server_key = "base64…"
//! ```
//!
//! - [`UserStore::load`] reads and checks a file; [`UserStore::lookup`]
//!   finds a user's verifier; [`UserStore::decoy`] makes one for an unknown
//!   user so that a SCRAM exchange does not reveal who exists;
//!   [`UserStore::check_plain`] checks a PLAIN password in the same time
//!   whether or not the user exists.
//! - [`add_user`] (behind `ferry user add`, see [`command`]) adds or
//!   replaces a user, rewriting the file atomically with mode 0600.
//!
//! The user-facing description is `router/CONFIG.md`, "`[auth]` users file".
//!
//! [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
//! [RFC 7677]: https://www.rfc-editor.org/rfc/rfc7677

pub mod command;
mod error;
mod file;
mod store;

pub use error::{EntryProblem, NameProblem, PasswordProblem, UsersError};
pub use ferry_proto::scram::{MAX_ITERATIONS, MIN_ITERATIONS, Verifier};
pub use file::{Added, add_user, validate_name, validate_password};
pub use store::UserStore;

/// The iteration count `ferry user add` uses unless told otherwise: RFC
/// 7677's minimum, what most SCRAM deployments use. Higher is stronger
/// against an offline guess from a stolen file, but every SCRAM client
/// pays it per connection, and the router per PLAIN check.
pub const DEFAULT_ITERATIONS: u32 = MIN_ITERATIONS;

/// The largest users file read, in bytes (16 MiB).
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// The longest user name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The longest password `add_user` takes, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The salt length `add_user` draws, in bytes.
pub const SALT_LEN: usize = 16;

/// The longest salt a file may hold, in bytes (keeps the
/// server-first-message well under SCRAM's 1 KiB bound).
pub const MAX_SALT_LEN: usize = 64;

/// The length of the decoy key, in bytes.
pub const DECOY_KEY_LEN: usize = 32;

#[cfg(test)]
mod tests;
