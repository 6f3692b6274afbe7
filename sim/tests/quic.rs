//! Randomized meshes with QUIC-style links: on a share of the links
//! (`FERRY_SIM_QUIC`, percent, 60 by default) the routers run the
//! connection as over QUIC (8 data lanes, session window 128) and the
//! wire delivers each session's frames in order but the sessions (and the
//! connection stream) independently, a frame now and then held up as if
//! its packet were lost. Every invariant of `randomized.rs` is checked.
//!
//! - `FERRY_SIM_QUIC_SEEDS=<n>`: how many seeds (default 32);
//!   `FERRY_SIM_FIRST_SEED=<s>`: the first (default 1).
//! - `FERRY_SIM_SEED=<seed>`: replay that one seed, printing its whole
//!   event log as it runs.
//!
//! The test also fails if the QUIC-style links never reordered a frame
//! across streams (the mode would have fallen back to one FIFO).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_sim::Scenario;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn scenario(seed: u64) -> Scenario {
    let mut s = Scenario::random(seed);
    s.quic = env_u64("FERRY_SIM_QUIC").unwrap_or(60).min(100);
    s
}

fn save_log(seed: u64, log: &[String]) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ferry-sim");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("quic-seed-{seed}.log"));
    let _ = std::fs::write(&path, log.join("\n"));
    path.display().to_string()
}

#[test]
fn random_meshes_with_quic_links_keep_every_invariant() {
    if let Some(seed) = env_u64("FERRY_SIM_SEED") {
        let mut s = scenario(seed);
        s.echo = true;
        match s.run() {
            Ok(summary) => println!("{summary}"),
            Err(f) => panic!("{f}\nfull log: {}", save_log(seed, &f.log)),
        }
        return;
    }
    let count = env_u64("FERRY_SIM_QUIC_SEEDS").unwrap_or(32);
    let first = env_u64("FERRY_SIM_FIRST_SEED").unwrap_or(1);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    // QUIC-style links, and frames delivered ahead of an earlier frame of
    // another stream, over every run.
    let quic = Mutex::new((0usize, 0u64));
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
                        Ok(summary) => {
                            let mut q = quic.lock().unwrap();
                            q.0 += summary.quic.0;
                            q.1 += summary.quic.1;
                        }
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
    let (links, overtakes) = quic.into_inner().unwrap();
    println!(
        "{count} seeds in {:.1}s on {workers} threads: {links} QUIC-style links, \
         {overtakes} frames delivered ahead of an earlier frame of another stream",
        took.as_secs_f64(),
    );
    let mut failed = failures.into_inner().unwrap();
    failed.sort();
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    if count >= 10 && scenario(first).quic > 0 {
        assert!(links > 0, "no QUIC-style link in {count} seeds");
        assert!(
            overtakes > 0,
            "QUIC-style links never reordered frames across streams"
        );
    }
}

/// A mesh whose every link is QUIC-style reorders frames across streams,
/// keeps every invariant, and replays exactly.
#[test]
fn quic_links_reorder_across_streams() {
    let mut s = Scenario::random(3);
    s.quic = 100;
    let summary = s.run().unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(summary.quic.0, summary.links, "every link QUIC-style");
    assert!(
        summary.quic.1 > 0,
        "no frame overtook one of another stream:\n{summary}"
    );
    let again = s.run().unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(again.digest, summary.digest, "the same seed, the same run");
    assert_eq!(again.quic, summary.quic);
    s.quic = 0;
    let plain = s.run().unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(plain.quic, (0, 0));
}

/// A router bug this mode found (seed 1039, every link QUIC-style): R2
/// detached its data link `ferry:data:R2:t1/closest/q1` to R7 on lane 1
/// (a table change) and, a millisecond later, the route back, attached a
/// link of the same name on lane 0. Lanes are independent streams: the new
/// attach reached R7 before the detach (held up on lane 1's stream), and R7
/// refused it with `invalid-field` (a link of that name still attached in
/// that direction, AMQP 1.0 §2.6.1); over TCP the detach always comes
/// first. Fixed: a data link keeps its lane for the connection's life.
#[test]
fn a_reattach_on_another_lane_does_not_overtake_the_detach() {
    let mut s = Scenario::random(1039);
    s.quic = 100;
    if let Err(f) = s.run() {
        panic!("{f}");
    }
}
