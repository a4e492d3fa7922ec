//! The record journal: the rows of every [`LogTable`](crate::LogTable), written once, in
//! append-only segment files of our own, beside the fjall database.
//!
//! Why not fjall: a payment writes only log records (the notary's and the nodes' changes, the
//! history lines, the archived transaction), about 2 KB. In fjall they were written twice (its
//! journal, then again when a memtable was flushed to a sorted file) and the flushes and
//! compactions competed with the commit path: `dtenge bench` measured the committer blocked
//! 40-55 ms in fjall's memtable rotation, waiting for a lock that fjall's worker held while it
//! deleted obsolete files, and journal fsyncs of 9-31 ms while a flush wrote (0.3 ms on the idle
//! disk). Those stalls alone broke the p99 target. A log row is never updated and never read by
//! key, so an LSM tree gives it nothing: here it is appended once and fsynced, as TigerBeetle's
//! and Hamilton's logs are.
//!
//! # Layout
//!
//! The directory `records/` in the database directory holds segment files `<first frame>.seg`
//! (20 decimal digits, so that name order is frame order). A segment holds frames; the
//! committer appends one frame per group commit that has log rows (or truncations) and fsyncs
//! it before anyone is answered. A frame is
//! `[magic u32][payload length u32][crc32 u32][frame number u64][flags u8][payload]`, all little
//! endian, the checksum covering the frame number, the flags and the payload, then zeros up to
//! the next multiple of [`BLOCK_BYTES`]: every frame starts on a block boundary. The payload is
//! entries, each `[kind u8][table name length u8][table name]` and then:
//!
//! - [`ROW`]: `[row number u64][length u32][row]`, one folded row of a log table;
//! - [`TRUNCATE`]: `[before u64]`, rows below `before` are deleted;
//! - [`STATE`]: `[next u64][before u64]`, the table's next row number and truncation point,
//!   written for every table at the start of each segment, so that deleting old segments never
//!   loses them.
//!
//! # Direct writes
//!
//! Frames are written with `O_DIRECT`, from one block-aligned buffer that the writer keeps, and
//! then `fdatasync`ed. Why: a buffered append copies every byte into freshly allocated page-cache
//! pages, and on this project's virtual machine (Firecracker) touching fresh pages is dear:
//! `copy_folio_from_iter_atomic` was 10% of all the CPU of `dtenge bench` at saturation, and a
//! micro-test measured 2.6 ms of CPU per MB appended buffered against 0.08 ms per MB direct. A
//! direct write hands the buffer to the device, and the buffer's pages are reused frame after
//! frame. A file system that refuses `O_DIRECT` (tmpfs, some network file systems) gets the
//! same bytes through ordinary writes. Reads (recovery, [`Journal::rows_from`]) go through a
//! second, buffered handle of each segment. Segments written before frames were aligned (frames
//! back to back) are still read: after a frame, the reader looks for the next one right after
//! it, then at the next block boundary.
//!
//! # Zeros written ahead
//!
//! The writer keeps up to [`ZERO_AHEAD_BYTES`] of zeros written past the last frame, so that a
//! frame overwrites blocks that are already allocated and within the file's length. Why: an
//! append that grows the file makes its `fdatasync` write the inode too (the new length, the new
//! blocks) as a second synchronous I/O before the flush; on this project's virtual machine that
//! made a commit of 8 KiB cost about 230 µs and 100 µs of CPU, against 140 µs and 50 µs for
//! the same write into zeros written before (each I/O is a trap to the hypervisor). Fresh zeros
//! are written in the same group commit as the frame that runs short of them, before its
//! `fdatasync`, so no commit waits for a second one. `fallocate` would not do: its blocks are
//! "unwritten", and the first write to each converts them, a metadata change again. Recovery
//! reads the zeros as padding; the writer goes on after the last frame, not after the zeros.
//!
//! # Atomicity with fjall
//!
//! A group commit may hold keyed writes (fjall) and log rows (here). The frame is written and
//! fsynced first, flagged [`FLAG_KEYED`]; then the fjall batch, which also stores the frame's
//! number under [`crate::JOURNAL_MARK_TABLE`]. A crash between the two leaves a last frame
//! flagged keyed whose number fjall does not have: recovery drops it, as it drops a torn last
//! frame. Only the last frame can be in that state, because the committer writes the next frame
//! only after the previous fjall batch is durable (and stops writing after any failure).
//!
//! # Keyed writes redone from the journal
//!
//! A group whose keyed writes are small ([`REDO_BYTES_MAX`] in all; the idempotency keys'
//! answers, a bank's delivery marks) puts them in its frame as well, as [`PUT`] and [`DELETE`]
//! entries, and flags it [`FLAG_REDO`]. The frame's `fdatasync` makes the group durable; fjall
//! then takes the writes with its mark without an fsync of its own (to the OS's buffers, so a
//! crash of the process loses nothing there). Why: fjall's `fsync` is a second synchronous
//! I/O in the commit, and it grows fjall's journal file, so it writes the inode too; a bank
//! answering a payment with an idempotency key paid both on every answer. The committer has
//! fjall persist every [`crate::REDO_FRAMES_UNSYNCED_MAX`] such frames, off the commit's path.
//! A start first has fjall persist what it recovered, then redoes the keyed writes of every
//! flagged frame after fjall's mark, in order. A segment holding a flagged frame that fjall has
//! not persisted yet is kept, whatever its rows. Larger keyed writes (checkpoints) take the
//! path above, with fjall's fsync.
//!
//! # Archived rows
//!
//! Some records are kept as evidence and never read back to run: the banks' signed
//! transactions, a notary replica's envelopes ([`crate::ArchiveLog`]). They are written in the
//! same frames as everything else, as [`ARCHIVED`] entries (one `fdatasync` per group still),
//! but nothing indexes them and they never keep a segment alive: once every other row in a
//! segment is truncated, the segment is moved whole into the folder `archive/` beside
//! `records/` (a rename, on the thread that unlinks), where a start never reads it. Why:
//! as rows that are never truncated, they kept every segment alive and a start read them all
//! (issue 20: 25 segments per bank and growing after four minutes of 2,000 payments/s); as
//! keyed rows in fjall they cost 0.58× of `dtenge bench`'s throughput. The archive grows with
//! the payments until an operator exports its closed segments ([`Journal::for_each_archived`]
//! reads them, and `docs/ARCHITECTURE.md`, "Steady state", has the rule).
//!
//! # Deleting rows
//!
//! A checkpoint truncates its log ([`crate::WriteBatch::truncate_log`]). A segment other than
//! the one being written is deleted once every row in it is below its table's truncation point
//! and so is every older segment's. The files are unlinked on a thread of their own, because an
//! unlink of a large file can take milliseconds and the committer must not wait for it (that
//! wait was fjall's stall). A crash before the unlink is harmless: recovery skips the dead rows
//! and deletes the file again.

use crate::{storage_error, Table};
use dtenge_core::Result;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The folder of the segment files, inside the database directory.
pub(crate) const FOLDER: &str = "records";
/// The folder dead segments holding archived rows are moved to (see the module docs,
/// "Archived rows"), beside [`FOLDER`].
pub(crate) const ARCHIVE_FOLDER: &str = "archive";
/// A segment is closed and a new one started once it holds this much. Bounds what one deletion
/// frees and what a start reads past the truncation point.
/// A few blocks in tests, so that they roll and delete segments and a segment holds several
/// frames.
const SEGMENT_BYTES_MAX: u64 = if cfg!(test) { 16 << 10 } else { 64 << 20 };
/// Zeros written ahead of the frames (see the module docs, "Zeros written ahead"): refilled to
/// this much when fewer than [`ZERO_REFILL_BELOW_BYTES`] remain, so a refill (about 3 MiB,
/// one commit in some hundreds) is rare and most frames find their blocks ready.
const ZERO_AHEAD_BYTES: u64 = if cfg!(test) { 3 * BLOCK_BYTES as u64 } else { 4 << 20 };
const ZERO_REFILL_BELOW_BYTES: u64 = if cfg!(test) { 2 * BLOCK_BYTES as u64 } else { 1 << 20 };
/// The zeros are written from a buffer of this size, kept by the writer once used.
const ZERO_BUFFER_BYTES: usize = if cfg!(test) { BLOCK_BYTES } else { 1 << 20 };
const MAGIC: u32 = u32::from_le_bytes(*b"DTJ1");
/// Frames start on multiples of this, and are written in whole blocks from a buffer aligned to
/// it, as `O_DIRECT` needs (4096 covers disks of 512-byte and of 4096-byte sectors).
pub(crate) const BLOCK_BYTES: usize = 4096;
/// The writer keeps a frame buffer up to this size between frames (a batch of 512 payments is
/// about 1.1 MB); a larger one, left by a rare large frame, is given back.
const FRAME_BUFFER_KEPT_BYTES_MAX: usize = 8 << 20;
const HEADER_BYTES: usize = 4 + 4 + 4 + 8 + 1;
/// The frame also wrote keyed rows to fjall, which must hold its number for it to count.
pub(crate) const FLAG_KEYED: u8 = 1;
/// The frame holds its group's keyed writes, redone at a start when fjall's mark is older
/// (see the module docs, "Keyed writes redone from the journal").
pub(crate) const FLAG_REDO: u8 = 2;
/// Most bytes of keys and values a group's keyed writes may have to go in its frame.
pub(crate) const REDO_BYTES_MAX: usize = 256 << 10;

pub(crate) const ROW: u8 = 1;
pub(crate) const TRUNCATE: u8 = 2;
pub(crate) const STATE: u8 = 3;
/// `[key length u32][key][value length u32][value]`: a keyed write to redo.
pub(crate) const PUT: u8 = 4;
/// `[key length u32][key]`: a keyed delete to redo.
pub(crate) const DELETE: u8 = 5;
/// `[row number u64][length u32][row]`: a row of an archive, never indexed (see the module
/// docs, "Archived rows").
pub(crate) const ARCHIVED: u8 = 6;

/// Where a row's bytes are.
#[derive(Clone)]
struct Location {
    file: Arc<File>,
    offset: u64,
    bytes: u32,
}

#[derive(Default)]
struct TableIndex {
    rows: BTreeMap<u64, Location>,
    /// The number the next row gets.
    next: u64,
    /// Rows below it are deleted.
    before: u64,
    /// An archive's table: its rows are not indexed and keep no segment alive. Rows a build
    /// before archives wrote as [`ROW`] entries become archived when the first
    /// [`ARCHIVED`] one is seen.
    archived: bool,
}

struct Segment {
    path: PathBuf,
    /// The highest row number of each table in the segment.
    rows_max: HashMap<String, u64>,
    /// The last frame in the segment with keyed writes to redo ([`FLAG_REDO`]).
    redo_frame_max: Option<u64>,
    /// The segment holds [`ARCHIVED`] rows: moved to the archive, not deleted, once dead.
    archived: bool,
}

impl Segment {
    fn new(path: PathBuf) -> Segment {
        Segment { path, rows_max: HashMap::new(), redo_frame_max: None, archived: false }
    }
}

/// A segment no longer needed to run: deleted, or moved to the archive when it holds rows of one.
struct DeadSegment {
    path: PathBuf,
    archived: bool,
}

#[derive(Default)]
struct Index {
    tables: HashMap<String, TableIndex>,
    /// By first frame number; the last one is being written.
    segments: BTreeMap<u64, Segment>,
    /// Fjall holds, durably, the keyed writes of every frame up to this one.
    redo_durable: Option<u64>,
    /// The number of the frame after the last one readers may see (published, or recovered).
    frames_visible_end: u64,
}

impl Index {
    /// Segments before the one being written whose rows, and every older segment's, are all
    /// truncated or archived: removed from the index, returned for deletion or archiving.
    fn take_dead_segments(&mut self) -> Vec<DeadSegment> {
        let mut dead = Vec::new();
        while self.segments.len() > 1 {
            let Some((first, segment)) = self.segments.first_key_value() else { break };
            let all_truncated = segment
                .rows_max
                .iter()
                .all(|(table, row_max)| self.tables.get(table).is_some_and(|t| t.archived || *row_max < t.before));
            let archived = segment.archived
                || segment.rows_max.keys().any(|table| self.tables.get(table).is_some_and(|t| t.archived));
            let redo_durable =
                segment.redo_frame_max.is_none_or(|frame| self.redo_durable.is_some_and(|durable| frame <= durable));
            if !all_truncated || !redo_durable {
                break;
            }
            let first = *first;
            if let Some(segment) = self.segments.remove(&first) {
                dead.push(DeadSegment { path: segment.path, archived });
            }
        }
        dead
    }
}

/// A log table's writes in one group commit, as the committer hands them over.
pub(crate) enum Entry<'a> {
    Row {
        table: Table,
        row: u64,
        bytes: Vec<u8>,
    },
    /// A row of an archive (see the module docs, "Archived rows").
    Archived {
        table: Table,
        row: u64,
        bytes: Vec<u8>,
    },
    Truncate {
        table: Table,
        before: u64,
    },
    /// A keyed write, kept to redo (a frame flagged [`FLAG_REDO`]).
    Put {
        table: Table,
        key: &'a [u8],
        value: &'a [u8],
    },
    /// A keyed delete, kept to redo.
    Delete {
        table: Table,
        key: &'a [u8],
    },
}

impl Entry<'_> {
    /// Bytes of the entry in a frame (at most: the table name is cut at 255 bytes).
    fn encoded_bytes_max(&self) -> usize {
        match self {
            Entry::Row { table, bytes, .. } | Entry::Archived { table, bytes, .. } => {
                2 + table.0.len() + 8 + 4 + bytes.len()
            }
            Entry::Truncate { table, .. } => 2 + table.0.len() + 8,
            Entry::Put { table, key, value } => 2 + table.0.len() + 4 + key.len() + 4 + value.len(),
            Entry::Delete { table, key } => 2 + table.0.len() + 4 + key.len(),
        }
    }
}

/// A keyed write recovered from a frame after fjall's mark, to redo at a start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Redo {
    pub(crate) table: String,
    pub(crate) key: Vec<u8>,
    /// `None`: a delete.
    pub(crate) value: Option<Vec<u8>>,
}

/// The segment being written: a handle for direct writes, and the buffered one that its rows'
/// [`Location`]s read through.
struct Appending {
    writes: File,
    reads: Arc<File>,
}

struct Writer {
    /// The segment being written; `None` until the first write after a start that found no
    /// segment, or only an empty one after older ones, or a last segment that does not end on
    /// a block boundary (then the next write starts a segment, with the tables' state entries).
    file: Option<Appending>,
    /// First frame of the segment being written.
    segment: u64,
    segment_bytes: u64,
    /// The segment's file holds zeros from `segment_bytes` up to here (written and durable
    /// once the frame that wrote them was fsynced, or found at a start).
    zeroed_end: u64,
    next_frame: u64,
    /// Set after a failed write: nothing more is written (the store is fail-stop anyway).
    failed: bool,
    /// Where frames are built, kept from frame to frame so that its pages stay mapped.
    buffer: Vec<u8>,
    /// Zeros to write ahead from (a block-aligned part of it); empty until first needed.
    zeros: Vec<u8>,
}

/// The journal of log rows (see the module docs).
pub(crate) struct Journal {
    dir: PathBuf,
    index: RwLock<Index>,
    writer: Mutex<Writer>,
    /// Threads unlinking dead segments, joined when the journal closes, so that a reopen
    /// never lists a file that is being deleted.
    unlinks: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The keyed writes a start must redo ([`Journal::take_redo`]), with the last frame they
    /// came from.
    redo: Mutex<Option<(u64, Vec<Redo>)>>,
}

/// A frame as recovery reads it.
struct Frame {
    number: u64,
    flags: u8,
    /// Offset of the payload in its segment.
    payload_offset: u64,
    payload_bytes: usize,
}

impl Journal {
    /// Open the journal in `db_dir`, recovering what its segments hold. `keyed_mark` is the
    /// number of the last frame whose fjall part is durable (see the module docs).
    pub(crate) fn open(db_dir: &Path, keyed_mark: Option<u64>) -> Result<Journal> {
        let dir = db_dir.join(FOLDER);
        std::fs::create_dir_all(&dir).map_err(|e| storage_error("journal: create folder", e))?;
        let names = segment_names(&dir)?;
        // The caller had fjall persist what it recovered, so its mark is durable.
        let mut index = Index { redo_durable: keyed_mark, ..Index::default() };
        let mut redo: Vec<Redo> = Vec::new();
        let mut redo_frame_last = None;
        let mut next_frame = 0u64;
        let mut last: Option<(u64, Arc<File>, u64, u64)> = None;
        for (position, first) in names.iter().enumerate() {
            let is_last = position + 1 == names.len();
            let path = segment_path(&dir, *first);
            let file = Arc::new(
                OpenOptions::new()
                    .read(true)
                    .write(is_last)
                    .open(&path)
                    .map_err(|e| storage_error("journal: open segment", e))?,
            );
            let Frames { bytes, mut frames, valid_end } = read_frames(&file, &path, is_last)?;
            let mut valid_end = valid_end;
            if let Some(frame) = frames.last() {
                let keyed_not_durable = frame.flags & FLAG_KEYED != 0 && keyed_mark.is_none_or(|m| frame.number > m);
                if keyed_not_durable {
                    if !is_last {
                        return Err(storage_error("journal", "a frame whose keyed part is missing is not the last"));
                    }
                    valid_end = frame.payload_offset - HEADER_BYTES as u64;
                    frames.pop();
                }
            }
            let mut segment = Segment::new(path.clone());
            for (count, frame) in frames.iter().enumerate() {
                if frame.number < next_frame {
                    return Err(storage_error("journal", format!("frame {} after frame {}", frame.number, next_frame)));
                }
                // A segment's frames are numbered on from its name: a gap would be a lost frame
                // (which skipping zeros as padding must never hide).
                if Some(frame.number) != first.checked_add(count as u64) {
                    return Err(storage_error(
                        "journal",
                        format!(
                            "frame {} where frame {} belongs in {}",
                            frame.number,
                            first.saturating_add(count as u64),
                            path.display()
                        ),
                    ));
                }
                next_frame = frame.number.checked_add(1).ok_or_else(|| storage_error("journal", "frames exhausted"))?;
                let start = frame.payload_offset as usize;
                let payload = &bytes[start..start + frame.payload_bytes];
                let flagged_redo = frame.flags & FLAG_REDO != 0;
                // Fjall holds the keyed writes of the frames up to its mark; the later ones
                // are redone.
                let redo_wanted = flagged_redo && keyed_mark.is_none_or(|mark| frame.number > mark);
                if flagged_redo {
                    segment.redo_frame_max = Some(frame.number);
                }
                if redo_wanted {
                    redo_frame_last = Some(frame.number);
                }
                let redo = if redo_wanted { Some(&mut redo) } else { None };
                apply_payload(&mut index, &mut segment, &file, frame.payload_offset, payload, redo)?;
            }
            if is_last {
                // A torn or not durable tail is cut off so that appends continue after the last
                // good frame; zeros written ahead stay for the frames to come.
                let tail_is_zeros = bytes[valid_end as usize..].iter().all(|b| *b == 0);
                let zeroed_end = if tail_is_zeros { bytes.len() as u64 } else { valid_end };
                if !tail_is_zeros {
                    file.set_len(valid_end).map_err(|e| storage_error("journal: truncate torn tail", e))?;
                    file.sync_all().map_err(|e| storage_error("journal: sync", e))?;
                }
                if valid_end == 0 && position > 0 {
                    // A segment whose first frame never made it (a crash right after it was
                    // created): that frame carried the state entries, so the next write must
                    // start a segment again rather than append here.
                    drop(file);
                    std::fs::remove_file(&path).map_err(|e| storage_error("journal: remove empty segment", e))?;
                    continue;
                }
                last = Some((*first, file.clone(), valid_end, zeroed_end));
            }
            index.segments.insert(*first, segment);
        }
        for table in index.tables.values_mut() {
            let before = table.before;
            if table.archived {
                table.rows.clear();
            }
            table.rows.retain(|row, _| *row >= before);
        }
        index.frames_visible_end = next_frame;
        // At a start nothing waits for it, so the dead segments go now.
        retire_segments(&db_dir.join(ARCHIVE_FOLDER), index.take_dead_segments())?;
        let (segment, file, segment_bytes, zeroed_end) = match last {
            // Appends go on in the last segment when its frames end on a block boundary (one
            // written before frames were aligned may not: the next write starts a new segment).
            Some((segment, reads, bytes, zeroed_end)) if bytes % BLOCK_BYTES as u64 == 0 => {
                let path = segment_path(&dir, segment);
                (segment, Some(Appending { writes: open_for_writes(&path)?, reads }), bytes, zeroed_end)
            }
            Some(_) | None => (next_frame, None, 0, 0),
        };
        assert!(zeroed_end >= segment_bytes, "zeros are ahead of the frames");
        let writer = Writer {
            file,
            segment,
            segment_bytes,
            zeroed_end,
            next_frame,
            failed: false,
            buffer: Vec::new(),
            zeros: Vec::new(),
        };
        Ok(Journal {
            dir,
            index: RwLock::new(index),
            writer: Mutex::new(writer),
            unlinks: Mutex::new(Vec::new()),
            redo: Mutex::new(redo_frame_last.map(|frame| (frame, redo))),
        })
    }

    /// The keyed writes of the frames after fjall's mark, in order, with the last frame they
    /// came from: what a start redoes in fjall (see the module docs). `None` when there are
    /// none, and after the first call.
    pub(crate) fn take_redo(&self) -> Option<(u64, Vec<Redo>)> {
        self.redo.lock().take()
    }

    /// Fjall holds, durably, the keyed writes of every frame up to `frame`: segments kept for
    /// them may go.
    pub(crate) fn set_redo_durable(&self, frame: u64) {
        let dead = {
            let mut index = self.index.write();
            assert!(index.redo_durable.is_none_or(|durable| durable <= frame), "fjall's durable mark only grows");
            index.redo_durable = Some(frame);
            index.take_dead_segments()
        };
        self.delete_in_background(dead);
    }

    /// The number the next row of `table` gets (0 for a table never written).
    pub(crate) fn next_row(&self, table: Table) -> u64 {
        self.index.read().tables.get(table.0).map_or(0, |t| t.next)
    }

    /// Write `entries` as one frame and fsync it; returns the frame's number. Nothing is visible
    /// to readers until [`Journal::publish`]. `keyed` flags a frame whose group also writes to
    /// fjall (see the module docs).
    pub(crate) fn write(&self, entries: &[Entry], keyed: bool) -> Result<Written> {
        let mut writer = self.writer.lock();
        if writer.failed {
            return Err(storage_error("journal", "an earlier write failed"));
        }
        let outcome = self.write_frame(&mut writer, entries, keyed);
        if outcome.is_err() {
            writer.failed = true;
        }
        outcome
    }

    fn write_frame(&self, writer: &mut Writer, entries: &[Entry], keyed: bool) -> Result<Written> {
        let number = writer.next_frame;
        let roll = writer.file.is_none() || writer.segment_bytes >= SEGMENT_BYTES_MAX;
        let rolled = if roll { Some(create_segment(&self.dir, number)?) } else { None };
        let state: Vec<(String, u64, u64)> = match rolled {
            // A new segment starts with every table's state, so that the old ones can go.
            Some(_) => self.index.read().tables.iter().map(|(name, t)| (name.clone(), t.next, t.before)).collect(),
            None => Vec::new(),
        };
        let mut frame = FrameBuffer::start(&mut writer.buffer, frame_bytes_max(entries, &state));
        for (name, next, before) in &state {
            frame.head(STATE, name)?;
            frame.put(&next.to_le_bytes());
            frame.put(&before.to_le_bytes());
        }
        let mut rows = Vec::new();
        let mut archived = Vec::new();
        for entry in entries {
            match entry {
                Entry::Row { table, row, bytes } => {
                    frame.head(ROW, table.0)?;
                    frame.put(&row.to_le_bytes());
                    let length = u32::try_from(bytes.len()).map_err(|_| storage_error("journal", "row over 4 GiB"))?;
                    frame.put(&length.to_le_bytes());
                    rows.push((table.0, *row, frame.len() as u64, length));
                    frame.put(bytes);
                }
                Entry::Archived { table, row, bytes } => {
                    frame.head(ARCHIVED, table.0)?;
                    frame.put(&row.to_le_bytes());
                    let length = u32::try_from(bytes.len()).map_err(|_| storage_error("journal", "row over 4 GiB"))?;
                    frame.put(&length.to_le_bytes());
                    frame.put(bytes);
                    archived.push((table.0, *row));
                }
                Entry::Truncate { table, before } => {
                    frame.head(TRUNCATE, table.0)?;
                    frame.put(&before.to_le_bytes());
                }
                Entry::Put { table, key, value } => {
                    frame.head(PUT, table.0)?;
                    frame.put_bytes(key)?;
                    frame.put_bytes(value)?;
                }
                Entry::Delete { table, key } => {
                    frame.head(DELETE, table.0)?;
                    frame.put_bytes(key)?;
                }
            }
        }
        let redo = entries.iter().any(|e| matches!(e, Entry::Put { .. } | Entry::Delete { .. }));
        assert!(!(redo && keyed), "a group's keyed writes are either redone from its frame or fsynced by fjall");
        let flags = if keyed {
            FLAG_KEYED
        } else if redo {
            FLAG_REDO
        } else {
            0
        };
        let frame = frame.finish(number, flags)?;
        assert_eq!(frame.len() % BLOCK_BYTES, 0, "frames are whole blocks");
        if let Some(path) = &rolled {
            writer.file = Some(Appending { writes: open_for_writes(path)?, reads: read_handle(path)? });
            writer.segment = number;
            writer.segment_bytes = 0;
            writer.zeroed_end = 0;
        }
        let frame_offset = writer.segment_bytes;
        let appending = writer.file.as_ref().ok_or_else(|| storage_error("journal", "no segment to write"))?;
        appending.writes.write_all_at(frame, frame_offset).map_err(|e| storage_error("journal: write", e))?;
        let frame_end = frame_offset + frame.len() as u64;
        // Before the fsync, so that it covers the zeros as well (one sync per commit).
        writer.zeroed_end =
            zero_ahead(&appending.writes, &mut writer.zeros, frame_end, writer.zeroed_end.max(frame_end))?;
        appending.writes.sync_data().map_err(|e| storage_error("journal: fsync", e))?;
        let file = appending.reads.clone();
        writer.segment_bytes = frame_end;
        writer.next_frame = number.checked_add(1).ok_or_else(|| storage_error("journal", "frames exhausted"))?;
        if writer.buffer.capacity() > FRAME_BUFFER_KEPT_BYTES_MAX {
            writer.buffer = Vec::new();
        }
        let rows = rows
            .into_iter()
            .map(|(table, row, offset, bytes)| {
                (table, row, Location { file: file.clone(), offset: frame_offset + offset, bytes })
            })
            .collect();
        let truncations = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Truncate { table, before } => Some((table.0, *before)),
                Entry::Row { .. } | Entry::Archived { .. } | Entry::Put { .. } | Entry::Delete { .. } => None,
            })
            .collect();
        let rolled = rolled.map(|_| number);
        Ok(Written { number, segment: writer.segment, rolled, rows, archived, truncations, redo })
    }

    /// Make a written frame's rows visible and apply its truncations (after the group's fjall
    /// part, if any, is durable too). Segments that became dead are deleted in the background.
    pub(crate) fn publish(&self, written: Written) {
        let mut index = self.index.write();
        if let Some(first) = written.rolled {
            index.segments.insert(first, Segment::new(segment_path(&self.dir, first)));
        }
        if written.redo {
            if let Some(segment) = index.segments.get_mut(&written.segment) {
                segment.redo_frame_max = Some(written.number);
            }
        }
        for (table, row, location) in written.rows {
            let entry = index.tables.entry(table.to_string()).or_default();
            entry.rows.insert(row, location);
            entry.next = entry.next.max(row + 1);
            if let Some(segment) = index.segments.get_mut(&written.segment) {
                let row_max = segment.rows_max.entry(table.to_string()).or_insert(row);
                *row_max = (*row_max).max(row);
            }
        }
        for (table, row) in written.archived {
            let entry = index.tables.entry(table.to_string()).or_default();
            note_archived(entry, row);
            if let Some(segment) = index.segments.get_mut(&written.segment) {
                segment.archived = true;
            }
        }
        for (table, before) in written.truncations {
            truncate(index.tables.entry(table.to_string()).or_default(), before);
        }
        index.frames_visible_end = index.frames_visible_end.max(written.number + 1);
        let dead = index.take_dead_segments();
        drop(index);
        self.delete_in_background(dead);
    }

    /// Unlink dead segments, or move them to the archive, on a thread of their own (see the
    /// module docs, "Deleting rows").
    fn delete_in_background(&self, dead: Vec<DeadSegment>) {
        if dead.is_empty() {
            return;
        }
        let archive = self.archive_dir();
        // A failed unlink or move leaves a dead segment behind, which the next start retires.
        let unlink = std::thread::Builder::new()
            .name("dtenge-journal-unlink".into())
            .spawn(move || drop(retire_segments(&archive, dead)));
        let mut unlinks = self.unlinks.lock();
        unlinks.retain(|thread| !thread.is_finished());
        if let Ok(thread) = unlink {
            unlinks.push(thread);
        }
    }

    fn archive_dir(&self) -> PathBuf {
        self.dir.parent().map_or_else(|| PathBuf::from(ARCHIVE_FOLDER), |db| db.join(ARCHIVE_FOLDER))
    }

    /// Every archived row of `table` (see the module docs, "Archived rows"), in order: those
    /// of the segments moved to the archive, then those of the live ones, each handed to `row`
    /// with its number. Reads one segment at a time. Rows a concurrent commit has not
    /// published are left out.
    pub(crate) fn for_each_archived(&self, table: Table, mut row: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let archive = self.archive_dir();
        // Listed live folder first: a segment moves only from it to the archive, atomically,
        // so one that is not there any more is in the archive when that is listed after.
        let mut firsts: BTreeMap<u64, ()> = BTreeMap::new();
        for dir in [&self.dir, &archive] {
            for first in segment_names(dir)? {
                firsts.insert(first, ());
            }
        }
        let visible_end = self.index.read().frames_visible_end;
        let newest = firsts.keys().next_back().copied();
        for first in firsts.into_keys() {
            let file = match File::open(segment_path(&self.dir, first)) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match File::open(segment_path(&archive, first)) {
                    Ok(file) => file,
                    // Unlinked meanwhile: it held no archived rows.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(storage_error("journal: open archived segment", e)),
                },
                Err(e) => return Err(storage_error("journal: open segment", e)),
            };
            let path = segment_path(&self.dir, first);
            // The segment being written may end in a frame being written.
            let Frames { bytes, frames, .. } = read_frames(&file, &path, Some(first) == newest)?;
            for frame in frames.iter().filter(|f| f.number < visible_end) {
                let start = frame.payload_offset as usize;
                let payload = &bytes[start..start + frame.payload_bytes];
                for_each_entry(payload, |kind, name, body| {
                    let wanted = (kind == ARCHIVED || kind == ROW) && name == table.0;
                    if !wanted {
                        return Ok(());
                    }
                    let (number, bytes) = row_entry(body)?;
                    row(number, bytes)
                })?;
            }
        }
        Ok(())
    }

    /// The rows of `table` numbered `from` or more, in order.
    pub(crate) fn rows_from(&self, table: Table, from: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        self.rows_from_max(table, from, usize::MAX)
    }

    /// At most `rows_max` of the rows [`Journal::rows_from`] reads, the first ones.
    pub(crate) fn rows_from_max(&self, table: Table, from: u64, rows_max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let locations: Vec<(u64, Location)> = {
            let index = self.index.read();
            let Some(table) = index.tables.get(table.0) else { return Ok(Vec::new()) };
            table.rows.range(from..).take(rows_max).map(|(row, location)| (*row, location.clone())).collect()
        };
        let mut rows = Vec::with_capacity(locations.len());
        for (row, location) in locations {
            let mut bytes = vec![0u8; location.bytes as usize];
            location.file.read_exact_at(&mut bytes, location.offset).map_err(|e| storage_error("journal: read", e))?;
            rows.push((row, bytes));
        }
        Ok(rows)
    }

    /// How many rows of `table` are live.
    pub(crate) fn row_count(&self, table: Table) -> u64 {
        self.index.read().tables.get(table.0).map_or(0, |t| t.rows.len() as u64)
    }

    /// Where the next frame goes in the segment being written (the end of the last frame).
    #[cfg(test)]
    pub(crate) fn frames_end(&self) -> u64 {
        self.writer.lock().segment_bytes
    }

    /// How many segment files the journal holds.
    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.index.read().segments.len()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        for thread in self.unlinks.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

/// What [`Journal::write`] wrote, for [`Journal::publish`].
pub(crate) struct Written {
    pub(crate) number: u64,
    segment: u64,
    rolled: Option<u64>,
    rows: Vec<(&'static str, u64, Location)>,
    /// The archived rows' tables and numbers.
    archived: Vec<(&'static str, u64)>,
    truncations: Vec<(&'static str, u64)>,
    /// The frame holds keyed writes to redo ([`FLAG_REDO`]).
    redo: bool,
}

fn truncate(table: &mut TableIndex, before: u64) {
    if before <= table.before {
        return;
    }
    table.before = before;
    table.next = table.next.max(before);
    table.rows = table.rows.split_off(&before);
}

/// An archived row was written or recovered: the table is an archive from now on, and rows
/// of it indexed before (written as [`ROW`] entries by a build before archives) are dropped
/// from the index, so that they keep no segment alive.
fn note_archived(table: &mut TableIndex, row: u64) {
    if !table.archived {
        table.archived = true;
        table.rows.clear();
    }
    table.next = table.next.max(row + 1);
}

/// Delete dead segments, or move those holding archived rows into `archive` (made durable by
/// an fsync of both folders).
fn retire_segments(archive: &Path, dead: Vec<DeadSegment>) -> Result<()> {
    let mut moved_from = None;
    for segment in dead {
        if !segment.archived {
            std::fs::remove_file(&segment.path).map_err(|e| storage_error("journal: delete dead segment", e))?;
            continue;
        }
        let name = segment.path.file_name().ok_or_else(|| storage_error("journal", "a segment without a name"))?;
        std::fs::create_dir_all(archive).map_err(|e| storage_error("journal: create archive folder", e))?;
        std::fs::rename(&segment.path, archive.join(name)).map_err(|e| storage_error("journal: archive segment", e))?;
        moved_from = segment.path.parent().map(Path::to_path_buf);
    }
    if let Some(from) = moved_from {
        for dir in [archive, from.as_path()] {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| storage_error("journal: sync folder", e))?;
        }
    }
    Ok(())
}

/// The first frame numbers of the segment files in `dir` (none when it does not exist).
fn segment_names(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(storage_error("journal: list", e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| storage_error("journal: list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(first) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) else {
            return Err(storage_error("journal", format!("unexpected file {name:?} in {}", dir.display())));
        };
        names.push(first);
    }
    names.sort_unstable();
    Ok(names)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Create a segment file and make its name durable (fsync of the folder). The caller opens it
/// for writes and for reads.
fn create_segment(dir: &Path, first: u64) -> Result<PathBuf> {
    let path = segment_path(dir, first);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| storage_error("journal: create segment", e))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| storage_error("journal: sync folder", e))?;
    Ok(path)
}

/// Keep zeros written ahead of the frames (see the module docs): when fewer than
/// [`ZERO_REFILL_BELOW_BYTES`] remain after `frames_end` (the file holds zeros up to
/// `zeroed_end`), write zeros up to [`ZERO_AHEAD_BYTES`] past it, but not past the segment's
/// size (a frame there rolls to a new segment). Returns the new end of the zeros. The caller's
/// fsync makes them durable.
fn zero_ahead(file: &File, zeros: &mut Vec<u8>, frames_end: u64, zeroed_end: u64) -> Result<u64> {
    assert!(zeroed_end >= frames_end, "zeros start where the frames end");
    assert_eq!(frames_end % BLOCK_BYTES as u64, 0, "frames are whole blocks");
    let target = (frames_end + ZERO_AHEAD_BYTES).min(SEGMENT_BYTES_MAX);
    if zeroed_end - frames_end >= ZERO_REFILL_BELOW_BYTES || zeroed_end >= target {
        return Ok(zeroed_end);
    }
    if zeros.is_empty() {
        *zeros = vec![0u8; ZERO_BUFFER_BYTES + BLOCK_BYTES];
    }
    let start = zeros.as_ptr().align_offset(BLOCK_BYTES);
    assert!(start < BLOCK_BYTES, "an offset within one block aligns a byte buffer");
    let chunk = &zeros[start..start + ZERO_BUFFER_BYTES];
    let mut at = zeroed_end;
    // Bounded: ZERO_AHEAD_BYTES / ZERO_BUFFER_BYTES writes at most.
    while at < target {
        let bytes = (target - at).min(ZERO_BUFFER_BYTES as u64) as usize;
        file.write_all_at(&chunk[..bytes], at).map_err(|e| storage_error("journal: write zeros", e))?;
        at += bytes as u64;
    }
    Ok(at)
}

/// A segment's handle for frame writes: `O_DIRECT` where the file system takes it (see the
/// module docs), buffered where it refuses it (`EINVAL`).
fn open_for_writes(path: &Path) -> Result<File> {
    let direct = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path);
    match direct {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => OpenOptions::new().write(true).open(path),
        Err(e) => Err(e),
    }
    .map_err(|e| storage_error("journal: open segment for writes", e))
}

/// The buffered handle a segment's rows are read through.
fn read_handle(path: &Path) -> Result<Arc<File>> {
    File::open(path).map(Arc::new).map_err(|e| storage_error("journal: open segment", e))
}

/// The largest frame `entries` (and a new segment's `state` entries) can make, padding included.
fn frame_bytes_max(entries: &[Entry], state: &[(String, u64, u64)]) -> usize {
    let state_bytes: usize = state.iter().map(|(name, _, _)| 2 + name.len() + 16).sum();
    let payload_bytes: usize = entries.iter().map(Entry::encoded_bytes_max).sum::<usize>() + state_bytes;
    (HEADER_BYTES + payload_bytes).next_multiple_of(BLOCK_BYTES)
}

/// One frame being built in the writer's buffer, at an offset of it that is aligned to
/// [`BLOCK_BYTES`] (a `Vec<u8>` promises no alignment, so the frame starts where the buffer's
/// memory reaches a block boundary).
struct FrameBuffer<'a> {
    buffer: &'a mut Vec<u8>,
    /// Where the frame (its header) starts in `buffer`.
    start: usize,
}

impl<'a> FrameBuffer<'a> {
    /// Room for a frame of up to `bytes_max`, with its header zeroed until [`FrameBuffer::finish`].
    fn start(buffer: &'a mut Vec<u8>, bytes_max: usize) -> FrameBuffer<'a> {
        buffer.clear();
        // Reserved once up front, so that building never moves the buffer (finish checks).
        buffer.reserve(bytes_max + BLOCK_BYTES);
        let start = buffer.as_ptr().align_offset(BLOCK_BYTES);
        assert!(start < BLOCK_BYTES, "an offset within one block aligns a byte buffer");
        buffer.resize(start + HEADER_BYTES, 0);
        FrameBuffer { buffer, start }
    }

    /// Bytes of the frame so far, header included: the offset of what comes next.
    fn len(&self) -> usize {
        self.buffer.len() - self.start
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes with their length before them (`u32`).
    fn put_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let length = u32::try_from(bytes.len()).map_err(|_| storage_error("journal", "a key or value over 4 GiB"))?;
        self.put(&length.to_le_bytes());
        self.put(bytes);
        Ok(())
    }

    /// An entry's head: its kind and its table's name.
    fn head(&mut self, kind: u8, table: &str) -> Result<()> {
        let length = u8::try_from(table.len()).map_err(|_| storage_error("journal", "table name over 255 bytes"))?;
        self.buffer.push(kind);
        self.buffer.push(length);
        self.buffer.extend_from_slice(table.as_bytes());
        Ok(())
    }

    /// Fill in the header, pad with zeros to whole blocks, and return the frame, aligned.
    fn finish(self, number: u64, flags: u8) -> Result<&'a [u8]> {
        let FrameBuffer { buffer, start } = self;
        // `start` reserved a block more than the largest frame the entries can make, so
        // building never reallocated the buffer and `start` is still on a block boundary.
        assert_eq!(buffer.as_ptr().align_offset(BLOCK_BYTES), start, "the frame buffer never moves");
        let payload_bytes = buffer.len() - start - HEADER_BYTES;
        let payload_length = u32::try_from(payload_bytes)
            .map_err(|_| storage_error("journal", format!("a frame of {payload_bytes} bytes")))?;
        let crc = checksum(number, flags, &buffer[start + HEADER_BYTES..]);
        let header = &mut buffer[start..start + HEADER_BYTES];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&payload_length.to_le_bytes());
        header[8..12].copy_from_slice(&crc.to_le_bytes());
        header[12..20].copy_from_slice(&number.to_le_bytes());
        header[20] = flags;
        let padded = (buffer.len() - start).next_multiple_of(BLOCK_BYTES);
        buffer.resize(start + padded, 0);
        let frame = &buffer[start..];
        assert_eq!(frame.as_ptr().align_offset(BLOCK_BYTES), 0, "the frame is block-aligned");
        Ok(frame)
    }
}

fn checksum(number: u64, flags: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(&[flags]);
    hasher.update(payload);
    hasher.finalize()
}

struct Frames {
    /// The whole segment; frames point into it.
    bytes: Vec<u8>,
    frames: Vec<Frame>,
    /// Where the last good frame ends, its padding included (not the zeros written ahead of
    /// it); in the last segment, where a torn frame began.
    valid_end: u64,
}

/// The frames of a segment. A short or corrupt frame ends the last segment (a torn write:
/// it and anything after it are dropped); anywhere else it is an error.
fn read_frames(file: &File, path: &Path, is_last: bool) -> Result<Frames> {
    let mut bytes = Vec::new();
    (&*file).read_to_end(&mut bytes).map_err(|e| storage_error("journal: read segment", e))?;
    let mut frames = Vec::new();
    let mut position = 0usize;
    // Where the last frame ends, with its padding: zeros after it (written ahead) are not part
    // of what was written.
    let mut frames_end = 0usize;
    while position < bytes.len() {
        if let Some((frame, end)) = parse_frame(&bytes, position) {
            frames.push(frame);
            position = end;
            frames_end = end.next_multiple_of(BLOCK_BYTES).min(bytes.len());
            continue;
        }
        // Zeros up to the next block boundary are a frame's padding (frames start on block
        // boundaries; in segments of earlier builds, back to back), and whole blocks of zeros
        // were written ahead of the frames. The frames' numbering catches a frame lost to zeros.
        let aligned = (position + 1).next_multiple_of(BLOCK_BYTES).min(bytes.len());
        if aligned > position && bytes[position..aligned].iter().all(|b| *b == 0) {
            position = aligned;
            continue;
        }
        if is_last {
            // A torn frame: the writes go on where it began.
            frames_end = position;
            break;
        }
        return Err(storage_error(
            "journal",
            format!("corrupt frame at byte {position} of {}, which is not the last segment", path.display()),
        ));
    }
    Ok(Frames { bytes, frames, valid_end: frames_end as u64 })
}

fn parse_frame(bytes: &[u8], position: usize) -> Option<(Frame, usize)> {
    let header = bytes.get(position..position.checked_add(HEADER_BYTES)?)?;
    let magic = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let length = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let number = u64::from_le_bytes(header[12..20].try_into().ok()?);
    let flags = header[20];
    let start = position + HEADER_BYTES;
    let payload = bytes.get(start..start.checked_add(length)?)?;
    if magic != MAGIC || checksum(number, flags, payload) != crc {
        return None;
    }
    let frame = Frame { number, flags, payload_offset: start as u64, payload_bytes: payload.len() };
    Some((frame, start + length))
}

/// Hand each entry of a frame's payload to `entry`: its kind, its table's name and its body
/// (what follows the name, up to the next entry).
fn for_each_entry(payload: &[u8], mut entry: impl FnMut(u8, &str, &[u8]) -> Result<()>) -> Result<()> {
    let corrupt = || storage_error("journal", "a frame whose checksum holds has a malformed entry");
    let length_at = |at: usize| -> Result<usize> {
        let bytes = payload.get(at..at + 4).ok_or_else(corrupt)?;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| corrupt())?) as usize)
    };
    let mut position = 0usize;
    // Bounded: every entry moves `position` past its kind and name at least.
    while position < payload.len() {
        let kind = payload[position];
        let name_bytes = *payload.get(position + 1).ok_or_else(corrupt)? as usize;
        let name_start = position + 2;
        let name = payload.get(name_start..name_start + name_bytes).ok_or_else(corrupt)?;
        let name = std::str::from_utf8(name).map_err(|_| corrupt())?;
        let body = name_start + name_bytes;
        let body_bytes = match kind {
            ROW | ARCHIVED => 8 + 4 + length_at(body + 8)?,
            TRUNCATE => 8,
            STATE => 16,
            PUT => {
                let key_bytes = length_at(body)?;
                4 + key_bytes + 4 + length_at(body + 4 + key_bytes)?
            }
            DELETE => 4 + length_at(body)?,
            _ => return Err(corrupt()),
        };
        let body = payload.get(body..body + body_bytes).ok_or_else(corrupt)?;
        entry(kind, name, body)?;
        position = name_start + name_bytes + body_bytes;
    }
    Ok(())
}

/// A [`ROW`] or [`ARCHIVED`] entry's body: its row number and its bytes.
fn row_entry(body: &[u8]) -> Result<(u64, &[u8])> {
    let corrupt = || storage_error("journal", "a malformed row entry");
    let (number, rest) = body.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (_length, bytes) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    Ok((u64::from_le_bytes(*number), bytes))
}

/// The `[length u32][bytes]` at the start of `body`, and what follows it.
fn length_prefixed(body: &[u8]) -> Result<(&[u8], &[u8])> {
    let corrupt = || storage_error("journal", "a malformed keyed entry");
    let (length, rest) = body.split_first_chunk::<4>().ok_or_else(corrupt)?;
    rest.split_at_checked(u32::from_le_bytes(*length) as usize).ok_or_else(corrupt)
}

/// Apply a recovered frame's entries to the index; its keyed writes go to `redo` when given.
fn apply_payload(
    index: &mut Index,
    segment: &mut Segment,
    file: &Arc<File>,
    payload_offset: u64,
    payload: &[u8],
    mut redo: Option<&mut Vec<Redo>>,
) -> Result<()> {
    let payload_start = payload.as_ptr() as usize;
    for_each_entry(payload, |kind, name, body| {
        // Keyed writes are fjall's, not a log table's: kept only to redo.
        if kind == PUT || kind == DELETE {
            if let Some(redo) = redo.as_mut() {
                let (key, rest) = length_prefixed(body)?;
                let value = if kind == PUT { Some(length_prefixed(rest)?.0.to_vec()) } else { None };
                redo.push(Redo { table: name.to_string(), key: key.to_vec(), value });
            }
            return Ok(());
        }
        let table = index.tables.entry(name.to_string()).or_default();
        match kind {
            ROW => {
                let (row, bytes) = row_entry(body)?;
                table.next = table.next.max(row + 1);
                let row_max = segment.rows_max.entry(name.to_string()).or_insert(row);
                *row_max = (*row_max).max(row);
                // Rows of a table that is an archive by now are not indexed (see
                // `note_archived`); those read before it turned out to be one are dropped at
                // the end of the recovery.
                if !table.archived {
                    let offset = payload_offset + (bytes.as_ptr() as usize - payload_start) as u64;
                    table.rows.insert(row, Location { file: file.clone(), offset, bytes: bytes.len() as u32 });
                }
            }
            ARCHIVED => {
                let (row, _) = row_entry(body)?;
                note_archived(table, row);
                segment.archived = true;
            }
            TRUNCATE | STATE => {
                let (first, rest) = body.split_first_chunk::<8>().ok_or_else(|| storage_error("journal", "short"))?;
                let first = u64::from_le_bytes(*first);
                if kind == TRUNCATE {
                    table.before = table.before.max(first);
                    table.next = table.next.max(first);
                } else {
                    let before = rest.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)).unwrap_or(0);
                    table.next = table.next.max(first);
                    table.before = table.before.max(before);
                }
            }
            _ => unreachable!("for_each_entry knows every kind"),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Table = Table("a");
    const B: Table = Table("b");

    use std::io::Write;

    fn row(table: Table, row: u64, fill: u8) -> Entry<'static> {
        Entry::Row { table, row, bytes: vec![fill; 1_000] }
    }

    fn write(journal: &Journal, entries: &[Entry], keyed: bool) -> u64 {
        let written = journal.write(entries, keyed).unwrap();
        let number = written.number;
        journal.publish(written);
        number
    }

    fn rows(journal: &Journal, table: Table) -> Vec<(u64, u8)> {
        journal.rows_from(table, 0).unwrap().into_iter().map(|(n, bytes)| (n, bytes[0])).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(FOLDER)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    #[test]
    fn rows_read_back_after_reopen_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            write(&journal, &[row(A, 0, 1), row(B, 0, 2)], false);
            write(&journal, &[row(A, 1, 3)], false);
            assert_eq!(rows(&journal, A), vec![(0, 1), (1, 3)]);
        }
        // A write torn by a crash: the last frame (one block: a header and a row of 1,000
        // bytes, then zeros) lost its last bytes of payload.
        let last = segment_files(dir.path()).pop().unwrap();
        let length = std::fs::metadata(&last).unwrap().len();
        assert_eq!(length, BLOCK_BYTES as u64 + ZERO_AHEAD_BYTES, "the first frame's zeros ahead took the second");
        assert_eq!(std::fs::read(&last).unwrap()[2 * BLOCK_BYTES..], vec![0; length as usize - 2 * BLOCK_BYTES]);
        let frame_start = BLOCK_BYTES as u64;
        OpenOptions::new().write(true).open(&last).unwrap().set_len(frame_start + 1_000).unwrap();
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(rows(&journal, A), vec![(0, 1)]);
        assert_eq!(rows(&journal, B), vec![(0, 2)]);
        assert_eq!(journal.next_row(A), 1);
        // Appends continue after the last good frame, and read back after another reopen.
        write(&journal, &[row(A, 1, 4)], false);
        drop(journal);
        // Garbage after the last frame (a torn header) is cut off too.
        let last = segment_files(dir.path()).pop().unwrap();
        OpenOptions::new().append(true).open(&last).unwrap().write_all(&[0xAB; 7]).unwrap();
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(rows(&journal, A), vec![(0, 1), (1, 4)]);
    }

    /// Issue 20: an archive's rows are written in the frames but keep no segment alive; dead
    /// segments holding some move to the archive folder, where a start does not read them and
    /// [`Journal::for_each_archived`] does. Rows a build before archives wrote as a log of the
    /// same table become archived too.
    #[test]
    fn archived_rows_keep_no_segment_alive_and_read_back_from_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let archived = |row: u64, fill: u8| Entry::Archived { table: B, row, bytes: vec![fill; 1_000] };
        let archive_rows = |journal: &Journal| {
            let mut found = Vec::new();
            journal
                .for_each_archived(B, |number, bytes| {
                    assert_eq!(bytes.len(), 1_000);
                    found.push((number, bytes[0]));
                    Ok(())
                })
                .unwrap();
            found
        };
        let expected = |count: u8| (0..count).map(|n| (u64::from(n), 100 + n)).collect::<Vec<_>>();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            write(&journal, &[row(A, 0, 0), row(B, 0, 100)], false);
            for n in 1..12u8 {
                write(&journal, &[row(A, u64::from(n), n), archived(u64::from(n), 100 + n)], false);
            }
            assert!(journal.segment_count() >= 3, "{} segments", journal.segment_count());
            assert!(rows(&journal, B).is_empty(), "an archive's rows are not indexed");
            assert_eq!(archive_rows(&journal), expected(12), "read from the live segments");
            write(&journal, &[Entry::Truncate { table: A, before: 12 }], false);
            assert_eq!(journal.segment_count(), 1, "the archive kept no segment alive");
            assert_eq!(journal.next_row(B), 12);
        }
        let moved = std::fs::read_dir(dir.path().join(ARCHIVE_FOLDER)).unwrap().count();
        assert!(moved >= 2, "{moved} segments moved to the archive");
        assert_eq!(segment_files(dir.path()).len(), 1, "the live folder keeps the segment being written");
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(journal.next_row(B), 12, "the numbering goes on from the state entries");
        assert_eq!(archive_rows(&journal), expected(12));
        write(&journal, &[archived(12, 112)], false);
        assert_eq!(archive_rows(&journal), expected(13));
    }

    #[test]
    fn frames_overwrite_the_zeros_written_ahead_and_a_restart_goes_on_after_the_last_frame() {
        let dir = tempfile::tempdir().unwrap();
        let segment_length = |dir: &Path| std::fs::metadata(segment_files(dir).pop().unwrap()).unwrap().len();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            write(&journal, &[row(A, 0, 1)], false);
            assert_eq!(journal.frames_end(), BLOCK_BYTES as u64);
            assert_eq!(segment_length(dir.path()), BLOCK_BYTES as u64 + ZERO_AHEAD_BYTES);
            write(&journal, &[row(A, 1, 2)], false);
            assert_eq!(segment_length(dir.path()), BLOCK_BYTES as u64 + ZERO_AHEAD_BYTES, "the file did not grow");
        }
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(journal.frames_end(), 2 * BLOCK_BYTES as u64, "after the last frame, not after the zeros");
        write(&journal, &[row(A, 2, 3)], false);
        write(&journal, &[row(A, 3, 4)], false);
        assert_eq!(segment_length(dir.path()), SEGMENT_BYTES_MAX, "zeros never go past the segment's size");
        assert_eq!(journal.segment_count(), 1);
        drop(journal);
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(rows(&journal, A), vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
    }

    #[test]
    fn keyed_writes_after_the_mark_are_redone_and_their_segments_kept_until_durable() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<[u8; 1]> = (0..12u8).map(|n| [n]).collect();
        let put = |n: u8| Entry::Put { table: B, key: b"key", value: &values[usize::from(n)] };
        let frames: Vec<u64> = {
            let journal = Journal::open(dir.path(), None).unwrap();
            let mut frames = Vec::new();
            for n in 0..12u8 {
                frames.push(write(&journal, &[row(A, u64::from(n), n), put(n)], false));
            }
            frames.push(write(&journal, &[Entry::Delete { table: B, key: b"key" }], false));
            // Every row truncated: only the keyed writes fjall has not persisted keep the
            // old segments.
            write(&journal, &[Entry::Truncate { table: A, before: 12 }], false);
            let segments = journal.segment_count();
            assert!(segments >= 3, "{segments} segments");
            journal.set_redo_durable(frames[5]);
            assert!(journal.segment_count() < segments, "the segments up to frame 5 went");
            assert!(journal.segment_count() > 1, "the later ones stay");
            frames
        };
        // Fjall's mark says frame 9: frames 10 and 11 and the delete are redone, in order.
        let journal = Journal::open(dir.path(), Some(frames[9])).unwrap();
        let (last, redo) = journal.take_redo().unwrap();
        assert_eq!(last, frames[12]);
        let redo: Vec<(String, Vec<u8>, Option<Vec<u8>>)> =
            redo.into_iter().map(|r| (r.table, r.key, r.value)).collect();
        let key = b"key".to_vec();
        assert_eq!(
            redo,
            vec![
                ("b".into(), key.clone(), Some(vec![10])),
                ("b".into(), key.clone(), Some(vec![11])),
                ("b".into(), key, None)
            ]
        );
        assert!(journal.take_redo().is_none(), "taken once");
        assert!(rows(&journal, B).is_empty(), "keyed writes are no log table's rows");
        journal.set_redo_durable(frames[12]);
        write(&journal, &[row(A, 12, 1)], false);
        assert_eq!(journal.segment_count(), 1, "every old segment went once fjall held its writes");
    }

    #[test]
    fn a_last_frame_whose_keyed_part_is_not_durable_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = {
            let journal = Journal::open(dir.path(), None).unwrap();
            let first = write(&journal, &[row(A, 0, 1)], true);
            let second = write(&journal, &[row(A, 1, 2)], true);
            (first, second)
        };
        // fjall holds the first frame's mark only: the crash hit between the second frame and
        // its fjall batch.
        let journal = Journal::open(dir.path(), Some(first)).unwrap();
        assert_eq!(rows(&journal, A), vec![(0, 1)]);
        let third = write(&journal, &[row(A, 1, 3)], false);
        assert_eq!(third, second, "the dropped frame's number is reused");
        drop(journal);
        let journal = Journal::open(dir.path(), Some(first)).unwrap();
        assert_eq!(rows(&journal, A), vec![(0, 1), (1, 3)], "a frame without keyed writes needs no mark");
        // With no mark at all, a keyed last frame never counted.
        let dir = tempfile::tempdir().unwrap();
        write(&Journal::open(dir.path(), None).unwrap(), &[row(A, 0, 1)], true);
        assert!(rows(&Journal::open(dir.path(), None).unwrap(), A).is_empty());
    }

    #[test]
    fn truncated_segments_are_deleted_and_sequences_survive_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), None).unwrap();
        for n in 0..40u64 {
            write(&journal, &[row(A, n, n as u8), row(B, n, 0)], false);
        }
        let segments_before = journal.segment_count();
        assert!(segments_before >= 10, "{segments_before} segments of 4 KiB for 80 KB of rows");
        // B is truncated entirely, A up to its last row: only the segment of that row and the
        // one being written stay.
        let written = journal
            .write(&[Entry::Truncate { table: A, before: 39 }, Entry::Truncate { table: B, before: 40 }], false)
            .unwrap();
        journal.publish(written);
        assert!(journal.segment_count() <= 2, "{} segments", journal.segment_count());
        assert_eq!(rows(&journal, A), vec![(39, 39)]);
        assert!(rows(&journal, B).is_empty());
        drop(journal);
        // The unlink runs on a thread of its own, joined when the journal closes.
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(rows(&journal, A), vec![(39, 39)]);
        assert_eq!(journal.next_row(B), 40, "the state entries keep a truncated table's sequence");
        // Rows go on in a new segment after the state entries; only the dead ones went away.
        for n in 40..50u64 {
            write(&journal, &[row(A, n, n as u8)], false);
        }
        drop(journal);
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(rows(&journal, A).len(), 11);
        assert_eq!(journal.next_row(A), 50);
        assert_eq!(journal.next_row(B), 40);
        assert!(segment_files(dir.path()).len() <= journal.segment_count() + 1);
    }

    #[test]
    fn a_crash_right_after_a_segment_was_created_keeps_the_state_of_truncated_tables() {
        let dir = tempfile::tempdir().unwrap();
        let next_frame = {
            let journal = Journal::open(dir.path(), None).unwrap();
            for n in 0..20u64 {
                write(&journal, &[row(A, n, 1)], false);
            }
            write(&journal, &[Entry::Truncate { table: A, before: 20 }], false) + 1
        };
        // The crash: the next segment exists, its first frame (with the state entries) never
        // reached it.
        std::fs::write(segment_path(&dir.path().join(FOLDER), next_frame), b"").unwrap();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            assert_eq!(journal.next_row(A), 20);
            // Every older segment holds only truncated rows of A, so it goes.
            write(&journal, &[row(B, 0, 2)], false);
        }
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(journal.next_row(A), 20, "A's state outlived every segment that held its rows");
        assert_eq!(rows(&journal, B), vec![(0, 2)]);
    }

    #[test]
    fn a_corrupt_frame_before_the_last_segment_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            for n in 0..10u64 {
                write(&journal, &[row(A, n, 1)], false);
            }
            assert!(journal.segment_count() >= 2);
        }
        let first = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER_BYTES + 20] ^= 0xFF;
        std::fs::write(&first, bytes).unwrap();
        let error = Journal::open(dir.path(), None).err().unwrap();
        assert!(error.message.contains("corrupt frame"), "{}", error.message);
        // A stray file is refused rather than ignored.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(FOLDER)).unwrap();
        std::fs::write(dir.path().join(FOLDER).join("notes.txt"), b"x").unwrap();
        assert!(Journal::open(dir.path(), None).is_err());
    }

    /// A frame as builds before block alignment wrote it: no padding.
    fn unaligned_frame(number: u64, table: &str, row: u64, fill: u8) -> Vec<u8> {
        let mut payload = vec![ROW, table.len() as u8];
        payload.extend_from_slice(table.as_bytes());
        payload.extend_from_slice(&row.to_le_bytes());
        payload.extend_from_slice(&100u32.to_le_bytes());
        payload.extend_from_slice(&[fill; 100]);
        let mut frame = MAGIC.to_le_bytes().to_vec();
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&checksum(number, 0, &payload).to_le_bytes());
        frame.extend_from_slice(&number.to_le_bytes());
        frame.push(0);
        frame.extend_from_slice(&payload);
        frame
    }

    #[test]
    fn segments_of_frames_back_to_back_are_read_and_writes_go_on_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(FOLDER);
        std::fs::create_dir_all(&folder).unwrap();
        let mut old = unaligned_frame(0, "a", 0, 5);
        old.extend(unaligned_frame(1, "a", 1, 6));
        std::fs::write(segment_path(&folder, 0), &old).unwrap();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            assert_eq!(rows(&journal, A), vec![(0, 5), (1, 6)]);
            assert_eq!(write(&journal, &[row(A, 2, 7)], false), 2);
        }
        assert_eq!(segment_files(dir.path()).len(), 2, "appends start a segment of aligned frames");
        assert_eq!(std::fs::read(segment_path(&folder, 0)).unwrap(), old, "the old segment is untouched");
        let journal = Journal::open(dir.path(), None).unwrap();
        assert_eq!(rows(&journal, A), vec![(0, 5), (1, 6), (2, 7)]);
    }

    #[test]
    fn a_gap_in_the_frame_numbers_is_an_error_not_padding() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(dir.path(), None).unwrap();
            write(&journal, &[Entry::Row { table: A, row: 0, bytes: vec![1; 10] }], false);
        }
        // In the last segment, after frame 0 and its padding, a frame numbered 2: frame 1 is
        // missing there (as if its bytes had become the zeros read as padding). Without the
        // numbering check this would be read as two good frames.
        let last = segment_files(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&last).unwrap();
        assert!(bytes[BLOCK_BYTES..].iter().all(|b| *b == 0), "one frame, then zeros written ahead");
        bytes.truncate(BLOCK_BYTES);
        bytes.extend(unaligned_frame(2, "a", 9, 1));
        std::fs::write(&last, bytes).unwrap();
        let error = Journal::open(dir.path(), None).err().unwrap();
        assert!(error.message.contains("frame 2 where frame 1 belongs"), "{}", error.message);
    }

    mod crashes {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// Three logs, then an archive ([`ARCHIVE`]), whose rows are written as
        /// [`Entry::Archived`], never truncated, and read back with
        /// [`Journal::for_each_archived`] from the live and the archived segments.
        const TABLES: [Table; 4] = [Table("a"), Table("b"), Table("c"), Table("z")];
        const ARCHIVE: usize = 3;

        #[derive(Clone, Debug)]
        enum Step {
            /// A frame of rows `(table, bytes)`, keyed or not.
            Rows(Vec<(usize, usize)>, bool),
            /// Truncate a table below `permille` of its next row.
            Truncate(usize, u16),
            /// The next frame is torn after `permille` of its bytes, and the process dies.
            Torn(usize, u16),
            /// The next frame, of several blocks, reaches the disk only up to the block at
            /// `permille` of it: the blocks after are zeros, the file keeps its length.
            ZeroedBlocks(usize, u16),
            /// The next frame (keyed) is durable, its fjall half is not, and the process dies.
            KeyedLost(usize),
            /// A clean restart.
            Reopen,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (proptest::collection::vec((0..4usize, 0..2_500usize), 1..4), any::<bool>())
                    .prop_map(|(rows, keyed)| Step::Rows(rows, keyed)),
                // Often the whole table, so that old segments die and get deleted.
                2 => (0..3usize, prop_oneof![0..=1000u16, Just(1000u16)]).prop_map(|(t, p)| Step::Truncate(t, p)),
                1 => (0..3usize, 0..1000u16).prop_map(|(t, p)| Step::Torn(t, p)),
                1 => (0..3usize, 0..1000u16).prop_map(|(t, p)| Step::ZeroedBlocks(t, p)),
                1 => (0..3usize).prop_map(Step::KeyedLost),
                1 => Just(Step::Reopen),
            ]
        }

        /// What the journal must hold: per table its rows (number -> fill byte), next row and
        /// truncation point.
        #[derive(Default, Clone)]
        struct Model {
            tables: BTreeMap<usize, ModelTable>,
        }

        /// Rows (number -> fill byte and length), the next row, the truncation point.
        type ModelTable = (BTreeMap<u64, (u8, usize)>, u64, u64);

        impl Model {
            fn next(&self, t: usize) -> u64 {
                self.tables.get(&t).map_or(0, |m| m.1)
            }
        }

        /// Never zero, so that zeroed blocks always change a frame.
        fn fill(t: usize, row: u64) -> u8 {
            ((t as u64 * 31 + row * 7) % 255 + 1) as u8
        }

        fn check(journal: &Journal, model: &Model) {
            let mut archived = Vec::new();
            journal
                .for_each_archived(TABLES[ARCHIVE], |row, bytes| {
                    archived.push((row, bytes.to_vec()));
                    Ok(())
                })
                .unwrap();
            for (t, table) in TABLES.iter().enumerate() {
                let expected: Vec<(u64, Vec<u8>)> = model
                    .tables
                    .get(&t)
                    .map(|m| m.0.iter().map(|(row, (f, len))| (*row, vec![*f; *len])).collect())
                    .unwrap_or_default();
                let indexed = journal.rows_from(*table, 0).unwrap();
                if t == ARCHIVE {
                    assert!(indexed.is_empty(), "an archive's rows are not indexed");
                    assert_eq!(archived, expected, "the archive");
                } else {
                    assert_eq!(indexed, expected, "table {t}");
                }
                assert_eq!(journal.next_row(*table), model.next(t), "next row of table {t}");
            }
        }

        fn entries(model: &Model, rows: &[(usize, usize)]) -> Vec<Entry<'static>> {
            let mut next: BTreeMap<usize, u64> = BTreeMap::new();
            rows.iter()
                .map(|(t, len)| {
                    let row = *next.entry(*t).or_insert_with(|| model.next(*t));
                    next.insert(*t, row + 1);
                    let bytes = vec![fill(*t, row); *len];
                    if *t == ARCHIVE {
                        Entry::Archived { table: TABLES[*t], row, bytes }
                    } else {
                        Entry::Row { table: TABLES[*t], row, bytes }
                    }
                })
                .collect()
        }

        fn apply(model: &mut Model, rows: &[(usize, usize)]) {
            for (t, len) in rows {
                let table = model.tables.entry(*t).or_default();
                let row = table.1;
                table.0.insert(row, (fill(*t, row), *len));
                table.1 = row + 1;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Whatever the writes, truncations and crashes, a start recovers exactly the
            /// frames that were acknowledged, and the tables' sequences go on from there.
            #[test]
            fn recovery_keeps_exactly_the_acknowledged_frames(steps in proptest::collection::vec(step(), 1..40)) {
                let dir = tempfile::tempdir().unwrap();
                let mut mark: Option<u64> = None;
                let mut model = Model::default();
                let mut journal = Journal::open(dir.path(), mark).unwrap();
                for step in steps {
                    match step {
                        Step::Rows(rows, keyed) => {
                            let number = write(&journal, &entries(&model, &rows), keyed);
                            if keyed {
                                mark = Some(number);
                            }
                            apply(&mut model, &rows);
                        }
                        Step::Truncate(t, permille) => {
                            let before = model.next(t) * u64::from(permille) / 1000;
                            write(&journal, &[Entry::Truncate { table: TABLES[t], before }], false);
                            let table = model.tables.entry(t).or_default();
                            if before > table.2 {
                                table.2 = before;
                                table.0 = table.0.split_off(&before);
                                table.1 = table.1.max(before);
                            }
                        }
                        Step::Torn(t, permille) => {
                            let files_before = segment_files(dir.path());
                            let length_before = journal.frames_end();
                            let torn = journal.write(&entries(&model, &[(t, 3_000)]), false).unwrap();
                            drop(torn);
                            drop(journal);
                            let files = segment_files(dir.path());
                            let last = files.last().unwrap();
                            // A roll shows as a new last file (not as more files: dead
                            // segments may have been unlinked meanwhile).
                            let start = if files_before.last() == Some(last) { length_before } else { 0 };
                            // Torn within the frame's header and payload (what follows them is
                            // padding, whose loss tears nothing).
                            let bytes = std::fs::read(last).unwrap();
                            let at = start as usize + 4;
                            let payload = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                            let end = start + (HEADER_BYTES as u64) + u64::from(payload);
                            let kept = start + (end - start) * u64::from(permille) / 1000;
                            OpenOptions::new().write(true).open(last).unwrap().set_len(kept).unwrap();
                            journal = Journal::open(dir.path(), mark).unwrap();
                            check(&journal, &model);
                        }
                        Step::ZeroedBlocks(t, permille) => {
                            let files_before = segment_files(dir.path());
                            let length_before = journal.frames_end();
                            let torn = journal.write(&entries(&model, &[(t, 3 * BLOCK_BYTES)]), false).unwrap();
                            drop(torn);
                            let frame_end = journal.frames_end();
                            drop(journal);
                            let files = segment_files(dir.path());
                            let last = files.last().unwrap();
                            let start = if files_before.last() == Some(last) { length_before } else { 0 };
                            let mut bytes = std::fs::read(last).unwrap();
                            let blocks = (frame_end - start) / BLOCK_BYTES as u64;
                            assert!(blocks >= 3, "the frame spans several blocks");
                            // At least the last block is lost, so the payload is incomplete.
                            let kept_blocks = (blocks - 1) * u64::from(permille) / 1000;
                            let from = (start + kept_blocks * BLOCK_BYTES as u64) as usize;
                            bytes[from..frame_end as usize].fill(0);
                            std::fs::write(last, &bytes).unwrap();
                            journal = Journal::open(dir.path(), mark).unwrap();
                            check(&journal, &model);
                        }
                        Step::KeyedLost(t) => {
                            let lost = journal.write(&entries(&model, &[(t, 100)]), true).unwrap();
                            drop(lost);
                            drop(journal);
                            journal = Journal::open(dir.path(), mark).unwrap();
                            check(&journal, &model);
                        }
                        Step::Reopen => {
                            drop(journal);
                            journal = Journal::open(dir.path(), mark).unwrap();
                            check(&journal, &model);
                        }
                    }
                }
                check(&journal, &model);
                drop(journal);
                check(&Journal::open(dir.path(), mark).unwrap(), &model);
            }
        }
    }
}
