//! Roles of one process, each with a bounded inbox.

use crate::{SendError, Transport};
use dtenge_sync::{Queue, TryPushError, TryRecvError};
use dtenge_wire::{Envelope, RoleId};
use parking_lot::RwLock;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Most envelopes waiting in one role's inbox. A full inbox refuses more (the sender retries):
/// a role that falls behind slows its senders instead of growing without bound.
pub const INBOX_ENVELOPES_MAX: usize = 4_096;

/// Envelopes an inbox thread takes from its queue at once.
const TAKE_ENVELOPES_MAX: usize = 64;

/// Queues between the roles of one process. A role's thread sleeps on its queue at once when
/// it is empty (`dtenge-sync`), instead of spinning and yielding first as a channel would.
#[derive(Default)]
pub struct InProcess {
    inboxes: RwLock<HashMap<RoleId, Arc<Queue<Envelope>>>>,
}

/// A role's inbox: its envelopes in the order they were sent, until it is unregistered (or
/// dropped: envelopes for it are then refused as unreachable).
pub struct Inbox {
    queue: Arc<Queue<Envelope>>,
    taken: VecDeque<Envelope>,
}

impl Inbox {
    /// The next envelope waiting, if any.
    pub fn try_recv(&mut self) -> Result<Envelope, TryRecvError> {
        match self.taken.pop_front() {
            Some(envelope) => Ok(envelope),
            None => self.queue.try_pop(),
        }
    }
}

/// Waits for each envelope; ends once the inbox is closed and empty.
impl Iterator for Inbox {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        if self.taken.is_empty() {
            let mut taken = Vec::with_capacity(TAKE_ENVELOPES_MAX);
            if !self.queue.take(TAKE_ENVELOPES_MAX, &mut taken) {
                return None;
            }
            self.taken.extend(taken);
        }
        self.taken.pop_front()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl InProcess {
    pub fn new() -> InProcess {
        InProcess::default()
    }

    /// Open `role`'s inbox; its envelopes arrive on the returned receiver. A role registers
    /// once (a second registration replaces the first: a restarted role gets a fresh inbox,
    /// and what was waiting in the old one is lost, as on a real restart).
    pub fn register(&self, role: RoleId) -> Inbox {
        let queue = Arc::new(Queue::new(INBOX_ENVELOPES_MAX));
        if let Some(old) = self.inboxes.write().insert(role, queue.clone()) {
            old.close();
        }
        Inbox { queue, taken: VecDeque::new() }
    }

    /// Deliver what arrives for `alias` to `role`'s inbox too (a notary replica takes what
    /// arrives for the notary). `role` must be registered.
    pub fn alias(&self, alias: RoleId, role: &RoleId) {
        let mut inboxes = self.inboxes.write();
        let queue = inboxes.get(role).expect("an alias of a registered role").clone();
        inboxes.insert(alias, queue);
    }

    /// Close `role`'s inbox: envelopes for it are refused as unreachable, and its thread
    /// ends once it took what was waiting.
    pub fn unregister(&self, role: &RoleId) {
        if let Some(queue) = self.inboxes.write().remove(role) {
            queue.close();
        }
    }
}

impl InProcess {
    /// As `send`, but an envelope that was not taken comes back with the reason, so that a
    /// network transport delivering to this process can wait for room instead of losing it.
    // Why the large error: it is the envelope itself, handed back by value, not a copy.
    #[allow(clippy::result_large_err)]
    pub fn try_deliver(&self, envelope: Envelope) -> Result<(), (SendError, Envelope)> {
        let inboxes = self.inboxes.read();
        let Some(inbox) = inboxes.get(&envelope.to) else {
            return Err((SendError::Unreachable(envelope.to.clone()), envelope));
        };
        inbox.try_push(envelope).map_err(|e| match e {
            TryPushError::Full(envelope) => (SendError::Full(envelope.to.clone()), envelope),
            TryPushError::Closed(envelope) => (SendError::Unreachable(envelope.to.clone()), envelope),
        })
    }
}

impl Transport for InProcess {
    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        self.try_deliver(envelope).map_err(|(error, _)| error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_wire::{DeliverAck, Message};

    fn ack(to: RoleId, seq: u64) -> Envelope {
        Envelope { from: RoleId::Notary, to, message: Message::DeliverAck(DeliverAck { seq }) }
    }

    #[test]
    fn an_envelope_reaches_its_role_in_order_and_an_unknown_role_is_unreachable() {
        let net = InProcess::new();
        let mut inbox = net.register(RoleId::Central);
        net.send(ack(RoleId::Central, 1)).unwrap();
        net.send(ack(RoleId::Central, 2)).unwrap();
        assert_eq!(inbox.try_recv().unwrap(), ack(RoleId::Central, 1));
        assert_eq!(inbox.try_recv().unwrap(), ack(RoleId::Central, 2));
        assert_eq!(net.send(ack(RoleId::Oracle, 3)), Err(SendError::Unreachable(RoleId::Oracle)));
        drop(inbox);
        assert_eq!(net.send(ack(RoleId::Central, 3)), Err(SendError::Unreachable(RoleId::Central)), "a dropped inbox");
    }

    #[test]
    fn a_full_inbox_refuses_instead_of_growing() {
        let net = InProcess::new();
        let _inbox = net.register(RoleId::Directory);
        for seq in 0..INBOX_ENVELOPES_MAX as u64 {
            net.send(ack(RoleId::Directory, seq)).unwrap();
        }
        assert_eq!(net.send(ack(RoleId::Directory, 0)), Err(SendError::Full(RoleId::Directory)));
    }
}
