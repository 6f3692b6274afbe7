//! The hostile-router fault (issue #20): a member of the mesh, holding a
//! valid key of its own, that lies in the routing protocol.
//!
//! The router stays real router code (its core still forwards, releases
//! and settles as any router does); the fault adds control messages of
//! its making to what its own routing sends, on its own connections to
//! its neighbours, every [`TICK`] while the fault lasts:
//!
//! - [`Hostile::Forge`]: records of other routers (the *victims*, one
//!   after the other) that would cut a victim off or lie about its
//!   addresses if believed — a link-state record with a higher version
//!   and no neighbours, address records claiming the victim has every
//!   address in use or none, each signed with the hostile router's own
//!   certificate, with its own key under a certificate naming the victim,
//!   or not at all, records at the highest versions, and advertisements
//!   (RA) of versions the victim never had.
//! - [`Hostile::Replay`]: genuine records of other routers it received
//!   since the fault began (their genuine signatures included), sent
//!   again later, when they are old.
//! - [`Hostile::AdvertiseAll`]: its own address record, validly signed by
//!   its own routing, lists every address any client of the mesh uses:
//!   it attracts traffic it has no consumer for.
//!
//! What the mesh is expected to keep under each is in sim/README.md,
//! *The hostile-router fault*.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ferry_router::core::ToConn;
use ferry_router::routing::{
    Advert, ControlMessage, RecordAuth, RouterId, Signature, VERSION_LIMIT,
};

use crate::fault::{Action, Fault};
use crate::mesh::Mesh;
use crate::pki::{SimAuth, addresses_payload, link_state_payload};

/// How often a hostile router sends its forgeries or replays.
pub const TICK: Duration = Duration::from_millis(100);
/// Captured records kept for replay (the first ones: the oldest).
pub const CAPTURE_LIMIT: usize = 256;
/// Captured records replayed per tick.
pub const REPLAY_PER_TICK: usize = 16;
/// An address no client uses, that forged records claim.
pub const GHOST: &str = "ghost";

/// How a hostile router misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostile {
    /// Forges other routers' records.
    Forge,
    /// Replays other routers' genuine records, late.
    Replay,
    /// Advertises every address in use as its own.
    AdvertiseAll,
}

impl Hostile {
    /// Every kind.
    pub const ALL: [Hostile; 3] = [Hostile::Forge, Hostile::Replay, Hostile::AdvertiseAll];
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hostile::Forge => "forge",
            Hostile::Replay => "replay",
            Hostile::AdvertiseAll => "advertise-all",
        })
    }
}

impl std::str::FromStr for Hostile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "forge" => Ok(Hostile::Forge),
            "replay" => Ok(Hostile::Replay),
            "advertise-all" | "advertise" => Ok(Hostile::AdvertiseAll),
            _ => Err(format!("{s}: forge, replay or advertise-all")),
        }
    }
}

/// What a hostile router has done so far (for tests and the summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostileReport {
    /// Forged records sent (one per neighbour it went to).
    pub forged: u64,
    /// Genuine records replayed (one per neighbour).
    pub replayed: u64,
    /// Genuine records captured for replay.
    pub captured: u64,
    /// Captured signed records whose signature verifies over the payload
    /// as the simulator computes it ([`crate::pki::link_state_payload`]),
    /// and those whose does not (a sign that the copy of the router's
    /// payload went stale, which would make forged signatures fail for
    /// the wrong reason).
    pub captured_verified: (u64, u64),
    /// Addresses it advertises as its own.
    pub lures: Vec<String>,
}

/// A hostile router's state, kept by the mesh while the fault lasts.
#[derive(Debug)]
pub(crate) struct HostileState {
    /// What it does.
    pub how: Hostile,
    /// Its id.
    pub me: RouterId,
    /// Its signer (its own key only); `None` in a mesh that does not sign.
    pub auth: Option<std::sync::Arc<SimAuth>>,
    /// Captured genuine records, oldest first.
    pub captured: Vec<ControlMessage>,
    /// The next captured record to replay.
    pub cursor: usize,
    /// The newest link-state version (instance, sequence) seen of each
    /// other router: forgeries go one ahead of it.
    pub latest_ls: BTreeMap<RouterId, (u64, u64)>,
    /// The same for address records.
    pub latest_ma: BTreeMap<RouterId, (u64, u64)>,
    /// The next victim, by index.
    pub round: usize,
    /// Which injection of the fault this is (its ticks carry it: a tick
    /// of an earlier, healed one does nothing).
    pub generation: u64,
    /// What it has done.
    pub report: HostileReport,
}

/// Keeps `msg` if it is another router's link-state or address record
/// (what [`Node::capture`](crate::router::Node::capture) holds).
pub(crate) fn capture(into: &mut Vec<ControlMessage>, me: &RouterId, msg: &ControlMessage) {
    if into.len() < CAPTURE_LIMIT
        && msg.id() != me
        && matches!(
            msg,
            ControlMessage::LinkState { .. } | ControlMessage::MobileAddresses { .. }
        )
    {
        into.push(msg.clone());
    }
}

impl HostileState {
    /// Takes in records the router received: keeps them for replay (up
    /// to [`CAPTURE_LIMIT`]), learns the victims' versions, and checks the
    /// signed ones against the simulator's copy of the payloads.
    fn absorb(&mut self, msgs: Vec<ControlMessage>) {
        for msg in msgs {
            let auth = self.auth.as_deref();
            let sig_ok = |sig: &Option<Signature>, payload: Vec<u8>| {
                let (auth, sig) = (auth?, sig.as_ref()?);
                Some(auth.check(msg.id(), &payload, sig).is_ok())
            };
            let verdict = match &msg {
                ControlMessage::LinkState {
                    id,
                    instance,
                    seq,
                    neighbors,
                    sig,
                } => {
                    let v = self.latest_ls.entry(id.clone()).or_default();
                    *v = (*v).max((*instance, *seq));
                    sig_ok(
                        sig,
                        link_state_payload(id.as_str(), *instance, *seq, neighbors),
                    )
                }
                ControlMessage::MobileAddresses {
                    id,
                    instance,
                    seq,
                    added,
                    full,
                    sig,
                    ..
                } => {
                    let v = self.latest_ma.entry(id.clone()).or_default();
                    *v = (*v).max((*instance, *seq));
                    // Only a full list's payload can be computed from the
                    // message alone.
                    full.then(|| {
                        sig_ok(sig, addresses_payload(id.as_str(), *instance, *seq, added))
                    })
                    .flatten()
                }
                _ => None,
            };
            match verdict {
                Some(true) => self.report.captured_verified.0 += 1,
                Some(false) => self.report.captured_verified.1 += 1,
                None => {}
            }
            if self.captured.len() < CAPTURE_LIMIT {
                self.report.captured += 1;
                self.captured.push(msg);
            }
        }
    }

    /// The forged records of one tick, about `victim` (instance
    /// `instance` by the simulator's count, if no record of it was seen),
    /// claiming `addresses`.
    fn forgeries(
        &self,
        victim: &RouterId,
        instance: u64,
        addresses: &[String],
    ) -> Vec<ControlMessage> {
        let (ls_instance, ls_seq) = self
            .latest_ls
            .get(victim)
            .copied()
            .unwrap_or((instance, 1000));
        let (ma_instance, ma_seq) = self
            .latest_ma
            .get(victim)
            .copied()
            .unwrap_or((instance, 1000));
        let top = VERSION_LIMIT - 1;
        let mut out = Vec::new();
        // Each forged record three ways: under the hostile router's own
        // certificate, under the victim's name with the hostile key, and
        // unsigned.
        let signed = |payload: Vec<u8>| -> [Option<Signature>; 3] {
            match &self.auth {
                Some(auth) => [
                    auth.sign(&payload).ok(),
                    Some(auth.sign_as(victim.as_str(), &payload)),
                    None,
                ],
                None => [None, None, None],
            }
        };
        // Cut off: no neighbours, one version ahead, and at the top.
        for (i, s) in [
            (ls_instance, ls_seq + 1),
            (ls_instance, top),
            (u64::MAX, u64::MAX),
        ] {
            let payload = link_state_payload(victim.as_str(), i, s, &[]);
            for sig in signed(payload) {
                out.push(ControlMessage::LinkState {
                    id: victim.clone(),
                    instance: i,
                    seq: s,
                    neighbors: Vec::new(),
                    sig,
                });
            }
        }
        // Has every address (and one nobody uses), has none, at the top.
        let mut all: Vec<String> = addresses.to_vec();
        all.push(GHOST.to_string());
        for (i, s, set) in [
            (ma_instance, ma_seq + 1, all.clone()),
            (ma_instance, ma_seq + 1, Vec::new()),
            (ma_instance, top, all),
        ] {
            let payload = addresses_payload(victim.as_str(), i, s, &set);
            for sig in signed(payload) {
                out.push(ControlMessage::MobileAddresses {
                    id: victim.clone(),
                    instance: i,
                    seq: s,
                    added: set.clone(),
                    removed: Vec::new(),
                    full: true,
                    sig,
                });
            }
        }
        // Advertisements of versions the victim never had: in its own
        // name (the sender it names must be the neighbour it came from,
        // so it is dropped) and in the hostile router's, which, in a
        // mesh that signs, proves nothing: the receiver asks for the
        // records and gets the genuine ones.
        for sender in [victim.clone(), self.me.clone()] {
            out.push(ControlMessage::RouterAdvert {
                id: sender,
                adverts: vec![Advert {
                    id: victim.clone(),
                    instance: ls_instance.max(ma_instance),
                    ls_seq: ls_seq + 1,
                    ma_seq: ma_seq + 1,
                }],
            });
        }
        // A delta that follows the victim's record, adding the ghost.
        out.push(ControlMessage::MobileAddresses {
            id: victim.clone(),
            instance: ma_instance,
            seq: ma_seq + 1,
            added: vec![GHOST.to_string()],
            removed: Vec::new(),
            full: false,
            sig: self
                .auth
                .as_ref()
                .map(|a| a.sign_as(victim.as_str(), b"a delta's payload is unknown")),
        });
        out
    }
}

impl Mesh {
    /// The hostile fault begins at router `router`.
    pub(crate) fn hostile_begin(&mut self, router: &str, how: Hostile) {
        let Some(i) = self.router_index(router) else {
            return;
        };
        let auth = self.pki.as_ref().map(|pki| pki.auth_for(router));
        self.hostile_generation += 1;
        self.hostile.insert(
            i,
            HostileState {
                how,
                me: self.ids[i].clone(),
                auth,
                captured: Vec::new(),
                cursor: 0,
                latest_ls: BTreeMap::new(),
                latest_ma: BTreeMap::new(),
                round: 0,
                generation: self.hostile_generation,
                report: HostileReport::default(),
            },
        );
        self.hostile_tick(i);
    }

    /// The hostile fault at `router` ends: its lures are withdrawn (the
    /// addresses it has no consumer of), nothing more is forged.
    pub(crate) fn hostile_end(&mut self, router: &str) {
        let Some(i) = self.router_index(router) else {
            return;
        };
        let Some(state) = self.hostile.remove(&i) else {
            return;
        };
        self.hostile_ended
            .push((router.to_string(), state.how, state.report.clone()));
        if let Some(node) = self.routers[i].node.as_mut() {
            node.capture = None;
            // The addresses it has a consumer of stay (the core's own
            // count of local consumers, not data links to other routers).
            let reports = node.core.address_reports();
            for a in &state.report.lures {
                let real = reports
                    .iter()
                    .any(|r| r.name == *a && r.local_consumers > 0);
                if !real {
                    node.core.mesh().local_address(a, false);
                }
            }
        }
        self.touch(i);
    }

    /// What the hostile router `router` has done (while the fault lasts,
    /// or the last time it ended).
    pub fn hostile_report(&self, router: &str) -> Option<HostileReport> {
        let i = self.router_index(router)?;
        if let Some(s) = self.hostile.get(&i) {
            return Some(s.report.clone());
        }
        self.hostile_ended
            .iter()
            .rev()
            .find(|(r, _, _)| r == router)
            .map(|(_, _, r)| r.clone())
    }

    /// Every hostile router of the run so far, in the order they were
    /// healed, then those still hostile.
    pub(crate) fn hostile_reports(&self) -> Vec<(String, Hostile, HostileReport)> {
        let mut all = self.hostile_ended.clone();
        all.extend(
            self.hostile
                .iter()
                .map(|(i, s)| (self.routers[*i].id.clone(), s.how, s.report.clone())),
        );
        all
    }

    /// How many deliveries router `id`'s core has routed, and released for
    /// want of a consumer (`None` if it is down).
    pub fn routed_by(&self, id: &str) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let node = self.routers[self.router_index(id)?].node.as_ref()?;
        let s = &node.core.stats;
        Some((s.routed.load(Relaxed), s.released_no_route.load(Relaxed)))
    }

    /// Signatures made, checked and refused by every router so far
    /// (`None` in a mesh that does not sign).
    pub fn signatures(&self) -> Option<(u64, u64, u64)> {
        self.pki.as_ref().map(|p| p.counts())
    }

    /// The addresses active [`Hostile::AdvertiseAll`] routers lure traffic
    /// to, each with the router: the invariants that cannot hold for them
    /// are relaxed: the address check expects the hostile router among
    /// the routers of each (sim/README.md, *The hostile-router fault*).
    pub(crate) fn lures(&self) -> Vec<(usize, &str)> {
        self.hostile
            .iter()
            .filter(|(_, s)| s.how == Hostile::AdvertiseAll)
            .flat_map(|(i, s)| s.report.lures.iter().map(|a| (*i, a.as_str())))
            .collect()
    }

    /// Every address a client of the mesh uses, as routed.
    fn addresses_in_use(&self) -> Vec<String> {
        let mut all: Vec<String> = self.clients.iter().map(|c| c.routed_address()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// One tick of hostile router `i`: what it received since is taken in,
    /// and its forgeries, replays or lures go out; the next tick is
    /// scheduled while the fault lasts.
    pub(crate) fn hostile_tick(&mut self, i: usize) {
        self.hostile_tick_of(i, None);
    }

    /// A scheduled tick of the hostile fault's injection `generation` at
    /// `router` (nothing if that injection has been healed).
    pub(crate) fn hostile_scheduled_tick(&mut self, router: &str, generation: u64) {
        if let Some(i) = self.router_index(router) {
            self.hostile_tick_of(i, Some(generation));
        }
    }

    fn hostile_tick_of(&mut self, i: usize, generation: Option<u64>) {
        if generation.is_some_and(|g| self.hostile.get(&i).is_none_or(|s| s.generation != g)) {
            return;
        }
        let addresses = self.addresses_in_use();
        let n = self.routers.len();
        let instances: Vec<u64> = self.routers.iter().map(|r| r.instance).collect();
        let Some(mut state) = self.hostile.remove(&i) else {
            return;
        };
        let mut sends: Vec<ControlMessage> = Vec::new();
        if let Some(node) = self.routers[i].node.as_mut() {
            let taken = node.capture.replace(Vec::new()).unwrap_or_default();
            state.absorb(taken);
            match state.how {
                Hostile::Forge if n > 1 => {
                    let v = (i + 1 + state.round % (n - 1)) % n;
                    state.round += 1;
                    let victim = self.ids[v].clone();
                    sends = state.forgeries(&victim, instances[v], &addresses);
                }
                Hostile::Replay if !state.captured.is_empty() => {
                    for _ in 0..REPLAY_PER_TICK.min(state.captured.len()) {
                        let k = state.cursor % state.captured.len();
                        sends.push(state.captured[k].clone());
                        state.cursor += 1;
                    }
                }
                Hostile::AdvertiseAll => {
                    // Again every tick: a restart of the router, or a new
                    // client's address, is covered too.
                    for a in &addresses {
                        node.core.mesh().local_address(a, true);
                    }
                    state.report.lures = addresses.clone();
                }
                _ => {}
            }
            let neighbours = node.core.mesh().neighbour_conns();
            for (to, _) in &neighbours {
                for m in &sends {
                    node.core.mesh().post(to, ToConn::Control(m.clone()));
                }
            }
            let count = (sends.len() * neighbours.len()) as u64;
            match state.how {
                Hostile::Forge => state.report.forged += count,
                Hostile::Replay => state.report.replayed += count,
                Hostile::AdvertiseAll => {}
            }
        }
        let generation = state.generation;
        self.hostile.insert(i, state);
        self.touch(i);
        let router = self.routers[i].id.clone();
        self.schedule(
            self.clock.elapsed() + TICK,
            Action::HostileTick { router, generation },
        );
    }
}

impl Fault {
    /// The hostile router and its kind, for a hostile fault.
    pub fn hostile(&self) -> Option<(&str, Hostile)> {
        match self {
            Fault::Hostile { router, how } => Some((router, *how)),
            _ => None,
        }
    }
}
