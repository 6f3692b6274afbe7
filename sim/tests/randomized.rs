//! The randomized test: many seeds, each a random topology (2 to 8
//! routers, any shape), traffic (anycast, closest, multicast on one
//! router, pre-settled, a producer with no consumer) and fault schedule
//! (kills and restarts, cut links, silent partitions and black holes,
//! delays, slow consumers), every invariant checked after every step and
//! at the end.
//!
//! - `FERRY_SIM_SEEDS=<n>`: how many seeds (default 200);
//!   `FERRY_SIM_FIRST_SEED=<s>`: the first (default 1).
//! - `FERRY_SIM_HOSTILE=<percent>`: the chance a run has a hostile
//!   router for a while (default 25; see sim/README.md, *The
//!   hostile-router fault*); `FERRY_SIM_SIGNING=0`: routers do not sign
//!   their records (and no run has a hostile router).
//! - `FERRY_SIM_SEED=<seed>`: replay that one seed, printing its whole
//!   event log as it runs.
//!
//! It prints the convergence report: per topology size and per kind of
//! change (kill, cut, silent partition, black hole both ways and one way,
//! each heal) with issue #17's targets.
//!
//! A failure prints the seed, the failed invariant and the end of the
//! event log, and writes the whole log to `target/ferry-sim/seed-<seed>.log`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_sim::Scenario;
use ferry_sim::report::ConvergenceReport;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A seed's scenario: [`Scenario::random`], with a hostile router in
/// `FERRY_SIM_HOSTILE` percent of the runs (25 by default).
fn scenario(seed: u64) -> Scenario {
    let mut s = Scenario::random(seed);
    s.hostile = env_u64("FERRY_SIM_HOSTILE").unwrap_or(25);
    s
}

fn save_log(seed: u64, log: &[String]) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ferry-sim");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("seed-{seed}.log"));
    let _ = std::fs::write(&path, log.join("\n"));
    path.display().to_string()
}

#[test]
fn random_seeds_keep_every_invariant() {
    if let Some(seed) = env_u64("FERRY_SIM_SEED") {
        let mut s = scenario(seed);
        s.echo = true;
        match s.run() {
            Ok(summary) => println!("{summary}"),
            Err(f) => panic!("{f}\nfull log: {}", save_log(seed, &f.log)),
        }
        return;
    }
    let count = env_u64("FERRY_SIM_SEEDS").unwrap_or(200);
    let first = env_u64("FERRY_SIM_FIRST_SEED").unwrap_or(1);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    let report = Mutex::new(ConvergenceReport::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        return;
                    }
                    match scenario(seed).run() {
                        Ok(summary) => report.lock().unwrap().add(&summary.convergence),
                        Err(f) => {
                            let path = save_log(seed, &f.log);
                            eprintln!("{f}\nfull log: {path}\n");
                            failures.lock().unwrap().push(seed);
                        }
                    }
                }
            });
        }
    });
    let took = started.elapsed();
    println!(
        "{count} seeds in {:.1}s ({:.1} seeds/s on {workers} threads)",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
    println!("{}", report.lock().unwrap());
    let mut failed = failures.into_inner().unwrap();
    failed.sort();
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
