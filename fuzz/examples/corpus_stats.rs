//! How deep a `tx_decode_validate` corpus reaches: how many inputs decode as a transaction,
//! pass `check_structure`, and pass `validate` (signatures included).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example corpus_stats -- fuzz/corpus/tx_decode_validate`

use dtenge_core::tx::{Command, Transaction};
use dtenge_core::validate::{check_structure, validate};
use dtenge_fuzz::FixedAuthorities;
use std::collections::BTreeMap;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus/tx_decode_validate".into());
    let authorities = FixedAuthorities::new();
    let (mut files, mut decoded, mut structure, mut valid) = (0, 0, 0, 0);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut valid_by_command: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("a corpus directory") {
        let path = entry.expect("an entry").path();
        if !path.is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).expect("read");
        let Ok(tx) = serde_json::from_slice::<Transaction>(&bytes) else { continue };
        decoded += 1;
        if check_structure(&tx, &authorities).is_ok() {
            structure += 1;
        }
        match validate(&tx, &authorities) {
            Ok(_) => {
                valid += 1;
                let c = match tx.body.command {
                    Command::Issue => "issue",
                    Command::Transfer => "transfer",
                    Command::Redeem => "redeem",
                };
                *valid_by_command.entry(c.into()).or_default() += 1;
            }
            Err(e) => *errors.entry(e.code.to_string()).or_default() += 1,
        }
    }
    println!("{dir}: {files} files, {decoded} decode, {structure} pass check_structure, {valid} pass validate");
    println!("valid by command: {valid_by_command:?}");
    println!("validate errors by code: {errors:?}");
}
