//! The holding scenarios of the demo (`crates/scenarios/src/programmable.rs`, h01, h02, h03,
//! h05, h06) on the platform facade over the roles: the same steps and the same outcomes,
//! with the events' records signed by the oracle role and verified with its public key,
//! infinite events released per ride, and the network's refusals in the network's order.

use dtenge_api::platform::Platform;
use dtenge_api::types::{
    EventKind, EventRequest, EventStatus, EventView, HoldRequest, OccurrenceOutcome, OccurrenceRequest, OpenAccount,
    PartyRef, ProviderKind, ProviderRequest, ShareRequest,
};
use dtenge_bank::Request;
use dtenge_core::crypto::{verify, Address};
use dtenge_core::money::Amount;
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, OWN_ACCOUNT};
use dtenge_oracle::Action;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;
const WAIT: Duration = Duration::from_secs(10);
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

fn open(dir: &Path) -> Platform {
    Platform::open(dir, Arc::new(ManualClock::new(MONDAY_MS)), Entropy::from_seed(7)).unwrap()
}

fn id(prefix: &str) -> String {
    (0..10).find_map(|d| complete_iin_bin(&format!("{}{d}", &prefix[..10]))).unwrap()
}

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

fn open_client(platform: &Platform, bank: &str, kind: ClientKind, client_id: &str, name: &str) -> Address {
    let request = OpenAccount { kind, client_id: client_id.into(), name: name.into(), phone: None, public_key: None };
    platform.open_account(None, bank, request).unwrap().address
}

/// The bank gives its client `amount` DT (funded from central first).
fn give_dt(platform: &Platform, bank: &str, to: Address, amount: u64) {
    platform.assembly().fund(bank, tiyn(amount), WAIT).unwrap();
    let request = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(to, tiyn(amount))] };
    platform.assembly().bank(bank).unwrap().submit(request, None).recv_timeout(WAIT).unwrap().unwrap();
}

/// (DT, held, spendable) of an account.
fn split(platform: &Platform, bank: &str, client_id: &str) -> (u64, u64, u64) {
    let b = platform.balance(bank, client_id).unwrap();
    (b.dt_tiyn.tiyn(), b.dt_held_tiyn.tiyn(), b.dt_spendable_tiyn.tiyn())
}

fn dt(platform: &Platform, bank: &str, client_id: &str) -> u64 {
    platform.balance(bank, client_id).unwrap().dt_tiyn.tiyn()
}

fn provider(platform: &Platform, id: &str, kind: ProviderKind) -> String {
    let request = ProviderRequest { id: id.into(), name: format!("{id} (provider)"), kind };
    platform.register_provider(None, request).unwrap().token
}

fn share(bank: &str, client_id: &str, amount: u64) -> ShareRequest {
    ShareRequest { bank: bank.into(), client_id: client_id.into(), amount_tiyn: tiyn(amount) }
}

fn event(
    kind: EventKind,
    sender: (&str, &str),
    payees: Vec<ShareRequest>,
    valid_for_ms: u64,
    confirmed_by: Option<&str>,
) -> EventRequest {
    EventRequest {
        reference: "scenario".into(),
        kind,
        sender: PartyRef { bank: sender.0.into(), client_id: sender.1.into() },
        payees,
        valid_for_ms,
        confirmed_by: confirmed_by.map(str::to_string),
    }
}

fn occurred(occurrence_id: &str) -> OccurrenceRequest {
    OccurrenceRequest {
        occurrence_id: occurrence_id.into(),
        outcome: OccurrenceOutcome::Occurred,
        payouts: None,
        reason: None,
    }
}

fn hold(event_id: &str, amount: Option<u64>) -> HoldRequest {
    HoldRequest { event_id: event_id.into(), amount_tiyn: amount.map(tiyn) }
}

/// The actions of the event's records; every record verifies with the oracle's public key
/// (what `records_verify` of the scenarios checks), numbered densely.
fn verified_actions(platform: &Platform, view: &EventView) -> Vec<Action> {
    assert!(!view.records.is_empty(), "an event without records");
    let key = platform.oracle_public_key();
    for (n, record) in view.records.iter().enumerate() {
        assert_eq!(record.body.seq as usize, n);
        assert_eq!(record.body.event_id, view.event.id);
        verify(&key, &record.body.digest().unwrap().0, &record.oracle_signature).unwrap();
    }
    view.records.iter().map(|r| r.body.action).collect()
}

/// h01: a vehicle sale in escrow, released by the registry's OwnershipTransferred.
#[test]
fn h01_vehicle_sale_escrow_records_registered_held_released_signed_by_the_oracle_role() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let (buyer, seller, tsa) = (id("96010130001"), id("95020230002"), id("00074000190"));
    let buyer_at = open_client(&platform, "steppe", ClientKind::Individual, &buyer, "Daniyar Abenov");
    open_client(&platform, "tulpar", ClientKind::Individual, &seller, "Marat Seitkali");
    open_client(&platform, "treasury", ClientKind::GovernmentAgency, &tsa, "Treasury single account");
    give_dt(&platform, "steppe", buyer_at, 6_000_000_00);
    let portal = provider(&platform, "smart-contract-portal", ProviderKind::ContractPortal);
    let registry = provider(&platform, "vehicle-registry", ProviderKind::VehicleRegistry);
    let (price, fees) = (5_000_000_00, 2 * 3_932_00);
    let payees = vec![share("tulpar", &seller, price), share("treasury", &tsa, fees)];
    let request = event(EventKind::Single, ("steppe", &buyer), payees, DAY_MS, Some("vehicle-registry"));
    let registered = platform.register_event(None, &portal, request).unwrap();
    assert_eq!(verified_actions(&platform, &registered), [Action::Registered]);
    let id = registered.event.id;

    let held = platform.hold(None, "steppe", hold(&id, None)).unwrap();
    assert_eq!(held.records.iter().map(|r| r.body.action).collect::<Vec<_>>(), [Action::Held]);
    assert_eq!(split(&platform, "steppe", &buyer), (6_000_000_00, price + fees, 6_000_000_00 - price - fees));
    let released = platform.report_occurrence(None, &registry, &id, occurred("OwnershipTransferred XTA")).unwrap();
    assert_eq!((dt(&platform, "tulpar", &seller), dt(&platform, "treasury", &tsa)), (price, fees));
    let left = 6_000_000_00 - price - fees;
    assert_eq!(split(&platform, "steppe", &buyer), (left, 0, left));
    let view = platform.oracle_event(&id).unwrap();
    assert_eq!(view.event.status, EventStatus::Completed);
    assert_eq!(verified_actions(&platform, &view), [Action::Registered, Action::Held, Action::Released]);
    let release = &view.records[2].body;
    assert_eq!((release.tx_id, release.amount_tiyn), (released.tx_id, tiyn(price + fees)));
    assert_eq!(release.occurrence_id.as_deref(), Some("OwnershipTransferred XTA"));
    assert_eq!(release.payouts.len(), 2);
    assert_eq!(view.records[1].body.tx_id, held.tx_id);
    // The registry's retry: repeated, nothing paid again.
    let again = platform.report_occurrence(None, &registry, &id, occurred("OwnershipTransferred XTA")).unwrap();
    assert!(again.repeated);
    assert_eq!(again.tx_id, released.tx_id);
    assert_eq!(dt(&platform, "tulpar", &seller), price);
    platform.shutdown();

    // The records are the role's, read back from its store after a restart.
    let platform = open(dir.path());
    let view = platform.oracle_event(&id).unwrap();
    assert_eq!(verified_actions(&platform, &view), [Action::Registered, Action::Held, Action::Released]);
    platform.shutdown();
}

/// h02: a sale that times out (expired, everything back) and one the registry rejects.
/// h03: several sellers, a partial release returning the rest.
#[test]
fn h02_h03_timeout_rejection_and_partial_release_are_recorded_as_the_network_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let (buyer, seller) = (id("96010130011"), id("95020230012"));
    let buyer_at = open_client(&platform, "steppe", ClientKind::Individual, &buyer, "Asel Nurlanova");
    open_client(&platform, "sapa", ClientKind::Individual, &seller, "Erlan Tokayev");
    give_dt(&platform, "steppe", buyer_at, 4_000_000_00);
    let portal = provider(&platform, "smart-contract-portal", ProviderKind::ContractPortal);
    let registry = provider(&platform, "vehicle-registry", ProviderKind::VehicleRegistry);
    let sale = || {
        let payees = vec![share("sapa", &seller, 3_500_000_00)];
        event(EventKind::Single, ("steppe", &buyer), payees, DAY_MS, Some("vehicle-registry"))
    };

    // Timeout.
    let first = platform.register_event(None, &portal, sale()).unwrap().event.id;
    platform.hold(None, "steppe", hold(&first, None)).unwrap();
    let clock = platform.advance_clock(None, DAY_MS).unwrap();
    assert!(clock.expired_events.contains(&first));
    assert_eq!(split(&platform, "steppe", &buyer), (4_000_000_00, 0, 4_000_000_00));
    let view = platform.oracle_event(&first).unwrap();
    assert!(view.event.status == EventStatus::Expired && view.event.reason.is_some());
    assert_eq!(verified_actions(&platform, &view), [Action::Registered, Action::Held, Action::Expired]);
    let late = platform.report_occurrence(None, &registry, &first, occurred("late")).unwrap_err();
    assert_eq!(late.code, ErrorCode::EventExpired);

    // Rejection.
    let second = platform.register_event(None, &portal, sale()).unwrap().event.id;
    platform.hold(None, "steppe", hold(&second, None)).unwrap();
    let reason = "the vehicle is under arrest: registration refused";
    let rejection = OccurrenceRequest {
        occurrence_id: "reject-1".into(),
        outcome: OccurrenceOutcome::Rejected,
        payouts: None,
        reason: Some(reason.into()),
    };
    let rejected = platform.report_occurrence(None, &registry, &second, rejection).unwrap();
    assert!(rejected.tx_id.is_some());
    assert_eq!(split(&platform, "steppe", &buyer), (4_000_000_00, 0, 4_000_000_00));
    assert_eq!(dt(&platform, "sapa", &seller), 0);
    let view = platform.oracle_event(&second).unwrap();
    assert_eq!((view.event.status, view.event.reason.as_deref()), (EventStatus::Rejected, Some(reason)));
    assert_eq!(verified_actions(&platform, &view), [Action::Registered, Action::Held, Action::Rejected]);
    assert_eq!(view.records[2].body.reason.as_deref(), Some(reason));

    // h03: three sellers, two paid, the third's share back to the farmer.
    let farmer = id("00074000201");
    let farmer_at = open_client(&platform, "sapa", ClientKind::LegalEntity, &farmer, "Berekeli Farm LLP");
    let sellers = [("steppe", id("00074000212")), ("tulpar", id("00074000223")), ("sapa", id("00074000234"))];
    for (n, (bank, seller)) in sellers.iter().enumerate() {
        open_client(&platform, bank, ClientKind::LegalEntity, seller, &format!("Livestock seller {n}"));
    }
    give_dt(&platform, "sapa", farmer_at, 7_000_000_00);
    let animals = provider(&platform, "animal-registry", ProviderKind::AnimalRegistry);
    let shares = [2_800_000_00u64, 2_100_000_00, 1_400_000_00];
    let payees = sellers.iter().zip(shares).map(|((bank, id), amount)| share(bank, id, amount)).collect();
    let request = event(EventKind::Single, ("sapa", &farmer), payees, 30 * DAY_MS, Some("animal-registry"));
    let loan = platform.register_event(None, &portal, request).unwrap().event.id;
    platform.hold(None, "sapa", hold(&loan, None)).unwrap();
    let mut partial = occurred("re-registration 2026-11-23");
    partial.payouts =
        Some(vec![share(sellers[0].0, &sellers[0].1, shares[0]), share(sellers[1].0, &sellers[1].1, shares[1])]);
    let released = platform.report_occurrence(None, &animals, &loan, partial).unwrap();
    assert_eq!(dt(&platform, sellers[0].0, &sellers[0].1), shares[0]);
    assert_eq!(dt(&platform, sellers[1].0, &sellers[1].1), shares[1]);
    assert_eq!(dt(&platform, sellers[2].0, &sellers[2].1), 0);
    let left = 7_000_000_00 - shares[0] - shares[1];
    assert_eq!(split(&platform, "sapa", &farmer), (left, 0, left));
    let actions: Vec<Action> = released.records.iter().map(|r| r.body.action).collect();
    assert_eq!(actions, [Action::Released, Action::Returned], "the step's records");
    let view = platform.oracle_event(&loan).unwrap();
    assert_eq!(
        verified_actions(&platform, &view),
        [Action::Registered, Action::Held, Action::Released, Action::Returned]
    );
    assert_eq!(view.records[3].body.amount_tiyn, tiyn(shares[2]));
    assert!(platform.assembly().reconcile().is_empty());
    platform.shutdown();
}

/// h05: an infinite event for transit fares: 1,000 held, six rides paid, the seventh
/// exceeds what is held, the rest back after the validity.
#[test]
fn h05_infinite_event_pays_each_ride_until_the_held_amount_runs_out_and_returns_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let (rider, operator) = (id("08010130021"), id("00074000245"));
    let rider_at = open_client(&platform, "steppe", ClientKind::Individual, &rider, "Dana Pupil");
    open_client(&platform, "tulpar", ClientKind::LegalEntity, &operator, "Astana LRT Transit Operator");
    give_dt(&platform, "steppe", rider_at, 2_000_00);
    let onay = provider(&platform, "onay", ProviderKind::TransitValidators);
    let fare = 150_00;
    let request =
        event(EventKind::Infinite, ("steppe", &rider), vec![share("tulpar", &operator, fare)], 30 * DAY_MS, None);
    let registered = platform.register_event(None, &onay, request).unwrap().event;
    assert_eq!(registered.terms.kind, EventKind::Infinite);
    let id = registered.id;
    let held = platform.hold(None, "steppe", hold(&id, Some(1_000_00))).unwrap();
    assert_eq!((held.event.status, held.event.held_tiyn), (EventStatus::Held, tiyn(1_000_00)));
    for ride in 1..=6 {
        let paid = platform.report_occurrence(None, &onay, &id, occurred(&format!("tap-{ride}"))).unwrap();
        assert!(!paid.repeated && paid.tx_id.is_some());
        assert_eq!(paid.event.held_tiyn, tiyn(1_000_00 - ride * fare));
    }
    assert_eq!(dt(&platform, "tulpar", &operator), 6 * fare);
    assert_eq!(split(&platform, "steppe", &rider), (2_000_00 - 6 * fare, 1_000_00 - 6 * fare, 1_000_00));
    let seventh = platform.report_occurrence(None, &onay, &id, occurred("tap-7")).unwrap_err();
    assert_eq!(seventh.code, ErrorCode::LimitExceeded);
    // A tap seen before: repeated, not paid again.
    let again = platform.report_occurrence(None, &onay, &id, occurred("tap-3")).unwrap();
    assert!(again.repeated);
    assert_eq!(dt(&platform, "tulpar", &operator), 6 * fare);
    let view = platform.oracle_event(&id).unwrap();
    assert_eq!((view.event.status, view.event.occurrences), (EventStatus::Held, 6));
    assert_eq!(again.tx_id, view.records[4].body.tx_id, "tap-3's release");
    let views = platform.holds("steppe", &rider).unwrap();
    assert_eq!((views[0].kind, views[0].held_tiyn), (EventKind::Infinite, tiyn(100_00)));

    platform.advance_clock(None, 30 * DAY_MS).unwrap();
    assert_eq!(split(&platform, "steppe", &rider), (1_100_00, 0, 1_100_00));
    let view = platform.oracle_event(&id).unwrap();
    assert_eq!(view.event.status, EventStatus::Expired);
    let mut expected = vec![Action::Registered, Action::Held];
    expected.extend([Action::Released; 6]);
    expected.push(Action::Expired);
    assert_eq!(verified_actions(&platform, &view), expected);
    assert_eq!(view.records.last().unwrap().body.amount_tiyn, tiyn(100_00));
    let reconciliation = platform.reconcile();
    assert!(reconciliation.ok, "{:?}", reconciliation.problems);
    assert!(platform.assembly().reconcile().is_empty());
    platform.shutdown();
}

/// h06: bad input changes nothing and is refused with the network's codes, a hold of an
/// expired event `EVENT_EXPIRED` before its funds are looked at.
#[test]
fn h06_bad_holding_input_is_refused_with_the_networks_codes_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let (buyer, seller) = (id("96010130031"), id("95020230032"));
    let buyer_at = open_client(&platform, "steppe", ClientKind::Individual, &buyer, "Careful Buyer");
    open_client(&platform, "tulpar", ClientKind::Individual, &seller, "Careful Seller");
    give_dt(&platform, "steppe", buyer_at, 1_000_00);
    let portal = provider(&platform, "smart-contract-portal", ProviderKind::ContractPortal);
    let registry = provider(&platform, "vehicle-registry", ProviderKind::VehicleRegistry);
    let body = |amount: u64| {
        event(
            EventKind::Single,
            ("steppe", &buyer),
            vec![share("tulpar", &seller, amount)],
            HOUR_MS,
            Some("vehicle-registry"),
        )
    };
    let before = (split(&platform, "steppe", &buyer), dt(&platform, "tulpar", &seller));
    let unchanged = |what: &str| {
        let now = (split(&platform, "steppe", &buyer), dt(&platform, "tulpar", &seller));
        assert_eq!(now, before, "{what} changed balances");
    };
    let code = |result: dtenge_core::Result<_>| -> ErrorCode {
        let result: dtenge_core::Result<dtenge_api::types::HoldReceipt> = result;
        result.unwrap_err().code
    };
    assert_eq!(platform.register_event(None, "not-a-token", body(100_00)).unwrap_err().code, ErrorCode::Unauthorized);
    assert_eq!(code(platform.hold(None, "steppe", hold("EV9999999", None))), ErrorCode::NotFound);
    unchanged("hold of an unknown event");
    let big = platform.register_event(None, &portal, body(5_000_00)).unwrap().event.id;
    assert_eq!(code(platform.hold(None, "steppe", hold(&big, None))), ErrorCode::InsufficientFunds);
    unchanged("hold above the balance");
    let id = platform.register_event(None, &portal, body(400_00)).unwrap().event.id;
    assert_eq!(code(platform.hold(None, "tulpar", hold(&id, None))), ErrorCode::Forbidden);
    assert_eq!(code(platform.report_occurrence(None, &registry, &id, occurred("early"))), ErrorCode::Conflict);
    unchanged("release before the hold");
    platform.hold(None, "steppe", hold(&id, None)).unwrap();
    let held = (split(&platform, "steppe", &buyer), dt(&platform, "tulpar", &seller));
    assert_eq!(held.0 .1, 400_00);
    let still = |what: &str| {
        assert_eq!((split(&platform, "steppe", &buyer), dt(&platform, "tulpar", &seller)), held, "{what} moved money");
    };
    assert_eq!(code(platform.hold(None, "steppe", hold(&id, None))), ErrorCode::Conflict);
    still("second hold of a single event");
    assert_eq!(code(platform.report_occurrence(None, &portal, &id, occurred("x"))), ErrorCode::Forbidden);
    still("occurrence from a provider that does not confirm the event");
    let mut stranger = occurred("x");
    stranger.payouts = Some(vec![share("steppe", &buyer, 100_00)]);
    assert_eq!(code(platform.report_occurrence(None, &registry, &id, stranger)), ErrorCode::RecipientNotAllowed);
    still("payout to someone who is not a payee");
    let mut too_much = occurred("x");
    too_much.payouts = Some(vec![share("tulpar", &seller, 400_01)]);
    assert_eq!(code(platform.report_occurrence(None, &registry, &id, too_much)), ErrorCode::LimitExceeded);
    still("payout above the payee's share");
    platform.advance_clock(None, HOUR_MS).unwrap();
    assert_eq!(code(platform.hold(None, "steppe", hold(&big, None))), ErrorCode::EventExpired, "expired, not poor");
    assert_eq!(split(&platform, "steppe", &buyer), before.0, "expiry returned the held funds");
    // Records of refusals: none; of what the oracle decided: every one.
    let view = platform.oracle_event(&big).unwrap();
    assert_eq!(verified_actions(&platform, &view), [Action::Registered, Action::Expired]);
    let view = platform.oracle_event(&id).unwrap();
    assert_eq!(verified_actions(&platform, &view), [Action::Registered, Action::Held, Action::Expired]);
    platform.shutdown();
}
