//! Tokens: unspent transaction outputs.
//!
//! A token commits to its value, owner, issuer and policy. The notary stores only its
//! [`TokenId`] (a hash of the creating transaction, the output index and the output itself), so
//! it learns no amounts and no parties; whoever spends a token presents the full preimage
//! ([`Input`]) and validators recompute the id.

use crate::crypto::{hash_parts, Address, Hash32};
use crate::money::Amount;
use serde::{Deserialize, Serialize};

/// The rule a token carries with it. Every validator enforces it from the token itself (an
/// encumbrance that travels with the money), so a node that ignores the rules cannot move
/// programmed money: any transaction that spends or creates a token with a policy other than
/// `Standard` commits only with the oracle's attestation (see `validate`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Plain DT, spendable by its owner's signature.
    Standard,
    /// Held (encumbered) against an oracle event: the token stays on its owner's account but
    /// moves only by the oracle's decision — released to the event's payees, or returned to
    /// the owner on expiry or rejection. The owner consented when it signed the hold.
    Held {
        /// [`event_hash`] of the oracle event the funds are held for.
        event: Hash32,
    },
    /// Marked for targeted use (marking by addresses, or by a contract registered on the
    /// oracle): spendable by its owner only towards what the marking allows, with the
    /// oracle's confirmation. At the last level the marking is removed.
    Marked {
        /// [`marking_hash`] of the marking (or contract) on the oracle.
        marking: Hash32,
        /// The level of the marking the owner is at (1 = the first recipients).
        level: u8,
    },
    /// VAT-marked DT (digital VAT): pays only the VAT part of an e-invoice to a registered VAT
    /// payer, or VAT to the tax authority's account, where it becomes standard.
    Vat,
}

impl Policy {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Policy::Standard => out.push(0),
            Policy::Held { event } => {
                out.push(1);
                out.extend_from_slice(&event.0);
            }
            Policy::Marked { marking, level } => {
                out.push(2);
                out.extend_from_slice(&marking.0);
                out.push(*level);
            }
            Policy::Vat => out.push(3),
        }
    }

    /// Must the owner sign to spend a token with this policy? Held tokens move by the
    /// oracle's decision alone (the owner consented when it held them); every other token
    /// needs its owner's signature.
    pub fn owner_signs(&self) -> bool {
        !matches!(self, Policy::Held { .. })
    }

    /// Does moving or creating a token with this policy need the oracle's confirmation?
    pub fn needs_oracle(&self) -> bool {
        !matches!(self, Policy::Standard)
    }

    pub fn is_standard(&self) -> bool {
        matches!(self, Policy::Standard)
    }

    /// The event this token is held for, if it is held.
    pub fn held_for(&self) -> Option<&Hash32> {
        match self {
            Policy::Held { event } => Some(event),
            _ => None,
        }
    }
}

/// The hash marked tokens name for the oracle marking (or contract) `marking_id`.
pub fn marking_hash(marking_id: &str) -> Hash32 {
    hash_parts(b"dtenge/oracle/marking/v1", &[marking_id.as_bytes()])
}

/// The hash a held token names for the oracle event `event_id`: tokens commit to it, so the
/// event cannot be swapped after the hold.
pub fn event_hash(event_id: &str) -> Hash32 {
    hash_parts(b"dtenge/oracle/event/v1", &[event_id.as_bytes()])
}

/// An output of a transaction: value, owner, issuer, policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Output {
    pub amount_tiyn: Amount,
    pub owner: Address,
    /// The issuing central bank's address (the NBK node key). Room for several issuers
    /// (cross-border PvP) without a format change.
    pub issuer: Address,
    pub policy: Policy,
}

impl Output {
    pub fn standard(amount: Amount, owner: Address, issuer: Address) -> Output {
        Output { amount_tiyn: amount, owner, issuer, policy: Policy::Standard }
    }

    /// A token held for the oracle event with hash `event`.
    pub fn held(amount: Amount, owner: Address, issuer: Address, event: Hash32) -> Output {
        Output { amount_tiyn: amount, owner, issuer, policy: Policy::Held { event } }
    }

    /// Canonical bytes: fixed layout, little-endian, policy tag last.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.amount_tiyn.tiyn().to_le_bytes());
        out.extend_from_slice(&self.owner.0 .0);
        out.extend_from_slice(&self.issuer.0 .0);
        self.policy.encode(out);
    }
}

/// Identifier of a transaction: hash of its canonical body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxId(pub Hash32);

/// Identifier of a token: what the notary stores (the "unspent hash").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(pub Hash32);

macro_rules! hash_newtype_display {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}
hash_newtype_display!(TxId);
hash_newtype_display!(TokenId);

impl TokenId {
    /// Add this id to a set hash of ids, or take it out (the same operation): the XOR of the
    /// ids, so a running value follows a set as ids come and go, in any order, and two roles'
    /// sets are compared by 32 bytes. The ids are hashes already, so two different sets
    /// collide by accident as rarely as the hash does (a check between roles that follow the
    /// protocol, not against one choosing ids to collide).
    pub fn toggle_in(&self, set_hash: &mut crate::crypto::Hash32) {
        for (byte, id) in set_hash.0.iter_mut().zip(self.0 .0.iter()) {
            *byte ^= *id;
        }
    }

    /// The id of output `index` of transaction `tx_id`. Including the tx id and index makes
    /// two outputs of equal value and owner distinct.
    pub fn of(tx_id: &TxId, index: u32, output: &Output) -> TokenId {
        let mut bytes = Vec::with_capacity(96);
        output.encode(&mut bytes);
        TokenId(hash_parts(b"dtenge/token/v1", &[&tx_id.0 .0, &index.to_le_bytes(), &bytes]))
    }

    /// Shard of the notary that owns this token: its first byte.
    pub fn shard(&self) -> u8 {
        self.0 .0[0]
    }
}

/// A reference to a token together with its full preimage: what a transaction spends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Input {
    pub tx_id: TxId,
    pub index: u32,
    pub output: Output,
}

impl Input {
    pub fn token_id(&self) -> TokenId {
        TokenId::of(&self.tx_id, self.index, &self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_outputs_at_different_indices_have_distinct_ids() {
        let owner = Address(Hash32([1; 32]));
        let issuer = Address(Hash32([2; 32]));
        let out = Output::standard(Amount::from_tiyn(100).unwrap(), owner, issuer);
        let tx = TxId(Hash32([3; 32]));
        assert_ne!(TokenId::of(&tx, 0, &out), TokenId::of(&tx, 1, &out));
        let mut other = out.clone();
        other.amount_tiyn = Amount::from_tiyn(101).unwrap();
        assert_ne!(TokenId::of(&tx, 0, &out), TokenId::of(&tx, 0, &other));
    }
}
