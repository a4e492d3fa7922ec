//! Keys, signatures, hashes and addresses.
//!
//! Every key and signature carries an algorithm id so that GOST R 34.10 can be added beside
//! Ed25519 without changing the wire format. Key generation takes a seed: randomness is the
//! caller's business (the core stays deterministic).

use crate::{ensure, Error, ErrorCode, Result};
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! hex_bytes {
    ($name:ident, $len:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            pub fn from_hex(text: &str) -> Result<Self> {
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(text, &mut bytes).map_err(|e| {
                    Error::malformed(format!("expected {} hex characters for {}: {e}", $len * 2, stringify!($name)))
                })?;
                Ok($name(bytes))
            }
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16])
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    // On the stack: a transaction's JSON has a dozen of these.
                    let mut text = [0u8; $len * 2];
                    hex::encode_to_slice(self.0, &mut text).map_err(serde::ser::Error::custom)?;
                    s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                if d.is_human_readable() {
                    // Decoded from the text the parser holds, without a String of its own.
                    struct Hex;
                    impl<'de> serde::de::Visitor<'de> for Hex {
                        type Value = $name;
                        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                            write!(f, "{} hex characters", $len * 2)
                        }
                        fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<$name, E> {
                            $name::from_hex(text).map_err(E::custom)
                        }
                    }
                    d.deserialize_str(Hex)
                } else {
                    let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
                    let array: [u8; $len] = bytes.try_into().map_err(|_| serde::de::Error::custom("wrong length"))?;
                    Ok($name(array))
                }
            }
        }
    };
}

hex_bytes!(Hash32, 32, "A SHA-256 hash, 64 lowercase hex characters.");
hex_bytes!(SignatureBytes, 64, "Signature bytes, 128 lowercase hex characters.");

/// SHA-256 over a domain tag and parts. Domain tags keep hashes of different kinds apart.
pub fn hash_parts(domain: &[u8], parts: &[&[u8]]) -> Hash32 {
    let mut hasher = Sha256::new();
    hasher.update((domain.len() as u32).to_le_bytes());
    hasher.update(domain);
    for part in parts {
        hasher.update(part);
    }
    Hash32(hasher.finalize().into())
}

/// Signature algorithms. The numeric id is part of the canonical encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigAlg {
    Ed25519,
}

impl SigAlg {
    pub fn id(self) -> u8 {
        match self {
            SigAlg::Ed25519 => 1,
        }
    }
}

/// A public key with its algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey {
    pub alg: SigAlg,
    pub key: Hash32,
}

impl PublicKey {
    /// The address this key controls: a hash of the algorithm and the key.
    pub fn address(&self) -> Address {
        Address(hash_parts(b"dtenge/address/v1", &[&[self.alg.id()], &self.key.0]))
    }
}

/// A signature with its algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub alg: SigAlg,
    pub sig: SignatureBytes,
}

/// A public address: the hash of a public key. Tokens are owned by addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(pub Hash32);

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A secret signing key. Never serialized to the API; stored by custodial nodes only.
#[derive(Clone)]
pub struct SecretKey {
    inner: ed25519_dalek::SigningKey,
}

impl SecretKey {
    /// Derive a key from 32 bytes of seed material supplied by the caller's RNG.
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey { inner: ed25519_dalek::SigningKey::from_bytes(&seed) }
    }
    pub fn seed(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }
    pub fn public_key(&self) -> PublicKey {
        PublicKey { alg: SigAlg::Ed25519, key: Hash32(self.inner.verifying_key().to_bytes()) }
    }
    pub fn address(&self) -> Address {
        self.public_key().address()
    }
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature { alg: SigAlg::Ed25519, sig: SignatureBytes(self.inner.sign(message).to_bytes()) }
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.address())
    }
}

/// What signs for a participant: a key in this process's memory ([`SecretKey`]) or one that
/// never leaves an HSM (`dtenge-keys`). Signing cannot fail by its input; a signer that cannot
/// reach its device stops the process (as a failed `fsync` does): the roles' work is durable
/// before it is answered, so a restart loses nothing.
pub trait Sign: Send + Sync {
    fn public_key(&self) -> PublicKey;
    fn sign(&self, message: &[u8]) -> Signature;
}

impl Sign for SecretKey {
    fn public_key(&self) -> PublicKey {
        SecretKey::public_key(self)
    }
    fn sign(&self, message: &[u8]) -> Signature {
        SecretKey::sign(self, message)
    }
}

/// A node's key (the NBK's, the notary's, the oracle's, a bank's): a [`Sign`]er shared by the
/// role's threads, its public half kept beside it so that no one asks an HSM for it.
#[derive(Clone)]
pub struct NodeKey {
    public_key: PublicKey,
    signer: std::sync::Arc<dyn Sign>,
}

impl NodeKey {
    pub fn new(signer: std::sync::Arc<dyn Sign>) -> NodeKey {
        NodeKey { public_key: signer.public_key(), signer }
    }
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }
    pub fn address(&self) -> Address {
        self.public_key.address()
    }
    pub fn sign(&self, message: &[u8]) -> Signature {
        let signature = self.signer.sign(message);
        debug_assert!(verify(&self.public_key, message, &signature).is_ok(), "a signer signs with its own key");
        signature
    }
}

impl Sign for NodeKey {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }
    fn sign(&self, message: &[u8]) -> Signature {
        NodeKey::sign(self, message)
    }
}

impl From<SecretKey> for NodeKey {
    fn from(key: SecretKey) -> NodeKey {
        NodeKey::new(std::sync::Arc::new(key))
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.address())
    }
}

/// Verify one signature.
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<()> {
    let invalid = || Error::new(ErrorCode::InvalidSignature, "signature does not verify");
    if key.alg != signature.alg {
        return Err(invalid());
    }
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.key.0).map_err(|_| invalid())?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.sig.0);
    vk.verify(message, &sig).map_err(|_| invalid())
}

/// Public keys already decompressed, shared by the threads that verify signatures.
///
/// Why: verifying an Ed25519 signature decompresses two curve points, the signature's `R` and
/// the signer's key `A`; each costs a field exponentiation of about 250 squarings, which
/// `perf` showed as a seventh of the payment path's CPU. A payer signs many payments with one
/// key, so the pipeline decompresses each key once and keeps it. Bounded: a shard that reaches
/// its share of [`KEY_CACHE_KEYS_MAX`] is emptied (about 200 bytes per key: 50 MiB at most).
/// Only keys that decompressed are kept; results never depend on what is cached.
pub struct KeyCache {
    shards: Vec<std::sync::Mutex<std::collections::HashMap<[u8; 32], ed25519_dalek::VerifyingKey>>>,
}

/// Most keys a [`KeyCache`] holds.
pub const KEY_CACHE_KEYS_MAX: usize = 1 << 18;
const KEY_CACHE_SHARDS: usize = 64;

impl Default for KeyCache {
    fn default() -> KeyCache {
        KeyCache { shards: (0..KEY_CACHE_SHARDS).map(|_| Default::default()).collect() }
    }
}

impl KeyCache {
    fn verifying_key(&self, key: &PublicKey) -> Option<ed25519_dalek::VerifyingKey> {
        let bytes = key.key.0;
        let shard = &self.shards[usize::from(bytes[0]) % KEY_CACHE_SHARDS];
        let mut keys = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = keys.get(&bytes) {
            return Some(*found);
        }
        let decompressed = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
        if keys.len() >= KEY_CACHE_KEYS_MAX / KEY_CACHE_SHARDS {
            keys.clear();
        }
        keys.insert(bytes, decompressed);
        Some(decompressed)
    }

    /// Check that `key` is one signatures can be verified against (an Ed25519 key must be a
    /// point of the curve), and keep it decompressed. Account opening calls this: a key that
    /// could never verify is refused there, with a clear error, instead of at the client's
    /// first payment; and that first payment does not pay for the decompression (about 2.7 µs
    /// here, a tenth of the check stage's CPU in `dtenge bench`, whose payers each pay
    /// twice). Keeping a key changes no result: the cache only saves work.
    pub fn admit(&self, key: &PublicKey) -> Result<()> {
        ensure!(key.alg == SigAlg::Ed25519, MalformedInput, "unsupported public key algorithm");
        ensure!(
            self.verifying_key(key).is_some(),
            MalformedInput,
            "public key {} is not a point of the Ed25519 curve",
            key.key
        );
        Ok(())
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verify many signatures at once. Ed25519 batch verification costs about half of one-by-one.
/// On failure, nothing says which one failed; callers that need to know fall back to
/// [`verify`] one by one.
pub fn verify_batch(items: &[(PublicKey, &[u8], Signature)]) -> Result<()> {
    verify_batch_cached(items, None)
}

/// [`verify_batch`], taking decompressed keys from `cache` (and adding to it).
pub fn verify_batch_cached(items: &[(PublicKey, &[u8], Signature)], cache: Option<&KeyCache>) -> Result<()> {
    let invalid = || Error::new(ErrorCode::InvalidSignature, "signature does not verify");
    if items.is_empty() {
        return Ok(());
    }
    // A node that attests a whole batch with one signature puts the same (key, message,
    // signature) in every transaction of it: verify each distinct one once.
    let mut seen = crate::hash::Set::with_capacity_and_hasher(items.len(), Default::default());
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (key, message, signature) in items {
        if !seen.insert((key.key.0, signature.sig.0, *message)) {
            continue;
        }
        if key.alg != SigAlg::Ed25519 || signature.alg != SigAlg::Ed25519 {
            return Err(invalid());
        }
        let verifying_key = match cache {
            Some(cache) => cache.verifying_key(key),
            None => ed25519_dalek::VerifyingKey::from_bytes(&key.key.0).ok(),
        };
        keys.push(verifying_key.ok_or_else(invalid)?);
        signatures.push(ed25519_dalek::Signature::from_bytes(&signature.sig.0));
        messages.push(*message);
    }
    if keys.len() == 1 {
        return keys[0].verify(messages[0], &signatures[0]).map_err(|_| invalid());
    }
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let key = SecretKey::from_seed([7; 32]);
        let sig = key.sign(b"hello");
        verify(&key.public_key(), b"hello", &sig).unwrap();
        assert_eq!(verify(&key.public_key(), b"hellO", &sig).unwrap_err().code, ErrorCode::InvalidSignature);
    }

    #[test]
    fn batch_rejects_one_bad_signature() {
        let keys: Vec<SecretKey> = (0..5u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let sigs: Vec<Signature> = keys.iter().map(|k| k.sign(b"m")).collect();
        let mut items: Vec<(PublicKey, &[u8], Signature)> =
            keys.iter().zip(&sigs).map(|(k, s)| (k.public_key(), &b"m"[..], *s)).collect();
        verify_batch(&items).unwrap();
        items[3].1 = b"x";
        assert!(verify_batch(&items).is_err());
    }

    #[test]
    fn cached_keys_verify_exactly_as_fresh_ones_and_the_cache_is_bounded() {
        let cache = KeyCache::default();
        let keys: Vec<SecretKey> = (0..5u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let sigs: Vec<Signature> = keys.iter().map(|k| k.sign(b"m")).collect();
        let mut items: Vec<(PublicKey, &[u8], Signature)> =
            keys.iter().zip(&sigs).map(|(k, s)| (k.public_key(), &b"m"[..], *s)).collect();
        for _ in 0..2 {
            verify_batch_cached(&items, Some(&cache)).unwrap();
            verify_batch_cached(&items[..1], Some(&cache)).unwrap();
        }
        assert_eq!(cache.len(), 5);
        items[3].1 = b"x";
        assert!(verify_batch_cached(&items, Some(&cache)).is_err(), "a cached key does not make a bad signature pass");
        // Bytes that are not a curve point are refused and not kept.
        let mut bad = items[0].0;
        bad.key.0 = [0xff; 32];
        bad.key.0[31] = 0x7f;
        if ed25519_dalek::VerifyingKey::from_bytes(&bad.key.0).is_err() {
            assert!(verify_batch_cached(&[(bad, &b"m"[..], sigs[0])], Some(&cache)).is_err());
            assert_eq!(cache.len(), 5);
        }
        // Never more than its bound, however many keys pass through.
        let many: Vec<SecretKey> = (0..3_000u32)
            .map(|i| SecretKey::from_seed(crate::crypto::hash_parts(b"k", &[&i.to_le_bytes()]).0))
            .collect();
        for key in &many {
            cache.verifying_key(&key.public_key()).unwrap();
        }
        assert!(cache.len() <= KEY_CACHE_KEYS_MAX);
        assert!(cache.len() >= 3_000, "nothing was evicted below the bound");
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = hash_parts(b"t", &[b"a"]);
        assert_eq!(Hash32::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(Hash32::from_hex("zz").unwrap_err().code, ErrorCode::MalformedInput);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), h);
    }
}
