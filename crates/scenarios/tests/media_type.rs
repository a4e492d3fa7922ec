//! A body not declared `Content-Type: application/json` is refused with 415
//! `UNSUPPORTED_MEDIA_TYPE` before anything runs, on the REST API and on the consoles' JSON
//! routes alike; nothing changes, and the idempotency key stays unused.

use dtenge_core::calendar::Date;
use dtenge_env::{Entropy, ManualClock};
use dtenge_scenarios::{Platform, World};
use serde_json::{json, Value};
use std::sync::Arc;

/// Monday 2026-11-23, 10:00 in Astana: an operational day.
fn working_day_ms() -> u64 {
    (Date::new(2026, 11, 23).unwrap().days() as u64 * 86_400 + 5 * 3600) * 1000
}

fn start() -> (tempfile::TempDir, Platform) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(working_day_ms()));
    let platform = Platform::start(dir.path(), "127.0.0.1:0".parse().unwrap(), clock, Entropy::from_seed(17)).unwrap();
    (dir, platform)
}

/// An answer: status, JSON body (`null` if none), and the session cookie if one was set.
struct Answer {
    status: u16,
    body: Value,
    cookie: Option<String>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A POST with exactly these headers (ureq adds no Content-Type to `send_string`).
fn post(url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let mut request = ureq::post(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let sent = match body {
        Some(b) => request.send_string(b),
        None => request.call(),
    };
    let response = match sent {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = response.status();
    let cookie = response
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .filter(|c| c.starts_with("dtenge_session="))
        .map(str::to_string);
    let body = response.into_string().ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    Answer { status, body, cookie }
}

#[test]
fn a_transfer_posted_as_text_plain_is_refused_with_415_and_moves_no_money() {
    let (_dir, platform) = start();
    let base = platform.base_url();
    let world = World::new(&base, &platform.credentials_dir()).unwrap();
    let (payer, payee, payee_phone) = (World::iin(94, 1), World::iin(94, 2), World::phone(94, 2));
    world.open("steppe", "individual", &payer, "Media Payer", None).unwrap();
    world.open("sapa", "individual", &payee, "Media Payee", Some(&payee_phone)).unwrap();
    world.give_dt("steppe", &payer, 1_000_00).unwrap();
    let transfer = format!("{base}/v1/nodes/steppe/transfers");
    let body = json!({"from": payer, "to": {"phone": payee_phone}, "amount_tiyn": 300_00}).to_string();

    let bank = world.client.authorization("POST", "/v1/nodes/steppe/transfers").unwrap().unwrap();
    let operator = world.client.authorization("POST", "/v1/operator/checkpoints").unwrap().unwrap();
    for (content_type, said) in [
        (Some("text/plain"), "says 'text/plain'"),
        (Some("text/plain; charset=utf-8"), "says 'text/plain; charset=utf-8'"),
        (Some("application/x-www-form-urlencoded"), "says 'application/x-www-form-urlencoded'"),
        (None, "has no Content-Type"),
    ] {
        let mut headers = vec![("Idempotency-Key", "media-1"), ("Authorization", bank.as_str())];
        headers.extend(content_type.map(|t| ("Content-Type", t)));
        let refused = post(&transfer, &headers, Some(&body));
        assert_eq!(
            (refused.status, refused.code()),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
            "{content_type:?}: {}",
            refused.body
        );
        let message = refused.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("application/json") && message.contains(said), "{message}");
        assert_eq!(world.dt("steppe", &payer).unwrap(), 1_000_00, "{content_type:?} moved the payer's money");
        assert_eq!(world.dt("sapa", &payee).unwrap(), 0, "{content_type:?} paid the payee");
    }

    // The refusals left the key unused: the same key with the JSON type (and a parameter) pays.
    let paid = post(
        &transfer,
        &[
            ("Idempotency-Key", "media-1"),
            ("Authorization", &bank),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        Some(&body),
    );
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(world.dt("steppe", &payer).unwrap(), 700_00);
    assert_eq!(world.dt("sapa", &payee).unwrap(), 300_00);

    // A call without a body needs no type; an unknown route stays NOT_FOUND.
    let checkpoint = post(
        &format!("{base}/v1/operator/checkpoints"),
        &[("Idempotency-Key", "media-2"), ("Authorization", &operator)],
        None,
    );
    assert_eq!(checkpoint.status, 200, "{}", checkpoint.body);
    let unknown = post(&format!("{base}/v1/no-such-route"), &[("Content-Type", "text/plain")], Some("x"));
    assert_eq!((unknown.status, unknown.code()), (404, "NOT_FOUND"));
    world.reconciled().unwrap();
}

#[test]
fn the_consoles_refuse_a_text_plain_sign_in_and_transfer_with_415() {
    let (_dir, platform) = start();
    let base = platform.base_url();
    let users = platform.console.ensure_demo_users().unwrap();
    let dana = users.iter().find(|u| u.username == "dana").expect("the demo client");
    let world = World::new(&base, &platform.credentials_dir()).unwrap();
    let (payee, payee_phone) = (World::iin(95, 1), World::phone(95, 1));
    world.open("sapa", "individual", &payee, "Console Payee", Some(&payee_phone)).unwrap();
    world.give_dt("steppe", "950505400019", 1_000_00).unwrap();

    let login = format!("{base}/console/api/login");
    let credentials = json!({"username": "dana", "password": dana.password}).to_string();
    let refused = post(&login, &[("Content-Type", "text/plain")], Some(&credentials));
    assert_eq!((refused.status, refused.code()), (415, "UNSUPPORTED_MEDIA_TYPE"), "{}", refused.body);
    assert!(refused.cookie.is_none(), "a refused sign-in opened a session");
    let signed_in = post(&login, &[("Content-Type", "application/json")], Some(&credentials));
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in.cookie.expect("a session cookie");
    let csrf = signed_in.body["csrf"].as_str().expect("a CSRF token").to_string();

    let transfer = format!("{base}/console/api/client/transfer");
    let body = json!({"phone": payee_phone, "amount": "250.00"}).to_string();
    for content_type in [Some("text/plain"), None] {
        let mut headers = vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        headers.extend(content_type.map(|t| ("Content-Type", t)));
        let refused = post(&transfer, &headers, Some(&body));
        assert_eq!(
            (refused.status, refused.code()),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
            "{content_type:?}: {}",
            refused.body
        );
        assert_eq!(world.dt("steppe", "950505400019").unwrap(), 1_000_00, "{content_type:?} moved Dana's money");
        assert_eq!(world.dt("sapa", &payee).unwrap(), 0);
    }
    let paid = post(
        &transfer,
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Content-Type", "application/json"),
            // The consoles' money-moving routes need a key of their own (one per user action).
            ("Idempotency-Key", "media-type-test-1"),
        ],
        Some(&body),
    );
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(world.dt("steppe", "950505400019").unwrap(), 750_00);
    assert_eq!(world.dt("sapa", &payee).unwrap(), 250_00);
}

#[test]
fn openapi_documents_the_415_answer_of_every_operation_that_takes_a_body() {
    let (_dir, platform) = start();
    let spec =
        World::new(&platform.base_url(), &platform.credentials_dir()).unwrap().client.get("/openapi.json").unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let refused = &op["responses"]["415"];
            assert!(refused.is_object(), "{method} {path} does not document 415");
            assert_eq!(
                refused["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ApiError",
                "{method} {path}"
            );
            checked += 1;
        }
    }
    // 37 when this was written; a handful would mean the paths were not read.
    assert!(checked > 30, "only {checked} operations with a body");
    let code = &spec["components"]["schemas"]["ErrorCode"];
    assert!(code.to_string().contains("UNSUPPORTED_MEDIA_TYPE"), "ErrorCode schema: {code}");
}
