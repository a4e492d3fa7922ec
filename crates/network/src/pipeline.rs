//! The payment pipeline: client-signed transfers handled in batches, in two stages that
//! overlap, so that both cores stay busy and every expensive step is paid once per batch.
//!
//! 1. **Check** (thread `dtenge-check`): [`CHECK_WORKERS`] threads, each taking the next chunk
//!    of [`VERIFY_CHUNK_TXS`] transactions as it frees up, run the payer's bank's checks (the
//!    inputs are its clients', the payees are accounts in good standing); each bank attests its
//!    transactions of the batch with one signature; then the workers, chunk by chunk again, run
//!    the stateless rules and verify every signature, one Ed25519 batch verification per chunk. A chunk that fails is verified
//!    again to find its bad signatures (`verify_chunk`), so one bad signature costs its
//!    chunk, not the batch.
//! 2. **Settle** (thread `dtenge-settle`): in submission order, the notary checks and spends,
//!    every party node plans its delta, and the whole batch goes to the store as one durable
//!    commit. Then nodes apply, the notary finalizes, and every caller is answered.
//!
//! While batch `k` waits for its fsync, batch `k + 1` is being checked. The queue in front is
//! bounded ([`QUEUE_MAX`]): when it is full, submitters wait (back-pressure).
//!
//! The same stage functions run inline, on the caller's thread, for [`Network::submit`] (a
//! batch of one), and one batch at a time for [`Network::begin_batch`] and
//! [`Network::finish_batch`]: the simulator drives those the way the settle thread does
//! (batch `k + 1` begun before batch `k` is finished, crashes inside a batch's commit). The
//! threads themselves are exercised by the flood test (`tests/concurrency.rs`), the API
//! scenarios and the SIGKILL test.
//!
//! A failed commit is final for the process: the store refuses every later commit until a
//! restart (see `dtenge-store`), so undoing the batch's spends in memory cannot let anyone
//! spend those tokens again before recovery reads what the disk really holds.
//!
//! A panic on a pipeline thread (a failed assertion: inputs are answered with errors, never
//! with panics) stops the process ([`stop_on_panic`]). A panic ends only its own thread, and
//! the platform would otherwise go on with a dead pipeline and, after a settle stage that
//! failed between its commit and its apply, memory unlike the disk; the restart rebuilds the
//! memory from the disk. (Until 2026-12-05, such a batch was answered `INTERNAL`, and the process
//! stayed up with the pipeline stopped.)
//!
//! The pipeline holds only a weak reference to the network between batches, so dropping the
//! last `Arc<Network>` shuts it down; its threads end when their queue closes.

use crate::types::Receipt;
use crate::{Idem, Located, Network};
use crossbeam_channel::{bounded, Receiver, Sender};
use dtenge_core::crypto::{verify_batch_cached, Address, KeyCache};
use dtenge_core::money::Amount;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{check_structure_ids, signature_items, SignedMessages, TxIds, Validated};
use dtenge_core::{Error, Result};
use dtenge_node::Purpose;
use dtenge_notary::{AllShards, Notary, Spend, SpendRequest};
use dtenge_store::WriteBatch;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Most submissions in one batch. A payment waits for the batch ahead of it to be checked,
/// then for its own: near saturation a batch of 1,024 took about 40 ms to check, and halving
/// it cut p99 at 25,000/s offered from 214-220 ms to 76-138 ms in paired runs, at no cost in
/// throughput (the per-batch costs, an fsync and a few attestation signatures, stay small).
pub const BATCH_MAX: usize = 512;
/// Most submissions waiting for the pipeline; submitters block beyond it.
pub const QUEUE_MAX: usize = 16_384;
/// Threads that verify signatures (the check thread and helpers): one per core here.
pub const CHECK_WORKERS: usize = 2;
/// Transactions per Ed25519 batch verification. Larger chunks verify faster per signature
/// (about 21 µs at 64 signatures against 30 µs one by one), but a chunk with one bad
/// signature is verified again transaction by transaction: 16 keeps that cost small when
/// 1% of submissions carry a bad signature.
pub const VERIFY_CHUNK_TXS: usize = 16;
/// Checked batches waiting for the settle stage: enough to overlap one check with one commit.
const SETTLE_QUEUE_MAX: usize = 2;

/// A client-signed transfer, submitted through the payer's bank.
#[derive(Clone, Debug)]
pub struct Submission {
    pub node: String,
    pub tx: Transaction,
    pub idem: Option<Idem>,
}

/// The answer to one submission, with the caller's tag and when it was answered.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub result: Result<Receipt>,
    pub done: Instant,
}

/// The gate, held shared from a batch's spend to its apply.
pub(crate) type GateGuard = crate::SharedGate<parking_lot::ArcRwLockReadGuard<parking_lot::RawRwLock, ()>>;

/// Each party node's delta for one transaction.
type NodeDeltas = Vec<dtenge_node::Delta>;

/// A batch between the two halves of stage 2: spent and planned, its commit under way.
pub struct Settling {
    answers: Vec<Option<Result<Receipt>>>,
    /// (answer slot, checked submission, node deltas) of every spend in the commit.
    spent: Vec<(usize, Checked, NodeDeltas)>,
    /// (answer slot, receipt) of resubmitted committed transactions whose idempotency key
    /// is recorded in this commit.
    resubmitted: Vec<(usize, Receipt)>,
    commit: dtenge_store::PendingCommit,
    _gate: GateGuard,
}

/// A submission that passed the bank's checks, every stateless rule and signature checks.
pub(crate) struct Checked {
    tx: Transaction,
    validated: Validated,
    /// Where each input's, then each output's owner is (found by the check stage).
    located: Vec<Located>,
    receipt: Receipt,
    idem: Option<Idem>,
}

impl Network {
    /// Stage 1 for a batch: one answer per submission, in order. Up to `workers` threads run
    /// the bank's checks of each submission, taking chunks from a shared counter; then, on the
    /// calling thread, each bank attests its transactions of the batch with one signature; then
    /// the workers run the stateless rules and verify every signature, a chunk at a time.
    ///
    /// Why a shared counter and not a half each: the settle thread competes for the same two
    /// cores, and a chunk with a bad signature costs several times a good one, so fixed halves
    /// finished at different times and the faster worker's core sat idle until the join. Why
    /// the bank's checks in parallel too: done on the calling thread alone, they were about a
    /// quarter of the stage's time at saturation (983 ms of a 3.9 s run of `dtenge bench`), in
    /// which the other core often had nothing to do.
    pub(crate) fn check_submissions(&self, submissions: Vec<Submission>, workers: usize) -> Vec<Result<Checked>> {
        assert!(submissions.len() <= BATCH_MAX.max(1), "batches are bounded");
        let count = submissions.len();
        let workers = workers.clamp(1, CHECK_WORKERS);
        let prechecked = on_workers(
            chunked(submissions, VERIFY_CHUNK_TXS),
            workers,
            || (),
            |_, chunk| chunk.into_iter().map(|s| self.check_one(s)).collect::<Vec<_>>(),
        );
        let mut prechecked: Vec<Result<Prechecked>> = prechecked.into_iter().flatten().collect();
        attest_all(&mut prechecked);
        // Each bank's one signature over the batch appears in every chunk: a worker verifies
        // it with the first chunk it takes that holds it, and not again.
        let checked =
            on_workers(chunked(prechecked, VERIFY_CHUNK_TXS), workers, Verified::default, |verified, chunk| {
                self.verify_chunk_of(chunk, verified)
            });
        let checked: Vec<Result<Checked>> = checked.into_iter().flatten().collect();
        assert_eq!(checked.len(), count, "one answer per submission");
        checked
    }

    /// The stateless rules and the signatures of one chunk. Attestation signatures in
    /// `verified` (by this worker, in this batch) are not verified again.
    fn verify_chunk_of(&self, chunk: Vec<Result<Prechecked>>, verified: &mut Verified) -> Vec<Result<Checked>> {
        let trust = self.trust.read();
        let mut done: Vec<Result<Checked>> = chunk
            .into_iter()
            .map(|p| {
                let p = p?;
                let validated = check_structure_ids(&p.tx, p.ids, &*trust)?;
                Ok(Checked { tx: p.tx, validated, located: p.located, receipt: p.receipt, idem: p.idem })
            })
            .collect();
        drop(trust);
        verify_chunk(&mut done, &self.key_cache, verified);
        done
    }

    /// The bank's checks, the payees and the receipt, for one submission: everything but the
    /// node's attestation (given per batch, see [`attest_all`]), the stateless rules and the
    /// signature verification.
    fn check_one(&self, submission: Submission) -> Result<Prechecked> {
        let Submission { node, tx, idem } = submission;
        let ids = TxIds::of(&tx)?;
        let slot = self.active_participant(&node)?;
        let payer_node = self.node_position(&node)?;
        // Where every input's and output's owner is, found once here for settle as well.
        let mut located: Vec<Located> = Vec::with_capacity(tx.body.inputs.len() + tx.body.outputs.len());
        let (key, payer) = {
            let state = slot.state.lock();
            let owners = state.check_client_transaction_ids(&tx, &ids.inputs)?;
            located.extend(owners.iter().map(|&account| Located { node: payer_node, account }));
            // The payer is the first input's owner (a transfer has inputs: checked above).
            let payer_account = owners.first().and_then(|&index| state.account_at(index));
            let client = payer_account.expect("the node located every input's owner under this lock").client_id.clone();
            let payer_address = tx.body.inputs[0].output.owner;
            (state.key().clone(), crate::types::Party { bank: node.clone(), client_id: client, address: payer_address })
        };
        // Every payee must be a client account in good standing, as for a custodial payment:
        // resolving refuses unknown addresses and nodes' own accounts.
        let mut to = None;
        let payees =
            dtenge_core::hash::distinct(tx.body.outputs.iter().map(|o| o.owner).filter(|o| *o != payer.address));
        let mut payee_locations: Vec<(Address, Located)> = Vec::with_capacity(payees.len());
        for owner in payees {
            let (party, _, at) = self.resolve_owner(&owner)?;
            self.ensure_not_blocked(&party.bank)?;
            payee_locations.push((owner, at));
            to.get_or_insert(party);
        }
        let payer_at = Located { node: payer_node, account: located[0].account };
        // Pairwise while few (a payment has one payee), through a map beyond.
        let by_owner: Option<dtenge_core::hash::Map<Address, Located>> = (payee_locations.len()
            > dtenge_core::hash::PAIRWISE_LEN_MAX)
            .then(|| payee_locations.iter().copied().collect());
        for output in &tx.body.outputs {
            let at = if output.owner == payer.address {
                Some(payer_at)
            } else if let Some(map) = &by_owner {
                map.get(&output.owner).copied()
            } else {
                payee_locations.iter().find(|(a, _)| *a == output.owner).map(|(_, at)| *at)
            };
            located.push(at.expect("every output's owner is the payer or a payee resolved above"));
        }
        let amount = Amount::sum(tx.body.outputs.iter().filter(|o| o.owner != payer.address).map(|o| o.amount_tiyn))?;
        let receipt = Receipt {
            tx_id: ids.tx_id,
            purpose: Purpose::Payment,
            amount_tiyn: amount,
            from: Some(payer),
            to,
            at_unix_ms: self.now_ms(),
            abs_posting: None,
        };
        Ok(Prechecked { tx, ids, located, key, receipt, idem })
    }

    /// Stage 2 for a batch: notary, node plans, one durable commit, apply. One answer per
    /// entry of `checked`, in order; a resubmitted committed transaction gets its receipt again.
    pub(crate) fn settle(&self, checked: Vec<Result<Checked>>) -> Vec<Result<Receipt>> {
        let gate = self.poisoning(self.gate.read_arc());
        self.settle_finish(self.settle_begin(checked, gate))
    }

    /// The first half of stage 2: spend at the notary, plan every node's delta, and hand the
    /// batch to the store. The caller holds the gate (shared) until [`Network::settle_finish`].
    pub(crate) fn settle_begin(&self, checked: Vec<Result<Checked>>, gate: GateGuard) -> Settling {
        let now = self.clock.now_ms();
        let mut answers: Vec<Option<Result<Receipt>>> = Vec::with_capacity(checked.len());
        let mut spent = Vec::with_capacity(checked.len());
        let mut resubmitted = Vec::new();
        let mut batch = WriteBatch::new();
        // Released before the commit is handed to the store: finalize locks the shards again.
        let mut notary = self.notary.lock_all();
        for entry in checked {
            let slot = answers.len();
            answers.push(None);
            let c = match entry {
                Ok(c) => c,
                Err(e) => {
                    answers[slot] = Some(Err(e));
                    continue;
                }
            };
            match self.spend_and_plan(&c, now, &mut notary, &mut batch) {
                Ok(Some(deltas)) => spent.push((slot, c, deltas)),
                // Already committed: the same receipt again. A new idempotency key is bound to
                // it in this commit, so the key cannot later be used for another request.
                Ok(None) => match &c.idem {
                    None => answers[slot] = Some(Ok(c.receipt)),
                    Some(idem) => match crate::idempotency_record(&mut batch, idem, &c.receipt) {
                        Ok(()) => resubmitted.push((slot, c.receipt)),
                        Err(e) => answers[slot] = Some(Err(e)),
                    },
                },
                Err(e) => answers[slot] = Some(Err(e)),
            }
        }
        drop(notary);
        let commit = self.store.commit_async(batch);
        Settling { answers, spent, resubmitted, commit, _gate: gate }
    }

    /// The second half of stage 2: wait for the commit, then apply and finalize (or undo the
    /// spends if it failed), and answer.
    pub(crate) fn settle_finish(&self, settling: Settling) -> Vec<Result<Receipt>> {
        let Settling { mut answers, spent, resubmitted, commit, _gate } = settling;
        let committed = commit.wait();
        for (slot, receipt) in resubmitted {
            answers[slot] = Some(committed.clone().map(|()| receipt));
        }
        let mut notary = self.notary.lock_all();
        for (slot, c, deltas) in spent {
            let request = SpendRequest::of(&c.validated);
            match &committed {
                Ok(()) => {
                    self.publish_in(&mut notary, deltas, request);
                    answers[slot] = Some(Ok(c.receipt));
                }
                Err(e) => {
                    notary.revert(request);
                    answers[slot] = Some(Err(e.clone()));
                }
            }
        }
        drop(notary);
        answers.into_iter().map(|a| a.expect("every submission of the batch is answered")).collect()
    }

    /// The notary's spend and the nodes' plans for one checked submission, added to `batch`.
    /// `None`: the transaction was already committed (a resubmission), nothing to do.
    fn spend_and_plan(
        &self,
        c: &Checked,
        now: u64,
        notary: &mut AllShards<'_>,
        batch: &mut WriteBatch,
    ) -> Result<Option<NodeDeltas>> {
        let parties = self.party_nodes_located(&c.located)?;
        let request = SpendRequest::of(&c.validated);
        if notary.try_spend(request)? == Spend::AlreadyCommitted {
            return Ok(None);
        }
        let planned = self
            .plan_deltas(&c.tx, &c.validated, &parties, Some(&c.located), Purpose::Payment, None, &[], now)
            .and_then(|(mut own, deltas)| {
                Notary::writes(&request, &mut own);
                if let Some(idem) = &c.idem {
                    crate::idempotency_record(&mut own, idem, &c.receipt)?;
                }
                Ok((own, deltas))
            });
        match planned {
            Ok((own, deltas)) => {
                batch.append(own);
                Ok(Some(deltas))
            }
            Err(e) => {
                notary.revert(request);
                Err(e)
            }
        }
    }
}

/// A submission its bank has checked, not yet attested.
pub(crate) struct Prechecked {
    tx: Transaction,
    /// Its ids, hashed once for every stage.
    ids: TxIds,
    /// Where each input's, then each output's owner is.
    located: Vec<Located>,
    /// The key of the bank that answers for it.
    key: dtenge_core::crypto::SecretKey,
    receipt: Receipt,
    idem: Option<Idem>,
}

/// `work` on every chunk, on up to `workers` threads (the caller's and helpers) that each take
/// the next chunk from a shared counter, each with its own `state`. Returns every chunk's output
/// in order. A helper's panic is raised again on the calling thread, once every helper is done.
fn on_workers<I, O, S>(
    chunks: Vec<Vec<I>>,
    workers: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, Vec<I>) -> O + Sync,
) -> Vec<O>
where
    I: Send,
    O: Send,
{
    // A slot is `Some` input until a worker takes it, then `None` until its output is in.
    let inputs: Vec<parking_lot::Mutex<Option<Vec<I>>>> =
        chunks.into_iter().map(|chunk| parking_lot::Mutex::new(Some(chunk))).collect();
    let outputs: Vec<parking_lot::Mutex<Option<O>>> = inputs.iter().map(|_| parking_lot::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run = || {
        let mut state = state();
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (Some(input), Some(output)) = (inputs.get(index), outputs.get(index)) else { return };
            // Each index is handed out once, so the input is still there.
            let Some(chunk) = input.lock().take() else { continue };
            let done = work(&mut state, chunk);
            *output.lock() = Some(done);
        }
    };
    let workers = workers.max(1).min(inputs.len());
    if workers <= 1 {
        run();
    } else {
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(run)).collect();
            run();
            // A helper's panic is the stage's: raised on the calling thread, whose caller
            // decides (a pipeline thread stops the process, see `stop_on_panic`).
            for helper in helpers {
                if let Err(panic) = helper.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
    outputs
        .into_iter()
        .map(|output| output.into_inner().expect("every chunk is taken by a worker that finished"))
        .collect()
}

/// `items` in order, in chunks of at most `size`.
fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    assert!(size > 0);
    let mut chunks = Vec::with_capacity(items.len().div_ceil(size));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(size).collect());
    }
    chunks
}

/// Each bank attests its transactions of the batch with one signature over their Merkle root.
/// Why the whole batch and not each chunk of 16: an Ed25519 signature
/// costs about 17 µs to make and, in a batch, 20 µs to verify; per chunk, with three banks,
/// that was about 7 µs of a payment's CPU. A proof grows by a hash per doubling instead.
fn attest_all(chunk: &mut [Result<Prechecked>]) {
    let mut banks: Vec<dtenge_core::crypto::PublicKey> = Vec::new();
    for p in chunk.iter().flatten() {
        let key = p.key.public_key();
        if !banks.contains(&key) {
            banks.push(key);
        }
    }
    for bank in banks {
        let mut txs: Vec<&mut Transaction> = Vec::new();
        let mut ids = Vec::new();
        let mut key = None;
        for p in chunk.iter_mut().flatten().filter(|p| p.key.public_key() == bank) {
            key.get_or_insert_with(|| p.key.clone());
            ids.push(p.receipt.tx_id);
            txs.push(&mut p.tx);
        }
        if let Some(key) = key {
            Transaction::attest_batch_ids(&mut txs, &ids, &key);
        }
    }
}

/// Attestation signatures (key, message, signature) already verified by one check worker in
/// this batch.
type Verified = dtenge_core::hash::Set<([u8; 32], [u8; 32], [u8; 64])>;

fn attestation_triple(
    item: &(dtenge_core::crypto::PublicKey, &[u8], dtenge_core::crypto::Signature),
) -> Option<([u8; 32], [u8; 32], [u8; 64])> {
    let message: [u8; 32] = item.1.try_into().ok()?;
    Some((item.0.key.0, message, item.2.sig.0))
}

/// Verify the signatures of a chunk of checked submissions; mark the ones that fail. An
/// attestation signature in `verified` is not verified again; those that pass are added.
fn verify_chunk(chunk: &mut [Result<Checked>], keys: &KeyCache, verified: &mut Verified) {
    // One memo for the chunk: its transactions are runs of consecutive leaves of their banks'
    // batch trees, whose proofs share most inner hashes.
    let mut memo = dtenge_core::merkle::InnerMemo::default();
    let messages: Vec<Result<SignedMessages>> = chunk
        .iter()
        .map(|c| match c {
            Ok(c) => SignedMessages::of_memo(&c.tx, &c.validated.tx_id, &mut memo),
            Err(e) => Err(e.clone()),
        })
        .collect();
    for (i, m) in messages.iter().enumerate() {
        if let (Ok(_), Err(e)) = (&chunk[i], m) {
            chunk[i] = Err(e.clone());
        }
    }
    // Owners' signatures always; attestations unless verified before by this worker.
    let items_of = |i: usize, verified: &Verified| match (&chunk[i], &messages[i]) {
        (Ok(c), Ok(m)) => {
            // `signature_items` lists the owners' signatures first, then the attestations.
            let mut items = signature_items(&c.tx, m);
            let attestations = items.split_off(c.tx.witnesses.len());
            items.extend(
                attestations.into_iter().filter(|a| attestation_triple(a).is_none_or(|t| !verified.contains(&t))),
            );
            items
        }
        _ => Vec::new(),
    };
    let attestations_of = |i: usize| match (&chunk[i], &messages[i]) {
        (Ok(c), Ok(m)) => {
            signature_items(&c.tx, m).iter().skip(c.tx.witnesses.len()).filter_map(attestation_triple).collect()
        }
        _ => Vec::new(),
    };
    let all: Vec<_> = (0..chunk.len()).flat_map(|i| items_of(i, verified)).collect();
    if verify_batch_cached(&all, Some(keys)).is_ok() {
        for i in 0..chunk.len() {
            verified.extend(attestations_of(i));
        }
        return;
    }
    // The chunk holds a bad signature, almost always just one. Verify one by one until it is
    // found, then the rest of the chunk as one batch: about 8 single checks and a batch of 8
    // instead of 16 single checks (28.6 µs each against 16 µs per signature in a batch of 8;
    // `cargo bench -p dtenge-core`). Only once per chunk: if the rest fails too, one by one to
    // the end, so a chunk of bad signatures costs at most one batch more than before.
    let mut failed = Vec::new();
    let mut rest_tried = false;
    for i in 0..chunk.len() {
        match verify_batch_cached(&items_of(i, verified), Some(keys)) {
            Ok(()) => verified.extend(attestations_of(i)),
            Err(e) => {
                failed.push((i, e));
                let rest = i + 1..chunk.len();
                if !rest_tried && !rest.is_empty() {
                    rest_tried = true;
                    let items: Vec<_> = rest.clone().flat_map(|r| items_of(r, verified)).collect();
                    if verify_batch_cached(&items, Some(keys)).is_ok() {
                        for r in rest {
                            verified.extend(attestations_of(r));
                        }
                        break;
                    }
                }
            }
        }
    }
    for (i, e) in failed {
        chunk[i] = Err(e);
    }
}

struct Job {
    submission: Submission,
    tag: u64,
    reply: Sender<Completion>,
}

type Replies = Vec<(u64, Sender<Completion>)>;

/// The running pipeline: two threads and the queue in front of them.
pub struct Pipeline {
    jobs: Sender<Job>,
}

impl Pipeline {
    pub(crate) fn start(network: Weak<Network>) -> Result<Pipeline> {
        let (jobs, queue) = bounded::<Job>(QUEUE_MAX);
        let (checked_out, checked_in) = bounded::<(Replies, Vec<Result<Checked>>)>(SETTLE_QUEUE_MAX);
        let checker = network.clone();
        spawn("dtenge-check", move || stop_on_panic("dtenge-check", || run_check(&checker, &queue, &checked_out)))?;
        spawn("dtenge-settle", move || stop_on_panic("dtenge-settle", || run_settle(&network, &checked_in)))?;
        Ok(Pipeline { jobs })
    }

    /// Queue a submission; its [`Completion`] (with `tag`) arrives on `reply`. Blocks while
    /// the queue is full.
    pub fn submit(&self, submission: Submission, tag: u64, reply: &Sender<Completion>) -> Result<()> {
        // The check thread takes jobs until this queue's sender (here) is dropped; it never
        // stops otherwise, since a panic on it stops the process.
        self.jobs
            .send(Job { submission, tag, reply: reply.clone() })
            .expect("the check thread runs as long as the pipeline exists");
        Ok(())
    }

    /// Queue a submission and wait for its answer.
    pub fn submit_wait(&self, submission: Submission) -> Result<Receipt> {
        let (reply, answer) = bounded(1);
        self.submit(submission, 0, &reply)?;
        answer.recv().expect("the pipeline answers every submission it takes").result
    }
}

/// Run a pipeline thread's body; a panic in it stops the process. A failed assertion on the
/// payment path means the program is wrong, and the batch in hand may be committed without
/// being applied: the only safe state is a restart, whose recovery reads what the disk holds.
/// Why abort and not let the thread end: a panic ends only its own thread, and the platform
/// would go on serving (custodial payments, reads, checkpoints) beside a dead pipeline. The
/// panic's message is on stderr already (the panic hook runs before unwinding), and the
/// unwinding drops the gate first, poisoning the network ([`Network::is_poisoned`]).
fn stop_on_panic(stage: &str, body: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        eprintln!(
            "{stage}: a failed assertion on the payment path stops the process; restart to recover from the disk"
        );
        std::process::abort();
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(|_| ())
        .map_err(|e| Error::internal(format!("start {name}: {e}")))
}

fn run_check(network: &Weak<Network>, queue: &Receiver<Job>, out: &Sender<(Replies, Vec<Result<Checked>>)>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = Vec::with_capacity(BATCH_MAX);
        jobs.push(first);
        while jobs.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (replies, submissions): (Replies, Vec<Submission>) =
            jobs.into_iter().map(|job| ((job.tag, job.reply), job.submission)).unzip();
        let Some(network) = network.upgrade() else {
            answer_all(replies, || Err(Error::internal("the network has shut down")));
            continue;
        };
        let checked = network.check_submissions(submissions, CHECK_WORKERS);
        drop(network);
        // The settle thread takes batches until this sender is dropped (and a panic on it
        // stops the process), so the send cannot fail.
        out.send((replies, checked)).expect("the settle thread runs as long as the check thread");
    }
}

/// Stage 2's thread. While batch `k` is being written, batch `k + 1` is spent and planned:
/// `begin(k + 1)` runs before `finish(k)`. That is safe because planning reads nothing that
/// applying changes (node deltas depend on the transaction and the account directory only, and
/// the outputs of `k` stay pending at the notary until `finish(k)`), and the store commits
/// batches in the order it got them.
fn run_settle(network: &Weak<Network>, queue: &Receiver<(Replies, Vec<Result<Checked>>)>) {
    use std::sync::atomic::Ordering::SeqCst;
    // The batch whose commit is under way, and the network it belongs to.
    let mut pending: Option<(Arc<Network>, Replies, Settling)> = None;
    loop {
        let next = match &pending {
            // Something to finish: take the next batch only if it is already waiting, and not
            // while someone waits for the gate exclusively (the overlap would starve them).
            Some((network, ..)) if network.exclusive_waiting.load(SeqCst) == 0 => queue.try_recv().ok(),
            Some(_) => None,
            None => match queue.recv() {
                Ok(next) => Some(next),
                Err(_) => return,
            },
        };
        let begun = next.and_then(|(replies, checked)| match network.upgrade() {
            Some(network) => {
                // Recursive: this thread may already hold the gate for the pending batch, and
                // must not queue behind a writer that waits for that very batch.
                let gate = network.poisoning(if pending.is_some() {
                    network.gate.read_arc_recursive()
                } else {
                    network.gate.read_arc()
                });
                let settling = network.settle_begin(checked, gate);
                Some((network, replies, settling))
            }
            None => {
                answer_all(replies, || Err(Error::internal("the network has shut down")));
                None
            }
        });
        if let Some((network, replies, settling)) = pending.take() {
            let answers = network.settle_finish(settling);
            drop(network);
            let done = Instant::now();
            for ((tag, reply), result) in replies.into_iter().zip(answers) {
                let _ = reply.send(Completion { tag, result, done });
            }
        }
        pending = begun;
    }
}

fn answer_all(replies: Replies, result: impl Fn() -> Result<Receipt>) {
    let done = Instant::now();
    for (tag, reply) in replies {
        let _ = reply.send(Completion { tag, result: result(), done });
    }
}

impl Network {
    /// The pipeline's stages for a caller that drives them itself, one batch at a time, on
    /// its own thread (the simulator): check, spend, plan, and hand the batch to the store.
    /// A batch holds at most [`BATCH_MAX`] submissions.
    /// Finish it with [`Network::finish_batch`]; the next batch may begin before, as in the
    /// pipeline. The caller checks idempotency keys first ([`Network::stored_answer`]).
    pub fn begin_batch(&self, submissions: Vec<Submission>) -> Settling {
        let checked = self.check_submissions(submissions, 1);
        // Recursive: the caller may still hold the gate for the batch it has not finished.
        self.settle_begin(checked, self.poisoning(self.gate.read_arc_recursive()))
    }

    /// Wait for a begun batch's commit, apply it, and answer each submission in order.
    pub fn finish_batch(&self, settling: Settling) -> Vec<Result<Receipt>> {
        self.settle_finish(settling)
    }

    /// The payment pipeline of this network, started on first use.
    pub fn pipeline(self: &Arc<Self>) -> Result<&Pipeline> {
        if let Some(pipeline) = self.pipeline.get() {
            return Ok(pipeline);
        }
        let pipeline = Pipeline::start(Arc::downgrade(self))?;
        // Two callers may race to start it: the loser's threads end when its queue drops.
        Ok(self.pipeline.get_or_init(|| pipeline))
    }

    /// Submit a transfer the client built and signed itself (accounts that keep their own
    /// key), on the caller's thread: the pipeline's two stages for a batch of one.
    pub fn submit(&self, idem: Option<&Idem>, node_id: &str, tx: Transaction) -> Result<Receipt> {
        let submission = Submission { node: node_id.to_string(), tx, idem: idem.cloned() };
        let checked = self.check_submissions(vec![submission], 1);
        self.settle(checked).pop().expect("one answer per submission")
    }
}

#[cfg(test)]
mod tests {
    //! A panic on a pipeline thread stops the process: shown in a child process (this test
    //! binary, run again with [`CHILD_ENV`] naming what to break), since it would stop the
    //! test runner too.
    use super::*;
    use crate::{Clock, Entropy, ManualClock, NetworkConfig};
    use dtenge_core::crypto::{Hash32, SecretKey};
    use dtenge_core::token::{Input, Output, TxId};
    use dtenge_core::tx::{Command, TxBody};

    /// Set in the child: which invariant it breaks before it submits a payment.
    const CHILD_ENV: &str = "DTENGE_PIPELINE_CHILD";
    /// The signal `std::process::abort` raises (SIGABRT, 6 on Linux and macOS).
    const SIGABRT: i32 = 6;

    /// A clock that fails on the settle thread: a panic there, in the middle of the stage
    /// (`settle_begin` reads the time first thing, holding the gate).
    struct FailsWhileSettling(ManualClock);

    impl Clock for FailsWhileSettling {
        fn now_ms(&self) -> u64 {
            if std::thread::current().name() == Some("dtenge-settle") {
                panic!("the clock fails while a batch settles");
            }
            self.0.now_ms()
        }
    }

    /// The child's part: open a network, break `what`, submit a payment from steppe's own
    /// account through the pipeline and wait. The answer is printed, which a child that
    /// stopped never does.
    fn child(what: &str) {
        let clock = ManualClock::new(1_790_000_000_000);
        let clock: Arc<dyn Clock> = match what {
            "settle" => Arc::new(FailsWhileSettling(clock)),
            _ => Arc::new(clock),
        };
        let network = Network::open_simulated(
            dtenge_store::SimDisk::new(),
            &NetworkConfig::standard(),
            clock,
            Entropy::from_seed(3),
        );
        let network = Arc::new(network.expect("opens"));
        let own = network.slot("steppe").expect("a bank").state.lock().own_account().expect("its own").address;
        let stranger = SecretKey::from_seed([77; 32]).address();
        if what == "check" {
            // The invariant broken on purpose: the directory names an account its node lacks.
            network.ids.write().directory.insert(stranger, "steppe".into());
        }
        let (issuer, amount) = (network.issuer(), Amount::from_tiyn(100).expect("an amount"));
        let input = Input { tx_id: TxId(Hash32([1; 32])), index: 0, output: Output::standard(amount, own, issuer) };
        let outputs = vec![Output::standard(amount, stranger, issuer)];
        let tx = Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input], outputs, nonce: 1 });
        let submission = Submission { node: "steppe".into(), tx, idem: None };
        let answer = network.pipeline().expect("starts").submit_wait(submission);
        println!("answered: {answer:?}");
    }

    /// Run the test `name` again in a child process that breaks `what`; its output.
    fn run_child(name: &str, what: &str) -> std::process::Output {
        let test_binary = std::env::current_exe().expect("the test binary's path");
        std::process::Command::new(test_binary)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, what)
            .output()
            .expect("the child runs")
    }

    /// The child was stopped by `abort`, after the panic's message and the stage's word.
    fn assert_stopped(out: &std::process::Output, stage: &str, message: &str) {
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "the child went on: {stdout}\n{stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(SIGABRT), "{stdout}\n{stderr}");
        }
        assert!(stderr.contains(message), "the panic's message is on stderr: {stderr}");
        assert!(
            stderr.contains(&format!("{stage}: a failed assertion on the payment path stops the process")),
            "{stderr}"
        );
        assert!(!stdout.contains("answered"), "no answer comes from a stopped process: {stdout}");
    }

    /// Before: the check stage caught the panic and answered the batch `INTERNAL`, and went on.
    #[test]
    fn a_failed_assertion_on_the_check_thread_stops_the_process() {
        if std::env::var(CHILD_ENV).as_deref() == Ok("check") {
            return child("check");
        }
        let out = run_child("pipeline::tests::a_failed_assertion_on_the_check_thread_stops_the_process", "check");
        assert_stopped(&out, "dtenge-check", "the directory and the node agree on every address");
    }

    /// Before: the settle stage answered `INTERNAL` and stopped the pipeline, but the process,
    /// its API and its custodial payments went on with a poisoned network.
    #[test]
    fn a_panic_on_the_settle_thread_stops_the_process() {
        if std::env::var(CHILD_ENV).as_deref() == Ok("settle") {
            return child("settle");
        }
        let out = run_child("pipeline::tests::a_panic_on_the_settle_thread_stops_the_process", "settle");
        assert_stopped(&out, "dtenge-settle", "the clock fails while a batch settles");
    }
}
