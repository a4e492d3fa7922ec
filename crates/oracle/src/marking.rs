//! Marking by public addresses (SPEC §5.2): the initiator sets the depth, the allowed
//! recipients of each level and a limit per level. Marked tokens carry the marking and the
//! level of their owner; they move only to an allowed recipient of the next level, with the
//! oracle's attestation; at the last level the marking is removed. Every move is a signed
//! record the initiator's node is told of, so the whole tree can be traced.

use crate::spend::SpendPlan;
use crate::Oracle;
use dtenge_core::crypto::{hash_parts, Hash32, Signature};
use dtenge_core::money::Amount;
use dtenge_core::party::Party;
use dtenge_core::token::{marking_hash, Output, Policy, TxId};
use dtenge_core::tx::{Attestation, Transaction};
use dtenge_core::{bail, ensure, Error, Result};
use dtenge_store::{Store, Table, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub const MARKINGS_TABLE: Table = Table("oracle_markings");
pub const MOVES_TABLE: Table = Table("oracle_marking_moves");

/// Deepest marking: levels below the initiator.
pub const LEVELS_MAX: usize = 8;
/// Most allowed recipients of one level.
pub const RECIPIENTS_PER_LEVEL_MAX: usize = 64;
/// Most moves one marking records.
pub const MOVES_PER_MARKING_MAX: usize = 1_000_000;

/// One level of a marking: who may receive at it, and how much in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub recipients: Vec<Party>,
    /// The most that may reach this level's recipients, in all.
    pub limit_tiyn: Amount,
}

/// A marking as its initiator's node asks for it.
#[derive(Clone, Debug)]
pub struct MarkingSpec {
    pub initiator: Party,
    pub reference: String,
    pub levels: Vec<Level>,
}

/// A registered marking.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Marking {
    pub id: String,
    /// What marked tokens name ([`marking_hash`] of the id).
    pub hash: Hash32,
    pub initiator: Party,
    pub reference: String,
    /// Level 1 first; the last level receives standard DT (the marking is removed).
    pub levels: Vec<Level>,
    pub created_at_unix_ms: u64,
    /// The node that registered it.
    pub registered_by: String,
    /// Per level (level 1 first): what reached it so far.
    pub moved_tiyn: Vec<Amount>,
    /// The oracle's signature over the marking's terms ([`Marking::terms_digest`]).
    pub oracle_signature: Signature,
    /// Persisted separately, one row per move.
    #[serde(skip)]
    pub moves: Vec<Move>,
}

impl Marking {
    /// What the oracle signs at registration: id, initiator, reference, levels, time.
    pub fn terms_digest(&self) -> Result<Hash32> {
        terms_digest(&self.id, &self.initiator, &self.reference, &self.levels, self.created_at_unix_ms)
    }

    /// The level `address` receives at (1-based), if any.
    pub fn level_of(&self, address: &dtenge_core::crypto::Address) -> Option<u8> {
        self.levels.iter().position(|l| l.recipients.iter().any(|p| p.address == *address)).map(|i| i as u8 + 1)
    }

    pub fn depth(&self) -> u8 {
        self.levels.len() as u8
    }

    /// The marking without its moves: cloning it costs the same however many moves it has.
    pub fn summary(&self) -> Marking {
        Marking {
            id: self.id.clone(),
            hash: self.hash,
            initiator: self.initiator.clone(),
            reference: self.reference.clone(),
            levels: self.levels.clone(),
            created_at_unix_ms: self.created_at_unix_ms,
            registered_by: self.registered_by.clone(),
            moved_tiyn: self.moved_tiyn.clone(),
            oracle_signature: self.oracle_signature,
            moves: Vec::new(),
        }
    }
}

fn terms_digest(
    id: &str,
    initiator: &Party,
    reference: &str,
    levels: &[Level],
    created_at_unix_ms: u64,
) -> Result<Hash32> {
    let terms = (id, initiator, reference, levels, created_at_unix_ms);
    Ok(hash_parts(b"dtenge/oracle/marking/v1", &[&crate::json_of(&terms)]))
}

/// The signed part of a move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveBody {
    pub marking_id: String,
    pub seq: u32,
    pub at_unix_ms: u64,
    pub tx_id: TxId,
    pub from: Party,
    pub to: Party,
    /// 0 for the initiator.
    pub from_level: u8,
    pub to_level: u8,
    pub amount_tiyn: Amount,
    /// True at the last level: the recipient got standard DT.
    pub unmarked: bool,
}

/// One move of marked funds, signed by the oracle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub body: MoveBody,
    pub oracle_signature: Signature,
}

impl MoveBody {
    pub fn digest(&self) -> Result<Hash32> {
        Ok(hash_parts(b"dtenge/oracle/move/v1", &[&crate::json_of(self)]))
    }
}

/// A planned change of one marking.
#[derive(Clone, Debug)]
pub struct MarkingChange {
    pub marking: Marking,
    pub moves: Vec<Move>,
}

impl MarkingChange {
    pub fn writes(&self, batch: &mut WriteBatch) -> Result<()> {
        batch.put_value(MARKINGS_TABLE, self.marking.id.as_bytes(), &self.marking)?;
        for m in &self.moves {
            let mut key = self.marking.id.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&m.body.seq.to_be_bytes());
            batch.put_value(MOVES_TABLE, key, m)?;
        }
        Ok(())
    }
}

/// A marked transfer the oracle will confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedPlan {
    pub marking_id: String,
    pub spend: SpendPlan,
    pub to: Party,
    pub from_level: u8,
    pub to_level: u8,
    pub amount: Amount,
}

pub(crate) fn load(oracle: &mut Oracle, store: &Store) -> Result<()> {
    for (_, marking) in store.scan_values::<Marking>(MARKINGS_TABLE)? {
        oracle.markings.insert(marking.id.clone(), marking);
    }
    for (_, m) in store.scan_values::<Move>(MOVES_TABLE)? {
        let marking = oracle
            .markings
            .get_mut(&m.body.marking_id)
            .ok_or_else(|| crate::unknown_row(MOVES_TABLE, "a move of marking", &m.body.marking_id))?;
        marking.moves.push(m);
    }
    Ok(())
}

impl Oracle {
    pub fn marking(&self, id: &str) -> Result<&Marking> {
        self.markings.get(id).ok_or_else(|| Error::new(dtenge_core::ErrorCode::NotFound, format!("no marking {id}")))
    }

    pub fn markings(&self) -> impl DoubleEndedIterator<Item = &Marking> {
        self.markings.values()
    }

    /// Register a marking by addresses (its initiator's node asks).
    pub fn plan_marking(&self, spec: MarkingSpec, registered_by: &str, now_ms: u64) -> Result<MarkingChange> {
        let reference = spec.reference.trim();
        ensure!(
            !reference.is_empty() && reference.chars().count() <= crate::TEXT_LEN_MAX,
            MalformedInput,
            "the reference has 1 to {} characters",
            crate::TEXT_LEN_MAX
        );
        ensure!(
            !spec.levels.is_empty() && spec.levels.len() <= LEVELS_MAX,
            LimitExceeded,
            "a marking has 1 to {LEVELS_MAX} levels"
        );
        let mut seen = HashSet::from([spec.initiator.address]);
        for (i, level) in spec.levels.iter().enumerate() {
            ensure!(
                !level.recipients.is_empty() && level.recipients.len() <= RECIPIENTS_PER_LEVEL_MAX,
                LimitExceeded,
                "level {} has 1 to {RECIPIENTS_PER_LEVEL_MAX} recipients",
                i + 1
            );
            ensure!(!level.limit_tiyn.is_zero(), MalformedInput, "level {} needs a positive limit", i + 1);
            for party in &level.recipients {
                ensure!(
                    seen.insert(party.address),
                    MalformedInput,
                    "{} appears twice in the marking (or is its initiator)",
                    party.client_id
                );
            }
        }
        let id = format!("MK{:07}", self.markings.len() + 1);
        // Ids count the markings, which are never removed: a new id is free.
        assert!(!self.markings.contains_key(&id), "marking id {id} exists");
        let digest = terms_digest(&id, &spec.initiator, reference, &spec.levels, now_ms)?;
        let marking = Marking {
            hash: marking_hash(&id),
            id,
            initiator: spec.initiator,
            reference: reference.to_string(),
            moved_tiyn: vec![Amount::ZERO; spec.levels.len()],
            levels: spec.levels,
            created_at_unix_ms: now_ms,
            registered_by: registered_by.to_string(),
            oracle_signature: self.key.sign(&digest.0),
            moves: Vec::new(),
        };
        Ok(MarkingChange { marking, moves: Vec::new() })
    }

    /// Check a transfer of `amount` from `payer` to `to` under marking `marking_id`.
    pub fn plan_marked_transfer(
        &self,
        marking_id: &str,
        payer: &Party,
        to: &Party,
        amount: Amount,
        issuer: dtenge_core::crypto::Address,
    ) -> Result<MarkedPlan> {
        let marking = self.marking(marking_id)?;
        ensure!(!amount.is_zero(), MalformedInput, "the amount must be positive");
        ensure!(
            marking.moves.len() < MOVES_PER_MARKING_MAX,
            LimitExceeded,
            "marking {marking_id} has reached {MOVES_PER_MARKING_MAX} moves"
        );
        let from_level = if payer.address == marking.initiator.address {
            0
        } else {
            match marking.level_of(&payer.address) {
                Some(level) => level,
                None => bail!(Forbidden, "{} is not part of marking {marking_id}", payer.client_id),
            }
        };
        ensure!(
            from_level < marking.depth(),
            Conflict,
            "{} is at the last level of marking {marking_id}: its DT is standard, pay it with a plain transfer",
            payer.client_id
        );
        let to_level = match marking.level_of(&to.address) {
            None => bail!(RecipientNotAllowed, "{} is not an allowed recipient of marking {marking_id}", to.client_id),
            Some(level) if level != from_level + 1 => bail!(
                WrongLevel,
                "{} receives at level {level} of marking {marking_id}; a payer at level {from_level} pays level {} only",
                to.client_id,
                from_level + 1
            ),
            Some(level) => level,
        };
        let index = usize::from(to_level - 1);
        let level = &marking.levels[index];
        let after = marking.moved_tiyn[index].checked_add(amount)?;
        ensure!(
            after <= level.limit_tiyn,
            LimitExceeded,
            "level {to_level} of marking {marking_id} may receive {} in all; {} reached it already",
            level.limit_tiyn,
            marking.moved_tiyn[index]
        );
        let spent = if from_level == 0 {
            Policy::Standard
        } else {
            Policy::Marked { marking: marking.hash, level: from_level }
        };
        let received = if to_level == marking.depth() {
            Policy::Standard
        } else {
            Policy::Marked { marking: marking.hash, level: to_level }
        };
        Ok(MarkedPlan {
            marking_id: marking_id.to_string(),
            spend: SpendPlan {
                payer: payer.clone(),
                parts: vec![(spent, amount)],
                outputs: vec![Output { amount_tiyn: amount, owner: to.address, issuer, policy: received }],
            },
            to: to.clone(),
            from_level,
            to_level,
            amount,
        })
    }

    /// Confirm the transaction a node built for `plan`: sign it if it does exactly the plan.
    pub fn confirm_marked_transfer(
        &self,
        plan: &MarkedPlan,
        tx: &Transaction,
        now_ms: u64,
    ) -> Result<(MarkingChange, Attestation)> {
        plan.spend.check(tx)?;
        let marking = self.marking(&plan.marking_id)?;
        let mut changed = marking.summary();
        let index = usize::from(plan.to_level - 1);
        changed.moved_tiyn[index] = changed.moved_tiyn[index].checked_add(plan.amount)?;
        let body = MoveBody {
            marking_id: marking.id.clone(),
            seq: marking.moves.len() as u32,
            at_unix_ms: now_ms,
            tx_id: tx.id(),
            from: plan.spend.payer.clone(),
            to: plan.to.clone(),
            from_level: plan.from_level,
            to_level: plan.to_level,
            amount_tiyn: plan.amount,
            unmarked: plan.to_level == marking.depth(),
        };
        let oracle_signature = self.key.sign(&body.digest()?.0);
        Ok((MarkingChange { marking: changed, moves: vec![Move { body, oracle_signature }] }, self.attest(tx)))
    }

    pub fn apply_marking(&mut self, change: MarkingChange) {
        let MarkingChange { mut marking, moves } = change;
        marking.moves = self.markings.remove(&marking.id).map(|m| m.moves).unwrap_or_default();
        marking.moves.extend(moves);
        self.markings.insert(marking.id.clone(), marking);
    }
}
