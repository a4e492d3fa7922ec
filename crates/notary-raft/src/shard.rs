//! One shard of a sharded notary: the unspent tokens of one range of token ids, and the
//! prepared parts of the coordinator's batches (two-phase commit, as Hamilton's `twophase` and
//! OpenCBDC's locking shards).
//!
//! A shard takes only the coordinator's messages (the notary's replicas): `ShardPrepare`
//! locks each transaction's inputs in its range and reserves its outputs (the one-process
//! notary's pending spend: `Notary::try_spend`), or says why not; `ShardFinish` applies
//! (`finalize`) or discards (`revert`) each one. Both are idempotent per batch id: a prepare
//! asked again is answered as the first time, a finish of a batch finished before is
//! acknowledged, and a late copy of a prepare for a finished batch locks nothing.

use crate::ledger::{read_hashes, read_version, write_hashes};
use dtenge_core::certificate::CompactTx;
use dtenge_core::token::{TokenId, TxId};
use dtenge_core::{Error, ErrorCode};
use dtenge_notary::service::NotaryReport;
use dtenge_notary::{Notary, Spend, SpendRequest};
use dtenge_wire::{DecodeError, Envelope, Message, Reader, RoleId, Writer};
use dtenge_wire::{ShardFinish, ShardFinished, ShardPrepare, ShardPrepared};
use std::collections::{BTreeMap, BTreeSet};

/// The version of a shard's snapshot encoding.
const IMAGE_VERSION: u8 = 1;
/// Batch ids remembered as finished; older ones are all taken as finished (`finished_floor`).
const FINISHED_KEPT_MAX: usize = 65_536;
/// Most batches prepared and not finished in a snapshot (the coordinator has few in flight).
const PREPARED_MAX: usize = 65_536;

/// How one prepared part stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Its inputs locked, its outputs reserved: waiting for the decision.
    Locked,
    /// Committed before (a retry): nothing to lock, nothing to apply.
    Committed,
    /// Refused: nothing locked.
    Refused,
}

/// The state of one shard, changed only by its log.
pub struct ShardLedger {
    shard: u8,
    notary: Notary,
    /// Batches prepared and not finished: each part, how it stands, and the answer given.
    prepared: BTreeMap<u64, (Vec<(CompactTx, Part)>, ShardPrepared)>,
    /// Batches finished lately; ids at or below `finished_floor` count as finished too.
    finished: BTreeSet<u64>,
    finished_floor: u64,
    /// The inputs of the parts `Locked`: a spend of one waits ("ask again"), since the batch
    /// holding it may yet be discarded.
    locked: std::collections::HashSet<TokenId>,
}

fn spend(tx: &CompactTx) -> SpendRequest<'_> {
    SpendRequest { tx_id: tx.tx_id, inputs: &tx.inputs, outputs: &tx.outputs }
}

impl ShardLedger {
    pub fn new(shard: u8) -> ShardLedger {
        ShardLedger {
            shard,
            notary: Notary::new(),
            prepared: BTreeMap::new(),
            finished: BTreeSet::new(),
            finished_floor: 0,
            locked: std::collections::HashSet::new(),
        }
    }

    /// Apply one message of the coordinator; the answer to send back (`from` is set by the
    /// replica that sends it).
    pub fn apply(&mut self, envelope: &Envelope) -> Option<Envelope> {
        if !matches!(envelope.from, RoleId::NotaryReplica(_)) {
            return None;
        }
        let message = match &envelope.message {
            Message::ShardPrepare(prepare) => Message::ShardPrepared(self.prepare(prepare)),
            Message::ShardFinish(finish) => Message::ShardFinished(self.finish(finish)),
            _ => return None,
        };
        Some(Envelope { from: RoleId::Notary, to: envelope.from.clone(), message })
    }

    fn is_finished(&self, id: u64) -> bool {
        id <= self.finished_floor || self.finished.contains(&id)
    }

    fn prepare(&mut self, prepare: &ShardPrepare) -> ShardPrepared {
        if let Some((_, answer)) = self.prepared.get(&prepare.id) {
            return answer.clone();
        }
        if self.is_finished(prepare.id) {
            // A late copy: the batch was decided and finished; nothing is locked again.
            let why = Error::new(ErrorCode::RequestInProgress, format!("batch {} is finished", prepare.id));
            return ShardPrepared { id: prepare.id, refusals: vec![Some(why); prepare.txs.len()] };
        }
        let mut parts = Vec::with_capacity(prepare.txs.len());
        let mut refusals = Vec::with_capacity(prepare.txs.len());
        {
            let mut shards = self.notary.lock_all();
            for tx in &prepare.txs {
                let (part, refusal) = match tx.inputs.iter().find(|input| self.locked.contains(*input)) {
                    Some(input) => {
                        let why = format!("token {input} is locked by a batch being decided; ask again");
                        (Part::Refused, Some(Error::new(ErrorCode::RequestInProgress, why)))
                    }
                    None => match shards.try_spend(spend(tx)) {
                        Ok(Spend::Pending) => {
                            self.locked.extend(tx.inputs.iter().copied());
                            (Part::Locked, None)
                        }
                        Ok(Spend::AlreadyCommitted) => (Part::Committed, None),
                        Err(e) => (Part::Refused, Some(e)),
                    },
                };
                parts.push((tx.clone(), part));
                refusals.push(refusal);
            }
        }
        let answer = ShardPrepared { id: prepare.id, refusals };
        self.prepared.insert(prepare.id, (parts, answer.clone()));
        answer
    }

    fn finish(&mut self, finish: &ShardFinish) -> ShardFinished {
        let Some((parts, _)) = self.prepared.remove(&finish.id) else {
            return ShardFinished { id: finish.id };
        };
        // The coordinator decides per transaction of what this shard prepared.
        assert_eq!(parts.len(), finish.commit.len(), "one decision per prepared part");
        let mut shards = self.notary.lock_all();
        for ((tx, part), commit) in parts.iter().zip(&finish.commit) {
            if *part == Part::Locked {
                for input in &tx.inputs {
                    self.locked.remove(input);
                }
            }
            match (part, commit) {
                (Part::Locked, true) => shards.finalize(spend(tx)),
                (Part::Locked, false) => shards.revert(spend(tx)),
                // Refused here: the coordinator cannot commit it.
                (Part::Refused, true) => panic!("batch {}: a part this shard refused was committed", finish.id),
                (Part::Refused | Part::Committed, _) => {}
            }
        }
        drop(shards);
        self.finished.insert(finish.id);
        while self.finished.len() > FINISHED_KEPT_MAX {
            let oldest = self.finished.pop_first().expect("more than the bound");
            self.finished_floor = self.finished_floor.max(oldest);
        }
        ShardFinished { id: finish.id }
    }

    /// The shard's figures: the last certificate number is the coordinator's (0 here).
    pub fn report(&self) -> NotaryReport {
        NotaryReport { seq: 0, unspent: self.notary.unspent_count(), unspent_hash: self.notary.unspent_hash() }
    }

    pub fn locked_batches(&self) -> usize {
        self.prepared.len()
    }

    pub fn shard(&self) -> u8 {
        self.shard
    }

    /// The whole state for a snapshot: the tokens (pending inputs among the unspent), the
    /// transactions decided, the prepared batches (re-locked when restored) and the finished
    /// ids. Sorted: equal states, equal bytes.
    pub fn image(&self) -> Vec<u8> {
        let (mut unspent, mut committed, mut aborted) = self.notary.durable_parts();
        unspent.sort_unstable();
        committed.sort_unstable();
        aborted.sort_unstable();
        let mut w = Writer::with_capacity(64 + 32 * (unspent.len() + committed.len() + aborted.len()));
        w.u8(IMAGE_VERSION);
        w.u8(self.shard);
        write_hashes(&mut w, unspent.iter().map(|t| &t.0));
        write_hashes(&mut w, committed.iter().map(|t| &t.0));
        write_hashes(&mut w, aborted.iter().map(|t| &t.0));
        w.len_prefix(self.prepared.len());
        for (id, (parts, answer)) in &self.prepared {
            w.u64(*id);
            let txs: Vec<CompactTx> = parts.iter().map(|(tx, _)| tx.clone()).collect();
            w.seq(&txs);
            w.put(&answer.refusals);
        }
        w.u64(self.finished_floor);
        let finished: Vec<u64> = self.finished.iter().copied().collect();
        w.len_prefix(finished.len());
        for id in finished {
            w.u64(id);
        }
        w.into_bytes()
    }

    pub fn from_image(bytes: &[u8]) -> Result<ShardLedger, Error> {
        ShardLedger::decode(bytes)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("a shard's snapshot: {e}")))
    }

    fn decode(bytes: &[u8]) -> Result<ShardLedger, DecodeError> {
        let mut r = Reader::new(bytes);
        read_version(&mut r, IMAGE_VERSION)?;
        let shard = r.u8("shard")?;
        let unspent = read_hashes(&mut r, "unspent tokens")?;
        let committed = read_hashes(&mut r, "committed transactions")?;
        let aborted = read_hashes(&mut r, "aborted transactions")?;
        let notary = Notary::restore_decided(
            unspent.into_iter().map(TokenId),
            committed.into_iter().map(TxId),
            aborted.into_iter().map(TxId),
        );
        let count = r.count("prepared batches", 8 + 4 + 4)?;
        if count > PREPARED_MAX {
            return Err(DecodeError::Invalid { what: "prepared batches", reason: format!("{count}") });
        }
        let mut prepared = BTreeMap::new();
        let mut locked = std::collections::HashSet::new();
        for _ in 0..count {
            let id = r.u64("batch id")?;
            let txs: Vec<CompactTx> = r.seq("prepared transactions", dtenge_wire::message::BATCH_TXS_MAX)?;
            let refusals: Vec<Option<Error>> = r.seq("prepared refusals", dtenge_wire::message::BATCH_TXS_MAX)?;
            if txs.len() != refusals.len() {
                return Err(DecodeError::Invalid { what: "prepared batch", reason: "one answer per part".into() });
            }
            // Locked again as they were: the same checks on the same state give the same answer.
            let mut parts = Vec::with_capacity(txs.len());
            let locked = &mut locked;
            {
                let mut shards = notary.lock_all();
                for (tx, refusal) in txs.into_iter().zip(&refusals) {
                    let part = match (refusal, shards.try_spend(spend(&tx))) {
                        (None, Ok(Spend::Pending)) => {
                            locked.extend(tx.inputs.iter().copied());
                            Part::Locked
                        }
                        (None, Ok(Spend::AlreadyCommitted)) => Part::Committed,
                        (Some(_), _) => Part::Refused,
                        (None, Err(e)) => {
                            return Err(DecodeError::Invalid { what: "prepared part", reason: e.message })
                        }
                    };
                    parts.push((tx, part));
                }
            }
            prepared.insert(id, (parts, ShardPrepared { id, refusals }));
        }
        let finished_floor = r.u64("finished floor")?;
        let count = r.count("finished batches", 8)?;
        let mut finished = BTreeSet::new();
        for _ in 0..count {
            finished.insert(r.u64("finished batch")?);
        }
        r.finish()?;
        Ok(ShardLedger { shard, notary, prepared, finished, finished_floor, locked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::Hash32;

    fn tx(id: u8, inputs: &[u8], outputs: &[u8]) -> CompactTx {
        let ids = |bytes: &[u8]| bytes.iter().map(|b| TokenId(Hash32([*b; 32]))).collect();
        CompactTx { tx_id: TxId(Hash32([id; 32])), inputs: ids(inputs), outputs: ids(outputs) }
    }

    fn from_coordinator(message: Message) -> Envelope {
        Envelope { from: RoleId::NotaryReplica(1), to: RoleId::NotaryShard { shard: 1, replica: 1 }, message }
    }

    fn prepared(ledger: &mut ShardLedger, id: u64, txs: Vec<CompactTx>) -> Vec<Option<ErrorCode>> {
        let answer = ledger.apply(&from_coordinator(Message::ShardPrepare(ShardPrepare { id, txs }))).unwrap();
        let Message::ShardPrepared(prepared) = answer.message else { panic!("prepared") };
        prepared.refusals.iter().map(|r| r.as_ref().map(|e| e.code)).collect()
    }

    fn finish(ledger: &mut ShardLedger, id: u64, commit: Vec<bool>) {
        ledger.apply(&from_coordinator(Message::ShardFinish(ShardFinish { id, commit }))).unwrap();
    }

    #[test]
    fn a_prepared_input_is_locked_until_the_decision_and_a_discarded_one_is_free_again() {
        let mut ledger = ShardLedger::new(1);
        assert_eq!(prepared(&mut ledger, 1, vec![tx(1, &[], &[10, 11])]), vec![None]);
        finish(&mut ledger, 1, vec![true]);
        // Token 10 locked by batch 2: batch 3's spend of it waits ("ask again").
        assert_eq!(prepared(&mut ledger, 2, vec![tx(2, &[10], &[12])]), vec![None]);
        assert_eq!(prepared(&mut ledger, 3, vec![tx(3, &[10], &[13])]), vec![Some(ErrorCode::RequestInProgress)]);
        // Asked again: the same answer, nothing locked twice.
        assert_eq!(prepared(&mut ledger, 2, vec![tx(2, &[10], &[12])]), vec![None]);
        finish(&mut ledger, 3, vec![false]);
        finish(&mut ledger, 2, vec![false]);
        assert_eq!(prepared(&mut ledger, 4, vec![tx(3, &[10], &[13])]), vec![None], "discarded: free again");
        finish(&mut ledger, 4, vec![true]);
        assert_eq!(prepared(&mut ledger, 5, vec![tx(5, &[10], &[14])]), vec![Some(ErrorCode::DoubleSpend)]);
        // A late copy of a finished batch's prepare locks nothing.
        assert_eq!(prepared(&mut ledger, 4, vec![tx(3, &[10], &[13])]), vec![Some(ErrorCode::RequestInProgress)]);
        assert_eq!(ledger.report().unspent, 2);
    }

    #[test]
    fn a_snapshot_keeps_what_is_locked_and_what_is_finished() {
        let mut ledger = ShardLedger::new(2);
        prepared(&mut ledger, 1, vec![tx(1, &[], &[10, 11])]);
        finish(&mut ledger, 1, vec![true]);
        prepared(&mut ledger, 2, vec![tx(2, &[10], &[12]), tx(3, &[10], &[13])]);
        let image = ledger.image();
        let mut restored = ShardLedger::from_image(&image).unwrap();
        assert_eq!(restored.image(), image);
        assert_eq!(restored.locked_batches(), 1);
        // Still locked after the restore, and finished as before.
        assert_eq!(prepared(&mut restored, 9, vec![tx(9, &[10], &[19])]), vec![Some(ErrorCode::RequestInProgress)]);
        finish(&mut restored, 2, vec![true, false]);
        finish(&mut ledger, 2, vec![true, false]);
        finish(&mut restored, 9, vec![false]);
        finish(&mut ledger, 9, vec![false]);
        assert_eq!(restored.report(), ledger.report());
        assert!(ShardLedger::from_image(&image[..image.len() - 1]).is_err());
    }
}
