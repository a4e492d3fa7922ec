//! Programmed money on a bank's node (SPEC §5.2 to §5.4): what the bank's systems call for
//! its clients' markings, marked transfers, invoice and VAT payments, contract payments and
//! withdrawals, and split payments. The paths and the JSON are `dtenge up`'s:
//!
//! - `POST /v1/nodes/{node}/markings`: a marking one of the bank's clients initiates, its
//!   recipients named by bank and client id and found at the directory; registered at the
//!   oracle over the network, once per idempotency key (the node's memo answers a repeat, and
//!   the oracle keeps the key with the marking, so a question that reaches it twice registers
//!   one marking);
//! - `POST /v1/nodes/{node}/marked-transfers`, `.../invoice-payments`, `.../vat-payments`,
//!   `.../contract-payments`, `.../contract-withdrawals`: a programmed spend. The bank plans
//!   it with the oracle, builds and signs it, has the oracle attest it and the notary certify
//!   it, all over the network's messages; the bank keeps the idempotency key. The receipt
//!   carries the oracle's signed record of the spend (the move, the paid invoice, the VAT
//!   payment, the contract's use), asked of the oracle until it recorded the spend from the
//!   bank's delivery (at most [`ANSWER_WAIT_MS`]; then `REQUEST_IN_PROGRESS`: ask again with
//!   the same key);
//! - `POST /v1/nodes/{node}/split-payments`: one payment to several payees found at the
//!   directory, all or none, keyed at the bank.
//!
//! The oracle answers a bank only about the markings, invoices and contracts its clients are
//! a party to, and names other banks' clients in a marking by bank and address only
//! (`dtenge_oracle`'s `asked.rs`).

use super::holding::bank_and_oracle;
use super::{answer, blocking, created, listed, payee, remembered, settled, Keyed, Node, ANSWER_WAIT_MS};
use crate::Hosted;
use axum::extract::{Path as P, State};
use axum::response::Response;
use dtenge_api::platform::check_split;
use dtenge_api::types::{
    ContractPaymentRequest, ContractReceipt, ContractWithdrawalRequest, InvoicePaymentRequest, InvoiceReceipt,
    MarkedReceipt, MarkedTransferRequest, MarkingRequest, MarkingView, Share, SplitPaymentRequest, SplitReceipt,
    VatPaymentRequest,
};
use dtenge_assembly::BankHandle;
use dtenge_bank::{DirectoryClient, IdemKey};
use dtenge_core::party::Party;
use dtenge_core::token::{Policy, TxId};
use dtenge_core::{ensure, Amount, Error, ErrorCode, Result};
use dtenge_node::ClientKind;
use dtenge_node::OWN_ACCOUNT;
use dtenge_oracle::client::OracleClient;
use dtenge_oracle::marking::{LEVELS_MAX, RECIPIENTS_PER_LEVEL_MAX};
use dtenge_oracle::{Level, MarkingSpec, TEXT_LEN_MAX};
use dtenge_wire::SpendKind;
use std::time::{Duration, Instant};

/// How often a receipt waiting for the oracle's record of a spend asks again.
const RECORD_POLL_MS: u64 = 20;

/// The bank's directory client.
fn directory(node: &Node) -> Result<&DirectoryClient> {
    match &*node.hosted {
        Hosted::Bank { directory, .. } => Ok(directory),
        _ => Err(Error::new(ErrorCode::NotFound, "this node runs no bank")),
    }
}

/// What the oracle recorded of a spend, once `found` finds it (asked every
/// [`RECORD_POLL_MS`], at most [`ANSWER_WAIT_MS`]): the oracle records a certified spend
/// from the bank's delivery, just after the bank applied it.
fn recorded<T>(mut found: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_millis(ANSWER_WAIT_MS);
    loop {
        if let Some(record) = found()? {
            return Ok(record);
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                "the payment is committed but the oracle has not recorded it yet; ask again with the same idempotency key",
            ));
        }
        std::thread::sleep(Duration::from_millis(RECORD_POLL_MS));
    }
}

/// Spend `client_id`'s DT as `kind` says, planned with and attested by the oracle; the
/// bank answers a repeated key from its store.
fn spend(node: &Node, handle: &BankHandle, client_id: &str, kind: SpendKind, key: IdemKey) -> Result<TxId> {
    Ok(settled(handle.spend(client_id, kind, Some(key), (node.clock)()))?.tx_id)
}

pub(super) async fn create_marking(
    State(node): State<Node>,
    P(id): P<String>,
    Keyed(key, request): Keyed<MarkingRequest>,
) -> Response {
    created(
        blocking(move || {
            let (handle, oracle) = bank_and_oracle(&node)?;
            remembered(&node, key, |key| {
                let spec = marking_spec(&node, handle, &id, &request)?;
                let marking = oracle.create_marking(&key.key, key.fingerprint, &spec)?;
                Ok(MarkingView::of(&marking))
            })
        })
        .await,
    )
}

/// The marking's terms: its initiator a client here (not the bank's own account), its
/// recipients found at the directory.
fn marking_spec(node: &Node, handle: &BankHandle, id: &str, request: &MarkingRequest) -> Result<MarkingSpec> {
    let account = handle.service().read(|n| n.account(&request.initiator).cloned())?;
    ensure!(
        account.kind != ClientKind::Institution,
        Forbidden,
        "a marking is initiated by a client or a government agency, not the node's own account"
    );
    let initiator = Party { bank: id.to_string(), client_id: request.initiator.clone(), address: account.address };
    // The oracle's bounds, before a recipient is looked up: the directory is asked once per
    // recipient, and the terms must fit one question.
    ensure!(
        !request.levels.is_empty() && request.levels.len() <= LEVELS_MAX,
        LimitExceeded,
        "a marking has 1 to {LEVELS_MAX} levels"
    );
    let reference = request.reference.trim();
    ensure!(
        !reference.is_empty() && reference.chars().count() <= TEXT_LEN_MAX,
        MalformedInput,
        "the reference has 1 to {TEXT_LEN_MAX} characters"
    );
    let mut named = std::collections::HashSet::from([(id, request.initiator.as_str())]);
    for (i, level) in request.levels.iter().enumerate() {
        ensure!(
            !level.recipients.is_empty() && level.recipients.len() <= RECIPIENTS_PER_LEVEL_MAX,
            LimitExceeded,
            "level {} has 1 to {RECIPIENTS_PER_LEVEL_MAX} recipients",
            i + 1
        );
        for r in &level.recipients {
            ensure!(
                named.insert((r.bank.as_str(), r.client_id.as_str())),
                MalformedInput,
                "{} appears twice in the marking (or is its initiator)",
                r.client_id
            );
        }
    }
    let directory = directory(node)?;
    let mut levels = Vec::with_capacity(request.levels.len());
    for level in &request.levels {
        let recipients =
            level.recipients.iter().map(|r| listed(directory, &r.bank, &r.client_id)).collect::<Result<Vec<_>>>()?;
        levels.push(Level { recipients, limit_tiyn: level.limit_tiyn });
    }
    Ok(MarkingSpec { initiator, reference: reference.to_string(), levels })
}

pub(super) async fn marked_transfer(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<MarkedTransferRequest>,
) -> Response {
    answer(
        blocking(move || {
            remembered(&node, key, |key| {
                let (handle, oracle) = bank_and_oracle(&node)?;
                let to = listed(directory(&node)?, &request.to.bank, &request.to.client_id)?;
                let kind = SpendKind::MarkedTransfer {
                    marking_id: request.marking_id.clone(),
                    to,
                    amount: request.amount_tiyn,
                };
                let tx_id = spend(&node, handle, &request.from, kind, key)?;
                let (marking, moved) = recorded(|| {
                    let (marking, moved) = oracle.marking(&request.marking_id, Some(tx_id))?;
                    Ok(moved.map(|moved| (marking, moved)))
                })?;
                Ok(MarkedReceipt { tx_id, marking, moved })
            })
        })
        .await,
    )
}

/// Pay an e-invoice: the net part standard, the VAT part VAT-marked (the payer's VAT-marked
/// DT first, standard DT marked for the shortfall). The split shown is computed from the
/// payer's VAT-marked DT read just before the bank takes the payment, as on `up`.
pub(super) async fn pay_invoice(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<InvoicePaymentRequest>,
) -> Response {
    answer(
        blocking(move || {
            remembered(&node, key, |key| {
                let (handle, oracle) = bank_and_oracle(&node)?;
                let vat_available = handle.service().read(|n| n.available(&request.from, &Policy::Vat))?;
                // The bank fills in the payer's VAT-marked DT.
                let kind = SpendKind::InvoicePayment {
                    invoice_id: request.invoice_id.clone(),
                    amount: request.amount_tiyn,
                    vat_available: Amount::ZERO,
                };
                let tx_id = spend(&node, handle, &request.from, kind, key)?;
                let invoice = recorded(|| {
                    let invoice = oracle.invoice(&request.invoice_id)?;
                    Ok((invoice.paid_tx == Some(tx_id)).then_some(invoice))
                })?;
                let from_vat = vat_available.min(invoice.vat_tiyn);
                let from_standard = invoice.vat_tiyn.checked_sub(from_vat)?;
                Ok(InvoiceReceipt {
                    tx_id,
                    invoice,
                    vat_from_vat_tokens_tiyn: from_vat,
                    vat_from_standard_tiyn: from_standard,
                })
            })
        })
        .await,
    )
}

/// Pay VAT to the tax authority's account with VAT-marked DT; there it becomes standard.
pub(super) async fn pay_vat(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<VatPaymentRequest>,
) -> Response {
    answer(
        blocking(move || {
            remembered(&node, key, |key| {
                let (handle, oracle) = bank_and_oracle(&node)?;
                let kind = SpendKind::VatPayment { amount: request.amount_tiyn };
                let tx_id = spend(&node, handle, &request.from, kind, key)?;
                recorded(|| match oracle.vat_payment(tx_id) {
                    Ok(payment) => Ok(Some(payment)),
                    // Not recorded yet.
                    Err(e) if e.code == ErrorCode::NotFound => Ok(None),
                    Err(e) => Err(e),
                })
            })
        })
        .await,
    )
}

/// Pay under a contract: the recipient receives DT marked with it.
pub(super) async fn contract_payment(
    State(node): State<Node>,
    P(_id): P<String>,
    Keyed(key, request): Keyed<ContractPaymentRequest>,
) -> Response {
    answer(
        blocking(move || {
            remembered(&node, key, |key| {
                let (handle, oracle) = bank_and_oracle(&node)?;
                let kind =
                    SpendKind::ContractPayment { contract: request.contract.clone(), amount: request.amount_tiyn };
                let tx_id = spend(&node, handle, &request.from, kind, key)?;
                contract_receipt(oracle, &request.contract, tx_id)
            })
        })
        .await,
    )
}

/// Convert DT received under a contract to the recipient's bank money, within the
/// contract's withdrawal limit: the marked DT goes to the bank's own account as standard DT,
/// and the client's bank money grows when the bank applies the certified spend.
pub(super) async fn contract_withdrawal(
    State(node): State<Node>,
    P(id): P<String>,
    Keyed(key, request): Keyed<ContractWithdrawalRequest>,
) -> Response {
    answer(
        blocking(move || {
            remembered(&node, key, |key| {
                let (handle, oracle) = bank_and_oracle(&node)?;
                ensure!(request.client_id != OWN_ACCOUNT, Forbidden, "a node does not withdraw from itself");
                let address = handle.service().read(|n| n.account(&request.client_id).map(|a| a.address))?;
                // The bank puts its own account in place of the holder's.
                let bank_account = Party { bank: id, client_id: request.client_id.clone(), address };
                let kind = SpendKind::ContractWithdrawal {
                    contract: request.contract.clone(),
                    amount: request.amount_tiyn,
                    bank_account,
                };
                let tx_id = spend(&node, handle, &request.client_id, kind, key)?;
                contract_receipt(oracle, &request.contract, tx_id)
            })
        })
        .await,
    )
}

/// The contract as this bank may see it, with the use `tx_id` made, once recorded.
fn contract_receipt(oracle: &OracleClient, number: &str, tx_id: TxId) -> Result<ContractReceipt> {
    let (contract, used) = recorded(|| {
        let (contract, used) = oracle.contract(number, Some(tx_id))?;
        Ok(used.map(|used| (contract, used)))
    })?;
    Ok(ContractReceipt { tx_id, contract, used })
}

/// One payment to several payees in one atomic transaction: all lines are paid or none is.
/// The reference is checked but not kept (the bank's split payment carries none), as on `up`.
pub(super) async fn split_payment(
    State(node): State<Node>,
    P(id): P<String>,
    Keyed(key, request): Keyed<SplitPaymentRequest>,
) -> Response {
    answer(
        blocking(move || {
            remembered(&node, key, |key| {
                let (handle, _) = bank_and_oracle(&node)?;
                check_split(&request)?;
                let address = handle.service().read(|n| n.account(&request.from).map(|a| a.address))?;
                let from = Party { bank: id, client_id: request.from.clone(), address };
                let mut lines = Vec::with_capacity(request.lines.len());
                for line in &request.lines {
                    let party = payee(&node, &line.to)?;
                    ensure!(party.address != from.address, MalformedInput, "the payer cannot pay itself");
                    lines.push(Share { party, amount_tiyn: line.amount_tiyn });
                }
                let payees: Vec<_> = lines.iter().map(|s| (s.party.address, s.amount_tiyn)).collect();
                let total_tiyn = Amount::sum(payees.iter().map(|(_, a)| *a))?;
                let committed = settled(handle.split_payment(&request.from, &payees, Some(key)))?;
                Ok(SplitReceipt { tx_id: committed.tx_id, from, total_tiyn, lines, at_unix_ms: (node.clock)() })
            })
        })
        .await,
    )
}
