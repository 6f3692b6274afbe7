//! Identifiers the engine hands to its user. They are never reused within
//! a connection, so a stale id can only miss, never hit another object.

/// A session of this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u32);

/// A link of this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub(crate) u64);

impl LinkId {
    /// The raw number, for logs and maps keyed across connections.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl SessionId {
    /// The raw number, for logs.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl LinkId {
    /// A link id from a raw number: for tests and tables outside the
    /// engine that need a placeholder. Ids from the engine never collide
    /// with each other, but may with one made here.
    pub fn from_raw(n: u64) -> Self {
        LinkId(n)
    }
}
