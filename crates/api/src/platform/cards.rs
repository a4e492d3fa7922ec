//! Cards and vouchers (sub-scenarios 6, 9 and 10, refunds, ATM): a purchase goes to the
//! card's bank (the directory knows it), a refund to the merchant's bank (the acquirer, whose
//! record of the purchase is the authority on what is left), a voucher event to the bank
//! running the programme.
//!
//! What the roles do differently from the one-process network, as a gateway sees it:
//! - the bank money between two banks (convert-to-fiat, ATM of another bank) is settled by
//!   central after the answer, on the delivery streams: receipts carry no `abs_posting`;
//! - the merchant's bank learns of a purchase on its delivery stream, after the answer (its
//!   merchant's bank money, converting, with it): a refund asked at once waits for it.

use super::payments::party_at;
use super::programmed::await_record;
use super::Idem;
use super::{idem_key, Platform, ANSWER_WAIT};
use crate::types::{
    AmountRequest, AtmWithdrawal, CardMode, CardPurchaseRequest, LinkCard, Party, Purchase, Receipt, VoucherEvent,
    VoucherProgram, VoucherProgramRequest,
};
use dtenge_assembly::{AtmWithdrawal as RoleAtm, CardPurchase};
use dtenge_bank::VoucherProgramRequest as RoleProgramRequest;
use dtenge_bank::{CardMode as RoleMode, PurchaseRecord, VoucherEvent as RoleEvent, VoucherProgram as RoleProgram};
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_pan, mask_pan};
use dtenge_node::{Purpose, OWN_ACCOUNT};

impl Platform {
    /// Link a card number to a client's digital account (claimed at the directory first: one
    /// link per card across the network). Asked again with an idempotency key after it
    /// linked, a card linked to this very client at this bank answers its masked number.
    pub fn link_card(&self, idem: Option<&Idem>, node_id: &str, request: LinkCard) -> Result<String> {
        self.bank(node_id)?;
        check_pan(&request.pan)?;
        let masked = mask_pan(&request.pan);
        if idem.is_some() && self.card_holder(&request.pan) == Some((node_id.to_string(), request.client_id.clone())) {
            return Ok(masked);
        }
        self.assembly.link_card(node_id, &request.client_id, &request.pan, ANSWER_WAIT)
    }

    /// The (bank, client) the directory lists a card for.
    fn card_holder(&self, pan: &str) -> Option<(String, String)> {
        self.assembly.directory().read_cards(|cards| cards.holder(pan).map(|h| (h.bank.clone(), h.client_id.clone())))
    }

    /// A card purchase at a terminal, paid by the card's bank. In convert-to-fiat mode the
    /// merchant's bank money is credited by its bank when the certified purchase reaches it,
    /// and central settles the banks' correspondents, both after this answer (the network did
    /// both in the purchase's commit).
    pub fn card_purchase(&self, idem: Option<&Idem>, request: CardPurchaseRequest) -> Result<Purchase> {
        ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
        self.bank(&request.merchant_bank)?;
        let purchase = CardPurchase {
            pan: request.pan,
            merchant_bank: request.merchant_bank,
            merchant_id: request.merchant_id,
            amount: request.amount_tiyn,
            mode: role_mode(request.mode),
        };
        let record = self.assembly.card_purchase(&purchase, idem_key(idem), ANSWER_WAIT)?;
        // A purchase in DT pays the merchant; one converted to fiat pays the buyer's bank.
        if matches!(record.mode, RoleMode::Dt) {
            let merchant = (record.merchant_bank.as_str(), record.merchant_client.as_str());
            self.await_delivery(&record.buyer_bank, &record.tx_id, [merchant]);
        }
        Ok(purchase_of(&record))
    }

    /// Refund all or part of a card purchase to the buyer, the way it was paid, asked at the
    /// merchant's bank. A DT refund is the merchant's DT back to the buyer. A convert-to-fiat
    /// refund debits the merchant's bank money at once; the buyer's bank then pays its own
    /// DT to the buyer: the receipt waits (at most [`ANSWER_WAIT`]) for that payment and
    /// names it, from the buyer's bank's record of the purchase (its payouts in the order it
    /// made them: with several refunds of one purchase in flight at once, or a retry after
    /// later refunds, the transaction named may be a sibling refund's). The receipt has no
    /// `abs_posting`: central settles the correspondents after the answer. The merchant's
    /// bank learns of a purchase on its delivery stream: a refund asked the moment after the
    /// purchase waits for it (at most [`ANSWER_WAIT`], then `REQUEST_IN_PROGRESS`).
    pub fn card_refund(&self, idem: Option<&Idem>, purchase_id: &str, request: AmountRequest) -> Result<Receipt> {
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let refund = match self.assembly.card_refund(purchase_id, amount, idem_key(idem), ANSWER_WAIT) {
            // The card's bank has it and the merchant's bank has not yet: wait for its delivery.
            Err(e) if e.code == ErrorCode::NotFound && self.issued(purchase_id)? => {
                await_record(|| Ok(self.assembly.purchase(purchase_id).ok()))?;
                self.assembly.card_refund(purchase_id, amount, idem_key(idem), ANSWER_WAIT)?
            }
            refund => refund?,
        };
        let record = self.assembly.purchase(purchase_id)?;
        let buyer = buyer_of(&record);
        let (tx_id, from) = match refund.committed {
            Some(committed) => (committed.tx_id, merchant_of(&record)),
            None => {
                // Paid by the issuer after the acquirer decided: its refunds so far number
                // this one.
                let refund_no = record.refunds as usize;
                let issuer = self.bank(&record.buyer_bank)?;
                let tx_id = await_record(|| {
                    let paid = issuer.purchase(purchase_id)?.map(|r| r.refund_tx_ids);
                    Ok(paid.and_then(|ids| ids.get(refund_no.checked_sub(1)?).copied()))
                })?;
                (tx_id, self.party_of(&record.buyer_bank, OWN_ACCOUNT)?)
            }
        };
        self.await_delivery(&from.bank, &tx_id, [party_at(&buyer)]);
        Ok(Receipt {
            tx_id,
            purpose: Purpose::CardRefund,
            amount_tiyn: amount,
            from: Some(from),
            to: Some(buyer),
            at_unix_ms: self.now_ms(),
            abs_posting: None,
        })
    }

    /// Cash from an ATM with a DT-linked card: the card's DT goes to its bank's own account;
    /// at another bank's ATM central moves the bank money between the correspondents after
    /// this answer (no `abs_posting` in the receipt).
    pub fn atm_withdrawal(&self, idem: Option<&Idem>, request: AtmWithdrawal) -> Result<Receipt> {
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        check_pan(&request.pan)?;
        self.bank(&request.atm_bank)?;
        let (bank, client) = self.card_holder(&request.pan).ok_or_else(|| {
            let masked = mask_pan(&request.pan);
            Error::new(ErrorCode::UnknownAccount, format!("card {masked} is not linked to a digital account"))
        })?;
        let holder = self.party_of(&bank, &client)?;
        let own = self.party_of(&bank, OWN_ACCOUNT)?;
        let withdrawal = RoleAtm { pan: request.pan, atm_bank: request.atm_bank, amount };
        let committed = self.assembly.atm_withdrawal(&withdrawal, idem_key(idem), ANSWER_WAIT)?;
        Ok(Receipt {
            tx_id: committed.tx_id,
            purpose: Purpose::CashWithdrawal,
            amount_tiyn: amount,
            from: Some(holder),
            to: Some(own),
            at_unix_ms: self.now_ms(),
            abs_posting: None,
        })
    }

    /// Whether a bank (the card's, before the merchant's learns of it) keeps the purchase.
    fn issued(&self, purchase_id: &str) -> Result<bool> {
        for bank in self.assembly.banks() {
            if bank.purchase(purchase_id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A purchase as the merchant's bank keeps it (what it refunded is its to say); until the
    /// purchase reached the merchant's bank, as the card's bank keeps it.
    pub fn purchase(&self, purchase_id: &str) -> Result<Purchase> {
        match self.assembly.purchase(purchase_id) {
            Ok(record) => Ok(purchase_of(&record)),
            Err(e) if e.code == ErrorCode::NotFound => {
                for bank in self.assembly.banks() {
                    if let Some(record) = bank.purchase(purchase_id)? {
                        return Ok(purchase_of(&record));
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Register a voucher programme between a payer (school) and a payee (canteen), at the
    /// payer's bank, which runs it: its id is `<payer bank>-V<number>` (the network's was
    /// `V<number>`), unique across banks. With an idempotency key, the same request again
    /// answers the same programme.
    pub fn create_voucher_program(
        &self,
        idem: Option<&Idem>,
        request: VoucherProgramRequest,
    ) -> Result<VoucherProgram> {
        let role_request = RoleProgramRequest {
            integrator: request.integrator.trim().to_string(),
            payer_id: request.payer_id,
            payee_bank: request.payee_bank,
            payee_id: request.payee_id,
            amount_per_event: request.amount_per_event_tiyn,
        };
        let program = self.assembly.create_voucher_program(&request.payer_bank, &role_request, idem_key(idem))?;
        Ok(program_of(&program))
    }

    /// Every bank's programmes.
    pub fn voucher_programs(&self) -> Vec<VoucherProgram> {
        self.assembly.voucher_programs().iter().map(program_of).collect()
    }

    /// A page of the voucher programmes (issue 19): `limit` (1 to [`super::LIST_PAGE_MAX`])
    /// from the `offset`-th, with how many there are.
    pub fn voucher_programs_page(&self, offset: usize, limit: usize) -> Result<crate::types::VoucherProgramPage> {
        let programs = self.assembly.voucher_programs();
        let (page, total) = super::page_of(programs.iter(), offset, limit)?;
        Ok(crate::types::VoucherProgramPage {
            programs: page.into_iter().map(program_of).collect(),
            total,
            offset,
            limit,
        })
    }

    /// An integrator's event: the programme's amount paid once per event id, whoever retries
    /// (the event is its own idempotency key at the bank; `idem` adds nothing). An event paid
    /// before answers the first payment's transaction, with `at_unix_ms` the time of this
    /// answer (the bank's record of the event keeps the payment's own time).
    pub fn voucher_event(&self, _idem: Option<&Idem>, program_id: &str, event: VoucherEvent) -> Result<Receipt> {
        let program = self
            .assembly
            .banks()
            .iter()
            .find_map(|b| b.service().voucher_program(program_id))
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no voucher programme {program_id}")))?;
        let event = RoleEvent {
            program_id: program_id.to_string(),
            integrator: event.integrator,
            event_id: event.event_id,
            card: event.card,
        };
        let paid = self.assembly.voucher_event(event, ANSWER_WAIT)?;
        let program = program_of(&program);
        self.await_delivery(&program.payer.bank, &paid.tx_id, [party_at(&program.payee)]);
        Ok(Receipt {
            tx_id: paid.tx_id,
            purpose: Purpose::Voucher,
            amount_tiyn: paid.amount,
            from: Some(program.payer),
            to: Some(program.payee),
            at_unix_ms: self.now_ms(),
            abs_posting: None,
        })
    }

    /// The party of a client (or a bank's own account) as its bank keeps it.
    pub(super) fn party_of(&self, bank: &str, client_id: &str) -> Result<Party> {
        let address = self.bank(bank)?.service().read(|node| node.account(client_id).map(|a| a.address))?;
        Ok(Party { bank: bank.to_string(), client_id: client_id.to_string(), address })
    }
}

pub fn role_mode(mode: CardMode) -> RoleMode {
    match mode {
        CardMode::Dt => RoleMode::Dt,
        CardMode::ConvertToFiat => RoleMode::ConvertToFiat,
    }
}

pub fn buyer_of(record: &PurchaseRecord) -> Party {
    Party { bank: record.buyer_bank.clone(), client_id: record.buyer_client.clone(), address: record.buyer_address }
}

pub fn merchant_of(record: &PurchaseRecord) -> Party {
    Party {
        bank: record.merchant_bank.clone(),
        client_id: record.merchant_client.clone(),
        address: record.merchant_address,
    }
}

pub fn purchase_of(record: &PurchaseRecord) -> Purchase {
    debug_assert!(record.refunded <= record.amount, "a purchase never has more refunded than paid");
    Purchase {
        id: record.id.clone(),
        card: record.card.clone(),
        buyer: buyer_of(record),
        merchant: merchant_of(record),
        amount_tiyn: record.amount,
        refunded_tiyn: record.refunded,
        mode: match record.mode {
            RoleMode::Dt => CardMode::Dt,
            RoleMode::ConvertToFiat => CardMode::ConvertToFiat,
        },
        tx_id: record.tx_id,
        refund_tx_ids: record.refund_tx_ids.clone(),
        at_unix_ms: record.at_ms,
    }
}

pub fn program_of(program: &RoleProgram) -> VoucherProgram {
    VoucherProgram {
        id: program.id.clone(),
        integrator: program.integrator.clone(),
        payer: Party {
            bank: program.payer_bank.clone(),
            client_id: program.payer_client.clone(),
            address: program.payer_address,
        },
        payee: Party {
            bank: program.payee_bank.clone(),
            client_id: program.payee_client.clone(),
            address: program.payee_address,
        },
        amount_per_event_tiyn: program.amount_per_event,
        created_at_unix_ms: program.created_at_ms,
    }
}
