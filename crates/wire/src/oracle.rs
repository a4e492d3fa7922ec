//! The oracle asked across processes (kinds 22, 23).
//!
//! In one process the platform reads the oracle's events in memory; a bank in a process of
//! its own asks the oracle instead, on its connection to it, as it asks the directory:
//!
//! - [`OracleAsk`] (kind 22): a [`Question`] about holding: may this bank hold an event now
//!   (and what does it hold, for which payee), an event as the network shows it (with the
//!   records of one of its transactions), the events
//!   one of this bank's clients is a party to, or this bank's notices; about programmed
//!   money: a marking, an invoice, a contract or a VAT payment as the oracle recorded it (with
//!   the record of one of the bank's spends); and one write, a marking its client initiates.
//! - [`OracleAnswer`] (kind 23): the oracle's answer in its own encoding (the oracle crate
//!   decodes it: `dtenge_oracle::client`), or why it refuses.
//!
//! The oracle answers a bank about the events its clients are a party to and about nothing
//! else (need-to-know): another bank's event is `NOT_FOUND` to it, and so is a marking, an
//! invoice or a contract none of its clients is a party to. Answered by the request's number,
//! which the asking bank draws; a question lost or unanswered is asked again, and each is safe
//! to repeat: the reads decide and write nothing, and a marking is created once per the
//! bank's idempotency key (the oracle keeps the key with it).

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::message::bounded_string;
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::token::TxId;
use dtenge_core::Amount;

/// Most bytes of one answer (a page of notices is the largest).
pub const ANSWER_BYTES_MAX: usize = 8 << 20;
/// Most bytes of a marking's terms in [`Question::CreateMarking`] (in the oracle's encoding).
pub const MARKING_SPEC_BYTES_MAX: usize = 64 << 10;
/// Most bytes of an idempotency key (as the platform's API takes them).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// What a bank asks the oracle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// May the asking bank hold `amount` (`None`: the event's) of `event_id` now? The answer
    /// is the event and the amount, or the network's refusal (`EVENT_EXPIRED`, `CONFLICT`).
    Hold { event_id: String, amount: Option<Amount> },
    /// The event, for a bank one of whose clients is a party to it, with the records of
    /// transaction `records_of` (none without one: an event's history may be long).
    Event { event_id: String, records_of: Option<TxId> },
    /// The events the asking bank's client at `address` is a party to, newest first.
    Holds { address: Address },
    /// The asking bank's notices, newest first.
    Notices { offset: u64, limit: u32 },
    /// The marking `id` without its moves, for a bank one of whose clients is a party to it,
    /// with the move `moves_of` made when that transaction is the asking bank's spend.
    Marking { id: String, moves_of: Option<TxId> },
    /// The e-invoice `id`, for the seller's or the buyer's bank.
    Invoice { id: String },
    /// The contract `number` without its uses, for the sender's or the recipient's bank, with
    /// the use `uses_of` made by that transaction.
    Contract { number: String, uses_of: Option<TxId> },
    /// The VAT payment made by transaction `tx_id`, for the payer's bank.
    VatPayment { tx_id: TxId },
    /// Register a marking a client of the asking bank initiates: `spec` in the oracle's
    /// encoding; once per `key` of the asking bank (the same key and `fingerprint` answer the
    /// marking registered, another request under the key is `IDEMPOTENCY_KEY_REUSED`).
    CreateMarking { key: String, fingerprint: Hash32, spec: Vec<u8> },
}

/// A bank's question to the oracle, numbered by the bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleAsk {
    pub request: u64,
    pub question: Question,
}

/// The oracle's answer: its encoding of what was asked, or why it refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleAnswer {
    pub request: u64,
    pub answer: Result<Vec<u8>, dtenge_core::Error>,
}

impl Encode for Question {
    fn encode(&self, w: &mut Writer) {
        match self {
            Question::Hold { event_id, amount } => {
                w.u8(1);
                w.str(event_id);
                w.put(amount);
            }
            Question::Event { event_id, records_of } => {
                w.u8(2);
                w.str(event_id);
                w.put(records_of);
            }
            Question::Holds { address } => {
                w.u8(3);
                w.put(address);
            }
            Question::Notices { offset, limit } => {
                w.u8(4);
                w.u64(*offset);
                w.u32(*limit);
            }
            Question::Marking { id, moves_of } => {
                w.u8(5);
                w.str(id);
                w.put(moves_of);
            }
            Question::Invoice { id } => {
                w.u8(6);
                w.str(id);
            }
            Question::Contract { number, uses_of } => {
                w.u8(7);
                w.str(number);
                w.put(uses_of);
            }
            Question::VatPayment { tx_id } => {
                w.u8(8);
                w.put(tx_id);
            }
            Question::CreateMarking { key, fingerprint, spec } => {
                w.u8(9);
                w.str(key);
                w.put(fingerprint);
                w.bytes(spec);
            }
        }
    }
}

impl Decode for Question {
    const ENCODED_BYTES_MIN: usize = 1 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("question")? {
            1 => Ok(Question::Hold { event_id: bounded_string(r, "event id")?, amount: r.get()? }),
            2 => Ok(Question::Event { event_id: bounded_string(r, "event id")?, records_of: r.get()? }),
            3 => Ok(Question::Holds { address: r.get()? }),
            4 => Ok(Question::Notices { offset: r.u64("offset")?, limit: r.u32("limit")? }),
            5 => Ok(Question::Marking { id: bounded_string(r, "marking id")?, moves_of: r.get()? }),
            6 => Ok(Question::Invoice { id: bounded_string(r, "invoice id")? }),
            7 => Ok(Question::Contract { number: bounded_string(r, "contract number")?, uses_of: r.get()? }),
            8 => Ok(Question::VatPayment { tx_id: r.get()? }),
            9 => {
                let key = r.string("idempotency key")?;
                if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
                    let reason = format!("an idempotency key has 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes");
                    return Err(DecodeError::Invalid { what: "idempotency key", reason });
                }
                let fingerprint = r.get()?;
                let spec = r.bytes("marking terms")?;
                if spec.len() > MARKING_SPEC_BYTES_MAX {
                    let reason = format!("{} bytes exceed {MARKING_SPEC_BYTES_MAX}", spec.len());
                    return Err(DecodeError::Invalid { what: "marking terms", reason });
                }
                Ok(Question::CreateMarking { key, fingerprint, spec: spec.to_vec() })
            }
            tag => Err(DecodeError::UnknownTag { what: "question", tag: u64::from(tag) }),
        }
    }
}

impl Encode for OracleAsk {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.request);
        w.put(&self.question);
    }
}

impl Decode for OracleAsk {
    const ENCODED_BYTES_MIN: usize = 8 + Question::ENCODED_BYTES_MIN;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OracleAsk { request: r.u64("request")?, question: r.get()? })
    }
}

impl Encode for OracleAnswer {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.request);
        match &self.answer {
            Ok(bytes) => {
                w.u8(1);
                w.bytes(bytes);
            }
            Err(refused) => {
                w.u8(2);
                w.put(refused);
            }
        }
    }
}

impl Decode for OracleAnswer {
    const ENCODED_BYTES_MIN: usize = 8 + 1 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let request = r.u64("request")?;
        let answer = match r.u8("answer")? {
            1 => {
                let bytes = r.bytes("answer")?;
                if bytes.len() > ANSWER_BYTES_MAX {
                    let reason = format!("{} bytes exceed {ANSWER_BYTES_MAX}", bytes.len());
                    return Err(DecodeError::Invalid { what: "answer", reason });
                }
                Ok(bytes.to_vec())
            }
            2 => Err(r.get()?),
            tag => return Err(DecodeError::UnknownTag { what: "answer", tag: u64::from(tag) }),
        };
        Ok(OracleAnswer { request, answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message, RoleId};

    fn round_trip(message: Message) {
        let envelope = Envelope { from: RoleId::Bank("steppe".into()), to: RoleId::Oracle, message };
        let bytes = envelope.to_bytes();
        let mut r = Reader::new(&bytes);
        let decoded = Envelope::decode(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(decoded, envelope);
        // Every proper prefix is refused, never misread.
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            assert!(Envelope::decode(&mut r).and_then(|_| r.finish()).is_err(), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn the_oracles_questions_and_answers_round_trip() {
        let questions = [
            Question::Hold { event_id: "EV-1".into(), amount: None },
            Question::Hold { event_id: "EV-1".into(), amount: Some(Amount::from_tiyn(500).unwrap()) },
            Question::Event { event_id: "EV-2".into(), records_of: None },
            Question::Event { event_id: "EV-2".into(), records_of: Some(TxId(Hash32([3; 32]))) },
            Question::Holds { address: Address(Hash32([7; 32])) },
            Question::Notices { offset: 3, limit: 50 },
            Question::Marking { id: "MK0000001".into(), moves_of: None },
            Question::Marking { id: "MK0000001".into(), moves_of: Some(TxId(Hash32([4; 32]))) },
            Question::Invoice { id: "INV-1".into() },
            Question::Contract { number: "C-1".into(), uses_of: None },
            Question::Contract { number: "C-1".into(), uses_of: Some(TxId(Hash32([5; 32]))) },
            Question::VatPayment { tx_id: TxId(Hash32([6; 32])) },
            Question::CreateMarking { key: "k-1".into(), fingerprint: Hash32([8; 32]), spec: vec![1, 2, 3] },
        ];
        for question in questions {
            round_trip(Message::OracleAsk(OracleAsk { request: 9, question }));
        }
        round_trip(Message::OracleAnswer(OracleAnswer { request: 9, answer: Ok(vec![1, 2, 3]) }));
        round_trip(Message::OracleAnswer(OracleAnswer { request: 9, answer: Ok(Vec::new()) }));
        let refused = dtenge_core::Error::new(dtenge_core::ErrorCode::NotFound, "no oracle event EV-3");
        round_trip(Message::OracleAnswer(OracleAnswer { request: 10, answer: Err(refused) }));
    }
}
