//! A replica's storage for openraft, on its own `dtenge-store` (fjall, fsync'd group commits).
//!
//! - **The log** ([`LogStore`]): one keyed row per entry in [`RAFT_LOG`] (its index, big-endian,
//!   so rows sort in log order), its vote, its commit index and what it purged in
//!   [`RAFT_META`]. Every entry not purged is also kept in memory (the leader reads recent
//!   entries back to replicate them). An append is readable at once and reported durable to
//!   Raft only after the store's fsync that covers it: that is what a follower acknowledges
//!   and what the leader counts toward the majority. Writes reach the store in the order Raft
//!   issues them (the store commits in the order batches are handed over), so a truncation or
//!   a vote is never overtaken by a later append.
//! - **The state machine** ([`Machine`]): the [`Ledger`] in memory, and its last snapshot in
//!   [`RAFT_META`]. It writes nothing per entry: at start a replica loads its snapshot and Raft
//!   applies the log again from there to the commit index it saved. So a spend costs each
//!   replica one fsync (its append), not two.
//!
//! Encoding: openraft's own types (entries, votes, log ids, snapshot metadata) through serde
//! and bincode (`dtenge_store::encode`), the ledger's snapshot in dtenge's wire encoding.

use crate::command::Applied;
use crate::state::{Kind, State};
use crate::{Entry, LogId, Membership, NotaryRaft, Snapshot, SnapshotMeta, Vote};
use dtenge_core::crypto::NodeKey;
use dtenge_notary::service::{NotaryReport, Senders};
use dtenge_store::{decode, encode, ArchiveLog, Store, Table, WriteBatch};
use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

/// The log's entries: key = index (u64 big-endian), value = the entry.
pub const RAFT_LOG: Table = Table("notary_raft_log");
/// The vote, the commit index, the last purged log id and the last snapshot.
pub const RAFT_META: Table = Table("notary_raft_meta");
/// The evidence: every participant's envelope the log held, kept when the log is purged
/// after a snapshot (its index, then the envelope's wire bytes). An archive: never truncated
/// and never read at a start: who asked the notary what, signed, for as long as the
/// replica's disk keeps it (see `dtenge_store::ArchiveLog`).
pub const EVIDENCE: ArchiveLog = ArchiveLog("notary_evidence");

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";
const SNAPSHOT: &[u8] = b"snapshot";

/// Every table of a replica's store.
pub fn tables() -> Vec<Table> {
    vec![RAFT_LOG, RAFT_META, EVIDENCE.table()]
}

/// Every participant's envelope this replica's store holds, in log order with its index: the
/// archived ones (purged from the log) and those still in the log.
pub fn evidence(store: &Store) -> dtenge_core::Result<Vec<(u64, dtenge_wire::Envelope)>> {
    let mut found = Vec::new();
    for record in store.scan_archive(EVIDENCE)? {
        let Some((index, bytes)) = record.split_first_chunk::<8>() else {
            return Err(dtenge_core::Error::storage("an evidence record shorter than its index"));
        };
        let envelope = <dtenge_wire::Envelope as dtenge_wire::Decode>::from_bytes(bytes)
            .map_err(|e| dtenge_core::Error::storage(format!("an evidence record: {e}")))?;
        found.push((u64::from_le_bytes(*index), envelope));
    }
    for (_, value) in store.scan(RAFT_LOG)? {
        let entry: Entry = decode(&value)?;
        if let EntryPayload::Normal(command) = entry.payload {
            found.push((entry.log_id.index(), command.0));
        }
    }
    Ok(found)
}

fn io_error(e: dtenge_core::Error) -> io::Error {
    io::Error::other(e.message)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read<T: serde::de::DeserializeOwned>(store: &Store, key: &[u8]) -> dtenge_core::Result<Option<T>> {
    store.get(RAFT_META, key)?.map(|bytes| decode(&bytes)).transpose()
}

/// What the log holds in memory: everything after the last purge.
#[derive(Default)]
struct Log {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// Raft's log on the replica's store.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    log: Arc<Mutex<Log>>,
}

impl LogStore {
    /// The log as the store holds it.
    pub fn open(store: Arc<Store>) -> dtenge_core::Result<LogStore> {
        let mut log = Log {
            vote: read(&store, VOTE)?,
            committed: read(&store, COMMITTED)?,
            purged: read(&store, PURGED)?,
            entries: BTreeMap::new(),
        };
        for (key, value) in store.scan(RAFT_LOG)? {
            let entry: Entry = decode(&value)?;
            let index: [u8; 8] =
                key.as_slice().try_into().map_err(|_| dtenge_core::Error::storage("a log key is not 8 bytes"))?;
            if u64::from_be_bytes(index) != entry.index() {
                return Err(dtenge_core::Error::storage("a log entry is stored under another index"));
            }
            log.entries.insert(entry.index(), entry);
        }
        Ok(LogStore { store, log: Arc::new(Mutex::new(log)) })
    }

    /// Has this replica ever voted or logged anything (a pristine one may found a group)?
    pub fn is_pristine(&self) -> bool {
        let log = self.log.lock();
        log.vote.is_none() && log.entries.is_empty() && log.purged.is_none()
    }

    /// Hand `batch` to the store; `durable` learns when it is on disk. The store commits
    /// batches in the order they are handed over.
    fn write(&self, batch: WriteBatch, durable: impl FnOnce(io::Result<()>) + Send + 'static) {
        let pending = self.store.commit_async(batch);
        // The fsync is waited for on a thread of the runtime's blocking pool, so that Raft can
        // hand over the next append meanwhile (the store groups them into one fsync).
        tokio::task::spawn_blocking(move || durable(pending.wait().map_err(io_error)));
    }

    fn write_now(&self, batch: WriteBatch) -> io::Result<()> {
        self.store.commit(batch).map_err(io_error)
    }
}

impl RaftLogReader<NotaryRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.log.lock().entries.range(range).map(|(_, entry)| entry.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.log.lock().vote)
    }
}

impl RaftLogStorage<NotaryRaft> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<NotaryRaft>, io::Error> {
        let log = self.log.lock();
        let last = log.entries.values().next_back().map(|entry| entry.log_id()).or_else(|| log.purged);
        Ok(LogState { last_purged_log_id: log.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before it returns, as Raft requires of a vote.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut batch = WriteBatch::new();
        batch.put(RAFT_META, VOTE, encode(vote).map_err(io_error)?);
        self.write_now(batch)?;
        self.log.lock().vote = Some(*vote);
        Ok(())
    }

    /// Not waited for: a commit index saved late only makes a restart apply less at once (the
    /// leader tells the rest).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut batch = WriteBatch::new();
        match &committed {
            Some(id) => batch.put(RAFT_META, COMMITTED, encode(id).map_err(io_error)?),
            None => batch.delete(RAFT_META, COMMITTED),
        }
        self.write(batch, |_| {});
        self.log.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.log.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<NotaryRaft>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::new();
        let mut appended = Vec::new();
        for entry in entries {
            batch.put(RAFT_LOG, index_key(entry.index()), encode(&entry).map_err(io_error)?);
            appended.push(entry);
        }
        {
            let mut log = self.log.lock();
            for entry in appended {
                log.entries.insert(entry.index(), entry);
            }
        }
        self.write(batch, move |written| callback.io_completed(written));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        let removed = self.log.lock().entries.split_off(&from);
        let mut batch = WriteBatch::new();
        for index in removed.keys() {
            batch.delete(RAFT_LOG, index_key(*index));
        }
        self.write(batch, |_| {});
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut batch = WriteBatch::new();
        {
            let mut log = self.log.lock();
            let kept = log.entries.split_off(&(log_id.index() + 1));
            for (index, entry) in &log.entries {
                // Out of the log, into the evidence, in the same commit.
                if let EntryPayload::Normal(command) = &entry.payload {
                    let mut record = index.to_le_bytes().to_vec();
                    record.extend_from_slice(&dtenge_wire::Encode::to_bytes(&command.0));
                    batch.archive(EVIDENCE, record);
                }
                batch.delete(RAFT_LOG, index_key(*index));
            }
            log.entries = kept;
            log.purged = Some(log_id);
        }
        batch.put(RAFT_META, PURGED, encode(&log_id).map_err(io_error)?);
        self.write(batch, |_| {});
        Ok(())
    }
}

/// The ledger and where it stands in the log, changed together.
pub(crate) struct Applying {
    pub(crate) ledger: State,
    pub(crate) applied: Option<LogId>,
    pub(crate) membership: Membership,
}

struct MachineShared {
    applying: Mutex<Applying>,
    /// The last snapshot built or installed, as stored.
    snapshot: Mutex<Option<(SnapshotMeta, Vec<u8>)>>,
    store: Arc<Store>,
    /// The notary's certificate key, with which the leader signs.
    key: NodeKey,
    senders: Senders,
    kind: Kind,
    /// Who this replica's answers come from: the notary (to the banks and central), or this
    /// shard replica (to the coordinator).
    answer_as: dtenge_wire::RoleId,
    snapshots_installed: std::sync::atomic::AtomicU64,
}

/// The replicated state machine: the [`Ledger`] in memory, its snapshots in the store.
#[derive(Clone)]
pub struct Machine {
    shared: Arc<MachineShared>,
}

impl Machine {
    /// The ledger as of the replica's last snapshot (Raft applies the log after it), of the
    /// `kind` its group runs; its answers sent as `answer_as`.
    pub fn open(
        store: Arc<Store>,
        key: NodeKey,
        senders: Senders,
        kind: Kind,
        answer_as: dtenge_wire::RoleId,
    ) -> dtenge_core::Result<Machine> {
        let snapshot: Option<(SnapshotMeta, Vec<u8>)> = read(&store, SNAPSHOT)?;
        let applying = match &snapshot {
            Some((meta, image)) => Applying {
                ledger: State::from_image(kind, image, senders.clone())?,
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
            None => {
                Applying { ledger: State::new(kind, senders.clone()), applied: None, membership: Membership::default() }
            }
        };
        let shared = MachineShared {
            applying: Mutex::new(applying),
            snapshot: Mutex::new(snapshot),
            store,
            key,
            senders,
            kind,
            answer_as,
            snapshots_installed: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(Machine { shared: Arc::new(shared) })
    }

    /// The ledger's report and the last log index applied, read together.
    pub fn report(&self) -> (NotaryReport, u64) {
        let applying = self.shared.applying.lock();
        (applying.ledger.report(), applying.applied.as_ref().map_or(0, |id| id.index()))
    }

    pub(crate) fn with_ledger<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.shared.applying.lock().ledger)
    }

    /// Snapshots received from a leader since this replica started.
    pub fn snapshots_installed(&self) -> u64 {
        self.shared.snapshots_installed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn keep_snapshot(&self, meta: SnapshotMeta, image: Vec<u8>) -> io::Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(RAFT_META, SNAPSHOT, encode(&(meta.clone(), image.clone())).map_err(io_error)?);
        self.shared.store.commit(batch).map_err(io_error)?;
        *self.shared.snapshot.lock() = Some((meta, image));
        Ok(())
    }
}

impl RaftSnapshotBuilder<NotaryRaft> for Machine {
    type SnapshotData = Cursor<Vec<u8>>;

    /// The ledger's image at the last applied entry. Entries are not applied meanwhile (the
    /// image is taken under the same lock): a pause of the copy's length, once per
    /// [`crate::SNAPSHOT_LOGS`] entries.
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, image) = {
            let applying = self.shared.applying.lock();
            let meta = SnapshotMeta { last_log_id: applying.applied, last_membership: applying.membership.clone() };
            (meta, applying.ledger.image())
        };
        self.keep_snapshot(meta.clone(), image.clone())?;
        Ok(Snapshot { meta, snapshot: Cursor::new(image) })
    }
}

impl RaftStateMachine<NotaryRaft> for Machine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), io::Error> {
        let applying = self.shared.applying.lock();
        Ok((applying.applied, applying.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<NotaryRaft>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let answer = {
                let mut applying = self.shared.applying.lock();
                let answer = match &entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(command) => {
                        let key = responder.as_ref().map(|_| &self.shared.key);
                        let answer = applying.ledger.apply(&command.0, entry.log_id.index(), key);
                        answer.map(|mut answer| {
                            if let Kind::Shard(_) = self.shared.kind {
                                answer.from = self.shared.answer_as.clone();
                            }
                            answer
                        })
                    }
                    EntryPayload::Membership(membership) => {
                        applying.membership = Membership::new(Some(entry.log_id), membership.clone());
                        None
                    }
                };
                applying.applied = Some(entry.log_id);
                answer
            };
            if let Some(responder) = responder {
                responder.send(Applied(answer));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Cursor<Vec<u8>>) -> Result<(), io::Error> {
        let image = snapshot.into_inner();
        let ledger = State::from_image(self.shared.kind, &image, self.shared.senders.clone()).map_err(io_error)?;
        // Durable before the state changes: a crash right after restarts from this snapshot.
        self.keep_snapshot(meta.clone(), image)?;
        let mut applying = self.shared.applying.lock();
        *applying = Applying { ledger, applied: meta.last_log_id, membership: meta.last_membership.clone() };
        self.shared.snapshots_installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .shared
            .snapshot
            .lock()
            .as_ref()
            .map(|(meta, image)| Snapshot { meta: meta.clone(), snapshot: Cursor::new(image.clone()) }))
    }
}
