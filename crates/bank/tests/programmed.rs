//! Programmed spends (marking, contracts) across the bank, the oracle and the notary (central
//! funds the bank): each on its own simulated disk, on a network that loses, duplicates and
//! delays without a random generator. The bank's clients, all at Steppe and custodial: a
//! sender (the marking's initiator, the contract's sender), the marking's two levels (the
//! first is the contract's recipient) and an outsider.

use dtenge_bank::{AccountKey, BankService, Directory, Genesis, IdemKey, Request};
use dtenge_central::{BankKeys, CentralService};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{Address, Hash32, SecretKey};
use dtenge_core::party::Party;
use dtenge_core::token::{marking_hash, Policy};
use dtenge_core::{Amount, ErrorCode};
use dtenge_node::{Account, ClientKind, NodeKind, NodeMeta, OWN_ACCOUNT};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_oracle::contract::contract_hash;
use dtenge_oracle::service::OracleService;
use dtenge_oracle::{ContractSpec, Credential, InvoiceSpec, InvoiceStatus, Level, MarkingSpec, ProviderKind};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{Fate, Faults, SimNetwork, Transport};
use dtenge_wire::{Envelope, RoleId, SpendKind};
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
/// The marking's initiator and the contract's sender.
const SENDER: u8 = 40;
/// Level 1 of the marking, and the contract's recipient.
const FIRST: u8 = 41;
/// Level 2 (the last) of the marking.
const SECOND: u8 = 42;
const OUTSIDER: u8 = 43;
const CLIENTS: [u8; 4] = [SENDER, FIRST, SECOND, OUTSIDER];
const PORTAL_TOKEN: &str = "portal-token-0123456789abcdef0123456789ab";

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
        for (n, byte) in CLIENTS.into_iter().enumerate() {
            let account = Account {
                client_id: format!("90010130000{n}"),
                node_id: "steppe".into(),
                kind: ClientKind::LegalEntity,
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

    fn party(&self, byte: u8) -> Party {
        Party { bank: "steppe".into(), client_id: client(byte), address: key(byte).address() }
    }

    /// A marking of the sender's: the first client at level 1 (up to 3,000), the second at
    /// level 2, the last (up to 1,000).
    fn marking(&self) -> String {
        let levels = vec![
            Level { recipients: vec![self.party(FIRST)], limit_tiyn: tiyn(3_000) },
            Level { recipients: vec![self.party(SECOND)], limit_tiyn: tiyn(1_000) },
        ];
        let spec = MarkingSpec { initiator: self.party(SENDER), reference: "road repair".into(), levels };
        self.oracle().create_marking(spec, self.now_ms).unwrap().id
    }

    /// A contract from the sender to the first client: 2,000 to transfer, 500 to withdraw.
    fn contract(&self) -> String {
        let oracle = self.oracle();
        if oracle.contract("GZ-1").is_err() {
            let _ = oracle.register_provider("portal", "Portal", ProviderKind::ContractPortal, PORTAL_TOKEN, 0);
            let spec = ContractSpec {
                number: "GZ-1".into(),
                sender: self.party(SENDER),
                recipient: self.party(FIRST),
                max_transfer_tiyn: tiyn(2_000),
                max_fiat_tiyn: tiyn(500),
                valid_until_unix_ms: 10_000_000,
                funded_by: None,
            };
            oracle.register_contract(Credential::Token(PORTAL_TOKEN), spec, self.now_ms).unwrap();
        }
        "GZ-1".into()
    }

    fn marked(&self, marking_id: &str, from: u8, to: u8, amount: u64, idem: Option<IdemKey>) -> dtenge_bank::Answer {
        let kind =
            SpendKind::MarkedTransfer { marking_id: marking_id.into(), to: self.party(to), amount: tiyn(amount) };
        self.bank().spend(&client(from), kind, idem, self.now_ms)
    }

    fn withdraw(&self, amount: u64, idem: Option<IdemKey>) -> dtenge_bank::Answer {
        let kind = SpendKind::ContractWithdrawal {
            contract: "GZ-1".into(),
            amount: tiyn(amount),
            bank_account: self.party(FIRST),
        };
        self.bank().spend(&client(FIRST), kind, idem, self.now_ms)
    }

    fn quiet(&self) -> bool {
        self.net.in_flight() == 0
            && self.bank().outstanding() == (0, 0)
            && self.bank().spends_pending() == 0
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

    /// DT of one kind a client may spend.
    fn dt(&self, byte: u8, policy: &Policy) -> u64 {
        self.bank().read(|n| n.available(&client(byte), policy).unwrap().tiyn())
    }

    /// Circulation = liability; the wallet is the notary's unspent set; nothing reserved;
    /// nothing waits at the oracle.
    fn assert_invariants(&self) {
        let wallets = self.bank().read(|n| n.total_dt().unwrap().tiyn());
        assert_eq!(wallets, self.central.as_ref().unwrap().dt_liability().tiyn(), "circulation = liability");
        let tokens: std::collections::HashSet<_> = self.bank().read(|n| n.token_ids().copied().collect());
        assert_eq!(tokens, self.notary.as_ref().unwrap().notary().unspent());
        for byte in CLIENTS {
            let reserved = self.bank().read(|n| n.balance(&client(byte)).unwrap().dt_reserved_tiyn);
            assert_eq!(reserved, Amount::ZERO, "nothing reserved");
        }
        assert_eq!(self.oracle().spends_in_flight(), 0);
    }
}

fn client(byte: u8) -> String {
    let n = CLIENTS.iter().position(|b| *b == byte).expect("a client of the test");
    format!("90010130000{n}")
}

/// Succeeded, or failed with a code `expected` accepts.
fn ok_or<T>(result: &dtenge_core::Result<T>, expected: impl Fn(ErrorCode) -> bool) -> bool {
    result.as_ref().map_or_else(|e| expected(e.code), |_| true)
}

fn idem(name: &str) -> Option<IdemKey> {
    Some(IdemKey { key: name.into(), fingerprint: Hash32([7; 32]) })
}

fn level(marking_id: &str, level: u8) -> Policy {
    Policy::Marked { marking: marking_hash(marking_id), level }
}

#[test]
fn a_marked_transfer_is_planned_attested_notarized_and_applied_once_down_two_levels() {
    let mut n = Net::new(0);
    let id = n.marking();
    let first = n.marked(&id, SENDER, FIRST, 2_000, idem("m-1"));
    n.run(10_000);
    let committed = first.try_recv().unwrap().unwrap();
    assert_eq!(n.dt(FIRST, &level(&id, 1)), 2_000);
    let again = n.marked(&id, SENDER, FIRST, 2_000, idem("m-1"));
    assert_eq!(again.try_recv().unwrap().unwrap(), committed, "answered under its key, not paid twice");
    let second = n.marked(&id, FIRST, SECOND, 600, None);
    n.run(10_000);
    second.try_recv().unwrap().unwrap();
    assert_eq!((n.dt(FIRST, &level(&id, 1)), n.dt(SECOND, &Policy::Standard)), (1_400, 600));
    let marking = n.oracle().marking(&id).unwrap();
    assert_eq!(marking.moves.len(), 2);
    assert_eq!(marking.moves[0].body.tx_id, committed.tx_id);
    assert_eq!(marking.moved_tiyn, vec![tiyn(2_000), tiyn(600)]);
    assert!(n.quiet());
    n.assert_invariants();
}

#[test]
fn spends_the_oracle_or_the_bank_refuses_leave_nothing_moved_or_reserved() {
    let mut n = Net::new(0);
    let id = n.marking();
    let outside = n.marked(&id, SENDER, OUTSIDER, 100, None);
    n.run(10_000);
    assert_eq!(outside.try_recv().unwrap().unwrap_err().code, ErrorCode::RecipientNotAllowed);
    let skip = n.marked(&id, SENDER, SECOND, 100, None);
    n.run(10_000);
    assert_eq!(skip.try_recv().unwrap().unwrap_err().code, ErrorCode::WrongLevel);
    let over = n.marked(&id, SENDER, FIRST, 3_001, None);
    n.run(10_000);
    assert_eq!(over.try_recv().unwrap().unwrap_err().code, ErrorCode::LimitExceeded);
    let unknown = n.marked("MK0000099", SENDER, FIRST, 100, None);
    n.run(10_000);
    assert_eq!(unknown.try_recv().unwrap().unwrap_err().code, ErrorCode::NotFound);
    // Within the limit but beyond the payer's marked DT: the oracle plans, the bank cannot build.
    let empty = n.marked(&id, FIRST, SECOND, 100, None);
    n.run(10_000);
    assert_eq!(empty.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    assert_eq!(n.dt(SENDER, &Policy::Standard), 5_000, "nothing moved");
    let contract = n.contract();
    let pay = SpendKind::ContractPayment { contract: contract.clone(), amount: tiyn(6_000) };
    let too_much = n.bank().spend(&client(SENDER), pay, None, n.now_ms);
    n.run(10_000);
    assert_eq!(too_much.try_recv().unwrap().unwrap_err().code, ErrorCode::LimitExceeded);
    let withdrawn = n.withdraw(100, None);
    n.run(10_000);
    assert_eq!(withdrawn.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    assert_eq!(n.oracle().marking(&id).unwrap().moves.len(), 0);
    assert!(n.quiet());
    n.assert_invariants();
    // The client asks again, right: a new transaction (its own nonce), attested.
    let right = n.marked(&id, SENDER, FIRST, 1_000, None);
    n.run(10_000);
    assert!(right.try_recv().unwrap().is_ok());
    n.assert_invariants();
}

#[test]
fn a_spend_the_notary_refuses_is_given_up_at_the_oracle_and_its_subject_is_free_again() {
    let mut n = Net::new(0);
    let id = n.marking();
    n.notary.as_ref().unwrap().set_blocked("steppe", true);
    let refused = n.marked(&id, SENDER, FIRST, 1_000, idem("m-2"));
    n.run(10_000);
    assert_eq!(refused.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    assert!(n.quiet(), "the abandon reached the oracle and the row is gone");
    assert_eq!(n.oracle().stats().abandoned, 1);
    assert_eq!((n.dt(SENDER, &Policy::Standard), n.oracle().marking(&id).unwrap().moves.len()), (5_000, 0));
    n.notary.as_ref().unwrap().set_blocked("steppe", false);
    let moved = n.marked(&id, SENDER, FIRST, 1_000, idem("m-2"));
    n.run(10_000);
    assert!(moved.try_recv().unwrap().is_ok(), "the key was forgotten with the refusal");
    assert_eq!(n.oracle().marking(&id).unwrap().moved_tiyn[0], tiyn(1_000));
    n.assert_invariants();
}

#[test]
fn a_second_spend_of_a_subject_waits_for_the_first_to_be_applied() {
    let mut n = Net::new(0);
    let id = n.marking();
    let first = n.marked(&id, SENDER, FIRST, 1_000, None);
    // The first is attested (its marking waits for its certificate) before the second is planned.
    n.run_until(|n| n.oracle().spends_in_flight() == 1);
    let second = n.marked(&id, SENDER, FIRST, 1_000, None);
    n.run(10_000);
    assert!(first.try_recv().unwrap().is_ok());
    assert!(second.try_recv().unwrap().is_ok(), "its plan asked for again once the first was applied");
    assert_eq!(n.oracle().marking(&id).unwrap().moved_tiyn[0], tiyn(2_000));
    // A third that would exceed the level's limit once the others are applied: refused then.
    let third = n.marked(&id, SENDER, FIRST, 1_001, None);
    n.run(10_000);
    assert_eq!(third.try_recv().unwrap().unwrap_err().code, ErrorCode::LimitExceeded);
    n.assert_invariants();
}

#[test]
fn a_spend_whose_subject_stays_busy_is_answered_request_in_progress_after_its_retries() {
    let mut n = Net::new(0);
    let id = n.marking();
    // The first is attested, then waits for the notary, which is unreachable.
    n.net.down(RoleId::Notary);
    let first = n.marked(&id, SENDER, FIRST, 1_000, None);
    n.run_until(|n| n.oracle().spends_in_flight() == 1);
    let second = n.marked(&id, SENDER, FIRST, 1_000, None);
    // Its plan waits at the oracle; the bank asks again every RESEND_AFTER_MS (and a tick)
    // until it gives up. Never quiet meanwhile (the first waits): runs the whole time.
    let retries_ms = u64::from(dtenge_bank::PLAN_RETRIES_MAX + 1) * (dtenge_bank::RESEND_AFTER_MS + 50);
    n.run(retries_ms);
    assert_eq!(second.try_recv().unwrap().unwrap_err().code, ErrorCode::RequestInProgress);
    assert_eq!(n.bank().spends_pending(), 1, "the first waits for the notary");
    n.net.up(&RoleId::Notary);
    n.run(10_000);
    assert!(first.try_recv().unwrap().is_ok());
    assert_eq!(n.oracle().marking(&id).unwrap().moved_tiyn[0], tiyn(1_000));
    n.assert_invariants();
}

#[test]
fn a_crash_of_any_role_inside_any_commit_of_a_spend_recovers_from_the_stores() {
    let modes = [CrashMode::BeforeWrite, CrashMode::Torn { kept_bytes_permille: 500 }, CrashMode::AfterWrite];
    let mut crashes = 0;
    for role in ["steppe", "oracle", "notary"] {
        for mode in modes {
            for commits in 1..=3 {
                let what = format!("{role} {mode:?} {commits}");
                let mut n = Net::new(0);
                let id = n.marking();
                n.contract();
                let pay = SpendKind::ContractPayment { contract: "GZ-1".into(), amount: tiyn(1_000) };
                let paid = n.bank().spend(&client(SENDER), pay, None, n.now_ms);
                n.run(10_000);
                paid.try_recv().unwrap().unwrap();

                n.disks[role].arm_crash(commits, mode);
                let moved = n.marked(&id, SENDER, FIRST, 2_000, idem("m-3"));
                crashes += usize::from(recover(&mut n, role));
                let answer =
                    answered_or_asked_again(&mut n, moved, |n| n.marked(&id, SENDER, FIRST, 2_000, idem("m-3")));
                assert!(answer.is_ok(), "{what}: moved {answer:?}");

                n.disks[role].arm_crash(commits, mode);
                let withdrawn = n.withdraw(400, idem("w-3"));
                crashes += usize::from(recover(&mut n, role));
                let answer = answered_or_asked_again(&mut n, withdrawn, |n| n.withdraw(400, idem("w-3")));
                assert!(answer.is_ok(), "{what}: withdrawn {answer:?}");

                n.run(10_000);
                assert!(n.quiet(), "{what}: everything arrived");
                assert_eq!(n.dt(FIRST, &level(&id, 1)), 2_000, "{what}");
                let fiat = n.bank().read(|b| b.balance(&client(FIRST)).unwrap().fiat_tiyn);
                assert_eq!(fiat, tiyn(400), "{what}: bank money credited once");
                let contract_dt = Policy::Marked { marking: contract_hash("GZ-1"), level: 1 };
                assert_eq!(n.dt(FIRST, &contract_dt), 600, "{what}");
                let marking = n.oracle().marking(&id).unwrap();
                assert_eq!((marking.moves.len(), marking.moved_tiyn[0]), (1, tiyn(2_000)), "{what}");
                let contract = n.oracle().contract("GZ-1").unwrap();
                assert_eq!((contract.uses.len(), contract.withdrawn_tiyn), (2, tiyn(400)), "{what}");
                n.assert_invariants();
            }
        }
    }
    // Every role, in every mode, crashed at least in its first commit of each flow (the bank
    // writes a spend's row and its certificate, the oracle its decision and the delivery, the
    // notary its commit).
    assert!(crashes >= 3 * 3 * 2, "{crashes} crashes");
}

/// Run until the armed role crashed (then restart it) or everything is quiet; did it crash?
fn recover(n: &mut Net, role: &str) -> bool {
    n.run_until(|n| n.disks[role].crashed() || n.quiet());
    let crashed = n.disks[role].crashed();
    if crashed {
        n.crash_and_restart(role);
    }
    n.run(10_000);
    crashed
}

/// The answer, or, when the bank died with it (or answered that its store failed), the answer
/// to the client asking again under its key.
fn answered_or_asked_again(
    n: &mut Net,
    answer: dtenge_bank::Answer,
    again: impl Fn(&Net) -> dtenge_bank::Answer,
) -> dtenge_core::Result<dtenge_bank::Committed> {
    match answer.try_recv() {
        Ok(answer) if ok_or(&answer, |code| code != ErrorCode::StorageFailure) => answer,
        _ => {
            let again = again(n);
            n.run(10_000);
            again.try_recv().unwrap()
        }
    }
}

#[test]
fn marked_transfers_an_invoice_and_its_vat_complete_once_on_a_network_that_loses_and_duplicates() {
    let mut n = Net::new(4);
    let id = n.marking();
    let a = n.marked(&id, SENDER, FIRST, 1_500, idem("a"));
    n.run(20_000);
    let b = n.marked(&id, FIRST, SECOND, 700, idem("b"));
    n.run(20_000);
    assert!(a.try_recv().unwrap().is_ok() && b.try_recv().unwrap().is_ok());
    assert_eq!(n.oracle().marking(&id).unwrap().moves.len(), 2);

    // The sender pays the second client's e-invoice; the second pays the VAT to the tax
    // account (the outsider's, here).
    let esf = "esf-token-0123456789abcdef0123456789abcdef";
    n.oracle().register_provider("esf", "ESF", ProviderKind::TaxAuthority, esf, 0).unwrap();
    n.oracle().set_tax_account(Credential::Token(esf), n.party(OUTSIDER)).unwrap();
    n.oracle().register_vat_payer(Credential::Token(esf), n.party(SECOND)).unwrap();
    let invoice = InvoiceSpec {
        id: "ESF-1".into(),
        seller: n.party(SECOND),
        buyer: n.party(SENDER),
        net_tiyn: tiyn(1_000),
        vat_tiyn: tiyn(120),
    };
    n.oracle().register_invoice(Credential::Token(esf), invoice, n.now_ms).unwrap();
    let pay =
        SpendKind::InvoicePayment { invoice_id: "ESF-1".into(), amount: tiyn(1_120), vat_available: Amount::ZERO };
    let paid = n.bank().spend(&client(SENDER), pay, idem("c"), n.now_ms);
    n.run(20_000);
    assert!(paid.try_recv().unwrap().is_ok());
    let vat = n.bank().spend(&client(SECOND), SpendKind::VatPayment { amount: tiyn(120) }, idem("d"), n.now_ms);
    n.run(20_000);
    assert!(vat.try_recv().unwrap().is_ok());
    assert!(n.quiet());
    assert_eq!(n.oracle().invoice("ESF-1").unwrap().status, InvoiceStatus::Paid);
    assert_eq!(n.oracle().vat_payments().len(), 1);
    assert_eq!((n.dt(SENDER, &Policy::Standard), n.dt(FIRST, &level(&id, 1))), (2_380, 800));
    assert_eq!((n.dt(SECOND, &Policy::Standard), n.dt(SECOND, &Policy::Vat)), (1_700, 0));
    assert_eq!(n.dt(OUTSIDER, &Policy::Standard), 120);
    n.assert_invariants();
}
