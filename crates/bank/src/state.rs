//! What a bank keeps: its tables, how their rows are encoded, and its state in memory.
//!
//! | table | key | value (`dtenge-wire` encoding) |
//! |---|---|---|
//! | `bank_outbox_log` | (log) | `1`, a batch number (u64), the batch's [`OutboxEntry`]s: a batch written, or what stays of it after an answer |
//! | `bank_outbox_log` | (log) | `2`, a batch number: the batch answered, gone from the outbox |
//! | `bank_outbox_log` | (log) | `3`, the next batch number |
//! | `bank_idempotency` | the key | fingerprint, then in flight (tx id) or committed (tx id, seq), then the time written (Unix ms, u64; absent in records from before 2026-12-07) |
//! | `bank_idempotency_by_time` | time written (u64 BE), the key | empty: the retention sweep's index (`dtenge_store::retention`) |
//! | `bank_meta` | `blocked:<bank>` | the reason of the operator's block |
//! | `bank_meta` | `next_redeem_nonce` | u64 LE |
//! | `bank_redeem` | transaction id | a redemption waiting for central (`redeem.rs`) |
//! | `bank_meta` | `next_hold_nonce` | u64 LE |
//! | `bank_holds` | transaction id | a hold or release not finished (`hold.rs`) |
//! | `bank_meta` | `next_spend_nonce` | u64 LE |
//! | `bank_programmed` | transaction id | a programmed spend not finished (`programmed.rs`) |
//! | `bank_card_purchases` | purchase id | the purchase, as issuer and/or acquirer (`cards.rs`) |
//! | `bank_card_payouts` | purchase id, 0, refund number (u32 BE) | DT this bank owes a buyer for a refund |
//! | `bank_card_refunds` | the key | a convert-to-fiat refund decided here, by idempotency key |
//! | `bank_card_credits` | purchase id | bank money owed to a merchant not opened here yet |
//! | `bank_voucher_programs` | programme id (or 0x01 + key) | a voucher programme (`vouchers.rs`) |
//! | `bank_voucher_events` | programme id, 0, event id | the event's payment (tx id, certificate, amount, time) |
//!
//! The node's own tables (accounts, tokens, history) are `dtenge-node`'s, the deliveries'
//! `dtenge-delivery`'s.
//!
//! The outbox is a log (a payment's commits then write no fjall row, which would cost a second
//! fsync and write the transactions to fjall whole): reading it back in order gives the
//! batches at the notary and the next batch number. Every [`OUTBOX_SNAPSHOT_EVERY`] answers,
//! the answer's commit writes the next number and every batch still at the notary again and
//! drops the rows before it ([`dtenge_store::WriteBatch::truncate_log_here`]). Until 2026-12-06
//! the outbox was a keyed table (`bank_outbox`, and `next_batch` in `bank_meta`); a store of
//! that format is not read (there is no deployed data).

use crate::{BankStats, Committed, IdemKey};
use dtenge_core::certificate::CompactTx;
use dtenge_core::crypto::Hash32;
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::TxIds;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_node::NodeState;
use dtenge_store::{LogTable, Store, Table, WriteBatch};
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Writer};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Batches at the notary, by the bank's batch number: the transactions, whole (see the
/// module docs).
pub const OUTBOX_LOG: LogTable = LogTable("bank_outbox_log");
/// Answers between two snapshots of the outbox log: a restart reads about this many batches.
pub const OUTBOX_SNAPSHOT_EVERY: u64 = 32;
/// The same on the simulator's disk, so that its crashes and torn writes hit snapshots.
pub const OUTBOX_SNAPSHOT_EVERY_SIMULATED: u64 = 2;
const OUTBOX_BATCH: u8 = 1;
const OUTBOX_DONE: u8 = 2;
const OUTBOX_NEXT: u8 = 3;
/// Idempotency keys of requests in flight or committed.
pub const IDEM_TABLE: Table = Table("bank_idempotency");
/// [`IDEM_TABLE`]'s records by the time they were written: the retention sweep's index.
pub const IDEM_BY_TIME_TABLE: Table = Table("bank_idempotency_by_time");
/// The operator's blocks and the nonces of holds, redemptions and programmed spends.
pub const BANK_META_TABLE: Table = Table("bank_meta");
/// `blocked:<bank>` -> the reason: the operator's blocks this bank has applied.
const BLOCKED_PREFIX: &[u8] = b"blocked:";

pub(crate) fn blocked_key(bank: &str) -> Vec<u8> {
    let mut key = BLOCKED_PREFIX.to_vec();
    key.extend_from_slice(bank.as_bytes());
    key
}

/// The banks blocked by the operator's decisions this bank has applied.
pub(crate) fn load_blocked(store: &Store) -> Result<Vec<String>> {
    store
        .scan_prefix(BANK_META_TABLE, BLOCKED_PREFIX)?
        .into_iter()
        .map(|(key, _)| {
            String::from_utf8(key[BLOCKED_PREFIX.len()..].to_vec())
                .map_err(|_| Error::new(ErrorCode::StorageFailure, "a blocked bank's id is not UTF-8"))
        })
        .collect()
}

/// Every table of a bank's store.
pub fn tables() -> Vec<Table> {
    let mut tables = dtenge_node::TABLES.to_vec();
    tables.extend(dtenge_delivery::TABLES);
    tables.extend([
        OUTBOX_LOG.table(),
        IDEM_TABLE,
        IDEM_BY_TIME_TABLE,
        BANK_META_TABLE,
        crate::redeem::REDEEM_TABLE,
        crate::hold::HOLD_TABLE,
    ]);
    tables.push(crate::programmed::PROGRAMMED_TABLE);
    tables.extend(crate::cards::TABLES);
    tables
}

/// Committed transactions remembered for answering a client that submits one again (its
/// answer was lost). Older ones are answered `DOUBLE_SPEND`: their inputs are spent.
pub const RECENT_COMMITTED_MAX: usize = 65_536;

/// One transaction of a batch at the notary, as the outbox keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutboxEntry {
    pub(crate) tx: Transaction,
    pub(crate) idem: Option<IdemKey>,
    /// The other banks whose clients it pays: where its deliveries go. Found in the directory
    /// when the transaction was admitted, and kept, so that applying the notary's answer (after
    /// a restart, perhaps) never depends on the directory being reachable.
    pub(crate) payee_banks: Vec<String>,
    /// A conversion's bank-money move, applied with the certified payment.
    pub(crate) fiat: Option<crate::conversion::FiatMove>,
    /// A card or voucher flow's leg, applied with the certified payment (`cards`).
    pub(crate) card: Option<crate::cards::CardLeg>,
    /// A custodial payment's purpose and reference for the history (none: a payment).
    pub(crate) label: Option<crate::Label>,
}

impl Encode for IdemKey {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.key);
        w.put(&self.fingerprint);
    }
}

impl Decode for IdemKey {
    const ENCODED_BYTES_MIN: usize = 4 + 32;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(IdemKey { key: r.string("idempotency key")?, fingerprint: r.get()? })
    }
}

impl Encode for OutboxEntry {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.tx);
        w.put(&self.idem);
        w.put(&self.payee_banks);
        w.put(&self.fiat);
        // Added with cards: an outbox written before is drained before the upgrade.
        w.put(&self.card);
        // Added with labels: likewise.
        w.put(&self.label);
    }
}

impl Decode for OutboxEntry {
    // The transaction, then one byte or more for each of: the key, the payee banks (4), the
    // bank-money move, the card leg, the label.
    const ENCODED_BYTES_MIN: usize = Transaction::ENCODED_BYTES_MIN + 1 + 4 + 1 + 1 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(OutboxEntry {
            tx: r.get()?,
            idem: r.get()?,
            payee_banks: r.seq("payee banks", 1_024)?,
            fiat: r.get()?,
            card: r.get()?,
            label: r.get()?,
        })
    }
}

/// A batch written to the outbox (or what stays of it after an answer).
pub(crate) fn outbox_batch(batch: &mut WriteBatch, batch_no: u64, entries: &[OutboxEntry]) {
    let mut w = Writer::new();
    w.u8(OUTBOX_BATCH);
    w.u64(batch_no);
    w.seq(entries);
    batch.record(OUTBOX_LOG, w.into_bytes());
}

fn outbox_number(batch: &mut WriteBatch, tag: u8, number: u64) {
    let mut w = Writer::with_capacity(9);
    w.u8(tag);
    w.u64(number);
    batch.record(OUTBOX_LOG, w.into_bytes());
}

/// A batch answered: gone from the outbox.
pub(crate) fn outbox_done(batch: &mut WriteBatch, batch_no: u64) {
    outbox_number(batch, OUTBOX_DONE, batch_no);
}

/// The outbox log's state again, and the rows before it dropped: the next batch number and
/// every batch at the notary. Every batch in `outbox` was handed to the store before this
/// batch (a failed commit stops the store, so none of them can be lost while this one
/// commits).
pub(crate) fn outbox_snapshot(batch: &mut WriteBatch, next_batch: u64, outbox: &BTreeMap<u64, Pending>) {
    outbox_number(batch, OUTBOX_NEXT, next_batch);
    for (batch_no, pending) in outbox {
        outbox_batch(batch, *batch_no, &pending.entries);
    }
    batch.truncate_log_here(OUTBOX_LOG);
}

/// The outbox log read back: the batches at the notary and the next batch number.
fn load_outbox(store: &Store) -> Result<(BTreeMap<u64, Vec<OutboxEntry>>, u64)> {
    let mut batches = BTreeMap::new();
    let mut next_batch = 1u64;
    for record in store.scan_log(OUTBOX_LOG)? {
        let mut r = Reader::new(&record);
        let decoded = (|| -> std::result::Result<(), DecodeError> {
            let tag = r.u8("outbox record")?;
            let number = r.u64("batch number")?;
            match tag {
                OUTBOX_BATCH => {
                    let entries: Vec<OutboxEntry> = r.seq("outbox entries", crate::BATCH_TXS_MAX)?;
                    next_batch = next_batch.max(number.saturating_add(1));
                    batches.insert(number, entries);
                }
                OUTBOX_DONE => {
                    batches.remove(&number);
                }
                OUTBOX_NEXT => next_batch = next_batch.max(number),
                tag => return Err(DecodeError::UnknownTag { what: "outbox record", tag: u64::from(tag) }),
            }
            r.finish()
        })();
        decoded.map_err(|e| Error::new(ErrorCode::StorageFailure, format!("an outbox record: {e}")))?;
    }
    Ok((batches, next_batch))
}

/// What an idempotency key stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdemState {
    InFlight(TxId),
    Committed(Committed),
}

/// Write `idem`'s record as in flight for `tx_id`, in the batch that writes the transaction
/// (an outbox, a hold, a redemption, a programmed spend); once that batch is durable,
/// [`Inner::idem_started`] tells memory.
pub(crate) fn plan_idem_in_flight(batch: &mut WriteBatch, idem: Option<&IdemKey>, tx_id: &TxId, now_ms: u64) {
    if let Some(idem) = idem {
        plan_idem(batch, idem, IdemState::InFlight(*tx_id), now_ms);
    }
}

/// Write `idem`'s record in `state` at `now_ms`, and its row in the retention index.
pub(crate) fn plan_idem(batch: &mut WriteBatch, idem: &IdemKey, state: IdemState, now_ms: u64) {
    batch.put(IDEM_TABLE, idem.key.as_bytes().to_vec(), idem_record(&idem.fingerprint, state, now_ms));
    if !is_own_key(idem.key.as_bytes()) {
        idem_retention().index(batch, idem.key.as_bytes(), now_ms);
    }
}

/// Is `key` one the bank makes itself (a voucher event's, a card payout's) rather than a
/// client's? Those records are the bank's guard against paying the same event twice: a
/// voucher event retried after any window must find its payment, so they are never swept.
pub(crate) fn is_own_key(key: &[u8]) -> bool {
    key.first() == Some(&(crate::cards::OWN_KEY_START as u8))
}

/// The retention of [`IDEM_TABLE`] (one per store: it remembers that old records were indexed).
pub(crate) fn idem_retention() -> dtenge_store::retention::Retention {
    dtenge_store::retention::Retention::new(IDEM_TABLE, IDEM_BY_TIME_TABLE)
}

/// What the retention sweep must know of a record: in flight, or when it was written.
pub(crate) fn idem_age(bytes: &[u8]) -> Result<dtenge_store::retention::RecordAge> {
    use dtenge_store::retention::RecordAge;
    Ok(match idem_of_timed(bytes)? {
        (_, IdemState::InFlight(_), _) => RecordAge::InFlight,
        (_, IdemState::Committed(_), written_ms) => RecordAge::Written(written_ms),
    })
}

/// An idempotency record: the fingerprint of the request that first used the key, its state,
/// and when it was written.
pub(crate) fn idem_record(fingerprint: &Hash32, state: IdemState, written_ms: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.put(fingerprint);
    match state {
        IdemState::InFlight(tx_id) => {
            w.u8(1);
            w.put(&tx_id);
        }
        IdemState::Committed(committed) => {
            w.u8(2);
            w.put(&committed.tx_id);
            w.u64(committed.seq);
        }
    }
    w.u64(written_ms);
    w.into_bytes()
}

pub(crate) fn idem_of(bytes: &[u8]) -> Result<(Hash32, IdemState)> {
    idem_of_timed(bytes).map(|(fingerprint, state, _)| (fingerprint, state))
}

/// A record decoded, with its write time (`None` for a record from before it was kept).
pub(crate) fn idem_of_timed(bytes: &[u8]) -> Result<(Hash32, IdemState, Option<u64>)> {
    let mut r = Reader::new(bytes);
    let decoded = (|| -> std::result::Result<(Hash32, IdemState, Option<u64>), DecodeError> {
        let fingerprint = r.get()?;
        let state = match r.u8("idempotency state")? {
            1 => IdemState::InFlight(r.get()?),
            2 => IdemState::Committed(Committed { tx_id: r.get()?, seq: r.u64("seq")? }),
            tag => return Err(DecodeError::UnknownTag { what: "idempotency state", tag: u64::from(tag) }),
        };
        let written_ms = if r.remaining() == 0 { None } else { Some(r.u64("written at")?) };
        r.finish()?;
        Ok((fingerprint, state, written_ms))
    })();
    decoded.map_err(|e| Error::new(ErrorCode::StorageFailure, format!("an idempotency record: {e}")))
}

/// `Pending::sent_at_ms` of a batch whose write is not durable yet: never due for resending.
pub(crate) const NOT_SENT: u64 = u64::MAX;

/// A batch at the notary.
pub(crate) struct Pending {
    pub(crate) entries: Vec<OutboxEntry>,
    pub(crate) ids: Vec<TxIds>,
    /// The compact transactions' hashes, in order: the leaves of the notarize request, and
    /// what the notary's proofs must place under its certificate (hashed once per batch).
    pub(crate) leaves: Vec<Hash32>,
    pub(crate) sent_at_ms: u64,
}

impl Pending {
    pub(crate) fn new(entries: Vec<OutboxEntry>, ids: Vec<TxIds>, sent_at_ms: u64) -> Pending {
        let leaves = ids.iter().map(|ids| CompactTx::of(ids).hash()).collect();
        Pending { entries, ids, leaves, sent_at_ms }
    }
}

/// The role's state in memory, behind its one lock.
pub(crate) struct Inner {
    pub(crate) node: NodeState,
    pub(crate) next_batch: u64,
    pub(crate) outbox: BTreeMap<u64, Pending>,
    /// Transaction -> the batch it is in.
    pub(crate) in_outbox: HashMap<TxId, u64>,
    /// Answers applied since the outbox log's last snapshot ([`outbox_snapshot`]).
    pub(crate) answered_since_snapshot: u64,
    /// Answers between two snapshots.
    pub(crate) outbox_snapshot_every: u64,
    pub(crate) waiters: HashMap<TxId, Vec<crate::Reply>>,
    /// Idempotency key -> (fingerprint, transaction) of requests not answered yet.
    pub(crate) idem_in_flight: HashMap<String, (Hash32, TxId)>,
    /// Bank money reserved by conversions to DT in flight.
    pub(crate) fiat_reserved: crate::conversion::FiatReserved,
    pub(crate) outbound: dtenge_delivery::Outbound,
    /// Deletions of acknowledged deliveries' rows, written with the next commit.
    pub(crate) acked: WriteBatch,
    pub(crate) inbound: dtenge_delivery::Inbound,
    /// Accounts waiting for the directory's answer, by address (not stored: a claim is asked
    /// again after a restart).
    pub(crate) claims: BTreeMap<dtenge_core::crypto::Address, crate::claims::PendingClaim>,
    /// Redemptions sent to central and not answered.
    pub(crate) redeems: crate::redeem::Redemptions,
    /// Holds and releases not finished.
    pub(crate) holds: crate::hold::Holds,
    /// Programmed spends not finished.
    pub(crate) spends: crate::programmed::Spends,
    /// Cards being linked, refunds in flight, refunds owed, voucher programmes (`cards`).
    pub(crate) cards: crate::cards::CardState,
    recent: VecDeque<(TxId, u64)>,
    pub(crate) recent_index: HashMap<TxId, u64>,
    /// Set when a durable commit failed: the store refuses every commit until the role is
    /// reopened, and the memory may no longer match the disk, so the role answers nothing.
    pub(crate) failed: bool,
    /// Steps made (their commit handed over, their memory changed) whose answers, deliveries
    /// and acknowledgements are not sent yet ([`crate::BankService::finish_commit`]): the
    /// role is not quiet while one is.
    pub(crate) finishing: usize,
    pub(crate) stats: BankStats,
    /// Where the running figures are published after each change ([`crate::figures`]).
    pub(crate) published: crate::figures::Publisher,
}

pub(crate) fn u64_of(bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] =
        bytes.try_into().map_err(|_| Error::new(ErrorCode::StorageFailure, "a stored number is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}

impl Inner {
    /// Rebuild the state from the store: the node, the outbox (its inputs reserved again), the
    /// deliveries not acknowledged and the streams' numbers.
    pub(crate) fn load(store: &Store, mut node: NodeState) -> Result<Inner> {
        let (batches, next_batch) = load_outbox(store)?;
        let mut outbox = BTreeMap::new();
        let mut in_outbox = HashMap::new();
        let mut idem_in_flight = HashMap::new();
        let mut fiat_reserved = crate::conversion::FiatReserved::default();
        for (batch_no, entries) in batches {
            assert!(batch_no < next_batch, "an outbox batch is numbered below the next number");
            let ids = entries.iter().map(|e| TxIds::of(&e.tx)).collect::<Result<Vec<_>>>()?;
            for (entry, id) in entries.iter().zip(&ids) {
                // What was reserved before the crash is reserved again: the batch is still at
                // the notary, or its answer was lost.
                node.reserve_inputs(&id.tx_id, &id.inputs)?;
                in_outbox.insert(id.tx_id, batch_no);
                if let Some(idem) = &entry.idem {
                    idem_in_flight.insert(idem.key.clone(), (idem.fingerprint, id.tx_id));
                }
                if let Some(fiat) = &entry.fiat {
                    fiat_reserved.reserve(fiat)?;
                }
            }
            outbox.insert(batch_no, Pending::new(entries, ids, 0));
        }
        let redeems = crate::redeem::load(store, &mut node, &mut idem_in_flight)?;
        let holds = crate::hold::load(store, &mut node, &mut idem_in_flight)?;
        let spends = crate::programmed::load(store, &mut node, &mut idem_in_flight)?;
        let cards = crate::cards::CardState::load(store, outbox.values().flat_map(|p| &p.entries))?;
        Ok(Inner {
            published: crate::figures::Publisher::new(&node),
            node,
            next_batch,
            outbox,
            in_outbox,
            answered_since_snapshot: 0,
            outbox_snapshot_every: if store.is_simulated() {
                OUTBOX_SNAPSHOT_EVERY_SIMULATED
            } else {
                OUTBOX_SNAPSHOT_EVERY
            },
            waiters: HashMap::new(),
            idem_in_flight,
            fiat_reserved,
            outbound: dtenge_delivery::Outbound::load(store)?,
            acked: WriteBatch::new(),
            inbound: dtenge_delivery::Inbound::load(store)?,
            claims: BTreeMap::new(),
            redeems,
            holds,
            spends,
            cards,
            recent: VecDeque::new(),
            recent_index: HashMap::new(),
            failed: false,
            finishing: 0,
            stats: BankStats::default(),
        })
    }

    /// The bank money the moves in flight will credit `client_id` (conversions from DT, contract
    /// withdrawals): a deposit or another credit must leave room for them, so that applying
    /// them never overflows.
    pub(crate) fn credits_in_flight(&self, client_id: &str) -> Result<dtenge_core::Amount> {
        self.fiat_reserved.credits_of(client_id).checked_add(self.spends.credits_of(client_id)?)
    }

    /// `idem`'s key is in flight for `tx_id` (its record written by [`plan_idem_in_flight`]).
    pub(crate) fn idem_started(&mut self, idem: Option<&IdemKey>, tx_id: &TxId) {
        if let Some(idem) = idem {
            self.idem_in_flight.insert(idem.key.clone(), (idem.fingerprint, *tx_id));
        }
    }

    pub(crate) fn ensure_running(&self) -> Result<()> {
        if self.failed {
            return Err(Error::new(ErrorCode::StorageFailure, "the bank's store failed; it restarts from its disk"));
        }
        Ok(())
    }

    /// A request is answered: its idempotency key is no longer in flight (its stored record
    /// answers from now on) and everyone waiting for `tx_id` gets `answer`.
    pub(crate) fn answer(&mut self, tx_id: &TxId, idem: Option<&IdemKey>, answer: Result<Committed>) {
        if let Some(idem) = idem {
            self.idem_in_flight.remove(&idem.key);
        }
        for waiter in self.waiters.remove(tx_id).unwrap_or_default() {
            waiter.send(answer.clone());
        }
    }

    pub(crate) fn remember(&mut self, tx_id: TxId, seq: u64) {
        if self.recent.len() == RECENT_COMMITTED_MAX {
            if let Some((old, _)) = self.recent.pop_front() {
                self.recent_index.remove(&old);
            }
        }
        self.recent.push_back((tx_id, seq));
        self.recent_index.insert(tx_id, seq);
        debug_assert!(self.recent.len() <= RECENT_COMMITTED_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voucher event's (or a card payout's) record is the bank's only guard against paying
    /// it twice: it is never put in the retention index, so no window sweeps it. (The merge of
    /// the retention window indexed it like a client's key.)
    #[test]
    fn the_banks_own_keys_are_kept_out_of_the_retention_window() {
        let fingerprint = Hash32([7; 32]);
        let state = IdemState::Committed(Committed { tx_id: TxId(Hash32([8; 32])), seq: 1 });
        for (key, rows) in
            [(format!("{}voucher:event-1", crate::cards::OWN_KEY_START), 1), ("bank:steppe/k1".into(), 2)]
        {
            let mut batch = WriteBatch::new();
            plan_idem(&mut batch, &crate::IdemKey { key: key.clone(), fingerprint }, state, 5);
            assert_eq!(batch.len(), rows, "{key:?}");
        }
    }

    #[test]
    fn idempotency_records_decode_to_what_was_written_and_garbage_is_refused() {
        let fp = Hash32([7; 32]);
        let tx_id = TxId(Hash32([8; 32]));
        for state in [IdemState::InFlight(tx_id), IdemState::Committed(Committed { tx_id, seq: 42 })] {
            assert_eq!(idem_of(&idem_record(&fp, state, 5)).unwrap(), (fp, state));
            assert_eq!(idem_of_timed(&idem_record(&fp, state, 5)).unwrap(), (fp, state, Some(5)));
            // A record from before the write time was kept.
            let mut old = idem_record(&fp, state, 5);
            old.truncate(old.len() - 8);
            assert_eq!(idem_of_timed(&old).unwrap(), (fp, state, None));
        }
        use dtenge_store::retention::RecordAge;
        assert_eq!(idem_age(&idem_record(&fp, IdemState::InFlight(tx_id), 5)).unwrap(), RecordAge::InFlight);
        let committed = IdemState::Committed(Committed { tx_id, seq: 42 });
        assert_eq!(idem_age(&idem_record(&fp, committed, 5)).unwrap(), RecordAge::Written(Some(5)));
        let mut bad = idem_record(&fp, IdemState::InFlight(tx_id), 5);
        bad[32] = 9;
        assert_eq!(idem_of(&bad).unwrap_err().code, ErrorCode::StorageFailure);
        assert!(idem_of(&bad[..10]).is_err());
    }

    /// Bytes of an idempotency record and its index row, and what 7 days hold at 1,000 keyed
    /// requests a second: `cargo test -p dtenge-bank --lib state::tests::disk_growth -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn disk_growth() {
        // A REST client's key as the gateway scopes it: `bank:steppe/` and a UUID.
        let key_bytes = "bank:steppe/".len() + 36;
        let committed = IdemState::Committed(Committed { tx_id: TxId(Hash32([8; 32])), seq: 1 << 40 });
        let value = idem_record(&Hash32([7; 32]), committed, 1 << 40).len();
        let index = dtenge_store::retention::index_row_key_bytes(key_bytes);
        let per_key = key_bytes + value + index;
        let keys_7d: u64 = 1_000 * 86_400 * 7;
        println!(
            "bank_idempotency: {key_bytes} B key + {value} B value, index row {index} B = {per_key} B/key \
             (payload, before LSM overhead); 7 days at 1000/s = {keys_7d} keys = {:.1} GiB",
            (keys_7d * per_key as u64) as f64 / (1u64 << 30) as f64
        );
    }
}
