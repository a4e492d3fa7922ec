//! Cards and vouchers across the roles wired in one process, on real stores: each flow ends
//! with the checks across roles, every correspondent account and the merchant's bank money
//! moved exactly once, and the state surviving a restart.

use dtenge_assembly::{Assembly, AtmWithdrawal, CardPurchase, Config};
use dtenge_bank::{CardMode, IdemKey, Request, VoucherEvent, VoucherProgramRequest};
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_core::{Amount, ErrorCode};
use dtenge_node::{Account, ClientKind, OWN_ACCOUNT};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const BUYER: &str = "900101300001";
const MERCHANT: &str = "100140000002";
const BANKS: [&str; 3] = ["steppe", "sapa", "tulpar"];

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

fn start(dir: &std::path::Path) -> Assembly {
    Assembly::start(dir, &Config::standard([7; 32]), Arc::new(|| 1_700_000_000_000)).unwrap()
}

fn open(assembly: &Assembly, bank: &str, client_id: &str, kind: ClientKind, seed: u8) {
    let key = SecretKey::from_seed([seed; 32]);
    let account = Account {
        client_id: client_id.into(),
        node_id: bank.into(),
        kind,
        name: format!("Client {seed}"),
        phone: None,
        address: key.address(),
        opened_at_unix_ms: 0,
    };
    assembly.migrate_accounts(bank, vec![(account, dtenge_bank::AccountKey::Custodial(key))]).unwrap();
}

/// Every bank's correspondent account.
fn correspondents(assembly: &Assembly) -> BTreeMap<&'static str, i64> {
    BANKS.iter().map(|b| (*b, assembly.central().abs_balance(&format!("corr:{b}")))).collect()
}

fn dt(assembly: &Assembly, bank: &str, client: &str) -> Amount {
    assembly.bank(bank).unwrap().service().read(|node| node.balance(client).unwrap().dt_tiyn)
}

fn fiat(assembly: &Assembly, bank: &str, client: &str) -> Amount {
    assembly.bank(bank).unwrap().service().read(|node| node.balance(client).unwrap().fiat_tiyn)
}

fn pan(n: u64) -> String {
    dtenge_node::ids::complete_pan(&format!("440000{n:09}")).unwrap()
}

/// Every bank funded (DT and bank money at the NBK), Steppe's buyer with 10,000.00 DT and a card; a
/// merchant at `merchant_bank`.
fn shop(assembly: &Assembly, merchant_bank: &str) -> String {
    for bank in BANKS {
        assembly.fund(bank, tiyn(100_000_00), WAIT).unwrap();
        assembly.central().credit_correspondent(bank, tiyn(50_000_00), assembly.now_ms()).unwrap();
    }
    open(assembly, "steppe", BUYER, ClientKind::Individual, 1);
    open(assembly, merchant_bank, MERCHANT, ClientKind::LegalEntity, 2);
    let buyer = SecretKey::from_seed([1; 32]).address();
    let steppe = assembly.bank("steppe").unwrap();
    let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(buyer, tiyn(10_000_00))] };
    steppe.submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
    let card = pan(1);
    assert_eq!(assembly.link_card("steppe", BUYER, &card, WAIT).unwrap(), dtenge_node::ids::mask_pan(&card));
    card
}

fn purchase(card: &str, merchant_bank: &str, amount: u64, mode: CardMode) -> CardPurchase {
    CardPurchase {
        pan: card.into(),
        merchant_bank: merchant_bank.into(),
        merchant_id: MERCHANT.into(),
        amount: tiyn(amount),
        mode,
    }
}

fn settled(assembly: &Assembly) {
    assembly.settle_cards(WAIT).unwrap();
    assert_eq!(assembly.reconcile(), Vec::<String>::new());
    assert!(assembly.central().card_settlements_queued().is_empty());
}

#[test]
fn a_dt_card_purchase_pays_the_merchant_in_dt_and_refunds_go_back_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let card = shop(&assembly, "sapa");
    let before = correspondents(&assembly);
    let idem = IdemKey { key: "pos-1".into(), fingerprint: Hash32([1; 32]) };
    let bought = assembly.card_purchase(&purchase(&card, "sapa", 349_900, CardMode::Dt), Some(idem.clone()), WAIT);
    let bought = bought.unwrap();
    // The terminal retries: the same purchase, paid once.
    let again = assembly.card_purchase(&purchase(&card, "sapa", 349_900, CardMode::Dt), Some(idem), WAIT).unwrap();
    assert_eq!(again.id, bought.id);
    settled(&assembly);
    assert_eq!((dt(&assembly, "steppe", BUYER), dt(&assembly, "sapa", MERCHANT)), (tiyn(650_100), tiyn(349_900)));
    assert_eq!(assembly.purchase(&bought.id).unwrap(), bought, "the acquirer keeps the purchase");
    let refund = assembly.card_refund(&bought.id, tiyn(100_000), None, WAIT).unwrap();
    assert!(refund.committed.is_some());
    let over = assembly.card_refund(&bought.id, tiyn(249_901), None, WAIT).unwrap_err();
    assert_eq!(over.code, ErrorCode::Conflict);
    settled(&assembly);
    assert_eq!((dt(&assembly, "steppe", BUYER), dt(&assembly, "sapa", MERCHANT)), (tiyn(750_100), tiyn(249_900)));
    assert_eq!(assembly.purchase(&bought.id).unwrap().refunded, tiyn(100_000));
    let issued = assembly.bank("steppe").unwrap().purchase(&bought.id).unwrap().unwrap();
    assert_eq!(issued, assembly.purchase(&bought.id).unwrap(), "the issuer's record follows");
    assert_eq!(fiat(&assembly, "sapa", MERCHANT), Amount::ZERO);
    assert_eq!(correspondents(&assembly), before, "DT mode moves no bank money");
    let unlinked = assembly.card_purchase(&purchase(&pan(2), "sapa", 100, CardMode::Dt), None, WAIT).unwrap_err();
    assert_eq!(unlinked.code, ErrorCode::UnknownAccount);
}

#[test]
fn a_converted_card_purchase_and_its_refund_move_bank_money_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    let after;
    {
        let assembly = start(dir.path());
        let card = shop(&assembly, "sapa");
        let before = correspondents(&assembly);
        let own = dt(&assembly, "steppe", OWN_ACCOUNT);
        let bought =
            assembly.card_purchase(&purchase(&card, "sapa", 725_000, CardMode::ConvertToFiat), None, WAIT).unwrap();
        id = bought.id.clone();
        settled(&assembly);
        assert_eq!(fiat(&assembly, "sapa", MERCHANT), tiyn(725_000), "the merchant's bank money, once");
        assert_eq!(dt(&assembly, "sapa", MERCHANT), Amount::ZERO);
        assert_eq!(dt(&assembly, "steppe", OWN_ACCOUNT), own.checked_add(tiyn(725_000)).unwrap());
        let moved = correspondents(&assembly);
        assert_eq!(moved["steppe"], before["steppe"] - 725_000);
        assert_eq!(moved["sapa"], before["sapa"] + 725_000);
        assert_eq!(moved["tulpar"], before["tulpar"]);
        // A partial refund, asked twice under one key: the merchant is debited once, the
        // buyer paid back once from Steppe's own DT, the correspondents moved back once.
        let idem = IdemKey { key: "refund-1".into(), fingerprint: Hash32([2; 32]) };
        let refund = assembly.card_refund(&id, tiyn(225_000), Some(idem.clone()), WAIT).unwrap();
        assert_eq!(assembly.card_refund(&id, tiyn(225_000), Some(idem), WAIT).unwrap(), refund);
        settled(&assembly);
        assert_eq!(fiat(&assembly, "sapa", MERCHANT), tiyn(500_000));
        assert_eq!(dt(&assembly, "steppe", BUYER), tiyn(500_000));
        after = correspondents(&assembly);
        assert_eq!(after["steppe"], before["steppe"] - 500_000);
        assert_eq!(after["sapa"], before["sapa"] + 500_000);
        let issued = assembly.bank("steppe").unwrap().purchase(&id).unwrap().unwrap();
        assert_eq!((issued.refunded, issued.refund_tx_ids.len()), (tiyn(225_000), 1));
    }
    let assembly = start(dir.path());
    settled(&assembly);
    assert_eq!(correspondents(&assembly), after, "nothing moves again after a restart");
    assert_eq!(fiat(&assembly, "sapa", MERCHANT), tiyn(500_000));
    assert_eq!(dt(&assembly, "steppe", BUYER), tiyn(500_000));
    let over = assembly.card_refund(&id, tiyn(500_001), None, WAIT).unwrap_err();
    assert_eq!(over.code, ErrorCode::Conflict);
    assert_eq!(assembly.purchase(&id).unwrap().refunded, tiyn(225_000));
}

#[test]
fn a_converted_purchase_at_the_buyers_own_bank_moves_no_correspondent() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let card = shop(&assembly, "steppe");
    let before = correspondents(&assembly);
    let bought =
        assembly.card_purchase(&purchase(&card, "steppe", 40_000, CardMode::ConvertToFiat), None, WAIT).unwrap();
    settled(&assembly);
    assert_eq!(fiat(&assembly, "steppe", MERCHANT), tiyn(40_000));
    assembly.card_refund(&bought.id, tiyn(40_000), None, WAIT).unwrap();
    settled(&assembly);
    assert_eq!(fiat(&assembly, "steppe", MERCHANT), Amount::ZERO);
    assert_eq!(dt(&assembly, "steppe", BUYER), tiyn(10_000_00));
    assert_eq!(correspondents(&assembly), before);
    let record = assembly.purchase(&bought.id).unwrap();
    assert_eq!((record.refunded, record.refunds), (tiyn(40_000), 1), "counted once at one bank");
}

#[test]
fn an_atm_withdrawal_pays_the_card_banks_own_account_and_settles_another_banks_atm_once() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let card = shop(&assembly, "sapa");
    let before = correspondents(&assembly);
    let own = dt(&assembly, "steppe", OWN_ACCOUNT);
    let at = |bank: &str, amount| AtmWithdrawal { pan: card.clone(), atm_bank: bank.into(), amount: tiyn(amount) };
    assembly.atm_withdrawal(&at("tulpar", 20_000), None, WAIT).unwrap();
    assembly.atm_withdrawal(&at("steppe", 5_000), None, WAIT).unwrap();
    let unknown = assembly.atm_withdrawal(&at("nowhere", 5_000), None, WAIT).unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownAccount);
    settled(&assembly);
    assert_eq!(dt(&assembly, "steppe", BUYER), tiyn(975_000));
    assert_eq!(dt(&assembly, "steppe", OWN_ACCOUNT), own.checked_add(tiyn(25_000)).unwrap());
    let after = correspondents(&assembly);
    assert_eq!(after["steppe"], before["steppe"] - 20_000);
    assert_eq!(after["tulpar"], before["tulpar"] + 20_000);
    assert_eq!(after["sapa"], before["sapa"]);
}

#[test]
fn a_voucher_event_pays_the_canteen_once_per_event_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let school = "100140000045";
    let canteen = "100140000046";
    let first;
    {
        let assembly = start(dir.path());
        assembly.fund("steppe", tiyn(10_000_00), WAIT).unwrap();
        open(&assembly, "steppe", school, ClientKind::LegalEntity, 3);
        open(&assembly, "tulpar", canteen, ClientKind::LegalEntity, 4);
        let school_address = SecretKey::from_seed([3; 32]).address();
        let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(school_address, tiyn(5_000_00))] };
        assembly.bank("steppe").unwrap().submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
        let request = VoucherProgramRequest {
            integrator: "onay".into(),
            payer_id: school.into(),
            payee_bank: "tulpar".into(),
            payee_id: canteen.into(),
            amount_per_event: tiyn(1_200_00),
        };
        let program = assembly.create_voucher_program("steppe", &request, None).unwrap();
        assert_eq!(assembly.voucher_programs(), vec![program.clone()]);
        let event = VoucherEvent {
            program_id: program.id.clone(),
            integrator: "onay".into(),
            event_id: "tap-0001".into(),
            card: Some("9643 1044".into()),
        };
        first = assembly.voucher_event(event.clone(), WAIT).unwrap();
        assert_eq!(assembly.voucher_event(event, WAIT).unwrap(), first, "the same event pays once");
        let not_a_canteen = VoucherProgramRequest { payee_id: BUYER.into(), ..request };
        assert!(assembly.create_voucher_program("steppe", &not_a_canteen, None).is_err());
        assembly.settle_cards(WAIT).unwrap();
        assert_eq!(assembly.reconcile(), Vec::<String>::new());
    }
    let assembly = start(dir.path());
    let event = VoucherEvent {
        program_id: first.program_id.clone(),
        integrator: "onay".into(),
        event_id: "tap-0001".into(),
        card: None,
    };
    assert_eq!(assembly.voucher_event(event.clone(), WAIT).unwrap(), first, "the first receipt, after a restart");
    let second = assembly.voucher_event(VoucherEvent { event_id: "tap-0002".into(), ..event }, WAIT).unwrap();
    assert_ne!(second.tx_id, first.tx_id);
    assembly.settle_cards(WAIT).unwrap();
    assert_eq!(assembly.reconcile(), Vec::<String>::new());
    assert_eq!(dt(&assembly, "tulpar", canteen), tiyn(2_400_00));
    let events = assembly.voucher_events(&first.program_id).unwrap();
    assert_eq!(events.iter().map(|e| e.tx_id).collect::<Vec<_>>(), vec![first.tx_id, second.tx_id]);
    assert_eq!(dt(&assembly, "steppe", school), tiyn(2_600_00));
}
