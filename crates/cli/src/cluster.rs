//! `dtenge run` (one participant as its own process) and `dtenge cluster` (every participant of
//! the standard network as its own process on this machine, over the real network between
//! them). The participant itself is `dtenge_process`'s; this module reads the command line,
//! the system clock, the operating system's entropy and the signals.

use dtenge_env::Entropy;
use dtenge_process::cluster::{self, Laid, Ports};
use dtenge_process::{Config, Participant};
use dtenge_wire::RoleId;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

/// How long `cluster` waits for a participant's `/health` at start.
const HEALTHY_WAIT_MS_MAX: u64 = 30_000;
/// How often `cluster` looks at its children.
const SUPERVISE_POLL_MS: u64 = 200;
/// A participant that stops is started again after this long (as systemd's `RestartSec`).
const RESTART_AFTER_MS: u64 = 1_000;

/// `dtenge run --role R --config FILE`: until SIGINT or SIGTERM.
pub fn run(role: &RoleId, config: &Path) -> Result<ExitCode, String> {
    let config = Config::load(config, Some(role)).map_err(|e| e.to_string())?;
    crate::lock_down(&config.data)?;
    let mode = if config.sandbox {
        "SANDBOX: deposits and correspondent credits stand in for core banking and the RTGS"
    } else {
        "production"
    };
    let participant = Participant::start(config).map_err(|e| format!("{role}: {e}"))?;
    println!(
        "{role} is up: network {}, operations http://{}, {mode}",
        participant.listen_addr(),
        participant.ops_addr()
    );
    let signal = wait_for_stop()?;
    tracing::info!(signal, role = %role, "stopping");
    participant.shutdown();
    tracing::info!(role = %role, "stopped");
    Ok(ExitCode::SUCCESS)
}

fn wait_for_stop() -> Result<&'static str, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let signals = {
        let _entered = runtime.enter();
        crate::StopSignals::register()?
    };
    Ok(runtime.block_on(signals.first()))
}

/// `dtenge cluster --dir D`: lay the network out under `dir` on the first start (the NBK's
/// root, every participant's key, certificate and configuration), start each participant as
/// its own process in order, each once the one before serves its `/health`, and start again
/// any that stops, until SIGINT or SIGTERM, which stops them all.
pub fn cluster(dir: &Path, base_port: u16, shards: u8) -> Result<ExitCode, String> {
    let members =
        if dir.join(cluster::CA_DIR).exists() { cluster::members(dir) } else { cluster::standard_sharded(shards) };
    let laid = if dir.join(cluster::CA_DIR).exists() {
        cluster::read(dir, &members).map_err(|e| e.to_string())?
    } else {
        let entropy = Entropy::from_os();
        let address = |port: u32| -> SocketAddr {
            // The base port is checked below: every port is within u16.
            SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(0)))
        };
        let base = u32::from(base_port);
        if base + 300 > u32::from(u16::MAX) {
            return Err(format!("--base-port {base_port}: the cluster needs base..base+300 below 65536"));
        }
        let mut ports = |i: usize| {
            let i = u32::try_from(i).unwrap_or(0);
            Ports { listen: address(base + i), ops: address(base + 100 + i), api: Some(address(base + 200 + i)) }
        };
        let mut seed = || entropy.seed32();
        cluster::lay_out(dir, &members, &mut ports, &mut seed, crate::ca::now_s()?).map_err(|e| e.to_string())?
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut signals = {
        let _entered = runtime.enter();
        Some(crate::StopSignals::register()?)
    };
    let mut children: Vec<Option<Child>> = Vec::with_capacity(laid.len());
    for member in &laid {
        let child = start(&exe, member)?;
        children.push(Some(child));
        if let Err(e) = wait_healthy(member.ports.ops) {
            stop_all(&mut children);
            return Err(format!("{}: {e}", member.member.role));
        }
    }
    println!("dtenge cluster is up: {} participants, each its own process.", laid.len());
    println!("  {:<14} {:<22} {:<22} config", "participant", "network (mTLS)", "operations");
    for member in &laid {
        println!(
            "  {:<14} {:<22} {:<22} {}",
            member.member.role.to_string(),
            member.ports.listen.to_string(),
            format!("http://{}", member.ports.ops),
            member.config.display()
        );
    }
    println!(
        "  certificate authority: {}  (revoke with `dtenge ca --dir ... revoke`)",
        dir.join(cluster::CA_DIR).display()
    );
    let signal = supervise(&exe, &laid, &mut children, &runtime, &mut signals)?;
    tracing::info!(signal, "stopping the cluster");
    stop_all(&mut children);
    Ok(ExitCode::SUCCESS)
}

fn start(exe: &Path, member: &Laid) -> Result<Child, String> {
    std::process::Command::new(exe)
        .arg("run")
        .arg("--role")
        .arg(member.member.role.to_string())
        .arg("--config")
        .arg(&member.config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", member.member.role))
}

/// Wait until `ops` answers `/health` with 200.
pub fn wait_healthy(ops: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(HEALTHY_WAIT_MS_MAX);
    let url = format!("http://{ops}/health");
    loop {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
        if agent.get(&url).call().is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not healthy at {url} within {HEALTHY_WAIT_MS_MAX} ms"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start again every child that stopped, until a signal; the signal's name.
fn supervise(
    exe: &Path,
    laid: &[Laid],
    children: &mut [Option<Child>],
    runtime: &tokio::runtime::Runtime,
    signals: &mut Option<crate::StopSignals>,
) -> Result<&'static str, String> {
    let Some(stop) = signals.take() else { return Err("no signal handlers".into()) };
    let mut stop = Box::pin(stop.first());
    loop {
        let signal = runtime.block_on(async {
            tokio::select! {
                signal = &mut stop => Some(signal),
                _ = tokio::time::sleep(Duration::from_millis(SUPERVISE_POLL_MS)) => None,
            }
        });
        if let Some(signal) = signal {
            return Ok(signal);
        }
        for (member, slot) in laid.iter().zip(children.iter_mut()) {
            let stopped = match slot.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some(e.to_string()),
                None => Some("not running".into()),
            };
            let Some(why) = stopped else { continue };
            tracing::warn!(participant = %member.member.role, status = %why, "a participant stopped; starting it again");
            std::thread::sleep(Duration::from_millis(RESTART_AFTER_MS));
            *slot = start(exe, member).map_err(|e| tracing::error!(error = %e, "restart failed")).ok();
        }
    }
}

/// How long a participant may take to stop gracefully before it is killed.
const STOP_WAIT_MS_MAX: u64 = 30_000;

/// SIGTERM to every child, newest first (the banks before the roles they need), and wait for
/// each at most [`STOP_WAIT_MS_MAX`], then SIGKILL (what it answered is durable either way).
fn stop_all(children: &mut [Option<Child>]) {
    for child in children.iter_mut().rev().flatten() {
        // `kill -TERM`: a graceful stop (std's `Child::kill` is SIGKILL).
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS_MAX);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(child.try_wait(), Ok(None)) {
            tracing::warn!(pid = child.id(), "a participant did not stop in time; killed");
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// `dtenge key --out FILE`: a new key from the operating system's entropy, written once (an
/// existing file is refused, never overwritten).
pub fn new_key(out: &Path) -> Result<ExitCode, String> {
    if out.exists() {
        return Err(format!("{} exists: a key is never overwritten", out.display()));
    }
    let key = dtenge_core::crypto::SecretKey::from_seed(Entropy::from_os().seed32());
    dtenge_pki::write_atomically(out, dtenge_pki::key_to_pem(&key).as_bytes(), true).map_err(|e| e.to_string())?;
    println!("key          {}", out.display());
    println!("public key   {}", hex(&key.public_key().key.0));
    println!("address      {}", hex(&key.address().0 .0));
    Ok(ExitCode::SUCCESS)
}

/// What `dtenge key --data` does with its label.
pub enum VaultKey {
    /// The node key, made on first use.
    Node,
    /// A secret used as an account's key (a bank's own account), drawn on first use.
    Secret,
    /// A new node key in place of the one there, the old one retired.
    Rotate,
    /// A node key from a PEM file.
    Import(std::path::PathBuf),
    /// An account's key from a PEM file, kept as a secret.
    ImportSecret(std::path::PathBuf),
}

/// `dtenge key --data DIR --label L [--secret | --import PEM | --rotate] [--sandbox]`: the key
/// `L` of the vault in `DIR` (the environment says which vault; `--sandbox` allows `up`'s
/// sandbox passphrase), made on first use; its public half printed.
pub fn vault_key(data: &Path, label: &str, what: VaultKey, sandbox: bool) -> Result<ExitCode, String> {
    let entropy = Entropy::from_os();
    let config = dtenge_keys::KeyConfig::from_env(sandbox, &entropy).map_err(|e| e.message)?;
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let vault = dtenge_keys::Vault::open(data, &config).map_err(|e| e.message)?;
    let rotated = matches!(what, VaultKey::Rotate);
    let public_key = match what {
        VaultKey::Secret => {
            dtenge_core::crypto::SecretKey::from_seed(vault.secret(label, &entropy).map_err(|e| e.message)?)
                .public_key()
        }
        VaultKey::Import(file) => vault.import_node_key(label, &pem_key(&file)?).map_err(|e| e.message)?.public_key(),
        VaultKey::ImportSecret(file) => {
            let key = pem_key(&file)?;
            vault.import_secret(label, key.seed()).map_err(|e| e.message)?;
            key.public_key()
        }
        VaultKey::Rotate => vault.rotate_node_key(label, &entropy).map_err(|e| e.message)?.public_key(),
        VaultKey::Node => vault.node_key(label, &entropy).map_err(|e| e.message)?.public_key(),
    };
    println!("keys         {}", vault.describe());
    println!("label        {label}{}", if rotated { " (rotated: the old key is retired in the vault)" } else { "" });
    println!("public key   {}", hex(&public_key.key.0));
    println!("address      {}", hex(&public_key.address().0 .0));
    Ok(ExitCode::SUCCESS)
}

fn pem_key(file: &Path) -> Result<dtenge_core::crypto::SecretKey, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    dtenge_pki::key_from_pem(&text).map_err(|e| format!("{}: {e}", file.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long `reconcile --cluster` waits for the network to settle.
const SETTLE_WAIT_MS_MAX: u64 = 60_000;

/// `dtenge reconcile --cluster DIR`: the checks across the processes of the network laid out
/// under `dir`; exits non-zero when one does not hold or the network did not settle.
pub fn reconcile(dir: &Path) -> Result<ExitCode, String> {
    let laid = cluster::read(dir, &cluster::members(dir)).map_err(|e| e.to_string())?;
    let look = dtenge_process::reconcile::reconcile(&laid, Duration::from_millis(SETTLE_WAIT_MS_MAX))?;
    let mark = |ok: bool| if ok { "ok" } else { "MISMATCH" };
    println!("settled                          {}", if look.settled { "yes" } else { "no: work still outstanding" });
    println!(
        "banks' DT = central's liability  {} ({} = {} tiyn)",
        mark(look.banks_dt_tiyn == look.central_liability_tiyn),
        look.banks_dt_tiyn,
        look.central_liability_tiyn
    );
    println!(
        "banks' tokens = notary's unspent {} ({} = {})",
        mark(look.banks_tokens == look.notary_unspent_tokens),
        look.banks_tokens,
        look.notary_unspent_tokens
    );
    println!("notary commit index              {}", look.notary_commit_index);
    Ok(if look.holds() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
