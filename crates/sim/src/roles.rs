//! The roles as separate simulated processes: the notary, central (the NBK), the directory,
//! the oracle and three banks, each on its own [`SimDisk`], exchanging envelopes over a [`SimNetwork`]
//! that loses, duplicates, delays and reorders them; any one role crashes (between steps, or
//! inside a commit: before the write, torn, after the write, or a write that fails while it
//! lives) and restarts on its own after a while, losing what reached it meanwhile. Clients
//! (half keep their own keys, half are custodial and send idempotency keys) pay each other;
//! central emits DT to the banks, which pay it out to their clients, and the banks redeem part
//! of their own DT at central (with idempotency keys, asked again when the bank died with the
//! answer; some ask for more than they hold). A provider registers holding events at the
//! oracle, custodial clients hold their amounts (with idempotency keys, asked again when the
//! bank died with the answer), and the provider confirms, partly pays or rejects them; the
//! oracle orders the releases. A quarter of the events are infinite: held for one to three
//! occurrences, topped up by their senders, released per occurrence (the rest kept held), and
//! rejected at the end. Custodial clients get bank money at the start and convert it
//! to DT and back. A request answered `STORAGE_FAILURE` (its outcome unknown: the bank's
//! write may have reached the disk) is asked again, as a client must. Everything comes from
//! one seed:
//! `dtenge sim --roles --seed N --trace` replays a run exactly.
//!
//! What is checked when traffic stops and every message has arrived:
//! - DT in the banks' wallets = the NBK registry's emissions minus its redemptions = the ABS
//!   DT liability (circulation = liability; conservation follows: payments neither create nor
//!   destroy);
//! - each bank's correspondent account holds what the RTGS credited, minus what was issued to
//!   it, plus what it redeemed;
//! - no emission or redemption is in the registry twice, every one is committed at the
//!   notary, and every redemption a bank was told is done is in the registry;
//! - the banks' wallets are disjoint and their union is exactly the notary's unspent set (no
//!   token spent twice, none lost, none applied twice);
//! - no acknowledged payment is lost: every transaction a client was told committed is
//!   committed at the notary;
//! - each custodial client's bank money is its deposit moved by exactly its conversions
//!   answered as committed;
//! - of the double spends the clients try, none commits twice (the set equality above);
//! - no reservation is left behind, and nothing is left in an outbox, undelivered, or
//!   waiting for central's answer to a redemption;
//! - the oracle's held registry = the DT the banks hold under `Policy::Held`, per event;
//!   every hold a client was told is done is its event's hold at the oracle and committed at
//!   the notary; every confirmed event is released (or returned) exactly once, and every
//!   event that ended (confirmed, rejected or expired) after it was held, by a committed
//!   transaction paying out exactly what was held; no hold or release is left pending at a
//!   bank or at the oracle; every event's signed records verify with the oracle's key, are
//!   numbered densely, name committed transactions only, add up to the event's amounts (ever
//!   held = released + returned + held now) and end as the event ended.
//!
//! - cards and vouchers (`cards`): each merchant's bank money = its committed converted
//!   purchases minus their refunds; each correspondent account moved by exactly the card
//!   settlements the answers imply (in the check above); what is left of each purchase at its
//!   acquirer = paid minus refunded; each voucher tap paid once (every answer names one
//!   transaction, the canteen holds the meal's price times the taps paid); no refund owed,
//!   card claim or settlement left waiting.
//!
//! The operator also blocks and unblocks banks at random: central delivers each decision to
//! the notary and every bank; what was certified before a block still completes.
//!
//! The notary and the banks write checkpoints of their unspent set and tokens between steps
//! (the operator's, as `POST /v1/operator/checkpoints` asks), and half the crashes armed on
//! their commits are armed for the first commit of a checkpoint written at once, so they land
//! inside it; the role reopens from the previous checkpoint and the log after it, and the
//! checks above (the wallets are exactly the notary's unspent set) cover what it rebuilt.

use dtenge_bank::{AccountKey, BankService, Conversion, Genesis, IdemKey, Request};
use dtenge_central::{BankKeys, CentralService, EntryKind, Totals};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{hash_parts, Address, Hash32, SecretKey};
use dtenge_core::token::{Output, TxId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::Amount;
use dtenge_directory::DirectoryService;
use dtenge_node::{Account, ClientKind, NodeKind, NodeMeta, OWN_ACCOUNT};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_oracle::service::{
    Confirmation, EventSpec, EventStatus, HoldEvent, Notice, NoticeKind, OracleService, Payee, Registration,
    TxDecision, NOTICES_PAGE_MAX,
};
use dtenge_oracle::Action;
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{Fate, SimNetwork, Transport};
use dtenge_wire::{AccountKind, Claim, Envelope, RoleId};
use parking_lot::RwLock;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

mod cards;

const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];
/// Most steps of one run: a bound on its loop.
const STEPS_MAX: u32 = 100_000;
/// How long the run goes on delivering after the last request, at most.
const DRAIN_MS_MAX: u64 = 600_000;
const TICK_MS: u64 = 50;
/// Bank money each custodial client starts with.
const DEPOSIT_TIYN: u64 = 50_000_00;

/// One-tiyn outputs of a dust payment: more than `dtenge_node::CONSOLIDATE_ABOVE_TOKENS`.
const DUST_OUTPUTS: usize = 150;
const _: () = assert!(DUST_OUTPUTS > dtenge_node::CONSOLIDATE_ABOVE_TOKENS);

/// What one run does.
#[derive(Clone, Debug)]
pub struct RolesConfig {
    /// Payments the clients send (each may be sent again after a crash).
    pub payments: u32,
    pub clients: usize,
}

impl Default for RolesConfig {
    fn default() -> RolesConfig {
        RolesConfig { payments: 40, clients: 6 }
    }
}

/// What one run did.
#[derive(Clone, Debug)]
pub struct RolesReport {
    pub seed: u64,
    pub trace_digest: Hash32,
    pub trace: Vec<String>,
    pub payments_committed: u32,
    pub payments_refused: u32,
    pub emissions: u32,
    pub redemptions: u32,
    pub redemptions_refused: u32,
    pub holds: u32,
    pub holds_refused: u32,
    /// Events the provider confirmed or rejected (each released or returned once).
    pub confirmations: u32,
    /// Occurrences of infinite events the oracle took (each releases and keeps the rest).
    pub infinite_occurrences: u32,
    /// Card purchases answered committed, and voucher taps paid (`cards`).
    pub card_purchases: u32,
    pub voucher_taps_paid: u32,
    pub restarts: u32,
    pub commit_crashes: u32,
    /// Checkpoints of the notary's unspent set written, and crashes that landed inside one.
    pub notary_checkpoints: u32,
    pub notary_checkpoint_crashes: u32,
    /// Checkpoints of the banks' tokens written, and crashes that landed inside one.
    pub bank_checkpoints: u32,
    pub bank_checkpoint_crashes: u32,
    pub messages_lost: u64,
    pub messages_duplicated: u64,
    pub torn_records_discarded: u64,
    /// Dust payments sent (a bank paying a custodial client 150 one-tiyn tokens).
    pub dust_payments: u32,
    /// The most standard tokens a custodial client may spend at the end: what the banks'
    /// background consolidation leaves.
    pub custodial_tokens_max: usize,
}

/// A broken invariant, with the run's trace.
#[derive(Clone, Debug)]
pub struct RolesFailure {
    pub seed: u64,
    pub violation: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for RolesFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {}: {} (replay: dtenge sim --roles --seed {} --trace)", self.seed, self.violation, self.seed)
    }
}

/// The seed's fault rates (swarm testing: some runs calm, some harsh).
struct SeededFaults {
    rng: ChaCha20Rng,
    lose_permille: u32,
    duplicate_permille: u32,
    delay_ms_max: u64,
}

impl dtenge_transport::Faults for SeededFaults {
    fn fate(&mut self, _: &RoleId, _: &RoleId) -> Fate {
        let roll = self.rng.gen_range(0..1000);
        let delay_ms = self.rng.gen_range(0..=self.delay_ms_max);
        if roll < self.lose_permille {
            Fate::Lose
        } else if roll < self.lose_permille + self.duplicate_permille {
            Fate::Duplicate { delay_ms, again_ms: self.rng.gen_range(0..=3 * self.delay_ms_max) }
        } else {
            Fate::Deliver { delay_ms }
        }
    }
}

/// The banks' view of the directory: its read model, swapped when the directory restarts.
/// (The banks do not yet claim accounts through messages; the simulation claims for them.)
struct DirectoryView(Arc<RwLock<Option<Arc<DirectoryService>>>>);

impl dtenge_bank::Directory for DirectoryView {
    fn bank_of(&self, address: &Address) -> dtenge_core::Result<Option<String>> {
        let Some(service) = self.0.read().clone() else {
            return Err(dtenge_core::Error::new(
                dtenge_core::ErrorCode::RequestInProgress,
                "the directory cannot be reached; retry",
            ));
        };
        Ok(service.read(|d| d.by_address(address).map(|l| l.bank.clone())))
    }

    /// Clients by id (the merchants, the canteen): as the assembly's banks find them.
    fn find(&self, who: dtenge_bank::Who<'_>, bank: Option<&str>) -> dtenge_core::Result<Option<dtenge_bank::Found>> {
        let Some(service) = self.0.read().clone() else {
            return Err(dtenge_core::Error::new(
                dtenge_core::ErrorCode::RequestInProgress,
                "the directory cannot be reached; retry",
            ));
        };
        Ok(service.read(|d| {
            let listing = match who {
                dtenge_bank::Who::Phone(phone) => d.by_phone(phone, bank),
                dtenge_bank::Who::Client(client) => d.by_client(client, bank),
            };
            listing.map(|l| dtenge_bank::Found { address: l.address, bank: l.bank.clone(), kind: l.kind })
        }))
    }
}

#[derive(Clone)]
struct Client {
    bank: &'static str,
    id: String,
    key: SecretKey,
    custodial: bool,
}

/// A request waiting for its answer; sent again if its role died with it.
struct Waiting {
    what: String,
    bank: &'static str,
    request: Request,
    idem: Option<IdemKey>,
    answer: dtenge_bank::Answer,
}

/// A redemption waiting for its answer; asked again (same key) if its bank died with it.
struct RedeemWaiting {
    bank: &'static str,
    amount: Amount,
    idem: IdemKey,
    answer: dtenge_bank::Answer,
}

/// A hold waiting for its answer; asked again (same key) if its bank died with it.
struct HoldWaiting {
    client: usize,
    event_id: String,
    amount: Amount,
    payee: Address,
    idem: IdemKey,
    answer: dtenge_bank::Answer,
}

/// An event the provider registered.
struct SimEvent {
    id: String,
    /// The client whose funds it holds.
    sender: usize,
    /// Infinite: held once or more, released per occurrence until what it holds runs out.
    infinite: bool,
    /// Each payee and its share.
    payees: Vec<(Address, Amount)>,
    /// The provider's confirmation that ends it was taken (a single event's occurrence or
    /// rejection, an infinite one's rejection).
    confirmed: bool,
}

/// The provider's id at the oracle.
const PROVIDER: &str = "registry";

/// What the RTGS credited to each bank's correspondent account (tiyn).
const CREDITED_TIYN: u64 = 10_000_000_00;

struct Sim {
    seed: u64,
    rng: ChaCha20Rng,
    config: RolesConfig,
    now_ms: u64,
    net: Arc<SimNetwork<SeededFaults>>,
    disks: BTreeMap<RoleId, SimDisk>,
    down_until: BTreeMap<RoleId, u64>,
    notary: Option<NotaryService>,
    central: Option<CentralService>,
    oracle: Option<OracleService>,
    directory: Arc<RwLock<Option<Arc<DirectoryService>>>>,
    banks: BTreeMap<&'static str, BankService>,
    clients: Vec<Client>,
    waiting: Vec<Waiting>,
    emissions_waiting: Vec<(&'static str, Amount, IdemKey, dtenge_central::Answer)>,
    redemptions_waiting: Vec<RedeemWaiting>,
    /// Keys of the redemptions asked for so far: each new one gets the next.
    redemptions_asked: u64,
    /// Keys of the emissions asked for so far.
    emissions_asked: u64,
    /// Keys of the holds asked for so far (new events' and top-ups): each new one gets the next.
    holds_asked: u64,
    acknowledged: Vec<TxId>,
    /// Each custodial client's bank money as its answers say: deposited at the start, moved
    /// by every conversion answered as committed.
    fiat_expected: BTreeMap<String, u64>,
    /// Redemptions a bank answered as done.
    redeemed: Vec<TxId>,
    events: Vec<SimEvent>,
    holds_waiting: Vec<HoldWaiting>,
    /// Holds a bank answered as done: (event, transaction).
    held: Vec<(String, TxId)>,
    /// Banks the operator still has to unblock at the end.
    to_unblock: Vec<&'static str>,
    /// Banks the operator has blocked (as central recorded it).
    blocked: std::collections::BTreeSet<&'static str>,
    /// Cards and vouchers (`cards`).
    cards: cards::CardSim,
    report: RolesReport,
}

fn key(domain: &str, n: u64) -> SecretKey {
    SecretKey::from_seed(hash_parts(b"dtenge/sim/roles/key", &[domain.as_bytes(), &n.to_le_bytes()]).0)
}

fn node_key(bank: &str) -> SecretKey {
    key(bank, 0)
}

fn own_key(bank: &str) -> SecretKey {
    key(bank, 1)
}

fn bank_role(bank: &str) -> RoleId {
    RoleId::Bank(bank.to_string())
}

/// Run one seed of the roles' simulation.
pub fn run_roles(seed: u64, config: &RolesConfig) -> Result<RolesReport, RolesFailure> {
    let mut sim = Sim::new(seed, config);
    match sim.run() {
        Ok(()) => Ok(sim.finish()),
        Err(violation) => Err(RolesFailure { seed, violation, trace: sim.report.trace }),
    }
}

/// Run `count` seeds from `first`, stopping at the first failure.
pub fn run_roles_seeds(first: u64, count: u64, config: &RolesConfig) -> Result<Vec<RolesReport>, RolesFailure> {
    (first..first.saturating_add(count)).map(|seed| run_roles(seed, config)).collect()
}

impl Sim {
    fn new(seed: u64, config: &RolesConfig) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let lose_permille = [0, 10, 50, 150][rng.gen_range(0..4)];
        let duplicate_permille = [0, 20, 100][rng.gen_range(0..3)];
        let delay_ms_max = [0, 5, 40, 200][rng.gen_range(0..4)];
        let faults = SeededFaults {
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0x006e_6574_776f_726b),
            lose_permille,
            duplicate_permille,
            delay_ms_max,
        };
        let mut roles: Vec<RoleId> = vec![RoleId::Notary, RoleId::Central, RoleId::Directory, RoleId::Oracle];
        roles.extend(BANKS.iter().map(|b| bank_role(b)));
        let mut sim = Sim {
            seed,
            rng,
            config: config.clone(),
            now_ms: 0,
            net: Arc::new(SimNetwork::new(faults)),
            disks: roles.iter().map(|r| (r.clone(), SimDisk::new())).collect(),
            down_until: BTreeMap::new(),
            notary: None,
            central: None,
            oracle: None,
            directory: Arc::new(RwLock::new(None)),
            banks: BTreeMap::new(),
            clients: Vec::new(),
            waiting: Vec::new(),
            emissions_waiting: Vec::new(),
            redemptions_waiting: Vec::new(),
            redemptions_asked: 0,
            emissions_asked: 0,
            holds_asked: 0,
            acknowledged: Vec::new(),
            fiat_expected: BTreeMap::new(),
            redeemed: Vec::new(),
            events: Vec::new(),
            holds_waiting: Vec::new(),
            held: Vec::new(),
            to_unblock: Vec::new(),
            blocked: Default::default(),
            cards: Default::default(),
            report: RolesReport {
                seed,
                trace_digest: Hash32([0; 32]),
                trace: Vec::new(),
                payments_committed: 0,
                payments_refused: 0,
                emissions: 0,
                redemptions: 0,
                redemptions_refused: 0,
                holds: 0,
                holds_refused: 0,
                confirmations: 0,
                infinite_occurrences: 0,
                card_purchases: 0,
                voucher_taps_paid: 0,
                restarts: 0,
                commit_crashes: 0,
                notary_checkpoints: 0,
                notary_checkpoint_crashes: 0,
                bank_checkpoints: 0,
                bank_checkpoint_crashes: 0,
                messages_lost: 0,
                messages_duplicated: 0,
                torn_records_discarded: 0,
                dust_payments: 0,
                custodial_tokens_max: 0,
            },
        };
        sim.trace(format!("faults: lose {lose_permille}‰, duplicate {duplicate_permille}‰, delay ≤ {delay_ms_max} ms"));
        for role in roles {
            sim.start(&role);
        }
        sim.open_the_days();
        sim
    }

    /// The clock starts at the Unix epoch: 1970-01-01 in Astana is New Year's Day, the 2nd a
    /// holiday too, the 3rd and 4th a weekend, and central takes emissions and redemptions on
    /// operational days only. A run lasts minutes of simulated time; the NBK operator opens
    /// those four days (durably, in central's store) so that conversions run throughout.
    fn open_the_days(&mut self) {
        let central = self.central.as_ref().expect("central opened on a fresh disk");
        for day in 1..=4 {
            let date = dtenge_core::calendar::Date::new(1970, 1, day).expect("a date of January 1970");
            central.set_day(date, true, self.now_ms).expect("the operator opens a day on a fresh disk");
        }
        self.trace("the operator opens 1970-01-01 to 1970-01-04 for conversions".to_string());
    }

    fn trace(&mut self, line: String) {
        self.report.trace.push(format!("{:>8} ms  {line}", self.now_ms));
    }

    fn anchors() -> Anchors {
        Anchors {
            issuer: key("nbk", 0).address(),
            central_bank: key("nbk", 0).public_key(),
            oracle: key("oracle", 0).public_key(),
            notary: key("notary", 0).public_key(),
            banks: BANKS.iter().map(|b| (b.to_string(), node_key(b).public_key())).collect(),
            blocked: Default::default(),
        }
    }

    /// Open a role on its disk (its first start, or a restart).
    fn start(&mut self, role: &RoleId) {
        let disk = self.disks[role].clone();
        let net: Arc<dyn Transport> = self.net.clone();
        let opened = match role {
            RoleId::Notary => Store::open_simulated(disk, &dtenge_notary::service::tables()).and_then(|store| {
                let a = Sim::anchors();
                let senders = Senders { central_bank: a.central_bank, banks: a.banks, blocked: a.blocked };
                self.notary = Some(NotaryService::open(store, key("notary", 0), senders)?);
                Ok(())
            }),
            RoleId::Central => Store::open_simulated(disk, &dtenge_central::tables()).and_then(|store| {
                let banks = BANKS
                    .iter()
                    .map(|b| {
                        (b.to_string(), BankKeys { own: own_key(b).address(), node_key: node_key(b).public_key() })
                    })
                    .collect();
                let notary = key("notary", 0).public_key();
                self.central = Some(CentralService::open(store, key("nbk", 0), notary, banks, net)?);
                Ok(())
            }),
            RoleId::Directory => Store::open_simulated(disk, &dtenge_directory::tables()).and_then(|store| {
                *self.directory.write() = Some(Arc::new(DirectoryService::open(store)?));
                Ok(())
            }),
            RoleId::Bank(id) => {
                let bank = BANKS.iter().find(|b| *b == id).expect("a simulated bank");
                Store::open_simulated(disk, &dtenge_bank::tables()).and_then(|store| {
                    let genesis = Genesis {
                        meta: NodeMeta { id: id.clone(), kind: NodeKind::Bank, name: format!("{id} bank") },
                        node_key: node_key(id).into(),
                        own_key: own_key(id),
                        custody: dtenge_node::Custody::new([77; 32]),
                        now_ms: 0,
                    };
                    let view = Arc::new(DirectoryView(self.directory.clone()));
                    self.banks.insert(bank, BankService::open(store, genesis, Sim::anchors(), net, view)?);
                    Ok(())
                })
            }
            RoleId::Oracle => Store::open_simulated(disk, &dtenge_oracle::service::tables()).and_then(|store| {
                self.oracle = Some(OracleService::open(store, key("oracle", 0), Sim::anchors(), net)?);
                Ok(())
            }),
            RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. } => {
                unreachable!("the simulator runs the notary as one role, not as replicas")
            }
        };
        // A role whose disk does not open is a bug in recovery, which this simulation exists to
        // catch.
        opened.unwrap_or_else(|e| panic!("seed {}: {role} does not reopen: {e}", self.seed));
        self.net.up(role);
    }
}

impl Sim {
    fn run(&mut self) -> Result<(), String> {
        self.open_accounts()?;
        self.deposit_bank_money()?;
        self.fund_banks();
        self.run_for(5_000);
        self.open_shops()?;
        let mut sent = 0;
        for _ in 0..STEPS_MAX {
            if sent >= self.config.payments {
                break;
            }
            match self.rng.gen_range(0..100) {
                0..=59 => {
                    self.pay();
                    sent += 1;
                }
                60..=64 => self.emit(),
                65..=69 => self.crash_a_role(),
                70..=71 => self.toggle_block(),
                72..=76 => self.redeem(),
                77..=80 => self.register_and_hold(),
                81 => self.top_up(),
                82..=85 => self.confirm(),
                86..=91 => self.card_step(),
                92..=94 => self.checkpoint(&RoleId::Notary),
                95..=97 => {
                    let bank = RoleId::Bank(BANKS[self.rng.gen_range(0..BANKS.len())].into());
                    self.checkpoint(&bank);
                }
                _ => {}
            }
            let advance_ms = self.rng.gen_range(0..=TICK_MS);
            self.run_for(advance_ms);
        }
        self.drain()?;
        self.check()
    }

    /// Every client gets an account at its bank: the bank claims it at the directory over the
    /// (faulty) network, then opens it. The banks' own accounts are listed directly.
    fn open_accounts(&mut self) -> Result<(), String> {
        for bank in BANKS {
            let own = Claim {
                client_id: OWN_ACCOUNT.into(),
                address: own_key(bank).address(),
                kind: AccountKind::Institution,
                display_name: bank.into(),
                phone: None,
            };
            let directory = self.directory.read().clone().expect("the directory is up at the start");
            directory.claim(bank, &own).map_err(|e| format!("claim: {e}"))?;
        }
        let mut openings = Vec::new();
        for n in 0..self.config.clients {
            let bank = BANKS[n % BANKS.len()];
            let custodial = n % 2 == 1;
            let client = Client {
                bank,
                id: format!("{:012}", 900_000_000_000u64 + n as u64),
                key: key("client", n as u64),
                custodial,
            };
            let account = Account {
                client_id: client.id.clone(),
                node_id: bank.into(),
                kind: ClientKind::Individual,
                name: format!("Client {n}"),
                phone: Some(format!("+7701{:07}", n)),
                address: client.key.address(),
                opened_at_unix_ms: 0,
            };
            let key = match client.custodial {
                true => AccountKey::Custodial(client.key.clone()),
                false => AccountKey::Client(client.key.public_key()),
            };
            openings.push(self.banks[bank].claim_account(account, key, self.now_ms));
            self.clients.push(client);
        }
        self.run_for(10_000);
        for (n, opening) in openings.into_iter().enumerate() {
            match opening.try_recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("client {n}'s account was refused: {e}")),
                Err(_) => return Err(format!("client {n}'s account was not opened within 10 s")),
            }
        }
        Ok(())
    }

    /// Every custodial client gets bank money to convert (before any role crashes, so each
    /// deposit is known to be durable).
    fn deposit_bank_money(&mut self) -> Result<(), String> {
        for client in self.clients.iter().filter(|c| c.custodial) {
            let bank = self.banks.get(client.bank).ok_or("a bank is down at the start")?;
            let amount = Amount::from_tiyn(DEPOSIT_TIYN).expect("fits");
            bank.deposit_fiat(&client.id, amount).map_err(|e| format!("deposit: {e}"))?;
            self.fiat_expected.insert(client.id.clone(), DEPOSIT_TIYN);
        }
        Ok(())
    }

    /// Money on every bank's correspondent account, and a first emission to each.
    fn fund_banks(&mut self) {
        for bank in BANKS {
            let central = self.central.as_ref().expect("central is up at the start");
            central.credit_correspondent(bank, Amount::from_tiyn(CREDITED_TIYN).expect("fits"), 0).expect("credit");
            let amount = Amount::from_tiyn(100_000_00).expect("fits");
            self.emit_to(bank, amount);
        }
    }

    fn emit(&mut self) {
        let bank = BANKS[self.rng.gen_range(0..BANKS.len())];
        let amount = Amount::from_tiyn(self.rng.gen_range(1_000_00..50_000_00)).expect("fits");
        self.emit_to(bank, amount);
    }

    fn emit_to(&mut self, bank: &'static str, amount: Amount) {
        // A key never given before (counting the emissions waiting and done would give a
        // refused one's key again), and a fingerprint of what it asks.
        let n = self.emissions_asked;
        self.emissions_asked += 1;
        let fingerprint = hash_parts(b"emit", &[&n.to_le_bytes(), bank.as_bytes(), &amount.tiyn().to_le_bytes()]);
        let idem = IdemKey { key: format!("emit-{n}"), fingerprint };
        self.trace(format!("emit {amount} to {bank} ({})", idem.key));
        let Some(central) = &self.central else { return };
        let answer = central.emit(bank, amount, Some(to_central_idem(&idem)), self.now_ms);
        self.emissions_waiting.push((bank, amount, idem, answer));
    }

    /// A bank redeems part of its own DT at central (sometimes more than it holds).
    fn redeem(&mut self) {
        let bank = BANKS[self.rng.gen_range(0..BANKS.len())];
        let Some(service) = self.banks.get(bank) else { return };
        let available_tiyn = service.read(|n| {
            n.balance(OWN_ACCOUNT).map(|b| b.dt_tiyn.tiyn().saturating_sub(b.dt_reserved_tiyn.tiyn())).unwrap_or(0)
        });
        let amount_tiyn = if self.rng.gen_bool(0.15) || available_tiyn < 2 {
            available_tiyn + self.rng.gen_range(1..1_000_00)
        } else {
            self.rng.gen_range(1..=available_tiyn / 2)
        };
        let amount = Amount::from_tiyn(amount_tiyn).expect("within the bank's DT");
        let n = self.redemptions_asked;
        self.redemptions_asked += 1;
        let idem = IdemKey { key: format!("redeem-{n}"), fingerprint: hash_parts(b"redeem", &[&n.to_le_bytes()]) };
        self.trace(format!("{bank} redeems {amount} ({})", idem.key));
        let Some(service) = self.banks.get(bank) else { return };
        let answer = service.redeem(amount, Some(idem.clone()), self.now_ms);
        self.redemptions_waiting.push(RedeemWaiting { bank, amount, idem, answer });
    }

    /// A provider registers a holding event for a custodial client, paying one or two other
    /// clients; the client holds its amount at once (sometimes a wrong amount, or for a payee
    /// the event does not pay: the oracle refuses those).
    fn register_and_hold(&mut self) {
        let custodial: Vec<usize> = (0..self.clients.len()).filter(|&n| self.clients[n].custodial).collect();
        if custodial.is_empty() {
            return;
        }
        let sender = custodial[self.rng.gen_range(0..custodial.len())];
        let mut payees: Vec<usize> = Vec::new();
        for _ in 0..self.rng.gen_range(1..=2) {
            let payee = self.rng.gen_range(0..self.clients.len());
            if payee != sender && !payees.contains(&payee) {
                payees.push(payee);
            }
        }
        let Some(&first) = payees.first() else { return };
        let shares: Vec<Payee> = payees
            .iter()
            .map(|&p| Payee {
                bank: self.clients[p].bank.to_string(),
                address: self.clients[p].key.address(),
                amount_tiyn: Amount::from_tiyn(self.rng.gen_range(1_00..2_000_00)).expect("fits"),
            })
            .collect();
        let mut amount = Amount::sum(shares.iter().map(|p| p.amount_tiyn)).expect("two small shares");
        // Some are infinite: held for one to three occurrences, released per occurrence.
        let infinite = self.rng.gen_bool(0.25);
        if infinite {
            amount = Amount::from_tiyn(amount.tiyn() * self.rng.gen_range(1..=3)).expect("small");
        }
        // Some events end soon: expired before (or while) they are held or confirmed.
        let valid_until_ms =
            if self.rng.gen_bool(0.3) { self.now_ms + self.rng.gen_range(100..3_000) } else { u64::MAX };
        let spec = EventSpec {
            reference: format!("contract {}", self.events.len()),
            sender_bank: self.clients[sender].bank.to_string(),
            sender: self.clients[sender].key.address(),
            payees: shares.clone(),
            valid_until_ms,
        };
        let Some(oracle) = &self.oracle else { return };
        let registration = Registration { infinite, ..Registration::default() };
        let id = match oracle.register_event_with(PROVIDER, spec, registration, self.now_ms) {
            Ok(id) => id,
            Err(e) => return self.trace(format!("event registration refused {}", e.code)),
        };
        let kind = if infinite { "infinite" } else { "single" };
        self.trace(format!("{PROVIDER} registers {kind} {id}: {} holds {amount}", self.clients[sender].id));
        let payees = shares.iter().map(|p| (p.address, p.amount_tiyn)).collect();
        self.events.push(SimEvent { id: id.clone(), sender, infinite, payees, confirmed: false });
        let (amount, payee) = match self.rng.gen_range(0..20) {
            0 => (Amount::from_tiyn(amount.tiyn() + 1).expect("fits"), self.clients[first].key.address()),
            1 => (amount, self.clients[sender].key.address()),
            _ => (amount, self.clients[first].key.address()),
        };
        let idem = self.hold_key(&id, amount, &payee);
        self.hold(sender, id, amount, payee, idem);
    }

    /// The sender of an infinite event holds more for it (while it is held: a top-up; when
    /// not, the oracle refuses).
    fn top_up(&mut self) {
        let infinite: Vec<usize> = (0..self.events.len()).filter(|&i| self.events[i].infinite).collect();
        if infinite.is_empty() {
            return;
        }
        let i = infinite[self.rng.gen_range(0..infinite.len())];
        let (sender, event_id, payee) = (self.events[i].sender, self.events[i].id.clone(), self.events[i].payees[0].0);
        let amount = Amount::from_tiyn(self.rng.gen_range(1_00..2_000_00)).expect("fits");
        let idem = self.hold_key(&event_id, amount, &payee);
        self.trace(format!("{} tops {event_id} up by {amount}", self.clients[sender].id));
        self.hold(sender, event_id, amount, payee, idem);
    }

    /// A new hold's idempotency key, never given before, and its fingerprint, of what it asks
    /// (a client's key for each request: seed 382 gave a new event's hold and the top-up of
    /// another, asked one after the other, one key taken from the trace's length and a
    /// fingerprint of that number alone; the bank, rightly, answered the second with the
    /// first's payment).
    fn hold_key(&mut self, event_id: &str, amount: Amount, payee: &Address) -> IdemKey {
        let n = self.holds_asked;
        self.holds_asked += 1;
        let fingerprint =
            hash_parts(b"hold", &[&n.to_le_bytes(), event_id.as_bytes(), &amount.tiyn().to_le_bytes(), &payee.0 .0]);
        IdemKey { key: format!("hold-{n}"), fingerprint }
    }

    fn hold(&mut self, client: usize, event_id: String, amount: Amount, payee: Address, idem: IdemKey) {
        let c = &self.clients[client];
        let answer = match self.banks.get(c.bank) {
            Some(bank) => bank.hold(&c.id, &event_id, amount, payee, Some(idem.clone()), self.now_ms),
            None => dtenge_sync::oneshot::channel().1,
        };
        self.holds_waiting.push(HoldWaiting { client, event_id, amount, payee, idem, answer });
    }

    /// The provider confirms an event: every payee its share, one payee half of it, or a
    /// rejection (everything back to the sender).
    fn confirm(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let open: Vec<usize> = (0..self.events.len()).filter(|&i| !self.events[i].confirmed).collect();
        if open.is_empty() {
            return;
        }
        let i = open[self.rng.gen_range(0..open.len())];
        let confirmation = match self.rng.gen_range(0..4) {
            0 => Confirmation::Rejected,
            1 => {
                let (to, share) = self.events[i].payees[0];
                let half = Amount::from_tiyn(share.tiyn().div_ceil(2)).expect("within the share");
                Confirmation::Occurred { payouts: Some(vec![(to, half)]) }
            }
            _ => Confirmation::Occurred { payouts: None },
        };
        self.confirm_event(i, confirmation);
    }

    fn confirm_event(&mut self, i: usize, confirmation: Confirmation) {
        if self.events[i].confirmed {
            return;
        }
        let Some(oracle) = &self.oracle else { return };
        let id = self.events[i].id.clone();
        match oracle.confirm_event(PROVIDER, &id, confirmation.clone(), self.now_ms) {
            Ok(()) => {
                // An infinite event's occurrence pays and keeps the rest held: more may come.
                let ends = !self.events[i].infinite || confirmation == Confirmation::Rejected;
                self.events[i].confirmed = ends;
                if !ends {
                    self.report.infinite_occurrences += 1;
                }
                self.report.confirmations += 1;
                self.trace(format!("{PROVIDER} confirms {id}: {confirmation:?}"));
            }
            Err(e) => self.trace(format!("{PROVIDER}'s confirmation of {id} refused {}", e.code)),
        }
    }

    /// At the end, the provider confirms every single event still held; an infinite one
    /// occurs while it holds a whole occurrence, and is rejected then (what it still holds
    /// goes back to the sender).
    fn confirm_held(&mut self) {
        let Some(oracle) = &self.oracle else { return };
        let held: Vec<usize> = (0..self.events.len())
            .filter(|&i| {
                !self.events[i].confirmed
                    && oracle
                        .event(&self.events[i].id)
                        .is_some_and(|e| e.status == EventStatus::Held && e.pending.is_none())
            })
            .collect();
        for i in held {
            let occurs = match &self.oracle {
                Some(oracle) if self.events[i].infinite => {
                    oracle.event(&self.events[i].id).is_some_and(|e| e.held_tiyn >= e.amount_tiyn)
                }
                _ => true,
            };
            let end = if occurs { Confirmation::Occurred { payouts: None } } else { Confirmation::Rejected };
            self.confirm_event(i, end);
        }
    }

    /// At the end, the operator lifts every block, once per bank: also the blocks whose answer
    /// was a failed commit that reached the disk anyway (seed 262: a bank blocked for good
    /// released nothing, and its event waited for ever).
    fn lift_blocks(&mut self) {
        for bank in std::mem::take(&mut self.to_unblock) {
            let lifted = self.central.as_ref().map(|c| c.set_blocked(bank, false, "traffic stopped", self.now_ms));
            match lifted {
                Some(Ok(())) => {
                    self.blocked.remove(bank);
                    self.trace(format!("operator unblocks {bank} (the end)"));
                }
                _ => self.to_unblock.push(bank),
            }
        }
    }

    /// Take the holds' answers; one whose bank died with it is asked again under its key.
    fn resolve_holds(&mut self) {
        for w in std::mem::take(&mut self.holds_waiting) {
            match w.answer.try_recv() {
                Ok(Ok(committed)) => {
                    self.trace(format!("{} held for {}: {}", self.clients[w.client].id, w.event_id, committed.tx_id));
                    self.held.push((w.event_id, committed.tx_id));
                    self.report.holds += 1;
                }
                Ok(Err(e)) => {
                    self.trace(format!("{} hold for {}: refused {}", self.clients[w.client].id, w.event_id, e.code));
                    self.report.holds_refused += 1;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => self.holds_waiting.push(w),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.hold(w.client, w.event_id, w.amount, w.payee, w.idem);
                }
            }
        }
    }

    /// A client pays another (or, sometimes, tries to spend a token twice).
    fn pay(&mut self) {
        let from = self.rng.gen_range(0..self.clients.len() + BANKS.len());
        let to = self.clients[self.rng.gen_range(0..self.clients.len())].key.address();
        if from >= self.clients.len() && self.rng.gen_bool(0.1) {
            // Dust: a bank pays one of its custodial clients 150 one-tiyn tokens in one payment,
            // past `CONSOLIDATE_ABOVE_TOKENS`, so that the bank's background consolidation
            // (issue 19) races the other payments, the crashes and the lost messages.
            let bank = BANKS[from - self.clients.len()];
            let Some(client) = self.clients.iter().find(|c| c.custodial && c.bank == bank).cloned() else { return };
            let payees = vec![(client.key.address(), Amount::from_tiyn(1).expect("fits")); DUST_OUTPUTS];
            let request = Request::Pay { client_id: OWN_ACCOUNT.into(), payees };
            self.submit(format!("{bank} pays {} {DUST_OUTPUTS} one-tiyn tokens", client.id), bank, request, true);
            self.report.dust_payments += 1;
            return;
        }
        if from >= self.clients.len() {
            // A bank pays one of the clients from its own account: how emitted DT reaches them.
            let bank = BANKS[from - self.clients.len()];
            let amount = Amount::from_tiyn(self.rng.gen_range(100_00..20_000_00)).expect("fits");
            let request = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(to, amount)] };
            self.submit(format!("{bank} pays {amount} out"), bank, request, true);
            return;
        }
        let client = self.clients[from].clone();
        if client.custodial && self.rng.gen_bool(0.2) {
            // Bank money to DT or back, some beyond what the client holds.
            let direction = if self.rng.gen_bool(0.5) { Conversion::ToDt } else { Conversion::FromDt };
            let amount = Amount::from_tiyn(self.rng.gen_range(1_00..30_000_00)).expect("fits");
            let request = Request::Convert { client_id: client.id.clone(), direction, amount };
            self.submit(format!("{} converts {amount} {direction:?}", client.id), client.bank, request, true);
            return;
        }
        if client.custodial {
            let amount = Amount::from_tiyn(self.rng.gen_range(1_00..5_000_00)).expect("fits");
            let request = Request::Pay { client_id: client.id.clone(), payees: vec![(to, amount)] };
            self.submit(format!("{} pays {amount}", client.id), client.bank, request, true);
            return;
        }
        let Some(bank) = self.banks.get(client.bank) else { return };
        let inputs = bank.read(|n| n.spendable_inputs(&client.id)).unwrap_or_default();
        let Some(input) = inputs.first().cloned() else { return };
        let amount = self.rng.gen_range(1..=input.output.amount_tiyn.tiyn());
        let issuer = key("nbk", 0).address();
        let tx = signed_payment(&client.key, input.clone(), to, amount, issuer, 0);
        self.submit(format!("{} signs {}", client.id, tx.id()), client.bank, Request::Signed(tx), false);
        if self.rng.gen_bool(0.2) {
            // The same token again, to someone else: at most one of the two commits.
            let other = signed_payment(&client.key, input, client.key.address(), amount, issuer, 1);
            self.submit(
                format!("{} double-spends {}", client.id, other.id()),
                client.bank,
                Request::Signed(other),
                false,
            );
        }
    }

    fn submit(&mut self, what: String, bank: &'static str, request: Request, with_key: bool) {
        let idem = with_key.then(|| {
            let n = self.report.trace.len() as u64;
            IdemKey { key: format!("pay-{n}"), fingerprint: hash_parts(b"pay", &[what.as_bytes()]) }
        });
        self.trace(format!("{what} at {bank}"));
        let Some(service) = self.banks.get(bank) else { return };
        let answer = service.submit(request.clone(), idem.clone());
        service.flush(self.now_ms);
        self.waiting.push(Waiting { what, bank, request, idem, answer });
    }

    /// The operator blocks a bank, or lifts a block: whatever is certified meanwhile must still
    /// complete everywhere.
    fn toggle_block(&mut self) {
        let bank = BANKS[self.rng.gen_range(0..BANKS.len())];
        let Some(central) = &self.central else { return };
        let blocked = !self.blocked.contains(bank);
        match central.set_blocked(bank, blocked, "simulated operator decision", self.now_ms) {
            Ok(()) => {
                if blocked {
                    self.blocked.insert(bank);
                } else {
                    self.blocked.remove(bank);
                }
                self.trace(format!("operator {} {bank}", if blocked { "blocks" } else { "unblocks" }));
            }
            Err(e) => self.trace(format!("operator decision on {bank} refused: {}", e.code)),
        }
    }

    /// Crash one role now, or inside one of its next commits.
    fn crash_a_role(&mut self) {
        let roles: Vec<RoleId> = self.disks.keys().cloned().collect();
        let role = roles[self.rng.gen_range(0..roles.len())].clone();
        if self.down_until.contains_key(&role) {
            return;
        }
        let mode = match self.rng.gen_range(0..5) {
            0 => None,
            1 => Some(CrashMode::BeforeWrite),
            2 => Some(CrashMode::Torn { kept_bytes_permille: self.rng.gen_range(1..1000) }),
            3 => Some(CrashMode::AfterWrite),
            _ => Some(CrashMode::FailedWrite { written: self.rng.gen_bool(0.5) }),
        };
        match mode {
            None => self.take_down(role, "crashes"),
            Some(mode) if matches!(role, RoleId::Notary | RoleId::Bank(_)) && self.rng.gen_bool(0.5) => {
                // Inside a checkpoint: its first commit (of one, for a set this small: the
                // chunk and the switch).
                self.trace(format!("{role}: crash armed in its next commit, a checkpoint's ({mode:?})"));
                self.disks[&role].arm_crash(1, mode);
                self.checkpoint(&role);
                assert!(
                    self.down_until.contains_key(&role),
                    "seed {}: the crash armed for the checkpoint's commit hit it",
                    self.seed
                );
                match role {
                    RoleId::Notary => self.report.notary_checkpoint_crashes += 1,
                    _ => self.report.bank_checkpoint_crashes += 1,
                }
            }
            Some(mode) => {
                let commits = self.rng.gen_range(1..4);
                self.trace(format!("{role}: crash armed in its commit {commits} from now ({mode:?})"));
                self.disks[&role].arm_crash(commits, mode);
            }
        }
    }

    /// The operator asks `role` for a checkpoint (if it is up): the notary's of its unspent
    /// set, a bank's of its tokens (each also writes one by itself when one is due).
    fn checkpoint(&mut self, role: &RoleId) {
        let (written, report) = match role {
            RoleId::Notary => match &self.notary {
                Some(notary) => (notary.checkpoint(), &mut self.report.notary_checkpoints),
                None => return,
            },
            RoleId::Bank(id) => match self.banks.get(id.as_str()) {
                Some(bank) => (bank.checkpoint(), &mut self.report.bank_checkpoints),
                None => return,
            },
            _ => unreachable!("only the notary and the banks keep state as a log plus checkpoints"),
        };
        let line = match written {
            Ok(w) => {
                *report += 1;
                format!(
                    "{role}: checkpoint {} of {} items, {} log rows deleted",
                    w.generation, w.items, w.log_rows_deleted
                )
            }
            Err(e) => format!("{role}: checkpoint failed: {}", e.code),
        };
        self.trace(line);
        self.reap_crashed();
    }

    fn take_down(&mut self, role: RoleId, why: &str) {
        let downtime_ms = self.rng.gen_range(10..2_000);
        self.trace(format!("{role} {why}; back in {downtime_ms} ms"));
        self.net.down(role.clone());
        match &role {
            RoleId::Notary => self.notary = None,
            RoleId::Central => self.central = None,
            RoleId::Directory => *self.directory.write() = None,
            RoleId::Bank(id) => {
                self.banks.retain(|b, _| *b != id.as_str());
            }
            RoleId::Oracle => self.oracle = None,
            RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. } => {
                unreachable!("the simulator runs the notary as one role, not as replicas")
            }
        }
        self.disks[&role].disarm();
        self.down_until.insert(role, self.now_ms + downtime_ms);
        self.report.restarts += 1;
    }

    /// Deliver, tick and restart for `ms` of simulated time.
    fn run_for(&mut self, ms: u64) {
        let end_ms = self.now_ms + ms;
        loop {
            while let Some(envelope) = self.net.pop_due(self.now_ms) {
                self.dispatch(envelope);
                self.reap_crashed();
            }
            self.restart_due();
            self.resolve_answers();
            self.resolve_redemptions();
            self.resolve_holds();
            self.resolve_cards();
            if self.now_ms >= end_ms {
                return;
            }
            let next_ms =
                self.net.next_due().unwrap_or(end_ms).min(end_ms).min(self.now_ms + TICK_MS).max(self.now_ms + 1);
            self.now_ms = next_ms;
            self.net.set_now(self.now_ms);
            self.tick();
            self.reap_crashed();
        }
    }

    fn dispatch(&mut self, envelope: Envelope) {
        match &envelope.to {
            // No role of the simulator addresses a replica (it runs the notary as one role).
            RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. } => {}
            RoleId::Notary => {
                if let Some(reply) = self.notary.as_ref().and_then(|n| n.handle(envelope)) {
                    let _ = self.net.send(reply);
                }
            }
            RoleId::Central => {
                if let Some(central) = &self.central {
                    central.handle(envelope, self.now_ms);
                }
            }
            RoleId::Bank(id) => {
                if let Some(bank) = self.banks.get(id.as_str()) {
                    bank.handle(envelope, self.now_ms);
                }
            }
            RoleId::Directory => {
                let directory = self.directory.read().clone();
                if let Some(reply) = directory.and_then(|d| d.handle(envelope)) {
                    let _ = self.net.send(reply);
                }
            }
            RoleId::Oracle => {
                if let Some(oracle) = &self.oracle {
                    oracle.handle(envelope, self.now_ms);
                }
            }
        }
    }

    fn tick(&mut self) {
        if let Some(central) = &self.central {
            central.tick(self.now_ms);
        }
        if let Some(oracle) = &self.oracle {
            oracle.tick(self.now_ms);
        }
        for bank in self.banks.values() {
            bank.flush(self.now_ms);
            bank.tick(self.now_ms);
        }
    }

    /// A role whose disk crashed or failed a write is down until its restart.
    fn reap_crashed(&mut self) {
        let hit: Vec<RoleId> = self
            .disks
            .iter()
            .filter(|(role, disk)| (disk.crashed() || disk.failed()) && !self.down_until.contains_key(*role))
            .map(|(role, _)| role.clone())
            .collect();
        for role in hit {
            self.report.commit_crashes += 1;
            self.take_down(role, "crashed inside a commit");
        }
    }

    fn restart_due(&mut self) {
        let due: Vec<RoleId> =
            self.down_until.iter().filter(|(_, until)| **until <= self.now_ms).map(|(r, _)| r.clone()).collect();
        for role in due {
            self.down_until.remove(&role);
            self.trace(format!("{role} restarts"));
            self.start(&role);
        }
    }

    /// Take the answers that arrived; a request whose answer died with its bank is sent again.
    fn resolve_answers(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        for w in waiting {
            match w.answer.try_recv() {
                Ok(Ok(committed)) => {
                    self.trace(format!("{}: committed {} (certificate {})", w.what, committed.tx_id, committed.seq));
                    if let Request::Convert { client_id, direction, amount } = &w.request {
                        let fiat = self.fiat_expected.entry(client_id.clone()).or_insert(0);
                        *fiat = match direction {
                            Conversion::ToDt => {
                                fiat.checked_sub(amount.tiyn()).expect("a committed conversion was covered")
                            }
                            Conversion::FromDt => *fiat + amount.tiyn(),
                        };
                    }
                    self.card_committed(&w, &committed.tx_id);
                    self.acknowledged.push(committed.tx_id);
                    self.report.payments_committed += 1;
                }
                // The bank's store failed: the request may be on its disk or not, so the client
                // asks again (the same key, or the same transaction) once the bank is back.
                Ok(Err(e)) if e.code == dtenge_core::ErrorCode::StorageFailure => {
                    self.trace(format!("{}: {} (outcome unknown)", w.what, e.code));
                    let (_, dead) = dtenge_sync::oneshot::channel();
                    self.waiting.push(Waiting { answer: dead, ..w });
                }
                Ok(Err(e)) => {
                    self.trace(format!("{}: refused {}", w.what, e.code));
                    self.report.payments_refused += 1;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => self.waiting.push(w),
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.resend(w),
            }
        }
        let emissions = std::mem::take(&mut self.emissions_waiting);
        for (bank, amount, idem, answer) in emissions {
            match answer.try_recv() {
                Ok(Ok(emission)) => {
                    self.trace(format!("emission {} to {bank}: registry {}", emission.amount, emission.number));
                    self.report.emissions += 1;
                }
                Ok(Err(e)) => self.trace(format!("emission {amount} to {bank}: refused {}", e.code)),
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    self.emissions_waiting.push((bank, amount, idem, answer))
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // Central died with the answer: ask again under the same key.
                    if let Some(central) = &self.central {
                        let answer = central.emit(bank, amount, Some(to_central_idem(&idem)), self.now_ms);
                        self.emissions_waiting.push((bank, amount, idem, answer));
                    } else {
                        let (_, dead) = crossbeam_channel::bounded(1);
                        self.emissions_waiting.push((bank, amount, idem, dead));
                    }
                }
            }
        }
    }

    /// Take the redemptions' answers; one whose bank died with it is asked again under its key.
    fn resolve_redemptions(&mut self) {
        for w in std::mem::take(&mut self.redemptions_waiting) {
            match w.answer.try_recv() {
                Ok(Ok(committed)) => {
                    let line = format!("{} redeemed {} (certificate {})", w.bank, committed.tx_id, committed.seq);
                    self.trace(line);
                    self.redeemed.push(committed.tx_id);
                    self.report.redemptions += 1;
                }
                Ok(Err(e)) => {
                    self.trace(format!("{} redemption of {}: refused {}", w.bank, w.amount, e.code));
                    self.report.redemptions_refused += 1;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => self.redemptions_waiting.push(w),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    let answer = match self.banks.get(w.bank) {
                        Some(bank) => bank.redeem(w.amount, Some(w.idem.clone()), self.now_ms),
                        None => dtenge_sync::oneshot::channel().1,
                    };
                    self.redemptions_waiting.push(RedeemWaiting { answer, ..w });
                }
            }
        }
    }

    /// The bank died before answering: the client asks again (the same transaction, or the
    /// same idempotency key), once the bank is back.
    fn resend(&mut self, w: Waiting) {
        let Some(bank) = self.banks.get(w.bank) else {
            let (_, dead) = dtenge_sync::oneshot::channel();
            self.waiting.push(Waiting { answer: dead, ..w });
            return;
        };
        let answer = bank.submit(w.request.clone(), w.idem.clone());
        bank.flush(self.now_ms);
        self.trace(format!("{}: asked again", w.what));
        self.waiting.push(Waiting { answer, ..w });
    }

    /// Stop sending; deliver until every role is up and nothing is in flight or outstanding.
    fn drain(&mut self) -> Result<(), String> {
        for disk in self.disks.values() {
            disk.disarm();
        }
        self.to_unblock = BANKS.to_vec();
        let end_ms = self.now_ms + DRAIN_MS_MAX;
        while self.now_ms < end_ms {
            self.run_for(TICK_MS);
            // The operator lifts its blocks and the provider confirms what is held: a blocked
            // bank releases nothing, and every held event ends released or returned; the NBK
            // emits to a bank whatever the refunds it owes lack of its DT (`cards`).
            self.lift_blocks();
            self.confirm_held();
            self.top_up_payouts();
            if self.quiet() {
                return Ok(());
            }
        }
        Err(format!(
            "not quiet after {DRAIN_MS_MAX} ms: {} in flight, {} requests, {} emissions and {} redemptions unanswered",
            self.net.in_flight(),
            self.waiting.len(),
            self.emissions_waiting.len(),
            self.redemptions_waiting.len()
        ) + &format!(
            ", {} holds unanswered, oracle pending {:?}, banks' holds {:?}",
            self.holds_waiting.len(),
            self.oracle.as_ref().map(|o| o.pending()),
            self.banks.values().map(|b| b.holds_pending()).collect::<Vec<_>>()
        ) + &self.cards_waiting())
    }

    fn quiet(&self) -> bool {
        self.down_until.is_empty()
            && self.net.in_flight() == 0
            && self.waiting.is_empty()
            && self.emissions_waiting.is_empty()
            && self.redemptions_waiting.is_empty()
            && self.holds_waiting.is_empty()
            && self.oracle.as_ref().is_some_and(|o| o.pending() == 0)
            && self.central.as_ref().is_some_and(|c| c.outstanding() == (0, 0))
            && self.banks.values().all(|b| {
                b.outstanding() == (0, 0)
                    && b.queued() == 0
                    && b.consolidations_due() == 0
                    && b.claims_waiting() == 0
                    && b.redemptions_pending() == 0
                    && b.holds_pending() == 0
            })
            && self.cards_quiet()
    }

    /// The invariants, once quiet.
    fn check(&self) -> Result<(), String> {
        let central = self.central.as_ref().ok_or("central is down at the end")?;
        let notary = self.notary.as_ref().ok_or("the notary is down at the end")?;
        let mut wallets: HashSet<dtenge_core::token::TokenId> = HashSet::new();
        let mut circulation = 0u64;
        for (id, bank) in &self.banks {
            let (tiyn, tokens, reserved) = bank.read(|n| {
                let reserved: u64 =
                    n.accounts().map(|a| n.balance(&a.client_id).map(|b| b.dt_reserved_tiyn.tiyn()).unwrap_or(0)).sum();
                (
                    n.total_dt().map(|a| a.tiyn()).unwrap_or(u64::MAX),
                    n.token_ids().copied().collect::<Vec<_>>(),
                    reserved,
                )
            });
            if reserved != 0 {
                return Err(format!("{id} still has {reserved} tiyn reserved after traffic stopped"));
            }
            circulation += tiyn;
            for token in tokens {
                if !wallets.insert(token) {
                    return Err(format!("token {token} is in two wallets"));
                }
            }
        }
        let liability = central.dt_liability().tiyn();
        let registry = central.circulation().tiyn();
        if circulation != liability || registry != liability {
            return Err(format!(
                "circulation {circulation}, registry (issued - redeemed) {registry}, DT liability {liability} differ"
            ));
        }
        self.check_registry(central, notary)?;
        let unspent: HashSet<dtenge_core::token::TokenId> = notary.notary().unspent().into_iter().collect();
        if wallets != unspent {
            let only_wallets: Vec<_> = wallets.difference(&unspent).take(3).collect();
            let only_notary: Vec<_> = unspent.difference(&wallets).take(3).collect();
            return Err(format!(
                "the banks' wallets are not the notary's unspent set: {} only in wallets {only_wallets:?}, {} only at the notary {only_notary:?}",
                wallets.difference(&unspent).count(),
                unspent.difference(&wallets).count()
            ));
        }
        for acknowledged in &self.acknowledged {
            if !committed(notary, acknowledged)? {
                return Err(format!("transaction {acknowledged} was acknowledged but is not committed"));
            }
        }
        self.check_bank_money()?;
        self.check_cards()?;
        self.check_holds(notary)
    }

    /// Each custodial client's bank money is what its deposit and its committed conversions
    /// say: a conversion's bank-money move applied once, with its payment, never with a
    /// refused one.
    fn check_bank_money(&self) -> Result<(), String> {
        for client in self.clients.iter().filter(|c| c.custodial) {
            let bank = self.banks.get(client.bank).ok_or("a bank is down at the end")?;
            let held = bank.read(|n| n.balance(&client.id).map(|b| b.fiat_tiyn.tiyn())).map_err(|e| e.to_string())?;
            let expected = self.fiat_expected.get(&client.id).copied().unwrap_or(0);
            if held != expected {
                return Err(format!("{} holds {held} tiyn of bank money, its answers say {expected}", client.id));
            }
        }
        Ok(())
    }

    /// Each bank's correspondent account = credited - issued to it + redeemed by it; no entry
    /// twice; every entry committed at the notary; every redemption answered as done entered.
    fn check_registry(&self, central: &CentralService, notary: &NotaryService) -> Result<(), String> {
        let registry = central.registry();
        for bank in BANKS {
            let totals = Totals::of(&registry, Some(bank));
            let cards = self.cards.corr_moved.get(bank).copied().unwrap_or(0);
            let expected = CREDITED_TIYN as i64 - totals.issued.tiyn() as i64 + totals.redeemed.tiyn() as i64 + cards;
            let corr = central.abs_balance(&dtenge_abs::correspondent(bank));
            if corr != expected {
                return Err(format!(
                    "corr:{bank} holds {corr}, not credited {CREDITED_TIYN} - issued {} + redeemed {} + card settlements {cards}",
                    totals.issued, totals.redeemed
                ));
            }
        }
        let mut seen = HashSet::new();
        for entry in &registry {
            if !seen.insert(entry.tx_id) {
                return Err(format!("transaction {} is in the registry twice", entry.tx_id));
            }
            if !committed(notary, &entry.tx_id)? {
                return Err(format!("registry entry {} is not committed at the notary", entry.number));
            }
        }
        let redeemed: HashSet<TxId> =
            registry.iter().filter(|e| e.kind == EntryKind::Redemption).map(|e| e.tx_id).collect();
        if let Some(lost) = self.redeemed.iter().find(|tx| !redeemed.contains(tx)) {
            return Err(format!("redemption {lost} was answered as done but is not in the registry"));
        }
        Ok(())
    }

    /// The oracle's registry against the ledger: what it says is held is what the banks hold
    /// under `Policy::Held`, per event; every hold answered done is its event's, committed;
    /// every confirmed event released or returned once, by a committed transaction that paid
    /// out exactly what was held.
    fn check_holds(&self, notary: &NotaryService) -> Result<(), String> {
        let oracle = self.oracle.as_ref().ok_or("the oracle is down at the end")?;
        let mut ledger: BTreeMap<Hash32, Amount> = BTreeMap::new();
        for (id, bank) in &self.banks {
            let held = bank.read(|n| n.held_by_event()).map_err(|e| format!("{id}: {e}"))?;
            for (event, amount) in held {
                let total = ledger.entry(event).or_insert(Amount::ZERO);
                *total = total.checked_add(amount).map_err(|e| e.to_string())?;
            }
        }
        let registry = oracle.held_by_event();
        if ledger != registry {
            return Err(format!("the oracle's held registry {registry:?} is not the banks' held DT {ledger:?}"));
        }
        for (event_id, tx_id) in &self.held {
            let records = oracle.records(event_id).map_err(|e| format!("{event_id}: {e}"))?;
            let recorded = records.iter().any(|r| r.body.action == Action::Held && r.body.tx_id == Some(*tx_id));
            if !recorded || !committed(notary, tx_id)? {
                return Err(format!("hold {tx_id} was answered done, but {event_id} has no record of it"));
            }
        }
        let told = notices_of(oracle, self.banks.keys().map(|b| b.to_string()))?;
        for sim_event in &self.events {
            let event = oracle.event(&sim_event.id).ok_or(format!("no event {} at the oracle", sim_event.id))?;
            check_told(&told, &event)?;
            let ever_held = check_records(oracle, notary, &event)?;
            if sim_event.confirmed && !event.status.is_final() {
                return Err(format!("{} was confirmed but is {:?}", event.id, event.status));
            }
            if !event.status.is_final() {
                continue;
            }
            if event.pending.is_some() || !event.held_tiyn.is_zero() {
                return Err(format!("{} is {:?} but holds {} or waits", event.id, event.status, event.held_tiyn));
            }
            let Some(hold) = event.hold_tx else { continue };
            let release = event.release_tx.ok_or(format!("{} was held by {hold} but never released", event.id))?;
            let applied = matches!(oracle.decision(&release), Some(TxDecision::Applied { release: true, .. }));
            let out = event.released_tiyn.checked_add(event.returned_tiyn).map_err(|e| e.to_string())?;
            if !applied || !committed(notary, &release)? || out != ever_held {
                return Err(format!(
                    "{}: release {release} (applied {applied}) paid out {out} of {ever_held}",
                    event.id
                ));
            }
        }
        Ok(())
    }

    fn finish(mut self) -> RolesReport {
        let stats = self.net.stats();
        self.report.messages_lost = stats.lost;
        self.report.messages_duplicated = stats.duplicated;
        self.report.torn_records_discarded = self.disks.values().map(|d| d.stats().torn_records_discarded).sum();
        self.report.card_purchases = self.cards.purchases() as u32;
        self.report.voucher_taps_paid = self.cards.taps_paid() as u32;
        for client in self.clients.iter().filter(|c| c.custodial) {
            let held = self.banks.get(client.bank).and_then(|b| b.read(|n| n.spendable_token_count(&client.id)).ok());
            self.report.custodial_tokens_max = self.report.custodial_tokens_max.max(held.unwrap_or(0));
        }
        let joined = self.report.trace.join("\n");
        self.report.trace_digest = hash_parts(b"dtenge/sim/roles/trace", &[joined.as_bytes()]);
        self.report
    }
}

fn to_central_idem(idem: &IdemKey) -> dtenge_central::IdemKey {
    dtenge_central::IdemKey { key: idem.key.clone(), fingerprint: idem.fingerprint }
}

/// `from` pays `amount` of `input` to `to`, the change back; `nonce` tells two payments of the
/// same token apart.
fn signed_payment(
    from: &SecretKey,
    input: dtenge_core::token::Input,
    to: Address,
    amount: u64,
    issuer: Address,
    nonce: u64,
) -> Transaction {
    let total = input.output.amount_tiyn.tiyn();
    let mut outputs = vec![Output::standard(Amount::from_tiyn(amount).expect("within the input"), to, issuer)];
    if total > amount {
        outputs.push(Output::standard(
            Amount::from_tiyn(total - amount).expect("within the input"),
            from.address(),
            issuer,
        ));
    }
    let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input], outputs, nonce });
    tx.sign_owner(from);
    tx
}

/// Every notice the oracle keeps, per bank (all of them: a simulation sends far fewer than the
/// oracle keeps).
fn notices_of(
    oracle: &OracleService,
    banks: impl Iterator<Item = String>,
) -> Result<BTreeMap<String, Vec<Notice>>, String> {
    let mut told = BTreeMap::new();
    for bank in banks {
        let mut notices = Vec::new();
        loop {
            let page = oracle.notifications(&bank, notices.len(), NOTICES_PAGE_MAX).map_err(|e| e.to_string())?;
            if page.notices.is_empty() {
                if notices.len() as u64 != page.total {
                    return Err(format!("{bank} was told {} notices, {} are kept", page.total, notices.len()));
                }
                break;
            }
            notices.extend(page.notices);
        }
        told.insert(bank, notices);
    }
    Ok(told)
}

/// The event's sender was told of its registration once, and of its end once: a crash of the
/// oracle between steps neither loses a notice (it is in the decision's commit) nor repeats
/// one (a delivery or a decision is applied once).
fn check_told(told: &BTreeMap<String, Vec<Notice>>, event: &HoldEvent) -> Result<(), String> {
    let to_sender = |kind: NoticeKind, tx_id: Option<TxId>| {
        let of_bank = told.get(&event.sender_bank).map(Vec::as_slice).unwrap_or_default();
        of_bank
            .iter()
            .filter(|n| n.subject_id == event.id && n.address == event.sender && n.kind == kind && n.tx_id == tx_id)
            .count()
    };
    let registered = to_sender(NoticeKind::EventRegistered, None);
    if registered != 1 {
        return Err(format!("{}'s sender was told of its registration {registered} times", event.id));
    }
    if !event.status.is_final() {
        return Ok(());
    }
    let ended = match (event.status, event.release_tx) {
        (EventStatus::Completed, Some(tx)) => to_sender(NoticeKind::FundsReleased, Some(tx)),
        (_, tx) => to_sender(NoticeKind::FundsReturned, tx),
    };
    if ended != 1 {
        return Err(format!("{}'s sender was told of its end ({:?}) {ended} times", event.id, event.status));
    }
    Ok(())
}

/// The oracle's records of `event`: each verifies with the oracle's key, numbered densely from
/// 0, the first `registered`; every transaction they name is committed at the notary; what
/// they say was held, released and returned adds up to the event's amounts (ever held =
/// released + returned + held now), and an ended event's last record says how it ended.
/// Answers what the event ever held.
/// Did the notary commit `tx_id`? Its memory holds only the newest ids: the rest are read from
/// its store (the simulator's window is small, so the reads happen).
fn committed(notary: &NotaryService, tx_id: &TxId) -> Result<bool, String> {
    notary.is_committed(tx_id).map_err(|e| format!("the notary's record of {tx_id}: {e}"))
}

fn check_records(oracle: &OracleService, notary: &NotaryService, event: &HoldEvent) -> Result<Amount, String> {
    let records = oracle.records(&event.id).map_err(|e| format!("{}: {e}", event.id))?;
    let key = oracle.public_key();
    let (mut held, mut released, mut returned) = (Amount::ZERO, Amount::ZERO, Amount::ZERO);
    let add = |sum: &mut Amount, amount: Amount| sum.checked_add(amount).map(|s| *sum = s).map_err(|e| e.to_string());
    for (n, record) in records.iter().enumerate() {
        let body = &record.body;
        let digest = body.digest().map_err(|e| e.to_string())?;
        dtenge_core::crypto::verify(&key, &digest.0, &record.oracle_signature)
            .map_err(|e| format!("record {} of {}: {e}", body.seq, event.id))?;
        if body.seq as usize != n || body.event_id != event.id || (n == 0) != (body.action == Action::Registered) {
            return Err(format!("{}: record {n} is {} {:?}", event.id, body.seq, body.action));
        }
        if let Some(tx_id) = &body.tx_id {
            if !committed(notary, tx_id)? {
                return Err(format!("{}: a {:?} record names {tx_id}, not committed", event.id, body.action));
            }
        }
        match body.action {
            Action::Registered => {}
            Action::Held => add(&mut held, body.amount_tiyn)?,
            Action::Released => add(&mut released, body.amount_tiyn)?,
            Action::Returned | Action::Rejected | Action::Expired => add(&mut returned, body.amount_tiyn)?,
        }
    }
    let now =
        released.checked_add(returned).and_then(|out| out.checked_add(event.held_tiyn)).map_err(|e| e.to_string())?;
    if (released, returned) != (event.released_tiyn, event.returned_tiyn) || now != held {
        return Err(format!(
            "{}: records say held {held}, released {released}, returned {returned}; the event {} {} held {}",
            event.id, event.released_tiyn, event.returned_tiyn, event.held_tiyn
        ));
    }
    let last = records.last().map(|r| r.body.action);
    let ended_as = match event.status {
        EventStatus::Completed => matches!(last, Some(Action::Released | Action::Returned)),
        EventStatus::Rejected => last == Some(Action::Rejected),
        EventStatus::Expired => last == Some(Action::Expired),
        _ => true,
    };
    if !ended_as {
        return Err(format!("{} is {:?}, its last record {last:?}", event.id, event.status));
    }
    Ok(held)
}
