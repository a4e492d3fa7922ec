//! The notary alone: check-and-spend of 2-input 2-output transactions against a large unspent
//! set. Throughput is counted in input checks. Run: `cargo bench -p dtenge-notary`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dtenge_core::crypto::hash_parts;
use dtenge_core::token::{TokenId, TxId};
use dtenge_notary::{Notary, SpendRequest};

const UNSPENT: u32 = 1_000_000;
const TXS_PER_ITERATION: u32 = 10_000;

fn token(n: u32) -> TokenId {
    TokenId(hash_parts(b"bench/token", &[&n.to_le_bytes()]))
}

fn tx(n: u32) -> TxId {
    TxId(hash_parts(b"bench/tx", &[&n.to_le_bytes()]))
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("notary");
    group.throughput(Throughput::Elements(u64::from(TXS_PER_ITERATION) * 2));
    group.sample_size(10);
    let mut round = 0u32;
    group.bench_function("spend_2in_2out_1M_unspent", |b| {
        b.iter_batched(
            || {
                round += 1;
                let notary = Notary::restore((0..UNSPENT).map(token), []);
                let base = UNSPENT + round * TXS_PER_ITERATION * 2;
                let requests: Vec<(TxId, [TokenId; 2], [TokenId; 2])> = (0..TXS_PER_ITERATION)
                    .map(|i| {
                        (tx(base + i), [token(2 * i), token(2 * i + 1)], [token(base + 2 * i), token(base + 2 * i + 1)])
                    })
                    .collect();
                (notary, requests)
            },
            |(notary, requests)| {
                for (tx_id, inputs, outputs) in &requests {
                    let request = SpendRequest { tx_id: *tx_id, inputs, outputs };
                    notary.try_spend(request).expect("unspent");
                    notary.finalize(request);
                }
                notary
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(notary, benches);
criterion_main!(notary);
