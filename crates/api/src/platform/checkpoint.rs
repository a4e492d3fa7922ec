//! The operator's checkpoint (`POST /v1/operator/checkpoints`) on the roles: before a backup or
//! a planned stop, so that the next start replays little.
//!
//! What is checkpointed: the notary's unspent set and every bank's tokens, each of which the
//! role also checkpoints by itself whenever its log is due (the assembly's `checkpoint:notary`
//! and `checkpoint:<bank>` threads; `dtenge_notary::service::checkpoint`,
//! `dtenge_bank::checkpoint`).
//!
//! The answer keeps the network's shape ([`CheckpointView`]): `notary` is the checkpoint just
//! written; `nodes` sums the banks' (tokens, bytes, log rows deleted), and its generation is
//! the highest of theirs (each bank numbers its own).

use super::Idem;
use super::{checked_key, Platform};
use crate::types::{CheckpointPart, CheckpointView};
use dtenge_core::Result;
use dtenge_store::checkpoint::Written;

impl Platform {
    /// Write a checkpoint of the notary's unspent set and of every bank's tokens now, and
    /// delete the logs they cover; payments go on meanwhile (each role holds its steps back
    /// only to read where its log ends, and a bank for a slice of its items at a time).
    /// Answered once every checkpoint is durable; the first that fails is the answer.
    ///
    /// A repeated idempotency key writes another checkpoint and answers it: a checkpoint
    /// changes no token, only how the set is kept, so asking twice leaves the platform as
    /// asking once (the network answered a repeated key with its first answer from its
    /// store; no role keeps the operator's keys, and nothing here needs them).
    pub fn checkpoint_now(&self, idem: Option<&Idem>) -> Result<CheckpointView> {
        checked_key(idem)?;
        let notary = part(&self.assembly.notary().checkpoint()?);
        let mut nodes = CheckpointPart { generation: 0, tokens: 0, bytes: 0, log_rows_deleted: 0 };
        for bank in self.assembly.banks() {
            let written = bank.service().checkpoint()?;
            nodes.generation = nodes.generation.max(written.generation);
            nodes.tokens += written.items;
            nodes.bytes += written.bytes;
            nodes.log_rows_deleted += written.log_rows_deleted;
        }
        Ok(CheckpointView { notary, nodes })
    }
}

fn part(written: &Written) -> CheckpointPart {
    CheckpointPart {
        generation: written.generation,
        tokens: written.items,
        bytes: written.bytes,
        log_rows_deleted: written.log_rows_deleted,
    }
}
