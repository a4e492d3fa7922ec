//! Regression tests for bugs found in review, each reproducing the original trigger.

use dtenge_core::calendar::Date;
use dtenge_core::crypto::SecretKey;
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_network::types::{AmountRequest, CardMode, CardPurchaseRequest, LinkCard, OpenAccount};
use dtenge_network::{Entropy, ManualClock, Network, NetworkConfig};
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

fn open(dir: &std::path::Path) -> Network {
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    Network::open(dir, &NetworkConfig::standard(), clock, Entropy::from_seed(11)).unwrap()
}

fn account(network: &Network, bank: &str, n: u32, kind: ClientKind, key: Option<&SecretKey>) -> String {
    let id = iin(n);
    let request = OpenAccount {
        kind,
        client_id: id.clone(),
        name: format!("Client {n}"),
        phone: None,
        public_key: key.map(SecretKey::public_key),
    };
    network.open_account(None, bank, request).unwrap();
    id
}

/// A client that keeps its own key spends an output of its own transaction while that
/// transaction is still being committed. Before the fix the notary let it, which created DT
/// on disk and made the next start refuse the state. Now the spend waits
/// (`REQUEST_IN_PROGRESS`) until the creating transaction is durable.
#[test]
fn an_output_cannot_be_spent_before_its_transaction_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let network = Arc::new(open(dir.path()));
    network.credit_correspondent(None, "steppe", req(10_000_000)).unwrap();
    network.emission(None, "steppe", req(10_000_000)).unwrap();
    for round in 0..5u8 {
        // A fresh client per round, holding one token.
        let key = SecretKey::from_seed([42 + round; 32]);
        let client = account(&network, "steppe", 1 + u32::from(round), ClientKind::Individual, Some(&key));
        network.deposit_fiat(None, "steppe", &client, req(1_000_000)).unwrap();
        network.convert_to_dt(None, "steppe", &client, req(1_000_000)).unwrap();
        let issuer = network.spendable_tokens("steppe", &client).unwrap()[0].output.issuer;
        let address = key.address();
        let round = u64::from(round);
        let funding = network.spendable_tokens("steppe", &client).unwrap();
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
            let network = network.clone();
            let t1 = t1.clone();
            std::thread::spawn(move || network.submit(None, "steppe", t1))
        };
        // Keep trying T2 while T1 is in flight, and a few times after it is answered.
        let mut outcomes = Vec::new();
        let mut tries_after_t1 = 0;
        loop {
            let t1_answered = submitter.is_finished();
            let outcome = network.submit(None, "steppe", t2.clone());
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
        let check = network.reconcile();
        assert!(check.ok, "{:?}", check.problems);
    }
    drop(network);
    let reopened = open(dir.path());
    assert!(reopened.reconcile().ok);
}

/// A refund of a converted card purchase wrote the merchant's bank money without holding the
/// merchant's bank-money lock, so concurrent deposits and refunds overwrote each other.
#[test]
fn converted_refunds_and_deposits_to_one_merchant_do_not_race() {
    let dir = tempfile::tempdir().unwrap();
    let network = Arc::new(open(dir.path()));
    for bank in ["steppe", "sapa"] {
        network.credit_correspondent(None, bank, req(1_000_000_000)).unwrap();
        network.emission(None, bank, req(100_000_000)).unwrap();
    }
    let buyer = account(&network, "steppe", 2, ClientKind::Individual, None);
    let merchant = account(&network, "sapa", 3, ClientKind::LegalEntity, None);
    network.deposit_fiat(None, "steppe", &buyer, req(10_000_000)).unwrap();
    network.convert_to_dt(None, "steppe", &buyer, req(10_000_000)).unwrap();
    let pan = complete_pan("440043000000123").unwrap();
    network.link_card(None, "steppe", LinkCard { client_id: buyer.clone(), pan: pan.clone() }).unwrap();

    let refunds = 100u64;
    let refund = 10_000u64;
    let purchase = network
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
    let fiat_after_purchase = network.balance("sapa", &merchant).unwrap().fiat_tiyn.tiyn();
    assert_eq!(fiat_after_purchase, refunds * refund);

    let deposits = 1_000u64;
    let depositor = {
        let network = network.clone();
        let merchant = merchant.clone();
        std::thread::spawn(move || {
            for _ in 0..deposits {
                network.deposit_fiat(None, "sapa", &merchant, req(1)).unwrap();
            }
        })
    };
    for _ in 0..refunds {
        network.card_refund(None, &purchase.id, req(refund)).unwrap();
    }
    depositor.join().unwrap();
    assert_eq!(network.balance("sapa", &merchant).unwrap().fiat_tiyn.tiyn(), deposits);
    assert_eq!(network.balance("steppe", &buyer).unwrap().dt_tiyn.tiyn(), 10_000_000);
    drop(network);
    let reopened = open(dir.path());
    assert_eq!(reopened.balance("sapa", &merchant).unwrap().fiat_tiyn.tiyn(), deposits);
    assert!(reopened.reconcile().ok);
}

/// Circulation above the largest amount used to brick monitoring, blocking and restart.
#[test]
fn emission_cannot_push_circulation_past_the_largest_amount() {
    let dir = tempfile::tempdir().unwrap();
    let network = open(dir.path());
    let max = Amount::MAX.tiyn();
    network.credit_correspondent(None, "steppe", req(max)).unwrap();
    network.emission(None, "steppe", req(max)).unwrap();
    network.credit_correspondent(None, "tulpar", req(max)).unwrap();
    let refused = network.emission(None, "tulpar", req(1)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::LimitExceeded);
    assert!(network.monitoring().is_ok());
    assert!(network.reconcile().ok);
    drop(network);
    assert!(open(dir.path()).reconcile().ok);
}

/// A data directory from before the change logs keeps tokens as keyed rows, which this
/// version does not read: opening it must fail with a clear error, not start with tokens
/// missing.
#[test]
fn a_data_directory_with_keyed_token_rows_is_refused_clearly() {
    use dtenge_store::{SimDisk, Store, Table, WriteBatch};
    let disk = SimDisk::new();
    {
        let store = Store::open_simulated(disk.clone(), &[]).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(Table("node_tokens"), b"steppe\0token".to_vec(), b"row".to_vec());
        store.commit(batch).unwrap();
    }
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    let refused =
        Network::open_simulated(disk, &NetworkConfig::standard(), clock, Entropy::from_seed(3)).err().expect("refused");
    assert_eq!(refused.code, ErrorCode::StorageFailure);
    assert!(refused.message.contains("node_tokens") && refused.message.contains("fresh data directory"), "{refused}");
}

/// The signed transaction of a payment between two banks is archived once, naming both
/// nodes (each node used to store its own copy: a third of the bytes a payment wrote).
#[test]
fn a_transaction_between_two_banks_is_archived_once_for_both() {
    use dtenge_core::token::TxId;
    let dir = tempfile::tempdir().unwrap();
    let tx_id = {
        let network = open(dir.path());
        network.credit_correspondent(None, "steppe", req(10_000_000)).unwrap();
        network.emission(None, "steppe", req(10_000_000)).unwrap();
        let payer = account(&network, "steppe", 1, ClientKind::Individual, None);
        let payee = account(&network, "sapa", 2, ClientKind::Individual, None);
        network.deposit_fiat(None, "steppe", &payer, req(500_000)).unwrap();
        network.convert_to_dt(None, "steppe", &payer, req(500_000)).unwrap();
        let to = dtenge_network::types::Payee {
            client_id: Some(payee),
            bank: Some("sapa".into()),
            ..dtenge_network::types::Payee::default()
        };
        let request = dtenge_network::types::TransferRequest {
            from: payer,
            to,
            amount_tiyn: Amount::from_tiyn(15_000).unwrap(),
            reference: None,
        };
        network.transfer(None, "steppe", request).unwrap().tx_id
    };
    let store =
        dtenge_store::Store::open(&dir.path().join(dtenge_network::DATABASE_FILE), &dtenge_node::TABLES).unwrap();
    let archived: Vec<(Vec<String>, TxId, Transaction)> = store.scan_log_values(dtenge_node::TXS_LOG).unwrap();
    let copies: Vec<_> = archived.iter().filter(|(_, id, _)| *id == tx_id).collect();
    assert_eq!(copies.len(), 1, "one record for the payment");
    assert_eq!(copies[0].0, vec!["sapa".to_string(), "steppe".to_string()], "both party nodes, in order");
    assert_eq!(copies[0].2.id(), tx_id, "the record holds the signed transaction itself");
}

/// A client's own key is checked when the account is opened: 32 bytes that are not a point of
/// the Ed25519 curve could never sign, so the bank refuses the account (`MALFORMED_INPUT`)
/// instead of opening one whose every payment fails later. Nothing is opened, and the same
/// client can then open its account with a real key.
#[test]
fn an_account_whose_key_is_not_a_curve_point_is_refused_at_opening() {
    use dtenge_core::crypto::{Hash32, KeyCache, PublicKey, SigAlg};
    let dir = tempfile::tempdir().unwrap();
    let network = open(dir.path());
    // About half of all 32-byte strings decode to a point; take the first that does not.
    let probe = KeyCache::default();
    let off_curve = (0u8..=255)
        .map(|b| PublicKey { alg: SigAlg::Ed25519, key: Hash32([b; 32]) })
        .find(|key| probe.admit(key).is_err())
        .expect("some byte pattern is off the curve");
    let before = network.accounts("steppe").unwrap().len();
    let request = |public_key| OpenAccount {
        kind: ClientKind::Individual,
        client_id: iin(7),
        name: "Client 7".into(),
        phone: None,
        public_key: Some(public_key),
    };
    let refused = network.open_account(None, "steppe", request(off_curve)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput, "{refused}");
    assert!(refused.message.contains("curve"), "{refused}");
    assert_eq!(network.accounts("steppe").unwrap().len(), before, "nothing opened");
    assert!(network.account_view("steppe", &iin(7)).is_err(), "the client has no account");
    // The refusal left nothing behind: the same client opens with a real key.
    let key = SecretKey::from_seed([9; 32]);
    network.open_account(None, "steppe", request(key.public_key())).unwrap();
    assert_eq!(network.accounts("steppe").unwrap().len(), before + 1);
}
