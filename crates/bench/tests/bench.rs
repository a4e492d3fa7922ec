//! The bench harness itself works: small runs on the roles, closed and open loop, commit
//! every valid payment, refuse every injected one with its code, and reconcile. (Speed is
//! measured by `dtenge bench`, never asserted in a test.)

use dtenge_bench::roles::{render, run};
use dtenge_bench::Config;

fn small(rate_per_s: Option<u64>) -> Config {
    Config {
        accounts: 60,
        tokens: 600,
        payments: 200,
        rate_per_s,
        in_flight: 64,
        threads: 8,
        double_spend_percent: 5.0,
        invalid_signature_percent: 5.0,
        seed: 3,
        data: None,
        baseline_postgres_url: None,
        programmable_ops: 0,
        monitor_every_ms: None,
    }
}

#[test]
fn closed_loop_commits_valid_payments_and_refuses_injected_ones() {
    let report = run(&small(None), |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.committed, 200);
    assert_eq!(report.injected_double_spends, 10);
    assert_eq!(report.injected_invalid_signatures, 10);
    assert_eq!(report.rejected.get("DOUBLE_SPEND"), Some(&10));
    assert_eq!(report.rejected.get("INVALID_SIGNATURE"), Some(&10));
    assert!(report.latency.p50_us > 0 && report.latency.p50_us <= report.latency.max_us);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["achieved_per_s"].as_f64().unwrap() > 0.0);
    assert!(render(&report).contains("payments/s"));
}

#[test]
fn open_loop_offers_a_fixed_rate() {
    let report = run(&small(Some(2_000)), |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.offered_per_s, Some(2_000));
    // 220 transfers offered at 2,000/s take at least 0.1 s whatever the machine.
    assert!(report.run_seconds >= 0.1, "{}", report.run_seconds);
}

#[test]
fn refuses_impossible_configurations() {
    let mut config = small(None);
    config.payments = 10_000;
    assert!(run(&config, |_| {}).is_err());
}

#[test]
fn programmed_payments_are_timed_next_to_plain_ones() {
    // Through the platform facade, as the REST API calls them.
    let config = Config { programmable_ops: 20, ..small(None) };
    let report = run(&config, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    let programmable = report.programmable.as_ref().expect("the programmable phase ran");
    for cost in [&programmable.plain, &programmable.hold, &programmable.release, &programmable.marked] {
        assert_eq!(cost.operations, 20);
        assert!(cost.per_s > 0.0 && cost.latency.p50_us > 0);
    }
    assert!(render(&report).contains("held payment (hold + release)"));
}

#[test]
fn a_dashboard_polling_the_roles_during_the_run_sees_them_and_changes_nothing() {
    let config = Config { monitor_every_ms: Some(1), ..small(Some(2_000)) };
    let report = run(&config, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.committed, 200);
    let polls = report.monitoring.as_ref().expect("the poller ran");
    assert!(polls.polls > 0);
    assert!(polls.circulation_tiyn_last > 0, "the dashboard saw no DT in circulation");
    assert!(render(&report).contains("polled every 1 ms"));
}
