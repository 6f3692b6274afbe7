//! The mobile address database: which addresses have consumers on which
//! router. Remote routers' records are kept up to date from deltas with
//! sequence numbers; this router's own addresses are [`LocalAddresses`].
//!
//! The state of every router's record at sequence number 0 of any instance
//! is the empty list (a router starts with no consumers), so a delta with
//! sequence number 1 can always be applied, even to a record we never had
//! or one of an older instance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::id::Version;
use super::signature::{Signature, SignatureError};
use super::{ControlMessage, RouterId};

/// One router's addresses with consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MaRecord {
    /// The record's version.
    pub version: Version,
    /// The addresses.
    pub addresses: BTreeSet<Arc<str>>,
    /// The originator's signature of this state, in a mesh that signs.
    pub sig: Option<Signature>,
}

/// What [`MobileDb::apply`] did with an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Update {
    /// The update was new and is applied: flood it on.
    Applied,
    /// We already had it (or something newer): drop it.
    Stale,
    /// A delta that does not follow what we have (a sequence gap, or a new
    /// instance past its first update): ask for the full list.
    Gap,
    /// The record it would make is not signed by its router: dropped.
    Refused(SignatureError),
}

/// Checks the signature of the set an update would make.
pub(crate) type Check<'a> = &'a dyn Fn(&BTreeSet<Arc<str>>) -> Result<(), SignatureError>;

/// Remote routers' mobile address records.
#[derive(Debug, Default)]
pub(crate) struct MobileDb {
    records: BTreeMap<RouterId, MaRecord>,
    /// Counts changes (as `LinkStateDb`'s does).
    generation: u64,
}

impl MobileDb {
    /// The record of `id`.
    pub fn get(&self, id: &RouterId) -> Option<&MaRecord> {
        self.records.get(id)
    }

    /// Every record, by router id.
    pub fn iter(&self) -> impl Iterator<Item = (&RouterId, &MaRecord)> {
        self.records.iter()
    }

    /// Applies an update from the wire, signed by `sig`. With `check`, the
    /// set the update would make is checked first (and built aside, so a
    /// refused update leaves the record as it was).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        id: &RouterId,
        version: Version,
        added: &[String],
        removed: &[String],
        full: bool,
        sig: Option<&Signature>,
        check: Option<Check<'_>>,
    ) -> Update {
        self.generation += 1;
        let ours = self.records.get(id).map(|r| r.version);
        if ours.is_some_and(|v| v >= version) {
            return Update::Stale;
        }
        let new = |a: &String| Arc::from(a.as_str());
        if full {
            let addresses = added.iter().map(new).collect();
            if let Some(Err(e)) = check.map(|c| c(&addresses)) {
                return Update::Refused(e);
            }
            let sig = sig.cloned();
            self.records.insert(
                id.clone(),
                MaRecord {
                    version,
                    addresses,
                    sig,
                },
            );
            return Update::Applied;
        }
        let follows = match ours {
            Some(v) if v.instance == version.instance => version.seq == v.seq + 1,
            // Nothing of this instance yet: its sequence 0 is the empty list.
            _ => version.seq == 1,
        };
        if !follows {
            return Update::Gap;
        }
        let edit = |addresses: &mut BTreeSet<Arc<str>>| {
            for a in removed {
                addresses.remove(a.as_str());
            }
            addresses.extend(added.iter().map(new));
        };
        let record = self.records.entry(id.clone()).or_default();
        if record.version.instance != version.instance {
            record.addresses.clear();
        }
        if let Some(check) = check {
            let mut addresses = record.addresses.clone();
            edit(&mut addresses);
            if let Err(e) = check(&addresses) {
                return Update::Refused(e);
            }
            record.addresses = addresses;
        } else {
            edit(&mut record.addresses);
        }
        record.version = version;
        record.sig = sig.cloned();
        Update::Applied
    }

    /// Router `id` is known to run `instance` now: a record of an older
    /// instance describes consumers of a process that is gone, so it is
    /// reset to the new instance's starting point (empty, sequence 0).
    /// Returns whether addresses were dropped.
    pub fn saw_instance(&mut self, id: &RouterId, instance: u64) -> bool {
        self.generation += 1;
        match self.records.get_mut(id) {
            Some(r) if r.version.instance < instance => {
                let had = !r.addresses.is_empty();
                *r = MaRecord {
                    version: Version::new(instance, 0),
                    ..MaRecord::default()
                };
                had
            }
            _ => false,
        }
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

    /// The full list of `id`, to answer a request.
    pub fn message(&self, id: &RouterId) -> Option<ControlMessage> {
        self.records
            .get(id)
            .map(|r| full_message(id, r.version, &r.addresses, r.sig.clone()))
    }
}

/// A full-list update.
pub(crate) fn full_message(
    id: &RouterId,
    version: Version,
    addresses: &BTreeSet<Arc<str>>,
    sig: Option<Signature>,
) -> ControlMessage {
    ControlMessage::MobileAddresses {
        id: id.clone(),
        instance: version.instance,
        seq: version.seq,
        added: addresses.iter().map(|a| a.to_string()).collect(),
        removed: Vec::new(),
        full: true,
        sig,
    }
}

/// This router's own addresses with consumers, and the changes not yet
/// advertised.
#[derive(Debug, Default)]
pub(crate) struct LocalAddresses {
    /// The sequence number of the last update sent.
    pub seq: u64,
    current: BTreeSet<Arc<str>>,
    added: BTreeSet<Arc<str>>,
    removed: BTreeSet<Arc<str>>,
}

impl LocalAddresses {
    /// `address` has local consumers. Returns whether that is news.
    pub fn add(&mut self, address: &str) -> bool {
        if self.current.contains(address) {
            return false;
        }
        let a: Arc<str> = Arc::from(address);
        self.current.insert(a.clone());
        if !self.removed.remove(address) {
            self.added.insert(a);
        }
        true
    }

    /// `address` has no local consumer any more. Returns whether that is news.
    pub fn remove(&mut self, address: &str) -> bool {
        if !self.current.remove(address) {
            return false;
        }
        if !self.added.remove(address) {
            self.removed.insert(Arc::from(address));
        }
        true
    }

    /// The changes since the last call, as (added, removed), with the
    /// sequence number moved on; `None` if there are none.
    pub fn take_delta(&mut self) -> Option<(Vec<String>, Vec<String>)> {
        if self.added.is_empty() && self.removed.is_empty() {
            return None;
        }
        self.seq += 1;
        let list = |s: &mut BTreeSet<Arc<str>>| {
            std::mem::take(s)
                .into_iter()
                .map(|a| a.to_string())
                .collect()
        };
        Some((list(&mut self.added), list(&mut self.removed)))
    }

    /// The addresses.
    pub fn current(&self) -> &BTreeSet<Arc<str>> {
        &self.current
    }
}
