//! Roles of one process, each with a bounded inbox.

use crate::{SendError, Transport};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use dtenge_wire::{Envelope, RoleId};
use parking_lot::RwLock;
use std::collections::HashMap;

/// Most envelopes waiting in one role's inbox. A full inbox refuses more (the sender retries):
/// a role that falls behind slows its senders instead of growing without bound.
pub const INBOX_ENVELOPES_MAX: usize = 4_096;

/// Channels between the roles of one process.
#[derive(Default)]
pub struct InProcess {
    inboxes: RwLock<HashMap<RoleId, Sender<Envelope>>>,
}

impl InProcess {
    pub fn new() -> InProcess {
        InProcess::default()
    }

    /// Open `role`'s inbox; its envelopes arrive on the returned receiver. A role registers
    /// once (a second registration replaces the first: a restarted role gets a fresh inbox,
    /// and what was waiting in the old one is lost, as on a real restart).
    pub fn register(&self, role: RoleId) -> Receiver<Envelope> {
        let (sender, receiver) = crossbeam_channel::bounded(INBOX_ENVELOPES_MAX);
        self.inboxes.write().insert(role, sender);
        receiver
    }

    /// Close `role`'s inbox: envelopes for it are refused as unreachable.
    pub fn unregister(&self, role: &RoleId) {
        self.inboxes.write().remove(role);
    }
}

impl Transport for InProcess {
    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        let inboxes = self.inboxes.read();
        let Some(inbox) = inboxes.get(&envelope.to) else {
            return Err(SendError::Unreachable(envelope.to));
        };
        inbox.try_send(envelope).map_err(|e| match e {
            TrySendError::Full(envelope) => SendError::Full(envelope.to),
            TrySendError::Disconnected(envelope) => SendError::Unreachable(envelope.to),
        })
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
        let inbox = net.register(RoleId::Central);
        net.send(ack(RoleId::Central, 1)).unwrap();
        net.send(ack(RoleId::Central, 2)).unwrap();
        assert_eq!(inbox.try_recv().unwrap(), ack(RoleId::Central, 1));
        assert_eq!(inbox.try_recv().unwrap(), ack(RoleId::Central, 2));
        assert_eq!(net.send(ack(RoleId::Oracle, 3)), Err(SendError::Unreachable(RoleId::Oracle)));
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
