//! The REST API knows its callers: without a token nothing but the public routes answers, a
//! bank's systems act for that bank only, the operator's routes are the operator's, and the
//! token endpoint gives tokens only for assertions signed by a certified client.

use dtenge_core::calendar::Date;
use dtenge_env::{Entropy, ManualClock};
use dtenge_scenarios::{Client, Platform, World};
use serde_json::{json, Value};
use std::sync::Arc;

fn working_day_ms() -> u64 {
    (Date::new(2026, 11, 23).unwrap().days() as u64 * 86_400 + 5 * 3600) * 1000
}

fn start() -> (tempfile::TempDir, Platform) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(working_day_ms()));
    let platform = Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock, Entropy::from_seed(61)).unwrap();
    (dir, platform)
}

/// A call with exactly this Authorization header (or none): its status and error code.
fn call(method: &str, url: &str, authorization: Option<&str>, body: Option<Value>) -> (u16, String) {
    let mut request = ureq::request(method, url).set("Idempotency-Key", &format!("auth-{}", rand_key()));
    if let Some(value) = authorization {
        request = request.set("Authorization", value);
    }
    let sent = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    match sent {
        Ok(response) => (response.status(), String::new()),
        Err(ureq::Error::Status(status, response)) => {
            let body: Value = response.into_json().unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().or(body["error"].as_str()).unwrap_or("").to_string())
        }
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn rand_key() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn dt_liability(world: &World) -> u64 {
    world.client.get("/v1/operator/monitoring").unwrap()["dt_liability_tiyn"].as_u64().unwrap()
}

#[test]
fn without_a_token_only_the_public_routes_answer_and_nothing_moves() {
    let (_dir, platform) = start();
    let base = platform.base_url();
    let world = World::new(&base, &platform.credentials_dir()).unwrap();
    let before = dt_liability(&world);
    let anonymous = Client::new(&base);
    assert_eq!(anonymous.get("/health").unwrap()["status"], "ok");
    assert!(anonymous.get("/v1/oracle/key").is_ok());
    assert!(anonymous.get("/openapi.json").is_ok());
    for (method, path) in [
        ("POST", "/v1/nodes/steppe/emissions"),
        ("POST", "/v1/abs/correspondent/steppe/credits"),
        ("POST", "/v1/operator/nodes/tulpar/block"),
        ("GET", "/v1/operator/monitoring"),
        ("GET", "/v1/nodes/steppe/accounts"),
    ] {
        let body = (method == "POST").then(|| json!({"amount_tiyn": 100_000_00}));
        assert_eq!(call(method, &format!("{base}{path}"), None, body.clone()), (401, "UNAUTHORIZED".into()), "{path}");
        assert_eq!(
            call(method, &format!("{base}{path}"), Some("Bearer not-a-token"), body),
            (401, "UNAUTHORIZED".into()),
            "{path} with a made-up token"
        );
    }
    assert_eq!(dt_liability(&world), before, "no emission happened");
    let blocked = world.client.get("/v1/operator/monitoring").unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["blocked"] == true);
    assert!(!blocked, "no bank was blocked");
}

#[test]
fn a_bank_acts_for_itself_only_and_the_operator_moves_no_clients_money() {
    let (_dir, platform) = start();
    let base = platform.base_url();
    let world = World::new(&base, &platform.credentials_dir()).unwrap();
    let sapa = world.client.authorization("POST", "/v1/nodes/sapa/transfers").unwrap().unwrap();
    let operator = world.client.authorization("GET", "/v1/operator/monitoring").unwrap().unwrap();
    let before = dt_liability(&world);

    let emission = json!({"amount_tiyn": 100_000_00});
    let url = |path: &str| format!("{base}{path}");
    assert_eq!(call("POST", &url("/v1/nodes/steppe/emissions"), Some(&sapa), Some(emission.clone())).0, 403);
    assert_eq!(call("GET", &url("/v1/nodes/steppe/accounts"), Some(&sapa), None).0, 403, "another bank's clients");
    assert_eq!(call("POST", &url("/v1/operator/nodes/tulpar/block"), Some(&sapa), Some(json!({}))).0, 403);
    assert_eq!(call("GET", &url("/v1/operator/monitoring"), Some(&sapa), None).0, 403);
    assert_eq!(
        call("POST", &url("/v1/nodes/steppe/emissions"), Some(&operator), Some(emission.clone())),
        (403, "FORBIDDEN".into()),
        "the operator does not act as a bank"
    );
    assert_eq!(dt_liability(&world), before, "nothing was emitted");

    // Each may do its own.
    assert_eq!(call("GET", &url("/v1/nodes/sapa/accounts"), Some(&sapa), None).0, 200);
    assert_eq!(call("GET", &url("/v1/operator/monitoring"), Some(&operator), None).0, 200);
}

fn post_form(url: &str, content_type: &str, form: &str) -> (u16, Value) {
    match ureq::post(url).set("Content-Type", content_type).send_string(form) {
        Ok(response) => (response.status(), response.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(status, response)) => (status, response.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

#[test]
fn the_token_endpoint_answers_only_a_fresh_assertion_of_a_certified_client() {
    let (_dir, platform) = start();
    let url = format!("{}{}", platform.base_url(), dtenge_api::access::TOKEN_PATH);
    let form = "application/x-www-form-urlencoded";
    let steppe = dtenge_api::access::load_credentials(
        &platform.credentials_dir(),
        &dtenge_auth::ApiClient::Bank("steppe".into()),
    )
    .unwrap();
    let now_s = dtenge_api::access::now_s();
    let assertion = steppe.assertion(dtenge_api::access::ISSUER, now_s, "auth-test-1");
    let request = dtenge_api::access::token_request_form(&assertion);

    let (status, body) = post_form(&url, form, &request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], dtenge_auth::ACCESS_TOKEN_LIFETIME_S);
    let token = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(call("GET", &format!("{}/v1/nodes/steppe/accounts", platform.base_url()), Some(&token), None).0, 200);

    let (status, body) = post_form(&url, form, &request);
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "a replayed assertion: {body}");
    let (status, body) = post_form(&url, form, &dtenge_api::access::token_request_form("a.b.c"));
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    let wrong_grant = request.replace("client_credentials", "password");
    let (status, body) = post_form(&url, form, &wrong_grant);
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (status, body) = post_form(&url, "application/json", "{}");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    // An assertion for another gateway.
    let elsewhere = steppe.assertion("urn:another:gateway", now_s, "auth-test-2");
    let (status, _) = post_form(&url, form, &dtenge_api::access::token_request_form(&elsewhere));
    assert_eq!(status, 401);
}

#[test]
fn the_operator_reads_the_gateways_metrics_and_no_one_else() {
    let (_dir, platform) = start();
    let base = platform.base_url();
    let world = World::new(&base, &platform.credentials_dir()).unwrap();
    world.client.get("/v1/operator/monitoring").unwrap();
    let operator = world.client.authorization("GET", "/metrics").unwrap().unwrap();
    let sapa = world.client.authorization("GET", "/v1/nodes/sapa/accounts").unwrap().unwrap();
    let url = format!("{base}/metrics");
    assert_eq!(call("GET", &url, None, None).0, 401);
    assert_eq!(call("GET", &url, Some(&sapa), None).0, 403);
    let response = ureq::get(&url).set("Authorization", &operator).call().unwrap();
    assert!(response.content_type().starts_with("text/plain"));
    let text = response.into_string().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("dtenge_http_requests_total{class=\"2xx\"}") >= 1.0);
    assert!(value("dtenge_http_refused_total{reason=\"unauthenticated\"}") >= 1.0);
    assert!(value("dtenge_http_refused_total{reason=\"forbidden\"}") >= 1.0);
    assert!(value("dtenge_http_request_duration_seconds_count") >= 3.0);
    assert!(value("dtenge_notary_commit_index") >= 0.0);
    assert_eq!(value("dtenge_revocation_list_number"), 1.0);
}

/// The newest `limit` entries of the trail once every entry sealed so far is on disk: an
/// outcome and a read's entry are made durable behind the answer (`dtenge_api::audit`).
fn newest(trail: &dtenge_audit::AuditLog, limit: usize) -> dtenge_audit::Page {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = trail.page(0, limit).unwrap();
        if page.entries.first().is_some_and(|newest| newest.seq + 1 == trail.total()) {
            return page;
        }
        assert!(std::time::Instant::now() < deadline, "the trail's newest entries did not reach the disk");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Issue 19, point 5: what every identified caller does is in the audit trail under its
/// identity: an action as an intent before it and its outcome after, a read of clients' data,
/// a refusal. A request that identifies no one is not (anyone can send those without limit,
/// and the trail would grow at the rate of a flood). The build before wrote nothing for the
/// REST API.
#[test]
fn every_identified_callers_request_is_in_the_audit_trail() {
    use dtenge_audit::Outcome;
    let (_dir, platform) = start();
    let base = platform.base_url();
    let world = World::new(&base, &platform.credentials_dir()).unwrap();
    let steppe = world.client.authorization("POST", "/v1/nodes/steppe/accounts").unwrap().unwrap();
    let trail = platform.roles.audit();
    let url = |path: &str| format!("{base}{path}");
    let account = json!({"kind": "individual", "client_id": "900101300007", "name": "Arman Ospanov"});

    assert_eq!(call("POST", &url("/v1/nodes/steppe/accounts"), Some(&steppe), Some(account.clone())).0, 201);
    let page = newest(trail, 2);
    let (outcome, intent) = (&page.entries[0], &page.entries[1]);
    assert_eq!(
        (intent.actor.as_str(), intent.role.as_str(), intent.action.as_str(), intent.target.as_str(), intent.outcome),
        ("bank:steppe", "api", "POST", "/v1/nodes/steppe/accounts", Outcome::Intent),
        "the intent, written before the account was opened"
    );
    assert!(intent.detail.starts_with("key "), "the idempotency key ties it to the role's record: {}", intent.detail);
    assert_eq!((outcome.outcome, outcome.intent), (Outcome::Ok, Some(intent.seq)));
    assert!(outcome.detail.ends_with("-> HTTP 201"), "{}", outcome.detail);

    // A failed action: its outcome says why.
    assert_eq!(call("POST", &url("/v1/nodes/steppe/accounts"), Some(&steppe), Some(account)).0, 409);
    let failed = &newest(trail, 1).entries[0];
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.detail.contains("HTTP 409 DUPLICATE_ACCOUNT"), "{}", failed.detail);

    // A read of a client's data.
    assert_eq!(call("GET", &url("/v1/nodes/steppe/accounts/900101300007"), Some(&steppe), None).0, 200);
    let read = &newest(trail, 1).entries[0];
    assert_eq!(
        (read.actor.as_str(), read.action.as_str(), read.target.as_str(), read.outcome),
        ("bank:steppe", "GET", "/v1/nodes/steppe/accounts/900101300007", Outcome::Ok)
    );

    // A refusal: Steppe's systems asking for Tulpar's clients.
    assert_eq!(call("GET", &url("/v1/nodes/tulpar/accounts"), Some(&steppe), None).0, 403);
    let refused = &newest(trail, 1).entries[0];
    assert_eq!((refused.actor.as_str(), refused.outcome), ("bank:steppe", Outcome::Failed));
    assert!(refused.detail.contains("refused"), "{}", refused.detail);

    // No identity, no entry.
    let total = trail.total();
    assert_eq!(call("GET", &url("/v1/nodes/steppe/accounts"), None, None).0, 401);
    assert_eq!(call("GET", &url("/v1/nodes/steppe/accounts"), Some("Bearer forged"), None).0, 401);
    assert_eq!(trail.total(), total);

    let verification = trail.check(&[]).unwrap();
    assert!(verification.ok() && verification.open_intents == 0, "{verification:?}");
}
