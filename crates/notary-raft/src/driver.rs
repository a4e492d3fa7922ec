//! The coordinator's driver: on the leader of a sharded notary, it carries each batch in
//! flight through two-phase commit with the shards. Everything it knows that matters is in the
//! coordinator's log (the batches in flight, their decisions); what it keeps in memory (the
//! shards' answers, when it last asked) a new leader rebuilds by asking again, which the
//! shards answer as the first time. So a coordinator whose leader crashed between the two
//! phases finishes every batch it had begun: coordinator recovery.

use crate::coordinator::Flight;
use crate::state::State;
use crate::storage::Machine;
use crate::{Command, NotaryRaft};
use dtenge_core::Error;
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, RoleId, ShardFinish, ShardFinished, ShardPrepare, ShardPrepared};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Raft, ServerState};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the driver looks at the batches in flight.
const TICK_MS: u64 = 5;
/// A shard that has not answered is asked again after this long, at its next replica.
const ASK_AGAIN_MS: u64 = 300;

/// What the driver learned and did, since this replica last became leader.
#[derive(Default)]
struct Progress {
    prepared: HashMap<(u64, u8), ShardPrepared>,
    finished: HashSet<(u64, u8)>,
    /// When each shard was last asked for each batch and phase, and how often.
    asked: HashMap<(u64, u8, bool), (Instant, usize)>,
    /// Batches whose decision or end is proposed and not yet answered.
    proposing: HashSet<u64>,
    /// The shards each batch involves, found once per batch (not at every tick).
    involved: HashMap<u64, Vec<u8>>,
}

pub(crate) struct Driver {
    me: u8,
    shards: u8,
    shard_replicas: Vec<u8>,
    raft: Raft<NotaryRaft, Machine>,
    machine: Machine,
    transport: Arc<dyn Transport>,
    progress: Mutex<Progress>,
}

impl Driver {
    pub(crate) fn new(
        me: u8,
        shards: u8,
        shard_replicas: Vec<u8>,
        raft: Raft<NotaryRaft, Machine>,
        machine: Machine,
        transport: Arc<dyn Transport>,
    ) -> Driver {
        assert!(shards >= 1 && !shard_replicas.is_empty(), "shards, each with replicas");
        Driver { me, shards, shard_replicas, raft, machine, transport, progress: Mutex::new(Progress::default()) }
    }

    /// A shard's answer to a prepare.
    pub(crate) fn prepared(&self, from: &RoleId, answer: ShardPrepared) {
        if let RoleId::NotaryShard { shard, .. } = from {
            self.progress.lock().prepared.insert((answer.id, *shard), answer);
        }
    }

    /// A shard finished a batch.
    pub(crate) fn finished(&self, from: &RoleId, answer: ShardFinished) {
        if let RoleId::NotaryShard { shard, .. } = from {
            self.progress.lock().finished.insert((answer.id, *shard));
        }
    }

    /// Step every batch in flight, while this replica leads; forever (the runtime's task).
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
            self.step();
        }
    }

    fn leads(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(u64::from(self.me))
    }

    fn step(self: &Arc<Self>) {
        if !self.leads() {
            // A new leader starts from the log alone.
            *self.progress.lock() = Progress::default();
            return;
        }
        let mut proposals = Vec::new();
        self.machine.with_ledger(|state| {
            let State::Coordinator(ledger) = state else { return };
            let mut progress = self.progress.lock();
            let flights = ledger.flights();
            progress.prepared.retain(|(id, _), _| flights.contains_key(id));
            progress.finished.retain(|(id, _)| flights.contains_key(id));
            progress.asked.retain(|(id, _, _), _| flights.contains_key(id));
            progress.involved.retain(|id, _| flights.contains_key(id));
            for (&id, flight) in flights {
                if progress.proposing.contains(&id) {
                    continue;
                }
                if let Some(proposal) = self.advance(&mut progress, id, flight) {
                    progress.proposing.insert(id);
                    proposals.push((id, proposal));
                }
            }
        });
        for (id, proposal) in proposals {
            let driver = self.clone();
            tokio::spawn(async move {
                let envelope =
                    Envelope { from: RoleId::NotaryReplica(driver.me), to: RoleId::Notary, message: proposal };
                match driver.raft.client_write(Command(envelope)).await {
                    Ok(written) => {
                        if let Some(answer) = written.data.0 {
                            // The bank's answer, once decided; lost is fine (it asks again).
                            let _ = driver.transport.send(answer);
                        }
                    }
                    Err(e) => tracing::debug!(batch = id, error = %e, "a coordinator's proposal was not answered"),
                }
                driver.progress.lock().proposing.remove(&id);
            });
        }
    }

    /// Ask what is missing of batch `id`, or the entry to propose once nothing is. Called at
    /// every tick for every batch in flight: the parts for a shard are built only when it is
    /// asked (at most every [`ASK_AGAIN_MS`]).
    fn advance(&self, progress: &mut Progress, id: u64, flight: &Flight) -> Option<Message> {
        let involved = progress.involved.entry(id).or_insert_with(|| flight.involved_shards(self.shards)).clone();
        let parts = |shard: u8| flight.parts_in(shard, self.shards);
        match &flight.decided {
            None => {
                let missing: Vec<u8> =
                    involved.iter().copied().filter(|shard| !progress.prepared.contains_key(&(id, *shard))).collect();
                for &shard in &missing {
                    self.ask(progress, id, shard, false, || {
                        let txs = parts(shard).into_iter().map(|(_, part)| part).collect();
                        Message::ShardPrepare(ShardPrepare { id, txs })
                    });
                }
                missing.is_empty().then(|| Message::ShardDecide(self.fold(progress, id, flight, &involved)))
            }
            Some(commit) => {
                let missing: Vec<u8> =
                    involved.iter().copied().filter(|shard| !progress.finished.contains(&(id, *shard))).collect();
                for &shard in &missing {
                    self.ask(progress, id, shard, true, || {
                        let commit = parts(shard).iter().map(|(j, _)| commit[*j]).collect();
                        Message::ShardFinish(ShardFinish { id, commit })
                    });
                }
                missing.is_empty().then_some(Message::ShardDone(ShardFinished { id }))
            }
        }
    }

    /// Per preparing transaction: the first refusal of any shard, or none.
    fn fold(&self, progress: &Progress, id: u64, flight: &Flight, involved: &[u8]) -> ShardPrepared {
        let mut refusals: Vec<Option<Error>> = vec![None; flight.preparing.len()];
        for &shard in involved {
            let parts = flight.parts_in(shard, self.shards);
            let answer = &progress.prepared[&(id, shard)];
            if answer.refusals.len() != parts.len() {
                // A shard that answers another batch's shape is broken: refuse all of it.
                let why = Error::internal(format!("shard {shard} answered batch {id} with another shape"));
                return ShardPrepared { id, refusals: vec![Some(why); flight.preparing.len()] };
            }
            for ((j, _), refusal) in parts.iter().zip(&answer.refusals) {
                if refusals[*j].is_none() {
                    refusals[*j] = refusal.clone();
                }
            }
        }
        ShardPrepared { id, refusals }
    }

    /// Send `message()` to `shard`, unless it was asked for this batch and phase less than
    /// [`ASK_AGAIN_MS`] ago.
    fn ask(&self, progress: &mut Progress, id: u64, shard: u8, finishing: bool, message: impl FnOnce() -> Message) {
        let now = Instant::now();
        let (last, times) = progress.asked.get(&(id, shard, finishing)).copied().unwrap_or((now, 0));
        if times > 0 && now.duration_since(last) < Duration::from_millis(ASK_AGAIN_MS) {
            return;
        }
        // Each time at the next replica of the shard: whichever answers hands it to its leader.
        let replica = self.shard_replicas[times % self.shard_replicas.len()];
        let to = RoleId::NotaryShard { shard, replica };
        let _lost_is_fine =
            self.transport.send(Envelope { from: RoleId::NotaryReplica(self.me), to, message: message() });
        progress.asked.insert((id, shard, finishing), (now, times + 1));
    }
}
