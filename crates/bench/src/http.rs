//! `dtenge bench --http`: load on a running `dtenge up` through its REST API, measured from
//! the outside, as clients and banks' integrations see it (issue 17, point 9).
//!
//! 1. **Server**: the platform at `--api`, or, without it, a `dtenge up` child process on a
//!    temporary data directory and a port the kernel picks (`--listen 127.0.0.1:0`; the
//!    address is read from what `up` prints), stopped with SIGTERM at the end (its exit status
//!    is checked: 0 is a graceful stop).
//!
//!    **Sign in**: the platform authenticates every route but a few public ones, each for one
//!    API client (`dtenge_api::access`): `/v1/nodes/{bank}/...` for that bank's systems, the
//!    calendar, the ABS credits, the checkpoint and the reconciliation for an NBK operator.
//!    The bench holds each bank's credential and an operator's (the child's own
//!    `<data>/credentials`, or `--credentials` with `--api`), trades each for an access token
//!    at `POST /v1/oauth/token` before anything else, and sends every request with the token
//!    of the client the gateway's table names for its path (see [`Auth`]).
//! 2. **Seed** (untimed, through the API only): `accounts` accounts per kind over the three
//!    banks (`POST .../accounts/bulk`), each bank's DT by an ABS credit and an emission, then
//!    paid out to the accounts by registries from the bank's own account, one 100.00 KZT token
//!    per line. Self-keyed accounts then ask for their spendable inputs
//!    (`GET .../accounts/{client}/tokens`), and their clients build and sign 2-in-2-out
//!    transfers from them (1-in-2-out with an odd token left), before the clock starts, as the
//!    in-process bench does: a client signs on its own device, so the signing CPU is not the
//!    platform's and must not eat into the 2 cores the platform shares with the generator.
//!    The bodies are serialized before the clock too. A checkpoint is asked for last, so that
//!    the seeding's change log does not trigger one inside the timed phase.
//! 3. **Run** (timed), one phase per kind, `connections` keep-alive HTTP/1.1 connections, one
//!    request in flight on each (HTTP/1.1 without pipelining):
//!    * custodial: `POST /v1/nodes/{bank}/transfers` of 1.00 KZT to a client of another bank,
//!      each request with its own idempotency key;
//!    * signed: `POST /v1/nodes/{bank}/transactions` with a transfer signed in step 2.
//!
//!    The requests of a phase are numbered, and whichever connection is free takes the next
//!    number, so a slow answer holds up only its own connection. Closed loop (default): a
//!    connection sends its next request as soon as it has the answer to the previous one, for
//!    `duration_s`; latency from the send. Open loop (`rate_per_s`): request `i` is due at
//!    `start + i / rate`, and its latency counts from when it was **due**, not when it left:
//!    when every connection is busy (the server is slower than the offered rate), the backlog
//!    shows in the latency instead of being hidden (coordinated omission).
//!
//!    Custodial transfer `i` pays from account `i mod A`, with at least as many accounts as
//!    connections, so requests in flight do not spend from the same account (a payer's change
//!    is committed before its next payment) and no refusal comes from the load's own races.
//!    The signed transfers spend disjoint inputs: any order works.
//! 4. **Check**: every answer counted by HTTP status and error code (a run with errors says
//!    so and fails; only 2xx answers count as throughput), the platform reconciles
//!    (`GET /v1/operator/reconciliation`), and the child stopped with status 0.
//!
//! The generator runs on one thread (a current-thread tokio runtime driving every connection;
//! hyper's HTTP/1.1 client for the seeding, a client of its own for the timed phases,
//! `raw_http`): the platform shares the machine's 2 cores with it, so it must stay cheap, and
//! its CPU (and the child's, from `/proc`) is reported per phase.

use crate::raw_http::{authorization_line, RawConn};
use crate::{machine_ticks, programmable::cpu_us, Latency, Machine, BANKS, LATENCY_US_MAX, TOKEN_TIYN};
use bytes::Bytes;
use dtenge_api::access::{
    caller_among, load_all_credentials, now_s, token_request_form, CREDENTIALS_DIR, ISSUER, TOKEN_PATH,
};
use dtenge_api::types::{AmountRequest, OpenAccount, RegistryLine, RegistryRequest};
use dtenge_auth::{ApiClient, Credentials};
use dtenge_core::crypto::{hash_parts, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, OWN_ACCOUNT};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Most connections a run may open.
pub const CONNECTIONS_MAX: usize = 4_096;
/// Most accounts per kind (their IINs are spread over a range of this size per run).
pub const ACCOUNTS_MAX: usize = 1_000_000;
/// Most signed transfers prepared before the clock (about 1.5 KB each in memory).
pub const SIGNED_POOL_MAX: usize = 2_000_000;
/// Longest timed phase.
pub const DURATION_S_MAX: f64 = 3_600.0;
/// Registry lines per seeding request (below the platform's 16,000).
const SEED_LINES_MAX: usize = 15_000;
/// Accounts per bulk opening (the route's limit).
const SEED_ACCOUNTS_MAX: usize = 10_000;
/// Connections used to ask for the self-keyed accounts' inputs while seeding.
const SEED_CONNECTIONS: usize = 16;
/// What a custodial transfer pays: 1.00 KZT, so that a payer's two 100.00 KZT tokens last
/// any run (it also receives as much as it pays, on average).
const CUSTODIAL_TRANSFER_TIYN: u64 = 100;
/// 100.00 KZT tokens each custodial account starts with.
const CUSTODIAL_TOKENS_PER_ACCOUNT: usize = 2;
/// Signed transfers prepared when `payments` is not given and the loop is closed.
pub const SIGNED_POOL_DEFAULT: usize = 200_000;
/// Longest one request may take before it counts as `TIMEOUT` (and the connection is
/// replaced: after a timeout its state is unknown).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a connection may be replaced after a transport error or a timeout in a phase.
const RECONNECTS_MAX: u32 = 3;
/// How long `up` may take to print its address, and to stop after SIGTERM.
const CHILD_START_MAX: Duration = Duration::from_secs(120);
const CHILD_STOP_MAX: Duration = Duration::from_secs(120);
/// Distinct error keys kept per connection (a bound on the map, whatever the server says).
const ERROR_KEYS_MAX: usize = 64;
/// An access token is asked for again this long before it expires (as the scenarios'
/// client does); a token must live at least twice as long.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(60);
/// After a failed renewal during a phase, the next try.
const TOKEN_RETRY: Duration = Duration::from_secs(5);

/// Which payments to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `POST /v1/nodes/{node}/transfers`: the bank holds the key and picks the tokens.
    Custodial,
    /// `POST /v1/nodes/{node}/transactions`: the client signed the transfer.
    Signed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Custodial => "custodial",
            Kind::Signed => "signed",
        }
    }
}

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct HttpConfig {
    /// The platform's REST API (`http://host:port`); `None` starts a `dtenge up` child.
    pub api: Option<String>,
    /// The `dtenge` binary to start when `api` is `None` (the running one, normally).
    pub binary: Option<PathBuf>,
    /// With `api`: the API credentials to sign in with (`api-*.key.pem` beside
    /// `api-*.crt.pem`: each bank's systems and an NBK operator). A child started by the
    /// bench has its own, under its data directory, and this is not read.
    pub credentials: PathBuf,
    /// The kinds to measure, one timed phase each, in this order.
    pub kinds: Vec<Kind>,
    /// HTTP connections, each with one request in flight.
    pub connections: usize,
    /// Offered requests per second (open loop); `None` = closed loop (saturation).
    pub rate_per_s: Option<u64>,
    /// Length of each timed phase.
    pub duration_s: f64,
    /// Before each timed phase, the same load for this long, not measured (its answers are
    /// still checked): a fresh server's first payments wait for first touches of the seeded
    /// state (the slowest custodial transfer of a phase without it, 200-350 ms, came in its
    /// first 0.25 s).
    pub warmup_s: f64,
    /// Accounts seeded per kind (over the three banks); at least one per connection.
    pub accounts: usize,
    /// Most requests per kind, warm-up included. Signed transfers are all signed before the
    /// clock, so for them this is the pool (default: `rate × (warm-up + duration)` in an open
    /// loop, else [`SIGNED_POOL_DEFAULT`]); a phase that uses its pool up ends early and says
    /// so. Custodial phases are bounded by the duration only when `None`.
    pub payments: Option<usize>,
    /// Keys and payment pattern.
    pub seed: u64,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            api: None,
            binary: None,
            credentials: PathBuf::from("./data").join(CREDENTIALS_DIR),
            kinds: vec![Kind::Custodial, Kind::Signed],
            connections: 64,
            rate_per_s: None,
            duration_s: 10.0,
            warmup_s: 1.0,
            accounts: 10_000,
            payments: None,
            seed: 1,
        }
    }
}

/// CPU over a timed phase: the generator's (this process), the server's (the child, when
/// the bench started it) and the machine's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseCpu {
    /// CPU seconds of the load generator (this process) per second of the phase: 1.0 = one
    /// core busy all the time.
    pub bench_cores: f64,
    /// The same for the `dtenge up` child; `None` for a server at `--api`.
    pub server_cores: Option<f64>,
    /// The generator's CPU per request sent, µs.
    pub bench_us_per_request: f64,
    /// The server's CPU per successful request, µs.
    pub server_us_per_ok: Option<f64>,
    /// Share of the machine's CPU time busy (every process), 0 to 1.
    pub machine_busy: f64,
    /// Share of the machine's CPU time the hypervisor took, 0 to 1.
    pub machine_steal: f64,
}

/// One timed phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub kind: Kind,
    /// The unmeasured warm-up before a timed phase (its figures are for its errors only).
    pub warmup: bool,
    pub connections: usize,
    /// `None`: closed loop.
    pub offered_per_s: Option<u64>,
    /// The window in which requests were sent (or were due).
    pub duration_s: f64,
    /// From the start to the last answer.
    pub elapsed_s: f64,
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Everything else, by `"<status> <code>"`, or `TRANSPORT` / `TIMEOUT`.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: requests due in the window but never sent, because the connections were
    /// still behind when the drain time (one more window) ran out.
    pub unsent: u64,
    /// The requests (the signed pool, or `payments`) ran out before the window ended.
    pub pool_exhausted: bool,
    /// Successful requests per second of `elapsed_s`.
    pub ok_per_s: f64,
    /// Of every answered request, from its send (closed loop) or its due time (open loop).
    pub latency: Latency,
    /// When the slowest request was sent (closed loop) or due (open loop), seconds into the
    /// phase: a stall at the start reads differently from one in the middle.
    pub max_latency_at_s: f64,
    pub cpu: PhaseCpu,
}

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct HttpReport {
    pub machine: Machine,
    pub config: HttpConfig,
    /// The REST API driven.
    pub api: String,
    /// The `dtenge up` child's process id, when the bench started it.
    pub server_pid: Option<u32>,
    /// How the child ended (`exit status: 0` after a graceful stop).
    pub server_exit: Option<String>,
    pub seed_seconds: f64,
    /// Signed transfers prepared, and the seconds it took (fetching inputs, signing, encoding).
    pub signed_prepared: usize,
    pub prepare_seconds: f64,
    pub phases: Vec<PhaseReport>,
    pub reconciled: bool,
    /// No errors, reconciled, the child stopped with status 0.
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Run the HTTP benchmark; `progress` hears what is happening.
pub fn run(config: &HttpConfig, mut progress: impl FnMut(&str)) -> Result<HttpReport, String> {
    validate(config)?;
    let runtime = generator_runtime()?;
    let (mut child, base) = start_server(config.api.as_deref(), config.binary.as_deref(), &mut progress)?;
    let outcome = runtime.block_on(measure(config, &base, child.as_ref(), &mut progress));
    let server_pid = child.as_ref().map(|c| c.child.id());
    let (mut report, server_exit) = stop_server(child.as_mut(), outcome, &mut progress)?;
    report.server_pid = server_pid;
    if let Some(exit) = &server_exit {
        report.problems.extend(exit_problem(exit));
        report.server_exit = Some(match exit {
            Ok(status) => status.to_string(),
            Err(e) => e.clone(),
        });
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// One thread for the whole generator: the platform shares the machine's 2 cores with it (see
/// the module comment).
pub(crate) fn generator_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the generator's runtime: {e}"))
}

/// The platform a bench drives: the one at `api`, or a `dtenge up` child started from
/// `binary` on a temporary data directory; the child, if any, and the API's base address.
pub(crate) fn start_server(
    api: Option<&str>,
    binary: Option<&Path>,
    progress: &mut impl FnMut(&str),
) -> Result<(Option<ChildServer>, String), String> {
    match api {
        Some(api) => Ok((None, api.trim_end_matches('/').to_string())),
        None => {
            let binary = binary.ok_or("no dtenge binary to start `up` with; give --api")?;
            progress("starting `dtenge up` on a temporary data directory");
            let child = ChildServer::start(binary)?;
            let base = child.base.clone();
            Ok((Some(child), base))
        }
    }
}

/// Stop the child, if the bench started one, whatever the run's `outcome`, and say how it
/// ended; a failed run's error carries the end of what the child printed.
#[allow(clippy::type_complexity)]
pub(crate) fn stop_server<R>(
    child: Option<&mut ChildServer>,
    outcome: Result<R, String>,
    progress: &mut impl FnMut(&str),
) -> Result<(R, Option<Result<std::process::ExitStatus, String>>), String> {
    let Some(child) = child else { return outcome.map(|r| (r, None)) };
    progress("stopping `dtenge up` with SIGTERM");
    let exit = child.stop();
    match outcome {
        Ok(report) => Ok((report, Some(exit))),
        Err(e) => {
            let log = child.log_tail();
            Err(if log.is_empty() { e } else { format!("{e}\n--- dtenge up said:\n{log}") })
        }
    }
}

/// A child that did not stop cleanly, as a problem of the run.
pub(crate) fn exit_problem(exit: &Result<std::process::ExitStatus, String>) -> Option<String> {
    match exit {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("`dtenge up` did not stop cleanly: {status}")),
        Err(e) => Some(e.clone()),
    }
}

pub(crate) fn validate(config: &HttpConfig) -> Result<(), String> {
    if config.kinds.is_empty() {
        return Err("nothing to measure: no kind".into());
    }
    if config.connections == 0 || config.connections > CONNECTIONS_MAX {
        return Err(format!("connections must be 1 to {CONNECTIONS_MAX}"));
    }
    if config.accounts < config.connections.max(BANKS.len() * 2) || config.accounts > ACCOUNTS_MAX {
        return Err(format!(
            "accounts must be at least the connections (each connection pays from its own accounts) and 6, at most {ACCOUNTS_MAX}"
        ));
    }
    if !(config.duration_s > 0.0 && config.duration_s <= DURATION_S_MAX) {
        return Err(format!("duration must be above 0 and at most {DURATION_S_MAX} s"));
    }
    if !(config.warmup_s >= 0.0 && config.warmup_s <= DURATION_S_MAX) {
        return Err(format!("warm-up must be 0 to {DURATION_S_MAX} s"));
    }
    if config.rate_per_s == Some(0) {
        return Err("rate must be positive".into());
    }
    if config.payments == Some(0) {
        return Err("payments must be positive".into());
    }
    if signed_pool(config) > SIGNED_POOL_MAX {
        return Err(format!("at most {SIGNED_POOL_MAX} signed transfers can be prepared; lower --payments or --rate"));
    }
    Ok(())
}

/// Signed transfers to prepare: `payments`, or what the open loop will offer in the warm-up
/// and the phase (plus one per connection: those the connections take but do not send when
/// the warm-up ends), or [`SIGNED_POOL_DEFAULT`].
fn signed_pool(config: &HttpConfig) -> usize {
    match (config.payments, config.rate_per_s) {
        (Some(p), _) => p,
        (None, Some(rate)) => {
            (rate as f64 * (config.warmup_s + config.duration_s)).ceil() as usize + config.connections
        }
        (None, None) => SIGNED_POOL_DEFAULT,
    }
}

/// Seed, prepare, run the phases, reconcile.
async fn measure(
    config: &HttpConfig,
    base: &str,
    child: Option<&ChildServer>,
    progress: &mut impl FnMut(&str),
) -> Result<HttpReport, String> {
    let credentials = child.map_or(config.credentials.as_path(), |c| c.credentials.as_path());
    let auth = Auth::load(credentials)?;
    let endpoint = Arc::new(Endpoint::resolve(base, auth).await?);
    let mut api = Conn::open(&endpoint).await?;
    wait_healthy(&endpoint, &mut api).await?;
    progress(&format!("the platform answers at {base}"));
    // Every client's token before anything else: bad credentials fail here, not mid-seeding.
    let signed_in = endpoint.auth.sign_in(&mut api).await?;
    progress(&format!("signed in as {} (credentials from {})", signed_in.join(", "), credentials.display()));
    let run = RunIds::new(config.seed);

    let started = Instant::now();
    ensure_working_day(&mut api, &run, progress).await?;
    let mut custodial = Vec::new();
    let mut signed_accounts = Vec::new();
    for kind in &config.kinds {
        match kind {
            Kind::Custodial => {
                custodial = open_accounts(&mut api, &run, *kind, config.accounts, progress).await?;
                fund(&mut api, &run, &custodial, CUSTODIAL_TOKENS_PER_ACCOUNT, TOKEN_TIYN, 0, progress).await?;
            }
            Kind::Signed => {
                signed_accounts = open_accounts(&mut api, &run, *kind, config.accounts, progress).await?;
                // Two tokens per transfer, the pool spread evenly over the accounts.
                let per_account = 2 * signed_pool(config).div_ceil(config.accounts);
                fund(&mut api, &run, &signed_accounts, per_account, TOKEN_TIYN, 0, progress).await?;
            }
        }
    }
    let seed_seconds = started.elapsed().as_secs_f64();
    progress(&format!("seeded in {seed_seconds:.1} s"));

    let started = Instant::now();
    let mut pool = Vec::new();
    if !signed_accounts.is_empty() {
        let inputs = fetch_inputs(&endpoint, &signed_accounts).await?;
        pool = sign_transfers(&signed_accounts, inputs, signed_pool(config), &run)?;
    }
    let signed_prepared = pool.len();
    let prepare_seconds = started.elapsed().as_secs_f64();
    if !signed_accounts.is_empty() {
        progress(&format!("fetched inputs, signed and encoded {signed_prepared} transfers in {prepare_seconds:.1} s"));
    }
    // So that the change log of the seeding does not trigger a checkpoint in a timed phase.
    checkpoint(&mut api, &run).await?;
    progress("checkpoint written");

    let mut phases = Vec::new();
    for kind in &config.kinds {
        let work = match kind {
            Kind::Custodial => Work::Custodial {
                holders: custodial.iter().map(|h| (h.bank, h.iin.clone())).collect(),
                uris: bank_uris("transfers")?,
                seed: config.seed,
                cap: config.payments,
                amount_tiyn: |_| CUSTODIAL_TRANSFER_TIYN,
            },
            Kind::Signed => Work::Signed { pool: std::mem::take(&mut pool), uris: bank_uris("transactions")? },
        };
        progress(&format!(
            "{}: {} for {} s over {} connections",
            kind.name(),
            match config.rate_per_s {
                Some(rate) => format!("open loop at {rate}/s"),
                None => "closed loop".to_string(),
            },
            config.duration_s,
            config.connections
        ));
        let work = Arc::new(work);
        let mut first = 0;
        if config.warmup_s > 0.0 {
            let warmup = Duration::from_secs_f64(config.warmup_s);
            let (phase, next) = run_phase(&endpoint, *kind, &work, first, warmup, true, config, &run, child).await?;
            first = next;
            phases.push(phase);
        }
        let window = Duration::from_secs_f64(config.duration_s);
        let (phase, _) = run_phase(&endpoint, *kind, &work, first, window, false, config, &run, child).await?;
        progress(&format!("{}: {:.0} ok/s", kind.name(), phase.ok_per_s));
        phases.push(phase);
    }

    let reconciliation: Value = call(&mut api, Method::GET, "/v1/operator/reconciliation", None, None).await?;
    let reconciled = reconciliation["ok"].as_bool() == Some(true);
    let mut problems = Vec::new();
    if !reconciled {
        problems.push(format!("the platform does not reconcile: {}", reconciliation["problems"]));
    }
    for phase in &phases {
        let errors: u64 = phase.errors.values().sum();
        let name = if phase.warmup { format!("{} warm-up", phase.kind.name()) } else { phase.kind.name().to_string() };
        if errors > 0 {
            problems.push(format!(
                "{}: {errors} of {} requests failed ({:.2}%): {:?}",
                name,
                phase.sent,
                errors as f64 * 100.0 / phase.sent.max(1) as f64,
                phase.errors
            ));
        }
        if phase.ok + errors != phase.sent {
            problems.push(format!("{}: {} sent but {} ok + {errors} failed", name, phase.sent, phase.ok));
        }
        if phase.unsent > 0 {
            problems.push(format!(
                "{}: {} requests due in the window were never sent: the server could not keep up with the offered rate",
                name, phase.unsent
            ));
        }
    }
    Ok(HttpReport {
        machine: Machine::here(),
        config: config.clone(),
        api: base.to_string(),
        server_pid: None,
        server_exit: None,
        seed_seconds,
        signed_prepared,
        prepare_seconds,
        phases,
        reconciled,
        ok: problems.is_empty(),
        problems,
    })
}

/// Unique names for one run, so that runs against the same server do not collide: the
/// idempotency keys' prefix and the range of client ids.
pub(crate) struct RunIds {
    prefix: String,
    /// First IIN base (11 digits before the check digit) of the run.
    iin_base: u64,
    seed: u64,
}

impl RunIds {
    pub(crate) fn new(seed: u64) -> RunIds {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // 295 slots of 2 × 10^8 between 20,000,000,000 and 79,000,000,000: apart from the
        // in-process bench's (10^10...) and the scenarios' (8 × 10^10...) ids. Two runs on one
        // server land in the same slot with probability 1/295; the bulk opening then fails
        // with DUPLICATE_ACCOUNT and says to run again.
        let slot = (nanos % 295) as u64;
        RunIds { prefix: format!("bench-{:x}", nanos), iin_base: 20_000_000_000 + slot * 200_000_000, seed }
    }

    pub(crate) fn key(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// The IIN of account `n` of a kind.
    pub(crate) fn iin(&self, kind: Kind, n: usize) -> Result<String, String> {
        let kind_offset = match kind {
            Kind::Custodial => 0,
            Kind::Signed => 100_000_000,
        };
        let base = self.iin_base + kind_offset + n as u64 * 10;
        (0..10)
            .find_map(|k| complete_iin_bin(&format!("{:011}", base + k)))
            .ok_or_else(|| format!("no IIN near {base}"))
    }

    /// The key of self-keyed client `n`.
    pub(crate) fn secret(&self, n: usize) -> SecretKey {
        SecretKey::from_seed(
            // The run's prefix too: addresses must differ from an earlier run's on the same server.
            hash_parts(
                b"dtenge/bench/http-key",
                &[self.prefix.as_bytes(), &self.seed.to_le_bytes(), &(n as u64).to_le_bytes()],
            )
            .0,
        )
    }
}

/// One seeded account.
pub(crate) struct Holder {
    /// Index into [`BANKS`]: account `n` is at bank `n mod 3`.
    pub(crate) bank: usize,
    pub(crate) iin: String,
    /// Self-keyed accounts only.
    pub(crate) key: Option<SecretKey>,
}

/// `http://host:port`, resolved once, and who the bench signs in there as.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    pub(crate) auth: Auth,
}

impl Endpoint {
    /// A connection of the timed phases ([`RawConn`]).
    async fn open_raw(&self) -> Result<RawConn, String> {
        let host = self.host.to_str().map_err(|_| "the host is not visible ASCII".to_string())?;
        RawConn::open(self.addr, host).await
    }

    pub(crate) async fn resolve(base: &str, auth: Auth) -> Result<Endpoint, String> {
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("--api {base}: give http://host:port (plain HTTP)"))?
            .trim_end_matches('/');
        if authority.contains('/') {
            return Err(format!("--api {base}: give http://host:port, without a path"));
        }
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to no address"))?;
        let host = HeaderValue::from_str(authority).map_err(|_| format!("--api {base}: not a valid host"))?;
        Ok(Endpoint { addr, host, auth })
    }
}

/// Who the bench signs in as: each bank's systems (`bank:<node>`, for `/v1/nodes/<node>/...`:
/// accounts, emissions, registries, payments) and an NBK operator (the calendar, the ABS
/// credits, the checkpoint, the reconciliation), with their access tokens. As
/// `dtenge_scenarios::client::Client` does: the client of a call is the one the gateway's own
/// table ([`access`]) names for its method and path, a token is traded for a signed assertion
/// at `POST /v1/oauth/token` (OAuth 2.0 client credentials, RFC 7523) and kept until
/// [`TOKEN_RENEW_BEFORE`] before it expires.
pub(crate) struct Auth {
    /// Where the credentials came from, for messages.
    dir: PathBuf,
    credentials: BTreeMap<ApiClient, Credentials>,
    /// Tokens granted. A std mutex: never held across an await.
    tokens: Mutex<BTreeMap<ApiClient, Token>>,
    /// Assertions' ids, unique per run (the gateway refuses an id seen before).
    jti_prefix: String,
    jti_counter: AtomicU64,
}

/// An access token, ready for both clients.
#[derive(Clone)]
struct Token {
    /// `Bearer <token>`, for the setup calls (hyper).
    header: HeaderValue,
    /// `authorization: Bearer <token>\r\n`, for the timed phases ([`RawConn::post`]).
    line: Bytes,
    renew_at: Instant,
}

impl Auth {
    /// The credentials in `dir` (`api-*.key.pem` beside `api-*.crt.pem`) of the clients the
    /// bench needs: each of [`BANKS`] and an operator (the first held, as the scenarios'
    /// client picks it).
    pub(crate) fn load(dir: &Path) -> Result<Auth, String> {
        let at = |e: &dyn std::fmt::Display, path: &Path| format!("API credentials: {}: {e}", path.display());
        let all = load_all_credentials(dir).map_err(|e| {
            format!(
                "{} (give --credentials with a sandbox's <data>/{CREDENTIALS_DIR}, or what `dtenge ca issue --api-client` wrote)",
                at(&e, dir)
            )
        })?;
        let held: Vec<ApiClient> = all.keys().cloned().collect();
        let mut wanted: Vec<ApiClient> = BANKS.iter().map(|b| ApiClient::Bank((*b).into())).collect();
        let mut missing: Vec<String> = wanted.iter().filter(|c| !held.contains(c)).map(ToString::to_string).collect();
        match held.iter().find(|c| matches!(c, ApiClient::Operator(_))) {
            Some(operator) => wanted.push(operator.clone()),
            None => missing.push("an NBK operator (operator:<name>)".into()),
        }
        if !missing.is_empty() {
            return Err(format!(
                "API credentials: {} holds none for {}: the bench pays from every bank and seeds as an NBK operator",
                dir.display(),
                missing.join(", ")
            ));
        }
        let credentials: BTreeMap<ApiClient, Credentials> =
            all.into_iter().filter(|(client, _)| wanted.contains(client)).collect();
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Ok(Auth {
            dir: dir.to_path_buf(),
            credentials,
            tokens: Mutex::new(BTreeMap::new()),
            jti_prefix: format!("bench-{}-{nanos:x}", std::process::id()),
            jti_counter: AtomicU64::new(0),
        })
    }

    /// Who makes a call to `path` (without its query): the API client the gateway's table
    /// allows, if held.
    fn caller(&self, method: &str, path: &str) -> Option<&Credentials> {
        caller_among(&self.credentials, method, path)
    }

    /// A token for every client held, asked for now; their names.
    pub(crate) async fn sign_in(&self, conn: &mut Conn) -> Result<Vec<String>, String> {
        let mut names = Vec::with_capacity(self.credentials.len());
        for credentials in self.credentials.values() {
            self.token(conn, credentials).await?;
            names.push(credentials.client.to_string());
        }
        Ok(names)
    }

    /// `Bearer <token>` for a setup call to `path`, if it needs one.
    async fn authorization(&self, conn: &mut Conn, method: &str, path: &str) -> Result<Option<HeaderValue>, String> {
        match self.caller(method, path) {
            Some(credentials) => Ok(Some(self.token(conn, credentials).await?.header)),
            None => Ok(None),
        }
    }

    /// The authorization lines of a timed phase's requests (`POST` to each of `paths`).
    async fn phase(&self, conn: &mut Conn, paths: &[String]) -> Result<PhaseAuth, String> {
        let mut lines = Vec::with_capacity(paths.len());
        let mut renew_at: Option<Instant> = None;
        for path in paths {
            let line = match self.caller("POST", path) {
                Some(credentials) => {
                    let token = self.token(conn, credentials).await?;
                    renew_at = Some(renew_at.map_or(token.renew_at, |r| r.min(token.renew_at)));
                    token.line
                }
                // The gateway answers such a request itself (and the answer is counted).
                None => Bytes::new(),
            };
            lines.push((path.clone(), line));
        }
        Ok(PhaseAuth { lines, renew_at })
    }

    /// The client's token held, or a new one if none is or it is due for renewal.
    async fn token(&self, conn: &mut Conn, credentials: &Credentials) -> Result<Token, String> {
        let now = Instant::now();
        let held = self.lock().get(&credentials.client).filter(|t| now < t.renew_at).cloned();
        if let Some(token) = held {
            return Ok(token);
        }
        let token = self.grant(conn, credentials).await?;
        self.lock().insert(credentials.client.clone(), token.clone());
        Ok(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ApiClient, Token>> {
        // The map is whole whatever panicked while holding it (one insert or one get).
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `POST /v1/oauth/token` with a fresh assertion of `credentials`.
    async fn grant(&self, conn: &mut Conn, credentials: &Credentials) -> Result<Token, String> {
        let client = &credentials.client;
        let fail = |e: &dyn std::fmt::Display| {
            format!("signing in as {client} (credentials from {}): POST {TOKEN_PATH}: {e}", self.dir.display())
        };
        let jti = format!("{}-{}", self.jti_prefix, self.jti_counter.fetch_add(1, Ordering::Relaxed));
        let assertion = credentials.assertion(ISSUER, now_s(), &jti);
        let form = (
            HeaderValue::from_static("application/x-www-form-urlencoded"),
            Bytes::from(token_request_form(&assertion)),
        );
        // Its lifetime counts from before the request: on the safe side.
        let asked = Instant::now();
        let uri: Uri = TOKEN_PATH.parse().map_err(|e| fail(&e))?;
        let (status, answer) = conn.send(Method::POST, uri, None, None, Some(form)).await.map_err(|e| fail(&e))?;
        let body: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(&format_args!(
                "HTTP {} {}: {}",
                status.as_u16(),
                body["error"].as_str().unwrap_or("?"),
                body["error_description"].as_str().unwrap_or("")
            )));
        }
        let token = body["access_token"].as_str().ok_or_else(|| fail(&"the answer has no access_token"))?;
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(0));
        if lifetime < 2 * TOKEN_RENEW_BEFORE {
            return Err(fail(&format_args!(
                "a token valid for {} s; the bench renews {} s before expiry and needs at least {} s",
                lifetime.as_secs(),
                TOKEN_RENEW_BEFORE.as_secs(),
                2 * TOKEN_RENEW_BEFORE.as_secs()
            )));
        }
        Ok(Token {
            header: HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| fail(&e))?,
            line: authorization_line(token).map_err(|e| fail(&e))?,
            renew_at: asked + (lifetime - TOKEN_RENEW_BEFORE),
        })
    }
}

/// A timed phase's `authorization` lines, by request path, each made once per token and
/// shared (`Bytes`) by every connection.
pub(crate) struct PhaseAuth {
    lines: Vec<(String, Bytes)>,
    /// When the first of their tokens is due for renewal; `None` if none needs one.
    renew_at: Option<Instant>,
}

impl PhaseAuth {
    /// No lines: for a server that takes no tokens (a node's own API: its callers are known
    /// by their client certificates).
    pub(crate) fn none() -> PhaseAuth {
        PhaseAuth { lines: Vec::new(), renew_at: None }
    }

    /// The line for `path` (one bank's route: a few short comparisons, no allocation); empty
    /// for a path that needs none.
    fn line(&self, path: &str) -> &[u8] {
        self.lines.iter().find(|(p, _)| p == path).map_or(&[][..], |(_, line)| &line[..])
    }
}

/// Keeps a phase's tokens valid while it runs: at the first one's renewal time (a minute
/// before it expires), new tokens through a connection of its own, handed to the connections
/// through `slot` (each takes them up at its next request). Runs until aborted at the end of
/// the phase.
///
/// Why renew rather than take fresh tokens at the start of each phase and cap its length: a
/// token lives 600 s, and a phase may run for up to `DURATION_S_MAX` (an hour, for soak runs)
/// and an open loop may drain for as long again; a cap short enough for one token would have
/// taken away the long runs. The cost in the timed window is one token request per client
/// about every nine minutes, and one atomic load per request (`has_changed`).
async fn renew_tokens(endpoint: Arc<Endpoint>, paths: Vec<String>, slot: watch::Sender<Arc<PhaseAuth>>) {
    let mut renew_at = slot.borrow().renew_at;
    // Bounded by the phase: the task is aborted when it ends.
    while let Some(at) = renew_at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        let fresh = match Conn::open(&endpoint).await {
            Ok(mut conn) => endpoint.auth.phase(&mut conn, &paths).await,
            Err(e) => Err(e),
        };
        match fresh {
            Ok(fresh) => {
                renew_at = fresh.renew_at;
                slot.send_replace(Arc::new(fresh));
            }
            // The tokens held are good for TOKEN_RENEW_BEFORE more: try again shortly. If the
            // gateway still will not grant one when they expire, the requests are refused
            // (401) and counted as errors, which fail the run.
            Err(_) => renew_at = Some(Instant::now() + TOKEN_RETRY),
        }
    }
}

/// A task aborted when this is dropped (a phase's renewer, on every way out of the phase).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One keep-alive HTTP/1.1 connection (hyper's client connection; its driver is a task of
/// the runtime).
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    endpoint: Arc<Endpoint>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    pub(crate) async fn open(endpoint: &Arc<Endpoint>) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(endpoint.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", endpoint.addr))?;
        // Requests are small and answered one at a time: no Nagle delay on them.
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", endpoint.addr))?;
        let driver = tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; an error then shows on
            // the next request of this connection.
            let _ = connection.await;
        });
        Ok(Conn { sender, driver, endpoint: endpoint.clone() })
    }

    /// Send one request (`body` with its content type) and read the whole answer.
    async fn send(
        &mut self,
        method: Method,
        uri: Uri,
        key: Option<&str>,
        authorization: Option<HeaderValue>,
        body: Option<(HeaderValue, Bytes)>,
    ) -> Result<(StatusCode, Bytes), SendError> {
        let exchange = async {
            self.sender.ready().await.map_err(|e| SendError::Transport(e.to_string()))?;
            let mut request = Request::builder().method(method).uri(uri).header(HOST, self.endpoint.host.clone());
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Some(authorization) = authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let body = match body {
                Some((content_type, body)) => {
                    request = request.header(CONTENT_TYPE, content_type);
                    body
                }
                None => Bytes::new(),
            };
            let request = request.body(Full::new(body)).map_err(|e| SendError::Transport(format!("request: {e}")))?;
            let response = self.sender.send_request(request).await.map_err(|e| SendError::Transport(e.to_string()))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| SendError::Transport(e.to_string()))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.unwrap_or(Err(SendError::Timeout))
    }
}

/// A request that got no HTTP answer.
enum SendError {
    Transport(String),
    Timeout,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transport(e) => write!(f, "transport: {e}"),
            SendError::Timeout => write!(f, "no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        }
    }
}

/// The API's error body as one line: `409 DOUBLE_SPEND: message`.
pub(crate) fn describe_failure(status: StatusCode, body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = value["error"]["code"].as_str().unwrap_or("?");
    let message = value["error"]["message"].as_str().unwrap_or("");
    (format!("{} {code}", status.as_u16()), message.to_string())
}

/// A seeding call: an answer other than 2xx is an error naming the route and the code.
pub(crate) async fn call<T: DeserializeOwned>(
    conn: &mut Conn,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<T, String> {
    let answer = call_raw(conn, method.clone(), path, key, body).await?;
    serde_json::from_slice(&answer).map_err(|e| format!("{method} {path}: the answer does not decode: {e}"))
}

/// A seeding call's answer as it came (`GET /metrics` is text): an answer other than 2xx is
/// an error naming the route and the code.
pub(crate) async fn call_raw(
    conn: &mut Conn,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<Bytes, String> {
    let uri: Uri = path.parse().map_err(|e| format!("{path}: {e}"))?;
    let endpoint = conn.endpoint.clone();
    let authorization =
        endpoint.auth.authorization(conn, method.as_str(), path).await.map_err(|e| format!("{method} {path}: {e}"))?;
    let body = body.map(|body| (HeaderValue::from_static("application/json"), Bytes::from(body)));
    let (status, answer) =
        conn.send(method.clone(), uri, key, authorization, body).await.map_err(|e| format!("{method} {path}: {e}"))?;
    if !status.is_success() {
        let (code, message) = describe_failure(status, &answer);
        return Err(format!("{method} {path}: HTTP {code}: {message}"));
    }
    Ok(answer)
}

pub(crate) fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("encoding a request: {e}"))
}

/// Have the platform write a checkpoint now, so that the seeding's change log does not make
/// one due inside a timed phase.
pub(crate) async fn checkpoint(api: &mut Conn, run: &RunIds) -> Result<(), String> {
    let key = run.key("checkpoint");
    call::<Value>(api, Method::POST, "/v1/operator/checkpoints", Some(&key), Some(b"null".to_vec())).await?;
    Ok(())
}

/// `/health` answers `ok` (the child may still be opening its stores).
pub(crate) async fn wait_healthy(endpoint: &Arc<Endpoint>, conn: &mut Conn) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match call::<Value>(conn, Method::GET, "/health", None, None).await {
            Ok(health) if health["status"] == "ok" => return Ok(()),
            Ok(_) | Err(_) if started.elapsed() < CHILD_START_MAX => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(fresh) = Conn::open(endpoint).await {
                    *conn = fresh;
                }
            }
            Ok(health) => return Err(format!("/health says {health}")),
            Err(e) => return Err(e),
        }
    }
}

/// Bank <-> NBK conversions (the emissions that fund the banks) run on operational days only:
/// on a weekend or holiday the bench makes today a working day, as the README's operator does.
pub(crate) async fn ensure_working_day(
    conn: &mut Conn,
    run: &RunIds,
    progress: &mut impl FnMut(&str),
) -> Result<(), String> {
    let today: Value = call(conn, Method::GET, "/v1/operator/today", None, None).await?;
    if today["working"].as_bool() == Some(true) {
        return Ok(());
    }
    let date = today["date"].as_str().ok_or("/v1/operator/today has no date")?.to_string();
    let path = format!("/v1/operator/calendar/days/{date}");
    call::<Value>(
        conn,
        Method::PUT,
        &path,
        Some(&run.key("working-day")),
        Some(json(&serde_json::json!({"working": true}))?),
    )
    .await?;
    progress(&format!("{date} was not an operational day; made it one for the emissions"));
    Ok(())
}

/// Open `count` accounts of a kind, spread over the banks (account `n` at bank `n mod 3`).
pub(crate) async fn open_accounts(
    conn: &mut Conn,
    run: &RunIds,
    kind: Kind,
    count: usize,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<Holder>, String> {
    let mut holders = Vec::with_capacity(count);
    for n in 0..count {
        let key = (kind == Kind::Signed).then(|| run.secret(n));
        holders.push(Holder { bank: n % BANKS.len(), iin: run.iin(kind, n)?, key });
    }
    for (b, bank) in BANKS.iter().enumerate() {
        let mine: Vec<(usize, &Holder)> = holders.iter().enumerate().filter(|(_, h)| h.bank == b).collect();
        for (c, chunk) in mine.chunks(SEED_ACCOUNTS_MAX).enumerate() {
            let requests: Vec<OpenAccount> = chunk
                .iter()
                .map(|(n, h)| OpenAccount {
                    kind: ClientKind::Individual,
                    client_id: h.iin.clone(),
                    name: format!("Bench {} {n}", kind.name()),
                    phone: None,
                    public_key: h.key.as_ref().map(SecretKey::public_key),
                })
                .collect();
            let path = format!("/v1/nodes/{bank}/accounts/bulk");
            let key = run.key(&format!("open-{}-{bank}-{c}", kind.name()));
            call::<Value>(conn, Method::POST, &path, Some(&key), Some(json(&requests)?)).await.map_err(|e| {
                if e.contains("DUPLICATE_ACCOUNT") {
                    format!("{e}\n(an earlier run used the same client ids on this server: run again)")
                } else {
                    e
                }
            })?;
        }
    }
    progress(&format!("opened {count} {} accounts", kind.name()));
    Ok(holders)
}

/// Pay every account `per_account` tokens of `line_tiyn` each: each bank gets the DT by an
/// ABS credit and an emission, then pays its clients by registries from its own account,
/// and keeps `kept_tiyn` more on it (for what the caller pays from there later).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fund(
    conn: &mut Conn,
    run: &RunIds,
    holders: &[Holder],
    per_account: usize,
    line_tiyn: u64,
    kept_tiyn: u64,
    progress: &mut impl FnMut(&str),
) -> Result<(), String> {
    for (b, bank) in BANKS.iter().enumerate() {
        let mut lines = Vec::new();
        for h in holders.iter().filter(|h| h.bank == b) {
            for _ in 0..per_account {
                lines.push(RegistryLine {
                    phone: None,
                    client_id: Some(h.iin.clone()),
                    bank: Some((*bank).to_string()),
                    amount_tiyn: amount(line_tiyn)?,
                });
            }
        }
        if lines.is_empty() {
            continue;
        }
        let what = holders.first().map(|h| if h.key.is_some() { "signed" } else { "custodial" }).unwrap_or("");
        let paid = line_tiyn.checked_mul(lines.len() as u64).and_then(|t| t.checked_add(kept_tiyn));
        let total = AmountRequest { amount_tiyn: amount(paid.ok_or("the seeding's total overflows")?)? };
        let credit = format!("/v1/abs/correspondent/{bank}/credits");
        call::<Value>(
            conn,
            Method::POST,
            &credit,
            Some(&run.key(&format!("credit-{what}-{bank}"))),
            Some(json(&total)?),
        )
        .await?;
        let emission = format!("/v1/nodes/{bank}/emissions");
        call::<Value>(
            conn,
            Method::POST,
            &emission,
            Some(&run.key(&format!("emit-{what}-{bank}"))),
            Some(json(&total)?),
        )
        .await?;
        let registry = format!("/v1/nodes/{bank}/registries");
        let count = lines.len();
        for (c, chunk) in lines.chunks(SEED_LINES_MAX).enumerate() {
            let request = RegistryRequest { from: OWN_ACCOUNT.into(), reference: None, lines: chunk.to_vec() };
            let key = run.key(&format!("registry-{what}-{bank}-{c}"));
            let report: Value = call(conn, Method::POST, &registry, Some(&key), Some(json(&request)?)).await?;
            if report["lines_rejected"].as_u64() != Some(0) {
                return Err(format!("seeding registry at {bank}: {} lines rejected", report["lines_rejected"]));
            }
        }
        progress(&format!("paid {count} tokens to {what} accounts at {bank}"));
    }
    Ok(())
}

pub(crate) fn amount(tiyn: u64) -> Result<Amount, String> {
    Amount::from_tiyn(tiyn).map_err(|e| e.to_string())
}

/// Every self-keyed account's spendable inputs, through `GET .../accounts/{client}/tokens`,
/// over a few connections at once.
async fn fetch_inputs(endpoint: &Arc<Endpoint>, holders: &[Holder]) -> Result<Vec<Vec<Input>>, String> {
    let paths: Arc<Vec<String>> =
        // One page of the largest size: the bench pays each account far fewer.
        Arc::new(
            holders
                .iter()
                .map(|h| {
                    let limit = dtenge_api::platform::LIST_PAGE_MAX;
                    format!("/v1/nodes/{}/accounts/{}/tokens?limit={limit}", BANKS[h.bank], h.iin)
                })
                .collect(),
        );
    let workers = SEED_CONNECTIONS.min(holders.len()).max(1);
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let (endpoint, paths) = (endpoint.clone(), paths.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&endpoint).await?;
            let mut mine = Vec::new();
            for i in (w..paths.len()).step_by(workers) {
                let page: dtenge_api::types::TokenPage = call(&mut conn, Method::GET, &paths[i], None, None).await?;
                let inputs: Vec<Input> = page.tokens;
                mine.push((i, inputs));
            }
            Ok::<_, String>(mine)
        }));
    }
    let mut all = vec![Vec::new(); holders.len()];
    for task in tasks {
        for (i, inputs) in task.await.map_err(|e| format!("a seeding task failed: {e}"))?? {
            all[i] = inputs;
        }
    }
    Ok(all)
}

/// A request ready to send.
pub(crate) struct Prepared {
    pub(crate) uri: Uri,
    pub(crate) body: Bytes,
    /// Index into [`BANKS`]: the payer's bank, whose API takes it.
    pub(crate) bank: usize,
    /// Payments in the body: 1, or a batch's (`POST .../transactions/batch`, answered per
    /// transaction).
    pub(crate) payments: u32,
}

impl Prepared {
    /// `transfers` (each one signed transfer's JSON, of the same bank) as one batch call to
    /// `uri`.
    pub(crate) fn batch(uri: Uri, transfers: &[Prepared]) -> Result<Prepared, String> {
        let first = transfers.first().ok_or("an empty batch")?;
        assert!(transfers.iter().all(|t| t.bank == first.bank && t.payments == 1), "one bank's single transfers");
        let mut body = Vec::with_capacity(transfers.iter().map(|t| t.body.len() + 1).sum::<usize>() + 20);
        body.extend_from_slice(br#"{"transactions":["#);
        for (k, transfer) in transfers.iter().enumerate() {
            if k > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&transfer.body);
        }
        body.extend_from_slice(b"]}");
        let payments = u32::try_from(transfers.len()).map_err(|_| "a batch too large")?;
        Ok(Prepared { uri, body: Bytes::from(body), bank: first.bank, payments })
    }
}

/// Sign the transfers: each account spends its inputs two at a time (2-in-2-out: the payee's
/// part and the change), the last one alone if their count is odd (1-in-2-out), to a client
/// of another bank. Signing is spread over every core (before the clock). The pool takes the
/// accounts' first transfers in turn, then their second ones, and so on, cut to its size:
/// consecutive requests come from different clients. The transfers spend disjoint seeded
/// inputs, so they may be sent in any order and at once.
pub(crate) fn sign_transfers(
    holders: &[Holder],
    inputs: Vec<Vec<Input>>,
    size: usize,
    run: &RunIds,
) -> Result<Vec<Prepared>, String> {
    let uris = bank_uris("transactions")?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = holders.len().div_ceil(threads).max(1);
    let indexed: Vec<(usize, Vec<Input>)> = inputs.into_iter().enumerate().collect();
    let signed: Vec<Vec<Vec<Prepared>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = indexed
            .chunks(chunk)
            .map(|part| {
                let uris = &uris;
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (payer, tokens) in part {
                        let mut rng = ChaCha8Rng::seed_from_u64(run.seed ^ (*payer as u64).wrapping_mul(0x9E37_79B9));
                        let from = holders.get(*payer).ok_or("a payer out of range")?;
                        let key = from.key.as_ref().ok_or("a signed payer without a key")?;
                        let uri = uris.get(from.bank).ok_or("a bank out of range")?;
                        let mut mine = Vec::with_capacity(tokens.len().div_ceil(2));
                        for (k, pair) in tokens.chunks(2).enumerate() {
                            let payee = holders.get(payee_of(*payer, holders.len(), rng.gen())).ok_or("no payee")?;
                            let to = payee.key.as_ref().ok_or("a signed payee without a key")?.address();
                            let issuer = pair[0].output.issuer;
                            let value: u64 = pair.iter().map(|i| i.output.amount_tiyn.tiyn()).sum();
                            let paid = value / 2 + rng.gen_range(0..value / 4);
                            let outputs = vec![
                                Output::standard(amount(paid)?, to, issuer),
                                Output::standard(amount(value - paid)?, key.address(), issuer),
                            ];
                            let nonce = (*payer as u64) << 24 | k as u64;
                            let body = TxBody { command: Command::Transfer, inputs: pair.to_vec(), outputs, nonce };
                            let mut tx = Transaction::new(body);
                            tx.sign_owner(key);
                            mine.push(Prepared {
                                uri: uri.clone(),
                                body: Bytes::from(json(&tx)?),
                                bank: from.bank,
                                payments: 1,
                            });
                        }
                        out.push(mine);
                    }
                    Ok::<_, String>(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "a signing thread panicked".to_string()).and_then(|r| r))
            .collect::<Result<Vec<_>, String>>()
    })?;
    let mut per_payer: Vec<std::vec::IntoIter<Prepared>> = signed.into_iter().flatten().map(Vec::into_iter).collect();
    let mut pool = Vec::with_capacity(size);
    // Bounded: each round takes at least one transfer or ends.
    while pool.len() < size {
        let before = pool.len();
        pool.extend(per_payer.iter_mut().filter_map(Iterator::next).take(size - before));
        if pool.len() == before {
            break;
        }
    }
    Ok(pool)
}

/// A random account at another bank than `payer`'s (account `n` is at bank `n mod 3`), from
/// the random number `r`.
pub(crate) fn payee_of(payer: usize, accounts: usize, r: u64) -> usize {
    let banks = BANKS.len();
    let bank = (payer % banks + 1 + (r % (banks as u64 - 1)) as usize) % banks;
    // Accounts at `bank`: bank, bank + 3, ... below `accounts` (at least 2 each, as there are 6+).
    let at_bank = ((accounts + banks - 1 - bank) / banks).max(1);
    bank + banks * ((r >> 8) % at_bank as u64) as usize
}

/// splitmix64: a well-mixed number from a counter, so that request `i` of a custodial phase
/// has its payee without shared generator state.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `/v1/nodes/{bank}/{route}` for each bank.
pub(crate) fn bank_uris(route: &str) -> Result<Vec<Uri>, String> {
    BANKS.iter().map(|b| format!("/v1/nodes/{b}/{route}").parse::<Uri>().map_err(|e| e.to_string())).collect()
}

/// The requests of a phase, numbered from 0. Whichever connection is free takes the next
/// number (a shared counter), so a slow answer holds up only its own connection, as with a
/// pool of connections; when every connection is busy, the next request waits (and in an open
/// loop that wait counts in its latency).
pub(crate) enum Work {
    /// Custodial transfer `i`: from account `i mod A` (round robin; with at least as many
    /// accounts as connections, two requests in flight never share a payer unless one is
    /// `A` requests late, and even then the payer's second token pays) to a client of
    /// another bank picked by `mix(seed, i)`; at most `cap` of them.
    /// `amount_tiyn` says what transfer `i` pays, from a random number of its own.
    Custodial {
        holders: Vec<(usize, String)>,
        uris: Vec<Uri>,
        seed: u64,
        cap: Option<usize>,
        amount_tiyn: fn(u64) -> u64,
    },
    /// The pool signed before the clock, to `uris` (one per bank).
    Signed { pool: Vec<Prepared>, uris: Vec<Uri> },
}

impl Work {
    /// How many requests there are.
    pub(crate) fn available(&self) -> u64 {
        match self {
            Work::Custodial { cap, .. } => cap.map_or(u64::MAX, |c| c as u64),
            Work::Signed { pool, .. } => pool.len() as u64,
        }
    }

    /// Every path its requests go to (one per bank).
    fn paths(&self) -> Vec<String> {
        let (Work::Custodial { uris, .. } | Work::Signed { uris, .. }) = self;
        uris.iter().map(|uri| uri.path().to_string()).collect()
    }

    /// Request `i`.
    fn request(&self, i: u64) -> Option<Prepared> {
        match self {
            Work::Signed { pool, .. } => {
                let p = pool.get(usize::try_from(i).ok()?)?;
                Some(Prepared { uri: p.uri.clone(), body: p.body.clone(), bank: p.bank, payments: p.payments })
            }
            Work::Custodial { holders, uris, seed, amount_tiyn, .. } => {
                let payer = (i % holders.len().max(1) as u64) as usize;
                let r = mix(seed ^ mix(i));
                let payee = payee_of(payer, holders.len(), r);
                let paid = amount_tiyn(mix(r));
                let ((payer_bank, from), (payee_bank, to)) = (holders.get(payer)?, holders.get(payee)?);
                let body = format!(
                    r#"{{"from":"{from}","to":{{"client_id":"{to}","bank":"{}"}},"amount_tiyn":{paid}}}"#,
                    BANKS.get(*payee_bank)?
                );
                Some(Prepared {
                    uri: uris.get(*payer_bank)?.clone(),
                    body: Bytes::from(body),
                    bank: *payer_bank,
                    payments: 1,
                })
            }
        }
    }
}

/// What one connection saw in a phase.
pub(crate) struct Tally {
    latency: Histogram<u64>,
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// The first message of each error key, for the report.
    examples: BTreeMap<String, String>,
    /// The requests ran out while the window was still open.
    exhausted: bool,
    last_answer: Option<Instant>,
    /// The slowest request: its latency and when it was sent or due.
    slowest: (u64, Option<Instant>),
}

impl Tally {
    /// A batch's answer: each transaction's receipt or error (`results`, in order).
    fn batch(&mut self, body: &[u8], payments: u64) {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let results = value["results"].as_array().map_or(&[][..], Vec::as_slice);
        if results.len() as u64 != payments {
            for _ in 0..payments {
                self.error("BATCH".to_string(), format!("{} results for {payments} transactions", results.len()));
            }
            return;
        }
        for result in results {
            if result.get("receipt").is_some() {
                self.ok += 1;
            } else {
                let code = result["error"]["code"].as_str().unwrap_or("?");
                let message = result["error"]["message"].as_str().unwrap_or("");
                self.error(format!("in a batch {code}"), message.to_string());
            }
        }
    }

    fn error(&mut self, key: String, message: String) {
        // Bounded: past ERROR_KEYS_MAX distinct keys, the rest count under OTHER.
        let key = if self.errors.len() >= ERROR_KEYS_MAX && !self.errors.contains_key(&key) {
            "OTHER".to_string()
        } else {
            key
        };
        self.examples.entry(key.clone()).or_insert(message);
        *self.errors.entry(key).or_insert(0) += 1;
    }
}

/// How a phase paces its requests.
#[derive(Clone, Copy)]
pub(crate) struct Pace {
    start: Instant,
    /// End of the window.
    pub(crate) end: Instant,
    window: Duration,
    /// Open loop: requests per second of the whole phase.
    rate_per_s: Option<u64>,
    /// This queue's request `i` is the phase's request `i × stride + offset`: a phase split
    /// into `stride` queues (`dtenge bench --cluster`: one per bank, each bank's connections
    /// taking its own payers' transfers) interleaves their due times, and together they
    /// offer the phase's rate. 1 and 0 for one queue.
    stride: u64,
    offset: u64,
    /// Payments per request: a request is due when its last payment is, and each payment's
    /// latency counts from its own due time (the time it waited to fill the batch included).
    per_request: u64,
}

impl Pace {
    pub(crate) fn new(start: Instant, window: Duration, rate_per_s: Option<u64>) -> Pace {
        Pace::interleaved(start, window, rate_per_s, 1, 0)
    }

    /// Queue `offset` of `stride` queues sharing the phase's rate (see the field).
    pub(crate) fn interleaved(
        start: Instant,
        window: Duration,
        rate_per_s: Option<u64>,
        stride: u64,
        offset: u64,
    ) -> Pace {
        Pace { start, end: start + window, window, rate_per_s, stride: stride.max(1), offset, per_request: 1 }
    }

    /// The same pace with `per_request` payments in each request (the rate stays payments
    /// per second).
    pub(crate) fn batched(self, per_request: u64) -> Pace {
        assert!(per_request >= 1, "a request carries a payment at least");
        Pace { per_request, ..self }
    }

    /// Open loop: when request `r` is due: when its last payment is.
    pub(crate) fn request_due(&self, r: u64) -> Option<Instant> {
        self.due(r.saturating_mul(self.per_request).saturating_add(self.per_request - 1))
    }

    /// Open loop: when payment `k` of request `r` is due.
    fn payment_due(&self, r: u64, k: u64) -> Option<Instant> {
        self.due(r.saturating_mul(self.per_request).saturating_add(k))
    }

    /// Open loop: when request `i` is due, `start + (i × stride + offset) / rate` (in whole
    /// nanoseconds, so that [`Pace::due_in_window`] counts exactly the requests due before the
    /// end).
    pub(crate) fn due(&self, i: u64) -> Option<Instant> {
        let rate = u128::from(self.rate_per_s?.max(1));
        let k = u128::from(i) * u128::from(self.stride) + u128::from(self.offset);
        let ns = u64::try_from(k * 1_000_000_000 / rate).unwrap_or(u64::MAX);
        Some(self.start + Duration::from_nanos(ns))
    }

    /// Open loop: how many of this queue's requests are due inside the window: of the
    /// phase's ⌈window × rate⌉, those numbered `offset`, `offset + stride`, ...
    pub(crate) fn due_in_window(&self) -> u64 {
        let Some(rate) = self.rate_per_s else { return 0 };
        let due = (self.window.as_nanos() * u128::from(rate)).div_ceil(1_000_000_000);
        let mine = due.saturating_sub(u128::from(self.offset)).div_ceil(u128::from(self.stride));
        // In whole calls: a call leaves when its last payment is due, so payments due near
        // the end whose call would leave after it are not due.
        let per_request = u128::from(self.per_request);
        u64::try_from(mine / per_request * per_request).unwrap_or(u64::MAX)
    }
}

/// Where a timed phase's connections go: a replacement for one that failed comes from here.
pub(crate) trait Link: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn open(&self) -> impl std::future::Future<Output = Result<RawConn<Self::Stream>, String>> + Send;
}

impl Link for Endpoint {
    type Stream = tokio::net::TcpStream;
    fn open(&self) -> impl std::future::Future<Output = Result<RawConn, String>> + Send {
        self.open_raw()
    }
}

/// One connection's loop: take the next request, (open loop) wait until it is due, send it,
/// wait for the answer, count; until the window (closed loop) or the schedule (open loop)
/// ends. An open loop may drain its backlog for one more window after its end, no longer:
/// what is still unsent then is reported as such.
///
/// Each request carries the `authorization` line of its path's API client, made once per
/// token ([`PhaseAuth`]); a token renewed during the phase is taken up at the next request.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive<L: Link>(
    link: Arc<L>,
    mut conn: RawConn<L::Stream>,
    work: Arc<Work>,
    next: Arc<AtomicU64>,
    first: u64,
    pace: Pace,
    key_prefix: Arc<str>,
    mut auth: watch::Receiver<Arc<PhaseAuth>>,
) -> Result<Tally, String> {
    let mut lines = auth.borrow_and_update().clone();
    let mut tally = Tally {
        latency: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())?,
        sent: 0,
        ok: 0,
        errors: BTreeMap::new(),
        examples: BTreeMap::new(),
        exhausted: false,
        last_answer: None,
        slowest: (0, None),
    };
    let drain_end = pace.end + pace.window;
    let mut reconnects = 0u32;
    loop {
        // Relaxed: the counter only hands out distinct numbers; nothing else is ordered by it.
        let i = next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let due = pace.request_due(i - first);
        if due.map_or(now >= pace.end, |due| due >= pace.end) {
            break;
        }
        if i >= work.available() {
            tally.exhausted = true;
            break;
        }
        let from = match due {
            Some(_) if now > drain_end => break,
            Some(due) => {
                // tokio's timers have a resolution of 1 ms: a request may leave up to about
                // 1 ms after it was due, and that counts in its latency (on the safe side).
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                due
            }
            None => now,
        };
        let Some(request) = work.request(i) else {
            tally.exhausted = true;
            break;
        };
        let key = format!("{key_prefix}{i}");
        tally.sent += u64::from(request.payments);
        let path = request.uri.path_and_query().map_or("/", |p| p.as_str());
        // One atomic load per request; an error means the renewer has stopped (the phase is
        // ending): the lines held stay.
        if auth.has_changed().unwrap_or(false) {
            lines = auth.borrow_and_update().clone();
        }
        let authorization = lines.line(request.uri.path());
        let answer =
            match tokio::time::timeout(REQUEST_TIMEOUT, conn.post(path, &key, authorization, &request.body)).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(SendError::Transport(e)),
                Err(_) => Err(SendError::Timeout),
            };
        let done = Instant::now();
        tally.last_answer = Some(done);
        let payments = u64::from(request.payments);
        for k in 0..payments {
            // A batch's payment k waited in the batch from its own due time (open loop).
            let due_k = if payments > 1 { pace.payment_due(i - first, k).unwrap_or(from) } else { from };
            let latency_us = done.saturating_duration_since(due_k).as_micros().clamp(1, u128::from(LATENCY_US_MAX));
            let _ = tally.latency.record(latency_us as u64);
            if latency_us as u64 > tally.slowest.0 {
                tally.slowest = (latency_us as u64, Some(due_k));
            }
        }
        match answer {
            Ok((status, body)) if status.is_success() && payments > 1 => tally.batch(&body, payments),
            Ok((status, _)) if status.is_success() => tally.ok += 1,
            Ok((status, body)) => {
                let (code, message) = describe_failure(status, &body);
                for _ in 0..payments {
                    tally.error(code.clone(), message.clone());
                }
            }
            Err(e) => {
                let code = match e {
                    SendError::Timeout => "TIMEOUT",
                    SendError::Transport(_) => "TRANSPORT",
                };
                for _ in 0..payments {
                    tally.error(code.to_string(), e.to_string());
                }
                // The connection's state is unknown: replace it, a bounded number of times.
                reconnects += 1;
                if reconnects > RECONNECTS_MAX {
                    break;
                }
                match link.open().await {
                    Ok(fresh) => conn = fresh,
                    Err(e) => {
                        tally.error("TRANSPORT".into(), e);
                        break;
                    }
                }
            }
        }
    }
    Ok(tally)
}

/// CPU time of a process from `/proc/<pid>/stat` (user + system, every thread), in clock
/// ticks.
pub(crate) fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// One timed phase over `config.connections` connections.
/// One timed phase (or warm-up) of `window` over `config.connections` connections, taking the
/// requests of `work` from number `first` on; its report and the next number to take.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_phase(
    endpoint: &Arc<Endpoint>,
    kind: Kind,
    work: &Arc<Work>,
    first: u64,
    window: Duration,
    warmup: bool,
    config: &HttpConfig,
    run: &RunIds,
    child: Option<&ChildServer>,
) -> Result<(PhaseReport, u64), String> {
    // The tokens of the phase's API clients (one per bank it pays from), as header lines
    // made once and shared by every connection, and kept fresh while it runs.
    let paths = work.paths();
    let phase_auth = {
        let mut setup = Conn::open(endpoint).await?;
        endpoint.auth.phase(&mut setup, &paths).await?
    };
    let (renewed, auth) = watch::channel(Arc::new(phase_auth));
    // Connect before the clock: the phase measures requests, not handshakes.
    let mut conns = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        conns.push(endpoint.open_raw().await?);
    }
    let _renewer = AbortOnDrop(tokio::spawn(renew_tokens(endpoint.clone(), paths, renewed)));
    let cpu_bench = cpu_us();
    let cpu_server = child.and_then(|c| process_ticks(c.child.id()));
    let machine = machine_ticks();
    let start = Instant::now();
    let pace = Pace::new(start, window, config.rate_per_s);
    // The requests' numbers go on from the warm-up to the phase: one key each.
    let key_prefix: Arc<str> = Arc::from(run.key(&format!("{}-", kind.name())));
    let available = work.available().saturating_sub(first);
    let next = Arc::new(AtomicU64::new(first));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let (work, next, key_prefix, auth) = (work.clone(), next.clone(), key_prefix.clone(), auth.clone());
            tokio::spawn(drive(endpoint.clone(), conn, work, next, first, pace, key_prefix, auth))
        })
        .collect();
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await.map_err(|e| format!("a connection's task failed: {e}"))??);
    }
    let wall_s = start.elapsed().as_secs_f64().max(1e-9);
    let bench_s = (cpu_us() - cpu_bench) / 1e6;
    let server_s = cpu_server
        .zip(child.and_then(|c| process_ticks(c.child.id())))
        .map(|(a, b)| (b - a) as f64 / ticks_per_second());
    let (busy, idle, steal) = machine_ticks();
    let busy = busy.saturating_sub(machine.0) as f64;
    let idle = idle.saturating_sub(machine.1) as f64;
    let steal = steal.saturating_sub(machine.2) as f64;
    let total = (busy + idle + steal).max(1.0);

    let Totals { latency, sent, ok, errors, pool_exhausted, last, slowest, .. } = Totals::of(&tallies, start)?;
    let elapsed_s = (last - start).as_secs_f64().max(1e-9);
    // Open loop: due in the window (and available) but never sent, because every connection
    // was still behind when the drain time ran out.
    let unsent = pace.due_in_window().min(available).saturating_sub(sent);
    let q = |q: f64| latency.value_at_quantile(q);
    let report = PhaseReport {
        kind,
        warmup,
        connections: config.connections,
        offered_per_s: config.rate_per_s,
        duration_s: window.as_secs_f64(),
        elapsed_s,
        sent,
        ok,
        errors,
        unsent,
        pool_exhausted,
        ok_per_s: ok as f64 / elapsed_s,
        latency: Latency { p50_us: q(0.5), p99_us: q(0.99), p999_us: q(0.999), max_us: latency.max() },
        max_latency_at_s: slowest.1.saturating_duration_since(start).as_secs_f64(),
        cpu: PhaseCpu {
            bench_cores: bench_s / wall_s,
            server_cores: server_s.map(|s| s / wall_s),
            bench_us_per_request: bench_s * 1e6 / sent.max(1) as f64,
            server_us_per_ok: server_s.map(|s| s * 1e6 / ok.max(1) as f64),
            machine_busy: busy / total,
            machine_steal: steal / total,
        },
    };
    Ok((report, next.load(Ordering::Relaxed)))
}

/// A phase's connections' tallies added up.
pub(crate) struct Totals {
    pub(crate) latency: Histogram<u64>,
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// The first message of each error key.
    pub(crate) examples: BTreeMap<String, String>,
    /// Some connection ran out of requests before the window ended.
    pub(crate) pool_exhausted: bool,
    /// The last answer (`start` if none).
    pub(crate) last: Instant,
    /// The slowest request's latency and when it was sent or due.
    pub(crate) slowest: (u64, Instant),
}

impl Totals {
    pub(crate) fn of(tallies: &[Tally], start: Instant) -> Result<Totals, String> {
        let mut totals = Totals {
            latency: Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())?,
            sent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
            pool_exhausted: false,
            last: start,
            slowest: (0, start),
        };
        for t in tallies {
            if let (latency, Some(at)) = t.slowest {
                if latency > totals.slowest.0 {
                    totals.slowest = (latency, at);
                }
            }
            totals.latency.add(&t.latency).map_err(|e| e.to_string())?;
            totals.sent += t.sent;
            totals.ok += t.ok;
            for (code, n) in &t.errors {
                *totals.errors.entry(code.clone()).or_insert(0) += n;
            }
            for (code, message) in &t.examples {
                totals.examples.entry(code.clone()).or_insert_with(|| message.clone());
            }
            // Requests that ran out before the window ended shorten the phase.
            totals.pool_exhausted |= t.exhausted;
            totals.last = totals.last.max(t.last_answer.unwrap_or(start));
        }
        Ok(totals)
    }
}

/// A `dtenge up` the bench started: a temporary data directory, a port the kernel picked.
pub(crate) struct ChildServer {
    pub(crate) child: Child,
    pub(crate) base: String,
    /// The API credentials `up` made for the sandbox: `<data>/credentials`.
    pub(crate) credentials: PathBuf,
    log: PathBuf,
    /// Removed after the child is gone (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
    reaped: bool,
}

impl ChildServer {
    pub(crate) fn start(binary: &std::path::Path) -> Result<ChildServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let log = dir.path().join("up.log");
        let data = dir.path().join("data");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let child = std::process::Command::new(binary)
            .arg("up")
            .arg("--data")
            .arg(&data)
            // Port 0: the kernel picks a free one, and `up` prints it; no race with another
            // process for a port chosen beforehand.
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {} up: {e}", binary.display()))?;
        let credentials = data.join(CREDENTIALS_DIR);
        let mut server = ChildServer { child, base: String::new(), credentials, log, _dir: dir, reaped: false };
        let started = Instant::now();
        loop {
            let printed = std::fs::read_to_string(&server.log).unwrap_or_default();
            let address =
                printed.lines().find_map(|l| l.trim().strip_prefix("REST API")).map(|rest| rest.trim().to_string());
            if let Some(base) = address {
                server.base = base;
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                server.reaped = true;
                return Err(format!("`dtenge up` exited with {status} before listening:\n{printed}"));
            }
            if started.elapsed() > CHILD_START_MAX {
                return Err(format!(
                    "`dtenge up` printed no address within {} s:\n{printed}",
                    CHILD_START_MAX.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (a graceful stop: requests in flight answered, stores closed), then wait.
    pub(crate) fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
        if self.reaped {
            return Err("`dtenge up` was already gone".into());
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|_| "a pid out of range")?;
        // SAFETY: `kill` only sends a signal; `pid` is our child, not yet reaped (only this
        // function and `Drop` reap it, and both mark it), so it cannot be another process.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!("kill(SIGTERM): {}", std::io::Error::last_os_error()));
        }
        let started = Instant::now();
        while started.elapsed() < CHILD_STOP_MAX {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for `dtenge up`: {e}")),
            }
        }
        Err(format!("`dtenge up` did not stop within {} s of SIGTERM", CHILD_STOP_MAX.as_secs()))
    }

    /// The end of what `up` printed, for an error message.
    pub(crate) fn log_tail(&self) -> String {
        let printed = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = printed.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // An error path that did not stop it: no server left behind.
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The report as people read it.
pub fn render(report: &HttpReport) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    out.push_str(&report.machine.line());
    out.push_str(&format!(
        "server             {}{}\n",
        report.api,
        match report.server_pid {
            Some(pid) => format!(
                " (`dtenge up` started by the bench, pid {pid}, temporary data; stopped with SIGTERM: {})",
                report.server_exit.as_deref().unwrap_or("?")
            ),
            None => " (given with --api)".to_string(),
        }
    ));
    out.push_str(&format!(
        "seeded             {} accounts per kind in {:.1} s; {} signed transfers prepared in {:.1} s (inputs fetched, signed, encoded)\n",
        report.config.accounts, report.seed_seconds, report.signed_prepared, report.prepare_seconds
    ));
    for p in &report.phases {
        let errors: u64 = p.errors.values().sum();
        if p.warmup {
            // Not measured: only whether it failed, and its worst wait.
            out.push_str(&format!(
                "{:<18} {:.1} s unmeasured: {} ok of {} sent{}; slowest {:.2} ms at {:.2} s\n",
                format!("{} warm-up", p.kind.name()),
                p.duration_s,
                p.ok,
                p.sent,
                if errors == 0 { String::new() } else { format!(", ERRORS {errors}: {:?}", p.errors) },
                ms(p.latency.max_us),
                p.max_latency_at_s
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<18} {}, {} connections, {:.1} s: {:.0} ok/s ({} ok of {} sent; {})\n",
            p.kind.name(),
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
        if p.pool_exhausted {
            out.push_str("                   the requests (--payments) ran out before the window ended\n");
        }
        if p.unsent > 0 {
            out.push_str(&format!(
                "                   {} requests due were never sent: the server fell behind\n",
                p.unsent
            ));
        }
        out.push_str(&format!(
            "                   latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms at {:.2} s ({})\n",
            ms(p.latency.p50_us),
            ms(p.latency.p99_us),
            ms(p.latency.p999_us),
            ms(p.latency.max_us),
            p.max_latency_at_s,
            if p.offered_per_s.is_some() { "from each request's due time" } else { "from each send" }
        ));
        out.push_str(&format!(
            "                   cpu: bench {:.2} cores ({:.1} µs per request){}; machine {:.0}% busy, {:.1}% stolen\n",
            p.cpu.bench_cores,
            p.cpu.bench_us_per_request,
            match (p.cpu.server_cores, p.cpu.server_us_per_ok) {
                (Some(cores), Some(us)) => format!(", server {cores:.2} cores ({us:.0} µs per ok request)"),
                _ => String::new(),
            },
            p.cpu.machine_busy * 100.0,
            p.cpu.machine_steal * 100.0
        ));
    }
    out.push_str(&crate::checks_line(report.ok, "no errors, reconciled, server stopped cleanly", &report.problems));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payees_are_at_another_bank_and_in_range() {
        for accounts in [6, 7, 8, 100, 1001] {
            for payer in 0..accounts {
                for r in 0..40u64 {
                    let payee = payee_of(payer, accounts, mix(r));
                    assert!(payee < accounts, "payee {payee} of {accounts}");
                    assert_ne!(payee % 3, payer % 3, "same bank");
                }
            }
        }
    }

    #[test]
    fn the_open_loop_counts_exactly_the_requests_due_in_the_window() {
        let start = Instant::now();
        for (rate, window_ms, due) in [(1_000, 2_000, 2_000), (3, 1_000, 3), (15_000, 10_000, 150_000), (7, 500, 4)] {
            let pace = Pace::new(start, Duration::from_millis(window_ms), Some(rate));
            assert_eq!(pace.due_in_window(), due, "{rate}/s for {window_ms} ms");
            // The last one counted is due inside the window, the next one not.
            assert!(pace.due(due - 1).is_some_and(|d| d < pace.end));
            assert!(pace.due(due).is_some_and(|d| d >= pace.end));
        }
        let closed = Pace::new(start, Duration::from_secs(1), None);
        assert_eq!((closed.due(5), closed.due_in_window()), (None, 0));
    }

    #[test]
    fn a_call_of_many_payments_is_due_when_its_last_payment_is() {
        let start = Instant::now();
        let single = Pace::new(start, Duration::from_secs(1), Some(1_000));
        let batched = single.batched(10);
        // Payments stay at 1,000/s: call 0 carries payments 0-9, due with payment 9.
        assert_eq!(batched.request_due(0), single.due(9));
        assert_eq!(batched.request_due(3), single.due(39));
        assert_eq!(batched.payment_due(3, 0), single.due(30));
        assert_eq!(batched.due_in_window(), single.due_in_window(), "the window counts payments");
        // Payments due before the end whose call would leave after it are not due.
        let uneven = Pace::new(start, Duration::from_secs(1), Some(1_005)).batched(10);
        assert_eq!(uneven.due_in_window(), 1_000);
        assert!(uneven.request_due(99).is_some_and(|d| d < uneven.end));
        assert!(uneven.request_due(100).is_some_and(|d| d >= uneven.end));
        // One payment per call: the call is due with its payment.
        assert_eq!(single.request_due(7), single.due(7));
        let closed = Pace::new(start, Duration::from_secs(1), None).batched(10);
        assert_eq!(closed.request_due(0), None);
    }

    #[test]
    fn custodial_requests_pay_round_robin_and_stop_at_the_cap() {
        let holders: Vec<(usize, String)> = (0..9).map(|n| (n % 3, format!("iin{n}"))).collect();
        let work = Work::Custodial {
            holders,
            uris: bank_uris("transfers").unwrap(),
            seed: 1,
            cap: Some(20),
            amount_tiyn: |_| CUSTODIAL_TRANSFER_TIYN,
        };
        assert_eq!(work.available(), 20);
        let request = work.request(4).unwrap();
        assert_eq!(request.uri.path(), "/v1/nodes/tulpar/transfers");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["from"], "iin4");
        assert_ne!(body["to"]["bank"], "tulpar");
        assert_eq!(body["amount_tiyn"], 100);
    }

    #[test]
    fn iins_of_a_run_are_valid_and_distinct() {
        let run = RunIds::new(1);
        let a = run.iin(Kind::Custodial, 0).unwrap();
        let b = run.iin(Kind::Custodial, 1).unwrap();
        let c = run.iin(Kind::Signed, 0).unwrap();
        assert!(a != b && a != c && b != c);
        assert_eq!(a.len(), 12);
    }
}
