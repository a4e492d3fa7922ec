//! Cards across roles (SPEC sub-scenarios 9 and 10, refunds, ATM): the messages and the
//! delivered notices. Kinds 40–59 are this module's (40 and 41 used); the delivered notices
//! ride in [`crate::Payload::Card`] (payload tag 40) on the numbered, acknowledged streams of
//! `dtenge-delivery`, so each is applied once, in its sender's order.
//!
//! - [`CardClaim`] / [`CardClaimReply`] (kinds 40, 41): a bank claims a card number for one
//!   of its clients at the directory, which lists each card once across the network.
//! - [`CardNotice::Acquired`]: the buyer's bank (the issuer) tells the merchant's bank (the
//!   acquirer) of a certified purchase; in convert-to-fiat mode the acquirer credits the
//!   merchant's bank money in the commit that applies it.
//! - [`CardNotice::RefundPayout`]: the acquirer decided a convert-to-fiat refund (the
//!   merchant's bank money is debited): the issuer owes the buyer that much DT from its own
//!   account, and pays it once.
//! - [`CardNotice::Settle`]: a bank asks central to move bank money from its own correspondent
//!   account to another bank's; the debit is always the sender's.
//! - [`CardNotice::Refunded`]: the acquirer made a DT-mode refund; the issuer's record follows.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use dtenge_core::crypto::Address;
use dtenge_core::token::TxId;
use dtenge_core::Amount;

/// A card number has 16 digits.
pub const PAN_BYTES: usize = 16;
/// Most bytes of an id carried by these messages (purchase id, client id, bank id, reference).
pub const CARD_FIELD_BYTES_MAX: usize = 256;
/// Most refunds of one purchase (each a line of its record).
pub const REFUNDS_MAX: usize = 1_024;

/// A bank asks the directory to list card `pan` as its client's. The same claim again is
/// answered as the first time; the card listed for another client or bank is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardClaim {
    pub pan: String,
    pub client_id: String,
}

/// The directory's answer to a [`CardClaim`], by the card number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardClaimReply {
    pub pan: String,
    /// `None`: listed (now or before).
    pub refused: Option<dtenge_core::Error>,
}

/// How the merchant is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CardMode {
    /// The merchant receives DT (sub-scenario 9).
    Dt,
    /// The buyer's DT goes to its bank's own account; the merchant receives bank money (10).
    ConvertToFiat,
}

/// A card purchase, as the issuer and the acquirer each keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseRecord {
    /// `P-` and the first 16 hex digits of the purchase's transaction id.
    pub id: String,
    /// The card number, masked.
    pub card: String,
    pub buyer_bank: String,
    pub buyer_client: String,
    pub buyer_address: Address,
    pub merchant_bank: String,
    pub merchant_client: String,
    pub merchant_address: Address,
    pub amount: Amount,
    /// What the acquirer has refunded (its record is the authority); the issuer's record
    /// follows the convert-to-fiat refunds it paid out.
    pub refunded: Amount,
    /// Refunds decided so far: the next refund's number is this plus one.
    pub refunds: u32,
    pub mode: CardMode,
    pub tx_id: TxId,
    /// The DT transactions of the refunds this bank made.
    pub refund_tx_ids: Vec<TxId>,
    pub at_ms: u64,
}

impl PurchaseRecord {
    /// What may still be refunded.
    pub fn left(&self) -> Amount {
        self.amount.checked_sub(self.refunded).expect("a purchase never has more refunded than paid")
    }
}

/// What a card flow delivers to another role, once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardNotice {
    /// Issuer → acquirer: a certified purchase at the acquirer's merchant.
    Acquired(Box<PurchaseRecord>),
    /// Acquirer → issuer: pay refund `refund_no` of `purchase_id` (`amount`, convert-to-fiat
    /// mode) from the issuer's own DT to the buyer.
    RefundPayout { purchase_id: String, refund_no: u32, amount: Amount },
    /// A bank → central: move `amount` of bank money from the sender's correspondent account
    /// to `to_bank`'s, once; `reference` names the purchase, refund or withdrawal.
    Settle { reference: String, to_bank: String, amount: Amount },
    /// Acquirer → issuer: a DT-mode refund of `purchase_id` committed as `tx_id` (the buyer's
    /// DT arrives on the usual certified delivery); the issuer's record follows.
    Refunded { purchase_id: String, amount: Amount, tx_id: TxId },
}

fn bounded(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    let text = r.string(what)?;
    if text.len() > CARD_FIELD_BYTES_MAX {
        return Err(DecodeError::Invalid { what, reason: format!("{} bytes", text.len()) });
    }
    Ok(text)
}

/// A card number: exactly 16 ASCII digits (the Luhn check is the bank's and the directory's).
pub(crate) fn pan(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let pan = r.string("card number")?;
    if pan.len() != PAN_BYTES || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::Invalid { what: "card number", reason: "not 16 digits".into() });
    }
    Ok(pan)
}

impl Encode for CardClaim {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.pan);
        w.str(&self.client_id);
    }
}

impl Decode for CardClaim {
    const ENCODED_BYTES_MIN: usize = 4 + PAN_BYTES + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CardClaim { pan: pan(r)?, client_id: bounded(r, "client id")? })
    }
}

impl Encode for CardClaimReply {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.pan);
        w.put(&self.refused);
    }
}

impl Decode for CardClaimReply {
    const ENCODED_BYTES_MIN: usize = 4 + PAN_BYTES + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CardClaimReply { pan: pan(r)?, refused: r.get()? })
    }
}

impl Encode for CardMode {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            CardMode::Dt => 1,
            CardMode::ConvertToFiat => 2,
        });
    }
}

impl Decode for CardMode {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("card mode")? {
            1 => Ok(CardMode::Dt),
            2 => Ok(CardMode::ConvertToFiat),
            tag => Err(DecodeError::UnknownTag { what: "card mode", tag: u64::from(tag) }),
        }
    }
}

impl Encode for PurchaseRecord {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.str(&self.card);
        w.str(&self.buyer_bank);
        w.str(&self.buyer_client);
        w.put(&self.buyer_address);
        w.str(&self.merchant_bank);
        w.str(&self.merchant_client);
        w.put(&self.merchant_address);
        w.put(&self.amount);
        w.put(&self.refunded);
        w.u32(self.refunds);
        w.put(&self.mode);
        w.put(&self.tx_id);
        w.seq(&self.refund_tx_ids);
        w.u64(self.at_ms);
    }
}

impl Decode for PurchaseRecord {
    const ENCODED_BYTES_MIN: usize = 7 * 4 + 2 * 32 + 8 + 8 + 4 + 1 + 32 + 4 + 8;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let record = PurchaseRecord {
            id: bounded(r, "purchase id")?,
            card: bounded(r, "card")?,
            buyer_bank: bounded(r, "buyer bank")?,
            buyer_client: bounded(r, "buyer client")?,
            buyer_address: r.get()?,
            merchant_bank: bounded(r, "merchant bank")?,
            merchant_client: bounded(r, "merchant client")?,
            merchant_address: r.get()?,
            amount: r.get()?,
            refunded: r.get()?,
            refunds: r.u32("refunds")?,
            mode: r.get()?,
            tx_id: r.get()?,
            refund_tx_ids: r.seq("refund transactions", REFUNDS_MAX)?,
            at_ms: r.u64("purchased at")?,
        };
        if record.refunded > record.amount {
            return Err(DecodeError::Invalid { what: "purchase", reason: "more refunded than paid".into() });
        }
        Ok(record)
    }
}

impl Encode for CardNotice {
    fn encode(&self, w: &mut Writer) {
        match self {
            CardNotice::Acquired(record) => {
                w.u8(1);
                w.put(&**record);
            }
            CardNotice::RefundPayout { purchase_id, refund_no, amount } => {
                w.u8(2);
                w.str(purchase_id);
                w.u32(*refund_no);
                w.put(amount);
            }
            CardNotice::Settle { reference, to_bank, amount } => {
                w.u8(3);
                w.str(reference);
                w.str(to_bank);
                w.put(amount);
            }
            CardNotice::Refunded { purchase_id, amount, tx_id } => {
                w.u8(4);
                w.str(purchase_id);
                w.put(amount);
                w.put(tx_id);
            }
        }
    }
}

impl Decode for CardNotice {
    const ENCODED_BYTES_MIN: usize = 1 + 4 + 4 + 8;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("card notice")? {
            1 => Ok(CardNotice::Acquired(Box::new(r.get()?))),
            2 => Ok(CardNotice::RefundPayout {
                purchase_id: bounded(r, "purchase id")?,
                refund_no: r.u32("refund number")?,
                amount: r.get()?,
            }),
            3 => Ok(CardNotice::Settle {
                reference: bounded(r, "reference")?,
                to_bank: bounded(r, "bank")?,
                amount: r.get()?,
            }),
            4 => {
                Ok(CardNotice::Refunded { purchase_id: bounded(r, "purchase id")?, amount: r.get()?, tx_id: r.get()? })
            }
            tag => Err(DecodeError::UnknownTag { what: "card notice", tag: u64::from(tag) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Deliver, Envelope, Message, Payload, RoleId};
    use dtenge_core::crypto::Hash32;

    fn record() -> PurchaseRecord {
        PurchaseRecord {
            id: "P-0123456789abcdef".into(),
            card: "4400 **** **** 0001".into(),
            buyer_bank: "steppe".into(),
            buyer_client: "900101300123".into(),
            buyer_address: Address(Hash32([1; 32])),
            merchant_bank: "sapa".into(),
            merchant_client: "100140000001".into(),
            merchant_address: Address(Hash32([2; 32])),
            amount: Amount::from_tiyn(725_000).unwrap(),
            refunded: Amount::from_tiyn(25_000).unwrap(),
            refunds: 1,
            mode: CardMode::ConvertToFiat,
            tx_id: TxId(Hash32([3; 32])),
            refund_tx_ids: vec![TxId(Hash32([4; 32]))],
            at_ms: 7,
        }
    }

    #[test]
    fn every_card_message_and_notice_decodes_to_itself_and_prefixes_are_refused() {
        let amount = Amount::from_tiyn(5).unwrap();
        let notices = [
            CardNotice::Acquired(Box::new(record())),
            CardNotice::RefundPayout { purchase_id: "P-1".into(), refund_no: 2, amount },
            CardNotice::Settle { reference: "P-1".into(), to_bank: "sapa".into(), amount },
            CardNotice::Refunded { purchase_id: "P-1".into(), amount, tx_id: TxId(Hash32([5; 32])) },
        ];
        let mut messages = vec![
            Message::CardClaim(CardClaim { pan: "4400000000000008".into(), client_id: "9001".into() }),
            Message::CardClaimReply(CardClaimReply {
                pan: "4400000000000008".into(),
                refused: Some(dtenge_core::Error::new(dtenge_core::ErrorCode::DuplicateAccount, "taken")),
            }),
        ];
        messages.extend(notices.into_iter().map(|n| Message::Deliver(Deliver { seq: 3, payload: Payload::Card(n) })));
        for message in messages {
            let envelope = Envelope { from: RoleId::Bank("steppe".into()), to: RoleId::Central, message };
            let bytes = envelope.to_bytes();
            assert_eq!(Envelope::from_bytes(&bytes).unwrap(), envelope);
            for cut in 0..bytes.len() {
                assert!(Envelope::from_bytes(&bytes[..cut]).is_err(), "a prefix of {cut} bytes decodes");
            }
        }
    }

    #[test]
    fn the_card_kinds_and_the_payload_tag_are_pinned_and_a_bad_card_number_is_refused() {
        let claim = Message::CardClaim(CardClaim { pan: "4400000000000008".into(), client_id: "c".into() });
        assert_eq!(&claim.to_bytes()[..2], &[40, 0]);
        let reply = Message::CardClaimReply(CardClaimReply { pan: "4400000000000008".into(), refused: None });
        assert_eq!(&reply.to_bytes()[..2], &[41, 0]);
        let settle = Message::Deliver(Deliver {
            seq: 1,
            payload: Payload::Card(CardNotice::Settle {
                reference: "r".into(),
                to_bank: "b".into(),
                amount: Amount::from_tiyn(1).unwrap(),
            }),
        });
        let bytes = settle.to_bytes();
        assert_eq!(&bytes[..2], &[3, 0], "a delivery");
        assert_eq!(bytes[10], 40, "the card payload's tag");
        assert_eq!(bytes[11], 3, "the settle notice's tag");
        let bad = Message::CardClaim(CardClaim { pan: "44000000000000x8".into(), client_id: "c".into() });
        assert!(Message::from_bytes(&bad.to_bytes()).is_err());
        let mut over = record();
        over.refunded = Amount::from_tiyn(725_001).unwrap();
        assert!(PurchaseRecord::from_bytes(&over.to_bytes()).is_err(), "more refunded than paid");
    }
}
