//! The oracle node: the ledger's link to the outside world, and the one authority that
//! confirms programmed-money transactions.
//!
//! It keeps the registry of **providers** (government systems and portals that feed it, each
//! authenticated by its own secret token) and the registry of **events** (holding: sender,
//! payees, amount, validity, single or infinite). Every registry change is a [`Record`] the
//! oracle signs, so each decision can be shown to a third party with its history.
//!
//! It confirms a hold or a release by **attesting the transaction** that does it. Validators
//! refuse any transaction that creates or spends a held token without that attestation
//! (`dtenge_core::validate`), so the rules hold in the ledger, not only in this API: a node can
//! build any transaction it likes, but only the oracle can make a held token move, and it signs
//! only the exact transaction its registry calls for.
//!
//! Like the nodes, this is a pure state machine with plan / write / apply: a `plan_*` method
//! checks and returns a [`Change`] without touching the state, the caller persists it with the
//! ledger transaction in one commit ([`Change::writes`]) and applies it after the commit
//! ([`Oracle::apply`]). Time arrives as `now_ms`.

use dtenge_core::crypto::{hash_parts, Hash32, NodeKey, Signature};
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::{event_hash, Output, TxId};
use dtenge_core::tx::{node_message, Attestation, Command, Transaction};
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The JSON of what the oracle hashes and signs. Its records are plain data (strings, numbers,
/// hashes, lists and options; no map with non-string keys), which serde_json always encodes:
/// a failure would be a type the program made unencodable, not a property of a request.
pub(crate) fn json_of(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("the oracle's records are plain data, which serde_json encodes")
}

/// A row of `table` naming `what` the oracle's tables do not have. The registries are fjall's
/// keyed rows, which the store keeps without a checksum of its own: corrupt storage, and the
/// oracle refuses to open.
pub(crate) fn unknown_row(table: Table, what: &str, id: &str) -> Error {
    Error::storage(format!("{}: {what} {id}, which is not in the store", table.0))
}

pub const META_TABLE: Table = Table("oracle_meta");
pub const PROVIDERS_TABLE: Table = Table("oracle_providers");
pub const EVENTS_TABLE: Table = Table("oracle_events");
pub const RECORDS_TABLE: Table = Table("oracle_records");
pub const TABLES: [Table; 10] = [
    META_TABLE,
    PROVIDERS_TABLE,
    EVENTS_TABLE,
    RECORDS_TABLE,
    marking::MARKINGS_TABLE,
    marking::MOVES_TABLE,
    vat::INVOICES_TABLE,
    vat::VAT_TABLE,
    contract::CONTRACTS_TABLE,
    contract::USES_TABLE,
];

pub mod client;
pub mod contract;
pub mod marking;
pub mod service;
pub mod spend;
pub mod vat;

pub use contract::{Contract, ContractSpec, ContractUse, UseKind};
pub use marking::{Level, Marking, MarkingSpec, Move, MoveBody};
pub use spend::SpendPlan;
pub use vat::{Invoice, InvoiceSpec, InvoiceStatus};

/// Most payees one event may pay in one release (seller plus state fees, several sellers).
pub const PAYEES_MAX: usize = 16;
/// Most records one event keeps: an infinite event releases once per occurrence.
pub const RECORDS_PER_EVENT_MAX: usize = 100_000;
/// Most providers the registry holds.
pub const PROVIDERS_MAX: usize = 1_000;
/// Longest reference, reason or occurrence id.
pub const TEXT_LEN_MAX: usize = 140;
/// Longest provider id.
pub const PROVIDER_ID_LEN_MAX: usize = 64;

/// What kind of outside system a provider is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The vehicle registry: `OwnershipTransferred` and rejections.
    VehicleRegistry,
    /// The farm-animal registry (IFA): re-registration of animals.
    AnimalRegistry,
    /// The state subsidy system (SSIS).
    SubsidySystem,
    /// Transit-card validators ("Onay").
    TransitValidators,
    /// The smart-contract portal (public procurement, vehicle-sale contracts).
    ContractPortal,
    /// The tax authority's e-invoice system (ESF).
    TaxAuthority,
}

/// A registered provider. Its token is stored only as a hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    pub registered_at_unix_ms: u64,
    token_hash: Hash32,
}

/// A provider as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    pub registered_at_unix_ms: u64,
}

impl Provider {
    pub fn view(&self) -> ProviderView {
        ProviderView {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind,
            registered_at_unix_ms: self.registered_at_unix_ms,
        }
    }
}

fn token_hash(token: &str) -> Hash32 {
    hash_parts(b"dtenge/oracle/provider-token/v1", &[token.as_bytes()])
}

/// Single: one hold, one release (a partial release returns the rest). Infinite: every
/// occurrence releases again until the held amount or the validity runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Single,
    Infinite,
}

/// One payee of an event and what it receives on a (full) occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub party: Party,
    pub amount_tiyn: Amount,
}

/// What an event is: fixed at registration, covered by every record's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTerms {
    /// The provider that registered the event.
    pub provider: String,
    /// The provider whose occurrences release or reject it (the vehicle registry for a sale
    /// the contract portal registered).
    pub confirmed_by: String,
    /// The provider's own reference (contract number, VIN, loan id).
    pub reference: String,
    pub kind: EventKind,
    pub sender: Party,
    pub payees: Vec<Share>,
    pub registered_at_unix_ms: u64,
    /// After this instant the event can no longer be held or released; held funds return to
    /// the sender.
    pub valid_until_unix_ms: u64,
}

impl EventTerms {
    /// What one full occurrence pays: the sum of the payees' shares.
    pub fn occurrence_total(&self) -> Result<Amount> {
        Amount::sum(self.payees.iter().map(|s| s.amount_tiyn))
    }

    fn hash(&self) -> Hash32 {
        hash_parts(b"dtenge/oracle/terms/v1", &[&json_of(self)])
    }
}

/// Where an event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Registered; the sender has not held funds yet.
    Registered,
    /// Funds are held.
    Held,
    /// Released (and any remainder returned); nothing is held any more.
    Completed,
    /// A rejection event came; held funds went back to the sender.
    Rejected,
    /// The validity ran out; held funds went back to the sender.
    Expired,
}

impl EventStatus {
    pub fn is_final(self) -> bool {
        matches!(self, EventStatus::Completed | EventStatus::Rejected | EventStatus::Expired)
    }
}

/// What a record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Registered,
    Held,
    Released,
    Returned,
    Rejected,
    Expired,
}

/// The signed part of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub event_id: String,
    pub seq: u32,
    pub at_unix_ms: u64,
    pub action: Action,
    /// Held, released or returned by this step.
    pub amount_tiyn: Amount,
    /// Who was paid (releases).
    pub payouts: Vec<Share>,
    /// The ledger transaction that did it, if any.
    pub tx_id: Option<TxId>,
    /// The provider's id of the occurrence that caused it.
    pub occurrence_id: Option<String>,
    pub reason: Option<String>,
    /// A provider id, a node id, or `oracle` for its own decisions (expiry).
    pub by: String,
    /// Hash of the event's terms: every record is bound to what the event is.
    pub terms_hash: Hash32,
}

/// One entry of an event's history, signed by the oracle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub body: RecordBody,
    /// Ed25519 signature of the oracle over [`RecordBody::digest`].
    pub oracle_signature: Signature,
}

/// The version byte that starts a record body's encoding ([`RecordBody::encoded`]).
pub const RECORD_ENCODING_VERSION: u8 = 2;
/// The domain tag of a record's digest: what the oracle signs is a record, nothing else.
const RECORD_DOMAIN: &[u8] = b"dtenge/oracle/record/v2";

impl RecordBody {
    /// The explicit encoding of the record (`dtenge-wire`: little-endian integers,
    /// length-prefixed strings and lists, an option's presence byte): the version byte
    /// [`RECORD_ENCODING_VERSION`], then every field in declaration order. Also how the oracle
    /// role stores its records.
    pub fn encoded(&self) -> Vec<u8> {
        dtenge_wire::Encode::to_bytes(self)
    }

    /// What the oracle signs: the domain tag and [`RecordBody::encoded`], hashed. Never fails;
    /// a `Result` for the callers that verify records with it.
    pub fn digest(&self) -> Result<Hash32> {
        Ok(hash_parts(RECORD_DOMAIN, &[&self.encoded()]))
    }
}

impl dtenge_wire::Encode for Action {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.u8(match self {
            Action::Registered => 1,
            Action::Held => 2,
            Action::Released => 3,
            Action::Returned => 4,
            Action::Rejected => 5,
            Action::Expired => 6,
        });
    }
}

impl dtenge_wire::Decode for Action {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        match r.u8("record action")? {
            1 => Ok(Action::Registered),
            2 => Ok(Action::Held),
            3 => Ok(Action::Released),
            4 => Ok(Action::Returned),
            5 => Ok(Action::Rejected),
            6 => Ok(Action::Expired),
            tag => Err(dtenge_wire::DecodeError::UnknownTag { what: "record action", tag: u64::from(tag) }),
        }
    }
}

impl dtenge_wire::Encode for Share {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.put(&self.party);
        w.put(&self.amount_tiyn);
    }
}

impl dtenge_wire::Decode for Share {
    const ENCODED_BYTES_MIN: usize = <Party as dtenge_wire::Decode>::ENCODED_BYTES_MIN + 8;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        Ok(Share { party: r.get()?, amount_tiyn: r.get()? })
    }
}

impl dtenge_wire::Encode for RecordBody {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.u8(RECORD_ENCODING_VERSION);
        w.str(&self.event_id);
        w.u32(self.seq);
        w.u64(self.at_unix_ms);
        w.put(&self.action);
        w.put(&self.amount_tiyn);
        w.seq(&self.payouts);
        w.put(&self.tx_id);
        w.put(&self.occurrence_id);
        w.put(&self.reason);
        w.str(&self.by);
        w.put(&self.terms_hash);
    }
}

impl dtenge_wire::Decode for RecordBody {
    const ENCODED_BYTES_MIN: usize = 1 + 4 + 4 + 8 + 1 + 8 + 4 + 1 + 1 + 1 + 4 + 32;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        let version = r.u8("record version")?;
        if version != RECORD_ENCODING_VERSION {
            return Err(dtenge_wire::DecodeError::UnknownTag { what: "record version", tag: u64::from(version) });
        }
        Ok(RecordBody {
            event_id: r.string("record's event id")?,
            seq: r.u32("record seq")?,
            at_unix_ms: r.u64("record time")?,
            action: r.get()?,
            amount_tiyn: r.get()?,
            payouts: r.seq("record payouts", PAYEES_MAX)?,
            tx_id: r.get()?,
            occurrence_id: r.get()?,
            reason: r.get()?,
            by: r.string("record's author")?,
            terms_hash: r.get()?,
        })
    }
}

impl dtenge_wire::Encode for Record {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.put(&self.body);
        w.put(&self.oracle_signature);
    }
}

impl dtenge_wire::Decode for Record {
    const ENCODED_BYTES_MIN: usize = <RecordBody as dtenge_wire::Decode>::ENCODED_BYTES_MIN + 65;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        Ok(Record { body: r.get()?, oracle_signature: r.get()? })
    }
}

/// How a provider proves who it is: on `dtenge up`, the bearer token its registration issued;
/// on the oracle's own node, a client certificate of the NBK's root naming it
/// (`urn:dtenge:api:provider:<id>`), which the node's TLS checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    Token(&'a str),
    Certified(&'a str),
}

/// An event with its state and signed history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// What held tokens name ([`event_hash`] of the id).
    pub hash: Hash32,
    pub terms: EventTerms,
    pub status: EventStatus,
    /// Held now.
    pub held_tiyn: Amount,
    pub released_tiyn: Amount,
    pub returned_tiyn: Amount,
    /// Occurrences processed (releases and rejections).
    pub occurrences: u32,
    /// Why it was rejected or expired.
    pub reason: Option<String>,
    /// Persisted separately, one row per record.
    #[serde(skip)]
    pub records: Vec<Record>,
}

impl Event {
    /// The event without its history: cloning it costs the same however many records the
    /// event has (an infinite event may have many).
    pub fn summary(&self) -> Event {
        Event {
            id: self.id.clone(),
            hash: self.hash,
            terms: self.terms.clone(),
            status: self.status,
            held_tiyn: self.held_tiyn,
            released_tiyn: self.released_tiyn,
            returned_tiyn: self.returned_tiyn,
            occurrences: self.occurrences,
            reason: self.reason.clone(),
            records: Vec::new(),
        }
    }
}

/// A registration request, with its parties resolved to ledger addresses by the network.
#[derive(Clone, Debug)]
pub struct EventSpec {
    pub confirmed_by: Option<String>,
    pub reference: String,
    pub kind: EventKind,
    pub sender: Party,
    pub payees: Vec<Share>,
    pub valid_until_unix_ms: u64,
}

/// What an occurrence says, with its payees resolved.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The event happened. `payouts`: who is paid how much this time; `None` pays every payee
    /// its full share. A single event paying less returns the rest to the sender.
    Occurred { payouts: Option<Vec<Share>> },
    /// The provider refuses (e.g. the registry rejects the transfer): held funds go back.
    Rejected { reason: String },
}

/// An occurrence reported by a provider. `occurrence_id` makes it idempotent: the same id
/// again changes nothing and returns the first record.
#[derive(Clone, Debug)]
pub struct Occurrence {
    pub occurrence_id: String,
    pub outcome: Outcome,
}

/// A hold the oracle will confirm: `amount` of the sender's standard DT becomes held for
/// the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldPlan {
    pub event_id: String,
    pub event_hash: Hash32,
    pub sender: Party,
    pub amount: Amount,
}

/// A release (or return) the oracle will confirm: every held token of the event is spent
/// into exactly [`ReleasePlan::outputs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePlan {
    pub event_id: String,
    pub event_hash: Hash32,
    pub sender: Party,
    /// Everything held now: the release spends all of it.
    pub held: Amount,
    pub payouts: Vec<Share>,
    /// Back to the sender as standard DT.
    pub returned: Amount,
    /// Stays held (infinite events).
    pub kept: Amount,
    /// Released, Returned (rejection), or Expired.
    pub action: Action,
    pub occurrence_id: Option<String>,
    pub reason: Option<String>,
    pub by: String,
}

impl ReleasePlan {
    /// The outputs the release transaction must have, in this order.
    pub fn outputs(&self, issuer: dtenge_core::crypto::Address) -> Vec<Output> {
        let mut outputs: Vec<Output> =
            self.payouts.iter().map(|s| Output::standard(s.amount_tiyn, s.party.address, issuer)).collect();
        if !self.returned.is_zero() {
            outputs.push(Output::standard(self.returned, self.sender.address, issuer));
        }
        if !self.kept.is_zero() {
            outputs.push(Output::held(self.kept, self.sender.address, issuer, self.event_hash));
        }
        outputs
    }
}

/// What an occurrence leads to.
#[derive(Clone, Debug)]
pub enum Decision {
    /// This occurrence id was processed before: its first record.
    Repeated(Box<Record>),
    /// Held funds move: build the transaction, then [`Oracle::confirm_release`].
    Release(ReleasePlan),
    /// Nothing is held: the event only changes status.
    Change(Change),
}

/// A planned change of one event: its new state and the records it appends.
#[derive(Clone, Debug)]
pub struct Change {
    pub event: Event,
    pub records: Vec<Record>,
}

impl Change {
    /// The durable record of this change.
    pub fn writes(&self, batch: &mut WriteBatch) -> Result<()> {
        batch.put_value(EVENTS_TABLE, self.event.id.as_bytes(), &self.event)?;
        for record in &self.records {
            let mut key = self.event.id.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&record.body.seq.to_be_bytes());
            batch.put_value(RECORDS_TABLE, key, record)?;
        }
        Ok(())
    }
}

/// The oracle's state.
pub struct Oracle {
    key: NodeKey,
    providers: BTreeMap<String, Provider>,
    by_token: HashMap<Hash32, String>,
    events: BTreeMap<String, Event>,
    /// Occurrence ids seen per event, for idempotency.
    occurrence_ids: HashMap<String, HashSet<String>>,
    markings: BTreeMap<String, Marking>,
    invoices: BTreeMap<String, Invoice>,
    vat: vat::VatRegistry,
    contracts: BTreeMap<String, Contract>,
}

impl Oracle {
    /// A new oracle, signing with `key`.
    pub fn new(key: impl Into<NodeKey>) -> Oracle {
        let key = key.into();
        Oracle {
            key,
            providers: BTreeMap::new(),
            by_token: HashMap::new(),
            events: BTreeMap::new(),
            occurrence_ids: HashMap::new(),
            markings: BTreeMap::new(),
            invoices: BTreeMap::new(),
            vat: vat::VatRegistry::default(),
            contracts: BTreeMap::new(),
        }
    }

    /// The oracle stored in `store` (empty registries if it holds none yet), signing with
    /// `key`: the vault's, never stored here.
    pub fn load(store: &Store, key: NodeKey) -> Result<Oracle> {
        let mut oracle = Oracle::new(key);
        for (_, provider) in store.scan_values::<Provider>(PROVIDERS_TABLE)? {
            oracle.apply_provider(provider);
        }
        for (_, event) in store.scan_values::<Event>(EVENTS_TABLE)? {
            oracle.events.insert(event.id.clone(), event);
        }
        // Keys are (event id, big-endian seq): records come back in order.
        for (_, record) in store.scan_values::<Record>(RECORDS_TABLE)? {
            let event = oracle
                .events
                .get_mut(&record.body.event_id)
                .ok_or_else(|| unknown_row(RECORDS_TABLE, "a record of event", &record.body.event_id))?;
            if let Some(id) = &record.body.occurrence_id {
                oracle.occurrence_ids.entry(event.id.clone()).or_default().insert(id.clone());
            }
            event.records.push(record);
        }
        marking::load(&mut oracle, store)?;
        vat::load(&mut oracle, store)?;
        contract::load(&mut oracle, store)?;
        Ok(oracle)
    }

    pub fn public_key(&self) -> dtenge_core::crypto::PublicKey {
        self.key.public_key()
    }

    // ---- providers ----

    /// Register a provider that authenticates with `token` (the caller generates it and shows
    /// it once; only its hash is kept).
    pub fn plan_provider(
        &self,
        id: &str,
        name: &str,
        kind: ProviderKind,
        token: &str,
        now_ms: u64,
    ) -> Result<Provider> {
        ensure!(
            !id.is_empty()
                && id.len() <= PROVIDER_ID_LEN_MAX
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            MalformedInput,
            "a provider id has 1 to {PROVIDER_ID_LEN_MAX} letters, digits, '-' or '_'"
        );
        check_text("name", name)?;
        ensure!(!self.providers.contains_key(id), Conflict, "provider '{id}' is registered already");
        ensure!(self.providers.len() < PROVIDERS_MAX, LimitExceeded, "at most {PROVIDERS_MAX} providers");
        // The network generates the token (32 random bytes in hex), not the request.
        assert!(token.len() >= 32, "provider tokens have at least 32 characters");
        Ok(Provider {
            id: id.to_string(),
            name: name.trim().to_string(),
            kind,
            registered_at_unix_ms: now_ms,
            token_hash: token_hash(token),
        })
    }

    pub fn provider_writes(provider: &Provider, batch: &mut WriteBatch) -> Result<()> {
        batch.put_value(PROVIDERS_TABLE, provider.id.as_bytes(), provider)
    }

    pub fn apply_provider(&mut self, provider: Provider) {
        self.by_token.insert(provider.token_hash, provider.id.clone());
        self.providers.insert(provider.id.clone(), provider);
    }

    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// The provider calling with `who`: its bearer token, or its certificate's id (a
    /// provider certified but never registered here is refused).
    pub fn identify(&self, who: Credential<'_>) -> Result<&Provider> {
        match who {
            Credential::Token(token) => self.authenticate(token),
            Credential::Certified(id) => self.providers.get(id).ok_or_else(|| {
                Error::new(
                    ErrorCode::Unauthorized,
                    format!("provider '{id}' is not registered at the oracle (the NBK operator registers it)"),
                )
            }),
        }
    }

    /// The provider a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<&Provider> {
        self.by_token
            .get(&token_hash(token))
            .and_then(|id| self.providers.get(id))
            .ok_or_else(|| Error::new(ErrorCode::Unauthorized, "unknown provider token"))
    }

    // ---- events ----

    pub fn event(&self, event_id: &str) -> Result<&Event> {
        self.events.get(event_id).ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no oracle event {event_id}")))
    }

    pub fn events(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.events.values()
    }

    /// Register an event (step 1 of holding).
    pub fn plan_event(&self, provider: &Provider, spec: EventSpec, now_ms: u64) -> Result<Change> {
        check_text("reference", &spec.reference)?;
        let confirmed_by = spec.confirmed_by.unwrap_or_else(|| provider.id.clone());
        ensure!(
            self.providers.contains_key(&confirmed_by),
            NotFound,
            "no provider '{confirmed_by}' to confirm the event"
        );
        ensure!(!spec.payees.is_empty(), MalformedInput, "an event has at least one payee");
        ensure!(spec.payees.len() <= PAYEES_MAX, LimitExceeded, "an event has at most {PAYEES_MAX} payees");
        for share in &spec.payees {
            ensure!(!share.amount_tiyn.is_zero(), MalformedInput, "payee amounts must be positive");
            ensure!(
                share.party.address != spec.sender.address,
                MalformedInput,
                "the sender cannot be its own event's payee"
            );
        }
        let mut seen = HashSet::new();
        for share in &spec.payees {
            ensure!(seen.insert(share.party.address), MalformedInput, "payee {} is named twice", share.party.client_id);
        }
        ensure!(
            spec.valid_until_unix_ms > now_ms,
            MalformedInput,
            "the validity must end in the future (now {now_ms}, given {})",
            spec.valid_until_unix_ms
        );
        let id = format!("EV{:07}", self.events.len() + 1);
        // Ids count the events, which are never removed: a new id is free.
        assert!(!self.events.contains_key(&id), "event id {id} exists");
        let terms = EventTerms {
            provider: provider.id.clone(),
            confirmed_by,
            reference: spec.reference.trim().to_string(),
            kind: spec.kind,
            sender: spec.sender,
            payees: spec.payees,
            registered_at_unix_ms: now_ms,
            valid_until_unix_ms: spec.valid_until_unix_ms,
        };
        terms.occurrence_total()?;
        let event = Event {
            hash: event_hash(&id),
            id,
            terms,
            status: EventStatus::Registered,
            held_tiyn: Amount::ZERO,
            released_tiyn: Amount::ZERO,
            returned_tiyn: Amount::ZERO,
            occurrences: 0,
            reason: None,
            records: Vec::new(),
        };
        let mut change = Change { event, records: Vec::new() };
        self.record(&mut change, Action::Registered, Amount::ZERO, Vec::new(), None, None, None, &provider.id, now_ms)?;
        Ok(change)
    }

    /// Check that `event_id` can be held by its sender now; `amount` is required for an
    /// infinite event (the total to hold) and must equal the event's total for a single one.
    pub fn plan_hold(&self, event_id: &str, amount: Option<Amount>, now_ms: u64) -> Result<HoldPlan> {
        let event = self.event(event_id)?;
        ensure!(
            now_ms < event.terms.valid_until_unix_ms,
            EventExpired,
            "event {event_id} expired at {} ms",
            event.terms.valid_until_unix_ms
        );
        let total = event.terms.occurrence_total()?;
        let amount = match (event.terms.kind, event.status) {
            (_, status) if status.is_final() => bail!(Conflict, "event {event_id} is {status:?}: it cannot be held"),
            (EventKind::Single, EventStatus::Held) => {
                bail!(Conflict, "event {event_id} is single and held already: no re-hold")
            }
            (EventKind::Single, _) => {
                ensure!(
                    amount.is_none_or(|a| a == total),
                    MalformedInput,
                    "a single event holds exactly its amount, {total}"
                );
                total
            }
            (EventKind::Infinite, _) => {
                let amount = amount.unwrap_or(total);
                ensure!(!amount.is_zero(), MalformedInput, "the amount to hold must be positive");
                amount
            }
        };
        Ok(HoldPlan {
            event_id: event_id.to_string(),
            event_hash: event.hash,
            sender: event.terms.sender.clone(),
            amount,
        })
    }

    /// Confirm the hold transaction a node built for `plan`: sign it if it holds exactly
    /// `plan.amount` on the sender's account for this event and nothing else programmed.
    pub fn confirm_hold(
        &self,
        plan: &HoldPlan,
        tx: &Transaction,
        by: &str,
        now_ms: u64,
    ) -> Result<(Change, Attestation)> {
        let event = self.event(&plan.event_id)?;
        ensure!(tx.body.command == Command::Transfer, Forbidden, "a hold is a transfer");
        ensure!(
            tx.body.inputs.iter().all(|i| i.output.policy.is_standard()),
            Forbidden,
            "a hold spends standard DT only"
        );
        let mut held = Amount::ZERO;
        for output in tx.body.outputs.iter().filter(|o| !o.policy.is_standard()) {
            ensure!(
                output.policy.held_for() == Some(&plan.event_hash) && output.owner == plan.sender.address,
                Forbidden,
                "the hold transaction holds tokens for another event or account"
            );
            held = held.checked_add(output.amount_tiyn)?;
        }
        ensure!(held == plan.amount, Forbidden, "the hold transaction holds {held}, the event needs {}", plan.amount);
        let mut change = Change { event: without_records(event), records: Vec::new() };
        change.event.status = EventStatus::Held;
        change.event.held_tiyn = change.event.held_tiyn.checked_add(held)?;
        self.record(&mut change, Action::Held, held, Vec::new(), Some(tx.id()), None, None, by, now_ms)?;
        Ok((change, self.attest(tx)))
    }

    /// What an occurrence reported by `provider` does.
    pub fn plan_occurrence(
        &self,
        provider: &Provider,
        event_id: &str,
        occurrence: Occurrence,
        now_ms: u64,
    ) -> Result<Decision> {
        let event = self.event(event_id)?;
        ensure!(
            provider.id == event.terms.confirmed_by,
            Forbidden,
            "event {event_id} is confirmed by '{}', not '{}'",
            event.terms.confirmed_by,
            provider.id
        );
        check_text("occurrence id", &occurrence.occurrence_id)?;
        if self.occurrence_ids.get(event_id).is_some_and(|ids| ids.contains(&occurrence.occurrence_id)) {
            let first = event
                .records
                .iter()
                .find(|r| r.body.occurrence_id.as_deref() == Some(occurrence.occurrence_id.as_str()))
                .expect("an occurrence id is indexed from its event's records");
            return Ok(Decision::Repeated(Box::new(first.clone())));
        }
        ensure!(
            event.status != EventStatus::Expired,
            EventExpired,
            "event {event_id} expired; its held funds went back to the sender"
        );
        ensure!(!event.status.is_final(), Conflict, "event {event_id} is {:?} already", event.status);
        ensure!(
            event.records.len() + 2 <= RECORDS_PER_EVENT_MAX,
            LimitExceeded,
            "event {event_id} has reached {RECORDS_PER_EVENT_MAX} records"
        );
        ensure!(
            now_ms < event.terms.valid_until_unix_ms,
            EventExpired,
            "event {event_id} expired at {} ms; held funds return to the sender",
            event.terms.valid_until_unix_ms
        );
        let id = Some(occurrence.occurrence_id);
        match occurrence.outcome {
            Outcome::Rejected { reason } => {
                check_text("reason", &reason)?;
                self.plan_return(event, Action::Rejected, reason, id, &provider.id, now_ms)
            }
            Outcome::Occurred { payouts } => {
                ensure!(
                    event.status == EventStatus::Held && !event.held_tiyn.is_zero(),
                    Conflict,
                    "event {event_id} has no funds held yet"
                );
                let payouts = match payouts {
                    None => event.terms.payees.clone(),
                    Some(payouts) => check_payouts(event, payouts)?,
                };
                let paid = Amount::sum(payouts.iter().map(|s| s.amount_tiyn))?;
                ensure!(!paid.is_zero(), MalformedInput, "an occurrence pays something");
                let rest = event.held_tiyn.checked_sub(paid).map_err(|_| {
                    Error::new(
                        ErrorCode::LimitExceeded,
                        format!("event {event_id} holds {}, the occurrence pays {paid}", event.held_tiyn),
                    )
                })?;
                let (returned, kept) = match event.terms.kind {
                    EventKind::Single => (rest, Amount::ZERO),
                    EventKind::Infinite => (Amount::ZERO, rest),
                };
                Ok(Decision::Release(ReleasePlan {
                    event_id: event.id.clone(),
                    event_hash: event.hash,
                    sender: event.terms.sender.clone(),
                    held: event.held_tiyn,
                    payouts,
                    returned,
                    kept,
                    action: Action::Released,
                    occurrence_id: id,
                    reason: None,
                    by: provider.id.clone(),
                }))
            }
        }
    }

    /// Events whose validity ran out and that still hold funds or wait for them.
    pub fn due_expiries(&self, now_ms: u64) -> Vec<String> {
        self.events
            .values()
            .filter(|e| !e.status.is_final() && e.terms.valid_until_unix_ms <= now_ms)
            .map(|e| e.id.clone())
            .collect()
    }

    /// Expire an event whose validity ran out: return what is held.
    pub fn plan_expiry(&self, event_id: &str, now_ms: u64) -> Result<Decision> {
        let event = self.event(event_id)?;
        ensure!(
            !event.status.is_final() && event.terms.valid_until_unix_ms <= now_ms,
            Conflict,
            "event {event_id} is not due to expire"
        );
        let reason = format!("no event before the validity ended at {} ms", event.terms.valid_until_unix_ms);
        self.plan_return(event, Action::Expired, reason, None, "oracle", now_ms)
    }

    fn plan_return(
        &self,
        event: &Event,
        action: Action,
        reason: String,
        occurrence_id: Option<String>,
        by: &str,
        now_ms: u64,
    ) -> Result<Decision> {
        if event.held_tiyn.is_zero() {
            let mut change = Change { event: without_records(event), records: Vec::new() };
            change.event.status = final_status(action);
            change.event.reason = Some(reason.clone());
            self.record(&mut change, action, Amount::ZERO, Vec::new(), None, occurrence_id, Some(reason), by, now_ms)?;
            return Ok(Decision::Change(change));
        }
        Ok(Decision::Release(ReleasePlan {
            event_id: event.id.clone(),
            event_hash: event.hash,
            sender: event.terms.sender.clone(),
            held: event.held_tiyn,
            payouts: Vec::new(),
            returned: event.held_tiyn,
            kept: Amount::ZERO,
            action,
            occurrence_id,
            reason: Some(reason),
            by: by.to_string(),
        }))
    }

    /// Confirm the release transaction a node built for `plan`: sign it if it spends exactly
    /// the event's held tokens into exactly the planned outputs.
    pub fn confirm_release(
        &self,
        plan: &ReleasePlan,
        tx: &Transaction,
        issuer: dtenge_core::crypto::Address,
        now_ms: u64,
    ) -> Result<(Change, Attestation)> {
        let event = self.event(&plan.event_id)?;
        ensure!(event.held_tiyn == plan.held, Conflict, "event {} changed since the release was planned", event.id);
        ensure!(tx.body.command == Command::Transfer, Forbidden, "a release is a transfer");
        let mut spent = Amount::ZERO;
        for input in &tx.body.inputs {
            ensure!(
                input.output.policy.held_for() == Some(&plan.event_hash) && input.output.owner == plan.sender.address,
                Forbidden,
                "the release spends a token not held for event {}",
                plan.event_id
            );
            spent = spent.checked_add(input.output.amount_tiyn)?;
        }
        ensure!(spent == plan.held, Forbidden, "the release spends {spent}, the event holds {}", plan.held);
        ensure!(
            tx.body.outputs == plan.outputs(issuer),
            Forbidden,
            "the release transaction's outputs differ from the oracle's decision"
        );
        let paid = Amount::sum(plan.payouts.iter().map(|s| s.amount_tiyn))?;
        let mut change = Change { event: without_records(event), records: Vec::new() };
        let e = &mut change.event;
        e.held_tiyn = plan.kept;
        e.released_tiyn = e.released_tiyn.checked_add(paid)?;
        e.returned_tiyn = e.returned_tiyn.checked_add(plan.returned)?;
        if plan.occurrence_id.is_some() {
            e.occurrences += 1;
        }
        e.status = match plan.action {
            Action::Released if plan.kept.is_zero() => EventStatus::Completed,
            Action::Released => EventStatus::Held,
            other => final_status(other),
        };
        if plan.action != Action::Released {
            e.reason = plan.reason.clone();
        }
        let tx_id = Some(tx.id());
        let id = plan.occurrence_id.clone();
        if plan.action == Action::Released {
            self.record(
                &mut change,
                Action::Released,
                paid,
                plan.payouts.clone(),
                tx_id,
                id.clone(),
                None,
                &plan.by,
                now_ms,
            )?;
            if !plan.returned.is_zero() {
                let reason = Some("partial release: the rest returns to the sender".to_string());
                self.record(
                    &mut change,
                    Action::Returned,
                    plan.returned,
                    Vec::new(),
                    tx_id,
                    None,
                    reason,
                    &plan.by,
                    now_ms,
                )?;
            }
        } else {
            self.record(
                &mut change,
                plan.action,
                plan.returned,
                Vec::new(),
                tx_id,
                id,
                plan.reason.clone(),
                &plan.by,
                now_ms,
            )?;
        }
        Ok((change, self.attest(tx)))
    }

    /// Apply a committed change.
    pub fn apply(&mut self, change: Change) {
        let Change { mut event, records } = change;
        let previous = self.events.remove(&event.id).map(|e| e.records).unwrap_or_default();
        event.records = previous;
        for record in records {
            if let Some(id) = &record.body.occurrence_id {
                self.occurrence_ids.entry(event.id.clone()).or_default().insert(id.clone());
            }
            event.records.push(record);
        }
        self.events.insert(event.id.clone(), event);
    }

    /// Verify a record's signature with the oracle's public key.
    pub fn verify_record(&self, record: &Record) -> Result<()> {
        dtenge_core::crypto::verify(&self.key.public_key(), &record.body.digest()?.0, &record.oracle_signature)
    }

    pub(crate) fn attest(&self, tx: &Transaction) -> Attestation {
        let public_key = self.key.public_key();
        Attestation { public_key, signature: self.key.sign(&node_message(&tx.id()).0), batch: None }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        change: &mut Change,
        action: Action,
        amount: Amount,
        payouts: Vec<Share>,
        tx_id: Option<TxId>,
        occurrence_id: Option<String>,
        reason: Option<String>,
        by: &str,
        now_ms: u64,
    ) -> Result<()> {
        let seq = (self.events.get(&change.event.id).map_or(0, |e| e.records.len()) + change.records.len()) as u32;
        let body = RecordBody {
            event_id: change.event.id.clone(),
            seq,
            at_unix_ms: now_ms,
            action,
            amount_tiyn: amount,
            payouts,
            tx_id,
            occurrence_id,
            reason,
            by: by.to_string(),
            terms_hash: change.event.terms.hash(),
        };
        let oracle_signature = self.key.sign(&body.digest()?.0);
        change.records.push(Record { body, oracle_signature });
        Ok(())
    }
}

/// Refuse a provider of another kind than `kind`.
pub(crate) fn provider_is(provider: &Provider, kind: ProviderKind) -> Result<()> {
    ensure!(
        provider.kind == kind,
        Forbidden,
        "provider '{}' is a {:?}; only a {kind:?} may do this",
        provider.id,
        provider.kind
    );
    Ok(())
}

fn final_status(action: Action) -> EventStatus {
    match action {
        Action::Rejected => EventStatus::Rejected,
        Action::Expired => EventStatus::Expired,
        _ => EventStatus::Completed,
    }
}

fn without_records(event: &Event) -> Event {
    event.summary()
}

/// A partial payout names payees of the event, each at most its share.
fn check_payouts(event: &Event, payouts: Vec<Share>) -> Result<Vec<Share>> {
    ensure!(!payouts.is_empty(), MalformedInput, "name at least one payee to pay");
    let mut seen = HashSet::new();
    for share in &payouts {
        let Some(allowed) = event.terms.payees.iter().find(|p| p.party.address == share.party.address) else {
            bail!(RecipientNotAllowed, "{} is not a payee of event {}", share.party.client_id, event.id);
        };
        ensure!(seen.insert(share.party.address), MalformedInput, "payee {} is named twice", share.party.client_id);
        ensure!(!share.amount_tiyn.is_zero(), MalformedInput, "payout amounts must be positive");
        ensure!(
            share.amount_tiyn <= allowed.amount_tiyn,
            LimitExceeded,
            "{} may receive at most {} from event {}",
            share.party.client_id,
            allowed.amount_tiyn,
            event.id
        );
    }
    Ok(payouts)
}

fn check_text(what: &str, text: &str) -> Result<()> {
    let trimmed = text.trim();
    ensure!(
        !trimmed.is_empty() && trimmed.chars().count() <= TEXT_LEN_MAX,
        MalformedInput,
        "the {what} has 1 to {TEXT_LEN_MAX} characters"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::{Address, SecretKey};
    use dtenge_core::token::Input;
    use dtenge_core::tx::TxBody;

    fn party(n: u8) -> Party {
        Party {
            bank: "steppe".into(),
            client_id: format!("client{n}"),
            address: SecretKey::from_seed([n; 32]).address(),
        }
    }

    fn tiyn(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    fn issuer() -> Address {
        SecretKey::from_seed([200; 32]).address()
    }

    fn setup(kind: EventKind) -> (Oracle, String) {
        let mut oracle = Oracle::new(SecretKey::from_seed([50; 32]));
        let provider = oracle
            .plan_provider("portal", "Contract portal", ProviderKind::ContractPortal, &"t".repeat(40), 0)
            .unwrap();
        oracle.apply_provider(provider);
        let provider = oracle.authenticate(&"t".repeat(40)).unwrap().clone();
        let spec = EventSpec {
            confirmed_by: None,
            reference: "VIN 1".into(),
            kind,
            sender: party(1),
            payees: vec![
                Share { party: party(2), amount_tiyn: tiyn(900) },
                Share { party: party(3), amount_tiyn: tiyn(100) },
            ],
            valid_until_unix_ms: 1_000,
        };
        let change = oracle.plan_event(&provider, spec, 10).unwrap();
        let id = change.event.id.clone();
        oracle.apply(change);
        (oracle, id)
    }

    fn hold_tx(plan: &HoldPlan, funding: Amount) -> Transaction {
        let input = Input {
            tx_id: TxId(Hash32([9; 32])),
            index: 0,
            output: Output::standard(funding, plan.sender.address, issuer()),
        };
        let mut outputs = vec![Output::held(plan.amount, plan.sender.address, issuer(), plan.event_hash)];
        if funding > plan.amount {
            outputs.push(Output::standard(funding.checked_sub(plan.amount).unwrap(), plan.sender.address, issuer()));
        }
        Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input], outputs, nonce: 1 })
    }

    fn release_tx(plan: &ReleasePlan, held: &Transaction) -> Transaction {
        let inputs = held.outputs_as_inputs().into_iter().filter(|i| !i.output.policy.is_standard()).collect();
        Transaction::new(TxBody { command: Command::Transfer, inputs, outputs: plan.outputs(issuer()), nonce: 2 })
    }

    #[test]
    fn single_event_partial_release_pays_named_payees_and_returns_the_rest() {
        let (mut oracle, id) = setup(EventKind::Single);
        let plan = oracle.plan_hold(&id, None, 20).unwrap();
        assert_eq!(plan.amount, tiyn(1_000));
        let held = hold_tx(&plan, tiyn(1_500));
        let (change, attestation) = oracle.confirm_hold(&plan, &held, "steppe", 20).unwrap();
        assert_eq!(attestation.public_key, oracle.public_key());
        oracle.apply(change);
        assert_eq!(oracle.plan_hold(&id, None, 21).unwrap_err().code, ErrorCode::Conflict, "no re-hold");

        let provider = oracle.authenticate(&"t".repeat(40)).unwrap().clone();
        let occurrence = Occurrence {
            occurrence_id: "o1".into(),
            outcome: Outcome::Occurred { payouts: Some(vec![Share { party: party(2), amount_tiyn: tiyn(900) }]) },
        };
        let Decision::Release(plan) = oracle.plan_occurrence(&provider, &id, occurrence.clone(), 30).unwrap() else {
            panic!("a release")
        };
        assert_eq!(plan.returned, tiyn(100));
        let tx = release_tx(&plan, &held);
        let mut tampered = tx.clone();
        tampered.body.outputs[0].owner = party(4).address;
        assert_eq!(oracle.confirm_release(&plan, &tampered, issuer(), 30).unwrap_err().code, ErrorCode::Forbidden);
        let (change, _) = oracle.confirm_release(&plan, &tx, issuer(), 30).unwrap();
        oracle.apply(change);
        let event = oracle.event(&id).unwrap();
        assert_eq!(event.status, EventStatus::Completed);
        assert_eq!((event.released_tiyn, event.returned_tiyn, event.held_tiyn), (tiyn(900), tiyn(100), Amount::ZERO));
        let actions: Vec<Action> = event.records.iter().map(|r| r.body.action).collect();
        assert_eq!(actions, [Action::Registered, Action::Held, Action::Released, Action::Returned]);
        for record in &event.records {
            oracle.verify_record(record).unwrap();
        }
        // The same occurrence again: its first record, nothing new.
        assert!(matches!(oracle.plan_occurrence(&provider, &id, occurrence, 31).unwrap(), Decision::Repeated(_)));
    }

    #[test]
    fn infinite_event_releases_per_occurrence_until_the_held_amount_runs_out_then_expiry_returns() {
        let (mut oracle, id) = setup(EventKind::Infinite);
        let provider = oracle.authenticate(&"t".repeat(40)).unwrap().clone();
        let plan = oracle.plan_hold(&id, Some(tiyn(2_500)), 20).unwrap();
        let mut held = hold_tx(&plan, tiyn(2_500));
        let (change, _) = oracle.confirm_hold(&plan, &held, "steppe", 20).unwrap();
        oracle.apply(change);
        for (n, left) in [(1, 1_500), (2, 500)] {
            let occurrence =
                Occurrence { occurrence_id: format!("o{n}"), outcome: Outcome::Occurred { payouts: None } };
            let Decision::Release(plan) = oracle.plan_occurrence(&provider, &id, occurrence, 30 + n).unwrap() else {
                panic!("a release")
            };
            assert_eq!(plan.kept, tiyn(left));
            let tx = release_tx(&plan, &held);
            let (change, _) = oracle.confirm_release(&plan, &tx, issuer(), 30 + n).unwrap();
            oracle.apply(change);
            held = tx;
        }
        let third = Occurrence { occurrence_id: "o3".into(), outcome: Outcome::Occurred { payouts: None } };
        assert_eq!(oracle.plan_occurrence(&provider, &id, third, 40).unwrap_err().code, ErrorCode::LimitExceeded);
        assert!(oracle.due_expiries(999).is_empty());
        assert_eq!(oracle.due_expiries(1_000), vec![id.clone()]);
        let late = Occurrence { occurrence_id: "o4".into(), outcome: Outcome::Occurred { payouts: None } };
        assert_eq!(oracle.plan_occurrence(&provider, &id, late, 1_000).unwrap_err().code, ErrorCode::EventExpired);
        let Decision::Release(plan) = oracle.plan_expiry(&id, 1_000).unwrap() else { panic!("a return") };
        assert_eq!((plan.returned, plan.action), (tiyn(500), Action::Expired));
        let tx = release_tx(&plan, &held);
        let (change, _) = oracle.confirm_release(&plan, &tx, issuer(), 1_000).unwrap();
        oracle.apply(change);
        let event = oracle.event(&id).unwrap();
        assert_eq!(event.status, EventStatus::Expired);
        assert_eq!((event.released_tiyn, event.returned_tiyn), (tiyn(2_000), tiyn(500)));
    }

    #[test]
    fn occurrences_are_checked() {
        let (mut oracle, id) = setup(EventKind::Single);
        let provider = oracle.authenticate(&"t".repeat(40)).unwrap().clone();
        let early = Occurrence { occurrence_id: "o1".into(), outcome: Outcome::Occurred { payouts: None } };
        assert_eq!(oracle.plan_occurrence(&provider, &id, early, 20).unwrap_err().code, ErrorCode::Conflict);
        let plan = oracle.plan_hold(&id, None, 20).unwrap();
        let (change, _) = oracle.confirm_hold(&plan, &hold_tx(&plan, tiyn(1_000)), "steppe", 20).unwrap();
        oracle.apply(change);
        let stranger = Occurrence {
            occurrence_id: "o2".into(),
            outcome: Outcome::Occurred { payouts: Some(vec![Share { party: party(7), amount_tiyn: tiyn(1) }]) },
        };
        assert_eq!(
            oracle.plan_occurrence(&provider, &id, stranger, 21).unwrap_err().code,
            ErrorCode::RecipientNotAllowed
        );
        let too_much = Occurrence {
            occurrence_id: "o3".into(),
            outcome: Outcome::Occurred { payouts: Some(vec![Share { party: party(3), amount_tiyn: tiyn(101) }]) },
        };
        assert_eq!(oracle.plan_occurrence(&provider, &id, too_much, 21).unwrap_err().code, ErrorCode::LimitExceeded);
        assert_eq!(oracle.authenticate("wrong").unwrap_err().code, ErrorCode::Unauthorized);
        let reject =
            Occurrence { occurrence_id: "o4".into(), outcome: Outcome::Rejected { reason: "VIN mismatch".into() } };
        let Decision::Release(plan) = oracle.plan_occurrence(&provider, &id, reject, 22).unwrap() else { panic!() };
        assert_eq!((plan.returned, plan.action, plan.payouts.len()), (tiyn(1_000), Action::Rejected, 0));
    }

    /// What is signed is the record's explicit encoding, fixed byte for byte: a change of a
    /// Rust struct cannot change it silently; it decodes back, and a cut or a version it does
    /// not know is refused.
    #[test]
    fn a_record_body_is_encoded_explicitly_and_its_digest_covers_every_field() {
        use dtenge_wire::{Decode, Encode};
        let body = RecordBody {
            event_id: "EV1".into(),
            seq: 2,
            at_unix_ms: 3,
            action: Action::Released,
            amount_tiyn: tiyn(5),
            payouts: vec![Share {
                party: Party { bank: "b".into(), client_id: String::new(), address: Address(Hash32([7; 32])) },
                amount_tiyn: tiyn(5),
            }],
            tx_id: Some(TxId(Hash32([8; 32]))),
            occurrence_id: Some("o".into()),
            reason: None,
            by: "p".into(),
            terms_hash: Hash32([9; 32]),
        };
        let mut expected = vec![RECORD_ENCODING_VERSION, 3, 0, 0, 0, b'E', b'V', b'1', 2, 0, 0, 0];
        expected.extend(3u64.to_le_bytes());
        expected.push(3);
        expected.extend(5u64.to_le_bytes());
        expected.extend([1, 0, 0, 0, 1, 0, 0, 0, b'b', 0, 0, 0, 0]);
        expected.extend([7; 32]);
        expected.extend(5u64.to_le_bytes());
        expected.push(1);
        expected.extend([8; 32]);
        expected.extend([1, 1, 0, 0, 0, b'o', 0, 1, 0, 0, 0, b'p']);
        expected.extend([9; 32]);
        assert_eq!(body.encoded(), expected);
        assert_eq!(RecordBody::from_bytes(&expected).unwrap(), body);
        for cut in [0, 1, expected.len() - 1] {
            assert!(RecordBody::from_bytes(&expected[..cut]).is_err());
        }
        let mut old = expected.clone();
        old[0] = 1;
        assert!(RecordBody::from_bytes(&old).is_err(), "another version is not this encoding");
        let key = SecretKey::from_seed([50; 32]);
        let record = Record { oracle_signature: key.sign(&body.digest().unwrap().0), body: body.clone() };
        assert_eq!(Record::from_bytes(&record.to_bytes()).unwrap(), record);
        let mut changed = body.clone();
        changed.reason = Some(String::new());
        assert_ne!(changed.digest().unwrap(), body.digest().unwrap());
    }

    /// The registries are fjall rows, not checksummed by the store: a record of an event the
    /// store does not have is corrupt storage, refused with `STORAGE_FAILURE` at start.
    #[test]
    fn a_record_of_an_event_not_in_the_store_refuses_to_open() {
        let (oracle, id) = setup(EventKind::Single);
        let store = Store::open_simulated(dtenge_store::SimDisk::new(), &TABLES).unwrap();
        let mut batch = WriteBatch::new();
        let record = &oracle.event(&id).unwrap().records[0];
        batch.put_value(RECORDS_TABLE, id.as_bytes().to_vec(), record).unwrap();
        store.commit(batch).unwrap();
        let refused = Oracle::load(&store, oracle.key.clone()).err().expect("an orphan record is refused");
        assert_eq!(refused.code, ErrorCode::StorageFailure, "{refused}");
        assert!(refused.message.contains(&format!("a record of event {id}")), "{refused}");
    }
}
