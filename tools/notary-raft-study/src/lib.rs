//! A replicated notary prototype on openraft 0.10.0-alpha.37: the log entry is a bank's batch
//! of compact transactions, the state machine is the notary's spend rule, and the storage is an
//! in-memory "disk" per replica that survives a crash (the test drops the `Raft` and reopens
//! from the same `Disk`). Generic over the type config so that the same code runs on tokio and
//! on openraft-rt-sim (deterministic, virtual time).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Debug;
use std::io;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::alias::{DefaultEntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, EntryPayload, LogState, OptionalSend, Raft, RaftLogReader, RaftSnapshotBuilder, RaftTypeConfig,
};
use serde::{Deserialize, Serialize};

pub mod scenario;

pub type TokenId = u64;
pub type TxId = u64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactTx {
    pub tx_id: TxId,
    pub inputs: Vec<TokenId>,
    pub outputs: Vec<TokenId>,
}

/// One Raft log entry: what the leader took from a bank (its signed batch) or from central.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotaryCommand {
    /// A bank's `NotarizeRequest`, verified by the leader before it proposed it; the signature
    /// travels in the log so that any replica (or an auditor) can verify it again.
    Notarize { sender: String, batch: u64, txs: Vec<CompactTx>, signature: Vec<u8> },
    /// An operator's decision delivered by central: it must go through the log too, or the
    /// replicas would disagree on who is blocked.
    Block { bank: String, blocked: bool },
}

impl fmt::Display for NotaryCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotaryCommand::Notarize { sender, batch, txs, .. } => {
                write!(f, "notarize({sender}#{batch}, {} txs)", txs.len())
            }
            NotaryCommand::Block { bank, blocked } => write!(f, "block({bank}, {blocked})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Committed,
    Refused(String),
}

/// What applying one entry answers: the certificate number (assigned by the state machine, so
/// every replica agrees on it) and one outcome per transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub seq: Option<u64>,
    pub outcomes: Vec<Outcome>,
}

openraft::declare_raft_types!(
    /// The notary on tokio (production).
    pub TokioCfg:
        D = NotaryCommand,
        R = Reply,
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);

openraft::declare_raft_types!(
    /// The notary on openraft-rt-sim: one thread, FIFO tasks, virtual time, seeded RNG.
    pub SimCfg:
        D = NotaryCommand,
        R = Reply,
        AsyncRuntime = openraft_rt_sim::SimRuntime,
);

/// The bounds every piece below needs (a "trait alias").
pub trait NotaryCfg:
    RaftTypeConfig<
        D = NotaryCommand,
        R = Reply,
        NodeId = u64,
        Node = BasicNode,
        Payload = EntryPayload<NotaryCommand, u64, BasicNode>,
        Entry = DefaultEntryOf<Self>,
    >
{
}
impl<C> NotaryCfg for C where
    C: RaftTypeConfig<
        D = NotaryCommand,
        R = Reply,
        NodeId = u64,
        Node = BasicNode,
        Payload = EntryPayload<NotaryCommand, u64, BasicNode>,
        Entry = DefaultEntryOf<Self>,
    >
{
}

// ---- the notary's rule ------------------------------------------------------------------------

/// The replicated state: the unspent set, every output ever created, every committed
/// transaction id, the operator's blocks, the last certificate number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub unspent: BTreeSet<TokenId>,
    pub created: BTreeSet<TokenId>,
    pub committed: BTreeSet<TxId>,
    pub blocked: BTreeSet<String>,
    pub seq: u64,
}

impl Ledger {
    /// Deterministic: every replica computes the same reply from the same entry.
    pub fn apply(&mut self, command: &NotaryCommand) -> Reply {
        match command {
            NotaryCommand::Block { bank, blocked } => {
                if *blocked {
                    self.blocked.insert(bank.clone());
                } else {
                    self.blocked.remove(bank);
                }
                Reply::default()
            }
            NotaryCommand::Notarize { sender, txs, .. } => {
                let blocked = self.blocked.contains(sender);
                let mut outcomes = Vec::with_capacity(txs.len());
                for tx in txs {
                    let outcome = if self.committed.contains(&tx.tx_id) {
                        Outcome::Committed // idempotent: certified again, never spent again
                    } else if blocked {
                        Outcome::Refused(format!("bank '{sender}' is blocked"))
                    } else if tx.inputs.is_empty() && sender != "central" {
                        Outcome::Refused("only the NBK creates tokens from nothing".into())
                    } else if let Some(id) = tx.inputs.iter().find(|id| !self.unspent.contains(id)) {
                        Outcome::Refused(format!("double spend: token {id} is not unspent"))
                    } else if let Some(id) = tx.outputs.iter().find(|id| self.created.contains(id)) {
                        Outcome::Refused(format!("token {id} was created before"))
                    } else {
                        for id in &tx.inputs {
                            self.unspent.remove(id);
                        }
                        for id in &tx.outputs {
                            self.unspent.insert(*id);
                            self.created.insert(*id);
                        }
                        self.committed.insert(tx.tx_id);
                        Outcome::Committed
                    };
                    outcomes.push(outcome);
                }
                let seq = outcomes.contains(&Outcome::Committed).then(|| {
                    self.seq += 1;
                    self.seq
                });
                Reply { seq, outcomes }
            }
        }
    }
}

// ---- one replica's disk -------------------------------------------------------------------------

/// What one replica keeps across a crash. In dtenge this is the replica's own `dtenge-store`
/// (fjall): the log and vote in log tables and keyed rows, the ledger in the notary's tables.
pub struct DiskInner<C: RaftTypeConfig> {
    pub vote: Option<VoteOf<C>>,
    pub log: BTreeMap<u64, C::Entry>,
    pub purged: Option<LogIdOf<C>>,
    pub committed: Option<LogIdOf<C>>,
    pub ledger: Ledger,
    pub applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
    pub snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
    /// Durable writes a real store would fsync (vote, append, apply).
    pub syncs: u64,
    pub snapshots_installed: u64,
}

pub struct Disk<C: RaftTypeConfig>(Arc<Mutex<DiskInner<C>>>);

impl<C: RaftTypeConfig> Clone for Disk<C> {
    fn clone(&self) -> Self {
        Disk(self.0.clone())
    }
}

impl<C: RaftTypeConfig> Default for Disk<C> {
    fn default() -> Self {
        Disk(Arc::new(Mutex::new(DiskInner {
            vote: None,
            log: BTreeMap::new(),
            purged: None,
            committed: None,
            ledger: Ledger::default(),
            applied: None,
            membership: StoredMembershipOf::<C>::default(),
            snapshot: None,
            syncs: 0,
            snapshots_installed: 0,
        })))
    }
}

impl<C: RaftTypeConfig> Disk<C> {
    pub fn lock(&self) -> MutexGuard<'_, DiskInner<C>> {
        self.0.lock().expect("disk lock")
    }
}

// ---- RaftLogStorage ------------------------------------------------------------------------------

pub struct LogStore<C: RaftTypeConfig> {
    pub disk: Disk<C>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore { disk: self.disk.clone() }
    }
}

impl<C: NotaryCfg> RaftLogReader<C> for LogStore<C>
where C::Entry: Clone
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let disk = self.disk.lock();
        Ok(disk.log.range(range).map(|(_, entry)| entry.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.disk.lock().vote.clone())
    }
}

impl<C: NotaryCfg> RaftLogStorage<C> for LogStore<C>
where C::Entry: Clone
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let disk = self.disk.lock();
        let last = disk.log.values().next_back().map(|entry| entry.log_id()).or_else(|| disk.purged.clone());
        Ok(LogState { last_purged_log_id: disk.purged.clone(), last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before it returns (a store's fsync'd commit).
    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let mut disk = self.disk.lock();
        disk.vote = Some(vote.clone());
        disk.syncs += 1;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.disk.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.disk.lock().committed.clone())
    }

    /// Readable when it returns; `callback` once durable (here at once; in dtenge when the
    /// store's group commit answers, from the committer's side).
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut disk = self.disk.lock();
            for entry in entries {
                disk.log.insert(entry.index(), entry);
            }
            disk.syncs += 1;
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        let mut disk = self.disk.lock();
        let _removed = disk.log.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let mut disk = self.disk.lock();
        let keep = disk.log.split_off(&(log_id.index() + 1));
        disk.log = keep;
        disk.purged = Some(log_id);
        Ok(())
    }
}

// ---- RaftStateMachine ----------------------------------------------------------------------------

pub struct NotarySm<C: RaftTypeConfig> {
    pub disk: Disk<C>,
}

impl<C: RaftTypeConfig> Clone for NotarySm<C> {
    fn clone(&self) -> Self {
        NotarySm { disk: self.disk.clone() }
    }
}

impl<C> RaftSnapshotBuilder<C> for NotarySm<C>
where C: NotaryCfg
{
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let mut disk = self.disk.lock();
        let data = bincode::serialize(&disk.ledger).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<C> { last_log_id: disk.applied.clone(), last_membership: disk.membership.clone() };
        disk.snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) })
    }
}

impl<C> RaftStateMachine<C> for NotarySm<C>
where C: NotaryCfg
{
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let disk = self.disk.lock();
        Ok((disk.applied.clone(), disk.membership.clone()))
    }

    /// A persistent state machine: each entry's effect and its log id are one durable write
    /// (in dtenge: one `WriteBatch` for the whole stream, one group commit).
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend {
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = {
                let mut disk = self.disk.lock();
                disk.applied = Some(entry.log_id.clone());
                let reply = match &entry.payload {
                    EntryPayload::Blank => Reply::default(),
                    EntryPayload::Normal(command) => disk.ledger.apply(command),
                    EntryPayload::Membership(membership) => {
                        disk.membership = StoredMembershipOf::<C>::new(Some(entry.log_id.clone()), membership.clone());
                        Reply::default()
                    }
                };
                disk.syncs += 1;
                reply
            };
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: Cursor<Vec<u8>>) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let ledger: Ledger = bincode::deserialize(&data).map_err(io::Error::other)?;
        let mut disk = self.disk.lock();
        disk.ledger = ledger;
        disk.applied = meta.last_log_id.clone();
        disk.membership = meta.last_membership.clone();
        disk.snapshot = Some((meta.clone(), data));
        disk.snapshots_installed += 1;
        disk.syncs += 1;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Cursor<Vec<u8>>>>, io::Error> {
        let disk = self.disk.lock();
        Ok(disk
            .snapshot
            .as_ref()
            .map(|(meta, data)| SnapshotOf::<C, Cursor<Vec<u8>>> { meta: meta.clone(), snapshot: Cursor::new(data.clone()) }))
    }
}

// ---- the network between replicas: in process, every message through bincode -------------------

pub type NotaryRaft<C> = Raft<C, NotarySm<C>>;

struct RouterInner<C: NotaryCfg> {
    nodes: BTreeMap<u64, NotaryRaft<C>>,
    /// Replicas cut off from every other (both directions).
    isolated: BTreeSet<u64>,
}

pub struct Router<C: NotaryCfg>(Arc<Mutex<RouterInner<C>>>);

impl<C: NotaryCfg> Clone for Router<C> {
    fn clone(&self) -> Self {
        Router(self.0.clone())
    }
}

impl<C: NotaryCfg> Default for Router<C> {
    fn default() -> Self {
        Router(Arc::new(Mutex::new(RouterInner { nodes: BTreeMap::new(), isolated: BTreeSet::new() })))
    }
}

impl<C: NotaryCfg> Router<C> {
    pub fn insert(&self, id: u64, raft: NotaryRaft<C>) {
        self.0.lock().expect("the router's lock: its holders never panic").nodes.insert(id, raft);
    }
    pub fn remove(&self, id: u64) -> Option<NotaryRaft<C>> {
        self.0.lock().expect("the router's lock: its holders never panic").nodes.remove(&id)
    }
    pub fn get(&self, id: u64) -> NotaryRaft<C> {
        self.0.lock().expect("the router's lock: its holders never panic").nodes.get(&id).cloned().expect("a running replica")
    }
    pub fn ids(&self) -> Vec<u64> {
        self.0.lock().expect("the router's lock: its holders never panic").nodes.keys().copied().collect()
    }
    pub fn isolate(&self, id: u64) {
        self.0.lock().expect("the router's lock: its holders never panic").isolated.insert(id);
    }
    pub fn heal(&self) {
        self.0.lock().expect("the router's lock: its holders never panic").isolated.clear();
    }
    fn reach(&self, from: u64, to: u64) -> Result<NotaryRaft<C>, Unreachable<C>> {
        let inner = self.0.lock().expect("the router's lock: its holders never panic");
        if inner.isolated.contains(&from) || inner.isolated.contains(&to) {
            return Err(Unreachable::from_string(format!("{from} -> {to}: partitioned")));
        }
        inner.nodes.get(&to).cloned().ok_or_else(|| Unreachable::from_string(format!("{to} is down")))
    }
}

/// Encode and decode, as a frame over `dtenge-net` would.
fn wire<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let bytes = bincode::serialize(value).expect("bincode encodes openraft's messages");
    bincode::deserialize(&bytes).expect("bincode decodes openraft's messages")
}

/// The factory Raft asks for a client per peer.
pub struct Net<C: NotaryCfg> {
    pub router: Router<C>,
    pub me: u64,
}

pub struct Conn<C: NotaryCfg> {
    router: Router<C>,
    me: u64,
    target: u64,
}

impl<C: NotaryCfg> RaftNetworkFactory<C> for Net<C> {
    type Network = Conn<C>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        Conn { router: self.router.clone(), me: self.me, target }
    }
}

impl<C: NotaryCfg> RaftNetworkV2<C> for Conn<C> {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let raft = self.router.reach(self.me, self.target)?;
        let response = raft.append_entries(wire(&rpc)).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.router.reach(self.target, self.me)?; // the answer crosses the partition too
        Ok(wire(&response))
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let raft = self.router.reach(self.me, self.target)?;
        let response = raft.vote(wire(&rpc)).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.router.reach(self.target, self.me)?;
        Ok(wire(&response))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let raft = self.router.reach(self.me, self.target).map_err(RPCError::from)?;
        let meta = wire(&snapshot.meta);
        let data = snapshot.snapshot.into_inner();
        let snapshot = SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) };
        let response = raft
            .install_full_snapshot(wire(&vote), snapshot)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        Ok(wire(&response))
    }
}

/// The entry type is openraft's default; named for readers of the scenario.
pub type NotaryEntry<C> = DefaultEntryOf<C>;
