//! The Digital Tenge network in one process.
//!
//! Wires the participants over one durable store: the NBK node (issuer), the bank nodes and
//! the Treasury node ([`dtenge_node`]), the notary ([`dtenge_notary`]), the ABS
//! ([`dtenge_abs`]), the ID center and the operator's controls (blocking, calendar).
//!
//! Every operation follows one path (see `docs/ARCHITECTURE.md`):
//! 1. the initiating node plans: selects and reserves tokens, builds, signs and attests;
//! 2. stateless validation: structure, conservation, signatures (batch-verified);
//! 3. the notary checks and spends atomically (pending);
//! 4. every party node plans its delta (tokens, history, transaction record);
//! 5. one durable group commit of notary, nodes, ABS and idempotency record;
//! 6. the notary finalizes and the nodes apply their deltas; the caller is answered.
//!
//! Concurrency without a global lock: payments take only their own nodes' locks briefly and
//! the notary shards they touch. Operations that move bank money (conversions, emission) hold
//! the ABS lock or the node's bank-money lock from plan to apply, so balances written as
//! absolute values never race. The `gate` is shared by every mutating operation and taken
//! exclusively only by reconciliation, which therefore always sees a state between operations.

mod ops;
pub mod pipeline;
pub mod types;

pub use dtenge_env::{Clock, Entropy, ManualClock, StopSignal, SystemClock};
pub use ops::checkpoint::{checkpoint_interval, spawn_checkpointer, CheckpointReport};
pub use ops::holding::spawn_expiry_sweeper;
pub use ops::operator::OPERATOR_TABLE;
pub use pipeline::{Completion, Pipeline, Submission};

use dtenge_abs::Abs;
use dtenge_core::calendar::Calendar;
use dtenge_core::crypto::{Address, Hash32, PublicKey, SecretKey};
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{validate, Authorities, KeyStatus, Validated};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_node::{NodeKind, NodeMeta, NodeState, Purpose};
use dtenge_notary::{Notary, Spend, SpendRequest};
use dtenge_store::{Store, Table, WriteBatch};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use types::{NbkOperation, Purchase, Receipt, VoucherProgram};

/// The NBK node's id.
pub const NBK_ID: &str = "nbk";
/// The Treasury node's id.
pub const TREASURY_ID: &str = "treasury";
/// The database directory under the data directory.
pub const DATABASE_FILE: &str = "dtenge.db";
/// Most nodes a network has: a payment locates each owner by its node's position, a `u16`.
pub const NODES_MAX: usize = u16::MAX as usize + 1;

pub(crate) const NBK_OPS_TABLE: Table = Table("nbk_operations");
pub(crate) const IDEM_TABLE: Table = Table("api_idempotency");
pub(crate) const PURCHASES_TABLE: Table = Table("card_purchases");
pub(crate) const VOUCHER_PROGRAMS_TABLE: Table = Table("voucher_programs");
pub(crate) const VOUCHER_EVENTS_TABLE: Table = Table("voucher_events");
pub(crate) const NOTIFICATIONS_TABLE: Table = Table("notifications");

/// A commercial bank of the network.
#[derive(Clone, Debug)]
pub struct BankConfig {
    pub id: String,
    pub name: String,
}

/// The participants a new network starts with.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    pub banks: Vec<BankConfig>,
}

impl NetworkConfig {
    /// Three commercial banks, the Treasury and the NBK.
    pub fn standard() -> NetworkConfig {
        let bank = |id: &str, name: &str| BankConfig { id: id.into(), name: name.into() };
        NetworkConfig {
            banks: vec![bank("steppe", "Steppe Bank"), bank("tulpar", "Tulpar Bank"), bank("sapa", "Sapa Bank")],
        }
    }
}

/// An idempotency key with the fingerprint of the request it was first used with.
#[derive(Clone, Debug)]
pub struct Idem {
    pub key: String,
    pub fingerprint: Hash32,
}

/// Where an owner of a transaction's input or output has its account: the node's position in
/// [`Network::node_ids`] and the account's index there. Found once by the payment pipeline's
/// check stage and carried to settle: the directory and the nodes' address maps only ever
/// grow, so an address stays where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    pub(crate) node: u16,
    pub(crate) account: dtenge_node::AccountIndex,
}

pub(crate) struct NodeSlot {
    /// What kind of node this is: fixed at genesis, so read without the state's lock.
    pub(crate) kind: NodeKind,
    pub(crate) state: Mutex<NodeState>,
    /// Held from plan to apply by every operation that changes this node's bank-money balances.
    pub(crate) fiat_lock: Mutex<()>,
}

/// The trust anchors validators use: the issuer, node keys, blocked nodes.
pub(crate) struct Trust {
    issuer: Address,
    central_bank: PublicKey,
    oracle: PublicKey,
    nodes: dtenge_core::hash::Map<PublicKey, String>,
    pub(crate) blocked: BTreeMap<String, String>,
}

impl Authorities for Trust {
    fn issuer(&self) -> Address {
        self.issuer
    }
    fn key_status(&self, key: &PublicKey) -> KeyStatus {
        if *key == self.central_bank {
            return KeyStatus::CentralBank;
        }
        if *key == self.oracle {
            return KeyStatus::Oracle;
        }
        match self.nodes.get(key) {
            Some(node) if self.blocked.contains_key(node) => KeyStatus::BlockedNode,
            Some(_) => KeyStatus::ActiveNode,
            None => KeyStatus::Unknown,
        }
    }
}

/// The ID center: phone and IIN/BIN to accounts. Rebuilt from the nodes' accounts at start.
#[derive(Default)]
pub(crate) struct IdCenter {
    /// Phone -> (node, client id), in order of registration.
    pub(crate) phones: HashMap<String, Vec<(String, String)>>,
    /// IIN/BIN -> nodes where the client has a digital account.
    pub(crate) clients: HashMap<String, Vec<String>>,
    /// Address -> node id: where to deliver a token.
    pub(crate) directory: dtenge_core::hash::Map<Address, String>,
}

#[derive(Default)]
pub(crate) struct Vouchers {
    pub(crate) programs: BTreeMap<String, VoucherProgram>,
    pub(crate) events: HashMap<(String, String), Receipt>,
}

/// A shared hold of the gate by one operation (or one pipeline batch). Dropped while a panic
/// unwinds, the operation may have stopped between its durable commit and its apply in memory,
/// so it poisons the network ([`Network::is_poisoned`]).
pub(crate) struct SharedGate<G> {
    _guard: G,
    poisoned: Arc<std::sync::atomic::AtomicBool>,
}

impl<G> Drop for SharedGate<G> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The whole network.
pub struct Network {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) entropy: Entropy,
    /// Shared by every mutating operation, exclusive for reconciliation (see the crate docs).
    /// In an `Arc` so that the pipeline can hold it from one batch's spend to its apply.
    pub(crate) gate: Arc<RwLock<()>>,
    /// Callers waiting for the gate exclusively: the pipeline then lets its batches drain
    /// instead of overlapping them, so they get it.
    pub(crate) exclusive_waiting: std::sync::atomic::AtomicUsize,
    pub(crate) notary: Notary,
    pub(crate) nodes: BTreeMap<String, NodeSlot>,
    /// The keys of `nodes` in order (fixed at genesis): a node's position here is how the
    /// payment pipeline names it between its stages, without a string.
    pub(crate) node_ids: Vec<String>,
    /// Node id -> display name (fixed at genesis).
    pub(crate) node_names: BTreeMap<String, String>,
    pub(crate) trust: RwLock<Trust>,
    pub(crate) ids: RwLock<IdCenter>,
    pub(crate) abs: Mutex<Abs>,
    pub(crate) calendar: RwLock<Calendar>,
    pub(crate) nbk_ops: Mutex<Vec<NbkOperation>>,
    pub(crate) inflight: Mutex<HashSet<String>>,
    /// Held from check to apply by account opening and card linking: identities (IIN, phone,
    /// address, card number) are claimed once, without holding the ID center's lock (which
    /// every payment reads) across a durable commit.
    pub(crate) onboarding: Mutex<()>,
    /// Held from plan to apply by the operator's decisions (blocking, calendar), for the same
    /// reason: the trust and calendar locks are only taken to swap in the new state.
    pub(crate) operator: Mutex<()>,
    pub(crate) purchases: Mutex<BTreeMap<String, Purchase>>,
    pub(crate) vouchers: Mutex<Vouchers>,
    /// The oracle node. One lock: holds, releases and expiries are few per second next to
    /// payments, and holding it from plan to apply makes every event's decisions sequential.
    pub(crate) oracle: Mutex<dtenge_oracle::Oracle>,
    /// What each node was told (events on its clients), newest last.
    pub(crate) notifications: Mutex<ops::holding::Notifications>,
    /// Transactions committed since open.
    pub(crate) committed_transactions: std::sync::atomic::AtomicU64,
    /// Transactions logged since the last checkpoint (or replayed at open): when it is due.
    pub(crate) changes_since_checkpoint: std::sync::atomic::AtomicU64,
    /// One checkpoint at a time.
    pub(crate) checkpoint_lock: Mutex<()>,
    /// Set when an operation panicked while it held the gate (see [`Network::is_poisoned`]).
    pub(crate) poisoned: Arc<std::sync::atomic::AtomicBool>,
    /// Signers' keys, decompressed once for the pipeline's signature checks.
    pub(crate) key_cache: dtenge_core::crypto::KeyCache,
    /// Started on first use by [`Network::pipeline`].
    pub(crate) pipeline: std::sync::OnceLock<Pipeline>,
}

fn all_tables() -> Vec<Table> {
    let mut tables = Vec::new();
    tables.extend(dtenge_notary::TABLES);
    tables.extend(dtenge_abs::TABLES);
    tables.extend(dtenge_node::TABLES);
    tables.extend(dtenge_oracle::TABLES);
    tables.extend([
        NOTIFICATIONS_TABLE,
        NBK_OPS_TABLE,
        IDEM_TABLE,
        PURCHASES_TABLE,
        VOUCHER_PROGRAMS_TABLE,
        VOUCHER_EVENTS_TABLE,
        OPERATOR_TABLE,
    ]);
    tables
}

impl Network {
    /// Open the network stored under `data_dir`, creating it from `config` on first start.
    pub fn open(data_dir: &Path, config: &NetworkConfig, clock: Arc<dyn Clock>, entropy: Entropy) -> Result<Network> {
        let store = Store::open(&data_dir.join(DATABASE_FILE), &all_tables())?;
        Network::open_store(store, config, clock, entropy)
    }

    /// Open the network on a simulated disk (the deterministic simulator's restart).
    pub fn open_simulated(
        disk: dtenge_store::SimDisk,
        config: &NetworkConfig,
        clock: Arc<dyn Clock>,
        entropy: Entropy,
    ) -> Result<Network> {
        let store = Store::open_simulated(disk, &all_tables())?;
        Network::open_store(store, config, clock, entropy)
    }

    fn open_store(store: Store, config: &NetworkConfig, clock: Arc<dyn Clock>, entropy: Entropy) -> Result<Network> {
        refuse_keyed_token_rows(&store)?;
        if store.scan(dtenge_node::META_TABLE)?.is_empty() {
            Network::genesis(&store, config, clock.as_ref(), &entropy)?;
        }
        // Networks created before the oracle existed get one on their next start.
        if dtenge_oracle::Oracle::load(&store)?.is_none() {
            let mut batch = WriteBatch::new();
            dtenge_oracle::Oracle::new(SecretKey::from_seed(entropy.seed32())).genesis_writes(&mut batch)?;
            store.commit(batch)?;
        }
        let run = match store.get(OPERATOR_TABLE, ops::operator::RUN_KEY)? {
            Some(bytes) => dtenge_store::decode::<u64>(&bytes)? + 1,
            None => 1,
        };
        let mut batch = WriteBatch::new();
        batch.put_value(OPERATOR_TABLE, ops::operator::RUN_KEY.to_vec(), &run)?;
        store.commit(batch)?;
        entropy.reseed(run);
        Network::load(store, clock, entropy)
    }

    fn genesis(store: &Store, config: &NetworkConfig, clock: &dyn Clock, entropy: &Entropy) -> Result<()> {
        let now = clock.now_ms();
        let mut batch = WriteBatch::new();
        let mut ids = BTreeSet::new();
        let mut metas = vec![
            NodeMeta { id: NBK_ID.into(), kind: NodeKind::CentralBank, name: "National Bank of Kazakhstan".into() },
            NodeMeta { id: TREASURY_ID.into(), kind: NodeKind::Treasury, name: "Treasury Committee".into() },
        ];
        for bank in &config.banks {
            metas.push(NodeMeta { id: bank.id.clone(), kind: NodeKind::Bank, name: bank.name.clone() });
        }
        // Nodes are located by a `u16` position (`Located`): the configuration may not name more.
        if metas.len() > NODES_MAX {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("{} nodes configured, at most {NODES_MAX}", metas.len()),
            ));
        }
        for meta in metas {
            if !ids.insert(meta.id.clone()) || meta.id.is_empty() || meta.id.contains('\0') {
                return Err(Error::malformed(format!("node id '{}' is empty or repeated", meta.id)));
            }
            let node = NodeState::new(
                meta,
                SecretKey::from_seed(entropy.seed32()),
                SecretKey::from_seed(entropy.seed32()),
                now,
            );
            node.genesis_writes(&mut batch)?;
        }
        store.commit(batch)
    }

    fn load(store: Store, clock: Arc<dyn Clock>, entropy: Entropy) -> Result<Network> {
        let (notary, replayed) = Notary::load(&store)?;
        let oracle = dtenge_oracle::Oracle::load(&store)?.expect("open_store writes the oracle before it loads");
        let notifications = ops::holding::Notifications::load(&store)?;
        let abs = Abs::load(&store)?;
        let states = NodeState::load_all(&store)?;
        let nbk = states
            .iter()
            .find(|n| n.meta().kind == NodeKind::CentralBank)
            .ok_or_else(|| Error::storage("node_meta: the store has nodes but no central bank node"))?;
        // Genesis refuses more (`NODES_MAX`); positions in `node_ids` are `u16`s.
        if states.len() > NODES_MAX {
            return Err(Error::storage(format!("node_meta: {} nodes, at most {NODES_MAX}", states.len())));
        }
        let mut trust = Trust {
            issuer: nbk.key().address(),
            central_bank: nbk.key().public_key(),
            oracle: oracle.public_key(),
            nodes: Default::default(),
            blocked: BTreeMap::new(),
        };
        let mut ids = IdCenter::default();
        for node in &states {
            if node.meta().kind != NodeKind::CentralBank {
                trust.nodes.insert(node.key().public_key(), node.id().to_string());
            }
            for account in node.accounts() {
                ids.register(account);
            }
        }
        let mut nodes = BTreeMap::new();
        let node_names = states.iter().map(|s| (s.id().to_string(), s.meta().name.clone())).collect();
        for state in states {
            nodes.insert(
                state.id().to_string(),
                NodeSlot { kind: state.meta().kind, state: Mutex::new(state), fiat_lock: Mutex::new(()) },
            );
        }
        let (blocked, calendar) = ops::operator::load(&store)?;
        trust.blocked = blocked;
        let nbk_ops = store.scan_values::<NbkOperation>(NBK_OPS_TABLE)?.into_iter().map(|(_, v)| v).collect();
        let purchases =
            store.scan_values::<Purchase>(PURCHASES_TABLE)?.into_iter().map(|(_, p)| (p.id.clone(), p)).collect();
        let mut vouchers = Vouchers::default();
        for (_, p) in store.scan_values::<VoucherProgram>(VOUCHER_PROGRAMS_TABLE)? {
            vouchers.programs.insert(p.id.clone(), p);
        }
        for (_, (program, event, receipt)) in store.scan_values::<(String, String, Receipt)>(VOUCHER_EVENTS_TABLE)? {
            vouchers.events.insert((program, event), receipt);
        }
        let network = Network {
            store,
            clock,
            entropy,
            gate: Arc::new(RwLock::new(())),
            exclusive_waiting: std::sync::atomic::AtomicUsize::new(0),
            notary,
            node_ids: nodes.keys().cloned().collect(),
            nodes,
            node_names,
            trust: RwLock::new(trust),
            ids: RwLock::new(ids),
            abs: Mutex::new(abs),
            calendar: RwLock::new(calendar),
            nbk_ops: Mutex::new(nbk_ops),
            inflight: Mutex::new(HashSet::new()),
            onboarding: Mutex::new(()),
            operator: Mutex::new(()),
            purchases: Mutex::new(purchases),
            vouchers: Mutex::new(vouchers),
            oracle: Mutex::new(oracle),
            notifications: Mutex::new(notifications),
            committed_transactions: std::sync::atomic::AtomicU64::new(0),
            changes_since_checkpoint: std::sync::atomic::AtomicU64::new(replayed as u64),
            checkpoint_lock: Mutex::new(()),
            key_cache: dtenge_core::crypto::KeyCache::default(),
            poisoned: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            pipeline: std::sync::OnceLock::new(),
        };
        // What the disk holds, each part checked as it was read, must also agree across
        // parts; if it does not, the platform refuses to open it (a corrupt or mixed-up data
        // directory is what an operator can act on; the program's own invariants are asserted
        // in reconciliation and stop the process).
        let check = network.reconcile();
        if !check.ok {
            return Err(Error::storage(format!("state on disk does not reconcile: {:?}", check.problems)));
        }
        Ok(network)
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The gate, shared, for one mutating operation from its plan to its apply.
    pub(crate) fn gate_shared(&self) -> SharedGate<parking_lot::RwLockReadGuard<'_, ()>> {
        self.poisoning(self.gate.read())
    }

    /// Wrap a shared hold of the gate so that a panic unwinding through it poisons the network.
    pub(crate) fn poisoning<G>(&self, guard: G) -> SharedGate<G> {
        SharedGate { _guard: guard, poisoned: self.poisoned.clone() }
    }

    /// Did an operation panic while it held the gate? Its durable commit and its apply in
    /// memory may then disagree, so the memory must not be written as a checkpoint; a restart
    /// rebuilds it from the disk.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The gate, exclusively: no operation is between its plan and its apply.
    pub(crate) fn gate_exclusive(&self) -> parking_lot::RwLockWriteGuard<'_, ()> {
        use std::sync::atomic::Ordering::SeqCst;
        self.exclusive_waiting.fetch_add(1, SeqCst);
        let gate = self.gate.write();
        self.exclusive_waiting.fetch_sub(1, SeqCst);
        gate
    }

    pub(crate) fn slot(&self, node_id: &str) -> Result<&NodeSlot> {
        self.nodes
            .get(node_id)
            .ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no node '{node_id}' in this network")))
    }

    /// A bank or Treasury node (not the NBK) that is not blocked.
    pub(crate) fn active_participant(&self, node_id: &str) -> Result<&NodeSlot> {
        let slot = self.slot(node_id)?;
        if slot.kind == NodeKind::CentralBank {
            return Err(Error::new(ErrorCode::Forbidden, "the NBK node has no client accounts"));
        }
        self.ensure_not_blocked(node_id)?;
        Ok(slot)
    }

    pub(crate) fn ensure_not_blocked(&self, node_id: &str) -> Result<()> {
        if let Some(reason) = self.trust.read().blocked.get(node_id) {
            return Err(Error::new(
                ErrorCode::BankBlocked,
                format!("node '{node_id}' is blocked by the NBK operator: {reason}"),
            ));
        }
        Ok(())
    }

    pub(crate) fn issuer(&self) -> Address {
        self.trust.read().issuer
    }

    pub(crate) fn nbk_key(&self) -> Result<SecretKey> {
        Ok(self.slot(NBK_ID)?.state.lock().key().clone())
    }

    /// Run `op` at most once per idempotency key. A retry with the same key and request gets
    /// the first answer; the same key with another request is refused; a retry while the first
    /// is still running is told to wait. Errors are not remembered: an operation that failed
    /// changed nothing and may be retried.
    pub fn once<T, F>(&self, idem: Option<Idem>, op: F) -> Result<T>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: FnOnce(Option<&Idem>) -> Result<T>,
    {
        let Some(idem) = idem else { return op(None) };
        if idem.key.is_empty() || idem.key.len() > 128 {
            return Err(Error::malformed("an idempotency key has 1 to 128 characters"));
        }
        if !self.inflight.lock().insert(idem.key.clone()) {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                format!("request with idempotency key '{}' is still being processed", idem.key),
            ));
        }
        // Removes the key however `op` ends, unwinding included.
        struct InFlight<'a>(&'a Mutex<HashSet<String>>, &'a str);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.lock().remove(self.1);
            }
        }
        let _in_flight = InFlight(&self.inflight, &idem.key);
        self.once_inner(&idem, op)
    }

    fn once_inner<T, F>(&self, idem: &Idem, op: F) -> Result<T>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: FnOnce(Option<&Idem>) -> Result<T>,
    {
        match self.stored_answer(idem)? {
            Some(answer) => Ok(answer),
            None => op(Some(idem)),
        }
    }

    /// The answer recorded for the idempotency key `idem`, if its request ran before;
    /// `IDEMPOTENCY_KEY_REUSED` if the key was used with another request.
    pub fn stored_answer<T: serde::de::DeserializeOwned>(&self, idem: &Idem) -> Result<Option<T>> {
        let Some(stored) = self.store.get(IDEM_TABLE, idem.key.as_bytes())? else { return Ok(None) };
        let (fingerprint, answer): (Hash32, Vec<u8>) = dtenge_store::decode(&stored)?;
        if fingerprint != idem.fingerprint {
            return Err(Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            ));
        }
        // A fjall row, like the record around it: one that does not decode is corrupt storage.
        serde_json::from_slice(&answer)
            .map(Some)
            .map_err(|e| Error::storage(format!("the answer stored for key '{}' does not decode: {e}", idem.key)))
    }

    /// Durably commit `batch`, with the idempotency record of `answer` when there is a key.
    pub(crate) fn commit<T: Serialize>(&self, idem: Option<&Idem>, mut batch: WriteBatch, answer: &T) -> Result<()> {
        if let Some(idem) = idem {
            idempotency_record(&mut batch, idem, answer)?;
        }
        self.store.commit(batch)
    }

    /// The node each party of a transaction belongs to; refused if any of them is blocked.
    fn party_nodes(&self, tx: &Transaction) -> Result<Vec<&str>> {
        let ids = self.ids.read();
        let owners = tx.body.inputs.iter().map(|i| i.output.owner).chain(tx.body.outputs.iter().map(|o| o.owner));
        // A handful of nodes at most, so a vector searched linearly; the ids are borrowed from
        // `self.nodes`, which never changes, so nothing is allocated per payment.
        let mut nodes: Vec<&str> = Vec::with_capacity(self.nodes.len());
        for owner in owners {
            let node = ids.directory.get(&owner).ok_or_else(|| {
                Error::new(ErrorCode::UnknownAccount, format!("no digital account has address {owner}"))
            })?;
            if !nodes.contains(&node.as_str()) {
                // The directory registers accounts of the network's nodes only.
                let (id, _) = self.nodes.get_key_value(node).expect("the directory names nodes of the network");
                nodes.push(id);
            }
        }
        drop(ids);
        nodes.sort_unstable();
        for node in &nodes {
            self.ensure_not_blocked(node)?;
        }
        Ok(nodes)
    }

    /// [`Network::party_nodes`] from owners located already (the payment pipeline's check
    /// stage found them): no directory lookup.
    pub(crate) fn party_nodes_located(&self, located: &[Located]) -> Result<Vec<&str>> {
        let mut positions: Vec<u16> = Vec::with_capacity(self.nodes.len());
        for l in located {
            if !positions.contains(&l.node) {
                positions.push(l.node);
            }
        }
        // Positions follow the ids' order, so this is the order `party_nodes` gives.
        positions.sort_unstable();
        let nodes = positions
            .into_iter()
            .map(|p| {
                let node = self.node_ids.get(usize::from(p));
                node.map(String::as_str).expect("a located position is one `node_position` gave")
            })
            .collect::<Vec<&str>>();
        for node in &nodes {
            self.ensure_not_blocked(node)?;
        }
        Ok(nodes)
    }

    /// A node's position in [`Network::node_ids`].
    pub(crate) fn node_position(&self, node_id: &str) -> Result<u16> {
        let position = self
            .node_ids
            .binary_search_by(|id| id.as_str().cmp(node_id))
            .map_err(|_| Error::new(ErrorCode::UnknownAccount, format!("no node '{node_id}' in this network")))?;
        Ok(u16::try_from(position).expect("at most NODES_MAX nodes: genesis and load refuse more"))
    }

    /// Validate, notarize, persist and apply one transaction (steps 2-6 of the payment path).
    /// `fiat` sets bank-money balances `(node, client, new balance)` in the same commit; the
    /// caller holds those nodes' `fiat_lock`s. On failure nothing changed and the transaction's
    /// reserved tokens are released.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn execute<T: Serialize>(
        &self,
        idem: Option<&Idem>,
        tx: &Transaction,
        purpose: Purpose,
        reference: Option<&str>,
        fiat: &[(String, String, dtenge_core::Amount)],
        extra: WriteBatch,
        answer: &T,
    ) -> Result<Validated> {
        self.execute_any(idem, tx, purpose, reference, fiat, extra, answer)
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_any<T: Serialize>(
        &self,
        idem: Option<&Idem>,
        tx: &Transaction,
        purpose: Purpose,
        reference: Option<&str>,
        fiat: &[(String, String, dtenge_core::Amount)],
        extra: WriteBatch,
        answer: &T,
    ) -> Result<Validated> {
        let result = self.execute_inner(idem, tx, purpose, reference, fiat, extra, answer);
        if result.is_err() {
            self.release(tx);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_inner<T: Serialize>(
        &self,
        idem: Option<&Idem>,
        tx: &Transaction,
        purpose: Purpose,
        reference: Option<&str>,
        fiat: &[(String, String, dtenge_core::Amount)],
        extra: WriteBatch,
        answer: &T,
    ) -> Result<Validated> {
        let now = self.clock.now_ms();
        let validated = validate(tx, &*self.trust.read())?;
        let parties = self.party_nodes(tx)?;
        let request = SpendRequest::of(&validated);
        // Operations that build fresh transactions refuse a repeated transaction id, so that
        // their side effects (ABS postings, registries) can never apply twice. Client-signed
        // transfers, which a client may send again, go through `pipeline::settle` instead.
        if self.notary.try_spend(request)? == Spend::AlreadyCommitted {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("transaction {} is already committed; nothing was done again", validated.tx_id),
            ));
        }
        let planned = self.plan_deltas(tx, &validated, &parties, None, purpose, reference, fiat, now).and_then(
            |(mut batch, deltas)| {
                dtenge_notary::Notary::writes(&request, &mut batch);
                batch.append(extra);
                self.commit(idem, batch, answer)?;
                Ok(deltas)
            },
        );
        let deltas = match planned {
            Ok(deltas) => deltas,
            Err(e) => {
                self.notary.revert(request);
                return Err(e);
            }
        };
        self.publish(deltas, request);
        Ok(validated)
    }

    /// A transaction is durable: the party nodes apply their deltas, then the notary
    /// finalizes. Nodes first: until `finalize`, the new outputs cannot be spent, so a
    /// transaction spending them finds them in its node's wallet.
    pub(crate) fn publish(&self, deltas: Vec<dtenge_node::Delta>, request: SpendRequest<'_>) {
        // The notary first: a node offers a received token to coin selection as soon as it
        // applies, and the notary must already call that token spendable then (the other way
        // round, a payment racing this one could pick the change and get REQUEST_IN_PROGRESS).
        self.notary.finalize(request);
        self.apply_deltas(deltas);
    }

    /// [`Network::publish`] for the settle stage, which holds every notary shard.
    pub(crate) fn publish_in(
        &self,
        notary: &mut dtenge_notary::AllShards<'_>,
        deltas: Vec<dtenge_node::Delta>,
        request: SpendRequest<'_>,
    ) {
        notary.finalize(request);
        self.apply_deltas(deltas);
    }

    fn apply_deltas(&self, deltas: Vec<dtenge_node::Delta>) {
        for delta in deltas {
            let slot = self.nodes.get(delta.node_id()).expect("a delta was planned by one of the network's nodes");
            slot.state.lock().apply(delta);
        }
        self.committed_transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changes_since_checkpoint.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Transactions committed since this process opened the network (the consoles' live
    /// payments-per-second chart samples it).
    pub fn committed_transactions(&self) -> u64 {
        self.committed_transactions.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_deltas(
        &self,
        tx: &Transaction,
        validated: &Validated,
        parties: &[&str],
        located: Option<&[Located]>,
        purpose: Purpose,
        reference: Option<&str>,
        fiat: &[(String, String, dtenge_core::Amount)],
        now: u64,
    ) -> Result<(WriteBatch, Vec<dtenge_node::Delta>)> {
        let mut batch = WriteBatch::new();
        let mut nodes: Vec<&str> = parties.to_vec();
        nodes.extend(fiat.iter().map(|(n, _, _)| n.as_str()));
        nodes.sort_unstable();
        nodes.dedup();
        let mut deltas = Vec::with_capacity(nodes.len());
        let mut here: Vec<Option<dtenge_node::AccountIndex>> = Vec::new();
        for node in nodes {
            let mut state = self.slot(node)?.state.lock();
            let mut delta = match located {
                None => state.plan_commit_ids(
                    tx,
                    &validated.tx_id,
                    &validated.inputs,
                    &validated.outputs,
                    purpose,
                    reference,
                    now,
                )?,
                Some(located) => {
                    let position = self.node_position(node)?;
                    here.clear();
                    here.extend(located.iter().map(|l| (l.node == position).then_some(l.account)));
                    state.plan_commit_located(
                        tx,
                        &validated.tx_id,
                        &validated.inputs,
                        &validated.outputs,
                        &here,
                        purpose,
                        reference,
                        now,
                    )?
                }
            };
            for (_, client, balance) in fiat.iter().filter(|(n, _, _)| n == node) {
                delta.set_fiat(client, *balance);
            }
            delta.writes(&state, &mut batch)?;
            deltas.push(delta);
        }
        let archived: Vec<&str> = deltas.iter().filter(|delta| delta.moves_tokens()).map(|d| d.node_id()).collect();
        dtenge_node::archive(&archived, &validated.tx_id, tx, &mut batch)?;
        Ok((batch, deltas))
    }

    /// Undo the reservations this transaction made, wherever they are (a handful of nodes).
    pub(crate) fn release(&self, tx: &Transaction) {
        for slot in self.nodes.values() {
            slot.state.lock().release(tx);
        }
    }

    /// A fresh nonce for a transaction body.
    pub(crate) fn nonce(&self) -> u64 {
        self.entropy.nonce()
    }

    /// Is this transaction committed at the notary?
    pub fn is_committed(&self, tx_id: &TxId) -> bool {
        self.notary.is_committed(tx_id)
    }

    /// Ids of every node, NBK first.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }
}

/// Data directories written by earlier versions, which this one cannot read. It refuses them
/// with a clear error rather than open them with tokens missing:
///
/// - before tokens, history and committed ids moved to change logs (2026-11-22), they were
///   keyed rows in the first five tables;
/// - before the log tables moved to the store's own journal (2026-11-22, later), their rows
///   were in fjall tables of the log tables' names.
fn refuse_keyed_token_rows(store: &Store) -> Result<()> {
    const KEYED_ROWS_BEFORE_CHANGE_LOGS: [Table; 5] = [
        Table("notary_unspent"),
        Table("notary_committed"),
        Table("node_tokens"),
        Table("node_history"),
        Table("node_txs"),
    ];
    let log_rows_in_fjall = [
        dtenge_notary::UNSPENT.log,
        dtenge_notary::COMMITTED_LOG,
        dtenge_node::TOKENS.log,
        dtenge_node::HISTORY_LOG,
        dtenge_node::TXS_LOG,
    ]
    .map(|log| log.table());
    for table in KEYED_ROWS_BEFORE_CHANGE_LOGS.into_iter().chain(log_rows_in_fjall) {
        if store.has_rows(table)? {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!(
                    "this data directory was written by an earlier dtenge (its table {} holds rows this version keeps elsewhere) \
                     and this version cannot read it: start with a fresh data directory",
                    table.0
                ),
            ));
        }
    }
    Ok(())
}

/// The record that answers a retry of the request `idem` with `answer`; it commits with the
/// operation.
pub(crate) fn idempotency_record<T: Serialize>(batch: &mut WriteBatch, idem: &Idem, answer: &T) -> Result<()> {
    // Answers are the API's response types: plain data that serde_json always encodes.
    let json = serde_json::to_vec(answer).expect("an answer is plain data, which serde_json encodes");
    batch.put_value(IDEM_TABLE, idem.key.as_bytes(), &(idem.fingerprint, json))
}

impl IdCenter {
    pub(crate) fn register(&mut self, account: &dtenge_node::Account) {
        self.directory.insert(account.address, account.node_id.clone());
        if account.client_id == dtenge_node::OWN_ACCOUNT {
            return;
        }
        let banks = self.clients.entry(account.client_id.clone()).or_default();
        if !banks.contains(&account.node_id) {
            banks.push(account.node_id.clone());
        }
        if let Some(phone) = &account.phone {
            self.phones.entry(phone.clone()).or_default().push((account.node_id.clone(), account.client_id.clone()));
        }
    }
}
