//! `dtenge bench --http` for a tiny load: the command starts its own `dtenge up` child, seeds
//! it through the API, sends a few hundred custodial transfers and client-signed transactions
//! over several connections, closed loop and then open loop, and stops the child with SIGTERM.
//!
//! Checked: every request sent got an answer and each was a success (the counts add up, no
//! error code), the platform reconciles, and the child stopped with status 0. Nothing here
//! asserts on speed: the bench measures speed, a test must not depend on it.

use serde_json::Value;
use std::process::Command;

/// Requests per kind in each run: a few hundred, a few seconds on a debug build.
const PAYMENTS: u64 = 240;
const CONNECTIONS: u64 = 8;

/// Run `dtenge bench --http ... --json` with `args` and return its report.
fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["bench", "--http", "--json", "--accounts", "48", "--connections", &CONNECTIONS.to_string()])
        .args(["--payments", &PAYMENTS.to_string()])
        .args(args)
        .output()
        .expect("run dtenge bench --http");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dtenge bench --http {args:?} failed: {}\n{stdout}\n{stderr}", output.status);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}\n{stderr}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The report's phases: one per kind (after its warm-up, if any), every request answered
/// with a success.
fn check(report: &Value, loop_kind: &str) {
    assert_eq!(report["ok"], true, "{loop_kind}: {}", report["problems"]);
    assert_eq!(report["reconciled"], true, "{loop_kind}: not reconciled");
    assert!(report["server_pid"].is_u64(), "{loop_kind}: the bench started no server");
    assert_eq!(report["server_exit"], "exit status: 0", "{loop_kind}: the child did not stop cleanly");
    let phases = report["phases"].as_array().expect("phases");
    let kinds: Vec<&str> =
        phases.iter().filter(|p| p["warmup"] == false).map(|p| p["kind"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["custodial", "signed"], "{loop_kind}: phases");
    for phase in phases {
        let kind = phase["kind"].as_str().unwrap_or("?");
        let errors: u64 = phase["errors"].as_object().expect("errors").values().map(n).sum();
        assert_eq!(errors, 0, "{loop_kind} {kind}: errors {}", phase["errors"]);
        assert_eq!(n(&phase["unsent"]), 0, "{loop_kind} {kind}: requests never sent");
        assert_eq!(n(&phase["sent"]), n(&phase["ok"]) + errors, "{loop_kind} {kind}: sent = ok + errors");
        assert!(n(&phase["ok"]) > 0, "{loop_kind} {kind}: nothing succeeded");
        assert!(n(&phase["sent"]) <= PAYMENTS, "{loop_kind} {kind}: more sent than --payments");
        assert!(n(&phase["latency"]["max_us"]) >= n(&phase["latency"]["p50_us"]), "{loop_kind} {kind}: latency");
        assert!(phase["cpu"]["server_cores"].is_number(), "{loop_kind} {kind}: no CPU of the child");
    }
    assert_eq!(n(&report["signed_prepared"]), PAYMENTS, "{loop_kind}: signed transfers prepared");
}

#[test]
fn http_bench_sends_a_tiny_load_and_every_request_succeeds() {
    // Closed loop without warm-up: the --payments cap ends each phase (long before the 60 s
    // window on any machine), so each kind sends exactly PAYMENTS requests.
    let closed = bench(&["--kind", "both", "--duration-s", "60", "--warmup-s", "0"]);
    check(&closed, "closed loop");
    for phase in closed["phases"].as_array().into_iter().flatten() {
        assert_eq!(n(&phase["sent"]), PAYMENTS, "closed loop {}: sent", phase["kind"]);
        assert_eq!(phase["offered_per_s"], Value::Null);
    }

    // Open loop: 100/s offered, a 0.5 s warm-up (50 requests due) and then 1.5 s (150 due),
    // per kind.
    let open = bench(&["--kind", "both", "--rate", "100", "--warmup-s", "0.5", "--duration-s", "1.5"]);
    check(&open, "open loop");
    let phases = open["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 4, "a warm-up and a phase per kind");
    for phase in phases {
        let due = if phase["warmup"] == true { 50 } else { 150 };
        assert_eq!(n(&phase["sent"]), due, "open loop {} (warm-up: {}): sent", phase["kind"], phase["warmup"]);
        assert_eq!(n(&phase["offered_per_s"]), 100);
    }
}
