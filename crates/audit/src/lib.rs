//! The audit trail: who did what, to what, when, and how it ended, for every action of a
//! person (the consoles) or a system (the REST API's callers) on the platform.
//!
//! Three properties, each against a failure an earlier build had:
//!
//! - **Written before the action.** An action that changes something is recorded as an
//!   *intent*, durably, before it runs, and its *outcome* after ([`AuditLog::audited`]). An
//!   older build wrote one entry after the action, so a crash between the two lost it. The
//!   action and this trail live in different stores (the roles' and `audit.db`), and an atomic
//!   commit across them would need two-phase commit on every action; an intent written first
//!   gives what the trail is for, no action without its entry. An intent whose outcome a crash
//!   kept from being written is closed at the next start with an `interrupted` outcome, which
//!   tells the auditor to read the action's effect from the ledger.
//! - **Tamper-evident.** Every entry carries the hash of the one before it and its own hash,
//!   signed with the platform's audit key (in the HSM when there is one). [`verify`] walks the
//!   whole trail: an altered entry no longer matches its hash or its signature, a removed one
//!   leaves a gap in the sequence and a broken link. Removing the newest entries leaves no
//!   gap, so the head (sequence and hash) is written to the structured log every
//!   [`ANCHOR_EVERY`] entries, which operators ship elsewhere, and `dtenge audit verify`
//!   prints it to compare.
//! - **Read from disk.** Entries are keyed by their big-endian sequence number, so a page is
//!   one range read, and a start reads one entry (the last) and the intents still open. An
//!   older build held the newest 100,000 entries in memory, so a flood of sign-ins pushed real
//!   entries out of the console's view, and it read the whole table at every start.
//!
//! Texts are stored sanitized: control characters become spaces, and an actor's name keeps
//! only letters, digits and `. _ - @ : /` (a sign-in with any username is recorded, and a name
//! made of terminal escapes or line breaks must not forge lines in whatever displays it).

use dtenge_core::crypto::{hash_parts, verify as verify_signature, Hash32, NodeKey, PublicKey, Signature};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{decode, Store, Table, WriteBatch};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// The trail's database, under the data directory.
pub const DATABASE_DIR: &str = "audit.db";
/// Entries by big-endian sequence number.
pub const ENTRIES_TABLE: Table = Table("audit_entries");
/// Intents whose outcome is not written yet, by sequence number: what a start closes.
pub const OPEN_TABLE: Table = Table("audit_open");
/// Largest page.
pub const PAGE_MAX: usize = 500;
/// Longest actor name, role, action, target and detail kept, in characters.
pub const ACTOR_CHARS_MAX: usize = 64;
pub const ROLE_CHARS_MAX: usize = 64;
pub const ACTION_CHARS_MAX: usize = 64;
pub const TARGET_CHARS_MAX: usize = 140;
pub const DETAIL_CHARS_MAX: usize = 500;
/// Open intents a start reads and closes per commit (it goes on until none is left).
pub const OPEN_CLOSED_PER_COMMIT: usize = 1_000;
/// The head goes to the structured log every this many entries (see the module's note).
pub const ANCHOR_EVERY: u64 = 1_000;
/// Rows [`verify`] reads at once.
const VERIFY_CHUNK_ROWS: usize = 4_096;
/// The entry with which a new key takes over the trail (see [`verify`]'s epochs).
pub const KEY_CHANGED_ACTION: &str = "audit_key_changed";
/// Problems [`verify`] lists at most; it counts them all.
pub const PROBLEMS_LISTED_MAX: usize = 100;
const HASH_DOMAIN: &[u8] = b"dtenge/audit/v1";

/// How an entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action is about to run; its outcome follows in a later entry.
    Intent,
    Ok,
    /// Refused or failed: the detail says why.
    Failed,
    /// The process stopped between the intent and its outcome: read the effect from the ledger.
    Interrupted,
}

impl Outcome {
    fn id(self) -> u8 {
        match self {
            Outcome::Intent => 1,
            Outcome::Ok => 2,
            Outcome::Failed => 3,
            Outcome::Interrupted => 4,
        }
    }
}

/// What to record: who (`actor`, in `role`), did what (`action`), to what (`target`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// A console user or an API client (`bank:steppe`, `operator:nbk`).
    pub actor: String,
    /// Where the actor acts from: `operator`, `treasury`, `bank`, `client` (the consoles) or
    /// `api` (the REST API).
    pub role: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl Record {
    pub fn new(actor: &str, role: &str, action: &str, target: &str, detail: &str) -> Record {
        Record {
            actor: actor.to_string(),
            role: role.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// One entry of the trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub at_unix_ms: u64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub outcome: Outcome,
    /// For an outcome: the sequence number of its intent.
    pub intent: Option<u64>,
    /// The hash of the entry before (zeros for the first).
    pub prev: Hash32,
    /// The hash of this entry's fields and `prev` ([`Entry::computed_hash`]).
    pub hash: Hash32,
    /// The key that signed `hash`.
    pub key: PublicKey,
    pub signature: Signature,
}

impl Entry {
    /// The hash this entry's fields give: each text length-prefixed, so no two entries'
    /// fields run into the same bytes.
    pub fn computed_hash(&self) -> Hash32 {
        let intent = self.intent.map_or([0u8; 9], |seq| {
            let mut bytes = [1u8; 9];
            bytes[1..].copy_from_slice(&seq.to_le_bytes());
            bytes
        });
        let texts = [&self.actor, &self.role, &self.action, &self.target, &self.detail];
        let lengths: Vec<[u8; 4]> = texts.iter().map(|t| (t.len() as u32).to_le_bytes()).collect();
        let (seq, at) = (self.seq.to_le_bytes(), self.at_unix_ms.to_le_bytes());
        let mut parts: Vec<&[u8]> = Vec::with_capacity(16);
        parts.push(&seq);
        parts.push(&at);
        for (text, length) in texts.iter().zip(&lengths) {
            parts.push(length);
            parts.push(text.as_bytes());
        }
        let outcome = [self.outcome.id()];
        parts.push(&outcome);
        parts.push(&intent);
        parts.push(&self.prev.0);
        let alg = [self.key.alg.id()];
        parts.push(&alg);
        parts.push(&self.key.key.0);
        hash_parts(HASH_DOMAIN, &parts)
    }
}

/// A page of the trail, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Entries written so far.
    pub total: u64,
    pub offset: u64,
    pub limit: usize,
}

/// An action recorded as begun: hand it to [`AuditLog::finish`] with how it ended. Dropped
/// unfinished (a panic), its intent stays open and the next start closes it `interrupted`.
#[must_use = "an intent is closed by AuditLog::finish"]
#[derive(Debug)]
pub struct Intent {
    seq: u64,
    record: Record,
}

impl Intent {
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Where the chain stands: the next sequence number and the hash of the last entry.
#[derive(Clone, Copy, Debug)]
struct Head {
    next: u64,
    hash: Hash32,
}

/// One entry to seal: its record, its outcome and, for an outcome, its intent.
struct Draft<'a> {
    record: &'a Record,
    outcome: Outcome,
    intent: Option<u64>,
}

/// The trail, in its own store.
pub struct AuditLog {
    store: Store,
    key: NodeKey,
    now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
    head: Mutex<Head>,
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn corrupt(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::StorageFailure, message)
}

impl AuditLog {
    /// Open (or create) the trail in `dir` (`<data>/audit.db`), signing with `key` and dating
    /// entries with `now_ms`. Reads the last entry and the open intents, and closes those.
    ///
    /// A last entry that does not match its own hash is refused: the trail was altered or
    /// damaged, and `dtenge audit verify` says where.
    pub fn open(dir: &Path, key: NodeKey, now_ms: Arc<dyn Fn() -> u64 + Send + Sync>) -> Result<AuditLog> {
        let store = Store::open(dir, &[ENTRIES_TABLE, OPEN_TABLE])?;
        AuditLog::on_store(store, key, now_ms)
    }

    /// [`AuditLog::open`] on a store already open (the simulator's disks, the tests').
    pub fn on_store(store: Store, key: NodeKey, now_ms: Arc<dyn Fn() -> u64 + Send + Sync>) -> Result<AuditLog> {
        let (head, last_key) = match store.last(ENTRIES_TABLE)? {
            None => (Head { next: 0, hash: Hash32([0; 32]) }, None),
            Some((row_key, bytes)) => {
                let entry: Entry = decode(&bytes)?;
                let intact = row_key == seq_key(entry.seq)
                    && entry.computed_hash() == entry.hash
                    && verify_signature(&entry.key, &entry.hash.0, &entry.signature).is_ok();
                // A sequence at its end would wrap and write over the first entries.
                let next = entry.seq.checked_add(1).filter(|_| intact).ok_or_else(|| {
                    corrupt(format!(
                        "the audit trail's last entry ({}) does not match its hash or signature: run `dtenge audit verify`",
                        entry.seq
                    ))
                })?;
                (Head { next, hash: entry.hash }, Some(entry.key))
            }
        };
        let log = AuditLog { store, key, now_ms, head: Mutex::new(head) };
        if let Some(last_key) = last_key {
            if last_key != log.key.public_key() {
                let detail =
                    format!("entries from here are signed by {} instead of {}", log.key.public_key().key, last_key.key);
                log.record(&Record::new("dtenge", "system", KEY_CHANGED_ACTION, "audit", &detail), Outcome::Ok)?;
            }
        }
        log.close_open_intents()?;
        Ok(log)
    }

    /// Close every intent a stop left open with an `interrupted` outcome, a bounded chunk per
    /// commit. Each pass deletes what it closes from the index, so the walk ends.
    fn close_open_intents(&self) -> Result<()> {
        let mut closed_total = 0usize;
        loop {
            let open = self.store.scan_first(OPEN_TABLE, OPEN_CLOSED_PER_COMMIT)?;
            if open.is_empty() {
                break;
            }
            let mut closing = Vec::with_capacity(open.len());
            for (row_key, _) in &open {
                let seq = u64::from_be_bytes(
                    row_key.as_slice().try_into().map_err(|_| corrupt("an open intent's key is not 8 bytes"))?,
                );
                let bytes = self
                    .store
                    .get(ENTRIES_TABLE, &seq_key(seq))?
                    .ok_or_else(|| corrupt(format!("open intent {seq} has no entry: run `dtenge audit verify`")))?;
                let entry: Entry = decode(&bytes)?;
                let mut record = record_of(&entry);
                record.detail = format!(
                    "{} -> the process stopped before the outcome was recorded: read the action's effect from the ledger",
                    entry.detail
                );
                closing.push((record, seq));
            }
            let drafts: Vec<Draft> = closing
                .iter()
                .map(|(record, seq)| Draft { record, outcome: Outcome::Interrupted, intent: Some(*seq) })
                .collect();
            self.append(&drafts)?;
            closed_total += drafts.len();
        }
        if closed_total > 0 {
            tracing::warn!(intents = closed_total, "audit: closed the intents a stop left open");
        }
        Ok(())
    }

    /// Record something done at once (a sign-in, a read, a refusal): one entry, durable when
    /// this returns. Its sequence number.
    pub fn record(&self, record: &Record, outcome: Outcome) -> Result<u64> {
        Ok(self.record_staged(record, outcome)?.wait()?[0])
    }

    /// [`AuditLog::record`] without the wait: the entry is sealed onto the chain and handed to
    /// the store now, in chain order, and is durable once the [`Staged`] write is awaited. For
    /// a caller whose answer does not depend on it (a read already answered, a refusal): its
    /// answer need not wait for an fsync, nor hold a thread while it does.
    pub fn record_staged(&self, record: &Record, outcome: Outcome) -> Result<Staged> {
        assert!(outcome != Outcome::Intent, "an intent is begun with AuditLog::begin");
        assert!(outcome != Outcome::Interrupted, "only a start closes an intent as interrupted");
        self.stage(&[Draft { record, outcome, intent: None }])
    }

    /// [`AuditLog::record`] for several entries, in order, in one commit (an import).
    pub fn record_many(&self, records: &[(Record, Outcome)]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        for (_, outcome) in records {
            assert!(*outcome == Outcome::Ok || *outcome == Outcome::Failed, "done at once: ok or failed");
        }
        let drafts: Vec<Draft> =
            records.iter().map(|(record, outcome)| Draft { record, outcome: *outcome, intent: None }).collect();
        self.append(&drafts).map(|_| ())
    }

    /// Record that an action is about to run: durable when this returns.
    pub fn begin(&self, record: Record) -> Result<Intent> {
        let seq = self.append(&[Draft { record: &record, outcome: Outcome::Intent, intent: None }])?[0];
        Ok(Intent { seq, record })
    }

    /// [`AuditLog::begin`] for an async caller: durable when the future completes, the task
    /// sleeping meanwhile without holding a thread (the REST API's hot path: a blocking thread
    /// parked on the fsync, once per request, was a sixth of its CPU in switches).
    pub async fn begin_durable(&self, record: Record) -> Result<Intent> {
        let staged = self.stage(&[Draft { record: &record, outcome: Outcome::Intent, intent: None }])?;
        let seq = staged.durable().await?[0];
        Ok(Intent { seq, record })
    }

    /// Record how the action of `intent` ended: `ok` or not, and `how` (an HTTP status, why it
    /// failed), added to the intent's detail.
    pub fn finish(&self, intent: Intent, ok: bool, how: &str) -> Result<u64> {
        Ok(self.finish_staged(intent, ok, how)?.wait()?[0])
    }

    /// [`AuditLog::finish`] without the wait (see [`AuditLog::record_staged`]): the answer is
    /// decided, and an outcome a crash keeps from the disk leaves its intent open, closed
    /// `interrupted` at the next start.
    pub fn finish_staged(&self, intent: Intent, ok: bool, how: &str) -> Result<Staged> {
        let mut record = intent.record;
        if !how.is_empty() {
            record.detail =
                if record.detail.is_empty() { how.to_string() } else { format!("{} -> {how}", record.detail) };
        }
        let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        self.stage(&[Draft { record: &record, outcome, intent: Some(intent.seq) }])
    }

    /// Run `op` between its intent and its outcome: not at all if the intent cannot be
    /// written. Its result whatever becomes of the outcome: `op` did what it did, and an
    /// outcome that could not be written leaves the intent open, closed `interrupted` at the
    /// next start.
    pub fn audited<T>(&self, record: Record, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let intent = self.begin(record)?;
        let result = op();
        let written = match &result {
            Ok(_) => self.finish(intent, true, ""),
            Err(e) => self.finish(intent, false, &e.to_string()),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "audit: an outcome was not written");
        }
        result
    }

    /// Entries written so far.
    pub fn total(&self) -> u64 {
        self.head.lock().next
    }

    /// The key entries are signed with now.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// [`verify`] this trail as it stands, trusting `trusted` (its own key when empty).
    pub fn check(&self, trusted: &[PublicKey]) -> Result<Verification> {
        let own = [self.key.public_key()];
        verify(&self.store, if trusted.is_empty() { &own } else { trusted })
    }

    /// Entries newest first, skipping the newest `offset`: one range read.
    pub fn page(&self, offset: u64, limit: usize) -> Result<Page> {
        if limit == 0 || limit > PAGE_MAX {
            return Err(Error::malformed(format!("limit is 1 to {PAGE_MAX}")));
        }
        let total = self.total();
        let end = total.saturating_sub(offset);
        let start = end.saturating_sub(limit as u64);
        let rows = self.store.scan_range(ENTRIES_TABLE, &seq_key(start), &seq_key(end))?;
        if rows.len() > limit {
            // Only keys of another length between two sequence numbers can do this.
            return Err(corrupt("the audit trail holds rows that are not entries: run `dtenge audit verify`"));
        }
        let mut entries = rows.iter().map(|(_, bytes)| decode::<Entry>(bytes)).collect::<Result<Vec<_>>>()?;
        entries.reverse();
        Ok(Page { entries, total, offset, limit })
    }

    /// Seal `drafts` in order onto the chain and commit them as one batch; their sequence
    /// numbers, once durable.
    fn append(&self, drafts: &[Draft]) -> Result<Vec<u64>> {
        self.stage(drafts)?.wait()
    }

    /// Seal `drafts` in order onto the chain and hand them to the store as one batch.
    ///
    /// Sealed under the head's lock and handed to the store before it is let go, so entries
    /// reach the disk in chain order; the wait for the fsync is the caller's, outside it, so
    /// concurrent callers share group commits.
    fn stage(&self, drafts: &[Draft]) -> Result<Staged> {
        assert!(!drafts.is_empty());
        let mut sequences = Vec::with_capacity(drafts.len());
        let mut anchors = Vec::new();
        let pending = {
            let mut head = self.head.lock();
            let mut batch = WriteBatch::new();
            for draft in drafts {
                let entry = self.seal(*head, draft);
                batch.put_value(ENTRIES_TABLE, seq_key(entry.seq).to_vec(), &entry)?;
                match (draft.outcome, draft.intent) {
                    (Outcome::Intent, None) => batch.put(OPEN_TABLE, seq_key(entry.seq).to_vec(), vec![1]),
                    (_, Some(intent)) => batch.delete(OPEN_TABLE, seq_key(intent).to_vec()),
                    _ => {}
                }
                if entry.seq.is_multiple_of(ANCHOR_EVERY) {
                    anchors.push((entry.seq, entry.hash));
                }
                sequences.push(entry.seq);
                let next =
                    entry.seq.checked_add(1).ok_or_else(|| corrupt("the audit trail's sequence is at its end"))?;
                *head = Head { next, hash: entry.hash };
            }
            self.store.commit_async(batch)
        };
        Ok(Staged { sequences, anchors, pending })
    }

    fn seal(&self, head: Head, draft: &Draft) -> Entry {
        let record = draft.record;
        if let Some(intent) = draft.intent {
            assert!(intent < head.next, "an outcome follows its intent");
        }
        let key = self.key.public_key();
        let mut entry = Entry {
            seq: head.next,
            at_unix_ms: (self.now_ms)(),
            actor: sanitize_actor(&record.actor),
            role: sanitize(&record.role, ROLE_CHARS_MAX),
            action: sanitize(&record.action, ACTION_CHARS_MAX),
            target: sanitize(&record.target, TARGET_CHARS_MAX),
            detail: sanitize(&record.detail, DETAIL_CHARS_MAX),
            outcome: draft.outcome,
            intent: draft.intent,
            prev: head.hash,
            hash: Hash32([0; 32]),
            key,
            signature: Signature { alg: key.alg, sig: dtenge_core::crypto::SignatureBytes([0; 64]) },
        };
        entry.hash = entry.computed_hash();
        entry.signature = self.key.sign(&entry.hash.0);
        entry
    }
}

/// Entries sealed onto the chain and handed to the store, durable once awaited
/// ([`Staged::wait`], [`Staged::durable`]).
///
/// Until the store is reopened, a failed commit fails every later one (`dtenge-store`), so no
/// entry is ever committed after one that was not, awaited or not: the chain on disk has no
/// hole.
#[must_use = "an entry is known durable only once its write is awaited"]
pub struct Staged {
    sequences: Vec<u64>,
    /// Heads to write to the structured log once durable (see the module's note).
    anchors: Vec<(u64, Hash32)>,
    pending: dtenge_store::PendingCommit,
}

impl Staged {
    /// Block until durable; the entries' sequence numbers.
    pub fn wait(self) -> Result<Vec<u64>> {
        let Staged { sequences, anchors, pending } = self;
        pending.wait()?;
        log_anchors(&anchors);
        Ok(sequences)
    }

    /// [`Staged::wait`] for an async caller, holding no thread.
    pub async fn durable(self) -> Result<Vec<u64>> {
        let Staged { sequences, anchors, pending } = self;
        pending.durable().await?;
        log_anchors(&anchors);
        Ok(sequences)
    }
}

/// Out of the store, and only once durable: against the newest entries' removal (see the
/// module's note).
fn log_anchors(anchors: &[(u64, Hash32)]) {
    for (seq, hash) in anchors {
        tracing::info!(seq, hash = %hash, "audit trail head");
    }
}

fn record_of(entry: &Entry) -> Record {
    Record {
        actor: entry.actor.clone(),
        role: entry.role.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        detail: entry.detail.clone(),
    }
}

/// `text` with control characters, line and paragraph separators, and the invisible
/// characters that reorder or hide text (bidirectional overrides, zero-width ones) as spaces,
/// at most `chars_max` characters.
pub fn sanitize(text: &str, chars_max: usize) -> String {
    text.chars().take(chars_max).map(|c| if c.is_control() || hides_or_breaks(c) { ' ' } else { c }).collect()
}

/// Line and paragraph separators, bidirectional controls, zero-width characters, the byte
/// order mark.
fn hides_or_breaks(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// An actor's name: letters, digits and `. _ - @ : /` kept, anything else `?`, at most
/// [`ACTOR_CHARS_MAX`] characters.
pub fn sanitize_actor(name: &str) -> String {
    name.chars()
        .take(ACTOR_CHARS_MAX)
        .map(|c| if c.is_ascii_alphanumeric() || "._-@:/".contains(c) { c } else { '?' })
        .collect()
}

/// What [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub entries: u64,
    /// The last entry's sequence number and hash: compare with the newest anchor in the log.
    pub head: Option<(u64, Hash32)>,
    /// The keys that signed entries, in the order they first did.
    pub keys: Vec<PublicKey>,
    /// Intents without an outcome (the process is running, or stopped during an action).
    pub open_intents: u64,
    pub problems_total: u64,
    /// The first [`PROBLEMS_LISTED_MAX`] problems.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems_total == 0
    }

    fn problem(&mut self, text: String) {
        self.problems_total += 1;
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(text);
        }
    }
}

/// Walk the trail in `store` from its first entry: every entry's hash, signature and link to
/// the one before, the sequence without gaps, every outcome after its intent, the index of
/// open intents, and keys in epochs: the first entry's key signs until an `audit_key_changed`
/// entry, signed by the next key, hands over (a key that signs after its epoch, a retired one
/// included, is a problem). When `trusted` names keys, every epoch's key must be one of them.
pub fn verify(store: &Store, trusted: &[PublicKey]) -> Result<Verification> {
    let mut report = Verification {
        entries: 0,
        head: None,
        keys: Vec::new(),
        open_intents: 0,
        problems_total: 0,
        problems: Vec::new(),
    };
    let mut walk = Walk { expected_seq: 0, prev: Hash32([0; 32]), key: None, open: BTreeSet::new() };
    let mut start = seq_key(0).to_vec();
    // Bounded: each pass reads at most a chunk and resumes after the last key it read; a pass
    // that reads less than a chunk is the last.
    loop {
        let rows = store.scan_from(ENTRIES_TABLE, &start, VERIFY_CHUNK_ROWS)?;
        for (row_key, bytes) in &rows {
            let Ok(row_seq) = <[u8; 8]>::try_from(row_key.as_slice()).map(u64::from_be_bytes) else {
                report.problem(format!("row {} is not an entry's (its key is not 8 bytes)", hex_of(row_key)));
                continue;
            };
            match decode::<Entry>(bytes) {
                Ok(entry) => check_entry(&mut report, &mut walk, &entry, row_seq, trusted),
                Err(e) => {
                    report.problem(format!("entry {row_seq} does not decode: {e}"));
                    walk.expected_seq = row_seq.saturating_add(1);
                }
            }
            report.entries += 1;
        }
        let (Some((last_key, _)), true) = (rows.last(), rows.len() == VERIFY_CHUNK_ROWS) else { break };
        start = last_key.clone();
        start.push(0);
    }
    report.open_intents = walk.open.len() as u64;
    let indexed: BTreeSet<u64> = store
        .scan(OPEN_TABLE)?
        .iter()
        .map(|(row_key, _)| <[u8; 8]>::try_from(row_key.as_slice()).map(u64::from_be_bytes).unwrap_or(u64::MAX))
        .collect();
    for seq in indexed.difference(&walk.open) {
        report.problem(format!("the open-intent index names {seq}, which is not an open intent"));
    }
    for seq in walk.open.difference(&indexed) {
        report.problem(format!("intent {seq} has no outcome and is missing from the open-intent index"));
    }
    Ok(report)
}

/// Where [`verify`]'s walk stands.
struct Walk {
    expected_seq: u64,
    prev: Hash32,
    /// The key of the current epoch.
    key: Option<PublicKey>,
    open: BTreeSet<u64>,
}

fn check_entry(report: &mut Verification, walk: &mut Walk, entry: &Entry, row_seq: u64, trusted: &[PublicKey]) {
    let seq = entry.seq;
    if row_seq != seq {
        report.problem(format!("entry {seq} is stored under the key of entry {row_seq}"));
    }
    if seq != walk.expected_seq {
        report.problem(format!("entries {} to {} are missing", walk.expected_seq, seq.saturating_sub(1)));
    } else if entry.prev != walk.prev {
        report.problem(format!("entry {seq} does not link to the entry before it: one was altered or replaced"));
    }
    if entry.computed_hash() != entry.hash {
        report.problem(format!("entry {seq} was altered: its fields do not give its hash"));
    }
    if verify_signature(&entry.key, &entry.hash.0, &entry.signature).is_err() {
        report.problem(format!("entry {seq}: the signature does not verify"));
    }
    check_epoch(report, walk, entry, trusted);
    match (entry.outcome, entry.intent) {
        (Outcome::Intent, None) => {
            walk.open.insert(seq);
        }
        (Outcome::Intent, Some(_)) | (Outcome::Interrupted, None) => {
            report.problem(format!("entry {seq} is malformed: an intent names an intent, or an interruption none"));
        }
        (_, Some(intent)) => {
            if !walk.open.remove(&intent) {
                report.problem(format!("entry {seq} closes {intent}, which is not an open intent"));
            }
        }
        (_, None) => {}
    }
    walk.expected_seq = seq.saturating_add(1);
    walk.prev = entry.hash;
    report.head = Some((seq, entry.hash));
}

/// The key's epoch: the same key as the entry before, or a hand-over recorded by the new key.
fn check_epoch(report: &mut Verification, walk: &mut Walk, entry: &Entry, trusted: &[PublicKey]) {
    let seq = entry.seq;
    let handed_over = entry.role == "system" && entry.action == KEY_CHANGED_ACTION;
    match walk.key {
        Some(key) if key != entry.key && !handed_over => {
            report.problem(format!("entry {seq} is signed by {}, not by the key of its epoch", entry.key.key));
        }
        _ => walk.key = Some(entry.key),
    }
    if !trusted.is_empty() && !trusted.contains(&entry.key) {
        report.problem(format!("entry {seq} is signed by {}, a key not trusted", entry.key.key));
    }
    if !report.keys.contains(&entry.key) {
        report.keys.push(entry.key);
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
