//! Checkpoints of the state that changes with every payment: the notary's unspent set and the
//! nodes' tokens. Both are persisted as a log of changes (see `dtenge_store::checkpoint`);
//! a checkpoint dumps the state so that the log before it can go and a start replays only
//! what came after.

use crate::types::{CheckpointPart, CheckpointView};
use crate::{Idem, Network};
use dtenge_core::token::TokenId;
use dtenge_core::Result;
use dtenge_store::checkpoint::Written;
use dtenge_store::WriteBatch;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Fewest logged transactions that make a checkpoint due: below it, replaying the log at start
/// costs less than a second.
pub const CHECKPOINT_CHANGES_MIN: u64 = 200_000;
/// Tokens dumped per hold of a node's lock: payments of that bank wait at most this long
/// (about a millisecond).
const CHECKPOINT_TOKENS_PER_LOCK_MAX: usize = 4_096;
/// How often the checkpointer looks whether a checkpoint is due.
const CHECKPOINT_POLL_MS: u64 = 1_000;

/// What one checkpoint wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointReport {
    pub notary: Written,
    pub nodes: Written,
}

impl Network {
    /// Write a checkpoint of the notary's unspent set and of every node's tokens, then delete
    /// the log rows it covers. Payments go on meanwhile: the gate is held exclusively only to
    /// read where the logs stand, and each node's lock for a few thousand tokens at a time.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        let (notary_begun, nodes_begun) = {
            // Every committed change is applied and none is in flight: the logs' ends are
            // where replay must start (rule 1 of `dtenge_store::checkpoint`).
            let _gate = self.gate_exclusive();
            self.changes_since_checkpoint.store(0, Relaxed);
            (dtenge_notary::UNSPENT.begin(&self.store)?, dtenge_node::TOKENS.begin(&self.store)?)
        };
        let notary = dtenge_notary::UNSPENT.write(&self.store, notary_begun, self.notary.checkpoint_items())?;
        let node_items = self.nodes.values().flat_map(|slot| {
            let ids: Vec<TokenId> = slot.state.lock().token_ids().copied().collect();
            let chunks: Vec<Vec<TokenId>> =
                ids.chunks(CHECKPOINT_TOKENS_PER_LOCK_MAX).map(<[TokenId]>::to_vec).collect();
            chunks.into_iter().flat_map(move |chunk| slot.state.lock().checkpoint_items(&chunk))
        });
        let nodes = dtenge_node::TOKENS.write(&self.store, nodes_begun, node_items)?;
        Ok(CheckpointReport { notary, nodes })
    }

    /// The operator's checkpoint (`POST /v1/operator/checkpoints`): before a backup or a
    /// planned stop, so that the next start replays little.
    pub fn checkpoint_now(&self, idem: Option<&Idem>) -> Result<CheckpointView> {
        let report = self.checkpoint()?;
        let part = |w: Written| CheckpointPart {
            generation: w.generation,
            tokens: w.items,
            bytes: w.bytes,
            log_rows_deleted: w.log_rows_deleted,
        };
        let view = CheckpointView { notary: part(report.notary), nodes: part(report.nodes) };
        self.commit(idem, WriteBatch::new(), &view)?;
        Ok(view)
    }

    /// Is a checkpoint due? When the transactions logged since the last one reach half the
    /// unspent set (and at least [`CHECKPOINT_CHANGES_MIN`]): the log then holds about as many
    /// bytes as a checkpoint would, so checkpoints at most double what a change writes, and
    /// replay at start stays shorter than the state.
    pub fn checkpoint_due(&self) -> bool {
        self.changes_since_checkpoint.load(Relaxed) >= checkpoint_interval(self.notary.unspent_count() as u64)
    }
}

/// Transactions between two checkpoints of a state of `unspent` tokens.
pub fn checkpoint_interval(unspent: u64) -> u64 {
    CHECKPOINT_CHANGES_MIN.max(unspent / 2)
}

/// Start the thread that writes a checkpoint whenever one is due (`dtenge up`, the bench).
pub fn spawn_checkpointer(network: &Arc<Network>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(network);
    std::thread::Builder::new().name("dtenge-checkpoint".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(CHECKPOINT_POLL_MS));
        let Some(network) = weak.upgrade() else { return };
        if network.checkpoint_due() {
            // A failed checkpoint leaves the previous one current; the next poll tries again
            // (and a failed commit has stopped the store: the platform must restart anyway).
            if let Err(e) = network.checkpoint() {
                eprintln!("checkpoint failed, retried later: {e}");
            }
        }
    })
}
