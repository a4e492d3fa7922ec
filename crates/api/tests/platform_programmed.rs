//! The platform's cards, vouchers and programmed money on the roles: the gateway's calls with
//! the network's answers (purchases, receipts, markings, invoices, contracts, split
//! payments), built from the roles' answers and records, on real stores; refusals change
//! nothing, retries with the same key pay once, and the checks across roles hold at the end.

use dtenge_api::platform::Idem;
use dtenge_api::platform::Platform;
use dtenge_api::types::{
    AmountRequest, AtmWithdrawal, CardMode, CardPurchaseRequest, ContractPaymentRequest, ContractRequest,
    ContractWithdrawalRequest, InvoicePaymentRequest, InvoiceRequest, InvoiceStatus, LevelRequest, LinkCard,
    MarkedTransferRequest, MarkingRequest, NotificationKind, OpenAccount, PartyRef, Payee, SplitLine,
    SplitPaymentRequest, UseKind, VatPaymentRequest, VoucherEvent, VoucherProgramRequest,
};
use dtenge_bank::Request;
use dtenge_core::crypto::Hash32;
use dtenge_core::money::Amount;
use dtenge_core::token::Policy;
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::{complete_iin_bin, complete_pan, mask_pan};
use dtenge_node::{ClientKind, Purpose, OWN_ACCOUNT};
use dtenge_oracle::ProviderKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;
const WAIT: Duration = Duration::from_secs(30);
const ESF: &str = "esf-token-0123456789abcdef0123456789abcdef";
const PORTAL: &str = "portal-token-0123456789abcdef0123456789ab";

fn open(dir: &Path) -> Platform {
    Platform::open(dir, Arc::new(ManualClock::new(MONDAY_MS)), Entropy::from_seed(7)).unwrap()
}

fn idem(key: &str) -> Option<Idem> {
    Some(Idem { key: key.into(), fingerprint: Hash32([1; 32]) })
}

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

/// A valid IIN/BIN from its first 10 digits.
fn id(prefix: &str) -> String {
    (0..10).find_map(|d| complete_iin_bin(&format!("{}{d}", &prefix[..10]))).unwrap()
}

fn pan(n: u64) -> String {
    complete_pan(&format!("440000{n:09}")).unwrap()
}

/// A custodial client of `bank`; its client id.
fn client(platform: &Platform, bank: &str, prefix: &str, kind: ClientKind) -> String {
    let request =
        OpenAccount { kind, client_id: id(prefix), name: format!("Client {prefix}"), phone: None, public_key: None };
    platform.open_account(None, bank, request).unwrap().client_id
}

/// Give a client `amount` of standard DT: emitted to its bank, paid from the bank's own.
fn give(platform: &Platform, bank: &str, client_id: &str, amount: Amount) {
    platform.assembly().fund(bank, amount, WAIT).unwrap();
    let address = platform.account_view(bank, client_id).unwrap().account.address;
    let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(address, amount)] };
    platform.assembly().bank(bank).unwrap().submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
}

fn dt(platform: &Platform, bank: &str, client_id: &str, policy: Policy) -> Amount {
    platform.assembly().bank(bank).unwrap().service().read(|node| node.available(client_id, &policy).unwrap())
}

fn settled(platform: &Platform) {
    platform.assembly().settle_cards(WAIT).unwrap();
    assert_eq!(platform.assembly().reconcile(), Vec::<String>::new());
}

fn at(bank: &str, client_id: &str) -> PartyRef {
    PartyRef { bank: bank.into(), client_id: client_id.into() }
}

fn buy(card: &str, merchant_bank: &str, merchant: &str, amount: u64, mode: CardMode) -> CardPurchaseRequest {
    CardPurchaseRequest {
        pan: card.into(),
        merchant_bank: merchant_bank.into(),
        merchant_id: merchant.into(),
        amount_tiyn: tiyn(amount),
        mode,
    }
}

fn amount(n: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: tiyn(n) }
}

#[test]
fn cards_pay_refund_and_cash_out_and_vouchers_pay_once_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    for bank in ["steppe", "tulpar", "sapa"] {
        platform.assembly().fund(bank, tiyn(100_000_00), WAIT).unwrap();
        platform.assembly().central().credit_correspondent(bank, tiyn(50_000_00), platform.now_ms()).unwrap();
    }
    let buyer = client(&platform, "steppe", "9001013000", ClientKind::Individual);
    let shop = client(&platform, "sapa", "1001400000", ClientKind::LegalEntity);
    let person = client(&platform, "sapa", "8502024000", ClientKind::Individual);
    give(&platform, "steppe", &buyer, tiyn(10_000_00));

    // Linking: once per card; a retry with its key answers the same; bad input refused.
    let card = pan(1);
    let link = || LinkCard { client_id: buyer.clone(), pan: card.clone() };
    assert_eq!(platform.link_card(idem("link-1").as_ref(), "steppe", link()).unwrap(), mask_pan(&card));
    assert_eq!(platform.link_card(idem("link-1").as_ref(), "steppe", link()).unwrap(), mask_pan(&card));
    assert!(platform.link_card(None, "steppe", link()).is_err(), "linked already");
    let elsewhere = LinkCard { client_id: person.clone(), pan: card.clone() };
    assert_eq!(platform.link_card(None, "sapa", elsewhere).unwrap_err().code, ErrorCode::DuplicateAccount);
    let last = card.bytes().last().unwrap() - b'0';
    let luhn_broken = format!("{}{}", &card[..card.len() - 1], (last + 1) % 10);
    let bad = LinkCard { client_id: buyer.clone(), pan: luhn_broken };
    assert_eq!(platform.link_card(None, "steppe", bad).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.link_card(None, "nowhere", link()).unwrap_err().code, ErrorCode::UnknownAccount);

    // A DT purchase at Sapa's merchant; the terminal retries with its key: paid once.
    let bought = platform.card_purchase(idem("pos-1").as_ref(), buy(&card, "sapa", &shop, 349_900, CardMode::Dt));
    let bought = bought.unwrap();
    let again = platform.card_purchase(idem("pos-1").as_ref(), buy(&card, "sapa", &shop, 349_900, CardMode::Dt));
    assert_eq!(again.unwrap().tx_id, bought.tx_id);
    // The same key for another request: refused, nothing paid.
    let reused = Idem { key: "pos-1".into(), fingerprint: Hash32([2; 32]) };
    let other = platform.card_purchase(Some(&reused), buy(&card, "sapa", &shop, 1_00, CardMode::Dt)).unwrap_err();
    assert_eq!(other.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!((bought.card.as_str(), bought.buyer.client_id.as_str()), (mask_pan(&card).as_str(), buyer.as_str()));
    assert_eq!((bought.merchant.bank.as_str(), bought.amount_tiyn), ("sapa", tiyn(349_900)));
    assert_eq!(platform.purchase(&bought.id).unwrap().tx_id, bought.tx_id, "the card's bank keeps it at once");
    // Refunded at once: the refund waits until the merchant's bank has the purchase.
    let quick = platform.card_purchase(None, buy(&card, "sapa", &shop, 1_00, CardMode::Dt)).unwrap();
    assert_eq!(platform.card_refund(None, &quick.id, amount(1_00)).unwrap().amount_tiyn, tiyn(1_00));
    let refused = [
        (buy(&card, "sapa", &shop, 0, CardMode::Dt), ErrorCode::MalformedInput),
        (buy(&pan(2), "sapa", &shop, 100, CardMode::Dt), ErrorCode::UnknownAccount),
        (buy(&card, "nowhere", &shop, 100, CardMode::Dt), ErrorCode::UnknownAccount),
        (buy(&card, "sapa", &person, 100, CardMode::Dt), ErrorCode::Forbidden),
    ];
    for (request, code) in refused {
        assert_eq!(platform.card_purchase(None, request).unwrap_err().code, code);
    }
    settled(&platform);
    assert_eq!(dt(&platform, "steppe", &buyer, Policy::Standard), tiyn(650_100), "paid once");
    assert_eq!(dt(&platform, "sapa", &shop, Policy::Standard), tiyn(349_900));

    // Refunds at the merchant's bank, never more than is left.
    let refund = platform.card_refund(idem("refund-1").as_ref(), &bought.id, amount(100_000)).unwrap();
    assert_eq!((refund.purpose, refund.amount_tiyn), (Purpose::CardRefund, tiyn(100_000)));
    assert_eq!(refund.from.as_ref().unwrap().client_id, shop);
    assert_eq!(refund.to.as_ref().unwrap().client_id, buyer);
    let retried = platform.card_refund(idem("refund-1").as_ref(), &bought.id, amount(100_000)).unwrap();
    assert_eq!(retried.tx_id, refund.tx_id, "refunded once");
    assert_eq!(platform.card_refund(None, &bought.id, amount(249_901)).unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(platform.card_refund(None, &bought.id, amount(0)).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.card_refund(None, "P-0000", amount(1)).unwrap_err().code, ErrorCode::NotFound);
    settled(&platform);
    let kept = platform.purchase(&bought.id).unwrap();
    assert_eq!((kept.refunded_tiyn, kept.refund_tx_ids.clone()), (tiyn(100_000), vec![refund.tx_id]));
    assert_eq!(platform.purchase("P-0000").unwrap_err().code, ErrorCode::NotFound);

    // Converted to the merchant's bank money; its refund is paid by the card's bank.
    let converted = platform.card_purchase(None, buy(&card, "sapa", &shop, 200_000, CardMode::ConvertToFiat)).unwrap();
    assert_eq!(converted.mode, CardMode::ConvertToFiat);
    settled(&platform);
    assert_eq!(platform.balance("sapa", &shop).unwrap().fiat_tiyn, tiyn(200_000));
    let back = platform.card_refund(idem("refund-2").as_ref(), &converted.id, amount(50_000)).unwrap();
    assert_eq!(back.from.as_ref().map(|p| (p.bank.as_str(), p.client_id.as_str())), Some(("steppe", OWN_ACCOUNT)));
    settled(&platform);
    let issued = platform.assembly().bank("steppe").unwrap().purchase(&converted.id).unwrap().unwrap();
    assert_eq!(issued.refund_tx_ids, vec![back.tx_id], "the payout the receipt names");
    assert_eq!(platform.balance("sapa", &shop).unwrap().fiat_tiyn, tiyn(150_000));
    assert_eq!(dt(&platform, "steppe", &buyer, Policy::Standard), tiyn(600_100));

    // At a merchant of the card's own bank: the bank pays the refund it owes itself.
    let grocer = client(&platform, "steppe", "1008400000", ClientKind::LegalEntity);
    let local = platform.card_purchase(None, buy(&card, "steppe", &grocer, 10_000, CardMode::ConvertToFiat)).unwrap();
    settled(&platform);
    let local_back = platform.card_refund(None, &local.id, amount(10_000)).unwrap();
    assert_eq!(platform.purchase(&local.id).unwrap().refund_tx_ids, vec![local_back.tx_id]);
    assert_eq!(platform.balance("steppe", &grocer).unwrap().fiat_tiyn, Amount::ZERO);
    settled(&platform);

    // Cash at another bank's ATM.
    let atm = |pan: &str, bank: &str, n| AtmWithdrawal { pan: pan.into(), atm_bank: bank.into(), amount_tiyn: tiyn(n) };
    let cash = platform.atm_withdrawal(idem("atm-1").as_ref(), atm(&card, "tulpar", 100)).unwrap();
    assert_eq!((cash.purpose, cash.to.as_ref().unwrap().client_id.as_str()), (Purpose::CashWithdrawal, OWN_ACCOUNT));
    let twice = platform.atm_withdrawal(idem("atm-1").as_ref(), atm(&card, "tulpar", 100)).unwrap();
    assert_eq!(twice.tx_id, cash.tx_id);
    assert_eq!(platform.atm_withdrawal(None, atm(&card, "tulpar", 0)).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.atm_withdrawal(None, atm(&pan(3), "tulpar", 1)).unwrap_err().code, ErrorCode::UnknownAccount);
    let broke = platform.atm_withdrawal(None, atm(&card, "tulpar", 100_000_000)).unwrap_err();
    assert_eq!(broke.code, ErrorCode::InsufficientFunds);
    settled(&platform);
    assert_eq!(dt(&platform, "steppe", &buyer, Policy::Standard), tiyn(600_000));

    // Vouchers: a school at Tulpar pays a canteen at Sapa once per event.
    let school = client(&platform, "tulpar", "1002400000", ClientKind::LegalEntity);
    give(&platform, "tulpar", &school, tiyn(1_000_00));
    let program = |payee: &str| VoucherProgramRequest {
        integrator: "onay".into(),
        payer_bank: "tulpar".into(),
        payer_id: school.clone(),
        payee_bank: "sapa".into(),
        payee_id: payee.into(),
        amount_per_event_tiyn: tiyn(450_00),
    };
    let created = platform.create_voucher_program(idem("prog-1").as_ref(), program(&shop)).unwrap();
    assert_eq!(created.id, "tulpar-V000001", "the programme's id names its bank");
    assert_eq!(platform.create_voucher_program(idem("prog-1").as_ref(), program(&shop)).unwrap().id, created.id);
    assert_eq!(platform.create_voucher_program(None, program(&person)).unwrap_err().code, ErrorCode::Forbidden);
    let nowhere = VoucherProgramRequest { payee_bank: "nowhere".into(), ..program(&shop) };
    assert_eq!(platform.create_voucher_program(None, nowhere).unwrap_err().code, ErrorCode::UnknownAccount);
    let no_payer = VoucherProgramRequest { payer_bank: "nowhere".into(), ..program(&shop) };
    assert_eq!(platform.create_voucher_program(None, no_payer).unwrap_err().code, ErrorCode::UnknownAccount);
    let free = VoucherProgramRequest { amount_per_event_tiyn: Amount::ZERO, ..program(&shop) };
    assert_eq!(platform.create_voucher_program(None, free).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.voucher_programs().iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![created.id.clone()]);
    let tap = |event: &str, integrator: &str| VoucherEvent {
        integrator: integrator.into(),
        event_id: event.into(),
        card: Some("pupil-17".into()),
    };
    let paid = platform.voucher_event(None, &created.id, tap("ev-1", "onay")).unwrap();
    assert_eq!((paid.purpose, paid.amount_tiyn), (Purpose::Voucher, tiyn(450_00)));
    assert_eq!(paid.to.as_ref().unwrap().client_id, shop);
    assert_eq!(platform.voucher_event(None, &created.id, tap("ev-1", "onay")).unwrap().tx_id, paid.tx_id);
    assert_eq!(platform.voucher_event(None, &created.id, tap("ev-2", "other")).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(platform.voucher_event(None, "V000001", tap("ev-2", "onay")).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(platform.voucher_event(None, &created.id, tap("", "onay")).unwrap_err().code, ErrorCode::MalformedInput);
    settled(&platform);
    assert_eq!(dt(&platform, "tulpar", &school, Policy::Standard), tiyn(550_00), "one event paid once");
    platform.shutdown();

    // After a restart: the purchases, the programme and its paid event.
    let platform = open(dir.path());
    assert_eq!(platform.purchase(&bought.id).unwrap().refunded_tiyn, tiyn(100_000));
    assert_eq!(platform.voucher_programs().len(), 1);
    assert_eq!(platform.voucher_event(None, &created.id, tap("ev-1", "onay")).unwrap().tx_id, paid.tx_id);
    settled(&platform);
    platform.shutdown();
}

#[test]
fn markings_vat_contracts_and_split_payments_answer_the_networks_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let assembly = platform.assembly();
    assembly.register_provider("esf", "E-invoice system (ESF)", ProviderKind::TaxAuthority, ESF).unwrap();
    assembly.register_provider("portal", "Smart-contract portal", ProviderKind::ContractPortal, PORTAL).unwrap();
    let committee = client(&platform, "treasury", "0007400013", ClientKind::GovernmentAgency);
    let tax = client(&platform, "treasury", "0008400013", ClientKind::GovernmentAgency);
    let contractor = client(&platform, "tulpar", "1003400000", ClientKind::LegalEntity);
    let sub = client(&platform, "sapa", "1004400000", ClientKind::LegalEntity);
    let outsider = client(&platform, "steppe", "1005400000", ClientKind::LegalEntity);
    give(&platform, "treasury", &committee, tiyn(1_000_00));

    // ---- marking by addresses ----
    let marking = MarkingRequest {
        initiator: committee.clone(),
        reference: "highway A-2: advance".into(),
        levels: vec![
            LevelRequest { recipients: vec![at("tulpar", &contractor)], limit_tiyn: tiyn(300_00) },
            LevelRequest { recipients: vec![at("sapa", &sub)], limit_tiyn: tiyn(200_00) },
        ],
    };
    let own = MarkingRequest { initiator: OWN_ACCOUNT.into(), ..marking.clone() };
    assert_eq!(platform.create_marking(None, "treasury", own).unwrap_err().code, ErrorCode::Forbidden);
    let unknown = MarkingRequest { initiator: id("9999999999"), ..marking.clone() };
    assert_eq!(platform.create_marking(None, "treasury", unknown).unwrap_err().code, ErrorCode::UnknownAccount);
    let view = platform.create_marking(idem("mark-1").as_ref(), "treasury", marking).unwrap();
    let marking_id = view.marking.id.clone();
    assert!(view.moves.is_empty());
    let transfer = |from: &str, to: PartyRef, n| MarkedTransferRequest {
        marking_id: marking_id.clone(),
        from: from.into(),
        to,
        amount_tiyn: tiyn(n),
    };
    let first = platform.marked_transfer(
        idem("mt-1").as_ref(),
        "treasury",
        transfer(&committee, at("tulpar", &contractor), 250_00),
    );
    let first = first.unwrap();
    assert_eq!((first.moved.body.tx_id, first.moved.body.to_level), (first.tx_id, 1));
    let retried = platform.marked_transfer(
        idem("mt-1").as_ref(),
        "treasury",
        transfer(&committee, at("tulpar", &contractor), 250_00),
    );
    assert_eq!(retried.unwrap().tx_id, first.tx_id, "moved once");
    let reused = Idem { key: "mt-1".into(), fingerprint: Hash32([2; 32]) };
    let other =
        platform.marked_transfer(Some(&reused), "treasury", transfer(&committee, at("tulpar", &contractor), 1_00));
    assert_eq!(other.unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    let outside = platform.marked_transfer(None, "tulpar", transfer(&contractor, at("steppe", &outsider), 1_00));
    assert_eq!(outside.unwrap_err().code, ErrorCode::RecipientNotAllowed);
    let over = platform.marked_transfer(None, "tulpar", transfer(&contractor, at("sapa", &sub), 200_01));
    assert_eq!(over.unwrap_err().code, ErrorCode::LimitExceeded);
    let down = platform.marked_transfer(None, "tulpar", transfer(&contractor, at("sapa", &sub), 200_00)).unwrap();
    assert!(down.moved.body.unmarked, "the last level receives standard DT");
    assert_eq!(down.marking.moved_tiyn, vec![tiyn(250_00), tiyn(200_00)]);
    let traced = platform.marking(&marking_id).unwrap();
    assert_eq!(traced.moves.len(), 2);
    assert_eq!(platform.marking("M-none").unwrap_err().code, ErrorCode::NotFound);
    let page = platform.markings(0, 10).unwrap();
    assert_eq!((page.total, page.markings[0].id.as_str()), (1, marking_id.as_str()));
    assert_eq!(platform.markings(0, 0).unwrap_err().code, ErrorCode::MalformedInput);
    assembly.settle(WAIT).unwrap();
    assert_eq!(dt(&platform, "sapa", &sub, Policy::Standard), tiyn(200_00));

    // ---- digital VAT ----
    assert_eq!(platform.set_tax_account(None, ESF, at("tulpar", &contractor)).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(platform.set_tax_account(None, PORTAL, at("treasury", &tax)).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(
        platform.set_tax_account(None, "no-such-token", at("treasury", &tax)).unwrap_err().code,
        ErrorCode::Unauthorized
    );
    assert_eq!(platform.set_tax_account(idem("tax-1").as_ref(), ESF, at("treasury", &tax)).unwrap().client_id, tax);
    for who in [at("tulpar", &contractor), at("sapa", &sub), at("steppe", &outsider)] {
        platform.register_vat_payer(None, ESF, who).unwrap();
    }
    assert_eq!(
        platform.register_vat_payer(None, ESF, at("sapa", &id("1006400000"))).unwrap_err().code,
        ErrorCode::UnknownAccount
    );
    assert_eq!(platform.vat_payers().len(), 3);
    give(&platform, "steppe", &outsider, tiyn(1_120_00));
    let invoice = |id: &str, seller: PartyRef, buyer: PartyRef, net, vat| InvoiceRequest {
        id: id.into(),
        seller,
        buyer,
        net_tiyn: tiyn(net),
        vat_tiyn: tiyn(vat),
    };
    let esf1 = || invoice("ESF-1", at("sapa", &sub), at("steppe", &outsider), 1_000_00, 120_00);
    platform.register_invoice(idem("esf-1").as_ref(), ESF, esf1()).unwrap();
    assert_eq!(platform.register_invoice(idem("esf-1").as_ref(), ESF, esf1()).unwrap().id, "ESF-1", "the same invoice");
    assert_eq!(platform.register_invoice(None, ESF, esf1()).unwrap_err().code, ErrorCode::Conflict);
    let changed = invoice("ESF-1", at("sapa", &sub), at("steppe", &outsider), 1_000_00, 100_00);
    assert_eq!(platform.register_invoice(idem("esf-1").as_ref(), ESF, changed).unwrap_err().code, ErrorCode::Conflict);
    let pay =
        |id: &str, n| InvoicePaymentRequest { invoice_id: id.into(), from: outsider.clone(), amount_tiyn: tiyn(n) };
    assert_eq!(
        platform.pay_invoice(None, "steppe", pay("ESF-1", 1_100_00)).unwrap_err().code,
        ErrorCode::InvoiceMismatch
    );
    assert_eq!(platform.pay_invoice(None, "steppe", pay("ESF-X", 1_120_00)).unwrap_err().code, ErrorCode::NotFound);
    let paid = platform.pay_invoice(idem("inv-1").as_ref(), "steppe", pay("ESF-1", 1_120_00)).unwrap();
    assert_eq!(paid.invoice.status, InvoiceStatus::Paid);
    assert_eq!((paid.vat_from_vat_tokens_tiyn, paid.vat_from_standard_tiyn), (Amount::ZERO, tiyn(120_00)));
    assert_eq!(platform.invoice("ESF-1").unwrap().paid_tx, Some(paid.tx_id));
    let again = platform.pay_invoice(idem("inv-1").as_ref(), "steppe", pay("ESF-1", 1_120_00)).unwrap();
    assert_eq!(again.tx_id, paid.tx_id, "paid once");
    assert_eq!(platform.pay_invoice(None, "steppe", pay("ESF-1", 1_120_00)).unwrap_err().code, ErrorCode::Conflict);
    assembly.settle(WAIT).unwrap();
    let vat = |n| VatPaymentRequest { from: sub.clone(), amount_tiyn: tiyn(n) };
    assert_eq!(platform.pay_vat(None, "sapa", vat(120_01)).unwrap_err().code, ErrorCode::InsufficientFunds);
    let vat_paid = platform.pay_vat(idem("vat-1").as_ref(), "sapa", vat(120_00)).unwrap();
    assert_eq!((vat_paid.payer.client_id.as_str(), vat_paid.amount_tiyn), (sub.as_str(), tiyn(120_00)));
    assert_eq!(platform.pay_vat(idem("vat-1").as_ref(), "sapa", vat(120_00)).unwrap().tx_id, vat_paid.tx_id);
    assert_eq!(platform.vat_payments().len(), 1);
    assembly.settle(WAIT).unwrap();
    assert_eq!(dt(&platform, "treasury", &tax, Policy::Standard), tiyn(120_00));

    // ---- contracts ----
    let contract = |number: &str, max, fiat, funded_by: Option<&str>| ContractRequest {
        number: number.into(),
        sender: at("treasury", &committee),
        recipient: at("tulpar", &contractor),
        max_transfer_tiyn: tiyn(max),
        max_fiat_tiyn: tiyn(fiat),
        valid_for_ms: 90 * 86_400_000,
        funded_by: funded_by.map(str::to_string),
    };
    assert_eq!(
        platform.register_contract(None, ESF, contract("GZ-1", 500_00, 100_00, None)).unwrap_err().code,
        ErrorCode::Forbidden
    );
    let forever = ContractRequest { valid_for_ms: 0, ..contract("GZ-1", 500_00, 100_00, None) };
    assert_eq!(platform.register_contract(None, PORTAL, forever).unwrap_err().code, ErrorCode::MalformedInput);
    let registered = platform.register_contract(idem("gz-1").as_ref(), PORTAL, contract("GZ-1", 500_00, 100_00, None));
    assert_eq!(registered.unwrap().contract.number, "GZ-1");
    let same = platform.register_contract(idem("gz-1").as_ref(), PORTAL, contract("GZ-1", 500_00, 100_00, None));
    assert_eq!(same.unwrap().contract.max_transfer_tiyn, tiyn(500_00));
    assert_eq!(
        platform.register_contract(None, PORTAL, contract("GZ-1", 500_00, 100_00, None)).unwrap_err().code,
        ErrorCode::Conflict
    );
    let use_of = |n| ContractPaymentRequest { contract: "GZ-1".into(), from: committee.clone(), amount_tiyn: tiyn(n) };
    assert_eq!(platform.contract_payment(None, "treasury", use_of(500_01)).unwrap_err().code, ErrorCode::LimitExceeded);
    let used = platform.contract_payment(idem("gz-pay").as_ref(), "treasury", use_of(300_00)).unwrap();
    assert_eq!((used.used.body.kind, used.used.body.tx_id), (UseKind::Transfer, used.tx_id));
    assert_eq!(
        platform.contract_payment(idem("gz-pay").as_ref(), "treasury", use_of(300_00)).unwrap().tx_id,
        used.tx_id
    );
    assembly.settle(WAIT).unwrap();
    let withdraw = |who: &str, n| ContractWithdrawalRequest {
        contract: "GZ-1".into(),
        client_id: who.into(),
        amount_tiyn: tiyn(n),
    };
    assert_eq!(
        platform.contract_withdrawal(None, "tulpar", withdraw(OWN_ACCOUNT, 1_00)).unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        platform.contract_withdrawal(None, "tulpar", withdraw(&contractor, 100_01)).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    let out = platform.contract_withdrawal(idem("gz-out").as_ref(), "tulpar", withdraw(&contractor, 100_00)).unwrap();
    assert_eq!((out.used.body.kind, out.contract.withdrawn_tiyn), (UseKind::Withdrawal, tiyn(100_00)));
    assert_eq!(
        platform.contract_withdrawal(idem("gz-out").as_ref(), "tulpar", withdraw(&contractor, 100_00)).unwrap().tx_id,
        out.tx_id
    );
    assert_eq!(platform.balance("tulpar", &contractor).unwrap().fiat_tiyn, tiyn(100_00));
    let kept = platform.contract("GZ-1").unwrap();
    assert_eq!((kept.contract.transferred_tiyn, kept.uses.len()), (tiyn(300_00), 2));
    assert_eq!(platform.contract("GZ-0").unwrap_err().code, ErrorCode::NotFound);

    // ---- split payments ----
    let line = |to: Payee, n| SplitLine { to, amount_tiyn: tiyn(n) };
    let by_id =
        |bank: &str, who: &str| Payee { client_id: Some(who.into()), bank: Some(bank.into()), ..Payee::default() };
    let split = |lines: Vec<SplitLine>, reference: Option<&str>| SplitPaymentRequest {
        from: outsider.clone(),
        lines,
        reference: reference.map(str::to_string),
    };
    give(&platform, "steppe", &outsider, tiyn(500_00));
    let lines = || vec![line(by_id("sapa", &sub), 300_00), line(by_id("treasury", &tax), 50_00)];
    let receipt = platform.split_payment(idem("split-1").as_ref(), "steppe", split(lines(), Some("taxi"))).unwrap();
    assert_eq!((receipt.total_tiyn, receipt.lines.len()), (tiyn(350_00), 2));
    assert_eq!(
        platform.split_payment(idem("split-1").as_ref(), "steppe", split(lines(), Some("taxi"))).unwrap().tx_id,
        receipt.tx_id
    );
    let refusals = [
        (split(vec![], None), ErrorCode::LimitExceeded),
        (split(vec![line(by_id("sapa", &sub), 0)], None), ErrorCode::MalformedInput),
        (split(vec![line(by_id("steppe", &outsider), 1_00)], None), ErrorCode::MalformedInput),
        (split(vec![line(by_id("sapa", &id("1007400000")), 1_00)], None), ErrorCode::UnknownAccount),
        (split(vec![line(Payee::default(), 1_00)], None), ErrorCode::MalformedInput),
        (split(lines(), Some(&"x".repeat(141))), ErrorCode::MalformedInput),
        (split(vec![line(by_id("sapa", &sub), 150_01)], None), ErrorCode::InsufficientFunds),
    ];
    for (request, code) in refusals {
        assert_eq!(platform.split_payment(None, "steppe", request).unwrap_err().code, code);
    }
    let own = SplitPaymentRequest { from: OWN_ACCOUNT.into(), ..split(lines(), None) };
    assert_eq!(platform.split_payment(None, "steppe", own).unwrap_err().code, ErrorCode::Forbidden);
    settled(&platform);
    assert_eq!(dt(&platform, "steppe", &outsider, Policy::Standard), tiyn(150_00), "paid once, refusals moved nothing");
    assert_eq!(
        dt(&platform, "sapa", &sub, Policy::Standard),
        tiyn(1_500_00),
        "200.00 marked, 1,000.00 net, 300.00 split"
    );
    // What the oracle told the banks, newest first: the initiator's of each marked move and
    // contract use, the seller's and the buyer's of the invoice paid; VAT payments tell no one.
    let told = |platform: &Platform, bank: &str| {
        let page = platform.notifications(bank, 0, 10).unwrap();
        let seen =
            page.notifications.iter().map(|n| (n.kind, n.client_id.clone(), n.subject_id.clone(), n.amount_tiyn));
        (page.total, seen.collect::<Vec<_>>())
    };
    let all_told = |platform: &Platform| {
        use NotificationKind::*;
        let by = |kind, who: &str, subject: &str, n| (kind, who.to_string(), subject.to_string(), tiyn(n));
        assert_eq!(
            told(platform, "treasury"),
            (
                4,
                vec![
                    by(ContractUse, &committee, "GZ-1", 100_00),
                    by(ContractUse, &committee, "GZ-1", 300_00),
                    by(MarkedTransfer, &committee, &marking_id, 200_00),
                    by(MarkedTransfer, &committee, &marking_id, 250_00),
                ]
            )
        );
        assert_eq!(told(platform, "sapa"), (1, vec![by(InvoicePaid, &sub, "ESF-1", 1_120_00)]));
        assert_eq!(told(platform, "steppe"), (1, vec![by(InvoicePaid, &outsider, "ESF-1", 1_120_00)]));
        assert_eq!(told(platform, "tulpar"), (0, vec![]));
    };
    all_told(&platform);
    platform.shutdown();

    // After a restart: the oracle's records, and the limits already used.
    let platform = open(dir.path());
    assert_eq!(platform.marking(&marking_id).unwrap().moves.len(), 2);
    assert_eq!(platform.invoice("ESF-1").unwrap().status, InvoiceStatus::Paid);
    assert_eq!(platform.contract("GZ-1").unwrap().uses.len(), 2);
    assert_eq!(platform.vat_payments().len(), 1);
    all_told(&platform);
    let more = platform.contract_payment(None, "treasury", use_of(200_01)).unwrap_err();
    assert_eq!(more.code, ErrorCode::LimitExceeded, "300.00 of 500.00 transferred already");
    settled(&platform);
    platform.shutdown();
}
