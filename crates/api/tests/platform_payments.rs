//! The platform's payments, conversions and the NBK's operations on the roles: what the
//! gateway calls instead of the one-process network, with the network's answers.

use dtenge_api::platform::Idem;
use dtenge_api::platform::{Platform, REFERENCE_LEN_MAX};
use dtenge_api::types::{AmountRequest, OpenAccount, Payee, RegistryLine, RegistryRequest, TransferRequest};
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, Purpose, OWN_ACCOUNT};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn open(dir: &Path, clock: Arc<ManualClock>) -> Platform {
    Platform::open(dir, clock, Entropy::from_seed(7)).unwrap()
}

/// A request's key; `request` stands for its fingerprint (another request, another number).
fn idem(key: &str, request: u8) -> Idem {
    Idem { key: key.into(), fingerprint: Hash32([request; 32]) }
}

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

fn amount(n: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: tiyn(n) }
}

/// A valid IIN/BIN from its first 11 digits.
fn id(prefix: &str) -> String {
    (0..10).find_map(|d| complete_iin_bin(&format!("{}{d}", &prefix[..10]))).unwrap()
}

fn account(kind: ClientKind, client_id: &str, name: &str, phone: Option<&str>) -> OpenAccount {
    OpenAccount {
        kind,
        client_id: client_id.into(),
        name: name.into(),
        phone: phone.map(str::to_string),
        public_key: None,
    }
}

/// A client's DT, as its bank shows it: a payment is answered once its payees' banks hold it
/// too, as the one-process network's was.
fn dt(platform: &Platform, node: &str, client: &str) -> u64 {
    platform.balance(node, client).unwrap().dt_tiyn.tiyn()
}

fn fiat(platform: &Platform, node: &str, client: &str) -> u64 {
    platform.balance(node, client).unwrap().fiat_tiyn.tiyn()
}

/// The bank's correspondent account credited and DT emitted to its own account.
fn fund(platform: &Platform, bank: &str, tiyn_dt: u64) {
    platform.credit_correspondent(None, bank, amount(tiyn_dt)).unwrap();
    platform.emission(None, bank, amount(tiyn_dt)).unwrap();
}

fn to_phone(phone: &str) -> Payee {
    Payee { phone: Some(phone.into()), ..Payee::default() }
}

fn transfer(from: &str, to: Payee, n: u64) -> TransferRequest {
    TransferRequest { from: from.into(), to, amount_tiyn: tiyn(n), reference: None }
}

/// Every role quiet, and the checks across roles hold.
fn assert_reconciles(platform: &Platform) {
    platform.assembly().settle(Duration::from_secs(10)).unwrap();
    assert_eq!(platform.assembly().reconcile(), Vec::<String>::new());
}

#[test]
fn the_nbk_credits_emits_and_redeems_and_clients_convert_each_once_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MONDAY_MS));
    let platform = open(dir.path(), clock.clone());

    // Money arrives on steppe's correspondent account: once per key.
    let credit = platform.credit_correspondent(Some(&idem("rtgs-1", 1)), "steppe", amount(1_000_000_00)).unwrap();
    assert_eq!((credit.credit.as_str(), credit.amount_tiyn), ("corr:steppe", tiyn(1_000_000_00)));
    let again = platform.credit_correspondent(Some(&idem("rtgs-1", 1)), "steppe", amount(1_000_000_00)).unwrap();
    assert_eq!(again, credit);
    let reused = platform.credit_correspondent(Some(&idem("rtgs-1", 2)), "steppe", amount(5)).unwrap_err();
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(platform.credit_correspondent(None, "nowhere", amount(5)).unwrap_err().code, ErrorCode::UnknownAccount);
    assert_eq!(platform.credit_correspondent(None, "steppe", amount(0)).unwrap_err().code, ErrorCode::MalformedInput);
    let long_key = idem(&"k".repeat(129), 1);
    let refused = platform.credit_correspondent(Some(&long_key), "steppe", amount(5)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput);
    assert_eq!(platform.emission(Some(&long_key), "steppe", amount(5)).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.redemption(Some(&long_key), "steppe", amount(5)).unwrap_err().code, ErrorCode::MalformedInput);
    let refused =
        platform.transfer(Some(&idem("", 1)), "steppe", transfer("x", to_phone("+77019876543"), 1)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MalformedInput);
    assert_eq!(platform.abs_balances()["corr:steppe"], 1_000_000_00);

    // Emission: the bank holds the DT when it is answered; once per key.
    let emission = platform.emission(Some(&idem("emit-1", 1)), "steppe", amount(500_000_00)).unwrap();
    assert_eq!(
        (emission.purpose, emission.amount_tiyn, emission.from.clone()),
        (Purpose::Emission, tiyn(500_000_00), None)
    );
    let to = emission.to.clone().unwrap();
    assert_eq!((to.bank.as_str(), to.client_id.as_str()), ("steppe", OWN_ACCOUNT));
    let posting = emission.abs_posting.clone().unwrap();
    assert_eq!((posting.debit.as_str(), posting.credit.as_str()), ("corr:steppe", "dt_liability"));
    assert_eq!(posting.reference, emission.tx_id.to_string());
    assert_eq!(platform.emission(Some(&idem("emit-1", 1)), "steppe", amount(500_000_00)).unwrap(), emission);
    assert_eq!(dt(&platform, "steppe", OWN_ACCOUNT), 500_000_00);
    assert!(platform.is_committed(&emission.tx_id).unwrap());
    let too_much = platform.emission(None, "steppe", amount(500_000_01)).unwrap_err();
    assert_eq!(too_much.code, ErrorCode::InsufficientFunds);
    assert_eq!(platform.emission(None, "steppe", amount(0)).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.emission(None, "nowhere", amount(1)).unwrap_err().code, ErrorCode::UnknownAccount);
    let balances = platform.abs_balances();
    assert_eq!((balances["corr:steppe"], balances["dt_liability"]), (500_000_00, 500_000_00));

    // A client converts bank money to DT and back, once per key.
    let aigerim = id("90010130000");
    platform.open_account(None, "steppe", account(ClientKind::Individual, &aigerim, "Aigerim Seitova", None)).unwrap();
    platform.deposit_fiat(None, "steppe", &aigerim, amount(10_000_00)).unwrap();
    let to_dt = platform.convert_to_dt(Some(&idem("c2dt-1", 1)), "steppe", &aigerim, amount(4_000_00)).unwrap();
    assert_eq!((to_dt.purpose, to_dt.amount_tiyn), (Purpose::ConversionToDt, tiyn(4_000_00)));
    assert_eq!(to_dt.from.as_ref().unwrap().client_id, OWN_ACCOUNT);
    assert_eq!(to_dt.to.as_ref().unwrap().client_id, aigerim);
    assert_eq!(platform.convert_to_dt(Some(&idem("c2dt-1", 1)), "steppe", &aigerim, amount(4_000_00)).unwrap(), to_dt);
    assert_eq!((dt(&platform, "steppe", &aigerim), fiat(&platform, "steppe", &aigerim)), (4_000_00, 6_000_00));
    let from_dt = platform.convert_from_dt(Some(&idem("dt2c-1", 1)), "steppe", &aigerim, amount(1_000_00)).unwrap();
    assert_eq!(
        (from_dt.purpose, from_dt.to.as_ref().unwrap().client_id.as_str()),
        (Purpose::ConversionFromDt, OWN_ACCOUNT)
    );
    assert_eq!(
        platform.convert_from_dt(Some(&idem("dt2c-1", 1)), "steppe", &aigerim, amount(1_000_00)).unwrap(),
        from_dt
    );
    assert_eq!((dt(&platform, "steppe", &aigerim), fiat(&platform, "steppe", &aigerim)), (3_000_00, 7_000_00));
    let history = platform.history("steppe", &aigerim, 0, 10).unwrap();
    let purposes: Vec<Purpose> = history.lines.iter().map(|l| l.purpose).collect();
    assert_eq!(purposes, vec![Purpose::ConversionFromDt, Purpose::ConversionToDt]);
    // Refusals change nothing.
    let refusals = [
        (platform.convert_to_dt(None, "steppe", &aigerim, amount(7_000_01)), ErrorCode::InsufficientFunds),
        (platform.convert_from_dt(None, "steppe", &aigerim, amount(3_000_01)), ErrorCode::InsufficientFunds),
        (platform.convert_to_dt(None, "steppe", &aigerim, amount(0)), ErrorCode::MalformedInput),
        (platform.convert_to_dt(None, "steppe", OWN_ACCOUNT, amount(1)), ErrorCode::Forbidden),
        (platform.convert_to_dt(None, "steppe", &id("85020240001"), amount(1)), ErrorCode::UnknownAccount),
        (platform.convert_to_dt(None, "nowhere", &aigerim, amount(1)), ErrorCode::UnknownAccount),
    ];
    for (refused, code) in refusals {
        assert_eq!(refused.unwrap_err().code, code);
    }
    assert_eq!((dt(&platform, "steppe", &aigerim), fiat(&platform, "steppe", &aigerim)), (3_000_00, 7_000_00));
    // A bank without DT cannot pay a conversion: the network's words.
    let bolat = id("85020240001");
    platform.open_account(None, "tulpar", account(ClientKind::Individual, &bolat, "Bolat Nurlanov", None)).unwrap();
    platform.deposit_fiat(None, "tulpar", &bolat, amount(100_00)).unwrap();
    let dry = platform.convert_to_dt(None, "tulpar", &bolat, amount(100_00)).unwrap_err();
    assert_eq!(dry.code, ErrorCode::InsufficientFunds);
    assert!(dry.message.contains("Tulpar Bank lacks DT liquidity"), "{}", dry.message);
    assert_eq!(fiat(&platform, "tulpar", &bolat), 100_00);

    // Redemption: the bank's own DT back to the NBK, its correspondent account credited.
    let redemption = platform.redemption(Some(&idem("redeem-1", 1)), "steppe", amount(100_000_00)).unwrap();
    assert_eq!(
        (redemption.purpose, redemption.amount_tiyn, redemption.to.clone()),
        (Purpose::Redemption, tiyn(100_000_00), None)
    );
    let posting = redemption.abs_posting.clone().unwrap();
    assert_eq!((posting.debit.as_str(), posting.credit.as_str()), ("dt_liability", "corr:steppe"));
    assert_eq!(platform.redemption(Some(&idem("redeem-1", 1)), "steppe", amount(100_000_00)).unwrap(), redemption);
    let own_dt = 500_000_00 - 4_000_00 + 1_000_00 - 100_000_00;
    assert_eq!(dt(&platform, "steppe", OWN_ACCOUNT), own_dt);
    let balances = platform.abs_balances();
    assert_eq!((balances["corr:steppe"], balances["dt_liability"]), (600_000_00, 400_000_00));
    let dry = platform.redemption(None, "steppe", amount(own_dt + 1)).unwrap_err();
    assert_eq!(dry.code, ErrorCode::InsufficientFunds);
    assert!(dry.message.contains("Steppe Bank lacks DT liquidity"), "{}", dry.message);
    assert_eq!(platform.redemption(None, "steppe", amount(0)).unwrap_err().code, ErrorCode::MalformedInput);
    assert_reconciles(&platform);

    // On Saturday the RTGS rests: emission and redemption are refused, client conversions run.
    clock.advance(5 * DAY_MS);
    assert_eq!(platform.emission(None, "steppe", amount(1_00)).unwrap_err().code, ErrorCode::NonWorkingDay);
    assert_eq!(platform.redemption(None, "steppe", amount(1_00)).unwrap_err().code, ErrorCode::NonWorkingDay);
    // Answered before: the first answer, on any day.
    assert_eq!(platform.emission(Some(&idem("emit-1", 1)), "steppe", amount(500_000_00)).unwrap(), emission);
    assert_eq!(platform.redemption(Some(&idem("redeem-1", 1)), "steppe", amount(100_000_00)).unwrap(), redemption);
    platform.convert_to_dt(None, "steppe", &aigerim, amount(1_00)).unwrap();
    assert_eq!(dt(&platform, "steppe", OWN_ACCOUNT), own_dt - 1_00);
    assert_reconciles(&platform);
    platform.shutdown();

    // After a restart, the keys still answer what they answered.
    let platform = open(dir.path(), clock);
    assert_eq!(platform.emission(Some(&idem("emit-1", 1)), "steppe", amount(500_000_00)).unwrap(), emission);
    assert_eq!(platform.convert_to_dt(Some(&idem("c2dt-1", 1)), "steppe", &aigerim, amount(4_000_00)).unwrap(), to_dt);
    assert_eq!(
        platform.credit_correspondent(Some(&idem("rtgs-1", 1)), "steppe", amount(1_000_000_00)).unwrap(),
        credit
    );
    assert_reconciles(&platform);
    platform.shutdown();
}

#[test]
fn transfers_registries_and_client_signed_transfers_pay_across_banks_once_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path(), Arc::new(ManualClock::new(MONDAY_MS)));
    fund(&platform, "steppe", 1_000_000_00);
    fund(&platform, "sapa", 1_000_000_00);
    let (aigerim, bolat, erlan, company) = (id("90010130000"), id("85020240001"), id("92040460001"), id("10014000000"));
    let person = |c: &str, n: &str, p| account(ClientKind::Individual, c, n, p);
    platform.open_account(None, "steppe", person(&aigerim, "Aigerim Seitova", Some("+77011234567"))).unwrap();
    platform.open_account(None, "sapa", person(&bolat, "Bolat Nurlanov", Some("+77019876543"))).unwrap();
    platform.open_account(None, "steppe", person(&erlan, "Erlan Sadykov", None)).unwrap();
    platform
        .open_account(None, "steppe", account(ClientKind::LegalEntity, &company, "Steppe Foods LLP", None))
        .unwrap();
    for client in [&aigerim, &company] {
        platform.deposit_fiat(None, "steppe", client, amount(50_000_00)).unwrap();
        platform.convert_to_dt(None, "steppe", client, amount(50_000_00)).unwrap();
    }

    // By phone to another bank, with a reference: a phone transfer in the payer's history.
    let mut by_phone = transfer(&aigerim, to_phone("+7 701 987 65 43"), 1_500_00);
    by_phone.reference = Some("dinner".into());
    let phone_receipt = platform.transfer(Some(&idem("t-1", 1)), "steppe", by_phone.clone()).unwrap();
    let receipt = phone_receipt.clone();
    assert_eq!((receipt.purpose, receipt.amount_tiyn), (Purpose::PhoneTransfer, tiyn(1_500_00)));
    let payee = receipt.to.clone().unwrap();
    assert_eq!((payee.bank.as_str(), payee.client_id.as_str()), ("sapa", bolat.as_str()));
    assert_eq!(receipt.from.as_ref().unwrap().client_id, aigerim);
    assert_eq!(platform.transfer(Some(&idem("t-1", 1)), "steppe", by_phone.clone()).unwrap(), receipt);
    let reused = platform
        .transfer(Some(&idem("t-1", 2)), "steppe", transfer(&aigerim, to_phone("+77019876543"), 1))
        .unwrap_err();
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!((dt(&platform, "steppe", &aigerim), dt(&platform, "sapa", &bolat)), (48_500_00, 1_500_00));
    let line = &platform.history("steppe", &aigerim, 0, 1).unwrap().lines[0];
    assert_eq!(
        (line.tx_id, line.purpose, line.reference.as_deref()),
        (receipt.tx_id, Purpose::PhoneTransfer, Some("dinner"))
    );
    assert_eq!(line.counterparty_bank.as_deref(), Some("Sapa Bank"));

    // By client id at a bank, and by address (to a client of the same bank): payments.
    let by_id = Payee { client_id: Some(bolat.clone()), bank: Some("sapa".into()), ..Payee::default() };
    let receipt = platform.transfer(None, "steppe", transfer(&aigerim, by_id, 500_00)).unwrap();
    assert_eq!((receipt.purpose, receipt.to.unwrap().client_id), (Purpose::Payment, bolat.clone()));
    let erlan_address = platform.account_view("steppe", &erlan).unwrap().account.address;
    let mut by_address = transfer(&aigerim, Payee { address: Some(erlan_address), ..Payee::default() }, 250_00);
    by_address.reference = Some("книги".into());
    platform.transfer(None, "steppe", by_address).unwrap();
    let line = &platform.history("steppe", &erlan, 0, 1).unwrap().lines[0];
    assert_eq!((line.purpose, line.reference.as_deref()), (Purpose::Payment, Some("книги")));
    assert_eq!(line.counterparty_name.as_deref(), Some("Aigerim Seitova"));
    assert_eq!((dt(&platform, "steppe", &aigerim), dt(&platform, "sapa", &bolat)), (47_750_00, 2_000_00));

    // Refusals, in the network's words and codes; nothing moves.
    let own_address = platform.account_view("sapa", OWN_ACCOUNT).unwrap().account.address;
    let both = Payee { phone: Some("+77019876543".into()), client_id: Some(bolat.clone()), ..Payee::default() };
    let mut long = transfer(&aigerim, to_phone("+77019876543"), 1);
    long.reference = Some("x".repeat(REFERENCE_LEN_MAX + 1));
    let refusals = [
        (transfer(&aigerim, to_phone("+77019876543"), 0), ErrorCode::MalformedInput),
        (long, ErrorCode::MalformedInput),
        (transfer(OWN_ACCOUNT, to_phone("+77019876543"), 1), ErrorCode::Forbidden),
        (transfer(&aigerim, to_phone("+77000000000"), 1), ErrorCode::UnknownAccount),
        (transfer(&aigerim, to_phone("12"), 1), ErrorCode::MalformedInput),
        (
            transfer(&aigerim, Payee { bank: Some("tulpar".into()), ..to_phone("+77019876543") }, 1),
            ErrorCode::UnknownAccount,
        ),
        (transfer(&aigerim, both, 1), ErrorCode::MalformedInput),
        (transfer(&aigerim, Payee::default(), 1), ErrorCode::MalformedInput),
        (transfer(&aigerim, Payee { address: Some(own_address), ..Payee::default() }, 1), ErrorCode::Forbidden),
        (transfer(&aigerim, to_phone("+77011234567"), 1), ErrorCode::MalformedInput),
        (transfer(&aigerim, to_phone("+77019876543"), 47_750_01), ErrorCode::InsufficientFunds),
        (transfer(&id("93050570001"), to_phone("+77019876543"), 1), ErrorCode::UnknownAccount),
        (transfer(&aigerim, Payee { client_id: Some("123".into()), ..Payee::default() }, 1), ErrorCode::MalformedInput),
    ];
    for (request, code) in refusals {
        let refused = platform.transfer(Some(&idem("refused", 9)), "steppe", request.clone()).unwrap_err();
        assert_eq!(refused.code, code, "{request:?}: {}", refused.message);
    }
    let unknown_bank = platform.transfer(None, "nowhere", transfer(&aigerim, to_phone("+77019876543"), 1)).unwrap_err();
    assert_eq!(unknown_bank.code, ErrorCode::UnknownAccount);
    assert_eq!((dt(&platform, "steppe", &aigerim), dt(&platform, "sapa", &bolat)), (47_750_00, 2_000_00));

    // A registry: good lines paid in one transaction, bad ones reported.
    let line = |phone: Option<&str>, client: Option<&str>, bank: Option<&str>, n| RegistryLine {
        phone: phone.map(str::to_string),
        client_id: client.map(str::to_string),
        bank: bank.map(str::to_string),
        amount_tiyn: tiyn(n),
    };
    let registry = RegistryRequest {
        from: company.clone(),
        reference: Some("payroll 2026-12".into()),
        lines: vec![
            line(Some("+77019876543"), None, None, 1_000_00),
            line(None, Some(&erlan), Some("steppe"), 2_000_00),
            line(Some("+77000000000"), None, None, 3_000_00),
            line(None, Some(&erlan), None, 0),
            line(None, Some(&company), None, 10_00),
        ],
    };
    let report = platform.distribute_registry(Some(&idem("reg-1", 1)), "steppe", registry.clone()).unwrap();
    assert_eq!((report.lines_total, report.lines_paid, report.lines_rejected), (5, 2, 3));
    assert_eq!(report.amount_paid_tiyn, tiyn(3_000_00));
    let codes: Vec<Option<ErrorCode>> = report.results.iter().map(|r| r.error_code).collect();
    let expected =
        [None, None, Some(ErrorCode::UnknownAccount), Some(ErrorCode::MalformedInput), Some(ErrorCode::Forbidden)];
    assert_eq!(codes, expected);
    assert_eq!(report.results[0].recipient.as_ref().unwrap().bank, "sapa");
    let again = platform.distribute_registry(Some(&idem("reg-1", 1)), "steppe", registry.clone()).unwrap();
    assert_eq!(format!("{again:?}"), format!("{report:?}"));
    let first_report = report.clone();
    assert_eq!((dt(&platform, "steppe", &company), dt(&platform, "sapa", &bolat)), (47_000_00, 3_000_00));
    let paid = &platform.history("steppe", &company, 0, 1).unwrap().lines[0];
    assert_eq!((paid.purpose, paid.reference.as_deref()), (Purpose::RegistryDistribution, Some("payroll 2026-12")));
    let refused = [
        (RegistryRequest { from: aigerim.clone(), ..registry.clone() }, ErrorCode::Forbidden),
        (RegistryRequest { lines: vec![], ..registry.clone() }, ErrorCode::MalformedInput),
        (
            RegistryRequest { lines: vec![registry.lines[0].clone(); 16_001], ..registry.clone() },
            ErrorCode::LimitExceeded,
        ),
        (
            RegistryRequest { reference: Some("x".repeat(REFERENCE_LEN_MAX + 1)), ..registry.clone() },
            ErrorCode::MalformedInput,
        ),
        (RegistryRequest { from: id("93050570001"), ..registry.clone() }, ErrorCode::UnknownAccount),
        (
            RegistryRequest { lines: vec![line(Some("+77019876543"), None, None, 47_000_01)], ..registry.clone() },
            ErrorCode::InsufficientFunds,
        ),
    ];
    for (request, code) in refused {
        assert_eq!(platform.distribute_registry(None, "steppe", request).unwrap_err().code, code);
    }
    // No line passes: nothing paid, no transaction.
    let none = RegistryRequest { lines: vec![line(Some("+77000000000"), None, None, 1)], ..registry.clone() };
    let report = platform.distribute_registry(None, "steppe", none).unwrap();
    assert_eq!((report.tx_id, report.lines_paid, report.lines_rejected), (None, 0, 1));
    // The bank pays out of its own DT too.
    let own = RegistryRequest {
        from: OWN_ACCOUNT.into(),
        reference: None,
        lines: vec![line(None, Some(&erlan), None, 5_00)],
    };
    assert!(platform.distribute_registry(None, "steppe", own).unwrap().tx_id.is_some());
    assert_eq!(dt(&platform, "steppe", &erlan), 2_255_00);

    // A client who keeps its own key: paid by address, it signs and submits its own transfer.
    let dana_key = SecretKey::from_seed([21; 32]);
    let dana = id("91030350001");
    let mut own_key = account(ClientKind::Individual, &dana, "Dana Omarova", None);
    own_key.public_key = Some(dana_key.public_key());
    platform.open_account(None, "tulpar", own_key).unwrap();
    let to_dana = Payee { address: Some(dana_key.address()), ..Payee::default() };
    platform.transfer(None, "steppe", transfer(&aigerim, to_dana, 700_00)).unwrap();
    let tokens = platform.spendable_tokens("tulpar", &dana).unwrap();
    assert_eq!(tokens.iter().map(|t| t.output.amount_tiyn.tiyn()).sum::<u64>(), 700_00);
    assert_eq!(platform.all_tokens("tulpar", &dana).unwrap(), tokens);
    assert_eq!(platform.spendable_tokens("tulpar", &id("93050570001")).unwrap_err().code, ErrorCode::UnknownAccount);
    let issuer = platform.assembly().central().issuer();
    let bolat_address = platform.account_view("sapa", &bolat).unwrap().account.address;
    let signed = |to, n: u64, nonce| {
        let outputs =
            vec![Output::standard(tiyn(n), to, issuer), Output::standard(tiyn(700_00 - n), dana_key.address(), issuer)];
        let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs: tokens.clone(), outputs, nonce });
        tx.sign_owner(&dana_key);
        tx
    };
    let tx = signed(bolat_address, 300_00, 0);
    let receipt = platform.submit(Some(&idem("s-1", 1)), "tulpar", tx.clone()).unwrap();
    assert_eq!((receipt.tx_id, receipt.purpose, receipt.amount_tiyn), (tx.id(), Purpose::Payment, tiyn(300_00)));
    assert_eq!(receipt.from.as_ref().unwrap().client_id, dana);
    assert_eq!(receipt.to.as_ref().unwrap().client_id, bolat);
    assert!(platform.is_committed(&tx.id()).unwrap());
    // The same transaction again (its answer was lost): the same transaction, paid once.
    assert_eq!(platform.submit(None, "tulpar", tx.clone()).unwrap().tx_id, tx.id());
    assert_eq!(platform.submit(Some(&idem("s-1", 1)), "tulpar", tx.clone()).unwrap().tx_id, tx.id());
    assert_eq!((dt(&platform, "tulpar", &dana), dt(&platform, "sapa", &bolat)), (400_00, 3_300_00));
    // Its tokens spent: another transaction spending them is refused; a forged signature too;
    // a bank's own account is paid through conversion.
    assert!(platform.submit(None, "tulpar", signed(bolat_address, 100_00, 1)).is_err());
    let fresh = platform.spendable_tokens("tulpar", &dana).unwrap();
    let mut forged = Transaction::new(TxBody {
        command: Command::Transfer,
        inputs: fresh.clone(),
        outputs: vec![Output::standard(tiyn(400_00), bolat_address, issuer)],
        nonce: 0,
    });
    forged.sign_owner(&dana_key);
    forged.witnesses[0].signature.sig.0[0] ^= 1;
    assert_eq!(platform.submit(None, "tulpar", forged).unwrap_err().code, ErrorCode::InvalidSignature);
    let mut to_own = Transaction::new(TxBody {
        command: Command::Transfer,
        inputs: fresh,
        outputs: vec![Output::standard(tiyn(400_00), own_address, issuer)],
        nonce: 0,
    });
    to_own.sign_owner(&dana_key);
    assert_eq!(platform.submit(None, "tulpar", to_own).unwrap_err().code, ErrorCode::Forbidden);
    // Clients submit transfers, which spend something.
    let outputs = vec![Output::standard(tiyn(1_00), dana_key.address(), issuer)];
    let issue =
        Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs: outputs.clone(), nonce: 1 });
    assert_eq!(platform.submit(None, "tulpar", issue).unwrap_err().code, ErrorCode::Forbidden);
    let nothing = Transaction::new(TxBody { command: Command::Transfer, inputs: vec![], outputs, nonce: 1 });
    assert_eq!(platform.submit(None, "tulpar", nothing).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(dt(&platform, "tulpar", &dana), 400_00);

    // Asked again after everything moved on (the payer could not pay it now): the first answers.
    platform
        .transfer(None, "steppe", transfer(&aigerim, to_phone("+77019876543"), dt(&platform, "steppe", &aigerim)))
        .unwrap();
    assert_eq!(platform.transfer(Some(&idem("t-1", 1)), "steppe", by_phone).unwrap(), phone_receipt);
    let again = platform.distribute_registry(Some(&idem("reg-1", 1)), "steppe", registry).unwrap();
    assert_eq!(format!("{again:?}"), format!("{first_report:?}"));

    assert!(platform.committed_transactions() >= 10);
    assert_reconciles(&platform);
    platform.shutdown();
}

#[test]
fn a_blocked_bank_neither_pays_nor_is_paid_nor_converts_and_its_block_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path(), Arc::new(ManualClock::new(MONDAY_MS)));
    fund(&platform, "steppe", 100_000_00);
    fund(&platform, "sapa", 100_000_00);
    let (aigerim, bolat) = (id("90010130000"), id("85020240001"));
    let person = |c: &str, n: &str, p| account(ClientKind::Individual, c, n, p);
    platform.open_account(None, "steppe", person(&aigerim, "Aigerim Seitova", Some("+77011234567"))).unwrap();
    platform.open_account(None, "sapa", person(&bolat, "Bolat Nurlanov", Some("+77019876543"))).unwrap();
    platform.deposit_fiat(None, "steppe", &aigerim, amount(5_000_00)).unwrap();
    platform.convert_to_dt(None, "steppe", &aigerim, amount(5_000_00)).unwrap();
    platform.deposit_fiat(None, "sapa", &bolat, amount(5_000_00)).unwrap();
    platform.convert_to_dt(None, "sapa", &bolat, amount(5_000_00)).unwrap();

    // Bank money to convert, so that only the block stands in the way.
    platform.deposit_fiat(None, "steppe", &aigerim, amount(1_00)).unwrap();
    let central = platform.assembly().central();
    central.set_blocked("steppe", true, "audit", platform.now_ms()).unwrap();
    platform.assembly().settle(Duration::from_secs(10)).unwrap();
    let codes = [
        platform.transfer(None, "steppe", transfer(&aigerim, to_phone("+77019876543"), 1_00)).map(|_| ()),
        platform.transfer(None, "sapa", transfer(&bolat, to_phone("+77011234567"), 1_00)).map(|_| ()),
        platform.convert_to_dt(None, "steppe", &aigerim, amount(1_00)).map(|_| ()),
        platform.convert_from_dt(None, "steppe", &aigerim, amount(1_00)).map(|_| ()),
        platform.emission(None, "steppe", amount(1_00)).map(|_| ()),
        platform.redemption(None, "steppe", amount(1_00)).map(|_| ()),
    ]
    .map(|r| r.map_err(|e| e.code));
    assert_eq!(codes, [Err(ErrorCode::BankBlocked); 6]);
    assert_eq!((dt(&platform, "steppe", &aigerim), dt(&platform, "sapa", &bolat)), (5_000_00, 5_000_00));
    assert_reconciles(&platform);

    central.set_blocked("steppe", false, "", platform.now_ms()).unwrap();
    platform.assembly().settle(Duration::from_secs(10)).unwrap();
    platform.transfer(None, "steppe", transfer(&aigerim, to_phone("+77019876543"), 1_00)).unwrap();
    platform.transfer(None, "sapa", transfer(&bolat, to_phone("+77011234567"), 2_00)).unwrap();
    assert_eq!((dt(&platform, "steppe", &aigerim), dt(&platform, "sapa", &bolat)), (5_001_00, 4_999_00));
    assert_reconciles(&platform);
    platform.shutdown();
}

/// The network's regression: circulation above the largest amount used to brick monitoring,
/// blocking and restart.
#[test]
fn emission_cannot_push_circulation_past_the_largest_amount() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path(), Arc::new(ManualClock::new(MONDAY_MS)));
    let max = Amount::MAX.tiyn();
    platform.credit_correspondent(None, "steppe", amount(max)).unwrap();
    platform.emission(None, "steppe", amount(max)).unwrap();
    platform.credit_correspondent(None, "tulpar", amount(max)).unwrap();
    let refused = platform.emission(None, "tulpar", amount(1)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::LimitExceeded, "{refused}");
    let over = platform.credit_correspondent(None, "tulpar", amount(1)).unwrap_err();
    assert_eq!(over.code, ErrorCode::LimitExceeded, "{over}");
    assert_reconciles(&platform);
    platform.shutdown();
    let platform = open(dir.path(), Arc::new(ManualClock::new(MONDAY_MS)));
    assert_reconciles(&platform);
    platform.shutdown();
}

/// A conversion to bank money beyond the largest balance is refused, as the network refused
/// it, before anything moves.
#[test]
fn a_conversion_cannot_push_bank_money_past_the_largest_amount() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path(), Arc::new(ManualClock::new(MONDAY_MS)));
    fund(&platform, "steppe", 1_000_00);
    let aigerim = id("90010130000");
    platform.open_account(None, "steppe", account(ClientKind::Individual, &aigerim, "Aigerim Seitova", None)).unwrap();
    platform.deposit_fiat(None, "steppe", &aigerim, amount(100_00)).unwrap();
    platform.convert_to_dt(None, "steppe", &aigerim, amount(100_00)).unwrap();
    platform.deposit_fiat(None, "steppe", &aigerim, amount(Amount::MAX.tiyn() - 50_00)).unwrap();
    let refused = platform.convert_from_dt(None, "steppe", &aigerim, amount(60_00)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::LimitExceeded, "{refused}");
    platform.convert_from_dt(None, "steppe", &aigerim, amount(50_00)).unwrap();
    assert_eq!((dt(&platform, "steppe", &aigerim), fiat(&platform, "steppe", &aigerim)), (50_00, Amount::MAX.tiyn()));
    assert_reconciles(&platform);
    platform.shutdown();
}

/// The demo's payroll: ten thousand lines to a thousand people at three banks, paid in one
/// transaction, the bad lines reported.
#[test]
fn a_registry_of_ten_thousand_lines_pays_in_one_transaction() {
    const RECIPIENTS: u64 = 1_000;
    const LINES: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path(), Arc::new(ManualClock::new(MONDAY_MS)));
    fund(&platform, "steppe", 100_000_000_00);
    let employer = id("10014000000");
    platform
        .open_account(None, "steppe", account(ClientKind::LegalEntity, &employer, "Steppe Foods LLP", None))
        .unwrap();
    let phone = |n: u64| format!("+7702{n:07}");
    for (b, bank) in ["steppe", "tulpar", "sapa"].into_iter().enumerate() {
        let people: Vec<OpenAccount> = (1..=RECIPIENTS)
            .filter(|n| n % 3 == b as u64)
            .map(|n| {
                account(ClientKind::Individual, &id(&format!("9{n:09}")), &format!("Employee {n}"), Some(&phone(n)))
            })
            .collect();
        platform.open_accounts(None, bank, people).unwrap();
    }
    let per_line = 1_500_00;
    platform.deposit_fiat(None, "steppe", &employer, amount(per_line * LINES)).unwrap();
    platform.convert_to_dt(None, "steppe", &employer, amount(per_line * LINES)).unwrap();
    let mut lines: Vec<RegistryLine> = (0..LINES - 2)
        .map(|i| RegistryLine {
            phone: Some(phone(i % RECIPIENTS + 1)),
            client_id: None,
            bank: None,
            amount_tiyn: tiyn(per_line),
        })
        .collect();
    lines.push(RegistryLine {
        phone: Some("+77999999999".into()),
        client_id: None,
        bank: None,
        amount_tiyn: tiyn(per_line),
    });
    lines.push(RegistryLine {
        phone: None,
        client_id: Some(id("9000000001")),
        bank: Some("tulpar".into()),
        amount_tiyn: tiyn(0),
    });
    let request = RegistryRequest { from: employer.clone(), reference: Some("payroll 2026-11".into()), lines };
    let report = platform.distribute_registry(Some(&idem("payroll", 1)), "steppe", request).unwrap();
    assert_eq!((report.lines_paid, report.lines_rejected), (LINES as usize - 2, 2));
    let codes = (report.results[9998].error_code, report.results[9999].error_code);
    assert_eq!(codes, (Some(ErrorCode::UnknownAccount), Some(ErrorCode::MalformedInput)));
    // Employee 1 (at tulpar) is on every thousandth line.
    assert_eq!(dt(&platform, "tulpar", &id("9000000001")), per_line * (LINES / RECIPIENTS));
    assert_eq!(dt(&platform, "steppe", &employer), per_line * 2);
    assert_reconciles(&platform);
    platform.shutdown();
}
