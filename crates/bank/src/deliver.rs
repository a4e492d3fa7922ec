//! Deliveries: certified transactions from the banks that paid this bank's clients (and from
//! the NBK), applied in each sender's order, once each.

use crate::state::Inner;
use crate::verify::{signature_items, verify_all, SignatureItem};
use crate::{AfterCommit, BankService};
use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{CommitCertificate, CommitProof, CompactTx};
use dtenge_core::merkle::InnerMemo;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{check_structure_ids, TxIds};
use dtenge_core::Result;
use dtenge_node::Purpose;
use dtenge_store::WriteBatch;
use dtenge_wire::{Decision, Deliver, DeliverAck, Envelope, Message, Payload, RoleId};

impl BankService {
    /// A delivery: certified transactions are committed and applied in memory here, and
    /// acknowledged once durable ([`BankService::finish_commit`], from the returned value);
    /// the rest is handled whole.
    pub(crate) fn on_deliver(
        &self,
        inner: &mut Inner,
        from: RoleId,
        deliver: Deliver,
        checked: Option<Delivered>,
        now_ms: u64,
    ) -> Option<AfterCommit> {
        match inner.inbound.accept(&from, deliver.seq) {
            dtenge_delivery::Accept::Apply => {}
            dtenge_delivery::Accept::Duplicate { ack } => {
                // Acknowledged after the commit of the first copy (a step before this one,
                // perhaps not durable yet: see `BankService::pipeline`).
                let durable = self.store_ready();
                let (answered, sends) = (Vec::new(), Vec::new());
                return Some(AfterCommit { durable, answered, sends, ack: Some((from, ack)), delivered: None });
            }
            dtenge_delivery::Accept::Early => return None,
        }
        match deliver.payload {
            Payload::Certified { certificate, txs } => {
                let checked = checked.unwrap_or_else(|| self.check_certified(&certificate, &txs));
                return self.on_certified(inner, from, deliver.seq, &certificate, &txs, checked, now_ms);
            }
            Payload::Decision(decision) if from == RoleId::Central => {
                self.on_decision(inner, from, deliver.seq, decision)
            }
            // A decision from anyone but central: not applied, not acknowledged.
            Payload::Decision(_) => {}
            Payload::Card(notice) => self.on_card_notice(inner, from, deliver.seq, notice, now_ms),
        }
        None
    }

    /// The operator's decision: kept in the bank's store with its delivery number, then
    /// enforced (a blocked bank's attestations no longer pass this bank's checks).
    fn on_decision(&self, inner: &mut Inner, from: RoleId, seq: u64, decision: Decision) {
        let Decision::Blocked { bank, blocked, reason } = decision;
        let mut batch = WriteBatch::new();
        let key = crate::state::blocked_key(&bank);
        if blocked {
            batch.put(crate::state::BANK_META_TABLE, key, reason.into_bytes());
        } else {
            batch.delete(crate::state::BANK_META_TABLE, key);
        }
        inner.inbound.plan_applied(&from, seq, &mut batch);
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.inbound.applied(&from, seq);
        self.set_blocked(&bank, blocked);
        self.ack(&from, seq);
    }

    /// A certified delivery's checks that need none of the bank's state (the certificate's
    /// signature, each transaction's proof, stateless rules and attestations): made before
    /// the role's lock is taken, so that its Ed25519 checks do not hold up the bank's other
    /// steps.
    pub(crate) fn check_certified(
        &self,
        certificate: &CommitCertificate,
        txs: &[(Transaction, CommitProof)],
    ) -> Delivered {
        // A certified transaction completes whatever the operator decided since: a block
        // applies to what starts after it (the notary spends nothing new for a blocked bank).
        let mut anchors = self.anchors.read().clone();
        anchors.blocked.clear();
        if certificate.verify_signature(&anchors.notary).is_err() {
            return Delivered::NotByTheNotary;
        }
        let (mut memo, mut certified) = (InnerMemo::default(), InnerMemo::default());
        let mut verdicts: Vec<Result<(TxIds, Vec<SignatureItem>)>> = txs
            .iter()
            .map(|(tx, proof)| check_delivered(&anchors, certificate, tx, proof, (&mut memo, &mut certified)))
            .collect();
        verify_all(&mut verdicts, |(_, items)| items, &self.key_cache);
        Delivered::Checked(verdicts)
    }

    #[allow(clippy::too_many_arguments)] // The delivery's parts, as `on_deliver` took them apart.
    fn on_certified(
        &self,
        inner: &mut Inner,
        from: RoleId,
        seq: u64,
        certificate: &CommitCertificate,
        txs: &[(Transaction, CommitProof)],
        checked: Delivered,
        now_ms: u64,
    ) -> Option<AfterCommit> {
        let verdicts = match checked {
            Delivered::NotByTheNotary => {
                inner.stats.deliveries_rejected += txs.len() as u64;
                return None;
            }
            Delivered::Checked(verdicts) => verdicts,
        };
        assert_eq!(verdicts.len(), txs.len(), "a verdict per delivered transaction");
        let mut batch = WriteBatch::new();
        let mut deltas = Vec::new();
        let mut redeemed = Vec::new();
        let mut delivered = Vec::with_capacity(txs.len());
        for ((tx, _), verdict) in txs.iter().zip(verdicts) {
            let Ok((ids, _)) = verdict else {
                // Certified at the notary, refused here: the tokens stay unusable until the
                // operators look (reconciliation shows them), which is what a transaction no
                // validator would have passed deserves.
                inner.stats.deliveries_rejected += 1;
                continue;
            };
            let delta = inner
                .node
                .plan_commit_ids(tx, &ids.tx_id, &ids.inputs, &ids.outputs, purpose_of(tx), None, now_ms)
                .unwrap_or_else(|e| panic!("a validated delivery cannot be planned: {e}"));
            // One of this bank's redemptions, certified and posted by central: it ends with
            // this commit.
            redeemed.extend(self.plan_redeemed(inner, &ids.tx_id, certificate, &mut batch, now_ms));
            delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
            dtenge_node::archive(&[self.id()], &ids.tx_id, tx, &mut batch)
                .unwrap_or_else(|e| panic!("a transaction cannot be archived: {e}"));
            deltas.push(delta);
            delivered.push(ids.tx_id);
        }
        inner.inbound.plan_applied(&from, seq, &mut batch);
        let durable = self.commit_async(inner, batch);
        inner.apply_certified(deltas, certificate.seq);
        let answered = redeemed.into_iter().map(|answered| self.apply_redeemed(inner, answered)).collect();
        inner.stats.deliveries_applied += txs.len() as u64;
        inner.inbound.applied(&from, seq);
        let sends = Vec::new();
        Some(AfterCommit { durable, answered, sends, ack: Some((from, seq)), delivered: Some(delivered) })
    }

    pub(crate) fn ack(&self, to: &RoleId, seq: u64) {
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: to.clone(),
            message: Message::DeliverAck(DeliverAck { seq }),
        });
    }

    /// The receiver applied every delivery up to `seq`: forgotten now, their rows deleted
    /// with the bank's next commit (no fsync of its own). A crash before that commit sends
    /// them again after the restart, and the receiver acknowledges them again as duplicates.
    pub(crate) fn on_ack(&self, inner: &mut Inner, from: &RoleId, seq: u64) {
        let Inner { outbound, acked, .. } = inner;
        if outbound.plan_ack(from, seq, acked) {
            outbound.forget(from, seq);
        }
    }
}

/// A certified delivery, checked ([`BankService::check_certified`]).
pub(crate) enum Delivered {
    /// The certificate is not signed by the notary's key: nothing is applied.
    NotByTheNotary,
    /// Per transaction, its ids and the signatures verified, or why it is refused.
    Checked(Vec<Result<(TxIds, Vec<SignatureItem>)>>),
}

/// What a delivered transaction is, in the history: an issue from the NBK, a redemption, or a
/// payment.
fn purpose_of(tx: &Transaction) -> Purpose {
    match tx.body.command {
        dtenge_core::tx::Command::Issue => Purpose::Emission,
        dtenge_core::tx::Command::Redeem => Purpose::Redemption,
        dtenge_core::tx::Command::Transfer => Purpose::Payment,
    }
}

/// A delivered transaction is applied when its certificate covers it and it passes every
/// stateless rule with its attestations verified. Its owners' signatures are the payer's
/// bank's to check, and that bank answers for them with its attestation (the notary and the
/// payee rely on the attestation, as Project Hamilton's shards rely on their sentinels'):
/// verifying them again here would double the payment path's largest cost. The transactions
/// are archived, so an auditor can verify them all again.
fn check_delivered(
    anchors: &Anchors,
    certificate: &CommitCertificate,
    tx: &Transaction,
    proof: &CommitProof,
    (memo, certified): (&mut InnerMemo, &mut InnerMemo),
) -> Result<(TxIds, Vec<SignatureItem>)> {
    let ids = TxIds::of(tx)?;
    certificate.covers_memo(&CompactTx::of(&ids).hash(), proof, certified)?;
    check_structure_ids(tx, ids.clone(), anchors)?;
    let items = signature_items(tx, &ids.tx_id, memo, false, None)?;
    Ok((ids, items))
}
