//! The network as separate OS processes on loopback (`dtenge run`, one per participant: the
//! directory, the notary, central, the oracle, three banks and the Treasury), each with its own
//! store, key and certificate under one NBK root, talking over mutual TLS with signed frames.
//!
//! [`payments_across_processes_survive_kill_9`]: central issues DT to Steppe Bank's node, which
//! opens accounts (claimed at the directory's process), pays its clients from its own DT, and
//! its clients pay Tulpar Bank's clients (notarized by the notary's process, delivered to
//! Tulpar's). Under that load the Steppe node is killed with SIGKILL, started again, and then the
//! notary; the oracle is killed and started too. After each recovery, every time:
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
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
        let laid = cluster::lay_out(dir, &cluster::standard(), &mut ports, &mut seed, now_s() - 60).unwrap();
        let mut cluster = Cluster { dir: dir.to_path_buf(), laid, children: BTreeMap::new() };
        for name in cluster.laid.iter().map(|l| l.member.name.clone()).collect::<Vec<_>>() {
            cluster.run(&name);
        }
        cluster
    }

    fn member(&self, name: &str) -> &Laid {
        self.laid.iter().find(|l| l.member.name == name).unwrap()
    }

    /// Start `name`'s process and wait until it serves `/health`.
    fn run(&mut self, name: &str) {
        let member = self.member(name).clone();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dtenge"))
            .args(["run", "--role", &member.member.role.to_string(), "--config"])
            .arg(&member.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(name.to_string(), child);
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while ureq::get(&format!("http://{}/health", member.ports.ops)).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} did not start: see {}",
                self.dir.join(format!("{name}.log")).display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no graceful stop, whatever was in memory is lost.
    fn kill_9(&mut self, name: &str) {
        let mut child = self.children.remove(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
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

    /// Wait until nothing is outstanding anywhere and two looks a moment apart agree; then
    /// check the figures across the processes: the banks' DT = central's liability, the banks'
    /// tokens = the notary's unspent tokens.
    fn reconcile(&self) {
        let banks = ["steppe", "tulpar", "sapa", "treasury"];
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        let mut last = None;
        loop {
            let look = {
                let mut figures = Vec::new();
                for bank in banks {
                    let m = self.metrics(bank);
                    figures.push((
                        m["dtenge_bank_dt_held_tiyn"],
                        m["dtenge_bank_tokens"],
                        m["dtenge_bank_batches_outstanding"] + m["dtenge_bank_deliveries_outstanding"],
                    ));
                }
                let central = self.metrics("central");
                let notary = self.metrics("notary");
                (
                    figures,
                    central["dtenge_central_dt_liability_tiyn"],
                    central["dtenge_central_batches_outstanding"] + central["dtenge_central_deliveries_outstanding"],
                    notary["dtenge_notary_unspent_tokens"],
                    notary["dtenge_notary_commit_index"],
                )
            };
            let quiet = look.0.iter().all(|f| f.2 == 0) && look.2 == 0;
            if quiet && last.as_ref() == Some(&look) {
                let dt: u64 = look.0.iter().map(|f| f.0).sum();
                let tokens: u64 = look.0.iter().map(|f| f.1).sum();
                assert_eq!(dt, look.1, "the DT the banks hold = central's DT liability");
                assert_eq!(tokens, look.3, "the banks' tokens = the notary's unspent tokens");
                return;
            }
            assert!(Instant::now() < deadline, "the processes did not settle: {look:?}");
            last = Some(look);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
                        // Refused for good (a client error other than "in progress"): nothing moved.
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

fn load_and_kill(
    cluster: &mut Cluster,
    payers: &[String],
    payees: &[String],
    round: &str,
    victim: &str,
    paid: &mut [usize],
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, threads) = pay_until(cluster, payers, payees, round, &stop);
    std::thread::sleep(Duration::from_millis(1_500));
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
        "{round}: {} payments acknowledged, {unanswered} unanswered at the kill and asked again",
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
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path());
    let (payers, payees) = fund(&cluster);
    cluster.reconcile();
    let mut paid = vec![0usize; CLIENTS];
    // A bank's node in the middle of its payments.
    load_and_kill(&mut cluster, &payers, &payees, "bank", "steppe", &mut paid);
    // The notary.
    load_and_kill(&mut cluster, &payers, &payees, "notary", "notary", &mut paid);
    // The payee's bank.
    load_and_kill(&mut cluster, &payers, &payees, "payee", "tulpar", &mut paid);
    // The oracle: no payment of these needs it; it comes back and the network goes on.
    load_and_kill(&mut cluster, &payers, &payees, "oracle", "oracle", &mut paid);
    let total: usize = paid.iter().sum();
    assert!(total > 0);
    let (amount, _) = balance(&cluster.client("steppe", "api-bank-steppe"), "steppe", "own");
    assert_eq!(amount, ISSUED_TIYN - START_TIYN * CLIENTS as u64, "Steppe's own DT paid its clients, no more");
}

/// The serial of `name`'s certificate.
fn serial_of(cluster: &Cluster, name: &str) -> u64 {
    let text = std::fs::read_to_string(cluster.dir.join(name).join("node.crt.pem")).unwrap();
    let der = dtenge_pki::pem_contents(&text, "CERTIFICATE").unwrap();
    dtenge_pki::read_certificate(&der).unwrap().serial
}

#[test]
fn a_revoked_bank_is_refused_by_the_others_within_seconds() {
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
    while !["notary", "central", "directory", "oracle", "steppe", "sapa", "treasury"].iter().all(|n| in_force(n)) {
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
}
