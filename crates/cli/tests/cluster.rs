//! The network as separate OS processes on loopback (`dtenge run`, one per participant: the
//! directory, the notary's three replicas, central, the oracle, three banks and the Treasury),
//! each with its own store, key and certificate under one NBK root, talking over mutual TLS
//! with signed frames.
//!
//! [`payments_across_processes_survive_kill_9`]: central issues DT to Steppe Bank's node, which
//! opens accounts (claimed at the directory's process), pays its clients from its own DT, and
//! its clients pay Tulpar Bank's clients (notarized by the notary's process, delivered to
//! Tulpar's). Under that load the Steppe node is killed with SIGKILL, started again, and then the
//! notary's leader (the other two replicas elect a new one); the oracle is killed and started
//! too. After each recovery, every time:
//! - every payment a node acknowledged is present: the payees hold exactly what was
//!   acknowledged to them, the payers what they had less what they paid;
//! - no token is spent twice, and no reservation is left stuck (nothing reserved at rest);
//! - across the processes: the DT the banks hold = central's DT liability, and the tokens the
//!   banks hold = the notary's unspent tokens (`/metrics` of each process, once quiet).
//!
//! [`a_revoked_bank_is_refused_by_the_others_within_seconds`]: the CA revokes a bank's
//! certificate; within seconds the other participants end its connections and refuse new
//! ones (their `/metrics` count it), and its payments no longer reach the notary.
//!
//! [`a_node_takes_only_its_own_systems`]: a bank's API refuses a caller without a client
//! certificate, another bank's systems, and its own systems asking about another node.
//!
//! [`each_organizations_node_serves_its_own_routes`]: a bank's node answers its systems'
//! history, accounts, deposits, conversions and redemptions, and central's the operator's
//! registry, ABS balances, calendar and blocks, each from its own state and the network's
//! messages. [`the_oracles_node_keeps_the_providers_for_the_operators`]: the oracle's node
//! answers its key to anyone of the network and keeps the provider registry for operators.
//!
//! Each test is bounded (every wait has a limit) and stops its processes itself.

use dtenge_process::client::{CallError, NodeClient};
use dtenge_process::cluster::{self, Laid, Ports};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT_MS_MAX: u64 = 60_000;
/// DT central issues to Steppe's node: 100,000.00 KZT.
const ISSUED_TIYN: u64 = 10_000_000;
/// DT each Steppe client gets: 10,000.00 KZT.
const START_TIYN: u64 = 1_000_000;
const CLIENTS: usize = 4;
/// Each payment: 1.00 KZT, so that no payer runs out (at most 2,000 per payer per round).
const PAYMENT_TIYN: u64 = 100;
/// Bound on each payer's loop.
const PAYMENTS_PER_PAYER_MAX: usize = 2_000;

/// A port free now, below the ephemeral range (32768-60999 on Linux): a port the kernel handed
/// out for `:0` is in that range, where the participants' own outgoing connections draw theirs,
/// and one of those could take it before the participant listens on it.
fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    // Spread per test process and advanced per call, so that ports are not reused soon.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 20_000 + (std::process::id() % 600) * 20;
    for _ in 0..12_000 {
        // Wrapped within 20,000..32,000: a start near the top once clamped every later port to
        // 32,000, handing the same port to several participants (a process id of 599 mod 600).
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = u16::try_from(20_000 + (start - 20_000 + offset) % 12_000).unwrap_or(20_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn iin(n: usize) -> String {
    let base = 20_000_000_000u64 + n as u64 * 10;
    (0..10).find_map(|k| dtenge_node::ids::complete_iin_bin(&format!("{:011}", base + k))).unwrap()
}

/// The participants' processes.
struct Cluster {
    dir: PathBuf,
    laid: Vec<Laid>,
    children: BTreeMap<String, Child>,
    /// A program a participant runs under (strace for a slow disk, faketime for a skewed
    /// clock), again on every start.
    wrappers: BTreeMap<String, Vec<String>>,
    /// Environment variables of a participant's process (its vault's passphrase), on every start.
    envs: BTreeMap<String, Vec<(String, String)>>,
}

/// One cluster at a time: eight processes per test on a two-core machine are load enough, and
/// five clusters at once made a start wait for a minute on a loaded CI machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Hold the machine for one test's cluster (a test that failed before does not stop the next).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let mut cluster = Cluster::lay_out(dir);
        cluster.run_all();
        cluster
    }

    /// The standard network laid out under `dir`, on free ports, none started.
    fn lay_out(dir: &Path) -> Cluster {
        Cluster::lay_out_members(dir, &cluster::standard())
    }

    /// `members` laid out under `dir`, on free ports, none started.
    fn lay_out_members(dir: &Path, members: &[cluster::Member]) -> Cluster {
        let mut ports = |_| {
            let loopback = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
            Ports { listen: loopback(free_port()), ops: loopback(free_port()), api: Some(loopback(free_port())) }
        };
        let mut n = 0u8;
        let mut seed = || {
            n += 1;
            let mut seed = [7u8; 32];
            seed[0] = n;
            seed
        };
        let laid = cluster::lay_out(dir, members, &mut ports, &mut seed, now_s() - 60).unwrap();
        Cluster {
            dir: dir.to_path_buf(),
            laid,
            children: BTreeMap::new(),
            wrappers: BTreeMap::new(),
            envs: BTreeMap::new(),
        }
    }

    /// Start every participant, in order.
    fn run_all(&mut self) {
        for name in self.laid.iter().map(|l| l.member.name.clone()).collect::<Vec<_>>() {
            self.run(&name);
        }
    }

    fn member(&self, name: &str) -> &Laid {
        self.laid.iter().find(|l| l.member.name == name).unwrap()
    }

    /// Start `name`'s process and wait until it serves `/health`.
    fn run(&mut self, name: &str) {
        let member = self.member(name).clone();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.log"))).unwrap();
        let wrapper = self.wrappers.get(name).cloned().unwrap_or_default();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_dtenge"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_dtenge")),
        };
        // Its own process group: a kill reaches the participant under its wrapper too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let envs = self.envs.get(name).cloned().unwrap_or_default();
        let child = command
            .envs(envs)
            .args(["run", "--role", &member.member.role.to_string(), "--config"])
            .arg(&member.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(name.to_string(), child);
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while ureq::get(&format!("http://{}/health", member.ports.ops)).call().is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
                // Peers not started yet are dialled again and again: not what stopped it.
                let tail: Vec<&str> =
                    log.lines().rev().filter(|l| !l.contains("connection to a peer ended")).take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!("{name} did not start; the end of its log:\n{}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the participant's process group (the participant, and strace or faketime
    /// around it): no graceful stop, whatever was in memory is lost.
    fn kill_9(&mut self, name: &str) {
        let mut child = self.children.remove(name).unwrap();
        kill_group(&child);
        child.wait().unwrap();
    }

    /// The replica that leads the notary's group now (waiting, bounded, for an election).
    fn notary_leader(&self) -> String {
        self.leader_among(&["notary-1", "notary-2", "notary-3"])
    }

    /// The one of `group`'s replicas that leads it now (waiting, bounded, for an election).
    fn leader_among(&self, group: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            let leader = group.iter().copied().find(|name| {
                self.children.contains_key(*name)
                    && self.metrics(name).get("dtenge_notary_raft_leader").copied() == Some(1)
            });
            if let Some(leader) = leader {
                return leader.to_string();
            }
            assert!(Instant::now() < deadline, "the notary's replicas elected no leader");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self, name: &str, as_client: &str) -> NodeClient {
        let api = self.member(name).ports.api.unwrap();
        let stem = self.dir.join(cluster::CLIENTS_DIR).join(as_client);
        NodeClient::from_files(&format!("https://localhost:{}", api.port()), &stem, &self.dir.join("ca/ca.crt.pem"))
            .unwrap()
    }

    /// `name`'s figures from its `/metrics`.
    fn metrics(&self, name: &str) -> BTreeMap<String, u64> {
        let text = ureq::get(&format!("http://{}/metrics", self.member(name).ports.ops))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.split('{').next()?.to_string(), value.parse::<i64>().ok()?.max(0) as u64))
            })
            .collect()
    }

    /// `dtenge reconcile --cluster`: once nothing is outstanding anywhere, the banks' DT =
    /// central's liability and the banks' tokens = the notary's unspent tokens.
    fn reconcile(&self) {
        let output = Command::new(env!("CARGO_BIN_EXE_dtenge"))
            .args(["reconcile", "--cluster"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "the processes do not reconcile:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("settled                          yes"), "{stdout}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            kill_group(child);
            let _ = child.wait();
        }
    }
}

/// SIGKILL to every process of `child`'s group (it leads its own: `Cluster::run`).
fn kill_group(child: &Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
}

fn balance(client: &NodeClient, node: &str, id: &str) -> (u64, u64) {
    let view: Value = client.get(&format!("/v1/nodes/{node}/accounts/{id}")).unwrap();
    let b = &view["balance"];
    (b["dt_tiyn"].as_u64().unwrap(), b["dt_reserved_tiyn"].as_u64().unwrap())
}

/// Post until answered (a node restarting, the network not answering yet), at most the wait.
fn post_until_answered(client: &NodeClient, path: &str, key: &str, body: &Value) -> Result<Value, CallError> {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        match client.post::<_, Value>(path, key, body) {
            Err(e) if (e.status == 0 || e.status == 409 || e.status >= 500) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Open `CLIENTS` custodial individuals at `node`, from IIN number `first`.
fn open_clients(client: &NodeClient, node: &str, first: usize) -> Vec<String> {
    let ids: Vec<String> = (0..CLIENTS).map(|i| iin(first + i)).collect();
    let requests: Vec<Value> =
        ids.iter().map(|id| json!({"kind": "individual", "client_id": id, "name": format!("Client {id}")})).collect();
    post_until_answered(client, &format!("/v1/nodes/{node}/accounts/bulk"), &format!("open-{node}"), &json!(requests))
        .unwrap();
    ids
}

/// The steady part: central issues to Steppe; Steppe opens its clients and pays them; Tulpar
/// opens its clients.
fn fund(cluster: &Cluster) -> (Vec<String>, Vec<String>) {
    let operator = cluster.client("central", "api-operator-nbk");
    let today = dtenge_core::calendar::Date::astana_of_unix_ms(now_s() as u64 * 1000);
    // Emission runs on operational days; the test runs on any day.
    let _: Value = operator
        .put::<_, Value>(&format!("/v1/operator/calendar/days/{today}"), "today-works", &json!({"working": true}))
        .unwrap();
    let amount = json!({"amount_tiyn": ISSUED_TIYN});
    let _: Value = operator.post("/v1/abs/correspondent/steppe/credits", "credit-1", &amount).unwrap();
    let _: Value = operator.post("/v1/nodes/steppe/emissions", "emit-1", &amount).unwrap();
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while balance(&steppe, "steppe", "own").0 < ISSUED_TIYN {
        assert!(Instant::now() < deadline, "Steppe's node did not apply the emission");
        std::thread::sleep(Duration::from_millis(50));
    }
    let payers = open_clients(&steppe, "steppe", 0);
    let payees = open_clients(&cluster.client("tulpar", "api-bank-tulpar"), "tulpar", 100);
    let lines: Vec<Value> =
        payers.iter().map(|id| json!({"client_id": id, "bank": "steppe", "amount_tiyn": START_TIYN})).collect();
    let report: Value =
        steppe.post("/v1/nodes/steppe/registries", "payout-1", &json!({"from": "own", "lines": lines})).unwrap();
    assert_eq!(report["lines_paid"], CLIENTS, "{report}");
    (payers, payees)
}

/// Each payer pays its payee at Tulpar until `stop`: what was acknowledged, and the keys of
/// those not answered (the node or the network down), to ask again.
type Sent = Arc<Mutex<(Vec<(usize, String)>, Vec<(usize, String)>)>>;

fn pay_until(
    cluster: &Cluster,
    payers: &[String],
    payees: &[String],
    round: &str,
    stop: &Arc<AtomicBool>,
) -> (Sent, Vec<std::thread::JoinHandle<()>>) {
    let sent: Sent = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let threads = (0..payers.len())
        .map(|i| {
            let client = cluster.client("steppe", "api-bank-steppe");
            let (payer, payee, sent, stop, round) = (payers[i].clone(), payees[i].clone(), sent.clone(), stop.clone(), round.to_string());
            std::thread::spawn(move || {
                for n in 0..PAYMENTS_PER_PAYER_MAX {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("{round}-{i}-{n}");
                    let body = json!({"from": payer, "to": {"client_id": payee, "bank": "tulpar"}, "amount_tiyn": PAYMENT_TIYN});
                    match client.post::<_, Value>("/v1/nodes/steppe/transfers", &key, &body) {
                        Ok(receipt) => {
                            assert_eq!(receipt["amount_tiyn"], PAYMENT_TIYN);
                            sent.lock().unwrap().0.push((i, key));
                        }
                        // The payer's DT is reserved by a payment in flight (the one unanswered at
                        // a kill, resent by the bank as it recovers): refused, nothing moved.
                        Err(e) if e.status == 409 && e.body.contains("FUNDS_IN_FLIGHT") => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        // Refused for good (a client error other than "in progress"): a bug here.
                        Err(e) if e.status >= 400 && e.status < 500 && e.status != 409 => panic!("{key}: {e}"),
                        Err(_) => {
                            sent.lock().unwrap().1.push((i, key));
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        })
        .collect();
    (sent, threads)
}

/// Ask again, with its key, every payment not answered: it was paid once or not at all.
fn settle_unknown(cluster: &Cluster, payers: &[String], payees: &[String], sent: &Sent) {
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let unknown = std::mem::take(&mut sent.lock().unwrap().1);
    for (i, key) in unknown {
        let body =
            json!({"from": payers[i], "to": {"client_id": payees[i], "bank": "tulpar"}, "amount_tiyn": PAYMENT_TIYN});
        match post_until_answered(&steppe, "/v1/nodes/steppe/transfers", &key, &body) {
            Ok(_) => sent.lock().unwrap().0.push((i, key)),
            Err(e) => panic!("{key} asked again: {e}"),
        }
    }
}

/// Every acknowledged payment is in both balances, nothing more; nothing is reserved.
fn check_balances(cluster: &Cluster, payers: &[String], payees: &[String], paid: &[usize]) {
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let tulpar = cluster.client("tulpar", "api-bank-tulpar");
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    for i in 0..payers.len() {
        let total = paid[i] as u64 * PAYMENT_TIYN;
        assert_eq!(
            balance(&steppe, "steppe", &payers[i]),
            (START_TIYN - total, 0),
            "payer {i}: its payments, none reserved"
        );
        // The payee's bank applies from the delivery, which may still be on its way.
        loop {
            let got = balance(&tulpar, "tulpar", &payees[i]);
            if got == (total, 0) {
                break;
            }
            assert!(Instant::now() < deadline, "payee {i} holds {got:?}, acknowledged {total}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Pay for `load_ms`, kill -9 `victim` in the middle of it, start it again, pay a little more,
/// ask again what was not answered, and check.
fn load_and_kill(
    cluster: &mut Cluster,
    payers: &[String],
    payees: &[String],
    (round, load_ms): (&str, u64),
    victim: &str,
    paid: &mut [usize],
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, threads) = pay_until(cluster, payers, payees, round, &stop);
    std::thread::sleep(Duration::from_millis(load_ms));
    let before_kill = sent.lock().unwrap().0.len();
    assert!(before_kill > 0, "{round}: payments were answered before the kill");
    cluster.kill_9(victim);
    std::thread::sleep(Duration::from_millis(500));
    cluster.run(victim);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let unanswered = sent.lock().unwrap().1.len();
    settle_unknown(cluster, payers, payees, &sent);
    let (acknowledged, _) = &*sent.lock().unwrap();
    eprintln!(
        "{round}: {} payments acknowledged ({before_kill} before the kill), {unanswered} unanswered and asked again",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty(), "{round}: payments went through");
    for (i, _) in acknowledged {
        paid[*i] += 1;
    }
    check_balances(cluster, payers, payees, paid);
    cluster.reconcile();
}

#[test]
fn payments_across_processes_survive_kill_9() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path());
    let (payers, payees) = fund(&cluster);
    cluster.reconcile();
    let mut paid = vec![0usize; CLIENTS];
    // A bank's node in the middle of its payments.
    load_and_kill(&mut cluster, &payers, &payees, ("bank", 1_500), "steppe", &mut paid);
    // The notary's leader: the other two replicas elect another and go on; it comes back as a
    // follower and catches up from its own disk.
    let leader = cluster.notary_leader();
    load_and_kill(&mut cluster, &payers, &payees, ("notary-leader", 1_500), &leader, &mut paid);
    assert_ne!(cluster.notary_leader(), "", "a leader again");
    // The payee's bank.
    load_and_kill(&mut cluster, &payers, &payees, ("payee", 1_500), "tulpar", &mut paid);
    // The oracle: no payment of these needs it; it comes back and the network goes on.
    load_and_kill(&mut cluster, &payers, &payees, ("oracle", 1_500), "oracle", &mut paid);
    let total: usize = paid.iter().sum();
    assert!(total > 0);
    let (amount, _) = balance(&cluster.client("steppe", "api-bank-steppe"), "steppe", "own");
    assert_eq!(amount, ISSUED_TIYN - START_TIYN * CLIENTS as u64, "Steppe's own DT paid its clients, no more");
    // The node's API counts and times its answers for /metrics.
    let text = ureq::get(&format!("http://{}/metrics", cluster.member("steppe").ports.ops)).call().unwrap();
    let text = text.into_string().unwrap();
    assert!(text.contains("dtenge_http_request_duration_seconds_bucket{le=\"0.1\"}"), "{text}");
    assert!(cluster.metrics("steppe")["dtenge_http_request_duration_seconds_count"] > 0);
}

/// The serial of `name`'s certificate.
fn serial_of(cluster: &Cluster, name: &str) -> u64 {
    let text = std::fs::read_to_string(cluster.dir.join(name).join("node.crt.pem")).unwrap();
    let der = dtenge_pki::pem_contents(&text, "CERTIFICATE").unwrap();
    dtenge_pki::read_certificate(&der).unwrap().serial
}

#[test]
fn a_revoked_bank_is_refused_by_the_others_within_seconds() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let (payers, payees) = fund(&cluster);
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let pay = |key: &str| {
        let body =
            json!({"from": payers[0], "to": {"client_id": payees[0], "bank": "tulpar"}, "amount_tiyn": PAYMENT_TIYN});
        steppe.post::<_, Value>("/v1/nodes/steppe/transfers", key, &body)
    };
    pay("before").unwrap();
    let before = cluster.metrics("steppe")["dtenge_net_connections_revoked_total"];
    // The operator revokes Tulpar's certificate, as an operator would: `dtenge ca revoke`.
    let serial = serial_of(&cluster, "tulpar");
    let revoked = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["ca", "--dir"])
        .arg(dir.path().join(cluster::CA_DIR))
        .args(["revoke", "--serial", &serial.to_string(), "--reason", "key-compromise"])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let at = Instant::now();
    // Within seconds: every participant has the new list in force, Steppe ended its connection
    // to Tulpar, and a payment to Tulpar's client is refused before it moves anything.
    let deadline = at + Duration::from_millis(10_000);
    let in_force = |name: &str| cluster.metrics(name)["dtenge_revocation_list_number"] >= 2;
    let everyone = ["notary-1", "notary-2", "notary-3", "central", "directory", "oracle", "steppe", "sapa", "treasury"];
    while !everyone.iter().all(|n| in_force(n)) {
        assert!(Instant::now() < deadline, "the revocation did not reach every participant in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took_ms = at.elapsed().as_millis();
    assert!(took_ms < 5_000, "the revocation took {took_ms} ms to reach every participant");
    assert!(
        cluster.metrics("steppe")["dtenge_net_connections_revoked_total"] > before,
        "Steppe ended Tulpar's connection"
    );
    let refused = pay("after").unwrap_err();
    assert_eq!(refused.status, 423, "{refused}");
    assert!(refused.body.contains("BANK_BLOCKED"), "{refused}");
    let (held, reserved) = balance(&steppe, "steppe", &payers[0]);
    assert_eq!((held, reserved), (START_TIYN - PAYMENT_TIYN, 0), "the refused payment moved nothing");
    eprintln!("the revocation reached every participant in {took_ms} ms");
}

/// A plain HTTPS client with no certificate of its own, trusting the cluster's root.
fn anonymous(cluster: &Cluster, name: &str) -> ureq::Agent {
    let text = std::fs::read_to_string(cluster.dir.join("ca/ca.crt.pem")).unwrap();
    let roots = dtenge_pki::roots(&dtenge_pki::pem_contents(&text, "CERTIFICATE").unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(dtenge_pki::tls_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = name;
    ureq::AgentBuilder::new().tls_config(Arc::new(config)).build()
}

#[test]
fn a_node_takes_only_its_own_systems() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let steppe_api = cluster.member("steppe").ports.api.unwrap().port();
    let url = |path: &str| format!("https://localhost:{steppe_api}{path}");
    // No client certificate: 401, nothing read.
    match anonymous(&cluster, "steppe").get(&url("/v1/nodes/steppe/accounts/own")).call() {
        Err(ureq::Error::Status(status, _)) => assert_eq!(status, 401),
        other => panic!("an anonymous caller got {other:?}"),
    }
    // Another bank's systems: 403.
    let tulpar_systems = NodeClient::from_files(
        &url(""),
        &dir.path().join(cluster::CLIENTS_DIR).join("api-bank-tulpar"),
        &dir.path().join("ca/ca.crt.pem"),
    )
    .unwrap();
    assert_eq!(tulpar_systems.get::<Value>("/v1/nodes/steppe/accounts/own").unwrap_err().status, 403);
    // An NBK operator has no business at a bank's node either.
    let operator = NodeClient::from_files(
        &url(""),
        &dir.path().join(cluster::CLIENTS_DIR).join("api-operator-nbk"),
        &dir.path().join("ca/ca.crt.pem"),
    )
    .unwrap();
    assert_eq!(operator.get::<Value>("/v1/nodes/steppe/accounts/own").unwrap_err().status, 403);
    // Steppe's own systems: their node, not another's in the path.
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let own: Value = steppe.get("/v1/nodes/steppe/accounts/own").unwrap();
    assert_eq!(own["account"]["node_id"], "steppe");
    assert_eq!(steppe.get::<Value>("/v1/nodes/tulpar/accounts/own").unwrap_err().status, 403);
    // A bank's systems cannot issue DT at central.
    let at_central = NodeClient::from_files(
        &format!("https://localhost:{}", cluster.member("central").ports.api.unwrap().port()),
        &dir.path().join(cluster::CLIENTS_DIR).join("api-bank-steppe"),
        &dir.path().join("ca/ca.crt.pem"),
    )
    .unwrap();
    let refused =
        at_central.post::<_, Value>("/v1/nodes/steppe/emissions", "emit", &json!({"amount_tiyn": 100})).unwrap_err();
    assert_eq!(refused.status, 403);
    // Steppe's systems' certificate revoked: refused within seconds, on the connection the
    // client already holds too.
    let text = std::fs::read_to_string(dir.path().join(cluster::CLIENTS_DIR).join("api-bank-steppe.crt.pem")).unwrap();
    let serial = dtenge_pki::read_certificate(&dtenge_pki::pem_contents(&text, "CERTIFICATE").unwrap()).unwrap().serial;
    let revoked = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["ca", "--dir"])
        .arg(dir.path().join(cluster::CA_DIR))
        .args(["revoke", "--serial", &serial.to_string()])
        .output()
        .unwrap();
    assert!(revoked.status.success());
    let deadline = Instant::now() + Duration::from_millis(5_000);
    loop {
        match steppe.get::<Value>("/v1/nodes/steppe/accounts/own") {
            Err(e) if e.status == 401 => break,
            _ => assert!(Instant::now() < deadline, "a revoked client still answered"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lines of a client's history at `node`, newest first.
fn history(client: &NodeClient, node: &str, id: &str) -> Vec<Value> {
    let page: Value = client.get(&format!("/v1/nodes/{node}/accounts/{id}/history?limit=100")).unwrap();
    page["lines"].as_array().unwrap().clone()
}

#[test]
fn each_organizations_node_serves_its_own_routes() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let (payers, payees) = fund(&cluster);
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let tulpar = cluster.client("tulpar", "api-bank-tulpar");
    let operator = cluster.client("central", "api-operator-nbk");

    // A payment, then each side's history: the counterparty's bank, and no name of another
    // bank's client.
    let paid = json!({"from": payers[0], "to": {"client_id": payees[0], "bank": "tulpar"}, "amount_tiyn": 700});
    let receipt: Value = steppe.post("/v1/nodes/steppe/transfers", "pay-1", &paid).unwrap();
    let outgoing = history(&steppe, "steppe", &payers[0]);
    assert_eq!(outgoing.len(), 2, "the payout and the payment: {outgoing:?}");
    assert_eq!(outgoing[0]["tx_id"], receipt["tx_id"]);
    assert_eq!((outgoing[0]["direction"].as_str(), outgoing[0]["amount_tiyn"].as_u64()), (Some("debit"), Some(700)));
    assert_eq!(outgoing[0]["counterparty_bank"], "tulpar");
    assert!(outgoing[0]["counterparty_name"].is_null(), "another bank's client is not named: {}", outgoing[0]);
    // The payout came from the bank's own account: a client of the same bank, named.
    assert_eq!(outgoing[1]["purpose"], "registry_distribution");
    assert_eq!(outgoing[1]["counterparty_bank"], "Steppe Bank", "its own bank, by name");
    assert!(outgoing[1]["counterparty_name"].is_string(), "{}", outgoing[1]);
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    let incoming = loop {
        let lines = history(&tulpar, "tulpar", &payees[0]);
        if !lines.is_empty() {
            break lines;
        }
        assert!(Instant::now() < deadline, "Tulpar did not apply the delivery");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((incoming[0]["direction"].as_str(), incoming[0]["amount_tiyn"].as_u64()), (Some("credit"), Some(700)));
    assert_eq!(incoming[0]["counterparty_bank"], "steppe");
    assert!(incoming[0]["counterparty_name"].is_null());
    // Every account of the bank, for its back office, a page at a time (issue 19).
    let mut accounts: Vec<Value> = Vec::new();
    let mut next = "/v1/nodes/steppe/accounts?limit=3".to_string();
    for _ in 0..=CLIENTS {
        let page: Value = steppe.get(&next).unwrap();
        let listed = page["accounts"].as_array().unwrap();
        assert!(!listed.is_empty() && listed.len() <= 3, "{page}");
        accounts.extend(listed.iter().cloned());
        match page["next_after"].as_str() {
            Some(after) => next = format!("/v1/nodes/steppe/accounts?limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(accounts.len(), CLIENTS + 1, "its clients and its own account");
    let mut ids: Vec<&str> = accounts.iter().map(|a| a["account"]["client_id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), CLIENTS + 1, "each once, in order");
    let too_many = steppe.get::<Value>("/v1/nodes/steppe/accounts?limit=1001").unwrap_err();
    assert!(too_many.status == 400 && too_many.body.contains("MALFORMED_INPUT"), "{too_many}");

    // Bank money deposited once per key, then converted to DT and back.
    let client = &payers[1];
    let deposit = json!({"amount_tiyn": 5_000});
    let path = format!("/v1/nodes/steppe/accounts/{client}/deposits");
    let first: Value = steppe.post(&path, "deposit-1", &deposit).unwrap();
    let again: Value = steppe.post(&path, "deposit-1", &deposit).unwrap();
    assert_eq!(first, again, "a repeated key is answered from the memo");
    assert_eq!(first["fiat_tiyn"], 5_000);
    let reused = steppe.post::<_, Value>(&path, "deposit-1", &json!({"amount_tiyn": 6_000})).unwrap_err();
    assert!(reused.body.contains("IDEMPOTENCY_KEY_REUSED"), "{reused}");
    let to_dt: Value = steppe
        .post(&format!("/v1/nodes/steppe/accounts/{client}/to-dt"), "to-dt-1", &json!({"amount_tiyn": 3_000}))
        .unwrap();
    assert_eq!(
        (to_dt["purpose"].as_str(), to_dt["to"]["client_id"].as_str()),
        (Some("conversion_to_dt"), Some(client.as_str()))
    );
    let from_dt: Value = steppe
        .post(&format!("/v1/nodes/steppe/accounts/{client}/from-dt"), "from-dt-1", &json!({"amount_tiyn": 1_000}))
        .unwrap();
    assert_eq!(from_dt["purpose"], "conversion_from_dt");
    // Asked again with their keys: the same receipts, nothing moved twice.
    let to_dt_again: Value = steppe
        .post(&format!("/v1/nodes/steppe/accounts/{client}/to-dt"), "to-dt-1", &json!({"amount_tiyn": 3_000}))
        .unwrap();
    assert_eq!(to_dt_again, to_dt);
    let from_dt_again: Value = steppe
        .post(&format!("/v1/nodes/steppe/accounts/{client}/from-dt"), "from-dt-1", &json!({"amount_tiyn": 1_000}))
        .unwrap();
    assert_eq!(from_dt_again, from_dt);
    let view: Value = steppe.get(&format!("/v1/nodes/steppe/accounts/{client}")).unwrap();
    assert_eq!(view["balance"]["fiat_tiyn"], 5_000 - 3_000 + 1_000);
    assert_eq!(view["balance"]["dt_tiyn"], START_TIYN + 3_000 - 1_000);
    // Its tokens merged into one by its bank (issue 19): the balance unchanged, one key one
    // consolidation, and with one token left nothing more to merge.
    let tokens_before = view["balance"]["tokens"].as_u64().unwrap();
    assert!(tokens_before >= 2, "the funding and the conversions' change: {view}");
    let merge = format!("/v1/nodes/steppe/accounts/{client}/consolidations");
    let merged: Value = steppe.post(&merge, "merge-1", &json!({})).unwrap();
    assert_eq!(
        (merged["spendable_tokens"].as_u64(), merged["inputs_per_payment_max"].as_u64()),
        (Some(1), Some(1_024))
    );
    let again: Value = steppe.post(&merge, "merge-1", &json!({})).unwrap();
    assert_eq!(again["tx_id"], merged["tx_id"], "one key, one consolidation");
    let nothing = steppe.post::<_, Value>(&merge, "merge-2", &json!({})).unwrap_err();
    assert!(nothing.status == 409 && nothing.body.contains("CONFLICT"), "{nothing}");
    // The offer to sign is for clients that keep their own key (issue 20).
    let offer = steppe.get::<Value>(&format!("/v1/nodes/steppe/accounts/{client}/consolidation")).unwrap_err();
    assert!(offer.status == 403 && offer.body.contains("FORBIDDEN"), "{offer}");
    let view: Value = steppe.get(&format!("/v1/nodes/steppe/accounts/{client}")).unwrap();
    assert_eq!(
        (view["balance"]["dt_tiyn"].as_u64(), view["balance"]["tokens"].as_u64()),
        (Some(START_TIYN + 2_000), Some(1))
    );
    let short = steppe
        .post::<_, Value>(
            &format!("/v1/nodes/steppe/accounts/{client}/to-dt"),
            "to-dt-2",
            &json!({"amount_tiyn": 1_000_000}),
        )
        .unwrap_err();
    assert!(short.body.contains("INSUFFICIENT_FUNDS"), "{short}");

    // The bank redeems some of its own DT at the NBK: its correspondent account is credited,
    // and the operator's registry lists it first.
    let own_before = balance(&steppe, "steppe", "own").0;
    let abs_before: BTreeMap<String, i64> =
        serde_json::from_value(operator.get::<Value>("/v1/abs/balances").unwrap()["balances"].clone()).unwrap();
    let redeemed: Value =
        steppe.post("/v1/nodes/steppe/redemptions", "redeem-1", &json!({"amount_tiyn": 2_000})).unwrap();
    assert_eq!((redeemed["purpose"].as_str(), redeemed["amount_tiyn"].as_u64()), (Some("redemption"), Some(2_000)));
    let again: Value = steppe.post("/v1/nodes/steppe/redemptions", "redeem-1", &json!({"amount_tiyn": 2_000})).unwrap();
    assert_eq!(again, redeemed, "the same key: the same receipt, redeemed once");
    assert_eq!(balance(&steppe, "steppe", "own").0, own_before - 2_000);
    let operations: Vec<Value> = serde_json::from_value(
        operator.get::<Value>("/v1/operator/operations?limit=10").unwrap()["operations"].clone(),
    )
    .unwrap();
    assert_eq!(operations.len(), 2, "the emission and the redemption: {operations:?}");
    assert_eq!(
        (operations[0]["kind"].as_str(), operations[0]["tx_id"].clone()),
        (Some("redemption"), redeemed["tx_id"].clone())
    );
    assert_eq!(operations[1]["kind"], "emission");
    let abs: BTreeMap<String, i64> =
        serde_json::from_value(operator.get::<Value>("/v1/abs/balances").unwrap()["balances"].clone()).unwrap();
    let moved: Vec<(&String, i64)> =
        abs.iter().map(|(account, tiyn)| (account, tiyn - abs_before.get(account).copied().unwrap_or(0))).collect();
    let credited: Vec<_> = moved.iter().filter(|(_, delta)| *delta != 0).collect();
    assert_eq!(credited.len(), 2, "Steppe's correspondent account and the DT liability: {moved:?}");
    assert!(
        credited.iter().any(|(account, delta)| account.contains("steppe") && *delta == 2_000),
        "Steppe's correspondent account is credited the redemption: {moved:?}"
    );

    // The operator's calendar and decisions.
    let today: Value = operator.get("/v1/operator/today").unwrap();
    assert_eq!(today["working"], true, "made working by `fund`: {today}");
    // On a day made non-operational, central refuses a redemption for good: the bank drops it
    // and releases what it reserved.
    let date = today["date"].as_str().unwrap().to_string();
    let day = format!("/v1/operator/calendar/days/{date}");
    let _: Value = operator.put(&day, "today-rests", &json!({"working": false})).unwrap();
    let own_before = balance(&steppe, "steppe", "own");
    let resting = steppe
        .post::<_, Value>("/v1/nodes/steppe/redemptions", "redeem-2", &json!({"amount_tiyn": 2_000}))
        .unwrap_err();
    assert!(resting.body.contains("NON_WORKING_DAY"), "{resting}");
    assert_eq!(balance(&steppe, "steppe", "own"), own_before, "nothing moved, nothing reserved");
    let _: Value = operator.put(&day, "today-works-again", &json!({"working": true})).unwrap();
    let year = today["date"].as_str().unwrap()[..4].to_string();
    let days: Vec<Value> = operator.get(&format!("/v1/operator/calendar/{year}")).unwrap();
    assert!(days.len() == 365 || days.len() == 366);
    let blocked: Value =
        operator.post("/v1/operator/nodes/tulpar/block", "block-1", &json!({"reason": "a test of the block"})).unwrap();
    assert_eq!(
        (blocked["blocked"].as_bool(), blocked["block_reason"].as_str()),
        (Some(true), Some("a test of the block"))
    );
    // Answered once every role applied it: a payment to its clients is refused at once.
    let refused = steppe.post::<_, Value>("/v1/nodes/steppe/transfers", "pay-2", &paid).unwrap_err();
    assert!(refused.body.contains("BANK_BLOCKED"), "{refused}");
    let lifted: Value = operator.post("/v1/operator/nodes/tulpar/unblock", "unblock-1", &json!(null)).unwrap();
    assert_eq!(lifted["blocked"], false);
    let _: Value = steppe.post("/v1/nodes/steppe/transfers", "pay-3", &paid).unwrap();
    assert_eq!(balance(&steppe, "steppe", &payers[0]).0, START_TIYN - 1_400);
    // A bank's systems may not decide for the operator.
    let at_central = NodeClient::from_files(
        &format!("https://localhost:{}", cluster.member("central").ports.api.unwrap().port()),
        &dir.path().join(cluster::CLIENTS_DIR).join("api-bank-steppe"),
        &dir.path().join("ca/ca.crt.pem"),
    )
    .unwrap();
    let forbidden =
        at_central.post::<_, Value>("/v1/operator/nodes/tulpar/block", "b", &json!({"reason": "x"})).unwrap_err();
    assert_eq!(forbidden.status, 403);
    cluster.reconcile();
}

#[test]
fn the_oracles_node_keeps_the_providers_for_the_operators() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let at_oracle = |client: &str| {
        NodeClient::from_files(
            &format!("https://localhost:{}", cluster.member("oracle").ports.api.unwrap().port()),
            &dir.path().join(cluster::CLIENTS_DIR).join(client),
            &dir.path().join("ca/ca.crt.pem"),
        )
        .unwrap()
    };
    let (operator, steppe) = (at_oracle("api-operator-nbk"), at_oracle("api-bank-steppe"));
    // Its key, for anyone of the network: the one its certificate certifies.
    let key: Value = steppe.get("/v1/oracle/key").unwrap();
    let certificate = std::fs::read_to_string(dir.path().join("oracle/node.crt.pem")).unwrap();
    let certified =
        dtenge_pki::read_certificate(&dtenge_pki::pem_contents(&certificate, "CERTIFICATE").unwrap()).unwrap();
    assert_eq!(key["public_key"], json!(certified.key));
    // The operator registers a provider, once per key.
    let request = json!({"id": "vehicle-registry", "name": "Vehicle registry", "kind": "vehicle_registry"});
    let registered: Value = operator.post("/v1/oracle/providers", "provider-1", &request).unwrap();
    assert_eq!(
        (registered["id"].as_str(), registered["kind"].as_str()),
        (Some("vehicle-registry"), Some("vehicle_registry"))
    );
    assert!(registered.get("token").is_none(), "a provider calls with its certificate, not a token");
    let again: Value = operator.post("/v1/oracle/providers", "provider-1", &request).unwrap();
    assert_eq!(again, registered);
    let other = json!({"id": "vehicle-registry", "name": "Another", "kind": "vehicle_registry"});
    let conflict = operator.post::<_, Value>("/v1/oracle/providers", "provider-2", &other).unwrap_err();
    assert!(conflict.body.contains("CONFLICT"), "{conflict}");
    let listed: Vec<Value> =
        serde_json::from_value(operator.get::<Value>("/v1/oracle/providers").unwrap()["providers"].clone()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "vehicle-registry");
    // A bank's systems may not register providers, nor read the registry.
    assert_eq!(steppe.post::<_, Value>("/v1/oracle/providers", "p", &request).unwrap_err().status, 403);
    assert_eq!(steppe.get::<Value>("/v1/oracle/providers").unwrap_err().status, 403);
}

/// The DT a holding event pays its payee: 500.00 KZT.
const EVENT_TIYN: u64 = 50_000;

/// `name`'s account view at `node`: its DT, what of it is held, and what it may spend.
fn held(client: &NodeClient, node: &str, id: &str) -> (u64, u64) {
    let view: Value = client.get(&format!("/v1/nodes/{node}/accounts/{id}")).unwrap();
    let b = &view["balance"];
    (b["dt_tiyn"].as_u64().unwrap(), b["dt_held_tiyn"].as_u64().unwrap())
}

/// Holding across processes (SPEC §5.1): a provider, with its own certificate, registers an
/// event at the oracle's node; the sender's bank holds its client's funds, asking the oracle
/// over the network whether it may; the provider reports the occurrence and the payee's bank
/// receives the funds. Each bank learns only its own clients' ids, and a bank no client of
/// which is a party learns nothing of the event.
#[test]
fn a_hold_across_processes_is_released_when_the_provider_reports() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let (payers, payees) = fund(&cluster);
    let (sender, payee) = (&payers[0], &payees[0]);
    // The NBK registers the provider and its CA certifies it.
    let operator = cluster.client("oracle", "api-operator-nbk");
    let provider_request = json!({"id": "vehicle-registry", "name": "Vehicle registry", "kind": "vehicle_registry"});
    let _: Value = operator.post("/v1/oracle/providers", "provider-1", &provider_request).unwrap();
    let issued = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["ca", "--dir"])
        .arg(dir.path().join("ca"))
        .args(["issue", "--api-client", "provider:vehicle-registry", "--out"])
        .arg(dir.path().join(cluster::CLIENTS_DIR))
        .output()
        .unwrap();
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let provider = cluster.client("oracle", "api-provider-vehicle-registry");
    let request = json!({
        "reference": "VIN-KZ-0001",
        "kind": "single",
        "sender": {"bank": "steppe", "client_id": sender},
        "payees": [{"bank": "tulpar", "client_id": payee, "amount_tiyn": EVENT_TIYN}],
        "valid_for_ms": 3_600_000,
    });
    // Only a provider registers events; a bank's systems may read them.
    let steppe_at_oracle = cluster.client("oracle", "api-bank-steppe");
    assert_eq!(steppe_at_oracle.post::<_, Value>("/v1/oracle/events", "e", &request).unwrap_err().status, 403);
    let event: Value = provider.post("/v1/oracle/events", "event-1", &request).unwrap();
    let id = event["id"].as_str().unwrap().to_string();
    assert_eq!(event["status"], "registered", "{event}");
    assert_eq!(event["terms"]["sender"]["client_id"], json!(sender), "the oracle keeps the ids it was given");
    assert_eq!(event["terms"]["payees"][0]["party"]["client_id"], json!(payee));
    let again: Value = provider.post("/v1/oracle/events", "event-1", &request).unwrap();
    assert_eq!(again["id"], json!(id), "the same key answers the same event");
    // The payee's bank may not hold its event, and a bank no client of which is a party does
    // not learn that it exists.
    let (steppe, tulpar) = (cluster.client("steppe", "api-bank-steppe"), cluster.client("tulpar", "api-bank-tulpar"));
    let sapa = cluster.client("sapa", "api-bank-sapa");
    let hold = json!({"event_id": id});
    let refused = tulpar.post::<_, Value>("/v1/nodes/tulpar/holds", "hold-t", &hold).unwrap_err();
    assert_eq!(refused.status, 403, "{refused}");
    let unknown = sapa.post::<_, Value>("/v1/nodes/sapa/holds", "hold-s", &hold).unwrap_err();
    assert_eq!(unknown.status, 404, "{unknown}");
    // The sender's bank holds; answered once the oracle applied it.
    let receipt: Value = steppe.post("/v1/nodes/steppe/holds", "hold-1", &hold).unwrap();
    assert_eq!(receipt["event"]["status"], "held", "{receipt}");
    assert_eq!(receipt["event"]["held_tiyn"], EVENT_TIYN);
    assert!(!receipt["records"].as_array().unwrap().is_empty(), "the hold's signed records: {receipt}");
    assert_eq!(receipt["event"]["terms"]["sender"]["client_id"], json!(sender));
    assert_eq!(receipt["event"]["terms"]["payees"][0]["party"]["client_id"], "", "another bank's client is not named");
    let repeated: Value = steppe.post("/v1/nodes/steppe/holds", "hold-1", &hold).unwrap();
    assert_eq!(repeated["tx_id"], receipt["tx_id"], "the same key answers the same hold");
    assert_eq!(held(&steppe, "steppe", sender), (START_TIYN, EVENT_TIYN));
    let views: Vec<Value> = serde_json::from_value(
        steppe.get::<Value>(&format!("/v1/nodes/steppe/accounts/{sender}/holds")).unwrap()["holds"].clone(),
    )
    .unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!((views[0]["role"].as_str(), views[0]["status"].as_str()), (Some("sender"), Some("held")));
    // The provider reports the occurrence: released to the payee.
    let occurred = json!({"occurrence_id": "transfer-1", "outcome": "occurred"});
    let path = format!("/v1/oracle/events/{id}/occurrences");
    let released: Value = provider.post(&path, "occurrence-1", &occurred).unwrap();
    assert_eq!(released["event"]["status"], "completed", "{released}");
    assert_eq!(released["event"]["released_tiyn"], EVENT_TIYN);
    assert_eq!(released["repeated"], false);
    let again: Value = provider.post(&path, "occurrence-1", &occurred).unwrap();
    assert_eq!(again, released, "the same key: the same answer");
    let repeated: Value = provider.post(&path, "occurrence-2", &occurred).unwrap();
    assert_eq!((repeated["repeated"].as_bool(), &repeated["tx_id"]), (Some(true), &released["tx_id"]));
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while held(&tulpar, "tulpar", payee).0 != EVENT_TIYN {
        assert!(Instant::now() < deadline, "Tulpar's node did not apply the release");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(held(&steppe, "steppe", sender), (START_TIYN - EVENT_TIYN, 0));
    let views: Vec<Value> = serde_json::from_value(
        tulpar.get::<Value>(&format!("/v1/nodes/tulpar/accounts/{payee}/holds")).unwrap()["holds"].clone(),
    )
    .unwrap();
    assert_eq!((views[0]["role"].as_str(), views[0]["status"].as_str()), (Some("payee"), Some("completed")));
    // What the oracle told each bank, its own clients named.
    let told: Value = tulpar.get("/v1/nodes/tulpar/notifications").unwrap();
    let released_to = told["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "funds_released" && n["subject_id"] == json!(id))
        .unwrap_or_else(|| panic!("no release told to Tulpar: {told}"));
    assert_eq!(released_to["client_id"], json!(payee));
    let told_sapa: Value = sapa.get("/v1/nodes/sapa/notifications").unwrap();
    assert_eq!(told_sapa["total"], 0, "{told_sapa}");
    // At the oracle's node a bank's systems read the events their clients are party to, the
    // other banks' clients unnamed; the operator reads them whole.
    let seen: Value = steppe_at_oracle.get(&format!("/v1/oracle/events/{id}")).unwrap();
    assert_eq!(seen["status"], "completed");
    assert!(seen["records"].as_array().unwrap().len() >= 3, "registered, held, released: {seen}");
    assert_eq!(seen["terms"]["payees"][0]["party"]["client_id"], "");
    let listed: Value = steppe_at_oracle.get("/v1/oracle/events?status=completed").unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let sapa_at_oracle = cluster.client("oracle", "api-bank-sapa");
    assert_eq!(sapa_at_oracle.get::<Value>(&format!("/v1/oracle/events/{id}")).unwrap_err().status, 404);
    let listed: Value = sapa_at_oracle.get("/v1/oracle/events").unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    let whole: Value = operator.get(&format!("/v1/oracle/events/{id}")).unwrap();
    assert_eq!(whole["terms"]["payees"][0]["party"]["client_id"], json!(payee));
    cluster.reconcile();
}

/// `dtenge ca issue --api-client provider:<id>` into the cluster's clients: the provider's
/// client at the oracle's node.
fn certify_provider(cluster: &Cluster, id: &str) -> NodeClient {
    let issued = Command::new(env!("CARGO_BIN_EXE_dtenge"))
        .args(["ca", "--dir"])
        .arg(cluster.dir.join("ca"))
        .args(["issue", "--api-client", &format!("provider:{id}"), "--out"])
        .arg(cluster.dir.join(cluster::CLIENTS_DIR))
        .output()
        .unwrap();
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    cluster.client("oracle", &format!("api-provider-{id}"))
}

/// The tax authority's and the contract portal's registrations at the oracle's node (SPEC
/// §5.3, §5.4), each provider with its own certificate: VAT payers, the tax account (on the
/// Treasury only), e-invoices and contracts, each once per key, parties found at the
/// directory across processes; a provider acts only as its kind allows, and one the operator
/// never registered is refused whatever its certificate.
#[test]
fn the_oracles_node_takes_the_tax_authoritys_and_the_portals_registrations() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let steppe_clients = open_clients(&cluster.client("steppe", "api-bank-steppe"), "steppe", 0);
    let tulpar_clients = open_clients(&cluster.client("tulpar", "api-bank-tulpar"), "tulpar", 100);
    let treasury = cluster.client("treasury", "api-bank-treasury");
    let tax_id = iin(300);
    let tax = json!([{"kind": "government_agency", "client_id": tax_id, "name": "State revenue"}]);
    post_until_answered(&treasury, "/v1/nodes/treasury/accounts/bulk", "open-tax", &tax).unwrap();
    let operator = cluster.client("oracle", "api-operator-nbk");
    for (id, kind) in [("esf", "tax_authority"), ("portal", "contract_portal")] {
        let request = json!({"id": id, "name": id, "kind": kind});
        let _: Value = operator.post("/v1/oracle/providers", &format!("provider-{id}"), &request).unwrap();
    }
    let (esf, portal, ghost) =
        (certify_provider(&cluster, "esf"), certify_provider(&cluster, "portal"), certify_provider(&cluster, "ghost"));
    let seller = json!({"bank": "tulpar", "client_id": tulpar_clients[0]});
    let buyer = json!({"bank": "steppe", "client_id": steppe_clients[0]});
    // A certificate alone is not a registration; a provider acts only as its kind allows; a
    // bank's systems register nothing.
    assert_eq!(ghost.post::<_, Value>("/v1/oracle/vat-payers", "v0", &seller).unwrap_err().status, 401);
    assert_eq!(portal.post::<_, Value>("/v1/oracle/vat-payers", "v0", &seller).unwrap_err().status, 403);
    let steppe_at_oracle = cluster.client("oracle", "api-bank-steppe");
    assert_eq!(steppe_at_oracle.post::<_, Value>("/v1/oracle/vat-payers", "v0", &seller).unwrap_err().status, 403);
    // VAT payers and the tax account, found at the directory.
    let payer: Value = esf.post("/v1/oracle/vat-payers", "vat-payer-1", &seller).unwrap();
    assert_eq!((payer["bank"].as_str(), &payer["client_id"]), (Some("tulpar"), &seller["client_id"]));
    let unknown = json!({"bank": "tulpar", "client_id": iin(999)});
    let refused = esf.post::<_, Value>("/v1/oracle/vat-payers", "vat-payer-2", &unknown).unwrap_err();
    assert!(refused.body.contains("UNKNOWN_ACCOUNT"), "{refused}");
    let not_treasury = esf.put::<_, Value>("/v1/oracle/tax-account", "tax-0", &buyer).unwrap_err();
    assert_eq!(not_treasury.status, 403, "{not_treasury}");
    let tax_account: Value =
        esf.put("/v1/oracle/tax-account", "tax-1", &json!({"bank": "treasury", "client_id": tax_id})).unwrap();
    assert_eq!(tax_account["client_id"], json!(tax_id));
    // A bank's systems see their own clients' VAT registrations only.
    let payers: Vec<Value> =
        serde_json::from_value(steppe_at_oracle.get::<Value>("/v1/oracle/vat-payers").unwrap()["payers"].clone())
            .unwrap();
    assert!(payers.is_empty(), "{payers:?}");
    let payers: Vec<Value> = serde_json::from_value(
        cluster.client("oracle", "api-bank-tulpar").get::<Value>("/v1/oracle/vat-payers").unwrap()["payers"].clone(),
    )
    .unwrap();
    assert_eq!(payers.len(), 1);
    // An e-invoice, once per key; a seller that is no VAT payer is refused.
    let invoice = json!({"id": "ESF-1", "seller": seller, "buyer": buyer, "net_tiyn": 100_000, "vat_tiyn": 12_000});
    let registered: Value = esf.post("/v1/oracle/invoices", "invoice-1", &invoice).unwrap();
    let again: Value = esf.post("/v1/oracle/invoices", "invoice-1", &invoice).unwrap();
    assert_eq!(again, registered, "the same key and invoice: the same answer");
    let fake = json!({"id": "ESF-2", "seller": buyer, "buyer": seller, "net_tiyn": 100_000, "vat_tiyn": 12_000});
    assert_eq!(esf.post::<_, Value>("/v1/oracle/invoices", "invoice-2", &fake).unwrap_err().status, 403);
    let read: Value = steppe_at_oracle.get("/v1/oracle/invoices/ESF-1").unwrap();
    assert_eq!((&read["id"], &read["net_tiyn"]), (&json!("ESF-1"), &json!(100_000)));
    let paid: Vec<Value> =
        serde_json::from_value(esf.get::<Value>("/v1/oracle/vat-payments").unwrap()["payments"].clone()).unwrap();
    assert!(paid.is_empty());
    // A contract, once per key; the tax authority registers none.
    let contract = json!({
        "number": "GZ-2026-1",
        "sender": {"bank": "steppe", "client_id": steppe_clients[1]},
        "recipient": {"bank": "tulpar", "client_id": tulpar_clients[1]},
        "max_transfer_tiyn": 500_000,
        "max_fiat_tiyn": 100_000,
        "valid_for_ms": 3_600_000,
    });
    assert_eq!(esf.post::<_, Value>("/v1/oracle/contracts", "contract-0", &contract).unwrap_err().status, 403);
    let registered: Value = portal.post("/v1/oracle/contracts", "contract-1", &contract).unwrap();
    assert_eq!(registered["number"], "GZ-2026-1", "{registered}");
    assert_eq!(registered["recipient"]["client_id"], json!(tulpar_clients[1]));
    let again: Value = portal.post("/v1/oracle/contracts", "contract-1", &contract).unwrap();
    assert_eq!(again["hash"], registered["hash"]);
    let read: Value = steppe_at_oracle.get("/v1/oracle/contracts/GZ-2026-1").unwrap();
    assert_eq!(read["max_fiat_tiyn"], 100_000);
    let markings: Value = steppe_at_oracle.get("/v1/oracle/markings").unwrap();
    assert_eq!(markings["total"], 0);
}

/// `client`'s DT at `node`: its total, what of it is marked, and what is VAT-marked.
fn kinds(client: &NodeClient, node: &str, id: &str) -> (u64, u64, u64) {
    let view: Value = client.get(&format!("/v1/nodes/{node}/accounts/{id}")).unwrap();
    let b = &view["balance"];
    (b["dt_tiyn"].as_u64().unwrap(), b["dt_marked_tiyn"].as_u64().unwrap(), b["dt_vat_tiyn"].as_u64().unwrap())
}

/// Wait until `client`'s DT at `node` is `dt_tiyn` (its bank applies a payment from its
/// delivery, after the payer's receipt).
fn wait_dt(client: &NodeClient, node: &str, id: &str, dt_tiyn: u64) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while kinds(client, node, id).0 != dt_tiyn {
        assert!(Instant::now() < deadline, "{node} did not apply a payment to {id}: {:?}", kinds(client, node, id));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Programmed money across processes (SPEC §5.2 to §5.4), each spend planned with the
/// oracle, attested by it and certified by the notary over the network's messages: a
/// marking a bank's client initiates, moved down its two levels by two banks (standard DT at
/// the last); an e-invoice paid with its VAT part marked and that VAT paid on to the tax
/// account; a contract paid and withdrawn; a split payment. Each once per key; each bank
/// reads at the oracle only what its clients are party to, and `dtenge reconcile` holds.
#[test]
fn programmed_money_across_processes_marks_pays_invoices_and_contracts_and_splits() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let (payers, payees) = fund(&cluster);
    let (steppe, tulpar) = (cluster.client("steppe", "api-bank-steppe"), cluster.client("tulpar", "api-bank-tulpar"));
    let treasury = cluster.client("treasury", "api-bank-treasury");
    let tax_id = iin(300);
    let tax = json!([{"kind": "government_agency", "client_id": tax_id, "name": "State revenue"}]);
    post_until_answered(&treasury, "/v1/nodes/treasury/accounts/bulk", "open-tax", &tax).unwrap();

    // A marking Steppe's client initiates: Tulpar's client at level 1, Steppe's at level 2.
    let marking = json!({
        "initiator": payers[0],
        "reference": "road repair advance",
        "levels": [
            {"recipients": [{"bank": "tulpar", "client_id": payees[0]}], "limit_tiyn": 200_000},
            {"recipients": [{"bank": "steppe", "client_id": payers[1]}], "limit_tiyn": 100_000},
        ],
    });
    let own = json!({"initiator": "own", "reference": "r", "levels": marking["levels"]});
    assert_eq!(steppe.post::<_, Value>("/v1/nodes/steppe/markings", "m-own", &own).unwrap_err().status, 403);
    let created: Value = steppe.post("/v1/nodes/steppe/markings", "marking-1", &marking).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["levels"][0]["recipients"][0]["client_id"], json!(payees[0]), "{created}");
    let again: Value = steppe.post("/v1/nodes/steppe/markings", "marking-1", &marking).unwrap();
    assert_eq!(again["id"], json!(id), "the same key: the same marking");
    let other = json!({"initiator": payers[0], "reference": "another", "levels": marking["levels"]});
    let reused = steppe.post::<_, Value>("/v1/nodes/steppe/markings", "marking-1", &other).unwrap_err();
    assert!(reused.body.contains("IDEMPOTENCY_KEY_REUSED"), "{reused}");
    // Steppe's client marks standard DT for level 1 at Tulpar; Tulpar's moves it to level 2,
    // the last: standard DT again.
    let first = json!({"marking_id": id, "from": payers[0], "to": {"bank": "tulpar", "client_id": payees[0]}, "amount_tiyn": 150_000});
    let moved: Value = steppe.post("/v1/nodes/steppe/marked-transfers", "move-1", &first).unwrap();
    assert_eq!(
        (moved["move"]["body"]["to_level"].as_u64(), moved["move"]["body"]["unmarked"].as_bool()),
        (Some(1), Some(false))
    );
    let repeated: Value = steppe.post("/v1/nodes/steppe/marked-transfers", "move-1", &first).unwrap();
    assert_eq!(repeated["tx_id"], moved["tx_id"], "the same key: the same move");
    wait_dt(&tulpar, "tulpar", &payees[0], 150_000);
    assert_eq!(kinds(&tulpar, "tulpar", &payees[0]), (150_000, 150_000, 0), "marked at level 1");
    // Bad input is refused at once, nothing sent that the other processes could not read.
    let long = json!({"marking_id": "M".repeat(65), "from": payers[0], "to": {"bank": "tulpar", "client_id": payees[0]}, "amount_tiyn": 1_000});
    let refused = steppe.post::<_, Value>("/v1/nodes/steppe/marked-transfers", "move-long", &long).unwrap_err();
    assert!(refused.body.contains("MALFORMED_INPUT"), "{refused}");
    let level = json!({"recipients": [{"bank": "tulpar", "client_id": payees[0]}], "limit_tiyn": 1});
    let deep = json!({"initiator": payers[0], "reference": "deep", "levels": vec![level; 9]});
    let refused = steppe.post::<_, Value>("/v1/nodes/steppe/markings", "m-deep", &deep).unwrap_err();
    assert!(refused.body.contains("LIMIT_EXCEEDED"), "{refused}");
    let skipped = json!({"marking_id": id, "from": payers[0], "to": {"bank": "steppe", "client_id": payers[1]}, "amount_tiyn": 1_000});
    let refused = steppe.post::<_, Value>("/v1/nodes/steppe/marked-transfers", "move-x", &skipped).unwrap_err();
    assert!(refused.body.contains("WRONG_LEVEL"), "{refused}");
    let second = json!({"marking_id": id, "from": payees[0], "to": {"bank": "steppe", "client_id": payers[1]}, "amount_tiyn": 100_000});
    let moved: Value = tulpar.post("/v1/nodes/tulpar/marked-transfers", "move-2", &second).unwrap();
    assert_eq!(
        (moved["move"]["body"]["to_level"].as_u64(), moved["move"]["body"]["unmarked"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(moved["marking"]["initiator"]["client_id"], "", "Steppe's client is not named to Tulpar: {moved}");
    wait_dt(&steppe, "steppe", &payers[1], START_TIYN + 100_000);
    assert_eq!(kinds(&steppe, "steppe", &payers[1]), (START_TIYN + 100_000, 0, 0), "standard at the last level");
    // At the oracle's node each bank reads the marking as a party; Sapa, none of whose
    // clients is one, does not learn that it exists.
    let (steppe_at_oracle, tulpar_at_oracle, sapa_at_oracle) = (
        cluster.client("oracle", "api-bank-steppe"),
        cluster.client("oracle", "api-bank-tulpar"),
        cluster.client("oracle", "api-bank-sapa"),
    );
    let trace: Value = steppe_at_oracle.get(&format!("/v1/oracle/markings/{id}")).unwrap();
    assert_eq!(trace["moves"].as_array().unwrap().len(), 2, "{trace}");
    let trace: Value = tulpar_at_oracle.get(&format!("/v1/oracle/markings/{id}")).unwrap();
    assert_eq!(trace["initiator"]["client_id"], "", "{trace}");
    assert_eq!(sapa_at_oracle.get::<Value>(&format!("/v1/oracle/markings/{id}")).unwrap_err().status, 404);
    let listed: Value = sapa_at_oracle.get("/v1/oracle/markings").unwrap();
    assert_eq!(listed["total"], 0, "{listed}");

    // An e-invoice: Steppe's client buys from Tulpar's; the VAT part arrives VAT-marked and
    // the seller pays it on to the tax authority's account at the Treasury.
    let operator = cluster.client("oracle", "api-operator-nbk");
    for (provider, kind) in [("esf", "tax_authority"), ("portal", "contract_portal")] {
        let request = json!({"id": provider, "name": provider, "kind": kind});
        let _: Value = operator.post("/v1/oracle/providers", &format!("provider-{provider}"), &request).unwrap();
    }
    let (esf, portal) = (certify_provider(&cluster, "esf"), certify_provider(&cluster, "portal"));
    let seller = json!({"bank": "tulpar", "client_id": payees[1]});
    let _: Value = esf.post("/v1/oracle/vat-payers", "vat-payer-1", &seller).unwrap();
    let _: Value =
        esf.put("/v1/oracle/tax-account", "tax-1", &json!({"bank": "treasury", "client_id": tax_id})).unwrap();
    let invoice = json!({"id": "ESF-1", "seller": seller, "buyer": {"bank": "steppe", "client_id": payers[2]},
                         "net_tiyn": 100_000, "vat_tiyn": 12_000});
    let _: Value = esf.post("/v1/oracle/invoices", "invoice-1", &invoice).unwrap();
    let pay = json!({"invoice_id": "ESF-1", "from": payers[2], "amount_tiyn": 112_000});
    let mismatch = json!({"invoice_id": "ESF-1", "from": payers[2], "amount_tiyn": 111_000});
    let refused = steppe.post::<_, Value>("/v1/nodes/steppe/invoice-payments", "inv-x", &mismatch).unwrap_err();
    assert!(refused.body.contains("INVOICE_MISMATCH"), "{refused}");
    let paid: Value = steppe.post("/v1/nodes/steppe/invoice-payments", "invoice-pay-1", &pay).unwrap();
    assert_eq!(paid["invoice"]["status"], "paid", "{paid}");
    assert_eq!(paid["vat_from_standard_tiyn"], 12_000);
    let repeated: Value = steppe.post("/v1/nodes/steppe/invoice-payments", "invoice-pay-1", &pay).unwrap();
    assert_eq!(repeated["tx_id"], paid["tx_id"]);
    let twice = steppe.post::<_, Value>("/v1/nodes/steppe/invoice-payments", "invoice-pay-2", &pay).unwrap_err();
    assert!(twice.body.contains("CONFLICT"), "{twice}");
    wait_dt(&tulpar, "tulpar", &payees[1], 112_000);
    assert_eq!(kinds(&tulpar, "tulpar", &payees[1]), (112_000, 0, 12_000), "the VAT part VAT-marked");
    let vat = json!({"from": payees[1], "amount_tiyn": 12_000});
    let vat_paid: Value = tulpar.post("/v1/nodes/tulpar/vat-payments", "vat-1", &vat).unwrap();
    assert_eq!(
        (vat_paid["amount_tiyn"].as_u64(), &vat_paid["payer"]["client_id"]),
        (Some(12_000), &seller["client_id"])
    );
    wait_dt(&treasury, "treasury", &tax_id, 12_000);
    assert_eq!(kinds(&treasury, "treasury", &tax_id), (12_000, 0, 0), "standard at the tax account");
    assert_eq!(sapa_at_oracle.get::<Value>("/v1/oracle/invoices/ESF-1").unwrap_err().status, 404);
    let theirs: Vec<Value> =
        serde_json::from_value(steppe_at_oracle.get::<Value>("/v1/oracle/vat-payments").unwrap()["payments"].clone())
            .unwrap();
    assert!(theirs.is_empty(), "Steppe's systems see no other bank's VAT payments: {theirs:?}");
    let ours: Vec<Value> =
        serde_json::from_value(tulpar_at_oracle.get::<Value>("/v1/oracle/vat-payments").unwrap()["payments"].clone())
            .unwrap();
    assert_eq!(ours.len(), 1);

    // A contract: Steppe's client pays Tulpar's under it; Tulpar's withdraws part to bank money.
    let contract = json!({
        "number": "GZ-2026-7",
        "sender": {"bank": "steppe", "client_id": payers[3]},
        "recipient": {"bank": "tulpar", "client_id": payees[2]},
        "max_transfer_tiyn": 500_000,
        "max_fiat_tiyn": 100_000,
        "valid_for_ms": 3_600_000,
    });
    let _: Value = portal.post("/v1/oracle/contracts", "contract-1", &contract).unwrap();
    let payment = json!({"contract": "GZ-2026-7", "from": payers[3], "amount_tiyn": 300_000});
    let used: Value = steppe.post("/v1/nodes/steppe/contract-payments", "contract-pay-1", &payment).unwrap();
    assert_eq!(
        (used["use"]["body"]["kind"].as_str(), used["use"]["body"]["amount_tiyn"].as_u64()),
        (Some("transfer"), Some(300_000))
    );
    assert_eq!(used["contract"]["transferred_tiyn"], 300_000, "{used}");
    wait_dt(&tulpar, "tulpar", &payees[2], 300_000);
    assert_eq!(kinds(&tulpar, "tulpar", &payees[2]), (300_000, 300_000, 0), "marked with the contract");
    let over = json!({"contract": "GZ-2026-7", "client_id": payees[2], "amount_tiyn": 100_001});
    let refused = tulpar.post::<_, Value>("/v1/nodes/tulpar/contract-withdrawals", "w-x", &over).unwrap_err();
    assert!(refused.body.contains("LIMIT_EXCEEDED"), "{refused}");
    let withdrawal = json!({"contract": "GZ-2026-7", "client_id": payees[2], "amount_tiyn": 100_000});
    let fiat_before = {
        let view: Value = tulpar.get(&format!("/v1/nodes/tulpar/accounts/{}", payees[2])).unwrap();
        view["balance"]["fiat_tiyn"].as_u64().unwrap()
    };
    let withdrawn: Value = tulpar.post("/v1/nodes/tulpar/contract-withdrawals", "withdraw-1", &withdrawal).unwrap();
    assert_eq!(withdrawn["use"]["body"]["kind"], "withdrawal", "{withdrawn}");
    assert_eq!(withdrawn["contract"]["withdrawn_tiyn"], 100_000);
    let view: Value = tulpar.get(&format!("/v1/nodes/tulpar/accounts/{}", payees[2])).unwrap();
    assert_eq!(view["balance"]["fiat_tiyn"].as_u64(), Some(fiat_before + 100_000), "{view}");
    assert_eq!(kinds(&tulpar, "tulpar", &payees[2]), (200_000, 200_000, 0));
    assert_eq!(sapa_at_oracle.get::<Value>("/v1/oracle/contracts/GZ-2026-7").unwrap_err().status, 404);
    let seen: Value = tulpar_at_oracle.get("/v1/oracle/contracts/GZ-2026-7").unwrap();
    assert_eq!(seen["uses"].as_array().unwrap().len(), 1, "Tulpar sees the use it made: {seen}");

    // A split payment: one of Steppe's clients pays a Tulpar client and a Steppe client at once.
    let split = json!({"from": payers[3], "lines": [
        {"to": {"bank": "tulpar", "client_id": payees[3]}, "amount_tiyn": 1_000},
        {"to": {"bank": "steppe", "client_id": payers[0]}, "amount_tiyn": 2_000},
    ]});
    let receipt: Value = steppe.post("/v1/nodes/steppe/split-payments", "split-1", &split).unwrap();
    assert_eq!((receipt["total_tiyn"].as_u64(), receipt["lines"].as_array().map(Vec::len)), (Some(3_000), Some(2)));
    let repeated: Value = steppe.post("/v1/nodes/steppe/split-payments", "split-1", &split).unwrap();
    assert_eq!(repeated["tx_id"], receipt["tx_id"]);
    wait_dt(&tulpar, "tulpar", &payees[3], 1_000);
    assert_eq!(kinds(&steppe, "steppe", &payers[3]).0, START_TIYN - 300_000 - 3_000);
    cluster.reconcile();
}

/// `id`'s bank money at `node`.
fn fiat(client: &NodeClient, node: &str, id: &str) -> u64 {
    let view: Value = client.get(&format!("/v1/nodes/{node}/accounts/{id}")).unwrap();
    view["balance"]["fiat_tiyn"].as_u64().unwrap()
}

/// Cards and vouchers across processes (SPEC sub-scenarios 6, 9 and 10, refunds, ATM): a
/// card linked at Steppe pays a merchant at Tulpar in DT and in bank money (converted by
/// Steppe, settled by central); Tulpar, the merchant's bank, refunds part of each (the DT back
/// from the merchant; the converted one paid by Steppe from its own DT); cash at an ATM; a
/// voucher programme at the school's bank pays the canteen at Tulpar once per event. Each
/// once per key, and `dtenge reconcile` holds.
#[test]
fn cards_and_vouchers_across_processes_pay_refund_and_settle() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let (payers, _) = fund(&cluster);
    let (steppe, tulpar) = (cluster.client("steppe", "api-bank-steppe"), cluster.client("tulpar", "api-bank-tulpar"));
    // Bank money on Steppe's correspondent account settles its conversions at other banks.
    let operator = cluster.client("central", "api-operator-nbk");
    let credit = json!({"amount_tiyn": 1_000_000});
    let _: Value = operator.post("/v1/abs/correspondent/steppe/credits", "credit-2", &credit).unwrap();
    let (merchant, school, canteen) = (iin(400), iin(401), iin(402));
    let opened = json!([
        {"kind": "legal_entity", "client_id": merchant, "name": "Small Shop LLP"},
        {"kind": "legal_entity", "client_id": canteen, "name": "School canteen LLP"},
    ]);
    post_until_answered(&tulpar, "/v1/nodes/tulpar/accounts/bulk", "open-shops", &opened).unwrap();
    let opened = json!([{"kind": "legal_entity", "client_id": school, "name": "School No. 7"}]);
    post_until_answered(&steppe, "/v1/nodes/steppe/accounts/bulk", "open-school", &opened).unwrap();
    let to_school = json!({"from": payers[1], "to": {"bank": "steppe", "client_id": school}, "amount_tiyn": 100_000});
    let _: Value = steppe.post("/v1/nodes/steppe/transfers", "fund-school", &to_school).unwrap();

    // The card, linked once across the network.
    let pan = dtenge_node::ids::complete_pan("440001800000001").unwrap();
    let link = json!({"client_id": payers[0], "pan": pan});
    let masked: Value = steppe.post("/v1/nodes/steppe/cards", "card-1", &link).unwrap();
    assert_eq!(masked, json!(dtenge_node::ids::mask_pan(&pan)));
    let again: Value = steppe.post("/v1/nodes/steppe/cards", "card-1", &link).unwrap();
    assert_eq!(again, masked, "the same key: the same answer");
    let taken = json!({"client_id": iin(100), "pan": pan});
    assert!(tulpar.post::<_, Value>("/v1/nodes/tulpar/cards", "card-t", &taken).is_err(), "one link per card");

    // A DT purchase at the card's bank; the merchant's bank refunds a part.
    let purchase =
        json!({"pan": pan, "merchant_bank": "tulpar", "merchant_id": merchant, "amount_tiyn": 30_000, "mode": "dt"});
    let unlinked = tulpar.post::<_, Value>("/v1/card-purchases", "buy-t", &purchase).unwrap_err();
    assert!(unlinked.body.contains("UNKNOWN_ACCOUNT"), "not linked at Tulpar: {unlinked}");
    let bought: Value = steppe.post("/v1/card-purchases", "buy-1", &purchase).unwrap();
    let id = bought["id"].as_str().unwrap().to_string();
    assert_eq!((bought["amount_tiyn"].as_u64(), bought["mode"].as_str()), (Some(30_000), Some("dt")), "{bought}");
    let repeated: Value = steppe.post("/v1/card-purchases", "buy-1", &purchase).unwrap();
    assert_eq!(repeated["id"], bought["id"]);
    wait_dt(&tulpar, "tulpar", &merchant, 30_000);
    let acquired = |id: &str| {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while tulpar.get::<Value>(&format!("/v1/card-purchases/{id}")).is_err() {
            assert!(Instant::now() < deadline, "the purchase did not reach the merchant's bank");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    acquired(&id);
    let refund = json!({"amount_tiyn": 10_000});
    let path = format!("/v1/card-purchases/{id}/refunds");
    assert_eq!(steppe.post::<_, Value>(&path, "refund-s", &refund).unwrap_err().status, 403, "the acquirer refunds");
    let refunded: Value = tulpar.post(&path, "refund-1", &refund).unwrap();
    assert_eq!((refunded["purpose"].as_str(), refunded["amount_tiyn"].as_u64()), (Some("card_refund"), Some(10_000)));
    let again: Value = tulpar.post(&path, "refund-1", &refund).unwrap();
    assert_eq!(again["tx_id"], refunded["tx_id"], "the same key: the same refund");
    let too_much = tulpar.post::<_, Value>(&path, "refund-2", &json!({"amount_tiyn": 20_001})).unwrap_err();
    assert!(too_much.status >= 400, "{too_much}");
    let mut buyer_dt = START_TIYN - 30_000 + 10_000;
    wait_dt(&steppe, "steppe", &payers[0], buyer_dt);

    // A converted purchase: the merchant's bank money grows at Tulpar; the refund decided
    // there is paid by Steppe from its own DT.
    let converted = json!({"pan": pan, "merchant_bank": "tulpar", "merchant_id": merchant, "amount_tiyn": 20_000, "mode": "convert_to_fiat"});
    let bought: Value = steppe.post("/v1/card-purchases", "buy-2", &converted).unwrap();
    let id = bought["id"].as_str().unwrap().to_string();
    buyer_dt -= 20_000;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while fiat(&tulpar, "tulpar", &merchant) != 20_000 {
        assert!(Instant::now() < deadline, "Tulpar did not credit its merchant's bank money");
        std::thread::sleep(Duration::from_millis(50));
    }
    acquired(&id);
    let decided: Value =
        tulpar.post(&format!("/v1/card-purchases/{id}/refunds"), "refund-3", &json!({"amount_tiyn": 5_000})).unwrap();
    assert_eq!(decided["refunded_tiyn"], 5_000, "decided at the merchant's bank: {decided}");
    assert_eq!(fiat(&tulpar, "tulpar", &merchant), 15_000);
    buyer_dt += 5_000;
    wait_dt(&steppe, "steppe", &payers[0], buyer_dt);

    // Cash at Steppe's ATM.
    let atm = json!({"pan": pan, "atm_bank": "steppe", "amount_tiyn": 1_000});
    let cash: Value = steppe.post("/v1/atm-withdrawals", "atm-1", &atm).unwrap();
    assert_eq!((cash["purpose"].as_str(), &cash["from"]["client_id"]), (Some("cash_withdrawal"), &json!(payers[0])));
    buyer_dt -= 1_000;
    assert_eq!(kinds(&steppe, "steppe", &payers[0]).0, buyer_dt);

    // A voucher programme at the school's bank pays the canteen once per event.
    let program = json!({"integrator": "onay", "payer_bank": "steppe", "payer_id": school, "payee_bank": "tulpar",
                         "payee_id": canteen, "amount_per_event_tiyn": 500});
    let elsewhere = tulpar.post::<_, Value>("/v1/voucher-programs", "program-t", &program).unwrap_err();
    assert_eq!(elsewhere.status, 403, "{elsewhere}");
    let created: Value = steppe.post("/v1/voucher-programs", "program-1", &program).unwrap();
    let program_id = created["id"].as_str().unwrap().to_string();
    let meal = json!({"integrator": "onay", "event_id": "meal-1"});
    let events = format!("/v1/voucher-programs/{program_id}/events");
    let paid: Value = steppe.post(&events, "meal-1-a", &meal).unwrap();
    assert_eq!((paid["purpose"].as_str(), paid["amount_tiyn"].as_u64()), (Some("voucher"), Some(500)));
    let again: Value = steppe.post(&events, "meal-1-b", &meal).unwrap();
    assert_eq!(again["tx_id"], paid["tx_id"], "the same event pays once, whatever the key");
    wait_dt(&tulpar, "tulpar", &canteen, 500);
    let programs: Vec<Value> =
        serde_json::from_value(steppe.get::<Value>("/v1/voucher-programs").unwrap()["programs"].clone()).unwrap();
    assert_eq!(programs.len(), 1);
    cluster.reconcile();
}

/// A fault-injecting TCP proxy on loopback: forwards to `target` until cut; while cut, it ends
/// every live connection and drops new ones at once (a partition), until healed.
struct Proxy {
    address: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (cut, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (cut_at, stop_at) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_at.load(Ordering::Relaxed) {
                let Ok((inbound, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if cut_at.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(outbound) = std::net::TcpStream::connect(target) else { continue };
                inbound.set_nonblocking(false).unwrap();
                for (from, to) in [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)] {
                    let (cut, stop) = (cut_at.clone(), stop_at.clone());
                    std::thread::spawn(move || pump(from, to, &cut, &stop));
                }
            }
        });
        Proxy { address, cut, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copy `from` to `to` until either closes or the proxy is cut.
fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, cut: &AtomicBool, stop: &AtomicBool) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if cut.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            return;
        }
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// Route `from`'s connections to `to` through a proxy: its configuration names the proxy's
/// address for `to`. Before `from` starts.
fn through_proxy(dir: &Path, laid: &[Laid], from: &str, to: &str) -> Proxy {
    let target = laid.iter().find(|l| l.member.name == to).unwrap().ports.listen;
    let proxy = Proxy::start(target);
    let config = laid.iter().find(|l| l.member.name == from).unwrap().config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    let (old, new) = (format!("address = \"{target}\""), format!("address = \"{}\"", proxy.address));
    assert_eq!(text.matches(&old).count(), 1, "{from} names {to} once");
    std::fs::write(&config, text.replace(&old, &new)).unwrap();
    let _ = dir;
    proxy
}

#[test]
fn a_partition_between_a_bank_and_the_notary_loses_nothing() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Laid out, the links between Steppe and each replica of the notary routed through proxies
    // both ways, then started.
    let mut cluster = Cluster::lay_out(dir.path());
    let replicas = ["notary-1", "notary-2", "notary-3"];
    let proxies: Vec<Proxy> = replicas
        .iter()
        .flat_map(|replica| {
            [
                through_proxy(dir.path(), &cluster.laid, "steppe", replica),
                through_proxy(dir.path(), &cluster.laid, replica, "steppe"),
            ]
        })
        .collect();
    cluster.run_all();
    let (payers, payees) = fund(&cluster);
    let mut paid = vec![0usize; CLIENTS];
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, threads) = pay_until(&cluster, &payers, &payees, "partition", &stop);
    std::thread::sleep(Duration::from_millis(1_000));
    for proxy in &proxies {
        proxy.cut.store(true, Ordering::Relaxed);
    }
    // What was on the wire at the cut lands first.
    std::thread::sleep(Duration::from_millis(500));
    let leader = cluster.notary_leader();
    let commit_index = cluster.metrics(&leader)["dtenge_notary_commit_index"];
    std::thread::sleep(Duration::from_millis(3_000));
    // Nothing of Steppe's reached the notary while cut (the other banks had nothing to send).
    assert_eq!(cluster.metrics(&leader)["dtenge_notary_commit_index"], commit_index, "the partition held");
    for proxy in &proxies {
        proxy.cut.store(false, Ordering::Relaxed);
    }
    std::thread::sleep(Duration::from_millis(2_000));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let unanswered = sent.lock().unwrap().1.len();
    settle_unknown(&cluster, &payers, &payees, &sent);
    let (acknowledged, _) = &*sent.lock().unwrap();
    eprintln!(
        "partition: {} payments acknowledged, {unanswered} unanswered across it and asked again",
        acknowledged.len()
    );
    for (i, _) in acknowledged {
        paid[*i] += 1;
    }
    check_balances(&cluster, &payers, &payees, &paid);
    cluster.reconcile();
}

/// The system's programs a fault test runs a participant under.
fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn a_slow_disk_and_skewed_clocks_lose_nothing() {
    let _machine = one_at_a_time();
    // `scripts/test.sh` installs them; a machine without them says so, loudly.
    assert!(have("strace") && have("faketime"), "strace and faketime are needed (scripts/test.sh installs them)");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::lay_out(dir.path());
    // Steppe's disk: every fsync and fdatasync takes 20 ms more (strace injects the delay in the
    // system call), so its commits wait on the disk as on a slow one.
    // `--seccomp-bpf`: only those calls stop the process for strace, not every one.
    let slow_disk =
        "strace -f -qq --seccomp-bpf -o /dev/null -e trace=fdatasync,fsync -e inject=fdatasync,fsync:delay_enter=20000";
    cluster.wrappers.insert("steppe".into(), slow_disk.split(' ').map(str::to_string).collect());
    // Tulpar's clock two minutes ahead, Sapa's 40 s behind (libfaketime; the monotonic clock of
    // the timeouts left alone). The certificates were issued a minute before now.
    let skewed =
        |offset: &str| ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", offset].map(str::to_string).to_vec();
    cluster.wrappers.insert("tulpar".into(), skewed("+120s"));
    cluster.wrappers.insert("sapa".into(), skewed("-40s"));
    cluster.run_all();
    let (payers, payees) = fund(&cluster);
    let mut paid = vec![0usize; CLIENTS];
    // The slow bank killed in the middle of its payments, started again on its slow disk.
    load_and_kill(&mut cluster, &payers, &payees, ("slow-disk", 5_000), "steppe", &mut paid);
    // The skewed payee's bank killed, started again with its clock still ahead.
    load_and_kill(&mut cluster, &payers, &payees, ("skewed-clock", 1_500), "tulpar", &mut paid);
    let synced = cluster.metrics("steppe")["dtenge_bank_batches_sent_total"];
    assert!(synced > 0, "the slow bank paid");
}

#[test]
fn a_sharded_notary_across_processes_loses_nothing_when_a_shards_or_its_own_leader_dies() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Sixteen processes: the notary's three replicas coordinate two shards of three.
    let mut cluster = Cluster::lay_out_members(dir.path(), &cluster::standard_sharded(2));
    cluster.run_all();
    let (payers, payees) = fund(&cluster);
    cluster.reconcile();
    let mut paid = vec![0usize; CLIENTS];
    let shard_leader = cluster.leader_among(&["notary-shard-1-1", "notary-shard-1-2", "notary-shard-1-3"]);
    load_and_kill(&mut cluster, &payers, &payees, ("shard-leader", 1_500), &shard_leader, &mut paid);
    let leader = cluster.notary_leader();
    load_and_kill(&mut cluster, &payers, &payees, ("coordinator-leader", 1_500), &leader, &mut paid);
    assert!(paid.iter().sum::<usize>() > 0);
}

/// Issue 19, stand-ins: a node configured for production (no `sandbox = true`) serves no
/// stand-in for a system outside the network: no deposits of bank money at a bank (its core
/// banking system's business), no correspondent credits at central (the RTGS's); the rest of
/// its API serves, and it says at start which it is. (The build before served both on every
/// node.)
#[test]
fn a_production_node_has_no_stand_ins_for_core_banking_or_the_rtgs() {
    let _machine = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::lay_out(dir.path());
    let passphrase = ("DTENGE_KEY_PASSPHRASE".to_string(), "a production node's passphrase".to_string());
    for name in ["central", "steppe"] {
        let config = cluster.member(name).config.clone();
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("\nsandbox = true\n"), "a laid-out cluster is a sandbox: {text}");
        // A production node keeps no key in a file: the laid-out keys go into the vault of its
        // data directory (as `dtenge key --import` puts them), and the files are deleted.
        let folder = config.parent().unwrap();
        let mut imports = vec![("node", "node.key.pem", false)];
        if name == "steppe" {
            imports.push(("own", "own.key.pem", true));
        }
        for (label, file, secret) in imports {
            let mut command = Command::new(env!("CARGO_BIN_EXE_dtenge"));
            command.args(["key", "--data"]).arg(folder.join("data")).args(["--label", label, "--import"]);
            command.arg(folder.join(file)).env(&passphrase.0, &passphrase.1);
            if secret {
                command.arg("--secret");
            }
            let done = command.output().unwrap();
            assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
            std::fs::remove_file(folder.join(file)).unwrap();
        }
        let text = text
            .replace("\nsandbox = true\n", "\n")
            .replace("key = \"node.key.pem\"", "key = \"vault:node\"")
            .replace("own_key = \"own.key.pem\"", "own_key = \"vault:own\"");
        std::fs::write(&config, text).unwrap();
        cluster.envs.insert(name.to_string(), vec![passphrase.clone()]);
    }
    cluster.run_all();
    let steppe = cluster.client("steppe", "api-bank-steppe");
    let refused = steppe
        .post::<_, Value>("/v1/nodes/steppe/accounts/own/deposits", "deposit-1", &json!({"amount_tiyn": 100}))
        .unwrap_err();
    assert_eq!(refused.status, 404, "{refused}");
    assert!(refused.body.contains("NOT_FOUND") && refused.body.contains("no route"), "{refused}");
    let own: Value = steppe.get("/v1/nodes/steppe/accounts/own").unwrap();
    assert_eq!(own["account"]["node_id"], "steppe", "the rest of the API serves");
    let operator = cluster.client("central", "api-operator-nbk");
    let refused = operator
        .post::<_, Value>("/v1/abs/correspondent/steppe/credits", "credit-1", &json!({"amount_tiyn": 100}))
        .unwrap_err();
    assert_eq!(refused.status, 404, "{refused}");
    assert!(refused.body.contains("no route"), "{refused}");
    let log = std::fs::read_to_string(dir.path().join("steppe.log")).unwrap();
    assert!(log.contains("\"sandbox\":false"), "the node says it runs in production: {log}");
}
