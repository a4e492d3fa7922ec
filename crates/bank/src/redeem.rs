//! Redemption: the bank converts DT of its own account (its liquidity) back into money on its
//! correspondent account at the NBK (SPEC sub-scenario 13).
//!
//! 1. [`BankService::redeem`] builds a `Redeem` of the amount from the bank's own account
//!    (coin selection, the change back to the account), signed with the account's key and
//!    attested with the node key, reserves its inputs, and writes it to the bank's own table
//!    ([`REDEEM_TABLE`], with its idempotency key in flight) **before** it sends central a
//!    [`RedeemRequest`]; `tick` sends it again until central answers.
//! 2. Central validates it, attests it with the NBK key, notarizes it, posts it in the ABS and
//!    delivers the certified transaction on its numbered stream to this bank. The delivery is
//!    applied like any other (inputs spent, change received, the delivery's number) and, in
//!    the same commit, the redemption leaves the table and its key is answered.
//! 3. Central's refusal ([`RedeemRefused`], final at central) drops the redemption from the
//!    table and releases the reservation.
//!
//! A crash anywhere leaves the redemption in the table (its inputs reserved again at the
//! restart, the request sent again) or applied with its delivery: central answers each
//! transaction id once, so it is never redeemed twice.

use crate::state::{plan_idem, plan_idem_in_flight, IdemState, Inner, BANK_META_TABLE, IDEM_TABLE};
use crate::{BankService, Committed, IdemKey};
use dtenge_core::certificate::CommitCertificate;
use dtenge_core::crypto::Hash32;
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::NodeState;
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{
    Decode, DecodeError, Encode, Envelope, Message, Reader, RedeemRefused, RedeemRequest, RoleId, Writer,
};
use std::collections::{BTreeMap, HashMap};

/// Redemptions sent to central and not answered: transaction id -> [`RedeemEntry`].
pub const REDEEM_TABLE: Table = Table("bank_redeem");
/// `bank_meta` key: the nonce of the next redemption (u64 LE).
const NEXT_NONCE_KEY: &[u8] = b"next_redeem_nonce";

/// Most redemptions waiting for central at once.
pub const REDEMPTIONS_IN_FLIGHT_MAX: usize = 64;

/// A redemption waiting for central, as the table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RedeemEntry {
    tx: Transaction,
    idem: Option<IdemKey>,
}

impl Encode for RedeemEntry {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.tx);
        w.put(&self.idem);
    }
}

impl Decode for RedeemEntry {
    const ENCODED_BYTES_MIN: usize = Transaction::ENCODED_BYTES_MIN + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(RedeemEntry { tx: r.get()?, idem: r.get()? })
    }
}

struct Pending {
    entry: RedeemEntry,
    sent_at_ms: u64,
}

/// The redemptions in memory, behind the bank's one lock.
#[derive(Default)]
pub(crate) struct Redemptions {
    pending: BTreeMap<TxId, Pending>,
    next_nonce: u64,
}

/// A delivered redemption's change to the table, planned into the delivery's commit.
pub(crate) struct Answered {
    tx_id: TxId,
    seq: u64,
}

fn row_key(tx_id: &TxId) -> Vec<u8> {
    tx_id.0 .0.to_vec()
}

fn storage(what: &str) -> impl Fn(DecodeError) -> Error + '_ {
    move |e| Error::new(ErrorCode::StorageFailure, format!("{what}: {e}"))
}

/// Read the redemptions waiting for central: their inputs reserved again, their keys in flight.
pub(crate) fn load(
    store: &Store,
    node: &mut NodeState,
    idem_in_flight: &mut HashMap<String, (Hash32, TxId)>,
) -> Result<Redemptions> {
    let next_nonce = match store.get(BANK_META_TABLE, NEXT_NONCE_KEY)? {
        Some(bytes) => crate::state::u64_of(&bytes)?,
        None => 1,
    };
    let mut redemptions = Redemptions { pending: BTreeMap::new(), next_nonce };
    for (key, value) in store.scan(REDEEM_TABLE)? {
        let entry = RedeemEntry::from_bytes(&value).map_err(storage("a redemption"))?;
        let ids = TxIds::of(&entry.tx)?;
        assert_eq!(key, row_key(&ids.tx_id), "a redemption is stored under its transaction's id");
        assert!(entry.tx.body.nonce < next_nonce, "a redemption's nonce is below the next one");
        node.reserve_inputs(&ids.tx_id, &ids.inputs)?;
        if let Some(idem) = &entry.idem {
            idem_in_flight.insert(idem.key.clone(), (idem.fingerprint, ids.tx_id));
        }
        redemptions.pending.insert(ids.tx_id, Pending { entry, sent_at_ms: 0 });
    }
    assert!(redemptions.pending.len() <= REDEMPTIONS_IN_FLIGHT_MAX, "the redemptions in flight are bounded");
    Ok(redemptions)
}

impl BankService {
    /// Redeem `amount` of the bank's own DT at the NBK: its correspondent account is credited.
    /// The answer (the transaction and the certificate that committed it) comes once central
    /// has posted it and this bank has applied it; a refusal changes nothing.
    pub fn redeem(&self, amount: Amount, idem: Option<IdemKey>, now_ms: u64) -> crate::Answer {
        let (sender, receiver) = dtenge_sync::oneshot::channel();
        let answer = crate::Reply::Own(sender);
        let mut inner = self.inner.lock();
        match self.admit_redemption(&mut inner, amount, idem, &answer, now_ms) {
            Ok(Some(tx_id)) => {
                inner.waiters.entry(tx_id).or_default().push(answer);
                self.send_redemption(&inner, &tx_id);
            }
            Ok(None) => {}
            Err(e) => answer.send(Err(e)),
        }
        receiver
    }

    /// Redemptions sent to central and not answered yet: zero once traffic stopped and every
    /// message arrived.
    pub fn redemptions_pending(&self) -> usize {
        self.inner.lock().redeems.pending.len()
    }

    /// The transactions of the redemptions waiting for central, oldest id first.
    pub fn redemptions_pending_ids(&self) -> Vec<TxId> {
        self.inner.lock().redeems.pending.keys().copied().collect()
    }

    /// Build, reserve and write a redemption: `Ok(Some(tx id))` to send, `Ok(None)` when its
    /// idempotency key answered it (or attached `answer` to the redemption in flight).
    fn admit_redemption(
        &self,
        inner: &mut Inner,
        amount: Amount,
        idem: Option<IdemKey>,
        answer: &crate::Reply,
        now_ms: u64,
    ) -> Result<Option<TxId>> {
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if idem.key.is_empty() || idem.key.len() > 128 {
                return Err(Error::malformed("an idempotency key has 1 to 128 characters"));
            }
            crate::cards::check_key(Some(idem))?;
            if self.answered_by_key(inner, idem, answer)? {
                return Ok(None);
            }
        }
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        if inner.redeems.pending.len() >= REDEMPTIONS_IN_FLIGHT_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many redemptions in flight; retry"));
        }
        let nonce = inner.redeems.next_nonce;
        let issuer = self.anchors.read().issuer;
        // A nonce of its own makes each redemption's id new, even one that spends the same
        // tokens as a refused one: central's decisions are final per transaction id.
        let tx = inner.node.prepare_redemption(amount, issuer, nonce)?;
        let ids = TxIds::of(&tx).inspect_err(|_| inner.node.release(&tx))?;
        let entry = RedeemEntry { tx, idem };
        let mut batch = WriteBatch::new();
        batch.put(REDEEM_TABLE, row_key(&ids.tx_id), entry.to_bytes());
        batch.put(BANK_META_TABLE, NEXT_NONCE_KEY.to_vec(), (nonce + 1).to_le_bytes().to_vec());
        plan_idem_in_flight(&mut batch, entry.idem.as_ref(), &ids.tx_id, now_ms);
        if let Err(e) = self.commit(inner, batch) {
            inner.node.release(&entry.tx);
            return Err(e);
        }
        inner.redeems.next_nonce = nonce + 1;
        inner.idem_started(entry.idem.as_ref(), &ids.tx_id);
        inner.redeems.pending.insert(ids.tx_id, Pending { entry, sent_at_ms: now_ms });
        Ok(Some(ids.tx_id))
    }

    fn send_redemption(&self, inner: &Inner, tx_id: &TxId) {
        let tx = inner.redeems.pending[tx_id].entry.tx.clone();
        // A send that fails is a loss like any other: `tick` sends it again.
        let _ = self.transport.send(Envelope {
            from: self.role(),
            to: RoleId::Central,
            message: Message::RedeemRequest(RedeemRequest { tx }),
        });
    }

    /// Redemptions central has not answered in time, sent again.
    pub(crate) fn resend_redemptions(&self, inner: &mut Inner, now_ms: u64) {
        let due: Vec<TxId> = inner
            .redeems
            .pending
            .iter()
            .filter(|(_, p)| p.sent_at_ms.saturating_add(crate::RESEND_AFTER_MS) <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for tx_id in due {
            self.send_redemption(inner, &tx_id);
            inner.redeems.pending.get_mut(&tx_id).expect("listed above").sent_at_ms = now_ms;
        }
    }

    /// Central refused a redemption (for good): drop it, release its inputs, answer.
    pub(crate) fn on_redeem_refused(&self, inner: &mut Inner, refused: RedeemRefused) {
        let Some(pending) = inner.redeems.pending.get(&refused.tx_id) else { return };
        let mut batch = WriteBatch::new();
        batch.delete(REDEEM_TABLE, row_key(&refused.tx_id));
        if let Some(idem) = &pending.entry.idem {
            batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
        }
        if self.commit(inner, batch).is_err() {
            return;
        }
        let pending = inner.redeems.pending.remove(&refused.tx_id).expect("found above");
        inner.node.release(&pending.entry.tx);
        self.answer_redemption(inner, &refused.tx_id, pending, Err(refused.refused));
    }

    /// A certified delivery carries `tx_id`: if it is one of this bank's redemptions, plan its
    /// end into the delivery's commit (the row gone, the key answered).
    pub(crate) fn plan_redeemed(
        &self,
        inner: &Inner,
        tx_id: &TxId,
        certificate: &CommitCertificate,
        batch: &mut WriteBatch,
        now_ms: u64,
    ) -> Option<Answered> {
        let pending = inner.redeems.pending.get(tx_id)?;
        batch.delete(REDEEM_TABLE, row_key(tx_id));
        if let Some(idem) = &pending.entry.idem {
            let committed = Committed { tx_id: *tx_id, seq: certificate.seq };
            plan_idem(batch, idem, IdemState::Committed(committed), now_ms);
        }
        Some(Answered { tx_id: *tx_id, seq: certificate.seq })
    }

    /// The delivery's commit is durable: the redemption is done, its caller answered.
    /// The redemption ends in memory; its answer is sent once its commit is durable.
    pub(crate) fn apply_redeemed(&self, inner: &mut Inner, answered: Answered) -> crate::TxAnswer {
        let pending = inner.redeems.pending.remove(&answered.tx_id).expect("planned from a pending redemption");
        let committed = Committed { tx_id: answered.tx_id, seq: answered.seq };
        let idem_key = pending.entry.idem.as_ref().map(|idem| idem.key.clone());
        crate::TxAnswer { tx_id: answered.tx_id, answer: Ok(committed), idem_key, from_outbox: false }
    }

    fn answer_redemption(&self, inner: &mut Inner, tx_id: &TxId, pending: Pending, answer: Result<Committed>) {
        inner.answer(tx_id, pending.entry.idem.as_ref(), answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::tx::{Command, TxBody};

    #[test]
    fn a_redemption_row_decodes_to_what_was_written_and_garbage_is_refused() {
        let tx = Transaction::new(TxBody { command: Command::Redeem, inputs: vec![], outputs: vec![], nonce: 4 });
        for idem in [None, Some(IdemKey { key: "redeem-1".into(), fingerprint: Hash32([3; 32]) })] {
            let entry = RedeemEntry { tx: tx.clone(), idem };
            assert_eq!(RedeemEntry::from_bytes(&entry.to_bytes()).unwrap(), entry);
        }
        let bytes = RedeemEntry { tx, idem: None }.to_bytes();
        assert!(RedeemEntry::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(RedeemEntry::from_bytes(&[bytes.clone(), vec![0]].concat()).is_err());
    }
}
