//! A bank's node: its accounts, its clients' bank money and conversions, and its redemptions
//! at the NBK. The paths and the JSON are `dtenge up`'s, answered from this node's own state
//! and over the network's messages, never by reading another organization's store:
//!
//! - `GET /v1/nodes/{node}/accounts`: every account of the bank (its back office's view);
//! - `GET /v1/nodes/{node}/accounts/{client}/history?offset=&limit=`: newest first; a
//!   counterparty's name (and this bank's) only when it is this bank's client too, otherwise
//!   its bank's id as the directory lists it (a bank learns no other bank's client's name,
//!   and the nodes' configurations carry no other bank's name);
//! - `POST /v1/nodes/{node}/accounts/{client}/deposits`: bank money arrives on a client's
//!   account (the bank's core banking system's stand-in), answered once per idempotency key
//!   from the node's memo; refused `BANK_BLOCKED` while the operator's block of the bank is
//!   in force here, as on `up`;
//! - `POST /v1/nodes/{node}/accounts/{client}/to-dt` and `.../from-dt`: the client's bank
//!   money to DT and back, against the bank's own DT, keyed at the bank;
//! - `POST /v1/nodes/{node}/accounts/{client}/consolidations`: the client's smallest
//!   spendable tokens merged into one (issue 19), keyed at the bank;
//! - `GET /v1/nodes/{node}/accounts/{client}/consolidation`: the same merge offered unsigned
//!   to a client that keeps its own key (issue 20);
//! - `POST /v1/nodes/{node}/redemptions`: the bank's own DT redeemed at the NBK (its
//!   correspondent account credited), keyed at the bank, answered once central posted it and
//!   the bank applied it.

use super::{answer, bank, blocking, committed, remembered, Keyed, Node};
use crate::Hosted;
use axum::extract::{Path as P, State};
use axum::response::{IntoResponse, Response};
use dtenge_api::platform::{history_entries, history_line};
use dtenge_api::types::{AmountRequest, Consolidation, ConsolidationRequest, HistoryPage, Receipt};
use dtenge_api::{Failure, Q};
use dtenge_bank::{Conversion, Directory as _, IdemKey, Request as BankRequest};
use dtenge_core::party::Party;
use dtenge_core::{Amount, Error, ErrorCode};
use dtenge_node::{Balance, Purpose, OWN_ACCOUNT};

/// History lines a page returns when the caller names no limit.
const HISTORY_PAGE_DEFAULT: usize = 50;

/// A page of a list: lines to skip (newest first) and lines to return.
#[derive(serde::Deserialize)]
pub(super) struct Page {
    pub(super) offset: Option<usize>,
    pub(super) limit: Option<usize>,
}

/// A page of the node's accounts (`?after=<client id>&limit=<1 to 1,000>`), as `up`'s.
pub(super) async fn accounts(State(node): State<Node>, P(_id): P<String>, Q(page): Q<AccountsAfter>) -> Response {
    let limit = page.limit.unwrap_or(dtenge_api::platform::ACCOUNTS_PAGE_DEFAULT);
    answer(
        blocking(move || {
            bank(&node)?.service().read(|n| dtenge_api::platform::accounts_page(n, page.after.as_deref(), limit))
        })
        .await,
    )
}

/// The query of [`accounts`].
#[derive(serde::Deserialize)]
pub(super) struct AccountsAfter {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn history(
    State(node): State<Node>,
    P((_id, client)): P<(String, String)>,
    Q(page): Q<Page>,
) -> Response {
    let (offset, limit) = (page.offset.unwrap_or(0), page.limit.unwrap_or(HISTORY_PAGE_DEFAULT));
    answer(
        blocking(move || {
            let Hosted::Bank { handle, directory, .. } = &*node.hosted else {
                return Err(Error::new(ErrorCode::NotFound, "this node runs no bank"));
            };
            // The lines from the bank's store, the names from its state; the directory is
            // asked after, all at once.
            let (entries, total) = history_entries(handle.service(), &client, offset, limit)?;
            let own_name = handle.service().read(|n| n.meta().name.clone());
            let others: Vec<_> =
                entries.iter().filter(|(_, name)| name.is_none()).filter_map(|(e, _)| e.counterparty).collect();
            directory.learn_banks(&others);
            let lines = entries
                .into_iter()
                .map(|(entry, name)| {
                    // This bank by its name; another by its id, as the directory lists it
                    // (learnt above; an address it did not answer in time is shown without).
                    let bank_of = match (&name, entry.counterparty) {
                        (Some(_), _) => Some(own_name.clone()),
                        (None, Some(address)) => directory.known_bank(&address),
                        (None, None) => None,
                    };
                    history_line(entry, bank_of, name)
                })
                .collect();
            Ok(HistoryPage { lines, total, offset, limit })
        })
        .await,
    )
}

pub(super) async fn deposit(
    State(node): State<Node>,
    P((_id, client)): P<(String, String)>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    answer(
        blocking(move || {
            let handle = bank(&node)?;
            // The bank keeps no key for bank money: the node's memo answers a repeat.
            remembered(&node, key, |_| {
                // As `up`: a blocked bank takes no deposit (a repeat is answered above).
                if handle.service().is_blocked(handle.id()) {
                    return Err(Error::new(
                        ErrorCode::BankBlocked,
                        format!("'{}' is blocked by the NBK operator", handle.id()),
                    ));
                }
                let fiat = handle.service().deposit_fiat(&client, request.amount_tiyn)?;
                let mut balance: Balance = handle.service().read(|n| n.balance(&client))?;
                // Another change of the client's money may lie between: the deposit's own answer.
                balance.fiat_tiyn = fiat;
                Ok(balance)
            })
        })
        .await,
    )
}

pub(super) async fn to_dt(
    State(node): State<Node>,
    P((id, client)): P<(String, String)>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    convert(node, id, client, key, request.amount_tiyn, Conversion::ToDt).await
}

pub(super) async fn from_dt(
    State(node): State<Node>,
    P((id, client)): P<(String, String)>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    convert(node, id, client, key, request.amount_tiyn, Conversion::FromDt).await
}

/// A custodial client's tokens merged (issue 19): the bank builds, signs and commits the
/// transfer to itself; the answer says how many tokens the client may spend now. The bank
/// answers a repeated key with the first consolidation.
pub(super) async fn consolidate(
    State(node): State<Node>,
    P((_id, client)): P<(String, String)>,
    Keyed(key, _request): Keyed<ConsolidationRequest>,
) -> Response {
    let staged = blocking({
        let (node, client) = (node.clone(), client.clone());
        // The bank answers a repeated key first, and refuses the rest while it is blocked.
        move || Ok(bank(&node)?.submit(BankRequest::Consolidate { client_id: client }, Some(key)))
    })
    .await;
    let answer_rx = match staged {
        Ok(answer_rx) => answer_rx,
        Err(e) => return Failure(e).into_response(),
    };
    let result = committed(answer_rx).await;
    answer(
        blocking(move || {
            let committed = result?;
            let spendable = bank(&node)?.service().read(|n| n.spendable_token_count(&client))?;
            Ok(Consolidation {
                tx_id: committed.tx_id,
                spendable_tokens: spendable as u64,
                inputs_per_payment_max: dtenge_core::tx::TX_INPUTS_MAX as u64,
            })
        })
        .await,
    )
}

/// A consolidation for a client that keeps its own key to sign (issue 20), read from the
/// bank's state; nothing is reserved.
pub(super) async fn consolidation_offer(State(node): State<Node>, P((_id, client)): P<(String, String)>) -> Response {
    answer(
        blocking(move || {
            let handle = bank(&node)?;
            let issuer = handle.service().issuer();
            handle.service().read(|n| n.consolidation_offer(&client, issuer, 0))
        })
        .await,
    )
}

/// A client's conversion: DT between the client and the bank's own account, bank money the
/// other way, in one commit at the bank (which answers a repeated key from its store).
async fn convert(
    node: Node,
    id: String,
    client: String,
    key: IdemKey,
    amount: Amount,
    direction: Conversion,
) -> Response {
    let staged = blocking({
        let node = node.clone();
        move || {
            let handle = bank(&node)?;
            if client == OWN_ACCOUNT {
                return Err(Error::new(ErrorCode::Forbidden, "a node converts with the NBK, not with itself"));
            }
            let (client_party, own, name) = handle.service().read(|n| {
                let party = |client_id: &str| {
                    n.account(client_id).map(|a| Party {
                        bank: id.clone(),
                        client_id: client_id.into(),
                        address: a.address,
                    })
                };
                Ok::<_, Error>((party(&client)?, party(OWN_ACCOUNT)?, n.meta().name.clone()))
            })?;
            let answer = handle.submit(BankRequest::Convert { client_id: client, direction, amount }, Some(key));
            Ok((answer, client_party, own, name))
        }
    })
    .await;
    let (answer_rx, client_party, own, name) = match staged {
        Ok(staged) => staged,
        Err(e) => return Failure(e).into_response(),
    };
    let (purpose, from, to) = match direction {
        Conversion::ToDt => (Purpose::ConversionToDt, own, client_party),
        Conversion::FromDt => (Purpose::ConversionFromDt, client_party, own),
    };
    let result = committed(answer_rx).await.map_err(|e| dtenge_api::platform::liquidity(e, false, &name));
    let client_id = match direction {
        Conversion::ToDt => to.client_id.clone(),
        Conversion::FromDt => from.client_id.clone(),
    };
    // The time read under the bank's lock: on the blocking pool.
    answer(
        blocking(move || {
            result.map(|c| Receipt {
                at_unix_ms: applied_at(&node, &client_id, &c.tx_id),
                tx_id: c.tx_id,
                purpose,
                amount_tiyn: amount,
                from: Some(from),
                to: Some(to),
                abs_posting: None,
            })
        })
        .await,
    )
}

pub(super) async fn redemption(
    State(node): State<Node>,
    P(id): P<String>,
    Keyed(key, request): Keyed<AmountRequest>,
) -> Response {
    let staged = blocking({
        let node = node.clone();
        move || {
            let handle = bank(&node)?;
            let (own, name) = handle.service().read(|n| {
                let own = n.account(OWN_ACCOUNT)?;
                Ok::<_, Error>((
                    Party { bank: id, client_id: OWN_ACCOUNT.into(), address: own.address },
                    n.meta().name.clone(),
                ))
            })?;
            // Central refuses a redemption on a non-operational day, or for a blocked bank,
            // before anything moves; the bank answers a repeated key from its store.
            Ok((handle.service().redeem(request.amount_tiyn, Some(key), (node.clock)()), own, name))
        }
    })
    .await;
    let (answer_rx, own, name) = match staged {
        Ok(staged) => staged,
        Err(e) => return Failure(e).into_response(),
    };
    let result = committed(answer_rx).await.map_err(|e| dtenge_api::platform::liquidity(e, true, &name));
    answer(
        blocking(move || {
            result.map(|c| Receipt {
                at_unix_ms: applied_at(&node, OWN_ACCOUNT, &c.tx_id),
                tx_id: c.tx_id,
                purpose: Purpose::Redemption,
                amount_tiyn: request.amount_tiyn,
                from: Some(own),
                to: None,
                abs_posting: None,
            })
        })
        .await,
    )
}

/// When the bank applied `tx_id` to `client_id`'s account (the same on every answer to the
/// same key), or now when its history no longer holds it.
fn applied_at(node: &Node, client_id: &str, tx_id: &dtenge_core::token::TxId) -> u64 {
    bank(node)
        .ok()
        .and_then(|handle| handle.service().read(|n| dtenge_api::platform::applied_at(n, client_id, tx_id)))
        .unwrap_or_else(|| (node.clock)())
}
