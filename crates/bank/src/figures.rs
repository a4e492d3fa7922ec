//! The bank's running figures, published for monitoring and reconciliation without the role's
//! lock.
//!
//! The role's one lock is held from a step's plan to its apply, durable commit included, so a
//! dashboard that read the node under it waited behind a batch's commit (up to 1.7 s under
//! load). Instead, the bank publishes its node's running figures (a few integers, each O(1) to
//! read) into a cell of their own, whose small lock is held only to copy them: where a step
//! applies a change to its node (before it answers anyone, so a client who heard "done" reads
//! figures that include it), and again each time the role's lock is released (whatever
//! changed the node). A reader never waits for a commit, and once the bank is quiet the
//! figures are exactly what a read under the role's lock returns.
//!
//! For reconciliation at one notary certificate number (`Assembly::reconcile_at_seq`), the
//! cell also keeps what each of the most recent certificates changed (a bounded ring, one
//! entry per certificate number) and how far the bank's own work has got: its batches at the
//! notary and its deliveries not acknowledged. The bank's report as of certificate `s` is its
//! figures minus what the certificates numbered above `s` changed.

use crate::state::Inner;
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_core::Amount;
use dtenge_node::{Account, Delta, NodeState};
use dtenge_wire::RoleId;
use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most certificate numbers whose changes a bank keeps, to report as of an earlier number. A
/// reconciliation waits for the certificates up to its number to reach the banks, a few
/// hundred milliseconds under load; at thousands of certificates a second this keeps
/// seconds of them (an entry is 24 bytes).
pub const APPLIED_KEPT_MAX: usize = 16_384;

/// A bank's running figures, as of the last change it applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// DT its accounts own, in tiyn ([`NodeState::total_dt`]).
    pub dt_held: Amount,
    /// Accounts it keeps ([`NodeState::account_count`]).
    pub accounts: usize,
    /// Tokens its accounts own ([`NodeState::token_count`]).
    pub tokens: usize,
}

impl Figures {
    /// The node's running figures, each O(1).
    pub fn of(node: &NodeState) -> Figures {
        // `total_dt` is the running total and cannot fail: an error would be a broken
        // invariant of the node, not bad input.
        let dt_held = node.total_dt().unwrap_or_else(|e| panic!("{}'s running DT total: {e}", node.id()));
        Figures { dt_held, accounts: node.account_count(), tokens: node.token_count() }
    }
}

/// How far a bank's work that ends in certificates has got, as of the last release of its
/// lock: what a reconciliation waits on before it trusts a report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The number the outbox's next batch takes (batches are numbered in order).
    pub next_batch: u64,
    /// The oldest batch still in the outbox (at the notary, or written and not sent yet);
    /// `next_batch` when there is none.
    pub oldest_batch: u64,
    /// Holds, releases and programmed spends not finished (their own batches at the notary).
    pub others_pending: usize,
    /// Each delivery stream: the receiver, the number its next delivery takes, and its oldest
    /// delivery not acknowledged (`next` when none is).
    pub streams: Vec<(RoleId, u64, u64)>,
}

/// A bank's DT and tokens as of one certificate number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtSeq {
    pub dt_held: Amount,
    pub tokens: usize,
    /// The tokens' ids' set hash ([`dtenge_core::token::TokenId::toggle_in`]).
    pub token_ids_hash: Hash32,
}

/// What the certificates applied under one number changed.
#[derive(Clone, Copy, Debug)]
struct Applied {
    seq: u64,
    /// DT in, minus DT out, in tiyn (within ±`Amount::MAX`, which is below 2^53).
    dt_tiyn: i64,
    /// Tokens in, minus tokens out.
    tokens: i64,
    /// The set hash of the ids in and out (before's set hash XOR after's).
    ids_hash: [u8; 32],
}

#[derive(Default)]
struct Cell {
    figures: Figures,
    /// The set hash of the tokens' ids, with `figures`.
    ids_hash: [u8; 32],
    applied: VecDeque<Applied>,
    /// The largest certificate number among the entries dropped from `applied`: no report as
    /// of a number below it can be made.
    dropped_max_seq: u64,
    progress: Progress,
    /// The number of the lock's holding that published `progress` ([`RoleLock::lock`]).
    progress_epoch: u64,
    /// The outbound deliveries' size and count numbered when `progress.streams` was read:
    /// the streams are read again only when these moved (a step that sends nothing, most
    /// of them, copies no stream).
    streams_read_at: (usize, u64),
}

impl Cell {
    /// The figures after a certificate's changes, and the changes, kept in the ring.
    fn record(&mut self, after: Figures, ids_hash: Hash32, applied: Applied) {
        self.figures = after;
        self.ids_hash = ids_hash.0;
        if applied.dt_tiyn == 0 && applied.tokens == 0 && applied.ids_hash == [0; 32] {
            // Nothing to take off a report (a delivery whose transactions were all refused).
            return;
        }
        match self.applied.back_mut() {
            // Deltas of one certificate applied in steps.
            Some(last) if last.seq == applied.seq => {
                last.dt_tiyn += applied.dt_tiyn;
                last.tokens += applied.tokens;
                xor(&mut last.ids_hash, &applied.ids_hash);
            }
            _ => {
                self.applied.push_back(applied);
                if self.applied.len() > APPLIED_KEPT_MAX {
                    let dropped = self.applied.pop_front().expect("the ring is not empty");
                    self.dropped_max_seq = self.dropped_max_seq.max(dropped.seq);
                }
            }
        }
    }
}

/// `hash ^= other`, byte by byte: set hashes of ids combine so.
fn xor(hash: &mut [u8; 32], other: &[u8; 32]) {
    for (byte, of_other) in hash.iter_mut().zip(other) {
        *byte ^= of_other;
    }
}

/// The cell the figures are published in, shared by the role's state and its readers.
#[derive(Clone)]
pub(crate) struct Publisher(Arc<Mutex<Cell>>);

impl Publisher {
    pub(crate) fn new(node: &NodeState) -> Publisher {
        let cell = Cell { figures: Figures::of(node), ids_hash: node.token_ids_hash().0, ..Cell::default() };
        Publisher(Arc::new(Mutex::new(cell)))
    }

    fn publish(&self, node: &NodeState) {
        self.0.lock().figures = Figures::of(node);
    }

    pub(crate) fn figures(&self) -> Figures {
        self.0.lock().figures
    }

    /// The progress, when a holding of the role's lock numbered above `epoch` published it.
    fn progress_after(&self, epoch: u64) -> Option<Progress> {
        let cell = self.0.lock();
        (cell.progress_epoch > epoch).then(|| cell.progress.clone())
    }

    /// The DT and tokens as of certificate `seq`: the figures minus what certificates
    /// numbered above it changed. `None` when the changes of one of those are no longer kept.
    pub(crate) fn at_seq(&self, seq: u64) -> Option<AtSeq> {
        let cell = self.0.lock();
        if cell.dropped_max_seq > seq {
            return None;
        }
        let (mut dt_tiyn, mut tokens) = (i128::from(cell.figures.dt_held.tiyn()), cell.figures.tokens as i128);
        let mut ids_hash = cell.ids_hash;
        for applied in cell.applied.iter().filter(|a| a.seq > seq) {
            dt_tiyn -= i128::from(applied.dt_tiyn);
            tokens -= i128::from(applied.tokens);
            xor(&mut ids_hash, &applied.ids_hash);
        }
        // Every kept change is part of the figures, so taking them off leaves what the bank
        // held then: within the money supply and non-negative, or the ring is wrong.
        let dt_held = u64::try_from(dt_tiyn).ok().and_then(|t| Amount::from_tiyn(t).ok());
        let dt_held = dt_held.unwrap_or_else(|| panic!("a bank's DT as of certificate {seq} is {dt_tiyn} tiyn"));
        let tokens = usize::try_from(tokens).unwrap_or_else(|_| panic!("a bank's tokens as of {seq}: {tokens}"));
        Some(AtSeq { dt_held, tokens, token_ids_hash: Hash32(ids_hash) })
    }
}

impl Inner {
    /// Apply the deltas of transactions the notary certified under certificate `seq`, and
    /// publish the figures with what the certificate changed.
    pub(crate) fn apply_certified(&mut self, deltas: impl IntoIterator<Item = Delta>, seq: u64) {
        let (before, before_hash) = (Figures::of(&self.node), self.node.token_ids_hash());
        for delta in deltas {
            self.node.apply(delta);
        }
        let (after, after_hash) = (Figures::of(&self.node), self.node.token_ids_hash());
        let mut ids_hash = before_hash.0;
        xor(&mut ids_hash, &after_hash.0);
        let signed = |n: u64| i64::try_from(n).expect("below Amount::MAX, within i64");
        let dt_tiyn = signed(after.dt_held.tiyn()) - signed(before.dt_held.tiyn());
        let tokens = i64::try_from(after.tokens).expect("tokens fit in i64")
            - i64::try_from(before.tokens).expect("tokens fit in i64");
        self.published.0.lock().record(after, after_hash, Applied { seq, dt_tiyn, tokens, ids_hash });
    }

    /// Open an account (its plan is durable), and publish the figures.
    pub(crate) fn apply_open(&mut self, account: Account, custodial_key: Option<&SecretKey>) {
        self.node.apply_open(account, custodial_key);
        self.published.publish(&self.node);
    }

    /// Publish the progress into `cell`, as of this holding of the lock.
    fn publish_progress(&self, cell: &mut Cell) {
        cell.progress.next_batch = self.next_batch;
        cell.progress.oldest_batch = self.outbox.keys().next().copied().unwrap_or(self.next_batch);
        cell.progress.others_pending = self.holds.len() + self.spends.in_flight();
        let streams_at = (self.outbound.len(), self.outbound.numbered());
        if cell.streams_read_at != streams_at {
            cell.progress.streams.clear();
            cell.progress.streams.extend(self.outbound.streams().map(|(to, next, oldest)| (to.clone(), next, oldest)));
            cell.streams_read_at = streams_at;
        }
    }
}

/// The role's state behind its one lock; each release of the lock publishes the figures.
pub(crate) struct RoleLock {
    inner: Mutex<Inner>,
    published: Publisher,
    /// Holdings of the lock so far: each numbers its publication, so that a reader can tell a
    /// publication made by a holding that began after a moment of its own.
    holdings: AtomicU64,
}

impl RoleLock {
    pub(crate) fn new(inner: Inner) -> RoleLock {
        let published = inner.published.clone();
        RoleLock { inner: Mutex::new(inner), published, holdings: AtomicU64::new(0) }
    }

    /// Take the role's lock.
    pub(crate) fn lock(&self) -> Locked<'_> {
        let guard = self.inner.lock();
        Locked(guard, self.holdings.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The number of the last holding of the lock that began.
    pub(crate) fn epoch(&self) -> u64 {
        self.holdings.load(Ordering::SeqCst)
    }

    /// The progress as published by a holding of the lock numbered above `epoch`, so one
    /// that began after the caller read `epoch`: it reflects every step that began before.
    /// When none has yet, the lock is tried (never waited for) and, if free, held just to
    /// publish; `None` when it is held by a step still under way (ask again).
    pub(crate) fn progress_after(&self, epoch: u64) -> Option<Progress> {
        if let Some(progress) = self.published.progress_after(epoch) {
            return Some(progress);
        }
        let guard = self.inner.try_lock()?;
        drop(Locked(guard, self.holdings.fetch_add(1, Ordering::SeqCst) + 1));
        self.published.progress_after(epoch)
    }

    /// The published cell: never waits for a step.
    pub(crate) fn published(&self) -> &Publisher {
        &self.published
    }
}

/// The role's lock, held, with the holding's number. Derefs to the state.
pub(crate) struct Locked<'a>(MutexGuard<'a, Inner>, u64);

impl Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Published before the next step can start (the guard is released after this body),
        // so the last figures published are those the next step finds. Every change of the
        // DT and tokens goes through `apply_certified` (which the ring relies on); a change
        // that did not would be a missing entry in it.
        let (figures, ids_hash) = (Figures::of(&self.0.node), self.0.node.token_ids_hash().0);
        let mut cell = self.0.published.0.lock();
        debug_assert!(
            std::thread::panicking()
                || (cell.figures.dt_held, cell.figures.tokens, cell.ids_hash)
                    == (figures.dt_held, figures.tokens, ids_hash),
            "a change of the DT or tokens was applied without `apply_certified`"
        );
        cell.figures = figures;
        cell.ids_hash = ids_hash;
        self.0.publish_progress(&mut cell);
        cell.progress_epoch = self.1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> Hash32 {
        Hash32([byte; 32])
    }

    fn figures(dt_tiyn: u64, tokens: usize) -> Figures {
        Figures { dt_held: Amount::from_tiyn(dt_tiyn).unwrap(), accounts: 1, tokens }
    }

    #[test]
    fn a_report_as_of_a_number_takes_off_what_later_certificates_changed() {
        let publisher = Publisher(Arc::new(Mutex::new(Cell { figures: figures(1_000, 2), ..Cell::default() })));
        let at = |seq| publisher.at_seq(seq).map(|a| (a.dt_held.tiyn(), a.tokens, a.token_ids_hash.0[0]));
        {
            let mut cell = publisher.0.lock();
            // Certificates arrive out of number order (a delivery of an older one, then an
            // answer to this bank's own): each is taken off by its own number.
            // Set hashes: 0 at first, then the ids 1, 2, 4 (one bit each) come in turn.
            cell.record(figures(1_500, 3), hash(1), Applied { seq: 7, dt_tiyn: 500, tokens: 1, ids_hash: [1; 32] });
            cell.record(figures(1_200, 4), hash(3), Applied { seq: 5, dt_tiyn: -300, tokens: 1, ids_hash: [2; 32] });
            cell.record(figures(1_200, 5), hash(7), Applied { seq: 5, dt_tiyn: 0, tokens: 1, ids_hash: [4; 32] });
            cell.record(figures(1_200, 5), hash(7), Applied { seq: 9, dt_tiyn: 0, tokens: 0, ids_hash: [0; 32] });
        }
        assert_eq!(at(9), Some((1_200, 5, 7)));
        assert_eq!(at(7), Some((1_200, 5, 7)));
        assert_eq!(at(6), Some((700, 4, 6)));
        assert_eq!(at(4), Some((1_000, 2, 0)));
        assert_eq!(publisher.0.lock().applied.len(), 2, "one entry per number in a row; none for no change");
    }

    #[test]
    fn a_number_whose_changes_left_the_ring_gets_no_report() {
        let publisher = Publisher(Arc::new(Mutex::new(Cell::default())));
        {
            let mut cell = publisher.0.lock();
            for seq in 1..=APPLIED_KEPT_MAX as u64 + 1 {
                cell.record(
                    figures(seq, seq as usize),
                    hash(0),
                    Applied { seq, dt_tiyn: 1, tokens: 1, ids_hash: [0; 32] },
                );
            }
        }
        assert_eq!(publisher.at_seq(0), None, "certificate 1 left the ring");
        let at = publisher.at_seq(1).unwrap();
        assert_eq!((at.dt_held.tiyn(), at.tokens), (1, 1));
    }
}
