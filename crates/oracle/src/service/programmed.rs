//! Programmed spends among the roles: marking by addresses, digital VAT and contracts (SPEC
//! §5.2, §5.3), the way holds go (`docs/ARCHITECTURE.md`, "Programmed spend").
//!
//! 1. A provider or an initiator registers at the oracle (calls on [`OracleService`]): a
//!    marking, VAT payers and the tax account, e-invoices, contracts. Each is checked by the
//!    pure registry's `plan_*`, written to the role's own tables (`registry.rs`), then applied.
//! 2. The payer's bank asks for a plan ([`PlanRequest`]): the registry's `plan_*` decides what
//!    the payer spends and pays. Nothing is written: a plan decides nothing.
//! 3. The bank builds and signs the transaction from the plan and asks the oracle to attest it
//!    ([`AttestPurpose::Spend`]). The oracle plans again from its registry now, checks the
//!    transaction with the registry's `confirm_*`, and writes its decision **before** it
//!    answers; decisions are final per transaction id. An attested spend holds its subject (the
//!    marking, the invoice, the contract; every VAT payment shares one) until its certificate
//!    comes or its bank abandons it, so limits are never consumed twice and an invoice is
//!    never paid twice: a plan of a busy subject waits (in memory) until it is free, an
//!    attestation is refused `REQUEST_IN_PROGRESS` (final; its bank plans again).
//! 4. The bank notarizes it and delivers the certified transaction on its numbered stream; the
//!    oracle applies the registry's change (`confirm_*` again, at the decision's time, against
//!    the subject that waited for it) once, in the commit that stores the delivery's number.
//!

use super::registry;
use super::rows::stored;
use super::ROLE_META_TABLE;
use super::{ensure_running, Inner, OracleService, TxDecision, EVENT_KEY_BYTES_MAX, ROLE_DECISIONS_TABLE};
use crate::contract::ContractChange;
use crate::marking::{MarkedPlan, MarkingChange};
use crate::vat::{VatPayment, VatUpdate};
use crate::{Contract, ContractSpec, Invoice, InvoiceSpec, Marking, MarkingSpec, Oracle, ProviderKind, ProviderView};
use crate::{Credential, SpendPlan, UseKind};
use dtenge_core::crypto::{hash_parts, Hash32, NodeKey};
use dtenge_core::party::Party;
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_store::{Store, WriteBatch};
use dtenge_wire::{
    Abandon, AttestPurpose, AttestRequest, Encode, Envelope, Message, PlanReply, PlanRequest, PlannedSpend, RoleId,
    Spend, SpendKind, Verdict,
};
use std::collections::{BTreeMap, HashMap};

/// Shortest provider token (the caller generates it: 32 random bytes in hex).
pub const PROVIDER_TOKEN_BYTES_MIN: usize = 32;
/// `provider_key:<key>` in the role's meta table -> the request's fingerprint and the provider
/// id: a provider registration's idempotency key, written with the provider.
const PROVIDER_KEY_PREFIX: &[u8] = b"provider_key:";
/// `marking_key:<bank>\0<key>` in [`ROLE_META_TABLE`] -> the request's fingerprint and the
/// marking's id: a marking a bank asked for under an idempotency key.
const MARKING_KEY_PREFIX: &[u8] = b"marking_key:";

/// Most plan requests waiting for their subject at once: beyond it a busy subject's plan is
/// refused `REQUEST_IN_PROGRESS` (the bank asks again later).
pub const PLANS_WAITING_MAX: usize = 1_024;

/// The registry of programmed money and the spends waiting for their certificates.
pub(crate) struct Programmed {
    pub(crate) registry: Oracle,
    /// Subject -> the attested spend whose certificate (or abandon) it waits for.
    pub(crate) in_flight: BTreeMap<String, TxId>,
    /// Subject -> the banks' plan requests waiting for it to be free (not stored: a bank asks
    /// again), answered in order when it is.
    waiting: BTreeMap<String, Vec<(String, PlanRequest)>>,
}

impl Programmed {
    /// The registry from its tables, and the subjects held by the attested spends.
    pub(crate) fn load(store: &Store, key: NodeKey, decisions: &HashMap<TxId, TxDecision>) -> Result<Programmed> {
        let registry = registry::load(store, key)?;
        let mut in_flight = BTreeMap::new();
        for (tx_id, decision) in decisions {
            if let TxDecision::Spent { spend, .. } = decision {
                if in_flight.insert(spend.subject().to_string(), *tx_id).is_some() {
                    return Err(Error::storage(format!(
                        "oracle role: two spends of {} are attested at once",
                        spend.subject()
                    )));
                }
            }
        }
        Ok(Programmed { registry, in_flight, waiting: BTreeMap::new() })
    }
}

/// What a certified spend changes in the registry.
pub(crate) enum SpendChange {
    Marking(MarkingChange),
    Invoice(Invoice),
    Vat(VatPayment),
    Contract(ContractChange),
}

impl SpendChange {
    pub(crate) fn writes(&self, batch: &mut WriteBatch) {
        match self {
            SpendChange::Marking(change) => registry::marking_writes(change, batch),
            SpendChange::Invoice(invoice) => registry::invoice_writes(invoice, batch),
            SpendChange::Vat(payment) => registry::vat_payment_writes(payment, batch),
            SpendChange::Contract(change) => registry::contract_writes(change, batch),
        }
    }

    pub(crate) fn apply(self, registry: &mut Oracle) {
        match self {
            SpendChange::Marking(change) => registry.apply_marking(change),
            SpendChange::Invoice(invoice) => registry.apply_invoice(invoice),
            SpendChange::Vat(payment) => registry.apply_vat_payment(payment),
            SpendChange::Contract(change) => registry.apply_contract(change),
        }
    }
}

/// A spend as the registry plans it.
struct Planned {
    plan: SpendPlan,
    /// A marked transfer's levels.
    marked: Option<MarkedPlan>,
}

impl Planned {
    fn wire(&self) -> PlannedSpend {
        PlannedSpend { parts: self.plan.parts.clone(), outputs: self.plan.outputs.clone() }
    }
}

impl OracleService {
    // ---- registrations (the providers' and the initiators' calls) ----

    /// Register a provider that authenticates with `token` (generated by the caller, shown
    /// once; only its hash is kept).
    pub fn register_provider(
        &self,
        id: &str,
        name: &str,
        kind: ProviderKind,
        token: &str,
        now_ms: u64,
    ) -> Result<ProviderView> {
        ensure!(
            token.len() >= PROVIDER_TOKEN_BYTES_MIN,
            MalformedInput,
            "a provider token has at least {PROVIDER_TOKEN_BYTES_MIN} bytes"
        );
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        let provider = inner.programmed.registry.plan_provider(id, name, kind, token, now_ms)?;
        let mut batch = WriteBatch::new();
        registry::provider_writes(&provider, &mut batch);
        self.commit(&mut inner, batch)?;
        let view = provider.view();
        inner.programmed.registry.apply_provider(provider);
        Ok(view)
    }

    /// Register a provider under an idempotency key, with a token the oracle derives from its
    /// own key, the idempotency key and the request's fingerprint (`fingerprint`): the same key
    /// and request answer the same provider and token again, though only the token's hash is
    /// kept; another request under the key is `IDEMPOTENCY_KEY_REUSED`. The token is returned
    /// with the provider.
    pub fn register_provider_keyed(
        &self,
        id: &str,
        name: &str,
        kind: ProviderKind,
        idem: (&str, Hash32),
        now_ms: u64,
    ) -> Result<(ProviderView, String)> {
        let (key, fingerprint) = idem;
        ensure!(
            !key.is_empty() && key.len() <= EVENT_KEY_BYTES_MAX,
            MalformedInput,
            "an idempotency key has 1 to {EVENT_KEY_BYTES_MAX} bytes"
        );
        // Deterministic (Ed25519 signs deterministically) and unknowable without the key.
        let message = hash_parts(b"dtenge/oracle/keyed-provider/v1", &[key.as_bytes(), &fingerprint.0]);
        let token = hash_parts(b"dtenge/oracle/provider-token/v1", &[&self.key.sign(&message.0).sig.0]).to_hex();
        let mut row = PROVIDER_KEY_PREFIX.to_vec();
        row.extend_from_slice(key.as_bytes());
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        if let Some(bytes) = self.store.get(ROLE_META_TABLE, &row)? {
            let (first, provider) = stored::<(Hash32, String)>(&bytes, "a provider's idempotency key")?;
            ensure!(
                first == fingerprint,
                IdempotencyKeyReused,
                "idempotency key '{key}' was used with a different request"
            );
            let registered = inner.programmed.registry.authenticate(&token)?;
            assert_eq!(registered.id, provider, "a keyed provider's token is derived again from its key");
            return Ok((registered.view(), token));
        }
        let provider = inner.programmed.registry.plan_provider(id, name, kind, &token, now_ms)?;
        let mut batch = WriteBatch::new();
        registry::provider_writes(&provider, &mut batch);
        batch.put(ROLE_META_TABLE, row, (fingerprint, provider.id.clone()).to_bytes());
        self.commit(&mut inner, batch)?;
        let view = provider.view();
        inner.programmed.registry.apply_provider(provider);
        Ok((view, token))
    }

    /// The tax authority registers a VAT payer.
    pub fn register_vat_payer(&self, who: Credential<'_>, payer: Party) -> Result<Party> {
        self.known_banks(&[&payer])?;
        self.vat_update(who, VatUpdate::Payer(payer))
    }

    /// The tax authority names its account (on the Treasury: the caller checks the bank's kind).
    pub fn set_tax_account(&self, who: Credential<'_>, account: Party) -> Result<Party> {
        self.known_banks(&[&account])?;
        self.vat_update(who, VatUpdate::TaxAccount(account))
    }

    fn vat_update(&self, who: Credential<'_>, update: VatUpdate) -> Result<Party> {
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        let registry = &inner.programmed.registry;
        let provider = registry.identify(who)?;
        let update = registry.plan_vat_update(provider, update)?;
        let mut batch = WriteBatch::new();
        registry::vat_update_writes(&update, &mut batch);
        self.commit(&mut inner, batch)?;
        let party = match &update {
            VatUpdate::Payer(p) | VatUpdate::TaxAccount(p) => p.clone(),
        };
        inner.programmed.registry.apply_vat_update(update);
        Ok(party)
    }

    /// The tax authority registers an e-invoice.
    pub fn register_invoice(&self, who: Credential<'_>, spec: InvoiceSpec, now_ms: u64) -> Result<Invoice> {
        self.known_banks(&[&spec.seller, &spec.buyer])?;
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        let registry = &inner.programmed.registry;
        let invoice = registry.plan_invoice(registry.identify(who)?, spec, now_ms)?;
        let mut batch = WriteBatch::new();
        registry::invoice_writes(&invoice, &mut batch);
        self.commit(&mut inner, batch)?;
        inner.programmed.registry.apply_invoice(invoice.clone());
        Ok(invoice)
    }

    /// The smart-contract portal registers a contract.
    pub fn register_contract(&self, who: Credential<'_>, spec: ContractSpec, now_ms: u64) -> Result<Contract> {
        self.known_banks(&[&spec.sender, &spec.recipient])?;
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        let registry = &inner.programmed.registry;
        let change = registry.plan_contract(registry.identify(who)?, spec, now_ms)?;
        let mut batch = WriteBatch::new();
        registry::contract_writes(&change, &mut batch);
        self.commit(&mut inner, batch)?;
        let contract = change.contract.summary();
        inner.programmed.registry.apply_contract(change);
        Ok(contract)
    }

    /// An initiator's bank registers a marking by addresses for its client.
    pub fn create_marking(&self, spec: MarkingSpec, now_ms: u64) -> Result<Marking> {
        self.create_marking_keyed(spec, None, now_ms)
    }

    /// Register a marking, once per idempotency key of its initiator's bank (`idem`: the key
    /// and the request's fingerprint): the same key and request answer the marking registered
    /// under it, as it is now (without its moves); another request under the key is
    /// `IDEMPOTENCY_KEY_REUSED`. A bank in a process of its own creates its markings so: its
    /// question may reach the oracle twice.
    pub fn create_marking_keyed(
        &self,
        spec: MarkingSpec,
        idem: Option<(&str, Hash32)>,
        now_ms: u64,
    ) -> Result<Marking> {
        let parties: Vec<&Party> =
            std::iter::once(&spec.initiator).chain(spec.levels.iter().flat_map(|l| &l.recipients)).collect();
        self.known_banks(&parties)?;
        let registered_by = spec.initiator.bank.clone();
        let key_row = match idem {
            Some((key, _)) => {
                ensure!(
                    !key.is_empty() && key.len() <= EVENT_KEY_BYTES_MAX,
                    MalformedInput,
                    "an idempotency key has 1 to {EVENT_KEY_BYTES_MAX} bytes"
                );
                // Scoped by the bank: two banks' keys never meet.
                let mut row = MARKING_KEY_PREFIX.to_vec();
                row.extend_from_slice(registered_by.as_bytes());
                row.push(0);
                row.extend_from_slice(key.as_bytes());
                Some(row)
            }
            None => None,
        };
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        if let (Some(row), Some((key, fingerprint))) = (&key_row, idem) {
            if let Some(bytes) = self.store.get(ROLE_META_TABLE, row)? {
                let (first, id) = stored::<(Hash32, String)>(&bytes, "a marking's idempotency key")?;
                ensure!(
                    first == fingerprint,
                    IdempotencyKeyReused,
                    "idempotency key '{key}' was used with a different request"
                );
                return inner.programmed.registry.marking(&id).map(Marking::summary);
            }
        }
        let change = inner.programmed.registry.plan_marking(spec, &registered_by, now_ms)?;
        let mut batch = WriteBatch::new();
        registry::marking_writes(&change, &mut batch);
        if let (Some(row), Some((_, fingerprint))) = (key_row, idem) {
            batch.put(ROLE_META_TABLE, row, (fingerprint, change.marking.id.clone()).to_bytes());
        }
        self.commit(&mut inner, batch)?;
        let marking = change.marking.summary();
        inner.programmed.registry.apply_marking(change);
        Ok(marking)
    }

    fn known_banks(&self, parties: &[&Party]) -> Result<()> {
        for party in parties {
            ensure!(
                self.anchors.banks.contains_key(&party.bank),
                UnknownAccount,
                "'{}' is not a bank of this network",
                party.bank
            );
        }
        Ok(())
    }

    // ---- reads ----

    /// The provider a bearer token belongs to (`UNAUTHORIZED` for a token no provider holds):
    /// for the providers' calls that name their provider, such as
    /// [`OracleService::register_event`].
    pub fn authenticate(&self, token: &str) -> Result<ProviderView> {
        self.identify(Credential::Token(token))
    }

    /// The provider calling with `who` (`UNAUTHORIZED` for a token no provider holds, or a
    /// certified provider not registered here).
    pub fn identify(&self, who: Credential<'_>) -> Result<ProviderView> {
        Ok(self.inner.lock().programmed.registry.identify(who)?.view())
    }

    /// Every registered provider, by id.
    pub fn providers(&self) -> Vec<ProviderView> {
        self.inner.lock().programmed.registry.providers().map(|p| p.view()).collect()
    }

    /// A marking with its moves (its trace).
    pub fn marking(&self, id: &str) -> Result<Marking> {
        self.inner.lock().programmed.registry.marking(id).cloned()
    }

    /// Every marking, without its moves.
    pub fn markings(&self) -> Vec<Marking> {
        self.inner.lock().programmed.registry.markings().map(Marking::summary).collect()
    }

    /// Every contract, without its uses.
    pub fn contracts(&self) -> Vec<Contract> {
        self.inner.lock().programmed.registry.contracts().map(Contract::summary).collect()
    }

    pub fn invoice(&self, id: &str) -> Result<Invoice> {
        self.inner.lock().programmed.registry.invoice(id).cloned()
    }

    /// A contract with its uses.
    pub fn contract(&self, number: &str) -> Result<Contract> {
        self.inner.lock().programmed.registry.contract(number).cloned()
    }

    /// The marking `id` without its moves, with the move transaction `tx_id` made: read in
    /// place, its moves never copied (a bank's receipt asks for it while it polls).
    pub fn marking_and_move(&self, id: &str, tx_id: Option<TxId>) -> Result<(Marking, Option<crate::Move>)> {
        let inner = self.inner.lock();
        let marking = inner.programmed.registry.marking(id)?;
        let moved = tx_id.and_then(|tx_id| marking.moves.iter().rev().find(|m| m.body.tx_id == tx_id)).cloned();
        Ok((marking.summary(), moved))
    }

    /// The contract `number` without its uses, with the use transaction `tx_id` made: read
    /// in place, its uses never copied.
    pub fn contract_and_use(
        &self,
        number: &str,
        tx_id: Option<TxId>,
    ) -> Result<(Contract, Option<crate::ContractUse>)> {
        let inner = self.inner.lock();
        let contract = inner.programmed.registry.contract(number)?;
        let used = tx_id.and_then(|tx_id| contract.uses.iter().rev().find(|u| u.body.tx_id == tx_id)).cloned();
        Ok((contract.summary(), used))
    }

    /// The VAT payment transaction `tx_id` made, if the oracle recorded it.
    pub fn vat_payment(&self, tx_id: TxId) -> Option<VatPayment> {
        self.inner.lock().programmed.registry.vat_payments().iter().rev().find(|p| p.tx_id == tx_id).cloned()
    }

    pub fn vat_payments(&self) -> Vec<VatPayment> {
        self.inner.lock().programmed.registry.vat_payments().to_vec()
    }

    pub fn vat_payers(&self) -> Vec<Party> {
        self.inner.lock().programmed.registry.vat_payers().cloned().collect()
    }

    pub fn tax_account(&self) -> Option<Party> {
        self.inner.lock().programmed.registry.tax_account().cloned()
    }

    /// Spends attested and waiting for their certificate (or their abandon).
    pub fn spends_in_flight(&self) -> usize {
        self.inner.lock().programmed.in_flight.len()
    }

    // ---- the protocol with the banks ----

    /// A bank asks for a plan: answered from the registry now, nothing written; a plan of a
    /// subject another spend holds waits until it is free (as a spend in the one-process
    /// network waited for the oracle's lock).
    pub(super) fn on_plan(&self, inner: &mut Inner, bank: &str, request: PlanRequest, now_ms: u64) {
        let programmed = &mut inner.programmed;
        let subject = request.spend.subject();
        let waiting_total: usize = programmed.waiting.values().map(Vec::len).sum();
        if request.spend.payer.bank == bank
            && programmed.in_flight.contains_key(subject)
            && waiting_total < PLANS_WAITING_MAX
        {
            let waiting = programmed.waiting.entry(subject.to_string()).or_default();
            // A copy of a request that waits already (the bank asked again) waits once.
            if !waiting.iter().any(|(b, r)| b == bank && *r == request) {
                waiting.push((bank.to_string(), request));
            }
            return;
        }
        let plan = self.plan_spend(&inner.programmed, bank, &request.spend, now_ms).map(|p| p.wire());
        let reply = PlanReply { request: request.request, spend: request.spend, plan };
        let to = RoleId::Bank(bank.to_string());
        // A lost answer is asked for again.
        let _ = self.transport.send(Envelope { from: RoleId::Oracle, to, message: Message::PlanReply(reply) });
    }

    /// What the registry calls for now: the same checks (and error codes) as the one-process
    /// network's, plus the bank's own clients only and one spend per subject at a time.
    fn plan_spend(&self, programmed: &Programmed, bank: &str, spend: &Spend, now_ms: u64) -> Result<Planned> {
        ensure!(spend.payer.bank == bank, Forbidden, "a bank spends for its own clients only");
        if let Some(tx_id) = programmed.in_flight.get(spend.subject()) {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                format!("a payment under {} is being committed ({tx_id}); retry", spend.subject()),
            ));
        }
        let (registry, issuer, payer) = (&programmed.registry, self.anchors.issuer, &spend.payer);
        let plan = match &spend.kind {
            SpendKind::MarkedTransfer { .. } => {
                let marked = marked_plan(registry, spend, issuer)?;
                return Ok(Planned { plan: marked.spend.clone(), marked: Some(marked) });
            }
            SpendKind::InvoicePayment { invoice_id, amount, vat_available } => {
                registry.plan_invoice_payment(invoice_id, payer, *amount, *vat_available, issuer)?
            }
            SpendKind::VatPayment { amount } => registry.plan_vat_payment(payer, *amount, issuer)?,
            SpendKind::ContractPayment { contract, amount } => {
                registry.plan_contract_payment(contract, payer, *amount, now_ms, issuer)?
            }
            SpendKind::ContractWithdrawal { contract, amount, bank_account } => {
                // The registry asserts it; from a bank's message it is a refusal.
                ensure!(bank_account.bank == bank, Forbidden, "a withdrawal pays the holder's own bank");
                registry.plan_contract_withdrawal(contract, payer, bank_account, *amount, now_ms, issuer)?
            }
        };
        Ok(Planned { plan, marked: None })
    }

    /// A subject's spend was applied or abandoned: the plans waiting for it are answered.
    pub(super) fn subject_freed(&self, inner: &mut Inner, subject: &str, now_ms: u64) {
        let waiting = inner.programmed.waiting.remove(subject).unwrap_or_default();
        for (bank, request) in waiting {
            self.on_plan(inner, &bank, request, now_ms);
        }
    }

    /// Check a spend never decided, write the decision (the subject now waits for it), then
    /// answer it; `None` when the commit failed (the role stops).
    pub(super) fn decide_spend(
        &self,
        inner: &mut Inner,
        bank: &str,
        request: &AttestRequest,
        tx_id: &TxId,
        now_ms: u64,
    ) -> Option<Verdict> {
        let AttestPurpose::Spend(spend) = &request.purpose else { unreachable!("called for spends only") };
        let (event_id, tx) = (&request.event_id, &request.tx);
        let checked = if event_id != spend.subject() {
            Err(Error::malformed("an attest request names its spend's subject"))
        } else {
            self.plan_spend(&inner.programmed, bank, spend, now_ms).and_then(|planned| {
                confirm(&inner.programmed.registry, spend, &planned, tx, now_ms)?;
                Ok(planned)
            })
        };
        let decision = match &checked {
            Ok(planned) => TxDecision::Spent { spend: Box::new(spend.clone()), plan: planned.wire(), at_ms: now_ms },
            Err(e) => TxDecision::Refused(e.clone()),
        };
        let mut batch = WriteBatch::new();
        batch.put(ROLE_DECISIONS_TABLE, tx_id.to_bytes(), decision.to_bytes());
        self.commit(inner, batch).ok()?;
        if checked.is_ok() {
            inner.stats.attested += 1;
            inner.programmed.in_flight.insert(spend.subject().to_string(), *tx_id);
        } else {
            inner.stats.refused += 1;
        }
        let verdict = self.verdict_of(&decision, tx_id);
        inner.decisions.insert(*tx_id, decision);
        Some(verdict)
    }

    /// The bank gives up an attested spend the notary refused: its subject waits no more.
    /// `None`: not this bank's, or the commit failed.
    pub(super) fn abandon_spend(
        &self,
        inner: &mut Inner,
        bank: &str,
        abandon: &Abandon,
        spend: &Spend,
        now_ms: u64,
    ) -> Option<Verdict> {
        if spend.payer.bank != bank {
            return None;
        }
        let subject = spend.subject();
        assert_eq!(
            inner.programmed.in_flight.get(subject),
            Some(&abandon.tx_id),
            "an attested spend holds its subject until applied or abandoned"
        );
        let mut batch = WriteBatch::new();
        batch.put(ROLE_DECISIONS_TABLE, abandon.tx_id.to_bytes(), TxDecision::Abandoned.to_bytes());
        self.commit(inner, batch).ok()?;
        inner.programmed.in_flight.remove(subject);
        inner.decisions.insert(abandon.tx_id, TxDecision::Abandoned);
        inner.stats.abandoned += 1;
        self.subject_freed(inner, subject, now_ms);
        Some(Verdict::Abandoned)
    }

    /// The registry's change for an attested spend's certificate: confirmed again at the
    /// decision's time, against the subject that waited for it (so it cannot fail).
    pub(super) fn certified_spend(
        &self,
        programmed: &Programmed,
        tx: &Transaction,
        spend: &Spend,
        plan: &PlannedSpend,
        at_ms: u64,
    ) -> SpendChange {
        let mut planned = Planned {
            plan: SpendPlan { payer: spend.payer.clone(), parts: plan.parts.clone(), outputs: plan.outputs.clone() },
            marked: None,
        };
        if matches!(spend.kind, SpendKind::MarkedTransfer { .. }) {
            let marked = marked_plan(&programmed.registry, spend, self.anchors.issuer)
                .unwrap_or_else(|e| panic!("an attested marked transfer plans again at its certificate: {e}"));
            assert_eq!(marked.spend, planned.plan, "a marking waits unchanged for its attested transfer");
            planned.marked = Some(marked);
        }
        confirm(&programmed.registry, spend, &planned, tx, at_ms)
            .unwrap_or_else(|e| panic!("an attested spend confirms again at its certificate: {e}"))
    }
}

/// A marked transfer's plan, its recipient as the marking lists it (the bank names the
/// address; the registry keeps the party).
fn marked_plan(registry: &Oracle, spend: &Spend, issuer: dtenge_core::crypto::Address) -> Result<MarkedPlan> {
    let SpendKind::MarkedTransfer { marking_id, to, amount } = &spend.kind else {
        unreachable!("called for marked transfers only")
    };
    let marking = registry.marking(marking_id)?;
    let listed = marking.levels.iter().flat_map(|l| &l.recipients).find(|p| p.address == to.address);
    let to = listed.unwrap_or(to);
    registry.plan_marked_transfer(marking_id, &spend.payer, to, *amount, issuer)
}

/// The registry's check of the transaction against the plan, and the change it makes.
fn confirm(registry: &Oracle, spend: &Spend, planned: &Planned, tx: &Transaction, at_ms: u64) -> Result<SpendChange> {
    let plan = &planned.plan;
    Ok(match &spend.kind {
        SpendKind::MarkedTransfer { .. } => {
            let marked = planned.marked.as_ref().expect("a marked transfer is planned with its levels");
            SpendChange::Marking(registry.confirm_marked_transfer(marked, tx, at_ms)?.0)
        }
        SpendKind::InvoicePayment { invoice_id, .. } => {
            SpendChange::Invoice(registry.confirm_invoice_payment(invoice_id, plan, tx, at_ms)?.0)
        }
        SpendKind::VatPayment { .. } => SpendChange::Vat(registry.confirm_vat_payment(plan, tx, at_ms)?.0),
        SpendKind::ContractPayment { contract, .. } => {
            SpendChange::Contract(registry.confirm_contract_use(contract, UseKind::Transfer, plan, tx, at_ms)?.0)
        }
        SpendKind::ContractWithdrawal { contract, .. } => {
            SpendChange::Contract(registry.confirm_contract_use(contract, UseKind::Withdrawal, plan, tx, at_ms)?.0)
        }
    })
}
