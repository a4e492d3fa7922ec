//! The replicated notary's own messages (kinds 80-99), between its replicas only.
//!
//! - [`RaftRpc`] as a request (kind 80) and as its reply (kind 81): one of Raft's calls
//!   (append entries, vote, install a snapshot) from one replica to another, and its answer,
//!   matched by `id`, which the caller draws. The body is the consensus engine's own message
//!   (openraft's, serialized by `dtenge-notary-raft`): this crate carries it and does not read
//!   it, as TLS carries HTTP. What makes it trustworthy is the frame around it: signed by the
//!   sending replica's certified key, on a mutually authenticated connection.
//! - [`Message::Forwarded`](crate::Message::Forwarded) (kind 82): a replica that is not the
//!   leader hands a participant's envelope (a bank's notarize request, central's decision) to
//!   the leader, which answers the participant itself, as the notary.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};

/// Which of Raft's calls an [`RaftRpc`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaftCall {
    AppendEntries,
    Vote,
    /// A whole snapshot, for a replica too far behind to catch up from the log.
    InstallSnapshot,
}

/// One Raft call or its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftRpc {
    /// The caller's number for the call; the answer carries it back.
    pub id: u64,
    pub call: RaftCall,
    /// The engine's message, as the engine serialized it.
    pub body: Vec<u8>,
}

impl Encode for RaftRpc {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
        w.u8(match self.call {
            RaftCall::AppendEntries => 1,
            RaftCall::Vote => 2,
            RaftCall::InstallSnapshot => 3,
        });
        w.bytes(&self.body);
    }
}

impl Decode for RaftRpc {
    const ENCODED_BYTES_MIN: usize = 8 + 1 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u64("raft call id")?;
        let call = match r.u8("raft call")? {
            1 => RaftCall::AppendEntries,
            2 => RaftCall::Vote,
            3 => RaftCall::InstallSnapshot,
            tag => return Err(DecodeError::UnknownTag { what: "raft call", tag: u64::from(tag) }),
        };
        let body = r.bytes("raft call body")?.to_vec();
        Ok(RaftRpc { id, call, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Envelope, Message, NotarizeRequest, RoleId};

    fn round_trip(envelope: Envelope) {
        let bytes = envelope.to_bytes();
        assert_eq!(Envelope::from_bytes(&bytes).unwrap(), envelope);
    }

    #[test]
    fn raft_calls_their_answers_and_forwarded_envelopes_round_trip() {
        let rpc = RaftRpc { id: 7, call: RaftCall::InstallSnapshot, body: vec![1, 2, 3] };
        round_trip(Envelope {
            from: RoleId::NotaryReplica(1),
            to: RoleId::NotaryReplica(3),
            message: Message::RaftRequest(rpc.clone()),
        });
        round_trip(Envelope {
            from: RoleId::NotaryReplica(3),
            to: RoleId::NotaryReplica(1),
            message: Message::RaftReply(rpc),
        });
        let signature = dtenge_core::crypto::SecretKey::from_seed([5; 32]).sign(b"batch");
        let request = NotarizeRequest { batch: 9, txs: vec![], signature };
        let original = Envelope {
            from: RoleId::Bank("steppe".into()),
            to: RoleId::Notary,
            message: Message::NotarizeRequest(request),
        };
        round_trip(Envelope {
            from: RoleId::NotaryReplica(2),
            to: RoleId::NotaryReplica(1),
            message: Message::Forwarded(Box::new(original)),
        });
    }

    #[test]
    fn a_forwarded_envelope_inside_a_forwarded_one_is_refused() {
        let inner = Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::DeliverAck(crate::DeliverAck { seq: 1 }),
        };
        let once = Envelope {
            from: RoleId::NotaryReplica(2),
            to: RoleId::NotaryReplica(1),
            message: Message::Forwarded(Box::new(inner)),
        };
        let twice = Envelope {
            from: RoleId::NotaryReplica(3),
            to: RoleId::NotaryReplica(1),
            message: Message::Forwarded(Box::new(once)),
        };
        assert!(Envelope::from_bytes(&twice.to_bytes()).is_err());
    }

    #[test]
    fn a_replica_number_outside_one_to_seven_is_refused() {
        assert_eq!("notary-replica:3".parse::<RoleId>().unwrap(), RoleId::NotaryReplica(3));
        assert!("notary-replica:0".parse::<RoleId>().is_err());
        assert!("notary-replica:8".parse::<RoleId>().is_err());
        let mut bytes = Envelope {
            from: RoleId::NotaryReplica(7),
            to: RoleId::Notary,
            message: Message::DeliverAck(crate::DeliverAck { seq: 1 }),
        }
        .to_bytes();
        assert!(Envelope::from_bytes(&bytes).is_ok());
        // The replica's number follows the format version and the role's tag.
        assert_eq!(bytes[2], 7);
        bytes[2] = 8;
        assert!(Envelope::from_bytes(&bytes).is_err());
    }
}
