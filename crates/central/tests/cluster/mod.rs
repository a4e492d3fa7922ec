//! A small network for the central role's tests: central, the notary and one bank (Steppe), each
//! on its own simulated disk, on a network that loses, duplicates and delays (without a random
//! generator, so reproducibly), each restarted on its own. Shared by `emission.rs` and
//! `redemption.rs` (and the bank's `redemption.rs`, which includes this file by its path).

#![allow(dead_code)] // Each test file uses its part.

use dtenge_bank::{BankService, Directory, Genesis};
use dtenge_central::{BankKeys, CentralService};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::Amount;
use dtenge_node::{NodeKind, NodeMeta};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_store::{SimDisk, Store};
use dtenge_transport::{Fate, Faults, SimNetwork, Transport};
use dtenge_wire::{Envelope, RoleId};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

/// Loses every `lose_every`-th envelope and delays by a rotating amount: faults without a
/// random generator, reproducible.
pub struct Rotating {
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

pub struct NoPayees;

impl Directory for NoPayees {
    fn bank_of(&self, _: &Address) -> dtenge_core::Result<Option<String>> {
        Ok(None)
    }
}

pub struct Cluster {
    pub net: Arc<SimNetwork<Rotating>>,
    pub now_ms: u64,
    pub disks: BTreeMap<&'static str, SimDisk>,
    pub notary: Option<NotaryService>,
    pub central: Option<CentralService>,
    pub bank: Option<BankService>,
    /// Every envelope delivered, in order: what tests look for answers in.
    pub seen: Mutex<Vec<Envelope>>,
    /// What [`Cluster::credit`] put on Steppe's correspondent account.
    pub credited_tiyn: u64,
}

pub const NBK: u8 = 1;
pub const NOTARY: u8 = 3;
pub const STEPPE: u8 = 30;
pub const STEPPE_OWN: u8 = 31;

/// Noon in Astana (UTC+5) on a date `YYYY-MM-DD`, in Unix milliseconds.
pub fn astana_noon_ms(date: &str) -> u64 {
    let date: dtenge_core::calendar::Date = date.parse().unwrap();
    (date.days() as u64 * 86_400 + 7 * 3600) * 1000
}

/// Where the cluster's clock starts: Wednesday 2026-12-02, noon in Astana, an operational day
/// (the Unix epoch, 1970-01-01, is New Year's Day: emission and redemption do not run).
pub fn start_ms() -> u64 {
    astana_noon_ms("2026-12-02")
}

impl Cluster {
    pub fn new(lose_every: u64) -> Cluster {
        let disks = ["notary", "central", "steppe"].into_iter().map(|n| (n, SimDisk::new())).collect();
        let mut c = Cluster {
            net: Arc::new(SimNetwork::new(Rotating { n: 0, lose_every })),
            now_ms: start_ms(),
            disks,
            notary: None,
            central: None,
            bank: None,
            seen: Mutex::new(Vec::new()),
            credited_tiyn: 0,
        };
        c.net.set_now(c.now_ms);
        c.restart("notary");
        c.restart("central");
        c.restart("steppe");
        c
    }

    pub fn anchors() -> Anchors {
        Anchors {
            issuer: key(NBK).address(),
            central_bank: key(NBK).public_key(),
            oracle: key(2).public_key(),
            notary: key(NOTARY).public_key(),
            banks: [("steppe".to_string(), key(STEPPE).public_key())].into_iter().collect(),
            blocked: Default::default(),
        }
    }

    pub fn restart(&mut self, role: &str) {
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
                let steppe = BankKeys { own: key(STEPPE_OWN).address(), node_key: key(STEPPE).public_key() };
                let banks = [("steppe".to_string(), steppe)].into_iter().collect();
                let central = CentralService::open(store, key(NBK), key(NOTARY).public_key(), banks, net).unwrap();
                self.central = Some(central);
                self.net.up(&RoleId::Central);
            }
            _ => {
                self.bank = None;
                let store = Store::open_simulated(disk, &dtenge_bank::tables()).unwrap();
                let genesis = Genesis {
                    meta: NodeMeta { id: "steppe".into(), kind: NodeKind::Bank, name: "Steppe Bank".into() },
                    node_key: key(STEPPE).into(),
                    own_key: key(STEPPE_OWN),
                    custody: dtenge_node::Custody::new([77; 32]),
                    now_ms: start_ms(),
                };
                let bank = BankService::open(store, genesis, Cluster::anchors(), net, Arc::new(NoPayees)).unwrap();
                self.bank = Some(bank);
                self.net.up(&RoleId::Bank("steppe".into()));
            }
        }
    }

    pub fn central(&self) -> &CentralService {
        self.central.as_ref().unwrap()
    }

    pub fn bank_own_tiyn(&self) -> u64 {
        self.bank.as_ref().unwrap().read(|n| n.balance(dtenge_node::OWN_ACCOUNT).unwrap().dt_tiyn.tiyn())
    }

    /// Money arrives on Steppe's correspondent account from the RTGS.
    pub fn credit(&mut self, tiyn: u64) {
        self.central().credit_correspondent("steppe", Amount::from_tiyn(tiyn).unwrap(), self.now_ms).unwrap();
        self.credited_tiyn += tiyn;
    }

    /// Emit to Steppe and wait until its own account holds the DT.
    pub fn fund(&mut self, credit_tiyn: u64, emit_tiyn: u64) {
        self.credit(credit_tiyn);
        let answer = self.central().emit("steppe", Amount::from_tiyn(emit_tiyn).unwrap(), None, self.now_ms);
        self.run(10_000);
        answer.try_recv().unwrap().unwrap();
    }

    pub fn bank(&self) -> &BankService {
        self.bank.as_ref().unwrap()
    }

    pub fn notary(&self) -> &NotaryService {
        self.notary.as_ref().unwrap()
    }

    pub fn quiet(&self) -> bool {
        self.net.in_flight() == 0
            && self.central().outstanding() == (0, 0)
            && self.bank().outstanding() == (0, 0)
            && self.bank().redemptions_pending() == 0
    }

    /// DT the bank's own account has reserved by transactions in flight.
    pub fn bank_reserved_tiyn(&self) -> u64 {
        self.bank().read(|n| n.balance(dtenge_node::OWN_ACCOUNT).unwrap().dt_reserved_tiyn.tiyn())
    }

    /// The role named as the disks are, down (its memory gone) and opened again on its disk.
    pub fn crash_and_restart(&mut self, role: &str) {
        let role_id = match role {
            "central" => RoleId::Central,
            "notary" => RoleId::Notary,
            _ => RoleId::Bank("steppe".into()),
        };
        self.net.down(role_id);
        self.restart(role);
    }

    /// The refusals central sent the bank, in order.
    pub fn redeem_refusals(&self) -> Vec<dtenge_wire::RedeemRefused> {
        self.seen
            .lock()
            .iter()
            .filter_map(|e| match &e.message {
                dtenge_wire::Message::RedeemRefused(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The clock moved forward to noon (Astana) of `date`, with a tick of every role there.
    pub fn go_to(&mut self, date: &str) {
        let at_ms = astana_noon_ms(date);
        assert!(at_ms >= self.now_ms, "the clock goes forward only");
        self.now_ms = at_ms;
        self.net.set_now(self.now_ms);
        self.central().tick(self.now_ms);
        self.bank().tick(self.now_ms);
    }

    pub fn run(&mut self, ms_max: u64) {
        let end_ms = self.now_ms + ms_max;
        while self.now_ms < end_ms {
            while let Some(envelope) = self.net.pop_due(self.now_ms) {
                self.dispatch(envelope);
            }
            if self.quiet() {
                return;
            }
            self.advance();
        }
    }

    /// Deliver one envelope at a time, and tick, until `done` holds (at most 10 s of simulated
    /// time): to stop the network between two precise steps.
    pub fn run_until(&mut self, done: impl Fn(&Cluster) -> bool) {
        let end_ms = self.now_ms + 10_000;
        while !done(self) {
            assert!(self.now_ms < end_ms, "the awaited step never came");
            match self.net.pop_due(self.now_ms) {
                Some(envelope) => self.dispatch(envelope),
                None => self.advance(),
            }
        }
    }

    fn advance(&mut self) {
        self.now_ms =
            self.net.next_due().map_or(self.now_ms + 50, |due| due.min(self.now_ms + 50)).max(self.now_ms + 1);
        self.net.set_now(self.now_ms);
        self.central().tick(self.now_ms);
        self.bank.as_ref().unwrap().tick(self.now_ms);
    }

    pub fn dispatch(&self, envelope: Envelope) {
        self.seen.lock().push(envelope.clone());
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

    /// DT in circulation (the bank's wallets) = the ABS DT liability = the registry's issued minus
    /// redeemed, the bank's tokens are the notary's unspent set, and its correspondent account
    /// holds what was credited minus what was issued plus what was redeemed.
    pub fn assert_invariants(&self) {
        let liability = self.central().dt_liability().tiyn();
        let registry = self.central().circulation().tiyn();
        let totals = dtenge_central::Totals::of(&self.central().registry(), Some("steppe"));
        let corr = self.central().abs_balance("corr:steppe");
        let credited = self.credited_tiyn as i64;
        assert_eq!(corr, credited - totals.issued.tiyn() as i64 + totals.redeemed.tiyn() as i64, "corr:steppe");
        let wallets = self.bank.as_ref().unwrap().read(|n| n.total_dt().unwrap().tiyn());
        assert_eq!((wallets, registry), (liability, liability), "circulation = registry = DT liability");
        let tokens: std::collections::HashSet<_> =
            self.bank.as_ref().unwrap().read(|n| n.token_ids().copied().collect());
        assert_eq!(tokens, self.notary.as_ref().unwrap().notary().unspent());
    }
}

pub fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}
