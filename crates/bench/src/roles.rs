//! `dtenge bench --roles`: the same load as `dtenge bench`, on the roles as `dtenge up` runs
//! them (the platform facade over `dtenge-assembly`): the notary, central, the directory, the
//! oracle, three banks and the Treasury, each with its own store and its own threads, talking
//! only through envelopes. The load goes to the banks' services directly, as a gateway's
//! would; the monitoring polls and the programmed payments after the run go through the
//! facade, as the REST API's do.
//!
//! 1. **Seed** (untimed): the accounts (clients keeping their own keys) are migrated to their
//!    banks (claimed at the directory and opened, 10,000 per commit); central issues each
//!    bank its share of the tokens' value against its correspondent account; each bank pays
//!    its clients their tokens from its own account, up to 10,000 outputs per payment.
//! 2. **Prepare** (untimed): the same signed 2-in 2-out transfers between accounts at
//!    different banks, double spends and bad signatures as `dtenge bench` prepares.
//! 3. **Run** (timed): each transfer goes to its payer's bank (`Request::Signed`), which
//!    checks, attests, verifies and batches it; the notary spends; the payer's bank applies
//!    the certificate and delivers to the payee's bank. A payment counts when its payer's bank
//!    answers (its commit is durable); closed loop (`in_flight` outstanding) or open loop.
//! 4. **Check**: every valid transfer committed, every injected one refused, and once the
//!    deliveries landed, the DT in the banks' wallets = the ABS liability and the banks'
//!    tokens = the notary's unspent set.

use crate::programmable::{self, ProgrammableReport};
use crate::{
    key_of, peak_bytes, prepare, BenchAccount, Config, CpuMeter, CpuUse, Expect, Latency, Machine, MonitorPoller,
    MonitorPolls, Outcome, BANKS, TOKEN_TIYN,
};
use dtenge_api::platform::Platform;
use dtenge_assembly::{Assembly, BankHandle};
use dtenge_bank::{AccountKey, Committed, Request};
use dtenge_core::crypto::Address;
use dtenge_core::money::Amount;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::{Account, ClientKind, OWN_ACCOUNT};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accounts per migration commit.
const MIGRATE_ACCOUNTS_MAX: usize = 10_000;
/// Outputs per seeding payment.
const SEED_OUTPUTS_MAX: usize = 10_000;
/// Longest the seeding or the settling after the run may take.
const WAIT_MAX: Duration = Duration::from_secs(600);

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct RolesReport {
    pub machine: Machine,
    pub config: Config,
    pub seed_seconds: f64,
    pub prepare_seconds: f64,
    pub run_seconds: f64,
    pub offered_per_s: Option<u64>,
    pub achieved_per_s: f64,
    pub submitted: usize,
    pub committed: usize,
    pub rejected: BTreeMap<String, usize>,
    pub injected_double_spends: usize,
    pub injected_invalid_signatures: usize,
    pub latency: Latency,
    pub cpu: CpuUse,
    pub peak_memory_bytes: u64,
    /// CPU per committed payment in µs over the timed phase, by thread name (the banks' threads
    /// summed by kind: `inbox:<bank>` into `inbox:banks`, `flush:<bank>` into `flush:banks`).
    /// The monitoring polls during the timed phase, if asked for.
    pub monitoring: Option<MonitorPolls>,
    /// Programmed payments one at a time after the run, if asked for.
    pub programmable: Option<ProgrammableReport>,
    /// The PostgreSQL baseline with the same load, if asked for.
    pub baseline: Option<crate::postgres::BaselineReport>,
    /// Our payments/s divided by the baseline's.
    pub throughput_ratio: Option<f64>,
    /// Our p99 latency divided by the baseline's (below 1 is better).
    pub p99_ratio: Option<f64>,
    pub cpu_us_per_payment_by_thread: BTreeMap<String, f64>,
    /// Notarize requests the banks sent (first sends), and the mean transactions in one.
    pub batches: u64,
    pub txs_per_batch: f64,
    pub reconciled: bool,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Run the bench on the roles.
pub fn run(config: &Config, mut progress: impl FnMut(&str)) -> Result<RolesReport, String> {
    crate::check_config(config)?;
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = config.data.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let clock = Arc::new(ManualClock::new(crate::working_day_ms()));
    // Shared with the monitoring poller, if there is one.
    let platform = Arc::new(
        Platform::open(&dir, clock, Entropy::from_seed(config.seed)).map_err(|e| format!("starting the roles: {e}"))?,
    );
    let assembly = platform.assembly();

    let started = Instant::now();
    let accounts = seed(assembly, config, &mut progress)?;
    let seed_seconds = started.elapsed().as_secs_f64();
    progress(&format!("seeded {} accounts and {} tokens in {seed_seconds:.1} s", config.accounts, config.tokens));

    let started = Instant::now();
    let prepared = prepare(accounts, config)?;
    let prepare_seconds = started.elapsed().as_secs_f64();
    progress(&format!("prepared and signed {} transfers in {prepare_seconds:.1} s", prepared.len()));

    let expected: Vec<Expect> = prepared.iter().map(|p| p.expect).collect();
    let submissions: Vec<(&'static str, Request)> =
        prepared.into_iter().map(|p| (p.bank, Request::Signed(p.tx))).collect();
    let batches_before = batches_sent(assembly);
    let cpu_meter = CpuMeter::start();
    let threads_before = thread_cpu_ticks();
    let poller = config.monitor_every_ms.map(|every_ms| MonitorPoller::start(monitoring_poll(&platform), every_ms));
    let outcome = submit_all(assembly, submissions, &expected, config)?;
    let monitoring = poller.map(MonitorPoller::stop).transpose()?;
    let cpu = cpu_meter.finish(outcome.committed);
    let cpu_us_per_payment_by_thread = per_payment(&threads_before, &thread_cpu_ticks(), outcome.committed);
    let batches = batches_sent(assembly) - batches_before;

    assembly.settle(WAIT_MAX).map_err(|e| e.to_string())?;
    let programmable = if config.programmable_ops > 0 {
        progress(&format!("timing {} plain, held and marked payments one at a time", config.programmable_ops));
        Some(programmable::run(&platform, config.programmable_ops)?)
    } else {
        None
    };
    assembly.settle(WAIT_MAX).map_err(|e| e.to_string())?;
    let mut outcome = outcome;
    let mut problems = std::mem::take(&mut outcome.problems);
    let reconciliation = assembly.reconcile();
    let reconciled = reconciliation.is_empty();
    problems.extend(reconciliation);
    crate::check_outcome(&outcome, &expected, &mut problems);
    let latency = |q: f64| outcome.latency.value_at_quantile(q);
    let achieved_per_s = outcome.committed as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    let baseline = match &config.baseline_postgres_url {
        Some(url) => {
            progress("running the PostgreSQL baseline with the same load");
            let baseline = crate::postgres::run(url, config)?;
            if !baseline.conserved {
                problems.push("the PostgreSQL baseline did not conserve money".into());
            }
            Some(baseline)
        }
        None => None,
    };
    let throughput_ratio = baseline.as_ref().map(|b| achieved_per_s / b.achieved_per_s.max(1e-9));
    let p99_ratio = baseline.as_ref().map(|b| latency(0.99) as f64 / b.latency.p99_us.max(1) as f64);
    let count = |e: Expect| expected.iter().filter(|x| **x == e).count();
    let report = RolesReport {
        machine: Machine::here(),
        config: config.clone(),
        seed_seconds,
        prepare_seconds,
        run_seconds: outcome.elapsed.as_secs_f64(),
        offered_per_s: config.rate_per_s,
        achieved_per_s,
        submitted: expected.len(),
        committed: outcome.committed,
        rejected: outcome.rejected.clone(),
        injected_double_spends: count(Expect::DoubleSpend),
        injected_invalid_signatures: count(Expect::InvalidSignature),
        latency: Latency {
            p50_us: latency(0.5),
            p99_us: latency(0.99),
            p999_us: latency(0.999),
            max_us: outcome.latency.max(),
        },
        cpu,
        monitoring,
        programmable,
        baseline,
        throughput_ratio,
        p99_ratio,
        cpu_us_per_payment_by_thread,
        peak_memory_bytes: peak_bytes(),
        batches,
        txs_per_batch: expected.len() as f64 / batches.max(1) as f64,
        reconciled,
        ok: problems.is_empty(),
        problems,
    };
    match Arc::into_inner(platform) {
        Some(platform) => platform.shutdown(),
        None => return Err("the roles were still shared after the run".into()),
    }
    Ok(report)
}

/// What the operator's dashboard reads: the platform's monitoring totals (running totals,
/// role by role), answering the circulation.
fn monitoring_poll(platform: &Arc<Platform>) -> impl Fn() -> Result<u64, String> + Send + 'static {
    let platform = platform.clone();
    move || platform.monitoring().map(|m| m.circulation_tiyn.tiyn()).map_err(|e| format!("monitoring: {e}"))
}

/// CPU ticks (user and system) of every thread of this process, by thread id, with its name.
fn thread_cpu_ticks() -> BTreeMap<u64, (String, u64)> {
    let mut ticks = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return ticks };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else { continue };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        ticks.insert(tid, (name, fields.iter().sum()));
    }
    ticks
}

/// µs of CPU per payment by thread kind, between two readings.
fn per_payment(
    before: &BTreeMap<u64, (String, u64)>,
    after: &BTreeMap<u64, (String, u64)>,
    payments: usize,
) -> BTreeMap<String, f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, ticks)) in after {
        let spent = ticks.saturating_sub(before.get(tid).map_or(0, |(_, t)| *t));
        let kind = match name.split_once(':') {
            Some(("inbox", "notary" | "central" | "directory")) => name.clone(),
            Some((kind @ ("inbox" | "flush"), _)) => format!("{kind}:banks"),
            _ => name.clone(),
        };
        *by_kind.entry(kind).or_insert(0.0) += spent as f64 / ticks_per_s * 1e6 / payments.max(1) as f64;
    }
    by_kind.retain(|_, us| *us >= 0.05);
    by_kind
}

fn batches_sent(assembly: &Assembly) -> u64 {
    assembly.banks().iter().map(|b| b.service().stats().batches_sent).sum()
}

/// Migrate the accounts, fund the banks, pay every account its tokens.
fn seed(assembly: &Assembly, config: &Config, progress: &mut impl FnMut(&str)) -> Result<Vec<BenchAccount>, String> {
    let err = |e: dtenge_core::Error| e.to_string();
    let opened_at_unix_ms = assembly.now_ms();
    let mut accounts: Vec<(usize, &'static str, dtenge_core::crypto::SecretKey)> = Vec::with_capacity(config.accounts);
    for (b, bank) in BANKS.iter().enumerate() {
        let mine: Vec<usize> = (0..config.accounts).filter(|n| n % BANKS.len() == b).collect();
        for chunk in mine.chunks(MIGRATE_ACCOUNTS_MAX) {
            let mut opening = Vec::with_capacity(chunk.len());
            for &n in chunk {
                let key = key_of(config.seed, n);
                let account = Account {
                    client_id: crate::iin(n)?,
                    node_id: (*bank).to_string(),
                    kind: ClientKind::Individual,
                    name: format!("Bench Client {n}"),
                    phone: None,
                    address: key.address(),
                    opened_at_unix_ms,
                };
                opening.push((account, AccountKey::Client(key.public_key())));
                accounts.push((n, *bank, key));
            }
            assembly.migrate_accounts(bank, opening).map_err(err)?;
        }
        progress(&format!("opened {} accounts at {bank}", mine.len()));
    }
    accounts.sort_by_key(|(n, _, _)| *n);
    let addresses: Vec<Address> = accounts.iter().map(|(_, _, key)| key.address()).collect();

    // Token t goes to account t % accounts, as `dtenge bench` seeds them.
    for (b, bank) in BANKS.iter().enumerate() {
        let handle = assembly.bank(bank).ok_or("a bench bank is missing")?;
        let payees: Vec<(Address, Amount)> = (0..config.tokens)
            .filter(|t| (t % config.accounts) % BANKS.len() == b)
            .map(|t| Ok((addresses[t % config.accounts], crate::amount(TOKEN_TIYN)?)))
            .collect::<Result<_, String>>()?;
        let total = crate::amount(TOKEN_TIYN * payees.len() as u64)?;
        assembly.fund(bank, total, WAIT_MAX).map_err(err)?;
        for chunk in payees.chunks(SEED_OUTPUTS_MAX) {
            pay_out(handle, chunk.to_vec())?;
        }
        progress(&format!("paid the tokens of {bank}"));
    }
    assembly.settle(WAIT_MAX).map_err(err)?;

    accounts
        .into_iter()
        .map(|(n, bank, key)| {
            let handle = assembly.bank(bank).ok_or("a bench bank is missing")?;
            let tokens = handle.service().read(|node| node.spendable_inputs(&crate::iin(n)?).map_err(err))?;
            Ok(BenchAccount { bank, key, tokens })
        })
        .collect()
}

/// One seeding payment from the bank's own account, waited for: the next one spends its change.
fn pay_out(bank: &BankHandle, payees: Vec<(Address, Amount)>) -> Result<(), String> {
    let answer = bank.submit(Request::Pay { client_id: OWN_ACCOUNT.into(), payees }, None);
    match answer.recv_timeout(WAIT_MAX) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("seeding payment at {}: {e}", bank.id())),
        Err(_) => Err(format!("seeding payment at {} not answered", bank.id())),
    }
}

/// Send everything to the banks, closed or open loop, and count. One thread submits and
/// collects the answers from one shared channel.
fn submit_all(
    assembly: &Assembly,
    submissions: Vec<(&'static str, Request)>,
    expected: &[Expect],
    config: &Config,
) -> Result<Outcome, String> {
    if submissions.len() != expected.len() {
        return Err("one expectation per submission".into());
    }
    let banks: BTreeMap<&str, &BankHandle> = BANKS
        .iter()
        .map(|b| Ok((*b, assembly.bank(b).ok_or("a bench bank is missing")?)))
        .collect::<Result<_, String>>()?;
    let (reply, answers) = crossbeam_channel::unbounded::<(u64, dtenge_core::Result<Committed>)>();
    let mut submissions = submissions.into_iter();
    let send = |tag: u64| {
        let (bank, request) = submissions.next().ok_or("fewer submissions than counted")?;
        banks[bank].submit_tagged(request, None, tag, &reply);
        Ok(())
    };
    // A bank's answer carries no time: it is taken when the load generator reads it.
    crate::drive(expected, config, send, &answers, |(tag, result)| (tag, result, Instant::now()))
}

/// The report as text.
pub fn render(report: &RolesReport) -> String {
    let mb = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let mut out = String::new();
    out.push_str(&format!(
        "dtenge bench (roles): {} accounts, {} tokens, {} transfers ({} double spends, {} bad signatures injected)\n",
        report.config.accounts,
        report.config.tokens,
        report.submitted,
        report.injected_double_spends,
        report.injected_invalid_signatures
    ));
    out.push_str(&report.machine.line());
    out.push_str(&format!(
        "seed {:.1} s, prepare {:.1} s, run {:.2} s\n",
        report.seed_seconds, report.prepare_seconds, report.run_seconds
    ));
    out.push_str(&format!(
        "throughput: {:.0} payments/s committed ({} of {}); {} batches, {:.0} transactions per batch\n",
        report.achieved_per_s, report.committed, report.submitted, report.batches, report.txs_per_batch
    ));
    out.push_str(&format!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n",
        report.latency.p50_us as f64 / 1e3,
        report.latency.p99_us as f64 / 1e3,
        report.latency.p999_us as f64 / 1e3,
        report.latency.max_us as f64 / 1e3
    ));
    out.push_str(&format!(
        "cpu: {:.1} µs per payment (process), machine {:.0}% busy, {:.0}% steal; peak memory {:.0} MiB\n",
        report.cpu.process_us_per_payment,
        report.cpu.machine_busy * 100.0,
        report.cpu.machine_steal * 100.0,
        mb(report.peak_memory_bytes)
    ));
    let threads: Vec<String> =
        report.cpu_us_per_payment_by_thread.iter().map(|(name, us)| format!("{name} {us:.1}")).collect();
    out.push_str(&format!("cpu by thread, µs per payment: {}\n", threads.join(", ")));
    if let Some(m) = &report.monitoring {
        out.push_str(&format!(
            "monitoring: polled every {} ms during the run: {} polls, the slowest {:.2} ms\n",
            m.every_ms, m.polls, m.poll_ms_max
        ));
    }
    out.push_str(&format!("refused: {:?}\n", report.rejected));
    if let (Some(b), Some(t), Some(l)) = (&report.baseline, report.throughput_ratio, report.p99_ratio) {
        out.push_str(&format!(
            "postgres baseline: {:.0} payments/s, p50 {:.2} ms, p99 {:.2} ms ({} connections, SELECT … FOR UPDATE, synchronous commit)\n",
            b.achieved_per_s,
            b.latency.p50_us as f64 / 1e3,
            b.latency.p99_us as f64 / 1e3,
            b.connections
        ));
        out.push_str(&format!("ratio dtenge / postgres: throughput {t:.2}x, p99 {l:.2}x\n"));
    }
    if let Some(p) = &report.programmable {
        out.push_str(&programmable::render(p));
    }
    out.push_str(&format!(
        "reconciled across roles (wallets = ABS liability, wallets' tokens = notary's unspent): {}\n",
        report.reconciled
    ));
    if report.ok {
        out.push_str("ok: every check held\n");
    } else {
        for problem in &report.problems {
            out.push_str(&format!("PROBLEM: {problem}\n"));
        }
    }
    out
}
