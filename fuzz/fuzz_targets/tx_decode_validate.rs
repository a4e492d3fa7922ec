//! Bytes -> JSON `Transaction` -> stateless validation.
//!
//! This is what `POST /v1/nodes/{node}/transactions` does with a client's body before the
//! notary sees it. Nothing may panic, and the answers must agree with each other:
//! - a decoded transaction re-encodes to JSON that decodes to the same transaction (same id);
//! - `validate` passing implies `check_structure` passing with the same result;
//! - a validated transaction's token ids are `input_ids()` / `output_ids()`, and its issued /
//!   redeemed amounts follow from its command and value in / out.
#![no_main]

use dtenge_core::money::Amount;
use dtenge_core::tx::{Command, Transaction};
use dtenge_core::validate::{check_structure, signature_items, validate, SignedMessages};
use dtenge_fuzz::FixedAuthorities;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static AUTHORITIES: OnceLock<FixedAuthorities> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(tx) = serde_json::from_slice::<Transaction>(data) else { return };
    let authorities = AUTHORITIES.get_or_init(FixedAuthorities::new);

    // Identifiers: canonical encoding and hashing of whatever decoded.
    let id = tx.id();
    let inputs = tx.input_ids();
    let outputs = tx.output_ids();
    assert_eq!(inputs.len(), tx.body.inputs.len());
    assert_eq!(outputs.len(), tx.body.outputs.len());
    let _ = tx.outputs_as_inputs();
    for t in inputs.iter().chain(&outputs) {
        let _ = t.shard();
        let _ = format!("{t} {t:?}");
    }

    // JSON round trip: what we decoded we can encode, and it comes back the same.
    let json = serde_json::to_vec(&tx).expect("a decoded transaction encodes");
    let again: Transaction = serde_json::from_slice(&json).expect("an encoded transaction decodes");
    assert_eq!(again, tx);
    assert_eq!(again.id(), id);

    // Batch attestations' Merkle proofs are checked here; a bad one is refused, never a panic.
    match SignedMessages::of(&tx, &id) {
        Ok(messages) => {
            assert_eq!(signature_items(&tx, &messages).len(), tx.witnesses.len() + tx.attestations.len());
        }
        Err(e) => {
            assert_eq!(e.code, dtenge_core::ErrorCode::InvalidSignature);
            assert!(tx.attestations.iter().any(|a| a.batch.is_some()));
        }
    }

    let structure = check_structure(&tx, authorities);
    let full = validate(&tx, authorities);
    match (&structure, &full) {
        (Err(_), Ok(_)) => panic!("validate passed where check_structure failed"),
        (Ok(s), Ok(v)) => assert_eq!(s, v),
        (Err(s), Err(v)) => assert_eq!(s, v, "validate fails with the structure error first"),
        (Ok(_), Err(_)) => {} // a signature did not verify
    }
    if let Ok(v) = &structure {
        assert_eq!(v.tx_id, id);
        assert_eq!(v.inputs, inputs);
        assert_eq!(v.outputs, outputs);
        match tx.body.command {
            Command::Issue => {
                assert!(tx.body.inputs.is_empty());
                assert_eq!(v.issued, v.value_out);
                assert_eq!(v.redeemed, Amount::ZERO);
            }
            Command::Transfer => {
                assert_eq!(v.value_in, v.value_out);
                assert_eq!((v.issued, v.redeemed), (Amount::ZERO, Amount::ZERO));
            }
            Command::Redeem => {
                assert!(v.value_in > v.value_out);
                assert_eq!(v.value_in.checked_sub(v.value_out).unwrap(), v.redeemed);
                assert_eq!(v.issued, Amount::ZERO);
            }
        }
        let _ = format!("{} {} {}", v.value_in, v.value_out, v.tx_id);
    }
    if let Err(e) = &full {
        let _ = e.to_string();
    }
});
