//! The notary as the coordinator of its shards: the banks' batches are checked and numbered
//! here, each transaction's parts are prepared in the shards its tokens fall in, and a
//! transaction commits only if every one of them prepared it (two-phase commit).
//!
//! What this state machine holds (replicated in the notary's own Raft log, so a new leader
//! finishes what the old one began): who may send and who is blocked, the certificate number,
//! which transactions committed (a retry is certified again) or were refused for good, and the
//! batches in flight with their decision once logged. What the shards hold: the tokens.
//!
//! A batch's life, each step an entry of this log:
//! 1. the bank's request: checked as the one-process notary checks it; transactions committed
//!    before are answered at once, the others are **in flight**;
//! 2. `ShardDecide`: every involved shard answered its `ShardPrepare` (the leader's
//!    [`Driver`](crate::driver) asked them); a transaction commits if none refused it; the
//!    certificate is numbered and the bank answered;
//! 3. `ShardDone`: every involved shard finished (applied or discarded) its parts.

use crate::ledger::{read_hashes, read_version, write_hashes};
use dtenge_core::certificate::CompactTx;
use dtenge_core::crypto::{Hash32, NodeKey};
use dtenge_core::token::{TokenId, TxId};
use dtenge_core::{Error, ErrorCode};
use dtenge_notary::service::{certify, check, next_seq, Checked, NotaryReport, Senders};
use dtenge_wire::{Decode, DecodeError, Deliver, DeliverAck, Envelope, Message, NotarizeRequest, Reader};
use dtenge_wire::{RoleId, ShardFinished, ShardPrepared, Writer};
use std::collections::{BTreeMap, HashMap, HashSet};

const IMAGE_VERSION: u8 = 1;
/// Most batches in flight at once: the leader proposes no more (the bank is asked again).
pub const FLIGHTS_MAX: usize = 4_096;

/// The shard that holds `token`: shards own equal ranges of the first byte of token ids (a
/// token id is a hash, so the ranges are even).
pub fn shard_of(token: &TokenId, shards: u8) -> u8 {
    assert!(shards >= 1, "a sharded notary has shards");
    let byte = u16::from(token.0 .0[0]);
    u8::try_from(byte * u16::from(shards) / 256).expect("below the count of shards") + 1
}

/// `tx` with only its inputs and outputs in `shard`, if it has any there.
pub fn part_in(tx: &CompactTx, shard: u8, shards: u8) -> Option<CompactTx> {
    let here = |ids: &[TokenId]| ids.iter().filter(|t| shard_of(t, shards) == shard).copied().collect::<Vec<_>>();
    let part = CompactTx { tx_id: tx.tx_id, inputs: here(&tx.inputs), outputs: here(&tx.outputs) };
    (!part.inputs.is_empty() || !part.outputs.is_empty()).then_some(part)
}

/// A batch between its request and its decision (then until every shard finished it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flight {
    pub sender: RoleId,
    pub request: NotarizeRequest,
    /// Per transaction: refused already (and why), or not.
    pub refused: Vec<Option<Error>>,
    /// Per transaction: committed before this batch.
    pub committed_before: Vec<bool>,
    /// The transactions being prepared in the shards (indices into the request).
    pub preparing: Vec<usize>,
    /// Per preparing transaction: commit it, once decided.
    pub decided: Option<Vec<bool>>,
}

impl Flight {
    /// The shards the preparing transactions' tokens fall in, ascending.
    pub fn involved_shards(&self, shards: u8) -> Vec<u8> {
        let mut involved = [false; 256];
        for &i in &self.preparing {
            let tx = &self.request.txs[i];
            for token in tx.inputs.iter().chain(&tx.outputs) {
                involved[usize::from(shard_of(token, shards))] = true;
            }
        }
        (1..=shards).filter(|shard| involved[usize::from(*shard)]).collect()
    }

    /// The parts of the preparing transactions in `shard`, with their places among them.
    pub fn parts_in(&self, shard: u8, shards: u8) -> Vec<(usize, CompactTx)> {
        self.preparing
            .iter()
            .enumerate()
            .filter_map(|(j, &i)| part_in(&self.request.txs[i], shard, shards).map(|part| (j, part)))
            .collect()
    }
}

/// The coordinator's replicated state.
pub struct CoordinatorLedger {
    shards: u8,
    senders: Senders,
    seq: u64,
    central_delivered: u64,
    committed: HashSet<TxId>,
    aborted: HashSet<TxId>,
    /// Transactions in flight, by the batch that prepares them.
    pending: HashMap<TxId, u64>,
    flights: BTreeMap<u64, Flight>,
}

impl CoordinatorLedger {
    pub fn new(shards: u8, senders: Senders) -> CoordinatorLedger {
        assert!((1..=dtenge_wire::message::NOTARY_SHARDS_MAX).contains(&shards), "1 to 64 shards");
        CoordinatorLedger {
            shards,
            senders,
            seq: 0,
            central_delivered: 0,
            committed: HashSet::new(),
            aborted: HashSet::new(),
            pending: HashMap::new(),
            flights: BTreeMap::new(),
        }
    }

    pub fn shards(&self) -> u8 {
        self.shards
    }

    /// The batches in flight (for the leader's driver).
    pub fn flights(&self) -> &BTreeMap<u64, Flight> {
        &self.flights
    }

    pub fn is_committed(&self, tx: &TxId) -> bool {
        self.committed.contains(tx)
    }

    /// The certificate number; the tokens are the shards' (0 here).
    pub fn report(&self) -> NotaryReport {
        NotaryReport { seq: self.seq, unspent: 0, unspent_hash: Hash32([0; 32]) }
    }

    /// Apply entry `index` of the log; the answer to send (with the notary's `key`: the
    /// replica a caller waits on).
    pub fn apply(&mut self, envelope: &Envelope, index: u64, key: Option<&NodeKey>) -> Option<Envelope> {
        let answer = |to: &RoleId, message| Envelope { from: RoleId::Notary, to: to.clone(), message };
        match (&envelope.message, &envelope.from) {
            (Message::NotarizeRequest(request), _) => self.begin(&envelope.from, request, index, key),
            (Message::Deliver(deliver), RoleId::Central) => {
                let acknowledged = self.decide_block(deliver)?;
                key.map(|_| answer(&RoleId::Central, Message::DeliverAck(DeliverAck { seq: acknowledged })))
            }
            // Proposed by the leader itself: never taken from the network.
            (Message::ShardDecide(decide), RoleId::NotaryReplica(_)) => self.decide(decide, key),
            (Message::ShardDone(ShardFinished { id }), RoleId::NotaryReplica(_)) => {
                let flight = self.flights.remove(id);
                assert!(flight.is_none_or(|f| f.decided.is_some()), "batch {id} done before it was decided");
                None
            }
            _ => None,
        }
    }

    fn begin(
        &mut self,
        sender: &RoleId,
        request: &NotarizeRequest,
        index: u64,
        key: Option<&NodeKey>,
    ) -> Option<Envelope> {
        let Checked { leaves, states, blocked } = check(&self.senders, sender, request);
        let mut refused: Vec<Option<Error>> = states.into_iter().map(Result::err).collect();
        let mut committed_before = vec![false; request.txs.len()];
        let mut preparing = Vec::new();
        let mut in_batch = HashSet::new();
        for (i, tx) in request.txs.iter().enumerate() {
            if refused[i].is_some() {
                continue;
            }
            if self.committed.contains(&tx.tx_id) {
                committed_before[i] = true;
            } else if let Some(why) = &blocked {
                self.aborted.insert(tx.tx_id);
                refused[i] = Some(why.clone());
            } else if self.aborted.contains(&tx.tx_id) {
                let why = format!("transaction {} was refused before, while its sender was blocked", tx.tx_id);
                refused[i] = Some(Error::new(ErrorCode::BankBlocked, why));
            } else if self.pending.contains_key(&tx.tx_id) || !in_batch.insert(tx.tx_id) {
                let why = format!("transaction {} is being committed", tx.tx_id);
                refused[i] = Some(Error::new(ErrorCode::RequestInProgress, why));
            } else {
                preparing.push(i);
            }
        }
        if preparing.is_empty() || self.flights.len() >= FLIGHTS_MAX {
            if !preparing.is_empty() {
                let why =
                    Error::new(ErrorCode::RequestInProgress, "the notary has too many batches in flight; ask again");
                for &i in &preparing {
                    refused[i] = Some(why.clone());
                }
            }
            let states: Vec<dtenge_core::Result<()>> = refused.into_iter().map(|r| r.map_or(Ok(()), Err)).collect();
            return self.answer(sender, request.batch, &leaves, &states, &committed_before, key);
        }
        for &i in &preparing {
            self.pending.insert(request.txs[i].tx_id, index);
        }
        let flight = Flight {
            sender: sender.clone(),
            request: request.clone(),
            refused,
            committed_before,
            preparing,
            decided: None,
        };
        self.flights.insert(index, flight);
        None
    }

    /// Every involved shard answered: commit what none refused, answer the bank.
    fn decide(&mut self, decide: &ShardPrepared, key: Option<&NodeKey>) -> Option<Envelope> {
        let flight = self.flights.get_mut(&decide.id)?;
        if flight.decided.is_some() {
            return None;
        }
        assert_eq!(decide.refusals.len(), flight.preparing.len(), "one answer per preparing transaction");
        let mut commit = Vec::with_capacity(flight.preparing.len());
        let mut committed = flight.committed_before.clone();
        for (&i, refusal) in flight.preparing.iter().zip(&decide.refusals) {
            let tx = flight.request.txs[i].tx_id;
            self.pending.remove(&tx);
            match refusal {
                None => {
                    self.committed.insert(tx);
                    committed[i] = true;
                    commit.push(true);
                }
                Some(why) => {
                    flight.refused[i] = Some(why.clone());
                    commit.push(false);
                }
            }
        }
        flight.decided = Some(commit);
        let (sender, batch) = (flight.sender.clone(), flight.request.batch);
        let leaves: Vec<Hash32> = flight.request.txs.iter().map(CompactTx::hash).collect();
        let states: Vec<dtenge_core::Result<()>> =
            flight.refused.iter().map(|r| r.clone().map_or(Ok(()), Err)).collect();
        self.answer(&sender, batch, &leaves, &states, &committed, key)
    }

    fn answer(
        &mut self,
        sender: &RoleId,
        batch: u64,
        leaves: &[Hash32],
        states: &[dtenge_core::Result<()>],
        committed: &[bool],
        key: Option<&NodeKey>,
    ) -> Option<Envelope> {
        match key {
            Some(key) => {
                let reply = certify(key, batch, leaves, states, committed, &mut self.seq);
                Some(Envelope { from: RoleId::Notary, to: sender.clone(), message: Message::NotarizeReply(reply) })
            }
            None => {
                next_seq(committed, &mut self.seq);
                None
            }
        }
    }

    fn decide_block(&mut self, deliver: &Deliver) -> Option<u64> {
        crate::ledger::apply_decision(&mut self.senders, &mut self.central_delivered, deliver)
    }

    /// The whole state for a snapshot.
    pub fn image(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(IMAGE_VERSION);
        w.u8(self.shards);
        w.u64(self.seq);
        w.u64(self.central_delivered);
        let blocked: Vec<String> = self.senders.blocked.iter().cloned().collect();
        w.seq(&blocked);
        for set in [&self.committed, &self.aborted] {
            let mut ids: Vec<&TxId> = set.iter().collect();
            ids.sort_unstable();
            write_hashes(&mut w, ids.iter().map(|id| &id.0));
        }
        w.len_prefix(self.flights.len());
        for (id, flight) in &self.flights {
            w.u64(*id);
            w.put(&flight.sender);
            w.put(&Message::NotarizeRequest(flight.request.clone()));
            w.put(&flight.refused);
            w.put(&flight.committed_before);
            let preparing: Vec<u64> = flight.preparing.iter().map(|&i| i as u64).collect();
            w.len_prefix(preparing.len());
            for i in preparing {
                w.u64(i);
            }
            w.put(&flight.decided);
        }
        w.into_bytes()
    }

    pub fn from_image(bytes: &[u8], senders: Senders) -> Result<CoordinatorLedger, Error> {
        CoordinatorLedger::decode(bytes, senders)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("the coordinator's snapshot: {e}")))
    }

    fn decode(bytes: &[u8], mut senders: Senders) -> Result<CoordinatorLedger, DecodeError> {
        let mut r = Reader::new(bytes);
        read_version(&mut r, IMAGE_VERSION)?;
        let shards = r.u8("shards")?;
        let seq = r.u64("seq")?;
        let central_delivered = r.u64("central's last decision")?;
        let blocked: Vec<String> = r.seq("blocked banks", 4_096)?;
        senders.blocked = blocked.into_iter().collect();
        let committed: HashSet<TxId> = read_hashes(&mut r, "committed transactions")?.into_iter().map(TxId).collect();
        let aborted: HashSet<TxId> = read_hashes(&mut r, "aborted transactions")?.into_iter().map(TxId).collect();
        let count = r.count("batches in flight", 8)?;
        if count > FLIGHTS_MAX {
            return Err(DecodeError::Invalid { what: "batches in flight", reason: format!("{count}") });
        }
        let mut flights = BTreeMap::new();
        let mut pending = HashMap::new();
        for _ in 0..count {
            let id = r.u64("batch id")?;
            let sender: RoleId = r.get()?;
            let Message::NotarizeRequest(request) = Message::decode(&mut r)? else {
                return Err(DecodeError::Invalid { what: "batch in flight", reason: "not a notarize request".into() });
            };
            let refused: Vec<Option<Error>> = r.get()?;
            let committed_before: Vec<bool> = r.get()?;
            let preparing_count = r.count("preparing", 8)?;
            let mut preparing = Vec::with_capacity(preparing_count);
            for _ in 0..preparing_count {
                let i = usize::try_from(r.u64("preparing")?).unwrap_or(usize::MAX);
                if i >= request.txs.len() {
                    return Err(DecodeError::Invalid { what: "preparing", reason: format!("index {i}") });
                }
                preparing.push(i);
            }
            let decided: Option<Vec<bool>> = r.get()?;
            if refused.len() != request.txs.len() || committed_before.len() != request.txs.len() {
                return Err(DecodeError::Invalid {
                    what: "batch in flight",
                    reason: "one state per transaction".into(),
                });
            }
            if decided.is_none() {
                for &i in &preparing {
                    pending.insert(request.txs[i].tx_id, id);
                }
            }
            flights.insert(id, Flight { sender, request, refused, committed_before, preparing, decided });
        }
        r.finish()?;
        Ok(CoordinatorLedger { shards, senders, seq, central_delivered, committed, aborted, pending, flights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_own_even_ranges_of_token_ids_and_a_part_holds_only_its_own() {
        let token = |b: u8| TokenId(Hash32([b; 32]));
        assert_eq!((shard_of(&token(0), 1), shard_of(&token(255), 1)), (1, 1));
        assert_eq!(
            (shard_of(&token(0), 4), shard_of(&token(63), 4), shard_of(&token(64), 4), shard_of(&token(255), 4)),
            (1, 1, 2, 4)
        );
        let tx =
            CompactTx { tx_id: TxId(Hash32([1; 32])), inputs: vec![token(10), token(200)], outputs: vec![token(70)] };
        assert_eq!(part_in(&tx, 1, 4).unwrap().inputs, vec![token(10)]);
        assert_eq!(part_in(&tx, 2, 4).unwrap().outputs, vec![token(70)]);
        assert_eq!(part_in(&tx, 4, 4).unwrap().inputs, vec![token(200)]);
        assert!(part_in(&tx, 3, 4).is_none());
    }
}
