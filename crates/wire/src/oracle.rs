//! The oracle asked across processes (kinds 22, 23).
//!
//! In one process the platform reads the oracle's events in memory; a bank in a process of
//! its own asks the oracle instead, on its connection to it, as it asks the directory:
//!
//! - [`OracleAsk`] (kind 22): a [`Question`] about holding: may this bank hold an event now
//!   (and what does it hold, for which payee), an event as the network shows it (with the
//!   records of one of its transactions), the events
//!   one of this bank's clients is a party to, or this bank's notices.
//! - [`OracleAnswer`] (kind 23): the oracle's answer in its own encoding (the oracle crate
//!   decodes it: `dtenge_oracle::client`), or why it refuses.
//!
//! The oracle answers a bank about the events its clients are a party to and about nothing
//! else (need-to-know): another bank's event is `NOT_FOUND` to it. Answered by the request's
//! number, which the asking bank draws; a question lost or unanswered is asked again, and
//! each is safe to repeat (nothing is decided or written).

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::message::bounded_string;
use dtenge_core::crypto::Address;
use dtenge_core::token::TxId;
use dtenge_core::Amount;

/// Most bytes of one answer (a page of notices is the largest).
pub const ANSWER_BYTES_MAX: usize = 8 << 20;

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
    use dtenge_core::crypto::Hash32;

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
