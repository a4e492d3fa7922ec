//! What a bank in a process of its own asks the oracle about holding (`dtenge_wire::oracle`),
//! and how the role answers: only about events one of the asking bank's clients is a party to
//! (need-to-know: the other banks' clients' ids blanked), in the role's own encoding, which [`crate::client::OracleClient`] decodes.
//! Nothing asked is decided or written: every question is safe to repeat.

use super::{EventNotes, HoldEvent, HoldPlan, NoticePage, OracleService};
use crate::Record;
use dtenge_core::crypto::Address;
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
        }
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
