//! Users file errors: each displays as one line naming the file and, where
//! it applies, the entry (`user[INDEX] (NAME)`, indexes from 0).

use std::fmt;
use std::path::PathBuf;

/// Why the users file could not be read, or a user not added.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file does not exist.
    #[error("users file not found: {}", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read users file {}: {source}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`super::MAX_FILE_LEN`].
    #[error("users file {} is too large: more than {max} bytes", path.display())]
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("users file {} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The path as given.
        path: PathBuf,
    },
    /// The file is not valid TOML, or not of the users file's shape (e.g.
    /// an unknown key, a missing one, a wrong type).
    #[error("{}: {reason}", path.display())]
    Syntax {
        /// The path as given.
        path: PathBuf,
        /// Line, column and what the parser expected.
        reason: String,
    },
    /// One `[[user]]` entry is invalid.
    #[error("{}: user[{index}] ({}): {problem}", path.display(), name.escape_debug())]
    Entry {
        /// The path as given.
        path: PathBuf,
        /// The entry's index among the `[[user]]` tables, from 0.
        index: usize,
        /// Its `name`.
        name: String,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// Two entries with the same name.
    #[error(
        "{}: user[{index}] ({}): duplicate name, already used by user[{first}]",
        path.display(),
        name.escape_debug()
    )]
    Duplicate {
        /// The path as given.
        path: PathBuf,
        /// The second entry's index.
        index: usize,
        /// The first entry's index.
        first: usize,
        /// The name.
        name: String,
    },
    /// A user name given to [`super::add_user`] that the file cannot hold.
    #[error("invalid user name {:?}: {reason}", name)]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: NameProblem,
    },
    /// An iteration count given to [`super::add_user`] out of range.
    #[error(
        "iterations must be between {} (RFC 7677) and {}, found {found}",
        super::MIN_ITERATIONS,
        super::MAX_ITERATIONS
    )]
    Iterations {
        /// The count as given.
        found: i64,
    },
    /// A password given to [`super::add_user`] that cannot be used.
    #[error("invalid password: {0}")]
    InvalidPassword(PasswordProblem),
    /// The new file could not be written.
    #[error("cannot write users file {}: {source}", path.display())]
    Write {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The system's random number generator failed (salts, the decoy key
    /// of an empty store).
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

impl UsersError {
    /// Whether the fault is in the file's contents or in what was asked
    /// (the file or its entries, a name, an iteration count, a password),
    /// as opposed to the system (I/O, randomness). The command line exits
    /// 2 for these, 1 for the others.
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            Self::Read { .. } | Self::Write { .. } | Self::Random(_)
        )
    }
}

/// What is wrong with one `[[user]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryProblem {
    /// The name cannot be a user's.
    Name(NameProblem),
    /// `iterations` out of range.
    Iterations {
        /// The value in the file.
        found: i64,
    },
    /// A field that is not base64 (RFC 4648, standard alphabet, padded).
    NotBase64 {
        /// `salt`, `stored_key` or `server_key`.
        field: &'static str,
    },
    /// `stored_key` or `server_key` not 32 bytes.
    KeyLength {
        /// `stored_key` or `server_key`.
        field: &'static str,
        /// The decoded length.
        len: usize,
    },
    /// `salt` empty or longer than [`super::MAX_SALT_LEN`].
    SaltLength {
        /// The decoded length.
        len: usize,
    },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(problem) => write!(f, "invalid name: {problem}"),
            Self::Iterations { found } => write!(
                f,
                "iterations must be between {} (RFC 7677) and {}, found {found}",
                super::MIN_ITERATIONS,
                super::MAX_ITERATIONS
            ),
            Self::NotBase64 { field } => write!(f, "{field} is not base64"),
            Self::KeyLength { field, len } => {
                write!(f, "{field} is not 32 bytes of base64 (found {len} bytes)")
            }
            Self::SaltLength { len } => write!(
                f,
                "salt must be 1 to {} bytes of base64 (found {len} bytes)",
                super::MAX_SALT_LEN
            ),
        }
    }
}

/// What is wrong with a user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// The empty string.
    Empty,
    /// Longer than [`super::MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A control character (which includes NUL, PLAIN's separator).
    ControlCharacter,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty"),
            Self::TooLong { len } => write!(
                f,
                "{len} bytes long, at most {} allowed",
                super::MAX_NAME_LEN
            ),
            Self::ControlCharacter => f.write_str("contains a control character"),
        }
    }
}

/// What is wrong with a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    /// The empty string.
    Empty,
    /// Longer than [`super::MAX_PASSWORD_LEN`] bytes.
    TooLong,
    /// A NUL character, which SASL PLAIN cannot carry (it separates fields).
    Nul,
}

impl fmt::Display for PasswordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the password is empty"),
            Self::TooLong => write!(
                f,
                "the password is longer than {} bytes",
                super::MAX_PASSWORD_LEN
            ),
            Self::Nul => f.write_str("the password contains NUL, which SASL PLAIN cannot carry"),
        }
    }
}
