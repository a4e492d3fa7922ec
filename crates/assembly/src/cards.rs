//! Cards and vouchers as a gateway reaches them (SPEC sub-scenarios 6, 9, 10, refunds, ATM):
//! what a bank handle offers (each call wakes the bank's flusher), and the assembly's routed,
//! waiting calls: a purchase goes to the card's bank (the directory knows it), a refund to
//! the merchant's bank (the acquirer, whose record of the purchase is the authority on what is
//! left), a voucher event to the bank running the programme.

use crate::{Assembly, BankHandle};
use dtenge_bank::{
    Answer, CardMode, CardRequest, Committed, IdemKey, PurchaseRecord, RefundReceipt, Refunding, Request, VoucherEvent,
    VoucherProgram, VoucherProgramRequest,
};
use dtenge_core::token::TxId;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use std::time::Duration;

/// A card purchase at a terminal: the card, the terminal's merchant and its bank (the acquirer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardPurchase {
    pub pan: String,
    pub merchant_bank: String,
    /// The merchant's BIN.
    pub merchant_id: String,
    pub amount: Amount,
    pub mode: CardMode,
}

/// Cash at an ATM of `atm_bank` with a DT-linked card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtmWithdrawal {
    pub pan: String,
    pub atm_bank: String,
    pub amount: Amount,
}

/// A voucher event paid (or paid before: the first payment's receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherReceipt {
    pub program_id: String,
    pub event_id: String,
    pub amount: Amount,
    pub tx_id: TxId,
    /// The notary's certificate that committed the payment.
    pub seq: u64,
}

impl BankHandle {
    /// Link card `pan` to a client of this bank (claimed at the directory first).
    pub fn link_card(&self, client_id: &str, pan: &str, now_ms: u64) -> dtenge_bank::Opening {
        self.service.link_card(client_id, pan, now_ms)
    }

    /// A purchase with a card of this bank.
    pub fn card_purchase(&self, purchase: &CardPurchase, idem: Option<IdemKey>) -> Answer {
        let request = CardRequest::Purchase {
            pan: purchase.pan.clone(),
            merchant_bank: purchase.merchant_bank.clone(),
            merchant_id: purchase.merchant_id.clone(),
            amount: purchase.amount,
            mode: purchase.mode,
        };
        self.submit(Request::Card(request), idem)
    }

    /// Cash with a card of this bank.
    pub fn atm_withdrawal(&self, withdrawal: &AtmWithdrawal, idem: Option<IdemKey>) -> Answer {
        let request = CardRequest::Atm {
            pan: withdrawal.pan.clone(),
            atm_bank: withdrawal.atm_bank.clone(),
            amount: withdrawal.amount,
        };
        self.submit(Request::Card(request), idem)
    }

    /// Refund a purchase at one of this bank's merchants.
    pub fn card_refund(
        &self,
        purchase_id: &str,
        amount: Amount,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> Result<Refunding> {
        let refunding = self.service.card_refund(purchase_id, amount, idem, now_ms);
        self.wake();
        refunding
    }

    /// A purchase this bank issued or acquired.
    pub fn purchase(&self, purchase_id: &str) -> Result<Option<PurchaseRecord>> {
        self.service.purchase(purchase_id)
    }

    pub fn create_voucher_program(
        &self,
        request: &VoucherProgramRequest,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> Result<VoucherProgram> {
        self.service.create_voucher_program(request, idem, now_ms)
    }

    pub fn voucher_programs(&self) -> Vec<VoucherProgram> {
        self.service.voucher_programs()
    }

    /// An integrator's event for a programme this bank runs.
    pub fn voucher_event(&self, event: VoucherEvent) -> Answer {
        let answer = self.service.voucher_event(event);
        self.wake();
        answer
    }
}

fn wait<T>(answer: &impl dtenge_sync::RecvTimeout<Result<T>>, timeout: Duration) -> Result<T> {
    answer
        .recv_timeout(timeout)
        .map_err(|_| Error::new(ErrorCode::RequestInProgress, "not answered in time; ask again"))?
}

/// The id of the purchase transaction `tx_id` paid (its bank's records are keyed by it).
pub fn purchase_id(tx_id: &TxId) -> String {
    format!("P-{}", &tx_id.to_string()[..16])
}

impl Assembly {
    fn handle_of(&self, bank: &str) -> Result<&BankHandle> {
        self.bank(bank).ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}'")))
    }

    /// Link card `pan` to `client_id`'s account at `bank`; the card number, masked.
    pub fn link_card(&self, bank: &str, client_id: &str, pan: &str, timeout: Duration) -> Result<String> {
        let opening = self.handle_of(bank)?.link_card(client_id, pan, self.now_ms());
        wait(&opening, timeout)?;
        Ok(dtenge_node::ids::mask_pan(pan))
    }

    /// The bank a card is linked to (the directory's answer).
    fn card_bank(&self, pan: &str) -> Result<&BankHandle> {
        dtenge_node::ids::check_pan(pan)?;
        let bank = self.directory.read_cards(|cards| cards.holder(pan).map(|h| h.bank.clone()));
        let bank = bank.ok_or_else(|| {
            let masked = dtenge_node::ids::mask_pan(pan);
            Error::new(ErrorCode::UnknownAccount, format!("card {masked} is not linked to a digital account"))
        })?;
        self.handle_of(&bank)
    }

    /// A purchase at a terminal, paid by the card's bank; the purchase as that bank keeps it
    /// once the payment is certified. The merchant's bank money (convert-to-fiat) and the
    /// correspondents follow on the delivery streams ([`Assembly::settle_cards`] waits).
    pub fn card_purchase(
        &self,
        purchase: &CardPurchase,
        idem: Option<IdemKey>,
        timeout: Duration,
    ) -> Result<PurchaseRecord> {
        let bank = self.card_bank(&purchase.pan)?;
        let committed = wait(&bank.card_purchase(purchase, idem), timeout)?;
        let id = purchase_id(&committed.tx_id);
        // A key the caller used before for another request with the same fingerprint answers
        // that request's payment, which is no purchase.
        bank.purchase(&id)?.ok_or_else(|| {
            Error::new(ErrorCode::IdempotencyKeyReused, "the idempotency key answered a payment that is not a purchase")
        })
    }

    /// Refund `amount` of a purchase at the merchant's bank, the way it was paid.
    pub fn card_refund(
        &self,
        purchase_id: &str,
        amount: Amount,
        idem: Option<IdemKey>,
        timeout: Duration,
    ) -> Result<RefundReceipt> {
        let acquirer = self.acquirer(purchase_id)?;
        match acquirer.card_refund(purchase_id, amount, idem, self.now_ms())? {
            Refunding::Decided(receipt) => Ok(receipt),
            Refunding::Submitted { purchase_id, amount, answer } => {
                let committed = wait(&answer, timeout)?;
                Ok(RefundReceipt { purchase_id, amount, mode: CardMode::Dt, committed: Some(committed) })
            }
        }
    }

    fn acquirer(&self, purchase_id: &str) -> Result<&BankHandle> {
        for bank in self.banks() {
            if bank.purchase(purchase_id)?.is_some_and(|p| p.merchant_bank == bank.id()) {
                return Ok(bank);
            }
        }
        Err(Error::new(ErrorCode::NotFound, format!("no card purchase {purchase_id}")))
    }

    /// A purchase, as the merchant's bank keeps it (what it refunded is its to say).
    pub fn purchase(&self, purchase_id: &str) -> Result<PurchaseRecord> {
        let acquirer = self.acquirer(purchase_id)?;
        Ok(acquirer.purchase(purchase_id)?.expect("found above"))
    }

    /// Cash at an ATM with a DT-linked card.
    pub fn atm_withdrawal(
        &self,
        withdrawal: &AtmWithdrawal,
        idem: Option<IdemKey>,
        timeout: Duration,
    ) -> Result<Committed> {
        let bank = self.card_bank(&withdrawal.pan)?;
        wait(&bank.atm_withdrawal(withdrawal, idem), timeout)
    }

    /// Register a voucher programme paid by a client of `payer_bank`.
    pub fn create_voucher_program(
        &self,
        payer_bank: &str,
        request: &VoucherProgramRequest,
        idem: Option<IdemKey>,
    ) -> Result<VoucherProgram> {
        self.handle_of(payer_bank)?.create_voucher_program(request, idem, self.now_ms())
    }

    /// Every bank's programmes.
    pub fn voucher_programs(&self) -> Vec<VoucherProgram> {
        self.banks().iter().flat_map(BankHandle::voucher_programs).collect()
    }

    /// An integrator's event: the programme's amount paid once per event id.
    pub fn voucher_event(&self, event: VoucherEvent, timeout: Duration) -> Result<VoucherReceipt> {
        let found = self.banks().iter().find_map(|b| b.service().voucher_program(&event.program_id).map(|p| (b, p)));
        let (bank, program) = found
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no voucher programme {}", event.program_id)))?;
        let event_id = event.event_id.trim().to_string();
        let committed = wait(&bank.voucher_event(event), timeout)?;
        Ok(VoucherReceipt {
            program_id: program.id,
            event_id,
            amount: program.amount_per_event,
            tx_id: committed.tx_id,
            seq: committed.seq,
        })
    }

    /// The events a programme paid, as the bank running it recorded them.
    pub fn voucher_events(&self, program_id: &str) -> Result<Vec<dtenge_bank::EventRecord>> {
        let bank = self.banks().iter().find(|b| b.service().voucher_program(program_id).is_some());
        let bank = bank.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no voucher programme {program_id}")))?;
        bank.service().voucher_events(program_id)
    }

    /// Wait until the roles settled ([`Assembly::settle`]) and every refund owed was paid.
    pub fn settle_cards(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.settle(timeout)?;
            if self.banks().iter().all(|b| b.service().card_payouts_pending() == 0 && b.service().cards_waiting() == 0)
            {
                return self.settle(timeout);
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::new(ErrorCode::RequestInProgress, "refunds owed were not paid in time"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
