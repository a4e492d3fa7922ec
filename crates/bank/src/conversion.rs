//! Conversions between a client's bank money and DT, and bank-money deposits.
//!
//! Bank money is the client's balance in the bank's core banking system (`fiat` in the node's
//! account record). A conversion is a custodial payment between the client and the bank's own
//! account that carries its bank-money move ([`FiatMove`]) in the outbox: the move is applied
//! in the same commit as the certified payment, and not at all when the notary refuses it.
//! Bank money a conversion to DT will debit is reserved from admission until its answer, so
//! two conversions in flight never spend the same tenge; a restart reserves it again from the
//! outbox. What a conversion from DT will credit is counted the same way, and a conversion
//! from DT or a deposit that would take the balance past [`Amount::MAX`] with them is refused
//! `LIMIT_EXCEEDED` (applying the certified payment must not fail: it would stop the bank at
//! every restart).

use crate::state::Inner;
use crate::{BankService, Conversion};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::{Purpose, OWN_ACCOUNT};
use dtenge_store::WriteBatch;
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Writer};
use std::collections::HashMap;

/// The bank-money side of a conversion, applied with its certified payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FiatMove {
    pub(crate) client_id: String,
    pub(crate) direction: Conversion,
    pub(crate) amount: Amount,
}

impl FiatMove {
    /// What the client's history calls the payment.
    pub(crate) fn purpose(&self) -> Purpose {
        match self.direction {
            Conversion::ToDt => Purpose::ConversionToDt,
            Conversion::FromDt => Purpose::ConversionFromDt,
        }
    }

    /// The bank money this move debits (a conversion to DT), reserved while it is in flight.
    pub(crate) fn debit(&self) -> Amount {
        match self.direction {
            Conversion::ToDt => self.amount,
            Conversion::FromDt => Amount::ZERO,
        }
    }

    fn credit(&self) -> Amount {
        match self.direction {
            Conversion::ToDt => Amount::ZERO,
            Conversion::FromDt => self.amount,
        }
    }
}

impl Encode for FiatMove {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.client_id);
        w.u8(match self.direction {
            Conversion::ToDt => 1,
            Conversion::FromDt => 2,
        });
        w.put(&self.amount);
    }
}

impl Decode for FiatMove {
    const ENCODED_BYTES_MIN: usize = 4 + 1 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        let client_id = r.string("client id")?;
        let direction = match r.u8("conversion direction")? {
            1 => Conversion::ToDt,
            2 => Conversion::FromDt,
            tag => return Err(DecodeError::UnknownTag { what: "conversion direction", tag: u64::from(tag) }),
        };
        Ok(FiatMove { client_id, direction, amount: r.get()? })
    }
}

/// What the conversions in flight will move of each client's bank money: the debits of
/// conversions to DT (reserved: the balance must hold them) and the credits of conversions
/// from DT (expected: the balance must have room for them below [`Amount::MAX`], or applying
/// the certified payment could not set it).
#[derive(Default)]
pub(crate) struct FiatReserved {
    debits: HashMap<String, Amount>,
    credits: HashMap<String, Amount>,
}

impl FiatReserved {
    /// The bank money conversions to DT in flight will debit.
    pub(crate) fn of(&self, client_id: &str) -> Amount {
        self.debits.get(client_id).copied().unwrap_or(Amount::ZERO)
    }

    /// The bank money conversions from DT in flight will credit.
    pub(crate) fn credits_of(&self, client_id: &str) -> Amount {
        self.credits.get(client_id).copied().unwrap_or(Amount::ZERO)
    }

    /// Reserve what `fiat_move` will debit and credit.
    pub(crate) fn reserve(&mut self, fiat_move: &FiatMove) -> Result<()> {
        let debits = self.of(&fiat_move.client_id).checked_add(fiat_move.debit())?;
        let credits = self.credits_of(&fiat_move.client_id).checked_add(fiat_move.credit())?;
        set(&mut self.debits, &fiat_move.client_id, debits);
        set(&mut self.credits, &fiat_move.client_id, credits);
        Ok(())
    }

    /// Release what [`FiatReserved::reserve`] took: more than that is a programmer error.
    pub(crate) fn release(&mut self, fiat_move: &FiatMove) {
        let client_id = &fiat_move.client_id;
        let debits = self.of(client_id).checked_sub(fiat_move.debit());
        let credits = self.credits_of(client_id).checked_sub(fiat_move.credit());
        let (Ok(debits), Ok(credits)) = (debits, credits) else {
            panic!("released more bank money than reserved");
        };
        set(&mut self.debits, client_id, debits);
        set(&mut self.credits, client_id, credits);
    }
}

fn set(amounts: &mut HashMap<String, Amount>, client_id: &str, amount: Amount) {
    if amount.is_zero() {
        amounts.remove(client_id);
    } else {
        amounts.insert(client_id.to_string(), amount);
    }
}

/// The bank-money balances the committed moves of one notary answer leave, per client, in
/// order: two conversions of one client in one batch both count.
#[derive(Default)]
pub(crate) struct FiatAfter(HashMap<String, Amount>);

impl FiatAfter {
    /// Apply `fiat_move` to the client's balance (as the node holds it, or as an earlier move
    /// of this answer left it) and return the new balance.
    pub(crate) fn apply(&mut self, inner: &Inner, fiat_move: &FiatMove) -> Amount {
        let before = match self.0.get(&fiat_move.client_id) {
            Some(amount) => *amount,
            // The balance itself (`balance` would walk the account's tokens).
            None => inner
                .node
                .fiat_after(&fiat_move.client_id, Amount::ZERO, Amount::ZERO)
                .unwrap_or_else(|e| panic!("a converting client's account exists: {e}")),
        };
        // The debit was reserved at admission out of this balance, so it is there.
        let after = before
            .checked_add(fiat_move.credit())
            .and_then(|a| a.checked_sub(fiat_move.debit()))
            .unwrap_or_else(|e| panic!("a reserved conversion's bank money is there: {e}"));
        self.0.insert(fiat_move.client_id.clone(), after);
        after
    }
}

impl BankService {
    /// Bank money arrives on a client's account from outside the platform (cash at the desk,
    /// a transfer from another bank): one durable commit.
    pub fn deposit_fiat(&self, client_id: &str, amount: Amount) -> Result<Amount> {
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        // Room for it beside what conversions from DT in flight will credit.
        let room = inner.credits_in_flight(client_id)?.checked_add(amount)?;
        inner.node.fiat_after(client_id, room, Amount::ZERO)?;
        let after = inner.node.fiat_after(client_id, amount, Amount::ZERO)?;
        let delta = inner.node.fiat_delta(client_id, after)?;
        let mut batch = WriteBatch::new();
        delta.writes(&inner.node, &mut batch).unwrap_or_else(|e| panic!("a planned delta cannot be encoded: {e}"));
        self.commit(&mut inner, batch)?;
        inner.node.apply(delta);
        Ok(after)
    }

    /// A conversion's payment, built and signed by the bank, its bank money reserved.
    pub(crate) fn prepare_conversion(
        &self,
        inner: &mut Inner,
        client_id: &str,
        direction: Conversion,
        amount: Amount,
    ) -> Result<(dtenge_core::tx::Transaction, FiatMove)> {
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        if client_id == OWN_ACCOUNT {
            return Err(Error::new(ErrorCode::Forbidden, "a bank converts with the NBK, not with itself"));
        }
        let fiat_move = FiatMove { client_id: client_id.to_string(), direction, amount };
        let client = inner.node.account(client_id)?.address;
        let bank = inner.node.account(OWN_ACCOUNT)?.address;
        let issuer = self.anchors.read().issuer;
        // A nonce per attempt: see `admit_payment`.
        let nonce = inner.cards.next_nonce();
        let tx = match direction {
            Conversion::ToDt => {
                // Enough bank money beside what conversions in flight reserved.
                let reserved = inner.fiat_reserved.of(client_id).checked_add(amount)?;
                inner.node.fiat_after(client_id, Amount::ZERO, reserved)?;
                inner.node.prepare_payment(OWN_ACCOUNT, &[(client, amount)], issuer, nonce).map_err(|e| {
                    Error::new(e.code, format!("the bank's own DT cannot pay this conversion: {}", e.message))
                })?
            }
            Conversion::FromDt => {
                // Room for it beside what conversions from DT in flight will credit.
                let credits = inner.credits_in_flight(client_id)?.checked_add(amount)?;
                inner.node.fiat_after(client_id, credits, Amount::ZERO)?;
                inner.node.prepare_payment(client_id, &[(bank, amount)], issuer, nonce)?
            }
        };
        if let Err(e) = inner.fiat_reserved.reserve(&fiat_move) {
            inner.node.release(&tx);
            return Err(e);
        }
        Ok((tx, fiat_move))
    }
}
