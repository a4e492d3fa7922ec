//! The consoles' routes: the embedded pages, sign-in, and one JSON route per thing a role may
//! see or do. Every route under `/console/api/` except sign-in needs a session cookie; every
//! state-changing one also needs the session's CSRF token in `X-CSRF-Token`; each checks the
//! role before touching the network. A body must be declared `Content-Type: application/json`
//! (415 `UNSUPPORTED_MEDIA_TYPE` otherwise), by the REST API's own layer. Every one that moves
//! money (or creates something a double click would create twice) also needs an
//! `Idempotency-Key`: see [`with_key`].

use crate::auth::{same_secret, Role, Session};
use crate::Console;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dtenge_api::platform::Idem;
use dtenge_api::types::BlockRequest;
use dtenge_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
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
    let router = Router::new()
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
        .route("/console/api/client/wallet", get(client_wallet));
    // The REST API's rule for bodies, before the handlers: a sign-in or a transfer sent as
    // `text/plain` or a form (what another site's page can make a browser send without a
    // preflight) is refused with 415 and never reaches the session or CSRF checks.
    more_routes(router)
        .route_layer(axum::middleware::from_fn(dtenge_api::require_json))
        .route_layer(axum::middleware::from_fn_with_state(console.clone(), trail))
        .with_state(console)
}

/// Does a `GET` of `path` read clients' (or budget organisations') data? The bank's and the
/// Treasury's lists, histories, holds and exports do. A client's own wallet is the client
/// reading its own data and is not written; the QR preview, which shows another person's
/// name, writes its own entry.
fn reads_clients_data(path: &str) -> bool {
    path.starts_with("/console/api/bank/") || path.starts_with("/console/api/treasury/")
}

/// The audit trail's view of every console route: a refusal of a signed-in user (403: a
/// role's route that is not theirs, a missing CSRF token, an institution's own account) and
/// every read of clients' data, with who did it. Actions write their own intent and outcome
/// ([`audited`]); sign-ins write theirs. A request without a session (401) is not written:
/// anyone can send those without limit.
async fn trail(State(console): State<App>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let token = cookie(request.headers(), SESSION_COOKIE);
    let read = method == Method::GET && reads_clients_data(&path);
    let response = next.run(request).await;
    let status = response.status();
    let refused = status == StatusCode::FORBIDDEN;
    if !(refused || (read && status.is_success())) {
        return response;
    }
    let Some(session) = token.and_then(|t| console.session(&t).ok()) else { return response };
    let (response, _, detail) = dtenge_api::audit::outcome_of(response).await;
    let action = if refused { format!("refused {method}") } else { "read".to_string() };
    let detail = if refused { detail } else { query };
    let written = tokio::task::spawn_blocking(move || {
        console.audit(&session.username, session.role.console(), &action, &path, &detail, !refused)
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("audit: a console entry was not written");
    }
    response
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

/// An error as the REST API writes it, `{"error": {"code", "message"}}`, with the gateway's
/// status for the code (`dtenge_api::status_of`): one map for both faces.
fn failure(e: Error) -> Response {
    dtenge_api::Failure(e).into_response()
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

/// Sign in. The client's address (from the connection: behind a proxy, the proxy's) counts
/// failures per address; a refused attempt is told when to come back (`Retry-After`).
async fn login(
    State(console): State<App>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: Bytes,
) -> Response {
    let request: Login = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    let source = peer.map(|axum::Extension(axum::extract::ConnectInfo(addr))| addr.ip());
    let outcome =
        tokio::task::spawn_blocking(move || match console.login(&request.username, &request.password, source) {
            Ok((token, session)) => Ok((token, me_of(&console, &session))),
            Err(e) if e.code == ErrorCode::RateLimited => {
                Err((e, Some(console.sign_in_wait_s(&request.username, source).max(1))))
            }
            Err(e) => Err((e, None)),
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
        Ok(Err((e, retry_after_s))) => {
            let mut response = failure(e);
            if let Some(value) = retry_after_s.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
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
    monitoring: dtenge_api::types::Monitoring,
    committed_transactions: u64,
    at_unix_ms: u64,
}

async fn operator_dashboard(State(console): State<App>, headers: HeaderMap) -> Response {
    let checked = session(&console, &headers, false).and_then(|(_, s)| require(&s, |r| *r == Role::Operator));
    if let Err(e) = checked {
        return failure(e);
    }
    blocking(move || {
        let platform = &console.platform;
        Ok(Dashboard {
            monitoring: platform.monitoring()?,
            committed_transactions: platform.committed_transactions(),
            at_unix_ms: platform.now_ms(),
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
        audited(&console, &session, action, &node, &reason_text, || {
            if blocked {
                console.platform.block(None, &node, BlockRequest { reason: reason_text.clone() })
            } else {
                console.platform.unblock(None, &node)
            }
        })
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
    blocking(move || console.audit_page(page.offset.unwrap_or(0) as u64, page.limit.unwrap_or(20))).await
}

/// Largest page of a console's account list (issue 19: a whole list in one answer was 7 MB
/// for 16,000 accounts).
pub const CONSOLE_ACCOUNTS_PAGE_MAX: usize = 500;
/// A page of a console's account list when the page names no size.
const CONSOLE_ACCOUNTS_PAGE_DEFAULT: usize = 20;

/// A page of accounts as the consoles' tables show it: "showing offset+1 to offset+len of
/// total", with Previous and Next.
#[derive(Serialize)]
struct AccountsPage {
    accounts: Vec<dtenge_api::types::AccountView>,
    total: usize,
    offset: usize,
    limit: usize,
}

/// A page of `node`'s accounts, in client id order: `limit` 1 to
/// [`CONSOLE_ACCOUNTS_PAGE_MAX`] (default 20), else `MALFORMED_INPUT`.
async fn accounts_page(console: App, node: String, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let Ok(Query(page)) = query else { return failure(Error::malformed("offset and limit are numbers")) };
    let (offset, limit) = (page.offset.unwrap_or(0), page.limit.unwrap_or(CONSOLE_ACCOUNTS_PAGE_DEFAULT));
    if !(1..=CONSOLE_ACCOUNTS_PAGE_MAX).contains(&limit) {
        return failure(Error::malformed(format!("limit must be 1 to {CONSOLE_ACCOUNTS_PAGE_MAX}")));
    }
    blocking(move || {
        let (accounts, total) = console.platform.accounts_at(&node, offset, limit)?;
        Ok(AccountsPage { accounts, total, offset, limit })
    })
    .await
}

async fn treasury_accounts(
    State(console): State<App>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let checked = session(&console, &headers, false).and_then(|(_, s)| require(&s, |r| *r == Role::Treasury));
    if let Err(e) = checked {
        return failure(e);
    }
    accounts_page(console, dtenge_api::platform::TREASURY_ID.to_string(), query).await
}

async fn bank_clients(
    State(console): State<App>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let session = match session(&console, &headers, false) {
        Ok((_, s)) => s,
        Err(e) => return failure(e),
    };
    let Role::BankOfficer { bank } = session.role else {
        return failure(Error::new(ErrorCode::Forbidden, "the bank console is for bank officers"));
    };
    accounts_page(console, bank, query).await
}

/// A client's wallet: its account with balances split, its history and its holds.
#[derive(Serialize)]
struct Wallet {
    account: dtenge_api::types::AccountView,
    history: dtenge_api::types::HistoryPage,
    holds: Vec<dtenge_api::types::HoldView>,
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
        let platform = &console.platform;
        Ok(Wallet {
            account: platform.account_view(&bank, &client_id)?,
            history: platform.history(&bank, &client_id, 0, 20)?,
            holds: platform.holds(&bank, &client_id)?,
        })
    })
    .await
}

// ---- the rest of each console ----

/// Check the session (and the CSRF token when `changes` is set) and the role, then run `op`
/// on a blocking thread with the session.
async fn with_role<T, F>(
    console: App,
    headers: &HeaderMap,
    changes: bool,
    allowed: fn(&Role) -> bool,
    op: F,
) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Console, Session) -> Result<T, Error> + Send + 'static,
{
    let session = match session(&console, headers, changes).and_then(|(_, s)| require(&s, allowed).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    blocking(move || op(&console, session)).await
}

/// Longest idempotency key the browser may send: with `console:`, a 64-character username and
/// `:` it stays within the 128 characters the network stores.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 48;

/// The browser's idempotency key for this user, with the fingerprint of the request.
///
/// The key is stored as `console:<user>:<key>`. The network keeps one key space for every
/// caller, and each browser makes its keys on its own: unscoped, a key one user's page sent
/// (by chance, by a bug, or on purpose) would meet another user's record, and the second user
/// would be handed the first one's stored answer (a receipt naming the first user's accounts)
/// or be refused. Scoped by user, a user only ever meets its own keys. Usernames cannot contain
/// `:`, so no two users' prefixes overlap, and the REST API refuses keys starting with
/// `console:`, so no API caller can write into this space either.
fn console_idem(headers: &HeaderMap, uri: &Uri, body: &Bytes, username: &str) -> Result<Idem, Error> {
    let key = dtenge_api::idempotency_key(headers)?;
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX {
        return Err(Error::malformed(format!(
            "the Idempotency-Key header has 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters"
        )));
    }
    // The same fingerprint as the REST API's: the console's own route and body, so the same
    // key with another amount or payee is IDEMPOTENCY_KEY_REUSED.
    let (fingerprint, _) = dtenge_api::request_fingerprint(&Method::POST, uri.path(), body)?;
    Ok(Idem { key: format!("{}{username}:{key}", dtenge_api::CONSOLE_KEY_PREFIX), fingerprint })
}

/// [`with_role`] for a state change that needs the browser's idempotency key: checks the
/// session, the CSRF token, the role and the key (missing or bad: `MALFORMED_INPUT`, 400,
/// nothing done), then runs `op` with the key scoped to the user.
async fn with_key<T, F>(
    console: App,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    allowed: fn(&Role) -> bool,
    op: F,
) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Console, Session, Idem) -> Result<T, Error> + Send + 'static,
{
    let checked = session(&console, headers, true)
        .and_then(|(_, s)| require(&s, allowed).map(|()| s))
        .and_then(|s| console_idem(headers, uri, body, &s.username).map(|idem| (s, idem)));
    let (session, idem) = match checked {
        Ok(checked) => checked,
        Err(e) => return failure(e),
    };
    blocking(move || op(&console, session, idem)).await
}

/// [`with_key`] for one network operation: `op` runs at most once per key through
/// `Platform::once`, which the REST API uses too. A repeat (double click, retry) gets the first
/// answer and writes no second audit line; the same key with another request is refused with
/// `IDEMPOTENCY_KEY_REUSED`; a repeat while the first still runs gets `REQUEST_IN_PROGRESS`.
/// `op` must pass the key it is given to the network operation, which records the answer in
/// the same commit as the operation.
async fn once_with_key<T, F>(
    console: App,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    allowed: fn(&Role) -> bool,
    op: F,
) -> Response
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnOnce(&Console, Session, Option<&Idem>) -> Result<T, Error> + Send + 'static,
{
    with_key(console, uri, headers, body, allowed, move |c, s, idem| c.platform.once(Some(idem), |idem| op(c, s, idem)))
        .await
}

fn is_operator(r: &Role) -> bool {
    *r == Role::Operator
}
fn is_treasury(r: &Role) -> bool {
    *r == Role::Treasury
}
fn is_bank(r: &Role) -> bool {
    matches!(r, Role::BankOfficer { .. })
}
fn is_client(r: &Role) -> bool {
    matches!(r, Role::Client { .. })
}

/// Run a state change between its intent and its outcome in the audit trail: not at all if
/// the intent cannot be written (`dtenge_audit::AuditLog::audited`).
fn audited<T>(
    console: &Console,
    session: &Session,
    action: &str,
    target: &str,
    detail: &str,
    op: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    let record = dtenge_audit::Record::new(&session.username, session.role.console(), action, target, detail);
    console.platform.audit().audited(record, op)
}

/// An amount a person typed: "1 234,56" or "1234.56" tenge -> tiyn, without floating point.
pub fn parse_tenge(text: &str) -> Result<dtenge_core::money::Amount, Error> {
    let cleaned: String = text.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}').collect();
    let cleaned = cleaned.replace(',', ".");
    let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    let valid = !whole.is_empty()
        && whole.len() <= 13
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 2
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(Error::malformed(format!("'{text}' is not an amount in tenge (e.g. 1500.00)")));
    }
    let whole: u64 = whole.parse().map_err(|_| Error::malformed("amount too large"))?;
    let fraction: u64 = format!("{fraction:0<2}").parse().map_err(|_| Error::malformed("bad tiyn"))?;
    let tiyn = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| Error::malformed("amount too large"))?;
    dtenge_core::money::Amount::from_tiyn(tiyn)
}

#[derive(Deserialize)]
struct OperationsQuery {
    kind: Option<String>,
    node: Option<String>,
    sort: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// Emissions and redemptions, filtered, sorted and paged.
#[derive(Serialize)]
struct OperationsPage {
    operations: Vec<dtenge_api::types::NbkOperation>,
    total: usize,
    offset: usize,
    limit: usize,
}

/// Most NBK operations the list reads at once.
const OPERATIONS_SCAN_MAX: usize = 1_000_000;

async fn operations(
    State(console): State<App>,
    headers: HeaderMap,
    query: Result<Query<OperationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else { return failure(Error::malformed("bad query")) };
    with_role(console, &headers, false, is_operator, move |c, _| {
        let limit = q.limit.unwrap_or(20).clamp(1, 500);
        let offset = q.offset.unwrap_or(0);
        let mut all: Vec<_> = c
            .platform
            .nbk_operations(0, OPERATIONS_SCAN_MAX)
            .into_iter()
            .filter(|o| {
                q.kind.as_deref().is_none_or(|k| k.is_empty() || format!("{:?}", o.kind).eq_ignore_ascii_case(k))
            })
            .filter(|o| q.node.as_deref().is_none_or(|n| n.is_empty() || o.node == n))
            .collect();
        match q.sort.as_deref().unwrap_or("newest") {
            "oldest" => all.reverse(),
            "amount_desc" => all.sort_by_key(|o| std::cmp::Reverse(o.amount_tiyn)),
            "amount_asc" => all.sort_by_key(|o| o.amount_tiyn),
            _ => {}
        }
        let total = all.len();
        let operations = all.into_iter().skip(offset).take(limit).collect();
        Ok(OperationsPage { operations, total, offset, limit })
    })
    .await
}

async fn run_reconciliation(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, true, is_operator, |c, s| {
        let result = c.platform.reconcile();
        let detail = if result.ok { "ok".to_string() } else { result.problems.join("; ") };
        c.audit(&s.username, "operator", "reconcile", "abs", &detail, result.ok)?;
        c.record_reconciliation(&result)?;
        Ok(result)
    })
    .await
}

async fn reconciliations(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_operator, |c, _| Ok(c.reconciliations())).await
}

/// A year of the calendar with its count of working days.
#[derive(Serialize)]
struct Year {
    year: i32,
    working_days: usize,
    days: Vec<dtenge_api::types::DayView>,
}

fn year_of(console: &Console, year: i32) -> Result<Year, Error> {
    let days = console.platform.calendar_year(year)?;
    Ok(Year { year, working_days: days.iter().filter(|d| d.working).count(), days })
}

async fn calendar(State(console): State<App>, Path(year): Path<i32>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_operator, move |c, _| year_of(c, year)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayChange {
    working: bool,
}

async fn set_day(State(console): State<App>, Path(date): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let change: DayChange = match parse(&body) {
        Ok(c) => c,
        Err(e) => return failure(e),
    };
    with_role(console, &headers, true, is_operator, move |c, s| {
        let day: dtenge_core::calendar::Date = date.parse()?;
        let what = if change.working { "working day" } else { "holiday" };
        audited(c, &s, "set_day", &date, what, || c.platform.set_day(None, day, change.working))
    })
    .await
}

/// Make every Saturday and Sunday of the year a non-working day.
async fn fill_weekends(State(console): State<App>, Path(year): Path<i32>, headers: HeaderMap) -> Response {
    with_role(console, &headers, true, is_operator, move |c, s| {
        let days = c.platform.calendar_year(year)?;
        let weekends: Vec<_> = days.iter().filter(|d| d.working && d.date.is_weekend()).map(|d| d.date).collect();
        let detail = format!("{} weekend days made non-working", weekends.len());
        audited(c, &s, "fill_weekends", &year.to_string(), &detail, || {
            for date in &weekends {
                c.platform.set_day(None, *date, false)?;
            }
            Ok(())
        })?;
        year_of(c, year)
    })
    .await
}

/// Node and notary health for the operator.
#[derive(Serialize)]
struct Health {
    nodes: Vec<dtenge_api::types::NodeView>,
    unspent_tokens: usize,
    committed_transactions: u64,
    reconciled: bool,
    at_unix_ms: u64,
}

async fn health(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_operator, |c, _| {
        let monitoring = c.platform.monitoring()?;
        Ok(Health {
            nodes: monitoring.nodes,
            unspent_tokens: monitoring.unspent_tokens,
            committed_transactions: c.platform.committed_transactions(),
            reconciled: c.reconciliations().first().is_none_or(|r| r.ok),
            at_unix_ms: c.platform.now_ms(),
        })
    })
    .await
}

// Client: transfer by phone and pay by QR.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneTransfer {
    phone: String,
    amount: String,
}

async fn client_transfer(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: PhoneTransfer = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_client, move |c, s, idem| {
        let Role::Client { bank, client_id } = s.role.clone() else { return Err(Error::internal("not a client")) };
        let amount = parse_tenge(&request.amount)?;
        let to = dtenge_api::types::Payee { phone: Some(request.phone.clone()), ..Default::default() };
        let transfer = dtenge_api::types::TransferRequest { from: client_id, to, amount_tiyn: amount, reference: None };
        audited(c, &s, "transfer_by_phone", &request.phone, &amount.to_string(), || {
            c.platform.transfer(idem, &bank, transfer)
        })
    })
    .await
}

/// A merchant's QR payload: `dtenge:pay?bank=<node>&to=<BIN>&amount=<tenge>&ref=<text>`.
pub fn parse_qr(payload: &str) -> Result<(String, String, dtenge_core::money::Amount, Option<String>), Error> {
    let query = payload
        .trim()
        .strip_prefix("dtenge:pay?")
        .ok_or_else(|| Error::malformed("not a dtenge payment code (it starts with dtenge:pay?)"))?;
    let (mut bank, mut to, mut amount, mut reference) = (None, None, None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').ok_or_else(|| Error::malformed(format!("bad field '{pair}'")))?;
        match key {
            "bank" => bank = Some(value.to_string()),
            "to" => to = Some(value.to_string()),
            "amount" => amount = Some(parse_tenge(value)?),
            "ref" => reference = Some(value.replace('+', " ")),
            other => return Err(Error::malformed(format!("unknown field '{other}' in the payment code"))),
        }
    }
    match (bank, to, amount) {
        (Some(bank), Some(to), Some(amount)) => {
            // A code naming no IIN/BIN is malformed, before anyone is asked who it is.
            dtenge_node::ids::check_iin_bin(&to)
                .map_err(|e| Error::malformed(format!("the payment code's payee: {}", e.message)))?;
            Ok((bank, to, amount, reference))
        }
        _ => Err(Error::malformed("the payment code needs bank, to and amount")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QrPayment {
    payload: String,
}

async fn client_qr(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: QrPayment = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_client, move |c, s, idem| {
        let Role::Client { bank, client_id } = s.role.clone() else { return Err(Error::internal("not a client")) };
        let (merchant_bank, merchant, amount, reference) = parse_qr(&request.payload)?;
        let to = dtenge_api::types::Payee {
            client_id: Some(merchant.clone()),
            bank: Some(merchant_bank),
            ..Default::default()
        };
        let transfer = dtenge_api::types::TransferRequest { from: client_id, to, amount_tiyn: amount, reference };
        audited(c, &s, "pay_qr", &merchant, &amount.to_string(), || c.platform.transfer(idem, &bank, transfer))
    })
    .await
}

/// What a merchant's QR code asks the payer to pay, and to whom, as the ID center names the
/// merchant: shown for the payer's confirmation before anything is paid.
#[derive(Serialize)]
struct QrPreview {
    bank: String,
    client_id: String,
    payee_name: String,
    amount_tiyn: dtenge_core::money::Amount,
    reference: Option<String>,
}

#[derive(Deserialize)]
struct QrQuery {
    payload: String,
}

/// `GET /console/api/client/qr/preview?payload=...`: the payee and the amount of a QR code,
/// for the wallet to show and ask "pay?" before `POST /console/api/client/qr` (issue 19: the
/// build before paid whatever a pasted code said at once).
async fn client_qr_preview(
    State(console): State<App>,
    headers: HeaderMap,
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return failure(Error::malformed("the payment code is the payload parameter")) };
    with_role(console, &headers, false, is_client, move |c, s| {
        let (bank, client_id, amount_tiyn, reference) = parse_qr(&query.payload)?;
        // A name looked up by client id: audited, as every read of another's personal data.
        let payee_name =
            audited(c, &s, "qr_preview", &format!("{bank}/{client_id}"), &amount_tiyn.to_string(), || {
                c.platform.lookup_client(&bank, &client_id)
            })?;
        Ok(QrPreview { bank, client_id, payee_name, amount_tiyn, reference })
    })
    .await
}

// Bank back office: conversions, registry upload, a client's history.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conversion {
    client_id: String,
    to_dt: bool,
    amount: String,
}

async fn bank_conversion(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: Conversion = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_bank, move |c, s, idem| {
        let Role::BankOfficer { bank } = s.role.clone() else { return Err(Error::internal("not a bank")) };
        let amount = dtenge_api::types::AmountRequest { amount_tiyn: parse_tenge(&request.amount)? };
        let action = if request.to_dt { "convert_to_dt" } else { "convert_from_dt" };
        audited(c, &s, action, &request.client_id, &amount.amount_tiyn.to_string(), || {
            if request.to_dt {
                c.platform.convert_to_dt(idem, &bank, &request.client_id, amount)
            } else {
                c.platform.convert_from_dt(idem, &bank, &request.client_id, amount)
            }
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryUpload {
    /// BIN of the paying legal entity at this bank.
    from: String,
    reference: Option<String>,
    /// The CSV file: `phone or IIN,amount in tenge[,bank]` per line; a header line is skipped.
    csv: String,
}

/// Lines of a registry CSV: (phone or IIN, amount, bank).
pub fn parse_registry_csv(csv: &str) -> Result<Vec<dtenge_api::types::RegistryLine>, Error> {
    let mut lines = Vec::new();
    for (n, raw) in csv.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || (n == 0 && line.chars().next().is_some_and(|c| c.is_alphabetic())) {
            continue;
        }
        let fields: Vec<&str> = line.split([',', ';']).map(str::trim).collect();
        if fields.len() < 2 || fields.len() > 3 {
            return Err(Error::malformed(format!("line {}: expected 'phone or IIN,amount[,bank]'", n + 1)));
        }
        let amount = parse_tenge(fields[1]).map_err(|e| Error::malformed(format!("line {}: {}", n + 1, e.message)))?;
        let who = fields[0];
        let bank = fields.get(2).filter(|b| !b.is_empty()).map(|b| b.to_string());
        let (phone, client_id) =
            if who.starts_with('+') { (Some(who.to_string()), None) } else { (None, Some(who.to_string())) };
        lines.push(dtenge_api::types::RegistryLine { phone, client_id, bank, amount_tiyn: amount });
    }
    if lines.is_empty() {
        return Err(Error::malformed("the file has no lines to pay"));
    }
    Ok(lines)
}

async fn bank_registry(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: RegistryUpload = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_bank, move |c, s, idem| {
        let Role::BankOfficer { bank } = s.role.clone() else { return Err(Error::internal("not a bank")) };
        let lines = parse_registry_csv(&request.csv)?;
        let detail = format!("{} lines", lines.len());
        let registry =
            dtenge_api::types::RegistryRequest { from: request.from.clone(), reference: request.reference, lines };
        audited(c, &s, "registry_distribution", &request.from, &detail, || {
            c.platform.distribute_registry(idem, &bank, registry)
        })
    })
    .await
}

async fn bank_client_history(State(console): State<App>, Path(client): Path<String>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_bank, move |c, s| {
        let Role::BankOfficer { bank } = s.role else { return Err(Error::internal("not a bank")) };
        c.platform.history(&bank, &client, 0, 100)
    })
    .await
}

// Treasury: markings with their trace, holds, CSV export.

async fn treasury_markings(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_treasury, |c, _| {
        let page = c.platform.markings(0, 1_000)?;
        let mut views = Vec::new();
        for marking in page.markings.iter().filter(|m| m.initiator.bank == dtenge_api::platform::TREASURY_ID) {
            views.push(c.platform.marking(&marking.id)?);
        }
        Ok(views)
    })
    .await
}

async fn treasury_create_marking(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: dtenge_api::types::MarkingRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_treasury, move |c, s, idem| {
        let detail = format!("{} levels: {}", request.levels.len(), request.reference);
        let initiator = request.initiator.clone();
        audited(c, &s, "create_marking", &initiator, &detail, || {
            c.platform.create_marking(idem, dtenge_api::platform::TREASURY_ID, request)
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkedTransfer {
    marking_id: String,
    from: String,
    to_bank: String,
    to_client_id: String,
    amount: String,
}

async fn treasury_marked_transfer(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: MarkedTransfer = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_treasury, move |c, s, idem| {
        let amount = parse_tenge(&request.amount)?;
        let transfer = dtenge_api::types::MarkedTransferRequest {
            marking_id: request.marking_id.clone(),
            from: request.from.clone(),
            to: dtenge_api::types::PartyRef { bank: request.to_bank.clone(), client_id: request.to_client_id.clone() },
            amount_tiyn: amount,
        };
        let detail = format!("{} to {}/{}", amount, request.to_bank, request.to_client_id);
        audited(c, &s, "marked_transfer", &request.marking_id, &detail, || {
            c.platform.marked_transfer(idem, dtenge_api::platform::TREASURY_ID, transfer)
        })
    })
    .await
}

async fn treasury_holds(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_treasury, |c, _| {
        let mut holds = Vec::new();
        for account in c.platform.accounts(dtenge_api::platform::TREASURY_ID)? {
            for hold in c.platform.holds(dtenge_api::platform::TREASURY_ID, &account.account.client_id)? {
                holds.push((account.account.name.clone(), hold));
            }
        }
        Ok(holds)
    })
    .await
}

/// The Treasury's accounts as CSV (amounts in tenge with two decimals).
async fn treasury_accounts_csv(State(console): State<App>, headers: HeaderMap) -> Response {
    let session = match session(&console, &headers, false).and_then(|(_, s)| require(&s, is_treasury).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    drop(session);
    let csv = tokio::task::spawn_blocking(move || {
        console.platform.accounts(dtenge_api::platform::TREASURY_ID).map(|accounts| accounts_csv(&accounts))
    })
    .await;
    match csv {
        Ok(Ok(text)) => {
            let mut response = (StatusCode::OK, text).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"treasury-accounts.csv\""),
            );
            response
        }
        Ok(Err(e)) => failure(e),
        Err(_) => failure(Error::internal("export failed")),
    }
}

/// The accounts as CSV: a header line, then one line per account (amounts in tenge).
fn accounts_csv(accounts: &[dtenge_api::types::AccountView]) -> String {
    let mut out = String::from("client_id,name,kind,dt,held,marked,bank_money\n");
    for a in accounts {
        let b = &a.balance;
        out.push_str(&format!(
            "{},{},{:?},{},{},{},{}\n",
            csv_text(&a.account.client_id),
            csv_text(&a.account.name),
            a.account.kind,
            tenge(b.dt_tiyn.tiyn()),
            tenge(b.dt_held_tiyn.tiyn()),
            tenge(b.dt_marked_tiyn.tiyn()),
            tenge(b.fiat_tiyn.tiyn())
        ));
    }
    out
}

/// A text cell of a CSV export, quoted, and never a formula: a spreadsheet runs a cell that
/// starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one), so such a cell
/// gets a leading `'`, which spreadsheets show as text (OWASP's "CSV injection").
fn csv_text(text: &str) -> String {
    let neutral = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { "'" } else { "" };
    format!("\"{neutral}{}\"", text.replace('"', "\"\""))
}

fn tenge(tiyn: u64) -> String {
    format!("{}.{:02}", tiyn / 100, tiyn % 100)
}

// Treasury requests (account opening, transfers into DT), issue and repayment.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    kind: String,
    client_id: String,
    name: Option<String>,
    contract: Option<String>,
    amount: Option<String>,
}

async fn treasury_requests(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_treasury, |c, _| Ok(c.requests())).await
}

async fn treasury_new_request(State(console): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let request: NewRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    with_role(console, &headers, true, is_treasury, move |c, s| {
        let kind = match request.kind.as_str() {
            "open_account" => crate::requests::RequestKind::OpenAccount {
                client_id: request.client_id.trim().to_string(),
                name: request.name.unwrap_or_default().trim().to_string(),
            },
            "to_dt" => crate::requests::RequestKind::ToDt {
                client_id: request.client_id.trim().to_string(),
                contract: request.contract.unwrap_or_default().trim().to_string(),
                amount_tiyn: parse_tenge(&request.amount.unwrap_or_default())?,
            },
            other => return Err(Error::malformed(format!("unknown request kind '{other}'"))),
        };
        let target = request.client_id.clone();
        audited(c, &s, "register_request", &target, &request.kind, || c.create_request(&s.username, kind))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    approve: bool,
    reason: Option<String>,
}

/// Approving a request to transfer into DT moves money. A second decision on the same request
/// is refused (`CONFLICT`: decided already) whatever its key, so a double click cannot pay
/// twice; the key also reaches the network's operation, so if the console stops between the
/// network's commit and recording the decision, the retry gets the first receipt instead of
/// converting again.
async fn treasury_decide(
    State(console): State<App>,
    Path(id): Path<u64>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decision: Decision = match parse(&body) {
        Ok(d) => d,
        Err(e) => return failure(e),
    };
    with_key(console, &uri, &headers, &body, is_treasury, move |c, s, idem| {
        let action = if decision.approve { "approve_request" } else { "reject_request" };
        let detail = decision.reason.clone().unwrap_or_default();
        let decided = audited(c, &s, action, &id.to_string(), &detail, || {
            c.decide_request(&s.username, id, decision.approve, decision.reason, Some(idem))
        })?;
        Ok(decided)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountText {
    amount: String,
}

/// The Treasury converts with the NBK: issue (bank money -> DT) or repayment (DT -> bank money).
async fn treasury_conversion(console: App, uri: Uri, headers: HeaderMap, body: Bytes, issue: bool) -> Response {
    let request: AmountText = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_treasury, move |c, s, idem| {
        let amount = dtenge_api::types::AmountRequest { amount_tiyn: parse_tenge(&request.amount)? };
        let action = if issue { "issue" } else { "repayment" };
        audited(c, &s, action, dtenge_api::platform::TREASURY_ID, &amount.amount_tiyn.to_string(), || {
            if issue {
                c.platform.emission(idem, dtenge_api::platform::TREASURY_ID, amount)
            } else {
                c.platform.redemption(idem, dtenge_api::platform::TREASURY_ID, amount)
            }
        })
    })
    .await
}

async fn treasury_issue(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    treasury_conversion(console, uri, headers, body, true).await
}

async fn treasury_repayment(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    treasury_conversion(console, uri, headers, body, false).await
}

async fn treasury_operations(State(console): State<App>, headers: HeaderMap) -> Response {
    with_role(console, &headers, false, is_treasury, |c, _| {
        let all = c.platform.nbk_operations(0, OPERATIONS_SCAN_MAX);
        Ok(all.into_iter().filter(|o| o.node == dtenge_api::platform::TREASURY_ID).collect::<Vec<_>>())
    })
    .await
}

// Bank: open an account for a client.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    kind: dtenge_node::ClientKind,
    client_id: String,
    name: String,
    phone: Option<String>,
}

async fn bank_open_account(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: NewAccount = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_bank, move |c, s, idem| {
        let Role::BankOfficer { bank } = s.role.clone() else { return Err(Error::internal("not a bank")) };
        let open = dtenge_api::types::OpenAccount {
            kind: request.kind,
            client_id: request.client_id.trim().to_string(),
            name: request.name.trim().to_string(),
            phone: request.phone.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
            public_key: None,
        };
        audited(c, &s, "open_account", &request.client_id, &request.name, || c.platform.open_account(idem, &bank, open))
    })
    .await
}

// Bank money: a bank credits a client's bank money (salary, cash deposit); the Treasury
// allocates budget funds to an agency; a bank converts with the NBK.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    client_id: String,
    amount: String,
}

fn deposit(
    c: &Console,
    s: &Session,
    idem: Option<&Idem>,
    node: &str,
    request: Deposit,
) -> Result<dtenge_node::Balance, Error> {
    let amount = dtenge_api::types::AmountRequest { amount_tiyn: parse_tenge(&request.amount)? };
    // An officer credits clients. The institution's own account is its liquidity: bank money
    // credited there would become DT at the next conversion, made by the person who credited
    // it (the review found an officer could); its money moves only by the conversions with
    // the NBK, under their own controls. The refusal goes to the trail as every refusal does
    // ([`trail`]).
    if request.client_id == dtenge_node::OWN_ACCOUNT {
        return Err(Error::new(
            dtenge_core::ErrorCode::Forbidden,
            "a console user does not credit the institution's own account",
        ));
    }
    audited(c, s, "credit_bank_money", &request.client_id, &amount.amount_tiyn.to_string(), || {
        c.platform.deposit_fiat(idem, node, &request.client_id, amount)
    })
}

async fn bank_deposit(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: Deposit = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_bank, move |c, s, idem| {
        let Role::BankOfficer { bank } = s.role.clone() else { return Err(Error::internal("not a bank")) };
        deposit(c, &s, idem, &bank, request)
    })
    .await
}

async fn treasury_budget(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: Deposit = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_treasury, move |c, s, idem| {
        deposit(c, &s, idem, dtenge_api::platform::TREASURY_ID, request)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NbkConversion {
    to_dt: bool,
    amount: String,
}

/// The bank converts with the NBK through the ABS: emission (to DT) or redemption.
async fn bank_nbk(State(console): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: NbkConversion = match parse(&body) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    once_with_key(console, &uri, &headers, &body, is_bank, move |c, s, idem| {
        let Role::BankOfficer { bank } = s.role.clone() else { return Err(Error::internal("not a bank")) };
        let amount = dtenge_api::types::AmountRequest { amount_tiyn: parse_tenge(&request.amount)? };
        let action = if request.to_dt { "emission" } else { "redemption" };
        audited(c, &s, action, &bank, &amount.amount_tiyn.to_string(), || {
            if request.to_dt {
                c.platform.emission(idem, &bank, amount)
            } else {
                c.platform.redemption(idem, &bank, amount)
            }
        })
    })
    .await
}

// Client: history, paged.

async fn client_history(
    State(console): State<App>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(page)) = query else { return failure(Error::malformed("offset and limit are numbers")) };
    with_role(console, &headers, false, is_client, move |c, s| {
        let Role::Client { bank, client_id } = s.role else { return Err(Error::internal("not a client")) };
        c.platform.history(&bank, &client_id, page.offset.unwrap_or(0), page.limit.unwrap_or(10).clamp(1, 100))
    })
    .await
}

/// The routes above, added to [`router`].
pub(crate) fn more_routes(router: Router<App>) -> Router<App> {
    router
        .route("/console/api/operator/operations", get(operations))
        .route("/console/api/operator/reconciliation", get(reconciliations).post(run_reconciliation))
        .route("/console/api/operator/calendar/{year}", get(calendar))
        .route("/console/api/operator/calendar/{year}/weekends", post(fill_weekends))
        .route("/console/api/operator/days/{date}", post(set_day))
        .route("/console/api/operator/health", get(health))
        .route("/console/api/client/transfer", post(client_transfer))
        .route("/console/api/client/qr", post(client_qr))
        .route("/console/api/client/qr/preview", get(client_qr_preview))
        .route("/console/api/bank/conversions", post(bank_conversion))
        .route("/console/api/bank/registry", post(bank_registry))
        .route("/console/api/bank/clients/{client}/history", get(bank_client_history))
        .route("/console/api/treasury/markings", get(treasury_markings).post(treasury_create_marking))
        .route("/console/api/treasury/marked-transfers", post(treasury_marked_transfer))
        .route("/console/api/treasury/holds", get(treasury_holds))
        .route("/console/api/treasury/accounts.csv", get(treasury_accounts_csv))
        .route("/console/api/treasury/requests", get(treasury_requests).post(treasury_new_request))
        .route("/console/api/treasury/requests/{id}/decision", post(treasury_decide))
        .route("/console/api/treasury/issue", post(treasury_issue))
        .route("/console/api/treasury/repayment", post(treasury_repayment))
        .route("/console/api/treasury/operations", get(treasury_operations))
        .route("/console/api/bank/accounts", post(bank_open_account))
        .route("/console/api/bank/deposits", post(bank_deposit))
        .route("/console/api/bank/nbk-conversions", post(bank_nbk))
        .route("/console/api/treasury/budget", post(treasury_budget))
        .route("/console/api/client/history", get(client_history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_that_a_spreadsheet_would_run_as_a_formula_is_exported_as_text() {
        assert_eq!(csv_text("Akimat of Astana"), "\"Akimat of Astana\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        for formula in ["=HYPERLINK(\"http://x\")", "+7701", "-1+2", "@SUM(A1)", "\t=1", "\r=1"] {
            let cell = csv_text(formula);
            assert!(cell.starts_with("\"'"), "{formula:?} exported as {cell}");
        }
    }

    #[test]
    fn the_console_answers_every_error_code_with_the_gateways_status_and_body() {
        for code in ErrorCode::ALL {
            let error = Error::new(code, "why");
            let console = failure(error.clone());
            let api = dtenge_api::Failure(error).into_response();
            assert_eq!(console.status(), dtenge_api::status_of(code), "{code}");
            assert_eq!(console.status(), api.status(), "{code}");
        }
        let statuses = |codes: &[ErrorCode]| {
            codes.iter().map(|c| failure(Error::new(*c, "")).status().as_u16()).collect::<Vec<_>>()
        };
        assert_eq!(
            statuses(&[
                ErrorCode::InsufficientFunds,
                ErrorCode::BankBlocked,
                ErrorCode::DoubleSpend,
                ErrorCode::StorageFailure
            ]),
            [422, 423, 409, 503],
            "the codes the console's own map used to answer otherwise (409, 423, 409, 500)"
        );
    }

    #[test]
    fn typed_amounts_parse_exactly() {
        assert_eq!(parse_tenge("1500").unwrap().tiyn(), 150_000);
        assert_eq!(parse_tenge("1 234,5").unwrap().tiyn(), 123_450);
        assert_eq!(parse_tenge("0.07").unwrap().tiyn(), 7);
        for bad in ["", "1.234", "-5", "1e3", "12,34,5", "abc"] {
            assert!(parse_tenge(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qr_payloads_and_registry_files_parse() {
        let bin = dtenge_node::ids::complete_iin_bin("18034000001").unwrap();
        let (bank, to, amount, reference) =
            parse_qr(&format!("dtenge:pay?bank=sapa&to={bin}&amount=1500.50&ref=order+7")).unwrap();
        assert_eq!(
            (bank.as_str(), to.as_str(), amount.tiyn(), reference.as_deref()),
            ("sapa", bin.as_str(), 150_050, Some("order 7"))
        );
        assert!(parse_qr("https://example.com").is_err());
        let no_bin = parse_qr("dtenge:pay?bank=sapa&to=xx&amount=1").unwrap_err();
        assert_eq!(no_bin.code, ErrorCode::MalformedInput, "{no_bin}");
        assert!(parse_qr("dtenge:pay?bank=sapa&amount=1").is_err());
        let lines =
            parse_registry_csv("recipient,amount,bank\n+77011234567,1000\n900101300007,250.50,steppe\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].phone.as_deref(), Some("+77011234567"));
        assert_eq!(lines[1].client_id.as_deref(), Some("900101300007"));
        assert_eq!(lines[1].amount_tiyn.tiyn(), 25_050);
        assert!(parse_registry_csv("+77011234567;abc").is_err());
    }
}
