//! Signatures, verified in batches.

use dtenge_core::crypto::{verify_batch_cached, Hash32, KeyCache, PublicKey, Signature};
use dtenge_core::merkle::InnerMemo;
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
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
    let messages = SignedMessages::of_memo(tx, tx_id, memo)?;
    let mut items = Vec::with_capacity(tx.witnesses.len() + tx.attestations.len());
    if witnesses {
        items.extend(tx.witnesses.iter().map(|w| (w.public_key, messages.owner, w.signature)));
    }
    for (a, message) in tx.attestations.iter().zip(messages.attestations) {
        if Some(&a.public_key) != skip {
            items.push((a.public_key, message, a.signature));
        }
    }
    Ok(items)
}

/// Verify the signatures of every verdict still `Ok` as one batch; when the batch fails,
/// verify each verdict's alone and turn the failing ones into `INVALID_SIGNATURE`.
pub(crate) fn verify_all<T>(verdicts: &mut [Result<T>], items_of: impl Fn(&T) -> &[SignatureItem], cache: &KeyCache) {
    let batch: Vec<(PublicKey, &[u8], Signature)> = verdicts
        .iter()
        .filter_map(|v| v.as_ref().ok())
        .flat_map(|v| items_of(v).iter().map(|(k, m, s)| (*k, &m.0[..], *s)))
        .collect();
    if verify_batch_cached(&batch, Some(cache)).is_ok() {
        return;
    }
    for verdict in verdicts.iter_mut() {
        let failed = match verdict {
            Ok(v) => {
                let items: Vec<(PublicKey, &[u8], Signature)> =
                    items_of(v).iter().map(|(k, m, s)| (*k, &m.0[..], *s)).collect();
                verify_batch_cached(&items, Some(cache)).is_err()
            }
            Err(_) => false,
        };
        if failed {
            *verdict = Err(Error::new(ErrorCode::InvalidSignature, "a signature does not verify"));
        }
    }
}
