//! Cards and vouchers on a bank's node (SPEC sub-scenarios 6, 9 and 10, refunds, ATM): what
//! the bank's card processing and its integrators call. The paths and the JSON are
//! `dtenge up`'s; each call goes to the bank whose record decides it, as the card networks
//! route it (the card switch is the network's next step; until then the caller's systems
//! know which bank to call):
//!
//! - `POST /v1/nodes/{node}/cards`: link a card number to a client here (claimed at the
//!   directory across the network first: one link per card); once per idempotency key;
//! - `POST /v1/card-purchases` at the card's bank (the issuer): the client's DT pays the
//!   merchant, found at the directory (convert-to-fiat: the issuer's own account, the
//!   merchant's bank credits its bank money when the purchase reaches it); keyed at the bank;
//! - `GET /v1/card-purchases/{id}`: the purchase as this bank keeps it (issuer or acquirer);
//! - `POST /v1/card-purchases/{id}/refunds` at the merchant's bank (the acquirer, whose record
//!   is the authority on what is left): a DT refund is the merchant's DT back to the buyer,
//!   answered with its receipt; a convert-to-fiat refund debits the merchant's bank money here
//!   and the card's bank pays the buyer from its own DT after it learns of it: the acquirer
//!   cannot name that payment, so it answers `202 Accepted` with the purchase as it keeps it
//!   (the payment is listed in the purchase's `refund_tx_ids` at the card's bank);
//! - `POST /v1/atm-withdrawals` at the card's bank: the card's DT to the bank's own account;
//! - `GET`, `POST /v1/voucher-programs` at the payer's bank, which runs its programmes, and
//!   `POST /v1/voucher-programs/{id}/events` there: the programme's amount paid once per
//!   event id.
//!
//! The merchant's bank learns of a purchase on its delivery stream, just after the card's
//! bank answers: a refund asked at that moment is `NOT_FOUND` (ask again).

use super::{answer, bank, blocking, created, remembered, settled, Keyed, Node};
use axum::extract::{Path as P, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dtenge_api::platform::{buyer_of, merchant_of, program_of, purchase_of, role_mode};
use dtenge_api::types::{
    AmountRequest, AtmWithdrawal, CardPurchaseRequest, LinkCard, Purchase, Receipt, VoucherEvent, VoucherProgram,
    VoucherProgramRequest,
};
use dtenge_api::Failure;
use dtenge_assembly::{purchase_id, BankHandle, CardPurchase};
use dtenge_bank::{PurchaseRecord, Refunding, VoucherEvent as RoleEvent, VoucherProgramRequest as RoleProgramRequest};
use dtenge_core::party::Party;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_pan, mask_pan};
use dtenge_node::{Purpose, OWN_ACCOUNT};

/// The party of `client_id` (or the bank's own account) at this bank.
fn party_here(handle: &BankHandle, client_id: &str) -> Result<Party> {
    let address = handle.service().read(|n| n.account(client_id).map(|a| a.address))?;
    Ok(Party { bank: handle.id().to_string(), client_id: client_id.to_string(), address })
}

/// The purchase as this bank keeps it.
fn record(handle: &BankHandle, purchase_id: &str) -> Result<PurchaseRecord> {
    handle.purchase(purchase_id)?.ok_or_else(|| {
        Error::new(
            ErrorCode::NotFound,
            format!(
                "no card purchase {purchase_id} at '{}' (the merchant's bank learns of a purchase just after the card's bank answers: ask again)",
                handle.id()
            ),
        )
    })
}

pub(super) async fn link_card(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<LinkCard>,
) -> Response {
    created(
        blocking(move || {
            let handle = bank(&node)?;
            check_pan(&request.pan)?;
            remembered(&node, key, |_| {
                // Linked to this client already (a retry after an answer that was lost before
                // the memo kept it): the same answer.
                let holder = handle.service().read(|n| n.card_client(&request.pan).map(str::to_string));
                if holder.as_deref() == Some(request.client_id.as_str()) {
                    return Ok(mask_pan(&request.pan));
                }
                let opening = handle.link_card(&request.client_id, &request.pan, (node.clock)());
                let linked = opening.recv_timeout(std::time::Duration::from_millis(super::ANSWER_WAIT_MS));
                linked.map_err(|_| {
                    Error::new(
                        ErrorCode::RequestInProgress,
                        "the directory has not answered yet; ask again with the same key",
                    )
                })??;
                Ok(mask_pan(&request.pan))
            })
        })
        .await,
    )
}

pub(super) async fn card_purchase(
    State(node): State<Node>,
    Keyed(key, request): Keyed<CardPurchaseRequest>,
) -> Response {
    created(
        blocking(move || {
            let handle = bank(&node)?;
            ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
            let purchase = CardPurchase {
                pan: request.pan,
                merchant_bank: request.merchant_bank,
                merchant_id: request.merchant_id,
                amount: request.amount_tiyn,
                mode: role_mode(request.mode),
            };
            let committed = settled(handle.card_purchase(&purchase, Some(key)))?;
            // A key used before for another payment with the same fingerprint answers that
            // payment, which is no purchase.
            let record = handle.purchase(&purchase_id(&committed.tx_id))?.ok_or_else(|| {
                Error::new(
                    ErrorCode::IdempotencyKeyReused,
                    "the idempotency key answered a payment that is not a purchase",
                )
            })?;
            Ok(purchase_of(&record))
        })
        .await,
    )
}

pub(super) async fn purchase(State(node): State<Node>, P(purchase_id): P<String>) -> Response {
    answer(blocking(move || Ok::<Purchase, Error>(purchase_of(&record(bank(&node)?, &purchase_id)?))).await)
}

pub(super) async fn card_refund(
    State(node): State<Node>,
    P(purchase_id): P<String>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    let refunded = blocking(move || {
        let handle = bank(&node)?;
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let acquired = record(handle, &purchase_id)?;
        ensure!(
            acquired.merchant_bank == handle.id(),
            Forbidden,
            "a refund is asked at the merchant's bank, '{}'",
            acquired.merchant_bank
        );
        let committed = match handle.card_refund(&purchase_id, amount, Some(key), (node.clock)())? {
            Refunding::Submitted { answer, .. } => Some(settled(answer)?),
            Refunding::Decided(receipt) => receipt.committed,
        };
        let record = record(handle, &purchase_id)?;
        Ok(match committed {
            // The merchant's DT back to the buyer.
            Some(committed) => Ok(Receipt {
                tx_id: committed.tx_id,
                purpose: Purpose::CardRefund,
                amount_tiyn: amount,
                from: Some(merchant_of(&record)),
                to: Some(buyer_of(&record)),
                at_unix_ms: (node.clock)(),
                abs_posting: None,
            }),
            // Decided here; the card's bank pays it.
            None => Err(purchase_of(&record)),
        })
    })
    .await;
    match refunded {
        Ok(Ok(receipt)) => (StatusCode::OK, Json(receipt)).into_response(),
        Ok(Err(purchase)) => (StatusCode::ACCEPTED, Json(purchase)).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

pub(super) async fn atm_withdrawal(State(node): State<Node>, Keyed(key, request): Keyed<AtmWithdrawal>) -> Response {
    answer(
        blocking(move || {
            let handle = bank(&node)?;
            let amount = request.amount_tiyn;
            ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
            check_pan(&request.pan)?;
            let client =
                handle.service().read(|n| n.card_client(&request.pan).map(str::to_string)).ok_or_else(|| {
                    let masked = mask_pan(&request.pan);
                    Error::new(ErrorCode::UnknownAccount, format!("card {masked} is not linked at '{}'", handle.id()))
                })?;
            let (holder, own) = (party_here(handle, &client)?, party_here(handle, OWN_ACCOUNT)?);
            let withdrawal = dtenge_assembly::AtmWithdrawal { pan: request.pan, atm_bank: request.atm_bank, amount };
            let committed = settled(handle.atm_withdrawal(&withdrawal, Some(key)))?;
            Ok(Receipt {
                tx_id: committed.tx_id,
                purpose: Purpose::CashWithdrawal,
                amount_tiyn: amount,
                from: Some(holder),
                to: Some(own),
                at_unix_ms: (node.clock)(),
                abs_posting: None,
            })
        })
        .await,
    )
}

pub(super) async fn voucher_programs(
    State(node): State<Node>,
    dtenge_api::Q(page): dtenge_api::Q<super::bank::Page>,
) -> Response {
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(dtenge_api::platform::LIST_PAGE_DEFAULT);
    answer(
        blocking(move || {
            let programs = bank(&node)?.voucher_programs();
            let (page, total) = dtenge_api::platform::page_of(programs.iter(), offset, limit)?;
            let programs: Vec<VoucherProgram> = page.into_iter().map(program_of).collect();
            Ok(dtenge_api::types::VoucherProgramPage { programs, total, offset, limit })
        })
        .await,
    )
}

/// A programme between a payer here (a school) and a payee (a canteen, found at the
/// directory), run by this bank; the same key and request again answer the same programme.
pub(super) async fn create_voucher_program(
    State(node): State<Node>,
    Keyed(key, request): Keyed<VoucherProgramRequest>,
) -> Response {
    created(
        blocking(move || {
            let handle = bank(&node)?;
            ensure!(
                request.payer_bank == handle.id(),
                Forbidden,
                "a programme is registered at its payer's bank, '{}'",
                request.payer_bank
            );
            let role_request = RoleProgramRequest {
                integrator: request.integrator.trim().to_string(),
                payer_id: request.payer_id,
                payee_bank: request.payee_bank,
                payee_id: request.payee_id,
                amount_per_event: request.amount_per_event_tiyn,
            };
            Ok(program_of(&handle.create_voucher_program(&role_request, Some(key), (node.clock)())?))
        })
        .await,
    )
}

/// An integrator's event: the programme's amount paid once per event id, whoever retries
/// (the event is its own idempotency key at the bank).
pub(super) async fn voucher_event(
    State(node): State<Node>,
    P(program_id): P<String>,
    Keyed(_key, event): Keyed<VoucherEvent>,
) -> Response {
    answer(
        blocking(move || {
            let handle = bank(&node)?;
            let program = handle
                .service()
                .voucher_program(&program_id)
                .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no voucher programme {program_id} here")))?;
            let event = RoleEvent {
                program_id: program_id.clone(),
                integrator: event.integrator,
                event_id: event.event_id,
                card: event.card,
            };
            let committed = settled(handle.voucher_event(event))?;
            let program = program_of(&program);
            Ok(Receipt {
                tx_id: committed.tx_id,
                purpose: Purpose::Voucher,
                amount_tiyn: program.amount_per_event_tiyn,
                from: Some(program.payer),
                to: Some(program.payee),
                at_unix_ms: (node.clock)(),
                abs_posting: None,
            })
        })
        .await,
    )
}
