//! Property tests of programmable money: random sequences of event registrations, holds,
//! occurrences (full, partial, rejected, repeated), clock advances (expiries), marked
//! transfers, e-invoice and VAT payments and plain transfers, run against one platform.
//!
//! After every operation:
//! - DT is neither created nor lost: the sum of every account's DT stays what it was;
//! - every account's DT is exactly its held + marked + VAT-marked + spendable parts, and
//!   nothing stays reserved between operations;
//! - an operation that failed changed no balance at all;
//! - reconciliation holds, including the oracle's held amounts against the held tokens on
//!   the ledger;
//! - for every event: what was ever held = released + returned + held now.
//!
//! At the end the platform is reopened from disk: every balance is as it was and it still
//! reconciles. Deterministic (fixed seed) unless `PROPTEST_RNG_SEED` is set; 12 cases (the
//! network's depth, about 8 s in a debug build on a quiet two-core machine) unless
//! `PROPTEST_CASES` asks for another number.
//!
//! Ported from the one-process network's `crates/network/tests/programmable_properties.rs`
//! (deleted with its crate; at commit 6eefee7) to the roles through the platform facade (the
//! same operations, strategy and seed). What the roles do differently (ARCHITECTURE, "Faces:
//! the platform facade"):
//! - a payee at another bank is credited when the delivery arrives, after the payer's
//!   answer: the balances are read once the roles settled;
//! - "what was ever held" is the sum of the event's signed `Held` records, as on the network,
//!   and must also equal the sum of the holds the platform answered, kept by the test.

use dtenge_api::platform::{Platform, TREASURY_ID};
use dtenge_api::types::*;
use dtenge_core::calendar::Date;
use dtenge_core::money::Amount;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{Balance, ClientKind};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const HOUR_MS: u64 = 3_600_000;

fn monday_10am_ms() -> u64 {
    ((Date::new(2026, 11, 23).unwrap().days() * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn iin(n: u32) -> String {
    (n * 10..).find_map(|k| complete_iin_bin(&format!("{:011}", 87_000_000_000u64 + u64::from(k)))).unwrap()
}

fn tiyn(t: u64) -> Amount {
    Amount::from_tiyn(t).unwrap()
}

/// Legal entities 0..4 at the three banks (all VAT payers), then the agency (marking
/// initiator) and the tax account at the Treasury.
const BANKS: [&str; 4] = ["steppe", "tulpar", "sapa", "steppe"];
const ENTITIES: usize = 4;
const AGENCY: usize = 4;
const TAX: usize = 5;
const ACCOUNTS: usize = 6;

fn node_of(i: usize) -> &'static str {
    if i >= AGENCY {
        TREASURY_ID
    } else {
        BANKS[i]
    }
}

fn client(i: usize) -> String {
    iin(100 + i as u32)
}

fn party(i: usize) -> PartyRef {
    PartyRef { bank: node_of(i).into(), client_id: client(i) }
}

struct World {
    platform: Platform,
    portal: String,
    esf: String,
    marking: String,
    events: Vec<String>,
    invoices: Vec<(String, usize, u64)>,
    /// What the platform answered as held, by event (the network's `Held` records).
    held: BTreeMap<String, u64>,
}

fn setup(dir: &Path) -> World {
    let clock = Arc::new(ManualClock::new(monday_10am_ms()));
    let platform = Platform::open(dir, clock, Entropy::from_seed(5)).unwrap();
    for i in 0..ACCOUNTS {
        let kind = if i < ENTITIES { ClientKind::LegalEntity } else { ClientKind::GovernmentAgency };
        let request =
            OpenAccount { kind, client_id: client(i), name: format!("Account {i}"), phone: None, public_key: None };
        platform.open_account(None, node_of(i), request).unwrap();
        if i != TAX {
            let amount = AmountRequest { amount_tiyn: tiyn(10_000_00) };
            platform.credit_correspondent(None, node_of(i), amount).unwrap();
            platform.emission(None, node_of(i), amount).unwrap();
            platform.deposit_fiat(None, node_of(i), &client(i), amount).unwrap();
            platform.convert_to_dt(None, node_of(i), &client(i), amount).unwrap();
        }
    }
    let provider = |id: &str, kind| {
        platform.register_provider(None, ProviderRequest { id: id.into(), name: id.into(), kind }).unwrap().token
    };
    let portal = provider("portal", ProviderKind::ContractPortal);
    let esf = provider("esf", ProviderKind::TaxAuthority);
    platform.set_tax_account(None, &esf, party(TAX)).unwrap();
    for i in 0..ENTITIES {
        platform.register_vat_payer(None, &esf, party(i)).unwrap();
    }
    let level = |members: &[usize]| LevelRequest {
        recipients: members.iter().map(|&i| party(i)).collect(),
        limit_tiyn: tiyn(6_000_00),
    };
    let marking = platform
        .create_marking(
            None,
            TREASURY_ID,
            MarkingRequest {
                initiator: client(AGENCY),
                reference: "grant".into(),
                levels: vec![level(&[0, 1]), level(&[2, 3])],
            },
        )
        .unwrap()
        .marking
        .id;
    World { platform, portal, esf, marking, events: Vec::new(), invoices: Vec::new(), held: BTreeMap::new() }
}

#[derive(Clone, Debug)]
enum Op {
    Event { sender: usize, payees: Vec<(usize, u64)>, infinite: bool, valid_hours: u64 },
    Hold { event: usize, amount: Option<u64> },
    Occur { event: usize, payouts: Option<Vec<(usize, u64)>>, reject: bool, occurrence: u8 },
    Advance { hours: u64 },
    Marked { from: usize, to: usize, amount: u64 },
    Invoice { seller: usize, buyer: usize, net: u64, vat: u64 },
    PayInvoice { invoice: usize, exact: bool },
    PayVat { payer: usize, percent: u64 },
    Transfer { from: usize, to: usize, amount: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let entity = 0..ENTITIES;
    let amount = 1u64..4_000_00;
    prop_oneof![
        (entity.clone(), prop::collection::vec((0..ENTITIES + 1, 1u64..2_000_00), 1..3), any::<bool>(), 1u64..48)
            .prop_map(|(sender, payees, infinite, valid_hours)| Op::Event { sender, payees, infinite, valid_hours }),
        (any::<usize>(), prop::option::of(1u64..5_000_00)).prop_map(|(event, amount)| Op::Hold { event, amount }),
        (
            any::<usize>(),
            prop::option::of(prop::collection::vec((0..ENTITIES + 1, 1u64..2_000_00), 1..3)),
            any::<bool>(),
            0u8..4
        )
            .prop_map(|(event, payouts, reject, occurrence)| Op::Occur { event, payouts, reject, occurrence }),
        (1u64..30).prop_map(|hours| Op::Advance { hours }),
        (0..ACCOUNTS, 0..ACCOUNTS, amount.clone()).prop_map(|(from, to, amount)| Op::Marked { from, to, amount }),
        (entity.clone(), entity.clone(), 1u64..2_000_00, 0u64..400_00)
            .prop_map(|(seller, buyer, net, vat)| Op::Invoice { seller, buyer, net, vat }),
        (any::<usize>(), any::<bool>()).prop_map(|(invoice, exact)| Op::PayInvoice { invoice, exact }),
        (entity.clone(), 1u64..=110).prop_map(|(payer, percent)| Op::PayVat { payer, percent }),
        (entity.clone(), entity, amount).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
    ]
}

/// The `index`-th item, wrapping around: operations name existing objects.
fn pick<T>(items: &[T], index: usize) -> Option<&T> {
    (!items.is_empty()).then(|| &items[index % items.len()])
}

fn run(w: &mut World, op: &Op, step: usize) -> dtenge_core::Result<()> {
    let n = &w.platform;
    match op.clone() {
        Op::Event { sender, payees, infinite, valid_hours } => {
            let request = EventRequest {
                reference: format!("event {step}"),
                kind: if infinite { EventKind::Infinite } else { EventKind::Single },
                sender: party(sender),
                payees: payees
                    .iter()
                    .map(|&(i, a)| ShareRequest { bank: node_of(i).into(), client_id: client(i), amount_tiyn: tiyn(a) })
                    .collect(),
                valid_for_ms: valid_hours * HOUR_MS,
                confirmed_by: None,
            };
            let event = n.register_event(None, &w.portal, request)?;
            w.events.push(event.event.id);
        }
        Op::Hold { event, amount } => {
            let Some(id) = pick(&w.events, event) else { return Ok(()) };
            let sender = n.oracle_event(id)?.event.terms.sender.bank;
            let receipt = n.hold(None, &sender, HoldRequest { event_id: id.clone(), amount_tiyn: amount.map(tiyn) })?;
            *w.held.entry(id.clone()).or_default() += receipt.event.held_tiyn.tiyn();
        }
        Op::Occur { event, payouts, reject, occurrence } => {
            let Some(id) = pick(&w.events, event) else { return Ok(()) };
            let request = OccurrenceRequest {
                occurrence_id: format!("occurrence {occurrence}"),
                outcome: if reject { OccurrenceOutcome::Rejected } else { OccurrenceOutcome::Occurred },
                payouts: if reject {
                    None
                } else {
                    payouts.map(|p| {
                        p.iter()
                            .map(|&(i, a)| ShareRequest {
                                bank: node_of(i).into(),
                                client_id: client(i),
                                amount_tiyn: tiyn(a),
                            })
                            .collect()
                    })
                },
                reason: reject.then(|| "refused".to_string()),
            };
            n.report_occurrence(None, &w.portal, id, request)?;
        }
        Op::Advance { hours } => {
            n.advance_clock(None, hours * HOUR_MS)?;
        }
        Op::Marked { from, to, amount } => {
            let request = MarkedTransferRequest {
                marking_id: w.marking.clone(),
                from: client(from),
                to: party(to),
                amount_tiyn: tiyn(amount),
            };
            n.marked_transfer(None, node_of(from), request)?;
        }
        Op::Invoice { seller, buyer, net, vat } => {
            let id = format!("ESF-{step}");
            let request = InvoiceRequest {
                id: id.clone(),
                seller: party(seller),
                buyer: party(buyer),
                net_tiyn: tiyn(net),
                vat_tiyn: Amount::from_tiyn(vat)?,
            };
            n.register_invoice(None, &w.esf, request)?;
            w.invoices.push((id, buyer, net + vat));
        }
        Op::PayInvoice { invoice, exact } => {
            let Some((id, buyer, total)) = pick(&w.invoices, invoice).cloned() else { return Ok(()) };
            let amount = if exact { total } else { total + 1 };
            let request = InvoicePaymentRequest { invoice_id: id, from: client(buyer), amount_tiyn: tiyn(amount) };
            n.pay_invoice(None, node_of(buyer), request)?;
        }
        Op::PayVat { payer, percent } => {
            // A share of what the payer holds, so that most payments can succeed; with
            // nothing VAT-marked, 1 tiyn (refused).
            let with_vat: Vec<usize> = (0..ENTITIES)
                .filter(|&i| n.balance(node_of(i), &client(i)).is_ok_and(|b| !b.dt_vat_tiyn.is_zero()))
                .collect();
            let payer = pick(&with_vat, payer).copied().unwrap_or(payer);
            let held = n.balance(node_of(payer), &client(payer))?.dt_vat_tiyn.tiyn();
            let amount = (held * percent / 100).max(1);
            n.pay_vat(None, node_of(payer), VatPaymentRequest { from: client(payer), amount_tiyn: tiyn(amount) })?;
        }
        Op::Transfer { from, to, amount } => {
            let to = Payee { client_id: Some(client(to)), bank: Some(node_of(to).into()), ..Payee::default() };
            n.transfer(
                None,
                node_of(from),
                TransferRequest { from: client(from), to, amount_tiyn: tiyn(amount), reference: None },
            )?;
        }
    }
    Ok(())
}

/// Every account's balance once the roles settled (a payee at another bank is credited after
/// the payer's answer).
fn balances(platform: &Platform) -> Vec<Balance> {
    platform.assembly().settle(std::time::Duration::from_secs(30)).unwrap();
    (0..ACCOUNTS).map(|i| platform.balance(node_of(i), &client(i)).unwrap()).collect()
}

fn total(balances: &[Balance]) -> u64 {
    balances.iter().map(|b| b.dt_tiyn.tiyn()).sum()
}

fn check_invariants(platform: &Platform, held: &BTreeMap<String, u64>, total_before: u64) -> Result<(), TestCaseError> {
    let now = balances(platform);
    prop_assert_eq!(total(&now), total_before, "DT created or lost");
    for (i, b) in now.iter().enumerate() {
        let parts = b.dt_held_tiyn.tiyn() + b.dt_marked_tiyn.tiyn() + b.dt_vat_tiyn.tiyn() + b.dt_spendable_tiyn.tiyn();
        prop_assert_eq!(b.dt_tiyn.tiyn(), parts, "account {}: parts do not add up: {:?}", i, b);
        prop_assert!(b.dt_reserved_tiyn.is_zero(), "account {} keeps a reservation", i);
    }
    let check = platform.reconcile();
    prop_assert!(check.ok, "reconciliation: {:?}", check.problems);
    let page = platform.oracle_events(None, 0, 1_000).unwrap();
    for event in page.events {
        let view = platform.oracle_event(&event.id).unwrap();
        let e = &view.event;
        let ever_held: u64 = view
            .records
            .iter()
            .filter(|r| r.body.action == dtenge_oracle::Action::Held)
            .map(|r| r.body.amount_tiyn.tiyn())
            .sum();
        prop_assert_eq!(ever_held, held.get(&e.id).copied().unwrap_or(0), "event {}: records and answers differ", e.id);
        prop_assert_eq!(
            ever_held,
            e.released_tiyn.tiyn() + e.returned_tiyn.tiyn() + e.held_tiyn.tiyn(),
            "event {} does not account for its funds",
            e.id
        );
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(12);
    let seed = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(4_2026);
    ProptestConfig { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn programmable_money_never_creates_or_loses_dt(ops in prop::collection::vec(op(), 10..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = setup(dir.path());
        let start = total(&balances(&w.platform));
        check_invariants(&w.platform, &w.held, start)?;
        let mut outcomes = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let before = balances(&w.platform);
            let result = run(&mut w, op, step);
            if let Err(e) = &result {
                prop_assert_eq!(&balances(&w.platform), &before, "failed {:?} ({}) changed balances", op, e);
            }
            outcomes.push(result.map_err(|e| e.code));
            check_invariants(&w.platform, &w.held, start)?;
        }
        let end = balances(&w.platform);
        let held = w.held.clone();
        w.platform.shutdown();
        let clock = Arc::new(ManualClock::new(monday_10am_ms()));
        let reopened = Platform::open(dir.path(), clock, Entropy::from_seed(6)).unwrap();
        prop_assert_eq!(balances(&reopened), end);
        check_invariants(&reopened, &held, start)?;
        // The sequences do exercise the flows, not only their refusals.
        prop_assert!(outcomes.iter().any(|o| o.is_ok()));
    }
}
