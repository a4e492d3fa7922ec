//! Encodings of the domain's values (`dtenge-core`): keys, tokens, transactions, certificates,
//! error codes.
//!
//! A transaction body encodes exactly as [`TxBody::encode`], the bytes its id is the hash of,
//! so a receiver that decodes a body can recompute the id from what it was sent (a test pins
//! the two together).

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use dtenge_core::certificate::{CommitCertificate, CommitProof, CompactTx};
use dtenge_core::crypto::{Address, Hash32, PublicKey, SigAlg, Signature, SignatureBytes};
use dtenge_core::merkle::PATH_MAX;
use dtenge_core::token::{Input, Output, Policy, TokenId, TxId};
use dtenge_core::tx::{
    Attestation, BatchProof, Command, Transaction, TxBody, Witness, TX_INPUTS_MAX, TX_OUTPUTS_MAX, TX_SIGNATURES_MAX,
};
use dtenge_core::{Amount, ErrorCode};

impl Encode for Hash32 {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
}

impl Decode for Hash32 {
    const ENCODED_BYTES_MIN: usize = 32;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Hash32(r.array("hash")?))
    }
}

macro_rules! hash_newtype {
    ($t:ident, $what:expr) => {
        impl Encode for $t {
            fn encode(&self, w: &mut Writer) {
                w.raw(&self.0 .0);
            }
        }
        impl Decode for $t {
            const ENCODED_BYTES_MIN: usize = 32;
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok($t(Hash32(r.array($what)?)))
            }
        }
    };
}
hash_newtype!(Address, "address");
hash_newtype!(TxId, "transaction id");
hash_newtype!(TokenId, "token id");

impl Encode for SigAlg {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.id());
    }
}

impl Decode for SigAlg {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("signature algorithm")? {
            1 => Ok(SigAlg::Ed25519),
            tag => Err(DecodeError::UnknownTag { what: "signature algorithm", tag: u64::from(tag) }),
        }
    }
}

impl Encode for PublicKey {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.alg);
        w.put(&self.key);
    }
}

impl Decode for PublicKey {
    const ENCODED_BYTES_MIN: usize = 33;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PublicKey { alg: r.get()?, key: r.get()? })
    }
}

impl Encode for Signature {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.alg);
        w.raw(&self.sig.0);
    }
}

impl Decode for Signature {
    const ENCODED_BYTES_MIN: usize = 65;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature { alg: r.get()?, sig: SignatureBytes(r.array("signature")?) })
    }
}

impl Encode for Amount {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.tiyn());
    }
}

impl Decode for Amount {
    const ENCODED_BYTES_MIN: usize = 8;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tiyn = r.u64("amount")?;
        Amount::from_tiyn(tiyn).map_err(|e| DecodeError::Invalid { what: "amount", reason: e.message })
    }
}

impl Encode for Policy {
    fn encode(&self, w: &mut Writer) {
        match self {
            Policy::Standard => w.u8(0),
            Policy::Held { event } => {
                w.u8(1);
                w.put(event);
            }
            Policy::Marked { marking, level } => {
                w.u8(2);
                w.put(marking);
                w.u8(*level);
            }
            Policy::Vat => w.u8(3),
        }
    }
}

impl Decode for Policy {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("policy")? {
            0 => Ok(Policy::Standard),
            1 => Ok(Policy::Held { event: r.get()? }),
            2 => Ok(Policy::Marked { marking: r.get()?, level: r.u8("marking level")? }),
            3 => Ok(Policy::Vat),
            tag => Err(DecodeError::UnknownTag { what: "policy", tag: u64::from(tag) }),
        }
    }
}

impl Encode for Output {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.amount_tiyn);
        w.put(&self.owner);
        w.put(&self.issuer);
        w.put(&self.policy);
    }
}

impl Decode for Output {
    const ENCODED_BYTES_MIN: usize = 8 + 32 + 32 + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Output { amount_tiyn: r.get()?, owner: r.get()?, issuer: r.get()?, policy: r.get()? })
    }
}

impl Encode for Input {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.tx_id);
        w.u32(self.index);
        w.put(&self.output);
    }
}

impl Decode for Input {
    const ENCODED_BYTES_MIN: usize = 32 + 4 + Output::ENCODED_BYTES_MIN;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Input { tx_id: r.get()?, index: r.u32("input index")?, output: r.get()? })
    }
}

impl Encode for Command {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Command::Issue => 1,
            Command::Transfer => 2,
            Command::Redeem => 3,
        });
    }
}

impl Decode for Command {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("command")? {
            1 => Ok(Command::Issue),
            2 => Ok(Command::Transfer),
            3 => Ok(Command::Redeem),
            tag => Err(DecodeError::UnknownTag { what: "command", tag: u64::from(tag) }),
        }
    }
}

impl Encode for TxBody {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.command);
        w.u64(self.nonce);
        w.seq(&self.inputs);
        w.seq(&self.outputs);
    }
}

impl Decode for TxBody {
    const ENCODED_BYTES_MIN: usize = 1 + 8 + 4 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let command = r.get()?;
        let nonce = r.u64("nonce")?;
        let inputs = r.seq("inputs", TX_INPUTS_MAX)?;
        let outputs = r.seq("outputs", TX_OUTPUTS_MAX)?;
        Ok(TxBody { command, inputs, outputs, nonce })
    }
}

impl Encode for Witness {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.public_key);
        w.put(&self.signature);
    }
}

impl Decode for Witness {
    const ENCODED_BYTES_MIN: usize = 33 + 65;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Witness { public_key: r.get()?, signature: r.get()? })
    }
}

impl Encode for BatchProof {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.root);
        w.u32(self.index);
        w.u32(self.size);
        w.seq(&self.path);
    }
}

impl Decode for BatchProof {
    const ENCODED_BYTES_MIN: usize = 32 + 4 + 4 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BatchProof {
            root: r.get()?,
            index: r.u32("batch index")?,
            size: r.u32("batch size")?,
            path: r.seq("batch path", PATH_MAX)?,
        })
    }
}

impl Encode for Attestation {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.public_key);
        w.put(&self.signature);
        w.put(&self.batch);
    }
}

impl Decode for Attestation {
    const ENCODED_BYTES_MIN: usize = 33 + 65 + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Attestation { public_key: r.get()?, signature: r.get()?, batch: r.get()? })
    }
}

impl Encode for Transaction {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.body);
        w.seq(&self.witnesses);
        w.seq(&self.attestations);
    }
}

impl Decode for Transaction {
    const ENCODED_BYTES_MIN: usize = TxBody::ENCODED_BYTES_MIN + 4 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Transaction {
            body: r.get()?,
            witnesses: r.seq("witnesses", TX_SIGNATURES_MAX)?,
            attestations: r.seq("attestations", TX_SIGNATURES_MAX)?,
        })
    }
}

impl Encode for CompactTx {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.tx_id);
        w.seq(&self.inputs);
        w.seq(&self.outputs);
    }
}

impl Decode for CompactTx {
    const ENCODED_BYTES_MIN: usize = 32 + 4 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CompactTx {
            tx_id: r.get()?,
            inputs: r.seq("compact inputs", TX_INPUTS_MAX)?,
            outputs: r.seq("compact outputs", TX_OUTPUTS_MAX)?,
        })
    }
}

impl Encode for CommitCertificate {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.put(&self.root);
        w.u32(self.size);
        w.put(&self.signature);
    }
}

impl Decode for CommitCertificate {
    const ENCODED_BYTES_MIN: usize = 8 + 32 + 4 + 65;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CommitCertificate { seq: r.u64("seq")?, root: r.get()?, size: r.u32("size")?, signature: r.get()? })
    }
}

impl Encode for CommitProof {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.index);
        w.seq(&self.path);
    }
}

impl Decode for CommitProof {
    const ENCODED_BYTES_MIN: usize = 4 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CommitProof { index: r.u32("proof index")?, path: r.seq("proof path", PATH_MAX)? })
    }
}

/// Error codes travel as a tag of one byte. The numbers are part of the protocol: a new code
/// takes the next number, and a number is never reused.
fn error_code_tag(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::MalformedInput => 1,
        ErrorCode::InsufficientFunds => 2,
        ErrorCode::DoubleSpend => 3,
        ErrorCode::UnknownAccount => 4,
        ErrorCode::DuplicateAccount => 5,
        ErrorCode::BankBlocked => 6,
        ErrorCode::InvalidSignature => 7,
        ErrorCode::LimitExceeded => 8,
        ErrorCode::ConservationViolated => 9,
        ErrorCode::Forbidden => 10,
        ErrorCode::NonWorkingDay => 11,
        ErrorCode::NotFound => 12,
        // 13 was METHOD_NOT_ALLOWED, an HTTP answer that moved to the gateway: never reused.
        ErrorCode::RequestInProgress => 14,
        ErrorCode::IdempotencyKeyReused => 15,
        ErrorCode::Conflict => 16,
        ErrorCode::StorageFailure => 17,
        ErrorCode::FundsHeld => 18,
        ErrorCode::OracleConfirmationRequired => 19,
        ErrorCode::FundsMarked => 20,
        ErrorCode::WrongLevel => 21,
        ErrorCode::InvoiceMismatch => 22,
        ErrorCode::EventExpired => 23,
        ErrorCode::ContractExpired => 24,
        ErrorCode::RecipientNotAllowed => 25,
        ErrorCode::Unauthorized => 26,
        ErrorCode::Internal => 27,
        ErrorCode::UnsupportedMediaType => 28,
        ErrorCode::RateLimited => 29,
        ErrorCode::FundsInFlight => 30,
    }
}

impl Encode for ErrorCode {
    fn encode(&self, w: &mut Writer) {
        w.u8(error_code_tag(*self));
    }
}

impl Decode for ErrorCode {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.u8("error code")?;
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| error_code_tag(*code) == tag)
            .ok_or(DecodeError::UnknownTag { what: "error code", tag: u64::from(tag) })
    }
}

impl Encode for dtenge_core::Error {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.code);
        w.str(&self.message);
    }
}

impl Decode for dtenge_core::Error {
    const ENCODED_BYTES_MIN: usize = 1 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(dtenge_core::Error::new(r.get()?, r.string("error message")?))
    }
}

/// A party (a client of a bank, as the oracle's registry names it): the bank's id (1 to
/// [`crate::message::ROLE_ID_BYTES_MAX`] bytes), the client's id (at most
/// [`crate::message::CLAIM_FIELD_BYTES_MAX`] bytes), the address.
impl Encode for dtenge_core::party::Party {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.bank);
        w.str(&self.client_id);
        w.put(&self.address);
    }
}

impl Decode for dtenge_core::party::Party {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 32;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bank = r.string("party's bank")?;
        if bank.is_empty() || bank.len() > crate::message::ROLE_ID_BYTES_MAX {
            return Err(DecodeError::Invalid { what: "party's bank", reason: format!("{} bytes", bank.len()) });
        }
        let client_id = r.string("party's client id")?;
        if client_id.len() > crate::message::CLAIM_FIELD_BYTES_MAX {
            return Err(DecodeError::Invalid {
                what: "party's client id",
                reason: format!("{} bytes", client_id.len()),
            });
        }
        Ok(dtenge_core::party::Party { bank, client_id, address: r.get()? })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dtenge_core::crypto::SecretKey;
    use proptest::prelude::*;

    pub(crate) fn address(byte: u8) -> Address {
        Address(Hash32([byte; 32]))
    }

    fn policy() -> impl Strategy<Value = Policy> {
        prop_oneof![
            Just(Policy::Standard),
            any::<[u8; 32]>().prop_map(|e| Policy::Held { event: Hash32(e) }),
            (any::<[u8; 32]>(), any::<u8>()).prop_map(|(m, level)| Policy::Marked { marking: Hash32(m), level }),
            Just(Policy::Vat),
        ]
    }

    fn output() -> impl Strategy<Value = Output> {
        (0..=Amount::MAX.tiyn(), any::<u8>(), any::<u8>(), policy()).prop_map(|(tiyn, owner, issuer, policy)| Output {
            amount_tiyn: Amount::from_tiyn(tiyn).unwrap(),
            owner: address(owner),
            issuer: address(issuer),
            policy,
        })
    }

    pub(crate) fn transaction() -> impl Strategy<Value = Transaction> {
        let input = (any::<[u8; 32]>(), any::<u32>(), output()).prop_map(|(tx, index, output)| Input {
            tx_id: TxId(Hash32(tx)),
            index,
            output,
        });
        (
            prop::collection::vec(input, 0..4),
            prop::collection::vec(output(), 0..4),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..3),
            any::<bool>(),
        )
            .prop_map(|(inputs, outputs, nonce, signers, batched)| {
                let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce });
                for seed in signers {
                    tx.sign_owner(&SecretKey::from_seed([seed; 32]));
                    tx.attest(&SecretKey::from_seed([seed.wrapping_add(1); 32]));
                }
                if batched {
                    let mut other = tx.clone();
                    other.body.nonce = other.body.nonce.wrapping_add(1);
                    Transaction::attest_batch(&mut [&mut tx, &mut other], &SecretKey::from_seed([99; 32]));
                }
                tx
            })
    }

    proptest! {
        #[test]
        fn every_transaction_decodes_to_itself(tx in transaction()) {
            let bytes = tx.to_bytes();
            prop_assert_eq!(Transaction::from_bytes(&bytes).unwrap(), tx);
        }

        #[test]
        fn a_body_encodes_to_the_bytes_its_id_is_the_hash_of(tx in transaction()) {
            prop_assert_eq!(tx.body.to_bytes(), tx.body.encode());
        }

        #[test]
        fn no_prefix_of_a_transaction_decodes(tx in transaction(), cut in any::<prop::sample::Index>()) {
            let bytes = tx.to_bytes();
            let cut = cut.index(bytes.len());
            prop_assert!(Transaction::from_bytes(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Transaction::from_bytes(&bytes);
            let _ = CommitCertificate::from_bytes(&bytes);
        }
    }

    #[test]
    fn an_amount_above_the_maximum_is_refused() {
        let bytes = (Amount::MAX.tiyn() + 1).to_le_bytes();
        assert!(matches!(Amount::from_bytes(&bytes), Err(DecodeError::Invalid { what: "amount", .. })));
    }

    #[test]
    fn every_error_code_has_its_own_tag_and_decodes_back() {
        let mut tags: Vec<u8> = ErrorCode::ALL.iter().map(|c| error_code_tag(*c)).collect();
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_bytes(&code.to_bytes()).unwrap(), code);
        }
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ErrorCode::ALL.len());
        assert!(ErrorCode::from_bytes(&[0]).is_err());
    }

    #[test]
    fn a_certificate_and_its_proof_decode_to_themselves_and_still_verify() {
        let notary = SecretKey::from_seed([5; 32]);
        let ids: Vec<Hash32> = (0..7u8).map(|i| Hash32([i; 32])).collect();
        let (cert, proofs) = CommitCertificate::sign(&notary, 42, &ids);
        let cert2 = CommitCertificate::from_bytes(&cert.to_bytes()).unwrap();
        let proof2 = CommitProof::from_bytes(&proofs[3].to_bytes()).unwrap();
        cert2.verify(&notary.public_key(), &ids[3], &proof2).unwrap();
    }

    #[test]
    fn a_standard_output_has_fixed_bytes() {
        // Pinned: changing this encoding changes every token id and every stored token.
        let out = Output::standard(Amount::from_tiyn(0x0102).unwrap(), address(0xaa), address(0xbb));
        let bytes = out.to_bytes();
        assert_eq!(bytes.len(), 8 + 32 + 32 + 1);
        assert_eq!(&bytes[..8], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[8..40], &[0xaa; 32]);
        assert_eq!(&bytes[40..72], &[0xbb; 32]);
        assert_eq!(bytes[72], 0);
    }
}
