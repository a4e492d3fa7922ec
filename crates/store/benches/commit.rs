//! Durable group commits: a batch of payments' writes (2 token deletes, 2 token inserts, one
//! transaction record each), fsync'd. Run: `cargo bench -p dtenge-store`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dtenge_store::{Store, Table, WriteBatch};

const TOKENS: Table = Table("tokens");
const TXS: Table = Table("txs");

fn payments(batch: &mut WriteBatch, first: u64, count: u64) {
    for n in first..first + count {
        let key = |k: u64| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&k.to_be_bytes());
            bytes.to_vec()
        };
        batch.delete(TOKENS, key(4 * n));
        batch.delete(TOKENS, key(4 * n + 1));
        batch.put(TOKENS, key(4 * n + 2), vec![7u8; 120]);
        batch.put(TOKENS, key(4 * n + 3), vec![7u8; 120]);
        batch.put(TXS, key(n), vec![9u8; 400]);
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), &[TOKENS, TXS]).expect("open");
    let mut group = c.benchmark_group("store_commit_fsync");
    group.sample_size(20);
    let mut next = 0u64;
    for per_commit in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(per_commit));
        group.bench_function(format!("{per_commit}_payments_per_commit"), |b| {
            b.iter(|| {
                let mut batch = WriteBatch::new();
                payments(&mut batch, next, per_commit);
                next += per_commit;
                store.commit(batch).expect("commit");
            })
        });
    }
    group.finish();
}

criterion_group!(commit, benches);
criterion_main!(commit);
