//! The oracle as a bank in a process of its own reaches it: questions over the transport
//! (`dtenge_wire::oracle`), answered by the role ([`crate::service::OracleService`]'s
//! `asked.rs`) about the events, markings, invoices and contracts the bank's clients are a
//! party to, and a marking registered for one of them. The bank's inbox hands the
//! answers here ([`OracleClient::take_reply`]).
//!
//! A question the oracle does not answer in time is asked again every [`ASK_AGAIN_AFTER_MS`]
//! and given up after [`ANSWER_WAIT_MS`]: `REQUEST_IN_PROGRESS`, ask again.

use crate::service::{EventImage, HoldPlan, NoticePage};
use crate::vat::VatPayment;
use crate::{Contract, ContractUse, Invoice, Marking, MarkingSpec, Move};
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::token::TxId;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_transport::{Questions, Transport};
use dtenge_wire::{Decode, Encode, Envelope, Message, OracleAsk, Question, RoleId};
use std::sync::Arc;
use std::time::Duration;

/// A question unanswered this long is sent again.
pub const ASK_AGAIN_AFTER_MS: u64 = 250;
/// A question unanswered this long is given up.
pub const ANSWER_WAIT_MS: u64 = 5_000;
/// Most questions waiting for an answer at once.
pub const QUESTIONS_MAX: usize = 1_024;

/// A bank's questions to the oracle.
pub struct OracleClient {
    questions: Questions<Result<Vec<u8>>>,
}

impl OracleClient {
    /// `first_request`: a number no earlier run of this process used (the time in
    /// nanoseconds at start serves).
    pub fn new(bank: &str, transport: Arc<dyn Transport>, first_request: u64) -> OracleClient {
        let again = Duration::from_millis(ASK_AGAIN_AFTER_MS);
        let from = RoleId::Bank(bank.to_string());
        OracleClient { questions: Questions::new(from, RoleId::Oracle, transport, first_request, QUESTIONS_MAX, again) }
    }

    /// Hand the oracle's answer to the question waiting for it. `false`: not an answer to a
    /// question (the bank's own message), for the bank to handle.
    pub fn take_reply(&self, envelope: &Envelope) -> bool {
        let Message::OracleAnswer(answer) = &envelope.message else { return false };
        self.questions.answer(&envelope.from, answer.request, answer.answer.clone());
        true
    }

    /// Whether this bank may hold `amount` (`None`: the event's) of `event_id` now: the
    /// event and the amount to hold, or the network's refusal.
    pub fn hold_plan(&self, event_id: &str, amount: Option<Amount>) -> Result<HoldPlan> {
        self.ask(Question::Hold { event_id: event_id.to_string(), amount })
    }

    /// The event (one of this bank's clients is a party to it), with the records of
    /// transaction `records_of`.
    pub fn event(&self, event_id: &str, records_of: Option<TxId>) -> Result<EventImage> {
        self.ask(Question::Event { event_id: event_id.to_string(), records_of })
    }

    /// The events this bank's client at `address` is a party to, newest first (without
    /// their records).
    pub fn holds(&self, address: Address) -> Result<Vec<EventImage>> {
        self.ask(Question::Holds { address })
    }

    /// This bank's notices, newest first.
    pub fn notices(&self, offset: u64, limit: u32) -> Result<NoticePage> {
        self.ask(Question::Notices { offset, limit })
    }

    /// The marking `id` as this bank may see it (without its moves), with the move made by
    /// this bank's transaction `moves_of` once the oracle recorded it.
    pub fn marking(&self, id: &str, moves_of: Option<TxId>) -> Result<(Marking, Option<Move>)> {
        self.ask(Question::Marking { id: id.to_string(), moves_of })
    }

    /// The e-invoice `id` (one of this bank's clients sells or buys).
    pub fn invoice(&self, id: &str) -> Result<Invoice> {
        self.ask(Question::Invoice { id: id.to_string() })
    }

    /// The contract `number` (without its uses), with the use made by this bank's transaction
    /// `uses_of` once the oracle recorded it.
    pub fn contract(&self, number: &str, uses_of: Option<TxId>) -> Result<(Contract, Option<ContractUse>)> {
        self.ask(Question::Contract { number: number.to_string(), uses_of })
    }

    /// The VAT payment this bank's transaction `tx_id` made, once the oracle recorded it.
    pub fn vat_payment(&self, tx_id: TxId) -> Result<VatPayment> {
        self.ask(Question::VatPayment { tx_id })
    }

    /// Register a marking one of this bank's clients initiates, once per `key` (the same key
    /// and `fingerprint` answer the marking registered under it).
    pub fn create_marking(&self, key: &str, fingerprint: Hash32, spec: &MarkingSpec) -> Result<Marking> {
        let spec = spec.to_bytes();
        // The oracle's decoder refuses larger terms with the whole frame: refused here.
        if spec.len() > dtenge_wire::oracle::MARKING_SPEC_BYTES_MAX {
            let bound = dtenge_wire::oracle::MARKING_SPEC_BYTES_MAX;
            return Err(Error::new(ErrorCode::LimitExceeded, format!("the marking's terms exceed {bound} bytes")));
        }
        self.ask(Question::CreateMarking { key: key.to_string(), fingerprint, spec })
    }

    fn ask<T: Decode>(&self, question: Question) -> Result<T> {
        let message = |request| Message::OracleAsk(OracleAsk { request, question: question.clone() });
        let wait = Duration::from_millis(ANSWER_WAIT_MS);
        let bytes = self.questions.ask(message, wait).ok_or_else(|| {
            Error::new(ErrorCode::RequestInProgress, "the oracle has not answered in time; ask again")
        })??;
        // The oracle's own encoding: one that does not decode is its fault, not the caller's.
        T::from_bytes(&bytes)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("the oracle's answer does not decode: {e}")))
    }
}
