//! Reconciliation on the roles compares the roles' reports as of one notary certificate
//! number: it holds on an honest ledger, and a bank that holds DT no certificate gave it is
//! reported. (That it holds while payments go on is `roles_concurrency`'s (c).)

use dtenge_api::platform::Platform;
use dtenge_api::types::{AmountRequest, OpenAccount, Payee, TransferRequest};
use dtenge_core::calendar::Date;
use dtenge_core::crypto::SecretKey;
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, NodeState, Purpose};
use dtenge_store::{Store, WriteBatch};
use std::sync::Arc;

/// 2026-11-23 10:00 Astana time (+05:00), a Monday and an operational day.
fn monday_10am_ms() -> u64 {
    let days = Date::new(2026, 11, 23).unwrap().days();
    ((days * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn req(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).unwrap() }
}

fn open_platform(dir: &std::path::Path) -> Platform {
    Platform::open(dir, Arc::new(ManualClock::new(monday_10am_ms())), Entropy::from_seed(9)).unwrap()
}

/// A custodial client at `bank` with `tiyn` of DT; its client id.
fn client(platform: &Platform, bank: &str, n: u32, tiyn: u64) -> String {
    let id = (0..).find_map(|k| complete_iin_bin(&format!("900101{:05}", 40_000 + 10 * n + k))).unwrap();
    let open = OpenAccount {
        kind: ClientKind::Individual,
        client_id: id.clone(),
        name: format!("Client{n} Testov"),
        phone: None,
        public_key: None,
    };
    platform.open_account(None, bank, open).unwrap();
    platform.deposit_fiat(None, bank, &id, req(tiyn)).unwrap();
    platform.convert_to_dt(None, bank, &id, req(tiyn)).unwrap();
    id
}

/// What each bank reports as of a certificate number stays what it was as payments,
/// emissions and redemptions go on after it: the ring takes exactly their changes off.
#[test]
fn a_banks_report_as_of_a_past_certificate_does_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path());
    let banks = ["steppe", "tulpar", "sapa"];
    for bank in banks {
        platform.credit_correspondent(None, bank, req(1_000_000)).unwrap();
        platform.emission(None, bank, req(500_000)).unwrap();
    }
    let clients: Vec<(&str, String)> =
        (0..6).map(|n| (banks[n % 3], client(&platform, banks[n % 3], n as u32, 50_000))).collect();
    let assembly = platform.assembly();
    let first = assembly.reconcile_at_seq(std::time::Duration::from_secs(10)).unwrap();
    assert!(first.problems.is_empty(), "{:?}", first.problems);
    let reports: Vec<_> = assembly.banks().iter().map(|b| b.service().at_seq(first.seq).unwrap()).collect();
    for round in 0..3 {
        for (i, (bank, id)) in clients.iter().enumerate() {
            let (to_bank, to_id) = &clients[(i + 1 + round) % clients.len()];
            let request = TransferRequest {
                from: id.clone(),
                to: Payee { client_id: Some(to_id.clone()), bank: Some(to_bank.to_string()), ..Payee::default() },
                amount_tiyn: Amount::from_tiyn(700 + i as u64).unwrap(),
                reference: None,
            };
            platform.transfer(None, bank, request).unwrap();
        }
    }
    platform.emission(None, "tulpar", req(9_000)).unwrap();
    platform.redemption(None, "sapa", req(4_000)).unwrap();
    assembly.settle(std::time::Duration::from_secs(10)).unwrap();
    let again: Vec<_> = assembly.banks().iter().map(|b| b.service().at_seq(first.seq).unwrap()).collect();
    assert_eq!(again, reports, "the reports as of certificate {}", first.seq);
    let central = assembly.central().at_seq(first.seq).unwrap();
    assert_eq!(central.circulation, first.circulation);
    let later = assembly.reconcile_at_seq(std::time::Duration::from_secs(10)).unwrap();
    assert!(later.seq > first.seq);
    assert!(later.problems.is_empty(), "{:?}", later.problems);
    assert_eq!(later.banks_dt.tiyn(), first.banks_dt.tiyn() + 9_000 - 4_000);
    // Quiet now: as of the last number, the reports are the running figures.
    for bank in assembly.banks() {
        let figures = bank.service().figures();
        let at = bank.service().at_seq(later.seq).unwrap();
        assert_eq!((at.dt_held, at.tokens), (figures.dt_held, figures.tokens), "{}", bank.id());
    }
}

/// A platform with DT at steppe and sapa and a client at sapa holding one token of 10,000
/// tiyn, reconciled, then shut down; the client's id and address.
fn honest_ledger(dir: &std::path::Path) -> (String, dtenge_core::crypto::Address) {
    let platform = open_platform(dir);
    for bank in ["steppe", "sapa"] {
        platform.credit_correspondent(None, bank, req(1_000_000)).unwrap();
        platform.emission(None, bank, req(500_000)).unwrap();
    }
    let id = (0..).find_map(|k| complete_iin_bin(&format!("900101{:05}", 30_000 + k))).unwrap();
    let open = OpenAccount {
        kind: ClientKind::Individual,
        client_id: id.clone(),
        name: "Client Testov".into(),
        phone: None,
        public_key: None,
    };
    let account = platform.open_account(None, "sapa", open).unwrap();
    platform.deposit_fiat(None, "sapa", &id, req(10_000)).unwrap();
    platform.convert_to_dt(None, "sapa", &id, req(10_000)).unwrap();
    let rec = platform.reconcile();
    assert!(rec.ok, "an honest ledger reconciles: {:?}", rec.problems);
    assert_eq!(rec.circulation_by_nodes_tiyn, Amount::from_tiyn(1_000_000).unwrap());
    assert_eq!(rec.node_tokens, rec.notary_unspent);
    (id, account.address)
}

/// While the platform is down, Sapa's store gains what `forge` builds as if a certificate had
/// made it: a transaction attested by a key that is not the NBK's, applied at the bank only.
fn forge_at_sapa(dir: &std::path::Path, forge: impl FnOnce(&NodeState, &SecretKey) -> Transaction) {
    let store = Store::open(&dir.join("bank-sapa"), &dtenge_bank::tables()).unwrap();
    // Sapa's keys, from the platform's vault, as the assembly reads them.
    let entropy = Entropy::from_seed(0);
    let vault = dtenge_keys::Vault::open(dir, &dtenge_keys::KeyConfig::from_env(true, &entropy).unwrap()).unwrap();
    let node_key = vault.node_key("bank:sapa", &entropy).unwrap();
    let custody = dtenge_node::Custody::new(vault.secret("custody:sapa", &entropy).unwrap());
    let mut node = NodeState::load(&store, node_key, custody).unwrap();
    let forger = SecretKey::from_seed([66; 32]);
    let mut forged = forge(&node, &forger);
    forged.attest(&forger);
    let delta = node.plan_commit(&forged, Purpose::Emission, None, monday_10am_ms()).unwrap();
    let mut batch = WriteBatch::new();
    delta.writes(&node, &mut batch).unwrap();
    store.commit(batch).unwrap();
}

#[test]
fn dt_a_bank_holds_without_a_certificate_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (client, address) = honest_ledger(dir.path());
    forge_at_sapa(dir.path(), |_, forger| {
        let outputs = vec![Output::standard(Amount::from_tiyn(7_000).unwrap(), address, forger.address())];
        Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce: 1 })
    });
    let platform = open_platform(dir.path());
    assert_eq!(platform.balance("sapa", &client).unwrap().dt_tiyn, Amount::from_tiyn(17_000).unwrap());
    let rec = platform.reconcile();
    assert!(!rec.ok, "the forged token is found");
    assert_eq!(rec.circulation_by_nbk_tiyn, Amount::from_tiyn(1_000_000).unwrap());
    assert_eq!(rec.circulation_by_nodes_tiyn, Amount::from_tiyn(1_007_000).unwrap());
    assert_eq!(rec.node_tokens, rec.notary_unspent + 1);
    assert_eq!(rec.node_tokens_not_unspent, 1);
    let problems = rec.problems.join("\n");
    assert!(problems.contains("DT, the NBK registry says"), "{problems}");
    assert!(problems.contains("tokens, the notary"), "{problems}");
    assert!(problems.contains("set hashes differ"), "{problems}");
    assert!(problems.contains("1 bank tokens are not unspent at the notary"), "{problems}");
    assert!(!problems.contains("not reconciled"), "{problems}");
}

/// A token replaced by a forged one of the same value and owner: the DT and the counts agree,
/// the set hash of the ids does not.
#[test]
fn a_token_swapped_for_a_forged_one_of_the_same_value_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (client, address) = honest_ledger(dir.path());
    forge_at_sapa(dir.path(), |node, forger| {
        let inputs = node.spendable_inputs(&client).unwrap();
        assert_eq!(inputs.len(), 1);
        let outputs = vec![Output::standard(inputs[0].output.amount_tiyn, address, forger.address())];
        Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce: 2 })
    });
    let platform = open_platform(dir.path());
    assert_eq!(platform.balance("sapa", &client).unwrap().dt_tiyn, Amount::from_tiyn(10_000).unwrap());
    let rec = platform.reconcile();
    assert!(!rec.ok, "the swapped token is found");
    assert_eq!(rec.circulation_by_nodes_tiyn, rec.circulation_by_nbk_tiyn);
    assert_eq!(rec.node_tokens, rec.notary_unspent);
    assert_eq!(rec.node_tokens_not_unspent, 1);
    let problems = rec.problems.join("\n");
    assert!(problems.contains("set hashes differ"), "{problems}");
    assert!(!problems.contains("DT, the NBK registry says"), "{problems}");
}

/// Issue 19, keys: a bank's node key rotated while the platform is stopped and quiet
/// (docs/OPERATIONS.md, "Rotating a node key"): from the next start every role knows the new
/// key and the bank signs with it; what it held is there, payments both ways between it and
/// another bank go through (its attestations checked with the new key, the other's by it), and
/// the ledger reconciles. The old key stays in the vault, retired.
#[test]
fn a_rotated_bank_node_key_signs_from_the_next_start_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (sapa_client, _) = honest_ledger(dir.path());
    let entropy = Entropy::from_seed(0);
    let config = dtenge_keys::KeyConfig::from_env(true, &entropy).unwrap();
    let vault = dtenge_keys::Vault::open(dir.path(), &config).unwrap();
    let before = vault.node_key("bank:sapa", &entropy).unwrap().public_key();
    let after = vault.rotate_node_key("bank:sapa", &entropy).unwrap().public_key();
    assert_ne!(before, after);
    assert_eq!(vault.node_key("bank:sapa@retired-1", &entropy).unwrap().public_key(), before);
    drop(vault);

    let platform = open_platform(dir.path());
    assert_eq!(platform.assembly().anchors().banks["sapa"], after, "every role knows the new key");
    assert_eq!(platform.balance("sapa", &sapa_client).unwrap().dt_tiyn, Amount::from_tiyn(10_000).unwrap());
    let steppe_client = client(&platform, "steppe", 7, 5_000);
    let pay = |bank: &str, from: &str, to_bank: &str, to: &str, tiyn: u64| {
        let request = TransferRequest {
            from: from.to_string(),
            to: Payee { client_id: Some(to.to_string()), bank: Some(to_bank.to_string()), ..Payee::default() },
            amount_tiyn: Amount::from_tiyn(tiyn).unwrap(),
            reference: None,
        };
        platform.transfer(None, bank, request).unwrap()
    };
    pay("sapa", &sapa_client, "steppe", &steppe_client, 2_500);
    pay("steppe", &steppe_client, "sapa", &sapa_client, 1_000);
    platform.assembly().settle(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(platform.balance("sapa", &sapa_client).unwrap().dt_tiyn, Amount::from_tiyn(8_500).unwrap());
    assert_eq!(platform.balance("steppe", &steppe_client).unwrap().dt_tiyn, Amount::from_tiyn(6_500).unwrap());
    let rec = platform.reconcile();
    assert!(rec.ok, "{:?}", rec.problems);
    drop(platform);
    // Recorded in Sapa's store: its next start is not a rotation again.
    let store = Store::open(&dir.path().join("bank-sapa"), &dtenge_bank::tables()).unwrap();
    let vault = dtenge_keys::Vault::open(dir.path(), &config).unwrap();
    let node_key = vault.node_key("bank:sapa", &entropy).unwrap();
    let custody = dtenge_node::Custody::new(vault.secret("custody:sapa", &entropy).unwrap());
    assert_eq!(NodeState::load(&store, node_key, custody).unwrap().rotated_from(), None);
}
