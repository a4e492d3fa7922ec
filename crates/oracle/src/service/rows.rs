//! What the oracle role keeps, and how its rows are encoded (`dtenge-wire`, never serde).
//!
//! | table | key | value |
//! |---|---|---|
//! | `oracle_role_meta` | `next_event` | the next event's number (u64 LE) |
//! | `oracle_role_meta` | `notes:<event id>`, `event_key:<key>`, `kind:<event id>` | an event's notes, a registration's idempotency key, an infinite event's kind (`mod.rs`) |
//! | `oracle_role_meta` | `provider_key:<key>`, `marking_key:<bank>\0<key>` | a provider's or a bank's marking's idempotency key: the fingerprint and the id (`programmed.rs`) |
//! | `oracle_role_events` | the event id | a [`HoldEvent`] |
//! | `oracle_role_decisions` | transaction id | a [`TxDecision`]: final per transaction |
//! | `oracle_role_notices` | node id, 0, seq (u64 BE) | a notice to a bank (`notices.rs`), in the commit of the decision that causes it |
//! | `oracle_role_records` | event id, 0, seq (u32 BE) | a signed [`crate::Record`] (`records.rs`) |
//! | `oracle_role_providers`, `_markings`, `_marking_moves`, `_invoices`, `_vat`, `_contracts`, `_contract_uses` | see `registry.rs` | the registry of programmed money |
//!
//! The deliveries' numbers (the banks' streams to the oracle) are `dtenge-delivery`'s rows.

use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::token::{event_hash, Output, TxId};
use dtenge_core::tx::TX_OUTPUTS_MAX;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::Table;
use dtenge_wire::{Decode, DecodeError, Encode, PlannedSpend, Reader, Spend, Writer, SPEND_PARTS_MAX};

pub const ROLE_META_TABLE: Table = Table("oracle_role_meta");
pub const ROLE_EVENTS_TABLE: Table = Table("oracle_role_events");
pub const ROLE_DECISIONS_TABLE: Table = Table("oracle_role_decisions");
pub(crate) const NEXT_EVENT_KEY: &[u8] = b"next_event";

/// Every table of the oracle role's store.
pub fn tables() -> Vec<Table> {
    let mut tables = vec![
        ROLE_META_TABLE,
        ROLE_EVENTS_TABLE,
        ROLE_DECISIONS_TABLE,
        super::notices::ROLE_NOTICES_TABLE,
        super::records::ROLE_RECORDS_TABLE,
    ];
    tables.extend(super::registry::REGISTRY_TABLES);
    tables.extend(dtenge_delivery::TABLES);
    tables
}

/// Most payees of one event (the seller and the state's fees, several sellers).
pub const PAYEES_MAX: usize = 16;
/// Most bytes of a provider id, a reference or a reason.
pub const TEXT_BYTES_MAX: usize = 140;

/// One payee of an event: its bank, its address and its share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payee {
    pub bank: String,
    pub address: Address,
    pub amount_tiyn: Amount,
}

/// Where a (single) event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventStatus {
    /// Registered; nothing held yet (a hold may be in flight: [`HoldEvent::pending`]).
    Registered,
    /// Its amount is held on the sender's account.
    Held,
    /// Confirmed (or rejected) by its provider: the release is ordered, not yet certified.
    Releasing,
    /// Released to the payees (a partial release returned the rest to the sender).
    Completed,
    /// Rejected: what was held went back to the sender.
    Rejected,
    /// Its validity ran out before its confirmation: what was held went back to the sender.
    Expired,
}

impl EventStatus {
    pub fn is_final(self) -> bool {
        matches!(self, EventStatus::Completed | EventStatus::Rejected | EventStatus::Expired)
    }
}

/// The release the oracle decided on a confirmation: what the transaction must pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The nonce of the release transaction; the next one after the notary refused one.
    pub attempt: u64,
    /// Exactly the transaction's outputs, in order.
    pub outputs: Vec<Output>,
    /// To the payees.
    pub paid_tiyn: Amount,
    /// Back to the sender, standard.
    pub returned_tiyn: Amount,
    /// What the event becomes once the release is certified: `Completed`, or `Rejected` or
    /// `Expired` (everything back to the sender), or `Held` (an occurrence of an infinite
    /// event: what it does not pay stays held, the last output).
    pub ends_as: EventStatus,
}

/// A holding event as the oracle role keeps it (single: one hold, one release; infinite, a
/// `kind:<id>` row beside it in the meta table: holds and releases until nothing is held).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldEvent {
    pub id: String,
    /// The provider that registered it, and the only one that confirms it.
    pub provider: String,
    pub reference: String,
    /// The bank holding the sender's account: the only one that may hold or release.
    pub sender_bank: String,
    pub sender: Address,
    pub payees: Vec<Payee>,
    /// What the hold holds: the payees' shares together.
    pub amount_tiyn: Amount,
    pub valid_until_ms: u64,
    pub status: EventStatus,
    pub held_tiyn: Amount,
    pub released_tiyn: Amount,
    pub returned_tiyn: Amount,
    /// The transaction the oracle attested and whose certificate it waits for.
    pub pending: Option<TxId>,
    pub hold_tx: Option<TxId>,
    pub release_tx: Option<TxId>,
    pub release: Option<Release>,
}

impl HoldEvent {
    /// What its held tokens name.
    pub fn hash(&self) -> Hash32 {
        event_hash(&self.id)
    }
}

/// The oracle's decision on one transaction id: final, so that a copy of a request that
/// arrives late is answered as the first was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxDecision {
    /// Attested for the event's hold (or its release); the certificate has not come yet.
    Attested {
        event_id: String,
        release: bool,
    },
    /// Its certificate (number `seq`) is applied to the registry.
    Applied {
        event_id: String,
        release: bool,
        seq: u64,
    },
    Refused(Error),
    /// Its bank gave it up: the notary refused it.
    Abandoned,
    /// Attested as a programmed spend (`programmed.rs`) on `plan`, decided at `at_ms`; its
    /// subject waits for the certificate.
    Spent {
        spend: Box<Spend>,
        plan: PlannedSpend,
        at_ms: u64,
    },
    /// A programmed spend's certificate (number `seq`) is applied to the registry.
    SpentApplied {
        subject: String,
        seq: u64,
    },
}

impl Encode for Payee {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.bank);
        w.put(&self.address);
        w.put(&self.amount_tiyn);
    }
}

impl Decode for Payee {
    const ENCODED_BYTES_MIN: usize = 4 + 32 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Payee { bank: r.string("payee bank")?, address: r.get()?, amount_tiyn: r.get()? })
    }
}

impl Encode for EventStatus {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            EventStatus::Registered => 1,
            EventStatus::Held => 2,
            EventStatus::Releasing => 3,
            EventStatus::Completed => 4,
            EventStatus::Rejected => 5,
            EventStatus::Expired => 6,
        });
    }
}

impl Decode for EventStatus {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        match r.u8("event status")? {
            1 => Ok(EventStatus::Registered),
            2 => Ok(EventStatus::Held),
            3 => Ok(EventStatus::Releasing),
            4 => Ok(EventStatus::Completed),
            5 => Ok(EventStatus::Rejected),
            6 => Ok(EventStatus::Expired),
            tag => Err(DecodeError::UnknownTag { what: "event status", tag: u64::from(tag) }),
        }
    }
}

impl Encode for Release {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.attempt);
        w.seq(&self.outputs);
        w.put(&self.paid_tiyn);
        w.put(&self.returned_tiyn);
        w.put(&self.ends_as);
    }
}

impl Decode for Release {
    const ENCODED_BYTES_MIN: usize = 8 + 4 + 8 + 8 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Release {
            attempt: r.u64("attempt")?,
            outputs: r.seq("release outputs", TX_OUTPUTS_MAX)?,
            paid_tiyn: r.get()?,
            returned_tiyn: r.get()?,
            ends_as: r.get()?,
        })
    }
}

impl Encode for HoldEvent {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.str(&self.provider);
        w.str(&self.reference);
        w.str(&self.sender_bank);
        w.put(&self.sender);
        w.seq(&self.payees);
        w.put(&self.amount_tiyn);
        w.u64(self.valid_until_ms);
        w.put(&self.status);
        w.put(&self.held_tiyn);
        w.put(&self.released_tiyn);
        w.put(&self.returned_tiyn);
        w.put(&self.pending);
        w.put(&self.hold_tx);
        w.put(&self.release_tx);
        w.put(&self.release);
    }
}

impl Decode for HoldEvent {
    const ENCODED_BYTES_MIN: usize = 4 * 4 + 32 + 4 + 8 + 8 + 1 + 3 * 8 + 4;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(HoldEvent {
            id: r.string("event id")?,
            provider: r.string("provider")?,
            reference: r.string("reference")?,
            sender_bank: r.string("sender bank")?,
            sender: r.get()?,
            payees: r.seq("payees", PAYEES_MAX)?,
            amount_tiyn: r.get()?,
            valid_until_ms: r.u64("valid until")?,
            status: r.get()?,
            held_tiyn: r.get()?,
            released_tiyn: r.get()?,
            returned_tiyn: r.get()?,
            pending: r.get()?,
            hold_tx: r.get()?,
            release_tx: r.get()?,
            release: r.get()?,
        })
    }
}

impl Encode for TxDecision {
    fn encode(&self, w: &mut Writer) {
        match self {
            TxDecision::Attested { event_id, release } => {
                w.u8(1);
                w.str(event_id);
                w.bool(*release);
            }
            TxDecision::Applied { event_id, release, seq } => {
                w.u8(2);
                w.str(event_id);
                w.bool(*release);
                w.u64(*seq);
            }
            TxDecision::Refused(error) => {
                w.u8(3);
                w.put(error);
            }
            TxDecision::Abandoned => w.u8(4),
            TxDecision::Spent { spend, plan, at_ms } => {
                w.u8(5);
                w.put(spend.as_ref());
                w.seq(&plan.parts);
                w.seq(&plan.outputs);
                w.u64(*at_ms);
            }
            TxDecision::SpentApplied { subject, seq } => {
                w.u8(6);
                w.str(subject);
                w.u64(*seq);
            }
        }
    }
}

impl Decode for TxDecision {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        match r.u8("decision")? {
            1 => Ok(TxDecision::Attested { event_id: r.string("event id")?, release: r.bool("release")? }),
            2 => Ok(TxDecision::Applied {
                event_id: r.string("event id")?,
                release: r.bool("release")?,
                seq: r.u64("certificate")?,
            }),
            3 => Ok(TxDecision::Refused(r.get()?)),
            4 => Ok(TxDecision::Abandoned),
            5 => Ok(TxDecision::Spent {
                spend: Box::new(r.get()?),
                plan: PlannedSpend {
                    parts: r.seq("spend parts", SPEND_PARTS_MAX)?,
                    outputs: r.seq("spend outputs", TX_OUTPUTS_MAX)?,
                },
                at_ms: r.u64("decided at")?,
            }),
            6 => Ok(TxDecision::SpentApplied { subject: r.string("subject")?, seq: r.u64("certificate")? }),
            tag => Err(DecodeError::UnknownTag { what: "decision", tag: u64::from(tag) }),
        }
    }
}

/// A stored row that does not decode: corrupt storage, and the oracle refuses to open.
pub(crate) fn stored<T: Decode>(bytes: &[u8], what: &str) -> Result<T> {
    T::from_bytes(bytes).map_err(|e| Error::new(ErrorCode::StorageFailure, format!("oracle role: {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::SecretKey;

    fn tiyn(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    pub(crate) fn event() -> HoldEvent {
        let address = |n: u8| SecretKey::from_seed([n; 32]).address();
        HoldEvent {
            id: "EV0000001".into(),
            provider: "registry".into(),
            reference: "VIN 1".into(),
            sender_bank: "steppe".into(),
            sender: address(1),
            payees: vec![Payee { bank: "sapa".into(), address: address(2), amount_tiyn: tiyn(900) }],
            amount_tiyn: tiyn(900),
            valid_until_ms: 1_000,
            status: EventStatus::Releasing,
            held_tiyn: tiyn(900),
            released_tiyn: Amount::ZERO,
            returned_tiyn: Amount::ZERO,
            pending: Some(TxId(Hash32([5; 32]))),
            hold_tx: Some(TxId(Hash32([4; 32]))),
            release_tx: None,
            release: Some(Release {
                attempt: 2,
                outputs: vec![Output::standard(tiyn(900), address(2), address(9))],
                paid_tiyn: tiyn(900),
                returned_tiyn: Amount::ZERO,
                ends_as: EventStatus::Completed,
            }),
        }
    }

    #[test]
    fn rows_decode_to_what_was_written_and_a_cut_row_is_refused() {
        let event = event();
        let bytes = event.to_bytes();
        assert_eq!(HoldEvent::from_bytes(&bytes).unwrap(), event);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(HoldEvent::from_bytes(&bytes[..cut]).is_err(), "a row cut at {cut} decodes");
        }
        let decisions = [
            TxDecision::Attested { event_id: "EV1".into(), release: true },
            TxDecision::Applied { event_id: "EV1".into(), release: false, seq: 7 },
            TxDecision::Refused(Error::new(ErrorCode::Conflict, "held already")),
            TxDecision::Abandoned,
            TxDecision::Spent {
                spend: Box::new(dtenge_wire::Spend {
                    payer: dtenge_core::party::Party {
                        bank: "steppe".into(),
                        client_id: "100140000001".into(),
                        address: SecretKey::from_seed([1; 32]).address(),
                    },
                    kind: dtenge_wire::SpendKind::VatPayment { amount: tiyn(60_00) },
                }),
                plan: PlannedSpend {
                    parts: vec![(dtenge_core::token::Policy::Vat, tiyn(60_00))],
                    outputs: vec![Output::standard(
                        tiyn(60_00),
                        SecretKey::from_seed([2; 32]).address(),
                        SecretKey::from_seed([9; 32]).address(),
                    )],
                },
                at_ms: 17,
            },
            TxDecision::SpentApplied { subject: "MK0000001".into(), seq: 9 },
        ];
        for decision in decisions {
            assert_eq!(TxDecision::from_bytes(&decision.to_bytes()).unwrap(), decision);
        }
        assert_eq!(stored::<TxDecision>(&[9], "a decision").unwrap_err().code, ErrorCode::StorageFailure);
    }
}
