//! Programmed money among the roles (SPEC §5.2 to §5.4), on real stores and their own
//! threads: markings down the tree, e-invoices with digital VAT, contracts, split payments.
//! Each flow goes bank -> oracle (plan) -> bank (build, write) -> oracle (attest) -> notary ->
//! oracle and payee banks (certified deliveries); the checks across roles hold at the end.

use dtenge_assembly::{Assembly, BankSpec, Config, ContractTerms, RoleKeys};
use dtenge_bank::{AccountKey, Request};
use dtenge_core::crypto::SecretKey;
use dtenge_core::token::{marking_hash, Policy};
use dtenge_core::{Amount, ErrorCode, Result};
use dtenge_node::{Account, ClientKind, NodeKind, OWN_ACCOUNT};
use dtenge_oracle::contract::contract_hash;
use dtenge_oracle::{InvoiceStatus, ProviderKind};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const NOW_MS: u64 = 1_700_000_000_000;

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

/// The three banks and the Treasury.
fn config() -> Config {
    let bank = |id: &str, name: &str, kind| BankSpec { id: id.into(), name: name.into(), kind };
    Config {
        banks: vec![
            bank("steppe", "Steppe Bank", NodeKind::Bank),
            bank("tulpar", "Tulpar Bank", NodeKind::Bank),
            bank("sapa", "Sapa Bank", NodeKind::Bank),
            bank("treasury", "Treasury", NodeKind::Treasury),
        ],
        keys: RoleKeys::from_seed([8; 32]),
    }
}

fn start(dir: &std::path::Path) -> Assembly {
    Assembly::start(dir, &config(), Arc::new(|| NOW_MS)).unwrap()
}

/// A custodial client `n` at `bank`: its client id, opened with its key kept by the bank.
fn open(assembly: &Assembly, bank: &str, n: u32, kind: ClientKind) -> String {
    let key = SecretKey::from_seed([n as u8; 32]);
    let client_id = match kind {
        ClientKind::Individual => format!("90010130{n:04}"),
        _ => format!("10014000{n:04}"),
    };
    let account = Account {
        client_id: client_id.clone(),
        node_id: bank.into(),
        kind,
        name: format!("Client {n}"),
        phone: None,
        address: key.address(),
        opened_at_unix_ms: 0,
    };
    assembly.migrate_accounts(bank, vec![(account, AccountKey::Custodial(key))]).unwrap();
    client_id
}

/// Give a client `amount` of standard DT: emitted to its bank, paid from the bank's own.
fn give(assembly: &Assembly, bank: &str, client_id: &str, amount: Amount) {
    assembly.fund(bank, amount, WAIT).unwrap();
    let handle = assembly.bank(bank).unwrap();
    let address = handle.service().read(|node| node.account(client_id).unwrap().address);
    let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(address, amount)] };
    handle.submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
}

fn wait(answer: dtenge_bank::Answer) -> Result<dtenge_bank::Committed> {
    answer.recv_timeout(WAIT).expect("answered in time")
}

fn code(answer: dtenge_bank::Answer) -> ErrorCode {
    wait(answer).expect_err("refused").code
}

/// DT of one kind a client may spend.
fn dt(assembly: &Assembly, bank: &str, client_id: &str, policy: Policy) -> Amount {
    assembly.bank(bank).unwrap().service().read(|node| node.available(client_id, &policy).unwrap())
}

fn fiat(assembly: &Assembly, bank: &str, client_id: &str) -> Amount {
    assembly.bank(bank).unwrap().service().read(|node| node.balance(client_id).unwrap().fiat_tiyn)
}

fn settled(assembly: &Assembly) {
    assembly.settle(WAIT).unwrap();
    assert_eq!(assembly.reconcile(), Vec::<String>::new());
}

#[test]
fn marked_dt_moves_down_two_levels_is_refused_outside_the_tree_and_the_trace_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (committee, contractor, sub, plant, outsider);
    let marking_id = {
        let assembly = start(dir.path());
        committee = open(&assembly, "treasury", 1, ClientKind::GovernmentAgency);
        contractor = open(&assembly, "tulpar", 2, ClientKind::LegalEntity);
        sub = open(&assembly, "sapa", 3, ClientKind::LegalEntity);
        plant = open(&assembly, "steppe", 4, ClientKind::LegalEntity);
        outsider = open(&assembly, "sapa", 5, ClientKind::LegalEntity);
        give(&assembly, "treasury", &committee, tiyn(100_00));
        // The bank's own account initiates nothing.
        let own =
            assembly.create_marking(("treasury", OWN_ACCOUNT), "road", &[(vec![("tulpar", &contractor)], tiyn(1))]);
        assert_eq!(own.unwrap_err().code, ErrorCode::Forbidden);
        let marking = assembly
            .create_marking(
                ("treasury", &committee),
                "mid-life repair, highway A-2: advance",
                &[
                    (vec![("tulpar", contractor.as_str())], tiyn(100_00)),
                    (vec![("sapa", sub.as_str())], tiyn(60_00)),
                    (vec![("steppe", plant.as_str())], tiyn(100_00)),
                ],
            )
            .unwrap();
        let id = marking.id.clone();
        let level = |level| Policy::Marked { marking: marking_hash(&id), level };

        wait(assembly.marked_transfer(("treasury", &committee), &id, ("tulpar", &contractor), tiyn(100_00), None))
            .unwrap();
        // The payer's answer comes when its bank applied it; the payee's bank applies its delivery.
        assembly.settle(WAIT).unwrap();
        assert_eq!(dt(&assembly, "tulpar", &contractor, level(1)), tiyn(100_00));
        // Skipping a level, above a level's limit, outside the tree: refused, the funds stay.
        let skip = assembly.marked_transfer(("tulpar", &contractor), &id, ("steppe", &plant), tiyn(1_00), None);
        assert_eq!(code(skip), ErrorCode::WrongLevel);
        let over = assembly.marked_transfer(("tulpar", &contractor), &id, ("sapa", &sub), tiyn(70_00), None);
        assert_eq!(code(over), ErrorCode::LimitExceeded);
        let outside = assembly.marked_transfer(("tulpar", &contractor), &id, ("sapa", &outsider), tiyn(1_00), None);
        assert_eq!(code(outside), ErrorCode::RecipientNotAllowed);
        // A plain payment does not reach marked DT.
        let outsider_address = assembly.party(("sapa", &outsider)).unwrap().address;
        let plain = Request::Pay { client_id: contractor.clone(), payees: vec![(outsider_address, tiyn(1_00))] };
        let plain = assembly.bank("tulpar").unwrap().submit(plain, None);
        assert_eq!(code(plain), ErrorCode::InsufficientFunds);
        assert_eq!(dt(&assembly, "tulpar", &contractor, level(1)), tiyn(100_00));

        // Down two levels: the last one receives standard DT.
        wait(assembly.marked_transfer(("tulpar", &contractor), &id, ("sapa", &sub), tiyn(60_00), None)).unwrap();
        wait(assembly.marked_transfer(("sapa", &sub), &id, ("steppe", &plant), tiyn(45_00), None)).unwrap();
        assembly.settle(WAIT).unwrap();
        assert_eq!(dt(&assembly, "tulpar", &contractor, level(1)), tiyn(40_00));
        assert_eq!(dt(&assembly, "sapa", &sub, level(2)), tiyn(15_00));
        assert_eq!(dt(&assembly, "steppe", &plant, Policy::Standard), tiyn(45_00));
        settled(&assembly);
        let marking = assembly.oracle().marking(&id).unwrap();
        assert_eq!(marking.moves.len(), 3);
        assert_eq!(marking.moved_tiyn, vec![tiyn(100_00), tiyn(60_00), tiyn(45_00)]);
        assembly.shutdown();
        id
    };
    // The oracle reads its registry back: the trace, and the limits already used.
    let assembly = start(dir.path());
    let marking = assembly.oracle().marking(&marking_id).unwrap();
    assert_eq!(marking.moves.len(), 3);
    let over = assembly.marked_transfer(("sapa", &sub), &marking_id, ("steppe", &plant), tiyn(15_01), None);
    assert_eq!(code(over), ErrorCode::InsufficientFunds, "the sub holds 15.00 of level-2 DT");
    wait(assembly.marked_transfer(("sapa", &sub), &marking_id, ("steppe", &plant), tiyn(15_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();
    let again = assembly.marked_transfer(("tulpar", &contractor), &marking_id, ("sapa", &sub), tiyn(1_00), None);
    assert_eq!(code(again), ErrorCode::LimitExceeded, "level 2 received its 60.00");
    assert_eq!(dt(&assembly, "steppe", &plant, Policy::Standard), tiyn(60_00));
    settled(&assembly);
    assert_eq!(assembly.oracle().marking(&marking_id).unwrap().moves.len(), 4);
}

#[test]
fn an_invoice_is_paid_with_vat_marked_dt_and_the_vat_reaches_the_tax_account() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let le1 = open(&assembly, "steppe", 11, ClientKind::LegalEntity);
    let le2 = open(&assembly, "tulpar", 12, ClientKind::LegalEntity);
    let le3 = open(&assembly, "sapa", 13, ClientKind::LegalEntity);
    let tax = open(&assembly, "treasury", 19, ClientKind::GovernmentAgency);
    let esf = "esf-token-0123456789abcdef0123456789abcdef";
    assembly.register_provider("esf", "E-invoice system (ESF)", ProviderKind::TaxAuthority, esf).unwrap();
    let portal = "portal-token-0123456789abcdef0123456789ab";
    assembly.register_provider("portal", "Smart-contract portal", ProviderKind::ContractPortal, portal).unwrap();
    // Only the tax authority, and only on the Treasury.
    assert_eq!(assembly.set_tax_account(portal, ("treasury", &tax)).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(assembly.set_tax_account(esf, ("steppe", &le1)).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(
        assembly.set_tax_account("no-such-token", ("treasury", &tax)).unwrap_err().code,
        ErrorCode::Unauthorized
    );
    assembly.set_tax_account(esf, ("treasury", &tax)).unwrap();
    for who in [("steppe", le1.as_str()), ("tulpar", le2.as_str()), ("sapa", le3.as_str())] {
        assembly.register_vat_payer(esf, who).unwrap();
    }
    give(&assembly, "steppe", &le1, tiyn(1_120_00));
    assembly.register_invoice(esf, "ESF-1", ("tulpar", &le2), ("steppe", &le1), tiyn(1_000_00), tiyn(120_00)).unwrap();
    assembly.register_invoice(esf, "ESF-2", ("sapa", &le3), ("tulpar", &le2), tiyn(500_00), tiyn(60_00)).unwrap();

    assert_eq!(code(assembly.pay_invoice(("steppe", &le1), "ESF-FAKE", tiyn(1_120_00), None)), ErrorCode::NotFound);
    assert_eq!(code(assembly.pay_invoice(("steppe", &le1), "ESF-1", tiyn(1_100_00), None)), ErrorCode::InvoiceMismatch);
    assert_eq!(code(assembly.pay_invoice(("steppe", &le1), "ESF-2", tiyn(560_00), None)), ErrorCode::InvoiceMismatch);
    wait(assembly.pay_invoice(("steppe", &le1), "ESF-1", tiyn(1_120_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();
    assert_eq!(dt(&assembly, "tulpar", &le2, Policy::Standard), tiyn(1_000_00));
    assert_eq!(dt(&assembly, "tulpar", &le2, Policy::Vat), tiyn(120_00));
    assert_eq!(code(assembly.pay_invoice(("steppe", &le1), "ESF-1", tiyn(1_120_00), None)), ErrorCode::Conflict);

    // LE2 pays LE3 with 500.00 standard and 60.00 of its VAT-marked DT.
    wait(assembly.pay_invoice(("tulpar", &le2), "ESF-2", tiyn(560_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();
    assert_eq!(dt(&assembly, "tulpar", &le2, Policy::Standard), tiyn(500_00));
    assert_eq!(dt(&assembly, "tulpar", &le2, Policy::Vat), tiyn(60_00));
    assert_eq!(dt(&assembly, "sapa", &le3, Policy::Vat), tiyn(60_00));
    // VAT-marked DT pays VAT only: at the tax account it becomes standard.
    assert_eq!(code(assembly.pay_vat(("tulpar", &le2), tiyn(60_01), None)), ErrorCode::InsufficientFunds);
    wait(assembly.pay_vat(("tulpar", &le2), tiyn(60_00), None)).unwrap();
    wait(assembly.pay_vat(("sapa", &le3), tiyn(60_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();
    assert_eq!(dt(&assembly, "tulpar", &le2, Policy::Vat), Amount::ZERO);
    assert_eq!(dt(&assembly, "treasury", &tax, Policy::Standard), tiyn(120_00));
    settled(&assembly);
    assert_eq!(assembly.oracle().invoice("ESF-1").unwrap().status, InvoiceStatus::Paid);
    assert_eq!(assembly.oracle().invoice("ESF-2").unwrap().status, InvoiceStatus::Paid);
    let payments = assembly.vat_payments();
    assert_eq!(payments.len(), 2);
    assert_eq!(payments.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn a_contract_is_paid_withdrawn_to_bank_money_and_funds_its_subcontract_within_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let akimat = open(&assembly, "treasury", 21, ClientKind::GovernmentAgency);
    let contractor = open(&assembly, "steppe", 22, ClientKind::LegalEntity);
    let sub = open(&assembly, "sapa", 23, ClientKind::LegalEntity);
    give(&assembly, "treasury", &akimat, tiyn(1_000_00));
    let portal = "portal-token-0123456789abcdef0123456789ab";
    assembly.register_provider("portal", "Smart-contract portal", ProviderKind::ContractPortal, portal).unwrap();
    let terms = |number, sender, recipient, max, fiat, funded_by| ContractTerms {
        number,
        sender,
        recipient,
        max_transfer_tiyn: tiyn(max),
        max_fiat_tiyn: tiyn(fiat),
        valid_for_ms: 90 * 86_400_000,
        funded_by,
    };
    let main = terms("GZ-1", ("treasury", akimat.as_str()), ("steppe", contractor.as_str()), 800_00, 200_00, None);
    assembly.register_contract(portal, &main).unwrap();
    let s1 = terms("GZ-1/S1", ("steppe", contractor.as_str()), ("sapa", sub.as_str()), 300_00, 300_00, Some("GZ-1"));
    assembly.register_contract(portal, &s1).unwrap();
    assert_eq!(assembly.register_contract(portal, &main).unwrap_err().code, ErrorCode::Conflict);

    wait(assembly.contract_payment(("treasury", &akimat), "GZ-1", tiyn(500_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();
    let gz = Policy::Marked { marking: contract_hash("GZ-1"), level: 1 };
    assert_eq!(dt(&assembly, "steppe", &contractor, gz.clone()), tiyn(500_00));
    let over = assembly.contract_payment(("treasury", &akimat), "GZ-1", tiyn(300_01), None);
    assert_eq!(code(over), ErrorCode::LimitExceeded);
    let not_sender = assembly.contract_payment(("steppe", &contractor), "GZ-1", tiyn(1_00), None);
    assert_eq!(code(not_sender), ErrorCode::Forbidden);

    // Withdrawn to bank money: the marked DT goes to the bank's own account as standard DT.
    let own_before = dt(&assembly, "steppe", OWN_ACCOUNT, Policy::Standard);
    wait(assembly.contract_withdrawal(("steppe", &contractor), "GZ-1", tiyn(200_00), None)).unwrap();
    assert_eq!(fiat(&assembly, "steppe", &contractor), tiyn(200_00));
    assert_eq!(dt(&assembly, "steppe", OWN_ACCOUNT, Policy::Standard), own_before.checked_add(tiyn(200_00)).unwrap());
    let more = assembly.contract_withdrawal(("steppe", &contractor), "GZ-1", tiyn(1_00), None);
    assert_eq!(code(more), ErrorCode::LimitExceeded);

    // The subcontract is paid with the contract's DT and withdrawn by the subcontractor.
    wait(assembly.contract_payment(("steppe", &contractor), "GZ-1/S1", tiyn(250_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();
    wait(assembly.contract_withdrawal(("sapa", &sub), "GZ-1/S1", tiyn(250_00), None)).unwrap();
    assert_eq!(fiat(&assembly, "sapa", &sub), tiyn(250_00));
    assert_eq!(dt(&assembly, "steppe", &contractor, gz), tiyn(50_00));
    settled(&assembly);
    let contract = assembly.oracle().contract("GZ-1").unwrap();
    assert_eq!((contract.transferred_tiyn, contract.withdrawn_tiyn), (tiyn(500_00), tiyn(200_00)));
    assert_eq!(contract.uses.len(), 2);
    let s1 = assembly.oracle().contract("GZ-1/S1").unwrap();
    assert_eq!((s1.transferred_tiyn, s1.withdrawn_tiyn, s1.uses.len()), (tiyn(250_00), tiyn(250_00), 2));
}

#[test]
fn a_split_payment_pays_every_line_in_one_transaction_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let rider = open(&assembly, "steppe", 31, ClientKind::Individual);
    let driver = open(&assembly, "tulpar", 32, ClientKind::Individual);
    let operator = open(&assembly, "sapa", 33, ClientKind::LegalEntity);
    let tax = open(&assembly, "treasury", 39, ClientKind::GovernmentAgency);
    give(&assembly, "steppe", &rider, tiyn(5_000_00));
    let lines = [
        (("tulpar", driver.as_str()), tiyn(1_700_00)),
        (("sapa", operator.as_str()), tiyn(200_00)),
        (("treasury", tax.as_str()), tiyn(100_00)),
    ];
    wait(assembly.split_payment(("steppe", &rider), &lines, None)).unwrap();
    assembly.settle(WAIT).unwrap();
    assert_eq!(dt(&assembly, "tulpar", &driver, Policy::Standard), tiyn(1_700_00));
    assert_eq!(dt(&assembly, "sapa", &operator, Policy::Standard), tiyn(200_00));
    assert_eq!(dt(&assembly, "treasury", &tax, Policy::Standard), tiyn(100_00));
    assert_eq!(dt(&assembly, "steppe", &rider, Policy::Standard), tiyn(3_000_00));

    let unknown = [(("tulpar", driver.as_str()), tiyn(1_700_00)), (("sapa", "100140009999"), tiyn(200_00))];
    assert_eq!(code(assembly.split_payment(("steppe", &rider), &unknown, None)), ErrorCode::UnknownAccount);
    let zero = [(("tulpar", driver.as_str()), Amount::ZERO)];
    assert_eq!(code(assembly.split_payment(("steppe", &rider), &zero, None)), ErrorCode::MalformedInput);
    let itself = [(("steppe", rider.as_str()), tiyn(1_00))];
    assert_eq!(code(assembly.split_payment(("steppe", &rider), &itself, None)), ErrorCode::MalformedInput);
    assert_eq!(code(assembly.split_payment(("steppe", &rider), &[], None)), ErrorCode::LimitExceeded);
    assert_eq!(dt(&assembly, "steppe", &rider, Policy::Standard), tiyn(3_000_00));
    assert_eq!(dt(&assembly, "tulpar", &driver, Policy::Standard), tiyn(1_700_00));
    settled(&assembly);
}

#[test]
fn spends_of_one_marking_at_once_wait_for_each_other_and_all_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let initiator = open(&assembly, "steppe", 51, ClientKind::LegalEntity);
    let first = open(&assembly, "tulpar", 52, ClientKind::LegalEntity);
    let second = open(&assembly, "sapa", 53, ClientKind::LegalEntity);
    // Three tokens, so that three spends at once reserve different ones.
    for _ in 0..3 {
        give(&assembly, "steppe", &initiator, tiyn(100_00));
    }
    let levels = [
        (vec![("tulpar", first.as_str()), ("sapa", second.as_str())], tiyn(300_00)),
        (vec![("steppe", "own")], tiyn(1)),
    ];
    let marking = assembly.create_marking(("steppe", &initiator), "grants", &levels[..1]).unwrap();
    let to = |who: &str| if who == first { ("tulpar", first.as_str()) } else { ("sapa", second.as_str()) };
    let answers: Vec<_> = [&first, &second, &first]
        .into_iter()
        .map(|who| assembly.marked_transfer(("steppe", &initiator), &marking.id, to(who), tiyn(100_00), None))
        .collect();
    for answer in answers {
        wait(answer).unwrap();
    }
    settled(&assembly);
    let marking = assembly.oracle().marking(&marking.id).unwrap();
    assert_eq!((marking.moves.len(), marking.moved_tiyn[0]), (3, tiyn(300_00)));
    assert_eq!(dt(&assembly, "tulpar", &first, Policy::Standard), tiyn(200_00), "one level: standard DT");
    assert_eq!(dt(&assembly, "sapa", &second, Policy::Standard), tiyn(100_00));
}

#[test]
fn bank_money_a_withdrawal_in_flight_will_credit_is_room_no_deposit_takes() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = start(dir.path());
    let akimat = open(&assembly, "treasury", 31, ClientKind::GovernmentAgency);
    let contractor = open(&assembly, "steppe", 32, ClientKind::LegalEntity);
    give(&assembly, "treasury", &akimat, tiyn(1_000_00));
    let portal = "portal-token-0123456789abcdef0123456789ab";
    assembly.register_provider("portal", "Smart-contract portal", ProviderKind::ContractPortal, portal).unwrap();
    let terms = ContractTerms {
        number: "GZ-9",
        sender: ("treasury", akimat.as_str()),
        recipient: ("steppe", contractor.as_str()),
        max_transfer_tiyn: tiyn(800_00),
        max_fiat_tiyn: tiyn(800_00),
        valid_for_ms: 90 * 86_400_000,
        funded_by: None,
    };
    assembly.register_contract(portal, &terms).unwrap();
    wait(assembly.contract_payment(("treasury", &akimat), "GZ-9", tiyn(500_00), None)).unwrap();
    assembly.settle(WAIT).unwrap();

    // A withdrawal of 200.00 is on its way; a deposit that fits alone but not beside it is
    // refused, so the withdrawal's credit can never overflow when it commits.
    let withdrawal = assembly.contract_withdrawal(("steppe", &contractor), "GZ-9", tiyn(200_00), None);
    let steppe = assembly.bank("steppe").unwrap().service();
    let too_much = steppe.deposit_fiat(&contractor, tiyn(Amount::MAX.tiyn() - 100_00)).unwrap_err();
    assert_eq!(too_much.code, ErrorCode::LimitExceeded);
    wait(withdrawal).unwrap();
    assert_eq!(fiat(&assembly, "steppe", &contractor), tiyn(200_00));
    // What fits beside the credit is taken.
    steppe.deposit_fiat(&contractor, tiyn(Amount::MAX.tiyn() - 200_00)).unwrap();
    assert_eq!(fiat(&assembly, "steppe", &contractor), Amount::MAX);
    settled(&assembly);
}
