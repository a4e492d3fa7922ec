//! One answer to one request. The sender may be cloned (a request can be answered from
//! several places, such as a first answer and a repeat's); the first answer sent is the one
//! received. When every sender is gone without answering, the receiver is told
//! (`Disconnected`), as a channel would.

use super::{lock, RecvError, RecvTimeoutError, TryRecvError};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct Slot<T> {
    state: Mutex<State<T>>,
    answered: Condvar,
}

struct State<T> {
    value: Option<T>,
    /// The answer was sent (and perhaps taken already).
    sent: bool,
    /// Senders alive.
    senders: usize,
    /// The task awaiting the answer, if a task awaits it.
    waker: Option<Waker>,
    /// A thread sleeps on the condition variable (a notify is a system call, made only then).
    asleep: bool,
}

/// A new one-shot channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State { value: None, sent: false, senders: 1, waker: None, asleep: false }),
        answered: Condvar::new(),
    });
    (Sender(slot.clone()), Receiver(slot))
}

pub struct Sender<T>(Arc<Slot<T>>);

pub struct Receiver<T>(Arc<Slot<T>>);

impl<T> Sender<T> {
    /// Answer; `Err(value)` when an answer was sent before (this one is dropped).
    pub fn send(&self, value: T) -> Result<(), T> {
        let mut state = lock(&self.0.state);
        if state.sent {
            return Err(value);
        }
        state.sent = true;
        state.value = Some(value);
        self.0.wake(state);
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        lock(&self.0.state).senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.senders -= 1;
        if state.senders > 0 || state.sent {
            return;
        }
        self.0.wake(state);
    }
}

impl<T> Slot<T> {
    /// The answer came, or never will: wake whoever waits, a sleeping thread or a task.
    fn wake(&self, mut state: std::sync::MutexGuard<'_, State<T>>) {
        let (waker, asleep) = (state.waker.take(), state.asleep);
        drop(state);
        if asleep {
            self.answered.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}

impl<T> Receiver<T> {
    /// The answer, if it came; `Disconnected` when it never will.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut state = lock(&self.0.state);
        match state.value.take() {
            Some(value) => Ok(value),
            None if state.sent || state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Wait for the answer.
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut state = lock(&self.0.state);
        loop {
            if let Some(value) = state.value.take() {
                return Ok(value);
            }
            if state.sent || state.senders == 0 {
                return Err(RecvError);
            }
            state.asleep = true;
            state = self.0.answered.wait(state).unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned"));
            state.asleep = false;
        }
    }

    /// Wait at most `timeout` for the answer.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.0.state);
        loop {
            if let Some(value) = state.value.take() {
                return Ok(value);
            }
            if state.sent || state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            state.asleep = true;
            state = self
                .0
                .answered
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|_| panic!("a dtenge-sync mutex was poisoned"))
                .0;
            state.asleep = false;
        }
    }
}

/// Awaiting the receiver gives the answer, or `RecvError` when it will never come.
impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.0.state);
        if let Some(value) = state.value.take() {
            return Poll::Ready(Ok(value));
        }
        if state.sent || state.senders == 0 {
            return Poll::Ready(Err(RecvError));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    #[test]
    fn the_first_answer_is_received_and_a_second_is_refused() {
        let (sender, receiver) = channel();
        let other = sender.clone();
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        sender.send(1).unwrap();
        assert_eq!(other.send(2), Err(2));
        assert_eq!(receiver.recv_timeout(Duration::from_millis(1)), Ok(1));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected), "taken already");
    }

    #[test]
    fn a_waiting_thread_is_woken_by_the_answer_and_told_when_none_will_come() {
        let (sender, receiver) = channel();
        let answering = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            sender.send("done").unwrap();
        });
        assert_eq!(receiver.recv(), Ok("done"));
        answering.join().unwrap();
        let (sender, receiver) = channel::<u8>();
        assert_eq!(receiver.recv_timeout(Duration::from_millis(2)), Err(RecvTimeoutError::Timeout));
        let twin = sender.clone();
        drop(sender);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty), "a sender is still alive");
        drop(twin);
        assert_eq!(receiver.recv(), Err(RecvError));
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn an_awaiting_task_is_woken_by_the_answer() {
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let (sender, mut receiver) = channel();
        assert_eq!(Pin::new(&mut receiver).poll(&mut cx), Poll::Pending);
        sender.send(5u8).unwrap();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "the answer wakes the task");
        assert_eq!(Pin::new(&mut receiver).poll(&mut cx), Poll::Ready(Ok(5)));
        let (sender, mut receiver) = channel::<u8>();
        assert_eq!(Pin::new(&mut receiver).poll(&mut cx), Poll::Pending);
        drop(sender);
        assert_eq!(Pin::new(&mut receiver).poll(&mut cx), Poll::Ready(Err(RecvError)));
    }
}
