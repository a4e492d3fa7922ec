//! Append-only tables: records without keys, grouped by the store into few large rows.
//!
//! Why: a payment used to write a history line per party, the transaction per party and the
//! notary's "committed" mark as rows of their own, keyed by random ids. Each such row costs an
//! insert into the LSM tree's skiplist on the one committer thread and, later, a share of the
//! rewrites that compaction does when random keys overlap every sorted file. `dtenge bench`
//! measured those five rows at a quarter of the platform's throughput (12.8k payments/s with
//! them as rows, 17.2k without them). Nothing reads these records by key: the nodes and the
//! notary read them all at start. So the store folds every record of one group commit into one
//! row per table (at most [`LOG_ROW_BYTES_MAX`] bytes each), keyed by a sequence number: a
//! thousand payments become a handful of rows with ascending keys. Batching where the writes
//! are, as TigerBeetle does. The rows first went into fjall, which appended them without
//! rewriting; they now go to the store's own journal (`journal.rs`), written once and never
//! waiting on fjall's flushes.
//!
//! A row's key is its sequence number (`u64`, big-endian, so key order is commit order). Its
//! value is the records one after another, each as `[length u32 LE][bytes]`. A log table holds
//! only such rows: it is a distinct type ([`LogTable`]) so that no one writes keyed rows to it.

use crate::{storage_error, Op, Table, VALUE_BYTES_MAX};
use dtenge_core::Result;
use std::collections::HashMap;

/// Largest row a log table's records are folded into (a record larger than this gets a row of
/// its own). Bounds the memory of one row while the group is written and read back.
pub const LOG_ROW_BYTES_MAX: usize = 1 << 20;
/// Bytes in front of every record in a row: its length.
const RECORD_LENGTH_BYTES: usize = 4;
/// Bytes of a row's key: its sequence number.
const SEQUENCE_BYTES: usize = 8;

/// An append-only table of records (see the module docs). The name follows [`Table`]'s rules
/// and must not be used as a keyed [`Table`] too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogTable(pub &'static str);

impl LogTable {
    /// The table the rows live in (to declare it in [`crate::Store::open`]).
    pub const fn table(self) -> Table {
        Table(self.0)
    }
}

/// An append-only table of records kept as evidence, never read back to run: a bank's signed
/// transactions, a notary replica's envelopes. Written like a [`LogTable`] (folded rows, in
/// the group's journal frame), but its rows are not indexed and never keep a journal segment
/// alive: a segment whose other rows are all truncated moves to the store's archive folder,
/// which a start does not read. Read back with [`crate::Store::for_each_archived`]. Why: a
/// log that is never truncated kept every segment and a start read them all (issue 20). The
/// name follows [`Table`]'s rules and must not be used for another table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArchiveLog(pub &'static str);

impl ArchiveLog {
    /// The table the rows are named by (to declare it in [`crate::Store::open`]).
    pub const fn table(self) -> Table {
        Table(self.0)
    }
}

/// The longest record a log table accepts: a row of just that record must fit in a value.
pub(crate) const RECORD_BYTES_MAX: u64 = VALUE_BYTES_MAX - RECORD_LENGTH_BYTES as u64;

/// A folded row: its table, key and value.
pub(crate) type Row = (Table, Vec<u8>, Vec<u8>);

/// The next sequence number of each log table a store has written, found from the table's last
/// row the first time.
#[derive(Default)]
pub(crate) struct Sequences {
    next: HashMap<&'static str, u64>,
}

impl Sequences {
    /// Folds the records of `ops` (in order) into rows: `(table, key, value)`, at most
    /// [`LOG_ROW_BYTES_MAX`] bytes each unless one record is larger. `last_key` reads a table's
    /// last key the first time it is needed.
    pub(crate) fn fold<'a>(
        &mut self,
        ops: impl Iterator<Item = &'a Op>,
        mut last_key: impl FnMut(Table) -> Result<Option<Vec<u8>>>,
    ) -> Result<Vec<Row>> {
        // Rows being filled, one per table, in the order the tables first appear, with the
        // bytes of the table's records not yet folded: a row is allocated at its final size
        // once (the committer copied each row about 1.5 times more while it grew).
        let ops: Vec<&Op> = ops.collect();
        let mut open: Vec<(Table, Vec<u8>, usize)> = Vec::new();
        for op in &ops {
            let Op::Record { table, record, .. } = op else { continue };
            let bytes = RECORD_LENGTH_BYTES + record.len();
            match open.iter_mut().find(|(t, _, _)| t == table) {
                Some((_, _, left)) => *left += bytes,
                None => open.push((*table, Vec::new(), bytes)),
            }
        }
        let mut rows = Vec::new();
        for op in ops {
            let Op::Record { table, record, .. } = op else { continue };
            let (_, row, left) = open.iter_mut().find(|(t, _, _)| t == table).expect("every table was counted");
            let full = push_record(row, record, *left)?;
            *left -= RECORD_LENGTH_BYTES + record.len();
            if let Some(full) = full {
                let key = self.take(*table, &mut last_key)?;
                rows.push((*table, key, full));
            }
        }
        for (table, row, left) in open {
            assert_eq!(left, 0, "every record was folded");
            if !row.is_empty() {
                let key = self.take(table, &mut last_key)?;
                rows.push((table, key, row));
            }
        }
        Ok(rows)
    }

    /// The sequence number `table`'s next row will get.
    pub(crate) fn peek(
        &mut self,
        table: Table,
        last_key: &mut impl FnMut(Table) -> Result<Option<Vec<u8>>>,
    ) -> Result<u64> {
        if let Some(next) = self.next.get(table.0) {
            return Ok(*next);
        }
        let next = match last_key(table)? {
            Some(key) => sequence_of(&key)?.checked_add(1).ok_or_else(|| storage_error("commit", "log full"))?,
            None => 0,
        };
        self.next.insert(table.0, next);
        Ok(next)
    }

    /// The key of `table`'s next row.
    fn take(&mut self, table: Table, last_key: &mut impl FnMut(Table) -> Result<Option<Vec<u8>>>) -> Result<Vec<u8>> {
        let next = self.peek(table, last_key)?;
        self.next.insert(table.0, next.checked_add(1).ok_or_else(|| storage_error("commit", "log full"))?);
        Ok(next.to_be_bytes().to_vec())
    }
}

/// Where each [`Op::TruncateLogHere`] of `ops` cuts its table: at the first row `rows` (the
/// group's folded rows) gives it, or at the table's next row when the group writes none.
pub(crate) fn truncations_here<'a>(
    ops: impl Iterator<Item = &'a Op>,
    rows: &[Row],
    sequences: &mut Sequences,
    mut last_key: impl FnMut(Table) -> Result<Option<Vec<u8>>>,
) -> Result<Vec<(Table, u64)>> {
    let mut cuts: Vec<(Table, u64)> = Vec::new();
    for op in ops {
        let Op::TruncateLogHere { table } = op else { continue };
        if cuts.iter().any(|(t, _)| t == table) {
            continue;
        }
        let first = rows.iter().filter(|(t, _, _)| t == table).map(|(_, key, _)| sequence_of(key)).next();
        let before = match first {
            Some(first) => first?,
            None => sequences.peek(*table, &mut last_key)?,
        };
        cuts.push((*table, before));
    }
    Ok(cuts)
}

fn sequence_of(key: &[u8]) -> Result<u64> {
    let bytes: [u8; SEQUENCE_BYTES] =
        key.try_into().map_err(|_| storage_error("log", format!("row key of {} bytes in a log table", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Appends `record`, framed, to `row`. When it would not fit in [`LOG_ROW_BYTES_MAX`], the
/// full row is returned first and `record` starts a new one (a larger record gets a row of
/// its own). The one framing of log rows and checkpoint chunks; [`records_of`] reads it.
/// `bytes_left` (this record's framed bytes and those still to come to this row's table) sizes
/// a row when it starts, so that it is not copied as it grows.
pub(crate) fn push_record(row: &mut Vec<u8>, record: &[u8], bytes_left: usize) -> Result<Option<Vec<u8>>> {
    let length = u32::try_from(record.len()).map_err(|_| storage_error("log", "record over 4 GiB"))?;
    let full = (!row.is_empty() && row.len() + RECORD_LENGTH_BYTES + record.len() > LOG_ROW_BYTES_MAX)
        .then(|| std::mem::take(row));
    if row.is_empty() {
        row.reserve_exact(bytes_left.min(LOG_ROW_BYTES_MAX).max(RECORD_LENGTH_BYTES + record.len()));
    }
    row.extend_from_slice(&length.to_le_bytes());
    row.extend_from_slice(record);
    Ok(full)
}

/// The records of one row, in the order they were written.
pub(crate) fn records_of(row: &[u8], into: &mut Vec<Vec<u8>>) -> Result<()> {
    let mut rest = row;
    while !rest.is_empty() {
        let (length, tail) = rest
            .split_first_chunk::<RECORD_LENGTH_BYTES>()
            .ok_or_else(|| storage_error("log", "truncated record length"))?;
        let length = u32::from_le_bytes(*length) as usize;
        let (record, tail) = tail.split_at_checked(length).ok_or_else(|| storage_error("log", "truncated record"))?;
        into.push(record.to_vec());
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: LogTable = LogTable("l");
    const M: LogTable = LogTable("m");

    fn record(table: LogTable, bytes: &[u8]) -> Op {
        Op::Record { table: table.table(), record: bytes.to_vec(), archived: false }
    }

    #[test]
    fn records_fold_into_one_row_per_table_and_read_back_in_order() {
        let ops = [
            record(L, b"a"),
            Op::Put { table: Table("t"), key: b"k".to_vec(), value: b"v".to_vec() },
            record(M, b""),
            record(L, b"bc"),
        ];
        let mut sequences = Sequences::default();
        let rows = sequences.fold(ops.iter(), |_| Ok(None)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, L.table());
        assert_eq!(rows[0].1, 0u64.to_be_bytes().to_vec());
        let mut records = Vec::new();
        records_of(&rows[0].2, &mut records).unwrap();
        assert_eq!(records, vec![b"a".to_vec(), b"bc".to_vec()]);
        records.clear();
        records_of(&rows[1].2, &mut records).unwrap();
        assert_eq!(records, vec![Vec::<u8>::new()]);
        // The next group continues each table's sequence.
        let rows = sequences.fold([record(L, b"d")].iter(), |_| panic!("the sequence is known")).unwrap();
        assert_eq!(rows[0].1, 1u64.to_be_bytes().to_vec());
    }

    #[test]
    fn rows_are_bounded_and_continue_after_the_last_stored_row() {
        let big = vec![7u8; LOG_ROW_BYTES_MAX / 3];
        let ops: Vec<Op> = (0..7).map(|_| record(L, &big)).collect();
        let mut sequences = Sequences::default();
        let rows = sequences.fold(ops.iter(), |_| Ok(Some(41u64.to_be_bytes().to_vec()))).unwrap();
        // Two records fit a row (three and their lengths would not): four rows, from 42 on.
        let keys: Vec<u64> = rows.iter().map(|(_, k, _)| sequence_of(k).unwrap()).collect();
        assert_eq!(keys, vec![42, 43, 44, 45]);
        assert!(rows.iter().all(|(_, _, v)| v.len() <= LOG_ROW_BYTES_MAX));
        let mut records = Vec::new();
        for (_, _, row) in &rows {
            records_of(row, &mut records).unwrap();
        }
        assert_eq!(records.len(), 7);
        // A key that is not a sequence number is an error, not a panic.
        let mut fresh = Sequences::default();
        assert!(fresh.fold(ops.iter(), |_| Ok(Some(b"bad".to_vec()))).is_err());
    }

    #[test]
    fn a_corrupt_row_is_an_error() {
        let mut records = Vec::new();
        assert!(records_of(&[5, 0, 0, 0, 1], &mut records).is_err());
        assert!(records_of(&[1, 0], &mut records).is_err());
    }
}
