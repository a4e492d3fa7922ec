//! `dtenge bench`: load on the payment path, measured.
//!
//! The in-process load runs on the roles as `dtenge up` runs them ([`roles`]): seed accounts
//! and tokens (untimed), prepare and sign 2-in 2-out transfers with injected double spends
//! and invalid signatures (untimed), send them closed or open loop (timed), then check that
//! every valid transfer committed, every injected one was refused with its code, and the
//! roles reconcile. [`http`] drives a running `dtenge up` through its REST API instead, and
//! [`postgres`] is the peer baseline with the same load. This module holds what they share:
//! the configuration, the preparation of the signed transfers, the load loop and the meters.
//!
//! The one-process network's run (`dtenge bench --network`) went with its crate
//! (`dtenge-network`, deleted); its figures are in `docs/PERFORMANCE.md`.

pub mod cluster;
pub mod http;
pub mod postgres;
pub mod programmable;
mod raw_http;
pub mod roles;
pub mod soak;

use dtenge_core::crypto::{hash_parts, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_node::ids::complete_iin_bin;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The banks load is spread over.
pub const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];
/// Value of every seeded token: 100.00 KZT.
pub const TOKEN_TIYN: u64 = 100_00;
/// Longest a latency may be recorded as (1 hour), in microseconds.
pub(crate) const LATENCY_US_MAX: u64 = 3_600_000_000;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub accounts: usize,
    pub tokens: usize,
    /// Valid payments to send (each spends two tokens).
    pub payments: usize,
    /// Offered payments per second (open loop); `None` = closed loop (saturation).
    pub rate_per_s: Option<u64>,
    /// Closed loop: payments outstanding at once (the banks batch what is waiting).
    pub in_flight: usize,
    /// Client connections of the PostgreSQL baseline.
    pub threads: usize,
    /// Extra transfers that spend already spent tokens, as a percentage of `payments`.
    pub double_spend_percent: f64,
    /// Extra transfers with a corrupted signature, as a percentage of `payments`.
    pub invalid_signature_percent: f64,
    pub seed: u64,
    /// Where the database lives; a temporary directory when `None`.
    pub data: Option<PathBuf>,
    /// Also run the PostgreSQL baseline (rows under `SELECT … FOR UPDATE`) at this URL.
    pub baseline_postgres_url: Option<String>,
    /// Operations of each programmed kind (plain custodial, hold, release, marked) to time
    /// after the main run; 0 skips the phase.
    pub programmable_ops: usize,
    /// Poll the monitoring totals this often during the timed phase, as the operator's
    /// dashboard does; `None` does not poll.
    pub monitor_every_ms: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            accounts: 100_000,
            tokens: 1_000_000,
            payments: 200_000,
            rate_per_s: None,
            in_flight: 4_096,
            threads: 64,
            double_spend_percent: 1.0,
            invalid_signature_percent: 1.0,
            seed: 1,
            data: None,
            baseline_postgres_url: None,
            programmable_ops: 1_000,
            monitor_every_ms: None,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// CPU time over the timed phase: the process's (every thread, user and system: the platform
/// and the load generator) and the whole machine's, from `/proc/stat`. On a virtual machine the
/// steal share says how much of the time the hypervisor gave to others, which throughput alone
/// cannot show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUse {
    /// The process's CPU time per committed payment.
    pub process_us_per_payment: f64,
    /// Share of the machine's CPU time spent busy (not idle, not waiting for I/O), 0 to 1.
    pub machine_busy: f64,
    /// Share of the machine's CPU time the hypervisor took (steal), 0 to 1.
    pub machine_steal: f64,
}

/// The machine's CPU time so far, in clock ticks: (busy, idle and I/O wait, steal).
pub(crate) fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0, 0) };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    (busy, at(3) + at(4), at(7))
}

/// Measures [`CpuUse`] from its start to [`CpuMeter::finish`].
pub(crate) struct CpuMeter {
    process_us: f64,
    machine: (u64, u64, u64),
}

impl CpuMeter {
    fn start() -> CpuMeter {
        CpuMeter { process_us: programmable::cpu_us(), machine: machine_ticks() }
    }

    fn finish(&self, payments: usize) -> CpuUse {
        let (busy, idle, steal) = machine_ticks();
        let busy = busy.saturating_sub(self.machine.0) as f64;
        let idle = idle.saturating_sub(self.machine.1) as f64;
        let steal = steal.saturating_sub(self.machine.2) as f64;
        let total = (busy + idle + steal).max(1.0);
        CpuUse {
            process_us_per_payment: (programmable::cpu_us() - self.process_us) / payments.max(1) as f64,
            machine_busy: busy / total,
            machine_steal: steal / total,
        }
    }
}

/// A report's last line: what held, when the run passed, or every problem.
pub(crate) fn checks_line(ok: bool, held: &str, problems: &[String]) -> String {
    if ok {
        format!("checks             ok: {held}\n")
    } else {
        format!("checks             FAILED: {problems:?}\n")
    }
}

/// The machine the run happened on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
}

impl Machine {
    /// The report's first line: what the figures were measured on.
    pub fn line(&self) -> String {
        format!(
            "machine            {} CPUs, {}, {:.1} GiB\n",
            self.cpus,
            self.cpu_model,
            self.memory_bytes as f64 / (1u64 << 30) as f64
        )
    }

    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            memory_bytes: proc_status_kib("MemTotal:", "/proc/meminfo") * 1024,
        }
    }
}

/// A field of a `/proc` status file, in KiB.
fn proc_status_kib(field: &str, file: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn peak_bytes() -> u64 {
    proc_status_kib("VmHWM:", "/proc/self/status") * 1024
}

/// One seeded account.
pub(crate) struct BenchAccount {
    bank: &'static str,
    key: SecretKey,
    tokens: Vec<Input>,
}

/// What a prepared transfer is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    Commit,
    DoubleSpend,
    InvalidSignature,
}

pub(crate) struct Prepared {
    bank: &'static str,
    tx: Transaction,
    expect: Expect,
}

pub(crate) fn amount(tiyn: u64) -> Result<Amount, String> {
    Amount::from_tiyn(tiyn).map_err(|e| e.to_string())
}

/// Monday 2026-11-23 10:00 in Astana: conversions with the NBK need an operational day.
pub(crate) fn working_day_ms() -> u64 {
    let days = dtenge_core::calendar::Date::new(2026, 11, 23).map(|d| d.days()).unwrap_or(0);
    (days as u64 * 86_400 + 5 * 3600) * 1000
}

pub(crate) fn iin(n: usize) -> Result<String, String> {
    let base = 10_000_000_000u64 + n as u64 * 10;
    (0..10).find_map(|k| complete_iin_bin(&format!("{:011}", base + k))).ok_or_else(|| format!("no IIN near {base}"))
}

/// The load `config` asks for is one the bench can seed and send.
pub(crate) fn check_config(config: &Config) -> Result<(), String> {
    if config.accounts < BANKS.len() * 2 || config.tokens < config.accounts * 2 {
        return Err("need at least 6 accounts and 2 tokens per account".into());
    }
    if config.payments * 2 > config.tokens {
        return Err(format!("{} payments need {} tokens; seed more", config.payments, config.payments * 2));
    }
    if config.threads == 0 || config.threads > 4_096 {
        return Err("threads must be 1 to 4096".into());
    }
    if config.in_flight == 0 || config.in_flight > IN_FLIGHT_MAX {
        return Err(format!("in-flight must be 1 to {IN_FLIGHT_MAX}"));
    }
    Ok(())
}

/// Every valid transfer committed, every injected one refused with its code.
pub(crate) fn check_outcome(outcome: &Outcome, expected: &[Expect], problems: &mut Vec<String>) {
    let count = |e: Expect| expected.iter().filter(|x| **x == e).count();
    let valid = count(Expect::Commit);
    if outcome.committed != valid {
        problems.push(format!("{} of {valid} valid payments committed", outcome.committed));
    }
    let refused = |code: ErrorCode| outcome.rejected.get(code.as_str()).copied().unwrap_or(0);
    if refused(ErrorCode::DoubleSpend) != count(Expect::DoubleSpend) {
        problems.push(format!(
            "{} double spends injected, {} refused",
            count(Expect::DoubleSpend),
            refused(ErrorCode::DoubleSpend)
        ));
    }
    if refused(ErrorCode::InvalidSignature) != count(Expect::InvalidSignature) {
        problems.push(format!(
            "{} invalid signatures injected, {} refused",
            count(Expect::InvalidSignature),
            refused(ErrorCode::InvalidSignature)
        ));
    }
}

/// What polling the monitoring totals cost during the timed phase.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorPolls {
    pub every_ms: u64,
    pub polls: u64,
    /// The slowest poll.
    pub poll_ms_max: f64,
    pub circulation_tiyn_last: u64,
}

/// A thread that reads the monitoring totals (`poll`, answering the circulation) every
/// `every_ms` until stopped, as the operator's dashboard polls them.
pub(crate) struct MonitorPoller {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<MonitorPolls, String>>,
}

impl MonitorPoller {
    pub(crate) fn start(poll: impl Fn() -> Result<u64, String> + Send + 'static, every_ms: u64) -> MonitorPoller {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut polls = MonitorPolls { every_ms, polls: 0, poll_ms_max: 0.0, circulation_tiyn_last: 0 };
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let circulation_tiyn = poll()?;
                polls.poll_ms_max = polls.poll_ms_max.max(started.elapsed().as_secs_f64() * 1e3);
                polls.polls += 1;
                polls.circulation_tiyn_last = circulation_tiyn;
                std::thread::sleep(std::time::Duration::from_millis(every_ms));
            }
            Ok(polls)
        });
        MonitorPoller { stop, thread }
    }

    pub(crate) fn stop(self) -> Result<MonitorPolls, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().map_err(|_| "the monitoring poller panicked".to_string())?
    }
}

pub(crate) fn key_of(seed: u64, n: usize) -> SecretKey {
    SecretKey::from_seed(hash_parts(b"dtenge/bench/key", &[&seed.to_le_bytes(), &(n as u64).to_le_bytes()]).0)
}

/// Build and sign every transfer before the clock starts: clients sign on their side.
pub(crate) fn prepare(mut accounts: Vec<BenchAccount>, config: &Config) -> Result<Vec<Prepared>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut plans = Vec::with_capacity(config.payments);
    let mut cursor = 0usize;
    for p in 0..config.payments {
        // Next account (round robin) that still has two unspent tokens.
        let mut tries = 0;
        while accounts[cursor].tokens.len() < 2 {
            cursor = (cursor + 1) % accounts.len();
            tries += 1;
            if tries > accounts.len() {
                return Err("ran out of tokens".into());
            }
        }
        let payer = cursor;
        cursor = (cursor + 1) % accounts.len();
        let inputs: Vec<Input> = accounts[payer].tokens.drain(..2).collect();
        let mut payee = rng.gen_range(0..accounts.len());
        while accounts[payee].bank == accounts[payer].bank {
            payee = rng.gen_range(0..accounts.len());
        }
        plans.push((payer, payee, inputs, p as u64));
    }
    let double_spends = (config.payments as f64 * config.double_spend_percent / 100.0).round() as usize;
    let invalid = (config.payments as f64 * config.invalid_signature_percent / 100.0).round() as usize;

    // Signing is the expensive part: spread it over every core.
    let accounts = &accounts;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = plans.len().div_ceil(threads).max(1);
    let mut prepared: Vec<Prepared> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .chunks(chunk)
            .map(|plans| {
                scope.spawn(move || {
                    plans
                        .iter()
                        .map(|(payer, payee, inputs, nonce)| {
                            let (payer, payee) = (&accounts[*payer], &accounts[*payee]);
                            let issuer = inputs[0].output.issuer;
                            let value: u64 = inputs.iter().map(|i| i.output.amount_tiyn.tiyn()).sum();
                            let paid = value / 2 + nonce % (value / 4);
                            let outputs = vec![
                                Output::standard(Amount::from_tiyn(paid)?, payee.key.address(), issuer),
                                Output::standard(Amount::from_tiyn(value - paid)?, payer.key.address(), issuer),
                            ];
                            let body =
                                TxBody { command: Command::Transfer, inputs: inputs.clone(), outputs, nonce: *nonce };
                            let mut tx = Transaction::new(body);
                            tx.sign_owner(&payer.key);
                            Ok(Prepared { bank: payer.bank, tx, expect: Expect::Commit })
                        })
                        .collect::<Result<Vec<_>, dtenge_core::Error>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| "signing thread panicked".to_string())).collect::<Vec<_>>()
    })
    .into_iter()
    .map(|r| r.and_then(|v| v.map_err(|e| e.to_string())))
    .collect::<Result<Vec<_>, String>>()?
    .into_iter()
    .flatten()
    .collect();

    // Injected faults, placed after the payment they copy so the valid one usually comes first.
    let valid = prepared.len();
    let mut injected = Vec::with_capacity(double_spends + invalid);
    for k in 0..double_spends {
        let original = &prepared[(k * 7919) % valid];
        let mut body = original.tx.body.clone();
        body.nonce += 1_000_000_000;
        body.outputs.swap(0, 1);
        let mut tx = Transaction::new(body);
        let payer = accounts.iter().find(|a| a.key.address() == original.tx.body.inputs[0].output.owner);
        let payer = payer.ok_or("payer of a double spend not found")?;
        tx.sign_owner(&payer.key);
        injected.push((k * 7919 % valid, Prepared { bank: original.bank, tx, expect: Expect::DoubleSpend }));
    }
    for k in 0..invalid {
        let original = &prepared[(k * 104_729 + 1) % valid];
        let mut tx = original.tx.clone();
        tx.body.nonce += 2_000_000_000;
        tx.witnesses[0].signature.sig.0[5] ^= 0x40;
        injected
            .push(((k * 104_729 + 1) % valid, Prepared { bank: original.bank, tx, expect: Expect::InvalidSignature }));
    }
    // Insert each copy some distance after its original.
    injected.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, p) in injected {
        let position = (at + 1 + config.in_flight).min(prepared.len());
        prepared.insert(position, p);
    }
    Ok(prepared)
}

/// Open loop (`interval` given): sleep until payment `i` is due and return when that was, so
/// latency counts from then and a backlog shows. Closed loop: now. (The PostgreSQL baseline's
/// threads pace themselves with it.)
pub(crate) fn wait_until_due(started: Instant, interval: Option<Duration>, i: usize) -> Instant {
    let Some(interval) = interval else { return Instant::now() };
    let due = started + interval.mul_f64(i as f64);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    due
}

/// Most payments the closed loop keeps outstanding.
pub const IN_FLIGHT_MAX: usize = 1 << 20;

pub(crate) struct Outcome {
    committed: usize,
    rejected: BTreeMap<String, usize>,
    latency: Histogram<u64>,
    elapsed: Duration,
    problems: Vec<String>,
}

/// Longest the load generator waits for one answer before it gives up on the run.
pub(crate) const ANSWER_WAIT_MAX: Duration = Duration::from_secs(600);

/// The load loop of the in-process bench: `send(i)` sends the `i`-th submission, tagged `i`;
/// answers arrive on `answers` and `unpack` says which submission each answers, how, and when
/// it was taken. Closed loop (`in_flight` outstanding, a new one as each answer comes) or open loop
/// (a fixed offered rate; latency counts from the moment each was due, so a backlog shows).
pub(crate) fn drive<A, T>(
    expected: &[Expect],
    config: &Config,
    mut send: impl FnMut(u64) -> Result<(), String>,
    answers: &crossbeam_channel::Receiver<A>,
    unpack: impl Fn(A) -> (u64, dtenge_core::Result<T>, Instant),
) -> Result<Outcome, String> {
    let interval = config.rate_per_s.map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    // Open loop: never wait for answers before sending (the platform's queues still push back).
    let window = if interval.is_some() { usize::MAX } else { config.in_flight };
    let mut outcome = Outcome {
        committed: 0,
        rejected: BTreeMap::new(),
        latency: Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())?,
        elapsed: Duration::ZERO,
        problems: Vec::new(),
    };
    let total = expected.len();
    let mut due = vec![None::<Instant>; total];
    let (mut sent, mut answered) = (0usize, 0usize);
    let started = Instant::now();
    while answered < total {
        while sent < total && sent - answered < window {
            let due_at = match interval {
                Some(interval) => {
                    let at = started + interval.mul_f64(sent as f64);
                    if at > Instant::now() {
                        break;
                    }
                    at
                }
                None => Instant::now(),
            };
            due[sent] = Some(due_at);
            send(sent as u64)?;
            sent += 1;
        }
        // Wait for an answer, or (open loop) until the next payment is due.
        let next_due = interval.filter(|_| sent < total).map(|i| started + i.mul_f64(sent as f64));
        let first = match next_due {
            Some(at) => match answers.recv_deadline(at) {
                Ok(answer) => Some(answer),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(e) => return Err(e.to_string()),
            },
            None => Some(answers.recv_timeout(ANSWER_WAIT_MAX).map_err(|e| format!("waiting for an answer: {e}"))?),
        };
        for answer in first.into_iter().chain(std::iter::from_fn(|| answers.try_recv().ok())) {
            answered += 1;
            let (tag, result, done) = unpack(answer);
            let index = tag as usize;
            let Some((expect, Some(due_at))) = expected.get(index).zip(due.get(index).copied()) else {
                return Err(format!("an answer for payment {index}, which was not sent"));
            };
            let latency_us = done.saturating_duration_since(due_at).as_micros().clamp(1, u128::from(LATENCY_US_MAX));
            let _ = outcome.latency.record(latency_us as u64);
            tally(&mut outcome, result, *expect);
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Count one answer. A double spend and the payment it copies race: whichever reaches the
/// notary first commits, the other is refused. Exactly one of each pair must commit, which
/// the totals check after the run.
pub(crate) fn tally<T>(outcome: &mut Outcome, answer: dtenge_core::Result<T>, expect: Expect) {
    match (answer, expect) {
        (Ok(_), Expect::Commit | Expect::DoubleSpend) => outcome.committed += 1,
        (Err(e), expect) => {
            *outcome.rejected.entry(e.code.as_str().to_string()).or_insert(0) += 1;
            let fine = matches!(
                (e.code, expect),
                (ErrorCode::DoubleSpend, Expect::DoubleSpend | Expect::Commit)
                    | (ErrorCode::InvalidSignature, Expect::InvalidSignature)
            );
            if !fine && outcome.problems.len() < 10 {
                outcome.problems.push(format!("{expect:?} transfer refused: {e}"));
            }
        }
        (Ok(_), expect) => outcome.problems.push(format!("{expect:?} transfer committed")),
    }
}
