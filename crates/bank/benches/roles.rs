//! The payment protocol between roles, in one process and one thread: three banks and the
//! notary, each on its own fjall store (real fsyncs), messages on the in-process transport,
//! dispatched as they arrive. Client-signed 1-in payments of whole tokens between random
//! clients of any bank, 512 per batch. Reports wall time per payment (criterion) and the
//! process's CPU time per payment (stderr), to compare with `dtenge bench`'s CPU per payment.
//!
//! Run: `cargo bench -p dtenge-bank --bench roles`.

/// The allocator the `dtenge` binary uses (glibc's malloc and free were 12% of this bench).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dtenge_bank::{AccountKey, BankService, Directory, Genesis, Request};
use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::Amount;
use dtenge_node::{Account, ClientKind, NodeKind, NodeMeta};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_store::Store;
use dtenge_transport::{InProcess, Transport};
use dtenge_wire::{Deliver, Envelope, Message, NotarizeRequest, Outcome, Payload, RoleId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];
const CLIENTS_PER_BANK: usize = 2_000;
const TOKENS_PER_CLIENT: usize = 8;
const BATCH_TXS: usize = 512;
const BATCHES_PER_ITERATION: usize = 12;

fn key(domain: u8, n: usize) -> SecretKey {
    let mut seed = [domain; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    SecretKey::from_seed(seed)
}

struct Addresses(HashMap<Address, String>);

impl Directory for Addresses {
    fn bank_of(&self, address: &Address) -> dtenge_core::Result<Option<String>> {
        Ok(self.0.get(address).cloned())
    }
}

struct Roles {
    _dir: tempfile::TempDir,
    net: Arc<InProcess>,
    inboxes: Vec<(RoleId, dtenge_transport::Inbox)>,
    notary: NotaryService,
    banks: Vec<BankService>,
    /// Every client: (bank position, client id, key).
    clients: Vec<(usize, String, SecretKey)>,
    by_address: HashMap<Address, usize>,
    nbk: SecretKey,
    now_ms: u64,
}

impl Roles {
    fn start() -> Roles {
        let dir = tempfile::tempdir().unwrap();
        let nbk = key(1, 0);
        let notary_key = key(2, 0);
        let node_keys: Vec<SecretKey> = (0..BANKS.len()).map(|i| key(3, i)).collect();
        let anchors = Anchors {
            issuer: nbk.address(),
            central_bank: nbk.public_key(),
            oracle: key(4, 0).public_key(),
            notary: notary_key.public_key(),
            banks: BANKS.iter().zip(&node_keys).map(|(b, k)| (b.to_string(), k.public_key())).collect(),
            blocked: Default::default(),
        };
        let net = Arc::new(InProcess::new());
        let mut inboxes = vec![(RoleId::Notary, net.register(RoleId::Notary))];
        inboxes.push((RoleId::Central, net.register(RoleId::Central)));
        let notary_store = Store::open(&dir.path().join("notary"), &dtenge_notary::service::tables()).unwrap();
        let senders =
            Senders { central_bank: anchors.central_bank, banks: anchors.banks.clone(), blocked: Default::default() };
        let notary = NotaryService::open(notary_store, notary_key, senders).unwrap();
        let mut clients = Vec::new();
        let mut directory = HashMap::new();
        for (b, bank) in BANKS.iter().enumerate() {
            for c in 0..CLIENTS_PER_BANK {
                let client = key(10 + b as u8, c);
                directory.insert(client.address(), bank.to_string());
                clients.push((b, format!("{b}{c:011}"), client));
            }
        }
        let by_address = clients.iter().enumerate().map(|(i, (_, _, k))| (k.address(), i)).collect();
        let directory: Arc<dyn Directory> = Arc::new(Addresses(directory));
        let mut banks = Vec::new();
        for (b, bank) in BANKS.iter().enumerate() {
            let store = Store::open(&dir.path().join(bank), &dtenge_bank::tables()).unwrap();
            let genesis = Genesis {
                meta: NodeMeta { id: bank.to_string(), kind: NodeKind::Bank, name: bank.to_string() },
                node_key: node_keys[b].clone().into(),
                own_key: key(5, b),
                custody: dtenge_node::Custody::new([77; 32]),
                now_ms: 0,
            };
            let transport: Arc<dyn Transport> = net.clone();
            let service = BankService::open(store, genesis, anchors.clone(), transport, directory.clone()).unwrap();
            inboxes.push((service.role(), net.register(service.role())));
            banks.push(service);
        }
        let mut roles = Roles { _dir: dir, net, inboxes, notary, banks, clients, by_address, nbk, now_ms: 1 };
        roles.open_accounts_and_issue();
        roles
    }

    fn open_accounts_and_issue(&mut self) {
        for (b, id, client) in &self.clients {
            let account = Account {
                client_id: id.clone(),
                node_id: BANKS[*b].to_string(),
                kind: ClientKind::Individual,
                name: id.clone(),
                phone: None,
                address: client.address(),
                opened_at_unix_ms: 0,
            };
            self.banks[*b].open_account(account, &AccountKey::Client(client.public_key())).unwrap();
        }
        for (b, bank) in BANKS.iter().enumerate() {
            let outputs: Vec<Output> = self
                .clients
                .iter()
                .filter(|(cb, _, _)| *cb == b)
                .flat_map(|(_, _, k)| {
                    (0..TOKENS_PER_CLIENT)
                        .map(|_| Output::standard(Amount::from_tiyn(10_000).unwrap(), k.address(), self.nbk.address()))
                })
                .collect();
            let mut tx = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: b as u64 });
            tx.attest(&self.nbk);
            let compact = CompactTx::of(&TxIds::of(&tx).unwrap());
            let root = dtenge_core::merkle::root(&[compact.hash()]);
            let batch = b as u64 + 1;
            let signature = self.nbk.sign(&notarize_message(batch, &root).0);
            let reply =
                self.notary.notarize(&RoleId::Central, &NotarizeRequest { batch, txs: vec![compact], signature });
            let Outcome::Committed(proof) = &reply.outcomes[0] else { panic!("the issue commits") };
            let payload =
                Payload::Certified { certificate: reply.certificate.unwrap(), txs: vec![(tx, proof.clone())] };
            let deliver = Deliver { seq: 1, payload };
            let envelope = Envelope {
                from: RoleId::Central,
                to: RoleId::Bank(bank.to_string()),
                message: Message::Deliver(deliver),
            };
            self.banks[b].handle(envelope, self.now_ms);
        }
        self.pump();
    }

    /// Dispatch every envelope waiting, until none is.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.inboxes.len() {
                while let Ok(envelope) = self.inboxes[i].1.try_recv() {
                    moved = true;
                    self.dispatch(envelope);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn dispatch(&self, envelope: Envelope) {
        match &envelope.to {
            RoleId::Notary => {
                if let Some(reply) = self.notary.handle(envelope) {
                    self.net.send(reply).unwrap();
                }
            }
            RoleId::Bank(bank) => {
                let b = BANKS.iter().position(|x| x == bank).unwrap();
                self.banks[b].handle(envelope, self.now_ms);
            }
            _ => {}
        }
    }

    fn build(&self, batches: usize, pick: &mut impl FnMut() -> usize) -> Vec<(usize, Vec<Transaction>)> {
        build(&self.banks.iter().collect::<Vec<_>>(), &self.clients, &self.nbk, batches, pick)
    }
}

impl View {
    fn build(&self, batches: usize, pick: &mut impl FnMut() -> usize) -> Vec<(usize, Vec<Transaction>)> {
        build(&self.banks.iter().map(|b| &**b).collect::<Vec<_>>(), &self.clients, &self.nbk, batches, pick)
    }
}

/// Batches of payments, each from one bank's clients: every client with a spendable token
/// pays it whole to a client chosen by `pick`.
fn build(
    banks: &[&BankService],
    clients: &[(usize, String, SecretKey)],
    nbk: &SecretKey,
    batches: usize,
    pick: &mut impl FnMut() -> usize,
) -> Vec<(usize, Vec<Transaction>)> {
    {
        let mut spendable: Vec<Vec<(usize, Input)>> = vec![Vec::new(); BANKS.len()];
        for (i, (b, id, _)) in clients.iter().enumerate() {
            let inputs = banks[*b].read(|n| n.spendable_inputs(id).unwrap());
            spendable[*b].extend(inputs.into_iter().map(|input| (i, input)));
        }
        let mut out = Vec::new();
        for n in 0..batches {
            let b = n % BANKS.len();
            let mut txs = Vec::with_capacity(BATCH_TXS);
            while txs.len() < BATCH_TXS {
                let (payer, input) = spendable[b].pop().expect("enough tokens");
                let payee = &clients[pick()].2;
                let output = Output::standard(input.output.amount_tiyn, payee.address(), nbk.address());
                let body = TxBody { command: Command::Transfer, inputs: vec![input], outputs: vec![output], nonce: 0 };
                let mut tx = Transaction::new(body);
                tx.sign_owner(&clients[payer].2);
                txs.push(tx);
            }
            out.push((b, txs));
        }
        out
    }
}

fn process_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn benches(c: &mut Criterion) {
    let mut roles = Roles::start();
    let mut rng = 0x1234_5678_u64;
    let clients = roles.clients.len();
    let mut pick = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % clients as u64) as usize
    };
    let _ = roles.by_address.len();
    let mut group = c.benchmark_group("roles");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH_TXS * BATCHES_PER_ITERATION) as u64));
    let (mut cpu, mut payments) = (Duration::ZERO, 0u64);
    group.bench_function("client_signed_payments_3_banks", |b| {
        b.iter_custom(|iterations| {
            let mut wall = Duration::ZERO;
            for _ in 0..iterations {
                let batches = roles.build(BATCHES_PER_ITERATION, &mut pick);
                let (start, cpu_start) = (Instant::now(), process_cpu());
                let mut answers = Vec::new();
                for (bank, txs) in batches {
                    roles.now_ms += 1;
                    for tx in txs {
                        answers.push(roles.banks[bank].submit(Request::Signed(tx), None));
                    }
                    roles.banks[bank].flush(roles.now_ms);
                    roles.pump();
                }
                wall += start.elapsed();
                cpu += process_cpu() - cpu_start;
                payments += (BATCH_TXS * BATCHES_PER_ITERATION) as u64;
                for answer in answers {
                    answer.try_recv().unwrap().unwrap();
                }
            }
            wall
        })
    });
    group.finish();
    eprintln!(
        "roles: {payments} payments, {:.1} µs of process CPU per payment",
        cpu.as_secs_f64() * 1e6 / payments as f64
    );
}

/// The same roles, each on its own thread reading its inbox (as `dtenge up` will run them),
/// and one submitting thread per bank keeping `IN_FLIGHT_BATCHES` batches at the notary: how
/// the protocol uses both cores.
fn threads(c: &mut Criterion) {
    const IN_FLIGHT_BATCHES: usize = 4;
    let roles = Roles::start();
    let mut rng = 0x9abc_def0_u64;
    let clients = roles.clients.len();
    let mut pick = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % clients as u64) as usize
    };
    let Roles { _dir, net, inboxes, notary, banks, clients: all_clients, by_address, nbk, now_ms } = roles;
    let notary = Arc::new(notary);
    let banks: Vec<Arc<BankService>> = banks.into_iter().map(Arc::new).collect();
    let mut handles = Vec::new();
    for (role, inbox) in inboxes {
        let net = net.clone();
        let notary = notary.clone();
        let bank = match &role {
            RoleId::Bank(id) => banks.iter().find(|b| b.id() == id).cloned(),
            _ => None,
        };
        handles.push(std::thread::spawn(move || {
            for envelope in inbox {
                match (&role, &bank) {
                    (RoleId::Notary, _) => {
                        if let Some(reply) = notary.handle(envelope) {
                            let _ = net.send(reply);
                        }
                    }
                    (_, Some(bank)) => bank.handle(envelope, now_ms),
                    _ => {}
                }
            }
        }));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (banks, stop) = (banks.clone(), stop.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                for bank in &banks {
                    bank.tick(now_ms + start.elapsed().as_millis() as u64);
                }
            }
        })
    };
    // `build` reads the banks through a `Roles`-shaped view: rebuild one around the Arcs.
    let view = View { banks: banks.clone(), clients: all_clients, nbk };
    let _ = by_address;
    let mut group = c.benchmark_group("roles");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH_TXS * BATCHES_PER_ITERATION) as u64));
    group.bench_function("client_signed_payments_3_banks_threads", |b| {
        b.iter_custom(|iterations| {
            let mut wall = Duration::ZERO;
            for _ in 0..iterations {
                let mut per_bank: Vec<Vec<Vec<Transaction>>> = vec![Vec::new(); BANKS.len()];
                for (bank, txs) in view.build(BATCHES_PER_ITERATION, &mut pick) {
                    per_bank[bank].push(txs);
                }
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for (bank, batches) in per_bank.into_iter().enumerate() {
                        let bank = banks[bank].clone();
                        scope.spawn(move || {
                            let mut waiting: std::collections::VecDeque<Vec<_>> = Default::default();
                            for txs in batches {
                                if waiting.len() == IN_FLIGHT_BATCHES {
                                    for answer in waiting.pop_front().unwrap() {
                                        let answer: dtenge_bank::Answer = answer;
                                        answer.recv().unwrap().unwrap();
                                    }
                                }
                                let answers: Vec<_> =
                                    txs.into_iter().map(|tx| bank.submit(Request::Signed(tx), None)).collect();
                                bank.flush(now_ms);
                                waiting.push_back(answers);
                            }
                            for answers in waiting {
                                for answer in answers {
                                    answer.recv().unwrap().unwrap();
                                }
                            }
                        });
                    }
                });
                wall += start.elapsed();
                // Deliveries to payees may still be on their way: let them land before the
                // next round reads the wallets.
                while banks.iter().any(|b| b.outstanding() != (0, 0)) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            wall
        })
    });
    group.finish();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    ticker.join().unwrap();
    for role in [RoleId::Notary, RoleId::Central].into_iter().chain(banks.iter().map(|b| b.role())) {
        net.unregister(&role);
    }
    for handle in handles {
        handle.join().unwrap();
    }
}

/// What `build` needs of the roles.
struct View {
    banks: Vec<Arc<BankService>>,
    clients: Vec<(usize, String, SecretKey)>,
    nbk: SecretKey,
}

criterion_group!(roles_group, benches, threads);
criterion_main!(roles_group);
