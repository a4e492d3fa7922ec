//! Routes, handlers and the OpenAPI description.

use crate::error::{ApiError, Failure, HttpCode};
use crate::idempotency::{idempotency_key, typed_request, CONSOLE_KEY_PREFIX};
use crate::platform::{Idem, Platform, Staged};
use crate::schemas;
use crate::types::*;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use dtenge_core::calendar::Date;
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

pub(crate) type App = Arc<Platform>;

/// Largest request body: a 16,000-line registry fits with room to spare.
pub const REQUEST_BYTES_MAX: usize = 8 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dtenge: Digital Tenge platform API",
        description = "REST API of the Digital Tenge network: digital accounts, transfers, conversions, \
registry distribution, vouchers, cards, and the NBK operator's controls. Amounts are integer tiyn \
(1 tenge = 100 tiyn). Every POST/PUT needs an `Idempotency-Key` header, and its body, if it has \
one, `Content-Type: application/json` (otherwise 415 UNSUPPORTED_MEDIA_TYPE). Errors are \
`{\"error\":{\"code\",\"message\"}}` with stable codes.",
        version = "0.1.0"
    ),
    paths(
        health, list_accounts, open_account, open_accounts, get_account, get_history, deposit, to_dt, from_dt, transfer, tokens, consolidate, consolidation_offer, submit,
        submit_batch,
        registry, link_card, emission, redemption, credit_correspondent, abs_balances, lookup_phone,
        card_purchase, get_purchase, card_refund, atm_withdrawal, create_voucher_program, list_voucher_programs,
        voucher_event, block_node, unblock_node, calendar_year, set_day, today, monitoring,
        reconciliation, nbk_operations, tx_status, checkpoint, crate::metrics::metrics,
        crate::holding::register_provider, crate::holding::list_providers, crate::holding::oracle_key,
        crate::holding::register_event, crate::holding::list_events, crate::holding::get_event,
        crate::holding::report_occurrence, crate::holding::hold, crate::holding::account_holds,
        crate::holding::notifications, crate::holding::get_clock, crate::holding::advance_clock,
        crate::holding::create_marking, crate::holding::list_markings, crate::holding::get_marking,
        crate::holding::marked_transfer, crate::holding::register_vat_payer, crate::holding::list_vat_payers,
        crate::holding::set_tax_account, crate::holding::register_invoice, crate::holding::get_invoice,
        crate::holding::list_vat_payments, crate::holding::pay_invoice, crate::holding::pay_vat,
        crate::holding::split_payment, crate::holding::register_contract, crate::holding::get_contract,
        crate::holding::contract_payment, crate::holding::contract_withdrawal
    ),
    components(schemas(ApiError, TxStatus, AbsBalances, Health)),
    modifiers(&JsonBodiesOnly),
    tags(
        (name = "accounts", description = "Digital accounts, bank money, history (sub-scenarios 1, 2)"),
        (name = "payments", description = "Transfers, registry distribution (7, 8)"),
        (name = "conversion", description = "Bank money <-> DT (3-5, 11-13)"),
        (name = "cards", description = "Card purchases and refunds (9, 10)"),
        (name = "vouchers", description = "Payments on integrator events (6)"),
        (name = "operator", description = "NBK operator: monitoring, blocking, calendar, reconciliation (14-16)"),
        (name = "abs", description = "The NBK's automated banking system (RTGS)"),
        (name = "id-center", description = "Phone / IIN / BIN to accounts"),
        (name = "oracle", description = "The oracle node: providers, events, occurrences (programmable money, SPEC §5)"),
        (name = "holding", description = "Holding funds against oracle events, and what banks are told"),
        (name = "marking", description = "Marking by addresses: targeted money down a tree of allowed recipients"),
        (name = "vat", description = "Digital VAT: e-invoices, VAT-marked DT, VAT to the tax account"),
    )
)]
pub struct ApiDoc;

/// Adds the 415 answer of [`crate::require_json`] to every operation that takes a body, so
/// that the description stays true of every route without repeating it in each annotation.
struct JsonBodiesOnly;

impl utoipa::Modify for JsonBodiesOnly {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refused = ResponseBuilder::new()
            .description(
                "UNSUPPORTED_MEDIA_TYPE: the body is not declared `Content-Type: application/json`; nothing was done",
            )
            .content(
                crate::JSON_MEDIA_TYPE,
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ApiError"))).build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.put, &mut item.patch].into_iter().flatten() {
                operation.responses.responses.entry("415".to_string()).or_insert_with(|| refused.clone().into());
            }
        }
    }
}

/// The router with every route, the OpenAPI description and the browsable docs.
pub fn router(network: App) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/v1/nodes/{node}/accounts", get(list_accounts).post(open_account))
        .route("/v1/nodes/{node}/accounts/bulk", post(open_accounts))
        .route("/v1/nodes/{node}/accounts/{client}", get(get_account))
        .route("/v1/nodes/{node}/accounts/{client}/history", get(get_history))
        .route("/v1/nodes/{node}/accounts/{client}/deposits", post(deposit))
        .route("/v1/nodes/{node}/accounts/{client}/to-dt", post(to_dt))
        .route("/v1/nodes/{node}/accounts/{client}/from-dt", post(from_dt))
        .route("/v1/nodes/{node}/accounts/{client}/tokens", get(tokens))
        .route("/v1/nodes/{node}/accounts/{client}/consolidations", post(consolidate))
        .route("/v1/nodes/{node}/accounts/{client}/consolidation", get(consolidation_offer))
        .route("/v1/nodes/{node}/transfers", post(transfer))
        .route("/v1/nodes/{node}/transactions", post(submit))
        .route("/v1/nodes/{node}/transactions/batch", post(submit_batch))
        .route("/v1/nodes/{node}/registries", post(registry))
        .route("/v1/nodes/{node}/cards", post(link_card))
        .route("/v1/nodes/{node}/emissions", post(emission))
        .route("/v1/nodes/{node}/redemptions", post(redemption))
        .route("/v1/abs/correspondent/{node}/credits", post(credit_correspondent))
        .route("/v1/abs/balances", get(abs_balances))
        .route("/v1/id-center/phones/{phone}", get(lookup_phone))
        .route("/v1/card-purchases", post(card_purchase))
        .route("/v1/card-purchases/{id}", get(get_purchase))
        .route("/v1/card-purchases/{id}/refunds", post(card_refund))
        .route("/v1/atm-withdrawals", post(atm_withdrawal))
        .route("/v1/voucher-programs", get(list_voucher_programs).post(create_voucher_program))
        .route("/v1/voucher-programs/{id}/events", post(voucher_event))
        .route("/v1/operator/nodes/{node}/block", post(block_node))
        .route("/v1/operator/nodes/{node}/unblock", post(unblock_node))
        .route("/v1/operator/calendar/{year}", get(calendar_year))
        .route("/v1/operator/calendar/days/{date}", put(set_day))
        .route("/v1/operator/today", get(today))
        .route("/v1/operator/monitoring", get(monitoring))
        .route("/v1/operator/reconciliation", get(reconciliation))
        .route("/v1/operator/operations", get(nbk_operations))
        .route("/v1/operator/checkpoints", post(checkpoint))
        .route("/v1/transactions/{tx_id}", get(tx_status))
        .route("/metrics", get(crate::metrics::metrics))
        .merge(crate::holding::routes())
        // Before any handler reads a body; on the routes only, so that an unknown route is
        // still NOT_FOUND and a wrong method METHOD_NOT_ALLOWED.
        .route_layer(axum::middleware::from_fn(crate::require_json))
        // Outside `require_json`, so an unauthenticated call is told so before anything else.
        .route_layer(axum::middleware::from_fn_with_state(network.clone(), crate::access::authorize))
        // After the layers: the token endpoint authenticates its caller itself, from a form.
        .route(crate::access::TOKEN_PATH, post(crate::access::token))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(network);
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

/// Path parameters; a path that does not decode (e.g. invalid UTF-8) is answered with a
/// structured error like every other bad input.
pub struct P<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for P<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| P(value))
            .map_err(|e| Failure(Error::malformed(format!("path: {}", e.body_text()))).into_response())
    }
}

/// Query parameters; a query that does not parse (a number that is not one, an unknown
/// field) is answered with a structured error like every other bad input.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Q(value))
            .map_err(|e| Failure(Error::malformed(format!("query: {e}"))).into_response())
    }
}

/// The raw request body; a body that cannot be read (too large, broken) is answered with a
/// structured error like every other bad input.
pub struct Body(pub(crate) Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state).await.map(Body).map_err(|e| {
            let message = format!("request body: {} (at most {REQUEST_BYTES_MAX} bytes)", e.body_text());
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Failure(Error::new(ErrorCode::LimitExceeded, message)).with_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                Failure(Error::malformed(message)).into_response()
            }
        })
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    HttpCode::MethodNotAllowed.response(format!("{method} is not allowed on {}", uri.path()))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    Failure(Error::new(ErrorCode::NotFound, format!("no route {method} {}", uri.path()))).into_response()
}

/// Run a read on a blocking thread.
pub(crate) async fn read<T, F>(app: App, op: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Platform) -> Result<T, Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || op(&app)).await {
        Ok(Ok(value)) => (StatusCode::OK, Json(value)).into_response(),
        Ok(Err(e)) => Failure(e).into_response(),
        Err(_) => Failure(Error::internal("the operation failed unexpectedly")).into_response(),
    }
}

/// Parse the body, take the idempotency key, run the operation at most once, answer.
pub(crate) async fn mutate<R, T, F>(
    app: App,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    status: StatusCode,
    op: F,
) -> Response
where
    R: DeserializeOwned + Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnOnce(&Platform, Option<&Idem>, R) -> Result<T, Error> + Send + 'static,
{
    let (idem, request) = match prepare::<R>(&method, &uri, &headers, &body.0) {
        Ok(prepared) => prepared,
        Err(e) => return Failure(e).into_response(),
    };
    let outcome = tokio::task::spawn_blocking(move || app.once(Some(idem), |idem| op(&app, idem, request))).await;
    match outcome {
        Ok(Ok(value)) => (status, Json(value)).into_response(),
        Ok(Err(e)) => Failure(e).into_response(),
        Err(_) => Failure(Error::internal("the operation failed unexpectedly")).into_response(),
    }
}

/// [`mutate`] for an operation whose role keeps the key: transfers and client-signed
/// transactions, the hot path. The operation runs on the runtime's worker (its checks take
/// the roles' locks for moments only) and hands the payment to the payer's bank; the task then
/// awaits the bank's answer, holding no thread: a blocking thread per payment in flight cost
/// a thread switch at each step and, with hundreds in flight, fresh memory for each thread.
async fn mutate_at_role<R, T, F>(
    app: App,
    (method, uri, headers, body): (Method, Uri, HeaderMap, Body),
    status: StatusCode,
    op: F,
) -> Response
where
    R: DeserializeOwned + Serialize + Send + 'static,
    T: Serialize + Send + 'static,
    F: FnOnce(&Platform, Option<&Idem>, R) -> Result<Staged<T>, Error> + Send + 'static,
{
    let (idem, request) = match prepare::<R>(&method, &uri, &headers, &body.0) {
        Ok(prepared) => prepared,
        Err(e) => return Failure(e).into_response(),
    };
    let _in_flight = match app.enter_key(&idem) {
        Ok(guard) => guard,
        Err(e) => return Failure(e).into_response(),
    };
    // A panic in the operation is the gateway's bug, answered as the blocking pool answered it.
    let staged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&app, Some(&idem), request)));
    let outcome = match staged {
        Ok(Ok(staged)) => staged.complete_async(&app).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::internal("the operation failed unexpectedly")),
    };
    match outcome {
        Ok(value) => (status, Json(value)).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

/// The idempotency key and the request of a mutating call: the key present (scoped to its
/// caller by the access layer, `crate::idempotency::scope_to_caller`), the body parsed once,
/// into its type, and fingerprinted ([`crate::idempotency::typed_request`]).
fn prepare<R: DeserializeOwned + Serialize>(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Idem, R), Error> {
    let key = idempotency_key(headers)?;
    // Every key here is scoped: by the access layer under its caller's identity, or by a
    // provider's route under its token's digest; the consoles' prefix is theirs alone.
    if key.starts_with(CONSOLE_KEY_PREFIX) {
        return Err(Error::malformed(format!(
            "idempotency keys starting with '{CONSOLE_KEY_PREFIX}' are the consoles'"
        )));
    }
    let (fingerprint, request) = typed_request(method, uri.path(), body)?;
    Ok((Idem { key, fingerprint }, request))
}

/// Liveness and what is running.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub nodes: Vec<String>,
}

#[utoipa::path(get, path = "/health", tag = "operator", responses((status = 200, body = Health)))]
async fn health(State(app): State<App>) -> Response {
    read(app, |n| Ok(Health { status: "ok".into(), nodes: n.node_ids() })).await
}

/// A page of accounts.
#[derive(Deserialize, IntoParams)]
pub struct AccountsAfter {
    /// The page after this client id (the `next_after` of the page before); the first page
    /// without it.
    pub after: Option<String>,
    /// Accounts to return, 1 to 1,000 (default 100).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/nodes/{node}/accounts", tag = "accounts",
    description = "The node's accounts in client id order, a page at a time: follow `next_after` until it is null.",
    params(("node" = String, Path, description = "Node id: a bank (`steppe`, `tulpar`, `sapa`) or `treasury`"), AccountsAfter),
    responses((status = 200, body = schemas::AccountPage), (status = 404, body = ApiError)))]
async fn list_accounts(State(app): State<App>, P(node): P<String>, Q(page): Q<AccountsAfter>) -> Response {
    let limit = page.limit.unwrap_or(crate::platform::ACCOUNTS_PAGE_DEFAULT);
    read(app, move |n| n.accounts_page(&node, page.after.as_deref(), limit)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/accounts", tag = "accounts",
    description = "Open a digital account: one per client per bank. Banks open accounts for individuals (IIN) and legal entities (BIN); the Treasury for government agencies.",
    params(("node" = String, Path, description = "Node id"), ("Idempotency-Key" = String, Header, description = "Unique per request")),
    request_body = schemas::OpenAccount,
    responses((status = 201, body = schemas::Account), (status = 409, description = "DUPLICATE_ACCOUNT", body = ApiError), (status = 400, body = ApiError), (status = 423, description = "BANK_BLOCKED", body = ApiError)))]
async fn open_account(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: OpenAccount| {
        n.open_account(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/accounts/bulk", tag = "accounts",
    description = "Open up to 10,000 digital accounts at once (a bank migrating its clients): all or none, one durable commit.",
    params(("node" = String, Path, description = "Node id"), ("Idempotency-Key" = String, Header, description = "Unique per request")),
    request_body = [schemas::OpenAccount],
    responses((status = 201, body = [schemas::Account]), (status = 409, description = "DUPLICATE_ACCOUNT", body = ApiError), (status = 422, description = "LIMIT_EXCEEDED", body = ApiError)))]
async fn open_accounts(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: Vec<OpenAccount>| {
        n.open_accounts(idem, &node, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/nodes/{node}/accounts/{client}", tag = "accounts",
    params(("node" = String, Path), ("client" = String, Path, description = "IIN/BIN, or `own` for the node's own account")),
    responses((status = 200, body = schemas::AccountView), (status = 404, body = ApiError)))]
async fn get_account(State(app): State<App>, P((node, client)): P<(String, String)>) -> Response {
    read(app, move |n| n.account_view(&node, &client)).await
}

/// Paging of lists.
#[derive(Deserialize, IntoParams)]
pub struct Page {
    /// Lines to skip (newest first).
    pub offset: Option<usize>,
    /// Lines to return, 1 to 500 (default 50).
    pub limit: Option<usize>,
}

impl Page {
    /// The offset and the page size asked for, or the first page of
    /// [`crate::platform::LIST_PAGE_DEFAULT`].
    pub fn or_default(&self) -> (usize, usize) {
        (self.offset.unwrap_or(0), self.limit.unwrap_or(crate::platform::LIST_PAGE_DEFAULT))
    }
}

#[utoipa::path(get, path = "/v1/nodes/{node}/accounts/{client}/history", tag = "accounts",
    description = "History newest first. Counterparty names appear only when the counterparty is a client of the same bank.",
    params(("node" = String, Path), ("client" = String, Path), Page),
    responses((status = 200, body = schemas::HistoryPage), (status = 404, body = ApiError)))]
async fn get_history(State(app): State<App>, P((node, client)): P<(String, String)>, Q(page): Q<Page>) -> Response {
    read(app, move |n| n.history(&node, &client, page.offset.unwrap_or(0), page.limit.unwrap_or(50))).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/accounts/{client}/deposits", tag = "accounts",
    description = "Credit the client's bank money (stand-in for the bank's core banking system: salary, cash deposit).",
    params(("node" = String, Path), ("client" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Balance), (status = 404, body = ApiError)))]
async fn deposit(
    State(app): State<App>,
    P((node, client)): P<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| {
        n.deposit_fiat(idem, &node, &client, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/accounts/{client}/to-dt", tag = "conversion",
    description = "Client bank money -> DT (sub-scenarios 4, 5): debits the client's bank money, pays DT from the bank's own account.",
    params(("node" = String, Path), ("client" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Receipt), (status = 422, description = "INSUFFICIENT_FUNDS", body = ApiError)))]
async fn to_dt(
    State(app): State<App>,
    P((node, client)): P<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| {
        n.convert_to_dt(idem, &node, &client, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/accounts/{client}/from-dt", tag = "conversion",
    description = "Client DT -> bank money (sub-scenarios 11, 12).",
    params(("node" = String, Path), ("client" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Receipt), (status = 422, body = ApiError)))]
async fn from_dt(
    State(app): State<App>,
    P((node, client)): P<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| {
        n.convert_from_dt(idem, &node, &client, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/transfers", tag = "payments",
    description = "Pay from a client of this node to a payee named by phone (ID center), IIN/BIN and bank, or address; within the bank or to another bank.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::TransferRequest,
    responses((status = 200, body = schemas::Receipt), (status = 422, description = "INSUFFICIENT_FUNDS", body = ApiError), (status = 404, description = "UNKNOWN_ACCOUNT", body = ApiError), (status = 423, description = "BANK_BLOCKED", body = ApiError)))]
async fn transfer(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = (method, uri, headers, body);
    mutate_at_role(app, request, StatusCode::OK, move |n, idem, r: TransferRequest| n.transfer_staged(idem, &node, r))
        .await
}

/// Which tokens to list.
#[derive(Deserialize, IntoParams)]
pub struct TokenQuery {
    /// `true`: every token, held, marked and VAT-marked ones included (they move only with
    /// the oracle's confirmation). Default: the standard tokens the client may spend now.
    pub all: Option<bool>,
    /// Tokens to skip.
    pub offset: Option<usize>,
    /// Tokens to return, 1 to 500 (default 50).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/nodes/{node}/accounts/{client}/tokens", tag = "payments",
    description = "The tokens a client may spend now, with their preimages: what a client that keeps its own key needs to build a transaction. A page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(("node" = String, Path), ("client" = String, Path), TokenQuery),
    responses((status = 200, body = schemas::TokenPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError), (status = 404, body = ApiError)))]
async fn tokens(State(app): State<App>, P((node, client)): P<(String, String)>, Q(query): Q<TokenQuery>) -> Response {
    let (all, offset) = (query.all.unwrap_or(false), query.offset.unwrap_or(0));
    let limit = query.limit.unwrap_or(crate::platform::LIST_PAGE_DEFAULT);
    read(app, move |n| n.tokens_page(&node, &client, all, offset, limit)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/accounts/{client}/consolidations", tag = "payments",
    description = "Merge a custodial client's smallest spendable tokens (at most 1,024) into one, with a transfer to itself its bank signs, validated and notarised like any other; its balance and history do not change. A payment spends at most 1,024 tokens: a balance made of more is refused LIMIT_EXCEEDED until it is consolidated (ask again while `spendable_tokens` is above `inputs_per_payment_max`). The body is `{}`.",
    params(("node" = String, Path), ("client" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::ConsolidationRequest,
    responses((status = 200, body = schemas::Consolidation), (status = 409, description = "CONFLICT: fewer than two spendable tokens, nothing to merge", body = ApiError), (status = 403, description = "FORBIDDEN: the client keeps its own key (it signs a transfer to itself)", body = ApiError), (status = 404, body = ApiError)))]
async fn consolidate(
    State(app): State<App>,
    P((node, client)): P<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: ConsolidationRequest| {
        n.consolidate(idem, &node, &client, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/nodes/{node}/accounts/{client}/consolidation", tag = "payments",
    description = "For a client that keeps its own key: a consolidation to sign, its smallest spendable tokens (at most 1,024) to one token of their sum on its own account, unsigned. Sign it as any transfer and submit it to `POST /v1/nodes/{node}/transactions`; nothing is reserved until then, so a payment meanwhile that takes one of its tokens makes it fail (ask again).",
    params(("node" = String, Path), ("client" = String, Path)),
    responses((status = 200, body = schemas::Transaction), (status = 409, description = "CONFLICT: fewer than two spendable tokens", body = ApiError), (status = 403, description = "FORBIDDEN: a custodial client (its bank merges its tokens)", body = ApiError), (status = 404, body = ApiError)))]
async fn consolidation_offer(State(app): State<App>, P((node, client)): P<(String, String)>) -> Response {
    read(app, move |n| n.consolidation_offer(&node, &client)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/transactions", tag = "payments",
    description = "Submit a transfer signed by a client that keeps its own key. The node checks its clients own the inputs, attests, and the platform validates every signature, notarizes and commits.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::Transaction,
    responses((status = 200, body = schemas::Receipt), (status = 409, description = "DOUBLE_SPEND", body = ApiError), (status = 400, description = "INVALID_SIGNATURE", body = ApiError)))]
async fn submit(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // To the payer's bank, whose flusher batches concurrent submissions: the same path
    // `dtenge bench` measures.
    let request = (method, uri, headers, body);
    mutate_at_role(app, request, StatusCode::OK, move |p, idem, tx: Transaction| p.submit_staged(idem, &node, tx)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/transactions/batch", tag = "payments",
    description = "Submit up to 512 transfers signed by clients that keep their own key, in one call (as a bank's processing centre forwards its clients' payments). Each is its own payment, answered by itself in the batch's order (a receipt or an error), as if posted alone under the key `<Idempotency-Key>#<index>`: the same key and body again answer each from the bank's store.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::TransactionBatch,
    responses((status = 200, body = schemas::TransactionBatchReport), (status = 400, description = "MALFORMED_INPUT: no transactions, more than 512, or a key over 64 characters", body = ApiError)))]
async fn submit_batch(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (idem, batch) = match prepare::<TransactionBatch>(&method, &uri, &headers, &body.0) {
        Ok(prepared) => prepared,
        Err(e) => return Failure(e).into_response(),
    };
    if let Err(e) = batch.check(&idem.key) {
        return Failure(e).into_response();
    }
    // One batch under one key at a time; its transactions' keys are derived from it.
    let _in_flight = match app.enter_key(&idem) {
        Ok(guard) => guard,
        Err(e) => return Failure(e).into_response(),
    };
    // Staged together, so the payer's bank's flusher takes them in one batch.
    let staged: Vec<Result<Staged<Receipt>, Error>> = batch
        .transactions
        .into_iter()
        .enumerate()
        .map(|(index, tx)| {
            let (key, fingerprint) = TransactionBatch::item_key(&idem.key, index, &node, &tx);
            // A panic in the operation is the gateway's bug, answered as `mutate_at_role` does.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                app.submit_staged(Some(&Idem { key, fingerprint }), &node, tx)
            }))
            .unwrap_or_else(|_| Err(Error::internal("the operation failed unexpectedly")))
        })
        .collect();
    let results = futures_util::future::join_all(staged.into_iter().map(|staged| {
        let app = app.clone();
        async move {
            BatchResult::of(match staged {
                Ok(staged) => staged.complete_async(&app).await,
                Err(e) => Err(e),
            })
        }
    }))
    .await;
    (StatusCode::OK, Json(TransactionBatchReport { results })).into_response()
}

#[utoipa::path(post, path = "/v1/nodes/{node}/registries", tag = "payments",
    description = "Registry distribution: a legal entity pays many individuals (up to 16,000 lines). Lines are validated one by one and reported per line; all valid lines are paid in one atomic transaction.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::RegistryRequest, responses((status = 200, body = schemas::RegistryReport), (status = 422, body = ApiError)))]
async fn registry(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: RegistryRequest| {
        n.distribute_registry(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/cards", tag = "cards",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::LinkCard, responses((status = 201, body = String, description = "The masked card number"), (status = 409, body = ApiError)))]
async fn link_card(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: LinkCard| {
        n.link_card(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/emissions", tag = "conversion",
    description = "Bank -> NBK conversion (sub-scenario 3): the ABS moves bank money from the node's correspondent account to the DT liability account and the NBK issues DT to the node. Operational days only (NON_WORKING_DAY otherwise).",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Receipt), (status = 409, description = "NON_WORKING_DAY", body = ApiError), (status = 422, body = ApiError)))]
async fn emission(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| n.emission(idem, &node, r))
        .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/redemptions", tag = "conversion",
    description = "NBK -> bank conversion (sub-scenario 13): the node's DT is redeemed and the ABS credits its correspondent account. Operational days only.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Receipt), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
async fn redemption(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| {
        n.redemption(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/abs/correspondent/{node}/credits", tag = "abs",
    description = "Money arriving on a node's correspondent account from outside the DT platform (stand-in for other RTGS payments).",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Posting)))]
async fn credit_correspondent(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| {
        n.credit_correspondent(idem, &node, r)
    })
    .await
}

/// ABS balances by account, tiyn.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AbsBalances {
    pub balances: std::collections::BTreeMap<String, i64>,
}

#[utoipa::path(get, path = "/v1/abs/balances", tag = "abs", responses((status = 200, body = AbsBalances)))]
async fn abs_balances(State(app): State<App>) -> Response {
    read(app, |n| Ok(AbsBalances { balances: n.abs_balances() })).await
}

#[utoipa::path(get, path = "/v1/id-center/phones/{phone}", tag = "id-center",
    params(("phone" = String, Path, description = "+7XXXXXXXXXX")),
    responses((status = 200, body = schemas::PhoneLookup), (status = 404, body = ApiError)))]
async fn lookup_phone(State(app): State<App>, P(phone): P<String>) -> Response {
    read(app, move |n| n.lookup_phone(&phone)).await
}

#[utoipa::path(post, path = "/v1/card-purchases", tag = "cards",
    description = "A card purchase: `dt` pays the merchant DT (sub-scenario 9); `convert_to_fiat` converts the buyer's DT instantly and pays the merchant bank money (10).",
    params(("Idempotency-Key" = String, Header)),
    request_body = schemas::CardPurchaseRequest, responses((status = 201, body = schemas::Purchase), (status = 422, body = ApiError)))]
async fn card_purchase(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: CardPurchaseRequest| {
        n.card_purchase(idem, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/card-purchases/{id}", tag = "cards",
    params(("id" = String, Path)), responses((status = 200, body = schemas::Purchase), (status = 404, body = ApiError)))]
async fn get_purchase(State(app): State<App>, P(id): P<String>) -> Response {
    read(app, move |n| n.purchase(&id)).await
}

#[utoipa::path(post, path = "/v1/card-purchases/{id}/refunds", tag = "cards",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::AmountRequest, responses((status = 200, body = schemas::Receipt), (status = 409, description = "CONFLICT: more than is left to refund", body = ApiError)))]
async fn card_refund(
    State(app): State<App>,
    P(id): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AmountRequest| {
        n.card_refund(idem, &id, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/atm-withdrawals", tag = "cards",
    description = "Cash withdrawal at an ATM with a DT-linked card; an ATM of another bank is settled in the ABS.",
    params(("Idempotency-Key" = String, Header)),
    request_body = schemas::AtmWithdrawal, responses((status = 200, body = schemas::Receipt), (status = 422, body = ApiError)))]
async fn atm_withdrawal(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: AtmWithdrawal| n.atm_withdrawal(idem, r))
        .await
}

#[utoipa::path(post, path = "/v1/voucher-programs", tag = "vouchers",
    params(("Idempotency-Key" = String, Header)),
    request_body = schemas::VoucherProgramRequest, responses((status = 201, body = schemas::VoucherProgram), (status = 403, body = ApiError)))]
async fn create_voucher_program(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: VoucherProgramRequest| {
        n.create_voucher_program(idem, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/voucher-programs", tag = "vouchers",
    description = "The voucher programmes, a page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(Page),
    responses((status = 200, body = schemas::VoucherProgramPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError)))]
async fn list_voucher_programs(State(app): State<App>, Q(page): Q<Page>) -> Response {
    let (offset, limit) = page.or_default();
    read(app, move |n| n.voucher_programs_page(offset, limit)).await
}

#[utoipa::path(post, path = "/v1/voucher-programs/{id}/events", tag = "vouchers",
    description = "An integrator's event (a pupil's card tap): the school pays the canteen once per event id; the same event again returns the first receipt.",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::VoucherEvent, responses((status = 200, body = schemas::Receipt), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
async fn voucher_event(
    State(app): State<App>,
    P(id): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: VoucherEvent| {
        n.voucher_event(idem, &id, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/operator/nodes/{node}/block", tag = "operator",
    description = "Block a bank (or the Treasury): its operations and payments to its clients fail with BANK_BLOCKED.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::BlockRequest, responses((status = 200, body = schemas::NodeView), (status = 403, body = ApiError)))]
async fn block_node(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: BlockRequest| n.block(idem, &node, r))
        .await
}

#[utoipa::path(post, path = "/v1/operator/nodes/{node}/unblock", tag = "operator",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body(content = Option<schemas::BlockRequest>, description = "No body needed"),
    responses((status = 200, body = schemas::NodeView)))]
async fn unblock_node(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, _: serde_json::Value| n.unblock(idem, &node))
        .await
}

#[utoipa::path(get, path = "/v1/operator/calendar/{year}", tag = "operator",
    params(("year" = i32, Path)), responses((status = 200, body = [schemas::DayView])))]
async fn calendar_year(State(app): State<App>, P(year): P<String>) -> Response {
    read(app, move |n| {
        let year: i32 = year.parse().map_err(|_| Error::malformed("year must be a number"))?;
        n.calendar_year(year)
    })
    .await
}

#[utoipa::path(put, path = "/v1/operator/calendar/days/{date}", tag = "operator",
    description = "Make a day a working day or a holiday. Bank <-> NBK conversions are refused on non-working days.",
    params(("date" = String, Path, description = "YYYY-MM-DD"), ("Idempotency-Key" = String, Header)),
    request_body = schemas::DayRequest, responses((status = 200, body = schemas::DayView), (status = 400, body = ApiError)))]
async fn set_day(
    State(app): State<App>,
    P(date): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: DayRequest| {
        let date: Date = date.parse()?;
        n.set_day(idem, date, r.working)
    })
    .await
}

#[utoipa::path(get, path = "/v1/operator/today", tag = "operator", responses((status = 200, body = schemas::DayView)))]
async fn today(State(app): State<App>) -> Response {
    read(app, |n| Ok(n.today())).await
}

#[utoipa::path(get, path = "/v1/operator/monitoring", tag = "operator",
    description = "Totals: emitted, redeemed, in circulation, per node.",
    responses((status = 200, body = schemas::Monitoring)))]
async fn monitoring(State(app): State<App>) -> Response {
    read(app, |n| n.monitoring()).await
}

#[utoipa::path(get, path = "/v1/operator/reconciliation", tag = "operator",
    description = "Check that DT in circulation (NBK registry and sum of node tokens) equals the ABS DT liability account, and that node tokens and the notary's unspent set agree.",
    responses((status = 200, body = schemas::Reconciliation)))]
async fn reconciliation(State(app): State<App>) -> Response {
    read(app, |n| Ok(n.reconcile())).await
}

#[utoipa::path(post, path = "/v1/operator/checkpoints", tag = "operator",
    description = "Write a checkpoint of the notary's unspent set and the nodes' tokens now, and delete the change log it covers (the platform also writes one whenever the log has grown to half the unspent set). Payments go on meanwhile. Before a backup or a planned stop, it makes the next start replay little. The body is empty or `null`.",
    params(("Idempotency-Key" = String, Header)),
    responses((status = 200, body = schemas::CheckpointView), (status = 400, body = ApiError)))]
async fn checkpoint(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, |n, idem, (): ()| n.checkpoint_now(idem)).await
}

#[utoipa::path(get, path = "/v1/operator/operations", tag = "operator",
    description = "Emissions and redemptions, newest first, a page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(Page), responses((status = 200, body = schemas::OperationPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError)))]
async fn nbk_operations(State(app): State<App>, Q(page): Q<Page>) -> Response {
    let (offset, limit) = page.or_default();
    read(app, move |n| n.nbk_operations_page(offset, limit)).await
}

/// Whether the notary has committed a transaction.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TxStatus {
    #[schema(value_type = schemas::TxId)]
    pub tx_id: TxId,
    pub committed: bool,
}

#[utoipa::path(get, path = "/v1/transactions/{tx_id}", tag = "payments",
    params(("tx_id" = String, Path, description = "64 hex characters")),
    responses((status = 200, body = TxStatus), (status = 400, body = ApiError)))]
async fn tx_status(State(app): State<App>, P(tx_id): P<String>) -> Response {
    read(app, move |n| {
        let tx_id = TxId(dtenge_core::crypto::Hash32::from_hex(&tx_id)?);
        Ok(TxStatus { tx_id, committed: n.is_committed(&tx_id)? })
    })
    .await
}
