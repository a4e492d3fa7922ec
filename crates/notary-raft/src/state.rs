//! What a replica's state machine holds, by the group it belongs to: the whole notary (one
//! group holds every token), the coordinator of a sharded notary, or one of its shards.

use crate::coordinator::CoordinatorLedger;
use crate::ledger::Ledger;
use crate::shard::ShardLedger;
use dtenge_core::crypto::NodeKey;
use dtenge_core::token::TxId;
use dtenge_core::Error;
use dtenge_notary::service::{NotaryReport, Senders};
use dtenge_wire::Envelope;

/// Which state machine a group runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The notary in one group: every token (the default).
    Whole,
    /// The notary coordinating `shards` shards: it numbers and certifies, the shards hold the
    /// tokens.
    Coordinator { shards: u8 },
    /// Shard `n` of a sharded notary.
    Shard(u8),
}

pub enum State {
    Whole(Ledger),
    Coordinator(CoordinatorLedger),
    Shard(ShardLedger),
}

impl State {
    pub fn new(kind: Kind, senders: Senders) -> State {
        match kind {
            Kind::Whole => State::Whole(Ledger::new(senders)),
            Kind::Coordinator { shards } => State::Coordinator(CoordinatorLedger::new(shards, senders)),
            Kind::Shard(n) => State::Shard(ShardLedger::new(n)),
        }
    }

    pub fn from_image(kind: Kind, image: &[u8], senders: Senders) -> Result<State, Error> {
        Ok(match kind {
            Kind::Whole => State::Whole(Ledger::from_image(image, senders)?),
            Kind::Coordinator { .. } => State::Coordinator(CoordinatorLedger::from_image(image, senders)?),
            Kind::Shard(_) => State::Shard(ShardLedger::from_image(image)?),
        })
    }

    pub fn image(&self) -> Vec<u8> {
        match self {
            State::Whole(ledger) => ledger.image(),
            State::Coordinator(ledger) => ledger.image(),
            State::Shard(ledger) => ledger.image(),
        }
    }

    /// Apply log entry `index`; the answer to send, on the replica a caller waits on (`key`:
    /// the notary's certificate key, present there only).
    pub fn apply(&mut self, envelope: &Envelope, index: u64, key: Option<&NodeKey>) -> Option<Envelope> {
        match self {
            State::Whole(ledger) => ledger.apply(envelope, key),
            State::Coordinator(ledger) => ledger.apply(envelope, index, key),
            // A shard answers whoever asked, on whichever replica proposed it.
            State::Shard(ledger) => ledger.apply(envelope).filter(|_| key.is_some()),
        }
    }

    pub fn report(&self) -> NotaryReport {
        match self {
            State::Whole(ledger) => ledger.report(),
            State::Coordinator(ledger) => ledger.report(),
            State::Shard(ledger) => ledger.report(),
        }
    }

    pub fn is_committed(&self, tx: &TxId) -> bool {
        match self {
            State::Whole(ledger) => ledger.is_committed(tx),
            State::Coordinator(ledger) => ledger.is_committed(tx),
            State::Shard(_) => false,
        }
    }
}
