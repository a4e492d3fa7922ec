//! Central's node: what NBK operators call. The paths and the JSON are `dtenge up`'s where
//! central alone can answer them:
//!
//! - `POST /v1/abs/correspondent/{node}/credits`: money arrives on a bank's correspondent
//!   account;
//! - `POST /v1/nodes/{node}/emissions`: DT issued to a bank's own account against it;
//! - `GET /v1/abs/balances`: the ABS accounts' balances;
//! - `GET /v1/operator/figures`: the registry's totals and the DT liability;
//! - `GET /v1/operator/operations?offset=&limit=`: emissions and redemptions, newest first;
//! - `POST /v1/operator/nodes/{node}/block` and `.../unblock`: the operator's decision,
//!   answered once the notary and every bank acknowledged it (each applies it before it
//!   acknowledges), so that it holds for whatever starts after the answer;
//! - `GET /v1/operator/calendar/{year}`, `GET /v1/operator/today` and
//!   `PUT /v1/operator/calendar/days/{date}`: the operational calendar (emission and
//!   redemption run on operational days only).
//!
//! A block is answered with what central knows of the bank (its emissions, redemptions,
//! correspondent account and block), not with its accounts and holdings, which only its own
//! node knows (`dtenge up`'s node view adds those).

use super::{answer, blocking, central, central_key, Keyed, Node, ANSWER_WAIT_MS};
use axum::extract::{Path as P, Query, State};
use axum::response::{IntoResponse, Response};
use dtenge_api::types::{AmountRequest, BlockRequest};
use dtenge_api::Failure;
use dtenge_core::{Amount, Error, ErrorCode};
use std::time::Duration;

pub(super) async fn credit(
    State(node): State<Node>,
    P(bank_id): P<String>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    answer(
        blocking(move || {
            let central = central(&node)?;
            central.credit_correspondent_once(&bank_id, request.amount_tiyn, Some(central_key(key)), (node.clock)())
        })
        .await,
    )
}

pub(super) async fn emission(
    State(node): State<Node>,
    P(bank_id): P<String>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    let staged = blocking({
        let node = node.clone();
        move || {
            let central = central(&node)?;
            Ok(central.emit(&bank_id, request.amount_tiyn, Some(central_key(key)), (node.clock)()))
        }
    })
    .await;
    let answer_rx = match staged {
        Ok(answer_rx) => answer_rx,
        Err(e) => return Failure(e).into_response(),
    };
    let result = blocking(move || match answer_rx.recv_timeout(Duration::from_millis(ANSWER_WAIT_MS)) {
        Ok(result) => result.map(|e| Emitted {
            tx_id: e.tx_id,
            bank: e.bank,
            amount_tiyn: e.amount,
            certificate_seq: e.certificate_seq,
        }),
        Err(_) => Err(Error::new(
            ErrorCode::RequestInProgress,
            "the network has not answered yet; ask again with the same idempotency key",
        )),
    })
    .await;
    answer(result)
}

/// An emission, certified and posted (the bank applies it from central's delivery).
#[derive(serde::Serialize)]
struct Emitted {
    tx_id: dtenge_core::token::TxId,
    bank: String,
    amount_tiyn: Amount,
    certificate_seq: u64,
}

pub(super) async fn set_day(
    State(node): State<Node>,
    P(date): P<String>,
    Keyed(_key, request): Keyed<dtenge_api::types::DayRequest>,
) -> Response {
    answer(
        blocking(move || {
            let date: dtenge_core::calendar::Date = date.parse()?;
            let day = central(&node)?.set_day(date, request.working, (node.clock)())?;
            Ok(dtenge_api::types::DayView { date: day.date, working: day.working, overridden: day.overridden })
        })
        .await,
    )
}

/// Central's registry totals and DT liability.
#[derive(serde::Serialize)]
struct Figures {
    issued_tiyn: Amount,
    redeemed_tiyn: Amount,
    dt_liability_tiyn: Amount,
}

pub(super) async fn figures(State(node): State<Node>) -> Response {
    answer(
        blocking(move || {
            let figures = central(&node)?.figures();
            Ok(Figures {
                issued_tiyn: figures.totals.issued,
                redeemed_tiyn: figures.totals.redeemed,
                dt_liability_tiyn: figures.dt_liability,
            })
        })
        .await,
    )
}

/// A bank as central knows it: what the operator decided and what central recorded for it.
#[derive(serde::Serialize)]
struct BankAtCentral {
    id: String,
    blocked: bool,
    block_reason: Option<String>,
    emitted_tiyn: Amount,
    redeemed_tiyn: Amount,
    correspondent_tiyn: i64,
}

fn bank_at_central(central: &dtenge_central::CentralService, bank_id: &str) -> BankAtCentral {
    let figures = central.figures();
    let totals = figures.by_bank.get(bank_id).copied().unwrap_or_default();
    let block_reason = figures.blocked.get(bank_id).cloned();
    BankAtCentral {
        id: bank_id.to_string(),
        blocked: block_reason.is_some(),
        block_reason,
        emitted_tiyn: totals.issued,
        redeemed_tiyn: totals.redeemed,
        correspondent_tiyn: figures.correspondent_tiyn.get(bank_id).copied().unwrap_or(0),
    }
}

/// Block a bank, or lift its block (`request` `None`); answered once the notary and every
/// bank applied it. Repeating it sets the same state.
async fn decide(node: Node, bank_id: String, request: Option<BlockRequest>) -> Response {
    answer(
        blocking(move || {
            let central = central(&node)?;
            // The reason first, then the NBK, as `up` checks them.
            let reason = request.as_ref().map(dtenge_api::platform::block_reason).transpose()?;
            if bank_id == dtenge_api::platform::NBK_ID {
                return Err(Error::new(ErrorCode::Forbidden, "the NBK node cannot be blocked"));
            }
            central.set_blocked(&bank_id, reason.is_some(), reason.as_deref().unwrap_or(""), (node.clock)())?;
            dtenge_api::platform::decision_applied(central)?;
            Ok(bank_at_central(central, &bank_id))
        })
        .await,
    )
}

pub(super) async fn block(
    State(node): State<Node>,
    P(bank_id): P<String>,
    Keyed(_key, request): Keyed<BlockRequest>,
) -> Response {
    decide(node, bank_id, Some(request)).await
}

/// Any JSON body, or none, as `up` takes it: an unblock needs nothing but the bank.
pub(super) async fn unblock(
    State(node): State<Node>,
    P(bank_id): P<String>,
    Keyed(_key, _body): Keyed<serde_json::Value>,
) -> Response {
    decide(node, bank_id, None).await
}

pub(super) async fn calendar_year(State(node): State<Node>, P(year): P<String>) -> Response {
    answer(
        blocking(move || {
            let year: i32 = year.parse().map_err(|_| Error::malformed(format!("{year} is not a year")))?;
            dtenge_api::platform::calendar_year(central(&node)?, year)
        })
        .await,
    )
}

pub(super) async fn today(State(node): State<Node>) -> Response {
    answer(blocking(move || Ok(dtenge_api::platform::day_view(central(&node)?.today((node.clock)())))).await)
}

pub(super) async fn operations(
    State(node): State<Node>,
    page: std::result::Result<Query<super::bank::Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match page {
        Ok(Query(page)) => page,
        Err(e) => return Failure(Error::malformed(format!("query: {e}"))).into_response(),
    };
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(dtenge_api::platform::LIST_PAGE_DEFAULT);
    answer(
        blocking(move || {
            dtenge_api::platform::check_list_limit(limit)?;
            let (page, total) = central(&node)?.registry_newest(offset, limit);
            let operations = page.iter().map(dtenge_api::platform::nbk_operation).collect();
            Ok(dtenge_api::types::OperationPage { operations, total, offset, limit })
        })
        .await,
    )
}

pub(super) async fn abs_balances(State(node): State<Node>) -> Response {
    answer(blocking(move || Ok(dtenge_api::AbsBalances { balances: central(&node)?.abs_balances() })).await)
}
