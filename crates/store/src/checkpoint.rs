//! State kept as a log of changes plus, now and then, a checkpoint of the whole state.
//!
//! Why: the unspent set and the nodes' tokens change with every payment (two tokens spent, two
//! created). As keyed rows in the LSM tree that was eight inserts or tombstones per payment,
//! each searched into a skiplist on the one committer thread and rewritten by compaction
//! later, because token ids are random and overlap every sorted file. Their owners already
//! hold the whole state in memory, so the disk only has to be able to rebuild it: each change
//! goes to a [`LogTable`] (a group commit folds a thousand payments' changes into a few rows),
//! and when the log has grown about as large as the state, the owner writes its whole state as
//! a checkpoint and the log before it is deleted. Replay at start is bounded by the state's size,
//! and the amortized cost of a change is a few bytes appended twice. This is how TigerBeetle
//! and Hamilton's shards persist state that lives in memory.
//!
//! The checkpoint is written while payments go on ("fuzzy"), so it is correct only under two
//! rules, which the owner keeps:
//!
//! 1. [`Checkpointed::begin`] is called when every committed change is applied in memory and no
//!    commit of a change is in flight (the network holds its gate exclusively). The log
//!    position it reads is where replay will start: every change before it is in the state the
//!    owner then dumps.
//! 2. The items the owner dumps reflect only durable changes (a notary adds back the inputs of
//!    transactions still pending), and replaying a change on a state that already reflects it
//!    changes nothing (token ids are created once and spent once; adding and removing them is
//!    idempotent in order).
//!
//! Layout, in the `items` table: the checkpoint of generation `g` is chunk rows keyed
//! `[g u64 BE][chunk u32 BE]`, each holding items framed like log records, and the key
//! [`CURRENT_KEY`] names the complete generation, its log position and its chunk count. The
//! chunks are written in several commits and the switch to the new generation is one commit
//! that also deletes the previous generation and the log rows before the new position: a crash
//! at any point leaves the previous checkpoint and a log that still covers everything after it.

use crate::log::{push_record, records_of, LOG_ROW_BYTES_MAX};
use crate::{decode, encode, storage_error, LogTable, Store, Table, WriteBatch};
use dtenge_core::Result;
use serde::{Deserialize, Serialize};

/// The key of the row naming the complete checkpoint (shorter than any chunk key).
const CURRENT_KEY: &[u8] = b"current";
/// Chunk rows written per commit while a checkpoint is written (16 MiB at most). One in tests,
/// so that they crash between the chunks of small checkpoints.
const CHUNKS_PER_COMMIT_MAX: usize = if cfg!(test) { 1 } else { 16 };

/// Fewest logged changes that make a checkpoint due: below it, replaying the log at start
/// costs less than a second.
pub const CHECKPOINT_CHANGES_MIN: u64 = 200_000;

/// Changes logged between two checkpoints of a state of `items` items: half the state, and at
/// least [`CHECKPOINT_CHANGES_MIN`]. The log then holds about as many bytes as a checkpoint
/// would, so checkpoints at most double what a change writes, and replay at start stays
/// shorter than the state. (The notary's unspent set and the banks' tokens both follow it.)
pub fn checkpoint_interval(items: u64) -> u64 {
    CHECKPOINT_CHANGES_MIN.max(items / 2)
}

/// Is a checkpoint due, `changes` changes after the last one, with `items` items?
pub fn checkpoint_due(changes: u64, items: u64) -> bool {
    changes >= checkpoint_interval(items)
}

/// A component's state persisted as a log plus checkpoints (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Checkpointed {
    /// The changes, one record each, in commit order.
    pub log: LogTable,
    /// The checkpoints' chunks and the row naming the current one.
    pub items: Table,
}

/// The row naming the complete checkpoint. Generation 0 is "none yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Current {
    generation: u64,
    /// The first log row not reflected for sure in the checkpoint: replay starts here.
    position: u64,
    chunks: u32,
}

/// What a start reads: the checkpoint's items, then the changes logged since.
#[derive(Debug, Default)]
pub struct Loaded {
    pub items: Vec<Vec<u8>>,
    pub changes: Vec<Vec<u8>>,
}

/// A checkpoint begun: where its replay will start.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    previous: Current,
    position: u64,
}

/// What a written checkpoint holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub generation: u64,
    pub items: u64,
    pub bytes: u64,
    /// Log rows the checkpoint made obsolete, deleted with the switch.
    pub log_rows_deleted: u64,
}

impl Checkpointed {
    /// The declared tables (for [`Store::open`]).
    pub const fn tables(self) -> [Table; 2] {
        [self.log.table(), self.items]
    }

    fn current(self, store: &Store) -> Result<Current> {
        match store.get(self.items, CURRENT_KEY)? {
            Some(bytes) => decode(&bytes),
            None => Ok(Current::default()),
        }
    }

    /// The current checkpoint's items and every change logged from its position on.
    pub fn load(self, store: &Store) -> Result<Loaded> {
        let current = self.current(store)?;
        let mut loaded = Loaded::default();
        if current.generation > 0 {
            let prefix = current.generation.to_be_bytes();
            let rows = store.scan_prefix(self.items, &prefix)?;
            // Exactly chunks 0..n in order (leftovers of an interrupted attempt at this
            // generation cannot be here: an attempt deletes them before it writes).
            let keys_expected = (0..current.chunks).map(|chunk| [&prefix[..], &chunk.to_be_bytes()].concat());
            if rows.len() != current.chunks as usize || !rows.iter().map(|(k, _)| k.clone()).eq(keys_expected) {
                return Err(storage_error(
                    "checkpoint",
                    format!(
                        "{}: generation {} is not chunks 0..{} ({} rows)",
                        self.items.0,
                        current.generation,
                        current.chunks,
                        rows.len()
                    ),
                ));
            }
            for (_, row) in rows {
                records_of(&row, &mut loaded.items)?;
            }
        }
        loaded.changes = store.scan_log_from(self.log, current.position)?;
        Ok(loaded)
    }

    /// Start a checkpoint. Call it when every committed change is applied in memory and no
    /// commit of a change is in flight; dump the state afterwards (see the module docs).
    pub fn begin(self, store: &Store) -> Result<Begun> {
        Ok(Begun { previous: self.current(store)?, position: store.log_next(self.log)? })
    }

    /// Write the dumped `items` as the next checkpoint, switch to it, and delete what it made
    /// obsolete. An error (of an item or of a commit) leaves the previous checkpoint current.
    /// `items` may be lazy: they are written as they come, 16 MiB per commit.
    pub fn write(
        self,
        store: &Store,
        begun: Begun,
        items: impl IntoIterator<Item = Result<Vec<u8>>>,
    ) -> Result<Written> {
        let generation = begun
            .previous
            .generation
            .checked_add(1)
            .ok_or_else(|| storage_error("checkpoint", "generations exhausted"))?;
        // One writer at a time (the owner's lock): a `Begun` from before another checkpoint
        // would overwrite that one's generation.
        if self.current(store)? != begun.previous {
            return Err(storage_error(
                "checkpoint",
                format!("{}: another checkpoint was written since begin", self.items.0),
            ));
        }
        let prefix = generation.to_be_bytes();
        // Chunks of an attempt at this generation that a crash interrupted, deleted in a commit
        // of their own (a delete and a put of one key in one batch would rely on their order).
        let mut leftovers = WriteBatch::new();
        for (key, _) in store.scan_prefix(self.items, &prefix)? {
            leftovers.delete(self.items, key);
        }
        store.commit(leftovers)?;
        let mut batch = WriteBatch::new();
        let mut written = Written { generation, ..Written::default() };
        let mut chunks: u32 = 0;
        let mut row = Vec::new();
        let mut rows_in_batch = 0usize;
        let flush = |row: Vec<u8>, batch: &mut WriteBatch, chunks: &mut u32, rows_in_batch: &mut usize| -> Result<()> {
            let key = [&prefix[..], &chunks.to_be_bytes()].concat();
            batch.put(self.items, key, row);
            *chunks = chunks.checked_add(1).ok_or_else(|| storage_error("checkpoint", "too many chunks"))?;
            *rows_in_batch += 1;
            if *rows_in_batch == CHUNKS_PER_COMMIT_MAX {
                store.commit(std::mem::take(batch))?;
                *rows_in_batch = 0;
            }
            Ok(())
        };
        for item in items {
            let item = item?;
            // Items stream in, their number unknown: a chunk is sized for a full row.
            if let Some(full) = push_record(&mut row, &item, LOG_ROW_BYTES_MAX)? {
                flush(full, &mut batch, &mut chunks, &mut rows_in_batch)?;
            }
            written.items += 1;
            written.bytes += 4 + item.len() as u64;
        }
        if !row.is_empty() {
            flush(row, &mut batch, &mut chunks, &mut rows_in_batch)?;
        }
        // The switch: one commit names the new generation and deletes the old one and the log
        // rows the new one covers.
        let current = Current { generation, position: begun.position, chunks };
        batch.put(self.items, CURRENT_KEY.to_vec(), encode(&current)?);
        for chunk in 0..begun.previous.chunks {
            batch.delete(self.items, [&begun.previous.generation.to_be_bytes()[..], &chunk.to_be_bytes()].concat());
        }
        // The last row before the new position stays: a log's sequence continues from its last
        // row after a restart, and an emptied log would start again at 0, below the position,
        // where replay would never read. The row is below the position, so it is never replayed.
        let kept = begun.position.saturating_sub(1);
        batch.truncate_log(self.log, kept);
        written.log_rows_deleted = kept.saturating_sub(begun.previous.position.saturating_sub(1));
        store.commit(batch)?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrashMode, SimDisk};
    use std::collections::BTreeSet;

    const STATE: Checkpointed = Checkpointed { log: LogTable("set_log"), items: Table("set_checkpoint") };

    /// A set of u32 persisted as +n / -n changes.
    fn change(store: &Store, set: &mut BTreeSet<u32>, add: bool, n: u32) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.record(STATE.log, [u8::from(add)].into_iter().chain(n.to_le_bytes()).collect::<Vec<u8>>());
        store.commit(batch)?;
        if add {
            set.insert(n);
        } else {
            set.remove(&n);
        }
        Ok(())
    }

    /// Items are padded to 512 bytes, so that a few thousand fill several chunks.
    fn item(n: u32) -> Vec<u8> {
        let mut item = n.to_le_bytes().to_vec();
        item.resize(512, 0);
        item
    }

    fn load(store: &Store) -> BTreeSet<u32> {
        let loaded = STATE.load(store).unwrap();
        let mut set: BTreeSet<u32> =
            loaded.items.iter().map(|i| u32::from_le_bytes(i[..4].try_into().unwrap())).collect();
        for c in loaded.changes {
            let n = u32::from_le_bytes(c[1..5].try_into().unwrap());
            if c[0] == 1 {
                set.insert(n);
            } else {
                set.remove(&n);
            }
        }
        set
    }

    fn checkpoint(store: &Store, set: &BTreeSet<u32>) -> Result<Written> {
        let begun = STATE.begin(store)?;
        STATE.write(store, begun, set.iter().map(|n| Ok(item(*n))))
    }

    #[test]
    fn checkpoints_bound_the_log_and_the_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut set = BTreeSet::new();
        {
            let store = Store::open(&path, &STATE.tables()).unwrap();
            for n in 0..300u32 {
                change(&store, &mut set, true, n).unwrap();
            }
            assert_eq!(load(&store), set);
            // Big enough for several chunks of 1 MiB.
            let many: BTreeSet<u32> = (1_000..6_000u32).collect();
            for chunk in many.iter().collect::<Vec<_>>().chunks(1_000) {
                let mut batch = WriteBatch::new();
                for n in chunk {
                    batch.record(STATE.log, [1u8].into_iter().chain(n.to_le_bytes()).collect::<Vec<u8>>());
                }
                store.commit(batch).unwrap();
            }
            set.extend(many);
            let written = checkpoint(&store, &set).unwrap();
            assert_eq!(written.generation, 1);
            assert_eq!(written.items, set.len() as u64);
            assert!(written.log_rows_deleted >= 300);
            assert_eq!(
                store.log_row_count(STATE.log).unwrap(),
                1,
                "of the log before the checkpoint, its last row stays"
            );
            for n in 0..100u32 {
                change(&store, &mut set, false, n).unwrap();
            }
            change(&store, &mut set, true, 7_000_000).unwrap();
            assert_eq!(load(&store), set);
            let written = checkpoint(&store, &set).unwrap();
            assert_eq!(written.generation, 2);
            change(&store, &mut set, false, 200).unwrap();
        }
        let store = Store::open(&path, &STATE.tables()).unwrap();
        assert_eq!(load(&store), set);
        // Only generation 2's chunks and the current row remain.
        let rows = store.scan(STATE.items).unwrap();
        assert!(rows.iter().all(|(k, _)| k == CURRENT_KEY || k[..8] == 2u64.to_be_bytes()));
    }

    #[test]
    fn a_crash_at_any_commit_of_a_checkpoint_keeps_a_complete_state() {
        // Crash on the first, second, ... commit of the checkpoint, in every mode.
        let modes = [
            CrashMode::BeforeWrite,
            CrashMode::Torn { kept_bytes_permille: 500 },
            CrashMode::AfterWrite,
            CrashMode::FailedWrite { written: false },
            CrashMode::FailedWrite { written: true },
        ];
        for mode in modes {
            // The checkpoint's commits: its chunks, one each in tests, then the switch.
            for commit in 1..=5u64 {
                let disk = SimDisk::new();
                let mut set = BTreeSet::new();
                let store = Store::open_simulated(disk.clone(), &[]).unwrap();
                let items: Vec<u32> = (0..9_000u32).step_by(3).collect();
                let mut batch = WriteBatch::new();
                for n in &items {
                    batch.record(STATE.log, [1u8].into_iter().chain(n.to_le_bytes()).collect::<Vec<u8>>());
                }
                store.commit(batch).unwrap();
                set.extend(items);
                checkpoint(&store, &set).unwrap();
                change(&store, &mut set, false, 3).unwrap();
                change(&store, &mut set, true, 4).unwrap();
                disk.arm_crash(commit, mode);
                let outcome = checkpoint(&store, &set);
                disk.disarm();
                drop(store);
                let store = Store::open_simulated(disk.clone(), &[]).unwrap();
                assert_eq!(load(&store), set, "{mode:?} at commit {commit}: {outcome:?}");
                // And the next checkpoint after the restart works.
                checkpoint(&store, &set).unwrap();
                change(&store, &mut set, true, 5).unwrap();
                assert_eq!(load(&store), set, "{mode:?} at commit {commit}, after the next checkpoint");
            }
        }
    }
}
