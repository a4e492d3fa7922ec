//! Who waits for which delivered transaction: a gateway that answers a payment once the
//! payee's bank holds it waits here for that transaction, and only that transaction's
//! delivery wakes it.
//!
//! Why not one wake-up for every delivery: the gateway's requests in flight each waited for
//! "the next delivery" and then looked again, under the bank's lock, whether theirs had come;
//! with tens of requests in flight every delivery woke them all, and each took the lock the
//! bank's own steps need.

use dtenge_core::token::TxId;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Transactions applied from deliveries that are remembered for a later waiter: a waiter
/// comes within milliseconds of its payer's answer, and this covers seconds at the highest
/// rates measured.
pub const APPLIED_RECENT_MAX: usize = 65_536;

/// The transactions applied lately from deliveries, and the waiters for others.
#[derive(Default)]
pub(crate) struct Applied {
    state: Mutex<State>,
    /// Threads waiting ([`Applied::wait`]); woken at every delivery (they are few: a
    /// registry's or a console's step).
    threads: Condvar,
}

#[derive(Default)]
struct State {
    /// Deliveries of certified transactions applied since the bank opened.
    deliveries: u64,
    /// Newest last, at most [`APPLIED_RECENT_MAX`], with the same ids in `recent_set`.
    recent: VecDeque<TxId>,
    recent_set: HashSet<TxId>,
    /// Tasks waiting for a transaction. Bounded by the futures alive: each takes its waker
    /// out when it ends ([`AppliedFuture`]'s drop).
    waiting: HashMap<TxId, Vec<Waker>>,
}

impl Applied {
    pub(crate) fn deliveries(&self) -> u64 {
        self.state.lock().deliveries
    }

    /// A delivery's transactions are applied, durably: remember them and wake their waiters.
    pub(crate) fn delivered(&self, txs: &[TxId]) {
        let mut woken = Vec::new();
        {
            let mut state = self.state.lock();
            state.deliveries += 1;
            for tx_id in txs {
                if state.recent.len() == APPLIED_RECENT_MAX {
                    if let Some(oldest) = state.recent.pop_front() {
                        state.recent_set.remove(&oldest);
                    }
                }
                if state.recent_set.insert(*tx_id) {
                    state.recent.push_back(*tx_id);
                }
                woken.extend(state.waiting.remove(tx_id).unwrap_or_default());
            }
            assert_eq!(state.recent.len(), state.recent_set.len(), "the ring and its set hold the same ids");
            assert!(state.recent.len() <= APPLIED_RECENT_MAX);
        }
        self.threads.notify_all();
        for waker in woken {
            waker.wake();
        }
    }

    /// Block until `tx_id` is applied, at most `timeout`; whether it was.
    pub(crate) fn wait(&self, tx_id: &TxId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        // Bounded by the deadline: every round waits for a delivery or times out.
        loop {
            if state.recent_set.contains(tx_id) {
                return true;
            }
            if self.threads.wait_until(&mut state, deadline).timed_out() {
                return state.recent_set.contains(tx_id);
            }
        }
    }

    fn poll(&self, tx_id: &TxId, registered: &mut Option<Waker>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock();
        if state.recent_set.contains(tx_id) {
            if let Some(waker) = registered.take() {
                forget(&mut state, tx_id, &waker);
            }
            return Poll::Ready(());
        }
        let waiters = state.waiting.entry(*tx_id).or_default();
        match registered {
            Some(waker) if waker.will_wake(cx.waker()) && waiters.iter().any(|w| w.will_wake(waker)) => {}
            _ => {
                if let Some(old) = registered.take() {
                    waiters.retain(|w| !w.will_wake(&old));
                }
                waiters.push(cx.waker().clone());
                *registered = Some(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

fn forget(state: &mut State, tx_id: &TxId, waker: &Waker) {
    if let Some(waiters) = state.waiting.get_mut(tx_id) {
        waiters.retain(|w| !w.will_wake(waker));
        if waiters.is_empty() {
            state.waiting.remove(tx_id);
        }
    }
}

/// Ready once the bank has applied a transaction from a delivery, durably
/// ([`crate::BankService::applied`]).
pub struct AppliedFuture<'a> {
    applied: &'a Applied,
    tx_id: TxId,
    registered: Option<Waker>,
}

impl<'a> AppliedFuture<'a> {
    pub(crate) fn new(applied: &'a Applied, tx_id: TxId) -> AppliedFuture<'a> {
        AppliedFuture { applied, tx_id, registered: None }
    }
}

impl Future for AppliedFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.applied.poll(&this.tx_id, &mut this.registered, cx)
    }
}

impl Drop for AppliedFuture<'_> {
    fn drop(&mut self) {
        if let Some(waker) = self.registered.take() {
            forget(&mut self.applied.state.lock(), &self.tx_id, &waker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tx(n: u32) -> TxId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        TxId(dtenge_core::crypto::Hash32(bytes))
    }

    #[test]
    fn only_the_transactions_delivery_wakes_its_waiter_and_a_dropped_waiter_leaves_nothing() {
        let applied = Applied::default();
        let (a, b) = (Arc::new(Count(AtomicUsize::new(0))), Arc::new(Count(AtomicUsize::new(0))));
        let (waker_a, waker_b) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut for_a = Box::pin(AppliedFuture::new(&applied, tx(1)));
        let mut for_b = Box::pin(AppliedFuture::new(&applied, tx(2)));
        assert!(for_a.as_mut().poll(&mut Context::from_waker(&waker_a)).is_pending());
        assert!(for_a.as_mut().poll(&mut Context::from_waker(&waker_a)).is_pending(), "polled again: one waker kept");
        assert!(for_b.as_mut().poll(&mut Context::from_waker(&waker_b)).is_pending());
        applied.delivered(&[tx(3)]);
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (0, 0),
            "another transaction wakes no one"
        );
        applied.delivered(&[tx(1)]);
        assert_eq!((a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)), (1, 0));
        assert!(for_a.as_mut().poll(&mut Context::from_waker(&waker_a)).is_ready());
        drop(for_b);
        assert!(applied.state.lock().waiting.is_empty(), "the dropped waiter took its waker out");
        // Applied before anyone asks: ready at once, for a task and for a thread.
        assert!(Box::pin(AppliedFuture::new(&applied, tx(3)))
            .as_mut()
            .poll(&mut Context::from_waker(&waker_a))
            .is_ready());
        assert!(applied.wait(&tx(3), Duration::ZERO));
        assert!(!applied.wait(&tx(9), Duration::from_millis(1)));
        assert_eq!(applied.deliveries(), 2);
    }

    #[test]
    fn the_recent_transactions_are_bounded() {
        let applied = Applied::default();
        let ids: Vec<TxId> = (0..APPLIED_RECENT_MAX as u32 + 10).map(tx).collect();
        applied.delivered(&ids);
        let state = applied.state.lock();
        assert_eq!(state.recent.len(), APPLIED_RECENT_MAX);
        assert!(!state.recent_set.contains(&ids[0]), "the oldest went");
        assert!(state.recent_set.contains(&ids[ids.len() - 1]));
    }
}
