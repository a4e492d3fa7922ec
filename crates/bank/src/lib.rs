//! The bank role: one commercial bank's node (or the Treasury's), with its own store, its own
//! keys, and the payment protocol with the notary and the other banks.
//!
//! It keeps its clients' accounts and wallets ([`dtenge_node::NodeState`], a pure state
//! machine) in its own store, and talks to the rest of the network only through envelopes on a
//! [`Transport`]:
//!
//! 1. **Submit** ([`BankService::submit`]): a client's signed transfer is checked (its inputs
//!    are this bank's clients' tokens, not reserved; every payee is reachable), attested with
//!    the bank's node key, validated completely (structure, conservation, policies, every
//!    signature), its inputs reserved, and the batch is written to the bank's **outbox**
//!    (durably) before the bank signs a [`NotarizeRequest`] of compact transactions once and
//!    sends it. The client's answer comes when the notary's answer has been applied.
//! 2. **The notary's answer** ([`NotarizeReply`]): the certificate is checked under the
//!    notary's key and every proof against the compact hash the bank computes itself; the bank
//!    applies its side of each committed transaction (inputs spent, change and payments to its
//!    own clients received, history), writes a numbered [`Deliver`] for each payee bank, and
//!    drops the batch from its outbox, all in one durable commit; a refused transaction's
//!    reservation is released.
//! 3. **Deliveries** from other banks (and the NBK): applied in each sender's order, once
//!    each, after the certificate and the whole transaction are validated; then acknowledged.
//!
//! Recovery: a crash anywhere leaves either the batch in the outbox (so it is sent again, and
//! the notary answers each transaction by its id: never spent twice, never lost) or the
//! applied result with its deliveries (so they are sent again until acknowledged). Requests and
//! deliveries not answered within [`RESEND_AFTER_MS`] are sent again by [`BankService::tick`].
//!
//! One lock guards the role's state from a step's plan to its apply, durable commit included:
//! a bank's steps are sequential, as a state machine's are. (The batched, pipelined form of
//! today's in-process payment path moves here once every flow runs on roles.)

#![forbid(unsafe_code)]

use crossbeam_channel::{Receiver, Sender};
use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{notarize_message, CommitCertificate, CommitProof, CompactTx};
use dtenge_core::crypto::{verify_batch_cached, Address, Hash32, KeyCache, PublicKey, SecretKey, Signature};
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{check_structure_ids, SignedMessages, TxIds};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_node::{Account, NodeMeta, NodeState, Purpose};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_transport::Transport;
use dtenge_wire::{
    Decode, Deliver, DeliverAck, Encode, Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, RoleId,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Batches at the notary, by the bank's batch number: the transactions, whole.
pub const OUTBOX_TABLE: Table = Table("bank_outbox");
/// Deliveries not yet acknowledged, by receiver and number.
pub const DELIVERIES_TABLE: Table = Table("bank_deliveries");
/// Delivery numbers: the next one to each receiver (`out`), the last applied from each sender
/// (`in`).
pub const STREAMS_TABLE: Table = Table("bank_streams");
/// The bank's next batch number.
pub const BANK_META_TABLE: Table = Table("bank_meta");
const NEXT_BATCH_KEY: &[u8] = b"next_batch";

/// Every table of a bank's store.
pub fn tables() -> Vec<Table> {
    let mut tables = dtenge_node::TABLES.to_vec();
    tables.extend([OUTBOX_TABLE, DELIVERIES_TABLE, STREAMS_TABLE, BANK_META_TABLE]);
    tables
}

/// A request or a delivery not answered after this long is sent again.
pub const RESEND_AFTER_MS: u64 = 200;
/// Most batches at the notary at once: beyond it, submissions are refused until answers come
/// (`LIMIT_EXCEEDED`), so a slow notary slows its banks instead of growing their memory.
pub const OUTBOX_BATCHES_MAX: usize = 1_024;
/// Most transactions in one batch (one notarize request, one certificate).
pub const BATCH_TXS_MAX: usize = dtenge_wire::message::BATCH_TXS_MAX;
/// Committed transactions remembered for answering a client that submits one again (its
/// answer was lost). Older ones are answered `DOUBLE_SPEND`: their inputs are spent.
pub const RECENT_COMMITTED_MAX: usize = 65_536;

/// Where the account behind an address is: the directory's read model, as a bank needs it.
pub trait Directory: Send + Sync {
    /// The id of the bank (or Treasury) holding the account with `address`.
    fn bank_of(&self, address: &Address) -> Option<String>;
}

/// A transaction committed at the notary and applied by its payer's bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub tx_id: TxId,
    /// The notary's certificate that answered it.
    pub seq: u64,
}

/// Where a submitted transaction's answer arrives.
pub type Answer = Receiver<Result<Committed>>;

/// What a bank's store holds on its first start.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub meta: NodeMeta,
    pub node_key: SecretKey,
    /// The key of the bank's own account (its DT liquidity).
    pub own_key: SecretKey,
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

/// A transaction that passed the bank's checks, with its ids and whoever waits for its answer.
type Admitted = (Transaction, TxIds, Sender<Result<Committed>>);

/// A batch at the notary.
struct Pending {
    txs: Vec<Transaction>,
    ids: Vec<TxIds>,
    sent_at_ms: u64,
}

struct Unacked {
    deliver: Deliver,
    sent_at_ms: u64,
}

struct Inner {
    node: NodeState,
    next_batch: u64,
    outbox: BTreeMap<u64, Pending>,
    /// Transaction -> the batch it is in.
    in_outbox: HashMap<TxId, u64>,
    waiters: HashMap<TxId, Vec<Sender<Result<Committed>>>>,
    /// Receiver bank -> the number of its next delivery.
    next_out: BTreeMap<String, u64>,
    /// Sender -> the number of the last delivery applied from it.
    last_in: BTreeMap<RoleId, u64>,
    unacked: BTreeMap<(String, u64), Unacked>,
    recent: VecDeque<(TxId, u64)>,
    recent_index: HashMap<TxId, u64>,
    /// Set when a durable commit failed: the store refuses every commit until the role is
    /// reopened, and the memory may no longer match the disk, so the role answers nothing.
    failed: bool,
    stats: BankStats,
}

/// The bank role.
pub struct BankService {
    id: String,
    store: Store,
    key: SecretKey,
    transport: Arc<dyn Transport>,
    directory: Arc<dyn Directory>,
    anchors: RwLock<Anchors>,
    /// Signers' keys, decompressed once (clients sign many payments with one key).
    key_cache: KeyCache,
    inner: Mutex<Inner>,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn u64_of(bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] =
        bytes.try_into().map_err(|_| Error::new(ErrorCode::StorageFailure, "a stored number is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}

fn delivery_key(bank: &str, seq: u64) -> Vec<u8> {
    let mut key = bank.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&be(seq));
    key
}

/// Stream keys start with one of these (three bytes each), then the role's encoding.
const OUT: &[u8] = b"out";
const IN: &[u8] = b"in_";
const STREAM_PREFIX_BYTES: usize = 3;

fn stream_key(direction: &[u8], role: &RoleId) -> Vec<u8> {
    debug_assert_eq!(direction.len(), STREAM_PREFIX_BYTES);
    let mut key = direction.to_vec();
    key.extend_from_slice(&role.to_bytes());
    key
}

fn stored<T: Decode>(bytes: &[u8], what: &str) -> Result<T> {
    T::from_bytes(bytes).map_err(|e| Error::new(ErrorCode::StorageFailure, format!("{what}: {e}")))
}

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
            let node = NodeState::new(genesis.meta.clone(), genesis.node_key, genesis.own_key, genesis.now_ms);
            let mut batch = WriteBatch::new();
            node.genesis_writes(&mut batch)?;
            store.commit(batch)?;
        }
        let mut nodes = NodeState::load_all(&store)?;
        if nodes.len() != 1 || nodes[0].id() != genesis.meta.id {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!("this store does not hold exactly the node '{}'", genesis.meta.id),
            ));
        }
        let node = nodes.remove(0);
        let key = node.key().clone();
        let inner = Inner::load(&store, node)?;
        Ok(BankService {
            id: genesis.meta.id,
            store,
            key,
            transport,
            directory,
            anchors: RwLock::new(anchors),
            key_cache: KeyCache::default(),
            inner: Mutex::new(inner),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn role(&self) -> RoleId {
        RoleId::Bank(self.id.clone())
    }

    /// Read the node's state (accounts, balances, history).
    pub fn read<T>(&self, f: impl FnOnce(&NodeState) -> T) -> T {
        f(&self.inner.lock().node)
    }

    pub fn stats(&self) -> BankStats {
        self.inner.lock().stats
    }

    /// Batches at the notary and deliveries not acknowledged: both zero once traffic stopped
    /// and every message arrived.
    pub fn outstanding(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.outbox.len(), inner.unacked.len())
    }

    /// The operator blocked or unblocked a bank: validation follows from the next step on.
    pub fn set_blocked(&self, bank: &str, blocked: bool) {
        let mut anchors = self.anchors.write();
        if blocked {
            anchors.blocked.insert(bank.to_string());
        } else {
            anchors.blocked.remove(bank);
        }
    }

    /// Open an account at this bank (durably). `custodial_key` is the client's key when the
    /// bank keeps it; `None` when the client keeps its own.
    pub fn open_account(&self, account: Account, custodial_key: Option<&SecretKey>) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        let mut batch = WriteBatch::new();
        inner.node.plan_open(account.clone(), custodial_key, &mut batch)?;
        self.commit(&mut inner, batch)?;
        inner.node.apply_open(account, custodial_key);
        Ok(())
    }

    /// Take clients' signed transfers (at most [`BATCH_TXS_MAX`]) as one batch: one answer per
    /// transaction, in order; `Err` for one refused before it reached the notary (nothing
    /// changed for it). A transaction submitted again while it is at the notary gets the same
    /// answer as the first submission; one committed recently is answered at once.
    pub fn submit(&self, txs: Vec<Transaction>, now_ms: u64) -> Vec<Result<Answer>> {
        assert!(txs.len() <= BATCH_TXS_MAX, "a batch is bounded");
        let mut inner = self.inner.lock();
        if let Err(e) = inner.ensure_running() {
            return txs.iter().map(|_| Err(e.clone())).collect();
        }
        if inner.outbox.len() >= OUTBOX_BATCHES_MAX {
            let busy = Error::new(ErrorCode::LimitExceeded, "the bank has too many batches at the notary; retry");
            return txs.iter().map(|_| Err(busy.clone())).collect();
        }
        let mut answers: Vec<Result<Answer>> = Vec::with_capacity(txs.len());
        let mut candidates: Vec<(usize, Admitted)> = Vec::new();
        for tx in txs {
            let (sender, receiver) = crossbeam_channel::bounded(1);
            match self.admit(&mut inner, tx, sender) {
                Ok(Some(admitted)) => candidates.push((answers.len(), admitted)),
                Ok(None) => {}
                Err(e) => {
                    answers.push(Err(e));
                    continue;
                }
            }
            answers.push(Ok(receiver));
        }
        let accepted = self.attest_and_verify(&mut inner, candidates, &mut answers);
        if !accepted.is_empty() {
            self.send_batch(&mut inner, accepted, now_ms);
        }
        answers
    }

    /// One transaction's own checks, and its inputs reserved; `Ok(None)` when it is answered
    /// already (at the notary now, or committed recently), with `answer` registered for it.
    fn admit(&self, inner: &mut Inner, tx: Transaction, answer: Sender<Result<Committed>>) -> Result<Option<Admitted>> {
        let ids = TxIds::of(&tx)?;
        if let Some(&seq) = inner.recent_index.get(&ids.tx_id) {
            let _ = answer.send(Ok(Committed { tx_id: ids.tx_id, seq }));
            return Ok(None);
        }
        if inner.in_outbox.contains_key(&ids.tx_id) {
            inner.waiters.entry(ids.tx_id).or_default().push(answer);
            return Ok(None);
        }
        inner.node.check_client_transaction_ids(&tx, &ids.inputs)?;
        for output in &tx.body.outputs {
            if inner.node.locate(&output.owner).is_none() && self.directory.bank_of(&output.owner).is_none() {
                return Err(Error::new(
                    ErrorCode::UnknownAccount,
                    format!("no digital account has address {}", output.owner),
                ));
            }
        }
        inner.node.reserve_inputs(&ids.tx_id, &ids.inputs)?;
        Ok(Some((tx, ids, answer)))
    }

    /// Attest the candidates with one signature, then check each completely: the stateless
    /// rules, and every signature but the bank's own, verified as one batch (one by one only
    /// when the batch fails, to find the bad ones). A refused candidate's reservation is
    /// released and its answer replaced by the refusal.
    fn attest_and_verify(
        &self,
        inner: &mut Inner,
        mut candidates: Vec<(usize, Admitted)>,
        answers: &mut [Result<Answer>],
    ) -> Vec<Admitted> {
        if candidates.is_empty() {
            return Vec::new();
        }
        let ids: Vec<TxId> = candidates.iter().map(|(_, (_, ids, _))| ids.tx_id).collect();
        {
            let mut txs: Vec<&mut Transaction> = candidates.iter_mut().map(|(_, (tx, _, _))| tx).collect();
            Transaction::attest_batch_ids(&mut txs, &ids, &self.key);
        }
        let anchors = self.anchors.read();
        let me = self.key.public_key();
        let mut memo = dtenge_core::merkle::InnerMemo::default();
        let mut verdicts: Vec<Result<Vec<SignatureItem>>> = candidates
            .iter()
            .map(|(_, (tx, tx_ids, _))| {
                check_structure_ids(tx, tx_ids.clone(), &*anchors)?;
                signature_items(tx, &tx_ids.tx_id, &mut memo, true, Some(&me))
            })
            .collect();
        drop(anchors);
        verify_all(&mut verdicts, &self.key_cache);
        let mut accepted = Vec::with_capacity(candidates.len());
        for ((position, (tx, tx_ids, answer)), verdict) in candidates.into_iter().zip(verdicts) {
            match verdict {
                Ok(_) => accepted.push((tx, tx_ids, answer)),
                Err(e) => {
                    inner.node.release(&tx);
                    answers[position] = Err(e);
                }
            }
        }
        accepted
    }

    /// Write the batch to the outbox, then send it to the notary.
    fn send_batch(
        &self,
        inner: &mut Inner,
        accepted: Vec<(Transaction, TxIds, Sender<Result<Committed>>)>,
        now_ms: u64,
    ) {
        let batch_no = inner.next_batch;
        let mut txs = Vec::with_capacity(accepted.len());
        let mut ids = Vec::with_capacity(accepted.len());
        let mut answers = Vec::with_capacity(accepted.len());
        for (tx, tx_ids, answer) in accepted {
            txs.push(tx);
            ids.push(tx_ids);
            answers.push(answer);
        }
        let mut batch = WriteBatch::new();
        batch.put(OUTBOX_TABLE, be(batch_no).to_vec(), txs.to_bytes());
        batch.put(BANK_META_TABLE, NEXT_BATCH_KEY.to_vec(), (batch_no + 1).to_le_bytes().to_vec());
        if let Err(e) = self.commit(inner, batch) {
            for ((tx, _), answer) in txs.iter().zip(&ids).zip(answers) {
                inner.node.release(tx);
                let _ = answer.send(Err(e.clone()));
            }
            return;
        }
        inner.next_batch = batch_no + 1;
        for (tx_ids, answer) in ids.iter().zip(answers) {
            inner.in_outbox.insert(tx_ids.tx_id, batch_no);
            inner.waiters.entry(tx_ids.tx_id).or_default().push(answer);
        }
        inner.outbox.insert(batch_no, Pending { txs, ids, sent_at_ms: now_ms });
        inner.stats.batches_sent += 1;
        self.send_request(inner, batch_no);
    }

    fn send_request(&self, inner: &Inner, batch_no: u64) {
        let pending = &inner.outbox[&batch_no];
        let compact: Vec<CompactTx> = pending.ids.iter().map(CompactTx::of).collect();
        let leaves: Vec<Hash32> = compact.iter().map(CompactTx::hash).collect();
        let signature = self.key.sign(&notarize_message(batch_no, &dtenge_core::merkle::root(&leaves)).0);
        let request = NotarizeRequest { batch: batch_no, txs: compact, signature };
        // A send that fails is a loss like any other: `tick` sends the batch again.
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: RoleId::Notary,
            message: Message::NotarizeRequest(request),
        });
    }

    /// Take one envelope from the network.
    pub fn handle(&self, envelope: Envelope, now_ms: u64) {
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        match envelope.message {
            Message::NotarizeReply(reply) if envelope.from == RoleId::Notary => {
                self.on_reply(&mut inner, reply, now_ms)
            }
            Message::Deliver(deliver) => self.on_deliver(&mut inner, envelope.from, deliver, now_ms),
            Message::DeliverAck(ack) => {
                if let RoleId::Bank(bank) = envelope.from {
                    self.on_ack(&mut inner, &bank, ack.seq)
                }
            }
            // Nothing else is for a bank: dropped, as a stray or hostile message must be.
            _ => {}
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
        let me = self.role();
        for ((bank, _), unacked) in inner.unacked.iter_mut().filter(|(_, u)| due(u.sent_at_ms)) {
            unacked.sent_at_ms = now_ms;
            let _ = self.transport.send(Envelope {
                from: me.clone(),
                to: RoleId::Bank(bank.clone()),
                message: Message::Deliver(unacked.deliver.clone()),
            });
        }
    }

    fn commit(&self, inner: &mut Inner, batch: WriteBatch) -> Result<()> {
        self.store.commit(batch).inspect_err(|_| inner.failed = true)
    }
}

/// The notary's answer, checked: per transaction, its proof or its refusal.
enum Checked {
    Committed(CommitProof),
    Refused(Error),
    /// Being committed by another request: keep it and ask again.
    Again,
}

impl BankService {
    fn on_reply(&self, inner: &mut Inner, reply: NotarizeReply, now_ms: u64) {
        let Some(pending) = inner.outbox.get(&reply.batch) else { return };
        let Some(checked) = self.check_reply(pending, &reply) else { return };
        let batch_no = reply.batch;
        let mut batch = WriteBatch::new();
        let mut deltas = Vec::new();
        let mut deliveries: BTreeMap<String, Vec<(Transaction, CommitProof)>> = BTreeMap::new();
        let mut kept = Vec::new();
        for (index, outcome) in checked.iter().enumerate() {
            let (tx, ids) = (&pending.txs[index], &pending.ids[index]);
            match outcome {
                Checked::Committed(proof) => {
                    let delta = match inner.node.plan_commit_ids(
                        tx,
                        &ids.tx_id,
                        &ids.inputs,
                        &ids.outputs,
                        Purpose::Payment,
                        None,
                        now_ms,
                    ) {
                        Ok(delta) => delta,
                        Err(e) => panic!("a committed transaction the bank checked could not be planned: {e}"),
                    };
                    if let Err(e) = delta.writes(&inner.node, &mut batch) {
                        panic!("a planned delta could not be encoded: {e}");
                    }
                    deltas.push(delta);
                    for bank in self.payee_banks(&inner.node, tx) {
                        deliveries.entry(bank).or_default().push((tx.clone(), proof.clone()));
                    }
                }
                Checked::Refused(_) => {}
                Checked::Again => kept.push(index),
            }
        }
        let certificate = reply.certificate.clone();
        let mut sends = Vec::new();
        for (bank, txs) in deliveries {
            let certificate = certificate.clone().expect("a committed outcome comes with its certificate");
            let seq = inner.next_out.get(&bank).copied().unwrap_or(1);
            let deliver = Deliver { seq, certificate, txs };
            batch.put(DELIVERIES_TABLE, delivery_key(&bank, seq), Message::Deliver(deliver.clone()).to_bytes());
            batch.put(STREAMS_TABLE, stream_key(OUT, &RoleId::Bank(bank.clone())), (seq + 1).to_le_bytes().to_vec());
            sends.push((bank, seq, deliver));
        }
        let kept_txs: Vec<Transaction> = kept.iter().map(|&i| pending.txs[i].clone()).collect();
        if kept_txs.is_empty() {
            batch.delete(OUTBOX_TABLE, be(batch_no).to_vec());
        } else {
            batch.put(OUTBOX_TABLE, be(batch_no).to_vec(), kept_txs.to_bytes());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        self.apply_reply(inner, batch_no, checked, deltas, kept, certificate.map(|c| c.seq));
        for (bank, seq, deliver) in sends {
            inner.next_out.insert(bank.clone(), seq + 1);
            let _ = self.transport.send(Envelope {
                from: self.role(),
                to: RoleId::Bank(bank.clone()),
                message: Message::Deliver(deliver.clone()),
            });
            inner.unacked.insert((bank, seq), Unacked { deliver, sent_at_ms: now_ms });
        }
    }

    /// The reply belongs to this batch and its certificate and proofs hold; `None` when it
    /// must be ignored (the batch is sent again later).
    fn check_reply(&self, pending: &Pending, reply: &NotarizeReply) -> Option<Vec<Checked>> {
        if reply.outcomes.len() != pending.txs.len() {
            return None;
        }
        if let Some(certificate) = &reply.certificate {
            certificate.verify_signature(&self.anchors.read().notary).ok()?;
        }
        let mut checked = Vec::with_capacity(reply.outcomes.len());
        for (outcome, ids) in reply.outcomes.iter().zip(&pending.ids) {
            checked.push(match outcome {
                Outcome::Committed(proof) => {
                    let certificate = reply.certificate.as_ref()?;
                    certificate.covers(&CompactTx::of(ids).hash(), proof).ok()?;
                    Checked::Committed(proof.clone())
                }
                Outcome::Refused(e) if e.code == ErrorCode::RequestInProgress => Checked::Again,
                Outcome::Refused(e) => Checked::Refused(e.clone()),
            });
        }
        Some(checked)
    }

    /// The banks, other than this one, that hold accounts paid by `tx`.
    fn payee_banks(&self, node: &NodeState, tx: &Transaction) -> Vec<String> {
        let mut banks: Vec<String> = Vec::new();
        for output in &tx.body.outputs {
            if node.locate(&output.owner).is_some() {
                continue;
            }
            let bank = self
                .directory
                .bank_of(&output.owner)
                .expect("every payee was found in the directory before the transaction was sent");
            if !banks.contains(&bank) {
                banks.push(bank);
            }
        }
        banks
    }

    /// The reply's commit is durable: apply it in memory and answer the clients.
    fn apply_reply(
        &self,
        inner: &mut Inner,
        batch_no: u64,
        checked: Vec<Checked>,
        deltas: Vec<dtenge_node::Delta>,
        kept: Vec<usize>,
        seq: Option<u64>,
    ) {
        for delta in deltas {
            inner.node.apply(delta);
        }
        let mut pending = inner.outbox.remove(&batch_no).expect("the batch was in the outbox");
        for (index, outcome) in checked.into_iter().enumerate() {
            let tx_id = pending.ids[index].tx_id;
            let answer = match outcome {
                Checked::Again => continue,
                Checked::Committed(_) => {
                    let seq = seq.expect("a committed outcome comes with its certificate");
                    inner.remember(tx_id, seq);
                    Ok(Committed { tx_id, seq })
                }
                Checked::Refused(e) => {
                    inner.node.release(&pending.txs[index]);
                    Err(e)
                }
            };
            inner.in_outbox.remove(&tx_id);
            for waiter in inner.waiters.remove(&tx_id).unwrap_or_default() {
                let _ = waiter.send(answer.clone());
            }
        }
        if !kept.is_empty() {
            pending.txs = kept.iter().map(|&i| pending.txs[i].clone()).collect();
            pending.ids = kept.iter().map(|&i| pending.ids[i].clone()).collect();
            inner.outbox.insert(batch_no, pending);
        }
    }

    fn on_deliver(&self, inner: &mut Inner, from: RoleId, deliver: Deliver, now_ms: u64) {
        let last = inner.last_in.get(&from).copied().unwrap_or(0);
        if deliver.seq <= last {
            self.ack(&from, last);
            return;
        }
        if deliver.seq != last + 1 {
            // Out of order: the sender resends every unacknowledged delivery, in order.
            return;
        }
        let anchors = self.anchors.read().clone();
        if deliver.certificate.verify_signature(&anchors.notary).is_err() {
            inner.stats.deliveries_rejected += deliver.txs.len() as u64;
            return;
        }
        let mut memo = dtenge_core::merkle::InnerMemo::default();
        let mut verdicts: Vec<Result<(TxIds, Vec<SignatureItem>)>> = deliver
            .txs
            .iter()
            .map(|(tx, proof)| Self::check_delivered(&anchors, &deliver.certificate, tx, proof, &mut memo))
            .collect();
        verify_all_with(&mut verdicts, |(_, items)| items, &self.key_cache);
        let mut batch = WriteBatch::new();
        let mut deltas = Vec::new();
        for ((tx, _), verdict) in deliver.txs.iter().zip(verdicts) {
            let ids = match verdict {
                Ok((ids, _)) => ids,
                Err(_) => {
                    // Certified at the notary, refused here: the tokens stay unusable until
                    // the operators look (reconciliation shows them), which is what a
                    // transaction no validator would have passed deserves.
                    inner.stats.deliveries_rejected += 1;
                    continue;
                }
            };
            let delta = match inner.node.plan_commit_ids(
                tx,
                &ids.tx_id,
                &ids.inputs,
                &ids.outputs,
                Purpose::Payment,
                None,
                now_ms,
            ) {
                Ok(delta) => delta,
                Err(e) => panic!("a validated delivery could not be planned: {e}"),
            };
            if let Err(e) = delta.writes(&inner.node, &mut batch) {
                panic!("a planned delta could not be encoded: {e}");
            }
            deltas.push(delta);
        }
        batch.put(STREAMS_TABLE, stream_key(IN, &from), deliver.seq.to_le_bytes().to_vec());
        if self.commit(inner, batch).is_err() {
            return;
        }
        for delta in deltas {
            inner.node.apply(delta);
        }
        inner.stats.deliveries_applied += deliver.txs.len() as u64;
        inner.last_in.insert(from.clone(), deliver.seq);
        self.ack(&from, deliver.seq);
    }

    /// A delivered transaction is applied when its certificate covers it and it passes every
    /// stateless rule with its attestations verified. Its owners' signatures are the payer's
    /// bank's to check, and that bank answers for them with its attestation (the notary and
    /// the payee rely on the attestation, as Project Hamilton's shards rely on their
    /// sentinels'): verifying them again here would double the payment path's largest cost.
    /// The transactions are archived, so an auditor can verify them all again.
    fn check_delivered(
        anchors: &Anchors,
        certificate: &CommitCertificate,
        tx: &Transaction,
        proof: &CommitProof,
        memo: &mut dtenge_core::merkle::InnerMemo,
    ) -> Result<(TxIds, Vec<SignatureItem>)> {
        let ids = TxIds::of(tx)?;
        certificate.covers(&CompactTx::of(&ids).hash(), proof)?;
        check_structure_ids(tx, ids.clone(), anchors)?;
        let items = signature_items(tx, &ids.tx_id, memo, false, None)?;
        Ok((ids, items))
    }

    fn ack(&self, to: &RoleId, seq: u64) {
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: to.clone(),
            message: Message::DeliverAck(DeliverAck { seq }),
        });
    }

    fn on_ack(&self, inner: &mut Inner, bank: &str, seq: u64) {
        let acked: Vec<(String, u64)> =
            inner.unacked.range((bank.to_string(), 0)..=(bank.to_string(), seq)).map(|(k, _)| k.clone()).collect();
        if acked.is_empty() {
            return;
        }
        let mut batch = WriteBatch::new();
        for (bank, seq) in &acked {
            batch.delete(DELIVERIES_TABLE, delivery_key(bank, *seq));
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        for key in acked {
            inner.unacked.remove(&key);
        }
    }
}

/// A signature to verify: key, signed message, signature.
type SignatureItem = (PublicKey, Hash32, Signature);

/// The signatures of `tx` to verify: its owners' (with `witnesses`) and its attestations but
/// `skip`'s (the bank's own, made just now).
fn signature_items(
    tx: &Transaction,
    tx_id: &TxId,
    memo: &mut dtenge_core::merkle::InnerMemo,
    witnesses: bool,
    skip: Option<&PublicKey>,
) -> Result<Vec<SignatureItem>> {
    let messages = SignedMessages::of_memo(tx, tx_id, memo)?;
    let mut items = Vec::with_capacity(tx.witnesses.len() + tx.attestations.len());
    if witnesses {
        items.extend(tx.witnesses.iter().map(|w| (w.public_key, messages.owner, w.signature)));
    }
    for (a, message) in tx.attestations.iter().zip(messages.attestations) {
        if Some(&a.public_key) != skip {
            items.push((a.public_key, message, a.signature));
        }
    }
    Ok(items)
}

fn verify_all(verdicts: &mut [Result<Vec<SignatureItem>>], cache: &KeyCache) {
    verify_all_with(verdicts, |items| items, cache)
}

/// Verify the signatures of every verdict still `Ok` as one batch; when the batch fails,
/// verify each verdict's alone and turn the failing ones into `INVALID_SIGNATURE`.
fn verify_all_with<T>(verdicts: &mut [Result<T>], items_of: impl Fn(&T) -> &Vec<SignatureItem>, cache: &KeyCache) {
    let batch: Vec<(PublicKey, &[u8], Signature)> = verdicts
        .iter()
        .filter_map(|v| v.as_ref().ok())
        .flat_map(|v| items_of(v).iter().map(|(k, m, s)| (*k, &m.0[..], *s)))
        .collect();
    if verify_batch_cached(&batch, Some(cache)).is_ok() {
        return;
    }
    for verdict in verdicts.iter_mut() {
        let failed = match verdict {
            Ok(v) => {
                let items: Vec<(PublicKey, &[u8], Signature)> =
                    items_of(v).iter().map(|(k, m, s)| (*k, &m.0[..], *s)).collect();
                verify_batch_cached(&items, Some(cache)).is_err()
            }
            Err(_) => false,
        };
        if failed {
            *verdict = Err(Error::new(ErrorCode::InvalidSignature, "a signature does not verify"));
        }
    }
}

impl Inner {
    fn load(store: &Store, mut node: NodeState) -> Result<Inner> {
        let next_batch = match store.get(BANK_META_TABLE, NEXT_BATCH_KEY)? {
            Some(bytes) => u64_of(&bytes)?,
            None => 1,
        };
        let mut outbox = BTreeMap::new();
        let mut in_outbox = HashMap::new();
        for (key, value) in store.scan(OUTBOX_TABLE)? {
            let key: [u8; 8] =
                key.as_slice().try_into().map_err(|_| Error::new(ErrorCode::StorageFailure, "an outbox key"))?;
            let batch_no = u64::from_be_bytes(key);
            assert!(batch_no < next_batch, "an outbox batch is numbered below the next number");
            let txs: Vec<Transaction> = stored(&value, "an outbox batch")?;
            let ids = txs.iter().map(TxIds::of).collect::<Result<Vec<_>>>()?;
            for id in &ids {
                // What was reserved before the crash is reserved again: the batch is still at
                // the notary, or its answer was lost.
                node.reserve_inputs(&id.tx_id, &id.inputs)?;
                in_outbox.insert(id.tx_id, batch_no);
            }
            outbox.insert(batch_no, Pending { txs, ids, sent_at_ms: 0 });
        }
        let mut next_out = BTreeMap::new();
        let mut last_in = BTreeMap::new();
        for (key, value) in store.scan(STREAMS_TABLE)? {
            let n = u64_of(&value)?;
            if key.len() < STREAM_PREFIX_BYTES {
                return Err(Error::new(ErrorCode::StorageFailure, "a stream key is too short"));
            }
            let (direction, role) = key.split_at(STREAM_PREFIX_BYTES);
            let role: RoleId = stored(role, "a stream's role")?;
            match (direction, role) {
                (OUT, RoleId::Bank(bank)) => {
                    next_out.insert(bank, n);
                }
                (IN, role) => {
                    last_in.insert(role, n);
                }
                _ => return Err(Error::new(ErrorCode::StorageFailure, "an unknown stream key")),
            }
        }
        let mut unacked = BTreeMap::new();
        for (key, value) in store.scan(DELIVERIES_TABLE)? {
            let split = key.iter().position(|&b| b == 0);
            let (Some(split), Message::Deliver(deliver)) = (split, stored(&value, "a delivery")?) else {
                return Err(Error::new(ErrorCode::StorageFailure, "a stored delivery is not a delivery"));
            };
            let bank = String::from_utf8(key[..split].to_vec())
                .map_err(|_| Error::new(ErrorCode::StorageFailure, "a delivery's bank is not UTF-8"))?;
            assert_eq!(key[split + 1..], be(deliver.seq), "a delivery is stored under its number");
            unacked.insert((bank, deliver.seq), Unacked { deliver, sent_at_ms: 0 });
        }
        Ok(Inner {
            node,
            next_batch,
            outbox,
            in_outbox,
            waiters: HashMap::new(),
            next_out,
            last_in,
            unacked,
            recent: VecDeque::new(),
            recent_index: HashMap::new(),
            failed: false,
            stats: BankStats::default(),
        })
    }

    fn ensure_running(&self) -> Result<()> {
        if self.failed {
            return Err(Error::new(ErrorCode::StorageFailure, "the bank's store failed; it restarts from its disk"));
        }
        Ok(())
    }

    fn remember(&mut self, tx_id: TxId, seq: u64) {
        if self.recent.len() == RECENT_COMMITTED_MAX {
            if let Some((old, _)) = self.recent.pop_front() {
                self.recent_index.remove(&old);
            }
        }
        self.recent.push_back((tx_id, seq));
        self.recent_index.insert(tx_id, seq);
        debug_assert!(self.recent.len() <= RECENT_COMMITTED_MAX);
    }
}
