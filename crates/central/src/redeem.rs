//! Redemption (NBK → bank conversion, SPEC sub-scenario 13): a bank's DT goes back to the NBK
//! and its correspondent account in the ABS is credited.
//!
//! The bank spends its own tokens, so the transaction starts there: it builds a `Redeem` from
//! its own account (its change, if any, back to that account), signs and attests it, reserves
//! its inputs, and sends [`RedeemRequest`] until it has an answer. Central then:
//! 1. checks that the sender is a bank of this network and the transaction is one it may
//!    redeem: a `Redeem` of that bank's own account only, attested by that bank's node key
//!    alone, valid in every stateless rule (structure, conservation: inputs > outputs,
//!    standard DT only) with every signature verified, the NBK's attestation added;
//! 2. refuses for good (the refusal written before it is sent, see below) a blocked bank, a
//!    request on a day that is not operational (`NonWorkingDay`), and a redemption the ABS
//!    could not post or central cannot take now;
//! 3. writes it to its outbox (durably) and notarizes it as the notary's `Central` sender;
//! 4. on the certificate, **one commit** holds the ABS posting `dt_liability → corr:<bank>`,
//!    the registry entry (a [`EntryKind::Redemption`]), the transaction's decision
//!    (`redeemed`, with the entry's number) and the numbered delivery of the certified
//!    transaction to the bank, which applies it (inputs spent, change received) and answers
//!    its caller.
//!
//! **One decision per transaction id** ([`REDEMPTIONS_TABLE`]): a request for a transaction
//! redeemed already changes nothing (its delivery is resent until the bank acknowledges it), and
//! one refused already is answered with the same refusal. Refusals that depend on central's state
//! (a block, the outbox full, the notary's refusal) are written before they are sent, so a copy
//! of the request that the network delivers late, after the block is lifted, cannot redeem what
//! the bank released when it was refused. Refusals that depend only on the request's bytes (not
//! a valid redemption of that bank) are not written: the same bytes are refused again.
//!
//! **The calendar's refusal is final too**, although the day changes: the bank treats every
//! [`RedeemRefused`](dtenge_wire::RedeemRefused) as the end of that transaction (it drops it,
//! releases its inputs and answers its caller "refused"), so a copy of the request delivered
//! late, after midnight into a working day, must not redeem it. The bank asks again on the
//! next working day with a new transaction (a new id), which central takes like any other.
//!
//! **Crashes**: a crash before the outbox commit loses nothing (the bank sends again); after it,
//! the restart reads the outbox and notarizes again, and the notary answers by the transaction's
//! id (committed before: certified again), so the posting is made once, with the first
//! certificate central applies.

use crate::{corrupt, BankKeys, CentralService, EntryKind, Inner, RegistryEntry, META_TABLE, NEXT_BATCH_KEY};
use dtenge_abs::{correspondent, PostingKind, DT_LIABILITY};
use dtenge_core::certificate::{CommitCertificate, CommitProof, CompactTx};
use dtenge_core::crypto::{Address, PublicKey};
use dtenge_core::token::TxId;
use dtenge_core::tx::{Command, Transaction};
use dtenge_core::validate::{Authorities, KeyStatus, TxIds};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{
    Decode, DecodeError, Encode, Envelope, Message, NotarizeReply, Outcome, Payload, Reader, RedeemRefused, RoleId,
    Writer,
};
use std::collections::BTreeMap;

#[allow(unused_imports)] // Named by the docs.
use dtenge_wire::RedeemRequest;

/// Redemptions at the notary, by batch number (u64 big-endian): bank, amount, transaction.
pub const REDEEM_OUTBOX_TABLE: Table = Table("central_redeem_outbox");
/// Transaction id -> its decision: redeemed (the registry entry's number) or refused (why).
pub const REDEMPTIONS_TABLE: Table = Table("central_redemptions");

/// Most redemptions at the notary at once; beyond it a redemption is refused (the bank may
/// send a new one later).
pub const REDEMPTIONS_IN_FLIGHT_MAX: usize = 256;

/// A redemption central took, as its outbox keeps it: the transaction carries the NBK's
/// attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RedeemPending {
    bank: String,
    amount: Amount,
    tx: Transaction,
}

pub(crate) struct RedeemInFlight {
    pending: RedeemPending,
    ids: TxIds,
    sent_at_ms: u64,
}

/// What became of a redemption, for good.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decided {
    /// Posted, with this registry entry's number.
    Redeemed(u64),
    Refused(Error),
}

impl Encode for RedeemPending {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.bank);
        w.put(&self.amount);
        w.put(&self.tx);
    }
}

impl Decode for RedeemPending {
    const ENCODED_BYTES_MIN: usize = 4 + 8 + Transaction::ENCODED_BYTES_MIN;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(RedeemPending { bank: r.string("bank")?, amount: r.get()?, tx: r.get()? })
    }
}

impl Encode for Decided {
    fn encode(&self, w: &mut Writer) {
        match self {
            Decided::Redeemed(number) => {
                w.u8(1);
                w.u64(*number);
            }
            Decided::Refused(error) => {
                w.u8(2);
                w.put(error);
            }
        }
    }
}

impl Decode for Decided {
    const ENCODED_BYTES_MIN: usize = 1 + 5;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        match r.u8("redemption decision")? {
            1 => Ok(Decided::Redeemed(r.u64("registry entry")?)),
            2 => Ok(Decided::Refused(r.get()?)),
            tag => Err(DecodeError::UnknownTag { what: "redemption decision", tag: u64::from(tag) }),
        }
    }
}

/// The keys central trusts when it validates a redemption: its own (the NBK's) and every
/// bank's node key. (The oracle attests no redemption: they move standard DT only.)
struct Trust<'a> {
    issuer: Address,
    nbk: PublicKey,
    banks: &'a BTreeMap<String, BankKeys>,
}

impl Authorities for Trust<'_> {
    fn issuer(&self) -> Address {
        self.issuer
    }

    fn key_status(&self, key: &PublicKey) -> KeyStatus {
        if *key == self.nbk {
            return KeyStatus::CentralBank;
        }
        // A blocked bank is refused (for good) before validation, with its reason.
        if self.banks.values().any(|b| b.node_key == *key) {
            KeyStatus::ActiveNode
        } else {
            KeyStatus::Unknown
        }
    }
}

/// Read the redemptions left in the outbox: they are notarized again by the first `tick`.
pub(crate) fn load(store: &Store, inner: &mut Inner, next_batch: u64) -> Result<()> {
    for (key, value) in store.scan(REDEEM_OUTBOX_TABLE)? {
        let batch_no = u64::from_be_bytes(key.as_slice().try_into().map_err(|_| corrupt("a redemption's key"))?);
        assert!(batch_no < next_batch, "a redemption is numbered below the next batch number");
        assert!(!inner.outbox.contains_key(&batch_no), "emissions and redemptions share batch numbers");
        let pending = RedeemPending::from_bytes(&value).map_err(|e| corrupt(&format!("a redemption: {e}")))?;
        let ids = TxIds::of(&pending.tx)?;
        inner.redeem_outbox.insert(batch_no, RedeemInFlight { pending, ids, sent_at_ms: 0 });
    }
    assert!(inner.redeem_outbox.len() <= REDEMPTIONS_IN_FLIGHT_MAX, "the redemptions in flight are bounded");
    Ok(())
}

/// What a redemption request comes to.
enum Taken {
    /// New: written to the outbox under this batch number; notarize it.
    New(u64),
    /// Known (at the notary now, or redeemed: its delivery is on its way), or not answerable
    /// now (central's store failed): nothing to send.
    Nothing,
}

fn decision_key(tx_id: &TxId) -> Vec<u8> {
    tx_id.0 .0.to_vec()
}

impl CentralService {
    /// A bank's redemption request: taken, known, or refused (the refusal sent back).
    pub(crate) fn on_redeem_request(&self, inner: &mut Inner, bank: &str, tx: Transaction, now_ms: u64) {
        // Not a bank of this network: dropped, as any stray or hostile message.
        let Some(keys) = self.banks.get(bank).copied() else { return };
        let tx_id = tx.id();
        match self.take_redemption(inner, bank, &keys, tx, now_ms) {
            Ok(Taken::New(batch_no)) => self.notarize(batch_no, &inner.redeem_outbox[&batch_no].ids),
            Ok(Taken::Nothing) => {}
            Err(refused) => self.send_refusal(bank, tx_id, refused),
        }
    }

    fn take_redemption(
        &self,
        inner: &mut Inner,
        bank: &str,
        keys: &BankKeys,
        mut tx: Transaction,
        now_ms: u64,
    ) -> Result<Taken> {
        let ids = TxIds::of(&tx)?;
        match self.decided(&ids.tx_id) {
            Ok(Some(Decided::Redeemed(_))) => return Ok(Taken::Nothing),
            Ok(Some(Decided::Refused(e))) => return Err(e),
            Ok(None) => {}
            // The store cannot say: answer nothing, the bank asks again.
            Err(_) => return Ok(Taken::Nothing),
        }
        if inner.redeem_outbox.values().any(|f| f.ids.tx_id == ids.tx_id) {
            return Ok(Taken::Nothing);
        }
        let amount = self.check_redemption(keys, &mut tx)?;
        if let Err(refused) = self.check_room(inner, bank, amount, now_ms) {
            return Err(self.refuse_for_good(inner, &ids.tx_id, None, refused)?);
        }
        let pending = RedeemPending { bank: bank.to_string(), amount, tx };
        self.write_outbox(inner, pending, ids, now_ms).map(Taken::New)
    }

    /// The decision on a transaction, if central made one.
    fn decided(&self, tx_id: &TxId) -> Result<Option<Decided>> {
        let Some(bytes) = self.store.get(REDEMPTIONS_TABLE, &decision_key(tx_id))? else { return Ok(None) };
        let decided = Decided::from_bytes(&bytes).map_err(|e| corrupt(&format!("a redemption decision: {e}")))?;
        Ok(Some(decided))
    }

    /// A redemption this bank may ask for: a `Redeem` of its own account's DT, attested by its
    /// node key alone, valid in every stateless rule with every signature verified once the
    /// NBK has attested it (done here, on `tx`). Returns the amount it destroys.
    fn check_redemption(&self, keys: &BankKeys, tx: &mut Transaction) -> Result<Amount> {
        if tx.body.command != Command::Redeem {
            return Err(Error::malformed("a redemption request carries a Redeem transaction"));
        }
        let attested_by_bank = matches!(tx.attestations.as_slice(), [a] if a.public_key == keys.node_key);
        if !attested_by_bank {
            return Err(Error::new(
                ErrorCode::InvalidSignature,
                "a redemption is attested by its bank's node key alone",
            ));
        }
        let owners = tx.body.inputs.iter().map(|i| i.output.owner).chain(tx.body.outputs.iter().map(|o| o.owner));
        for owner in owners {
            if owner != keys.own {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!("a bank redeems its own account's DT only, not {owner}'s"),
                ));
            }
        }
        tx.attest(&self.key);
        let trust = Trust { issuer: self.issuer(), nbk: self.key.public_key(), banks: &self.banks };
        let validated = dtenge_core::validate::validate(tx, &trust)?;
        assert!(!validated.redeemed.is_zero(), "a valid redemption destroys value");
        Ok(validated.redeemed)
    }

    /// Central can take the redemption now: the bank is not blocked, `now_ms` falls on an
    /// operational day, the outbox has room, and
    /// the ABS can post it together with every redemption in flight (the DT liability covers
    /// them, the correspondent account stays within its bound), so that its posting, planned
    /// on the certificate, cannot fail.
    fn check_room(&self, inner: &Inner, bank: &str, amount: Amount, now_ms: u64) -> Result<()> {
        if let Some(reason) = inner.blocked.get(bank) {
            return Err(Error::new(
                ErrorCode::BankBlocked,
                format!("'{bank}' is blocked by the NBK operator: {reason}"),
            ));
        }
        // Why final (written by the caller like the other refusals here), although tomorrow
        // may be a working day: the bank releases the inputs of any refused redemption and
        // answers its caller, so a late copy of this request must get the same answer, not a
        // redemption nobody is waiting for. The bank asks again with a new transaction.
        inner.ensure_operational_day(now_ms)?;
        if inner.redeem_outbox.len() >= REDEMPTIONS_IN_FLIGHT_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many redemptions in flight; redeem again later"));
        }
        let mut all = amount;
        let mut of_bank = amount;
        for in_flight in inner.redeem_outbox.values() {
            all = all.checked_add(in_flight.pending.amount)?;
            if in_flight.pending.bank == bank {
                of_bank = of_bank.checked_add(in_flight.pending.amount)?;
            }
        }
        if all > inner.abs.dt_liability() {
            return Err(Error::new(
                ErrorCode::InsufficientFunds,
                format!("the DT liability is {}, redemptions in flight with this one {all}", inner.abs.dt_liability()),
            ));
        }
        let corr = correspondent(bank);
        let credit_tiyn = i64::try_from(of_bank.tiyn()).map_err(|_| Error::malformed("amount"))?;
        let after_tiyn = inner.abs.balance(&corr).checked_add(credit_tiyn);
        if after_tiyn.is_none_or(|after| after > Amount::MAX.tiyn() as i64) {
            return Err(Error::new(ErrorCode::LimitExceeded, format!("ABS account {corr} would exceed its maximum")));
        }
        Ok(())
    }

    /// Write the decision to refuse `tx_id` (with the removal of its outbox row `batch_no`, if
    /// it had one) before anyone hears of it; the refusal, to be sent, once it is durable.
    fn refuse_for_good(&self, inner: &mut Inner, tx_id: &TxId, batch_no: Option<u64>, refused: Error) -> Result<Error> {
        let mut batch = WriteBatch::new();
        batch.put(REDEMPTIONS_TABLE, decision_key(tx_id), Decided::Refused(refused.clone()).to_bytes());
        if let Some(batch_no) = batch_no {
            batch.delete(REDEEM_OUTBOX_TABLE, batch_no.to_be_bytes().to_vec());
        }
        // Not durable: say nothing (the role stops; the bank asks again after its restart).
        self.commit(inner, batch)?;
        Ok(refused)
    }

    fn write_outbox(&self, inner: &mut Inner, pending: RedeemPending, ids: TxIds, now_ms: u64) -> Result<u64> {
        let batch_no = inner.next_batch;
        let mut batch = WriteBatch::new();
        batch.put(REDEEM_OUTBOX_TABLE, batch_no.to_be_bytes().to_vec(), pending.to_bytes());
        batch.put(META_TABLE, NEXT_BATCH_KEY.to_vec(), (batch_no + 1).to_le_bytes().to_vec());
        self.commit(inner, batch)?;
        inner.next_batch = batch_no + 1;
        let previous = inner.redeem_outbox.insert(batch_no, RedeemInFlight { pending, ids, sent_at_ms: now_ms });
        assert!(previous.is_none(), "a batch number is used once");
        Ok(batch_no)
    }

    fn send_refusal(&self, bank: &str, tx_id: TxId, refused: Error) {
        // A refusal central could not make durable is never sent (see `refuse_for_good`).
        if refused.code == ErrorCode::StorageFailure {
            return;
        }
        let _ = self.transport.send(Envelope {
            from: RoleId::Central,
            to: RoleId::Bank(bank.to_string()),
            message: Message::RedeemRefused(RedeemRefused { tx_id, refused }),
        });
    }

    /// The notary's answer to a redemption: post it, refuse it, or wait (ask again).
    pub(crate) fn on_redeem_reply(&self, inner: &mut Inner, reply: NotarizeReply, now_ms: u64) {
        let in_flight = &inner.redeem_outbox[&reply.batch];
        let [outcome] = reply.outcomes.as_slice() else { return };
        match outcome {
            Outcome::Committed(proof) => {
                let Some(certificate) = &reply.certificate else { return };
                let leaf = CompactTx::of(&in_flight.ids).hash();
                if certificate.verify(&self.notary, &leaf, proof).is_err() {
                    return;
                }
                let in_flight = inner.redeem_outbox.remove(&reply.batch).expect("found above");
                self.post_redemption(inner, reply.batch, in_flight, certificate.clone(), proof.clone(), now_ms);
            }
            // Not decided at the notary (being committed, or its store failed): ask again.
            Outcome::Refused(e) if matches!(e.code, ErrorCode::RequestInProgress | ErrorCode::StorageFailure) => {}
            Outcome::Refused(e) => {
                let (bank, tx_id) = (in_flight.pending.bank.clone(), in_flight.ids.tx_id);
                if let Ok(refused) = self.refuse_for_good(inner, &tx_id, Some(reply.batch), e.clone()) {
                    inner.redeem_outbox.remove(&reply.batch);
                    self.send_refusal(&bank, tx_id, refused);
                }
            }
        }
    }

    /// The redemption is certified: post it in the ABS, enter it in the registry, decide it and
    /// deliver it to the bank, in one commit.
    fn post_redemption(
        &self,
        inner: &mut Inner,
        batch_no: u64,
        in_flight: RedeemInFlight,
        certificate: CommitCertificate,
        proof: CommitProof,
        now_ms: u64,
    ) {
        let pending = &in_flight.pending;
        let tx_id = in_flight.ids.tx_id;
        let posting = inner
            .abs
            .plan(
                PostingKind::Redemption,
                DT_LIABILITY,
                &correspondent(&pending.bank),
                pending.amount,
                &tx_id.to_string(),
                now_ms,
            )
            .unwrap_or_else(|e| panic!("a redemption checked against the ABS when it was taken cannot be posted: {e}"));
        let entry = RegistryEntry {
            number: inner.registry.len() as u64,
            kind: EntryKind::Redemption,
            bank: pending.bank.clone(),
            amount: pending.amount,
            tx_id,
            certificate_seq: certificate.seq,
            abs_seq: posting.seq,
            at_ms: now_ms,
        };
        let mut batch = WriteBatch::new();
        inner.abs.writes(&posting, &mut batch).unwrap_or_else(|e| panic!("an ABS posting cannot be encoded: {e}"));
        crate::registry::write(&entry, &mut batch);
        batch.put(REDEMPTIONS_TABLE, decision_key(&tx_id), Decided::Redeemed(entry.number).to_bytes());
        batch.delete(REDEEM_OUTBOX_TABLE, batch_no.to_be_bytes().to_vec());
        let payload = Payload::Certified { certificate, txs: vec![(pending.tx.clone(), proof)] };
        let delivery = inner.outbound.plan(RoleId::Bank(pending.bank.clone()), payload, &mut batch);
        if self.commit(inner, batch).is_err() {
            inner.redeem_outbox.insert(batch_no, in_flight);
            return;
        }
        inner.abs.apply(&posting);
        inner.registry.push(entry);
        let envelope = inner.outbound.sent(delivery, &RoleId::Central, now_ms);
        let _ = self.transport.send(envelope);
    }

    /// Redemptions the notary has not answered in time, asked again.
    pub(crate) fn resend_redemptions(&self, inner: &mut Inner, now_ms: u64) {
        let due: Vec<u64> = inner
            .redeem_outbox
            .iter()
            .filter(|(_, f)| f.sent_at_ms.saturating_add(crate::RESEND_AFTER_MS) <= now_ms)
            .map(|(b, _)| *b)
            .collect();
        for batch_no in due {
            let in_flight = inner.redeem_outbox.get_mut(&batch_no).expect("listed above");
            in_flight.sent_at_ms = now_ms;
            self.notarize(batch_no, &in_flight.ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::{Hash32, SecretKey};
    use dtenge_core::token::Output;
    use dtenge_core::tx::TxBody;

    #[test]
    fn an_outbox_row_and_a_decision_decode_to_what_was_written() {
        let own = SecretKey::from_seed([7; 32]);
        let tx = Transaction::new(TxBody {
            command: Command::Redeem,
            inputs: vec![],
            outputs: vec![Output::standard(Amount::from_tiyn(5).unwrap(), own.address(), own.address())],
            nonce: 3,
        });
        let pending = RedeemPending { bank: "steppe".into(), amount: Amount::from_tiyn(100).unwrap(), tx };
        assert_eq!(RedeemPending::from_bytes(&pending.to_bytes()).unwrap(), pending);
        for decided in [Decided::Redeemed(42), Decided::Refused(Error::new(ErrorCode::BankBlocked, "blocked"))] {
            assert_eq!(Decided::from_bytes(&decided.to_bytes()).unwrap(), decided);
        }
        assert!(Decided::from_bytes(&[3, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert_eq!(decision_key(&TxId(Hash32([9; 32]))), vec![9; 32]);
    }
}
