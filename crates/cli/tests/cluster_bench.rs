//! `dtenge bench --cluster` for a tiny load: a few hundred client-signed 2-in-2-out transfers
//! through the banks' own APIs of a cluster, every one to a client of another bank.
//!
//! First the bench finds no cluster at the directory, starts `dtenge cluster` itself (every
//! participant its own process), runs a closed loop and stops it; then a cluster the test
//! started on the same layout answers, and the bench uses it as it is (an open loop) and leaves
//! it running.
//!
//! Checked: every request sent was answered with a success (the counts add up, no error
//! code), the processes reconcile at the end (the banks' DT = central's liability, the banks'
//! tokens = the notary's unspent tokens), and a cluster the bench started stopped with status
//! 0. Nothing here asserts on speed.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Transfers in the closed loop: a few hundred.
const PAYMENTS: u64 = 300;
const CONNECTIONS: u64 = 6;
const WAIT_MS_MAX: u64 = 60_000;

/// Run `dtenge bench --cluster dir ... --json` with `args` and return its report.
fn bench(dir: &Path, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["bench", "--json", "--cluster"])
        .arg(dir)
        .args(["--accounts", "60", "--connections", &CONNECTIONS.to_string()])
        .args(args)
        .output()
        .expect("run dtenge bench --cluster");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dtenge bench --cluster {args:?} failed: {}\n{stdout}\n{stderr}", output.status);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}\n{stderr}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Every request answered with a success; the processes reconciled; every participant's CPU
/// measured.
fn check(report: &Value, what: &str) -> Value {
    assert_eq!(report["ok"], true, "{what}: {}", report["problems"]);
    let r = &report["reconciliation"];
    assert_eq!(r["settled"], true, "{what}: not settled");
    assert_eq!(r["ok"], true, "{what}: not reconciled: {r}");
    assert_eq!(r["banks_dt_tiyn"], r["central_liability_tiyn"], "{what}");
    assert_eq!(r["banks_tokens"], r["notary_unspent_tokens"], "{what}");
    assert!(n(&r["banks_tokens"]) > 0, "{what}: no tokens at all");
    assert_eq!(report["participants"].as_object().map(|p| p.len()), Some(10), "{what}: participants' pids");
    let phases = report["phases"].as_array().expect("phases");
    let phase = phases.iter().find(|p| p["warmup"] == false).expect("a timed phase").clone();
    for p in phases {
        let errors: u64 = p["errors"].as_object().expect("errors").values().map(n).sum();
        assert_eq!(errors, 0, "{what}: errors {} ({})", p["errors"], p["error_examples"]);
        assert_eq!(n(&p["unsent"]), 0, "{what}: requests never sent");
        assert_eq!(n(&p["sent"]), n(&p["ok"]), "{what}: sent = ok");
        assert!(n(&p["latency"]["max_us"]) >= n(&p["latency"]["p99_us"]), "{what}: latency");
        assert!(n(&p["latency"]["p99_us"]) >= n(&p["latency"]["p50_us"]), "{what}: latency");
        assert!(p["participants"]["notary-1"]["cores"].is_number(), "{what}: a notary replica's CPU");
    }
    assert!(n(&phase["ok"]) > 0, "{what}: nothing succeeded");
    assert!(n(&phase["notary_commits"]) > 0, "{what}: nothing reached the notary");
    phase
}

/// A cluster the test started: stopped with SIGTERM when dropped (also on a failed
/// assertion), waited for at most [`WAIT_MS_MAX`], then killed.
struct Running(std::process::Child);

impl Running {
    /// SIGTERM, and how it ended.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

fn wait_healthy(dir: &Path) {
    let laid = dtenge_process::cluster::read(dir, &dtenge_process::cluster::standard()).unwrap();
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    for member in laid {
        while ureq::get(&format!("http://{}/health", member.ports.ops)).call().is_err() {
            assert!(Instant::now() < deadline, "{} did not start", member.member.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn cluster_bench_sends_a_tiny_load_across_processes_and_reconciles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");

    // No cluster there: the bench lays one out, starts it, and stops it at the end. Closed
    // loop without warm-up: the pool (--payments) ends the phase long before its 60 s.
    let closed = bench(&dir, &["--payments", &PAYMENTS.to_string(), "--duration-s", "60", "--warmup-s", "0"]);
    let phase = check(&closed, "closed loop");
    assert_eq!(n(&phase["sent"]), PAYMENTS, "closed loop: the whole pool");
    assert_eq!(phase["offered_per_s"], Value::Null);
    assert!(closed["cluster_pid"].is_u64(), "the bench started the cluster");
    assert_eq!(closed["cluster_exit"], "exit status: 0", "the cluster stopped cleanly");

    // A cluster answers on the same layout: the bench uses it and leaves it running. Open
    // loop: 50/s offered, a 0.4 s warm-up (20 due) and then 2 s (100 due).
    let mut cluster = Running(
        Command::new(env!("CARGO_BIN_EXE_dtenge"))
            .args(["cluster", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&dir);
    let open = bench(&dir, &["--rate", "50", "--warmup-s", "0.4", "--duration-s", "2"]);
    let phase = check(&open, "open loop");
    assert_eq!(n(&phase["sent"]), 100, "open loop: the requests due");
    assert_eq!(n(&phase["offered_per_s"]), 50);
    assert!(open["cluster_pid"].is_null(), "the bench used the running cluster");
    assert!(cluster.0.try_wait().unwrap().is_none(), "the bench left the cluster running");

    // Calls of ten transfers each (`POST /v1/nodes/{bank}/transactions/batch`): every
    // transfer answered by itself, counted as a payment.
    let batched = bench(
        &dir,
        &["--per-call", "10", "--payments", &PAYMENTS.to_string(), "--duration-s", "60", "--warmup-s", "0"],
    );
    let phase = check(&batched, "calls of ten");
    let sent = n(&phase["sent"]);
    assert!(
        sent > 0 && sent <= PAYMENTS && sent.is_multiple_of(10),
        "calls of ten: whole calls of the pool, {sent} sent"
    );
    // SIGTERM: the cluster stops its participants.
    let status = cluster.stop().expect("the cluster stops on SIGTERM");
    assert!(status.success(), "the cluster stopped with {status}");
}
