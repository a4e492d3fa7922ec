//! The network's trust anchors as a validator holds them: the issuer, the NBK's and the
//! oracle's keys, every bank's node key, which banks are blocked, and the notary's key.
//!
//! Each role keeps its own copy (no role reads another's memory): the NBK distributes changes
//! (a new bank, a block) as messages, and a validator checks every transaction and certificate
//! it is given against its copy.

use crate::crypto::{Address, PublicKey};
use crate::validate::{Authorities, KeyStatus};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchors {
    /// The issuer address every DT token carries (the NBK node's).
    pub issuer: Address,
    pub central_bank: PublicKey,
    pub oracle: PublicKey,
    pub notary: PublicKey,
    /// Bank (or Treasury) id -> its node key.
    pub banks: BTreeMap<String, PublicKey>,
    pub blocked: BTreeSet<String>,
}

impl Anchors {
    /// The bank whose node key `key` is.
    pub fn bank_of_key(&self, key: &PublicKey) -> Option<&str> {
        self.banks.iter().find(|(_, k)| *k == key).map(|(id, _)| id.as_str())
    }
}

impl Authorities for Anchors {
    fn issuer(&self) -> Address {
        self.issuer
    }

    fn key_status(&self, key: &PublicKey) -> KeyStatus {
        if *key == self.central_bank {
            return KeyStatus::CentralBank;
        }
        if *key == self.oracle {
            return KeyStatus::Oracle;
        }
        match self.bank_of_key(key) {
            Some(bank) if self.blocked.contains(bank) => KeyStatus::BlockedNode,
            Some(_) => KeyStatus::ActiveNode,
            None => KeyStatus::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn each_key_has_its_standing_and_a_blocked_bank_is_blocked() {
        let key = |b: u8| SecretKey::from_seed([b; 32]).public_key();
        let mut anchors = Anchors {
            issuer: SecretKey::from_seed([1; 32]).address(),
            central_bank: key(1),
            oracle: key(2),
            notary: key(3),
            banks: [("steppe".to_string(), key(4))].into_iter().collect(),
            blocked: BTreeSet::new(),
        };
        assert_eq!(anchors.key_status(&key(1)), KeyStatus::CentralBank);
        assert_eq!(anchors.key_status(&key(2)), KeyStatus::Oracle);
        assert_eq!(anchors.key_status(&key(4)), KeyStatus::ActiveNode);
        assert_eq!(anchors.key_status(&key(9)), KeyStatus::Unknown);
        anchors.blocked.insert("steppe".into());
        assert_eq!(anchors.key_status(&key(4)), KeyStatus::BlockedNode);
        assert_eq!(anchors.bank_of_key(&key(4)), Some("steppe"));
    }
}
