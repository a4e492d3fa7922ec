//! Waits that park at once.
//!
//! General channels (crossbeam's, and std's, which is a port of it) spin and then call
//! `sched_yield` a few times before a receiver sleeps. That pays when the answer is a few
//! hundred nanoseconds away. dtenge's waits are for an fsync or a notary's answer,
//! milliseconds away, with tens of threads waiting at once on two cores: every yield is a
//! context switch to another thread, which in a virtual machine is the dearest thing a
//! thread can do. A profile of `dtenge up` under `dtenge bench --http` put a sixth of the
//! server's samples in those yields. The waits here take a mutex (held for a few
//! instructions) and sleep on a condition variable at once.
//!
//! - [`oneshot`]: one answer to one request, waited for by a thread
//!   ([`oneshot::Receiver::recv_timeout`]) or awaited by a task (it is a `Future`).
//! - [`Queue`]: a bounded many-to-one queue whose consumer takes everything waiting at once.
//! - [`run_as_batch_stage`]: the scheduling class of the threads that take those queues.
//!
//! The error types are crossbeam's, so that callers that matched on a channel's errors keep
//! their words.

pub use crossbeam_channel::{RecvError, RecvTimeoutError, TryRecvError};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod oneshot;
mod stage;

pub use stage::run_as_batch_stage;

/// Something an answer can be waited for on, at most `timeout`: a one-shot answer or a
/// channel, so that one helper waits on either.
pub trait RecvTimeout<T> {
    fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError>;
}

impl<T> RecvTimeout<T> for oneshot::Receiver<T> {
    fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        oneshot::Receiver::recv_timeout(self, timeout)
    }
}

impl<T> RecvTimeout<T> for crossbeam_channel::Receiver<T> {
    fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        crossbeam_channel::Receiver::recv_timeout(self, timeout)
    }
}

/// Lock a mutex whose holders never panic while holding it (they only move values in and
/// out): a poisoned one is a broken invariant.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned: a holder panicked"))
}

/// A bounded queue of many producers and one consumer, who takes every item waiting at once.
pub struct Queue<T> {
    state: Mutex<QueueState<T>>,
    /// Signalled when an item arrives or the queue closes.
    not_empty: Condvar,
    /// Signalled when the consumer took items or the queue closes.
    not_full: Condvar,
    capacity: usize,
}

struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Threads asleep on `not_empty` and on `not_full`: a notify is a system call, made only
    /// when someone sleeps.
    consumers_asleep: usize,
    producers_asleep: usize,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Queue<T> {
        assert!(capacity > 0, "a queue holds at least one item");
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.min(1_024)),
                closed: false,
                consumers_asleep: 0,
                producers_asleep: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity,
        }
    }

    /// Add `item`, waiting while the queue is full; `Err(item)` once it is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut state = lock(&self.state);
        while state.items.len() >= self.capacity && !state.closed {
            state.producers_asleep += 1;
            state = self.not_full.wait(state).unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned"));
            state.producers_asleep -= 1;
        }
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        assert!(state.items.len() <= self.capacity, "a queue never holds more than its capacity");
        self.arrived(state);
        Ok(())
    }

    /// Add `item` unless the queue is full or closed (then it is handed back).
    pub fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(TryPushError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(TryPushError::Full(item));
        }
        state.items.push_back(item);
        self.arrived(state);
        Ok(())
    }

    /// An item arrived: wake a sleeping consumer, if one sleeps.
    fn arrived(&self, state: MutexGuard<'_, QueueState<T>>) {
        let asleep = state.consumers_asleep > 0;
        drop(state);
        if asleep {
            self.not_empty.notify_one();
        }
    }

    /// Items left: wake the sleeping producers, if any sleep.
    fn left(&self, state: MutexGuard<'_, QueueState<T>>) {
        let asleep = state.producers_asleep > 0;
        drop(state);
        if asleep {
            self.not_full.notify_all();
        }
    }

    /// Take the first item waiting, if any.
    pub fn try_pop(&self) -> Result<T, TryRecvError> {
        let mut state = lock(&self.state);
        match state.items.pop_front() {
            Some(item) => {
                self.left(state);
                Ok(item)
            }
            None if state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Take at most `max` items into `into`, waiting until there is one; `false` once the
    /// queue is closed and empty.
    pub fn take(&self, max: usize, into: &mut Vec<T>) -> bool {
        assert!(max > 0, "take at least one item");
        let mut state = lock(&self.state);
        while state.items.is_empty() && !state.closed {
            state.consumers_asleep += 1;
            state = self.not_empty.wait(state).unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned"));
            state.consumers_asleep -= 1;
        }
        if state.items.is_empty() {
            return false;
        }
        let take = state.items.len().min(max);
        into.extend(state.items.drain(..take));
        self.left(state);
        true
    }

    /// Wait at most `timeout` for an item; `Ok(true)` when one is waiting (not taken).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            if !state.items.is_empty() {
                return Ok(true);
            }
            if state.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state.consumers_asleep += 1;
            state = self
                .not_empty
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned"))
                .0;
            state.consumers_asleep -= 1;
        }
    }

    /// No more items: producers get their item back, the consumer takes what is left and
    /// then `false`.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    pub fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why [`Queue::try_push`] handed its item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPushError<T> {
    Full(T),
    Closed(T),
}

/// A wake-up for one waiting thread that is never lost: [`Signal::notify`] before a wait makes the wait return at
/// once; many notifies before one wait are one wake-up (a worker that takes everything
/// waiting when woken needs no more).
#[derive(Default)]
pub struct Signal {
    /// Raised, and whether the waiter sleeps (a notify is a system call, made only then).
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Signal {
    pub fn new() -> Signal {
        Signal::default()
    }

    pub fn notify(&self) {
        let mut state = lock(&self.state);
        let (raised, asleep) = &mut *state;
        if *raised {
            return;
        }
        *raised = true;
        let asleep = *asleep;
        drop(state);
        if asleep {
            self.changed.notify_one();
        }
    }

    /// Wait at most `timeout` for a notify, and lower the signal; `true` when it was raised.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while !state.0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state.1 = true;
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned"))
                .0;
            state.1 = false;
        }
        state.0 = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_queue_hands_over_everything_in_order_and_bounds_its_length() {
        let queue = Arc::new(Queue::new(4));
        let producer = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for i in 0..1_000u32 {
                    queue.push(i).unwrap();
                }
                queue.close();
            })
        };
        let mut taken = Vec::new();
        let mut batch = Vec::new();
        while queue.take(3, &mut batch) {
            assert!(batch.len() <= 3);
            taken.append(&mut batch);
        }
        producer.join().unwrap();
        assert_eq!(taken, (0..1_000).collect::<Vec<_>>());
        assert_eq!(queue.push(7), Err(7), "a closed queue takes nothing");
    }

    #[test]
    fn a_full_queue_refuses_a_try_push_and_a_closed_one_every_push() {
        let queue = Queue::new(1);
        assert_eq!(queue.try_push(1), Ok(()));
        assert_eq!(queue.try_push(2), Err(TryPushError::Full(2)));
        assert_eq!(queue.try_pop(), Ok(1));
        assert_eq!(queue.try_pop(), Err(TryRecvError::Empty));
        queue.close();
        assert_eq!(queue.try_push(3), Err(TryPushError::Closed(3)));
        assert_eq!(queue.try_pop(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_signal_raised_before_the_wait_is_not_lost_and_counts_once() {
        let signal = Arc::new(Signal::new());
        signal.notify();
        signal.notify();
        assert!(signal.wait_timeout(Duration::from_millis(1)));
        assert!(!signal.wait_timeout(Duration::from_millis(1)), "two notifies are one wake-up");
        let raiser = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.notify())
        };
        assert!(signal.wait_timeout(Duration::from_secs(10)));
        raiser.join().unwrap();
    }

    #[test]
    fn waiting_on_an_empty_queue_times_out_and_sees_an_item_or_the_close() {
        let queue = Queue::new(2);
        assert!(matches!(queue.wait_timeout(Duration::from_millis(5)), Ok(false)));
        queue.push(1).unwrap();
        assert!(matches!(queue.wait_timeout(Duration::from_millis(5)), Ok(true)));
        let mut items = Vec::new();
        assert!(queue.take(8, &mut items));
        queue.close();
        assert!(matches!(queue.wait_timeout(Duration::from_millis(5)), Err(RecvTimeoutError::Disconnected)));
        assert!(!queue.take(8, &mut items));
    }
}
