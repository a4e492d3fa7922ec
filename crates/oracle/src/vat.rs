//! Digital VAT (SPEC §5.3). The tax authority registers VAT payers, its Treasury account and
//! every e-invoice on the oracle. Paying an invoice sends the net part as standard DT and the
//! VAT part as VAT-marked DT; the payer's VAT-marked tokens pay the VAT part first and
//! standard ones are marked for any shortfall. VAT-marked tokens move only to pay the VAT part
//! of another invoice or VAT itself to the tax account, where they become standard. Each
//! decision is attested by the oracle and recorded for the tax authority.

use crate::provider_is;
use crate::spend::SpendPlan;
use crate::{Oracle, Provider, ProviderKind};
use dtenge_core::crypto::{hash_parts, Address, Hash32, Signature};
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::{Output, Policy, TxId};
use dtenge_core::tx::{Attestation, Transaction};
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const INVOICES_TABLE: Table = Table("oracle_invoices");
pub const VAT_TABLE: Table = Table("oracle_vat");

const TAX_ACCOUNT_ROW: &[u8] = b"tax-account";
const PAYER_PREFIX: &[u8] = b"payer\0";
const PAYMENT_PREFIX: &[u8] = b"payment\0";

/// Longest e-invoice number.
pub const INVOICE_ID_LEN_MAX: usize = 64;

/// VAT payers and the tax authority's account.
#[derive(Default)]
pub(crate) struct VatRegistry {
    payers: BTreeMap<Address, Party>,
    tax_account: Option<Party>,
    payments: Vec<VatPayment>,
}

/// An e-invoice as the tax authority registers it.
#[derive(Clone, Debug)]
pub struct InvoiceSpec {
    pub id: String,
    pub seller: Party,
    pub buyer: Party,
    pub net_tiyn: Amount,
    pub vat_tiyn: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Registered,
    Paid,
}

/// A registered e-invoice.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Invoice {
    /// The e-invoice number (ESF).
    pub id: String,
    pub seller: Party,
    pub buyer: Party,
    /// Amount without VAT.
    pub net_tiyn: Amount,
    pub vat_tiyn: Amount,
    pub registered_by: String,
    pub registered_at_unix_ms: u64,
    pub status: InvoiceStatus,
    pub paid_tx: Option<TxId>,
    pub paid_at_unix_ms: Option<u64>,
    /// The oracle's signature over the registration ([`Invoice::terms_digest`]).
    pub oracle_signature: Signature,
    /// The oracle's signature over (id, paid_tx, paid_at), once paid.
    pub payment_signature: Option<Signature>,
}

impl Invoice {
    pub fn total(&self) -> Result<Amount> {
        self.net_tiyn.checked_add(self.vat_tiyn)
    }

    pub fn terms_digest(&self) -> Result<Hash32> {
        invoice_digest(&self.id, &self.seller, &self.buyer, self.net_tiyn, self.vat_tiyn, self.registered_at_unix_ms)
    }

    fn payment_digest(&self) -> Result<Hash32> {
        let json = crate::json_of(&(&self.id, &self.paid_tx, &self.paid_at_unix_ms));
        Ok(hash_parts(b"dtenge/oracle/invoice-payment/v1", &[&json]))
    }

    pub fn writes(&self, batch: &mut WriteBatch) -> Result<()> {
        batch.put_value(INVOICES_TABLE, self.id.as_bytes(), self)
    }
}

fn invoice_digest(id: &str, seller: &Party, buyer: &Party, net: Amount, vat: Amount, at_ms: u64) -> Result<Hash32> {
    let json = crate::json_of(&(id, seller, buyer, net, vat, at_ms));
    Ok(hash_parts(b"dtenge/oracle/invoice/v1", &[&json]))
}

/// VAT paid to the tax account, as the tax authority learns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VatPayment {
    pub seq: u64,
    pub payer: Party,
    pub amount_tiyn: Amount,
    pub tx_id: TxId,
    pub at_unix_ms: u64,
    pub oracle_signature: Signature,
}

impl VatPayment {
    pub fn writes(&self, batch: &mut WriteBatch) -> Result<()> {
        let mut key = PAYMENT_PREFIX.to_vec();
        key.extend_from_slice(&self.seq.to_be_bytes());
        batch.put_value(VAT_TABLE, key, self)
    }
}

/// A change of the VAT registry by the tax authority.
#[derive(Clone, Debug)]
pub enum VatUpdate {
    Payer(Party),
    TaxAccount(Party),
}

impl VatUpdate {
    pub fn writes(&self, batch: &mut WriteBatch) -> Result<()> {
        match self {
            VatUpdate::Payer(party) => {
                let mut key = PAYER_PREFIX.to_vec();
                key.extend_from_slice(&party.address.0 .0);
                batch.put_value(VAT_TABLE, key, party)
            }
            VatUpdate::TaxAccount(party) => batch.put_value(VAT_TABLE, TAX_ACCOUNT_ROW.to_vec(), party),
        }
    }
}

pub(crate) fn load(oracle: &mut Oracle, store: &Store) -> Result<()> {
    for (_, invoice) in store.scan_values::<Invoice>(INVOICES_TABLE)? {
        oracle.invoices.insert(invoice.id.clone(), invoice);
    }
    for (key, bytes) in store.scan(VAT_TABLE)? {
        if key == TAX_ACCOUNT_ROW {
            oracle.vat.tax_account = Some(dtenge_store::decode(&bytes)?);
        } else if key.starts_with(PAYER_PREFIX) {
            let party: Party = dtenge_store::decode(&bytes)?;
            oracle.vat.payers.insert(party.address, party);
        } else if key.starts_with(PAYMENT_PREFIX) {
            oracle.vat.payments.push(dtenge_store::decode(&bytes)?);
        }
    }
    Ok(())
}

impl Oracle {
    /// A change of the VAT registry; only the tax authority may make one.
    pub fn plan_vat_update(&self, provider: &Provider, update: VatUpdate) -> Result<VatUpdate> {
        provider_is(provider, ProviderKind::TaxAuthority)?;
        Ok(update)
    }

    pub fn apply_vat_update(&mut self, update: VatUpdate) {
        match update {
            VatUpdate::Payer(party) => {
                self.vat.payers.insert(party.address, party);
            }
            VatUpdate::TaxAccount(party) => self.vat.tax_account = Some(party),
        }
    }

    pub fn vat_payers(&self) -> impl Iterator<Item = &Party> {
        self.vat.payers.values()
    }

    pub fn tax_account(&self) -> Option<&Party> {
        self.vat.tax_account.as_ref()
    }

    pub fn vat_payments(&self) -> &[VatPayment] {
        &self.vat.payments
    }

    pub fn invoice(&self, id: &str) -> Result<&Invoice> {
        self.invoices.get(id).ok_or_else(|| {
            Error::new(ErrorCode::NotFound, format!("no e-invoice {id} is registered: fictitious invoices are refused"))
        })
    }

    pub fn invoices(&self) -> impl DoubleEndedIterator<Item = &Invoice> {
        self.invoices.values()
    }

    /// The tax authority registers an e-invoice.
    pub fn plan_invoice(&self, provider: &Provider, spec: InvoiceSpec, now_ms: u64) -> Result<Invoice> {
        provider_is(provider, ProviderKind::TaxAuthority)?;
        let id = spec.id.trim();
        ensure!(
            !id.is_empty() && id.len() <= INVOICE_ID_LEN_MAX && id.bytes().all(|b| b.is_ascii_graphic()),
            MalformedInput,
            "an e-invoice number has 1 to {INVOICE_ID_LEN_MAX} visible characters"
        );
        ensure!(!self.invoices.contains_key(id), Conflict, "e-invoice {id} is registered already");
        ensure!(
            self.vat.payers.contains_key(&spec.seller.address),
            Forbidden,
            "the seller {} is not a registered VAT payer",
            spec.seller.client_id
        );
        ensure!(spec.seller.address != spec.buyer.address, MalformedInput, "seller and buyer are the same account");
        ensure!(!spec.net_tiyn.is_zero(), MalformedInput, "the amount without VAT must be positive");
        spec.net_tiyn.checked_add(spec.vat_tiyn)?;
        let digest = invoice_digest(id, &spec.seller, &spec.buyer, spec.net_tiyn, spec.vat_tiyn, now_ms)?;
        let invoice = Invoice {
            id: id.to_string(),
            seller: spec.seller,
            buyer: spec.buyer,
            net_tiyn: spec.net_tiyn,
            vat_tiyn: spec.vat_tiyn,
            registered_by: provider.id.clone(),
            registered_at_unix_ms: now_ms,
            status: InvoiceStatus::Registered,
            paid_tx: None,
            paid_at_unix_ms: None,
            oracle_signature: self.key.sign(&digest.0),
            payment_signature: None,
        };
        Ok(invoice)
    }

    pub fn apply_invoice(&mut self, invoice: Invoice) {
        self.invoices.insert(invoice.id.clone(), invoice);
    }

    /// Paying invoice `id` by `payer`, who holds `vat_available` VAT-marked DT it may spend:
    /// the net part in standard DT, the VAT part in VAT-marked DT (the payer's own first,
    /// standard ones marked for the shortfall). `total` is what the payer says it pays.
    pub fn plan_invoice_payment(
        &self,
        id: &str,
        payer: &Party,
        total: Amount,
        vat_available: Amount,
        issuer: Address,
    ) -> Result<SpendPlan> {
        let invoice = self.invoice(id)?;
        ensure!(invoice.status == InvoiceStatus::Registered, Conflict, "e-invoice {id} is paid already");
        ensure!(
            payer.address == invoice.buyer.address,
            InvoiceMismatch,
            "e-invoice {id} is addressed to {}, not {}",
            invoice.buyer.client_id,
            payer.client_id
        );
        ensure!(
            total == invoice.total()?,
            InvoiceMismatch,
            "e-invoice {id} is for {} ({} + VAT {}), not {total}",
            invoice.total()?,
            invoice.net_tiyn,
            invoice.vat_tiyn
        );
        ensure!(
            self.vat.payers.contains_key(&invoice.seller.address),
            Forbidden,
            "the seller {} is no longer a registered VAT payer",
            invoice.seller.client_id
        );
        let from_vat = vat_available.min(invoice.vat_tiyn);
        let standard = invoice.net_tiyn.checked_add(invoice.vat_tiyn.checked_sub(from_vat)?)?;
        let mut outputs = vec![Output::standard(invoice.net_tiyn, invoice.seller.address, issuer)];
        if !invoice.vat_tiyn.is_zero() {
            outputs.push(Output {
                amount_tiyn: invoice.vat_tiyn,
                owner: invoice.seller.address,
                issuer,
                policy: Policy::Vat,
            });
        }
        let mut parts = vec![(Policy::Standard, standard)];
        if !from_vat.is_zero() {
            parts.insert(0, (Policy::Vat, from_vat));
        }
        Ok(SpendPlan { payer: payer.clone(), parts, outputs })
    }

    /// Confirm an invoice payment: sign the transaction if it is the plan; the invoice is
    /// marked paid.
    pub fn confirm_invoice_payment(
        &self,
        id: &str,
        plan: &SpendPlan,
        tx: &Transaction,
        now_ms: u64,
    ) -> Result<(Invoice, Attestation)> {
        plan.check(tx)?;
        let mut invoice = self.invoice(id)?.clone();
        ensure!(invoice.status == InvoiceStatus::Registered, Conflict, "e-invoice {id} is paid already");
        invoice.status = InvoiceStatus::Paid;
        invoice.paid_tx = Some(tx.id());
        invoice.paid_at_unix_ms = Some(now_ms);
        invoice.payment_signature = Some(self.key.sign(&invoice.payment_digest()?.0));
        Ok((invoice, self.attest(tx)))
    }

    /// Paying `amount` of VAT-marked DT to the tax authority's account, where it becomes
    /// standard.
    pub fn plan_vat_payment(&self, payer: &Party, amount: Amount, issuer: Address) -> Result<SpendPlan> {
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let tax = self
            .vat
            .tax_account
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::Conflict, "the tax authority has not registered its account"))?;
        ensure!(tax.address != payer.address, MalformedInput, "the tax account does not pay itself");
        Ok(SpendPlan {
            payer: payer.clone(),
            parts: vec![(Policy::Vat, amount)],
            outputs: vec![Output::standard(amount, tax.address, issuer)],
        })
    }

    pub fn confirm_vat_payment(
        &self,
        plan: &SpendPlan,
        tx: &Transaction,
        now_ms: u64,
    ) -> Result<(VatPayment, Attestation)> {
        plan.check(tx)?;
        let amount = plan.parts.first().map(|(_, a)| *a).unwrap_or(Amount::ZERO);
        let seq = self.vat.payments.len() as u64;
        let tx_id = tx.id();
        let json = crate::json_of(&(seq, &plan.payer, amount, tx_id, now_ms));
        let oracle_signature = self.key.sign(&hash_parts(b"dtenge/oracle/vat-payment/v1", &[&json]).0);
        let payment = VatPayment {
            seq,
            payer: plan.payer.clone(),
            amount_tiyn: amount,
            tx_id,
            at_unix_ms: now_ms,
            oracle_signature,
        };
        Ok((payment, self.attest(tx)))
    }

    pub fn apply_vat_payment(&mut self, payment: VatPayment) {
        self.vat.payments.push(payment);
    }
}
