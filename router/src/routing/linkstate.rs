//! The link-state database: the latest link-state record of every router
//! known, this router's own included. Records are whole (not deltas), so a
//! newer one simply replaces an older one.

use std::collections::BTreeMap;

use super::id::Version;
use super::signature::Signature;
use super::{ControlMessage, RouterId};

/// One router's link-state record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LsRecord {
    /// The record's version.
    pub version: Version,
    /// The router's two-way neighbours and the cost it gives each link.
    pub neighbors: BTreeMap<RouterId, u32>,
    /// The originator's signature, in a mesh that signs.
    pub sig: Option<Signature>,
}

/// What [`LinkStateDb::offer`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The record was newer and replaced ours.
    Stored,
    /// We already had this version.
    Same,
    /// Ours is newer.
    Older,
}

/// Every router's latest link-state record.
#[derive(Debug, Default)]
pub(crate) struct LinkStateDb {
    records: BTreeMap<RouterId, LsRecord>,
}

impl LinkStateDb {
    /// The record of `id`.
    pub fn get(&self, id: &RouterId) -> Option<&LsRecord> {
        self.records.get(id)
    }

    /// The version we hold for `id`.
    pub fn version(&self, id: &RouterId) -> Option<Version> {
        self.records.get(id).map(|r| r.version)
    }

    /// Stores `record` for `id` if it is newer than ours (or we have none).
    pub fn offer(&mut self, id: &RouterId, record: LsRecord) -> Offer {
        match self.records.get(id) {
            Some(ours) if ours.version == record.version => Offer::Same,
            Some(ours) if ours.version > record.version => Offer::Older,
            _ => {
                self.records.insert(id.clone(), record);
                Offer::Stored
            }
        }
    }

    /// Replaces the record of `id` whatever its version (our own record).
    pub fn set(&mut self, id: &RouterId, record: LsRecord) {
        self.records.insert(id.clone(), record);
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: &RouterId) -> bool {
        self.records.remove(id).is_some()
    }

    /// Every record, by router id.
    pub fn iter(&self) -> impl Iterator<Item = (&RouterId, &LsRecord)> {
        self.records.iter()
    }

    /// The record of `id` as a message, to flood or to answer a request.
    pub fn message(&self, id: &RouterId) -> Option<ControlMessage> {
        self.records.get(id).map(|r| ControlMessage::LinkState {
            id: id.clone(),
            instance: r.version.instance,
            seq: r.version.seq,
            neighbors: r.neighbors.iter().map(|(n, c)| (n.clone(), *c)).collect(),
            sig: r.sig.clone(),
        })
    }
}
