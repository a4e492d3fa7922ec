//! The directory as a bank in its own process reaches it: over the transport.
//!
//! In one process the banks read the directory's listings in memory (the assembly's
//! `SharedDirectory`); a bank in a process of its own asks the directory role with
//! [`Lookup`]s and claims its migrated clients with [`ClaimMany`] (`dtenge_wire::directory`),
//! and the process's inbox hands the answers here ([`DirectoryClient::take_reply`]).
//!
//! Where an address is does not change once it is listed (an address is claimed once, by one
//! bank, for good), so what the directory answered for an address is kept
//! ([`ADDRESSES_KEPT_MAX`]) and a payment to a payee paid before asks nothing. A phone or a
//! client is asked every time: a client may open an account at another bank, and the
//! directory's answer for "the first listed" may change.
//!
//! A question the directory does not answer in time is asked again every
//! [`ASK_AGAIN_AFTER_MS`] and given up after [`ANSWER_WAIT_MS`]: the payment is refused
//! `REQUEST_IN_PROGRESS` and may be sent again (it is not an unknown payee).

use crate::{Directory, Found, Who};
use dtenge_core::crypto::Address;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_transport::{Questions, Transport};
use dtenge_wire::{Claim, ClaimMany, Envelope, Listed, Lookup, Message, RoleId, Whom};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most addresses whose bank is kept; past it the memory is emptied and filled again.
pub const ADDRESSES_KEPT_MAX: usize = 1 << 20;
/// A question unanswered this long is sent again (lost on the way, or the directory restarted).
pub const ASK_AGAIN_AFTER_MS: u64 = 250;
/// A question unanswered this long is given up.
pub const ANSWER_WAIT_MS: u64 = 5_000;
/// A migration's claims: the directory writes them in one commit, which takes longer.
pub const CLAIMS_WAIT_MS: u64 = 60_000;
/// Most questions waiting for an answer at once.
pub const QUESTIONS_MAX: usize = 4_096;

/// Most questions [`Directory::learn_banks`] sends before it waits for their answers (a
/// quarter of [`QUESTIONS_MAX`], so that payments asking alongside still find room).
pub const LOOKUPS_AT_ONCE_MAX: usize = QUESTIONS_MAX / 4;

/// The question "where is the account of `whom`?", numbered when sent.
fn lookup_of(whom: Whom) -> impl Fn(u64) -> Message {
    move |request| Message::Lookup(Lookup { request, whom: whom.clone(), bank: None })
}

/// What the directory answered.
enum Answer {
    Listed(Option<Listed>),
    Claimed(Option<Error>),
}

/// A role's questions to the directory across processes: a bank's, or the oracle's (which
/// finds the parties a provider names by bank and client id).
pub struct DirectoryClient {
    questions: Questions<Answer>,
    banks_of: Mutex<HashMap<Address, String>>,
}

impl DirectoryClient {
    /// `first_request`: a number no earlier run of this process used (the time in
    /// nanoseconds at start serves).
    pub fn new(role: RoleId, transport: Arc<dyn Transport>, first_request: u64) -> DirectoryClient {
        assert!(matches!(role, RoleId::Bank(_) | RoleId::Oracle), "a bank or the oracle asks the directory");
        let again = Duration::from_millis(ASK_AGAIN_AFTER_MS);
        DirectoryClient {
            questions: Questions::new(role, RoleId::Directory, transport, first_request, QUESTIONS_MAX, again),
            banks_of: Mutex::new(HashMap::new()),
        }
    }

    /// The bank an address is at, if the directory answered it before: asks nothing (a page of
    /// history shows what [`Directory::learn_banks`] learnt, and no address costs it a wait).
    pub fn known_bank(&self, address: &Address) -> Option<String> {
        self.banks_of.lock().get(address).cloned()
    }

    /// Hand the directory's answer to the question waiting for it. `false`: not an answer of
    /// the directory's (the bank's own message), for the bank to handle.
    pub fn take_reply(&self, envelope: &Envelope) -> bool {
        let (request, answer) = match &envelope.message {
            Message::LookupReply(reply) => (reply.request, Answer::Listed(reply.listed.clone())),
            Message::ClaimManyReply(reply) => (reply.request, Answer::Claimed(reply.refused.clone())),
            _ => return false,
        };
        self.questions.answer(&envelope.from, request, answer);
        true
    }

    /// Claim many accounts of this bank's at once (a migration): all listed, or none.
    pub fn claim_all(&self, claims: &[Claim]) -> Result<()> {
        if claims.len() > dtenge_wire::directory::CLAIMS_AT_ONCE_MAX {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("at most {} claims at once", dtenge_wire::directory::CLAIMS_AT_ONCE_MAX),
            ));
        }
        let ask = |request| Message::ClaimMany(ClaimMany { request, claims: claims.to_vec() });
        match self.ask(ask, CLAIMS_WAIT_MS)? {
            Answer::Claimed(None) => Ok(()),
            Answer::Claimed(Some(refused)) => Err(refused),
            Answer::Listed(_) => Err(mismatched()),
        }
    }

    fn look_up(&self, whom: Whom, bank: Option<&str>) -> Result<Option<Listed>> {
        let bank = bank.map(str::to_string);
        let ask = |request| Message::Lookup(Lookup { request, whom: whom.clone(), bank: bank.clone() });
        match self.ask(ask, ANSWER_WAIT_MS)? {
            Answer::Listed(listed) => Ok(listed),
            Answer::Claimed(_) => Err(mismatched()),
        }
    }

    /// Send the question `message(number)` and wait for its answer, asking again while none
    /// comes, at most `wait_ms`.
    fn ask(&self, message: impl Fn(u64) -> Message, wait_ms: u64) -> Result<Answer> {
        self.questions.ask(message, Duration::from_millis(wait_ms)).ok_or_else(unanswered)
    }

    fn keep(&self, address: Address, bank: &str) {
        let mut banks_of = self.banks_of.lock();
        if banks_of.len() >= ADDRESSES_KEPT_MAX {
            banks_of.clear();
        }
        banks_of.insert(address, bank.to_string());
    }
}

/// No answer in time (or too many questions wait): the call may be made again.
fn unanswered() -> Error {
    Error::new(ErrorCode::RequestInProgress, "the directory has not answered in time; ask again")
}

impl Directory for DirectoryClient {
    fn asks_across_processes(&self) -> bool {
        true
    }

    fn learn_banks(&self, addresses: &[Address]) {
        let unknown: Vec<Address> = {
            let kept = self.banks_of.lock();
            addresses.iter().filter(|address| !kept.contains_key(*address)).copied().collect()
        };
        // Every question of a round sent before any answer is awaited: the network carries
        // them in a few frames, and the round costs one round trip.
        for round in unknown.chunks(LOOKUPS_AT_ONCE_MAX) {
            let deadline = Instant::now() + Duration::from_millis(ANSWER_WAIT_MS);
            let questions: Vec<_> =
                round.iter().map(|address| (*address, lookup_of(Whom::Address(*address)))).collect();
            let mut asked = Vec::with_capacity(questions.len());
            for (address, message) in &questions {
                match self.questions.send(message) {
                    Ok(question) => asked.push((*address, message, question)),
                    // Too many questions wait: the rest are asked when their payments need them.
                    Err(_) => break,
                }
            }
            for (address, message, question) in asked {
                if let Some(Answer::Listed(Some(listed))) = self.questions.wait(question, message, deadline) {
                    if listed.address == address {
                        self.keep(listed.address, &listed.bank);
                    }
                }
            }
        }
    }

    fn bank_of(&self, address: &Address) -> Result<Option<String>> {
        if let Some(bank) = self.banks_of.lock().get(address) {
            return Ok(Some(bank.clone()));
        }
        let Some(listed) = self.look_up(Whom::Address(*address), None)? else { return Ok(None) };
        if listed.address != *address {
            return Err(Error::new(ErrorCode::Internal, "the directory answered for another address"));
        }
        self.keep(listed.address, &listed.bank);
        Ok(Some(listed.bank))
    }

    fn find(&self, who: Who<'_>, bank: Option<&str>) -> Result<Option<Found>> {
        let whom = match who {
            Who::Phone(phone) => Whom::Phone(phone.to_string()),
            Who::Client(client) => Whom::Client(client.to_string()),
        };
        Ok(self.look_up(whom, bank)?.map(|listed| Found {
            address: listed.address,
            bank: listed.bank,
            kind: listed.kind,
        }))
    }
}

/// The directory answered a question with an answer of another kind: its fault, not the
/// payment's; the payment is refused and may be sent again.
fn mismatched() -> Error {
    Error::new(ErrorCode::Internal, "the directory answered a question with an answer of another kind")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::Hash32;
    use dtenge_transport::SendError;
    use dtenge_wire::{AccountKind, LookupReply};

    /// Keeps what the bank sends, for the test's directory to answer.
    struct Held(Mutex<Vec<Envelope>>);

    impl Transport for Held {
        fn send(&self, envelope: Envelope) -> std::result::Result<(), SendError> {
            self.0.lock().push(envelope);
            Ok(())
        }
    }

    #[test]
    fn learning_many_banks_asks_every_question_before_it_waits_for_an_answer() {
        const ADDRESSES: usize = 40;
        let sent = Arc::new(Held(Mutex::new(Vec::new())));
        let client = Arc::new(DirectoryClient::new(RoleId::Bank("steppe".into()), sent.clone(), 1));
        let addresses: Vec<Address> = (0..ADDRESSES as u8).map(|i| Address(Hash32([i; 32]))).collect();
        // This directory answers only once every question has arrived: a bank asking one at a
        // time would never have them all out, and the directory gives up (the test fails).
        let directory = std::thread::spawn({
            let (client, sent) = (client.clone(), sent.clone());
            move || {
                let deadline = Instant::now() + Duration::from_millis(ANSWER_WAIT_MS);
                while sent.0.lock().len() < ADDRESSES {
                    assert!(Instant::now() < deadline, "the bank asked one question at a time");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let questions: Vec<Envelope> = sent.0.lock().drain(..).collect();
                for question in questions {
                    let Message::Lookup(Lookup { request, whom: Whom::Address(address), bank: None }) =
                        question.message
                    else {
                        panic!("a question by address: {:?}", question.message);
                    };
                    let bank = if address.0 .0[0] % 2 == 0 { "sapa" } else { "tulpar" }.to_string();
                    let listed = Some(Listed { address, bank, kind: AccountKind::Individual });
                    let reply = Message::LookupReply(LookupReply { request, listed });
                    assert!(client.take_reply(&Envelope {
                        from: RoleId::Directory,
                        to: RoleId::Bank("steppe".into()),
                        message: reply
                    }));
                }
            }
        });
        client.learn_banks(&addresses);
        directory.join().unwrap();
        // Every answer kept: asked again, the bank answers from memory and sends nothing.
        for address in &addresses {
            let expected = if address.0 .0[0] % 2 == 0 { "sapa" } else { "tulpar" };
            assert_eq!(client.bank_of(address).unwrap().as_deref(), Some(expected));
        }
        assert!(sent.0.lock().is_empty(), "nothing asked twice");
        assert_eq!(client.questions.waiting(), 0, "no question left waiting");
    }
}
