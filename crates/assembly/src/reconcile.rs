//! Reconciliation at one notary certificate number, while payments go on.
//!
//! Every change of the ledger happens under a notary certificate, numbered in commit order,
//! so "the ledger as of certificate `s`" is well defined. The notary reports its unspent count
//! as of its current number `s`, in one short step under its own lock. Then, without pausing
//! anyone, the reconciliation waits (at most its deadline) until every certificate up to `s`
//! has reached the roles it concerns:
//!
//! 1. every batch a bank (or central) had written for the notary when `s` was read is
//!    answered and applied (the outbox's batches are numbered in order: the oldest still in
//!    it has passed the number the next batch took when `s` was read), and the bank's holds
//!    and programmed spends, which go to the notary in batches of their own, were all finished
//!    at one moment since. What a role publishes counts only when a step that began after `s`
//!    was read published it (a step under way then may have sent a batch it has not published
//!    yet); a role with no such step is published for by holding its lock for a moment when it
//!    is free (`try_lock`, never waited for);
//! 2. then, every delivery those senders had numbered for a bank is acknowledged, so applied.
//!
//! A certificate up to `s` cannot come later: its batch reached the notary before `s` was read,
//! so it was in its sender's outbox then. Each bank then reports its DT and tokens as of `s`
//! (its running figures minus what the certificates above `s` changed, from the bounded ring it
//! keeps, `dtenge_bank::APPLIED_KEPT_MAX`), and central its registry's circulation as of `s`.
//! The banks' DT as of `s` must be the registry's circulation as of `s` (and the ABS DT
//! liability, which central posts in the same commit as the registry entry), the banks'
//! tokens the notary's unspent count, and the set hash of their ids (the XOR of the ids, kept
//! running by every bank and the notary: `TokenId::toggle_in`) the notary's. A report that cannot be made in time (a role behind,
//! a ring that no longer reaches back to `s`) says so instead of a comparison.

use crate::Assembly;
use dtenge_core::crypto::Hash32;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_wire::RoleId;
use std::time::{Duration, Instant};

/// How often a reconciliation waiting for the roles looks at their published progress.
const PROGRESS_POLL: Duration = Duration::from_millis(1);

/// The roles' figures as of one notary certificate number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtSeq {
    /// The notary's certificate number the figures are as of.
    pub seq: u64,
    /// The notary's unspent tokens as of `seq`.
    pub notary_unspent: usize,
    /// DT the banks held as of `seq`, summed.
    pub banks_dt: Amount,
    /// Tokens the banks held as of `seq`, summed.
    pub banks_tokens: usize,
    /// The set hash of the ids of the tokens the banks held as of `seq`, combined.
    pub banks_ids_hash: Hash32,
    /// The set hash of the notary's unspent ids as of `seq`.
    pub notary_unspent_hash: Hash32,
    /// DT in circulation by central's registry as of `seq`.
    pub circulation: Amount,
    /// The ABS DT liability as of `seq`.
    pub dt_liability: Amount,
    /// What does not hold (empty: everything holds).
    pub problems: Vec<String>,
}

impl Assembly {
    /// Reconcile the banks, central and the notary as of the notary's current certificate
    /// number, while payments go on (see the module's docs). Waits at most `timeout` for the
    /// certificates up to that number to reach the roles; `REQUEST_IN_PROGRESS` when they have
    /// not (nothing is compared then, so no mismatch is reported that is only in flight).
    pub fn reconcile_at_seq(&self, timeout: Duration) -> Result<AtSeq> {
        let deadline = Instant::now() + timeout;
        let notary = self.notary.report();
        let seq = notary.seq;
        // Progress counts only as published by a step that began after `seq` was read: a step
        // under way then may have sent a batch it has not published yet.
        let epochs: Vec<u64> = self.banks.iter().map(|b| b.service.progress_epoch()).collect();
        let central_epoch = self.central.progress_epoch();
        // 1. The batches written for the notary when `seq` was read: the number the next
        //    batch took then (from the first publication after it) is the mark.
        let mut marks: Vec<Option<u64>> = vec![None; self.banks.len()];
        let mut central_mark: Option<u64> = None;
        let mut others_done = vec![false; self.banks.len()];
        loop {
            let mut done = match self.central.progress_after(central_epoch) {
                Some(progress) => progress.oldest_batch >= *central_mark.get_or_insert(progress.next_batch),
                None => false,
            };
            for (index, bank) in self.banks.iter().enumerate() {
                let Some(progress) = bank.service.progress_after(epochs[index]) else {
                    done = false;
                    continue;
                };
                let mark = *marks[index].get_or_insert(progress.next_batch);
                others_done[index] |= progress.others_pending == 0;
                done &= progress.oldest_batch >= mark && others_done[index];
            }
            if done {
                break;
            }
            wait_until(deadline, seq, "the batches at the notary are not all answered")?;
        }
        // 2. Then the deliveries their senders had numbered for a bank (the publications
        //    read now are those that showed step 1 done, or later ones).
        let banks: Vec<RoleId> = self.banks.iter().map(|b| b.service.role()).collect();
        let to_banks = |streams: &[(RoleId, u64, u64)]| -> Vec<(RoleId, u64)> {
            streams.iter().filter(|(to, _, _)| banks.contains(to)).map(|(to, next, _)| (to.clone(), *next)).collect()
        };
        let reached = |streams: &[(RoleId, u64, u64)], marks: &[(RoleId, u64)]| {
            marks.iter().all(|(to, next)| streams.iter().any(|(t, _, oldest)| t == to && oldest >= next))
        };
        let mut bank_marks: Vec<Option<Vec<(RoleId, u64)>>> = vec![None; self.banks.len()];
        let mut central_marks: Option<Vec<(RoleId, u64)>> = None;
        loop {
            let mut done = match self.central.progress_after(central_epoch) {
                Some(progress) => {
                    reached(&progress.streams, central_marks.get_or_insert_with(|| to_banks(&progress.streams)))
                }
                None => false,
            };
            for (index, bank) in self.banks.iter().enumerate() {
                let Some(progress) = bank.service.progress_after(epochs[index]) else {
                    done = false;
                    continue;
                };
                let marks = bank_marks[index].get_or_insert_with(|| to_banks(&progress.streams));
                done &= reached(&progress.streams, marks);
            }
            if done {
                break;
            }
            wait_until(deadline, seq, "the deliveries to the banks are not all applied")?;
        }
        // 3. The reports as of `seq`.
        let (mut banks_dt, mut banks_tokens, mut banks_ids_hash) = (Amount::ZERO, 0usize, Hash32([0; 32]));
        for bank in &self.banks {
            let at = bank.service.at_seq(seq).ok_or_else(|| {
                Error::new(
                    ErrorCode::RequestInProgress,
                    format!("{} no longer keeps what the certificates after {seq} changed: ask again", bank.id()),
                )
            })?;
            banks_dt = banks_dt.checked_add(at.dt_held)?;
            banks_tokens += at.tokens;
            for (byte, of_bank) in banks_ids_hash.0.iter_mut().zip(at.token_ids_hash.0) {
                *byte ^= of_bank;
            }
        }
        let central = self.central.at_seq(seq).ok_or_else(|| {
            Error::new(
                ErrorCode::RequestInProgress,
                format!("central no longer keeps the registry's entries after certificate {seq}: ask again"),
            )
        })?;
        let mut problems = Vec::new();
        if central.circulation != central.dt_liability {
            problems.push(format!(
                "as of certificate {seq} the NBK registry says {} in circulation, the ABS DT liability is {}",
                central.circulation, central.dt_liability
            ));
        }
        if banks_dt != central.circulation {
            problems.push(format!(
                "as of certificate {seq} the banks hold {banks_dt} DT, the NBK registry says {} in circulation",
                central.circulation
            ));
        }
        if banks_tokens != notary.unspent {
            problems.push(format!(
                "as of certificate {seq} the banks hold {banks_tokens} tokens, the notary {} unspent",
                notary.unspent
            ));
        }
        if banks_ids_hash != notary.unspent_hash {
            problems.push(format!(
                "as of certificate {seq} the banks' tokens are not the notary's unspent set (their ids' set hashes differ)"
            ));
        }
        Ok(AtSeq {
            seq,
            notary_unspent: notary.unspent,
            banks_dt,
            banks_tokens,
            banks_ids_hash,
            notary_unspent_hash: notary.unspent_hash,
            circulation: central.circulation,
            dt_liability: central.dt_liability,
            problems,
        })
    }
}

/// Sleep a poll, or fail when the deadline passed.
fn wait_until(deadline: Instant, seq: u64, what: &str) -> Result<()> {
    if Instant::now() > deadline {
        return Err(Error::new(
            ErrorCode::RequestInProgress,
            format!("reconciliation at certificate {seq}: {what} yet; ask again"),
        ));
    }
    std::thread::sleep(PROGRESS_POLL);
    Ok(())
}
