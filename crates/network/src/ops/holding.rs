//! Holding (SPEC §5.1): the oracle's providers register events, the sender's bank holds funds
//! against them, the providers' occurrences release them to the payees or return them, and
//! expiry returns them when no event comes in time.
//!
//! Every step that moves DT is one ledger transaction the oracle attests (see
//! `dtenge_oracle`), committed together with the oracle's signed record and the notifications
//! to the parties' banks. The oracle's lock is held from plan to apply, so the decisions on one
//! event are sequential and the oracle's registry always matches the tokens on the ledger
//! (reconciliation checks it).

use crate::types::{
    ClockView, EventPage, EventRequest, EventView, HoldReceipt, HoldRequest, HoldView, Notification, NotificationKind,
    NotificationPage, OccurrenceOutcome, OccurrenceRequest, ProviderCredentials, ProviderRequest, ShareRequest,
};
use crate::{Idem, Network, NOTIFICATIONS_TABLE};
use dtenge_core::crypto::Hash32;
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::TxId;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::Purpose;
use dtenge_oracle::{
    Action, Change, Decision, EventSpec, EventStatus, Occurrence, Oracle, Outcome, ReleasePlan, Share,
};
use dtenge_store::{Store, WriteBatch};
use std::collections::{BTreeMap, VecDeque};

/// Longest validity of an event: five years.
pub const EVENT_VALIDITY_MS_MAX: u64 = 5 * 366 * 24 * 3_600_000;
/// Most notifications kept in memory per node; older ones stay on disk.
pub const NOTIFICATIONS_IN_MEMORY_MAX: usize = 10_000;
/// Most events one expiry sweep handles; the next sweep takes the rest.
pub const EXPIRIES_PER_SWEEP_MAX: usize = 1_000;
/// Largest page of a listing.
pub const PAGE_LIMIT_MAX: usize = 1_000;

/// The notifications of every node.
#[derive(Default)]
pub struct Notifications {
    by_node: BTreeMap<String, VecDeque<Notification>>,
    /// Per node: the `seq` of the next notification (also the total ever sent).
    next_seq: BTreeMap<String, u64>,
}

/// A notification before its number is known.
pub struct Notice {
    party: Party,
    kind: NotificationKind,
    subject_id: String,
    amount: Amount,
    text: String,
}

impl Notifications {
    pub(crate) fn load(store: &Store) -> Result<Notifications> {
        let mut notifications = Notifications::default();
        for (_, n) in store.scan_values::<Notification>(NOTIFICATIONS_TABLE)? {
            notifications.insert(n);
        }
        Ok(notifications)
    }

    fn insert(&mut self, n: Notification) {
        let next = self.next_seq.entry(n.node.clone()).or_insert(0);
        *next = (*next).max(n.seq + 1);
        let list = self.by_node.entry(n.node.clone()).or_default();
        list.push_back(n);
        if list.len() > NOTIFICATIONS_IN_MEMORY_MAX {
            list.pop_front();
        }
    }

    /// Number the notices (in order, per node) and write them.
    pub(crate) fn plan(
        &self,
        notices: Vec<Notice>,
        tx_id: Option<TxId>,
        now_ms: u64,
        batch: &mut WriteBatch,
    ) -> Result<Vec<Notification>> {
        let mut next = self.next_seq.clone();
        let mut planned = Vec::with_capacity(notices.len());
        for notice in notices {
            let seq = next.entry(notice.party.bank.clone()).or_insert(0);
            let n = Notification {
                seq: *seq,
                node: notice.party.bank,
                client_id: notice.party.client_id,
                at_unix_ms: now_ms,
                kind: notice.kind,
                subject_id: notice.subject_id,
                amount_tiyn: notice.amount,
                text: notice.text,
                tx_id,
            };
            *seq += 1;
            let mut key = n.node.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&n.seq.to_be_bytes());
            batch.put_value(NOTIFICATIONS_TABLE, key, &n)?;
            planned.push(n);
        }
        Ok(planned)
    }

    pub(crate) fn apply(&mut self, planned: Vec<Notification>) {
        for n in planned {
            self.insert(n);
        }
    }
}

pub(crate) fn notice(party: &Party, kind: NotificationKind, subject_id: &str, amount: Amount, text: String) -> Notice {
    Notice { party: party.clone(), kind, subject_id: subject_id.to_string(), amount, text }
}

impl Network {
    /// Register a provider and issue its secret token (the NBK operator's decision).
    pub fn register_provider(&self, idem: Option<&Idem>, request: ProviderRequest) -> Result<ProviderCredentials> {
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        let token = Hash32(self.entropy.seed32()).to_hex();
        let provider = oracle.plan_provider(&request.id, &request.name, request.kind, &token, self.now_ms())?;
        let mut batch = WriteBatch::new();
        Oracle::provider_writes(&provider, &mut batch)?;
        let credentials = ProviderCredentials { provider: provider.view(), token };
        self.commit(idem, batch, &credentials)?;
        oracle.apply_provider(provider);
        Ok(credentials)
    }

    pub fn providers(&self) -> Vec<dtenge_oracle::ProviderView> {
        self.oracle.lock().providers().map(|p| p.view()).collect()
    }

    /// The oracle's public key: what verifies its attestations and its records' signatures.
    pub fn oracle_public_key(&self) -> dtenge_core::crypto::PublicKey {
        self.oracle.lock().public_key()
    }

    fn share(&self, share: &ShareRequest) -> Result<Share> {
        let (party, _) = self.party(&share.bank, &share.client_id)?;
        Ok(Share { party, amount_tiyn: share.amount_tiyn })
    }

    /// A provider registers an event; the banks of the sender and the payees are told.
    pub fn register_event(&self, idem: Option<&Idem>, token: &str, request: EventRequest) -> Result<EventView> {
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        let provider = oracle.authenticate(token)?.clone();
        ensure!(
            request.valid_for_ms > 0 && request.valid_for_ms <= EVENT_VALIDITY_MS_MAX,
            MalformedInput,
            "valid_for_ms is 1 to {EVENT_VALIDITY_MS_MAX}"
        );
        let (sender, _) = self.party(&request.sender.bank, &request.sender.client_id)?;
        ensure!(
            sender.client_id != dtenge_node::OWN_ACCOUNT,
            Forbidden,
            "a node's own DT is not held for events; hold a client's or an agency's"
        );
        let payees = request.payees.iter().map(|s| self.share(s)).collect::<Result<Vec<_>>>()?;
        let now = self.now_ms();
        let spec = EventSpec {
            confirmed_by: request.confirmed_by,
            reference: request.reference,
            kind: request.kind,
            sender,
            payees,
            valid_until_unix_ms: now.saturating_add(request.valid_for_ms),
        };
        let change = oracle.plan_event(&provider, spec, now)?;
        let event = &change.event;
        let total = event.terms.occurrence_total()?;
        let mut notices = vec![notice(
            &event.terms.sender,
            NotificationKind::EventRegistered,
            &event.id,
            total,
            format!("event {} ({}): {total} to be held from this account", event.id, event.terms.reference),
        )];
        for share in &event.terms.payees {
            notices.push(notice(
                &share.party,
                NotificationKind::EventRegistered,
                &event.id,
                share.amount_tiyn,
                format!(
                    "event {} ({}): {} to be paid to this account",
                    event.id, event.terms.reference, share.amount_tiyn
                ),
            ));
        }
        self.commit_change(idem, &mut oracle, change, notices, None, |change| EventView {
            event: change.event.clone(),
            records: change.records.clone(),
        })
    }

    /// Commit an oracle change that moves no DT, with its notices; answer with `answer(change)`.
    fn commit_change<T: serde::Serialize>(
        &self,
        idem: Option<&Idem>,
        oracle: &mut Oracle,
        change: Change,
        notices: Vec<Notice>,
        tx_id: Option<TxId>,
        answer: impl FnOnce(&Change) -> T,
    ) -> Result<T> {
        let mut batch = WriteBatch::new();
        change.writes(&mut batch)?;
        let mut notifications = self.notifications.lock();
        let planned = notifications.plan(notices, tx_id, self.now_ms(), &mut batch)?;
        let answer = answer(&change);
        self.commit(idem, batch, &answer)?;
        oracle.apply(change);
        notifications.apply(planned);
        Ok(answer)
    }

    /// The sender's bank holds its client's funds against an event, with the oracle's
    /// confirmation. The payees' banks are told.
    pub fn hold(&self, idem: Option<&Idem>, node_id: &str, request: HoldRequest) -> Result<HoldReceipt> {
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        let now = self.now_ms();
        let plan = oracle.plan_hold(&request.event_id, request.amount_tiyn, now)?;
        ensure!(
            plan.sender.bank == node_id,
            Forbidden,
            "the sender of event {} banks with '{}', not '{node_id}'",
            plan.event_id,
            plan.sender.bank
        );
        let slot = self.active_participant(node_id)?;
        let mut tx = slot.state.lock().prepare_hold(
            &plan.sender.client_id,
            plan.amount,
            plan.event_hash,
            self.issuer(),
            self.nonce(),
        )?;
        let (change, attestation) = oracle.confirm_hold(&plan, &tx, node_id, now).inspect_err(|_| self.release(&tx))?;
        tx.attestations.push(attestation);
        let event = &change.event;
        let notices = event
            .terms
            .payees
            .iter()
            .map(|share| {
                notice(
                    &share.party,
                    NotificationKind::FundsHeld,
                    &event.id,
                    share.amount_tiyn,
                    format!(
                        "funds held for this account by event {} ({}): {} on each occurrence",
                        event.id, event.terms.reference, share.amount_tiyn
                    ),
                )
            })
            .collect();
        self.execute_with_change(idem, &mut oracle, &tx, Purpose::Hold, change, notices)
    }

    /// Commit a ledger transaction the oracle confirmed, with the oracle's change and the
    /// notices, then apply both.
    fn execute_with_change(
        &self,
        idem: Option<&Idem>,
        oracle: &mut Oracle,
        tx: &dtenge_core::tx::Transaction,
        purpose: Purpose,
        change: Change,
        notices: Vec<Notice>,
    ) -> Result<HoldReceipt> {
        let mut extra = WriteBatch::new();
        change.writes(&mut extra).inspect_err(|_| self.release(tx))?;
        let receipt = receipt_of(&change, Some(tx.id()));
        let reference = format!("event {}", change.event.id);
        self.execute_notified(idem, tx, purpose, &reference, &[], extra, notices, &receipt)?;
        oracle.apply(change);
        Ok(receipt)
    }

    /// Commit an oracle-attested transaction with `extra` (the oracle's writes) and the
    /// notifications of `notices` in one commit, then apply the notifications. On failure
    /// nothing changed and the transaction's reservations are released.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn execute_notified<T: serde::Serialize>(
        &self,
        idem: Option<&Idem>,
        tx: &dtenge_core::tx::Transaction,
        purpose: Purpose,
        reference: &str,
        fiat: &[(String, String, Amount)],
        mut extra: WriteBatch,
        notices: Vec<Notice>,
        answer: &T,
    ) -> Result<()> {
        let planned = self
            .notifications
            .lock()
            .plan(notices, Some(tx.id()), self.now_ms(), &mut extra)
            .inspect_err(|_| self.release(tx))?;
        self.execute(idem, tx, purpose, Some(reference), fiat, extra, answer)?;
        self.notifications.lock().apply(planned);
        Ok(())
    }

    /// A provider reports an occurrence: release to the payees, or return to the sender.
    pub fn report_occurrence(
        &self,
        idem: Option<&Idem>,
        token: &str,
        event_id: &str,
        request: OccurrenceRequest,
    ) -> Result<HoldReceipt> {
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        let provider = oracle.authenticate(token)?.clone();
        let outcome = match request.outcome {
            OccurrenceOutcome::Occurred => {
                ensure!(request.reason.is_none(), MalformedInput, "a reason goes with a rejection only");
                let payouts = match &request.payouts {
                    Some(list) => Some(list.iter().map(|s| self.share(s)).collect::<Result<Vec<_>>>()?),
                    None => None,
                };
                Outcome::Occurred { payouts }
            }
            OccurrenceOutcome::Rejected => {
                ensure!(request.payouts.is_none(), MalformedInput, "a rejection pays no one");
                let reason = request.reason.ok_or_else(|| Error::malformed("a rejection needs a reason"))?;
                Outcome::Rejected { reason }
            }
        };
        let now = self.now_ms();
        let occurrence = Occurrence { occurrence_id: request.occurrence_id, outcome };
        let decision = match oracle.plan_occurrence(&provider, event_id, occurrence, now) {
            Ok(decision) => decision,
            Err(e) if e.code == ErrorCode::EventExpired => {
                // Too late: the return is due now, whoever sweeps first.
                if oracle.event(event_id).is_ok_and(|ev| !ev.status.is_final()) {
                    self.expire_locked(&mut oracle, event_id)?;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.decide(idem, &mut oracle, decision)
    }

    fn decide(&self, idem: Option<&Idem>, oracle: &mut Oracle, decision: Decision) -> Result<HoldReceipt> {
        match decision {
            Decision::Repeated(record) => {
                let event = oracle.event(&record.body.event_id)?;
                let event = event.summary();
                Ok(HoldReceipt { event, records: vec![*record.clone()], tx_id: record.body.tx_id, repeated: true })
            }
            Decision::Change(change) => {
                let notices = return_notices(&change.event, Amount::ZERO);
                self.commit_change(idem, oracle, change, notices, None, |change| receipt_of(change, None))
            }
            Decision::Release(plan) => self.release_held(idem, oracle, plan),
        }
    }

    /// Spend the event's held tokens into the oracle's decision.
    fn release_held(&self, idem: Option<&Idem>, oracle: &mut Oracle, plan: ReleasePlan) -> Result<HoldReceipt> {
        let issuer = self.issuer();
        let slot = self.slot(&plan.sender.bank)?;
        let mut tx = slot.state.lock().prepare_release(
            &plan.sender.client_id,
            &plan.event_hash,
            plan.outputs(issuer),
            self.nonce(),
        )?;
        let (change, attestation) =
            oracle.confirm_release(&plan, &tx, issuer, self.now_ms()).inspect_err(|_| self.release(&tx))?;
        tx.attestations.push(attestation);
        let event = &change.event;
        let mut notices = Vec::new();
        for share in &plan.payouts {
            notices.push(notice(
                &share.party,
                NotificationKind::FundsReleased,
                &event.id,
                share.amount_tiyn,
                format!(
                    "event {} ({}): {} released to this account",
                    event.id, event.terms.reference, share.amount_tiyn
                ),
            ));
        }
        let purpose = if plan.action == Action::Released {
            let paid = Amount::sum(plan.payouts.iter().map(|s| s.amount_tiyn))?;
            notices.push(notice(
                &event.terms.sender,
                NotificationKind::FundsReleased,
                &event.id,
                paid,
                format!("event {} ({}): {paid} released to the payees", event.id, event.terms.reference),
            ));
            if !plan.returned.is_zero() {
                notices.extend(return_notices(event, plan.returned).into_iter().take(1));
            }
            Purpose::HoldRelease
        } else {
            notices.extend(return_notices(event, plan.returned));
            Purpose::HoldReturn
        };
        self.execute_with_change(idem, oracle, &tx, purpose, change, notices)
    }

    /// Return held funds of every event whose validity ran out. Called by the platform's
    /// sweeper every second and after the clock is advanced; a failure (e.g. a blocked bank)
    /// leaves that event for the next sweep.
    pub fn expire_due_events(&self) -> Vec<(String, Result<()>)> {
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        self.expire_due_locked(&mut oracle)
    }

    fn expire_due_locked(&self, oracle: &mut Oracle) -> Vec<(String, Result<()>)> {
        let due = oracle.due_expiries(self.now_ms());
        due.into_iter()
            .take(EXPIRIES_PER_SWEEP_MAX)
            .map(|id| {
                let result = self.expire_locked(oracle, &id);
                (id, result)
            })
            .collect()
    }

    fn expire_locked(&self, oracle: &mut Oracle, event_id: &str) -> Result<()> {
        let decision = oracle.plan_expiry(event_id, self.now_ms())?;
        self.decide(None, oracle, decision).map(|_| ())
    }

    /// Move the platform's clock forward (only a manual clock: tests and the demo), then run
    /// the expiries that became due.
    pub fn advance_clock(&self, idem: Option<&Idem>, advance_ms: u64) -> Result<ClockView> {
        ensure!(
            advance_ms <= EVENT_VALIDITY_MS_MAX,
            MalformedInput,
            "advance at most {EVENT_VALIDITY_MS_MAX} ms at a time"
        );
        // Under the oracle's lock, so that the expiries this advance makes due are the ones
        // this answer reports (the sweeper cannot take them in between).
        let _gate = self.gate_shared();
        let mut oracle = self.oracle.lock();
        ensure!(
            self.clock.advance_ms(advance_ms),
            Forbidden,
            "this platform runs on the system clock, which cannot be advanced"
        );
        let expired = self.expire_due_locked(&mut oracle);
        for (id, result) in &expired {
            if let Err(e) = result {
                eprintln!("expiry of event {id} failed, retried on the next sweep: {e}");
            }
        }
        let expired_events = expired.into_iter().filter(|(_, r)| r.is_ok()).map(|(id, _)| id).collect();
        let view = ClockView { now_unix_ms: self.now_ms(), expired_events };
        // Remembered like any answer, so that a retry does not advance the clock twice.
        self.commit(idem, WriteBatch::new(), &view)?;
        Ok(view)
    }

    /// Oracle events, newest first, optionally of one status.
    pub fn oracle_events(&self, status: Option<EventStatus>, offset: usize, limit: usize) -> Result<EventPage> {
        ensure!(limit > 0 && limit <= PAGE_LIMIT_MAX, MalformedInput, "limit is 1 to {PAGE_LIMIT_MAX}");
        let oracle = self.oracle.lock();
        let matching: Vec<_> = oracle.events().rev().filter(|e| status.is_none_or(|s| e.status == s)).collect();
        let events = matching.iter().skip(offset).take(limit).map(|e| e.summary()).collect();
        Ok(EventPage { events, total: matching.len(), offset, limit })
    }

    pub fn oracle_event(&self, event_id: &str) -> Result<EventView> {
        Ok(EventView::of(self.oracle.lock().event(event_id)?))
    }

    /// The events a client of `node_id` is a party to: as sender (its funds held) or payee.
    pub fn holds(&self, node_id: &str, client_id: &str) -> Result<Vec<HoldView>> {
        self.party(node_id, client_id)?;
        let now = self.now_ms();
        let oracle = self.oracle.lock();
        let mut views = Vec::new();
        for event in oracle.events().rev() {
            let terms = &event.terms;
            let is = |p: &Party| p.bank == node_id && p.client_id == client_id;
            let (role, share) = if is(&terms.sender) {
                ("sender", terms.occurrence_total()?)
            } else if let Some(share) = terms.payees.iter().find(|s| is(&s.party)) {
                ("payee", share.amount_tiyn)
            } else {
                continue;
            };
            views.push(HoldView {
                role: role.into(),
                event_id: event.id.clone(),
                reference: terms.reference.clone(),
                status: event.status,
                kind: terms.kind,
                held_tiyn: event.held_tiyn,
                released_tiyn: event.released_tiyn,
                returned_tiyn: event.returned_tiyn,
                share_tiyn: share,
                valid_until_unix_ms: terms.valid_until_unix_ms,
                expires_in_ms: terms.valid_until_unix_ms.saturating_sub(now),
            });
        }
        Ok(views)
    }

    /// What `node_id` was told, newest first.
    pub fn notifications(&self, node_id: &str, offset: usize, limit: usize) -> Result<NotificationPage> {
        self.slot(node_id)?;
        ensure!(limit > 0 && limit <= PAGE_LIMIT_MAX, MalformedInput, "limit is 1 to {PAGE_LIMIT_MAX}");
        let notifications = self.notifications.lock();
        let list = notifications.by_node.get(node_id);
        let total = notifications.next_seq.get(node_id).copied().unwrap_or(0) as usize;
        let page = list.map(|l| l.iter().rev().skip(offset).take(limit).cloned().collect()).unwrap_or_default();
        Ok(NotificationPage { notifications: page, total, offset, limit })
    }

    /// Reconciliation of the oracle with the ledger: for every event, what the oracle says is
    /// held equals the held tokens on the sender's node, and no token is held for an event
    /// the oracle does not know. The caller holds the gate exclusively.
    pub(crate) fn reconcile_oracle(&self, problems: &mut Vec<String>) {
        let mut on_ledger: BTreeMap<Hash32, Amount> = BTreeMap::new();
        for (id, slot) in &self.nodes {
            match slot.state.lock().held_by_event() {
                Ok(held) => {
                    for (event, amount) in held {
                        let total = on_ledger.entry(event).or_insert(Amount::ZERO);
                        match total.checked_add(amount) {
                            Ok(sum) => *total = sum,
                            Err(e) => problems.push(format!("node {id}: {e}")),
                        }
                    }
                }
                Err(e) => problems.push(format!("node {id}: {e}")),
            }
        }
        let oracle = self.oracle.lock();
        for event in oracle.events() {
            let ledger = on_ledger.remove(&event.hash).unwrap_or(Amount::ZERO);
            if ledger != event.held_tiyn {
                problems.push(format!(
                    "oracle event {} holds {} by the oracle, {ledger} on the ledger",
                    event.id, event.held_tiyn
                ));
            }
        }
        for (event, amount) in on_ledger {
            problems.push(format!("{amount} is held on the ledger for an event the oracle does not know ({event})"));
        }
    }
}

/// The notices of funds going back to the sender (rejection, expiry, partial release).
fn return_notices(event: &dtenge_oracle::Event, returned: Amount) -> Vec<Notice> {
    let why = event.reason.clone().unwrap_or_else(|| "partial release".into());
    let mut notices = vec![notice(
        &event.terms.sender,
        NotificationKind::FundsReturned,
        &event.id,
        returned,
        format!("event {} ({}): {returned} returned to this account: {why}", event.id, event.terms.reference),
    )];
    for share in &event.terms.payees {
        notices.push(notice(
            &share.party,
            NotificationKind::FundsReturned,
            &event.id,
            Amount::ZERO,
            format!("event {} ({}) ended without payment to this account: {why}", event.id, event.terms.reference),
        ));
    }
    notices
}

/// The answer to a step: the event as it will be once `change` is applied, and the records
/// the step adds.
fn receipt_of(change: &Change, tx_id: Option<TxId>) -> HoldReceipt {
    HoldReceipt { event: change.event.clone(), records: change.records.clone(), tx_id, repeated: false }
}

/// How often the platform looks for events whose validity ran out.
pub const EXPIRY_SWEEP_PERIOD_MS: u64 = 1_000;

/// Run [`Network::expire_due_events`] every [`EXPIRY_SWEEP_PERIOD_MS`] on a background thread,
/// until `stop` is signalled or the network is dropped. Expiry does not wait for a request:
/// funds held for an event that never comes return on time even on an idle platform. Due means
/// due by the network's [`crate::Clock`], so on a manual clock expiries follow its advances.
pub fn spawn_expiry_sweeper(
    network: &std::sync::Arc<Network>,
    stop: &crate::StopSignal,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = std::sync::Arc::downgrade(network);
    let stop = stop.clone();
    std::thread::Builder::new().name("dtenge-expiry".into()).spawn(move || loop {
        if stop.wait_ms(EXPIRY_SWEEP_PERIOD_MS) {
            return;
        }
        let Some(network) = weak.upgrade() else { return };
        for (id, result) in network.expire_due_events() {
            if let Err(e) = result {
                eprintln!("expiry of event {id} failed, retried on the next sweep: {e}");
            }
        }
    })
}
