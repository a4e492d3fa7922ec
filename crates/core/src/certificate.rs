//! The notary's commit certificate: "every transaction under this root is committed".
//!
//! The notary commits a batch of transactions durably, then signs one message over the Merkle
//! root of their ids (the same tree as a bank's batch attestation, [`crate::merkle`]) with its
//! sequence number. Each transaction's parties get the certificate and the transaction's path
//! in the tree: a payee bank and the NBK registry apply a transaction only when its
//! certificate verifies under the notary's key and its path places the transaction under the
//! signed root. One signature answers for a whole batch, as the banks' attestations do.
//!
//! A certificate says a transaction is committed; it does not say it was first committed in
//! that batch. A transaction sent again after it committed (a retry after a lost answer) is
//! certified again in the batch that answers the retry: the statement is still true, and the
//! parties apply by transaction id, once.

use crate::crypto::{hash_parts, verify, Hash32, PublicKey, SecretKey, Signature};
use crate::token::TxId;
use crate::{ensure, Error, ErrorCode, Result};

/// The notary's signed statement over one committed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitCertificate {
    /// The notary's sequence number of the batch: batches commit in this order, one number
    /// each, from 1.
    pub seq: u64,
    /// Merkle root over the ids of the batch's committed transactions, in batch order.
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
    /// Certify `tx_ids` (committed, in batch order) as batch `seq`; returns the certificate and
    /// each transaction's proof, in the same order.
    pub fn sign(key: &SecretKey, seq: u64, tx_ids: &[TxId]) -> (CommitCertificate, Vec<CommitProof>) {
        assert!(seq >= 1, "notary batches are numbered from 1");
        assert!(!tx_ids.is_empty(), "a certificate covers at least one transaction");
        assert!(tx_ids.len() <= crate::merkle::LEAVES_MAX, "a certificate covers a bounded batch");
        let (root, paths) = crate::merkle::root_and_paths(tx_ids);
        let size = u32::try_from(tx_ids.len()).expect("bounded by LEAVES_MAX");
        let signature = key.sign(&commit_message(seq, size, &root).0);
        let proofs = paths
            .into_iter()
            .enumerate()
            .map(|(index, path)| CommitProof { index: u32::try_from(index).expect("bounded by LEAVES_MAX"), path })
            .collect();
        (CommitCertificate { seq, root, size, signature }, proofs)
    }

    /// Check the notary's signature (once per certificate: callers with many transactions
    /// under one certificate check it once, then [`CommitCertificate::covers`] for each).
    pub fn verify_signature(&self, notary: &PublicKey) -> Result<()> {
        ensure!(self.seq >= 1, InvalidSignature, "a commit certificate's sequence number starts at 1");
        verify(notary, &commit_message(self.seq, self.size, &self.root).0, &self.signature)
            .map_err(|_| Error::new(ErrorCode::InvalidSignature, "the commit certificate's signature does not verify"))
    }

    /// Does `proof` place `tx_id` under this certificate's root? (The signature is checked
    /// separately.)
    pub fn covers(&self, tx_id: &TxId, proof: &CommitProof) -> Result<()> {
        let root = crate::merkle::root_from_path(tx_id, proof.index as usize, self.size as usize, &proof.path);
        ensure!(
            root == Some(self.root),
            InvalidSignature,
            "the commit proof does not place transaction {tx_id} under the certificate's root"
        );
        Ok(())
    }

    /// Signature and proof together: `tx_id` is committed at the notary with key `notary`.
    pub fn verify(&self, notary: &PublicKey, tx_id: &TxId, proof: &CommitProof) -> Result<()> {
        self.covers(tx_id, proof)?;
        self.verify_signature(notary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<TxId> {
        (0..n).map(|i| TxId(Hash32([i; 32]))).collect()
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
        let stranger = TxId(Hash32([9; 32]));
        assert_eq!(code(cert.verify(&notary.public_key(), &stranger, &proofs[0])), ErrorCode::InvalidSignature);
        let mut replayed = cert.clone();
        replayed.seq = 2;
        assert_eq!(code(replayed.verify(&notary.public_key(), &txs[0], &proofs[0])), ErrorCode::InvalidSignature);
    }
}
