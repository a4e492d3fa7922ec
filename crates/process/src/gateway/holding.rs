//! Holding on a bank's node (SPEC §5.1): what the bank's systems call for its clients' funds
//! held against the oracle's events. The paths and the JSON are `dtenge up`'s; what only the
//! oracle knows (the event, whether it may be held now, its records, the notices it sent) the
//! node asks the oracle over the network (`dtenge_oracle::client::OracleClient`), which
//! answers a bank only about the events its clients are a party to:
//!
//! - `POST /v1/nodes/{node}/holds`: the event's sender's funds held: the oracle says whether
//!   and how much, the bank builds the hold, the oracle attests it, the notary certifies it.
//!   Answered once the bank applied it and the oracle applied it from the bank's delivery
//!   (asked again until it has, at most [`ANSWER_WAIT_MS`]), with the hold's signed records;
//!   a repeat under the same key is answered from the node's memo (`gateway.db`);
//! - `GET /v1/nodes/{node}/accounts/{client}/holds`: the events the client is a party to;
//! - `GET /v1/nodes/{node}/notifications`: what the oracle told the bank, newest first.
//!
//! An event's parties are named by client id only when they bank here: the oracle tells a
//! bank no other bank's client ids.

use super::{answer, blocking, created, remembered, settled, Keyed, Node, ANSWER_WAIT_MS};
use crate::Hosted;
use axum::extract::{Path as P, Query, State};
use axum::response::{IntoResponse, Response};
use dtenge_api::platform::{
    check_list_limit, hold_receipt, hold_views, notification_page, page_of, LIST_PAGE_DEFAULT, PAGE_LIMIT_MAX,
};
use dtenge_api::types::HoldRequest;
use dtenge_api::Failure;
use dtenge_assembly::BankHandle;
use dtenge_bank::IdemKey;
use dtenge_core::crypto::Address;
use dtenge_core::token::TxId;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_oracle::client::OracleClient;
use dtenge_oracle::service::EventImage;
use std::time::{Duration, Instant};

/// How often a hold waiting for the oracle to apply it asks again.
const APPLIED_POLL_MS: u64 = 20;
/// Notices a page returns when the caller names no limit.
const NOTICES_PAGE_DEFAULT: usize = 50;

/// The bank this node runs and its questions to the oracle.
pub(super) fn bank_and_oracle(node: &Node) -> Result<(&BankHandle, &OracleClient)> {
    match &*node.hosted {
        Hosted::Bank { handle, oracle, .. } => Ok((handle, oracle)),
        _ => Err(Error::new(ErrorCode::NotFound, "this node runs no bank")),
    }
}

/// A party's client id when it banks here; the oracle names no other bank's clients.
fn own_client(handle: &BankHandle) -> impl Fn(&str, &Address) -> Option<String> + '_ {
    move |bank, address| {
        (bank == handle.id()).then(|| handle.service().read(|n| n.client_of(address).map(str::to_string))).flatten()
    }
}

pub(super) async fn hold(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<HoldRequest>,
) -> Response {
    created(
        blocking(move || {
            let (handle, oracle) = bank_and_oracle(&node)?;
            // A repeat is answered from the node's memo, whatever the event became since.
            remembered(&node, key, |key| {
                let (event_id, tx_id) = hold_once(&node, handle, oracle, key, &request)?;
                // The oracle attested the hold before the notary saw it and applies it from
                // the bank's delivery: asked until it has, as `up` answers; then for the
                // hold's records.
                applied(oracle, &event_id, |image| image.event.pending != Some(tx_id))?;
                let image = oracle.event(&event_id, Some(tx_id))?;
                Ok(hold_receipt(&image, tx_id, own_client(handle)))
            })
        })
        .await,
    )
}

/// Ask the oracle whether the hold may be made, make it at the bank and wait for its
/// certificate: the event and the hold's transaction.
fn hold_once(
    node: &Node,
    handle: &BankHandle,
    oracle: &OracleClient,
    key: IdemKey,
    request: &HoldRequest,
) -> Result<(String, TxId)> {
    // The oracle answers first whether the event may be held now, as `up` does, before the
    // funds are looked at.
    let (event, amount) = match oracle.hold_plan(&request.event_id, request.amount_tiyn) {
        Ok(plan) => (plan.event, plan.amount),
        // Held already: perhaps by this very request, whose key the bank answers.
        Err(e) if e.code == ErrorCode::Conflict => {
            let event = oracle.event(&request.event_id, None)?.event;
            let amount = request.amount_tiyn.unwrap_or(event.amount_tiyn);
            (event, amount)
        }
        Err(e) => return Err(e),
    };
    if handle.service().is_blocked(handle.id()) {
        return Err(Error::new(ErrorCode::BankBlocked, format!("'{}' is blocked by the NBK operator", handle.id())));
    }
    let client_id = handle
        .service()
        .read(|n| n.client_of(&event.sender).map(str::to_string))
        .ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("{} has no account here", event.sender)))?;
    // The oracle checks that the hold names a payee of its event; any one will do.
    let payee = event.payees.first().map(|p| p.address).ok_or_else(|| Error::internal("an event without payees"))?;
    let answer = handle.service().hold(&client_id, &event.id, amount, payee, Some(key), (node.clock)());
    Ok((event.id, settled(answer)?.tx_id))
}

/// The event as the oracle shows it once `done` holds of it, or as it is after
/// [`ANSWER_WAIT_MS`].
fn applied(oracle: &OracleClient, event_id: &str, done: impl Fn(&EventImage) -> bool) -> Result<EventImage> {
    let deadline = Instant::now() + Duration::from_millis(ANSWER_WAIT_MS);
    loop {
        let image = oracle.event(event_id, None)?;
        if done(&image) || Instant::now() >= deadline {
            return Ok(image);
        }
        std::thread::sleep(Duration::from_millis(APPLIED_POLL_MS));
    }
}

pub(super) async fn account_holds(
    State(node): State<Node>,
    P((_id, client)): P<(String, String)>,
    dtenge_api::Q(page): dtenge_api::Q<super::bank::Page>,
) -> Response {
    let (offset, limit) = (page.offset.unwrap_or(0), page.limit.unwrap_or(LIST_PAGE_DEFAULT));
    answer(
        blocking(move || {
            check_list_limit(limit)?;
            let (handle, oracle) = bank_and_oracle(&node)?;
            let address = handle.service().read(|n| n.account(&client).map(|a| a.address))?;
            // The oracle answers every hold of the address; the answer here is one page of them.
            let (images, total) = page_of(oracle.holds(address)?.into_iter(), offset, limit)?;
            let holds = hold_views(&images, handle.id(), &address, (node.clock)());
            Ok(dtenge_api::types::HoldPage { holds, total, offset, limit })
        })
        .await,
    )
}

pub(super) async fn notifications(
    State(node): State<Node>,
    P(_id): P<String>,
    page: std::result::Result<Query<super::bank::Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match page {
        Ok(Query(page)) => page,
        Err(e) => return Failure(Error::malformed(format!("query: {e}"))).into_response(),
    };
    let (offset, limit) = (page.offset.unwrap_or(0), page.limit.unwrap_or(NOTICES_PAGE_DEFAULT));
    answer(
        blocking(move || {
            if limit == 0 || limit > PAGE_LIMIT_MAX {
                return Err(Error::malformed(format!("limit is 1 to {PAGE_LIMIT_MAX}")));
            }
            let (handle, oracle) = bank_and_oracle(&node)?;
            let notices = oracle.notices(offset as u64, u32::try_from(limit).unwrap_or(u32::MAX))?;
            let client_of = |address: &Address| own_client(handle)(handle.id(), address).unwrap_or_default();
            Ok(notification_page(notices, offset, limit, client_of))
        })
        .await,
    )
}
