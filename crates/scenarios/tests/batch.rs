//! `POST /v1/nodes/{node}/transactions/batch` on `dtenge up`'s REST API: many client-signed
//! transfers in one call, each answered by itself and kept under its own key, so a call asked
//! again moves nothing twice. (A bank's node across processes serves the same route:
//! `crates/cli/tests/cluster.rs`.)

use dtenge_core::calendar::Date;
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_env::{Entropy, ManualClock};
use dtenge_scenarios::{Platform, World};
use serde_json::{json, Value};
use std::sync::Arc;

/// Monday 2026-11-23, 10:00 in Astana: an operational day.
fn working_day_ms() -> u64 {
    (Date::new(2026, 11, 23).unwrap().days() as u64 * 86_400 + 5 * 3600) * 1000
}

/// A client who keeps its own key, with its account open at `bank`.
fn self_keyed(world: &World, bank: &str, n: u32, seed: u8) -> (String, SecretKey, Address) {
    let iin = World::iin(90, n);
    let key = SecretKey::from_seed([seed; 32]);
    let body = json!({"kind": "individual", "client_id": iin, "name": format!("Batch Client {n}"),
        "public_key": serde_json::to_value(key.public_key()).unwrap()});
    let account = world.client.post(&format!("/v1/nodes/{bank}/accounts"), &body).unwrap();
    let address = serde_json::from_value(account["address"].clone()).unwrap();
    (iin, key, address)
}

/// `input` to `to` (`paid_tiyn`), the rest back to its owner, signed by `key`.
fn pay(key: &SecretKey, input: &Input, to: Address, paid_tiyn: u64, nonce: u64) -> Transaction {
    let value = input.output.amount_tiyn.tiyn();
    let issuer = input.output.issuer;
    let outputs = vec![
        Output::standard(Amount::from_tiyn(paid_tiyn).unwrap(), to, issuer),
        Output::standard(Amount::from_tiyn(value - paid_tiyn).unwrap(), key.address(), issuer),
    ];
    let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs: vec![input.clone()], outputs, nonce });
    tx.sign_owner(key);
    tx
}

fn batch(txs: &[&Transaction]) -> Value {
    json!({ "transactions": txs.iter().map(|tx| serde_json::to_value(tx).unwrap()).collect::<Vec<_>>() })
}

fn results(report: &Value) -> &Vec<Value> {
    report["results"].as_array().expect("a report lists results")
}

#[test]
fn a_batch_of_signed_transfers_is_answered_one_by_one_and_kept_under_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(working_day_ms()));
    let platform = Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock, Entropy::from_seed(5)).unwrap();
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let (payer, key, _) = self_keyed(&world, "steppe", 1, 31);
    let (payee, _, payee_address) = self_keyed(&world, "tulpar", 2, 32);
    // Two tokens of 10.00 KZT.
    world.give_dt("steppe", &payer, 1_000).unwrap();
    world.give_dt("steppe", &payer, 1_000).unwrap();
    let tokens: Vec<Input> = serde_json::from_value(
        world.client.get(&format!("/v1/nodes/steppe/accounts/{payer}/tokens")).unwrap()["tokens"].take(),
    )
    .unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}");

    // The first two are good; the third spends the first one's token again.
    let first = pay(&key, &tokens[0], payee_address, 100, 1);
    let second = pay(&key, &tokens[1], payee_address, 200, 2);
    let again = pay(&key, &tokens[0], payee_address, 50, 3);
    let path = "/v1/nodes/steppe/transactions/batch";
    let body = batch(&[&first, &second, &again]);
    let report = world.client.post_with_key(path, &body, "batch-1").unwrap();
    let answered = results(&report);
    assert_eq!(answered.len(), 3, "{report}");
    assert_eq!(answered[0]["receipt"]["tx_id"], json!(first.id()), "{report}");
    assert_eq!(answered[0]["receipt"]["amount_tiyn"], json!(100));
    assert_eq!(answered[1]["receipt"]["tx_id"], json!(second.id()), "{report}");
    assert!(answered[2]["receipt"].is_null() && answered[2]["error"]["code"].is_string(), "{report}");
    assert_eq!(world.dt("tulpar", &payee).unwrap(), 300);
    assert_eq!(world.dt("steppe", &payer).unwrap(), 1_700);

    // Asked again with the same key and body: each answered from the store, nothing moves.
    let report = world.client.post_with_key(path, &body, "batch-1").unwrap();
    let answered = results(&report);
    assert_eq!(answered[0]["receipt"]["tx_id"], json!(first.id()), "{report}");
    assert_eq!(answered[1]["receipt"]["tx_id"], json!(second.id()), "{report}");
    assert!(answered[2]["receipt"].is_null(), "{report}");
    assert_eq!(world.dt("tulpar", &payee).unwrap(), 300);

    // The same key with another transaction in the first place: that one is refused.
    let other = pay(&key, &tokens[0], payee_address, 60, 4);
    let report = world.client.post_with_key(path, &batch(&[&other]), "batch-1").unwrap();
    assert_eq!(results(&report)[0]["error"]["code"], json!("IDEMPOTENCY_KEY_REUSED"), "{report}");

    // Bad input: a structured error, and nothing moves.
    let empty = world.client.post_with_key(path, &json!({"transactions": []}), "batch-2").unwrap_err();
    assert_eq!((empty.status, empty.code.as_str()), (400, "MALFORMED_INPUT"), "{empty}");
    let long_key = "k".repeat(dtenge_api::CLIENT_KEY_LEN_MAX + 1);
    let long = world.client.post_with_key(path, &batch(&[&other]), &long_key).unwrap_err();
    assert_eq!((long.status, long.code.as_str()), (400, "MALFORMED_INPUT"), "{long}");
    assert_eq!(world.dt("tulpar", &payee).unwrap(), 300);
    world.reconciled().unwrap();
}
