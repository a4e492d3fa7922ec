//! The oracle's node: what the NBK's operators and the oracle's providers call. The paths and
//! the JSON are `dtenge up`'s where the oracle alone answers them:
//!
//! - `GET /v1/oracle/key`: the key that verifies the oracle's attestations and records (any
//!   API client of the network);
//! - `GET /v1/oracle/providers` and `POST /v1/oracle/providers`: the providers the operator
//!   registered (NBK operators only). A provider calls the oracle's node with its own client
//!   certificate (`dtenge ca issue --api-client provider:<id>`), not with a token: the answer
//!   is the provider registered, without the token `up` issues.
//! - `GET /v1/oracle/events` (`?status=&offset=&limit=`) and `GET /v1/oracle/events/{id}`:
//!   the events with their signed records (any API client of the network, as on `up`);
//! - `POST /v1/oracle/events`: a provider registers an event, its parties named by bank and
//!   client id and found at the directory across processes; the oracle keeps the client ids
//!   it was given, for these views (the directory tells no one whose an address is);
//! - `POST /v1/oracle/events/{id}/occurrences`: the confirming provider reports an
//!   occurrence; answered once the release is certified and applied at the oracle (the
//!   payees' banks apply it from their deliveries, resent until acknowledged);
//! - the tax authority's VAT payers (`POST`, `GET /v1/oracle/vat-payers`), its account on
//!   the Treasury (`PUT /v1/oracle/tax-account`) and e-invoices (`POST /v1/oracle/invoices`,
//!   `GET /v1/oracle/invoices/{id}`), the VAT paid (`GET /v1/oracle/vat-payments`); the
//!   contract portal's contracts (`POST /v1/oracle/contracts`, `GET .../{number}`); the
//!   markings (`GET /v1/oracle/markings`, `GET .../{id}`). Parties named by bank and client
//!   id, found at the directory; a provider acts as its kind allows (the oracle's rule).
//!   A bank's systems read of these only what one of its clients is a party to (anything
//!   else is `NOT_FOUND`), as the oracle answers its node: a marking with the moves its
//!   clients made or received and other banks' clients unnamed, an invoice its client sells
//!   or buys, a contract its client sends or receives under with the uses the bank made, its
//!   own clients' VAT registrations and payments.

use super::{answer, blocking, created, listed, Caller, Keyed, Node, ANSWER_WAIT_MS};
use crate::Hosted;
use axum::extract::{Path as P, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use dtenge_api::platform::{
    confirm_occurrence, contract_matches, contract_terms, event_full_view, event_page, event_registration, event_view,
    invoice_matches, marking_page, occurrence_receipt, occurrence_terms, registered_again, released, MARKINGS_PAGE_MAX,
    TREASURY_ID,
};
use dtenge_api::platform::{page_of, Idem};
use dtenge_api::types::{
    ContractRequest, ContractView, EventRequest, EventStatus, InvoiceRequest, MarkingPage, MarkingView,
    OccurrenceRequest, PartyRef, ProviderRequest,
};
use dtenge_api::Failure;
use dtenge_assembly::contract_spec;
use dtenge_bank::{DirectoryClient, IdemKey};
use dtenge_core::crypto::hash_parts;
use dtenge_core::crypto::Address;
use dtenge_core::party::Party;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_oracle::service::{marking_concerns, marking_seen_by, EventImage, OracleService};
use dtenge_oracle::{Contract, ContractUse, Credential, InvoiceSpec, Marking, UseKind};
use dtenge_pki::ApiClient;
use std::time::Duration;

/// Events or markings a page returns when the caller names no limit.
const EVENTS_PAGE_DEFAULT: usize = 50;

/// The oracle this node runs; the caller was authorized for the route.
fn oracle(node: &Node) -> Result<&OracleService> {
    match &*node.hosted {
        Hosted::Oracle { oracle, .. } => Ok(oracle),
        _ => Err(Error::new(ErrorCode::NotFound, "this node is not the oracle")),
    }
}

/// The oracle this node runs and its questions to the directory.
fn oracle_and_directory(node: &Node) -> Result<(&OracleService, &DirectoryClient)> {
    match &*node.hosted {
        Hosted::Oracle { oracle, directory } => Ok((oracle, directory)),
        _ => Err(Error::new(ErrorCode::NotFound, "this node is not the oracle")),
    }
}

/// The provider calling, registered at the oracle: its certificate names it
/// (`urn:dtenge:api:provider:<id>`), and the operator registered that id.
fn provider<'a>(oracle: &OracleService, caller: &'a Caller) -> Result<&'a str> {
    let ApiClient::Provider(id) = &caller.0 else {
        return Err(Error::new(ErrorCode::Forbidden, format!("{} is not an oracle provider", caller.0)));
    };
    oracle.identify(Credential::Certified(id))?;
    Ok(id)
}

/// The provider's credential: its certificate's id (the route checks it is registered).
fn certified(caller: &Caller) -> Result<Credential<'_>> {
    match &caller.0 {
        ApiClient::Provider(id) => Ok(Credential::Certified(id)),
        other => Err(Error::new(ErrorCode::Forbidden, format!("{other} is not an oracle provider"))),
    }
}

/// Run `op` once per caller and idempotency key: a repeat is answered from the node's memo,
/// another request under the key is `IDEMPOTENCY_KEY_REUSED`, as on `up`. Keys are the
/// caller's own: two providers using the same key never see each other's answers.
fn once<T: serde::Serialize + serde::de::DeserializeOwned>(
    node: &Node,
    caller: &Caller,
    key: IdemKey,
    op: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let answers = node.answers.as_ref().ok_or_else(|| Error::internal("the oracle's node keeps its answers"))?;
    let scoped = hash_parts(b"dtenge/gateway/caller-key/v1", &[caller.0.to_string().as_bytes(), key.key.as_bytes()]);
    answers.once(Some(Idem { key: scoped.to_hex(), fingerprint: key.fingerprint }), |_| op())
}

/// What a caller may see of the events: a bank's systems only the events one of its clients
/// is a party to, with the other banks' client ids blanked (as the oracle answers a bank's
/// node); operators and providers every event.
fn visible(caller: &Caller, image: EventImage) -> Option<EventImage> {
    match &caller.0 {
        ApiClient::Bank(bank) => image.concerns(bank).then(|| image.seen_by(bank)),
        _ => Some(image),
    }
}

/// The bank whose systems call, if a bank's: it sees of the oracle's registry only what one
/// of its clients is a party to (as the oracle answers its node: `dtenge_oracle`'s
/// `asked.rs`); operators and providers see it whole.
fn calling_bank(caller: &Caller) -> Option<&str> {
    match &caller.0 {
        ApiClient::Bank(bank) => Some(bank),
        _ => None,
    }
}

/// A party as a bank's systems may see it: by bank and address when it banks elsewhere.
fn seen(mut party: Party, bank: &str) -> Party {
    if party.bank != bank {
        party.client_id.clear();
    }
    party
}

/// The marking as `caller` may see it: to a bank's systems, a marking one of its clients is
/// a party to, with the moves its clients made or received, other banks' clients unnamed.
fn visible_marking(caller: &Caller, marking: Marking) -> Option<MarkingView> {
    let Some(bank) = calling_bank(caller) else { return Some(MarkingView::of(&marking)) };
    if !marking_concerns(&marking, bank) {
        return None;
    }
    let moves = marking
        .moves
        .iter()
        .filter(|m| m.body.from.bank == bank || m.body.to.bank == bank)
        .map(|m| {
            let mut m = m.clone();
            m.body.from = seen(m.body.from, bank);
            m.body.to = seen(m.body.to, bank);
            m
        })
        .collect();
    Some(MarkingView { marking: marking_seen_by(marking.summary(), bank), moves })
}

/// The contract as `caller` may see it: to a bank's systems, a contract its client sends or
/// receives under, with the uses that bank made, the chain's initiator unnamed when it banks
/// elsewhere.
fn visible_contract(caller: &Caller, contract: Contract) -> Option<ContractView> {
    let Some(bank) = calling_bank(caller) else { return Some(ContractView::of(&contract)) };
    if contract.sender.bank != bank && contract.recipient.bank != bank {
        return None;
    }
    let made_by_bank = |u: &&ContractUse| match u.body.kind {
        UseKind::Transfer => contract.sender.bank == bank,
        UseKind::Withdrawal => contract.recipient.bank == bank,
    };
    let uses: Vec<ContractUse> = contract.uses.iter().filter(made_by_bank).cloned().collect();
    let mut shown = contract.summary();
    shown.initiator = seen(shown.initiator, bank);
    shown.uses = uses;
    Some(ContractView::of(&shown))
}

/// The oracle names a party by the client id its provider gave, and by nothing else.
fn unnamed(_bank: &str, _address: &Address) -> Option<String> {
    None
}

/// The oracle's public key.
#[derive(serde::Serialize)]
struct OracleKey {
    public_key: dtenge_core::crypto::PublicKey,
}

pub(super) async fn key(State(node): State<Node>) -> Response {
    answer(blocking(move || Ok(OracleKey { public_key: oracle(&node)?.public_key() })).await)
}

pub(super) async fn providers(
    State(node): State<Node>,
    dtenge_api::Q(page): dtenge_api::Q<super::bank::Page>,
) -> Response {
    let (offset, limit) = list_page(&page);
    answer(
        blocking(move || {
            let (providers, total) = page_of(oracle(&node)?.providers().into_iter(), offset, limit)?;
            Ok(dtenge_api::types::ProviderPage { providers, total, offset, limit })
        })
        .await,
    )
}

/// The offset and size of a page of a list (the first page of
/// [`dtenge_api::platform::LIST_PAGE_DEFAULT`] when the caller names none).
fn list_page(page: &super::bank::Page) -> (usize, usize) {
    (page.offset.unwrap_or(0), page.limit.unwrap_or(dtenge_api::platform::LIST_PAGE_DEFAULT))
}

/// Register a provider: the same key and request again answer the same provider; another
/// request under the key is `IDEMPOTENCY_KEY_REUSED`; an id registered already, `CONFLICT`.
pub(super) async fn register_provider(
    State(node): State<Node>,
    Keyed(key, request): Keyed<ProviderRequest>,
) -> Response {
    answer(
        blocking(move || {
            let idem = (key.key.as_str(), key.fingerprint);
            let (provider, _token) = oracle(&node)?.register_provider_keyed(
                &request.id,
                &request.name,
                request.kind,
                idem,
                (node.clock)(),
            )?;
            Ok(provider)
        })
        .await,
    )
}

/// Filter and page of the event list.
#[derive(serde::Deserialize)]
pub(super) struct EventQuery {
    status: Option<EventStatus>,
    offset: Option<usize>,
    limit: Option<usize>,
}

pub(super) async fn events(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    query: std::result::Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => return Failure(Error::malformed(format!("query: {e}"))).into_response(),
    };
    let (offset, limit) = (query.offset.unwrap_or(0), query.limit.unwrap_or(EVENTS_PAGE_DEFAULT));
    answer(
        blocking(move || {
            let oracle = oracle(&node)?;
            let mut images = Vec::new();
            for event in oracle.events().iter().rev() {
                images.extend(visible(&caller, oracle.image(&event.id, false)?));
            }
            event_page(images, query.status, offset, limit, unnamed)
        })
        .await,
    )
}

pub(super) async fn event(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    P(id): P<String>,
) -> Response {
    answer(
        blocking(move || {
            let image = visible(&caller, oracle(&node)?.image(&id, true)?)
                .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no oracle event {id}")))?;
            Ok(event_full_view(&image, unnamed))
        })
        .await,
    )
}

/// A provider registers an event: the same key and request again answer the event registered
/// first; another request under the key is `IDEMPOTENCY_KEY_REUSED`.
pub(super) async fn register_event(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Keyed(key, request): Keyed<EventRequest>,
) -> Response {
    let registered = blocking(move || {
        let (oracle, directory) = oracle_and_directory(&node)?;
        let provider = provider(oracle, &caller)?;
        once(&node, &caller, key.clone(), || {
            let now_ms = (node.clock)();
            let idem = Some((key.key, key.fingerprint));
            let (spec, registration) =
                event_registration(&request, idem, now_ms, |bank, client| listed(directory, bank, client))?;
            let id = oracle.register_event_with(provider, spec, registration, now_ms)?;
            Ok(event_full_view(&oracle.image(&id, true)?, unnamed))
        })
    })
    .await;
    created(registered)
}

/// The confirming provider reports an occurrence; the same occurrence id again answers the
/// event as it is, `repeated`, nothing done again.
pub(super) async fn report_occurrence(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    P(event_id): P<String>,
    Keyed(key, request): Keyed<OccurrenceRequest>,
) -> Response {
    answer(
        blocking(move || {
            let (oracle, directory) = oracle_and_directory(&node)?;
            let provider = provider(oracle, &caller)?;
            once(&node, &caller, key, || {
                let occurrence_id = request.occurrence_id.clone();
                let terms = occurrence_terms(request, |bank, client| listed(directory, bank, client))?;
                let repeated = confirm_occurrence(oracle, provider, &event_id, terms, (node.clock)())?;
                let ended = released(oracle, &event_id, Duration::from_millis(ANSWER_WAIT_MS))?;
                let image = EventImage { event: ended.clone(), ..oracle.image(&event_id, false)? };
                occurrence_receipt(oracle, &event_id, &occurrence_id, repeated, &ended, |_| event_view(&image, unnamed))
            })
        })
        .await,
    )
}

/// The tax authority registers a VAT payer (registering one twice is one registration).
pub(super) async fn register_vat_payer(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Keyed(key, payer): Keyed<PartyRef>,
) -> Response {
    created(
        blocking(move || {
            let (oracle, directory) = oracle_and_directory(&node)?;
            once(&node, &caller, key, || {
                let payer = listed(directory, &payer.bank, &payer.client_id)?;
                oracle.register_vat_payer(certified(&caller)?, payer)
            })
        })
        .await,
    )
}

/// The VAT payers: to a bank's systems, its own clients only.
pub(super) async fn vat_payers(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    dtenge_api::Q(page): dtenge_api::Q<super::bank::Page>,
) -> Response {
    let (offset, limit) = list_page(&page);
    answer(
        blocking(move || {
            let bank = calling_bank(&caller);
            let payers = oracle(&node)?.vat_payers();
            let mine = payers.into_iter().filter(|p| bank.is_none_or(|b| p.bank == b));
            let (payers, total) = page_of(mine, offset, limit)?;
            Ok(dtenge_api::types::VatPayerPage { payers, total, offset, limit })
        })
        .await,
    )
}

/// The VAT paid: to a bank's systems, its own clients' payments only.
pub(super) async fn vat_payments(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    dtenge_api::Q(page): dtenge_api::Q<super::bank::Page>,
) -> Response {
    let (offset, limit) = list_page(&page);
    answer(
        blocking(move || {
            let bank = calling_bank(&caller);
            let payments = oracle(&node)?.vat_payments();
            let mine = payments.into_iter().filter(|p| bank.is_none_or(|b| p.payer.bank == b));
            let (payments, total) = page_of(mine, offset, limit)?;
            Ok(dtenge_api::types::VatPaymentPage { payments, total, offset, limit })
        })
        .await,
    )
}

/// The tax authority names its account, on the Treasury's node (the network's bank id
/// `treasury`: the oracle's node knows the banks by id, not by kind).
pub(super) async fn set_tax_account(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Keyed(key, account): Keyed<PartyRef>,
) -> Response {
    answer(
        blocking(move || {
            let (oracle, directory) = oracle_and_directory(&node)?;
            once(&node, &caller, key, || {
                if account.bank != TREASURY_ID {
                    return Err(Error::new(
                        ErrorCode::Forbidden,
                        "the tax authority's account is on the Treasury node",
                    ));
                }
                let account = listed(directory, &account.bank, &account.client_id)?;
                oracle.set_tax_account(certified(&caller)?, account)
            })
        })
        .await,
    )
}

/// The tax authority registers an e-invoice; asked again with its key, an invoice registered
/// with the same id, parties and amounts is answered as it is now.
pub(super) async fn register_invoice(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Keyed(key, request): Keyed<InvoiceRequest>,
) -> Response {
    created(
        blocking(move || {
            let (oracle, directory) = oracle_and_directory(&node)?;
            once(&node, &caller, key, || register_invoice_now(&node, oracle, directory, &caller, &request))
        })
        .await,
    )
}

fn register_invoice_now(
    node: &Node,
    oracle: &OracleService,
    directory: &DirectoryClient,
    caller: &Caller,
    request: &InvoiceRequest,
) -> Result<dtenge_oracle::Invoice> {
    let spec = InvoiceSpec {
        id: request.id.clone(),
        seller: listed(directory, &request.seller.bank, &request.seller.client_id)?,
        buyer: listed(directory, &request.buyer.bank, &request.buyer.client_id)?,
        net_tiyn: request.net_tiyn,
        vat_tiyn: request.vat_tiyn,
    };
    let registered = oracle.register_invoice(certified(caller)?, spec, (node.clock)());
    registered_again(registered, true, || {
        let existing = oracle.invoice(&request.id)?;
        Ok(invoice_matches(&existing, request).then_some(existing))
    })
}

/// The e-invoice: to a bank's systems, one its client sells or buys (both named whole: each
/// holds the invoice that names the other).
pub(super) async fn invoice(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    P(id): P<String>,
) -> Response {
    answer(
        blocking(move || {
            let invoice = oracle(&node)?.invoice(&id).ok().filter(|i| match calling_bank(&caller) {
                Some(bank) => i.seller.bank == bank || i.buyer.bank == bank,
                None => true,
            });
            invoice.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no invoice {id}")))
        })
        .await,
    )
}

/// The smart-contract portal registers a contract; asked again with its key, a contract
/// registered with the same number, parties, limits and funding is answered as it is now.
pub(super) async fn register_contract(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Keyed(key, request): Keyed<ContractRequest>,
) -> Response {
    created(
        blocking(move || {
            let (oracle, directory) = oracle_and_directory(&node)?;
            once(&node, &caller, key, || register_contract_now(&node, oracle, directory, &caller, &request))
        })
        .await,
    )
}

fn register_contract_now(
    node: &Node,
    oracle: &OracleService,
    directory: &DirectoryClient,
    caller: &Caller,
    request: &ContractRequest,
) -> Result<ContractView> {
    let now_ms = (node.clock)();
    let spec = contract_spec(&contract_terms(request), now_ms, |(bank, client)| listed(directory, bank, client))?;
    let registered = oracle.register_contract(certified(caller)?, spec, now_ms);
    let contract = registered_again(registered, true, || {
        let existing = oracle.contract(&request.number)?;
        Ok(contract_matches(&existing, request).then_some(existing))
    })?;
    Ok(ContractView::of(&contract))
}

pub(super) async fn contract(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    P(number): P<String>,
) -> Response {
    answer(
        blocking(move || {
            let contract = oracle(&node)?.contract(&number).ok().and_then(|c| visible_contract(&caller, c));
            contract.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no contract {number}")))
        })
        .await,
    )
}

/// The markings without their moves, newest first: to a bank's systems, those one of its
/// clients is a party to, other banks' clients unnamed.
pub(super) async fn markings(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    page: std::result::Result<Query<super::bank::Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match page {
        Ok(Query(page)) => page,
        Err(e) => return Failure(Error::malformed(format!("query: {e}"))).into_response(),
    };
    let (offset, limit) = (page.offset.unwrap_or(0), page.limit.unwrap_or(EVENTS_PAGE_DEFAULT));
    answer(
        blocking(move || {
            let oracle = oracle(&node)?;
            let Some(bank) = calling_bank(&caller) else { return marking_page(oracle, offset, limit) };
            if limit == 0 || limit > MARKINGS_PAGE_MAX {
                return Err(Error::malformed(format!("limit is 1 to {MARKINGS_PAGE_MAX}")));
            }
            let mine: Vec<Marking> = oracle
                .markings()
                .into_iter()
                .filter(|m| marking_concerns(m, bank))
                .map(|m| marking_seen_by(m, bank))
                .collect();
            let total = mine.len();
            let markings = mine.into_iter().rev().skip(offset).take(limit).collect();
            Ok(MarkingPage { markings, total, offset, limit })
        })
        .await,
    )
}

pub(super) async fn marking(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    P(id): P<String>,
) -> Response {
    answer(
        blocking(move || {
            let marking = oracle(&node)?.marking(&id).ok().and_then(|m| visible_marking(&caller, m));
            marking.ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no marking {id}")))
        })
        .await,
    )
}
