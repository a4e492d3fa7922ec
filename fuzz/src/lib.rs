//! Fixtures shared by the fuzz targets and the corpus seeder (`examples/seed.rs`).
//!
//! Everything here is deterministic: keys come from fixed seeds, so a seed corpus written
//! today still carries valid signatures tomorrow.

use dtenge_core::crypto::{Address, PublicKey, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::{Authorities, KeyStatus};

/// Seed of the NBK (central bank) node key.
pub const NBK_SEED: [u8; 32] = [1; 32];
/// Seed of the one active bank node key.
pub const BANK_SEED: [u8; 32] = [2; 32];
/// Seed of a bank node key the operator has blocked (covers the `BlockedNode` branch).
pub const BLOCKED_SEED: [u8; 32] = [3; 32];
/// Seeds of two clients.
pub const ALICE_SEED: [u8; 32] = [9; 32];
pub const BOB_SEED: [u8; 32] = [10; 32];

/// A small fixed network of trust anchors: the NBK, one active bank and one blocked bank.
pub struct FixedAuthorities {
    pub nbk: SecretKey,
    pub bank: SecretKey,
    pub blocked: SecretKey,
    nbk_pk: PublicKey,
    bank_pk: PublicKey,
    blocked_pk: PublicKey,
    issuer: Address,
}

impl FixedAuthorities {
    pub fn new() -> FixedAuthorities {
        let nbk = SecretKey::from_seed(NBK_SEED);
        let bank = SecretKey::from_seed(BANK_SEED);
        let blocked = SecretKey::from_seed(BLOCKED_SEED);
        FixedAuthorities {
            nbk_pk: nbk.public_key(),
            bank_pk: bank.public_key(),
            blocked_pk: blocked.public_key(),
            issuer: nbk.address(),
            nbk,
            bank,
            blocked,
        }
    }
}

impl Default for FixedAuthorities {
    fn default() -> Self {
        FixedAuthorities::new()
    }
}

impl Authorities for FixedAuthorities {
    fn issuer(&self) -> Address {
        self.issuer
    }
    fn key_status(&self, key: &PublicKey) -> KeyStatus {
        if *key == self.nbk_pk {
            KeyStatus::CentralBank
        } else if *key == self.bank_pk {
            KeyStatus::ActiveNode
        } else if *key == self.blocked_pk {
            KeyStatus::BlockedNode
        } else {
            KeyStatus::Unknown
        }
    }
}

fn tiyn(t: u64) -> Amount {
    Amount::from_tiyn(t).expect("seed amounts are small")
}

/// Valid and deliberately broken transactions for the `tx_decode_validate` seed corpus, with
/// the file stem each is written under.
pub fn sample_transactions() -> Vec<(&'static str, Transaction)> {
    let net = FixedAuthorities::new();
    let alice = SecretKey::from_seed(ALICE_SEED);
    let bob = SecretKey::from_seed(BOB_SEED);
    let issuer = net.issuer();

    // Issue 5,000.00 KZT to Alice, attested by the NBK.
    let mut issue = Transaction::new(TxBody {
        command: Command::Issue,
        inputs: vec![],
        outputs: vec![Output::standard(tiyn(500_000), alice.address(), issuer)],
        nonce: 1,
    });
    issue.attest(&net.nbk);

    // Alice pays Bob 150.00 KZT and takes 4,850.00 KZT change; attested by the bank.
    let mut transfer = Transaction::new(TxBody {
        command: Command::Transfer,
        inputs: issue.outputs_as_inputs(),
        outputs: vec![
            Output::standard(tiyn(15_000), bob.address(), issuer),
            Output::standard(tiyn(485_000), alice.address(), issuer),
        ],
        nonce: 2,
    });
    transfer.sign_owner(&alice);
    transfer.attest(&net.bank);

    // Bob redeems 100.00 of his 150.00 KZT (50.00 back to him); the NBK attests.
    let mut redeem = Transaction::new(TxBody {
        command: Command::Redeem,
        inputs: vec![transfer.outputs_as_inputs()[0].clone()],
        outputs: vec![Output::standard(tiyn(5_000), bob.address(), issuer)],
        nonce: 3,
    });
    redeem.sign_owner(&bob);
    redeem.attest(&net.nbk);

    // Redeem everything: no outputs at all.
    let mut redeem_all = Transaction::new(TxBody {
        command: Command::Redeem,
        inputs: vec![transfer.outputs_as_inputs()[1].clone()],
        outputs: vec![],
        nonce: 4,
    });
    redeem_all.sign_owner(&alice);
    redeem_all.attest(&net.nbk);

    // Broken ones: each fails one rule.
    let mut unbalanced = transfer.clone();
    unbalanced.body.outputs[1].amount_tiyn = tiyn(485_001);

    let mut double_spend = transfer.clone();
    let again = double_spend.body.inputs[0].clone();
    double_spend.body.inputs.push(again);

    let mut by_blocked = transfer.clone();
    by_blocked.attestations.clear();
    by_blocked.attest(&net.blocked);

    let mut issue_by_bank = issue.clone();
    issue_by_bank.attestations.clear();
    issue_by_bank.attest(&net.bank);

    let mut bad_signature = transfer.clone();
    bad_signature.witnesses[0].signature.sig.0[0] ^= 1;

    let mut zero_output = issue.clone();
    zero_output.body.outputs.push(Output::standard(Amount::ZERO, bob.address(), issuer));

    let mut missing_witness = transfer.clone();
    missing_witness.witnesses.clear();

    vec![
        ("valid_issue", issue),
        ("valid_transfer_with_change", transfer),
        ("valid_redeem", redeem),
        ("valid_redeem_all", redeem_all),
        ("broken_unbalanced", unbalanced),
        ("broken_double_spend", double_spend),
        ("broken_attested_by_blocked", by_blocked),
        ("broken_issue_by_bank", issue_by_bank),
        ("broken_bad_signature", bad_signature),
        ("broken_zero_output", zero_output),
        ("broken_missing_witness", missing_witness),
    ]
}

/// Broken JSON for the `tx_decode_validate` seed corpus (raw text, not produced by serde).
pub const BROKEN_TX_JSON: &[(&str, &str)] = &[
    ("broken_empty_object", "{}"),
    (
        "broken_bad_command",
        r#"{"body":{"command":"mint","inputs":[],"outputs":[],"nonce":0},"witnesses":[],"attestations":[]}"#,
    ),
    (
        "broken_amount_above_max",
        r#"{"body":{"command":"issue","inputs":[],"outputs":[{"amount_tiyn":9007199254740992,"owner":"00","issuer":"00","policy":"standard"}],"nonce":0},"witnesses":[],"attestations":[]}"#,
    ),
    (
        "broken_short_hex",
        r#"{"body":{"command":"transfer","inputs":[{"tx_id":"abcd","index":0,"output":{"amount_tiyn":1,"owner":"00","issuer":"00","policy":"standard"}}],"outputs":[],"nonce":0},"witnesses":[],"attestations":[]}"#,
    ),
    ("broken_truncated", r#"{"body":{"command":"issue","inputs":[],"outp"#),
];
