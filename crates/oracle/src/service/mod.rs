//! The oracle as a role: holding events registered by providers, the hold and release
//! transactions of the banks checked against them and attested, and the registry changed only
//! by the certificates the banks deliver.
//!
//! The message sequence (`docs/ARCHITECTURE.md`, "Hold and release"):
//!
//! 1. A provider registers an event ([`OracleService::register_event`]): sender (its bank and
//!    address), payees with their shares, validity.
//! 2. The sender's bank builds the hold (the event's amount becomes `Held { event }` on the
//!    sender's account) and sends [`AttestRequest`]; the oracle checks it against the event
//!    ([`check`]) and writes its decision **before** it answers [`AttestReply`]: attested (the
//!    event now waits for this transaction) or refused. Decisions are final per transaction
//!    id, so a copy of a request arriving late is answered as the first was and an event never
//!    waits for a transaction its bank dropped.
//! 3. The bank notarizes the hold and delivers the certified transaction on its numbered
//!    stream to the oracle ([`Deliver`]); the oracle applies it once (the event is held) and
//!    acknowledges.
//! 4. The provider confirms (or rejects) the event ([`OracleService::confirm_event`]): the
//!    oracle plans the release (payees' outputs, the rest back to the sender), writes it, and
//!    sends the holding bank a [`ReleaseOrder`], again on every [`OracleService::tick`] until
//!    the bank asks to attest that release.
//! 5. The release is attested, notarized, delivered to the payee banks and the oracle, and
//!    applied here from its certificate, once.
//!
//! A transaction the notary refused for good is given up by its bank ([`Abandon`]): the event
//! waits for nothing again (a hold may be asked again; a release is ordered again under the
//! next attempt, so its transaction is a new one).
//!
//! Fail-stop: when a durable commit fails, the role answers nothing more until it is reopened
//! from its store (its memory may no longer match its disk). One lock guards the state from a
//! step's plan to its apply: programmed payments are few next to plain ones.

pub mod asked;
pub mod check;
pub mod notices;
pub mod programmed;
pub mod records;
pub mod registry;
pub mod rows;

pub use asked::{marking_concerns, marking_seen_by, EventImage, HOLDS_ANSWERED_MAX};
pub use check::Confirmation;
pub use notices::{Notice, NoticeKind, NoticePage, NOTICES_KEPT_MAX, NOTICES_PAGE_MAX, ROLE_NOTICES_TABLE};
pub use records::ROLE_RECORDS_TABLE;
pub use rows::{tables, EventStatus, HoldEvent, Payee, Release, TxDecision, PAYEES_MAX, TEXT_BYTES_MAX};
pub use rows::{ROLE_DECISIONS_TABLE, ROLE_EVENTS_TABLE, ROLE_META_TABLE};

use crate::{Action, Record};
use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{CommitCertificate, CommitProof, CompactTx};
use dtenge_core::crypto::{Address, Hash32, NodeKey, PublicKey};
use dtenge_core::token::TxId;
use dtenge_core::tx::{node_message, Attestation, Transaction};
use dtenge_core::validate::TxIds;
use dtenge_core::{ensure, Amount, Error, ErrorCode, Result};
use dtenge_store::{Store, WriteBatch};
use dtenge_transport::Transport;
use dtenge_wire::{
    Abandon, AttestPurpose, AttestReply, AttestRequest, Deliver, DeliverAck, Encode, Envelope, Message, Payload,
    ReleaseOrder, RoleId, Verdict,
};
use parking_lot::Mutex;
use records::{Records, Step, BY_ORACLE};
use rows::{stored, NEXT_EVENT_KEY};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A release order not answered after this long is sent again.
pub const RESEND_AFTER_MS: u64 = 200;
/// Most events the role keeps.
pub const EVENTS_MAX: usize = 1_000_000;
/// Most transaction decisions the role keeps: beyond it, new requests are refused
/// `LIMIT_EXCEEDED` (not written) until the operators archive old ones.
pub const DECISIONS_MAX: usize = 10_000_000;

/// `notes:<event id>` in [`ROLE_META_TABLE`] -> the event's [`EventNotes`]: written with the
/// event (and again with a rejection), beside the event's row so that the row's encoding
/// stays as it is. An event registered before notes were kept has none (the defaults).
const NOTES_PREFIX: &[u8] = b"notes:";
/// `event_key:<key>` in [`ROLE_META_TABLE`] -> the request's fingerprint and the event id: a
/// registration's idempotency key, written with the event.
const EVENT_KEY_PREFIX: &[u8] = b"event_key:";
/// Longest idempotency key of a registration, in bytes (the banks' bound).
pub const EVENT_KEY_BYTES_MAX: usize = 128;
/// `kind:<event id>` in [`ROLE_META_TABLE`] -> one byte, 2: the event is infinite. Written with
/// an infinite event's registration; a single event has none (its row's encoding stays as it
/// was).
const KIND_PREFIX: &[u8] = b"kind:";
const KIND_INFINITE: u8 = 2;
/// Most records one event keeps: an infinite event adds one per hold and per occurrence.
pub const RECORDS_PER_EVENT_MAX: u32 = 100_000;

fn meta_key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// What the role keeps of an event beside its row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventNotes {
    /// The provider whose confirmations release or reject the event, when another than the
    /// one that registered it (the vehicle registry for a sale the contract portal registered).
    pub confirmed_by: Option<String>,
    /// When it was registered (0: before notes were kept).
    pub registered_at_ms: u64,
    /// The occurrence its provider reported (a single event takes one): the same id again is
    /// answered as repeated, nothing done again.
    pub occurrence_id: Option<String>,
    /// Why its provider rejected it.
    pub reason: Option<String>,
    /// The client ids its provider named its parties by: what the oracle's own views show
    /// across processes, where the directory tells no one whose an address is (`None`:
    /// registered before names were kept, or without them).
    pub names: Option<PartyNames>,
}

/// The client ids a provider named an event's parties by, in the event's order of payees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartyNames {
    pub sender: String,
    pub payees: Vec<String>,
}

impl Encode for PartyNames {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.str(&self.sender);
        w.u32(u32::try_from(self.payees.len()).expect("at most PAYEES_MAX payees"));
        for payee in &self.payees {
            w.str(payee);
        }
    }
}

impl dtenge_wire::Decode for PartyNames {
    const ENCODED_BYTES_MIN: usize = 4 + 4;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        let sender = r.string("sender's client id")?;
        let count = r.count("payees' client ids", 4)?;
        if count > PAYEES_MAX {
            let reason = format!("{count} payees, more than {PAYEES_MAX}");
            return Err(dtenge_wire::DecodeError::Invalid { what: "payees' client ids", reason });
        }
        let payees = (0..count).map(|_| r.string("payee's client id")).collect::<std::result::Result<_, _>>()?;
        Ok(PartyNames { sender, payees })
    }
}

/// A provider's occurrence as the role keeps it in the event's notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OccurrenceNote {
    /// The provider's id of the occurrence: unique per occurrence of the event.
    pub occurrence_id: String,
    /// Why, for a rejection.
    pub reason: Option<String>,
}

/// What a provider's occurrence did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// Decided now: the release ordered, or the event ended.
    New,
    /// This occurrence was reported before: nothing done again.
    Repeated,
}

impl Encode for EventNotes {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.put(&self.confirmed_by);
        w.u64(self.registered_at_ms);
        w.put(&self.occurrence_id);
        w.put(&self.reason);
        w.put(&self.names);
    }
}

impl dtenge_wire::Decode for EventNotes {
    const ENCODED_BYTES_MIN: usize = 1 + 8 + 1 + 1;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        Ok(EventNotes {
            confirmed_by: r.get()?,
            registered_at_ms: r.u64("registered at")?,
            occurrence_id: r.get()?,
            reason: r.get()?,
            // Notes written before names were kept end here.
            names: if r.remaining() == 0 { None } else { r.get()? },
        })
    }
}

/// How a provider's registration may differ from the plain one ([`OracleService::register_event`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registration {
    /// The provider whose confirmations release or reject the event; by default the one that
    /// registers it.
    pub confirmed_by: Option<String>,
    /// An idempotency key and the fingerprint of its request: the same key and request again
    /// answer the event registered first, another request `IDEMPOTENCY_KEY_REUSED`.
    pub idem: Option<(String, Hash32)>,
    /// An infinite event: held once or more (any amount), released per occurrence (each
    /// pays the payees' shares, or the payouts named) until what is held runs out; the rest
    /// stays held until a rejection or the end of the validity returns it.
    pub infinite: bool,
    /// The client ids the provider named the parties by, kept in the event's notes.
    pub names: Option<PartyNames>,
}

/// A hold the role would attest now, as far as the event tells ([`OracleService::plan_hold`]):
/// the event, and the amount to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldPlan {
    pub event: HoldEvent,
    pub amount: Amount,
    pub infinite: bool,
}

/// A provider's registration of a holding event, its parties resolved to banks and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub reference: String,
    pub sender_bank: String,
    pub sender: Address,
    pub payees: Vec<Payee>,
    pub valid_until_ms: u64,
}

/// Counters for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OracleStats {
    pub attested: u64,
    pub refused: u64,
    pub applied: u64,
    pub abandoned: u64,
    /// Certified transactions delivered that the oracle had not attested (or whose proof
    /// failed): not applied.
    pub foreign: u64,
    pub orders_sent: u64,
}

/// What a delivery's certified transactions share while each is planned: the decisions taken
/// so far in it, the events it changed, the records planned, the batch.
type Planning<'a> =
    (&'a [(TxId, TxDecision)], &'a mut BTreeMap<String, HoldEvent>, &'a mut Vec<Record>, &'a mut WriteBatch);

/// What a delivered certified transaction does to the registry.
enum Certified {
    /// The oracle attested it: its event changes, its decision becomes `Applied`.
    Apply(TxId, TxDecision),
    /// An attested programmed spend: its subject's change, and its decision `SpentApplied`.
    Spend(TxId, TxDecision, String, Box<programmed::SpendChange>),
    AppliedBefore,
    /// Not attested here, or its proof fails: not applied.
    Foreign,
}

struct Inner {
    events: BTreeMap<String, HoldEvent>,
    decisions: HashMap<TxId, TxDecision>,
    next_event: u64,
    inbound: dtenge_delivery::Inbound,
    /// Markings, VAT and contracts, and the spends in flight (`programmed.rs`).
    programmed: programmed::Programmed,
    /// When each release order was last sent (not stored: sent again after a restart).
    orders_sent_at_ms: HashMap<String, u64>,
    /// Event -> what the role keeps of it beside its row.
    notes: HashMap<String, EventNotes>,
    /// What the banks were told, per bank (`notices.rs`).
    notices: notices::Notices,
    /// The infinite events (`kind:` rows).
    infinite: HashSet<String>,
    /// What the role keeps in memory of the events' signed records.
    records: Records,
    failed: bool,
    stats: OracleStats,
}

/// The oracle role.
pub struct OracleService {
    key: NodeKey,
    anchors: Anchors,
    store: Store,
    transport: Arc<dyn Transport>,
    inner: Mutex<Inner>,
}

impl OracleService {
    /// Open the oracle on its own store (created with [`tables`]) with its signing key and the
    /// network's anchors (the issuer, the notary's key, the banks). Release orders not yet
    /// answered are sent again by the first [`OracleService::tick`].
    pub fn open(
        store: Store,
        key: impl Into<NodeKey>,
        anchors: Anchors,
        transport: Arc<dyn Transport>,
    ) -> Result<OracleService> {
        let key = key.into();
        assert_eq!(key.public_key(), anchors.oracle, "the oracle signs with the key the anchors name");
        let next_event = match store.get(ROLE_META_TABLE, NEXT_EVENT_KEY)? {
            Some(bytes) => stored::<u64>(&bytes, "the next event number")?,
            None => 1,
        };
        let mut events = BTreeMap::new();
        for (key, value) in store.scan(ROLE_EVENTS_TABLE)? {
            let event: HoldEvent = stored(&value, "an event")?;
            if key != event.id.as_bytes() {
                return Err(Error::storage(format!("oracle role: event {} is stored under another key", event.id)));
            }
            events.insert(event.id.clone(), event);
        }
        let mut decisions = HashMap::new();
        for (key, value) in store.scan(ROLE_DECISIONS_TABLE)? {
            let tx_id: TxId = stored(&key, "a decision's transaction id")?;
            decisions.insert(tx_id, stored::<TxDecision>(&value, "a decision")?);
        }
        check_loaded(&events, &decisions)?;
        let programmed = programmed::Programmed::load(&store, key.clone(), &decisions)?;
        let mut notes = HashMap::new();
        for (key, value) in store.scan_prefix(ROLE_META_TABLE, NOTES_PREFIX)? {
            let event_id = String::from_utf8(key[NOTES_PREFIX.len()..].to_vec())
                .map_err(|_| Error::storage("oracle role: an event's notes are keyed by no UTF-8 id"))?;
            if !events.contains_key(&event_id) {
                return Err(Error::storage(format!("oracle role: notes of {event_id}, which is not stored")));
            }
            notes.insert(event_id, stored::<EventNotes>(&value, "an event's notes")?);
        }
        let mut infinite = HashSet::new();
        for (key, value) in store.scan_prefix(ROLE_META_TABLE, KIND_PREFIX)? {
            let event_id = String::from_utf8(key[KIND_PREFIX.len()..].to_vec())
                .map_err(|_| Error::storage("oracle role: an event's kind is keyed by no UTF-8 id"))?;
            if !events.contains_key(&event_id) || value.as_slice() != [KIND_INFINITE] {
                return Err(Error::storage(format!("oracle role: a kind row of {event_id} that is not an event's")));
            }
            infinite.insert(event_id);
        }
        let records = Records::load(&store, key.clone(), |id| events.contains_key(id))?;
        let inner = Inner {
            programmed,
            events,
            decisions,
            next_event,
            inbound: dtenge_delivery::Inbound::load(&store)?,
            orders_sent_at_ms: HashMap::new(),
            notes,
            notices: notices::Notices::load(&store, NOTICES_KEPT_MAX)?,
            infinite,
            records,
            failed: false,
            stats: OracleStats::default(),
        };
        Ok(OracleService { key, anchors, store, transport, inner: Mutex::new(inner) })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn stats(&self) -> OracleStats {
        self.inner.lock().stats
    }

    pub fn event(&self, event_id: &str) -> Option<HoldEvent> {
        self.inner.lock().events.get(event_id).cloned()
    }

    pub fn events(&self) -> Vec<HoldEvent> {
        self.inner.lock().events.values().cloned().collect()
    }

    /// The decision on one transaction, if any.
    pub fn decision(&self, tx_id: &TxId) -> Option<TxDecision> {
        self.inner.lock().decisions.get(tx_id).cloned()
    }

    /// What the registry says is held now, by the hash held tokens name: what reconciliation
    /// compares with the DT the banks hold under `Policy::Held`.
    pub fn held_by_event(&self) -> BTreeMap<Hash32, Amount> {
        let inner = self.inner.lock();
        inner.events.values().filter(|e| !e.held_tiyn.is_zero()).map(|e| (e.hash(), e.held_tiyn)).collect()
    }

    /// Events waiting for a transaction's certificate or for their release, and programmed
    /// spends waiting for their certificate: zero once traffic stopped, every message arrived
    /// and every confirmed event was released.
    pub fn pending(&self) -> usize {
        let inner = self.inner.lock();
        let events =
            inner.events.values().filter(|e| e.pending.is_some() || e.status == EventStatus::Releasing).count();
        events + inner.programmed.in_flight.len()
    }

    /// Register a holding event for `provider`, confirmed by it; its id is returned.
    pub fn register_event(&self, provider: &str, spec: EventSpec, now_ms: u64) -> Result<String> {
        self.register_event_with(provider, spec, Registration::default(), now_ms)
    }

    /// The provider whose confirmations release or reject `event_id`.
    pub fn confirmed_by(&self, event_id: &str) -> Option<String> {
        let inner = self.inner.lock();
        let event = inner.events.get(event_id)?;
        Some(confirmer_of(&inner, event).to_string())
    }

    /// What the role keeps of `event_id` beside its row (the defaults for an event registered
    /// before notes were kept; `None` for no such event).
    pub fn notes(&self, event_id: &str) -> Option<EventNotes> {
        let inner = self.inner.lock();
        inner.events.get(event_id)?;
        Some(inner.notes.get(event_id).cloned().unwrap_or_default())
    }

    /// Whether `event_id` is infinite (`None`: no such event).
    pub fn is_infinite(&self, event_id: &str) -> Option<bool> {
        let inner = self.inner.lock();
        inner.events.get(event_id)?;
        Some(inner.infinite.contains(event_id))
    }

    /// The signed records of `event_id`, in order (`NOT_FOUND` for no such event): one per
    /// decision of the role on it, each verifying with [`OracleService::public_key`] over
    /// [`crate::RecordBody::digest`].
    pub fn records(&self, event_id: &str) -> Result<Vec<Record>> {
        let inner = self.inner.lock();
        ensure!(inner.events.contains_key(event_id), NotFound, "no oracle event {event_id}");
        let records = records::read(&self.store, event_id)?;
        assert_eq!(records.len(), inner.records.count(event_id) as usize, "the records read are the records written");
        Ok(records)
    }

    /// The first record of `event_id` naming `occurrence_id`, if any.
    pub fn occurrence_record(&self, event_id: &str, occurrence_id: &str) -> Result<Option<Record>> {
        {
            let inner = self.inner.lock();
            if !inner.records.has_occurrence(event_id, occurrence_id) {
                return Ok(None);
            }
        }
        let records = self.records(event_id)?;
        Ok(records.into_iter().find(|r| r.body.occurrence_id.as_deref() == Some(occurrence_id)))
    }

    /// The occurrences of `event_id` decided and certified (its records name them).
    pub fn occurrences(&self, event_id: &str) -> u32 {
        self.inner.lock().records.occurrences(event_id)
    }

    /// Whether `bank` may hold `amount` (`None`: the event's amount) for `event_id` now, in the
    /// order the network checks it, before the bank looks at its client's funds: no such event
    /// `NOT_FOUND`, past its validity `EVENT_EXPIRED`, ended or (single) held already or a
    /// transaction of it in flight `CONFLICT`, a single event's amount not exactly its amount
    /// or an infinite one's zero `MALFORMED_INPUT`, another bank than the sender's `FORBIDDEN`.
    /// The hold's attestation checks it all again ([`check`]).
    pub fn plan_hold(&self, bank: &str, event_id: &str, amount: Option<Amount>, now_ms: u64) -> Result<HoldPlan> {
        let inner = self.inner.lock();
        ensure_running(&inner)?;
        let Some(event) = inner.events.get(event_id) else {
            return Err(Error::new(ErrorCode::NotFound, format!("no oracle event {event_id}")));
        };
        ensure!(
            now_ms < event.valid_until_ms && event.status != EventStatus::Expired,
            EventExpired,
            "event {event_id} expired at {} ms",
            event.valid_until_ms
        );
        ensure!(!event.status.is_final(), Conflict, "event {event_id} is {:?}: it cannot be held", event.status);
        let infinite = inner.infinite.contains(event_id);
        let amount = if infinite {
            ensure!(
                event.status != EventStatus::Releasing && event.pending.is_none(),
                Conflict,
                "a transaction of event {event_id} is in flight; hold again"
            );
            let amount = amount.unwrap_or(event.amount_tiyn);
            ensure!(!amount.is_zero(), MalformedInput, "the amount to hold must be positive");
            amount
        } else {
            ensure!(
                event.status == EventStatus::Registered && event.pending.is_none(),
                Conflict,
                "event {event_id} is single and held already (or its hold is in flight): no re-hold"
            );
            ensure!(
                amount.is_none_or(|a| a == event.amount_tiyn),
                MalformedInput,
                "a single event holds exactly its amount, {}",
                event.amount_tiyn
            );
            event.amount_tiyn
        };
        ensure!(
            bank == event.sender_bank,
            Forbidden,
            "the sender of event {event_id} banks with '{}', not '{bank}'",
            event.sender_bank
        );
        Ok(HoldPlan { event: event.clone(), amount, infinite })
    }

    /// Register a holding event for `provider`, confirmed by another registered provider
    /// and/or under an idempotency key ([`Registration`]); its id is returned.
    pub fn register_event_with(
        &self,
        provider: &str,
        spec: EventSpec,
        registration: Registration,
        now_ms: u64,
    ) -> Result<String> {
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        if let Some((key, fingerprint)) = &registration.idem {
            ensure!(
                !key.is_empty() && key.len() <= EVENT_KEY_BYTES_MAX,
                MalformedInput,
                "an idempotency key has 1 to {EVENT_KEY_BYTES_MAX} bytes"
            );
            if let Some(bytes) = self.store.get(ROLE_META_TABLE, &meta_key(EVENT_KEY_PREFIX, key))? {
                let (first, event_id) = stored::<(Hash32, String)>(&bytes, "an event's idempotency key")?;
                ensure!(
                    first == *fingerprint,
                    IdempotencyKeyReused,
                    "idempotency key '{key}' was used with a different request"
                );
                return Ok(event_id);
            }
        }
        self.check_spec(provider, &spec, now_ms)?;
        let confirmer = registration.confirmed_by.filter(|c| c != provider);
        if let Some(confirmer) = &confirmer {
            ensure!(
                inner.programmed.registry.providers().any(|p| p.id == *confirmer),
                NotFound,
                "no provider '{confirmer}' to confirm the event"
            );
        }
        ensure!(inner.events.len() < EVENTS_MAX, LimitExceeded, "at most {EVENTS_MAX} events");
        let amount = Amount::sum(spec.payees.iter().map(|p| p.amount_tiyn))?;
        let id = format!("EV{:07}", inner.next_event);
        // Numbers only grow, and every event is kept: a new id is free.
        assert!(!inner.events.contains_key(&id), "event id {id} is taken");
        let event = HoldEvent {
            id: id.clone(),
            provider: provider.to_string(),
            reference: spec.reference,
            sender_bank: spec.sender_bank,
            sender: spec.sender,
            payees: spec.payees,
            amount_tiyn: amount,
            valid_until_ms: spec.valid_until_ms,
            status: EventStatus::Registered,
            held_tiyn: Amount::ZERO,
            released_tiyn: Amount::ZERO,
            returned_tiyn: Amount::ZERO,
            pending: None,
            hold_tx: None,
            release_tx: None,
            release: None,
        };
        let mut batch = WriteBatch::new();
        batch.put(ROLE_EVENTS_TABLE, id.as_bytes().to_vec(), event.to_bytes());
        batch.put(ROLE_META_TABLE, NEXT_EVENT_KEY.to_vec(), (inner.next_event + 1).to_bytes());
        if let Some(names) = &registration.names {
            ensure!(
                names.payees.len() == event.payees.len(),
                MalformedInput,
                "a client id for each of the {} payees",
                event.payees.len()
            );
            for name in std::iter::once(&names.sender).chain(&names.payees) {
                check_text("client id", name)?;
            }
        }
        let notes = EventNotes {
            confirmed_by: confirmer,
            registered_at_ms: now_ms,
            names: registration.names,
            ..EventNotes::default()
        };
        batch.put(ROLE_META_TABLE, meta_key(NOTES_PREFIX, &id), notes.to_bytes());
        if let Some((key, fingerprint)) = &registration.idem {
            batch.put(ROLE_META_TABLE, meta_key(EVENT_KEY_PREFIX, key), (*fingerprint, id.clone()).to_bytes());
        }
        let told = inner.notices.plan(notices::registered(&event), now_ms, &mut batch);
        if registration.infinite {
            batch.put(ROLE_META_TABLE, meta_key(KIND_PREFIX, &id), vec![KIND_INFINITE]);
        }
        let confirmed_by = notes.confirmed_by.as_deref().unwrap_or(provider);
        let terms = records::terms_hash(&event, confirmed_by, registration.infinite, now_ms);
        let mut planned = Vec::new();
        let step = Step::new(Action::Registered, Amount::ZERO, provider);
        inner.records.plan(&id, terms, vec![step], now_ms, &mut planned, &mut batch);
        self.commit(&mut inner, batch)?;
        inner.next_event += 1;
        inner.events.insert(id.clone(), event);
        inner.notes.insert(id.clone(), notes);
        inner.notices.apply(told);
        if registration.infinite {
            inner.infinite.insert(id.clone());
        }
        inner.records.applied(planned);
        Ok(id)
    }

    fn check_spec(&self, provider: &str, spec: &EventSpec, now_ms: u64) -> Result<()> {
        check_text("provider id", provider)?;
        check_text("reference", &spec.reference)?;
        let known = |bank: &str| self.anchors.banks.contains_key(bank);
        ensure!(known(&spec.sender_bank), UnknownAccount, "'{}' is not a bank of this network", spec.sender_bank);
        ensure!(
            !spec.payees.is_empty() && spec.payees.len() <= PAYEES_MAX,
            MalformedInput,
            "an event has 1 to {PAYEES_MAX} payees"
        );
        for (i, payee) in spec.payees.iter().enumerate() {
            ensure!(known(&payee.bank), UnknownAccount, "'{}' is not a bank of this network", payee.bank);
            ensure!(!payee.amount_tiyn.is_zero(), MalformedInput, "payee amounts must be positive");
            ensure!(payee.address != spec.sender, MalformedInput, "the sender cannot be its own event's payee");
            ensure!(
                !spec.payees[..i].iter().any(|p| p.address == payee.address),
                MalformedInput,
                "payee {} is named twice",
                payee.address
            );
        }
        ensure!(spec.valid_until_ms > now_ms, MalformedInput, "the validity must end after now ({now_ms} ms)");
        Ok(())
    }

    /// The event's confirming provider (by default the one that registered it) confirms it: a
    /// held event's release is planned, written and ordered from its bank; a rejection of an
    /// event not held ends it.
    pub fn confirm_event(&self, provider: &str, event_id: &str, confirmation: Confirmation, now_ms: u64) -> Result<()> {
        self.confirm(provider, event_id, confirmation, None, now_ms).map(|_| ())
    }

    /// [`OracleService::confirm_event`] for a provider's occurrence: its id and a rejection's
    /// reason are kept in the event's notes (written in the same commit), and the same
    /// occurrence id again is answered [`Confirmed::Repeated`], nothing done again.
    pub fn confirm_occurrence(
        &self,
        provider: &str,
        event_id: &str,
        confirmation: Confirmation,
        occurrence: OccurrenceNote,
        now_ms: u64,
    ) -> Result<Confirmed> {
        check_text("occurrence id", &occurrence.occurrence_id)?;
        if let Some(reason) = &occurrence.reason {
            ensure!(confirmation == Confirmation::Rejected, MalformedInput, "a reason goes with a rejection only");
            check_text("reason", reason)?;
        }
        self.confirm(provider, event_id, confirmation, Some(occurrence), now_ms)
    }

    fn confirm(
        &self,
        provider: &str,
        event_id: &str,
        confirmation: Confirmation,
        occurrence: Option<OccurrenceNote>,
        now_ms: u64,
    ) -> Result<Confirmed> {
        let mut inner = self.inner.lock();
        ensure_running(&inner)?;
        let Some(event) = inner.events.get(event_id) else {
            return Err(Error::new(ErrorCode::NotFound, format!("no oracle event {event_id}")));
        };
        let confirmer = confirmer_of(&inner, event);
        ensure!(confirmer == provider, Forbidden, "event {event_id} is confirmed by '{confirmer}' only");
        let seen = inner.notes.get(event_id).and_then(|n| n.occurrence_id.as_deref());
        if let Some(occurrence) = &occurrence {
            let id = occurrence.occurrence_id.as_str();
            if seen == Some(id) || inner.records.has_occurrence(event_id, id) {
                return Ok(Confirmed::Repeated);
            }
        }
        ensure!(event.pending.is_none(), Conflict, "a transaction of event {event_id} is in flight; confirm again");
        ensure!(
            now_ms < event.valid_until_ms || event.status.is_final(),
            EventExpired,
            "event {event_id} expired at {} ms; what it holds goes back to the sender",
            event.valid_until_ms
        );
        ensure!(
            inner.records.count(event_id) + 2 <= RECORDS_PER_EVENT_MAX,
            LimitExceeded,
            "event {event_id} has reached {RECORDS_PER_EVENT_MAX} records"
        );
        let infinite = inner.infinite.contains(event_id);
        let mut event = event.clone();
        match (event.status, &confirmation) {
            (EventStatus::Registered, Confirmation::Rejected) => event.status = EventStatus::Rejected,
            (EventStatus::Registered, Confirmation::Occurred { .. }) => {
                return Err(Error::new(ErrorCode::Conflict, format!("event {event_id} holds nothing yet")));
            }
            (EventStatus::Held, _) => {
                let release = check::plan_release(&event, infinite, &confirmation, self.anchors.issuer, false)?;
                event.release = Some(release);
                event.status = EventStatus::Releasing;
            }
            (status, _) => {
                return Err(Error::new(ErrorCode::Conflict, format!("event {event_id} is {status:?} already")));
            }
        }
        let mut batch = WriteBatch::new();
        batch.put(ROLE_EVENTS_TABLE, event_id.as_bytes().to_vec(), event.to_bytes());
        let notes = occurrence.map(|occurrence| {
            let mut notes = inner.notes.get(event_id).cloned().unwrap_or_default();
            notes.occurrence_id = Some(occurrence.occurrence_id);
            notes.reason = occurrence.reason;
            batch.put(ROLE_META_TABLE, meta_key(NOTES_PREFIX, event_id), notes.to_bytes());
            notes
        });
        // An event that held nothing ends now: its parties are told with this decision (a
        // held one's, when its release is applied), and its record goes with it.
        let mut planned = Vec::new();
        let told = if event.status == EventStatus::Rejected {
            let reason = notes.as_ref().or(inner.notes.get(event_id)).and_then(|n| n.reason.as_deref());
            let why = notices::why_returned(&event, reason);
            let mut step = Step::new(Action::Rejected, Amount::ZERO, provider);
            step.occurrence_id = notes.as_ref().and_then(|n| n.occurrence_id.clone());
            step.reason = notes.as_ref().and_then(|n| n.reason.clone());
            let terms = terms_of(&inner, &event);
            inner.records.plan(event_id, terms, vec![step], now_ms, &mut planned, &mut batch);
            inner.notices.plan(notices::returned(&event, Amount::ZERO, &why, None), now_ms, &mut batch)
        } else {
            Vec::new()
        };
        self.commit(&mut inner, batch)?;
        let releasing = event.status == EventStatus::Releasing;
        inner.events.insert(event_id.to_string(), event);
        if let Some(notes) = notes {
            inner.notes.insert(event_id.to_string(), notes);
        }
        inner.notices.apply(told);
        inner.records.applied(planned);
        if releasing {
            self.send_order(&mut inner, event_id, now_ms);
        }
        Ok(Confirmed::New)
    }

    /// Take one envelope from the network: only the banks of this network talk to the oracle.
    pub fn handle(&self, envelope: Envelope, now_ms: u64) {
        let RoleId::Bank(bank) = &envelope.from else { return };
        if !self.anchors.banks.contains_key(bank) {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        match envelope.message {
            Message::OracleAsk(ask) => {
                // Answered from what each read takes under the lock in turn.
                drop(inner);
                self.on_ask(bank, ask, now_ms);
            }
            Message::AttestRequest(request) => self.on_attest(&mut inner, bank, request, now_ms),
            Message::Abandon(abandon) => self.on_abandon(&mut inner, bank, abandon, now_ms),
            Message::PlanRequest(request) => self.on_plan(&mut inner, bank, request, now_ms),
            Message::Deliver(deliver) => self.on_deliver(&mut inner, &envelope.from, deliver, now_ms),
            // Nothing else is for the oracle: dropped, as a stray or hostile message must be.
            _ => {}
        }
    }

    /// Expire the events whose validity ran out, and send again the release orders not
    /// answered in time.
    pub fn tick(&self, now_ms: u64) {
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        self.expire_due(&mut inner, now_ms);
        let due: Vec<String> = inner
            .events
            .values()
            .filter(|e| e.status == EventStatus::Releasing && e.pending.is_none())
            .filter(|e| {
                inner.orders_sent_at_ms.get(&e.id).is_none_or(|at| at.saturating_add(RESEND_AFTER_MS) <= now_ms)
            })
            .map(|e| e.id.clone())
            .collect();
        for event_id in due {
            self.send_order(&mut inner, &event_id, now_ms);
        }
    }

    /// Events past their validity and waiting for nothing: one not held ends `Expired`; a
    /// held one returns everything to the sender (its release ordered, ending `Expired`). An
    /// event with a transaction in flight waits for it (a hold attested before the end may
    /// still be certified; it is returned then).
    fn expire_due(&self, inner: &mut Inner, now_ms: u64) {
        // A scan of every event per tick: events are few next to payments (an index by the end
        // of validity when they are not).
        let due: Vec<HoldEvent> = inner
            .events
            .values()
            .filter(|e| e.valid_until_ms <= now_ms && e.pending.is_none())
            .filter(|e| matches!(e.status, EventStatus::Registered | EventStatus::Held))
            .cloned()
            .collect();
        for mut event in due {
            let mut batch = WriteBatch::new();
            let mut planned = Vec::new();
            if event.status == EventStatus::Registered {
                event.status = EventStatus::Expired;
                let mut step = Step::new(Action::Expired, Amount::ZERO, BY_ORACLE);
                step.reason = Some(expiry_reason(&event));
                let terms = terms_of(inner, &event);
                inner.records.plan(&event.id, terms, vec![step], now_ms, &mut planned, &mut batch);
            } else {
                let infinite = inner.infinite.contains(&event.id);
                let plan = check::plan_release(&event, infinite, &Confirmation::Rejected, self.anchors.issuer, true)
                    .expect("returning everything held is always a valid release");
                event.release = Some(plan);
                event.status = EventStatus::Releasing;
            }
            batch.put(ROLE_EVENTS_TABLE, event.id.as_bytes().to_vec(), event.to_bytes());
            let told = if event.status == EventStatus::Expired {
                let why = notices::why_returned(&event, None);
                inner.notices.plan(notices::returned(&event, Amount::ZERO, &why, None), now_ms, &mut batch)
            } else {
                Vec::new()
            };
            if self.commit(inner, batch).is_err() {
                return;
            }
            inner.records.applied(planned);
            let (id, releasing) = (event.id.clone(), event.status == EventStatus::Releasing);
            inner.events.insert(id.clone(), event);
            inner.notices.apply(told);
            if releasing {
                self.send_order(inner, &id, now_ms);
            }
        }
    }

    fn send_order(&self, inner: &mut Inner, event_id: &str, now_ms: u64) {
        let event = &inner.events[event_id];
        let release = event.release.as_ref().expect("a releasing event has its release planned");
        let order = ReleaseOrder {
            event_id: event_id.to_string(),
            attempt: release.attempt,
            sender: event.sender,
            held: event.held_tiyn,
            outputs: release.outputs.clone(),
        };
        let to = RoleId::Bank(event.sender_bank.clone());
        // A send that fails is a loss like any other: `tick` sends it again.
        let _ = self.transport.send(Envelope { from: RoleId::Oracle, to, message: Message::ReleaseOrder(order) });
        inner.orders_sent_at_ms.insert(event_id.to_string(), now_ms);
        inner.stats.orders_sent += 1;
    }

    fn on_attest(&self, inner: &mut Inner, bank: &str, request: AttestRequest, now_ms: u64) {
        let tx_id = request.tx.id();
        let verdict = match inner.decisions.get(&tx_id) {
            Some(decision) => self.verdict_of(decision, &tx_id),
            None => match self.decide(inner, bank, &request, &tx_id, now_ms) {
                Some(verdict) => verdict,
                None => return,
            },
        };
        self.reply(bank, request.event_id, tx_id, verdict);
    }

    /// Check a transaction never decided, write the decision, then answer it; `None` when the
    /// commit failed (the role stops).
    fn decide(
        &self,
        inner: &mut Inner,
        bank: &str,
        request: &AttestRequest,
        tx_id: &TxId,
        now_ms: u64,
    ) -> Option<Verdict> {
        if inner.decisions.len() >= DECISIONS_MAX {
            let full = Error::new(ErrorCode::LimitExceeded, "the oracle keeps no more decisions; retry later");
            return Some(Verdict::Refused(full));
        }
        if let AttestPurpose::Spend(_) = &request.purpose {
            return self.decide_spend(inner, bank, request, tx_id, now_ms);
        }
        let release = request.purpose == AttestPurpose::Release;
        let checked = match (inner.events.get(&request.event_id), &request.purpose) {
            (_, AttestPurpose::Spend(_)) => unreachable!("spends are decided above"),
            (None, _) => Err(Error::new(ErrorCode::NotFound, format!("no oracle event {}", request.event_id))),
            (Some(event), AttestPurpose::Hold { payee }) => {
                let infinite = inner.infinite.contains(&event.id);
                check::check_hold(event, infinite, bank, payee, &request.tx, now_ms).and_then(|_| {
                    ensure!(
                        inner.records.count(&event.id) < RECORDS_PER_EVENT_MAX,
                        LimitExceeded,
                        "event {} has reached {RECORDS_PER_EVENT_MAX} records",
                        event.id
                    );
                    Ok(())
                })
            }
            (Some(event), AttestPurpose::Release) => check::check_release(event, bank, &request.tx),
        };
        let mut batch = WriteBatch::new();
        let (decision, event) = match checked {
            Ok(()) => {
                let mut event = inner.events[&request.event_id].clone();
                event.pending = Some(*tx_id);
                batch.put(ROLE_EVENTS_TABLE, event.id.as_bytes().to_vec(), event.to_bytes());
                (TxDecision::Attested { event_id: event.id.clone(), release }, Some(event))
            }
            Err(e) => (TxDecision::Refused(e), None),
        };
        batch.put(ROLE_DECISIONS_TABLE, tx_id.to_bytes(), decision.to_bytes());
        self.commit(inner, batch).ok()?;
        match event {
            Some(event) => {
                inner.stats.attested += 1;
                inner.events.insert(event.id.clone(), event);
            }
            None => inner.stats.refused += 1,
        }
        let verdict = self.verdict_of(&decision, tx_id);
        inner.decisions.insert(*tx_id, decision);
        Some(verdict)
    }

    fn verdict_of(&self, decision: &TxDecision, tx_id: &TxId) -> Verdict {
        match decision {
            TxDecision::Attested { .. }
            | TxDecision::Applied { .. }
            | TxDecision::Spent { .. }
            | TxDecision::SpentApplied { .. } => Verdict::Attested(self.attest(tx_id)),
            TxDecision::Refused(e) => Verdict::Refused(e.clone()),
            TxDecision::Abandoned => Verdict::Abandoned,
        }
    }

    fn attest(&self, tx_id: &TxId) -> Attestation {
        Attestation { public_key: self.key.public_key(), signature: self.key.sign(&node_message(tx_id).0), batch: None }
    }

    fn reply(&self, bank: &str, event_id: String, tx_id: TxId, verdict: Verdict) {
        let message = Message::AttestReply(AttestReply { event_id, tx_id, verdict });
        let _ = self.transport.send(Envelope { from: RoleId::Oracle, to: RoleId::Bank(bank.to_string()), message });
    }

    /// The bank gives up a transaction the notary refused: the event waits for it no more.
    fn on_abandon(&self, inner: &mut Inner, bank: &str, abandon: Abandon, now_ms: u64) {
        let verdict = match inner.decisions.get(&abandon.tx_id).cloned() {
            Some(TxDecision::Attested { event_id, release }) => {
                let event = inner.events.get(&event_id).expect("a decided transaction's event is kept");
                if event.sender_bank != bank {
                    return;
                }
                assert_eq!(event.pending, Some(abandon.tx_id), "an attested transaction is its event's pending one");
                let mut event = event.clone();
                event.pending = None;
                if release {
                    // The next order is a new transaction: the notary refuses the refused one
                    // again, for good.
                    event.release.as_mut().expect("a release was ordered").attempt += 1;
                }
                let mut batch = WriteBatch::new();
                batch.put(ROLE_EVENTS_TABLE, event_id.as_bytes().to_vec(), event.to_bytes());
                batch.put(ROLE_DECISIONS_TABLE, abandon.tx_id.to_bytes(), TxDecision::Abandoned.to_bytes());
                if self.commit(inner, batch).is_err() {
                    return;
                }
                inner.events.insert(event_id.clone(), event);
                inner.decisions.insert(abandon.tx_id, TxDecision::Abandoned);
                inner.orders_sent_at_ms.remove(&event_id);
                inner.stats.abandoned += 1;
                Verdict::Abandoned
            }
            Some(TxDecision::Spent { spend, .. }) => match self.abandon_spend(inner, bank, &abandon, &spend, now_ms) {
                Some(verdict) => verdict,
                None => return,
            },
            Some(TxDecision::Applied { .. } | TxDecision::SpentApplied { .. }) => {
                Verdict::Refused(Error::new(ErrorCode::Conflict, "the transaction is certified and applied"))
            }
            Some(TxDecision::Refused(_) | TxDecision::Abandoned) => Verdict::Abandoned,
            None => {
                // Never asked for (or the request is still on its way): decided now, so that
                // the request, arriving late, is not attested.
                let mut batch = WriteBatch::new();
                batch.put(ROLE_DECISIONS_TABLE, abandon.tx_id.to_bytes(), TxDecision::Abandoned.to_bytes());
                if self.commit(inner, batch).is_err() {
                    return;
                }
                inner.decisions.insert(abandon.tx_id, TxDecision::Abandoned);
                Verdict::Abandoned
            }
        };
        self.reply(bank, abandon.event_id, abandon.tx_id, verdict);
    }

    /// A bank's delivery of certified transactions: those the oracle attested change the
    /// registry, once each, in one commit with the delivery's number.
    fn on_deliver(&self, inner: &mut Inner, from: &RoleId, deliver: Deliver, now_ms: u64) {
        match inner.inbound.accept(from, deliver.seq) {
            dtenge_delivery::Accept::Apply => {}
            dtenge_delivery::Accept::Duplicate { ack } => return self.ack(from, ack),
            dtenge_delivery::Accept::Early => return,
        }
        // A bank delivers the oracle certified transactions only; a decision from a bank is
        // not applied, not acknowledged.
        let Payload::Certified { certificate, txs } = deliver.payload else { return };
        if certificate.verify_signature(&self.anchors.notary).is_err() {
            inner.stats.foreign += txs.len() as u64;
            return;
        }
        let mut batch = WriteBatch::new();
        let mut changed: BTreeMap<String, HoldEvent> = BTreeMap::new();
        let mut decided: Vec<(TxId, TxDecision)> = Vec::new();
        let mut spent: Vec<(String, programmed::SpendChange)> = Vec::new();
        // What the parties' banks are told of what this delivery applies, in its order.
        let mut drafts = Vec::new();
        let mut planned: Vec<Record> = Vec::new();
        for (tx, proof) in &txs {
            let planning = (decided.as_slice(), &mut changed, &mut planned, &mut batch);
            match self.plan_certified(inner, &certificate, tx, proof, planning, now_ms) {
                Certified::Apply(tx_id, decision) => {
                    drafts.extend(self.applied_notices(inner, &changed, &decision, tx_id));
                    decided.push((tx_id, decision));
                }
                Certified::Spend(tx_id, decision, subject, change) => {
                    change.writes(&mut batch);
                    let Some(TxDecision::Spent { spend, .. }) = inner.decisions.get(&tx_id) else {
                        unreachable!("a spend is applied from its decision")
                    };
                    drafts.extend(notices::spent(spend, &change, tx_id));
                    decided.push((tx_id, decision));
                    spent.push((subject, *change));
                }
                Certified::AppliedBefore => {}
                Certified::Foreign => inner.stats.foreign += 1,
            }
        }
        for (tx_id, decision) in &decided {
            batch.put(ROLE_DECISIONS_TABLE, tx_id.to_bytes(), decision.to_bytes());
        }
        for event in changed.values() {
            batch.put(ROLE_EVENTS_TABLE, event.id.as_bytes().to_vec(), event.to_bytes());
        }
        inner.inbound.plan_applied(from, deliver.seq, &mut batch);
        let told = inner.notices.plan(drafts, now_ms, &mut batch);
        if self.commit(inner, batch).is_err() {
            return;
        }
        inner.notices.apply(told);
        inner.stats.applied += decided.len() as u64;
        inner.decisions.extend(decided);
        inner.events.extend(changed);
        inner.records.applied(planned);
        let mut freed = Vec::with_capacity(spent.len());
        for (subject, change) in spent {
            change.apply(&mut inner.programmed.registry);
            inner.programmed.in_flight.remove(&subject);
            freed.push(subject);
        }
        inner.inbound.applied(from, deliver.seq);
        self.ack(from, deliver.seq);
        for subject in freed {
            self.subject_freed(inner, &subject, now_ms);
        }
    }

    /// One certified transaction: what it does to the registry, and the records of it
    /// (planned in `batch`, after the `planned` ones of the same delivery).
    fn plan_certified(
        &self,
        inner: &Inner,
        certificate: &CommitCertificate,
        tx: &Transaction,
        proof: &CommitProof,
        (decided, changed, planned, batch): Planning<'_>,
        now_ms: u64,
    ) -> Certified {
        let Ok(ids) = TxIds::of(tx) else { return Certified::Foreign };
        if certificate.covers(&CompactTx::of(&ids).hash(), proof).is_err() {
            return Certified::Foreign;
        }
        // The same transaction twice in one delivery (a faulty or rogue bank) is applied once:
        // checked before its event is changed again, which would break its invariants.
        if decided.iter().any(|(id, _)| *id == ids.tx_id) {
            return Certified::AppliedBefore;
        }
        let (event_id, release) = match inner.decisions.get(&ids.tx_id) {
            Some(TxDecision::Attested { event_id, release }) => (event_id.clone(), *release),
            Some(TxDecision::Spent { spend, plan, at_ms }) => {
                let subject = spend.subject().to_string();
                assert_eq!(
                    inner.programmed.in_flight.get(&subject),
                    Some(&ids.tx_id),
                    "an attested spend holds its subject until its certificate"
                );
                let change = self.certified_spend(&inner.programmed, tx, spend, plan, *at_ms);
                let decision = TxDecision::SpentApplied { subject: subject.clone(), seq: certificate.seq };
                return Certified::Spend(ids.tx_id, decision, subject, Box::new(change));
            }
            // Certified again (a bank that resent after a crash): applied once already.
            Some(TxDecision::Applied { .. } | TxDecision::SpentApplied { .. }) => return Certified::AppliedBefore,
            Some(TxDecision::Refused(_) | TxDecision::Abandoned) | None => return Certified::Foreign,
        };
        // The same transaction twice in one delivery is applied once.
        if changed.get(&event_id).is_some_and(|e| e.pending != Some(ids.tx_id)) {
            return Certified::AppliedBefore;
        }
        let event = changed.entry(event_id.clone()).or_insert_with(|| inner.events[&event_id].clone());
        let infinite = inner.infinite.contains(&event_id);
        let notes = inner.notes.get(&event_id).cloned().unwrap_or_default();
        let steps = apply_certified(event, tx, &ids.tx_id, release, infinite, &notes);
        let terms = terms_of(inner, event);
        inner.records.plan(&event_id, terms, steps, now_ms, planned, batch);
        Certified::Apply(ids.tx_id, TxDecision::Applied { event_id, release, seq: certificate.seq })
    }

    /// What a hold or release applied from its certificate tells the parties' banks: `event`
    /// as the certificate left it in `changed`.
    fn applied_notices(
        &self,
        inner: &Inner,
        changed: &BTreeMap<String, HoldEvent>,
        decision: &TxDecision,
        tx_id: TxId,
    ) -> Vec<notices::Draft> {
        let TxDecision::Applied { event_id, release, .. } = decision else {
            unreachable!("a hold or release is applied as such")
        };
        let event = &changed[event_id];
        if !release {
            return notices::held(event, tx_id);
        }
        let reason = inner.notes.get(event_id).and_then(|n| n.reason.as_deref());
        notices::released(event, tx_id, &notices::why_returned(event, reason))
    }

    /// What `node` was told, newest first: `limit` (1 to [`NOTICES_PAGE_MAX`]) from the
    /// `offset`-th, and how many it was ever told. A bank not of this network is
    /// `UNKNOWN_ACCOUNT`.
    pub fn notifications(&self, node: &str, offset: usize, limit: usize) -> Result<NoticePage> {
        ensure!(self.anchors.banks.contains_key(node), UnknownAccount, "'{node}' is not a bank of this network");
        ensure!(limit > 0 && limit <= NOTICES_PAGE_MAX, MalformedInput, "limit is 1 to {NOTICES_PAGE_MAX}");
        Ok(self.inner.lock().notices.page(node, offset, limit))
    }

    fn ack(&self, to: &RoleId, seq: u64) {
        let message = Message::DeliverAck(DeliverAck { seq });
        let _ = self.transport.send(Envelope { from: RoleId::Oracle, to: to.clone(), message });
    }

    fn commit(&self, inner: &mut Inner, batch: WriteBatch) -> Result<()> {
        self.store.commit(batch).inspect_err(|_| inner.failed = true)
    }
}

/// The registry's change for an attested transaction's certificate, and the records of the
/// decision it completes.
fn apply_certified(
    event: &mut HoldEvent,
    tx: &Transaction,
    tx_id: &TxId,
    release: bool,
    infinite: bool,
    notes: &EventNotes,
) -> Vec<Step> {
    assert_eq!(event.pending, Some(*tx_id), "an attested transaction is its event's pending one until applied");
    event.pending = None;
    if !release {
        let hash = event.hash();
        let held =
            Amount::sum(tx.body.outputs.iter().filter(|o| o.policy.held_for() == Some(&hash)).map(|o| o.amount_tiyn))
                .expect("an attested hold's amount was checked");
        if infinite {
            assert!(matches!(event.status, EventStatus::Registered | EventStatus::Held), "an infinite event is held");
        } else {
            assert_eq!(event.status, EventStatus::Registered, "a hold is attested for a registered event only");
            assert_eq!(held, event.amount_tiyn, "a single event's hold holds its amount");
        }
        event.status = EventStatus::Held;
        event.held_tiyn = event.held_tiyn.checked_add(held).expect("an attested hold's sum was checked");
        event.hold_tx = Some(*tx_id);
        let mut step = Step::new(Action::Held, held, &event.sender_bank);
        step.tx_id = Some(*tx_id);
        return vec![step];
    }
    assert_eq!(event.status, EventStatus::Releasing, "a release is attested for a releasing event only");
    let plan = event.release.as_ref().expect("a releasing event has its release planned");
    let kept = check::kept_by(event, plan);
    if plan.ends_as == EventStatus::Held {
        assert!(infinite && !kept.is_zero(), "only an infinite event's occurrence keeps what it does not pay");
    } else {
        assert!(plan.ends_as.is_final() && kept.is_zero(), "a release that ends its event spends everything held");
    }
    event.released_tiyn = event.released_tiyn.checked_add(plan.paid_tiyn).expect("within what was held");
    event.returned_tiyn = event.returned_tiyn.checked_add(plan.returned_tiyn).expect("within what was held");
    event.status = plan.ends_as;
    event.held_tiyn = kept;
    event.release_tx = Some(*tx_id);
    let confirmer = notes.confirmed_by.as_deref().unwrap_or(&event.provider);
    let with_tx = |mut step: Step| {
        step.tx_id = Some(*tx_id);
        step
    };
    match plan.ends_as {
        EventStatus::Expired => {
            let mut step = with_tx(Step::new(Action::Expired, plan.returned_tiyn, BY_ORACLE));
            step.reason = Some(expiry_reason(event));
            vec![step]
        }
        EventStatus::Rejected => {
            let mut step = with_tx(Step::new(Action::Rejected, plan.returned_tiyn, confirmer));
            step.occurrence_id = notes.occurrence_id.clone();
            step.reason = notes.reason.clone();
            vec![step]
        }
        _ => {
            let mut released = with_tx(Step::new(Action::Released, plan.paid_tiyn, confirmer));
            released.payouts = records::payouts_of(event, &plan.outputs);
            released.occurrence_id = notes.occurrence_id.clone();
            let mut steps = vec![released];
            if !plan.returned_tiyn.is_zero() {
                let mut returned = with_tx(Step::new(Action::Returned, plan.returned_tiyn, confirmer));
                returned.reason = Some("partial release: the rest returns to the sender".to_string());
                steps.push(returned);
            }
            steps
        }
    }
}

/// Why an event ended expired, as its record says.
fn expiry_reason(event: &HoldEvent) -> String {
    format!("no event before the validity ended at {} ms", event.valid_until_ms)
}

/// The hash of what `event` is, that its records are bound to.
fn terms_of(inner: &Inner, event: &HoldEvent) -> Hash32 {
    let notes = inner.notes.get(&event.id);
    let confirmed_by = notes.and_then(|n| n.confirmed_by.as_deref()).unwrap_or(&event.provider);
    let registered_at_ms = notes.map_or(0, |n| n.registered_at_ms);
    records::terms_hash(event, confirmed_by, inner.infinite.contains(&event.id), registered_at_ms)
}

/// The rows read at the start agree: each event's pending transaction is decided attested for
/// it, and each attested decision is its event's pending one. Rows are fjall's, without a
/// checksum of the store's own: a disagreement is corrupt storage.
fn check_loaded(events: &BTreeMap<String, HoldEvent>, decisions: &HashMap<TxId, TxDecision>) -> Result<()> {
    for event in events.values() {
        if let Some(tx_id) = &event.pending {
            match decisions.get(tx_id) {
                Some(TxDecision::Attested { event_id, .. }) if *event_id == event.id => {}
                _ => {
                    return Err(Error::storage(format!(
                        "oracle role: event {} waits for an undecided {tx_id}",
                        event.id
                    )))
                }
            }
        }
    }
    for (tx_id, decision) in decisions {
        if let TxDecision::Attested { event_id, .. } = decision {
            if events.get(event_id).and_then(|e| e.pending) != Some(*tx_id) {
                return Err(Error::storage(format!(
                    "oracle role: {tx_id} is attested for {event_id}, which waits for it not"
                )));
            }
        }
    }
    Ok(())
}

/// The provider whose confirmations release or reject `event`.
fn confirmer_of<'a>(inner: &'a Inner, event: &'a HoldEvent) -> &'a str {
    inner.notes.get(&event.id).and_then(|n| n.confirmed_by.as_deref()).unwrap_or(&event.provider)
}

fn ensure_running(inner: &Inner) -> Result<()> {
    if inner.failed {
        return Err(Error::new(ErrorCode::StorageFailure, "the oracle's store failed; it restarts from its disk"));
    }
    Ok(())
}

fn check_text(what: &str, text: &str) -> Result<()> {
    ensure!(
        !text.trim().is_empty() && text.len() <= TEXT_BYTES_MAX,
        MalformedInput,
        "the {what} has 1 to {TEXT_BYTES_MAX} bytes"
    );
    Ok(())
}
