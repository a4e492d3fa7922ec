//! Holding (SPEC §5.1) on the roles: providers registered at the oracle, events registered by
//! them, the sender's bank holding its client's funds (`BankService::hold`: attested by the
//! oracle, notarized, delivered to the oracle), a provider's occurrence ordering the release
//! from the holding bank, and expiry returning what an event still holds (the oracle's tick).
//!
//! The oracle role serves single and infinite events (an infinite one held once or more, then
//! released per occurrence until what it holds runs out) and signs a record of each of its
//! decisions, in the commit that makes it: an event is shown in the network's shape
//! ([`Event`]) with the role's records (`registered_at_unix_ms` 0 for an event registered
//! before the role kept it). The role names parties by bank and address: its records' payouts
//! carry no client id. What the oracle tells the parties' banks is read with `notifications`
//! (`notifications.rs`).
//!
//! The calls that wait for another role (a hold applied at the oracle, a release certified and
//! applied at the payees' banks) wait at most [`ANSWER_WAIT`]; the step goes on after a
//! timeout, and asking again (a hold with the same idempotency key, an occurrence with the
//! same occurrence id) answers it.

use super::Idem;
use super::{idem_key, wait, Platform, ANSWER_WAIT};
use crate::types::{
    ClockView, Event, EventKind, EventPage, EventRequest, EventStatus, EventTerms, EventView, HoldPage, HoldReceipt,
    HoldRequest, HoldView, OccurrenceOutcome, OccurrenceRequest, ProviderCredentials, ProviderRequest, Share,
};
use dtenge_core::crypto::{Address, Hash32, PublicKey};
use dtenge_core::party::Party;
use dtenge_core::token::TxId;
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_node::OWN_ACCOUNT;
use dtenge_oracle::service::{
    Confirmation, Confirmed, EventImage, EventStatus as RoleStatus, HoldEvent, OccurrenceNote, OracleService,
    PartyNames, Payee, Registration,
};
use dtenge_oracle::ProviderView;
use std::time::{Duration, Instant};

/// Longest validity of an event: five years (the network's bound).
pub const EVENT_VALIDITY_MS_MAX: u64 = 5 * 366 * 24 * 3_600_000;
/// Largest page of a listing (the network's bound).
pub const PAGE_LIMIT_MAX: usize = 1_000;
/// Most clock advances remembered by their idempotency keys (the oldest is forgotten first).
pub const ADVANCES_REMEMBERED_MAX: usize = 1_024;
/// How often a call waiting for the oracle looks again.
const POLL: Duration = Duration::from_millis(2);
/// Why an expired event ended, as the network words it.
const EXPIRED_REASON: &str = "the event's validity ran out";

/// The manual clock's advances answered, by idempotency key, oldest first. Kept in memory:
/// the manual clock starts again from its first time when the platform restarts, and so
/// should its advances.
#[derive(Default)]
pub(crate) struct Advances(std::sync::Mutex<std::collections::VecDeque<(String, Hash32, ClockView)>>);

impl Platform {
    /// Register a provider and issue its secret token (the NBK operator's decision). The token
    /// is in this answer only; the oracle keeps its hash. Asked again with the same
    /// idempotency key and request, it answers the same provider and token (the oracle derives
    /// a keyed registration's token from its own key and the idempotency key); without a key,
    /// a provider registered already is `CONFLICT`.
    pub fn register_provider(&self, idem: Option<&Idem>, request: ProviderRequest) -> Result<ProviderCredentials> {
        let oracle = self.assembly.oracle();
        let (provider, token) = match idem {
            Some(idem) => oracle.register_provider_keyed(
                &request.id,
                &request.name,
                request.kind,
                (&idem.key, idem.fingerprint),
                self.now_ms(),
            )?,
            None => {
                let token = Hash32(self.entropy.seed32()).to_hex();
                (oracle.register_provider(&request.id, &request.name, request.kind, &token, self.now_ms())?, token)
            }
        };
        Ok(ProviderCredentials { provider, token })
    }

    pub fn providers(&self) -> Vec<ProviderView> {
        self.assembly.oracle().providers()
    }

    /// A page of the oracle's providers, in registration order (issue 19): `limit` (1 to
    /// [`super::LIST_PAGE_MAX`]) from the `offset`-th.
    pub fn providers_page(&self, offset: usize, limit: usize) -> Result<crate::types::ProviderPage> {
        super::check_list_limit(limit)?;
        let (providers, total) = super::page_of(self.assembly.oracle().providers().into_iter(), offset, limit)?;
        Ok(crate::types::ProviderPage { providers, total, offset, limit })
    }

    /// The oracle's public key: what verifies its attestations.
    pub fn oracle_public_key(&self) -> PublicKey {
        self.assembly.oracle().public_key()
    }

    /// The account `client_id` has at `bank`, as an event names it.
    fn party(&self, bank: &str, client_id: &str) -> Result<Party> {
        let address = self.bank(bank)?.service().read(|n| n.account(client_id).map(|a| a.address))?;
        Ok(Party { bank: bank.to_string(), client_id: client_id.to_string(), address })
    }

    /// A provider registers a single event, confirmed by itself or by the provider it names.
    /// Asked again with the same idempotency key and request, it answers the event registered
    /// first (the oracle keeps the key).
    pub fn register_event(&self, idem: Option<&Idem>, token: &str, request: EventRequest) -> Result<EventView> {
        let oracle = self.assembly.oracle();
        let provider = oracle.authenticate(token)?;
        let idem = idem.map(|i| (i.key.clone(), i.fingerprint));
        let (spec, registration) =
            event_registration(&request, idem, self.now_ms(), |bank, client| self.party(bank, client))?;
        let id = oracle.register_event_with(&provider.id, spec, registration, self.now_ms())?;
        self.oracle_event(&id)
    }

    /// The sender's bank holds its client's funds against an event (a single event its
    /// amount, an infinite one the amount asked, by default one occurrence's): the oracle
    /// answers first whether the event may be held now (as the network, before the funds are
    /// looked at: `EVENT_EXPIRED` for an event past its validity), then the bank builds the
    /// hold; answered once it is certified at the bank and (at most [`ANSWER_WAIT`] later)
    /// applied at the oracle. A hold asked again under its idempotency key goes to the bank,
    /// which answers the key.
    pub fn hold(&self, idem: Option<&Idem>, node_id: &str, request: HoldRequest) -> Result<HoldReceipt> {
        let bank = self.bank(node_id)?;
        let oracle = self.assembly.oracle();
        let (event, amount) = match oracle.plan_hold(node_id, &request.event_id, request.amount_tiyn, self.now_ms()) {
            Ok(plan) => (plan.event, plan.amount),
            // Held already: perhaps by this very request, whose key the bank answers.
            Err(e) if e.code == ErrorCode::Conflict && idem.is_some() => {
                let event = self.role_event(&request.event_id)?;
                let amount = request.amount_tiyn.unwrap_or(event.amount_tiyn);
                (event, amount)
            }
            Err(e) => return Err(e),
        };
        if let Some(reason) = self.assembly.central().blocked().get(node_id) {
            bail!(BankBlocked, "'{node_id}' is blocked by the NBK operator: {reason}");
        }
        let client_id = bank
            .service()
            .read(|n| n.client_of(&event.sender).map(str::to_string))
            .ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("{} has no account here", event.sender)))?;
        // The oracle checks that the hold names a payee of its event; any one will do.
        let payee: Address = event.payees.first().map(|p| p.address).expect("an event has a payee");
        let answer = bank.service().hold(&client_id, &event.id, amount, payee, idem_key(idem), self.now_ms());
        let committed = wait(&answer)?;
        // The oracle attested the hold before the notary saw it: it waits for it until the
        // bank's delivery is applied.
        self.event_when(&event.id, |e| e.pending != Some(committed.tx_id))?;
        let image = oracle.image(&event.id, true)?;
        Ok(hold_receipt(&image, committed.tx_id, |_, address| self.client_at_directory(address)))
    }

    /// A provider reports an occurrence: release to the payees (all, or the payouts named;
    /// the rest back to the sender, or kept held by an infinite event), or return to the
    /// sender. Answered once the release is certified, applied at the oracle and at the paid
    /// payees' banks. The same occurrence id again (the oracle keeps it) answers the event as
    /// it is, `repeated`, with the first record of that occurrence, nothing done again;
    /// idempotent by the occurrence id, as on the network.
    pub fn report_occurrence(
        &self,
        _idem: Option<&Idem>,
        token: &str,
        event_id: &str,
        request: OccurrenceRequest,
    ) -> Result<HoldReceipt> {
        let oracle = self.assembly.oracle();
        let provider = oracle.authenticate(token)?;
        let occurrence_id = request.occurrence_id.clone();
        let terms = occurrence_terms(request, |bank, client| self.party(bank, client))?;
        let repeated = confirm_occurrence(oracle, &provider.id, event_id, terms, self.now_ms())?;
        let ended = released(oracle, event_id, ANSWER_WAIT)?;
        let receipt = occurrence_receipt(oracle, event_id, &occurrence_id, repeated, &ended, |e| self.event_of(e))?;
        if receipt.tx_id.is_some() && receipt.tx_id == ended.release_tx {
            self.wait_for_payees(&ended);
        }
        Ok(receipt)
    }

    /// Start the return of every event whose validity ran out (the oracle's tick does it
    /// every few milliseconds anyway): `Ok` for each event the oracle ended or whose return
    /// it ordered from the holding bank.
    pub fn expire_due_events(&self) -> Vec<(String, Result<()>)> {
        let due = self.due_events(self.now_ms());
        self.assembly.oracle().tick(self.now_ms());
        due.into_iter()
            .map(|id| {
                let result = match self.role_event(&id) {
                    Ok(e) if expiring(&e) => Ok(()),
                    Ok(e) => Err(Error::new(ErrorCode::Conflict, format!("event {id} is {:?}", e.status))),
                    Err(e) => Err(e),
                };
                (id, result)
            })
            .collect()
    }

    /// Events past their validity at `now_ms` that wait for nothing and have not ended.
    fn due_events(&self, now_ms: u64) -> Vec<String> {
        let events = self.assembly.oracle().events();
        let due = events.iter().filter(|e| e.valid_until_ms <= now_ms && e.pending.is_none());
        due.filter(|e| matches!(e.status, RoleStatus::Registered | RoleStatus::Held)).map(|e| e.id.clone()).collect()
    }

    /// Move the platform's clock forward (only a manual clock: tests and the demo), then run
    /// the expiries that became due; the answer lists the events that ended expired within
    /// [`ANSWER_WAIT`] (a blocked holding bank returns nothing until unblocked). Asked again
    /// with the same idempotency key and request, it answers the first advance and does not
    /// move the clock again (the last [`ADVANCES_REMEMBERED_MAX`] keys are remembered).
    pub fn advance_clock(&self, idem: Option<&Idem>, advance_ms: u64) -> Result<ClockView> {
        ensure!(
            advance_ms <= EVENT_VALIDITY_MS_MAX,
            MalformedInput,
            "advance at most {EVENT_VALIDITY_MS_MAX} ms at a time"
        );
        // Held across the advance, so that a key is answered once however many ask at once.
        let mut advances = self.advances.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(idem) = idem {
            if let Some((_, fingerprint, view)) = advances.iter().find(|(key, ..)| *key == idem.key) {
                ensure!(
                    *fingerprint == idem.fingerprint,
                    IdempotencyKeyReused,
                    "idempotency key '{}' was used with a different request",
                    idem.key
                );
                return Ok(view.clone());
            }
        }
        // Listed before the clock moves, so that the oracle's own tick cannot take one first
        // unseen.
        let due = self.due_events(self.now_ms().saturating_add(advance_ms));
        ensure!(
            self.clock.advance_ms(advance_ms),
            Forbidden,
            "this platform runs on the system clock, which cannot be advanced"
        );
        self.assembly.oracle().tick(self.now_ms());
        let deadline = Instant::now() + ANSWER_WAIT;
        let mut expired_events = Vec::with_capacity(due.len());
        for id in due {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.event_within(&id, left, |e| e.status == RoleStatus::Expired)?.status == RoleStatus::Expired {
                expired_events.push(id);
            }
        }
        let view = ClockView { now_unix_ms: self.now_ms(), expired_events };
        if let Some(idem) = idem {
            if advances.len() >= ADVANCES_REMEMBERED_MAX {
                advances.pop_front();
            }
            advances.push_back((idem.key.clone(), idem.fingerprint, view.clone()));
        }
        Ok(view)
    }

    /// Oracle events, newest first, optionally of one status.
    pub fn oracle_events(&self, status: Option<EventStatus>, offset: usize, limit: usize) -> Result<EventPage> {
        let oracle = self.assembly.oracle();
        let images = oracle.events().iter().rev().map(|e| oracle.image(&e.id, false)).collect::<Result<Vec<_>>>()?;
        event_page(images, status, offset, limit, |_, address| self.client_at_directory(address))
    }

    /// The event and its records, signed by the oracle role.
    pub fn oracle_event(&self, event_id: &str) -> Result<EventView> {
        let image = self.assembly.oracle().image(event_id, true)?;
        Ok(event_full_view(&image, |_, address| self.client_at_directory(address)))
    }

    /// A page of the events `client_id` is a party to, newest first (issue 19): `limit` (1 to
    /// [`super::LIST_PAGE_MAX`]) from the `offset`-th; the others are only counted, not kept.
    pub fn holds_page(&self, node_id: &str, client_id: &str, offset: usize, limit: usize) -> Result<HoldPage> {
        super::check_list_limit(limit)?;
        let me = self.party(node_id, client_id)?;
        let oracle = self.assembly.oracle();
        let mut images = Vec::with_capacity(limit);
        let mut total: usize = 0;
        for event in oracle.events().iter().rev() {
            let image = oracle.image(&event.id, false)?;
            if image.names(&me.bank, &me.address) {
                if total >= offset && images.len() < limit {
                    images.push(image);
                }
                total += 1;
            }
        }
        assert!(images.len() <= limit);
        Ok(HoldPage { holds: hold_views(&images, &me.bank, &me.address, self.now_ms()), total, offset, limit })
    }

    /// The events a client of `node_id` is a party to: as sender (its funds held) or payee,
    /// every one, newest first.
    pub fn holds(&self, node_id: &str, client_id: &str) -> Result<Vec<HoldView>> {
        let me = self.party(node_id, client_id)?;
        let oracle = self.assembly.oracle();
        let mut images = Vec::new();
        for event in oracle.events().iter().rev() {
            let image = oracle.image(&event.id, false)?;
            if image.names(&me.bank, &me.address) {
                images.push(image);
            }
        }
        Ok(hold_views(&images, &me.bank, &me.address, self.now_ms()))
    }

    /// Wait (at most [`ANSWER_WAIT`]) until the banks of the payees a release paid have
    /// applied it, as the network answers once every party's node applied a payment: the
    /// holding bank and the oracle have, when the event ended.
    fn wait_for_payees(&self, event: &HoldEvent) {
        let (Some(tx_id), Some(release)) = (event.release_tx, event.release.as_ref()) else { return };
        let paid: Vec<&Payee> =
            event.payees.iter().filter(|p| release.outputs.iter().any(|o| o.owner == p.address)).collect();
        let applied = |p: &Payee| {
            self.bank(&p.bank).is_ok_and(|bank| {
                bank.service().read(|n| {
                    let history = n.client_of(&p.address).and_then(|client| n.history(client).ok());
                    history.is_some_and(|h| h.iter().rev().any(|e| e.tx_id == tx_id))
                })
            })
        };
        let deadline = Instant::now() + ANSWER_WAIT;
        while !paid.iter().all(|p| applied(p)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }

    fn role_event(&self, event_id: &str) -> Result<HoldEvent> {
        role_event(self.assembly.oracle(), event_id)
    }

    /// The event once `done` holds of it, or as it is after [`ANSWER_WAIT`].
    fn event_when(&self, event_id: &str, done: impl Fn(&HoldEvent) -> bool) -> Result<HoldEvent> {
        event_within(self.assembly.oracle(), event_id, ANSWER_WAIT, done)
    }

    fn event_within(&self, event_id: &str, within: Duration, done: impl Fn(&HoldEvent) -> bool) -> Result<HoldEvent> {
        event_within(self.assembly.oracle(), event_id, within, done)
    }

    /// The client id the directory lists `address` under.
    fn client_at_directory(&self, address: &Address) -> Option<String> {
        self.assembly.directory().read(|d| d.by_address(address).map(|l| l.client_id.clone()))
    }

    /// The role's event in the network's shape; its parties' client ids as its provider named
    /// them, or from the directory.
    fn event_of(&self, e: &HoldEvent) -> Event {
        let oracle = self.assembly.oracle();
        let image = EventImage {
            event: e.clone(),
            notes: oracle.notes(&e.id).unwrap_or_default(),
            infinite: oracle.is_infinite(&e.id) == Some(true),
            occurrences: oracle.occurrences(&e.id),
            records: Vec::new(),
        };
        event_view(&image, |_, address| self.client_at_directory(address))
    }
}

/// A provider's event request, its parties found by `party` (a bank and a client id): what
/// the oracle registers. The client ids go with it, for the oracle's own views.
pub fn event_registration(
    request: &EventRequest,
    idem: Option<(String, Hash32)>,
    now_ms: u64,
    party: impl Fn(&str, &str) -> Result<Party>,
) -> Result<(dtenge_oracle::service::EventSpec, Registration)> {
    ensure!(
        request.valid_for_ms > 0 && request.valid_for_ms <= EVENT_VALIDITY_MS_MAX,
        MalformedInput,
        "valid_for_ms is 1 to {EVENT_VALIDITY_MS_MAX}"
    );
    let sender = party(&request.sender.bank, &request.sender.client_id)?;
    ensure!(
        sender.client_id != OWN_ACCOUNT,
        Forbidden,
        "a node's own DT is not held for events; hold a client's or an agency's"
    );
    let mut payees = Vec::with_capacity(request.payees.len());
    for share in &request.payees {
        let payee = party(&share.bank, &share.client_id)?;
        payees.push(Payee { bank: payee.bank, address: payee.address, amount_tiyn: share.amount_tiyn });
    }
    let names = PartyNames {
        sender: sender.client_id,
        payees: request.payees.iter().map(|share| share.client_id.clone()).collect(),
    };
    let spec = dtenge_oracle::service::EventSpec {
        reference: request.reference.trim().to_string(),
        sender_bank: sender.bank,
        sender: sender.address,
        payees,
        valid_until_ms: now_ms.saturating_add(request.valid_for_ms),
    };
    let registration = Registration {
        confirmed_by: request.confirmed_by.clone(),
        idem,
        infinite: request.kind == EventKind::Infinite,
        names: Some(names),
    };
    Ok((spec, registration))
}

/// What a provider's occurrence asks of the oracle, its payees found by `party`.
pub fn occurrence_terms(
    request: OccurrenceRequest,
    party: impl Fn(&str, &str) -> Result<Party>,
) -> Result<(Confirmation, OccurrenceNote)> {
    let confirmation = match request.outcome {
        OccurrenceOutcome::Occurred => {
            ensure!(request.reason.is_none(), MalformedInput, "a reason goes with a rejection only");
            let payouts = match &request.payouts {
                Some(list) => Some(
                    list.iter()
                        .map(|s| party(&s.bank, &s.client_id).map(|p| (p.address, s.amount_tiyn)))
                        .collect::<Result<Vec<_>>>()?,
                ),
                None => None,
            };
            Confirmation::Occurred { payouts }
        }
        OccurrenceOutcome::Rejected => {
            ensure!(request.payouts.is_none(), MalformedInput, "a rejection pays no one");
            ensure!(request.reason.is_some(), MalformedInput, "a rejection needs a reason");
            Confirmation::Rejected
        }
    };
    Ok((confirmation, OccurrenceNote { occurrence_id: request.occurrence_id, reason: request.reason }))
}

/// The provider's occurrence at the oracle: whether it was reported before (`true`: nothing
/// done again). Past its validity, an event is expired for its provider (the network's
/// answer) whatever its state: the oracle's tick returns what it holds.
pub fn confirm_occurrence(
    oracle: &OracleService,
    provider: &str,
    event_id: &str,
    (confirmation, occurrence): (Confirmation, OccurrenceNote),
    now_ms: u64,
) -> Result<bool> {
    match oracle.confirm_occurrence(provider, event_id, confirmation, occurrence, now_ms) {
        Ok(confirmed) => Ok(confirmed == Confirmed::Repeated),
        Err(e) if e.code == ErrorCode::Conflict => {
            let event = role_event(oracle, event_id)?;
            if event.status == RoleStatus::Expired || now_ms >= event.valid_until_ms {
                bail!(EventExpired, "event {event_id} expired; what it held goes back to the sender");
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// The event once an occurrence's decision is done at the oracle (it ended, or an infinite
/// one holds the rest again once its release is applied), waiting at most `within`.
pub fn released(oracle: &OracleService, event_id: &str, within: Duration) -> Result<HoldEvent> {
    let ended = event_within(oracle, event_id, within, |e| e.status != RoleStatus::Releasing && e.pending.is_none())?;
    if ended.status == RoleStatus::Releasing || ended.pending.is_some() {
        bail!(RequestInProgress, "the release of event {event_id} is on its way; report the occurrence again");
    }
    Ok(ended)
}

/// The answer to an occurrence once `ended` ([`released`]): the event, and the records of
/// its transaction (or, repeated, the occurrence's first record).
pub fn occurrence_receipt(
    oracle: &OracleService,
    event_id: &str,
    occurrence_id: &str,
    repeated: bool,
    ended: &HoldEvent,
    view: impl Fn(&HoldEvent) -> Event,
) -> Result<HoldReceipt> {
    let first = oracle.occurrence_record(event_id, occurrence_id)?;
    let tx_id = match &first {
        Some(record) => record.body.tx_id,
        None => ended.release_tx,
    };
    let records = match (&first, tx_id) {
        (Some(record), _) if repeated => vec![record.clone()],
        (_, Some(tx_id)) => oracle.records(event_id)?.into_iter().filter(|r| r.body.tx_id == Some(tx_id)).collect(),
        (first, None) => first.iter().cloned().collect(),
    };
    Ok(HoldReceipt { event: view(ended), records, tx_id, repeated })
}

/// The answer to a hold once the oracle applied it: the event and the records of the hold's
/// transaction.
pub fn hold_receipt(
    image: &EventImage,
    tx_id: TxId,
    name_of: impl Fn(&str, &Address) -> Option<String>,
) -> HoldReceipt {
    HoldReceipt {
        event: event_view(image, name_of),
        records: image.records.iter().filter(|r| r.body.tx_id == Some(tx_id)).cloned().collect(),
        tx_id: Some(tx_id),
        repeated: false,
    }
}

/// The client at `address` of `bank`'s holds among `images`: as sender (its funds held) or
/// payee, newest first as given.
pub fn hold_views(images: &[EventImage], bank: &str, address: &Address, now_ms: u64) -> Vec<HoldView> {
    let mut views = Vec::new();
    for image in images {
        let event = &image.event;
        let is = |b: &str, a: &Address| b == bank && a == address;
        let share = if is(&event.sender_bank, &event.sender) {
            ("sender", event.amount_tiyn)
        } else if let Some(payee) = event.payees.iter().find(|p| is(&p.bank, &p.address)) {
            ("payee", payee.amount_tiyn)
        } else {
            continue;
        };
        views.push(HoldView {
            role: share.0.into(),
            event_id: event.id.clone(),
            reference: event.reference.clone(),
            status: status_of(event.status),
            kind: kind_of(image.infinite),
            held_tiyn: event.held_tiyn,
            released_tiyn: event.released_tiyn,
            returned_tiyn: event.returned_tiyn,
            share_tiyn: share.1,
            valid_until_unix_ms: event.valid_until_ms,
            expires_in_ms: event.valid_until_ms.saturating_sub(now_ms),
        });
    }
    views
}

/// The role's event in the network's shape: its parties named by the client ids its provider
/// gave (kept in its notes), else by `name_of` (a party's bank and address).
pub fn event_view(image: &EventImage, name_of: impl Fn(&str, &Address) -> Option<String>) -> Event {
    let e = &image.event;
    let names = image.notes.names.as_ref();
    let party = |given: Option<&String>, bank: &str, address: Address| {
        let client_id = given.filter(|name| !name.is_empty()).cloned().or_else(|| name_of(bank, &address));
        Party { bank: bank.to_string(), client_id: client_id.unwrap_or_default(), address }
    };
    let payees = e.payees.iter().enumerate().map(|(i, p)| Share {
        party: party(names.and_then(|n| n.payees.get(i)), &p.bank, p.address),
        amount_tiyn: p.amount_tiyn,
    });
    let notes = &image.notes;
    Event {
        id: e.id.clone(),
        hash: e.hash(),
        terms: EventTerms {
            provider: e.provider.clone(),
            confirmed_by: notes.confirmed_by.clone().unwrap_or_else(|| e.provider.clone()),
            reference: e.reference.clone(),
            kind: kind_of(image.infinite),
            sender: party(names.map(|n| &n.sender), &e.sender_bank, e.sender),
            payees: payees.collect(),
            registered_at_unix_ms: notes.registered_at_ms,
            valid_until_unix_ms: e.valid_until_ms,
        },
        status: status_of(e.status),
        held_tiyn: e.held_tiyn,
        released_tiyn: e.released_tiyn,
        returned_tiyn: e.returned_tiyn,
        occurrences: image.occurrences,
        reason: match e.status {
            RoleStatus::Expired => Some(EXPIRED_REASON.to_string()),
            _ => notes.reason.clone(),
        },
        records: Vec::new(),
    }
}

/// A page of `images` (the oracle's events, newest first), optionally of one status.
pub fn event_page(
    images: Vec<EventImage>,
    status: Option<EventStatus>,
    offset: usize,
    limit: usize,
    name_of: impl Fn(&str, &Address) -> Option<String>,
) -> Result<EventPage> {
    ensure!(limit > 0 && limit <= PAGE_LIMIT_MAX, MalformedInput, "limit is 1 to {PAGE_LIMIT_MAX}");
    let mut matching = Vec::new();
    for image in &images {
        let event = event_view(image, &name_of);
        if status.is_none_or(|s| event.status == s) {
            matching.push(event);
        }
    }
    let total = matching.len();
    Ok(EventPage { events: matching.into_iter().skip(offset).take(limit).collect(), total, offset, limit })
}

/// The event with its records, in the network's shape.
pub fn event_full_view(image: &EventImage, name_of: impl Fn(&str, &Address) -> Option<String>) -> EventView {
    EventView { event: event_view(image, name_of), records: image.records.clone() }
}

fn kind_of(infinite: bool) -> EventKind {
    if infinite {
        EventKind::Infinite
    } else {
        EventKind::Single
    }
}

fn role_event(oracle: &OracleService, event_id: &str) -> Result<HoldEvent> {
    oracle.event(event_id).ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no oracle event {event_id}")))
}

/// The event once `done` holds of it, or as it is after `within`.
fn event_within(
    oracle: &OracleService,
    event_id: &str,
    within: Duration,
    done: impl Fn(&HoldEvent) -> bool,
) -> Result<HoldEvent> {
    let deadline = Instant::now() + within;
    loop {
        let event = role_event(oracle, event_id)?;
        if done(&event) || Instant::now() >= deadline {
            return Ok(event);
        }
        std::thread::sleep(POLL);
    }
}

/// The network's status of a role's event: one confirmed and not yet released still holds.
fn status_of(status: RoleStatus) -> EventStatus {
    match status {
        RoleStatus::Registered => EventStatus::Registered,
        RoleStatus::Held | RoleStatus::Releasing => EventStatus::Held,
        RoleStatus::Completed => EventStatus::Completed,
        RoleStatus::Rejected => EventStatus::Rejected,
        RoleStatus::Expired => EventStatus::Expired,
    }
}

/// The event ended, or is being released, as `ends_as`.
fn follows(event: &HoldEvent, ends_as: RoleStatus) -> bool {
    event.status == ends_as
        || (event.status == RoleStatus::Releasing && event.release.as_ref().is_some_and(|r| r.ends_as == ends_as))
}

/// The oracle ended the event expired, or ordered its return.
fn expiring(event: &HoldEvent) -> bool {
    follows(event, RoleStatus::Expired)
}
