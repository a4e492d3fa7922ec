//! Questions to another role and their answers, over any [`Transport`]: a role in a process
//! of its own asks another (a bank the directory or the oracle, the oracle the directory) and
//! waits for the answer its inbox hands here.
//!
//! A question is numbered by the asker ([`Questions::send`]), and the number comes back with
//! the answer ([`Questions::answer`]). A question unanswered is sent again every
//! `ask_again_after` until its deadline: lost on the way, or the other role restarted. Every
//! question must be safe to repeat. At most `waiting_max` questions wait at once.

use crate::Transport;
use dtenge_sync::oneshot;
use dtenge_wire::{Envelope, Message, RoleId};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Too many questions wait for their answers: ask again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyQuestions;

/// A role's questions to one other role, waiting for answers of type `A`.
pub struct Questions<A> {
    from: RoleId,
    to: RoleId,
    transport: Arc<dyn Transport>,
    /// The next question's number. Drawn from the clock at start, so that an answer to a
    /// question of an earlier run of the process (late on the network) is never taken for one
    /// of this run's.
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<A>>>,
    waiting_max: usize,
    ask_again_after: Duration,
}

/// A question sent, waiting for its answer.
pub struct Asked<A> {
    request: u64,
    receiver: oneshot::Receiver<A>,
}

impl<A> Questions<A> {
    /// `first_request`: a number no earlier run of this process used (the time in
    /// nanoseconds at start serves).
    pub fn new(
        from: RoleId,
        to: RoleId,
        transport: Arc<dyn Transport>,
        first_request: u64,
        waiting_max: usize,
        ask_again_after: Duration,
    ) -> Questions<A> {
        assert!(from != to, "a role asks another");
        assert!(waiting_max > 0, "room for one question at least");
        Questions {
            from,
            to,
            transport,
            next: AtomicU64::new(first_request),
            waiting: Mutex::new(HashMap::new()),
            waiting_max,
            ask_again_after,
        }
    }

    /// The role asked: only its answers are taken.
    pub fn asked(&self) -> &RoleId {
        &self.to
    }

    /// Send the question `message(number)` and wait for its answer until `wait` has passed,
    /// sending it again while none comes. `None`: unanswered, or too many questions wait.
    pub fn ask(&self, message: impl Fn(u64) -> Message, wait: Duration) -> Option<A> {
        let asked = self.send(&message).ok()?;
        self.wait(asked, &message, Instant::now() + wait)
    }

    /// Number the question, note who waits for its answer, and send it (a question lost on
    /// the way is sent again by [`Questions::wait`]).
    pub fn send(&self, message: &impl Fn(u64) -> Message) -> Result<Asked<A>, TooManyQuestions> {
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock();
            if waiting.len() >= self.waiting_max {
                return Err(TooManyQuestions);
            }
            waiting.insert(request, sender);
        }
        self.deliver(message(request));
        Ok(Asked { request, receiver })
    }

    /// Wait for a question's answer until `deadline`, sending it again every
    /// `ask_again_after` while none comes.
    pub fn wait(&self, asked: Asked<A>, message: &impl Fn(u64) -> Message, deadline: Instant) -> Option<A> {
        let Asked { request, receiver } = asked;
        let answer = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            match receiver.recv_timeout(left.min(self.ask_again_after)) {
                Ok(answer) => break Some(answer),
                Err(dtenge_sync::RecvTimeoutError::Timeout) => self.deliver(message(request)),
                Err(dtenge_sync::RecvTimeoutError::Disconnected) => break None,
            }
        };
        self.waiting.lock().remove(&request);
        answer
    }

    /// Hand the answer to question `request` to whoever waits for it. `from` is who sent it:
    /// only the role asked answers; anyone else's answer is dropped, unread.
    pub fn answer(&self, from: &RoleId, request: u64, answer: A) {
        if *from != self.to {
            return;
        }
        if let Some(waiting) = self.waiting.lock().remove(&request) {
            // The asker gave up already: nobody to tell.
            let _ = waiting.send(answer);
        }
    }

    /// How many questions wait for their answers.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }

    fn deliver(&self, message: Message) {
        let envelope = Envelope { from: self.from.clone(), to: self.to.clone(), message };
        // Lost: asked again while waiting.
        let _ = self.transport.send(envelope);
    }
}
