//! What the notary sees and what it signs.
//!
//! **Compact transactions.** The notary guarantees single use and has no access to what a
//! transaction moves (SPEC §3): a bank sends it each transaction as a [`CompactTx`], the
//! transaction's id with its input and output token ids (hashes that commit to amounts, owners
//! and policies without revealing them), and signs the whole request once
//! ([`notarize_message`] over the Merkle root of the compact hashes).
//!
//! **Commit certificates.** The notary commits a batch durably, then signs one message over
//! the Merkle root of the committed transactions' compact hashes (the tree of
//! [`crate::merkle`]) with its sequence number. A payee bank and the NBK registry apply a
//! transaction only when the certificate verifies under the notary's key and the proof places
//! the transaction's compact hash, which they recompute from the full transaction, under the
//! signed root: so they know the notary spent exactly that transaction's inputs. One signature
//! answers for a whole batch, as a bank's batch attestation does.
//!
//! A certificate says a transaction is committed; it does not say it was first committed in
//! that batch. A transaction sent again after it committed (a retry after a lost answer) is
//! certified again in the batch that answers the retry: the statement is still true, and the
//! parties apply by transaction id, once.

use crate::crypto::{hash_parts, verify, Hash32, PublicKey, Sign, Signature};
use crate::token::{TokenId, TxId};
use crate::validate::TxIds;
use crate::{ensure, Error, ErrorCode, Result};

/// A transaction as the notary sees it: its id, the tokens it spends and the tokens it creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactTx {
    pub tx_id: TxId,
    pub inputs: Vec<TokenId>,
    pub outputs: Vec<TokenId>,
}

impl CompactTx {
    /// The compact form of a transaction whose ids were hashed ([`TxIds::of`]).
    pub fn of(ids: &TxIds) -> CompactTx {
        CompactTx { tx_id: ids.tx_id, inputs: ids.inputs.clone(), outputs: ids.outputs.clone() }
    }

    /// What binds the id to exactly these inputs and outputs: the leaf of a notarize request's
    /// tree and of a certificate's.
    pub fn hash(&self) -> Hash32 {
        compact_hash(&self.tx_id, &self.inputs, &self.outputs)
    }
}

/// [`CompactTx::hash`] without building the compact transaction.
pub fn compact_hash(tx_id: &TxId, inputs: &[TokenId], outputs: &[TokenId]) -> Hash32 {
    let mut bytes = Vec::with_capacity(32 + 8 + 32 * (inputs.len() + outputs.len()));
    bytes.extend_from_slice(&tx_id.0 .0);
    bytes.extend_from_slice(&(inputs.len() as u32).to_le_bytes());
    for id in inputs {
        bytes.extend_from_slice(&id.0 .0);
    }
    bytes.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
    for id in outputs {
        bytes.extend_from_slice(&id.0 .0);
    }
    hash_parts(b"dtenge/compact-tx/v1", &[&bytes])
}

/// The message a role signs when it sends the notary request number `batch` whose compact
/// transactions' tree has root `root`.
pub fn notarize_message(batch: u64, root: &Hash32) -> Hash32 {
    hash_parts(b"dtenge/sign/notarize/v1", &[&batch.to_le_bytes(), &root.0])
}

/// The notary's signed statement over one committed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitCertificate {
    /// The notary's sequence number of the batch: batches commit in this order, one number
    /// each, from 1.
    pub seq: u64,
    /// Merkle root over the compact hashes of the batch's committed transactions, in batch
    /// order.
    pub root: Hash32,
    /// How many transactions are under the root (at least 1).
    pub size: u32,
    pub signature: Signature,
}

/// Where one transaction sits under a certificate's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitProof {
    pub index: u32,
    /// Sibling hashes from the leaf up ([`crate::merkle::path`]).
    pub path: Vec<Hash32>,
}

/// The message the notary signs for a committed batch.
pub fn commit_message(seq: u64, size: u32, root: &Hash32) -> Hash32 {
    hash_parts(b"dtenge/sign/notary-commit/v1", &[&seq.to_le_bytes(), &size.to_le_bytes(), &root.0])
}

impl CommitCertificate {
    /// Certify the compact hashes `leaves` (committed, in batch order) as batch `seq`; returns
    /// the certificate and each transaction's proof, in the same order.
    pub fn sign(key: &dyn Sign, seq: u64, leaves: &[Hash32]) -> (CommitCertificate, Vec<CommitProof>) {
        assert!(seq >= 1, "notary batches are numbered from 1");
        assert!(!leaves.is_empty(), "a certificate covers at least one transaction");
        assert!(leaves.len() <= crate::merkle::LEAVES_MAX, "a certificate covers a bounded batch");
        let (root, paths) = crate::merkle::root_and_paths(leaves);
        let size = leaves.len() as u32;
        let signature = key.sign(&commit_message(seq, size, &root).0);
        let proofs =
            paths.into_iter().enumerate().map(|(index, path)| CommitProof { index: index as u32, path }).collect();
        (CommitCertificate { seq, root, size, signature }, proofs)
    }

    /// Check the notary's signature (once per certificate: callers with many transactions
    /// under one certificate check it once, then [`CommitCertificate::covers`] for each).
    pub fn verify_signature(&self, notary: &PublicKey) -> Result<()> {
        ensure!(self.seq >= 1, InvalidSignature, "a commit certificate's sequence number starts at 1");
        verify(notary, &commit_message(self.seq, self.size, &self.root).0, &self.signature)
            .map_err(|_| Error::new(ErrorCode::InvalidSignature, "the commit certificate's signature does not verify"))
    }

    /// Does `proof` place the compact hash `leaf` under this certificate's root? (The
    /// signature is checked separately.)
    pub fn covers(&self, leaf: &Hash32, proof: &CommitProof) -> Result<()> {
        let root = crate::merkle::root_from_path(leaf, proof.index as usize, self.size as usize, &proof.path);
        ensure!(
            root == Some(self.root),
            InvalidSignature,
            "the commit proof does not place this transaction under the certificate's root"
        );
        Ok(())
    }

    /// [`CommitCertificate::covers`] for the transactions of one delivery, one after another:
    /// their paths share the tree's upper nodes, which `memo` hashes once.
    pub fn covers_memo(&self, leaf: &Hash32, proof: &CommitProof, memo: &mut crate::merkle::InnerMemo) -> Result<()> {
        let root =
            crate::merkle::root_from_path_memo(leaf, proof.index as usize, self.size as usize, &proof.path, memo);
        ensure!(
            root == Some(self.root),
            InvalidSignature,
            "the commit proof does not place this transaction under the certificate's root"
        );
        Ok(())
    }

    /// Signature and proof together: the compact transaction with hash `leaf` is committed at
    /// the notary with key `notary`.
    pub fn verify(&self, notary: &PublicKey, leaf: &Hash32, proof: &CommitProof) -> Result<()> {
        self.covers(leaf, proof)?;
        self.verify_signature(notary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn ids(n: u8) -> Vec<Hash32> {
        (0..n).map(|i| Hash32([i; 32])).collect()
    }

    #[test]
    fn proofs_checked_with_a_memo_give_the_same_answers() {
        let notary = SecretKey::from_seed([7; 32]);
        let txs = ids(37);
        let (cert, proofs) = CommitCertificate::sign(&notary, 3, &txs);
        let mut memo = crate::merkle::InnerMemo::default();
        for (i, (tx, proof)) in txs.iter().zip(&proofs).enumerate().filter(|(i, _)| i % 3 != 1) {
            cert.covers_memo(tx, proof, &mut memo).unwrap();
            // Another transaction's proof, or another leaf, is refused as without the memo.
            let other = &proofs[(i + 1) % txs.len()];
            assert_eq!(cert.covers_memo(tx, other, &mut memo).is_ok(), cert.covers(tx, other).is_ok());
            assert!(cert.covers_memo(&Hash32([0xee; 32]), proof, &mut memo).is_err());
        }
    }

    #[test]
    fn every_transaction_of_a_certified_batch_verifies_under_the_notary_key() {
        let notary = SecretKey::from_seed([7; 32]);
        let txs = ids(5);
        let (cert, proofs) = CommitCertificate::sign(&notary, 3, &txs);
        for (tx, proof) in txs.iter().zip(&proofs) {
            cert.verify(&notary.public_key(), tx, proof).unwrap();
        }
    }

    #[test]
    fn another_key_another_transaction_or_another_sequence_number_is_refused() {
        let notary = SecretKey::from_seed([7; 32]);
        let other = SecretKey::from_seed([8; 32]);
        let txs = ids(3);
        let (cert, proofs) = CommitCertificate::sign(&notary, 1, &txs);
        let code = |r: Result<()>| r.unwrap_err().code;
        assert_eq!(code(cert.verify(&other.public_key(), &txs[0], &proofs[0])), ErrorCode::InvalidSignature);
        let stranger = Hash32([9; 32]);
        assert_eq!(code(cert.verify(&notary.public_key(), &stranger, &proofs[0])), ErrorCode::InvalidSignature);
        let mut replayed = cert.clone();
        replayed.seq = 2;
        assert_eq!(code(replayed.verify(&notary.public_key(), &txs[0], &proofs[0])), ErrorCode::InvalidSignature);
    }

    #[test]
    fn a_compact_hash_binds_the_id_to_exactly_its_inputs_and_outputs() {
        let token = |b: u8| TokenId(Hash32([b; 32]));
        let tx = CompactTx { tx_id: TxId(Hash32([1; 32])), inputs: vec![token(2)], outputs: vec![token(3)] };
        let mut other_input = tx.clone();
        other_input.inputs[0] = token(4);
        // The same ids split differently between inputs and outputs.
        let moved = CompactTx { tx_id: tx.tx_id, inputs: vec![token(2), token(3)], outputs: vec![] };
        assert_ne!(tx.hash(), other_input.hash());
        assert_ne!(tx.hash(), moved.hash());
        assert_eq!(tx.hash(), compact_hash(&tx.tx_id, &tx.inputs, &tx.outputs));
    }
}
