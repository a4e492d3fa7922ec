//! The bank role: one commercial bank's node (or the Treasury's), with its own store, its own
//! keys, and the payment protocol with the notary and the other banks.
//!
//! It keeps its clients' accounts and wallets ([`dtenge_node::NodeState`], a pure state
//! machine) in its own store, and talks to the rest of the network only through envelopes on a
//! [`Transport`]:
//!
//! 1. **Submit** ([`BankService::submit`], then [`BankService::flush`] takes what is queued in
//!    batches): a client's own signed transfer, or a custodial payment the bank builds and
//!    signs for its client, is checked (the inputs are this bank's clients' tokens, not
//!    reserved; every payee is reachable), attested with the bank's node key (one signature per
//!    batch), validated completely (structure, conservation, policies, every signature the bank
//!    did not make itself), its inputs reserved, and the batch is written to the bank's
//!    **outbox** (durably) before the bank signs a [`NotarizeRequest`] of compact transactions
//!    once and sends it. The client is answered when the notary's answer has been applied.
//! 2. **The notary's answer** ([`NotarizeReply`]): the certificate is checked under the
//!    notary's key and every proof against the compact hash the bank computes itself; the bank
//!    applies its side of each committed transaction (inputs spent, change and payments to its
//!    own clients received, history), writes a numbered [`Deliver`] for each payee bank and the
//!    answers of idempotency keys, and drops the batch from its outbox, all in one durable
//!    commit; a refused transaction's reservation is released.
//! 3. **Deliveries** from other banks (and the NBK): applied in each sender's order, once
//!    each, after the certificate, the stateless rules and the attestations are checked; then
//!    acknowledged.
//!
//! 4. **Holds and releases** (`hold`): a custodial client's hold of an oracle event's amount,
//!    and the releases the oracle orders, each written to the bank's own table, attested by
//!    the oracle, notarized alone and delivered to the oracle (and a release to its payees'
//!    banks) in the commit that applies it.
//! 5. **Programmed spends** (`programmed`): a custodial client's marked transfer, e-invoice
//!    or VAT payment, contract payment or withdrawal, built from the oracle's plan and then
//!    going the way of a hold (its own table, its own batch numbers, delivered to the oracle
//!    and the payees' banks); split payments are custodial payments to several payees.
//!
//! Recovery: a crash anywhere leaves either the batch in the outbox (so it is sent again, and
//! the notary answers each transaction by its id: never spent twice, never lost) or the
//! applied result with its deliveries (so they are sent again until acknowledged). Requests and
//! deliveries not answered within [`RESEND_AFTER_MS`] are sent again by [`BankService::tick`].
//!
//! Idempotency: a request with an [`IdemKey`] is answered once per key. The key is claimed in
//! memory when the request is admitted (the same key twice in one batch pays once), written
//! as in flight with the outbox and as committed with the answer; a retry while in flight
//! waits for the same answer, one after gets the stored answer, another request under the
//! same key is refused `IDEMPOTENCY_KEY_REUSED`. A refusal is not remembered: nothing changed,
//! and the request may be retried.
//!
//! One lock guards the role's state from a step's plan to its apply, durable commit included:
//! a bank's steps are sequential, as a state machine's are.

#![forbid(unsafe_code)]

mod applied;
mod cards;
mod checkpoint;
mod claims;
mod conversion;
mod deliver;
mod directory_client;
mod figures;
mod hold;
mod label;
mod programmed;
mod redeem;
mod registry;
mod reply;
mod state;
mod submit;
mod verify;
mod vouchers;

pub use applied::{AppliedFuture, APPLIED_RECENT_MAX};
pub use checkpoint::IDS_PER_HOLDING;
pub use claims::{claim_of, AccountKey, Opening, CLAIMS_IN_FLIGHT_MAX};
pub use directory_client::{DirectoryClient, ANSWER_WAIT_MS, ASK_AGAIN_AFTER_MS};
pub use figures::{AtSeq, Figures, Progress, APPLIED_KEPT_MAX};
pub use hold::{HOLDS_IN_FLIGHT_MAX, HOLD_BATCH_BIT, HOLD_TABLE};
pub use label::{Label, REFERENCE_CHARS_MAX};
pub use programmed::{PLAN_RETRIES_MAX, PROGRAMMED_TABLE, SPENDS_IN_FLIGHT_MAX, SPEND_BATCH_BITS, SPLIT_LINES_MAX};
pub use redeem::{REDEEM_TABLE, REDEMPTIONS_IN_FLIGHT_MAX};
pub use registry::{Registry, RegistryLine, REGISTRY_LINES_MAX};
pub use state::{tables, BANK_META_TABLE, IDEM_TABLE, OUTBOX_LOG, OUTBOX_SNAPSHOT_EVERY, RECENT_COMMITTED_MAX};
// Cards and vouchers across roles.
pub use cards::{CardRequest, RefundReceipt, Refunding, PAYOUTS_TABLE, PURCHASES_TABLE, REFUNDS_TABLE};
pub use dtenge_wire::{CardMode, PurchaseRecord};
pub use vouchers::{EventRecord, VoucherEvent, VoucherProgram, VoucherProgramRequest, EVENTS_TABLE, PROGRAMS_TABLE};

use crossbeam_channel::Sender;
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{Address, Hash32, KeyCache, NodeKey, SecretKey};
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::{Account, Custody, NodeMeta, NodeState};
use dtenge_store::{Store, WriteBatch};
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, RoleId};
use parking_lot::{Mutex, RwLock};
use state::Inner;
use std::sync::Arc;
use submit::Submission;

#[allow(unused_imports)] // Named by the crate docs.
use dtenge_wire::{Deliver, NotarizeReply, NotarizeRequest};

/// A request or a delivery not answered after this long is sent again.
pub const RESEND_AFTER_MS: u64 = 200;
/// Most batches at the notary at once: beyond it, submissions are refused until answers come
/// (`LIMIT_EXCEEDED`), so a slow notary slows its banks instead of growing their memory.
pub const OUTBOX_BATCHES_MAX: usize = 1_024;
/// Most batches [`BankService::flush`] keeps at the notary before it waits for an answer.
pub const BATCHES_SENDING_MAX: usize = 2;
/// Most transactions in one batch (one notarize request, one certificate).
pub const BATCH_TXS_MAX: usize = dtenge_wire::message::BATCH_TXS_MAX;
/// Most accounts one [`BankService::open_accounts`] opens.
pub const OPEN_ACCOUNTS_MAX: usize = 100_000;
/// Most submissions waiting to be taken: beyond it, `submit` answers `LIMIT_EXCEEDED` at once.
pub const QUEUE_SUBMISSIONS_MAX: usize = 65_536;
/// Most background consolidations one tick queues (issue 19's dust policy): at a tick every
/// 50 ms, up to 160 a second, each merging at least `CONSOLIDATE_TOKENS_MIN` tokens, while
/// payments keep the rest of every batch.
pub const CONSOLIDATIONS_PER_TICK_MAX: usize = 8;
/// Most background consolidations in flight at once: no more are taken until they answer.
pub const CONSOLIDATIONS_IN_FLIGHT_MAX: usize = 64;

/// Where the account behind an address is: the directory's read model, as a bank needs it.
pub trait Directory: Send + Sync {
    /// The id of the bank (or Treasury) holding the account with `address`; `Ok(None)` when
    /// no bank does. An error when the directory cannot be asked now: the payment is refused
    /// with it and may be sent again (it is not an unknown payee).
    fn bank_of(&self, address: &Address) -> Result<Option<String>>;

    /// Whether a question waits on the network (the directory in a process of its own) and
    /// keeps the answer: a batch then learns its payees' banks before it takes the bank's
    /// lock (`submit.rs`, `learn_payee_banks`). In memory (one process), no.
    fn asks_across_processes(&self) -> bool {
        false
    }

    /// Learn the banks of many addresses ahead of a batch (see
    /// [`Directory::asks_across_processes`]); what cannot be learnt now is asked again when
    /// the payment needs it. A directory across processes asks them all before it waits for
    /// any answer: a batch of new payees then costs one round trip, not one each.
    fn learn_banks(&self, addresses: &[Address]) {
        for address in addresses {
            let _ = self.bank_of(address);
        }
    }

    /// The account registered to a phone (`+7XXXXXXXXXX`) or held by a client (IIN/BIN): at
    /// `bank` when it is named, else the first listed; `Ok(None)` when none is. A directory
    /// that lists no phones or clients (a test's) keeps this answer.
    fn find(&self, _who: Who<'_>, _bank: Option<&str>) -> Result<Option<Found>> {
        Ok(None)
    }
}

/// Whom a payer names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who<'a> {
    Phone(&'a str),
    Client(&'a str),
}

/// An account the directory lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub address: Address,
    pub bank: String,
    pub kind: dtenge_wire::AccountKind,
}

/// A transaction committed at the notary and applied by its payer's bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub tx_id: TxId,
    /// The notary's certificate that answered it.
    pub seq: u64,
}

/// Where a submission's answer arrives.
pub type Answer = dtenge_sync::oneshot::Receiver<Result<Committed>>;

/// Where the bank sends a submission's answer: its own channel ([`BankService::submit`]), or
/// a channel the caller shares between many submissions, each answer tagged with the caller's
/// number for it ([`BankService::submit_tagged`]: a gateway or a load generator waits on one
/// channel instead of thousands).
#[derive(Clone, Debug)]
pub enum Reply {
    Own(dtenge_sync::oneshot::Sender<Result<Committed>>),
    Tagged { tag: u64, to: Sender<(u64, Result<Committed>)> },
}

impl Reply {
    /// Answer; a caller that stopped waiting is no error of the bank's.
    pub(crate) fn send(&self, result: Result<Committed>) {
        match self {
            Reply::Own(to) => {
                let _ = to.send(result);
            }
            Reply::Tagged { tag, to } => {
                let _ = to.send((*tag, result));
            }
        }
    }
}

/// What a commit made under the role's lock owes once durable ([`BankService::finish_commit`]).
pub struct AfterCommit {
    pub(crate) durable: dtenge_store::PendingCommit,
    /// The transactions answered by the commit.
    pub(crate) answered: Vec<TxAnswer>,
    /// Deliveries planned in the commit, sent once it is durable.
    pub(crate) sends: Vec<dtenge_delivery::Planned>,
    /// The delivery the commit applied, acknowledged once it is durable.
    pub(crate) ack: Option<(RoleId, u64)>,
    /// The commit applied a delivery of certified transactions, these ones
    /// ([`BankService::applied`]).
    pub(crate) delivered: Option<Vec<TxId>>,
}

/// What the bank's inbox hands to its finisher ([`BankService::pipeline`]).
pub enum Finish {
    /// A step's commit: waited for, then what it owes is done ([`BankService::finish_commit`]).
    After(AfterCommit, u64),
    /// Answered once every step handed over before is finished.
    Barrier(dtenge_sync::oneshot::Sender<()>),
}

/// How the bank's inbox takes a message ([`BankService::handle`]).
enum Taking {
    /// A notary's answer to a payment batch, its certificate checked: pipelined.
    Reply(reply::Signed),
    /// A certified delivery, checked: pipelined.
    Delivery(deliver::Delivered),
    /// An acknowledgement: it sends nothing and writes only with a later commit, so it needs
    /// no wait for the finisher (and there is one for every delivery).
    Ack,
    /// Handled whole, after the finisher has done what the steps before owe.
    Whole,
}

/// Most steps handed to a bank's finisher and not finished; the inbox waits beyond it.
pub const FINISH_QUEUE_MAX: usize = 1_024;

/// A transaction's answer, sent to whoever waits for it once its commit is durable.
pub(crate) struct TxAnswer {
    pub(crate) tx_id: TxId,
    pub(crate) answer: Result<Committed>,
    /// Its idempotency key, in flight until then.
    pub(crate) idem_key: Option<String>,
    /// A payment from the outbox: remembered among the recent commits, out of the outbox.
    pub(crate) from_outbox: bool,
}

/// What a client asks its bank to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Pass on a transfer the client built and signed with its own key.
    Signed(Transaction),
    /// Pay `payees` from the client's account, the bank building and signing the transaction
    /// with the client's custodial key.
    Pay { client_id: String, payees: Vec<(Address, Amount)> },
    /// Pay `amount` from the client's account to the account registered to `phone` (SPEC
    /// sub-scenario 8), at `bank` when the payer names one (a person may register one phone
    /// at several banks), found in the directory when the payment is taken.
    PayPhone { client_id: String, phone: String, bank: Option<String>, amount: Amount },
    /// Convert between the client's bank money and DT (SPEC sub-scenarios 4, 5, 11, 12): DT
    /// moves between the client and the bank's own account, and the client's bank-money
    /// balance moves the other way in the same commit, when the notary has certified it.
    Convert { client_id: String, direction: Conversion, amount: Amount },
    /// A card flow (`cards`): a purchase named by its card, an ATM withdrawal, a refund.
    Card(CardRequest),
    /// A voucher event (`vouchers`), taken through [`BankService::voucher_event`].
    Voucher(VoucherEvent),
    /// Merge up to `TX_INPUTS_MAX` of the client's smallest spendable standard tokens into one
    /// (issue 19): a transfer to itself, signed with its custodial key, validated and
    /// notarised like any other; its balance and history do not change. `CONFLICT` when it
    /// has fewer than two such tokens.
    Consolidate { client_id: String },
}

/// Which way a client's conversion goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Bank money -> DT, paid from the bank's own DT.
    ToDt,
    /// DT -> bank money, paid to the bank's own account.
    FromDt,
}

/// An idempotency key with the fingerprint of the request it was first used with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdemKey {
    pub key: String,
    pub fingerprint: Hash32,
}

/// Who the bank is and its keys: what its store is created with on the first start, and the
/// keys it is opened with on every start (the vault's, `dtenge-keys`).
#[derive(Clone, Debug)]
pub struct Genesis {
    pub meta: NodeMeta,
    /// Its attestations and its requests to the notary; checked at every start against the
    /// public key its store was created with.
    pub node_key: NodeKey,
    /// The key of the bank's own account (its DT liquidity): sealed into the store on the
    /// first start, like a custodial client's.
    pub own_key: SecretKey,
    /// Seals its custodial clients' keys at rest.
    pub custody: Custody,
    pub now_ms: u64,
}

/// Counters for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankStats {
    pub batches_sent: u64,
    pub batches_resent: u64,
    pub deliveries_applied: u64,
    /// Transactions in deliveries that failed validation or their certificate: not applied.
    pub deliveries_rejected: u64,
}

/// The bank role.
pub struct BankService {
    id: String,
    store: Store,
    key: NodeKey,
    transport: Arc<dyn Transport>,
    directory: Arc<dyn Directory>,
    anchors: RwLock<Anchors>,
    /// Signers' keys, decompressed once (clients sign many payments with one key).
    key_cache: KeyCache,
    queue: Mutex<Vec<Submission>>,
    /// The background consolidations in flight, by client, with their answers: one refused
    /// (the bank blocked before it knew) notes its account again (see `tick`).
    consolidating: Mutex<Vec<(String, dtenge_sync::oneshot::Receiver<Result<Committed>>)>>,
    /// The role's state; each release of its lock publishes the running figures
    /// ([`BankService::figures`]).
    inner: figures::RoleLock,
    /// Who the bank is: fixed at genesis, read by monitoring without the lock.
    meta: NodeMeta,
    /// The transactions applied lately from deliveries, and who waits for one (a gateway
    /// that answers once a payee's bank holds a payment), so that no one polls the bank's lock.
    applied: applied::Applied,
    /// Where the inbox hands its steps' commits when they are pipelined
    /// ([`BankService::pipeline`]); unset, each step waits for its own.
    finisher: std::sync::OnceLock<Arc<dtenge_sync::Queue<Finish>>>,
    /// The retention of idempotency records ([`BankService::tick`] sweeps them).
    idem_retention: dtenge_store::retention::Retention,
    idem_retention_ms: std::sync::atomic::AtomicU64,
    /// One checkpoint of the tokens at a time ([`BankService::checkpoint`]).
    checkpoint_lock: Mutex<()>,
    /// The node's token changes counted when the current checkpoint began (0 until one is
    /// written in this run: a start counts the changes it replayed).
    checkpointed_changes: std::sync::atomic::AtomicU64,
}

/// A history line with its counterparty's name, when the bank may show it (a client of its own).
pub type NamedEntry = (dtenge_node::HistoryEntry, Option<String>);

impl BankService {
    /// Open the bank on its own store (created with [`tables`]); on the first start the store
    /// is initialized from `genesis`. Batches left in the outbox and deliveries not
    /// acknowledged are sent again by the first [`BankService::tick`].
    pub fn open(
        store: Store,
        genesis: Genesis,
        anchors: Anchors,
        transport: Arc<dyn Transport>,
        directory: Arc<dyn Directory>,
    ) -> Result<BankService> {
        if store.scan(dtenge_node::META_TABLE)?.is_empty() {
            let node = NodeState::new(
                genesis.meta.clone(),
                genesis.node_key.clone(),
                genesis.own_key,
                genesis.custody.clone(),
                genesis.now_ms,
            );
            let mut batch = WriteBatch::new();
            node.genesis_writes(&mut batch)?;
            store.commit(batch)?;
        }
        let moved = dtenge_node::migrate_history_log(&store)?;
        if moved > 0 {
            tracing::info!(bank = %genesis.meta.id, lines = moved, "history lines moved from the old log to their table");
        }
        let node = NodeState::load(&store, genesis.node_key, genesis.custody)?;
        if node.id() != genesis.meta.id {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!("this store holds the node '{}', not '{}'", node.id(), genesis.meta.id),
            ));
        }
        if let Some(before) = node.rotated_from() {
            // A rotated node key (docs/OPERATIONS.md, "Rotating a node key"): recorded, so
            // that the next start is not a rotation again.
            let mut batch = WriteBatch::new();
            node.meta_writes(&mut batch)?;
            store.commit(batch)?;
            tracing::info!(bank = %node.id(), before = %before.address(), now = %node.key().address(), "node key rotated");
        }
        let key = node.key().clone();
        let meta = node.meta().clone();
        let inner = Inner::load(&store, node)?;
        let mut anchors = anchors;
        anchors.blocked.extend(state::load_blocked(&store)?);
        Ok(BankService {
            id: genesis.meta.id,
            store,
            key,
            transport,
            directory,
            anchors: RwLock::new(anchors),
            key_cache: KeyCache::default(),
            queue: Mutex::new(Vec::new()),
            consolidating: Mutex::new(Vec::new()),
            inner: figures::RoleLock::new(inner),
            meta,
            applied: applied::Applied::default(),
            finisher: std::sync::OnceLock::new(),
            idem_retention: state::idem_retention(),
            idem_retention_ms: std::sync::atomic::AtomicU64::new(
                dtenge_store::retention::IDEMPOTENCY_RETENTION_MS_DEFAULT,
            ),
            checkpoint_lock: Mutex::new(()),
            checkpointed_changes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A page of `client_id`'s history, newest first (`limit` lines after the `offset`
    /// newest), each with its counterparty's name when the counterparty is a client of this
    /// bank too; and how many lines the history holds. The lines are read from the store
    /// (`dtenge_node::history_page`), outside the bank's lock; the names under it.
    pub fn history(&self, client_id: &str, offset: usize, limit: usize) -> Result<(Vec<NamedEntry>, usize)> {
        self.read(|node| node.account(client_id).map(|_| ()))?;
        let (entries, total) = dtenge_node::history_page(&self.store, &self.id, client_id, offset, limit)?;
        let named = self.read(|node| {
            entries
                .into_iter()
                .map(|e| {
                    let name = e
                        .counterparty
                        .and_then(|a| node.client_of(&a))
                        .and_then(|c| node.account(c).ok())
                        .map(|a| a.name.clone());
                    (e, name)
                })
                .collect()
        });
        Ok((named, total))
    }

    /// The NBK's address, the issuer every DT token names: what a transaction built for a
    /// client to sign pays to (its outputs name it).
    pub fn issuer(&self) -> Address {
        self.anchors.read().issuer
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn role(&self) -> RoleId {
        RoleId::Bank(self.id.clone())
    }

    /// The bank's running figures (DT held, accounts, tokens) as of the last step it
    /// finished, read without the role's lock: monitoring never waits for a payment's commit.
    /// Once the bank is quiet they equal what [`BankService::read`] returns.
    pub fn figures(&self) -> Figures {
        self.inner.published().figures()
    }

    /// A number for the present moment, to ask for progress published after it
    /// ([`BankService::progress_after`]).
    pub fn progress_epoch(&self) -> u64 {
        self.inner.epoch()
    }

    /// How far the bank's batches at the notary and its deliveries have got, as published by
    /// a step that began after `epoch` was read ([`BankService::progress_epoch`]), so it
    /// includes every batch sent before: what a reconciliation waits on. Never waits for the
    /// role's lock: `None` while a step that began before is still under way (ask again).
    pub fn progress_after(&self, epoch: u64) -> Option<Progress> {
        self.inner.progress_after(epoch)
    }

    /// The bank's DT and tokens as of the notary's certificate `seq`: its figures minus what
    /// the certificates it applied with a larger number changed (read without the role's
    /// lock). Exact once every certificate up to `seq` it is owed is applied (its batches
    /// answered, the deliveries to it applied: see [`BankService::progress`]); `None` when it
    /// no longer keeps the changes of a certificate after `seq` ([`APPLIED_KEPT_MAX`]).
    pub fn at_seq(&self, seq: u64) -> Option<AtSeq> {
        self.inner.published().at_seq(seq)
    }

    /// Who the bank is (its id, name and kind), read without the role's lock.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// Read the node's state (accounts, balances, history).
    pub fn read<T>(&self, f: impl FnOnce(&NodeState) -> T) -> T {
        f(&self.inner.lock().node)
    }

    /// Deliveries of certified transactions applied since the bank opened.
    pub fn deliveries_applied(&self) -> u64 {
        self.applied.deliveries()
    }

    /// Ready once the bank has applied `tx_id` from a delivery and the commit is durable (or
    /// did so lately: the last [`APPLIED_RECENT_MAX`] transactions delivered are
    /// remembered). Only that transaction's delivery wakes the task.
    pub fn applied(&self, tx_id: TxId) -> AppliedFuture<'_> {
        AppliedFuture::new(&self.applied, tx_id)
    }

    /// [`BankService::applied`] for a thread: block until then, at most `timeout`; whether
    /// it was applied.
    pub fn wait_applied(&self, tx_id: &TxId, timeout: std::time::Duration) -> bool {
        self.applied.wait(tx_id, timeout)
    }

    pub fn stats(&self) -> BankStats {
        self.inner.lock().stats
    }

    /// Batches at the notary (or answered, their answers and deliveries not sent yet) and
    /// deliveries not acknowledged (or applied, their acknowledgement not sent yet): both zero
    /// once traffic stopped and every message arrived.
    pub fn outstanding(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.outbox.len() + inner.finishing, inner.outbound.len())
    }

    /// Accounts waiting for the directory's answer.
    pub fn claims_waiting(&self) -> usize {
        self.inner.lock().claims.len()
    }

    /// The operator blocked or unblocked a bank: validation follows from the next step on.
    /// Whether the operator's block of `bank` is in force here (applied from central's
    /// delivery, or from a revocation).
    pub fn is_blocked(&self, bank: &str) -> bool {
        self.anchors.read().blocked.contains(bank)
    }

    pub fn set_blocked(&self, bank: &str, blocked: bool) {
        let mut anchors = self.anchors.write();
        if blocked {
            anchors.blocked.insert(bank.to_string());
        } else {
            anchors.blocked.remove(bank);
        }
    }

    /// Open an account the directory has listed already (durably): a bank migrating its
    /// clients, or a test. [`BankService::claim_account`] claims at the directory first.
    pub fn open_account(&self, account: Account, key: &AccountKey) -> Result<()> {
        key.admit(&account, &self.key_cache)?;
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        let mut batch = WriteBatch::new();
        inner.node.plan_open(account.clone(), key.custodial(), &mut batch)?;
        self.commit(&mut inner, batch)?;
        inner.apply_open(account, key.custodial());
        Ok(())
    }

    /// Open many accounts the directory has listed already, in one durable commit: a bank
    /// migrating its clients. All or nothing: one account refused (a client or an address
    /// taken, here or earlier in the list) refuses the whole list.
    pub fn open_accounts(&self, accounts: Vec<(Account, AccountKey)>) -> Result<()> {
        if accounts.len() > OPEN_ACCOUNTS_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, format!("at most {OPEN_ACCOUNTS_MAX} accounts at once")));
        }
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        let mut clients = std::collections::HashSet::with_capacity(accounts.len());
        let mut addresses = std::collections::HashSet::with_capacity(accounts.len());
        let mut batch = WriteBatch::new();
        for (account, key) in &accounts {
            if !clients.insert(account.client_id.as_str()) || !addresses.insert(account.address) {
                return Err(Error::new(
                    ErrorCode::DuplicateAccount,
                    format!("client {} or its address is listed twice", account.client_id),
                ));
            }
            key.admit(account, &self.key_cache)?;
            inner.node.plan_open(account.clone(), key.custodial(), &mut batch)?;
        }
        self.commit(&mut inner, batch)?;
        for (account, key) in accounts {
            inner.apply_open(account, key.custodial());
        }
        Ok(())
    }

    /// Queue a request; its answer arrives on the returned receiver once the bank took it
    /// ([`BankService::flush`]) and the notary answered (or at once, when it is refused
    /// before).
    pub fn submit(&self, request: Request, idem: Option<IdemKey>) -> Answer {
        let (answer, receiver) = dtenge_sync::oneshot::channel();
        self.submit_to(request, None, idem, Reply::Own(answer));
        receiver
    }

    /// Queue a request whose answer goes to `to`, tagged with `tag`.
    pub fn submit_tagged(
        &self,
        request: Request,
        idem: Option<IdemKey>,
        tag: u64,
        to: &Sender<(u64, Result<Committed>)>,
    ) {
        self.submit_to(request, None, idem, Reply::Tagged { tag, to: to.clone() });
    }

    /// Queue a request, with its label for the history (`None`: the request's own, see
    /// [`Label`]).
    pub(crate) fn submit_to(&self, request: Request, label: Option<Label>, idem: Option<IdemKey>, answer: Reply) {
        if let Some(idem) = &idem {
            if idem.key.is_empty() || idem.key.len() > 128 {
                return answer.send(Err(Error::malformed("an idempotency key has 1 to 128 characters")));
            }
        }
        let mut queue = self.queue.lock();
        if queue.len() >= QUEUE_SUBMISSIONS_MAX {
            drop(queue);
            return answer.send(Err(Error::new(ErrorCode::LimitExceeded, "the bank's queue is full; retry")));
        }
        queue.push(Submission { request, label, idem, answer });
    }

    /// Submissions waiting to be taken by [`BankService::flush`].
    pub fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    /// Take one envelope from the network. A notary's answer and a delivery are committed
    /// under the role's lock, and what they owe once durable is done after it is released
    /// ([`BankService::finish_commit`]): readers and the flusher do not wait for the fsync.
    pub fn handle(&self, envelope: Envelope, now_ms: u64) {
        let taking = self.taking(&envelope);
        if matches!(taking, Taking::Whole) {
            // Handled whole, its answers sent by itself: only after what the steps before it
            // owe is done, so that nothing it sends reflects a commit not yet durable.
            self.finish_pending();
        }
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        let from = envelope.from;
        let after = match (envelope.message, taking) {
            (Message::NotarizeReply(reply), Taking::Reply(signed)) => self.on_reply(&mut inner, reply, signed, now_ms),
            (Message::Deliver(deliver), Taking::Delivery(checked)) => {
                self.on_deliver(&mut inner, from, deliver, Some(checked), now_ms)
            }
            (Message::Deliver(deliver), _) => self.on_deliver(&mut inner, from, deliver, None, now_ms),
            (message, _) => {
                self.handle_other(&mut inner, from, message, now_ms);
                None
            }
        };
        if after.is_some() {
            inner.finishing += 1;
        }
        drop(inner);
        if let Some(after) = after {
            self.finish_or_hand_over(after, now_ms);
        }
    }

    /// How the inbox takes `envelope`, with the signature checks that need none of the role's
    /// state made here, before its lock is taken.
    fn taking(&self, envelope: &Envelope) -> Taking {
        match &envelope.message {
            // A payment batch's answer (holds' and programmed spends' batch numbers have the
            // hold bit: their answers are handled whole).
            Message::NotarizeReply(reply) if envelope.from == RoleId::Notary && !hold::is_hold_batch(reply.batch) => {
                Taking::Reply(reply::Signed::of(reply, &self.anchors.read().notary))
            }
            Message::Deliver(Deliver { payload: dtenge_wire::Payload::Certified { certificate, txs }, .. }) => {
                Taking::Delivery(self.check_certified(certificate, txs))
            }
            Message::DeliverAck(_) => Taking::Ack,
            _ => Taking::Whole,
        }
    }

    /// Pipeline this bank's inbox: its steps' commits go to `finisher`, whose consumer calls
    /// [`BankService::finish`] for each in order, so that the inbox takes the next message
    /// while the disk writes (its commit then joins the same group commit) instead of waiting
    /// for each. Set once, before the inbox starts.
    pub fn pipeline(&self, finisher: Arc<dtenge_sync::Queue<Finish>>) {
        assert!(self.finisher.set(finisher).is_ok(), "a bank's inbox is pipelined once");
    }

    /// Do what one handed-over step owes (the finisher's consumer calls this, in order).
    pub fn finish(&self, finish: Finish) {
        match finish {
            Finish::After(after, now_ms) => self.finish_commit(after, now_ms),
            Finish::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }

    fn finish_or_hand_over(&self, after: AfterCommit, now_ms: u64) {
        match self.finisher.get() {
            // A closed finisher (the platform stopping): done here, as unpipelined.
            Some(finisher) => {
                if let Err(Finish::After(after, now_ms)) = finisher.push(Finish::After(after, now_ms)) {
                    self.finish_commit(after, now_ms);
                }
            }
            None => self.finish_commit(after, now_ms),
        }
    }

    /// Wait until every step this bank has applied so far is durable (its commit written and
    /// what it owes done): what its memory shows is then what its store holds. For a reader
    /// that found something in memory and reads the store next (a payee's history, read from
    /// the store since issue 20, after its line was seen in memory).
    pub fn settle(&self) {
        self.finish_pending();
    }

    /// Wait until the finisher has done everything handed to it before.
    fn finish_pending(&self) {
        let Some(finisher) = self.finisher.get() else { return };
        let (done, finished) = dtenge_sync::oneshot::channel();
        if finisher.push(Finish::Barrier(done)).is_ok() {
            let _ = finished.recv();
        }
    }

    /// Every other message, handled whole under the role's lock.
    fn handle_other(&self, inner: &mut Inner, from: RoleId, message: Message, now_ms: u64) {
        match message {
            // Programmed spends (`programmed`): plans, attestations and batches of their own.
            Message::PlanReply(reply) if from == RoleId::Oracle => self.on_plan_reply(inner, reply, now_ms),
            Message::AttestReply(reply) if from == RoleId::Oracle && inner.spends.has(&reply.tx_id) => {
                self.on_spend_attest_reply(inner, reply, now_ms)
            }
            Message::NotarizeReply(reply) if from == RoleId::Notary && inner.spends.has_batch(reply.batch) => {
                self.on_spend_reply(inner, reply, now_ms)
            }
            // Holds and releases go to the notary alone, under batch numbers of their own.
            Message::NotarizeReply(reply) if from == RoleId::Notary && hold::is_hold_batch(reply.batch) => {
                self.on_hold_reply(inner, reply, now_ms)
            }
            Message::DeliverAck(ack) => self.on_ack(inner, &from, ack.seq),
            Message::ClaimReply(reply) if from == RoleId::Directory => self.on_claim_reply(inner, reply),
            Message::RedeemRefused(refused) if from == RoleId::Central => self.on_redeem_refused(inner, refused),
            Message::AttestReply(reply) if from == RoleId::Oracle => self.on_attest_reply(inner, reply, now_ms),
            Message::ReleaseOrder(order) if from == RoleId::Oracle => self.on_release_order(inner, order, now_ms),
            Message::CardClaimReply(reply) if from == RoleId::Directory => self.on_card_claim_reply(inner, reply),
            // Nothing else is for a bank: dropped, as a stray or hostile message must be.
            _ => {}
        }
    }

    /// What a commit made under the role's lock owes once it is durable, done without the
    /// lock: the memory was changed before the commit was written (in the order the disk will
    /// have it: one committer per store, commits in order, and fail-stop after a failed one),
    /// but nothing leaves the role before the disk holds it: no client's answer, no delivery
    /// (its number must never be reused after a crash), no acknowledgement. A key stays in
    /// flight, and a transaction in the outbox (a resubmission waits for its answer), until
    /// then. A failed commit stops the role (its restart reads what the disk holds).
    pub(crate) fn finish_commit(&self, after: AfterCommit, now_ms: u64) {
        let AfterCommit { durable, answered, sends, ack, delivered } = after;
        let durable = durable.wait();
        let mut inner = self.inner.lock();
        inner.finishing = inner.finishing.checked_sub(1).expect("a step is finished once, after it was made");
        if durable.is_err() {
            inner.failed = true;
        }
        if inner.failed {
            // Nothing leaves a role whose store failed (a step before this one's, perhaps).
            return;
        }
        let me = self.role();
        let envelopes: Vec<Envelope> =
            sends.into_iter().map(|planned| inner.outbound.sent(planned, &me, now_ms)).collect();
        let mut replies = Vec::new();
        for TxAnswer { tx_id, answer, idem_key, from_outbox } in answered {
            if let Some(key) = idem_key {
                inner.idem_in_flight.remove(&key);
            }
            if from_outbox {
                if let Ok(committed) = &answer {
                    inner.remember(tx_id, committed.seq);
                }
                inner.in_outbox.remove(&tx_id);
            }
            for waiter in inner.waiters.remove(&tx_id).unwrap_or_default() {
                replies.push((waiter, answer.clone()));
            }
        }
        drop(inner);
        for envelope in envelopes {
            let _ = self.transport.send(envelope);
        }
        for (waiter, answer) in replies {
            waiter.send(answer);
        }
        if let Some((to, seq)) = ack {
            self.ack(&to, seq);
        }
        if let Some(txs) = delivered {
            self.applied.delivered(&txs);
        }
    }

    /// Resend what was not answered in time.
    pub fn tick(&self, now_ms: u64) {
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        let due = |sent_at_ms: u64| sent_at_ms.saturating_add(RESEND_AFTER_MS) <= now_ms;
        let batches: Vec<u64> = inner.outbox.iter().filter(|(_, p)| due(p.sent_at_ms)).map(|(b, _)| *b).collect();
        for batch_no in batches {
            self.send_request(&inner, batch_no);
            inner.stats.batches_resent += 1;
            if let Some(pending) = inner.outbox.get_mut(&batch_no) {
                pending.sent_at_ms = now_ms;
            }
        }
        for envelope in inner.outbound.due(&self.role(), now_ms) {
            let _ = self.transport.send(envelope);
        }
        if !inner.acked.is_empty() {
            // Traffic stopped: nothing else will carry them.
            let _ = self.commit(&mut inner, WriteBatch::new());
        }
        self.resend_claims(&mut inner, now_ms);
        self.resend_redemptions(&mut inner, now_ms);
        self.resend_holds(&mut inner, now_ms);
        self.resend_spends(&mut inner, now_ms);
        self.cards_tick(&mut inner, now_ms);
        if let Err(e) = self.sweep_idempotency_locked(&mut inner, now_ms, dtenge_store::retention::SWEEP_ROWS_MAX) {
            tracing::warn!(bank = %self.id, error = %e, "idempotency retention sweep");
        }
        // A blocked bank's transactions are refused: its accounts wait in the set until the
        // block is lifted (a consolidation refused would leave its account fragmented until
        // tokens next arrive; the roles' simulator found it, seed 160).
        let blocked = self.anchors.read().blocked.contains(&self.id);
        self.consolidations_answered(&mut inner);
        let room = self.consolidating.lock().len() < CONSOLIDATIONS_IN_FLIGHT_MAX;
        let fragmented =
            if blocked || !room { Vec::new() } else { inner.node.take_fragmented(CONSOLIDATIONS_PER_TICK_MAX) };
        drop(inner);
        self.consolidate_in_background(fragmented);
    }

    /// Take the answers of the background consolidations: one refused for anything but
    /// `CONFLICT` (nothing left to merge) notes its account again, to be taken once the cause
    /// is gone (a block lifted); one unanswered stays.
    fn consolidations_answered(&self, inner: &mut Inner) {
        self.consolidating.lock().retain(|(client_id, answer)| match answer.try_recv() {
            Err(dtenge_sync::TryRecvError::Empty) => true,
            Ok(Err(e)) if e.code != ErrorCode::Conflict => {
                inner.node.note_fragmented(client_id);
                false
            }
            Ok(_) | Err(dtenge_sync::TryRecvError::Disconnected) => false,
        });
    }

    /// Background consolidations due: accounts noted above `CONSOLIDATE_ABOVE_TOKENS` and not
    /// yet taken by a tick, and those taken whose answer a tick has not read (a quiet bank has
    /// none).
    pub fn consolidations_due(&self) -> usize {
        let noted = self.inner.lock().node.fragmented_count();
        noted + self.consolidating.lock().len()
    }

    /// Queue a consolidation of each of `clients` (issue 19's dust policy, see
    /// `dtenge_node::CONSOLIDATE_ABOVE_TOKENS`): the bank's own request, without a key, its
    /// answer not awaited. A refusal (the bank blocked, the tokens taken by payments
    /// meanwhile) leaves the account to the next arrival of tokens.
    fn consolidate_in_background(&self, clients: Vec<String>) {
        assert!(clients.len() <= CONSOLIDATIONS_PER_TICK_MAX, "a tick's consolidations are bounded");
        for client_id in clients {
            let (answer, answered) = dtenge_sync::oneshot::channel();
            self.consolidating.lock().push((client_id.clone(), answered));
            self.submit_to(Request::Consolidate { client_id }, None, None, Reply::Own(answer));
        }
    }

    /// Keep idempotency records `retention_ms` (at least a minute; default 7 days).
    pub fn set_idempotency_retention_ms(&self, retention_ms: u64) -> Result<()> {
        if retention_ms < dtenge_store::retention::IDEMPOTENCY_RETENTION_MS_MIN {
            return Err(Error::malformed(format!("an idempotency retention of {retention_ms} ms")));
        }
        self.idem_retention_ms.store(retention_ms, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// One retention sweep (each tick runs one): delete the idempotency records older than the
    /// window, reading at most `rows_max` index rows; keys in flight are kept. The records
    /// deleted.
    pub fn sweep_idempotency(&self, now_ms: u64, rows_max: usize) -> Result<u64> {
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        self.sweep_idempotency_locked(&mut inner, now_ms, rows_max)
    }

    fn sweep_idempotency_locked(&self, inner: &mut Inner, now_ms: u64, rows_max: usize) -> Result<u64> {
        let retention_ms = self.idem_retention_ms.load(std::sync::atomic::Ordering::Relaxed);
        let mut batch = WriteBatch::new();
        let in_flight = &inner.idem_in_flight;
        let swept =
            self.idem_retention.sweep(&self.store, &mut batch, now_ms, retention_ms, rows_max, |key, record| {
                // Under the role's lock, and committed before it is released: no request reads
                // or writes these keys meanwhile.
                if std::str::from_utf8(key).is_ok_and(|key| in_flight.contains_key(key)) {
                    return Ok(dtenge_store::retention::RecordAge::InFlight);
                }
                // Indexed by the upgrade's pass over every record; never deleted.
                if state::is_own_key(key) {
                    return Ok(dtenge_store::retention::RecordAge::Keep);
                }
                state::idem_age(record)
            })?;
        if !batch.is_empty() {
            self.commit(inner, batch)?;
        }
        Ok(swept.records)
    }

    /// Commit durably, with the deletions of acknowledged deliveries waiting for a commit.
    fn commit(&self, inner: &mut Inner, mut batch: WriteBatch) -> Result<()> {
        batch.append(std::mem::take(&mut inner.acked));
        self.store.commit(batch).inspect_err(|_| inner.failed = true)
    }

    /// A commit of nothing, durable at once: for a step that owes something after the steps
    /// before it and writes nothing itself.
    fn store_ready(&self) -> dtenge_store::PendingCommit {
        self.store.commit_async(WriteBatch::new())
    }

    /// Hand a batch to the store's committer, with the deletions of acknowledged deliveries,
    /// and return at once; [`BankService::finish_commit`] waits for it.
    fn commit_async(&self, inner: &mut Inner, mut batch: WriteBatch) -> dtenge_store::PendingCommit {
        batch.append(std::mem::take(&mut inner.acked));
        self.store.commit_async(batch)
    }
}
