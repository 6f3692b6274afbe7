//! Router identities and record versions.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The id of a router in the mesh (`[router] id` in the configuration).
///
/// Cheap to clone (a shared string); ordered by its text, which is the
/// order every tie-break of the routing protocol uses.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterId(Arc<str>);

impl RouterId {
    /// A router id with this text.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for RouterId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl From<String> for RouterId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

impl Borrow<str> for RouterId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RouterId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The version of a router's record: its instance (which changes, upwards,
/// when the router restarts), then a sequence number within the instance.
/// A newer instance wins over any sequence number of an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Version {
    /// The instance of the router that wrote the record.
    pub instance: u64,
    /// The record's sequence number within that instance.
    pub seq: u64,
}

impl Version {
    /// A version.
    pub fn new(instance: u64, seq: u64) -> Self {
        Self { instance, seq }
    }
}
