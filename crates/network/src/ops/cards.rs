//! Cards, first step (sub-scenarios 9 and 10, refunds): a card linked to a digital account
//! pays at a terminal, in DT or with instant conversion of DT to the merchant's bank money.

use crate::ops::conversion::receipt;
use crate::types::{AmountRequest, AtmWithdrawal, CardMode, CardPurchaseRequest, LinkCard, Party, Purchase, Receipt};
use crate::{Idem, Network, PURCHASES_TABLE};
use dtenge_abs::{correspondent, PostingKind};
use dtenge_core::money::Amount;
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_pan, mask_pan};
use dtenge_node::{ClientKind, Purpose, OWN_ACCOUNT};
use dtenge_store::WriteBatch;

impl Network {
    /// Link a card number to a client's digital account.
    pub fn link_card(&self, idem: Option<&Idem>, node_id: &str, request: LinkCard) -> Result<String> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        check_pan(&request.pan)?;
        let _onboarding = self.onboarding.lock();
        ensure!(
            self.card_owner(&request.pan).is_none(),
            DuplicateAccount,
            "card {} is already linked",
            mask_pan(&request.pan)
        );
        let mut batch = WriteBatch::new();
        slot.state.lock().plan_card(&request.pan, &request.client_id, &mut batch)?;
        let masked = mask_pan(&request.pan);
        self.commit(idem, batch, &masked)?;
        slot.state.lock().apply_card(&request.pan, &request.client_id);
        Ok(masked)
    }

    fn card_owner(&self, pan: &str) -> Option<(String, String)> {
        self.nodes.iter().find_map(|(id, slot)| slot.state.lock().card_client(pan).map(|c| (id.clone(), c.to_string())))
    }

    /// The (node, client) a valid, linked card number belongs to.
    fn card_holder(&self, pan: &str) -> Result<(String, String)> {
        check_pan(pan)?;
        self.card_owner(pan).ok_or_else(|| {
            Error::new(ErrorCode::UnknownAccount, format!("card {} is not linked to a digital account", mask_pan(pan)))
        })
    }

    /// A card purchase at a terminal.
    pub fn card_purchase(&self, idem: Option<&Idem>, request: CardPurchaseRequest) -> Result<Purchase> {
        let _gate = self.gate_shared();
        ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
        let (buyer_bank, buyer_client) = self.card_holder(&request.pan)?;
        let buyer_slot = self.active_participant(&buyer_bank)?;
        self.active_participant(&request.merchant_bank)?;
        let (buyer, _) = self.party(&buyer_bank, &buyer_client)?;
        let (merchant, kind) = self.party(&request.merchant_bank, &request.merchant_id)?;
        ensure!(kind == ClientKind::LegalEntity, Forbidden, "the merchant must be a legal entity");
        let amount = request.amount_tiyn;
        let now = self.now_ms();
        let mut purchases = self.purchases.lock();

        match request.mode {
            CardMode::Dt => {
                let tx = buyer_slot.state.lock().prepare_payment(
                    &buyer_client,
                    &[(merchant.address, amount)],
                    self.issuer(),
                    self.nonce(),
                )?;
                let purchase = purchase(&request, buyer, merchant, tx.id(), now);
                let mut extra = WriteBatch::new();
                extra
                    .put_value(PURCHASES_TABLE, purchase.id.as_bytes(), &purchase)
                    .inspect_err(|_| self.release(&tx))?;
                self.execute(idem, &tx, Purpose::CardPurchase, Some(&purchase.id), &[], extra, &purchase)?;
                purchases.insert(purchase.id.clone(), purchase.clone());
                Ok(purchase)
            }
            CardMode::ConvertToFiat => {
                // The buyer's DT goes to its bank's own account; the merchant's bank credits
                // the merchant in bank money; between two banks the ABS settles the bank money.
                let merchant_slot = self.slot(&request.merchant_bank)?;
                let _fiat = merchant_slot.fiat_lock.lock();
                let (buyer_bank_party, _) = self.party(&buyer_bank, OWN_ACCOUNT)?;
                let merchant_fiat = merchant_slot.state.lock().fiat_after(&merchant.client_id, amount, Amount::ZERO)?;
                let mut abs = (buyer_bank != request.merchant_bank).then(|| self.abs.lock());
                let tx = buyer_slot.state.lock().prepare_payment(
                    &buyer_client,
                    &[(buyer_bank_party.address, amount)],
                    self.issuer(),
                    self.nonce(),
                )?;
                let purchase = purchase(&request, buyer, merchant.clone(), tx.id(), now);
                let mut extra = WriteBatch::new();
                extra
                    .put_value(PURCHASES_TABLE, purchase.id.as_bytes(), &purchase)
                    .inspect_err(|_| self.release(&tx))?;
                let posting = settle(
                    abs.as_deref_mut(),
                    &buyer_bank,
                    &request.merchant_bank,
                    amount,
                    &purchase.id,
                    now,
                    &mut extra,
                )
                .inspect_err(|_| buyer_slot.state.lock().release(&tx))?;
                let fiat = [(request.merchant_bank.clone(), merchant.client_id.clone(), merchant_fiat)];
                self.execute(idem, &tx, Purpose::CardPurchase, Some(&purchase.id), &fiat, extra, &purchase)?;
                if let (Some(abs), Some(posting)) = (abs.as_mut(), posting) {
                    abs.apply(&posting);
                }
                purchases.insert(purchase.id.clone(), purchase.clone());
                Ok(purchase)
            }
        }
    }

    /// Refund all or part of a card purchase to the buyer, the way it was paid.
    pub fn card_refund(&self, idem: Option<&Idem>, purchase_id: &str, request: AmountRequest) -> Result<Receipt> {
        let _gate = self.gate_shared();
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let mut purchases = self.purchases.lock();
        let mut purchase = purchases
            .get(purchase_id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no card purchase {purchase_id}")))?;
        let refunded = purchase.refunded_tiyn.checked_add(amount)?;
        if refunded > purchase.amount_tiyn {
            bail!(
                Conflict,
                "refund of {amount} exceeds what is left of purchase {purchase_id}: {} of {} already refunded",
                purchase.refunded_tiyn,
                purchase.amount_tiyn
            );
        }
        let (buyer, merchant) = (purchase.buyer.clone(), purchase.merchant.clone());
        let merchant_slot = self.active_participant(&merchant.bank)?;
        let buyer_slot = self.active_participant(&buyer.bank)?;
        let now = self.now_ms();
        let reference = format!("refund of {purchase_id}");
        let mut extra = WriteBatch::new();
        // Held until the merchant's new bank-money balance is committed and applied.
        let _fiat = (purchase.mode == CardMode::ConvertToFiat).then(|| merchant_slot.fiat_lock.lock());

        let (tx, from, fiat, posting, mut abs) = match purchase.mode {
            CardMode::Dt => {
                let tx = merchant_slot.state.lock().prepare_payment(
                    &merchant.client_id,
                    &[(buyer.address, amount)],
                    self.issuer(),
                    self.nonce(),
                )?;
                (tx, merchant.clone(), Vec::new(), None, None)
            }
            CardMode::ConvertToFiat => {
                let merchant_fiat = merchant_slot.state.lock().fiat_after(&merchant.client_id, Amount::ZERO, amount)?;
                let mut abs = (buyer.bank != merchant.bank).then(|| self.abs.lock());
                let posting =
                    settle(abs.as_deref_mut(), &merchant.bank, &buyer.bank, amount, &reference, now, &mut extra)?;
                let (bank_party, _) = self.party(&buyer.bank, OWN_ACCOUNT)?;
                let tx = buyer_slot.state.lock().prepare_payment(
                    OWN_ACCOUNT,
                    &[(buyer.address, amount)],
                    self.issuer(),
                    self.nonce(),
                )?;
                let fiat = vec![(merchant.bank.clone(), merchant.client_id.clone(), merchant_fiat)];
                (tx, bank_party, fiat, posting, abs)
            }
        };
        purchase.refunded_tiyn = refunded;
        purchase.refund_tx_ids.push(tx.id());
        extra.put_value(PURCHASES_TABLE, purchase.id.as_bytes(), &purchase).inspect_err(|_| self.release(&tx))?;
        let receipt = receipt(&tx, Purpose::CardRefund, amount, Some(from), Some(buyer), now, posting.clone());
        self.execute(idem, &tx, Purpose::CardRefund, Some(&reference), &fiat, extra, &receipt)?;
        if let (Some(abs), Some(posting)) = (abs.as_mut(), posting) {
            abs.apply(&posting);
        }
        purchases.insert(purchase.id.clone(), purchase);
        Ok(receipt)
    }

    /// Cash from an ATM with a DT-linked card. The buyer's DT goes to its bank's own account
    /// (DT -> cash at the card's bank); if the ATM belongs to another bank, the card's bank
    /// pays it in bank money through the ABS.
    pub fn atm_withdrawal(&self, idem: Option<&Idem>, request: AtmWithdrawal) -> Result<Receipt> {
        let _gate = self.gate_shared();
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let (bank, client) = self.card_holder(&request.pan)?;
        let slot = self.active_participant(&bank)?;
        self.active_participant(&request.atm_bank)?;
        let (holder, _) = self.party(&bank, &client)?;
        let (bank_party, _) = self.party(&bank, OWN_ACCOUNT)?;
        let now = self.now_ms();
        let mut abs = (bank != request.atm_bank).then(|| self.abs.lock());
        let tx =
            slot.state.lock().prepare_payment(&client, &[(bank_party.address, amount)], self.issuer(), self.nonce())?;
        let mut extra = WriteBatch::new();
        let settlement_reference = format!("atm {}", tx.id());
        let posting =
            settle(abs.as_deref_mut(), &bank, &request.atm_bank, amount, &settlement_reference, now, &mut extra)
                .inspect_err(|_| slot.state.lock().release(&tx))?;
        let reference = format!("ATM of {} card {}", request.atm_bank, mask_pan(&request.pan));
        let receipt =
            receipt(&tx, Purpose::CashWithdrawal, amount, Some(holder), Some(bank_party), now, posting.clone());
        self.execute(idem, &tx, Purpose::CashWithdrawal, Some(&reference), &[], extra, &receipt)?;
        if let (Some(abs), Some(posting)) = (abs.as_mut(), posting) {
            abs.apply(&posting);
        }
        Ok(receipt)
    }

    pub fn purchase(&self, purchase_id: &str) -> Result<Purchase> {
        self.purchases
            .lock()
            .get(purchase_id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no card purchase {purchase_id}")))
    }
}

fn purchase(
    request: &CardPurchaseRequest,
    buyer: Party,
    merchant: Party,
    tx_id: dtenge_core::token::TxId,
    at: u64,
) -> Purchase {
    Purchase {
        id: format!("P-{}", &tx_id.to_string()[..16]),
        card: mask_pan(&request.pan),
        buyer,
        merchant,
        amount_tiyn: request.amount_tiyn,
        refunded_tiyn: Amount::ZERO,
        mode: request.mode,
        tx_id,
        refund_tx_ids: Vec::new(),
        at_unix_ms: at,
    }
}

/// Plan the settlement of bank money between two banks' correspondent accounts in the ABS
/// into `extra`; nothing when the caller took no ABS lock (both sides at one bank).
fn settle(
    abs: Option<&mut dtenge_abs::Abs>,
    from_bank: &str,
    to_bank: &str,
    amount: Amount,
    reference: &str,
    now: u64,
    extra: &mut WriteBatch,
) -> Result<Option<dtenge_abs::Posting>> {
    let Some(abs) = abs else { return Ok(None) };
    let posting = abs.plan(
        PostingKind::InterbankSettlement,
        &correspondent(from_bank),
        &correspondent(to_bank),
        amount,
        reference,
        now,
    )?;
    abs.writes(&posting, extra)?;
    Ok(Some(posting))
}
