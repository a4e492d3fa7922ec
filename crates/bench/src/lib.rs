//! `dtenge bench`: load on the payment path, measured.
//!
//! 1. **Seed** (untimed): a fresh network; `accounts` accounts whose clients keep their own
//!    keys, spread over the three banks (bulk opening, one commit per 10,000); `tokens` tokens
//!    of 100.00 KZT paid to them by registry distributions from the banks' own DT, which the
//!    banks got by emission through the ABS.
//! 2. **Prepare** (untimed): 2-input 2-output transfers between random accounts at different
//!    banks, signed by the clients on their side, plus the injected double spends (a second
//!    transfer of the same two tokens) and invalid signatures (a flipped signature byte).
//! 3. **Run** (timed): the transfers go through the network's payment pipeline, the path of
//!    `POST /v1/nodes/{node}/transactions`: the bank attests, every signature is verified,
//!    the notary checks and spends, one fsync'd commit per batch, the nodes apply. Closed loop
//!    (`in_flight` payments outstanding, a new one as each answer comes) or open loop (a
//!    fixed offered rate; latency counts from the moment each payment was due, so a backlog
//!    is not hidden).
//! 4. **Check**: every valid transfer committed, every injected one refused with its code,
//!    and the network reconciles.

pub mod http;
pub mod postgres;
pub mod programmable;
pub mod roles;

use dtenge_core::crypto::{hash_parts, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_network::types::{AmountRequest, OpenAccount, RegistryLine, RegistryRequest};
use dtenge_network::{Completion, Entropy, ManualClock, Network, NetworkConfig, Submission};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, OWN_ACCOUNT};
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
/// Lines per seeding registry (below the registry limit).
const SEED_LINES_MAX: usize = 15_000;
/// Accounts per bulk opening.
const SEED_ACCOUNTS_MAX: usize = 10_000;
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
    /// Closed loop: payments outstanding at once (the pipeline batches what is waiting).
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

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub config: Config,
    pub seed_seconds: f64,
    pub prepare_seconds: f64,
    pub run_seconds: f64,
    pub offered_per_s: Option<u64>,
    pub achieved_per_s: f64,
    pub submitted: usize,
    pub committed: usize,
    /// Refusals by error code.
    pub rejected: BTreeMap<String, usize>,
    pub injected_double_spends: usize,
    pub injected_invalid_signatures: usize,
    pub latency: Latency,
    /// CPU over the timed phase.
    pub cpu: CpuUse,
    pub peak_memory_bytes: u64,
    /// Growth of resident memory while seeding, per unspent token.
    pub bytes_per_unspent_token: f64,
    /// The checkpoint written after seeding, as a long-running platform has one.
    pub checkpoint: CheckpointCost,
    pub reconciled: bool,
    /// The PostgreSQL baseline with the same load, if asked for.
    pub baseline: Option<postgres::BaselineReport>,
    /// Our payments/s divided by the baseline's.
    pub throughput_ratio: Option<f64>,
    /// Our p99 latency divided by the baseline's (below 1 is better).
    pub p99_ratio: Option<f64>,
    /// The cost of held and marked payments next to a plain one, if asked for.
    pub programmable: Option<programmable::ProgrammableReport>,
    /// The monitoring polls during the timed phase, if asked for.
    pub monitoring: Option<MonitorPolls>,
    /// Every check held: valid payments committed, injected ones refused, reconciled.
    pub ok: bool,
    pub problems: Vec<String>,
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

/// What a checkpoint of the seeded state cost, and that cost spread over the transactions
/// after which the next one is due (`Network::checkpoint_due`).
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointCost {
    pub unspent_tokens: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// `seconds` divided by the transactions between two checkpoints.
    pub per_payment_us: f64,
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

fn resident_bytes() -> u64 {
    proc_status_kib("VmRSS:", "/proc/self/status") * 1024
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

/// Run the benchmark; `progress` hears what is happening.
pub fn run(config: &Config, mut progress: impl FnMut(&str)) -> Result<Report, String> {
    check_config(config)?;
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = config.data.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let clock = Arc::new(ManualClock::new(working_day_ms()));
    let network = Arc::new(
        Network::open(&dir, &NetworkConfig::standard(), clock, Entropy::from_seed(config.seed))
            .map_err(|e| e.to_string())?,
    );

    let started = Instant::now();
    let resident_before = resident_bytes();
    let accounts = seed(&network, config, &mut progress)?;
    let seed_seconds = started.elapsed().as_secs_f64();
    let bytes_per_unspent_token =
        resident_bytes().saturating_sub(resident_before) as f64 / network.reconcile().notary_unspent.max(1) as f64;
    progress(&format!("seeded {} accounts and {} tokens in {seed_seconds:.1} s", config.accounts, config.tokens));
    let checkpoint = checkpoint_cost(&network)?;
    progress(&format!("checkpoint of {} tokens in {:.2} s", checkpoint.unspent_tokens, checkpoint.seconds));
    // Never signalled: the checkpointer ends when the network is dropped after the run.
    dtenge_network::spawn_checkpointer(&network, &dtenge_network::StopSignal::new())
        .map_err(|e| format!("checkpointer: {e}"))?;

    let started = Instant::now();
    let prepared = prepare(accounts, config)?;
    let prepare_seconds = started.elapsed().as_secs_f64();
    progress(&format!("prepared and signed {} transfers in {prepare_seconds:.1} s", prepared.len()));

    // The submissions are built before the clock starts, as a client would have them ready:
    // the timed phase moves each into the pipeline instead of copying it.
    let expected: Vec<Expect> = prepared.iter().map(|p| p.expect).collect();
    let submissions: Vec<Submission> =
        prepared.into_iter().map(|p| Submission { node: p.bank.to_string(), tx: p.tx, idem: None }).collect();
    let cpu_meter = CpuMeter::start();
    let poller = config.monitor_every_ms.map(|every_ms| {
        let network = network.clone();
        let poll =
            move || network.monitoring().map(|t| t.circulation_tiyn.tiyn()).map_err(|e| format!("monitoring: {e}"));
        MonitorPoller::start(poll, every_ms)
    });
    let mut outcome = submit_all(&network, submissions, &expected, config)?;
    let monitoring = poller.map(MonitorPoller::stop).transpose()?;
    let cpu = cpu_meter.finish(outcome.committed);
    // The programmed payments are timed on the roles (`--roles`); today's network is only the
    // baseline the roles are compared with until it is deleted.
    let programmable = None;
    let reconciliation = network.reconcile();
    let mut problems = std::mem::take(&mut outcome.problems);
    if !reconciliation.ok {
        problems.extend(reconciliation.problems.iter().cloned());
    }
    check_outcome(&outcome, &expected, &mut problems);
    let count = |e: Expect| expected.iter().filter(|x| **x == e).count();
    let latency = |q: f64| outcome.latency.value_at_quantile(q);
    let achieved_per_s = outcome.committed as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    let baseline = match &config.baseline_postgres_url {
        Some(url) => {
            progress("running the PostgreSQL baseline with the same load");
            let baseline = postgres::run(url, config)?;
            if !baseline.conserved {
                problems.push("the PostgreSQL baseline did not conserve money".into());
            }
            Some(baseline)
        }
        None => None,
    };
    let throughput_ratio = baseline.as_ref().map(|b| achieved_per_s / b.achieved_per_s.max(1e-9));
    let p99_ratio = baseline.as_ref().map(|b| latency(0.99) as f64 / b.latency.p99_us.max(1) as f64);
    Ok(Report {
        machine: Machine::here(),
        config: config.clone(),
        seed_seconds,
        prepare_seconds,
        run_seconds: outcome.elapsed.as_secs_f64(),
        offered_per_s: config.rate_per_s,
        achieved_per_s,
        submitted: expected.len(),
        committed: outcome.committed,
        rejected: outcome.rejected,
        injected_double_spends: count(Expect::DoubleSpend),
        injected_invalid_signatures: count(Expect::InvalidSignature),
        latency: Latency {
            p50_us: latency(0.5),
            p99_us: latency(0.99),
            p999_us: latency(0.999),
            max_us: outcome.latency.max(),
        },
        cpu,
        peak_memory_bytes: peak_bytes(),
        bytes_per_unspent_token,
        checkpoint,
        reconciled: reconciliation.ok,
        baseline,
        throughput_ratio,
        p99_ratio,
        programmable,
        monitoring,
        ok: problems.is_empty(),
        problems,
    })
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

/// Open the accounts and pay them their tokens, through the platform's own operations.
fn seed(network: &Network, config: &Config, progress: &mut impl FnMut(&str)) -> Result<Vec<BenchAccount>, String> {
    let err = |e: dtenge_core::Error| e.to_string();
    let mut accounts = Vec::with_capacity(config.accounts);
    for (b, bank) in BANKS.iter().enumerate() {
        let mine: Vec<usize> = (0..config.accounts).filter(|n| n % BANKS.len() == b).collect();
        for chunk in mine.chunks(SEED_ACCOUNTS_MAX) {
            let mut requests = Vec::with_capacity(chunk.len());
            for &n in chunk {
                let key = key_of(config.seed, n);
                requests.push(OpenAccount {
                    kind: ClientKind::Individual,
                    client_id: iin(n)?,
                    name: format!("Bench Client {n}"),
                    phone: None,
                    public_key: Some(key.public_key()),
                });
                accounts.push((n, *bank, key));
            }
            network.open_accounts(None, bank, requests).map_err(err)?;
        }
        progress(&format!("opened {} accounts at {bank}", mine.len()));
    }
    accounts.sort_by_key(|(n, _, _)| *n);

    // Token t goes to account t % accounts: every account gets tokens / accounts of them.
    for (b, bank) in BANKS.iter().enumerate() {
        let lines: Vec<RegistryLine> = (0..config.tokens)
            .filter(|t| (t % config.accounts) % BANKS.len() == b)
            .map(|t| {
                Ok(RegistryLine {
                    phone: None,
                    client_id: Some(iin(t % config.accounts)?),
                    bank: Some((*bank).to_string()),
                    amount_tiyn: amount(TOKEN_TIYN)?,
                })
            })
            .collect::<Result<_, String>>()?;
        let total = amount(TOKEN_TIYN * lines.len() as u64)?;
        network.credit_correspondent(None, bank, AmountRequest { amount_tiyn: total }).map_err(err)?;
        network.emission(None, bank, AmountRequest { amount_tiyn: total }).map_err(err)?;
        let mut rest = lines;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(SEED_LINES_MAX));
            let report = network
                .distribute_registry(
                    None,
                    bank,
                    RegistryRequest { from: OWN_ACCOUNT.into(), reference: None, lines: rest },
                )
                .map_err(err)?;
            if report.lines_rejected > 0 {
                return Err(format!("seeding registry rejected {} lines", report.lines_rejected));
            }
            rest = tail;
        }
        progress(&format!("paid the tokens of {bank}"));
    }

    accounts
        .into_iter()
        .map(|(n, bank, key)| {
            let tokens = network.spendable_tokens(bank, &iin(n)?).map_err(err)?;
            Ok(BenchAccount { bank, key, tokens })
        })
        .collect()
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

/// Send everything through the pipeline, closed or open loop, and count. One thread submits
/// and collects answers: the pipeline does the work on its own threads. `expected[i]` says
/// what the `i`-th submission must do.
fn submit_all(
    network: &Arc<Network>,
    submissions: Vec<Submission>,
    expected: &[Expect],
    config: &Config,
) -> Result<Outcome, String> {
    if submissions.len() != expected.len() {
        return Err("one expectation per submission".into());
    }
    let pipeline = network.pipeline().map_err(|e| e.to_string())?;
    let (reply, answers) = crossbeam_channel::unbounded::<Completion>();
    let mut submissions = submissions.into_iter();
    let send = |tag: u64| {
        let submission = submissions.next().ok_or("fewer submissions than counted")?;
        pipeline.submit(submission, tag, &reply).map_err(|e| e.to_string())
    };
    drive(expected, config, send, &answers, |c| (c.tag, c.result, c.done))
}

/// Longest the load generator waits for one answer before it gives up on the run.
pub(crate) const ANSWER_WAIT_MAX: Duration = Duration::from_secs(600);

/// The load loop of both benches: `send(i)` sends the `i`-th submission, tagged `i`; answers
/// arrive on `answers` and `unpack` says which submission each answers, how, and when it was
/// taken. Closed loop (`in_flight` outstanding, a new one as each answer comes) or open loop
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

/// Write a checkpoint and time it (nothing else runs meanwhile).
fn checkpoint_cost(network: &Network) -> Result<CheckpointCost, String> {
    let started = Instant::now();
    let written = network.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let interval = dtenge_network::checkpoint_interval(written.notary.items);
    Ok(CheckpointCost {
        unspent_tokens: written.notary.items,
        bytes: written.notary.bytes + written.nodes.bytes,
        seconds,
        per_payment_us: seconds * 1e6 / interval as f64,
    })
}

/// The report as people read it.
pub fn render(report: &Report) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    out.push_str(&report.machine.line());
    out.push_str(&format!(
        "seeded             {} accounts, {} tokens in {:.1} s; prepared {} transfers in {:.1} s\n",
        report.config.accounts, report.config.tokens, report.seed_seconds, report.submitted, report.prepare_seconds
    ));
    out.push_str(&format!(
        "checkpoint         {} tokens, {:.0} MiB in {:.2} s: {:.2} µs per payment between two checkpoints\n",
        report.checkpoint.unspent_tokens,
        report.checkpoint.bytes as f64 / (1u64 << 20) as f64,
        report.checkpoint.seconds,
        report.checkpoint.per_payment_us
    ));
    out.push_str(&format!(
        "mode               {}\n",
        match report.offered_per_s {
            Some(rate) => format!("open loop, offered {rate} payments/s"),
            None => format!("closed loop (saturation), {} payments in flight", report.config.in_flight),
        },
    ));
    out.push_str(&format!(
        "achieved           {:.0} payments/s ({} committed in {:.2} s)\n",
        report.achieved_per_s, report.committed, report.run_seconds
    ));
    out.push_str(&format!(
        "injected           {} double spends, {} invalid signatures; rejected {:?}\n",
        report.injected_double_spends, report.injected_invalid_signatures, report.rejected
    ));
    out.push_str(&format!(
        "latency            p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n",
        ms(report.latency.p50_us),
        ms(report.latency.p99_us),
        ms(report.latency.p999_us),
        ms(report.latency.max_us)
    ));
    out.push_str(&format!(
        "cpu                {:.1} µs of the process per payment; machine {:.0}% busy, {:.1}% stolen by the hypervisor\n",
        report.cpu.process_us_per_payment,
        report.cpu.machine_busy * 100.0,
        report.cpu.machine_steal * 100.0
    ));
    out.push_str(&format!(
        "memory             peak {:.0} MiB, {:.0} bytes per unspent token\n",
        report.peak_memory_bytes as f64 / (1u64 << 20) as f64,
        report.bytes_per_unspent_token
    ));
    if let (Some(b), Some(t), Some(l)) = (&report.baseline, report.throughput_ratio, report.p99_ratio) {
        out.push_str(&format!(
            "postgres baseline  {:.0} payments/s, p50 {:.2} ms, p99 {:.2} ms ({} connections, SELECT … FOR UPDATE, synchronous commit)\n",
            b.achieved_per_s,
            ms(b.latency.p50_us),
            ms(b.latency.p99_us),
            b.connections
        ));
        out.push_str(&format!("ratio              dtenge / postgres: throughput {t:.2}x, p99 {l:.2}x\n"));
    }
    if let Some(m) = &report.monitoring {
        out.push_str(&format!(
            "monitoring         polled every {} ms during the run: {} polls, the slowest {:.2} ms\n",
            m.every_ms, m.polls, m.poll_ms_max
        ));
    }
    if let Some(programmable) = &report.programmable {
        out.push_str(&programmable::render(programmable));
    }
    out.push_str(&format!(
        "checks             {}\n",
        if report.ok {
            "ok: valid payments committed, injected ones refused, reconciled".to_string()
        } else {
            format!("FAILED: {:?}", report.problems)
        }
    ));
    out
}
