//! The bank's checkpoints of its tokens ([`dtenge_node::TOKENS`]): the log of token changes
//! since the last checkpoint is dumped as a new one when it is due (the rule the notary's
//! unspent set follows: [`checkpoint_due`]) or when the operator asks, and the log rows it
//! covers are deleted with the switch (`Checkpointed::write`). A start then replays at most
//! about half the tokens' worth of changes, not every change since genesis, and the journal
//! segments the deleted rows pinned can go (issue 20).
//!
//! The store's protocol (`dtenge_store::checkpoint`), as the bank keeps it:
//!
//! 1. [`Checkpointed::begin`] reads where the log ends under the role's lock. Every step
//!    changes the bank's memory and hands its commit to the store's committer under that lock,
//!    so every row numbered below that end is a change already in memory. A commit handed over
//!    but not yet written gets a number at or above it, so replay reads it again; replaying a
//!    change the checkpoint reflects changes nothing (a token is received once, spent once).
//! 2. The items are dumped from memory, which may hold changes whose commit is not durable
//!    yet. They are durable before the checkpoint is: the store has one committer, it writes
//!    commits in the order they were handed over, and it stops after a failed one, so the
//!    switch (handed over after the dump) is written only after every commit whose change the
//!    dump saw.
//!
//! Why a moving view, and on the caller's thread: the ids are copied under the lock in one
//! pass (32 bytes a token), then their items are read [`IDS_PER_HOLDING`] at a time, each
//! under a holding of the lock of its own, so payments wait for at most one slice, never for
//! the whole dump or its writes. A token spent between the copy and its slice is skipped (its
//! spend is logged after the position); a token received after the copy is not in the items
//! (its receipt is logged after the position). The assembly runs a `checkpoint:<bank>` thread
//! that polls [`BankService::checkpoint_due`]; the simulator calls
//! [`BankService::checkpoint`] between its steps.
//!
//! [`checkpoint_due`]: dtenge_store::checkpoint::checkpoint_due
//! [`Checkpointed::begin`]: dtenge_store::Checkpointed::begin

use crate::BankService;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_node::TOKENS;
use dtenge_store::checkpoint::{checkpoint_due, Written};
use std::sync::atomic::Ordering::Relaxed;

/// Token ids whose items are read under one holding of the role's lock while a checkpoint
/// is dumped: about a millisecond of encoding, so a payment waits for at most that.
pub const IDS_PER_HOLDING: usize = 4_096;

impl BankService {
    /// Write a checkpoint of the bank's tokens now and delete the log rows it covers. Steps
    /// are held back only while the log's end is read and the ids are copied, then for one
    /// slice of items at a time. One at a time: a second caller waits for the first. An error
    /// leaves the previous checkpoint current (and the log that covers everything after it).
    ///
    /// Refused when the bank has stopped after a failed commit: its store refuses every write
    /// until a restart, and its memory may hold changes the disk does not.
    pub fn checkpoint(&self) -> Result<Written> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        let (begun, changes, ids) = {
            let inner = self.inner.lock();
            if inner.failed {
                return Err(Error::new(
                    ErrorCode::StorageFailure,
                    "the bank's store failed: no checkpoint until the bank restarts",
                ));
            }
            let begun = TOKENS.begin(&self.store)?;
            (begun, inner.node.token_changes(), inner.node.token_ids().copied().collect::<Vec<_>>())
        };
        let items = ids.chunks(IDS_PER_HOLDING).flat_map(|slice| self.inner.lock().node.checkpoint_items(slice));
        let written = TOKENS.write(&self.store, begun, items);
        match &written {
            Ok(written) => {
                self.checkpointed_changes.store(changes, Relaxed);
                assert!(written.items <= ids.len() as u64, "a checkpoint holds only tokens held when it began");
            }
            // The store stops after a failed commit, and so does the bank, as after a step's
            // failed commit: it answers nothing until a restart has read the disk.
            Err(e) if e.code == ErrorCode::StorageFailure => self.inner.lock().failed = true,
            Err(_) => {}
        }
        written
    }

    /// Is a checkpoint of the tokens due? When the changes logged since the last one reach
    /// half the tokens held, and at least `CHECKPOINT_CHANGES_MIN`.
    pub fn checkpoint_due(&self) -> bool {
        let (changes, tokens) = {
            let inner = self.inner.lock();
            (inner.node.token_changes(), inner.node.token_count())
        };
        let since = changes.checked_sub(self.checkpointed_changes.load(Relaxed));
        let since = since.expect("the changes counted only grow, and a checkpoint records a count it read");
        checkpoint_due(since, u64::try_from(tokens).expect("a count of tokens fits in u64"))
    }

    /// [`BankService::checkpoint`] if one is due; `None` if not.
    pub fn checkpoint_if_due(&self) -> Option<Result<Written>> {
        self.checkpoint_due().then(|| self.checkpoint())
    }

    /// Has the bank stopped (a commit failed)? It answers nothing until it restarts.
    pub fn stopped(&self) -> bool {
        self.inner.lock().failed
    }
}
