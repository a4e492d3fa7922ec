//! `dtenge-notary-raft`: the notary replicated on Raft.
//!
//! Three replicas by default (any odd number up to [`NOTARY_REPLICAS_MAX`]), each its own
//! process with its own store, agree on one log with openraft (databend's Raft, an established
//! engine: dtenge implements only its storage and its network). What the log holds is what the
//! participants sent the notary, verbatim: each entry is a bank's (or central's) signed
//! notarize request, or central's operator decision, in the envelope it arrived in. So the log
//! is also the evidence: any replica, or an auditor with a copy, can verify every request's
//! signature again and replay the notary's decisions.
//!
//! **State machine** ([`Ledger`]): the notary's own rule, shared with the one-process notary
//! (`dtenge_notary::service::{check, spend, certify}`): the sender is the NBK or a bank not
//! blocked and signed the batch; no token is spent twice; a transaction committed before is
//! certified again. It is deterministic and in memory, so every replica computes the same
//! outcome and the same certificate number (`seq` lives in the state machine, never on the
//! leader outside the log). Only the leader signs the certificate (the replica that has a
//! caller waiting); Ed25519 is deterministic, so any replica would sign the same bytes.
//!
//! **Durability** ([`storage`]): an entry is acknowledged by a replica once it is fsync'd in
//! that replica's store, and a spend is answered only once a majority acknowledged it and the
//! leader applied it. The state machine is not written per entry: a replica restarts from its
//! last snapshot and replays its log to the commit index it saved. A replica too far behind
//! (or a new one) receives the leader's snapshot.
//!
//! **Network** ([`network`]): Raft's calls travel as envelopes between
//! `RoleId::NotaryReplica(n)`s over any `Transport` (in one process, the simulator, or
//! `dtenge-net`'s signed frames over mutual TLS), matched to their answers by number.
//!
//! **Towards the participants** ([`Replica::handle`]): a replica takes a participant's envelope
//! addressed to the notary; the leader proposes it, and once applied answers the participant as
//! [`RoleId::Notary`]; a follower hands it to the leader it knows ([`Message::Forwarded`]); with
//! no leader known (an election) a notarize request is answered "ask again"
//! (`REQUEST_IN_PROGRESS`), which a bank already handles: resending is safe because the notary
//! is idempotent per transaction.
//!
//! [`NOTARY_REPLICAS_MAX`]: dtenge_wire::message::NOTARY_REPLICAS_MAX
//! [`RoleId::Notary`]: dtenge_wire::RoleId::Notary
//! [`Message::Forwarded`]: dtenge_wire::Message::Forwarded

#![forbid(unsafe_code)]

mod command;
pub mod coordinator;
mod driver;
mod ledger;
pub mod network;
mod replica;
pub mod shard;
pub mod state;
pub mod storage;

pub use command::{Applied, Command};
pub use ledger::Ledger;
pub use replica::{Group, Replica, ReplicaConfig, ReplicaError, ReplicaStatus, Role, SNAPSHOT_LOGS};

openraft::declare_raft_types!(
    /// The replicated notary's types for openraft: its entries are participants' envelopes
    /// ([`Command`]), applying one answers the envelope to send back ([`Applied`]), replicas are
    /// numbered and found by their role on the transport (no address in the membership).
    pub NotaryRaft:
        D = Command,
        R = Applied,
        Node = openraft::EmptyNode,
);

/// A replica's number in openraft's terms.
pub type NodeId = u64;
pub type LogId = openraft::alias::LogIdOf<NotaryRaft>;
pub type Vote = openraft::alias::VoteOf<NotaryRaft>;
pub type Entry = <NotaryRaft as openraft::RaftTypeConfig>::Entry;
pub type Membership = openraft::alias::StoredMembershipOf<NotaryRaft>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<NotaryRaft>;
pub type Snapshot = openraft::alias::SnapshotOf<NotaryRaft, std::io::Cursor<Vec<u8>>>;
