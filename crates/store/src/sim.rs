//! A simulated disk for the deterministic simulator (`dtenge-sim`): the same [`Store`](crate::Store)
//! interface over an in-memory journal the simulator can crash and tear.
//!
//! Why not fjall under simulation: a simulated run must replay exactly from its seed, and a
//! crash must be placed at an exact step. Fjall writes through the OS, from its own threads,
//! and recovers from whatever the OS kept. Here a commit is synchronous and the journal is a
//! byte vector, so a crash can hit before the write, in the middle of it (a torn write) or
//! after it (written but never acknowledged), and recovery can be checked against the
//! acknowledgements the simulator saw. TigerBeetle's simulator does the same with its storage.
//!
//! The journal is a sequence of records `[payload length u32 LE][SHA-256 of the payload][payload]`.
//! Recovery replays records in order and stops at the first one that is short or whose
//! checksum fails: that is the torn tail, discarded. It then rewrites the journal as one
//! snapshot record, so replay stays as long as the state, not as the history.

use crate::log::Sequences;
use crate::{storage_error, Op, Table, WriteBatch};
use dtenge_core::crypto::hash_parts;
use dtenge_core::Result;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

const RECORD_HEADER_BYTES: usize = 4 + 32;
const CHECKSUM_DOMAIN: &[u8] = b"dtenge/sim-journal/v1";

/// How an armed crash hits its commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// The process dies before the record reaches the disk: the commit is lost.
    BeforeWrite,
    /// The process dies while the record is written: only its first `kept_bytes_permille`
    /// thousandths reach the disk. Recovery must discard the torn record.
    Torn { kept_bytes_permille: u16 },
    /// The record is durable but the process dies before anyone is answered.
    AfterWrite,
    /// The write fails and the process lives on (a failed fsync, a full disk); the record
    /// reached the disk or not. Like the fjall store, the simulated one then refuses every
    /// commit until it is reopened.
    FailedWrite { written: bool },
}

/// Counters of what the disk went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub commits: u64,
    pub crashes: u64,
    pub torn_records_discarded: u64,
    pub recoveries: u64,
}

#[derive(Default)]
struct DiskState {
    journal: Vec<u8>,
    /// `(commits from now, mode)`: the crash the simulator armed.
    armed: Option<(u64, CrashMode)>,
    /// Set when a crash hit: every commit fails until the store is reopened.
    crashed: bool,
    /// Set when a write failed without a crash: every commit fails until the store is reopened.
    failed: bool,
    stats: DiskStats,
}

/// The simulated disk: shared by the simulator (which arms crashes) and the store on top.
#[derive(Clone, Default)]
pub struct SimDisk(Arc<Mutex<DiskState>>);

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Crash on the `commits_from_now`-th commit from now (1 = the next one).
    pub fn arm_crash(&self, commits_from_now: u64, mode: CrashMode) {
        assert!(commits_from_now >= 1, "a crash is armed for a future commit");
        self.0.lock().armed = Some((commits_from_now, mode));
    }

    /// Clear an armed crash that has not hit.
    pub fn disarm(&self) {
        self.0.lock().armed = None;
    }

    /// Did a crash hit since the store was last opened? The process is then dead: its
    /// in-memory state is lost and it must be reopened from this disk.
    pub fn crashed(&self) -> bool {
        self.0.lock().crashed
    }

    /// Did a write fail (without a crash) since the store was last opened? The process is
    /// alive, but commits nothing more until it is restarted.
    pub fn failed(&self) -> bool {
        self.0.lock().failed
    }

    pub fn stats(&self) -> DiskStats {
        self.0.lock().stats
    }

    pub fn journal_bytes(&self) -> usize {
        self.0.lock().journal.len()
    }

    /// Replay the journal into tables, discard a torn tail, and compact the journal into one
    /// snapshot record. Called when a store opens on this disk (after a crash: the restart).
    fn recover(&self) -> Result<Tables> {
        let mut disk = self.0.lock();
        disk.crashed = false;
        disk.failed = false;
        disk.armed = None;
        disk.stats.recoveries += 1;
        let mut tables = Tables::new();
        let mut position = 0usize;
        while let Some((payload, next)) = read_record(&disk.journal, position) {
            let ops: Vec<SimOp> = crate::decode(payload)?;
            apply(&mut tables, ops);
            position = next;
        }
        if position < disk.journal.len() {
            disk.stats.torn_records_discarded += 1;
        }
        let snapshot: Vec<SimOp> = tables
            .iter()
            .flat_map(|(table, rows)| {
                rows.iter().map(|(k, v)| SimOp { table: table.clone(), key: k.clone(), value: Some(v.clone()) })
            })
            .collect();
        disk.journal.clear();
        if !snapshot.is_empty() {
            let record = encode_record(&snapshot)?;
            disk.journal.extend_from_slice(&record);
        }
        Ok(tables)
    }

    /// Write one batch as one record, unless an armed crash hits it.
    fn write(&self, ops: &[SimOp]) -> Result<()> {
        let record = encode_record(ops)?;
        let mut disk = self.0.lock();
        if disk.crashed || disk.failed {
            return Err(storage_error("commit", "the simulated process has crashed or its disk failed"));
        }
        disk.stats.commits += 1;
        let hit = match &mut disk.armed {
            Some((1, mode)) => Some(*mode),
            Some((n, _)) => {
                *n -= 1;
                None
            }
            None => None,
        };
        let Some(mode) = hit else {
            disk.journal.extend_from_slice(&record);
            return Ok(());
        };
        disk.armed = None;
        if let CrashMode::FailedWrite { .. } = mode {
            disk.failed = true;
        } else {
            disk.crashed = true;
            disk.stats.crashes += 1;
        }
        match mode {
            CrashMode::BeforeWrite | CrashMode::FailedWrite { written: false } => {}
            CrashMode::Torn { kept_bytes_permille } => {
                let kept = record.len() * usize::from(kept_bytes_permille.min(999)) / 1000;
                disk.journal.extend_from_slice(&record[..kept]);
            }
            CrashMode::AfterWrite | CrashMode::FailedWrite { written: true } => disk.journal.extend_from_slice(&record),
        }
        Err(storage_error("commit", format!("simulated crash ({mode:?})")))
    }
}

type Tables = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Where a log table's rows are kept: apart from keyed rows, as the fjall store keeps them in
/// its journal, so that a keyed table of the same name reads as empty on both.
fn log_name(table: Table) -> String {
    format!("{}#log", table.0)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SimOp {
    table: String,
    key: Vec<u8>,
    /// `None` deletes.
    value: Option<Vec<u8>>,
}

fn apply(tables: &mut Tables, ops: Vec<SimOp>) {
    for op in ops {
        let rows = tables.entry(op.table).or_default();
        match op.value {
            Some(value) => rows.insert(op.key, value),
            None => rows.remove(&op.key),
        };
    }
}

fn encode_record(ops: &[SimOp]) -> Result<Vec<u8>> {
    let payload = crate::encode(&ops)?;
    let length = u32::try_from(payload.len()).map_err(|_| storage_error("commit", "record over 4 GiB"))?;
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&length.to_le_bytes());
    record.extend_from_slice(&hash_parts(CHECKSUM_DOMAIN, &[&payload]).0);
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The payload of the record at `position` and where the next one starts; `None` at the end
/// of the journal or at a torn or corrupt record.
fn read_record(journal: &[u8], position: usize) -> Option<(&[u8], usize)> {
    let header = journal.get(position..position.checked_add(RECORD_HEADER_BYTES)?)?;
    let length = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let start = position + RECORD_HEADER_BYTES;
    let payload = journal.get(start..start.checked_add(length)?)?;
    if hash_parts(CHECKSUM_DOMAIN, &[payload]).0[..] != header[4..] {
        return None;
    }
    Some((payload, start + length))
}

/// The store engine over a [`SimDisk`]: commits are synchronous, reads come from memory.
pub(crate) struct SimEngine {
    disk: SimDisk,
    tables: RwLock<Tables>,
}

impl SimEngine {
    pub(crate) fn open(disk: SimDisk) -> Result<SimEngine> {
        let tables = disk.recover()?;
        Ok(SimEngine { disk, tables: RwLock::new(tables) })
    }

    pub(crate) fn commit(&self, batch: WriteBatch) -> Result<()> {
        // Readers see a batch only once it is on the disk, as with fjall.
        let mut tables = self.tables.write();
        // Each commit is its own group: its log records fold into rows as the fjall
        // committer folds a group's. The sequence continues from each table's last row.
        let rows = Sequences::default().fold(batch.ops.iter(), |table| {
            Ok(tables.get(&log_name(table)).and_then(|rows| rows.keys().next_back().cloned()))
        })?;
        let mut sequences = Sequences::default();
        let here = crate::log::truncations_here(batch.ops.iter(), &rows, &mut sequences, |table| {
            Ok(tables.get(&log_name(table)).and_then(|rows| rows.keys().next_back().cloned()))
        })?;
        let mut ops: Vec<SimOp> = Vec::with_capacity(batch.ops.len());
        let truncations = batch.ops.iter().filter_map(|op| match op {
            Op::TruncateLog { table, before } => Some((*table, *before)),
            _ => None,
        });
        for (table, before) in truncations.chain(here) {
            let name = log_name(table);
            let Some(rows) = tables.get(&name) else { continue };
            let below = rows.range(..before.to_be_bytes().to_vec()).map(|(key, _)| key.clone());
            ops.extend(below.map(|key| SimOp { table: name.clone(), key, value: None }));
        }
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    ops.push(SimOp { table: table.0.to_string(), key, value: Some(value) })
                }
                Op::Delete { table, key } => ops.push(SimOp { table: table.0.to_string(), key, value: None }),
                Op::Record { .. } | Op::TruncateLog { .. } | Op::TruncateLogHere { .. } => {}
            }
        }
        ops.extend(rows.into_iter().map(|(table, key, value)| SimOp {
            table: log_name(table),
            key,
            value: Some(value),
        }));
        self.disk.write(&ops)?;
        apply(&mut tables, ops);
        Ok(())
    }

    pub(crate) fn scan(&self, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        tables.get(table.0).map(|rows| rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    pub(crate) fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(table.0) else { return Vec::new() };
        rows.range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(crate) fn scan_prefix_rev(
        &self,
        table: Table,
        prefix: &[u8],
        skip: usize,
        rows_max: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(table.0) else { return Vec::new() };
        rows.range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .skip(skip)
            .take(rows_max)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(crate) fn scan_range(&self, table: Table, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(table.0) else { return Vec::new() };
        rows.range(start.to_vec()..end.to_vec()).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn last(&self, table: Table) -> Option<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        tables.get(table.0).and_then(|rows| rows.iter().next_back()).map(|(k, v)| (k.clone(), v.clone()))
    }

    pub(crate) fn scan_from(&self, table: Table, start: &[u8], rows_max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(table.0) else { return Vec::new() };
        rows.range(start.to_vec()..).take(rows_max).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn scan_first(&self, table: Table, rows_max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(table.0) else { return Vec::new() };
        rows.iter().take(rows_max).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn has_rows(&self, table: Table) -> bool {
        self.tables.read().get(table.0).is_some_and(|rows| !rows.is_empty())
    }

    pub(crate) fn log_next(&self, table: Table) -> Result<u64> {
        let tables = self.tables.read();
        let last = tables.get(&log_name(table)).and_then(|rows| rows.keys().next_back().cloned());
        Sequences::default().peek(table, &mut |_| Ok(last.clone()))
    }

    /// The rows of a log table numbered `from` or more, in order.
    pub(crate) fn log_rows_from(&self, table: Table, from: u64) -> Vec<Vec<u8>> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(&log_name(table)) else { return Vec::new() };
        rows.range(from.to_be_bytes().to_vec()..).map(|(_, row)| row.clone()).collect()
    }

    pub(crate) fn log_rows_numbered(&self, table: Table, from: u64, rows_max: usize) -> Vec<(u64, Vec<u8>)> {
        let tables = self.tables.read();
        let Some(rows) = tables.get(&log_name(table)) else { return Vec::new() };
        let number = |key: &[u8]| u64::from_be_bytes(key.try_into().expect("a log row's key is its number"));
        rows.range(from.to_be_bytes().to_vec()..).take(rows_max).map(|(key, row)| (number(key), row.clone())).collect()
    }

    pub(crate) fn log_row_count(&self, table: Table) -> u64 {
        self.tables.read().get(&log_name(table)).map_or(0, |rows| rows.len() as u64)
    }

    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Option<Vec<u8>> {
        self.tables.read().get(table.0).and_then(|rows| rows.get(key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    const T: Table = Table("t");

    fn put(store: &Store, key: u8) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(T, vec![key], vec![key; 100]);
        batch.put(Table("u"), vec![key], vec![1]);
        store.commit(batch)
    }

    #[test]
    fn every_crash_mode_recovers_the_acknowledged_commits_and_nothing_half_written() {
        for (mode, survives) in [
            (CrashMode::BeforeWrite, false),
            (CrashMode::Torn { kept_bytes_permille: 0 }, false),
            (CrashMode::Torn { kept_bytes_permille: 500 }, false),
            (CrashMode::Torn { kept_bytes_permille: 999 }, false),
            (CrashMode::AfterWrite, true),
            (CrashMode::FailedWrite { written: false }, false),
            (CrashMode::FailedWrite { written: true }, true),
        ] {
            let disk = SimDisk::new();
            let store = Store::open_simulated(disk.clone(), &[T]).unwrap();
            put(&store, 1).unwrap();
            disk.arm_crash(2, mode);
            put(&store, 2).unwrap();
            assert!(put(&store, 3).is_err(), "{mode:?} hits the second commit from arming");
            assert!(disk.crashed() || disk.failed());
            assert!(put(&store, 4).is_err(), "a crashed process, or a failed disk, commits nothing");
            drop(store);
            let store = Store::open_simulated(disk.clone(), &[T]).unwrap();
            let keys: Vec<u8> = store.scan(T).unwrap().into_iter().map(|(k, _)| k[0]).collect();
            let expected: Vec<u8> = if survives { vec![1, 2, 3] } else { vec![1, 2] };
            assert_eq!(keys, expected, "{mode:?}");
            // Batches are atomic: the second table agrees with the first.
            assert_eq!(store.scan(Table("u")).unwrap().len(), expected.len(), "{mode:?}");
            let torn = matches!(mode, CrashMode::Torn { kept_bytes_permille } if kept_bytes_permille > 0);
            assert_eq!(disk.stats().torn_records_discarded, u64::from(torn), "{mode:?}");
            // The recovered store works, and the snapshot replays identically.
            put(&store, 5).unwrap();
            drop(store);
            let store = Store::open_simulated(disk.clone(), &[T]).unwrap();
            assert_eq!(store.scan(T).unwrap().len(), expected.len() + 1);
        }
    }
}
