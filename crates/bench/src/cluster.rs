//! `dtenge bench --cluster DIR`: the signed 2-in-2-out load of `dtenge bench --http`, sent
//! through the real transport: every participant of the standard network its own OS process
//! (`dtenge cluster`: the directory, the notary's three replicas, central, the oracle, three
//! banks and the Treasury), talking over mutual TLS, all on this machine (issue 18).
//!
//! 1. **Cluster**: the one at `DIR` if every participant answers its `/health`; else the bench
//!    starts `dtenge cluster --dir DIR --base-port P` as a child (laying the network out on
//!    the first start, on a base port whose 24 ports were free a moment before) and stops it
//!    with SIGTERM at the end, which stops every participant.
//! 2. **Seed** (untimed), through the nodes' own APIs only (HTTPS, mutual TLS with the API
//!    clients' certificates the cluster issued, `DIR/clients`): today made operational at
//!    central (emission runs on operational days only), `accounts` accounts whose clients
//!    keep their own keys, account `n` at bank `n mod 3` of steppe, tulpar, sapa; each bank's
//!    DT by an ABS credit and an emission at central, then paid out to its accounts by
//!    registries from its own account, 100.00 KZT tokens, enough for two per transfer of the
//!    pool; the clients then ask their bank for their inputs and sign their transfers (as in
//!    `--http`: before the clock, a client signs on its own device). Every transfer pays a
//!    client at **another** bank, so each one crosses processes: payer's bank, notary, payee's
//!    bank.
//! 3. **Run** (timed): `connections` keep-alive HTTP/1.1 connections over TLS 1.3, connection
//!    `c` to bank `c mod 3`'s API with that bank's client certificate, one request in flight
//!    on each; each bank's connections take its own payers' transfers
//!    (`POST /v1/nodes/{bank}/transactions`) in turn. Closed loop (saturation) by default;
//!    open loop with `rate_per_s`, the rate shared by the banks with their due times
//!    interleaved, latency from each request's due time (no coordinated omission). The loop
//!    (`http::drive`) and the counting are `--http`'s.
//! 4. **Check**: every answer by status and error code; then, once nothing is outstanding
//!    anywhere (bounded wait), the reconciliation across processes from each one's
//!    `/metrics`: the DT the banks hold = central's DT liability, and the tokens the banks'
//!    accounts own = the notary's unspent tokens.
//!
//! CPU per participant process (from `/proc`, with its busiest threads by name) is reported
//! per phase: on a shared 2-core machine it says which process saturates.

use crate::http::{
    amount, bank_uris, drive, process_ticks, sign_transfers, ticks_per_second, Holder, Kind, Link, Pace, PhaseAuth,
    Prepared, RunIds, Tally, Totals, Work,
};
use crate::raw_http::RawConn;
use crate::{machine_ticks, programmable::cpu_us, Machine, BANKS, TOKEN_TIYN};
use dtenge_api::types::{AmountRequest, OpenAccount, RegistryLine, RegistryRequest};
use dtenge_core::crypto::SecretKey;
use dtenge_core::token::Input;
use dtenge_node::{ClientKind, OWN_ACCOUNT};
use dtenge_process::client::{CallError, NodeClient};
use dtenge_process::cluster::{self as layout, Laid, CA_DIR, CLIENTS_DIR};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Most connections a run may open.
pub const CONNECTIONS_MAX: usize = 4_096;
/// Most accounts (IINs of a run are spread over a range of this size).
pub const ACCOUNTS_MAX: usize = 1_000_000;
/// Most signed transfers prepared before the clock.
pub const SIGNED_POOL_MAX: usize = 2_000_000;
/// Signed transfers prepared for a closed loop without `payments`.
pub const SIGNED_POOL_DEFAULT: usize = 100_000;
/// Longest timed phase.
pub const DURATION_S_MAX: f64 = 3_600.0;
/// How long a started cluster may take until every participant answers `/health` (it starts
/// them one after the other, each given 30 s).
const CLUSTER_START_MAX: Duration = Duration::from_secs(300);
/// How long the cluster may take to stop after SIGTERM before its process group is killed.
const CLUSTER_STOP_MAX: Duration = Duration::from_secs(120);
/// A `/health` or `/metrics` call.
const OPS_TIMEOUT: Duration = Duration::from_secs(5);
/// Bases tried for a new cluster's ports.
const BASE_PORT_TRIES_MAX: u32 = 200;
/// Registry lines per seeding call (the bank's limit is 16,000).
const SEED_LINES_MAX: usize = 15_000;
/// Accounts per bulk opening (the route's limit).
const SEED_ACCOUNTS_MAX: usize = 10_000;
/// Threads asking for the accounts' inputs while seeding.
const SEED_THREADS: usize = 8;
/// How long a seeding call is asked again while the network has not answered it (the same
/// idempotency key: done once), and how long an emission may take to reach its bank.
const SEED_CALL_MAX: Duration = Duration::from_secs(120);
/// How long the processes may take to settle (nothing outstanding) after the load.
const SETTLE_MAX: Duration = Duration::from_secs(120);
/// A request with no answer within this counts as `TIMEOUT` (the gateway itself answers
/// `REQUEST_IN_PROGRESS` after 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most transfers per call: a bank's node takes at most this many in one batch.
const PER_CALL_MAX: usize = dtenge_api::types::TransactionBatch::TRANSACTIONS_MAX;
/// Busiest threads reported per participant.
const THREADS_REPORTED: usize = 3;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterConfig {
    /// The cluster's directory (`dtenge cluster --dir`).
    pub dir: PathBuf,
    /// The `dtenge` binary to start `cluster` with when none answers at `dir`.
    pub binary: Option<PathBuf>,
    /// TLS connections, each with one request in flight, spread over the three banks.
    pub connections: usize,
    /// Offered payments per second (open loop); `None` = closed loop.
    pub rate_per_s: Option<u64>,
    pub duration_s: f64,
    /// The same load before the timed phase, not measured (its errors are still counted).
    pub warmup_s: f64,
    /// Accounts seeded over the three banks; at least one per connection.
    pub accounts: usize,
    /// The signed pool, warm-up included (default: `rate × (warm-up + duration)` plus one per
    /// connection in an open loop, else [`SIGNED_POOL_DEFAULT`]).
    pub payments: Option<usize>,
    /// Transfers per call: 1 posts each to `POST /v1/nodes/{bank}/transactions`; more post
    /// them together to `.../transactions/batch` (answered per transaction), as a bank's
    /// processing centre forwards its clients' payments.
    pub per_call: usize,
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            dir: PathBuf::from("./cluster"),
            binary: None,
            connections: 64,
            rate_per_s: None,
            duration_s: 10.0,
            warmup_s: 1.0,
            accounts: 10_000,
            payments: None,
            per_call: 1,
            seed: 1,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One participant's CPU over a phase.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessCpu {
    /// CPU seconds per second of the phase (1.0: one core busy all the time).
    pub cores: f64,
    /// Its busiest threads by name (a pool's threads add up under one name), in cores.
    pub threads: Vec<(String, f64)>,
}

/// One timed phase (or its warm-up).
#[derive(Clone, Debug, Serialize)]
pub struct ClusterPhase {
    pub warmup: bool,
    pub connections: usize,
    /// `None`: closed loop.
    pub offered_per_s: Option<u64>,
    pub duration_s: f64,
    /// From the start to the last answer.
    pub elapsed_s: f64,
    pub sent: u64,
    pub ok: u64,
    /// By `"<status> <code>"`, or `TRANSPORT` / `TIMEOUT`.
    pub errors: BTreeMap<String, u64>,
    /// The first message of each error.
    pub error_examples: BTreeMap<String, String>,
    /// Open loop: due in the window but never sent (the cluster fell behind).
    pub unsent: u64,
    pub pool_exhausted: bool,
    pub ok_per_s: f64,
    /// From each send (closed loop) or each due time (open loop).
    pub latency: Percentiles,
    pub max_latency_at_s: f64,
    /// The notary's commits in the phase (`dtenge_notary_commit_index`).
    pub notary_commits: u64,
    /// Batches the three banks sent to the notary in the phase.
    pub bank_batches: u64,
    /// The bench's CPU (the generator, this process), in cores.
    pub bench_cores: f64,
    /// Each participant's, by name.
    pub participants: BTreeMap<String, ProcessCpu>,
    pub machine_busy: f64,
    pub machine_steal: f64,
}

/// The cross-process figures at the end, once nothing was outstanding
/// (`dtenge_process::reconcile`), with the verdict and how long it took to settle.
#[derive(Clone, Debug, Serialize)]
pub struct Reconciliation {
    #[serde(flatten)]
    pub across: dtenge_process::reconcile::Reconciliation,
    pub ok: bool,
    /// Seconds from the end of the load until it settled.
    pub settle_seconds: f64,
}

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    pub machine: Machine,
    pub config: ClusterConfig,
    /// The `dtenge cluster` child's pid when the bench started it.
    pub cluster_pid: Option<u32>,
    pub cluster_exit: Option<String>,
    /// Each participant's pid (found by its configuration file in `/proc`).
    pub participants: BTreeMap<String, u32>,
    pub seed_seconds: f64,
    pub tokens_seeded: usize,
    pub signed_prepared: usize,
    pub prepare_seconds: f64,
    pub phases: Vec<ClusterPhase>,
    pub reconciliation: Reconciliation,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Run the cluster benchmark; `progress` hears what is happening.
pub fn run(config: &ClusterConfig, mut progress: impl FnMut(&str)) -> Result<ClusterReport, String> {
    validate(config)?;
    let mut child = None;
    let laid = match answering(&config.dir) {
        Ok(laid) => {
            progress(&format!("a cluster answers at {}", config.dir.display()));
            laid
        }
        Err(why) => {
            let binary = config.binary.clone().ok_or("no dtenge binary to start `cluster` with")?;
            progress(&format!("no cluster answers at {} ({why}): starting `dtenge cluster`", config.dir.display()));
            let started = ClusterChild::start(&binary, &config.dir)?;
            let laid = started.wait_ready(&config.dir, &mut progress);
            child = Some(started);
            laid?
        }
    };
    let outcome = measure(config, &laid, &mut progress);
    let cluster_exit = match child.as_mut() {
        Some(child) => {
            progress("stopping `dtenge cluster` with SIGTERM");
            Some(child.stop())
        }
        None => None,
    };
    let mut report = match outcome {
        Ok(report) => report,
        Err(e) => {
            let log = child.as_ref().map(ClusterChild::log_tail).unwrap_or_default();
            return Err(if log.is_empty() { e } else { format!("{e}\n--- the cluster's log ends:\n{log}") });
        }
    };
    report.cluster_pid = child.as_ref().map(|c| c.child.id());
    if let Some(exit) = cluster_exit {
        match &exit {
            Ok(status) if status.success() => {}
            Ok(status) => report.problems.push(format!("`dtenge cluster` did not stop cleanly: {status}")),
            Err(e) => report.problems.push(e.clone()),
        }
        report.cluster_exit = Some(match exit {
            Ok(status) => status.to_string(),
            Err(e) => e,
        });
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

fn validate(config: &ClusterConfig) -> Result<(), String> {
    if config.connections < BANKS.len() || config.connections > CONNECTIONS_MAX {
        return Err(format!("connections must be {} (one per bank) to {CONNECTIONS_MAX}", BANKS.len()));
    }
    if config.accounts < config.connections.max(BANKS.len() * 2) || config.accounts > ACCOUNTS_MAX {
        return Err(format!("accounts must be at least the connections and 6, at most {ACCOUNTS_MAX}"));
    }
    if !(config.duration_s > 0.0 && config.duration_s <= DURATION_S_MAX) {
        return Err(format!("duration must be above 0 and at most {DURATION_S_MAX} s"));
    }
    if !(config.warmup_s >= 0.0 && config.warmup_s <= DURATION_S_MAX) {
        return Err(format!("warm-up must be 0 to {DURATION_S_MAX} s"));
    }
    if config.per_call == 0 || config.per_call > PER_CALL_MAX {
        return Err(format!("transfers per call must be 1 to {PER_CALL_MAX}"));
    }
    if config.rate_per_s == Some(0) || config.payments == Some(0) {
        return Err("rate and payments must be positive".into());
    }
    if signed_pool(config) > SIGNED_POOL_MAX {
        return Err(format!("at most {SIGNED_POOL_MAX} signed transfers can be prepared; lower --payments or --rate"));
    }
    Ok(())
}

/// Signed transfers to prepare (see [`ClusterConfig::payments`]). An open loop's pool has, on
/// top of what is due, one per connection (each takes a number it does not send when the
/// warm-up ends) and a few per bank (each bank's queue takes its share of the due requests
/// rounded up); and since the pool goes to the banks by payer, the bank with the fewest
/// accounts (⌊accounts / 3⌋) gets the smallest share: the pool is scaled so that even that
/// share covers a third.
fn signed_pool(config: &ClusterConfig) -> usize {
    match (config.payments, config.rate_per_s) {
        (Some(p), _) => p,
        (None, Some(rate)) => {
            let banks = BANKS.len();
            let needed = (rate as f64 * (config.warmup_s + config.duration_s)).ceil() as usize
                + (config.connections + 4 * banks) * config.per_call;
            let smallest = (config.accounts / banks).max(1);
            (needed * config.accounts).div_ceil(banks * smallest) + banks
        }
        (None, None) => SIGNED_POOL_DEFAULT,
    }
}

/// The cluster laid out at `dir`, if every participant answers its `/health`; else why not.
fn answering(dir: &Path) -> Result<Vec<Laid>, String> {
    if !dir.join(CA_DIR).exists() {
        return Err("no cluster laid out there".into());
    }
    let laid = layout::read(dir, &layout::members(dir)).map_err(|e| e.to_string())?;
    let agent = ureq::AgentBuilder::new().timeout(OPS_TIMEOUT).build();
    for member in &laid {
        let url = format!("http://{}/health", member.ports.ops);
        agent.get(&url).call().map_err(|e| format!("{} does not answer at {url}: {e}", member.member.name))?;
    }
    Ok(laid)
}

/// A `dtenge cluster` the bench started, in a process group of its own (so that nothing of
/// it outlives the bench, even if it does not stop when asked).
struct ClusterChild {
    child: Child,
    log: PathBuf,
    reaped: bool,
}

impl ClusterChild {
    fn start(binary: &Path, dir: &Path) -> Result<ClusterChild, String> {
        use std::os::unix::process::CommandExt as _;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join("cluster.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        // The base port matters on the first start only (a laid-out cluster keeps its ports).
        let base_port = if dir.join(CA_DIR).exists() { 20_000 } else { free_base_port()? };
        let child = std::process::Command::new(binary)
            .arg("cluster")
            .arg("--dir")
            .arg(dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {} cluster: {e}", binary.display()))?;
        Ok(ClusterChild { child, log, reaped: false })
    }

    /// Until every participant answers `/health`, at most [`CLUSTER_START_MAX`].
    fn wait_ready(&self, dir: &Path, progress: &mut impl FnMut(&str)) -> Result<Vec<Laid>, String> {
        let started = Instant::now();
        let mut child = self.pid_alive();
        loop {
            match answering(dir) {
                Ok(laid) => {
                    progress(&format!("the cluster is up after {:.1} s", started.elapsed().as_secs_f64()));
                    return Ok(laid);
                }
                Err(why) if started.elapsed() > CLUSTER_START_MAX => {
                    return Err(format!("the cluster did not come up within {} s: {why}", CLUSTER_START_MAX.as_secs()))
                }
                Err(_) => {}
            }
            if !child() {
                return Err("`dtenge cluster` exited before its participants answered".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the child still runs (without reaping it: `/proc` shows a zombie as such).
    fn pid_alive(&self) -> impl FnMut() -> bool {
        let pid = self.child.id();
        move || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(String::from)))
                .is_some_and(|state| state != "Z")
        }
    }

    /// SIGTERM (the cluster stops its participants, newest first), then wait; past
    /// [`CLUSTER_STOP_MAX`], SIGKILL to the whole process group.
    fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
        if self.reaped {
            return Err("`dtenge cluster` was already gone".into());
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|_| "a pid out of range")?;
        // SAFETY: `kill` only sends a signal; `pid` is our child, not yet reaped (only this
        // function and `Drop` reap it, and both mark it), so it cannot be another process.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!("kill(SIGTERM): {}", std::io::Error::last_os_error()));
        }
        let started = Instant::now();
        while started.elapsed() < CLUSTER_STOP_MAX {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("waiting for `dtenge cluster`: {e}")),
            }
        }
        self.kill_group();
        Err(format!("`dtenge cluster` did not stop within {} s of SIGTERM; killed", CLUSTER_STOP_MAX.as_secs()))
    }

    fn kill_group(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: a signal to the process group the child leads (`process_group(0)`): the
            // cluster and the participants it started, nothing else.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        self.reaped = true;
    }

    fn log_tail(&self) -> String {
        let printed = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = printed.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ClusterChild {
    fn drop(&mut self) {
        // An error path that did not stop it: no cluster left behind.
        if !self.reaped {
            self.kill_group();
        }
    }
}

/// A base port `P` whose ports `dtenge cluster` takes (`P + i`, `P + 100 + i`, `P + 200 + i`
/// for each participant) are free now. Another process may take one before the cluster
/// binds it; the cluster then fails to start and says which.
fn free_base_port() -> Result<u16, String> {
    let participants = layout::standard().len() as u16;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    for attempt in 0..BASE_PORT_TRIES_MAX {
        // Spread over 20,000..31,990 (+300): below the kernel's ephemeral range (32768.. on
        // Linux by default), from which the participants' own outgoing connections take
        // their ports, so none takes one of the cluster's between this look and its bind.
        let base = 20_000 + ((nanos / 1_000 + attempt * 7_919) % 12_000) as u16 / 10 * 10;
        let all_free = (0..participants).all(|i| {
            [base + i, base + 100 + i, base + 200 + i]
                .iter()
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        });
        if all_free {
            return Ok(base);
        }
    }
    Err(format!("no free base port found in {BASE_PORT_TRIES_MAX} tries"))
}

/// A participant's process id: the process running `run ... --config <its config file>`.
fn participant_pid(config: &Path) -> Option<u32> {
    let wanted = std::fs::canonicalize(config).ok()?;
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if !args.iter().any(|a| *a == b"run") {
            continue;
        }
        let Some(at) = args.iter().position(|a| *a == b"--config") else { continue };
        let Some(path) = args.get(at + 1).and_then(|p| std::str::from_utf8(p).ok()) else { continue };
        // Relative to the process's working directory.
        let path = Path::new(path);
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            match std::fs::read_link(format!("/proc/{pid}/cwd")) {
                Ok(cwd) => cwd.join(path),
                Err(_) => continue,
            }
        };
        if std::fs::canonicalize(full).is_ok_and(|p| p == wanted) {
            return Some(pid);
        }
    }
    None
}

/// CPU ticks of a process and of its threads by name.
fn thread_ticks(pid: u32) -> (u64, BTreeMap<String, u64>) {
    let total = process_ticks(pid).unwrap_or(0);
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (total, by_name) };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map_or("?", |(_, n)| n).to_string();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        *by_name.entry(name).or_insert(0) += ticks;
    }
    (total, by_name)
}

/// A participant's `/metrics`, by name (its figures carry no labels).
/// The cluster as the bench sees it: the participants and their API clients.
struct Cluster {
    laid: Vec<Laid>,
    /// Each of [`BANKS`]' API, as its own systems.
    banks: Vec<Arc<NodeClient>>,
    /// Central's API, as an NBK operator.
    operator: NodeClient,
    ops: ureq::Agent,
    pids: BTreeMap<String, u32>,
}

impl Cluster {
    fn open(dir: &Path, laid: Vec<Laid>) -> Result<Cluster, String> {
        let root = dir.join(CA_DIR).join(dtenge_pki::CA_CERT_FILE);
        let client = |name: &str, stem: &str| -> Result<NodeClient, String> {
            let api = api_of(&laid, name)?;
            NodeClient::from_files(
                &format!("https://{}:{}", layout::SERVER_NAME, api.port()),
                &dir.join(CLIENTS_DIR).join(stem),
                &root,
            )
            .map_err(|e| format!("{name}'s API: {e}"))
        };
        let banks = BANKS
            .iter()
            .map(|bank| client(bank, &format!("api-bank-{bank}")).map(Arc::new))
            .collect::<Result<Vec<_>, String>>()?;
        let operator = client("central", "api-operator-nbk")?;
        let pids =
            laid.iter().filter_map(|l| participant_pid(&l.config).map(|pid| (l.member.name.clone(), pid))).collect();
        let ops = ureq::AgentBuilder::new().timeout(OPS_TIMEOUT).build();
        Ok(Cluster { laid, banks, operator, ops, pids })
    }

    fn metrics_of(&self, name: &str) -> Result<BTreeMap<String, u64>, String> {
        let member = self.laid.iter().find(|l| l.member.name == name).ok_or_else(|| format!("no {name}"))?;
        dtenge_process::reconcile::metrics(&self.ops, member.ports.ops)
    }

    /// One figure of a participant; 0 if it does not report it.
    fn figure(&self, name: &str, figure: &str) -> Result<u64, String> {
        Ok(self.metrics_of(name)?.get(figure).copied().unwrap_or(0))
    }

    /// The notary's last certificate number: the highest any of its replicas applied.
    fn notary_commits(&self) -> Result<u64, String> {
        let replicas = self.laid.iter().filter(|l| matches!(l.member.role, dtenge_wire::RoleId::NotaryReplica(_)));
        let mut highest = 0;
        for replica in replicas {
            highest = highest.max(self.figure(&replica.member.name, "dtenge_notary_commit_index")?);
        }
        Ok(highest)
    }

    /// Every participant's CPU ticks, by name.
    fn cpu(&self) -> BTreeMap<String, (u64, BTreeMap<String, u64>)> {
        self.pids.iter().map(|(name, pid)| (name.clone(), thread_ticks(*pid))).collect()
    }
}

fn api_of(laid: &[Laid], name: &str) -> Result<SocketAddr, String> {
    laid.iter()
        .find(|l| l.member.name == name)
        .and_then(|l| l.ports.api)
        .ok_or_else(|| format!("{name} has no API address in its configuration"))
}

/// A seeding call, asked again with its key while the network has not answered it (no
/// answer at all, `REQUEST_IN_PROGRESS`, a 5xx), at most [`SEED_CALL_MAX`].
fn post_answered<T: Serialize>(client: &NodeClient, path: &str, key: &str, body: &T) -> Result<Value, String> {
    let started = Instant::now();
    loop {
        match client.post::<_, Value>(path, key, body) {
            Ok(answer) => return Ok(answer),
            Err(e) if retryable(&e) && started.elapsed() < SEED_CALL_MAX => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("POST {path}: {e}")),
        }
    }
}

fn retryable(e: &CallError) -> bool {
    e.status == 0 || e.status >= 500 || e.body.contains("REQUEST_IN_PROGRESS")
}

/// Seed, prepare, run, reconcile.
fn measure(config: &ClusterConfig, laid: &[Laid], progress: &mut impl FnMut(&str)) -> Result<ClusterReport, String> {
    let cluster = Cluster::open(&config.dir, laid.to_vec())?;
    if cluster.pids.len() < laid.len() {
        progress(&format!(
            "found {} of {} participants' processes in /proc: CPU is reported for those only",
            cluster.pids.len(),
            laid.len()
        ));
    }
    let run = RunIds::new(config.seed);
    let started = Instant::now();
    make_today_operational(&cluster, &run)?;
    let holders = open_accounts(&cluster, &run, config.accounts, progress)?;
    let pool_size = signed_pool(config);
    // Two tokens per transfer, the pool spread evenly over the accounts.
    let per_account = 2 * pool_size.div_ceil(config.accounts);
    let tokens_seeded = fund(&cluster, &run, &holders, per_account, progress)?;
    let seed_seconds = started.elapsed().as_secs_f64();
    progress(&format!("seeded {} accounts and {tokens_seeded} tokens in {seed_seconds:.1} s", holders.len()));

    let started = Instant::now();
    let inputs = fetch_inputs(&cluster, &holders, per_account)?;
    let pool = sign_transfers(&holders, inputs, pool_size, &run)?;
    let signed_prepared = pool.len();
    let prepare_seconds = started.elapsed().as_secs_f64();
    progress(&format!("fetched inputs, signed and encoded {signed_prepared} transfers in {prepare_seconds:.1} s"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the generator's runtime: {e}"))?;
    let links = BANKS
        .iter()
        .map(|bank| BankLink::new(&config.dir, bank, api_of(laid, bank)?).map(Arc::new))
        .collect::<Result<Vec<_>, String>>()?;
    // Each bank's connections take its own payers' transfers, in the pool's order.
    let mut per_bank: Vec<Vec<Prepared>> = (0..BANKS.len()).map(|_| Vec::new()).collect();
    for prepared in pool {
        per_bank.get_mut(prepared.bank).ok_or("a transfer of no bank")?.push(prepared);
    }
    let uris = bank_uris(if config.per_call > 1 { "transactions/batch" } else { "transactions" })?;
    let work: Vec<Arc<Work>> = per_bank
        .into_iter()
        .zip(&uris)
        .map(|(pool, uri)| {
            let pool =
                if config.per_call > 1 {
                    // Whole batches only: each request then carries exactly `per_call`.
                    pool.chunks_exact(config.per_call)
                        .map(|batch| Prepared::batch(uri.clone(), batch))
                        .collect::<Result<Vec<_>, String>>()?
                } else {
                    pool
                };
            Ok(Arc::new(Work::Signed { pool, uris: uris.clone() }))
        })
        .collect::<Result<_, String>>()?;
    let mut first = vec![0u64; BANKS.len()];
    let mut phases = Vec::new();
    progress(&format!(
        "{} for {} s over {} connections",
        match config.rate_per_s {
            Some(rate) => format!("open loop at {rate}/s"),
            None => "closed loop".to_string(),
        },
        config.duration_s,
        config.connections
    ));
    let load_started = Instant::now();
    if config.warmup_s > 0.0 {
        let window = Duration::from_secs_f64(config.warmup_s);
        let (phase, next) = runtime.block_on(run_phase(&cluster, &links, &work, &first, window, true, config, &run))?;
        first = next;
        phases.push(phase);
    }
    let window = Duration::from_secs_f64(config.duration_s);
    let (phase, _) = runtime.block_on(run_phase(&cluster, &links, &work, &first, window, false, config, &run))?;
    progress(&format!("{:.0} ok/s", phase.ok_per_s));
    phases.push(phase);
    drop(runtime);

    progress("waiting for the processes to settle, then reconciling from their /metrics");
    let reconciliation = reconcile(&cluster, load_started)?;
    let mut problems = Vec::new();
    if !reconciliation.across.settled {
        problems.push(format!("the processes did not settle within {} s", SETTLE_MAX.as_secs()));
    } else if !reconciliation.ok {
        problems.push(format!(
            "no reconciliation across the processes: banks' DT {} vs central's liability {}, banks' tokens {} vs the notary's unspent {}",
            reconciliation.across.banks_dt_tiyn,
            reconciliation.across.central_liability_tiyn,
            reconciliation.across.banks_tokens,
            reconciliation.across.notary_unspent_tokens
        ));
    }
    for phase in &phases {
        let name = if phase.warmup { "warm-up" } else { "phase" };
        let errors: u64 = phase.errors.values().sum();
        if errors > 0 {
            problems.push(format!("{name}: {errors} of {} requests failed: {:?}", phase.sent, phase.errors));
        }
        if phase.ok + errors != phase.sent {
            problems.push(format!("{name}: {} sent but {} ok + {errors} failed", phase.sent, phase.ok));
        }
        if phase.unsent > 0 {
            problems.push(format!("{name}: {} requests due were never sent: the cluster fell behind", phase.unsent));
        }
    }
    Ok(ClusterReport {
        machine: Machine::here(),
        config: config.clone(),
        cluster_pid: None,
        cluster_exit: None,
        participants: cluster.pids.clone(),
        seed_seconds,
        tokens_seeded,
        signed_prepared,
        prepare_seconds,
        phases,
        reconciliation,
        ok: problems.is_empty(),
        problems,
    })
}

/// Emission runs on operational days only, and today may be a weekend: central makes today
/// one (an override of the calendar, harmless on a working day).
fn make_today_operational(cluster: &Cluster, run: &RunIds) -> Result<(), String> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    let today = dtenge_core::calendar::Date::astana_of_unix_ms(u64::try_from(now_ms.as_millis()).unwrap_or(0));
    let path = format!("/v1/operator/calendar/days/{today}");
    cluster
        .operator
        .put::<_, Value>(&path, &run.key("working-day"), &serde_json::json!({"working": true}))
        .map_err(|e| format!("PUT {path}: {e}"))?;
    Ok(())
}

/// `count` accounts whose clients keep their own keys, account `n` at bank `n mod 3`.
fn open_accounts(
    cluster: &Cluster,
    run: &RunIds,
    count: usize,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<Holder>, String> {
    let mut holders = Vec::with_capacity(count);
    for n in 0..count {
        holders.push(Holder { bank: n % BANKS.len(), iin: run.iin(Kind::Signed, n)?, key: Some(run.secret(n)) });
    }
    for (b, bank) in BANKS.iter().enumerate() {
        let client = cluster.banks.get(b).ok_or("a bank without a client")?;
        let mine: Vec<(usize, &Holder)> = holders.iter().enumerate().filter(|(_, h)| h.bank == b).collect();
        for (c, chunk) in mine.chunks(SEED_ACCOUNTS_MAX).enumerate() {
            let requests: Vec<OpenAccount> = chunk
                .iter()
                .map(|(n, h)| OpenAccount {
                    kind: ClientKind::Individual,
                    client_id: h.iin.clone(),
                    name: format!("Bench signed {n}"),
                    phone: None,
                    public_key: h.key.as_ref().map(SecretKey::public_key),
                })
                .collect();
            let path = format!("/v1/nodes/{bank}/accounts/bulk");
            post_answered(client, &path, &run.key(&format!("open-{bank}-{c}")), &requests).map_err(|e| {
                if e.contains("DUPLICATE_ACCOUNT") {
                    format!("{e}\n(an earlier run on this cluster used the same client ids: run again)")
                } else {
                    e
                }
            })?;
        }
    }
    progress(&format!("opened {count} accounts over {}", BANKS.join(", ")));
    Ok(holders)
}

/// A bank's own DT (`GET .../accounts/own`).
fn own_dt(client: &NodeClient, bank: &str) -> Result<u64, String> {
    let path = format!("/v1/nodes/{bank}/accounts/{OWN_ACCOUNT}");
    let view: Value = client.get(&path).map_err(|e| format!("GET {path}: {e}"))?;
    view["balance"]["dt_tiyn"].as_u64().ok_or_else(|| format!("GET {path}: no balance in {view}"))
}

/// Pay every account `per_account` tokens of 100.00 KZT: each bank's DT by an ABS credit and
/// an emission at central, then registries from the bank's own account. The tokens paid.
fn fund(
    cluster: &Cluster,
    run: &RunIds,
    holders: &[Holder],
    per_account: usize,
    progress: &mut impl FnMut(&str),
) -> Result<usize, String> {
    let mut paid = 0;
    for (b, bank) in BANKS.iter().enumerate() {
        let client = cluster.banks.get(b).ok_or("a bank without a client")?;
        let mut lines = Vec::new();
        for h in holders.iter().filter(|h| h.bank == b) {
            for _ in 0..per_account {
                lines.push(RegistryLine {
                    phone: None,
                    client_id: Some(h.iin.clone()),
                    bank: Some((*bank).to_string()),
                    amount_tiyn: amount(TOKEN_TIYN)?,
                });
            }
        }
        if lines.is_empty() {
            continue;
        }
        let total_tiyn = TOKEN_TIYN * lines.len() as u64;
        let total = AmountRequest { amount_tiyn: amount(total_tiyn)? };
        // A cluster used before holds DT of earlier runs: wait for this emission's on top.
        let before = own_dt(client, bank)?;
        post_answered(
            &cluster.operator,
            &format!("/v1/abs/correspondent/{bank}/credits"),
            &run.key(&format!("credit-{bank}")),
            &total,
        )?;
        post_answered(
            &cluster.operator,
            &format!("/v1/nodes/{bank}/emissions"),
            &run.key(&format!("emit-{bank}")),
            &total,
        )?;
        // The bank applies the emission from central's delivery.
        let started = Instant::now();
        while own_dt(client, bank)? < before + total_tiyn {
            if started.elapsed() > SEED_CALL_MAX {
                return Err(format!("{bank} did not apply its emission within {} s", SEED_CALL_MAX.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let registry = format!("/v1/nodes/{bank}/registries");
        for (c, chunk) in lines.chunks(SEED_LINES_MAX).enumerate() {
            let request = RegistryRequest { from: OWN_ACCOUNT.into(), reference: None, lines: chunk.to_vec() };
            let report = post_answered(client, &registry, &run.key(&format!("registry-{bank}-{c}")), &request)?;
            if report["lines_rejected"].as_u64() != Some(0) {
                return Err(format!("seeding registry at {bank}: {} lines rejected", report["lines_rejected"]));
            }
        }
        paid += lines.len();
        progress(&format!("paid {} tokens to the accounts at {bank}", lines.len()));
    }
    Ok(paid)
}

/// Every account's spendable inputs (`GET .../accounts/{client}/tokens`), over a few threads;
/// each must hold the `per_account` tokens it was paid.
fn fetch_inputs(cluster: &Cluster, holders: &[Holder], per_account: usize) -> Result<Vec<Vec<Input>>, String> {
    let threads = SEED_THREADS.min(holders.len()).max(1);
    let fetched: Vec<Vec<(usize, Vec<Input>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for i in (t..holders.len()).step_by(threads) {
                        let h = &holders[i];
                        let bank = BANKS.get(h.bank).ok_or("a bank out of range")?;
                        let client = cluster.banks.get(h.bank).ok_or("a bank without a client")?;
                        // One page of the largest size: the bench pays each account far fewer.
                        let limit = dtenge_api::platform::LIST_PAGE_MAX;
                        let path = format!("/v1/nodes/{bank}/accounts/{}/tokens?limit={limit}", h.iin);
                        let page: dtenge_api::types::TokenPage =
                            client.get(&path).map_err(|e| format!("GET {path}: {e}"))?;
                        let inputs: Vec<Input> = page.tokens;
                        if inputs.len() < per_account {
                            return Err(format!("{path}: {} inputs, {per_account} paid", inputs.len()));
                        }
                        mine.push((i, inputs));
                    }
                    Ok::<_, String>(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "a fetching thread panicked".to_string()).and_then(|r| r))
            .collect::<Result<Vec<_>, String>>()
    })?;
    let mut all = vec![Vec::new(); holders.len()];
    for (i, inputs) in fetched.into_iter().flatten() {
        all[i] = inputs;
    }
    Ok(all)
}

/// A bank's API over TLS 1.3 with its systems' client certificate.
struct BankLink {
    addr: SocketAddr,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl BankLink {
    fn new(dir: &Path, bank: &str, addr: SocketAddr) -> Result<BankLink, String> {
        let read = |path: PathBuf| std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()));
        let clients = dir.join(CLIENTS_DIR);
        let key = dtenge_pki::key_from_pem(&read(clients.join(format!("api-bank-{bank}.key.pem")))?)
            .map_err(|e| e.to_string())?;
        let cert = dtenge_pki::pem_contents(&read(clients.join(format!("api-bank-{bank}.crt.pem")))?, "CERTIFICATE")?;
        let root = dtenge_pki::pem_contents(&read(dir.join(CA_DIR).join(dtenge_pki::CA_CERT_FILE))?, "CERTIFICATE")?;
        let roots = dtenge_pki::roots(&root).map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(dtenge_pki::key_to_pkcs8(&key)));
        let mut tls = rustls::ClientConfig::builder_with_provider(dtenge_pki::tls_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![CertificateDer::from(cert)], key)
            .map_err(|e| e.to_string())?;
        // The gateway speaks both; the bench's client is HTTP/1.1.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(layout::SERVER_NAME).map_err(|e| e.to_string())?;
        Ok(BankLink { addr, connector: TlsConnector::from(Arc::new(tls)), server_name })
    }
}

impl Link for BankLink {
    type Stream = TlsStream<TcpStream>;

    async fn open(&self) -> Result<RawConn<TlsStream<TcpStream>>, String> {
        let tcp = TcpStream::connect(self.addr).await.map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        // Requests are small and answered one at a time: no Nagle delay on them.
        tcp.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let tls = tokio::time::timeout(REQUEST_TIMEOUT, self.connector.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| format!("TLS handshake with {}: no answer", self.addr))?
            .map_err(|e| format!("TLS handshake with {}: {e}", self.addr))?;
        Ok(RawConn::over(tls, layout::SERVER_NAME))
    }
}

/// One timed phase (or warm-up) of `window`: connection `c` to bank `c mod 3`, each bank's
/// connections taking its requests from number `first[bank]` on; the report and each bank's
/// next number.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    cluster: &Cluster,
    links: &[Arc<BankLink>],
    work: &[Arc<Work>],
    first: &[u64],
    window: Duration,
    warmup: bool,
    config: &ClusterConfig,
    run: &RunIds,
) -> Result<(ClusterPhase, Vec<u64>), String> {
    // Connect before the clock: the phase measures requests, not handshakes.
    let mut conns = Vec::with_capacity(config.connections);
    for c in 0..config.connections {
        let b = c % BANKS.len();
        let link = links.get(b).ok_or("a bank without a link")?;
        conns.push((b, link.open().await?));
    }
    // A node's own API knows its callers by their certificates: no tokens.
    let (_no_tokens, auth) = watch::channel(Arc::new(PhaseAuth::none()));
    let notary_commits = cluster.notary_commits()?;
    let mut bank_batches = 0;
    for bank in BANKS {
        bank_batches += cluster.figure(bank, "dtenge_bank_batches_sent_total")?;
    }
    let cpu_before = cluster.cpu();
    let cpu_bench = cpu_us();
    let machine = machine_ticks();
    let start = Instant::now();
    let nexts: Vec<Arc<AtomicU64>> = first.iter().map(|f| Arc::new(AtomicU64::new(*f))).collect();
    let paces: Vec<Pace> = (0..BANKS.len())
        .map(|b| {
            Pace::interleaved(start, window, config.rate_per_s, BANKS.len() as u64, b as u64)
                .batched(config.per_call as u64)
        })
        .collect();
    // Each bank keeps its own keys; the bank in the key anyway, so that a key names one
    // request of the run.
    let key_prefixes: Vec<Arc<str>> = BANKS.iter().map(|bank| Arc::from(run.key(&format!("pay-{bank}-")))).collect();
    let mut tasks = Vec::with_capacity(conns.len());
    for (b, conn) in conns {
        let (link, work, next) = (links[b].clone(), work[b].clone(), nexts[b].clone());
        let (first, pace, key_prefix, auth) = (first[b], paces[b], key_prefixes[b].clone(), auth.clone());
        tasks.push(tokio::spawn(drive(link, conn, work, next, first, pace, key_prefix, auth)));
    }
    let mut tallies: Vec<Tally> = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await.map_err(|e| format!("a connection's task failed: {e}"))??);
    }
    let wall_s = start.elapsed().as_secs_f64().max(1e-9);
    let bench_s = (cpu_us() - cpu_bench) / 1e6;
    let cpu_after = cluster.cpu();
    let (busy, idle, steal) = machine_ticks();
    let busy = busy.saturating_sub(machine.0) as f64;
    let idle = idle.saturating_sub(machine.1) as f64;
    let steal = steal.saturating_sub(machine.2) as f64;
    let total = (busy + idle + steal).max(1.0);
    let tick_s = 1.0 / ticks_per_second();
    let mut participants = BTreeMap::new();
    for (name, (after, threads_after)) in &cpu_after {
        let Some((before, threads_before)) = cpu_before.get(name) else { continue };
        let mut threads: Vec<(String, f64)> = threads_after
            .iter()
            .map(|(thread, t)| {
                let was = threads_before.get(thread).copied().unwrap_or(0);
                (thread.clone(), t.saturating_sub(was) as f64 * tick_s / wall_s)
            })
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        threads.truncate(THREADS_REPORTED);
        let cores = after.saturating_sub(*before) as f64 * tick_s / wall_s;
        participants.insert(name.clone(), ProcessCpu { cores, threads });
    }
    let notary_commits = cluster.notary_commits()?.saturating_sub(notary_commits);
    let mut bank_batches_after = 0;
    for bank in BANKS {
        bank_batches_after += cluster.figure(bank, "dtenge_bank_batches_sent_total")?;
    }

    let totals = Totals::of(&tallies, start)?;
    let elapsed_s = (totals.last - start).as_secs_f64().max(1e-9);
    // Open loop: due in the window (and in the pool) but never sent.
    let due: u64 = paces
        .iter()
        .zip(work.iter().zip(first))
        .map(|(pace, (work, first))| {
            pace.due_in_window().min(work.available().saturating_sub(*first).saturating_mul(config.per_call as u64))
        })
        .sum();
    let unsent = due.saturating_sub(totals.sent);
    let q = |q: f64| totals.latency.value_at_quantile(q);
    let phase = ClusterPhase {
        warmup,
        connections: config.connections,
        offered_per_s: config.rate_per_s,
        duration_s: window.as_secs_f64(),
        elapsed_s,
        sent: totals.sent,
        ok: totals.ok,
        errors: totals.errors.clone(),
        error_examples: totals.examples.clone(),
        unsent,
        pool_exhausted: totals.pool_exhausted,
        ok_per_s: totals.ok as f64 / elapsed_s,
        latency: Percentiles {
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: totals.latency.max(),
        },
        max_latency_at_s: totals.slowest.1.saturating_duration_since(start).as_secs_f64(),
        notary_commits,
        bank_batches: bank_batches_after.saturating_sub(bank_batches),
        bench_cores: bench_s / wall_s,
        participants,
        machine_busy: busy / total,
        machine_steal: steal / total,
    };
    let next = nexts.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    Ok((phase, next))
}

/// The figures across the processes once they settled, at most [`SETTLE_MAX`]
/// (`dtenge_process::reconcile`).
fn reconcile(cluster: &Cluster, load_started: Instant) -> Result<Reconciliation, String> {
    let across = dtenge_process::reconcile::reconcile(&cluster.laid, SETTLE_MAX)?;
    Ok(Reconciliation { ok: across.holds(), across, settle_seconds: load_started.elapsed().as_secs_f64() })
}

/// The report as people read it.
pub fn render(report: &ClusterReport) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    out.push_str(&report.machine.line());
    out.push_str(&format!(
        "cluster            {} ({}); {} participant processes found; the notary as three replicas (openraft)\n",
        report.config.dir.display(),
        match report.cluster_pid {
            Some(pid) => format!(
                "`dtenge cluster` started by the bench, pid {pid}; stopped with SIGTERM: {}",
                report.cluster_exit.as_deref().unwrap_or("?")
            ),
            None => "running before the bench".to_string(),
        },
        report.participants.len()
    ));
    out.push_str(&format!(
        "seeded             {} accounts (self-keyed, over {}), {} tokens in {:.1} s; {} signed 2-in-2-out transfers, every one to another bank, prepared in {:.1} s\n",
        report.config.accounts,
        BANKS.join("/"),
        report.tokens_seeded,
        report.seed_seconds,
        report.signed_prepared,
        report.prepare_seconds
    ));
    for p in &report.phases {
        let errors: u64 = p.errors.values().sum();
        if p.warmup {
            out.push_str(&format!(
                "warm-up            {:.1} s unmeasured: {} ok of {} sent{}; slowest {:.2} ms\n",
                p.duration_s,
                p.ok,
                p.sent,
                if errors == 0 { String::new() } else { format!(", ERRORS {errors}: {:?}", p.errors) },
                ms(p.latency.max_us)
            ));
            continue;
        }
        out.push_str(&format!(
            "payments           {}, {} TLS connections, {:.1} s: {:.0} ok/s ({} ok of {} sent; {})\n",
            match p.offered_per_s {
                Some(rate) => format!("open loop at {rate}/s offered"),
                None => "closed loop".to_string(),
            },
            p.connections,
            p.elapsed_s,
            p.ok_per_s,
            p.ok,
            p.sent,
            if errors == 0 {
                "no errors".to_string()
            } else {
                format!("ERRORS {errors} ({:.2}%): {:?}", errors as f64 * 100.0 / p.sent.max(1) as f64, p.errors)
            }
        ));
        for (code, example) in &p.error_examples {
            out.push_str(&format!("                   {code}: {example}\n"));
        }
        if p.pool_exhausted {
            out.push_str("                   the signed pool (--payments) ran out before the window ended\n");
        }
        if p.unsent > 0 {
            out.push_str(&format!(
                "                   {} requests due were never sent: the cluster fell behind\n",
                p.unsent
            ));
        }
        out.push_str(&format!(
            "                   latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms at {:.2} s ({})\n",
            ms(p.latency.p50_us),
            ms(p.latency.p90_us),
            ms(p.latency.p99_us),
            ms(p.latency.p999_us),
            ms(p.latency.max_us),
            p.max_latency_at_s,
            if p.offered_per_s.is_some() { "from each request's due time" } else { "from each send" }
        ));
        out.push_str(&format!(
            "                   {} notary commits, {} bank batches ({:.1} payments per batch)\n",
            p.notary_commits,
            p.bank_batches,
            p.ok as f64 / p.bank_batches.max(1) as f64
        ));
        out.push_str(&format!(
            "                   cpu: machine {:.0}% busy, {:.1}% stolen; bench {:.2} cores",
            p.machine_busy * 100.0,
            p.machine_steal * 100.0,
            p.bench_cores
        ));
        let mut by_cores: Vec<(&String, &ProcessCpu)> = p.participants.iter().collect();
        by_cores.sort_by(|a, b| b.1.cores.total_cmp(&a.1.cores));
        for (name, cpu) in by_cores {
            out.push_str(&format!(", {name} {:.2}", cpu.cores));
        }
        out.push('\n');
        for (name, cpu) in p.participants.iter().filter(|(_, c)| c.cores >= 0.05) {
            let threads: Vec<String> = cpu.threads.iter().map(|(t, c)| format!("{t} {c:.2}")).collect();
            out.push_str(&format!("                   {name:<9} busiest threads: {}\n", threads.join(", ")));
        }
    }
    let (r, across) = (&report.reconciliation, &report.reconciliation.across);
    out.push_str(&format!(
        "reconciliation     {}: banks' DT {} tiyn = central's liability {}; banks' tokens {} = notary's unspent {} ({:.1} s after the load started)\n",
        if r.ok { "ok" } else if across.settled { "MISMATCH" } else { "NOT SETTLED" },
        across.banks_dt_tiyn,
        across.central_liability_tiyn,
        across.banks_tokens,
        across.notary_unspent_tokens,
        r.settle_seconds
    ));
    out.push_str(&crate::checks_line(report.ok, "no errors, reconciled across the processes", &report.problems));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_queues_together_offer_the_phase_rate() {
        let start = Instant::now();
        for (rate, window_ms) in [(1_000u64, 2_000u64), (10_000, 10_000), (7, 500), (3, 1_000), (100, 10)] {
            let whole = Pace::new(start, Duration::from_millis(window_ms), Some(rate)).due_in_window();
            let paces: Vec<Pace> =
                (0..3).map(|b| Pace::interleaved(start, Duration::from_millis(window_ms), Some(rate), 3, b)).collect();
            let split: u64 = paces.iter().map(Pace::due_in_window).sum();
            assert_eq!(split, whole, "{rate}/s for {window_ms} ms");
            for (b, pace) in paces.iter().enumerate() {
                let due = pace.due_in_window();
                if due > 0 {
                    assert!(pace.due(due - 1).is_some_and(|d| d < pace.end), "queue {b}: the last one counted");
                }
                assert!(pace.due(due).is_some_and(|d| d >= pace.end), "queue {b}: the next one not");
            }
            // Request i of queue b is the phase's request 3i + b.
            assert_eq!(paces[2].due(4), Pace::new(start, Duration::from_millis(window_ms), Some(rate)).due(14));
        }
    }

    #[test]
    fn an_open_loop_pool_covers_every_bank_queue() {
        let start = Instant::now();
        for (rate, warmup_s, duration_s, connections, accounts) in [
            (50, 0.4, 2.0, 6, 60),
            (10_000, 1.0, 10.0, 256, 20_000),
            (7, 0.0, 1.0, 3, 7),
            (1_000, 0.5, 3.0, 5, 61),
            (25_000, 1.0, 30.0, 512, 20_001),
        ] {
            let config = ClusterConfig {
                rate_per_s: Some(rate),
                warmup_s,
                duration_s,
                connections,
                accounts,
                ..ClusterConfig::default()
            };
            let pool = signed_pool(&config);
            // The pool as `sign_transfers` orders it: every payer's k-th transfer in turn,
            // payer n at bank n mod 3, cut to its size.
            let mut share = [0u64; 3];
            for i in 0..pool {
                share[(i % accounts) % 3] += 1;
            }
            for (b, share) in share.iter().enumerate() {
                let due = |s: f64| {
                    Pace::interleaved(start, Duration::from_secs_f64(s), Some(rate), 3, b as u64).due_in_window()
                };
                let conns = (connections + 2 - b) / 3;
                let needed = due(warmup_s) + conns as u64 + due(duration_s);
                assert!(needed <= *share, "{rate}/s, {accounts} accounts: bank {b} needs {needed}, has {share}");
            }
        }
    }

    #[test]
    fn a_free_base_port_leaves_room_for_the_cluster() {
        let base = free_base_port().unwrap();
        assert!(u32::from(base) + 300 < u32::from(u16::MAX));
        assert_eq!(base % 10, 0);
    }
}
