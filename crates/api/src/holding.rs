//! Routes of the oracle node and of holding (SPEC §5.1).
//!
//! Providers (government systems, portals) authenticate with `Authorization: Bearer <token>`,
//! the token the operator's registration of the provider returned once.

use crate::error::{ApiError, Failure};
use crate::routes::{mutate, read, App, Body, Page, P};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dtenge_core::{Error, ErrorCode};
use dtenge_network::types::*;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/oracle/providers", get(list_providers).post(register_provider))
        .route("/v1/oracle/key", get(oracle_key))
        .route("/v1/oracle/events", get(list_events).post(register_event))
        .route("/v1/oracle/events/{id}", get(get_event))
        .route("/v1/oracle/events/{id}/occurrences", post(report_occurrence))
        .route("/v1/nodes/{node}/holds", post(hold))
        .route("/v1/nodes/{node}/accounts/{client}/holds", get(account_holds))
        .route("/v1/nodes/{node}/notifications", get(notifications))
        .route("/v1/clock", get(get_clock))
        .route("/v1/clock/advance", post(advance_clock))
}

/// The provider's bearer token, or why there is none.
fn bearer(headers: &HeaderMap) -> Result<String, Error> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| Error::new(ErrorCode::Unauthorized, "providers send 'Authorization: Bearer <token>'"))?
        .to_str()
        .map_err(|_| Error::new(ErrorCode::Unauthorized, "the Authorization header must be visible ASCII"))?;
    value
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::new(ErrorCode::Unauthorized, "providers send 'Authorization: Bearer <token>'"))
}


#[utoipa::path(post, path = "/v1/oracle/providers", tag = "oracle",
    description = "Register a provider (NBK operator). The answer carries the provider's secret token, shown once; the oracle keeps only its hash.",
    params(("Idempotency-Key" = String, Header)),
    request_body = ProviderRequest,
    responses((status = 201, body = ProviderCredentials), (status = 409, description = "CONFLICT: id taken", body = ApiError)))]
pub(crate) async fn register_provider(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, |n, idem, r: ProviderRequest| {
        n.register_provider(idem, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/oracle/providers", tag = "oracle", responses((status = 200, body = [ProviderView])))]
pub(crate) async fn list_providers(State(app): State<App>) -> Response {
    read(app, |n| Ok(n.providers())).await
}

/// The oracle's public key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct OracleKey {
    /// Verifies the oracle's attestations on transactions and the signatures of its records
    /// (`oracle_signature` over SHA-256 of `dtenge/oracle/record/v1` and the record body's JSON).
    pub public_key: dtenge_core::crypto::PublicKey,
}

#[utoipa::path(get, path = "/v1/oracle/key", tag = "oracle", responses((status = 200, body = OracleKey)))]
pub(crate) async fn oracle_key(State(app): State<App>) -> Response {
    read(app, |n| Ok(OracleKey { public_key: n.oracle_public_key() })).await
}

#[utoipa::path(post, path = "/v1/oracle/events", tag = "oracle",
    description = "A provider registers an event: sender, payees with amounts, validity, single or infinite. The banks of the sender and the payees are notified. Needs `Authorization: Bearer <provider token>`.",
    params(("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <provider token>")),
    request_body = EventRequest,
    responses((status = 201, body = EventView), (status = 401, description = "UNAUTHORIZED", body = ApiError), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn register_event(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = bearer(&headers);
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: EventRequest| {
        n.register_event(idem, &token?, r)
    })
    .await
}

/// Filter and page of the event list.
#[derive(Deserialize, IntoParams)]
pub struct EventQuery {
    /// Only events with this status: registered, held, completed, rejected, expired.
    pub status: Option<EventStatus>,
    pub offset: Option<usize>,
    /// 1 to 1,000 (default 50).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/oracle/events", tag = "oracle", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ApiError)))]
pub(crate) async fn list_events(
    State(app): State<App>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return Failure(Error::malformed(format!("query: {e}"))).into_response(),
    };
    read(app, move |n| n.oracle_events(query.status, query.offset.unwrap_or(0), query.limit.unwrap_or(50))).await
}

#[utoipa::path(get, path = "/v1/oracle/events/{id}", tag = "oracle",
    description = "An event with its full history: every record signed by the oracle.",
    params(("id" = String, Path)), responses((status = 200, body = EventView), (status = 404, body = ApiError)))]
pub(crate) async fn get_event(State(app): State<App>, P(id): P<String>) -> Response {
    read(app, move |n| n.oracle_event(&id)).await
}

#[utoipa::path(post, path = "/v1/oracle/events/{id}/occurrences", tag = "oracle",
    description = "The confirming provider reports an occurrence. `occurred` releases the held funds to the payees in one transaction (a single event paying less returns the rest to the sender; an infinite one keeps the rest held); `rejected` returns everything to the sender with the reason. The same `occurrence_id` again does nothing more. After the validity: EVENT_EXPIRED, and the funds go back.",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <provider token>")),
    request_body = OccurrenceRequest,
    responses((status = 200, body = HoldReceipt), (status = 401, body = ApiError), (status = 403, description = "FORBIDDEN (not the confirming provider), RECIPIENT_NOT_ALLOWED", body = ApiError),
        (status = 409, description = "EVENT_EXPIRED, CONFLICT (nothing held, already final)", body = ApiError), (status = 422, description = "LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn report_occurrence(
    State(app): State<App>,
    P(id): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let token = bearer(&headers);
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: OccurrenceRequest| {
        n.report_occurrence(idem, &token?, &id, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/holds", tag = "holding",
    description = "The sender's bank holds its client's funds against an event. The oracle confirms by attesting the transaction; the funds stay on the account as held (not spendable); the payees' banks are notified.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = HoldRequest,
    responses((status = 201, body = HoldReceipt), (status = 403, body = ApiError), (status = 409, description = "EVENT_EXPIRED, CONFLICT (single event held already)", body = ApiError),
        (status = 422, description = "INSUFFICIENT_FUNDS", body = ApiError)))]
pub(crate) async fn hold(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: HoldRequest| n.hold(idem, &node, r))
        .await
}

#[utoipa::path(get, path = "/v1/nodes/{node}/accounts/{client}/holds", tag = "holding",
    description = "Events the client is a party to: funds held from its account (sender) or for it (payee), with time to expiry.",
    params(("node" = String, Path), ("client" = String, Path)),
    responses((status = 200, body = [HoldView]), (status = 404, body = ApiError)))]
pub(crate) async fn account_holds(State(app): State<App>, P((node, client)): P<(String, String)>) -> Response {
    read(app, move |n| n.holds(&node, &client)).await
}

#[utoipa::path(get, path = "/v1/nodes/{node}/notifications", tag = "holding",
    description = "What the node was told about its clients (events registered, funds held, released, returned), newest first.",
    params(("node" = String, Path), Page),
    responses((status = 200, body = NotificationPage), (status = 404, body = ApiError)))]
pub(crate) async fn notifications(
    State(app): State<App>,
    P(node): P<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match page {
        Ok(Query(p)) => p,
        Err(e) => return Failure(Error::malformed(format!("query: {e}"))).into_response(),
    };
    read(app, move |n| n.notifications(&node, page.offset.unwrap_or(0), page.limit.unwrap_or(50))).await
}

#[utoipa::path(get, path = "/v1/clock", tag = "oracle", responses((status = 200, body = ClockView)))]
pub(crate) async fn get_clock(State(app): State<App>) -> Response {
    read(app, |n| Ok(ClockView { now_unix_ms: n.now_ms(), expired_events: Vec::new() })).await
}

#[utoipa::path(post, path = "/v1/clock/advance", tag = "oracle",
    description = "Advance the platform's clock and run the expiries that became due. Only a platform started with a manual clock (`dtenge demo`, tests) allows it; otherwise FORBIDDEN.",
    params(("Idempotency-Key" = String, Header)),
    request_body = ClockAdvance, responses((status = 200, body = ClockView), (status = 403, body = ApiError)))]
pub(crate) async fn advance_clock(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, |n, idem, r: ClockAdvance| {
        n.advance_clock(idem, r.advance_ms)
    })
    .await
}
