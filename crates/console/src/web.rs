//! The consoles' routes: the embedded pages, sign-in, and one JSON route per thing a role may
//! see or do. Every route under `/console/api/` except sign-in needs a session cookie; every
//! state-changing one also needs the session's CSRF token in `X-CSRF-Token`; each checks the
//! role before touching the network.

use crate::auth::{same_secret, Role, Session};
use crate::Console;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dtenge_core::{Error, ErrorCode};
use dtenge_network::types::BlockRequest;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type App = Arc<Console>;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dtenge_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The consoles' router (merge it with the API's).
pub fn router(console: App) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/me", get(me))
        .route("/console/api/operator/dashboard", get(operator_dashboard))
        .route("/console/api/operator/nodes/{node}/block", post(block))
        .route("/console/api/operator/nodes/{node}/unblock", post(unblock))
        .route("/console/api/operator/audit", get(audit))
        .route("/console/api/treasury/accounts", get(treasury_accounts))
        .route("/console/api/bank/clients", get(bank_clients))
        .route("/console/api/client/wallet", get(client_wallet))
        .with_state(console)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Only our own scripts, styles and API; no framing (clickjacking).
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}
async fn app_js() -> Response {
    page("text/javascript; charset=utf-8", APP_JS)
}
async fn app_css() -> Response {
    page("text/css; charset=utf-8", APP_CSS)
}

/// An error as the REST API writes it: `{"error": {"code", "message"}}`.
fn failure(e: Error) -> Response {
    let status = match e.code {
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::UnknownAccount => StatusCode::NOT_FOUND,
        ErrorCode::MalformedInput => StatusCode::BAD_REQUEST,
        ErrorCode::BankBlocked => StatusCode::LOCKED,
        ErrorCode::Internal | ErrorCode::StorageFailure => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    };
    let body = serde_json::json!({"error": {"code": e.code, "message": e.message}});
    (status, Json(body)).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The caller's session; for a state-changing request, also its CSRF token checked.
fn session(console: &Console, headers: &HeaderMap, changes_state: bool) -> Result<(String, Session), Error> {
    let token = cookie(headers, SESSION_COOKIE).ok_or_else(|| Error::new(ErrorCode::Unauthorized, "sign in first"))?;
    let session = console.session(&token)?;
    if changes_state {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same_secret(sent, &session.csrf) {
            return Err(Error::new(ErrorCode::Forbidden, "missing or wrong CSRF token: reload the page"));
        }
    }
    Ok((token, session))
}

fn require(session: &Session, allowed: impl Fn(&Role) -> bool) -> Result<(), Error> {
    if allowed(&session.role) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::Forbidden, format!("the {} console may not do this", session.role.console())))
    }
}

/// Run `op` on a blocking thread (network operations wait for durable commits).
async fn blocking<T: Serialize + Send + 'static>(op: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(op).await {
        Ok(Ok(value)) => (StatusCode::OK, Json(value)).into_response(),
        Ok(Err(e)) => failure(e),
        Err(_) => failure(Error::internal("the operation failed unexpectedly")),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::malformed(format!("request body: {e}")))
}

/// Who is signed in, as the page needs it.
#[derive(Serialize)]
struct Me {
    username: String,
    display_name: String,
    role: Role,
    console: &'static str,
    csrf: String,
}

fn me_of(console: &Console, session: &Session) -> Me {
    let display_name = console.user(&session.username).map(|u| u.display_name).unwrap_or_default();
    Me {
        username: session.username.clone(),
        display_name,
        role: session.role.clone(),
        console: session.role.console(),
        csrf: session.csrf.clone(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

async fn login(State(console): State<App>, body: Bytes) -> Response {
    let request: Login = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let (token, session) = console.login(&request.username, &request.password)?;
        Ok::<_, Error>((token, me_of(&console, &session)))
    })
    .await;
    match outcome {
        Ok(Ok((token, me))) => {
            let mut response = (StatusCode::OK, Json(me)).into_response();
            let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(Err(e)) => failure(e),
        Err(_) => failure(Error::internal("sign-in failed unexpectedly")),
    }
}

async fn logout(State(console): State<App>, headers: HeaderMap) -> Response {
    let (token, _) = match session(&console, &headers, true) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    let mut response = blocking(move || console.logout(&token).map(|()| serde_json::json!({"signed_out": true}))).await;
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn me(State(console): State<App>, headers: HeaderMap) -> Response {
    match session(&console, &headers, false) {
        Ok((_, session)) => (StatusCode::OK, Json(me_of(&console, &session))).into_response(),
        Err(e) => failure(e),
    }
}

/// The operator's dashboard: monitoring totals and the transaction counter the page turns
/// into a live payments-per-second chart.
#[derive(Serialize)]
struct Dashboard {
    monitoring: dtenge_network::types::Monitoring,
    committed_transactions: u64,
    at_unix_ms: u64,
}

async fn operator_dashboard(State(console): State<App>, headers: HeaderMap) -> Response {
    let checked = session(&console, &headers, false).and_then(|(_, s)| require(&s, |r| *r == Role::Operator));
    if let Err(e) = checked {
        return failure(e);
    }
    blocking(move || {
        let network = &console.network;
        Ok(Dashboard {
            monitoring: network.monitoring()?,
            committed_transactions: network.committed_transactions(),
            at_unix_ms: network.now_ms(),
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

/// Block or unblock a node: the operator only, with a reason, audited.
async fn set_block(console: App, headers: HeaderMap, node: String, body: Bytes, blocked: bool) -> Response {
    let (_, session) = match session(&console, &headers, true).and_then(|(t, s)| {
        require(&s, |r| *r == Role::Operator)?;
        Ok((t, s))
    }) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    let reason: Reason = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    blocking(move || {
        let reason_text = reason.reason.trim().to_string();
        if reason_text.is_empty() || reason_text.chars().count() > 140 {
            return Err(Error::malformed("give a reason of 1 to 140 characters"));
        }
        let action = if blocked { "block_bank" } else { "unblock_bank" };
        let result = if blocked {
            console.network.block(None, &node, BlockRequest { reason: reason_text.clone() })
        } else {
            console.network.unblock(None, &node)
        };
        let detail = match &result {
            Ok(_) => reason_text,
            Err(e) => format!("{reason_text}: {e}"),
        };
        console.audit(&session.username, "operator", action, &node, &detail, result.is_ok())?;
        result
    })
    .await
}

async fn block(State(console): State<App>, Path(node): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    set_block(console, headers, node, body, true).await
}

async fn unblock(State(console): State<App>, Path(node): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    set_block(console, headers, node, body, false).await
}

#[derive(Deserialize)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn audit(
    State(console): State<App>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let checked = session(&console, &headers, false).and_then(|(_, s)| require(&s, |r| *r == Role::Operator));
    if let Err(e) = checked {
        return failure(e);
    }
    let Ok(Query(page)) = query else { return failure(Error::malformed("offset and limit are numbers")) };
    blocking(move || console.audit_page(page.offset.unwrap_or(0), page.limit.unwrap_or(20))).await
}

async fn treasury_accounts(State(console): State<App>, headers: HeaderMap) -> Response {
    let checked = session(&console, &headers, false).and_then(|(_, s)| require(&s, |r| *r == Role::Treasury));
    if let Err(e) = checked {
        return failure(e);
    }
    blocking(move || console.network.accounts(dtenge_network::TREASURY_ID)).await
}

async fn bank_clients(State(console): State<App>, headers: HeaderMap) -> Response {
    let session = match session(&console, &headers, false) {
        Ok((_, s)) => s,
        Err(e) => return failure(e),
    };
    let Role::BankOfficer { bank } = session.role else {
        return failure(Error::new(ErrorCode::Forbidden, "the bank console is for bank officers"));
    };
    blocking(move || console.network.accounts(&bank)).await
}

/// A client's wallet: its account with balances split, its history and its holds.
#[derive(Serialize)]
struct Wallet {
    account: dtenge_network::types::AccountView,
    history: dtenge_network::types::HistoryPage,
    holds: Vec<dtenge_network::types::HoldView>,
}

async fn client_wallet(State(console): State<App>, headers: HeaderMap) -> Response {
    let session = match session(&console, &headers, false) {
        Ok((_, s)) => s,
        Err(e) => return failure(e),
    };
    let Role::Client { bank, client_id } = session.role else {
        return failure(Error::new(ErrorCode::Forbidden, "the wallet is for clients"));
    };
    blocking(move || {
        let network = &console.network;
        Ok(Wallet {
            account: network.account_view(&bank, &client_id)?,
            history: network.history(&bank, &client_id, 0, 20)?,
            holds: network.holds(&bank, &client_id)?,
        })
    })
    .await
}
