//! Payments from this bank's clients: queued, taken in batches, checked, attested with one
//! signature, written to the outbox, sent to the notary with one signature.

use crate::state::IDEM_TABLE;
use crate::state::{idem_of, outbox_batch, IdemState, Inner, OutboxEntry, Pending, NOT_SENT};
use crate::verify::{signature_items, verify_all, SignatureItem};
use crate::{BankService, Committed, IdemKey, Reply, Request, BATCHES_SENDING_MAX, BATCH_TXS_MAX, OUTBOX_BATCHES_MAX};
use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::Address;
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{check_structure_ids, TxIds};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::WriteBatch;
use dtenge_wire::{Envelope, Message, NotarizeRequest, RoleId};

/// A submission waiting in the queue.
pub(crate) struct Submission {
    pub(crate) request: Request,
    /// What the history calls it (checked by `submit_labelled`).
    pub(crate) label: Option<crate::Label>,
    pub(crate) idem: Option<IdemKey>,
    pub(crate) answer: Reply,
}

/// A transaction that passed the bank's own checks, its inputs reserved.
pub(crate) struct Admitted {
    pub(crate) tx: Transaction,
    pub(crate) ids: TxIds,
    pub(crate) idem: Option<IdemKey>,
    pub(crate) answer: Reply,
    pub(crate) payee_banks: Vec<String>,
    pub(crate) fiat: Option<crate::conversion::FiatMove>,
    /// A card or voucher flow's leg (`cards`, `vouchers`), applied with the certified payment.
    pub(crate) card: Option<crate::cards::CardLeg>,
    /// A custodial payment's purpose and reference for the history (`label`).
    pub(crate) label: Option<crate::Label>,
    /// The client's custodial key, when the transaction is still to be signed with it: signed
    /// outside the bank's lock ([`BankService::attest_and_verify`]).
    pub(crate) owner_key: Option<dtenge_core::crypto::SecretKey>,
}

impl BankService {
    /// Take every submission waiting, in batches of at most [`BATCH_TXS_MAX`]: the bank's
    /// worker calls this whenever the queue is not empty (the simulator and the tests call it
    /// themselves).
    ///
    /// Pacing: it sends a new batch only while fewer than [`BATCHES_SENDING_MAX`] are at the
    /// notary; the rest waits in the queue until an answer arrives (then the caller flushes
    /// again). Under load the batches so grow to [`BATCH_TXS_MAX`] instead of the notary's
    /// backlog growing, and each of its commits covers many transactions.
    pub fn flush(&self, now_ms: u64) {
        loop {
            if self.inner.lock().outbox.len() >= BATCHES_SENDING_MAX {
                return;
            }
            let batch: Vec<Submission> = {
                let mut queue = self.queue.lock();
                let take = queue.len().min(BATCH_TXS_MAX);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                return;
            }
            self.process(batch, now_ms);
        }
    }

    /// One batch, in steps that hold the role's lock only to read or change its state: the
    /// signature checks and the durable write run without it, so the bank's inbox (the
    /// notary's answers, deliveries) goes on meanwhile and both cores work.
    fn process(&self, submissions: Vec<Submission>, now_ms: u64) {
        assert!(submissions.len() <= BATCH_TXS_MAX, "a batch is bounded");
        let refusal = {
            let inner = self.inner.lock();
            match inner.ensure_running() {
                Err(e) => Some(e),
                Ok(()) if inner.outbox.len() >= OUTBOX_BATCHES_MAX => {
                    Some(Error::new(ErrorCode::LimitExceeded, "the bank has too many batches at the notary; retry"))
                }
                Ok(()) => None,
            }
        };
        if let Some(e) = refusal {
            for s in submissions {
                s.answer.send(Err(e.clone()));
            }
            return;
        }
        let prechecked = self.precheck(submissions);
        self.learn_payee_banks(&prechecked);
        let candidates = {
            let mut inner = self.inner.lock();
            inner.cards.observe(now_ms);
            let mut candidates = Vec::with_capacity(prechecked.len());
            for (submission, ids) in prechecked {
                let answer = submission.answer.clone();
                match self.admit(&mut inner, submission, ids) {
                    Ok(Some(admitted)) => candidates.push(admitted),
                    Ok(None) => {}
                    Err(e) => answer.send(Err(e)),
                }
            }
            candidates
        };
        let verdicts = self.attest_and_verify(candidates);
        let mut inner = self.inner.lock();
        let accepted = self.drop_refused(&mut inner, verdicts);
        if accepted.is_empty() {
            return;
        }
        let Some((batch_no, commit)) = self.write_batch(&mut inner, accepted) else { return };
        drop(inner);
        let durable = commit.wait();
        let mut inner = self.inner.lock();
        self.batch_written(&mut inner, batch_no, durable, now_ms);
    }

    /// Ask the directory in another process where the batch's payees are, before the lock:
    /// its client keeps each answer, and [`Self::payee_banks`] then reads them from memory
    /// under the lock. Why not ask under the lock: the answer comes through this bank's inbox,
    /// which needs the lock for whatever came in before it (the notary's answers, deliveries
    /// from other banks), so a question asked under the lock waited out its whole limit (5 s)
    /// whenever anything else came in meanwhile, and the payment was refused
    /// `REQUEST_IN_PROGRESS` (a third of the payments between banks under `dtenge bench
    /// --cluster`). A question that fails here is asked again under the lock, and a payment
    /// refused as before.
    fn learn_payee_banks(&self, prechecked: &[(Submission, Option<TxIds>)]) {
        if !self.directory.asks_across_processes() {
            return;
        }
        let mut owners: Vec<Address> = {
            let inner = self.inner.lock();
            let owners = prechecked.iter().flat_map(|(s, _)| match &s.request {
                Request::Signed(tx) => tx.body.outputs.iter().map(|o| o.owner).collect::<Vec<_>>(),
                Request::Pay { payees, .. } => payees.iter().map(|(a, _)| *a).collect(),
                _ => Vec::new(),
            });
            // This bank's own accounts (the change, its own clients) need no question.
            owners.filter(|owner| inner.node.locate(owner).is_none()).collect()
        };
        owners.sort_unstable();
        owners.dedup();
        // Bounded by the batch's payees; the questions by the client's own time limit.
        self.directory.learn_banks(&owners);
    }

    /// The checks that need no state, before the lock: a client-signed transfer's ids, and its
    /// owners' signatures, verified as one batch. A transfer whose signature fails is refused
    /// `INVALID_SIGNATURE` whatever its inputs are (a request without its owner's signature
    /// learns nothing about the tokens it names).
    fn precheck(&self, submissions: Vec<Submission>) -> Vec<(Submission, Option<TxIds>)> {
        let mut memo = dtenge_core::merkle::InnerMemo::default();
        let mut verdicts: Vec<Result<(Option<TxIds>, Vec<SignatureItem>)>> = submissions
            .iter()
            .map(|s| match &s.request {
                Request::Signed(tx) => {
                    let ids = TxIds::of(tx)?;
                    let items = signature_items(tx, &ids.tx_id, &mut memo, true, None)?;
                    // Attestations are checked after the bank adds its own.
                    let witnesses = items.into_iter().take(tx.witnesses.len()).collect();
                    Ok((Some(ids), witnesses))
                }
                Request::Pay { .. } | Request::PayPhone { .. } | Request::Convert { .. } => Ok((None, Vec::new())),
                Request::Card(_) | Request::Voucher(_) | Request::Consolidate { .. } => Ok((None, Vec::new())),
            })
            .collect();
        verify_all(&mut verdicts, |(_, items): &(Option<TxIds>, Vec<SignatureItem>)| items.as_slice(), &self.key_cache);
        let mut prechecked = Vec::with_capacity(submissions.len());
        for (submission, verdict) in submissions.into_iter().zip(verdicts) {
            match verdict {
                Ok((ids, _)) => prechecked.push((submission, ids)),
                Err(e) => submission.answer.send(Err(e)),
            }
        }
        prechecked
    }

    /// One submission's own checks, its inputs reserved; `Ok(None)` when it is answered already
    /// (the same request at the notary now, or committed), its answer registered.
    fn admit(&self, inner: &mut Inner, submission: Submission, ids: Option<TxIds>) -> Result<Option<Admitted>> {
        let Submission { request, label, idem, answer } = submission;
        if let Some(idem) = &idem {
            crate::cards::check_caller_key(&request, idem)?;
            if self.answered_by_key(inner, idem, &answer)? {
                return Ok(None);
            }
        }
        let label = label.or_else(|| crate::Label::default_of(&request));
        let mut admitted = match request {
            Request::Signed(tx) => {
                let ids = ids.expect("a client-signed transfer was prechecked with its ids");
                self.admit_signed(inner, tx, ids, idem, answer)?
            }
            Request::Pay { client_id, payees } => Some(self.admit_payment(inner, &client_id, &payees, idem, answer)?),
            Request::PayPhone { client_id, phone, bank, amount } => {
                let to = self.payee_of_phone(&phone, bank.as_deref())?;
                Some(self.admit_payment(inner, &client_id, &[(to, amount)], idem, answer)?)
            }
            Request::Convert { client_id, direction, amount } => {
                let (tx, fiat) = self.prepare_conversion(inner, &client_id, direction, amount)?;
                let ids = TxIds::of(&tx)?;
                Some(Admitted {
                    tx,
                    ids,
                    idem,
                    answer,
                    payee_banks: Vec::new(),
                    fiat: Some(fiat),
                    card: None,
                    label: None,
                    owner_key: None,
                })
            }
            Request::Card(card) => Some(self.admit_card(inner, card, idem, answer)?),
            Request::Voucher(event) => Some(self.admit_voucher(inner, event, idem, answer)?),
            Request::Consolidate { client_id } => Some(self.admit_consolidation(inner, &client_id, idem, answer)?),
        };
        if let Some(admitted) = &mut admitted {
            // A conversion's or a card's history says what it is; a payment says its label.
            if admitted.fiat.is_none() && admitted.card.is_none() {
                admitted.label = label;
            }
        }
        if let Some(Admitted { ids, idem: Some(idem), .. }) = &admitted {
            // Claimed now, so that the same key twice in one batch pays once.
            inner.idem_in_flight.insert(idem.key.clone(), (idem.fingerprint, ids.tx_id));
        }
        Ok(admitted)
    }

    /// Is the request with this key answered already (in flight: `answer` waits with it;
    /// committed: `answer` gets the first answer)? The same key with another request is
    /// refused. Payments and redemptions share one key space.
    pub(crate) fn answered_by_key(&self, inner: &mut Inner, idem: &IdemKey, answer: &Reply) -> Result<bool> {
        let reused = || {
            Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            )
        };
        if let Some((fingerprint, tx_id)) = inner.idem_in_flight.get(&idem.key) {
            if *fingerprint != idem.fingerprint {
                return Err(reused());
            }
            let tx_id = *tx_id;
            inner.waiters.entry(tx_id).or_default().push(answer.clone());
            return Ok(true);
        }
        let Some(bytes) = self.store.get(IDEM_TABLE, idem.key.as_bytes())? else { return Ok(false) };
        let (fingerprint, state) = idem_of(&bytes)?;
        if fingerprint != idem.fingerprint {
            return Err(reused());
        }
        match state {
            IdemState::Committed(committed) => {
                answer.send(Ok(committed));
                Ok(true)
            }
            IdemState::InFlight(_) => {
                unreachable!("a key in flight on disk is in flight in memory (loaded with the outbox)")
            }
        }
    }

    /// The first answer to the request under `idem`, when it committed: a caller that must
    /// rebuild that answer (a gateway's receipt) reads it before it checks the request again,
    /// so that a retry gets the first answer whatever changed since. `None` when the key is
    /// new, or its request is still in flight (submitting it again waits for that answer). The
    /// same key with another request is refused `IDEMPOTENCY_KEY_REUSED`.
    pub fn committed_answer(&self, idem: &IdemKey) -> Result<Option<Committed>> {
        let reused = || {
            Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            )
        };
        let inner = self.inner.lock();
        if let Some((fingerprint, _)) = inner.idem_in_flight.get(&idem.key) {
            return if *fingerprint == idem.fingerprint { Ok(None) } else { Err(reused()) };
        }
        let Some(bytes) = self.store.get(IDEM_TABLE, idem.key.as_bytes())? else { return Ok(None) };
        let (fingerprint, state) = idem_of(&bytes)?;
        if fingerprint != idem.fingerprint {
            return Err(reused());
        }
        match state {
            IdemState::Committed(committed) => Ok(Some(committed)),
            IdemState::InFlight(_) => {
                unreachable!("a key in flight on disk is in flight in memory (loaded with the outbox)")
            }
        }
    }

    fn admit_signed(
        &self,
        inner: &mut Inner,
        tx: Transaction,
        ids: TxIds,
        idem: Option<IdemKey>,
        answer: Reply,
    ) -> Result<Option<Admitted>> {
        if let Some(&seq) = inner.recent_index.get(&ids.tx_id) {
            answer.send(Ok(Committed { tx_id: ids.tx_id, seq }));
            return Ok(None);
        }
        if inner.in_outbox.contains_key(&ids.tx_id) {
            inner.waiters.entry(ids.tx_id).or_default().push(answer);
            return Ok(None);
        }
        // The same transaction admitted a moment ago, not in the outbox yet (earlier in this
        // batch, or in one being attested): its inputs are reserved for it. Not a double spend
        // of the client's own payment: in progress, as the network answered.
        if ids.inputs.first().is_some_and(|id| inner.node.reserved_by(id) == Some(ids.tx_id)) {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                format!("transaction {} is being committed; ask again", ids.tx_id),
            ));
        }
        inner.node.check_client_transaction_ids(&tx, &ids.inputs)?;
        let payee_banks = self.payee_banks(inner, tx.body.outputs.iter().map(|o| &o.owner))?;
        inner.node.reserve_inputs(&ids.tx_id, &ids.inputs)?;
        Ok(Some(Admitted { tx, ids, idem, answer, payee_banks, fiat: None, card: None, label: None, owner_key: None }))
    }

    fn admit_payment(
        &self,
        inner: &mut Inner,
        client_id: &str,
        payees: &[(Address, Amount)],
        idem: Option<IdemKey>,
        answer: Reply,
    ) -> Result<Admitted> {
        let payee_banks = self.payee_banks(inner, payees.iter().map(|(a, _)| a))?;
        let issuer = self.anchors.read().issuer;
        // A nonce per attempt, as for cards (`CardState::next_nonce`): a payment the notary
        // refused for good while its bank was blocked, asked again after the block is lifted,
        // would otherwise be the same transaction, with the same inputs, refused again.
        let nonce = inner.cards.next_nonce();
        // Signed outside the lock, and attested with the batch (`attest_and_verify`): two
        // signatures per payment fewer under the lock the inbox needs too.
        let (tx, key) = inner.node.prepare_payment_unsigned(client_id, payees, issuer, nonce)?;
        let ids = TxIds::of(&tx)?;
        let owner_key = Some(key);
        Ok(Admitted { tx, ids, idem, answer, payee_banks, fiat: None, card: None, label: None, owner_key })
    }

    /// A consolidation of the client's tokens: its own tokens to itself, so no other bank is
    /// told; signed outside the lock and attested with the batch, as a payment.
    fn admit_consolidation(
        &self,
        inner: &mut Inner,
        client_id: &str,
        idem: Option<IdemKey>,
        answer: Reply,
    ) -> Result<Admitted> {
        let issuer = self.anchors.read().issuer;
        // A nonce per attempt, as a payment's (`admit_payment`).
        let nonce = inner.cards.next_nonce();
        let (tx, key) = inner.node.prepare_consolidation_unsigned(client_id, issuer, nonce)?;
        let ids = TxIds::of(&tx)?;
        Ok(Admitted {
            tx,
            ids,
            idem,
            answer,
            payee_banks: Vec::new(),
            fiat: None,
            card: None,
            label: None,
            owner_key: Some(key),
        })
    }

    /// The account a phone transfer pays: the directory's answer, found now.
    fn payee_of_phone(&self, phone: &str, bank: Option<&str>) -> Result<Address> {
        let phone = dtenge_node::ids::normalize_phone(phone)?;
        Ok(self.find(crate::Who::Phone(&phone), bank)?.address)
    }

    /// The account the directory lists for `who`; `UNKNOWN_ACCOUNT` when none.
    pub(crate) fn find(&self, who: crate::Who<'_>, bank: Option<&str>) -> Result<crate::Found> {
        self.directory.find(who, bank)?.ok_or_else(|| {
            let at = bank.map(|b| format!(" at '{b}'")).unwrap_or_default();
            let whom = match who {
                crate::Who::Phone(phone) => format!("registered to {phone}"),
                crate::Who::Client(client) => format!("of client {client}"),
            };
            Error::new(ErrorCode::UnknownAccount, format!("no digital account is {whom}{at}"))
        })
    }

    /// The other banks holding the accounts `owners` names (the change and this bank's own
    /// clients need none); an owner nobody holds is refused.
    pub(crate) fn payee_banks<'a>(
        &self,
        inner: &Inner,
        owners: impl Iterator<Item = &'a Address>,
    ) -> Result<Vec<String>> {
        let mut banks: Vec<String> = Vec::new();
        for owner in owners {
            if inner.node.locate(owner).is_some() {
                continue;
            }
            let Some(bank) = self.directory.bank_of(owner)? else {
                return Err(Error::new(ErrorCode::UnknownAccount, format!("no digital account has address {owner}")));
            };
            if self.anchors.read().blocked.contains(&bank) {
                return Err(Error::new(
                    ErrorCode::BankBlocked,
                    format!("the payee's bank '{bank}' is blocked by the NBK operator"),
                ));
            }
            if !banks.contains(&bank) {
                banks.push(bank);
            }
        }
        Ok(banks)
    }

    /// Attest the candidates with one signature, then check each completely: the stateless
    /// rules, and the attestations but the bank's own, verified as one batch (one by one only
    /// when the batch fails, to find the bad ones). The owners' signatures of client-signed
    /// transfers were verified before admission; those of custodial payments are the bank's
    /// own. Runs without the lock.
    fn attest_and_verify(&self, mut candidates: Vec<Admitted>) -> Vec<(Admitted, Result<()>)> {
        if candidates.is_empty() {
            return Vec::new();
        }
        let ids: Vec<TxId> = candidates.iter().map(|c| c.ids.tx_id).collect();
        for candidate in candidates.iter_mut() {
            if let Some(key) = candidate.owner_key.take() {
                candidate.tx.sign_owner(&key);
            }
        }
        {
            let mut txs: Vec<&mut Transaction> = candidates.iter_mut().map(|c| &mut c.tx).collect();
            Transaction::attest_batch_ids(&mut txs, &ids, &self.key);
        }
        let anchors = self.anchors.read().clone();
        let me = self.key.public_key();
        let mut memo = dtenge_core::merkle::InnerMemo::default();
        let mut verdicts: Vec<Result<Vec<SignatureItem>>> = candidates
            .iter()
            .map(|c| {
                check_structure_ids(&c.tx, c.ids.clone(), &anchors)?;
                signature_items(&c.tx, &c.ids.tx_id, &mut memo, false, Some(&me))
            })
            .collect();
        verify_all(&mut verdicts, |items| items, &self.key_cache);
        candidates.into_iter().zip(verdicts.into_iter().map(|v| v.map(|_| ()))).collect()
    }

    /// Release what the checks refused and answer it; the rest goes on.
    fn drop_refused(&self, inner: &mut Inner, verdicts: Vec<(Admitted, Result<()>)>) -> Vec<Admitted> {
        let mut accepted = Vec::with_capacity(verdicts.len());
        for (candidate, verdict) in verdicts {
            match verdict {
                Ok(()) => accepted.push(candidate),
                Err(e) => {
                    inner.node.release(&candidate.tx);
                    if let Some(fiat) = &candidate.fiat {
                        inner.fiat_reserved.release(fiat);
                    }
                    if let Some(leg) = &candidate.card {
                        inner.cards.answered(leg, false);
                    }
                    if let Some(idem) = &candidate.idem {
                        inner.idem_in_flight.remove(&idem.key);
                    }
                    // The same key again in this batch (a tap sent twice, a client asking
                    // again) waits on this transaction since its admission: it gets the same
                    // answer (seed 37410: a tap's second copy waited for ever).
                    for waiter in inner.waiters.remove(&candidate.ids.tx_id).unwrap_or_default() {
                        waiter.send(Err(e.clone()));
                    }
                    candidate.answer.send(Err(e));
                }
            }
        }
        accepted
    }

    /// Hand the batch to the store, in the order of batch numbers, and list it in the outbox as
    /// not yet sent: nothing goes to the notary before the batch is durable (`tick` skips it
    /// meanwhile). `None` when the store refused it at once.
    ///
    /// Its idempotency keys are in flight from here: each outbox entry holds its key, and a
    /// restart takes the keys of the entries still in the outbox as in flight again
    /// (`Inner::load`). So no key row is written here (an in-flight row would say the same
    /// thing again): the batch is log records only, one journal `fdatasync`, where a key row
    /// cost fjall's `fsync` as well. The key's row is written when it is answered: committed
    /// (with the answer) or deleted (refused).
    fn write_batch(&self, inner: &mut Inner, accepted: Vec<Admitted>) -> Option<(u64, dtenge_store::PendingCommit)> {
        let batch_no = inner.next_batch;
        let mut entries = Vec::with_capacity(accepted.len());
        let mut ids = Vec::with_capacity(accepted.len());
        let mut answers = Vec::with_capacity(accepted.len());
        let mut batch = WriteBatch::new();
        for admitted in accepted {
            entries.push(OutboxEntry {
                tx: admitted.tx,
                idem: admitted.idem,
                payee_banks: admitted.payee_banks,
                fiat: admitted.fiat,
                card: admitted.card,
                label: admitted.label,
            });
            ids.push(admitted.ids);
            answers.push(admitted.answer);
        }
        // Its number is the highest the outbox log holds: the next number follows from it.
        outbox_batch(&mut batch, batch_no, &entries);
        inner.next_batch = batch_no + 1;
        for (tx_ids, answer) in ids.iter().zip(answers) {
            inner.in_outbox.insert(tx_ids.tx_id, batch_no);
            inner.waiters.entry(tx_ids.tx_id).or_default().push(answer);
        }
        inner.outbox.insert(batch_no, Pending::new(entries, ids, NOT_SENT));
        batch.append(std::mem::take(&mut inner.acked));
        Some((batch_no, self.store.commit_async(batch)))
    }

    /// The batch's write finished: durable, it goes to the notary; failed, the role stops
    /// (its memory may no longer match its disk) and the batch's clients are told.
    fn batch_written(&self, inner: &mut Inner, batch_no: u64, durable: Result<()>, now_ms: u64) {
        if let Err(e) = durable {
            inner.failed = true;
            let pending = inner.outbox.remove(&batch_no).expect("a batch being written is in the outbox");
            for (entry, ids) in pending.entries.iter().zip(&pending.ids) {
                inner.node.release(&entry.tx);
                if let Some(fiat) = &entry.fiat {
                    inner.fiat_reserved.release(fiat);
                }
                if let Some(leg) = &entry.card {
                    inner.cards.answered(leg, false);
                }
                if let Some(idem) = &entry.idem {
                    inner.idem_in_flight.remove(&idem.key);
                }
                inner.in_outbox.remove(&ids.tx_id);
                for waiter in inner.waiters.remove(&ids.tx_id).unwrap_or_default() {
                    waiter.send(Err(e.clone()));
                }
            }
            return;
        }
        let pending = inner.outbox.get_mut(&batch_no).expect("a written batch is in the outbox until answered");
        assert_eq!(pending.sent_at_ms, NOT_SENT, "a batch is sent after its write");
        pending.sent_at_ms = now_ms;
        inner.stats.batches_sent += 1;
        self.send_request(inner, batch_no);
    }

    pub(crate) fn send_request(&self, inner: &Inner, batch_no: u64) {
        let pending = &inner.outbox[&batch_no];
        let compact: Vec<CompactTx> = pending.ids.iter().map(CompactTx::of).collect();
        let signature = self.key.sign(&notarize_message(batch_no, &dtenge_core::merkle::root(&pending.leaves)).0);
        let request = NotarizeRequest { batch: batch_no, txs: compact, signature };
        // A send that fails is a loss like any other: `tick` sends the batch again.
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: RoleId::Notary,
            message: Message::NotarizeRequest(request),
        });
    }
}
