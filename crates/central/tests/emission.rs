//! Emission across roles: central, the notary and a bank, each on its own simulated disk, on a
//! network that loses, duplicates and delays, each restarted on its own.

use dtenge_bank::{BankService, Directory, Genesis};
use dtenge_central::{CentralService, IdemKey};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{Address, Hash32, SecretKey};
use dtenge_core::{Amount, ErrorCode};
use dtenge_node::{NodeKind, NodeMeta};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{Fate, Faults, SimNetwork, Transport};
use dtenge_wire::{Envelope, RoleId};
use std::collections::BTreeMap;
use std::sync::Arc;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

/// Loses every `lose_every`-th envelope and delays by a rotating amount: faults without a
/// random generator, reproducible.
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

struct NoPayees;

impl Directory for NoPayees {
    fn bank_of(&self, _: &Address) -> dtenge_core::Result<Option<String>> {
        Ok(None)
    }
}

struct Cluster {
    net: Arc<SimNetwork<Rotating>>,
    now_ms: u64,
    disks: BTreeMap<&'static str, SimDisk>,
    notary: Option<NotaryService>,
    central: Option<CentralService>,
    bank: Option<BankService>,
}

const NBK: u8 = 1;
const NOTARY: u8 = 3;
const STEPPE: u8 = 30;
const STEPPE_OWN: u8 = 31;

impl Cluster {
    fn new(lose_every: u64) -> Cluster {
        let disks = ["notary", "central", "steppe"].into_iter().map(|n| (n, SimDisk::new())).collect();
        let mut c = Cluster {
            net: Arc::new(SimNetwork::new(Rotating { n: 0, lose_every })),
            now_ms: 0,
            disks,
            notary: None,
            central: None,
            bank: None,
        };
        c.restart("notary");
        c.restart("central");
        c.restart("steppe");
        c
    }

    fn anchors() -> Anchors {
        Anchors {
            issuer: key(NBK).address(),
            central_bank: key(NBK).public_key(),
            oracle: key(2).public_key(),
            notary: key(NOTARY).public_key(),
            banks: [("steppe".to_string(), key(STEPPE).public_key())].into_iter().collect(),
            blocked: Default::default(),
        }
    }

    fn restart(&mut self, role: &str) {
        let disk = self.disks[role].clone();
        let net: Arc<dyn Transport> = self.net.clone();
        match role {
            "notary" => {
                self.notary = None;
                let store = Store::open_simulated(disk, &dtenge_notary::service::tables()).unwrap();
                let a = Cluster::anchors();
                let senders = Senders { central_bank: a.central_bank, banks: a.banks, blocked: a.blocked };
                self.notary = Some(NotaryService::open(store, key(NOTARY), senders).unwrap());
                self.net.up(&RoleId::Notary);
            }
            "central" => {
                self.central = None;
                let store = Store::open_simulated(disk, &dtenge_central::tables()).unwrap();
                let banks = [("steppe".to_string(), key(STEPPE_OWN).address())].into_iter().collect();
                let central = CentralService::open(store, key(NBK), key(NOTARY).public_key(), banks, net).unwrap();
                self.central = Some(central);
                self.net.up(&RoleId::Central);
            }
            _ => {
                self.bank = None;
                let store = Store::open_simulated(disk, &dtenge_bank::tables()).unwrap();
                let genesis = Genesis {
                    meta: NodeMeta { id: "steppe".into(), kind: NodeKind::Bank, name: "Steppe Bank".into() },
                    node_key: key(STEPPE),
                    own_key: key(STEPPE_OWN),
                    now_ms: 0,
                };
                let bank = BankService::open(store, genesis, Cluster::anchors(), net, Arc::new(NoPayees)).unwrap();
                self.bank = Some(bank);
                self.net.up(&RoleId::Bank("steppe".into()));
            }
        }
    }

    fn central(&self) -> &CentralService {
        self.central.as_ref().unwrap()
    }

    fn bank_own_tiyn(&self) -> u64 {
        self.bank.as_ref().unwrap().read(|n| n.balance(dtenge_node::OWN_ACCOUNT).unwrap().dt_tiyn.tiyn())
    }

    fn quiet(&self) -> bool {
        self.net.in_flight() == 0
            && self.central().outstanding() == (0, 0)
            && self.bank.as_ref().unwrap().outstanding() == (0, 0)
    }

    fn run(&mut self, ms_max: u64) {
        let end_ms = self.now_ms + ms_max;
        while self.now_ms < end_ms {
            while let Some(envelope) = self.net.pop_due(self.now_ms) {
                self.dispatch(envelope);
            }
            if self.quiet() {
                return;
            }
            self.now_ms =
                self.net.next_due().map_or(self.now_ms + 50, |due| due.min(self.now_ms + 50)).max(self.now_ms + 1);
            self.net.set_now(self.now_ms);
            self.central().tick(self.now_ms);
            self.bank.as_ref().unwrap().tick(self.now_ms);
        }
    }

    fn dispatch(&self, envelope: Envelope) {
        match envelope.to {
            RoleId::Notary => {
                if let Some(reply) = self.notary.as_ref().unwrap().handle(envelope) {
                    let _ = self.net.send(reply);
                }
            }
            RoleId::Central => self.central().handle(envelope, self.now_ms),
            RoleId::Bank(_) => self.bank.as_ref().unwrap().handle(envelope, self.now_ms),
            _ => {}
        }
    }

    /// DT in circulation (the bank's wallets) = the ABS DT liability = the registry's sum, and
    /// the bank's tokens are the notary's unspent set.
    fn assert_invariants(&self) {
        let liability = self.central().dt_liability().tiyn();
        let registry: u64 = self.central().registry().iter().map(|e| e.amount.tiyn()).sum();
        let wallets = self.bank.as_ref().unwrap().read(|n| n.total_dt().unwrap().tiyn());
        assert_eq!((wallets, registry), (liability, liability), "circulation = registry = DT liability");
        let tokens: std::collections::HashSet<_> =
            self.bank.as_ref().unwrap().read(|n| n.token_ids().copied().collect());
        assert_eq!(tokens, self.notary.as_ref().unwrap().notary().unspent());
    }
}

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

#[test]
fn an_emission_posts_in_the_abs_enters_the_registry_and_reaches_the_bank() {
    let mut c = Cluster::new(0);
    c.central().credit_correspondent("steppe", tiyn(1_000_000), 0).unwrap();
    let answer = c.central().emit("steppe", tiyn(250_000), None, c.now_ms);
    c.run(10_000);
    let emission = answer.try_recv().unwrap().unwrap();
    assert_eq!((emission.bank.as_str(), emission.amount, emission.number), ("steppe", tiyn(250_000), 0));
    assert_eq!(c.bank_own_tiyn(), 250_000);
    assert_eq!(c.central().abs_balance("corr:steppe"), 750_000);
    c.assert_invariants();
}

#[test]
fn emissions_beyond_the_correspondent_account_are_refused_also_while_others_are_in_flight() {
    let mut c = Cluster::new(0);
    c.central().credit_correspondent("steppe", tiyn(1_000), 0).unwrap();
    let first = c.central().emit("steppe", tiyn(600), None, c.now_ms);
    // Not posted yet, but reserved: a second emission cannot take the same money.
    let second = c.central().emit("steppe", tiyn(600), None, c.now_ms);
    assert_eq!(second.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    let unknown = c.central().emit("nowhere", tiyn(1), None, c.now_ms);
    assert_eq!(unknown.try_recv().unwrap().unwrap_err().code, ErrorCode::UnknownAccount);
    c.run(10_000);
    assert!(first.try_recv().unwrap().is_ok());
    assert_eq!(c.bank_own_tiyn(), 600);
    c.assert_invariants();
}

#[test]
fn an_idempotency_key_emits_once_and_another_request_under_it_is_refused() {
    let mut c = Cluster::new(0);
    c.central().credit_correspondent("steppe", tiyn(10_000), 0).unwrap();
    let idem = |f: u8| Some(IdemKey { key: "emit-1".into(), fingerprint: Hash32([f; 32]) });
    let first = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    let again = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    c.run(10_000);
    let emission = first.try_recv().unwrap().unwrap();
    assert_eq!(again.try_recv().unwrap().unwrap(), emission);
    let after = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    assert_eq!(after.try_recv().unwrap().unwrap(), emission);
    let other = c.central().emit("steppe", tiyn(5_000), idem(2), c.now_ms);
    assert_eq!(other.try_recv().unwrap().unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(c.bank_own_tiyn(), 4_000);
    c.assert_invariants();
}

#[test]
fn central_restarted_between_the_notary_and_its_posting_posts_exactly_once() {
    let mut c = Cluster::new(0);
    c.central().credit_correspondent("steppe", tiyn(10_000), 0).unwrap();
    let _lost = c.central().emit("steppe", tiyn(3_000), None, c.now_ms);
    // Central dies before the notary's answer arrives: the issue is committed at the notary,
    // not yet posted.
    c.net.down(RoleId::Central);
    c.run(100);
    assert_eq!(c.central().dt_liability(), Amount::ZERO);
    c.restart("central");
    assert_eq!(c.central().outstanding().0, 1, "the emission is still in central's outbox");
    c.run(10_000);
    assert_eq!(c.central().dt_liability(), tiyn(3_000));
    assert_eq!(c.bank_own_tiyn(), 3_000);
    assert_eq!(c.central().registry().len(), 1);
    c.assert_invariants();
}

#[test]
fn a_torn_posting_and_crashes_of_each_role_under_lost_and_duplicated_messages_keep_circulation_equal_to_the_liability()
{
    let mut c = Cluster::new(7);
    c.central().credit_correspondent("steppe", tiyn(1_000_000), 0).unwrap();
    let mut answers = Vec::new();
    let mut restarts = 0;
    for round in 0..12u64 {
        answers.push(c.central().emit("steppe", tiyn(1_000 + round), None, c.now_ms));
        match round % 4 {
            0 => c.disks["central"].arm_crash(2, CrashMode::Torn { kept_bytes_permille: 300 }),
            1 => c.disks["steppe"].arm_crash(1, CrashMode::AfterWrite),
            2 => c.disks["notary"].arm_crash(1, CrashMode::BeforeWrite),
            _ => {}
        }
        c.run(2_000);
        for role in ["central", "steppe", "notary"] {
            if c.disks[role].crashed() {
                let role_id = match role {
                    "central" => RoleId::Central,
                    "notary" => RoleId::Notary,
                    _ => RoleId::Bank("steppe".into()),
                };
                c.net.down(role_id);
                c.restart(role);
                restarts += 1;
            }
            c.disks[role].disarm();
        }
        c.run(20_000);
        assert!(c.quiet(), "round {round}: everything arrived");
        c.assert_invariants();
    }
    assert!(restarts >= 6, "the crashes hit ({restarts} restarts)");
    let emitted: u64 = c.central().registry().iter().map(|e| e.amount.tiyn()).sum();
    assert!(emitted >= 1_000, "emissions went through");
    let answered = answers.iter().filter(|a| matches!(a.try_recv(), Ok(Ok(_)))).count();
    assert!(answered >= 6, "most callers were answered ({answered}); the rest died with central");
}

#[test]
fn a_block_reaches_the_notary_and_the_bank_over_a_lossy_network_and_its_lift_too() {
    let mut c = Cluster::new(3);
    c.central().credit_correspondent("steppe", tiyn(100_000), 0).unwrap();
    let _ = c.central().emit("steppe", tiyn(50_000), None, c.now_ms);
    c.run(10_000);
    assert_eq!(c.bank_own_tiyn(), 50_000);
    c.central().set_blocked("steppe", true, "licence suspended", c.now_ms).unwrap();
    c.run(10_000);
    assert!(c.quiet(), "the decision reached every role");
    let refused = c.central().emit("steppe", tiyn(1_000), None, c.now_ms);
    assert_eq!(refused.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    // The bank pays one of its own accounts: the notary spends nothing a blocked bank sends.
    let pay = |c: &Cluster| {
        let to = key(STEPPE_OWN).address();
        let request =
            dtenge_bank::Request::Pay { client_id: dtenge_node::OWN_ACCOUNT.into(), payees: vec![(to, tiyn(1_000))] };
        let bank = c.bank.as_ref().unwrap();
        let answer = bank.submit(request, None);
        bank.flush(c.now_ms);
        answer
    };
    let answer = pay(&c);
    c.run(10_000);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    // Restarts keep the decision.
    c.restart("notary");
    c.restart("steppe");
    let answer = pay(&c);
    c.run(10_000);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    c.central().set_blocked("steppe", false, "", c.now_ms).unwrap();
    c.run(10_000);
    let answer = pay(&c);
    c.run(10_000);
    assert!(answer.try_recv().unwrap().is_ok());
    assert_eq!(c.bank_own_tiyn(), 50_000, "paid to itself: nothing changed hands");
    c.assert_invariants();
}
