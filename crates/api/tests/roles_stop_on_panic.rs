//! A panic on a role's thread stops the process: shown in a child process (this test binary,
//! run again with [`CHILD_ENV`] naming the thread to break), since it would stop the test
//! runner too.
//!
//! Ported from the one-process network's `pipeline.rs` unit tests
//! (`a_failed_assertion_on_the_check_thread_stops_the_process`,
//! `a_panic_on_the_settle_thread_stops_the_process`). The network's pipeline had a check
//! thread and a settle thread; among the roles a bank takes its queue on its flusher thread
//! (checks, attests, writes its outbox: the check stage) and applies the notary's answers and
//! the deliveries on its inbox thread (the settle stage). What the network's tests pinned
//! holds for both: a failed assertion on the payment path means the program is wrong, and the
//! step in hand may be durable without being applied, so the only safe state is a restart,
//! whose recovery reads what the disk holds. A thread that ends alone leaves the platform
//! serving beside a bank that no longer takes payments or answers (every call to it waits
//! `ANSWER_WAIT` and says `REQUEST_IN_PROGRESS`, forever).
//!
//! The network's `a_panic_under_the_gate_poisons_the_network_and_stops_checkpoints`
//! (`ops/checkpoint.rs`) protected the checkpoint from memory a panic left unlike the disk.
//! The roles keep no checkpointed state, and a panic on a role's thread now stops the
//! process before anything else can be written from that memory: nothing more to port.

use dtenge_api::platform::Platform;
use dtenge_api::types::{AmountRequest, OpenAccount};
use dtenge_core::money::Amount;
use dtenge_env::{Clock, Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::ClientKind;
use std::sync::Arc;

/// Set in the child: the name of the thread whose clock fails.
const CHILD_ENV: &str = "DTENGE_ROLES_PANIC_CHILD";
/// The signal `std::process::abort` raises (SIGABRT, 6 on Linux and macOS).
const SIGABRT: i32 = 6;
/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;

/// A clock that fails when the thread named `thread` reads it: a panic on that thread, at the
/// start of its step (a bank's flusher reads the time before it takes its queue, its inbox
/// thread before it handles an envelope).
struct FailsOn {
    clock: ManualClock,
    thread: String,
}

impl Clock for FailsOn {
    fn now_ms(&self) -> u64 {
        if std::thread::current().name() == Some(self.thread.as_str()) {
            panic!("the clock fails on {}", self.thread);
        }
        self.clock.now_ms()
    }
}

fn req(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).expect("an amount") }
}

/// The child's part: open the platform with `thread`'s clock failing, then have Steppe take a
/// client's conversion (its flusher) after it applied an emission (its inbox). The answer is
/// printed, which a child that stopped never does.
fn child(thread: &str) {
    let dir = tempfile::tempdir().expect("a directory");
    let clock = Arc::new(FailsOn { clock: ManualClock::new(MONDAY_MS), thread: thread.into() });
    let platform = Platform::open(dir.path(), clock, Entropy::from_seed(3)).expect("opens");
    let answer = (|| {
        platform.credit_correspondent(None, "steppe", req(10_000))?;
        platform.emission(None, "steppe", req(10_000))?;
        let client_id = (0..10).find_map(|d| complete_iin_bin(&format!("9001013000{d}"))).expect("an IIN");
        let request = OpenAccount {
            kind: ClientKind::Individual,
            client_id: client_id.clone(),
            name: "Aigerim Seitova".into(),
            phone: None,
            public_key: None,
        };
        platform.open_account(None, "steppe", request)?;
        platform.deposit_fiat(None, "steppe", &client_id, req(5_000))?;
        platform.convert_to_dt(None, "steppe", &client_id, req(5_000))
    })();
    println!("answered: {answer:?}");
}

/// Run the test `name` again in a child process whose `thread` fails; its output.
fn run_child(name: &str, thread: &str) -> std::process::Output {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    std::process::Command::new(test_binary)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, thread)
        .output()
        .expect("the child runs")
}

/// The child was stopped by `abort`, after the panic's message and the thread's word.
fn assert_stopped(out: &std::process::Output, thread: &str) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the child went on: {stdout}\n{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(SIGABRT), "{stdout}\n{stderr}");
    }
    assert!(stderr.contains(&format!("the clock fails on {thread}")), "the panic's message is on stderr: {stderr}");
    assert!(stderr.contains(&format!("{thread}: a panic on a role's thread stops the process")), "{stderr}");
    assert!(!stdout.contains("answered"), "no answer comes from a stopped process: {stdout}");
}

/// Before: the flusher thread ended alone; the platform went on, and every payment of the
/// bank waited `ANSWER_WAIT` and was answered `REQUEST_IN_PROGRESS`.
#[test]
fn a_panic_on_a_banks_flusher_stops_the_process() {
    if let Ok(thread) = std::env::var(CHILD_ENV) {
        return child(&thread);
    }
    let out = run_child("a_panic_on_a_banks_flusher_stops_the_process", "flush:steppe");
    assert_stopped(&out, "flush:steppe");
}

/// Before: the inbox thread ended alone; the bank applied nothing more (neither the notary's
/// answers nor deliveries) while the platform went on.
#[test]
fn a_panic_on_a_banks_inbox_thread_stops_the_process() {
    if let Ok(thread) = std::env::var(CHILD_ENV) {
        return child(&thread);
    }
    let out = run_child("a_panic_on_a_banks_inbox_thread_stops_the_process", "inbox:steppe");
    assert_stopped(&out, "inbox:steppe");
}
