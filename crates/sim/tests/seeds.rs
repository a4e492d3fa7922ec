//! The simulator in CI: a few hundred seeds, each a whole network under faults, with the
//! invariants checked (see the crate docs). `DTENGE_SIM_SEEDS` changes how many;
//! `dtenge sim --seeds 5000` runs thousands.

use dtenge_sim::{run, run_seeds, SimConfig};

fn seeds() -> u64 {
    std::env::var("DTENGE_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
}

#[test]
fn hundreds_of_seeds_keep_every_invariant() {
    let config = SimConfig::default();
    let reports = match run_seeds(0, seeds(), &config) {
        Ok(reports) => reports,
        Err(failure) => {
            let tail = failure.trace.len().saturating_sub(60);
            panic!("{failure}\n{}", failure.trace[tail..].join("\n"));
        }
    };
    // The faults really happened, across the seeds.
    let total = |f: fn(&dtenge_sim::SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert!(total(|r| r.messages_dropped) > 100, "messages were lost");
    assert!(total(|r| r.messages_duplicated) > 100, "messages were duplicated");
    assert!(total(|r| r.crashes) > 100, "the process crashed");
    assert!(total(|r| r.torn_records_discarded) > 10, "torn writes were recovered");
    assert!(total(|r| r.restarts) > 100, "the process restarted");
    assert!(total(|r| u64::from(r.double_spend_pairs)) > 20, "double spends were tried");
    assert!(total(|r| u64::from(r.succeeded)) > 1_000, "payments went through");
    assert!(total(|r| r.checkpoints) > 100, "checkpoints were written");
    assert!(total(|r| r.checkpoint_crashes) > 10, "crashes hit checkpoints");
    let rejected: u64 = reports.iter().flat_map(|r| r.rejected.values()).map(|&n| u64::from(n)).sum();
    assert!(rejected > 100, "some requests were refused");
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::default();
    for seed in [7, 1_234, 99_999] {
        let first = run(seed, &config).expect("the seed passes");
        let again = run(seed, &config).expect("the seed passes again");
        assert_eq!(first.trace, again.trace, "seed {seed}");
        assert_eq!(first.trace_digest, again.trace_digest);
        assert!(first.trace.len() > 50);
    }
    let other = run(8, &config).expect("the seed passes");
    assert_ne!(other.trace_digest, run(7, &config).expect("passes").trace_digest, "seeds differ");
}
