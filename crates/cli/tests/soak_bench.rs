//! `dtenge bench --soak` for a few seconds: the command starts its own `dtenge up`, seeds it
//! through the API, offers custodial transfers and salary registries at a fixed rate in
//! intervals, reads the platform's figures from `GET /metrics` at each, and stops the child.
//!
//! Checked: the report's intervals are there with figures read from the platform (CPU,
//! resident memory, disk, unspent tokens, the notary's transaction ids), every transfer
//! succeeded, salaries were paid, the platform reconciles, memory is under the formula, and the
//! plot is written. Nothing here asserts on speed (the CPU check is a ratio with a wide bound
//! on a debug build).

use serde_json::Value;
use std::process::Command;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn a_short_soak_reports_each_interval_and_passes_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("soak.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["bench", "--soak", "6s", "--interval-s", "3", "--warmup-s", "1", "--rate", "40"])
        .args(["--accounts", "60", "--connections", "4", "--salary-lines-per-s", "2", "--cpu-growth-max", "100"])
        .arg("--plot")
        .arg(&plot)
        .arg("--json")
        .output()
        .expect("run dtenge bench --soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dtenge bench --soak failed: {}\n{stdout}\n{stderr}", output.status);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    assert_eq!(report["ok"], true, "{}", report["problems"]);
    assert_eq!(report["reconciled"], true);
    let intervals = report["intervals"].as_array().expect("intervals");
    assert_eq!(intervals.len(), 2, "6 s in intervals of 3 s");
    // Registry 0 is due as the load starts (in the warm-up), the next 10 s later.
    let mut salary_lines = n(&report["warmup"]["salary_lines"]);
    for interval in intervals {
        let transfers = &interval["transfers"];
        assert!(transfers["errors"].as_object().expect("errors").is_empty(), "{}", transfers["errors"]);
        assert!(n(&transfers["ok"]) > 0, "transfers answered");
        let figures = &interval["figures"];
        assert!(figures["cpu_seconds"].as_f64().expect("cpu") > 0.0);
        assert!(n(&figures["resident_bytes"]) > 1 << 20);
        assert!(n(&figures["data_bytes"]) > 0);
        assert!(n(&figures["unspent_tokens"]) >= 60, "at least each account's opening token");
        assert!(n(&figures["transactions_held"]) > 0);
        assert!(n(&figures["resident_bytes"]) <= n(&interval["memory_bound_bytes"]));
        salary_lines += n(&interval["salary_lines"]);
    }
    assert_eq!(salary_lines, 20, "one salary registry of 2 lines/s × 10 s was paid");
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert_eq!(svg.matches("<polyline").count(), 5);
}
