//! Registry distributions (SPEC sub-scenario 7): a legal entity, a government agency or the
//! bank itself pays many individuals at once (salaries, benefits), each line naming its
//! recipient by phone or by client id. Every line is checked on its own; the lines that pass
//! are paid in one transaction (all or none of them: a payer who cannot cover them pays
//! nothing), and the others are reported with their reasons and not paid.

use crate::{Answer, BankService, IdemKey, Label, Request, Who};
use dtenge_core::crypto::Address;
use dtenge_core::tx::TX_OUTPUTS_MAX;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_node::ClientKind;
use dtenge_wire::AccountKind;

/// Most lines of one registry (its payment has one output per line, and the payer's change).
pub const REGISTRY_LINES_MAX: usize = 16_000;
const _: () = assert!(REGISTRY_LINES_MAX < TX_OUTPUTS_MAX);

/// One line: whom to pay (by phone, or by client id, at `bank` when named) and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryLine {
    pub phone: Option<String>,
    pub client_id: Option<String>,
    pub bank: Option<String>,
    pub amount: Amount,
}

/// A registry taken: each line's recipient or its reason, and the answer of the one payment
/// of the lines that passed (`None` when no line did: nothing is paid).
pub struct Registry {
    pub lines: Vec<Result<Address>>,
    pub answer: Option<Answer>,
}

impl BankService {
    /// Check every line of `lines` and pay those that pass from `payer`'s account, in one
    /// payment under `idem`.
    pub fn distribute(&self, payer: &str, lines: &[RegistryLine], idem: Option<IdemKey>) -> Result<Registry> {
        self.distribute_referenced(payer, lines, None, idem)
    }

    /// [`BankService::distribute`] with the payer's reference of the registry ("payroll
    /// 2026-11"), written in the history with the payment (at most
    /// [`crate::REFERENCE_CHARS_MAX`] characters).
    pub fn distribute_referenced(
        &self,
        payer: &str,
        lines: &[RegistryLine],
        reference: Option<String>,
        idem: Option<IdemKey>,
    ) -> Result<Registry> {
        let label = Label { purpose: dtenge_node::Purpose::RegistryDistribution, reference };
        label.check()?;
        if lines.is_empty() {
            return Err(Error::malformed("a registry has at least one line"));
        }
        if lines.len() > REGISTRY_LINES_MAX {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("a registry has at most {REGISTRY_LINES_MAX} lines; this one has {}; split it", lines.len()),
            ));
        }
        let payer_address = self.read(|node| {
            let account = node.account(payer)?;
            match account.kind {
                ClientKind::LegalEntity | ClientKind::GovernmentAgency | ClientKind::Institution => Ok(account.address),
                ClientKind::Individual => Err(Error::new(
                    ErrorCode::Forbidden,
                    "registry distribution is for legal entities, government agencies and the bank itself",
                )),
            }
        })?;
        let checked: Vec<Result<Address>> = lines.iter().map(|line| self.check_line(line, &payer_address)).collect();
        let payees: Vec<(Address, Amount)> = checked
            .iter()
            .zip(lines)
            .filter_map(|(to, line)| to.as_ref().ok().map(|address| (*address, line.amount)))
            .collect();
        let answer = (!payees.is_empty())
            .then(|| self.submit_labelled(Request::Pay { client_id: payer.to_string(), payees }, label, idem));
        Ok(Registry { lines: checked, answer })
    }

    /// One line's recipient, or why it is not paid.
    fn check_line(&self, line: &RegistryLine, payer: &Address) -> Result<Address> {
        if line.amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        let bank = line.bank.as_deref();
        let found = match (&line.phone, &line.client_id) {
            (Some(phone), None) => self.find(Who::Phone(&dtenge_node::ids::normalize_phone(phone)?), bank)?,
            (None, Some(client)) => self.find(Who::Client(client), bank)?,
            _ => return Err(Error::malformed("a line names its recipient by phone or by client id, not both")),
        };
        if found.kind != AccountKind::Individual {
            return Err(Error::new(ErrorCode::Forbidden, "registry lines pay individuals only"));
        }
        if found.address == *payer {
            return Err(Error::malformed("the payer cannot pay itself"));
        }
        if self.anchors.read().blocked.contains(&found.bank) {
            return Err(Error::new(
                ErrorCode::BankBlocked,
                format!("the payee's bank '{}' is blocked by the NBK operator", found.bank),
            ));
        }
        Ok(found.address)
    }
}
