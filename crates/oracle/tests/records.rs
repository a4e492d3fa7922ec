//! The oracle role's signed records and infinite events: a record per decision, written with
//! it, verifying with the role's key, read back after a crash; an infinite event held once or
//! more and released per occurrence until what it holds runs out, through the same hold and
//! release protocol, crashed between its steps. Transactions and certificates are made by hand,
//! as in `role.rs`.

use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{CommitCertificate, CompactTx};
use dtenge_core::crypto::{verify, Address, Hash32, SecretKey};
use dtenge_core::token::{event_hash, Input, Output, TxId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, ErrorCode};
use dtenge_oracle::service::{
    tables, Confirmation, Confirmed, EventSpec, EventStatus, OccurrenceNote, OracleService, Payee, Registration,
};
use dtenge_oracle::{Action, Record};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{SendError, Transport};
use dtenge_wire::{AttestPurpose, AttestRequest, Deliver, Envelope, Message, Payload, ReleaseOrder, RoleId, Verdict};
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
    deliveries: u64,
}

impl Harness {
    fn new() -> Harness {
        let disk = SimDisk::new();
        let net = Arc::new(Captured::default());
        let oracle = open(&disk, &net);
        Harness { disk, net, oracle, cert_seq: 0, deliveries: 0 }
    }

    fn restart(&mut self) {
        self.disk.disarm();
        self.oracle = open(&self.disk, &self.net);
    }

    /// An event paying the seller 900 and the fees 100 per occurrence, valid until 10,000 ms.
    fn register(&self, infinite: bool) -> String {
        let spec = EventSpec {
            reference: "Onay card 1".into(),
            sender_bank: "steppe".into(),
            sender: key(SENDER).address(),
            payees: vec![
                Payee { bank: "sapa".into(), address: key(SELLER).address(), amount_tiyn: tiyn(900) },
                Payee { bank: "steppe".into(), address: key(FEES).address(), amount_tiyn: tiyn(100) },
            ],
            valid_until_ms: 10_000,
        };
        let registration = Registration { infinite, ..Registration::default() };
        self.oracle.register_event_with("onay", spec, registration, 0).unwrap()
    }

    fn ask(&self, event_id: &str, purpose: AttestPurpose, tx: &Transaction, now_ms: u64) -> Verdict {
        let request = AttestRequest { event_id: event_id.into(), purpose, tx: tx.clone() };
        self.oracle.handle(envelope(Message::AttestRequest(request)), now_ms);
        let sent = self.net.take();
        let [Envelope { message: Message::AttestReply(reply), .. }] = &sent[..] else { panic!("one answer: {sent:?}") };
        reply.verdict.clone()
    }

    /// The sender's bank delivers `tx` certified as its next delivery; whether it was
    /// acknowledged.
    fn deliver(&mut self, tx: &Transaction, now_ms: u64) -> bool {
        self.cert_seq += 1;
        let leaf = CompactTx::of(&TxIds::of(tx).unwrap()).hash();
        let (certificate, proofs) = CommitCertificate::sign(&key(NOTARY), self.cert_seq, &[leaf]);
        let txs = vec![(tx.clone(), proofs[0].clone())];
        let deliver = Deliver { seq: self.deliveries + 1, payload: Payload::Certified { certificate, txs } };
        self.oracle.handle(envelope(Message::Deliver(deliver)), now_ms);
        let acked = self
            .net
            .take()
            .iter()
            .any(|e| matches!(&e.message, Message::DeliverAck(a) if a.seq == self.deliveries + 1));
        if acked {
            self.deliveries += 1;
        }
        acked
    }

    /// Hold, attested and applied.
    fn hold(&mut self, event_id: &str, tx: &Transaction, now_ms: u64) {
        assert!(matches!(self.ask(event_id, hold_purpose(), tx, now_ms), Verdict::Attested(_)));
        assert!(self.deliver(tx, now_ms));
    }

    /// An occurrence: its order, the release built from `sources`' held outputs, attested
    /// and applied; the release.
    fn ride(&mut self, event_id: &str, occurrence: &str, sources: &[&Transaction], now_ms: u64) -> Transaction {
        let confirmed = self.oracle.confirm_occurrence("onay", event_id, occurred(), note(occurrence), now_ms);
        assert_eq!(confirmed.unwrap(), Confirmed::New);
        let release = release_from(sources, &order_of(&self.net.take()));
        assert!(matches!(self.ask(event_id, AttestPurpose::Release, &release, now_ms), Verdict::Attested(_)));
        assert!(self.deliver(&release, now_ms));
        release
    }

    fn actions(&self, event_id: &str) -> Vec<Action> {
        self.oracle.records(event_id).unwrap().iter().map(|r| r.body.action).collect()
    }

    /// Every record verifies with the role's public key, numbered densely from 0.
    fn verify(&self, event_id: &str) -> Vec<Record> {
        let records = self.oracle.records(event_id).unwrap();
        for (n, record) in records.iter().enumerate() {
            assert_eq!((record.body.seq as usize, record.body.event_id.as_str()), (n, event_id));
            verify(&self.oracle.public_key(), &record.body.digest().unwrap().0, &record.oracle_signature).unwrap();
        }
        records
    }
}

fn open(disk: &SimDisk, net: &Arc<Captured>) -> OracleService {
    let store = Store::open_simulated(disk.clone(), &tables()).unwrap();
    let transport: Arc<dyn Transport> = net.clone();
    OracleService::open(store, key(ORACLE), anchors(), transport).unwrap()
}

fn envelope(message: Message) -> Envelope {
    Envelope { from: RoleId::Bank("steppe".into()), to: RoleId::Oracle, message }
}

fn hold_purpose() -> AttestPurpose {
    AttestPurpose::Hold { payee: key(SELLER).address() }
}

fn occurred() -> Confirmation {
    Confirmation::Occurred { payouts: None }
}

fn note(id: &str) -> OccurrenceNote {
    OccurrenceNote { occurrence_id: id.into(), reason: None }
}

/// The sender holds `held` of a `funding` token (distinct per `nonce`) for `event_id`.
fn hold_tx(event_id: &str, held: u64, funding: u64, nonce: u64) -> Transaction {
    let sender = key(SENDER).address();
    let input = Input {
        tx_id: TxId(Hash32([nonce as u8; 32])),
        index: 0,
        output: Output::standard(tiyn(funding), sender, issuer()),
    };
    let mut outputs = vec![Output::held(tiyn(held), sender, issuer(), event_hash(event_id))];
    if funding > held {
        outputs.push(Output::standard(tiyn(funding - held), sender, issuer()));
    }
    Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input], outputs, nonce })
}

/// The release spending every held output of `sources` into `order`'s outputs.
fn release_from(sources: &[&Transaction], order: &ReleaseOrder) -> Transaction {
    let inputs =
        sources.iter().flat_map(|tx| tx.outputs_as_inputs()).filter(|i| i.output.policy.held_for().is_some()).collect();
    Transaction::new(TxBody {
        command: Command::Transfer,
        inputs,
        outputs: order.outputs.clone(),
        nonce: order.attempt,
    })
}

fn order_of(sent: &[Envelope]) -> ReleaseOrder {
    sent.iter()
        .rev()
        .find_map(|e| match &e.message {
            Message::ReleaseOrder(order) => Some(order.clone()),
            _ => None,
        })
        .expect("a release order was sent")
}

#[test]
fn every_decision_on_a_single_event_is_a_signed_record_written_with_it_and_read_back_after_a_crash() {
    let mut h = Harness::new();
    let id = h.register(false);
    assert_eq!(h.actions(&id), [Action::Registered]);
    let hold = hold_tx(&id, 1_000, 1_500, 1);
    assert!(matches!(h.ask(&id, hold_purpose(), &hold, 10), Verdict::Attested(_)));
    assert_eq!(h.actions(&id), [Action::Registered], "attested is not held: no record until the certificate");
    // The delivery's commit is lost: no record; applied once, with its record, when resent.
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    assert!(!h.deliver(&hold, 20));
    h.restart();
    assert_eq!(h.actions(&id), [Action::Registered]);
    assert!(h.deliver(&hold, 20));
    let payouts = Some(vec![(key(SELLER).address(), tiyn(900))]);
    let confirmed = h.oracle.confirm_occurrence("onay", &id, Confirmation::Occurred { payouts }, note("sold"), 30);
    assert_eq!(confirmed.unwrap(), Confirmed::New);
    let release = release_from(&[&hold], &order_of(&h.net.take()));
    assert!(matches!(h.ask(&id, AttestPurpose::Release, &release, 30), Verdict::Attested(_)));
    assert!(h.deliver(&release, 40));
    h.restart();
    let records = h.verify(&id);
    let actions: Vec<Action> = records.iter().map(|r| r.body.action).collect();
    assert_eq!(actions, [Action::Registered, Action::Held, Action::Released, Action::Returned]);
    let (held, released, returned) = (&records[1].body, &records[2].body, &records[3].body);
    assert_eq!(
        (held.amount_tiyn, held.tx_id, held.by.as_str(), held.at_unix_ms),
        (tiyn(1_000), Some(hold.id()), "steppe", 20)
    );
    assert_eq!(
        (released.amount_tiyn, released.tx_id, released.occurrence_id.as_deref()),
        (tiyn(900), Some(release.id()), Some("sold"))
    );
    assert_eq!(released.payouts.len(), 1);
    assert_eq!(
        (released.payouts[0].party.address, released.payouts[0].amount_tiyn),
        (key(SELLER).address(), tiyn(900))
    );
    assert_eq!((returned.amount_tiyn, returned.tx_id, returned.by.as_str()), (tiyn(100), Some(release.id()), "onay"));
    assert!(records.iter().all(|r| r.body.terms_hash == records[0].body.terms_hash), "bound to one event's terms");
    // A tampered record does not verify.
    let mut forged = records[2].clone();
    forged.body.amount_tiyn = tiyn(1_000);
    assert!(verify(&h.oracle.public_key(), &forged.body.digest().unwrap().0, &forged.oracle_signature).is_err());
    // The same occurrence again, after the restart: repeated, its record found.
    assert_eq!(h.oracle.confirm_occurrence("onay", &id, occurred(), note("sold"), 50).unwrap(), Confirmed::Repeated);
    assert_eq!(h.oracle.occurrence_record(&id, "sold").unwrap().unwrap().body.seq, 2);
    assert_eq!(h.oracle.occurrences(&id), 1);
    assert_eq!(h.oracle.records("EV404").unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn a_rejection_and_an_expiry_are_recorded_with_their_reason_and_who_decided() {
    let mut h = Harness::new();
    let rejected = h.register(false);
    let idle = h.register(false);
    let expired = h.register(false);
    let hold = hold_tx(&rejected, 1_000, 1_000, 1);
    h.hold(&rejected, &hold, 10);
    let why = OccurrenceNote { occurrence_id: "r-1".into(), reason: Some("the vehicle is under arrest".into()) };
    h.oracle.confirm_occurrence("onay", &rejected, Confirmation::Rejected, why, 20).unwrap();
    let release = release_from(&[&hold], &order_of(&h.net.take()));
    h.ask(&rejected, AttestPurpose::Release, &release, 20);
    assert!(h.deliver(&release, 20));
    let records = h.verify(&rejected);
    assert_eq!(h.actions(&rejected), [Action::Registered, Action::Held, Action::Rejected]);
    let body = &records[2].body;
    assert_eq!(
        (body.amount_tiyn, body.reason.as_deref(), body.occurrence_id.as_deref()),
        (tiyn(1_000), Some("the vehicle is under arrest"), Some("r-1"))
    );

    // Held and expired: the return's record, by the oracle; never held: expired at once.
    let hold = hold_tx(&expired, 1_000, 1_000, 2);
    h.hold(&expired, &hold, 10);
    h.oracle.tick(10_000);
    let release = release_from(&[&hold], &order_of(&h.net.take()));
    h.ask(&expired, AttestPurpose::Release, &release, 10_000);
    assert!(h.deliver(&release, 10_001));
    assert_eq!(h.actions(&idle), [Action::Registered, Action::Expired]);
    assert_eq!(h.actions(&expired), [Action::Registered, Action::Held, Action::Expired]);
    let records = h.verify(&expired);
    assert_eq!((records[2].body.by.as_str(), records[2].body.amount_tiyn), ("oracle", tiyn(1_000)));
    assert!(records[2].body.reason.is_some());
    h.restart();
    h.verify(&idle);
    assert_eq!(h.actions(&expired), [Action::Registered, Action::Held, Action::Expired]);
}

#[test]
fn an_infinite_event_releases_per_occurrence_until_what_it_holds_runs_out_and_expiry_returns_the_rest() {
    let mut h = Harness::new();
    let id = h.register(true);
    assert_eq!(h.oracle.is_infinite(&id), Some(true));
    assert_eq!(h.oracle.plan_hold("steppe", &id, Some(Amount::ZERO), 5).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(h.oracle.plan_hold("steppe", &id, Some(tiyn(2_500)), 5).unwrap().amount, tiyn(2_500));
    let early = h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-0"), 5);
    assert_eq!(early.unwrap_err().code, ErrorCode::Conflict, "nothing held yet");
    let hold = hold_tx(&id, 2_500, 3_000, 1);
    h.hold(&id, &hold, 10);
    // Every occurrence pays the shares and keeps the rest held, as the last output.
    let first = h.ride(&id, "tap-1", &[&hold], 20);
    assert_eq!(
        first.body.outputs.last(),
        Some(&Output::held(tiyn(1_500), key(SENDER).address(), issuer(), event_hash(&id)))
    );
    let event = h.oracle.event(&id).unwrap();
    assert_eq!((event.status, event.held_tiyn, event.released_tiyn), (EventStatus::Held, tiyn(1_500), tiyn(1_000)));
    assert_eq!(h.oracle.held_by_event().get(&event_hash(&id)), Some(&tiyn(1_500)));
    let second = h.ride(&id, "tap-2", &[&first], 30);
    assert_eq!(h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-2"), 31).unwrap(), Confirmed::Repeated);
    let third = h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-3"), 32);
    assert_eq!(third.unwrap_err().code, ErrorCode::LimitExceeded, "500 held, 1,000 a ride");
    // A payout within what is held still goes.
    let payouts = Some(vec![(key(FEES).address(), tiyn(100))]);
    h.oracle.confirm_occurrence("onay", &id, Confirmation::Occurred { payouts }, note("tap-4"), 33).unwrap();
    let fourth = release_from(&[&second], &order_of(&h.net.take()));
    h.ask(&id, AttestPurpose::Release, &fourth, 33);
    assert!(h.deliver(&fourth, 33));
    // Held again (a top-up): what it holds grows.
    assert_eq!(h.oracle.plan_hold("sapa", &id, Some(tiyn(1_000)), 40).unwrap_err().code, ErrorCode::Forbidden);
    let top_up = hold_tx(&id, 1_000, 1_000, 2);
    h.hold(&id, &top_up, 40);
    assert_eq!(h.oracle.event(&id).unwrap().held_tiyn, tiyn(1_400));
    let fifth = h.ride(&id, "tap-5", &[&fourth, &top_up], 50);
    assert_eq!(h.oracle.event(&id).unwrap().held_tiyn, tiyn(400));
    assert_eq!(h.oracle.occurrences(&id), 4);
    // The end of the validity returns the rest; the event ends expired.
    h.oracle.tick(10_000);
    let back = release_from(&[&fifth], &order_of(&h.net.take()));
    assert_eq!(back.body.outputs, [Output::standard(tiyn(400), key(SENDER).address(), issuer())]);
    h.ask(&id, AttestPurpose::Release, &back, 10_000);
    assert!(h.deliver(&back, 10_000));
    let event = h.oracle.event(&id).unwrap();
    assert_eq!(
        (event.status, event.held_tiyn, event.released_tiyn, event.returned_tiyn),
        (EventStatus::Expired, Amount::ZERO, tiyn(3_100), tiyn(400))
    );
    use Action::*;
    assert_eq!(h.actions(&id), [Registered, Held, Released, Released, Released, Held, Released, Expired]);
    h.verify(&id);
    assert_eq!(h.oracle.pending(), 0);
    assert!(h.oracle.held_by_event().is_empty());
}

#[test]
fn an_infinite_event_whose_occurrence_pays_all_it_holds_completes_and_a_rejection_returns_the_rest() {
    let mut h = Harness::new();
    let exact = h.register(true);
    let hold = hold_tx(&exact, 2_000, 2_000, 1);
    h.hold(&exact, &hold, 10);
    let first = h.ride(&exact, "t1", &[&hold], 20);
    let last = h.ride(&exact, "t2", &[&first], 30);
    assert!(last.body.outputs.iter().all(|o| o.policy.is_standard()), "nothing kept");
    assert_eq!(h.oracle.event(&exact).unwrap().status, EventStatus::Completed);
    let more = h.oracle.confirm_occurrence("onay", &exact, occurred(), note("t3"), 40);
    assert_eq!(more.unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(h.oracle.plan_hold("steppe", &exact, None, 40).unwrap_err().code, ErrorCode::Conflict);

    let rejected = h.register(true);
    let hold = hold_tx(&rejected, 2_500, 2_500, 2);
    h.hold(&rejected, &hold, 10);
    let ride = h.ride(&rejected, "t1", &[&hold], 20);
    let why =
        OccurrenceNote { occurrence_id: "card blocked".into(), reason: Some("the card was reported lost".into()) };
    h.oracle.confirm_occurrence("onay", &rejected, Confirmation::Rejected, why, 30).unwrap();
    let back = release_from(&[&ride], &order_of(&h.net.take()));
    assert_eq!(back.body.outputs, [Output::standard(tiyn(1_500), key(SENDER).address(), issuer())]);
    h.ask(&rejected, AttestPurpose::Release, &back, 30);
    assert!(h.deliver(&back, 30));
    let event = h.oracle.event(&rejected).unwrap();
    assert_eq!(
        (event.status, event.returned_tiyn, event.held_tiyn),
        (EventStatus::Rejected, tiyn(1_500), Amount::ZERO)
    );
    assert_eq!(h.actions(&rejected), [Action::Registered, Action::Held, Action::Released, Action::Rejected]);
}

#[test]
fn an_infinite_event_survives_crashes_between_its_steps_and_pays_each_occurrence_once() {
    let mut h = Harness::new();
    let id = h.register(true);
    let hold = hold_tx(&id, 2_500, 2_500, 1);
    // The hold's decision durable, then the crash: answered from the decision after.
    h.disk.arm_crash(1, CrashMode::AfterWrite);
    let request = AttestRequest { event_id: id.clone(), purpose: hold_purpose(), tx: hold.clone() };
    h.oracle.handle(envelope(Message::AttestRequest(request)), 10);
    h.restart();
    h.net.take();
    assert!(matches!(h.ask(&id, hold_purpose(), &hold, 10), Verdict::Attested(_)));
    assert!(h.deliver(&hold, 10));
    // The occurrence's commit lost: nothing ordered; asked again, it goes.
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    assert!(h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-1"), 20).is_err());
    h.restart();
    h.net.take();
    assert_eq!(h.oracle.event(&id).unwrap().status, EventStatus::Held);
    assert_eq!(h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-1"), 20).unwrap(), Confirmed::New);
    // Crash after the occurrence's commit: the same occurrence is repeated, the order sent again.
    h.restart();
    assert_eq!(h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-1"), 21).unwrap(), Confirmed::Repeated);
    h.net.take();
    h.oracle.tick(22);
    let release = release_from(&[&hold], &order_of(&h.net.take()));
    assert!(matches!(h.ask(&id, AttestPurpose::Release, &release, 22), Verdict::Attested(_)));
    // The release's certificate: its commit lost, then applied once with its record.
    h.disk.arm_crash(1, CrashMode::BeforeWrite);
    assert!(!h.deliver(&release, 23));
    h.restart();
    assert_eq!(h.oracle.event(&id).unwrap().status, EventStatus::Releasing);
    assert!(h.deliver(&release, 24));
    h.restart();
    let event = h.oracle.event(&id).unwrap();
    assert_eq!((event.status, event.held_tiyn, event.released_tiyn), (EventStatus::Held, tiyn(1_500), tiyn(1_000)));
    assert_eq!(h.oracle.confirm_occurrence("onay", &id, occurred(), note("tap-1"), 25).unwrap(), Confirmed::Repeated);
    assert_eq!(h.actions(&id), [Action::Registered, Action::Held, Action::Released]);
    assert_eq!(h.oracle.is_infinite(&id), Some(true), "the kind is read back");
    // The next ride goes on from what is kept.
    let next = h.ride(&id, "tap-2", &[&release], 30);
    assert_eq!(next.body.inputs.len(), 1);
    assert_eq!(h.oracle.event(&id).unwrap().held_tiyn, tiyn(500));
    h.verify(&id);
}

#[test]
fn a_hold_is_answered_in_the_networks_order_expired_before_anything_else() {
    let mut h = Harness::new();
    let single = h.register(false);
    assert_eq!(h.oracle.plan_hold("steppe", "EV404", None, 5).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(h.oracle.plan_hold("sapa", &single, None, 5).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(h.oracle.plan_hold("steppe", &single, Some(tiyn(1)), 5).unwrap_err().code, ErrorCode::MalformedInput);
    let plan = h.oracle.plan_hold("steppe", &single, None, 5).unwrap();
    assert_eq!((plan.amount, plan.infinite), (tiyn(1_000), false));
    let hold = hold_tx(&single, 1_000, 1_000, 1);
    h.hold(&single, &hold, 10);
    assert_eq!(h.oracle.plan_hold("steppe", &single, None, 11).unwrap_err().code, ErrorCode::Conflict);
    // Past its validity: expired, whoever asks and for whatever amount (the tick has not
    // run yet, and after it has).
    let idle = h.register(false);
    for (bank, amount) in [("steppe", None), ("sapa", Some(tiyn(1)))] {
        assert_eq!(h.oracle.plan_hold(bank, &idle, amount, 10_000).unwrap_err().code, ErrorCode::EventExpired);
    }
    h.oracle.tick(10_000);
    assert_eq!(h.oracle.plan_hold("steppe", &idle, None, 10_001).unwrap_err().code, ErrorCode::EventExpired);
    assert_eq!(h.oracle.event(&idle).unwrap().status, EventStatus::Expired);
}
