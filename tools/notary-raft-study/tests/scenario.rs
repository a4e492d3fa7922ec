use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use openraft::AsyncRuntime;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft_rt_sim::SimRuntime;
use notary_raft_study::{Disk, LogStore, NotarySm, SimCfg, TokioCfg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_tokio() {
    let wall = Instant::now();
    let trace = notary_raft_study::scenario::run::<TokioCfg>().await;
    for line in &trace {
        println!("tokio: {line}");
    }
    println!("tokio: scenario took {:?} of wall time", wall.elapsed());
}

/// One run on openraft-rt-sim: the scenario's trace, and the runtime's own trace (every spawn,
/// poll, wake, timer and RNG draw), hashed.
fn run_sim(seed: u64) -> (Vec<String>, usize, u64) {
    let mut rt = SimRuntime::with_seed(seed);
    rt.record_trace(true);
    let trace = rt.block_on(notary_raft_study::scenario::run::<SimCfg>());
    let events = rt.take_trace();
    let mut hasher = DefaultHasher::new();
    events.hash(&mut hasher);
    (trace, events.len(), hasher.finish())
}

#[test]
fn three_replicas_on_rt_sim_are_deterministic() {
    for seed in [1, 2, 3] {
        let wall = Instant::now();
        let first = run_sim(seed);
        let second = run_sim(seed);
        for line in &first.0 {
            println!("sim seed {seed}: {line}");
        }
        println!(
            "sim seed {seed}: {} runtime events, hash {:x}; two runs took {:?}",
            first.1,
            first.2,
            wall.elapsed()
        );
        assert_eq!(first, second, "seed {seed} replays exactly");
    }
}

struct Fresh;

impl StoreBuilder<TokioCfg, LogStore<TokioCfg>, NotarySm<TokioCfg>> for Fresh {
    async fn build(&self) -> Result<((), LogStore<TokioCfg>, NotarySm<TokioCfg>), StorageError<TokioCfg>> {
        let disk = Disk::default();
        Ok(((), LogStore { disk: disk.clone() }, NotarySm { disk }))
    }
}

/// openraft's own conformance suite for RaftLogStorage + RaftStateMachine.
#[tokio::test]
async fn storage_passes_openraft_suite() {
    Suite::test_all(Fresh).await.expect("the storage suite passes");
}

/// As dtenge's simulator would drive it: a synchronous loop owns the clock and steps the
/// replicated notary 10 ms at a time (`block_on(sleep_until(t))`); Raft's tasks live across the
/// `block_on` calls; proposals are spawned and their answers read later, as the simulator reads
/// a role's answers; the leader is crashed and restarted from its disk mid-run.
fn stepped(seed: u64) -> Vec<String> {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use openraft::BasicNode;
    use openraft::async_runtime::watch::WatchReceiver;
    use notary_raft_study::scenario::Cluster;
    use notary_raft_study::{CompactTx, NotaryCommand};

    let mut rt = SimRuntime::with_seed(seed);
    let mut cluster = Cluster::<SimCfg>::new();
    let mut trace = Vec::new();
    rt.block_on(async {
        for id in [1, 2, 3] {
            cluster.start(id).await;
        }
        let members: std::collections::BTreeMap<u64, BasicNode> =
            [1, 2, 3].into_iter().map(|id| (id, BasicNode { addr: format!("notary-{id}") })).collect();
        cluster.raft(1).initialize(members).await.unwrap();
    });
    let start = rt.block_on(async { <openraft_rt_sim::SimInstant as openraft::Instant>::now() });
    let answers: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut next_token = 1000u64;
    let mut down: Option<(u64, u64)> = None; // (replica, restart at step)
    for step in 0..400u64 {
        // Advance the replicated notary to the simulator's time.
        let until = start + Duration::from_millis(10 * (step + 1));
        rt.block_on(async move { SimRuntime::sleep_until(until).await });
        let leader = cluster.router.ids().into_iter().find(|id| cluster.raft(*id).is_leader());
        if step % 5 == 0 {
            if let Some(leader) = leader {
                // A bank's batch: issue a token; every other one also spends the previous one.
                let inputs = if step % 10 == 0 && next_token > 1000 { vec![next_token - 1] } else { vec![] };
                let sender = if inputs.is_empty() { "central" } else { "steppe" };
                let command = NotaryCommand::Notarize {
                    sender: sender.into(),
                    batch: step,
                    txs: vec![CompactTx { tx_id: step, inputs, outputs: vec![next_token] }],
                    signature: vec![],
                };
                next_token += 1;
                let raft = cluster.raft(leader);
                let answers = answers.clone();
                rt.block_on(async move {
                    let _detached = SimRuntime::spawn(async move {
                        let answer = match raft.client_write(command).await {
                            Ok(r) => format!("step {step}: {} {:?}", r.log_id, r.data.outcomes),
                            Err(e) => format!("step {step}: {e}"),
                        };
                        answers.lock().unwrap().push(answer);
                    });
                });
            }
        }
        if step == 150 {
            if let Some(leader) = leader {
                rt.block_on(cluster.crash(leader));
                trace.push(format!("step {step}: crashed leader {leader}"));
                down = Some((leader, 250));
            }
        }
        if let Some((id, at)) = down {
            if step == at {
                rt.block_on(cluster.start(id));
                trace.push(format!("step {step}: restarted {id}"));
                down = None;
            }
        }
    }
    for id in cluster.router.ids() {
        let m = cluster.raft(id).metrics().borrow_watched().clone();
        trace.push(format!("replica {id}: {:?} leader {:?} applied {:?}", m.state, m.current_leader, m.last_applied));
    }
    let ledgers: Vec<_> = cluster.router.ids().iter().map(|id| cluster.disks[id].lock().ledger.clone()).collect();
    trace.push(format!("ledgers agree: {}", ledgers.windows(2).all(|w| w[0] == w[1])));
    trace.extend(answers.lock().unwrap().drain(..));
    rt.block_on(cluster.shutdown_all());
    trace
}

#[test]
fn stepped_by_a_synchronous_simulator_is_deterministic() {
    for seed in [7, 8] {
        let first = stepped(seed);
        let second = stepped(seed);
        for line in first.iter().take(12) {
            println!("stepped seed {seed}: {line}");
        }
        println!("stepped seed {seed}: {} lines", first.len());
        assert!(first.iter().any(|l| l == "ledgers agree: true"), "{first:#?}");
        assert_eq!(first, second, "seed {seed} replays exactly");
    }
}

#[test]
fn many_seeds_on_rt_sim() {
    let wall = Instant::now();
    let mut leaders = std::collections::BTreeMap::new();
    for seed in 0..100 {
        let (trace, _, _) = run_sim(seed);
        *leaders.entry(trace.iter().find(|l| l.starts_with("new leader")).cloned().unwrap()).or_insert(0) += 1;
    }
    println!("100 seeds in {:?}: {leaders:?}", wall.elapsed());
}
