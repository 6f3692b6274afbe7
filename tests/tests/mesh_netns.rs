//! Silent link failures and saturated links on a real network: `ferry`
//! processes in network namespaces of their own, joined by veth pairs.
//!
//! - a triangle A, B, C whose preferred link A - C is cut silently under
//!   load (iptables drops every packet arriving on it, at both ends: no
//!   FIN, no RST, the senders' stacks unaware, as when a cable is cut):
//!   traffic resumes through B within about a second, and every message
//!   is accepted exactly once;
//! - a link rate-limited with `tc` (token bucket) and saturated both ways
//!   with large messages for 60 s never flaps: each router logs its
//!   neighbour connected once, and never lost.
//!
//! Each namespace also has a veth pair to the test's own namespace, over
//! which the test's clients reach the router's normal listener; the
//! namespaces have no other route, so inter-router traffic takes the
//! links between them only. Namespaces are named after the test process
//! (`ferry-PID-N-X`) and deleted on drop, failing tests included.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 (`ip`, `tc`)
//! and iptables: without them the tests fail and say so (`.ci/run`
//! installs the packages). The figures are printed (`--nocapture`).

#[path = "../support/router.rs"]
mod router;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::definitions::{DeliveryState, SequenceNo};
use ferry_proto::message::{Body, Message};
use ferry_tests::{Ferry, TempDir, WAIT, within};
use router::Pki;

/// Time for a mesh to converge, generously.
const CONVERGE: Duration = Duration::from_secs(20);

/// The target for traffic to resume after a silent cut; the test asserts
/// twice it, as the machine running the tests may be loaded.
const TARGET: Duration = Duration::from_secs(1);

/// Port of every router's normal listener (each namespace has its own).
const CLIENT_PORT: u16 = 5672;
/// Port of every router's inter-router listener.
const MESH_PORT: u16 = 55672;

/// What these tests need, for the failure message.
const NEEDS: &str = "this test runs routers in network namespaces: it needs root (CAP_SYS_ADMIN \
                     and CAP_NET_ADMIN) and the iproute2 (`ip`, `tc`) and iptables commands \
                     (Debian packages iproute2 and iptables; .ci/run installs them)";

/// Runs `program args`, panicking with its output if it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{NEEDS}; cannot run `{program}`: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}\n{NEEDS}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Network namespaces and veth pairs made for one test, deleted on drop
/// (after the routers in them: declare it before them).
struct Net {
    /// The prefix of this test's names: `ferry-PID-N`.
    prefix: String,
    /// A short tag for interface names (15 characters at most).
    tag: String,
    /// Second octet of this test's 10.x.y.0/30 subnets.
    octet: u8,
    namespaces: Vec<String>,
    /// Interfaces in the test's own namespace.
    host_ifaces: Vec<String>,
    links: u8,
}

impl Net {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        for tool in ["ip", "tc", "iptables"] {
            let found = Command::new(tool).arg("-V").output();
            assert!(found.is_ok(), "{NEEDS}; `{tool}` not found");
        }
        Self {
            prefix: format!("ferry-{pid}-{n}"),
            tag: format!("f{}{n}", pid % 1_000_000),
            octet: 100 + ((pid as usize * 4 + n) % 150) as u8,
            namespaces: Vec::new(),
            host_ifaces: Vec::new(),
            links: 0,
        }
    }

    /// Creates namespace `name` (loopback up); returns its full name.
    fn namespace(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        run("ip", &["netns", "add", &full]);
        self.namespaces.push(full.clone());
        run("ip", &["-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// A veth pair between namespaces `a` and `b` (`None`: the test's own)
    /// on a fresh /30: returns (interface, address) at each end.
    fn link(&mut self, a: Option<&str>, b: Option<&str>) -> [(String, Ipv4Addr); 2] {
        let i = self.links;
        self.links += 1;
        let ends = [(a, 1), (b, 2)].map(|(ns, host)| {
            (
                ns.map(str::to_owned),
                format!("{}{}{}", self.tag, ['a', 'b'][host - 1], i),
                Ipv4Addr::new(10, self.octet, i, host as u8),
            )
        });
        let [(_, if_a, _), (_, if_b, _)] = &ends;
        run(
            "ip",
            &["link", "add", if_a, "type", "veth", "peer", "name", if_b],
        );
        for (ns, iface, addr) in &ends {
            let mut ip = vec![];
            match ns {
                Some(ns) => {
                    run("ip", &["link", "set", iface, "netns", ns]);
                    ip.extend(["-n", ns.as_str()]);
                }
                None => self.host_ifaces.push(iface.clone()),
            }
            let cidr = format!("{addr}/30");
            run(
                "ip",
                &[&ip[..], &["addr", "add", &cidr, "dev", iface]].concat(),
            );
            run("ip", &[&ip[..], &["link", "set", iface, "up"]].concat());
        }
        ends.map(|(_, iface, addr)| (iface, addr))
    }

    /// Runs `args` in namespace `ns`.
    fn exec(ns: &str, args: &[&str]) {
        run("ip", &[&["netns", "exec", ns][..], args].concat());
    }
}

/// The `(dropped, overlimits)` counters of the root qdisc of `iface` in
/// `ns` (`tc -s qdisc show`): overlimits counts the packets the token
/// bucket held back, the mark of a link kept full.
fn qdisc_counters(ns: &str, iface: &str) -> (u64, u64) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", iface,
        ])
        .output()
        .expect("run tc");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.split_once(name)
            .and_then(|(_, rest)| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `{name}` in `tc -s qdisc show`:\n{text}"))
    };
    (field("dropped"), field("overlimits"))
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for iface in &self.host_ifaces {
            let _ = Command::new("ip").args(["link", "del", iface]).output();
        }
    }
}

/// A router in a namespace.
struct NsRouter {
    /// The process (killed on drop by `Ferry`).
    ferry: Ferry,
    /// Its normal listener, reached over the namespace's link to the test.
    addr: SocketAddr,
    _dir: TempDir,
}

impl NsRouter {
    /// Starts router `id` in `ns`: a normal listener on `client` (the
    /// namespace's end of its link to the test), an inter-router listener
    /// on every address, and connectors to `connect` (router id, address,
    /// cost), over mutual TLS.
    fn start(ns: &str, id: &str, client: Ipv4Addr, connect: &[(&str, Ipv4Addr, u32)]) -> Self {
        let pki = Pki::mesh();
        let mut toml = format!("[router]\nid = \"{id}\"\nmode = \"interior\"\n\n");
        toml += &pki.profile("mesh", &pki.router_files(id));
        toml += &format!(
            "[[listener]]\nhost = \"{client}\"\nport = {CLIENT_PORT}\nrole = \"normal\"\n\n\
             [[listener]]\nhost = \"0.0.0.0\"\nport = {MESH_PORT}\nrole = \"inter-router\"\n\
             tls = \"mesh\"\nclient_cert = \"required\"\n\n"
        );
        for (peer, addr, cost) in connect {
            // Router certificates name the router id.
            toml += &format!(
                "[[connector]]\nhost = \"{addr}\"\nport = {MESH_PORT}\nrole = \"inter-router\"\n\
                 cost = {cost}\ntls = \"mesh\"\nserver_name = \"{peer}\"\n\n"
            );
        }
        let dir = TempDir::new();
        let path = dir.write("ferry.toml", &toml);
        let mut ferry = Ferry::spawn_under(
            &["ip", "netns", "exec", ns],
            ["run".as_ref(), "--config".as_ref(), path.as_os_str()],
            &[("RUST_LOG", "info,ferry_router::mesh=debug")],
        );
        ferry.wait_listening(2, WAIT);
        Self {
            ferry,
            addr: SocketAddr::from((client, CLIENT_PORT)),
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        within(
            "connecting to a router",
            WAIT,
            Client::connect(self.addr, ClientOptions::default()),
        )
        .await
        .expect("connect to ferry")
    }

    fn log(&self) -> String {
        self.ferry.stderr()
    }
}

/// How many lines of `log` contain `what`.
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Waits until `router`'s log has more than `before` lines with `what`,
/// at most `limit`; returns when it saw it.
async fn log_line(
    router: &NsRouter,
    what: &str,
    before: usize,
    limit: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if count(&router.log(), what) > before {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Message `i` with `pad` bytes of padding: the index ends the body.
fn msg(i: u64, pad: usize) -> Bytes {
    let mut body = vec![0x5a; pad];
    body.extend_from_slice(&i.to_be_bytes());
    Message::new(Body::data(body)).encode()
}

/// The index [`msg`] put in a message.
fn index(payload: &Bytes) -> u64 {
    let tail: [u8; 8] = payload[payload.len() - 8..].try_into().unwrap();
    u64::from_be_bytes(tail)
}

/// What a consumer received: times each index arrived, and bytes.
#[derive(Default)]
struct Consumed {
    seen: HashMap<u64, u32>,
    bytes: u64,
}

/// A consumer on `router` for `address` that accepts everything.
async fn consume(router: &NsRouter, address: &str, credit: u32) -> Arc<Mutex<Consumed>> {
    let mut consumer = router.client().await;
    let rx = consumer.open_receiver(address, credit).await.unwrap();
    let consumed: Arc<Mutex<Consumed>> = Arc::default();
    let sink = consumed.clone();
    tokio::spawn(async move {
        while let Ok(d) = consumer.receive(rx).await {
            {
                let mut c = sink.lock().unwrap();
                *c.seen.entry(index(&d.payload)).or_insert(0) += 1;
                c.bytes += d.payload.len() as u64;
            }
            consumer.accept(&d).unwrap();
            if consumer.credit(rx) < credit / 2 {
                consumer.flow(rx, credit).await.unwrap();
            } else {
                consumer.flush().await.unwrap();
            }
        }
    });
    consumed
}

/// What a producer saw.
#[derive(Default)]
struct Produced {
    /// When each message was first and last sent, by index.
    first_sent: HashMap<u64, Instant>,
    sent_at: HashMap<u64, Instant>,
    /// When each message was accepted, by index.
    accepted: HashMap<u64, Instant>,
    /// Outcomes `modified` (fate unknown: resent) and `released`.
    modified: u64,
    released: u64,
    /// Messages accepted twice (must stay 0).
    twice: u64,
    /// Bytes accepted.
    bytes: u64,
    /// Messages sent and waiting for their outcome, now.
    unsettled: usize,
}

/// A producer on `router` to `address`, with at most `window` messages
/// unsettled, one every `pace` at most (zero: as fast as credit allows),
/// each `pad` bytes of padding plus its index; resends what comes back
/// `modified` or `released`. Stops sending new messages once `stop` is
/// set; the task returns how many distinct messages it sent once every
/// outcome is in.
async fn produce(
    router: &NsRouter,
    address: &str,
    window: usize,
    pace: Duration,
    pad: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Produced>>, tokio::task::JoinHandle<u64>) {
    let mut producer = router.client().await;
    let tx = producer.open_sender(Some(address)).await.unwrap();
    within(
        "credit for the producer",
        CONVERGE,
        producer.wait_credit(tx),
    )
    .await
    .unwrap();
    let produced: Arc<Mutex<Produced>> = Arc::default();
    let record = produced.clone();
    let task = tokio::spawn(async move {
        let mut next = 0u64;
        let mut resend: Vec<u64> = Vec::new();
        let mut unsettled: HashMap<SequenceNo, u64> = HashMap::new();
        let mut last_send = Instant::now() - pace;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if stopping && resend.is_empty() && unsettled.is_empty() {
                return next;
            }
            while unsettled.len() < window
                && producer.credit(tx) > 0
                && last_send.elapsed() >= pace
                && (!resend.is_empty() || !stopping)
            {
                let i = resend.pop().unwrap_or_else(|| {
                    next += 1;
                    next - 1
                });
                let id = producer.send_nowait(tx, msg(i, pad), false).unwrap();
                unsettled.insert(id, i);
                last_send = Instant::now();
                let mut p = record.lock().unwrap();
                p.sent_at.insert(i, last_send);
                p.first_sent.entry(i).or_insert(last_send);
                p.unsettled = unsettled.len();
            }
            producer.flush().await.unwrap();
            let wait = if pace.is_zero() {
                Duration::from_millis(20)
            } else {
                pace
            };
            let Ok(o) = tokio::time::timeout(wait, producer.next_outcome()).await else {
                continue;
            };
            let o = o.unwrap();
            let i = unsettled
                .remove(&o.id)
                .expect("an outcome for a delivery sent");
            let mut p = record.lock().unwrap();
            p.unsettled = unsettled.len();
            match o.state {
                Some(DeliveryState::Accepted) => {
                    if p.accepted.insert(i, Instant::now()).is_some() {
                        p.twice += 1;
                    }
                    p.bytes += (pad + 8) as u64;
                }
                Some(DeliveryState::Modified(_)) => {
                    p.modified += 1;
                    resend.push(i);
                }
                Some(DeliveryState::Released) => {
                    p.released += 1;
                    resend.push(i);
                }
                other => panic!("message {i}: {other:?}"),
            }
        }
    });
    (produced, task)
}

/// Asserts that each of `sent` messages was accepted exactly once and
/// reached the consumer, twice only after a `modified` resend; returns
/// how many reached it twice.
fn assert_exactly_once(what: &str, sent: u64, p: &Produced, c: &Consumed) -> u32 {
    let missing: Vec<u64> = (0..sent).filter(|i| !c.seen.contains_key(i)).collect();
    let duplicates: u32 = c.seen.values().map(|n| n - 1).sum();
    assert_eq!(p.twice, 0, "{what}: messages accepted twice");
    assert_eq!(
        p.accepted.len() as u64,
        sent,
        "{what}: messages never accepted"
    );
    assert!(
        missing.is_empty(),
        "{what}: accepted, never received: {missing:?}"
    );
    assert!(
        u64::from(duplicates) <= p.modified,
        "{what}: {duplicates} messages reached the consumer twice, only {} were resent after \
         `modified`",
        p.modified
    );
    duplicates
}

/// Triangle A, B, C in three namespaces: A dials C directly (cost 1) and
/// B (cost 1), B dials C (cost 1), so A reaches C directly. A producer on
/// A sends to a consumer on C at a steady pace (a message every
/// millisecond at most, up to 50 unsettled; about 200 a second here),
/// resending what comes back `modified` or `released`. The link A - C is then cut silently: iptables in A's and
/// C's namespaces drops every packet arriving on it (nothing is refused,
/// nothing closed: each side's stack goes on sending into the void). A
/// and C must drop each other for silence and A route through B; the
/// figure is the time from the cut to the first message accepted among
/// those sent after it (once both ends are cut; those sent into the dead
/// link come back `modified` and are resent through B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_silently_under_load_is_routed_around_within_a_second() {
    let mut net = Net::new();
    let [ns_a, ns_b, ns_c] = ["a", "b", "c"].map(|n| net.namespace(n));
    let [(_, _), (_, a_client)] = net.link(None, Some(&ns_a));
    let [(_, _), (_, b_client)] = net.link(None, Some(&ns_b));
    let [(_, _), (_, c_client)] = net.link(None, Some(&ns_c));
    let [(a_to_c, _), (c_to_a, c_on_ac)] = net.link(Some(&ns_a), Some(&ns_c));
    let [(_, _), (_, b_on_ab)] = net.link(Some(&ns_a), Some(&ns_b));
    let [(_, _), (_, c_on_bc)] = net.link(Some(&ns_b), Some(&ns_c));
    let test = async {
        let c = NsRouter::start(&ns_c, "C", c_client, &[]);
        let b = NsRouter::start(&ns_b, "B", b_client, &[("C", c_on_bc, 1)]);
        let a = NsRouter::start(
            &ns_a,
            "A",
            a_client,
            &[("C", c_on_ac, 1), ("B", b_on_ab, 1)],
        );
        let consumed = consume(&c, "cut", 100).await;
        // Wait for A to know both paths before the load starts.
        let both = "routing table changed: B via B (cost 1), C via C (cost 1)";
        assert!(
            log_line(&a, both, 0, CONVERGE).await.is_some(),
            "A does not route to C directly with B up:\n{}",
            a.log()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (produced, producing) =
            produce(&a, "cut", 50, Duration::from_millis(2), 64, stop.clone()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let lost = "disconnected: nothing heard from it";
        let (a_before, c_before) = (count(&a.log(), lost), count(&c.log(), lost));
        let (accepted_before, in_flight) = {
            let p = produced.lock().unwrap();
            (p.accepted.len(), p.unsettled)
        };
        // The cut: every packet arriving on the link is dropped, at both
        // ends (two commands: the second end is cut a few milliseconds
        // after the first; the figures count from the first).
        let cut_at = Instant::now();
        Net::exec(
            &ns_a,
            &["iptables", "-I", "INPUT", "-i", &a_to_c, "-j", "DROP"],
        );
        Net::exec(
            &ns_c,
            &["iptables", "-I", "INPUT", "-i", &c_to_a, "-j", "DROP"],
        );
        let cut_done = Instant::now();
        let cut_took = cut_done - cut_at;
        let (a_noticed, c_noticed) = tokio::join!(
            log_line(&a, lost, a_before, 10 * TARGET),
            log_line(&c, lost, c_before, 10 * TARGET)
        );
        let rerouted = loop {
            let first = {
                let p = produced.lock().unwrap();
                p.accepted
                    .iter()
                    .filter(|(i, _)| p.sent_at[i] > cut_done)
                    .map(|(_, t)| *t)
                    .min()
            };
            if let Some(t) = first {
                break t - cut_at;
            }
            assert!(
                cut_at.elapsed() < 10 * TARGET,
                "nothing accepted for {:?} after the cut\nA:\n{}",
                cut_at.elapsed(),
                a.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // (Counted from the start of the cut, though only the messages
        // sent once both ends were cut count: one sent in between may
        // get through before its rule applies.)
        // Steady traffic through B for a while.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let sent = within("every outcome", Duration::from_secs(30), producing)
            .await
            .unwrap();
        // The consumer has seen every accepted message already (the
        // accept came from it).
        let p = produced.lock().unwrap();
        let c_seen = consumed.lock().unwrap();
        // The longest time without an acceptance, from before the cut.
        let mut times: Vec<Instant> = p.accepted.values().copied().collect();
        times.sort();
        let outage = times
            .windows(2)
            .filter(|w| w[1] > cut_at)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let [a_noticed, c_noticed] = [a_noticed, c_noticed].map(|t| t.map(|t| t - cut_at));
        // Messages first sent while the cut was not noticed yet.
        let into_the_void = a_noticed.map_or(0, |t| {
            let window = cut_at..cut_at + t;
            p.first_sent
                .values()
                .filter(|s| window.contains(*s))
                .count()
        });
        let duplicates = assert_exactly_once("silent cut", sent, &p, &c_seen);
        eprintln!(
            "silent cut of A - C (iptables DROP at both ends, {cut_took:?} to apply) under load \
             ({accepted_before} accepted in the 2 s before, {in_flight} unsettled at the cut, \
             {into_the_void} more sent before A noticed): A dropped C after {a_noticed:?}, \
             C dropped A after {c_noticed:?}; first message sent after the cut accepted \
             {rerouted:?} after its start; longest time without an acceptance {outage:?}; {sent} \
             messages, each accepted once; {} modified and {} released (resent); {duplicates} \
             reached the consumer twice",
            p.modified, p.released
        );
        let a_log = a.log();
        assert!(
            a_noticed.is_some_and(|t| t < 2 * TARGET),
            "A dropped C after {a_noticed:?}:\n{a_log}"
        );
        assert!(
            c_noticed.is_some_and(|t| t < 2 * TARGET),
            "C dropped A after {c_noticed:?}"
        );
        assert!(
            a_log.contains("C via B (cost 2)"),
            "A never routed to C through B:\n{a_log}"
        );
        assert!(rerouted < 2 * TARGET, "rerouted after {rerouted:?}");
        assert!(outage < 2 * TARGET, "no acceptance for {outage:?}");
        drop((a, b, c));
    };
    within("silent cut test", Duration::from_secs(90), test).await;
}

/// The rate of the saturated link, in Mbit/s (each way).
const RATE_MBIT: u64 = 16;

/// Routers A and C in two namespaces, joined by one link limited to
/// RATE_MBIT each way (a token bucket on each end's interface); A dials
/// C. A producer on each sends 16 KiB messages to a consumer on the other
/// as fast as credit allows (up to 200 unsettled), for 60 s: the link is
/// full both ways the whole time, its queues and the routers' output
/// buffers full behind it (the token buckets report packets held
/// back). Neither router may ever take the other as
/// lost: each logs the other connected once, and no disconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_link_never_flaps_over_a_minute() {
    const LOADED: Duration = Duration::from_secs(60);
    const PAD: usize = 16 * 1024;
    let mut net = Net::new();
    let [ns_a, ns_c] = ["a", "c"].map(|n| net.namespace(n));
    let [(_, _), (_, a_client)] = net.link(None, Some(&ns_a));
    let [(_, _), (_, c_client)] = net.link(None, Some(&ns_c));
    let [(a_to_c, _), (c_to_a, c_on_ac)] = net.link(Some(&ns_a), Some(&ns_c));
    let rate = format!("{RATE_MBIT}mbit");
    for (ns, iface) in [(&ns_a, &a_to_c), (&ns_c, &c_to_a)] {
        Net::exec(
            ns,
            &[
                "tc", "qdisc", "add", "dev", iface, "root", "tbf", "rate", &rate, "burst", "32kb",
                "latency", "100ms",
            ],
        );
    }
    let test = async {
        let c = NsRouter::start(&ns_c, "C", c_client, &[]);
        let a = NsRouter::start(&ns_a, "A", a_client, &[("C", c_on_ac, 1)]);
        let to_c = consume(&c, "to-c", 100).await;
        let to_a = consume(&a, "to-a", 100).await;
        let stop = Arc::new(AtomicBool::new(false));
        let (a_produced, a_producing) =
            produce(&a, "to-c", 200, Duration::ZERO, PAD, stop.clone()).await;
        let (c_produced, c_producing) =
            produce(&c, "to-a", 200, Duration::ZERO, PAD, stop.clone()).await;

        // Bytes accepted each second, both ways.
        let started = Instant::now();
        let per_second = Arc::new(Mutex::new(Vec::new()));
        let mut last = (0, 0);
        while started.elapsed() < LOADED {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = (
                a_produced.lock().unwrap().bytes,
                c_produced.lock().unwrap().bytes,
            );
            per_second
                .lock()
                .unwrap()
                .push((now.0 - last.0, now.1 - last.1));
            last = now;
        }
        let loaded_for = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let a_sent = within("A's producer's end", CONVERGE, a_producing)
            .await
            .unwrap();
        let c_sent = within("C's producer's end", CONVERGE, c_producing)
            .await
            .unwrap();
        let held = [(&ns_a, &a_to_c), (&ns_c, &c_to_a)].map(|(ns, i)| qdisc_counters(ns, i));
        let per_second = per_second.lock().unwrap();
        let mbit = |bytes: u64| bytes as f64 * 8.0 / 1e6;
        let total = |way: fn(&(u64, u64)) -> u64| per_second.iter().map(way).sum::<u64>();
        let min = |way: fn(&(u64, u64)) -> u64| per_second.iter().map(way).min().unwrap_or(0);
        let secs = per_second.len() as f64;
        let (a_log, c_log) = (a.log(), c.log());
        eprintln!(
            "saturated link ({RATE_MBIT} Mbit/s each way, {PAD} B messages) for {loaded_for:?}: \
             A to C {:.1} Mbit/s on average (slowest second {:.1}), {a_sent} messages; C to A \
             {:.1} Mbit/s (slowest second {:.1}), {c_sent} messages; A logged C connected {} \
             time(s), C logged A connected {} time(s), disconnections: {} and {}; token \
             buckets (dropped, overlimits): A's end {:?}, C's end {:?}",
            mbit(total(|w| w.0)) / secs,
            mbit(min(|w| w.0)),
            mbit(total(|w| w.1)) / secs,
            mbit(min(|w| w.1)),
            count(&a_log, "neighbour C connected ("),
            count(&c_log, "neighbour A connected ("),
            count(&a_log, "disconnected"),
            count(&c_log, "disconnected"),
            held[0],
            held[1],
        );
        for (name, log) in [("A", &a_log), ("C", &c_log)] {
            for flap in ["disconnected", "taken as down", " lost"] {
                assert_eq!(count(log, flap), 0, "{name} logged `{flap}`:\n{log}");
            }
        }
        assert_eq!(count(&a_log, "neighbour C connected ("), 1, "A:\n{a_log}");
        assert_eq!(count(&c_log, "neighbour A connected ("), 1, "C:\n{c_log}");
        // The link was full: both ways carried at least half its rate on
        // average (the rest is TCP, TLS and AMQP overhead, and the
        // acknowledgements and dispositions of the other way).
        for (end, (_, overlimits)) in ["A", "C"].iter().zip(held) {
            assert!(
                overlimits > 0,
                "{end}'s token bucket never held a packet back"
            );
        }
        let floor = RATE_MBIT as f64 / 2.0;
        for (way, rate) in [
            ("A to C", mbit(total(|w| w.0)) / secs),
            ("C to A", mbit(total(|w| w.1)) / secs),
        ] {
            assert!(rate >= floor, "{way}: {rate:.1} Mbit/s, not saturated");
        }
        assert_exactly_once(
            "A to C",
            a_sent,
            &a_produced.lock().unwrap(),
            &to_c.lock().unwrap(),
        );
        assert_exactly_once(
            "C to A",
            c_sent,
            &c_produced.lock().unwrap(),
            &to_a.lock().unwrap(),
        );
        drop((a, c));
    };
    within("saturated link test", Duration::from_secs(120), test).await;
}
