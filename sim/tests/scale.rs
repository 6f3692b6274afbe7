//! A larger mesh than the other tests use, in the size a debug build
//! affords in CI (about a minute): 60 routers, random topology, 50 faults
//! drawn (47 apply). Larger runs are commands (sim/README.md, "Large
//! meshes"): 300 routers take about 2 minutes in a release build.

use ferry_sim::{Scenario, Shape};

#[test]
fn sixty_routers_with_faults_keep_every_invariant_and_converge() {
    let s = Scenario::sized(7, 60, Shape::Random, 50);
    let summary = match s.run() {
        Ok(summary) => summary,
        Err(failure) => panic!("{}", failure.violation),
    };
    println!("{summary}");
    assert_eq!(summary.routers, 60);
    assert!(summary.faults > 0, "{summary}");
    let start = summary
        .convergence
        .iter()
        .find(|c| c.after == "start")
        .expect("the cold start converged");
    assert!(
        start.took < std::time::Duration::from_secs(1),
        "a cold start converges without waiting for a periodic advertisement: {:?}",
        start.took
    );
}
