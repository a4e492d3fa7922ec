//! A participant node of the ledger network: a commercial bank, the Treasury, or the NBK.
//!
//! A node keeps only what it must (need-to-know): its own clients' accounts and custodial keys,
//! the tokens they own (with preimages, so they can be spent), the transactions it took part in
//! and its clients' history. It validates and attests the transactions it initiates.
//!
//! This is a pure state machine. Every change is planned first ([`NodeState::plan_commit`]
//! returns a [`Delta`]), persisted by the caller ([`Delta::writes`]) and applied only after the
//! durable commit ([`NodeState::apply`]). Spending tokens reserves them in memory in between,
//! so two concurrent payments of one client never pick the same token.

mod custody;
pub mod ids;

pub use custody::Custody;

use dtenge_core::coins;
use dtenge_core::crypto::{Address, Hash32, NodeKey, PublicKey, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output, Policy, TokenId, TxId};
use dtenge_core::tx::{Command, Transaction, TxBody, TX_INPUTS_MAX};
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_store::{ArchiveLog, Checkpointed, LogTable, Store, Table, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub const META_TABLE: Table = Table("node_meta");
pub const ACCOUNTS_TABLE: Table = Table("node_accounts");
/// Every node's tokens: a log of changes (per delta: the node, the tokens spent, the tokens
/// received with their owners) and checkpoints of every node's tokens (see
/// `dtenge_store::checkpoint`).
pub const TOKENS: Checkpointed =
    Checkpointed { log: LogTable("node_tokens_log"), items: Table("node_tokens_checkpoint") };
/// History lines, one row each, keyed `node \0 client \0 seq` (`seq` big-endian): a page of
/// an account's history is a read of its newest rows ([`history_page`]), so neither memory nor
/// a start holds anyone's whole history, and the lines go to the store's keyed tables, which
/// compact, not to its journal of log rows (issue 20).
pub const HISTORY_TABLE: Table = Table("node_history");
/// Where history lines were, until 2026-12-07, as `(node, client, entry)` records read whole at
/// every start: a store that still holds some has them moved to [`HISTORY_TABLE`] when its
/// bank opens ([`migrate_history_log`]).
pub const HISTORY_LOG: LogTable = LogTable("node_history_log");
/// The signed transactions the nodes took part in, each stored once (see [`archive`]) as a
/// `(nodes, tx id, transaction)` record: the ids of the nodes it moved tokens of, in order.
/// Nothing reads it back at start: it is the banks' evidence of what their clients signed,
/// read with `Store::for_each_archived`. (Until 2026-11-22 each party node stored its own copy
/// in `node_txs_log`: a third of the bytes a payment wrote, for the same record twice.) An
/// archive, not a log (issue 20): as a log that is never truncated it kept every journal
/// segment it had rows in, and a start read them all; as keyed rows the same records cost
/// 0.58× of `dtenge bench`'s throughput.
pub const TXS_LOG: ArchiveLog = ArchiveLog("node_txs_archive");
pub const CARDS_TABLE: Table = Table("node_cards");
pub const TABLES: [Table; 8] = [
    META_TABLE,
    ACCOUNTS_TABLE,
    TOKENS.tables()[0],
    TOKENS.tables()[1],
    HISTORY_TABLE,
    HISTORY_LOG.table(),
    TXS_LOG.table(),
    CARDS_TABLE,
];

/// The client id of a node's own account (its DT liquidity).
pub const OWN_ACCOUNT: &str = "own";
/// The newest history lines kept in memory per account: what a receipt asked for again, a
/// registry's idempotent answer and a payee's check that its bank applied a payment read,
/// each about the last moments. The history itself is read from the store
/// ([`history_page`]). Was 10,000 until issue 20: 1.5 MB per active account, growing with
/// every payment.
pub const HISTORY_IN_MEMORY_MAX: usize = 32;
/// Most lines [`history_page`] counts for a history's total, and most it skips to a page.
pub const HISTORY_LINES_COUNTED_MAX: usize = 10_000_000;

/// What kind of participant a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    CentralBank,
    Bank,
    Treasury,
}

/// What kind of client an account belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A person, identified by IIN.
    Individual,
    /// A company, identified by BIN.
    LegalEntity,
    /// A government agency or territorial body (Treasury node only), identified by BIN.
    GovernmentAgency,
    /// The node's own account (its DT liquidity).
    Institution,
}

/// A node's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub id: String,
    pub kind: NodeKind,
    pub name: String,
}

/// A digital account: one per client per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// IIN for individuals, BIN for legal entities and agencies, `own` for the node itself.
    pub client_id: String,
    pub node_id: String,
    pub kind: ClientKind,
    pub name: String,
    /// `+7XXXXXXXXXX`, for transfers by phone number.
    pub phone: Option<String>,
    pub address: Address,
    pub opened_at_unix_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AccountRecord {
    account: Account,
    /// The custodial key's seed sealed under the bank's data-encryption key ([`Custody`]);
    /// `None` when the client keeps its own key.
    key_sealed: Option<Vec<u8>>,
    /// The client's bank-money (non-cash) balance in the bank's core banking system: what
    /// conversions to and from DT debit and credit.
    fiat: Amount,
}

/// Why a transaction happened, as history shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Payment,
    PhoneTransfer,
    Emission,
    Redemption,
    ConversionToDt,
    ConversionFromDt,
    RegistryDistribution,
    Voucher,
    CardPurchase,
    CardRefund,
    CashWithdrawal,
    /// Funds held for an oracle event (they stay on the account, not spendable).
    Hold,
    /// Held funds released to the event's payees.
    HoldRelease,
    /// Held funds returned to the sender (rejection or expiry).
    HoldReturn,
    /// Marked DT moved one level down a marking.
    MarkedTransfer,
    /// An e-invoice paid: net standard, VAT VAT-marked.
    InvoicePayment,
    /// VAT paid to the tax authority's account.
    VatPayment,
    /// One payment to several recipients.
    SplitPayment,
    /// Marked DT paid under a contract registered on the oracle.
    ContractPayment,
}

/// Debit or credit, from the account's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Debit,
    Credit,
    /// Spendable DT became held; the account's DT total is unchanged.
    Held,
    /// Held DT became spendable again; the account's DT total is unchanged.
    Unheld,
}

/// One line of an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Position in the account's history: increasing, gaps allowed (a planned entry whose
    /// transaction did not commit leaves its number unused).
    pub seq: u64,
    pub tx_id: TxId,
    pub at_unix_ms: u64,
    pub purpose: Purpose,
    pub direction: Direction,
    pub amount_tiyn: Amount,
    /// The other side's address, if any (none for emission and redemption).
    pub counterparty: Option<Address>,
    /// A reference the initiator gave (registry id, voucher event, card purchase…).
    pub reference: Option<String>,
}

/// Balances of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// All DT the account owns.
    pub dt_tiyn: Amount,
    /// Part of `dt_tiyn` reserved by payments in flight.
    pub dt_reserved_tiyn: Amount,
    /// Part of `dt_tiyn` held for oracle events: the account's, but not spendable.
    pub dt_held_tiyn: Amount,
    /// Part of `dt_tiyn` marked for targeted use (by addresses or by contract).
    pub dt_marked_tiyn: Amount,
    /// Part of `dt_tiyn` that is VAT-marked.
    pub dt_vat_tiyn: Amount,
    /// What the account can pay now: neither held nor reserved.
    pub dt_spendable_tiyn: Amount,
    /// Bank money (non-cash) at the node.
    pub fiat_tiyn: Amount,
    /// Number of tokens the DT balance is made of.
    pub tokens: usize,
}

struct Holding {
    input: Input,
    /// The owning account, as its index in [`NodeState::accounts`].
    owner: AccountIndex,
    /// The payment in flight that reserved this token, if any.
    reserved_by: Option<TxId>,
}

struct AccountState {
    record: AccountRecord,
    key: Option<SecretKey>,
    tokens: BTreeSet<TokenId>,
    /// The standard tokens not reserved, by amount (issue 20): what a payment chooses from, in
    /// O(log n + k) for k tokens chosen, never a walk of every token the account owns. Kept by
    /// [`NodeState::reindex`] whenever a token arrives, goes, or is reserved or released.
    spendable: BTreeSet<(Amount, TokenId)>,
    /// The sum of `spendable`'s amounts.
    spendable_tiyn: Amount,
    /// The newest [`HISTORY_IN_MEMORY_MAX`] entries, in `seq` order (the rest are in the store).
    history: VecDeque<HistoryEntry>,
    /// The `seq` of the next planned entry.
    next_seq: u64,
}

impl AccountState {
    /// Custodial, and holding more than [`CONSOLIDATE_ABOVE_TOKENS`] tokens: its bank merges
    /// them in the background.
    fn is_fragmented(&self) -> bool {
        self.key.is_some() && self.tokens.len() > CONSOLIDATE_ABOVE_TOKENS
    }
}

/// A change record of [`TOKENS`]'s log: the node, the tokens spent, the tokens received.
type TokenChange = (String, Vec<TokenId>, Vec<(String, Input)>);

/// The changes one committed transaction (or account operation) makes to a node.
///
/// Accounts are named by their index in the planning node's [`NodeState::accounts`] (indices
/// never change: accounts are only ever added), so planning and applying a payment allocate no
/// client-id strings and hash none.
#[derive(Debug, Default)]
pub struct Delta {
    node_id: String,
    spent: Vec<TokenId>,
    received: Vec<(TokenId, AccountIndex, Input)>,
    history: Vec<(AccountIndex, HistoryEntry)>,
    fiat: Vec<(String, Amount)>,
}

/// An account's position in its node's accounts, in opening order. Accounts are never
/// removed, so an index, once found, names the same account for the node's whole life.
pub type AccountIndex = u32;

impl Delta {
    /// The node this delta changes.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn is_empty(&self) -> bool {
        self.spent.is_empty() && self.received.is_empty() && self.fiat.is_empty()
    }

    /// The durable record of this delta. Paired with [`NodeState::load_all`], which asserts
    /// what is asserted here: the records name this node, and every token received and every
    /// history line belongs to one of its accounts. A client whose bank-money balance is set
    /// must have an account (`UNKNOWN_ACCOUNT` otherwise, before anything is written), so that
    /// [`NodeState::apply`] can assert it.
    pub fn writes(&self, accounts: &NodeState, batch: &mut WriteBatch) -> Result<()> {
        let node = self.node_id.as_bytes();
        assert_eq!(self.node_id, accounts.meta.id, "a delta is written with the node that planned it");
        if !self.spent.is_empty() || !self.received.is_empty() {
            let received: Vec<(&String, &Input)> =
                self.received.iter().map(|(_, account, input)| (accounts.client_id_at(*account), input)).collect();
            batch.record_value(TOKENS.log, &(&self.node_id, &self.spent, received))?;
        }
        for (account, entry) in &self.history {
            let key = history_key(&self.node_id, accounts.client_id_at(*account), entry.seq);
            batch.put_value(HISTORY_TABLE, key, entry)?;
        }
        for (client, fiat) in &self.fiat {
            let state = accounts.account_state(client)?;
            let mut record = state.record.clone();
            record.fiat = *fiat;
            batch.put_value(ACCOUNTS_TABLE, key2(node, client.as_bytes()), &record)?;
        }
        Ok(())
    }

    /// Set a client's new bank-money balance as part of this delta.
    pub fn set_fiat(&mut self, client_id: &str, fiat: Amount) {
        self.fiat.push((client_id.to_string(), fiat));
    }

    /// Does this delta spend or receive tokens of its node (so the node took part in the
    /// transaction, see [`archive`])?
    pub fn moves_tokens(&self) -> bool {
        !self.spent.is_empty() || !self.received.is_empty()
    }
}

/// Store a committed transaction once for every node whose tokens it moved (`nodes`, in
/// order), in the same batch as their deltas. Nothing is written when `nodes` is empty.
pub fn archive(nodes: &[&str], tx_id: &TxId, tx: &Transaction, batch: &mut WriteBatch) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    batch.archive_value(TXS_LOG, &(nodes, tx_id, tx))
}

/// Insert in `seq` order (almost always at the end) and keep the newest
/// [`HISTORY_IN_MEMORY_MAX`] entries. The oldest goes before the newest comes, so the deque
/// never holds one more than the window: its capacity stays the window's (a power of two),
/// not the next power up, twice the memory for one entry (issue 20).
fn insert_history(history: &mut VecDeque<HistoryEntry>, entry: HistoryEntry) {
    if history.len() == HISTORY_IN_MEMORY_MAX {
        if history.front().is_some_and(|oldest| entry.seq < oldest.seq) {
            // Older than every line kept: it would be the one to go.
            return;
        }
        history.pop_front();
    }
    // Entries are applied in `seq` order but for the overlap of two batches in the pipeline,
    // so the search is needed only out of order.
    if history.back().is_none_or(|last| last.seq < entry.seq) {
        history.push_back(entry);
    } else {
        let position = history.partition_point(|e| e.seq < entry.seq);
        history.insert(position, entry);
    }
    assert!(history.len() <= HISTORY_IN_MEMORY_MAX);
}

/// Where an account's history lines are: `node \0 client \0`.
fn history_prefix(node_id: &str, client_id: &str) -> Vec<u8> {
    let mut prefix = key2(node_id.as_bytes(), client_id.as_bytes());
    prefix.push(0);
    prefix
}

/// A history line's key: the account's prefix and its `seq`, big-endian, so that key order is
/// `seq` order.
fn history_key(node_id: &str, client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = history_prefix(node_id, client_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// A page of an account's history from the store, newest first: `limit` lines after the
/// `offset` newest, and how many lines the history holds (counted up to
/// [`HISTORY_LINES_COUNTED_MAX`]). O(offset + limit) rows read, and the count O(lines): a
/// history is read when a client asks for it, never at start.
pub fn history_page(
    store: &Store,
    node_id: &str,
    client_id: &str,
    offset: usize,
    limit: usize,
) -> Result<(Vec<HistoryEntry>, usize)> {
    ensure!(offset <= HISTORY_LINES_COUNTED_MAX, MalformedInput, "offset must be at most {HISTORY_LINES_COUNTED_MAX}");
    let prefix = history_prefix(node_id, client_id);
    let rows = store.scan_prefix_rev(HISTORY_TABLE, &prefix, offset, limit)?;
    let entries = rows.iter().map(|(_, value)| dtenge_store::decode(value)).collect::<Result<Vec<HistoryEntry>>>()?;
    let total = store.count_prefix(HISTORY_TABLE, &prefix, HISTORY_LINES_COUNTED_MAX)?;
    assert!(entries.len() <= limit);
    Ok((entries, total))
}

/// Rows of [`HISTORY_LOG`] moved per batch by [`migrate_history_log`].
const HISTORY_MIGRATION_BATCH: usize = 50_000;

/// Move the history lines a store keeps in [`HISTORY_LOG`] (a build before 2026-12-07) to
/// [`HISTORY_TABLE`], and empty the log; the lines moved. Nothing happens to a store whose
/// log is empty. Each line is put under its own key, so a move cut short by a crash is done
/// again whole at the next start, with the same result.
pub fn migrate_history_log(store: &Store) -> Result<usize> {
    if store.log_row_count(HISTORY_LOG)? == 0 {
        return Ok(0);
    }
    let records = store.scan_log_values::<(String, String, HistoryEntry)>(HISTORY_LOG)?;
    let chunks: Vec<&[(String, String, HistoryEntry)]> = records.chunks(HISTORY_MIGRATION_BATCH).collect();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut batch = WriteBatch::new();
        for (node, client, entry) in chunk.iter() {
            batch.put_value(HISTORY_TABLE, history_key(node, client, entry.seq), entry)?;
        }
        if k + 1 == chunks.len() {
            batch.truncate_log_here(HISTORY_LOG);
        }
        store.commit(batch)?;
    }
    Ok(records.len())
}

/// Most threads [`open_sealed_keys`] opens keys on.
const KEY_OPENING_THREADS_MAX: usize = 8;

/// Open the sealed custodial keys of `records`, in order, on the machine's cores. Why threads:
/// each key opened derives its public key (a scalar multiplication, about 20 µs), so a bank of
/// 100,000 custodial accounts spent 2 s of its start on one core here (issue 20's restart).
/// The keys are the same whatever the split; the first error in record order is returned.
fn open_sealed_keys(custody: &Custody, records: &[(Vec<u8>, AccountRecord)]) -> Result<Vec<Option<SecretKey>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, KEY_OPENING_THREADS_MAX);
    let part_len = records.len().div_ceil(threads).max(1);
    let open = |part: &[(Vec<u8>, AccountRecord)]| -> Result<Vec<Option<SecretKey>>> {
        part.iter()
            .map(|(_, record)| {
                record.key_sealed.as_ref().map(|sealed| custody.open(&record.account.address, sealed)).transpose()
            })
            .collect()
    };
    let opened: Vec<Result<Vec<Option<SecretKey>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = records.chunks(part_len).map(|part| scope.spawn(move || open(part))).collect();
        handles.into_iter().map(|handle| handle.join().expect("opening a sealed key does not panic")).collect()
    });
    let mut keys = Vec::with_capacity(records.len());
    for part in opened {
        keys.extend(part?);
    }
    assert_eq!(keys.len(), records.len(), "one key or none per account record");
    Ok(keys)
}

fn key2(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 1 + b.len());
    key.extend_from_slice(a);
    key.push(0);
    key.extend_from_slice(b);
    key
}

/// The state of one node.
pub struct NodeState {
    meta: NodeMeta,
    key: NodeKey,
    /// Seals and opens the custodial keys at rest.
    custody: Custody,
    /// The node key recorded in the store when it was opened with another: a rotation.
    rotated_from: Option<PublicKey>,
    /// By client id. A hash map: the payment path looks an account up several times per
    /// transaction, and a B-tree of 30,000 string keys cost about 5% of the settle stage in
    /// string comparisons and cache misses. [`NodeState::accounts`] sorts for listing.
    /// In opening order; an [`AccountIndex`] is a position here.
    accounts: Vec<AccountState>,
    /// Client id -> account.
    by_client: dtenge_core::hash::Map<String, AccountIndex>,
    by_address: dtenge_core::hash::Map<Address, AccountIndex>,
    tokens: dtenge_core::hash::Map<TokenId, Holding>,
    /// The sum of `tokens`' amounts, kept as tokens come and go, so that monitoring reads it
    /// without walking millions of tokens (and without pausing payments for it).
    /// Reconciliation recounts it ([`NodeState::recount_dt`]) and must find the same.
    dt_total: Amount,
    /// The set hash of `tokens`' ids ([`TokenId::toggle_in`]), kept as tokens come and go:
    /// what reconciliation compares with the notary's unspent set without walking either.
    ids_hash: Hash32,
    cards: BTreeMap<String, String>,
    /// Custodial accounts holding more than [`CONSOLIDATE_ABOVE_TOKENS`] tokens, found as
    /// tokens arrive: what the bank consolidates in the background
    /// ([`NodeState::take_fragmented`]). Not stored: loading finds them again.
    fragmented: BTreeSet<AccountIndex>,
    /// Changes to `tokens` logged since the node was loaded, with those it replayed at load:
    /// what tells its bank a checkpoint of them is due ([`NodeState::token_changes`]).
    token_changes: u64,
}

/// A custodial account holding more tokens than this is consolidated by its bank in the
/// background (issue 19's dust policy): a flood of 1-tiyn payments, or a year of salary,
/// transfers and change, leaves an account at most about this many tokens, not one per
/// payment received.
///
/// Why 128: a consolidation then merges 129 to 1,024 tokens in one transaction (one
/// signature, one notarisation), so it adds under 1% to the transactions an account
/// receives, and every token is still spent once; an account's tokens stay far below
/// the 1,024 inputs a payment may spend, so any balance is paid whole; and 128 tokens of
/// about 1 KB each in memory is about 128 KB per account at worst.
pub const CONSOLIDATE_ABOVE_TOKENS: usize = 128;

/// Fewest spendable standard tokens a background consolidation merges: fewer is not worth a
/// transaction (the account's other tokens are held, marked, or reserved by payments in
/// flight, which free them or spend them).
pub const CONSOLIDATE_TOKENS_MIN: usize = CONSOLIDATE_ABOVE_TOKENS / 2;

impl NodeState {
    /// A new node with its own (institution) account. Persist [`NodeState::genesis_writes`].
    pub fn new(meta: NodeMeta, node_key: NodeKey, own_key: SecretKey, custody: Custody, now_ms: u64) -> NodeState {
        let mut node = NodeState {
            meta,
            key: node_key,
            custody,
            rotated_from: None,
            accounts: Vec::new(),
            by_client: Default::default(),
            by_address: Default::default(),
            tokens: Default::default(),
            dt_total: Amount::ZERO,
            ids_hash: Hash32([0; 32]),
            cards: BTreeMap::new(),
            fragmented: BTreeSet::new(),
            token_changes: 0,
        };
        if node.meta.kind != NodeKind::CentralBank {
            let account = Account {
                client_id: OWN_ACCOUNT.into(),
                node_id: node.meta.id.clone(),
                kind: ClientKind::Institution,
                name: node.meta.name.clone(),
                phone: None,
                address: own_key.address(),
                opened_at_unix_ms: now_ms,
            };
            let key_sealed = Some(node.custody.seal(&own_key));
            node.insert_account(AccountRecord { account, key_sealed, fiat: Amount::ZERO }, Some(own_key));
        }
        node
    }

    pub fn genesis_writes(&self, batch: &mut WriteBatch) -> Result<()> {
        let node = self.meta.id.as_bytes();
        self.meta_writes(batch)?;
        for state in &self.accounts {
            batch.put_value(ACCOUNTS_TABLE, key2(node, state.record.account.client_id.as_bytes()), &state.record)?;
        }
        Ok(())
    }

    /// The node's record: who it is and its node key's public half (the key itself is the
    /// vault's, `dtenge-keys`). Written at genesis and again after a rotation.
    pub fn meta_writes(&self, batch: &mut WriteBatch) -> Result<()> {
        batch.put_value(META_TABLE, self.meta.id.as_bytes().to_vec(), &(&self.meta, self.key.public_key()))
    }

    /// Rebuild every node from the store.
    ///
    /// Two kinds of rows, two kinds of failure. Accounts, cards and token checkpoints are
    /// fjall's keyed rows, which the store keeps without a checksum of its own: a key that
    /// does not parse, or a row naming a node or client the store does not have, is corrupt
    /// storage (`STORAGE_FAILURE`), and the platform refuses to open. Token changes and
    /// history lines come from the store's journal, whose frames it checksums; they were
    /// written by [`Delta::writes`], which asserts the same facts, so a change naming a node or
    /// an account that does not exist is a programmer error and stops the process.
    ///
    /// The store holds one node (a store of several or none is refused, `STORAGE_FAILURE`),
    /// which signs with `key` (the vault's) and opens its custodial keys with `custody`: a
    /// custody key other than the one they were sealed with is refused. A node key other than
    /// the one last recorded is a rotation ([`NodeState::rotated_from`]): the caller records
    /// the new one ([`NodeState::meta_writes`]).
    pub fn load(store: &Store, key: NodeKey, custody: Custody) -> Result<NodeState> {
        // A build before issue 19 wrote the node key's seed here, and its clients' seeds in
        // the clear: such a store is refused, clearly.
        let metas = store.scan_values::<(NodeMeta, PublicKey)>(META_TABLE).map_err(|e| {
            Error::storage(format!(
                "{}: not this build's node record ({}): a store of a build that kept keys in the clear \
                 is not read; start the node on a fresh data directory",
                META_TABLE.0, e.message
            ))
        })?;
        let [(_, (meta, public_key))] = metas.as_slice() else {
            return Err(Error::storage(format!("{}: {} nodes in one node's store", META_TABLE.0, metas.len())));
        };
        let rotated_from = (*public_key != key.public_key()).then_some(*public_key);
        let mut nodes: BTreeMap<String, NodeState> = BTreeMap::new();
        {
            let meta = meta.clone();
            let node = NodeState {
                meta: meta.clone(),
                key,
                custody,
                rotated_from,
                accounts: Vec::new(),
                by_client: Default::default(),
                by_address: Default::default(),
                tokens: Default::default(),
                dt_total: Amount::ZERO,
                ids_hash: Hash32([0; 32]),
                cards: BTreeMap::new(),
                fragmented: BTreeSet::new(),
                token_changes: 0,
            };
            nodes.insert(meta.id, node);
        }
        let corrupt = |table: Table, what: String| Error::storage(format!("{}: {what}", table.0));
        // `node \0 rest`, as `key2` writes it.
        let node_of = |table: Table, key: &[u8]| -> Result<(String, String)> {
            let bad = || corrupt(table, format!("a key that is not `node \\0 name`: {key:?}"));
            let split = key.iter().position(|&b| b == 0).ok_or_else(bad)?;
            let node = String::from_utf8(key[..split].to_vec()).map_err(|_| bad())?;
            let rest = String::from_utf8(key[split + 1..].to_vec()).map_err(|_| bad())?;
            Ok((node, rest))
        };
        let records = store.scan_values::<AccountRecord>(ACCOUNTS_TABLE)?;
        for (key, record) in &records {
            let (node, client) = node_of(ACCOUNTS_TABLE, key)?;
            let unlike_key = record.account.node_id != node || record.account.client_id != client;
            if unlike_key || !nodes.contains_key(&node) {
                return Err(corrupt(
                    ACCOUNTS_TABLE,
                    format!("an account of {client} at {node} that is not one of its nodes' accounts"),
                ));
            }
        }
        let (_, state) = nodes.first_key_value().expect("the one node of the store");
        let keys = open_sealed_keys(&state.custody, &records)?;
        let state = nodes.values_mut().next().expect("the one node of the store");
        for ((_, record), key) in records.into_iter().zip(keys) {
            state.insert_account(record, key);
        }
        // The tokens: the checkpoint, then the changes after it, in order. A change the
        // checkpoint already reflects changes nothing (a token is received once, spent once).
        let loaded = TOKENS.load(store)?;
        for item in &loaded.items {
            let (node, client, input): (String, String, Input) = dtenge_store::decode(item)?;
            let state = nodes.get_mut(&node);
            let owner = state.as_ref().and_then(|state| state.by_client.get(&client).copied()).ok_or_else(|| {
                corrupt(TOKENS.items, format!("a token of {client} at {node}, which has no such account"))
            })?;
            state.expect("found with the owner").insert_token(owner, input);
        }
        for change in &loaded.changes {
            let (node, spent, received): TokenChange = dtenge_store::decode(change)?;
            let state = nodes.get_mut(&node).expect("a token change names a node of the store (Delta::writes)");
            state.token_changes += 1;
            for token in spent {
                state.remove_token(&token);
            }
            for (client, input) in received {
                let owner = *state.by_client.get(&client).expect("a token is received by an account of its node");
                state.insert_token(owner, input);
            }
        }
        // Each account's newest lines: O(accounts × HISTORY_IN_MEMORY_MAX), whatever the
        // history's length. (Lines still in the old log are moved to the table before a bank
        // loads its node: `migrate_history_log`.)
        for node in nodes.values_mut() {
            let node_id = node.meta.id.clone();
            for state in &mut node.accounts {
                let prefix = history_prefix(&node_id, &state.record.account.client_id);
                let newest = store.scan_prefix_rev(HISTORY_TABLE, &prefix, 0, HISTORY_IN_MEMORY_MAX)?;
                for (key, value) in newest.into_iter().rev() {
                    let entry: HistoryEntry = dtenge_store::decode(&value)?;
                    if key[prefix.len()..] != entry.seq.to_be_bytes() {
                        return Err(corrupt(HISTORY_TABLE, format!("a line keyed unlike its seq {}", entry.seq)));
                    }
                    state.next_seq = state.next_seq.max(entry.seq.saturating_add(1));
                    insert_history(&mut state.history, entry);
                }
            }
        }
        for (key, client) in store.scan_values::<String>(CARDS_TABLE)? {
            let (node, pan) = node_of(CARDS_TABLE, &key)?;
            let state = nodes.get_mut(&node).filter(|state| state.by_client.contains_key(&client));
            let state = state.ok_or_else(|| {
                corrupt(CARDS_TABLE, format!("a card of {client} at {node}, which has no such account"))
            })?;
            state.cards.insert(pan, client);
        }
        let (_, mut node) = nodes.pop_first().expect("the one node of the store");
        assert!(nodes.is_empty(), "rows of a node the store does not have are refused above");
        node.assert_consistent();
        for (index, state) in node.accounts.iter().enumerate() {
            if state.is_fragmented() {
                node.fragmented.insert(index as AccountIndex);
            }
        }
        Ok(node)
    }

    /// What loading must leave, whatever the mix of checkpoint and changes: one entry per
    /// account in each index, every token in exactly its owner's set, and the running total
    /// equal to the tokens' sum (O(tokens): at start only).
    fn assert_consistent(&self) {
        assert_eq!(self.by_client.len(), self.accounts.len(), "{}: one client id per account", self.meta.id);
        assert_eq!(self.by_address.len(), self.accounts.len(), "{}: one address per account", self.meta.id);
        let owned: usize = self.accounts.iter().map(|state| state.tokens.len()).sum();
        assert_eq!(owned, self.tokens.len(), "{}: every token held is in its owner's set, once", self.meta.id);
        assert_eq!(
            self.recount_dt().ok(),
            Some(self.dt_total),
            "{}: the running total is the tokens' sum",
            self.meta.id
        );
        assert_eq!(self.recount_ids_hash(), self.ids_hash, "{}: the running set hash is the tokens'", self.meta.id);
        self.assert_indexed();
    }

    /// Each account's index of spendable tokens is exactly its standard tokens not reserved,
    /// and its running sum theirs (O(tokens): at start, and in tests).
    fn assert_indexed(&self) {
        for state in &self.accounts {
            let expected: BTreeSet<(Amount, TokenId)> = state
                .tokens
                .iter()
                .filter_map(|id| {
                    let holding = &self.tokens[id];
                    (holding.reserved_by.is_none() && holding.input.output.policy.is_standard())
                        .then_some((holding.input.output.amount_tiyn, *id))
                })
                .collect();
            assert!(expected == state.spendable, "{}: the spendable index is the account's own", self.meta.id);
            assert_eq!(
                Amount::sum(expected.iter().map(|(amount, _)| *amount)).ok(),
                Some(state.spendable_tiyn),
                "{}: the spendable index's running sum",
                self.meta.id
            );
        }
    }

    fn insert_account(&mut self, record: AccountRecord, key: Option<SecretKey>) {
        assert!(!self.by_client.contains_key(&record.account.client_id), "an account is opened once");
        let index = AccountIndex::try_from(self.accounts.len()).expect("fewer than 2^32 accounts per node");
        self.by_client.insert(record.account.client_id.clone(), index);
        let taken = self.by_address.insert(record.account.address, index);
        assert!(taken.is_none(), "an address belongs to one account (plan_open refuses a second)");
        assert_eq!(key.is_some(), record.key_sealed.is_some(), "a custodial account has its key, sealed");
        assert!(
            key.as_ref().is_none_or(|k| k.address() == record.account.address),
            "an account's key is its address's"
        );
        self.accounts.push(AccountState {
            record,
            key,
            tokens: BTreeSet::new(),
            history: VecDeque::new(),
            next_seq: 0,
            spendable: BTreeSet::new(),
            spendable_tiyn: Amount::ZERO,
        });
    }

    fn remove_token(&mut self, token: &TokenId) {
        self.unindex(token);
        if let Some(holding) = self.tokens.remove(token) {
            token.toggle_in(&mut self.ids_hash);
            self.dt_total = self
                .dt_total
                .checked_sub(holding.input.output.amount_tiyn)
                .expect("the running total includes every token held");
            let state = self.accounts.get_mut(holding.owner as usize).expect("a token's owner is an account");
            state.tokens.remove(token);
        }
    }

    /// Hold `token`, keeping the running total. A token held already (a change replayed over
    /// the checkpoint that reflects it) replaces itself and counts once.
    fn hold(&mut self, token: TokenId, holding: Holding) {
        let amount = holding.input.output.amount_tiyn;
        let replaced = self.tokens.insert(token, holding).map(|old| old.input.output.amount_tiyn);
        if replaced.is_none() {
            token.toggle_in(&mut self.ids_hash);
        }
        let total = self.dt_total.checked_add(amount).and_then(|t| t.checked_sub(replaced.unwrap_or(Amount::ZERO)));
        self.dt_total = total.expect("a node's DT is within the money supply's bound");
        self.reindex(&token);
    }

    /// Mark `token` reserved by `by` (a payment in flight), or free again, keeping its
    /// account's index of spendable tokens.
    fn set_reserved(&mut self, token: &TokenId, by: Option<TxId>) {
        let holding = self.tokens.get_mut(token).expect("only a token held is reserved or released");
        holding.reserved_by = by;
        self.reindex(token);
    }

    /// Put `token` in its account's index of spendable tokens, or take it out, as it stands:
    /// in when it is standard and not reserved.
    fn reindex(&mut self, token: &TokenId) {
        let Some(holding) = self.tokens.get(token) else { return };
        if !holding.input.output.policy.is_standard() {
            return;
        }
        let key = (holding.input.output.amount_tiyn, *token);
        let state = self.accounts.get_mut(holding.owner as usize).expect("a token's owner is an account");
        if holding.reserved_by.is_none() {
            if state.spendable.insert(key) {
                state.spendable_tiyn = state
                    .spendable_tiyn
                    .checked_add(key.0)
                    .expect("an account's DT is within the money supply's bound");
            }
        } else if state.spendable.remove(&key) {
            state.spendable_tiyn = state.spendable_tiyn.checked_sub(key.0).expect("the index sums its tokens");
        }
    }

    /// Take `token` out of its account's index of spendable tokens (it is spent).
    fn unindex(&mut self, token: &TokenId) {
        let Some(holding) = self.tokens.get(token) else { return };
        let key = (holding.input.output.amount_tiyn, *token);
        let state = self.accounts.get_mut(holding.owner as usize).expect("a token's owner is an account");
        if state.spendable.remove(&key) {
            state.spendable_tiyn = state.spendable_tiyn.checked_sub(key.0).expect("the index sums its tokens");
        }
    }

    /// The client id of the account at `index`, which the caller got from this node (accounts
    /// are never removed, so an index it gave names an account for good).
    fn client_id_at(&self, index: AccountIndex) -> &String {
        let state = self.accounts.get(index as usize);
        &state.unwrap_or_else(|| panic!("no account {index} at {}", self.meta.id)).record.account.client_id
    }

    /// Changes to the node's tokens logged since it was loaded, and those its load replayed
    /// (one per delta that spent or received a token): its bank writes a checkpoint of the
    /// tokens when those since the last one are due (`dtenge_store::checkpoint::checkpoint_due`).
    pub fn token_changes(&self) -> u64 {
        self.token_changes
    }

    /// Checkpoint items for those of `ids` the node still holds: `(node, owner, input)`.
    /// Tokens spent since the ids were read are skipped (their spend is in the log after the
    /// checkpoint's position, and so would be the receipt of any token received since).
    pub fn checkpoint_items(&self, ids: &[TokenId]) -> Vec<Result<Vec<u8>>> {
        ids.iter()
            .filter_map(|id| self.tokens.get(id))
            .map(|holding| dtenge_store::encode(&(&self.meta.id, self.client_id_at(holding.owner), &holding.input)))
            .collect()
    }

    fn insert_token(&mut self, owner: AccountIndex, input: Input) {
        let id = input.token_id();
        self.accounts[owner as usize].tokens.insert(id);
        self.hold(id, Holding { input, owner, reserved_by: None });
    }

    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }
    pub fn id(&self) -> &str {
        &self.meta.id
    }
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// The node key the store recorded, when it was opened with another (a rotation).
    pub fn rotated_from(&self) -> Option<PublicKey> {
        self.rotated_from
    }

    fn account_state(&self, client_id: &str) -> Result<&AccountState> {
        let index = self.by_client.get(client_id).copied();
        index.and_then(|i| self.accounts.get(i as usize)).ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownAccount,
                format!("{} has no digital account for client {client_id}", self.meta.name),
            )
        })
    }

    pub fn account(&self, client_id: &str) -> Result<&Account> {
        Ok(&self.account_state(client_id)?.record.account)
    }

    /// The custodial key the bank keeps for `client_id` (`None` when the client keeps its
    /// own): what the key-scanning test looks for in the data directory's files.
    pub fn custodial_key(&self, client_id: &str) -> Result<Option<&SecretKey>> {
        Ok(self.account_state(client_id)?.key.as_ref())
    }

    pub fn own_account(&self) -> Result<&Account> {
        self.account(OWN_ACCOUNT)
    }

    /// Every account, in client id order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        let mut accounts: Vec<&Account> = self.accounts.iter().map(|s| &s.record.account).collect();
        accounts.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
        accounts.into_iter()
    }

    /// At most `limit` accounts after client id `after` (from the first when `None`), in
    /// client id order: a page of the accounts.
    pub fn accounts_after<'a>(&'a self, after: Option<&'a str>, limit: usize) -> impl Iterator<Item = &'a Account> {
        self.accounts().filter(move |a| after.is_none_or(|after| a.client_id.as_str() > after)).take(limit)
    }

    /// How many accounts this node keeps.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn client_of(&self, address: &Address) -> Option<&str> {
        let index = *self.by_address.get(address)?;
        self.accounts.get(index as usize).map(|state| state.record.account.client_id.as_str())
    }

    /// The account at `index` ([`NodeState::locate`]).
    pub fn account_at(&self, index: AccountIndex) -> Option<&Account> {
        self.accounts.get(index as usize).map(|state| &state.record.account)
    }

    /// The index and account an address belongs to, if it is one of this node's.
    pub fn locate(&self, address: &Address) -> Option<(AccountIndex, &Account)> {
        let index = *self.by_address.get(address)?;
        self.accounts.get(index as usize).map(|state| (index, &state.record.account))
    }

    /// The account an address belongs to, if it is one of this node's.
    pub fn account_of(&self, address: &Address) -> Option<&Account> {
        self.locate(address).map(|(_, account)| account)
    }

    pub fn balance(&self, client_id: &str) -> Result<Balance> {
        let state = self.account_state(client_id)?;
        let mut dt = Amount::ZERO;
        let mut reserved = Amount::ZERO;
        let mut held = Amount::ZERO;
        let mut marked = Amount::ZERO;
        let mut vat = Amount::ZERO;
        let mut spendable = Amount::ZERO;
        for id in &state.tokens {
            let holding = &self.tokens[id];
            let amount = holding.input.output.amount_tiyn;
            dt = dt.checked_add(amount)?;
            if holding.reserved_by.is_some() {
                reserved = reserved.checked_add(amount)?;
            }
            match holding.input.output.policy {
                Policy::Held { .. } => held = held.checked_add(amount)?,
                Policy::Marked { .. } => marked = marked.checked_add(amount)?,
                Policy::Vat => vat = vat.checked_add(amount)?,
                Policy::Standard if holding.reserved_by.is_none() => spendable = spendable.checked_add(amount)?,
                Policy::Standard => {}
            }
        }
        Ok(Balance {
            dt_tiyn: dt,
            dt_reserved_tiyn: reserved,
            dt_held_tiyn: held,
            dt_marked_tiyn: marked,
            dt_vat_tiyn: vat,
            dt_spendable_tiyn: spendable,
            fiat_tiyn: state.record.fiat,
            tokens: state.tokens.len(),
        })
    }

    /// All DT this node's accounts own.
    pub fn total_dt(&self) -> Result<Amount> {
        Ok(self.dt_total)
    }

    /// [`NodeState::total_dt`] counted token by token: what reconciliation compares the
    /// running total with.
    pub fn recount_dt(&self) -> Result<Amount> {
        Amount::sum(self.tokens.values().map(|h| h.input.output.amount_tiyn))
    }

    /// How many tokens this node holds (O(1): what monitoring publishes after every step).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The set hash of the ids of the tokens this node holds ([`TokenId::toggle_in`]), kept
    /// as they come and go (O(1)).
    pub fn token_ids_hash(&self) -> Hash32 {
        self.ids_hash
    }

    /// [`NodeState::token_ids_hash`] computed token by token.
    pub fn recount_ids_hash(&self) -> Hash32 {
        let mut hash = Hash32([0; 32]);
        for id in self.tokens.keys() {
            id.toggle_in(&mut hash);
        }
        hash
    }

    /// Every token id this node holds.
    pub fn token_ids(&self) -> impl Iterator<Item = &TokenId> {
        self.tokens.keys()
    }

    /// DT held for each oracle event on this node's accounts: what reconciliation compares
    /// with the oracle's registry.
    pub fn held_by_event(&self) -> Result<BTreeMap<Hash32, Amount>> {
        let mut held: BTreeMap<Hash32, Amount> = BTreeMap::new();
        for holding in self.tokens.values() {
            if let Some(event) = holding.input.output.policy.held_for() {
                let total = held.entry(*event).or_insert(Amount::ZERO);
                *total = total.checked_add(holding.input.output.amount_tiyn)?;
            }
        }
        Ok(held)
    }

    /// Marked DT on this node by (marking or contract hash, level): what reconciliation
    /// compares with the oracle's markings and contracts.
    pub fn marked_totals(&self) -> Result<BTreeMap<(Hash32, u8), Amount>> {
        let mut marked: BTreeMap<(Hash32, u8), Amount> = BTreeMap::new();
        for holding in self.tokens.values() {
            if let Policy::Marked { marking, level } = &holding.input.output.policy {
                let total = marked.entry((*marking, *level)).or_insert(Amount::ZERO);
                *total = total.checked_add(holding.input.output.amount_tiyn)?;
            }
        }
        Ok(marked)
    }

    pub fn history(&self, client_id: &str) -> Result<&VecDeque<HistoryEntry>> {
        Ok(&self.account_state(client_id)?.history)
    }

    pub fn card_client(&self, pan: &str) -> Option<&str> {
        self.cards.get(pan).map(String::as_str)
    }

    pub fn cards_of(&self, client_id: &str) -> Vec<String> {
        self.cards.iter().filter(|(_, c)| *c == client_id).map(|(p, _)| p.clone()).collect()
    }

    /// Plan opening an account; persist the batch, then [`NodeState::apply_open`]. With
    /// `custodial_key` the bank keeps the client's key (the usual case); without it the client
    /// keeps its own key and signs its own transactions.
    pub fn plan_open(&self, account: Account, custodial_key: Option<&SecretKey>, batch: &mut WriteBatch) -> Result<()> {
        if self.by_client.contains_key(&account.client_id) {
            bail!(DuplicateAccount, "client {} already has a digital account at {}", account.client_id, self.meta.name);
        }
        // The caller builds the account for this node from the key it holds (the network from
        // a request it checked): either differing is a programmer error.
        assert!(custodial_key.is_none_or(|k| k.address() == account.address), "account key and address differ");
        assert_eq!(account.node_id, self.meta.id, "an account is opened at its own node");
        if self.by_address.contains_key(&account.address) {
            bail!(DuplicateAccount, "address {} already belongs to an account", account.address);
        }
        let key_sealed = custodial_key.map(|key| self.custody.seal(key));
        let record = AccountRecord { account, key_sealed, fiat: Amount::ZERO };
        let client = record.account.client_id.as_bytes();
        batch.put_value(ACCOUNTS_TABLE, key2(self.meta.id.as_bytes(), client), &record)
    }

    pub fn apply_open(&mut self, account: Account, custodial_key: Option<&SecretKey>) {
        let key_sealed = custodial_key.map(|key| self.custody.seal(key));
        self.insert_account(AccountRecord { account, key_sealed, fiat: Amount::ZERO }, custodial_key.cloned());
    }

    /// Plan linking a card to an account.
    pub fn plan_card(&self, pan: &str, client_id: &str, batch: &mut WriteBatch) -> Result<()> {
        ids::check_pan(pan)?;
        self.account_state(client_id)?;
        ensure!(!self.cards.contains_key(pan), DuplicateAccount, "card {} is already linked", ids::mask_pan(pan));
        batch.put_value(CARDS_TABLE, key2(self.meta.id.as_bytes(), pan.as_bytes()), &client_id.to_string())
    }

    pub fn apply_card(&mut self, pan: &str, client_id: &str) {
        self.cards.insert(pan.to_string(), client_id.to_string());
    }

    /// Build, sign and attest a payment from `client_id` to `payees`, reserving the tokens it
    /// spends. Change goes back to the payer. Release with [`NodeState::release`] if the
    /// payment does not commit.
    pub fn prepare_payment(
        &mut self,
        client_id: &str,
        payees: &[(Address, Amount)],
        issuer: Address,
        nonce: u64,
    ) -> Result<Transaction> {
        let (mut tx, key) = self.prepare_payment_unsigned(client_id, payees, issuer, nonce)?;
        tx.sign_owner(&key);
        tx.attest(&self.key);
        Ok(tx)
    }

    /// [`NodeState::prepare_payment`] without the signatures: the inputs are chosen and
    /// reserved, and the client's custodial key is returned for the caller to sign with later
    /// (a bank signs outside its lock, and attests a whole batch with one signature).
    pub fn prepare_payment_unsigned(
        &mut self,
        client_id: &str,
        payees: &[(Address, Amount)],
        issuer: Address,
        nonce: u64,
    ) -> Result<(Transaction, SecretKey)> {
        ensure!(!payees.is_empty(), MalformedInput, "a payment needs at least one payee");
        for (_, amount) in payees {
            ensure!(!amount.is_zero(), MalformedInput, "payment amounts must be positive");
        }
        let total = Amount::sum(payees.iter().map(|(_, a)| *a))?;
        let outputs = payees.iter().map(|(to, amount)| Output::standard(*amount, *to, issuer)).collect();
        self.prepare_unsigned(client_id, Command::Transfer, total, outputs, issuer, nonce)
    }

    /// Build a consolidation (issue 19): up to [`TX_INPUTS_MAX`] of the client's smallest
    /// spendable standard tokens merged into one token of their sum, owned by the same
    /// account, reserving them. Returned unsigned with the client's custodial key, as
    /// [`NodeState::prepare_payment_unsigned`]; it commits like any transfer (validated and
    /// notarised), and neither the balance nor the history changes (a transfer to oneself
    /// writes no line).
    ///
    /// Why the smallest: a payment takes the largest tokens first, so the small ones are what
    /// makes a balance take more than [`TX_INPUTS_MAX`] inputs; merging them first leaves the
    /// fewest tokens. One consolidation takes n tokens to n - 1,023 at most: a client with more
    /// asks again. Fewer than two spendable tokens is `CONFLICT`: nothing to merge.
    pub fn prepare_consolidation_unsigned(
        &mut self,
        client_id: &str,
        issuer: Address,
        nonce: u64,
    ) -> Result<(Transaction, SecretKey)> {
        let state = self.account_state(client_id)?;
        let key = state.key.clone().ok_or_else(|| {
            Error::new(
                ErrorCode::Forbidden,
                format!(
                    "client {client_id} keeps its own key: it merges its tokens with a transfer to itself it signs \
                     (GET /v1/nodes/{{node}}/accounts/{client_id}/consolidation offers one)"
                ),
            )
        })?;
        let tx = Transaction::new(self.consolidation_body(client_id, issuer, nonce)?);
        let tx_id = tx.id();
        for input in &tx.body.inputs {
            let id = input.token_id();
            debug_assert!(self.tokens[&id].reserved_by.is_none());
            self.set_reserved(&id, Some(tx_id));
        }
        Ok((tx, key))
    }

    /// A consolidation for a client that keeps its own key to sign (issue 20: such a client is
    /// offered one): the same transfer of its smallest spendable standard tokens to itself as
    /// [`NodeState::prepare_consolidation_unsigned`] builds, unsigned and reserving nothing. The
    /// client signs it and submits it as any transfer; a payment that takes one of its tokens
    /// meanwhile makes it fail, and the client asks again. `FORBIDDEN` for a custodial client,
    /// whose bank merges its tokens.
    pub fn consolidation_offer(&self, client_id: &str, issuer: Address, nonce: u64) -> Result<Transaction> {
        let state = self.account_state(client_id)?;
        ensure!(
            state.key.is_none(),
            Forbidden,
            "client {client_id}'s bank keeps its key and merges its tokens itself (POST .../consolidations)"
        );
        Ok(Transaction::new(self.consolidation_body(client_id, issuer, nonce)?))
    }

    /// Up to [`TX_INPUTS_MAX`] of the client's smallest spendable standard tokens to one token
    /// of their sum on the same account; `CONFLICT` under two.
    fn consolidation_body(&self, client_id: &str, issuer: Address, nonce: u64) -> Result<TxBody> {
        let state = self.account_state(client_id)?;
        ensure!(
            state.spendable.len() >= 2,
            Conflict,
            "{} holds {} spendable standard token(s): nothing to consolidate",
            state.record.account.name,
            state.spendable.len()
        );
        // Smallest first, from the index (ties by id, so that the same state always merges the
        // same tokens): O(k) in the tokens merged.
        let chosen = state.spendable.iter().take(TX_INPUTS_MAX);
        let inputs: Vec<Input> = chosen.clone().map(|(_, id)| self.tokens[id].input.clone()).collect();
        let total = Amount::sum(chosen.map(|(amount, _)| *amount))?;
        assert!((2..=TX_INPUTS_MAX).contains(&inputs.len()), "a consolidation merges 2 to {TX_INPUTS_MAX} tokens");
        let outputs = vec![Output::standard(total, state.record.account.address, issuer)];
        Ok(TxBody { command: Command::Transfer, inputs, outputs, nonce })
    }

    /// Up to `accounts_max` of the custodial accounts found holding more than
    /// [`CONSOLIDATE_ABOVE_TOKENS`] tokens since the last call, by client id: those with at
    /// least [`CONSOLIDATE_TOKENS_MIN`] spendable standard tokens, which the bank consolidates
    /// now (the others are skipped until tokens arrive again). An account is taken once per
    /// arrival of tokens: its consolidation in flight is not asked for again.
    pub fn take_fragmented(&mut self, accounts_max: usize) -> Vec<String> {
        assert!(accounts_max > 0, "a bound of at least one account");
        let mut clients = Vec::new();
        // Bounded: each step takes one account out of the set.
        while clients.len() < accounts_max {
            let Some(index) = self.fragmented.pop_first() else { break };
            let client_id = self.client_id_at(index).clone();
            let spendable = self.spendable_token_count(&client_id).expect("an index names an account for good");
            if spendable >= CONSOLIDATE_TOKENS_MIN {
                clients.push(client_id);
            }
        }
        clients
    }

    /// Note `client_id`'s account for a background consolidation again (its last was refused);
    /// an unknown client or one the bank does not hold the key of is not noted.
    pub fn note_fragmented(&mut self, client_id: &str) {
        if let Some(&index) = self.by_client.get(client_id) {
            if self.accounts[index as usize].key.is_some() {
                self.fragmented.insert(index);
            }
        }
    }

    /// Custodial accounts noted above [`CONSOLIDATE_ABOVE_TOKENS`] and not taken yet
    /// ([`NodeState::take_fragmented`]).
    pub fn fragmented_count(&self) -> usize {
        self.fragmented.len()
    }

    /// The client's standard tokens it may spend now (not reserved): how fragmented its
    /// wallet is, and whether a consolidation would merge anything.
    pub fn spendable_token_count(&self, client_id: &str) -> Result<usize> {
        Ok(self.account_state(client_id)?.spendable.len())
    }

    /// Build a redemption of `amount` from the node's own account (the NBK must attest too).
    pub fn prepare_redemption(&mut self, amount: Amount, issuer: Address, nonce: u64) -> Result<Transaction> {
        self.prepare(OWN_ACCOUNT, Command::Redeem, amount, Vec::new(), issuer, nonce)
    }

    fn prepare(
        &mut self,
        client_id: &str,
        command: Command,
        total: Amount,
        outputs: Vec<Output>,
        issuer: Address,
        nonce: u64,
    ) -> Result<Transaction> {
        let (mut tx, key) = self.prepare_unsigned(client_id, command, total, outputs, issuer, nonce)?;
        tx.sign_owner(&key);
        tx.attest(&self.key);
        Ok(tx)
    }

    /// Choose and reserve the inputs of a transaction from `client_id`'s account; returns it
    /// unsigned, with the key its owner signs with.
    fn prepare_unsigned(
        &mut self,
        client_id: &str,
        command: Command,
        total: Amount,
        mut outputs: Vec<Output>,
        issuer: Address,
        nonce: u64,
    ) -> Result<(Transaction, SecretKey)> {
        let state = self.account_state(client_id)?;
        // O(log n + k) in the account's tokens (issue 20): the index, never a walk of them all.
        let selection = select_indexed(&state.spendable, state.spendable_tiyn, total).map_err(|e| {
            if e.code == ErrorCode::LimitExceeded {
                // The wallet is too fragmented for one transaction: say how to merge it.
                return Error::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "{}: {}: merge the tokens with a consolidation \
                         (POST /v1/nodes/{{node}}/accounts/{{client}}/consolidations), then pay",
                        state.record.account.name, e.message
                    ),
                );
            }
            if e.code != ErrorCode::InsufficientFunds {
                return e;
            }
            // Standard DT only: a marked or VAT spend in flight gives back marked or VAT change.
            let reserved = Amount::sum(state.tokens.iter().filter_map(|id| {
                self.tokens
                    .get(id)
                    .filter(|h| h.reserved_by.is_some() && h.input.output.policy.is_standard())
                    .map(|h| h.input.output.amount_tiyn)
            }))
            .unwrap_or(Amount::ZERO);
            // Enough once the payments in flight complete (their change comes back, or they
            // fail and free their inputs): a retry may pass, so the refusal says so.
            let spendable = state.spendable_tiyn;
            let may_suffice = spendable.checked_add(reserved).is_ok_and(|with_reserved| with_reserved >= total);
            if !reserved.is_zero() && may_suffice {
                return Error::new(
                    ErrorCode::FundsInFlight,
                    format!(
                        "{}: {spendable} spendable now, {reserved} more reserved by payments in flight: retry when they complete",
                        state.record.account.name
                    ),
                );
            }
            let in_flight = if reserved.is_zero() {
                String::new()
            } else {
                format!("; {reserved} more is reserved by payments in flight")
            };
            let held = Amount::sum(state.tokens.iter().filter_map(|id| {
                self.tokens.get(id).filter(|h| !h.input.output.policy.is_standard()).map(|h| h.input.output.amount_tiyn)
            }))
            .unwrap_or(Amount::ZERO);
            let in_flight = if held.is_zero() {
                in_flight
            } else {
                format!("{in_flight}; {held} is held for oracle events and cannot be spent")
            };
            Error::new(ErrorCode::InsufficientFunds, format!("{}: {}{in_flight}", state.record.account.name, e.message))
        })?;
        let address = state.record.account.address;
        let key = state.key.clone().ok_or_else(|| {
            Error::new(
                ErrorCode::Forbidden,
                format!("client {client_id} keeps its own key: submit a transaction it signed"),
            )
        })?;
        let (chosen, chosen_tiyn) = sweep(&state.spendable, selection);
        let change = chosen_tiyn.checked_sub(total)?;
        if !change.is_zero() {
            outputs.push(Output::standard(change, address, issuer));
        }
        let inputs: Vec<Input> = chosen.iter().map(|id| self.tokens[id].input.clone()).collect();
        let tx = Transaction::new(TxBody { command, inputs, outputs, nonce });
        // The id is the body's: the signatures made later do not change it.
        let tx_id = tx.id();
        for id in &chosen {
            self.set_reserved(id, Some(tx_id));
        }
        Ok((tx, key))
    }

    /// The tokens a client may spend now (not reserved), with their preimages: what a client
    /// that keeps its own key needs to build a transaction.
    pub fn spendable_inputs(&self, client_id: &str) -> Result<Vec<Input>> {
        Ok(self.inputs_of(client_id, false)?.cloned().collect())
    }

    /// Every token the client owns that is not reserved, whatever its policy: held, marked
    /// and VAT-marked tokens included (they move only with the oracle's attestation).
    pub fn all_inputs(&self, client_id: &str) -> Result<Vec<Input>> {
        Ok(self.inputs_of(client_id, true)?.cloned().collect())
    }

    /// The client's unreserved tokens, in the account's order, read in place (a page of them
    /// is taken without copying the rest, issue 19): the standard ones it may spend now, or
    /// with `all` every one whatever its policy.
    pub fn inputs_of<'a>(&'a self, client_id: &str, all: bool) -> Result<impl Iterator<Item = &'a Input> + 'a> {
        let state = self.account_state(client_id)?;
        Ok(state.tokens.iter().filter_map(move |id| {
            self.tokens
                .get(id)
                .filter(|h| h.reserved_by.is_none() && (all || h.input.output.policy.is_standard()))
                .map(|h| &h.input)
        }))
    }

    /// Build a hold: `amount` of the client's standard DT becomes a token held for the oracle
    /// event `event`, on the same account; change comes back standard. Signed by the client's
    /// custodial key and attested by the node; the oracle must attest too before it commits.
    pub fn prepare_hold(
        &mut self,
        client_id: &str,
        amount: Amount,
        event: Hash32,
        issuer: Address,
        nonce: u64,
    ) -> Result<Transaction> {
        ensure!(!amount.is_zero(), MalformedInput, "the amount to hold must be positive");
        let address = self.account_state(client_id)?.record.account.address;
        let outputs = vec![Output::held(amount, address, issuer, event)];
        self.prepare(client_id, Command::Transfer, amount, outputs, issuer, nonce)
    }

    /// DT of one kind the client may spend now (not reserved).
    pub fn available(&self, client_id: &str, policy: &Policy) -> Result<Amount> {
        let state = self.account_state(client_id)?;
        Amount::sum(state.tokens.iter().filter_map(|id| {
            self.tokens
                .get(id)
                .filter(|h| h.reserved_by.is_none() && h.input.output.policy == *policy)
                .map(|h| h.input.output.amount_tiyn)
        }))
    }

    /// Build a programmed payment: for each part, `amount` of the client's tokens of exactly
    /// that policy (change of the same policy comes back to the client), paying `outputs`.
    /// Signed with the client's custodial key and attested by the node; the oracle must
    /// attest before it commits. Parts name distinct policies.
    pub fn prepare_spend(
        &mut self,
        client_id: &str,
        parts: &[(Policy, Amount)],
        mut outputs: Vec<Output>,
        issuer: Address,
        nonce: u64,
    ) -> Result<Transaction> {
        // The parts are the oracle's plan (one per policy it moves), not a request's.
        assert!(!parts.is_empty() && parts.len() <= 4, "a spend has 1 to 4 parts, not {}", parts.len());
        let state = self.account_state(client_id)?;
        let address = state.record.account.address;
        let key = state.key.clone().ok_or_else(|| {
            Error::new(
                ErrorCode::Forbidden,
                format!("client {client_id} keeps its own key: programmed payments are custodial"),
            )
        })?;
        let mut chosen: Vec<TokenId> = Vec::new();
        for (policy, amount) in parts.iter().filter(|(_, a)| !a.is_zero()) {
            let candidates: Vec<(TokenId, Amount)> = state
                .tokens
                .iter()
                .filter_map(|id| {
                    let holding = &self.tokens[id];
                    (holding.reserved_by.is_none() && holding.input.output.policy == *policy)
                        .then_some((*id, holding.input.output.amount_tiyn))
                })
                .collect();
            let amounts: Vec<Amount> = candidates.iter().map(|(_, a)| *a).collect();
            let selection = coins::select(&amounts, *amount).map_err(|e| {
                let kind = match policy {
                    Policy::Standard => "standard",
                    Policy::Held { .. } => "held",
                    Policy::Marked { .. } => "marked",
                    Policy::Vat => "VAT-marked",
                };
                // As a payment's: retryable when its own payments in flight reserve enough of
                // this kind that it may suffice once they complete.
                let reserved = Amount::sum(state.tokens.iter().filter_map(|id| {
                    self.tokens
                        .get(id)
                        .filter(|h| h.reserved_by.is_some() && h.input.output.policy == *policy)
                        .map(|h| h.input.output.amount_tiyn)
                }))
                .unwrap_or(Amount::ZERO);
                let spendable = Amount::sum(amounts.iter().copied()).unwrap_or(Amount::ZERO);
                let in_flight = e.code == ErrorCode::InsufficientFunds
                    && !reserved.is_zero()
                    && spendable.checked_add(reserved).is_ok_and(|with_reserved| with_reserved >= *amount);
                if in_flight {
                    return Error::new(
                        ErrorCode::FundsInFlight,
                        format!(
                            "{} ({kind} DT): {spendable} spendable now, {reserved} more reserved by payments in flight: \
                             retry when they complete",
                            state.record.account.name
                        ),
                    );
                }
                Error::new(e.code, format!("{} ({kind} DT): {}", state.record.account.name, e.message))
            })?;
            chosen.extend(selection.chosen.iter().map(|&i| candidates[i].0));
            if !selection.change.is_zero() {
                outputs.push(Output { amount_tiyn: selection.change, owner: address, issuer, policy: policy.clone() });
            }
        }
        let inputs: Vec<Input> = chosen.iter().map(|id| self.tokens[id].input.clone()).collect();
        let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce });
        tx.sign_owner(&key);
        tx.attest(&self.key);
        let tx_id = tx.id();
        for id in &chosen {
            self.set_reserved(id, Some(tx_id));
        }
        Ok(tx)
    }

    /// Build a release of everything the client holds for `event` into `outputs` (the
    /// oracle's decision), reserving the held tokens. Attested by the node only: held tokens
    /// need no owner's signature, and without the oracle's attestation validation refuses it.
    pub fn prepare_release(
        &mut self,
        client_id: &str,
        event: &Hash32,
        outputs: Vec<Output>,
        nonce: u64,
    ) -> Result<Transaction> {
        let state = self.account_state(client_id)?;
        let mut ids = Vec::new();
        for id in &state.tokens {
            let holding = &self.tokens[id];
            if holding.input.output.policy.held_for() == Some(event) {
                ensure!(
                    holding.reserved_by.is_none(),
                    RequestInProgress,
                    "a release of event funds is in flight; retry when it completes"
                );
                ids.push(*id);
            }
        }
        ensure!(!ids.is_empty(), InsufficientFunds, "{} holds nothing for this event", state.record.account.name);
        let inputs: Vec<Input> = ids.iter().map(|id| self.tokens[id].input.clone()).collect();
        let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce });
        tx.attest(&self.key);
        let tx_id = tx.id();
        for id in &ids {
            self.set_reserved(id, Some(tx_id));
        }
        Ok(tx)
    }

    /// Attest a transfer a client built and signed itself. The node answers for it only if
    /// every input belongs to one of its accounts and is not reserved by a payment in flight;
    /// the signatures and amounts are checked by validation right after.
    pub fn attest_client_transaction(&self, mut tx: Transaction) -> Result<Transaction> {
        self.check_client_transaction(&tx)?;
        tx.attestations.retain(|a| a.public_key != self.key.public_key());
        tx.attest(&self.key);
        Ok(tx)
    }

    /// The checks of [`NodeState::attest_client_transaction`], without the signature: callers
    /// that attest many transactions sign outside the node's lock.
    pub fn check_client_transaction(&self, tx: &Transaction) -> Result<()> {
        self.check_client_transaction_ids(tx, &tx.input_ids()).map(|_| ())
    }

    /// [`NodeState::check_client_transaction`] with the inputs' token ids already hashed.
    /// Returns the account of each input's owner, in input order (found by the check anyway).
    pub fn check_client_transaction_ids(&self, tx: &Transaction, input_ids: &[TokenId]) -> Result<Vec<AccountIndex>> {
        assert_eq!(input_ids.len(), tx.body.inputs.len(), "the caller hashed one token id per input");
        ensure!(tx.body.command == Command::Transfer, Forbidden, "clients submit transfers only");
        ensure!(!tx.body.inputs.is_empty(), MalformedInput, "a transfer spends inputs");
        let mut owners = Vec::with_capacity(input_ids.len());
        for (input, id) in tx.body.inputs.iter().zip(input_ids) {
            let Some(&owner) = self.by_address.get(&input.output.owner) else {
                bail!(Forbidden, "input owner {} is not a client of {}", input.output.owner, self.meta.name);
            };
            if let Some(holding) = self.tokens.get(id) {
                ensure!(holding.reserved_by.is_none(), DoubleSpend, "token {id} is being spent by a payment in flight");
            }
            owners.push(owner);
        }
        Ok(owners)
    }

    /// The transaction a token is reserved for, while it is in flight.
    pub fn reserved_by(&self, id: &TokenId) -> Option<TxId> {
        self.tokens.get(id).and_then(|holding| holding.reserved_by)
    }

    /// Reserve the inputs of a client's transaction `tx_id` while it is at the notary: every
    /// input must be a token this node holds, not reserved by another transaction, so a second
    /// transaction spending one of them is refused here (`DOUBLE_SPEND`) instead of at the
    /// notary. Reserving again for the same transaction changes nothing (a bank recovering its
    /// outbox reserves what it had reserved). Nothing is reserved when one input fails.
    pub fn reserve_inputs(&mut self, tx_id: &TxId, input_ids: &[TokenId]) -> Result<()> {
        for id in input_ids {
            let Some(holding) = self.tokens.get(id) else {
                bail!(DoubleSpend, "token {id} is not held at {}: spent already, or never received", self.meta.name);
            };
            if holding.reserved_by.is_some_and(|by| by != *tx_id) {
                bail!(DoubleSpend, "token {id} is being spent by a payment in flight");
            }
        }
        for id in input_ids {
            self.set_reserved(id, Some(*tx_id));
        }
        Ok(())
    }

    /// Undo the reservations of a transaction that did not commit. Only reservations made
    /// for this very transaction are undone: a foreign transaction naming the same tokens
    /// cannot free them.
    ///
    /// An account the tokens come back to that is still fragmented is noted again: a tick may
    /// have taken it while they were reserved (its own consolidation, recovered from the outbox
    /// after a restart, then refused), found too few spendable to merge and dropped it (the
    /// roles' simulator found it, seed 97 of issue 20's run).
    pub fn release(&mut self, tx: &Transaction) {
        let tx_id = tx.id();
        for id in tx.input_ids() {
            if self.tokens.get(&id).is_some_and(|holding| holding.reserved_by == Some(tx_id)) {
                self.set_reserved(&id, None);
                let owner = self.tokens[&id].owner;
                if self.accounts[owner as usize].is_fragmented() {
                    self.fragmented.insert(owner);
                }
            }
        }
    }

    /// Is any of this node's accounts a party to the transaction?
    pub fn is_party(&self, tx: &Transaction) -> bool {
        tx.body.inputs.iter().any(|i| self.by_address.contains_key(&i.output.owner))
            || tx.body.outputs.iter().any(|o| self.by_address.contains_key(&o.owner))
    }

    /// Plan what a committed transaction changes at this node: tokens spent and received by
    /// its accounts, history lines, the transaction record.
    pub fn plan_commit(
        &mut self,
        tx: &Transaction,
        purpose: Purpose,
        reference: Option<&str>,
        now_ms: u64,
    ) -> Result<Delta> {
        let tx_id = tx.id();
        let inputs = tx.input_ids();
        let outputs = tx.output_ids_of(&tx_id);
        self.plan_commit_ids(tx, &tx_id, &inputs, &outputs, purpose, reference, now_ms)
    }

    /// [`NodeState::plan_commit`] with the transaction's id and its inputs' and outputs' token
    /// ids computed already (validation has them), so the payment path hashes each once.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_commit_ids(
        &mut self,
        tx: &Transaction,
        tx_id: &TxId,
        input_ids: &[TokenId],
        output_ids: &[TokenId],
        purpose: Purpose,
        reference: Option<&str>,
        now_ms: u64,
    ) -> Result<Delta> {
        let owners = tx.body.inputs.iter().map(|i| &i.output.owner).chain(tx.body.outputs.iter().map(|o| &o.owner));
        let located: Vec<Option<AccountIndex>> = owners.map(|owner| self.by_address.get(owner).copied()).collect();
        self.plan_commit_located(tx, tx_id, input_ids, output_ids, &located, purpose, reference, now_ms)
    }

    /// [`NodeState::plan_commit_ids`] with the owners already located: `located` has one entry
    /// per input, then one per output, `Some` with the account's index where the owner is an
    /// account of this node ([`NodeState::locate`]), `None` where it is not. The payment path
    /// finds each owner once in its check stage and carries the answer here (an address never
    /// changes account or node); each `Some` is checked against the account it names, so a
    /// wrong index is refused, not applied.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_commit_located(
        &mut self,
        tx: &Transaction,
        tx_id: &TxId,
        input_ids: &[TokenId],
        output_ids: &[TokenId],
        located: &[Option<AccountIndex>],
        purpose: Purpose,
        reference: Option<&str>,
        now_ms: u64,
    ) -> Result<Delta> {
        // Hashed and located by the caller from this very transaction: other counts, or an
        // index naming another account than the owner, are programmer errors. Checking an
        // index is O(1) (one comparison of addresses), so it runs in release builds too.
        assert_eq!(input_ids.len(), tx.body.inputs.len(), "the caller hashed one token id per input");
        assert_eq!(output_ids.len(), tx.body.outputs.len(), "the caller hashed one token id per output");
        assert_eq!(located.len(), tx.body.inputs.len() + tx.body.outputs.len(), "one location per input and output");
        let (located_inputs, located_outputs) = located.split_at(tx.body.inputs.len());
        let owners = tx.body.inputs.iter().map(|i| &i.output.owner).chain(tx.body.outputs.iter().map(|o| &o.owner));
        for (owner, at) in owners.zip(located) {
            match at {
                Some(index) => assert!(
                    self.accounts.get(*index as usize).is_some_and(|a| a.record.account.address == *owner),
                    "account {index} of {} is not the owner {owner}",
                    self.meta.id
                ),
                // Debug builds only: a hash probe per owner that is not this node's is what
                // locating in the check stage saves the settle stage (see the doc above).
                None => debug_assert!(!self.by_address.contains_key(owner), "{owner} is located elsewhere"),
            }
        }
        let tx_id = *tx_id;
        let mut delta = Delta { node_id: self.meta.id.clone(), ..Delta::default() };
        // Per account: (DT out, DT in, held out, held in).
        let mut net: BTreeMap<AccountIndex, (Amount, Amount, Amount, Amount)> = BTreeMap::new();
        for ((input, id), at) in tx.body.inputs.iter().zip(input_ids).zip(located_inputs) {
            if let Some(account) = *at {
                delta.spent.push(*id);
                let entry = net.entry(account).or_default();
                entry.0 = entry.0.checked_add(input.output.amount_tiyn)?;
                if !input.output.policy.is_standard() {
                    entry.2 = entry.2.checked_add(input.output.amount_tiyn)?;
                }
            }
        }
        for (index, ((output, id), at)) in tx.body.outputs.iter().zip(output_ids).zip(located_outputs).enumerate() {
            if let Some(account) = *at {
                let input = Input { tx_id, index: index as u32, output: output.clone() };
                debug_assert_eq!(input.token_id(), *id);
                delta.received.push((*id, account, input));
                let entry = net.entry(account).or_default();
                entry.1 = entry.1.checked_add(output.amount_tiyn)?;
                if !output.policy.is_standard() {
                    entry.3 = entry.3.checked_add(output.amount_tiyn)?;
                }
            }
        }
        for (account, (out, into, held_out, held_in)) in net {
            let state = self.accounts.get_mut(account as usize).expect("every index was checked above");
            let address = state.record.account.address;
            let (direction, amount, counterparty) = if into > out {
                let from = tx.body.inputs.iter().map(|i| i.output.owner).find(|o| *o != address);
                (Direction::Credit, into.checked_sub(out)?, from)
            } else if out > into {
                let to = tx.body.outputs.iter().map(|o| o.owner).find(|o| *o != address);
                (Direction::Debit, out.checked_sub(into)?, to)
            } else if held_in > held_out {
                (Direction::Held, held_in.checked_sub(held_out)?, None)
            } else {
                (Direction::Unheld, held_out.checked_sub(held_in)?, None)
            };
            if amount.is_zero() {
                continue;
            }
            let counterparty = match tx.body.command {
                Command::Issue | Command::Redeem => None,
                Command::Transfer => counterparty,
            };
            let seq = state.next_seq;
            state.next_seq += 1;
            delta.history.push((
                account,
                HistoryEntry {
                    seq,
                    tx_id,
                    at_unix_ms: now_ms,
                    purpose,
                    direction,
                    amount_tiyn: amount,
                    counterparty,
                    reference: reference.map(str::to_string),
                },
            ));
        }
        Ok(delta)
    }

    /// The bank-money balance a client would have after adding `credit` and removing `debit`.
    pub fn fiat_after(&self, client_id: &str, credit: Amount, debit: Amount) -> Result<Amount> {
        let state = self.account_state(client_id)?;
        let after = state.record.fiat.checked_add(credit)?;
        after.checked_sub(debit).map_err(|_| {
            Error::new(
                ErrorCode::InsufficientFunds,
                format!("{} holds {} in bank money, {} needed", state.record.account.name, state.record.fiat, debit),
            )
        })
    }

    /// A delta that only sets a client's bank-money balance (deposits, card settlement).
    pub fn fiat_delta(&self, client_id: &str, fiat: Amount) -> Result<Delta> {
        self.account_state(client_id)?;
        Ok(Delta { node_id: self.meta.id.clone(), fiat: vec![(client_id.to_string(), fiat)], ..Delta::default() })
    }

    /// Every linked card: (card number, client id).
    pub fn cards(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cards.iter().map(|(p, c)| (p.as_str(), c.as_str()))
    }

    /// Apply a persisted delta. Strict: the delta was planned by this node and written by
    /// [`Delta::writes`], so an account it names that the node does not have, or a token
    /// received by another account than its owner's, is a programmer error and stops the
    /// process. (A token spent that is not held is not: applying a change again spends
    /// nothing twice, as replay at start relies on.)
    pub fn apply(&mut self, delta: Delta) {
        assert_eq!(delta.node_id, self.meta.id, "a delta is applied at the node that planned it");
        // Counted as `Delta::writes` logs it: one record when it spends or receives a token.
        if !delta.spent.is_empty() || !delta.received.is_empty() {
            self.token_changes += 1;
        }
        for token in &delta.spent {
            self.remove_token(token);
        }
        for (token, owner, input) in delta.received {
            // O(1) per token: an index and a comparison of 32 bytes.
            let state = self
                .accounts
                .get_mut(owner as usize)
                .unwrap_or_else(|| panic!("a delta names account {owner}, which {} does not have", self.meta.id));
            assert_eq!(state.record.account.address, input.output.owner, "a token is received by its owner's account");
            state.tokens.insert(token);
            let fragmented = state.is_fragmented();
            self.hold(token, Holding { input, owner, reserved_by: None });
            if fragmented {
                self.fragmented.insert(owner);
            }
        }
        for (account, entry) in delta.history {
            let state = self.accounts.get_mut(account as usize).unwrap_or_else(|| {
                panic!("a delta's history names account {account}, which {} does not have", self.meta.id)
            });
            insert_history(&mut state.history, entry);
        }
        for (client, fiat) in delta.fiat {
            let index = self.by_client.get(&client).map(|&index| index as usize);
            let state = index.and_then(|index| self.accounts.get_mut(index)).unwrap_or_else(|| {
                panic!("a delta sets the bank money of {client}, who has no account at {}", self.meta.id)
            });
            state.record.fiat = fiat;
        }
    }
}

/// Add to `selection` (inputs chosen from `spendable`, and their sum) the account's smallest
/// spendable tokens not chosen, at most [`SWEEP_INPUTS_MAX`], when it holds more than
/// [`SWEEP_ABOVE_TOKENS`]: their value comes back in the change. Why: a payment from one
/// token leaves its payee one more token and its payer its change, so the unspent set grew
/// by one token with every payment, and memory, the notary's set and every bank's store with
/// it (issue 20: 1,337 tokens per account after five minutes). Sweeping two more inputs makes
/// a payment net one token fewer while its payer holds more than [`SWEEP_ABOVE_TOKENS`]: the
/// wallets of clients who pay stay at about that many tokens, and the unspent set grows with
/// the holders, not the payments. Wallets that only receive are merged in the background
/// above [`CONSOLIDATE_ABOVE_TOKENS`]. O(k log n) for the k tokens swept.
fn sweep(spendable: &BTreeSet<(Amount, TokenId)>, selection: (Vec<TokenId>, Amount)) -> (Vec<TokenId>, Amount) {
    let (mut chosen, mut sum) = selection;
    assert!(!chosen.is_empty() && chosen.len() <= TX_INPUTS_MAX, "a selection of 1 to TX_INPUTS_MAX inputs");
    if spendable.len() <= SWEEP_ABOVE_TOKENS {
        return (chosen, sum);
    }
    let room = SWEEP_INPUTS_MAX.min(TX_INPUTS_MAX - chosen.len());
    // Bounded: the chosen are at most TX_INPUTS_MAX, so at most that many more are skipped.
    let swept: Vec<(Amount, TokenId)> =
        spendable.iter().filter(|(_, id)| !chosen.contains(id)).take(room).copied().collect();
    for (amount, id) in swept {
        // The index holds its running sum, which fits an Amount: any part of it does too.
        sum = sum.checked_add(amount).expect("a part of the index's running sum fits an amount");
        chosen.push(id);
    }
    (chosen, sum)
}

/// Most tokens a payment spends beyond those it needs ([`sweep`]).
pub const SWEEP_INPUTS_MAX: usize = 2;
/// A payer holding more spendable tokens than this sweeps ([`sweep`]).
pub const SWEEP_ABOVE_TOKENS: usize = 4;

/// Coin selection over an account's index of spendable standard tokens (issue 20): the same
/// choice as [`coins::select`] makes over a list (its tests below compare the two), in
/// O(log n + k) for k tokens chosen instead of O(n) in the tokens the account owns. One token
/// when one covers the amount: the smallest that does (an exact match first, being the
/// smallest); otherwise the largest first, at most [`TX_INPUTS_MAX`]. `available` is the
/// index's running sum. The tokens chosen and their sum.
fn select_indexed(
    spendable: &BTreeSet<(Amount, TokenId)>,
    available: Amount,
    target: Amount,
) -> Result<(Vec<TokenId>, Amount)> {
    ensure!(!target.is_zero(), MalformedInput, "the amount must be positive");
    ensure!(available >= target, InsufficientFunds, "spendable balance {available} is less than {target}");
    if let Some(&(amount, id)) = spendable.range((target, TokenId(Hash32([0; 32])))..).next() {
        return Ok((vec![id], amount));
    }
    let mut chosen = Vec::new();
    let mut sum = Amount::ZERO;
    // Bounded: at most TX_INPUTS_MAX steps before it returns or refuses.
    for &(amount, id) in spendable.iter().rev() {
        if sum >= target {
            break;
        }
        if chosen.len() == TX_INPUTS_MAX {
            bail!(LimitExceeded, "paying {target} needs more than {TX_INPUTS_MAX} tokens; consolidate first");
        }
        chosen.push(id);
        sum = sum.checked_add(amount)?;
    }
    assert!(sum >= target, "the index holds its running sum {available}, at least {target}");
    Ok((chosen, sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, seed: u8) -> NodeState {
        let meta = NodeMeta { id: id.into(), kind: NodeKind::Bank, name: format!("{id} bank") };
        NodeState::new(meta, node_key(seed), SecretKey::from_seed([seed + 1; 32]), custody(), 0)
    }

    fn node_key(seed: u8) -> NodeKey {
        SecretKey::from_seed([seed; 32]).into()
    }

    fn custody() -> Custody {
        Custody::new([90; 32])
    }

    fn account(node: &mut NodeState, client: &str, seed: u8) -> Address {
        let key = SecretKey::from_seed([seed; 32]);
        let account = Account {
            client_id: client.into(),
            node_id: node.id().into(),
            kind: ClientKind::Individual,
            name: client.into(),
            phone: None,
            address: key.address(),
            opened_at_unix_ms: 0,
        };
        let mut batch = WriteBatch::new();
        node.plan_open(account.clone(), Some(&key), &mut batch).unwrap();
        assert_eq!(node.plan_open(account.clone(), Some(&key), &mut batch).err(), None);
        node.apply_open(account.clone(), Some(&key));
        assert_eq!(node.plan_open(account, Some(&key), &mut batch).unwrap_err().code, ErrorCode::DuplicateAccount);
        key.address()
    }

    #[test]
    fn pay_reserves_then_commit_moves_tokens_and_writes_history() {
        let issuer_key = SecretKey::from_seed([100; 32]);
        let issuer = issuer_key.address();
        let mut bank = node("b", 1);
        let alice = account(&mut bank, "alice", 10);
        let bob = account(&mut bank, "bob", 11);

        let mut issue = Transaction::new(TxBody {
            command: Command::Issue,
            inputs: vec![],
            outputs: vec![Output::standard(Amount::from_tiyn(500_000).unwrap(), alice, issuer)],
            nonce: 0,
        });
        issue.attest(&issuer_key);
        let delta = bank.plan_commit(&issue, Purpose::Emission, None, 1).unwrap();
        bank.apply(delta);
        assert_eq!(bank.balance("alice").unwrap().dt_tiyn.tiyn(), 500_000);

        let pay = bank.prepare_payment("alice", &[(bob, Amount::from_tiyn(15_000).unwrap())], issuer, 1).unwrap();
        assert_eq!(bank.balance("alice").unwrap().dt_reserved_tiyn.tiyn(), 500_000);
        // The only token is reserved: a second payment cannot pick it, and is told to retry
        // (issue 19: the build before answered INSUFFICIENT_FUNDS, which the docs call final).
        let again = bank.prepare_payment("alice", &[(bob, Amount::from_tiyn(1).unwrap())], issuer, 2);
        assert_eq!(again.unwrap_err().code, ErrorCode::FundsInFlight);
        // Beyond what it holds, reserved or not: final.
        let beyond = bank.prepare_payment("alice", &[(bob, Amount::from_tiyn(500_001).unwrap())], issuer, 2);
        assert_eq!(beyond.unwrap_err().code, ErrorCode::InsufficientFunds);

        let delta = bank.plan_commit(&pay, Purpose::Payment, None, 2).unwrap();
        bank.apply(delta);
        assert_eq!(bank.balance("alice").unwrap().dt_tiyn.tiyn(), 485_000);
        assert_eq!(bank.balance("alice").unwrap().dt_reserved_tiyn.tiyn(), 0);
        assert_eq!(bank.balance("bob").unwrap().dt_tiyn.tiyn(), 15_000);
        let h = bank.history("alice").unwrap();
        assert_eq!(h.back().unwrap().direction, Direction::Debit);
        assert_eq!(h.back().unwrap().amount_tiyn.tiyn(), 15_000);
        assert_eq!(h.back().unwrap().counterparty, Some(bob));
        assert_eq!(bank.history("bob").unwrap()[0].counterparty, Some(alice));
        assert_eq!(bank.total_dt().unwrap(), bank.recount_dt().unwrap(), "the running total is the tokens' sum");
        assert_eq!(bank.token_ids_hash(), bank.recount_ids_hash(), "the running set hash is the tokens'");
        assert_eq!(bank.total_dt().unwrap().tiyn(), 500_000);
        // Whatever is applied, even a change again, the running total stays the tokens' sum.
        let again = bank.plan_commit(&issue, Purpose::Emission, None, 3).unwrap();
        bank.apply(again);
        assert_eq!(bank.total_dt().unwrap(), bank.recount_dt().unwrap());
        assert_eq!(bank.token_ids_hash(), bank.recount_ids_hash());
    }

    /// Issue 19: a balance of more than [`TX_INPUTS_MAX`] tokens cannot be paid whole in one
    /// transaction; a consolidation merges the smallest tokens into one, changing neither the
    /// balance nor the history, and the balance is then spent whole.
    #[test]
    fn a_fragmented_balance_is_consolidated_then_paid_whole() {
        let issuer_key = SecretKey::from_seed([100; 32]);
        let issuer = issuer_key.address();
        let mut bank = node("b", 1);
        let alice = account(&mut bank, "alice", 10);
        let bob = account(&mut bank, "bob", 11);
        // 1,100 tokens: 1,099 of 1 tiyn (dust) and one of 50,000.
        let tokens = TX_INPUTS_MAX + 76;
        let mut outputs = vec![Output::standard(Amount::from_tiyn(50_000).unwrap(), alice, issuer)];
        outputs.extend((1..tokens).map(|_| Output::standard(Amount::from_tiyn(1).unwrap(), alice, issuer)));
        let mut issue = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: 0 });
        issue.attest(&issuer_key);
        let delta = bank.plan_commit(&issue, Purpose::Emission, None, 1).unwrap();
        bank.apply(delta);
        let balance = 50_000 + tokens as u64 - 1;
        assert_eq!(bank.balance("alice").unwrap().dt_tiyn.tiyn(), balance);
        assert_eq!(bank.spendable_token_count("alice").unwrap(), tokens);
        let whole = [(bob, Amount::from_tiyn(balance).unwrap())];
        let refused = bank.prepare_payment("alice", &whole, issuer, 1).unwrap_err();
        assert_eq!(refused.code, ErrorCode::LimitExceeded);
        assert!(refused.message.contains("/consolidations"), "{}", refused.message);
        assert_eq!(bank.balance("alice").unwrap().dt_reserved_tiyn.tiyn(), 0, "a refusal reserves nothing");

        let history_before = bank.history("alice").unwrap().len();
        let (mut merge, key) = bank.prepare_consolidation_unsigned("alice", issuer, 2).unwrap();
        assert_eq!(merge.body.inputs.len(), TX_INPUTS_MAX);
        assert!(merge.body.inputs.iter().all(|i| i.output.amount_tiyn.tiyn() == 1), "the smallest go first");
        assert_eq!(merge.body.outputs, vec![Output::standard(Amount::from_tiyn(1_024).unwrap(), alice, issuer)]);
        merge.sign_owner(&key);
        merge.attest(&bank.key);
        let merged: u64 = merge.body.inputs.iter().map(|i| i.output.amount_tiyn.tiyn()).sum();
        assert_eq!(merged, merge.body.outputs[0].amount_tiyn.tiyn(), "inputs = outputs");
        // Its tokens are reserved: a second consolidation takes the others only.
        let (second, _) = bank.prepare_consolidation_unsigned("alice", issuer, 3).unwrap();
        assert_eq!(second.body.inputs.len(), tokens - TX_INPUTS_MAX);
        bank.release(&second);
        let delta = bank.plan_commit(&merge, Purpose::Payment, None, 2).unwrap();
        bank.apply(delta);
        assert_eq!(bank.balance("alice").unwrap().dt_tiyn.tiyn(), balance, "a consolidation changes no balance");
        assert_eq!(bank.history("alice").unwrap().len(), history_before, "nor the history");
        assert_eq!(bank.spendable_token_count("alice").unwrap(), tokens - TX_INPUTS_MAX + 1);
        assert_eq!(bank.total_dt().unwrap(), bank.recount_dt().unwrap());
        bank.assert_indexed();

        let pay = bank.prepare_payment("alice", &whole, issuer, 4).unwrap();
        assert_eq!(pay.body.inputs.len(), tokens - TX_INPUTS_MAX + 1, "the whole balance, in one payment");
        assert_eq!(pay.body.outputs.len(), 1, "no change");
        bank.release(&pay);

        // Nothing to merge: one token left after merging again; a self-keyed client merges
        // with a transfer it signs.
        let (mut last, key) = bank.prepare_consolidation_unsigned("alice", issuer, 5).unwrap();
        last.sign_owner(&key);
        let delta = bank.plan_commit(&last, Purpose::Payment, None, 3).unwrap();
        bank.apply(delta);
        assert_eq!(bank.spendable_token_count("alice").unwrap(), 1);
        let nothing = bank.prepare_consolidation_unsigned("alice", issuer, 6).unwrap_err();
        assert_eq!(nothing.code, ErrorCode::Conflict);
        assert_eq!(bank.balance("alice").unwrap().dt_tiyn.tiyn(), balance);
        let unknown = bank.prepare_consolidation_unsigned("nobody", issuer, 7).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownAccount);
    }

    /// Issue 20: a client that keeps its own key is offered a consolidation to sign; the offer
    /// reserves nothing, and signed by the client it merges the tokens without changing the
    /// balance. A custodial client is told that its bank merges for it.
    /// Issue 20 (the roles' simulator, seed 97): a fragmented account taken by a tick while
    /// its tokens were reserved by its own consolidation is dropped, too few spendable to
    /// merge; when that consolidation is refused and its tokens come back, the account is
    /// noted again, so the next tick merges it.
    #[test]
    fn a_fragmented_account_whose_reserved_tokens_come_back_is_noted_again() {
        let issuer_key = SecretKey::from_seed([100; 32]);
        let issuer = issuer_key.address();
        let mut bank = node("b", 1);
        let alice = account(&mut bank, "alice", 10);
        let outputs = (0..CONSOLIDATE_ABOVE_TOKENS + 20)
            .map(|_| Output::standard(Amount::from_tiyn(1).unwrap(), alice, issuer))
            .collect();
        let mut issue = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: 0 });
        issue.attest(&issuer_key);
        let delta = bank.plan_commit(&issue, Purpose::Emission, None, 1).unwrap();
        bank.apply(delta);
        assert_eq!(bank.fragmented_count(), 1, "noted as its tokens arrived");
        let (merge, _) = bank.prepare_consolidation_unsigned("alice", issuer, 2).unwrap();
        assert_eq!(bank.take_fragmented(8), Vec::<String>::new(), "every token reserved: nothing to merge now");
        assert_eq!(bank.fragmented_count(), 0);
        bank.release(&merge);
        assert_eq!(bank.fragmented_count(), 1, "its tokens came back: noted again");
        assert_eq!(bank.take_fragmented(8), vec!["alice".to_string()]);
        // A release of a wallet that is not fragmented notes nothing.
        let bob = account(&mut bank, "bob", 11);
        let delta = bank.plan_commit(&issue_to(bob, 500), Purpose::Emission, None, 3).unwrap();
        bank.apply(delta);
        let pay = bank.prepare_payment("bob", &[(alice, Amount::from_tiyn(100).unwrap())], issuer, 4).unwrap();
        bank.release(&pay);
        assert_eq!(bank.fragmented_count(), 0);
    }

    #[test]
    fn a_self_keyed_client_is_offered_a_consolidation_to_sign() {
        let issuer_key = SecretKey::from_seed([100; 32]);
        let issuer = issuer_key.address();
        let mut bank = node("b", 1);
        account(&mut bank, "custodial", 10);
        let own = SecretKey::from_seed([12; 32]);
        let open = Account {
            client_id: "self".into(),
            node_id: "b".into(),
            kind: ClientKind::Individual,
            name: "self".into(),
            phone: None,
            address: own.address(),
            opened_at_unix_ms: 0,
        };
        bank.plan_open(open.clone(), None, &mut WriteBatch::new()).unwrap();
        bank.apply_open(open.clone(), None);
        let outputs =
            (1..=300).map(|t| Output::standard(Amount::from_tiyn(t).unwrap(), own.address(), issuer)).collect();
        let mut issue = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: 0 });
        issue.attest(&issuer_key);
        let delta = bank.plan_commit(&issue, Purpose::Emission, None, 1).unwrap();
        bank.apply(delta);
        let before = bank.balance("self").unwrap();

        let mut offer = bank.consolidation_offer("self", issuer, 7).unwrap();
        assert_eq!(offer.body.inputs.len(), 300);
        assert_eq!(
            offer.body.outputs,
            vec![Output::standard(Amount::from_tiyn(45_150).unwrap(), own.address(), issuer)]
        );
        assert!(offer.witnesses.is_empty(), "unsigned: the client signs");
        assert_eq!(bank.balance("self").unwrap().dt_reserved_tiyn.tiyn(), 0, "an offer reserves nothing");
        assert_eq!(bank.prepare_consolidation_unsigned("self", issuer, 8).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(bank.consolidation_offer("custodial", issuer, 9).unwrap_err().code, ErrorCode::Forbidden);

        offer.sign_owner(&own);
        let ids: Vec<TokenId> = offer.input_ids();
        bank.check_client_transaction_ids(&offer, &ids).unwrap();
        let delta = bank.plan_commit(&offer, Purpose::Payment, None, 2).unwrap();
        bank.apply(delta);
        let after = bank.balance("self").unwrap();
        assert_eq!((after.dt_tiyn, after.tokens), (before.dt_tiyn, 1));
        assert_eq!(bank.consolidation_offer("self", issuer, 10).unwrap_err().code, ErrorCode::Conflict);
        bank.assert_indexed();
    }

    /// Owners located by the caller plan exactly what the node finds by itself; an index that
    /// names another account than the owner is a programmer error that stops the process
    /// (here: a panic), and nothing changes.
    #[test]
    fn located_owners_plan_the_same_delta_and_a_wrong_index_stops_the_process() {
        let issuer_key = SecretKey::from_seed([100; 32]);
        let issuer = issuer_key.address();
        let mut bank = node("b", 1);
        let alice = account(&mut bank, "alice", 10);
        let bob = account(&mut bank, "bob", 11);
        let elsewhere = SecretKey::from_seed([12; 32]).address();
        let tx = Transaction::new(TxBody {
            command: Command::Issue,
            inputs: vec![],
            outputs: vec![
                Output::standard(Amount::from_tiyn(300).unwrap(), alice, issuer),
                Output::standard(Amount::from_tiyn(200).unwrap(), bob, issuer),
                Output::standard(Amount::from_tiyn(100).unwrap(), elsewhere, issuer),
            ],
            nonce: 0,
        });
        let (tx_id, outputs) = (tx.id(), tx.output_ids());
        let found = bank.plan_commit_ids(&tx, &tx_id, &[], &outputs, Purpose::Emission, None, 1).unwrap();
        let (a, b) = (bank.locate(&alice).unwrap().0, bank.locate(&bob).unwrap().0);
        assert_ne!(a, b);
        assert!(bank.locate(&elsewhere).is_none());
        let located = [Some(a), Some(b), None];
        let given = bank.plan_commit_located(&tx, &tx_id, &[], &outputs, &located, Purpose::Emission, None, 1).unwrap();
        assert_eq!(format!("{given:?}"), format!("{found:?}").replace("seq: 0", "seq: 1"));
        // Alice's output named as Bob's, an index past the accounts, a foreign owner as Alice,
        // too few locations: the check stage located them, so each is a programmer error.
        let wrong: [&[Option<AccountIndex>]; 4] =
            [&[Some(b), Some(b), None], &[Some(a), Some(1_000), None], &[Some(a), Some(b), Some(a)], &located[..2]];
        let says = ["is not the owner", "account 1000 of b is not the owner", "is not the owner", "one location per"];
        for (wrong, says) in wrong.into_iter().zip(says) {
            let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                bank.plan_commit_located(&tx, &tx_id, &[], &outputs, wrong, Purpose::Emission, None, 1)
            }));
            let message = planned.expect_err("a wrong location stops the process");
            let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(message.contains(says), "{wrong:?}: {message}");
        }
        assert_eq!(bank.balance("alice").unwrap().dt_tiyn.tiyn(), 0, "planning changes no balance");
    }

    fn issue_to(to: Address, tiyn: u64) -> Transaction {
        let issuer_key = SecretKey::from_seed([100; 32]);
        let mut issue = Transaction::new(TxBody {
            command: Command::Issue,
            inputs: vec![],
            outputs: vec![Output::standard(Amount::from_tiyn(tiyn).unwrap(), to, issuer_key.address())],
            nonce: tiyn,
        });
        issue.attest(&issuer_key);
        issue
    }

    /// `apply` is strict: a delta naming an account the node does not have was not planned
    /// by this node, and stops the process instead of being skipped.
    #[test]
    #[should_panic(expected = "a delta names account 7, which b does not have")]
    fn a_delta_naming_an_account_the_node_does_not_have_stops_the_process() {
        let mut bank = node("b", 1);
        let alice = account(&mut bank, "alice", 10);
        let mut delta = bank.plan_commit(&issue_to(alice, 500), Purpose::Emission, None, 1).unwrap();
        delta.received[0].1 = 7;
        bank.apply(delta);
    }

    /// A token received by another account than the one its output names stops the process.
    #[test]
    #[should_panic(expected = "a token is received by its owner's account")]
    fn a_token_applied_to_another_account_than_its_owner_stops_the_process() {
        let mut bank = node("b", 1);
        let alice = account(&mut bank, "alice", 10);
        let bob = account(&mut bank, "bob", 11);
        let mut delta = bank.plan_commit(&issue_to(alice, 500), Purpose::Emission, None, 1).unwrap();
        delta.received[0].1 = bank.locate(&bob).unwrap().0;
        bank.apply(delta);
    }

    /// A store holding one bank with Alice and Bob, her 500 tiyn issued and 200 paid to Bob,
    /// all through `Delta::writes`; and the bank in memory.
    fn stored_bank() -> (dtenge_store::Store, NodeState) {
        let store = Store::open_simulated(dtenge_store::SimDisk::new(), &TABLES).unwrap();
        let mut bank = node("b", 1);
        let mut batch = WriteBatch::new();
        bank.genesis_writes(&mut batch).unwrap();
        for (client, seed) in [("alice", 10), ("bob", 11)] {
            let key = SecretKey::from_seed([seed; 32]);
            let account = Account {
                client_id: client.into(),
                node_id: "b".into(),
                kind: ClientKind::Individual,
                name: client.into(),
                phone: None,
                address: key.address(),
                opened_at_unix_ms: 0,
            };
            bank.plan_open(account.clone(), Some(&key), &mut batch).unwrap();
            bank.apply_open(account, Some(&key));
        }
        store.commit(batch).unwrap();
        let (alice, bob) = (bank.account("alice").unwrap().address, bank.account("bob").unwrap().address);
        let issue = issue_to(alice, 500);
        let issuer = issue.body.outputs[0].issuer;
        for step in 0..2 {
            let tx = match step {
                0 => issue.clone(),
                _ => bank.prepare_payment("alice", &[(bob, Amount::from_tiyn(200).unwrap())], issuer, 9).unwrap(),
            };
            let delta = bank.plan_commit(&tx, Purpose::Payment, None, 1).unwrap();
            let mut batch = WriteBatch::new();
            delta.writes(&bank, &mut batch).unwrap();
            store.commit(batch).unwrap();
            bank.apply(delta);
        }
        (store, bank)
    }

    /// A node opened with another node key than its store recorded is a rotation, not a
    /// refusal; another custody key is refused.
    #[test]
    fn another_node_key_is_a_rotation_and_another_custody_key_is_refused() {
        let (store, _) = stored_bank();
        let rotated = NodeState::load(&store, node_key(2), custody()).unwrap();
        assert_eq!(rotated.rotated_from(), Some(node_key(1).public_key()));
        assert_eq!(rotated.key().public_key(), node_key(2).public_key());
        let mut batch = WriteBatch::new();
        rotated.meta_writes(&mut batch).unwrap();
        store.commit(batch).unwrap();
        assert_eq!(NodeState::load(&store, node_key(2), custody()).unwrap().rotated_from(), None, "recorded");
        let refused = NodeState::load(&store, node_key(2), Custody::new([91; 32])).err().unwrap();
        assert_eq!(refused.code, ErrorCode::StorageFailure, "{refused}");
        assert!(refused.message.contains("does not open with this bank's data-encryption key"), "{refused}");
    }

    /// What `Delta::writes` records, `load_all` reads back to the same balances and history
    /// (and asserts the same facts on the way).
    #[test]
    fn what_deltas_write_loads_back_the_same() {
        let (store, bank) = stored_bank();
        let loaded = NodeState::load(&store, node_key(1), custody()).unwrap();

        for client in ["alice", "bob", OWN_ACCOUNT] {
            assert_eq!(loaded.balance(client).unwrap(), bank.balance(client).unwrap(), "{client}");
            assert_eq!(loaded.history(client).unwrap(), bank.history(client).unwrap(), "{client}");
        }
        assert_eq!(loaded.balance("bob").unwrap().dt_tiyn.tiyn(), 200);
    }

    /// Issue 20: history lines are rows of their own; memory and a start hold only each
    /// account's newest HISTORY_IN_MEMORY_MAX, and a page of any depth is read from the store,
    /// newest first, with the history's total. Lines a build before kept in the old log are
    /// moved to the table, once, and read the same.
    #[test]
    fn history_is_paged_from_the_store_and_memory_keeps_the_newest() {
        let (store, mut bank) = stored_bank();
        let alice = bank.account("alice").unwrap().address;
        let issuer = issue_to(alice, 1).body.outputs[0].issuer;
        let payments = HISTORY_IN_MEMORY_MAX + 10;
        for n in 0..payments {
            let tx =
                bank.prepare_payment("bob", &[(alice, Amount::from_tiyn(1).unwrap())], issuer, 100 + n as u64).unwrap();
            let delta = bank.plan_commit(&tx, Purpose::Payment, None, 2).unwrap();
            let mut batch = WriteBatch::new();
            delta.writes(&bank, &mut batch).unwrap();
            store.commit(batch).unwrap();
            bank.apply(delta);
        }
        // Bob: the payment from Alice, then his own.
        let lines = payments + 1;
        assert_eq!(bank.history("bob").unwrap().len(), HISTORY_IN_MEMORY_MAX, "memory keeps the newest");
        assert!(bank.history("bob").unwrap().capacity() <= HISTORY_IN_MEMORY_MAX, "and no room for more");
        let (page, total) = history_page(&store, "b", "bob", 0, 5).unwrap();
        assert_eq!(total, lines);
        let newest: Vec<u64> = bank.history("bob").unwrap().iter().rev().take(5).map(|e| e.seq).collect();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), newest, "the page is the newest, newest first");
        let (oldest, _) = history_page(&store, "b", "bob", lines - 1, 5).unwrap();
        assert_eq!(oldest.len(), 1);
        assert_eq!((oldest[0].direction, oldest[0].counterparty), (Direction::Credit, Some(alice)), "Alice's payment");
        assert!(history_page(&store, "b", "bob", lines, 5).unwrap().0.is_empty());
        assert!(history_page(&store, "b", "nobody", 0, 5).unwrap().0.is_empty());
        let loaded = NodeState::load(&store, node_key(1), custody()).unwrap();
        assert_eq!(loaded.history("bob").unwrap(), bank.history("bob").unwrap(), "a start reads the newest back");

        // A store of the build before: the same lines as records of the old log.
        let old = Store::open_simulated(dtenge_store::SimDisk::new(), &TABLES).unwrap();
        let mut batch = WriteBatch::new();
        for row in store.scan(HISTORY_TABLE).unwrap() {
            batch.put(HISTORY_TABLE, row.0, row.1);
        }
        old.commit(batch).unwrap();
        let mut batch = WriteBatch::new();
        let (all, _) = history_page(&store, "b", "bob", 0, lines).unwrap();
        for entry in all.iter().rev() {
            batch.record_value(HISTORY_LOG, &("b", "bob", entry)).unwrap();
            batch.delete(HISTORY_TABLE, history_key("b", "bob", entry.seq));
        }
        old.commit(batch).unwrap();
        assert_eq!(history_page(&old, "b", "bob", 0, 5).unwrap().1, 0, "bob's lines are in the log only");
        assert_eq!(migrate_history_log(&old).unwrap(), lines);
        assert_eq!(old.log_row_count(HISTORY_LOG).unwrap(), 0, "the log is emptied");
        assert_eq!(history_page(&old, "b", "bob", 0, lines).unwrap(), (all, lines), "and its lines read the same");
        assert_eq!(migrate_history_log(&old).unwrap(), 0, "once");
    }

    /// Keyed rows are fjall's, without a checksum of the store's own: a key that does not
    /// parse, or an account or card of a node or client the store does not have, refuses to
    /// open with `STORAGE_FAILURE`.
    #[test]
    fn corrupt_keyed_rows_refuse_to_open_with_a_storage_failure() {
        let record = |client: &str, node: &str| {
            let key = SecretKey::from_seed([50; 32]);
            let account = Account {
                client_id: client.into(),
                node_id: node.into(),
                kind: ClientKind::Individual,
                name: client.into(),
                phone: None,
                address: key.address(),
                opened_at_unix_ms: 0,
            };
            AccountRecord { account, key_sealed: None, fiat: Amount::ZERO }
        };
        let cases: [(Table, Vec<u8>, Vec<u8>, &str); 5] = [
            (ACCOUNTS_TABLE, b"no separator".to_vec(), dtenge_store::encode(&record("c", "b")).unwrap(), "a key"),
            (ACCOUNTS_TABLE, key2(b"zz", b"c"), dtenge_store::encode(&record("c", "zz")).unwrap(), "at zz"),
            (ACCOUNTS_TABLE, key2(b"b", b"c"), dtenge_store::encode(&record("d", "b")).unwrap(), "of c at b"),
            (CARDS_TABLE, key2(b"b", &[0xff]), dtenge_store::encode(&"alice".to_string()).unwrap(), "a key"),
            (CARDS_TABLE, key2(b"b", b"4400"), dtenge_store::encode(&"carol".to_string()).unwrap(), "of carol"),
        ];
        for (table, key, value, says) in cases {
            let (store, _) = stored_bank();
            let mut batch = WriteBatch::new();
            batch.put(table, key, value);
            store.commit(batch).unwrap();
            let refused = NodeState::load(&store, node_key(1), custody()).err().expect("corrupt rows are refused");
            assert_eq!(refused.code, ErrorCode::StorageFailure, "{refused}");
            assert!(refused.message.starts_with(table.0) && refused.message.contains(says), "{refused}");
        }
    }

    /// Token changes come from the store's checksummed journal and were written by
    /// `Delta::writes`, which asserts that the owner is one of the node's accounts: a change
    /// naming another is a programmer error, and loading stops the process.
    #[test]
    #[should_panic(expected = "a token is received by an account of its node")]
    fn a_token_change_naming_an_unknown_account_stops_the_process() {
        let (store, _) = stored_bank();
        let ghost = SecretKey::from_seed([66; 32]).address();
        let issue = issue_to(ghost, 300);
        let input = issue.outputs_as_inputs().remove(0);
        let mut batch = WriteBatch::new();
        let change: TokenChange = ("b".into(), vec![], vec![("ghost".into(), input)]);
        batch.record_value(TOKENS.log, &change).unwrap();
        store.commit(batch).unwrap();
        let _ = NodeState::load(&store, node_key(1), custody());
    }

    proptest::proptest! {
        /// A consolidation of any wallet (some of its tokens reserved by payments in flight)
        /// merges the smallest unreserved standard tokens, at most [`TX_INPUTS_MAX`], into one
        /// of their sum: applied, it changes neither the balance nor what is reserved.
        #[test]
        fn a_consolidation_never_changes_a_balance(
            amounts in proptest::collection::vec(1u64..5_000, 2..300),
            paid_tiyn in 1u64..20_000,
        ) {
            let issuer_key = SecretKey::from_seed([100; 32]);
            let issuer = issuer_key.address();
            let mut bank = node("b", 1);
            let alice = account(&mut bank, "alice", 10);
            let bob = account(&mut bank, "bob", 11);
            let outputs = amounts.iter().map(|&t| Output::standard(Amount::from_tiyn(t).unwrap(), alice, issuer)).collect();
            let mut issue = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: 0 });
            issue.attest(&issuer_key);
            let delta = bank.plan_commit(&issue, Purpose::Emission, None, 1).unwrap();
            bank.apply(delta);
            // A payment in flight reserves some tokens (or none, when the wallet is short).
            let paid = Amount::from_tiyn(paid_tiyn.min(amounts.iter().sum())).unwrap();
            let in_flight = bank.prepare_payment("alice", &[(bob, paid)], issuer, 1).unwrap();
            let before = bank.balance("alice").unwrap();
            let mut free: Vec<u64> = bank.inputs_of("alice", false).unwrap().map(|i| i.output.amount_tiyn.tiyn()).collect();
            match bank.prepare_consolidation_unsigned("alice", issuer, 2) {
                Ok((mut merge, key)) => {
                    free.sort_unstable();
                    free.truncate(TX_INPUTS_MAX);
                    let mut merged: Vec<u64> = merge.body.inputs.iter().map(|i| i.output.amount_tiyn.tiyn()).collect();
                    merged.sort_unstable();
                    proptest::prop_assert_eq!(&merged, &free, "the smallest unreserved tokens");
                    proptest::prop_assert_eq!(merge.body.outputs.len(), 1);
                    proptest::prop_assert_eq!(merge.body.outputs[0].amount_tiyn.tiyn(), free.iter().sum::<u64>());
                    proptest::prop_assert_eq!(merge.body.outputs[0].owner, alice);
                    proptest::prop_assert!(merge.body.inputs.iter().all(|i| !in_flight.input_ids().contains(&i.token_id())));
                    merge.sign_owner(&key);
                    let delta = bank.plan_commit(&merge, Purpose::Payment, None, 2).unwrap();
                    bank.apply(delta);
                }
                Err(e) => {
                    proptest::prop_assert_eq!(e.code, ErrorCode::Conflict);
                    proptest::prop_assert!(free.len() < 2);
                }
            }
            let after = bank.balance("alice").unwrap();
            proptest::prop_assert_eq!(after.dt_tiyn, before.dt_tiyn);
            proptest::prop_assert_eq!(after.dt_reserved_tiyn, before.dt_reserved_tiyn);
            proptest::prop_assert_eq!(bank.total_dt().unwrap(), bank.recount_dt().unwrap());
            proptest::prop_assert_eq!(bank.history("alice").unwrap().len(), 1, "the emission's line only");
            bank.assert_indexed();
        }

        /// Issue 20: choosing from the index of spendable tokens chooses what
        /// [`coins::select`] chooses from the list of them (the same amounts, one token when one
        /// covers, the largest first otherwise), and refuses with the same code.
        #[test]
        fn selection_from_the_index_is_the_lists(
            values in proptest::collection::vec(1u64..2_000, 0..1_500),
            target in 1u64..400_000,
        ) {
            let amounts: Vec<Amount> = values.iter().map(|&v| Amount::from_tiyn(v).unwrap()).collect();
            let index: BTreeSet<(Amount, TokenId)> = amounts
                .iter()
                .enumerate()
                .map(|(i, a)| (*a, TokenId(dtenge_core::crypto::hash_parts(b"t", &[&(i as u64).to_le_bytes()]))))
                .collect();
            let available = Amount::sum(amounts.iter().copied()).unwrap();
            let target = Amount::from_tiyn(target).unwrap();
            match (coins::select(&amounts, target), select_indexed(&index, available, target)) {
                (Ok(listed), Ok((chosen, sum))) => {
                    let mut from_list: Vec<u64> = listed.chosen.iter().map(|&i| values[i]).collect();
                    let by_id: std::collections::BTreeMap<TokenId, Amount> = index.iter().map(|(a, id)| (*id, *a)).collect();
                    let mut from_index: Vec<u64> = chosen.iter().map(|id| by_id[id].tiyn()).collect();
                    from_list.sort_unstable();
                    from_index.sort_unstable();
                    proptest::prop_assert_eq!(from_list, from_index);
                    proptest::prop_assert_eq!(listed.total, sum);
                }
                (Err(listed), Err(indexed)) => proptest::prop_assert_eq!(listed.code, indexed.code),
                (listed, indexed) => proptest::prop_assert!(false, "list {listed:?}, index {indexed:?}"),
            }
        }

        /// Issue 20: a sweep keeps what was chosen, adds only the smallest tokens not chosen,
        /// at most SWEEP_INPUTS_MAX of them and only above SWEEP_ABOVE_TOKENS, never a token
        /// twice, never more than TX_INPUTS_MAX inputs, and its sum is its tokens' sum.
        #[test]
        fn a_sweep_adds_the_smallest_tokens_and_their_sum(
            values in proptest::collection::vec(1u64..2_000, 1..300),
            target in 1u64..100_000,
        ) {
            let index: BTreeSet<(Amount, TokenId)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (Amount::from_tiyn(*v).unwrap(), TokenId(dtenge_core::crypto::hash_parts(b"t", &[&(i as u64).to_le_bytes()]))))
                .collect();
            let available = Amount::sum(index.iter().map(|(a, _)| *a)).unwrap();
            let Ok(selection) = select_indexed(&index, available, Amount::from_tiyn(target).unwrap()) else {
                return Ok(());
            };
            let (chosen, sum) = sweep(&index, selection.clone());
            let by_id: std::collections::BTreeMap<TokenId, Amount> = index.iter().map(|(a, id)| (*id, *a)).collect();
            proptest::prop_assert_eq!(&chosen[..selection.0.len()], &selection.0[..]);
            proptest::prop_assert_eq!(Amount::sum(chosen.iter().map(|id| by_id[id])).unwrap(), sum);
            let distinct: BTreeSet<&TokenId> = chosen.iter().collect();
            proptest::prop_assert_eq!(distinct.len(), chosen.len());
            proptest::prop_assert!(chosen.len() <= TX_INPUTS_MAX);
            let added = chosen.len() - selection.0.len();
            let expected = if index.len() > SWEEP_ABOVE_TOKENS {
                SWEEP_INPUTS_MAX.min(TX_INPUTS_MAX - selection.0.len()).min(index.len() - selection.0.len())
            } else {
                0
            };
            proptest::prop_assert_eq!(added, expected);
            let smallest: Vec<TokenId> =
                index.iter().map(|(_, id)| *id).filter(|id| !selection.0.contains(id)).take(added).collect();
            proptest::prop_assert_eq!(&chosen[selection.0.len()..], &smallest[..]);
        }
    }
}
