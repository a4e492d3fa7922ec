//! Conversions between bank money and DT.
//!
//! - Bank <-> NBK (sub-scenarios 3 and 13): the ABS moves bank money between the bank's
//!   correspondent account and the DT liability account, and the NBK issues or redeems DT in
//!   the same durable commit. Issue happens only after the ABS posting is planned and funded;
//!   both commit together or neither does. These run on operational days only.
//! - Client <-> bank (4, 5, 11, 12): the client's bank money at its bank is debited or
//!   credited and DT moves between the client and the bank's own account. These run 24/7 from
//!   the bank's DT liquidity.

use crate::types::{AmountRequest, NbkOperation, Party, Receipt};
use crate::{Idem, Network, NBK_OPS_TABLE};
use dtenge_abs::{correspondent, Posting, PostingKind, DT_LIABILITY, RTGS_EXTERNAL};
use dtenge_core::calendar::Date;
use dtenge_core::money::Amount;
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::{Purpose, OWN_ACCOUNT};
use dtenge_store::WriteBatch;

impl Network {
    /// Client bank money -> DT (sub-scenarios 4 and 5).
    pub fn convert_to_dt(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        request: AmountRequest,
    ) -> Result<Receipt> {
        self.client_conversion(idem, node_id, client_id, request.amount_tiyn, Purpose::ConversionToDt)
    }

    /// Client DT -> bank money (sub-scenarios 11 and 12).
    pub fn convert_from_dt(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        request: AmountRequest,
    ) -> Result<Receipt> {
        self.client_conversion(idem, node_id, client_id, request.amount_tiyn, Purpose::ConversionFromDt)
    }

    /// Both client conversions: bank money and DT move in opposite directions between the
    /// client and the bank's own account, in one commit.
    fn client_conversion(
        &self,
        idem: Option<&Idem>,
        node_id: &str,
        client_id: &str,
        amount: Amount,
        purpose: Purpose,
    ) -> Result<Receipt> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        ensure!(client_id != OWN_ACCOUNT, Forbidden, "a node converts with the NBK, not with itself");
        let to_dt = purpose == Purpose::ConversionToDt;
        let _fiat = slot.fiat_lock.lock();
        let (client, _) = self.party(node_id, client_id)?;
        let (bank, _) = self.party(node_id, OWN_ACCOUNT)?;
        let (tx, fiat) = {
            let mut state = slot.state.lock();
            if to_dt {
                let fiat = state.fiat_after(client_id, Amount::ZERO, amount)?;
                let tx = state
                    .prepare_payment(OWN_ACCOUNT, &[(client.address, amount)], self.issuer(), self.nonce())
                    .map_err(|e| liquidity(e, &state.meta().name))?;
                (tx, fiat)
            } else {
                let fiat = state.fiat_after(client_id, amount, Amount::ZERO)?;
                (state.prepare_payment(client_id, &[(bank.address, amount)], self.issuer(), self.nonce())?, fiat)
            }
        };
        let (from, to) = if to_dt { (bank, client) } else { (client, bank) };
        let receipt = receipt(&tx, purpose, amount, Some(from), Some(to), self.now_ms(), None);
        let fiat = [(node_id.to_string(), client_id.to_string(), fiat)];
        self.execute(idem, &tx, purpose, None, &fiat, WriteBatch::new(), &receipt)?;
        Ok(receipt)
    }

    /// Bank -> NBK conversion: emission of DT to the node against its correspondent account
    /// (sub-scenario 3). Operational days only.
    pub fn emission(&self, idem: Option<&Idem>, node_id: &str, request: AmountRequest) -> Result<Receipt> {
        let _gate = self.gate_shared();
        self.active_participant(node_id)?;
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let now = self.now_ms();
        self.ensure_operational_day(now)?;
        let (bank, _) = self.party(node_id, OWN_ACCOUNT)?;
        let mut tx = Transaction::new(TxBody {
            command: Command::Issue,
            inputs: Vec::new(),
            outputs: vec![Output::standard(amount, bank.address, self.issuer())],
            nonce: self.nonce(),
        });
        tx.attest(&self.nbk_key()?);

        let mut abs = self.abs.lock();
        let posting =
            abs.plan(PostingKind::Emission, &correspondent(node_id), DT_LIABILITY, amount, &tx.id().to_string(), now)?;
        self.commit_nbk_conversion(idem, &mut abs, &tx, posting, node_id, bank, now)
    }

    /// NBK -> bank conversion: redemption of the node's DT, credited to its correspondent
    /// account (sub-scenario 13). Operational days only.
    pub fn redemption(&self, idem: Option<&Idem>, node_id: &str, request: AmountRequest) -> Result<Receipt> {
        let _gate = self.gate_shared();
        let slot = self.active_participant(node_id)?;
        let amount = request.amount_tiyn;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        let now = self.now_ms();
        self.ensure_operational_day(now)?;
        let (bank, _) = self.party(node_id, OWN_ACCOUNT)?;
        let nbk_key = self.nbk_key()?;

        let mut abs = self.abs.lock();
        let mut tx = {
            let mut state = slot.state.lock();
            state
                .prepare_redemption(amount, self.issuer(), self.nonce())
                .map_err(|e| liquidity(e, &state.meta().name))?
        };
        tx.attest(&nbk_key);
        let planned =
            abs.plan(PostingKind::Redemption, DT_LIABILITY, &correspondent(node_id), amount, &tx.id().to_string(), now);
        let posting = match planned {
            Ok(p) => p,
            Err(e) => {
                slot.state.lock().release(&tx);
                return Err(e);
            }
        };
        self.commit_nbk_conversion(idem, &mut abs, &tx, posting, node_id, bank, now)
    }

    /// The common end of emission and redemption: the ABS posting and the NBK registry entry
    /// commit with the DT transaction, then both are applied. The caller holds the ABS lock
    /// from planning the posting until this returns.
    #[allow(clippy::too_many_arguments)]
    fn commit_nbk_conversion(
        &self,
        idem: Option<&Idem>,
        abs: &mut dtenge_abs::Abs,
        tx: &Transaction,
        posting: Posting,
        node_id: &str,
        bank: Party,
        now: u64,
    ) -> Result<Receipt> {
        let (purpose, from, to) = match posting.kind {
            PostingKind::Emission => (Purpose::Emission, None, Some(bank)),
            _ => (Purpose::Redemption, Some(bank), None),
        };
        let amount = posting.amount_tiyn;
        let mut ops = self.nbk_ops.lock();
        let operation = nbk_operation(ops.len() as u64, purpose, node_id, amount, tx, &posting, now);
        let mut extra = WriteBatch::new();
        abs.writes(&posting, &mut extra).inspect_err(|_| self.release(tx))?;
        extra.put_value(NBK_OPS_TABLE, operation.seq.to_be_bytes(), &operation).inspect_err(|_| self.release(tx))?;
        let receipt = receipt(tx, purpose, amount, from, to, now, Some(posting.clone()));
        self.execute(idem, tx, purpose, None, &[], extra, &receipt)?;
        abs.apply(&posting);
        ops.push(operation);
        Ok(receipt)
    }

    /// Money arriving on a node's correspondent account from outside the DT platform (an RTGS
    /// payment, refinancing): how a bank gets the bank money it converts to DT.
    pub fn credit_correspondent(&self, idem: Option<&Idem>, node_id: &str, request: AmountRequest) -> Result<Posting> {
        let _gate = self.gate_shared();
        self.active_participant(node_id)?;
        let now = self.now_ms();
        let mut abs = self.abs.lock();
        let posting = abs.plan(
            PostingKind::ExternalCredit,
            RTGS_EXTERNAL,
            &correspondent(node_id),
            request.amount_tiyn,
            "rtgs",
            now,
        )?;
        let mut batch = WriteBatch::new();
        abs.writes(&posting, &mut batch)?;
        self.commit(idem, batch, &posting)?;
        abs.apply(&posting);
        Ok(posting)
    }

    /// ABS balances (tiyn; the external account may be negative).
    pub fn abs_balances(&self) -> std::collections::BTreeMap<String, i64> {
        self.abs.lock().balances().clone()
    }

    /// Bank <-> NBK conversions move money in the RTGS, which works on operational days.
    /// On a holiday they are refused with `NON_WORKING_DAY` and the next working day; nothing
    /// is queued (the bank resubmits, so no request executes on a day nobody expected).
    fn ensure_operational_day(&self, now_ms: u64) -> Result<()> {
        let today = Date::astana_of_unix_ms(now_ms);
        let calendar = self.calendar.read();
        if calendar.is_working_day(today) {
            return Ok(());
        }
        let next =
            calendar.next_working_day(today).map(|d| d.to_string()).unwrap_or_else(|| "none within a year".into());
        Err(Error::new(
            ErrorCode::NonWorkingDay,
            format!("{today} is not an operational day; bank <-> NBK conversions resume on {next}"),
        ))
    }
}

fn liquidity(e: Error, bank: &str) -> Error {
    if e.code == ErrorCode::InsufficientFunds {
        Error::new(
            ErrorCode::InsufficientFunds,
            format!("{bank} lacks DT liquidity: {}; convert with the NBK first", e.message),
        )
    } else {
        e
    }
}

pub(crate) fn receipt(
    tx: &Transaction,
    purpose: Purpose,
    amount: Amount,
    from: Option<Party>,
    to: Option<Party>,
    at_unix_ms: u64,
    abs_posting: Option<Posting>,
) -> Receipt {
    Receipt { tx_id: tx.id(), purpose, amount_tiyn: amount, from, to, at_unix_ms, abs_posting }
}

fn nbk_operation(
    seq: u64,
    kind: Purpose,
    node: &str,
    amount: Amount,
    tx: &Transaction,
    posting: &Posting,
    at: u64,
) -> NbkOperation {
    NbkOperation {
        seq,
        kind,
        node: node.to_string(),
        amount_tiyn: amount,
        tx_id: tx.id(),
        abs_seq: posting.seq,
        at_unix_ms: at,
    }
}
