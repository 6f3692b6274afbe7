//! The same seed gives the same run, event for event; another seed gives
//! another run.

use ferry_sim::{Scenario, Shape};

fn log_of(s: &Scenario) -> Vec<String> {
    let mut mesh = s.build();
    let _ = s.drive(&mut mesh);
    mesh.log().lines().to_vec()
}

#[test]
fn a_seed_replays_event_for_event() {
    for seed in [1, 7, 42] {
        let s = Scenario::random(seed);
        let (a, b) = (log_of(&s), log_of(&s));
        assert!(a.len() > 100, "seed {seed}: a real run ({} lines)", a.len());
        if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
            panic!("seed {seed}: runs differ at line {i}:\n{}\n{}", a[i], b[i]);
        }
        assert_eq!(a.len(), b.len(), "seed {seed}");
    }
}

#[test]
fn a_larger_mesh_with_faults_replays_too() {
    let s = Scenario::sized(9, 12, Shape::Random, 6);
    assert_eq!(log_of(&s), log_of(&s));
}

#[test]
fn different_seeds_give_different_runs() {
    let s = Scenario::sized(1, 4, Shape::Ring, 2);
    let t = Scenario {
        seed: 2,
        ..s.clone()
    };
    assert_ne!(log_of(&s), log_of(&t));
}

#[test]
fn the_seed_a_run_prints_replays_it() {
    let s = Scenario::sized(7, 6, Shape::Random, 3);
    let mut mesh = s.build();
    let _ = s.drive(&mut mesh);
    let printed = mesh.summary();
    assert_eq!(printed.seed, 7, "the summary names the seed given");
    let again = Scenario {
        seed: printed.seed,
        ..s.clone()
    };
    let mut replay = again.build();
    let _ = again.drive(&mut replay);
    assert_eq!(replay.summary().digest, printed.digest);
}

#[test]
fn a_run_with_a_hostile_router_replays_too() {
    let mut s = Scenario::sized(5, 5, Shape::Ring, 2);
    s.hostile = 100;
    s.hostile_how = Some(ferry_sim::Hostile::Replay);
    let mut mesh = s.build();
    let _ = s.drive(&mut mesh);
    let first = mesh.summary();
    assert_eq!(first.hostile.len(), 1, "{first}");
    assert!(first.hostile[0].2.replayed > 0, "{first}");
    let mut again = s.build();
    let _ = s.drive(&mut again);
    assert_eq!(again.summary().digest, first.digest);
}

#[test]
fn a_run_with_edge_routers_replays_too() {
    let mut s = Scenario::sized(11, 4, Shape::Ring, 3);
    s.edges = 2;
    assert_eq!(log_of(&s), log_of(&s));
}
