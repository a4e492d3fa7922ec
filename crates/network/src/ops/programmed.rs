//! Marking by addresses (SPEC §5.2), digital VAT (§5.3) and split payments (§5.4).
//!
//! Marked and VAT-marked payments take one shape: the oracle decides a [`SpendPlan`] from its
//! registry, the payer's node builds the transaction for it, the oracle checks the
//! transaction against the plan and attests it, and the transaction commits together with
//! the oracle's record. Validators refuse any transaction that moves marked or VAT-marked
//! tokens without the oracle's attestation, so a node cannot route them elsewhere.

use super::holding::{notice, Notice, PAGE_LIMIT_MAX};
use crate::types::{
    ContractPaymentRequest, ContractReceipt, ContractRequest, ContractView, ContractWithdrawalRequest,
    InvoicePaymentRequest, InvoiceReceipt, InvoiceRequest, MarkedReceipt, MarkedTransferRequest, MarkingPage,
    MarkingRequest, MarkingView, NotificationKind, PartyRef, SplitPaymentRequest, SplitReceipt, VatPaymentRequest,
};
use crate::{Idem, Network};
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::Policy;
use dtenge_core::tx::{Attestation, Transaction, TX_OUTPUTS_MAX};
use dtenge_core::{ensure, Result};
use dtenge_node::{ClientKind, Purpose};
use dtenge_oracle::vat::{VatPayment, VatUpdate};
use dtenge_oracle::{ContractSpec, Invoice, Level, MarkingSpec, Share, SpendPlan, UseKind};
use dtenge_store::WriteBatch;
use serde::Serialize;

/// Most lines of one split payment.
pub const SPLIT_LINES_MAX: usize = 64;
const _: () = assert!(SPLIT_LINES_MAX < TX_OUTPUTS_MAX);

impl Network {
    fn party_ref(&self, party: &PartyRef) -> Result<Party> {
        Ok(self.party(&party.bank, &party.client_id)?.0)
    }

    /// Build the transaction for `plan` at the payer's node, have the oracle confirm it
    /// (`confirm` returns its attestation, its writes, the answer and its change), commit it
    /// with the notices, and return the answer and the change for the caller to apply.
    #[allow(clippy::too_many_arguments)]
    fn execute_spend<A: Serialize, C>(
        &self,
        idem: Option<&Idem>,
        plan: &SpendPlan,
        purpose: Purpose,
        reference: &str,
        fiat: &[(String, String, Amount)],
        notices: Vec<Notice>,
        confirm: impl FnOnce(&Transaction) -> Result<(Attestation, WriteBatch, A, C)>,
    ) -> Result<(A, C)> {
        let slot = self.active_participant(&plan.payer.bank)?;
        let mut tx = slot.state.lock().prepare_spend(
            &plan.payer.client_id,
            &plan.parts,
            plan.outputs.clone(),
            self.issuer(),
            self.nonce(),
        )?;
        let (attestation, extra, answer, change) = confirm(&tx).inspect_err(|_| self.release(&tx))?;
        tx.attestations.push(attestation);
        self.execute_notified(idem, &tx, purpose, reference, fiat, extra, notices, &answer)?;
        Ok((answer, change))
    }

    // ---- marking by addresses ----

    /// The initiator's node registers a marking on the oracle.
    pub fn create_marking(&self, idem: Option<&Idem>, node_id: &str, request: MarkingRequest) -> Result<MarkingView> {
        let _gate = self.gate_shared();
        self.active_participant(node_id)?;
        let (initiator, kind) = self.party(node_id, &request.initiator)?;
        ensure!(
            kind != ClientKind::Institution,
            Forbidden,
            "a marking is initiated by a client or a government agency, not the node's own account"
        );
        let mut levels = Vec::with_capacity(request.levels.len());
        for level in &request.levels {
            let recipients = level.recipients.iter().map(|p| self.party_ref(p)).collect::<Result<Vec<_>>>()?;
            levels.push(Level { recipients, limit_tiyn: level.limit_tiyn });
        }
        let mut oracle = self.oracle.lock();
        let spec = MarkingSpec { initiator, reference: request.reference, levels };
        let change = oracle.plan_marking(spec, node_id, self.now_ms())?;
        let mut batch = WriteBatch::new();
        change.writes(&mut batch)?;
        let view = MarkingView::of(&change.marking);
        self.commit(idem, batch, &view)?;
        oracle.apply_marking(change);
        Ok(view)
    }

    /// Move marked DT one level down (the initiator marks standard DT for level 1). The
    /// initiator's node is told of every move.
    pub fn marked_transfer(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: MarkedTransferRequest,
    ) -> Result<MarkedReceipt> {
        let _gate = self.gate_shared();
        self.active_participant(node_id)?;
        let (payer, _) = self.party(node_id, &request.from)?;
        let to = self.party_ref(&request.to)?;
        self.ensure_not_blocked(&to.bank)?;
        let mut oracle = self.oracle.lock();
        let plan = oracle.plan_marked_transfer(&request.marking_id, &payer, &to, request.amount_tiyn, self.issuer())?;
        let marking = oracle.marking(&request.marking_id)?;
        let unmarked = plan.to_level == marking.depth();
        let text = format!(
            "marking {} ({}): {} moved from {} (level {}) to {} (level {}){}",
            marking.id,
            marking.reference,
            plan.amount,
            payer.client_id,
            plan.from_level,
            to.client_id,
            plan.to_level,
            if unmarked { "; marking removed at the last level" } else { "" }
        );
        let notices =
            vec![notice(&marking.initiator, NotificationKind::MarkedTransfer, &marking.id, plan.amount, text)];
        let reference = format!("marking {}", marking.id);
        let now = self.now_ms();
        let (receipt, change) =
            self.execute_spend(idem, &plan.spend, Purpose::MarkedTransfer, &reference, &[], notices, |tx| {
                let (change, attestation) = oracle.confirm_marked_transfer(&plan, tx, now)?;
                let mut writes = WriteBatch::new();
                change.writes(&mut writes)?;
                let moved = change.moves.first().cloned().expect("a confirmed marked transfer records its move");
                let receipt = MarkedReceipt { tx_id: tx.id(), marking: change.marking.clone(), moved };
                Ok((attestation, writes, receipt, change))
            })?;
        oracle.apply_marking(change);
        Ok(receipt)
    }

    pub fn markings(&self, offset: usize, limit: usize) -> Result<MarkingPage> {
        ensure!(limit > 0 && limit <= PAGE_LIMIT_MAX, MalformedInput, "limit is 1 to {PAGE_LIMIT_MAX}");
        let oracle = self.oracle.lock();
        let markings = oracle.markings().rev().skip(offset).take(limit).map(|m| m.summary()).collect();
        Ok(MarkingPage { markings, total: oracle.markings().count(), offset, limit })
    }

    pub fn marking(&self, id: &str) -> Result<MarkingView> {
        Ok(MarkingView::of(self.oracle.lock().marking(id)?))
    }

    // ---- digital VAT ----

    fn vat_update(&self, idem: Option<&Idem>, token: &str, update: VatUpdate) -> Result<Party> {
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        let provider = oracle.authenticate(token)?.clone();
        let update = oracle.plan_vat_update(&provider, update)?;
        let party = match &update {
            VatUpdate::Payer(p) | VatUpdate::TaxAccount(p) => p.clone(),
        };
        let mut batch = WriteBatch::new();
        update.writes(&mut batch)?;
        self.commit(idem, batch, &party)?;
        oracle.apply_vat_update(update);
        Ok(party)
    }

    /// The tax authority registers a VAT payer.
    pub fn register_vat_payer(&self, idem: Option<&Idem>, token: &str, payer: PartyRef) -> Result<Party> {
        let party = self.party_ref(&payer)?;
        self.vat_update(idem, token, VatUpdate::Payer(party))
    }

    /// The tax authority names its account on the Treasury node.
    pub fn set_tax_account(&self, idem: Option<&Idem>, token: &str, account: PartyRef) -> Result<Party> {
        ensure!(account.bank == crate::TREASURY_ID, Forbidden, "the tax authority's account is on the Treasury node");
        let party = self.party_ref(&account)?;
        self.vat_update(idem, token, VatUpdate::TaxAccount(party))
    }

    pub fn vat_payers(&self) -> Vec<Party> {
        self.oracle.lock().vat_payers().cloned().collect()
    }

    pub fn vat_payments(&self) -> Vec<VatPayment> {
        self.oracle.lock().vat_payments().to_vec()
    }

    /// The tax authority registers an e-invoice.
    pub fn register_invoice(&self, idem: Option<&Idem>, token: &str, request: InvoiceRequest) -> Result<Invoice> {
        let _gate = self.gate_shared();
        let seller = self.party_ref(&request.seller)?;
        let buyer = self.party_ref(&request.buyer)?;
        let mut oracle = self.oracle.lock();
        let provider = oracle.authenticate(token)?.clone();
        let spec = dtenge_oracle::InvoiceSpec {
            id: request.id,
            seller,
            buyer,
            net_tiyn: request.net_tiyn,
            vat_tiyn: request.vat_tiyn,
        };
        let invoice = oracle.plan_invoice(&provider, spec, self.now_ms())?;
        let mut batch = WriteBatch::new();
        invoice.writes(&mut batch)?;
        self.commit(idem, batch, &invoice)?;
        oracle.apply_invoice(invoice.clone());
        Ok(invoice)
    }

    pub fn invoice(&self, id: &str) -> Result<Invoice> {
        Ok(self.oracle.lock().invoice(id)?.clone())
    }

    /// Pay an e-invoice: net part standard, VAT part VAT-marked (the payer's VAT-marked DT
    /// first, standard DT marked for the shortfall).
    pub fn pay_invoice(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: InvoicePaymentRequest,
    ) -> Result<InvoiceReceipt> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        let (payer, _) = self.party(node_id, &request.from)?;
        let vat_available = slot.state.lock().available(&request.from, &Policy::Vat)?;
        let mut oracle = self.oracle.lock();
        let plan = oracle.plan_invoice_payment(
            &request.invoice_id,
            &payer,
            request.amount_tiyn,
            vat_available,
            self.issuer(),
        )?;
        let invoice = oracle.invoice(&request.invoice_id)?;
        self.ensure_not_blocked(&invoice.seller.bank)?;
        let from_vat = plan.parts.iter().find(|(p, _)| *p == Policy::Vat).map(|(_, a)| *a).unwrap_or(Amount::ZERO);
        let from_standard = invoice.vat_tiyn.checked_sub(from_vat)?;
        let text = format!("e-invoice {} paid: {} + VAT {}", invoice.id, invoice.net_tiyn, invoice.vat_tiyn);
        let notices = vec![
            notice(&invoice.seller, NotificationKind::InvoicePaid, &invoice.id, invoice.total()?, text.clone()),
            notice(&invoice.buyer, NotificationKind::InvoicePaid, &invoice.id, invoice.total()?, text),
        ];
        let reference = format!("e-invoice {}", invoice.id);
        let now = self.now_ms();
        let id = request.invoice_id.clone();
        let (receipt, paid) =
            self.execute_spend(idem, &plan, Purpose::InvoicePayment, &reference, &[], notices, |tx| {
                let (paid, attestation) = oracle.confirm_invoice_payment(&id, &plan, tx, now)?;
                let mut writes = WriteBatch::new();
                paid.writes(&mut writes)?;
                let receipt = InvoiceReceipt {
                    tx_id: tx.id(),
                    invoice: paid.clone(),
                    vat_from_vat_tokens_tiyn: from_vat,
                    vat_from_standard_tiyn: from_standard,
                };
                Ok((attestation, writes, receipt, paid))
            })?;
        oracle.apply_invoice(paid);
        Ok(receipt)
    }

    /// Pay VAT to the tax authority's account with VAT-marked DT; there it becomes standard.
    pub fn pay_vat(&self, idem: Option<&Idem>, node_id: &str, request: VatPaymentRequest) -> Result<VatPayment> {
        let _gate = self.gate_shared();
        self.active_participant(node_id)?;
        let (payer, _) = self.party(node_id, &request.from)?;
        let mut oracle = self.oracle.lock();
        let plan = oracle.plan_vat_payment(&payer, request.amount_tiyn, self.issuer())?;
        let now = self.now_ms();
        let (payment, _) = self.execute_spend(idem, &plan, Purpose::VatPayment, "VAT", &[], Vec::new(), |tx| {
            let (payment, attestation) = oracle.confirm_vat_payment(&plan, tx, now)?;
            let mut writes = WriteBatch::new();
            payment.writes(&mut writes)?;
            Ok((attestation, writes, payment, ()))
        })?;
        oracle.apply_vat_payment(payment.clone());
        Ok(payment)
    }

    // ---- marking by parameter (contracts) ----

    /// The smart-contract portal registers a contract.
    pub fn register_contract(
        &self,
        idem: Option<&Idem>,
        token: &str,
        request: ContractRequest,
    ) -> Result<ContractView> {
        let _gate = self.gate_shared();
        ensure!(
            request.valid_for_ms > 0 && request.valid_for_ms <= super::holding::EVENT_VALIDITY_MS_MAX,
            MalformedInput,
            "valid_for_ms is 1 to {}",
            super::holding::EVENT_VALIDITY_MS_MAX
        );
        let sender = self.party_ref(&request.sender)?;
        let recipient = self.party_ref(&request.recipient)?;
        let mut oracle = self.oracle.lock();
        let provider = oracle.authenticate(token)?.clone();
        let now = self.now_ms();
        let spec = ContractSpec {
            number: request.number,
            sender,
            recipient,
            max_transfer_tiyn: request.max_transfer_tiyn,
            max_fiat_tiyn: request.max_fiat_tiyn,
            valid_until_unix_ms: now.saturating_add(request.valid_for_ms),
            funded_by: request.funded_by,
        };
        let change = oracle.plan_contract(&provider, spec, now)?;
        let mut batch = WriteBatch::new();
        change.writes(&mut batch)?;
        let view = ContractView::of(&change.contract);
        self.commit(idem, batch, &view)?;
        oracle.apply_contract(change);
        Ok(view)
    }

    pub fn contract(&self, number: &str) -> Result<ContractView> {
        Ok(ContractView::of(self.oracle.lock().contract(number)?))
    }

    /// Pay under a contract: the recipient receives DT marked with the contract; the contract's
    /// initiator is told.
    pub fn contract_payment(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: ContractPaymentRequest,
    ) -> Result<ContractReceipt> {
        let _gate = self.gate_shared();
        self.active_participant(node_id)?;
        let (payer, _) = self.party(node_id, &request.from)?;
        let mut oracle = self.oracle.lock();
        let now = self.now_ms();
        let plan = oracle.plan_contract_payment(&request.contract, &payer, request.amount_tiyn, now, self.issuer())?;
        let contract = oracle.contract(&request.contract)?;
        self.ensure_not_blocked(&contract.recipient.bank)?;
        let text =
            format!("contract {}: {} paid to {}", contract.number, request.amount_tiyn, contract.recipient.client_id);
        let notices = vec![notice(
            &contract.initiator,
            NotificationKind::ContractUse,
            &contract.number,
            request.amount_tiyn,
            text,
        )];
        let reference = format!("contract {}", contract.number);
        self.contract_use(idem, &mut oracle, &request.contract, UseKind::Transfer, &plan, &reference, &[], notices, now)
    }

    /// Convert DT received under a contract to the recipient's bank money, within the
    /// contract's withdrawal limit: the marked DT goes to the bank's own account as standard
    /// DT and the client's bank-money balance grows, in one commit.
    pub fn contract_withdrawal(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: ContractWithdrawalRequest,
    ) -> Result<ContractReceipt> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        ensure!(request.client_id != dtenge_node::OWN_ACCOUNT, Forbidden, "a node does not withdraw from itself");
        let _fiat = slot.fiat_lock.lock();
        let (holder, _) = self.party(node_id, &request.client_id)?;
        let (bank, _) = self.party(node_id, dtenge_node::OWN_ACCOUNT)?;
        let fiat = slot.state.lock().fiat_after(&request.client_id, request.amount_tiyn, Amount::ZERO)?;
        let mut oracle = self.oracle.lock();
        let now = self.now_ms();
        let plan = oracle.plan_contract_withdrawal(
            &request.contract,
            &holder,
            &bank,
            request.amount_tiyn,
            now,
            self.issuer(),
        )?;
        let contract = oracle.contract(&request.contract)?;
        let text = format!(
            "contract {}: {} of its DT withdrawn to bank money by {}",
            contract.number, request.amount_tiyn, holder.client_id
        );
        let notices = vec![notice(
            &contract.initiator,
            NotificationKind::ContractUse,
            &contract.number,
            request.amount_tiyn,
            text,
        )];
        let reference = format!("contract {}", contract.number);
        let fiat = [(node_id.to_string(), request.client_id.clone(), fiat)];
        self.contract_use(
            idem,
            &mut oracle,
            &request.contract,
            UseKind::Withdrawal,
            &plan,
            &reference,
            &fiat,
            notices,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn contract_use(
        &self,
        idem: Option<&Idem>,
        oracle: &mut dtenge_oracle::Oracle,
        number: &str,
        kind: UseKind,
        plan: &SpendPlan,
        reference: &str,
        fiat: &[(String, String, Amount)],
        notices: Vec<Notice>,
        now: u64,
    ) -> Result<ContractReceipt> {
        let purpose = match kind {
            UseKind::Transfer => Purpose::ContractPayment,
            UseKind::Withdrawal => Purpose::ConversionFromDt,
        };
        let (receipt, change) = self.execute_spend(idem, plan, purpose, reference, fiat, notices, |tx| {
            let (change, attestation) = oracle.confirm_contract_use(number, kind, plan, tx, now)?;
            let mut writes = WriteBatch::new();
            change.writes(&mut writes)?;
            let used = change.uses.first().cloned().expect("a confirmed contract use records its use");
            let receipt = ContractReceipt { tx_id: tx.id(), contract: change.contract.clone(), used };
            Ok((attestation, writes, receipt, change))
        })?;
        oracle.apply_contract(change);
        Ok(receipt)
    }

    // ---- split payments ----

    /// One payment to several recipients in one atomic transaction: all lines are paid or
    /// none is.
    pub fn split_payment(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: SplitPaymentRequest,
    ) -> Result<SplitReceipt> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        super::payments::check_reference(request.reference.as_deref())?;
        ensure!(
            !request.lines.is_empty() && request.lines.len() <= SPLIT_LINES_MAX,
            LimitExceeded,
            "a split payment has 1 to {SPLIT_LINES_MAX} lines"
        );
        ensure!(
            request.from != dtenge_node::OWN_ACCOUNT,
            Forbidden,
            "a node's own DT leaves it through conversion or redemption, not a transfer"
        );
        let (payer, _) = self.party(node_id, &request.from)?;
        let mut lines = Vec::with_capacity(request.lines.len());
        for line in &request.lines {
            ensure!(!line.amount_tiyn.is_zero(), MalformedInput, "every line's amount must be positive");
            let (party, _) = self.resolve_payee(&line.to)?;
            self.ensure_not_blocked(&party.bank)?;
            ensure!(party.address != payer.address, MalformedInput, "the payer cannot pay itself");
            lines.push(Share { party, amount_tiyn: line.amount_tiyn });
        }
        let payees: Vec<_> = lines.iter().map(|s| (s.party.address, s.amount_tiyn)).collect();
        let total = Amount::sum(payees.iter().map(|(_, a)| *a))?;
        let tx = slot.state.lock().prepare_payment(&request.from, &payees, self.issuer(), self.nonce())?;
        let receipt = SplitReceipt { tx_id: tx.id(), from: payer, total_tiyn: total, lines, at_unix_ms: self.now_ms() };
        self.execute(idem, &tx, Purpose::SplitPayment, request.reference.as_deref(), &[], WriteBatch::new(), &receipt)?;
        Ok(receipt)
    }
}
