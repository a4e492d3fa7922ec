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
use crate::message::BATCH_TXS_MAX;
use dtenge_core::certificate::CompactTx;

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

/// Prepare these transactions' parts in the receiving shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPrepare {
    pub id: u64,
    /// Each transaction with only the inputs and outputs in the shard's range.
    pub txs: Vec<CompactTx>,
}

/// Per transaction of a [`ShardPrepare`], in order: `None` if prepared (its inputs locked),
/// or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPrepared {
    pub id: u64,
    pub refusals: Vec<Option<dtenge_core::Error>>,
}

/// Apply (`true`) or discard each prepared transaction of batch `id`, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardFinish {
    pub id: u64,
    pub commit: Vec<bool>,
}

/// Batch `id` is finished in this shard (or was before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardFinished {
    pub id: u64,
}

impl Encode for ShardPrepare {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
        w.seq(&self.txs);
    }
}

impl Decode for ShardPrepare {
    const ENCODED_BYTES_MIN: usize = 8 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ShardPrepare { id: r.u64("batch id")?, txs: r.seq("shard transactions", BATCH_TXS_MAX)? })
    }
}

impl Encode for ShardPrepared {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
        w.seq(&self.refusals);
    }
}

impl Decode for ShardPrepared {
    const ENCODED_BYTES_MIN: usize = 8 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ShardPrepared { id: r.u64("batch id")?, refusals: r.seq("shard refusals", BATCH_TXS_MAX)? })
    }
}

impl Encode for ShardFinish {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
        w.seq(&self.commit);
    }
}

impl Decode for ShardFinish {
    const ENCODED_BYTES_MIN: usize = 8 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ShardFinish { id: r.u64("batch id")?, commit: r.seq("shard decisions", BATCH_TXS_MAX)? })
    }
}

impl Encode for ShardFinished {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
    }
}

impl Decode for ShardFinished {
    const ENCODED_BYTES_MIN: usize = 8;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ShardFinished { id: r.u64("batch id")? })
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
    fn the_two_phase_commits_messages_round_trip() {
        let shard = RoleId::NotaryShard { shard: 2, replica: 3 };
        let tx = CompactTx {
            tx_id: dtenge_core::token::TxId(dtenge_core::crypto::Hash32([1; 32])),
            inputs: vec![],
            outputs: vec![],
        };
        let refused = Some(dtenge_core::Error::new(dtenge_core::ErrorCode::DoubleSpend, "spent"));
        for message in [
            Message::ShardPrepare(ShardPrepare { id: 4, txs: vec![tx] }),
            Message::ShardPrepared(ShardPrepared { id: 4, refusals: vec![None, refused.clone()] }),
            Message::ShardFinish(ShardFinish { id: 4, commit: vec![true, false] }),
            Message::ShardFinished(ShardFinished { id: 4 }),
            Message::ShardDecide(ShardPrepared { id: 4, refusals: vec![refused] }),
            Message::ShardDone(ShardFinished { id: 4 }),
        ] {
            round_trip(Envelope { from: RoleId::NotaryReplica(1), to: shard.clone(), message });
        }
        assert_eq!("notary-shard:2:3".parse::<RoleId>().unwrap(), shard);
        assert!("notary-shard:0:1".parse::<RoleId>().is_err());
        assert!("notary-shard:2:8".parse::<RoleId>().is_err());
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
