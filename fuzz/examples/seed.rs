//! Writes the seed corpora: `cargo run --manifest-path fuzz/Cargo.toml --example seed`.
//!
//! - `corpus/tx_decode_validate/`: valid transactions (issue, transfer with change, redeem,
//!   redeem-all) and broken ones (each failing one rule), as JSON.
//! - `corpus/api_requests/`: one valid body per REST request type plus path strings.
//!
//! `network_ops` needs no seeds: its inputs are `arbitrary` byte streams and libFuzzer finds
//! its way from an empty corpus quickly.
//!
//! Existing files are overwritten; files the fuzzer added are left alone.

use dtenge_fuzz::{sample_transactions, BROKEN_TX_JSON};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the corpus directory");
    let path = dir.join(format!("seed_{name}.json"));
    std::fs::write(&path, bytes).expect("write a seed");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let tx_dir = root.join("tx_decode_validate");
    for (name, tx) in sample_transactions() {
        write(&tx_dir, name, &serde_json::to_vec(&tx).expect("encode"));
    }
    for (name, text) in BROKEN_TX_JSON {
        write(&tx_dir, name, text.as_bytes());
    }

    let api_dir = root.join("api_requests");
    let pk = r#"{"alg":"ed25519","key":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"}"#;
    let bodies: [(&str, String); 17] = [
        ("open_account", r#"{"kind":"individual","client_id":"900101300007","name":"Aigerim Seitova","phone":"+7 (701) 123-45-67"}"#.into()),
        ("open_account_own_key", format!(r#"{{"kind":"legal_entity","client_id":"040540400012","name":"TOO Dala","public_key":{pk}}}"#)),
        ("open_accounts_bulk", r#"[{"kind":"individual","client_id":"900101300007","name":"A B"},{"kind":"government_agency","client_id":"040540400012","name":"Akimat"}]"#.into()),
        ("transfer_by_phone", r#"{"from":"900101300007","to":{"phone":"87011234567"},"amount_tiyn":15000,"reference":"lunch"}"#.into()),
        ("transfer_by_client", r#"{"from":"900101300007","to":{"client_id":"040540400012","bank":"tulpar"},"amount_tiyn":1}"#.into()),
        ("transfer_by_address", r#"{"from":"900101300007","to":{"address":"0000000000000000000000000000000000000000000000000000000000000000"},"amount_tiyn":9007199254740991}"#.into()),
        ("registry", r#"{"from":"040540400012","reference":"payroll 2026-11","lines":[{"phone":"+77011234567","amount_tiyn":25000000},{"client_id":"900101300007","bank":"steppe","amount_tiyn":1}]}"#.into()),
        ("amount", r#"{"amount_tiyn":500000}"#.into()),
        ("card_purchase", r#"{"pan":"4400430000000007","merchant_bank":"sapa","merchant_id":"040540400012","amount_tiyn":120000,"mode":"convert_to_fiat"}"#.into()),
        ("voucher_event", r#"{"integrator":"onay","event_id":"e-1","card":"9643 1234"}"#.into()),
        ("voucher_program", r#"{"integrator":"onay","payer_bank":"treasury","payer_id":"040540400012","payee_bank":"steppe","payee_id":"040540400024","amount_per_event_tiyn":80000}"#.into()),
        ("link_card", r#"{"client_id":"900101300007","pan":"4400430000000007"}"#.into()),
        ("block", r#"{"reason":"licence revoked"}"#.into()),
        ("day", r#"{"working":false}"#.into()),
        ("atm_withdrawal", r#"{"pan":"4400430000000007","atm_bank":"tulpar","amount_tiyn":2000000}"#.into()),
        ("empty_body", String::new()),
        ("null_body", "null".into()),
    ];
    for (name, body) in &bodies {
        write(&api_dir, name, body.as_bytes());
    }
    // Path parameters and identifiers as plain text.
    let texts = [
        ("date", "2026-11-23"),
        ("date_leap", "2024-02-29"),
        ("tx_id", "a3f1c0de00000000000000000000000000000000000000000000000000000001"),
        ("year", "2026"),
        ("iin", "900101300007"),
        ("phone", "+7 (701) 123-45-67"),
        ("pan", "4400430000000007"),
    ];
    for (name, text) in texts {
        write(&api_dir, &format!("text_{name}"), text.as_bytes());
    }
}
