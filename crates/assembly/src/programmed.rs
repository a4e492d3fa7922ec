//! Programmed money among the roles (SPEC §5.2 to §5.4): the providers' and initiators' calls
//! on the oracle, and the clients' spends through their banks, with parties named as the API
//! names them (a bank and a client id) and found in the directory. The flows themselves are
//! the roles' (`dtenge_bank::BankService::spend`, `dtenge_oracle::service::programmed`).

use crate::{Assembly, BankHandle};
use dtenge_bank::{Answer, IdemKey};
use dtenge_core::crypto::Hash32;
use dtenge_core::party::Party;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::NodeKind;
use dtenge_oracle::{Contract, ContractSpec, Invoice, InvoiceSpec, Level, Marking, MarkingSpec, ProviderKind};
use dtenge_oracle::{Credential, ProviderView};
use dtenge_wire::{AccountKind, SpendKind};
use std::collections::BTreeMap;

/// The longest a contract may run (as the one-process network allows: five years).
pub const CONTRACT_VALIDITY_MS_MAX: u64 = 5 * 366 * 24 * 3_600_000;

/// A client as callers name it: its bank and its client id (IIN/BIN).
pub type ClientAt<'a> = (&'a str, &'a str);

/// A contract as the smart-contract portal registers it.
#[derive(Clone, Debug)]
pub struct ContractTerms<'a> {
    pub number: &'a str,
    pub sender: ClientAt<'a>,
    pub recipient: ClientAt<'a>,
    pub max_transfer_tiyn: Amount,
    pub max_fiat_tiyn: Amount,
    pub valid_for_ms: u64,
    /// The contract whose marked DT pays this one.
    pub funded_by: Option<&'a str>,
}

/// The contract `terms` name, its parties found by `party`, valid from `now_ms`.
pub fn contract_spec(
    terms: &ContractTerms<'_>,
    now_ms: u64,
    party: impl Fn(ClientAt<'_>) -> Result<Party>,
) -> Result<ContractSpec> {
    if terms.valid_for_ms == 0 || terms.valid_for_ms > CONTRACT_VALIDITY_MS_MAX {
        return Err(Error::malformed(format!("valid_for_ms is 1 to {CONTRACT_VALIDITY_MS_MAX}")));
    }
    Ok(ContractSpec {
        number: terms.number.to_string(),
        sender: party(terms.sender)?,
        recipient: party(terms.recipient)?,
        max_transfer_tiyn: terms.max_transfer_tiyn,
        max_fiat_tiyn: terms.max_fiat_tiyn,
        valid_until_unix_ms: now_ms.saturating_add(terms.valid_for_ms),
        funded_by: terms.funded_by.map(str::to_string),
    })
}

/// An answer that is an error already.
fn refused(e: Error) -> Answer {
    let (sender, receiver) = dtenge_sync::oneshot::channel();
    let _ = sender.send(Err(e));
    receiver
}

impl BankHandle {
    /// A programmed spend of a custodial client ([`dtenge_bank::BankService::spend`]).
    pub fn spend(&self, client_id: &str, kind: SpendKind, idem: Option<IdemKey>, now_ms: u64) -> Answer {
        self.service.spend(client_id, kind, idem, now_ms)
    }

    /// A split payment ([`dtenge_bank::BankService::split_payment`]): queued as a payment.
    pub fn split_payment(
        &self,
        client_id: &str,
        lines: &[(dtenge_core::crypto::Address, Amount)],
        idem: Option<IdemKey>,
    ) -> Answer {
        let answer = self.service.split_payment(client_id, lines, idem);
        self.wake();
        answer
    }
}

impl Assembly {
    /// The party the directory lists for a client at a bank; `UNKNOWN_ACCOUNT` when none.
    pub fn party(&self, (bank, client_id): ClientAt<'_>) -> Result<Party> {
        self.listed_party((bank, client_id)).map(|(party, _)| party)
    }

    fn listed_party(&self, (bank, client_id): ClientAt<'_>) -> Result<(Party, AccountKind)> {
        let found = self
            .directory
            .read(|d| d.by_client(client_id, Some(bank)).filter(|l| l.bank == bank).map(|l| (l.address, l.kind)));
        let (address, kind) = found.ok_or_else(|| {
            Error::new(ErrorCode::UnknownAccount, format!("no digital account of client {client_id} at '{bank}'"))
        })?;
        Ok((Party { bank: bank.to_string(), client_id: client_id.to_string(), address }, kind))
    }

    fn bank_or_unknown(&self, bank: &str) -> Result<&BankHandle> {
        self.bank(bank).ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}'")))
    }

    /// Register a provider of the oracle (its token: at least 32 bytes, made by the caller).
    pub fn register_provider(&self, id: &str, name: &str, kind: ProviderKind, token: &str) -> Result<ProviderView> {
        self.oracle.register_provider(id, name, kind, token, self.now_ms())
    }

    // ---- marking by addresses ----

    /// A client of `bank` (not the bank itself) initiates a marking: per level, its allowed
    /// recipients and its limit.
    pub fn create_marking(
        &self,
        initiator: ClientAt<'_>,
        reference: &str,
        levels: &[(Vec<ClientAt<'_>>, Amount)],
    ) -> Result<Marking> {
        let (initiator, kind) = self.listed_party(initiator)?;
        if kind == AccountKind::Institution {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "a marking is initiated by a client or a government agency, not the node's own account",
            ));
        }
        let mut resolved = Vec::with_capacity(levels.len());
        for (recipients, limit) in levels {
            let recipients = recipients.iter().map(|who| self.party(*who)).collect::<Result<Vec<_>>>()?;
            resolved.push(Level { recipients, limit_tiyn: *limit });
        }
        let spec = MarkingSpec { initiator, reference: reference.to_string(), levels: resolved };
        self.oracle.create_marking(spec, self.now_ms())
    }

    /// Move marked DT one level down (the initiator marks standard DT for level 1).
    pub fn marked_transfer(
        &self,
        from: ClientAt<'_>,
        marking_id: &str,
        to: ClientAt<'_>,
        amount: Amount,
        idem: Option<IdemKey>,
    ) -> Answer {
        let prepared = self.bank_or_unknown(from.0).and_then(|h| Ok((h, self.party(to)?)));
        match prepared {
            Ok((handle, to)) => {
                let kind = SpendKind::MarkedTransfer { marking_id: marking_id.to_string(), to, amount };
                handle.spend(from.1, kind, idem, self.now_ms())
            }
            Err(e) => refused(e),
        }
    }

    // ---- digital VAT ----

    /// The tax authority registers a VAT payer.
    pub fn register_vat_payer(&self, token: &str, payer: ClientAt<'_>) -> Result<Party> {
        self.oracle.register_vat_payer(Credential::Token(token), self.party(payer)?)
    }

    /// The tax authority names its account, on the Treasury.
    pub fn set_tax_account(&self, token: &str, account: ClientAt<'_>) -> Result<Party> {
        let treasury = self.specs.iter().any(|b| b.id == account.0 && b.kind == NodeKind::Treasury);
        if !treasury {
            return Err(Error::new(ErrorCode::Forbidden, "the tax authority's account is on the Treasury node"));
        }
        self.oracle.set_tax_account(Credential::Token(token), self.party(account)?)
    }

    /// The tax authority registers an e-invoice.
    pub fn register_invoice(
        &self,
        token: &str,
        id: &str,
        seller: ClientAt<'_>,
        buyer: ClientAt<'_>,
        net_tiyn: Amount,
        vat_tiyn: Amount,
    ) -> Result<Invoice> {
        let spec = InvoiceSpec {
            id: id.to_string(),
            seller: self.party(seller)?,
            buyer: self.party(buyer)?,
            net_tiyn,
            vat_tiyn,
        };
        self.oracle.register_invoice(Credential::Token(token), spec, self.now_ms())
    }

    /// Pay an e-invoice in full: the net part standard, the VAT part VAT-marked (the payer's
    /// VAT-marked DT first).
    pub fn pay_invoice(&self, from: ClientAt<'_>, invoice_id: &str, amount: Amount, idem: Option<IdemKey>) -> Answer {
        // The bank fills in the payer's VAT-marked DT.
        let kind =
            SpendKind::InvoicePayment { invoice_id: invoice_id.to_string(), amount, vat_available: Amount::ZERO };
        self.spend(from, kind, idem)
    }

    /// Pay VAT-marked DT to the tax account, where it becomes standard.
    pub fn pay_vat(&self, from: ClientAt<'_>, amount: Amount, idem: Option<IdemKey>) -> Answer {
        self.spend(from, SpendKind::VatPayment { amount }, idem)
    }

    /// The tax authority's view of the VAT paid.
    pub fn vat_payments(&self) -> Vec<dtenge_oracle::vat::VatPayment> {
        self.oracle.vat_payments()
    }

    // ---- contracts (marking by parameter) ----

    /// The smart-contract portal registers a contract.
    pub fn register_contract(&self, token: &str, terms: &ContractTerms<'_>) -> Result<Contract> {
        let now = self.now_ms();
        let spec = contract_spec(terms, now, |who| self.party(who))?;
        self.oracle.register_contract(Credential::Token(token), spec, now)
    }

    /// Pay under a contract: the recipient receives DT marked with it.
    pub fn contract_payment(
        &self,
        from: ClientAt<'_>,
        contract: &str,
        amount: Amount,
        idem: Option<IdemKey>,
    ) -> Answer {
        self.spend(from, SpendKind::ContractPayment { contract: contract.to_string(), amount }, idem)
    }

    /// Convert DT received under a contract to the holder's bank money, within its limit.
    pub fn contract_withdrawal(
        &self,
        holder: ClientAt<'_>,
        contract: &str,
        amount: Amount,
        idem: Option<IdemKey>,
    ) -> Answer {
        // The bank puts its own account in place of the holder's.
        match self.party(holder) {
            Ok(bank_account) => {
                let kind = SpendKind::ContractWithdrawal { contract: contract.to_string(), amount, bank_account };
                self.spend(holder, kind, idem)
            }
            Err(e) => refused(e),
        }
    }

    fn spend(&self, from: ClientAt<'_>, kind: SpendKind, idem: Option<IdemKey>) -> Answer {
        match self.bank_or_unknown(from.0) {
            Ok(handle) => handle.spend(from.1, kind, idem, self.now_ms()),
            Err(e) => refused(e),
        }
    }

    // ---- split payments ----

    /// One payment to several recipients in one transaction: all lines are paid or none is.
    pub fn split_payment(&self, from: ClientAt<'_>, lines: &[(ClientAt<'_>, Amount)], idem: Option<IdemKey>) -> Answer {
        let prepared = self.bank_or_unknown(from.0).and_then(|handle| {
            let lines = lines
                .iter()
                .map(|(who, amount)| Ok((self.party(*who)?.address, *amount)))
                .collect::<Result<Vec<_>>>()?;
            Ok((handle, lines))
        });
        match prepared {
            Ok((handle, lines)) => handle.split_payment(from.1, &lines, idem),
            Err(e) => refused(e),
        }
    }

    // ---- reconciliation ----

    /// The oracle's markings and contracts against the marked DT the banks hold, once the load
    /// stopped: at each level of a marking but the last (whose DT is standard), what reached
    /// it minus what moved on; under a contract, what was paid minus what was withdrawn and
    /// what paid the contracts it funds; no marked DT of a marking or contract the oracle does
    /// not know. A list of what does not hold.
    pub(crate) fn reconcile_programmed(&self) -> Vec<String> {
        let mut held: BTreeMap<(Hash32, u8), Amount> = BTreeMap::new();
        for bank in &self.banks {
            let marked = match bank.service.read(|node| node.marked_totals()) {
                Ok(marked) => marked,
                Err(e) => return vec![format!("{}'s marked DT cannot be summed: {e}", bank.id())],
            };
            for (key, amount) in marked {
                let total = held.entry(key).or_insert(Amount::ZERO);
                match total.checked_add(amount) {
                    Ok(sum) => *total = sum,
                    Err(e) => return vec![format!("the marked DT cannot be summed: {e}")],
                }
            }
        }
        match self.registry_marked() {
            Ok(registry) if registry == held => Vec::new(),
            Ok(registry) => {
                vec![format!(
                    "the oracle's markings and contracts {registry:?} != the marked DT the banks hold {held:?}"
                )]
            }
            Err(e) => vec![format!("the oracle's marked DT cannot be summed: {e}")],
        }
    }

    /// What the oracle's registry says is marked, by (hash, level); zero amounts left out.
    fn registry_marked(&self) -> Result<BTreeMap<(Hash32, u8), Amount>> {
        let mut expected = BTreeMap::new();
        for marking in self.oracle.markings() {
            // Level k (1-based) received moved[k - 1] and passed moved[k] on.
            for (k, pair) in marking.moved_tiyn.windows(2).enumerate() {
                let left = pair[0].checked_sub(pair[1])?;
                if !left.is_zero() {
                    expected.insert((marking.hash, k as u8 + 1), left);
                }
            }
        }
        let contracts = self.oracle.contracts();
        for contract in &contracts {
            let mut left = contract.transferred_tiyn.checked_sub(contract.withdrawn_tiyn)?;
            for child in contracts.iter().filter(|c| c.funded_by.as_deref() == Some(contract.number.as_str())) {
                left = left.checked_sub(child.transferred_tiyn)?;
            }
            if !left.is_zero() {
                expected.insert((contract.hash, 1), left);
            }
        }
        Ok(expected)
    }
}
