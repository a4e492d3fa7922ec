//! The notary's answer to a batch: applied with its deliveries in one commit.

use crate::state::{outbox_batch, outbox_done, outbox_snapshot, IdemState, Inner, OutboxEntry, Pending};
use crate::{AfterCommit, BankService, Committed, TxAnswer};
use dtenge_core::certificate::CommitProof;
use dtenge_core::tx::Transaction;
use dtenge_core::{Error, ErrorCode};
use dtenge_node::Purpose;
use dtenge_store::WriteBatch;
use dtenge_wire::{NotarizeReply, Outcome, Payload, RoleId};
use std::collections::BTreeMap;

/// The notary's answer, checked: per transaction, its proof or its refusal.
enum Checked {
    Committed(CommitProof),
    Refused(Error),
    /// Being committed by another request: keep it and ask again.
    Again,
}

/// Whether a reply's certificate is the notary's: checked before the role's lock is taken
/// ([`Signed::of`]), so that the Ed25519 check does not hold up the bank's other steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signed {
    /// Signed by the notary's key, or no certificate (every transaction refused).
    ByTheNotary,
    NotByTheNotary,
}

impl Signed {
    pub(crate) fn of(reply: &NotarizeReply, notary: &dtenge_core::crypto::PublicKey) -> Signed {
        match &reply.certificate {
            Some(certificate) if certificate.verify_signature(notary).is_err() => Signed::NotByTheNotary,
            Some(_) | None => Signed::ByTheNotary,
        }
    }
}

/// What one answer changes, planned before its durable commit.
struct Planned {
    deltas: Vec<dtenge_node::Delta>,
    sends: Vec<dtenge_delivery::Planned>,
    kept: Vec<usize>,
}

impl BankService {
    /// Apply the notary's answer to a batch: planned, committed and applied in memory under
    /// the role's lock; what it owes once durable (the clients' answers, the deliveries) is
    /// returned for [`BankService::finish_commit`], called without the lock.
    pub(crate) fn on_reply(
        &self,
        inner: &mut Inner,
        reply: NotarizeReply,
        signed: Signed,
        now_ms: u64,
    ) -> Option<AfterCommit> {
        let pending = inner.outbox.get(&reply.batch)?;
        let checked = self.check_reply(pending, &reply, signed)?;
        let pending = inner.outbox.remove(&reply.batch).expect("found above");
        let mut batch = WriteBatch::new();
        let mut planned = self.plan_reply(inner, &pending, &reply, &checked, &mut batch, now_ms);
        let durable = self.commit_async(inner, batch);
        let sends = std::mem::take(&mut planned.sends);
        let seq = reply.certificate.map(|c| c.seq);
        let answered = self.apply_reply(inner, (reply.batch, seq), pending, checked, planned);
        Some(AfterCommit { durable, answered, sends, ack: None, delivered: None })
    }

    /// The reply belongs to this batch and its certificate and proofs hold; `None` when it
    /// must be ignored (the batch is sent again later).
    fn check_reply(&self, pending: &Pending, reply: &NotarizeReply, signed: Signed) -> Option<Vec<Checked>> {
        if reply.outcomes.len() != pending.entries.len() {
            return None;
        }
        if signed == Signed::NotByTheNotary {
            return None;
        }
        let mut checked = Vec::with_capacity(reply.outcomes.len());
        // The batch's transactions are consecutive leaves: their paths share most inner nodes.
        let mut memo = dtenge_core::merkle::InnerMemo::default();
        for (outcome, leaf) in reply.outcomes.iter().zip(&pending.leaves) {
            checked.push(match outcome {
                Outcome::Committed(proof) => {
                    let certificate = reply.certificate.as_ref()?;
                    certificate.covers_memo(leaf, proof, &mut memo).ok()?;
                    Checked::Committed(proof.clone())
                }
                // Not decided at the notary (being committed, or its store failed): ask again.
                Outcome::Refused(e) if matches!(e.code, ErrorCode::RequestInProgress | ErrorCode::StorageFailure) => {
                    Checked::Again
                }
                Outcome::Refused(e) => Checked::Refused(e.clone()),
            });
        }
        Some(checked)
    }

    /// Plan the answer's writes: this bank's side of every committed transaction, its
    /// deliveries, the keys' answers, and what stays in the outbox.
    fn plan_reply(
        &self,
        inner: &mut Inner,
        pending: &Pending,
        reply: &NotarizeReply,
        checked: &[Checked],
        batch: &mut WriteBatch,
        now_ms: u64,
    ) -> Planned {
        let mut deltas = Vec::new();
        let mut deliveries: BTreeMap<String, Vec<(Transaction, CommitProof)>> = BTreeMap::new();
        let mut kept = Vec::new();
        let mut fiat_after = crate::conversion::FiatAfter::default();
        let mut card_plan = crate::cards::CardPlan::answering(reply.certificate.as_ref().map_or(0, |c| c.seq));
        for (index, outcome) in checked.iter().enumerate() {
            let (entry, ids) = (&pending.entries[index], &pending.ids[index]);
            match outcome {
                Checked::Committed(proof) => {
                    let tx = &entry.tx;
                    let (mut purpose, mut reference) = match (&entry.fiat, &entry.label) {
                        (Some(fiat), _) => (fiat.purpose(), None),
                        (None, Some(label)) => (label.purpose, label.reference.clone()),
                        (None, None) => (Purpose::Payment, None),
                    };
                    if let Some(leg) = &entry.card {
                        purpose = leg.purpose();
                        reference = Some(leg.reference());
                    }
                    let mut delta = inner
                        .node
                        .plan_commit_ids(
                            tx,
                            &ids.tx_id,
                            &ids.inputs,
                            &ids.outputs,
                            purpose,
                            reference.as_deref(),
                            now_ms,
                        )
                        .unwrap_or_else(|e| panic!("a committed transaction the bank checked cannot be planned: {e}"));
                    if let Some(fiat) = &entry.fiat {
                        delta.set_fiat(&fiat.client_id, fiat_after.apply(inner, fiat));
                    }
                    if let Some(leg) = &entry.card {
                        let legs =
                            crate::cards::Legs { delta: &mut delta, fiat_after: &mut fiat_after, plan: &mut card_plan };
                        self.plan_card_leg(inner, leg, &ids.tx_id, legs, batch, now_ms);
                    }
                    delta
                        .writes(&inner.node, batch)
                        .unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
                    dtenge_node::archive(&[self.id()], &ids.tx_id, tx, batch)
                        .unwrap_or_else(|e| panic!("a transaction cannot be archived: {e}"));
                    deltas.push(delta);
                    if let (Some(idem), Some(certificate)) = (&entry.idem, &reply.certificate) {
                        let committed = Committed { tx_id: ids.tx_id, seq: certificate.seq };
                        crate::state::plan_idem(batch, idem, IdemState::Committed(committed), now_ms);
                    }
                    for bank in &entry.payee_banks {
                        deliveries.entry(bank.clone()).or_default().push((tx.clone(), proof.clone()));
                    }
                }
                // A refused payment's key leaves no row: none was written while it was in
                // flight (its outbox entry held it), and a refusal is not kept, so the key
                // may be used again (`submit::write_batch`).
                Checked::Refused(_) => {}
                Checked::Again => kept.push(index),
            }
        }
        let mut sends = Vec::new();
        for (bank, txs) in deliveries {
            let certificate = reply.certificate.clone().expect("a committed outcome comes with its certificate");
            sends.push(inner.outbound.plan(RoleId::Bank(bank), Payload::Certified { certificate, txs }, batch));
        }
        sends.extend(self.finish_card_plan(inner, card_plan, batch));
        let kept_entries: Vec<OutboxEntry> = kept.iter().map(|&i| pending.entries[i].clone()).collect();
        if kept_entries.is_empty() {
            outbox_done(batch, reply.batch);
        } else {
            outbox_batch(batch, reply.batch, &kept_entries);
        }
        inner.answered_since_snapshot += 1;
        if inner.answered_since_snapshot >= inner.outbox_snapshot_every {
            // The answered batch is out of `inner.outbox` and what stays of it is written
            // above, in this group's row: the snapshot keeps it.
            outbox_snapshot(batch, inner.next_batch, &inner.outbox);
            inner.answered_since_snapshot = 0;
        }
        Planned { deltas, sends, kept }
    }

    /// Apply the answer in memory, in the order its commit will be on disk; the clients'
    /// answers are returned, to be sent once the commit is durable. `answered` is the
    /// batch's number and its certificate's, if any transaction committed.
    fn apply_reply(
        &self,
        inner: &mut Inner,
        (batch_no, seq): (u64, Option<u64>),
        mut pending: Pending,
        checked: Vec<Checked>,
        planned: Planned,
    ) -> Vec<TxAnswer> {
        let Planned { deltas, kept, .. } = planned;
        if !deltas.is_empty() {
            // Published before the clients below are answered (`figures`).
            inner.apply_certified(deltas, seq.expect("a committed transaction comes with its certificate"));
        }
        let mut answered = Vec::with_capacity(checked.len());
        for (index, outcome) in checked.into_iter().enumerate() {
            let tx_id = pending.ids[index].tx_id;
            let answer = match outcome {
                Checked::Again => continue,
                Checked::Committed(_) => {
                    let seq = seq.expect("a committed outcome comes with its certificate");
                    Ok(Committed { tx_id, seq })
                }
                Checked::Refused(e) => {
                    inner.node.release(&pending.entries[index].tx);
                    Err(e)
                }
            };
            if let Some(fiat) = &pending.entries[index].fiat {
                // Committed: the move is in the balance now; refused: nothing moved.
                inner.fiat_reserved.release(fiat);
            }
            if let Some(leg) = &pending.entries[index].card {
                inner.cards.answered(leg, answer.is_ok());
            }
            let idem_key = pending.entries[index].idem.as_ref().map(|idem| idem.key.clone());
            answered.push(TxAnswer { tx_id, answer, idem_key, from_outbox: true });
        }
        if !kept.is_empty() {
            pending.entries = kept.iter().map(|&i| pending.entries[i].clone()).collect();
            pending.ids = kept.iter().map(|&i| pending.ids[i].clone()).collect();
            pending.leaves = kept.iter().map(|&i| pending.leaves[i]).collect();
            inner.outbox.insert(batch_no, pending);
        }
        answered
    }
}
