//! The notary as a role: it takes attested batches from the banks and the NBK, verifies the
//! attestations itself, spends each transaction atomically and idempotently, commits to its
//! own store, and answers with one signed commit certificate per batch.
//!
//! It trusts no caller: a transaction is spent only when its stateless rules hold
//! (`dtenge_core::validate`, with the network's trust anchors), the role that sent it attested
//! it, and every attestation it carries verifies. It does not verify the owners' signatures:
//! the attesting bank did, and answers for it with its attestation (Project Hamilton's
//! sentinels and shards split the work the same way). Each distinct attestation signature is
//! verified once per request: a bank attests a whole batch with one signature over a Merkle
//! root, so a batch of 512 payments from three banks costs the notary three verifications and
//! the proofs.
//!
//! Idempotent per transaction: a transaction committed before is certified again (its outcome
//! is `Committed` with a fresh proof), never spent again; one being committed by another
//! request is refused `REQUEST_IN_PROGRESS` (ask again). A crash after the durable commit and
//! before the reply loses nothing: the retry finds the transaction committed.
//!
//! Every reply comes after the durable commit of what it certifies. Certificates are numbered
//! from 1 in commit order (`seq`, stored with each commit), so reconciliation can name a point
//! in the notary's history.

use crate::{Notary, Spend, SpendRequest, TABLES};
use dtenge_core::certificate::CommitCertificate;
use dtenge_core::crypto::{verify_batch_cached, Address, Hash32, KeyCache, PublicKey, SecretKey, Signature};
use dtenge_core::token::TxId;
use dtenge_core::tx::Transaction;
use dtenge_core::validate::{check_structure_ids, Authorities, KeyStatus, SignedMessages, TxIds, Validated};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, RoleId};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};

/// The notary's own keyed rows: its sequence number.
pub const META_TABLE: Table = Table("notary_meta");
const SEQ_KEY: &[u8] = b"seq";

/// Every table of the notary role's store.
pub fn tables() -> Vec<Table> {
    let mut tables = TABLES.to_vec();
    tables.push(META_TABLE);
    tables
}

/// What the notary knows of the network's keys: the issuer, the NBK's and the oracle's keys,
/// each bank's node key, and which banks the operator blocked.
#[derive(Clone, Debug)]
pub struct Anchors {
    pub issuer: Address,
    pub central_bank: PublicKey,
    pub oracle: PublicKey,
    /// Node key -> bank (or Treasury) id.
    pub banks: HashMap<PublicKey, String>,
    pub blocked: BTreeSet<String>,
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
        match self.banks.get(key) {
            Some(bank) if self.blocked.contains(bank) => KeyStatus::BlockedNode,
            Some(_) => KeyStatus::ActiveNode,
            None => KeyStatus::Unknown,
        }
    }
}

impl Anchors {
    /// Is `key` the key `sender` attests with?
    fn is_key_of(&self, sender: &RoleId, key: &PublicKey) -> bool {
        match sender {
            RoleId::Central => *key == self.central_bank,
            RoleId::Bank(bank) => self.banks.get(key) == Some(bank),
            RoleId::Notary | RoleId::Oracle | RoleId::Directory => false,
        }
    }
}

/// The notary role.
pub struct NotaryService {
    notary: Notary,
    key: SecretKey,
    anchors: RwLock<Anchors>,
    store: Store,
    /// The last certificate's number. Held across a request: requests are certified one at a
    /// time, in the order their commits reach the disk.
    seq: Mutex<u64>,
    key_cache: KeyCache,
}

/// One transaction of a request on its way through the checks.
struct Item<'a> {
    tx: &'a Transaction,
    /// `Ok` while it passes; the first failure otherwise.
    state: Result<Validated>,
}

impl NotaryService {
    /// Open the notary on its own store (created with [`tables`]), with its signing key and
    /// the network's trust anchors.
    pub fn open(store: Store, key: SecretKey, anchors: Anchors) -> Result<NotaryService> {
        let (notary, _replayed) = Notary::load(&store)?;
        let seq = match store.get(META_TABLE, SEQ_KEY)? {
            None => 0,
            Some(bytes) => {
                let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    Error::new(ErrorCode::StorageFailure, "the notary's sequence number is not 8 bytes")
                })?;
                u64::from_le_bytes(bytes)
            }
        };
        Ok(NotaryService {
            notary,
            key,
            anchors: RwLock::new(anchors),
            store,
            seq: Mutex::new(seq),
            key_cache: KeyCache::default(),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The last certificate's number (0 before the first).
    pub fn seq(&self) -> u64 {
        *self.seq.lock()
    }

    /// The unspent set, for reconciliation and tests.
    pub fn notary(&self) -> &Notary {
        &self.notary
    }

    /// The operator blocked (or unblocked) a bank: its attestations no longer count (or count
    /// again) from the next request on.
    pub fn set_blocked(&self, bank: &str, blocked: bool) {
        let mut anchors = self.anchors.write();
        if blocked {
            anchors.blocked.insert(bank.to_string());
        } else {
            anchors.blocked.remove(bank);
        }
    }

    /// Answer one envelope; `None` for a message the notary does not take (it is dropped: a
    /// role that sends the notary something else has a bug or is hostile, and gets no
    /// answer it could act on).
    pub fn handle(&self, envelope: Envelope) -> Option<Envelope> {
        let Message::NotarizeRequest(request) = envelope.message else { return None };
        let reply = self.notarize(&envelope.from, &request);
        Some(Envelope { from: RoleId::Notary, to: envelope.from, message: Message::NotarizeReply(reply) })
    }

    /// Check, spend, commit and certify one request from `sender`.
    pub fn notarize(&self, sender: &RoleId, request: &NotarizeRequest) -> NotarizeReply {
        assert!(request.txs.len() <= dtenge_wire::message::BATCH_TXS_MAX, "the wire bounds a batch");
        let mut items = self.check(sender, &request.txs);
        self.verify_attestations(&mut items);
        let mut seq = self.seq.lock();
        let committed = self.spend_and_commit(&mut items, *seq + 1);
        let reply = self.certify(request.batch, &items, &committed, &mut seq);
        assert_eq!(reply.outcomes.len(), request.txs.len(), "one outcome per transaction");
        reply
    }

    /// The stateless rules, with the trust anchors, and the sender's own attestation.
    fn check<'a>(&self, sender: &RoleId, txs: &'a [Transaction]) -> Vec<Item<'a>> {
        let anchors = self.anchors.read();
        txs.iter()
            .map(|tx| {
                let state = TxIds::of(tx).and_then(|ids| check_structure_ids(tx, ids, &*anchors)).and_then(|v| {
                    if tx.attestations.iter().any(|a| anchors.is_key_of(sender, &a.public_key)) {
                        Ok(v)
                    } else {
                        Err(Error::new(
                            ErrorCode::InvalidSignature,
                            format!("{sender} sent a transaction it did not attest"),
                        ))
                    }
                });
                Item { tx, state }
            })
            .collect()
    }

    /// Verify every distinct attestation signature of the items still passing, as one batch;
    /// if the batch fails, find the bad ones one by one and refuse their transactions.
    fn verify_attestations(&self, items: &mut [Item<'_>]) {
        let mut memo = dtenge_core::merkle::InnerMemo::default();
        // (key, message, signature) -> the items that rely on it.
        let mut signatures: Vec<(PublicKey, Hash32, Signature)> = Vec::new();
        let mut relies: Vec<Vec<usize>> = Vec::new();
        for (index, item) in items.iter_mut().enumerate() {
            let Ok(validated) = &item.state else { continue };
            let messages = match SignedMessages::of_memo(item.tx, &validated.tx_id, &mut memo) {
                Ok(messages) => messages,
                Err(e) => {
                    item.state = Err(e);
                    continue;
                }
            };
            for (a, message) in item.tx.attestations.iter().zip(messages.attestations) {
                let entry = (a.public_key, message, a.signature);
                let position = match signatures.iter().position(|s| *s == entry) {
                    Some(position) => position,
                    None => {
                        signatures.push(entry);
                        relies.push(Vec::new());
                        signatures.len() - 1
                    }
                };
                relies[position].push(index);
            }
        }
        let batch: Vec<(PublicKey, &[u8], Signature)> = signatures.iter().map(|(k, m, s)| (*k, &m.0[..], *s)).collect();
        if verify_batch_cached(&batch, Some(&self.key_cache)).is_ok() {
            return;
        }
        for (one, dependants) in batch.iter().zip(&relies) {
            if verify_batch_cached(std::slice::from_ref(one), Some(&self.key_cache)).is_err() {
                for &index in dependants {
                    items[index].state =
                        Err(Error::new(ErrorCode::InvalidSignature, "an attestation's signature does not verify"));
                }
            }
        }
    }

    /// Spend every passing item in request order (a later item spending what an earlier one
    /// spent is a double spend), commit the new spends with certificate number `seq`, and
    /// finalize them. Returns, per item, whether it is committed (now or before).
    fn spend_and_commit(&self, items: &mut [Item<'_>], seq: u64) -> Vec<bool> {
        let mut committed = vec![false; items.len()];
        let mut fresh: Vec<usize> = Vec::new();
        {
            let mut shards = self.notary.lock_all();
            for (index, item) in items.iter_mut().enumerate() {
                let Ok(validated) = &item.state else { continue };
                match shards.try_spend(SpendRequest::of(validated)) {
                    Ok(Spend::Pending) => fresh.push(index),
                    Ok(Spend::AlreadyCommitted) => committed[index] = true,
                    Err(e) => item.state = Err(e),
                }
            }
        }
        if committed.iter().all(|c| !c) && fresh.is_empty() {
            return committed;
        }
        let mut batch = WriteBatch::new();
        for &index in &fresh {
            if let Ok(validated) = &items[index].state {
                Notary::writes(&SpendRequest::of(validated), &mut batch);
            }
        }
        batch.put(META_TABLE, SEQ_KEY.to_vec(), seq.to_le_bytes().to_vec());
        let written = self.store.commit(batch);
        if let Err(e) = &written {
            // Nothing of this request is certified: the store stops after a failed commit
            // (see `dtenge_store`), and a certificate number that is not durable could be
            // given out again after the restart.
            for (index, item) in items.iter_mut().enumerate() {
                if committed[index] {
                    committed[index] = false;
                    item.state = Err(e.clone());
                }
            }
        }
        let mut shards = self.notary.lock_all();
        for &index in &fresh {
            let Ok(validated) = &items[index].state else { unreachable!("fresh items passed") };
            match &written {
                Ok(()) => {
                    shards.finalize(SpendRequest::of(validated));
                    committed[index] = true;
                }
                Err(e) => {
                    shards.revert(SpendRequest::of(validated));
                    items[index].state = Err(e.clone());
                }
            }
        }
        committed
    }

    /// The reply: one certificate over the committed items, in request order.
    fn certify(&self, batch: u64, items: &[Item<'_>], committed: &[bool], seq: &mut u64) -> NotarizeReply {
        let ids: Vec<TxId> = items
            .iter()
            .zip(committed)
            .filter(|(_, c)| **c)
            .map(|(item, _)| match &item.state {
                Ok(validated) => validated.tx_id,
                Err(_) => unreachable!("a committed item passed every check"),
            })
            .collect();
        if ids.is_empty() {
            let outcomes = items.iter().map(|item| Outcome::Refused(refusal(&item.state))).collect();
            return NotarizeReply { batch, certificate: None, outcomes };
        }
        *seq += 1;
        let (certificate, proofs) = CommitCertificate::sign(&self.key, *seq, &ids);
        let mut proofs = proofs.into_iter();
        let outcomes = items
            .iter()
            .zip(committed)
            .map(|(item, c)| match c {
                true => Outcome::Committed(proofs.next().expect("one proof per committed item")),
                false => Outcome::Refused(refusal(&item.state)),
            })
            .collect();
        assert!(proofs.next().is_none(), "every proof was handed out");
        NotarizeReply { batch, certificate: Some(certificate), outcomes }
    }
}

fn refusal(state: &Result<Validated>) -> Error {
    match state {
        Err(e) => e.clone(),
        Ok(_) => unreachable!("an item that passed is committed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::token::Output;
    use dtenge_core::tx::{Command, TxBody};
    use dtenge_core::Amount;
    use dtenge_store::{CrashMode, SimDisk};

    /// A small network: the NBK, two banks and their clients' keys.
    struct World {
        nbk: SecretKey,
        oracle: SecretKey,
        steppe: SecretKey,
        sapa: SecretKey,
        notary: SecretKey,
        disk: SimDisk,
    }

    fn steppe() -> RoleId {
        RoleId::Bank("steppe".into())
    }

    impl World {
        fn new() -> World {
            let key = |b: u8| SecretKey::from_seed([b; 32]);
            World { nbk: key(1), oracle: key(2), steppe: key(3), sapa: key(4), notary: key(5), disk: SimDisk::new() }
        }

        fn anchors(&self) -> Anchors {
            Anchors {
                issuer: self.nbk.address(),
                central_bank: self.nbk.public_key(),
                oracle: self.oracle.public_key(),
                banks: [(self.steppe.public_key(), "steppe".into()), (self.sapa.public_key(), "sapa".into())]
                    .into_iter()
                    .collect(),
                blocked: BTreeSet::new(),
            }
        }

        /// The notary, opened (again) on the same disk: a restart.
        fn open(&self) -> NotaryService {
            let store = Store::open_simulated(self.disk.clone(), &tables()).unwrap();
            NotaryService::open(store, self.notary.clone(), self.anchors()).unwrap()
        }

        /// An issue of `amounts` to `owner`, attested by the NBK.
        fn issue(&self, owner: &SecretKey, amounts: &[u64], nonce: u64) -> Transaction {
            let outputs = amounts
                .iter()
                .map(|a| Output::standard(Amount::from_tiyn(*a).unwrap(), owner.address(), self.nbk.address()))
                .collect();
            let mut tx = Transaction::new(TxBody { command: Command::Issue, inputs: vec![], outputs, nonce });
            tx.attest(&self.nbk);
            tx
        }

        /// `owner` pays the whole of `from` to `to`, attested by Steppe Bank.
        fn pay(&self, from: &Transaction, owner: &SecretKey, to: &SecretKey, nonce: u64) -> Transaction {
            let inputs = from.outputs_as_inputs();
            let total = inputs.iter().map(|i| i.output.amount_tiyn.tiyn()).sum();
            let outputs = vec![Output::standard(Amount::from_tiyn(total).unwrap(), to.address(), self.nbk.address())];
            let mut tx = Transaction::new(TxBody { command: Command::Transfer, inputs, outputs, nonce });
            tx.sign_owner(owner);
            Transaction::attest_batch(&mut [&mut tx], &self.steppe);
            tx
        }
    }

    fn request(batch: u64, txs: Vec<Transaction>) -> NotarizeRequest {
        NotarizeRequest { batch, txs }
    }

    fn codes(reply: &NotarizeReply) -> Vec<Option<ErrorCode>> {
        reply
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Committed(_) => None,
                Outcome::Refused(e) => Some(e.code),
            })
            .collect()
    }

    /// Every committed outcome verifies under the notary's key.
    fn assert_certified(w: &World, txs: &[Transaction], reply: &NotarizeReply) {
        for (tx, outcome) in txs.iter().zip(&reply.outcomes) {
            if let Outcome::Committed(proof) = outcome {
                let certificate = reply.certificate.as_ref().expect("a committed outcome comes with a certificate");
                certificate.verify(&w.notary.public_key(), &tx.id(), proof).unwrap();
            }
        }
    }

    #[test]
    fn an_attested_batch_is_spent_committed_and_certified_with_one_signature() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let issue = w.issue(&alice, &[500, 700], 1);
        let reply = notary.notarize(&RoleId::Central, &request(1, vec![issue.clone()]));
        assert_eq!(codes(&reply), vec![None]);
        assert_eq!(reply.certificate.as_ref().unwrap().seq, 1);
        let pay = w.pay(&issue, &alice, &bob, 2);
        let reply = notary.notarize(&steppe(), &request(2, vec![pay.clone()]));
        assert_eq!(codes(&reply), vec![None]);
        assert_certified(&w, std::slice::from_ref(&pay), &reply);
        assert_eq!(reply.certificate.as_ref().unwrap().seq, 2);
        assert!(notary.notary().is_committed(&pay.id()));
        assert_eq!(notary.notary().unspent_count(), 1);
    }

    #[test]
    fn a_second_spend_of_a_token_in_the_same_batch_or_a_later_one_is_a_double_spend() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let carol = SecretKey::from_seed([12; 32]);
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, vec![issue.clone()]);
        let to_bob = w.pay(&issue, &alice, &bob, 2);
        let to_carol = w.pay(&issue, &alice, &carol, 3);
        let reply = notary.notarize(&steppe(), &request(7, vec![to_bob.clone(), to_carol.clone()]));
        assert_eq!(codes(&reply), vec![None, Some(ErrorCode::DoubleSpend)]);
        assert_certified(&w, &[to_bob, to_carol.clone()], &reply);
        let reply = notary.notarize(&steppe(), &request(8, vec![to_carol]));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::DoubleSpend)]);
        assert!(reply.certificate.is_none());
    }

    fn notarize_ok(notary: &NotaryService, sender: &RoleId, txs: Vec<Transaction>) {
        let n = txs.len();
        let reply = notary.notarize(sender, &request(0, txs));
        assert_eq!(codes(&reply), vec![None; n]);
    }

    #[test]
    fn a_retry_of_a_committed_transaction_is_certified_again_and_spends_nothing() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, vec![issue.clone()]);
        let pay = w.pay(&issue, &alice, &bob, 2);
        notarize_ok(&notary, &steppe(), vec![pay.clone()]);
        let unspent = notary.notary().unspent();
        let reply = notary.notarize(&steppe(), &request(3, vec![pay.clone()]));
        assert_eq!(codes(&reply), vec![None]);
        assert_certified(&w, &[pay], &reply);
        assert_eq!(reply.certificate.unwrap().seq, 3, "a retry gets a certificate of its own");
        assert_eq!(notary.notary().unspent(), unspent);
    }

    #[test]
    fn the_notary_refuses_what_the_sender_did_not_attest_forged_attestations_and_blocked_banks() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let issue = w.issue(&alice, &[500], 1);
        // A bank cannot issue: the NBK attested it, but Steppe Bank sends it.
        let reply = notary.notarize(&steppe(), &request(1, vec![issue.clone()]));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::InvalidSignature)]);
        notarize_ok(&notary, &RoleId::Central, vec![issue.clone()]);
        // Sapa Bank sends a payment Steppe Bank attested.
        let pay = w.pay(&issue, &alice, &bob, 2);
        let reply = notary.notarize(&RoleId::Bank("sapa".into()), &request(2, vec![pay.clone()]));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::InvalidSignature)]);
        // A forged attestation: Steppe's key, another signature.
        let mut forged = pay.clone();
        forged.attestations[0].signature = w.sapa.sign(b"something else");
        let reply = notary.notarize(&steppe(), &request(3, vec![forged]));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::InvalidSignature)]);
        // A blocked bank's attestation does not count.
        notary.set_blocked("steppe", true);
        let reply = notary.notarize(&steppe(), &request(4, vec![pay.clone()]));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::BankBlocked)]);
        notary.set_blocked("steppe", false);
        notarize_ok(&notary, &steppe(), vec![pay]);
        assert_eq!(notary.notary().unspent_count(), 1, "only the last payment spent anything");
    }

    #[test]
    fn a_bad_attestation_refuses_only_the_transactions_that_rely_on_it() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let issue = w.issue(&alice, &[500, 600], 1);
        notarize_ok(&notary, &RoleId::Central, vec![issue.clone()]);
        let inputs = issue.outputs_as_inputs();
        let mut payments: Vec<Transaction> = inputs
            .iter()
            .enumerate()
            .map(|(nonce, input)| {
                let output = Output::standard(input.output.amount_tiyn, bob.address(), w.nbk.address());
                let body = TxBody {
                    command: Command::Transfer,
                    inputs: vec![input.clone()],
                    outputs: vec![output],
                    nonce: nonce as u64,
                };
                let mut tx = Transaction::new(body);
                tx.sign_owner(&alice);
                tx.attest(&w.steppe);
                tx
            })
            .collect();
        payments[1].attestations[0].signature = w.steppe.sign(b"not this");
        let reply = notary.notarize(&steppe(), &request(2, payments.clone()));
        assert_eq!(codes(&reply), vec![None, Some(ErrorCode::InvalidSignature)]);
        assert_certified(&w, &payments, &reply);
    }

    #[test]
    fn a_crash_after_the_commit_loses_nothing_and_the_retry_is_answered_committed() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, vec![issue.clone()]);
        let pay = w.pay(&issue, &alice, &bob, 2);
        w.disk.arm_crash(1, CrashMode::AfterWrite);
        let reply = notary.notarize(&steppe(), &request(2, vec![pay.clone()]));
        assert!(w.disk.crashed());
        // The process died before anyone saw this reply; what the disk holds decides.
        drop((reply, notary));
        let notary = w.open();
        assert!(notary.notary().is_committed(&pay.id()));
        assert_eq!(notary.seq(), 2, "the certificate number is durable with the commit");
        let reply = notary.notarize(&steppe(), &request(2, vec![pay.clone()]));
        assert_eq!(codes(&reply), vec![None]);
        assert_eq!(reply.certificate.as_ref().unwrap().seq, 3, "no number is given out twice");
        assert_certified(&w, &[pay], &reply);
    }

    #[test]
    fn a_crash_before_the_write_spends_nothing() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let bob = SecretKey::from_seed([11; 32]);
        let issue = w.issue(&alice, &[500], 1);
        notarize_ok(&notary, &RoleId::Central, vec![issue.clone()]);
        let pay = w.pay(&issue, &alice, &bob, 2);
        w.disk.arm_crash(1, CrashMode::BeforeWrite);
        let reply = notary.notarize(&steppe(), &request(2, vec![pay.clone()]));
        assert_eq!(codes(&reply), vec![Some(ErrorCode::StorageFailure)]);
        drop(notary);
        let notary = w.open();
        assert!(!notary.notary().is_committed(&pay.id()));
        assert_eq!(notary.seq(), 1);
        notarize_ok(&notary, &steppe(), vec![pay]);
    }

    #[test]
    fn an_envelope_is_answered_to_its_sender_and_other_messages_are_dropped() {
        let w = World::new();
        let notary = w.open();
        let alice = SecretKey::from_seed([10; 32]);
        let issue = w.issue(&alice, &[500], 1);
        let envelope = Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::NotarizeRequest(request(4, vec![issue])),
        };
        let answer = notary.handle(envelope).unwrap();
        assert_eq!(answer.to, RoleId::Central);
        let Message::NotarizeReply(reply) = answer.message else { panic!("a reply") };
        assert_eq!((reply.batch, codes(&reply)), (4, vec![None]));
        let stray = Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::DeliverAck(dtenge_wire::DeliverAck { seq: 1, tx_ids: vec![] }),
        };
        assert!(notary.handle(stray).is_none());
    }
}
