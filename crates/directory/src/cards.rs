//! Cards at the ID center: which bank and client a card number is linked to. The directory is
//! the one authority across banks (a card is linked once in the network), as it is for
//! accounts; each bank keeps its own cards beside (`dtenge-node`'s `node_cards`).
//!
//! A bank claims a card ([`CardClaim`]) before it links it; the claim is durable here before it
//! is answered, and the same claim again (a retry, a restart) is answered as the first time. A
//! gateway routes a purchase to the card's bank with [`Cards::holder`].

use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{LogTable, Store, WriteBatch};
use dtenge_wire::{CardClaim, Decode, Reader, Writer};
use std::collections::HashMap;

/// Every card claim the directory accepted, in order: `(bank, claim)` records.
pub const CARDS_LOG: LogTable = LogTable("directory_cards");

/// The bank and client a card is linked to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardHolder {
    pub bank: String,
    pub client_id: String,
}

/// The cards listed: a pure state machine (check, then apply).
#[derive(Default)]
pub struct Cards {
    by_pan: HashMap<String, CardHolder>,
}

impl Cards {
    /// `Ok(true)`: new, may be listed; `Ok(false)`: the same claim again.
    pub fn check(&self, bank: &str, claim: &CardClaim) -> Result<bool> {
        dtenge_node::ids::check_pan(&claim.pan)?;
        if claim.client_id.is_empty() {
            return Err(Error::malformed("a card claim names its client"));
        }
        match self.by_pan.get(&claim.pan) {
            None => Ok(true),
            Some(holder) if holder.bank == bank && holder.client_id == claim.client_id => Ok(false),
            Some(_) => Err(Error::new(
                ErrorCode::DuplicateAccount,
                format!("card {} is already linked", dtenge_node::ids::mask_pan(&claim.pan)),
            )),
        }
    }

    pub fn apply(&mut self, bank: &str, claim: &CardClaim) {
        let holder = CardHolder { bank: bank.to_string(), client_id: claim.client_id.clone() };
        let before = self.by_pan.insert(claim.pan.clone(), holder);
        assert!(before.is_none(), "a checked card claim lists a new card");
    }

    /// Where card `pan` is linked.
    pub fn holder(&self, pan: &str) -> Option<&CardHolder> {
        self.by_pan.get(pan)
    }

    pub fn len(&self) -> usize {
        self.by_pan.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pan.is_empty()
    }
}

pub(crate) fn record(bank: &str, claim: &CardClaim) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(bank);
    w.put(claim);
    w.into_bytes()
}

fn of(record: &[u8]) -> Result<(String, CardClaim)> {
    let mut r = Reader::new(record);
    let bank = r.string("bank").map_err(Error::from)?;
    let claim = CardClaim::decode(&mut r).map_err(Error::from)?;
    r.finish().map_err(Error::from)?;
    Ok((bank, claim))
}

/// Read every accepted card claim back.
pub(crate) fn load(store: &Store) -> Result<Cards> {
    let mut cards = Cards::default();
    for record in store.scan_log(CARDS_LOG)? {
        let (bank, claim) = of(&record)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("directory cards: {}", e.message)))?;
        assert_eq!(cards.check(&bank, &claim).ok(), Some(true), "a stored card claim is new when read back");
        cards.apply(&bank, &claim);
    }
    Ok(cards)
}

impl crate::DirectoryService {
    /// Claim card `claim.pan` for `bank`'s client: checked, durably listed, answered.
    pub fn claim_card(&self, bank: &str, claim: &CardClaim) -> Result<()> {
        let mut cards = self.cards.write();
        if !cards.check(bank, claim)? {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch.record(CARDS_LOG, record(bank, claim));
        self.store.commit(batch)?;
        cards.apply(bank, claim);
        Ok(())
    }

    /// Query the cards.
    pub fn read_cards<T>(&self, f: impl FnOnce(&Cards) -> T) -> T {
        f(&self.cards.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tables, DirectoryService};
    use dtenge_store::SimDisk;
    use dtenge_wire::{CardClaimReply, Envelope, Message, RoleId};

    fn pan() -> String {
        dtenge_node::ids::complete_pan("440000000000000").unwrap()
    }

    fn open(disk: &SimDisk) -> DirectoryService {
        DirectoryService::open(Store::open_simulated(disk.clone(), &tables()).unwrap()).unwrap()
    }

    fn claim(client: &str) -> CardClaim {
        CardClaim { pan: pan(), client_id: client.into() }
    }

    #[test]
    fn a_card_is_linked_once_across_banks_and_a_retry_is_answered_as_the_first_time() {
        let disk = SimDisk::new();
        let directory = open(&disk);
        directory.claim_card("steppe", &claim("900101300123")).unwrap();
        directory.claim_card("steppe", &claim("900101300123")).unwrap();
        let code = |r: Result<()>| r.unwrap_err().code;
        assert_eq!(code(directory.claim_card("sapa", &claim("900101300123"))), ErrorCode::DuplicateAccount);
        assert_eq!(code(directory.claim_card("steppe", &claim("850505400456"))), ErrorCode::DuplicateAccount);
        let mut wrong = pan().into_bytes();
        wrong[15] = b'0' + (wrong[15] - b'0' + 1) % 10;
        let bad = CardClaim { pan: String::from_utf8(wrong).unwrap(), client_id: "c".into() };
        assert_eq!(code(directory.claim_card("steppe", &bad)), ErrorCode::MalformedInput, "Luhn");
        drop(directory);
        let directory = open(&disk);
        let holder = directory.read_cards(|c| c.holder(&pan()).cloned()).unwrap();
        assert_eq!(holder, CardHolder { bank: "steppe".into(), client_id: "900101300123".into() });
        assert_eq!(directory.read_cards(|c| c.len()), 1, "listed once, durably");
    }

    #[test]
    fn a_bank_claims_a_card_through_an_envelope_and_others_get_no_answer() {
        let directory = open(&SimDisk::new());
        let envelope =
            |from: RoleId| Envelope { from, to: RoleId::Directory, message: Message::CardClaim(claim("9001")) };
        let answer = directory.handle(envelope(RoleId::Bank("steppe".into()))).unwrap();
        assert_eq!(answer.message, Message::CardClaimReply(CardClaimReply { pan: pan(), refused: None }));
        assert!(directory.handle(envelope(RoleId::Central)).is_none());
        let refused = directory.handle(envelope(RoleId::Bank("sapa".into()))).unwrap();
        let Message::CardClaimReply(reply) = refused.message else { panic!("a card claim reply") };
        assert_eq!(reply.refused.unwrap().code, ErrorCode::DuplicateAccount);
    }
}
