//! Durable group commits, fsync'd. Run: `cargo bench -p dtenge-store`.
//!
//! - `store_commit_fsync`: payments as keyed rows in fjall (2 token deletes, 2 token inserts,
//!   one transaction row each), how a payment was written before the log tables;
//! - `store_commit_log_fsync`: payments as the payment path writes them now, records of log
//!   tables in the store's journal: the notary's change and committed id, each party node's
//!   token change and history line, and the archived transaction, about 2.1 KB.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dtenge_store::{LogTable, Store, Table, WriteBatch};

const TOKENS: Table = Table("tokens");
const TXS: Table = Table("txs");
const NOTARY_CHANGES: LogTable = LogTable("notary_changes");
const COMMITTED: LogTable = LogTable("committed");
const NODE_CHANGES: LogTable = LogTable("node_changes");
const HISTORY: LogTable = LogTable("history");
const ARCHIVE: LogTable = LogTable("archive");

/// One payment's log records, with the sizes `dtenge bench` writes (rounded).
fn payment_records(batch: &mut WriteBatch, n: u64) {
    let bytes = |len: usize| {
        let mut record = vec![7u8; len];
        record[..8].copy_from_slice(&n.to_le_bytes());
        record
    };
    batch.record(NOTARY_CHANGES, bytes(200));
    batch.record(COMMITTED, bytes(32));
    for _node in 0..2 {
        batch.record(NODE_CHANGES, bytes(300));
        batch.record(HISTORY, bytes(150));
    }
    batch.record(ARCHIVE, bytes(1_000));
}

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
    let mut group = c.benchmark_group("store_commit_log_fsync");
    group.sample_size(20);
    for per_commit in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(per_commit));
        group.bench_function(format!("{per_commit}_payments_per_commit"), |b| {
            b.iter(|| {
                let mut batch = WriteBatch::new();
                for n in next..next + per_commit {
                    payment_records(&mut batch, n);
                }
                next += per_commit;
                store.commit(batch).expect("commit");
            })
        });
    }
    group.finish();
}

criterion_group!(commit, benches);
criterion_main!(commit);
