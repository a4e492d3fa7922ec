//! The scenario the brief asks about, on any runtime: three replicas; a follower redirects; an
//! isolated leader can commit nothing; the acknowledged spend survives the failover and its
//! double spend is refused; a crashed replica restarts from its disk; a replaced replica catches
//! up from a snapshot after the log was purged. Returns a trace of what it saw.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::type_config::TypeConfigExt;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};

use crate::*;

pub struct Cluster<C: NotaryCfg> {
    pub router: Router<C>,
    pub disks: BTreeMap<u64, Disk<C>>,
    config: Arc<Config>,
    pub trace: Vec<String>,
}

const WAIT: Duration = Duration::from_secs(20);

fn node(id: u64) -> BasicNode {
    BasicNode { addr: format!("notary-{id}") }
}

impl<C> Cluster<C>
where
    C: NotaryCfg,
{
    pub fn new() -> Self {
        let config = Config {
            cluster_name: "dtenge-notary".into(),
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            // Snapshots when the application says (it knows when a checkpoint is due).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        };
        Cluster {
            router: Router::default(),
            disks: BTreeMap::new(),
            config: Arc::new(config.validate().expect("a valid config")),
            trace: Vec::new(),
        }
    }

    /// Start replica `id` on its disk (a fresh one the first time, the same one after a crash).
    pub async fn start(&mut self, id: u64) {
        let disk = self.disks.entry(id).or_default().clone();
        let raft = openraft::Raft::new(
            id,
            self.config.clone(),
            Net { router: self.router.clone(), me: id },
            LogStore { disk: disk.clone() },
            NotarySm { disk },
        )
        .await
        .expect("a replica starts");
        self.router.insert(id, raft);
    }

    /// Stop replica `id`: its memory is gone, its disk stays.
    pub async fn crash(&mut self, id: u64) {
        if let Some(raft) = self.router.remove(id) {
            raft.shutdown().await.expect("shutdown");
        }
    }

    pub fn raft(&self, id: u64) -> NotaryRaft<C> {
        self.router.get(id)
    }

    async fn leader_seen_by(&self, id: u64, not: Option<u64>) -> u64 {
        let metrics = self
            .raft(id)
            .wait(Some(WAIT))
            .metrics(|m| m.current_leader.is_some() && m.current_leader != not, "a leader")
            .await
            .expect("a leader is elected");
        let leader = metrics.current_leader.expect("the replicas agreed on a leader");
        self.raft(leader).wait(Some(WAIT)).state(ServerState::Leader, "leader state").await.expect("leader");
        leader
    }

    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    /// Propose at the leader, as the bank-facing code would: a `ForwardToLeader` without a
    /// leader (no leader known, or the leader's quorum lease expired) is asked again shortly.
    async fn write(&mut self, at: u64, command: NotaryCommand) -> Reply {
        for attempt in 0..50 {
            match self.raft(at).client_write(command.clone()).await {
                Ok(response) => {
                    let line = format!("{command} at {at} -> log {} {:?}", response.log_id, response.data);
                    self.note(line);
                    return response.data;
                }
                Err(e) => {
                    let forward = e.forward_to_leader().cloned().unwrap_or_else(|| panic!("{e}"));
                    assert!(forward.leader_id.is_none() || forward.leader_id == Some(at), "{e}");
                    self.note(format!("{command} at {at}: attempt {attempt} answered {e}"));
                    C::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("{command} at {at}: not committed after 50 attempts")
    }

    /// Wait until every running replica applied what `leader` applied, then compare ledgers.
    async fn converge(&mut self, leader: u64) -> Ledger {
        // The leader's disk, not its metrics: a write is answered from inside `apply`, before
        // the metrics show the entry applied.
        let index = self.disks[&leader].lock().applied.as_ref().map(|id| id.index());
        for id in self.router.ids() {
            self.raft(id).wait(Some(WAIT)).applied_index_at_least(index, "caught up").await.expect("caught up");
        }
        let ledger = self.disks[&leader].lock().ledger.clone();
        for id in self.router.ids() {
            assert_eq!(self.disks[&id].lock().ledger, ledger, "replica {id} agrees with the leader");
        }
        ledger
    }

    pub async fn shutdown_all(&mut self) {
        for id in self.router.ids() {
            self.crash(id).await;
        }
    }
}

fn notarize(sender: &str, batch: u64, txs: Vec<CompactTx>) -> NotaryCommand {
    NotaryCommand::Notarize { sender: sender.into(), batch, txs, signature: vec![0; 64] }
}

fn tx(tx_id: TxId, inputs: &[TokenId], outputs: &[TokenId]) -> CompactTx {
    CompactTx { tx_id, inputs: inputs.to_vec(), outputs: outputs.to_vec() }
}

pub async fn run<C>() -> Vec<String>
where
    C: NotaryCfg,
{
    let mut cluster = Cluster::<C>::new();
    for id in [1, 2, 3] {
        cluster.start(id).await;
    }
    // Initialize once, on one replica, with all three.
    let members: BTreeMap<u64, BasicNode> = [1, 2, 3].into_iter().map(|id| (id, node(id))).collect();
    cluster.raft(1).initialize(members).await.expect("initialize");
    let leader = cluster.leader_seen_by(1, None).await;
    cluster.note(format!("leader {leader}"));

    // A follower does not take writes: it names the leader.
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).expect("three replicas: another than the leader");
    cluster.raft(follower).wait(Some(WAIT)).current_leader(leader, "the follower knows").await.expect("known");
    let refused = cluster.raft(follower).client_write(notarize("central", 0, vec![tx(100, &[], &[1])])).await;
    let forward = refused.expect_err("a follower refuses").forward_to_leader().cloned().expect("ForwardToLeader");
    assert_eq!(forward.leader_id, Some(leader));
    cluster.note(format!("follower {follower} forwards to {:?}", forward.leader_id));

    // Issue, spend, and a double spend inside one batch.
    let reply = cluster.write(leader, notarize("central", 1, vec![tx(1, &[], &[10, 11])])).await;
    assert_eq!(reply.outcomes, vec![Outcome::Committed]);
    let reply = cluster.write(leader, notarize("steppe", 1, vec![tx(2, &[10], &[20]), tx(3, &[10], &[21])])).await;
    assert_eq!(reply.outcomes[0], Outcome::Committed);
    assert!(matches!(reply.outcomes[1], Outcome::Refused(_)));

    // Partition the leader away. It can commit nothing; the other two elect a new leader.
    cluster.router.isolate(leader);
    let stale = C::timeout(
        Duration::from_millis(1_000),
        cluster.raft(leader).client_write(notarize("steppe", 2, vec![tx(4, &[11], &[24])])),
    )
    .await;
    let stale_committed = matches!(stale, Ok(Ok(_)));
    assert!(!stale_committed, "an isolated leader commits nothing");
    cluster.note(format!("isolated {leader}: write not acknowledged"));
    let survivor = [1, 2, 3].into_iter().find(|id| *id != leader).expect("three replicas: another than the leader");
    let new_leader = cluster.leader_seen_by(survivor, Some(leader)).await;
    cluster.note(format!("new leader {new_leader}"));

    // The acknowledged spend survived: its double spend is refused; its retry is certified again.
    let reply = cluster.write(new_leader, notarize("sapa", 1, vec![tx(5, &[10], &[25])])).await;
    assert!(matches!(reply.outcomes[0], Outcome::Refused(_)), "no double spend after failover");
    let reply = cluster.write(new_leader, notarize("steppe", 1, vec![tx(2, &[10], &[20])])).await;
    assert_eq!(reply.outcomes, vec![Outcome::Committed]);
    let reply = cluster.write(new_leader, notarize("sapa", 2, vec![tx(6, &[11], &[26])])).await;
    assert_eq!(reply.outcomes, vec![Outcome::Committed]);

    // Heal: the old leader's unacknowledged entry is truncated; its resend is refused (11 is spent).
    cluster.router.heal();
    cluster.converge(new_leader).await;
    let reply = cluster.write(new_leader, notarize("steppe", 2, vec![tx(4, &[11], &[24])])).await;
    assert!(matches!(reply.outcomes[0], Outcome::Refused(_)));

    // A follower crashes and restarts from its disk.
    let victim = [1, 2, 3].into_iter().find(|id| *id != new_leader).expect("three replicas: another than the leader");
    cluster.crash(victim).await;
    cluster.write(new_leader, notarize("sapa", 3, vec![tx(7, &[26], &[27])])).await;
    cluster.start(victim).await;
    cluster.converge(new_leader).await;
    cluster.note(format!("replica {victim} restarted from its disk and caught up"));

    // Snapshot, purge the log, and replace a replica by a new one on an empty disk.
    let leader_raft = cluster.raft(new_leader);
    leader_raft.trigger().snapshot().await.expect("snapshot");
    let applied = leader_raft.metrics().borrow_watched().last_applied.clone();
    leader_raft
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some() && m.snapshot == applied, "snapshot built")
        .await
        .expect("snapshot built");
    leader_raft.trigger().purge_log(applied.as_ref().expect("entries applied").index()).await.expect("purge");
    leader_raft
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some() && m.purged == applied, "log purged")
        .await
        .expect("purged");
    let gone = [1, 2, 3].into_iter().find(|id| *id != new_leader && *id != victim).expect("three replicas: the third");
    cluster.crash(gone).await;
    cluster.disks.remove(&gone);
    cluster.start(4).await;
    leader_raft.add_learner(4, node(4), true).await.expect("add learner");
    let voters: BTreeSet<u64> = [new_leader, victim, 4].into_iter().collect();
    leader_raft.change_membership(voters, false).await.expect("change membership");
    cluster.write(new_leader, notarize("sapa", 4, vec![tx(8, &[27], &[28])])).await;
    let ledger = cluster.converge(new_leader).await;
    let installed = cluster.disks[&4].lock().snapshots_installed;
    assert!(installed >= 1, "the new replica caught up from a snapshot");
    cluster.note(format!("replica {gone} replaced by 4: {installed} snapshot(s) installed"));
    cluster.note(format!(
        "final: unspent {:?}, committed {:?}, seq {}",
        ledger.unspent, ledger.committed, ledger.seq
    ));
    let syncs: Vec<u64> = cluster.router.ids().iter().map(|id| cluster.disks[id].lock().syncs).collect();
    cluster.note(format!("durable writes per replica: {syncs:?}"));

    cluster.shutdown_all().await;
    cluster.trace
}
