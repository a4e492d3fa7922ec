//! Payments (sub-scenarios 7 and 8): transfers by phone, client id or address, registry
//! distributions and the transfers clients sign themselves, each paid by the payer's bank; the
//! tokens a client may present; what the notary committed.
//!
//! The gateway checks what the network checked before it moved anything (the payee named once
//! and found at the ID center, a client's account and not a bank's own, not the payer), in the
//! network's order and words; the payer's bank checks the rest (its client, the balance, the
//! signatures) and pays. A key committed before is answered first, before any check: the
//! receipt is built again from the request and the bank's first answer (the transaction's id).

use super::Idem;
use super::{checked_key, unanswered, wait, Platform, ANSWER_WAIT};
use crate::types::{
    Consolidation, ConsolidationRequest, Payee, Receipt, RegistryLineResult, RegistryReport, RegistryRequest,
    TransferRequest,
};
use dtenge_assembly::ClientAt;
use dtenge_bank::{Committed, Label, Request};
use dtenge_core::crypto::Address;
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::{Input, TxId};
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{check_bounds, TxIds};
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_node::ids::{check_iin_bin, normalize_phone};
use dtenge_node::{ClientKind, Purpose, OWN_ACCOUNT};

/// Longest reference text, in characters (the network's and the bank's limit).
pub const REFERENCE_LEN_MAX: usize = dtenge_bank::REFERENCE_CHARS_MAX;
/// Most lines one registry may have (one registry is paid by one transaction).
pub const REGISTRY_LINES_MAX: usize = dtenge_bank::REGISTRY_LINES_MAX;
const _: () = assert!(REFERENCE_LEN_MAX == 140 && REGISTRY_LINES_MAX == 16_000, "the network's limits");

impl Platform {
    /// Pay from a client of `node_id` to a payee at any bank, named by phone, by client id
    /// (at a bank, or the first listed) or by address.
    pub fn transfer(&self, idem: Option<&Idem>, node_id: &str, request: TransferRequest) -> Result<Receipt> {
        self.transfer_staged(idem, node_id, request)?.complete(self)
    }

    /// [`Platform::transfer`] up to the bank's answer: checked and handed to the payer's bank,
    /// or answered already (a key committed before).
    pub fn transfer_staged(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: TransferRequest,
    ) -> Result<Staged<Receipt>> {
        let key = checked_key(idem)?;
        let bank = self.bank(node_id)?;
        let purpose = if request.to.phone.is_some() { Purpose::PhoneTransfer } else { Purpose::Payment };
        if let Some(committed) = key.as_ref().map(|k| bank.service().committed_answer(k)).transpose()?.flatten() {
            // Answered before: the same receipt, whatever changed since.
            let (payer, payee) = (self.client_party(node_id, &request.from)?, self.find_payee(&request.to)?);
            return Ok(Staged::Done(self.payment_receipt(committed, purpose, request.amount_tiyn, payer, payee)));
        }
        check_reference(request.reference.as_deref())?;
        self.ensure_not_blocked(node_id)?;
        ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
        ensure!(
            request.from != OWN_ACCOUNT,
            Forbidden,
            "a node's own DT leaves it through conversion or redemption, not a transfer"
        );
        let payee = self.find_payee(&request.to)?;
        self.ensure_not_blocked(&payee.bank)?;
        let payer = self.client_party(node_id, &request.from)?;
        ensure!(payer.address != payee.address, MalformedInput, "payer and payee are the same account");
        let pay = Request::Pay { client_id: request.from.clone(), payees: vec![(payee.address, request.amount_tiyn)] };
        let label = Label { purpose, reference: request.reference };
        let answer = bank.submit_labelled(pay, label, key);
        let amount = request.amount_tiyn;
        Ok(Staged::Submitted(Submitted {
            answer,
            node_id: node_id.to_string(),
            payees: vec![payee.clone()],
            receipt: Box::new(move |platform, committed| {
                Ok(platform.payment_receipt(committed, purpose, amount, payer, payee))
            }),
        }))
    }

    /// The tokens a client may spend, with preimages (for clients that sign themselves).
    pub fn spendable_tokens(&self, node_id: &str, client_id: &str) -> Result<Vec<Input>> {
        self.bank(node_id)?.service().read(|node| node.spendable_inputs(client_id))
    }

    /// Every token a client owns and may present, programmed ones included, with preimages.
    pub fn all_tokens(&self, node_id: &str, client_id: &str) -> Result<Vec<Input>> {
        self.bank(node_id)?.service().read(|node| node.all_inputs(client_id))
    }

    /// A page of a client's unreserved tokens with their preimages (issue 19): `limit` (1 to
    /// [`super::LIST_PAGE_MAX`]) from the `offset`-th, the standard ones it may spend now or,
    /// with `all`, every one; read under the bank's lock, only the page copied.
    pub fn tokens_page(
        &self,
        node_id: &str,
        client_id: &str,
        all: bool,
        offset: usize,
        limit: usize,
    ) -> Result<crate::types::TokenPage> {
        self.bank(node_id)?.service().read(|node| {
            let (page, total) = super::page_of(node.inputs_of(client_id, all)?, offset, limit)?;
            Ok(crate::types::TokenPage { tokens: page.into_iter().cloned().collect(), total, offset, limit })
        })
    }

    /// Registry distribution: a legal entity (or agency, or the node itself: `from: "own"`)
    /// pays many individuals in one request. Each line is checked on its own (recipient known
    /// and an individual, amount positive, not the payer); bad lines are reported and skipped,
    /// and every good line is paid in **one** transaction (all or none: a payer who cannot
    /// cover them gets `INSUFFICIENT_FUNDS` and nothing moves).
    pub fn distribute_registry(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: RegistryRequest,
    ) -> Result<RegistryReport> {
        let key = checked_key(idem)?;
        let bank = self.bank(node_id)?;
        let first = key.as_ref().map(|k| bank.service().committed_answer(k)).transpose()?.flatten();
        if first.is_none() {
            self.ensure_not_blocked(node_id)?;
        }
        check_reference(request.reference.as_deref())?;
        ensure!(!request.lines.is_empty(), MalformedInput, "a registry has at least one line");
        ensure!(
            request.lines.len() <= REGISTRY_LINES_MAX,
            LimitExceeded,
            "a registry has at most {REGISTRY_LINES_MAX} lines; this one has {}; split it",
            request.lines.len()
        );
        let payer = self.client_party(node_id, &request.from)?;
        let payer_kind = bank.service().read(|node| node.account(&request.from).map(|a| a.kind))?;
        ensure!(
            matches!(payer_kind, ClientKind::LegalEntity | ClientKind::GovernmentAgency | ClientKind::Institution),
            Forbidden,
            "registry distribution is for legal entities, government agencies and the node itself"
        );
        let results: Vec<RegistryLineResult> = request
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let to = Payee {
                    phone: line.phone.clone(),
                    client_id: line.client_id.clone(),
                    bank: line.bank.clone(),
                    address: None,
                };
                let checked = self.registry_payee(&to, line.amount_tiyn, &payer.address);
                line_result(i, line.amount_tiyn, checked)
            })
            .collect();
        match first {
            Some(committed) => {
                registry_report(self.registry_paid_before(node_id, &request.from, committed, results)?)
            }
            None => registry_report(self.pay_registry(node_id, request, results, key)?),
        }
    }

    /// Pay the lines that passed the checks (`results`), as the bank takes them: it checks
    /// them again, and its answer for each line is the one reported.
    fn pay_registry(
        &self,
        node_id: &str,
        request: RegistryRequest,
        mut results: Vec<RegistryLineResult>,
        key: Option<dtenge_bank::IdemKey>,
    ) -> Result<(Option<TxId>, Vec<RegistryLineResult>)> {
        assert_eq!(results.len(), request.lines.len(), "a result per line");
        let passed: Vec<usize> = (0..results.len()).filter(|&i| results[i].paid).collect();
        if passed.is_empty() {
            return Ok((None, results));
        }
        let lines: Vec<dtenge_bank::RegistryLine> = passed
            .iter()
            .map(|&i| -> Result<dtenge_bank::RegistryLine> {
                let line = &request.lines[i];
                Ok(dtenge_bank::RegistryLine {
                    phone: line.phone.as_deref().map(normalize_phone).transpose()?,
                    client_id: line.client_id.clone(),
                    bank: line.bank.clone(),
                    amount: line.amount_tiyn,
                })
            })
            .collect::<Result<_>>()?;
        let registry = self.bank(node_id)?.distribute_referenced(&request.from, &lines, request.reference, key)?;
        assert_eq!(registry.lines.len(), passed.len(), "the bank answers every line");
        for (&i, answer) in passed.iter().zip(&registry.lines) {
            if let Err(e) = answer {
                results[i] = line_result(i, request.lines[i].amount_tiyn, Err(e.clone()));
            }
        }
        let tx_id = match &registry.answer {
            Some(answer) => Some(wait(answer)?.tx_id),
            None => None,
        };
        if let Some(tx_id) = &tx_id {
            let payees = results.iter().filter(|r| r.paid).filter_map(|r| r.recipient.as_ref());
            self.await_delivery(node_id, tx_id, payees.map(party_at));
        }
        Ok((tx_id, results))
    }

    /// Submit a transfer the client built and signed itself (accounts that keep their own
    /// key): checked and attested by the payer's bank, notarized, applied. The same
    /// transaction submitted again after it committed gets its receipt again.
    pub fn submit(&self, idem: Option<&Idem>, node_id: &str, tx: Transaction) -> Result<Receipt> {
        self.submit_staged(idem, node_id, tx)?.complete(self)
    }

    /// [`Platform::submit`] up to the bank's answer.
    pub fn submit_staged(&self, idem: Option<&Idem>, node_id: &str, tx: Transaction) -> Result<Staged<Receipt>> {
        let key = checked_key(idem)?;
        let bank = self.bank(node_id)?;
        // The ids' own check first; the ids themselves are the bank's to compute (its flusher
        // does), and here only a refusal needs them.
        check_bounds(&tx)?;
        let banks_refusal = |tx: &Transaction| {
            let ids = TxIds::of(tx).ok()?;
            bank.service().read(|node| node.check_client_transaction_ids(tx, &ids.inputs)).err()
        };
        let Some(first) = tx.body.inputs.first() else {
            // The bank's words: not a transfer, or a transfer that spends nothing.
            return Err(banks_refusal(&tx).unwrap_or_else(|| Error::malformed("a transfer spends inputs")));
        };
        let payer_address = first.output.owner;
        // The network checks the bank's side first: its error, if the inputs fail too.
        let payees = self.signed_payees(&tx, &payer_address).map_err(|e| banks_refusal(&tx).unwrap_or(e))?;
        let amount = Amount::sum(tx.body.outputs.iter().filter(|o| o.owner != payer_address).map(|o| o.amount_tiyn))?;
        let at_unix_ms = self.now_ms();
        let answer = bank.submit(Request::Signed(tx), key);
        let node = node_id.to_string();
        Ok(Staged::Submitted(Submitted {
            answer,
            node_id: node_id.to_string(),
            payees: payees.clone(),
            receipt: Box::new(move |platform, committed| {
                let bank = platform.bank(&node)?;
                let client_id = bank.service().read(|n| n.client_of(&payer_address).map(str::to_string));
                let client_id = client_id.expect("a transfer the bank committed spends its own client's tokens");
                Ok(Receipt {
                    tx_id: committed.tx_id,
                    purpose: Purpose::Payment,
                    amount_tiyn: amount,
                    from: Some(Party { bank: node, client_id, address: payer_address }),
                    to: payees.into_iter().next(),
                    at_unix_ms,
                    abs_posting: None,
                })
            }),
        }))
    }

    /// Is this transaction committed at the notary? (A read of its store for an old one.)
    pub fn is_committed(&self, tx_id: &TxId) -> Result<bool> {
        self.assembly.notary().is_committed(tx_id)
    }

    /// Transactions the notary committed since this process opened it (the consoles' live
    /// payments-per-second chart samples it).
    pub fn committed_transactions(&self) -> u64 {
        self.assembly.notary().committed_since_open()
    }

    /// The client accounts a client-signed transfer pays (its outputs' owners but the payer),
    /// in the order of its outputs: each must be a client's account (the network's rule).
    fn signed_payees(&self, tx: &Transaction, payer: &Address) -> Result<Vec<Party>> {
        let mut payees: Vec<Party> = Vec::new();
        for output in tx.body.outputs.iter().filter(|o| o.owner != *payer) {
            if !payees.iter().any(|p| p.address == output.owner) {
                payees.push(self.owner_party(&output.owner)?);
            }
        }
        Ok(payees)
    }

    /// A client of `node_id` as a party of a payment; `UNKNOWN_ACCOUNT` when it has none there.
    pub(crate) fn client_party(&self, node_id: &str, client_id: &str) -> Result<Party> {
        let address = self.bank(node_id)?.service().read(|node| node.account(client_id).map(|a| a.address))?;
        Ok(Party { bank: node_id.to_string(), client_id: client_id.to_string(), address })
    }

    /// Find the account a payment goes to at the ID center: by exactly one of phone, client
    /// id (at `bank` when named, else the first listed) and address. A node's own account is
    /// paid through conversion, not a transfer.
    pub(crate) fn find_payee(&self, payee: &Payee) -> Result<Party> {
        let given = [payee.phone.is_some(), payee.client_id.is_some(), payee.address.is_some()];
        ensure!(
            given.iter().filter(|g| **g).count() == 1,
            MalformedInput,
            "name the payee by exactly one of: phone, client_id (with bank), address"
        );
        if let Some(address) = &payee.address {
            return self.owner_party(address);
        }
        let bank = payee.bank.as_deref();
        let directory = self.assembly.directory();
        let found = if let Some(phone) = &payee.phone {
            let phone = normalize_phone(phone)?;
            let found = directory.read(|d| d.by_phone(&phone, bank).map(|l| (l.bank.clone(), l.client_id.clone())));
            found.ok_or_else(|| match bank {
                Some(bank) if directory.read(|d| d.by_phone(&phone, None).is_some()) => {
                    Error::new(ErrorCode::UnknownAccount, format!("phone {phone} has no digital account at '{bank}'"))
                }
                _ => Error::new(
                    ErrorCode::UnknownAccount,
                    format!("no digital account is registered with phone {phone}"),
                ),
            })?
        } else {
            let client_id = payee.client_id.as_deref().unwrap_or_default();
            check_iin_bin(client_id)?;
            let found = directory.read(|d| d.by_client(client_id, bank).map(|l| (l.bank.clone(), l.client_id.clone())));
            found.ok_or_else(|| {
                let at = match bank {
                    Some(bank) if directory.read(|d| d.by_client(client_id, None).is_some()) => format!(" at '{bank}'"),
                    _ => String::new(),
                };
                Error::new(
                    ErrorCode::UnknownAccount,
                    format!("client {} has no digital account{at}", mask_id(client_id)),
                )
            })?
        };
        let (bank, client_id) = found;
        ensure_client_account(&client_id)?;
        self.client_party(&bank, &client_id)
    }

    /// The client account an address names, as a payee.
    fn owner_party(&self, address: &Address) -> Result<Party> {
        let listed =
            self.assembly.directory().read(|d| d.by_address(address).map(|l| (l.bank.clone(), l.client_id.clone())));
        let Some((bank, client_id)) = listed else {
            bail!(UnknownAccount, "no digital account has address {address}");
        };
        ensure_client_account(&client_id)?;
        Ok(Party { bank, client_id, address: *address })
    }

    /// One registry line's recipient, or why it is not paid (the network's checks, in its order).
    fn registry_payee(&self, to: &Payee, amount: Amount, payer: &Address) -> Result<Party> {
        let party = self.find_payee(to)?;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let kind = self.bank(&party.bank)?.service().read(|node| node.account(&party.client_id).map(|a| a.kind))?;
        ensure!(kind == ClientKind::Individual, Forbidden, "registry lines pay individuals only");
        ensure!(party.address != *payer, MalformedInput, "the payer cannot pay itself");
        self.ensure_not_blocked(&party.bank)?;
        Ok(party)
    }

    /// A registry under a key that committed before: the lines checked again must pay what the
    /// first request paid (the payer's history line of that payment), or the report cannot be
    /// built again honestly.
    fn registry_paid_before(
        &self,
        node_id: &str,
        payer: &str,
        committed: Committed,
        results: Vec<RegistryLineResult>,
    ) -> Result<(Option<TxId>, Vec<RegistryLineResult>)> {
        let paid_now = Amount::sum(results.iter().filter(|r| r.paid).map(|r| r.amount_tiyn))?;
        let paid_then = self.bank(node_id)?.service().read(|node| {
            let history = node.history(payer)?;
            Ok::<_, Error>(history.iter().rev().find(|e| e.tx_id == committed.tx_id).map(|e| e.amount_tiyn))
        })?;
        if paid_then != Some(paid_now) {
            bail!(
                Conflict,
                "this idempotency key paid the registry with transaction {}, but its lines resolve differently now; \
                 its report cannot be rebuilt",
                committed.tx_id
            );
        }
        Ok((Some(committed.tx_id), results))
    }

    /// The receipt of a custodial payment the payer's bank committed: its time is the payer's
    /// history line's (the same for a retry).
    fn payment_receipt(
        &self,
        committed: Committed,
        purpose: Purpose,
        amount: Amount,
        payer: Party,
        payee: Party,
    ) -> Receipt {
        let at_unix_ms = self.applied_at(&payer.bank, &payer.client_id, &committed.tx_id);
        Receipt {
            tx_id: committed.tx_id,
            purpose,
            amount_tiyn: amount,
            from: Some(payer),
            to: Some(payee),
            at_unix_ms,
            abs_posting: None,
        }
    }

    /// Wait, at most [`ANSWER_WAIT`], until the banks of `payees` other than the payer's
    /// `node_id` have applied `tx_id` from its delivery, so that a receipt means what the
    /// network's meant: the payees hold the money (the one-process network applied both sides
    /// in one commit; the roles answer the payer when its bank applied its side). The payment
    /// is committed either way: past the wait the receipt is answered, and the delivery
    /// arrives later (it is sent until it is acknowledged).
    pub(crate) fn await_delivery<'a>(
        &self,
        node_id: &str,
        tx_id: &TxId,
        payees: impl IntoIterator<Item = ClientAt<'a>>,
    ) {
        let deadline = std::time::Instant::now() + ANSWER_WAIT;
        // Bounded by the payees' banks; each wait only for this transaction's delivery.
        for (payee_bank, payee_client) in other_banks(node_id, payees) {
            let Ok(bank) = self.bank(payee_bank) else { continue };
            if self.has_applied(payee_bank, payee_client, tx_id) {
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !bank.service().wait_applied(tx_id, left) {
                return;
            }
        }
    }

    /// [`Platform::await_delivery`] for a task: the same wait, on the payee banks' wake-ups
    /// for this transaction instead of a thread's.
    async fn await_delivery_async(&self, node_id: &str, tx_id: &TxId, payees: &[Party]) {
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        for (payee_bank, payee_client) in other_banks(node_id, payees.iter().map(party_at)) {
            let Ok(bank) = self.bank(payee_bank) else { continue };
            // The bank's memory of recent deliveries first: no lock of the bank's when it is there.
            let mut applied = std::pin::pin!(bank.service().applied(*tx_id));
            let ready = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(applied.as_mut(), cx).is_ready())
            });
            if ready.await {
                continue;
            }
            // Applied before the bank's memory of recent deliveries reaches back (or not yet).
            if self.has_applied(payee_bank, payee_client, tx_id) {
                continue;
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                return;
            }
        }
    }

    /// Merge a custodial client's smallest spendable tokens into one (issue 19): what a client
    /// whose balance is made of more than `TX_INPUTS_MAX` tokens does before it pays it whole.
    /// Its bank builds, signs and commits the transfer to itself; the answer says how many
    /// tokens the client may spend now. A repeated key gets the first answer.
    pub fn consolidate(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        _request: ConsolidationRequest,
    ) -> Result<Consolidation> {
        let key = checked_key(idem)?;
        let bank = self.bank(node_id)?;
        let first = key.as_ref().map(|k| bank.service().committed_answer(k)).transpose()?.flatten();
        let committed = match first {
            Some(committed) => committed,
            None => {
                self.ensure_not_blocked(node_id)?;
                wait(&bank.submit(Request::Consolidate { client_id: client_id.to_string() }, key))?
            }
        };
        let spendable = bank.service().read(|node| node.spendable_token_count(client_id))?;
        Ok(Consolidation {
            tx_id: committed.tx_id,
            spendable_tokens: spendable as u64,
            inputs_per_payment_max: dtenge_core::tx::TX_INPUTS_MAX as u64,
        })
    }

    /// A consolidation for a client that keeps its own key to sign and submit (issue 20): its
    /// smallest spendable tokens, at most `TX_INPUTS_MAX`, to one token of their sum on its
    /// own account, unsigned; nothing is reserved or changed.
    pub fn consolidation_offer(&self, node_id: &str, client_id: &str) -> Result<Transaction> {
        let bank = self.bank(node_id)?;
        let issuer = bank.service().issuer();
        bank.service().read(|node| node.consolidation_offer(client_id, issuer, 0))
    }

    /// Has `client_id`'s bank applied `tx_id` to its account (its history line)?
    ///
    /// The bank's memory holds the line as soon as the delivery is applied, before its commit
    /// is durable, and a history is read from the store: so a line found is waited for until
    /// it is durable ([`dtenge_bank::BankService::settle`]), and a client asking for its history
    /// next finds it there (CI found the race in scenario `history_names`).
    pub(crate) fn has_applied(&self, node_id: &str, client_id: &str, tx_id: &TxId) -> bool {
        let Ok(bank) = self.bank(node_id) else { return false };
        let in_memory = bank
            .service()
            .read(|node| node.history(client_id).is_ok_and(|history| history.iter().rev().any(|e| e.tx_id == *tx_id)));
        if in_memory {
            bank.service().settle();
        }
        in_memory
    }

    /// When `client_id`'s bank applied `tx_id` (its history line), or now when the line is
    /// gone from the history kept.
    pub(crate) fn applied_at(&self, node_id: &str, client_id: &str, tx_id: &TxId) -> u64 {
        let at =
            self.bank(node_id).ok().and_then(|bank| bank.service().read(|node| applied_at(node, client_id, tx_id)));
        at.unwrap_or_else(|| self.now_ms())
    }
}

/// When `tx_id` was applied to `client_id`'s account, as its history has it: a receipt asked
/// again under its key shows the same time. `None` when the history no longer holds it.
pub fn applied_at(node: &dtenge_node::NodeState, client_id: &str, tx_id: &TxId) -> Option<u64> {
    node.history(client_id).ok()?.iter().rev().find(|e| e.tx_id == *tx_id).map(|e| e.at_unix_ms)
}

/// One payee per bank other than the payer's `node_id`: a bank applies a delivered
/// transaction whole, in one commit.
fn other_banks<'a>(node_id: &str, payees: impl IntoIterator<Item = ClientAt<'a>>) -> Vec<ClientAt<'a>> {
    let mut waiting: Vec<ClientAt<'a>> = Vec::new();
    for (bank, client) in payees {
        if bank != node_id && !waiting.iter().any(|(w, _)| *w == bank) {
            waiting.push((bank, client));
        }
    }
    waiting
}

/// A reference has at most [`REFERENCE_LEN_MAX`] characters.
pub fn check_reference(reference: Option<&str>) -> Result<()> {
    if let Some(text) = reference {
        ensure!(
            text.chars().count() <= REFERENCE_LEN_MAX,
            MalformedInput,
            "a reference has at most {REFERENCE_LEN_MAX} characters"
        );
    }
    Ok(())
}

/// A payee must be a client's account: a node's own account is paid through conversion.
fn ensure_client_account(client_id: &str) -> Result<()> {
    ensure!(client_id != OWN_ACCOUNT, Forbidden, "pay a node's own account through conversion, not a transfer");
    Ok(())
}

/// An IIN/BIN with its middle hidden.
pub(crate) fn mask_id(id: &str) -> String {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}******{}", &id[..4], &id[10..])
    } else {
        "****".into()
    }
}

fn line_result(index: usize, amount: Amount, checked: Result<Party>) -> RegistryLineResult {
    let (recipient, error) = match checked {
        Ok(party) => (Some(party), None),
        Err(e) => (None, Some(e)),
    };
    RegistryLineResult {
        line: index + 1,
        paid: error.is_none(),
        amount_tiyn: amount,
        recipient,
        error_code: error.as_ref().map(|e| e.code),
        error: error.map(|e| e.message),
    }
}

/// The report of a registry: its payment (if any line was paid) and every line's result.
fn registry_report((tx_id, results): (Option<TxId>, Vec<RegistryLineResult>)) -> Result<RegistryReport> {
    let lines_paid = results.iter().filter(|r| r.paid).count();
    assert_eq!(tx_id.is_some(), lines_paid > 0, "a registry is paid exactly when a line passed");
    Ok(RegistryReport {
        tx_id,
        lines_total: results.len(),
        lines_paid,
        lines_rejected: results.len() - lines_paid,
        amount_paid_tiyn: Amount::sum(results.iter().filter(|r| r.paid).map(|r| r.amount_tiyn))?,
        results,
    })
}

/// A payment handed to the payer's bank, or answered already: completed by a thread
/// ([`Staged::complete`]) or awaited by the REST gateway's task ([`Staged::complete_async`],
/// which holds no thread while the roles work).
pub enum Staged<T> {
    Done(T),
    Submitted(Submitted<T>),
}

/// What a payment handed to its bank still needs: the bank's answer, the payees' banks
/// applying it (so that a receipt means the payees hold the money), and its receipt.
pub struct Submitted<T> {
    answer: dtenge_bank::Answer,
    node_id: String,
    payees: Vec<Party>,
    #[allow(clippy::type_complexity)]
    receipt: Box<dyn FnOnce(&Platform, Committed) -> Result<T> + Send>,
}

impl<T> Staged<T> {
    /// Wait on this thread for the bank's answer and the payees' banks, at most
    /// [`ANSWER_WAIT`] each.
    pub fn complete(self, platform: &Platform) -> Result<T> {
        let submitted = match self {
            Staged::Done(value) => return Ok(value),
            Staged::Submitted(submitted) => submitted,
        };
        let committed = wait(&submitted.answer)?;
        platform.await_delivery(&submitted.node_id, &committed.tx_id, submitted.payees.iter().map(party_at));
        (submitted.receipt)(platform, committed)
    }

    /// [`Staged::complete`] for a task.
    pub async fn complete_async(self, platform: &Platform) -> Result<T> {
        let submitted = match self {
            Staged::Done(value) => return Ok(value),
            Staged::Submitted(submitted) => submitted,
        };
        let committed = match tokio::time::timeout(ANSWER_WAIT, submitted.answer).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(unanswered(false)),
            Err(_) => return Err(unanswered(true)),
        };
        platform.await_delivery_async(&submitted.node_id, &committed.tx_id, &submitted.payees).await;
        (submitted.receipt)(platform, committed)
    }
}

/// A party as its bank and client id, what a wait for its delivery needs.
pub(crate) fn party_at(party: &Party) -> ClientAt<'_> {
    (party.bank.as_str(), party.client_id.as_str())
}
