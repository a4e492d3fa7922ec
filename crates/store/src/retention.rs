//! The retention window of idempotency records: each record's write time is indexed in a
//! table of its own, ordered by time, so that a sweep reads the oldest records first and
//! deletes at most a bounded number per pass.
//!
//! An index row's key is the record's write time (Unix ms, u64 big-endian) then the record's
//! key; its value is empty. A record rewritten later (a key answered, or used again after its
//! record was deleted) gets a second index row; the record itself carries its write time (each
//! table's own encoding), so the older index row is recognised as stale and dropped alone.
//!
//! Records written before the window existed carry no time and have no index row: the first
//! sweep after the upgrade (or [`Retention::migrate`]) indexes each at that moment, so they
//! expire one window after the first start of the upgraded role. A marker row (time
//! `u64::MAX`, never expired) says that this was done.

use crate::{Store, Table, WriteBatch};
use dtenge_core::Result;
use std::sync::atomic::{AtomicBool, Ordering};

/// How long an idempotency record is kept by default, in days.
pub const IDEMPOTENCY_RETENTION_DAYS_DEFAULT: u64 = 7;
pub const DAY_MS: u64 = 86_400_000;
/// [`IDEMPOTENCY_RETENTION_DAYS_DEFAULT`] in milliseconds.
pub const IDEMPOTENCY_RETENTION_MS_DEFAULT: u64 = IDEMPOTENCY_RETENTION_DAYS_DEFAULT * DAY_MS;
/// The shortest window accepted: a retry within a minute must always find its answer.
pub const IDEMPOTENCY_RETENTION_MS_MIN: u64 = 60_000;
/// Index rows read (so records deleted at most) by one sweep pass.
pub const SWEEP_ROWS_MAX: usize = 256;
/// Index rows written by one commit of the upgrade's migration.
const MIGRATION_BATCH_ROWS_MAX: usize = 4_096;
/// Bytes of an index row's time.
const TIME_BYTES: usize = 8;
const MARKER_KEY: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\xffindexed";

/// What a sweep must know of a record it finds expired by its index row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordAge {
    /// Its request is still being answered: never swept (indexed again at the sweep's time).
    InFlight,
    /// Written at this time (`None`: a record from before the window existed).
    Written(Option<u64>),
    /// Kept for good, whatever its age (a record that is also the role's only guard against
    /// doing a thing twice, such as a voucher event's payment): its index row is dropped.
    Keep,
}

/// What one sweep pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Records deleted.
    pub records: u64,
    /// Index rows read.
    pub index_rows: u64,
}

/// A table of idempotency records and its index by write time.
pub struct Retention {
    records: Table,
    by_time: Table,
    migrated: AtomicBool,
}

impl Retention {
    pub const fn new(records: Table, by_time: Table) -> Retention {
        Retention { records, by_time, migrated: AtomicBool::new(false) }
    }

    /// The index table, to declare among the store's tables.
    pub fn index_table(&self) -> Table {
        self.by_time
    }

    /// Plan the index row of `key`'s record, written at `written_ms`, into `batch` (the batch
    /// that writes the record).
    pub fn index(&self, batch: &mut WriteBatch, key: &[u8], written_ms: u64) {
        batch.put(self.by_time, index_key(written_ms, key), Vec::new());
    }

    /// Index every record that has no index row yet (those written before the window
    /// existed) at `now_ms`, once per store: a marker row says it was done. Commits in batches
    /// of a bounded size; the loop is bounded by the table's rows.
    pub fn migrate(&self, store: &Store, now_ms: u64) -> Result<u64> {
        if self.migrated.load(Ordering::Acquire) {
            return Ok(0);
        }
        if store.get(self.by_time, MARKER_KEY)?.is_some() {
            self.migrated.store(true, Ordering::Release);
            return Ok(0);
        }
        let rows = store.scan(self.records)?;
        let mut indexed = 0u64;
        for chunk in rows.chunks(MIGRATION_BATCH_ROWS_MAX) {
            let mut batch = WriteBatch::new();
            for (key, _) in chunk {
                self.index(&mut batch, key, now_ms);
            }
            store.commit(batch)?;
            indexed += chunk.len() as u64;
        }
        let mut batch = WriteBatch::new();
        batch.put(self.by_time, MARKER_KEY, Vec::new());
        store.commit(batch)?;
        self.migrated.store(true, Ordering::Release);
        Ok(indexed)
    }

    /// One sweep pass: plan into `batch` the deletion of the records written more than
    /// `retention_ms` before `now_ms`, reading at most `rows_max` index rows (oldest first).
    /// `age` tells, for a record found, whether it is in flight or when it was written. The
    /// caller commits `batch` before it answers any request with a key deleted here.
    pub fn sweep(
        &self,
        store: &Store,
        batch: &mut WriteBatch,
        now_ms: u64,
        retention_ms: u64,
        rows_max: usize,
        mut age: impl FnMut(&[u8], &[u8]) -> Result<RecordAge>,
    ) -> Result<Swept> {
        assert!(retention_ms >= IDEMPOTENCY_RETENTION_MS_MIN, "a retention window of {retention_ms} ms");
        assert!(rows_max > 0 && rows_max <= SWEEP_ROWS_MAX * 64);
        self.migrate(store, now_ms)?;
        let mut swept = Swept::default();
        // The common case, nothing expired: one row read, not `rows_max`.
        let Some((oldest, _)) = store.scan_first(self.by_time, 1)?.pop() else { return Ok(swept) };
        if let Some((oldest_ms, _)) = split_index_key(&oldest) {
            if oldest_ms.saturating_add(retention_ms) > now_ms {
                return Ok(Swept { records: 0, index_rows: 1 });
            }
        }
        // Keys this pass deleted or kept already (a key may have a stale row besides its own).
        let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        for (row_key, _) in store.scan_first(self.by_time, rows_max)? {
            swept.index_rows += 1;
            let Some((indexed_ms, key)) = split_index_key(&row_key) else {
                batch.delete(self.by_time, row_key);
                continue;
            };
            // Expired once a whole window has passed since it was written.
            if indexed_ms.saturating_add(retention_ms) > now_ms {
                break;
            }
            batch.delete(self.by_time, row_key.clone());
            if seen.contains(key) {
                continue;
            }
            let Some(record) = store.get(self.records, key)? else { continue };
            match age(key, &record)? {
                RecordAge::InFlight => {
                    self.index(batch, key, now_ms);
                    seen.insert(key.to_vec());
                }
                RecordAge::Keep => {
                    seen.insert(key.to_vec());
                }
                // Rewritten after this row: a later row stands for it.
                RecordAge::Written(Some(written_ms)) if written_ms > indexed_ms => {}
                RecordAge::Written(_) => {
                    batch.delete(self.records, key.to_vec());
                    seen.insert(key.to_vec());
                    swept.records += 1;
                }
            }
        }
        assert!(swept.index_rows <= rows_max as u64 && swept.records <= swept.index_rows);
        Ok(swept)
    }
}

/// An index row's key: the time written and the record's key (`None`: too short).
fn split_index_key(row_key: &[u8]) -> Option<(u64, &[u8])> {
    let (time, key) = row_key.split_at_checked(TIME_BYTES)?;
    Some((u64::from_be_bytes(time.try_into().ok()?), key))
}

fn index_key(written_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(TIME_BYTES + key.len());
    row.extend_from_slice(&written_ms.to_be_bytes());
    row.extend_from_slice(key);
    row
}

/// Bytes of an index row's key for a record key of `key_bytes` (the row's value is empty).
pub const fn index_row_key_bytes(key_bytes: usize) -> usize {
    TIME_BYTES + key_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimDisk;

    const RECORDS: Table = Table("records");
    const BY_TIME: Table = Table("records_by_time");

    fn written(value: &[u8]) -> RecordAge {
        RecordAge::Written(Some(u64::from_le_bytes(value[..8].try_into().unwrap())))
    }

    #[test]
    fn the_sweep_deletes_expired_records_in_bounded_passes_and_keeps_the_rest() {
        let store = Store::open_simulated(SimDisk::new(), &[RECORDS, BY_TIME]).unwrap();
        let retention = Retention::new(RECORDS, BY_TIME);
        let window_ms = IDEMPOTENCY_RETENTION_MS_MIN;
        let mut batch = WriteBatch::new();
        for i in 0..10u64 {
            let key = format!("k{i}");
            batch.put(RECORDS, key.as_bytes(), i.to_le_bytes());
            retention.index(&mut batch, key.as_bytes(), i);
        }
        // "k0" written again later: its first index row is stale.
        batch.put(RECORDS, b"k0".to_vec(), 5_000u64.to_le_bytes());
        retention.index(&mut batch, b"k0", 5_000);
        store.commit(batch).unwrap();
        let in_flight = |key: &[u8]| key == b"k3";
        let pass = |now_ms: u64| {
            let mut batch = WriteBatch::new();
            let swept = retention
                .sweep(&store, &mut batch, now_ms, window_ms, 4, |key, value| {
                    Ok(if in_flight(key) { RecordAge::InFlight } else { written(value) })
                })
                .unwrap();
            store.commit(batch).unwrap();
            swept
        };
        // Within the window: only k0's stale row goes, then the first row inside stops the pass.
        assert_eq!(pass(window_ms), Swept { records: 0, index_rows: 2 });
        assert_eq!(store.scan(RECORDS).unwrap().len(), 10);
        // Past the window: at most 4 rows a pass; k0 (rewritten) and k3 (in flight) stay.
        assert_eq!(pass(window_ms + 9), Swept { records: 3, index_rows: 4 });
        assert_eq!(pass(window_ms + 9), Swept { records: 4, index_rows: 4 });
        assert_eq!(pass(window_ms + 9), Swept { records: 1, index_rows: 2 });
        let left: Vec<Vec<u8>> = store.scan(RECORDS).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(left, vec![b"k0".to_vec(), b"k3".to_vec()]);
        assert_eq!(pass(window_ms + 5_000), Swept { records: 1, index_rows: 2 });
        let left: Vec<Vec<u8>> = store.scan(RECORDS).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(left, vec![b"k3".to_vec()], "the key in flight is never swept");
    }

    #[test]
    fn a_key_with_two_rows_in_one_pass_is_deleted_once() {
        let store = Store::open_simulated(SimDisk::new(), &[RECORDS, BY_TIME]).unwrap();
        let retention = Retention::new(RECORDS, BY_TIME);
        let mut batch = WriteBatch::new();
        // Indexed at 1 (in flight), then answered at 2: a second row.
        batch.put(RECORDS, b"k".to_vec(), 2u64.to_le_bytes());
        retention.index(&mut batch, b"k", 1);
        retention.index(&mut batch, b"k", 2);
        store.commit(batch).unwrap();
        let mut batch = WriteBatch::new();
        let now_ms = 2 + IDEMPOTENCY_RETENTION_MS_MIN;
        let swept = retention
            .sweep(&store, &mut batch, now_ms, IDEMPOTENCY_RETENTION_MS_MIN, 8, |_, v| Ok(written(v)))
            .unwrap();
        store.commit(batch).unwrap();
        assert_eq!(swept, Swept { records: 1, index_rows: 3 });
        assert!(store.scan(RECORDS).unwrap().is_empty());
    }

    #[test]
    fn records_from_before_the_window_expire_one_window_after_the_first_sweep() {
        let store = Store::open_simulated(SimDisk::new(), &[RECORDS, BY_TIME]).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(RECORDS, b"old".to_vec(), b"no time".to_vec());
        store.commit(batch).unwrap();
        let window_ms = IDEMPOTENCY_RETENTION_MS_MIN;
        let sweep = |now_ms: u64| {
            let retention = Retention::new(RECORDS, BY_TIME);
            let mut batch = WriteBatch::new();
            let swept = retention
                .sweep(&store, &mut batch, now_ms, window_ms, 16, |_, _| Ok(RecordAge::Written(None)))
                .unwrap();
            store.commit(batch).unwrap();
            swept.records
        };
        let upgraded_ms = 1_000_000;
        assert_eq!(sweep(upgraded_ms), 0);
        assert_eq!(sweep(upgraded_ms + window_ms - 1), 0);
        assert_eq!(sweep(upgraded_ms + window_ms), 1);
        assert!(store.scan(RECORDS).unwrap().is_empty());
        assert_eq!(store.scan(BY_TIME).unwrap().len(), 1, "the marker row stays");
    }
}
