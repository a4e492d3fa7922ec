//! Concurrency tests of the whole platform in one process.
//!
//! (a) Many submitters race to spend the same token of a client that keeps its own key:
//!     exactly one transaction commits, every other one fails with `DOUBLE_SPEND`.
//! (b) Many threads pay from one custodial account at once, asking for more than it holds:
//!     what succeeds never exceeds the balance, and the balance drops by exactly that.
//! (c) Cross-bank payments from eight threads while another thread reconciles in a loop:
//!     every reconciliation sees a consistent state, and every balance ends where the
//!     successful payments say it must.
//! (d) A flood of client-signed transfers, batched by the banks, with double spends, repeats
//!     and bad signatures among them.
//! (e) Bad signatures wherever they sit in a chunk of a bank's batch verification.
//!
//! The network's payment pipeline is the banks' own queue and batches among the roles: (d)
//! and (e) submit to the banks (`Assembly::bank`) instead of `Network::pipeline`, and a payee
//! at another bank is credited once the delivery arrives, after the payer's answer, so they
//! let the roles settle before they read the payees' balances.

use dtenge_api::platform::Platform;
use dtenge_api::types::{AmountRequest, OpenAccount, Payee, TransferRequest};
use dtenge_core::calendar::Date;
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::ClientKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];

/// 2026-11-23 10:00 Astana time (+05:00), a Monday and an operational day.
fn monday_10am_ms() -> u64 {
    let days = Date::new(2026, 11, 23).unwrap().days();
    ((days * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn iin(prefix: &str, start: u32) -> String {
    (start..).find_map(|n| complete_iin_bin(&format!("{prefix}{n:05}"))).expect("some prefix has a check digit")
}

fn amount(tiyn: u64) -> Amount {
    Amount::from_tiyn(tiyn).unwrap()
}

fn req(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: amount(tiyn) }
}

fn open_platform(dir: &std::path::Path, seed: u64) -> Platform {
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    let platform = Platform::open(dir, clock, Entropy::from_seed(seed)).unwrap();
    assert!(platform.today().working, "the test day must be operational");
    // Every bank gets bank money on its correspondent account and DT liquidity.
    for bank in BANKS {
        platform.credit_correspondent(None, bank, req(10_000_000_000)).unwrap();
        platform.emission(None, bank, req(5_000_000_000)).unwrap();
    }
    platform
}

/// A client account at `bank`: custodial unless `key` is given.
struct Client {
    bank: &'static str,
    id: String,
    address: Address,
}

fn open_client(platform: &Platform, bank: &'static str, n: u32, key: Option<&SecretKey>) -> Client {
    let id = iin("900101", 10_000 + 10 * n);
    let account = platform
        .open_account(
            None,
            bank,
            OpenAccount {
                kind: ClientKind::Individual,
                client_id: id.clone(),
                name: format!("Client{n} Testov"),
                phone: None,
                public_key: key.map(SecretKey::public_key),
            },
        )
        .unwrap();
    Client { bank, id, address: account.address }
}

/// Give a client `tiyn` more DT in one token (bank money in, then converted).
fn fund(platform: &Platform, client: &Client, tiyn: u64) -> dtenge_core::token::TxId {
    platform.deposit_fiat(None, client.bank, &client.id, req(tiyn)).unwrap();
    platform.convert_to_dt(None, client.bank, &client.id, req(tiyn)).unwrap().tx_id
}

fn dt(platform: &Platform, client: &Client) -> u64 {
    platform.balance(client.bank, &client.id).unwrap().dt_tiyn.tiyn()
}

/// All DT held by every account of every node.
fn total_dt(platform: &Platform) -> u64 {
    platform
        .node_ids()
        .iter()
        .flat_map(|node| platform.accounts(node).unwrap())
        .map(|view| view.balance.dt_tiyn.tiyn())
        .sum()
}

fn assert_reconciles(platform: &Platform, context: &str) {
    let rec = platform.reconcile();
    assert!(rec.ok, "{context}: reconciliation failed: {:?}", rec.problems);
    assert_eq!(rec.circulation_by_nodes_tiyn, rec.dt_liability_tiyn, "{context}");
    assert_eq!(rec.node_tokens, rec.notary_unspent, "{context}");
}

fn assert_nothing_reserved(platform: &Platform, context: &str) {
    for node in platform.node_ids() {
        for view in platform.accounts(&node).unwrap() {
            assert!(
                view.balance.dt_reserved_tiyn.is_zero(),
                "{context}: {node}/{} keeps reserved DT after every payment ended",
                view.account.client_id
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// (a) Double spend race of a self-signing client.
// ------------------------------------------------------------------------------------------

#[test]
fn racing_submissions_of_one_token_commit_exactly_once() {
    const RACERS: usize = 16;
    const ROUNDS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path(), 11);
    let key = SecretKey::from_seed([42; 32]);
    let payer = open_client(&platform, "steppe", 0, Some(&key));
    let payees: Vec<Client> = (0..RACERS).map(|i| open_client(&platform, BANKS[i % 3], 100 + i as u32, None)).collect();
    let circulation = total_dt(&platform);

    for round in 0..ROUNDS {
        let context = format!("round {round}");
        let value = 10_000 + 37 * round;
        let funding = fund(&platform, &payer, value);
        let spendable = platform.spendable_tokens(payer.bank, &payer.id).unwrap();
        let token: Input = spendable
            .iter()
            .find(|input| input.tx_id == funding && input.output.owner == payer.address)
            .cloned()
            .unwrap_or_else(|| panic!("{context}: the conversion's token is not spendable: {spendable:?}"));
        assert_eq!(token.output.amount_tiyn.tiyn(), value, "{context}: one token carries the whole conversion");

        // Sixteen different transactions spending that one token: even ones pay it all, odd
        // ones pay part and send the change back to the payer.
        let issuer = token.output.issuer;
        let txs: Vec<Transaction> = (0..RACERS)
            .map(|i| {
                let paid = if i % 2 == 0 { value } else { value / 2 + i as u64 };
                let mut outputs = vec![Output::standard(amount(paid), payees[i].address, issuer)];
                if paid < value {
                    outputs.push(Output::standard(amount(value - paid), payer.address, issuer));
                }
                let body = TxBody {
                    command: Command::Transfer,
                    inputs: vec![token.clone()],
                    outputs,
                    nonce: round * 1_000 + i as u64,
                };
                let mut tx = Transaction::new(body);
                tx.sign_owner(&key);
                tx
            })
            .collect();
        let paid_of = |i: usize| txs[i].body.outputs[0].amount_tiyn.tiyn();

        let payer_before = dt(&platform, &payer);
        let payees_before: Vec<u64> = payees.iter().map(|p| dt(&platform, p)).collect();
        let barrier = Barrier::new(RACERS);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = txs
                .iter()
                .map(|tx| {
                    let (platform, barrier, payer) = (&platform, &barrier, &payer);
                    s.spawn(move || {
                        barrier.wait();
                        platform.submit(None, payer.bank, tx.clone())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let winners: Vec<usize> = (0..RACERS).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{context}: exactly one racer must win: {results:?}");
        let winner = winners[0];
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(receipt) => {
                    assert_eq!(receipt.tx_id, txs[i].id(), "{context}");
                    assert_eq!(receipt.amount_tiyn.tiyn(), paid_of(i), "{context}");
                    assert!(platform.is_committed(&txs[i].id()).unwrap(), "{context}: the winner is committed");
                }
                Err(e) => {
                    assert_eq!(e.code, ErrorCode::DoubleSpend, "{context}: racer {i} failed otherwise: {e}");
                    assert!(!platform.is_committed(&txs[i].id()).unwrap(), "{context}: loser {i} is committed");
                }
            }
        }

        // Exactly the winner's amounts moved.
        let paid = paid_of(winner);
        assert_eq!(dt(&platform, &payer), payer_before - paid, "{context}: payer");
        for (i, p) in payees.iter().enumerate() {
            let expected = payees_before[i] + if i == winner { paid } else { 0 };
            assert_eq!(dt(&platform, p), expected, "{context}: payee {i}");
        }
        let spendable = platform.spendable_tokens(payer.bank, &payer.id).unwrap();
        assert!(spendable.iter().all(|i| i.token_id() != token.token_id()), "{context}: spent token still spendable");
        assert_eq!(total_dt(&platform), circulation, "{context}: DT in circulation changed");
        assert_nothing_reserved(&platform, &context);
        assert_reconciles(&platform, &context);

        // A late resubmission of a loser is still refused, and of the winner changes nothing.
        let loser = (winner + 1) % RACERS;
        let late = platform.submit(None, payer.bank, txs[loser].clone()).unwrap_err();
        assert_eq!(late.code, ErrorCode::DoubleSpend, "{context}: late loser");
        platform.submit(None, payer.bank, txs[winner].clone()).unwrap();
        assert_eq!(dt(&platform, &payer), payer_before - paid, "{context}: winner resubmitted");
        assert_eq!(total_dt(&platform), circulation, "{context}: winner resubmitted");
    }
    assert_reconciles(&platform, "end");
}

// ------------------------------------------------------------------------------------------
// (b) Custodial account paid from by many threads at once.
// ------------------------------------------------------------------------------------------

#[test]
fn racing_custodial_payments_never_overdraw() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path(), 12);
    let payer = open_client(&platform, "tulpar", 0, None);
    let payees: Vec<Client> =
        (0..THREADS).map(|i| open_client(&platform, BANKS[i % 3], 200 + i as u32, None)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let circulation_before = total_dt(&platform);
    let mut funded = 0;
    let mut outcomes = Vec::new();

    for round in 0..ROUNDS {
        let context = format!("round {round}");
        // The balance is made of 1 to 4 tokens (one per conversion) on top of what is left.
        for _ in 0..=(round % 4) {
            let tiyn = rng.gen_range(5_000..60_000);
            fund(&platform, &payer, tiyn);
            funded += tiyn;
        }
        let start = dt(&platform, &payer);
        // Each thread asks for about a quarter of the balance: together about twice of it.
        let amounts: Vec<u64> = (0..THREADS).map(|_| rng.gen_range(start / 6..=start / 3).max(1)).collect();
        assert!(amounts.iter().sum::<u64>() > start, "{context}: the race must ask for too much");
        let payees_before: Vec<u64> = payees.iter().map(|p| dt(&platform, p)).collect();

        let barrier = Barrier::new(THREADS);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (platform, barrier, payer, payee, tiyn) = (&platform, &barrier, &payer, &payees[i], amounts[i]);
                    s.spawn(move || {
                        barrier.wait();
                        platform.transfer(
                            None,
                            payer.bank,
                            TransferRequest {
                                from: payer.id.clone(),
                                to: Payee {
                                    client_id: Some(payee.id.clone()),
                                    bank: Some(payee.bank.into()),
                                    ..Payee::default()
                                },
                                amount_tiyn: amount(tiyn),
                                reference: None,
                            },
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let mut succeeded = 0;
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(receipt) => {
                    assert_eq!(receipt.amount_tiyn.tiyn(), amounts[i], "{context}");
                    succeeded += amounts[i];
                    assert_eq!(dt(&platform, &payees[i]), payees_before[i] + amounts[i], "{context}: payee {i}");
                }
                Err(e) => {
                    // Refused for good, or told to retry while another racing payment holds
                    // the tokens it would need (issue 19): nothing moved either way.
                    assert!(
                        matches!(e.code, ErrorCode::InsufficientFunds | ErrorCode::FundsInFlight),
                        "{context}: payment {i}: {e}"
                    );
                    assert_eq!(dt(&platform, &payees[i]), payees_before[i], "{context}: payee {i} of a failed payment");
                }
            }
        }
        assert!(succeeded > 0, "{context}: at least the first payment fits: {results:?}");
        outcomes
            .push(format!("{}/{THREADS} paid {succeeded} of {start}", results.iter().filter(|r| r.is_ok()).count()));
        assert!(succeeded <= start, "{context}: paid {succeeded} from a balance of {start}");
        assert_eq!(dt(&platform, &payer), start - succeeded, "{context}: payer's balance");
        assert_nothing_reserved(&platform, &context);
        assert_reconciles(&platform, &context);
    }
    assert_eq!(total_dt(&platform), circulation_before, "payments and conversions do not change circulation");
    let clients_dt = dt(&platform, &payer) + payees.iter().map(|p| dt(&platform, p)).sum::<u64>();
    assert_eq!(clients_dt, funded, "the clients hold exactly what was converted for them");
    eprintln!("custodial races: {}", outcomes.join("; "));
}

// ------------------------------------------------------------------------------------------
// (c) Cross-bank payments while reconciliation runs.
// ------------------------------------------------------------------------------------------

/// Eight threads make 200 cross-bank payments each; a ninth moves bank money (emission,
/// redemption, conversions both ways) at the same time; a tenth reconciles in a loop. Every
/// reconciliation must hold (the gate shows it a state between operations), and at the end
/// every balance is what the successful operations say.
///
/// Among the roles `Platform::reconcile` compares the roles' reports as of one notary
/// certificate number, while payments go on (ARCHITECTURE, "Consistency without a global
/// lock"): at least `RECONCILED_DURING_LOAD_MIN` run during the load, and every one holds (a
/// report that could not be completed in time would be an answer that is not ok too).
#[test]
fn reconciliation_during_concurrent_cross_bank_payments() {
    concurrent_cross_bank_payments(Watcher::Reconciles);
}

/// The same load, watched by the operator's monitoring in a loop instead of reconciliation:
/// monitoring reads running totals role by role and never pauses payments, so it must
/// always answer; at the end every balance is what the successful operations say and the
/// roles reconcile.
#[test]
fn monitoring_during_concurrent_cross_bank_payments() {
    concurrent_cross_bank_payments(Watcher::Monitors);
}

/// What the tenth thread does in a loop while the others pay.
#[derive(Clone, Copy, PartialEq)]
enum Watcher {
    Reconciles,
    Monitors,
}

fn concurrent_cross_bank_payments(watcher: Watcher) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 200;
    const PAYERS_PER_THREAD: usize = 3;
    const CLIENTS: usize = THREADS * PAYERS_PER_THREAD;
    const INITIAL: u64 = 1_000_000;
    const BANK_MONEY_OPS: u64 = 60;
    const RECONCILED_DURING_LOAD_MIN: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path(), 13);
    let clients: Vec<Client> =
        (0..CLIENTS).map(|i| open_client(&platform, BANKS[i % 3], 300 + i as u32, None)).collect();
    for c in &clients {
        // Several tokens each, so payments both pick one token and combine several.
        for part in [400_000, 300_000, 200_000, 100_000] {
            fund(&platform, c, part);
        }
        assert_eq!(dt(&platform, c), INITIAL);
    }
    // One client per bank converts back and forth; nobody pays it or from it.
    let converters: Vec<Client> = (0..3).map(|b| open_client(&platform, BANKS[b], 400 + b as u32, None)).collect();
    for c in &converters {
        platform.deposit_fiat(None, c.bank, &c.id, req(1_000_000)).unwrap();
    }
    let circulation_before = platform.reconcile().circulation_by_nodes_tiyn.tiyn();
    assert_reconciles(&platform, "before");

    let done = AtomicBool::new(false);
    let reconciliations = AtomicUsize::new(0);
    let (payments, (emitted, redeemed, converter_dt)) = std::thread::scope(|s| {
        let reconciler = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                match watcher {
                    Watcher::Reconciles => {
                        let rec = platform.reconcile();
                        assert!(rec.ok, "reconciliation during payments: {:?}", rec.problems);
                    }
                    Watcher::Monitors => {
                        platform.monitoring().unwrap();
                    }
                }
                reconciliations.fetch_add(1, Ordering::SeqCst);
                std::thread::yield_now();
            }
        });
        let bank_money = s.spawn(|| {
            let (mut emitted, mut redeemed, mut converter_dt) = (0u64, 0u64, [0u64; 3]);
            for i in 0..BANK_MONEY_OPS {
                let b = (i % 3) as usize;
                let (bank, c) = (BANKS[b], &converters[b]);
                match (i / 3) % 4 {
                    0 => {
                        platform.emission(None, bank, req(10_000 + i)).unwrap();
                        emitted += 10_000 + i;
                    }
                    1 => {
                        platform.convert_to_dt(None, bank, &c.id, req(3_000 + i)).unwrap();
                        converter_dt[b] += 3_000 + i;
                    }
                    2 => {
                        platform.convert_from_dt(None, bank, &c.id, req(1_000 + i)).unwrap();
                        converter_dt[b] -= 1_000 + i;
                    }
                    _ => {
                        platform.redemption(None, bank, req(5_000 + i)).unwrap();
                        redeemed += 5_000 + i;
                    }
                }
            }
            (emitted, redeemed, converter_dt)
        });
        // Each payer thread pays only from its own three clients, to clients of other banks;
        // amounts are small enough that no payer can run out (200 * 4,000 < 1,000,000).
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (platform, clients) = (&platform, &clients);
                s.spawn(move || {
                    let mut rng = ChaCha8Rng::seed_from_u64(1_000 + t as u64);
                    let mut made = Vec::with_capacity(PER_THREAD);
                    for k in 0..PER_THREAD {
                        let from = t * PAYERS_PER_THREAD + k % PAYERS_PER_THREAD;
                        let to = loop {
                            let to = rng.gen_range(0..CLIENTS);
                            if clients[to].bank != clients[from].bank {
                                break to;
                            }
                        };
                        let tiyn = rng.gen_range(1..=4_000);
                        let to_payee = if k % 2 == 0 {
                            Payee { address: Some(clients[to].address), ..Payee::default() }
                        } else {
                            Payee {
                                client_id: Some(clients[to].id.clone()),
                                bank: Some(clients[to].bank.into()),
                                ..Payee::default()
                            }
                        };
                        let request = TransferRequest {
                            from: clients[from].id.clone(),
                            to: to_payee,
                            amount_tiyn: amount(tiyn),
                            reference: None,
                        };
                        let receipt = platform
                            .transfer(None, clients[from].bank, request)
                            .unwrap_or_else(|e| panic!("thread {t} payment {k}: {e}"));
                        assert_eq!(receipt.amount_tiyn.tiyn(), tiyn);
                        made.push((from, to, tiyn));
                    }
                    made
                })
            })
            .collect();
        let payments: Vec<Vec<(usize, usize, u64)>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let bank_money = bank_money.join().unwrap();
        done.store(true, Ordering::SeqCst);
        reconciler.join().unwrap();
        (payments, bank_money)
    });

    let ran = reconciliations.load(Ordering::SeqCst);
    if watcher == Watcher::Reconciles {
        assert!(ran >= RECONCILED_DURING_LOAD_MIN, "only {ran} reconciliations ran during the load");
    } else {
        assert!(ran > 0);
    }
    let mut expected = [INITIAL as i64; CLIENTS];
    for &(from, to, tiyn) in payments.iter().flatten() {
        expected[from] -= tiyn as i64;
        expected[to] += tiyn as i64;
    }
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(dt(&platform, c) as i64, expected[i], "client {i}");
    }
    for (b, c) in converters.iter().enumerate() {
        assert_eq!(dt(&platform, c), converter_dt[b], "converter at {}", c.bank);
        let fiat = platform.balance(c.bank, &c.id).unwrap().fiat_tiyn.tiyn();
        assert_eq!(fiat + converter_dt[b], 1_000_000, "converter at {}: bank money + DT", c.bank);
    }
    assert_nothing_reserved(&platform, "after");
    assert_reconciles(&platform, "after");
    let monitoring = platform.monitoring().unwrap();
    assert_eq!(platform.reconcile().circulation_by_nodes_tiyn.tiyn(), circulation_before + emitted - redeemed);
    assert_eq!(monitoring.circulation_tiyn.tiyn(), circulation_before + emitted - redeemed);
    eprintln!(
        "{} reconciliations ran during {} payments and {BANK_MONEY_OPS} bank-money operations",
        reconciliations.load(Ordering::SeqCst),
        THREADS * PER_THREAD
    );
}

// ------------------------------------------------------------------------------------------
// (d) The payment pipeline: one flood of submissions, batched.
// ------------------------------------------------------------------------------------------

/// Hundreds of client-signed payments go through the pipeline at once, so they are checked
/// and settled in batches: with them, in the same batches, a second transaction for the same
/// token (a double spend), the same transaction twice, and a transaction with a bad
/// signature. Exactly the valid first spends commit; the balances and the platform agree.
#[test]
fn the_pipeline_settles_a_flood_in_batches_and_refuses_what_it_must() {
    const PAYERS: u32 = 120;
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path(), 19);
    let payee = open_client(&platform, "tulpar", 500, None);
    let mut txs = Vec::new();
    let mut payers = Vec::new();
    for n in 0..PAYERS {
        let key = SecretKey::from_seed([n as u8 + 1; 32]);
        let payer = open_client(&platform, BANKS[n as usize % 3], n, Some(&key));
        let funding = fund(&platform, &payer, 50_000);
        let token = platform
            .spendable_tokens(payer.bank, &payer.id)
            .unwrap()
            .into_iter()
            .find(|input| input.tx_id == funding)
            .unwrap();
        let issuer = token.output.issuer;
        let spend = |to: Address, nonce: u64| {
            let body = TxBody {
                command: Command::Transfer,
                inputs: vec![token.clone()],
                outputs: vec![Output::standard(amount(50_000), to, issuer)],
                nonce,
            };
            let mut tx = Transaction::new(body);
            tx.sign_owner(&key);
            tx
        };
        txs.push((payer.bank, spend(payee.address, 1), "valid"));
        match n % 4 {
            // The same token to someone else, right behind: refused as a double spend.
            0 => {
                txs.push((payer.bank, spend(payers.first().map_or(payee.address, |p: &Client| p.address), 2), "double"))
            }
            // The very same transaction again: it commits once.
            1 => txs.push((payer.bank, txs.last().unwrap().1.clone(), "again")),
            // A corrupted signature on a fresh transaction.
            2 => {
                let mut bad = spend(payee.address, 3);
                bad.witnesses[0].signature = SecretKey::from_seed([200; 32]).sign(b"something else");
                txs.push((payer.bank, bad, "bad signature"));
            }
            _ => {}
        }
        payers.push(payer);
    }
    let circulation = total_dt(&platform);
    let payee_before = dt(&platform, &payee);
    // All at once into the banks' queues (each bank batches what it finds there), the answers
    // on one channel, tagged: the network's `pipeline().submit` with a tag.
    let (reply, answers) = crossbeam_channel::unbounded();
    for (tag, (bank, tx, _)) in txs.iter().enumerate() {
        let bank = platform.assembly().bank(bank).unwrap();
        bank.submit_tagged(dtenge_bank::Request::Signed(tx.clone()), None, tag as u64, &reply);
    }
    let mut results: Vec<Option<dtenge_core::Result<dtenge_bank::Committed>>> = (0..txs.len()).map(|_| None).collect();
    for _ in 0..txs.len() {
        let (tag, result) = answers.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        results[tag as usize] = Some(result);
    }
    // The payee's bank applies the payments of the other banks' payers from their deliveries,
    // after the answers.
    platform.assembly().settle(std::time::Duration::from_secs(30)).unwrap();
    let mut committed = 0;
    for ((_, tx, kind), result) in txs.iter().zip(&results) {
        let result = result.as_ref().unwrap();
        match (*kind, result) {
            ("valid", Ok(receipt)) => {
                assert_eq!(receipt.tx_id, tx.id());
                committed += 1;
            }
            ("double", Err(e)) => assert_eq!(e.code, ErrorCode::DoubleSpend, "{e}"),
            // Resubmitted in the same batch, the second copy finds the first one pending; in a
            // later batch it gets the same receipt. Either way it commits once.
            ("again", Ok(receipt)) => assert_eq!(receipt.tx_id, tx.id()),
            ("again", Err(e)) => assert_eq!(e.code, ErrorCode::RequestInProgress, "{e}"),
            ("bad signature", Err(e)) => assert_eq!(e.code, ErrorCode::InvalidSignature, "{e}"),
            (kind, result) => panic!("{kind}: unexpected {result:?}"),
        }
        assert_eq!(platform.is_committed(&tx.id()).unwrap(), *kind == "valid" || *kind == "again");
    }
    assert_eq!(committed, PAYERS);
    assert_eq!(dt(&platform, &payee), payee_before + 50_000 * u64::from(PAYERS));
    for payer in &payers {
        assert_eq!(dt(&platform, payer), 0, "every payer spent its one token");
    }
    assert_eq!(total_dt(&platform), circulation, "payments move DT, they do not make or destroy it");
    assert_reconciles(&platform, "after the flood");
    assert_nothing_reserved(&platform, "after the flood");
    // A retry after the fact gets the receipt again and changes nothing.
    let (bank, tx, _) = &txs[0];
    let again = platform.submit(None, bank, tx.clone()).unwrap();
    assert_eq!(again.tx_id, tx.id());
    assert_reconciles(&platform, "after a retry");
}

/// A chunk with a bad signature is verified again to find it: one by one until the first bad
/// one, then the rest of the chunk as one batch, then (if that fails too) one by one. Wherever
/// the bad signatures sit in their chunk of 16 (alone, first and last, several, every one),
/// exactly those transactions are refused and every other one commits.
///
/// Among the roles each bank verifies its own batch (`dtenge_bank`'s `verify_all`, chunks of
/// `VERIFY_CHUNK_TXS` = 16, private to the bank): so every payer here banks with Steppe, whose
/// one batch holds the 80 transactions in order (the network's batch spanned its nodes), and
/// the test puts them in Steppe's queue before it flushes, as the network's `begin_batch` did.
#[test]
fn bad_signatures_are_found_wherever_they_sit_in_a_chunk() {
    /// The bank's chunk of one batch verification (`dtenge_bank::verify::VERIFY_CHUNK_TXS`).
    const VERIFY_CHUNK_TXS: usize = 16;
    assert_eq!(VERIFY_CHUNK_TXS, 16, "the positions below are chosen for chunks of 16");
    // Chunk 0: one bad in the middle. Chunk 1: its first and last. Chunk 2: three, two of
    // them adjacent. Chunk 3: every one. Chunk 4: none.
    let bad: std::collections::BTreeSet<usize> = [5, 16, 31, 33, 34, 40].into_iter().chain(48..64).collect();
    let count = 80;
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path(), 23);
    let payee = open_client(&platform, "tulpar", 500, None);
    let mut txs = Vec::new();
    for n in 0..count {
        let key = SecretKey::from_seed([n as u8 + 1; 32]);
        let payer = open_client(&platform, "steppe", n as u32, Some(&key));
        let funding = fund(&platform, &payer, 10_000);
        let token =
            platform.spendable_tokens(payer.bank, &payer.id).unwrap().into_iter().find(|i| i.tx_id == funding).unwrap();
        let issuer = token.output.issuer;
        let body = TxBody {
            command: Command::Transfer,
            inputs: vec![token],
            outputs: vec![Output::standard(amount(10_000), payee.address, issuer)],
            nonce: 1,
        };
        let mut tx = Transaction::new(body);
        tx.sign_owner(&key);
        if bad.contains(&n) {
            tx.witnesses[0].signature = key.sign(b"another message");
        }
        txs.push(tx);
    }
    let ids: Vec<_> = txs.iter().map(|tx| tx.id()).collect();
    let payee_before = dt(&platform, &payee);
    // Queued without waking the bank's flusher, then taken in one flush: one batch of 80.
    let steppe = platform.assembly().bank("steppe").unwrap().service();
    let (reply, answers) = crossbeam_channel::unbounded();
    for (tag, tx) in txs.into_iter().enumerate() {
        steppe.submit_tagged(dtenge_bank::Request::Signed(tx), None, tag as u64, &reply);
    }
    steppe.flush(platform.now_ms());
    let mut results: Vec<Option<dtenge_core::Result<dtenge_bank::Committed>>> = (0..count).map(|_| None).collect();
    for _ in 0..count {
        let (tag, result) = answers.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        results[tag as usize] = Some(result);
    }
    assert_eq!(results.len(), count);
    for (n, result) in results.iter().enumerate() {
        match result.as_ref().unwrap() {
            Ok(receipt) => {
                assert!(!bad.contains(&n), "transaction {n} has a bad signature and committed");
                assert_eq!(receipt.tx_id, ids[n]);
            }
            Err(e) => {
                assert!(bad.contains(&n), "transaction {n} is valid and was refused: {e}");
                assert_eq!(e.code, ErrorCode::InvalidSignature, "{e}");
            }
        }
        assert_eq!(platform.is_committed(&ids[n]).unwrap(), !bad.contains(&n));
    }
    // The payee banks with Tulpar: credited from Steppe's deliveries, after the answers.
    platform.assembly().settle(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(dt(&platform, &payee), payee_before + 10_000 * (count - bad.len()) as u64);
    assert_reconciles(&platform, "after the batch");
    assert_nothing_reserved(&platform, "after the batch");
}
