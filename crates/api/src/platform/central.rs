//! Conversions between bank money and DT.
//!
//! - Client <-> bank (sub-scenarios 4, 5, 11, 12): the client's bank and its own DT; the
//!   client's bank money moves in the same commit as the certified payment (the bank's
//!   `Request::Convert`). These run 24/7 from the bank's DT liquidity.
//! - Bank <-> NBK (sub-scenarios 3 and 13): central issues DT against the bank's
//!   correspondent account, and takes the bank's DT back (the bank's redemption), each posted
//!   in the ABS with its certificate. These run on operational days only.
//!
//! Each answer is a receipt built from the role's first answer, so a request repeated under
//! its idempotency key gets the same receipt.

use super::Idem;
use super::{checked_key, wait, Platform, ANSWER_WAIT};
use crate::types::{AmountRequest, Receipt};
use dtenge_abs::Posting;
use dtenge_bank::{Committed, Conversion, IdemKey, Request};
use dtenge_central::{EntryKind, RegistryEntry};
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_node::{Purpose, OWN_ACCOUNT};
use std::collections::BTreeMap;

impl Platform {
    /// Client bank money -> DT (sub-scenarios 4 and 5).
    pub fn convert_to_dt(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        request: AmountRequest,
    ) -> Result<Receipt> {
        self.client_conversion(idem, node_id, client_id, request.amount_tiyn, Conversion::ToDt)
    }

    /// Client DT -> bank money (sub-scenarios 11 and 12).
    pub fn convert_from_dt(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        request: AmountRequest,
    ) -> Result<Receipt> {
        self.client_conversion(idem, node_id, client_id, request.amount_tiyn, Conversion::FromDt)
    }

    /// Both client conversions: DT between the client and the bank's own account, bank money
    /// the other way, in one commit at the bank.
    fn client_conversion(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        amount: Amount,
        direction: Conversion,
    ) -> Result<Receipt> {
        let key = checked_key(idem)?;
        let bank = self.bank(node_id)?;
        let first = key.as_ref().map(|k| bank.service().committed_answer(k)).transpose()?.flatten();
        if first.is_none() {
            self.ensure_not_blocked(node_id)?;
            ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
            ensure!(client_id != OWN_ACCOUNT, Forbidden, "a node converts with the NBK, not with itself");
        }
        let client = self.client_party(node_id, client_id)?;
        let own = self.client_party(node_id, OWN_ACCOUNT)?;
        let committed = match first {
            Some(committed) => committed,
            None => {
                let convert = Request::Convert { client_id: client_id.to_string(), direction, amount };
                let name = bank.service().read(|node| node.meta().name.clone());
                wait(&bank.submit(convert, key)).map_err(|e| liquidity(e, false, &name))?
            }
        };
        let (purpose, from, to) = match direction {
            Conversion::ToDt => (Purpose::ConversionToDt, own, client),
            Conversion::FromDt => (Purpose::ConversionFromDt, client, own),
        };
        Ok(Receipt {
            tx_id: committed.tx_id,
            purpose,
            amount_tiyn: amount,
            at_unix_ms: self.applied_at(node_id, client_id, &committed.tx_id),
            from: Some(from),
            to: Some(to),
            abs_posting: None,
        })
    }

    /// Bank -> NBK conversion: emission of DT to the node's own account against its
    /// correspondent account (sub-scenario 3). Operational days only. Answered once the bank
    /// holds the DT.
    pub fn emission(&self, idem: Option<&Idem>, node_id: &str, request: AmountRequest) -> Result<Receipt> {
        let key = central_key(idem)?;
        self.active_bank(node_id)?;
        let own = self.client_party(node_id, OWN_ACCOUNT)?;
        let central = self.assembly.central();
        let answer = central.emit(node_id, request.amount_tiyn, key, self.now_ms());
        let emission = match answer.recv_timeout(ANSWER_WAIT) {
            Ok(result) => result?,
            Err(_) => bail!(
                RequestInProgress,
                "the emission was not answered in time; ask again with the same idempotency key"
            ),
        };
        assert_eq!(
            (emission.kind, emission.bank.as_str()),
            (EntryKind::Emission, node_id),
            "central answers its emission"
        );
        // Certified and posted; the bank applies it from central's delivery.
        let deadline = std::time::Instant::now() + ANSWER_WAIT;
        while !self.has_applied(node_id, OWN_ACCOUNT, &emission.tx_id) {
            ensure!(
                std::time::Instant::now() < deadline,
                RequestInProgress,
                "the bank has not applied the emission yet; ask again with the same idempotency key"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.nbk_receipt(&emission, None, Some(own))
    }

    /// NBK -> bank conversion: redemption of the node's own DT, credited to its correspondent
    /// account (sub-scenario 13). Operational days only.
    pub fn redemption(&self, idem: Option<&Idem>, node_id: &str, request: AmountRequest) -> Result<Receipt> {
        let key: Option<IdemKey> = checked_key(idem)?;
        let bank = self.bank(node_id)?;
        let own = self.client_party(node_id, OWN_ACCOUNT)?;
        let committed = match key.as_ref().map(|k| bank.service().committed_answer(k)).transpose()?.flatten() {
            Some(committed) => committed,
            None => {
                self.ensure_not_blocked(node_id)?;
                ensure!(!request.amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
                // Asked here first, as the network did: central would refuse it for good.
                self.assembly.central().ensure_operational_day(self.now_ms())?;
                let name = bank.service().read(|node| node.meta().name.clone());
                let answer = bank.service().redeem(request.amount_tiyn, key, self.now_ms());
                wait(&answer).map_err(|e| liquidity(e, true, &name))?
            }
        };
        let entry = self.registry_entry(&committed, EntryKind::Redemption)?;
        self.nbk_receipt(&entry, Some(own), None)
    }

    /// Money arriving on a node's correspondent account from outside the DT platform (an RTGS
    /// payment, refinancing): how a bank gets the bank money it converts to DT.
    pub fn credit_correspondent(&self, idem: Option<&Idem>, node_id: &str, request: AmountRequest) -> Result<Posting> {
        let key = central_key(idem)?;
        self.active_bank(node_id)?;
        self.assembly.central().credit_correspondent_once(node_id, request.amount_tiyn, key, self.now_ms())
    }

    /// ABS balances (tiyn; the external account may be negative).
    pub fn abs_balances(&self) -> BTreeMap<String, i64> {
        self.assembly.central().abs_balances()
    }

    /// Central's registry entry for a committed emission or redemption.
    fn registry_entry(&self, committed: &Committed, kind: EntryKind) -> Result<RegistryEntry> {
        let entry = self.assembly.central().registry().into_iter().rev().find(|e| e.tx_id == committed.tx_id);
        // The bank answers a redemption once central has posted it: its entry is there.
        entry.filter(|e| e.kind == kind).ok_or_else(|| {
            Error::internal(format!("transaction {} is not a {kind:?} of the NBK registry", committed.tx_id))
        })
    }

    /// The receipt of an emission or redemption: its ABS posting from central's ledger.
    fn nbk_receipt(&self, entry: &RegistryEntry, from: Option<Party>, to: Option<Party>) -> Result<Receipt> {
        let posting = self.assembly.central().posting(entry.abs_seq)?;
        let posting = posting.ok_or_else(|| Error::internal(format!("no ABS posting {}", entry.abs_seq)))?;
        let purpose = match entry.kind {
            EntryKind::Emission => Purpose::Emission,
            EntryKind::Redemption => Purpose::Redemption,
        };
        Ok(Receipt {
            tx_id: entry.tx_id,
            purpose,
            amount_tiyn: entry.amount,
            from,
            to,
            at_unix_ms: entry.at_ms,
            abs_posting: Some(posting),
        })
    }
}

/// The gateway's idempotency key as central takes it, checked as the banks check theirs
/// (central keeps what it is given).
fn central_key(idem: Option<&Idem>) -> Result<Option<dtenge_central::IdemKey>> {
    Ok(checked_key(idem)?.map(|k| dtenge_central::IdemKey { key: k.key, fingerprint: k.fingerprint }))
}

/// The bank's words when its own DT cannot pay a client's conversion to DT.
const OWN_DT_CANNOT_PAY: &str = "the bank's own DT cannot pay this conversion: ";

/// The network's words when the bank's own DT cannot pay: a conversion to DT (the bank says
/// so) or a redemption (`always`: every `INSUFFICIENT_FUNDS` is the bank's own).
pub fn liquidity(e: Error, always: bool, bank: &str) -> Error {
    if e.code != ErrorCode::InsufficientFunds {
        return e;
    }
    let why = match e.message.strip_prefix(OWN_DT_CANNOT_PAY) {
        Some(why) => why.to_string(),
        None if always => e.message.clone(),
        None => return e,
    };
    Error::new(ErrorCode::InsufficientFunds, format!("{bank} lacks DT liquidity: {why}; convert with the NBK first"))
}
