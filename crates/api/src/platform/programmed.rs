//! Programmed money (SPEC §5.2 to §5.4): marking by addresses, digital VAT, contracts (marking
//! by parameter) and split payments. Registrations are the oracle's (a provider's token, or
//! the initiator's bank); a spend goes to the payer's bank, which plans it with the oracle,
//! builds and signs it, has the oracle attest it and the notary certify it
//! (`docs/ARCHITECTURE.md`, "Programmed spend"). The oracle records the spend when the
//! certified transaction reaches it, just after the bank answers: a receipt waits for that
//! record (at most [`ANSWER_WAIT`]) and is built from it.
//!
//! What the roles do differently from the one-process network, as a gateway sees it:
//! - no notifications yet for programmed spends (the network told the marking's or the
//!   contract's initiator and the invoice's parties);
//! - the oracle attests one spend per subject (a marking, an invoice, a contract; every VAT
//!   payment shares one) at a time: a spend of a busy subject waits for it, and after
//!   `PLAN_RETRIES_MAX` tries the bank answers `REQUEST_IN_PROGRESS` (ask again);
//! - the oracle's registrations take no idempotency key: an invoice or a contract asked
//!   again with one answers the one registered when it matches; a marking asked again is a
//!   second marking (it has no identity of its own to match).

use super::payments::party_at;
use super::Idem;
use super::{idem_key, wait, Platform, ANSWER_WAIT};
use crate::types::{
    ContractPaymentRequest, ContractReceipt, ContractRequest, ContractView, ContractWithdrawalRequest, Invoice,
    InvoicePaymentRequest, InvoiceReceipt, InvoiceRequest, MarkedReceipt, MarkedTransferRequest, MarkingPage,
    MarkingRequest, MarkingView, Party, PartyRef, Payee, Share, SplitPaymentRequest, SplitReceipt, VatPayment,
    VatPaymentRequest,
};
use dtenge_assembly::{ClientAt, ContractTerms};
use dtenge_bank::Committed;
use dtenge_core::money::Amount;
use dtenge_core::token::Policy;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_iin_bin, normalize_phone};
use dtenge_node::OWN_ACCOUNT;
use std::time::Instant;

/// Most lines of one split payment (the bank's limit, as the network's).
pub const SPLIT_LINES_MAX: usize = dtenge_bank::SPLIT_LINES_MAX;
// A split payment's lines and its change fit one transaction.
const _: () = assert!(SPLIT_LINES_MAX < dtenge_core::tx::TX_OUTPUTS_MAX);
/// Most markings one page returns (as the network's).
pub const MARKINGS_PAGE_MAX: usize = 1_000;

/// Wait (at most [`ANSWER_WAIT`]) until `found` finds what a role records after it answered
/// (the oracle's record of a certified spend, an issuer's payout); `REQUEST_IN_PROGRESS` if it
/// does not come in time.
pub(super) fn await_record<T>(mut found: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        if let Some(record) = found()? {
            return Ok(record);
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                "the payment is committed but not yet recorded everywhere; ask again with the same idempotency key",
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub fn at(party: &PartyRef) -> ClientAt<'_> {
    (party.bank.as_str(), party.client_id.as_str())
}

/// A registration's answer: one refused `CONFLICT` (the id taken) under an idempotency key
/// (`keyed`) is answered with what is registered under the id, when `existing` finds it the
/// same as asked.
pub fn registered_again<T>(
    registered: Result<T>,
    keyed: bool,
    existing: impl FnOnce() -> Result<Option<T>>,
) -> Result<T> {
    match registered {
        Err(e) if e.code == ErrorCode::Conflict && keyed => existing()?.ok_or(e),
        other => other,
    }
}

/// `party` is the one `named`: the same client at the same bank.
fn same_party(party: &Party, named: &PartyRef) -> bool {
    party.bank == named.bank && party.client_id == named.client_id
}

/// A split payment's own rules, before a payee is looked up: its reference, 1 to
/// [`SPLIT_LINES_MAX`] lines each of a positive amount, and not from the node's own account.
pub fn check_split(request: &SplitPaymentRequest) -> Result<()> {
    super::payments::check_reference(request.reference.as_deref())?;
    ensure!(
        !request.lines.is_empty() && request.lines.len() <= SPLIT_LINES_MAX,
        LimitExceeded,
        "a split payment has 1 to {SPLIT_LINES_MAX} lines"
    );
    ensure!(
        request.from != OWN_ACCOUNT,
        Forbidden,
        "a node's own DT leaves it through conversion or redemption, not a transfer"
    );
    ensure!(
        request.lines.iter().all(|line| !line.amount_tiyn.is_zero()),
        MalformedInput,
        "every line's amount must be positive"
    );
    Ok(())
}

/// The invoice registered is the one `request` asks for: the same parties and amounts.
pub fn invoice_matches(existing: &Invoice, request: &InvoiceRequest) -> bool {
    same_party(&existing.seller, &request.seller)
        && same_party(&existing.buyer, &request.buyer)
        && existing.net_tiyn == request.net_tiyn
        && existing.vat_tiyn == request.vat_tiyn
}

/// The contract registered is the one `request` asks for: the same parties, limits and
/// funding.
pub fn contract_matches(existing: &dtenge_oracle::Contract, request: &ContractRequest) -> bool {
    same_party(&existing.sender, &request.sender)
        && same_party(&existing.recipient, &request.recipient)
        && existing.max_transfer_tiyn == request.max_transfer_tiyn
        && existing.max_fiat_tiyn == request.max_fiat_tiyn
        && existing.funded_by == request.funded_by
}

/// The oracle's markings without their traces, newest first.
pub fn marking_page(
    oracle: &dtenge_oracle::service::OracleService,
    offset: usize,
    limit: usize,
) -> Result<MarkingPage> {
    ensure!(limit > 0 && limit <= MARKINGS_PAGE_MAX, MalformedInput, "limit is 1 to {MARKINGS_PAGE_MAX}");
    let all = oracle.markings();
    let total = all.len();
    let markings = all.into_iter().rev().skip(offset).take(limit).collect();
    Ok(MarkingPage { markings, total, offset, limit })
}

/// The contract's terms as `request` gives them.
pub fn contract_terms(request: &ContractRequest) -> ContractTerms<'_> {
    ContractTerms {
        number: &request.number,
        sender: at(&request.sender),
        recipient: at(&request.recipient),
        max_transfer_tiyn: request.max_transfer_tiyn,
        max_fiat_tiyn: request.max_fiat_tiyn,
        valid_for_ms: request.valid_for_ms,
        funded_by: request.funded_by.as_deref(),
    }
}

impl Platform {
    // ---- marking by addresses ----

    /// The initiator's bank registers a marking on the oracle. Asked again (even with the
    /// same idempotency key), it registers a second marking.
    pub fn create_marking(&self, _idem: Option<&Idem>, node_id: &str, request: MarkingRequest) -> Result<MarkingView> {
        self.bank(node_id)?;
        let levels: Vec<(Vec<ClientAt<'_>>, Amount)> =
            request.levels.iter().map(|l| (l.recipients.iter().map(at).collect(), l.limit_tiyn)).collect();
        let marking = self.assembly.create_marking((node_id, &request.initiator), &request.reference, &levels)?;
        Ok(MarkingView::of(&marking))
    }

    /// Move marked DT one level down (the initiator marks standard DT for level 1). The
    /// initiator is not notified (the roles have no notifications for it yet).
    /// The oracle attests one spend of a subject at a time: a spend of a busy one waits, and
    /// may end `REQUEST_IN_PROGRESS` (ask again with the same key).
    pub fn marked_transfer(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: MarkedTransferRequest,
    ) -> Result<MarkedReceipt> {
        self.bank(node_id)?;
        let answer = self.assembly.marked_transfer(
            (node_id, &request.from),
            &request.marking_id,
            at(&request.to),
            request.amount_tiyn,
            idem_key(idem),
        );
        let committed = wait(&answer)?;
        self.await_delivery(node_id, &committed.tx_id, [at(&request.to)]);
        let oracle = self.assembly.oracle();
        let (marking, moved) = await_record(|| {
            let marking = oracle.marking(&request.marking_id)?;
            let moved = marking.moves.iter().find(|m| m.body.tx_id == committed.tx_id).cloned();
            Ok(moved.map(|m| (marking.summary(), m)))
        })?;
        Ok(MarkedReceipt { tx_id: committed.tx_id, marking, moved })
    }

    /// Markings without their traces, newest first.
    pub fn markings(&self, offset: usize, limit: usize) -> Result<MarkingPage> {
        marking_page(self.assembly.oracle(), offset, limit)
    }

    pub fn marking(&self, id: &str) -> Result<MarkingView> {
        Ok(MarkingView::of(&self.assembly.oracle().marking(id)?))
    }

    // ---- digital VAT ----

    /// The tax authority registers a VAT payer (registering one twice is one registration).
    pub fn register_vat_payer(&self, _idem: Option<&Idem>, token: &str, payer: PartyRef) -> Result<Party> {
        self.assembly.register_vat_payer(token, at(&payer))
    }

    /// The tax authority names its account on the Treasury node.
    pub fn set_tax_account(&self, _idem: Option<&Idem>, token: &str, account: PartyRef) -> Result<Party> {
        self.assembly.set_tax_account(token, at(&account))
    }

    pub fn vat_payers(&self) -> Vec<Party> {
        self.assembly.oracle().vat_payers()
    }

    pub fn vat_payments(&self) -> Vec<VatPayment> {
        self.assembly.vat_payments()
    }

    /// A page of the registered VAT payers (issue 19): `limit` (1 to
    /// [`super::LIST_PAGE_MAX`]) from the `offset`-th, with how many there are.
    pub fn vat_payers_page(&self, offset: usize, limit: usize) -> Result<crate::types::VatPayerPage> {
        let (payers, total) = super::page_of(self.assembly.oracle().vat_payers().into_iter(), offset, limit)?;
        Ok(crate::types::VatPayerPage { payers, total, offset, limit })
    }

    /// A page of the VAT paid to the tax account, oldest first (issue 19): `limit` (1 to
    /// [`super::LIST_PAGE_MAX`]) from the `offset`-th, with how many there are.
    pub fn vat_payments_page(&self, offset: usize, limit: usize) -> Result<crate::types::VatPaymentPage> {
        let (payments, total) = super::page_of(self.assembly.vat_payments().into_iter(), offset, limit)?;
        Ok(crate::types::VatPaymentPage { payments, total, offset, limit })
    }

    /// The tax authority registers an e-invoice. Asked again with an idempotency key, an
    /// invoice registered with the same id, parties and amounts is answered as it is now.
    pub fn register_invoice(&self, idem: Option<&Idem>, token: &str, request: InvoiceRequest) -> Result<Invoice> {
        let registered = self.assembly.register_invoice(
            token,
            &request.id,
            at(&request.seller),
            at(&request.buyer),
            request.net_tiyn,
            request.vat_tiyn,
        );
        registered_again(registered, idem.is_some(), || {
            let existing = self.assembly.oracle().invoice(&request.id)?;
            Ok(invoice_matches(&existing, &request).then_some(existing))
        })
    }

    pub fn invoice(&self, id: &str) -> Result<Invoice> {
        self.assembly.oracle().invoice(id)
    }

    /// Pay an e-invoice: net part standard, VAT part VAT-marked (the payer's VAT-marked DT
    /// first, standard DT marked for the shortfall). The seller and the buyer are not notified
    /// (no notifications yet). The split of the VAT part in the receipt is computed from the
    /// payer's VAT-marked DT read just before the bank takes the payment (as the bank reads
    /// it): a concurrent spend of that client's VAT-marked DT, or a repeated request after the
    /// payment, may show another split than the transaction made.
    /// The oracle attests one spend of a subject at a time: a spend of a busy one waits, and
    /// may end `REQUEST_IN_PROGRESS` (ask again with the same key).
    pub fn pay_invoice(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: InvoicePaymentRequest,
    ) -> Result<InvoiceReceipt> {
        let bank = self.bank(node_id)?;
        let vat_available = bank.service().read(|node| node.available(&request.from, &Policy::Vat))?;
        let answer = self.assembly.pay_invoice(
            (node_id, &request.from),
            &request.invoice_id,
            request.amount_tiyn,
            idem_key(idem),
        );
        let committed = wait(&answer)?;
        let oracle = self.assembly.oracle();
        let invoice = await_record(|| {
            let invoice = oracle.invoice(&request.invoice_id)?;
            Ok((invoice.paid_tx == Some(committed.tx_id)).then_some(invoice))
        })?;
        self.await_delivery(node_id, &committed.tx_id, [party_at(&invoice.seller)]);
        let from_vat = vat_available.min(invoice.vat_tiyn);
        let from_standard = invoice.vat_tiyn.checked_sub(from_vat)?;
        Ok(InvoiceReceipt {
            tx_id: committed.tx_id,
            invoice,
            vat_from_vat_tokens_tiyn: from_vat,
            vat_from_standard_tiyn: from_standard,
        })
    }

    /// Pay VAT to the tax authority's account with VAT-marked DT; there it becomes standard.
    /// Every VAT payment is one subject at the oracle: one at a time across the network; a
    /// payment that waits too long ends `REQUEST_IN_PROGRESS` (ask again with the same key).
    pub fn pay_vat(&self, idem: Option<&Idem>, node_id: &str, request: VatPaymentRequest) -> Result<VatPayment> {
        self.bank(node_id)?;
        let committed = wait(&self.assembly.pay_vat((node_id, &request.from), request.amount_tiyn, idem_key(idem)))?;
        let oracle = self.assembly.oracle();
        if let Some(tax) = oracle.tax_account() {
            self.await_delivery(node_id, &committed.tx_id, [party_at(&tax)]);
        }
        await_record(|| Ok(oracle.vat_payments().into_iter().rev().find(|p| p.tx_id == committed.tx_id)))
    }

    // ---- marking by parameter (contracts) ----

    /// The smart-contract portal registers a contract. Asked again with an idempotency key, a
    /// contract registered with the same number, parties, limits and funding is answered as
    /// it is now.
    pub fn register_contract(
        &self,
        idem: Option<&Idem>,
        token: &str,
        request: ContractRequest,
    ) -> Result<ContractView> {
        let registered = self.assembly.register_contract(token, &contract_terms(&request));
        let contract = registered_again(registered, idem.is_some(), || {
            let existing = self.assembly.oracle().contract(&request.number)?;
            Ok(contract_matches(&existing, &request).then_some(existing))
        })?;
        Ok(ContractView::of(&contract))
    }

    pub fn contract(&self, number: &str) -> Result<ContractView> {
        Ok(ContractView::of(&self.assembly.oracle().contract(number)?))
    }

    /// Pay under a contract: the recipient receives DT marked with the contract. The
    /// contract's initiator is not notified (no notifications yet).
    /// The oracle attests one spend of a subject at a time: a spend of a busy one waits, and
    /// may end `REQUEST_IN_PROGRESS` (ask again with the same key).
    pub fn contract_payment(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: ContractPaymentRequest,
    ) -> Result<ContractReceipt> {
        self.bank(node_id)?;
        let answer = self.assembly.contract_payment(
            (node_id, &request.from),
            &request.contract,
            request.amount_tiyn,
            idem_key(idem),
        );
        let committed = wait(&answer)?;
        if let Ok(contract) = self.assembly.oracle().contract(&request.contract) {
            self.await_delivery(node_id, &committed.tx_id, [party_at(&contract.recipient)]);
        }
        self.contract_receipt(&request.contract, &committed)
    }

    /// Convert DT received under a contract to the recipient's bank money, within the
    /// contract's withdrawal limit: the marked DT goes to the bank's own account as standard
    /// DT, and the client's bank money grows when the bank applies the certified spend. The
    /// contract's initiator is not notified (no notifications yet).
    /// The oracle attests one spend of a subject at a time: a spend of a busy one waits, and
    /// may end `REQUEST_IN_PROGRESS` (ask again with the same key).
    pub fn contract_withdrawal(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: ContractWithdrawalRequest,
    ) -> Result<ContractReceipt> {
        self.bank(node_id)?;
        ensure!(request.client_id != OWN_ACCOUNT, Forbidden, "a node does not withdraw from itself");
        let answer = self.assembly.contract_withdrawal(
            (node_id, &request.client_id),
            &request.contract,
            request.amount_tiyn,
            idem_key(idem),
        );
        self.contract_receipt(&request.contract, &wait(&answer)?)
    }

    fn contract_receipt(&self, number: &str, committed: &Committed) -> Result<ContractReceipt> {
        let oracle = self.assembly.oracle();
        let (contract, used) = await_record(|| {
            let contract = oracle.contract(number)?;
            let used = contract.uses.iter().find(|u| u.body.tx_id == committed.tx_id).cloned();
            Ok(used.map(|u| (contract.summary(), u)))
        })?;
        Ok(ContractReceipt { tx_id: committed.tx_id, contract, used })
    }

    // ---- split payments ----

    /// One payment to several recipients in one atomic transaction: all lines are paid or
    /// none is. The reference is checked but not kept: the bank's split payment carries none
    /// (the payer's history shows the payment without it).
    pub fn split_payment(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: SplitPaymentRequest,
    ) -> Result<SplitReceipt> {
        let bank = self.bank(node_id)?;
        check_split(&request)?;
        let payer = self.party_of(node_id, &request.from)?;
        let mut lines = Vec::with_capacity(request.lines.len());
        for line in &request.lines {
            let party = self.payee(&line.to)?;
            ensure!(party.address != payer.address, MalformedInput, "the payer cannot pay itself");
            lines.push(Share { party, amount_tiyn: line.amount_tiyn });
        }
        let payees: Vec<_> = lines.iter().map(|s| (s.party.address, s.amount_tiyn)).collect();
        let total = Amount::sum(payees.iter().map(|(_, a)| *a))?;
        let committed = wait(&bank.split_payment(&request.from, &payees, idem_key(idem)))?;
        self.await_delivery(node_id, &committed.tx_id, lines.iter().map(|line| party_at(&line.party)));
        Ok(SplitReceipt { tx_id: committed.tx_id, from: payer, total_tiyn: total, lines, at_unix_ms: self.now_ms() })
    }

    /// A payee named by exactly one of its phone or its client id (each at a bank, or the
    /// first the directory lists), or its address, as the directory lists it.
    fn payee(&self, payee: &Payee) -> Result<Party> {
        let given = [payee.phone.is_some(), payee.client_id.is_some(), payee.address.is_some()];
        ensure!(
            given.iter().filter(|g| **g).count() == 1,
            MalformedInput,
            "name the payee by exactly one of: phone, client_id (with bank), address"
        );
        let directory = self.assembly.directory();
        let listed = if let Some(address) = &payee.address {
            directory.read(|d| d.by_address(address).cloned()).ok_or_else(|| {
                Error::new(ErrorCode::UnknownAccount, format!("no digital account has address {address}"))
            })?
        } else if let Some(phone) = &payee.phone {
            let phone = normalize_phone(phone)?;
            directory.read(|d| d.by_phone(&phone, payee.bank.as_deref()).cloned()).ok_or_else(|| match &payee.bank {
                Some(bank) => {
                    Error::new(ErrorCode::UnknownAccount, format!("phone {phone} has no digital account at '{bank}'"))
                }
                None => Error::new(
                    ErrorCode::UnknownAccount,
                    format!("no digital account is registered with phone {phone}"),
                ),
            })?
        } else {
            let client_id = payee.client_id.as_deref().unwrap_or_default();
            check_iin_bin(client_id)?;
            let masked = super::payments::mask_id(client_id);
            directory.read(|d| d.by_client(client_id, payee.bank.as_deref()).cloned()).ok_or_else(|| {
                match &payee.bank {
                    Some(bank) => Error::new(
                        ErrorCode::UnknownAccount,
                        format!("client {masked} has no digital account at '{bank}'"),
                    ),
                    None => Error::new(ErrorCode::UnknownAccount, format!("client {masked} has no digital account")),
                }
            })?
        };
        Ok(Party { bank: listed.bank, client_id: listed.client_id, address: listed.address })
    }
}
