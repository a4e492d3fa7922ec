//! Regression tests for bugs found in review, each reproducing the original trigger, ported
//! from the one-process network's `crates/network/tests/regressions.rs` (deleted with its
//! crate; at commit 6eefee7) to the roles through the platform facade.
//!
//! Not ported, for want of anything of the kind among the roles:
//! `a_transaction_between_two_banks_is_archived_once_for_both` (the network's one store kept
//! one archived copy of a payment for both nodes; two banks are two organizations with a store
//! each, and each keeps its own record of a payment between them by design).

use dtenge_api::platform::{Platform, DATABASE_FILE};
use dtenge_api::types::{AmountRequest, CardMode, CardPurchaseRequest, LinkCard, OpenAccount};
use dtenge_core::calendar::Date;
use dtenge_core::crypto::SecretKey;
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::{complete_iin_bin, complete_pan};
use dtenge_node::ClientKind;
use std::sync::Arc;

fn monday_10am_ms() -> u64 {
    ((Date::new(2026, 11, 23).unwrap().days() * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn iin(n: u32) -> String {
    (n * 10..).find_map(|k| complete_iin_bin(&format!("{:011}", 85_000_000_000u64 + u64::from(k)))).unwrap()
}

fn req(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).unwrap() }
}

fn open(dir: &std::path::Path) -> Platform {
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    Platform::open(dir, clock, Entropy::from_seed(11)).unwrap()
}

fn account(platform: &Platform, bank: &str, n: u32, kind: ClientKind, key: Option<&SecretKey>) -> String {
    let id = iin(n);
    let request = OpenAccount {
        kind,
        client_id: id.clone(),
        name: format!("Client {n}"),
        phone: None,
        public_key: key.map(SecretKey::public_key),
    };
    platform.open_account(None, bank, request).unwrap();
    id
}

/// A client that keeps its own key spends an output of its own transaction while that
/// transaction is still being committed. Before the fix the notary let it, which created DT
/// on disk and made the next start refuse the state. Now the spend waits
/// (`REQUEST_IN_PROGRESS`) until the creating transaction is durable.
#[test]
fn an_output_cannot_be_spent_before_its_transaction_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Arc::new(open(dir.path()));
    platform.credit_correspondent(None, "steppe", req(10_000_000)).unwrap();
    platform.emission(None, "steppe", req(10_000_000)).unwrap();
    for round in 0..5u8 {
        // A fresh client per round, holding one token.
        let key = SecretKey::from_seed([42 + round; 32]);
        let client = account(&platform, "steppe", 1 + u32::from(round), ClientKind::Individual, Some(&key));
        platform.deposit_fiat(None, "steppe", &client, req(1_000_000)).unwrap();
        platform.convert_to_dt(None, "steppe", &client, req(1_000_000)).unwrap();
        let issuer = platform.spendable_tokens("steppe", &client).unwrap()[0].output.issuer;
        let address = key.address();
        let round = u64::from(round);
        let funding = platform.spendable_tokens("steppe", &client).unwrap();
        let total: u64 = funding.iter().map(|i| i.output.amount_tiyn.tiyn()).sum();
        // T1: split everything into many outputs to itself (slow to plan and commit).
        let pieces = 4_000u64;
        let piece = total / pieces;
        let mut outputs: Vec<Output> =
            (0..pieces).map(|_| Output::standard(Amount::from_tiyn(piece).unwrap(), address, issuer)).collect();
        outputs.push(Output::standard(Amount::from_tiyn(total - piece * pieces).unwrap(), address, issuer));
        outputs.retain(|o| !o.amount_tiyn.is_zero());
        let mut t1 = Transaction::new(TxBody { command: Command::Transfer, inputs: funding, outputs, nonce: round });
        t1.sign_owner(&key);
        // T2: spends T1's first output, built before T1 is even submitted.
        let first = t1.outputs_as_inputs().remove(0);
        let mut t2 = Transaction::new(TxBody {
            command: Command::Transfer,
            outputs: vec![Output::standard(first.output.amount_tiyn, address, issuer)],
            inputs: vec![first],
            nonce: 1_000 + round,
        });
        t2.sign_owner(&key);

        let submitter = {
            let platform = platform.clone();
            let t1 = t1.clone();
            std::thread::spawn(move || platform.submit(None, "steppe", t1))
        };
        // Keep trying T2 while T1 is in flight, and a few times after it is answered.
        let mut outcomes = Vec::new();
        let mut tries_after_t1 = 0;
        loop {
            let t1_answered = submitter.is_finished();
            let outcome = platform.submit(None, "steppe", t2.clone());
            let done = outcome.is_ok();
            outcomes.push(outcome.map(|_| ()).map_err(|e| e.code));
            tries_after_t1 += usize::from(t1_answered);
            if done || tries_after_t1 > 3 {
                break;
            }
            std::thread::yield_now();
        }
        submitter.join().unwrap().expect("T1 commits");
        assert!(outcomes.last().unwrap().is_ok(), "T2 never committed: {:?}", outcomes.last());
        for failure in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(
                matches!(failure, ErrorCode::RequestInProgress | ErrorCode::DoubleSpend),
                "unexpected refusal {failure:?}"
            );
        }
        let waited = outcomes.iter().filter(|o| **o == Err(ErrorCode::RequestInProgress)).count();
        println!("round {round}: {} tries, {waited} answered REQUEST_IN_PROGRESS", outcomes.len());
        let check = platform.reconcile();
        assert!(check.ok, "{:?}", check.problems);
    }
    drop(platform);
    let reopened = open(dir.path());
    assert!(reopened.reconcile().ok);
}

/// A refund of a converted card purchase wrote the merchant's bank money without holding the
/// merchant's bank-money lock, so concurrent deposits and refunds overwrote each other.
#[test]
fn converted_refunds_and_deposits_to_one_merchant_do_not_race() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Arc::new(open(dir.path()));
    for bank in ["steppe", "sapa"] {
        platform.credit_correspondent(None, bank, req(1_000_000_000)).unwrap();
        platform.emission(None, bank, req(100_000_000)).unwrap();
    }
    let buyer = account(&platform, "steppe", 2, ClientKind::Individual, None);
    let merchant = account(&platform, "sapa", 3, ClientKind::LegalEntity, None);
    platform.deposit_fiat(None, "steppe", &buyer, req(10_000_000)).unwrap();
    platform.convert_to_dt(None, "steppe", &buyer, req(10_000_000)).unwrap();
    let pan = complete_pan("440043000000123").unwrap();
    platform.link_card(None, "steppe", LinkCard { client_id: buyer.clone(), pan: pan.clone() }).unwrap();

    let refunds = 100u64;
    let refund = 10_000u64;
    let purchase = platform
        .card_purchase(
            None,
            CardPurchaseRequest {
                pan,
                merchant_bank: "sapa".into(),
                merchant_id: merchant.clone(),
                amount_tiyn: Amount::from_tiyn(refunds * refund).unwrap(),
                mode: CardMode::ConvertToFiat,
            },
        )
        .unwrap();
    // Among the roles the merchant's bank credits its bank money when the certified purchase
    // reaches it, after the answer (`Platform::card_purchase`): let it arrive.
    platform.assembly().settle_cards(std::time::Duration::from_secs(30)).unwrap();
    let fiat_after_purchase = platform.balance("sapa", &merchant).unwrap().fiat_tiyn.tiyn();
    assert_eq!(fiat_after_purchase, refunds * refund);

    let deposits = 1_000u64;
    let depositor = {
        let platform = platform.clone();
        let merchant = merchant.clone();
        std::thread::spawn(move || {
            for _ in 0..deposits {
                platform.deposit_fiat(None, "sapa", &merchant, req(1)).unwrap();
            }
        })
    };
    for _ in 0..refunds {
        platform.card_refund(None, &purchase.id, req(refund)).unwrap();
    }
    depositor.join().unwrap();
    assert_eq!(platform.balance("sapa", &merchant).unwrap().fiat_tiyn.tiyn(), deposits);
    assert_eq!(platform.balance("steppe", &buyer).unwrap().dt_tiyn.tiyn(), 10_000_000);
    drop(platform);
    let reopened = open(dir.path());
    assert_eq!(reopened.balance("sapa", &merchant).unwrap().fiat_tiyn.tiyn(), deposits);
    assert!(reopened.reconcile().ok);
}

/// Circulation above the largest amount used to brick monitoring, blocking and restart.
#[test]
fn emission_cannot_push_circulation_past_the_largest_amount() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let max = Amount::MAX.tiyn();
    platform.credit_correspondent(None, "steppe", req(max)).unwrap();
    platform.emission(None, "steppe", req(max)).unwrap();
    platform.credit_correspondent(None, "tulpar", req(max)).unwrap();
    let refused = platform.emission(None, "tulpar", req(1)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::LimitExceeded);
    assert!(platform.monitoring().is_ok());
    assert!(platform.reconcile().ok);
    drop(platform);
    assert!(open(dir.path()).reconcile().ok);
}

/// A data directory from before the change logs keeps tokens as keyed rows, which this
/// version does not read: opening it must fail with a clear error, not start with tokens
/// missing.
///
/// Among the roles the same danger is a data directory of the one-process network itself
/// (`dtenge.db`, what `dtenge up` wrote before it ran the roles): the roles keep their state in
/// stores of their own beside it, so the platform would start with an empty ledger, every
/// token and account of the network's store missing. It must refuse, clearly.
#[test]
fn a_data_directory_of_the_one_process_network_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A store where the one-process network kept its ledger (the `dtenge-network` crate
        // that wrote one is deleted): its file name, the nodes' tables it held, a committed
        // row. The refusal goes by the name.
        let tables = dtenge_node::TABLES;
        let store = dtenge_store::Store::open(&dir.path().join(DATABASE_FILE), &tables).unwrap();
        let mut batch = dtenge_store::WriteBatch::new();
        batch.put(tables[0], b"meta".to_vec(), b"a node of the one-process network".to_vec());
        store.commit(batch).unwrap();
    }
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    let refused = Platform::open(dir.path(), clock, Entropy::from_seed(3)).err().expect("refused");
    assert_eq!(refused.code, ErrorCode::StorageFailure);
    assert!(refused.message.contains(DATABASE_FILE) && refused.message.contains("fresh data directory"), "{refused}");
    // Nothing of the roles was written beside the network's store.
    assert!(!dir.path().join(dtenge_keys::store::STORE_FILE).exists());
}

/// A build before issue 19 kept the seed of every role's key in the clear in the data
/// directory (`role-keys.seed`), and every custodial key in the banks' stores: this build
/// refuses such a directory, clearly, rather than start beside keys in the clear (its stores'
/// rows are not this build's either).
#[test]
fn a_data_directory_that_kept_keys_in_the_clear_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(dtenge_api::platform::OLD_ROLE_KEYS_FILE), [7u8; 32]).unwrap();
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    let refused = Platform::open(dir.path(), clock, Entropy::from_seed(3)).err().expect("refused");
    assert_eq!(refused.code, ErrorCode::StorageFailure);
    assert!(refused.message.contains("in the clear") && refused.message.contains("fresh data directory"), "{refused}");
    assert!(!dir.path().join(dtenge_keys::store::STORE_FILE).exists());
}

/// A client's own key is checked when the account is opened: 32 bytes that are not a point of
/// the Ed25519 curve could never sign, so the bank refuses the account (`MALFORMED_INPUT`)
/// instead of opening one whose every payment fails later. Nothing is opened, and the same
/// client can then open its account with a real key.
#[test]
fn an_account_whose_key_is_not_a_curve_point_is_refused_at_opening() {
    use dtenge_core::crypto::{Hash32, KeyCache, PublicKey, SigAlg};
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    // About half of all 32-byte strings decode to a point; take the first that does not.
    let probe = KeyCache::default();
    let off_curve = (0u8..=255)
        .map(|b| PublicKey { alg: SigAlg::Ed25519, key: Hash32([b; 32]) })
        .find(|key| probe.admit(key).is_err())
        .expect("some byte pattern is off the curve");
    let before = platform.accounts("steppe").unwrap().len();
    let request = |public_key| OpenAccount {
        kind: ClientKind::Individual,
        client_id: iin(7),
        name: "Client 7".into(),
        phone: None,
        public_key: Some(public_key),
    };
    let refused = platform.open_account(None, "steppe", request(off_curve)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput, "{refused}");
    assert!(refused.message.contains("curve"), "{refused}");
    assert_eq!(platform.accounts("steppe").unwrap().len(), before, "nothing opened");
    assert!(platform.account_view("steppe", &iin(7)).is_err(), "the client has no account");
    // The refusal left nothing behind: the same client opens with a real key.
    let key = SecretKey::from_seed([9; 32]);
    platform.open_account(None, "steppe", request(key.public_key())).unwrap();
    assert_eq!(platform.accounts("steppe").unwrap().len(), before + 1);
}
