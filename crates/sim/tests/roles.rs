//! The roles' simulation in CI: a few hundred seeds, each the notary, central, the directory,
//! the oracle and three banks as separate simulated processes under faults, with the invariants checked
//! (see `dtenge_sim::roles`). `DTENGE_SIM_ROLES_SEEDS` changes how many;
//! `dtenge sim --roles --seeds 5000` runs thousands.

use dtenge_sim::roles::{run_roles, run_roles_seeds, RolesConfig, RolesReport};

fn seeds() -> u64 {
    std::env::var("DTENGE_SIM_ROLES_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200)
}

#[test]
fn hundreds_of_seeds_of_separate_roles_keep_every_invariant() {
    let reports = match run_roles_seeds(0, seeds(), &RolesConfig::default()) {
        Ok(reports) => reports,
        Err(failure) => {
            let tail = failure.trace.len().saturating_sub(80);
            panic!("{failure}\n{}", failure.trace[tail..].join("\n"));
        }
    };
    let total = |f: fn(&RolesReport) -> u64| reports.iter().map(f).sum::<u64>();
    assert!(total(|r| r.messages_lost) > 100, "messages were lost");
    assert!(total(|r| r.messages_duplicated) > 100, "messages were duplicated");
    assert!(total(|r| u64::from(r.restarts)) > 100, "roles crashed and restarted");
    assert!(total(|r| u64::from(r.commit_crashes)) > 20, "crashes hit commits");
    assert!(total(|r| r.torn_records_discarded) > 5, "torn writes were recovered");
    assert!(total(|r| u64::from(r.notary_checkpoints)) > 100, "the notary wrote checkpoints");
    assert!(total(|r| u64::from(r.notary_checkpoint_crashes)) > 5, "crashes landed inside notary checkpoints");
    assert!(total(|r| u64::from(r.bank_checkpoints)) > 100, "the banks wrote checkpoints of their tokens");
    assert!(total(|r| u64::from(r.bank_checkpoint_crashes)) > 5, "crashes landed inside bank checkpoints");
    assert!(total(|r| u64::from(r.payments_committed)) > 1_000, "payments went through");
    assert!(total(|r| u64::from(r.payments_refused)) > 50, "double spends and overdrafts were refused");
    assert!(total(|r| u64::from(r.emissions)) > 300, "central emitted");
    assert!(total(|r| u64::from(r.redemptions)) > 100, "banks redeemed");
    assert!(
        total(|r| u64::from(r.redemptions_refused)) > 10,
        "redemptions beyond a bank's DT or of a blocked bank were refused"
    );
    assert!(total(|r| u64::from(r.holds)) > 100, "clients held funds for events");
    assert!(total(|r| u64::from(r.holds_refused)) > 10, "holds that did not match their event were refused");
    assert!(total(|r| u64::from(r.confirmations)) > 100, "providers confirmed events, which were released");
    assert!(total(|r| u64::from(r.infinite_occurrences)) > 40, "infinite events were released per occurrence");
    assert!(total(|r| u64::from(r.card_purchases)) > 40, "clients bought with their cards");
    assert!(total(|r| u64::from(r.voucher_taps_paid)) > 50, "voucher taps were paid");
    // Dust reached custodial clients, and their banks merged it in the background (issue 19):
    // no seed ended with a custodial client holding every one-tiyn token it was sent.
    let dusted = reports.iter().filter(|r| r.dust_payments > 0).count();
    let merged = reports.iter().filter(|r| r.dust_payments > 0 && r.custodial_tokens_max < 150).count();
    println!("dust: {dusted} seeds sent dust, {merged} ended with every custodial client under 150 tokens");
    assert!(dusted > 50, "banks paid dust in {dusted} seeds");
    let kept: Vec<u64> =
        reports.iter().filter(|r| r.dust_payments > 0 && r.custodial_tokens_max >= 150).map(|r| r.seed).collect();
    assert!(merged == dusted, "a custodial client kept its dust in seeds {kept:?}");
}

#[test]
fn a_roles_seed_replays_exactly() {
    let config = RolesConfig::default();
    for seed in [3, 77, 4_242] {
        let first = run_roles(seed, &config).expect("the seed passes");
        let again = run_roles(seed, &config).expect("the seed passes again");
        assert_eq!(first.trace, again.trace, "seed {seed}");
        assert!(first.trace.len() > 30);
    }
    let (a, b) = (run_roles(5, &config).expect("passes"), run_roles(6, &config).expect("passes"));
    assert_ne!(a.trace_digest, b.trace_digest, "seeds differ");
}

/// Seeds that once broke an invariant, run every time (each takes well under a second):
/// 674 and 2,202 (a voucher tap left unanswered, a refund's payout left owed: both pass on
/// today's random stream; their symptoms are those of 37,410 and 31,728 below), 31,728 (a
/// refund of a converted purchase owed by an issuer whose own DT was paid out and redeemed:
/// the NBK now emits what the refunds owed lack once traffic stops, as the bank's treasury
/// asks; `roles::cards`), 382 and 1,703 (the simulation gave a new event's hold and another
/// event's top-up one idempotency key and fingerprint: each hold now gets a key of its own and
/// a fingerprint of what it asks), 37,410 (a voucher tap sent twice, both copies in one batch
/// of a blocked bank: the attestation check refused the payment, and the second copy, waiting
/// on it since its admission, was never answered; the bank now answers it too).
const ONCE_FAILED: [u64; 6] = [382, 674, 1_703, 2_202, 31_728, 37_410];

#[test]
fn seeds_that_once_failed_keep_every_invariant() {
    let config = RolesConfig::default();
    for seed in ONCE_FAILED {
        if let Err(failure) = run_roles(seed, &config) {
            let tail = failure.trace.len().saturating_sub(80);
            panic!("{failure}\n{}", failure.trace[tail..].join("\n"));
        }
    }
}
