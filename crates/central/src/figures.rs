//! Central's running figures, published for monitoring without the role's lock.
//!
//! Central's lock is held across its commits (an emission's posting, a redemption's), and
//! monitoring used to clone the whole registry under it at every poll. Instead, every release
//! of the lock folds the registry's new entries into running totals and publishes them with
//! the DT liability, the banks' correspondent balances and the blocks, into a cell whose small
//! lock is held only to copy them (a few figures per bank of the network).
//!
//! For reconciliation at one notary certificate number, the cell also keeps the newest
//! registry entries' certificate numbers (a bounded ring), so central can report its
//! circulation as of an earlier number, and how far its batches at the notary and its
//! deliveries have got.

use crate::registry::{EntryKind, Totals};
use crate::Inner;
use dtenge_core::Amount;
use dtenge_wire::RoleId;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};

/// Central's running figures, as of the last step it finished.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CentralFigures {
    /// The whole registry's issued and redeemed DT.
    pub totals: Totals,
    /// Each bank's issued and redeemed DT (banks with an entry only).
    pub by_bank: BTreeMap<String, Totals>,
    /// The ABS DT liability account.
    pub dt_liability: Amount,
    /// Each bank's correspondent account balance, in tiyn.
    pub correspondent_tiyn: BTreeMap<String, i64>,
    /// Bank -> why the operator blocked it.
    pub blocked: BTreeMap<String, String>,
    /// How far central's batches at the notary and its deliveries have got.
    pub progress: CentralProgress,
    /// Registry entries folded into the totals.
    registry_len: usize,
}

/// Most registry entries whose certificate numbers central keeps, to report its circulation
/// as of an earlier number (emissions and redemptions are far rarer than payments).
pub const REGISTRY_KEPT_MAX: usize = 4_096;

/// How far central's work that ends in certificates has got (see `dtenge_bank::Progress`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CentralProgress {
    /// The number the next emission's or redemption's batch takes (numbered in order).
    pub next_batch: u64,
    /// The oldest batch still at the notary; `next_batch` when there is none.
    pub oldest_batch: u64,
    /// Each delivery stream: the receiver, its next number, its oldest not acknowledged.
    pub streams: Vec<(RoleId, u64, u64)>,
}

/// Central's DT as of one notary certificate number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CentralAtSeq {
    /// Issued minus redeemed by the registry's entries certified up to the number.
    pub circulation: Amount,
    /// The ABS DT liability then.
    pub dt_liability: Amount,
}

/// The published cell.
#[derive(Default)]
struct Cell {
    figures: CentralFigures,
    /// The newest registry entries: certificate number, kind, amount.
    recent: VecDeque<(u64, EntryKind, Amount)>,
    /// The largest certificate number among the entries dropped from `recent`.
    dropped_max_seq: u64,
    /// The number of the lock's holding that published last ([`RoleLock::lock`]).
    epoch: u64,
}

impl Cell {
    fn refresh(&mut self, inner: &Inner, banks: &[String]) {
        for entry in &inner.registry[self.figures.registry_len.min(inner.registry.len())..] {
            self.recent.push_back((entry.certificate_seq, entry.kind, entry.amount));
            if self.recent.len() > REGISTRY_KEPT_MAX {
                let (seq, _, _) = self.recent.pop_front().expect("the ring is not empty");
                self.dropped_max_seq = self.dropped_max_seq.max(seq);
            }
        }
        self.figures.refresh(inner, banks);
    }

    /// Circulation and liability as of certificate `seq`: the running figures minus the
    /// entries certified after it. `None` when one of those is no longer kept.
    fn at_seq(&self, seq: u64) -> Option<CentralAtSeq> {
        if self.dropped_max_seq > seq {
            return None;
        }
        let (mut issued, mut redeemed) = (self.figures.totals.issued, self.figures.totals.redeemed);
        let mut liability = self.figures.dt_liability;
        for (_, kind, amount) in self.recent.iter().filter(|(s, _, _)| *s > seq) {
            // Every kept entry is part of the running figures, which its posting moved too.
            let broken = |e| panic!("the registry's running totals miss a kept entry: {e}");
            match kind {
                EntryKind::Emission => {
                    issued = issued.checked_sub(*amount).unwrap_or_else(broken);
                    liability = liability.checked_sub(*amount).unwrap_or_else(broken);
                }
                EntryKind::Redemption => {
                    redeemed = redeemed.checked_sub(*amount).unwrap_or_else(broken);
                    liability = liability.checked_add(*amount).unwrap_or_else(broken);
                }
            }
        }
        let circulation = issued.checked_sub(redeemed).ok()?;
        Some(CentralAtSeq { circulation, dt_liability: liability })
    }
}

impl CentralFigures {
    /// Fold what the registry gained since the last publication and read the rest afresh.
    fn refresh(&mut self, inner: &Inner, banks: &[String]) {
        assert!(self.registry_len <= inner.registry.len(), "the registry only grows");
        for entry in &inner.registry[self.registry_len..] {
            for totals in [&mut self.totals, self.by_bank.entry(entry.bank.clone()).or_default()] {
                let sum = match entry.kind {
                    EntryKind::Emission => &mut totals.issued,
                    EntryKind::Redemption => &mut totals.redeemed,
                };
                // Every entry is backed by an ABS posting within `Amount::MAX` (see `Totals::of`).
                *sum = sum.checked_add(entry.amount).expect("the registry's sums stay within the ABS's bounds");
            }
        }
        self.registry_len = inner.registry.len();
        self.dt_liability = inner.abs.dt_liability();
        for bank in banks {
            let balance = inner.abs.balance(&dtenge_abs::correspondent(bank));
            self.correspondent_tiyn.insert(bank.clone(), balance);
        }
        if self.blocked != inner.blocked {
            self.blocked = inner.blocked.clone();
        }
        let oldest = [inner.outbox.keys().next(), inner.redeem_outbox.keys().next()].into_iter().flatten().min();
        self.progress = CentralProgress {
            next_batch: inner.next_batch,
            oldest_batch: oldest.copied().unwrap_or(inner.next_batch),
            streams: inner.outbound.streams().map(|(to, next, oldest)| (to.clone(), next, oldest)).collect(),
        };
    }
}

/// Central's state behind its one lock, and the figures published each time it is released.
pub(crate) struct RoleLock {
    inner: Mutex<Inner>,
    published: Mutex<Cell>,
    /// The network's banks, whose correspondent balances are published.
    banks: Vec<String>,
    /// Holdings of the lock so far: each numbers its publication (see `dtenge_bank`'s).
    holdings: AtomicU64,
}

impl RoleLock {
    pub(crate) fn new(inner: Inner, banks: Vec<String>) -> RoleLock {
        let mut cell = Cell::default();
        cell.refresh(&inner, &banks);
        RoleLock { inner: Mutex::new(inner), published: Mutex::new(cell), banks, holdings: AtomicU64::new(0) }
    }

    /// Take the role's lock; its release publishes the figures.
    pub(crate) fn lock(&self) -> Locked<'_> {
        let guard = self.inner.lock();
        Locked { guard, lock: self, epoch: self.holdings.fetch_add(1, Ordering::SeqCst) + 1 }
    }

    /// The number of the last holding of the lock that began.
    pub(crate) fn epoch(&self) -> u64 {
        self.holdings.load(Ordering::SeqCst)
    }

    /// The progress as published by a holding of the lock numbered above `epoch` (one that
    /// began after the caller read it); the lock is tried, never waited for, when none has
    /// published yet. `None` while a step that began before is under way.
    pub(crate) fn progress_after(&self, epoch: u64) -> Option<CentralProgress> {
        {
            let cell = self.published.lock();
            if cell.epoch > epoch {
                return Some(cell.figures.progress.clone());
            }
        }
        let guard = self.inner.try_lock()?;
        drop(Locked { guard, lock: self, epoch: self.holdings.fetch_add(1, Ordering::SeqCst) + 1 });
        let cell = self.published.lock();
        (cell.epoch > epoch).then(|| cell.figures.progress.clone())
    }

    /// The figures as of the last release of the role's lock: never waits for a step.
    pub(crate) fn figures(&self) -> CentralFigures {
        self.published.lock().figures.clone()
    }

    /// Why `bank` is blocked, as of the last release of the role's lock (`None`: it is not):
    /// the gateway asks on every payment, and the role's lock would publish the figures again
    /// at each release.
    pub(crate) fn blocked_reason(&self, bank: &str) -> Option<String> {
        self.published.lock().figures.blocked.get(bank).cloned()
    }

    /// The blocked banks and why, as of the last release of the role's lock.
    pub(crate) fn blocked(&self) -> BTreeMap<String, String> {
        self.published.lock().figures.blocked.clone()
    }

    /// Circulation and liability as of certificate `seq`, from the published cell.
    pub(crate) fn at_seq(&self, seq: u64) -> Option<CentralAtSeq> {
        self.published.lock().at_seq(seq)
    }
}

/// Central's lock, held. Derefs to the state.
pub(crate) struct Locked<'a> {
    guard: MutexGuard<'a, Inner>,
    lock: &'a RoleLock,
    /// The holding's number.
    epoch: u64,
}

impl Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // While the role's lock is still held (the guard drops after this body): published
        // in the order of the steps.
        let mut cell = self.lock.published.lock();
        cell.refresh(&self.guard, &self.lock.banks);
        cell.epoch = self.epoch;
    }
}
