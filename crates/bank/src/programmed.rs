//! Programmed spends of custodial clients: marked transfers, e-invoice and VAT payments,
//! contract payments and withdrawals (SPEC §5.2, §5.3), the way holds go (`hold.rs`;
//! `docs/ARCHITECTURE.md`, "Programmed spend"); and split payments (§5.4), which need no
//! oracle.
//!
//! 1. **Plan** ([`BankService::spend`]): the bank fills in what only it knows (the payer, the
//!    client's VAT-marked DT, its own account for a withdrawal) and asks the oracle for a
//!    plan ([`PlanRequest`], sent again until answered; nothing is written yet, so a crash
//!    here loses only the question).
//! 2. **Build**: on the plan ([`PlanReply`]) the bank checks that it pays what the client
//!    asked, builds the transaction (`NodeState::prepare_spend`: coin selection per kind,
//!    change of each kind back to the client, signed with the client's key, attested with the
//!    node key, its own nonce), reserves its inputs and writes it to its own table
//!    ([`PROGRAMMED_TABLE`], with the idempotency key in flight) **before** it asks the oracle
//!    to attest it ([`AttestPurpose::Spend`]).
//! 3. From there as a hold: attested, notarized alone under a batch number of its own
//!    ([`SPEND_BATCH_BITS`]), and on the certificate one commit holds the bank's side (a
//!    withdrawal's bank money credited too), the row gone, the key answered and the numbered
//!    deliveries of the certified transaction to the oracle and the payees' banks. The
//!    oracle's refusal ends the row (one because another spend of the same subject got there
//!    first: the spend is planned again, up to [`PLAN_RETRIES_MAX`] times); the notary's
//!    refusal keeps it, abandoned, until the oracle takes the [`Abandon`].
//!
//! A crash leaves the row (its inputs reserved again at the restart, the oracle asked again,
//! which answers from its decision; the notary answers by the transaction's id) or the applied
//! result with its deliveries.

use crate::state::{plan_idem, plan_idem_in_flight, IdemState, Inner, BANK_META_TABLE, IDEM_TABLE};
use crate::{Answer, BankService, Committed, IdemKey, Reply, Request};
use dtenge_core::certificate::{notarize_message, CommitCertificate, CommitProof, CompactTx};
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::party::Party;
use dtenge_core::token::{Policy, TxId};
use dtenge_core::tx::{node_message, Attestation, Transaction};
use dtenge_core::validate::{check_structure_ids, TxIds};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::{NodeState, Purpose, OWN_ACCOUNT};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{
    Abandon, AttestPurpose, AttestReply, AttestRequest, Decode, DecodeError, Encode, Envelope, Message, NotarizeReply,
    NotarizeRequest, Outcome, Payload, PlanReply, PlanRequest, PlannedSpend, Reader, RoleId, Spend, SpendKind, Verdict,
    Writer, SPEND_PARTS_MAX,
};
use std::collections::{BTreeMap, HashMap};

/// Programmed spends not finished: transaction id -> [`SpendEntry`].
pub const PROGRAMMED_TABLE: Table = Table("bank_programmed");
/// `bank_meta` key: the nonce of the next programmed spend (u64 LE).
const NEXT_NONCE_KEY: &[u8] = b"next_spend_nonce";
/// Most programmed spends in flight at once (planned or written).
pub const SPENDS_IN_FLIGHT_MAX: usize = 64;
/// The batch numbers of programmed spends have these two bits set: the outbox's count from 1
/// and never reach them; a hold's batch has the top bit and a hash below, so one of its
/// numbers equals a spend's only if their transaction ids share 62 bits.
pub const SPEND_BATCH_BITS: u64 = 0b11 << 62;
/// How many times a spend is planned again, or its plan asked for again after
/// [`crate::RESEND_AFTER_MS`] without an answer (the oracle holds a plan back while another
/// spend of its marking, invoice or contract is being committed), before its client is
/// answered `REQUEST_IN_PROGRESS`.
pub const PLAN_RETRIES_MAX: u32 = 50;
/// Most lines of one split payment.
pub const SPLIT_LINES_MAX: usize = 64;
const _: () = assert!(SPLIT_LINES_MAX < dtenge_core::tx::TX_OUTPUTS_MAX);
const _: () = assert!(SPEND_BATCH_BITS & crate::HOLD_BATCH_BIT != 0);

/// A programmed spend not finished, as the table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SpendEntry {
    spend: Spend,
    /// Signed and attested by the bank, without the oracle's attestation.
    tx: Transaction,
    idem: Option<IdemKey>,
    /// Where its deliveries go besides the oracle.
    payee_banks: Vec<String>,
    /// The notary refused it: the oracle is told, then the row goes.
    abandoned: Option<Error>,
}

impl Encode for SpendEntry {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.spend);
        w.put(&self.tx);
        w.put(&self.idem);
        w.put(&self.payee_banks);
        w.put(&self.abandoned);
    }
}

impl Decode for SpendEntry {
    const ENCODED_BYTES_MIN: usize = Spend::ENCODED_BYTES_MIN + Transaction::ENCODED_BYTES_MIN + 1 + 4 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(SpendEntry {
            spend: r.get()?,
            tx: r.get()?,
            idem: r.get()?,
            payee_banks: r.seq("payee banks", 1_024)?,
            abandoned: r.get()?,
        })
    }
}

/// A spend waiting for the oracle's plan (not stored).
struct Planning {
    spend: Spend,
    idem: Option<IdemKey>,
    /// Who waits for it (more than one when the client asked again under its key).
    answers: Vec<Reply>,
    sent_at_ms: u64,
    /// Plans and attestations refused because the subject was busy.
    retries: u32,
}

/// Where a row stands in memory.
enum Stage {
    Attesting,
    Notarizing(Transaction),
    Abandoning,
}

struct Pending {
    entry: SpendEntry,
    ids: TxIds,
    stage: Stage,
    sent_at_ms: u64,
    /// Its planning's retries (not stored: 0 after a restart).
    retries: u32,
}

/// The programmed spends in memory, behind the bank's one lock.
#[derive(Default)]
pub(crate) struct Spends {
    planning: BTreeMap<u64, Planning>,
    next_request: u64,
    pending: BTreeMap<TxId, Pending>,
    next_nonce: u64,
}

impl Spends {
    /// A row waits for the oracle's answer about `tx_id`.
    pub(crate) fn has(&self, tx_id: &TxId) -> bool {
        self.pending.contains_key(tx_id)
    }

    /// A row is at the notary under `batch`.
    pub(crate) fn has_batch(&self, batch: u64) -> bool {
        batch & SPEND_BATCH_BITS == SPEND_BATCH_BITS && self.notarizing(batch).is_some()
    }

    fn notarizing(&self, batch: u64) -> Option<TxId> {
        self.pending
            .iter()
            .find(|(id, p)| matches!(p.stage, Stage::Notarizing(_)) && batch_of(id) == batch)
            .map(|(id, _)| *id)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.planning.len() + self.pending.len()
    }

    /// The bank money the contract withdrawals in flight will credit `client_id`: planned,
    /// attested or at the notary (an abandoned one credits nothing). Bounded by the spends in
    /// flight, so summed when asked rather than kept.
    pub(crate) fn credits_of(&self, client_id: &str) -> Result<Amount> {
        let planned = self.planning.values().map(|p| &p.spend);
        let pending = self.pending.values().filter(|p| !matches!(p.stage, Stage::Abandoning)).map(|p| &p.entry.spend);
        planned.chain(pending).filter(|s| s.payer.client_id == client_id).try_fold(Amount::ZERO, |sum, s| {
            match &s.kind {
                SpendKind::ContractWithdrawal { amount, .. } => sum.checked_add(*amount),
                _ => Ok(sum),
            }
        })
    }
}

fn row_key(tx_id: &TxId) -> Vec<u8> {
    tx_id.0 .0.to_vec()
}

/// The notary batch of a programmed spend: derived from its id (the same after a restart).
fn batch_of(tx_id: &TxId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&tx_id.0 .0[..8]);
    SPEND_BATCH_BITS | (u64::from_le_bytes(first) >> 2)
}

/// Read the rows: the inputs of those not abandoned reserved again, their keys in flight.
pub(crate) fn load(
    store: &Store,
    node: &mut NodeState,
    idem_in_flight: &mut HashMap<String, (Hash32, TxId)>,
) -> Result<Spends> {
    let next_nonce = match store.get(BANK_META_TABLE, NEXT_NONCE_KEY)? {
        Some(bytes) => crate::state::u64_of(&bytes)?,
        None => 1,
    };
    let mut spends = Spends { next_nonce, next_request: 1, ..Spends::default() };
    for (key, value) in store.scan(PROGRAMMED_TABLE)? {
        let entry = SpendEntry::from_bytes(&value)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a programmed spend's row: {e}")))?;
        let ids = TxIds::of(&entry.tx)?;
        assert_eq!(key, row_key(&ids.tx_id), "a spend is stored under its transaction's id");
        let stage = if entry.abandoned.is_some() {
            Stage::Abandoning
        } else {
            node.reserve_inputs(&ids.tx_id, &ids.inputs)?;
            if let Some(idem) = &entry.idem {
                idem_in_flight.insert(idem.key.clone(), (idem.fingerprint, ids.tx_id));
            }
            Stage::Attesting
        };
        spends.pending.insert(ids.tx_id, Pending { entry, ids, stage, sent_at_ms: 0, retries: 0 });
    }
    assert!(spends.pending.len() <= SPENDS_IN_FLIGHT_MAX, "the spends in flight are bounded");
    Ok(spends)
}

/// What the client's history calls a spend.
fn purpose_of(kind: &SpendKind) -> Purpose {
    match kind {
        SpendKind::MarkedTransfer { .. } => Purpose::MarkedTransfer,
        SpendKind::InvoicePayment { .. } => Purpose::InvoicePayment,
        SpendKind::VatPayment { .. } => Purpose::VatPayment,
        SpendKind::ContractPayment { .. } => Purpose::ContractPayment,
        SpendKind::ContractWithdrawal { .. } => Purpose::ConversionFromDt,
    }
}

fn reference_of(spend: &Spend) -> String {
    match &spend.kind {
        SpendKind::MarkedTransfer { marking_id, .. } => format!("marking {marking_id}"),
        SpendKind::InvoicePayment { invoice_id, .. } => format!("e-invoice {invoice_id}"),
        SpendKind::VatPayment { .. } => "VAT".to_string(),
        SpendKind::ContractPayment { contract, .. } | SpendKind::ContractWithdrawal { contract, .. } => {
            format!("contract {contract}")
        }
    }
}

/// The plan pays what the client asked: its parts name distinct kinds, and what it spends
/// and what it pays are both the spend's amount. Else the oracle is faulty, and nothing is built.
fn check_plan(spend: &Spend, plan: &PlannedSpend) -> Result<()> {
    let faulty = |why: &str| Err(Error::new(ErrorCode::Internal, format!("the oracle's plan {why}")));
    if plan.parts.is_empty() || plan.parts.len() > SPEND_PARTS_MAX {
        return faulty("has no parts or too many");
    }
    if plan.parts.iter().enumerate().any(|(i, (p, _))| plan.parts[..i].iter().any(|(q, _)| q == p)) {
        return faulty("names a kind of token twice");
    }
    // Held DT moves only by its event's release.
    if plan.parts.iter().any(|(p, _)| p.held_for().is_some()) {
        return faulty("spends held DT");
    }
    if plan.outputs.len() + plan.parts.len() > dtenge_core::tx::TX_OUTPUTS_MAX {
        return faulty("has too many outputs");
    }
    let spent = Amount::sum(plan.parts.iter().map(|(_, a)| *a))?;
    let paid = Amount::sum(plan.outputs.iter().map(|o| o.amount_tiyn))?;
    if spent != spend.amount() || paid != spend.amount() {
        return faulty(&format!("spends {spent} and pays {paid}, not the {} asked", spend.amount()));
    }
    Ok(())
}

impl BankService {
    /// A custodial client's programmed spend. The bank fills in the payer, and for an invoice
    /// the client's VAT-marked DT, for a withdrawal its own account (whatever the caller put
    /// there). Answered once the spend is certified and applied here; refused by the bank, the
    /// oracle or the notary, nothing moves and nothing stays reserved.
    pub fn spend(&self, client_id: &str, kind: SpendKind, idem: Option<IdemKey>, now_ms: u64) -> Answer {
        let (sender, receiver) = dtenge_sync::oneshot::channel();
        let answer = Reply::Own(sender);
        let mut inner = self.inner.lock();
        match self.admit_spend(&mut inner, client_id, kind, idem, &answer) {
            Ok(Some(request)) => {
                let planning = inner.spends.planning.get_mut(&request).expect("admitted just now");
                planning.sent_at_ms = now_ms;
                self.send_plan_request(request, &planning.spend);
            }
            Ok(None) => {}
            Err(e) => answer.send(Err(e)),
        }
        receiver
    }

    /// Programmed spends not finished (waiting for a plan, or written): zero once traffic
    /// stopped and every message arrived.
    pub fn spends_pending(&self) -> usize {
        self.inner.lock().spends.in_flight()
    }

    /// A split payment (SPEC §5.4): one transaction paying several recipients, all or none;
    /// the network's rules (1 to [`SPLIT_LINES_MAX`] lines, positive amounts, not the bank's
    /// own account, not the payer itself), then a custodial payment like any other.
    pub fn split_payment(&self, client_id: &str, lines: &[(Address, Amount)], idem: Option<IdemKey>) -> Answer {
        match self.split_request(client_id, lines) {
            Ok(request) => self.submit(request, idem),
            Err(e) => {
                let (sender, receiver) = dtenge_sync::oneshot::channel();
                let _ = sender.send(Err(e));
                receiver
            }
        }
    }

    fn split_request(&self, client_id: &str, lines: &[(Address, Amount)]) -> Result<Request> {
        if lines.is_empty() || lines.len() > SPLIT_LINES_MAX {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("a split payment has 1 to {SPLIT_LINES_MAX} lines"),
            ));
        }
        if client_id == OWN_ACCOUNT {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "a node's own DT leaves it through conversion or redemption, not a transfer",
            ));
        }
        let payer = self.read(|node| node.account(client_id).map(|a| a.address))?;
        for (to, amount) in lines {
            if amount.is_zero() {
                return Err(Error::malformed("every line's amount must be positive"));
            }
            if *to == payer {
                return Err(Error::malformed("the payer cannot pay itself"));
            }
        }
        Ok(Request::Pay { client_id: client_id.to_string(), payees: lines.to_vec() })
    }

    /// The bank's own checks; `Ok(Some(request number))` once it waits for the oracle's plan,
    /// `Ok(None)` when its idempotency key answered it.
    fn admit_spend(
        &self,
        inner: &mut Inner,
        client_id: &str,
        mut kind: SpendKind,
        idem: Option<IdemKey>,
        answer: &Reply,
    ) -> Result<Option<u64>> {
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if idem.key.is_empty() || idem.key.len() > 128 {
                return Err(Error::malformed("an idempotency key has 1 to 128 characters"));
            }
            if inner.spends.planning.values().any(|p| p.idem.as_ref().is_some_and(|k| k.key == idem.key)) {
                return Err(Error::new(
                    ErrorCode::RequestInProgress,
                    "a request under this key is being planned; retry",
                ));
            }
            if self.answered_by_key(inner, idem, answer)? {
                return Ok(None);
            }
        }
        // The subject's id travels to the oracle, whose decoder takes 1 to 64 bytes: a longer
        // one would be refused there with the whole frame, not answered.
        let subject = match &kind {
            SpendKind::MarkedTransfer { marking_id, .. } => Some(("a marking id", marking_id)),
            SpendKind::InvoicePayment { invoice_id, .. } => Some(("an invoice id", invoice_id)),
            SpendKind::ContractPayment { contract, .. } | SpendKind::ContractWithdrawal { contract, .. } => {
                Some(("a contract number", contract))
            }
            SpendKind::VatPayment { .. } => None,
        };
        if let Some((what, id)) = subject {
            if id.is_empty() || id.len() > dtenge_wire::message::EVENT_ID_BYTES_MAX {
                return Err(Error::malformed(format!(
                    "{what} has 1 to {} bytes",
                    dtenge_wire::message::EVENT_ID_BYTES_MAX
                )));
            }
        }
        if inner.spends.in_flight() >= SPENDS_IN_FLIGHT_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many programmed payments in flight; retry"));
        }
        let address = inner.node.account(client_id)?.address;
        let payer = Party { bank: self.id().to_string(), client_id: client_id.to_string(), address };
        match &mut kind {
            SpendKind::MarkedTransfer { to, .. } => {
                if self.anchors.read().blocked.contains(&to.bank) {
                    return Err(Error::new(
                        ErrorCode::BankBlocked,
                        format!("the payee's bank '{}' is blocked by the NBK operator", to.bank),
                    ));
                }
            }
            SpendKind::InvoicePayment { vat_available, .. } => {
                *vat_available = inner.node.available(client_id, &Policy::Vat)?;
            }
            SpendKind::ContractWithdrawal { amount, bank_account, .. } => {
                if client_id == OWN_ACCOUNT {
                    return Err(Error::new(ErrorCode::Forbidden, "a node does not withdraw from itself"));
                }
                // The bank money it credits fits, beside what the moves in flight will credit
                // (its commit applies the credit whatever was deposited meanwhile).
                let room = inner.credits_in_flight(client_id)?.checked_add(*amount)?;
                inner.node.fiat_after(client_id, room, Amount::ZERO)?;
                let own = inner.node.account(OWN_ACCOUNT)?.address;
                *bank_account = Party { bank: self.id().to_string(), client_id: OWN_ACCOUNT.to_string(), address: own };
            }
            SpendKind::VatPayment { .. } | SpendKind::ContractPayment { .. } => {}
        }
        let request = inner.spends.next_request;
        inner.spends.next_request += 1;
        let spend = Spend { payer, kind };
        let planning = Planning { spend, idem, answers: vec![answer.clone()], sent_at_ms: 0, retries: 0 };
        inner.spends.planning.insert(request, planning);
        Ok(Some(request))
    }

    fn send_plan_request(&self, request: u64, spend: &Spend) {
        let message = Message::PlanRequest(PlanRequest { request, spend: spend.clone() });
        // A send that fails is a loss like any other: `tick` sends it again.
        let _ = self.transport.send(Envelope { from: self.role(), to: RoleId::Oracle, message });
    }

    /// The oracle's plan: built, written, sent to be attested; or its refusal, answered.
    pub(crate) fn on_plan_reply(&self, inner: &mut Inner, reply: PlanReply, now_ms: u64) {
        match inner.spends.planning.get(&reply.request) {
            Some(planning) if planning.spend == reply.spend => {}
            // A late copy, or an answer to a request from before a restart.
            _ => return,
        }
        if let Err(e) = &reply.plan {
            let planning = inner.spends.planning.get_mut(&reply.request).expect("found above");
            if e.code == ErrorCode::RequestInProgress && planning.retries < PLAN_RETRIES_MAX {
                // Its subject waits for another spend's certificate: asked again by `tick`
                // (the one-process network waited for its oracle's lock).
                planning.retries += 1;
                planning.sent_at_ms = now_ms;
                return;
            }
        }
        let planning = inner.spends.planning.remove(&reply.request).expect("found above");
        let built = reply.plan.and_then(|plan| self.build_spend(inner, &planning, plan, now_ms));
        match built {
            Ok(tx_id) => {
                inner.waiters.entry(tx_id).or_default().extend(planning.answers);
                self.send_spend_step(inner, &tx_id, now_ms);
            }
            Err(e) => planning.answers.iter().for_each(|answer| answer.send(Err(e.clone()))),
        }
    }

    fn build_spend(&self, inner: &mut Inner, planning: &Planning, plan: PlannedSpend, now_ms: u64) -> Result<TxId> {
        inner.ensure_running()?;
        let spend = &planning.spend;
        check_plan(spend, &plan)?;
        let nonce = inner.spends.next_nonce;
        let issuer = self.anchors.read().issuer;
        // A nonce of its own makes each spend a new transaction, even over the same tokens as
        // one refused: the oracle's and the notary's decisions are final per transaction id.
        let tx = inner.node.prepare_spend(&spend.payer.client_id, &plan.parts, plan.outputs, issuer, nonce)?;
        let checked = TxIds::of(&tx)
            .and_then(|ids| Ok((self.payee_banks(inner, tx.body.outputs.iter().map(|o| &o.owner))?, ids)));
        let (payee_banks, ids) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                inner.node.release(&tx);
                return Err(e);
            }
        };
        let entry = SpendEntry { spend: spend.clone(), tx, idem: planning.idem.clone(), payee_banks, abandoned: None };
        let mut batch = WriteBatch::new();
        batch.put(PROGRAMMED_TABLE, row_key(&ids.tx_id), entry.to_bytes());
        batch.put(BANK_META_TABLE, NEXT_NONCE_KEY.to_vec(), (nonce + 1).to_le_bytes().to_vec());
        plan_idem_in_flight(&mut batch, entry.idem.as_ref(), &ids.tx_id, now_ms);
        if let Err(e) = self.commit(inner, batch) {
            inner.node.release(&entry.tx);
            return Err(e);
        }
        inner.spends.next_nonce = nonce + 1;
        inner.idem_started(entry.idem.as_ref(), &ids.tx_id);
        let tx_id = ids.tx_id;
        let pending = Pending { entry, ids, stage: Stage::Attesting, sent_at_ms: 0, retries: planning.retries };
        inner.spends.pending.insert(tx_id, pending);
        Ok(tx_id)
    }

    /// Send what a row waits for: the oracle's attestation, the notary's answer, or the
    /// oracle's taking of the abandon.
    fn send_spend_step(&self, inner: &mut Inner, tx_id: &TxId, now_ms: u64) {
        let pending = inner.spends.pending.get_mut(tx_id).expect("a row in flight");
        pending.sent_at_ms = now_ms;
        let entry = &pending.entry;
        let (to, message) = match &pending.stage {
            Stage::Attesting => {
                let request = AttestRequest {
                    event_id: entry.spend.subject().to_string(),
                    purpose: AttestPurpose::Spend(entry.spend.clone()),
                    tx: entry.tx.clone(),
                };
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
                let abandon = Abandon { event_id: entry.spend.subject().to_string(), tx_id: *tx_id, refused };
                (RoleId::Oracle, Message::Abandon(abandon))
            }
        };
        // A send that fails is a loss like any other: `tick` sends it again.
        let _ = self.transport.send(Envelope { from: self.role(), to, message });
    }

    /// Plans and rows not answered in time, asked again.
    pub(crate) fn resend_spends(&self, inner: &mut Inner, now_ms: u64) {
        let due = |sent_at_ms: u64| sent_at_ms.saturating_add(crate::RESEND_AFTER_MS) <= now_ms;
        let mut given_up = Vec::new();
        for (request, planning) in inner.spends.planning.iter_mut().filter(|(_, p)| due(p.sent_at_ms)) {
            planning.retries += 1;
            if planning.retries > PLAN_RETRIES_MAX {
                given_up.push(*request);
                continue;
            }
            planning.sent_at_ms = now_ms;
            self.send_plan_request(*request, &planning.spend);
        }
        for request in given_up {
            // Nothing was written: the client may ask again.
            let planning = inner.spends.planning.remove(&request).expect("found above");
            let e = Error::new(ErrorCode::RequestInProgress, "the oracle has not planned this payment in time; retry");
            planning.answers.iter().for_each(|answer| answer.send(Err(e.clone())));
        }
        let rows: Vec<TxId> =
            inner.spends.pending.iter().filter(|(_, p)| due(p.sent_at_ms)).map(|(id, _)| *id).collect();
        for tx_id in rows {
            self.send_spend_step(inner, &tx_id, now_ms);
        }
    }

    /// The oracle's answer about a row.
    pub(crate) fn on_spend_attest_reply(&self, inner: &mut Inner, reply: AttestReply, now_ms: u64) {
        let Some(pending) = inner.spends.pending.get(&reply.tx_id) else { return };
        match (&pending.stage, reply.verdict) {
            (Stage::Attesting, Verdict::Attested(attestation)) => {
                self.spend_attested(inner, &reply.tx_id, attestation, now_ms)
            }
            (Stage::Attesting, Verdict::Refused(e))
                if e.code == ErrorCode::RequestInProgress && pending.retries < PLAN_RETRIES_MAX =>
            {
                self.spend_replanned(inner, &reply.tx_id, now_ms)
            }
            (Stage::Attesting, Verdict::Refused(e)) => self.spend_refused(inner, &reply.tx_id, e),
            (Stage::Attesting, Verdict::Abandoned) => {
                let e = Error::new(ErrorCode::Conflict, "the oracle holds this transaction abandoned");
                self.spend_refused(inner, &reply.tx_id, e)
            }
            (Stage::Abandoning, Verdict::Abandoned | Verdict::Refused(_)) => {
                let mut batch = WriteBatch::new();
                batch.delete(PROGRAMMED_TABLE, row_key(&reply.tx_id));
                if self.commit(inner, batch).is_ok() {
                    inner.spends.pending.remove(&reply.tx_id);
                }
            }
            // A late copy of the attestation: the oracle has not taken the abandon yet.
            (Stage::Abandoning, Verdict::Attested(_)) | (Stage::Notarizing(_), _) => {}
        }
    }

    /// The oracle attested: checked, then to the notary (a bank blocked meanwhile still asks
    /// the notary, as for holds: only it knows whether it committed before the block).
    fn spend_attested(&self, inner: &mut Inner, tx_id: &TxId, attestation: Attestation, now_ms: u64) {
        let anchors = self.anchors.read().clone();
        if attestation.public_key != anchors.oracle
            || dtenge_core::crypto::verify(&anchors.oracle, &node_message(tx_id).0, &attestation.signature).is_err()
        {
            return;
        }
        let pending = inner.spends.pending.get_mut(tx_id).expect("found by the caller");
        let mut tx = pending.entry.tx.clone();
        tx.attestations.retain(|a| a.public_key != anchors.oracle);
        tx.attestations.push(attestation);
        let mut unblocked = anchors.clone();
        unblocked.blocked.clear();
        if let Err(e) = check_structure_ids(&tx, pending.ids.clone(), &unblocked) {
            panic!("a spend the bank built and the oracle attested breaks the stateless rules: {e}");
        }
        pending.stage = Stage::Notarizing(tx);
        self.send_spend_step(inner, tx_id, now_ms);
    }

    /// The oracle refused (for good): the row goes, the inputs are free again.
    fn spend_refused(&self, inner: &mut Inner, tx_id: &TxId, refused: Error) {
        let entry = &inner.spends.pending[tx_id].entry;
        let mut batch = WriteBatch::new();
        batch.delete(PROGRAMMED_TABLE, row_key(tx_id));
        if let Some(idem) = &entry.idem {
            batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        let pending = inner.spends.pending.remove(tx_id).expect("found above");
        inner.node.release(&pending.entry.tx);
        inner.answer(tx_id, pending.entry.idem.as_ref(), Err(refused));
    }

    /// The oracle refused the transaction because its subject was busy (another spend got
    /// there between this one's plan and its attestation): that refusal is final for this
    /// transaction, so the row goes, its inputs are free again, and the spend is planned again
    /// under a new request (then built with a new nonce), its clients still waiting.
    fn spend_replanned(&self, inner: &mut Inner, tx_id: &TxId, now_ms: u64) {
        let entry = &inner.spends.pending[tx_id].entry;
        let mut batch = WriteBatch::new();
        batch.delete(PROGRAMMED_TABLE, row_key(tx_id));
        if let Some(idem) = &entry.idem {
            batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        let pending = inner.spends.pending.remove(tx_id).expect("found above");
        inner.node.release(&pending.entry.tx);
        if let Some(idem) = &pending.entry.idem {
            inner.idem_in_flight.remove(&idem.key);
        }
        let answers = inner.waiters.remove(tx_id).unwrap_or_default();
        if answers.is_empty() {
            // Nobody waits (its client's answer went with a restart): not asked again.
            return;
        }
        let request = inner.spends.next_request;
        inner.spends.next_request += 1;
        let SpendEntry { spend, idem, .. } = pending.entry;
        self.send_plan_request(request, &spend);
        let planning = Planning { spend, idem, answers, sent_at_ms: now_ms, retries: pending.retries + 1 };
        inner.spends.planning.insert(request, planning);
    }

    /// The notary's answer to a spend's batch.
    pub(crate) fn on_spend_reply(&self, inner: &mut Inner, reply: NotarizeReply, now_ms: u64) {
        let Some(tx_id) = inner.spends.notarizing(reply.batch) else { return };
        let [outcome] = reply.outcomes.as_slice() else { return };
        match outcome {
            Outcome::Committed(proof) => {
                let Some(certificate) = &reply.certificate else { return };
                let pending = &inner.spends.pending[&tx_id];
                let notary = self.anchors.read().notary;
                if certificate.verify_signature(&notary).is_err()
                    || certificate.covers(&CompactTx::of(&pending.ids).hash(), proof).is_err()
                {
                    return;
                }
                self.spend_committed(inner, &tx_id, certificate.clone(), proof.clone(), now_ms);
            }
            // Not decided at the notary (being committed, or its store failed): ask again.
            Outcome::Refused(e) if matches!(e.code, ErrorCode::RequestInProgress | ErrorCode::StorageFailure) => {}
            Outcome::Refused(e) => self.spend_abandoned(inner, &tx_id, e.clone(), now_ms),
        }
    }

    /// The notary refused (for good) what the oracle attested: released and answered now, the
    /// row kept until the oracle takes the abandon (its subject waits for this transaction).
    fn spend_abandoned(&self, inner: &mut Inner, tx_id: &TxId, refused: Error, now_ms: u64) {
        let mut entry = inner.spends.pending[tx_id].entry.clone();
        entry.abandoned = Some(refused.clone());
        let mut batch = WriteBatch::new();
        batch.put(PROGRAMMED_TABLE, row_key(tx_id), entry.to_bytes());
        if let Some(idem) = &entry.idem {
            batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.node.release(&entry.tx);
        inner.answer(tx_id, entry.idem.as_ref(), Err(refused));
        let pending = inner.spends.pending.get_mut(tx_id).expect("found above");
        pending.entry = entry;
        pending.stage = Stage::Abandoning;
        self.send_spend_step(inner, tx_id, now_ms);
    }

    /// Certified: one commit holds this bank's side (a withdrawal's bank money too), the row
    /// gone, the key answered and the deliveries to the oracle and the payee banks.
    fn spend_committed(
        &self,
        inner: &mut Inner,
        tx_id: &TxId,
        certificate: CommitCertificate,
        proof: CommitProof,
        now_ms: u64,
    ) {
        let pending = inner.spends.pending.remove(tx_id).expect("found by the caller");
        let Stage::Notarizing(tx) = &pending.stage else { unreachable!("certified while at the notary only") };
        let (ids, spend) = (&pending.ids, &pending.entry.spend);
        let reference = reference_of(spend);
        let mut batch = WriteBatch::new();
        let purpose = purpose_of(&spend.kind);
        let mut delta = inner
            .node
            .plan_commit_ids(tx, &ids.tx_id, &ids.inputs, &ids.outputs, purpose, Some(&reference), now_ms)
            .unwrap_or_else(|e| panic!("a certified spend the bank built cannot be planned: {e}"));
        if let SpendKind::ContractWithdrawal { amount, .. } = &spend.kind {
            let fiat = inner
                .node
                .fiat_after(&spend.payer.client_id, *amount, Amount::ZERO)
                .unwrap_or_else(|e| panic!("a withdrawal's bank money was checked when it was admitted: {e}"));
            delta.set_fiat(&spend.payer.client_id, fiat);
        }
        delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
        dtenge_node::archive(&[self.id()], tx_id, tx, &mut batch)
            .unwrap_or_else(|e| panic!("a transaction cannot be archived: {e}"));
        batch.delete(PROGRAMMED_TABLE, row_key(tx_id));
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
            inner.spends.pending.insert(*tx_id, pending);
            return;
        }
        inner.apply_certified([delta], certificate.seq);
        inner.remember(*tx_id, certificate.seq);
        let me = self.role();
        for planned in sends {
            let envelope = inner.outbound.sent(planned, &me, now_ms);
            let _ = self.transport.send(envelope);
        }
        inner.answer(tx_id, pending.entry.idem.as_ref(), Ok(Committed { tx_id: *tx_id, seq: certificate.seq }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::SecretKey;
    use dtenge_core::token::Output;
    use dtenge_core::tx::{Command, TxBody};

    fn tiyn(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    fn party(n: u8) -> Party {
        Party {
            bank: "steppe".into(),
            client_id: format!("10014000000{n}"),
            address: SecretKey::from_seed([n; 32]).address(),
        }
    }

    #[test]
    fn a_spend_row_decodes_to_what_was_written_and_garbage_is_refused() {
        let tx = Transaction::new(TxBody { command: Command::Transfer, inputs: vec![], outputs: vec![], nonce: 4 });
        let entries = [
            SpendEntry {
                spend: Spend {
                    payer: party(1),
                    kind: SpendKind::MarkedTransfer { marking_id: "MK0000001".into(), to: party(2), amount: tiyn(5) },
                },
                tx: tx.clone(),
                idem: Some(IdemKey { key: "spend-1".into(), fingerprint: Hash32([3; 32]) }),
                payee_banks: vec!["sapa".into()],
                abandoned: None,
            },
            SpendEntry {
                spend: Spend {
                    payer: party(1),
                    kind: SpendKind::ContractWithdrawal {
                        contract: "GZ-1".into(),
                        amount: tiyn(7),
                        bank_account: party(3),
                    },
                },
                tx,
                idem: None,
                payee_banks: vec![],
                abandoned: Some(Error::new(ErrorCode::BankBlocked, "blocked")),
            },
        ];
        for entry in entries {
            let bytes = entry.to_bytes();
            assert_eq!(SpendEntry::from_bytes(&bytes).unwrap(), entry);
            assert!(SpendEntry::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn spend_batches_are_apart_from_the_outbox_and_stable_per_transaction() {
        let id = TxId(Hash32([0x5a; 32]));
        assert_eq!(batch_of(&id) & SPEND_BATCH_BITS, SPEND_BATCH_BITS);
        assert_eq!(batch_of(&id), batch_of(&TxId(Hash32([0x5a; 32]))));
        assert!(crate::hold::is_hold_batch(batch_of(&id)), "the notary's answer goes the holds' way first");
        assert_ne!(batch_of(&id), batch_of(&TxId(Hash32([0x5b; 32]))));
        assert!(!Spends::default().has_batch(batch_of(&id)), "no row, no batch");
    }

    #[test]
    fn a_plan_that_pays_other_than_asked_is_not_built() {
        let issuer = SecretKey::from_seed([9; 32]).address();
        let spend = Spend { payer: party(1), kind: SpendKind::VatPayment { amount: tiyn(60) } };
        let pay = |amount| vec![Output::standard(tiyn(amount), party(2).address, issuer)];
        let good = PlannedSpend { parts: vec![(Policy::Vat, tiyn(60))], outputs: pay(60) };
        check_plan(&spend, &good).unwrap();
        let more = PlannedSpend { parts: vec![(Policy::Vat, tiyn(61))], outputs: pay(61) };
        assert_eq!(check_plan(&spend, &more).unwrap_err().code, ErrorCode::Internal);
        let twice = PlannedSpend { parts: vec![(Policy::Vat, tiyn(30)), (Policy::Vat, tiyn(30))], outputs: pay(60) };
        assert!(check_plan(&spend, &twice).is_err());
        let held = PlannedSpend { parts: vec![(Policy::Held { event: Hash32([1; 32]) }, tiyn(60))], outputs: pay(60) };
        assert!(check_plan(&spend, &held).is_err());
        let none = PlannedSpend { parts: vec![], outputs: pay(60) };
        assert!(check_plan(&spend, &none).is_err());
        let short = PlannedSpend { parts: vec![(Policy::Vat, tiyn(60))], outputs: pay(59) };
        assert!(check_plan(&spend, &short).is_err());
    }
}
