//! Cards across roles (SPEC sub-scenarios 9 and 10, refunds, ATM withdrawal).
//!
//! - **Linking** ([`BankService::link_card`]): the card number is claimed at the directory
//!   (one link per card across the network), then kept in the bank's own `node_cards`.
//! - **Purchase** ([`CardRequest::Purchase`], at the card's bank, the issuer): a custodial
//!   payment through the batched pipeline, with its leg in the outbox entry. DT mode pays the
//!   merchant; convert-to-fiat pays the issuer's own account. The commit that applies the
//!   certified payment also stores the purchase and plans, on the numbered delivery streams,
//!   [`CardNotice::Acquired`] to the merchant's bank (the acquirer, which stores the purchase
//!   and, converting, credits the merchant's bank money in the commit that applies it) and, for
//!   a conversion between two banks, [`CardNotice::Settle`] to central (the ABS moves
//!   `corr:<issuer> → corr:<acquirer>`). Both happen once, driven by the certified payment.
//! - **Refund** ([`BankService::card_refund`], at the acquirer, whose record is the authority
//!   on what is left): DT mode pays the merchant's DT back to the buyer through the pipeline;
//!   convert-to-fiat debits the merchant's bank money here in one commit with
//!   [`CardNotice::RefundPayout`] to the issuer and `Settle` (`corr:<acquirer> →
//!   corr:<issuer>`) to central. The issuer stores what it owes (`bank_card_payouts`) when it
//!   applies the notice and pays it from its own DT through the pipeline, once (an idempotency
//!   key of the refund's own), again at every tick until it commits.
//! - **ATM** ([`CardRequest::Atm`]): the card's DT goes to its bank's own account (the cash
//!   leaves the ATM); at another bank's ATM, `Settle` moves `corr:<card's bank> →
//!   corr:<ATM's bank>`.

use crate::conversion::{FiatAfter, FiatMove};
use crate::state::Inner;
use crate::submit::Admitted;
use crate::{Answer, BankService, Committed, Conversion, IdemKey, Reply, Request, Who};
use crossbeam_channel::Sender;
use dtenge_core::crypto::Hash32;
use dtenge_core::token::TxId;
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::ids::{check_pan, mask_pan};
use dtenge_node::{Delta, Purpose, OWN_ACCOUNT};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{AccountKind, CardClaim, CardClaimReply, CardMode, CardNotice, Decode, DecodeError, Encode};
use dtenge_wire::{Envelope, Message, Payload, PurchaseRecord, Reader, RoleId, Writer};
use std::collections::{BTreeMap, HashMap};

/// Purchases this bank issued or acquired, by purchase id.
pub const PURCHASES_TABLE: Table = Table("bank_card_purchases");
/// DT this bank owes buyers for convert-to-fiat refunds: purchase id, 0, refund number (u32
/// big-endian) -> the amount.
pub const PAYOUTS_TABLE: Table = Table("bank_card_payouts");
/// Convert-to-fiat refunds decided here, by their idempotency key: fingerprint, receipt.
pub const REFUNDS_TABLE: Table = Table("bank_card_refunds");
/// Bank money owed to merchants listed at the directory but not opened here yet (the claim
/// is answered before the opening): purchase id -> (merchant, amount), credited at the first
/// tick after the opening.
pub const CREDITS_TABLE: Table = Table("bank_card_credits");
/// The cards' and vouchers' tables.
pub const TABLES: [Table; 6] = [
    PURCHASES_TABLE,
    PAYOUTS_TABLE,
    REFUNDS_TABLE,
    CREDITS_TABLE,
    crate::vouchers::PROGRAMS_TABLE,
    crate::vouchers::EVENTS_TABLE,
];

/// Most cards being linked at once.
pub const CARD_CLAIMS_MAX: usize = 1_024;

/// What a client (or the acquirer's terminal, through the gateway) asks of the card's bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardRequest {
    /// Pay `amount` to merchant `merchant_id` (a legal entity) at `merchant_bank` with card `pan`.
    Purchase { pan: String, merchant_bank: String, merchant_id: String, amount: Amount, mode: CardMode },
    /// Cash at an ATM of `atm_bank` with card `pan`.
    Atm { pan: String, atm_bank: String, amount: Amount },
    /// A DT-mode refund at the acquirer ([`BankService::card_refund`] submits it).
    Refund { purchase_id: String, amount: Amount },
    /// The issuer pays a convert-to-fiat refund it owes (submitted by the bank itself).
    Payout { purchase_id: String, refund_no: u32 },
}

/// A refund, as the acquirer answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReceipt {
    pub purchase_id: String,
    pub amount: Amount,
    pub mode: CardMode,
    /// The DT transaction when this bank made it (DT mode); a convert-to-fiat refund's DT is
    /// paid by the issuer from its own account, after this answer.
    pub committed: Option<Committed>,
}

/// A refund taken: through the pipeline (DT mode), or decided here (convert-to-fiat).
pub enum Refunding {
    Submitted { purchase_id: String, amount: Amount, answer: Answer },
    Decided(RefundReceipt),
}

/// A card or voucher flow's leg of a custodial payment, kept in its outbox entry and applied
/// with the certified payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CardLeg {
    Purchase(Box<PurchaseRecord>),
    Refund { purchase_id: String, amount: Amount },
    Payout { purchase_id: String, refund_no: u32, amount: Amount },
    Atm { atm_bank: String, amount: Amount, reference: String },
    Voucher { program_id: String, event_id: String, reference: String },
}

impl CardLeg {
    pub(crate) fn purpose(&self) -> Purpose {
        match self {
            CardLeg::Purchase(_) => Purpose::CardPurchase,
            CardLeg::Refund { .. } | CardLeg::Payout { .. } => Purpose::CardRefund,
            CardLeg::Atm { .. } => Purpose::CashWithdrawal,
            CardLeg::Voucher { .. } => Purpose::Voucher,
        }
    }

    /// The reference the clients' history shows.
    pub(crate) fn reference(&self) -> String {
        match self {
            CardLeg::Purchase(record) => format!("{} card {}", record.id, record.card),
            CardLeg::Refund { purchase_id, .. } | CardLeg::Payout { purchase_id, .. } => {
                format!("refund of {purchase_id}")
            }
            CardLeg::Atm { reference, .. } | CardLeg::Voucher { reference, .. } => reference.clone(),
        }
    }
}

impl Encode for CardLeg {
    fn encode(&self, w: &mut Writer) {
        match self {
            CardLeg::Purchase(record) => {
                w.u8(1);
                w.put(&**record);
            }
            CardLeg::Refund { purchase_id, amount } => {
                w.u8(2);
                w.str(purchase_id);
                w.put(amount);
            }
            CardLeg::Payout { purchase_id, refund_no, amount } => {
                w.u8(3);
                w.str(purchase_id);
                w.u32(*refund_no);
                w.put(amount);
            }
            CardLeg::Atm { atm_bank, amount, reference } => {
                w.u8(4);
                w.str(atm_bank);
                w.put(amount);
                w.str(reference);
            }
            CardLeg::Voucher { program_id, event_id, reference } => {
                w.u8(5);
                w.str(program_id);
                w.str(event_id);
                w.str(reference);
            }
        }
    }
}

impl Decode for CardLeg {
    const ENCODED_BYTES_MIN: usize = 1 + 4 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        match r.u8("card leg")? {
            1 => Ok(CardLeg::Purchase(Box::new(r.get()?))),
            2 => Ok(CardLeg::Refund { purchase_id: r.string("purchase id")?, amount: r.get()? }),
            3 => Ok(CardLeg::Payout {
                purchase_id: r.string("purchase id")?,
                refund_no: r.u32("refund number")?,
                amount: r.get()?,
            }),
            4 => Ok(CardLeg::Atm {
                atm_bank: r.string("ATM bank")?,
                amount: r.get()?,
                reference: r.string("reference")?,
            }),
            5 => Ok(CardLeg::Voucher {
                program_id: r.string("programme id")?,
                event_id: r.string("event id")?,
                reference: r.string("reference")?,
            }),
            tag => Err(DecodeError::UnknownTag { what: "card leg", tag: u64::from(tag) }),
        }
    }
}

/// A card waiting for the directory's answer.
struct PendingCard {
    client_id: String,
    sent_at_ms: u64,
    answers: Vec<Sender<Result<()>>>,
}

/// A refund this bank owes a buyer (convert-to-fiat), not paid yet.
struct Owed {
    amount: Amount,
    submitted_at_ms: u64,
}

/// The cards' and vouchers' state in memory.
#[derive(Default)]
pub(crate) struct CardState {
    claims: BTreeMap<String, PendingCard>,
    /// DT-mode refunds in the pipeline, by purchase: counted against what is left.
    /// DT-mode refunds in the pipeline, by purchase: their amount and how many.
    refunds_in_flight: HashMap<String, (Amount, u32)>,
    owed: BTreeMap<(String, u32), Owed>,
    /// Bank money owed to merchants not opened here yet, by purchase.
    credits: BTreeMap<String, (String, Amount)>,
    pub(crate) programs: crate::vouchers::Programs,
    /// Card notices refused (not this bank's, or inconsistent): applied as nothing.
    rejected: u64,
    /// The last nonce a card or voucher payment took, and the latest time the bank saw.
    nonce: u64,
    now_ms: u64,
}

impl CardState {
    /// Read the refunds owed and the programmes; reserve again what the outbox's refunds hold.
    pub(crate) fn load<'a>(
        store: &Store,
        outbox: impl Iterator<Item = &'a crate::state::OutboxEntry>,
    ) -> Result<CardState> {
        let mut state = CardState { programs: crate::vouchers::Programs::load(store)?, ..CardState::default() };
        for (key, value) in store.scan(PAYOUTS_TABLE)? {
            let (purchase_id, refund_no) = payout_of(&key)?;
            let amount = Amount::from_bytes(&value).map_err(|e| storage(&format!("a refund owed: {e}")))?;
            state.owed.insert((purchase_id, refund_no), Owed { amount, submitted_at_ms: 0 });
        }
        for (key, value) in store.scan(CREDITS_TABLE)? {
            let id = String::from_utf8(key).map_err(|_| storage("a credit's purchase id"))?;
            let credit = <(String, Amount)>::from_bytes(&value).map_err(|e| storage(&format!("a credit: {e}")))?;
            state.credits.insert(id, credit);
        }
        for entry in outbox {
            if let Some(CardLeg::Refund { purchase_id, amount }) = &entry.card {
                state.reserve_refund(purchase_id, *amount)?;
            }
        }
        Ok(state)
    }

    /// The time of the batch being taken: nonces are never below it.
    pub(crate) fn observe(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// A nonce for a payment the bank builds (custodial payments, conversions, cards,
    /// vouchers): each attempt is a new transaction. A payment
    /// the notary refused for good (its bank was blocked) is refused again if asked again with
    /// the same inputs and nonce; a refund owed is asked again until paid, and a client asks
    /// again after a block is lifted. Above every nonce taken before, and not below the time
    /// of the batch, so also above those taken before a restart (the clock moves on).
    pub(crate) fn next_nonce(&mut self) -> u64 {
        self.nonce = self.nonce.saturating_add(1).max(self.now_ms);
        self.nonce
    }

    fn in_flight(&self, purchase_id: &str) -> (Amount, u32) {
        self.refunds_in_flight.get(purchase_id).copied().unwrap_or((Amount::ZERO, 0))
    }

    fn reserve_refund(&mut self, purchase_id: &str, amount: Amount) -> Result<()> {
        let (total, count) = self.in_flight(purchase_id);
        self.refunds_in_flight.insert(purchase_id.to_string(), (total.checked_add(amount)?, count + 1));
        Ok(())
    }

    /// A leg's payment was answered (`committed` or not) or dropped before the notary: what
    /// it reserved in memory is released.
    pub(crate) fn answered(&mut self, leg: &CardLeg, committed: bool) {
        match leg {
            CardLeg::Refund { purchase_id, amount } => {
                let (total, count) = self.in_flight(purchase_id);
                let left = total.checked_sub(*amount).unwrap_or_else(|_| panic!("a refund releases what it reserved"));
                assert!(count > 0, "a refund releases what it reserved");
                if count == 1 {
                    assert!(left.is_zero(), "the last refund in flight releases the rest");
                    self.refunds_in_flight.remove(purchase_id);
                } else {
                    self.refunds_in_flight.insert(purchase_id.clone(), (left, count - 1));
                }
            }
            CardLeg::Payout { purchase_id, refund_no, .. } if committed => {
                self.owed.remove(&(purchase_id.clone(), *refund_no));
            }
            _ => {}
        }
    }
}

fn storage(what: &str) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("bank cards: {what}"))
}

fn payout_key(purchase_id: &str, refund_no: u32) -> Vec<u8> {
    let mut key = purchase_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&refund_no.to_be_bytes());
    key
}

fn payout_of(key: &[u8]) -> Result<(String, u32)> {
    let split = key.len().checked_sub(5).ok_or_else(|| storage("a refund owed's key"))?;
    if key[split] != 0 {
        return Err(storage("a refund owed's key"));
    }
    let id = String::from_utf8(key[..split].to_vec()).map_err(|_| storage("a purchase id"))?;
    let no: [u8; 4] = key[split + 1..].try_into().map_err(|_| storage("a refund number"))?;
    Ok((id, u32::from_be_bytes(no)))
}

/// The idempotency key under which the issuer pays refund `refund_no` of a purchase: the
/// refund's own, so that it is paid once however often it is submitted.
fn payout_idem(purchase_id: &str, refund_no: u32) -> IdemKey {
    let key = format!("{OWN_KEY_START}card-payout:{purchase_id}:{refund_no}");
    let fingerprint = dtenge_core::crypto::hash_parts(b"dtenge/card-payout", &[key.as_bytes()]);
    IdemKey { key, fingerprint }
}

/// The first character of the keys the bank gives its own payments (a refund owed, a voucher
/// event): no caller's key starts with it, so that none can take a key before the bank does
/// (a payout whose key answered a caller's payment would never be paid).
pub(crate) const OWN_KEY_START: char = '\u{1}';

/// A caller's idempotency key has 1 to 128 bytes, as one with a submission, and does not
/// start as the bank's own keys do.
pub(crate) fn check_key(idem: Option<&IdemKey>) -> Result<()> {
    match idem {
        Some(idem) if idem.key.is_empty() || idem.key.len() > 128 => {
            Err(Error::malformed("an idempotency key has 1 to 128 characters"))
        }
        Some(idem) if idem.key.starts_with(OWN_KEY_START) => {
            Err(Error::malformed("an idempotency key does not start with a control character"))
        }
        _ => Ok(()),
    }
}

/// A submission's key: the bank's own for its own payments (checked when they are admitted),
/// a caller's for everything else.
pub(crate) fn check_caller_key(request: &Request, idem: &IdemKey) -> Result<()> {
    match request {
        Request::Card(CardRequest::Payout { .. }) | Request::Voucher(_) => Ok(()),
        _ => check_key(Some(idem)),
    }
}

/// A purchase's id: `P-` and the first 16 hex digits of its transaction's id.
pub(crate) fn purchase_id(tx_id: &TxId) -> String {
    format!("P-{}", &tx_id.to_string()[..16])
}

/// What one notary answer's card legs change beside their payments: the purchases written
/// once each (two refunds of one purchase in one answer both count), the notices to plan.
#[derive(Default)]
pub(crate) struct CardPlan {
    records: BTreeMap<String, PurchaseRecord>,
    notices: Vec<(RoleId, CardNotice)>,
    /// The certificate that answered (what a voucher event's record names).
    seq: u64,
}

impl CardPlan {
    pub(crate) fn answering(seq: u64) -> CardPlan {
        CardPlan { seq, ..CardPlan::default() }
    }
}

/// The parts of a committed payment's plan a card leg adds to.
pub(crate) struct Legs<'a> {
    pub(crate) delta: &'a mut Delta,
    pub(crate) fiat_after: &'a mut FiatAfter,
    pub(crate) plan: &'a mut CardPlan,
}

impl BankService {
    /// A purchase this bank keeps (as the buyer's bank or the merchant's).
    pub fn purchase(&self, purchase_id: &str) -> Result<Option<PurchaseRecord>> {
        let Some(bytes) = self.store.get(PURCHASES_TABLE, purchase_id.as_bytes())? else { return Ok(None) };
        PurchaseRecord::from_bytes(&bytes).map(Some).map_err(|e| storage(&format!("a purchase: {e}")))
    }

    /// Convert-to-fiat refunds this bank owes buyers and has not paid yet.
    pub fn card_payouts_pending(&self) -> usize {
        self.inner.lock().cards.owed.len()
    }

    /// What the convert-to-fiat refunds this bank owes lack of its own DT. A refund owed is
    /// paid from the bank's own account (the buyer's DT went there at the purchase, and the
    /// bank may have paid it out or redeemed it since); only an emission from the NBK adds to
    /// it when the bank's clients stop converting, and no message of the protocol asks for one:
    /// the bank's treasury asks the NBK's operator for at least this much, and the payouts,
    /// asked again at every tick, go through once it arrives. DT of the bank's own payments
    /// in flight counts as its own.
    pub fn card_payouts_short(&self) -> Amount {
        let inner = self.inner.lock();
        // Amounts sum below `Amount::MAX` (the money supply is far below it).
        let owed = Amount::sum(inner.cards.owed.values().map(|owed| owed.amount)).unwrap_or(Amount::MAX);
        let own = inner
            .node
            .balance(OWN_ACCOUNT)
            .and_then(|b| b.dt_spendable_tiyn.checked_add(b.dt_reserved_tiyn))
            .unwrap_or(Amount::ZERO);
        owed.checked_sub(own).unwrap_or(Amount::ZERO)
    }

    /// Bank money owed to merchants whose accounts are not opened here yet.
    pub fn card_credits_pending(&self) -> usize {
        self.inner.lock().cards.credits.len()
    }

    /// Card notices from other banks this bank refused.
    pub fn card_notices_rejected(&self) -> u64 {
        self.inner.lock().cards.rejected
    }

    /// Cards waiting for the directory's answer.
    pub fn cards_waiting(&self) -> usize {
        self.inner.lock().cards.claims.len()
    }

    /// Link card `pan` to `client_id`'s account: claimed at the directory first, kept here
    /// (durably) once the directory listed it.
    pub fn link_card(&self, client_id: &str, pan: &str, now_ms: u64) -> crate::Opening {
        let (answer, receiver) = crossbeam_channel::bounded(1);
        let mut inner = self.inner.lock();
        if let Err(e) = self.admit_card_claim(&inner, client_id, pan) {
            let _ = answer.send(Err(e));
            return receiver;
        }
        if let Some(pending) = inner.cards.claims.get_mut(pan) {
            if pending.client_id != client_id {
                let _ = answer.send(Err(Error::new(ErrorCode::Conflict, "the card is being linked to another client")));
            } else {
                pending.answers.push(answer);
            }
            return receiver;
        }
        self.send_card_claim(pan, client_id);
        let pending = PendingCard { client_id: client_id.to_string(), sent_at_ms: now_ms, answers: vec![answer] };
        inner.cards.claims.insert(pan.to_string(), pending);
        receiver
    }

    fn admit_card_claim(&self, inner: &Inner, client_id: &str, pan: &str) -> Result<()> {
        inner.ensure_running()?;
        if inner.cards.claims.len() >= CARD_CLAIMS_MAX && !inner.cards.claims.contains_key(pan) {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many cards being linked; retry"));
        }
        // The node's own checks (Luhn, the account, the card not linked here), nothing written.
        inner.node.plan_card(pan, client_id, &mut WriteBatch::new())
    }

    fn send_card_claim(&self, pan: &str, client_id: &str) {
        let claim = CardClaim { pan: pan.to_string(), client_id: client_id.to_string() };
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: RoleId::Directory,
            message: Message::CardClaim(claim),
        });
    }

    pub(crate) fn on_card_claim_reply(&self, inner: &mut Inner, reply: CardClaimReply) {
        let Some(pending) = inner.cards.claims.remove(&reply.pan) else { return };
        let result = match reply.refused {
            Some(refusal) => Err(refusal),
            None => {
                let mut batch = WriteBatch::new();
                inner
                    .node
                    .plan_card(&reply.pan, &pending.client_id, &mut batch)
                    .and_then(|()| self.commit(inner, batch))
                    .map(|()| inner.node.apply_card(&reply.pan, &pending.client_id))
            }
        };
        for answer in pending.answers {
            let _ = answer.send(result.clone());
        }
    }

    /// Resend card claims and submit the refunds owed, at every tick.
    pub(crate) fn cards_tick(&self, inner: &mut Inner, now_ms: u64) {
        let due = |at: u64| at.saturating_add(crate::RESEND_AFTER_MS) <= now_ms;
        let claims: Vec<(String, String)> = inner
            .cards
            .claims
            .iter_mut()
            .filter(|(_, p)| due(p.sent_at_ms))
            .map(|(pan, p)| {
                p.sent_at_ms = now_ms;
                (pan.clone(), p.client_id.clone())
            })
            .collect();
        for (pan, client_id) in claims {
            self.send_card_claim(&pan, &client_id);
        }
        let owed: Vec<(String, u32)> = inner
            .cards
            .owed
            .iter()
            .filter(|((id, no), owed)| {
                due(owed.submitted_at_ms) && !inner.idem_in_flight.contains_key(&payout_idem(id, *no).key)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for (purchase_id, refund_no) in owed {
            self.submit_payout(inner, &purchase_id, refund_no, now_ms);
        }
        self.apply_credits(inner);
    }

    /// Credit the merchants opened since their purchases arrived, one commit each (rare).
    fn apply_credits(&self, inner: &mut Inner) {
        let opened: Vec<String> = inner
            .cards
            .credits
            .iter()
            .filter(|(_, (client, _))| inner.node.account(client).is_ok())
            .map(|(id, _)| id.clone())
            .collect();
        for id in opened {
            let (client, amount) = inner.cards.credits[&id].clone();
            // Beyond the largest amount (never in practice): it stays owed, for the operators.
            let Ok(fiat) = inner.node.fiat_after(&client, amount, Amount::ZERO) else { continue };
            let delta = inner.node.fiat_delta(&client, fiat).expect("the merchant's account is open");
            let mut batch = WriteBatch::new();
            delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
            batch.delete(CREDITS_TABLE, id.as_bytes().to_vec());
            if self.commit(inner, batch).is_err() {
                return;
            }
            inner.node.apply(delta);
            inner.cards.credits.remove(&id);
        }
    }

    /// Queue the payment of a refund owed; its answer goes nowhere (the tick submits it again
    /// until it commits, and its own idempotency key pays it once).
    fn submit_payout(&self, inner: &mut Inner, purchase_id: &str, refund_no: u32, now_ms: u64) {
        if let Some(owed) = inner.cards.owed.get_mut(&(purchase_id.to_string(), refund_no)) {
            owed.submitted_at_ms = now_ms;
        }
        let (answer, _) = dtenge_sync::oneshot::channel();
        let request = Request::Card(CardRequest::Payout { purchase_id: purchase_id.to_string(), refund_no });
        let idem = Some(payout_idem(purchase_id, refund_no));
        // A full queue answers the dropped receiver: the next tick asks again.
        self.submit_to(request, None, idem, Reply::Own(answer));
    }

    /// Refund `amount` of purchase `purchase_id`, at the merchant's bank (the acquirer), the
    /// way it was paid and never more than is left.
    pub fn card_refund(
        &self,
        purchase_id: &str,
        amount: Amount,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> Result<Refunding> {
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        check_key(idem.as_ref())?;
        let record = self.acquired(purchase_id)?;
        match record.mode {
            CardMode::Dt => {
                let request = Request::Card(CardRequest::Refund { purchase_id: purchase_id.to_string(), amount });
                let answer = self.submit(request, idem);
                Ok(Refunding::Submitted { purchase_id: purchase_id.to_string(), amount, answer })
            }
            CardMode::ConvertToFiat => self.refund_fiat(purchase_id, amount, idem, now_ms).map(Refunding::Decided),
        }
    }

    /// A purchase this bank acquired (its merchant was paid); `NOT_FOUND` otherwise.
    fn acquired(&self, purchase_id: &str) -> Result<PurchaseRecord> {
        self.purchase(purchase_id)?.filter(|r| r.merchant_bank == self.id).ok_or_else(|| {
            Error::new(ErrorCode::NotFound, format!("no card purchase {purchase_id} at a merchant of '{}'", self.id))
        })
    }

    /// A refund may take `amount` of what is left, beside the refunds in flight.
    fn check_left(inner: &Inner, record: &PurchaseRecord, amount: Amount) -> Result<()> {
        let (in_flight, count) = inner.cards.in_flight(&record.id);
        // Each refund is a line of the record, which has a bounded number of them.
        if record.refunds as usize + count as usize >= dtenge_wire::cards::REFUNDS_MAX {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("purchase {} has had {} refunds, the most one purchase has", record.id, record.refunds),
            ));
        }
        let left = record.left().checked_sub(in_flight).unwrap_or(Amount::ZERO);
        if amount > left {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "refund of {amount} exceeds what is left of purchase {}: {} of {} refunded or being refunded",
                    record.id,
                    record.amount.checked_sub(left).unwrap_or(record.amount),
                    record.amount
                ),
            ));
        }
        Ok(())
    }

    /// A convert-to-fiat refund, decided here in one commit: the merchant's bank money debited,
    /// the purchase's refund counted, and the issuer's payout and central's settlement planned
    /// on the delivery streams (or the payout owed here, when the buyer is this bank's).
    fn refund_fiat(
        &self,
        purchase_id: &str,
        amount: Amount,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> Result<RefundReceipt> {
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if let Some(receipt) = self.refund_answered(idem)? {
                return Ok(receipt);
            }
        }
        let mut record = self.acquired(purchase_id)?;
        Self::check_left(&inner, &record, amount)?;
        let merchant = record.merchant_client.clone();
        // The merchant's bank money beside what its conversions in flight reserved.
        let reserved = inner.fiat_reserved.of(&merchant).checked_add(amount)?;
        inner.node.fiat_after(&merchant, Amount::ZERO, reserved)?;
        let fiat = inner.node.fiat_after(&merchant, Amount::ZERO, amount)?;
        let delta = inner.node.fiat_delta(&merchant, fiat)?;
        record.refunded = record.refunded.checked_add(amount)?;
        record.refunds =
            record.refunds.checked_add(1).ok_or_else(|| Error::new(ErrorCode::LimitExceeded, "refunds"))?;
        let refund_no = record.refunds;
        let receipt =
            RefundReceipt { purchase_id: purchase_id.to_string(), amount, mode: record.mode, committed: None };
        let mut batch = WriteBatch::new();
        delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
        batch.put(PURCHASES_TABLE, purchase_id.as_bytes().to_vec(), record.to_bytes());
        if let Some(idem) = &idem {
            batch.put(
                REFUNDS_TABLE,
                idem.key.as_bytes().to_vec(),
                (idem.fingerprint, receipt_bytes(&receipt)).to_bytes(),
            );
        }
        let mut sends = Vec::new();
        let local = record.buyer_bank == self.id;
        if local {
            batch.put(PAYOUTS_TABLE, payout_key(purchase_id, refund_no), amount.to_bytes());
        } else {
            let payout = CardNotice::RefundPayout { purchase_id: purchase_id.to_string(), refund_no, amount };
            let reference = format!("refund {refund_no} of {purchase_id}");
            let settle = CardNotice::Settle { reference, to_bank: record.buyer_bank.clone(), amount };
            sends.push(inner.outbound.plan(RoleId::Bank(record.buyer_bank.clone()), Payload::Card(payout), &mut batch));
            sends.push(inner.outbound.plan(RoleId::Central, Payload::Card(settle), &mut batch));
        }
        self.commit(&mut inner, batch)?;
        inner.node.apply(delta);
        let me = self.role();
        for planned in sends {
            let envelope = inner.outbound.sent(planned, &me, now_ms);
            let _ = self.transport.send(envelope);
        }
        if local {
            inner.cards.owed.insert((purchase_id.to_string(), refund_no), Owed { amount, submitted_at_ms: now_ms });
            self.submit_payout(&mut inner, purchase_id, refund_no, now_ms);
        }
        Ok(receipt)
    }

    fn refund_answered(&self, idem: &IdemKey) -> Result<Option<RefundReceipt>> {
        let Some(bytes) = self.store.get(REFUNDS_TABLE, idem.key.as_bytes())? else { return Ok(None) };
        let (fingerprint, receipt): (Hash32, Vec<u8>) =
            <(Hash32, Vec<u8>)>::from_bytes(&bytes).map_err(|e| storage(&format!("a refund's key: {e}")))?;
        if fingerprint != idem.fingerprint {
            return Err(Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            ));
        }
        receipt_of(&receipt).map(Some)
    }

    /// A card request's own checks; its payment built, its inputs reserved.
    pub(crate) fn admit_card(
        &self,
        inner: &mut Inner,
        request: CardRequest,
        idem: Option<IdemKey>,
        answer: Reply,
    ) -> Result<Admitted> {
        let (tx, payee_banks, leg) = match request {
            CardRequest::Purchase { pan, merchant_bank, merchant_id, amount, mode } => {
                self.build_purchase(inner, &pan, &merchant_bank, &merchant_id, amount, mode)?
            }
            CardRequest::Atm { pan, atm_bank, amount } => self.build_atm(inner, &pan, &atm_bank, amount)?,
            CardRequest::Refund { purchase_id, amount } => self.build_refund(inner, &purchase_id, amount)?,
            CardRequest::Payout { purchase_id, refund_no } => {
                if idem.as_ref() != Some(&payout_idem(&purchase_id, refund_no)) {
                    return Err(Error::malformed("a refund payout is submitted by the bank itself"));
                }
                self.build_payout(inner, &purchase_id, refund_no)?
            }
        };
        let ids = match TxIds::of(&tx) {
            Ok(ids) => ids,
            Err(e) => {
                inner.node.release(&tx);
                inner.cards.answered(&leg, false);
                return Err(e);
            }
        };
        let leg = match leg {
            CardLeg::Purchase(mut record) => {
                record.id = purchase_id(&ids.tx_id);
                record.tx_id = ids.tx_id;
                CardLeg::Purchase(record)
            }
            CardLeg::Atm { atm_bank, amount, reference } => {
                let reference = format!("{reference} {}", &ids.tx_id.to_string()[..16]);
                CardLeg::Atm { atm_bank, amount, reference }
            }
            leg => leg,
        };
        Ok(Admitted { tx, ids, idem, answer, payee_banks, fiat: None, card: Some(leg), label: None, owner_key: None })
    }

    /// The client a card of this bank is linked to.
    fn card_holder(&self, inner: &Inner, pan: &str) -> Result<String> {
        check_pan(pan)?;
        inner.node.card_client(pan).map(str::to_string).ok_or_else(|| {
            Error::new(ErrorCode::UnknownAccount, format!("card {} is not linked at '{}'", mask_pan(pan), self.id))
        })
    }

    /// Another bank of this network, not blocked.
    fn other_bank(&self, bank: &str) -> Result<()> {
        let anchors = self.anchors.read();
        if !anchors.banks.contains_key(bank) {
            return Err(Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}' in this network")));
        }
        if anchors.blocked.contains(bank) {
            return Err(Error::new(ErrorCode::BankBlocked, format!("'{bank}' is blocked by the NBK operator")));
        }
        Ok(())
    }

    fn build_purchase(
        &self,
        inner: &mut Inner,
        pan: &str,
        merchant_bank: &str,
        merchant_id: &str,
        amount: Amount,
        mode: CardMode,
    ) -> Result<(dtenge_core::tx::Transaction, Vec<String>, CardLeg)> {
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        let client = self.card_holder(inner, pan)?;
        if merchant_bank != self.id {
            self.other_bank(merchant_bank)?;
        }
        let merchant = self.find(Who::Client(merchant_id), Some(merchant_bank))?;
        if merchant.kind != AccountKind::LegalEntity {
            return Err(Error::new(ErrorCode::Forbidden, "the merchant must be a legal entity"));
        }
        if merchant_bank == self.id {
            // Listed at the directory and opened here (a claim lists it before the opening).
            inner.node.account(merchant_id)?;
        }
        let buyer = inner.node.account(&client)?.address;
        if buyer == merchant.address {
            return Err(Error::malformed("a card does not pay its own account"));
        }
        let issuer = self.anchors.read().issuer;
        let nonce = inner.cards.next_nonce();
        let (tx, payee_banks) = match mode {
            CardMode::Dt => {
                let banks = self.payee_banks(inner, std::iter::once(&merchant.address))?;
                (inner.node.prepare_payment(&client, &[(merchant.address, amount)], issuer, nonce)?, banks)
            }
            CardMode::ConvertToFiat => {
                let own = inner.node.account(OWN_ACCOUNT)?.address;
                (inner.node.prepare_payment(&client, &[(own, amount)], issuer, nonce)?, Vec::new())
            }
        };
        let record = PurchaseRecord {
            id: String::new(),
            card: mask_pan(pan),
            buyer_bank: self.id.clone(),
            buyer_client: client,
            buyer_address: buyer,
            merchant_bank: merchant_bank.to_string(),
            merchant_client: merchant_id.to_string(),
            merchant_address: merchant.address,
            amount,
            refunded: Amount::ZERO,
            refunds: 0,
            mode,
            tx_id: TxId(Hash32([0; 32])),
            refund_tx_ids: Vec::new(),
            at_ms: 0,
        };
        Ok((tx, payee_banks, CardLeg::Purchase(Box::new(record))))
    }

    fn build_atm(
        &self,
        inner: &mut Inner,
        pan: &str,
        atm_bank: &str,
        amount: Amount,
    ) -> Result<(dtenge_core::tx::Transaction, Vec<String>, CardLeg)> {
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        let client = self.card_holder(inner, pan)?;
        if atm_bank != self.id {
            self.other_bank(atm_bank)?;
        }
        let own = inner.node.account(OWN_ACCOUNT)?.address;
        let issuer = self.anchors.read().issuer;
        let tx = inner.node.prepare_payment(&client, &[(own, amount)], issuer, inner.cards.next_nonce())?;
        let reference = format!("ATM of {atm_bank} card {}", mask_pan(pan));
        Ok((tx, Vec::new(), CardLeg::Atm { atm_bank: atm_bank.to_string(), amount, reference }))
    }

    fn build_refund(
        &self,
        inner: &mut Inner,
        purchase_id: &str,
        amount: Amount,
    ) -> Result<(dtenge_core::tx::Transaction, Vec<String>, CardLeg)> {
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        let record = self.acquired(purchase_id)?;
        if record.mode != CardMode::Dt {
            return Err(Error::malformed("a convert-to-fiat purchase is refunded with card_refund"));
        }
        Self::check_left(inner, &record, amount)?;
        let payee_banks = self.payee_banks(inner, std::iter::once(&record.buyer_address))?;
        let issuer = self.anchors.read().issuer;
        let nonce = inner.cards.next_nonce();
        let tx =
            inner.node.prepare_payment(&record.merchant_client, &[(record.buyer_address, amount)], issuer, nonce)?;
        inner.cards.reserve_refund(purchase_id, amount).inspect_err(|_| inner.node.release(&tx))?;
        Ok((tx, payee_banks, CardLeg::Refund { purchase_id: purchase_id.to_string(), amount }))
    }

    fn build_payout(
        &self,
        inner: &mut Inner,
        purchase_id: &str,
        refund_no: u32,
    ) -> Result<(dtenge_core::tx::Transaction, Vec<String>, CardLeg)> {
        let owed = inner.cards.owed.get(&(purchase_id.to_string(), refund_no)).map(|o| o.amount);
        let amount = owed.ok_or_else(|| Error::new(ErrorCode::NotFound, "no such refund is owed"))?;
        let record = self.purchase(purchase_id)?.expect("a refund owed names a purchase this bank issued");
        let issuer = self.anchors.read().issuer;
        let tx = inner
            .node
            .prepare_payment(OWN_ACCOUNT, &[(record.buyer_address, amount)], issuer, inner.cards.next_nonce())
            .map_err(|e| Error::new(e.code, format!("the bank's own DT cannot pay this refund yet: {}", e.message)))?;
        Ok((tx, Vec::new(), CardLeg::Payout { purchase_id: purchase_id.to_string(), refund_no, amount }))
    }

    /// A committed payment's card leg: planned into the answer's commit.
    pub(crate) fn plan_card_leg(
        &self,
        inner: &mut Inner,
        leg: &CardLeg,
        tx_id: &TxId,
        legs: Legs<'_>,
        batch: &mut WriteBatch,
        now_ms: u64,
    ) {
        let Legs { delta, fiat_after, plan } = legs;
        match leg {
            CardLeg::Purchase(record) => {
                let mut record = (**record).clone();
                record.at_ms = now_ms;
                self.plan_purchase_leg(inner, &record, Legs { delta, fiat_after, plan });
                plan.records.insert(record.id.clone(), record);
            }
            CardLeg::Refund { purchase_id, amount } => {
                let record = self.planned_record(plan, purchase_id);
                record.refunded = record.refunded.checked_add(*amount).expect("a refund within what is left");
                assert!(record.refunded <= record.amount, "a refund reserved within what is left");
                record.refunds += 1;
                record.refund_tx_ids.push(*tx_id);
                if record.buyer_bank != self.id {
                    // The issuer's record follows (its buyer gets the DT on the usual delivery).
                    let refunded =
                        CardNotice::Refunded { purchase_id: purchase_id.clone(), amount: *amount, tx_id: *tx_id };
                    let issuer = RoleId::Bank(record.buyer_bank.clone());
                    plan.notices.push((issuer, refunded));
                }
            }
            CardLeg::Payout { purchase_id, refund_no, amount } => {
                batch.delete(PAYOUTS_TABLE, payout_key(purchase_id, *refund_no));
                let me = self.id.clone();
                let record = self.planned_record(plan, purchase_id);
                record.refund_tx_ids.push(*tx_id);
                if record.merchant_bank != me {
                    // The acquirer's record counted it when it decided; this is the issuer's.
                    record.refunded = record.refunded.checked_add(*amount).unwrap_or(record.amount).min(record.amount);
                    record.refunds = record.refunds.max(*refund_no);
                }
            }
            CardLeg::Atm { atm_bank, amount, .. } => {
                if *atm_bank != self.id {
                    let settle = CardNotice::Settle {
                        reference: format!("atm {tx_id}"),
                        to_bank: atm_bank.clone(),
                        amount: *amount,
                    };
                    plan.notices.push((RoleId::Central, settle));
                }
            }
            CardLeg::Voucher { program_id, event_id, .. } => {
                let amount = inner.cards.programs.amount_of(program_id);
                let event = crate::vouchers::EventRecord {
                    program_id: program_id.clone(),
                    event_id: event_id.clone(),
                    tx_id: *tx_id,
                    seq: plan.seq,
                    amount,
                    at_ms: now_ms,
                };
                batch.put(crate::vouchers::EVENTS_TABLE, event.key(), event.to_bytes());
            }
        }
    }

    /// A certified purchase: its merchant's bank money credited here (converting, at one
    /// bank), or the acquirer and central told on the delivery streams.
    fn plan_purchase_leg(&self, inner: &Inner, record: &PurchaseRecord, legs: Legs<'_>) {
        let Legs { delta, fiat_after, plan } = legs;
        let converting = record.mode == CardMode::ConvertToFiat;
        if record.merchant_bank == self.id {
            if converting {
                let credit = FiatMove {
                    client_id: record.merchant_client.clone(),
                    direction: Conversion::FromDt,
                    amount: record.amount,
                };
                delta.set_fiat(&record.merchant_client, fiat_after.apply(inner, &credit));
            }
            return;
        }
        let acquirer = RoleId::Bank(record.merchant_bank.clone());
        plan.notices.push((acquirer, CardNotice::Acquired(Box::new(record.clone()))));
        if converting {
            let settle = CardNotice::Settle {
                reference: record.id.clone(),
                to_bank: record.merchant_bank.clone(),
                amount: record.amount,
            };
            plan.notices.push((RoleId::Central, settle));
        }
    }

    fn planned_record<'p>(&self, plan: &'p mut CardPlan, purchase_id: &str) -> &'p mut PurchaseRecord {
        plan.records.entry(purchase_id.to_string()).or_insert_with(|| {
            self.purchase(purchase_id)
                .unwrap_or_else(|e| panic!("a purchase cannot be read: {e}"))
                .expect("a refund's purchase is kept here")
        })
    }

    /// Write the answer's purchases and plan its notices.
    pub(crate) fn finish_card_plan(
        &self,
        inner: &mut Inner,
        plan: CardPlan,
        batch: &mut WriteBatch,
    ) -> Vec<dtenge_delivery::Planned> {
        for (id, record) in &plan.records {
            batch.put(PURCHASES_TABLE, id.as_bytes().to_vec(), record.to_bytes());
        }
        plan.notices.into_iter().map(|(to, notice)| inner.outbound.plan(to, Payload::Card(notice), batch)).collect()
    }

    /// Another bank's card notice on its delivery stream: applied once, then acknowledged. A
    /// notice that is not this bank's or does not match what it keeps is applied as nothing
    /// (counted), so the stream goes on; the operators look.
    pub(crate) fn on_card_notice(&self, inner: &mut Inner, from: RoleId, seq: u64, notice: CardNotice, now_ms: u64) {
        let mut batch = WriteBatch::new();
        let mut delta = None;
        let mut owed = None;
        let mut later = None;
        let sender = match &from {
            RoleId::Bank(bank) => Some(bank.clone()),
            _ => None,
        };
        let applied = match (sender, notice) {
            (Some(sender), CardNotice::Acquired(record)) => {
                self.check_acquired(inner, &sender, &record).map(|acquiring| {
                    match acquiring {
                        Acquiring::Nothing => {}
                        Acquiring::Credit(fiat) => delta = Some(fiat),
                        Acquiring::Later(client, amount) => {
                            batch.put(
                                CREDITS_TABLE,
                                record.id.as_bytes().to_vec(),
                                (client.clone(), amount).to_bytes(),
                            );
                            later = Some((record.id.clone(), (client, amount)));
                        }
                    }
                    batch.put(PURCHASES_TABLE, record.id.as_bytes().to_vec(), record.to_bytes());
                })
            }
            (Some(sender), CardNotice::Refunded { purchase_id, amount, tx_id }) => {
                self.check_refunded(&sender, &purchase_id, amount).map(|mut record| {
                    record.refunded = record.refunded.checked_add(amount).expect("checked above");
                    record.refunds += 1;
                    record.refund_tx_ids.push(tx_id);
                    batch.put(PURCHASES_TABLE, purchase_id.as_bytes().to_vec(), record.to_bytes());
                })
            }
            (Some(sender), CardNotice::RefundPayout { purchase_id, refund_no, amount }) => {
                self.check_payout(&sender, &purchase_id, amount).map(|()| {
                    batch.put(PAYOUTS_TABLE, payout_key(&purchase_id, refund_no), amount.to_bytes());
                    owed = Some((purchase_id, refund_no, amount));
                })
            }
            _ => Err(Error::malformed("not a bank's notice")),
        };
        match applied.as_ref().map_err(|e| e.code) {
            // The directory cannot be asked now: not applied, not acknowledged (sent again).
            Err(ErrorCode::RequestInProgress) => return,
            // This bank's store cannot be read: it stops, as after a failed commit, and its
            // restart reads the stream's number again (the sender resends).
            Err(ErrorCode::StorageFailure) => {
                inner.failed = true;
                return;
            }
            _ => {}
        }
        if let Some(delta) = &delta {
            delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
        }
        inner.inbound.plan_applied(&from, seq, &mut batch);
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.inbound.applied(&from, seq);
        if let Some(delta) = delta {
            inner.node.apply(delta);
        }
        if let Some((id, credit)) = later {
            inner.cards.credits.insert(id, credit);
        }
        if applied.is_err() {
            inner.cards.rejected += 1;
        }
        if let Some((purchase_id, refund_no, amount)) = owed {
            inner.cards.owed.insert((purchase_id.clone(), refund_no), Owed { amount, submitted_at_ms: now_ms });
            self.submit_payout(inner, &purchase_id, refund_no, now_ms);
        }
        self.ack(&from, seq);
    }

    /// A purchase another bank issued at this bank's merchant: consistent, new; converting,
    /// the merchant's new bank-money balance, or the credit owed until its account opens (it
    /// is listed at the directory for this bank, and the claim is answered before the
    /// opening). `REQUEST_IN_PROGRESS` when the directory cannot be asked now.
    fn check_acquired(&self, inner: &Inner, sender: &str, record: &PurchaseRecord) -> Result<Acquiring> {
        let consistent = record.merchant_bank == self.id
            && record.buyer_bank == sender
            && record.refunded.is_zero()
            && record.id == purchase_id(&record.tx_id);
        if !consistent || self.purchase(&record.id)?.is_some() {
            return Err(Error::malformed("a purchase notice that does not match"));
        }
        let converting = record.mode == CardMode::ConvertToFiat;
        let Ok(merchant) = inner.node.account(&record.merchant_client) else {
            let listed = self.directory.find(Who::Client(&record.merchant_client), Some(&self.id))?;
            if listed.map(|l| l.address) != Some(record.merchant_address) {
                return Err(Error::malformed("a purchase at a merchant this bank does not have"));
            }
            return Ok(if converting {
                Acquiring::Later(record.merchant_client.clone(), record.amount)
            } else {
                Acquiring::Nothing
            });
        };
        if merchant.address != record.merchant_address {
            return Err(Error::malformed("a purchase notice that does not match"));
        }
        if !converting {
            return Ok(Acquiring::Nothing);
        }
        let fiat = inner.node.fiat_after(&record.merchant_client, record.amount, Amount::ZERO)?;
        inner.node.fiat_delta(&record.merchant_client, fiat).map(Acquiring::Credit)
    }

    /// A DT refund the acquirer made of a purchase this bank issued: the record to update.
    fn check_refunded(&self, sender: &str, purchase_id: &str, amount: Amount) -> Result<PurchaseRecord> {
        let record = self.purchase(purchase_id)?.ok_or_else(|| Error::malformed("no such purchase"))?;
        let consistent = record.buyer_bank == self.id
            && record.merchant_bank == sender
            && record.mode == CardMode::Dt
            && !amount.is_zero()
            && amount <= record.left()
            && record.refund_tx_ids.len() < dtenge_wire::cards::REFUNDS_MAX;
        if !consistent {
            return Err(Error::malformed("a refund notice that does not match"));
        }
        Ok(record)
    }

    /// A refund the acquirer decided for a convert-to-fiat purchase this bank issued.
    fn check_payout(&self, sender: &str, purchase_id: &str, amount: Amount) -> Result<()> {
        let record = self.purchase(purchase_id)?.ok_or_else(|| Error::malformed("no such purchase"))?;
        let consistent = record.buyer_bank == self.id
            && record.merchant_bank == sender
            && record.mode == CardMode::ConvertToFiat
            && !amount.is_zero()
            && amount <= record.amount;
        if !consistent {
            return Err(Error::malformed("a refund notice that does not match"));
        }
        Ok(())
    }
}

/// What an acquired purchase changes at the acquirer beside its record.
enum Acquiring {
    Nothing,
    /// The merchant's bank money, credited now.
    Credit(Delta),
    /// Credited when the merchant's account opens.
    Later(String, Amount),
}

/// A refund receipt, as its idempotency record keeps it.
fn receipt_bytes(receipt: &RefundReceipt) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(&receipt.purchase_id);
    w.put(&receipt.amount);
    w.put(&receipt.mode);
    w.into_bytes()
}

fn receipt_of(bytes: &[u8]) -> Result<RefundReceipt> {
    let mut r = Reader::new(bytes);
    let decoded = (|| -> std::result::Result<RefundReceipt, DecodeError> {
        let receipt =
            RefundReceipt { purchase_id: r.string("purchase id")?, amount: r.get()?, mode: r.get()?, committed: None };
        r.finish()?;
        Ok(receipt)
    })();
    decoded.map_err(|e| storage(&format!("a refund receipt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_legs_and_payout_keys_decode_to_what_was_written() {
        let legs = [
            CardLeg::Refund { purchase_id: "P-1".into(), amount: Amount::from_tiyn(5).unwrap() },
            CardLeg::Payout { purchase_id: "P-1".into(), refund_no: 3, amount: Amount::from_tiyn(5).unwrap() },
            CardLeg::Atm { atm_bank: "sapa".into(), amount: Amount::from_tiyn(5).unwrap(), reference: "ATM".into() },
            CardLeg::Voucher { program_id: "V1".into(), event_id: "tap-1".into(), reference: "event tap-1".into() },
        ];
        for leg in legs {
            assert_eq!(CardLeg::from_bytes(&leg.to_bytes()).unwrap(), leg);
        }
        assert_eq!(payout_of(&payout_key("P-0123", 7)).unwrap(), ("P-0123".to_string(), 7));
        assert!(payout_of(b"P").is_err());
        let receipt = RefundReceipt {
            purchase_id: "P-1".into(),
            amount: Amount::from_tiyn(9).unwrap(),
            mode: CardMode::ConvertToFiat,
            committed: None,
        };
        assert_eq!(receipt_of(&receipt_bytes(&receipt)).unwrap(), receipt);
        assert_ne!(payout_idem("P-1", 1).key, payout_idem("P-1", 2).key);
    }
}
