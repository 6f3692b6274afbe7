//! Decoding errors. Every decoder in this crate is total: malformed input
//! yields one of these, never a panic or an allocation sized by an untrusted
//! length.

/// Why a byte sequence is not a valid AMQP 1.0 encoding (AMQP 1.0 §1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("truncated input: needed {needed} more bytes")]
    Truncated {
        /// How many more bytes the value claims.
        needed: usize,
    },
    /// A format code that AMQP 1.0 does not define.
    #[error("invalid format code 0x{0:02x}")]
    InvalidFormatCode(u8),
    /// A valid format code in a place that requires another type.
    #[error("expected {expected}, found format code 0x{found:02x}")]
    UnexpectedFormat {
        /// The type the position requires.
        expected: &'static str,
        /// The format code that was there.
        found: u8,
    },
    /// A compound or array whose size or count does not fit its bytes.
    #[error("invalid size or count in {0}")]
    InvalidLength(&'static str),
    /// A map with an odd number of elements.
    #[error("map with odd element count {0}")]
    OddMapCount(u32),
    /// Compound values nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("values nested deeper than {0}")]
    TooDeep(usize),
    /// A string or symbol that is not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A `char` that is not a Unicode scalar value.
    #[error("invalid char U+{0:X}")]
    InvalidChar(u32),
    /// A described type with a descriptor other than the one required.
    #[error("expected descriptor {expected}, found {found}")]
    UnexpectedDescriptor {
        /// The descriptor the position requires.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// A mandatory field of a composite type is absent or null.
    #[error("mandatory field {0} is missing")]
    MissingField(&'static str),
    /// A restricted type with a value outside its choices.
    #[error("invalid value {value} for {ty}")]
    InvalidValue {
        /// The restricted type.
        ty: &'static str,
        /// The offending value.
        value: String,
    },
    /// Bytes left over after a value that must fill its buffer.
    #[error("{0} trailing bytes after value")]
    TrailingBytes(usize),
}

/// Result of a decode.
pub type DecodeResult<T> = Result<T, DecodeError>;
