//! Coin selection against wallet size (issue 20): a custodial payer with 10, 1,000 or 100,000
//! tokens prepares a payment (inputs chosen and reserved, then released). From the index of
//! spendable tokens this costs O(log n + k), so the three should take about the same time; the
//! build before walked every token the payer owned, with a hash lookup each.
//! Run: `cargo bench -p dtenge-node --bench selection`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody, TX_OUTPUTS_MAX};
use dtenge_node::{Account, ClientKind, Custody, NodeKind, NodeMeta, NodeState, Purpose};
use dtenge_store::WriteBatch;

fn amount(tiyn: u64) -> Amount {
    Amount::from_tiyn(tiyn).expect("amount")
}

/// A bank whose client `payer` holds `tokens` tokens of 100 to 10,099 tiyn, and a payee.
fn bank_with(tokens: usize) -> (NodeState, Address, Address) {
    let meta = NodeMeta { id: "b".into(), kind: NodeKind::Bank, name: "b bank".into() };
    let node_key = SecretKey::from_seed([1; 32]).into();
    let mut bank = NodeState::new(meta, node_key, SecretKey::from_seed([2; 32]), Custody::new([3; 32]), 0);
    let mut open = |client: &str, seed: u8| {
        let key = SecretKey::from_seed([seed; 32]);
        let account = Account {
            client_id: client.into(),
            node_id: "b".into(),
            kind: ClientKind::Individual,
            name: client.into(),
            phone: None,
            address: key.address(),
            opened_at_unix_ms: 0,
        };
        bank.plan_open(account.clone(), Some(&key), &mut WriteBatch::new()).expect("open");
        bank.apply_open(account, Some(&key));
        key.address()
    };
    let (payer, payee) = (open("payer", 10), open("payee", 11));
    let issuer_key = SecretKey::from_seed([100; 32]);
    let mut made = 0;
    let mut nonce = 0;
    while made < tokens {
        let count = (tokens - made).min(TX_OUTPUTS_MAX);
        let outputs = (made..made + count)
            .map(|i| Output::standard(amount(100 + (i as u64 * 7_919) % 10_000), payer, issuer_key.address()))
            .collect();
        let mut issue = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce });
        issue.attest(&issuer_key);
        let delta = bank.plan_commit(&issue, Purpose::Emission, None, 1).expect("plan");
        bank.apply(delta);
        made += count;
        nonce += 1;
    }
    assert_eq!(bank.balance("payer").expect("payer").tokens, tokens);
    (bank, payee, issuer_key.address())
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("prepare_payment");
    for tokens in [10usize, 1_000, 100_000] {
        let (mut bank, payee, issuer) = bank_with(tokens);
        // One token covers it (the common case), and one that takes several of the largest.
        for (case, tiyn) in [("one_token", 150u64), ("several_tokens", 25_000)] {
            group.bench_with_input(BenchmarkId::new(case, tokens), &tiyn, |b, &tiyn| {
                let mut nonce = 0u64;
                b.iter(|| {
                    nonce += 1;
                    let (tx, _key) = bank
                        .prepare_payment_unsigned("payer", &[(payee, amount(tiyn))], issuer, nonce)
                        .expect("the payer holds enough");
                    bank.release(&tx);
                    tx
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, selection);
criterion_main!(benches);
