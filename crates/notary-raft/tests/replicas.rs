//! Three replicas of the notary in one process, each on its own store in its own directory,
//! over the in-process transport with a switch that cuts a replica off: a follower forwards,
//! the leader certifies, a killed or partitioned leader loses no acknowledged spend and lets no
//! double spend through, a restarted replica catches up from its disk, a replacement from a
//! snapshot. Every test is bounded (each wait has a deadline) and ends by itself.

use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::Hash32;
use dtenge_core::token::{TokenId, TxId};
use dtenge_core::ErrorCode;
use dtenge_notary_raft::storage::tables;
use dtenge_notary_raft::{Replica, ReplicaConfig, Role};
use dtenge_store::Store;
use dtenge_transport::{Inbox, Transport};
use dtenge_wire::{Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, RoleId};
use std::collections::{BTreeMap, BTreeSet};

mod common;
use common::{key, notary_key, senders, steppe, Switch};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest any one step may take (an election is 1-2 s).
const STEP: Duration = Duration::from_secs(20);

fn token(n: u32) -> TokenId {
    let mut bytes = [7; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    TokenId(Hash32(bytes))
}

fn tx(n: u32, inputs: &[u32], outputs: &[u32]) -> CompactTx {
    let mut id = [3; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    CompactTx {
        tx_id: TxId(Hash32(id)),
        inputs: inputs.iter().map(|i| token(*i)).collect(),
        outputs: outputs.iter().map(|o| token(*o)).collect(),
    }
}

struct Group {
    switch: Arc<Switch>,
    dirs: BTreeMap<u8, tempfile::TempDir>,
    running: BTreeMap<u8, Arc<Replica>>,
    bank: Inbox,
    central: Inbox,
    batch: u64,
    snapshot_logs: u64,
}

impl Group {
    fn new(snapshot_logs: u64) -> Group {
        let switch = Arc::new(Switch::default());
        let bank = switch.inner.register(steppe());
        let central = switch.inner.register(RoleId::Central);
        let mut group =
            Group { switch, dirs: BTreeMap::new(), running: BTreeMap::new(), bank, central, batch: 0, snapshot_logs };
        for id in 1..=3 {
            group.start(id, vec![1, 2, 3]);
        }
        group
    }

    /// Start replica `id` on its directory (kept from a previous run of it, or new).
    fn start(&mut self, id: u8, founding: Vec<u8>) {
        let dir = self.dirs.entry(id).or_insert_with(|| tempfile::tempdir().unwrap());
        let store = Store::open(dir.path(), &tables()).unwrap();
        let replica = Arc::new(
            Replica::open(ReplicaConfig {
                id,
                group: dtenge_notary_raft::Group::whole(),
                founding,
                store,
                key: notary_key().into(),
                senders: senders(),
                transport: self.switch.clone(),
                snapshot_logs: self.snapshot_logs,
            })
            .unwrap(),
        );
        let inbox = self.switch.inner.register(RoleId::NotaryReplica(id));
        let serving = replica.clone();
        std::thread::spawn(move || {
            for envelope in inbox {
                serving.handle(envelope);
            }
        });
        self.running.insert(id, replica);
    }

    /// Kill replica `id`: its memory and inbox are gone, its directory stays.
    fn kill(&mut self, id: u8) {
        self.switch.inner.unregister(&RoleId::NotaryReplica(id));
        common::stop(self.running.remove(&id).expect("a running replica"));
    }

    fn replica(&self, id: u8) -> &Replica {
        &self.running[&id]
    }

    /// The leader every running replica not cut off agrees on.
    fn leader(&self, not: Option<u8>) -> u8 {
        let deadline = Instant::now() + STEP;
        loop {
            let cut = self.switch.cut.read().clone();
            let seen: BTreeSet<Option<u8>> = self
                .running
                .values()
                .filter(|r| !cut.contains(&RoleId::NotaryReplica(r.id())))
                .map(|r| r.status().leader)
                .collect();
            if let [Some(leader)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                if Some(leader) != not && self.running[&leader].status().role == Role::Leader {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no leader agreed on: {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn request(&mut self, from: &RoleId, txs: Vec<CompactTx>) -> NotarizeRequest {
        self.batch += 1;
        common::request(from, self.batch, txs)
    }

    /// Send a request to replica `at` once; its answer within `wait`, if any.
    fn ask(&mut self, at: u8, from: RoleId, txs: Vec<CompactTx>, wait: Duration) -> Option<NotarizeReply> {
        let request = self.request(&from, txs);
        let batch = request.batch;
        let envelope =
            Envelope { from: from.clone(), to: RoleId::NotaryReplica(at), message: Message::NotarizeRequest(request) };
        self.switch.send(envelope).unwrap();
        let inbox = if from == RoleId::Central { &mut self.central } else { &mut self.bank };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match inbox.try_recv() {
                Ok(Envelope { from: RoleId::Notary, message: Message::NotarizeReply(reply), .. })
                    if reply.batch == batch =>
                {
                    return Some(reply)
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        None
    }

    /// Ask at replica `at` until the notary decides (no "ask again"), as a bank does.
    fn notarize(&mut self, at: u8, from: RoleId, txs: Vec<CompactTx>) -> NotarizeReply {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(reply) = self.ask(at, from.clone(), txs.clone(), Duration::from_secs(3)) {
                if !reply
                    .outcomes
                    .iter()
                    .all(|o| matches!(o, Outcome::Refused(e) if e.code == ErrorCode::RequestInProgress))
                {
                    verify(&txs, &reply);
                    return reply;
                }
            }
            assert!(Instant::now() < deadline, "the notary did not decide a request in time");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until every running replica applied what the leader applied; their ledgers are
    /// then equal, byte for byte.
    fn converge(&self) {
        let leader = self.leader(None);
        let deadline = Instant::now() + STEP;
        loop {
            let target = self.replica(leader).status().applied_index;
            if self.running.values().all(|r| r.status().applied_index >= target) {
                let image = self.replica(leader).image();
                for replica in self.running.values() {
                    if replica.status().applied_index == target {
                        assert!(replica.image() == image, "replica {} differs from the leader", replica.id());
                    }
                }
                if self.running.values().all(|r| r.status().applied_index == target) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the replicas did not converge");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn follower(&self, leader: u8) -> u8 {
        *self.running.keys().find(|id| **id != leader).expect("a follower")
    }
}

/// Every committed outcome is certified by the notary's key; the rest are refused.
fn verify(txs: &[CompactTx], reply: &NotarizeReply) {
    for (tx, outcome) in txs.iter().zip(&reply.outcomes) {
        if let Outcome::Committed(proof) = outcome {
            let certificate = reply.certificate.as_ref().expect("a committed outcome comes with a certificate");
            certificate.verify(&notary_key().public_key(), &tx.hash(), proof).unwrap();
        }
    }
}

fn codes(reply: &NotarizeReply) -> Vec<Option<ErrorCode>> {
    reply
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Committed(_) => None,
            Outcome::Refused(e) => Some(e.code),
        })
        .collect()
}

fn seq(reply: &NotarizeReply) -> u64 {
    reply.certificate.as_ref().expect("a certificate").seq
}

#[test]
fn a_follower_forwards_the_leader_certifies_and_every_replica_holds_the_same_ledger() {
    let mut group = Group::new(dtenge_notary_raft::SNAPSHOT_LOGS);
    let leader = group.leader(None);
    let follower = group.follower(leader);
    let issue = group.notarize(follower, RoleId::Central, vec![tx(1, &[], &[10, 11])]);
    assert_eq!((codes(&issue), seq(&issue)), (vec![None], 1));
    let pay = group.notarize(leader, steppe(), vec![tx(2, &[10], &[12]), tx(3, &[10], &[13])]);
    assert_eq!(codes(&pay), vec![None, Some(ErrorCode::DoubleSpend)]);
    assert_eq!(seq(&pay), 2, "numbers are dense and the same on every replica");
    let bank_issue = group.notarize(follower, steppe(), vec![tx(4, &[], &[14])]);
    assert_eq!(codes(&bank_issue), vec![Some(ErrorCode::Forbidden)]);
    group.converge();
    for replica in group.running.values() {
        let status = replica.status();
        assert_eq!((status.report.seq, status.report.unspent), (2, 2), "replica {}", status.id);
        assert!(replica.is_committed(&tx(2, &[], &[]).tx_id));
    }
}

#[test]
fn a_killed_leader_loses_no_acknowledged_spend_lets_no_double_spend_and_catches_up_from_its_disk() {
    let mut group = Group::new(dtenge_notary_raft::SNAPSHOT_LOGS);
    let leader = group.leader(None);
    group.notarize(leader, RoleId::Central, vec![tx(1, &[], &(100..120).collect::<Vec<_>>())]);
    for n in 0..10 {
        let reply = group.notarize(leader, steppe(), vec![tx(10 + n, &[100 + n], &[200 + n])]);
        assert_eq!(codes(&reply), vec![None]);
    }
    let before = group.replica(leader).status().report;
    group.kill(leader);
    let next = group.leader(Some(leader));
    // Every acknowledged spend is there: its retry is certified again, its double spend refused.
    for n in 0..10 {
        let retry = group.notarize(next, steppe(), vec![tx(10 + n, &[100 + n], &[200 + n])]);
        assert_eq!(codes(&retry), vec![None]);
        let double = group.notarize(next, steppe(), vec![tx(50 + n, &[100 + n], &[300 + n])]);
        assert_eq!(codes(&double), vec![Some(ErrorCode::DoubleSpend)]);
    }
    let after = group.replica(next).status().report;
    assert_eq!(after.unspent_hash, before.unspent_hash, "retries and refusals changed nothing");
    assert_eq!(after.seq, before.seq + 10, "each retry got a certificate of its own");
    let fresh = group.notarize(next, steppe(), vec![tx(70, &[119], &[400])]);
    assert_eq!(codes(&fresh), vec![None]);
    group.start(leader, vec![1, 2, 3]);
    group.converge();
    assert!(
        group.replica(leader).is_committed(&tx(70, &[], &[]).tx_id),
        "the old leader caught up from its disk and the log"
    );
}

#[test]
fn a_partitioned_leader_acknowledges_nothing_and_its_entry_is_discarded() {
    let mut group = Group::new(dtenge_notary_raft::SNAPSHOT_LOGS);
    let leader = group.leader(None);
    group.notarize(leader, RoleId::Central, vec![tx(1, &[], &[10])]);
    group.switch.cut.write().insert(RoleId::NotaryReplica(leader));
    // The cut-off leader cannot reach a majority: the bank hears nothing from it (its answer
    // would be lost too; what matters is that nothing it logged alone can commit).
    let lone = group.ask(leader, steppe(), vec![tx(2, &[10], &[11])], Duration::from_secs(2));
    assert!(lone.is_none());
    let next = group.leader(Some(leader));
    let other = group.notarize(next, steppe(), vec![tx(3, &[10], &[12])]);
    assert_eq!(codes(&other), vec![None], "the majority spends the token");
    group.switch.cut.write().clear();
    group.converge();
    let resent = group.notarize(group.leader(None), steppe(), vec![tx(2, &[10], &[11])]);
    assert_eq!(codes(&resent), vec![Some(ErrorCode::DoubleSpend)], "the lone leader's entry never committed");
    for replica in group.running.values() {
        assert!(!replica.is_committed(&tx(2, &[], &[]).tx_id));
    }
}

#[test]
fn a_replacement_replica_catches_up_from_the_leaders_snapshot() {
    let mut group = Group::new(16);
    let leader = group.leader(None);
    group.notarize(leader, RoleId::Central, vec![tx(1, &[], &(100..160).collect::<Vec<_>>())]);
    for n in 0..60 {
        group.notarize(leader, steppe(), vec![tx(10 + n, &[100 + n], &[200 + n])]);
    }
    let lost = group.follower(leader);
    group.kill(lost);
    group.dirs.remove(&lost);
    // A new replica under a new number (one that lost its disk must not vote again as itself:
    // it may have voted in a term it no longer remembers).
    group.start(4, vec![]);
    group.replica(leader).replace(lost, 4).unwrap();
    group.converge();
    let status = group.replica(4).status();
    assert!(status.snapshots_installed >= 1, "the log it needed was purged: it took a snapshot");
    assert_eq!(status.report, group.replica(leader).status().report);
    // The group of three with the replacement: still a majority without any one of them.
    let fresh = group.notarize(4, steppe(), vec![tx(90, &[200], &[300])]);
    assert_eq!(codes(&fresh), vec![None]);
    // The evidence on the leader, whose log was purged after its snapshots: every request it
    // logged, once each in log order, the archived ones among them, each still signed by its
    // sender.
    let evidence = group.replica(leader).evidence().unwrap();
    let indexes: Vec<u64> = evidence.iter().map(|(index, _)| *index).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "in log order, once each");
    let mut batches = BTreeSet::new();
    for (_, envelope) in &evidence {
        let Message::NotarizeRequest(request) = &envelope.message else { continue };
        let signer = if envelope.from == RoleId::Central { key(1) } else { key(3) };
        let leaves: Vec<Hash32> = request.txs.iter().map(CompactTx::hash).collect();
        let message = notarize_message(request.batch, &dtenge_core::merkle::root(&leaves));
        dtenge_core::crypto::verify(&signer.public_key(), &message.0, &request.signature).unwrap();
        batches.insert(request.batch);
    }
    assert!(batches.len() >= 62, "the issue, sixty payments and the last: {}", batches.len());
    let purged = group.replica(leader).status().purged_index;
    assert!(purged > 0 && indexes[0] <= purged, "entries purged from the log are in the evidence");
}
