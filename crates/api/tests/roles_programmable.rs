//! The ledger, not only the API, enforces programmed money: a bank that attests whatever its
//! client signs still cannot move VAT-marked or marked tokens, nor create them, without the
//! oracle; a forged oracle signature is refused; and every refusal leaves balances and the
//! reconciliation untouched. Holding, marking and VAT state survive a restart.
//!
//! Ported from the one-process network's `crates/network/tests/programmable.rs` (deleted with
//! its crate; at commit 6eefee7) to the roles through the platform facade: a client-signed
//! transfer goes to `Platform::submit` (the payer's bank checks and attests it, as the
//! network's pipeline did). A programmed spend is answered once the oracle recorded it; a
//! payee at another bank holds its DT when the delivery arrives, after the answer, so the
//! tests let the roles settle before they look for the payee's tokens.

use dtenge_api::platform::Platform;
use dtenge_api::types::*;
use dtenge_core::calendar::Date;
use dtenge_core::crypto::SecretKey;
use dtenge_core::money::Amount;
use dtenge_core::token::{Input, Output, Policy};
use dtenge_core::tx::{node_message, Attestation, Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{Balance, ClientKind};
use std::sync::Arc;

fn monday_10am_ms() -> u64 {
    ((Date::new(2026, 11, 23).unwrap().days() * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn iin(n: u32) -> String {
    (n * 10..).find_map(|k| complete_iin_bin(&format!("{:011}", 86_000_000_000u64 + u64::from(k)))).unwrap()
}

fn tiyn(t: u64) -> Amount {
    Amount::from_tiyn(t).unwrap()
}

fn open(dir: &std::path::Path, seed: u64) -> Platform {
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    Platform::open(dir, clock, Entropy::from_seed(seed)).unwrap()
}

fn account(platform: &Platform, bank: &str, n: u32, kind: ClientKind, key: Option<&SecretKey>) -> String {
    let request = OpenAccount {
        kind,
        client_id: iin(n),
        name: format!("Client {n}"),
        phone: None,
        public_key: key.map(SecretKey::public_key),
    };
    platform.open_account(None, bank, request).unwrap().client_id
}

fn give_dt(platform: &Platform, bank: &str, client: &str, t: u64) {
    let amount = AmountRequest { amount_tiyn: tiyn(t) };
    platform.credit_correspondent(None, bank, amount).unwrap();
    platform.emission(None, bank, amount).unwrap();
    platform.deposit_fiat(None, bank, client, amount).unwrap();
    platform.convert_to_dt(None, bank, client, amount).unwrap();
}

fn party(bank: &str, client: &str) -> PartyRef {
    PartyRef { bank: bank.into(), client_id: client.into() }
}

struct World {
    platform: Arc<Platform>,
    le1: String,
    le2: String,
    le2_key: SecretKey,
}

/// LE1 (custodial, Steppe) pays LE2 (keeps its own key, Tulpar) an e-invoice of 1,000 + 120
/// VAT, so LE2 holds a VAT-marked token it can sign for itself.
fn world(dir: &std::path::Path) -> World {
    let platform = Arc::new(open(dir, 21));
    let le1 = account(&platform, "steppe", 1, ClientKind::LegalEntity, None);
    let le2_key = SecretKey::from_seed([77; 32]);
    let le2 = account(&platform, "tulpar", 2, ClientKind::LegalEntity, Some(&le2_key));
    let tax = account(&platform, "treasury", 3, ClientKind::GovernmentAgency, None);
    let esf = platform
        .register_provider(
            None,
            ProviderRequest { id: "esf".into(), name: "ESF".into(), kind: ProviderKind::TaxAuthority },
        )
        .unwrap()
        .token;
    platform.set_tax_account(None, &esf, party("treasury", &tax)).unwrap();
    platform.register_vat_payer(None, &esf, party("tulpar", &le2)).unwrap();
    let invoice = InvoiceRequest {
        id: "ESF-1".into(),
        seller: party("tulpar", &le2),
        buyer: party("steppe", &le1),
        net_tiyn: tiyn(1_000_00),
        vat_tiyn: tiyn(120_00),
    };
    platform.register_invoice(None, &esf, invoice).unwrap();
    give_dt(&platform, "steppe", &le1, 2_000_00);
    let request = InvoicePaymentRequest { invoice_id: "ESF-1".into(), from: le1.clone(), amount_tiyn: tiyn(1_120_00) };
    platform.pay_invoice(None, "steppe", request).unwrap();
    settle(&platform);
    World { platform, le1, le2, le2_key }
}

/// Let every role settle: a payee at another bank is credited after the payer's answer.
fn settle(platform: &Platform) {
    platform.assembly().settle(std::time::Duration::from_secs(30)).unwrap();
}

fn vat_token(w: &World) -> Input {
    let tokens = w.platform.all_tokens("tulpar", &w.le2).unwrap();
    tokens.into_iter().find(|i| i.output.policy == Policy::Vat).expect("LE2 holds a VAT-marked token")
}

fn submit(w: &World, tx: Transaction) -> ErrorCode {
    w.platform.submit(None, "tulpar", tx).expect_err("the ledger must refuse it").code
}

fn balances(w: &World) -> (Balance, Balance) {
    (w.platform.balance("steppe", &w.le1).unwrap(), w.platform.balance("tulpar", &w.le2).unwrap())
}

#[test]
fn a_bank_that_ignores_the_rules_cannot_move_or_mint_programmed_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path());
    let before = balances(&w);
    assert_eq!(before.1.dt_vat_tiyn, tiyn(120_00));
    let issuer = vat_token(&w).output.issuer;
    let le1_address = w.platform.account_view("steppe", &w.le1).unwrap().account.address;
    let le2_address = w.le2_key.address();

    // 1. The VAT-marked token, spent by a plain transfer the bank attests: refused.
    let spend_vat = |outputs: Vec<Output>, nonce: u64| {
        let mut tx =
            Transaction::new(TxBody { command: Command::Transfer, inputs: vec![vat_token(&w)], outputs, nonce });
        tx.sign_owner(&w.le2_key);
        tx
    };
    let plain = spend_vat(vec![Output::standard(tiyn(120_00), le1_address, issuer)], 1);
    assert_eq!(submit(&w, plain), ErrorCode::FundsMarked);

    // 2. Even towards its legitimate use (VAT to the tax account) it needs the oracle.
    let tax_address = w.platform.account_view("treasury", &iin(3)).unwrap().account.address;
    let towards_tax = spend_vat(vec![Output::standard(tiyn(120_00), tax_address, issuer)], 2);
    assert_eq!(submit(&w, towards_tax), ErrorCode::FundsMarked);

    // 3. A forged oracle attestation (the oracle's key, another's signature): refused.
    let mut forged = spend_vat(vec![Output::standard(tiyn(120_00), le1_address, issuer)], 3);
    let oracle = w.platform.oracle_public_key();
    forged.attestations.push(Attestation {
        public_key: oracle,
        signature: w.le2_key.sign(&node_message(&forged.id()).0),
        batch: None,
    });
    assert_eq!(submit(&w, forged), ErrorCode::InvalidSignature);

    // 4. Minting programmed tokens from standard ones without the oracle: refused.
    let standard = w.platform.spendable_tokens("tulpar", &w.le2).unwrap();
    let value = standard[0].output.amount_tiyn;
    let mut mint = Transaction::new(TxBody {
        command: Command::Transfer,
        inputs: vec![standard[0].clone()],
        outputs: vec![Output { amount_tiyn: value, owner: le2_address, issuer, policy: Policy::Vat }],
        nonce: 4,
    });
    mint.sign_owner(&w.le2_key);
    assert_eq!(submit(&w, mint), ErrorCode::OracleConfirmationRequired);

    // Nothing moved; the ledger and the oracle still reconcile.
    assert_eq!(balances(&w), before);
    let check = w.platform.reconcile();
    assert!(check.ok, "{:?}", check.problems);
}

#[test]
fn marked_tokens_of_a_self_keyed_recipient_move_only_through_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path());
    let agency = account(&w.platform, "treasury", 10, ClientKind::GovernmentAgency, None);
    give_dt(&w.platform, "treasury", &agency, 5_000_00);
    let request = MarkingRequest {
        initiator: agency.clone(),
        reference: "targeted grant".into(),
        levels: vec![
            LevelRequest { recipients: vec![party("tulpar", &w.le2)], limit_tiyn: tiyn(5_000_00) },
            LevelRequest { recipients: vec![party("steppe", &w.le1)], limit_tiyn: tiyn(5_000_00) },
        ],
    };
    let marking = w.platform.create_marking(None, "treasury", request).unwrap();
    let transfer = MarkedTransferRequest {
        marking_id: marking.marking.id.clone(),
        from: agency,
        to: party("tulpar", &w.le2),
        amount_tiyn: tiyn(3_000_00),
    };
    w.platform.marked_transfer(None, "treasury", transfer).unwrap();
    settle(&w.platform);
    let marked = w
        .platform
        .all_tokens("tulpar", &w.le2)
        .unwrap()
        .into_iter()
        .find(|i| matches!(i.output.policy, Policy::Marked { .. }))
        .unwrap();
    let before = balances(&w);
    assert_eq!(before.1.dt_marked_tiyn, tiyn(3_000_00));
    // Straight to the allowed level-2 recipient, but without the oracle: refused.
    let le1_address = w.platform.account_view("steppe", &w.le1).unwrap().account.address;
    let mut tx = Transaction::new(TxBody {
        command: Command::Transfer,
        inputs: vec![marked.clone()],
        outputs: vec![Output::standard(marked.output.amount_tiyn, le1_address, marked.output.issuer)],
        nonce: 9,
    });
    tx.sign_owner(&w.le2_key);
    assert_eq!(submit(&w, tx), ErrorCode::FundsMarked);
    assert_eq!(balances(&w), before);
    assert!(w.platform.reconcile().ok);
}

#[test]
fn programmed_state_survives_a_restart_and_still_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let (held_before, vat_before, event_id) = {
        let w = world(dir.path());
        let buyer = account(&w.platform, "sapa", 20, ClientKind::Individual, None);
        let seller = account(&w.platform, "steppe", 21, ClientKind::Individual, None);
        give_dt(&w.platform, "sapa", &buyer, 10_000_00);
        let portal = w
            .platform
            .register_provider(
                None,
                ProviderRequest { id: "portal".into(), name: "Portal".into(), kind: ProviderKind::ContractPortal },
            )
            .unwrap()
            .token;
        let event = w
            .platform
            .register_event(
                None,
                &portal,
                EventRequest {
                    reference: "sale".into(),
                    kind: EventKind::Single,
                    sender: party("sapa", &buyer),
                    payees: vec![ShareRequest {
                        bank: "steppe".into(),
                        client_id: seller,
                        amount_tiyn: tiyn(4_000_00),
                    }],
                    valid_for_ms: 3_600_000,
                    confirmed_by: None,
                },
            )
            .unwrap();
        w.platform.hold(None, "sapa", HoldRequest { event_id: event.event.id.clone(), amount_tiyn: None }).unwrap();
        let held = w.platform.balance("sapa", &buyer).unwrap().dt_held_tiyn;
        (held, balances(&w).1.dt_vat_tiyn, event.event.id)
    };
    let platform = open(dir.path(), 22);
    let event = platform.oracle_event(&event_id).unwrap();
    assert_eq!(event.event.status, EventStatus::Held);
    assert_eq!(event.event.held_tiyn, held_before);
    // The event's signed records (registered, held) survive the restart, as the network's did.
    let actions: Vec<_> = event.records.iter().map(|r| r.body.action).collect();
    assert_eq!(actions, [dtenge_oracle::Action::Registered, dtenge_oracle::Action::Held]);
    assert_eq!(platform.invoice("ESF-1").unwrap().status, InvoiceStatus::Paid);
    assert_eq!(platform.balance("tulpar", &iin(2)).unwrap().dt_vat_tiyn, vat_before);
    let check = platform.reconcile();
    assert!(check.ok, "{:?}", check.problems);
}
