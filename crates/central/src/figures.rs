//! Central's running figures, published for monitoring without the role's lock.
//!
//! Central's lock is held across its commits (an emission's posting, a redemption's), and
//! monitoring used to clone the whole registry under it at every poll. Instead, every release
//! of the lock folds the registry's new entries into running totals and publishes them with
//! the DT liability, the banks' correspondent balances and the blocks, into a cell whose small
//! lock is held only to copy them (a few figures per bank of the network).

use crate::registry::{EntryKind, Totals};
use crate::Inner;
use dtenge_core::Amount;
use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

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
    /// Registry entries folded into the totals.
    registry_len: usize,
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
    }
}

/// Central's state behind its one lock, and the figures published each time it is released.
pub(crate) struct RoleLock {
    inner: Mutex<Inner>,
    published: Mutex<CentralFigures>,
    /// The network's banks, whose correspondent balances are published.
    banks: Vec<String>,
}

impl RoleLock {
    pub(crate) fn new(inner: Inner, banks: Vec<String>) -> RoleLock {
        let mut figures = CentralFigures::default();
        figures.refresh(&inner, &banks);
        RoleLock { inner: Mutex::new(inner), published: Mutex::new(figures), banks }
    }

    /// Take the role's lock; its release publishes the figures.
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked { guard: self.inner.lock(), lock: self }
    }

    /// The figures as of the last release of the role's lock: never waits for a step.
    pub(crate) fn figures(&self) -> CentralFigures {
        self.published.lock().clone()
    }
}

/// Central's lock, held. Derefs to the state.
pub(crate) struct Locked<'a> {
    guard: MutexGuard<'a, Inner>,
    lock: &'a RoleLock,
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
        self.lock.published.lock().refresh(&self.guard, &self.lock.banks);
    }
}
