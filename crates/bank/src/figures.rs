//! The bank's running figures, published for monitoring without the role's lock.
//!
//! The role's one lock is held from a step's plan to its apply, durable commit included, so a
//! dashboard that read the node under it waited behind a batch's commit (up to 1.7 s under
//! load). Instead, the bank publishes its node's running figures (a few integers, each O(1) to
//! read) into a cell of their own, whose small lock is held only to copy them: where a step
//! applies a change to its node (before it answers anyone, so a client who heard "done" reads
//! figures that include it), and again each time the role's lock is released (whatever
//! changed the node). A reader never waits for a commit, and once the bank is quiet the
//! figures are exactly what a read under the role's lock returns.

use crate::state::Inner;
use dtenge_core::crypto::SecretKey;
use dtenge_core::Amount;
use dtenge_node::{Account, Delta, NodeState};
use parking_lot::{Mutex, MutexGuard};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

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

/// The cell the figures are published in, shared by the role's state and its readers.
#[derive(Clone)]
pub(crate) struct Publisher(Arc<Mutex<Figures>>);

impl Publisher {
    pub(crate) fn new(node: &NodeState) -> Publisher {
        Publisher(Arc::new(Mutex::new(Figures::of(node))))
    }

    fn publish(&self, node: &NodeState) {
        *self.0.lock() = Figures::of(node);
    }

    pub(crate) fn figures(&self) -> Figures {
        *self.0.lock()
    }
}

impl Inner {
    /// Apply a delta of a transaction the notary certified, and publish the figures.
    pub(crate) fn apply_certified(&mut self, delta: Delta) {
        self.node.apply(delta);
        self.published.publish(&self.node);
    }

    /// Open an account (its plan is durable), and publish the figures.
    pub(crate) fn apply_open(&mut self, account: Account, custodial_key: Option<&SecretKey>) {
        self.node.apply_open(account, custodial_key);
        self.published.publish(&self.node);
    }
}

/// The role's state behind its one lock; each release of the lock publishes the figures.
pub(crate) struct RoleLock {
    inner: Mutex<Inner>,
    published: Publisher,
}

impl RoleLock {
    pub(crate) fn new(inner: Inner) -> RoleLock {
        let published = inner.published.clone();
        RoleLock { inner: Mutex::new(inner), published }
    }

    /// Take the role's lock.
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked(self.inner.lock())
    }

    /// The figures as of the last change: never waits for a step.
    pub(crate) fn figures(&self) -> Figures {
        self.published.figures()
    }
}

/// The role's lock, held. Derefs to the state.
pub(crate) struct Locked<'a>(MutexGuard<'a, Inner>);

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
        // Whatever a step changed is published before the next step can start (the guard is
        // released after this body), so the last figures published are those the next step
        // finds, even for a change applied without `apply_certified` (bank money only today,
        // which changes none of the figures).
        self.0.published.publish(&self.0.node);
    }
}
