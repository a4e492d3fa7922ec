//! The notary: the one component that guarantees each token is spent at most once.
//!
//! It holds an unspent-hash set (Project Hamilton's UHS): token ids only, no amounts, no
//! parties. It does not validate business content; validating nodes do that before they ask.
//!
//! Concurrency: the set is split into [`SHARDS`] shards by the first byte of the token id, each
//! behind its own lock, and the record of transactions is split the same way by transaction
//! id. A spend locks only the shards its tokens and its id fall in, in ascending order (no
//! deadlock), checks, and applies: check-and-spend is atomic per transaction, and two
//! transactions that touch disjoint shards never wait for each other. The payment pipeline's
//! settle stage, which spends a whole batch in order, instead takes every shard at once
//! ([`Notary::lock_all`]) for one pass over the batch (its spends, later its finalizes) and
//! releases them before the batch's durable commit: one lock round per batch instead of one
//! per transaction, with the same checks ([`AllShards`] runs the same code as the per-spend
//! methods).
//!
//! Two-step commit with the durable store: [`Notary::try_spend`] removes the inputs from the
//! unspent set, records the outputs as *pending* and marks the transaction pending; the caller
//! persists [`Notary::writes`] and then calls [`Notary::finalize`] (the outputs become
//! unspent), or [`Notary::revert`] if the commit failed (the inputs come back). While pending,
//! a conflicting spend is refused, a resubmission answers `RequestInProgress` (never an early
//! "committed"), and so does a spend of a pending output: nothing can spend an output before
//! the transaction that creates it is durable, so commits on disk always come in spend order.
//!
//! Persistence: each spend appends one change record (its inputs and outputs) to
//! [`UNSPENT`]'s log, and [`Notary::checkpoint_items`] dumps the durable unspent set for a
//! checkpoint (see `dtenge_store::checkpoint`): start-up reads the checkpoint and replays the
//! changes after it.

pub mod service;

use dtenge_core::token::{TokenId, TxId};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{Checkpointed, LogTable, Table, WriteBatch};
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashSet;

/// Shards of the unspent set: one per value of a token id's first byte.
pub const SHARDS: usize = 256;

/// The unspent set: a log of spends (inputs and outputs of each) and checkpoints of the set.
pub const UNSPENT: Checkpointed =
    Checkpointed { log: LogTable("notary_unspent_log"), items: Table("notary_unspent_checkpoint") };
/// The ids of the transactions the notary committed, keyed by the id, with the number of the
/// certificate that answered each (`u64` big-endian): what a resubmission is answered from
/// once its id has left memory (see [`COMMITTED_IN_MEMORY_MAX`]). Never read whole: a start
/// reads none of it, a lookup reads one row (issue 20: every committed id was held in memory
/// and read at every start).
pub const COMMITTED_TABLE: Table = Table("notary_committed");
/// The ids of the transactions refused for good (see [`TX_ABORTED`]), keyed by the id, with
/// the certificate number the refusal was written under: all held in memory, read at start.
/// A refusal for good happens only while an operator blocks a sender, so they are few.
pub const ABORTED_TABLE: Table = Table("notary_aborted");
/// Where decided ids were on 2026-12-08, keyed `[certificate u64 BE][tx id]` with one byte of
/// value ([`TX_COMMITTED`] or [`TX_ABORTED`]): moved to [`COMMITTED_TABLE`] and
/// [`ABORTED_TABLE`] at the first start ([`migrate_tx_logs`]). Keyed by certificate, a
/// resubmission could not be looked up by its id.
pub const TXS_TABLE: Table = Table("notary_txs");
/// A committed transaction's value in [`TXS_TABLE`].
pub const TX_COMMITTED: u8 = 0;
/// The value of a transaction refused for a reason that could change (its sender was
/// blocked): refused for good, so that a copy the network delivers later, after the block is
/// lifted, cannot commit what the sender already dropped.
pub const TX_ABORTED: u8 = 1;
/// Where committed ids were until 2026-12-08; moved at the first start.
pub const COMMITTED_LOG: LogTable = LogTable("notary_committed_log");
/// Where refused-for-good ids were until 2026-12-08; moved at the first start.
pub const ABORTED_LOG: LogTable = LogTable("notary_aborted_log");
pub const TABLES: [Table; 7] = [
    UNSPENT.tables()[0],
    UNSPENT.tables()[1],
    COMMITTED_TABLE,
    ABORTED_TABLE,
    TXS_TABLE,
    COMMITTED_LOG.table(),
    ABORTED_LOG.table(),
];
/// Most committed transaction ids a notary that looks the older ones up
/// ([`Notary::windowed`]) holds in memory: two generations per shard of
/// `COMMITTED_IN_MEMORY_MAX / (2 × SHARDS)` each; when a shard's newer generation fills, the
/// older is forgotten. Why a window at all: a resubmission is a bank retrying after a lost
/// answer, seconds later, and answering it from memory saves a read under the notary's locks;
/// every other spend never needs a committed id (its inputs are unspent, so it was never
/// committed). At about 60 bytes each, 2^20 ids are about 64 MB (issue 20: 3.66 million ids
/// after 30 minutes at 2,000 payments/s, growing without bound).
pub const COMMITTED_IN_MEMORY_MAX: usize = 1 << 20;
/// The same bound under the simulator, so small that its runs forget ids and look them up.
pub const COMMITTED_IN_MEMORY_MAX_SIMULATED: usize = 2 * SHARDS * 2;
/// Rows moved from [`TXS_TABLE`] per commit at a start.
const MIGRATE_ROWS_PER_COMMIT: usize = 4_096;
/// Bytes of a token id in a change record or a checkpoint item.
const TOKEN_BYTES: usize = 32;

/// When a checkpoint of the unspent set is due: the rule every state kept as a log plus
/// checkpoints follows (the banks' tokens too).
pub use dtenge_store::checkpoint::{checkpoint_due, checkpoint_interval, CHECKPOINT_CHANGES_MIN};

/// What the notary is asked: spend these tokens, create those.
#[derive(Clone, Copy, Debug)]
pub struct SpendRequest<'a> {
    pub tx_id: TxId,
    pub inputs: &'a [TokenId],
    pub outputs: &'a [TokenId],
}

impl<'a> SpendRequest<'a> {
    /// The spend of a transaction that passed stateless validation.
    pub fn of(validated: &'a dtenge_core::validate::Validated) -> SpendRequest<'a> {
        SpendRequest { tx_id: validated.tx_id, inputs: &validated.inputs, outputs: &validated.outputs }
    }
}

/// The notary's answer to a spend it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Applied in memory, pending durable commit: persist, then finalize or revert.
    Pending,
    /// This exact transaction committed before; nothing to do (idempotent resubmission).
    AlreadyCommitted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxState {
    Pending,
    Committed,
    /// Refused for good (see [`ABORTED_LOG`]).
    Aborted,
}

#[derive(Default)]
struct Shard {
    /// Changed only through [`Shard::add_unspent`] and [`Shard::take_unspent`], which keep
    /// `unspent_hash`.
    unspent: dtenge_core::hash::Set<TokenId>,
    /// The set hash of `unspent` ([`TokenId::toggle_in`]).
    unspent_hash: [u8; 32],
    /// Outputs of pending transactions: not spendable until their transaction is durable.
    pending_outputs: dtenge_core::hash::Set<TokenId>,
    /// Inputs of pending transactions: gone from `unspent`, but unspent on the disk until
    /// their transaction is durable (a checkpoint dumps them). A few per shard at a time (a
    /// batch's inputs over 256 shards), so a vector: cheaper than hashing each twice.
    pending_inputs: Vec<TokenId>,
    /// Pending transactions, and the newer generation of committed ones.
    txs: dtenge_core::hash::Map<TxId, TxState>,
    /// Committed ids in `txs` (the newer generation's size).
    committed_newer: usize,
    /// The older generation of committed ids (see [`COMMITTED_IN_MEMORY_MAX`]).
    committed_older: dtenge_core::hash::Set<TxId>,
    /// Transactions refused for good: all of them, never forgotten (a later copy of one
    /// would otherwise spend inputs that are still unspent).
    aborted: dtenge_core::hash::Set<TxId>,
}

impl Shard {
    fn add_unspent(&mut self, id: TokenId) {
        if self.unspent.insert(id) {
            self.toggle(&id);
        }
    }

    fn take_unspent(&mut self, id: &TokenId) {
        if self.unspent.remove(id) {
            self.toggle(id);
        }
    }

    fn toggle(&mut self, id: &TokenId) {
        let mut hash = dtenge_core::crypto::Hash32(self.unspent_hash);
        id.toggle_in(&mut hash);
        self.unspent_hash = hash.0;
    }

    /// What the shard remembers of a transaction.
    fn state(&self, tx_id: &TxId) -> Option<TxState> {
        if let Some(state) = self.txs.get(tx_id) {
            return Some(*state);
        }
        if self.committed_older.contains(tx_id) {
            return Some(TxState::Committed);
        }
        self.aborted.contains(tx_id).then_some(TxState::Aborted)
    }

    /// Record a commit; when the newer generation holds `generation_max` committed ids, it
    /// becomes the older one and the older one is forgotten.
    fn note_committed(&mut self, tx_id: TxId, generation_max: usize) {
        let previous = self.txs.insert(tx_id, TxState::Committed);
        debug_assert!(previous.is_none_or(|p| p == TxState::Pending));
        self.committed_newer += 1;
        if self.committed_newer < generation_max {
            return;
        }
        // Bounded: one pass over a generation, once per generation.
        let mut older = dtenge_core::hash::Set::default();
        self.txs.retain(|tx, state| {
            let keep = *state != TxState::Committed;
            if !keep {
                older.insert(*tx);
            }
            keep
        });
        assert_eq!(older.len(), self.committed_newer, "the newer generation counted its ids");
        self.committed_older = older;
        self.committed_newer = 0;
    }

    /// Forget a pending input (its transaction committed or was reverted).
    fn take_pending_input(&mut self, input: &TokenId) -> bool {
        match self.pending_inputs.iter().position(|pending| pending == input) {
            Some(position) => {
                self.pending_inputs.swap_remove(position);
                true
            }
            None => false,
        }
    }
}

/// The notary state machine.
pub struct Notary {
    shards: Vec<Mutex<Shard>>,
    /// Committed ids per shard and generation (see [`COMMITTED_IN_MEMORY_MAX`]); `usize::MAX`
    /// for a notary that holds them all (a replica of the replicated notary, whose snapshots
    /// carry them).
    generation_max: usize,
}

impl Default for Notary {
    fn default() -> Self {
        Notary::new()
    }
}

fn tx_shard(tx_id: &TxId) -> usize {
    usize::from(tx_id.0 .0[0])
}

impl Notary {
    /// A notary that holds every decided id in memory (a replica of the replicated notary,
    /// whose snapshots carry them).
    pub fn new() -> Notary {
        Notary { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), generation_max: usize::MAX }
    }

    /// A notary that holds at most `committed_max` committed ids in memory (see
    /// [`COMMITTED_IN_MEMORY_MAX`]): its caller looks the older ones up ([`AllShards::spend`]).
    pub fn windowed(committed_max: usize) -> Notary {
        assert!(committed_max >= 2 * SHARDS, "at least one id per shard and generation");
        Notary { generation_max: committed_max / (2 * SHARDS), ..Notary::new() }
    }

    /// Rebuild from persisted state.
    pub fn restore(unspent: impl IntoIterator<Item = TokenId>, committed: impl IntoIterator<Item = TxId>) -> Notary {
        let notary = Notary::new();
        for id in unspent {
            notary.shards[usize::from(id.shard())].lock().add_unspent(id);
        }
        for tx in committed {
            notary.shards[tx_shard(&tx)].lock().note_committed(tx, notary.generation_max);
        }
        notary
    }

    /// Rebuild from the store: the checkpoint, then the changes logged after it, in order.
    /// Returns the notary and the number of changes replayed.
    pub fn load(store: &dtenge_store::Store) -> Result<(Notary, usize)> {
        let loaded = UNSPENT.load(store)?;
        // Checkpoint items are fjall rows, which the store keeps without a checksum of its
        // own: one that is not a token id is corrupt storage, and the notary does not open.
        let mut unspent: dtenge_core::hash::Set<TokenId> = loaded
            .items
            .iter()
            .map(|item| {
                token_of(item).ok_or_else(|| {
                    Error::storage(format!("notary checkpoint: an item of {} bytes, not {TOKEN_BYTES}", item.len()))
                })
            })
            .collect::<Result<_>>()?;
        for change in &loaded.changes {
            let (inputs, outputs) = change_of(change);
            // A change the checkpoint already reflects changes nothing: a token id is created
            // once and spent once.
            for input in inputs {
                unspent.remove(&input);
            }
            unspent.extend(outputs);
        }
        migrate_tx_logs(store)?;
        let committed_max =
            if store.is_simulated() { COMMITTED_IN_MEMORY_MAX_SIMULATED } else { COMMITTED_IN_MEMORY_MAX };
        let notary = Notary::windowed(committed_max);
        for id in unspent {
            notary.shards[usize::from(id.shard())].lock().add_unspent(id);
        }
        // Keyed rows, without a checksum of the store's own: one that does not parse is
        // corrupt storage, and the notary does not open. Committed ids are not read: a
        // resubmission of one looks it up.
        for (key, _) in store.scan(ABORTED_TABLE)? {
            let tx = tx_of_id(&key)
                .ok_or_else(|| Error::storage(format!("notary_aborted: a key of {} bytes, not 32", key.len())))?;
            notary.shards[tx_shard(&tx)].lock().aborted.insert(tx);
        }
        Ok((notary, loaded.changes.len()))
    }

    /// The durable unspent set, for a checkpoint: one 32-byte item per token, produced one
    /// shard at a time as the iterator is consumed. The inputs of pending transactions count
    /// as unspent (their spend is not durable yet) and pending outputs do not. Call after
    /// `UNSPENT.begin` (see `dtenge_store::checkpoint` for why a moving view is enough).
    pub fn checkpoint_items(&self) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        self.shards.iter().flat_map(|shard| {
            let shard = shard.lock();
            let items: Vec<Result<Vec<u8>>> =
                shard.unspent.iter().chain(&shard.pending_inputs).map(|id| Ok(id.0 .0.to_vec())).collect();
            items
        })
    }

    fn lock_for(&self, request: &SpendRequest<'_>) -> Locked<'_> {
        let mut indices: Vec<usize> =
            request.inputs.iter().chain(request.outputs).map(|t| usize::from(t.shard())).collect();
        indices.push(tx_shard(&request.tx_id));
        indices.sort_unstable();
        indices.dedup();
        let guards = indices.iter().map(|&i| (i, self.shards[i].lock())).collect();
        Locked { guards, generation_max: self.generation_max }
    }

    /// Atomically check that every input is unspent and every output new, then spend.
    pub fn try_spend(&self, request: SpendRequest<'_>) -> Result<Spend> {
        spend_in(&mut self.lock_for(&request), request)
    }

    /// The durable record of an accepted spend.
    /// `certificate` is the number of the certificate that answers it: its row's key.
    pub fn writes(request: &SpendRequest<'_>, certificate: u64, batch: &mut WriteBatch) {
        batch.record(UNSPENT.log, change_record(request));
        batch.put(COMMITTED_TABLE, request.tx_id.0 .0.to_vec(), certificate.to_be_bytes().to_vec());
    }

    /// The durable record of an abort.
    pub fn abort_writes(tx_id: &TxId, certificate: u64, batch: &mut WriteBatch) {
        batch.put(ABORTED_TABLE, tx_id.0 .0.to_vec(), certificate.to_be_bytes().to_vec());
    }

    /// Did the notary whose store this is commit `tx_id`? One keyed read: how a windowed
    /// notary answers a resubmission of an id it no longer holds ([`AllShards::spend`]).
    pub fn committed_in(store: &dtenge_store::Store, tx_id: &TxId) -> Result<bool> {
        Ok(store.get(COMMITTED_TABLE, &tx_id.0 .0)?.is_some())
    }

    /// The spend is durable: its outputs become spendable and it answers "committed" to
    /// resubmissions.
    pub fn finalize(&self, request: SpendRequest<'_>) {
        finalize_in(&mut self.lock_for(&request), request)
    }

    /// The durable commit failed: undo the in-memory spend.
    pub fn revert(&self, request: SpendRequest<'_>) {
        revert_in(&mut self.lock_for(&request), request)
    }

    /// Every shard, locked in ascending order, for a caller that spends, finalizes or reverts
    /// a whole batch of transactions (the payment pipeline's settle stage). Why: a spend that
    /// locks its own shards sorts and locks five of them and allocates twice, which `perf`
    /// put at about 2.5% of a payment's CPU in `dtenge bench`; 256 locks once per batch of
    /// 512 cost a hundredth of that. Everyone else waits while the guard lives, so hold it for
    /// one pass over a batch, not across its durable commit.
    pub fn lock_all(&self) -> AllShards<'_> {
        AllShards {
            guards: self.shards.iter().map(|shard| shard.lock()).collect(),
            generation_max: self.generation_max,
        }
    }

    pub fn is_unspent(&self, token: &TokenId) -> bool {
        self.shards[usize::from(token.shard())].lock().unspent.contains(token)
    }

    /// Is `tx_id` committed, as far as memory holds (a windowed notary forgets old ids)?
    pub fn is_committed(&self, tx_id: &TxId) -> bool {
        self.shards[tx_shard(tx_id)].lock().state(tx_id) == Some(TxState::Committed)
    }

    /// Size of the unspent set (locks shards one at a time: a moment's view).
    pub fn unspent_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unspent.len()).sum()
    }

    /// Transaction ids held in memory: committed (at most [`COMMITTED_IN_MEMORY_MAX`] in a
    /// windowed notary), refused for good, or pending (locks shards one at a time: a moment's
    /// view; `docs/ARCHITECTURE.md`, "Steady state").
    pub fn transactions_held(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock();
                shard.txs.len() + shard.committed_older.len() + shard.aborted.len()
            })
            .sum()
    }

    /// The set hash of the unspent token ids ([`TokenId::toggle_in`]), kept as they come and
    /// go: O(shards).
    pub fn unspent_hash(&self) -> dtenge_core::crypto::Hash32 {
        let mut hash = dtenge_core::crypto::Hash32([0; 32]);
        for shard in &self.shards {
            for (byte, of_shard) in hash.0.iter_mut().zip(shard.lock().unspent_hash) {
                *byte ^= of_shard;
            }
        }
        hash
    }

    /// Every transaction the notary decided: those committed and those refused for good
    /// (aborted), for a replica's snapshot. Taken between requests: no spend is pending.
    pub fn decided(&self) -> (Vec<TxId>, Vec<TxId>) {
        let (mut committed, mut aborted) = (Vec::new(), Vec::new());
        for shard in &self.shards {
            let shard = shard.lock();
            assert!(shard.pending_outputs.is_empty() && shard.pending_inputs.is_empty(), "no spend is pending");
            for (tx, state) in &shard.txs {
                match state {
                    TxState::Committed => committed.push(*tx),
                    TxState::Aborted => unreachable!("refusals for good are kept apart"),
                    TxState::Pending => unreachable!("no spend is pending"),
                }
            }
            committed.extend(shard.committed_older.iter().copied());
            aborted.extend(shard.aborted.iter().copied());
        }
        (committed, aborted)
    }

    /// The state as a snapshot holds it while spends may be pending (a shard's prepared
    /// transactions): the unspent tokens with the pending inputs among them (their spend is
    /// not decided), the committed and the aborted transactions (the pending ones in neither).
    pub fn durable_parts(&self) -> (Vec<TokenId>, Vec<TxId>, Vec<TxId>) {
        let (mut unspent, mut committed, mut aborted) = (Vec::new(), Vec::new(), Vec::new());
        for shard in &self.shards {
            let shard = shard.lock();
            unspent.extend(shard.unspent.iter().chain(&shard.pending_inputs).copied());
            for (tx, state) in &shard.txs {
                match state {
                    TxState::Committed => committed.push(*tx),
                    TxState::Aborted => unreachable!("refusals for good are kept apart"),
                    TxState::Pending => {}
                }
            }
            committed.extend(shard.committed_older.iter().copied());
            aborted.extend(shard.aborted.iter().copied());
        }
        (unspent, committed, aborted)
    }

    /// Rebuild from a snapshot ([`Notary::unspent`] and [`Notary::decided`]).
    pub fn restore_decided(
        unspent: impl IntoIterator<Item = TokenId>,
        committed: impl IntoIterator<Item = TxId>,
        aborted: impl IntoIterator<Item = TxId>,
    ) -> Notary {
        let notary = Notary::restore(unspent, committed);
        for tx in aborted {
            let mut shard = notary.shards[tx_shard(&tx)].lock();
            assert_eq!(shard.state(&tx), None, "a transaction is committed or aborted, never both");
            shard.aborted.insert(tx);
        }
        notary
    }

    /// Every unspent token id, for reconciliation.
    pub fn unspent(&self) -> HashSet<TokenId> {
        let mut all = HashSet::new();
        for shard in &self.shards {
            all.extend(shard.lock().unspent.iter().copied());
        }
        all
    }
}

/// The shards a caller holds: those of one request ([`Locked`]) or all ([`AllShards`]).
trait Shards {
    /// The shard `index`, which the caller holds.
    fn shard(&mut self, index: usize) -> &mut Shard;

    /// Committed ids per shard and generation ([`Notary::generation_max`]).
    fn generation_max(&self) -> usize;
}

struct Locked<'a> {
    guards: Vec<(usize, MutexGuard<'a, Shard>)>,
    generation_max: usize,
}

impl Shards for Locked<'_> {
    fn shard(&mut self, index: usize) -> &mut Shard {
        let position = self
            .guards
            .binary_search_by_key(&index, |(i, _)| *i)
            .unwrap_or_else(|_| unreachable!("shard {index} was locked for this request"));
        &mut self.guards[position].1
    }

    fn generation_max(&self) -> usize {
        self.generation_max
    }
}

/// The notary with every shard locked ([`Notary::lock_all`]): the same spend, finalize and
/// revert as [`Notary`]'s, without locking per request.
pub struct AllShards<'a> {
    guards: Vec<MutexGuard<'a, Shard>>,
    generation_max: usize,
}

impl Shards for AllShards<'_> {
    fn shard(&mut self, index: usize) -> &mut Shard {
        &mut self.guards[index]
    }

    fn generation_max(&self) -> usize {
        self.generation_max
    }
}

impl AllShards<'_> {
    /// Is this transaction committed (not merely pending)?
    pub fn is_committed(&mut self, tx_id: &TxId) -> bool {
        self.shard(tx_shard(tx_id)).state(tx_id) == Some(TxState::Committed)
    }

    /// Does memory hold anything of `tx_id` (pending, committed or refused for good)? When
    /// not, a windowed notary may have forgotten its commit.
    pub fn knows(&mut self, tx_id: &TxId) -> bool {
        self.shard(tx_shard(tx_id)).state(tx_id).is_some()
    }

    /// Refuse `tx_id` for good: `false` if it is committed, pending or aborted already (then
    /// nothing changes). Persist [`Notary::abort_writes`] before answering. (A windowed
    /// notary's caller has looked up a commit it forgot first.)
    pub fn abort(&mut self, tx_id: &TxId) -> bool {
        let shard = self.shard(tx_shard(tx_id));
        if shard.state(tx_id).is_some() {
            return false;
        }
        shard.aborted.insert(*tx_id);
        true
    }

    /// [`Notary::try_spend`].
    pub fn try_spend(&mut self, request: SpendRequest<'_>) -> Result<Spend> {
        spend_in(self, request)
    }

    /// [`Notary::finalize`].
    pub fn finalize(&mut self, request: SpendRequest<'_>) {
        finalize_in(self, request)
    }

    /// [`Notary::revert`].
    pub fn revert(&mut self, request: SpendRequest<'_>) {
        revert_in(self, request)
    }
}

/// Check that every input is unspent and every output new, then spend (in `shards`, which
/// hold every shard the request touches).
fn spend_in(shards: &mut impl Shards, request: SpendRequest<'_>) -> Result<Spend> {
    match shards.shard(tx_shard(&request.tx_id)).state(&request.tx_id) {
        Some(TxState::Committed) => return Ok(Spend::AlreadyCommitted),
        Some(TxState::Aborted) => {
            return Err(Error::new(
                ErrorCode::BankBlocked,
                format!("transaction {} was refused before, while its sender was blocked", request.tx_id),
            ))
        }
        Some(TxState::Pending) => {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                format!("transaction {} is being committed", request.tx_id),
            ))
        }
        None => {}
    }
    for input in request.inputs {
        let shard = shards.shard(usize::from(input.shard()));
        if shard.pending_outputs.contains(input) {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                format!("token {input} is created by a transaction still being committed; retry"),
            ));
        }
        if !shard.unspent.contains(input) {
            return Err(Error::new(ErrorCode::DoubleSpend, format!("token {input} is spent or unknown")));
        }
    }
    for output in request.outputs {
        let shard = shards.shard(usize::from(output.shard()));
        if shard.unspent.contains(output) || shard.pending_outputs.contains(output) {
            return Err(Error::new(ErrorCode::DoubleSpend, format!("token {output} exists")));
        }
    }
    for input in request.inputs {
        let shard = shards.shard(usize::from(input.shard()));
        shard.take_unspent(input);
        shard.pending_inputs.push(*input);
    }
    for output in request.outputs {
        shards.shard(usize::from(output.shard())).pending_outputs.insert(*output);
    }
    shards.shard(tx_shard(&request.tx_id)).txs.insert(request.tx_id, TxState::Pending);
    Ok(Spend::Pending)
}

fn finalize_in(shards: &mut impl Shards, request: SpendRequest<'_>) {
    for input in request.inputs {
        let was_pending = shards.shard(usize::from(input.shard())).take_pending_input(input);
        debug_assert!(was_pending);
    }
    for output in request.outputs {
        let shard = shards.shard(usize::from(output.shard()));
        let was_pending = shard.pending_outputs.remove(output);
        debug_assert!(was_pending);
        shard.add_unspent(*output);
    }
    let generation_max = shards.generation_max();
    let shard = shards.shard(tx_shard(&request.tx_id));
    debug_assert_eq!(shard.txs.get(&request.tx_id), Some(&TxState::Pending));
    shard.note_committed(request.tx_id, generation_max);
}

fn revert_in(shards: &mut impl Shards, request: SpendRequest<'_>) {
    let state = shards.shard(tx_shard(&request.tx_id)).txs.remove(&request.tx_id);
    debug_assert_eq!(state, Some(TxState::Pending));
    for output in request.outputs {
        shards.shard(usize::from(output.shard())).pending_outputs.remove(output);
    }
    for input in request.inputs {
        let shard = shards.shard(usize::from(input.shard()));
        shard.take_pending_input(input);
        shard.add_unspent(*input);
    }
}

fn token_of(bytes: &[u8]) -> Option<TokenId> {
    let bytes: [u8; TOKEN_BYTES] = bytes.try_into().ok()?;
    Some(TokenId(dtenge_core::crypto::Hash32(bytes)))
}

/// A spend's change record: `[inputs u32 LE][input ids][output ids]`. Read back by
/// [`change_of`], which asserts the same shape.
fn change_record(request: &SpendRequest<'_>) -> Vec<u8> {
    let inputs = u32::try_from(request.inputs.len()).expect("validation bounds a transaction's inputs far below u32");
    let mut record = Vec::with_capacity(4 + TOKEN_BYTES * (request.inputs.len() + request.outputs.len()));
    record.extend_from_slice(&inputs.to_le_bytes());
    for id in request.inputs.iter().chain(request.outputs) {
        record.extend_from_slice(&id.0 .0);
    }
    record
}

/// The inputs and outputs of a change record. Change records come from the store's journal,
/// whose frames the store checksums: a record of another shape than [`change_record`] writes
/// is a programmer error (writer and reader disagree), not corrupt storage.
fn change_of(record: &[u8]) -> (Vec<TokenId>, Vec<TokenId>) {
    let (count, ids) = record.split_first_chunk::<4>().expect("a change record starts with its input count");
    let inputs = u32::from_le_bytes(*count) as usize;
    assert!(
        ids.len() % TOKEN_BYTES == 0 && ids.len() / TOKEN_BYTES >= inputs,
        "a change record holds whole token ids, at least its {inputs} inputs ({} bytes)",
        ids.len()
    );
    let mut tokens = ids.chunks_exact(TOKEN_BYTES).map(|id| token_of(id).expect("chunks of a token id's length"));
    let inputs = tokens.by_ref().take(inputs).collect();
    let outputs = tokens.collect();
    (inputs, outputs)
}

/// A decided transaction's key in [`TXS_TABLE`] (2026-12-08): the certificate's number, then its id.
pub fn tx_key(certificate: u64, tx_id: &TxId) -> Vec<u8> {
    [&certificate.to_be_bytes()[..], &tx_id.0 .0[..]].concat()
}

/// The certificate number and the id of a key of [`TXS_TABLE`]; `None` for a key of another length.
fn tx_of_key(key: &[u8]) -> Option<(u64, TxId)> {
    let (certificate, id) = key.split_first_chunk::<8>()?;
    let id = tx_of_id(id)?;
    Some((u64::from_be_bytes(*certificate), id))
}

/// The id a key of [`COMMITTED_TABLE`] or [`ABORTED_TABLE`] is; `None` for one of another length.
fn tx_of_id(key: &[u8]) -> Option<TxId> {
    let bytes: [u8; 32] = key.try_into().ok()?;
    Some(TxId(dtenge_core::crypto::Hash32(bytes)))
}

/// A decided transaction's id as the logs before 2026-12-08 held it. From the checksummed
/// journal, like change records: another length is a programmer error.
fn tx_of(record: &[u8]) -> TxId {
    tx_of_id(record).expect("a committed-transaction record is a 32-byte id")
}

/// Move the decided ids a store keeps where earlier builds wrote them, [`COMMITTED_LOG`] and
/// [`ABORTED_LOG`] (before 2026-12-08, under certificate 0: their number was not logged) and
/// [`TXS_TABLE`] (2026-12-08), to [`COMMITTED_TABLE`] and [`ABORTED_TABLE`]; the ids moved. A
/// piece at a time, each piece's puts and deletions in one commit: a move cut short by a crash
/// goes on at the next start.
pub fn migrate_tx_logs(store: &dtenge_store::Store) -> Result<u64> {
    let mut moved = 0;
    for (log, table) in [(COMMITTED_LOG, COMMITTED_TABLE), (ABORTED_LOG, ABORTED_TABLE)] {
        if store.log_row_count(log)? > 0 {
            moved +=
                store.move_log(log, table, |record| Ok((tx_of(record).0 .0.to_vec(), 0u64.to_be_bytes().to_vec())))?;
        }
    }
    // Bounded: every piece deletes the rows it read, and nothing writes the table any more.
    loop {
        let rows = store.scan_first(TXS_TABLE, MIGRATE_ROWS_PER_COMMIT)?;
        if rows.is_empty() {
            return Ok(moved);
        }
        let mut batch = WriteBatch::new();
        for (key, value) in rows {
            let (certificate, tx) = tx_of_key(&key)
                .ok_or_else(|| Error::storage(format!("notary_txs: a key of {} bytes, not 40", key.len())))?;
            let table = match value.as_slice() {
                [TX_COMMITTED] => COMMITTED_TABLE,
                [TX_ABORTED] => ABORTED_TABLE,
                _ => return Err(Error::storage(format!("notary_txs: the value of {tx} is not a decision"))),
            };
            batch.put(table, tx.0 .0.to_vec(), certificate.to_be_bytes().to_vec());
            batch.delete(TXS_TABLE, key);
            moved += 1;
        }
        store.commit(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::{hash_parts, Hash32};
    use std::sync::Arc;

    fn token(n: u32) -> TokenId {
        TokenId(hash_parts(b"t", &[&n.to_le_bytes()]))
    }
    fn tx(n: u32) -> TxId {
        TxId(hash_parts(b"x", &[&n.to_le_bytes()]))
    }

    #[test]
    fn spend_once_then_double_spend_then_idempotent() {
        let notary = Notary::restore([token(1), token(2)], []);
        let ins = [token(1)];
        let outs = [token(10), token(11)];
        let req = SpendRequest { tx_id: tx(1), inputs: &ins, outputs: &outs };
        assert_eq!(notary.try_spend(req).unwrap(), Spend::Pending);
        assert_eq!(notary.try_spend(req).unwrap_err().code, ErrorCode::RequestInProgress);
        notary.finalize(req);
        assert_eq!(notary.try_spend(req).unwrap(), Spend::AlreadyCommitted);

        let other = SpendRequest { tx_id: tx(2), inputs: &ins, outputs: &[] };
        assert_eq!(notary.try_spend(other).unwrap_err().code, ErrorCode::DoubleSpend);
        assert!(notary.is_unspent(&token(10)) && !notary.is_unspent(&token(1)));
        assert_eq!(notary.unspent_count(), 3);
        assert_eq!(notary.unspent_hash(), set_hash(&notary.unspent()), "the running set hash follows the set");
        // A spend reverted (its commit failed) leaves the set and its hash as they were.
        let (ins, outs) = ([token(2)], [token(20)]);
        let reverted = SpendRequest { tx_id: tx(3), inputs: &ins, outputs: &outs };
        let before = notary.unspent_hash();
        notary.try_spend(reverted).unwrap();
        notary.revert(reverted);
        assert_eq!(notary.unspent_hash(), before);
        assert_eq!(notary.unspent_hash(), set_hash(&notary.unspent()));
    }

    fn set_hash(ids: &HashSet<TokenId>) -> dtenge_core::crypto::Hash32 {
        let mut hash = dtenge_core::crypto::Hash32([0; 32]);
        for id in ids {
            id.toggle_in(&mut hash);
        }
        hash
    }

    #[test]
    fn a_pending_output_cannot_be_spent_until_its_transaction_is_durable() {
        let notary = Notary::restore([token(1)], []);
        let (ins, outs) = ([token(1)], [token(2)]);
        let first = SpendRequest { tx_id: tx(1), inputs: &ins, outputs: &outs };
        notary.try_spend(first).unwrap();
        let (ins2, outs2) = ([token(2)], [token(3)]);
        let second = SpendRequest { tx_id: tx(2), inputs: &ins2, outputs: &outs2 };
        assert_eq!(notary.try_spend(second).unwrap_err().code, ErrorCode::RequestInProgress);
        assert!(!notary.is_unspent(&token(2)));
        notary.finalize(first);
        assert_eq!(notary.try_spend(second).unwrap(), Spend::Pending);
        notary.revert(second);
        assert!(notary.is_unspent(&token(2)) && !notary.is_unspent(&token(3)));
    }

    #[test]
    fn a_rejected_spend_changes_nothing_and_revert_restores() {
        let notary = Notary::restore([token(1), token(2)], []);
        let ins = [token(1), token(3)];
        let req = SpendRequest { tx_id: tx(1), inputs: &ins, outputs: &[token(9)] };
        assert_eq!(notary.try_spend(req).unwrap_err().code, ErrorCode::DoubleSpend);
        assert_eq!(notary.unspent(), [token(1), token(2)].into_iter().collect());

        let ins = [token(1)];
        let req = SpendRequest { tx_id: tx(2), inputs: &ins, outputs: &[token(9)] };
        notary.try_spend(req).unwrap();
        notary.revert(req);
        assert_eq!(notary.unspent(), [token(1), token(2)].into_iter().collect());
        assert!(!notary.is_committed(&tx(2)));
    }

    #[test]
    fn of_many_racing_spenders_of_one_token_exactly_one_wins() {
        for round in 0..20u32 {
            let notary = Arc::new(Notary::restore([token(round)], []));
            let winners: usize = (0..8u32)
                .map(|t| {
                    let notary = notary.clone();
                    std::thread::spawn(move || {
                        let ins = [token(round)];
                        let outs = [token(1_000 + t)];
                        let req = SpendRequest { tx_id: tx(t), inputs: &ins, outputs: &outs };
                        let won = notary.try_spend(req).is_ok();
                        if won {
                            notary.finalize(req);
                        }
                        won as usize
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum();
            assert_eq!(winners, 1);
            assert_eq!(notary.unspent_count(), 1);
        }
    }

    #[test]
    fn the_unspent_set_survives_reopen_through_its_log_and_checkpoints() {
        use dtenge_store::{SimDisk, Store};
        let disk = SimDisk::new();
        let store = Store::open_simulated(disk.clone(), &TABLES).unwrap();
        let notary = Notary::new();
        let ids = |range: std::ops::Range<u32>| range.map(token).collect::<Vec<_>>();
        let commit = |n: u32, ins: &[TokenId], outs: &[TokenId]| {
            let request = SpendRequest { tx_id: tx(n), inputs: ins, outputs: outs };
            assert_eq!(notary.try_spend(request).unwrap(), Spend::Pending);
            let mut batch = WriteBatch::new();
            Notary::writes(&request, u64::from(n) + 1, &mut batch);
            store.commit(batch).unwrap();
            notary.finalize(request);
        };
        commit(0, &[], &ids(0..10));
        commit(1, &ids(0..2), &ids(100..102));
        // A checkpoint while transaction 2 is pending: its input is still unspent on the disk,
        // its output does not exist there yet.
        let (pending_in, pending_out) = (ids(2..3), ids(102..103));
        let pending = SpendRequest { tx_id: tx(2), inputs: &pending_in, outputs: &pending_out };
        notary.try_spend(pending).unwrap();
        // And transaction 9 is pending at the checkpoint, then never commits (its plan
        // failed): its input must be unspent in the checkpoint.
        let (doomed_in, doomed_out) = (ids(9..10), ids(109..110));
        let doomed = SpendRequest { tx_id: tx(9), inputs: &doomed_in, outputs: &doomed_out };
        notary.try_spend(doomed).unwrap();
        let begun = UNSPENT.begin(&store).unwrap();
        let items: Vec<Vec<u8>> = notary.checkpoint_items().map(Result::unwrap).collect();
        assert!(items.contains(&token(2).0 .0.to_vec()) && !items.contains(&token(102).0 .0.to_vec()));
        let written = UNSPENT.write(&store, begun, items.into_iter().map(Ok)).unwrap();
        assert_eq!(written.items, 10);
        notary.revert(doomed);
        let mut batch = WriteBatch::new();
        Notary::writes(&pending, 3, &mut batch);
        store.commit(batch).unwrap();
        notary.finalize(pending);
        commit(3, &ids(100..101), &ids(103..104));
        drop(store);

        let store = Store::open_simulated(disk, &TABLES).unwrap();
        let (reopened, replayed) = Notary::load(&store).unwrap();
        assert_eq!(replayed, 2, "the changes after the checkpoint");
        assert_eq!(reopened.unspent(), notary.unspent());
        let expected: HashSet<TokenId> = ids(3..10).into_iter().chain([token(101), token(102), token(103)]).collect();
        assert_eq!(reopened.unspent(), expected);
        // Committed ids are not read at a start: a resubmission looks one up.
        assert_eq!(reopened.transactions_held(), 0);
        assert!((0..4).all(|n| Notary::committed_in(&store, &tx(n)).unwrap()));
        let request = SpendRequest { tx_id: tx(4), inputs: &ids(0..2), outputs: &ids(200..203) };
        assert_eq!(change_of(&change_record(&request)), (ids(0..2), ids(200..203)), "read back as written");
        let _ = Hash32([0; 32]);
    }

    /// Issue 20: committed ids are keyed by id and looked up, never read at start; refusals
    /// for good are read back whole. A store of the builds before has its committed and
    /// aborted logs, and its rows keyed by certificate, moved to them; a row that does not
    /// parse refuses to open with `STORAGE_FAILURE`.
    #[test]
    fn decided_ids_are_keyed_by_id_and_the_earlier_layouts_move_to_them() {
        use dtenge_store::{SimDisk, Store};
        let store = Store::open_simulated(SimDisk::new(), &TABLES).unwrap();
        let mut batch = WriteBatch::new();
        Notary::writes(&SpendRequest { tx_id: tx(1), inputs: &[], outputs: &[token(1)] }, 1, &mut batch);
        Notary::abort_writes(&tx(2), 2, &mut batch);
        store.commit(batch).unwrap();
        // The build before 2026-12-08: ids in logs.
        for n in 3..40u32 {
            let mut batch = WriteBatch::new();
            let log = if n % 4 == 0 { ABORTED_LOG } else { COMMITTED_LOG };
            batch.record(log, tx(n).0 .0.to_vec());
            store.commit(batch).unwrap();
        }
        // The build of 2026-12-08: rows keyed by certificate.
        let mut batch = WriteBatch::new();
        for n in 40..50u32 {
            let decision = if n % 4 == 0 { TX_ABORTED } else { TX_COMMITTED };
            batch.put(TXS_TABLE, tx_key(u64::from(n), &tx(n)), vec![decision]);
        }
        store.commit(batch).unwrap();
        let (notary, _) = Notary::load(&store).unwrap();
        assert_eq!((store.log_row_count(COMMITTED_LOG).unwrap(), store.log_row_count(ABORTED_LOG).unwrap()), (0, 0));
        assert!(store.scan(TXS_TABLE).unwrap().is_empty());
        let aborted = (2..50u32).filter(|n| *n == 2 || (*n >= 3 && n % 4 == 0)).count();
        assert_eq!(notary.transactions_held(), aborted, "only the refusals for good are read at start");
        let mut shards = notary.lock_all();
        for n in 1..50u32 {
            let committed = n == 1 || (n >= 3 && n % 4 != 0);
            assert_eq!(Notary::committed_in(&store, &tx(n)).unwrap(), committed, "transaction {n}");
            assert_eq!(shards.knows(&tx(n)), !committed, "transaction {n} is held as refused for good");
        }
        drop(shards);
        assert_eq!(store.get(COMMITTED_TABLE, &tx(41).0 .0).unwrap(), Some(41u64.to_be_bytes().to_vec()));
        assert_eq!(migrate_tx_logs(&store).unwrap(), 0, "moved once");

        let mut batch = WriteBatch::new();
        batch.put(TXS_TABLE, tx_key(9, &tx(50)), vec![7]);
        store.commit(batch).unwrap();
        assert_eq!(Notary::load(&store).err().map(|e| e.code), Some(ErrorCode::StorageFailure));
        let mut batch = WriteBatch::new();
        batch.delete(TXS_TABLE, tx_key(9, &tx(50)));
        batch.put(ABORTED_TABLE, vec![1; 12], vec![0; 8]);
        store.commit(batch).unwrap();
        assert_eq!(Notary::load(&store).err().map(|e| e.code), Some(ErrorCode::StorageFailure));
    }

    /// Issue 20: a windowed notary holds two generations of committed ids per shard, never
    /// more, forgetting the older generation as the newer fills; pending and refused ids are
    /// never forgotten.
    #[test]
    fn a_windowed_notary_holds_a_bounded_number_of_committed_ids() {
        let committed_max = 4 * SHARDS;
        let notary = Notary::windowed(committed_max);
        notary.shards[tx_shard(&tx(999_999))].lock().aborted.insert(tx(999_999));
        let mut held_max = 0;
        for n in 0..20_000u32 {
            let outputs = [token(1_000_000 + n)];
            let request = SpendRequest { tx_id: tx(n), inputs: &[], outputs: &outputs };
            assert_eq!(notary.try_spend(request).unwrap(), Spend::Pending);
            notary.finalize(request);
            held_max = held_max.max(notary.transactions_held());
        }
        assert!(held_max <= committed_max + 1, "{held_max} ids held");
        assert!(held_max > committed_max / 2, "{held_max} ids held");
        assert!(notary.is_committed(&tx(19_999)), "the newest is held");
        assert!(!notary.is_committed(&tx(0)), "the oldest is forgotten");
        assert!(notary.lock_all().knows(&tx(999_999)), "a refusal for good is never forgotten");
        // A forgotten commit's inputs are spent: the notary alone says so, and its caller
        // looks the id up before answering (`service::spend`).
        let outputs = [token(1_000_000)];
        let spent_again = SpendRequest { tx_id: tx(1), inputs: &outputs, outputs: &[] };
        assert_eq!(notary.try_spend(spent_again).unwrap(), Spend::Pending, "its output is unspent");
    }

    /// A change record comes from the checksummed journal, written by `change_record`: one
    /// that names an input it lacks means writer and reader disagree, and stops the process.
    #[test]
    #[should_panic(expected = "a change record holds whole token ids, at least its 1 inputs")]
    fn a_change_record_of_another_shape_than_written_stops_the_process() {
        change_of(&[1, 0, 0, 0]);
    }

    /// A checkpoint item is a fjall row, not checksummed by the store: one that is not a
    /// token id is corrupt storage, refused with `STORAGE_FAILURE` when the notary opens.
    #[test]
    fn a_checkpoint_item_that_is_not_a_token_id_refuses_to_open() {
        use dtenge_store::{SimDisk, Store};
        let store = Store::open_simulated(SimDisk::new(), &TABLES).unwrap();
        let begun = UNSPENT.begin(&store).unwrap();
        UNSPENT.write(&store, begun, [Ok(token(1).0 .0.to_vec()), Ok(vec![7; 31])]).unwrap();
        let refused = Notary::load(&store).err().expect("a short item is refused");
        assert_eq!(refused.code, ErrorCode::StorageFailure, "{refused}");
        assert!(refused.message.contains("31 bytes"), "{refused}");
    }
}
