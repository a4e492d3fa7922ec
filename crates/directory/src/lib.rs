//! The ID center as a role: who holds which account where.
//!
//! Banks **claim** their new accounts here before they open them ([`Claim`]: client id,
//! address, kind, the name a payer is shown, phone). The directory is the one authority for
//! identities across the network, so it refuses:
//! - an address already listed (for another account);
//! - a client already listed at the same bank with another address (one digital account per
//!   client per bank, SPEC §2);
//! - a phone that belongs to another client (one client per phone across the network; the
//!   same person may register it at several banks).
//!
//! The same claim again is answered as the first time (a bank retries after a lost answer or
//! its own restart), and a claim is durable in the directory's own store before it is
//! answered. Payers' banks ask the directory where a phone, a client or an address is
//! ([`Directory::by_phone`], [`Directory::by_client`], [`Directory::by_address`]).
//!
//! Personal data stays at the servicing bank: the directory keeps the client's id, a shortened
//! display name and the phone, as SPEC §3's ID center does.

#![forbid(unsafe_code)]

pub mod cards;

use dtenge_core::crypto::Address;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{LogTable, Store, Table, WriteBatch};
use dtenge_wire::{
    AccountKind, Claim, ClaimMany, ClaimManyReply, ClaimReply, Decode, Encode, Envelope, Listed, Lookup, LookupReply,
    Message, Reader, RoleId, Whom, Writer,
};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};

/// Every claim the directory accepted, in order: `(bank, claim)` records, read whole at start.
pub const CLAIMS_LOG: LogTable = LogTable("directory_claims");

/// Most claims one [`DirectoryService::claim_all`] lists (the wire's bound on a
/// [`ClaimMany`]).
pub const CLAIMS_AT_ONCE_MAX: usize = dtenge_wire::directory::CLAIMS_AT_ONCE_MAX;

/// Every table of the directory's store.
pub fn tables() -> Vec<Table> {
    vec![CLAIMS_LOG.table(), cards::CARDS_LOG.table()]
}

/// One listed account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub bank: String,
    pub client_id: String,
    pub address: Address,
    pub kind: AccountKind,
    pub display_name: String,
    pub phone: Option<String>,
}

/// The directory's state: a pure state machine (claim, then query).
#[derive(Default)]
pub struct Directory {
    by_address: HashMap<Address, Listing>,
    /// Phone -> addresses, in order of listing.
    phones: HashMap<String, Vec<Address>>,
    /// Client id -> addresses, in order of listing (one per bank).
    clients: HashMap<String, Vec<Address>>,
}

impl Directory {
    /// Check `claim` by `bank`: `Ok(true)` when it is new and may be listed, `Ok(false)` when
    /// it is listed already (the same claim again).
    pub fn check(&self, bank: &str, claim: &Claim) -> Result<bool> {
        if claim.client_id.is_empty() || claim.display_name.is_empty() {
            return Err(Error::malformed("a claim names its client and a display name"));
        }
        if let Some(listed) = self.by_address.get(&claim.address) {
            let same = listed.bank == bank && listed.client_id == claim.client_id && listed.phone == claim.phone;
            if same {
                return Ok(false);
            }
            return Err(Error::new(
                ErrorCode::DuplicateAccount,
                format!("address {} is already listed", claim.address),
            ));
        }
        let at_bank = self.clients.get(&claim.client_id).into_iter().flatten().any(|a| self.by_address[a].bank == bank);
        if at_bank {
            return Err(Error::new(
                ErrorCode::DuplicateAccount,
                format!("the client already has a digital account at '{bank}'"),
            ));
        }
        if let Some(phone) = &claim.phone {
            let other =
                self.phones.get(phone).into_iter().flatten().find(|a| self.by_address[*a].client_id != claim.client_id);
            if other.is_some() {
                return Err(Error::new(
                    ErrorCode::DuplicateAccount,
                    format!("phone {phone} is registered to another client"),
                ));
            }
        }
        Ok(true)
    }

    /// List a claim [`Directory::check`] found new.
    pub fn apply(&mut self, bank: &str, claim: &Claim) {
        assert!(!self.by_address.contains_key(&claim.address), "a checked claim lists a new address");
        let listing = Listing {
            bank: bank.to_string(),
            client_id: claim.client_id.clone(),
            address: claim.address,
            kind: claim.kind,
            display_name: claim.display_name.clone(),
            phone: claim.phone.clone(),
        };
        if let Some(phone) = &claim.phone {
            self.phones.entry(phone.clone()).or_default().push(claim.address);
        }
        self.clients.entry(claim.client_id.clone()).or_default().push(claim.address);
        self.by_address.insert(claim.address, listing);
    }

    pub fn by_address(&self, address: &Address) -> Option<&Listing> {
        self.by_address.get(address)
    }

    /// The account a phone pays to: at `bank` if named, else the first listed.
    pub fn by_phone(&self, phone: &str, bank: Option<&str>) -> Option<&Listing> {
        self.pick(self.phones.get(phone)?, bank)
    }

    /// A client's account: at `bank` if named, else the first listed.
    pub fn by_client(&self, client_id: &str, bank: Option<&str>) -> Option<&Listing> {
        self.pick(self.clients.get(client_id)?, bank)
    }

    /// The banks a phone is registered at, in order of listing.
    pub fn banks_of_phone(&self, phone: &str) -> Vec<&str> {
        self.phones.get(phone).into_iter().flatten().map(|a| self.by_address[a].bank.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    fn pick(&self, addresses: &[Address], bank: Option<&str>) -> Option<&Listing> {
        let mut listings = addresses.iter().map(|a| &self.by_address[a]);
        match bank {
            Some(bank) => listings.find(|l| l.bank == bank),
            None => listings.next(),
        }
    }
}

/// The directory role: the state, its store, its messages.
pub struct DirectoryService {
    state: RwLock<Directory>,
    store: Store,
    /// Cards linked to accounts (`cards`).
    cards: RwLock<cards::Cards>,
}

fn claim_record(bank: &str, claim: &Claim) -> Vec<u8> {
    let mut w = Writer::new();
    w.str(bank);
    Message::Claim(claim.clone()).encode(&mut w);
    w.into_bytes()
}

fn claim_of(record: &[u8]) -> Result<(String, Claim)> {
    let mut r = Reader::new(record);
    let bank = r.string("bank").map_err(Error::from)?;
    let message = Message::decode(&mut r).map_err(Error::from)?;
    r.finish().map_err(Error::from)?;
    match message {
        Message::Claim(claim) => Ok((bank, claim)),
        _ => Err(Error::new(ErrorCode::StorageFailure, "a directory record is not a claim")),
    }
}

impl DirectoryService {
    /// Open the directory on its own store, listing every claim it accepted before.
    pub fn open(store: Store) -> Result<DirectoryService> {
        let mut state = Directory::default();
        for record in store.scan_log(CLAIMS_LOG)? {
            let (bank, claim) = claim_of(&record)
                .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("directory claims: {}", e.message)))?;
            // Only checked claims were written; each is listed once.
            assert!(state.check(&bank, &claim).is_ok(), "a stored claim is consistent with those before it");
            state.apply(&bank, &claim);
        }
        let cards = RwLock::new(cards::load(&store)?);
        Ok(DirectoryService { state: RwLock::new(state), store, cards })
    }

    /// Query the listings.
    pub fn read<T>(&self, f: impl FnOnce(&Directory) -> T) -> T {
        f(&self.state.read())
    }

    /// Claim an account for `bank`: checked, durably listed, answered.
    pub fn claim(&self, bank: &str, claim: &Claim) -> Result<()> {
        let mut state = self.state.write();
        if !state.check(bank, claim)? {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch.record(CLAIMS_LOG, claim_record(bank, claim));
        self.store.commit(batch)?;
        state.apply(bank, claim);
        Ok(())
    }

    /// Claim many accounts for `bank` in one durable commit: a bank migrating its clients.
    /// All or nothing: a claim refused by those listed before, or by one earlier in the list,
    /// refuses the whole list; claims listed already are skipped.
    pub fn claim_all(&self, bank: &str, claims: &[Claim]) -> Result<()> {
        if claims.len() > CLAIMS_AT_ONCE_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, format!("at most {CLAIMS_AT_ONCE_MAX} claims at once")));
        }
        let mut state = self.state.write();
        let mut addresses = HashSet::with_capacity(claims.len());
        let mut clients = HashSet::with_capacity(claims.len());
        let mut phones: HashMap<&str, &str> = HashMap::new();
        let mut batch = WriteBatch::new();
        let mut new = Vec::with_capacity(claims.len());
        for claim in claims {
            let repeated = !addresses.insert(claim.address)
                || !clients.insert(claim.client_id.as_str())
                || claim.phone.as_deref().is_some_and(|phone| {
                    *phones.entry(phone).or_insert(claim.client_id.as_str()) != claim.client_id.as_str()
                });
            if repeated {
                return Err(Error::new(
                    ErrorCode::DuplicateAccount,
                    format!("client {}, its address or its phone is claimed twice in the list", claim.client_id),
                ));
            }
            if state.check(bank, claim)? {
                batch.record(CLAIMS_LOG, claim_record(bank, claim));
                new.push(claim);
            }
        }
        self.store.commit(batch)?;
        for claim in new {
            state.apply(bank, claim);
        }
        Ok(())
    }

    /// Where an account is, as a bank in another process asks ([`Lookup`]): its address, its
    /// bank and its kind, never its display name or its phone.
    pub fn lookup(&self, lookup: &Lookup) -> Option<Listed> {
        let bank = lookup.bank.as_deref();
        self.read(|d| {
            let listing = match &lookup.whom {
                Whom::Address(address) => d.by_address(address),
                Whom::Phone(phone) => d.by_phone(phone, bank),
                Whom::Client(client) => d.by_client(client, bank),
            };
            listing.map(|l| Listed { address: l.address, bank: l.bank.clone(), kind: l.kind })
        })
    }

    /// Answer one envelope from a bank: a claim for one of its own accounts, many claims at
    /// once, a card claim, a lookup; or the oracle's lookup. Anything else, or a message from
    /// another role, gets no answer.
    pub fn handle(&self, envelope: Envelope) -> Option<Envelope> {
        let reply = |message| Some(Envelope { from: RoleId::Directory, to: envelope.from.clone(), message });
        match (&envelope.from, &envelope.message) {
            // The banks, and the oracle: it finds the parties a provider names by bank and
            // client id (an event's sender and payees), and learns no more than a bank does.
            (RoleId::Bank(_) | RoleId::Oracle, Message::Lookup(lookup)) => {
                return reply(Message::LookupReply(LookupReply {
                    request: lookup.request,
                    listed: self.lookup(lookup),
                }))
            }
            (RoleId::Bank(bank), Message::ClaimMany(ClaimMany { request, claims })) => {
                let refused = self.claim_all(bank, claims).err();
                return reply(Message::ClaimManyReply(ClaimManyReply { request: *request, refused }));
            }
            _ => {}
        }
        if let (RoleId::Bank(bank), Message::CardClaim(claim)) = (&envelope.from, &envelope.message) {
            let refused = self.claim_card(bank, claim).err();
            let reply = dtenge_wire::CardClaimReply { pan: claim.pan.clone(), refused };
            return Some(Envelope {
                from: RoleId::Directory,
                to: envelope.from,
                message: Message::CardClaimReply(reply),
            });
        }
        let (RoleId::Bank(bank), Message::Claim(claim)) = (&envelope.from, &envelope.message) else { return None };
        let refused = self.claim(bank, claim).err();
        let reply = ClaimReply { address: claim.address, refused };
        Some(Envelope { from: RoleId::Directory, to: envelope.from, message: Message::ClaimReply(reply) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::SecretKey;
    use dtenge_store::SimDisk;

    fn address(seed: u8) -> Address {
        SecretKey::from_seed([seed; 32]).address()
    }

    fn claim(client: &str, seed: u8, phone: Option<&str>) -> Claim {
        Claim {
            client_id: client.into(),
            address: address(seed),
            kind: AccountKind::Individual,
            display_name: format!("{client} S."),
            phone: phone.map(str::to_string),
        }
    }

    fn open(disk: &SimDisk) -> DirectoryService {
        DirectoryService::open(Store::open_simulated(disk.clone(), &tables()).unwrap()).unwrap()
    }

    #[test]
    fn a_bank_in_another_process_claims_many_and_looks_up_by_message() {
        let directory = open(&SimDisk::new());
        let from = |bank: &str, message| Envelope { from: RoleId::Bank(bank.into()), to: RoleId::Directory, message };
        let list = vec![claim("900101300123", 1, Some("+77011234567")), claim("850505400456", 2, None)];
        let reply =
            directory.handle(from("steppe", Message::ClaimMany(ClaimMany { request: 7, claims: list.clone() })));
        let reply = reply.expect("answered");
        assert_eq!(reply.to, RoleId::Bank("steppe".into()));
        assert_eq!(reply.message, Message::ClaimManyReply(ClaimManyReply { request: 7, refused: None }));
        // The same list from another bank: refused whole, by the request's number.
        let Some(Envelope { message: Message::ClaimManyReply(refused), .. }) =
            directory.handle(from("sapa", Message::ClaimMany(ClaimMany { request: 8, claims: list })))
        else {
            panic!("answered")
        };
        assert_eq!((refused.request, refused.refused.map(|e| e.code)), (8, Some(ErrorCode::DuplicateAccount)));
        // Looked up by phone, client and address: the bank, the address and the kind, nothing
        // else (the answer has no field for a name or a phone).
        let listed = Listed { address: address(1), bank: "steppe".into(), kind: AccountKind::Individual };
        for whom in [Whom::Phone("+77011234567".into()), Whom::Client("900101300123".into()), Whom::Address(address(1))]
        {
            let reply = directory.handle(from("tulpar", Message::Lookup(Lookup { request: 9, whom, bank: None })));
            assert_eq!(
                reply.map(|r| r.message),
                Some(Message::LookupReply(LookupReply { request: 9, listed: Some(listed.clone()) }))
            );
        }
        let at_other_bank =
            Lookup { request: 10, whom: Whom::Client("900101300123".into()), bank: Some("sapa".into()) };
        let reply = directory.handle(from("tulpar", Message::Lookup(at_other_bank)));
        assert_eq!(reply.map(|r| r.message), Some(Message::LookupReply(LookupReply { request: 10, listed: None })));
        // The oracle asks too, and is answered the same; no one else is.
        let lookup = Lookup { request: 11, whom: Whom::Client("900101300123".into()), bank: Some("steppe".into()) };
        let from_oracle =
            Envelope { from: RoleId::Oracle, to: RoleId::Directory, message: Message::Lookup(lookup.clone()) };
        let reply = directory.handle(from_oracle).expect("answered");
        assert_eq!(reply.to, RoleId::Oracle);
        assert_eq!(reply.message, Message::LookupReply(LookupReply { request: 11, listed: Some(listed) }));
        let from_notary = Envelope { from: RoleId::Notary, to: RoleId::Directory, message: Message::Lookup(lookup) };
        assert_eq!(directory.handle(from_notary), None);
    }

    #[test]
    fn a_migration_lists_all_or_nothing_and_can_run_again() {
        let disk = SimDisk::new();
        let directory = open(&disk);
        let list = vec![claim("900101300123", 1, Some("+77011234567")), claim("850505400456", 2, None)];
        directory.claim_all("steppe", &list).unwrap();
        // Run again (it stopped before the bank opened the accounts): nothing new, no error.
        directory.claim_all("steppe", &list).unwrap();
        assert_eq!(directory.read(|d| d.len()), 2);
        // A phone of two clients, an address twice, or one claim refused by the listings:
        // the whole list is refused and nothing of it is listed.
        let code = |r: Result<()>| r.unwrap_err().code;
        let phone_twice =
            [claim("700101300001", 3, Some("+77020000000")), claim("700101300002", 4, Some("+77020000000"))];
        assert_eq!(code(directory.claim_all("sapa", &phone_twice)), ErrorCode::DuplicateAccount);
        let address_twice = [claim("700101300001", 5, None), claim("700101300002", 5, None)];
        assert_eq!(code(directory.claim_all("sapa", &address_twice)), ErrorCode::DuplicateAccount);
        let taken = [claim("700101300001", 6, None), claim("700101300002", 1, None)];
        assert_eq!(code(directory.claim_all("sapa", &taken)), ErrorCode::DuplicateAccount);
        assert_eq!(directory.read(|d| d.len()), 2);
        assert_eq!(open(&disk).read(|d| d.len()), 2, "what was listed is durable");
    }

    #[test]
    fn a_phone_an_address_and_a_client_per_bank_are_claimed_once() {
        let directory = open(&SimDisk::new());
        let code = |r: Result<()>| r.err().map(|e| e.code);
        assert_eq!(code(directory.claim("steppe", &claim("900101300123", 1, Some("+77011234567")))), None);
        // The same person registers the same phone at another bank: allowed.
        assert_eq!(code(directory.claim("sapa", &claim("900101300123", 2, Some("+77011234567")))), None);
        // Another person with that phone, the same address again, a second account at a bank.
        let taken = Some(ErrorCode::DuplicateAccount);
        assert_eq!(code(directory.claim("tulpar", &claim("850505400456", 3, Some("+77011234567")))), taken);
        assert_eq!(code(directory.claim("tulpar", &claim("850505400456", 1, None))), taken);
        assert_eq!(code(directory.claim("steppe", &claim("900101300123", 4, None))), taken);
        // The same claim again (a retry): answered as the first time, listed once.
        assert_eq!(code(directory.claim("steppe", &claim("900101300123", 1, Some("+77011234567")))), None);
        directory.read(|d| {
            assert_eq!(d.len(), 2);
            assert_eq!(d.banks_of_phone("+77011234567"), vec!["steppe", "sapa"]);
            assert_eq!(d.by_phone("+77011234567", None).unwrap().bank, "steppe");
            assert_eq!(d.by_phone("+77011234567", Some("sapa")).unwrap().address, address(2));
            assert_eq!(d.by_client("900101300123", Some("sapa")).unwrap().bank, "sapa");
            assert!(d.by_client("850505400456", None).is_none(), "refused claims list nothing");
            assert_eq!(d.by_address(&address(1)).unwrap().display_name, "900101300123 S.");
        });
    }

    #[test]
    fn a_restart_lists_every_accepted_claim_again() {
        let disk = SimDisk::new();
        let directory = open(&disk);
        directory.claim("steppe", &claim("900101300123", 1, Some("+77011234567"))).unwrap();
        directory.claim("sapa", &claim("850505400456", 2, None)).unwrap();
        drop(directory);
        let directory = open(&disk);
        directory.read(|d| {
            assert_eq!(d.len(), 2);
            assert_eq!(d.by_address(&address(2)).unwrap().bank, "sapa");
        });
        let refused = directory.claim("tulpar", &claim("770707500789", 9, Some("+77011234567")));
        assert_eq!(refused.unwrap_err().code, ErrorCode::DuplicateAccount);
    }

    #[test]
    fn a_bank_claims_through_an_envelope_and_other_senders_get_no_answer() {
        let directory = open(&SimDisk::new());
        let envelope = |from: RoleId| Envelope {
            from,
            to: RoleId::Directory,
            message: Message::Claim(claim("900101300123", 1, None)),
        };
        let answer = directory.handle(envelope(RoleId::Bank("steppe".into()))).unwrap();
        assert_eq!(answer.to, RoleId::Bank("steppe".into()));
        assert_eq!(answer.message, Message::ClaimReply(ClaimReply { address: address(1), refused: None }));
        assert!(directory.handle(envelope(RoleId::Oracle)).is_none());
        assert!(directory.handle(envelope(RoleId::Central)).is_none());
    }
}
