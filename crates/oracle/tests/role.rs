//! The oracle role alone: its answers to a bank's requests, abandons and deliveries, its
//! decisions final per transaction id, its state read back from its store after a crash.
//! Transactions and certificates are made by hand (the notary's key signs the certificates);
//! what the oracle sends is captured.

use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{CommitCertificate, CompactTx};
use dtenge_core::crypto::{Address, Hash32, SecretKey};
use dtenge_core::token::{event_hash, Input, Output, TxId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, ErrorCode};
use dtenge_oracle::service::{
    tables, Confirmation, Confirmed, EventImage, EventSpec, EventStatus, HoldPlan, NoticeKind, NoticePage,
    OccurrenceNote, OracleService, PartyNames, Payee, Registration, TxDecision,
};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{SendError, Transport};
use dtenge_wire::{
    Abandon, AttestPurpose, AttestRequest, Decode, Deliver, Envelope, Message, OracleAsk, Payload, Question,
    ReleaseOrder, RoleId, Verdict,
};
use parking_lot::Mutex;
use std::sync::Arc;

#[derive(Default)]
struct Captured(Mutex<Vec<Envelope>>);

impl Transport for Captured {
    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        self.0.lock().push(envelope);
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> Vec<Envelope> {
        std::mem::take(&mut *self.0.lock())
    }

    /// The verdict of the one answer sent since the last take.
    fn verdict(&self) -> Verdict {
        let sent = self.take();
        let [Envelope { message: Message::AttestReply(reply), .. }] = &sent[..] else {
            panic!("one answer, not {sent:?}")
        };
        reply.verdict.clone()
    }
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

const ORACLE: u8 = 2;
const NOTARY: u8 = 3;
const SENDER: u8 = 10;
const SELLER: u8 = 11;
const FEES: u8 = 12;

fn tiyn(t: u64) -> Amount {
    Amount::from_tiyn(t).unwrap()
}

fn issuer() -> Address {
    key(1).address()
}

fn anchors() -> Anchors {
    Anchors {
        issuer: issuer(),
        central_bank: key(1).public_key(),
        oracle: key(ORACLE).public_key(),
        notary: key(NOTARY).public_key(),
        banks: [("steppe", 20), ("sapa", 21)].iter().map(|(b, k)| (b.to_string(), key(*k).public_key())).collect(),
        blocked: Default::default(),
    }
}

struct Harness {
    disk: SimDisk,
    net: Arc<Captured>,
    oracle: OracleService,
    cert_seq: u64,
}

impl Harness {
    fn new() -> Harness {
        let disk = SimDisk::new();
        let net = Arc::new(Captured::default());
        let oracle = open(&disk, &net);
        Harness { disk, net, oracle, cert_seq: 0 }
    }

    /// The oracle dies (its memory gone) and opens again on its disk.
    fn restart(&mut self) {
        self.disk.disarm();
        self.oracle = open(&self.disk, &self.net);
    }

    fn register(&self) -> String {
        let spec = EventSpec {
            reference: "VIN 1".into(),
            sender_bank: "steppe".into(),
            sender: key(SENDER).address(),
            payees: vec![
                Payee { bank: "sapa".into(), address: key(SELLER).address(), amount_tiyn: tiyn(900) },
                Payee { bank: "steppe".into(), address: key(FEES).address(), amount_tiyn: tiyn(100) },
            ],
            valid_until_ms: 10_000,
        };
        self.oracle.register_event("vehicles", spec, 0).unwrap()
    }

    fn ask(&self, from: &str, event_id: &str, purpose: AttestPurpose, tx: &Transaction) -> Verdict {
        let request = AttestRequest { event_id: event_id.into(), purpose, tx: tx.clone() };
        self.oracle.handle(envelope(from, Message::AttestRequest(request)), 10);
        self.net.verdict()
    }

    /// `bank` delivers `txs` certified, as its delivery number `seq`; the oracle's answers.
    fn deliver(&mut self, bank: &str, seq: u64, txs: &[&Transaction]) -> Vec<Envelope> {
        self.cert_seq += 1;
        let leaves: Vec<Hash32> = txs.iter().map(|tx| CompactTx::of(&TxIds::of(tx).unwrap()).hash()).collect();
        let (certificate, proofs) = CommitCertificate::sign(&key(NOTARY), self.cert_seq, &leaves);
        let txs = txs.iter().map(|tx| (*tx).clone()).zip(proofs).collect();
        let deliver = Deliver { seq, payload: Payload::Certified { certificate, txs } };
        self.oracle.handle(envelope(bank, Message::Deliver(deliver)), 20);
        self.net.take()
    }
}

fn open(disk: &SimDisk, net: &Arc<Captured>) -> OracleService {
    let store = Store::open_simulated(disk.clone(), &tables()).unwrap();
    let transport: Arc<dyn Transport> = net.clone();
    OracleService::open(store, key(ORACLE), anchors(), transport).unwrap()
}

fn envelope(from: &str, message: Message) -> Envelope {
    Envelope { from: RoleId::Bank(from.into()), to: RoleId::Oracle, message }
}

fn hold_purpose() -> AttestPurpose {
    AttestPurpose::Hold { payee: key(SELLER).address() }
}

/// The sender holds `held` of a 1,500 token for `event_id`, the rest back as change.
fn hold_tx(event_id: &str, held: u64, nonce: u64) -> Transaction {
    let sender = key(SENDER).address();
    let input =
        Input { tx_id: TxId(Hash32([9; 32])), index: 0, output: Output::standard(tiyn(1_500), sender, issuer()) };
    let outputs = vec![
        Output::held(tiyn(held), sender, issuer(), event_hash(event_id)),
        Output::standard(tiyn(1_500 - held), sender, issuer()),
    ];
    Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input], outputs, nonce })
}

/// The release of `hold`'s held output into `order`'s outputs.
fn release_tx(hold: &Transaction, order: &ReleaseOrder) -> Transaction {
    let inputs = hold.outputs_as_inputs().into_iter().filter(|i| !i.output.policy.is_standard()).collect();
    Transaction::new(TxBody {
        command: Command::Transfer,
        inputs,
        outputs: order.outputs.clone(),
        nonce: order.attempt,
    })
}

fn order_of(sent: &[Envelope]) -> ReleaseOrder {
    let orders: Vec<ReleaseOrder> = sent
        .iter()
        .filter_map(|e| match &e.message {
            Message::ReleaseOrder(order) => Some(order.clone()),
            _ => None,
        })
        .collect();
    orders.last().cloned().expect("a release order was sent")
}

fn acks(sent: &[Envelope]) -> Vec<u64> {
    sent.iter()
        .filter_map(|e| match &e.message {
            Message::DeliverAck(ack) => Some(ack.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hold_and_its_release_are_attested_and_applied_from_their_certificates_once() {
    let mut h = Harness::new();
    let id = h.register();
    let hold = hold_tx(&id, 1_000, 1);
    let Verdict::Attested(attestation) = h.ask("steppe", &id, hold_purpose(), &hold) else { panic!("attested") };
    assert_eq!(attestation.public_key, key(ORACLE).public_key());
    assert_eq!(h.oracle.event(&id).unwrap().pending, Some(hold.id()));
    // The same request again (a lost answer): the same attestation, nothing new decided.
    assert_eq!(h.ask("steppe", &id, hold_purpose(), &hold), Verdict::Attested(attestation));
    assert_eq!(h.oracle.stats().attested, 1);

    assert_eq!(acks(&h.deliver("steppe", 1, &[&hold])), [1]);
    let event = h.oracle.event(&id).unwrap();
    assert_eq!((event.status, event.held_tiyn, event.pending), (EventStatus::Held, tiyn(1_000), None));
    assert_eq!(h.oracle.held_by_event().get(&event_hash(&id)), Some(&tiyn(1_000)));
    // The delivery again: acknowledged, not applied again.
    assert_eq!(acks(&h.deliver("steppe", 1, &[&hold])), [1]);
    assert_eq!(h.oracle.stats().applied, 1);

    h.oracle.confirm_event("vehicles", &id, Confirmation::Occurred { payouts: None }, 30).unwrap();
    let order = order_of(&h.net.take());
    assert_eq!((order.attempt, order.held, order.outputs.len()), (1, tiyn(1_000), 2));
    let release = release_tx(&hold, &order);
    assert!(matches!(h.ask("steppe", &id, AttestPurpose::Release, &release), Verdict::Attested(_)));
    h.oracle.tick(1_000);
    assert!(h.net.take().is_empty(), "no order is sent again once its release is asked for");
    assert_eq!(acks(&h.deliver("steppe", 2, &[&release])), [2]);
    let event = h.oracle.event(&id).unwrap();
    assert_eq!(event.status, EventStatus::Completed);
    assert_eq!((event.held_tiyn, event.released_tiyn, event.returned_tiyn), (Amount::ZERO, tiyn(1_000), Amount::ZERO));
    assert!(matches!(h.oracle.decision(&release.id()), Some(TxDecision::Applied { release: true, .. })));
    assert!(h.oracle.held_by_event().is_empty());
    assert_eq!(h.oracle.pending(), 0);
    let again = h.oracle.confirm_event("vehicles", &id, Confirmation::Occurred { payouts: None }, 40);
    assert_eq!(again.unwrap_err().code, ErrorCode::Conflict, "released once");
}

#[test]
fn holds_that_do_not_match_the_event_are_refused_for_good() {
    let h = Harness::new();
    let refused = |verdict: Verdict| match verdict {
        Verdict::Refused(e) => e.code,
        other => panic!("refused, not {other:?}"),
    };
    // Not registered yet: refused, and the same transaction stays refused once it is.
    let early = hold_tx("EV0000001", 1_000, 1);
    assert_eq!(refused(h.ask("steppe", "EV0000001", hold_purpose(), &early)), ErrorCode::NotFound);
    let id = h.register();
    assert_eq!(id, "EV0000001");
    assert_eq!(refused(h.ask("steppe", &id, hold_purpose(), &early)), ErrorCode::NotFound, "final per transaction");

    assert_eq!(refused(h.ask("steppe", &id, hold_purpose(), &hold_tx(&id, 999, 2))), ErrorCode::MalformedInput);
    let stranger = AttestPurpose::Hold { payee: key(99).address() };
    assert_eq!(refused(h.ask("steppe", &id, stranger, &hold_tx(&id, 1_000, 3))), ErrorCode::RecipientNotAllowed);
    assert_eq!(refused(h.ask("sapa", &id, hold_purpose(), &hold_tx(&id, 1_000, 4))), ErrorCode::Forbidden);
    let mut elsewhere = hold_tx(&id, 1_000, 5);
    elsewhere.body.outputs[1].owner = key(SELLER).address();
    let elsewhere = Transaction::new(elsewhere.body);
    assert_eq!(refused(h.ask("steppe", &id, hold_purpose(), &elsewhere)), ErrorCode::Forbidden, "change to a stranger");
    assert_eq!(
        refused(h.ask("steppe", &id, AttestPurpose::Release, &hold_tx(&id, 1_000, 6))),
        ErrorCode::Conflict,
        "no release ordered"
    );
    // A hold of another event's hash, for this event.
    assert_eq!(refused(h.ask("steppe", &id, hold_purpose(), &hold_tx("EV9", 1_000, 7))), ErrorCode::Forbidden);
    let event = h.oracle.event(&id).unwrap();
    assert_eq!((event.status, event.pending), (EventStatus::Registered, None));
    assert_eq!(h.oracle.stats().refused, 7, "the same transaction again is not decided again");

    // A second hold while one is attested and not certified: refused.
    assert!(matches!(h.ask("steppe", &id, hold_purpose(), &hold_tx(&id, 1_000, 8)), Verdict::Attested(_)));
    assert_eq!(refused(h.ask("steppe", &id, hold_purpose(), &hold_tx(&id, 1_000, 9))), ErrorCode::Conflict);
    // Messages from another role, or an unknown bank, are dropped unanswered.
    let request = AttestRequest { event_id: id.clone(), purpose: hold_purpose(), tx: hold_tx(&id, 1_000, 10) };
    h.oracle.handle(envelope("stranger", Message::AttestRequest(request.clone())), 10);
    h.oracle
        .handle(Envelope { from: RoleId::Central, to: RoleId::Oracle, message: Message::AttestRequest(request) }, 10);
    assert!(h.net.take().is_empty());
}

#[test]
fn a_release_that_differs_from_the_order_is_refused_and_a_partial_release_returns_the_rest() {
    let mut h = Harness::new();
    let id = h.register();
    let hold = hold_tx(&id, 1_000, 1);
    h.ask("steppe", &id, hold_purpose(), &hold);
    h.deliver("steppe", 1, &[&hold]);
    let payouts = Some(vec![(key(SELLER).address(), tiyn(900))]);
    let too_much = Some(vec![(key(FEES).address(), tiyn(101))]);
    let refused = h.oracle.confirm_event("vehicles", &id, Confirmation::Occurred { payouts: too_much }, 30);
    assert_eq!(refused.unwrap_err().code, ErrorCode::LimitExceeded);
    let other = h.oracle.confirm_event("portal", &id, Confirmation::Rejected, 30);
    assert_eq!(other.unwrap_err().code, ErrorCode::Forbidden, "only its provider confirms it");
    h.oracle.confirm_event("vehicles", &id, Confirmation::Occurred { payouts }, 30).unwrap();
    let order = order_of(&h.net.take());
    assert_eq!(order.outputs[1], Output::standard(tiyn(100), key(SENDER).address(), issuer()), "the rest back");
    let mut altered = release_tx(&hold, &order);
    altered.body.outputs[0].owner = key(FEES).address();
    let altered = Transaction::new(altered.body);
    assert!(matches!(h.ask("steppe", &id, AttestPurpose::Release, &altered), Verdict::Refused(_)));
    let mut wrong_attempt = release_tx(&hold, &order);
    wrong_attempt.body.nonce = 7;
    let wrong_attempt = Transaction::new(wrong_attempt.body);
    assert!(matches!(h.ask("steppe", &id, AttestPurpose::Release, &wrong_attempt), Verdict::Refused(_)));
    let release = release_tx(&hold, &order);
    assert!(matches!(h.ask("steppe", &id, AttestPurpose::Release, &release), Verdict::Attested(_)));
    h.deliver("steppe", 2, &[&release]);
    let event = h.oracle.event(&id).unwrap();
    assert_eq!(
        (event.status, event.released_tiyn, event.returned_tiyn),
        (EventStatus::Completed, tiyn(900), tiyn(100))
    );
}

#[test]
fn an_abandoned_hold_frees_the_event_and_an_abandoned_release_is_ordered_again_as_a_new_transaction() {
    let mut h = Harness::new();
    let id = h.register();
    let first = hold_tx(&id, 1_000, 1);
    h.ask("steppe", &id, hold_purpose(), &first);
    let refused = dtenge_core::Error::new(ErrorCode::BankBlocked, "blocked");
    let abandon = Abandon { event_id: id.clone(), tx_id: first.id(), refused: refused.clone() };
    h.oracle.handle(envelope("sapa", Message::Abandon(abandon.clone())), 10);
    assert!(h.net.take().is_empty(), "only the sender's bank gives its transaction up");
    h.oracle.handle(envelope("steppe", Message::Abandon(abandon.clone())), 10);
    assert_eq!(h.net.verdict(), Verdict::Abandoned);
    h.oracle.handle(envelope("steppe", Message::Abandon(abandon)), 10);
    assert_eq!(h.net.verdict(), Verdict::Abandoned, "a copy gets the same answer");
    assert_eq!(h.ask("steppe", &id, hold_purpose(), &first), Verdict::Abandoned, "its request, late, is not attested");
    assert_eq!(h.oracle.event(&id).unwrap().pending, None);

    let hold = hold_tx(&id, 1_000, 2);
    assert!(matches!(h.ask("steppe", &id, hold_purpose(), &hold), Verdict::Attested(_)));
    // A certificate of the abandoned transaction (a lying bank) changes nothing.
    h.deliver("steppe", 1, &[&first]);
    assert_eq!(h.oracle.stats().foreign, 1);
    h.deliver("steppe", 2, &[&hold]);
    h.oracle.confirm_event("vehicles", &id, Confirmation::Rejected, 30).unwrap();
    let order = order_of(&h.net.take());
    assert_eq!(order.outputs, [Output::standard(tiyn(1_000), key(SENDER).address(), issuer())]);
    let release = release_tx(&hold, &order);
    h.ask("steppe", &id, AttestPurpose::Release, &release);
    let abandon = Abandon { event_id: id.clone(), tx_id: release.id(), refused };
    h.oracle.handle(envelope("steppe", Message::Abandon(abandon)), 10);
    assert_eq!(h.net.verdict(), Verdict::Abandoned);
    h.oracle.tick(100);
    let again = order_of(&h.net.take());
    assert_eq!(again.attempt, 2, "the next attempt: a new transaction");
    let release = release_tx(&hold, &again);
    assert!(matches!(h.ask("steppe", &id, AttestPurpose::Release, &release), Verdict::Attested(_)));
    h.deliver("steppe", 3, &[&release]);
    let event = h.oracle.event(&id).unwrap();
    assert_eq!(
        (event.status, event.returned_tiyn, event.held_tiyn),
        (EventStatus::Rejected, tiyn(1_000), Amount::ZERO)
    );
}

#[test]
fn the_oracle_reads_its_events_decisions_and_streams_back_after_a_crash_and_orders_again() {
    let mut h = Harness::new();
    let id = h.register();
    let hold = hold_tx(&id, 1_000, 1);
    // The decision is durable, the process dies before it answers.
    h.disk.arm_crash(1, CrashMode::AfterWrite);
    let request = AttestRequest { event_id: id.clone(), purpose: hold_purpose(), tx: hold.clone() };
    h.oracle.handle(envelope("steppe", Message::AttestRequest(request)), 10);
    h.restart();
    assert_eq!(h.oracle.event(&id).unwrap().pending, Some(hold.id()), "read back");
    assert!(matches!(h.ask("steppe", &id, hold_purpose(), &hold), Verdict::Attested(_)), "answered from its decision");
    // The delivery's commit is lost: not applied, not acknowledged; applied once when resent.
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    assert!(acks(&h.deliver("steppe", 1, &[&hold])).is_empty());
    h.restart();
    assert_eq!(h.oracle.event(&id).unwrap().status, EventStatus::Registered);
    assert_eq!(acks(&h.deliver("steppe", 1, &[&hold])), [1]);
    h.restart();
    assert_eq!(acks(&h.deliver("steppe", 1, &[&hold])), [1], "the stream's number is durable");
    assert_eq!(h.oracle.event(&id).unwrap().held_tiyn, tiyn(1_000));
    h.oracle.confirm_event("vehicles", &id, Confirmation::Occurred { payouts: None }, 30).unwrap();
    h.net.take();
    h.restart();
    h.oracle.tick(0);
    assert_eq!(order_of(&h.net.take()).event_id, id, "the order is sent again after the restart");
}

#[test]
fn a_failed_commit_stops_the_oracle_until_it_reopens() {
    let mut h = Harness::new();
    let id = h.register();
    h.disk.arm_crash(1, CrashMode::FailedWrite { written: false });
    let request = AttestRequest { event_id: id.clone(), purpose: hold_purpose(), tx: hold_tx(&id, 1_000, 1) };
    h.oracle.handle(envelope("steppe", Message::AttestRequest(request.clone())), 10);
    assert!(h.net.take().is_empty(), "no answer for what is not durable");
    h.oracle.handle(envelope("steppe", Message::AttestRequest(request)), 10);
    assert!(h.net.take().is_empty(), "nothing answered after a failed commit");
    let confirm = h.oracle.confirm_event("vehicles", &id, Confirmation::Rejected, 10);
    assert_eq!(confirm.unwrap_err().code, ErrorCode::StorageFailure);
    h.restart();
    assert!(matches!(h.ask("steppe", &id, hold_purpose(), &hold_tx(&id, 1_000, 1)), Verdict::Attested(_)));
}

#[test]
fn an_event_past_its_validity_returns_what_it_holds_and_one_never_held_just_expires() {
    let mut h = Harness::new();
    let held_id = h.register();
    let idle_id = h.register();
    let hold = hold_tx(&held_id, 1_000, 1);
    h.ask("steppe", &held_id, hold_purpose(), &hold);
    h.deliver("steppe", 1, &[&hold]);
    h.oracle.tick(9_999);
    assert!(h.net.take().is_empty(), "not yet");
    h.oracle.tick(10_000);
    let order = order_of(&h.net.take());
    assert_eq!(order.outputs, [Output::standard(tiyn(1_000), key(SENDER).address(), issuer())], "all back");
    assert_eq!(h.oracle.event(&idle_id).unwrap().status, EventStatus::Expired);
    let late = h.oracle.confirm_event("vehicles", &held_id, Confirmation::Occurred { payouts: None }, 10_001);
    assert_eq!(late.unwrap_err().code, ErrorCode::EventExpired);
    let late_hold = hold_tx(&idle_id, 1_000, 2);
    let request = AttestRequest { event_id: idle_id.clone(), purpose: hold_purpose(), tx: late_hold };
    h.oracle.handle(envelope("steppe", Message::AttestRequest(request)), 10_001);
    assert!(matches!(h.net.verdict(), Verdict::Refused(e) if e.code == ErrorCode::EventExpired));
    let release = release_tx(&hold, &order);
    assert!(matches!(h.ask("steppe", &held_id, AttestPurpose::Release, &release), Verdict::Attested(_)));
    h.deliver("steppe", 2, &[&release]);
    let event = h.oracle.event(&held_id).unwrap();
    assert_eq!((event.status, event.returned_tiyn, event.held_tiyn), (EventStatus::Expired, tiyn(1_000), Amount::ZERO));
    assert_eq!(h.oracle.pending(), 0);
}

#[test]
fn an_event_confirmed_by_another_provider_and_registered_under_a_key_is_kept_across_a_restart() {
    let mut h = Harness::new();
    let token = "r".repeat(dtenge_oracle::service::programmed::PROVIDER_TOKEN_BYTES_MIN);
    let kind = dtenge_oracle::ProviderKind::VehicleRegistry;
    h.oracle.register_provider("registry", "Vehicle registry", kind, &token, 0).unwrap();
    let spec = |valid_until_ms: u64| EventSpec {
        reference: "sale, VIN 2".into(),
        sender_bank: "steppe".into(),
        sender: key(SENDER).address(),
        payees: vec![Payee { bank: "sapa".into(), address: key(SELLER).address(), amount_tiyn: tiyn(900) }],
        valid_until_ms,
    };
    let by = |confirmer: &str, key: &str, fingerprint: u8| Registration {
        confirmed_by: Some(confirmer.into()),
        idem: Some((key.into(), Hash32([fingerprint; 32]))),
        infinite: false,
        names: None,
    };
    let unknown = h.oracle.register_event_with("portal", spec(10_000), by("nobody", "k0", 1), 0).unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);
    let id = h.oracle.register_event_with("portal", spec(10_000), by("registry", "k1", 1), 0).unwrap();
    // The same key and request: the same event; another request: refused; no second event.
    assert_eq!(h.oracle.register_event_with("portal", spec(10_000), by("registry", "k1", 1), 0).unwrap(), id);
    let reused = h.oracle.register_event_with("portal", spec(10_000), by("registry", "k1", 2), 0).unwrap_err();
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(h.oracle.events().len(), 1);
    h.restart();
    assert_eq!(h.oracle.register_event_with("portal", spec(10_000), by("registry", "k1", 1), 0).unwrap(), id);
    assert_eq!(h.oracle.confirmed_by(&id).as_deref(), Some("registry"));
    // Only the confirming provider confirms, not the one that registered the event.
    let refused = h.oracle.confirm_event("portal", &id, Confirmation::Rejected, 5).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden);
    let note = |id: &str, reason: Option<&str>| OccurrenceNote {
        occurrence_id: id.into(),
        reason: reason.map(str::to_string),
    };
    let not_a_rejection = Confirmation::Occurred { payouts: None };
    let refused = h.oracle.confirm_occurrence("registry", &id, not_a_rejection, note("o-1", Some("why")), 5);
    assert_eq!(refused.unwrap_err().code, ErrorCode::MalformedInput);
    let why = Some("the registry refuses the transfer");
    let first = h.oracle.confirm_occurrence("registry", &id, Confirmation::Rejected, note("o-1", why), 5).unwrap();
    assert_eq!(first, Confirmed::New);
    assert_eq!(h.oracle.event(&id).unwrap().status, EventStatus::Rejected);
    h.restart();
    // The same occurrence again: repeated, whatever it says now; another: the event is decided.
    let again = h.oracle.confirm_occurrence("registry", &id, Confirmation::Rejected, note("o-1", None), 6);
    assert_eq!(again.unwrap(), Confirmed::Repeated);
    let other = h.oracle.confirm_occurrence("registry", &id, Confirmation::Rejected, note("o-2", None), 6);
    assert_eq!(other.unwrap_err().code, ErrorCode::Conflict);
    let notes = h.oracle.notes(&id).unwrap();
    assert_eq!((notes.registered_at_ms, notes.reason.as_deref()), (0, why));
    assert_eq!(notes.occurrence_id.as_deref(), Some("o-1"));
    assert_eq!(notes.confirmed_by.as_deref(), Some("registry"));
    // Without a confirmer, the registering provider confirms.
    let plain = h.register();
    assert_eq!(h.oracle.confirmed_by(&plain).as_deref(), Some("vehicles"));
}

/// `bank`'s notices, oldest first: (seq, kind, amount, address, tx id).
fn told(h: &Harness, bank: &str) -> Vec<(u64, NoticeKind, Amount, Address, Option<TxId>)> {
    let page = h.oracle.notifications(bank, 0, 1_000).unwrap();
    let mut notices: Vec<_> =
        page.notices.into_iter().map(|n| (n.seq, n.kind, n.amount_tiyn, n.address, n.tx_id)).collect();
    notices.reverse();
    assert_eq!(notices.len() as u64, page.total, "every notice of a node is kept below the bound");
    for (i, n) in notices.iter().enumerate() {
        assert_eq!(n.0, i as u64, "numbered from 0, densely");
    }
    notices
}

#[test]
fn each_decision_tells_the_parties_banks_in_its_own_commit_and_a_crash_neither_loses_nor_repeats_a_notice() {
    use NoticeKind::*;
    let mut h = Harness::new();
    let (sender, seller, fees) = (key(SENDER).address(), key(SELLER).address(), key(FEES).address());
    // The registration's commit is lost: no event, no notice; registered again, told once.
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    let spec = EventSpec {
        reference: "VIN 1".into(),
        sender_bank: "steppe".into(),
        sender,
        payees: vec![
            Payee { bank: "sapa".into(), address: seller, amount_tiyn: tiyn(900) },
            Payee { bank: "steppe".into(), address: fees, amount_tiyn: tiyn(100) },
        ],
        valid_until_ms: 10_000,
    };
    assert!(h.oracle.register_event("vehicles", spec, 0).is_err());
    h.restart();
    assert!(told(&h, "steppe").is_empty() && told(&h, "sapa").is_empty());
    let id = h.register();
    assert_eq!(
        told(&h, "steppe"),
        [(0, EventRegistered, tiyn(1_000), sender, None), (1, EventRegistered, tiyn(100), fees, None)]
    );
    assert_eq!(told(&h, "sapa"), [(0, EventRegistered, tiyn(900), seller, None)]);
    let first = h.oracle.notifications("steppe", 0, 1).unwrap().notices.remove(0);
    assert_eq!((first.seq, first.at_ms, first.subject_id.as_str()), (1, 0, id.as_str()));
    assert_eq!(first.text, format!("event {id} (VIN 1): 1.00 KZT to be paid to this account"));

    // The hold: attesting tells no one; its certificate does, once. A delivery whose commit is
    // lost tells nothing; one whose commit is durable but whose process dies before the
    // acknowledgement tells once, and its copy nothing more.
    let hold = hold_tx(&id, 1_000, 1);
    h.ask("steppe", &id, hold_purpose(), &hold);
    assert_eq!(told(&h, "sapa").len(), 1);
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    assert!(acks(&h.deliver("steppe", 1, &[&hold])).is_empty());
    h.restart();
    assert_eq!(told(&h, "sapa").len(), 1, "nothing told of a hold not applied");
    h.disk.arm_crash(1, CrashMode::AfterWrite);
    assert!(acks(&h.deliver("steppe", 1, &[&hold])).is_empty());
    h.restart();
    assert_eq!(acks(&h.deliver("steppe", 1, &[&hold])), [1], "a duplicate, acknowledged");
    let held = Some(hold.id());
    assert_eq!(told(&h, "sapa")[1..], [(1, FundsHeld, tiyn(900), seller, held)]);
    assert_eq!(told(&h, "steppe")[2..], [(2, FundsHeld, tiyn(100), fees, held)]);

    // The release: the payees paid and the sender told when it is applied, not when ordered.
    h.oracle.confirm_event("vehicles", &id, Confirmation::Occurred { payouts: None }, 30).unwrap();
    assert_eq!(told(&h, "sapa").len(), 2);
    let release = release_tx(&hold, &order_of(&h.net.take()));
    h.ask("steppe", &id, AttestPurpose::Release, &release);
    h.disk.arm_crash(1, CrashMode::AfterWrite);
    h.deliver("steppe", 2, &[&release]);
    h.restart();
    for _ in 0..2 {
        h.deliver("steppe", 2, &[&release]);
    }
    let paid = Some(release.id());
    assert_eq!(told(&h, "sapa")[2..], [(2, FundsReleased, tiyn(900), seller, paid)]);
    assert_eq!(
        told(&h, "steppe")[3..],
        [(3, FundsReleased, tiyn(100), fees, paid), (4, FundsReleased, tiyn(1_000), sender, paid)]
    );

    // An event that held nothing, rejected: told with the rejection; the rejection's commit
    // lost, nothing told until it is decided again.
    let rejected = h.register();
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    assert!(h.oracle.confirm_event("vehicles", &rejected, Confirmation::Rejected, 40).is_err());
    h.restart();
    assert_eq!(told(&h, "sapa").len(), 4);
    h.oracle.confirm_event("vehicles", &rejected, Confirmation::Rejected, 40).unwrap();
    assert_eq!(told(&h, "sapa")[4..], [(4, FundsReturned, Amount::ZERO, seller, None)]);
    let returned = h.oracle.notifications("steppe", 0, 2).unwrap().notices;
    assert_eq!(
        returned.iter().map(|n| (n.seq, n.kind, n.address, n.at_ms)).collect::<Vec<_>>(),
        [(8, FundsReturned, fees, 40), (7, FundsReturned, sender, 40)],
        "newest first"
    );
    let why = "returned to this account: rejected by its provider";
    assert_eq!(returned[1].text, format!("event {rejected} (VIN 1): 0.00 KZT {why}"));

    // Expiry: one held returns everything when its return is applied, one never held is told
    // at the tick that ends it, once, however often the tick runs after a crash.
    let idle = h.register();
    let kept = h.register();
    let hold = hold_tx(&kept, 1_000, 2);
    h.ask("steppe", &kept, hold_purpose(), &hold);
    h.deliver("steppe", 3, &[&hold]);
    let before = told(&h, "sapa").len();
    assert_eq!(before, 8, "two registrations and a hold told");
    h.disk.arm_crash(1, CrashMode::AfterWrite);
    h.oracle.tick(10_000);
    h.restart();
    h.oracle.tick(10_001);
    h.oracle.tick(10_002);
    assert_eq!(h.oracle.event(&idle).unwrap().status, EventStatus::Expired);
    let order = order_of(&h.net.take());
    let back = release_tx(&hold, &order);
    h.ask("steppe", &kept, AttestPurpose::Release, &back);
    h.deliver("steppe", 4, &[&back]);
    h.deliver("steppe", 4, &[&back]);
    let sapa = told(&h, "sapa");
    let kinds: Vec<_> = sapa[before..].iter().map(|n| (n.1, n.2, n.4)).collect();
    assert_eq!(kinds, [(FundsReturned, Amount::ZERO, None), (FundsReturned, Amount::ZERO, Some(back.id()))]);
    let steppe = h.oracle.notifications("steppe", 0, 1_000).unwrap();
    let to_sender: Vec<_> = steppe
        .notices
        .iter()
        .filter(|n| n.address == sender && n.kind == FundsReturned && n.subject_id == kept)
        .map(|n| (n.amount_tiyn, n.tx_id, n.text.ends_with("no event before the validity ended at 10000 ms")))
        .collect();
    assert_eq!(to_sender, [(tiyn(1_000), Some(back.id()), true)], "everything back, told once");

    // Read back from the store after a restart, as they were.
    let before =
        (h.oracle.notifications("steppe", 0, 1_000).unwrap(), h.oracle.notifications("sapa", 0, 1_000).unwrap());
    h.restart();
    assert_eq!(h.oracle.notifications("steppe", 0, 1_000).unwrap(), before.0);
    assert_eq!(h.oracle.notifications("sapa", 0, 1_000).unwrap(), before.1);
    // Bad reads change nothing.
    assert_eq!(h.oracle.notifications("nowhere", 0, 10).unwrap_err().code, ErrorCode::UnknownAccount);
    assert_eq!(h.oracle.notifications("steppe", 0, 0).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(h.oracle.notifications("steppe", 0, 1_001).unwrap_err().code, ErrorCode::MalformedInput);
    assert!(h.oracle.notifications("steppe", 1_000, 10).unwrap().notices.is_empty());
}

#[test]
fn a_delivery_naming_one_transaction_twice_applies_and_tells_it_once() {
    let mut h = Harness::new();
    let id = h.register();
    let hold = hold_tx(&id, 1_000, 1);
    h.ask("steppe", &id, hold_purpose(), &hold);
    // A rogue or faulty bank: the same certified transaction twice in one delivery.
    assert_eq!(acks(&h.deliver("steppe", 1, &[&hold, &hold])), [1]);
    let event = h.oracle.event(&id).unwrap();
    assert_eq!((event.status, event.held_tiyn), (EventStatus::Held, tiyn(1_000)));
    assert_eq!(h.oracle.stats().applied, 1);
    assert_eq!(told(&h, "sapa").iter().filter(|n| n.1 == NoticeKind::FundsHeld).count(), 1);
}

/// What the oracle answers `bank`'s question: its encoding, or why it refuses.
fn answer_to(h: &Harness, bank: &str, question: Question) -> Result<Vec<u8>, dtenge_core::Error> {
    h.oracle.handle(envelope(bank, Message::OracleAsk(OracleAsk { request: 7, question })), 10);
    let sent = h.net.take();
    let [Envelope { to, message: Message::OracleAnswer(answer), .. }] = &sent[..] else {
        panic!("one answer: {sent:?}");
    };
    assert_eq!((to, answer.request), (&RoleId::Bank(bank.into()), 7), "answered to the asker, by its number");
    answer.answer.clone()
}

#[test]
fn a_bank_across_processes_learns_only_the_events_its_clients_are_party_to_and_the_names_are_kept() {
    let mut h = Harness::new();
    let spec = EventSpec {
        reference: "VIN 2".into(),
        sender_bank: "steppe".into(),
        sender: key(SENDER).address(),
        payees: vec![Payee { bank: "sapa".into(), address: key(SELLER).address(), amount_tiyn: tiyn(900) }],
        valid_until_ms: 10_000,
    };
    let names = PartyNames { sender: "900101300123".into(), payees: vec!["850505400321".into()] };
    let registration = Registration { names: Some(names.clone()), ..Registration::default() };
    let named = h.oracle.register_event_with("vehicles", spec.clone(), registration, 0).unwrap();
    // A client id for each payee, or none at all.
    let wrong = PartyNames { payees: Vec::new(), ..names.clone() };
    let refused = Registration { names: Some(wrong), ..Registration::default() };
    assert_eq!(h.oracle.register_event_with("vehicles", spec, refused, 0).unwrap_err().code, ErrorCode::MalformedInput);
    let unnamed = h.register();
    let steppe_only = EventSpec {
        reference: "VIN 3".into(),
        sender_bank: "steppe".into(),
        sender: key(SENDER).address(),
        payees: vec![Payee { bank: "steppe".into(), address: key(FEES).address(), amount_tiyn: tiyn(100) }],
        valid_until_ms: 10_000,
    };
    let steppe_only = h.oracle.register_event("vehicles", steppe_only, 0).unwrap();
    h.net.take();
    // The sender's bank: may it hold, and what.
    let plan = HoldPlan::from_bytes(
        &answer_to(&h, "steppe", Question::Hold { event_id: named.clone(), amount: None }).unwrap(),
    )
    .unwrap();
    assert_eq!((plan.event.id.as_str(), plan.amount), (named.as_str(), tiyn(900)));
    // The payee's bank sees the event but may not hold it.
    let forbidden = answer_to(&h, "sapa", Question::Hold { event_id: named.clone(), amount: None }).unwrap_err();
    assert_eq!(forbidden.code, ErrorCode::Forbidden);
    let image = EventImage::from_bytes(
        &answer_to(&h, "sapa", Question::Event { event_id: named.clone(), records_of: None }).unwrap(),
    )
    .unwrap();
    // Sapa learns its own client's id, not Steppe's.
    let seen = PartyNames { sender: String::new(), ..names.clone() };
    assert_eq!(image.notes.names.as_ref(), Some(&seen));
    assert!(image.records.is_empty(), "no records unless asked for a transaction's");
    // An event that names no client of Sapa's does not exist for Sapa.
    let hidden =
        answer_to(&h, "sapa", Question::Event { event_id: steppe_only.clone(), records_of: None }).unwrap_err();
    assert_eq!(hidden.code, ErrorCode::NotFound);
    let hidden = answer_to(&h, "sapa", Question::Hold { event_id: steppe_only, amount: None }).unwrap_err();
    assert_eq!(hidden.code, ErrorCode::NotFound);
    let holds = Vec::<EventImage>::from_bytes(
        &answer_to(&h, "sapa", Question::Holds { address: key(SELLER).address() }).unwrap(),
    )
    .unwrap();
    assert_eq!(holds.iter().map(|i| i.event.id.as_str()).collect::<Vec<_>>(), [unnamed.as_str(), named.as_str()]);
    let holds = Vec::<EventImage>::from_bytes(
        &answer_to(&h, "steppe", Question::Holds { address: key(SELLER).address() }).unwrap(),
    )
    .unwrap();
    assert!(holds.is_empty(), "Sapa's client is no party at Steppe");
    let told =
        NoticePage::from_bytes(&answer_to(&h, "sapa", Question::Notices { offset: 0, limit: 10 }).unwrap()).unwrap();
    assert_eq!(told.total, 2, "both events named Sapa's client");
    assert!(told.notices.iter().all(|n| n.node == "sapa"));
    // The names are the oracle's across a restart.
    h.restart();
    assert_eq!(h.oracle.notes(&named).unwrap().names, Some(names));
    assert_eq!(h.oracle.notes(&unnamed).unwrap().names, None);
}

#[test]
fn a_bank_across_processes_registers_its_clients_markings_once_per_key_and_reads_only_its_parties_records() {
    use dtenge_core::party::Party;
    use dtenge_oracle::{Contract, ContractSpec, ContractUse, Credential, Invoice, InvoiceSpec, Level, Marking};
    use dtenge_oracle::{MarkingSpec, Move, ProviderKind};
    use dtenge_wire::Encode;
    let mut h = Harness::new();
    let party = |bank: &str, k: u8, client_id: &str| Party {
        bank: bank.into(),
        client_id: client_id.into(),
        address: key(k).address(),
    };
    let (sender, seller, fees) =
        (party("steppe", SENDER, "900101300123"), party("sapa", SELLER, "850505400321"), party("steppe", FEES, "1"));
    let spec = MarkingSpec {
        initiator: sender.clone(),
        reference: "road repair advance".into(),
        levels: vec![Level { recipients: vec![seller.clone()], limit_tiyn: tiyn(1_000) }],
    };
    let create = |h: &Harness, bank: &str, key: &str, fingerprint: u8, spec: &MarkingSpec| {
        let question =
            Question::CreateMarking { key: key.into(), fingerprint: Hash32([fingerprint; 32]), spec: spec.to_bytes() };
        answer_to(h, bank, question).map(|bytes| Marking::from_bytes(&bytes).unwrap())
    };
    // Once per key: the question asked again (a lost answer) registers one marking.
    let first = create(&h, "steppe", "marking-1", 1, &spec).unwrap();
    assert_eq!(create(&h, "steppe", "marking-1", 1, &spec).unwrap().id, first.id);
    assert_eq!(h.oracle.markings().len(), 1);
    let reused = create(&h, "steppe", "marking-1", 2, &spec).unwrap_err();
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    // A bank registers only the markings its own clients initiate.
    assert_eq!(create(&h, "sapa", "marking-1", 1, &spec).unwrap_err().code, ErrorCode::Forbidden);
    let garbled = Question::CreateMarking { key: "k".into(), fingerprint: Hash32([1; 32]), spec: vec![1, 2, 3] };
    assert_eq!(answer_to(&h, "steppe", garbled).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(h.oracle.markings().len(), 1, "refusals register nothing");
    // The recipient's bank sees the marking, the initiator at another bank unnamed; a marking
    // with no party at Sapa does not exist for it.
    let ask_marking = |h: &Harness, bank: &str, id: &str| {
        answer_to(h, bank, Question::Marking { id: id.into(), moves_of: Some(TxId(Hash32([9; 32]))) })
            .map(|bytes| <(Marking, Option<Move>)>::from_bytes(&bytes).unwrap())
    };
    let (seen, moved) = ask_marking(&h, "sapa", &first.id).unwrap();
    assert_eq!(
        (seen.initiator.client_id.as_str(), seen.levels[0].recipients[0].client_id.as_str()),
        ("", "850505400321")
    );
    assert!(moved.is_none(), "no such move");
    let (whole, _) = ask_marking(&h, "steppe", &first.id).unwrap();
    assert_eq!(whole.initiator.client_id, "900101300123");
    let own =
        MarkingSpec { levels: vec![Level { recipients: vec![fees.clone()], limit_tiyn: tiyn(10) }], ..spec.clone() };
    let steppe_only = create(&h, "steppe", "marking-2", 1, &own).unwrap();
    assert_eq!(ask_marking(&h, "sapa", &steppe_only.id).unwrap_err().code, ErrorCode::NotFound);
    // An invoice only to its parties' banks, a contract likewise; a VAT payment the oracle has
    // not recorded is not found (the cluster test pays one across processes).
    let token = "t".repeat(dtenge_oracle::service::programmed::PROVIDER_TOKEN_BYTES_MIN);
    h.oracle.register_provider("esf", "ESF", ProviderKind::TaxAuthority, &token, 0).unwrap();
    h.oracle.register_vat_payer(Credential::Token(&token), sender.clone()).unwrap();
    let invoice = InvoiceSpec {
        id: "ESF-1".into(),
        seller: sender.clone(),
        buyer: fees.clone(),
        net_tiyn: tiyn(100),
        vat_tiyn: tiyn(12),
    };
    h.oracle.register_invoice(Credential::Token(&token), invoice, 0).unwrap();
    let read =
        Invoice::from_bytes(&answer_to(&h, "steppe", Question::Invoice { id: "ESF-1".into() }).unwrap()).unwrap();
    assert_eq!(read.buyer, fees);
    assert_eq!(answer_to(&h, "sapa", Question::Invoice { id: "ESF-1".into() }).unwrap_err().code, ErrorCode::NotFound);
    let portal = "p".repeat(dtenge_oracle::service::programmed::PROVIDER_TOKEN_BYTES_MIN);
    h.oracle.register_provider("portal", "Portal", ProviderKind::ContractPortal, &portal, 0).unwrap();
    let contract = ContractSpec {
        number: "GZ-1".into(),
        sender: fees.clone(),
        recipient: seller.clone(),
        max_transfer_tiyn: tiyn(500),
        max_fiat_tiyn: tiyn(100),
        valid_until_unix_ms: 10_000,
        funded_by: None,
    };
    h.oracle.register_contract(Credential::Token(&portal), contract, 0).unwrap();
    let ask_contract = |h: &Harness, bank: &str| {
        answer_to(h, bank, Question::Contract { number: "GZ-1".into(), uses_of: None })
            .map(|bytes| <(Contract, Option<ContractUse>)>::from_bytes(&bytes).unwrap())
    };
    let (seen, used) = ask_contract(&h, "sapa").unwrap();
    assert_eq!((seen.sender.client_id.as_str(), used), ("1", None), "both parties named to each");
    let own_contract = ContractSpec {
        number: "GZ-2".into(),
        sender: fees.clone(),
        recipient: sender.clone(),
        max_transfer_tiyn: tiyn(500),
        max_fiat_tiyn: tiyn(100),
        valid_until_unix_ms: 10_000,
        funded_by: None,
    };
    h.oracle.register_contract(Credential::Token(&portal), own_contract, 0).unwrap();
    let hidden = answer_to(&h, "sapa", Question::Contract { number: "GZ-2".into(), uses_of: None }).unwrap_err();
    assert_eq!(hidden.code, ErrorCode::NotFound);
    let unpaid = answer_to(&h, "steppe", Question::VatPayment { tx_id: TxId(Hash32([9; 32])) }).unwrap_err();
    assert_eq!(unpaid.code, ErrorCode::NotFound);
    // The key is the oracle's across a restart.
    h.restart();
    assert_eq!(create(&h, "steppe", "marking-1", 1, &spec).unwrap().id, first.id);
    assert_eq!(create(&h, "steppe", "marking-1", 2, &spec).unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(h.oracle.markings().len(), 2);
}
