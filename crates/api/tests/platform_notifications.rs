//! The platform's notifications on the roles: what the oracle tells the parties' banks of an
//! event, its hold and its occurrence, read from each bank newest first, and again after the
//! platform restarts.

use dtenge_api::platform::Idem;
use dtenge_api::platform::Platform;
use dtenge_api::types::{
    EventKind, EventRequest, HoldRequest, NotificationKind, NotificationPage, OccurrenceOutcome, OccurrenceRequest,
    OpenAccount, PartyRef, ProviderKind, ProviderRequest, ShareRequest,
};
use dtenge_bank::Request;
use dtenge_core::crypto::{Address, Hash32};
use dtenge_core::money::Amount;
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::{ClientKind, OWN_ACCOUNT};
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

/// A page as (seq, kind, client, amount), in the order given.
fn seen(page: &NotificationPage) -> Vec<(u64, NotificationKind, String, Amount)> {
    page.notifications.iter().map(|n| (n.seq, n.kind, n.client_id.clone(), n.amount_tiyn)).collect()
}

#[test]
fn an_event_its_hold_and_its_occurrence_are_told_to_both_banks_newest_first_and_after_a_restart() {
    use NotificationKind::*;
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    let (aigerim, bolat) = (id("90010130000"), id("85020240001"));
    let aigerim_at = person(&platform, "steppe", &aigerim, "Aigerim Seitova");
    person(&platform, "tulpar", &bolat, "Bolat Nurlanov");
    platform.assembly().fund("steppe", tiyn(1_000_00), WAIT).unwrap();
    let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(aigerim_at, tiyn(500_00))] };
    let bank = platform.assembly().bank("steppe").unwrap();
    bank.submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
    assert!(platform.notifications("steppe", 0, 10).unwrap().notifications.is_empty());

    let provider =
        ProviderRequest { id: "vehicles".into(), name: "Vehicle registry".into(), kind: ProviderKind::VehicleRegistry };
    let token = platform.register_provider(None, provider).unwrap().token;
    let request = EventRequest {
        reference: "VIN 1HGCM82633A004352".into(),
        kind: EventKind::Single,
        sender: PartyRef { bank: "steppe".into(), client_id: aigerim.clone() },
        payees: vec![ShareRequest { bank: "tulpar".into(), client_id: bolat.clone(), amount_tiyn: tiyn(150_00) }],
        valid_for_ms: 24 * HOUR_MS,
        confirmed_by: None,
    };
    let sale = platform.register_event(None, &token, request).unwrap().event;
    let held = platform
        .hold(Some(&idem("hold-1")), "steppe", HoldRequest { event_id: sale.id.clone(), amount_tiyn: None })
        .unwrap();
    let occurred = OccurrenceRequest {
        occurrence_id: "transfer-1".into(),
        outcome: OccurrenceOutcome::Occurred,
        payouts: None,
        reason: None,
    };
    let released = platform.report_occurrence(None, &token, &sale.id, occurred.clone()).unwrap();
    // The same occurrence again tells no one again.
    assert!(platform.report_occurrence(None, &token, &sale.id, occurred).unwrap().repeated);

    let check = |platform: &Platform| {
        let steppe = platform.notifications("steppe", 0, 10).unwrap();
        assert_eq!(
            seen(&steppe),
            [(1, FundsReleased, aigerim.clone(), tiyn(150_00)), (0, EventRegistered, aigerim.clone(), tiyn(150_00))],
            "the sender's bank, newest first"
        );
        assert_eq!((steppe.total, steppe.offset, steppe.limit), (2, 0, 10));
        let tulpar = platform.notifications("tulpar", 0, 10).unwrap();
        assert_eq!(
            seen(&tulpar),
            [
                (2, FundsReleased, bolat.clone(), tiyn(150_00)),
                (1, FundsHeld, bolat.clone(), tiyn(150_00)),
                (0, EventRegistered, bolat.clone(), tiyn(150_00)),
            ],
            "the payee's bank, newest first"
        );
        for n in steppe.notifications.iter().chain(&tulpar.notifications) {
            assert_eq!((n.subject_id.as_str(), n.at_unix_ms), (sale.id.as_str(), MONDAY_MS));
            assert!(n.text.contains(&sale.id) && n.text.contains("VIN 1HGCM82633A004352"), "{}", n.text);
        }
        assert_eq!(tulpar.notifications[1].tx_id, held.tx_id);
        assert_eq!(tulpar.notifications[0].tx_id, released.tx_id);
        assert_eq!(steppe.notifications[1].tx_id, None, "a registration moves no DT");
        assert_eq!(steppe.notifications[0].node, "steppe");
        // Paged: the second newest alone.
        let second = platform.notifications("tulpar", 1, 1).unwrap();
        assert_eq!((seen(&second), second.total), (vec![(1, FundsHeld, bolat.clone(), tiyn(150_00))], 3));
        assert!(platform.notifications("sapa", 0, 10).unwrap().notifications.is_empty(), "not a party");
        assert!(platform.notifications("tulpar", 3, 10).unwrap().notifications.is_empty());
        // Bad reads are refused.
        assert_eq!(platform.notifications("nowhere", 0, 10).unwrap_err().code, ErrorCode::UnknownAccount);
        assert_eq!(platform.notifications("steppe", 0, 0).unwrap_err().code, ErrorCode::MalformedInput);
        assert_eq!(platform.notifications("steppe", 0, 1_001).unwrap_err().code, ErrorCode::MalformedInput);
    };
    check(&platform);
    platform.shutdown();

    // The oracle keeps them in its store: the same after a restart.
    let platform = open(dir.path());
    check(&platform);
    platform.shutdown();
}
