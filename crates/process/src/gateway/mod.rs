//! A participant's own API: what its organization's systems call on its node, over HTTPS
//! (TLS 1.3) with a client certificate of the NBK's root (mutual TLS). The paths and the JSON
//! are the platform's REST API's (`dtenge_api`), so a client of `dtenge up` calls a node the
//! same way; a node serves the routes of its own role only.
//!
//! Who may call: a bank's node takes its own systems only (a certificate naming the API
//! client `bank:<its id>`, `dtenge ca issue --api-client bank:<id>`), and only for its own
//! node in the path; central takes NBK operators (`operator:<name>`). Anyone else is refused
//! `401` (no certificate) or `403` (another client), before anything is read.
//!
//! A bank's node serves its accounts and its clients' payments (below) and their bank money,
//! conversions and its redemptions (`bank.rs`), holding (`holding.rs`), programmed money
//! (`programmed.rs`), cards and vouchers (`cards.rs`); central's node serves the NBK's operators
//! (`central.rs`); the oracle's, its key and its provider registry (`oracle.rs`). A bank's payment routes:
//! - `POST /v1/nodes/{node}/accounts/bulk`: open accounts (a migration), claimed at the
//!   directory in one commit, then opened at the bank in one;
//! - `GET /v1/nodes/{node}/accounts/{client}`: an account with its balances;
//! - `GET /v1/nodes/{node}/accounts/{client}/tokens`: the tokens a client may spend, with
//!   their preimages (for a client that signs itself);
//! - `POST /v1/nodes/{node}/transfers`: a custodial payment to a payee named by address,
//!   phone or client id (with its bank), found at the directory across the network;
//! - `POST /v1/nodes/{node}/transactions`: a transfer the client signed itself;
//! - `POST /v1/nodes/{node}/transactions/batch`: up to
//!   [`TransactionBatch::TRANSACTIONS_MAX`] of them in one call, each answered by itself;
//! - `POST /v1/nodes/{node}/registries`: a registry distribution (`from: "own"`: the bank's
//!   own DT paid out to its clients).
//!
//! Every `POST` takes an `Idempotency-Key`; the role that moves the money keeps it (the payer's
//! bank, central) and answers a repeat from its store. A payment is answered once the notary
//! certified it and the payer's bank applied it; the payee's bank applies it from its delivery,
//! which is resent until acknowledged, so the receipt does not wait for another organization's
//! node. The receipt names the payee by what the payer gave: the directory tells the payer's
//! bank where an account is and of what kind, never whose it is.

mod bank;
mod cards;
mod central;
mod holding;
mod oracle;
mod programmed;

use crate::Hosted;
use axum::extract::{Path as P, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use dtenge_api::serving::{Hosts, Limits};
use dtenge_api::types::{
    BatchResult, OpenAccount, Receipt, RegistryLineResult, RegistryReport, RegistryRequest, TransactionBatch,
    TransactionBatchReport, TransferRequest,
};
use dtenge_api::Failure;
use dtenge_bank::{Committed, IdemKey, Label, Request as BankRequest};
use dtenge_core::crypto::{Address, SecretKey};
use dtenge_core::party::Party;
use dtenge_core::tx::Transaction;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::{Purpose, OWN_ACCOUNT};
use dtenge_pki::{ApiClient, Subject};
use std::sync::Arc;
use std::time::Duration;

/// How long a call waits for its role's answer before it says `REQUEST_IN_PROGRESS` (the
/// operation may still complete: ask again with the same key).
pub const ANSWER_WAIT_MS: u64 = 10_000;
/// Most bytes of a request body.
pub const BODY_BYTES_MAX: usize = 4 << 20;

#[derive(Clone)]
pub(crate) struct Node {
    pub hosted: Arc<Hosted>,
    pub clock: dtenge_assembly::Clock,
    /// Draws the custodial keys of accounts opened here.
    pub new_key: Arc<dyn Fn() -> SecretKey + Send + Sync>,
    /// Every answer counted and timed, for `/metrics`.
    pub metrics: Arc<dtenge_api::metrics::Metrics>,
    /// The revocation list in force (the watcher puts newer ones here): a connection opened
    /// before a revocation is refused from the next request on.
    pub revocations: Arc<parking_lot::RwLock<dtenge_pki::RevocationList>>,
    /// The node's memo of answers by idempotency key, for the calls its role keeps no key
    /// for (a deposit of bank money, a hold's receipt, a provider's registrations):
    /// `gateway.db` in its data directory. A bank's and the oracle's.
    pub answers: Option<Arc<dtenge_api::platform::Answers>>,
    /// A sandbox: the routes that stand in for systems outside the network are served.
    pub sandbox: bool,
    /// The trail of every request of an identified caller (`dtenge_api::audit`): `audit.db`
    /// in its data directory, on a node that serves an API.
    pub audit: Option<Arc<dtenge_audit::AuditLog>>,
}

/// The routes of the role `hosted` runs; `None` for a role whose organization's systems call
/// nothing on it (the notary, the directory: their clients are the other roles). The stand-ins
/// for systems outside the network ([`stand_ins`]) only in a sandbox.
pub(crate) fn router(node: Node) -> Option<axum::Router> {
    let routes = served(&node)?;
    let routes = if node.sandbox { routes.merge(stand_ins(&node)) } else { routes };
    Some(
        routes
            .fallback(not_found)
            .route_layer(axum::middleware::from_fn(dtenge_api::require_json))
            .layer(axum::middleware::from_fn_with_state(node.clone(), authorize))
            .layer(axum::middleware::from_fn_with_state(node.clone(), count))
            .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
            .with_state(node),
    )
}

/// The routes that stand in for systems outside the network, in a sandbox only: a bank's
/// deposits of bank money (its core banking system credits a client's bank account) and
/// central's credits to a correspondent account (the RTGS settles a payment to the NBK). In
/// production those systems are the real ones, and these routes do not exist (404).
fn stand_ins(node: &Node) -> axum::Router<Node> {
    match &*node.hosted {
        Hosted::Bank { .. } => {
            axum::Router::new().route("/v1/nodes/{node}/accounts/{client}/deposits", post(bank::deposit))
        }
        Hosted::Central(_) => axum::Router::new().route("/v1/abs/correspondent/{node}/credits", post(central::credit)),
        _ => axum::Router::new(),
    }
}

/// Every route of the role but the stand-ins.
fn served(node: &Node) -> Option<axum::Router<Node>> {
    let routes = match &*node.hosted {
        Hosted::Bank { .. } => axum::Router::new()
            .route("/v1/nodes/{node}/accounts", get(bank::accounts))
            .route("/v1/nodes/{node}/accounts/bulk", post(open_accounts))
            .route("/v1/nodes/{node}/accounts/{client}", get(account))
            .route("/v1/nodes/{node}/accounts/{client}/history", get(bank::history))
            .route("/v1/nodes/{node}/accounts/{client}/to-dt", post(bank::to_dt))
            .route("/v1/nodes/{node}/accounts/{client}/from-dt", post(bank::from_dt))
            .route("/v1/nodes/{node}/accounts/{client}/tokens", get(tokens))
            .route("/v1/nodes/{node}/accounts/{client}/consolidations", post(bank::consolidate))
            .route("/v1/nodes/{node}/accounts/{client}/consolidation", get(bank::consolidation_offer))
            .route("/v1/nodes/{node}/transfers", post(transfer))
            .route("/v1/nodes/{node}/transactions", post(submit))
            .route("/v1/nodes/{node}/transactions/batch", post(submit_batch))
            .route("/v1/nodes/{node}/registries", post(registry))
            .route("/v1/nodes/{node}/redemptions", post(bank::redemption))
            .route("/v1/nodes/{node}/holds", post(holding::hold))
            .route("/v1/nodes/{node}/accounts/{client}/holds", get(holding::account_holds))
            .route("/v1/nodes/{node}/notifications", get(holding::notifications))
            .route("/v1/nodes/{node}/markings", post(programmed::create_marking))
            .route("/v1/nodes/{node}/marked-transfers", post(programmed::marked_transfer))
            .route("/v1/nodes/{node}/invoice-payments", post(programmed::pay_invoice))
            .route("/v1/nodes/{node}/vat-payments", post(programmed::pay_vat))
            .route("/v1/nodes/{node}/split-payments", post(programmed::split_payment))
            .route("/v1/nodes/{node}/contract-payments", post(programmed::contract_payment))
            .route("/v1/nodes/{node}/contract-withdrawals", post(programmed::contract_withdrawal))
            .route("/v1/nodes/{node}/cards", post(cards::link_card))
            .route("/v1/card-purchases", post(cards::card_purchase))
            .route("/v1/card-purchases/{id}", get(cards::purchase))
            .route("/v1/card-purchases/{id}/refunds", post(cards::card_refund))
            .route("/v1/atm-withdrawals", post(cards::atm_withdrawal))
            .route("/v1/voucher-programs", get(cards::voucher_programs).post(cards::create_voucher_program))
            .route("/v1/voucher-programs/{id}/events", post(cards::voucher_event)),
        Hosted::Central(_) => axum::Router::new()
            .route("/v1/abs/balances", get(central::abs_balances))
            .route("/v1/nodes/{node}/emissions", post(central::emission))
            .route("/v1/operator/figures", get(central::figures))
            .route("/v1/operator/operations", get(central::operations))
            .route("/v1/operator/nodes/{node}/block", post(central::block))
            .route("/v1/operator/nodes/{node}/unblock", post(central::unblock))
            .route("/v1/operator/calendar/{year}", get(central::calendar_year))
            .route("/v1/operator/today", get(central::today))
            .route("/v1/operator/calendar/days/{date}", axum::routing::put(central::set_day)),
        Hosted::Oracle { .. } => axum::Router::new()
            .route("/v1/oracle/key", get(oracle::key))
            .route("/v1/oracle/providers", get(oracle::providers).post(oracle::register_provider))
            .route("/v1/oracle/events", get(oracle::events).post(oracle::register_event))
            .route("/v1/oracle/events/{id}", get(oracle::event))
            .route("/v1/oracle/events/{id}/occurrences", post(oracle::report_occurrence))
            .route("/v1/oracle/vat-payers", get(oracle::vat_payers).post(oracle::register_vat_payer))
            .route("/v1/oracle/tax-account", axum::routing::put(oracle::set_tax_account))
            .route("/v1/oracle/vat-payments", get(oracle::vat_payments))
            .route("/v1/oracle/invoices", post(oracle::register_invoice))
            .route("/v1/oracle/invoices/{id}", get(oracle::invoice))
            .route("/v1/oracle/contracts", post(oracle::register_contract))
            .route("/v1/oracle/contracts/{number}", get(oracle::contract))
            .route("/v1/oracle/markings", get(oracle::markings))
            .route("/v1/oracle/markings/{id}", get(oracle::marking)),
        _ => return None,
    };
    Some(routes)
}

/// A route this node does not serve: `NOT_FOUND`, structured like every other refusal.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    Failure(Error::new(ErrorCode::NotFound, format!("no route {method} {} on this node", uri.path()))).into_response()
}

/// Every answer, refusals included, counted by status class and timed.
async fn count(State(node): State<Node>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    node.metrics.record(response.status(), latency_us);
    response
}

/// Only this organization's systems: by the client certificate the TLS handshake verified.
async fn authorize(State(node): State<Node>, mut request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<dtenge_api::access::TlsPeer>()
        .and_then(|peer| dtenge_pki::read_certificate(&peer.0).ok());
    let Some(certified) = client else {
        return refuse(ErrorCode::Unauthorized, "present a client certificate of the NBK's root (mutual TLS)");
    };
    // The handshake checked the certificate against the list in force then; the connection
    // may have outlived a newer list, or the certificate's validity.
    if node.revocations.read().is_revoked(certified.serial) || certified.not_after_s < crate::config::now_s() {
        return refuse(ErrorCode::Unauthorized, "the client certificate is revoked or expired");
    }
    let subject = certified.subject;
    // The caller as `up`'s trail names it: an API client by its own name (`bank:steppe`).
    let caller = match &subject {
        Subject::Api(client) => client.to_string(),
        other => other.to_string(),
    };
    let allowed = match (&*node.hosted, &subject) {
        (Hosted::Bank { handle, .. }, Subject::Api(ApiClient::Bank(id))) => {
            // The node in the path must be this one, and the caller its own systems.
            id == handle.id() && path_node(request.uri().path()).is_none_or(|n| n == handle.id())
        }
        (Hosted::Central(_), Subject::Api(ApiClient::Operator(_))) => true,
        // Its key and its events for anyone of the network; what providers do for providers
        // (each route checks which); its provider registry for NBK operators.
        (Hosted::Oracle { .. }, Subject::Api(client)) => {
            let path = request.uri().path();
            let reads = request.method() == axum::http::Method::GET && path != "/v1/oracle/providers";
            let providers = path == "/v1/oracle/providers";
            reads
                || (providers && matches!(client, ApiClient::Operator(_)))
                || (!providers && matches!(client, ApiClient::Provider(_)))
        }
        _ => false,
    };
    if !allowed {
        let why = format!("{subject} may not call this node");
        if let Some(trail) = &node.audit {
            let path = request.uri().path().to_string();
            dtenge_api::audit::refusal(trail.clone(), caller, request.method(), &path, &why).await;
        }
        return refuse(ErrorCode::Forbidden, &why);
    }
    if let Subject::Api(client) = subject {
        // Its idempotency keys are its own (`dtenge_api::scope_to_caller`).
        if let Err(e) = dtenge_api::scope_to_caller(request.headers_mut(), &client) {
            return Failure(e).into_response();
        }
        request.extensions_mut().insert(Caller(client));
    }
    match &node.audit {
        Some(trail) => dtenge_api::audit::audited(trail.clone(), caller, request, next).await,
        None => next.run(request).await,
    }
}

/// The API client a request's certificate names (put in the request once authorized).
#[derive(Clone)]
pub(crate) struct Caller(pub ApiClient);

/// The `{node}` of `/v1/nodes/{node}/...`.
fn path_node(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/nodes/")?.split('/').next()
}

fn refuse(code: ErrorCode, message: &str) -> Response {
    Failure(Error::new(code, message)).into_response()
}

/// The bank this node runs; the caller was authorized for it.
fn bank(node: &Node) -> Result<&dtenge_assembly::BankHandle> {
    match &*node.hosted {
        Hosted::Bank { handle, .. } => Ok(handle),
        _ => Err(Error::new(ErrorCode::NotFound, "this node runs no bank")),
    }
}

fn central(node: &Node) -> Result<&dtenge_central::CentralService> {
    match &*node.hosted {
        Hosted::Central(central) => Ok(central),
        _ => Err(Error::new(ErrorCode::NotFound, "this node is not central")),
    }
}

/// `201 Created` with what was made, or the structured refusal.
fn created<T: serde::Serialize>(result: Result<T>) -> Response {
    match result {
        Ok(value) => (StatusCode::CREATED, Json(value)).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

fn answer<T: serde::Serialize>(result: Result<T>) -> Response {
    match result {
        Ok(value) => (StatusCode::OK, Json(value)).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

/// Run `work` on the blocking pool (it takes a role's lock, or waits for a commit).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, format!("a request's task: {e}")))?
}

/// A mutating request as a route takes it: its idempotency key with the request's fingerprint,
/// and its body decoded. Refused (a structured error, nothing run) without a key or with a body
/// that does not decode.
struct Keyed<R>(IdemKey, R);

impl<S: Send + Sync, R: serde::de::DeserializeOwned + serde::Serialize> axum::extract::FromRequest<S> for Keyed<R> {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> std::result::Result<Self, Response> {
        let (parts, key, bytes) = key_and_body(request).await?;
        let (fingerprint, decoded) = dtenge_api::typed_request::<R>(&parts.method, parts.uri.path(), &bytes)
            .map_err(|e| Failure(e).into_response())?;
        Ok(Keyed(IdemKey { key, fingerprint }, decoded))
    }
}

/// A batch of signed transfers as its route takes it: the call's idempotency key and the
/// transactions. The body is parsed once and not fingerprinted whole: each transaction is
/// kept under a key and a fingerprint of its own ([`TransactionBatch::item_key`]), and writing
/// hundreds of transactions again as canonical JSON only to hash them cost the API a third of
/// its time per call.
struct KeyedBatch(String, TransactionBatch);

impl<S: Send + Sync> axum::extract::FromRequest<S> for KeyedBatch {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> std::result::Result<Self, Response> {
        let (_, key, bytes) = key_and_body(request).await?;
        let batch = serde_json::from_slice::<TransactionBatch>(&bytes)
            .map_err(|e| Failure(Error::malformed(format!("request body: {e}"))).into_response())?;
        Ok(KeyedBatch(key, batch))
    }
}

/// A mutating request's idempotency key (present, of a valid length) and its body (at most
/// [`BODY_BYTES_MAX`]).
async fn key_and_body(
    request: Request,
) -> std::result::Result<(axum::http::request::Parts, String, axum::body::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let refused = |e: Error| Failure(e).into_response();
    let key = dtenge_api::idempotency_key(&parts.headers).map_err(refused)?;
    if key.is_empty() || key.len() > dtenge_api::platform::IDEM_KEY_LEN_MAX {
        return Err(refused(Error::malformed(format!(
            "an idempotency key has 1 to {} characters",
            dtenge_api::platform::IDEM_KEY_LEN_MAX
        ))));
    }
    let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|e| {
        Failure(Error::new(ErrorCode::LimitExceeded, format!("request body: {e}")))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    Ok((parts, key, bytes))
}

fn central_key(key: IdemKey) -> dtenge_central::IdemKey {
    dtenge_central::IdemKey { key: key.key, fingerprint: key.fingerprint }
}

/// Wait for a bank's answer, at most [`ANSWER_WAIT_MS`].
async fn committed(answer: dtenge_bank::Answer) -> Result<Committed> {
    match tokio::time::timeout(Duration::from_millis(ANSWER_WAIT_MS), answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::new(ErrorCode::StorageFailure, "the bank stopped before it answered; ask again")),
        Err(_) => Err(Error::new(
            ErrorCode::RequestInProgress,
            "the network has not answered yet; ask again with the same idempotency key",
        )),
    }
}

async fn open_accounts(
    State(node): State<Node>,
    P(id): P<String>,
    Keyed(key, requests): Keyed<Vec<OpenAccount>>,
) -> Response {
    // Answered once per key from the node's memo: a caller that timed out and asks again gets
    // the accounts the first call opened, not DUPLICATE_ACCOUNT for each (the cluster bench
    // met it under load).
    let result = blocking(move || {
        remembered(&node, key, |_| {
            let Hosted::Bank { handle, directory, .. } = &*node.hosted else {
                return Err(Error::new(ErrorCode::NotFound, "this node runs no bank"));
            };
            if requests.is_empty() || requests.len() > dtenge_api::platform::OPEN_ACCOUNTS_MAX {
                return Err(Error::malformed(format!(
                    "open 1 to {} accounts per call",
                    dtenge_api::platform::OPEN_ACCOUNTS_MAX
                )));
            }
            let now_ms = (node.clock)();
            let planned = requests
                .into_iter()
                .enumerate()
                .map(|(i, request)| {
                    dtenge_api::platform::plan_account(&id, request, now_ms, || (node.new_key)())
                        .map_err(|e| Error::new(e.code, format!("account {}: {}", i + 1, e.message)))
                })
                .collect::<Result<Vec<_>>>()?;
            let claims: Vec<_> = planned.iter().map(|(account, _)| dtenge_bank::claim_of(account)).collect();
            // Claimed first, then opened: run again after a stop between the two, the claims
            // already listed are answered as the first time.
            directory.claim_all(&claims)?;
            let accounts = planned.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>();
            handle.service().open_accounts(planned)?;
            Ok(accounts)
        })
    })
    .await;
    match result {
        Ok(accounts) => (StatusCode::CREATED, Json(accounts)).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

async fn account(State(node): State<Node>, P((_id, client)): P<(String, String)>) -> Response {
    answer(
        blocking(move || bank(&node)?.service().read(|n| dtenge_api::platform::account_view(n, n.account(&client)?)))
            .await,
    )
}

/// The query of [`tokens`]: which tokens (`all`, as `up`'s), and the page.
#[derive(serde::Deserialize)]
struct TokenQuery {
    all: Option<bool>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// A page of a client's unreserved tokens with their preimages (at most
/// [`dtenge_api::platform::LIST_PAGE_MAX`]), as `up`'s: only the page is copied.
async fn tokens(
    State(node): State<Node>,
    P((_id, client)): P<(String, String)>,
    dtenge_api::Q(query): dtenge_api::Q<TokenQuery>,
) -> Response {
    let (all, offset) = (query.all.unwrap_or(false), query.offset.unwrap_or(0));
    let limit = query.limit.unwrap_or(dtenge_api::platform::LIST_PAGE_DEFAULT);
    answer(
        blocking(move || {
            bank(&node)?.service().read(|n| {
                let (page, total) = dtenge_api::platform::page_of(n.inputs_of(&client, all)?, offset, limit)?;
                let tokens = page.into_iter().cloned().collect();
                Ok(dtenge_api::types::TokenPage { tokens, total, offset, limit })
            })
        })
        .await,
    )
}

async fn transfer(State(node): State<Node>, P(id): P<String>, Keyed(key, request): Keyed<TransferRequest>) -> Response {
    let staged = blocking({
        let node = node.clone();
        move || {
            let handle = bank(&node)?;
            if request.amount_tiyn.is_zero() {
                return Err(Error::malformed("the amount must be positive"));
            }
            if request.from == OWN_ACCOUNT {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    "a node's own DT leaves it through conversion, redemption or a registry, not a transfer",
                ));
            }
            let payer = handle.service().read(|n| n.account(&request.from).map(|a| a.address))?;
            let payee = payee(&node, &request.to)?;
            if payee.address == payer {
                return Err(Error::malformed("payer and payee are the same account"));
            }
            let purpose = if request.to.phone.is_some() { Purpose::PhoneTransfer } else { Purpose::Payment };
            let pay = BankRequest::Pay {
                client_id: request.from.clone(),
                payees: vec![(payee.address, request.amount_tiyn)],
            };
            let label = Label { purpose, reference: request.reference };
            let answer = handle.submit_labelled(pay, label, Some(key));
            let from = Party { bank: id, client_id: request.from, address: payer };
            Ok((answer, purpose, request.amount_tiyn, from, payee))
        }
    })
    .await;
    let (answer_rx, purpose, amount, from, to) = match staged {
        Ok(staged) => staged,
        Err(e) => return Failure(e).into_response(),
    };
    let result = committed(answer_rx).await.map(|c| Receipt {
        tx_id: c.tx_id,
        purpose,
        amount_tiyn: amount,
        from: Some(from),
        to: Some(to),
        at_unix_ms: (node.clock)(),
        abs_posting: None,
    });
    answer(result)
}

/// Answer once per key from the node's memo (`gateway.db`): a repeat gets the first answer
/// back as it was (a spend's receipt with the payer's VAT split, a hold's records), and a key
/// used first on another route is `IDEMPOTENCY_KEY_REUSED`, as on `up`. Where the bank keeps
/// the key too (its spends), a crash between its commit and the memo is answered from its
/// store and the receipt rebuilt.
fn remembered<T: serde::Serialize + serde::de::DeserializeOwned>(
    node: &Node,
    key: IdemKey,
    op: impl FnOnce(IdemKey) -> Result<T>,
) -> Result<T> {
    let answers = node.answers.as_ref().ok_or_else(|| Error::internal("this node keeps no answers"))?;
    let idem = dtenge_api::platform::Idem { key: key.key.clone(), fingerprint: key.fingerprint };
    answers.once(Some(idem), |_| op(key))
}

/// The bank's answer to a request it took, waited for at most [`ANSWER_WAIT_MS`].
fn settled(answer: dtenge_bank::Answer) -> Result<Committed> {
    match answer.recv_timeout(Duration::from_millis(ANSWER_WAIT_MS)) {
        Ok(committed) => committed,
        Err(_) => Err(Error::new(
            ErrorCode::RequestInProgress,
            "the network has not answered yet; ask again with the same idempotency key",
        )),
    }
}

/// The account `client_id` has at `bank`, found at the directory.
fn listed(directory: &dtenge_bank::DirectoryClient, bank: &str, client_id: &str) -> Result<Party> {
    use dtenge_bank::Directory as _;
    // Checked before anything is asked: the directory's decoder would refuse an oversized
    // question with the whole frame.
    dtenge_node::ids::check_iin_bin(client_id)?;
    if bank.is_empty() || bank.len() > dtenge_wire::message::ROLE_ID_BYTES_MAX {
        return Err(Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}' in this network")));
    }
    let found = directory.find(dtenge_bank::Who::Client(client_id), Some(bank))?.filter(|found| found.bank == bank);
    let found = found.ok_or_else(|| {
        Error::new(ErrorCode::UnknownAccount, format!("no digital account of client {client_id} at '{bank}'"))
    })?;
    Ok(Party { bank: bank.to_string(), client_id: client_id.to_string(), address: found.address })
}

/// The payee as the payer named it, found at the directory: by address, by phone (at its bank
/// when named), or by client id at its bank.
fn payee(node: &Node, to: &dtenge_api::types::Payee) -> Result<Party> {
    let Hosted::Bank { directory, .. } = &*node.hosted else {
        return Err(Error::new(ErrorCode::NotFound, "this node runs no bank"));
    };
    let named = [to.phone.is_some(), to.client_id.is_some(), to.address.is_some()];
    if named.iter().filter(|n| **n).count() != 1 {
        return Err(Error::malformed("name the payee by exactly one of: phone, client_id (with bank), address"));
    }
    use dtenge_bank::Directory as _;
    let found = match (&to.address, &to.phone, &to.client_id) {
        (Some(address), _, _) => directory.bank_of(address)?.map(|bank| (bank, *address, String::new())),
        (_, Some(phone), _) => {
            let phone = dtenge_node::ids::normalize_phone(phone)?;
            let found = directory.find(dtenge_bank::Who::Phone(&phone), to.bank.as_deref())?;
            found.map(|f| (f.bank, f.address, String::new()))
        }
        (_, _, Some(client)) => {
            dtenge_node::ids::check_iin_bin(client)?;
            let found = directory.find(dtenge_bank::Who::Client(client), to.bank.as_deref())?;
            found.map(|f| (f.bank, f.address, client.clone()))
        }
        _ => None,
    };
    let Some((bank, address, client_id)) = found else {
        return Err(Error::new(ErrorCode::UnknownAccount, "no digital account is listed for this payee"));
    };
    Ok(Party { bank, client_id, address })
}

async fn submit(State(node): State<Node>, P(id): P<String>, Keyed(key, tx): Keyed<Transaction>) -> Response {
    let staged = blocking({
        let node = node.clone();
        move || stage_signed(bank(&node)?, id, tx, key)
    })
    .await;
    match staged {
        Ok(staged) => answer(staged.receipt(node.clock.as_ref()).await),
        Err(e) => Failure(e).into_response(),
    }
}

/// Many transfers the clients signed themselves, in one call: what a bank's processing
/// centre sends when it forwards its clients' payments, as TigerBeetle's clients send
/// batches. Each transaction is its own payment, answered by itself in the same order (a
/// receipt or an error), as if each had been posted alone under the key
/// `<Idempotency-Key>#<index>` ([`TransactionBatch::item_key`]); asking again with the same
/// key and body answers each from the bank's store. At most
/// [`TransactionBatch::TRANSACTIONS_MAX`] per call.
async fn submit_batch(State(node): State<Node>, P(id): P<String>, KeyedBatch(key, batch): KeyedBatch) -> Response {
    if let Err(e) = batch.check(&key) {
        return Failure(e).into_response();
    }
    let count = batch.transactions.len();
    // Staged in one blocking task: the bank's flusher takes them together.
    let staged = blocking({
        let node = node.clone();
        move || {
            let handle = bank(&node)?;
            Ok(batch
                .transactions
                .into_iter()
                .enumerate()
                .map(|(index, tx)| {
                    let (item, fingerprint) = TransactionBatch::item_key(&key, index, &id, &tx);
                    stage_signed(handle, id.clone(), tx, IdemKey { key: item, fingerprint })
                })
                .collect::<Vec<_>>())
        }
    })
    .await;
    let staged = match staged {
        Ok(staged) => staged,
        Err(e) => return Failure(e).into_response(),
    };
    assert_eq!(staged.len(), count, "one staged payment per transaction");
    let clock = node.clock.clone();
    let results = futures_util::future::join_all(staged.into_iter().map(|item| {
        let clock = clock.clone();
        async move {
            let result = match item {
                Ok(item) => item.receipt(clock.as_ref()).await,
                Err(e) => Err(e),
            };
            BatchResult::of(result)
        }
    }))
    .await;
    answer(Ok(TransactionBatchReport { results }))
}

/// A signed transfer handed to its payer's bank, with what its receipt names.
struct StagedTransfer {
    answer: dtenge_bank::Answer,
    from: Party,
    amount: Amount,
    payee: Option<Address>,
}

impl StagedTransfer {
    /// Its receipt once the bank answered (at most [`ANSWER_WAIT_MS`]).
    async fn receipt(self, clock: &(dyn Fn() -> u64 + Send + Sync)) -> Result<Receipt> {
        let StagedTransfer { answer, from, amount, payee } = self;
        committed(answer).await.map(|c| Receipt {
            tx_id: c.tx_id,
            purpose: Purpose::Payment,
            amount_tiyn: amount,
            from: Some(from),
            to: payee.map(|address: Address| Party { bank: String::new(), client_id: String::new(), address }),
            at_unix_ms: clock(),
            abs_posting: None,
        })
    }
}

/// Check a signed transfer's bounds and payer, and queue it at the bank.
fn stage_signed(
    handle: &dtenge_assembly::BankHandle,
    id: String,
    tx: Transaction,
    key: IdemKey,
) -> Result<StagedTransfer> {
    dtenge_core::validate::check_bounds(&tx)?;
    let payer =
        tx.body.inputs.first().map(|i| i.output.owner).ok_or_else(|| Error::malformed("a transfer spends inputs"))?;
    let client_id = handle
        .service()
        .read(|n| n.client_of(&payer).map(str::to_string))
        .ok_or_else(|| Error::new(ErrorCode::UnknownAccount, "the inputs are not a client's of this bank"))?;
    let amount = Amount::sum(tx.body.outputs.iter().filter(|o| o.owner != payer).map(|o| o.amount_tiyn))?;
    let payee = tx.body.outputs.iter().map(|o| o.owner).find(|owner| *owner != payer);
    let answer = handle.submit(BankRequest::Signed(tx), Some(key));
    Ok(StagedTransfer { answer, from: Party { bank: id, client_id, address: payer }, amount, payee })
}

async fn registry(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<RegistryRequest>,
) -> Response {
    let staged = blocking({
        let node = node.clone();
        move || {
            let handle = bank(&node)?;
            if request.lines.is_empty() || request.lines.len() > dtenge_bank::REGISTRY_LINES_MAX {
                return Err(Error::malformed(format!("a registry has 1 to {} lines", dtenge_bank::REGISTRY_LINES_MAX)));
            }
            let lines = request
                .lines
                .iter()
                .map(|line| {
                    Ok(dtenge_bank::RegistryLine {
                        phone: line.phone.as_deref().map(dtenge_node::ids::normalize_phone).transpose()?,
                        client_id: line.client_id.clone(),
                        bank: line.bank.clone(),
                        amount: line.amount_tiyn,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let registry = handle.distribute_referenced(&request.from, &lines, request.reference.clone(), Some(key))?;
            let results: Vec<RegistryLineResult> = registry
                .lines
                .iter()
                .zip(&request.lines)
                .enumerate()
                .map(|(i, (outcome, line))| RegistryLineResult {
                    line: i + 1,
                    paid: outcome.is_ok(),
                    amount_tiyn: line.amount_tiyn,
                    recipient: None,
                    error_code: outcome.as_ref().err().map(|e| e.code),
                    error: outcome.as_ref().err().map(|e| e.message.clone()),
                })
                .collect();
            Ok((registry.answer, results))
        }
    })
    .await;
    let (answer_rx, lines) = match staged {
        Ok(staged) => staged,
        Err(e) => return Failure(e).into_response(),
    };
    let tx_id = match answer_rx {
        Some(answer_rx) => match committed(answer_rx).await {
            Ok(c) => Some(c.tx_id),
            Err(e) => return Failure(e).into_response(),
        },
        None => None,
    };
    let paid = lines.iter().filter(|l| l.paid).count();
    let total = Amount::sum(lines.iter().filter(|l| l.paid).map(|l| l.amount_tiyn));
    answer(total.map(|amount_paid_tiyn| RegistryReport {
        tx_id,
        lines_total: lines.len(),
        lines_paid: paid,
        lines_rejected: lines.len() - paid,
        amount_paid_tiyn,
        results: lines,
    }))
}

/// The node's API, served over TLS 1.3 with client certificates of the root (each request's
/// checked again against the list in force: [`authorize`]), on two threads, with the
/// gateway's bounds on connections and the Host check (`dtenge_api::serving`).
pub(crate) fn start(
    config: &crate::Config,
    address: std::net::SocketAddr,
    app: axum::Router,
) -> Result<crate::server::Server> {
    let tls = dtenge_api::tls::server_config(
        &config.key,
        &config.certificate_der,
        &config.root_der,
        &config.revocation_list_der,
    )?;
    // The Host names it serves: those its certificate names (and its address).
    let hosts = Hosts::serving(address, &config.certificate_names);
    crate::server::Server::start("api", address, 2, move |listener, stop| {
        dtenge_api::serving::serve(app, listener, Some(tls), hosts, Limits::GATEWAY, stop)
    })
}
