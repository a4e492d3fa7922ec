//! An `arbitrary`-driven sequence of operations against one whole platform
//! (`dtenge_api::platform::Platform`: the roles as `dtenge up` runs them, central (the NBK and
//! its ABS), three banks, the Treasury, the notary, the oracle and the directory (ID center),
//! each on its own store) in a tempdir, opened once per process.
//!
//! After every operation the platform must reconcile (`reconcile().ok`, once the roles have
//! settled: DT in circulation by the NBK's registry = sum of every bank's tokens = the ABS DT
//! liability, and the banks' tokens = the notary's unspent set). No operation may panic, and
//! none may answer `INTERNAL` or `STORAGE_FAILURE` (those mean an invariant broke or the store
//! failed).
//!
//! State carries over from one input to the next (that is the point of opening once); at the
//! end of each input the clock, blocks and calendar days the input touched are put back, so
//! that one input cannot leave the platform unusable for the following ones. When the platform
//! has grown large (tokens or inputs), it is replaced by a fresh one, to keep inputs cheap.
#![no_main]

use arbitrary::Arbitrary;
use dtenge_api::platform::{Idem, Platform};
use dtenge_api::types::{
    AmountRequest, AtmWithdrawal, BlockRequest, CardMode, CardPurchaseRequest, LinkCard, OpenAccount, Payee,
    RegistryLine, RegistryRequest, TransferRequest, VoucherEvent, VoucherProgramRequest,
};
use dtenge_core::calendar::{Calendar, Date};
use dtenge_core::crypto::{hash_parts, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::{ErrorCode, Result};
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::{complete_iin_bin, complete_pan};
use dtenge_node::{ClientKind, OWN_ACCOUNT};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Most operations one input runs.
const OPS_MAX: usize = 24;
/// Replace the platform after this many inputs, or when banks hold this many tokens.
const INPUTS_PER_NETWORK: u64 = 20_000;
const TOKENS_MAX: usize = 5_000;

const NODES: [&str; 6] = ["steppe", "tulpar", "sapa", "treasury", "nbk", "ghost"];

/// 2026-11-23 (a Monday) 10:00 Astana time, in Unix milliseconds.
fn base_ms() -> u64 {
    let days = Date::new(2026, 11, 23).expect("a real date").days();
    ((days * 86_400 + 5 * 3_600) * 1_000) as u64
}

/// Fixed identities: 8 IINs (individuals), 4 BINs, `own`; 8 phones; 6 card numbers.
struct Pools {
    clients: Vec<String>,
    phones: Vec<String>,
    pans: Vec<String>,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let mut clients = Vec::new();
        let mut n = 0u64;
        while clients.len() < 12 {
            // IINs start with a birth date, BINs with a registration year and month.
            let prefix = if clients.len() < 8 { format!("9001013{n:04}") } else { format!("0405404{n:04}") };
            if let Some(id) = complete_iin_bin(&prefix) {
                clients.push(id);
            }
            n += 1;
        }
        clients.push(OWN_ACCOUNT.to_string());
        let phones = (0..8).map(|i| format!("+7701000000{i}")).collect();
        let pans = (0..6).filter_map(|i| complete_pan(&format!("44004300000000{i}"))).collect();
        Pools { clients, phones, pans }
    })
}

/// The key of a client that keeps its own key.
fn client_key(client: usize) -> SecretKey {
    SecretKey::from_seed([100 + client as u8; 32])
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Amt {
    Small(u16),
    Medium(u32),
    Raw(u64),
    Max,
    Zero,
}

impl Amt {
    fn get(self) -> Amount {
        let tiyn = match self {
            Amt::Small(v) => u64::from(v),
            Amt::Medium(v) => u64::from(v),
            Amt::Raw(v) => v.min(Amount::MAX.tiyn()),
            Amt::Max => Amount::MAX.tiyn(),
            Amt::Zero => 0,
        };
        Amount::from_tiyn(tiyn).expect("clamped")
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Individual,
    LegalEntity,
    GovernmentAgency,
    Institution,
}

impl Kind {
    fn get(self) -> ClientKind {
        match self {
            Kind::Individual => ClientKind::Individual,
            Kind::LegalEntity => ClientKind::LegalEntity,
            Kind::GovernmentAgency => ClientKind::GovernmentAgency,
            Kind::Institution => ClientKind::Institution,
        }
    }
}

/// A phone: one of the pool (in its canonical or a spoken form), or any text.
#[derive(Arbitrary, Debug, Clone)]
enum Phone {
    Pool(u8),
    Spoken(u8),
    Raw(String),
}

impl Phone {
    fn get(&self) -> String {
        let p = pools();
        match self {
            Phone::Pool(i) => p.phones[*i as usize % p.phones.len()].clone(),
            Phone::Spoken(i) => {
                let n = &p.phones[*i as usize % p.phones.len()];
                format!("8 ({}) {}-{}-{}", &n[2..5], &n[5..8], &n[8..10], &n[10..])
            }
            Phone::Raw(s) => s.chars().take(40).collect(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Name {
    Pool(u8),
    Raw(String),
}

impl Name {
    fn get(&self) -> String {
        const NAMES: [&str; 5] = ["Aigerim Seitova", "Nurlan", "TOO Dala Foods", "  Ержан   Касымов ", "Школа №12"];
        match self {
            Name::Pool(i) => NAMES[*i as usize % NAMES.len()].to_string(),
            Name::Raw(s) => s.chars().take(250).collect(),
        }
    }
}

/// Where a client operation runs: at the client's own bank (the first node where the client
/// has an account), or at any node (mostly refused, which is tested too).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum At {
    Home,
    Node(u8),
}

fn at(net: &Platform, at: At, c: u8) -> &'static str {
    at_client(net, at, client(c).1)
}

fn at_client(net: &Platform, at: At, id: &str) -> &'static str {
    match at {
        At::Node(i) => node(i),
        At::Home => NODES[..4].iter().copied().find(|n| net.balance(n, id).is_ok()).unwrap_or(NODES[0]),
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct Line {
    phone: Option<Phone>,
    client: Option<u8>,
    bank: Option<u8>,
    amount: Amt,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Tamper {
    None,
    Resubmit,
    DuplicateInput,
    ChangeAmountAfterSigning,
    DropWitness,
    Unbalanced,
}

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    Credit { node: u8, amount: Amt },
    Emission { node: u8, amount: Amt },
    Redemption { node: u8, amount: Amt },
    Open { node: u8, client: u8, kind: Kind, phone: Option<Phone>, name: Name, own_key: bool },
    OpenBulk { node: u8, accounts: Vec<(u8, Kind, Option<Phone>)> },
    Deposit { node: At, client: u8, amount: Amt },
    ToDt { node: At, client: u8, amount: Amt },
    FromDt { node: At, client: u8, amount: Amt },
    PayPhone { node: At, client: u8, phone: Phone, bank: Option<u8>, amount: Amt, reference: Option<String> },
    PayClient { node: At, client: u8, to: u8, bank: Option<u8>, amount: Amt },
    Registry { node: At, client: u8, lines: Vec<Line>, reference: Option<String> },
    Submit { node: At, client: u8, to: u8, amount: Amt, tamper: Tamper },
    LinkCard { node: At, client: u8, pan: u8 },
    CardPurchase { pan: u8, merchant_bank: At, merchant: u8, amount: Amt, to_fiat: bool },
    Atm { pan: u8, atm_bank: u8, amount: Amt },
    CardRefund { purchase: u8, amount: Amt },
    VoucherProgram { integrator: u8, payer_bank: At, payer: u8, payee_bank: At, payee: u8, amount: Amt },
    VoucherEvent { program: u8, integrator: u8, event: u8, card: Option<String> },
    LookupPhone { phone: Phone },
    View { node: At, client: u8, offset: u8, limit: u16 },
    Block { node: u8, reason: String },
    Unblock { node: u8 },
    SetDay { offset_days: u8, working: bool },
    Clock { hours: u16 },
    /// A checkpoint of the unspent set and the nodes' tokens, between any other operations
    /// (the operator's `POST /v1/operator/checkpoints`).
    Checkpoint,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Credit { .. } => "credit_correspondent",
            Op::Emission { .. } => "emission",
            Op::Redemption { .. } => "redemption",
            Op::Open { .. } => "open_account",
            Op::OpenBulk { .. } => "open_accounts",
            Op::Deposit { .. } => "deposit_fiat",
            Op::ToDt { .. } => "convert_to_dt",
            Op::FromDt { .. } => "convert_from_dt",
            Op::PayPhone { .. } => "transfer_by_phone",
            Op::PayClient { .. } => "transfer_by_client_id",
            Op::Registry { .. } => "distribute_registry",
            Op::Submit { .. } => "submit_client_signed",
            Op::LinkCard { .. } => "link_card",
            Op::CardPurchase { .. } => "card_purchase",
            Op::Atm { .. } => "atm_withdrawal",
            Op::CardRefund { .. } => "card_refund",
            Op::VoucherProgram { .. } => "create_voucher_program",
            Op::VoucherEvent { .. } => "voucher_event",
            Op::LookupPhone { .. } => "lookup_phone",
            Op::View { .. } => "account_view_history",
            Op::Block { .. } => "block",
            Op::Unblock { .. } => "unblock",
            Op::SetDay { .. } => "set_day",
            Op::Clock { .. } => "clock",
            Op::Checkpoint => "checkpoint",
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Step {
    op: Op,
    /// Run under this idempotency key (scoped to the input), so replays happen.
    idem: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<Step>,
}

struct Fixture {
    net: Platform,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
    inputs: u64,
    /// Ids of the card purchases and voucher programmes made so far (most recent last).
    purchases: Mutex<Vec<String>>,
    programs: Mutex<Vec<String>>,
}

const INTEGRATORS: [&str; 3] = ["onay", "kaspi-transit", " "];

fn pick(list: &Mutex<Vec<String>>, i: u8) -> String {
    let list = list.lock().unwrap();
    if list.is_empty() {
        return "P-none".into();
    }
    // Mostly the recent ones.
    list[list.len() - 1 - (i as usize % list.len().min(8))].clone()
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Outcomes per operation (`ok` or the error code), printed at exit when
/// `DTENGE_FUZZ_STATS=1`: shows how deep the inputs reach.
static OUTCOMES: Mutex<std::collections::BTreeMap<(&'static str, String), u64>> =
    Mutex::new(std::collections::BTreeMap::new());

thread_local! {
    /// Set by a step that had nothing to do (a client-signed transfer with no tokens to spend).
    static SKIPPED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count(op: &Op, r: &Result<()>) {
    let skipped = SKIPPED.with(|s| s.replace(false));
    if std::env::var_os("DTENGE_FUZZ_STATS").is_none() {
        return;
    }
    let outcome = match r {
        Ok(()) if skipped => "skipped (nothing to spend)".to_string(),
        Ok(()) => "ok".to_string(),
        Err(e) => e.code.to_string(),
    };
    *OUTCOMES.lock().unwrap().entry((op.name(), outcome)).or_default() += 1;
}

extern "C" fn remove_dirs() {
    if std::env::var_os("DTENGE_FUZZ_STATS").is_some() {
        if let Ok(outcomes) = OUTCOMES.lock() {
            for ((op, outcome), n) in outcomes.iter() {
                eprintln!("network_ops outcome: {op:24} {outcome:24} {n}");
            }
        }
    }
    if let Ok(dirs) = DIRS.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn open() -> Fixture {
    // tmpfs when there is one: every commit fsyncs.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a tempdir");
    {
        let mut dirs = DIRS.lock().unwrap();
        if dirs.is_empty() {
            extern "C" {
                fn atexit(f: extern "C" fn()) -> i32;
            }
            // SAFETY: registers a plain function; libFuzzer leaves through exit().
            unsafe { atexit(remove_dirs) };
        }
        dirs.push(dir.path().to_path_buf());
    }
    let clock = Arc::new(ManualClock::new(base_ms()));
    let net = Platform::open(dir.path(), clock.clone(), Entropy::from_seed(1)).expect("a fresh platform opens");
    // Liquidity, so that short inputs reach payments: every bank and the Treasury get bank
    // money and DT; a few clients get accounts.
    for node in ["steppe", "tulpar", "sapa", "treasury"] {
        must(net.credit_correspondent(None, node, amount_req(100_000_000_00)));
        must(net.emission(None, node, amount_req(10_000_000_00)));
    }
    let p = pools();
    for (i, node) in [(0usize, "steppe"), (1, "tulpar"), (2, "sapa"), (3, "steppe")] {
        let open = OpenAccount {
            kind: ClientKind::Individual,
            client_id: p.clients[i].clone(),
            name: "Aigerim Seitova".into(),
            phone: Some(p.phones[i].clone()),
            public_key: (i == 3).then(|| client_key(i).public_key()),
        };
        must(net.open_account(None, node, open));
        must(net.deposit_fiat(None, node, &p.clients[i], amount_req(1_000_000_00)));
        must(net.convert_to_dt(None, node, &p.clients[i], amount_req(500_000_00)));
    }
    let open = OpenAccount {
        kind: ClientKind::LegalEntity,
        client_id: p.clients[8].clone(),
        name: "TOO Dala Foods".into(),
        phone: None,
        public_key: None,
    };
    must(net.open_account(None, "steppe", open));
    must(net.deposit_fiat(None, "steppe", &p.clients[8], amount_req(10_000_000_00)));
    must(net.convert_to_dt(None, "steppe", &p.clients[8], amount_req(5_000_000_00)));
    // A canteen at another bank and a school at the Treasury (vouchers), and a card.
    for (i, node, kind, name) in [
        (9usize, "tulpar", ClientKind::LegalEntity, "TOO Canteen"),
        (10, "treasury", ClientKind::GovernmentAgency, "School No 12"),
    ] {
        let open =
            OpenAccount { kind, client_id: p.clients[i].clone(), name: name.into(), phone: None, public_key: None };
        must(net.open_account(None, node, open));
        must(net.deposit_fiat(None, node, &p.clients[i], amount_req(1_000_000_00)));
        must(net.convert_to_dt(None, node, &p.clients[i], amount_req(500_000_00)));
    }
    must(net.link_card(None, "steppe", LinkCard { client_id: p.clients[0].clone(), pan: p.pans[0].clone() }));
    let check = net.reconcile();
    assert!(check.ok, "a fresh platform reconciles: {:?}", check.problems);
    Fixture { net, clock, dir, inputs: 0, purchases: Mutex::new(Vec::new()), programs: Mutex::new(Vec::new()) }
}

fn must<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("fixture setup failed: {e}"))
}

fn amount_req(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).expect("small") }
}

fn node(i: u8) -> &'static str {
    NODES[i as usize % NODES.len()]
}

fn client(i: u8) -> (usize, &'static str) {
    let p = pools();
    let i = i as usize % p.clients.len();
    (i, p.clients[i].as_str())
}

/// A card number: half the time the one linked at setup, else any of the pool.
fn pan(i: u8) -> String {
    let p = pools();
    let i = if i < 128 { 0 } else { i as usize % p.pans.len() };
    p.pans[i].clone()
}

/// A business client: half the time one of the three opened at setup (a company, the canteen,
/// the school), else any client of the pool.
fn business(i: u8) -> (usize, &'static str) {
    if i < 128 {
        client(8 + i % 3)
    } else {
        client(i)
    }
}

fn reference(r: &Option<String>) -> Option<String> {
    r.as_ref().map(|s| s.chars().take(160).collect())
}

/// Run one operation, under an idempotency key when the step has one.
fn run<T, F>(net: &Platform, idem: Option<Idem>, op: F) -> Result<()>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(Option<&Idem>) -> Result<T>,
{
    net.once(idem, op).map(|_| ())
}

/// Build, sign and (maybe) tamper with a transfer a client that keeps its own key submits.
fn client_transfer(
    net: &Platform,
    bank: &str,
    client: usize,
    to: usize,
    amount: Amount,
    tamper: Tamper,
) -> Option<Transaction> {
    let p = pools();
    let inputs = net.spendable_tokens(bank, &p.clients[client]).ok()?;
    let key = client_key(client);
    let payee = client_key(to).address();
    let mut chosen = Vec::new();
    let mut total = Amount::ZERO;
    for input in inputs {
        if total >= amount {
            break;
        }
        total = total.checked_add(input.output.amount_tiyn).ok()?;
        chosen.push(input);
    }
    let issuer = chosen.first().map(|i| i.output.issuer)?;
    let mut outputs = vec![Output::standard(amount.min(total), payee, issuer)];
    if let Ok(change) = total.checked_sub(amount) {
        if !change.is_zero() {
            outputs.push(Output::standard(change, key.address(), issuer));
        }
    }
    if matches!(tamper, Tamper::Unbalanced) {
        outputs[0].amount_tiyn = outputs[0].amount_tiyn.checked_add(Amount::from_tiyn(1).ok()?).ok()?;
    }
    if matches!(tamper, Tamper::DuplicateInput) {
        let again = chosen[0].clone();
        chosen.push(again);
    }
    let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs: chosen, outputs, nonce: 7 });
    tx.sign_owner(&key);
    match tamper {
        Tamper::ChangeAmountAfterSigning => {
            let out = &mut tx.body.outputs[0];
            out.amount_tiyn = Amount::from_tiyn(out.amount_tiyn.tiyn().saturating_sub(1).max(1)).ok()?;
        }
        Tamper::DropWitness => tx.witnesses.clear(),
        _ => {}
    }
    Some(tx)
}

/// What the step changed that must be put back at the end of the input.
#[derive(Default)]
struct Touched {
    blocked: BTreeSet<&'static str>,
    days: BTreeSet<Date>,
}

fn step(f: &Fixture, s: &Step, input_no: u64, touched: &mut Touched) -> Result<()> {
    let net = &f.net;
    let idem = s.idem.map(|k| Idem {
        key: format!("fuzz-{input_no}-{k}"),
        fingerprint: hash_parts(b"dtenge/fuzz/op", &[format!("{:?}", s.op).as_bytes()]),
    });
    match &s.op {
        Op::Credit { node: n, amount } => {
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.credit_correspondent(i, node(*n), r))
        }
        Op::Emission { node: n, amount } => {
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.emission(i, node(*n), r))
        }
        Op::Redemption { node: n, amount } => {
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.redemption(i, node(*n), r))
        }
        Op::Open { node: n, client: c, kind, phone, name, own_key } => {
            let (ci, id) = client(*c);
            let r = OpenAccount {
                kind: kind.get(),
                client_id: id.to_string(),
                name: name.get(),
                phone: phone.as_ref().map(Phone::get),
                public_key: own_key.then(|| client_key(ci).public_key()),
            };
            run(net, idem, |i| net.open_account(i, node(*n), r))
        }
        Op::OpenBulk { node: n, accounts } => {
            let r: Vec<OpenAccount> = accounts
                .iter()
                .take(8)
                .map(|(c, kind, phone)| OpenAccount {
                    kind: kind.get(),
                    client_id: client(*c).1.to_string(),
                    name: "Bulk Client".into(),
                    phone: phone.as_ref().map(Phone::get),
                    public_key: None,
                })
                .collect();
            run(net, idem, |i| net.open_accounts(i, node(*n), r))
        }
        Op::Deposit { node: n, client: c, amount } => {
            let home = at(net, *n, *c);
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.deposit_fiat(i, home, client(*c).1, r))
        }
        Op::ToDt { node: n, client: c, amount } => {
            let home = at(net, *n, *c);
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.convert_to_dt(i, home, client(*c).1, r))
        }
        Op::FromDt { node: n, client: c, amount } => {
            let home = at(net, *n, *c);
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.convert_from_dt(i, home, client(*c).1, r))
        }
        Op::PayPhone { node: n, client: c, phone, bank, amount, reference: text } => {
            let home = at(net, *n, *c);
            let r = TransferRequest {
                from: client(*c).1.to_string(),
                to: Payee { phone: Some(phone.get()), bank: bank.map(|b| node(b).to_string()), ..Payee::default() },
                amount_tiyn: amount.get(),
                reference: reference(text),
            };
            run(net, idem, |i| net.transfer(i, home, r))
        }
        Op::PayClient { node: n, client: c, to, bank, amount } => {
            let home = at(net, *n, *c);
            let r = TransferRequest {
                from: client(*c).1.to_string(),
                to: Payee {
                    client_id: Some(client(*to).1.to_string()),
                    bank: bank.map(|b| node(b).to_string()),
                    ..Payee::default()
                },
                amount_tiyn: amount.get(),
                reference: None,
            };
            run(net, idem, |i| net.transfer(i, home, r))
        }
        Op::Registry { node: n, client: c, lines, reference: text } => {
            let home = at(net, *n, *c);
            let r = RegistryRequest {
                from: client(*c).1.to_string(),
                reference: reference(text),
                lines: lines
                    .iter()
                    .take(16)
                    .map(|l| RegistryLine {
                        phone: l.phone.as_ref().map(Phone::get),
                        client_id: l.client.map(|x| client(x).1.to_string()),
                        bank: l.bank.map(|b| node(b).to_string()),
                        amount_tiyn: l.amount.get(),
                    })
                    .collect(),
            };
            run(net, idem, |i| net.distribute_registry(i, home, r))
        }
        Op::Submit { node: n, client: c, to, amount, tamper } => {
            let home = at(net, *n, *c);
            let (ci, _) = client(*c);
            let (ti, _) = client(*to);
            let Some(tx) = client_transfer(net, home, ci, ti, amount.get(), *tamper) else {
                SKIPPED.with(|s| s.set(true));
                return Ok(());
            };
            let first = run(net, idem.clone(), |i| net.submit(i, home, tx.clone()));
            if matches!(tamper, Tamper::Resubmit) {
                // The same transaction again: a committed one is answered as before and
                // changes nothing (reconciliation after the step checks the latter).
                let again = run(net, None, |i| net.submit(i, home, tx));
                let _ = check(&again);
                if first.is_ok() {
                    assert!(again.is_ok(), "resubmitting a committed transaction failed: {again:?}");
                }
            }
            first
        }
        Op::LinkCard { node: n, client: c, pan: x } => {
            let home = at(net, *n, *c);
            let r = LinkCard { client_id: client(*c).1.to_string(), pan: pan(*x) };
            run(net, idem, |i| net.link_card(i, home, r))
        }
        Op::CardPurchase { pan: x, merchant_bank, merchant, amount, to_fiat } => {
            let r = CardPurchaseRequest {
                pan: pan(*x),
                merchant_bank: at_client(net, *merchant_bank, business(*merchant).1).to_string(),
                merchant_id: business(*merchant).1.to_string(),
                amount_tiyn: amount.get(),
                mode: if *to_fiat { CardMode::ConvertToFiat } else { CardMode::Dt },
            };
            let r = net.once(idem, |i| net.card_purchase(i, r));
            r.map(|p| f.purchases.lock().unwrap().push(p.id))
        }
        Op::CardRefund { purchase, amount } => {
            let id = pick(&f.purchases, *purchase);
            let r = AmountRequest { amount_tiyn: amount.get() };
            run(net, idem, |i| net.card_refund(i, &id, r))
        }
        Op::VoucherProgram { integrator, payer_bank, payer, payee_bank, payee, amount } => {
            let r = VoucherProgramRequest {
                integrator: INTEGRATORS[*integrator as usize % INTEGRATORS.len()].into(),
                payer_bank: at_client(net, *payer_bank, business(*payer).1).into(),
                payer_id: business(*payer).1.into(),
                payee_bank: at_client(net, *payee_bank, business(*payee).1).into(),
                payee_id: business(*payee).1.into(),
                amount_per_event_tiyn: amount.get(),
            };
            let r = net.once(idem, |i| net.create_voucher_program(i, r));
            r.map(|p| f.programs.lock().unwrap().push(p.id))
        }
        Op::VoucherEvent { program, integrator, event, card } => {
            let id = pick(&f.programs, *program);
            // Half the time the programme's own integrator, else any.
            let own = (*integrator < 128)
                .then(|| net.voucher_programs().into_iter().find(|p| p.id == id).map(|p| p.integrator))
                .flatten();
            let r = VoucherEvent {
                integrator: own.unwrap_or_else(|| INTEGRATORS[*integrator as usize % INTEGRATORS.len()].into()),
                event_id: format!("e-{}", event % 16),
                card: card.as_ref().map(|c| c.chars().take(160).collect()),
            };
            run(net, idem, |i| net.voucher_event(i, &id, r))
        }
        Op::Atm { pan: x, atm_bank, amount } => {
            let r = AtmWithdrawal { pan: pan(*x), atm_bank: node(*atm_bank).to_string(), amount_tiyn: amount.get() };
            run(net, idem, |i| net.atm_withdrawal(i, r))
        }
        Op::LookupPhone { phone } => net.lookup_phone(&phone.get()).map(|l| {
            assert!(!l.banks.is_empty());
        }),
        Op::View { node: n, client: c, offset, limit } => {
            let home = at(net, *n, *c);
            let (n, (_, c)) = (home, client(*c));
            net.account_view(n, c)?;
            net.history(n, c, usize::from(*offset), usize::from(*limit)).map(|_| ())
        }
        Op::Block { node: n, reason } => {
            let r = BlockRequest { reason: reason.chars().take(300).collect() };
            touched.blocked.insert(node(*n));
            run(net, idem, |i| net.block(i, node(*n), r))
        }
        Op::Unblock { node: n } => run(net, idem, |i| net.unblock(i, node(*n))),
        Op::SetDay { offset_days, working } => {
            let date = Date::from_days(Date::astana_of_unix_ms(base_ms()).days() + i64::from(*offset_days % 21));
            touched.days.insert(date);
            run(net, idem, |i| net.set_day(i, date, *working))
        }
        Op::Clock { hours } => {
            f.clock.set(base_ms() + u64::from(*hours % (24 * 14)) * 3_600_000);
            let _ = (net.today(), net.monitoring()?);
            Ok(())
        }
        Op::Checkpoint => run(net, idem, |i| net.checkpoint_now(i)),
    }
}

/// An error is fine (it is the answer to a bad request), but not one that means a broken
/// invariant or a failed store.
fn check(r: &Result<()>) -> Result<()> {
    if let Err(e) = r {
        assert!(
            !matches!(e.code, ErrorCode::Internal | ErrorCode::StorageFailure),
            "an operation answered {}: {}",
            e.code,
            e.message
        );
    }
    Ok(())
}

fn reconciled(net: &Platform, what: &dyn std::fmt::Debug) -> usize {
    let r = net.reconcile();
    assert!(r.ok, "the platform does not reconcile after {what:?}: {:?}", r.problems);
    r.node_tokens
}

// Typed input: libfuzzer-sys decodes it with `Input::arbitrary_take_rest`, and
// `cargo fuzz fmt network_ops <file>` prints it as a readable list of operations.
fuzz_target!(|input: Input| {
    let mut guard = FIXTURE.lock().unwrap_or_else(|e| e.into_inner());
    let fixture = guard.get_or_insert_with(open);
    fixture.inputs += 1;
    let input_no = fixture.inputs;

    let mut touched = Touched::default();
    let mut tokens = 0;
    for s in input.steps.iter().take(OPS_MAX) {
        let r = step(fixture, s, input_no, &mut touched);
        count(&s.op, &r);
        let _ = check(&r);
        tokens = reconciled(&fixture.net, &s.op);
    }

    // Put back what this input changed in the operator's settings and the clock.
    let net = &fixture.net;
    fixture.clock.set(base_ms());
    for n in touched.blocked {
        let _ = check(&net.unblock(None, n).map(|_| ()));
    }
    for d in touched.days {
        let _ = check(&net.set_day(None, d, Calendar::default_is_working(d)).map(|_| ()));
    }
    reconciled(net, &"restoring the operator's settings");

    if fixture.inputs >= INPUTS_PER_NETWORK || tokens > TOKENS_MAX {
        let old = guard.take().expect("a fixture");
        let path = old.dir.path().to_path_buf();
        // The roles' threads end and their stores close before the directory goes.
        old.net.shutdown();
        drop(old.dir);
        DIRS.lock().unwrap().retain(|d| *d != path);
    }
});
