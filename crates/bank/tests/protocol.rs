//! The payment protocol between roles, run as separate roles on a simulated network: the
//! notary and two banks, each on its own simulated disk, messages lost, duplicated and
//! delayed from a seed, roles restarted on their own. The NBK's part (emission) is played by
//! the test itself through the real notary.

use dtenge_bank::{
    AccountKey, Answer, BankService, Committed, Conversion, Directory, Genesis, IdemKey, Request, RESEND_AFTER_MS,
};
use dtenge_core::anchors::Anchors;
use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::token::{Output, TokenId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, ErrorCode, Result};
use dtenge_node::{Account, ClientKind, NodeKind, NodeMeta};
use dtenge_notary::service::{NotaryService, Senders};
use dtenge_store::{CrashMode, SimDisk, Store};
use dtenge_transport::{Fate, Faults, SimNetwork, Transport};
use dtenge_wire::{Deliver, Envelope, Message, NotarizeRequest, Outcome, Payload, RoleId};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

const BANKS: [&str; 2] = ["steppe", "sapa"];

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
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

/// Loses, duplicates and delays envelopes at the seed's rates (percent).
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

/// The directory's read model, as the test registers accounts.
#[derive(Default)]
struct Accounts(RwLock<HashMap<Address, String>>);

impl Directory for Accounts {
    fn bank_of(&self, address: &Address) -> dtenge_core::Result<Option<String>> {
        Ok(self.0.read().get(address).cloned())
    }
}

struct Cluster {
    net: Arc<SimNetwork<SeededFaults>>,
    now_ms: u64,
    nbk: SecretKey,
    notary_key: SecretKey,
    notary_disk: SimDisk,
    notary: Option<NotaryService>,
    disks: BTreeMap<String, SimDisk>,
    banks: BTreeMap<String, BankService>,
    directory: Arc<Accounts>,
    /// The ID center as a role, for the tests that claim accounts through it.
    id_center: Option<dtenge_directory::DirectoryService>,
    /// The NBK's next delivery number to each bank.
    central_seq: BTreeMap<String, u64>,
    central_batch: u64,
    issued_tiyn: u64,
}

fn node_key(bank: &str) -> SecretKey {
    key(if bank == "steppe" { 30 } else { 40 })
}

impl Cluster {
    fn new(seed: u64, lose_percent: u64, duplicate_percent: u64, delay_ms_max: u64) -> Cluster {
        let faults = SeededFaults { rng: Rng(seed), lose_percent, duplicate_percent, delay_ms_max };
        let mut cluster = Cluster {
            net: Arc::new(SimNetwork::new(faults)),
            now_ms: 0,
            nbk: key(1),
            notary_key: key(3),
            notary_disk: SimDisk::new(),
            notary: None,
            disks: BANKS.iter().map(|b| (b.to_string(), SimDisk::new())).collect(),
            banks: BTreeMap::new(),
            directory: Arc::new(Accounts::default()),
            id_center: None,
            central_seq: BTreeMap::new(),
            central_batch: 0,
            issued_tiyn: 0,
        };
        cluster.restart_notary();
        for bank in BANKS {
            cluster.restart_bank(bank);
        }
        cluster
    }

    fn anchors(&self) -> Anchors {
        Anchors {
            issuer: self.nbk.address(),
            central_bank: self.nbk.public_key(),
            oracle: key(2).public_key(),
            notary: self.notary_key.public_key(),
            banks: BANKS.iter().map(|b| (b.to_string(), node_key(b).public_key())).collect(),
            blocked: Default::default(),
        }
    }

    fn restart_notary(&mut self) {
        self.notary = None;
        let store = Store::open_simulated(self.notary_disk.clone(), &dtenge_notary::service::tables()).unwrap();
        let anchors = self.anchors();
        let senders = Senders { central_bank: anchors.central_bank, banks: anchors.banks, blocked: anchors.blocked };
        self.notary = Some(NotaryService::open(store, self.notary_key.clone(), senders).unwrap());
    }

    /// Drop the bank with all its memory and open it again from its disk.
    fn restart_bank(&mut self, bank: &str) {
        self.banks.remove(bank);
        let store = Store::open_simulated(self.disks[bank].clone(), &dtenge_bank::tables()).unwrap();
        let genesis = Genesis {
            meta: NodeMeta { id: bank.into(), kind: NodeKind::Bank, name: format!("{bank} bank") },
            node_key: node_key(bank).into(),
            own_key: key(if bank == "steppe" { 31 } else { 41 }),
            custody: dtenge_node::Custody::new([77; 32]),
            now_ms: 0,
        };
        let net: Arc<dyn Transport> = self.net.clone();
        let service = BankService::open(store, genesis, self.anchors(), net, self.directory.clone()).unwrap();
        self.banks.insert(bank.to_string(), service);
        self.net.up(&RoleId::Bank(bank.into()));
    }

    /// A client who keeps its own key, with an account at `bank`.
    fn open_client(&mut self, bank: &str, seed: u8) -> SecretKey {
        let client = key(seed);
        let account = Account {
            client_id: format!("9{seed:011}"),
            node_id: bank.into(),
            kind: ClientKind::Individual,
            name: format!("client {seed}"),
            phone: None,
            address: client.address(),
            opened_at_unix_ms: 0,
        };
        self.banks[bank].open_account(account, &AccountKey::Client(client.public_key())).unwrap();
        self.directory.0.write().insert(client.address(), bank.to_string());
        client
    }

    /// The NBK issues `amounts` to `owner` at `bank`: notarized at the real notary, delivered
    /// to the bank over the network.
    fn issue(&mut self, bank: &str, owner: &SecretKey, amounts: &[u64]) -> Transaction {
        let outputs = amounts
            .iter()
            .map(|a| Output::standard(Amount::from_tiyn(*a).unwrap(), owner.address(), self.nbk.address()))
            .collect();
        self.central_batch += 1;
        let mut tx =
            Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: self.central_batch });
        tx.attest(&self.nbk);
        let compact = CompactTx::of(&TxIds::of(&tx).unwrap());
        let root = dtenge_core::merkle::root(&[compact.hash()]);
        let signature = self.nbk.sign(&notarize_message(self.central_batch, &root).0);
        let request = NotarizeRequest { batch: self.central_batch, txs: vec![compact], signature };
        let reply = self.notary.as_ref().unwrap().notarize(&RoleId::Central, &request);
        let Outcome::Committed(proof) = &reply.outcomes[0] else { panic!("the issue commits") };
        let seq = self.central_seq.entry(bank.to_string()).or_insert(0);
        *seq += 1;
        let deliver = Deliver {
            seq: *seq,
            payload: Payload::Certified {
                certificate: reply.certificate.unwrap(),
                txs: vec![(tx.clone(), proof.clone())],
            },
        };
        // The NBK resends until applied; here it hands the delivery over directly.
        let envelope =
            Envelope { from: RoleId::Central, to: RoleId::Bank(bank.into()), message: Message::Deliver(deliver) };
        self.banks[bank].handle(envelope, self.now_ms);
        self.issued_tiyn += amounts.iter().sum::<u64>();
        tx
    }

    /// Deliver what is due, advance time, tick the banks; until nothing is in flight and
    /// nothing is outstanding, or `ms_max` of simulated time passed.
    fn run(&mut self, ms_max: u64) {
        let end_ms = self.now_ms + ms_max;
        while self.now_ms < end_ms {
            while let Some(envelope) = self.net.pop_due(self.now_ms) {
                self.dispatch(envelope);
            }
            let quiet = self.net.in_flight() == 0 && self.banks.values().all(|b| b.outstanding() == (0, 0));
            if quiet {
                return;
            }
            let next_tick_ms = self.now_ms + RESEND_AFTER_MS / 4;
            self.now_ms = self.net.next_due().map_or(next_tick_ms, |due| due.min(next_tick_ms)).max(self.now_ms + 1);
            self.net.set_now(self.now_ms);
            for bank in self.banks.values() {
                bank.tick(self.now_ms);
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
            RoleId::Bank(bank) => {
                if let Some(service) = self.banks.get(bank) {
                    service.handle(envelope, self.now_ms);
                }
            }
            RoleId::Directory => {
                if let Some(reply) = self.id_center.as_ref().and_then(|d| d.handle(envelope)) {
                    let _ = self.net.send(reply);
                }
            }
            // The NBK's acknowledgements: it hands deliveries over directly in this test.
            _ => {}
        }
    }

    /// Submit client-signed transactions to `bank` and let it take them.
    fn submit(&self, bank: &str, txs: Vec<Transaction>) -> Vec<Answer> {
        let answers = txs.into_iter().map(|tx| self.banks[bank].submit(Request::Signed(tx), None)).collect();
        self.banks[bank].flush(self.now_ms);
        answers
    }

    fn total_tiyn(&self, bank: &str) -> u64 {
        self.banks[bank].read(|n| n.total_dt().unwrap().tiyn())
    }

    /// No money created or lost, and the banks' wallets are exactly the notary's unspent set.
    fn assert_invariants(&self) {
        let total: u64 = BANKS.iter().map(|b| self.total_tiyn(b)).sum();
        assert_eq!(total, self.issued_tiyn, "DT in the banks' wallets = DT issued");
        let mut wallets: HashSet<TokenId> = HashSet::new();
        for bank in self.banks.values() {
            bank.read(|n| {
                for id in n.token_ids() {
                    assert!(wallets.insert(*id), "token {id} is in two wallets");
                }
            });
        }
        assert_eq!(wallets, self.notary.as_ref().unwrap().notary().unspent(), "wallets = the notary's unspent set");
    }
}

/// `from` pays `amount` of `input`'s token to `to`, the change back to `from`.
fn pay(input: &dtenge_core::token::Input, from: &SecretKey, to: &Address, amount: u64, issuer: Address) -> Transaction {
    let total = input.output.amount_tiyn.tiyn();
    let mut outputs = vec![Output::standard(Amount::from_tiyn(amount).unwrap(), *to, issuer)];
    if total > amount {
        outputs.push(Output::standard(Amount::from_tiyn(total - amount).unwrap(), from.address(), issuer));
    }
    let mut tx =
        Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input.clone()], outputs, nonce: 0 });
    tx.sign_owner(from);
    tx
}

fn answer(answers: Vec<Answer>) -> Result<Committed> {
    answers.into_iter().next().unwrap().try_recv().expect("answered")
}

#[test]
fn a_payment_between_two_banks_commits_and_each_side_applies_it_once() {
    let mut c = Cluster::new(1, 0, 0, 0);
    let alice = c.open_client("steppe", 10);
    let bob = c.open_client("sapa", 11);
    let issue = c.issue("steppe", &alice, &[1_000]);
    let tx = pay(&issue.outputs_as_inputs()[0], &alice, &bob.address(), 300, c.nbk.address());
    let answers = c.submit("steppe", vec![tx.clone()]);
    c.run(10_000);
    let committed = answer(answers).unwrap();
    assert_eq!(committed.tx_id, tx.id());
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (700, 300));
    c.assert_invariants();
    assert_eq!(c.banks["steppe"].outstanding(), (0, 0));
    // Submitted again (its answer was lost): the same answer, nothing moves.
    let again = answer(c.submit("steppe", vec![tx])).unwrap();
    assert_eq!(again, committed);
    c.run(10_000);
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (700, 300));
}

#[test]
fn a_checkpoint_of_a_banks_tokens_is_what_a_restart_reads_with_only_the_changes_after_it() {
    let mut c = Cluster::new(2, 0, 0, 0);
    let alice = c.open_client("steppe", 10);
    let bob = c.open_client("sapa", 11);
    let issue = c.issue("steppe", &alice, &[1_000, 2_000, 3_000]);
    let inputs = issue.outputs_as_inputs();
    let first = pay(&inputs[0], &alice, &bob.address(), 300, c.nbk.address());
    let answers = c.submit("steppe", vec![first]);
    c.run(10_000);
    answer(answers).unwrap();
    let before = c.banks["steppe"].read(|n| n.token_changes());
    assert!(before >= 2, "the issue and the payment changed steppe's tokens ({before})");
    let written = c.banks["steppe"].checkpoint().unwrap();
    let held = c.banks["steppe"].read(|n| n.token_count()) as u64;
    assert_eq!((written.generation, written.items), (1, held), "every token held, once");
    assert!(!c.banks["steppe"].checkpoint_due(), "nothing logged since");
    // Two payments after the checkpoint: the log a restart replays holds their changes alone.
    for input in &inputs[1..] {
        let tx = pay(input, &alice, &bob.address(), 500, c.nbk.address());
        let answers = c.submit("steppe", vec![tx]);
        c.run(10_000);
        answer(answers).unwrap();
    }
    let after = c.banks["steppe"].read(|n| n.token_changes()) - before;
    assert_eq!(after, 2, "one change per payment");
    let total = c.total_tiyn("steppe");
    c.restart_bank("steppe");
    assert_eq!(c.banks["steppe"].read(|n| n.token_changes()), after, "the restart replayed only what followed");
    assert_eq!(c.total_tiyn("steppe"), total);
    assert_eq!(c.total_tiyn("steppe") + c.total_tiyn("sapa"), 6_000);
    c.assert_invariants();
    // The next checkpoint is generation 2, and a restart after it replays nothing.
    assert_eq!(c.banks["steppe"].checkpoint().unwrap().generation, 2);
    c.restart_bank("steppe");
    assert_eq!(c.banks["steppe"].read(|n| n.token_changes()), 0);
    c.assert_invariants();
}

#[test]
fn a_token_at_the_notary_cannot_be_spent_again_and_a_bad_signature_never_leaves_the_bank() {
    let mut c = Cluster::new(2, 0, 0, 0);
    let alice = c.open_client("steppe", 10);
    let bob = c.open_client("sapa", 11);
    let issue = c.issue("steppe", &alice, &[1_000, 2_000]);
    let inputs = issue.outputs_as_inputs();
    let first = pay(&inputs[0], &alice, &bob.address(), 300, c.nbk.address());
    let second = pay(&inputs[0], &alice, &bob.address(), 400, c.nbk.address());
    let mut forged = pay(&inputs[1], &alice, &bob.address(), 500, c.nbk.address());
    forged.witnesses[0].signature = bob.sign(b"not alice");
    let answers = c.submit("steppe", vec![first, second, forged]);
    let code = |a: &Answer| a.try_recv().unwrap().err().map(|e| e.code);
    assert_eq!(code(&answers[1]), Some(ErrorCode::DoubleSpend));
    assert_eq!(code(&answers[2]), Some(ErrorCode::InvalidSignature));
    c.run(10_000);
    assert_eq!(code(&answers[0]), None);
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (2_700, 300));
    c.assert_invariants();
}

#[test]
fn a_bank_restarted_with_a_batch_at_the_notary_recovers_it_from_its_outbox() {
    let mut c = Cluster::new(3, 0, 0, 5);
    let alice = c.open_client("steppe", 10);
    let bob = c.open_client("sapa", 11);
    let issue = c.issue("steppe", &alice, &[1_000]);
    let tx = pay(&issue.outputs_as_inputs()[0], &alice, &bob.address(), 250, c.nbk.address());
    let _lost = c.submit("steppe", vec![tx.clone()]);
    // The notary commits; the bank dies before the answer arrives.
    c.net.down(RoleId::Bank("steppe".into()));
    c.run(50);
    assert!(c.notary.as_ref().unwrap().is_committed(&tx.id()).unwrap());
    c.restart_bank("steppe");
    assert_eq!(c.banks["steppe"].outstanding().0, 1, "the batch is still in the outbox");
    // The client, which never heard back, asks again: it joins the batch in flight.
    let answers = c.submit("steppe", vec![tx.clone()]);
    c.run(10_000);
    assert_eq!(answer(answers).unwrap().tx_id, tx.id());
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (750, 250));
    c.assert_invariants();
}

#[test]
fn a_payee_whose_commit_crashed_gets_the_delivery_again_and_applies_it_once() {
    let mut c = Cluster::new(4, 0, 0, 0);
    let alice = c.open_client("steppe", 10);
    let bob = c.open_client("sapa", 11);
    let issue = c.issue("steppe", &alice, &[1_000]);
    let tx = pay(&issue.outputs_as_inputs()[0], &alice, &bob.address(), 100, c.nbk.address());
    c.disks["sapa"].arm_crash(1, CrashMode::Torn { kept_bytes_permille: 500 });
    let answers = c.submit("steppe", vec![tx]);
    c.run(100);
    assert!(c.disks["sapa"].crashed(), "the payee died writing the delivery");
    c.restart_bank("sapa");
    c.run(10_000);
    assert!(answer(answers).is_ok());
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (900, 100));
    assert_eq!(c.banks["steppe"].outstanding(), (0, 0));
    c.assert_invariants();
}

/// Clients of both banks pay each other in rounds, over a network that loses, duplicates and
/// delays; banks and the notary restart between rounds. At the end every answer was given,
/// nothing is outstanding, and the invariants hold.
fn payments_under_faults(seed: u64) -> u64 {
    let mut rng = Rng(seed ^ 0x5eed);
    let lose = rng.below(20);
    let duplicate = rng.below(20);
    let delay = rng.below(50);
    let mut c = Cluster::new(seed, lose, duplicate, delay);
    let clients: Vec<(String, SecretKey)> = (0..6u8)
        .map(|i| {
            let bank = BANKS[usize::from(i) % 2];
            (bank.to_string(), c.open_client(bank, 50 + i))
        })
        .collect();
    for (bank, client) in &clients {
        c.issue(bank, client, &[10_000, 20_000]);
    }
    let mut committed = 0;
    for _round in 0..5 {
        let mut answers = Vec::new();
        for (bank, client) in &clients {
            let spendable = c.banks[bank].read(|n| {
                let account = n.account_of(&client.address()).unwrap().client_id.clone();
                n.spendable_inputs(&account).unwrap()
            });
            let Some(input) = spendable.first() else { continue };
            let (_, to) = &clients[rng.below(clients.len() as u64) as usize];
            let amount = 1 + rng.below(input.output.amount_tiyn.tiyn());
            let tx = pay(input, client, &to.address(), amount, c.nbk.address());
            answers.extend(c.submit(bank, vec![tx]));
        }
        if rng.below(3) == 0 {
            // A checkpoint of a bank's tokens with its batch at the notary: a restart below
            // reads it and the changes after it.
            let bank = BANKS[rng.below(2) as usize];
            c.banks[bank].checkpoint().unwrap();
        }
        c.run(5_000);
        match rng.below(4) {
            0 => c.restart_bank(BANKS[rng.below(2) as usize]),
            1 => c.restart_notary(),
            _ => {}
        }
        c.run(60_000);
        assert!(c.banks.values().all(|b| b.outstanding() == (0, 0)), "seed {seed}: nothing stays outstanding");
        c.assert_invariants();
        for receiver in answers {
            // An answer can be lost only with the bank that owed it (restarted).
            if let Ok(result) = receiver.try_recv() {
                match result {
                    Ok(_) => committed += 1,
                    Err(e) => assert_eq!(e.code, ErrorCode::DoubleSpend, "seed {seed}"),
                }
            }
        }
    }
    committed
}

#[test]
fn payments_under_lost_duplicated_and_delayed_messages_and_restarts_keep_every_invariant() {
    let mut committed = 0;
    for seed in 0..24 {
        committed += payments_under_faults(seed);
    }
    // 24 seeds x 5 rounds x 6 clients: most answers arrive (some die with a restarted bank).
    assert!(committed > 24 * 5 * 6 / 2, "only {committed} payments were answered committed");
}

#[test]
fn a_delivery_with_a_forged_certificate_is_not_applied() {
    let mut c = Cluster::new(5, 0, 0, 0);
    let alice = c.open_client("steppe", 10);
    let issue = c.issue("steppe", &alice, &[1_000]);
    let before = c.total_tiyn("steppe");
    // A second "issue", certified by a key that is not the notary's.
    let mut forged = issue.clone();
    forged.body.nonce += 1000;
    forged.attestations.clear();
    forged.attest(&c.nbk);
    let leaf = CompactTx::of(&TxIds::of(&forged).unwrap()).hash();
    let (certificate, proofs) = dtenge_core::certificate::CommitCertificate::sign(&key(99), 1, &[leaf]);
    let deliver =
        Deliver { seq: 2, payload: Payload::Certified { certificate, txs: vec![(forged, proofs[0].clone())] } };
    c.banks["steppe"].handle(
        Envelope { from: RoleId::Central, to: RoleId::Bank("steppe".into()), message: Message::Deliver(deliver) },
        c.now_ms,
    );
    assert_eq!(c.total_tiyn("steppe"), before);
    assert_eq!(c.banks["steppe"].stats().deliveries_rejected, 1);
}

/// A client of Steppe Bank whose key the bank keeps.
fn custodial_client(c: &mut Cluster, seed: u8) -> (String, SecretKey) {
    let client = key(seed);
    let id = format!("8{seed:011}");
    let account = Account {
        client_id: id.clone(),
        node_id: "steppe".into(),
        kind: ClientKind::Individual,
        name: format!("client {seed}"),
        phone: None,
        address: client.address(),
        opened_at_unix_ms: 0,
    };
    c.banks["steppe"].open_account(account, &AccountKey::Custodial(client.clone())).unwrap();
    c.directory.0.write().insert(client.address(), "steppe".to_string());
    (id, client)
}

fn idem(key: &str, request: u8) -> Option<IdemKey> {
    Some(IdemKey { key: key.into(), fingerprint: dtenge_core::crypto::Hash32([request; 32]) })
}

#[test]
fn a_custodial_payment_pays_once_per_idempotency_key_even_twice_in_one_batch() {
    let mut c = Cluster::new(6, 0, 0, 0);
    let (alice, alice_key) = custodial_client(&mut c, 20);
    let bob = c.open_client("sapa", 21);
    c.issue("steppe", &alice_key, &[1_000]);
    let pay =
        || Request::Pay { client_id: alice.clone(), payees: vec![(bob.address(), Amount::from_tiyn(150).unwrap())] };
    let steppe = &c.banks["steppe"];
    // A double click: the same key twice before the bank takes either.
    let first = steppe.submit(pay(), idem("click-1", 1));
    let second = steppe.submit(pay(), idem("click-1", 1));
    steppe.flush(c.now_ms);
    c.run(10_000);
    let committed = first.try_recv().unwrap().unwrap();
    assert_eq!(second.try_recv().unwrap().unwrap(), committed);
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (850, 150));
    // A retry after the answer: the stored answer; another request under the key: refused.
    let steppe = &c.banks["steppe"];
    let retry = steppe.submit(pay(), idem("click-1", 1));
    let other = steppe.submit(pay(), idem("click-1", 2));
    steppe.flush(c.now_ms);
    assert_eq!(retry.try_recv().unwrap().unwrap(), committed);
    assert_eq!(other.try_recv().unwrap().unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    c.run(10_000);
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (850, 150));
    c.assert_invariants();
}

#[test]
fn a_payment_key_is_kept_for_the_retention_window_then_swept_in_bounded_passes_and_runs_as_new() {
    const WINDOW_MS: u64 = dtenge_store::retention::IDEMPOTENCY_RETENTION_MS_DEFAULT;
    let mut c = Cluster::new(9, 0, 0, 0);
    let (alice, alice_key) = custodial_client(&mut c, 20);
    let bob = c.open_client("sapa", 21);
    // One token per payment, so the three take a batch together.
    c.issue("steppe", &alice_key, &[400, 400, 400, 400]);
    let pay =
        || Request::Pay { client_id: alice.clone(), payees: vec![(bob.address(), Amount::from_tiyn(100).unwrap())] };
    let before_ms = c.now_ms;
    let answers: Vec<Answer> =
        ["k1", "k2", "k3"].iter().map(|key| c.banks["steppe"].submit(pay(), idem(key, 1))).collect();
    c.banks["steppe"].flush(c.now_ms);
    c.run(10_000);
    let first = answer(answers).unwrap();
    let after_ms = c.now_ms;
    assert_eq!(c.total_tiyn("sapa"), 300);
    let steppe = &c.banks["steppe"];
    assert_eq!(steppe.sweep_idempotency(before_ms + WINDOW_MS - 1, 256).unwrap(), 0);
    let retry = steppe.submit(pay(), idem("k1", 1));
    steppe.flush(c.now_ms);
    assert_eq!(retry.try_recv().unwrap().unwrap(), first, "a retry within the window: the first answer");
    // Past the window: at most 2 records a pass.
    assert_eq!(steppe.sweep_idempotency(after_ms + WINDOW_MS, 2).unwrap(), 2);
    assert_eq!(steppe.sweep_idempotency(after_ms + WINDOW_MS, 2).unwrap(), 1);
    // The same key runs as new: it pays again.
    let again = steppe.submit(pay(), idem("k1", 1));
    steppe.flush(c.now_ms);
    c.run(10_000);
    assert_ne!(again.try_recv().unwrap().unwrap(), first);
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (1_200, 400));
    c.assert_invariants();
}

#[test]
fn a_key_in_flight_when_the_bank_restarts_is_answered_by_the_recovered_batch() {
    let mut c = Cluster::new(7, 0, 0, 5);
    let (alice, alice_key) = custodial_client(&mut c, 20);
    let bob = c.open_client("sapa", 21);
    c.issue("steppe", &alice_key, &[1_000]);
    let pay =
        || Request::Pay { client_id: alice.clone(), payees: vec![(bob.address(), Amount::from_tiyn(400).unwrap())] };
    let _lost = c.banks["steppe"].submit(pay(), idem("k", 1));
    c.banks["steppe"].flush(c.now_ms);
    c.net.down(RoleId::Bank("steppe".into()));
    c.run(50);
    c.restart_bank("steppe");
    let retry = c.banks["steppe"].submit(pay(), idem("k", 1));
    c.banks["steppe"].flush(c.now_ms);
    c.run(10_000);
    assert!(retry.try_recv().unwrap().is_ok());
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (600, 400));
    c.assert_invariants();
}

#[test]
fn a_custodial_payment_beyond_the_balance_is_refused_and_leaves_nothing_reserved() {
    let mut c = Cluster::new(8, 0, 0, 0);
    let (alice, alice_key) = custodial_client(&mut c, 20);
    let bob = c.open_client("sapa", 21);
    c.issue("steppe", &alice_key, &[1_000]);
    let too_much =
        Request::Pay { client_id: alice.clone(), payees: vec![(bob.address(), Amount::from_tiyn(1_001).unwrap())] };
    let answer = c.banks["steppe"].submit(too_much, idem("big", 1));
    c.banks["steppe"].flush(c.now_ms);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    // The key was not spent on a refusal: the same key pays what the balance allows.
    let fits = Request::Pay { client_id: alice, payees: vec![(bob.address(), Amount::from_tiyn(1_000).unwrap())] };
    let answer = c.banks["steppe"].submit(fits, idem("big", 2));
    c.banks["steppe"].flush(c.now_ms);
    c.run(10_000);
    assert!(answer.try_recv().unwrap().is_ok());
    assert_eq!((c.total_tiyn("steppe"), c.total_tiyn("sapa")), (0, 1_000));
}

#[test]
fn accounts_are_claimed_at_the_directory_before_they_open_and_a_taken_phone_is_refused() {
    let mut c = Cluster::new(9, 20, 10, 30);
    let store = Store::open_simulated(SimDisk::new(), &dtenge_directory::tables()).unwrap();
    c.id_center = Some(dtenge_directory::DirectoryService::open(store).unwrap());
    let account = |bank: &str, client: &str, seed: u8, phone: &str| Account {
        client_id: client.into(),
        node_id: bank.into(),
        kind: ClientKind::Individual,
        name: "Aigerim Seitova".into(),
        phone: Some(phone.into()),
        address: key(seed).address(),
        opened_at_unix_ms: 0,
    };
    let client_key = |seed: u8| AccountKey::Client(key(seed).public_key());
    let first = c.banks["steppe"].claim_account(
        account("steppe", "900101300007", 60, "+77011234567"),
        client_key(60),
        c.now_ms,
    );
    // The same person at another bank with the same phone; another person with that phone.
    let same_person =
        c.banks["sapa"].claim_account(account("sapa", "900101300007", 61, "+77011234567"), client_key(61), c.now_ms);
    c.run(10_000);
    let other_person =
        c.banks["sapa"].claim_account(account("sapa", "850202400010", 62, "+77011234567"), client_key(62), c.now_ms);
    c.run(10_000);
    assert_eq!(first.try_recv().unwrap(), Ok(()));
    assert_eq!(same_person.try_recv().unwrap(), Ok(()));
    assert_eq!(other_person.try_recv().unwrap().unwrap_err().code, ErrorCode::DuplicateAccount);
    assert!(c.banks["steppe"].read(|n| n.account_of(&key(60).address()).is_some()));
    assert!(c.banks["sapa"].read(|n| n.account_of(&key(62).address()).is_none()), "a refused claim opens nothing");
    c.id_center.as_ref().unwrap().read(|d| {
        assert_eq!(d.banks_of_phone("+77011234567"), vec!["steppe", "sapa"]);
        assert_eq!(d.by_address(&key(60).address()).unwrap().display_name, "Aigerim S.");
    });
    assert_eq!(c.banks["steppe"].claims_waiting(), 0);
}

#[test]
fn a_conversion_in_flight_when_the_bank_restarts_keeps_its_bank_money_reserved_and_debits_it_once() {
    let mut c = Cluster::new(9, 0, 0, 5);
    let (alice, _) = custodial_client(&mut c, 20);
    c.issue("steppe", &key(31), &[10_000]);
    let fiat = |c: &Cluster| c.banks["steppe"].read(|node| node.balance(&alice).unwrap().fiat_tiyn.tiyn());
    let dt = |c: &Cluster| c.banks["steppe"].read(|node| node.balance(&alice).unwrap().dt_tiyn.tiyn());
    c.banks["steppe"].deposit_fiat(&alice, Amount::from_tiyn(1_000).unwrap()).unwrap();
    let convert = |amount: u64| Request::Convert {
        client_id: alice.clone(),
        direction: Conversion::ToDt,
        amount: Amount::from_tiyn(amount).unwrap(),
    };
    let _lost = c.banks["steppe"].submit(convert(700), idem("convert-1", 1));
    c.banks["steppe"].flush(c.now_ms);
    // The notary commits; the bank dies before the answer arrives.
    c.net.down(RoleId::Bank("steppe".into()));
    c.run(50);
    c.restart_bank("steppe");
    // The 700 are still reserved: 400 more is beyond the 1,000.
    let beyond = c.banks["steppe"].submit(convert(400), None);
    c.banks["steppe"].flush(c.now_ms);
    assert_eq!(beyond.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    let retry = c.banks["steppe"].submit(convert(700), idem("convert-1", 1));
    c.banks["steppe"].flush(c.now_ms);
    c.run(10_000);
    assert!(retry.try_recv().unwrap().is_ok());
    assert_eq!((fiat(&c), dt(&c)), (300, 700), "bank money debited once, DT paid once");
    // Back from DT: credited when certified.
    let back = Request::Convert {
        client_id: alice.clone(),
        direction: Conversion::FromDt,
        amount: Amount::from_tiyn(200).unwrap(),
    };
    let answer = c.banks["steppe"].submit(back, None);
    c.banks["steppe"].flush(c.now_ms);
    c.run(10_000);
    assert!(answer.try_recv().unwrap().is_ok());
    assert_eq!((fiat(&c), dt(&c)), (500, 500));
    c.assert_invariants();
}

#[test]
fn a_client_key_that_is_not_the_accounts_or_not_a_curve_point_is_refused_at_opening() {
    let c = Cluster::new(10, 0, 0, 0);
    let account = |address: Address| Account {
        client_id: format!("9001013{:05}", address.0 .0[0]),
        node_id: "steppe".into(),
        kind: ClientKind::Individual,
        name: "Dana Omarova".into(),
        phone: None,
        address,
        opened_at_unix_ms: 0,
    };
    let bank = &c.banks["steppe"];
    // Another key than the one the address is of.
    let refused = bank.open_account(account(key(70).address()), &AccountKey::Client(key(71).public_key())).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput);
    // Bytes that are no point of the curve: about half of all y coordinates; one of the first
    // few is found.
    let not_a_point = (0..=255u8)
        .map(|i| {
            let mut public_key = key(72).public_key();
            public_key.key.0 = [i; 32];
            public_key.key.0[31] &= 0x7f;
            public_key
        })
        .find_map(|public_key| {
            let refused = bank.open_account(account(public_key.address()), &AccountKey::Client(public_key)).err()?;
            Some(refused)
        })
        .expect("some 32 bytes are no curve point");
    assert_eq!(not_a_point.code, ErrorCode::MalformedInput);
    assert!(not_a_point.message.contains("not a point"), "{}", not_a_point.message);
    assert!(bank.read(|n| n.account_of(&key(70).address()).is_none()), "nothing opened");
}

#[test]
fn a_labelled_payment_keeps_its_purpose_and_reference_through_a_restart_and_its_key_answers_once_committed() {
    use dtenge_bank::Label;
    use dtenge_node::Purpose;
    let mut c = Cluster::new(9, 0, 0, 5);
    let (alice, alice_key) = custodial_client(&mut c, 20);
    // A payee at the same bank: its line is written by this bank too.
    let bob = c.open_client("steppe", 22);
    c.issue("steppe", &alice_key, &[1_000]);
    let pay = |amount: u64| Request::Pay {
        client_id: alice.clone(),
        payees: vec![(bob.address(), Amount::from_tiyn(amount).unwrap())],
    };
    let label = Label { purpose: Purpose::PhoneTransfer, reference: Some("rent for May".into()) };
    let key = idem("rent", 1).unwrap();
    let _lost = c.banks["steppe"].submit_labelled(pay(300), label, Some(key.clone()));
    c.banks["steppe"].flush(c.now_ms);
    assert_eq!(c.banks["steppe"].committed_answer(&key).unwrap(), None, "in flight: nothing to rebuild yet");
    // The bank stops with the payment at the notary; the label waits in its outbox.
    c.net.down(RoleId::Bank("steppe".into()));
    c.run(50);
    c.restart_bank("steppe");
    c.run(10_000);
    let steppe = &c.banks["steppe"];
    let committed = steppe.committed_answer(&key).unwrap().expect("committed");
    for client in [alice.clone(), "900000000022".to_string()] {
        let line = steppe.read(|n| n.history(&client).unwrap().back().cloned().unwrap());
        assert_eq!(line.tx_id, committed.tx_id);
        assert_eq!((line.purpose, line.reference.as_deref()), (Purpose::PhoneTransfer, Some("rent for May")));
    }
    // The same key with another request is refused; a key never used has no answer.
    assert_eq!(steppe.committed_answer(&idem("rent", 2).unwrap()).unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(steppe.committed_answer(&idem("never", 1).unwrap()).unwrap(), None);

    // A label that is not a plain transfer's, or a label on a conversion: refused at once.
    let emission = Label { purpose: Purpose::Emission, reference: None };
    let refused = steppe.submit_labelled(pay(1), emission, None).try_recv().unwrap().unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput);
    let convert = Request::Convert {
        client_id: alice.clone(),
        direction: Conversion::FromDt,
        amount: Amount::from_tiyn(1).unwrap(),
    };
    let payment = Label { purpose: Purpose::Payment, reference: None };
    let refused = steppe.submit_labelled(convert, payment, None).try_recv().unwrap().unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput);
    // Without a label: a payment, no reference.
    let plain = steppe.submit(pay(100), None);
    steppe.flush(c.now_ms);
    c.run(10_000);
    let committed = plain.try_recv().unwrap().unwrap();
    let line = c.banks["steppe"].read(|n| n.history(&alice).unwrap().back().cloned().unwrap());
    assert_eq!((line.tx_id, line.purpose, line.reference), (committed.tx_id, Purpose::Payment, None));
    c.assert_invariants();
}

/// Before: a conversion from DT that took the balance past the largest amount was admitted,
/// and applying its certified payment failed its assertion on the inbox thread, again after
/// every restart; a deposit while a conversion was in flight did the same.
#[test]
fn conversions_from_dt_in_flight_and_deposits_cannot_take_bank_money_past_the_largest_amount() {
    let mut c = Cluster::new(11, 0, 0, 5);
    let (alice, alice_key) = custodial_client(&mut c, 20);
    c.issue("steppe", &alice_key, &[100, 100]);
    let tiyn = |n: u64| Amount::from_tiyn(n).unwrap();
    let max = Amount::MAX.tiyn();
    let back = |n: u64| Request::Convert { client_id: alice.clone(), direction: Conversion::FromDt, amount: tiyn(n) };
    let steppe = &c.banks["steppe"];
    steppe.deposit_fiat(&alice, tiyn(max - 100)).unwrap();
    let beyond = steppe.submit(back(101), None);
    steppe.flush(c.now_ms);
    assert_eq!(beyond.try_recv().unwrap().unwrap_err().code, ErrorCode::LimitExceeded);
    let first = steppe.submit(back(80), None);
    steppe.flush(c.now_ms);
    // With the 80 at the notary, 30 more (converted or deposited) would not fit; 20 do.
    let second = steppe.submit(back(30), None);
    steppe.flush(c.now_ms);
    assert_eq!(second.try_recv().unwrap().unwrap_err().code, ErrorCode::LimitExceeded);
    assert_eq!(steppe.deposit_fiat(&alice, tiyn(30)).unwrap_err().code, ErrorCode::LimitExceeded);
    steppe.deposit_fiat(&alice, tiyn(20)).unwrap();
    c.run(10_000);
    assert!(first.try_recv().unwrap().is_ok());
    let balance = c.banks["steppe"].read(|node| node.balance(&alice).unwrap());
    assert_eq!((balance.fiat_tiyn.tiyn(), balance.dt_tiyn.tiyn()), (max, 120));
    c.assert_invariants();
}
