//! Crash durability of the real `dtenge up` process.
//!
//! [`acknowledged_payments_survive_sigkill`] starts the binary on a fresh data directory, opens
//! 20 individuals at the three banks and gives each DT through the REST API, then runs eight
//! client threads that send phone transfers as fast as they can. While they are sending, the
//! process is killed with SIGKILL: no graceful shutdown, no flush, whatever was in memory is
//! lost. The binary is started again on the same data directory, and the test proves:
//!
//! * every payment the API acknowledged (HTTP 200) is committed at the notary, and is in the
//!   history of both the payer and the payee with its amount: an answer is only given after
//!   the durable commit of the notary spend and both nodes' records;
//! * every client's DT balance equals its credits minus its debits, and nothing is left
//!   reserved by payments that were in flight;
//! * the platform reconciles (DT in circulation = ABS liability, node tokens = notary unspent
//!   set), and the clients' plus the banks' DT add up to the circulation;
//! * the idempotency record survived with the payment: re-sending an acknowledged request with
//!   its key returns the same receipt and pays nothing twice;
//! * requests that were in flight at the kill (answer unknown) can be retried with their keys
//!   without a server error, and the platform still reconciles afterwards.
//!
//! Alongside, six clients that keep their own keys pay each other with transactions they sign
//! (`POST /v1/nodes/{node}/transactions`, the batched payment pipeline): every one the API
//! acknowledged is committed and in both histories after the restart, and their DT total is
//! unchanged. And an operator asks for checkpoints of the unspent set and the nodes' tokens
//! (`POST /v1/operator/checkpoints`) over and over, so that the kill may land in one and the
//! restart rebuilds the tokens from a checkpoint plus the change log after it.

use dtenge_core::crypto::SecretKey;
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command as TxCommand, Transaction, TxBody};
use dtenge_scenarios::{Client, World};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::Server;

mod support;

/// Scenario number for unique IINs and phones.
const SCENARIO: u32 = 90;
const CLIENTS: usize = 20;
const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];
/// Every node that may hold DT on its own account.
const HOLDERS: [&str; 4] = ["steppe", "tulpar", "sapa", "treasury"];
/// DT each client starts with: 10,000.00 KZT.
const START_TIYN: u64 = 1_000_000;
/// Largest transfer: 100.00 KZT, so refusals for lack of funds stay rare.
const TRANSFER_TIYN_MAX: u64 = 10_000;
const THREADS: usize = 8;
/// Load before the kill.
const LOAD: Duration = Duration::from_millis(1_500);
/// Bound on each thread's loop, in case the stop flag is never seen.
const SENDS_PER_THREAD_MAX: usize = 100_000;
/// Clients that keep their own keys and sign their payments.
const SIGNERS: usize = 6;
/// Threads sending signed payments; each has its own payers, so they do not race each other.
const SIGNER_THREADS: usize = 2;

/// One of the test's individuals.
struct Person {
    bank: &'static str,
    iin: String,
    phone: String,
}

/// A transfer request and, when acknowledged, its receipt.
struct Sent {
    key: String,
    payer: usize,
    payee: usize,
    amount: u64,
    body: Value,
    receipt: Value,
}

/// What one sending thread saw.
#[derive(Default)]
struct Tally {
    acknowledged: Vec<Sent>,
    /// Sent, but no answer arrived (the process died): maybe committed, maybe not.
    unknown: Vec<Sent>,
    /// Refusals by error code (INSUFFICIENT_FUNDS and the like).
    refused: BTreeMap<String, usize>,
    /// Transport errors while the server was supposed to be alive.
    transport_before_kill: Vec<String>,
}

/// xorshift64: enough randomness for picking payers, payees and amounts.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn transfer_path(bank: &str) -> String {
    format!("/v1/nodes/{bank}/transfers")
}

fn send_until_stopped(
    base: &str,
    credentials: &std::path::Path,
    people: &[Person],
    thread_no: usize,
    stop: &AtomicBool,
    killed: &AtomicBool,
) -> Tally {
    let client = Client::with_credentials(base, credentials).expect("credentials");
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut rng = Rng((nanos ^ (thread_no as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    let mut tally = Tally::default();
    for i in 0..SENDS_PER_THREAD_MAX {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let payer = rng.below(CLIENTS as u64) as usize;
        let payee = (payer + 1 + rng.below(CLIENTS as u64 - 1) as usize) % CLIENTS;
        let amount = 1 + rng.below(TRANSFER_TIYN_MAX);
        let key = format!("crash-{thread_no}-{i}");
        let body = json!({"from": people[payer].iin, "to": {"phone": people[payee].phone}, "amount_tiyn": amount});
        let mut sent = Sent { key, payer, payee, amount, body, receipt: Value::Null };
        match client.post_with_key(&transfer_path(people[payer].bank), &sent.body, &sent.key) {
            Ok(receipt) => {
                sent.receipt = receipt;
                tally.acknowledged.push(sent);
            }
            Err(e) if e.status == 0 => {
                // No HTTP answer. After the kill this is expected and ends the thread.
                tally.unknown.push(sent);
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                tally.transport_before_kill.push(e.to_string());
            }
            Err(e) => *tally.refused.entry(format!("{} {}", e.status, e.code)).or_default() += 1,
        }
    }
    tally
}

/// A client that keeps its own key.
struct Signer {
    person: Person,
    key: SecretKey,
    address: dtenge_core::crypto::Address,
}

/// A signed payment sent, and whether the API acknowledged it.
struct SignedSent {
    payer: usize,
    payee: usize,
    amount: u64,
    tx_id: String,
}

/// Signed payments from the payers `thread_no`, `thread_no + SIGNER_THREADS`, ... until stopped.
/// Returns the acknowledged ones and the refusals by code.
fn sign_until_stopped(
    base: &str,
    credentials: &std::path::Path,
    signers: &[Signer],
    thread_no: usize,
    stop: &AtomicBool,
    killed: &AtomicBool,
) -> (Vec<SignedSent>, BTreeMap<String, usize>) {
    let client = Client::with_credentials(base, credentials).expect("credentials");
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B ^ (thread_no as u64 + 1));
    let (mut acknowledged, mut refused) = (Vec::new(), BTreeMap::new());
    for i in 0..SENDS_PER_THREAD_MAX {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let payer = thread_no + SIGNER_THREADS * rng.below((SIGNERS / SIGNER_THREADS) as u64) as usize;
        let payee = (payer + 1 + rng.below(SIGNERS as u64 - 1) as usize) % SIGNERS;
        let (from, to) = (&signers[payer], &signers[payee]);
        let tokens_path = format!("/v1/nodes/{}/accounts/{}/tokens", from.person.bank, from.person.iin);
        let Ok(tokens) = client.get(&tokens_path) else { break };
        let mut tokens = tokens;
        let tokens: Vec<Input> = serde_json::from_value(tokens["tokens"].take()).expect("tokens parse");
        let want = 1 + rng.below(TRANSFER_TIYN_MAX);
        let mut inputs = Vec::new();
        let mut total = 0;
        for token in tokens {
            if total >= want {
                break;
            }
            total += token.output.amount_tiyn.tiyn();
            inputs.push(token);
        }
        let Some(issuer) = inputs.first().map(|t| t.output.issuer) else { continue };
        let amount = want.min(total);
        let tiyn = |t: u64| Amount::from_tiyn(t).expect("an amount");
        let mut outputs = vec![Output::standard(tiyn(amount), to.address, issuer)];
        if total > amount {
            outputs.push(Output::standard(tiyn(total - amount), from.address, issuer));
        }
        let nonce = (thread_no as u64) << 32 | i as u64;
        let mut tx = Transaction::new(TxBody { command: TxCommand::Transfer, inputs, outputs, nonce });
        tx.sign_owner(&from.key);
        let path = format!("/v1/nodes/{}/transactions", from.person.bank);
        let body = serde_json::to_value(&tx).expect("a transaction serializes");
        match client.post_with_key(&path, &body, &format!("signed-{thread_no}-{i}")) {
            Ok(receipt) => acknowledged.push(SignedSent { payer, payee, amount, tx_id: tx_id(&receipt) }),
            Err(e) if e.status == 0 && killed.load(Ordering::SeqCst) => break,
            Err(e) => *refused.entry(format!("{} {}", e.status, e.code)).or_default() += 1,
        }
    }
    (acknowledged, refused)
}

fn tx_id(receipt: &Value) -> String {
    receipt["tx_id"].as_str().expect("receipt has a tx_id").to_string()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an amount: {v}"))
}

/// Every history line of a client: tx id -> (direction, amount), with the page's total.
fn history(client: &Client, person: &Person) -> HashMap<String, (String, u64)> {
    let mut lines = HashMap::new();
    let mut offset = 0;
    loop {
        let page = client
            .get(&format!("/v1/nodes/{}/accounts/{}/history?offset={offset}&limit=500", person.bank, person.iin))
            .expect("history");
        let batch = page["lines"].as_array().expect("history lines").clone();
        for line in &batch {
            let previous = lines
                .insert(tx_id(line), (line["direction"].as_str().unwrap_or("?").to_string(), u(&line["amount_tiyn"])));
            assert!(previous.is_none(), "{} has transaction {} twice in its history", person.iin, tx_id(line));
        }
        offset += batch.len();
        if batch.is_empty() || offset >= u(&page["total"]) as usize {
            assert_eq!(lines.len() as u64, u(&page["total"]), "history total of {}", person.iin);
            return lines;
        }
    }
}

fn reconciliation(client: &Client) -> Value {
    let r = client.get("/v1/operator/reconciliation").expect("reconciliation");
    assert_eq!(r["ok"], true, "reconciliation failed: {r}");
    r
}

#[test]
fn acknowledged_payments_survive_sigkill() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");

    // 1. The first process.
    let mut first = Server::start(&data, dir.path(), "first");

    // 2. Twenty individuals at three banks, each with DT.
    let world = first.world();
    let people: Vec<Person> = (0..CLIENTS)
        .map(|i| {
            let n = i as u32 + 1;
            Person { bank: BANKS[i % BANKS.len()], iin: World::iin(SCENARIO, n), phone: World::phone(SCENARIO, n) }
        })
        .collect();
    for (i, p) in people.iter().enumerate() {
        world.open(p.bank, "individual", &p.iin, &format!("Crash Client {i}"), Some(&p.phone)).expect("open account");
        world.give_dt(p.bank, &p.iin, START_TIYN).expect("give DT");
    }
    let signers: Vec<Signer> = (0..SIGNERS)
        .map(|i| {
            let n = (CLIENTS + i) as u32 + 1;
            let person = Person { bank: BANKS[i % BANKS.len()], iin: World::iin(SCENARIO, n), phone: String::new() };
            let key = SecretKey::from_seed([i as u8 + 90; 32]);
            let body = json!({"kind": "individual", "client_id": person.iin, "name": format!("Signer {i}"),
                "public_key": serde_json::to_value(key.public_key()).expect("key")});
            let account = first
                .client()
                .post(&format!("/v1/nodes/{}/accounts", person.bank), &body)
                .expect("open a self-signing account");
            let address = serde_json::from_value(account["address"].clone()).expect("an address");
            world.give_dt(person.bank, &person.iin, START_TIYN).expect("give DT");
            Signer { person, key, address }
        })
        .collect();
    let setup_done = Instant::now();
    println!(
        "setup: {CLIENTS} clients with {START_TIYN} tiyn each in {:.2} s",
        (setup_done - test_started).as_secs_f64()
    );

    // 3. Load from eight threads; 4. SIGKILL in the middle of it.
    let people = Arc::new(people);
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (base, people, stop, killed) = (first.base.clone(), people.clone(), stop.clone(), killed.clone());
            let credentials = first.credentials.clone();
            thread::spawn(move || send_until_stopped(&base, &credentials, &people, t, &stop, &killed))
        })
        .collect();
    let signers = Arc::new(signers);
    let signing: Vec<_> = (0..SIGNER_THREADS)
        .map(|t| {
            let (base, signers, stop, killed) = (first.base.clone(), signers.clone(), stop.clone(), killed.clone());
            let credentials = first.credentials.clone();
            thread::spawn(move || sign_until_stopped(&base, &credentials, &signers, t, &stop, &killed))
        })
        .collect();
    let checkpointer = {
        let (base, stop) = (first.base.clone(), stop.clone());
        let credentials = first.credentials.clone();
        thread::spawn(move || {
            let client = Client::with_credentials(&base, &credentials).expect("credentials");
            let mut written = 0usize;
            while !stop.load(Ordering::SeqCst) && written < SENDS_PER_THREAD_MAX {
                if client.post("/v1/operator/checkpoints", &Value::Null).is_ok() {
                    written += 1;
                }
            }
            written
        })
    };
    thread::sleep(LOAD);
    killed.store(true, Ordering::SeqCst);
    first.kill();
    stop.store(true, Ordering::SeqCst);
    let mut tally = Tally::default();
    for sender in senders {
        let t = sender.join().expect("sender thread");
        tally.acknowledged.extend(t.acknowledged);
        tally.unknown.extend(t.unknown);
        tally.transport_before_kill.extend(t.transport_before_kill);
        for (code, n) in t.refused {
            *tally.refused.entry(code).or_default() += n;
        }
    }
    let mut signed = Vec::new();
    let mut signed_refused: BTreeMap<String, usize> = BTreeMap::new();
    for thread in signing {
        let (acknowledged, refused) = thread.join().expect("signing thread");
        signed.extend(acknowledged);
        for (code, n) in refused {
            *signed_refused.entry(code).or_default() += n;
        }
    }
    let checkpoints = checkpointer.join().expect("checkpoint thread");
    println!("checkpoints written before the kill: {checkpoints}");
    assert!(checkpoints > 0, "no checkpoint was written before the kill");
    println!("signed: {} payments acknowledged, refused: {signed_refused:?}", signed.len());
    assert!(!signed.is_empty(), "no signed payment was acknowledged before the kill");
    assert!(signed_refused.keys().all(|code| !code.starts_with('5')), "server errors: {signed_refused:?}");
    let acknowledged = tally.acknowledged.len();
    println!(
        "load: {acknowledged} payments acknowledged in {:.2} s ({:.0}/s), {} in flight at the kill, refused: {:?}",
        LOAD.as_secs_f64(),
        acknowledged as f64 / LOAD.as_secs_f64(),
        tally.unknown.len(),
        tally.refused
    );
    assert!(acknowledged > 0, "no payment was acknowledged before the kill");
    assert!(
        tally.transport_before_kill.is_empty(),
        "transport errors before the kill: {:?}",
        tally.transport_before_kill
    );
    assert!(tally.refused.keys().all(|code| !code.starts_with('5')), "server errors under load: {:?}", tally.refused);

    // 5. The second process on the same data.
    let restart = Instant::now();
    let second = Server::start(&data, dir.path(), "second");
    let restart_s = restart.elapsed().as_secs_f64();
    let client = second.client();

    // 6. Every acknowledged payment is committed at the notary...
    for sent in &tally.acknowledged {
        let id = tx_id(&sent.receipt);
        let status = client.get(&format!("/v1/transactions/{id}")).expect("transaction status");
        assert_eq!(
            status["committed"], true,
            "acknowledged payment {id} ({}) is not committed after the restart",
            sent.body
        );
    }
    // ...and recorded by both banks, with its amount.
    let histories: Vec<_> = people.iter().map(|p| history(&client, p)).collect();
    for sent in &tally.acknowledged {
        let id = tx_id(&sent.receipt);
        assert_eq!(u(&sent.receipt["amount_tiyn"]), sent.amount, "receipt amount of {id}");
        let debit = histories[sent.payer].get(&id);
        let credit = histories[sent.payee].get(&id);
        assert_eq!(debit, Some(&("debit".to_string(), sent.amount)), "payer's history of acknowledged payment {id}");
        assert_eq!(credit, Some(&("credit".to_string(), sent.amount)), "payee's history of acknowledged payment {id}");
    }
    // So is every acknowledged signed payment, in both histories.
    let signer_histories: Vec<_> = signers.iter().map(|s| history(&client, &s.person)).collect();
    for sent in &signed {
        let status = client.get(&format!("/v1/transactions/{}", sent.tx_id)).expect("transaction status");
        assert_eq!(status["committed"], true, "acknowledged signed payment {} is lost", sent.tx_id);
        assert_eq!(signer_histories[sent.payer].get(&sent.tx_id), Some(&("debit".to_string(), sent.amount)));
        assert_eq!(signer_histories[sent.payee].get(&sent.tx_id), Some(&("credit".to_string(), sent.amount)));
    }
    let mut signers_tiyn = 0;
    for (s, lines) in signers.iter().zip(&signer_histories) {
        let account = client.get(&format!("/v1/nodes/{}/accounts/{}", s.person.bank, s.person.iin)).expect("account");
        let credits: u64 = lines.values().filter(|(d, _)| d == "credit").map(|(_, a)| a).sum();
        let debits: u64 = lines.values().filter(|(d, _)| d == "debit").map(|(_, a)| a).sum();
        assert_eq!(u(&account["balance"]["dt_tiyn"]), credits - debits, "DT of signer {}", s.person.iin);
        assert_eq!(u(&account["balance"]["dt_reserved_tiyn"]), 0);
        signers_tiyn += u(&account["balance"]["dt_tiyn"]);
    }
    assert_eq!(signers_tiyn, SIGNERS as u64 * START_TIYN, "signed payments changed the signers' total");

    // Balances agree with the histories; nothing stays reserved.
    let mut clients_tiyn = 0;
    for (p, lines) in people.iter().zip(&histories) {
        let balance =
            client.get(&format!("/v1/nodes/{}/accounts/{}", p.bank, p.iin)).expect("account")["balance"].clone();
        let credits: u64 = lines.values().filter(|(d, _)| d == "credit").map(|(_, a)| a).sum();
        let debits: u64 = lines.values().filter(|(d, _)| d == "debit").map(|(_, a)| a).sum();
        assert_eq!(u(&balance["dt_tiyn"]), credits - debits, "DT of {} against its history", p.iin);
        assert_eq!(u(&balance["dt_reserved_tiyn"]), 0, "DT of {} still reserved after the restart", p.iin);
        clients_tiyn += u(&balance["dt_tiyn"]);
    }
    // The ledger reconciles, and clients plus banks hold exactly the circulation.
    let r = reconciliation(&client);
    let banks_tiyn: u64 = HOLDERS
        .iter()
        .map(|b| u(&client.get(&format!("/v1/nodes/{b}/accounts/own")).expect("own account")["balance"]["dt_tiyn"]))
        .sum();
    let circulation = u(&r["circulation_by_nbk_tiyn"]);
    assert_eq!(clients_tiyn, CLIENTS as u64 * START_TIYN, "payments between the clients changed their total");
    assert_eq!(
        clients_tiyn + signers_tiyn + banks_tiyn,
        circulation,
        "clients {clients_tiyn} + banks {banks_tiyn} against circulation {r}"
    );
    let monitoring = client.get("/v1/operator/monitoring").expect("monitoring");
    let held: u64 = monitoring["nodes"].as_array().expect("nodes").iter().map(|n| u(&n["dt_held_tiyn"])).sum();
    assert_eq!(held, circulation, "DT held by nodes in monitoring");

    // The idempotency record survived with the payment: the last acknowledged request again.
    let last = tally.acknowledged.last().expect("an acknowledged payment");
    let dt = |i: usize| {
        u(&client.get(&format!("/v1/nodes/{}/accounts/{}", people[i].bank, people[i].iin)).expect("account")["balance"]
            ["dt_tiyn"])
    };
    let before = (dt(last.payer), dt(last.payee));
    let again = client
        .post_with_key(&transfer_path(people[last.payer].bank), &last.body, &last.key)
        .expect("retry after restart");
    assert_eq!(tx_id(&again), tx_id(&last.receipt), "retry with key {} got another transaction", last.key);
    assert_eq!(again, last.receipt, "retry with key {} got another receipt", last.key);
    assert_eq!((dt(last.payer), dt(last.payee)), before, "the retry paid again");

    // Requests whose answer was lost can be retried with their keys.
    let mut retried: BTreeMap<String, usize> = BTreeMap::new();
    for sent in &tally.unknown {
        let outcome = client.post_with_key(&transfer_path(people[sent.payer].bank), &sent.body, &sent.key);
        let label = match outcome {
            Ok(_) => "200 OK".to_string(),
            Err(e) => {
                assert!(e.status != 0 && e.status < 500, "retry of in-flight request {} failed: {e}", sent.key);
                format!("{} {}", e.status, e.code)
            }
        };
        *retried.entry(label).or_default() += 1;
    }
    let r = reconciliation(&client);
    drop(second);

    println!(
        "after restart ({restart_s:.2} s): {acknowledged} acknowledged payments committed and in both histories; \
         clients {clients_tiyn} + signers {signers_tiyn} + banks {banks_tiyn} = circulation {circulation} tiyn; retried in-flight requests: {retried:?}; \
         final circulation {}, notary unspent {}",
        r["circulation_by_nbk_tiyn"], r["notary_unspent"]
    );
    println!("total {:.2} s", test_started.elapsed().as_secs_f64());
}
