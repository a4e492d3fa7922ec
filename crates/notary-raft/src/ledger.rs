//! The replicated state machine: the notary's rule over its unspent set, in memory.

use dtenge_core::crypto::{Hash32, NodeKey};
use dtenge_core::token::{TokenId, TxId};
use dtenge_core::{Error, ErrorCode};
use dtenge_notary::service::{certify, check, next_seq, spend, Checked, NotaryReport, Senders};
use dtenge_notary::{Notary, SpendRequest};
use dtenge_wire::{Decision, DecodeError, Deliver, DeliverAck, Envelope, Message, NotarizeReply, NotarizeRequest};
use dtenge_wire::{Payload, Reader, RoleId, Writer};

/// The version of a snapshot's encoding ([`Ledger::image`]).
const IMAGE_VERSION: u8 = 1;
/// Most banks the operator can have blocked at once in a snapshot (a network has a few dozen).
const BLOCKED_MAX: usize = 4_096;

/// What every replica holds and changes only by applying the log, in its order.
pub struct Ledger {
    /// The unspent set and every transaction decided (committed, or refused for good).
    notary: Notary,
    /// Who may send requests (the network's configuration, the same on every replica) and
    /// whom the operator blocked (replicated: changed only by central's decisions in the log).
    senders: Senders,
    /// The last certificate's number.
    seq: u64,
    /// The last of central's numbered deliveries applied (its operator's decisions).
    central_delivered: u64,
}

impl Ledger {
    /// An empty ledger: nothing issued yet.
    pub fn new(senders: Senders) -> Ledger {
        Ledger { notary: Notary::new(), senders, seq: 0, central_delivered: 0 }
    }

    /// Apply one participant's envelope. With the notary's `key` (the replica a caller waits
    /// on), the answer to send back; without it, the same change and no answer. Deterministic:
    /// the same log gives every replica the same state and the same numbers.
    pub fn apply(&mut self, envelope: &Envelope, key: Option<&NodeKey>) -> Option<Envelope> {
        let answer = |message| Envelope { from: RoleId::Notary, to: envelope.from.clone(), message };
        match &envelope.message {
            Message::NotarizeRequest(request) => {
                self.notarize(&envelope.from, request, key).map(|reply| answer(Message::NotarizeReply(reply)))
            }
            Message::Deliver(deliver) if envelope.from == RoleId::Central => {
                let acknowledged = self.decide(deliver)?;
                key.map(|_| answer(Message::DeliverAck(DeliverAck { seq: acknowledged })))
            }
            // The leader proposes only the two above; anything else in a log is ignored the
            // same way on every replica.
            _ => None,
        }
    }

    fn notarize(&mut self, sender: &RoleId, request: &NotarizeRequest, key: Option<&NodeKey>) -> Option<NotarizeReply> {
        let Checked { leaves, mut states, blocked } = check(&self.senders, sender, request);
        let committed = {
            let mut shards = self.notary.lock_all();
            // A replica holds every decided id (its snapshots carry them): nothing to look up.
            let spent = spend(&mut shards, &request.txs, &mut states, blocked.as_ref(), &mut |_| Ok(false));
            // Durable already: the entry is in a majority's log. Nothing is pending here.
            for &index in &spent.fresh {
                let tx = &request.txs[index];
                shards.finalize(SpendRequest { tx_id: tx.tx_id, inputs: &tx.inputs, outputs: &tx.outputs });
            }
            let mut committed = spent.committed;
            for &index in &spent.fresh {
                committed[index] = true;
            }
            committed
        };
        match key {
            Some(key) => Some(certify(key, request.batch, &leaves, &states, &committed, &mut self.seq)),
            None => {
                next_seq(&committed, &mut self.seq);
                None
            }
        }
    }

    fn decide(&mut self, deliver: &Deliver) -> Option<u64> {
        apply_decision(&mut self.senders, &mut self.central_delivered, deliver)
    }

    /// The report reconciliation reads: the last certificate's number and the unspent set.
    pub fn report(&self) -> NotaryReport {
        NotaryReport { seq: self.seq, unspent: self.notary.unspent_count(), unspent_hash: self.notary.unspent_hash() }
    }

    pub fn is_committed(&self, tx: &TxId) -> bool {
        self.notary.is_committed(tx)
    }

    /// The whole state, for a snapshot: its version, `seq`, central's last decision, the
    /// banks blocked, the unspent token ids and the committed and aborted transaction ids
    /// (each sorted, so that equal states give equal bytes).
    pub fn image(&self) -> Vec<u8> {
        let mut unspent: Vec<TokenId> = self.notary.unspent().into_iter().collect();
        unspent.sort_unstable();
        let (mut committed, mut aborted) = self.notary.decided();
        committed.sort_unstable();
        aborted.sort_unstable();
        let hashes = unspent.len() + committed.len() + aborted.len();
        let mut w = Writer::with_capacity(64 + 32 * hashes);
        w.u8(IMAGE_VERSION);
        w.u64(self.seq);
        w.u64(self.central_delivered);
        let blocked: Vec<String> = self.senders.blocked.iter().cloned().collect();
        w.seq(&blocked);
        write_hashes(&mut w, unspent.iter().map(|t| &t.0));
        write_hashes(&mut w, committed.iter().map(|t| &t.0));
        write_hashes(&mut w, aborted.iter().map(|t| &t.0));
        w.into_bytes()
    }

    /// A ledger from its [`Ledger::image`], with this replica's `senders` (their keys are
    /// configuration; who is blocked comes from the image).
    pub fn from_image(bytes: &[u8], senders: Senders) -> Result<Ledger, Error> {
        Ledger::decode(bytes, senders)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a notary snapshot: {e}")))
    }

    fn decode(bytes: &[u8], mut senders: Senders) -> Result<Ledger, DecodeError> {
        let mut r = Reader::new(bytes);
        read_version(&mut r, IMAGE_VERSION)?;
        let seq = r.u64("seq")?;
        let central_delivered = r.u64("central's last decision")?;
        let blocked: Vec<String> = r.seq("blocked banks", BLOCKED_MAX)?;
        let unspent = read_hashes(&mut r, "unspent tokens")?;
        let committed = read_hashes(&mut r, "committed transactions")?;
        let aborted = read_hashes(&mut r, "aborted transactions")?;
        r.finish()?;
        senders.blocked = blocked.into_iter().collect();
        let notary = Notary::restore_decided(
            unspent.into_iter().map(TokenId),
            committed.into_iter().map(TxId),
            aborted.into_iter().map(TxId),
        );
        Ok(Ledger { notary, senders, seq, central_delivered })
    }
}

/// Write `ids` (in the order a snapshot keeps them) as a count and 32 bytes each.
pub(crate) fn write_hashes<'a>(w: &mut Writer, ids: impl ExactSizeIterator<Item = &'a Hash32>) {
    w.len_prefix(ids.len());
    for id in ids {
        w.raw(&id.0);
    }
}

/// What [`write_hashes`] wrote.
pub(crate) fn read_hashes(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<Hash32>, DecodeError> {
    let count = r.count(what, 32)?;
    (0..count).map(|_| r.array::<32>(what).map(Hash32)).collect()
}

/// A snapshot's first byte: the version of its encoding, which must be `expected`.
pub(crate) fn read_version(r: &mut Reader<'_>, expected: u8) -> Result<(), DecodeError> {
    let found = r.u8("snapshot version")?;
    if found != expected {
        return Err(DecodeError::UnknownVersion { found, expected });
    }
    Ok(())
}

/// Central's decision number `deliver.seq`, applied once and in order to who is blocked;
/// returns the number to acknowledge (`None` for one that came early: central sends it again).
pub(crate) fn apply_decision(senders: &mut Senders, central_delivered: &mut u64, deliver: &Deliver) -> Option<u64> {
    if deliver.seq <= *central_delivered {
        return Some(*central_delivered);
    }
    if deliver.seq != *central_delivered + 1 {
        return None;
    }
    // Central certifies nothing to the notary; any other payload is skipped in order.
    if let Payload::Decision(Decision::Blocked { bank, blocked, .. }) = &deliver.payload {
        if *blocked {
            senders.blocked.insert(bank.clone());
        } else {
            senders.blocked.remove(bank);
        }
    }
    *central_delivered = deliver.seq;
    Some(deliver.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::certificate::{notarize_message, CompactTx};
    use dtenge_core::crypto::SecretKey;
    use dtenge_wire::Outcome;
    use std::collections::{BTreeMap, BTreeSet};

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_seed([byte; 32])
    }

    fn senders() -> Senders {
        Senders {
            central_bank: key(1).public_key(),
            banks: BTreeMap::from([("steppe".to_string(), key(3).public_key())]),
            blocked: BTreeSet::new(),
        }
    }

    fn tx(id: u8, inputs: &[u8], outputs: &[u8]) -> CompactTx {
        let ids = |bytes: &[u8]| bytes.iter().map(|b| TokenId(Hash32([*b; 32]))).collect();
        CompactTx { tx_id: TxId(Hash32([id; 32])), inputs: ids(inputs), outputs: ids(outputs) }
    }

    fn request(from: RoleId, signer: &SecretKey, batch: u64, txs: Vec<CompactTx>) -> Envelope {
        let leaves: Vec<Hash32> = txs.iter().map(CompactTx::hash).collect();
        let signature = signer.sign(&notarize_message(batch, &dtenge_core::merkle::root(&leaves)).0);
        Envelope {
            from,
            to: RoleId::Notary,
            message: Message::NotarizeRequest(NotarizeRequest { batch, txs, signature }),
        }
    }

    fn committed(reply: &Option<Envelope>) -> Vec<bool> {
        let Some(Envelope { message: Message::NotarizeReply(reply), .. }) = reply else { panic!("a notarize reply") };
        reply.outcomes.iter().map(|o| matches!(o, Outcome::Committed(_))).collect()
    }

    #[test]
    fn replicas_applying_the_same_log_agree_and_only_the_one_with_the_key_answers() {
        let notary_key: NodeKey = key(9).into();
        let steppe = RoleId::Bank("steppe".into());
        let log = [
            request(RoleId::Central, &key(1), 1, vec![tx(1, &[], &[10, 11])]),
            request(steppe.clone(), &key(3), 1, vec![tx(2, &[10], &[12]), tx(3, &[10], &[13])]),
            request(steppe.clone(), &key(3), 2, vec![tx(2, &[10], &[12]), tx(4, &[11], &[14])]),
        ];
        let (mut leader, mut follower) = (Ledger::new(senders()), Ledger::new(senders()));
        let answers: Vec<Option<Envelope>> = log.iter().map(|e| leader.apply(e, Some(&notary_key))).collect();
        for entry in &log {
            assert_eq!(follower.apply(entry, None), None);
        }
        assert_eq!(committed(&answers[1]), vec![true, false], "the second spend of token 10 is refused");
        assert_eq!(committed(&answers[2]), vec![true, true], "a retry is certified again");
        assert_eq!(leader.report(), follower.report());
        assert_eq!(leader.report().seq, 3);
        assert_eq!(leader.image(), follower.image());
    }

    #[test]
    fn a_snapshot_restores_the_same_state_and_a_corrupt_one_is_refused() {
        let mut ledger = Ledger::new(senders());
        ledger.apply(&request(RoleId::Central, &key(1), 1, vec![tx(1, &[], &[10, 11])]), None);
        let block = Deliver {
            seq: 1,
            payload: Payload::Decision(Decision::Blocked {
                bank: "steppe".into(),
                blocked: true,
                reason: "audit".into(),
            }),
        };
        let from_central = Envelope { from: RoleId::Central, to: RoleId::Notary, message: Message::Deliver(block) };
        assert_eq!(ledger.apply(&from_central, None), None);
        let blocked = request(RoleId::Bank("steppe".into()), &key(3), 1, vec![tx(2, &[10], &[12])]);
        assert_eq!(committed(&ledger.apply(&blocked, Some(&key(9).into()))), vec![false]);
        let image = ledger.image();
        let restored = Ledger::from_image(&image, senders()).unwrap();
        assert_eq!(restored.report(), ledger.report());
        assert_eq!(restored.image(), image);
        assert!(restored.senders.blocked.contains("steppe"));
        assert_eq!(restored.central_delivered, 1);
        assert!(Ledger::from_image(&image[..image.len() - 1], senders()).is_err());
        let mut other_version = image.clone();
        other_version[0] = 2;
        assert!(Ledger::from_image(&other_version, senders()).is_err());
    }
}
