//! The notary role's checkpoints of its unspent set ([`crate::UNSPENT`]): the log of spends
//! since the last checkpoint is dumped as a new one when it is due (the monolith's rule:
//! [`crate::checkpoint_due`]) or when the operator asks, and the log rows it covers are deleted
//! with the switch (`Checkpointed::write`), so a restart replays at most about half the set.
//!
//! Why on a thread of its own, not on the notary's inbox thread between envelopes: a checkpoint
//! of a million tokens writes 36 MB (ids and their framing) in commits of up to 16 MiB, and on
//! the inbox thread every bank's batch would wait for all of it (the banks pace their batches
//! on the notary's answers, so the whole network would stall for the length of the dump). The store's protocol
//! (`dtenge_store::checkpoint`) needs the requests stopped only for a moment: [`begin`] under
//! `seq`, which every request holds from its spend through its commit to its finalize, so
//! while it is held every committed change is applied and none is in flight (rule 1); the set
//! is then dumped shard by shard while requests go on, and [`Notary::checkpoint_items`] dumps
//! only durable state (the inputs of pending transactions as unspent, their outputs not:
//! rule 2). The caller's thread does the work: the assembly runs a `checkpoint:notary` thread
//! that polls [`NotaryService::checkpoint_due`] every [`CHECKPOINT_POLL_MS`]; the simulator,
//! which has one thread, calls [`NotaryService::checkpoint`] between its steps.
//!
//! [`begin`]: dtenge_store::Checkpointed::begin
//! [`Notary::checkpoint_items`]: crate::Notary::checkpoint_items

use super::NotaryService;
use crate::UNSPENT;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::checkpoint::Written;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// How often a checkpointer thread looks whether a checkpoint is due (the monolith's).
pub const CHECKPOINT_POLL_MS: u64 = 1_000;

impl NotaryService {
    /// Write a checkpoint of the unspent set now and delete the log rows it covers. Requests
    /// are held back only while the log's end is read; the dump runs beside them. One at a
    /// time: a second caller waits for the first. An error leaves the previous checkpoint
    /// current (and the log that covers everything after it).
    ///
    /// Refused when the notary has stopped: after a panic under `seq` its memory may differ
    /// from the disk, and a checkpoint of that memory would make the difference permanent;
    /// after a failed commit its store refuses every write until a restart.
    pub fn checkpoint(&self) -> Result<Written> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        let (begun, counted) = {
            // No request between its spend and its finalize: the log's end is where replay
            // must start (rule 1 of `dtenge_store::checkpoint`).
            let _no_request_in_flight = self.seq.lock();
            if self.poisoned.load(SeqCst) {
                return Err(Error::internal(
                    "a request panicked inside the notary: its memory may differ from its disk, so no \
                     checkpoint is written until it restarts",
                ));
            }
            if self.failed.load(SeqCst) {
                return Err(Error::new(
                    ErrorCode::StorageFailure,
                    "the notary's store failed: no checkpoint until the notary restarts",
                ));
            }
            let begun = UNSPENT.begin(&self.store)?;
            (begun, self.changes_since_checkpoint.swap(0, Relaxed))
        };
        let written = UNSPENT.write(&self.store, begun, self.notary.checkpoint_items());
        if let Err(e) = &written {
            // Due again at the next look, not a whole interval later.
            self.changes_since_checkpoint.fetch_add(counted, Relaxed);
            if e.code == ErrorCode::StorageFailure {
                // The store stops after a failed commit, and so does the notary, as after a
                // request's failed commit: it answers nothing until a restart has read the disk.
                self.failed.store(true, SeqCst);
            }
        }
        written
    }

    /// Is a checkpoint due? When the transactions logged since the last one reach half the
    /// unspent set, and at least [`crate::CHECKPOINT_CHANGES_MIN`] ([`crate::checkpoint_due`]).
    pub fn checkpoint_due(&self) -> bool {
        let unspent = u64::try_from(self.notary.unspent_count()).expect("a count of tokens fits in u64");
        crate::checkpoint_due(self.changes_since_checkpoint(), unspent)
    }

    /// [`NotaryService::checkpoint`] if one is due; `None` if not.
    pub fn checkpoint_if_due(&self) -> Option<Result<Written>> {
        self.checkpoint_due().then(|| self.checkpoint())
    }

    /// Transactions logged since the current checkpoint's position (those a restart would
    /// replay, give or take a checkpoint under way).
    pub fn changes_since_checkpoint(&self) -> u64 {
        self.changes_since_checkpoint.load(Relaxed)
    }
}
