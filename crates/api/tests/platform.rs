//! The platform's operations on the roles: what the gateway, the consoles and the demo
//! scenarios call, with the roles on their own stores and threads.

use dtenge_api::platform::Idem;
use dtenge_api::platform::Platform;
use dtenge_api::types::{AmountRequest, OpenAccount};
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_core::money::Amount;
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::ClientKind;
use std::path::Path;
use std::sync::Arc;

/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;

fn open(dir: &Path) -> Platform {
    Platform::open(dir, Arc::new(ManualClock::new(MONDAY_MS)), Entropy::from_seed(7)).unwrap()
}

fn idem(key: &str) -> Idem {
    Idem { key: key.into(), fingerprint: Hash32([1; 32]) }
}

fn person(client_id: String, name: &str, phone: Option<&str>) -> OpenAccount {
    OpenAccount {
        kind: ClientKind::Individual,
        client_id,
        name: name.into(),
        phone: phone.map(str::to_string),
        public_key: None,
    }
}

/// A valid IIN/BIN from its first 11 digits.
fn id(prefix: &str) -> String {
    (0..10).find_map(|d| complete_iin_bin(&format!("{}{d}", &prefix[..10]))).unwrap()
}

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

#[test]
fn accounts_open_through_the_directory_once_and_read_from_their_bank() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open(dir.path());
    assert_eq!(platform.node_ids(), vec!["steppe", "tulpar", "sapa", "treasury"]);

    // A custodial account; asked again with the same key (through the gateway's memo, as
    // every face calls it): the same account, not a second.
    let open_once = || {
        platform.once(Some(idem("open-1")), |key| {
            platform.open_account(key, "steppe", person(id("90010130000"), "Aigerim Seitova", Some("+77011234567")))
        })
    };
    let first = open_once().unwrap();
    let again = open_once().unwrap();
    assert_eq!(first, again);
    // Without the key, or at another bank with a phone someone else holds: refused.
    let twice = platform.open_account(None, "steppe", person(id("90010130000"), "Aigerim Seitova", None)).unwrap_err();
    assert_eq!(twice.code, ErrorCode::DuplicateAccount);
    let taken_phone = platform
        .open_account(None, "tulpar", person(id("85020240001"), "Bolat Nurlanov", Some("+77011234567")))
        .unwrap_err();
    assert_eq!(taken_phone.code, ErrorCode::DuplicateAccount);
    // The same person at a second bank, with the same phone: allowed.
    platform.open_account(None, "sapa", person(id("90010130000"), "Aigerim Seitova", Some("+77011234567"))).unwrap();

    // A client who keeps its own key; a key that is not a curve point is refused.
    let key = SecretKey::from_seed([9; 32]);
    let mut own = person(id("85020240001"), "Bolat Nurlanov", None);
    own.public_key = Some(key.public_key());
    let bolat = platform.open_account(None, "tulpar", own).unwrap();
    assert_eq!(bolat.address, key.address());

    // Who opens what.
    let agency = OpenAccount { kind: ClientKind::GovernmentAgency, ..person(id("00074000130"), "Akimat", None) };
    assert_eq!(platform.open_account(None, "steppe", agency.clone()).unwrap_err().code, ErrorCode::Forbidden);
    platform.open_account(None, "treasury", agency).unwrap();
    assert_eq!(
        platform.open_account(None, "treasury", person(id("91030350001"), "Dana Omarova", None)).unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        platform.open_account(None, "nowhere", person(id("91030350001"), "Dana", None)).unwrap_err().code,
        ErrorCode::UnknownAccount
    );
    assert_eq!(
        platform.open_account(None, "steppe", person("123".into(), "Dana", None)).unwrap_err().code,
        ErrorCode::MalformedInput
    );

    // Bulk: all or none.
    let bulk = vec![person(id("91030350001"), "Dana Omarova", None), person(id("92040460001"), "Erlan Sadykov", None)];
    let opened = platform.open_accounts(None, "sapa", bulk).unwrap();
    assert_eq!(opened.len(), 2);
    let twice = vec![person(id("93050570001"), "Farida K", None), person(id("93050570001"), "Farida K", None)];
    assert_eq!(platform.open_accounts(None, "sapa", twice).unwrap_err().code, ErrorCode::DuplicateAccount);

    // Reads.
    let view = platform.account_view("steppe", &id("90010130000")).unwrap();
    assert_eq!(view.account, first);
    assert_eq!(view.bank_name, "Steppe Bank");
    assert_eq!(platform.accounts("sapa").unwrap().iter().filter(|v| v.account.client_id != "own").count(), 3);
    let balance = platform
        .deposit_fiat(None, "steppe", &id("90010130000"), AmountRequest { amount_tiyn: tiyn(5_000_00) })
        .unwrap();
    assert_eq!(balance.fiat_tiyn, tiyn(5_000_00));
    assert_eq!(platform.balance("steppe", &id("90010130000")).unwrap().fiat_tiyn, tiyn(5_000_00));
    let lookup = platform.lookup_phone("+7 701 123 45 67").unwrap();
    assert_eq!(lookup.display_name, "Aigerim S.");
    assert_eq!(lookup.banks.len(), 2);
    assert_eq!(platform.lookup_phone("+77000000000").unwrap_err().code, ErrorCode::UnknownAccount);
    assert_eq!(platform.history("steppe", &id("90010130000"), 0, 10).unwrap().total, 0);
    assert_eq!(platform.history("steppe", &id("90010130000"), 0, 0).unwrap_err().code, ErrorCode::MalformedInput);
    platform.shutdown();

    // Everything survives a restart.
    let platform = open(dir.path());
    assert_eq!(platform.account_view("tulpar", &id("85020240001")).unwrap().account, bolat);
    assert_eq!(platform.balance("steppe", &id("90010130000")).unwrap().fiat_tiyn, tiyn(5_000_00));
    platform.shutdown();
}
