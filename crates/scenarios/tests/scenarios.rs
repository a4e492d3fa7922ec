//! One integration test per SPEC §4 sub-scenario, each on a fresh platform in this process,
//! driven through the REST API exactly as `dtenge demo` drives them.

use dtenge_core::calendar::Date;
use dtenge_env::{Entropy, ManualClock};
use dtenge_scenarios::{run, Platform, World, SCENARIOS};
use std::sync::Arc;

/// Monday 2026-11-23, 10:00 in Astana: an operational day.
fn working_day_ms() -> u64 {
    (Date::new(2026, 11, 23).unwrap().days() as u64 * 86_400 + 5 * 3600) * 1000
}

fn start() -> (tempfile::TempDir, Platform) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(working_day_ms()));
    let platform = Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock, Entropy::from_seed(7)).unwrap();
    (dir, platform)
}

fn scenario(index: usize) {
    let (_dir, platform) = start();
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let outcome = run(&world, &SCENARIOS[index]);
    for line in &outcome.lines {
        println!("  {line}");
    }
    assert!(outcome.passed, "{} {}: {:?}", outcome.section(), outcome.title, outcome.failure);
}

macro_rules! scenario_tests {
    ($($name:ident = $index:expr;)*) => {
        $(#[test] fn $name() { scenario($index); })*
        #[test]
        fn every_scenario_has_a_test() {
            assert_eq!([$($index),*].len(), SCENARIOS.len());
        }
    };
}

scenario_tests! {
    s01_open_account_legal_entity = 0;
    s02_open_account_individual = 1;
    s03_bank_nbk_emission_via_abs = 2;
    s04_legal_entity_to_dt = 3;
    s05_individual_to_dt = 4;
    s06_voucher_school_pays_canteen = 5;
    s07_registry_distribution_10000_lines = 6;
    s08_phone_transfer_within_and_between_banks = 7;
    s09_card_purchase_in_dt = 8;
    s10_card_purchase_with_conversion = 9;
    s11_legal_entity_from_dt = 10;
    s12_individual_from_dt = 11;
    s13_bank_nbk_redemption = 12;
    s14_monitoring = 13;
    s15_blocking_a_bank = 14;
    s16_operational_day = 15;
    refunds = 16;
    atm_withdrawal = 17;
    history_names = 18;
    treasury = 19;
    idempotency_and_errors = 20;
    h01_vehicle_sale_escrow = 21;
    h02_vehicle_sale_timeout_and_rejection = 22;
    h03_farm_animals_several_sellers = 23;
    h04_investment_subsidy_180_days = 24;
    h05_infinite_event_transit_fares = 25;
    h06_holding_bad_input = 26;
    m01_national_fund_tranche = 27;
    m02_road_repair = 28;
    m03_procurement_contracts = 29;
    v01_digital_vat_worked_example = 30;
    p01_split_payment_taxi = 31;
}

#[test]
fn all_scenarios_in_one_network_then_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(working_day_ms()));
    let before = {
        let platform =
            Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock.clone(), Entropy::from_seed(8)).unwrap();
        let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
        let outcomes = dtenge_scenarios::run_all(&world, |_| {});
        let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).map(|o| (o.id, o.failure.clone())).collect();
        assert!(failed.is_empty(), "{failed:?}");
        world.client.get("/v1/operator/monitoring").unwrap()
    };
    let platform = Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock, Entropy::from_seed(9)).unwrap();
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let mut after = world.client.get("/v1/operator/monitoring").unwrap();
    after["at_unix_ms"] = before["at_unix_ms"].clone();
    assert_eq!(before, after, "monitoring totals changed across a restart");
    world.reconciled().unwrap();
}

#[test]
fn openapi_describes_every_route_and_docs_are_served() {
    let (_dir, platform) = start();
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let spec = world.client.get("/openapi.json").unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/v1/nodes/{node}/accounts",
        "/v1/nodes/{node}/transfers",
        "/v1/nodes/{node}/transactions",
        "/v1/nodes/{node}/accounts/{client}/consolidations",
        "/v1/nodes/{node}/accounts/{client}/consolidation",
        "/v1/nodes/{node}/registries",
        "/v1/nodes/{node}/emissions",
        "/v1/nodes/{node}/redemptions",
        "/v1/card-purchases",
        "/v1/atm-withdrawals",
        "/v1/voucher-programs/{id}/events",
        "/v1/operator/reconciliation",
        "/v1/operator/nodes/{node}/block",
        "/v1/operator/calendar/days/{date}",
    ] {
        assert!(paths.contains_key(path), "{path} missing from /openapi.json");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if method == "post" || method == "put" {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                assert!(
                    params.iter().any(|p| p["name"] == "Idempotency-Key"),
                    "{method} {path} does not document Idempotency-Key"
                );
            }
        }
    }
    let docs = ureq::get(&format!("{}/docs/", platform.base_url())).call().unwrap().into_string().unwrap();
    assert!(docs.contains("swagger"), "the docs page is not Swagger UI");
}

/// Issue 19, money edges: a custodial client's wallet made of more than 1,024 tokens is
/// merged through the API (`POST .../consolidations`, keyed like every change), and by its
/// bank in the background, until its balance is paid whole by one transfer; its balance and
/// history do not change on the way. A client keeping its own key is told to sign its own.
#[test]
fn a_fragmented_wallet_is_consolidated_through_the_api_and_then_paid_whole() {
    use dtenge_api::types::{AmountRequest, OpenAccount, RegistryLine, RegistryRequest};
    use dtenge_core::money::Amount;
    const TOKENS: u64 = 1_100;
    let (_dir, platform) = start();
    let roles = &platform.roles;
    let (payer, payee, self_keyed) = (World::iin(79, 1), World::iin(79, 2), World::iin(79, 3));
    for (client, key) in [(&payer, None), (&payee, None), (&self_keyed, Some([79; 32]))] {
        let account = OpenAccount {
            kind: dtenge_node::ClientKind::Individual,
            client_id: client.clone(),
            name: format!("Client {client}"),
            phone: None,
            public_key: key.map(|seed| dtenge_core::crypto::SecretKey::from_seed(seed).public_key()),
        };
        roles.open_account(None, "sapa", account).unwrap();
    }
    let funds = AmountRequest { amount_tiyn: Amount::from_tiyn(100_00).unwrap() };
    roles.credit_correspondent(None, "sapa", funds).unwrap();
    roles.emission(None, "sapa", funds).unwrap();
    let lines = (0..TOKENS)
        .map(|_| RegistryLine {
            phone: None,
            client_id: Some(payer.clone()),
            bank: Some("sapa".into()),
            amount_tiyn: Amount::from_tiyn(1).unwrap(),
        })
        .collect();
    let report =
        roles.distribute_registry(None, "sapa", RegistryRequest { from: "own".into(), reference: None, lines });
    assert_eq!(report.unwrap().lines_paid as u64, TOKENS);
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let account = |client: &str| world.client.get(&format!("/v1/nodes/sapa/accounts/{client}")).unwrap();
    let lines_of =
        |client: &str| world.client.get(&format!("/v1/nodes/sapa/accounts/{client}/history")).unwrap()["total"].clone();
    let history_before = lines_of(&payer);

    let path = format!("/v1/nodes/sapa/accounts/{payer}/consolidations");
    let merged = world.client.post_with_key(&path, &serde_json::json!({}), "merge-79").unwrap();
    assert_eq!(merged["inputs_per_payment_max"], 1_024, "{merged}");
    assert!(merged["tx_id"].is_string() && merged["spendable_tokens"].as_u64().unwrap() < TOKENS, "{merged}");
    let again = world.client.post_with_key(&path, &serde_json::json!({}), "merge-79").unwrap();
    assert_eq!(again["tx_id"], merged["tx_id"], "one key, one consolidation");
    let unknown_field = world.client.post(&path, &serde_json::json!({"all": true})).unwrap_err();
    assert_eq!(unknown_field.code, "MALFORMED_INPUT");
    let own_key =
        world.client.post(&format!("/v1/nodes/sapa/accounts/{self_keyed}/consolidations"), &serde_json::json!({}));
    assert_eq!(own_key.unwrap_err().code, "FORBIDDEN");
    // A client keeping its own key is offered the merge to sign (issue 20) and submits it as
    // any transfer it signs; a custodial client is told that its bank merges for it.
    let offer_path = format!("/v1/nodes/sapa/accounts/{self_keyed}/consolidation");
    assert_eq!(world.client.get(&offer_path).unwrap_err().code, "CONFLICT", "no tokens yet");
    let few = (0..3)
        .map(|_| RegistryLine {
            phone: None,
            client_id: Some(self_keyed.clone()),
            bank: Some("sapa".into()),
            amount_tiyn: Amount::from_tiyn(7).unwrap(),
        })
        .collect();
    roles
        .distribute_registry(None, "sapa", RegistryRequest { from: "own".into(), reference: None, lines: few })
        .unwrap();
    let offer = world.client.get(&offer_path).unwrap();
    let mut merge: dtenge_core::tx::Transaction = serde_json::from_value(offer).unwrap();
    assert_eq!((merge.body.inputs.len(), merge.body.outputs.len()), (3, 1));
    merge.sign_owner(&dtenge_core::crypto::SecretKey::from_seed([79; 32]));
    world.client.post("/v1/nodes/sapa/transactions", &serde_json::to_value(&merge).unwrap()).unwrap();
    let merged_self = account(&self_keyed);
    assert_eq!(
        (merged_self["balance"]["dt_tiyn"].as_u64(), merged_self["balance"]["tokens"].as_u64()),
        (Some(21), Some(1))
    );
    let custodial_offer = world.client.get(&format!("/v1/nodes/sapa/accounts/{payer}/consolidation")).unwrap_err();
    assert_eq!(custodial_offer.code, "FORBIDDEN");
    // The bank merges the rest itself; the whole balance is then one transfer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pay_whole =
        serde_json::json!({"from": payer, "to": {"client_id": payee, "bank": "sapa"}, "amount_tiyn": TOKENS});
    loop {
        match world.client.post("/v1/nodes/sapa/transfers", &pay_whole) {
            Ok(_) => break,
            // A consolidation of the bank's own in flight reserves tokens: retry.
            Err(e) if e.code == "FUNDS_IN_FLIGHT" || e.code == "LIMIT_EXCEEDED" => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(account(&payer)["balance"]["dt_tiyn"], 0);
    assert_eq!(account(&payee)["balance"]["dt_tiyn"], TOKENS);
    assert_eq!(lines_of(&payer), serde_json::json!(history_before.as_u64().unwrap() + 1), "only the payment's line");
    let nothing = world.client.post(&path, &serde_json::json!({})).unwrap_err();
    assert_eq!(nothing.code, "CONFLICT", "{nothing}");
    world.reconciled().unwrap();
}

/// Issue 19, lists: a node's accounts come a page at a time (default 100, at most 1,000), in
/// client id order, each once, following `next_after`; a larger page is refused. (The build
/// before answered every account in one response: 16,000 of them were 7 MB.)
#[test]
fn a_nodes_accounts_come_a_bounded_page_at_a_time() {
    let (_dir, platform) = start();
    let requests: Vec<dtenge_api::types::OpenAccount> = (0..250)
        .map(|n| dtenge_api::types::OpenAccount {
            kind: dtenge_node::ClientKind::Individual,
            client_id: World::iin(77, n),
            name: format!("Client {n}"),
            phone: None,
            public_key: None,
        })
        .collect();
    platform.roles.open_accounts(None, "sapa", requests).unwrap();
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let first = world.client.get("/v1/nodes/sapa/accounts").unwrap();
    assert_eq!(first["accounts"].as_array().unwrap().len(), dtenge_api::platform::ACCOUNTS_PAGE_DEFAULT);
    let mut ids: Vec<String> = Vec::new();
    let mut path = "/v1/nodes/sapa/accounts?limit=50".to_string();
    for _ in 0..10 {
        let page = world.client.get(&path).unwrap();
        ids.extend(page["accounts"].as_array().unwrap().iter().map(|a| a["account"]["client_id"].to_string()));
        match page["next_after"].as_str() {
            Some(after) => path = format!("/v1/nodes/sapa/accounts?limit=50&after={after}"),
            None => break,
        }
    }
    let total = platform.roles.accounts("sapa").unwrap().len();
    assert!(total > 250);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((ids.len(), sorted), (total, ids.clone()), "every account once, in order");
    let refused = world.client.get("/v1/nodes/sapa/accounts?limit=1001").unwrap_err();
    assert_eq!(refused.code, "MALFORMED_INPUT", "{refused:?}");
}

/// Issue 19, point 6: every other list comes a bounded page at a time too. A client holds 620
/// tokens (more than the largest page, [`dtenge_api::platform::LIST_PAGE_MAX`]): a page never
/// holds more than its limit, `total` counts them all, and the pages cover every token exactly
/// once; a limit over the largest page is refused `MALFORMED_INPUT` on every list (tokens,
/// holds, notifications, NBK operations, voucher programmes, providers, VAT payers, VAT
/// payments). (The build before answered the tokens, the holds, the programmes, the providers
/// and the VAT lists whole, and cut a too-large page of operations silently.)
#[test]
fn every_list_comes_a_bounded_page_at_a_time() {
    use dtenge_api::platform::{LIST_PAGE_DEFAULT, LIST_PAGE_MAX, PAGE_LIMIT_MAX};
    use dtenge_api::types::{AmountRequest, OpenAccount, RegistryLine, RegistryRequest};
    use dtenge_core::money::Amount;
    const TOKENS: usize = 620;
    let (_dir, platform) = start();
    let roles = &platform.roles;
    let payee = World::iin(78, 1);
    let account = OpenAccount {
        kind: dtenge_node::ClientKind::Individual,
        client_id: payee.clone(),
        name: "Many Tokens".into(),
        phone: None,
        // Keeps its own key: its bank does not consolidate its 620 tokens in the background
        // (a custodial account is merged above `CONSOLIDATE_ABOVE_TOKENS`).
        public_key: Some(dtenge_core::crypto::SecretKey::from_seed([78; 32]).public_key()),
    };
    roles.open_account(None, "sapa", account).unwrap();
    let funds = AmountRequest { amount_tiyn: Amount::from_tiyn(10_000_00).unwrap() };
    roles.credit_correspondent(None, "sapa", funds).unwrap();
    // Two emissions, so that a page of one operation is not the whole list.
    let half = AmountRequest { amount_tiyn: Amount::from_tiyn(5_000_00).unwrap() };
    roles.emission(None, "sapa", half).unwrap();
    roles.emission(None, "sapa", half).unwrap();
    // One registry line is one token: the bank's own account pays the client 620 of them.
    let lines = (0..TOKENS)
        .map(|_| RegistryLine {
            phone: None,
            client_id: Some(payee.clone()),
            bank: Some("sapa".into()),
            amount_tiyn: Amount::from_tiyn(1_00).unwrap(),
        })
        .collect();
    let request = RegistryRequest { from: "own".into(), reference: None, lines };
    let report = roles.distribute_registry(None, "sapa", request).unwrap();
    assert_eq!(report.lines_paid, TOKENS, "every line paid");
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let tokens = format!("/v1/nodes/sapa/accounts/{payee}/tokens");

    let first = world.client.get(&tokens).unwrap();
    assert_eq!(first["tokens"].as_array().unwrap().len(), LIST_PAGE_DEFAULT);
    assert_eq!(first["total"], TOKENS);
    for limit in [LIST_PAGE_MAX, 7] {
        let mut seen: Vec<String> = Vec::new();
        let mut offset = 0;
        // Bounded: more pages than this would mean a page that does not move on.
        for _ in 0..=TOKENS.div_ceil(limit) {
            let page = world.client.get(&format!("{tokens}?offset={offset}&limit={limit}")).unwrap();
            let items = page["tokens"].as_array().unwrap();
            assert!(items.len() <= limit, "a page of {} for a limit of {limit}", items.len());
            assert_eq!(page["total"], TOKENS);
            seen.extend(items.iter().map(|i| format!("{}#{}", i["tx_id"], i["index"])));
            offset += limit;
            if offset >= TOKENS {
                break;
            }
        }
        let mut once = seen.clone();
        once.sort();
        once.dedup();
        assert_eq!((seen.len(), once.len()), (TOKENS, TOKENS), "every token exactly once at a limit of {limit}");
    }
    let all = world.client.get(&format!("{tokens}?all=true&limit={LIST_PAGE_MAX}")).unwrap();
    assert_eq!(all["tokens"].as_array().unwrap().len(), LIST_PAGE_MAX);

    let holds = world.client.get(&format!("/v1/nodes/sapa/accounts/{payee}/holds?limit=10")).unwrap();
    assert_eq!((holds["total"].as_u64(), holds["limit"].as_u64()), (Some(0), Some(10)), "{holds}");
    let operations = world.client.get("/v1/operator/operations?limit=1").unwrap();
    assert_eq!(operations["operations"].as_array().unwrap().len(), 1);
    assert_eq!(operations["total"].as_u64(), Some(2), "{operations}");

    let over = LIST_PAGE_MAX + 1;
    let refused = [
        format!("{tokens}?limit={over}"),
        format!("{tokens}?limit=0"),
        format!("/v1/nodes/sapa/accounts/{payee}/holds?limit={over}"),
        format!("/v1/nodes/sapa/notifications?limit={}", PAGE_LIMIT_MAX + 1),
        format!("/v1/operator/operations?limit={over}"),
        format!("/v1/voucher-programs?limit={over}"),
        format!("/v1/oracle/providers?limit={over}"),
        format!("/v1/oracle/vat-payers?limit={over}"),
        format!("/v1/oracle/vat-payments?limit={over}"),
    ];
    for path in refused {
        let e = world.client.get(&path).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "MALFORMED_INPUT"), "{path}: {e:?}");
    }
    for (path, field) in [
        ("/v1/voucher-programs", "programs"),
        ("/v1/oracle/providers", "providers"),
        ("/v1/oracle/vat-payers", "payers"),
        ("/v1/oracle/vat-payments", "payments"),
    ] {
        let page = world.client.get(&format!("{path}?limit=1")).unwrap();
        assert!(page[field].as_array().unwrap().len() <= 1, "{path}: {page}");
        assert!(page["total"].is_u64(), "{path}: {page}");
    }
}

/// Issue 19, point 8: an idempotency key is its caller's own. A bank's systems and the NBK's
/// operator use the same key for two different calls: each is done, neither is refused for the
/// other's (the build before kept one namespace for every caller, so the first caller to use a
/// key took it: the second got `IDEMPOTENCY_KEY_REUSED`, or the first's answer). Within one
/// caller a key still answers its first request and refuses another.
#[test]
fn an_idempotency_key_is_its_callers_own() {
    let (_dir, platform) = start();
    let world = World::new(&platform.base_url(), &platform.credentials_dir()).unwrap();
    let open = |n: u32| serde_json::json!({"kind": "individual", "client_id": World::iin(78, n), "name": format!("Keyed {n}")});
    // bank:steppe's systems open an account under "shared-1".
    let first = world.client.post_with_key("/v1/nodes/steppe/accounts", &open(1), "shared-1").unwrap();
    // operator:nbk credits a correspondent account under the same key: done, not refused.
    let credit = serde_json::json!({"amount_tiyn": 12_345});
    let credited = world.client.post_with_key("/v1/abs/correspondent/sapa/credits", &credit, "shared-1").unwrap();
    assert!(credited.get("error").is_none(), "{credited}");
    // Each caller's retry gets its own first answer.
    let again = world.client.post_with_key("/v1/nodes/steppe/accounts", &open(1), "shared-1").unwrap();
    assert_eq!(again, first);
    let again = world.client.post_with_key("/v1/abs/correspondent/sapa/credits", &credit, "shared-1").unwrap();
    assert_eq!(again, credited);
    // Within a caller, the key with another request is refused.
    let reused = world.client.post_with_key("/v1/nodes/steppe/accounts", &open(2), "shared-1").unwrap_err();
    assert_eq!((reused.status, reused.code.as_str()), (422, "IDEMPOTENCY_KEY_REUSED"), "{reused}");
    // Another bank's systems use the key on their own node: theirs too.
    world.client.post_with_key("/v1/nodes/tulpar/accounts", &open(3), "shared-1").unwrap();
    assert!(platform.roles.balance("tulpar", &World::iin(78, 3)).is_ok());
}
