//! The platform's operator and holding groups on the roles: blocks delivered to every role,
//! the calendar, monitoring and the registry, reconciliation; providers, events, holds
//! released by an occurrence and returned by expiry after the clock moves.

use dtenge_api::platform::Idem;
use dtenge_api::platform::Platform;
use dtenge_api::types::{
    BlockRequest, EventKind, EventRequest, EventStatus, HoldRequest, OccurrenceOutcome, OccurrenceRequest, OpenAccount,
    PartyRef, ProviderKind, ProviderRequest, ShareRequest,
};
use dtenge_bank::Request;
use dtenge_core::calendar::Date;
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::money::Amount;
use dtenge_core::ErrorCode;
use dtenge_env::{Clock, Entropy, ManualClock, SystemClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, Purpose, OWN_ACCOUNT};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;
const WAIT: Duration = Duration::from_secs(10);
const HOUR_MS: u64 = 3_600_000;

fn open(dir: &Path) -> Platform {
    Platform::open(dir, Arc::new(ManualClock::new(MONDAY_MS)), Entropy::from_seed(7)).unwrap()
}

fn idem(key: &str) -> Idem {
    Idem { key: key.into(), fingerprint: Hash32([1; 32]) }
}

/// A valid IIN/BIN from its first 11 digits.
fn id(prefix: &str) -> String {
    (0..10).find_map(|d| complete_iin_bin(&format!("{}{d}", &prefix[..10]))).unwrap()
}

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

/// Open an individual's custodial account; its address.
fn person(platform: &Platform, bank: &str, client_id: &str, name: &str) -> Address {
    let request = OpenAccount {
        kind: ClientKind::Individual,
        client_id: client_id.into(),
        name: name.into(),
        phone: None,
        public_key: None,
    };
    platform.open_account(None, bank, request).unwrap().address
}

/// The bank pays its client `amount` from its own DT.
fn pay(platform: &Platform, bank: &str, to: Address, amount: u64) -> dtenge_core::Result<()> {
    let request = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(to, tiyn(amount))] };
    platform.assembly().bank(bank).unwrap().submit(request, None).recv_timeout(WAIT).unwrap().map(|_| ())
}

fn dt(platform: &Platform, bank: &str, client_id: &str) -> u64 {
    platform.balance(bank, client_id).unwrap().dt_tiyn.tiyn()
}

#[test]
fn the_operator_keeps_the_calendar_blocks_a_bank_everywhere_and_reads_totals_that_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let monday = Date::new(2026, 12, 7).unwrap();

    // The calendar: today, a year, an override and its removal; a past day keeps its type.
    let today = platform.today();
    assert_eq!((today.date, today.working, today.overridden), (monday, true, false));
    let year = platform.calendar_year(2026).unwrap();
    assert_eq!(year.len(), 365);
    assert!(!year.iter().find(|d| d.date == Date::new(2026, 12, 6).unwrap()).unwrap().working, "a Sunday");
    assert!(!year.iter().find(|d| d.date == Date::new(2026, 12, 16).unwrap()).unwrap().working, "Independence Day");
    assert_eq!(platform.calendar_year(1969).unwrap_err().code, ErrorCode::MalformedInput);
    let holiday = platform.set_day(None, monday, false).unwrap();
    assert_eq!((holiday.working, holiday.overridden), (false, true));
    assert!(!platform.today().working);
    let refused = platform.assembly().fund("steppe", tiyn(1_000_00), WAIT).unwrap_err();
    assert_eq!(refused.code, ErrorCode::NonWorkingDay);
    assert!(platform.calendar_year(2026).unwrap().iter().any(|d| d.date == monday && d.overridden));
    let back = platform.set_day(None, monday, true).unwrap();
    assert_eq!((back.working, back.overridden), (true, false));
    let saturday = platform.set_day(None, Date::new(2026, 12, 12).unwrap(), true).unwrap();
    assert_eq!((saturday.working, saturday.overridden), (true, true));
    let past = platform.set_day(None, Date::new(2026, 12, 4).unwrap(), false).unwrap_err();
    assert_eq!(past.code, ErrorCode::MalformedInput);

    // Money in: monitoring and the registry show it.
    platform.assembly().fund("steppe", tiyn(1_000_00), WAIT).unwrap();
    let client = id("90010130000");
    let aigerim = person(&platform, "tulpar", &client, "Aigerim Seitova");
    platform.assembly().fund("tulpar", tiyn(300_00), WAIT).unwrap();
    let monitoring = platform.monitoring().unwrap();
    assert_eq!(monitoring.emitted_tiyn, tiyn(1_300_00));
    assert_eq!(monitoring.circulation_tiyn, tiyn(1_300_00));
    assert_eq!(monitoring.dt_liability_tiyn, tiyn(1_300_00));
    assert_eq!(monitoring.nodes.len(), 4);
    let steppe = monitoring.nodes.iter().find(|n| n.id == "steppe").unwrap();
    assert_eq!(
        (steppe.dt_held_tiyn, steppe.emitted_tiyn, steppe.correspondent_tiyn),
        (tiyn(1_000_00), tiyn(1_000_00), 0)
    );
    let operations = platform.nbk_operations(0, 10);
    assert_eq!(operations.len(), 2);
    assert_eq!((operations[0].node.as_str(), operations[0].kind), ("tulpar", Purpose::Emission), "newest first");
    assert_eq!(platform.nbk_operations(1, 10).len(), 1);

    // Blocking: refused shapes first, then Tulpar blocked at the notary and every bank.
    let block = |reason: &str| BlockRequest { reason: reason.into() };
    assert_eq!(platform.block(None, "tulpar", block("  ")).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.block(None, "nbk", block("no")).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(platform.block(None, "nowhere", block("no")).unwrap_err().code, ErrorCode::UnknownAccount);
    let blocked = platform.block(None, "tulpar", block("licence suspended")).unwrap();
    assert!(blocked.blocked);
    assert_eq!(blocked.block_reason.as_deref(), Some("licence suspended"));
    assert_eq!(blocked.accounts, platform.accounts("tulpar").unwrap().len());
    assert_eq!(pay(&platform, "steppe", aigerim, 10_00).unwrap_err().code, ErrorCode::BankBlocked);
    assert_eq!(pay(&platform, "tulpar", aigerim, 10_00).unwrap_err().code, ErrorCode::BankBlocked);
    assert_eq!(platform.assembly().fund("tulpar", tiyn(1_00), WAIT).unwrap_err().code, ErrorCode::BankBlocked);
    assert!(platform.monitoring().unwrap().nodes.iter().any(|n| n.id == "tulpar" && n.blocked));
    let lifted = platform.unblock(None, "tulpar").unwrap();
    assert!(!lifted.blocked && lifted.block_reason.is_none());
    pay(&platform, "steppe", aigerim, 10_00).unwrap();
    platform.assembly().settle(WAIT).unwrap();
    assert_eq!(dt(&platform, "tulpar", &client), 10_00);

    let reconciliation = platform.reconcile();
    assert!(reconciliation.ok, "{:?}", reconciliation.problems);
    assert_eq!(reconciliation.circulation_by_nbk_tiyn, tiyn(1_300_00));
    assert_eq!(reconciliation.circulation_by_nodes_tiyn, tiyn(1_300_00));
    assert_eq!(reconciliation.node_tokens, reconciliation.notary_unspent);
    assert_eq!(reconciliation.node_tokens_not_unspent, 0);
    platform.shutdown();

    // Central keeps the overrides across a restart.
    let platform = open(dir.path());
    assert!(platform
        .calendar_year(2026)
        .unwrap()
        .iter()
        .any(|d| d.date == Date::new(2026, 12, 12).unwrap() && d.working && d.overridden));
    assert!(platform.assembly().reconcile().is_empty());
    platform.shutdown();
}

#[test]
fn a_hold_is_released_by_its_occurrence_and_another_returned_when_the_clock_passes_its_validity() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let (aigerim, bolat, dana) = (id("90010130000"), id("85020240001"), id("91030350001"));
    let aigerim_at = person(&platform, "steppe", &aigerim, "Aigerim Seitova");
    person(&platform, "tulpar", &bolat, "Bolat Nurlanov");
    person(&platform, "sapa", &dana, "Dana Omarova");
    platform.assembly().fund("steppe", tiyn(1_000_00), WAIT).unwrap();
    pay(&platform, "steppe", aigerim_at, 500_00).unwrap();

    // A provider, with its token once.
    let provider = |id: &str| ProviderRequest {
        id: id.into(),
        name: "Vehicle registry".into(),
        kind: ProviderKind::VehicleRegistry,
    };
    let credentials = platform.register_provider(None, provider("vehicles")).unwrap();
    let token = credentials.token.clone();
    assert_eq!(platform.providers(), vec![credentials.provider.clone()]);
    assert_eq!(platform.register_provider(None, provider("vehicles")).unwrap_err().code, ErrorCode::Conflict);
    // Under a key, a retry gets the same token.
    let keyed = platform.register_provider(Some(&idem("provider-1")), provider("registry")).unwrap();
    let retried = platform.register_provider(Some(&idem("provider-1")), provider("registry")).unwrap();
    assert_eq!((&retried.provider, &retried.token), (&keyed.provider, &keyed.token));
    assert_eq!(platform.providers().len(), 2);
    assert_eq!(platform.oracle_public_key(), platform.assembly().anchors().oracle);

    // Events: refusals, then one paying Bolat 100 and Dana 50 within a day.
    let event = |valid_for_ms: u64| EventRequest {
        reference: "VIN 1HGCM82633A004352".into(),
        kind: EventKind::Single,
        sender: PartyRef { bank: "steppe".into(), client_id: aigerim.clone() },
        payees: vec![
            ShareRequest { bank: "tulpar".into(), client_id: bolat.clone(), amount_tiyn: tiyn(100_00) },
            ShareRequest { bank: "sapa".into(), client_id: dana.clone(), amount_tiyn: tiyn(50_00) },
        ],
        valid_for_ms,
        confirmed_by: None,
    };
    assert_eq!(platform.register_event(None, "nobody's", event(HOUR_MS)).unwrap_err().code, ErrorCode::Unauthorized);
    assert_eq!(platform.register_event(None, &token, event(0)).unwrap_err().code, ErrorCode::MalformedInput);
    let stranger =
        EventRequest { sender: PartyRef { bank: "steppe".into(), client_id: bolat.clone() }, ..event(HOUR_MS) };
    assert_eq!(platform.register_event(None, &token, stranger).unwrap_err().code, ErrorCode::UnknownAccount);
    let sale = platform.register_event(None, &token, event(24 * HOUR_MS)).unwrap().event;
    assert_eq!((sale.status, sale.terms.sender.client_id.as_str()), (EventStatus::Registered, aigerim.as_str()));
    assert_eq!(sale.terms.payees[1].party.client_id, dana);

    // The hold: by the sender's bank only, exactly the event's amount; a key answers again.
    let hold = |amount: Option<u64>| HoldRequest { event_id: sale.id.clone(), amount_tiyn: amount.map(tiyn) };
    assert_eq!(platform.hold(None, "tulpar", hold(None)).unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(platform.hold(None, "steppe", hold(Some(10_00))).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(
        platform.hold(None, "steppe", HoldRequest { event_id: "EV9".into(), amount_tiyn: None }).unwrap_err().code,
        ErrorCode::NotFound
    );
    let held = platform.hold(Some(&idem("hold-1")), "steppe", hold(Some(150_00))).unwrap();
    assert_eq!((held.event.status, held.event.held_tiyn), (EventStatus::Held, tiyn(150_00)));
    let again = platform.hold(Some(&idem("hold-1")), "steppe", hold(None)).unwrap();
    assert_eq!(again.tx_id, held.tx_id, "the bank answers the key with the first hold");
    assert_eq!(platform.hold(None, "steppe", hold(None)).unwrap_err().code, ErrorCode::Conflict);
    let balance = platform.balance("steppe", &aigerim).unwrap();
    assert_eq!((balance.dt_tiyn, balance.dt_held_tiyn), (tiyn(500_00), tiyn(150_00)));
    let views = platform.holds("steppe", &aigerim).unwrap();
    assert_eq!((views.len(), views[0].role.as_str(), views[0].share_tiyn), (1, "sender", tiyn(150_00)));
    assert_eq!(platform.holds("tulpar", &bolat).unwrap()[0].role, "payee");
    assert!(platform.holds("sapa", &bolat).is_err(), "Bolat banks with Tulpar");

    // The occurrence: refusals, then Bolat paid in full, Dana not at all, the rest back.
    let occurred = |payouts: Option<Vec<ShareRequest>>| OccurrenceRequest {
        occurrence_id: "transfer-1".into(),
        outcome: OccurrenceOutcome::Occurred,
        payouts,
        reason: None,
    };
    let rejected_without_reason = OccurrenceRequest { outcome: OccurrenceOutcome::Rejected, ..occurred(None) };
    assert_eq!(
        platform.report_occurrence(None, "x", &sale.id, occurred(None)).unwrap_err().code,
        ErrorCode::Unauthorized
    );
    assert_eq!(
        platform.report_occurrence(None, &token, &sale.id, rejected_without_reason).unwrap_err().code,
        ErrorCode::MalformedInput
    );
    let too_much = vec![ShareRequest { bank: "tulpar".into(), client_id: bolat.clone(), amount_tiyn: tiyn(101_00) }];
    assert_eq!(
        platform.report_occurrence(None, &token, &sale.id, occurred(Some(too_much))).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    let bolat_only = vec![ShareRequest { bank: "tulpar".into(), client_id: bolat.clone(), amount_tiyn: tiyn(100_00) }];
    let released =
        platform.report_occurrence(Some(&idem("occ-1")), &token, &sale.id, occurred(Some(bolat_only.clone()))).unwrap();
    assert_eq!(released.event.status, EventStatus::Completed);
    assert_eq!((released.event.released_tiyn, released.event.returned_tiyn), (tiyn(100_00), tiyn(50_00)));
    assert!(!released.repeated && released.tx_id.is_some());
    // The same occurrence again, with another key or none: the first answer, nothing paid
    // again; another occurrence of the single event: refused.
    let repeated = platform.report_occurrence(None, &token, &sale.id, occurred(None)).unwrap();
    assert!(repeated.repeated);
    assert_eq!(repeated.tx_id, released.tx_id);
    let another = OccurrenceRequest { occurrence_id: "transfer-2".into(), ..occurred(None) };
    assert_eq!(platform.report_occurrence(None, &token, &sale.id, another).unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(dt(&platform, "tulpar", &bolat), 100_00);
    assert_eq!(dt(&platform, "sapa", &dana), 0);
    assert_eq!(dt(&platform, "steppe", &aigerim), 400_00);

    // Expiry: one event held and one never held, both past their hour once the clock moves.
    let lease = platform.register_event(None, &token, event(HOUR_MS)).unwrap().event;
    let idle = platform.register_event(None, &token, event(HOUR_MS)).unwrap().event;
    platform.hold(None, "steppe", HoldRequest { event_id: lease.id.clone(), amount_tiyn: None }).unwrap();
    assert_eq!(platform.balance("steppe", &aigerim).unwrap().dt_held_tiyn, tiyn(150_00));
    assert!(platform.expire_due_events().is_empty(), "nothing is due yet");
    assert_eq!(platform.advance_clock(None, 10 * 366 * 24 * HOUR_MS).unwrap_err().code, ErrorCode::MalformedInput);
    let moved = platform.advance_clock(Some(&idem("advance-1")), 2 * HOUR_MS).unwrap();
    assert_eq!(moved.now_unix_ms, MONDAY_MS + 2 * HOUR_MS);
    assert_eq!(moved.expired_events, vec![lease.id.clone(), idle.id.clone()]);
    // A retry with the key: the first answer, the clock not moved again.
    let retried = platform.advance_clock(Some(&idem("advance-1")), 2 * HOUR_MS).unwrap();
    assert_eq!((retried.now_unix_ms, &retried.expired_events), (moved.now_unix_ms, &moved.expired_events));
    assert_eq!(platform.now_ms(), MONDAY_MS + 2 * HOUR_MS);
    let other = Idem { key: "advance-1".into(), fingerprint: Hash32([9; 32]) };
    assert_eq!(platform.advance_clock(Some(&other), 1).unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    let balance = platform.balance("steppe", &aigerim).unwrap();
    assert_eq!((balance.dt_tiyn, balance.dt_held_tiyn), (tiyn(400_00), Amount::ZERO));
    let lease = platform.oracle_event(&lease.id).unwrap().event;
    assert_eq!((lease.status, lease.returned_tiyn), (EventStatus::Expired, tiyn(150_00)));
    // Too late to confirm, and too late to hold.
    assert_eq!(
        platform.report_occurrence(None, &token, &idle.id, occurred(None)).unwrap_err().code,
        ErrorCode::EventExpired
    );
    let late = platform.register_event(None, &token, event(HOUR_MS)).unwrap().event;
    assert_eq!(platform.advance_clock(None, 2 * HOUR_MS).unwrap().expired_events, vec![late.id.clone()]);
    assert_eq!(
        platform.hold(None, "steppe", HoldRequest { event_id: late.id.clone(), amount_tiyn: None }).unwrap_err().code,
        ErrorCode::EventExpired
    );
    assert!(platform.expire_due_events().is_empty());

    // Listings, newest first.
    let all = platform.oracle_events(None, 0, 10).unwrap();
    assert_eq!((all.total, all.events[0].id.as_str()), (4, late.id.as_str()));
    assert_eq!(platform.oracle_events(Some(EventStatus::Expired), 0, 10).unwrap().total, 3);
    assert_eq!(platform.oracle_events(Some(EventStatus::Completed), 0, 10).unwrap().events[0].id, sale.id);
    assert_eq!(platform.oracle_events(None, 3, 10).unwrap().events.len(), 1);
    assert_eq!(platform.oracle_events(None, 0, 0).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(platform.oracle_event("EV404").unwrap_err().code, ErrorCode::NotFound);

    let reconciliation = platform.reconcile();
    assert!(reconciliation.ok, "{:?}", reconciliation.problems);
    assert!(platform.assembly().reconcile().is_empty());
    platform.shutdown();
}

#[test]
fn a_blocked_bank_holds_nothing_and_the_system_clock_does_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MONDAY_MS));
    let platform = Platform::open(dir.path(), clock.clone(), Entropy::from_seed(7)).unwrap();
    let aigerim = id("90010130000");
    let bolat = id("85020240001");
    let at = person(&platform, "steppe", &aigerim, "Aigerim Seitova");
    person(&platform, "tulpar", &bolat, "Bolat Nurlanov");
    platform.assembly().fund("steppe", tiyn(100_00), WAIT).unwrap();
    pay(&platform, "steppe", at, 100_00).unwrap();
    let kind = ProviderKind::ContractPortal;
    let token = platform
        .register_provider(None, ProviderRequest { id: "portal".into(), name: "Portal".into(), kind })
        .unwrap()
        .token;
    let request = EventRequest {
        reference: "loan 7".into(),
        kind: EventKind::Single,
        sender: PartyRef { bank: "steppe".into(), client_id: aigerim.clone() },
        payees: vec![ShareRequest { bank: "tulpar".into(), client_id: bolat, amount_tiyn: tiyn(40_00) }],
        valid_for_ms: HOUR_MS,
        confirmed_by: Some("someone-else".into()),
    };
    assert_eq!(platform.register_event(None, &token, request.clone()).unwrap_err().code, ErrorCode::NotFound);
    // Registered by the portal, confirmed by the registry; a key answers the first event.
    let registry =
        ProviderRequest { id: "registry".into(), name: "Registry".into(), kind: ProviderKind::VehicleRegistry };
    let registry = platform.register_provider(None, registry).unwrap().token;
    let request = EventRequest { confirmed_by: Some("registry".into()), ..request };
    let event = platform.register_event(Some(&idem("event-1")), &token, request.clone()).unwrap().event;
    assert_eq!(event.terms.confirmed_by, "registry");
    assert_eq!(platform.register_event(Some(&idem("event-1")), &token, request.clone()).unwrap().event.id, event.id);
    let other = Idem { key: "event-1".into(), fingerprint: Hash32([2; 32]) };
    let reused = platform.register_event(Some(&other), &token, request.clone()).unwrap_err();
    assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(platform.oracle_events(None, 0, 10).unwrap().total, 1);
    platform.block(None, "steppe", BlockRequest { reason: "audit".into() }).unwrap();
    let hold = HoldRequest { event_id: event.id.clone(), amount_tiyn: None };
    assert_eq!(platform.hold(None, "steppe", hold.clone()).unwrap_err().code, ErrorCode::BankBlocked);
    assert_eq!(platform.balance("steppe", &aigerim).unwrap().dt_held_tiyn, Amount::ZERO);
    platform.unblock(None, "steppe").unwrap();
    assert_eq!(platform.hold(None, "steppe", hold).unwrap().event.held_tiyn, tiyn(40_00));
    let rejected = OccurrenceRequest {
        occurrence_id: "refused-1".into(),
        outcome: OccurrenceOutcome::Rejected,
        payouts: None,
        reason: Some("the registry refuses the transfer".into()),
    };
    let by_portal = platform.report_occurrence(None, &token, &event.id, rejected.clone()).unwrap_err();
    assert_eq!(by_portal.code, ErrorCode::Forbidden, "the portal does not confirm this event");
    let returned = platform.report_occurrence(None, &registry, &event.id, rejected).unwrap();
    assert_eq!((returned.event.status, returned.event.returned_tiyn), (EventStatus::Rejected, tiyn(40_00)));
    assert_eq!(returned.event.reason.as_deref(), Some("the registry refuses the transfer"));
    assert_eq!(returned.event.terms.registered_at_unix_ms, MONDAY_MS);
    assert_eq!(platform.balance("steppe", &aigerim).unwrap().dt_held_tiyn, Amount::ZERO);
    // The clock moves without the platform's call: the sweep (or the oracle's own tick, first)
    // returns what a held event holds.
    let request = EventRequest { confirmed_by: None, ..request };
    let lease = platform.register_event(None, &token, request).unwrap().event;
    platform.hold(None, "steppe", HoldRequest { event_id: lease.id.clone(), amount_tiyn: None }).unwrap();
    assert!(clock.advance_ms(2 * HOUR_MS));
    for (id, result) in platform.expire_due_events() {
        assert_eq!(id, lease.id);
        result.unwrap();
    }
    platform.assembly().settle(WAIT).unwrap();
    let lease = platform.oracle_event(&lease.id).unwrap().event;
    assert_eq!((lease.status, lease.returned_tiyn), (EventStatus::Expired, tiyn(40_00)));
    assert_eq!(platform.balance("steppe", &aigerim).unwrap().dt_spendable_tiyn, tiyn(100_00));
    assert!(platform.reconcile().ok);
    platform.shutdown();

    let other = tempfile::tempdir().unwrap();
    let system = Platform::open(other.path(), Arc::new(SystemClock), Entropy::from_seed(8)).unwrap();
    assert_eq!(system.advance_clock(None, 1).unwrap_err().code, ErrorCode::Forbidden);
    system.shutdown();
}
