//! The link-state database: the latest link-state record of every router
//! known, this router's own included. Records are whole (not deltas), so a
//! newer one simply replaces an older one.

use std::collections::{BTreeMap, HashMap};

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

/// A router's id, its slot and its neighbours as (slot, cost) in id order:
/// what [`LinkStateDb::claims`] gives for each record.
pub(crate) type Claims<'a> = (&'a RouterId, u32, &'a [(u32, u32)]);

/// Every router's latest link-state record.
///
/// Each router id gets a *slot* number when first seen, and each record
/// keeps its neighbours as slots too ([`claims`](Self::claims)): the table
/// computation, run after every batch of changes, then resolves a
/// neighbour by indexing instead of hashing its id (hashing every claim of
/// every record was a tenth of a 500-router simulation). Slots are not
/// reused: there is one per router id ever recorded, as the records of
/// routers out of reach are kept for `purge_after` anyway.
#[derive(Debug, Default)]
pub(crate) struct LinkStateDb {
    records: BTreeMap<RouterId, Stored>,
    slots: HashMap<RouterId, u32>,
    /// Counts changes: what was computed from the records at one count
    /// still holds at the same count.
    generation: u64,
}

#[derive(Debug)]
struct Stored {
    record: LsRecord,
    /// This router's slot.
    slot: u32,
    /// The record's neighbours as (slot, cost), in id order.
    claims: Vec<(u32, u32)>,
}

impl LinkStateDb {
    /// The record of `id`.
    pub fn get(&self, id: &RouterId) -> Option<&LsRecord> {
        self.records.get(id).map(|s| &s.record)
    }

    /// The version we hold for `id`.
    pub fn version(&self, id: &RouterId) -> Option<Version> {
        self.get(id).map(|r| r.version)
    }

    /// Stores `record` for `id` if it is newer than ours (or we have none).
    pub fn offer(&mut self, id: &RouterId, record: LsRecord) -> Offer {
        match self.records.get(id) {
            Some(ours) if ours.record.version == record.version => Offer::Same,
            Some(ours) if ours.record.version > record.version => Offer::Older,
            _ => {
                self.set(id, record);
                Offer::Stored
            }
        }
    }

    /// Replaces the record of `id` whatever its version (our own record).
    pub fn set(&mut self, id: &RouterId, record: LsRecord) {
        self.generation += 1;
        let slot = self.slot(id);
        let claims = record
            .neighbors
            .iter()
            .map(|(n, c)| (self.slot(n), *c))
            .collect();
        self.records.insert(
            id.clone(),
            Stored {
                record,
                slot,
                claims,
            },
        );
    }

    fn slot(&mut self, id: &RouterId) -> u32 {
        let next = self.slots.len() as u32;
        *self.slots.entry(id.clone()).or_insert(next)
    }

    /// The slot of `id`, if it was ever recorded.
    pub fn slot_of(&self, id: &RouterId) -> Option<u32> {
        self.slots.get(id).copied()
    }

    /// How many slots there are: every slot is below it.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: &RouterId) -> bool {
        self.generation += 1;
        self.records.remove(id).is_some()
    }

    /// The count of changes so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every record, by router id.
    pub fn iter(&self) -> impl Iterator<Item = (&RouterId, &LsRecord)> {
        self.records.iter().map(|(id, s)| (id, &s.record))
    }

    /// Every record's router, by id, with its slot and its neighbours as
    /// (slot, cost) in id order.
    pub fn claims(&self) -> impl Iterator<Item = Claims<'_>> {
        self.records
            .iter()
            .map(|(id, s)| (id, s.slot, s.claims.as_slice()))
    }

    /// The record of `id` as a message, to flood or to answer a request.
    pub fn message(&self, id: &RouterId) -> Option<ControlMessage> {
        self.get(id).map(|r| ControlMessage::LinkState {
            id: id.clone(),
            instance: r.version.instance,
            seq: r.version.seq,
            neighbors: r.neighbors.iter().map(|(n, c)| (n.clone(), *c)).collect(),
            sig: r.sig.clone(),
        })
    }
}
