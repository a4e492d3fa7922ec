//! Raft's calls between replicas, as envelopes over any `Transport`.
//!
//! A call is a [`RaftRpc`] from `NotaryReplica(me)` to `NotaryReplica(target)`, numbered by
//! the caller; the callee answers with the same number. A call not answered within Raft's
//! time-to-live for it is reported unreachable, and Raft calls again (a lost envelope, a
//! replica that is down, a partition all look the same to it, as they should: delivery over a
//! `Transport` is never promised). The bodies are openraft's messages in bincode.

use crate::{NodeId, NotaryRaft, Snapshot, Vote};
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, RaftCall, RaftRpc, RoleId};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{EmptyNode, OptionalSend};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Most calls waiting for their answers at once: Raft keeps a few per peer (replication,
/// heartbeats, votes); more means answers are being lost and callers pile up.
const CALLS_WAITING_MAX: usize = 1_024;

/// This replica's calls in flight, by number.
pub struct Calls {
    me: RoleId,
    group: crate::Group,
    transport: Arc<dyn Transport>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>,
    next_id: AtomicU64,
}

impl Calls {
    pub fn new(me: RoleId, group: crate::Group, transport: Arc<dyn Transport>) -> Calls {
        Calls { me, group, transport, waiting: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) }
    }

    /// Call `target` and wait up to `ttl` for its answer's body.
    async fn call(&self, target: NodeId, call: RaftCall, body: Vec<u8>, ttl: Duration) -> Result<Vec<u8>, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock();
            if waiting.len() >= CALLS_WAITING_MAX {
                return Err(format!("{CALLS_WAITING_MAX} calls are waiting for answers"));
            }
            waiting.insert(id, answer);
        }
        let request = Envelope {
            from: self.me.clone(),
            to: self.group.role_of(target),
            message: Message::RaftRequest(RaftRpc { id, call, body }),
        };
        if let Err(e) = self.transport.send(request) {
            self.waiting.lock().remove(&id);
            return Err(e.to_string());
        }
        let answer = tokio::time::timeout(ttl, answered).await;
        self.waiting.lock().remove(&id);
        match answer {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err("the call was dropped".into()),
            Err(_) => Err(format!("{call:?} to replica {target}: no answer in {} ms", ttl.as_millis())),
        }
    }

    /// An answer arrived: hand it to its caller (one no longer waiting is dropped).
    pub fn answered(&self, rpc: RaftRpc) {
        if let Some(caller) = self.waiting.lock().remove(&rpc.id) {
            let _gone_is_fine = caller.send(rpc.body);
        }
    }
}

/// What Raft asks for a connection to each peer.
pub struct Network {
    pub(crate) calls: Arc<Calls>,
}

pub struct Connection {
    calls: Arc<Calls>,
    target: NodeId,
}

impl RaftNetworkFactory<NotaryRaft> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &EmptyNode) -> Connection {
        Connection { calls: self.calls.clone(), target }
    }
}

fn unreachable(e: impl ToString) -> Unreachable<NotaryRaft> {
    Unreachable::from_string(e.to_string())
}

impl Connection {
    async fn call<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        call: RaftCall,
        request: &Q,
        ttl: Duration,
    ) -> Result<A, Unreachable<NotaryRaft>> {
        let body = bincode::serialize(request).map_err(unreachable)?;
        let answer = self.calls.call(self.target, call, body, ttl).await.map_err(unreachable)?;
        bincode::deserialize(&answer).map_err(unreachable)
    }
}

impl RaftNetworkV2<NotaryRaft> for Connection {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<NotaryRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NotaryRaft>, RPCError<NotaryRaft>> {
        Ok(self.call(RaftCall::AppendEntries, &rpc, option.hard_ttl()).await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NotaryRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<NotaryRaft>, RPCError<NotaryRaft>> {
        Ok(self.call(RaftCall::Vote, &rpc, option.hard_ttl()).await?)
    }

    /// The whole snapshot in one call (the wire bounds a field at 64 MiB: a ledger of about
    /// two million unspent tokens and decided transactions; beyond that it must be sent in
    /// chunks, which is not built yet).
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NotaryRaft>, StreamingError<NotaryRaft>> {
        let carried = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        Ok(self.call(RaftCall::InstallSnapshot, &carried, option.hard_ttl()).await?)
    }
}

/// Serve one call from another replica with `raft`; the answer's body, or `None` when this
/// replica cannot answer (it is stopping, or the call is malformed: the caller times out).
pub async fn serve(
    raft: &openraft::Raft<NotaryRaft, crate::storage::Machine>,
    call: RaftCall,
    body: &[u8],
) -> Option<Vec<u8>> {
    let answer = match call {
        RaftCall::AppendEntries => {
            let request: AppendEntriesRequest<NotaryRaft> = bincode::deserialize(body).ok()?;
            bincode::serialize(&raft.append_entries(request).await.ok()?)
        }
        RaftCall::Vote => {
            let request: VoteRequest<NotaryRaft> = bincode::deserialize(body).ok()?;
            bincode::serialize(&raft.vote(request).await.ok()?)
        }
        RaftCall::InstallSnapshot => {
            let (vote, meta, image): (Vote, crate::SnapshotMeta, Vec<u8>) = bincode::deserialize(body).ok()?;
            let snapshot = Snapshot { meta, snapshot: Cursor::new(image) };
            bincode::serialize(&raft.install_full_snapshot(vote, snapshot).await.ok()?)
        }
    };
    answer.ok()
}
