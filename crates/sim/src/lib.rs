//! The deterministic simulator: the whole network (NBK, three banks, the Treasury, notary,
//! ABS, ID center) on a simulated disk, driven by simulated clients over a simulated network
//! that loses, duplicates, delays and reorders messages, while the process crashes (between
//! requests, or inside a commit: before the write, torn in the middle, or after the write but
//! before the answer) and restarts. Everything comes from one seed, so a failing seed replays
//! exactly: `dtenge sim --seed N --trace`.
//!
//! Each seed also draws its own fault rates (swarm testing): some runs are calm, some lose a
//! third of their messages, some crash on every other request.
//!
//! What is checked:
//! - at every restart, the network reopens and reconciles: DT in circulation by the NBK's
//!   registry = the sum of every node's tokens = the ABS DT liability; node tokens = the
//!   notary's unspent set (no token spent twice, none lost);
//! - no acknowledged payment is lost: every transaction id a client was told succeeded is
//!   committed, after every restart;
//! - a request whose commit failed (a crash inside it, or a write that failed while the
//!   process lives) is never answered with a success;
//! - one answer per idempotency key: once a request succeeded, every later execution of it
//!   gives that same success, and a client never hears two different successes;
//! - of two transactions spending the same tokens (injected double spends), at most one is
//!   committed at the notary;
//! - at the end, after every request is resolved: each client's DT and bank money equal what
//!   the answers it got say they should be (no payment applied twice, none half-applied); DT
//!   in circulation equals the start plus the emissions minus the redemptions that succeeded;
//!   and no reservation is left behind, on clients' or banks' own accounts.
//!
//! Client-signed transfers go through the payment pipeline's stages, in batches of what
//! arrived between two of its turns ([`Faults::batch_wait_ms_max`]), each batch begun before
//! the previous one is finished, as the pipeline's settle thread does; a crash inside a
//! batch's commit loses the answers of that batch and of the one before it.
//!
//! Components share one process and one store today, so "crash a component" means crashing
//! the process at that component's step of the path; every step of a payment that touches the
//! disk is a crash point. When nodes become separate processes, each gets its own [`SimDisk`].

pub mod roles;

use dtenge_core::calendar::Date;
use dtenge_core::crypto::{hash_parts, Hash32, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Output, TxId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::Error;
use dtenge_network::pipeline::{Settling, BATCH_MAX};
use dtenge_network::types::{AmountRequest, OpenAccount, Payee, Receipt, TransferRequest};
use dtenge_network::{Entropy, Idem, ManualClock, Network, NetworkConfig, Submission};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::ClientKind;
use dtenge_store::{CrashMode, SimDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The commercial banks of the simulated network (those of [`NetworkConfig::standard`]).
const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];
/// Most attempts a client makes for one request before it gives up until the end of the run.
const ATTEMPTS_MAX: u32 = 12;
/// Most events one run processes: a bound on the loop, far above what a run needs.
const EVENTS_MAX: u64 = 1_000_000;
/// The answer that asks a client to retry later.
const IN_PROGRESS: &str = "REQUEST_IN_PROGRESS";
/// Every client starts with this much bank money, and converts part of it to DT.
const FIAT_START_TIYN: u64 = 50_000_00;
const DT_START_TIYN: u64 = 20_000_00;

/// What one run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Logical requests the clients send (each may be sent many times).
    pub requests: u32,
    /// Clients, spread over the banks; every other one keeps its own key and signs itself.
    pub clients: usize,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig { requests: 60, clients: 6 }
    }
}

/// The fault rates of one run, drawn from its seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Chance that a message (request or answer) is lost.
    pub drop_permille: u32,
    /// Chance that a message is delivered twice.
    pub duplicate_permille: u32,
    /// Longest one-way delay; messages overtake each other within it.
    pub latency_ms_max: u64,
    /// Chance that the commit of a request it handles fails: the process crashes inside it
    /// (before the write, torn, after the write), or the write fails and the process lives.
    pub crash_in_commit_permille: u32,
    /// Chance that the process crashes while idle, before a new request.
    pub crash_idle_permille: u32,
    /// Longest pause between two turns of the payment pipeline: longer pauses make larger
    /// batches (several submissions, repeats and double spends in one commit).
    pub batch_wait_ms_max: u64,
    /// Chance that the process writes a checkpoint of the unspent set and the nodes' tokens
    /// before a new request (with `crash_in_commit_permille`, a crash may hit any of its
    /// commits).
    pub checkpoint_permille: u32,
}

impl Faults {
    fn draw(rng: &mut ChaCha20Rng) -> Faults {
        let pick = |rng: &mut ChaCha20Rng, choices: &[u32]| choices[rng.gen_range(0..choices.len())];
        Faults {
            drop_permille: pick(rng, &[0, 20, 100, 300]),
            duplicate_permille: pick(rng, &[0, 50, 200]),
            latency_ms_max: [1, 20, 200][rng.gen_range(0..3)],
            crash_in_commit_permille: pick(rng, &[0, 30, 150, 500]),
            crash_idle_permille: pick(rng, &[0, 20, 100]),
            batch_wait_ms_max: [3, 20, 60][rng.gen_range(0..3)],
            checkpoint_permille: pick(rng, &[0, 10, 50, 200]),
        }
    }

    const NONE: Faults = Faults {
        drop_permille: 0,
        duplicate_permille: 0,
        latency_ms_max: 1,
        crash_in_commit_permille: 0,
        crash_idle_permille: 0,
        batch_wait_ms_max: 3,
        checkpoint_permille: 0,
    };
}

/// What a run went through.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub seed: u64,
    pub faults: Faults,
    /// SHA-256 over the trace: equal digests mean the same run.
    pub trace_digest: Hash32,
    pub requests: u32,
    pub succeeded: u32,
    /// Final rejections by error code.
    pub rejected: BTreeMap<String, u32>,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    pub crashes: u64,
    pub torn_records_discarded: u64,
    pub restarts: u64,
    pub double_spend_pairs: u32,
    /// Checkpoints written, and crashes inside one.
    pub checkpoints: u64,
    pub checkpoint_crashes: u64,
    /// Every event of the run, in order (what `--trace` prints).
    pub trace: Vec<String>,
}

/// A broken invariant, with the seed that replays it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub violation: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {}: {} (replay: dtenge sim --seed {} --trace)", self.seed, self.violation, self.seed)
    }
}

/// Run one seed; `Err` names the invariant that broke.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(seed, config);
    match sim.run_all() {
        Ok(()) => Ok(sim.report()),
        Err(violation) => Err(SimFailure { seed, violation, trace: sim.trace }),
    }
}

type Answer = Result<TxId, String>;

#[derive(Clone, Debug)]
enum Op {
    /// A custodial client pays another client by address; its bank signs.
    Transfer {
        payer: usize,
        payee: usize,
        amount: Amount,
    },
    /// A client that keeps its own key submits a transaction it signed.
    Submit {
        payer: usize,
        tx: Box<Transaction>,
    },
    ToDt {
        client: usize,
        amount: Amount,
    },
    FromDt {
        client: usize,
        amount: Amount,
    },
    Emission {
        bank: usize,
        amount: Amount,
    },
    Redemption {
        bank: usize,
        amount: Amount,
    },
}

struct Request {
    op: Op,
    idem: Idem,
    /// Attempts sent so far.
    attempts: u32,
    /// The first success the client heard, if any.
    acked: Option<TxId>,
    /// The first success the network answered (heard or not).
    succeeded: Option<TxId>,
    /// Set when the client heard any answer: it stops retrying.
    answered: bool,
    /// The answer after the run's resolution pass: what the model counts.
    last: Option<Answer>,
}

struct Client {
    node: &'static str,
    id: String,
    /// `Some` for clients that keep their own key.
    key: Option<SecretKey>,
    address: dtenge_core::crypto::Address,
}

/// How the trace ends a line about a checkpoint written, and one about a crash inside one.
const CHECKPOINT_WRITTEN: &str = " (checkpoint written)";
const CHECKPOINT_CRASH_REASON: &str = "in checkpoint";
const CHECKPOINT_CRASHED: &str = "process crashes (in checkpoint)";

#[derive(Debug)]
enum Event {
    /// The generator sends the next new request.
    NewRequest,
    /// A request arrives at the network.
    Deliver { request: usize, attempt: u32 },
    /// An answer arrives at the client.
    Answer { request: usize, attempt: u32, answer: Answer },
    /// The client's patience for an attempt ends.
    Timeout { request: usize, attempt: u32 },
    /// The crashed process starts again.
    Restart,
    /// The payment pipeline's settle thread takes its next turn.
    PipelineTick,
}

struct Sim {
    seed: u64,
    config: SimConfig,
    rng: ChaCha20Rng,
    faults: Faults,
    clock: Arc<ManualClock>,
    disk: SimDisk,
    network: Option<Network>,
    restart_pending: bool,
    /// Client-signed submissions waiting for the pipeline's next turn.
    pipeline_queue: Vec<(usize, u32)>,
    /// The batch whose commit is under way: its (request, attempt)s and its stage-2 state.
    pipeline_in_commit: Option<(Vec<(usize, u32)>, Settling)>,
    tick_scheduled: bool,
    /// Events by (time, sequence): a deterministic priority queue.
    events: BTreeMap<(u64, u64), Event>,
    sequence: u64,
    clients: Vec<Client>,
    requests: Vec<Request>,
    double_spends: Vec<(usize, usize)>,
    start_dt: Vec<Amount>,
    start_fiat: Vec<Amount>,
    start_circulation: Amount,
    trace: Vec<String>,
    messages_sent: u64,
    messages_dropped: u64,
    messages_duplicated: u64,
    restarts: u64,
}

/// 2026-11-23, a Monday (an operational day), 10:00 in Astana, in Unix milliseconds.
fn start_ms() -> u64 {
    let days = Date::new(2026, 11, 23).map(|d| d.days()).unwrap_or(0);
    ((days * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn code(e: &Error) -> String {
    e.code.as_str().to_string()
}

impl Sim {
    fn new(seed: u64, config: &SimConfig) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let faults = Faults::draw(&mut rng);
        Sim {
            seed,
            config: config.clone(),
            rng,
            faults,
            clock: Arc::new(ManualClock::new(start_ms())),
            disk: SimDisk::new(),
            network: None,
            restart_pending: false,
            pipeline_queue: Vec::new(),
            pipeline_in_commit: None,
            tick_scheduled: false,
            events: BTreeMap::new(),
            sequence: 0,
            clients: Vec::new(),
            requests: Vec::new(),
            double_spends: Vec::new(),
            start_dt: Vec::new(),
            start_fiat: Vec::new(),
            start_circulation: Amount::ZERO,
            trace: Vec::new(),
            messages_sent: 0,
            messages_dropped: 0,
            messages_duplicated: 0,
            restarts: 0,
        }
    }

    fn now(&self) -> u64 {
        dtenge_network::Clock::now_ms(self.clock.as_ref())
    }

    fn log(&mut self, line: String) {
        let at = self.now() - start_ms();
        self.trace.push(format!("{at:>7}ms {line}"));
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.sequence += 1;
        let at = self.now() + delay_ms;
        self.events.insert((at, self.sequence), event);
    }

    fn chance(&mut self, permille: u32) -> bool {
        self.rng.gen_range(0..1000) < permille
    }

    /// Send a message through the faulty network: maybe lost, maybe twice, always late.
    fn send(&mut self, event: Event, describe: &str) {
        self.messages_sent += 1;
        if self.chance(self.faults.drop_permille) {
            self.messages_dropped += 1;
            self.log(format!("lost {describe}"));
            return;
        }
        let copies = if self.chance(self.faults.duplicate_permille) { 2 } else { 1 };
        if copies == 2 {
            self.messages_duplicated += 1;
            self.log(format!("duplicated {describe}"));
            let copy = match &event {
                Event::Deliver { request, attempt } => Event::Deliver { request: *request, attempt: *attempt },
                Event::Answer { request, attempt, answer } => {
                    Event::Answer { request: *request, attempt: *attempt, answer: answer.clone() }
                }
                _ => unreachable!("only requests and answers travel"),
            };
            let delay = self.rng.gen_range(1..=self.faults.latency_ms_max);
            self.schedule(delay, copy);
        }
        let delay = self.rng.gen_range(1..=self.faults.latency_ms_max);
        self.schedule(delay, event);
    }

    fn run_all(&mut self) -> Result<(), String> {
        self.start()?;
        self.setup()?;
        self.log(format!("faults {:?}", self.faults));
        self.schedule(1, Event::NewRequest);
        let mut processed = 0u64;
        while let Some(((at, _), event)) = self.events.pop_first() {
            processed += 1;
            if processed > EVENTS_MAX {
                return Err(format!("more than {EVENTS_MAX} events: the run does not converge"));
            }
            self.clock.set(at);
            self.handle(event)?;
        }
        self.resolve()?;
        self.check_final()
    }

    fn start(&mut self) -> Result<(), String> {
        let entropy = Entropy::from_seed(self.seed);
        let network =
            Network::open_simulated(self.disk.clone(), &NetworkConfig::standard(), self.clock.clone(), entropy)
                .map_err(|e| format!("the network does not open: {e}"))?;
        self.network = Some(network);
        Ok(())
    }

    fn net(&self) -> Result<&Network, String> {
        self.network.as_ref().ok_or_else(|| "the network is down".to_string())
    }

    /// Banks get liquidity, clients open accounts and get DT; no faults yet.
    fn setup(&mut self) -> Result<(), String> {
        let fail = |what: &str, e: Error| format!("setup: {what}: {e}");
        let net = self.network.as_ref().ok_or("no network")?;
        for bank in BANKS {
            let amount = AmountRequest { amount_tiyn: Amount::from_tiyn(1_000_000_00).map_err(|e| fail("amount", e))? };
            net.credit_correspondent(None, bank, amount).map_err(|e| fail("correspondent", e))?;
            let amount = AmountRequest { amount_tiyn: Amount::from_tiyn(300_000_00).map_err(|e| fail("amount", e))? };
            net.emission(None, bank, amount).map_err(|e| fail("emission", e))?;
        }
        let mut clients = Vec::new();
        for i in 0..self.config.clients {
            let node = BANKS[i % BANKS.len()];
            let id = complete_iin_bin(&format!("900101{:05}", 300 + i)).ok_or("no IIN")?;
            let key = (i % 2 == 1).then(|| {
                SecretKey::from_seed(hash_parts(b"sim/client", &[&self.seed.to_le_bytes(), &i.to_le_bytes()]).0)
            });
            let request = OpenAccount {
                kind: ClientKind::Individual,
                client_id: id.clone(),
                name: format!("Client {i}"),
                phone: None,
                public_key: key.as_ref().map(SecretKey::public_key),
            };
            let account = net.open_account(None, node, request).map_err(|e| fail("open", e))?;
            let amount = |tiyn| AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).unwrap_or(Amount::ZERO) };
            net.deposit_fiat(None, node, &id, amount(FIAT_START_TIYN)).map_err(|e| fail("deposit", e))?;
            net.convert_to_dt(None, node, &id, amount(DT_START_TIYN)).map_err(|e| fail("to DT", e))?;
            clients.push(Client { node, id, key, address: account.address });
        }
        for client in &clients {
            let balance = net.balance(client.node, &client.id).map_err(|e| fail("balance", e))?;
            self.start_dt.push(balance.dt_tiyn);
            self.start_fiat.push(balance.fiat_tiyn);
        }
        self.clients = clients;
        self.start_circulation = net.reconcile().circulation_by_nbk_tiyn;
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::NewRequest => self.new_request(),
            Event::Deliver { request, attempt } => self.deliver(request, attempt),
            Event::Answer { request, attempt, answer } => self.hear(request, attempt, answer),
            Event::Timeout { request, attempt } => {
                let r = &self.requests[request];
                if !r.answered && r.attempts == attempt && attempt < ATTEMPTS_MAX {
                    self.log(format!("r{request} timed out, resend"));
                    self.send_attempt(request);
                }
                Ok(())
            }
            Event::Restart => self.restart(),
            Event::PipelineTick => self.pipeline_tick(),
        }
    }

    fn new_request(&mut self) -> Result<(), String> {
        if self.network.is_some() && self.chance(self.faults.crash_idle_permille) {
            self.crash("idle");
        }
        if self.network.is_some() && self.chance(self.faults.checkpoint_permille) {
            self.checkpoint()?;
        }
        let index = self.requests.len();
        if let Some(op) = self.draw_op()? {
            self.push_request(op);
            if let Some(Op::Submit { .. }) = self.requests.last().map(|r| &r.op) {
                if self.chance(150) {
                    self.double_spend(index);
                }
            }
        }
        if (self.requests.len() as u32) < self.config.requests {
            let gap = self.rng.gen_range(1..=20);
            self.schedule(gap, Event::NewRequest);
        }
        Ok(())
    }

    fn push_request(&mut self, op: Op) {
        let index = self.requests.len();
        let key = format!("sim-{}-{index}", self.seed);
        let fingerprint = hash_parts(b"sim/request", &[key.as_bytes(), format!("{op:?}").as_bytes()]);
        self.log(format!("r{index} new {}", describe(&op)));
        self.requests.push(Request {
            op,
            idem: Idem { key, fingerprint },
            attempts: 0,
            acked: None,
            succeeded: None,
            answered: false,
            last: None,
        });
        self.send_attempt(index);
    }

    fn send_attempt(&mut self, request: usize) {
        self.requests[request].attempts += 1;
        let attempt = self.requests[request].attempts;
        self.send(Event::Deliver { request, attempt }, &format!("r{request}#{attempt} request"));
        // Patience: a round trip at the longest delay, plus a restart.
        let patience = 4 * self.faults.latency_ms_max + 600;
        self.schedule(patience, Event::Timeout { request, attempt });
    }

    fn amount(&mut self) -> Amount {
        // Mostly affordable, sometimes not (rejections are part of the run).
        let tiyn = if self.chance(100) { self.rng.gen_range(1..=60_000_00) } else { self.rng.gen_range(1..=3_000_00) };
        Amount::from_tiyn(tiyn).unwrap_or(Amount::ZERO)
    }

    fn draw_op(&mut self) -> Result<Option<Op>, String> {
        let clients = self.clients.len();
        let client = self.rng.gen_range(0..clients);
        let other = (client + self.rng.gen_range(1..clients)) % clients;
        let amount = self.amount();
        let roll = self.rng.gen_range(0..100);
        let op = match roll {
            0..=59 if self.clients[client].key.is_some() => match self.build_submit(client, other, amount)? {
                Some(op) => op,
                None => return Ok(None),
            },
            0..=59 => Op::Transfer { payer: client, payee: other, amount },
            60..=74 => Op::ToDt { client, amount },
            75..=89 => Op::FromDt { client, amount },
            90..=94 => Op::Emission { bank: client % BANKS.len(), amount },
            _ => Op::Redemption { bank: client % BANKS.len(), amount },
        };
        Ok(Some(op))
    }

    /// The client asks its bank for its spendable tokens (a read, answered at once) and signs
    /// a transfer. `None` when the network is down or the client has nothing to spend.
    fn build_submit(&mut self, payer: usize, payee: usize, amount: Amount) -> Result<Option<Op>, String> {
        let Some(net) = self.network.as_ref() else { return Ok(None) };
        let client = &self.clients[payer];
        let tokens = net.spendable_tokens(client.node, &client.id).map_err(|e| format!("spendable tokens: {e}"))?;
        let mut inputs = Vec::new();
        let mut total = Amount::ZERO;
        for input in tokens {
            if total >= amount {
                break;
            }
            total = total.checked_add(input.output.amount_tiyn).map_err(|e| e.to_string())?;
            inputs.push(input);
        }
        let Some(first) = inputs.first() else { return Ok(None) };
        let issuer = first.output.issuer;
        // Spend what there is when the client holds less than it wanted to pay.
        let pay = amount.min(total);
        let mut outputs = vec![Output::standard(pay, self.clients[payee].address, issuer)];
        let change = total.checked_sub(pay).map_err(|e| e.to_string())?;
        if !change.is_zero() {
            outputs.push(Output::standard(change, client.address, issuer));
        }
        let nonce = self.rng.gen();
        let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce });
        let key = client.key.as_ref().ok_or("a custodial client cannot sign")?;
        tx.sign_owner(key);
        Ok(Some(Op::Submit { payer, tx: Box::new(tx) }))
    }

    /// The same tokens, signed over again to someone else and sent as another request.
    fn double_spend(&mut self, first: usize) {
        let Op::Submit { payer, tx } = &self.requests[first].op else { return };
        let payer = *payer;
        let mut body = tx.body.clone();
        let total = body.outputs.iter().try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.amount_tiyn));
        let Ok(total) = total else { return };
        let victim = (payer + 1) % self.clients.len();
        body.outputs = vec![Output::standard(total, self.clients[victim].address, body.outputs[0].issuer)];
        body.nonce = self.rng.gen();
        let mut copy = Transaction::new(body);
        if let Some(key) = &self.clients[payer].key {
            copy.sign_owner(key);
        }
        let second = self.requests.len();
        self.push_request(Op::Submit { payer, tx: Box::new(copy) });
        self.double_spends.push((first, second));
    }

    fn deliver(&mut self, request: usize, attempt: u32) -> Result<(), String> {
        if self.network.is_none() {
            self.log(format!("r{request}#{attempt} arrives at a dead process"));
            return Ok(());
        }
        // Client-signed transfers go through the payment pipeline, in batches.
        if let Op::Submit { .. } = self.requests[request].op {
            self.log(format!("r{request}#{attempt} queued for the pipeline"));
            self.pipeline_queue.push((request, attempt));
            if !self.tick_scheduled {
                self.tick_scheduled = true;
                let delay = self.rng.gen_range(1..=self.faults.batch_wait_ms_max);
                self.schedule(delay, Event::PipelineTick);
            }
            return Ok(());
        }
        self.maybe_arm_crash();
        let answer = self.execute(request);
        let (crashed, failed) = (self.disk.crashed(), self.disk.failed());
        if (crashed || failed) && answer.is_ok() {
            return Err(format!("r{request}#{attempt} was answered {} although its commit failed", show(&answer)));
        }
        if crashed {
            self.log(format!("r{request}#{attempt} crashed the process inside its commit"));
            self.crash("in commit");
            return Ok(());
        }
        self.disk.disarm();
        self.answer(request, attempt, answer)?;
        if failed {
            // The process lived and answered (an error); it commits nothing more, so the
            // operator restarts it.
            self.crash("restart after a failed write");
        }
        Ok(())
    }

    /// A checkpoint, unless a pipeline batch is between its commit and its apply (the process
    /// would wait for it: the checkpointer thread of `dtenge up` does). A crash may hit any of
    /// its commits; the restart then finds the previous checkpoint and the whole log after it.
    fn checkpoint(&mut self) -> Result<(), String> {
        if self.pipeline_in_commit.is_some() {
            return Ok(());
        }
        if self.chance(self.faults.crash_in_commit_permille) {
            let mode = match self.rng.gen_range(0..3) {
                0 => CrashMode::BeforeWrite,
                1 => CrashMode::Torn { kept_bytes_permille: self.rng.gen_range(1..1000) },
                _ => CrashMode::AfterWrite,
            };
            let commit = self.rng.gen_range(1..=3);
            self.disk.arm_crash(commit, mode);
        }
        let outcome = self.net()?.checkpoint();
        if self.disk.crashed() {
            self.crash(CHECKPOINT_CRASH_REASON);
            return Ok(());
        }
        self.disk.disarm();
        match outcome {
            Ok(report) => {
                self.log(format!(
                    "checkpoint {}: {} unspent, {} node tokens{CHECKPOINT_WRITTEN}",
                    report.notary.generation, report.notary.items, report.nodes.items
                ));
                Ok(())
            }
            Err(e) => Err(format!("a checkpoint failed without a crash: {e}")),
        }
    }

    fn maybe_arm_crash(&mut self) {
        if self.chance(self.faults.crash_in_commit_permille) {
            let mode = match self.rng.gen_range(0..5) {
                0 => CrashMode::BeforeWrite,
                1 => CrashMode::Torn { kept_bytes_permille: self.rng.gen_range(1..1000) },
                2 => CrashMode::AfterWrite,
                n => CrashMode::FailedWrite { written: n == 4 },
            };
            self.disk.arm_crash(1, mode);
        }
    }

    /// The network answers an attempt: check it against what the request answered before,
    /// then send it.
    fn answer(&mut self, request: usize, attempt: u32, answer: Answer) -> Result<(), String> {
        // Once a request succeeded (durably: a failed commit answers an error, checked by the
        // callers), every later execution of it must give the same success, from its
        // idempotency record. (Answers may still reach the client out of order: an error
        // computed before the success can arrive after it.)
        let r = &mut self.requests[request];
        match (&answer, r.succeeded) {
            // "Still being processed, retry": a copy that arrived while the first was in
            // flight (the same transaction twice in one batch).
            (Err(code), _) if code == IN_PROGRESS => {}
            (Err(code), Some(first)) => {
                return Err(format!("r{request}#{attempt} succeeded as {first} before, now it answers {code}"));
            }
            (Ok(tx_id), Some(first)) if *tx_id != first => {
                return Err(format!("r{request}#{attempt} succeeded as {first} before, now as {tx_id}"));
            }
            (Ok(tx_id), None) => r.succeeded = Some(*tx_id),
            _ => {}
        }
        self.log(format!("r{request}#{attempt} handled: {}", show(&answer)));
        self.send(Event::Answer { request, attempt, answer }, &format!("r{request}#{attempt} answer"));
        Ok(())
    }

    /// One turn of the payment pipeline, as its settle thread runs it: the submissions that
    /// arrived form a batch, which is checked, spent, planned and handed to the store; then
    /// the batch before it (whose commit was under way meanwhile) is applied and answered.
    /// A crash inside this batch's commit loses both batches' answers.
    fn pipeline_tick(&mut self) -> Result<(), String> {
        self.tick_scheduled = false;
        let Some(net) = self.network.as_ref() else {
            self.pipeline_queue.clear();
            return Ok(());
        };
        let mut immediate = Vec::new();
        let mut members = Vec::new();
        let mut submissions = Vec::new();
        // A turn takes at most one batch; the rest waits for the next turn.
        let take = self.pipeline_queue.len().min(BATCH_MAX);
        for (request, attempt) in self.pipeline_queue.drain(..take).collect::<Vec<_>>() {
            let r = &self.requests[request];
            // As the API does: a key seen before gets its stored answer.
            match net.stored_answer::<Receipt>(&r.idem) {
                Ok(Some(receipt)) => immediate.push((request, attempt, Ok(receipt.tx_id))),
                Err(e) => immediate.push((request, attempt, Err(code(&e)))),
                Ok(None) => {
                    let Op::Submit { payer, tx } = &r.op else { continue };
                    let node = self.clients[*payer].node.to_string();
                    submissions.push(Submission { node, tx: (**tx).clone(), idem: Some(r.idem.clone()) });
                    members.push((request, attempt));
                }
            }
        }
        if !submissions.is_empty() {
            self.maybe_arm_crash();
        }
        let net = self.network.as_ref().ok_or("the network vanished")?;
        let size = submissions.len();
        let begun = (!submissions.is_empty()).then(|| net.begin_batch(submissions));
        if size > 0 {
            self.trace.push(format!("{:>7}ms pipeline batch of {size}", self.now() - start_ms()));
        }
        if self.disk.crashed() {
            self.log(format!("a batch of {} crashed the process inside its commit", members.len()));
            self.pipeline_in_commit = None;
            self.crash("in a batch commit");
            return Ok(());
        }
        self.disk.disarm();
        let mut answers = Vec::new();
        if let Some((previous, settling)) = self.pipeline_in_commit.take() {
            answers.extend(previous.into_iter().zip(net.finish_batch(settling)));
        }
        let failed = self.disk.failed();
        match begun {
            // A failed write: finish at once, every answer must be an error.
            Some(settling) if failed => {
                let results = net.finish_batch(settling);
                if let Some(ok) = results.iter().find(|r| r.is_ok()) {
                    return Err(format!("a batch was answered {ok:?} although its commit failed"));
                }
                answers.extend(members.into_iter().zip(results));
            }
            Some(settling) => self.pipeline_in_commit = Some((members, settling)),
            None => {}
        }
        for ((request, attempt), result) in answers {
            self.answer(request, attempt, result.map(|receipt| receipt.tx_id).map_err(|e| code(&e)))?;
        }
        for (request, attempt, answer) in immediate {
            self.answer(request, attempt, answer)?;
        }
        if failed {
            self.crash("restart after a failed write");
            return Ok(());
        }
        if self.pipeline_in_commit.is_some() || !self.pipeline_queue.is_empty() {
            self.tick_scheduled = true;
            let delay = self.rng.gen_range(1..=self.faults.batch_wait_ms_max);
            self.schedule(delay, Event::PipelineTick);
        }
        Ok(())
    }

    /// Hand one request to the network, as the API would.
    fn execute(&self, request: usize) -> Answer {
        let Some(net) = self.network.as_ref() else { return Err("UNAVAILABLE".into()) };
        let r = &self.requests[request];
        // As the API does: the idempotency key is checked before the operation runs.
        let result = net.once(Some(r.idem.clone()), |idem| self.operate(net, &r.op, idem));
        result.map(|receipt| receipt.tx_id).map_err(|e| code(&e))
    }

    fn operate(&self, net: &Network, op: &Op, idem: Option<&Idem>) -> dtenge_core::Result<Receipt> {
        let amount_of = |amount: Amount| AmountRequest { amount_tiyn: amount };
        match op {
            Op::Transfer { payer, payee, amount } => {
                let payer = &self.clients[*payer];
                let to = Payee { address: Some(self.clients[*payee].address), ..Payee::default() };
                let request = TransferRequest { from: payer.id.clone(), to, amount_tiyn: *amount, reference: None };
                net.transfer(idem, payer.node, request)
            }
            Op::Submit { payer, tx } => net.submit(idem, self.clients[*payer].node, (**tx).clone()),
            Op::ToDt { client, amount } => {
                let c = &self.clients[*client];
                net.convert_to_dt(idem, c.node, &c.id, amount_of(*amount))
            }
            Op::FromDt { client, amount } => {
                let c = &self.clients[*client];
                net.convert_from_dt(idem, c.node, &c.id, amount_of(*amount))
            }
            Op::Emission { bank, amount } => net.emission(idem, BANKS[*bank], amount_of(*amount)),
            Op::Redemption { bank, amount } => net.redemption(idem, BANKS[*bank], amount_of(*amount)),
        }
    }

    fn hear(&mut self, request: usize, attempt: u32, answer: Answer) -> Result<(), String> {
        self.log(format!("r{request}#{attempt} client hears {}", show(&answer)));
        let r = &mut self.requests[request];
        // "In progress" asks the client to retry: its timeout will.
        if matches!(&answer, Err(code) if code == IN_PROGRESS) {
            return Ok(());
        }
        r.answered = true;
        if let Ok(tx_id) = answer {
            match r.acked {
                Some(first) if first != tx_id => {
                    return Err(format!("request r{request} was answered with two different successes"));
                }
                _ => r.acked = Some(tx_id),
            }
        }
        Ok(())
    }

    fn crash(&mut self, why: &str) {
        self.log(format!("process crashes ({why})"));
        // Everything in memory is gone, the batch whose commit was under way included.
        self.pipeline_in_commit = None;
        self.pipeline_queue.clear();
        self.network = None;
        if !self.restart_pending {
            self.restart_pending = true;
            let delay = self.rng.gen_range(10..=500);
            self.schedule(delay, Event::Restart);
        }
    }

    fn restart(&mut self) -> Result<(), String> {
        self.restart_pending = false;
        self.restarts += 1;
        self.start()?;
        self.log("process restarted and reconciled".into());
        self.check_acknowledged()
    }

    /// Every success a client heard is committed.
    fn check_acknowledged(&self) -> Result<(), String> {
        let net = self.net()?;
        for (i, r) in self.requests.iter().enumerate() {
            if let Some(tx_id) = r.acked {
                if !net.is_committed(&tx_id) {
                    return Err(format!("request r{i} was acknowledged as {tx_id} but that transaction is lost"));
                }
            }
        }
        Ok(())
    }

    /// The end of the run: the network heals, and every client asks once more about every
    /// request (same idempotency key). Each request then has one final answer.
    fn resolve(&mut self) -> Result<(), String> {
        self.faults = Faults::NONE;
        if self.network.is_none() {
            self.restart()?;
        }
        self.log("resolution: every request asked once more".into());
        for request in 0..self.requests.len() {
            let answer = self.execute(request);
            if let (Ok(tx_id), Some(acked)) = (&answer, self.requests[request].acked) {
                if *tx_id != acked {
                    return Err(format!("request r{request} acknowledged as {acked}, asked again it says {tx_id}"));
                }
            }
            if let (Err(code), Some(acked)) = (&answer, self.requests[request].acked) {
                return Err(format!("request r{request} acknowledged as {acked}, asked again it fails: {code}"));
            }
            self.log(format!("r{request} final: {}", show(&answer)));
            self.requests[request].last = Some(answer);
        }
        Ok(())
    }

    fn check_final(&self) -> Result<(), String> {
        let net = self.net()?;
        let check = net.reconcile();
        if !check.ok {
            return Err(format!("the network does not reconcile: {:?}", check.problems));
        }
        self.check_acknowledged()?;
        for &(a, b) in &self.double_spends {
            let committed = |i: usize| match &self.requests[i].op {
                Op::Submit { tx, .. } => net.is_committed(&tx.id()),
                _ => false,
            };
            if committed(a) && committed(b) {
                return Err(format!("double spend: r{a} and r{b} spend the same tokens and both committed"));
            }
        }
        // Circulation moves only by the emissions and redemptions that succeeded.
        let mut circulation = i128::from(self.start_circulation.tiyn());
        for r in self.requests.iter().filter(|r| matches!(r.last, Some(Ok(_)))) {
            match r.op {
                Op::Emission { amount, .. } => circulation += i128::from(amount.tiyn()),
                Op::Redemption { amount, .. } => circulation -= i128::from(amount.tiyn()),
                _ => {}
            }
        }
        if i128::from(check.circulation_by_nbk_tiyn.tiyn()) != circulation {
            return Err(format!(
                "{} tiyn in circulation; the answers to emissions and redemptions say {circulation}",
                check.circulation_by_nbk_tiyn
            ));
        }
        for node in net.node_ids() {
            for view in net.accounts(&node).map_err(|e| format!("accounts: {e}"))? {
                if !view.balance.dt_reserved_tiyn.is_zero() {
                    return Err(format!("{node}/{} keeps DT reserved with nothing in flight", view.account.client_id));
                }
            }
        }
        let (dt, fiat) = self.expected_balances()?;
        for (i, client) in self.clients.iter().enumerate() {
            let balance = net.balance(client.node, &client.id).map_err(|e| format!("balance: {e}"))?;
            if balance.dt_tiyn != dt[i] || balance.fiat_tiyn != fiat[i] {
                return Err(format!(
                    "client {i} holds {} DT and {} bank money; its answers say {} and {}",
                    balance.dt_tiyn, balance.fiat_tiyn, dt[i], fiat[i]
                ));
            }
            if !balance.dt_reserved_tiyn.is_zero() {
                return Err(format!("client {i} has {} reserved with nothing in flight", balance.dt_reserved_tiyn));
            }
        }
        Ok(())
    }

    /// Each client's balances by the final answers: start + what succeeded.
    fn expected_balances(&self) -> Result<(Vec<Amount>, Vec<Amount>), String> {
        let mut dt: Vec<i128> = self.start_dt.iter().map(|a| i128::from(a.tiyn())).collect();
        let mut fiat: Vec<i128> = self.start_fiat.iter().map(|a| i128::from(a.tiyn())).collect();
        let client_of = |address| self.clients.iter().position(|c| c.address == address);
        for r in &self.requests {
            if !matches!(r.last, Some(Ok(_))) {
                continue;
            }
            match &r.op {
                Op::Transfer { payer, payee, amount } => {
                    dt[*payer] -= i128::from(amount.tiyn());
                    dt[*payee] += i128::from(amount.tiyn());
                }
                Op::Submit { tx, .. } => {
                    for input in &tx.body.inputs {
                        let owner = client_of(input.output.owner).ok_or("a submitted input has no client")?;
                        dt[owner] -= i128::from(input.output.amount_tiyn.tiyn());
                    }
                    for output in &tx.body.outputs {
                        let owner = client_of(output.owner).ok_or("a submitted output has no client")?;
                        dt[owner] += i128::from(output.amount_tiyn.tiyn());
                    }
                }
                Op::ToDt { client, amount } => {
                    dt[*client] += i128::from(amount.tiyn());
                    fiat[*client] -= i128::from(amount.tiyn());
                }
                Op::FromDt { client, amount } => {
                    dt[*client] -= i128::from(amount.tiyn());
                    fiat[*client] += i128::from(amount.tiyn());
                }
                Op::Emission { .. } | Op::Redemption { .. } => {}
            }
        }
        let to_amount = |v: i128| {
            u64::try_from(v).ok().and_then(|t| Amount::from_tiyn(t).ok()).ok_or(format!("a balance would be {v} tiyn"))
        };
        let dt = dt.into_iter().map(to_amount).collect::<Result<Vec<_>, _>>()?;
        let fiat = fiat.into_iter().map(to_amount).collect::<Result<Vec<_>, _>>()?;
        Ok((dt, fiat))
    }

    fn report(&self) -> SimReport {
        let lines: Vec<&[u8]> = self.trace.iter().map(|l| l.as_bytes()).collect();
        let trace_digest = hash_parts(b"sim/trace", &lines);
        let mut rejected = BTreeMap::new();
        let mut succeeded = 0;
        for r in &self.requests {
            match &r.last {
                Some(Ok(_)) => succeeded += 1,
                Some(Err(code)) => *rejected.entry(code.clone()).or_insert(0) += 1,
                None => {}
            }
        }
        let disk = self.disk.stats();
        SimReport {
            seed: self.seed,
            faults: self.faults_drawn(),
            trace_digest,
            requests: self.requests.len() as u32,
            succeeded,
            rejected,
            messages_sent: self.messages_sent,
            messages_dropped: self.messages_dropped,
            messages_duplicated: self.messages_duplicated,
            crashes: disk.crashes + self.idle_crashes(),
            torn_records_discarded: disk.torn_records_discarded,
            restarts: self.restarts,
            double_spend_pairs: self.double_spends.len() as u32,
            checkpoints: self.trace_lines(CHECKPOINT_WRITTEN),
            checkpoint_crashes: self.trace_lines(CHECKPOINT_CRASHED),
            trace: self.trace.clone(),
        }
    }

    /// The rates the run started with (the resolution pass turns them off).
    fn faults_drawn(&self) -> Faults {
        Faults::draw(&mut ChaCha20Rng::seed_from_u64(self.seed))
    }

    fn trace_lines(&self, ending: &str) -> u64 {
        self.trace.iter().filter(|l| l.ends_with(ending)).count() as u64
    }

    fn idle_crashes(&self) -> u64 {
        self.trace_lines("process crashes (idle)")
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::Transfer { payer, payee, amount } => format!("transfer c{payer} -> c{payee} {amount}"),
        Op::Submit { payer, tx } => format!("submit c{payer} {} ({} inputs)", tx.id(), tx.body.inputs.len()),
        Op::ToDt { client, amount } => format!("to-DT c{client} {amount}"),
        Op::FromDt { client, amount } => format!("from-DT c{client} {amount}"),
        Op::Emission { bank, amount } => format!("emission {} {amount}", BANKS[*bank]),
        Op::Redemption { bank, amount } => format!("redemption {} {amount}", BANKS[*bank]),
    }
}

fn show(answer: &Answer) -> String {
    match answer {
        Ok(tx_id) => format!("ok {tx_id}"),
        Err(code) => format!("error {code}"),
    }
}

/// Seeds `first..first + count`, stopping at the first failure.
pub fn run_seeds(first: u64, count: u64, config: &SimConfig) -> Result<Vec<SimReport>, SimFailure> {
    (first..first.saturating_add(count)).map(|seed| run(seed, config)).collect()
}

/// The report as JSON (without the trace).
pub fn report_json(report: &SimReport) -> serde_json::Value {
    serde_json::json!({
        "seed": report.seed,
        "trace_digest": report.trace_digest.to_string(),
        "faults": {
            "drop_permille": report.faults.drop_permille,
            "duplicate_permille": report.faults.duplicate_permille,
            "latency_ms_max": report.faults.latency_ms_max,
            "crash_in_commit_permille": report.faults.crash_in_commit_permille,
            "crash_idle_permille": report.faults.crash_idle_permille,
            "batch_wait_ms_max": report.faults.batch_wait_ms_max,
            "checkpoint_permille": report.faults.checkpoint_permille,
        },
        "requests": report.requests,
        "succeeded": report.succeeded,
        "rejected": report.rejected,
        "messages_sent": report.messages_sent,
        "messages_dropped": report.messages_dropped,
        "messages_duplicated": report.messages_duplicated,
        "crashes": report.crashes,
        "torn_records_discarded": report.torn_records_discarded,
        "restarts": report.restarts,
        "checkpoints": report.checkpoints,
        "checkpoint_crashes": report.checkpoint_crashes,
        "double_spend_pairs": report.double_spend_pairs,
    })
}
