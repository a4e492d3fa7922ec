//! Stateless validation: the rules every validating node applies to a transaction, without
//! looking at any ledger state. The notary then checks the one stateful rule (every input is
//! unspent) and nothing else.
//!
//! Checks run cheapest first: structure and bounds, then amounts and conservation, then
//! signatures (the expensive part, verified as one batch).

use crate::crypto::{verify_batch, Address, Hash32, PublicKey, Signature};
use crate::money::Amount;
use crate::token::{Policy, TokenId, TxId};
use crate::tx::{
    batch_message, node_message, owner_message, Command, Transaction, TX_INPUTS_MAX, TX_OUTPUTS_MAX, TX_SIGNATURES_MAX,
};
use crate::{bail, ensure, Error, ErrorCode, Result};

/// What the validator knows of a node key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// The central bank (NBK) node: may attest anything, including issue and redeem.
    CentralBank,
    /// A registered bank or Treasury node in good standing.
    ActiveNode,
    /// A registered node the operator has blocked.
    BlockedNode,
    /// The oracle node: confirms every transaction that creates or moves programmed tokens.
    Oracle,
    /// Not a node of this network.
    Unknown,
}

/// The network's trust anchors, as the validator needs them.
pub trait Authorities {
    /// The issuer address every DT token must carry.
    fn issuer(&self) -> Address;
    /// The standing of a node key.
    fn key_status(&self, key: &PublicKey) -> KeyStatus;
}

/// A transaction that passed every stateless rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub tx_id: TxId,
    pub inputs: Vec<TokenId>,
    pub outputs: Vec<TokenId>,
    pub value_in: Amount,
    pub value_out: Amount,
    /// DT created by this transaction (issue only).
    pub issued: Amount,
    /// DT destroyed by this transaction (redeem only).
    pub redeemed: Amount,
}

/// Validate a transaction completely: structure, amounts, conservation, signatures.
pub fn validate(tx: &Transaction, authorities: &dyn Authorities) -> Result<Validated> {
    let validated = check_structure(tx, authorities)?;
    let messages = SignedMessages::of(tx, &validated.tx_id)?;
    let items = signature_items(tx, &messages);
    verify_batch(&items)?;
    Ok(validated)
}

/// The messages signed in a transaction, computed once: the owners' message, and for each
/// attestation its message (the transaction's node message, or the batch root's message once
/// the attestation's Merkle proof checks out).
pub struct SignedMessages {
    pub owner: Hash32,
    pub attestations: Vec<Hash32>,
}

impl SignedMessages {
    pub fn of(tx: &Transaction, tx_id: &TxId) -> Result<SignedMessages> {
        SignedMessages::of_memo(tx, tx_id, &mut crate::merkle::InnerMemo::default())
    }

    /// [`SignedMessages::of`] for one of many transactions attested in the same batches: the
    /// Merkle proofs share their inner hashes through `memo`.
    pub fn of_memo(tx: &Transaction, tx_id: &TxId, memo: &mut crate::merkle::InnerMemo) -> Result<SignedMessages> {
        Ok(SignedMessages {
            owner: owner_message(tx_id),
            attestations: SignedMessages::attestations_memo(tx, tx_id, memo)?,
        })
    }

    /// The attestations' messages alone, for a caller that does not verify the owners'
    /// signatures (a payee, or the payer's bank after it verified them).
    pub fn attestations_memo(
        tx: &Transaction,
        tx_id: &TxId,
        memo: &mut crate::merkle::InnerMemo,
    ) -> Result<Vec<Hash32>> {
        Ok(SignedMessages::attestations_except(tx, tx_id, memo, None)?.into_iter().flatten().collect())
    }

    /// [`SignedMessages::attestations_memo`] but for the attestations by `skip`, whose
    /// messages are not computed (`None` in their place): a bank that has just attested a
    /// batch itself verifies neither its own signature nor the proofs it has just built.
    pub fn attestations_except(
        tx: &Transaction,
        tx_id: &TxId,
        memo: &mut crate::merkle::InnerMemo,
        skip: Option<&PublicKey>,
    ) -> Result<Vec<Option<Hash32>>> {
        let mut attestations = Vec::with_capacity(tx.attestations.len());
        for a in &tx.attestations {
            if Some(&a.public_key) == skip {
                attestations.push(None);
                continue;
            }
            match &a.batch {
                None => attestations.push(Some(node_message(tx_id))),
                Some(proof) => {
                    let root = crate::merkle::root_from_path_memo(
                        tx_id,
                        proof.index as usize,
                        proof.size as usize,
                        &proof.path,
                        memo,
                    );
                    ensure!(
                        root == Some(proof.root),
                        InvalidSignature,
                        "a batch attestation's proof does not place this transaction under its root"
                    );
                    attestations.push(Some(memo.root_message(&proof.root, batch_message)));
                }
            }
        }
        Ok(attestations)
    }
}

/// Every signature the transaction carries, ready for (batch) verification. Callers that
/// validate many transactions at once collect these across transactions into one batch.
pub fn signature_items<'a>(tx: &Transaction, messages: &'a SignedMessages) -> Vec<(PublicKey, &'a [u8], Signature)> {
    let mut items = Vec::with_capacity(tx.witnesses.len() + tx.attestations.len());
    for w in &tx.witnesses {
        items.push((w.public_key, &messages.owner.0[..], w.signature));
    }
    for (a, message) in tx.attestations.iter().zip(&messages.attestations) {
        items.push((a.public_key, &message.0[..], a.signature));
    }
    items
}

/// A transaction's id and its tokens' ids, hashed once: the payment path needs them in the
/// bank's checks, the stateless rules and the settle stage, and each is a SHA-256 (a payment's
/// ids were about 3% of its CPU when every step hashed its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxIds {
    pub tx_id: TxId,
    pub inputs: Vec<TokenId>,
    pub outputs: Vec<TokenId>,
}

impl TxIds {
    /// The ids of `tx`, once its counts are within bounds (so an oversized transaction is
    /// refused before anything is hashed).
    pub fn of(tx: &Transaction) -> Result<TxIds> {
        check_bounds(tx)?;
        let tx_id = tx.id();
        Ok(TxIds { tx_id, inputs: tx.input_ids(), outputs: tx.output_ids_of(&tx_id) })
    }
}

/// Every rule except the cryptographic verification of the signatures.
pub fn check_structure(tx: &Transaction, authorities: &dyn Authorities) -> Result<Validated> {
    check_structure_ids(tx, TxIds::of(tx)?, authorities)
}

/// The size bounds of a transaction, which [`TxIds::of`] checks before it hashes anything: a
/// caller that needs no ids checks them alone.
pub fn check_bounds(tx: &Transaction) -> Result<()> {
    let body = &tx.body;
    ensure!(
        body.inputs.len() <= TX_INPUTS_MAX,
        LimitExceeded,
        "{} inputs, at most {TX_INPUTS_MAX} allowed",
        body.inputs.len()
    );
    ensure!(
        body.outputs.len() <= TX_OUTPUTS_MAX,
        LimitExceeded,
        "{} outputs, at most {TX_OUTPUTS_MAX} allowed",
        body.outputs.len()
    );
    ensure!(
        tx.witnesses.len() <= TX_SIGNATURES_MAX && tx.attestations.len() <= TX_SIGNATURES_MAX,
        LimitExceeded,
        "too many signatures, at most {TX_SIGNATURES_MAX} of each kind"
    );
    Ok(())
}

/// [`check_structure`] with the ids already hashed ([`TxIds::of`] this very transaction).
/// Panics if `ids` do not count this transaction's inputs and outputs (a programmer error).
pub fn check_structure_ids(tx: &Transaction, ids: TxIds, authorities: &dyn Authorities) -> Result<Validated> {
    debug_assert_eq!(ids.tx_id, tx.id(), "the ids are this transaction's");
    check_bounds(tx)?;
    let body = &tx.body;
    match body.command {
        Command::Issue => {
            ensure!(body.inputs.is_empty(), MalformedInput, "an issue spends no inputs");
            ensure!(!body.outputs.is_empty(), MalformedInput, "an issue creates outputs");
        }
        Command::Transfer => {
            ensure!(!body.inputs.is_empty(), MalformedInput, "a transfer spends inputs");
            ensure!(!body.outputs.is_empty(), MalformedInput, "a transfer creates outputs");
        }
        Command::Redeem => {
            ensure!(!body.inputs.is_empty(), MalformedInput, "a redemption spends inputs");
        }
    }

    let issuer = authorities.issuer();
    for (i, output) in body.outputs.iter().enumerate() {
        ensure!(!output.amount_tiyn.is_zero(), MalformedInput, "output {i} has a zero amount");
        ensure!(output.issuer == issuer, MalformedInput, "output {i} names an unknown issuer");
    }
    for (i, input) in body.inputs.iter().enumerate() {
        ensure!(!input.output.amount_tiyn.is_zero(), MalformedInput, "input {i} has a zero amount");
        ensure!(input.output.issuer == issuer, MalformedInput, "input {i} names an unknown issuer");
    }

    let TxIds { tx_id, inputs, outputs } = ids;
    // The caller hashed `ids` from this very transaction (`TxIds::of`): ids of another one
    // are a programmer error, not a property of the request.
    assert_eq!(inputs.len(), body.inputs.len(), "one token id per input");
    assert_eq!(outputs.len(), body.outputs.len(), "one token id per output");
    if let Some(id) = crate::hash::first_repeat(&inputs) {
        bail!(DoubleSpend, "token {id} is spent twice in one transaction");
    }

    let value_in = Amount::sum(body.inputs.iter().map(|i| i.output.amount_tiyn))?;
    let value_out = Amount::sum(body.outputs.iter().map(|o| o.amount_tiyn))?;
    let (issued, redeemed) = match body.command {
        Command::Issue => (value_out, Amount::ZERO),
        Command::Transfer => {
            ensure!(value_in == value_out, ConservationViolated, "inputs {value_in} differ from outputs {value_out}");
            (Amount::ZERO, Amount::ZERO)
        }
        Command::Redeem => {
            ensure!(
                value_in > value_out,
                ConservationViolated,
                "a redemption must destroy value: inputs {value_in}, outputs {value_out}"
            );
            (Amount::ZERO, value_in.checked_sub(value_out)?)
        }
    };

    check_witnesses(tx)?;
    let attested = check_attestations(tx, authorities)?;
    check_policies(tx, attested)?;

    Ok(Validated { tx_id, inputs, outputs, value_in, value_out, issued, redeemed })
}

/// Every owner of an input that needs its owner's signature signed, and no one who owns no input did. Held inputs need
/// no owner's signature: the owner signed when it held them, and from then on they move only
/// by the oracle's decision (checked by [`check_policies`]).
///
/// Searches are linear: both lists are bounded ([`TX_INPUTS_MAX`] inputs, [`TX_SIGNATURES_MAX`]
/// witnesses, so at most 65,536 comparisons), and in a payment both are one or two long, where
/// hash sets cost more than they save.
fn check_witnesses(tx: &Transaction) -> Result<()> {
    let inputs = &tx.body.inputs;
    let mut signed: Vec<Address> = Vec::with_capacity(tx.witnesses.len());
    for w in &tx.witnesses {
        let address = w.public_key.address();
        ensure!(
            inputs.iter().any(|i| i.output.owner == address),
            InvalidSignature,
            "a witness signs for {address}, which owns no input"
        );
        ensure!(!signed.contains(&address), MalformedInput, "duplicate witness for {address}");
        signed.push(address);
    }
    for input in tx.body.inputs.iter().filter(|i| i.output.policy.owner_signs()) {
        let owner = input.output.owner;
        if !signed.contains(&owner) {
            bail!(InvalidSignature, "the owner {owner} of an input did not sign");
        }
    }
    Ok(())
}

/// Which kinds of key attested a transaction.
#[derive(Clone, Copy, Debug, Default)]
struct Attested {
    oracle: bool,
}

/// Programmed money moves only with the oracle's confirmation: a transaction that spends or
/// creates any token whose policy is not `Standard` needs the oracle's attestation, and
/// emission and redemption move standard DT only. This is the rule that makes a node unable
/// to move held tokens by itself, whatever it signs.
fn check_policies(tx: &Transaction, attested: Attested) -> Result<()> {
    let body = &tx.body;
    let programmed_input = body.inputs.iter().find(|i| i.output.policy.needs_oracle());
    let programmed_output = body.outputs.iter().any(|o| o.policy.needs_oracle());
    if matches!(body.command, Command::Issue | Command::Redeem) {
        ensure!(
            programmed_input.is_none() && !programmed_output,
            Forbidden,
            "{:?} moves standard DT only; programmed tokens are released by the oracle first",
            body.command
        );
        return Ok(());
    }
    if attested.oracle {
        return Ok(());
    }
    if let Some(input) = programmed_input {
        match &input.output.policy {
            Policy::Held { event } => bail!(
                FundsHeld,
                "token {} is held for oracle event {event}: only the oracle's release or return moves it",
                input.token_id()
            ),
            Policy::Marked { .. } => bail!(
                FundsMarked,
                "token {} is marked: it moves only where its marking allows, with the oracle's confirmation",
                input.token_id()
            ),
            Policy::Vat | Policy::Standard => bail!(
                FundsMarked,
                "token {} is VAT-marked: it pays VAT only, with the oracle's confirmation",
                input.token_id()
            ),
        }
    }
    ensure!(
        !programmed_output,
        OracleConfirmationRequired,
        "the transaction creates programmed tokens without the oracle's confirmation"
    );
    Ok(())
}

/// Issue and redeem need the central bank's attestation; a transfer needs an active node's.
fn check_attestations(tx: &Transaction, authorities: &dyn Authorities) -> Result<Attested> {
    let mut attested = Attested::default();
    let mut central_bank = false;
    let mut active_node = false;
    // Pairwise: at most TX_SIGNATURES_MAX attestations, one to three in practice.
    for (i, a) in tx.attestations.iter().enumerate() {
        let repeated = tx.attestations[..i].iter().any(|earlier| earlier.public_key == a.public_key);
        ensure!(!repeated, MalformedInput, "duplicate attestation");
        match authorities.key_status(&a.public_key) {
            KeyStatus::CentralBank => central_bank = true,
            KeyStatus::ActiveNode => active_node = true,
            KeyStatus::Oracle => attested.oracle = true,
            KeyStatus::BlockedNode => {
                return Err(Error::new(ErrorCode::BankBlocked, "the attesting node is blocked by the operator"))
            }
            KeyStatus::Unknown => {
                bail!(InvalidSignature, "attestation by a key that is not a node of this network")
            }
        }
    }
    match tx.body.command {
        Command::Issue | Command::Redeem => {
            ensure!(central_bank, InvalidSignature, "{:?} requires the central bank's attestation", tx.body.command)
        }
        Command::Transfer => ensure!(
            central_bank || active_node,
            InvalidSignature,
            "a transfer requires a validating node's attestation"
        ),
    }
    Ok(attested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::token::Output;
    use crate::tx::TxBody;

    struct Net {
        nbk: SecretKey,
        bank: SecretKey,
        blocked: SecretKey,
        oracle: SecretKey,
    }

    impl Authorities for Net {
        fn issuer(&self) -> Address {
            self.nbk.address()
        }
        fn key_status(&self, key: &PublicKey) -> KeyStatus {
            if *key == self.nbk.public_key() {
                KeyStatus::CentralBank
            } else if *key == self.bank.public_key() {
                KeyStatus::ActiveNode
            } else if *key == self.blocked.public_key() {
                KeyStatus::BlockedNode
            } else if *key == self.oracle.public_key() {
                KeyStatus::Oracle
            } else {
                KeyStatus::Unknown
            }
        }
    }

    fn net() -> Net {
        Net {
            nbk: SecretKey::from_seed([1; 32]),
            bank: SecretKey::from_seed([2; 32]),
            blocked: SecretKey::from_seed([3; 32]),
            oracle: SecretKey::from_seed([4; 32]),
        }
    }

    fn amount(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    fn issue(net: &Net, to: Address, value: u64) -> Transaction {
        let body = TxBody {
            command: Command::Issue,
            inputs: vec![],
            outputs: vec![Output::standard(amount(value), to, net.issuer())],
            nonce: 1,
        };
        let mut tx = Transaction::new(body);
        tx.attest(&net.nbk);
        tx
    }

    fn pay(net: &Net, from: &SecretKey, funding: &Transaction, outs: &[(Address, u64)]) -> Transaction {
        let body = TxBody {
            command: Command::Transfer,
            inputs: funding.outputs_as_inputs(),
            outputs: outs.iter().map(|(a, v)| Output::standard(amount(*v), *a, net.issuer())).collect(),
            nonce: 2,
        };
        let mut tx = Transaction::new(body);
        tx.sign_owner(from);
        tx.attest(&net.bank);
        tx
    }

    #[test]
    fn issue_needs_the_central_bank() {
        let net = net();
        let alice = SecretKey::from_seed([9; 32]);
        let tx = issue(&net, alice.address(), 500_000);
        let v = validate(&tx, &net).unwrap();
        assert_eq!(v.issued, amount(500_000));

        let mut forged = tx.clone();
        forged.attestations.clear();
        forged.attest(&net.bank);
        assert_eq!(validate(&forged, &net).unwrap_err().code, ErrorCode::InvalidSignature);
    }

    #[test]
    fn transfer_five_thousand_paying_one_fifty_gives_change() {
        let net = net();
        let alice = SecretKey::from_seed([9; 32]);
        let bob = SecretKey::from_seed([10; 32]);
        let funding = issue(&net, alice.address(), 500_000);
        let tx = pay(&net, &alice, &funding, &[(bob.address(), 15_000), (alice.address(), 485_000)]);
        let v = validate(&tx, &net).unwrap();
        assert_eq!(v.value_in, v.value_out);
        assert_eq!(v.inputs.len(), 1);
        assert_eq!(v.outputs.len(), 2);
    }

    #[test]
    fn transfer_rules() {
        let net = net();
        let alice = SecretKey::from_seed([9; 32]);
        let bob = SecretKey::from_seed([10; 32]);
        let funding = issue(&net, alice.address(), 1_000);

        let unbalanced = pay(&net, &alice, &funding, &[(bob.address(), 999)]);
        assert_eq!(validate(&unbalanced, &net).unwrap_err().code, ErrorCode::ConservationViolated);

        let mut wrong_signer = pay(&net, &alice, &funding, &[(bob.address(), 1_000)]);
        wrong_signer.witnesses.clear();
        wrong_signer.sign_owner(&bob);
        assert_eq!(validate(&wrong_signer, &net).unwrap_err().code, ErrorCode::InvalidSignature);

        let mut tampered = pay(&net, &alice, &funding, &[(bob.address(), 1_000)]);
        tampered.body.outputs[0].owner = alice.address();
        assert_eq!(validate(&tampered, &net).unwrap_err().code, ErrorCode::InvalidSignature);

        let mut zero = pay(&net, &alice, &funding, &[(bob.address(), 1_000)]);
        zero.body.outputs.push(Output::standard(Amount::ZERO, bob.address(), net.issuer()));
        assert_eq!(validate(&zero, &net).unwrap_err().code, ErrorCode::MalformedInput);

        let mut dup = pay(&net, &alice, &funding, &[(bob.address(), 2_000)]);
        let again = dup.body.inputs[0].clone();
        dup.body.inputs.push(again);
        assert_eq!(validate(&dup, &net).unwrap_err().code, ErrorCode::DoubleSpend);

        let mut by_blocked = pay(&net, &alice, &funding, &[(bob.address(), 1_000)]);
        by_blocked.attestations.clear();
        by_blocked.attest(&net.blocked);
        assert_eq!(validate(&by_blocked, &net).unwrap_err().code, ErrorCode::BankBlocked);

        let mut redeem_by_bank = pay(&net, &alice, &funding, &[(bob.address(), 400)]);
        redeem_by_bank.body.command = Command::Redeem;
        redeem_by_bank.witnesses.clear();
        redeem_by_bank.attestations.clear();
        redeem_by_bank.sign_owner(&alice);
        redeem_by_bank.attest(&net.bank);
        assert_eq!(validate(&redeem_by_bank, &net).unwrap_err().code, ErrorCode::InvalidSignature);
        redeem_by_bank.attest(&net.nbk);
        assert_eq!(validate(&redeem_by_bank, &net).unwrap().redeemed, amount(600));
    }

    /// Alice holds 1,000 of a 1,500 token for an event (oracle-confirmed), keeping 500 change.
    fn hold(net: &Net, alice: &SecretKey, funding: &Transaction, event: Hash32) -> Transaction {
        let body = TxBody {
            command: Command::Transfer,
            inputs: funding.outputs_as_inputs(),
            outputs: vec![
                Output::held(amount(1_000), alice.address(), net.issuer(), event),
                Output::standard(amount(500), alice.address(), net.issuer()),
            ],
            nonce: 3,
        };
        let mut tx = Transaction::new(body);
        tx.sign_owner(alice);
        tx.attest(&net.bank);
        tx
    }

    #[test]
    fn holding_needs_the_oracle_to_create_and_to_move_held_tokens() {
        let net = net();
        let alice = SecretKey::from_seed([9; 32]);
        let bob = SecretKey::from_seed([10; 32]);
        let funding = issue(&net, alice.address(), 1_500);
        let event = crate::token::event_hash("EV-1");

        let mut held = hold(&net, &alice, &funding, event);
        assert_eq!(validate(&held, &net).unwrap_err().code, ErrorCode::OracleConfirmationRequired);
        held.attest(&net.oracle);
        validate(&held, &net).unwrap();

        // A plain transfer of the held token, signed by its owner and the bank: refused.
        let held_input = held.outputs_as_inputs().remove(0);
        let plain = TxBody {
            command: Command::Transfer,
            inputs: vec![held_input.clone()],
            outputs: vec![Output::standard(amount(1_000), bob.address(), net.issuer())],
            nonce: 4,
        };
        let mut rogue = Transaction::new(plain.clone());
        rogue.sign_owner(&alice);
        rogue.attest(&net.bank);
        assert_eq!(validate(&rogue, &net).unwrap_err().code, ErrorCode::FundsHeld);

        // The oracle's release needs no owner signature.
        let mut release = Transaction::new(plain.clone());
        release.attest(&net.bank);
        release.attest(&net.oracle);
        validate(&release, &net).unwrap();

        // A forged oracle signature fails verification; an impostor key is not the oracle.
        let mut forged = Transaction::new(plain.clone());
        forged.attest(&net.bank);
        forged.attestations.push(crate::tx::Attestation {
            public_key: net.oracle.public_key(),
            signature: net.bank.sign(&node_message(&forged.id()).0),
            batch: None,
        });
        assert_eq!(validate(&forged, &net).unwrap_err().code, ErrorCode::InvalidSignature);
        let mut impostor = Transaction::new(plain);
        impostor.attest(&net.bank);
        impostor.attest(&SecretKey::from_seed([77; 32]));
        assert_eq!(validate(&impostor, &net).unwrap_err().code, ErrorCode::InvalidSignature);

        // Swapping the event after the oracle signed breaks its signature.
        let mut swapped = held.clone();
        swapped.body.outputs[0] =
            Output::held(amount(1_000), alice.address(), net.issuer(), crate::token::event_hash("EV-2"));
        assert_eq!(validate(&swapped, &net).unwrap_err().code, ErrorCode::InvalidSignature);

        // Held tokens are never redeemed directly, even with every signature.
        let mut redeem =
            Transaction::new(TxBody { command: Command::Redeem, inputs: vec![held_input], outputs: vec![], nonce: 5 });
        redeem.sign_owner(&alice);
        redeem.attest(&net.nbk);
        redeem.attest(&net.oracle);
        assert_eq!(validate(&redeem, &net).unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn a_batch_attestation_covers_each_transaction_of_its_tree_only() {
        let net = net();
        let alice = SecretKey::from_seed([9; 32]);
        let bob = SecretKey::from_seed([10; 32]);
        let mut txs: Vec<Transaction> = (0..5u64)
            .map(|n| {
                let funding = issue(&net, alice.address(), 1_000 + n);
                let mut tx = pay(&net, &alice, &funding, &[(bob.address(), 1_000 + n)]);
                tx.attestations.clear();
                tx
            })
            .collect();
        let mut refs: Vec<&mut Transaction> = txs.iter_mut().collect();
        Transaction::attest_batch(&mut refs, &net.bank);
        for tx in &txs {
            validate(tx, &net).unwrap();
        }
        // One signature for all: batch verification counts it once.
        assert!(txs.windows(2).all(|w| w[0].attestations[0].signature == w[1].attestations[0].signature));
        // A proof moved to another transaction, or a changed path, does not verify.
        let mut moved = txs[0].clone();
        moved.attestations[0].batch = txs[1].attestations[0].batch.clone();
        assert_eq!(validate(&moved, &net).unwrap_err().code, ErrorCode::InvalidSignature);
        let mut bent = txs[2].clone();
        if let Some(proof) = bent.attestations[0].batch.as_mut() {
            proof.path[0] = Hash32([1; 32]);
        }
        assert_eq!(validate(&bent, &net).unwrap_err().code, ErrorCode::InvalidSignature);
        // The root of another batch, with the right signature for it: not this transaction.
        let mut other = txs[3].clone();
        other.body.nonce += 1;
        assert_eq!(validate(&other, &net).unwrap_err().code, ErrorCode::InvalidSignature);
    }
}
