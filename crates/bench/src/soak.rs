//! `dtenge bench --soak DURATION`: a running platform under a steady load for a long time,
//! through its REST API, reported interval by interval (issue 20, point 5).
//!
//! The question is not how fast a fresh ledger is (`--http` answers that) but whether the
//! platform still answers as fast, on as much CPU per payment and as little memory, after
//! hours of the traffic that fragments wallets: every payment leaves its payee one more token,
//! and salaries leave many at once.
//!
//! 1. **Server and sign-in** as `--http` does (a `dtenge up` child on a temporary data
//!    directory, or the platform at `--api`).
//! 2. **Seed** (untimed): `accounts` custodial accounts over the three banks, each paid an
//!    opening balance of [`OPENING_BALANCE_TIYN`] by a registry, and each bank's own account
//!    enough DT for every salary registry of the run.
//! 3. **Load**, open loop at `rate_per_s` (default 5,000/s) over `connections` connections:
//!    custodial transfers (`POST /v1/nodes/{bank}/transfers`) from account `i mod A` to a
//!    random client of another bank, of an amount drawn from [`retail_amount_tiyn`] (most
//!    small, a few large); beside them, every [`SALARY_EVERY_S`] s, a salary registry from a
//!    bank's own account paying `salary_lines_per_s × SALARY_EVERY_S`
//!    lines of [`salary_tiyn`] to random
//!    accounts at every bank. A warm-up of `warmup_s` comes first and is reported apart.
//! 4. **Each interval** (`interval_s`, default 60 s): transfers answered per second, their
//!    p50 and p99 latency (from each request's due time: a server that falls behind shows it),
//!    salary lines paid, and from the platform's `GET /metrics` at the interval's ends: the
//!    process's CPU per payment (transfers and salary lines), its resident memory, the data
//!    directory's size and the unspent tokens.
//! 5. **Checks**: no request failed, the platform reconciles, and two ratios within the run
//!    (so that the machine's drift between runs does not decide them): the last interval's
//!    CPU per payment is at most `cpu_growth_max` times the first's, and resident memory
//!    stays under [`memory_bound_bytes`] in every interval. The targets, throughput
//!    and p99 of the last interval within 10% of the first's, are reported beside them; on a
//!    short run their intervals are too short for a 10% band to be more than noise, so they
//!    do not fail it.

use crate::http::{
    call, call_raw, checkpoint, ensure_working_day, exit_problem, fund, generator_runtime, json, mix, open_accounts,
    run_phase, start_server, stop_server, wait_healthy, Auth, ChildServer, Conn, Endpoint, HttpConfig, Kind,
    PhaseReport, RunIds, Work,
};
use crate::{Machine, BANKS};
use dtenge_api::access::CREDENTIALS_DIR;
use dtenge_api::types::{RegistryLine, RegistryRequest};
use dtenge_node::OWN_ACCOUNT;
use hyper::Method;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What each custodial account is paid before the load: 3,000,000.00 KZT. A payer's balance
/// walks at random (it pays and is paid [`retail_amount_tiyn`]s); over an hour at the default
/// rate the walk's standard deviation is about 600,000 KZT, so no account runs dry.
pub const OPENING_BALANCE_TIYN: u64 = 3_000_000_00;
/// How often a salary registry is paid.
pub const SALARY_EVERY_S: f64 = 10.0;
/// Most lines of one salary registry (the platform takes 16,000).
pub const SALARY_LINES_MAX: usize = 10_000;
/// Longest soak.
pub const SOAK_S_MAX: f64 = 24.0 * 3_600.0;
/// Most intervals reported (a bound on the table).
pub const INTERVALS_MAX: usize = 10_000;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct SoakConfig {
    /// The platform's REST API; `None` starts a `dtenge up` child.
    pub api: Option<String>,
    /// The `dtenge` binary to start when `api` is `None`.
    pub binary: Option<PathBuf>,
    /// With `api`: the API credentials to sign in with (as `--http`).
    pub credentials: PathBuf,
    /// Length of the measured load, after the warm-up.
    pub duration_s: f64,
    /// Length of one reported interval.
    pub interval_s: f64,
    /// Load before the first interval, reported apart.
    pub warmup_s: f64,
    /// Offered custodial transfers per second.
    pub rate_per_s: u64,
    /// Custodial accounts seeded over the three banks.
    pub accounts: usize,
    /// HTTP connections, each with one request in flight.
    pub connections: usize,
    /// Salary registry lines paid per second, on average (in registries every
    /// [`SALARY_EVERY_S`] s); 0 pays none.
    pub salary_lines_per_s: u64,
    /// The check: the last interval's CPU per payment over the first's, at most.
    pub cpu_growth_max: f64,
    pub seed: u64,
}

impl Default for SoakConfig {
    fn default() -> SoakConfig {
        SoakConfig {
            api: None,
            binary: None,
            credentials: PathBuf::from("./data").join(CREDENTIALS_DIR),
            duration_s: 1_800.0,
            interval_s: 60.0,
            warmup_s: 30.0,
            rate_per_s: 5_000,
            accounts: 100_000,
            connections: 64,
            salary_lines_per_s: 100,
            cpu_growth_max: 1.25,
            seed: 1,
        }
    }
}

/// The platform's figures at one moment (`GET /metrics`).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Figures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub data_bytes: u64,
    pub unspent_tokens: u64,
    /// Transaction ids the notary holds in memory.
    pub transactions_held: u64,
}

/// One interval of the load.
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    /// Seconds from the end of the warm-up to the end of the interval.
    pub end_s: f64,
    pub transfers: PhaseReport,
    /// Salary registry lines paid in the interval.
    pub salary_lines: u64,
    /// The server's CPU per payment (transfer answered or salary line paid), µs.
    pub cpu_us_per_payment: f64,
    /// The server's CPU, cores busy on average.
    pub server_cores: f64,
    /// At the interval's end.
    pub figures: Figures,
    /// What [`memory_bound_bytes`] allows at the interval's end.
    pub memory_bound_bytes: u64,
}

/// A ratio of the last interval to the first, and whether it meets its bound.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub what: String,
    pub first: f64,
    pub last: f64,
    pub ratio: f64,
    pub bound: String,
    pub met: bool,
    /// A check fails the run; a target is reported only.
    pub check: bool,
}

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub machine: Machine,
    pub config: SoakConfig,
    pub api: String,
    pub seed_seconds: f64,
    pub warmup: Option<Interval>,
    pub intervals: Vec<Interval>,
    pub ratios: Vec<Ratio>,
    pub reconciled: bool,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Resident memory the platform may hold with `figures` and `accounts`: the formula
/// `docs/ARCHITECTURE.md` states ("Steady state"). A fixed part holds what is bounded by a
/// constant (each bank's window of recent requests and applied transactions, the gateway's
/// idempotency keys in flight, the access caches, the allocator's free pages); a part per
/// account its record, key, index and newest history lines; a part per unspent token the
/// bank's holding and index entry and the notary's id; a part per transaction id the notary
/// holds (every committed one, until it keeps a window of them).
pub fn memory_bound_bytes(figures: &Figures, accounts: u64) -> u64 {
    MEMORY_FIXED_BYTES
        .saturating_add(figures.unspent_tokens.saturating_mul(MEMORY_PER_TOKEN_BYTES))
        .saturating_add(accounts.saturating_mul(MEMORY_PER_ACCOUNT_BYTES))
        .saturating_add(figures.transactions_held.saturating_mul(MEMORY_PER_TRANSACTION_BYTES))
}

/// The formula's parts (see [`memory_bound_bytes`]).
pub const MEMORY_FIXED_BYTES: u64 = 1 << 30;
pub const MEMORY_PER_TOKEN_BYTES: u64 = 1_000;
pub const MEMORY_PER_ACCOUNT_BYTES: u64 = 16_000;
pub const MEMORY_PER_TRANSACTION_BYTES: u64 = 150;

/// A retail payment's amount, from a random number: half are 100 to 1,000 KZT (a coffee, a
/// fare, groceries), 30% 1,000 to 10,000, 15% 10,000 to 50,000 and 5% 50,000 to 250,000
/// (rent, appliances); log-uniform within each band, in whole tiyn. The mean is about
/// 11,000 KZT.
pub fn retail_amount_tiyn(r: u64) -> u64 {
    let band = r % 100;
    let (low_kzt, high_kzt) = match band {
        0..=49 => (100.0, 1_000.0),
        50..=79 => (1_000.0, 10_000.0),
        80..=94 => (10_000.0, 50_000.0),
        _ => (50_000.0, 250_000.0),
    };
    // The band from the low bits, the amount from the high 53 (`log_uniform_tiyn`).
    log_uniform_tiyn(r, low_kzt, high_kzt)
}

/// A monthly salary: 150,000 to 600,000 KZT, log-uniform.
pub fn salary_tiyn(r: u64) -> u64 {
    log_uniform_tiyn(r, 150_000.0, 600_000.0)
}

/// A log-uniform amount between two amounts of tenge, in tiyn, from the top 53 bits of `r`.
fn log_uniform_tiyn(r: u64, low_kzt: f64, high_kzt: f64) -> u64 {
    let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
    let kzt = low_kzt * (high_kzt / low_kzt).powf(unit);
    (kzt * 100.0).round() as u64
}

/// Run the soak; `progress` hears each interval as it ends.
pub fn run(config: &SoakConfig, mut progress: impl FnMut(&str)) -> Result<SoakReport, String> {
    validate(config)?;
    let runtime = generator_runtime()?;
    let (mut child, base) = start_server(config.api.as_deref(), config.binary.as_deref(), &mut progress)?;
    let outcome = runtime.block_on(soak(config, &base, child.as_ref(), &mut progress));
    let (mut report, server_exit) = stop_server(child.as_mut(), outcome, &mut progress)?;
    report.problems.extend(server_exit.as_ref().and_then(exit_problem));
    report.ok = report.problems.is_empty();
    Ok(report)
}

fn validate(config: &SoakConfig) -> Result<(), String> {
    if !(config.duration_s > 0.0 && config.duration_s <= SOAK_S_MAX) {
        return Err(format!("the soak lasts above 0 and at most {SOAK_S_MAX} s"));
    }
    if !(config.interval_s >= 1.0 && config.interval_s <= config.duration_s) {
        return Err("an interval is at least 1 s and at most the soak".into());
    }
    if (config.duration_s / config.interval_s).ceil() as usize > INTERVALS_MAX {
        return Err(format!("at most {INTERVALS_MAX} intervals: lengthen --interval-s"));
    }
    if !(config.warmup_s >= 0.0 && config.warmup_s <= SOAK_S_MAX) {
        return Err(format!("warm-up must be 0 to {SOAK_S_MAX} s"));
    }
    if config.rate_per_s == 0 {
        return Err("the soak offers a fixed rate: --rate must be positive".into());
    }
    if config.cpu_growth_max < 1.0 {
        return Err("the CPU growth bound is a ratio of at least 1".into());
    }
    if salary_lines(config) > SALARY_LINES_MAX {
        return Err(format!(
            "a salary registry every {SALARY_EVERY_S} s has at most {SALARY_LINES_MAX} lines: lower --salary-lines-per-s"
        ));
    }
    // The rest (accounts, connections) as `--http` checks them.
    Ok(())
}

/// Lines of each salary registry.
fn salary_lines(config: &SoakConfig) -> usize {
    (config.salary_lines_per_s as f64 * SALARY_EVERY_S).round() as usize
}

/// The `--http` configuration of the transfers' phases.
fn http_config(config: &SoakConfig) -> HttpConfig {
    HttpConfig {
        api: config.api.clone(),
        binary: config.binary.clone(),
        credentials: config.credentials.clone(),
        kinds: vec![Kind::Custodial],
        connections: config.connections,
        rate_per_s: Some(config.rate_per_s),
        duration_s: config.interval_s,
        warmup_s: config.warmup_s,
        accounts: config.accounts,
        payments: None,
        seed: config.seed,
    }
}

/// Seed, warm up, run the intervals, check.
async fn soak(
    config: &SoakConfig,
    base: &str,
    child: Option<&ChildServer>,
    progress: &mut impl FnMut(&str),
) -> Result<SoakReport, String> {
    let http = http_config(config);
    crate::http::validate(&http)?;
    let credentials = child.map_or(config.credentials.as_path(), |c| c.credentials.as_path());
    let endpoint = Arc::new(Endpoint::resolve(base, Auth::load(credentials)?).await?);
    let mut api = Conn::open(&endpoint).await?;
    wait_healthy(&endpoint, &mut api).await?;
    endpoint.auth.sign_in(&mut api).await?;
    progress(&format!("the platform answers at {base}; signed in"));
    let run = RunIds::new(config.seed);

    let started = Instant::now();
    ensure_working_day(&mut api, &run, progress).await?;
    let holders = open_accounts(&mut api, &run, Kind::Custodial, config.accounts, progress).await?;
    // Each bank pays a third of the salaries: its own account keeps enough for all of its
    // registries at the largest salary.
    let registries = ((config.warmup_s + config.duration_s) / SALARY_EVERY_S).ceil() as u64 + 1;
    let per_bank = registries.div_ceil(BANKS.len() as u64);
    let salaries_tiyn = per_bank
        .checked_mul(salary_lines(config) as u64)
        .and_then(|lines| lines.checked_mul(salary_tiyn(u64::MAX)))
        .ok_or("the salaries' total overflows")?;
    fund(&mut api, &run, &holders, 1, OPENING_BALANCE_TIYN, salaries_tiyn, progress).await?;
    checkpoint(&mut api, &run).await?;
    let seed_seconds = started.elapsed().as_secs_f64();
    progress(&format!("seeded {} accounts in {seed_seconds:.1} s", config.accounts));

    let work = Arc::new(Work::Custodial {
        holders: holders.iter().map(|h| (h.bank, h.iin.clone())).collect(),
        uris: crate::http::bank_uris("transfers")?,
        seed: config.seed,
        cap: None,
        amount_tiyn: retail_amount_tiyn,
    });
    let iins: Vec<(usize, String)> = holders.iter().map(|h| (h.bank, h.iin.clone())).collect();
    let mut salaries = Salaries { next: 0, origin: None, lines: salary_lines(config), iins, seed: config.seed };
    let mut first = 0u64;
    let mut figures = scrape(&endpoint).await?;
    let mut warmup = None;
    if config.warmup_s > 0.0 {
        let window = Duration::from_secs_f64(config.warmup_s);
        let (interval, next, now) =
            interval(&endpoint, &work, first, window, true, &http, &run, &mut salaries, config, figures).await?;
        progress(&format!("warm-up: {}", interval.line()));
        (first, figures) = (next, now);
        warmup = Some(interval);
    }
    let count = (config.duration_s / config.interval_s).ceil() as usize;
    let mut intervals = Vec::with_capacity(count);
    let soak_started = Instant::now();
    for k in 0..count {
        let left = config.duration_s - k as f64 * config.interval_s;
        let window = Duration::from_secs_f64(left.min(config.interval_s));
        let (mut interval, next, now) =
            interval(&endpoint, &work, first, window, false, &http, &run, &mut salaries, config, figures).await?;
        interval.end_s = soak_started.elapsed().as_secs_f64();
        progress(&format!("{:>6.0} s: {}", interval.end_s, interval.line()));
        (first, figures) = (next, now);
        intervals.push(interval);
    }

    let mut api = Conn::open(&endpoint).await?;
    let reconciliation: Value = call(&mut api, Method::GET, "/v1/operator/reconciliation", None, None).await?;
    let reconciled = reconciliation["ok"].as_bool() == Some(true);
    let mut problems = Vec::new();
    if !reconciled {
        problems.push(format!("the platform does not reconcile: {}", reconciliation["problems"]));
    }
    for (name, i) in warmup
        .iter()
        .map(|w| ("warm-up".to_string(), w))
        .chain(intervals.iter().enumerate().map(|(k, i)| (format!("interval {}", k + 1), i)))
    {
        let errors: u64 = i.transfers.errors.values().sum();
        if errors > 0 {
            problems
                .push(format!("{name}: {errors} of {} transfers failed: {:?}", i.transfers.sent, i.transfers.errors));
        }
        if i.transfers.unsent > 0 {
            problems.push(format!(
                "{name}: {} transfers due were never sent: the platform fell behind the offered rate",
                i.transfers.unsent
            ));
        }
    }
    let ratios = ratios(&intervals, config);
    for r in ratios.iter().filter(|r| r.check && !r.met) {
        problems.push(format!(
            "{}: last {:.1} vs first {:.1} ({:.2}×), bound {}",
            r.what, r.last, r.first, r.ratio, r.bound
        ));
    }
    for (k, i) in intervals.iter().enumerate() {
        if i.figures.resident_bytes > i.memory_bound_bytes {
            problems.push(format!(
                "interval {}: resident memory {} MB above the formula's {} MB",
                k + 1,
                i.figures.resident_bytes >> 20,
                i.memory_bound_bytes >> 20
            ));
        }
    }
    Ok(SoakReport {
        machine: Machine::here(),
        config: config.clone(),
        api: base.to_string(),
        seed_seconds,
        warmup,
        intervals,
        ratios,
        reconciled,
        ok: problems.is_empty(),
        problems,
    })
}

/// The salary registries: which comes next, and whom they may pay.
struct Salaries {
    /// The next registry's number (registry `n` is due `n × SALARY_EVERY_S` after the soak's
    /// start, and paid by bank `n mod 3`).
    next: u64,
    /// When registry 0 was due: the start of the first interval (the warm-up's, if any).
    origin: Option<Instant>,
    lines: usize,
    iins: Vec<(usize, String)>,
    seed: u64,
}

impl Salaries {
    /// Registry `n`'s request: lines to random accounts at every bank.
    fn registry(&self, n: u64) -> RegistryRequest {
        let lines = (0..self.lines as u64)
            .map(|k| {
                let r = mix(self.seed ^ mix(n << 20 | k) ^ 0x5a1a_5a1a);
                let (bank, iin) = &self.iins[(r % self.iins.len() as u64) as usize];
                RegistryLine {
                    phone: None,
                    client_id: Some(iin.clone()),
                    bank: Some(BANKS[*bank].to_string()),
                    // In range: at most 600,000.00 KZT.
                    amount_tiyn: crate::http::amount(salary_tiyn(mix(r))).unwrap_or_default(),
                }
            })
            .collect();
        RegistryRequest { from: OWN_ACCOUNT.into(), reference: Some(format!("salaries {n}")), lines }
    }

    /// Pay the registries due in `window` from `start`, each when due; the lines paid.
    async fn pay(
        &mut self,
        endpoint: &Arc<Endpoint>,
        run: &RunIds,
        start: Instant,
        window: Duration,
    ) -> Result<u64, String> {
        if self.lines == 0 {
            return Ok(0);
        }
        let end = start + window;
        let mut paid = 0u64;
        let mut conn = Conn::open(endpoint).await?;
        // Bounded by the window: one registry per SALARY_EVERY_S.
        loop {
            let origin = *self.origin.get_or_insert(start);
            let due = origin + Duration::from_secs_f64(SALARY_EVERY_S * self.next as f64);
            if due >= end {
                return Ok(paid);
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            let n = self.next;
            self.next += 1;
            let bank = BANKS[(n % BANKS.len() as u64) as usize];
            let path = format!("/v1/nodes/{bank}/registries");
            let key = run.key(&format!("salaries-{n}"));
            let report: Value =
                call(&mut conn, Method::POST, &path, Some(&key), Some(json(&self.registry(n))?)).await?;
            let rejected = report["lines_rejected"].as_u64().unwrap_or(u64::MAX);
            if rejected != 0 {
                return Err(format!("salary registry {n} at {bank}: {rejected} lines rejected: {report}"));
            }
            paid += self.lines as u64;
        }
    }
}

/// One interval: the transfers' phase and the salaries due in it at once, between two reads
/// of the platform's figures; the interval, the next transfer's number and the figures at
/// its end.
#[allow(clippy::too_many_arguments)]
async fn interval(
    endpoint: &Arc<Endpoint>,
    work: &Arc<Work>,
    first: u64,
    window: Duration,
    warmup: bool,
    http: &HttpConfig,
    run: &RunIds,
    salaries: &mut Salaries,
    config: &SoakConfig,
    before: Figures,
) -> Result<(Interval, u64, Figures), String> {
    let start = Instant::now();
    let transfers = run_phase(endpoint, Kind::Custodial, work, first, window, warmup, http, run, None);
    let paid = salaries.pay(endpoint, run, start, window);
    let (transfers, salary_lines) = tokio::join!(transfers, paid);
    let ((transfers, next), salary_lines) = (transfers?, salary_lines?);
    let after = scrape(endpoint).await?;
    let elapsed_s = start.elapsed().as_secs_f64().max(1e-9);
    let payments = transfers.ok + salary_lines;
    let cpu_s = (after.cpu_seconds - before.cpu_seconds).max(0.0);
    let interval = Interval {
        end_s: 0.0,
        salary_lines,
        cpu_us_per_payment: cpu_s * 1e6 / payments.max(1) as f64,
        server_cores: cpu_s / elapsed_s,
        figures: after,
        memory_bound_bytes: memory_bound_bytes(&after, config.accounts as u64),
        transfers,
    };
    Ok((interval, next, after))
}

/// The platform's figures now, from `GET /metrics` (as an NBK operator).
async fn scrape(endpoint: &Arc<Endpoint>) -> Result<Figures, String> {
    let mut conn = Conn::open(endpoint).await?;
    let text = call_raw(&mut conn, Method::GET, "/metrics", None, None).await?;
    let text = String::from_utf8_lossy(&text);
    let value = |name: &str| -> Result<f64, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("GET /metrics has no {name} (a platform older than the soak bench?)"))
    };
    Ok(Figures {
        cpu_seconds: value("process_cpu_seconds_total")?,
        resident_bytes: value("process_resident_memory_bytes")? as u64,
        data_bytes: value("dtenge_data_bytes")? as u64,
        unspent_tokens: value("dtenge_unspent_tokens")? as u64,
        transactions_held: value("dtenge_notary_transactions_held")? as u64,
    })
}

/// The last interval against the first.
fn ratios(intervals: &[Interval], config: &SoakConfig) -> Vec<Ratio> {
    let (Some(first), Some(last)) = (intervals.first(), intervals.last()) else { return Vec::new() };
    let ratio = |what: &str, first: f64, last: f64, bound: String, met: fn(f64) -> bool, check: bool| {
        let ratio = last / first.max(1e-9);
        Ratio { what: what.into(), first, last, ratio, bound, met: met(ratio), check }
    };
    let cpu_growth_max = config.cpu_growth_max;
    let cpu_ratio = last.cpu_us_per_payment / first.cpu_us_per_payment.max(1e-9);
    vec![
        Ratio {
            what: "server CPU per payment, µs".into(),
            first: first.cpu_us_per_payment,
            last: last.cpu_us_per_payment,
            ratio: cpu_ratio,
            bound: format!("≤ {cpu_growth_max:.2}×"),
            met: cpu_ratio <= cpu_growth_max,
            check: true,
        },
        ratio(
            "transfers answered per second",
            first.transfers.ok_per_s,
            last.transfers.ok_per_s,
            "within 10%".into(),
            |r| (0.9..=1.1).contains(&r),
            false,
        ),
        ratio(
            "p99 latency, ms",
            first.transfers.latency.p99_us as f64 / 1e3,
            last.transfers.latency.p99_us as f64 / 1e3,
            "≤ 1.10×".into(),
            |r| r <= 1.1,
            false,
        ),
    ]
}

impl Interval {
    /// One line of the progress.
    fn line(&self) -> String {
        let t = &self.transfers;
        format!(
            "{:.0} transfers/s (p50 {:.1} ms, p99 {:.1} ms), {} salary lines, {:.0} µs CPU per payment, {} MB resident, {} MB on disk, {} unspent tokens",
            t.ok_per_s,
            t.latency.p50_us as f64 / 1e3,
            t.latency.p99_us as f64 / 1e3,
            self.salary_lines,
            self.cpu_us_per_payment,
            self.figures.resident_bytes >> 20,
            self.figures.data_bytes >> 20,
            self.figures.unspent_tokens
        )
    }
}

/// The report as people read it: the per-interval table (Markdown, as `docs/PERFORMANCE.md`
/// keeps it), the ratios, the checks.
pub fn render(report: &SoakReport) -> String {
    let mut out = String::new();
    out.push_str(&report.machine.line());
    let c = &report.config;
    out.push_str(&format!(
        "soak               {} s in {} s intervals after {} s of warm-up; {} custodial transfers/s offered over {} connections; {} accounts; {} salary lines/s; seeded in {:.1} s\n\n",
        c.duration_s, c.interval_s, c.warmup_s, c.rate_per_s, c.connections, c.accounts, c.salary_lines_per_s, report.seed_seconds
    ));
    out.push_str("| end, s | transfers/s | p50, ms | p99, ms | salary lines | CPU µs/payment | cores | resident, MB | formula, MB | disk, MB | unspent tokens | notary tx ids |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for i in &report.intervals {
        let t = &i.transfers;
        out.push_str(&format!(
            "| {:.0} | {:.0} | {:.1} | {:.1} | {} | {:.0} | {:.2} | {} | {} | {} | {} | {} |\n",
            i.end_s,
            t.ok_per_s,
            t.latency.p50_us as f64 / 1e3,
            t.latency.p99_us as f64 / 1e3,
            i.salary_lines,
            i.cpu_us_per_payment,
            i.server_cores,
            i.figures.resident_bytes >> 20,
            i.memory_bound_bytes >> 20,
            i.figures.data_bytes >> 20,
            i.figures.unspent_tokens,
            i.figures.transactions_held
        ));
    }
    out.push('\n');
    for r in &report.ratios {
        out.push_str(&format!(
            "{:<32} first {:>8.1}, last {:>8.1}: {:.2}× ({} {}: {})\n",
            r.what,
            r.first,
            r.last,
            r.ratio,
            if r.check { "check" } else { "target" },
            r.bound,
            if r.met { "met" } else { "NOT met" }
        ));
    }
    out.push_str(&crate::checks_line(
        report.ok,
        "no errors, reconciled, CPU per payment and memory within bounds",
        &report.problems,
    ));
    out
}

/// A line of a plot: its name, its colour and its points.
type Series = (&'static str, &'static str, Vec<(f64, f64)>);

/// Width and height of one panel of [`plot`], in SVG units.
const PLOT_W: f64 = 640.0;
const PLOT_H: f64 = 180.0;

/// The report as an SVG picture, for `docs/PERFORMANCE.md`: three panels over the soak's time,
/// transfers answered per second (with the offered rate), resident memory (with what the
/// formula allows) and disk use, one point per interval.
pub fn plot(report: &SoakReport) -> String {
    let points = |value: &dyn Fn(&Interval) -> f64| -> Vec<(f64, f64)> {
        report.intervals.iter().map(|i| (i.end_s, value(i))).collect()
    };
    let offered = report.config.rate_per_s as f64;
    let panels: [(&str, Vec<Series>); 3] = [
        (
            "transfers answered per second",
            vec![("offered", "#999", points(&|_| offered)), ("answered", "#1f77b4", points(&|i| i.transfers.ok_per_s))],
        ),
        (
            "resident memory, MB",
            vec![
                ("formula", "#999", points(&|i| (i.memory_bound_bytes >> 20) as f64)),
                ("resident", "#d62728", points(&|i| (i.figures.resident_bytes >> 20) as f64)),
            ],
        ),
        (
            "disk, GB",
            vec![("data directory", "#2ca02c", points(&|i| i.figures.data_bytes as f64 / (1u64 << 30) as f64))],
        ),
    ];
    let end_s = report.intervals.last().map_or(1.0, |i| i.end_s).max(1.0);
    let (margin_left, margin_top, gap) = (70.0, 30.0, 60.0);
    let height = margin_top + panels.len() as f64 * (PLOT_H + gap);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        w = margin_left + PLOT_W + 20.0
    );
    for (k, (title, series)) in panels.iter().enumerate() {
        let top = margin_top + k as f64 * (PLOT_H + gap);
        let max = series.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y)).fold(1.0f64, f64::max) * 1.1;
        svg.push_str(&format!(
            "<text x=\"{margin_left}\" y=\"{}\">{title}</text>\n<rect x=\"{margin_left}\" y=\"{top}\" width=\"{PLOT_W}\" height=\"{PLOT_H}\" fill=\"none\" stroke=\"#ccc\"/>\n",
            top - 8.0
        ));
        for tick in 0..=4 {
            let value = max * tick as f64 / 4.0;
            let y = top + PLOT_H - PLOT_H * tick as f64 / 4.0;
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>\n",
                margin_left - 6.0,
                y + 4.0
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{end_s:.0} s</text>\n",
            margin_left + PLOT_W,
            top + PLOT_H + 16.0
        ));
        for (n, (name, colour, points)) in series.iter().enumerate() {
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", margin_left + PLOT_W * x / end_s, top + PLOT_H - PLOT_H * y / max))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
                path.join(" "),
                margin_left + 10.0 + 90.0 * n as f64,
                top + 16.0
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retail_amounts_fall_in_their_bands_with_a_plausible_mean() {
        let n = 100_000u64;
        let amounts: Vec<u64> = (0..n).map(|i| retail_amount_tiyn(mix(i))).collect();
        assert!(amounts.iter().all(|a| (100_00..=250_000_00).contains(a)));
        let mean_kzt = amounts.iter().sum::<u64>() as f64 / n as f64 / 100.0;
        assert!((9_000.0..13_000.0).contains(&mean_kzt), "{mean_kzt}");
        let small = amounts.iter().filter(|a| **a <= 1_000_00).count() as f64 / n as f64;
        assert!((0.47..0.53).contains(&small), "{small}");
    }

    #[test]
    fn salaries_are_in_their_range() {
        assert!((0..10_000u64).map(|i| salary_tiyn(mix(i))).all(|s| (150_000_00..=600_000_00).contains(&s)));
        assert_eq!(salary_tiyn(u64::MAX), 600_000_00);
    }

    #[test]
    fn the_memory_formula_grows_with_tokens_accounts_and_transactions() {
        let figures =
            |unspent_tokens, transactions_held| Figures { unspent_tokens, transactions_held, ..Figures::default() };
        assert_eq!(memory_bound_bytes(&figures(0, 0), 0), MEMORY_FIXED_BYTES);
        assert_eq!(
            memory_bound_bytes(&figures(10, 3), 2),
            MEMORY_FIXED_BYTES
                + 10 * MEMORY_PER_TOKEN_BYTES
                + 2 * MEMORY_PER_ACCOUNT_BYTES
                + 3 * MEMORY_PER_TRANSACTION_BYTES
        );
        assert_eq!(memory_bound_bytes(&figures(u64::MAX, u64::MAX), u64::MAX), u64::MAX);
    }

    fn interval(end_s: f64, ok_per_s: f64, resident_mb: u64) -> Interval {
        let transfers = PhaseReport {
            kind: Kind::Custodial,
            warmup: false,
            connections: 1,
            offered_per_s: Some(100),
            duration_s: 10.0,
            elapsed_s: 10.0,
            sent: 1_000,
            ok: 1_000,
            errors: Default::default(),
            unsent: 0,
            pool_exhausted: false,
            ok_per_s,
            latency: crate::Latency { p50_us: 1_000, p99_us: 2_000, p999_us: 3_000, max_us: 4_000 },
            max_latency_at_s: 0.0,
            cpu: Default::default(),
        };
        let figures = Figures { resident_bytes: resident_mb << 20, ..Figures::default() };
        Interval {
            end_s,
            transfers,
            salary_lines: 0,
            cpu_us_per_payment: 100.0,
            server_cores: 1.0,
            figures,
            memory_bound_bytes: 2_000 << 20,
        }
    }

    #[test]
    fn the_plot_draws_each_series_over_the_intervals() {
        let report = SoakReport {
            machine: Machine::here(),
            config: SoakConfig::default(),
            api: "http://x".into(),
            seed_seconds: 1.0,
            warmup: None,
            intervals: vec![interval(60.0, 95.0, 700), interval(120.0, 99.0, 750)],
            ratios: Vec::new(),
            reconciled: true,
            ok: true,
            problems: Vec::new(),
        };
        let svg = plot(&report);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 5, "offered, answered, formula, resident, disk");
        // The last point of each series is at the right edge.
        assert_eq!(svg.matches(" 710.0,").count(), 5, "{svg}");
        assert!(svg.contains("resident memory, MB") && svg.contains("transfers answered per second"));
    }

    #[test]
    fn bad_configurations_are_refused() {
        let good = SoakConfig::default();
        assert!(validate(&good).is_ok());
        assert!(validate(&SoakConfig { rate_per_s: 0, ..good.clone() }).is_err());
        assert!(validate(&SoakConfig { interval_s: 0.5, ..good.clone() }).is_err());
        assert!(validate(&SoakConfig { duration_s: 0.0, ..good.clone() }).is_err());
        assert!(validate(&SoakConfig { cpu_growth_max: 0.9, ..good.clone() }).is_err());
        assert!(validate(&SoakConfig { salary_lines_per_s: 10_000, ..good }).is_err());
    }
}
