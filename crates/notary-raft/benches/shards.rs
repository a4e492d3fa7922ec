//! Throughput of the notary against its number of shards (`cargo bench -p dtenge-notary-raft
//! --bench shards`): the notary as one Raft group (every token), then as a coordinator with 1,
//! 2 and 4 shards, every group of three replicas on its own stores, all in this process over
//! the in-process transport. A bank keeps `WINDOW` signed batches of `BATCH` transactions in
//! flight; each transaction spends two tokens and creates two, drawn at random (so with `s`
//! shards about `1 - 1/s` of them touch two shards). Prints transactions per second for each.
//!
//! On one machine every group shares its cores: the curve shows what sharding costs (the
//! two-phase commit's extra entries and messages), not what spreading the shards over machines
//! gains. Each run ends with the ledgers checked: every transaction committed once.

use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_core::token::{TokenId, TxId};
use dtenge_notary::service::Senders;
use dtenge_notary_raft::storage::tables;
use dtenge_notary_raft::{Group, Replica, ReplicaConfig, Role};
use dtenge_store::Store;
use dtenge_transport::{InProcess, Inbox, Transport};
use dtenge_wire::{Envelope, Message, NotarizeRequest, Outcome, RoleId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Transactions per batch, as a bank's flusher sends them.
const BATCH: usize = 256;
/// Batches in flight at once.
const WINDOW: usize = 8;
/// How long each configuration is loaded.
const LOAD_S: u64 = 8;
/// Tokens issued before the load: enough for every transaction of the run.
const TOKENS: usize = 400_000;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

fn id(counter: &mut u64, tag: u8) -> Hash32 {
    *counter += 1;
    let mut bytes = [tag; 32];
    // Spread over the whole range of first bytes (the shards' ranges).
    bytes[..8].copy_from_slice(&counter.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    bytes[8..16].copy_from_slice(&counter.to_be_bytes());
    Hash32(bytes)
}

struct Notary {
    transport: Arc<InProcess>,
    replicas: Vec<(Group, Arc<Replica>)>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Notary {
    fn start(shards: u8) -> Notary {
        let transport = Arc::new(InProcess::new());
        let senders = Senders {
            central_bank: key(1).public_key(),
            banks: BTreeMap::from([("steppe".to_string(), key(3).public_key())]),
            blocked: BTreeSet::new(),
        };
        let own = if shards == 0 { Group::whole() } else { Group::Notary { shards, shard_replicas: vec![1, 2, 3] } };
        let groups = std::iter::once(own).chain((1..=shards).map(Group::Shard));
        let (mut replicas, mut dirs) = (Vec::new(), Vec::new());
        for group in groups {
            for n in 1..=3u8 {
                let dir = tempfile::tempdir().expect("a directory");
                let replica = Arc::new(
                    Replica::open(ReplicaConfig {
                        id: n,
                        group: group.clone(),
                        founding: vec![1, 2, 3],
                        store: Store::open(dir.path(), &tables()).expect("a store"),
                        key: key(9).into(),
                        senders: senders.clone(),
                        transport: transport.clone(),
                        snapshot_logs: dtenge_notary_raft::SNAPSHOT_LOGS,
                    })
                    .expect("a replica"),
                );
                let inbox = transport.register(group.role_of(u64::from(n)));
                let serving = replica.clone();
                std::thread::spawn(move || {
                    for envelope in inbox {
                        serving.handle(envelope);
                    }
                });
                replicas.push((group.clone(), replica));
                dirs.push(dir);
            }
        }
        Notary { transport, replicas, _dirs: dirs }
    }

    /// The notary's own leader (waiting for every group to have one).
    fn leader(&self) -> RoleId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let groups: BTreeSet<String> = self.replicas.iter().map(|(g, _)| format!("{g:?}")).collect();
            let leaders = self.replicas.iter().filter(|(_, r)| r.status().role == Role::Leader).count();
            if leaders == groups.len() {
                let (group, replica) = self
                    .replicas
                    .iter()
                    .find(|(g, r)| matches!(g, Group::Notary { .. }) && r.status().role == Role::Leader)
                    .expect("a leader");
                return group.role_of(u64::from(replica.id()));
            }
            assert!(Instant::now() < deadline, "not every group elected a leader");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) {
        for (group, replica) in self.replicas {
            self.transport.unregister(&group.role_of(u64::from(replica.id())));
            drop(replica);
        }
    }
}

fn request(signer: &SecretKey, batch: u64, txs: Vec<CompactTx>) -> NotarizeRequest {
    let leaves: Vec<Hash32> = txs.iter().map(CompactTx::hash).collect();
    let signature = signer.sign(&notarize_message(batch, &dtenge_core::merkle::root(&leaves)).0);
    NotarizeRequest { batch, txs, signature }
}

/// Send `requests` from `from`, `WINDOW` at a time, until each is answered with every
/// transaction committed or `until`; the transactions committed.
fn pump(
    notary: &Notary,
    inbox: &mut Inbox,
    from: RoleId,
    requests: &mut VecDeque<NotarizeRequest>,
    until: Instant,
) -> usize {
    let leader = notary.leader();
    let mut in_flight: BTreeMap<u64, (NotarizeRequest, Instant)> = BTreeMap::new();
    let mut committed = 0;
    while Instant::now() < until && (!requests.is_empty() || !in_flight.is_empty()) {
        while in_flight.len() < WINDOW {
            let Some(request) = requests.pop_front() else { break };
            let envelope =
                Envelope { from: from.clone(), to: leader.clone(), message: Message::NotarizeRequest(request.clone()) };
            notary.transport.send(envelope).expect("the leader's inbox");
            in_flight.insert(request.batch, (request, Instant::now()));
        }
        match inbox.try_recv() {
            Ok(Envelope { message: Message::NotarizeReply(reply), .. }) => {
                let Some((request, _)) = in_flight.remove(&reply.batch) else { continue };
                let done = reply.outcomes.iter().filter(|o| matches!(o, Outcome::Committed(_))).count();
                if done == request.txs.len() {
                    committed += done;
                } else {
                    // "Ask again" (a token locked by a batch being decided): the whole batch again.
                    requests.push_front(request);
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Resend what waited long (a lost message).
                let stale: Vec<u64> = in_flight
                    .iter()
                    .filter(|(_, (_, at))| at.elapsed() > Duration::from_secs(5))
                    .map(|(b, _)| *b)
                    .collect();
                for batch in stale {
                    let (request, _) = in_flight.remove(&batch).expect("stale");
                    requests.push_front(request);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    committed
}

fn run(shards: u8) -> f64 {
    let notary = Notary::start(shards);
    let mut bank = notary.transport.register(RoleId::Bank("steppe".into()));
    let mut central = notary.transport.register(RoleId::Central);
    let mut counter = 0u64;
    let tokens: Vec<TokenId> = (0..TOKENS).map(|_| TokenId(id(&mut counter, 7))).collect();
    let mut issues: VecDeque<NotarizeRequest> = tokens
        .chunks(BATCH * 2)
        .enumerate()
        .map(|(i, chunk)| {
            let tx = CompactTx { tx_id: TxId(id(&mut counter, 1)), inputs: vec![], outputs: chunk.to_vec() };
            request(&key(1), i as u64 + 1, vec![tx])
        })
        .collect();
    let issued = pump(&notary, &mut central, RoleId::Central, &mut issues, Instant::now() + Duration::from_secs(120));
    assert_eq!(issued, issues.len() + TOKENS.div_ceil(BATCH * 2), "every issue committed");
    let mut payments: VecDeque<NotarizeRequest> = tokens
        .chunks(2 * BATCH)
        .enumerate()
        .map(|(i, chunk)| {
            let txs = chunk
                .chunks(2)
                .map(|inputs| CompactTx {
                    tx_id: TxId(id(&mut counter, 2)),
                    inputs: inputs.to_vec(),
                    outputs: vec![TokenId(id(&mut counter, 8)), TokenId(id(&mut counter, 8))],
                })
                .collect();
            request(&key(3), i as u64 + 1_000_000, txs)
        })
        .collect();
    let started = Instant::now();
    let committed =
        pump(&notary, &mut bank, RoleId::Bank("steppe".into()), &mut payments, started + Duration::from_secs(LOAD_S));
    let rate = committed as f64 / started.elapsed().as_secs_f64();
    notary.stop();
    rate
}

fn main() {
    // `cargo test` runs benches only when asked; `cargo bench` passes `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!(
        "notary throughput against shards (three replicas per group, this machine's {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let whole = run(0);
    println!("one group, every token       {whole:>9.0} tx/s");
    for shards in [1u8, 2, 4] {
        let rate = run(shards);
        println!("coordinator + {shards} shard(s)     {rate:>9.0} tx/s   ({:.2} of one group; {:.0}% of transactions across shards)", rate / whole, 100.0 * (1.0 - 1.0 / f64::from(shards)));
    }
}
