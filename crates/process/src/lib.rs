//! One participant of the Digital Tenge as its own OS process (`dtenge run --role R --config
//! FILE`): the notary, central (the NBK), the directory (the ID center), the oracle, or a bank
//! (or the Treasury), each with its own data directory and store, its own key and certificate
//! under the NBK's root, talking to the others only over the network between processes
//! (`dtenge-net`: signed frames over mutual TLS 1.3).
//!
//! What a participant's process runs:
//! - its role, on the threads every role runs on (`dtenge_assembly::Threads`), with the
//!   network's inbox in place of the in-process one;
//! - the network (`dtenge_net::Net`), dialling its peers as envelopes for them come;
//! - a watcher of the revocation list file: a newer list is put in force within
//!   [`REVOCATION_POLL_MS`], and the live connections of a revoked peer end;
//! - its operations endpoint ([`ops`]): `/health` and Prometheus `/metrics`.
//!
//! A bank asks the directory across the network (`dtenge_bank::DirectoryClient`) and claims
//! its own account there at start.

#![forbid(unsafe_code)]

pub mod client;
pub mod cluster;
pub mod config;
mod gateway;
mod ops;
pub mod reconcile;
mod server;

pub use config::{Config, ConfigError, PeerSettings};

use dtenge_assembly::{Asks, BankHandle, Threads};
use dtenge_bank::{BankService, DirectoryClient, Genesis};
use dtenge_central::{BankKeys, CentralService};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::PublicKey;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_directory::DirectoryService;
use dtenge_net::{Endpoint, Identity, Net, NetConfig, Peer};
use dtenge_node::{NodeMeta, OWN_ACCOUNT};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_oracle::client::OracleClient;
use dtenge_oracle::service::OracleService;
use dtenge_store::Store;
use dtenge_transport::Transport;
use dtenge_wire::{AccountKind, Claim, RoleId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the revocation list file is read again.
pub const REVOCATION_POLL_MS: u64 = 1_000;
/// The node API's memo of answers by idempotency key, in the data directory.
const GATEWAY_DIR: &str = "gateway.db";

/// The role a process runs, open on its store.
pub enum Hosted {
    Notary(Arc<NotaryService>),
    /// One replica of the replicated notary.
    Replica(Arc<dtenge_notary_raft::Replica>),
    Central(Arc<CentralService>),
    Directory(Arc<DirectoryService>),
    Oracle {
        oracle: Arc<OracleService>,
        /// Where the oracle finds the parties its providers name.
        directory: Arc<DirectoryClient>,
    },
    Bank {
        handle: BankHandle,
        directory: Arc<DirectoryClient>,
        /// What the bank asks the oracle about its clients' events (holding).
        oracle: Arc<OracleClient>,
    },
}

/// A participant, running.
pub struct Participant {
    role: RoleId,
    net: Arc<Net>,
    hosted: Arc<Hosted>,
    threads: Threads,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    ops: server::Server,
    api: Option<server::Server>,
    /// The vault of its data directory, held open (and locked against a second writer such as
    /// `dtenge key`) while it runs.
    _vault: Option<Arc<dtenge_keys::Vault>>,
}

/// The time in milliseconds since the Unix epoch: the system's clock.
fn system_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn system_ns() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

fn failed(what: &str) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::new(ErrorCode::Internal, format!("{what}: {reason}"))
}

impl Participant {
    /// Open the role on its store under the configured data directory (created on the first
    /// start, recovered after), join the network, and serve the operations endpoint.
    pub fn start(config: Config) -> Result<Participant> {
        std::fs::create_dir_all(&config.data).map_err(|e| {
            Error::new(ErrorCode::StorageFailure, format!("data directory {}: {e}", config.data.display()))
        })?;
        let anchors = anchors(&config)?;
        let peers = config
            .peers
            .iter()
            .map(|p| {
                let first = (p.address.clone(), p.server_name.clone());
                let endpoints = std::iter::once(first)
                    .chain(p.alternates.iter().cloned())
                    .map(|(address, server_name)| Endpoint { address, server_name })
                    .collect();
                Peer { role: p.role.clone(), endpoints }
            })
            .collect();
        let identity = Identity {
            key: config.key.clone(),
            cert_der: config.certificate_der.clone(),
            ca_der: config.root_der.clone(),
            crl_der: config.revocation_list_der.clone(),
        };
        let (net, inbox) = Net::start(NetConfig { identity, listen: config.listen, peers })
            .map_err(|e| failed("network")(e.to_string()))?;
        let net = Arc::new(net);
        let transport: Arc<dyn Transport> = net.clone();
        let clock: dtenge_assembly::Clock = Arc::new(system_ms);
        let store = |tables: &[dtenge_store::Table]| Store::open(&config.data, tables);
        let mut threads = Threads::new();
        // A bank's vault, when its configuration named none (its sandbox keys in files): for
        // its data-encryption key.
        let mut vault: Option<Arc<dtenge_keys::Vault>> = None;
        let hosted = match &config.role {
            RoleId::Notary => {
                let senders = Senders {
                    central_bank: anchors.central_bank,
                    banks: anchors.banks.clone(),
                    blocked: Default::default(),
                };
                let notary = Arc::new(NotaryService::open(
                    store(&dtenge_notary::service::tables())?,
                    config.key.clone(),
                    senders,
                )?);
                threads.notary(notary.clone(), inbox, transport.clone())?;
                Hosted::Notary(notary)
            }
            RoleId::NotaryReplica(id) => {
                let settings =
                    config.notary.as_ref().ok_or_else(|| Error::malformed("a replica needs its [notary] section"))?;
                let senders = Senders {
                    central_bank: anchors.central_bank,
                    banks: anchors.banks.clone(),
                    blocked: Default::default(),
                };
                // A sharded notary: its shards' replicas are numbered as shard 1's peers are.
                let shard_replicas: Vec<u8> = config
                    .peers
                    .iter()
                    .filter_map(|p| match p.role {
                        RoleId::NotaryShard { shard: 1, replica } => Some(replica),
                        _ => None,
                    })
                    .collect();
                let group = match settings.shards {
                    0 => dtenge_notary_raft::Group::whole(),
                    shards => dtenge_notary_raft::Group::Notary { shards, shard_replicas },
                };
                let replica = ReplicaOf {
                    id: *id,
                    group,
                    founding: settings.replicas.clone(),
                    key: settings.key.clone(),
                    senders,
                    name: format!("notary-replica-{id}"),
                };
                replica.host(store(&dtenge_notary_raft::storage::tables())?, transport.clone(), &mut threads, inbox)?
            }
            RoleId::NotaryShard { shard, replica: number } => {
                let founding = config
                    .shard_replicas
                    .clone()
                    .ok_or_else(|| Error::malformed("a shard's replica needs its [shard] section"))?;
                // A shard certifies nothing and checks no sender: its coordinator did.
                let senders = Senders {
                    central_bank: config.key.public_key(),
                    banks: Default::default(),
                    blocked: Default::default(),
                };
                let replica = ReplicaOf {
                    id: *number,
                    group: dtenge_notary_raft::Group::Shard(*shard),
                    founding,
                    key: config.key.clone(),
                    senders,
                    name: format!("notary-shard-{shard}-{number}"),
                };
                replica.host(store(&dtenge_notary_raft::storage::tables())?, transport.clone(), &mut threads, inbox)?
            }
            RoleId::Central => {
                let banks = config
                    .peers
                    .iter()
                    .filter_map(|p| match (&p.role, p.own_address) {
                        (RoleId::Bank(id), Some(own)) => Some((id.clone(), BankKeys { own, node_key: p.key })),
                        _ => None,
                    })
                    .collect();
                let central = Arc::new(CentralService::open(
                    store(&dtenge_central::tables())?,
                    config.key.clone(),
                    anchors.notary,
                    banks,
                    transport.clone(),
                )?);
                central.set_idempotency_retention_ms(config.idempotency_retention_ms)?;
                threads.central(central.clone(), inbox, clock.clone())?;
                threads.ticker(Some(central.clone()), None, Vec::new(), clock)?;
                Hosted::Central(central)
            }
            RoleId::Directory => {
                let directory = Arc::new(DirectoryService::open(store(&dtenge_directory::tables())?)?);
                threads.directory(directory.clone(), inbox, transport.clone())?;
                Hosted::Directory(directory)
            }
            RoleId::Oracle => {
                let oracle = Arc::new(OracleService::open(
                    store(&dtenge_oracle::service::tables())?,
                    config.key.clone(),
                    anchors.clone(),
                    transport.clone(),
                )?);
                // The parties a provider names by bank and client id are found at the directory.
                let directory = Arc::new(DirectoryClient::new(RoleId::Oracle, transport.clone(), system_ns()));
                let asks = Asks { directory: directory.clone(), oracle: None };
                threads.oracle(oracle.clone(), inbox, clock.clone(), Some(asks))?;
                threads.ticker(None, Some(oracle.clone()), Vec::new(), clock)?;
                Hosted::Oracle { oracle, directory }
            }
            RoleId::Bank(id) => {
                let settings =
                    config.bank.as_ref().ok_or_else(|| Error::malformed("a bank needs its [bank] section"))?;
                let directory =
                    Arc::new(DirectoryClient::new(RoleId::Bank(id.clone()), transport.clone(), system_ns()));
                // Its custodial clients' keys are sealed under a data-encryption key of the
                // vault in its data directory (an HSM, or the encrypted key store).
                let entropy = dtenge_env::Entropy::from_os();
                let opened = match &config.vault {
                    Some(vault) => vault.clone(),
                    None => Arc::new(dtenge_keys::Vault::open(
                        &config.data,
                        &dtenge_keys::KeyConfig::from_env(config.sandbox, &entropy)?,
                    )?),
                };
                vault = Some(opened.clone());
                let vault = opened;
                tracing::info!(keys = %vault.describe(), "the bank's keys");
                let genesis = Genesis {
                    meta: NodeMeta { id: id.clone(), kind: settings.kind, name: settings.name.clone() },
                    node_key: config.key.clone(),
                    own_key: settings.own_key.clone(),
                    custody: dtenge_node::Custody::new(vault.secret(&format!("custody:{id}"), &entropy)?),
                    now_ms: clock(),
                };
                let service = Arc::new(BankService::open(
                    store(&dtenge_bank::tables())?,
                    genesis,
                    anchors.clone(),
                    transport.clone(),
                    directory.clone(),
                )?);
                service.set_idempotency_retention_ms(config.idempotency_retention_ms)?;
                let handle = BankHandle::new(service);
                let oracle = Arc::new(OracleClient::new(id, transport.clone(), system_ns()));
                let asks = Asks { directory: directory.clone(), oracle: Some(oracle.clone()) };
                threads.bank(&handle, inbox, clock.clone(), Some(asks))?;
                threads.ticker(None, None, vec![handle.clone()], clock)?;
                // Its own account is listed at the directory, so that other banks can pay it
                // (the same claim again at every start is answered as the first time).
                let own = Claim {
                    client_id: OWN_ACCOUNT.into(),
                    address: settings.own_key.address(),
                    kind: AccountKind::Institution,
                    display_name: settings.name.clone(),
                    phone: None,
                };
                if let Err(e) = directory.claim_all(&[own]) {
                    let close = net.clone();
                    threads.stop(move || close.close_inbox());
                    return Err(Error::new(
                        e.code,
                        format!("claiming the bank's own account at the directory: {}", e.message),
                    ));
                }
                Hosted::Bank { handle, directory, oracle }
            }
        };
        let hosted = Arc::new(hosted);
        let stop = Arc::new(AtomicBool::new(false));

        let requests = Arc::new(dtenge_api::metrics::Metrics::default());
        let revocations = Arc::new(parking_lot::RwLock::new(
            dtenge_pki::read_revocation_list(&config.revocation_list_der)
                .map_err(|e| Error::malformed(format!("the revocation list: {e}")))?,
        ));
        let answers = match &*hosted {
            Hosted::Bank { .. } | Hosted::Oracle { .. } => Some(Arc::new(dtenge_api::platform::Answers::open(
                &config.data.join(GATEWAY_DIR),
                Arc::new(system_ms),
                config.idempotency_retention_ms,
            )?)),
            _ => None,
        };
        // The trail of what this organization's systems did through its API (`dtenge-audit`),
        // signed with the vault's `audit` key; a sandbox with its keys in files signs with the
        // node key (its entries' hashes carry their own domain).
        let audit = if config.api.is_some() {
            let key = match vault.as_ref().or(config.vault.as_ref()) {
                Some(vault) => {
                    vault.node_key(dtenge_api::platform::AUDIT_KEY_LABEL, &dtenge_env::Entropy::from_os())?
                }
                None => config.key.clone(),
            };
            let trail =
                dtenge_audit::AuditLog::open(&config.data.join(dtenge_audit::DATABASE_DIR), key, Arc::new(system_ms))?;
            Some(Arc::new(trail))
        } else {
            None
        };
        let node = gateway::Node {
            audit,
            answers,
            hosted: hosted.clone(),
            clock: Arc::new(system_ms),
            new_key: new_key(),
            metrics: requests.clone(),
            revocations: revocations.clone(),
            sandbox: config.sandbox,
        };
        let api = match (config.api, gateway::router(node)) {
            (Some(address), Some(app)) => Some(gateway::start(&config, address, app)?),
            _ => None,
        };
        let watcher = watch_revocations(&config, net.clone(), hosted.clone(), revocations, stop.clone())?;
        let ops = ops::start(
            config.ops,
            &config.certificate_names,
            ops::Sources {
                role: config.role.clone(),
                net: net.clone(),
                hosted: hosted.clone(),
                certificate_not_after_s: config.certificate_not_after_s,
                requests: api.as_ref().map(|_| requests),
            },
        )?;
        tracing::info!(
            role = %config.role,
            listen = %net.local_addr(),
            ops = %ops.local_addr(),
            sandbox = config.sandbox,
            "participant started"
        );
        Ok(Participant {
            role: config.role,
            net,
            hosted,
            threads,
            stop,
            watcher: Some(watcher),
            ops,
            api,
            _vault: vault.or(config.vault),
        })
    }

    pub fn role(&self) -> &RoleId {
        &self.role
    }

    pub fn hosted(&self) -> &Hosted {
        &self.hosted
    }

    /// Where the other participants reach this one.
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        self.net.local_addr()
    }

    /// Where `/health` and `/metrics` are served.
    pub fn ops_addr(&self) -> std::net::SocketAddr {
        self.ops.local_addr()
    }

    /// Where the node's own API is served (a bank, central).
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(server::Server::local_addr)
    }

    /// Stop: the node's API, the operations endpoint, the watcher, the role's threads (what was answered is
    /// durable; what was queued is dropped unanswered, as a crash would), the network.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        if let Some(api) = self.api.as_mut() {
            api.stop();
        }
        self.ops.stop();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let net = self.net.clone();
        self.threads.stop(move || net.close_inbox());
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The custodial keys of accounts opened at this node: from the operating system's entropy.
/// A replica of one of the notary's Raft groups (the notary's own, or a shard's), as its
/// process opens it.
struct ReplicaOf {
    id: u8,
    group: dtenge_notary_raft::Group,
    founding: Vec<u8>,
    key: dtenge_core::crypto::NodeKey,
    senders: Senders,
    /// Its inbox thread's name.
    name: String,
}

impl ReplicaOf {
    /// Open it on its store and serve its inbox.
    fn host(
        self,
        store: Store,
        transport: Arc<dyn Transport>,
        threads: &mut Threads,
        inbox: dtenge_transport::Inbox,
    ) -> Result<Hosted> {
        let ReplicaOf { id, group, founding, key, senders, name } = self;
        let replica = dtenge_notary_raft::Replica::open(dtenge_notary_raft::ReplicaConfig {
            id,
            group,
            founding,
            store,
            key,
            senders,
            transport,
            snapshot_logs: dtenge_notary_raft::SNAPSHOT_LOGS,
        })
        .map_err(|e| failed(&name)(e.to_string()))?;
        let replica = Arc::new(replica);
        let serving = replica.clone();
        threads.serve(&name, inbox, move |envelope| serving.handle(envelope))?;
        Ok(Hosted::Replica(replica))
    }
}

fn new_key() -> Arc<dyn Fn() -> dtenge_core::crypto::SecretKey + Send + Sync> {
    let entropy = dtenge_env::Entropy::from_os();
    Arc::new(move || dtenge_core::crypto::SecretKey::from_seed(entropy.seed32()))
}

/// Who is who, by the certificates: this participant's own key and its peers'.
fn anchors(config: &Config) -> Result<Anchors> {
    let own = config.key.public_key();
    let key_of = |role: &RoleId| -> Option<PublicKey> {
        if *role == config.role {
            return Some(own);
        }
        if let (RoleId::Notary, Some(notary)) = (role, &config.notary) {
            return Some(notary.key.public_key());
        }
        config.peers.iter().find(|p| p.role == *role).map(|p| p.key)
    };
    let missing = |role: RoleId| Error::malformed(format!("{} needs {role} among its peers", config.role));
    // The directory and a notary's shard check no signatures of their own: no anchors.
    if matches!(config.role, RoleId::Directory | RoleId::NotaryShard { .. }) {
        let none = own;
        return Ok(Anchors {
            issuer: none.address(),
            central_bank: none,
            oracle: none,
            notary: none,
            banks: Default::default(),
            blocked: Default::default(),
        });
    }
    let central = key_of(&RoleId::Central).ok_or_else(|| missing(RoleId::Central))?;
    let notary = key_of(&RoleId::Notary).ok_or_else(|| missing(RoleId::Notary))?;
    // The notary and central check no oracle attestations themselves: the oracle's key is the
    // notary's stand-in there, never matched by a real attestation.
    let oracle = match key_of(&RoleId::Oracle) {
        Some(key) => key,
        None if matches!(config.role, RoleId::Notary | RoleId::NotaryReplica(_) | RoleId::Central) => notary,
        None => return Err(missing(RoleId::Oracle)),
    };
    let mut banks = std::collections::BTreeMap::new();
    for peer in &config.peers {
        if let RoleId::Bank(id) = &peer.role {
            banks.insert(id.clone(), peer.key);
        }
    }
    if let RoleId::Bank(id) = &config.role {
        banks.insert(id.clone(), own);
    }
    Ok(Anchors { issuer: central.address(), central_bank: central, oracle, notary, banks, blocked: Default::default() })
}

/// Read the revocation list file every [`REVOCATION_POLL_MS`] and put a newer list in force:
/// the network ends the revoked peers' connections and refuses new ones, and a revoked bank is
/// treated as blocked by this participant's role (the notary refuses its batches, a bank its
/// payees), so that what it attested is refused even if it reached here another way.
fn watch_revocations(
    config: &Config,
    net: Arc<Net>,
    hosted: Arc<Hosted>,
    in_force: Arc<parking_lot::RwLock<dtenge_pki::RevocationList>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let path = config.revocation_list.clone();
    let banks: Vec<(String, u64)> = config
        .peers
        .iter()
        .filter_map(|p| match &p.role {
            RoleId::Bank(id) => Some((id.clone(), p.serial)),
            _ => None,
        })
        .collect();
    // The list in force at start may name a peer already.
    if let Ok(list) = dtenge_pki::read_revocation_list(&config.revocation_list_der) {
        block_revoked(&hosted, &banks, &list);
    }
    std::thread::Builder::new()
        .name("revocations".into())
        .spawn(move || {
            let mut since_look_ms = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                since_look_ms += 50;
                if since_look_ms < REVOCATION_POLL_MS {
                    continue;
                }
                since_look_ms = 0;
                // A file being replaced, or unreadable for a moment: the list in force stays.
                let Ok(bytes) = std::fs::read(&path) else { continue };
                let Ok(der) = config::revocation_list_der(&bytes) else { continue };
                let Ok(list) = dtenge_pki::read_revocation_list(&der) else { continue };
                if list.number <= net.revocation_list_number() {
                    continue;
                }
                match net.set_revocation_list(&der) {
                    Ok(()) => {
                        tracing::info!(number = list.number, "a newer revocation list is in force");
                        block_revoked(&hosted, &banks, &list);
                        *in_force.write() = list;
                    }
                    Err(e) => tracing::warn!(error = %e, "the revocation list file was refused"),
                }
            }
        })
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the revocation watcher: {e}")))
}

/// Every bank peer whose certificate `list` revokes, blocked at this participant's role.
fn block_revoked(hosted: &Hosted, banks: &[(String, u64)], list: &dtenge_pki::RevocationList) {
    for (bank, serial) in banks {
        if !list.is_revoked(*serial) {
            continue;
        }
        tracing::warn!(bank = %bank, serial, "a bank's certificate is revoked: its requests and payments to it are refused");
        match hosted {
            Hosted::Notary(notary) => notary.set_blocked(bank, true),
            Hosted::Replica(replica) => replica.refuse(bank),
            Hosted::Bank { handle, .. } => handle.service().set_blocked(bank, true),
            Hosted::Central(_) | Hosted::Directory(_) | Hosted::Oracle { .. } => {}
        }
    }
}
