//! What a bank in a process of its own asks the oracle (`dtenge_wire::oracle`), and how the
//! role answers, in its own encoding, which [`crate::client::OracleClient`] decodes:
//!
//! - about holding: only about events one of the asking bank's clients is a party to, the
//!   other banks' clients' ids blanked;
//! - about programmed money: a marking to a bank one of whose clients is its initiator or a
//!   recipient (other banks' clients' ids blanked: a recipient learns no other recipient's
//!   id), an invoice to the seller's or the buyer's bank, a contract to the sender's or the
//!   recipient's bank (both named whole: each party holds the invoice or the contract that
//!   names the other; the chain's initiator blanked when it banks elsewhere), a VAT payment to
//!   the payer's bank; the record of a spend (a move, a use) only to the bank that made it;
//! - a marking a client of the asking bank initiates, registered once per the bank's
//!   idempotency key.
//!
//! Anything else is `NOT_FOUND`, as if it did not exist: a bank cannot probe ids. The reads
//! decide and write nothing, and a marking is registered once per key: every question is safe
//! to repeat.

use super::{EventNotes, HoldEvent, HoldPlan, NoticePage, OracleService};
use crate::{Contract, ContractUse, Level, Marking, MarkingSpec, Move, Record};
use dtenge_core::crypto::Address;
use dtenge_core::party::Party;
use dtenge_core::token::TxId;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_wire::oracle::ANSWER_BYTES_MAX;
use dtenge_wire::{
    Decode, DecodeError, Encode, Envelope, Message, OracleAnswer, OracleAsk, Question, Reader, RoleId, Writer,
};

/// Most events one answer about a client's holds names (the newest).
pub const HOLDS_ANSWERED_MAX: usize = 1_000;
/// Most records of one event an answer carries.
pub const RECORDS_ANSWERED_MAX: usize = 1 << 16;

/// An event as the network shows it: its row, what the role keeps beside it, its kind, the
/// occurrences decided and (when asked for one event) its signed records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventImage {
    pub event: HoldEvent,
    pub notes: EventNotes,
    pub infinite: bool,
    pub occurrences: u32,
    pub records: Vec<Record>,
}

impl EventImage {
    /// Whether the client at `address` of `bank` is the event's sender or one of its payees.
    pub fn names(&self, bank: &str, address: &Address) -> bool {
        let e = &self.event;
        (e.sender_bank == bank && e.sender == *address)
            || e.payees.iter().any(|p| p.bank == bank && p.address == *address)
    }

    /// The image as `bank` may see it: the client ids of parties that bank elsewhere blanked
    /// (a bank learns no other bank's client's id from the oracle).
    pub fn seen_by(mut self, bank: &str) -> EventImage {
        if let Some(names) = &mut self.notes.names {
            if self.event.sender_bank != bank {
                names.sender.clear();
            }
            for (name, payee) in names.payees.iter_mut().zip(&self.event.payees) {
                if payee.bank != bank {
                    name.clear();
                }
            }
        }
        self
    }

    /// Whether a client of `bank` is a party to the event.
    pub fn concerns(&self, bank: &str) -> bool {
        self.event.sender_bank == bank || self.event.payees.iter().any(|p| p.bank == bank)
    }
}

impl OracleService {
    /// The event `event_id` as the network shows it, with its records when `with_records`.
    pub fn image(&self, event_id: &str, with_records: bool) -> Result<EventImage> {
        let not_found = || Error::new(ErrorCode::NotFound, format!("no oracle event {event_id}"));
        let event = self.event(event_id).ok_or_else(not_found)?;
        let records = if with_records { self.records(event_id)? } else { Vec::new() };
        Ok(EventImage {
            notes: self.notes(event_id).ok_or_else(not_found)?,
            infinite: self.is_infinite(event_id).ok_or_else(not_found)?,
            occurrences: self.occurrences(event_id),
            event,
            records,
        })
    }

    /// Answer a bank's question (its inbox hands it here): sent back on the transport.
    pub(super) fn on_ask(&self, bank: &str, ask: OracleAsk, now_ms: u64) {
        let answer = self.answer(bank, ask.question, now_ms).and_then(|bytes| {
            ensure!(bytes.len() <= ANSWER_BYTES_MAX, LimitExceeded, "the answer exceeds {ANSWER_BYTES_MAX} bytes");
            Ok(bytes)
        });
        let message = Message::OracleAnswer(OracleAnswer { request: ask.request, answer });
        // Lost: the bank asks again.
        let _ = self.transport.send(Envelope { from: RoleId::Oracle, to: RoleId::Bank(bank.to_string()), message });
    }

    fn answer(&self, bank: &str, question: Question, now_ms: u64) -> Result<Vec<u8>> {
        match question {
            Question::Hold { event_id, amount } => {
                self.party_image(bank, &event_id, None)?;
                Ok(self.plan_hold(bank, &event_id, amount, now_ms)?.to_bytes())
            }
            Question::Event { event_id, records_of } => Ok(self.party_image(bank, &event_id, records_of)?.to_bytes()),
            Question::Holds { address } => {
                let mut images = Vec::new();
                // Filtered on the rows first: an image is built only for the events it names.
                let events = self.events();
                let named = events.iter().rev().filter(|e| names(e, bank, &address));
                for event in named.take(HOLDS_ANSWERED_MAX) {
                    images.push(self.image(&event.id, false)?.seen_by(bank));
                }
                Ok(images.to_bytes())
            }
            Question::Notices { offset, limit } => {
                let offset = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(self.notifications(bank, offset, limit as usize)?.to_bytes())
            }
            Question::Marking { id, moves_of } => Ok(self.party_marking(bank, &id, moves_of)?.to_bytes()),
            Question::Invoice { id } => {
                let invoice = self.invoice(&id).ok().filter(|i| i.seller.bank == bank || i.buyer.bank == bank);
                Ok(invoice.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no invoice {id}")))?.to_bytes())
            }
            Question::Contract { number, uses_of } => Ok(self.party_contract(bank, &number, uses_of)?.to_bytes()),
            Question::VatPayment { tx_id } => {
                let paid = self.vat_payment(tx_id).filter(|p| p.payer.bank == bank);
                let not_found = || Error::new(ErrorCode::NotFound, format!("no VAT payment by transaction {tx_id}"));
                Ok(paid.ok_or_else(not_found)?.to_bytes())
            }
            Question::CreateMarking { key, fingerprint, spec } => {
                let spec =
                    MarkingSpec::from_bytes(&spec).map_err(|e| Error::malformed(format!("marking terms: {e}")))?;
                ensure!(
                    spec.initiator.bank == bank,
                    Forbidden,
                    "a bank registers markings its own clients initiate, not '{}''s",
                    spec.initiator.bank
                );
                Ok(self.create_marking_keyed(spec, Some((&key, fingerprint)), now_ms)?.to_bytes())
            }
        }
    }

    /// The marking (without its moves), for a bank one of whose clients is a party to it, as
    /// that bank may see it, with the move made by `moves_of` when that is the bank's spend.
    fn party_marking(&self, bank: &str, id: &str, moves_of: Option<TxId>) -> Result<(Marking, Option<Move>)> {
        let found = self.marking_and_move(id, moves_of).ok().filter(|(m, _)| marking_concerns(m, bank));
        let (marking, moved) = found.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no marking {id}")))?;
        let moved = moved.filter(|m| m.body.from.bank == bank);
        Ok((marking_seen_by(marking, bank), moved))
    }

    /// The contract (without its uses), for the sender's or the recipient's bank, with the use
    /// made by `uses_of` when that bank made it.
    fn party_contract(
        &self,
        bank: &str,
        number: &str,
        uses_of: Option<TxId>,
    ) -> Result<(Contract, Option<ContractUse>)> {
        let found = self.contract_and_use(number, uses_of).ok();
        let found = found.filter(|(c, _)| c.sender.bank == bank || c.recipient.bank == bank);
        let (mut contract, used) =
            found.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no contract {number}")))?;
        let used = used.filter(|u| match u.body.kind {
            crate::UseKind::Transfer => contract.sender.bank == bank,
            crate::UseKind::Withdrawal => contract.recipient.bank == bank,
        });
        if contract.initiator.bank != bank {
            contract.initiator.client_id.clear();
        }
        Ok((contract, used))
    }

    /// The event, for a bank one of whose clients is a party to it, with the records of
    /// `records_of`; for any other bank there is no such event.
    fn party_image(&self, bank: &str, event_id: &str, records_of: Option<TxId>) -> Result<EventImage> {
        let mut image = self.image(event_id, records_of.is_some())?;
        ensure!(image.concerns(bank), NotFound, "no oracle event {event_id}");
        image.records.retain(|r| records_of.is_some() && r.body.tx_id == records_of);
        Ok(image.seen_by(bank))
    }
}

/// Whether a client of `bank` initiates `marking` or receives at one of its levels.
pub fn marking_concerns(marking: &Marking, bank: &str) -> bool {
    marking.initiator.bank == bank || marking.levels.iter().flat_map(|l| &l.recipients).any(|p| p.bank == bank)
}

/// `marking` as `bank` may see it: the client ids of parties that bank elsewhere blanked.
pub fn marking_seen_by(mut marking: Marking, bank: &str) -> Marking {
    let blank = |party: &mut Party| {
        if party.bank != bank {
            party.client_id.clear();
        }
    };
    blank(&mut marking.initiator);
    marking.levels.iter_mut().flat_map(|l| &mut l.recipients).for_each(blank);
    marking
}

/// Whether the client at `address` of `bank` is `event`'s sender or one of its payees.
fn names(e: &HoldEvent, bank: &str, address: &Address) -> bool {
    (e.sender_bank == bank && e.sender == *address) || e.payees.iter().any(|p| p.bank == bank && p.address == *address)
}

impl Encode for EventImage {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.event);
        // Length-prefixed: notes may grow a field at their end (`EventNotes`'s decoding).
        w.bytes(&self.notes.to_bytes());
        w.bool(self.infinite);
        w.u32(self.occurrences);
        w.seq(&self.records);
    }
}

impl Decode for EventImage {
    const ENCODED_BYTES_MIN: usize = HoldEvent::ENCODED_BYTES_MIN + 4 + 1 + 4 + 4;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(EventImage {
            event: r.get()?,
            notes: EventNotes::from_bytes(r.bytes("event notes")?)?,
            infinite: r.bool("infinite")?,
            occurrences: r.u32("occurrences")?,
            records: r.seq("records", RECORDS_ANSWERED_MAX)?,
        })
    }
}

impl Encode for HoldPlan {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.event);
        w.put(&self.amount);
        w.bool(self.infinite);
    }
}

impl Decode for HoldPlan {
    const ENCODED_BYTES_MIN: usize = HoldEvent::ENCODED_BYTES_MIN + 8 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(HoldPlan { event: r.get()?, amount: r.get()?, infinite: r.bool("infinite")? })
    }
}

impl Encode for NoticePage {
    fn encode(&self, w: &mut Writer) {
        w.seq(&self.notices);
        w.u64(self.total);
    }
}

impl Decode for NoticePage {
    const ENCODED_BYTES_MIN: usize = 4 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(NoticePage { notices: r.seq("notices", super::NOTICES_PAGE_MAX)?, total: r.u64("notices total")? })
    }
}

/// A marking's terms as its initiator's bank asks for them ([`Question::CreateMarking`]).
impl Encode for MarkingSpec {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.initiator);
        w.str(&self.reference);
        w.seq(&self.levels);
    }
}

impl Decode for MarkingSpec {
    const ENCODED_BYTES_MIN: usize = 40 + 4 + 4;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(MarkingSpec {
            initiator: r.get()?,
            reference: r.string("marking reference")?,
            levels: r.seq::<Level>("marking levels", crate::marking::LEVELS_MAX)?,
        })
    }
}
