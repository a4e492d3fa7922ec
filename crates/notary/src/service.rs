//! The notary as a role: it takes signed batches of compact transactions from the banks and
//! the NBK, checks the signature itself, spends each transaction atomically and idempotently,
//! commits to its own store, and answers with one signed commit certificate per batch.
//!
//! What it sees: each transaction's id and its input and output token ids
//! ([`CompactTx`]), never amounts, owners or policies (SPEC §3: the notary has no full access
//! to transaction data). What it checks, trusting no caller:
//! - the request is signed by its sender's node key (one signature over the Merkle root of the
//!   compact hashes: a batch of 512 payments costs the notary one verification);
//! - the sender is the NBK or a bank the operator has not blocked;
//! - only the NBK creates tokens from nothing (a transaction without inputs);
//! - no transaction spends a token twice or creates one twice, and every input is unspent.
//!
//! The rules that need what a token holds (conservation, policies, the oracle's and the NBK's
//! attestations) are checked by the validators that see whole transactions: the sender before
//! it signs, the payee's bank and the NBK registry before they apply a certified transaction.
//!
//! Idempotent per transaction: a transaction committed before is certified again (its outcome
//! is `Committed` with a fresh proof), never spent again; one being committed by another
//! request is refused `REQUEST_IN_PROGRESS` (ask again). A crash after the durable commit and
//! before the reply loses nothing: the retry finds the transaction committed.
//!
//! Every reply comes after the durable commit of what it certifies. Certificates are numbered
//! from 1 in commit order (`seq`, stored with each commit), so reconciliation can name a point
//! in the notary's history.
//!
//! The notary checkpoints its unspent set itself ([`NotaryService::checkpoint`], `checkpoint`):
//! when the log since the last checkpoint is due by the monolith's rule, and when the operator
//! asks; requests go on being answered while the set is dumped.

mod checkpoint;
pub use checkpoint::CHECKPOINT_POLL_MS;

use crate::{AllShards, Notary, Spend, SpendRequest, TABLES};
use dtenge_core::certificate::{notarize_message, CommitCertificate, CompactTx};
use dtenge_core::crypto::{verify, Hash32, NodeKey, PublicKey, Sign};
use dtenge_core::token::TxId;
use dtenge_core::tx::{TX_INPUTS_MAX, TX_OUTPUTS_MAX};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{LogTable, Store, Table, WriteBatch};
use dtenge_wire::{Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, RoleId};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet};

/// The notary's own keyed rows: the operator's blocks.
pub const META_TABLE: Table = Table("notary_meta");
/// The last certificate's number (`u64` LE), one record per commit of spends, which drops the
/// rows before it. A log record, so that the commit writes no fjall row (a keyed row cost the
/// commit fjall's write and fsync besides the journal's). Until 2026-12-06 the number was a
/// keyed row (`seq` in `notary_meta`); a store of that format is not read (there is no
/// deployed data).
pub const SEQ_LOG: LogTable = LogTable("notary_seq_log");

/// `blocked:<bank>` -> the reason: the operator's blocks the notary has applied.
const BLOCKED_PREFIX: &[u8] = b"blocked:";

/// Every table of the notary role's store.
pub fn tables() -> Vec<Table> {
    let mut tables = TABLES.to_vec();
    tables.push(META_TABLE);
    tables.push(SEQ_LOG.table());
    tables.extend(dtenge_delivery::TABLES);
    tables
}

/// Who may send the notary requests: the NBK's node key, each bank's (and the Treasury's),
/// and which banks the operator blocked.
#[derive(Clone, Debug)]
pub struct Senders {
    pub central_bank: PublicKey,
    /// Bank (or Treasury) id -> its node key.
    pub banks: BTreeMap<String, PublicKey>,
    pub blocked: BTreeSet<String>,
}

impl Senders {
    /// The key `sender` signs with, if it may send requests now.
    /// The key `sender` signs with, whether it may send requests at all, and why not if it is
    /// blocked (a blocked bank still signs: its retries of what committed before its block are
    /// answered "committed").
    fn key_of(&self, sender: &RoleId) -> Result<(PublicKey, Option<Error>)> {
        let blocked = |bank: &str| {
            self.blocked
                .contains(bank)
                .then(|| Error::new(ErrorCode::BankBlocked, format!("bank '{bank}' is blocked by the NBK operator")))
        };
        match sender {
            RoleId::Central => Ok((self.central_bank, None)),
            RoleId::Bank(bank) => self
                .banks
                .get(bank)
                .copied()
                .map(|key| (key, blocked(bank)))
                .ok_or_else(|| Error::new(ErrorCode::Forbidden, format!("'{bank}' is not a bank of this network"))),
            RoleId::Notary
            | RoleId::NotaryReplica(_)
            | RoleId::NotaryShard { .. }
            | RoleId::Oracle
            | RoleId::Directory => {
                Err(Error::new(ErrorCode::Forbidden, format!("{sender} does not send transactions to the notary")))
            }
        }
    }
}

/// The notary's state as of one certificate number ([`NotaryService::report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotaryReport {
    /// The last certificate's number.
    pub seq: u64,
    /// Unspent tokens once every certificate up to `seq` is committed, and none after.
    pub unspent: usize,
    /// Their ids' set hash ([`dtenge_core::token::TokenId::toggle_in`]).
    pub unspent_hash: Hash32,
}

/// The notary role.
pub struct NotaryService {
    notary: Notary,
    key: NodeKey,
    senders: RwLock<Senders>,
    store: Store,
    /// The last certificate's number. Held across a request's spend, commit and certificate:
    /// requests are certified one at a time, in the order their commits reach the disk.
    seq: Mutex<u64>,
    /// `seq` as of its last change, read without waiting for a request's commit (monitoring).
    seq_published: std::sync::atomic::AtomicU64,
    /// Set when a durable commit failed: the notary answers nothing until it is reopened.
    failed: std::sync::atomic::AtomicBool,
    /// Set when a request panicked while it held `seq` (perhaps between its durable commit and
    /// its finalize): memory may differ from the disk, so the notary answers nothing and writes
    /// no checkpoint of that memory until it is reopened.
    poisoned: std::sync::atomic::AtomicBool,
    /// Transactions logged to the unspent set's log since the current checkpoint's position
    /// (replayed at open, then committed since): what makes a checkpoint due. Changed under
    /// `seq`.
    changes_since_checkpoint: std::sync::atomic::AtomicU64,
    /// One checkpoint at a time (the due one and the operator's).
    checkpoint_lock: Mutex<()>,
    /// The operator's decisions, delivered by central in order, once each.
    inbound: Mutex<dtenge_delivery::Inbound>,
    /// Transactions committed since this process opened the notary (not stored: a rate's
    /// sample, as the one-process network's counter).
    committed_since_open: std::sync::atomic::AtomicU64,
}

impl NotaryService {
    /// Open the notary on its own store (created with [`tables`]), with its signing key and
    /// the keys of those who may send it requests.
    pub fn open(store: Store, key: impl Into<NodeKey>, senders: Senders) -> Result<NotaryService> {
        let (notary, replayed) = Notary::load(&store)?;
        let mut seq = 0;
        for record in store.scan_log(SEQ_LOG)? {
            let bytes: [u8; 8] = record
                .as_slice()
                .try_into()
                .map_err(|_| Error::new(ErrorCode::StorageFailure, "the notary's sequence number is not 8 bytes"))?;
            seq = u64::from_le_bytes(bytes).max(seq);
        }
        let mut senders = senders;
        for (key, _) in store.scan_prefix(META_TABLE, BLOCKED_PREFIX)? {
            let bank = String::from_utf8(key[BLOCKED_PREFIX.len()..].to_vec())
                .map_err(|_| Error::new(ErrorCode::StorageFailure, "a blocked bank's id is not UTF-8"))?;
            senders.blocked.insert(bank);
        }
        let inbound = Mutex::new(dtenge_delivery::Inbound::load(&store)?);
        Ok(NotaryService {
            inbound,
            notary,
            key: key.into(),
            senders: RwLock::new(senders),
            store,
            seq: Mutex::new(seq),
            seq_published: std::sync::atomic::AtomicU64::new(seq),
            failed: std::sync::atomic::AtomicBool::new(false),
            poisoned: std::sync::atomic::AtomicBool::new(false),
            changes_since_checkpoint: std::sync::atomic::AtomicU64::new(
                u64::try_from(replayed).expect("a count of records fits in u64"),
            ),
            checkpoint_lock: Mutex::new(()),
            committed_since_open: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The last certificate's number (0 before the first). Read without the `seq` lock, which
    /// a request holds across its durable commit: a dashboard never waits for one.
    pub fn seq(&self) -> u64 {
        self.seq_published.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The notary's report for reconciliation: its last certificate's number and its unspent
    /// tokens as of it, taken together under `seq` (no request is then between its spends and
    /// its certificate), in one short step: at most one request's commit is waited for.
    pub fn report(&self) -> NotaryReport {
        let seq = self.seq.lock();
        NotaryReport { seq: *seq, unspent: self.notary.unspent_count(), unspent_hash: self.notary.unspent_hash() }
    }

    /// Transactions committed (first committed, not certified again) since this process
    /// opened the notary: what a dashboard samples for a rate.
    pub fn committed_since_open(&self) -> u64 {
        self.committed_since_open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Has the notary stopped answering (a commit failed, or a request panicked) until it is
    /// reopened?
    pub fn stopped(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst) || self.poisoned.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The unspent set, for reconciliation and tests.
    pub fn notary(&self) -> &Notary {
        &self.notary
    }

    /// Did the notary commit `tx_id`? From memory for a recent one, else one read of the
    /// store: memory holds at most [`crate::COMMITTED_IN_MEMORY_MAX`] committed ids.
    pub fn is_committed(&self, tx_id: &TxId) -> Result<bool> {
        if self.notary.is_committed(tx_id) {
            return Ok(true);
        }
        Notary::committed_in(&self.store, tx_id)
    }

    /// The operator blocked (or unblocked) a bank: its requests are refused (or taken again)
    /// from the next one on.
    pub fn set_blocked(&self, bank: &str, blocked: bool) {
        let mut senders = self.senders.write();
        if blocked {
            senders.blocked.insert(bank.to_string());
        } else {
            senders.blocked.remove(bank);
        }
    }

    /// Answer one envelope; `None` for a message the notary does not take (it is dropped: a
    /// role that sends the notary something else has a bug or is hostile, and gets no answer
    /// it could act on).
    pub fn handle(&self, envelope: Envelope) -> Option<Envelope> {
        if self.stopped() {
            return None;
        }
        let request = match envelope.message {
            Message::NotarizeRequest(request) => request,
            Message::Deliver(deliver) if envelope.from == RoleId::Central => return self.on_decision(deliver),
            _ => return None,
        };
        let reply = self.notarize(&envelope.from, &request);
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            // The commit of this very request failed: a process whose store failed stops, and
            // its answer never leaves it.
            return None;
        }
        Some(Envelope { from: RoleId::Notary, to: envelope.from, message: Message::NotarizeReply(reply) })
    }

    /// An operator's decision from central: applied in order, once, durably; acknowledged.
    fn on_decision(&self, deliver: dtenge_wire::Deliver) -> Option<Envelope> {
        let ack = |seq| {
            Some(Envelope {
                from: RoleId::Notary,
                to: RoleId::Central,
                message: Message::DeliverAck(dtenge_wire::DeliverAck { seq }),
            })
        };
        let mut inbound = self.inbound.lock();
        match inbound.accept(&RoleId::Central, deliver.seq) {
            dtenge_delivery::Accept::Apply => {}
            dtenge_delivery::Accept::Duplicate { ack: seq } => return ack(seq),
            dtenge_delivery::Accept::Early => return None,
        }
        let dtenge_wire::Payload::Decision(dtenge_wire::Decision::Blocked { bank, blocked, reason }) = deliver.payload
        else {
            // Central certifies nothing to the notary: a malformed stream is dropped.
            return None;
        };
        let mut key = BLOCKED_PREFIX.to_vec();
        key.extend_from_slice(bank.as_bytes());
        let mut batch = WriteBatch::new();
        if blocked {
            batch.put(META_TABLE, key, reason.into_bytes());
        } else {
            batch.delete(META_TABLE, key);
        }
        inbound.plan_applied(&RoleId::Central, deliver.seq, &mut batch);
        if self.store.commit(batch).is_err() {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            return None;
        }
        inbound.applied(&RoleId::Central, deliver.seq);
        self.set_blocked(&bank, blocked);
        ack(deliver.seq)
    }

    /// Check, spend, commit and certify one request from `sender`.
    pub fn notarize(&self, sender: &RoleId, request: &NotarizeRequest) -> NotarizeReply {
        let Checked { leaves, mut states, blocked } = check(&self.senders.read(), sender, request);
        let mut seq = self.seq.lock();
        // Dropped before `seq` is released: a checkpoint that begins next sees the poison.
        let _poison_on_panic = PoisonOnPanic(&self.poisoned);
        let committed = self.spend_and_commit(&request.txs, &mut states, blocked.as_ref(), *seq + 1);
        let reply = certify(&self.key, request.batch, &leaves, &states, &committed, &mut seq);
        self.seq_published.store(*seq, std::sync::atomic::Ordering::Release);
        assert_eq!(reply.outcomes.len(), request.txs.len(), "one outcome per transaction");
        reply
    }

    /// Spend every passing transaction in request order (a later one spending what an earlier
    /// one spent is a double spend), commit the new spends with certificate number `seq`, and
    /// finalize them. Returns, per transaction, whether it is committed (now or before).
    /// A `blocked` sender spends nothing new: each of its transactions is refused with the
    /// reason, except those committed before its block, which are answered "committed" (a
    /// bank retrying after a lost answer must learn the truth, or it would drop a transaction
    /// the ledger holds).
    fn spend_and_commit(
        &self,
        txs: &[CompactTx],
        states: &mut [Result<()>],
        blocked: Option<&Error>,
        seq: u64,
    ) -> Vec<bool> {
        // The store is read under the notary's locks only for a spend that would be refused
        // or has no inputs, and only when memory has forgotten the id (see `spend`).
        let mut committed_before = |tx_id: &TxId| Notary::committed_in(&self.store, tx_id);
        let Spent { mut committed, fresh, aborted } =
            spend(&mut self.notary.lock_all(), txs, states, blocked, &mut committed_before);
        if fresh.is_empty() && aborted.is_empty() && !committed.contains(&true) {
            return committed;
        }
        let mut batch = WriteBatch::new();
        for &index in &fresh {
            Notary::writes(&request(&txs[index]), seq, &mut batch);
        }
        for &index in &aborted {
            Notary::abort_writes(&txs[index].tx_id, seq, &mut batch);
        }
        // Commits of spends are one at a time (the `seq` lock): this record holds the number.
        batch.record(SEQ_LOG, seq.to_le_bytes().to_vec());
        batch.truncate_log_here(SEQ_LOG);
        let written = self.store.commit(batch).map_err(|e| {
            // The write may or may not have reached the disk, so nothing of this request is
            // decided: every transaction of it is answered "ask again", never refused (a bank
            // would drop a refused transaction that the disk may hold as committed). The store
            // stops after a failed commit (see `dtenge_store`), and so does the notary: it
            // answers nothing more until a restart has read what the disk really holds.
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            Error::new(ErrorCode::RequestInProgress, format!("the notary's store failed ({}); ask again", e.message))
        });
        if let Err(e) = &written {
            for (index, state) in states.iter_mut().enumerate() {
                if committed[index] || fresh.contains(&index) || aborted.contains(&index) {
                    committed[index] = false;
                    *state = Err(e.clone());
                }
            }
        }
        if written.is_ok() {
            let fresh_count = u64::try_from(fresh.len()).expect("a batch is bounded by the wire");
            self.committed_since_open.fetch_add(fresh_count, std::sync::atomic::Ordering::Relaxed);
            // One change record each, logged by this commit (under `seq`, as a checkpoint's
            // begin reads and resets the count).
            self.changes_since_checkpoint.fetch_add(fresh_count, std::sync::atomic::Ordering::Relaxed);
        }
        let mut shards = self.notary.lock_all();
        for &index in &fresh {
            match &written {
                Ok(()) => {
                    shards.finalize(request(&txs[index]));
                    committed[index] = true;
                }
                Err(e) => {
                    shards.revert(request(&txs[index]));
                    states[index] = Err(e.clone());
                }
            }
        }
        committed
    }
}

/// A request as the notary checked it before spending anything.
pub struct Checked {
    /// Each transaction's compact hash, in request order: the certificate's leaves.
    pub leaves: Vec<Hash32>,
    /// Per transaction: `Ok` if it may be spent, or why it is refused.
    pub states: Vec<Result<()>>,
    /// Why the sender's new spends are refused, when the operator blocked it.
    pub blocked: Option<Error>,
}

/// What the notary checks of a request without its state: the sender is one of the network's
/// and signed it, and each transaction is well formed for that sender. The same on every
/// replica of a replicated notary, which checks each request again as it applies it.
pub fn check(senders: &Senders, sender: &RoleId, request: &NotarizeRequest) -> Checked {
    assert!(request.txs.len() <= dtenge_wire::message::BATCH_TXS_MAX, "the wire bounds a batch");
    let leaves: Vec<Hash32> = request.txs.iter().map(CompactTx::hash).collect();
    let signed = senders.key_of(sender).and_then(|(key, blocked)| {
        let message = notarize_message(request.batch, &dtenge_core::merkle::root(&leaves));
        verify(&key, &message.0, &request.signature).map_err(|_| {
            Error::new(ErrorCode::InvalidSignature, format!("the request is not signed by {sender}'s node key"))
        })?;
        Ok(blocked)
    });
    let (states, blocked) = match signed {
        Ok(blocked) => (request.txs.iter().map(|tx| check_tx(sender, tx)).collect(), blocked),
        Err(e) => (vec![Err(e); request.txs.len()], None),
    };
    Checked { leaves, states, blocked }
}

/// What [`spend`] did, by index into the request's transactions.
pub struct Spent {
    /// Committed, now (once finalized) or before.
    pub committed: Vec<bool>,
    /// Spent now, pending: to be persisted, then finalized (or reverted).
    pub fresh: Vec<usize>,
    /// Refused for good now (their sender is blocked).
    pub aborted: Vec<usize>,
}

/// Spend every passing transaction in request order (a later one spending what an earlier
/// one spent is a double spend). A `blocked` sender spends nothing new: each of its
/// transactions is refused with the reason, except those committed before its block, which
/// are answered "committed" (a bank retrying after a lost answer must learn the truth, or it
/// would drop a transaction the ledger holds). The notary's rule, in memory, deterministic.
///
/// `committed_before` answers whether a transaction memory no longer holds was committed
/// (a windowed notary forgets old ids: `Notary::committed_in` reads its store; a notary that
/// holds them all answers `false`). It is asked only where the answer matters: before a
/// spend would be refused for spent inputs (a committed transaction's inputs are spent), for
/// a transaction without inputs (which nothing else stops from being spent again), and for a
/// blocked sender's transaction. A failed read answers that transaction "ask again".
pub fn spend(
    shards: &mut AllShards<'_>,
    txs: &[CompactTx],
    states: &mut [Result<()>],
    blocked: Option<&Error>,
    committed_before: &mut dyn FnMut(&TxId) -> Result<bool>,
) -> Spent {
    assert_eq!(txs.len(), states.len(), "one state per transaction");
    let mut spent = Spent { committed: vec![false; txs.len()], fresh: Vec::new(), aborted: Vec::new() };
    for (index, (tx, state)) in txs.iter().zip(states.iter_mut()).enumerate() {
        if state.is_err() {
            continue;
        }
        let mut forgotten_commit = |shards: &mut AllShards<'_>| -> Result<bool> {
            if shards.knows(&tx.tx_id) {
                return Ok(false);
            }
            committed_before(&tx.tx_id).map_err(|e| {
                Error::new(
                    ErrorCode::RequestInProgress,
                    format!("the notary could not read its record of {} ({}); ask again", tx.tx_id, e.message),
                )
            })
        };
        if let Some(why) = blocked {
            let committed = if shards.is_committed(&tx.tx_id) { Ok(true) } else { forgotten_commit(shards) };
            match committed {
                Ok(true) => spent.committed[index] = true,
                Ok(false) => {
                    if shards.abort(&tx.tx_id) {
                        spent.aborted.push(index);
                    }
                    *state = Err(why.clone());
                }
                Err(e) => *state = Err(e),
            }
            continue;
        }
        if tx.inputs.is_empty() {
            match forgotten_commit(shards) {
                Ok(true) => {
                    spent.committed[index] = true;
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    *state = Err(e);
                    continue;
                }
            }
        }
        match shards.try_spend(request(tx)) {
            Ok(Spend::Pending) => spent.fresh.push(index),
            Ok(Spend::AlreadyCommitted) => spent.committed[index] = true,
            Err(e) if e.code == ErrorCode::DoubleSpend && !tx.inputs.is_empty() => match forgotten_commit(shards) {
                Ok(true) => spent.committed[index] = true,
                Ok(false) => *state = Err(e),
                Err(lookup) => *state = Err(lookup),
            },
            Err(e) => *state = Err(e),
        }
    }
    spent
}

/// The next certificate's number, if any transaction of a request is committed (now or
/// before): a request that commits nothing takes no number, so numbers stay dense.
pub fn next_seq(committed: &[bool], seq: &mut u64) -> Option<u64> {
    committed.contains(&true).then(|| {
        *seq = seq.checked_add(1).expect("a certificate number fits in u64");
        *seq
    })
}

/// The reply: one certificate over the committed transactions, in request order, numbered
/// by [`next_seq`].
pub fn certify(
    key: &dyn Sign,
    batch: u64,
    leaves: &[Hash32],
    states: &[Result<()>],
    committed: &[bool],
    seq: &mut u64,
) -> NotarizeReply {
    let certified: Vec<Hash32> = leaves.iter().zip(committed).filter(|(_, c)| **c).map(|(l, _)| *l).collect();
    let mut proofs = Vec::new().into_iter();
    let mut certificate = None;
    if let Some(number) = next_seq(committed, seq) {
        let (signed, signed_proofs) = CommitCertificate::sign(key, number, &certified);
        certificate = Some(signed);
        proofs = signed_proofs.into_iter();
    }
    let outcomes = states
        .iter()
        .zip(committed)
        .map(|(state, c)| match (c, state) {
            (true, _) => Outcome::Committed(proofs.next().expect("one proof per committed transaction")),
            (false, Err(e)) => Outcome::Refused(e.clone()),
            (false, Ok(())) => unreachable!("a transaction that passed every check is committed"),
        })
        .collect();
    assert!(proofs.next().is_none(), "every proof was handed out");
    NotarizeReply { batch, certificate, outcomes }
}

/// Marks the notary poisoned if dropped while its thread unwinds from a panic.
struct PoisonOnPanic<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// What the notary is asked to spend for a compact transaction.
fn request(tx: &CompactTx) -> SpendRequest<'_> {
    SpendRequest { tx_id: tx.tx_id, inputs: &tx.inputs, outputs: &tx.outputs }
}

/// What the notary can check of one compact transaction without its preimages.
fn check_tx(sender: &RoleId, tx: &CompactTx) -> Result<()> {
    if tx.inputs.len() > TX_INPUTS_MAX || tx.outputs.len() > TX_OUTPUTS_MAX {
        return Err(Error::new(ErrorCode::LimitExceeded, "too many inputs or outputs"));
    }
    if tx.inputs.is_empty() && *sender != RoleId::Central {
        return Err(Error::new(ErrorCode::Forbidden, "only the NBK creates tokens without spending any"));
    }
    if tx.inputs.is_empty() && tx.outputs.is_empty() {
        return Err(Error::malformed("a transaction spends or creates something"));
    }
    if let Some(id) = dtenge_core::hash::first_repeat(&tx.inputs) {
        return Err(Error::new(ErrorCode::DoubleSpend, format!("token {id} is spent twice in one transaction")));
    }
    if let Some(id) = dtenge_core::hash::first_repeat(&tx.outputs) {
        return Err(Error::malformed(format!("token {id} is created twice in one transaction")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::certificate::CommitProof;
    use dtenge_core::crypto::SecretKey;
    use dtenge_core::token::{Output, TokenId, TxId};
    use dtenge_core::tx::{Command, Transaction, TxBody};
    use dtenge_core::validate::TxIds;
    use dtenge_core::Amount;
    use dtenge_store::{CrashMode, SimDisk};

    /// A small network: the NBK, two banks, the notary, and the notary's disk.
    struct World {
        nbk: SecretKey,
        steppe: SecretKey,
        sapa: SecretKey,
        notary: SecretKey,
        disk: SimDisk,
    }

    fn steppe() -> RoleId {
        RoleId::Bank("steppe".into())
    }

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_seed([byte; 32])
    }

    fn compact(tx: &Transaction) -> CompactTx {
        CompactTx::of(&TxIds::of(tx).unwrap())
    }

    impl World {
        fn new() -> World {
            World { nbk: key(1), steppe: key(3), sapa: key(4), notary: key(5), disk: SimDisk::new() }
        }

        fn senders(&self) -> Senders {
            Senders {
                central_bank: self.nbk.public_key(),
                banks: [("steppe".to_string(), self.steppe.public_key()), ("sapa".to_string(), self.sapa.public_key())]
                    .into_iter()
                    .collect(),
                blocked: BTreeSet::new(),
            }
        }

        /// The notary, opened (again) on the same disk: a restart.
        fn open(&self) -> NotaryService {
            let store = Store::open_simulated(self.disk.clone(), &tables()).unwrap();
            NotaryService::open(store, self.notary.clone(), self.senders()).unwrap()
        }

        /// An issue of `amounts` to `owner`.
        fn issue(&self, owner: &SecretKey, amounts: &[u64], nonce: u64) -> Transaction {
            let outputs = amounts
                .iter()
                .map(|a| Output::standard(Amount::from_tiyn(*a).unwrap(), owner.address(), self.nbk.address()))
                .collect();
            Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce })
        }

        /// `owner` pays the whole of `from`'s outputs to `to`.
        fn pay(&self, from: &Transaction, owner: &SecretKey, to: &SecretKey, nonce: u64) -> Transaction {
            let inputs = from.outputs_as_inputs();
            let total = inputs.iter().map(|i| i.output.amount_tiyn.tiyn()).sum();
            let outputs = vec![Output::standard(Amount::from_tiyn(total).unwrap(), to.address(), self.nbk.address())];
            let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce });
            tx.sign_owner(owner);
            tx
        }
    }

    /// Request number `batch` of `txs`, signed with `signer`.
    fn request(batch: u64, txs: &[Transaction], signer: &SecretKey) -> NotarizeRequest {
        let txs: Vec<CompactTx> = txs.iter().map(compact).collect();
        signed(batch, txs, signer)
    }

    fn signed(batch: u64, txs: Vec<CompactTx>, signer: &SecretKey) -> NotarizeRequest {
        let leaves: Vec<Hash32> = txs.iter().map(CompactTx::hash).collect();
        let signature = signer.sign(&notarize_message(batch, &dtenge_core::merkle::root(&leaves)).0);
        NotarizeRequest { batch, txs, signature }
    }

    fn codes(reply: &NotarizeReply) -> Vec<Option<ErrorCode>> {
        reply
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Committed(_) => None,
                Outcome::Refused(e) => Some(e.code),
            })
            .collect()
    }

    /// Every committed outcome verifies under the notary's key for the compact hash the payee
    /// recomputes from the whole transaction.
    fn assert_certified(w: &World, txs: &[Transaction], reply: &NotarizeReply) {
        for (tx, outcome) in txs.iter().zip(&reply.outcomes) {
            if let Outcome::Committed(proof) = outcome {
                let certificate = reply.certificate.as_ref().expect("a committed outcome comes with a certificate");
                certificate.verify(&w.notary.public_key(), &compact(tx).hash(), proof).unwrap();
            }
        }
    }

    fn notarize_ok(notary: &NotaryService, sender: &RoleId, signer: &SecretKey, txs: &[Transaction]) {
        let reply = notary.notarize(sender, &request(0, txs, signer));
        assert_eq!(codes(&reply), vec![None; txs.len()]);
    }

    #[test]
    fn a_signed_batch_is_spent_committed_and_certified_with_one_signature() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500, 700], 1);
        let reply = notary.notarize(&RoleId::Central, &request(1, std::slice::from_ref(&issue), &w.nbk));
        assert_eq!(codes(&reply), vec![None]);
        assert_eq!(reply.certificate.as_ref().unwrap().seq, 1);
        let pay = w.pay(&issue, &alice, &bob, 2);
        let reply = notary.notarize(&steppe(), &request(2, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!((reply.batch, codes(&reply)), (2, vec![None]));
        assert_certified(&w, std::slice::from_ref(&pay), &reply);
        assert_eq!(reply.certificate.as_ref().unwrap().seq, 2);
        assert!(notary.is_committed(&pay.id()).unwrap());
        assert_eq!(notary.notary().unspent_count(), 1);
    }

    /// Issue 20: the notary holds only the newest committed ids. A resubmission of an older
    /// one (a payment whose inputs are spent, an issue without inputs) is looked up in its
    /// store and answered "committed" with a certificate, never spent again; so after a
    /// restart too, which reads no committed id at all.
    #[test]
    fn a_resubmission_of_a_commit_memory_forgot_is_answered_from_the_store() {
        let w = World::new();
        let mut notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let first_issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&first_issue));
        let first_pay = w.pay(&first_issue, &alice, &bob, 2);
        notarize_ok(&notary, &steppe(), &w.steppe, std::slice::from_ref(&first_pay));
        // Enough commits that every shard's two generations turn over.
        for batch in 0..30u64 {
            let issues: Vec<Transaction> = (0..100).map(|n| w.issue(&alice, &[1], 100 + batch * 100 + n)).collect();
            notarize_ok(&notary, &RoleId::Central, &w.nbk, &issues);
        }
        let held = notary.notary().transactions_held();
        assert!(held <= crate::COMMITTED_IN_MEMORY_MAX_SIMULATED, "{held} ids held");
        assert!(!notary.notary().is_committed(&first_pay.id()) && !notary.notary().is_committed(&first_issue.id()));
        assert!(notary.is_committed(&first_pay.id()).unwrap() && notary.is_committed(&first_issue.id()).unwrap());
        let unspent = notary.notary().unspent_count();
        for restart in 0..2 {
            let again = [first_pay.clone()];
            let reply = notary.notarize(&steppe(), &request(7, &again, &w.steppe));
            assert_eq!(codes(&reply), vec![None], "restart {restart}");
            assert_certified(&w, &again, &reply);
            let again = [first_issue.clone()];
            let reply = notary.notarize(&RoleId::Central, &request(8, &again, &w.nbk));
            assert_eq!(codes(&reply), vec![None], "restart {restart}");
            assert_eq!(notary.notary().unspent_count(), unspent, "nothing spent or issued again");
            drop(notary);
            notary = w.open();
        }
        // A payment spending what the forgotten one spent is still a double spend.
        let thief = w.pay(&first_issue, &alice, &alice, 9);
        let reply = notary.notarize(&steppe(), &request(9, &[thief], &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend)]);
    }

    #[test]
    fn the_count_of_committed_transactions_grows_by_those_first_committed_and_restarts_at_zero() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let pay = w.pay(&issue, &alice, &bob, 2);
        notarize_ok(&notary, &steppe(), &w.steppe, std::slice::from_ref(&pay));
        assert_eq!(notary.committed_since_open(), 2);
        // Certified again (a lost answer) or refused: not counted again.
        notarize_ok(&notary, &steppe(), &w.steppe, std::slice::from_ref(&pay));
        let again = w.pay(&issue, &alice, &bob, 3);
        assert_eq!(
            codes(&notary.notarize(&steppe(), &request(3, &[again], &w.steppe))),
            vec![Some(ErrorCode::DoubleSpend)]
        );
        assert_eq!(notary.committed_since_open(), 2);
        drop(notary);
        assert_eq!(w.open().committed_since_open(), 0, "a rate's sample, not a stored total");
    }

    #[test]
    fn central_redeems_a_banks_tokens_burning_them_whole_or_with_change_and_a_retry_spends_nothing() {
        // A redemption is notarized by central (the NBK), not by the bank that owns the tokens:
        // the notary sees only ids, so a transaction with inputs and fewer (or no) outputs is
        // spent like any other; conservation is the validators' rule.
        let w = World::new();
        let notary = w.open();
        let own = key(31);
        let issue = w.issue(&own, &[500, 700], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let inputs = issue.outputs_as_inputs();
        let burn = Transaction::new(TxBody {
            command: Command::Redeem,
            inputs: vec![inputs[0].clone()],
            outputs: vec![],
            nonce: 1,
        });
        let change = Output::standard(Amount::from_tiyn(200).unwrap(), own.address(), w.nbk.address());
        let with_change = Transaction::new(TxBody {
            command: Command::Redeem,
            inputs: vec![inputs[1].clone()],
            outputs: vec![change],
            nonce: 2,
        });
        let both = [burn.clone(), with_change.clone()];
        let reply = notary.notarize(&RoleId::Central, &request(2, &both, &w.nbk));
        assert_eq!(codes(&reply), vec![None, None]);
        assert_certified(&w, &both, &reply);
        let change_id = compact(&with_change).outputs[0];
        assert_eq!(notary.notary().unspent(), [change_id].into_iter().collect());
        // Central resends after a lost answer: certified again, nothing spent twice.
        let reply = notary.notarize(&RoleId::Central, &request(3, &both, &w.nbk));
        assert_eq!(codes(&reply), vec![None, None]);
        assert_eq!(notary.notary().unspent_count(), 1);
        // A second redemption of a token already redeemed is a double spend.
        let again = Transaction::new(TxBody {
            command: Command::Redeem,
            inputs: vec![inputs[0].clone()],
            outputs: vec![],
            nonce: 9,
        });
        let reply = notary.notarize(&RoleId::Central, &request(4, &[again], &w.nbk));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend)]);
    }

    #[test]
    fn a_second_spend_of_a_token_in_the_same_batch_or_a_later_one_is_a_double_spend() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob, carol) = (key(10), key(11), key(12));
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let to_bob = w.pay(&issue, &alice, &bob, 2);
        let to_carol = w.pay(&issue, &alice, &carol, 3);
        let both = [to_bob, to_carol.clone()];
        let reply = notary.notarize(&steppe(), &request(7, &both, &w.steppe));
        assert_eq!(codes(&reply), vec![None, Some(ErrorCode::DoubleSpend)]);
        assert_certified(&w, &both, &reply);
        let reply = notary.notarize(&steppe(), &request(8, &[to_carol], &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend)]);
        assert!(reply.certificate.is_none());
    }

    #[test]
    fn a_retry_of_a_committed_transaction_is_certified_again_and_spends_nothing() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let pay = w.pay(&issue, &alice, &bob, 2);
        notarize_ok(&notary, &steppe(), &w.steppe, std::slice::from_ref(&pay));
        let unspent = notary.notary().unspent();
        let reply = notary.notarize(&steppe(), &request(3, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![None]);
        assert_certified(&w, std::slice::from_ref(&pay), &reply);
        assert_eq!(reply.certificate.unwrap().seq, 3, "a retry gets a certificate of its own");
        assert_eq!(notary.notary().unspent(), unspent);
    }

    #[test]
    fn an_unsigned_or_foreign_request_a_bank_issue_and_a_blocked_bank_are_refused() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500], 1);
        // A bank cannot create tokens from nothing.
        let reply = notary.notarize(&steppe(), &request(1, std::slice::from_ref(&issue), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::Forbidden)]);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let pay = w.pay(&issue, &alice, &bob, 2);
        // Sapa Bank's key on a request from Steppe Bank.
        let reply = notary.notarize(&steppe(), &request(2, std::slice::from_ref(&pay), &w.sapa));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::InvalidSignature)]);
        // A request changed after it was signed: another output id.
        let mut tampered = request(3, std::slice::from_ref(&pay), &w.steppe);
        tampered.txs[0].outputs[0] = TokenId(Hash32([0xee; 32]));
        let reply = notary.notarize(&steppe(), &tampered);
        assert_eq!(codes(&reply), vec![Some(ErrorCode::InvalidSignature)]);
        // Neither an unknown bank nor the oracle sends the notary transactions.
        let stranger = RoleId::Bank("nowhere".into());
        let reply = notary.notarize(&stranger, &request(4, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::Forbidden)]);
        let reply = notary.notarize(&RoleId::Oracle, &request(4, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::Forbidden)]);
        // A blocked bank's requests are refused until it is unblocked.
        notary.set_blocked("steppe", true);
        let reply = notary.notarize(&steppe(), &request(5, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::BankBlocked)]);
        notary.set_blocked("steppe", false);
        // Refused for good: a copy the network delivers after the block is lifted must not
        // commit what the bank dropped when it was refused.
        let reply = notary.notarize(&steppe(), &request(6, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::BankBlocked)]);
        drop(notary);
        let notary = w.open();
        let reply = notary.notarize(&steppe(), &request(7, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::BankBlocked)], "the refusal is durable");
        let again = w.pay(&issue, &alice, &bob, 3);
        notarize_ok(&notary, &steppe(), &w.steppe, std::slice::from_ref(&again));
        assert_eq!(notary.notary().unspent_count(), 1, "only the last request spent anything");
    }

    #[test]
    fn a_blocked_bank_spends_nothing_new_but_its_retry_of_a_committed_transaction_is_answered_committed() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500, 600], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let inputs = issue.outputs_as_inputs();
        let pay = |input: &dtenge_core::token::Input, nonce| {
            let output = Output::standard(input.output.amount_tiyn, bob.address(), w.nbk.address());
            let body = TxBody { command: Command::Transfer, inputs: vec![input.clone()], outputs: vec![output], nonce };
            let mut tx = Transaction::new(body);
            tx.sign_owner(&alice);
            tx
        };
        let before = pay(&inputs[0], 1);
        notarize_ok(&notary, &steppe(), &w.steppe, std::slice::from_ref(&before));
        notary.set_blocked("steppe", true);
        // Its answer was lost; the bank asks again after its block, with a new payment.
        let after = pay(&inputs[1], 2);
        let reply = notary.notarize(&steppe(), &request(2, &[before.clone(), after.clone()], &w.steppe));
        assert_eq!(codes(&reply), vec![None, Some(ErrorCode::BankBlocked)]);
        assert_certified(&w, &[before, after.clone()], &reply);
        assert!(!notary.is_committed(&after.id()).unwrap());
    }

    #[test]
    fn a_transaction_spending_a_token_twice_or_creating_one_twice_is_refused_alone() {
        let w = World::new();
        let notary = w.open();
        let alice = key(10);
        let issue = w.issue(&alice, &[500, 600], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let ids = compact(&issue).outputs;
        let spend_twice = CompactTx { tx_id: TxId(Hash32([1; 32])), inputs: vec![ids[0], ids[0]], outputs: vec![] };
        let create_twice = CompactTx {
            tx_id: TxId(Hash32([2; 32])),
            inputs: vec![ids[1]],
            outputs: vec![TokenId(Hash32([3; 32])), TokenId(Hash32([3; 32]))],
        };
        let fine =
            CompactTx { tx_id: TxId(Hash32([4; 32])), inputs: vec![ids[1]], outputs: vec![TokenId(Hash32([5; 32]))] };
        let reply = notary.notarize(&steppe(), &signed(1, vec![spend_twice, create_twice, fine], &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend), Some(ErrorCode::MalformedInput), None]);
    }

    #[test]
    fn a_crash_after_the_commit_loses_nothing_and_the_retry_is_answered_committed() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let pay = w.pay(&issue, &alice, &bob, 2);
        w.disk.arm_crash(1, CrashMode::AfterWrite);
        let reply = notary.notarize(&steppe(), &request(2, std::slice::from_ref(&pay), &w.steppe));
        assert!(w.disk.crashed());
        // The process died before anyone saw this reply; what the disk holds decides.
        drop((reply, notary));
        let notary = w.open();
        assert!(notary.is_committed(&pay.id()).unwrap());
        assert_eq!(notary.seq(), 2, "the certificate number is durable with the commit");
        let reply = notary.notarize(&steppe(), &request(2, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![None]);
        assert_eq!(reply.certificate.as_ref().unwrap().seq, 3, "no number is given out twice");
        assert_certified(&w, &[pay], &reply);
    }

    #[test]
    fn a_crash_before_the_write_spends_nothing() {
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let pay = w.pay(&issue, &alice, &bob, 2);
        w.disk.arm_crash(1, CrashMode::BeforeWrite);
        let reply = notary.notarize(&steppe(), &request(2, std::slice::from_ref(&pay), &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::RequestInProgress)], "undecided, never refused");
        drop(notary);
        let notary = w.open();
        assert!(!notary.is_committed(&pay.id()).unwrap());
        assert_eq!(notary.seq(), 1);
        notarize_ok(&notary, &steppe(), &w.steppe, &[pay]);
    }

    #[test]
    fn a_proof_for_one_transaction_does_not_certify_another_with_the_same_id() {
        // A rogue sender could notarize a transaction's id with other inputs than its own: the
        // certificate covers the compact hash, so the payee, which recomputes it from the whole
        // transaction, refuses it.
        let w = World::new();
        let notary = w.open();
        let (alice, bob) = (key(10), key(11));
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, &w.nbk, std::slice::from_ref(&issue));
        let pay = w.pay(&issue, &alice, &bob, 2);
        let mut lie = compact(&pay);
        lie.inputs = vec![TokenId(Hash32([0x42; 32]))];
        let reply = notary.notarize(&steppe(), &signed(2, vec![lie], &w.steppe));
        // Token 0x42… was never created: refused anyway. Certify a lie that spends nothing real.
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend)]);
        let (cert, proofs): (CommitCertificate, Vec<CommitProof>) =
            CommitCertificate::sign(&w.notary, 9, &[compact(&issue).hash()]);
        assert!(cert.verify(&w.notary.public_key(), &compact(&pay).hash(), &proofs[0]).is_err());
    }

    #[test]
    fn an_envelope_is_answered_to_its_sender_and_other_messages_are_dropped() {
        let w = World::new();
        let notary = w.open();
        let issue = w.issue(&key(10), &[500], 1);
        let envelope = Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::NotarizeRequest(request(4, &[issue], &w.nbk)),
        };
        let answer = notary.handle(envelope).unwrap();
        assert_eq!(answer.to, RoleId::Central);
        let Message::NotarizeReply(reply) = answer.message else { panic!("a reply") };
        assert_eq!((reply.batch, codes(&reply)), (4, vec![None]));
        let stray = Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::DeliverAck(dtenge_wire::DeliverAck { seq: 1 }),
        };
        assert!(notary.handle(stray).is_none());
    }

    // Checkpoints of the unspent set (`checkpoint`).

    /// Token `n` of the checkpoint tests.
    fn token_n(n: u32) -> TokenId {
        TokenId(dtenge_core::crypto::hash_parts(b"test/token", &[&n.to_le_bytes()]))
    }

    /// Central issues tokens `range`, one per transaction, in requests of at most a batch.
    fn issue_tokens(nbk: &SecretKey, notary: &NotaryService, range: std::ops::Range<u32>) {
        let txs: Vec<CompactTx> = range
            .map(|n| CompactTx {
                tx_id: TxId(dtenge_core::crypto::hash_parts(b"test/issue", &[&n.to_le_bytes()])),
                inputs: vec![],
                outputs: vec![token_n(n)],
            })
            .collect();
        for chunk in txs.chunks(dtenge_wire::message::BATCH_TXS_MAX) {
            let reply = notary.notarize(&RoleId::Central, &signed(0, chunk.to_vec(), nbk));
            assert!(reply.outcomes.iter().all(|o| matches!(o, Outcome::Committed(_))), "issued");
        }
    }

    /// Steppe Bank spends token `n` into token `n + 1_000_000`, one transaction each.
    fn spend_tokens(steppe_key: &SecretKey, notary: &NotaryService, ns: impl IntoIterator<Item = u32>) {
        let txs: Vec<CompactTx> = ns
            .into_iter()
            .map(|n| CompactTx {
                tx_id: TxId(dtenge_core::crypto::hash_parts(b"test/spend", &[&n.to_le_bytes()])),
                inputs: vec![token_n(n)],
                outputs: vec![token_n(n + 1_000_000)],
            })
            .collect();
        let reply = notary.notarize(&steppe(), &signed(0, txs, steppe_key));
        assert!(reply.outcomes.iter().all(|o| matches!(o, Outcome::Committed(_))), "spent");
    }

    #[test]
    fn the_due_rule_is_the_monoliths_half_the_set_and_at_least_the_minimum() {
        use crate::{checkpoint_due, checkpoint_interval, CHECKPOINT_CHANGES_MIN};
        assert_eq!(CHECKPOINT_CHANGES_MIN, 200_000);
        assert!(!checkpoint_due(199_999, 0));
        assert!(checkpoint_due(200_000, 0));
        assert!(checkpoint_due(200_000, 400_001), "half of 400,001 rounds down to the minimum");
        assert_eq!(checkpoint_interval(1_000_000), 500_000);
        assert!(!checkpoint_due(499_999, 1_000_000));
        assert!(checkpoint_due(500_000, 1_000_000));
    }

    #[test]
    fn a_checkpoint_is_due_after_the_minimum_of_first_commits_and_not_after_it() {
        let w = World::new();
        let notary = w.open();
        let below = u32::try_from(crate::CHECKPOINT_CHANGES_MIN).unwrap() - 1;
        issue_tokens(&w.nbk, &notary, 0..below);
        assert_eq!(notary.changes_since_checkpoint(), u64::from(below));
        assert!(!notary.checkpoint_due());
        assert!(notary.checkpoint_if_due().is_none());
        // A retry certifies again and logs nothing: not a change.
        issue_tokens(&w.nbk, &notary, 0..1);
        assert!(!notary.checkpoint_due());
        issue_tokens(&w.nbk, &notary, below..below + 1);
        assert!(notary.checkpoint_due());
        let written = notary.checkpoint_if_due().expect("due").unwrap();
        assert_eq!(written.items, crate::CHECKPOINT_CHANGES_MIN);
        assert_eq!(notary.changes_since_checkpoint(), 0);
        assert!(!notary.checkpoint_due());
    }

    #[test]
    fn a_checkpoint_then_later_spends_reopen_to_the_same_set_and_the_log_it_covers_is_gone() {
        let w = World::new();
        let notary = w.open();
        for start in (0..500).step_by(100) {
            issue_tokens(&w.nbk, &notary, start..start + 100);
        }
        spend_tokens(&w.steppe, &notary, 0..50);
        assert_eq!(notary.changes_since_checkpoint(), 550);
        let rows_before = notary.store.log_row_count(crate::UNSPENT.log).unwrap();
        assert_eq!(rows_before, 6, "one row per commit");
        let written = notary.checkpoint().unwrap();
        assert_eq!((written.generation, written.items), (1, 500));
        assert_eq!(written.log_rows_deleted, 5, "the last row below the checkpoint stays");
        assert_eq!(notary.store.log_row_count(crate::UNSPENT.log).unwrap(), 1);
        assert_eq!(notary.changes_since_checkpoint(), 0);
        spend_tokens(&w.steppe, &notary, 50..80);
        issue_tokens(&w.nbk, &notary, 500..510);
        spend_tokens(&w.steppe, &notary, [1_000_000 + 3, 1_000_000 + 4]);
        assert_eq!(notary.changes_since_checkpoint(), 42);
        let unspent = notary.notary().unspent();
        let seq = notary.seq();
        drop(notary);

        let notary = w.open();
        assert_eq!(notary.notary().unspent(), unspent, "the checkpoint and the log after it");
        assert_eq!(notary.changes_since_checkpoint(), 42, "what the open replayed");
        assert_eq!(notary.seq(), seq);
        assert_eq!(notary.notary().unspent_count(), 510);
        let written = notary.checkpoint().unwrap();
        assert_eq!((written.generation, written.items, written.log_rows_deleted), (2, 510, 3));
        drop(notary);
        let notary = w.open();
        assert_eq!(notary.notary().unspent(), unspent);
        assert_eq!(notary.changes_since_checkpoint(), 0);
        // Spent before the checkpoint and after: still double spends.
        let again = CompactTx {
            tx_id: TxId(Hash32([9; 32])),
            inputs: vec![token_n(60)],
            outputs: vec![TokenId(Hash32([8; 32]))],
        };
        let reply = notary.notarize(&steppe(), &signed(9, vec![again], &w.steppe));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend)]);
    }

    #[test]
    fn requests_answered_while_checkpoints_are_written_keep_every_token() {
        let w = World::new();
        let notary = std::sync::Arc::new(w.open());
        issue_tokens(&w.nbk, &notary, 0..4_000);
        let spender = {
            let (notary, steppe_key, nbk) = (notary.clone(), w.steppe.clone(), w.nbk.clone());
            std::thread::spawn(move || {
                for start in (0..4_000).step_by(40) {
                    spend_tokens(&steppe_key, &notary, start..start + 40);
                    issue_tokens(&nbk, &notary, 10_000 + start..10_000 + start + 5);
                }
            })
        };
        let mut written = 0u32;
        loop {
            notary.checkpoint().unwrap();
            written += 1;
            if spender.is_finished() {
                break;
            }
        }
        spender.join().unwrap();
        println!("{written} checkpoints beside the requests");
        let unspent = notary.notary().unspent();
        assert_eq!(unspent.len(), 4_000 + 500);
        drop(notary);
        assert_eq!(w.open().notary().unspent(), unspent);
    }

    #[test]
    fn a_crash_inside_a_checkpoint_reopens_to_the_committed_set_and_the_next_checkpoint_works() {
        let modes = [
            CrashMode::BeforeWrite,
            CrashMode::Torn { kept_bytes_permille: 500 },
            CrashMode::AfterWrite,
            CrashMode::FailedWrite { written: false },
            CrashMode::FailedWrite { written: true },
        ];
        for mode in modes {
            let w = World::new();
            let notary = w.open();
            issue_tokens(&w.nbk, &notary, 0..3_000);
            spend_tokens(&w.steppe, &notary, 0..100);
            notary.checkpoint().unwrap();
            spend_tokens(&w.steppe, &notary, 100..200);
            issue_tokens(&w.nbk, &notary, 3_000..3_100);
            let committed = notary.notary().unspent();
            // The checkpoint's commit (its chunk and the switch): the next one on this disk.
            w.disk.arm_crash(1, mode);
            let outcome = notary.checkpoint();
            assert!(outcome.is_err(), "{mode:?}: the crash hit the checkpoint");
            assert!(w.disk.crashed() || w.disk.failed());
            if matches!(mode, CrashMode::FailedWrite { .. }) {
                assert!(notary.stopped(), "{mode:?}: the notary stops with its store");
                assert!(notary.checkpoint().is_err());
            }
            drop(notary);
            let notary = w.open();
            assert_eq!(notary.notary().unspent(), committed, "{mode:?}: reopened");
            notary.checkpoint().unwrap();
            spend_tokens(&w.steppe, &notary, 200..210);
            let committed = notary.notary().unspent();
            drop(notary);
            assert_eq!(w.open().notary().unspent(), committed, "{mode:?}: after the next checkpoint");
        }
    }

    #[test]
    fn a_panic_under_the_sequence_lock_stops_the_notary_and_its_checkpoints() {
        let w = World::new();
        let notary = w.open();
        issue_tokens(&w.nbk, &notary, 0..10);
        notary.checkpoint().unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _seq = notary.seq.lock();
            let _poison_on_panic = PoisonOnPanic(&notary.poisoned);
            panic!("a request fails between its commit and its finalize");
        }));
        assert!(panicked.is_err());
        assert!(notary.stopped());
        let refused = notary.checkpoint().expect_err("no checkpoint of poisoned memory");
        assert_eq!(refused.code, ErrorCode::Internal, "{refused}");
        let envelope = Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::NotarizeRequest(signed(1, vec![], &w.nbk)),
        };
        assert!(notary.handle(envelope).is_none(), "a stopped notary answers nothing");
        drop(notary);
        assert!(w.open().checkpoint().is_ok(), "a restart rebuilds the memory from the disk");
    }
}
