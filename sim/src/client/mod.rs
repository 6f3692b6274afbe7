//! Simulated AMQP clients: a real `ferry_proto` client engine per
//! connection, driven by a small application (a producer or a consumer)
//! that records everything it does in the [`Ledger`].

mod consumer;
mod producer;

pub use consumer::{Consumer, ConsumerSpec, OutcomeWeights};
pub use producer::{Producer, ProducerSpec};

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::definitions::{Role, Source, Target, TargetTerminus};
use ferry_proto::engine::{Connection, ConnectionConfig, Event, LinkId, LinkSpec, SessionId};

use crate::ledger::Ledger;
use crate::log::EventLog;
use crate::rng::SimRng;
use crate::violation::{Invariant, Violation};

/// What a client's application may touch while it runs.
pub struct Ctx<'a> {
    /// Now.
    pub now: Instant,
    /// Now, as virtual time since the start.
    pub at: Duration,
    /// The run's ledger.
    pub ledger: &'a mut Ledger,
    /// The run's log.
    pub log: &'a mut EventLog,
    /// Failed invariants.
    pub violations: &'a mut Vec<Violation>,
}

impl Ctx<'_> {
    fn note(&mut self, who: &str, what: impl std::fmt::Display) {
        self.log.push(self.at, who, what);
    }

    fn fail(&mut self, (invariant, detail): (Invariant, String)) {
        self.violations
            .push(Violation::new(self.at, invariant, detail));
    }
}

/// What a client does.
#[derive(Debug)]
pub enum App {
    /// Sends messages.
    Producer(Producer),
    /// Receives them.
    Consumer(Consumer),
}

/// A client's connection to its router.
#[derive(Debug)]
pub struct ClientConn {
    /// The simulator's connection id.
    pub id: u64,
    /// The client engine.
    pub engine: Connection,
    session: Option<SessionId>,
    link: Option<LinkId>,
    attached: bool,
    reattach_at: Option<Instant>,
}

/// One simulated client, attached to one router for its whole life.
#[derive(Debug)]
pub struct SimClient {
    /// Its index (also the producer number in message keys).
    pub index: usize,
    /// Its name (container id), e.g. `c3`.
    pub name: String,
    /// The router it connects to.
    pub router: usize,
    /// Its application.
    pub app: App,
    /// The connection, while there is one.
    pub conn: Option<ClientConn>,
    /// When to try to connect again.
    pub reconnect_at: Option<Instant>,
    /// Asked to stop: detached, and stays so.
    pub stopped: bool,
    /// Closed its connection for good (a consumer that answered all it
    /// wanted): never connects again.
    pub closed: bool,
    backoff: Duration,
    links: u32,
    tags: u64,
    rng: SimRng,
    /// Its virtual host (the `hostname` of its open), under a policy.
    pub vhost: Option<String>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const REATTACH: Duration = Duration::from_millis(200);

impl SimClient {
    /// A client that will connect to `router` at `start`.
    pub fn new(index: usize, router: usize, app: App, start: Instant, rng: SimRng) -> Self {
        Self {
            index,
            name: format!("c{index}"),
            router,
            app,
            conn: None,
            reconnect_at: Some(start),
            stopped: false,
            closed: false,
            backoff: MIN_BACKOFF,
            links: 0,
            tags: 0,
            rng,
            vhost: None,
        }
    }

    /// The address it sends to or receives from.
    pub fn address(&self) -> &str {
        match &self.app {
            App::Producer(p) => &p.spec.address,
            App::Consumer(c) => &c.spec.address,
        }
    }

    /// Its address as the routers name it: scoped to its vhost, if it has
    /// one (`ferry_router::policy::scoped`).
    pub fn routed_address(&self) -> String {
        match &self.vhost {
            Some(v) => ferry_router::policy::scoped(v, self.address()),
            None => self.address().to_string(),
        }
    }

    /// A new engine for a connection attempt.
    pub fn engine(&self, now: Instant) -> Connection {
        Connection::client(
            ConnectionConfig {
                container_id: self.name.clone(),
                hostname: self.vhost.clone(),
                idle_timeout: Some(Duration::from_secs(60)),
                ..ConnectionConfig::default()
            },
            now,
        )
    }

    /// A connection was made.
    pub fn connected(&mut self, id: u64, engine: Connection) {
        self.reconnect_at = None;
        self.conn = Some(ClientConn {
            id,
            engine,
            session: None,
            link: None,
            attached: false,
            reattach_at: None,
        });
    }

    /// The connection failed or ended: try again after a backoff.
    pub fn disconnected(&mut self, ctx: &mut Ctx<'_>) {
        if self.conn.take().is_some() {
            self.link_lost(ctx);
        }
        if self.closed {
            self.reconnect_at = None;
            return;
        }
        let wait = self.jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.reconnect_at = Some(ctx.now + wait);
    }

    /// Whether its link is attached.
    pub fn is_attached(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.attached)
    }

    /// A producer's link credit (0 if not attached, a consumer, or an
    /// anonymous sender, whose credit does not depend on consumers).
    pub fn credit(&self) -> u32 {
        match (&self.app, &self.conn) {
            (App::Producer(p), Some(c)) if c.attached && !p.spec.anonymous => {
                c.link.map_or(0, |l| c.engine.credit(l))
            }
            _ => 0,
        }
    }

    /// Its link's credit, whatever its role (0 if not attached).
    pub fn link_credit(&self) -> u32 {
        self.conn
            .as_ref()
            .filter(|c| c.attached)
            .and_then(|c| c.link.map(|l| c.engine.credit(l)))
            .unwrap_or(0)
    }

    /// Detaches and stays detached.
    pub fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        if let Some(c) = self.conn.as_mut()
            && let Some(link) = c.link
        {
            let _ = c.engine.detach(link, true, None);
            ctx.note(&self.name, "detaching (stopped)");
        }
    }

    /// Handles engine events and lets the application act. Returns whether
    /// anything happened.
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        loop {
            let Some(ev) = self.conn.as_mut().and_then(|c| c.engine.poll_event()) else {
                break;
            };
            progress = true;
            self.event(ev, ctx);
        }
        progress |= self.maybe_reattach(ctx);
        let Some(c) = self.conn.as_mut() else {
            return progress;
        };
        let (Some(link), true) = (c.link, c.attached) else {
            return progress;
        };
        let acted = match &mut self.app {
            App::Producer(p) => p.act(
                self.index,
                &mut c.engine,
                link,
                &mut self.tags,
                &self.name,
                ctx,
            ),
            App::Consumer(k) => k.act(
                &mut c.engine,
                link,
                &mut self.rng,
                self.index,
                &self.name,
                ctx,
            ),
        };
        if matches!(&self.app, App::Consumer(k) if k.leaving()) {
            self.closed = true;
            self.stopped = true;
        }
        progress | acted
    }

    /// When the application next wants to act, if it is waiting on time.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let c = self.conn.as_ref()?;
        if let Some(t) = c.reattach_at {
            return Some(t);
        }
        if !c.attached {
            return None;
        }
        match &self.app {
            App::Producer(p) => p.next_wakeup(c.link.map_or(0, |l| c.engine.credit(l))),
            App::Consumer(k) => k.next_wakeup(),
        }
    }

    fn event(&mut self, ev: Event, ctx: &mut Ctx<'_>) {
        match ev {
            Event::Opened { .. } => {
                self.backoff = MIN_BACKOFF;
                if let Some(c) = self.conn.as_mut() {
                    c.session = c.engine.begin_session().ok();
                }
            }
            Event::SessionBegun { remote: false, .. } => self.attach(ctx),
            Event::Attached { link, attach } => {
                let refused = match attach.role {
                    Role::Sender => attach.source.is_none(),
                    Role::Receiver => attach.target.is_none(),
                };
                if refused {
                    ctx.note(&self.name, "attach refused");
                    return;
                }
                let address = self.address().to_string();
                if let Some(c) = self.conn.as_mut().filter(|c| c.link == Some(link)) {
                    c.attached = true;
                    ctx.note(&self.name, format_args!("attached to {address}"));
                    if let App::Consumer(k) = &mut self.app {
                        k.attached(&mut c.engine, link);
                    }
                }
            }
            Event::Detached { link, error, .. } => {
                let ours = self.conn.as_ref().is_some_and(|c| c.link == Some(link));
                if ours {
                    ctx.note(
                        &self.name,
                        format_args!(
                            "detached ({})",
                            error.map_or("no error".into(), |e| e.condition.to_string())
                        ),
                    );
                    self.link_lost(ctx);
                    if let Some(c) = self.conn.as_mut() {
                        c.link = None;
                        c.attached = false;
                        if !self.stopped && c.engine.is_open() {
                            c.reattach_at = Some(ctx.now + REATTACH);
                        }
                    }
                }
            }
            Event::Transfer(t) => {
                if let (App::Consumer(k), Some(c)) = (&mut self.app, self.conn.as_mut()) {
                    k.transfer(t, self.index, &self.name, &mut c.engine, ctx);
                }
            }
            Event::Disposition {
                delivery,
                state,
                settled,
                ..
            } => {
                if let App::Producer(p) = &mut self.app {
                    p.disposition(delivery, state, settled, &self.name, ctx);
                }
            }
            Event::Closed { error, .. } => {
                let why = error.map_or("no error".into(), |e| e.condition.to_string());
                ctx.note(&self.name, format_args!("connection closed ({why})"));
            }
            Event::Authenticated { .. }
            | Event::SaslInit { .. }
            | Event::SaslResponse { .. }
            | Event::SessionBegun { .. }
            | Event::SessionEnded { .. }
            | Event::AttachRequested { .. }
            | Event::Credit { .. }
            | Event::Available { .. }
            | Event::Drained { .. } => {}
        }
    }

    fn attach(&mut self, ctx: &mut Ctx<'_>) {
        if self.stopped {
            return;
        }
        let address = self.address().to_string();
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        let Some(session) = c.session else {
            return;
        };
        self.links += 1;
        let (role, source, target) = match &self.app {
            App::Producer(p) if p.spec.anonymous => (
                Role::Sender,
                Some(Source::default()),
                Some(TargetTerminus::Target(Target::default())),
            ),
            App::Producer(_) => (
                Role::Sender,
                Some(Source::default()),
                Some(TargetTerminus::Target(Target::new(address.as_str()))),
            ),
            App::Consumer(_) => (
                Role::Receiver,
                Some(Source::new(address.as_str())),
                Some(TargetTerminus::Target(Target::default())),
            ),
        };
        let spec = LinkSpec {
            name: format!("{}-{}", self.name, self.links),
            role,
            source,
            target,
            ..LinkSpec::default()
        };
        c.link = c.engine.attach(session, spec).ok();
        c.reattach_at = None;
        ctx.note(&self.name, format_args!("attaching to {address}"));
    }

    fn maybe_reattach(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let due = self
            .conn
            .as_ref()
            .and_then(|c| c.reattach_at)
            .is_some_and(|t| t <= ctx.now);
        if due {
            self.attach(ctx);
        }
        due
    }

    fn link_lost(&mut self, ctx: &mut Ctx<'_>) {
        match &mut self.app {
            App::Producer(p) => p.link_lost(&self.name, ctx),
            App::Consumer(k) => k.link_lost(),
        }
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        self.rng.duration(d / 2, d * 3 / 2)
    }
}

/// A 64-bit FNV-1a hash of message bytes, to spot corrupted bodies.
pub fn body_hash(body: &Bytes) -> u64 {
    body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
