//! Faults the simulator can inject, and what healing each means.

use std::fmt;
use std::time::Duration;

use crate::hostile::Hostile;
use crate::tap::Tamper;

/// A fault. Injecting one and healing it are separate steps, so that a
/// schedule can overlap faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The router's process dies: every connection drops at once (peers
    /// see EOF). Healing restarts it with a new instance number; its
    /// clients reconnect.
    Kill {
        /// The router.
        router: String,
    },
    /// The link's connection is reset (both ends see EOF) and cannot be
    /// made again until healed.
    Cut {
        /// One end.
        a: String,
        /// The other.
        b: String,
    },
    /// These routers are cut off from the others, silently: bytes
    /// crossing vanish and nobody sees EOF, so HELLO ageing has to notice.
    /// Healing resets the connections that crossed (new ones are made).
    Partition {
        /// One side of the partition.
        routers: Vec<String>,
    },
    /// One link falls silent, as a partition of two routers would.
    Blackhole {
        /// One end.
        a: String,
        /// The other.
        b: String,
    },
    /// The link drops everything from `from` to `to`, silently, without
    /// closing; the other direction still delivers (a one-way black
    /// hole: a bad route or firewall rule on one side). No connection
    /// can be made over it (a handshake needs both ways).
    OneWay {
        /// The sender whose bytes vanish.
        from: String,
        /// The receiver that hears nothing.
        to: String,
    },
    /// Frames on the link take `extra` longer (in order).
    Delay {
        /// One end.
        a: String,
        /// The other.
        b: String,
        /// Added latency.
        extra: Duration,
    },
    /// A consumer takes `delay` longer per message.
    SlowConsumer {
        /// The consumer's client index.
        client: usize,
        /// Added processing time.
        delay: Duration,
    },
    /// The router, a member of the mesh with a valid key of its own, lies
    /// in the routing protocol (see [`Hostile`] and `crate::hostile`):
    /// forges other routers' records, replays old genuine ones, or
    /// advertises every address in use as its own. Healing stops it (and
    /// withdraws the addresses it advertised without a consumer).
    Hostile {
        /// The hostile router.
        router: String,
        /// What it does.
        how: Hostile,
    },
    /// A deliberately injected bug: frames from `from` to `to` are
    /// rewritten (see [`Tamper`]). Only for showing that invariants catch
    /// bugs; never part of a random schedule.
    Tamper {
        /// The sending router.
        from: String,
        /// The receiving router.
        to: String,
        /// What is done to the frames.
        how: Tamper,
    },
}

impl Fault {
    /// Whether the fault changes the topology the tables must reflect.
    pub fn changes_topology(&self) -> bool {
        matches!(
            self,
            Fault::Kill { .. }
                | Fault::Cut { .. }
                | Fault::Partition { .. }
                | Fault::Blackhole { .. }
                | Fault::OneWay { .. }
        )
    }
}

/// The kinds of topology change the convergence report breaks down, in
/// the order it lists them, with the target for their 95th percentile
/// (issue #17), if there is one.
pub const CHANGE_KINDS: &[(&str, Option<Duration>)] = &[
    (KILL, Some(Duration::from_millis(50))),
    (CUT, None),
    (PARTITION, Some(Duration::from_secs(1))),
    (BLACKHOLE, Some(Duration::from_secs(1))),
    (ONEWAY, Some(Duration::from_secs(1))),
    (HEAL_KILL, Some(Duration::from_secs(1))),
    (HEAL_CUT, Some(Duration::from_secs(1))),
    (HEAL_PARTITION, Some(Duration::from_secs(1))),
    (HEAL_BLACKHOLE, Some(Duration::from_secs(1))),
    (HEAL_ONEWAY, Some(Duration::from_secs(1))),
    (HEAL_ALL, Some(Duration::from_secs(1))),
];

const KILL: &str = "router kill";
const CUT: &str = "link cut";
const PARTITION: &str = "silent partition";
const BLACKHOLE: &str = "black hole";
const ONEWAY: &str = "one-way black hole";
const HEAL_ONEWAY: &str = "heal: one-way ended";
const HEAL_KILL: &str = "heal: router restart";
const HEAL_CUT: &str = "heal: link restored";
const HEAL_PARTITION: &str = "heal: partition ended";
const HEAL_BLACKHOLE: &str = "heal: black hole ended";
/// The kind of the final `heal everything` of a scenario.
pub const HEAL_ALL: &str = "heal: everything";

impl Fault {
    /// The kind of topology change injecting it is, for the convergence
    /// report (`None`: it changes no topology).
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Fault::Kill { .. } => Some(KILL),
            Fault::Cut { .. } => Some(CUT),
            Fault::Partition { .. } => Some(PARTITION),
            Fault::Blackhole { .. } => Some(BLACKHOLE),
            Fault::OneWay { .. } => Some(ONEWAY),
            _ => None,
        }
    }

    /// The kind of topology change healing it is.
    pub fn heal_kind(&self) -> Option<&'static str> {
        match self {
            Fault::Kill { .. } => Some(HEAL_KILL),
            Fault::Cut { .. } => Some(HEAL_CUT),
            Fault::Partition { .. } => Some(HEAL_PARTITION),
            Fault::Blackhole { .. } => Some(HEAL_BLACKHOLE),
            Fault::OneWay { .. } => Some(HEAL_ONEWAY),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { router } => write!(f, "kill {router}"),
            Fault::Cut { a, b } => write!(f, "cut {a}-{b}"),
            Fault::Partition { routers } => write!(f, "partition {{{}}}", routers.join(",")),
            Fault::Blackhole { a, b } => write!(f, "blackhole {a}-{b}"),
            Fault::OneWay { from, to } => write!(f, "one-way blackhole {from}->{to}"),
            Fault::Delay { a, b, extra } => write!(f, "delay {a}-{b} +{extra:?}"),
            Fault::SlowConsumer { client, delay } => write!(f, "slow c{client} +{delay:?}"),
            Fault::Tamper { from, to, how } => write!(f, "tamper {from}->{to} {how:?}"),
            Fault::Hostile { router, how } => write!(f, "hostile {router} ({how})"),
        }
    }
}

/// Something scheduled at a virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Inject a fault.
    Inject(Fault),
    /// Heal it.
    Heal(Fault),
    /// Check that producers hold credit only where a consumer is
    /// reachable, if the topology has not changed since `epoch`.
    CheckCredit {
        /// The topology epoch the check is for.
        epoch: u64,
    },
    /// The next round of a hostile router's misbehaviour
    /// ([`Fault::Hostile`]).
    HostileTick {
        /// The hostile router.
        router: String,
        /// Which injection of the fault it belongs to.
        generation: u64,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Inject(fault) => write!(f, "inject {fault}"),
            Action::Heal(fault) => write!(f, "heal {fault}"),
            Action::CheckCredit { epoch } => write!(f, "check credit (epoch {epoch})"),
            Action::HostileTick { router, generation } => {
                write!(f, "hostile tick {router} ({generation})")
            }
        }
    }
}
