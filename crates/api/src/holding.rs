//! Routes of the oracle node and of holding (SPEC §5.1).
//!
//! Providers (government systems, portals) authenticate with `Authorization: Bearer <token>`,
//! the token the operator's registration of the provider returned once.

use crate::error::ApiError;
use crate::routes::{mutate, read, App, Body, Page, P, Q};
use crate::schemas;
use crate::types::*;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use dtenge_core::{Error, ErrorCode};
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
        .route("/v1/nodes/{node}/markings", post(create_marking))
        .route("/v1/oracle/markings", get(list_markings))
        .route("/v1/oracle/markings/{id}", get(get_marking))
        .route("/v1/nodes/{node}/marked-transfers", post(marked_transfer))
        .route("/v1/oracle/vat-payers", get(list_vat_payers).post(register_vat_payer))
        .route("/v1/oracle/tax-account", put(set_tax_account))
        .route("/v1/oracle/invoices", post(register_invoice))
        .route("/v1/oracle/invoices/{id}", get(get_invoice))
        .route("/v1/oracle/vat-payments", get(list_vat_payments))
        .route("/v1/nodes/{node}/invoice-payments", post(pay_invoice))
        .route("/v1/nodes/{node}/vat-payments", post(pay_vat))
        .route("/v1/nodes/{node}/split-payments", post(split_payment))
        .route("/v1/oracle/contracts", post(register_contract))
        .route("/v1/oracle/contracts/{number}", get(get_contract))
        .route("/v1/nodes/{node}/contract-payments", post(contract_payment))
        .route("/v1/nodes/{node}/contract-withdrawals", post(contract_withdrawal))
        .route("/v1/clock", get(get_clock))
        .route("/v1/clock/advance", post(advance_clock))
}

/// A provider's token, and the request's idempotency key scoped to it
/// ([`crate::idempotency::scope_to_provider_token`]): providers authenticate in their routes,
/// not in the access layer, so their keys are scoped here, before the route looks its key up.
/// A missing token, or a key that cannot be scoped, is refused before anything else: an
/// unscoped key would reach the memo of answers, where it could name another caller's.
fn provider(mut headers: HeaderMap) -> Result<(HeaderMap, String), Error> {
    let token = bearer(&headers)?;
    crate::idempotency::scope_to_provider_token(&mut headers, &token)?;
    Ok((headers, token))
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
    request_body = schemas::ProviderRequest,
    responses((status = 201, body = schemas::ProviderCredentials), (status = 409, description = "CONFLICT: id taken", body = ApiError)))]
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

#[utoipa::path(get, path = "/v1/oracle/providers", tag = "oracle",
    description = "The providers, in registration order, a page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(Page),
    responses((status = 200, body = schemas::ProviderPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError)))]
pub(crate) async fn list_providers(State(app): State<App>, Q(page): Q<Page>) -> Response {
    let (offset, limit) = page.or_default();
    read(app, move |n| n.providers_page(offset, limit)).await
}

/// The oracle's public key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct OracleKey {
    /// Verifies the oracle's attestations on transactions and the signatures of its records
    /// (`oracle_signature` over `RecordBody::digest`: SHA-256 of `dtenge/oracle/record/v2` and the body's explicit encoding).
    #[schema(value_type = schemas::PublicKey)]
    pub public_key: dtenge_core::crypto::PublicKey,
}

#[utoipa::path(get, path = "/v1/oracle/key", tag = "oracle", responses((status = 200, body = OracleKey)))]
pub(crate) async fn oracle_key(State(app): State<App>) -> Response {
    read(app, |n| Ok(OracleKey { public_key: n.oracle_public_key() })).await
}

#[utoipa::path(post, path = "/v1/oracle/events", tag = "oracle",
    description = "A provider registers an event: sender, payees with amounts, validity, single or infinite. The banks of the sender and the payees are notified. Needs `Authorization: Bearer <provider token>`.",
    params(("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <provider token>")),
    request_body = schemas::EventRequest,
    responses((status = 201, body = schemas::EventView), (status = 401, description = "UNAUTHORIZED", body = ApiError), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn register_event(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (headers, token) = match provider(headers) {
        Ok(called) => called,
        Err(e) => return crate::error::Failure(e).into_response(),
    };
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: EventRequest| {
        n.register_event(idem, &token, r)
    })
    .await
}

/// Filter and page of the event list.
#[derive(Deserialize, IntoParams)]
pub struct EventQuery {
    /// Only events with this status: registered, held, completed, rejected, expired.
    #[param(value_type = Option<schemas::EventStatus>)]
    pub status: Option<EventStatus>,
    pub offset: Option<usize>,
    /// 1 to 1,000 (default 50).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/oracle/events", tag = "oracle", params(EventQuery),
    responses((status = 200, body = schemas::EventPage), (status = 400, body = ApiError)))]
pub(crate) async fn list_events(State(app): State<App>, Q(query): Q<EventQuery>) -> Response {
    read(app, move |n| n.oracle_events(query.status, query.offset.unwrap_or(0), query.limit.unwrap_or(50))).await
}

#[utoipa::path(get, path = "/v1/oracle/events/{id}", tag = "oracle",
    description = "An event with its full history: every record signed by the oracle.",
    params(("id" = String, Path)), responses((status = 200, body = schemas::EventView), (status = 404, body = ApiError)))]
pub(crate) async fn get_event(State(app): State<App>, P(id): P<String>) -> Response {
    read(app, move |n| n.oracle_event(&id)).await
}

#[utoipa::path(post, path = "/v1/oracle/events/{id}/occurrences", tag = "oracle",
    description = "The confirming provider reports an occurrence. `occurred` releases the held funds to the payees in one transaction (a single event paying less returns the rest to the sender; an infinite one keeps the rest held); `rejected` returns everything to the sender with the reason. The same `occurrence_id` again does nothing more. After the validity: EVENT_EXPIRED, and the funds go back.",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <provider token>")),
    request_body = schemas::OccurrenceRequest,
    responses((status = 200, body = schemas::HoldReceipt), (status = 401, body = ApiError), (status = 403, description = "FORBIDDEN (not the confirming provider), RECIPIENT_NOT_ALLOWED", body = ApiError),
        (status = 409, description = "EVENT_EXPIRED, CONFLICT (nothing held, already final)", body = ApiError), (status = 422, description = "LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn report_occurrence(
    State(app): State<App>,
    P(id): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (headers, token) = match provider(headers) {
        Ok(called) => called,
        Err(e) => return crate::error::Failure(e).into_response(),
    };
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: OccurrenceRequest| {
        n.report_occurrence(idem, &token, &id, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/holds", tag = "holding",
    description = "The sender's bank holds its client's funds against an event. The oracle confirms by attesting the transaction; the funds stay on the account as held (not spendable); the payees' banks are notified.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::HoldRequest,
    responses((status = 201, body = schemas::HoldReceipt), (status = 403, body = ApiError), (status = 409, description = "EVENT_EXPIRED, CONFLICT (single event held already)", body = ApiError),
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
    description = "Events the client is a party to, newest first: funds held from its account (sender) or for it (payee), with time to expiry. A page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(("node" = String, Path), ("client" = String, Path), Page),
    responses((status = 200, body = schemas::HoldPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn account_holds(
    State(app): State<App>,
    P((node, client)): P<(String, String)>,
    Q(page): Q<Page>,
) -> Response {
    let (offset, limit) = page.or_default();
    read(app, move |n| n.holds_page(&node, &client, offset, limit)).await
}

#[utoipa::path(get, path = "/v1/nodes/{node}/notifications", tag = "holding",
    description = "What the node was told about its clients (events registered, funds held, released, returned), newest first.",
    params(("node" = String, Path), Page),
    responses((status = 200, body = schemas::NotificationPage), (status = 404, body = ApiError)))]
pub(crate) async fn notifications(State(app): State<App>, P(node): P<String>, Q(page): Q<Page>) -> Response {
    read(app, move |n| n.notifications(&node, page.offset.unwrap_or(0), page.limit.unwrap_or(50))).await
}

#[utoipa::path(get, path = "/v1/clock", tag = "oracle", responses((status = 200, body = schemas::ClockView)))]
pub(crate) async fn get_clock(State(app): State<App>) -> Response {
    read(app, |n| Ok(ClockView { now_unix_ms: n.now_ms(), expired_events: Vec::new() })).await
}

#[utoipa::path(post, path = "/v1/clock/advance", tag = "oracle",
    description = "Advance the platform's clock and run the expiries that became due. Only a platform started with a manual clock (`dtenge demo`, tests) allows it; otherwise FORBIDDEN.",
    params(("Idempotency-Key" = String, Header)),
    request_body = schemas::ClockAdvance, responses((status = 200, body = schemas::ClockView), (status = 403, body = ApiError)))]
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

#[utoipa::path(post, path = "/v1/nodes/{node}/markings", tag = "marking",
    description = "Register a marking by addresses for a client (or government agency) of this node: levels, allowed recipients per level, a limit per level. The oracle signs it.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::MarkingRequest,
    responses((status = 201, body = schemas::MarkingView), (status = 400, body = ApiError), (status = 422, description = "LIMIT_EXCEEDED (too deep, too many recipients)", body = ApiError)))]
pub(crate) async fn create_marking(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: MarkingRequest| {
        n.create_marking(idem, &node, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/oracle/markings", tag = "marking", params(Page),
    responses((status = 200, body = schemas::MarkingPage)))]
pub(crate) async fn list_markings(State(app): State<App>, Q(page): Q<Page>) -> Response {
    read(app, move |n| n.markings(page.offset.unwrap_or(0), page.limit.unwrap_or(50))).await
}

#[utoipa::path(get, path = "/v1/oracle/markings/{id}", tag = "marking",
    description = "A marking with every move of its funds (from, to, levels, amount, transaction), each signed by the oracle: the tree of where the marked funds went.",
    params(("id" = String, Path)), responses((status = 200, body = schemas::MarkingView), (status = 404, body = ApiError)))]
pub(crate) async fn get_marking(State(app): State<App>, P(id): P<String>) -> Response {
    read(app, move |n| n.marking(&id)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/marked-transfers", tag = "marking",
    description = "Move marked DT from a client of this node to an allowed recipient of the next level (the initiator marks standard DT for level 1). At the last level the recipient receives standard DT. The oracle attests; the initiator's node is notified.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::MarkedTransferRequest,
    responses((status = 200, body = schemas::MarkedReceipt), (status = 403, description = "RECIPIENT_NOT_ALLOWED, WRONG_LEVEL, FORBIDDEN", body = ApiError),
        (status = 422, description = "LIMIT_EXCEEDED, INSUFFICIENT_FUNDS", body = ApiError)))]
pub(crate) async fn marked_transfer(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: MarkedTransferRequest| {
        n.marked_transfer(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/oracle/vat-payers", tag = "vat",
    description = "The tax authority registers a VAT payer. Needs a tax-authority provider token.",
    params(("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <tax authority token>")),
    request_body = schemas::PartyRef, responses((status = 201, body = schemas::Party), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn register_vat_payer(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (headers, token) = match provider(headers) {
        Ok(called) => called,
        Err(e) => return crate::error::Failure(e).into_response(),
    };
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: PartyRef| {
        n.register_vat_payer(idem, &token, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/oracle/vat-payers", tag = "vat",
    description = "The registered VAT payers, a page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(Page),
    responses((status = 200, body = schemas::VatPayerPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError)))]
pub(crate) async fn list_vat_payers(State(app): State<App>, Q(page): Q<Page>) -> Response {
    let (offset, limit) = page.or_default();
    read(app, move |n| n.vat_payers_page(offset, limit)).await
}

#[utoipa::path(put, path = "/v1/oracle/tax-account", tag = "vat",
    description = "The tax authority names its account on the Treasury node: VAT paid there becomes standard DT.",
    params(("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <tax authority token>")),
    request_body = schemas::PartyRef, responses((status = 200, body = schemas::Party), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub(crate) async fn set_tax_account(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (headers, token) = match provider(headers) {
        Ok(called) => called,
        Err(e) => return crate::error::Failure(e).into_response(),
    };
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: PartyRef| {
        n.set_tax_account(idem, &token, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/oracle/invoices", tag = "vat",
    description = "The tax authority registers an e-invoice (ESF): number, seller (a registered VAT payer), buyer, amount without VAT, VAT.",
    params(("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <tax authority token>")),
    request_body = schemas::InvoiceRequest, responses((status = 201, body = schemas::Invoice), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub(crate) async fn register_invoice(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (headers, token) = match provider(headers) {
        Ok(called) => called,
        Err(e) => return crate::error::Failure(e).into_response(),
    };
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: InvoiceRequest| {
        n.register_invoice(idem, &token, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/oracle/invoices/{id}", tag = "vat", params(("id" = String, Path)),
    responses((status = 200, body = schemas::Invoice), (status = 404, body = ApiError)))]
pub(crate) async fn get_invoice(State(app): State<App>, P(id): P<String>) -> Response {
    read(app, move |n| n.invoice(&id)).await
}

#[utoipa::path(get, path = "/v1/oracle/vat-payments", tag = "vat",
    description = "VAT paid to the tax account, oldest first: what flows back to the tax system through the oracle. A page at a time (`offset`, `limit` up to 500): `total` counts them all.",
    params(Page),
    responses((status = 200, body = schemas::VatPaymentPage), (status = 400, description = "MALFORMED_INPUT: limit not 1 to 500", body = ApiError)))]
pub(crate) async fn list_vat_payments(State(app): State<App>, Q(page): Q<Page>) -> Response {
    let (offset, limit) = page.or_default();
    read(app, move |n| n.vat_payments_page(offset, limit)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/invoice-payments", tag = "vat",
    description = "Pay a registered e-invoice: the seller receives the net amount as standard DT and the VAT as VAT-marked DT. The payer's VAT-marked DT pays the VAT part first; standard DT is marked for any shortfall.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::InvoicePaymentRequest,
    responses((status = 200, body = schemas::InvoiceReceipt), (status = 404, description = "NOT_FOUND: fictitious invoice", body = ApiError),
        (status = 409, description = "CONFLICT: already paid", body = ApiError), (status = 422, description = "INVOICE_MISMATCH, INSUFFICIENT_FUNDS", body = ApiError)))]
pub(crate) async fn pay_invoice(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: InvoicePaymentRequest| {
        n.pay_invoice(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/vat-payments", tag = "vat",
    description = "Pay VAT to the tax authority's Treasury account with VAT-marked DT; it arrives there as standard DT.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::VatPaymentRequest,
    responses((status = 200, body = schemas::VatPayment), (status = 422, description = "INSUFFICIENT_FUNDS (VAT-marked)", body = ApiError)))]
pub(crate) async fn pay_vat(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: VatPaymentRequest| {
        n.pay_vat(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/split-payments", tag = "payments",
    description = "One payment to several recipients in one atomic transaction (taxi fare: driver, operator commission, tax): all lines are paid or none.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::SplitPaymentRequest,
    responses((status = 200, body = schemas::SplitReceipt), (status = 422, body = ApiError)))]
pub(crate) async fn split_payment(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: SplitPaymentRequest| {
        n.split_payment(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/oracle/contracts", tag = "marking",
    description = "The smart-contract portal registers a contract (marking by parameter): number, sender, recipient, the most marked DT transferable under it, the most withdrawable to bank money, duration, and the contract funding it (subcontracts).",
    params(("Idempotency-Key" = String, Header), ("Authorization" = String, Header, description = "Bearer <contract portal token>")),
    request_body = schemas::ContractRequest, responses((status = 201, body = schemas::ContractView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub(crate) async fn register_contract(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (headers, token) = match provider(headers) {
        Ok(called) => called,
        Err(e) => return crate::error::Failure(e).into_response(),
    };
    mutate(app, method, uri, headers, body, StatusCode::CREATED, move |n, idem, r: ContractRequest| {
        n.register_contract(idem, &token, r)
    })
    .await
}

#[utoipa::path(get, path = "/v1/oracle/contracts/{number}", tag = "marking",
    description = "A contract with its consumed limits and every use (payments, withdrawals), each signed by the oracle.",
    params(("number" = String, Path)), responses((status = 200, body = schemas::ContractView), (status = 404, body = ApiError)))]
pub(crate) async fn get_contract(State(app): State<App>, P(number): P<String>) -> Response {
    read(app, move |n| n.contract(&number)).await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/contract-payments", tag = "marking",
    description = "Pay under a registered contract from its sender (a client of this node): the recipient receives DT marked with the contract. The oracle checks and consumes the transfer limit; the initiator is notified.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::ContractPaymentRequest,
    responses((status = 200, body = schemas::ContractReceipt), (status = 403, body = ApiError), (status = 409, description = "CONTRACT_EXPIRED", body = ApiError), (status = 422, description = "LIMIT_EXCEEDED, INSUFFICIENT_FUNDS", body = ApiError)))]
pub(crate) async fn contract_payment(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: ContractPaymentRequest| {
        n.contract_payment(idem, &node, r)
    })
    .await
}

#[utoipa::path(post, path = "/v1/nodes/{node}/contract-withdrawals", tag = "marking",
    description = "Convert DT received under a contract to the recipient's bank money, within the contract's withdrawal limit.",
    params(("node" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = schemas::ContractWithdrawalRequest,
    responses((status = 200, body = schemas::ContractReceipt), (status = 403, body = ApiError), (status = 422, description = "LIMIT_EXCEEDED", body = ApiError)))]
pub(crate) async fn contract_withdrawal(
    State(app): State<App>,
    P(node): P<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    mutate(app, method, uri, headers, body, StatusCode::OK, move |n, idem, r: ContractWithdrawalRequest| {
        n.contract_withdrawal(idem, &node, r)
    })
    .await
}
