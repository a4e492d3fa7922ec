//! The operator's checkpoint (`POST /v1/operator/checkpoints`) on the roles: before a backup or
//! a planned stop, so that the next start replays little.
//!
//! What is checkpointed among the roles: the notary's unspent set, which the notary role also
//! checkpoints by itself whenever its log is due (`dtenge_notary::service`, the assembly's
//! `checkpoint:notary` thread). The banks' tokens are not: a bank keeps them as the nodes'
//! change log (`node_tokens_log`) and replays all of it at start, and no bank writes a
//! checkpoint of them yet (that belongs in `dtenge-bank`, which must begin one where none of its
//! commits is in flight).
//!
//! The answer keeps the network's shape ([`CheckpointView`]), so that the route moves to the
//! platform by changing one type and its clients read what they read today: `notary` is the
//! checkpoint just written, `nodes` is what the banks' stores hold as a checkpoint of their
//! tokens, which is none: generation 0, no tokens, no bytes, no log rows deleted.

use super::Idem;
use super::{checked_key, Platform};
use crate::types::{CheckpointPart, CheckpointView};
use dtenge_core::Result;

/// `nodes` of the answer: the banks write no checkpoint of their tokens (see the module docs).
const NO_NODES_CHECKPOINT: CheckpointPart = CheckpointPart { generation: 0, tokens: 0, bytes: 0, log_rows_deleted: 0 };

impl Platform {
    /// Write a checkpoint of the notary's unspent set now and delete the log it covers;
    /// payments go on meanwhile (the notary holds requests back only to read where its log
    /// ends). Answered once the checkpoint is durable.
    ///
    /// A repeated idempotency key writes another checkpoint and answers it: a checkpoint
    /// changes no token, only how the set is kept, so asking twice leaves the platform as
    /// asking once (the network answered a repeated key with its first answer from its
    /// store; no role keeps the operator's keys, and nothing here needs them).
    pub fn checkpoint_now(&self, idem: Option<&Idem>) -> Result<CheckpointView> {
        checked_key(idem)?;
        let written = self.assembly.notary().checkpoint()?;
        let notary = CheckpointPart {
            generation: written.generation,
            tokens: written.items,
            bytes: written.bytes,
            log_rows_deleted: written.log_rows_deleted,
        };
        Ok(CheckpointView { notary, nodes: NO_NODES_CHECKPOINT })
    }
}
