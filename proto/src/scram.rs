//! SCRAM-SHA-256 ([RFC 5802], [RFC 7677]) as pure computation: messages in,
//! messages out, no I/O and no randomness (nonces and salts are
//! parameters).
//!
//! Both sides are typed state machines: each step consumes the state it
//! needs and returns the next one, so a step cannot be repeated or skipped.
//!
//! ```text
//! server: parse_client_first ─ ClientFirst::challenge ─ ServerAwaitFinal::finish
//! client: ScramClient::start ─ ClientAwaitServerFirst::handle ─ ClientAwaitServerFinal::handle
//! ```
//!
//! What this implementation accepts, and why:
//!
//! - No channel binding: the GS2 header is `n,,` or `y,,` (optionally with
//!   `a=` naming the user itself); `p=` is refused. A server that also
//!   offers `SCRAM-SHA-256-PLUS` must refuse `y` ([RFC 5802] §6): see
//!   [`ClientFirst::client_supports_channel_binding`].
//! - An authorization identity (`a=`) is refused unless it equals the user
//!   name: a user acts only as itself.
//! - Passwords are used as their UTF-8 bytes, without SASLprep
//!   ([RFC 4013]); ASCII passwords, and any already in NFKC form without
//!   mapped characters, give the same keys as with SASLprep.
//! - Bounded work: every message is at most [`MAX_MESSAGE_LEN`] bytes, and a
//!   client refuses an iteration count above [`MAX_ITERATIONS`], so a
//!   hostile server cannot make it spin.
//! - Nothing panics, whatever the input.
//!
//! [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
//! [RFC 7677]: https://www.rfc-editor.org/rfc/rfc7677
//! [RFC 4013]: https://www.rfc-editor.org/rfc/rfc4013

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SASL mechanism name ([RFC 7677] §3).
///
/// [RFC 7677]: https://www.rfc-editor.org/rfc/rfc7677
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// The least iteration count to store for a user ([RFC 7677] §4: "at least
/// 4096"). A client accepts smaller counts from a server (down to 1): the
/// rule binds what servers store, and is enforced where verifiers are made.
///
/// [RFC 7677]: https://www.rfc-editor.org/rfc/rfc7677
pub const MIN_ITERATIONS: u32 = 4096;

/// The largest iteration count a client accepts from a server, bounding the
/// PBKDF2 work a hostile server can demand.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The longest SCRAM message either side accepts, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Length of SHA-256 output, and so of every key, proof and signature.
pub const KEY_LEN: usize = 32;

/// What a server stores for a user ([RFC 5802] §3): the salt, the iteration
/// count, `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
/// `ServerKey = HMAC(SaltedPassword, "Server Key")`. Never the password:
/// `StoredKey` verifies a client's proof, `ServerKey` signs the server's
/// answer, and neither lets anyone authenticate as the user.
///
/// `Debug` shows the salt and iteration count only.
///
/// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The salt given to PBKDF2.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count (the `i=` of the server-first-message).
    pub iterations: u32,
    /// `H(ClientKey)`: checks a client's proof.
    pub stored_key: [u8; KEY_LEN],
    /// Signs the server-final-message, proving the server knows the user.
    pub server_key: [u8; KEY_LEN],
}

impl Verifier {
    /// The verifier of `password` with `salt` and `iterations`
    /// (`SaltedPassword = Hi(password, salt, i)`, PBKDF2-HMAC-SHA-256).
    ///
    /// An iteration count of 0 is taken as 1 (PBKDF2 has no 0-round form;
    /// the message grammar needs a positive number). The work is linear in
    /// `iterations`: callers bound it (see [`MIN_ITERATIONS`],
    /// [`MAX_ITERATIONS`]).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let keys = Keys::derive(password, salt, iterations);
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        }
    }

    /// Whether `password` is this verifier's password (SASL PLAIN against
    /// a SCRAM verifier). Does the same PBKDF2 work whatever the outcome,
    /// and compares both keys in constant time.
    pub fn check_password(&self, password: &str) -> bool {
        let keys = Keys::derive(password, &self.salt, self.iterations.max(1));
        let stored = keys.stored_key.ct_eq(&self.stored_key);
        let server = keys.server_key.ct_eq(&self.server_key);
        (stored & server).into()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("salt", &BASE64.encode(&self.salt))
            .field("iterations", &self.iterations)
            .field("stored_key", &"<hidden>")
            .field("server_key", &"<hidden>")
            .finish()
    }
}

/// The keys one password gives ([RFC 5802] §3).
///
/// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
struct Keys {
    client_key: [u8; KEY_LEN],
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl Keys {
    fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, &[b"Client Key"]);
        Self {
            client_key,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }
}

/// HMAC-SHA-256 of the concatenation of `parts`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    // HMAC takes keys of any length (longer ones are hashed): this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts a key of any length");
    for part in parts {
        Mac::update(&mut mac, part);
    }
    mac.finalize().into_bytes().into()
}

fn xor(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The four SCRAM messages, to say which one is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `n,,n=user,r=nonce` (client to server).
    ClientFirst,
    /// `r=nonce,s=salt,i=4096` (server to client).
    ServerFirst,
    /// `c=biws,r=nonce,p=proof` (client to server).
    ClientFinal,
    /// `v=signature` or `e=error` (server to client).
    ServerFinal,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientFirst => "client-first-message",
            Self::ServerFirst => "server-first-message",
            Self::ClientFinal => "client-final-message",
            Self::ServerFinal => "server-final-message",
        })
    }
}

/// Where a SCRAM `saslname` appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    /// The user name (`n=`).
    Username,
    /// The authorization identity (`a=`) of the GS2 header.
    Authzid,
}

impl fmt::Display for NameField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Username => "user name (n=)",
            Self::Authzid => "authorization identity (a=)",
        })
    }
}

/// Why a SCRAM exchange failed. Each variant says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message longer than [`MAX_MESSAGE_LEN`].
    #[error("{message} is {len} bytes; at most {MAX_MESSAGE_LEN} are accepted")]
    TooLong {
        /// Which message.
        message: Message,
        /// Its length.
        len: usize,
    },
    /// A message that is not UTF-8 (the [RFC 5802] §7 grammar is UTF-8 text).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error("{message} is not valid UTF-8")]
    NotUtf8 {
        /// Which message.
        message: Message,
    },
    /// A message containing a NUL character, which no attribute may hold.
    #[error("{message} contains a NUL character; no attribute may hold one")]
    Nul {
        /// Which message.
        message: Message,
    },
    /// The client asked for channel binding (GS2 flag `p=`).
    #[error(
        "client-first-message asks for channel binding (p=); expected GS2 header \"n,,\" or \"y,,\": channel binding is not supported"
    )]
    ChannelBindingNotSupported,
    /// The GS2 header is neither `n,` nor `y,` followed by `,` or `a=NAME,`.
    #[error("client-first-message: expected a GS2 header \"n,,\", \"y,,\" or \"n,a=NAME,\"")]
    InvalidGs2Header,
    /// A mandatory extension (`m=`), which no server understands
    /// ([RFC 5802] §5.1: the exchange must then fail).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error(
        "{message} carries a mandatory extension (m=); expected none: no extension is supported"
    )]
    MandatoryExtension {
        /// Which message.
        message: Message,
    },
    /// An attribute missing where the grammar puts it.
    #[error("{message}: expected attribute \"{attribute}=\" here")]
    MissingAttribute {
        /// Which message.
        message: Message,
        /// The attribute's letter.
        attribute: char,
    },
    /// An optional extension that is not `letter=value`.
    #[error(
        "{message}: expected an extension attribute (a letter, \"=\" and a value) after the known ones"
    )]
    InvalidExtension {
        /// Which message.
        message: Message,
    },
    /// A user name or authorization identity that is empty or holds a `=`
    /// not starting `=2C` (`,`) or `=3D` (`=`) ([RFC 5802] §5.1).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error(
        "invalid {field}: expected a non-empty name with \",\" written \"=2C\" and \"=\" written \"=3D\""
    )]
    InvalidName {
        /// Which name.
        field: NameField,
    },
    /// An authorization identity that is not the user name.
    #[error(
        "authorization identity {authzid:?} is not the user name {username:?}; expected none or the user name itself"
    )]
    AuthzidMismatch {
        /// The `a=` value, decoded.
        authzid: String,
        /// The `n=` value, decoded.
        username: String,
    },
    /// A nonce that is empty or holds characters other than printable ASCII
    /// except `,` ([RFC 5802] §7).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error("{message}: expected a non-empty nonce of printable ASCII characters other than \",\"")]
    InvalidNonce {
        /// Which message (for a nonce given as a parameter, the one it is for).
        message: Message,
    },
    /// An attribute that should be base64 and is not.
    #[error("{message}: attribute \"{attribute}=\": expected base64 (RFC 4648, padded)")]
    InvalidBase64 {
        /// Which message.
        message: Message,
        /// The attribute's letter.
        attribute: char,
    },
    /// A proof or signature that is not 32 bytes.
    #[error(
        "{message}: attribute \"{attribute}=\" holds {len} bytes; expected {KEY_LEN} (SHA-256)"
    )]
    InvalidKeyLength {
        /// Which message.
        message: Message,
        /// The attribute's letter.
        attribute: char,
        /// The decoded length.
        len: usize,
    },
    /// An iteration count that is not a positive decimal number.
    #[error(
        "server-first-message: expected an iteration count, a positive decimal number without leading zeros; found {found:?}"
    )]
    InvalidIterationCount {
        /// The `i=` value.
        found: String,
    },
    /// An iteration count above [`MAX_ITERATIONS`].
    #[error(
        "server-first-message: iteration count {found} is above the limit; expected at most {MAX_ITERATIONS}"
    )]
    TooManyIterations {
        /// The `i=` value.
        found: String,
    },
    /// The server nonce does not extend the client's nonce
    /// ([RFC 5802] §5.1: it starts with the client nonce and adds the
    /// server's own).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error(
        "server-first-message: expected a nonce starting with the client's nonce followed by the server's own"
    )]
    ServerNonceMismatch,
    /// The client-final-message's nonce is not the one of the
    /// server-first-message.
    #[error("client-final-message: expected the nonce of the server-first-message")]
    NonceMismatch,
    /// The client-final-message's `c=` is not the base64 of the GS2 header
    /// of its client-first-message ([RFC 5802] §7; `biws` for `n,,`).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error(
        "client-final-message: channel binding \"c=\" does not match the GS2 header of the client-first-message; expected c={expected}"
    )]
    ChannelBindingMismatch {
        /// The expected `c=` value.
        expected: String,
    },
    /// The client's proof is wrong: a wrong password, or an unknown user.
    #[error("client proof is wrong; expected proof of the user's password")]
    InvalidProof,
    /// The server answered with a server-error (`e=`).
    #[error("server refused the authentication: {0}")]
    ServerError(String),
    /// The server sent an empty salt (refused as [RFC 5802] erratum 2652
    /// recommends).
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    #[error("server-first-message: expected a non-empty salt (s=)")]
    EmptySalt,
    /// The server's signature is wrong: it does not know the user's verifier.
    #[error("server signature is wrong; expected proof that the server knows the user's verifier")]
    ServerSignatureMismatch,
}

impl ScramError {
    /// The [RFC 5802] §7 `server-error-value` that a server sends for this
    /// failure (as `e=VALUE` in a server-final-message), if it answers one.
    /// Never `unknown-user`: an unknown user fails like a wrong password
    /// (§7 allows hiding the real reason "to prevent information
    /// disclosure").
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    pub fn server_error_value(&self) -> &'static str {
        match self {
            Self::TooLong { .. }
            | Self::NotUtf8 { .. }
            | Self::Nul { .. }
            | Self::InvalidGs2Header
            | Self::MissingAttribute { .. }
            | Self::InvalidExtension { .. }
            | Self::InvalidNonce { .. }
            | Self::InvalidBase64 { .. }
            | Self::InvalidKeyLength { .. }
            | Self::InvalidIterationCount { .. } => "invalid-encoding",
            Self::InvalidName { .. } => "invalid-username-encoding",
            Self::MandatoryExtension { .. } => "extensions-not-supported",
            Self::ChannelBindingNotSupported => "channel-binding-not-supported",
            Self::ChannelBindingMismatch { .. } => "channel-bindings-dont-match",
            Self::InvalidProof => "invalid-proof",
            Self::AuthzidMismatch { .. }
            | Self::TooManyIterations { .. }
            | Self::EmptySalt
            | Self::ServerNonceMismatch
            | Self::NonceMismatch
            | Self::ServerError(_)
            | Self::ServerSignatureMismatch => "other-error",
        }
    }
}

// ---------------------------------------------------------------------------
// Message syntax (RFC 5802 §7)
// ---------------------------------------------------------------------------

/// The message as text: bounded, UTF-8, without NUL.
fn message_text(bytes: &[u8], message: Message) -> Result<&str, ScramError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::TooLong {
            message,
            len: bytes.len(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ScramError::NotUtf8 { message })?;
    if text.contains('\0') {
        return Err(ScramError::Nul { message });
    }
    Ok(text)
}

/// The value of `field` if it is `attribute=value`.
fn attribute(field: Option<&str>, attribute: char, message: Message) -> Result<&str, ScramError> {
    field
        .and_then(|field| field.strip_prefix(attribute))
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or(ScramError::MissingAttribute { message, attribute })
}

/// Whether `field` starts a mandatory extension (`reserved-mext`).
fn is_mandatory_extension(field: Option<&str>) -> bool {
    field.is_some_and(|field| field.starts_with("m="))
}

/// Optional extensions (`attr-val = ALPHA "=" value`, `value = 1*value-char`)
/// are ignored, but must be well formed.
fn check_extensions<'a>(
    fields: impl Iterator<Item = &'a str>,
    message: Message,
) -> Result<(), ScramError> {
    for field in fields {
        let bytes = field.as_bytes();
        if bytes.len() < 3 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
            return Err(ScramError::InvalidExtension { message });
        }
    }
    Ok(())
}

/// `printable = %x21-2B / %x2D-7E`, at least one.
fn check_nonce(nonce: &str, message: Message) -> Result<(), ScramError> {
    let printable = |b: u8| (0x21..=0x7e).contains(&b) && b != b',';
    if nonce.is_empty() || !nonce.bytes().all(printable) {
        return Err(ScramError::InvalidNonce { message });
    }
    Ok(())
}

/// Decode a `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an
/// error ([RFC 5802] §5.1: "the server MUST fail the authentication").
///
/// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
fn decode_saslname(encoded: &str, field: NameField) -> Result<String, ScramError> {
    if encoded.is_empty() {
        return Err(ScramError::InvalidName { field });
    }
    let mut decoded = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => decoded.push(','),
            Some("=3D") => decoded.push('='),
            _ => return Err(ScramError::InvalidName { field }),
        }
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// Encode a `saslname`: `=` as `=3D`, `,` as `=2C`.
fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn decode_base64(value: &str, message: Message, attribute: char) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|_| ScramError::InvalidBase64 { message, attribute })
}

/// A 32-byte base64 attribute value (a proof or a signature).
fn decode_key(value: &str, message: Message, attribute: char) -> Result<[u8; KEY_LEN], ScramError> {
    let bytes = decode_base64(value, message, attribute)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| ScramError::InvalidKeyLength {
        message,
        attribute,
        len: bytes.len(),
    })
}

/// `posit-number = %x31-39 *DIGIT`, at most [`MAX_ITERATIONS`].
fn parse_iterations(value: &str) -> Result<u32, ScramError> {
    let bytes = value.as_bytes();
    let well_formed =
        matches!(bytes.first(), Some(b'1'..=b'9')) && bytes.iter().all(u8::is_ascii_digit);
    if !well_formed {
        return Err(ScramError::InvalidIterationCount {
            found: value.to_owned(),
        });
    }
    // At most 7 digits can be within the limit; longer is above it.
    match value.parse::<u32>() {
        Ok(count) if bytes.len() <= 7 && count <= MAX_ITERATIONS => Ok(count),
        _ => Err(ScramError::TooManyIterations {
            found: value.to_owned(),
        }),
    }
}

/// `AuthMessage = client-first-message-bare "," server-first-message ","
/// client-final-message-without-proof` ([RFC 5802] §3).
///
/// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
fn auth_message<'a>(bare: &'a str, server_first: &'a str, without_proof: &'a str) -> [&'a [u8]; 5] {
    [
        bare.as_bytes(),
        b",",
        server_first.as_bytes(),
        b",",
        without_proof.as_bytes(),
    ]
}

// ---------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------

/// Parse a client-first-message (`gs2-header client-first-message-bare`,
/// [RFC 5802] §7): the first step of the server side.
///
/// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    const MESSAGE: Message = Message::ClientFirst;
    let text = message_text(msg, MESSAGE)?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let (flag, rest) = text.split_once(',').ok_or(ScramError::InvalidGs2Header)?;
    let client_supports_channel_binding = match flag {
        "n" => false,
        "y" => true,
        _ if flag.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
        _ => return Err(ScramError::InvalidGs2Header),
    };
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::InvalidGs2Header)?;
    let authzid = match authzid {
        "" => None,
        _ => {
            let encoded = authzid
                .strip_prefix("a=")
                .ok_or(ScramError::InvalidGs2Header)?;
            Some(decode_saslname(encoded, NameField::Authzid)?)
        }
    };
    let gs2_header = &text[..text.len() - bare.len()];

    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    let mut fields = bare.split(',');
    let first = fields.next();
    if is_mandatory_extension(first) {
        return Err(ScramError::MandatoryExtension { message: MESSAGE });
    }
    let username = decode_saslname(attribute(first, 'n', MESSAGE)?, NameField::Username)?;
    let client_nonce = attribute(fields.next(), 'r', MESSAGE)?;
    check_nonce(client_nonce, MESSAGE)?;
    check_extensions(fields, MESSAGE)?;
    if let Some(authzid) = authzid
        && authzid != username
    {
        return Err(ScramError::AuthzidMismatch { authzid, username });
    }
    Ok(ClientFirst {
        gs2_header: gs2_header.to_owned(),
        bare: bare.to_owned(),
        client_nonce: client_nonce.to_owned(),
        username,
        client_supports_channel_binding,
    })
}

/// A parsed client-first-message: who the client says it is, and what the
/// server needs to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    gs2_header: String,
    bare: String,
    client_nonce: String,
    username: String,
    client_supports_channel_binding: bool,
}

impl ClientFirst {
    /// The user name, decoded (`=2C` → `,`, `=3D` → `=`). Not SASLprep'd.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The client's nonce.
    pub fn client_nonce(&self) -> &str {
        &self.client_nonce
    }

    /// Whether the GS2 flag was `y`: the client supports channel binding
    /// but thinks the server does not. A server that offers
    /// `SCRAM-SHA-256-PLUS` must then fail the exchange ([RFC 5802] §6: a
    /// downgrade); one that does not (Ferry today) goes on.
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    pub fn client_supports_channel_binding(&self) -> bool {
        self.client_supports_channel_binding
    }

    /// The server-first-message (`r=` client nonce + `server_nonce`, `s=`
    /// base64 salt, `i=` iterations) and the state awaiting the
    /// client-final-message.
    ///
    /// `verifier` is the user's or, for an unknown user, a decoy made the
    /// same way every time for that name, so that the exchange looks the
    /// same and fails only at the proof, as for a wrong password: the
    /// client cannot tell whether the user exists. `server_nonce` is fresh
    /// randomness from the caller, different for every exchange, printable
    /// ASCII without `,` (e.g. base64 of 18 or more random bytes).
    pub fn challenge(
        self,
        verifier: Verifier,
        server_nonce: &str,
    ) -> Result<(Vec<u8>, ServerAwaitFinal), ScramError> {
        check_nonce(server_nonce, Message::ServerFirst)?;
        let nonce = format!("{}{server_nonce}", self.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations.max(1)
        );
        let message = server_first.clone().into_bytes();
        Ok((
            message,
            ServerAwaitFinal {
                gs2_header: self.gs2_header,
                bare: self.bare,
                server_first,
                nonce,
                verifier,
            },
        ))
    }
}

/// Server state after the server-first-message.
pub struct ServerAwaitFinal {
    gs2_header: String,
    bare: String,
    server_first: String,
    nonce: String,
    verifier: Verifier,
}

impl fmt::Debug for ServerAwaitFinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAwaitFinal")
            .field("bare", &self.bare)
            .field("server_first", &self.server_first)
            .finish_non_exhaustive()
    }
}

impl ServerAwaitFinal {
    /// Verify the client-final-message (`c=` the base64 GS2 header, e.g.
    /// `biws` for `n,,`; `r=` the whole nonce; `p=` the proof, last) and,
    /// when the proof is right, return the server-final-message
    /// `v=ServerSignature`.
    ///
    /// The proof check ([RFC 5802] §3): `ClientKey = ClientProof XOR
    /// HMAC(StoredKey, AuthMessage)`, then `H(ClientKey)` must equal
    /// `StoredKey`, compared in constant time.
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        const MESSAGE: Message = Message::ClientFinal;
        let text = message_text(client_final, MESSAGE)?;
        // client-final-message = client-final-message-without-proof "," proof
        let (without_proof, proof) =
            text.rsplit_once(",p=")
                .ok_or(ScramError::MissingAttribute {
                    message: MESSAGE,
                    attribute: 'p',
                })?;
        let mut fields = without_proof.split(',');
        let channel_binding = decode_base64(attribute(fields.next(), 'c', MESSAGE)?, MESSAGE, 'c')?;
        if channel_binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch {
                expected: BASE64.encode(&self.gs2_header),
            });
        }
        if attribute(fields.next(), 'r', MESSAGE)? != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        check_extensions(fields, MESSAGE)?;
        let proof = decode_key(proof, MESSAGE, 'p')?;

        let auth = auth_message(&self.bare, &self.server_first, without_proof);
        let client_signature = hmac(&self.verifier.stored_key, &auth);
        let client_key = xor(&proof, &client_signature);
        let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        if !bool::from(stored_key.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&self.verifier.server_key, &auth);
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// The client side of one exchange. Start with [`ScramClient::start`].
#[derive(Debug, Clone, Copy)]
pub struct ScramClient;

impl ScramClient {
    /// The client-first-message `n,,n=USER,r=NONCE` (no channel binding, no
    /// authorization identity) and the state awaiting the
    /// server-first-message. `client_nonce` is fresh randomness from the
    /// caller, printable ASCII without `,` (e.g. base64).
    pub fn start(
        username: &str,
        password: &str,
        client_nonce: &str,
    ) -> Result<(Vec<u8>, ClientAwaitServerFirst), ScramError> {
        if username.is_empty() || username.contains('\0') {
            return Err(ScramError::InvalidName {
                field: NameField::Username,
            });
        }
        check_nonce(client_nonce, Message::ClientFirst)?;
        let bare = format!("n={},r={client_nonce}", encode_saslname(username));
        let message = format!("n,,{bare}").into_bytes();
        if message.len() > MAX_MESSAGE_LEN {
            return Err(ScramError::TooLong {
                message: Message::ClientFirst,
                len: message.len(),
            });
        }
        Ok((
            message,
            ClientAwaitServerFirst {
                password: password.to_owned(),
                client_nonce: client_nonce.to_owned(),
                bare,
            },
        ))
    }
}

/// Client state after the client-first-message.
pub struct ClientAwaitServerFirst {
    password: String,
    client_nonce: String,
    bare: String,
}

impl fmt::Debug for ClientAwaitServerFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAwaitServerFirst")
            .field("bare", &self.bare)
            .finish_non_exhaustive()
    }
}

impl ClientAwaitServerFirst {
    /// Answer the server-first-message with the client-final-message
    /// (`c=biws,r=NONCE,p=PROOF`).
    ///
    /// Refuses a nonce that does not start with the client's nonce or adds
    /// nothing to it, an empty salt, and an iteration count above
    /// [`MAX_ITERATIONS`] (the PBKDF2 work is done here: [RFC 5802] §9
    /// warns that a hostile server can make a client spin with a big
    /// count). Counts below [`MIN_ITERATIONS`] are accepted.
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    pub fn handle(
        self,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, ClientAwaitServerFinal), ScramError> {
        const MESSAGE: Message = Message::ServerFirst;
        let text = message_text(server_first, MESSAGE)?;
        // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
        let mut fields = text.split(',');
        let first = fields.next();
        if is_mandatory_extension(first) {
            return Err(ScramError::MandatoryExtension { message: MESSAGE });
        }
        let nonce = attribute(first, 'r', MESSAGE)?;
        check_nonce(nonce, MESSAGE)?;
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::ServerNonceMismatch);
        }
        let salt = decode_base64(attribute(fields.next(), 's', MESSAGE)?, MESSAGE, 's')?;
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        let iterations = parse_iterations(attribute(fields.next(), 'i', MESSAGE)?)?;
        check_extensions(fields, MESSAGE)?;

        let keys = Keys::derive(&self.password, &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = auth_message(&self.bare, text, &without_proof);
        let client_signature = hmac(&keys.stored_key, &auth);
        let proof = xor(&keys.client_key, &client_signature);
        let server_signature = hmac(&keys.server_key, &auth);
        let message = format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes();
        Ok((message, ClientAwaitServerFinal { server_signature }))
    }
}

/// Client state after the client-final-message.
pub struct ClientAwaitServerFinal {
    server_signature: [u8; KEY_LEN],
}

impl fmt::Debug for ClientAwaitServerFinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAwaitServerFinal")
            .finish_non_exhaustive()
    }
}

impl ClientAwaitServerFinal {
    /// Check the server-final-message: `v=` must be the server signature
    /// (compared in constant time), proving the server knows the user's
    /// verifier ([RFC 5802] §3); `e=` reports the server's error.
    ///
    /// [RFC 5802]: https://www.rfc-editor.org/rfc/rfc5802
    pub fn handle(self, server_final: &[u8]) -> Result<(), ScramError> {
        const MESSAGE: Message = Message::ServerFinal;
        let text = message_text(server_final, MESSAGE)?;
        // server-final-message = (server-error / verifier) ["," extensions]
        let mut fields = text.split(',');
        let first = fields.next();
        if let Some(error) = first.and_then(|field| field.strip_prefix("e=")) {
            return Err(ScramError::ServerError(error.to_owned()));
        }
        let signature = decode_key(attribute(first, 'v', MESSAGE)?, MESSAGE, 'v')?;
        check_extensions(fields, MESSAGE)?;
        if bool::from(signature.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

#[cfg(test)]
mod tests;
