//! Durable storage: one embedded [redb](https://docs.rs/redb) database per platform, written
//! only through fsync'd group commits.
//!
//! Components never share tables: each owns the tables it declares (the notary its unspent
//! set, each node its accounts and tokens keyed by node id, the ABS its ledger). One
//! [`WriteBatch`] may touch several components' tables: that is how a payment's notary spend,
//! the payer's and the payee's node records and the idempotency record commit atomically in
//! one process. When nodes become separate processes, each gets its own database and the
//! batch splits along component lines (see `docs/ARCHITECTURE.md`).
//!
//! Group commit: callers hand batches to one committer thread, which drains up to
//! [`COMMIT_JOBS_MAX`] waiting batches into a single redb write transaction and one fsync, then
//! answers every caller. Nobody is answered before the fsync.

use crossbeam_channel::{bounded, Receiver, Sender};
use dtenge_core::{Error, ErrorCode, Result};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Most batches folded into one write transaction.
pub const COMMIT_JOBS_MAX: usize = 1_024;
/// Most batches waiting for the committer; callers block beyond it (back-pressure).
pub const COMMIT_QUEUE_MAX: usize = 8_192;

/// A named table. Keys and values are bytes; components choose their encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table(pub &'static str);

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

#[derive(Debug)]
enum Op {
    Put { table: Table, key: Vec<u8>, value: Vec<u8> },
    Delete { table: Table, key: Vec<u8> },
}

/// Writes that commit together or not at all.
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { table, key: key.into(), value: value.into() });
    }
    /// Put a value encoded with [`encode`].
    pub fn put_value<T: Serialize>(
        &mut self,
        table: Table,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<()> {
        let bytes = encode(value)?;
        self.put(table, key, bytes);
        Ok(())
    }
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { table, key: key.into() });
    }
    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Encode a stored value (bincode).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value)
        .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("encode: {e}")))
}

/// Decode a stored value (bincode).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes)
        .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("decode: {e}")))
}

fn storage_error(context: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("{context}: {e}"))
}

struct Job {
    batch: WriteBatch,
    reply: Sender<Result<()>>,
}

/// The durable store.
pub struct Store {
    db: Arc<Database>,
    jobs: Option<Sender<Job>>,
    committer: Option<JoinHandle<()>>,
}

impl Store {
    /// Open (or create) the database at `path` and make sure `tables` exist.
    pub fn open(path: &Path, tables: &[Table]) -> Result<Store> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| storage_error("create data dir", e))?;
        }
        let db = Database::create(path).map_err(|e| storage_error("open database", e))?;
        let txn = db.begin_write().map_err(|e| storage_error("begin", e))?;
        for table in tables {
            txn.open_table(table.definition()).map_err(|e| storage_error("create table", e))?;
        }
        txn.commit().map_err(|e| storage_error("commit", e))?;
        let db = Arc::new(db);
        let (jobs, queue) = bounded::<Job>(COMMIT_QUEUE_MAX);
        let committer_db = db.clone();
        let committer = std::thread::Builder::new()
            .name("dtenge-committer".into())
            .spawn(move || run_committer(&committer_db, &queue))
            .map_err(|e| storage_error("spawn committer", e))?;
        Ok(Store { db, jobs: Some(jobs), committer: Some(committer) })
    }

    /// Commit a batch durably. Returns after the fsync that covers it.
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (reply, answer) = bounded(1);
        let jobs = self.jobs.as_ref().ok_or_else(|| storage_error("commit", "store closed"))?;
        jobs.send(Job { batch, reply }).map_err(|e| storage_error("commit queue", e))?;
        answer.recv().map_err(|e| storage_error("commit reply", e))?
    }

    /// Every key and value of a table, in key order. Used at start-up to rebuild state.
    pub fn scan(&self, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(|e| storage_error("begin read", e))?;
        let t = txn.open_table(table.definition()).map_err(|e| storage_error("open table", e))?;
        let mut rows = Vec::new();
        for row in t.iter().map_err(|e| storage_error("scan", e))? {
            let (k, v) = row.map_err(|e| storage_error("scan", e))?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }

    /// Every key and decoded value of a table.
    pub fn scan_values<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(Vec<u8>, T)>> {
        self.scan(table)?
            .into_iter()
            .map(|(k, v)| Ok((k, decode(&v)?)))
            .collect()
    }

    /// One value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(|e| storage_error("begin read", e))?;
        let t = txn.open_table(table.definition()).map_err(|e| storage_error("open table", e))?;
        let value = t.get(key).map_err(|e| storage_error("get", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue ends the committer after it has committed what it holds.
        self.jobs.take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

fn run_committer(db: &Database, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = Vec::with_capacity(64);
        jobs.push(first);
        while jobs.len() < COMMIT_JOBS_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let outcome = write_all(db, &jobs);
        for job in jobs {
            let _ = job.reply.send(outcome.clone());
        }
    }
}

fn write_all(db: &Database, jobs: &[Job]) -> Result<()> {
    let txn = db.begin_write().map_err(|e| storage_error("begin write", e))?;
    for job in jobs {
        for op in &job.batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    let mut t = txn
                        .open_table(table.definition())
                        .map_err(|e| storage_error("open table", e))?;
                    t.insert(key.as_slice(), value.as_slice())
                        .map_err(|e| storage_error("insert", e))?;
                }
                Op::Delete { table, key } => {
                    let mut t = txn
                        .open_table(table.definition())
                        .map_err(|e| storage_error("open table", e))?;
                    t.remove(key.as_slice()).map_err(|e| storage_error("remove", e))?;
                }
            }
        }
    }
    txn.commit().map_err(|e| storage_error("commit", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table("t");

    #[test]
    fn commits_survive_reopen_and_batches_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let store = Store::open(&path, &[T]).unwrap();
            let mut b = WriteBatch::new();
            b.put(T, b"a".to_vec(), b"1".to_vec());
            b.put(T, b"b".to_vec(), b"2".to_vec());
            store.commit(b).unwrap();
            let mut b = WriteBatch::new();
            b.delete(T, b"a".to_vec());
            b.put(Table("missing"), b"x".to_vec(), b"y".to_vec());
            b.put(T, b"c".to_vec(), b"3".to_vec());
            // Writing to an undeclared table is fine in redb (it creates it); all commit.
            store.commit(b).unwrap();
        }
        let store = Store::open(&path, &[T]).unwrap();
        let rows = store.scan(T).unwrap();
        assert_eq!(rows, vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
    }

    #[test]
    fn concurrent_commits_are_grouped_and_all_answered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db.redb"), &[T]).unwrap());
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        let mut b = WriteBatch::new();
                        b.put(T, [t.to_be_bytes(), i.to_be_bytes()].concat(), vec![1]);
                        store.commit(b).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.scan(T).unwrap().len(), 400);
    }
}
