//! Durable storage: one embedded [fjall](https://docs.rs/fjall) database per platform, written
//! only through fsync'd group commits.
//!
//! Why fjall: `tools/storage-choice` measured the ledger's write pattern (every commit durable)
//! on redb 4.5, fjall 3.1 and SQLite. With batched commits fjall was 3-9x faster than redb in
//! every run (one run: about 35.6k vs 5.9k payments/s at 64 payments per commit, and 59.6k vs
//! 10.3k at 1024), and its database was smaller on disk (165 vs 415 bytes per token). The cost:
//! opening replays the journal (about 2 s after the benchmark's run), because fjall doesn't
//! flush memtables when it closes.
//!
//! Components never share tables: each owns the tables it declares (the notary its unspent
//! set, each node its accounts and tokens keyed by node id, the ABS its ledger). One
//! [`WriteBatch`] may touch several components' tables: that is how a payment's notary spend,
//! the payer's and the payee's node records and the idempotency record commit atomically in
//! one process. When nodes become separate processes, each gets its own
//! database and the batch splits along component lines (see `docs/ARCHITECTURE.md`).
//!
//! Group commit: callers hand batches to one committer thread. It drains up to
//! [`COMMIT_JOBS_MAX`] waiting batches into one group. The group's log records (see
//! [`LogTable`]) go to the store's own journal of log rows as one frame, fsynced. Its keyed
//! writes, when they are small, go in the same frame and then to fjall without an fsync of
//! fjall's, to be redone from the journal after a crash; larger ones go to fjall as one atomic
//! write batch, fsynced (`PersistMode::SyncAll`). Either way fjall gets the frame's number with
//! them, so that recovery knows what to redo, or drops a frame whose keyed half never became
//! durable (see [`journal`]). Then it answers every caller. The writes become visible to
//! readers only when they are durable, and nobody is answered before. So a group commit, a
//! payment's or an answer's with its idempotency key, is one write and one `fdatasync`.
//!
//! A [`Table`] is a fjall keyspace. [`Store::open`] creates the declared ones. A batch may also
//! write to a table that was not declared: the committer creates that keyspace when it first
//! writes to it.
//! Reading a table that was never created gives no rows. Fjall limits keys to 1..=65,535 bytes
//! and values to `u32::MAX` bytes. [`Store::commit`] rejects a batch that breaks these limits
//! before it reaches the committer.

use dtenge_core::{Error, ErrorCode, Result};
use dtenge_sync::{oneshot, Queue};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;

pub mod checkpoint;
mod journal;
mod log;
pub mod retention;
pub mod sim;
pub use checkpoint::Checkpointed;
pub use log::{ArchiveLog, LogTable, LOG_ROW_BYTES_MAX};
pub use sim::{CrashMode, DiskStats, SimDisk};

/// Most batches folded into one write transaction.
pub const COMMIT_JOBS_MAX: usize = 1_024;
/// Most batches waiting for the committer; callers block beyond it (back-pressure).
pub const COMMIT_QUEUE_MAX: usize = 8_192;
/// Most group commits whose keyed writes fjall holds without an fsync (they are redone from the
/// journal after a crash: see [`journal`], "Keyed writes redone from the journal"); then the
/// committer has fjall persist them. Bounds what a start redoes and how long a segment waits.
pub const REDO_FRAMES_UNSYNCED_MAX: u64 = 256;
/// Most bytes of keyed writes fjall holds without an fsync, whatever the groups: the
/// persist that follows writes them all, and the next group waits for it. Why a bound in
/// bytes too: since the archives are keyed rows (issue 20), a group of a bank's payments
/// carries about 2 KB of keyed writes per payment, and 256 groups of them made a persist of
/// tens of MB, a stall of the next commit on this machine's disk.
pub const REDO_BYTES_UNSYNCED_MAX: usize = 8 << 20;
/// Log rows [`Store::move_log`] moves per commit (a row folds a group commit's records of
/// one table, at most [`LOG_ROW_BYTES_MAX`] bytes).
pub const LOG_MOVE_ROWS_PER_COMMIT: usize = 16;

/// Fjall's background threads (memtable flushes and compactions). One: with two or more,
/// fjall 3.1's worker 0 hands every compaction request back to the queue and takes it again,
/// a busy loop that burned about 10% of the CPU in `dtenge bench` (flume send/recv in the
/// profile), and this machine has two cores for everything.
const FJALL_WORKER_THREADS: usize = 1;
/// Largest memtable per table before fjall flushes it to a sorted file. Fjall's default is
/// 64 MiB; every commit inserts into these skiplists on the one committer thread, and a smaller
/// one keeps the search short and in cache (see `docs/ARCHITECTURE.md`, "Storage").
const MEMTABLE_BYTES_MAX: u64 = 4 << 20;
// No compression, neither of table blocks nor of the journal: what the tables hold is mostly
// hashes, keys and signatures, which do not compress. `perf` showed lz4 at 2.5% of the CPU of
// `dtenge bench` in table blocks, and again at 3.3% (plus as much zeroing fresh pages for its
// output) in the journal, which compresses every value of 4 KiB or more: every log row.
/// Longest key fjall accepts, in bytes (keys must also be non-empty).
const KEY_BYTES_MAX: usize = u16::MAX as usize;
/// Longest value fjall accepts, in bytes.
const VALUE_BYTES_MAX: u64 = u32::MAX as u64;
/// Longest keyspace name fjall accepts, in bytes.
const TABLE_NAME_BYTES_MAX: usize = 255;
/// The store's own keyed table: the number of the last journal frame whose group also wrote
/// to fjall (see [`journal`], "Atomicity with fjall").
const JOURNAL_MARK_TABLE: Table = Table("store_journal_mark");
const JOURNAL_MARK_KEY: &[u8] = b"frame";

/// A named table. Keys and values are bytes; components choose their encodings.
///
/// The name must be 1 to 255 characters long. Allowed characters are ASCII letters, digits,
/// `_`, `-`, `.`, `#` and `$`, as fjall's keyspace names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table(pub &'static str);

impl Table {
    fn check(self) -> Result<()> {
        Table::check_name(self.0)
    }

    fn check_name(name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= TABLE_NAME_BYTES_MAX
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.#$".contains(&b));
        if valid {
            Ok(())
        } else {
            Err(storage_error(
                "table",
                format!("invalid table name {name:?}: use 1-{TABLE_NAME_BYTES_MAX} ASCII letters, digits or _-.#$"),
            ))
        }
    }
}

#[derive(Debug)]
enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    /// A record appended to a log table; the committer folds it into a row (see [`LogTable`]).
    Record {
        table: Table,
        record: Vec<u8>,
        /// The table is an [`ArchiveLog`]: its rows are written but never indexed.
        archived: bool,
    },
    /// Delete a log table's rows numbered below `before`.
    TruncateLog {
        table: Table,
        before: u64,
    },
    /// Delete a log table's rows written by earlier group commits: the rows of the group that
    /// commits this batch stay.
    TruncateLogHere {
        table: Table,
    },
}

impl Op {
    fn table(&self) -> Table {
        match self {
            Op::Put { table, .. }
            | Op::Delete { table, .. }
            | Op::Record { table, .. }
            | Op::TruncateLog { table, .. }
            | Op::TruncateLogHere { table } => *table,
        }
    }

    /// Checks the limits fjall enforces with a panic, so that a bad batch fails alone.
    fn check(&self) -> Result<()> {
        self.table().check()?;
        let (table, key, value) = match self {
            Op::Put { table, key, value } => (table, Some(key), value),
            Op::Delete { table, key } => (table, Some(key), &Vec::new()),
            // A record is folded into a row whose key the committer assigns.
            Op::Record { table, record, .. } => (table, None, record),
            Op::TruncateLog { .. } | Op::TruncateLogHere { .. } => return Ok(()),
        };
        if let Some(key) = key {
            if key.is_empty() || key.len() > KEY_BYTES_MAX {
                return Err(storage_error(
                    "commit",
                    format!("key of {} bytes in table {}: keys must be 1-{KEY_BYTES_MAX} bytes", key.len(), table.0),
                ));
            }
        }
        let value_bytes_max = if key.is_some() { VALUE_BYTES_MAX } else { log::RECORD_BYTES_MAX };
        if value.len() as u64 > value_bytes_max {
            return Err(storage_error(
                "commit",
                format!("value of {} bytes in table {}: at most {value_bytes_max} bytes", value.len(), table.0),
            ));
        }
        Ok(())
    }
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
    pub fn put_value<T: Serialize>(&mut self, table: Table, key: impl Into<Vec<u8>>, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.put(table, key, bytes);
        Ok(())
    }
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { table, key: key.into() });
    }
    /// Append a record to a log table (see [`LogTable`]).
    pub fn record(&mut self, table: LogTable, record: impl Into<Vec<u8>>) {
        self.ops.push(Op::Record { table: table.table(), record: record.into(), archived: false });
    }
    /// Append a record to an archive (see [`ArchiveLog`]).
    pub fn archive(&mut self, table: ArchiveLog, record: impl Into<Vec<u8>>) {
        self.ops.push(Op::Record { table: table.table(), record: record.into(), archived: true });
    }
    /// Append a record encoded with [`encode`] to an archive.
    pub fn archive_value<T: Serialize>(&mut self, table: ArchiveLog, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.archive(table, bytes);
        Ok(())
    }
    /// Delete the rows of a log table numbered below `before` (see [`Store::log_next`]).
    pub fn truncate_log(&mut self, table: LogTable, before: u64) {
        self.ops.push(Op::TruncateLog { table: table.table(), before });
    }
    /// Delete the rows of a log table that earlier group commits wrote: what this batch's group
    /// writes to it stays (every row of the table, when the group writes none). For a log
    /// whose records since some point tell its whole state: the batch writes that state again
    /// and drops the rest, without knowing the row numbers its records get.
    pub fn truncate_log_here(&mut self, table: LogTable) {
        self.ops.push(Op::TruncateLogHere { table: table.table() });
    }
    /// Append a record encoded with [`encode`].
    pub fn record_value<T: Serialize>(&mut self, table: LogTable, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.record(table, bytes);
        Ok(())
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
    bincode::serialize(value).map_err(|e| Error::new(ErrorCode::StorageFailure, format!("encode: {e}")))
}

/// Decode a stored value (bincode).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::new(ErrorCode::StorageFailure, format!("decode: {e}")))
}

fn storage_error(context: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("{context}: {e}"))
}

struct Job {
    batch: WriteBatch,
    reply: oneshot::Sender<Result<()>>,
}

/// The database and the keyspace handles opened so far, shared by readers and the committer.
struct Shared {
    db: Database,
    keyspaces: RwLock<HashMap<&'static str, Keyspace>>,
    /// Set by the first failed commit; every later commit is refused.
    failed: std::sync::OnceLock<String>,
    /// The next row of each log table; the committer takes them, [`Store::log_next`] reads them.
    sequences: parking_lot::Mutex<log::Sequences>,
    /// The log tables' rows (see [`journal`]).
    journal: journal::Journal,
}

impl Shared {
    /// The key of a log table's last row (or of the row before its truncation point), to
    /// continue its sequence.
    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>> {
        let next = self.journal.next_row(table);
        Ok(next.checked_sub(1).map(|last| last.to_be_bytes().to_vec()))
    }
}

impl Shared {
    /// The keyspace behind `table`. It is created if `create` is set. Otherwise `None` means
    /// that the table was never created.
    fn keyspace(&self, table: Table, create: bool) -> Result<Option<Keyspace>> {
        let cached = self.keyspaces.read().unwrap_or_else(PoisonError::into_inner).get(table.0).cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        table.check()?;
        if !create && !self.db.keyspace_exists(table.0) {
            return Ok(None);
        }
        let keyspace = self
            .db
            .keyspace(table.0, keyspace_options)
            .map_err(|e| storage_error(&format!("open table {}", table.0), e))?;
        self.keyspaces.write().unwrap_or_else(PoisonError::into_inner).insert(table.0, keyspace.clone());
        Ok(Some(keyspace))
    }
}

/// How the store's tables are created (see [`MEMTABLE_BYTES_MAX`], and the note on compression).
fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES_MAX)
        .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
}

/// A commit handed to the committer: [`PendingCommit::wait`] for its outcome.
#[must_use = "a commit is durable only once wait() returns Ok"]
pub struct PendingCommit(Pending);

enum Pending {
    Ready(Result<()>),
    Waiting(oneshot::Receiver<Result<()>>),
}

impl PendingCommit {
    /// Block until the batch is durable (or failed).
    pub fn wait(self) -> Result<()> {
        match self.0 {
            Pending::Ready(outcome) => outcome,
            Pending::Waiting(answer) => answer.recv().map_err(|e| storage_error("commit reply", e))?,
        }
    }

    /// [`PendingCommit::wait`] for an async caller: the task sleeps until the committer's
    /// answer wakes it, holding no thread (an HTTP handler need not hop to a blocking thread
    /// to wait for an fsync).
    pub async fn durable(self) -> Result<()> {
        match self.0 {
            Pending::Ready(outcome) => outcome,
            Pending::Waiting(answer) => answer.await.map_err(|e| storage_error("commit reply", e))?,
        }
    }
}

/// The durable store: fjall and the journal of log rows on a real disk, or a [`SimDisk`]
/// under the simulator.
pub struct Store {
    engine: Engine,
}

enum Engine {
    Fjall(FjallEngine),
    Simulated(sim::SimEngine),
}

struct FjallEngine {
    shared: Arc<Shared>,
    /// Batches handed to the committer (closed on drop: the committer then ends). Its waits
    /// park at once (`dtenge-sync`): a committer or a caller waiting for an fsync must not
    /// spin and yield the cores away.
    jobs: Arc<Queue<Job>>,
    committer: Option<JoinHandle<()>>,
}

impl Store {
    /// Open (or create) the database in the directory `path` and make sure `tables` exist.
    ///
    /// `path` is the directory of the fjall database. Its name can be anything, `dtenge.db`
    /// for example.
    pub fn open(path: &Path, tables: &[Table]) -> Result<Store> {
        std::fs::create_dir_all(path).map_err(|e| storage_error("create data dir", e))?;
        let db = Database::builder(path)
            .worker_threads(FJALL_WORKER_THREADS)
            .journal_compression(fjall::CompressionType::None)
            .open()
            .map_err(|e| storage_error("open database", e))?;
        // What fjall recovered may have been only in the OS's buffers (keyed writes it took
        // without an fsync): durable from here, so that its mark says what the journal need
        // not redo.
        db.persist(PersistMode::SyncAll).map_err(|e| storage_error("persist recovered database", e))?;
        let mark_keyspace = db
            .keyspace(JOURNAL_MARK_TABLE.0, KeyspaceCreateOptions::default)
            .map_err(|e| storage_error("open journal mark", e))?;
        let mark = match mark_keyspace.get(JOURNAL_MARK_KEY).map_err(|e| storage_error("read journal mark", e))? {
            Some(bytes) => Some(u64::from_le_bytes(
                bytes.as_ref().try_into().map_err(|_| storage_error("journal mark", "not 8 bytes"))?,
            )),
            None => None,
        };
        let journal = journal::Journal::open(path, mark)?;
        if let Some((frame, redo)) = journal.take_redo() {
            redo_keyed_writes(&db, &mark_keyspace, frame, redo)?;
            journal.set_redo_durable(frame);
        }
        let shared = Arc::new(Shared {
            db,
            keyspaces: RwLock::new(HashMap::new()),
            failed: std::sync::OnceLock::new(),
            sequences: parking_lot::Mutex::new(log::Sequences::default()),
            journal,
        });
        shared.keyspaces.write().unwrap_or_else(PoisonError::into_inner).insert(JOURNAL_MARK_TABLE.0, mark_keyspace);
        for table in tables {
            shared.keyspace(*table, true)?;
        }
        let jobs = Arc::new(Queue::new(COMMIT_QUEUE_MAX));
        let (committer_shared, queue) = (shared.clone(), jobs.clone());
        let committer = std::thread::Builder::new()
            .name("dtenge-committer".into())
            .spawn(move || {
                // A commit group grows while the committer waits its turn (`dtenge_sync::stage`).
                dtenge_sync::run_as_batch_stage();
                run_committer(&committer_shared, &queue)
            })
            .map_err(|e| storage_error("spawn committer", e))?;
        Ok(Store { engine: Engine::Fjall(FjallEngine { shared, jobs, committer: Some(committer) }) })
    }

    /// Open a store on a simulated disk, recovering what the disk holds (the simulator's
    /// restart). Commits are synchronous; `tables` need not be declared.
    pub fn open_simulated(disk: SimDisk, tables: &[Table]) -> Result<Store> {
        for table in tables {
            table.check()?;
        }
        Ok(Store { engine: Engine::Simulated(sim::SimEngine::open(disk)?) })
    }

    /// Is this a store on a [`SimDisk`] (the simulator's)? Components that keep a log short
    /// by snapshots take them far more often there, so that the simulator's crashes hit them.
    pub fn is_simulated(&self) -> bool {
        matches!(self.engine, Engine::Simulated(_))
    }

    /// Commit a batch durably. Returns after the fsync that covers it.
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        self.commit_async(batch).wait()
    }

    /// Hand a batch to the committer and return at once; [`PendingCommit::wait`] returns
    /// after the fsync that covers it. Batches commit in the order they were handed over.
    /// Lets a caller prepare its next batch while this one is written.
    pub fn commit_async(&self, batch: WriteBatch) -> PendingCommit {
        if batch.is_empty() {
            return PendingCommit(Pending::Ready(Ok(())));
        }
        if let Err(e) = batch.ops.iter().try_for_each(Op::check) {
            return PendingCommit(Pending::Ready(Err(e)));
        }
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return PendingCommit(Pending::Ready(engine.commit(batch))),
        };
        let (reply, answer) = oneshot::channel();
        match engine.jobs.push(Job { batch, reply }) {
            Ok(()) => PendingCommit(Pending::Waiting(answer)),
            Err(_) => PendingCommit(Pending::Ready(Err(storage_error("commit", "store closed")))),
        }
    }

    /// Every key and value of a table, in key order. Used at start-up to rebuild state.
    ///
    /// The rows come from one snapshot. A table that was never created has no rows.
    pub fn scan(&self, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.scan(table)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else {
            return Ok(Vec::new());
        };
        collect_rows(keyspace.iter())
    }

    /// The sequence number the next row of a log table will get: every row committed so far is
    /// below it.
    pub fn log_next(&self, table: LogTable) -> Result<u64> {
        match &self.engine {
            Engine::Fjall(engine) => {
                let shared = &engine.shared;
                shared.sequences.lock().peek(table.table(), &mut |t| shared.last_key(t))
            }
            Engine::Simulated(engine) => engine.log_next(table.table()),
        }
    }

    /// Does the table hold any row? (A table that was never created holds none.)
    pub fn has_rows(&self, table: Table) -> Result<bool> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.has_rows(table)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(false) };
        Ok(keyspace.first_key_value().is_some())
    }

    /// The rows of a table whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.scan_prefix(table, prefix)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(Vec::new()) };
        collect_rows(keyspace.prefix(prefix))
    }

    /// At most `rows_max` rows of a table whose keys start with `prefix`, from the greatest key
    /// down, after skipping the `skip` greatest: a page of the newest rows of a sequence kept
    /// under one prefix (an account's history, keyed by big-endian numbers), read without the
    /// older ones. O(skip + rows_max).
    pub fn scan_prefix_rev(
        &self,
        table: Table,
        prefix: &[u8],
        skip: usize,
        rows_max: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.scan_prefix_rev(table, prefix, skip, rows_max)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(Vec::new()) };
        let rows = collect_rows(keyspace.prefix(prefix).rev().skip(skip).take(rows_max))?;
        assert!(rows.len() <= rows_max);
        Ok(rows)
    }

    /// How many rows of a table have keys that start with `prefix`, counting at most
    /// `count_max`. O(rows counted).
    pub fn count_prefix(&self, table: Table, prefix: &[u8], count_max: usize) -> Result<usize> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => {
                return Ok(engine.scan_prefix(table, prefix).len().min(count_max));
            }
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(0) };
        let mut count = 0usize;
        for row in keyspace.prefix(prefix).take(count_max) {
            row.key().map_err(|e| storage_error("count", e))?;
            count += 1;
        }
        Ok(count)
    }

    /// The rows of a table with keys from `start` (included) to `end` (excluded), in key
    /// order: a page of a table keyed by big-endian sequence numbers, read without the rest.
    pub fn scan_range(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.scan_range(table, start, end)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(Vec::new()) };
        collect_rows(keyspace.range(start.to_vec()..end.to_vec()))
    }

    /// The row with the greatest key (`None` if the table has none): where a sequence stands,
    /// read without scanning it.
    pub fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.last(table)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(None) };
        let Some(row) = keyspace.last_key_value() else { return Ok(None) };
        let (k, v) = row.into_inner().map_err(|e| storage_error("last", e))?;
        Ok(Some((k.to_vec(), v.to_vec())))
    }

    /// At most `rows_max` rows with keys from `start` on, in key order: a bounded walk of a
    /// table that resumes after the last key it read.
    pub fn scan_from(&self, table: Table, start: &[u8], rows_max: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.scan_from(table, start, rows_max)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(Vec::new()) };
        let rows = collect_rows(keyspace.range(start.to_vec()..).take(rows_max))?;
        assert!(rows.len() <= rows_max);
        Ok(rows)
    }

    /// The first `rows_max` rows of a table, in key order: a bounded read from the start.
    pub fn scan_first(&self, table: Table, rows_max: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.scan_first(table, rows_max)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else { return Ok(Vec::new()) };
        let rows = collect_rows(keyspace.iter().take(rows_max))?;
        assert!(rows.len() <= rows_max);
        Ok(rows)
    }

    /// Every record of a log table, in the order they were committed.
    pub fn scan_log(&self, table: LogTable) -> Result<Vec<Vec<u8>>> {
        self.scan_log_from(table, 0)
    }

    /// The records of a log table's rows numbered `from` or more (see [`Store::log_next`]), in
    /// the order they were committed.
    pub fn scan_log_from(&self, table: LogTable, from: u64) -> Result<Vec<Vec<u8>>> {
        let mut records = Vec::new();
        for row in self.log_rows_from(table, from)? {
            log::records_of(&row, &mut records)?;
        }
        Ok(records)
    }

    /// The first rows (at most `rows_max`) of a log table numbered `from` or more, each with
    /// its number and its records: a bounded read, for moving a log elsewhere a piece at a
    /// time (truncating it up to the last row moved in the same commit).
    pub fn log_rows(&self, table: LogTable, from: u64, rows_max: usize) -> Result<Vec<(u64, Vec<Vec<u8>>)>> {
        let rows = match &self.engine {
            Engine::Fjall(engine) => engine.shared.journal.rows_from_max(table.table(), from, rows_max)?,
            Engine::Simulated(engine) => engine.log_rows_numbered(table.table(), from, rows_max),
        };
        assert!(rows.len() <= rows_max, "a bounded read");
        rows.into_iter()
            .map(|(number, row)| {
                let mut records = Vec::new();
                log::records_of(&row, &mut records)?;
                Ok((number, records))
            })
            .collect()
    }

    /// Move every record of a log table no longer written to a keyed table, each put as the
    /// row `row_of(record)` (key, value), and empty the log; the records moved. [`LOG_MOVE_ROWS_PER_COMMIT`]
    /// rows at a time, each piece's puts and the log's truncation past it in one commit, so
    /// memory holds one piece, and a move cut short by a crash goes on from where it stopped.
    /// Why: a log that is never truncated keeps every journal segment it has rows in, and a
    /// start reads them all (issue 20 moved the archives to keyed tables).
    pub fn move_log(
        &self,
        from: LogTable,
        to: Table,
        row_of: impl Fn(&[u8]) -> Result<(Vec<u8>, Vec<u8>)>,
    ) -> Result<u64> {
        let mut moved = 0u64;
        let mut next = 0u64;
        // Bounded: every piece truncates at least one row, and the log is no longer written.
        loop {
            let rows = self.log_rows(from, next, LOG_MOVE_ROWS_PER_COMMIT)?;
            let Some(&(last, _)) = rows.last() else { return Ok(moved) };
            let mut batch = WriteBatch::new();
            for record in rows.into_iter().flat_map(|(_, records)| records) {
                let (key, value) = row_of(&record)?;
                batch.put(to, key, value);
                moved += 1;
            }
            next = last.checked_add(1).ok_or_else(|| storage_error("move log", "row numbers exhausted"))?;
            batch.truncate_log(from, next);
            self.commit(batch)?;
        }
    }

    /// Every record of an archive, in the order they were committed, handed to `record` one
    /// at a time: those of the segments the journal moved to its archive folder, then those
    /// of the live ones (see [`ArchiveLog`]). Reads one segment at a time; for audits and
    /// exports, not for running.
    pub fn for_each_archived(&self, table: ArchiveLog, mut record: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut records = Vec::new();
        let mut each_row = |_number: u64, row: &[u8]| -> Result<()> {
            records.clear();
            log::records_of(row, &mut records)?;
            records.iter().try_for_each(|r| record(r))
        };
        match &self.engine {
            Engine::Fjall(engine) => engine.shared.journal.for_each_archived(table.table(), each_row),
            Engine::Simulated(engine) => {
                engine.log_rows_from(table.table(), 0).iter().try_for_each(|row| each_row(0, row))
            }
        }
    }

    /// Every record of an archive, in order (see [`Store::for_each_archived`]): held in memory
    /// at once, so for tests and small archives.
    pub fn scan_archive(&self, table: ArchiveLog) -> Result<Vec<Vec<u8>>> {
        let mut records = Vec::new();
        self.for_each_archived(table, |record| {
            records.push(record.to_vec());
            Ok(())
        })?;
        Ok(records)
    }

    /// How many rows (groups of records) a log table holds: truncation deletes rows.
    pub fn log_row_count(&self, table: LogTable) -> Result<u64> {
        match &self.engine {
            Engine::Fjall(engine) => Ok(engine.shared.journal.row_count(table.table())),
            Engine::Simulated(engine) => Ok(engine.log_row_count(table.table())),
        }
    }

    fn log_rows_from(&self, table: LogTable, from: u64) -> Result<Vec<Vec<u8>>> {
        match &self.engine {
            Engine::Fjall(engine) => {
                Ok(engine.shared.journal.rows_from(table.table(), from)?.into_iter().map(|(_, row)| row).collect())
            }
            Engine::Simulated(engine) => Ok(engine.log_rows_from(table.table(), from)),
        }
    }

    /// Every record of a log table, decoded, in the order they were committed.
    pub fn scan_log_values<T: DeserializeOwned>(&self, table: LogTable) -> Result<Vec<T>> {
        self.scan_log(table)?.iter().map(|record| decode(record)).collect()
    }

    /// Every key and decoded value of a table.
    pub fn scan_values<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(Vec<u8>, T)>> {
        self.scan(table)?.into_iter().map(|(k, v)| Ok((k, decode(&v)?))).collect()
    }

    /// One value. A table that was never created has none.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.is_empty() {
            // Fjall can't store an empty key.
            return Ok(None);
        }
        let engine = match &self.engine {
            Engine::Fjall(engine) => engine,
            Engine::Simulated(engine) => return Ok(engine.get(table, key)),
        };
        let Some(keyspace) = engine.shared.keyspace(table, false)? else {
            return Ok(None);
        };
        let value = keyspace.get(key).map_err(|e| storage_error("get", e))?;
        Ok(value.map(|v| v.to_vec()))
    }
}

fn collect_rows(rows: impl Iterator<Item = fjall::Guard>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut collected = Vec::new();
    for row in rows {
        let (k, v) = row.into_inner().map_err(|e| storage_error("scan", e))?;
        collected.push((k.to_vec(), v.to_vec()));
    }
    Ok(collected)
}

impl Drop for FjallEngine {
    fn drop(&mut self) {
        // Closing the queue ends the committer after it has committed what it holds.
        self.jobs.close();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
        // Every commit is already synced, so this only covers the case that fjall wrote
        // something itself. Fjall 3.1 has no public call that flushes the memtables on close,
        // so the next open replays the journal.
        let _ = self.shared.db.persist(PersistMode::SyncAll);
    }
}

/// Redo, in fjall, the keyed writes of the journal's frames after fjall's mark, up to `frame`
/// (see [`journal`], "Keyed writes redone from the journal"): one atomic batch with the new
/// mark, fsynced.
fn redo_keyed_writes(db: &Database, mark_keyspace: &Keyspace, frame: u64, redo: Vec<journal::Redo>) -> Result<()> {
    let mut batch =
        fjall::OwnedWriteBatch::with_capacity(db.clone(), redo.len() + 1).durability(Some(PersistMode::SyncAll));
    let mut keyspaces: HashMap<String, Keyspace> = HashMap::new();
    for write in redo {
        let keyspace = match keyspaces.get(&write.table) {
            Some(keyspace) => keyspace.clone(),
            None => {
                Table::check_name(&write.table)?;
                let keyspace = db
                    .keyspace(&write.table, keyspace_options)
                    .map_err(|e| storage_error(&format!("open table {}", write.table), e))?;
                keyspaces.insert(write.table.clone(), keyspace.clone());
                keyspace
            }
        };
        match write.value {
            Some(value) => batch.insert(&keyspace, write.key, value),
            None => batch.remove(&keyspace, write.key),
        }
    }
    batch.insert(mark_keyspace, JOURNAL_MARK_KEY, frame.to_le_bytes());
    batch.commit().map_err(|e| storage_error("redo keyed writes", e))
}

/// What the committer keeps from one group to the next.
#[derive(Default)]
struct Committer {
    /// Groups whose keyed writes fjall holds without an fsync, and the last one's frame.
    redo_unsynced: u64,
    /// Bytes of their keyed writes (keys and values).
    redo_unsynced_bytes: usize,
    redo_frame_last: Option<u64>,
}

fn run_committer(shared: &Shared, queue: &Queue<Job>) {
    let mut jobs = Vec::with_capacity(64);
    let mut committer = Committer::default();
    while queue.take(COMMIT_JOBS_MAX, &mut jobs) {
        assert!(!jobs.is_empty() && jobs.len() <= COMMIT_JOBS_MAX, "a group holds 1 to COMMIT_JOBS_MAX batches");
        // After a failed commit nothing more is written until a restart (fail-stop): the batch
        // may be on disk or not (a failed fsync says nothing certain), so the callers, who
        // undo their in-memory spends on an error, must not be able to spend those tokens
        // again in this process. Recovery at the next start reads what the disk really holds.
        let outcome = if let Some(reason) = shared.failed.get() {
            Err(storage_error("commit", format!("an earlier commit failed ({reason}); restart the platform")))
        } else {
            // A panic in fjall must not leave callers without an answer.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_all(shared, &jobs, &mut committer)))
                    .unwrap_or_else(|_| Err(storage_error("commit", "the storage engine panicked")));
            if let Err(e) = &outcome {
                let _ = shared.failed.set(e.message.clone());
            }
            outcome
        };
        for job in jobs.drain(..) {
            let _ = job.reply.send(outcome.clone());
        }
        // After the answers: nobody waits for this fsync.
        let due = committer.redo_unsynced >= REDO_FRAMES_UNSYNCED_MAX
            || committer.redo_unsynced_bytes >= REDO_BYTES_UNSYNCED_MAX;
        if due && shared.failed.get().is_none() {
            if let Err(e) = persist_redone(shared, &mut committer) {
                let _ = shared.failed.set(e.message);
            }
        }
    }
}

/// Have fjall persist the keyed writes it took without an fsync; the journal may then drop the
/// segments kept to redo them.
fn persist_redone(shared: &Shared, committer: &mut Committer) -> Result<()> {
    shared.db.persist(PersistMode::SyncAll).map_err(|e| storage_error("persist keyed writes", e))?;
    if let Some(frame) = committer.redo_frame_last {
        shared.journal.set_redo_durable(frame);
    }
    committer.redo_unsynced = 0;
    committer.redo_unsynced_bytes = 0;
    Ok(())
}

/// Writes every job's log records as one journal frame and fsyncs it, then every keyed write
/// in one atomic fjall batch: redone from the frame after a crash when the keyed writes are
/// small (they go in the frame too, and fjall takes them without an fsync), fsynced otherwise
/// (see [`journal`], "Atomicity with fjall" and "Keyed writes redone from the journal").
/// Readers see nothing before the group is durable. Log records are folded into one row per
/// log table (see [`LogTable`]).
fn write_all(shared: &Shared, jobs: &[Job], committer: &mut Committer) -> Result<()> {
    let ops: usize = jobs.iter().map(|job| job.batch.len()).sum();
    let keyed_bytes: usize = jobs
        .iter()
        .flat_map(|job| job.batch.ops.iter())
        .map(|op| match op {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
            Op::Record { .. } | Op::TruncateLog { .. } | Op::TruncateLogHere { .. } => 0,
        })
        .sum();
    let redo = keyed_bytes <= journal::REDO_BYTES_MAX;
    let durability = if redo { PersistMode::Buffer } else { PersistMode::SyncAll };
    let mut batch = fjall::OwnedWriteBatch::with_capacity(shared.db.clone(), ops).durability(Some(durability));
    let mut keyed = false;
    let mut entries = Vec::new();
    // The tables of this group's archived records (see `ArchiveLog`): their rows are written
    // as archived entries.
    let mut archives: Vec<Table> = Vec::new();
    // The handles of this group's tables, looked up once per table.
    let mut keyspaces: HashMap<&'static str, Keyspace> = HashMap::new();
    let mut keyspace_of = |table: Table| -> Result<Keyspace> {
        if let Some(keyspace) = keyspaces.get(table.0) {
            return Ok(keyspace.clone());
        }
        let keyspace = shared.keyspace(table, true)?.ok_or_else(|| storage_error("open table", table.0))?;
        keyspaces.insert(table.0, keyspace.clone());
        Ok(keyspace)
    };
    let all_ops = || jobs.iter().flat_map(|job| job.batch.ops.iter());
    for op in all_ops() {
        match op {
            Op::Put { table, key, value } => {
                keyed = true;
                batch.insert(&keyspace_of(*table)?, key.as_slice(), value.as_slice());
                if redo {
                    entries.push(journal::Entry::Put { table: *table, key, value });
                }
            }
            Op::Delete { table, key } => {
                keyed = true;
                batch.remove(&keyspace_of(*table)?, key.as_slice());
                if redo {
                    entries.push(journal::Entry::Delete { table: *table, key });
                }
            }
            Op::Record { table, archived, .. } => {
                if *archived && !archives.contains(table) {
                    archives.push(*table);
                }
            }
            Op::TruncateLog { table, before } => {
                entries.push(journal::Entry::Truncate { table: *table, before: *before })
            }
            Op::TruncateLogHere { .. } => {}
        }
    }
    // Held until the batch is written, so that `log_next` never reads a number this group
    // takes but has not written yet.
    let mut sequences = shared.sequences.lock();
    let rows = sequences.fold(all_ops(), |table| shared.last_key(table))?;
    for (table, before) in log::truncations_here(all_ops(), &rows, &mut sequences, |t| shared.last_key(t))? {
        entries.push(journal::Entry::Truncate { table, before });
    }
    for (table, key, bytes) in rows {
        let row = u64::from_be_bytes(key.as_slice().try_into().map_err(|_| storage_error("commit", "row key"))?);
        if archives.contains(&table) {
            entries.push(journal::Entry::Archived { table, row, bytes });
        } else {
            entries.push(journal::Entry::Row { table, row, bytes });
        }
    }
    // A group with keyed writes to redo always has a frame for them.
    let fsynced_by_fjall = keyed && !redo;
    let written = if entries.is_empty() { None } else { Some(shared.journal.write(&entries, fsynced_by_fjall)?) };
    if keyed {
        if let Some(written) = &written {
            batch.insert(&keyspace_of(JOURNAL_MARK_TABLE)?, JOURNAL_MARK_KEY, written.number.to_le_bytes());
        }
        batch.commit().map_err(|e| storage_error("commit", e))?;
    }
    let Some(written) = written else { return Ok(()) };
    let frame = written.number;
    shared.journal.publish(written);
    if fsynced_by_fjall {
        // Fjall's fsync made every keyed write it took before durable too.
        committer.redo_unsynced = 0;
        committer.redo_unsynced_bytes = 0;
        shared.journal.set_redo_durable(frame);
    } else if keyed {
        committer.redo_unsynced += 1;
        committer.redo_unsynced_bytes += keyed_bytes;
        committer.redo_frame_last = Some(frame);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table("t");
    const U: Table = Table("u");

    #[test]
    fn commits_survive_reopen_and_batches_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
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
            // Writing to an undeclared table creates it; everything commits.
            store.commit(b).unwrap();
            assert_eq!(store.get(Table("missing"), b"x").unwrap(), Some(b"y".to_vec()));
            // A batch that breaks fjall's limits fails alone, before it reaches the committer.
            let mut b = WriteBatch::new();
            b.put(T, b"d".to_vec(), b"4".to_vec());
            b.put(T, Vec::new(), b"empty key".to_vec());
            let e = store.commit(b).unwrap_err();
            assert_eq!(e.code, ErrorCode::StorageFailure);
            let mut b = WriteBatch::new();
            b.put(Table("no spaces"), b"k".to_vec(), b"v".to_vec());
            assert_eq!(store.commit(b).unwrap_err().code, ErrorCode::StorageFailure);
            // Tables never written read as empty.
            assert!(store.scan(Table("never")).unwrap().is_empty());
            assert_eq!(store.get(Table("never"), b"k").unwrap(), None);
        }
        let store = Store::open(&path, &[T]).unwrap();
        let rows = store.scan(T).unwrap();
        assert_eq!(rows, vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
        // The lazily created table survived the reopen without being declared.
        assert_eq!(store.scan(Table("missing")).unwrap(), vec![(b"x".to_vec(), b"y".to_vec())]);
    }

    /// Issue 20: an archive's records read back in order, from fjall's store after a reopen
    /// and from the simulated disk alike, and never as a log.
    #[test]
    fn archived_records_read_back_in_order() {
        const ARCHIVE: ArchiveLog = ArchiveLog("archive");
        let dir = tempfile::tempdir().unwrap();
        let records = |count: u8| (0..count).map(|n| vec![n; 3]).collect::<Vec<_>>();
        let simulated = Store::open_simulated(SimDisk::new(), &[ARCHIVE.table()]).unwrap();
        {
            let fjall = Store::open(&dir.path().join("db"), &[ARCHIVE.table()]).unwrap();
            for store in [&fjall, &simulated] {
                for n in 0..5u8 {
                    let mut b = WriteBatch::new();
                    b.archive(ARCHIVE, vec![n; 3]);
                    b.put(T, vec![n], vec![n]);
                    store.commit(b).unwrap();
                }
                assert_eq!(store.scan_archive(ARCHIVE).unwrap(), records(5));
            }
        }
        let fjall = Store::open(&dir.path().join("db"), &[ARCHIVE.table()]).unwrap();
        let mut b = WriteBatch::new();
        b.archive_value(ARCHIVE, &[5u8; 3]).unwrap();
        fjall.commit(b).unwrap();
        let decoded: Vec<[u8; 3]> = fjall.scan_archive(ARCHIVE).unwrap().iter().map(|r| decode(r).unwrap()).collect();
        assert_eq!(decoded.last(), Some(&[5u8; 3]));
        assert_eq!(fjall.scan_archive(ARCHIVE).unwrap()[..5], records(5));
        assert_eq!(fjall.log_row_count(LogTable(ARCHIVE.0)).unwrap(), 0, "not indexed as a log");
    }

    /// Issue 20: an account's newest history lines are read as a page from the greatest key
    /// down, without the rest, by fjall and by the simulated disk alike.
    #[test]
    fn a_prefix_reads_newest_first_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let fjall = Store::open(&dir.path().join("db"), &[T]).unwrap();
        let simulated = Store::open_simulated(SimDisk::new(), &[T]).unwrap();
        for store in [&fjall, &simulated] {
            let mut b = WriteBatch::new();
            for n in 0u64..10 {
                let mut key = b"a\0".to_vec();
                key.extend_from_slice(&n.to_be_bytes());
                b.put(T, key, n.to_le_bytes().to_vec());
            }
            b.put(T, b"b\0x".to_vec(), b"other".to_vec());
            b.put(T, b"a".to_vec(), b"shorter".to_vec());
            store.commit(b).unwrap();
            let numbers = |rows: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<u8> { rows.iter().map(|(_, v)| v[0]).collect() };
            assert_eq!(numbers(store.scan_prefix_rev(T, b"a\0", 0, 3).unwrap()), vec![9, 8, 7]);
            assert_eq!(numbers(store.scan_prefix_rev(T, b"a\0", 8, 5).unwrap()), vec![1, 0]);
            assert!(store.scan_prefix_rev(T, b"a\0", 10, 5).unwrap().is_empty());
            assert!(store.scan_prefix_rev(T, b"c\0", 0, 5).unwrap().is_empty());
            assert_eq!(store.count_prefix(T, b"a\0", 100).unwrap(), 10);
            assert_eq!(store.count_prefix(T, b"a\0", 4).unwrap(), 4, "counted up to the bound");
            assert_eq!(store.count_prefix(T, b"c", 100).unwrap(), 0);
            assert_eq!(store.count_prefix(Table("never"), b"a", 100).unwrap(), 0);
        }
    }

    #[test]
    fn reopen_reads_back_identical_rows_across_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dtenge.db");
        let mut expected_t = Vec::new();
        let mut expected_u = Vec::new();
        {
            let store = Store::open(&path, &[T, U]).unwrap();
            let mut b = WriteBatch::new();
            for i in (0..300u32).rev() {
                let key = i.to_be_bytes().to_vec();
                b.put(T, key.clone(), vec![i as u8; (i % 7) as usize]);
                expected_t.push((key.clone(), vec![i as u8; (i % 7) as usize]));
                let value = encode(&(i, format!("row {i}"))).unwrap();
                b.put_value(U, key.clone(), &(i, format!("row {i}"))).unwrap();
                expected_u.push((key, value));
            }
            store.commit(b).unwrap();
            assert_eq!(store.get(U, &7u32.to_be_bytes()).unwrap(), Some(expected_u[292].1.clone()));
        }
        expected_t.sort();
        expected_u.sort();
        let store = Store::open(&path, &[T, U]).unwrap();
        assert_eq!(store.scan(T).unwrap(), expected_t);
        assert_eq!(store.scan(U).unwrap(), expected_u);
        let decoded: Vec<(Vec<u8>, (u32, String))> = store.scan_values(U).unwrap();
        assert_eq!(decoded[5].1, (5, "row 5".to_string()));
    }

    const LOG: LogTable = LogTable("log");

    fn log_round_trip(open: impl Fn() -> Store) {
        {
            let store = open();
            let mut b = WriteBatch::new();
            b.record(LOG, b"first".to_vec());
            b.put(T, b"k".to_vec(), b"v".to_vec());
            b.record_value(LOG, &(7u32, "second".to_string())).unwrap();
            store.commit(b).unwrap();
            let mut b = WriteBatch::new();
            b.record(LOG, Vec::new());
            store.commit(b).unwrap();
            assert_eq!(store.scan_log(LOG).unwrap().len(), 3);
        }
        // After reopening, the records read back in order and the sequence continues.
        let store = open();
        let mut b = WriteBatch::new();
        b.record(LOG, b"fourth".to_vec());
        store.commit(b).unwrap();
        let records = store.scan_log(LOG).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0], b"first".to_vec());
        assert_eq!(decode::<(u32, String)>(&records[1]).unwrap(), (7, "second".to_string()));
        assert!(records[2].is_empty());
        assert_eq!(records[3], b"fourth".to_vec());
        // One row per commit, numbered on from 0.
        assert_eq!(store.log_row_count(LOG).unwrap(), 3);
        assert_eq!(store.log_next(LOG).unwrap(), 3);
        assert_eq!(store.scan_log_from(LOG, 2).unwrap(), vec![b"fourth".to_vec()]);
        assert_eq!(store.get(T, b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// Copy a closed store's directory, all of it or all but the journal of log rows.
    fn copy_dir(from: &Path, to: &Path, journal: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() == journal::FOLDER && !journal {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &to.join(entry.file_name()), true);
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn keyed_writes_fjall_lost_are_redone_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (path, fjall_before, crashed) =
            (dir.path().join("db"), dir.path().join("before"), dir.path().join("crashed"));
        {
            let store = Store::open(&path, &[T]).unwrap();
            let mut b = WriteBatch::new();
            b.put(T, b"kept".to_vec(), b"1".to_vec());
            b.put(T, b"deleted".to_vec(), b"2".to_vec());
            b.record(LOG, b"first".to_vec());
            store.commit(b).unwrap();
        }
        // Fjall as it was then (persisted when the store closed).
        copy_dir(&path, &fjall_before, false);
        {
            let store = Store::open(&path, &[T]).unwrap();
            for n in 0..3u8 {
                let mut b = WriteBatch::new();
                b.put(T, vec![b'n', n], vec![n]);
                if n == 1 {
                    b.delete(T, b"deleted".to_vec());
                    b.put(T, b"kept".to_vec(), b"updated".to_vec());
                }
                b.record(LOG, vec![n]);
                store.commit(b).unwrap();
            }
            // A group of keyed writes only is redone too.
            let mut b = WriteBatch::new();
            b.put(T, b"alone".to_vec(), b"3".to_vec());
            store.commit(b).unwrap();
        }
        // The crash: the journal kept every acknowledged frame, fjall lost what it held
        // without an fsync (the writes since the copy).
        copy_dir(&fjall_before, &crashed, true);
        copy_dir(&path.join(journal::FOLDER), &crashed.join(journal::FOLDER), true);
        for _ in 0..2 {
            // Redone once, and a second start (nothing left to redo) reads the same.
            let store = Store::open(&crashed, &[T]).unwrap();
            assert_eq!(store.get(T, b"kept").unwrap(), Some(b"updated".to_vec()));
            assert_eq!(store.get(T, b"deleted").unwrap(), None);
            assert_eq!(store.get(T, b"alone").unwrap(), Some(b"3".to_vec()));
            for n in 0..3u8 {
                assert_eq!(store.get(T, &[b'n', n]).unwrap(), Some(vec![n]));
            }
            assert_eq!(store.scan_log(LOG).unwrap(), vec![b"first".to_vec(), vec![0], vec![1], vec![2]]);
        }
    }

    #[test]
    fn large_keyed_writes_take_fjalls_fsynced_path_beside_redone_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path, &[T]).unwrap();
        let mut b = WriteBatch::new();
        b.put(T, b"small".to_vec(), b"1".to_vec());
        b.record(LOG, b"a".to_vec());
        store.commit(b).unwrap();
        let mut b = WriteBatch::new();
        b.put(T, b"large".to_vec(), vec![7u8; journal::REDO_BYTES_MAX + 1]);
        store.commit(b).unwrap();
        drop(store);
        let store = Store::open(&path, &[T]).unwrap();
        assert_eq!(store.get(T, b"small").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(T, b"large").unwrap().map(|v| v.len()), Some(journal::REDO_BYTES_MAX + 1));
    }

    #[test]
    fn log_records_survive_reopen_in_commit_order_on_fjall() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        log_round_trip(|| Store::open(&path, &[T, LOG.table()]).unwrap());
    }

    #[test]
    fn log_records_survive_reopen_in_commit_order_on_the_simulated_disk() {
        let disk = SimDisk::new();
        log_round_trip(|| Store::open_simulated(disk.clone(), &[T]).unwrap());
    }

    fn truncation_here_round_trip(open: impl Fn() -> Store) {
        {
            let store = open();
            for n in 0..5u8 {
                let mut b = WriteBatch::new();
                b.record(LOG, vec![n]);
                store.commit(b).unwrap();
            }
            // The group's own rows stay, the earlier ones go.
            let mut b = WriteBatch::new();
            b.record(LOG, b"state".to_vec());
            b.truncate_log_here(LOG);
            b.record(LOG, b"after".to_vec());
            store.commit(b).unwrap();
            assert_eq!(store.scan_log(LOG).unwrap(), vec![b"state".to_vec(), b"after".to_vec()]);
            let mut b = WriteBatch::new();
            b.record(LOG, b"later".to_vec());
            store.commit(b).unwrap();
        }
        let store = open();
        assert_eq!(store.scan_log(LOG).unwrap(), vec![b"state".to_vec(), b"after".to_vec(), b"later".to_vec()]);
        assert_eq!(store.log_next(LOG).unwrap(), 7);
        // A group that writes no row to the table drops all of it.
        let mut b = WriteBatch::new();
        b.truncate_log_here(LOG);
        b.put(T, b"k".to_vec(), b"v".to_vec());
        store.commit(b).unwrap();
        assert!(store.scan_log(LOG).unwrap().is_empty());
    }

    #[test]
    fn truncation_here_keeps_the_groups_rows_on_fjall() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        truncation_here_round_trip(|| Store::open(&path, &[T, LOG.table()]).unwrap());
    }

    #[test]
    fn truncation_here_keeps_the_groups_rows_on_the_simulated_disk() {
        let disk = SimDisk::new();
        truncation_here_round_trip(|| Store::open_simulated(disk.clone(), &[T]).unwrap());
    }

    #[test]
    fn concurrent_log_records_keep_each_committers_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db"), &[LOG.table()]).unwrap());
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..100u32 {
                        let mut b = WriteBatch::new();
                        b.record(LOG, [t.to_be_bytes(), i.to_be_bytes()].concat());
                        store.commit(b).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let records = store.scan_log(LOG).unwrap();
        assert_eq!(records.len(), 800);
        // Each thread's records are in its commit order.
        for t in 0..8u32 {
            let mine: Vec<u32> = records
                .iter()
                .filter(|r| r[..4] == t.to_be_bytes())
                .map(|r| u32::from_be_bytes(r[4..8].try_into().unwrap()))
                .collect();
            assert_eq!(mine, (0..100).collect::<Vec<_>>());
        }
    }

    #[test]
    fn concurrent_commits_are_grouped_and_all_answered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db"), &[T]).unwrap());
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

    #[test]
    fn many_threads_committing_at_once_all_get_answers() {
        const THREADS: u32 = 64;
        const COMMITS: u32 = 20;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db"), &[T, U]).unwrap());
        let start = Arc::new(std::sync::Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut answers = 0;
                    for i in 0..COMMITS {
                        let key = [t.to_be_bytes(), i.to_be_bytes()].concat();
                        let mut b = WriteBatch::new();
                        b.put(T, key.clone(), vec![2]);
                        b.put(U, key, vec![3]);
                        store.commit(b).unwrap();
                        answers += 1;
                    }
                    answers
                })
            })
            .collect();
        let answers: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(answers, THREADS * COMMITS);
        assert_eq!(store.scan(T).unwrap().len(), (THREADS * COMMITS) as usize);
        assert_eq!(store.scan(U).unwrap().len(), (THREADS * COMMITS) as usize);
    }
}
