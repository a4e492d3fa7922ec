//! Signatures, verified in batches.

use dtenge_core::crypto::{verify_batch_cached, Hash32, KeyCache, PublicKey, Signature};
use dtenge_core::hash::Set as HashSet;
use dtenge_core::merkle::InnerMemo;
use dtenge_core::token::TxId;
use dtenge_core::tx::{owner_message, Transaction};
use dtenge_core::validate::SignedMessages;
use dtenge_core::{Error, ErrorCode, Result};

/// A signature to verify: key, signed message, signature.
pub(crate) type SignatureItem = (PublicKey, Hash32, Signature);

/// The signatures of `tx` to verify: its owners' (with `witnesses`) and its attestations but
/// `skip`'s (the bank's own, made just now).
pub(crate) fn signature_items(
    tx: &Transaction,
    tx_id: &TxId,
    memo: &mut InnerMemo,
    witnesses: bool,
    skip: Option<&PublicKey>,
) -> Result<Vec<SignatureItem>> {
    let attestations = SignedMessages::attestations_except(tx, tx_id, memo, skip)?;
    let mut items = Vec::with_capacity(tx.witnesses.len() + tx.attestations.len());
    if witnesses {
        let owner = owner_message(tx_id);
        items.extend(tx.witnesses.iter().map(|w| (w.public_key, owner, w.signature)));
    }
    for (a, message) in tx.attestations.iter().zip(attestations) {
        if let Some(message) = message {
            items.push((a.public_key, message, a.signature));
        }
    }
    Ok(items)
}

/// A signature verified already: key, message, signature bytes.
type Verified = (PublicKey, Hash32, [u8; 64]);

/// Transactions per Ed25519 batch verification: a chunk with a bad signature is verified
/// again one transaction at a time, so one bad signature costs its chunk, not the whole batch
/// (at 1% bad signatures and 500 transactions a batch, nearly every batch holds one). The
/// size `dtenge-network`'s pipeline measured: larger chunks verify a little faster per
/// signature, smaller ones waste less on a bad one.
pub(crate) const VERIFY_CHUNK_TXS: usize = 16;

/// Verify the signatures of every verdict still `Ok`, [`VERIFY_CHUNK_TXS`] verdicts per batch
/// verification; when a chunk fails, verify each of its verdicts alone and turn the failing
/// ones into `INVALID_SIGNATURE`.
///
/// A signature that appears in many transactions (a bank's one attestation of a whole batch)
/// is verified with the first chunk that holds it, and not again.
pub(crate) fn verify_all<T>(verdicts: &mut [Result<T>], items_of: impl Fn(&T) -> &[SignatureItem], cache: &KeyCache) {
    let mut verified: HashSet<Verified> = HashSet::default();
    for chunk in verdicts.chunks_mut(VERIFY_CHUNK_TXS) {
        verify_chunk(chunk, &items_of, cache, &mut verified);
    }
}

fn verify_chunk<T>(
    verdicts: &mut [Result<T>],
    items_of: &impl Fn(&T) -> &[SignatureItem],
    cache: &KeyCache,
    verified: &mut HashSet<Verified>,
) {
    assert!(verdicts.len() <= VERIFY_CHUNK_TXS, "a chunk is bounded");
    let all: Vec<SignatureItem> =
        (0..verdicts.len()).flat_map(|i| unverified(&verdicts[i], items_of, verified)).collect();
    if verify_items(&all, cache) {
        verified.extend(all.iter().map(verified_of));
        return;
    }
    // The chunk holds a bad signature, almost always just one. Verify one transaction at a
    // time until one fails, then the rest of the chunk as one batch: about 8 single checks
    // and a batch of 8 instead of 16 single checks (a single check costs about 1.8 times a
    // signature's share of a batch). Only once per chunk: when the rest fails too, one at a
    // time to the end, so a chunk of bad signatures costs one batch more than that.
    let mut rest_tried = false;
    for i in 0..verdicts.len() {
        if verdicts[i].is_err() {
            continue;
        }
        let items = unverified(&verdicts[i], items_of, verified);
        if verify_items(&items, cache) {
            verified.extend(items.iter().map(verified_of));
            continue;
        }
        verdicts[i] = Err(Error::new(ErrorCode::InvalidSignature, "a signature does not verify"));
        let rest = i + 1..verdicts.len();
        if !rest_tried && !rest.is_empty() {
            rest_tried = true;
            let items: Vec<SignatureItem> = rest.flat_map(|r| unverified(&verdicts[r], items_of, verified)).collect();
            if verify_items(&items, cache) {
                verified.extend(items.iter().map(verified_of));
                return;
            }
        }
    }
}

/// The signatures of a verdict still `Ok` not verified before.
fn unverified<T>(
    verdict: &Result<T>,
    items_of: &impl Fn(&T) -> &[SignatureItem],
    verified: &HashSet<Verified>,
) -> Vec<SignatureItem> {
    match verdict {
        Ok(v) => items_of(v).iter().filter(|item| !verified.contains(&verified_of(item))).copied().collect(),
        Err(_) => Vec::new(),
    }
}

fn verified_of((key, message, signature): &SignatureItem) -> Verified {
    (*key, *message, signature.sig.0)
}

/// Whether every signature of `items` verifies (true for none), as one batch.
fn verify_items(items: &[SignatureItem], cache: &KeyCache) -> bool {
    let as_slices: Vec<(PublicKey, &[u8], Signature)> = items.iter().map(|(k, m, s)| (*k, &m.0[..], *s)).collect();
    verify_batch_cached(&as_slices, Some(cache)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::SecretKey;

    fn item(n: u8, shared: &SecretKey) -> Vec<SignatureItem> {
        let key = SecretKey::from_seed([n; 32]);
        let message = Hash32([n; 32]);
        let attestation = Hash32([0xaa; 32]);
        vec![
            (key.public_key(), message, key.sign(&message.0)),
            // One signature shared by every transaction, as a bank's batch attestation is.
            (shared.public_key(), attestation, shared.sign(&attestation.0)),
        ]
    }

    #[test]
    fn one_bad_signature_refuses_its_transaction_only() {
        let shared = SecretKey::from_seed([0xbb; 32]);
        let mut verdicts: Vec<Result<Vec<SignatureItem>>> = (1..=40).map(|n| Ok(item(n, &shared))).collect();
        if let Ok(items) = &mut verdicts[21] {
            items[0].2.sig.0[3] ^= 1;
        }
        verdicts[30] = Err(Error::malformed("refused before"));
        verify_all(&mut verdicts, |items| items, &KeyCache::default());
        for (i, verdict) in verdicts.iter().enumerate() {
            match i {
                21 => assert_eq!(verdict.as_ref().unwrap_err().code, ErrorCode::InvalidSignature),
                30 => assert_eq!(verdict.as_ref().unwrap_err().code, ErrorCode::MalformedInput),
                _ => assert!(verdict.is_ok(), "transaction {i} is fine"),
            }
        }
    }

    #[test]
    fn two_bad_signatures_in_one_chunk_are_both_found() {
        let shared = SecretKey::from_seed([0xbb; 32]);
        let mut verdicts: Vec<Result<Vec<SignatureItem>>> = (1..=16).map(|n| Ok(item(n, &shared))).collect();
        for bad in [3, 9] {
            if let Ok(items) = &mut verdicts[bad] {
                items[0].2.sig.0[5] ^= 1;
            }
        }
        verify_all(&mut verdicts, |items| items, &KeyCache::default());
        for (i, verdict) in verdicts.iter().enumerate() {
            match i {
                3 | 9 => assert_eq!(verdict.as_ref().unwrap_err().code, ErrorCode::InvalidSignature),
                _ => assert!(verdict.is_ok(), "transaction {i} is fine"),
            }
        }
    }

    #[test]
    fn a_bad_shared_signature_refuses_every_transaction_that_carries_it() {
        let shared = SecretKey::from_seed([0xbb; 32]);
        let mut verdicts: Vec<Result<Vec<SignatureItem>>> = (1..=20).map(|n| Ok(item(n, &shared))).collect();
        for items in verdicts.iter_mut().skip(17).flatten() {
            items[1].2.sig.0[0] ^= 1;
        }
        verify_all(&mut verdicts, |items| items, &KeyCache::default());
        assert!(verdicts[..17].iter().all(Result::is_ok));
        assert!(verdicts[17..].iter().all(|v| v.as_ref().unwrap_err().code == ErrorCode::InvalidSignature));
    }
}
