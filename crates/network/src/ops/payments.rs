//! Payments: transfers by phone, id or address (sub-scenario 8) and registry distribution (7).

use crate::types::{Payee, Receipt, RegistryLineResult, RegistryReport, RegistryRequest, TransferRequest};
use crate::{Idem, Network};
use dtenge_core::money::Amount;
use dtenge_core::token::Input;
use dtenge_core::tx::TX_OUTPUTS_MAX;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::{ClientKind, Purpose};
use dtenge_store::WriteBatch;

/// Most lines one registry may have. One registry is paid by one transaction, so the bound
/// sits below the transaction's output limit (the payer's change takes one more output).
pub const REGISTRY_LINES_MAX: usize = 16_000;
const _: () = assert!(REGISTRY_LINES_MAX < TX_OUTPUTS_MAX);
/// Longest reference text.
pub const REFERENCE_LEN_MAX: usize = 140;

impl Network {
    /// Pay from a client of `node_id` to a payee at any bank.
    pub fn transfer(&self, idem: Option<&Idem>, node_id: &str, request: TransferRequest) -> Result<Receipt> {
        let _gate = self.gate_shared();
        check_reference(request.reference.as_deref())?;
        let purpose = if request.to.phone.is_some() { Purpose::PhoneTransfer } else { Purpose::Payment };
        self.pay(idem, node_id, &request.from, &request.to, request.amount_tiyn, purpose, request.reference.as_deref())
    }

    /// The common path of every client payment. The caller holds the gate.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pay(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        from: &str,
        to: &Payee,
        amount: Amount,
        purpose: Purpose,
        reference: Option<&str>,
    ) -> Result<Receipt> {
        let slot = self.active_participant(node_id)?;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        ensure!(
            from != dtenge_node::OWN_ACCOUNT,
            Forbidden,
            "a node's own DT leaves it through conversion or redemption, not a transfer"
        );
        let (payee, _) = self.resolve_payee(to)?;
        self.ensure_not_blocked(&payee.bank)?;
        let (payer, _) = self.party(node_id, from)?;
        ensure!(payer.address != payee.address, MalformedInput, "payer and payee are the same account");
        let tx = slot.state.lock().prepare_payment(from, &[(payee.address, amount)], self.issuer(), self.nonce())?;
        let receipt = Receipt {
            tx_id: tx.id(),
            purpose,
            amount_tiyn: amount,
            from: Some(payer),
            to: Some(payee),
            at_unix_ms: self.now_ms(),
            abs_posting: None,
        };
        self.execute(idem, &tx, purpose, reference, &[], WriteBatch::new(), &receipt)?;
        Ok(receipt)
    }

    /// The tokens a client may spend, with preimages (for clients that sign themselves).
    pub fn spendable_tokens(&self, node_id: &str, client_id: &str) -> Result<Vec<Input>> {
        self.slot(node_id)?.state.lock().spendable_inputs(client_id)
    }

    /// Every token a client owns and may present, programmed ones included, with preimages.
    pub fn all_tokens(&self, node_id: &str, client_id: &str) -> Result<Vec<Input>> {
        self.slot(node_id)?.state.lock().all_inputs(client_id)
    }

    /// Registry distribution: a legal entity (or agency) pays many individuals in one request.
    ///
    /// Each line is checked on its own (recipient known and an individual, bank not blocked,
    /// amount positive); bad lines are reported and skipped. Every good line is then paid in
    /// **one** transaction: all good lines are paid or none is (if the payer cannot cover
    /// them, the request fails with `INSUFFICIENT_FUNDS` and nothing moves).
    pub fn distribute_registry(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        request: RegistryRequest,
    ) -> Result<RegistryReport> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        check_reference(request.reference.as_deref())?;
        ensure!(!request.lines.is_empty(), MalformedInput, "a registry has at least one line");
        ensure!(
            request.lines.len() <= REGISTRY_LINES_MAX,
            LimitExceeded,
            "a registry has at most {REGISTRY_LINES_MAX} lines; this one has {}; split it",
            request.lines.len()
        );
        let (payer, payer_kind) = self.party(node_id, &request.from)?;
        // A bank or the Treasury may also pay out from its own DT (`from: "own"`), e.g. to seed
        // its clients' wallets.
        ensure!(
            matches!(payer_kind, ClientKind::LegalEntity | ClientKind::GovernmentAgency | ClientKind::Institution),
            Forbidden,
            "registry distribution is for legal entities, government agencies and the node itself"
        );

        let mut results = Vec::with_capacity(request.lines.len());
        let mut payees = Vec::with_capacity(request.lines.len());
        for (i, line) in request.lines.iter().enumerate() {
            let to = Payee {
                phone: line.phone.clone(),
                client_id: line.client_id.clone(),
                bank: line.bank.clone(),
                address: None,
            };
            let checked = self.resolve_payee(&to).and_then(|(party, kind)| {
                ensure!(!line.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
                ensure!(kind == ClientKind::Individual, Forbidden, "registry lines pay individuals only");
                ensure!(party.address != payer.address, MalformedInput, "the payer cannot pay itself");
                self.ensure_not_blocked(&party.bank)?;
                Ok(party)
            });
            match checked {
                Ok(party) => {
                    payees.push((party.address, line.amount_tiyn));
                    results.push(line_result(i, line.amount_tiyn, Some(party), None));
                }
                Err(e) => results.push(line_result(i, line.amount_tiyn, None, Some(e))),
            }
        }
        let lines_paid = payees.len();
        let amount_paid = Amount::sum(payees.iter().map(|(_, a)| *a))?;
        let mut report = RegistryReport {
            tx_id: None,
            lines_total: request.lines.len(),
            lines_paid,
            lines_rejected: request.lines.len() - lines_paid,
            amount_paid_tiyn: amount_paid,
            results,
        };
        if payees.is_empty() {
            // Nothing to pay, but the answer is remembered like any other.
            self.commit(idem, WriteBatch::new(), &report)?;
            return Ok(report);
        }
        let tx = slot.state.lock().prepare_payment(&request.from, &payees, self.issuer(), self.nonce())?;
        report.tx_id = Some(tx.id());
        self.execute(
            idem,
            &tx,
            Purpose::RegistryDistribution,
            request.reference.as_deref(),
            &[],
            WriteBatch::new(),
            &report,
        )?;
        Ok(report)
    }
}

fn line_result(
    index: usize,
    amount: Amount,
    recipient: Option<crate::types::Party>,
    error: Option<Error>,
) -> RegistryLineResult {
    RegistryLineResult {
        line: index + 1,
        paid: error.is_none(),
        amount_tiyn: amount,
        recipient,
        error_code: error.as_ref().map(|e| e.code),
        error: error.map(|e| e.message),
    }
}

pub(crate) fn check_reference(reference: Option<&str>) -> Result<()> {
    if let Some(text) = reference {
        if text.chars().count() > REFERENCE_LEN_MAX {
            return Err(Error::new(
                ErrorCode::MalformedInput,
                format!("a reference has at most {REFERENCE_LEN_MAX} characters"),
            ));
        }
    }
    Ok(())
}
