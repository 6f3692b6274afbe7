//! `ferry-sim`: run a simulated Ferry mesh from the command line.
//!
//! ```text
//! cargo run -p ferry-sim -- --routers 50 --topology random --faults 20 --seed 7
//! cargo run -p ferry-sim -- --routers 8 --runs 50          # convergence report
//! cargo run -p ferry-sim -- --seed 7 --log                 # the whole event log
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use ferry_sim::report::ConvergenceReport;
use ferry_sim::{Scenario, Shape};

/// Runs a simulated mesh of real Ferry routers with random traffic and
/// faults, checks every invariant, and prints what happened.
#[derive(Debug, Parser)]
#[command(name = "ferry-sim", version)]
struct Args {
    /// Routers in the mesh.
    #[arg(long, default_value_t = 5)]
    routers: usize,
    /// Topology: line, ring, full, grid or random.
    #[arg(long, default_value = "random")]
    topology: Shape,
    /// Faults to inject (kills, cuts, partitions, black holes, delays,
    /// slow consumers), drawn from the seed.
    #[arg(long, default_value_t = 5)]
    faults: usize,
    /// The seed: the same seed replays the same run, event for event.
    #[arg(long, env = "FERRY_SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Run this many seeds (seed, seed+1, …) and print a convergence report.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Anycast addresses with traffic.
    #[arg(long, default_value_t = 3)]
    addresses: usize,
    /// The chance, in percent, that a run has a multicast address too.
    #[arg(long, default_value_t = 50)]
    multicast: u64,
    /// The chance, in percent, that a run has two tenants (virtual hosts)
    /// whose traffic uses the same address names.
    #[arg(long, default_value_t = 30)]
    tenants: u64,
    /// QUIC-style links: the chance, in percent, that each inter-router
    /// link is one (0: none, 100: all). Their routers run the connection
    /// as over QUIC (8 data lanes, session window 128) and the wire
    /// delivers each session's frames in order but the sessions
    /// independently of each other.
    #[arg(long, default_value_t = 0)]
    quic: u64,
    /// The chance, in percent, that one router turns hostile for a while
    /// (forges other routers' records, replays old ones, or advertises
    /// every address; sim/README.md, "The hostile-router fault").
    #[arg(long, default_value_t = 0)]
    hostile: u64,
    /// What the hostile router does: forge, replay or advertise-all
    /// (drawn from the seed if not given).
    #[arg(long)]
    hostile_how: Option<ferry_sim::Hostile>,
    /// Routers do not sign their routing records (as FERRY_SIM_SIGNING=0);
    /// no run then has a hostile router.
    #[arg(long)]
    no_signing: bool,
    /// Edge routers: each has edge connectors to two interior routers
    /// drawn from the seed, keeps one uplink and fails over to the other;
    /// clients attach to edge routers too.
    #[arg(long, default_value_t = 0)]
    edges: usize,
    /// Messages per producer: the most (the least is a quarter of it).
    #[arg(long, default_value_t = 50)]
    messages: u32,
    /// Seconds within which faults start.
    #[arg(long)]
    fault_window: Option<u64>,
    /// Print the whole event log (one run only).
    #[arg(long)]
    log: bool,
    /// Write the whole event log to this file (one run only).
    #[arg(long)]
    log_file: Option<std::path::PathBuf>,
}

fn scenario(args: &Args, seed: u64) -> Scenario {
    let mut s = Scenario::sized(seed, args.routers.max(1), args.topology, args.faults);
    s.addresses = args.addresses.max(1);
    s.multicast = args.multicast.min(100);
    s.tenants = args.tenants.min(100);
    s.quic = args.quic.min(100);
    s.hostile = args.hostile.min(100);
    s.hostile_how = args.hostile_how;
    s.signing &= !args.no_signing;
    s.edges = args.edges;
    s.messages = ((args.messages / 4).max(1), args.messages.max(1));
    if let Some(w) = args.fault_window {
        s.fault_window = Duration::from_secs(w);
    }
    s
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.runs > 1 {
        return Ok(many(&args));
    }
    let s = scenario(&args, args.seed);
    let started = Instant::now();
    let mut mesh = s.build();
    let result = s.drive(&mut mesh);
    let took = started.elapsed();
    if args.log {
        println!("{}", mesh.log().lines().join("\n"));
    }
    if let Some(path) = &args.log_file {
        std::fs::write(path, mesh.log().lines().join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", mesh.summary());
    println!("(ran in {:.2}s of wall time)", took.as_secs_f64());
    match result {
        Ok(_) => {
            println!("every invariant held");
            Ok(ExitCode::SUCCESS)
        }
        Err(v) => {
            println!("FAILED: {v}");
            if !args.log {
                println!("--- end of the event log ---\n{}", mesh.log().tail(40));
            }
            println!(
                "replay: cargo run -p ferry-sim -- {} --log",
                replay_args(&args)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn replay_args(a: &Args) -> String {
    format!(
        "--routers {} --topology {} --faults {} --seed {} --addresses {} --multicast {} --tenants {} --quic {} --messages {}{}",
        a.routers,
        a.topology,
        a.faults,
        a.seed,
        a.addresses,
        a.multicast,
        a.tenants,
        a.quic,
        a.messages,
        a.fault_window
            .map_or(String::new(), |w| format!(" --fault-window {w}")),
    ) + &format!(
        "{}{}{}{}",
        if a.edges > 0 {
            format!(" --edges {}", a.edges)
        } else {
            String::new()
        },
        if a.hostile > 0 {
            format!(" --hostile {}", a.hostile)
        } else {
            String::new()
        },
        a.hostile_how
            .map_or(String::new(), |h| format!(" --hostile-how {h}")),
        if a.no_signing { " --no-signing" } else { "" }
    )
}

fn many(args: &Args) -> ExitCode {
    let mut report = ConvergenceReport::default();
    let mut failed = Vec::new();
    let started = Instant::now();
    for seed in args.seed..args.seed + args.runs {
        match scenario(args, seed).run() {
            Ok(s) => {
                report.add(&s.convergence);
                println!(
                    "seed {seed}: ok — sent {}, accepted {}, received {}, loops caught {}, {} topology changes, log {:016x}",
                    s.counts.sent + s.counts.sent_presettled,
                    s.counts.accepted,
                    s.counts.received,
                    s.loops_caught,
                    s.convergence.len(),
                    s.digest
                );
                let slowest = s.convergence.iter().max_by_key(|c| c.took);
                if let Some(c) = slowest.filter(|c| c.took >= Duration::from_secs(1)) {
                    println!(
                        "seed {seed}: slowest change {:.3}s after {}{}",
                        c.took.as_secs_f64(),
                        c.after,
                        if c.delayed { " (a link delayed)" } else { "" }
                    );
                }
            }
            Err(f) => {
                report.add(&f.summary.convergence);
                println!(
                    "seed {seed}: FAILED: {} (log {:016x})",
                    f.violation, f.summary.digest
                );
                failed.push(seed);
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "\n{} runs in {took:.1}s ({:.1} runs/s), {} failed {failed:?}\n",
        args.runs,
        args.runs as f64 / took,
        failed.len()
    );
    print!("{report}");
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
