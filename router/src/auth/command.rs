//! `ferry user add NAME --users FILE [--iterations N]`: the command's work,
//! kept out of `main.rs`.

use std::io::{self, BufRead, IsTerminal};
use std::path::Path;

use super::error::{PasswordProblem, UsersError};
use super::file::{add_user, validate_name, validate_password};
use super::{MAX_ITERATIONS, MAX_PASSWORD_LEN, MIN_ITERATIONS};

/// Why `ferry user add` failed.
#[derive(Debug, thiserror::Error)]
pub enum UserAddError {
    /// The two passwords typed at the terminal differ.
    #[error("the passwords do not match")]
    Mismatch,
    /// The password could not be read (terminal or standard input).
    #[error("cannot read the password: {0}")]
    Read(#[source] io::Error),
    /// The first line of standard input is not UTF-8.
    #[error("the password on standard input is not UTF-8")]
    NotUtf8,
    /// The name, iteration count, password or file is wrong, or the file
    /// could not be written.
    #[error(transparent)]
    Users(#[from] UsersError),
}

impl UserAddError {
    /// Whether this is a usage or configuration problem (exit status 2)
    /// rather than a failure of the system (exit status 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Mismatch | Self::NotUtf8 => true,
            Self::Read(_) => false,
            Self::Users(error) => error.is_config(),
        }
    }
}

/// Run `ferry user add`: check the name and count, read the password (see
/// [`read_password`]), add or replace the user in `users`, and return the
/// line to print: `user NAME added to FILE` or `user NAME updated in FILE`.
pub fn user_add(name: &str, users: &Path, iterations: u32) -> Result<String, UserAddError> {
    // Say what is wrong with the arguments before asking for a password.
    validate_name(name).map_err(|reason| UsersError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(UsersError::Iterations {
            found: i64::from(iterations),
        }
        .into());
    }
    let password = read_password(name)?;
    let added = add_user(users, name, &password, iterations)?;
    let preposition = match added {
        super::Added::New => "to",
        super::Added::Replaced => "in",
    };
    Ok(format!(
        "user {name} {added} {preposition} {}",
        users.display()
    ))
}

/// The new password: typed twice without echo when standard input is a
/// terminal (the prompts go to the terminal), else the first line of
/// standard input.
pub fn read_password(name: &str) -> Result<String, UserAddError> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return first_line(stdin.lock());
    }
    let first = rpassword::prompt_password(format!("New password for {name}: "))
        .map_err(UserAddError::Read)?;
    // Refuse an empty or unusable password before asking again.
    validate_password(&first).map_err(UsersError::InvalidPassword)?;
    let again = rpassword::prompt_password("Same password again: ").map_err(UserAddError::Read)?;
    if first != again {
        return Err(UserAddError::Mismatch);
    }
    Ok(first)
}

/// The first line of `input`, without its line ending (`\n` or `\r\n`);
/// at end of input without a newline, what there is. Reads at most a
/// little more than [`MAX_PASSWORD_LEN`] bytes: a longer line is refused.
pub fn first_line(input: impl BufRead) -> Result<String, UserAddError> {
    let mut line = Vec::new();
    // Room for the longest password and its "\r\n", plus one byte to tell
    // a longer line.
    let limit = MAX_PASSWORD_LEN as u64 + 3;
    input
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(UserAddError::Read)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_LEN {
        return Err(UsersError::InvalidPassword(PasswordProblem::TooLong).into());
    }
    String::from_utf8(line).map_err(|_| UserAddError::NotUtf8)
}
