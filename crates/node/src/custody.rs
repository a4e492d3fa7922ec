//! Custodial keys at rest: envelope encryption.
//!
//! A bank keeps the keys of its custodial clients, millions of them: too many to live in an
//! HSM each. So each is sealed (AES-256-GCM) under the bank's data-encryption key, and only
//! that one key is kept by the vault (`dtenge-keys`): wrapped under a key-encryption key that
//! never leaves the HSM, or in the encrypted key store where there is no HSM. The store holds
//! sealed seeds only; a copy of the data directory alone opens none of them.
//!
//! The nonce is derived from the account's address rather than drawn: the core stays free of
//! randomness, and it is unique per sealing as GCM needs, because an address is the hash of
//! the key it seals, so one data-encryption key never seals two different seeds under one
//! nonce. The address is also the associated data: a sealed seed moved to another account's
//! row does not open.

use dtenge_core::crypto::{hash_parts, Address, SecretKey};
use dtenge_core::{Error, ErrorCode, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// A sealed seed: 32 bytes of ciphertext and GCM's 16-byte tag.
pub const SEALED_LEN: usize = 32 + 16;

/// A bank's data-encryption key for its custodial clients' keys.
#[derive(Clone)]
pub struct Custody {
    key: std::sync::Arc<LessSafeKey>,
}

impl Custody {
    pub fn new(key: [u8; 32]) -> Custody {
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("AES-256 takes a 32-byte key");
        Custody { key: std::sync::Arc::new(LessSafeKey::new(unbound)) }
    }

    /// Seal `key`'s seed for the account at its address.
    pub fn seal(&self, key: &SecretKey) -> Vec<u8> {
        let address = key.address();
        let mut sealed = key.seed().to_vec();
        self.key
            .seal_in_place_append_tag(nonce(&address), Aad::from(address.0 .0), &mut sealed)
            .expect("sealing 32 bytes cannot exceed GCM's limit");
        assert_eq!(sealed.len(), SEALED_LEN);
        sealed
    }

    /// Open a seed sealed for `address`: `STORAGE_FAILURE` when it was sealed under another
    /// key (the vault gave another bank's key, or a key store not this store's) or for another
    /// account, or was altered.
    pub fn open(&self, address: &Address, sealed: &[u8]) -> Result<SecretKey> {
        let refused = || {
            Error::new(
                ErrorCode::StorageFailure,
                format!(
                    "the custodial key of {address} does not open with this bank's data-encryption key: \
                     the key store or HSM is not the one this store was written with, or the row was altered"
                ),
            )
        };
        if sealed.len() != SEALED_LEN {
            return Err(refused());
        }
        let mut buffer = sealed.to_vec();
        let seed =
            self.key.open_in_place(nonce(address), Aad::from(address.0 .0), &mut buffer).map_err(|_| refused())?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| refused())?;
        let key = SecretKey::from_seed(seed);
        if key.address() != *address {
            return Err(refused());
        }
        Ok(key)
    }
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Custody(..)")
    }
}

fn nonce(address: &Address) -> Nonce {
    let digest = hash_parts(b"dtenge/custody/nonce/v1", &[&address.0 .0]);
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&digest.0[..12]);
    Nonce::assume_unique_for_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_seed_opens_with_its_key_for_its_address_only() {
        let custody = Custody::new([1; 32]);
        let alice = SecretKey::from_seed([7; 32]);
        let bob = SecretKey::from_seed([8; 32]);
        let sealed = custody.seal(&alice);
        assert_eq!(sealed.len(), SEALED_LEN);
        assert!(!sealed.windows(32).any(|w| w == alice.seed()), "the seed is not in the clear");
        assert_eq!(custody.open(&alice.address(), &sealed).unwrap().seed(), alice.seed());
        let refused = [
            Custody::new([2; 32]).open(&alice.address(), &sealed),
            custody.open(&bob.address(), &sealed),
            custody.open(&alice.address(), &sealed[..40]),
            custody.open(&alice.address(), &{
                let mut altered = sealed.clone();
                altered[3] ^= 1;
                altered
            }),
        ];
        for result in refused {
            assert_eq!(result.err().map(|e| e.code), Some(ErrorCode::StorageFailure));
        }
    }
}
