//! Holds and releases across the bank, the oracle and the notary (central funds the bank):
//! each on its own simulated disk, on a network that loses, duplicates and delays without a
//! random generator. The bank's clients: a sender, a seller and the state's fees account, all
//! at Steppe and custodial.

use dtenge_bank::{AccountKey, BankService, Directory, Genesis, IdemKey, Request};
use dtenge_central::{BankKeys, CentralService};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{Address, Hash32, SecretKey};
use dtenge_core::token::event_hash;
use dtenge_core::{Amount, ErrorCode};
use dtenge_node::{Account, ClientKind, NodeKind, NodeMeta, OWN_ACCOUNT};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_oracle::service::{Confirmation, EventSpec, EventStatus, OracleService, Payee};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{Fate, Faults, SimNetwork, Transport};
use dtenge_wire::{Envelope, RoleId};
use std::collections::BTreeMap;
use std::sync::Arc;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

const NBK: u8 = 1;
const ORACLE: u8 = 2;
const NOTARY: u8 = 3;
const STEPPE: u8 = 30;
const STEPPE_OWN: u8 = 31;
const SENDER: u8 = 40;
const SELLER: u8 = 41;
const FEES: u8 = 42;

fn tiyn(t: u64) -> Amount {
    Amount::from_tiyn(t).unwrap()
}

/// Loses every `lose_every`-th envelope, duplicates every fifth, delays by a rotating amount.
struct Rotating {
    n: u64,
    lose_every: u64,
}

impl Faults for Rotating {
    fn fate(&mut self, _: &RoleId, _: &RoleId) -> Fate {
        self.n += 1;
        if self.lose_every > 0 && self.n.is_multiple_of(self.lose_every) {
            return Fate::Lose;
        }
        if self.n.is_multiple_of(5) {
            return Fate::Duplicate { delay_ms: self.n % 7, again_ms: 30 };
        }
        Fate::Deliver { delay_ms: self.n % 11 }
    }
}

struct Local;

impl Directory for Local {
    fn bank_of(&self, _: &Address) -> dtenge_core::Result<Option<String>> {
        Ok(None)
    }
}

struct Net {
    net: Arc<SimNetwork<Rotating>>,
    now_ms: u64,
    disks: BTreeMap<&'static str, SimDisk>,
    notary: Option<NotaryService>,
    central: Option<CentralService>,
    bank: Option<BankService>,
    oracle: Option<OracleService>,
}

fn anchors() -> Anchors {
    Anchors {
        issuer: key(NBK).address(),
        central_bank: key(NBK).public_key(),
        oracle: key(ORACLE).public_key(),
        notary: key(NOTARY).public_key(),
        banks: [("steppe".to_string(), key(STEPPE).public_key())].into_iter().collect(),
        blocked: Default::default(),
    }
}

impl Net {
    fn new(lose_every: u64) -> Net {
        let disks = ["notary", "central", "steppe", "oracle"].into_iter().map(|n| (n, SimDisk::new())).collect();
        let mut n = Net {
            net: Arc::new(SimNetwork::new(Rotating { n: 0, lose_every })),
            now_ms: 0,
            disks,
            notary: None,
            central: None,
            bank: None,
            oracle: None,
        };
        for role in ["notary", "central", "steppe", "oracle"] {
            n.restart(role);
        }
        // The clock starts at the Unix epoch, New Year's Day in Astana: the operator opens it
        // for the emission that funds the bank.
        let new_year = dtenge_core::calendar::Date::new(1970, 1, 1).unwrap();
        n.central.as_ref().unwrap().set_day(new_year, true, n.now_ms).unwrap();
        n.open_clients();
        n.fund();
        n
    }

    fn restart(&mut self, role: &str) {
        self.disks[role].disarm();
        let disk = self.disks[role].clone();
        let net: Arc<dyn Transport> = self.net.clone();
        let a = anchors();
        match role {
            "notary" => {
                let store = Store::open_simulated(disk, &dtenge_notary::service::tables()).unwrap();
                let senders = Senders { central_bank: a.central_bank, banks: a.banks, blocked: a.blocked };
                self.notary = Some(NotaryService::open(store, key(NOTARY), senders).unwrap());
                self.net.up(&RoleId::Notary);
            }
            "central" => {
                let store = Store::open_simulated(disk, &dtenge_central::tables()).unwrap();
                let steppe = BankKeys { own: key(STEPPE_OWN).address(), node_key: key(STEPPE).public_key() };
                let banks = [("steppe".to_string(), steppe)].into_iter().collect();
                self.central = Some(CentralService::open(store, key(NBK), a.notary, banks, net).unwrap());
                self.net.up(&RoleId::Central);
            }
            "oracle" => {
                let store = Store::open_simulated(disk, &dtenge_oracle::service::tables()).unwrap();
                self.oracle = Some(OracleService::open(store, key(ORACLE), a, net).unwrap());
                self.net.up(&RoleId::Oracle);
            }
            _ => {
                let store = Store::open_simulated(disk, &dtenge_bank::tables()).unwrap();
                let genesis = Genesis {
                    meta: NodeMeta { id: "steppe".into(), kind: NodeKind::Bank, name: "Steppe Bank".into() },
                    node_key: key(STEPPE).into(),
                    own_key: key(STEPPE_OWN),
                    custody: dtenge_node::Custody::new([77; 32]),
                    now_ms: 0,
                };
                self.bank = Some(BankService::open(store, genesis, a, net, Arc::new(Local)).unwrap());
                self.net.up(&RoleId::Bank("steppe".into()));
            }
        }
    }

    /// The role down (its memory gone, what reaches it meanwhile lost) and opened again.
    fn crash_and_restart(&mut self, role: &str) {
        let id = match role {
            "notary" => RoleId::Notary,
            "central" => RoleId::Central,
            "oracle" => RoleId::Oracle,
            _ => RoleId::Bank("steppe".into()),
        };
        self.net.down(id);
        self.restart(role);
    }

    fn bank(&self) -> &BankService {
        self.bank.as_ref().unwrap()
    }

    fn oracle(&self) -> &OracleService {
        self.oracle.as_ref().unwrap()
    }

    fn open_clients(&mut self) {
        for (n, byte) in [SENDER, SELLER, FEES].into_iter().enumerate() {
            let account = Account {
                client_id: format!("90010130000{n}"),
                node_id: "steppe".into(),
                kind: ClientKind::Individual,
                name: format!("Client {n}"),
                phone: None,
                address: key(byte).address(),
                opened_at_unix_ms: 0,
            };
            self.bank().open_account(account, &AccountKey::Custodial(key(byte))).unwrap();
        }
    }

    /// 5,000 tiyn on the sender's account: emitted to Steppe, paid out by it.
    fn fund(&mut self) {
        let central = self.central.as_ref().unwrap();
        central.credit_correspondent("steppe", tiyn(1_000_000), 0).unwrap();
        let emitted = central.emit("steppe", tiyn(100_000), None, self.now_ms);
        self.run(10_000);
        emitted.try_recv().unwrap().unwrap();
        let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(key(SENDER).address(), tiyn(5_000))] };
        let paid = self.bank().submit(pay, None);
        self.bank().flush(self.now_ms);
        self.run(10_000);
        paid.try_recv().unwrap().unwrap();
    }

    fn register(&self) -> String {
        self.register_with(false)
    }

    fn register_with(&self, infinite: bool) -> String {
        let spec = EventSpec {
            reference: "VIN 1".into(),
            sender_bank: "steppe".into(),
            sender: key(SENDER).address(),
            payees: vec![
                Payee { bank: "steppe".into(), address: key(SELLER).address(), amount_tiyn: tiyn(900) },
                Payee { bank: "steppe".into(), address: key(FEES).address(), amount_tiyn: tiyn(100) },
            ],
            valid_until_ms: 1_000_000,
        };
        let registration = dtenge_oracle::service::Registration { infinite, ..Default::default() };
        self.oracle().register_event_with("vehicles", spec, registration, self.now_ms).unwrap()
    }

    fn hold(&self, event_id: &str, amount: u64, idem: Option<IdemKey>) -> dtenge_bank::Answer {
        self.bank().hold("900101300000", event_id, tiyn(amount), key(SELLER).address(), idem, self.now_ms)
    }

    fn quiet(&self) -> bool {
        self.net.in_flight() == 0
            && self.bank().outstanding() == (0, 0)
            && self.bank().holds_pending() == 0
            && self.central.as_ref().unwrap().outstanding() == (0, 0)
            && self.oracle().pending() == 0
    }

    fn run(&mut self, ms_max: u64) {
        let end_ms = self.now_ms + ms_max;
        while self.now_ms < end_ms {
            self.step();
            if self.quiet() {
                return;
            }
        }
    }

    /// Deliver and tick until `done` (at most 10 s of simulated time).
    fn run_until(&mut self, done: impl Fn(&Net) -> bool) {
        let end_ms = self.now_ms + 10_000;
        while !done(self) {
            assert!(self.now_ms < end_ms, "the awaited step never came");
            match self.net.pop_due(self.now_ms) {
                Some(envelope) => self.dispatch(envelope),
                None => self.advance(),
            }
        }
    }

    fn step(&mut self) {
        while let Some(envelope) = self.net.pop_due(self.now_ms) {
            self.dispatch(envelope);
        }
        self.advance();
    }

    fn advance(&mut self) {
        self.now_ms =
            self.net.next_due().map_or(self.now_ms + 50, |due| due.min(self.now_ms + 50)).max(self.now_ms + 1);
        self.net.set_now(self.now_ms);
        self.central.as_ref().unwrap().tick(self.now_ms);
        self.bank().tick(self.now_ms);
        self.oracle().tick(self.now_ms);
    }

    fn dispatch(&self, envelope: Envelope) {
        match envelope.to {
            RoleId::Notary => {
                if let Some(reply) = self.notary.as_ref().unwrap().handle(envelope) {
                    let _ = self.net.send(reply);
                }
            }
            RoleId::Central => self.central.as_ref().unwrap().handle(envelope, self.now_ms),
            RoleId::Oracle => self.oracle().handle(envelope, self.now_ms),
            RoleId::Bank(_) => self.bank().handle(envelope, self.now_ms),
            RoleId::Directory | RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. } => {}
        }
    }

    fn balance(&self, byte: u8) -> (u64, u64) {
        let client = self.bank().read(|n| n.client_of(&key(byte).address()).unwrap().to_string());
        let b = self.bank().read(|n| n.balance(&client).unwrap());
        (b.dt_tiyn.tiyn(), b.dt_reserved_tiyn.tiyn())
    }

    /// Held on the ledger (the bank's wallets) = held in the oracle's registry; circulation =
    /// liability; the wallet is the notary's unspent set; nothing reserved.
    fn assert_invariants(&self) {
        let held = self.bank().read(|n| n.held_by_event().unwrap());
        assert_eq!(held, self.oracle().held_by_event(), "the oracle's registry = the held DT");
        let wallets = self.bank().read(|n| n.total_dt().unwrap().tiyn());
        assert_eq!(wallets, self.central.as_ref().unwrap().dt_liability().tiyn(), "circulation = liability");
        let tokens: std::collections::HashSet<_> = self.bank().read(|n| n.token_ids().copied().collect());
        assert_eq!(tokens, self.notary.as_ref().unwrap().notary().unspent());
        for byte in [SENDER, SELLER, FEES] {
            assert_eq!(self.balance(byte).1, 0, "nothing reserved");
        }
    }
}

/// Succeeded, or failed with a code `expected` accepts.
fn ok_or<T>(result: &dtenge_core::Result<T>, expected: impl Fn(ErrorCode) -> bool) -> bool {
    result.as_ref().map_or_else(|e| expected(e.code), |_| true)
}

fn idem(name: &str) -> Option<IdemKey> {
    Some(IdemKey { key: name.into(), fingerprint: Hash32([7; 32]) })
}

#[test]
fn a_hold_is_attested_notarized_and_applied_and_its_release_pays_the_payees_once() {
    let mut n = Net::new(0);
    let id = n.register();
    let held = n.hold(&id, 1_000, idem("h-1"));
    n.run(10_000);
    let committed = held.try_recv().unwrap().unwrap();
    assert_eq!(n.oracle().event(&id).unwrap().hold_tx, Some(committed.tx_id));
    assert_eq!(n.bank().read(|b| b.held_by_event().unwrap())[&event_hash(&id)], tiyn(1_000));
    assert_eq!(n.balance(SENDER).0, 5_000, "held DT stays on the sender's account");
    let again = n.hold(&id, 1_000, idem("h-1"));
    assert_eq!(again.try_recv().unwrap().unwrap(), committed, "answered under its key");
    n.assert_invariants();

    n.oracle().confirm_event("vehicles", &id, Confirmation::Occurred { payouts: None }, n.now_ms).unwrap();
    n.run(10_000);
    assert!(n.quiet());
    let event = n.oracle().event(&id).unwrap();
    assert_eq!((event.status, event.released_tiyn), (EventStatus::Completed, tiyn(1_000)));
    assert_eq!((n.balance(SENDER).0, n.balance(SELLER).0, n.balance(FEES).0), (4_000, 900, 100));
    n.assert_invariants();
}

#[test]
fn holds_the_oracle_refuses_leave_nothing_held_or_reserved() {
    let mut n = Net::new(0);
    let id = n.register();
    // One at a time: each reserves the sender's one token until the oracle answers.
    let unknown = n.hold("EV0000099", 1_000, None);
    n.run(10_000);
    assert_eq!(unknown.try_recv().unwrap().unwrap_err().code, ErrorCode::NotFound);
    let mismatch = n.hold(&id, 999, None);
    n.run(10_000);
    assert_eq!(mismatch.try_recv().unwrap().unwrap_err().code, ErrorCode::MalformedInput);
    let stranger = n.bank().hold("900101300000", &id, tiyn(1_000), key(99).address(), None, n.now_ms);
    n.run(10_000);
    assert_eq!(stranger.try_recv().unwrap().unwrap_err().code, ErrorCode::RecipientNotAllowed);
    let too_much = n.hold(&id, 1_000_000, None);
    assert_eq!(too_much.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds, "refused by the bank");
    assert_eq!(n.oracle().event(&id).unwrap().status, EventStatus::Registered);
    assert_eq!((n.bank().holds_pending(), n.balance(SENDER)), (0, (5_000, 0)));
    // The client asks again, right: a new transaction (its own nonce), attested.
    let held = n.hold(&id, 1_000, None);
    n.run(10_000);
    assert!(held.try_recv().unwrap().is_ok());
    n.assert_invariants();
}

#[test]
fn a_hold_the_notary_refuses_is_given_up_at_the_oracle_and_the_event_can_be_held_again() {
    let mut n = Net::new(0);
    let id = n.register();
    n.notary.as_ref().unwrap().set_blocked("steppe", true);
    let refused = n.hold(&id, 1_000, idem("h-2"));
    n.run(10_000);
    assert_eq!(refused.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    assert!(n.quiet(), "the abandon reached the oracle and the row is gone");
    assert_eq!(n.oracle().event(&id).unwrap().pending, None);
    assert_eq!(n.balance(SENDER), (5_000, 0));
    n.notary.as_ref().unwrap().set_blocked("steppe", false);
    let held = n.hold(&id, 1_000, idem("h-2"));
    n.run(10_000);
    assert!(held.try_recv().unwrap().is_ok(), "the key was forgotten with the refusal");
    n.assert_invariants();
}

#[test]
fn a_release_the_notary_refuses_is_ordered_again_and_paid_once_when_it_can_commit() {
    let mut n = Net::new(0);
    let id = n.register();
    drop(n.hold(&id, 1_000, None));
    n.run(10_000);
    n.notary.as_ref().unwrap().set_blocked("steppe", true);
    n.oracle().confirm_event("vehicles", &id, Confirmation::Rejected, n.now_ms).unwrap();
    n.run_until(|n| n.oracle().stats().abandoned >= 1);
    n.notary.as_ref().unwrap().set_blocked("steppe", false);
    n.run(10_000);
    assert!(n.quiet());
    let event = n.oracle().event(&id).unwrap();
    assert_eq!((event.status, event.returned_tiyn), (EventStatus::Rejected, tiyn(1_000)));
    assert_eq!(n.balance(SENDER), (5_000, 0), "everything back, once");
    n.assert_invariants();
}

#[test]
fn a_crash_of_any_role_inside_any_commit_of_a_hold_or_release_recovers_from_the_stores() {
    let modes = [CrashMode::BeforeWrite, CrashMode::Torn { kept_bytes_permille: 500 }, CrashMode::AfterWrite];
    for role in ["steppe", "oracle", "notary"] {
        for mode in modes {
            for commits in 1..=3 {
                let mut n = Net::new(0);
                let id = n.register();
                n.disks[role].arm_crash(commits, mode);
                let held = n.hold(&id, 1_000, idem("h-3"));
                n.run_until(|n| n.disks[role].crashed() || n.quiet());
                if n.disks[role].crashed() {
                    n.crash_and_restart(role);
                }
                n.run(10_000);
                let answer = match held.try_recv() {
                    Ok(answer) if ok_or(&answer, |code| code != ErrorCode::StorageFailure) => answer,
                    _ => {
                        // The bank died with the answer (or answered that its store failed):
                        // the client asks again under its key.
                        let again = n.hold(&id, 1_000, idem("h-3"));
                        n.run(10_000);
                        again.try_recv().unwrap()
                    }
                };
                assert!(answer.is_ok(), "{role} {mode:?} {commits}: held {answer:?}");
                n.disks[role].arm_crash(commits, mode);
                let occurred = Confirmation::Occurred { payouts: None };
                if let Err(e) = n.oracle().confirm_event("vehicles", &id, occurred.clone(), n.now_ms) {
                    // The oracle died in the confirmation's commit: the provider asks again
                    // (confirmed already, when the commit was durable).
                    assert_eq!((role, e.code), ("oracle", ErrorCode::StorageFailure));
                    n.crash_and_restart(role);
                    let again = n.oracle().confirm_event("vehicles", &id, occurred, n.now_ms);
                    assert!(ok_or(&again, |code| code == ErrorCode::Conflict), "{again:?}");
                }
                n.run_until(|n| n.disks[role].crashed() || n.quiet());
                if n.disks[role].crashed() {
                    n.crash_and_restart(role);
                }
                n.run(10_000);
                assert!(n.quiet(), "{role} {mode:?} {commits}: everything arrived");
                assert_eq!(n.oracle().event(&id).unwrap().status, EventStatus::Completed, "{role} {mode:?} {commits}");
                assert_eq!((n.balance(SENDER).0, n.balance(SELLER).0), (4_000, 900), "{role} {mode:?} {commits}");
                n.assert_invariants();
            }
        }
    }
}

#[test]
fn holds_and_releases_complete_once_on_a_network_that_loses_and_duplicates() {
    let mut n = Net::new(4);
    let first = n.register();
    let second = n.register();
    let a = n.hold(&first, 1_000, idem("a"));
    n.run(20_000);
    let b = n.hold(&second, 1_000, idem("b"));
    n.run(20_000);
    assert!(a.try_recv().unwrap().is_ok() && b.try_recv().unwrap().is_ok());
    n.oracle().confirm_event("vehicles", &first, Confirmation::Occurred { payouts: None }, n.now_ms).unwrap();
    let partial = Some(vec![(key(SELLER).address(), tiyn(500))]);
    n.oracle().confirm_event("vehicles", &second, Confirmation::Occurred { payouts: partial }, n.now_ms).unwrap();
    n.run(20_000);
    assert!(n.quiet());
    assert_eq!((n.balance(SENDER).0, n.balance(SELLER).0, n.balance(FEES).0), (3_500, 1_400, 100));
    n.assert_invariants();
}

/// An infinite event: held, then an occurrence with any one role crashed inside any commit of
/// it; the occurrence pays once and keeps the rest held on the sender's account (reconciled
/// with the oracle), a top-up and a second occurrence go on from there, and a rejection
/// returns the rest. Every step is a signed record.
#[test]
fn a_crash_of_any_role_inside_any_commit_of_an_infinite_events_occurrence_pays_it_once_and_keeps_the_rest_held() {
    use dtenge_oracle::Action;
    let modes = [CrashMode::BeforeWrite, CrashMode::Torn { kept_bytes_permille: 500 }, CrashMode::AfterWrite];
    for role in ["steppe", "oracle", "notary"] {
        for mode in modes {
            for commits in 1..=3 {
                let mut n = Net::new(0);
                let id = n.register_with(true);
                let held = n.hold(&id, 2_500, idem("h-1"));
                n.run(10_000);
                assert!(held.try_recv().unwrap().is_ok());
                n.disks[role].arm_crash(commits, mode);
                let occurred = Confirmation::Occurred { payouts: None };
                if let Err(e) = n.oracle().confirm_event("vehicles", &id, occurred.clone(), n.now_ms) {
                    assert_eq!((role, e.code), ("oracle", ErrorCode::StorageFailure));
                    n.crash_and_restart(role);
                    // Not durable: asked again (durable: the release is on its way).
                    if n.oracle().event(&id).unwrap().status == EventStatus::Held {
                        n.oracle().confirm_event("vehicles", &id, occurred.clone(), n.now_ms).unwrap();
                    }
                }
                n.run_until(|n| n.disks[role].crashed() || n.quiet());
                if n.disks[role].crashed() {
                    n.crash_and_restart(role);
                }
                n.run(10_000);
                // A crash armed for a commit the occurrence did not reach is not for the next steps.
                n.disks[role].disarm();
                let what = format!("{role} {mode:?} {commits}");
                assert!(n.quiet(), "{what}: everything arrived");
                let event = n.oracle().event(&id).unwrap();
                assert_eq!((event.status, event.held_tiyn), (EventStatus::Held, tiyn(1_500)), "{what}");
                assert_eq!((n.balance(SENDER).0, n.balance(SELLER).0, n.balance(FEES).0), (4_000, 900, 100), "{what}");
                n.assert_invariants();
                // A top-up, a second occurrence from what is kept, and the rejection.
                let topped = n.hold(&id, 500, idem("h-2"));
                n.run(10_000);
                assert!(topped.try_recv().unwrap().is_ok(), "{what}");
                n.oracle().confirm_event("vehicles", &id, occurred, n.now_ms).unwrap();
                n.run(10_000);
                assert_eq!(n.oracle().event(&id).unwrap().held_tiyn, tiyn(1_000), "{what}");
                n.oracle().confirm_event("vehicles", &id, Confirmation::Rejected, n.now_ms).unwrap();
                n.run(10_000);
                let event = n.oracle().event(&id).unwrap();
                assert_eq!((event.status, event.returned_tiyn), (EventStatus::Rejected, tiyn(1_000)), "{what}");
                assert_eq!((n.balance(SENDER).0, n.balance(SELLER).0), (3_000, 1_800), "{what}");
                n.assert_invariants();
                let actions: Vec<Action> = n.oracle().records(&id).unwrap().iter().map(|r| r.body.action).collect();
                use Action::*;
                assert_eq!(actions, [Registered, Held, Released, Held, Released, Rejected], "{what}");
            }
        }
    }
}
