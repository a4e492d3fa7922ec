//! Digital vouchers (SPEC sub-scenario 6): a technology integrator's event (a pupil taps a
//! transit card on a validator) makes a school pay a canteen the programme's amount.
//!
//! Programmes live at the payer's bank (`bank_voucher_programs`), which pays their events
//! through its batched pipeline. An event is paid once per (programme, event id), whoever
//! retries: the payment's idempotency key is the event's own (`0x01 voucher:` and a hash
//! of the programme and the event), claimed when the payment is admitted, written with the outbox and answered with
//! the certified payment in the bank's idempotency table, so a retry while it is in flight
//! waits for the same answer and one after a crash or a restart gets the first receipt. The
//! key names the programme and the event by a hash of both, so it is bounded like every key.

use crate::cards::CardLeg;
use crate::state::Inner;
use crate::submit::Admitted;
use crate::{Answer, BankService, IdemKey, Reply, Request, Who};
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::ClientKind;
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{AccountKind, Decode, DecodeError, Encode, Reader, Writer};
use std::collections::BTreeMap;

/// Voucher programmes by id; `0x01` + an idempotency key -> (fingerprint, programme id).
pub const PROGRAMS_TABLE: Table = Table("bank_voucher_programs");
/// Every event paid, by programme and event id (`<programme> 0 <event>`): its payment.
pub const EVENTS_TABLE: Table = Table("bank_voucher_events");
/// Longest event id or integrator id.
pub const EVENT_ID_LEN_MAX: usize = 128;
/// Most programmes one bank runs.
pub const PROGRAMS_MAX: usize = 100_000;
const IDEM_PREFIX: u8 = 1;

/// Register a programme: the payer (a school, a legal entity or an agency of this bank) pays
/// the payee (a canteen, a legal entity at `payee_bank`) on each of the integrator's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherProgramRequest {
    pub integrator: String,
    pub payer_id: String,
    pub payee_bank: String,
    pub payee_id: String,
    pub amount_per_event: Amount,
}

/// A registered programme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherProgram {
    /// `<bank>-V<number>`: unique across banks.
    pub id: String,
    pub integrator: String,
    pub payer_bank: String,
    pub payer_client: String,
    pub payer_address: Address,
    pub payee_bank: String,
    pub payee_client: String,
    pub payee_address: Address,
    pub amount_per_event: Amount,
    pub created_at_ms: u64,
}

/// An integrator's event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherEvent {
    pub program_id: String,
    /// Must be the programme's integrator.
    pub integrator: String,
    /// Unique per event: the same event twice pays once.
    pub event_id: String,
    /// The pupil's card or token, recorded in the reference.
    pub card: Option<String>,
}

impl Encode for VoucherProgram {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.str(&self.integrator);
        w.str(&self.payer_bank);
        w.str(&self.payer_client);
        w.put(&self.payer_address);
        w.str(&self.payee_bank);
        w.str(&self.payee_client);
        w.put(&self.payee_address);
        w.put(&self.amount_per_event);
        w.u64(self.created_at_ms);
    }
}

impl Decode for VoucherProgram {
    const ENCODED_BYTES_MIN: usize = 6 * 4 + 2 * 32 + 8 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(VoucherProgram {
            id: r.string("programme id")?,
            integrator: r.string("integrator")?,
            payer_bank: r.string("payer bank")?,
            payer_client: r.string("payer")?,
            payer_address: r.get()?,
            payee_bank: r.string("payee bank")?,
            payee_client: r.string("payee")?,
            payee_address: r.get()?,
            amount_per_event: r.get()?,
            created_at_ms: r.u64("created at")?,
        })
    }
}

/// An event paid: written in the commit that applies its certified payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub program_id: String,
    pub event_id: String,
    pub tx_id: dtenge_core::token::TxId,
    /// The notary's certificate that committed it.
    pub seq: u64,
    pub amount: Amount,
    pub at_ms: u64,
}

impl EventRecord {
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut key = self.program_id.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(self.event_id.as_bytes());
        key
    }
}

impl Encode for EventRecord {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.program_id);
        w.str(&self.event_id);
        w.put(&self.tx_id);
        w.u64(self.seq);
        w.put(&self.amount);
        w.u64(self.at_ms);
    }
}

impl Decode for EventRecord {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 32 + 8 + 8 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(EventRecord {
            program_id: r.string("programme id")?,
            event_id: r.string("event id")?,
            tx_id: r.get()?,
            seq: r.u64("certificate")?,
            amount: r.get()?,
            at_ms: r.u64("paid at")?,
        })
    }
}

/// The programmes this bank runs, in memory (few, read on every event).
#[derive(Default)]
pub(crate) struct Programs(BTreeMap<String, VoucherProgram>);

impl Programs {
    /// A programme's amount per event (programmes are never removed).
    pub(crate) fn amount_of(&self, program_id: &str) -> Amount {
        self.0.get(program_id).map(|p| p.amount_per_event).expect("a paid event's programme is kept here")
    }

    pub(crate) fn load(store: &Store) -> Result<Programs> {
        let mut programs = BTreeMap::new();
        for (key, value) in store.scan(PROGRAMS_TABLE)? {
            if key.first() == Some(&IDEM_PREFIX) {
                continue;
            }
            let program = VoucherProgram::from_bytes(&value)
                .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a voucher programme: {e}")))?;
            assert_eq!(key, program.id.as_bytes(), "a programme is stored under its id");
            programs.insert(program.id.clone(), program);
        }
        Ok(Programs(programs))
    }
}

/// The event's own idempotency key: `0x01 voucher:` and the hex of a hash of the programme
/// (length-prefixed, so that no two pairs meet) and the event, within the 128 bytes of any key.
fn event_idem(program_id: &str, event_id: &str) -> IdemKey {
    let program_len = (program_id.len() as u32).to_le_bytes();
    let parts: [&[u8]; 3] = [&program_len, program_id.as_bytes(), event_id.as_bytes()];
    let event = dtenge_core::crypto::hash_parts(b"dtenge/voucher-event", &parts);
    let key = format!("{}voucher:{event}", crate::cards::OWN_KEY_START);
    debug_assert!(key.len() <= 128, "an event's key is a key like any other");
    IdemKey { key, fingerprint: event }
}

fn bounded(text: &str, what: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() || text.len() > EVENT_ID_LEN_MAX || text.chars().any(char::is_control) {
        return Err(Error::malformed(format!("{what} has 1 to {EVENT_ID_LEN_MAX} printable characters")));
    }
    Ok(text.to_string())
}

impl BankService {
    /// Register a voucher programme paid by a client of this bank (durable when answered).
    /// With `idem`, the same request again answers the same programme.
    pub fn create_voucher_program(
        &self,
        request: &VoucherProgramRequest,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> Result<VoucherProgram> {
        let integrator = bounded(&request.integrator, "an integrator id")?;
        crate::cards::check_key(idem.as_ref())?;
        if request.amount_per_event.is_zero() {
            return Err(Error::malformed("the amount per event must be positive"));
        }
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if let Some(program) = self.program_by_key(&inner, idem)? {
                return Ok(program);
            }
        }
        if inner.cards.programs.0.len() >= PROGRAMS_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many voucher programmes at this bank"));
        }
        let payer = inner.node.account(&request.payer_id)?.clone();
        let payee = self.find(Who::Client(&request.payee_id), Some(&request.payee_bank))?;
        let payer_ok = matches!(payer.kind, ClientKind::LegalEntity | ClientKind::GovernmentAgency);
        if !payer_ok || payee.kind != AccountKind::LegalEntity {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "voucher programmes are between legal entities (school and canteen)",
            ));
        }
        if payer.address == payee.address {
            return Err(Error::malformed("payer and payee are the same account"));
        }
        let program = VoucherProgram {
            id: format!("{}-V{:06}", self.id, inner.cards.programs.0.len() + 1),
            integrator,
            payer_bank: self.id.clone(),
            payer_client: payer.client_id,
            payer_address: payer.address,
            payee_bank: payee.bank,
            payee_client: request.payee_id.clone(),
            payee_address: payee.address,
            amount_per_event: request.amount_per_event,
            created_at_ms: now_ms,
        };
        let mut batch = WriteBatch::new();
        batch.put(PROGRAMS_TABLE, program.id.as_bytes().to_vec(), program.to_bytes());
        if let Some(idem) = &idem {
            let mut key = vec![IDEM_PREFIX];
            key.extend_from_slice(idem.key.as_bytes());
            batch.put(PROGRAMS_TABLE, key, (idem.fingerprint, program.id.clone()).to_bytes());
        }
        self.commit(&mut inner, batch)?;
        inner.cards.programs.0.insert(program.id.clone(), program.clone());
        Ok(program)
    }

    fn program_by_key(&self, inner: &Inner, idem: &IdemKey) -> Result<Option<VoucherProgram>> {
        let mut key = vec![IDEM_PREFIX];
        key.extend_from_slice(idem.key.as_bytes());
        let Some(bytes) = self.store.get(PROGRAMS_TABLE, &key)? else { return Ok(None) };
        let (fingerprint, id) = <(Hash32, String)>::from_bytes(&bytes)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a programme's key: {e}")))?;
        if fingerprint != idem.fingerprint {
            return Err(Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            ));
        }
        Ok(Some(inner.cards.programs.0.get(&id).cloned().expect("a programme's key names a programme kept here")))
    }

    /// The events of a programme this bank paid, in order of their ids.
    pub fn voucher_events(&self, program_id: &str) -> Result<Vec<EventRecord>> {
        let mut prefix = program_id.as_bytes().to_vec();
        prefix.push(0);
        let rows = self.store.scan_prefix(EVENTS_TABLE, &prefix)?;
        rows.into_iter()
            .map(|(_, value)| {
                EventRecord::from_bytes(&value)
                    .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a voucher event: {e}")))
            })
            .collect()
    }

    /// The programmes this bank runs.
    pub fn voucher_programs(&self) -> Vec<VoucherProgram> {
        self.inner.lock().cards.programs.0.values().cloned().collect()
    }

    pub fn voucher_program(&self, program_id: &str) -> Option<VoucherProgram> {
        self.inner.lock().cards.programs.0.get(program_id).cloned()
    }

    /// An integrator's event: pay the programme's amount once per event id. The answer is the
    /// payment's (the first one's, for an event paid before).
    pub fn voucher_event(&self, event: VoucherEvent) -> Answer {
        let (answer, receiver) = dtenge_sync::oneshot::channel();
        let checked = bounded(&event.event_id, "an event id").and_then(|event_id| {
            let card = event.card.as_deref().map(|c| bounded(c, "a card")).transpose()?;
            Ok(VoucherEvent { event_id, card, ..event })
        });
        match checked {
            Err(e) => {
                let _ = answer.send(Err(e));
            }
            Ok(event) => {
                let idem = Some(event_idem(&event.program_id, &event.event_id));
                self.submit_to(Request::Voucher(event), None, idem, Reply::Own(answer));
            }
        }
        receiver
    }

    /// An event's payment, built and reserved (the event's key was checked before: a paid
    /// event never gets here).
    pub(crate) fn admit_voucher(
        &self,
        inner: &mut Inner,
        event: VoucherEvent,
        idem: Option<IdemKey>,
        answer: Reply,
    ) -> Result<Admitted> {
        if idem.as_ref() != Some(&event_idem(&event.program_id, &event.event_id)) {
            return Err(Error::malformed("a voucher event is taken through voucher_event"));
        }
        let program = inner.cards.programs.0.get(&event.program_id).cloned().ok_or_else(|| {
            Error::new(ErrorCode::NotFound, format!("no voucher programme {} at '{}'", event.program_id, self.id))
        })?;
        if event.integrator != program.integrator {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!("integrator '{}' does not run programme {}", event.integrator, program.id),
            ));
        }
        let payee_banks = self.payee_banks(inner, std::iter::once(&program.payee_address))?;
        let issuer = self.anchors.read().issuer;
        let payees = [(program.payee_address, program.amount_per_event)];
        let tx = inner.node.prepare_payment(&program.payer_client, &payees, issuer, inner.cards.next_nonce())?;
        let ids = TxIds::of(&tx).inspect_err(|_| inner.node.release(&tx))?;
        let reference = match &event.card {
            Some(card) => format!("event {} card {card}", event.event_id),
            None => format!("event {}", event.event_id),
        };
        let leg = CardLeg::Voucher { program_id: program.id, event_id: event.event_id, reference };
        Ok(Admitted { tx, ids, idem, answer, payee_banks, fiat: None, card: Some(leg), label: None, owner_key: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_programme_decodes_to_what_was_written_and_event_keys_differ_by_programme_and_event() {
        let program = VoucherProgram {
            id: "steppe-V000001".into(),
            integrator: "onay".into(),
            payer_bank: "steppe".into(),
            payer_client: "100140000001".into(),
            payer_address: Address(Hash32([1; 32])),
            payee_bank: "sapa".into(),
            payee_client: "100140000002".into(),
            payee_address: Address(Hash32([2; 32])),
            amount_per_event: Amount::from_tiyn(120_000).unwrap(),
            created_at_ms: 5,
        };
        assert_eq!(VoucherProgram::from_bytes(&program.to_bytes()).unwrap(), program);
        assert_ne!(event_idem("V1", "tap-1"), event_idem("V1", "tap-2"));
        assert_ne!(event_idem("V1", "tap-1"), event_idem("V2", "tap-1"));
        assert_ne!(event_idem("V1", "1tap"), event_idem("V11", "tap"), "the programme's length is hashed");
        assert!(event_idem(&"V".repeat(64), &"e".repeat(EVENT_ID_LEN_MAX)).key.len() <= 128);
        assert!(bounded(" ", "an event id").is_err());
        assert!(bounded("tap\u{0}1", "an event id").is_err(), "no separator inside an event's key");
        assert_eq!(bounded(" tap-1 ", "an event id").unwrap(), "tap-1");
    }
}
