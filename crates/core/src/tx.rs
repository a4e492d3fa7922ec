//! Transactions: a command, inputs (spent tokens with their preimages), outputs (new tokens),
//! owners' signatures (witnesses) and validating nodes' signatures (attestations).

use crate::crypto::{hash_parts, Hash32, PublicKey, SecretKey, Sign, Signature};
use crate::token::{Input, Output, TokenId, TxId};
use serde::{Deserialize, Serialize};

/// Most inputs one transaction may spend. Bounds validation work and notary lock sets.
pub const TX_INPUTS_MAX: usize = 1_024;
/// Most outputs one transaction may create: a 16,000-line registry plus change.
pub const TX_OUTPUTS_MAX: usize = 16_384;
/// Most signatures of each kind one transaction may carry.
pub const TX_SIGNATURES_MAX: usize = 64;

/// What a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Emission: no inputs, new DT; only the NBK node may attest.
    Issue,
    /// Payment: inputs = outputs.
    Transfer,
    /// Redemption: inputs > outputs, the difference leaves circulation; only the NBK may attest.
    Redeem,
}

impl Command {
    fn tag(self) -> u8 {
        match self {
            Command::Issue => 1,
            Command::Transfer => 2,
            Command::Redeem => 3,
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub command: Command,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    /// Chosen by the creator so that two otherwise equal transactions (two equal emissions)
    /// have different ids.
    pub nonce: u64,
}

impl TxBody {
    /// Canonical bytes: the only input to the transaction id.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + (self.inputs.len() + self.outputs.len()) * 112);
        out.push(self.command.tag());
        out.extend_from_slice(&self.nonce.to_le_bytes());
        out.extend_from_slice(&(self.inputs.len() as u32).to_le_bytes());
        for input in &self.inputs {
            out.extend_from_slice(&input.tx_id.0 .0);
            out.extend_from_slice(&input.index.to_le_bytes());
            input.output.encode(&mut out);
        }
        out.extend_from_slice(&(self.outputs.len() as u32).to_le_bytes());
        for output in &self.outputs {
            output.encode(&mut out);
        }
        out
    }

    pub fn id(&self) -> TxId {
        TxId(hash_parts(b"dtenge/tx/v1", &[&self.encode()]))
    }
}

/// An owner's signature over the transaction id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    pub public_key: PublicKey,
    pub signature: Signature,
}

/// A validating node's signature over the transaction id: "I checked this and I answer for it".
/// With `batch`, the signature is over the root of a Merkle tree of a whole batch's
/// transaction ids ([`batch_message`]), and `batch` proves this transaction is in it: one
/// signature answers for many transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub public_key: PublicKey,
    pub signature: Signature,
    /// Always written (`null` when absent): the store encodes transactions with bincode, which
    /// cannot read back a field left out, so `skip_serializing_if` made every archived
    /// transaction with an attestation of one undecodable. Readers may still omit it.
    #[serde(default)]
    pub batch: Option<BatchProof>,
}

/// Where a transaction sits in a batch attested with one signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProof {
    pub root: Hash32,
    pub index: u32,
    pub size: u32,
    /// Sibling hashes from the leaf up ([`crate::merkle::path`]).
    pub path: Vec<Hash32>,
}

/// The message a node signs when it attests a batch.
pub fn batch_message(root: &Hash32) -> Hash32 {
    hash_parts(b"dtenge/sign/node-batch/v1", &[&root.0])
}

/// A complete transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub body: TxBody,
    pub witnesses: Vec<Witness>,
    pub attestations: Vec<Attestation>,
}

/// The message an owner signs.
pub fn owner_message(tx_id: &TxId) -> Hash32 {
    hash_parts(b"dtenge/sign/owner/v1", &[&tx_id.0 .0])
}

/// The message a validating node signs.
pub fn node_message(tx_id: &TxId) -> Hash32 {
    hash_parts(b"dtenge/sign/node/v1", &[&tx_id.0 .0])
}

impl Transaction {
    /// An unsigned transaction; sign it with [`Transaction::sign_owner`] and
    /// [`Transaction::attest`].
    pub fn new(body: TxBody) -> Transaction {
        Transaction { body, witnesses: Vec::new(), attestations: Vec::new() }
    }

    pub fn id(&self) -> TxId {
        self.body.id()
    }

    /// Add an owner's signature (idempotent per key).
    pub fn sign_owner(&mut self, key: &SecretKey) {
        let public_key = key.public_key();
        if self.witnesses.iter().any(|w| w.public_key == public_key) {
            return;
        }
        let message = owner_message(&self.id());
        self.witnesses.push(Witness { public_key, signature: key.sign(&message.0) });
    }

    /// Add a node's attestation (idempotent per key).
    pub fn attest(&mut self, key: &dyn Sign) {
        let public_key = key.public_key();
        if self.attestations.iter().any(|a| a.public_key == public_key) {
            return;
        }
        let message = node_message(&self.id());
        self.attestations.push(Attestation { public_key, signature: key.sign(&message.0), batch: None });
    }

    /// Attest every transaction of `txs` with one signature of `key` over the root of their
    /// ids (replacing an earlier attestation by the same key). At most
    /// [`crate::merkle::LEAVES_MAX`] transactions.
    pub fn attest_batch(txs: &mut [&mut Transaction], key: &dyn Sign) {
        let ids: Vec<TxId> = txs.iter().map(|tx| tx.id()).collect();
        Transaction::attest_batch_ids(txs, &ids, key);
    }

    /// [`Transaction::attest_batch`] for a caller that has the transactions' ids already.
    pub fn attest_batch_ids(txs: &mut [&mut Transaction], ids: &[TxId], key: &dyn Sign) {
        assert!(txs.len() <= crate::merkle::LEAVES_MAX, "a batch attestation covers a bounded batch");
        assert_eq!(txs.len(), ids.len(), "one id per transaction");
        debug_assert!(txs.iter().zip(ids).all(|(tx, id)| tx.id() == *id));
        if txs.is_empty() {
            return;
        }
        let public_key = key.public_key();
        let (root, paths) = crate::merkle::root_and_paths(ids);
        let signature = key.sign(&batch_message(&root).0);
        for ((index, tx), path) in txs.iter_mut().enumerate().zip(paths) {
            tx.attestations.retain(|a| a.public_key != public_key);
            let batch = BatchProof { root, index: index as u32, size: ids.len() as u32, path };
            tx.attestations.push(Attestation { public_key, signature, batch: Some(batch) });
        }
    }

    /// Ids of the tokens this transaction spends, in input order.
    pub fn input_ids(&self) -> Vec<TokenId> {
        self.body.inputs.iter().map(Input::token_id).collect()
    }

    /// Ids of the tokens this transaction creates, in output order.
    pub fn output_ids(&self) -> Vec<TokenId> {
        self.output_ids_of(&self.id())
    }

    /// [`Transaction::output_ids`] for a caller that has the transaction's id already (hashing
    /// the body again is a visible cost on the payment path).
    pub fn output_ids_of(&self, tx_id: &TxId) -> Vec<TokenId> {
        debug_assert_eq!(*tx_id, self.id());
        self.body.outputs.iter().enumerate().map(|(i, o)| TokenId::of(tx_id, i as u32, o)).collect()
    }

    /// The outputs as spendable inputs (preimages) for the next transaction.
    pub fn outputs_as_inputs(&self) -> Vec<Input> {
        let tx_id = self.id();
        self.body.outputs.iter().enumerate().map(|(i, o)| Input { tx_id, index: i as u32, output: o.clone() }).collect()
    }
}
