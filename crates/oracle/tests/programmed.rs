//! The oracle role's programmed spends alone: plans, decisions final per transaction id and
//! one spend per subject at a time, abandons, certified deliveries applied once, the registry
//! and its waiting subjects read back after a restart; and what a bank may not ask for.
//! Transactions and certificates are made by hand; what the oracle sends is captured.

use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{CommitCertificate, CompactTx};
use dtenge_core::crypto::{Address, Hash32, SecretKey};
use dtenge_core::party::Party;
use dtenge_core::token::{Input, Output, TxId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, ErrorCode};
use dtenge_oracle::service::{tables, NoticeKind, OracleService, TxDecision};
use dtenge_oracle::{Level, MarkingSpec};
use dtenge_store::{SimDisk, Store};
use dtenge_transport::{SendError, Transport};
use dtenge_wire::{
    Abandon, AttestPurpose, AttestRequest, Deliver, Envelope, Message, Payload, PlanRequest, PlannedSpend, RoleId,
    Spend, SpendKind, Verdict,
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

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

const ORACLE: u8 = 2;
const NOTARY: u8 = 3;
const INITIATOR: u8 = 10;
const FIRST: u8 = 11;
const SECOND: u8 = 12;

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

fn party(byte: u8, bank: &str) -> Party {
    Party { bank: bank.into(), client_id: format!("1001400000{byte}"), address: key(byte).address() }
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

    fn restart(&mut self) {
        self.disk.disarm();
        self.oracle = open(&self.disk, &self.net);
    }

    /// The initiator at Steppe, level 1 at Sapa (up to 1,000), level 2 at Steppe.
    fn marking(&self) -> String {
        let levels = vec![
            Level { recipients: vec![party(FIRST, "sapa")], limit_tiyn: tiyn(1_000) },
            Level { recipients: vec![party(SECOND, "steppe")], limit_tiyn: tiyn(1_000) },
        ];
        let spec = MarkingSpec { initiator: party(INITIATOR, "steppe"), reference: "tranche".into(), levels };
        self.oracle.create_marking(spec, 0).unwrap().id
    }

    fn send(&self, from: &str, message: Message) -> Vec<Envelope> {
        self.oracle.handle(Envelope { from: RoleId::Bank(from.into()), to: RoleId::Oracle, message }, 10);
        std::mem::take(&mut *self.net.0.lock())
    }

    fn plan(&self, from: &str, spend: &Spend) -> Result<PlannedSpend, dtenge_core::Error> {
        let sent = self.send(from, Message::PlanRequest(PlanRequest { request: 1, spend: spend.clone() }));
        let [Envelope { message: Message::PlanReply(reply), .. }] = &sent[..] else { panic!("one plan, not {sent:?}") };
        assert_eq!((reply.request, &reply.spend), (1, spend), "the request is echoed");
        reply.plan.clone()
    }

    fn ask(&self, from: &str, subject: &str, spend: &Spend, tx: &Transaction) -> Verdict {
        let request =
            AttestRequest { event_id: subject.into(), purpose: AttestPurpose::Spend(spend.clone()), tx: tx.clone() };
        verdict(self.send(from, Message::AttestRequest(request)))
    }

    fn deliver(&mut self, bank: &str, seq: u64, tx: &Transaction) -> Vec<Envelope> {
        self.cert_seq += 1;
        let leaves = [CompactTx::of(&TxIds::of(tx).unwrap()).hash()];
        let (certificate, proofs) = CommitCertificate::sign(&key(NOTARY), self.cert_seq, &leaves);
        let txs = vec![(tx.clone(), proofs[0].clone())];
        self.send(bank, Message::Deliver(Deliver { seq, payload: Payload::Certified { certificate, txs } }))
    }
}

fn verdict(sent: Vec<Envelope>) -> Verdict {
    let [Envelope { message: Message::AttestReply(reply), .. }] = &sent[..] else { panic!("one answer, not {sent:?}") };
    reply.verdict.clone()
}

fn open(disk: &SimDisk, net: &Arc<Captured>) -> OracleService {
    let store = Store::open_simulated(disk.clone(), &tables()).unwrap();
    let transport: Arc<dyn Transport> = net.clone();
    OracleService::open(store, key(ORACLE), anchors(), transport).unwrap()
}

fn marked(marking_id: &str, amount: u64) -> Spend {
    Spend {
        payer: party(INITIATOR, "steppe"),
        kind: SpendKind::MarkedTransfer {
            marking_id: marking_id.into(),
            to: party(FIRST, "sapa"),
            amount: tiyn(amount),
        },
    }
}

/// The payer's 1,500 standard token spent on `plan`, the rest back as standard change.
fn spend_tx(plan: &PlannedSpend, nonce: u64) -> Transaction {
    let payer = key(INITIATOR).address();
    let input =
        Input { tx_id: TxId(Hash32([9; 32])), index: 0, output: Output::standard(tiyn(1_500), payer, issuer()) };
    let paid = plan.outputs.iter().map(|o| o.amount_tiyn.tiyn()).sum::<u64>();
    let mut outputs = plan.outputs.clone();
    outputs.push(Output::standard(tiyn(1_500 - paid), payer, issuer()));
    Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input], outputs, nonce })
}

fn refused(verdict: Verdict) -> ErrorCode {
    match verdict {
        Verdict::Refused(e) => e.code,
        other => panic!("refused, not {other:?}"),
    }
}

#[test]
fn a_spend_is_planned_attested_once_holds_its_subject_and_is_applied_once_from_its_certificate() {
    let mut h = Harness::new();
    let id = h.marking();
    let spend = marked(&id, 600);
    let plan = h.plan("steppe", &spend).unwrap();
    assert_eq!(plan.outputs.len(), 1);
    let tx = spend_tx(&plan, 1);
    assert!(matches!(h.ask("steppe", &id, &spend, &tx), Verdict::Attested(_)));
    // A copy of the request: the same answer. Another spend of the marking: refused until
    // the first is applied, and for good (its decision is written).
    assert!(matches!(h.ask("steppe", &id, &spend, &tx), Verdict::Attested(_)));
    let waits = PlanRequest { request: 2, spend: marked(&id, 100) };
    assert!(h.send("steppe", Message::PlanRequest(waits)).is_empty(), "a plan of the marking waits for it");
    let other = spend_tx(&h_plan_unlocked(&plan, 100), 2);
    assert_eq!(refused(h.ask("steppe", &id, &marked(&id, 100), &other)), ErrorCode::RequestInProgress);
    assert_eq!(h.oracle.spends_in_flight(), 1);
    assert_eq!(h.oracle.pending(), 1);

    // The subject waits across a restart (rebuilt from the decisions).
    h.restart();
    assert_eq!(h.oracle.spends_in_flight(), 1);
    let acks = h.deliver("steppe", 1, &tx);
    assert!(matches!(acks[..], [Envelope { message: Message::DeliverAck(_), .. }]));
    assert!(matches!(h.oracle.decision(&tx.id()), Some(TxDecision::SpentApplied { .. })));
    let marking = h.oracle.marking(&id).unwrap();
    assert_eq!((marking.moves.len(), marking.moved_tiyn[0]), (1, tiyn(600)));
    assert_eq!(marking.moves[0].body.to, party(FIRST, "sapa"));
    // The initiator's bank is told of the move, with its client, in the commit that applies it.
    let initiator = party(INITIATOR, "steppe");
    let told = |h: &Harness| {
        let page = h.oracle.notifications("steppe", 0, 10).unwrap();
        let notices = page.notices.iter().map(|n| (n.seq, n.kind, n.amount_tiyn, n.client_id.clone(), n.tx_id));
        (page.total, notices.collect::<Vec<_>>())
    };
    let once = (1, vec![(0, NoticeKind::MarkedTransfer, tiyn(600), Some(initiator.client_id.clone()), Some(tx.id()))]);
    assert_eq!(told(&h), once);
    assert!(h.oracle.notifications("sapa", 0, 10).unwrap().notices.is_empty(), "the initiator's bank only");
    // Certified again (a bank resending after a crash): applied once, told once.
    h.deliver("steppe", 2, &tx);
    assert_eq!(h.oracle.marking(&id).unwrap().moves.len(), 1);
    assert_eq!(told(&h), once);
    assert_eq!(h.oracle.spends_in_flight(), 0);
    // The limit counts what was applied: 400 more fit, 401 do not.
    assert_eq!(h.plan("steppe", &marked(&id, 401)).unwrap_err().code, ErrorCode::LimitExceeded);
    assert!(h.plan("steppe", &marked(&id, 400)).is_ok());
    h.restart();
    assert_eq!(h.oracle.marking(&id).unwrap().moved_tiyn[0], tiyn(600), "the registry reads back");
    assert_eq!(told(&h), once, "and what its bank was told");
}

/// The plan of another amount, as the oracle would make it once the marking is free.
fn h_plan_unlocked(plan: &PlannedSpend, amount: u64) -> PlannedSpend {
    let mut plan = plan.clone();
    plan.parts[0].1 = tiyn(amount);
    plan.outputs[0].amount_tiyn = tiyn(amount);
    plan
}

#[test]
fn an_abandoned_spend_frees_its_subject_and_is_never_applied() {
    let mut h = Harness::new();
    let id = h.marking();
    let spend = marked(&id, 600);
    let tx = spend_tx(&h.plan("steppe", &spend).unwrap(), 1);
    assert!(matches!(h.ask("steppe", &id, &spend, &tx), Verdict::Attested(_)));
    let refusal = dtenge_core::Error::new(ErrorCode::BankBlocked, "blocked");
    let abandon = Abandon { event_id: id.clone(), tx_id: tx.id(), refused: refusal };
    // Only the payer's bank gives it up.
    assert!(h.send("sapa", Message::Abandon(abandon.clone())).is_empty());
    // A plan waiting for the marking is answered when the marking is free.
    let waits = PlanRequest { request: 2, spend: marked(&id, 100) };
    assert!(h.send("steppe", Message::PlanRequest(waits.clone())).is_empty());
    assert!(h.send("steppe", Message::PlanRequest(waits)).is_empty(), "a copy waits once");
    let sent = h.send("steppe", Message::Abandon(abandon.clone()));
    let [Envelope { message: Message::PlanReply(plan), .. }, Envelope { message: Message::AttestReply(taken), .. }] =
        &sent[..]
    else {
        panic!("the waiting plan answered once, and the abandon taken: {sent:?}")
    };
    assert_eq!((&taken.verdict, plan.request, plan.plan.is_ok()), (&Verdict::Abandoned, 2, true));
    assert_eq!(verdict(h.send("steppe", Message::Abandon(abandon))), Verdict::Abandoned);
    assert_eq!(h.oracle.spends_in_flight(), 0);
    assert_eq!(h.ask("steppe", &id, &spend, &tx), Verdict::Abandoned, "final for its id");
    h.deliver("steppe", 1, &tx);
    assert_eq!(h.oracle.marking(&id).unwrap().moves.len(), 0, "a certificate of it is foreign");
    let again = spend_tx(&h.plan("steppe", &spend).unwrap(), 2);
    assert!(matches!(h.ask("steppe", &id, &spend, &again), Verdict::Attested(_)));
}

#[test]
fn a_bank_spends_for_its_own_clients_only_and_names_the_spends_subject() {
    let h = Harness::new();
    let id = h.marking();
    let spend = marked(&id, 600);
    assert_eq!(h.plan("sapa", &spend).unwrap_err().code, ErrorCode::Forbidden);
    let tx = spend_tx(&h.plan("steppe", &spend).unwrap(), 1);
    assert_eq!(refused(h.ask("sapa", &id, &spend, &tx)), ErrorCode::Forbidden);
    let tx = spend_tx(&h.plan("steppe", &spend).unwrap(), 2);
    assert_eq!(refused(h.ask("steppe", "MK0000009", &spend, &tx)), ErrorCode::MalformedInput);
    // A withdrawal to another bank's account is refused, not asserted.
    let withdrawal = Spend {
        payer: party(FIRST, "sapa"),
        kind: SpendKind::ContractWithdrawal {
            contract: "GZ-1".into(),
            amount: tiyn(5),
            bank_account: party(30, "steppe"),
        },
    };
    assert_eq!(h.plan("sapa", &withdrawal).unwrap_err().code, ErrorCode::Forbidden);
    // A transaction that does other than the plan.
    let plan = h.plan("steppe", &spend).unwrap();
    let mut stolen = spend_tx(&plan, 3);
    stolen.body.outputs[1].owner = key(99).address();
    let stolen = Transaction::new(stolen.body);
    assert_eq!(refused(h.ask("steppe", &id, &spend, &stolen)), ErrorCode::Forbidden);
    assert_eq!(h.oracle.spends_in_flight(), 0);
}

#[test]
fn a_provider_is_known_by_its_token_and_listed_after_a_restart() {
    let mut h = Harness::new();
    let token = "t".repeat(dtenge_oracle::service::programmed::PROVIDER_TOKEN_BYTES_MIN);
    let kind = dtenge_oracle::ProviderKind::VehicleRegistry;
    let registered = h.oracle.register_provider("vehicles", "Vehicle registry", kind, &token, 5).unwrap();
    assert_eq!(h.oracle.authenticate(&token).unwrap(), registered);
    assert_eq!(h.oracle.authenticate("not a token of anyone").unwrap_err().code, ErrorCode::Unauthorized);
    h.restart();
    assert_eq!(h.oracle.authenticate(&token).unwrap(), registered);
    assert_eq!(h.oracle.providers(), vec![registered]);
}

#[test]
fn a_provider_registered_under_a_key_gets_the_same_token_again_and_another_request_is_refused() {
    let mut h = Harness::new();
    let kind = dtenge_oracle::ProviderKind::SubsidySystem;
    let fingerprint = Hash32([7; 32]);
    let (view, token) =
        h.oracle.register_provider_keyed("subsidies", "Subsidies", kind, ("k-1", fingerprint), 5).unwrap();
    assert_eq!(h.oracle.authenticate(&token).unwrap(), view);
    h.restart();
    let again = h.oracle.register_provider_keyed("subsidies", "Subsidies", kind, ("k-1", fingerprint), 9).unwrap();
    assert_eq!(again, (view.clone(), token.clone()), "the same provider and token, registered once");
    let other = h.oracle.register_provider_keyed("subsidies", "Subsidies", kind, ("k-1", Hash32([8; 32])), 9);
    assert_eq!(other.unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    // Another key for a provider registered already: the registry refuses it.
    let twice = h.oracle.register_provider_keyed("subsidies", "Subsidies", kind, ("k-2", fingerprint), 9);
    assert_eq!(twice.unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(h.oracle.providers(), vec![view]);
}
