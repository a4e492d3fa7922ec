//! One replica: its Raft node, its runtime, and how it takes participants' envelopes.

use crate::driver::Driver;
use crate::network::{self, Calls, Network};
use crate::state::Kind;
use crate::storage::{LogStore, Machine};
use crate::{Command, NodeId, NotaryRaft};
use dtenge_core::crypto::NodeKey;
use dtenge_core::{Error, ErrorCode};
use dtenge_notary::service::{NotaryReport, Senders};
use dtenge_store::Store;
use dtenge_transport::Transport;
use dtenge_wire::message::NOTARY_REPLICAS_MAX;
use dtenge_wire::{Envelope, Message, NotarizeReply, Outcome, RaftRpc, RoleId};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Config, EmptyNode, Raft, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Entries between two snapshots of a replica's ledger: a restart replays at most this many,
/// and a replica this far behind is sent the snapshot instead of the entries.
pub const SNAPSHOT_LOGS: u64 = 10_000;
/// Entries a replica keeps in its log after a snapshot, for followers a little behind.
const SNAPSHOT_LOGS_KEPT: u64 = 1_000;
/// The leader's heartbeat. Loopback or one data center: tens of ms of slack even on a busy
/// 2-core machine, where a shorter election timeout elects leaders needlessly.
const HEARTBEAT_MS: u64 = 150;
const ELECTION_MS_MIN: u64 = 1_000;
const ELECTION_MS_MAX: u64 = 2_000;
/// Participants' envelopes the leader has proposed and not yet answered. Past it, a request
/// is answered "ask again": the bank resends, the notary does not queue without bound.
const PROPOSALS_IN_FLIGHT_MAX: usize = 1_024;
/// Worker threads of a replica's runtime (Raft's core, storage, calls).
const RUNTIME_THREADS: usize = 2;

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("the replica's store: {0}")]
    Store(#[from] Error),
    #[error("Raft: {0}")]
    Raft(String),
    #[error("the replica's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

fn raft_error(e: impl std::fmt::Display) -> ReplicaError {
    ReplicaError::Raft(e.to_string())
}

/// The group a replica belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group {
    /// The notary's own group (`RoleId::NotaryReplica(n)`): the whole unspent set when
    /// `shards` is 0, else the coordinator of that many shards, each of whose groups has the
    /// replicas numbered `shard_replicas`.
    Notary { shards: u8, shard_replicas: Vec<u8> },
    /// Shard `n` of a sharded notary (`RoleId::NotaryShard { shard: n, replica }`).
    Shard(u8),
}

impl Group {
    /// The notary in one group, holding every token: the default.
    pub fn whole() -> Group {
        Group::Notary { shards: 0, shard_replicas: Vec::new() }
    }

    /// Replica `id` of this group on the transport.
    pub fn role_of(&self, id: NodeId) -> RoleId {
        let replica = u8::try_from(id).expect("a replica's node id is its number, 1 to 7");
        match self {
            Group::Notary { .. } => RoleId::NotaryReplica(replica),
            Group::Shard(shard) => RoleId::NotaryShard { shard: *shard, replica },
        }
    }

    /// Is `role` a replica of this group?
    fn has(&self, role: &RoleId) -> bool {
        match (self, role) {
            (Group::Notary { .. }, RoleId::NotaryReplica(_)) => true,
            (Group::Shard(mine), RoleId::NotaryShard { shard, .. }) => shard == mine,
            _ => false,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Group::Notary { shards: 0, .. } => Kind::Whole,
            Group::Notary { shards, .. } => Kind::Coordinator { shards: *shards },
            Group::Shard(n) => Kind::Shard(*n),
        }
    }
}

/// How a replica starts.
pub struct ReplicaConfig {
    /// Its number in its group, 1 to 7.
    pub id: u8,
    pub group: Group,
    /// The numbers of the group's founding replicas, the same on each of them: a founding
    /// replica that has never run founds the group with it. A replica that joins a running
    /// group (a replacement) has none; the leader adds it ([`Replica::replace`]).
    pub founding: Vec<u8>,
    /// Its own store, opened with [`crate::storage::tables`].
    pub store: Store,
    /// The notary's certificate key, which the leader signs with.
    pub key: NodeKey,
    /// Who may send the notary requests (the same on every replica).
    pub senders: Senders,
    pub transport: Arc<dyn Transport>,
    /// Entries between snapshots ([`SNAPSHOT_LOGS`] unless a test needs them sooner).
    pub snapshot_logs: u64,
}

/// A replica's place in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    /// Catching up before it votes.
    Learner,
    Stopped,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Stopped => "stopped",
        }
    }
}

/// What a replica reports to monitoring.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    pub id: u8,
    pub role: Role,
    pub leader: Option<u8>,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    /// The last entry purged from the log after a snapshot (archived as evidence).
    pub purged_index: u64,
    /// On the leader: how many entries the slowest replica lacks (0 elsewhere).
    pub replication_lag_entries: u64,
    pub snapshots_installed: u64,
    /// The ledger as of `applied_index`.
    pub report: NotaryReport,
}

/// One replica of the notary.
pub struct Replica {
    id: u8,
    group: Group,
    /// The coordinator's driver, on a sharded notary's own replicas.
    driver: Option<Arc<Driver>>,
    raft: Raft<NotaryRaft, Machine>,
    machine: Machine,
    calls: Arc<Calls>,
    transport: Arc<dyn Transport>,
    senders: Senders,
    store: Arc<Store>,
    /// Banks whose certificates are revoked: their requests are not proposed. Local to this
    /// replica (each follows the revocation list itself), so kept out of the replicated
    /// ledger, whose state must not depend on when each replica read the list.
    refused: parking_lot::RwLock<BTreeSet<String>>,
    in_flight: Arc<AtomicUsize>,
    /// `None` only while it stops.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    /// Start the replica on its store: from its last snapshot and its log.
    pub fn open(config: ReplicaConfig) -> Result<Replica, ReplicaError> {
        assert!((1..=NOTARY_REPLICAS_MAX).contains(&config.id), "a replica's number is 1 to 7");
        assert!(config.snapshot_logs > 0, "snapshots are taken");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name(format!("notary-replica-{}", config.id))
            .enable_all()
            .build()?;
        let store = Arc::new(config.store);
        let log = LogStore::open(store.clone())?;
        let kept_store = store.clone();
        let pristine = log.is_pristine();
        let me = config.group.role_of(u64::from(config.id));
        let answer_as = match config.group {
            Group::Notary { .. } => RoleId::Notary,
            Group::Shard(_) => me.clone(),
        };
        let machine = Machine::open(store, config.key, config.senders.clone(), config.group.kind(), answer_as)?;
        let calls = Arc::new(Calls::new(me, config.group.clone(), config.transport.clone()));
        let raft_config = Config {
            cluster_name: "dtenge-notary".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MS_MIN,
            election_timeout_max: ELECTION_MS_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: SNAPSHOT_LOGS_KEPT.min(config.snapshot_logs),
            ..Default::default()
        }
        .validate()
        .map_err(raft_error)?;
        let network = Network { calls: calls.clone() };
        let raft = runtime
            .block_on(Raft::new(u64::from(config.id), Arc::new(raft_config), network, log, machine.clone()))
            .map_err(raft_error)?;
        if pristine && !config.founding.is_empty() {
            let members: BTreeMap<u64, EmptyNode> =
                config.founding.iter().map(|n| (u64::from(*n), EmptyNode {})).collect();
            runtime.block_on(raft.initialize(members)).map_err(raft_error)?;
        }
        let driver = match &config.group {
            Group::Notary { shards, shard_replicas } if *shards > 0 => {
                let driver = Arc::new(Driver::new(
                    config.id,
                    *shards,
                    shard_replicas.clone(),
                    raft.clone(),
                    machine.clone(),
                    config.transport.clone(),
                ));
                runtime.spawn(driver.clone().run());
                Some(driver)
            }
            _ => None,
        };
        Ok(Replica {
            id: config.id,
            group: config.group,
            driver,
            raft,
            machine,
            calls,
            transport: config.transport,
            senders: config.senders,
            store: kept_store,
            refused: parking_lot::RwLock::new(BTreeSet::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            runtime: Some(runtime),
        })
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until the replica stops")
    }

    /// Take one envelope from the transport. Never blocks on Raft: what needs it runs on the
    /// replica's runtime.
    pub fn handle(&self, envelope: Envelope) {
        let fellow = self.group.has(&envelope.from);
        match envelope.message {
            Message::RaftRequest(rpc) if fellow => self.serve(envelope.from, rpc),
            Message::RaftReply(rpc) if fellow => self.calls.answered(rpc),
            Message::Forwarded(original) if fellow => self.propose(*original, false),
            // Another replica sends nothing else; a participant never sends these.
            Message::RaftRequest(_) | Message::RaftReply(_) | Message::Forwarded(_) => {}
            // A shard's answers, to the coordinator's driver (never to its log).
            Message::ShardPrepared(answer) => {
                if let Some(driver) = &self.driver {
                    driver.prepared(&envelope.from, answer);
                }
            }
            Message::ShardFinished(answer) => {
                if let Some(driver) = &self.driver {
                    driver.finished(&envelope.from, answer);
                }
            }
            _ if fellow => {}
            _ => self.propose(envelope, true),
        }
    }

    fn serve(&self, caller: RoleId, rpc: RaftRpc) {
        let raft = self.raft.clone();
        let transport = self.transport.clone();
        let me = self.group.role_of(u64::from(self.id));
        self.runtime().spawn(async move {
            if let Some(body) = network::serve(&raft, rpc.call, &rpc.body).await {
                let answer = RaftRpc { id: rpc.id, call: rpc.call, body };
                // Lost is fine: the caller times out and Raft calls again.
                let _ = transport.send(Envelope { from: me, to: caller, message: Message::RaftReply(answer) });
            }
        });
    }

    /// Is this a participant's envelope the notary takes? A notarize request from the NBK or
    /// a bank of the network, a delivery from central. Anything else never enters the log.
    fn takes(&self, envelope: &Envelope) -> bool {
        if let Group::Shard(_) = self.group {
            // A shard takes only its coordinator's two requests.
            return matches!(envelope.message, Message::ShardPrepare(_) | Message::ShardFinish(_))
                && matches!(envelope.from, RoleId::NotaryReplica(_));
        }
        match (&envelope.message, &envelope.from) {
            (Message::NotarizeRequest(_), RoleId::Central) => true,
            (Message::NotarizeRequest(_), RoleId::Bank(bank)) => {
                self.senders.banks.contains_key(bank) && !self.refused.read().contains(bank)
            }
            (Message::Deliver(_), RoleId::Central) => true,
            _ => false,
        }
    }

    /// The leader proposes a participant's envelope; a follower hands it to the leader (once:
    /// `may_forward` is false for what another replica forwarded); with no leader, a request
    /// is answered "ask again" and a delivery is left for central to send again.
    fn propose(&self, envelope: Envelope, may_forward: bool) {
        if !self.takes(&envelope) {
            return;
        }
        let leader = self.raft.metrics().borrow_watched().current_leader;
        match leader {
            Some(leader) if leader == u64::from(self.id) => self.write(envelope),
            Some(leader) if may_forward => {
                let forwarded = Envelope {
                    from: self.group.role_of(u64::from(self.id)),
                    to: self.group.role_of(leader),
                    message: Message::Forwarded(Box::new(envelope.clone())),
                };
                if self.transport.send(forwarded).is_err() {
                    self.answer(ask_again(&envelope));
                }
            }
            _ => self.answer(ask_again(&envelope)),
        }
    }

    fn answer(&self, answer: Option<Envelope>) {
        if let Some(answer) = answer {
            let _lost_is_fine = self.transport.send(answer);
        }
    }

    fn write(&self, envelope: Envelope) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= PROPOSALS_IN_FLIGHT_MAX {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.answer(ask_again(&envelope));
            return;
        }
        let raft = self.raft.clone();
        let transport = self.transport.clone();
        let in_flight = self.in_flight.clone();
        self.runtime().spawn(async move {
            let answer = match raft.client_write(Command(envelope.clone())).await {
                Ok(written) => written.data.0,
                // Not leader any more, or the entry's fate is unknown (a new leader may still
                // commit it): "ask again" is true either way, and a retry spends nothing twice.
                Err(e) => {
                    tracing::debug!(error = %e, "a proposal was not answered");
                    ask_again(&envelope)
                }
            };
            in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some(answer) = answer {
                let _lost_is_fine = transport.send(answer);
            }
        });
    }

    /// Propose nothing more from `bank` (its certificate is revoked).
    pub fn refuse(&self, bank: &str) {
        self.refused.write().insert(bank.to_string());
    }

    /// The leader this replica knows, if any.
    pub fn leader(&self) -> Option<u8> {
        let leader = self.raft.metrics().borrow_watched().current_leader;
        leader.map(|id| u8::try_from(id).expect("a replica's node id is its number"))
    }

    /// Wait until this replica knows a leader that is not `not`, up to `timeout`.
    pub fn wait_for_leader(&self, not: Option<u8>, timeout: Duration) -> Option<u8> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.leader() {
                Some(leader) if Some(leader) != not => return Some(leader),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        None
    }

    pub fn status(&self) -> ReplicaStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Stopped,
        };
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let replication_lag_entries = metrics.replication.as_ref().map_or(0, |matched| {
            matched
                .values()
                .map(|id| last_log_index.saturating_sub(id.as_ref().map_or(0, |id| id.index())))
                .max()
                .unwrap_or(0)
        });
        let (report, applied_index) = self.machine.report();
        ReplicaStatus {
            id: self.id,
            role,
            leader: metrics.current_leader.map(|id| u8::try_from(id).expect("a replica's node id is its number")),
            term: metrics.current_term,
            last_log_index,
            committed_index: metrics.cluster_committed.map_or(0, |id| id.index()),
            applied_index,
            purged_index: metrics.purged.map_or(0, |id| id.index()),
            replication_lag_entries,
            snapshots_installed: self.machine.snapshots_installed(),
            report,
        }
    }

    /// Has the ledger of this replica committed `tx` (as of what it applied)?
    pub fn is_committed(&self, tx: &dtenge_core::token::TxId) -> bool {
        self.machine.with_ledger(|ledger| ledger.is_committed(tx))
    }

    /// Batches a sharded notary's coordinator has in flight (as this replica applied them).
    pub fn batches_in_flight(&self) -> usize {
        self.machine.with_ledger(|state| match state {
            crate::state::State::Coordinator(ledger) => ledger.flights().len(),
            _ => 0,
        })
    }

    /// Every participant's envelope this replica logged, with its log index (`storage::evidence`).
    pub fn evidence(&self) -> Result<Vec<(u64, Envelope)>, ReplicaError> {
        Ok(crate::storage::evidence(&self.store)?)
    }

    /// This replica's ledger as a snapshot's bytes (equal bytes: equal ledgers).
    pub fn image(&self) -> Vec<u8> {
        self.machine.with_ledger(|ledger| ledger.image())
    }

    /// On the leader: replace voter `old` by the new, empty replica `new`. Returns once `new`
    /// has caught up (from the leader's snapshot if the log it needs was purged) and the group
    /// is `{voters} - old + new`.
    pub fn replace(&self, old: u8, new: u8) -> Result<(), ReplicaError> {
        self.runtime().block_on(async {
            self.raft.add_learner(u64::from(new), EmptyNode {}, true).await.map_err(raft_error)?;
            let voters: BTreeSet<u64> = {
                let metrics = self.raft.metrics().borrow_watched().clone();
                metrics
                    .membership_config
                    .membership()
                    .voter_ids()
                    .filter(|id| *id != u64::from(old))
                    .chain([u64::from(new)])
                    .collect()
            };
            self.raft.change_membership(voters, false).await.map_err(raft_error)?;
            Ok(())
        })
    }

    /// Take a snapshot now (an operator's checkpoint; tests).
    pub fn snapshot(&self) -> Result<(), ReplicaError> {
        self.runtime().block_on(self.raft.trigger().snapshot()).map_err(raft_error)
    }

    /// Stop: Raft first, then the runtime. The store stays as it is on disk.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            let _already_stopped = runtime.block_on(self.raft.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// "Ask again" for every transaction of a notarize request (no certificate): what a bank is
/// told while the notary has no leader or cannot say what became of its request.
fn ask_again(envelope: &Envelope) -> Option<Envelope> {
    let Message::NotarizeRequest(request) = &envelope.message else { return None };
    let why = Error::new(ErrorCode::RequestInProgress, "the notary is changing leaders; ask again");
    let reply = NotarizeReply {
        batch: request.batch,
        certificate: None,
        outcomes: vec![Outcome::Refused(why); request.txs.len()],
    };
    Some(Envelope { from: RoleId::Notary, to: envelope.from.clone(), message: Message::NotarizeReply(reply) })
}
