//! The assembly: the roles of the Digital Tenge wired together in one process.
//!
//! Each role (the notary, central, the directory, the oracle, every bank) opens its own store in its own
//! folder under the data directory, holds its own keys, and runs on its own threads; the roles
//! talk only through envelopes on the in-process transport ([`InProcess`]), which is the one
//! part that changes when they move onto separate machines (issue 18). What runs: the
//! threads of [`Threads`] (`host.rs`): an inbox per role, a flusher and a finisher per
//! bank, a ticker, the notary's checkpointer. A panic on any of them stops the process.
//!
//! A client reaches a bank through its [`BankHandle`] (a submission wakes the bank's flusher);
//! what arrives while the flusher works waits in the bank's queue and goes out in the next
//! batch, so the batches grow with the load.
//!
//! Keys: each role's key is handed to that role only ([`RoleKeys`]): from the vault
//! (`dtenge-keys`: an HSM, or the encrypted key store) where the platform runs, or derived
//! from one seed for the simulator, the tests and the bench.
//!
//! The directory's listings are read by the banks in memory (a bank asks where a payee's
//! account is: [`SharedDirectory`]); a bank in a process of its own asks the directory over
//! the network instead (`dtenge_bank::DirectoryClient`).

#![forbid(unsafe_code)]

// Markings, VAT, contracts and split payments among the roles.
mod programmed;
pub use programmed::{contract_spec, ClientAt, ContractTerms, CONTRACT_VALIDITY_MS_MAX};
// Cards and vouchers (`cards`).
mod cards;
// Reconciliation at one notary certificate number, while payments go on.
mod reconcile;
// The threads that run a role, on any transport.
mod host;
pub use cards::{purchase_id, AtmWithdrawal, CardPurchase, VoucherReceipt};
pub use host::{Asks, Threads};
pub use reconcile::AtSeq;

use crossbeam_channel::Sender;
use dtenge_bank::{AccountKey, Answer, BankService, Committed, Genesis, IdemKey, Request};
use dtenge_central::{BankKeys, CentralService};
use dtenge_core::anchors::Anchors;
use dtenge_core::crypto::{hash_parts, Address, NodeKey, SecretKey};
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_directory::DirectoryService;
use dtenge_node::{Account, Custody, NodeKind, NodeMeta, OWN_ACCOUNT};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_oracle::service::OracleService;
use dtenge_store::{Store, Table};
use dtenge_transport::{InProcess, Transport};
use dtenge_wire::{AccountKind, Claim, RoleId};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often every role resends what was not answered (its own resend delay decides what is
/// due: `dtenge_bank::RESEND_AFTER_MS`).
pub const TICK_MS: u64 = 50;
/// Most banks one assembly runs.
pub const BANKS_MAX: usize = 64;

/// The time in milliseconds since the Unix epoch, injected (a sandbox's manual clock, the
/// system's clock).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A bank (or the Treasury) of the network.
#[derive(Clone, Debug)]
pub struct BankSpec {
    pub id: String,
    pub name: String,
    pub kind: NodeKind,
}

/// Each role's keys: from the vault, or derived from one seed.
#[derive(Clone)]
pub struct RoleKeys {
    source: KeySource,
}

#[derive(Clone)]
enum KeySource {
    /// Derived from one secret seed: the simulator's, the tests' and the bench's.
    Seed([u8; 32]),
    /// Read from the vault at start, for the banks it was given.
    Vault(Arc<VaultKeys>),
}

struct VaultKeys {
    central: NodeKey,
    notary: NodeKey,
    oracle: NodeKey,
    banks: BTreeMap<String, (NodeKey, SecretKey, Custody)>,
}

impl RoleKeys {
    pub fn from_seed(seed: [u8; 32]) -> RoleKeys {
        RoleKeys { source: KeySource::Seed(seed) }
    }

    /// Every role's keys from `vault`, made there on the first start: the node keys
    /// (`central`, `notary`, `oracle`, `bank:<id>`) and each bank's own account seed and
    /// data-encryption key (`own:<id>`, `custody:<id>`).
    pub fn from_vault(
        vault: &dtenge_keys::Vault,
        banks: &[BankSpec],
        entropy: &dtenge_env::Entropy,
    ) -> Result<RoleKeys> {
        let mut keys = BTreeMap::new();
        for bank in banks {
            let node = vault.node_key(&format!("bank:{}", bank.id), entropy)?;
            let own = SecretKey::from_seed(vault.secret(&format!("own:{}", bank.id), entropy)?);
            let custody = Custody::new(vault.secret(&format!("custody:{}", bank.id), entropy)?);
            keys.insert(bank.id.clone(), (node, own, custody));
        }
        let vault_keys = VaultKeys {
            central: vault.node_key("central", entropy)?,
            notary: vault.node_key("notary", entropy)?,
            oracle: vault.node_key("oracle", entropy)?,
            banks: keys,
        };
        Ok(RoleKeys { source: KeySource::Vault(Arc::new(vault_keys)) })
    }

    fn derive(seed: &[u8; 32], role: &str, purpose: &str) -> SecretKey {
        SecretKey::from_seed(hash_parts(b"dtenge/assembly/key", &[seed, role.as_bytes(), purpose.as_bytes()]).0)
    }

    fn node(&self, role: &str, purpose: &str, pick: impl FnOnce(&VaultKeys) -> &NodeKey) -> NodeKey {
        match &self.source {
            KeySource::Seed(seed) => RoleKeys::derive(seed, role, purpose).into(),
            KeySource::Vault(keys) => pick(keys).clone(),
        }
    }

    fn bank_keys<'a>(keys: &'a VaultKeys, bank: &str) -> &'a (NodeKey, SecretKey, Custody) {
        keys.banks.get(bank).unwrap_or_else(|| panic!("the vault's keys were read for every bank, not for {bank}"))
    }

    /// The NBK's key: the issuer's, and the central bank's attestations.
    pub fn central(&self) -> NodeKey {
        self.node("central", "nbk", |keys| &keys.central)
    }

    pub fn notary(&self) -> NodeKey {
        self.node("notary", "notary", |keys| &keys.notary)
    }

    pub fn oracle(&self) -> NodeKey {
        self.node("oracle", "oracle", |keys| &keys.oracle)
    }

    /// A bank's node key: its attestations and its requests to the notary.
    pub fn bank_node(&self, bank: &str) -> NodeKey {
        self.node(bank, "node", |keys| &RoleKeys::bank_keys(keys, bank).0)
    }

    /// The key of a bank's own account (its DT liquidity).
    pub fn bank_own(&self, bank: &str) -> SecretKey {
        match &self.source {
            KeySource::Seed(seed) => RoleKeys::derive(seed, bank, "own"),
            KeySource::Vault(keys) => RoleKeys::bank_keys(keys, bank).1.clone(),
        }
    }

    /// The data-encryption key of a bank's custodial keys.
    pub fn bank_custody(&self, bank: &str) -> Custody {
        match &self.source {
            KeySource::Seed(seed) => Custody::new(RoleKeys::derive(seed, bank, "custody").seed()),
            KeySource::Vault(keys) => RoleKeys::bank_keys(keys, bank).2.clone(),
        }
    }

    /// Who is who: the public half of every role's key.
    pub fn anchors(&self, banks: &[BankSpec]) -> Anchors {
        Anchors {
            issuer: self.central().address(),
            central_bank: self.central().public_key(),
            oracle: self.oracle().public_key(),
            notary: self.notary().public_key(),
            banks: banks.iter().map(|b| (b.id.clone(), self.bank_node(&b.id).public_key())).collect(),
            blocked: Default::default(),
        }
    }
}

/// What the assembly runs.
#[derive(Clone)]
pub struct Config {
    pub banks: Vec<BankSpec>,
    pub keys: RoleKeys,
}

impl Config {
    /// The three banks of the demo network and the bench, with keys from `seed`.
    pub fn standard(seed: [u8; 32]) -> Config {
        let bank = |id: &str, name: &str| BankSpec { id: id.into(), name: name.into(), kind: NodeKind::Bank };
        Config {
            banks: vec![bank("steppe", "Steppe Bank"), bank("tulpar", "Tulpar Bank"), bank("sapa", "Sapa Bank")],
            keys: RoleKeys::from_seed(seed),
        }
    }
}

/// What the operator's dashboard shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Monitoring {
    /// DT the banks' wallets hold, by their running totals.
    pub dt_in_wallets: Amount,
    /// The ABS DT liability account.
    pub dt_liability: Amount,
    pub notary_unspent: usize,
    /// The notary's last certificate number.
    pub notary_seq: u64,
}

/// The banks read the directory's listings in memory.
pub struct SharedDirectory(Arc<DirectoryService>);

impl dtenge_bank::Directory for SharedDirectory {
    fn bank_of(&self, address: &Address) -> Result<Option<String>> {
        Ok(self.0.read(|d| d.by_address(address).map(|listing| listing.bank.clone())))
    }

    fn find(&self, who: dtenge_bank::Who<'_>, bank: Option<&str>) -> Result<Option<dtenge_bank::Found>> {
        Ok(self.0.read(|d| {
            let listing = match who {
                dtenge_bank::Who::Phone(phone) => d.by_phone(phone, bank),
                dtenge_bank::Who::Client(client) => d.by_client(client, bank),
            };
            listing.map(|l| dtenge_bank::Found { address: l.address, bank: l.bank.clone(), kind: l.kind })
        }))
    }
}

/// A bank as its clients reach it: a submission wakes the bank's flusher.
#[derive(Clone)]
pub struct BankHandle {
    service: Arc<BankService>,
    /// Raised by a submission or a notary's answer; the bank's flusher sleeps on it.
    wake: Arc<dtenge_sync::Signal>,
}

impl BankHandle {
    /// A bank as its clients reach it; its flusher ([`Threads::bank`]) waits on the handle.
    pub fn new(service: Arc<BankService>) -> BankHandle {
        BankHandle { service, wake: Arc::new(dtenge_sync::Signal::new()) }
    }

    pub fn service(&self) -> &BankService {
        &self.service
    }

    pub fn id(&self) -> &str {
        self.service.id()
    }

    pub fn submit(&self, request: Request, idem: Option<IdemKey>) -> Answer {
        let answer = self.service.submit(request, idem);
        self.wake();
        answer
    }

    /// Submit a custodial payment with its purpose and reference for the history
    /// ([`BankService::submit_labelled`]).
    pub fn submit_labelled(&self, request: Request, label: dtenge_bank::Label, idem: Option<IdemKey>) -> Answer {
        let answer = self.service.submit_labelled(request, label, idem);
        self.wake();
        answer
    }

    /// Submit with the answer on a shared channel, tagged.
    pub fn submit_tagged(
        &self,
        request: Request,
        idem: Option<IdemKey>,
        tag: u64,
        to: &Sender<(u64, Result<Committed>)>,
    ) {
        self.service.submit_tagged(request, idem, tag, to);
        self.wake();
    }

    /// A registry distribution ([`BankService::distribute`]).
    pub fn distribute(
        &self,
        payer: &str,
        lines: &[dtenge_bank::RegistryLine],
        idem: Option<IdemKey>,
    ) -> Result<dtenge_bank::Registry> {
        let registry = self.service.distribute(payer, lines, idem);
        self.wake();
        registry
    }

    /// A registry distribution with the payer's reference
    /// ([`BankService::distribute_referenced`]).
    pub fn distribute_referenced(
        &self,
        payer: &str,
        lines: &[dtenge_bank::RegistryLine],
        reference: Option<String>,
        idem: Option<IdemKey>,
    ) -> Result<dtenge_bank::Registry> {
        let registry = self.service.distribute_referenced(payer, lines, reference, idem);
        self.wake();
        registry
    }

    fn wake(&self) {
        // Raised already: the flusher will find this submission in the queue when it wakes.
        self.wake.notify();
    }
}

/// The roles, running.
pub struct Assembly {
    net: Arc<InProcess>,
    clock: Clock,
    keys: RoleKeys,
    specs: Vec<BankSpec>,
    notary: Arc<NotaryService>,
    central: Arc<CentralService>,
    directory: Arc<DirectoryService>,
    oracle: Arc<OracleService>,
    banks: Vec<BankHandle>,
    threads: Threads,
}

/// Every role's store, opened.
struct Stores {
    notary: Store,
    central: Store,
    directory: Store,
    oracle: Store,
    banks: Vec<Store>,
}

/// Open every role's store under `dir` at the same time: each reads its journal's live
/// segments, and one after the other they were most of a start (issue 20).
fn open_stores(dir: &Path, config: &Config) -> Result<Stores> {
    std::thread::scope(|scope| {
        let open = |name: String, tables: Vec<Table>| scope.spawn(move || Store::open(&dir.join(name), &tables));
        let notary = open("notary".into(), dtenge_notary::service::tables());
        let central = open("central".into(), dtenge_central::tables());
        let directory = open("directory".into(), dtenge_directory::tables());
        let oracle = open("oracle".into(), dtenge_oracle::service::tables());
        let banks: Vec<_> =
            config.banks.iter().map(|spec| open(format!("bank-{}", spec.id), dtenge_bank::tables())).collect();
        Ok(Stores {
            notary: joined(notary)?,
            central: joined(central)?,
            directory: joined(directory)?,
            oracle: joined(oracle)?,
            banks: banks.into_iter().map(joined).collect::<Result<_>>()?,
        })
    })
}

/// What a thread of a start returned; its panic goes on in the caller (a programmer error).
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Assembly {
    /// Open every role on its store under `dir` (created on the first start, recovered after)
    /// and start their threads.
    pub fn start(dir: &Path, config: &Config, clock: Clock) -> Result<Assembly> {
        if config.banks.is_empty() || config.banks.len() > BANKS_MAX {
            return Err(Error::malformed(format!("an assembly runs 1 to {BANKS_MAX} banks")));
        }
        let keys = config.keys.clone();
        let anchors = keys.anchors(&config.banks);
        let net = Arc::new(InProcess::new());
        let transport: Arc<dyn Transport> = net.clone();

        let senders =
            Senders { central_bank: anchors.central_bank, banks: anchors.banks.clone(), blocked: Default::default() };
        let mut stores = open_stores(dir, config)?;
        let bank_keys = config
            .banks
            .iter()
            .map(|b| {
                let keys =
                    BankKeys { own: keys.bank_own(&b.id).address(), node_key: keys.bank_node(&b.id).public_key() };
                (b.id.clone(), keys)
            })
            .collect();
        let central = Arc::new(CentralService::open(
            stores.central,
            keys.central(),
            anchors.notary,
            bank_keys,
            transport.clone(),
        )?);
        let directory = Arc::new(DirectoryService::open(stores.directory)?);
        let oracle = Arc::new(OracleService::open(stores.oracle, keys.oracle(), anchors.clone(), transport.clone())?);
        let mut geneses = Vec::with_capacity(config.banks.len());
        for spec in &config.banks {
            let own = keys.bank_own(&spec.id);
            // Its own account is listed at the directory, so that other banks can pay it.
            directory.claim_all(&spec.id, &[own_claim(&spec.name, own.address())])?;
            geneses.push(Genesis {
                meta: NodeMeta { id: spec.id.clone(), kind: spec.kind, name: spec.name.clone() },
                node_key: keys.bank_node(&spec.id),
                own_key: own,
                custody: keys.bank_custody(&spec.id),
                now_ms: clock(),
            });
        }
        // The notary and every bank rebuild their memory from their stores at the same time
        // (issue 20: one after the other, a start after a soak took twice as long on two
        // cores).
        let (notary, banks) = std::thread::scope(|scope| {
            let notary_store = stores.notary;
            let notary_key = keys.notary();
            let notary = scope.spawn(move || NotaryService::open(notary_store, notary_key, senders));
            let banks: Vec<_> = stores
                .banks
                .drain(..)
                .zip(geneses)
                .map(|(store, genesis)| {
                    let (anchors, transport) = (anchors.clone(), transport.clone());
                    let directory: Arc<dyn dtenge_bank::Directory> = Arc::new(SharedDirectory(directory.clone()));
                    scope.spawn(move || BankService::open(store, genesis, anchors, transport, directory))
                })
                .collect();
            let notary = joined(notary).map(Arc::new);
            let banks: Result<Vec<BankHandle>> =
                banks.into_iter().map(|bank| joined(bank).map(|service| BankHandle::new(Arc::new(service)))).collect();
            Ok::<_, Error>((notary?, banks?))
        })?;
        let mut assembly = Assembly {
            net,
            clock,
            keys,
            specs: config.banks.clone(),
            notary,
            central,
            directory,
            oracle,
            banks,
            threads: Threads::new(),
        };
        assembly.spawn_threads()?;
        Ok(assembly)
    }

    fn spawn_threads(&mut self) -> Result<()> {
        let (net, clock) = (self.net.clone(), self.clock.clone());
        let replies: Arc<dyn Transport> = net.clone();
        let threads = &mut self.threads;
        threads.notary(self.notary.clone(), net.register(RoleId::Notary), replies.clone())?;
        threads.central(self.central.clone(), net.register(RoleId::Central), clock.clone())?;
        threads.directory(self.directory.clone(), net.register(RoleId::Directory), replies)?;
        threads.oracle(self.oracle.clone(), net.register(RoleId::Oracle), clock.clone(), None)?;
        for bank in &self.banks {
            threads.bank(bank, net.register(bank.service.role()), clock.clone(), None)?;
        }
        threads.ticker(Some(self.central.clone()), Some(self.oracle.clone()), self.banks.clone(), clock)
    }

    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub fn banks(&self) -> &[BankHandle] {
        &self.banks
    }

    pub fn bank(&self, id: &str) -> Option<&BankHandle> {
        self.banks.iter().find(|b| b.id() == id)
    }

    pub fn central(&self) -> &CentralService {
        &self.central
    }

    /// The oracle: providers register and confirm their events here (their API is next).
    pub fn oracle(&self) -> &OracleService {
        &self.oracle
    }

    pub fn notary(&self) -> &NotaryService {
        &self.notary
    }

    pub fn directory(&self) -> &DirectoryService {
        &self.directory
    }

    /// The public half of every role's key.
    pub fn anchors(&self) -> Anchors {
        self.keys.anchors(&self.specs)
    }

    /// Open many accounts at `bank` at once (a bank migrating its clients): claimed at the
    /// directory in one commit, then opened at the bank in one commit. A claim that is
    /// listed already is not claimed again, so a migration that stopped between the two
    /// commits is run again as it was.
    pub fn migrate_accounts(&self, bank: &str, accounts: Vec<(Account, AccountKey)>) -> Result<()> {
        let handle =
            self.bank(bank).ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}'")))?;
        let claims: Vec<Claim> = accounts.iter().map(|(account, _)| dtenge_bank::claim_of(account)).collect();
        self.directory.claim_all(bank, &claims)?;
        handle.service.open_accounts(accounts)
    }

    /// Money arrives on `bank`'s correspondent account and central issues `amount` of DT to
    /// the bank's own account against it; returns once the bank holds it. On an operational
    /// day only (the assembly's clock, Astana time): `NonWorkingDay` otherwise.
    pub fn fund(&self, bank: &str, amount: Amount, timeout: Duration) -> Result<()> {
        let handle =
            self.bank(bank).ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}'")))?;
        let before = own_balance(&handle.service);
        // Checked before the credit, so that a fund refused for the day changes nothing.
        self.central.ensure_operational_day(self.now_ms())?;
        self.central.credit_correspondent(bank, amount, self.now_ms())?;
        let answer = self.central.emit(bank, amount, None, self.now_ms());
        answer
            .recv_timeout(timeout)
            .map_err(|_| Error::new(ErrorCode::RequestInProgress, "the emission was not answered in time"))??;
        // The emission is certified and posted; the bank applies it from central's delivery.
        let expected = before.checked_add(amount)?;
        let deadline = std::time::Instant::now() + timeout;
        while own_balance(&handle.service) < expected {
            if std::time::Instant::now() > deadline {
                return Err(Error::new(ErrorCode::RequestInProgress, "the bank has not applied the emission in time"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Wait until nothing is at the notary, undelivered or queued anywhere (the load stopped).
    pub fn settle(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let quiet = self.central.outstanding() == (0, 0)
                && self.oracle.pending() == 0
                && self.banks.iter().all(|b| {
                    b.service.outstanding() == (0, 0)
                        && b.service.queued() == 0
                        && b.service.redemptions_pending() == 0
                        && b.service.holds_pending() == 0
                        && b.service.spends_pending() == 0
                });
            if quiet {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::new(ErrorCode::RequestInProgress, "the roles did not settle in time"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The operator's dashboard: the running figures each role publishes after every step,
    /// read without any role's lock, so it never waits for a commit and payments never wait
    /// for it (the figures may be a few payments apart; [`Assembly::reconcile`] is the exact
    /// check). The notary's unspent count takes each of its shards for a moment, never across
    /// its commit.
    pub fn monitoring(&self) -> Monitoring {
        let mut dt_in_wallets = Amount::ZERO;
        for bank in &self.banks {
            let held = bank.service.figures().dt_held;
            // Within the money supply's bound, as every bank's total is; a sum past it would
            // be a broken invariant, shown as the last sum rather than stopping the dashboard.
            dt_in_wallets = dt_in_wallets.checked_add(held).unwrap_or(dt_in_wallets);
        }
        Monitoring {
            dt_in_wallets,
            dt_liability: self.central.figures().dt_liability,
            notary_unspent: self.notary.notary().unspent_count(),
            notary_seq: self.notary.seq(),
        }
    }

    /// The checks across roles, once the load stopped ([`Assembly::settle`]): the DT in the
    /// banks' wallets = the ABS DT liability; the banks' unspent tokens = the notary's; the
    /// oracle's held registry = the DT the banks hold for each event; its markings and
    /// contracts = the marked DT the banks hold. A list of what does not hold (empty:
    /// everything holds).
    pub fn reconcile(&self) -> Vec<String> {
        let mut problems = self.reconcile_held();
        problems.extend(self.reconcile_programmed());
        let mut circulation = Amount::ZERO;
        let mut tokens = 0usize;
        for bank in &self.banks {
            let (total, count) = bank.service.read(|node| (node.recount_dt(), node.token_ids().count()));
            match total.and_then(|total| circulation.checked_add(total)) {
                Ok(sum) => circulation = sum,
                Err(e) => problems.push(format!("the banks' DT cannot be summed: {e}")),
            }
            tokens += count;
        }
        let liability = self.central.dt_liability();
        if circulation != liability {
            problems.push(format!("DT in the banks' wallets {circulation} != the ABS DT liability {liability}"));
        }
        let unspent = self.notary.notary().unspent_count();
        if tokens != unspent {
            problems.push(format!("the banks hold {tokens} tokens, the notary {unspent} unspent"));
        }
        problems
    }

    /// The oracle's registries against the banks: its held registry = the DT the banks hold
    /// for each event; its markings and contracts = the marked DT the banks hold. They change
    /// only with holds, releases and programmed spends, so a difference may be one in flight:
    /// exact once those settled ([`Assembly::settle`]).
    pub fn reconcile_oracle(&self) -> Vec<String> {
        let mut problems = self.reconcile_held();
        problems.extend(self.reconcile_programmed());
        problems
    }

    fn reconcile_held(&self) -> Vec<String> {
        let mut held: std::collections::BTreeMap<dtenge_core::crypto::Hash32, Amount> = Default::default();
        for bank in &self.banks {
            let by_event = match bank.service.read(|node| node.held_by_event()) {
                Ok(by_event) => by_event,
                Err(e) => return vec![format!("{}'s held DT cannot be summed: {e}", bank.id())],
            };
            for (event, amount) in by_event {
                let total = held.entry(event).or_insert(Amount::ZERO);
                match total.checked_add(amount) {
                    Ok(sum) => *total = sum,
                    Err(e) => return vec![format!("the held DT cannot be summed: {e}")],
                }
            }
        }
        let registry = self.oracle.held_by_event();
        if held == registry {
            return Vec::new();
        }
        vec![format!("the oracle's held registry {registry:?} != the DT the banks hold for events {held:?}")]
    }

    /// Stop every thread (what was answered is durable; what was queued is dropped
    /// unanswered, as a crash would) and close the stores.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        let mut roles = vec![RoleId::Notary, RoleId::Central, RoleId::Directory, RoleId::Oracle];
        roles.extend(self.banks.iter().map(|b| b.service.role()));
        let net = self.net.clone();
        self.threads.stop(move || {
            for role in &roles {
                net.unregister(role);
            }
        });
    }
}

impl Drop for Assembly {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn own_balance(bank: &BankService) -> Amount {
    bank.read(|node| node.balance(OWN_ACCOUNT).map(|b| b.dt_tiyn).unwrap_or(Amount::ZERO))
}

fn own_claim(name: &str, address: Address) -> Claim {
    Claim {
        client_id: OWN_ACCOUNT.into(),
        address,
        kind: AccountKind::Institution,
        display_name: name.into(),
        phone: None,
    }
}
