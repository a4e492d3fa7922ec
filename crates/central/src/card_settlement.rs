//! Interbank settlement of card flows in the ABS (SPEC sub-scenario 10, refunds, ATM).
//!
//! A bank delivers [`CardNotice::Settle`] on its numbered stream to central when a card flow
//! it committed moves bank money between two banks: a convert-to-fiat purchase (the buyer's
//! bank pays the merchant's), a convert-to-fiat refund (the merchant's bank pays the buyer's),
//! an ATM withdrawal at another bank's ATM (the card's bank pays the ATM's). The debit is
//! always the sender's own correspondent account: a bank can move only its own money.
//!
//! Each notice is applied once (the stream's number is stored in the commit that applies it):
//! the posting `corr:<sender> → corr:<to_bank>` is made in that commit when the sender's
//! correspondent account covers it beside what its emissions in flight reserved. When it does
//! not, the settlement waits in central's queue (`central_card_settlements`, in the same
//! commit) and is posted, in order, as soon as the account is funded (checked on every tick):
//! the DT leg is final at the notary already, so the bank-money leg is never refused, only
//! delayed, as an RTGS queues a payment until its payer's account covers it.

use crate::{CentralService, Inner};
use dtenge_abs::{correspondent, Posting, PostingKind};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{CardNotice, Decode, DecodeError, Deliver, DeliverAck, Encode, Envelope, Message, Payload, Reader};
use dtenge_wire::{RoleId, Writer};
use std::collections::BTreeMap;

/// Settlements waiting for their payer's correspondent account to cover them, by arrival
/// number (u64 big-endian).
pub const CARD_SETTLEMENTS_TABLE: Table = Table("central_card_settlements");

/// A settlement taken from a bank's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub from_bank: String,
    pub to_bank: String,
    pub amount: Amount,
    pub reference: String,
}

impl Encode for Settlement {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.from_bank);
        w.str(&self.to_bank);
        w.put(&self.amount);
        w.str(&self.reference);
    }
}

impl Decode for Settlement {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 8 + 4;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Settlement {
            from_bank: r.string("from bank")?,
            to_bank: r.string("to bank")?,
            amount: r.get()?,
            reference: r.string("reference")?,
        })
    }
}

/// Central's side of the banks' streams, and the settlements waiting for funds.
#[derive(Default)]
pub(crate) struct Settlements {
    inbound: dtenge_delivery::Inbound,
    queued: BTreeMap<u64, Settlement>,
    next: u64,
    /// Notices refused (a bank unknown, a debit of another bank's money): applied as nothing.
    rejected: u64,
}

impl Settlements {
    pub(crate) fn load(store: &Store) -> Result<Settlements> {
        let mut settlements =
            Settlements { inbound: dtenge_delivery::Inbound::load(store)?, next: 1, ..Settlements::default() };
        for (key, value) in store.scan(CARD_SETTLEMENTS_TABLE)? {
            let number = u64::from_be_bytes(
                key.as_slice()
                    .try_into()
                    .map_err(|_| Error::new(ErrorCode::StorageFailure, "central: a settlement's key"))?,
            );
            let settlement = Settlement::from_bytes(&value)
                .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("central: a settlement: {e}")))?;
            settlements.next = settlements.next.max(number + 1);
            settlements.queued.insert(number, settlement);
        }
        Ok(settlements)
    }
}

impl CentralService {
    /// Settlements waiting for funds.
    pub fn card_settlements_queued(&self) -> Vec<Settlement> {
        self.inner.lock().cards.queued.values().cloned().collect()
    }

    /// Card notices refused since central opened.
    pub fn card_notices_rejected(&self) -> u64 {
        self.inner.lock().cards.rejected
    }

    /// A bank's delivery: applied once, in its order, then acknowledged.
    pub(crate) fn on_bank_delivery(&self, inner: &mut Inner, bank: &str, deliver: Deliver, now_ms: u64) {
        let from = RoleId::Bank(bank.to_string());
        match inner.cards.inbound.accept(&from, deliver.seq) {
            dtenge_delivery::Accept::Apply => {}
            dtenge_delivery::Accept::Duplicate { ack } => return self.ack(&from, ack),
            dtenge_delivery::Accept::Early => return,
        }
        let settlement = match deliver.payload {
            Payload::Card(CardNotice::Settle { reference, to_bank, amount }) => {
                let settlement = Settlement { from_bank: bank.to_string(), to_bank, amount, reference };
                self.check_settlement(&settlement).ok().map(|()| settlement)
            }
            // Nothing else a bank delivers is central's: applied as nothing, so the stream goes on.
            _ => None,
        };
        let mut batch = WriteBatch::new();
        inner.cards.inbound.plan_applied(&from, deliver.seq, &mut batch);
        let mut posting = None;
        let mut queued = None;
        match settlement {
            None => {}
            Some(settlement) => {
                let waiting = inner.cards.queued.values().any(|q| q.from_bank == settlement.from_bank);
                // In order per payer: one waiting before it waits first.
                posting = if waiting { None } else { plan_posting(inner, &settlement, now_ms) };
                match &posting {
                    Some(posting) => inner
                        .abs
                        .writes(posting, &mut batch)
                        .unwrap_or_else(|e| panic!("an ABS posting cannot be encoded: {e}")),
                    None => {
                        let number = inner.cards.next;
                        batch.put(CARD_SETTLEMENTS_TABLE, number.to_be_bytes().to_vec(), settlement.to_bytes());
                        queued = Some((number, settlement));
                    }
                }
            }
        }
        let refused = posting.is_none() && queued.is_none();
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.cards.inbound.applied(&from, deliver.seq);
        if let Some(posting) = posting {
            inner.abs.apply(&posting);
        }
        if let Some((number, settlement)) = queued {
            inner.cards.next = number + 1;
            inner.cards.queued.insert(number, settlement);
        }
        if refused {
            inner.cards.rejected += 1;
        }
        self.ack(&from, deliver.seq);
    }

    /// A settlement central can post: two different banks of this network, a positive amount.
    fn check_settlement(&self, settlement: &Settlement) -> Result<()> {
        self.known_bank(&settlement.from_bank)?;
        self.known_bank(&settlement.to_bank)?;
        if settlement.from_bank == settlement.to_bank || settlement.amount.is_zero() {
            return Err(Error::malformed("a settlement moves a positive amount between two banks"));
        }
        Ok(())
    }

    /// Post what waits and is covered now, in order per payer (the tick calls this).
    pub(crate) fn post_queued(&self, inner: &mut Inner, now_ms: u64) {
        let mut blocked_payers: Vec<String> = Vec::new();
        let waiting: Vec<(u64, Settlement)> = inner.cards.queued.iter().map(|(n, s)| (*n, s.clone())).collect();
        for (number, settlement) in waiting {
            if blocked_payers.contains(&settlement.from_bank) {
                continue;
            }
            let Some(posting) = plan_posting(inner, &settlement, now_ms) else {
                blocked_payers.push(settlement.from_bank.clone());
                continue;
            };
            let mut batch = WriteBatch::new();
            inner.abs.writes(&posting, &mut batch).unwrap_or_else(|e| panic!("an ABS posting cannot be encoded: {e}"));
            batch.delete(CARD_SETTLEMENTS_TABLE, number.to_be_bytes().to_vec());
            if self.commit(inner, batch).is_err() {
                return;
            }
            inner.abs.apply(&posting);
            inner.cards.queued.remove(&number);
        }
    }

    fn ack(&self, to: &RoleId, seq: u64) {
        let _ = self.transport.send(Envelope {
            from: RoleId::Central,
            to: to.clone(),
            message: Message::DeliverAck(DeliverAck { seq }),
        });
    }
}

/// The posting, when the payer's correspondent account covers it beside what its emissions in
/// flight reserved (the emissions' postings must stay possible: they assert so).
fn plan_posting(inner: &Inner, settlement: &Settlement, now_ms: u64) -> Option<Posting> {
    let debit = correspondent(&settlement.from_bank);
    let reserved = inner.reserved.get(&debit).copied().unwrap_or(Amount::ZERO);
    let free = i128::from(inner.abs.balance(&debit)) - i128::from(reserved.tiyn());
    if free < i128::from(settlement.amount.tiyn()) {
        return None;
    }
    let credit = correspondent(&settlement.to_bank);
    // Beyond the credit account's bound (`LIMIT_EXCEEDED`) it waits too, rather than fail.
    inner
        .abs
        .plan(PostingKind::InterbankSettlement, &debit, &credit, settlement.amount, &settlement.reference, now_ms)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BankKeys;
    use dtenge_core::crypto::SecretKey;
    use dtenge_store::SimDisk;
    use dtenge_transport::{SendError, Transport};
    use parking_lot::Mutex;
    use std::sync::Arc;

    #[derive(Default)]
    struct Captured(Mutex<Vec<Envelope>>);

    impl Transport for Captured {
        fn send(&self, envelope: Envelope) -> std::result::Result<(), SendError> {
            self.0.lock().push(envelope);
            Ok(())
        }
    }

    fn open(disk: &SimDisk, sent: &Arc<Captured>) -> CentralService {
        let store = Store::open_simulated(disk.clone(), &crate::tables()).unwrap();
        let keys = |seed: u8| BankKeys {
            own: SecretKey::from_seed([seed; 32]).address(),
            node_key: SecretKey::from_seed([seed + 1; 32]).public_key(),
        };
        let banks = [("steppe".to_string(), keys(30)), ("sapa".to_string(), keys(40))].into_iter().collect();
        let notary = SecretKey::from_seed([3; 32]).public_key();
        CentralService::open(store, SecretKey::from_seed([1; 32]), notary, banks, sent.clone()).unwrap()
    }

    fn settle(seq: u64, to_bank: &str, tiyn: u64) -> Envelope {
        let amount = Amount::from_tiyn(tiyn).unwrap();
        let notice = CardNotice::Settle { reference: format!("P-{seq}"), to_bank: to_bank.into(), amount };
        Envelope {
            from: RoleId::Bank("steppe".into()),
            to: RoleId::Central,
            message: Message::Deliver(Deliver { seq, payload: Payload::Card(notice) }),
        }
    }

    fn acks(sent: &Captured) -> Vec<u64> {
        let sent = std::mem::take(&mut *sent.0.lock());
        sent.into_iter()
            .filter_map(|e| match e.message {
                Message::DeliverAck(ack) => Some(ack.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_settlement_is_posted_once_in_order_and_a_bad_one_is_applied_as_nothing() {
        let (disk, sent) = (SimDisk::new(), Arc::new(Captured::default()));
        let central = open(&disk, &sent);
        central.credit_correspondent("steppe", Amount::from_tiyn(1_000).unwrap(), 0).unwrap();
        let corr = |c: &CentralService, bank: &str| c.abs_balance(&correspondent(bank));
        central.handle(settle(1, "sapa", 300), 1);
        // The same delivery again (a resend): acknowledged, not posted again.
        central.handle(settle(1, "sapa", 300), 2);
        // One beyond the next: dropped until its turn.
        central.handle(settle(3, "sapa", 100), 3);
        assert_eq!((corr(&central, "steppe"), corr(&central, "sapa")), (700, 300));
        assert_eq!(acks(&sent), vec![1, 1]);
        // To itself, or to a bank central does not know: applied as nothing, acknowledged.
        central.handle(settle(2, "steppe", 100), 4);
        central.handle(settle(3, "nowhere", 100), 5);
        assert_eq!(acks(&sent), vec![2, 3]);
        assert_eq!(central.card_notices_rejected(), 2);
        // Beyond the account: it waits, and the next one waits behind it, durably.
        central.handle(settle(4, "sapa", 800), 6);
        central.handle(settle(5, "sapa", 100), 7);
        assert_eq!(central.card_settlements_queued().len(), 2);
        assert_eq!(corr(&central, "steppe"), 700);
        assert_eq!(acks(&sent), vec![4, 5], "taken from the stream while waiting for funds");
        drop(central);
        let central = open(&disk, &sent);
        assert_eq!(central.card_settlements_queued().len(), 2, "read back");
        central.handle(settle(5, "sapa", 100), 8);
        assert_eq!(acks(&sent), vec![5], "a duplicate after the restart is acknowledged");
        central.credit_correspondent("steppe", Amount::from_tiyn(200).unwrap(), 9).unwrap();
        central.tick(10);
        assert!(central.card_settlements_queued().is_empty());
        assert_eq!((corr(&central, "steppe"), corr(&central, "sapa")), (0, 1_200), "posted once each, in order");
    }

    #[test]
    fn a_settlement_decodes_to_what_was_written() {
        let settlement = Settlement {
            from_bank: "steppe".into(),
            to_bank: "sapa".into(),
            amount: Amount::from_tiyn(5).unwrap(),
            reference: "P-0123".into(),
        };
        assert_eq!(Settlement::from_bytes(&settlement.to_bytes()).unwrap(), settlement);
        assert!(Settlement::from_bytes(&settlement.to_bytes()[1..]).is_err());
    }
}
