//! Checkpoints of the state that changes with every payment: the notary's unspent set and the
//! nodes' tokens. Both are persisted as a log of changes (see `dtenge_store::checkpoint`);
//! a checkpoint dumps the state so that the log before it can go and a start replays only
//! what came after.

use crate::types::{CheckpointPart, CheckpointView};
use crate::{Idem, Network};
use dtenge_core::token::TokenId;
use dtenge_core::Result;
use dtenge_store::checkpoint::{Begun, Written};
use dtenge_store::WriteBatch;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The due rule is the notary's (the notary role checkpoints its set by the same rule).
pub use dtenge_notary::checkpoint_interval;
/// Tokens dumped per hold of a node's lock (about a millisecond). Reading which tokens to dump
/// takes one hold that copies 32 bytes per token of the node (a few milliseconds at a million).
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
    ///
    /// Refused on a poisoned network ([`Network::is_poisoned`]): an operation that panicked
    /// between its durable commit and its apply left memory unlike the disk, its change
    /// records lie before the logs' ends, and a checkpoint of that memory would make the
    /// difference permanent. (A panic after `begin` is harmless to this checkpoint: that
    /// operation's records lie after the logs' ends and are replayed.)
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        let (notary_begun, nodes_begun, counted) = {
            // Every committed change is applied and none is in flight: the logs' ends are
            // where replay must start (rule 1 of `dtenge_store::checkpoint`).
            let _gate = self.gate_exclusive();
            if self.is_poisoned() {
                return Err(dtenge_core::Error::internal(
                    "an operation panicked while it held the gate: memory may differ from the disk, \
                     so no checkpoint is written until the platform restarts",
                ));
            }
            let notary = dtenge_notary::UNSPENT.begin(&self.store)?;
            let nodes = dtenge_node::TOKENS.begin(&self.store)?;
            (notary, nodes, self.changes_since_checkpoint.swap(0, Relaxed))
        };
        let written = self.write_checkpoint(notary_begun, nodes_begun);
        if written.is_err() {
            // Due again at the checkpointer's next look, not a whole interval later.
            self.changes_since_checkpoint.fetch_add(counted, Relaxed);
        }
        written
    }

    fn write_checkpoint(&self, notary_begun: Begun, nodes_begun: Begun) -> Result<CheckpointReport> {
        let notary = dtenge_notary::UNSPENT.write(&self.store, notary_begun, self.notary.checkpoint_items())?;
        let node_items = self.nodes.values().flat_map(|slot| {
            let ids: Vec<TokenId> = slot.state.lock().token_ids().copied().collect();
            let starts = (0..ids.len()).step_by(CHECKPOINT_TOKENS_PER_LOCK_MAX);
            starts.flat_map(move |start| {
                let end = ids.len().min(start + CHECKPOINT_TOKENS_PER_LOCK_MAX);
                slot.state.lock().checkpoint_items(&ids[start..end])
            })
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
    /// unspent set (and at least [`dtenge_notary::CHECKPOINT_CHANGES_MIN`]): the log then holds about as many
    /// bytes as a checkpoint would, so checkpoints at most double what a change writes, and
    /// replay at start stays shorter than the state.
    pub fn checkpoint_due(&self) -> bool {
        self.changes_since_checkpoint.load(Relaxed) >= checkpoint_interval(self.notary.unspent_count() as u64)
    }
}

/// Start the thread that writes a checkpoint whenever one is due (`dtenge up`, the bench),
/// until `stop` is signalled (a checkpoint under way is finished first) or the network is
/// dropped.
pub fn spawn_checkpointer(
    network: &Arc<Network>,
    stop: &crate::StopSignal,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(network);
    let stop = stop.clone();
    std::thread::Builder::new().name("dtenge-checkpoint".into()).spawn(move || loop {
        if stop.wait_ms(CHECKPOINT_POLL_MS) {
            return;
        }
        let Some(network) = weak.upgrade() else { return };
        if network.is_poisoned() {
            eprintln!("checkpoints stop: an operation panicked; restart the platform");
            return;
        }
        if network.checkpoint_due() {
            // A failed checkpoint leaves the previous one current; the next poll tries again
            // (and a failed commit has stopped the store: the platform must restart anyway).
            if let Err(e) = network.checkpoint() {
                eprintln!("checkpoint failed, retried later: {e}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entropy, ManualClock, NetworkConfig};

    #[test]
    fn a_panic_under_the_gate_poisons_the_network_and_stops_checkpoints() {
        let clock = Arc::new(ManualClock::new(1_790_000_000_000));
        let disk = dtenge_store::SimDisk::new();
        let network =
            Network::open_simulated(disk, &NetworkConfig::standard(), clock, Entropy::from_seed(5)).expect("opens");
        assert!(network.checkpoint().is_ok());
        // Dropped normally, a shared hold poisons nothing.
        drop(network.gate_shared());
        assert!(!network.is_poisoned());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _gate = network.gate_shared();
            panic!("an operation fails between its commit and its apply");
        }));
        assert!(panicked.is_err());
        assert!(network.is_poisoned());
        let refused = network.checkpoint().expect_err("no checkpoint from poisoned memory");
        assert!(refused.message.contains("restarts"), "{refused}");
    }
}
