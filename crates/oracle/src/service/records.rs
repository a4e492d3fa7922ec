//! The events' signed records: one [`Record`] per decision of the role on an event
//! (registered, held, released, returned, rejected, expired), signed with the role's own key
//! over [`dtenge_oracle::RecordBody::digest`] and written in the same commit as the decision,
//! so that an event's history is exactly what the role decided.
//!
//! Rows: `oracle_role_records`, key the event id, a zero byte and the record's `seq` (u32 big
//! endian, so a scan returns an event's records in order), value the record's explicit
//! encoding ([`Record`]'s `dtenge-wire` encoding). The role keeps in memory only what its
//! decisions need (the next `seq` of each event and the occurrence ids its records name),
//! rebuilt from the rows on open; the records themselves are read from the store when asked.
//!
//! The role knows an event's parties by their bank and address, not by their client ids: a
//! record's payouts name the payee's bank and address, with an empty client id.

use super::rows::{HoldEvent, Payee};
use crate::{Action, Record, RecordBody, Share};
use dtenge_core::crypto::{hash_parts, Address, Hash32, NodeKey};
use dtenge_core::party::Party;
use dtenge_core::token::TxId;
use dtenge_core::{Amount, Error, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Decode, Encode, Writer};
use std::collections::{HashMap, HashSet};

pub const ROLE_RECORDS_TABLE: Table = Table("oracle_role_records");

/// Who decided a step the role takes on its own (expiry).
pub const BY_ORACLE: &str = "oracle";

fn row_key(event_id: &str, seq: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(event_id.len() + 5);
    key.extend_from_slice(event_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn prefix(event_id: &str) -> Vec<u8> {
    let mut key = event_id.as_bytes().to_vec();
    key.push(0);
    key
}

/// One decision's record before it is numbered and signed.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub action: Action,
    pub amount: Amount,
    pub payouts: Vec<Share>,
    pub tx_id: Option<TxId>,
    pub occurrence_id: Option<String>,
    pub reason: Option<String>,
    pub by: String,
}

impl Step {
    pub fn new(action: Action, amount: Amount, by: &str) -> Step {
        Step { action, amount, payouts: Vec::new(), tx_id: None, occurrence_id: None, reason: None, by: by.to_string() }
    }
}

/// What an event is, fixed at registration, as every record of it is bound to: the hash of
/// its explicit encoding (version 1), domain-separated.
pub(crate) fn terms_hash(event: &HoldEvent, confirmed_by: &str, infinite: bool, registered_at_ms: u64) -> Hash32 {
    let mut w = Writer::new();
    w.u8(1);
    w.str(&event.id);
    w.str(&event.provider);
    w.str(confirmed_by);
    w.str(&event.reference);
    w.u8(if infinite { 2 } else { 1 });
    w.str(&event.sender_bank);
    w.put(&event.sender);
    w.seq(&event.payees);
    w.put(&event.amount_tiyn);
    w.u64(registered_at_ms);
    w.u64(event.valid_until_ms);
    hash_parts(b"dtenge/oracle-role/terms/v1", &[&w.into_bytes()])
}

/// A payee as a record names it.
pub(crate) fn share_of(payee: &Payee, amount: Amount) -> Share {
    Share {
        party: Party { bank: payee.bank.clone(), client_id: String::new(), address: payee.address },
        amount_tiyn: amount,
    }
}

/// The payouts of a release's outputs: those to the event's payees.
pub(crate) fn payouts_of(event: &HoldEvent, outputs: &[dtenge_core::token::Output]) -> Vec<Share> {
    let payee = |address: &Address| event.payees.iter().find(|p| p.address == *address);
    outputs
        .iter()
        .filter(|o| o.policy.is_standard())
        .filter_map(|o| payee(&o.owner).map(|p| share_of(p, o.amount_tiyn)))
        .collect()
}

/// What the role keeps in memory of the records, and the key that signs them.
pub(crate) struct Records {
    /// The role's own key (it never leaves the role).
    key: NodeKey,
    /// Event -> the number of its records (the next `seq`).
    counts: HashMap<String, u32>,
    /// Event -> the occurrence ids its records name.
    occurrences: HashMap<String, HashSet<String>>,
}

impl Records {
    /// Read the rows back: every record of a stored event, numbered densely from 0, keyed by
    /// its event and number. Rows are fjall's, without a checksum of the store's own: anything
    /// else is corrupt storage.
    pub fn load(store: &Store, key: NodeKey, is_event: impl Fn(&str) -> bool) -> Result<Records> {
        let mut records = Records { key, counts: HashMap::new(), occurrences: HashMap::new() };
        for (key, value) in store.scan(ROLE_RECORDS_TABLE)? {
            let record =
                Record::from_bytes(&value).map_err(|e| Error::storage(format!("oracle role: a record: {e}")))?;
            let body = &record.body;
            if key != row_key(&body.event_id, body.seq) {
                return Err(Error::storage(format!(
                    "oracle role: a record of {} is stored under another key",
                    body.event_id
                )));
            }
            if !is_event(&body.event_id) {
                return Err(Error::storage(format!("oracle role: a record of {}, which is not stored", body.event_id)));
            }
            let count = records.counts.entry(body.event_id.clone()).or_insert(0);
            if body.seq != *count {
                return Err(Error::storage(format!(
                    "oracle role: record {} of {} follows {} records",
                    body.seq, body.event_id, count
                )));
            }
            *count += 1;
            if let Some(id) = &body.occurrence_id {
                records.occurrences.entry(body.event_id.clone()).or_default().insert(id.clone());
            }
        }
        Ok(records)
    }

    /// Number and sign `steps` as the next records of `event_id` (after `planned`, the records
    /// of this commit so far), and write them to `batch`.
    pub fn plan(
        &self,
        event_id: &str,
        terms_hash: Hash32,
        steps: Vec<Step>,
        now_ms: u64,
        planned: &mut Vec<Record>,
        batch: &mut WriteBatch,
    ) {
        let before = planned.iter().filter(|r| r.body.event_id == event_id).count();
        let first = self.count(event_id) as usize + before;
        for (n, step) in steps.into_iter().enumerate() {
            let seq = u32::try_from(first + n).expect("an event's records are bounded by its decisions");
            let body = RecordBody {
                event_id: event_id.to_string(),
                seq,
                at_unix_ms: now_ms,
                action: step.action,
                amount_tiyn: step.amount,
                payouts: step.payouts,
                tx_id: step.tx_id,
                occurrence_id: step.occurrence_id,
                reason: step.reason,
                by: step.by,
                terms_hash,
            };
            let digest = body.digest().expect("a record's digest never fails");
            let record = Record { oracle_signature: self.key.sign(&digest.0), body };
            batch.put(ROLE_RECORDS_TABLE, row_key(event_id, seq), record.to_bytes());
            planned.push(record);
        }
    }

    /// The planned records are durable.
    pub fn applied(&mut self, planned: Vec<Record>) {
        for record in planned {
            let body = record.body;
            let count = self.counts.entry(body.event_id.clone()).or_insert(0);
            assert_eq!(*count, body.seq, "an event's records are numbered densely");
            *count += 1;
            if let Some(id) = body.occurrence_id {
                self.occurrences.entry(body.event_id).or_default().insert(id);
            }
        }
    }

    pub fn count(&self, event_id: &str) -> u32 {
        self.counts.get(event_id).copied().unwrap_or(0)
    }

    /// The occurrences of `event_id` its records name.
    pub fn occurrences(&self, event_id: &str) -> u32 {
        self.occurrences.get(event_id).map_or(0, |ids| ids.len() as u32)
    }

    /// A record of `event_id` names `occurrence_id`.
    pub fn has_occurrence(&self, event_id: &str, occurrence_id: &str) -> bool {
        self.occurrences.get(event_id).is_some_and(|ids| ids.contains(occurrence_id))
    }
}

/// The records of `event_id`, in order, from the store.
pub(crate) fn read(store: &Store, event_id: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (_, value) in store.scan_prefix(ROLE_RECORDS_TABLE, &prefix(event_id))? {
        records.push(Record::from_bytes(&value).map_err(|e| Error::storage(format!("oracle role: a record: {e}")))?);
    }
    Ok(records)
}
