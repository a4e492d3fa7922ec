//! The consoles in a real browser: starts the platform with known console users, then runs
//! `tests/browser/consoles.mjs` (playwright-core driving headless Debian Chromium) against
//! it. Screenshots of every console page land in `target/screenshots/`.
//!
//! `bash scripts/test.sh` installs Chromium and the script's Node package when they are
//! missing; run it once before `cargo test` on a fresh machine. A missing browser fails this
//! test rather than skipping it.

use dtenge_console::auth::Role;
use dtenge_core::calendar::Date;
use dtenge_env::{Entropy, ManualClock};
use dtenge_scenarios::Platform;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn consoles_work_in_a_real_browser() {
    let root = repo();
    let script_dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists() && script_dir.join("node_modules/playwright-core").exists(),
        "the browser tests need Chromium ({chromium}) and tests/browser/node_modules: run `bash scripts/test.sh`, which installs them"
    );

    let dir = tempfile::tempdir().unwrap();
    // Monday 2026-11-23, 10:00 in Astana: emissions need an operational day.
    let now = (Date::new(2026, 11, 23).unwrap().days() as u64 * 86_400 + 5 * 3_600) * 1_000;
    let clock = Arc::new(ManualClock::new(now));
    let platform = Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock, Entropy::from_seed(31)).unwrap();
    let console = &platform.console;
    let open = dtenge_api::types::OpenAccount {
        kind: dtenge_node::ClientKind::Individual,
        client_id: "900101300007".into(),
        name: "Aigerim Seitova".into(),
        phone: Some("+77011234567".into()),
        public_key: None,
    };
    let roles = &platform.roles;
    roles.open_account(None, "steppe", open).unwrap();
    let open = |bank: &str, kind, id: &str, name: &str, phone: Option<&str>| {
        let request = dtenge_api::types::OpenAccount {
            kind,
            client_id: id.into(),
            name: name.into(),
            phone: phone.map(str::to_string),
            public_key: None,
        };
        roles.open_account(None, bank, request).unwrap();
    };
    let give = |bank: &str, client: &str, tiyn: u64| {
        let amount =
            dtenge_api::types::AmountRequest { amount_tiyn: dtenge_core::money::Amount::from_tiyn(tiyn).unwrap() };
        roles.credit_correspondent(None, bank, amount).unwrap();
        roles.emission(None, bank, amount).unwrap();
        roles.deposit_fiat(None, bank, client, amount).unwrap();
        roles.convert_to_dt(None, bank, client, amount).unwrap();
    };
    use dtenge_node::ClientKind::{GovernmentAgency, Individual, LegalEntity};
    let bin = |n: u64| dtenge_node::ids::complete_iin_bin(&format!("{:011}", 18_034_000_000 + n)).unwrap();
    let (employer, ministry, contractor, supplier, new_agency) = (bin(2), bin(3), bin(4), bin(5), bin(6));
    open("sapa", Individual, "850202400010", "Saule Omarova", Some("+77027654321"));
    open("steppe", LegalEntity, &employer, "Steppe Employer LLP", None);
    open("treasury", GovernmentAgency, &ministry, "Ministry of Energy", None);
    open("tulpar", LegalEntity, &contractor, "General Contractor LLP", None);
    open("sapa", LegalEntity, &supplier, "Final Supplier LLP", None);
    // Issue 19: more clients at Steppe than one page of the officer's list (20) holds, each
    // after Aigerim in client id order, so that her row stays on the first page.
    let many: Vec<dtenge_api::types::OpenAccount> = (0..100u64)
        .filter_map(|n| dtenge_node::ids::complete_iin_bin(&format!("9501013{n:04}")))
        .take(25)
        .enumerate()
        .map(|(i, id)| dtenge_api::types::OpenAccount {
            kind: Individual,
            client_id: id,
            name: format!("Paged Client {i}"),
            phone: None,
            public_key: None,
        })
        .collect();
    assert_eq!(many.len(), 25);
    roles.open_accounts(None, "steppe", many).unwrap();
    give("steppe", "900101300007", 10_000_00);
    give("steppe", &employer, 50_000_00);
    give("treasury", &ministry, 1_000_000_00);
    let users = [
        ("operator", Role::Operator),
        ("treasury", Role::Treasury),
        ("steppe-officer", Role::BankOfficer { bank: "steppe".into() }),
        ("aigerim", Role::Client { bank: "steppe".into(), client_id: "900101300007".into() }),
    ];
    let mut passwords = serde_json::Map::new();
    for (username, role) in users {
        let password = format!("{username}-browser-test-password");
        let name = if username == "aigerim" { "Aigerim Seitova" } else { username };
        console.put_user(username, name, role, &password).unwrap();
        passwords.insert(username.into(), password.into());
    }

    // The REST API's clients, for the script's own calls beside the consoles.
    let api = platform.client().unwrap();
    let mut tokens = serde_json::Map::new();
    for node in ["steppe", "tulpar", "sapa", "treasury"] {
        let path = format!("/v1/nodes/{node}/accounts");
        tokens.insert(format!("bank:{node}"), api.authorization("GET", &path).unwrap().unwrap().into());
    }
    tokens.insert("operator".into(), api.authorization("GET", "/v1/operator/monitoring").unwrap().unwrap().into());

    let screenshots = root.join("target/screenshots");
    let output = Command::new("node")
        .arg("consoles.mjs")
        .current_dir(&script_dir)
        .env("BASE_URL", platform.base_url())
        .env("USERS", serde_json::Value::Object(passwords).to_string())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .env("TOKENS", serde_json::Value::Object(tokens).to_string())
        .env("EMPLOYER", &employer)
        .env("MINISTRY", &ministry)
        .env("CONTRACTOR", &contractor)
        .env("SUPPLIER", &supplier)
        .env("NEW_AGENCY", &new_agency)
        .output()
        .expect("node runs (bash scripts/test.sh installs what the browser tests need)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "browser checks failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("checks passed"), "the browser script did not finish:\n{stdout}");

    // What the browser did is in the audit log, durably.
    let audit = console.audit_page(0, 500).unwrap();
    let ok = dtenge_audit::Outcome::Ok;
    assert!(audit.entries.iter().any(|e| e.action == "block_bank" && e.target == "tulpar" && e.outcome == ok));
    assert!(audit.entries.iter().any(|e| e.action == "sign_in" && e.outcome == dtenge_audit::Outcome::Failed));
}
