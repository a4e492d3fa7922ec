//! A participant's configuration file (TOML), as `dtenge run --role R --config FILE` reads it.
//!
//! ```toml
//! # Which participant this process is: central, notary, oracle, directory or bank:<id>.
//! role = "bank:steppe"
//! # Its own data directory (its store); relative paths are relative to this file.
//! data = "steppe"
//! # Where the other participants reach it (mutual TLS 1.3, HTTP/2).
//! listen = "127.0.0.1:7101"
//! # Where its operators read /health and /metrics (plain HTTP: bind it to loopback or an
//! # operations network).
//! ops = "127.0.0.1:9101"
//! # A bank's and central's own API, for its organization's systems (HTTPS, mutual TLS with an
//! # API client certificate of the root: `dtenge ca issue --api-client bank:<id>`).
//! api = "127.0.0.1:8101"
//! # A sandbox (a test network, as `dtenge cluster` lays out): the API also serves the routes
//! # that stand in for systems outside the network, bank-money deposits for a bank's core
//! # banking system and correspondent credits at central for the RTGS. Absent (false) in
//! # production, where those routes do not exist.
//! sandbox = true
//! # How long idempotency records are kept (the gateway's answers, a bank's and central's
//! # keys), in whole days: a key older than this may run as new. Absent: 7.
//! idempotency_retention_days = 7
//!
//! [identity]
//! key = "vault:node"                # its signing key: in the vault of its data directory
//!                                   # (an HSM, or the encrypted key store, as the environment
//!                                   # says: `dtenge_keys::KeyConfig::from_env`), certified by:
//! certificate = "steppe.crt.pem"    # its certificate, issued by the NBK's root
//! root = "ca.crt.pem"               # the NBK's root certificate, the only one trusted
//! revocation_list = "crl.pem"       # followed: a newer list is put in force within seconds
//!
//! [bank]                            # a bank only
//! name = "Steppe Bank"
//! kind = "bank"                     # or "treasury"
//! own_key = "vault:own"            # the key of the bank's own account (its DT liquidity)
//!
//! [[peers]]                         # every participant this one talks to
//! role = "notary"
//! address = "127.0.0.1:7001"
//! server_name = "notary.dtenge.test" # the DNS name its certificate carries
//! certificate = "notary.crt.pem"     # who it is: the key its messages are checked with
//! # The notary's other replicas, tried in turn when a connection fails (a replicated notary:
//! # `certificate` is then the notary's own, whose key signs commit certificates).
//! alternates = [{ address = "127.0.0.1:7002", server_name = "notary-2.dtenge.test" },
//!               { address = "127.0.0.1:7003", server_name = "notary-3.dtenge.test" }]
//!
//! [[peers]]
//! role = "bank:tulpar"
//! address = "127.0.0.1:7102"
//! server_name = "tulpar.dtenge.test"
//! certificate = "tulpar.crt.pem"
//! own_address = "…"                  # central needs each bank's own account (hex)
//! ```
//!
//! A replica of the notary (`role = "notary-replica:<n>"`, `n` from 1 to 7) has its own key and
//! certificate under `[identity]`, and the notary's, which every replica holds, under
//! `[notary]`:
//!
//! ```toml
//! [notary]
//! key = "notary.key.pem"            # the notary's key: the leader signs commit certificates
//! certificate = "notary.crt.pem"    # its certificate (role notary), as the banks have it
//! replicas = [1, 2, 3]              # the founding group, the same on every replica
//! ```
//!
//! Its peers are the other replicas (by their own roles), central, the oracle and the banks.
//!
//! Who talks to whom: a bank to the notary, central, the directory, the oracle and every other
//! bank; the notary, central and the oracle to each other and the banks; the directory to the
//! banks. The keys a role checks messages with (the
//! network's anchors) are those its peers' certificates certify: the certificate authority,
//! not a list in the file, says who is who.
//!
//! A key field is `vault:<label>`, the key of that label in the vault of the participant's data
//! directory (`dtenge key --data DIR --label <label>` makes it there and prints its public
//! half, for `dtenge ca issue --public-key`; `--secret` for `own_key`), or the path of a PKCS#8 PEM file: a key in
//! the clear, which only a sandbox accepts (what `dtenge cluster` lays out for tests).
//!
//! An invalid file is refused at start with what is wrong and where ([`ConfigError`]): an
//! unknown field, a role or address that does not parse, a file that cannot be read, a
//! certificate that names another role than its entry or certifies another key than the one
//! given, a section the role needs missing or one it does not take.

use dtenge_core::crypto::{Address, NodeKey, PublicKey, SecretKey};
use dtenge_pki::{read_certificate, Subject};
use dtenge_wire::RoleId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Most peers one participant lists.
pub const PEERS_MAX: usize = 128;

#[derive(Debug, Error)]
#[error("{file}: {reason}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub reason: String,
}

/// Longest idempotency retention accepted, in days (a year).
pub const IDEMPOTENCY_RETENTION_DAYS_MAX: u64 = 366;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    role: String,
    data: PathBuf,
    listen: String,
    ops: String,
    api: Option<String>,
    #[serde(default)]
    sandbox: bool,
    idempotency_retention_days: Option<u64>,
    identity: FileIdentity,
    bank: Option<FileBank>,
    notary: Option<FileNotary>,
    shard: Option<FileShard>,
    #[serde(default)]
    peers: Vec<FilePeer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNotary {
    key: PathBuf,
    certificate: PathBuf,
    replicas: Vec<u8>,
    /// A sharded notary: how many shards it coordinates (0 or absent: none).
    #[serde(default)]
    shards: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShard {
    replicas: Vec<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEndpoint {
    address: String,
    server_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    key: PathBuf,
    certificate: PathBuf,
    root: PathBuf,
    revocation_list: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBank {
    name: String,
    kind: String,
    own_key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    role: String,
    address: String,
    server_name: String,
    certificate: PathBuf,
    own_address: Option<String>,
    #[serde(default)]
    alternates: Vec<FileEndpoint>,
}

/// A replica's part of the notary: the key all replicas sign with, and the founding group.
#[derive(Clone, Debug)]
pub struct NotarySettings {
    pub key: NodeKey,
    pub replicas: Vec<u8>,
    /// The shards it coordinates (0: it holds every token itself).
    pub shards: u8,
}

/// A bank's own settings.
#[derive(Clone, Debug)]
pub struct BankSettings {
    pub name: String,
    pub kind: dtenge_node::NodeKind,
    pub own_key: SecretKey,
}

/// A participant this one talks to, with the key its certificate certifies.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    pub role: RoleId,
    pub address: String,
    pub server_name: String,
    /// Further places it answers (`address`, `server_name`): the notary's other replicas.
    pub alternates: Vec<(String, String)>,
    pub key: PublicKey,
    /// A bank's own account, for central.
    pub own_address: Option<Address>,
    /// Its certificate's serial: a revocation list naming it revokes this peer.
    pub serial: u64,
}

/// A checked configuration: every file read, every name parsed.
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub role: RoleId,
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub ops: SocketAddr,
    /// A bank's and central's own API (`crate::gateway`).
    pub api: Option<SocketAddr>,
    /// A sandbox: the API serves the stand-ins for the core banking system and the RTGS.
    pub sandbox: bool,
    /// How long idempotency records are kept, ms (`idempotency_retention_days`, default 7).
    pub idempotency_retention_ms: u64,
    /// Its node key: its messages' signatures and its TLS identity.
    pub key: NodeKey,
    pub certificate_der: Vec<u8>,
    pub root_der: Vec<u8>,
    /// Where the revocation list is read from (again, when it changes).
    pub revocation_list: PathBuf,
    pub revocation_list_der: Vec<u8>,
    /// When this participant's certificate expires (seconds since the Unix epoch).
    pub certificate_not_after_s: i64,
    /// The DNS names its certificate names: the Host names its API and operations endpoint
    /// serve.
    pub certificate_names: Vec<String>,
    pub bank: Option<BankSettings>,
    /// A notary replica's `[notary]`.
    pub notary: Option<NotarySettings>,
    /// A shard replica's group: the numbers of its shard's founding replicas.
    pub shard_replicas: Option<Vec<u8>>,
    pub peers: Vec<PeerSettings>,
    /// The vault of its data directory, when a key field named it (`vault:<label>`): held
    /// open (and locked) for the process's life.
    pub vault: Option<std::sync::Arc<dtenge_keys::Vault>>,
}

impl Config {
    /// Read and check `file`; `role`, when given, must be the file's.
    pub fn load(file: &Path, role: Option<&RoleId>) -> Result<Config, ConfigError> {
        let error = |reason: String| ConfigError { file: file.to_path_buf(), reason };
        let text = std::fs::read_to_string(file).map_err(|e| error(format!("cannot be read: {e}")))?;
        let parsed: File = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        check(parsed, file, role).map_err(error)
    }
}

/// A key field naming a key of the data directory's vault: `vault:<label>`.
pub const VAULT_PREFIX: &str = "vault:";

fn check(file: File, path: &Path, expected: Option<&RoleId>) -> Result<Config, String> {
    let base = path.parent().unwrap_or(Path::new("."));
    let role: RoleId = file.role.parse().map_err(|e| format!("role: {e}"))?;
    if let Some(expected) = expected {
        if *expected != role {
            return Err(format!("the file configures {role}, not {expected}"));
        }
    }
    let at = |path: &Path| base.join(path);
    let read = |what: &str, path: &Path| std::fs::read(at(path)).map_err(|e| format!("{what} {}: {e}", path.display()));
    let read_text = |what: &str, path: &Path| {
        std::fs::read_to_string(at(path)).map_err(|e| format!("{what} {}: {e}", path.display()))
    };
    let address = |what: &str, text: &str| text.parse::<SocketAddr>().map_err(|e| format!("{what} {text:?}: {e}"));
    let listen = address("listen", &file.listen)?;
    let ops = address("ops", &file.ops)?;
    let api = match (&role, &file.api) {
        (RoleId::Bank(_) | RoleId::Central | RoleId::Oracle, Some(text)) => Some(address("api", text)?),
        (_, Some(_)) => return Err(format!("{role} serves no API of its own: remove `api`")),
        (_, None) => None,
    };

    // Keys are read from the vault of the data directory (opened on first need) or, in a
    // sandbox only, from PEM files in the clear.
    let data = at(&file.data);
    let opened = std::cell::OnceCell::new();
    let entropy = dtenge_env::Entropy::from_os();
    let vault = || -> Result<&dtenge_keys::Vault, String> {
        if let Some(vault) = opened.get() {
            return Ok(vault);
        }
        let config = dtenge_keys::KeyConfig::from_env(file.sandbox, &entropy).map_err(|e| e.message)?;
        std::fs::create_dir_all(&data).map_err(|e| format!("data {}: {e}", data.display()))?;
        let vault = dtenge_keys::Vault::open(&data, &config).map_err(|e| e.message)?;
        Ok(opened.get_or_init(|| vault))
    };
    let in_the_clear = |what: &str, path: &Path| -> Result<SecretKey, String> {
        if !file.sandbox {
            return Err(format!(
                "{what} {}: a key in a file, in the clear, is for a sandbox only: use vault:<label>",
                path.display()
            ));
        }
        dtenge_pki::key_from_pem(&read_text(what, path)?).map_err(|e| format!("{what}: {e}"))
    };
    let node_key = |what: &str, path: &Path| -> Result<NodeKey, String> {
        match path.to_str().and_then(|p| p.strip_prefix(VAULT_PREFIX)) {
            Some(label) => vault()?.node_key(label, &entropy).map_err(|e| format!("{what}: {}", e.message)),
            None => Ok(in_the_clear(what, path)?.into()),
        }
    };
    let secret_key = |what: &str, path: &Path| -> Result<SecretKey, String> {
        match path.to_str().and_then(|p| p.strip_prefix(VAULT_PREFIX)) {
            Some(label) => Ok(SecretKey::from_seed(
                vault()?.secret(label, &entropy).map_err(|e| format!("{what}: {}", e.message))?,
            )),
            None => in_the_clear(what, path),
        }
    };
    let key = node_key("identity.key", &file.identity.key)?;
    let certificate_der = pem_certificate(&read_text("identity.certificate", &file.identity.certificate)?)
        .map_err(|e| format!("identity.certificate: {e}"))?;
    let certified = read_certificate(&certificate_der).map_err(|e| format!("identity.certificate: {e}"))?;
    if certified.subject != Subject::Role(role.clone()) {
        return Err(format!("identity.certificate names {}, not {role}", certified.subject));
    }
    if certified.key != key.public_key() {
        return Err("identity.certificate certifies another key than identity.key".into());
    }
    let root_der = pem_certificate(&read_text("identity.root", &file.identity.root)?)
        .map_err(|e| format!("identity.root: {e}"))?;
    let revocation_list_der = revocation_list_der(&read("identity.revocation_list", &file.identity.revocation_list)?)
        .map_err(|e| format!("identity.revocation_list: {e}"))?;
    dtenge_pki::Trust::new(&root_der, &revocation_list_der)
        .and_then(|trust| trust.verify_client(&certificate_der, now_s()).map(|_| ()))
        .map_err(|e| format!("identity: {e}"))?;

    let bank = match (&role, file.bank) {
        (RoleId::Bank(_), Some(bank)) => {
            let kind = match bank.kind.as_str() {
                "bank" => dtenge_node::NodeKind::Bank,
                "treasury" => dtenge_node::NodeKind::Treasury,
                other => return Err(format!("bank.kind {other:?} is neither \"bank\" nor \"treasury\"")),
            };
            if bank.name.trim().is_empty() {
                return Err("bank.name is empty".into());
            }
            let own_key = secret_key("bank.own_key", &bank.own_key)?;
            Some(BankSettings { name: bank.name, kind, own_key })
        }
        (RoleId::Bank(_), None) => return Err("a bank needs its [bank] section".into()),
        (_, Some(_)) => return Err(format!("{role} takes no [bank] section")),
        (_, None) => None,
    };

    let notary = match (&role, file.notary) {
        (RoleId::NotaryReplica(n), Some(notary)) => {
            let key = node_key("notary.key", &notary.key)?;
            let der = pem_certificate(&read_text("notary.certificate", &notary.certificate)?)
                .map_err(|e| format!("notary.certificate: {e}"))?;
            let certified = read_certificate(&der).map_err(|e| format!("notary.certificate: {e}"))?;
            if certified.subject != Subject::Role(RoleId::Notary) {
                return Err(format!("notary.certificate names {}, not the notary", certified.subject));
            }
            if certified.key != key.public_key() {
                return Err("notary.certificate certifies another key than notary.key".into());
            }
            let replicas = group("notary.replicas", &notary.replicas, *n)?;
            if notary.shards > dtenge_wire::message::NOTARY_SHARDS_MAX {
                return Err(format!(
                    "notary.shards {}: at most {}",
                    notary.shards,
                    dtenge_wire::message::NOTARY_SHARDS_MAX
                ));
            }
            Some(NotarySettings { key, replicas, shards: notary.shards })
        }
        (RoleId::NotaryReplica(_), None) => return Err("a notary replica needs its [notary] section".into()),
        (_, Some(_)) => return Err(format!("{role} takes no [notary] section")),
        (_, None) => None,
    };

    let shard_replicas = match (&role, file.shard) {
        (RoleId::NotaryShard { replica, .. }, Some(shard)) => Some(group("shard.replicas", &shard.replicas, *replica)?),
        (RoleId::NotaryShard { .. }, None) => return Err("a shard's replica needs its [shard] section".into()),
        (_, Some(_)) => return Err(format!("{role} takes no [shard] section")),
        (_, None) => None,
    };

    if file.peers.len() > PEERS_MAX {
        return Err(format!("at most {PEERS_MAX} peers"));
    }
    let mut peers: Vec<PeerSettings> = Vec::with_capacity(file.peers.len());
    for (i, peer) in file.peers.into_iter().enumerate() {
        let name = format!("peers[{i}]");
        let peer_role: RoleId = peer.role.parse().map_err(|e| format!("{name}.role: {e}"))?;
        if peer_role == role {
            return Err(format!("{name}: a participant is not its own peer"));
        }
        if peers.iter().any(|p| p.role == peer_role) {
            return Err(format!("{name}: {peer_role} is listed twice"));
        }
        check_host_port(&peer.address).map_err(|e| format!("{name}.address {:?}: {e}", peer.address))?;
        let der = pem_certificate(&read_text(&format!("{name}.certificate"), &peer.certificate)?)
            .map_err(|e| format!("{name}.certificate: {e}"))?;
        let certified = read_certificate(&der).map_err(|e| format!("{name}.certificate: {e}"))?;
        if certified.subject != Subject::Role(peer_role.clone()) {
            return Err(format!("{name}.certificate names {}, not {peer_role}", certified.subject));
        }
        // With alternates the certificate is the notary's, not the replicas' that answer (TLS
        // checks their names when they are dialled).
        if peer.alternates.is_empty() && !certified.dns_names.contains(&peer.server_name) {
            return Err(format!("{name}.certificate does not carry the server name {:?}", peer.server_name));
        }
        if !peer.alternates.is_empty() && peer_role != RoleId::Notary {
            return Err(format!("{name}: only the notary answers in several places (alternates)"));
        }
        for (j, alternate) in peer.alternates.iter().enumerate() {
            check_host_port(&alternate.address)
                .map_err(|e| format!("{name}.alternates[{j}].address {:?}: {e}", alternate.address))?;
        }
        let own_address = match peer.own_address {
            Some(hex_text) => Some(parse_address(&hex_text).map_err(|e| format!("{name}.own_address: {e}"))?),
            None => None,
        };
        peers.push(PeerSettings {
            role: peer_role,
            address: peer.address,
            server_name: peer.server_name,
            alternates: peer.alternates.into_iter().map(|a| (a.address, a.server_name)).collect(),
            key: certified.key,
            own_address,
            serial: certified.serial,
        });
    }
    check_peers(&role, &peers)?;
    let fellows: Vec<RoleId> = match (&role, &notary, &shard_replicas) {
        (RoleId::NotaryReplica(n), Some(notary), _) => {
            notary.replicas.iter().filter(|r| *r != n).map(|r| RoleId::NotaryReplica(*r)).collect()
        }
        (RoleId::NotaryShard { shard, replica }, _, Some(replicas)) => replicas
            .iter()
            .filter(|r| *r != replica)
            .map(|r| RoleId::NotaryShard { shard: *shard, replica: *r })
            .collect(),
        _ => Vec::new(),
    };
    for fellow in fellows {
        if !peers.iter().any(|p| p.role == fellow) {
            return Err(format!("{role} needs {fellow} among its peers"));
        }
    }
    if let RoleId::NotaryShard { .. } = role {
        if !peers.iter().any(|p| matches!(p.role, RoleId::NotaryReplica(_))) {
            return Err(format!("{role} needs the notary's replicas (its coordinator) among its peers"));
        }
    }
    if let Some(notary) = notary.as_ref().filter(|n| n.shards > 0) {
        for shard in 1..=notary.shards {
            if !peers.iter().any(|p| matches!(p.role, RoleId::NotaryShard { shard: s, .. } if s == shard)) {
                return Err(format!(
                    "{role} coordinates {} shards: it needs shard {shard}'s replicas among its peers",
                    notary.shards
                ));
            }
        }
    }
    let retention_days =
        file.idempotency_retention_days.unwrap_or(dtenge_store::retention::IDEMPOTENCY_RETENTION_DAYS_DEFAULT);
    if !(1..=IDEMPOTENCY_RETENTION_DAYS_MAX).contains(&retention_days) {
        return Err(format!(
            "idempotency_retention_days = {retention_days}: from 1 to {IDEMPOTENCY_RETENTION_DAYS_MAX}"
        ));
    }
    Ok(Config {
        file: path.to_path_buf(),
        role,
        idempotency_retention_ms: retention_days * dtenge_store::retention::DAY_MS,
        data: at(&file.data),
        listen,
        ops,
        api,
        sandbox: file.sandbox,
        key,
        certificate_der,
        root_der,
        revocation_list: at(&file.identity.revocation_list),
        revocation_list_der,
        certificate_not_after_s: certified.not_after_s,
        certificate_names: certified.dns_names,
        bank,
        notary,
        shard_replicas,
        peers,
        vault: opened.into_inner().map(std::sync::Arc::new),
    })
}

/// A group's founding replicas as a file names them: an odd set of distinct numbers from 1 to
/// 7 with this replica (`me`) among them, sorted.
fn group(what: &str, numbers: &[u8], me: u8) -> Result<Vec<u8>, String> {
    let mut replicas = numbers.to_vec();
    replicas.sort_unstable();
    replicas.dedup();
    let max = dtenge_wire::message::NOTARY_REPLICAS_MAX;
    if replicas.len() != numbers.len() || replicas.iter().any(|r| !(1..=max).contains(r)) {
        return Err(format!("{what} {numbers:?}: distinct numbers from 1 to {max}"));
    }
    if replicas.len().is_multiple_of(2) || !replicas.contains(&me) {
        return Err(format!("{what} {numbers:?}: an odd number of replicas, this one ({me}) among them"));
    }
    Ok(replicas)
}

/// The peers a role cannot work without.
fn check_peers(role: &RoleId, peers: &[PeerSettings]) -> Result<(), String> {
    let has = |wanted: &RoleId| peers.iter().any(|p| p.role == *wanted);
    let needed: &[RoleId] = match role {
        RoleId::Bank(_) => &[RoleId::Notary, RoleId::Central, RoleId::Directory, RoleId::Oracle],
        RoleId::Notary | RoleId::NotaryReplica(_) => &[RoleId::Central],
        // A shard talks to the notary's replicas (its coordinator) and its fellows.
        RoleId::NotaryShard { .. } => &[],
        RoleId::Central => &[RoleId::Notary],
        RoleId::Oracle => &[RoleId::Central, RoleId::Notary],
        RoleId::Directory => &[],
    };
    for wanted in needed {
        if !has(wanted) {
            return Err(format!("{role} needs {wanted} among its peers"));
        }
    }
    if *role == RoleId::Central {
        if let Some(bank) = peers.iter().find(|p| matches!(p.role, RoleId::Bank(_)) && p.own_address.is_none()) {
            return Err(format!("central needs the own_address of {}", bank.role));
        }
    }
    Ok(())
}

/// `host:port`, the host a name or an address (resolved when the peer is dialled).
fn check_host_port(text: &str) -> Result<(), String> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = text.rsplit_once(':') else { return Err("not host:port".into()) };
    port.parse::<u16>().map_err(|e| format!("port: {e}"))?;
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || host.len() > 253 || !host.chars().all(name_char) {
        return Err("the host is neither a DNS name nor an IP address".into());
    }
    Ok(())
}

fn parse_address(text: &str) -> Result<Address, String> {
    let bytes = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "not 32 bytes".to_string())?;
    Ok(Address(dtenge_core::crypto::Hash32(bytes)))
}

fn pem_certificate(text: &str) -> Result<Vec<u8>, String> {
    dtenge_pki::pem_contents(text, "CERTIFICATE")
}

/// A revocation list as `dtenge ca` writes it (PEM), or DER.
pub fn revocation_list_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => dtenge_pki::pem_contents(text, "X509 CRL"),
        _ => Ok(bytes.to_vec()),
    }
}

pub(crate) fn now_s() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}
