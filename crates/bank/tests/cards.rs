//! Cards and vouchers across roles: the notary, central (the ABS), the directory and two banks
//! (Steppe, the buyers' bank; Sapa, the merchants'), each on its own simulated disk, on a
//! network that loses, duplicates and delays from a seed; banks and central crashed inside
//! their commits and restarted from their disks. What must hold: every purchase, refund,
//! withdrawal and voucher event moves its DT once, the merchant's bank money once and each
//! correspondent account once.

use dtenge_bank::{
    BankService, CardMode, CardRequest, Committed, Directory, Found, Genesis, IdemKey, Refunding, Request,
    VoucherEvent, VoucherProgramRequest, Who, RESEND_AFTER_MS,
};
use dtenge_central::{BankKeys, CentralService};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{Address, Hash32, SecretKey};
use dtenge_core::{Amount, ErrorCode, Result};
use dtenge_directory::DirectoryService;
use dtenge_node::{Account, ClientKind, NodeKind, NodeMeta, OWN_ACCOUNT};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{Fate, Faults, SimNetwork, Transport};
use dtenge_wire::{Envelope, RoleId};
use std::collections::BTreeMap;
use std::sync::Arc;

const STEPPE: &str = "steppe";
const SAPA: &str = "sapa";
/// What each bank's correspondent account holds beside what was emitted.
const CORR_START: u64 = 1_000_000;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

fn t(tiyn: u64) -> Amount {
    Amount::from_tiyn(tiyn).unwrap()
}

fn node_key(bank: &str) -> SecretKey {
    key(if bank == STEPPE { 30 } else { 40 })
}

fn own_key(bank: &str) -> SecretKey {
    key(if bank == STEPPE { 31 } else { 41 })
}

/// splitmix64: the seed decides every fault.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct SeededFaults {
    rng: Rng,
    lose_percent: u64,
    duplicate_percent: u64,
    delay_ms_max: u64,
}

impl Faults for SeededFaults {
    fn fate(&mut self, _: &RoleId, _: &RoleId) -> Fate {
        let roll = self.rng.below(100);
        let delay_ms = self.rng.below(self.delay_ms_max + 1);
        if roll < self.lose_percent {
            Fate::Lose
        } else if roll < self.lose_percent + self.duplicate_percent {
            Fate::Duplicate { delay_ms, again_ms: self.rng.below(3 * self.delay_ms_max + 1) }
        } else {
            Fate::Deliver { delay_ms }
        }
    }
}

/// The directory's listings, read in memory as the assembly's banks read them.
struct Listings(Arc<DirectoryService>);

impl Directory for Listings {
    fn bank_of(&self, address: &Address) -> Result<Option<String>> {
        Ok(self.0.read(|d| d.by_address(address).map(|l| l.bank.clone())))
    }

    fn find(&self, who: Who<'_>, bank: Option<&str>) -> Result<Option<Found>> {
        Ok(self.0.read(|d| {
            let listing = match who {
                Who::Phone(phone) => d.by_phone(phone, bank),
                Who::Client(client) => d.by_client(client, bank),
            };
            listing.map(|l| Found { address: l.address, bank: l.bank.clone(), kind: l.kind })
        }))
    }
}

/// Noon in Astana on Wednesday 2026-12-02, an operational day.
fn start_ms() -> u64 {
    let date: dtenge_core::calendar::Date = "2026-12-02".parse().unwrap();
    (date.days() as u64 * 86_400 + 7 * 3600) * 1000
}

struct Cluster {
    net: Arc<SimNetwork<SeededFaults>>,
    now_ms: u64,
    disks: BTreeMap<&'static str, SimDisk>,
    notary: Option<NotaryService>,
    central: Option<CentralService>,
    directory: Arc<DirectoryService>,
    banks: BTreeMap<&'static str, BankService>,
    restarts: u64,
}

impl Cluster {
    fn new(seed: u64, lose_percent: u64, duplicate_percent: u64, delay_ms_max: u64) -> Cluster {
        let faults = SeededFaults { rng: Rng(seed), lose_percent, duplicate_percent, delay_ms_max };
        let disks: BTreeMap<&'static str, SimDisk> =
            ["notary", "central", "directory", STEPPE, SAPA].into_iter().map(|d| (d, SimDisk::new())).collect();
        let store = Store::open_simulated(disks["directory"].clone(), &dtenge_directory::tables()).unwrap();
        let mut cluster = Cluster {
            net: Arc::new(SimNetwork::new(faults)),
            now_ms: start_ms(),
            disks,
            notary: None,
            central: None,
            directory: Arc::new(DirectoryService::open(store).unwrap()),
            banks: BTreeMap::new(),
            restarts: 0,
        };
        cluster.net.set_now(cluster.now_ms);
        cluster.restart("notary");
        cluster.restart("central");
        for bank in [STEPPE, SAPA] {
            let own = dtenge_wire::Claim {
                client_id: OWN_ACCOUNT.into(),
                address: own_key(bank).address(),
                kind: dtenge_wire::AccountKind::Institution,
                display_name: format!("{bank} bank"),
                phone: None,
            };
            cluster.directory.claim_all(bank, &[own]).unwrap();
            cluster.restart(bank);
        }
        for bank in [STEPPE, SAPA] {
            cluster.fund(bank, 500_000);
        }
        cluster
    }

    fn anchors(&self) -> Anchors {
        Anchors {
            issuer: key(1).address(),
            central_bank: key(1).public_key(),
            oracle: key(2).public_key(),
            notary: key(3).public_key(),
            banks: [STEPPE, SAPA].iter().map(|b| (b.to_string(), node_key(b).public_key())).collect(),
            blocked: Default::default(),
        }
    }

    /// Drop a role with all its memory and open it again from its disk.
    fn restart(&mut self, role: &'static str) {
        let disk = self.disks[role].clone();
        let net: Arc<dyn Transport> = self.net.clone();
        match role {
            "notary" => {
                self.notary = None;
                let store = Store::open_simulated(disk, &dtenge_notary::service::tables()).unwrap();
                let anchors = self.anchors();
                let senders =
                    Senders { central_bank: anchors.central_bank, banks: anchors.banks, blocked: anchors.blocked };
                self.notary = Some(NotaryService::open(store, key(3), senders).unwrap());
            }
            "central" => {
                self.central = None;
                let store = Store::open_simulated(disk, &dtenge_central::tables()).unwrap();
                let banks = [STEPPE, SAPA]
                    .iter()
                    .map(|b| {
                        (b.to_string(), BankKeys { own: own_key(b).address(), node_key: node_key(b).public_key() })
                    })
                    .collect();
                self.central = Some(CentralService::open(store, key(1), key(3).public_key(), banks, net).unwrap());
                self.net.up(&RoleId::Central);
            }
            bank => {
                self.banks.remove(bank);
                let store = Store::open_simulated(disk, &dtenge_bank::tables()).unwrap();
                let genesis = Genesis {
                    meta: NodeMeta { id: bank.into(), kind: NodeKind::Bank, name: format!("{bank} bank") },
                    node_key: node_key(bank).into(),
                    own_key: own_key(bank),
                    custody: dtenge_node::Custody::new([77; 32]),
                    now_ms: 0,
                };
                let directory = Arc::new(Listings(self.directory.clone()));
                let service = BankService::open(store, genesis, self.anchors(), net, directory).unwrap();
                self.banks.insert(if bank == STEPPE { STEPPE } else { SAPA }, service);
                self.net.up(&RoleId::Bank(bank.into()));
            }
        }
        self.restarts += 1;
    }

    fn central(&self) -> &CentralService {
        self.central.as_ref().unwrap()
    }

    fn corr(&self, bank: &str) -> i64 {
        self.central().abs_balance(&format!("corr:{bank}"))
    }

    /// Bank money on the correspondent account, and DT issued against half of it.
    fn fund(&mut self, bank: &str, dt: u64) {
        self.central().credit_correspondent(bank, t(dt + CORR_START), self.now_ms).unwrap();
        let answer = self.central().emit(bank, t(dt), None, self.now_ms);
        self.run(10_000);
        answer.try_recv().unwrap().unwrap();
    }

    /// A custodial client of `bank`, listed at the directory.
    fn client(&mut self, bank: &'static str, id: &str, kind: ClientKind, dt: u64) -> Address {
        let secret = key(bank.bytes().chain(id.bytes()).fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b)));
        let account = Account {
            client_id: id.into(),
            node_id: bank.into(),
            kind,
            name: format!("{id} Client"),
            phone: None,
            address: secret.address(),
            opened_at_unix_ms: 0,
        };
        self.directory.claim_all(bank, &[dtenge_bank::claim_of(&account)]).unwrap();
        self.banks[bank].open_account(account, &dtenge_bank::AccountKey::Custodial(secret.clone())).unwrap();
        if dt > 0 {
            let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(secret.address(), t(dt))] };
            let answer = self.banks[bank].submit(pay, None);
            self.run(10_000);
            answer.try_recv().unwrap().unwrap();
        }
        secret.address()
    }

    fn link(&mut self, bank: &'static str, client: &str, pan: &str) -> Result<()> {
        let answer = self.banks[bank].link_card(client, pan, self.now_ms);
        self.run(10_000);
        answer.try_recv().expect("the link is answered")
    }

    fn dt(&self, bank: &str, client: &str) -> u64 {
        self.banks[bank].read(|n| n.balance(client).unwrap().dt_tiyn.tiyn())
    }

    fn fiat(&self, bank: &str, client: &str) -> u64 {
        self.banks[bank].read(|n| n.balance(client).unwrap().fiat_tiyn.tiyn())
    }

    fn quiet(&self) -> bool {
        self.net.in_flight() == 0
            && self.central().outstanding() == (0, 0)
            && self.banks.values().all(|b| {
                b.outstanding() == (0, 0)
                    && b.queued() == 0
                    && b.card_payouts_pending() == 0
                    && b.cards_waiting() == 0
                    && b.card_credits_pending() == 0
            })
    }

    /// Deliver what is due, let the banks take their queues, advance time, tick; restart a
    /// role whose disk crashed; until quiet or `ms_max` of simulated time passed.
    fn run(&mut self, ms_max: u64) {
        let end_ms = self.now_ms + ms_max;
        while self.now_ms < end_ms {
            while let Some(envelope) = self.net.pop_due(self.now_ms) {
                self.dispatch(envelope);
                self.restart_crashed();
            }
            for bank in self.banks.values() {
                bank.flush(self.now_ms);
            }
            self.restart_crashed();
            if self.quiet() {
                return;
            }
            let next_tick_ms = self.now_ms + RESEND_AFTER_MS / 4;
            self.now_ms = self.net.next_due().map_or(next_tick_ms, |due| due.min(next_tick_ms)).max(self.now_ms + 1);
            self.net.set_now(self.now_ms);
            self.central().tick(self.now_ms);
            for bank in self.banks.values() {
                bank.tick(self.now_ms);
            }
        }
    }

    fn restart_crashed(&mut self) {
        for role in ["central", STEPPE, SAPA] {
            let disk = &self.disks[role];
            if disk.crashed() || disk.failed() {
                self.restart(role);
            }
        }
    }

    fn dispatch(&mut self, envelope: Envelope) {
        match &envelope.to {
            RoleId::Notary => {
                if let Some(reply) = self.notary.as_ref().unwrap().handle(envelope) {
                    let _ = self.net.send(reply);
                }
            }
            RoleId::Central => self.central().handle(envelope, self.now_ms),
            RoleId::Directory => {
                if let Some(reply) = self.directory.handle(envelope) {
                    let _ = self.net.send(reply);
                }
            }
            RoleId::Bank(bank) => {
                if let Some(service) = self.banks.get(bank.as_str()) {
                    service.handle(envelope, self.now_ms);
                }
            }
            RoleId::Oracle | RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. } => {}
        }
    }

    fn purchase(&mut self, pan: &str, merchant: &str, amount: u64, mode: CardMode) -> Result<Committed> {
        let request = CardRequest::Purchase {
            pan: pan.into(),
            merchant_bank: SAPA.into(),
            merchant_id: merchant.into(),
            amount: t(amount),
            mode,
        };
        let answer = self.banks[STEPPE].submit(Request::Card(request), None);
        self.run(20_000);
        answer.try_recv().expect("the purchase is answered")
    }

    /// DT in the banks' wallets = DT issued (no DT created or lost), and the ABS conserves.
    fn assert_conserved(&self) {
        let dt: u64 = self.banks.values().map(|b| b.read(|n| n.total_dt().unwrap().tiyn())).sum();
        assert_eq!(t(dt), self.central().dt_liability(), "DT in the wallets = the DT liability");
        assert_eq!(self.corr(STEPPE) + self.corr(SAPA), 2 * CORR_START as i64, "the correspondents conserve");
    }
}

fn pan(n: u64) -> String {
    dtenge_node::ids::complete_pan(&format!("440000{n:09}")).unwrap()
}

const BUYER: &str = "900101300123";
const MERCHANT: &str = "100140000001";

/// A buyer at Steppe with 100,000 tiyn and a card; a merchant at Sapa.
fn shop(c: &mut Cluster) -> String {
    c.client(STEPPE, BUYER, ClientKind::Individual, 100_000);
    c.client(SAPA, MERCHANT, ClientKind::LegalEntity, 0);
    let card = pan(1);
    c.link(STEPPE, BUYER, &card).unwrap();
    card
}

#[test]
fn a_card_is_linked_once_across_banks_and_an_unlinked_or_invalid_card_pays_nothing() {
    let mut c = Cluster::new(1, 0, 0, 0);
    let card = shop(&mut c);
    c.client(SAPA, BUYER, ClientKind::Individual, 0);
    assert_eq!(c.link(SAPA, BUYER, &card).unwrap_err().code, ErrorCode::DuplicateAccount, "linked at Steppe");
    c.link(STEPPE, BUYER, &card).unwrap_err();
    assert_eq!(c.directory.read_cards(|cards| cards.holder(&card).unwrap().bank.clone()), STEPPE);
    let mut wrong = card.clone().into_bytes();
    wrong[15] = b'0' + (wrong[15] - b'0' + 1) % 10;
    let wrong = String::from_utf8(wrong).unwrap();
    assert_eq!(c.link(STEPPE, BUYER, &wrong).unwrap_err().code, ErrorCode::MalformedInput, "Luhn");
    let unlinked = c.purchase(&pan(2), MERCHANT, 100, CardMode::Dt).unwrap_err();
    assert_eq!(unlinked.code, ErrorCode::UnknownAccount);
    let not_a_merchant = CardRequest::Purchase {
        pan: card.clone(),
        merchant_bank: SAPA.into(),
        merchant_id: BUYER.into(),
        amount: t(100),
        mode: CardMode::Dt,
    };
    let answer = c.banks[STEPPE].submit(Request::Card(not_a_merchant), None);
    c.run(1_000);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(c.dt(STEPPE, BUYER), 100_000, "nothing moved");
    // The link survives a restart of the bank.
    c.restart(STEPPE);
    c.purchase(&card, MERCHANT, 100, CardMode::Dt).unwrap();
}

#[test]
fn a_dt_purchase_pays_the_merchant_and_its_refunds_never_exceed_what_was_paid() {
    let mut c = Cluster::new(2, 0, 0, 3);
    let card = shop(&mut c);
    let committed = c.purchase(&card, MERCHANT, 30_000, CardMode::Dt).unwrap();
    assert_eq!((c.dt(STEPPE, BUYER), c.dt(SAPA, MERCHANT)), (70_000, 30_000));
    let id = format!("P-{}", &committed.tx_id.to_string()[..16]);
    let issued = c.banks[STEPPE].purchase(&id).unwrap().unwrap();
    let acquired = c.banks[SAPA].purchase(&id).unwrap().unwrap();
    assert_eq!(issued, acquired, "both banks keep the purchase");
    assert_eq!((acquired.mode, acquired.amount, acquired.tx_id), (CardMode::Dt, t(30_000), committed.tx_id));
    assert_eq!(c.fiat(SAPA, MERCHANT), 0, "DT mode moves no bank money");
    // Refunds at the acquirer, the way it was paid.
    let refund = |c: &mut Cluster, amount: u64| match c.banks[SAPA].card_refund(&id, t(amount), None, c.now_ms) {
        Ok(Refunding::Submitted { answer, .. }) => {
            c.run(20_000);
            answer.try_recv().unwrap().map(|_| ())
        }
        Ok(Refunding::Decided(_)) => panic!("a DT refund goes through the pipeline"),
        Err(e) => Err(e),
    };
    refund(&mut c, 10_000).unwrap();
    assert_eq!(refund(&mut c, 20_001).unwrap_err().code, ErrorCode::Conflict);
    refund(&mut c, 20_000).unwrap();
    assert_eq!(refund(&mut c, 1).unwrap_err().code, ErrorCode::Conflict, "nothing left");
    assert_eq!((c.dt(STEPPE, BUYER), c.dt(SAPA, MERCHANT)), (100_000, 0));
    let acquired = c.banks[SAPA].purchase(&id).unwrap().unwrap();
    assert_eq!((acquired.refunded, acquired.refunds, acquired.refund_tx_ids.len()), (t(30_000), 2, 2));
    assert_eq!(c.banks[STEPPE].purchase(&id).unwrap().unwrap(), acquired, "the issuer's record follows");
    assert_eq!(c.banks[STEPPE].card_refund(&id, t(1), None, c.now_ms).err().unwrap().code, ErrorCode::NotFound);
    c.assert_conserved();
}

#[test]
fn a_convert_purchase_credits_the_merchant_and_settles_the_correspondents_once_across_crashes() {
    let mut c = Cluster::new(3, 0, 20, 5);
    let card = shop(&mut c);
    let (steppe_corr, sapa_corr) = (c.corr(STEPPE), c.corr(SAPA));
    let own_before = c.dt(STEPPE, OWN_ACCOUNT);
    // The acquirer and central are down while the issuer commits the purchase.
    c.net.down(RoleId::Bank(SAPA.into()));
    c.net.down(RoleId::Central);
    let request = CardRequest::Purchase {
        pan: card.clone(),
        merchant_bank: SAPA.into(),
        merchant_id: MERCHANT.into(),
        amount: t(40_000),
        mode: CardMode::ConvertToFiat,
    };
    let answer = c.banks[STEPPE].submit(Request::Card(request), None);
    c.run(2_000);
    let committed = answer.try_recv().unwrap().unwrap();
    assert_eq!((c.dt(STEPPE, BUYER), c.dt(STEPPE, OWN_ACCOUNT)), (60_000, own_before + 40_000));
    assert_eq!((c.fiat(SAPA, MERCHANT), c.corr(STEPPE)), (0, steppe_corr), "nothing arrived yet");
    // The issuer restarts: its notices come back from its disk. The acquirer and central come
    // back, and each dies right after its commit that applies the notice, before acknowledging.
    c.restart(STEPPE);
    c.restart(SAPA);
    c.restart("central");
    c.disks[SAPA].arm_crash(1, CrashMode::AfterWrite);
    c.disks["central"].arm_crash(1, CrashMode::AfterWrite);
    c.run(30_000);
    assert!(c.restarts >= 6, "both crashed and came back");
    assert_eq!(c.fiat(SAPA, MERCHANT), 40_000, "the merchant's bank money credited once");
    assert_eq!((c.corr(STEPPE), c.corr(SAPA)), (steppe_corr - 40_000, sapa_corr + 40_000), "settled once");
    assert_eq!(c.dt(SAPA, MERCHANT), 0, "the merchant got no DT");
    let id = format!("P-{}", &committed.tx_id.to_string()[..16]);
    assert_eq!(c.banks[SAPA].purchase(&id).unwrap().unwrap().mode, CardMode::ConvertToFiat);
    assert!(c.central().card_settlements_queued().is_empty());
    assert_eq!((c.central().card_notices_rejected(), c.banks[SAPA].card_notices_rejected()), (0, 0));
    c.assert_conserved();
}

#[test]
fn a_convert_refund_debits_the_merchant_and_the_issuer_pays_the_buyer_once_across_a_crash() {
    let mut c = Cluster::new(4, 0, 20, 5);
    let card = shop(&mut c);
    let committed = c.purchase(&card, MERCHANT, 40_000, CardMode::ConvertToFiat).unwrap();
    let id = format!("P-{}", &committed.tx_id.to_string()[..16]);
    let (steppe_corr, sapa_corr) = (c.corr(STEPPE), c.corr(SAPA));
    // No caller takes the key of a refund the bank will owe (it would answer the payout).
    let buyer = c.banks[STEPPE].read(|n| n.account(BUYER).unwrap().address);
    let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(buyer, t(1))] };
    let squatter = IdemKey { key: format!("\u{1}card-payout:{id}:1"), fingerprint: Hash32([0; 32]) };
    let squatted = c.banks[STEPPE].submit(pay, Some(squatter));
    c.run(1_000);
    assert_eq!(squatted.try_recv().unwrap().unwrap_err().code, ErrorCode::MalformedInput);
    // Steppe dies right after the commit that stores the payout it owes, before paying it.
    c.disks[STEPPE].arm_crash(1, CrashMode::AfterWrite);
    let idem = IdemKey { key: "refund-1".into(), fingerprint: Hash32([1; 32]) };
    let Refunding::Decided(receipt) = c.banks[SAPA].card_refund(&id, t(15_000), Some(idem.clone()), c.now_ms).unwrap()
    else {
        panic!("a convert-to-fiat refund is decided at the acquirer")
    };
    assert_eq!((receipt.amount, receipt.mode), (t(15_000), CardMode::ConvertToFiat));
    assert_eq!(c.fiat(SAPA, MERCHANT), 25_000, "debited at once");
    c.run(30_000);
    assert_eq!(c.dt(STEPPE, BUYER), 60_000 + 15_000, "the buyer paid back once");
    assert_eq!((c.corr(STEPPE), c.corr(SAPA)), (steppe_corr + 15_000, sapa_corr - 15_000));
    // The same refund again (its answer was lost): the same receipt, nothing moves.
    let Refunding::Decided(again) = c.banks[SAPA].card_refund(&id, t(15_000), Some(idem), c.now_ms).unwrap() else {
        panic!("decided")
    };
    assert_eq!(again, receipt);
    let over = c.banks[SAPA].card_refund(&id, t(25_001), None, c.now_ms).err().unwrap();
    assert_eq!(over.code, ErrorCode::Conflict);
    c.run(30_000);
    assert_eq!((c.fiat(SAPA, MERCHANT), c.dt(STEPPE, BUYER)), (25_000, 75_000));
    let issued = c.banks[STEPPE].purchase(&id).unwrap().unwrap();
    assert_eq!((issued.refunded, issued.refund_tx_ids.len()), (t(15_000), 1), "the issuer's record follows");
    c.assert_conserved();
}

#[test]
fn an_atm_withdrawal_at_another_banks_atm_settles_its_correspondent_once() {
    let mut c = Cluster::new(5, 10, 10, 5);
    let card = shop(&mut c);
    let (steppe_corr, sapa_corr) = (c.corr(STEPPE), c.corr(SAPA));
    let own = c.dt(STEPPE, OWN_ACCOUNT);
    for (atm_bank, amount) in [(SAPA, 5_000), (STEPPE, 2_000)] {
        let request = CardRequest::Atm { pan: card.clone(), atm_bank: atm_bank.into(), amount: t(amount) };
        let answer = c.banks[STEPPE].submit(Request::Card(request), None);
        c.run(30_000);
        answer.try_recv().unwrap().unwrap();
    }
    assert_eq!((c.dt(STEPPE, BUYER), c.dt(STEPPE, OWN_ACCOUNT)), (93_000, own + 7_000));
    assert_eq!((c.corr(STEPPE), c.corr(SAPA)), (steppe_corr - 5_000, sapa_corr + 5_000), "only the other bank's ATM");
    let beyond = CardRequest::Atm { pan: card, atm_bank: SAPA.into(), amount: t(93_001) };
    let answer = c.banks[STEPPE].submit(Request::Card(beyond), None);
    c.run(1_000);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    c.assert_conserved();
}

#[test]
fn a_settlement_beyond_the_payers_correspondent_waits_and_posts_once_when_funded() {
    let mut c = Cluster::new(6, 0, 0, 0);
    let card = shop(&mut c);
    // Steppe turns all but 10,000 of its bank money at the NBK into DT.
    let answer = c.central().emit(STEPPE, t(CORR_START - 10_000), None, c.now_ms);
    c.run(10_000);
    answer.try_recv().unwrap().unwrap();
    assert_eq!((c.corr(STEPPE), c.corr(SAPA)), (10_000, CORR_START as i64));
    c.purchase(&card, MERCHANT, 40_000, CardMode::ConvertToFiat).unwrap();
    assert_eq!(c.fiat(SAPA, MERCHANT), 40_000, "the merchant is credited at once");
    let queued = c.central().card_settlements_queued();
    assert_eq!(queued.len(), 1, "the settlement waits for funds");
    assert_eq!((queued[0].from_bank.as_str(), queued[0].to_bank.as_str(), queued[0].amount), (STEPPE, SAPA, t(40_000)));
    assert_eq!(c.corr(STEPPE), 10_000, "nothing posted");
    c.restart("central");
    assert_eq!(c.central().card_settlements_queued(), queued, "durably");
    c.central().credit_correspondent(STEPPE, t(29_999), c.now_ms).unwrap();
    c.central().tick(c.now_ms);
    assert_eq!(c.central().card_settlements_queued().len(), 1, "one tiyn short");
    c.central().credit_correspondent(STEPPE, t(1), c.now_ms).unwrap();
    c.central().tick(c.now_ms);
    c.central().tick(c.now_ms);
    assert!(c.central().card_settlements_queued().is_empty());
    assert_eq!((c.corr(STEPPE), c.corr(SAPA)), (0, CORR_START as i64 + 40_000), "posted once");
}

#[test]
fn a_voucher_event_pays_once_whoever_retries_and_across_a_restart() {
    let mut c = Cluster::new(7, 0, 20, 5);
    c.client(STEPPE, "100140000045", ClientKind::LegalEntity, 50_000);
    c.client(SAPA, "100140000046", ClientKind::LegalEntity, 0);
    let request = VoucherProgramRequest {
        integrator: "onay".into(),
        payer_id: "100140000045".into(),
        payee_bank: SAPA.into(),
        payee_id: "100140000046".into(),
        amount_per_event: t(1_200),
    };
    let idem = IdemKey { key: "programme-1".into(), fingerprint: Hash32([9; 32]) };
    let program = c.banks[STEPPE].create_voucher_program(&request, Some(idem.clone()), c.now_ms).unwrap();
    assert_eq!(c.banks[STEPPE].create_voucher_program(&request, Some(idem), c.now_ms).unwrap(), program);
    let event = |id: &str| VoucherEvent {
        program_id: program.id.clone(),
        integrator: "onay".into(),
        event_id: id.into(),
        card: Some("9643 1044".into()),
    };
    // The same event three times, two of them in one batch: paid once, one answer for all.
    let answers: Vec<_> = (0..2).map(|_| c.banks[STEPPE].voucher_event(event("tap-0001"))).collect();
    c.run(20_000);
    let again = c.banks[STEPPE].voucher_event(event("tap-0001"));
    c.run(20_000);
    let first = answers[0].try_recv().unwrap().unwrap();
    assert_eq!(answers[1].try_recv().unwrap().unwrap(), first);
    assert_eq!(again.try_recv().unwrap().unwrap(), first);
    assert_eq!(c.dt(SAPA, "100140000046"), 1_200);
    // An event in flight when the payer's bank dies: the retry after the restart gets the
    // first receipt, and the canteen is paid once.
    let _lost = c.banks[STEPPE].voucher_event(event("tap-0002"));
    c.banks[STEPPE].flush(c.now_ms);
    c.net.down(RoleId::Bank(STEPPE.into()));
    c.run(50);
    c.restart(STEPPE);
    let retry = c.banks[STEPPE].voucher_event(event("tap-0002"));
    c.run(20_000);
    let second = retry.try_recv().unwrap().unwrap();
    let retry_again = c.banks[STEPPE].voucher_event(event("tap-0002"));
    c.run(20_000);
    assert_eq!(retry_again.try_recv().unwrap().unwrap(), second);
    assert_eq!((c.dt(STEPPE, "100140000045"), c.dt(SAPA, "100140000046")), (47_600, 2_400));
    let events = c.banks[STEPPE].voucher_events(&program.id).unwrap();
    let paid: Vec<_> = events.iter().map(|e| (e.event_id.as_str(), e.tx_id, e.seq, e.amount)).collect();
    assert_eq!(
        paid,
        vec![("tap-0001", first.tx_id, first.seq, t(1_200)), ("tap-0002", second.tx_id, second.seq, t(1_200))],
        "each event recorded once, with the payment that answered it"
    );
    // Another integrator is refused; an unknown programme too.
    let rogue = c.banks[STEPPE].voucher_event(VoucherEvent { integrator: "rogue".into(), ..event("tap-0003") });
    let unknown = c.banks[STEPPE].voucher_event(VoucherEvent { program_id: "steppe-V999999".into(), ..event("x") });
    c.run(1_000);
    assert_eq!(rogue.try_recv().unwrap().unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(unknown.try_recv().unwrap().unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(c.banks[STEPPE].voucher_programs(), vec![program]);
    c.assert_conserved();
}

/// Purchases in both modes, refunds and withdrawals under lost, duplicated and delayed
/// messages and crashes of a bank or central inside their commits: every flow moves the
/// merchant's bank money and the correspondents exactly as its committed DT says.
fn cards_under_faults(seed: u64) {
    let mut c = Cluster::new(seed, 10, 10, 20);
    let mut rng = Rng(seed ^ 0x5eed);
    let card = shop(&mut c);
    let (steppe_corr, sapa_corr) = (c.corr(STEPPE), c.corr(SAPA));
    let (mut merchant_fiat, mut interbank) = (0i64, 0i64);
    let mut purchases: Vec<(String, CardMode, u64)> = Vec::new();
    for round in 0..12 {
        if rng.below(3) == 0 {
            let role = ["central", STEPPE, SAPA][rng.below(3) as usize];
            let mode = if rng.below(2) == 0 { CrashMode::AfterWrite } else { CrashMode::BeforeWrite };
            c.disks[role].arm_crash(1 + rng.below(3), mode);
        }
        let amount = 100 + rng.below(2_000);
        match (round % 3, purchases.len()) {
            (2, n) if n > 0 => {
                let (id, mode, left) = purchases[rng.below(n as u64) as usize].clone();
                let refund = (left / 2).max(1);
                let idem = IdemKey { key: format!("r{round}"), fingerprint: Hash32([round as u8; 32]) };
                // Asked again under its key while the answer is a storage failure (the bank
                // died with it: the outcome is unknown until it is asked again).
                let ok = loop {
                    match c.banks[SAPA].card_refund(&id, t(refund), Some(idem.clone()), c.now_ms) {
                        Ok(Refunding::Decided(_)) => break true,
                        Ok(Refunding::Submitted { answer, .. }) => {
                            c.run(30_000);
                            match answer.try_recv() {
                                Ok(Ok(_)) => break true,
                                Ok(Err(e)) if e.code != ErrorCode::StorageFailure => break false,
                                _ => {}
                            }
                        }
                        Err(e) if e.code == ErrorCode::StorageFailure => c.run(1_000),
                        Err(_) => break false,
                    }
                };
                if ok {
                    if mode == CardMode::ConvertToFiat {
                        merchant_fiat -= refund as i64;
                        interbank -= refund as i64;
                    }
                    let entry = purchases.iter_mut().find(|p| p.0 == id).unwrap();
                    entry.2 -= refund;
                }
            }
            _ => {
                let mode = if rng.below(2) == 0 { CardMode::Dt } else { CardMode::ConvertToFiat };
                let request = CardRequest::Purchase {
                    pan: card.clone(),
                    merchant_bank: SAPA.into(),
                    merchant_id: MERCHANT.into(),
                    amount: t(amount),
                    mode,
                };
                let idem = IdemKey { key: format!("p{round}"), fingerprint: Hash32([round as u8; 32]) };
                let mut result: Option<Result<Committed>> = None;
                while !matches!(&result, Some(Ok(_)))
                    && !matches!(&result, Some(Err(e)) if e.code != ErrorCode::StorageFailure)
                {
                    let answer = c.banks[STEPPE].submit(Request::Card(request.clone()), Some(idem.clone()));
                    c.run(30_000);
                    result = answer.try_recv().ok();
                }
                let committed = result.unwrap().unwrap();
                let id = format!("P-{}", &committed.tx_id.to_string()[..16]);
                if mode == CardMode::ConvertToFiat {
                    merchant_fiat += amount as i64;
                    interbank += amount as i64;
                }
                purchases.push((id, mode, amount));
            }
        }
    }
    for disk in c.disks.values() {
        disk.disarm();
    }
    c.run(60_000);
    assert!(c.quiet(), "seed {seed}: everything settled");
    assert_eq!(c.fiat(SAPA, MERCHANT) as i64, merchant_fiat, "seed {seed}: the merchant's bank money");
    assert_eq!(c.corr(STEPPE), steppe_corr - interbank, "seed {seed}: Steppe's correspondent");
    assert_eq!(c.corr(SAPA), sapa_corr + interbank, "seed {seed}: Sapa's correspondent");
    for (id, _, left) in &purchases {
        let record = c.banks[SAPA].purchase(id).unwrap().unwrap();
        assert_eq!(record.left(), t(*left), "seed {seed}: what is left of {id}");
    }
    c.assert_conserved();
}

#[test]
fn card_flows_under_faults_and_crashes_move_bank_money_exactly_once() {
    for seed in 10..60 {
        cards_under_faults(seed);
    }
}

#[test]
fn a_refund_owed_by_a_blocked_issuer_is_paid_once_when_its_block_is_lifted() {
    let mut c = Cluster::new(8, 0, 0, 3);
    let card = shop(&mut c);
    let committed = c.purchase(&card, MERCHANT, 40_000, CardMode::ConvertToFiat).unwrap();
    let id = format!("P-{}", &committed.tx_id.to_string()[..16]);
    c.central().set_blocked(STEPPE, true, "licence review", c.now_ms).unwrap();
    c.run(5_000);
    let Refunding::Decided(_) = c.banks[SAPA].card_refund(&id, t(10_000), None, c.now_ms).unwrap() else {
        panic!("decided at the acquirer")
    };
    // The notary spends nothing Steppe sends while it is blocked: the refund stays owed.
    c.run(5_000);
    assert_eq!((c.banks[STEPPE].card_payouts_pending(), c.dt(STEPPE, BUYER)), (1, 60_000));
    c.central().set_blocked(STEPPE, false, "", c.now_ms).unwrap();
    c.run(30_000);
    assert_eq!((c.banks[STEPPE].card_payouts_pending(), c.dt(STEPPE, BUYER)), (0, 70_000), "paid once");
    assert_eq!(c.fiat(SAPA, MERCHANT), 30_000);
    c.assert_conserved();
}

#[test]
fn a_converted_purchase_at_a_merchant_listed_but_not_yet_opened_is_credited_once_when_it_opens() {
    let mut c = Cluster::new(9, 0, 20, 3);
    c.client(STEPPE, BUYER, ClientKind::Individual, 100_000);
    let card = pan(1);
    c.link(STEPPE, BUYER, &card).unwrap();
    // The directory listed the merchant (its claim is answered before the opening); Sapa has
    // not opened the account yet.
    let secret = key(99);
    let account = Account {
        client_id: MERCHANT.into(),
        node_id: SAPA.into(),
        kind: ClientKind::LegalEntity,
        name: "Late Merchant".into(),
        phone: None,
        address: secret.address(),
        opened_at_unix_ms: 0,
    };
    c.directory.claim_all(SAPA, &[dtenge_bank::claim_of(&account)]).unwrap();
    let (steppe_corr, sapa_corr) = (c.corr(STEPPE), c.corr(SAPA));
    c.purchase(&card, MERCHANT, 25_000, CardMode::ConvertToFiat).unwrap();
    c.run(5_000);
    assert_eq!(c.banks[SAPA].card_credits_pending(), 1, "owed until the account opens");
    assert_eq!((c.corr(STEPPE), c.corr(SAPA)), (steppe_corr - 25_000, sapa_corr + 25_000));
    c.restart(SAPA);
    assert_eq!(c.banks[SAPA].card_credits_pending(), 1, "durably");
    c.banks[SAPA].open_account(account, &dtenge_bank::AccountKey::Custodial(secret)).unwrap();
    c.run(5_000);
    assert_eq!((c.banks[SAPA].card_credits_pending(), c.fiat(SAPA, MERCHANT)), (0, 25_000));
    c.run(5_000);
    assert_eq!(c.fiat(SAPA, MERCHANT), 25_000, "credited once");
    assert_eq!(c.banks[SAPA].card_notices_rejected(), 0);
    c.assert_conserved();
}

/// The notary refuses a blocked bank's new transactions for good. A client's payment it
/// refused that way, asked again after the block is lifted, must be a new transaction (each
/// attempt carries a nonce): with the same inputs and no nonce it would be the same
/// transaction, refused again for ever.
#[test]
fn a_payment_the_notary_refused_while_its_bank_was_blocked_pays_when_asked_again_after_the_lift() {
    let mut c = Cluster::new(11, 0, 0, 3);
    c.client(STEPPE, BUYER, ClientKind::Individual, 50_000);
    let payee = c.client(SAPA, MERCHANT, ClientKind::LegalEntity, 0);
    c.central().set_blocked(STEPPE, true, "licence review", c.now_ms).unwrap();
    c.run(5_000);
    // Steppe forgets its own block (as if the decision had not reached it yet), so the
    // payment goes to the notary, which knows it.
    c.banks[STEPPE].set_blocked(STEPPE, false);
    let pay = || Request::Pay { client_id: BUYER.into(), payees: vec![(payee, t(10_000))] };
    let refused = c.banks[STEPPE].submit(pay(), None);
    c.run(5_000);
    assert_eq!(refused.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked, "refused at the notary");
    assert_eq!(c.dt(STEPPE, BUYER), 50_000);
    c.central().set_blocked(STEPPE, false, "", c.now_ms).unwrap();
    c.run(5_000);
    let paid = c.banks[STEPPE].submit(pay(), None);
    c.run(10_000);
    paid.try_recv().unwrap().unwrap();
    assert_eq!((c.dt(STEPPE, BUYER), c.dt(SAPA, MERCHANT)), (40_000, 10_000));
    c.assert_conserved();
}

/// Seed 31728 of the roles' simulator: a refund of a converted purchase is paid from the
/// issuer's own DT, which the issuer had paid out and redeemed; the refund stays owed (asked
/// again at every tick, refused for want of DT), the bank says how much its own DT lacks,
/// and once the NBK emits that much the refund is paid, once.
#[test]
fn a_refund_owed_beyond_the_issuers_own_dt_waits_for_an_emission_and_is_paid_once() {
    let mut c = Cluster::new(31_728, 0, 0, 3);
    let card = shop(&mut c);
    let committed = c.purchase(&card, MERCHANT, 40_000, CardMode::ConvertToFiat).unwrap();
    let id = format!("P-{}", &committed.tx_id.to_string()[..16]);
    // Steppe pays out all its own DT, the purchase's with it.
    let own = c.banks[STEPPE].read(|n| n.balance(OWN_ACCOUNT).unwrap().dt_spendable_tiyn);
    let buyer = c.banks[STEPPE].read(|n| n.account(BUYER).unwrap().address);
    let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(buyer, own)] };
    let paid = c.banks[STEPPE].submit(pay, None);
    c.run(10_000);
    paid.try_recv().unwrap().unwrap();
    let before = c.dt(STEPPE, BUYER);
    assert_eq!(c.banks[STEPPE].card_payouts_short(), Amount::ZERO, "nothing owed yet");
    let Refunding::Decided(_) = c.banks[SAPA].card_refund(&id, t(15_000), None, c.now_ms).unwrap() else {
        panic!("decided at the acquirer")
    };
    c.run(5_000);
    assert_eq!((c.banks[STEPPE].card_payouts_pending(), c.dt(STEPPE, BUYER)), (1, before), "owed, not paid");
    assert_eq!(c.banks[STEPPE].card_payouts_short(), t(15_000), "its own DT lacks the whole refund");
    // The treasury asks the NBK for what is lacking; the next ticks pay the refund.
    let emitted = c.central().emit(STEPPE, t(15_000), None, c.now_ms);
    c.run(30_000);
    emitted.try_recv().unwrap().unwrap();
    assert_eq!((c.banks[STEPPE].card_payouts_pending(), c.dt(STEPPE, BUYER)), (0, before + 15_000), "paid once");
    assert_eq!(c.banks[STEPPE].card_payouts_short(), Amount::ZERO);
    assert_eq!(c.fiat(SAPA, MERCHANT), 25_000);
    // DT in the wallets = the DT liability; the emission took its amount off Steppe's
    // correspondent account, the settlements moved the rest between the two.
    let dt: u64 = c.banks.values().map(|b| b.read(|n| n.total_dt().unwrap().tiyn())).sum();
    assert_eq!(t(dt), c.central().dt_liability());
    assert_eq!(c.corr(STEPPE) + c.corr(SAPA), 2 * CORR_START as i64 - 15_000);
}

/// Seed 37410 of the roles' simulator: the same voucher event twice in one batch while the
/// payer's bank is blocked. The second copy waits on the first's payment from its admission;
/// the attestation check refuses that payment (the attesting bank is blocked) before it
/// reaches the outbox, and both copies get that answer (the second waited for ever).
#[test]
fn the_same_event_twice_in_a_batch_refused_before_the_notary_answers_both() {
    let mut c = Cluster::new(37_410, 0, 0, 3);
    c.client(STEPPE, "100140000045", ClientKind::LegalEntity, 50_000);
    c.client(SAPA, "100140000046", ClientKind::LegalEntity, 0);
    let request = VoucherProgramRequest {
        integrator: "onay".into(),
        payer_id: "100140000045".into(),
        payee_bank: SAPA.into(),
        payee_id: "100140000046".into(),
        amount_per_event: t(1_200),
    };
    let program = c.banks[STEPPE].create_voucher_program(&request, None, c.now_ms).unwrap();
    let event = || VoucherEvent {
        program_id: program.id.clone(),
        integrator: "onay".into(),
        event_id: "tap-1".into(),
        card: None,
    };
    c.central().set_blocked(STEPPE, true, "licence review", c.now_ms).unwrap();
    c.run(5_000);
    let answers: Vec<_> = (0..2).map(|_| c.banks[STEPPE].voucher_event(event())).collect();
    c.banks[STEPPE].flush(c.now_ms);
    for answer in &answers {
        let refused = answer.try_recv().expect("answered at once").unwrap_err();
        assert_eq!(refused.code, ErrorCode::BankBlocked);
    }
    // Lifted: the event asked again is paid, once.
    c.central().set_blocked(STEPPE, false, "", c.now_ms).unwrap();
    c.run(5_000);
    let paid = c.banks[STEPPE].voucher_event(event());
    c.run(20_000);
    paid.try_recv().unwrap().unwrap();
    assert_eq!(c.dt(SAPA, "100140000046"), 1_200);
    c.assert_conserved();
}
