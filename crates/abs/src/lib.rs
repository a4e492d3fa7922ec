//! The ABS: the central bank's RTGS, reduced to what the Digital Tenge needs.
//!
//! A double-entry ledger. Every posting moves an amount from one account to another, so the sum
//! of all balances is always zero. Balances are credit balances (what the NBK owes the holder):
//! a bank's correspondent account, the Treasury's single account, and the **DT liability**
//! account, whose balance must equal the DT in circulation at every moment. The `rtgs_external`
//! account stands for money entering or leaving the RTGS from outside the DT platform (other
//! RTGS payments, refinancing) and is the only account allowed below zero.
//!
//! Pure state machine: callers persist [`Abs::post`]'s writes and only then publish.

use dtenge_core::money::Amount;
use dtenge_core::{bail, ensure, Error, ErrorCode, Result};
use dtenge_store::{Table, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const BALANCES_TABLE: Table = Table("abs_balances");
pub const JOURNAL_TABLE: Table = Table("abs_journal");
pub const TABLES: [Table; 2] = [BALANCES_TABLE, JOURNAL_TABLE];

/// The DT liability account.
pub const DT_LIABILITY: &str = "dt_liability";
/// Money entering or leaving the RTGS from outside.
pub const RTGS_EXTERNAL: &str = "rtgs_external";

/// The correspondent account of a bank (or the Treasury's single account) in the RTGS.
pub fn correspondent(node_id: &str) -> String {
    format!("corr:{node_id}")
}

/// Why money moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostingKind {
    /// Bank -> NBK conversion: correspondent account -> DT liability, then DT is issued.
    Emission,
    /// NBK -> bank conversion: DT liability -> correspondent account, after DT is redeemed.
    Redemption,
    /// Money arriving from outside the DT platform.
    ExternalCredit,
    /// Interbank settlement of bank money (e.g. a card purchase converted to bank money).
    InterbankSettlement,
}

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub seq: u64,
    pub kind: PostingKind,
    pub debit: String,
    pub credit: String,
    pub amount_tiyn: Amount,
    /// The DT transaction or request this posting belongs to.
    pub reference: String,
    pub at_unix_ms: u64,
}

/// The ABS ledger state.
#[derive(Clone, Debug, Default)]
pub struct Abs {
    balances: BTreeMap<String, i64>,
    next_seq: u64,
}

impl Abs {
    /// Read the ledger back. Its rows are fjall's keyed rows, which the store keeps without a
    /// checksum of its own: a key that does not parse, or balances that break double entry,
    /// are corrupt storage (`STORAGE_FAILURE`), and the platform refuses to open on them.
    pub fn load(store: &dtenge_store::Store) -> Result<Abs> {
        let mut abs = Abs::default();
        for (k, v) in store.scan_values::<i64>(BALANCES_TABLE)? {
            let account = String::from_utf8(k).map_err(|_| Error::storage("ABS balances: a key that is not UTF-8"))?;
            abs.balances.insert(account, v);
        }
        // The last posting alone (the journal grows with every posting: a start must not read it).
        if let Some((k, _)) = store.last(JOURNAL_TABLE)? {
            let seq: [u8; 8] = k
                .as_slice()
                .try_into()
                .map_err(|_| Error::storage(format!("ABS journal: a key of {} bytes, not 8", k.len())))?;
            abs.next_seq = u64::from_be_bytes(seq)
                .checked_add(1)
                .ok_or_else(|| Error::storage("ABS journal: a posting numbered u64::MAX"))?;
        }
        if let Some(breach) = abs.double_entry_breach() {
            return Err(Error::storage(format!("ABS balances on disk break double entry: {breach}")));
        }
        Ok(abs)
    }

    /// Credit balance of an account (0 if it never moved).
    pub fn balance(&self, account: &str) -> i64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    pub fn balances(&self) -> &BTreeMap<String, i64> {
        &self.balances
    }

    /// The DT liability: must equal DT in circulation.
    pub fn dt_liability(&self) -> Amount {
        Amount::from_tiyn(self.balance(DT_LIABILITY).max(0) as u64).unwrap_or(Amount::MAX)
    }

    /// Plan a posting `debit -> credit`: checks funds and returns the entry and the new
    /// balances, without changing state. Apply with [`Abs::apply`] after the durable commit.
    pub fn plan(
        &self,
        kind: PostingKind,
        debit: &str,
        credit: &str,
        amount: Amount,
        reference: &str,
        at_unix_ms: u64,
    ) -> Result<Posting> {
        ensure!(!amount.is_zero(), MalformedInput, "a posting moves a positive amount");
        ensure!(debit != credit, MalformedInput, "a posting needs two different accounts");
        let value = i64::try_from(amount.tiyn()).map_err(|_| Error::malformed("amount"))?;
        let after = self
            .balance(debit)
            .checked_sub(value)
            .ok_or_else(|| Error::new(ErrorCode::LimitExceeded, "ABS balance overflow"))?;
        if debit != RTGS_EXTERNAL && after < 0 {
            bail!(
                InsufficientFunds,
                "ABS account {debit} holds {} tiyn, {} needed",
                self.balance(debit),
                amount.tiyn()
            );
        }
        let credit_after = self
            .balance(credit)
            .checked_add(value)
            .ok_or_else(|| Error::new(ErrorCode::LimitExceeded, "ABS balance overflow"))?;
        // Every balance stays a valid `Amount`, so DT in circulation (= the liability) and every
        // sum over it can never overflow anywhere else.
        if credit != RTGS_EXTERNAL && credit_after > Amount::MAX.tiyn() as i64 {
            bail!(LimitExceeded, "ABS account {credit} would exceed the maximum balance {}", Amount::MAX.tiyn());
        }
        Ok(Posting {
            seq: self.next_seq,
            kind,
            debit: debit.to_string(),
            credit: credit.to_string(),
            amount_tiyn: amount,
            reference: reference.to_string(),
            at_unix_ms,
        })
    }

    /// The durable record of a planned posting.
    pub fn writes(&self, posting: &Posting, batch: &mut WriteBatch) -> Result<()> {
        // Planned on this very state (the caller holds the ABS lock from plan to apply), so
        // the balances written are the ones `apply` will compute.
        assert_eq!(posting.seq, self.next_seq, "an ABS posting is written against the state that planned it");
        let value = posting.amount_tiyn.tiyn() as i64;
        batch.put_value(BALANCES_TABLE, posting.debit.as_bytes(), &(self.balance(&posting.debit) - value))?;
        batch.put_value(BALANCES_TABLE, posting.credit.as_bytes(), &(self.balance(&posting.credit) + value))?;
        batch.put_value(JOURNAL_TABLE, posting.seq.to_be_bytes(), posting)
    }

    /// Apply a planned posting after it was persisted. Plans must be applied in the order
    /// they were made (callers hold the ABS lock from plan to apply).
    pub fn apply(&mut self, posting: &Posting) {
        assert_eq!(posting.seq, self.next_seq, "ABS postings applied out of order");
        assert_ne!(posting.debit, posting.credit, "a planned posting names two accounts");
        let value = posting.amount_tiyn.tiyn() as i64;
        *self.balances.entry(posting.debit.clone()).or_insert(0) -= value;
        *self.balances.entry(posting.credit.clone()).or_insert(0) += value;
        self.next_seq += 1;
        // The whole ledger, not only the two accounts: it has a handful of accounts (one per
        // bank and three more) and postings are rare (conversions, not payments).
        self.assert_invariant();
    }

    /// Double entry: all balances sum to zero; only the external account may be negative.
    /// Every posting is planned against these rules and applied whole, so a breach in memory
    /// is a programmer error: this stops the process.
    pub fn assert_invariant(&self) {
        if let Some(breach) = self.double_entry_breach() {
            panic!("the ABS breaks double entry: {breach}");
        }
    }

    /// What breaks double entry, if anything.
    fn double_entry_breach(&self) -> Option<String> {
        let sum: i128 = self.balances.values().map(|&b| i128::from(b)).sum();
        if sum != 0 {
            return Some(format!("balances sum to {sum}, not zero"));
        }
        let negative = self.balances.iter().find(|(account, &balance)| balance < 0 && *account != RTGS_EXTERNAL);
        negative.map(|(account, balance)| format!("account {account} is negative ({balance})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    #[test]
    fn emission_moves_money_from_correspondent_to_liability() {
        let mut abs = Abs::default();
        let corr = correspondent("halyk");
        let p = abs.plan(PostingKind::ExternalCredit, RTGS_EXTERNAL, &corr, a(1_000), "seed", 0).unwrap();
        abs.apply(&p);
        let p = abs.plan(PostingKind::Emission, &corr, DT_LIABILITY, a(600), "tx", 1).unwrap();
        abs.apply(&p);
        assert_eq!(abs.balance(&corr), 400);
        assert_eq!(abs.dt_liability(), a(600));
        abs.assert_invariant();
        let err = abs.plan(PostingKind::Emission, &corr, DT_LIABILITY, a(401), "tx", 2).unwrap_err();
        assert_eq!(err.code, ErrorCode::InsufficientFunds);
    }

    #[test]
    fn no_balance_can_exceed_the_largest_amount() {
        let mut abs = Abs::default();
        let corr = correspondent("halyk");
        for _ in 0..2 {
            let p = abs.plan(PostingKind::ExternalCredit, RTGS_EXTERNAL, &corr, Amount::MAX, "seed", 0);
            if let Ok(p) = p {
                abs.apply(&p);
            }
        }
        assert_eq!(abs.balance(&corr), Amount::MAX.tiyn() as i64);
        let err = abs.plan(PostingKind::ExternalCredit, RTGS_EXTERNAL, &corr, a(1), "seed", 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        abs.assert_invariant();
    }

    /// A posting that would leave a bank's account negative cannot be planned; applied all
    /// the same (a programmer error), it stops the process instead of being reported.
    #[test]
    #[should_panic(expected = "the ABS breaks double entry: account corr:halyk is negative")]
    fn a_posting_that_breaks_double_entry_stops_the_process() {
        let mut abs = Abs::default();
        let posting = Posting {
            seq: 0,
            kind: PostingKind::Emission,
            debit: correspondent("halyk"),
            credit: DT_LIABILITY.into(),
            amount_tiyn: a(5),
            reference: "never planned".into(),
            at_unix_ms: 0,
        };
        abs.apply(&posting);
    }

    /// Rows on disk that do not parse or do not balance are corrupt storage: the ledger is
    /// not opened, with `STORAGE_FAILURE` and what is wrong.
    #[test]
    fn corrupt_rows_on_disk_refuse_to_open_with_a_storage_failure() {
        let open_with = |rows: &[(&[u8], i64)]| {
            let store = dtenge_store::Store::open_simulated(dtenge_store::SimDisk::new(), &TABLES).unwrap();
            let mut batch = WriteBatch::new();
            for (key, balance) in rows {
                batch.put_value(BALANCES_TABLE, key.to_vec(), balance).unwrap();
            }
            store.commit(batch).unwrap();
            Abs::load(&store)
        };
        assert_eq!(open_with(&[(b"corr:halyk", 5), (b"rtgs_external", -5)]).unwrap().balance("corr:halyk"), 5);
        for (rows, says) in [
            (&[(&b"corr:\xff"[..], 0)][..], "not UTF-8"),
            (&[(&b"corr:halyk"[..], 5)][..], "sum to 5"),
            (&[(&b"corr:halyk"[..], -5), (&b"dt_liability"[..], 5)][..], "corr:halyk is negative"),
        ] {
            let refused = open_with(rows).unwrap_err();
            assert_eq!(refused.code, ErrorCode::StorageFailure, "{refused}");
            assert!(refused.message.contains(says), "{refused}");
        }
    }
}
