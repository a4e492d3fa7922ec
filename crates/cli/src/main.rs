//! `dtenge`: one binary for the whole platform.

/// mimalloc instead of glibc's malloc: the payment path allocates and frees many small
/// buffers on several threads (encodings, hashes, storage keys), and glibc's allocator showed
/// as about 13% of the CPU in a profile of `dtenge bench`.
///
/// Built without transparent huge pages (libmimalloc-sys's `no_thp`, in Cargo.toml): with
/// them, `dtenge bench --cluster` spent a fifth of the machine zeroing 2 MiB pages faulted in
/// again and again (ARCHITECTURE.md, "Memory allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h` of mimalloc 2 and 3, as built by
/// libmimalloc-sys 0.1.49, which exports no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory instead of giving it back to the kernel 10 ms later (mimalloc's default).
///
/// Why: the platform's working set is steady (its maps, batches and buffers come and go at
/// the same sizes), so a purged page is soon faulted in and zeroed again, and on a virtual
/// machine whose balloon reports free pages to the host (this project's Firecracker VMs) the
/// host must back it afresh as well. Under `dtenge bench --rate 25000` those faults were
/// stalls of 20-100 ms in which both stages sat in `clear_page_erms` under mimalloc's page
/// allocation: p99 95-177 ms with purging, 3-5 ms without. The price is a resident size that
/// stays at its peak (about 15% more at the benchmark's peak), as TigerBeetle's, which
/// allocates everything at start, does by design.
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores the value in mimalloc's option table; any value is
    // valid for this option (-1 turns purging off).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Every file and folder this process creates is its owner's alone (0600, 0700): a data
/// directory holds the nodes' keys and the custodial clients' seeds, and a CA's folder its
/// root key (issue 19). Set before anything is created.
fn private_files() {
    // SAFETY: `umask` only sets this process's file-mode creation mask; it takes any value
    // and cannot fail.
    unsafe { libc::umask(0o077) };
}

/// Open files this process asks for: the gateway's 1,024 connections
/// (`dtenge_api::serving::Limits::GATEWAY`), the peers', the stores' files, with room.
const OPEN_FILES_WANTED: u64 = 65_536;

/// Raise this process's soft limit on open files towards [`OPEN_FILES_WANTED`], as far as the
/// hard limit allows. A distribution's default soft limit of 1,024 let about 1,100 idle
/// connects exhaust the descriptors of an older build, after which nothing answered (issue 19);
/// the gateway's cap on connections is what bounds them now, below this limit.
fn more_open_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit` writes only the struct it is given, which lives on this frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted: libc::rlim_t = OPEN_FILES_WANTED.min(limit.rlim_max);
    if wanted > limit.rlim_cur {
        let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max };
        // SAFETY: `setrlimit` reads only the struct it is given; a refusal leaves the limit
        // as it was, which is no worse.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
}

/// Most entries [`lock_down`] walks: a data directory holds a few hundred files; far more is
/// not one of ours.
const LOCK_DOWN_ENTRIES_MAX: usize = 1_000_000;

/// Make `dir` and everything under it its owner's alone (folders 0700, files 0600), for a
/// directory an older build created with the default modes. Nothing to do if it does not
/// exist yet ([`private_files`] covers what is created from now on).
fn lock_down(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |path: &Path, e: std::io::Error| format!("cannot restrict {}: {e}", path.display());
    if !dir.exists() {
        return Ok(());
    }
    let mut pending = vec![dir.to_path_buf()];
    let mut walked = 0usize;
    while let Some(path) = pending.pop() {
        walked += 1;
        if walked > LOCK_DOWN_ENTRIES_MAX {
            return Err(format!("{} holds more than {LOCK_DOWN_ENTRIES_MAX} entries", dir.display()));
        }
        // Not followed: a link's target is not ours to change.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| failed(&path, e))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = if meta.is_dir() { 0o700 } else { 0o600 };
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| failed(&path, e))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| failed(&path, e))? {
                pending.push(entry.map_err(|e| failed(&path, e))?.path());
            }
        }
    }
    Ok(())
}

mod ca;
mod cluster;
mod running;

use clap::{Parser, Subcommand};
use dtenge_api::platform::{Idem, Platform as Roles};
use dtenge_api::serving::{Hosts, Limits};
use dtenge_api::types::AmountRequest;
use dtenge_core::calendar::Date;
use dtenge_core::money::Amount;
use dtenge_env::{Clock, Entropy, ManualClock, SystemClock};
use dtenge_scenarios::{Client, Platform, World};
use dtenge_wire::RoleId;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "dtenge",
    version,
    about = "The Digital Tenge platform: NBK, bank and Treasury nodes, notary, ABS, ID center and REST API in one process."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole network and its REST API (Ctrl-C or SIGTERM stops it gracefully; data
    /// persists).
    Up {
        /// Where the database lives.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// Address of the REST API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The platform's clock; `manual` makes a sandbox (expiries follow its advances).
        #[arg(long, value_enum, default_value_t = ClockKind::System)]
        clock: ClockKind,
        /// Serve HTTPS (TLS 1.3): the gateway's certificate from the sandbox's root (for
        /// localhost, 127.0.0.1 and every --tls-name), and API clients may present their own
        /// certificate instead of an access token (mutual TLS). Needed to listen beyond loopback.
        #[arg(long)]
        tls: bool,
        /// A DNS name or IP address the gateway is reached at, put in its certificate; repeat
        /// for several.
        #[arg(long = "tls-name", value_name = "NAME", requires = "tls")]
        tls_names: Vec<String>,
        /// Every participant its own process over mutual TLS instead, as `dtenge cluster
        /// --dir <data>/cluster` does (their own APIs for the banks' and the NBK's systems; the
        /// consoles and the rest of the REST API stay with the one-process `up`).
        #[arg(long, conflicts_with_all = ["clock", "tls", "tls_names", "listen"])]
        processes: bool,
    },
    /// Run every lifecycle sub-scenario of the specification against a fresh network and
    /// print a report; exits non-zero if any check fails.
    Demo {
        /// Keep the demo's database here instead of a temporary directory.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Check that DT in circulation equals the ABS DT liability (and that nodes and notary
    /// agree), of the platform whose data is in `--data` (default `./data`): the `up` running
    /// on it, asked at the address it serves, or its files when none runs. With `--api`
    /// instead: the platform that answers there.
    Reconcile {
        /// The platform that answers here, as an NBK operator with `--credentials`.
        #[arg(long, conflicts_with = "data")]
        api: Option<String>,
        /// API credentials for `--api` (an NBK operator's key and certificate among them).
        #[arg(long, default_value = "./data/credentials", requires = "api")]
        credentials: PathBuf,
        /// The platform's data directory (default `./data`): this platform is checked, never
        /// another that answers on some port.
        #[arg(long)]
        data: Option<PathBuf>,
        /// A network of processes instead (`dtenge cluster --dir DIR`): once nothing is
        /// outstanding anywhere, the banks' DT = central's DT liability and the banks' tokens =
        /// the notary's unspent tokens, from every participant's /metrics.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["api", "data"])]
        cluster: Option<PathBuf>,
    },
    /// Measure the payment path: seed accounts and tokens, send client-signed 2-in-2-out
    /// transfers (plus injected double spends and bad signatures), report throughput,
    /// latency percentiles, rejections by code and memory. With `--http`: drive a running
    /// `dtenge up` through its REST API with many concurrent HTTP connections instead. With
    /// `--cluster DIR`: send client-signed transfers through the banks' own APIs of a cluster
    /// (`dtenge cluster`: every participant its own process, over mutual TLS).
    // --http and --cluster drive a platform from the outside: the in-process flags conflict
    // with both, the connection and phase flags need one of them.
    #[command(group(clap::ArgGroup::new("outside").args(["http", "cluster", "soak"])))]
    Bench {
        /// Accounts to seed (clients keeping their own keys, spread over three banks);
        /// default 100,000. With --http: accounts per kind, default 10,000, at least one per
        /// connection.
        #[arg(long)]
        accounts: Option<usize>,
        /// Unspent tokens to seed (100.00 KZT each).
        #[arg(long, default_value_t = 1_000_000, conflicts_with = "outside")]
        tokens: usize,
        /// Valid payments to send; each spends two tokens (default 200,000). With --http: most
        /// requests per kind, warm-up included; the signed transfers are all signed before the
        /// clock, so this is their pool (default: rate x (warm-up + duration) with --rate, else
        /// 200,000).
        #[arg(long)]
        payments: Option<usize>,
        /// Offered payments per second (open loop). Without it: closed loop, saturation.
        #[arg(long)]
        rate: Option<u64>,
        /// Closed loop: payments outstanding at once (the pipeline batches what is waiting).
        #[arg(long, default_value_t = 4_096, conflicts_with = "outside")]
        in_flight: usize,
        /// Client connections of the PostgreSQL baseline.
        #[arg(long, default_value_t = 64, conflicts_with = "outside")]
        threads: usize,
        /// Injected double spends, percent of the payments.
        #[arg(long, default_value_t = 1.0, conflicts_with = "outside")]
        double_spend_percent: f64,
        /// Injected invalid signatures, percent of the payments.
        #[arg(long, default_value_t = 1.0, conflicts_with = "outside")]
        invalid_signature_percent: f64,
        /// Seed of keys and the payment pattern.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Keep the database here (default: a temporary directory).
        #[arg(long, conflicts_with = "outside")]
        data: Option<PathBuf>,
        /// Also run a peer baseline with the same load: `postgres` (balances in rows updated
        /// under SELECT … FOR UPDATE, one durable transaction per payment), and print the ratios.
        #[arg(long, value_parser = ["postgres"], conflicts_with = "outside")]
        baseline: Option<String>,
        /// PostgreSQL for the baseline; by default `scripts/postgres.sh` installs and starts one.
        #[arg(long, conflicts_with = "outside")]
        postgres_url: Option<String>,
        /// After the main run, time this many plain custodial, held (hold + release) and
        /// marked payments one at a time and print their cost; 0 skips it.
        #[arg(long, default_value_t = 1_000, conflicts_with = "outside")]
        programmable: usize,
        /// Poll the monitoring totals this often (ms) during the timed phase, as the
        /// operator's dashboard does.
        #[arg(long)]
        monitor_every_ms: Option<u64>,
        /// The roles (the default; kept so that earlier commands still run).
        #[arg(long, conflicts_with = "outside", hide = true)]
        roles: bool,
        /// Load a running platform through its REST API (HTTP/1.1 keep-alive connections, one
        /// request in flight on each): custodial transfers and/or client-signed transactions.
        #[arg(long)]
        http: bool,
        /// --http: the platform's REST API. Without it, a `dtenge up` is started on a
        /// temporary data directory and a free port, and stopped with SIGTERM at the end.
        #[arg(long, requires = "outside", conflicts_with = "cluster")]
        api: Option<String>,
        /// --http with --api: the API credentials the bench signs in with, `api-*.key.pem`
        /// beside `api-*.crt.pem` (each bank's systems and an NBK operator: a sandbox's
        /// `<data>/credentials`, or what `dtenge ca issue --api-client` wrote). Without
        /// --api, the bench uses those its own `dtenge up` made.
        #[arg(long, default_value = "./data/credentials", requires = "api")]
        credentials: PathBuf,
        /// --http: what to send, each measured in its own timed phase.
        #[arg(long, value_enum, default_value_t = HttpKind::Both, requires = "http")]
        kind: HttpKind,
        /// --http, --cluster: HTTP connections, each with one request in flight (--cluster:
        /// TLS, spread over the three banks).
        #[arg(long, default_value_t = 64, requires = "outside")]
        connections: usize,
        /// --http, --cluster: seconds of each timed phase.
        #[arg(long, default_value_t = 10.0, requires = "outside")]
        duration_s: f64,
        /// --http: seconds of the same load before each timed phase, not measured (a fresh
        /// server's first payments wait for first touches of the seeded state), default 1;
        /// --soak: before the first interval, reported apart, default 30; 0 skips it.
        #[arg(long, requires = "outside")]
        warmup_s: Option<f64>,
        /// Hold a platform under a steady load for DURATION (`90s`, `30m`, `2h`) through its
        /// REST API, as `--http` does, and report each interval: custodial transfers of retail
        /// amounts at a fixed rate (--rate, default 5,000/s) between --accounts (default
        /// 100,000) accounts, salary registries beside them, and the platform's CPU per
        /// payment, resident memory, disk use and unspent tokens. Fails if a request fails,
        /// the platform does not reconcile, the last interval's CPU per payment exceeds the
        /// first's by more than --cpu-growth-max, or memory exceeds the stated formula.
        #[arg(long, value_name = "DURATION")]
        soak: Option<String>,
        /// --soak: seconds per reported interval.
        #[arg(long, default_value_t = 60.0, requires = "soak")]
        interval_s: f64,
        /// --soak: salary registry lines paid per second (a registry every 10 s).
        #[arg(long, default_value_t = 100, requires = "soak")]
        salary_lines_per_s: u64,
        /// --soak: the last interval's server CPU per payment over the first's, at most.
        #[arg(long, default_value_t = 1.25, requires = "soak")]
        cpu_growth_max: f64,
        /// --soak: also draw throughput and memory over time, as SVG, into this file.
        #[arg(long, requires = "soak")]
        plot: Option<PathBuf>,
        /// Load a cluster (`dtenge cluster --dir DIR`) through the banks' own APIs: signed
        /// 2-in-2-out transfers, each to a client of another bank, so every payment crosses
        /// processes; reconciled across the processes from their /metrics at the end. If no
        /// cluster answers at DIR, `dtenge cluster --dir DIR` is started on free ports and
        /// stopped at the end. --accounts: default 10,000; --payments: the signed pool.
        #[arg(long, conflicts_with = "http")]
        cluster: Option<PathBuf>,
        /// --cluster: transfers per call. 1 posts each on its own; more post them together
        /// (`POST /v1/nodes/{bank}/transactions/batch`, each answered by itself), as a bank's
        /// processing centre forwards its clients' payments.
        #[arg(long, default_value_t = 1, requires = "cluster")]
        per_call: usize,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run the deterministic simulator: the whole network under injected faults (crashes and
    /// restarts, torn writes, lost, duplicated, delayed and reordered messages), checking the
    /// invariants after every run. A failing seed replays exactly with `--seed N --trace`.
    Sim {
        /// How many seeds to run, starting at `--seed`.
        #[arg(long, default_value_t = 1_000)]
        seeds: u64,
        /// The first seed (with `--trace`, the only one).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Logical requests per run.
        #[arg(long, default_value_t = 60)]
        requests: u32,
        /// Clients per run.
        #[arg(long, default_value_t = 6)]
        clients: usize,
        /// Print every event of the run of `--seed`, then its report.
        #[arg(long)]
        trace: bool,
        /// The roles (the default; kept so that earlier commands still run).
        #[arg(long, hide = true)]
        roles: bool,
    },
    /// Print the monitoring totals of a running platform.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// API credentials (an NBK operator's key and certificate among them).
        #[arg(long, default_value = "./data/credentials")]
        credentials: PathBuf,
    },
    /// The network's certificate authority, with the NBK as root: create it, certify
    /// participants (central, notary, oracle, directory, banks), revoke certificates, renew
    /// the revocation list, list what was issued.
    /// Run one participant as its own process (its own data directory, key and certificate),
    /// talking to the others over mutual TLS: central, notary, oracle, directory or
    /// bank:<id>. The configuration file is documented in `docs/OPERATIONS.md`; an invalid
    /// one is refused at start with what is wrong.
    Run {
        #[arg(long)]
        role: RoleId,
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the whole network on this machine with every participant its own process (the
    /// directory, the notary, central, the oracle, three banks and the Treasury), over the real
    /// network between them; laid out under --dir on the first start (the NBK's root and every
    /// participant's key, certificate and configuration). A participant that stops is started
    /// again; SIGINT or SIGTERM stops them all.
    Cluster {
        #[arg(long, default_value = "./cluster")]
        dir: PathBuf,
        /// Participant i listens on base+i (mutual TLS) and serves /health and /metrics on
        /// base+100+i.
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// Shard the notary: its three replicas coordinate this many shards of three replicas
        /// each, every one its own process (on the first start, when the cluster is laid out).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=16))]
        shards: u8,
    },
    /// A participant's key in the vault of its data directory (an HSM when $DTENGE_HSM_MODULE
    /// names one, with $DTENGE_HSM_TOKEN and $DTENGE_HSM_PIN; else the encrypted key store under
    /// $DTENGE_KEY_PASSPHRASE), made there on first use; prints its public key and address: a
    /// node key to certify with `dtenge ca issue --public-key`, or with `--secret` a bank's
    /// own-account key (`--label own --secret`), whose address central's configuration names.
    /// With `--out` instead: a key in a PEM file, for a key several vaults import (the
    /// notary's). Refused while the participant runs (it holds its vault).
    Key {
        /// The participant's data directory (its configuration's `data`).
        #[arg(long, required_unless_present = "out")]
        data: Option<PathBuf>,
        /// The key's label in the vault: `node` (the participant's), `notary` (the key every
        /// notary replica signs certificates with), `own` (a bank's own account).
        #[arg(long, default_value = "node")]
        label: String,
        /// Put this PKCS#8 PEM key in the vault under the label (destroy the file once every
        /// vault that needs it has it).
        #[arg(long, requires = "data", conflicts_with = "rotate")]
        import: Option<PathBuf>,
        /// The label names a secret of the vault used as an account's key (`own_key =
        /// "vault:<label>"`), not a node key.
        #[arg(long, requires = "data", conflicts_with = "rotate")]
        secret: bool,
        /// `DIR` is `dtenge up`'s sandbox: without $DTENGE_KEY_PASSPHRASE, its passphrase is
        /// the user's sandbox one (`~/.config/dtenge/sandbox-passphrase`).
        #[arg(long, requires = "data")]
        sandbox: bool,
        /// Replace the node key with a new one, the old one retired in the vault
        /// (docs/OPERATIONS.md, "Rotating a node key").
        #[arg(long, requires = "data")]
        rotate: bool,
        /// Write a new key to this PEM file (owner-only) instead of a vault.
        #[arg(long, conflicts_with = "data")]
        out: Option<PathBuf>,
    },
    /// The audit trail of the consoles and the REST API (`<data>/audit.db`).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    Ca {
        /// The certificate authority's directory.
        #[arg(long, default_value = "./ca", global = true)]
        dir: PathBuf,
        #[command(subcommand)]
        command: ca::CaCommand,
    },
    /// Print an access token of the REST API for one of its clients (OAuth 2.0 client
    /// credentials: an assertion signed with the client's key from `--credentials`), for curl
    /// and other tools: `curl -H "Authorization: Bearer $(dtenge token --as bank:steppe)"`.
    Token {
        /// The API client: bank:<node> or operator:<name>.
        #[arg(long = "as", value_name = "CLIENT")]
        client: dtenge_pki::ApiClient,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        #[arg(long, default_value = "./data/credentials")]
        credentials: PathBuf,
    },
    /// Call the REST API: `dtenge call POST /v1/nodes/steppe/accounts '{"kind":...}'`.
    /// Mutating calls get a fresh idempotency key unless `--key` is given. The call is made as
    /// the API client the route is for (`bank:steppe` for `/v1/nodes/steppe/...`, the operator
    /// for `/v1/operator/...`), with its credential from `--credentials`.
    Call {
        method: String,
        path: String,
        body: Option<String>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        #[arg(long)]
        key: Option<String>,
        /// API credentials: `api-*.key.pem` beside `api-*.crt.pem` (a sandbox's
        /// `<data>/credentials`, or what `dtenge ca issue --api-client` wrote).
        #[arg(long, default_value = "./data/credentials")]
        credentials: PathBuf,
    },
}

/// What `dtenge bench --http` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum HttpKind {
    /// `POST /v1/nodes/{node}/transfers` between custodial accounts.
    Custodial,
    /// `POST /v1/nodes/{node}/transactions`, transfers the bench's clients signed.
    Signed,
    /// Custodial, then signed.
    Both,
}

/// The clock `dtenge up` runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ClockKind {
    /// The operating system's time; `POST /v1/clock/advance` is refused.
    System,
    /// Starts at the system time, then moves only when `POST /v1/clock/advance` says so.
    Manual,
}

/// Logs go to standard error as JSON lines, one event each (level, time, target, message and
/// fields), for a log collector; standard output keeps what a person reads. `RUST_LOG` picks
/// the levels (default `info`).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second subscriber cannot be installed; there is none before this one.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

fn main() -> ExitCode {
    private_files();
    more_open_files();
    keep_freed_memory();
    init_logs();
    let cli = Cli::parse();
    // What an older build left readable to others is made the owner's alone before use.
    let kept = match &cli.command {
        Command::Up { data, .. } => Some(data.clone()),
        Command::Cluster { dir, .. } => Some(dir.clone()),
        // A participant's data directory is its configuration's to name (`cluster::run`).
        _ => None,
    };
    if let Some(Err(e)) = kept.as_deref().map(lock_down) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Up { data, processes: true, .. } => cluster::cluster(&data.join("cluster"), 7100, 0),
        Command::Up { data, listen, clock, tls, tls_names, processes: false } => {
            up(data, listen, clock, tls.then_some(tls_names))
        }
        Command::Demo { data } => demo(data),
        Command::Reconcile { cluster: Some(dir), .. } => cluster::reconcile(&dir),
        Command::Reconcile { api: Some(api), credentials, .. } => reconcile_at(&api, &credentials),
        Command::Reconcile { data, .. } => reconcile_data(&data.unwrap_or_else(|| PathBuf::from("./data"))),
        Command::Status { api, credentials } => status(&api, &credentials),
        Command::Token { client, api, credentials } => Client::with_credentials(&api, &credentials)
            .and_then(|c| c.token(&client).map_err(|e| e.to_string()))
            .map(|token| {
                println!("{token}");
                ExitCode::SUCCESS
            }),
        // The in-process flags conflict with --http, --cluster and --soak (clap refuses them
        // together).
        Command::Bench {
            accounts,
            rate,
            seed,
            soak: Some(duration),
            api,
            credentials,
            connections,
            warmup_s,
            interval_s,
            salary_lines_per_s,
            cpu_growth_max,
            plot,
            json,
            ..
        } => {
            let defaults = dtenge_bench::soak::SoakConfig::default();
            let duration_s = match parse_duration_s(&duration) {
                Ok(s) => s,
                Err(e) => return finish(Err(e)),
            };
            bench_soak(
                dtenge_bench::soak::SoakConfig {
                    binary: match own_binary(&api) {
                        Ok(binary) => binary,
                        Err(e) => return finish(Err(e)),
                    },
                    api,
                    credentials,
                    duration_s,
                    interval_s: interval_s.min(duration_s),
                    warmup_s: warmup_s.unwrap_or(defaults.warmup_s),
                    rate_per_s: rate.unwrap_or(defaults.rate_per_s),
                    accounts: accounts.unwrap_or(defaults.accounts),
                    connections,
                    salary_lines_per_s,
                    cpu_growth_max,
                    seed,
                },
                plot.as_deref(),
                json,
            )
        }
        Command::Bench {
            accounts,
            payments,
            rate,
            seed,
            cluster: Some(dir),
            connections,
            duration_s,
            warmup_s,
            per_call,
            json,
            ..
        } => bench_cluster(
            dtenge_bench::cluster::ClusterConfig {
                dir,
                binary: match std::env::current_exe() {
                    Ok(path) => Some(path),
                    Err(e) => return finish(Err(format!("cannot find the dtenge binary to start `cluster`: {e}"))),
                },
                connections,
                rate_per_s: rate,
                duration_s,
                warmup_s: warmup_s.unwrap_or(dtenge_bench::cluster::ClusterConfig::default().warmup_s),
                accounts: accounts.unwrap_or(dtenge_bench::cluster::ClusterConfig::default().accounts),
                payments,
                per_call,
                seed,
            },
            json,
        ),
        Command::Bench {
            accounts,
            payments,
            rate,
            seed,
            http,
            api,
            credentials,
            kind,
            connections,
            duration_s,
            warmup_s,
            json,
            ..
        } if http => bench_http(
            dtenge_bench::http::HttpConfig {
                binary: match own_binary(&api) {
                    Ok(binary) => binary,
                    Err(e) => return finish(Err(e)),
                },
                api,
                credentials,
                kinds: match kind {
                    HttpKind::Custodial => vec![dtenge_bench::http::Kind::Custodial],
                    HttpKind::Signed => vec![dtenge_bench::http::Kind::Signed],
                    HttpKind::Both => vec![dtenge_bench::http::Kind::Custodial, dtenge_bench::http::Kind::Signed],
                },
                connections,
                rate_per_s: rate,
                duration_s,
                warmup_s: warmup_s.unwrap_or(dtenge_bench::http::HttpConfig::default().warmup_s),
                accounts: accounts.unwrap_or(dtenge_bench::http::HttpConfig::default().accounts),
                payments,
                seed,
            },
            json,
        ),
        Command::Bench {
            accounts,
            tokens,
            payments,
            rate,
            in_flight,
            threads,
            double_spend_percent,
            invalid_signature_percent,
            seed,
            data,
            baseline,
            postgres_url,
            programmable,
            monitor_every_ms,
            json,
            ..
        } => bench(
            dtenge_bench::Config {
                accounts: accounts.unwrap_or(dtenge_bench::Config::default().accounts),
                tokens,
                payments: payments.unwrap_or(dtenge_bench::Config::default().payments),
                rate_per_s: rate,
                in_flight,
                threads,
                double_spend_percent,
                invalid_signature_percent,
                seed,
                data,
                baseline_postgres_url: match (baseline, postgres_url) {
                    (None, _) => None,
                    (Some(_), Some(url)) => Some(url),
                    (Some(_), None) => match start_postgres() {
                        Ok(url) => Some(url),
                        Err(e) => return finish(Err(e)),
                    },
                },
                programmable_ops: programmable,
                monitor_every_ms,
            },
            json,
        ),
        Command::Sim { seeds, seed, requests, clients, trace, .. } => {
            let config = dtenge_sim::roles::RolesConfig { payments: requests, clients: clients.clamp(2, 64) };
            sim_roles(seeds, seed, &config, trace)
        }
        Command::Ca { dir, command } => ca::run(&dir, command),
        Command::Run { role, config } => cluster::run(&role, &config),
        Command::Cluster { dir, base_port, shards } => cluster::cluster(&dir, base_port, shards),
        Command::Audit { command: AuditCommand::Verify { data, trust } } => audit_verify(&data, &trust),
        Command::Key { data, label, import, secret, sandbox, rotate, out } => match (out, data) {
            (Some(out), _) => cluster::new_key(&out),
            (None, Some(data)) => {
                let what = match (import, secret, rotate) {
                    (Some(file), true, _) => cluster::VaultKey::ImportSecret(file),
                    (Some(file), false, _) => cluster::VaultKey::Import(file),
                    (None, true, _) => cluster::VaultKey::Secret,
                    (None, false, true) => cluster::VaultKey::Rotate,
                    (None, false, false) => cluster::VaultKey::Node,
                };
                cluster::vault_key(&data, &label, what, sandbox)
            }
            (None, None) => Err("--data or --out".into()),
        },
        Command::Call { method, path, body, api, key, credentials } => {
            call(&api, &credentials, &method, &path, body.as_deref(), key.as_deref())
        }
    };
    finish(result)
}

/// `dtenge sim --roles`: the roles as separate simulated processes (see `dtenge_sim::roles`).
fn sim_roles(seeds: u64, first: u64, config: &dtenge_sim::roles::RolesConfig, trace: bool) -> Result<ExitCode, String> {
    let count = if trace { 1 } else { seeds };
    let started = std::time::Instant::now();
    let (mut committed, mut redeemed, mut restarts, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let (mut held, mut released) = (0u64, 0u64);
    let (mut bought, mut taps) = (0u64, 0u64);
    for seed in first..first.saturating_add(count) {
        let report = match dtenge_sim::roles::run_roles(seed, config) {
            Ok(report) => report,
            Err(failure) => {
                let shown = if trace { 0 } else { failure.trace.len().saturating_sub(60) };
                eprintln!("{}", failure.trace[shown..].join("\n"));
                return Err(format!("invariant broken: {failure}"));
            }
        };
        if trace {
            println!("{}", report.trace.join("\n"));
        }
        committed += u64::from(report.payments_committed);
        redeemed += u64::from(report.redemptions);
        held += u64::from(report.holds);
        released += u64::from(report.confirmations);
        bought += u64::from(report.card_purchases);
        taps += u64::from(report.voucher_taps_paid);
        restarts += u64::from(report.restarts);
        lost += report.messages_lost;
    }
    println!(
        "{count} seeds from {first} passed in {:.1} s: {committed} payments committed, {redeemed} redemptions, {held} holds, {released} events confirmed and released, {bought} card purchases, {taps} voucher taps paid, {restarts} role restarts, {lost} messages lost; every invariant held",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn finish(result: Result<ExitCode, String>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Install (when missing) and start the baseline's PostgreSQL with the project's script.
fn start_postgres() -> Result<String, String> {
    let script = std::path::Path::new("scripts/postgres.sh");
    if !script.exists() {
        return Err("run from the repository root, or give --postgres-url".into());
    }
    let output = std::process::Command::new("bash")
        .arg(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/postgres.sh: {e}"))?;
    if !output.status.success() {
        return Err("scripts/postgres.sh failed".into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Bank money each node's correspondent account starts with on a new network, so that banks
/// can convert to DT right away: 10 billion tenge.
const GENESIS_CORRESPONDENT_TIYN: u64 = 10_000_000_000_00;

/// What stops `up`: Ctrl-C (SIGINT) or SIGTERM (systemd, Docker, Kubernetes, `kill`). Both are
/// registered when this is made, before the API accepts anything, so a stop sent as soon as
/// the API answers is never the default action (an immediate kill) but a graceful stop.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Register the handlers; inside the runtime (`Runtime::enter`).
    fn register() -> Result<StopSignals, String> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
            let terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
            Ok(StopSignals { interrupt, terminate })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Wait for the first of them; its name.
    async fn first(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// `tls`: serve HTTPS, with these extra names in the gateway's certificate.
fn up(data: PathBuf, listen: SocketAddr, clock_kind: ClockKind, tls: Option<Vec<String>>) -> Result<ExitCode, String> {
    // Access tokens and the consoles' sessions travel in the clear over plain HTTP: fine on
    // this machine's loopback, never across a network.
    if !listen.ip().is_loopback() && tls.is_none() {
        return Err(format!(
            "refusing to listen on {listen} without TLS: beyond loopback, access tokens and the consoles' \
             sessions would travel in the clear; add --tls (and --tls-name <the name clients use>)"
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let signals = {
        let _entered = runtime.enter();
        StopSignals::register()?
    };
    let clock: Arc<dyn Clock> = match clock_kind {
        ClockKind::System => Arc::new(SystemClock),
        ClockKind::Manual => Arc::new(ManualClock::new(SystemClock.now_ms())),
    };
    // Refused at once when another `up` runs on the same data; let go when this one ends.
    let running = running::take(&data)?;
    let roles = Arc::new(Roles::open(&data, clock, Entropy::from_os()).map_err(|e| e.to_string())?);
    let amount = Amount::from_tiyn(GENESIS_CORRESPONDENT_TIYN).map_err(|e| e.to_string())?;
    for node in roles.node_ids() {
        // Keyed at central, so a restart credits nothing twice.
        let idem =
            Idem { key: format!("genesis-correspondent-{node}"), fingerprint: dtenge_core::crypto::Hash32([0; 32]) };
        roles
            .once(Some(idem), |idem| roles.credit_correspondent(idem, &node, AmountRequest { amount_tiyn: amount }))
            .map_err(|e| e.to_string())?;
    }
    let console =
        Arc::new(dtenge_console::Console::open(roles.clone(), &data, Entropy::from_os()).map_err(|e| e.to_string())?);
    let demo_users = console.ensure_demo_users().map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let tls_config = match &tls {
        Some(names) => {
            let key = roles.tls_key().map_err(|e| e.to_string())?;
            Some(dtenge_api::tls::sandbox_server_config(&data, key, names).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let scheme = if tls_config.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().map_err(|e| e.to_string())?);
    running.serving_at(&data, &base)?;
    let today = roles.today();
    tracing::info!(data = %data.display(), api = %base, tls = tls.is_some(), "dtenge is up");
    println!("dtenge is up.");
    println!(
        "  mode          SANDBOX: every role in one process, with stand-ins for core banking (deposits), the RTGS \
         (correspondent credits){}, and demo users; a network runs each organization's node with `dtenge run`",
        if clock_kind == ClockKind::Manual { ", the movable clock" } else { "" }
    );
    println!("  data          {}", data.display());
    println!("  keys          {}", roles.keys());
    println!("  REST API      {base}");
    println!("  consoles      {base}/   (operator, Treasury, bank back office, client wallet)");
    println!("  API docs      {base}/docs   (OpenAPI: {base}/openapi.json)");
    println!("  nodes         {}", roles.node_ids().join(", "));
    println!(
        "  today         {} (Astana), {}",
        today.date,
        if today.working { "operational day" } else { "holiday: bank <-> NBK conversions refused" }
    );
    match clock_kind {
        ClockKind::System => println!("  clock         system"),
        ClockKind::Manual => println!(
            "  clock         MANUAL (a sandbox): now {} Unix ms, the system time at start; only POST /v1/clock/advance moves it",
            roles.now_ms()
        ),
    }
    if !demo_users.is_empty() {
        println!();
        println!("Demo users of the consoles (shown this once; passwords are stored as Argon2id hashes):");
        for user in &demo_users {
            println!("  {:<16} {}   ({})", user.username, user.password, user.role.console());
        }
    }
    println!();
    let credentials = data.join(dtenge_api::access::CREDENTIALS_DIR);
    println!("API clients (each route is for one: a node's systems or the NBK operator):");
    println!("  credentials   {}   (a key and a certificate of the sandbox's root per client)", credentials.display());
    println!(
        "  tokens        POST {base}{} (OAuth 2.0 client credentials, a JWT assertion signed with the client's key)",
        dtenge_api::access::TOKEN_PATH
    );
    println!();
    println!("Try it (`dtenge call` signs in as the client each route is for):");
    let call = format!("cargo run --release -- call --api {base} --credentials {}", credentials.display());
    println!("  {call} GET /v1/operator/monitoring");
    if !today.working {
        println!("  # today is not an operational day: the NBK operator opens it for bank <-> NBK conversions");
        println!("  {call} PUT /v1/operator/calendar/days/{} '{{\"working\": true}}'", today.date);
    }
    println!("  {call} POST /v1/nodes/steppe/emissions '{{\"amount_tiyn\": 100000000}}'");
    println!("  {call} POST /v1/nodes/steppe/accounts \\");
    println!("       '{{\"kind\":\"individual\",\"client_id\":\"900101300007\",\"name\":\"Aigerim Seitova\",\"phone\":\"+77011234567\"}}'");
    if clock_kind == ClockKind::Manual {
        println!("  {call} POST /v1/clock/advance '{{\"advance_ms\": 86400000}}'");
    }
    println!("  cargo run --release -- reconcile --data {}", data.display());
    println!("Ctrl-C or SIGTERM stops the platform gracefully; its data stays in {}.", data.display());
    let shutdown = async move {
        let name = signals.first().await;
        tracing::info!(signal = name, "stopping: no new connections, finishing the requests in flight");
        println!("{name}: stopping; no new connections, finishing the requests in flight");
    };
    let app = dtenge_api::router(roles.clone()).merge(dtenge_console::web::router(console.clone()));
    // The Host names served: loopback, the address listened on and every --tls-name.
    let hosts = Hosts::serving(listen, tls.as_deref().unwrap_or_default());
    let served =
        runtime.block_on(dtenge_api::serving::serve(app, listener, tls_config, hosts, Limits::GATEWAY, shutdown));
    // Every connection is closed and every handler has answered. Dropping the runtime also
    // waits for an operation whose client went away mid-request: it runs to its commit.
    drop(runtime);
    // Last, the roles and the stores: each role's threads stop (what they were handling
    // finishes first) and its store closes (its commit queue drained, synced); the console's
    // with the console.
    let mut problems: Vec<String> = Vec::new();
    drop(console);
    match Arc::into_inner(roles) {
        Some(roles) => roles.shutdown(),
        None => problems.push("the roles were still referenced; their stores close at exit".into()),
    }
    served.map_err(|e| e.to_string())?;
    if !problems.is_empty() {
        return Err(format!("stopped, but: {}", problems.join("; ")));
    }
    println!("stopped: requests finished, roles stopped, stores closed; data in {}", data.display());
    Ok(ExitCode::SUCCESS)
}

/// The demo's clock: Monday 2026-11-23, 10:00 in Astana (an operational day).
fn demo_start_ms() -> u64 {
    let days = Date::new(2026, 11, 23).map(|d| d.days()).unwrap_or(0);
    (days as u64 * 86_400 + 5 * 3600) * 1000
}

fn demo(data: Option<PathBuf>) -> Result<ExitCode, String> {
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = data.unwrap_or_else(|| temp.path().to_path_buf());
    let clock = Arc::new(ManualClock::new(demo_start_ms()));
    let platform = Platform::start(&dir, "127.0.0.1:0".parse().map_err(|_| "address")?, clock, Entropy::from_os())
        .map_err(|e| e.to_string())?;
    println!(
        "dtenge demo: a fresh network (NBK, Treasury, 3 banks) at {}, data in {}",
        platform.base_url(),
        dir.display()
    );
    println!("Every step goes through the REST API. Amounts in KZT.\n");
    let world = World::new(&platform.base_url(), &platform.credentials_dir())?;
    let outcomes = dtenge_scenarios::run_all(&world, |o| {
        println!(
            "[{}] {:<6} {}  ({:.1} ms)",
            if o.passed { "PASS" } else { "FAIL" },
            o.section(),
            o.title,
            o.elapsed_ms
        );
        for line in &o.lines {
            println!("        {line}");
        }
        if let Some(f) = &o.failure {
            println!("        FAILED: {f}");
        }
    });
    let reconciliation = world.client.get("/v1/operator/reconciliation").map_err(|e| e.to_string())?;
    println!(
        "\nReconciliation: circulation by NBK {}, by nodes {}, ABS liability {}, notary unspent {}, ok = {}",
        fmt_tiyn(&reconciliation["circulation_by_nbk_tiyn"]),
        fmt_tiyn(&reconciliation["circulation_by_nodes_tiyn"]),
        fmt_tiyn(&reconciliation["dt_liability_tiyn"]),
        reconciliation["notary_unspent"],
        reconciliation["ok"]
    );
    let passed = outcomes.iter().filter(|o| o.passed).count();
    let failed = outcomes.len() - passed;
    let total_ms: f64 = outcomes.iter().map(|o| o.elapsed_ms).sum();
    println!("Total time {:.1} s", total_ms / 1000.0);
    println!("{passed} passed, {failed} failed");
    drop(platform);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn fmt_tiyn(v: &serde_json::Value) -> String {
    v.as_u64().and_then(|t| Amount::from_tiyn(t).ok()).map(|a| a.to_string()).unwrap_or_else(|| v.to_string())
}

/// A REST client with the credentials in `dir`, or none if there are none: the gateway then
/// answers what needs one with 401 and says why.
fn api_client(api: &str, dir: &Path) -> Result<Client, String> {
    if !dir.exists() {
        eprintln!("note: no API credentials in {}; calling anonymously", dir.display());
        return Ok(Client::new(api));
    }
    Client::with_credentials(api, dir)
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the whole trail of the platform whose data is in `--data` (stopped): every entry's
    /// hash, its link to the one before, its signature by the vault's audit key, and the
    /// sequence without gaps. Exits non-zero, naming the entries, if one was altered, removed
    /// or signed by another key. Prints the head to compare with the newest anchor in the log.
    Verify {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// Trust this public key (64 hex characters) instead of the vault's: the audit keys of
        /// every epoch (after `dtenge key --rotate --label audit`, the retired one and the new
        /// one), or a sandbox node's node key.
        #[arg(long, value_name = "HEX")]
        trust: Vec<String>,
    },
}

/// `audit verify --data DIR`.
fn audit_verify(data: &Path, trust: &[String]) -> Result<ExitCode, String> {
    // Held until the trail is read: no `up` starts on it meanwhile.
    let _reading = match running::holder(data)? {
        running::Holder::Up(api) => {
            return Err(format!(
                "a platform runs on {} (at {api}): stop it, then verify its trail (a running platform checks its \
                 last entry when it starts)",
                data.display()
            ))
        }
        running::Holder::Nobody(reading) => reading,
    };
    let trail_dir = data.join(dtenge_audit::DATABASE_DIR);
    if !trail_dir.exists() {
        return Err(format!("no audit trail in {}", data.display()));
    }
    let mut trusted = Vec::with_capacity(trust.len() + 1);
    for hex in trust {
        let key = dtenge_core::crypto::Hash32::from_hex(hex).map_err(|e| format!("--trust {hex}: {e}"))?;
        trusted.push(dtenge_core::crypto::PublicKey { alg: dtenge_core::crypto::SigAlg::Ed25519, key });
    }
    let store = dtenge_store::Store::open(&trail_dir, &[]).map_err(|e| e.to_string())?;
    if trusted.is_empty() && store.has_rows(dtenge_audit::ENTRIES_TABLE).map_err(|e| e.to_string())? {
        // The vault's audit key: the one the platform signs with, from where no one can
        // replace it (the HSM, or the key store under its passphrase). With `--trust`, only
        // the keys given (a node whose keys are in files; a copy of a trail without its vault).
        let entropy = Entropy::from_os();
        let config = dtenge_keys::KeyConfig::from_env(true, &entropy).map_err(|e| e.to_string())?;
        let vault = dtenge_keys::Vault::open(data, &config).map_err(|e| e.to_string())?;
        let key = vault.node_key(dtenge_api::platform::AUDIT_KEY_LABEL, &entropy).map_err(|e| e.to_string())?;
        trusted.push(key.public_key());
    }
    let report = dtenge_audit::verify(&store, &trusted).map_err(|e| e.to_string())?;
    println!("Audit trail of {}:", data.display());
    println!("  entries        {}", report.entries);
    match report.head {
        Some((seq, hash)) => {
            println!("  head           {seq} {hash}   (compare with the newest 'audit trail head' in the log)")
        }
        None => println!("  head           none: the trail is empty"),
    }
    for key in &report.keys {
        println!("  signed by      {}{}", key.key, if trusted.contains(key) { "" } else { "   NOT TRUSTED" });
    }
    println!("  open intents   {}", report.open_intents);
    if report.ok() {
        println!("OK: every entry is intact, linked and signed by a trusted key");
        return Ok(ExitCode::SUCCESS);
    }
    println!("BROKEN: {} problems", report.problems_total);
    for problem in &report.problems {
        println!("  - {problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// `reconcile --api URL`: the platform that answers at `api`.
fn reconcile_at(api: &str, credentials: &Path) -> Result<ExitCode, String> {
    let report = api_client(api, credentials)?.get("/v1/operator/reconciliation").map_err(|e| e.to_string())?;
    println!("Reconciliation of the platform at {api}:");
    print_reconciliation(&report)
}

/// `reconcile --data DIR`: the platform of `data`, asked at the address its `up` serves when
/// one runs on it (it holds the data), else from its files. Never whatever answers on a port:
/// an older build asked `127.0.0.1:8080` first and reported another platform than `data`'s.
fn reconcile_data(data: &Path) -> Result<ExitCode, String> {
    let report = match running::holder(data)? {
        running::Holder::Up(api) => {
            println!("Reconciliation of the platform running on {} at {api}:", data.display());
            let client = api_client(&api, &data.join(dtenge_api::access::CREDENTIALS_DIR))?;
            client.get("/v1/operator/reconciliation").map_err(|e| e.to_string())?
        }
        // Held until the files are read: no `up` starts on them meanwhile.
        running::Holder::Nobody(_reading) => {
            println!("Reconciliation of the data in {} (no platform runs on it):", data.display());
            if !dtenge_api::platform::holds_a_platform(data) {
                return Err(format!("no platform's data in {}", data.display()));
            }
            let roles = Roles::open(data, Arc::new(SystemClock), Entropy::from_os()).map_err(|e| e.to_string())?;
            let report = serde_json::to_value(roles.reconcile()).map_err(|e| e.to_string())?;
            roles.shutdown();
            report
        }
    };
    print_reconciliation(&report)
}

fn print_reconciliation(report: &serde_json::Value) -> Result<ExitCode, String> {
    println!("  DT in circulation (NBK registry)  {}", fmt_tiyn(&report["circulation_by_nbk_tiyn"]));
    println!("  DT held by nodes                  {}", fmt_tiyn(&report["circulation_by_nodes_tiyn"]));
    println!("  ABS DT liability                  {}", fmt_tiyn(&report["dt_liability_tiyn"]));
    println!("  unspent tokens: notary {}, nodes {}", report["notary_unspent"], report["node_tokens"]);
    if report["ok"] == true {
        println!("OK: circulation = liability");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("MISMATCH: {}", report["problems"]);
        Ok(ExitCode::FAILURE)
    }
}

fn bench(config: dtenge_bench::Config, json: bool) -> Result<ExitCode, String> {
    let report = dtenge_bench::roles::run(&config, |line| eprintln!("bench: {line}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", dtenge_bench::roles::render(&report));
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn bench_http(config: dtenge_bench::http::HttpConfig, json: bool) -> Result<ExitCode, String> {
    let report = dtenge_bench::http::run(&config, |line| eprintln!("bench: {line}"))?;
    if json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", dtenge_bench::http::render(&report));
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn bench_soak(config: dtenge_bench::soak::SoakConfig, plot: Option<&Path>, json: bool) -> Result<ExitCode, String> {
    let report = dtenge_bench::soak::run(&config, |line| eprintln!("bench: {line}"))?;
    if let Some(path) = plot {
        std::fs::write(path, dtenge_bench::soak::plot(&report)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", dtenge_bench::soak::render(&report));
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The running binary, for a bench that starts its own `dtenge up` (no `--api`).
fn own_binary(api: &Option<String>) -> Result<Option<PathBuf>, String> {
    if api.is_some() {
        return Ok(None);
    }
    std::env::current_exe().map(Some).map_err(|e| format!("cannot find the dtenge binary to start `up`: {e}"))
}

/// `90s`, `30m`, `2h` or a number of seconds, in seconds.
fn parse_duration_s(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, unit_s) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1.0),
        Some((at, 'm')) => (&text[..at], 60.0),
        Some((at, 'h')) => (&text[..at], 3_600.0),
        _ => (text, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n * unit_s),
        _ => Err(format!("--soak {text}: give a duration such as 90s, 30m or 2h")),
    }
}

fn bench_cluster(config: dtenge_bench::cluster::ClusterConfig, json: bool) -> Result<ExitCode, String> {
    let report = dtenge_bench::cluster::run(&config, |line| eprintln!("bench: {line}"))?;
    if json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", dtenge_bench::cluster::render(&report));
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn status(api: &str, credentials: &Path) -> Result<ExitCode, String> {
    let m = api_client(api, credentials)?.get("/v1/operator/monitoring").map_err(|e| e.to_string())?;
    println!(
        "emitted {}, redeemed {}, in circulation {}, ABS liability {}",
        fmt_tiyn(&m["emitted_tiyn"]),
        fmt_tiyn(&m["redeemed_tiyn"]),
        fmt_tiyn(&m["circulation_tiyn"]),
        fmt_tiyn(&m["dt_liability_tiyn"])
    );
    for n in m["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:<10} {:<28} {:>26} held {:>7} accounts {}",
            n["id"].as_str().unwrap_or(""),
            n["name"].as_str().unwrap_or(""),
            fmt_tiyn(&n["dt_held_tiyn"]),
            n["accounts"],
            if n["blocked"] == true { "BLOCKED" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn call(
    api: &str,
    credentials: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> Result<ExitCode, String> {
    let client = api_client(api, credentials)?;
    let method = method.to_ascii_uppercase();
    let result = match method.as_str() {
        "GET" => client.get(path),
        "POST" | "PUT" => {
            let key = key.map(str::to_string).unwrap_or_else(|| client.key());
            client.raw(&method, path, Some(&key), body.unwrap_or("{}"))
        }
        other => return Err(format!("method {other}: use GET, POST or PUT")),
    };
    match result {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_s;

    #[test]
    fn soak_durations_read_with_their_units() {
        assert_eq!(parse_duration_s("90s"), Ok(90.0));
        assert_eq!(parse_duration_s("30m"), Ok(1_800.0));
        assert_eq!(parse_duration_s("2h"), Ok(7_200.0));
        assert_eq!(parse_duration_s("45"), Ok(45.0));
        for bad in ["", "m", "-5m", "0s", "fast", "NaNs", "infs"] {
            assert!(parse_duration_s(bad).is_err(), "{bad}");
        }
    }
}
