//! Hold and release: programmed money the oracle confirms (SPEC §5.1).
//!
//! **Hold** ([`BankService::hold`]): a custodial client holds an event's amount. The bank
//! builds the transaction (the amount becomes `Held { event }` on the client's account, the
//! change standard), signs it with the client's key, attests it, reserves its inputs and writes
//! it to its own table ([`HOLD_TABLE`], with the idempotency key in flight) **before** it asks
//! the oracle to attest it ([`AttestRequest`]). With the oracle's attestation it notarizes the
//! transaction alone (its own batch number, never one of the outbox's), and on the certificate
//! one commit holds the bank's side, the row gone, the key answered and the numbered delivery
//! of the certified transaction to the oracle.
//!
//! **Release**: the oracle's [`ReleaseOrder`] (a provider confirmed the event) makes the bank
//! build the release (every token held for the event, into exactly the ordered outputs, the
//! order's attempt as nonce), write it, and go the same way: attested, notarized, delivered to
//! the payee banks and to the oracle in the commit that applies it.
//!
//! **Refusals**: the oracle's refusal is final for that transaction: the row goes, the inputs
//! are released, the client is told. The notary's refusal is final too, but the oracle has
//! attested the transaction and its event waits for it: the row stays, marked abandoned (its
//! inputs released, the client told), until the oracle answers the bank's [`Abandon`].
//!
//! A crash anywhere leaves the row (its inputs reserved again at the restart; the oracle is
//! asked again and answers from its decision; the notary answers by the transaction's id) or
//! the applied result with its deliveries: a hold is applied once, and a release is paid once
//! (its held inputs are spent once at the notary).

use crate::state::{plan_idem, plan_idem_in_flight, IdemState, Inner, BANK_META_TABLE, IDEM_TABLE};
use crate::{BankService, Committed, IdemKey, Reply};
use dtenge_core::certificate::{notarize_message, CommitProof, CompactTx};
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::token::{event_hash, TxId};
use dtenge_core::tx::{node_message, Attestation, Transaction};
use dtenge_core::validate::{check_structure_ids, TxIds};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::{NodeState, Purpose};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::message::EVENT_ID_BYTES_MAX;
use dtenge_wire::{
    Abandon, AttestPurpose, AttestReply, AttestRequest, Decode, DecodeError, Encode, Envelope, Message, NotarizeReply,
    NotarizeRequest, Outcome, Payload, Reader, ReleaseOrder, RoleId, Verdict, Writer,
};
use std::collections::{BTreeMap, HashMap};

/// Holds and releases not finished: transaction id -> [`HoldEntry`].
pub const HOLD_TABLE: Table = Table("bank_holds");
/// `bank_meta` key: the nonce of the next hold (u64 LE).
const NEXT_NONCE_KEY: &[u8] = b"next_hold_nonce";
/// Most holds and releases in flight at once.
pub const HOLDS_IN_FLIGHT_MAX: usize = 64;
/// The batch numbers of holds and releases have this bit set: the outbox's count from 1 and
/// never reach it, so an answer of the notary is routed by its number alone.
pub const HOLD_BATCH_BIT: u64 = 1 << 63;

/// What a row is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Hold { payee: Address },
    Release,
}

/// A hold or release not finished, as the table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HoldEntry {
    event_id: String,
    kind: Kind,
    /// Signed and attested by the bank, without the oracle's attestation (asked again after a
    /// restart: the oracle answers from its decision).
    tx: Transaction,
    idem: Option<IdemKey>,
    /// Where its deliveries go besides the oracle (a release's payees' banks).
    payee_banks: Vec<String>,
    /// The notary refused it: the oracle is told, then the row goes.
    abandoned: Option<Error>,
}

impl Encode for HoldEntry {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.event_id);
        match &self.kind {
            Kind::Hold { payee } => {
                w.u8(1);
                w.put(payee);
            }
            Kind::Release => w.u8(2),
        }
        w.put(&self.tx);
        w.put(&self.idem);
        w.put(&self.payee_banks);
        w.put(&self.abandoned);
    }
}

impl Decode for HoldEntry {
    const ENCODED_BYTES_MIN: usize = 4 + 1 + Transaction::ENCODED_BYTES_MIN + 1 + 4 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(HoldEntry {
            event_id: r.string("event id")?,
            kind: match r.u8("hold kind")? {
                1 => Kind::Hold { payee: r.get()? },
                2 => Kind::Release,
                tag => return Err(DecodeError::UnknownTag { what: "hold kind", tag: u64::from(tag) }),
            },
            tx: r.get()?,
            idem: r.get()?,
            payee_banks: r.seq("payee banks", 1_024)?,
            abandoned: r.get()?,
        })
    }
}

/// Where a row stands in memory.
enum Stage {
    /// Waiting for the oracle's attestation.
    Attesting,
    /// Attested: at the notary, with the oracle's attestation added.
    Notarizing(Transaction),
    /// Refused by the notary: waiting for the oracle to take the abandon.
    Abandoning,
}

struct Pending {
    entry: HoldEntry,
    ids: TxIds,
    stage: Stage,
    sent_at_ms: u64,
}

/// The holds and releases in memory, behind the bank's one lock.
#[derive(Default)]
pub(crate) struct Holds {
    pending: BTreeMap<TxId, Pending>,
    next_nonce: u64,
}

impl Holds {
    /// Holds and releases not finished.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

fn row_key(tx_id: &TxId) -> Vec<u8> {
    tx_id.0 .0.to_vec()
}

/// The notary batch a hold or release goes in: derived from its id, so that it is the same
/// after a restart and never one of the outbox's.
pub(crate) fn batch_of(tx_id: &TxId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&tx_id.0 .0[..8]);
    HOLD_BATCH_BIT | (u64::from_le_bytes(first) >> 1)
}

pub(crate) fn is_hold_batch(batch: u64) -> bool {
    batch & HOLD_BATCH_BIT != 0
}

/// Read the rows: the inputs of those not abandoned reserved again, their keys in flight.
pub(crate) fn load(
    store: &Store,
    node: &mut NodeState,
    idem_in_flight: &mut HashMap<String, (Hash32, TxId)>,
) -> Result<Holds> {
    let next_nonce = match store.get(BANK_META_TABLE, NEXT_NONCE_KEY)? {
        Some(bytes) => crate::state::u64_of(&bytes)?,
        None => 1,
    };
    let mut holds = Holds { pending: BTreeMap::new(), next_nonce };
    for (key, value) in store.scan(HOLD_TABLE)? {
        let entry = HoldEntry::from_bytes(&value)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a hold row: {e}")))?;
        let ids = TxIds::of(&entry.tx)?;
        assert_eq!(key, row_key(&ids.tx_id), "a hold is stored under its transaction's id");
        let stage = if entry.abandoned.is_some() {
            Stage::Abandoning
        } else {
            node.reserve_inputs(&ids.tx_id, &ids.inputs)?;
            if let Some(idem) = &entry.idem {
                idem_in_flight.insert(idem.key.clone(), (idem.fingerprint, ids.tx_id));
            }
            Stage::Attesting
        };
        holds.pending.insert(ids.tx_id, Pending { entry, ids, stage, sent_at_ms: 0 });
    }
    assert!(holds.pending.len() <= HOLDS_IN_FLIGHT_MAX, "the holds in flight are bounded");
    Ok(holds)
}

impl BankService {
    /// A custodial client holds `amount` for the oracle event `event_id`, expecting `payee`
    /// to be paid by it. Answered once the hold is certified and applied here; refused by the
    /// bank, the oracle or the notary, nothing stays held or reserved.
    pub fn hold(
        &self,
        client_id: &str,
        event_id: &str,
        amount: Amount,
        payee: Address,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> crate::Answer {
        let (sender, receiver) = dtenge_sync::oneshot::channel();
        let answer = Reply::Own(sender);
        let mut inner = self.inner.lock();
        match self.admit_hold(&mut inner, client_id, event_id, amount, payee, idem, &answer, now_ms) {
            Ok(Some(tx_id)) => {
                inner.waiters.entry(tx_id).or_default().push(answer);
                self.send_hold_step(&mut inner, &tx_id, now_ms);
            }
            Ok(None) => {}
            Err(e) => answer.send(Err(e)),
        }
        receiver
    }

    /// Holds and releases not finished: zero once traffic stopped and every message arrived.
    pub fn holds_pending(&self) -> usize {
        self.inner.lock().holds.pending.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn admit_hold(
        &self,
        inner: &mut Inner,
        client_id: &str,
        event_id: &str,
        amount: Amount,
        payee: Address,
        idem: Option<IdemKey>,
        answer: &Reply,
        now_ms: u64,
    ) -> Result<Option<TxId>> {
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if idem.key.is_empty() || idem.key.len() > 128 {
                return Err(Error::malformed("an idempotency key has 1 to 128 characters"));
            }
            crate::cards::check_key(Some(idem))?;
            if self.answered_by_key(inner, idem, answer)? {
                return Ok(None);
            }
        }
        if event_id.is_empty() || event_id.len() > EVENT_ID_BYTES_MAX {
            return Err(Error::malformed(format!("an event id has 1 to {EVENT_ID_BYTES_MAX} bytes")));
        }
        if inner.holds.pending.len() >= HOLDS_IN_FLIGHT_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many holds in flight; retry"));
        }
        let nonce = inner.holds.next_nonce;
        let issuer = self.anchors.read().issuer;
        // A nonce of its own makes each hold a new transaction, even over the same tokens as
        // one refused: the oracle's and the notary's decisions are final per transaction id.
        let tx = inner.node.prepare_hold(client_id, amount, event_hash(event_id), issuer, nonce)?;
        let ids = TxIds::of(&tx).inspect_err(|_| inner.node.release(&tx))?;
        let entry = HoldEntry {
            event_id: event_id.to_string(),
            kind: Kind::Hold { payee },
            tx,
            idem,
            payee_banks: Vec::new(),
            abandoned: None,
        };
        let mut batch = WriteBatch::new();
        batch.put(HOLD_TABLE, row_key(&ids.tx_id), entry.to_bytes());
        batch.put(BANK_META_TABLE, NEXT_NONCE_KEY.to_vec(), (nonce + 1).to_le_bytes().to_vec());
        plan_idem_in_flight(&mut batch, entry.idem.as_ref(), &ids.tx_id, now_ms);
        if let Err(e) = self.commit(inner, batch) {
            inner.node.release(&entry.tx);
            return Err(e);
        }
        inner.holds.next_nonce = nonce + 1;
        inner.idem_started(entry.idem.as_ref(), &ids.tx_id);
        let tx_id = ids.tx_id;
        inner.holds.pending.insert(tx_id, Pending { entry, ids, stage: Stage::Attesting, sent_at_ms: 0 });
        Ok(Some(tx_id))
    }

    /// The oracle orders the release of an event this bank holds: build it, write it, ask for
    /// the attestation. An order for a release in flight, or for nothing held here (a stale
    /// copy), changes nothing; a bank the operator blocked releases nothing (the notary would
    /// refuse it) and the oracle orders again.
    pub(crate) fn on_release_order(&self, inner: &mut Inner, order: ReleaseOrder, now_ms: u64) {
        if inner.ensure_running().is_err()
            || self.anchors.read().blocked.contains(self.id())
            || inner.holds.pending.len() >= HOLDS_IN_FLIGHT_MAX
            || inner.holds.pending.values().any(|p| p.entry.event_id == order.event_id)
        {
            return;
        }
        let Some(client_id) = inner.node.client_of(&order.sender).map(str::to_string) else { return };
        let Ok(tx) = inner.node.prepare_release(&client_id, &event_hash(&order.event_id), order.outputs, order.attempt)
        else {
            return;
        };
        let Some((ids, payee_banks)) = self.check_release(inner, &tx, order.held) else {
            inner.node.release(&tx);
            return;
        };
        let entry =
            HoldEntry { event_id: order.event_id, kind: Kind::Release, tx, idem: None, payee_banks, abandoned: None };
        let mut batch = WriteBatch::new();
        batch.put(HOLD_TABLE, row_key(&ids.tx_id), entry.to_bytes());
        if self.commit(inner, batch).is_err() {
            inner.node.release(&entry.tx);
            return;
        }
        let tx_id = ids.tx_id;
        inner.holds.pending.insert(tx_id, Pending { entry, ids, stage: Stage::Attesting, sent_at_ms: 0 });
        self.send_hold_step(inner, &tx_id, now_ms);
    }

    /// A release built from an order: it spends what the order says is held, and its payees'
    /// banks are known. `None` when not (the order is stale, or the directory cannot be asked
    /// now: the oracle orders again).
    fn check_release(&self, inner: &Inner, tx: &Transaction, held: Amount) -> Option<(TxIds, Vec<String>)> {
        let spent = Amount::sum(tx.body.inputs.iter().map(|i| i.output.amount_tiyn)).ok()?;
        if spent != held {
            return None;
        }
        let ids = TxIds::of(tx).ok()?;
        let mut banks: Vec<String> = Vec::new();
        for output in &tx.body.outputs {
            if inner.node.locate(&output.owner).is_some() {
                continue;
            }
            let bank = self.directory.bank_of(&output.owner).ok()??;
            if !banks.contains(&bank) {
                banks.push(bank);
            }
        }
        Some((ids, banks))
    }

    /// Send what a row waits for: the oracle's attestation, the notary's answer, or the
    /// oracle's taking of the abandon.
    fn send_hold_step(&self, inner: &mut Inner, tx_id: &TxId, now_ms: u64) {
        let pending = inner.holds.pending.get_mut(tx_id).expect("a row in flight");
        pending.sent_at_ms = now_ms;
        let entry = &pending.entry;
        let (to, message) = match &pending.stage {
            Stage::Attesting => {
                let purpose = match &entry.kind {
                    Kind::Hold { payee } => AttestPurpose::Hold { payee: *payee },
                    Kind::Release => AttestPurpose::Release,
                };
                let request = AttestRequest { event_id: entry.event_id.clone(), purpose, tx: entry.tx.clone() };
                (RoleId::Oracle, Message::AttestRequest(request))
            }
            Stage::Notarizing(_) => {
                let batch = batch_of(tx_id);
                let compact = vec![CompactTx::of(&pending.ids)];
                let root = dtenge_core::merkle::root(&[compact[0].hash()]);
                let signature = self.key.sign(&notarize_message(batch, &root).0);
                (RoleId::Notary, Message::NotarizeRequest(NotarizeRequest { batch, txs: compact, signature }))
            }
            Stage::Abandoning => {
                let refused = entry.abandoned.clone().expect("an abandoned row keeps the notary's refusal");
                let abandon = Abandon { event_id: entry.event_id.clone(), tx_id: *tx_id, refused };
                (RoleId::Oracle, Message::Abandon(abandon))
            }
        };
        // A send that fails is a loss like any other: `tick` sends it again.
        let _ = self.transport.send(Envelope { from: self.role(), to, message });
    }

    /// Rows not answered in time, sent again.
    pub(crate) fn resend_holds(&self, inner: &mut Inner, now_ms: u64) {
        let due: Vec<TxId> = inner
            .holds
            .pending
            .iter()
            .filter(|(_, p)| p.sent_at_ms.saturating_add(crate::RESEND_AFTER_MS) <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for tx_id in due {
            self.send_hold_step(inner, &tx_id, now_ms);
        }
    }

    /// The oracle's answer about a row.
    pub(crate) fn on_attest_reply(&self, inner: &mut Inner, reply: AttestReply, now_ms: u64) {
        let Some(pending) = inner.holds.pending.get(&reply.tx_id) else { return };
        match (&pending.stage, reply.verdict) {
            (Stage::Attesting, Verdict::Attested(attestation)) => {
                self.attested(inner, &reply.tx_id, attestation, now_ms)
            }
            (Stage::Attesting, Verdict::Refused(e)) => self.end_refused(inner, &reply.tx_id, e),
            (Stage::Attesting, Verdict::Abandoned) => {
                let e = Error::new(ErrorCode::Conflict, "the oracle holds this transaction abandoned");
                self.end_refused(inner, &reply.tx_id, e)
            }
            // The oracle took the abandon (or holds the transaction decided otherwise for good).
            (Stage::Abandoning, Verdict::Abandoned | Verdict::Refused(_)) => self.end_abandoned(inner, &reply.tx_id),
            // A late copy of the attestation: the oracle has not taken the abandon yet (the
            // simulator's seed 83 found a bank that took any answer for it, and an event that
            // waited for its dropped hold for ever).
            (Stage::Abandoning, Verdict::Attested(_)) | (Stage::Notarizing(_), _) => {}
        }
    }

    /// The oracle attested: checked, then to the notary. An attestation that is not the
    /// oracle's is ignored (the request is sent again). A bank blocked meanwhile still asks the
    /// notary: only the notary knows whether it committed the transaction before the block
    /// (a row read back after a crash may have been at the notary already), and it answers
    /// that "committed", anything else "refused" for good (seed 867 of the simulator: a bank
    /// that gave up here dropped a hold the notary had committed).
    fn attested(&self, inner: &mut Inner, tx_id: &TxId, attestation: Attestation, now_ms: u64) {
        let anchors = self.anchors.read().clone();
        if attestation.public_key != anchors.oracle
            || dtenge_core::crypto::verify(&anchors.oracle, &node_message(tx_id).0, &attestation.signature).is_err()
        {
            return;
        }
        let pending = inner.holds.pending.get_mut(tx_id).expect("found by the caller");
        let mut tx = pending.entry.tx.clone();
        tx.attestations.retain(|a| a.public_key != anchors.oracle);
        tx.attestations.push(attestation);
        let mut unblocked = anchors.clone();
        unblocked.blocked.clear();
        if let Err(e) = check_structure_ids(&tx, pending.ids.clone(), &unblocked) {
            panic!("a hold the bank built and the oracle attested breaks the stateless rules: {e}");
        }
        pending.stage = Stage::Notarizing(tx);
        self.send_hold_step(inner, tx_id, now_ms);
    }

    /// The oracle refused (for good): the row goes, the inputs are free again.
    fn end_refused(&self, inner: &mut Inner, tx_id: &TxId, refused: Error) {
        let entry = &inner.holds.pending[tx_id].entry;
        let mut batch = WriteBatch::new();
        batch.delete(HOLD_TABLE, row_key(tx_id));
        if let Some(idem) = &entry.idem {
            batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        let pending = inner.holds.pending.remove(tx_id).expect("found above");
        inner.node.release(&pending.entry.tx);
        self.answer_hold(inner, tx_id, &pending.entry, Err(refused));
    }

    /// The notary refused (for good) what the oracle attested: released and answered now, the
    /// row kept until the oracle takes the abandon.
    fn abandon(&self, inner: &mut Inner, tx_id: &TxId, refused: Error, now_ms: u64) {
        let pending = inner.holds.pending.get(tx_id).expect("found by the caller");
        let mut entry = pending.entry.clone();
        entry.abandoned = Some(refused.clone());
        let mut batch = WriteBatch::new();
        batch.put(HOLD_TABLE, row_key(tx_id), entry.to_bytes());
        if let Some(idem) = &entry.idem {
            batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.node.release(&entry.tx);
        self.answer_hold(inner, tx_id, &entry, Err(refused));
        let pending = inner.holds.pending.get_mut(tx_id).expect("found above");
        pending.entry = entry;
        pending.stage = Stage::Abandoning;
        self.send_hold_step(inner, tx_id, now_ms);
    }

    fn end_abandoned(&self, inner: &mut Inner, tx_id: &TxId) {
        let mut batch = WriteBatch::new();
        batch.delete(HOLD_TABLE, row_key(tx_id));
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.holds.pending.remove(tx_id);
    }

    /// The notary's answer to a hold's or a release's batch.
    pub(crate) fn on_hold_reply(&self, inner: &mut Inner, reply: NotarizeReply, now_ms: u64) {
        let Some(tx_id) = inner
            .holds
            .pending
            .iter()
            .find(|(id, p)| matches!(p.stage, Stage::Notarizing(_)) && batch_of(id) == reply.batch)
            .map(|(id, _)| *id)
        else {
            return;
        };
        let [outcome] = reply.outcomes.as_slice() else { return };
        match outcome {
            Outcome::Committed(proof) => {
                let Some(certificate) = &reply.certificate else { return };
                let pending = &inner.holds.pending[&tx_id];
                let notary = self.anchors.read().notary;
                if certificate.verify_signature(&notary).is_err()
                    || certificate.covers(&CompactTx::of(&pending.ids).hash(), proof).is_err()
                {
                    return;
                }
                self.committed(inner, &tx_id, certificate.clone(), proof.clone(), now_ms);
            }
            // Not decided at the notary (being committed, or its store failed): ask again.
            Outcome::Refused(e) if matches!(e.code, ErrorCode::RequestInProgress | ErrorCode::StorageFailure) => {}
            Outcome::Refused(e) => self.abandon(inner, &tx_id, e.clone(), now_ms),
        }
    }

    /// Certified: one commit holds this bank's side, the row gone, the key answered and the
    /// deliveries to the oracle and the payee banks.
    fn committed(
        &self,
        inner: &mut Inner,
        tx_id: &TxId,
        certificate: dtenge_core::certificate::CommitCertificate,
        proof: CommitProof,
        now_ms: u64,
    ) {
        let pending = inner.holds.pending.remove(tx_id).expect("found by the caller");
        let Stage::Notarizing(tx) = &pending.stage else { unreachable!("certified while at the notary only") };
        let purpose = match pending.entry.kind {
            Kind::Hold { .. } => Purpose::Hold,
            Kind::Release => Purpose::HoldRelease,
        };
        let ids = &pending.ids;
        let mut batch = WriteBatch::new();
        let delta = inner
            .node
            .plan_commit_ids(tx, &ids.tx_id, &ids.inputs, &ids.outputs, purpose, Some(&pending.entry.event_id), now_ms)
            .unwrap_or_else(|e| panic!("a certified hold the bank built cannot be planned: {e}"));
        delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
        dtenge_node::archive(&[self.id()], tx_id, tx, &mut batch)
            .unwrap_or_else(|e| panic!("a transaction cannot be archived: {e}"));
        batch.delete(HOLD_TABLE, row_key(tx_id));
        if let Some(idem) = &pending.entry.idem {
            let committed = Committed { tx_id: *tx_id, seq: certificate.seq };
            plan_idem(&mut batch, idem, IdemState::Committed(committed), now_ms);
        }
        let receivers =
            std::iter::once(RoleId::Oracle).chain(pending.entry.payee_banks.iter().cloned().map(RoleId::Bank));
        let sends: Vec<dtenge_delivery::Planned> = receivers
            .map(|to| {
                let payload =
                    Payload::Certified { certificate: certificate.clone(), txs: vec![(tx.clone(), proof.clone())] };
                inner.outbound.plan(to, payload, &mut batch)
            })
            .collect();
        if self.commit(inner, batch).is_err() {
            // The role stops answering (`failed`); its restart reads the row again.
            inner.holds.pending.insert(*tx_id, pending);
            return;
        }
        inner.apply_certified([delta], certificate.seq);
        inner.remember(*tx_id, certificate.seq);
        let me = self.role();
        for planned in sends {
            let envelope = inner.outbound.sent(planned, &me, now_ms);
            let _ = self.transport.send(envelope);
        }
        self.answer_hold(inner, tx_id, &pending.entry, Ok(Committed { tx_id: *tx_id, seq: certificate.seq }));
    }

    fn answer_hold(&self, inner: &mut Inner, tx_id: &TxId, entry: &HoldEntry, answer: Result<Committed>) {
        inner.answer(tx_id, entry.idem.as_ref(), answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::tx::{Command, TxBody};

    #[test]
    fn a_hold_row_decodes_to_what_was_written_and_garbage_is_refused() {
        let tx = Transaction::new(TxBody { command: Command::Transfer, inputs: vec![], outputs: vec![], nonce: 4 });
        let payee = dtenge_core::crypto::SecretKey::from_seed([2; 32]).address();
        let entries = [
            HoldEntry {
                event_id: "EV0000001".into(),
                kind: Kind::Hold { payee },
                tx: tx.clone(),
                idem: Some(IdemKey { key: "hold-1".into(), fingerprint: Hash32([3; 32]) }),
                payee_banks: vec![],
                abandoned: None,
            },
            HoldEntry {
                event_id: "EV0000002".into(),
                kind: Kind::Release,
                tx,
                idem: None,
                payee_banks: vec!["sapa".into()],
                abandoned: Some(Error::new(ErrorCode::BankBlocked, "blocked")),
            },
        ];
        for entry in entries {
            let bytes = entry.to_bytes();
            assert_eq!(HoldEntry::from_bytes(&bytes).unwrap(), entry);
            assert!(HoldEntry::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn hold_batches_are_apart_from_the_outbox_and_stable_per_transaction() {
        let id = TxId(Hash32([0xff; 32]));
        assert!(is_hold_batch(batch_of(&id)));
        assert_eq!(batch_of(&id), batch_of(&TxId(Hash32([0xff; 32]))));
        assert!(!is_hold_batch(1) && !is_hold_batch(u64::from(u32::MAX)));
        assert_ne!(batch_of(&id), batch_of(&TxId(Hash32([0xfe; 32]))));
    }
}
