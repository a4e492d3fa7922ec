//! The notary sharded by token-id range: a coordinator group (the notary's own three
//! replicas) and two shard groups of three replicas each, every replica on its own store, in
//! one process over the in-process transport with a switch that cuts roles off. A transaction
//! whose tokens fall in both shards commits in both or in neither (two-phase commit); a
//! coordinator whose leader is killed between the phases finishes the batch under its next
//! leader. Every wait is bounded.

use dtenge_core::certificate::CompactTx;
use dtenge_core::crypto::Hash32;
use dtenge_core::token::{TokenId, TxId};
use dtenge_core::ErrorCode;
use dtenge_notary_raft::storage::tables;
use dtenge_notary_raft::{Group, Replica, ReplicaConfig, Role};
use dtenge_store::Store;
use dtenge_transport::{Inbox, Transport};
use dtenge_wire::{Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, RoleId};
use std::collections::{BTreeMap, BTreeSet};

mod common;
use common::{key, senders, steppe, Switch};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(30);
const SHARDS: u8 = 2;

/// A token in shard 1 (first byte below 128) or shard 2, numbered `n`.
fn token(shard: u8, n: u8) -> TokenId {
    let mut bytes = [n; 32];
    bytes[0] = if shard == 1 { 10 } else { 200 };
    TokenId(Hash32(bytes))
}

fn tx(n: u8, inputs: &[TokenId], outputs: &[TokenId]) -> CompactTx {
    CompactTx { tx_id: TxId(Hash32([n; 32])), inputs: inputs.to_vec(), outputs: outputs.to_vec() }
}

struct Network {
    switch: Arc<Switch>,
    dirs: BTreeMap<RoleId, tempfile::TempDir>,
    running: BTreeMap<RoleId, (Group, Arc<Replica>)>,
    bank: Inbox,
    _central: Inbox,
    batch: u64,
}

fn coordinator() -> Group {
    Group::Notary { shards: SHARDS, shard_replicas: vec![1, 2, 3] }
}

impl Network {
    fn new() -> Network {
        let switch = Arc::new(Switch::default());
        let bank = switch.inner.register(steppe());
        let central = switch.inner.register(RoleId::Central);
        let mut network =
            Network { switch, dirs: BTreeMap::new(), running: BTreeMap::new(), bank, _central: central, batch: 0 };
        for group in std::iter::once(coordinator()).chain((1..=SHARDS).map(Group::Shard)) {
            for id in 1..=3 {
                network.start(&group, id);
            }
        }
        network
    }

    fn start(&mut self, group: &Group, id: u8) {
        let role = group.role_of(u64::from(id));
        let dir = self.dirs.entry(role.clone()).or_insert_with(|| tempfile::tempdir().unwrap());
        let replica = Arc::new(
            Replica::open(ReplicaConfig {
                id,
                group: group.clone(),
                founding: vec![1, 2, 3],
                store: Store::open(dir.path(), &tables()).unwrap(),
                key: common::notary_key().into(),
                senders: senders(),
                transport: self.switch.clone(),
                snapshot_logs: dtenge_notary_raft::SNAPSHOT_LOGS,
            })
            .unwrap(),
        );
        let inbox = self.switch.inner.register(role.clone());
        let serving = replica.clone();
        std::thread::spawn(move || {
            for envelope in inbox {
                serving.handle(envelope);
            }
        });
        self.running.insert(role, (group.clone(), replica));
    }

    fn kill(&mut self, role: &RoleId) -> Group {
        self.switch.inner.unregister(role);
        let (group, replica) = self.running.remove(role).expect("running");
        common::stop(replica);
        group
    }

    /// The leader of `group`, once its running replicas agree on one.
    fn leader(&self, group: &Group) -> RoleId {
        let deadline = Instant::now() + STEP;
        loop {
            let replicas: Vec<&Arc<Replica>> =
                self.running.values().filter(|(g, _)| g == group).map(|(_, r)| r).collect();
            let seen: BTreeSet<Option<u8>> = replicas.iter().map(|r| r.status().leader).collect();
            if let [Some(leader)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                let role = group.role_of(u64::from(leader));
                if self.running.get(&role).is_some_and(|(_, r)| r.status().role == Role::Leader) {
                    return role;
                }
            }
            assert!(Instant::now() < deadline, "{group:?}: no leader agreed on: {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn replica(&self, role: &RoleId) -> &Replica {
        &self.running[role].1
    }

    fn request(&mut self, from: &RoleId, txs: Vec<CompactTx>) -> NotarizeRequest {
        self.batch += 1;
        common::request(from, self.batch, txs)
    }

    /// Ask the notary (at the coordinator's replica `at`) once; its answer within `wait`.
    fn ask(&mut self, at: u8, from: RoleId, txs: Vec<CompactTx>, wait: Duration) -> Option<NotarizeReply> {
        let request = self.request(&from, txs);
        let batch = request.batch;
        let to = RoleId::NotaryReplica(at);
        self.switch.send(Envelope { from: from.clone(), to, message: Message::NotarizeRequest(request) }).unwrap();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.bank.try_recv() {
                Ok(Envelope { message: Message::NotarizeReply(reply), .. }) if reply.batch == batch => {
                    return Some(reply)
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        None
    }

    /// Ask until the notary decides, as a bank does (central's requests answered to central's
    /// inbox are read by `issue`).
    fn notarize(&mut self, txs: Vec<CompactTx>) -> Vec<Option<ErrorCode>> {
        let deadline = Instant::now() + STEP;
        loop {
            let at = match self.leader(&coordinator()) {
                RoleId::NotaryReplica(n) => n,
                other => panic!("{other}"),
            };
            if let Some(reply) = self.ask(at, steppe(), txs.clone(), Duration::from_secs(3)) {
                let codes = codes(&txs, &reply);
                if !codes.iter().all(|c| *c == Some(ErrorCode::RequestInProgress)) {
                    return codes;
                }
            }
            assert!(Instant::now() < deadline, "the notary did not decide in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Central issues `tokens` (notarized like any request; its answers go to central).
    fn issue(&mut self, n: u8, tokens: &[TokenId]) {
        let deadline = Instant::now() + STEP;
        loop {
            let at = match self.leader(&coordinator()) {
                RoleId::NotaryReplica(n) => n,
                other => panic!("{other}"),
            };
            let request = self.request(&RoleId::Central, vec![tx(n, &[], tokens)]);
            let to = RoleId::NotaryReplica(at);
            self.switch
                .send(Envelope { from: RoleId::Central, to, message: Message::NotarizeRequest(request) })
                .unwrap();
            let wait = Instant::now() + Duration::from_secs(3);
            while Instant::now() < wait {
                if self.replica(&RoleId::NotaryReplica(at)).is_committed(&tx(n, &[], &[]).tx_id) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(Instant::now() < deadline, "the issue did not commit");
        }
    }

    /// Unspent tokens in shard `n`, as its leader applied them, once every batch is done.
    fn unspent_in(&self, shard: u8) -> usize {
        self.replica(&self.leader(&Group::Shard(shard))).status().report.unspent
    }

    /// Wait until the coordinator has no batch in flight (every shard finished).
    fn settle(&self) {
        let deadline = Instant::now() + STEP;
        while self.replica(&self.leader(&coordinator())).batches_in_flight() > 0 {
            assert!(Instant::now() < deadline, "batches stayed in flight");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn codes(txs: &[CompactTx], reply: &NotarizeReply) -> Vec<Option<ErrorCode>> {
    for (tx, outcome) in txs.iter().zip(&reply.outcomes) {
        if let Outcome::Committed(proof) = outcome {
            let certificate = reply.certificate.as_ref().expect("a certificate");
            certificate.verify(&key(9).public_key(), &tx.hash(), proof).unwrap();
        }
    }
    reply
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Committed(_) => None,
            Outcome::Refused(e) => Some(e.code),
        })
        .collect()
}

#[test]
fn a_transaction_across_two_shards_commits_in_both_or_in_neither() {
    let mut net = Network::new();
    let (a, b) = (token(1, 1), token(2, 1));
    net.issue(1, &[a, b, token(1, 2), token(2, 2)]);
    // One spend of a token in each shard: both spent, the outputs created in both.
    let across = tx(2, &[a, b], &[token(1, 3), token(2, 3)]);
    assert_eq!(net.notarize(vec![across.clone()]), vec![None]);
    net.settle();
    assert_eq!((net.unspent_in(1), net.unspent_in(2)), (2, 2));
    // A spend of an unspent token in shard 1 with a token already spent in shard 2: refused,
    // and shard 1's token is not spent (its lock discarded): it can be spent alone after.
    let half_spent = tx(3, &[token(1, 2), b], &[token(1, 4)]);
    assert_eq!(net.notarize(vec![half_spent]), vec![Some(ErrorCode::DoubleSpend)]);
    net.settle();
    assert_eq!((net.unspent_in(1), net.unspent_in(2)), (2, 2), "nothing of the refused one applied");
    assert_eq!(net.notarize(vec![tx(4, &[token(1, 2)], &[token(1, 5)])]), vec![None]);
    // A retry of the committed one is certified again and spends nothing.
    assert_eq!(net.notarize(vec![across]), vec![None]);
    net.settle();
    assert_eq!((net.unspent_in(1), net.unspent_in(2)), (2, 2));
}

#[test]
fn a_coordinator_whose_leader_dies_between_the_phases_finishes_the_batch_under_the_next() {
    let mut net = Network::new();
    let (a, b) = (token(1, 1), token(2, 1));
    net.issue(1, &[a, b]);
    net.settle();
    // Shard 2 cut off: the batch is prepared in shard 1 (its token locked) and waits.
    let shard_two: Vec<RoleId> = (1..=3).map(|r| RoleId::NotaryShard { shard: 2, replica: r }).collect();
    net.switch.cut.write().extend(shard_two.iter().cloned());
    let leader = net.leader(&coordinator());
    let RoleId::NotaryReplica(at) = leader else { panic!("{leader}") };
    let across = tx(2, &[a, b], &[token(1, 3), token(2, 3)]);
    assert!(net.ask(at, steppe(), vec![across.clone()], Duration::from_secs(2)).is_none(), "undecided while cut");
    assert_eq!(net.replica(&leader).batches_in_flight(), 1);
    // The coordinator's leader dies; shard 2 comes back; the next leader finishes the batch.
    let group = net.kill(&leader);
    net.switch.cut.write().clear();
    let next = net.leader(&group);
    assert_ne!(next, leader);
    net.settle();
    assert!(net.replica(&next).is_committed(&across.tx_id), "the batch committed under the next leader");
    assert_eq!((net.unspent_in(1), net.unspent_in(2)), (1, 1), "spent in both shards, created in both");
    // The bank, which never heard, asks again: certified, nothing spent twice.
    assert_eq!(net.notarize(vec![across]), vec![None]);
    net.settle();
    assert_eq!((net.unspent_in(1), net.unspent_in(2)), (1, 1));
    // And the old leader comes back as a follower and catches up.
    let RoleId::NotaryReplica(old) = leader else { unreachable!() };
    net.start(&group, old);
    net.settle();
}

#[test]
fn a_shards_leader_killed_mid_batch_loses_no_lock_and_no_decision() {
    let mut net = Network::new();
    let tokens: Vec<TokenId> = (1..=20).flat_map(|n| [token(1, n), token(2, n)]).collect();
    net.issue(1, &tokens);
    let shard_leader = net.leader(&Group::Shard(1));
    // Spends across both shards, then shard 1's leader killed, then more.
    for n in 1..=5u8 {
        let spend = tx(10 + n, &[token(1, n), token(2, n)], &[token(1, 100 + n), token(2, 100 + n)]);
        assert_eq!(net.notarize(vec![spend]), vec![None]);
    }
    let group = net.kill(&shard_leader);
    for n in 6..=10u8 {
        let spend = tx(10 + n, &[token(1, n), token(2, n)], &[token(1, 100 + n), token(2, 100 + n)]);
        assert_eq!(net.notarize(vec![spend]), vec![None]);
    }
    // A double spend of an input spent before the kill is refused.
    let double = tx(60, &[token(1, 3), token(2, 15)], &[token(1, 200)]);
    assert_eq!(net.notarize(vec![double]), vec![Some(ErrorCode::DoubleSpend)]);
    net.settle();
    assert_eq!((net.unspent_in(1), net.unspent_in(2)), (20, 20), "ten spent and ten created in each");
    let RoleId::NotaryShard { replica, .. } = shard_leader else { unreachable!() };
    net.start(&group, replica);
    net.settle();
}
