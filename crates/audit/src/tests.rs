use super::*;
use dtenge_core::crypto::SecretKey;
use dtenge_store::encode;
use std::sync::atomic::{AtomicU64, Ordering};

fn key(seed: u8) -> NodeKey {
    NodeKey::from(SecretKey::from_seed([seed; 32]))
}

fn clock() -> Arc<dyn Fn() -> u64 + Send + Sync> {
    let now = Arc::new(AtomicU64::new(1_795_000_000_000));
    Arc::new(move || now.fetch_add(1, Ordering::Relaxed))
}

fn open(dir: &Path) -> AuditLog {
    AuditLog::open(dir, key(7), clock()).unwrap()
}

fn sign_in(log: &AuditLog, user: &str) {
    log.record(&Record::new(user, "operator", "sign_in", user, ""), Outcome::Ok).unwrap();
}

fn verified(dir: &Path, trusted: &[PublicKey]) -> Verification {
    let store = Store::open(dir, &[ENTRIES_TABLE, OPEN_TABLE]).unwrap();
    verify(&store, trusted).unwrap()
}

/// Rewrite entry `seq` through `change`, as someone with the database's files could.
fn tamper(dir: &Path, seq: u64, change: impl FnOnce(&mut Entry)) {
    let store = Store::open(dir, &[ENTRIES_TABLE, OPEN_TABLE]).unwrap();
    let mut entry: Entry = decode(&store.get(ENTRIES_TABLE, &seq_key(seq)).unwrap().unwrap()).unwrap();
    change(&mut entry);
    let mut batch = WriteBatch::new();
    batch.put(ENTRIES_TABLE, seq_key(seq).to_vec(), encode(&entry).unwrap());
    store.commit(batch).unwrap();
}

#[test]
fn a_whole_trail_verifies_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for user in ["operator", "treasury", "steppe-officer"] {
            sign_in(&log, user);
        }
        let paid: Result<u32> = log.audited(Record::new("dana", "client", "pay", "tulpar", "1.00 KZT"), || Ok(7));
        assert_eq!(paid.unwrap(), 7);
        let refused: Result<u32> = log.audited(Record::new("dana", "client", "pay", "tulpar", "9 KZT"), || {
            Err(Error::new(ErrorCode::InsufficientFunds, "not enough"))
        });
        assert_eq!(refused.unwrap_err().code, ErrorCode::InsufficientFunds, "the action's own error comes back");
    }
    let report = verified(dir.path(), &[key(7).public_key()]);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 7, "three sign-ins, two intents, two outcomes");
    assert_eq!(report.open_intents, 0);
    assert_eq!(report.keys, vec![key(7).public_key()]);
    assert_eq!(report.head.map(|(seq, _)| seq), Some(6));
    let untrusted = verified(dir.path(), &[key(8).public_key()]);
    assert_eq!(untrusted.problems_total, 7, "every entry is signed by a key not trusted");
}

#[test]
fn an_altered_entry_is_found_even_when_its_hash_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for n in 0..5 {
            sign_in(&log, &format!("user{n}"));
        }
    }
    tamper(dir.path(), 2, |e| e.actor = "someone-else".into());
    let report = verified(dir.path(), &[]);
    assert!(report.problems.iter().any(|p| p.contains("entry 2 was altered")), "{:?}", report.problems);

    // Recomputing the hash hides nothing: the signature and the next entry's link break.
    tamper(dir.path(), 2, |e| e.hash = e.computed_hash());
    let report = verified(dir.path(), &[]);
    assert!(report.problems.iter().any(|p| p.contains("entry 2: the signature does not verify")));
    assert!(report.problems.iter().any(|p| p.contains("entry 3 does not link")), "{:?}", report.problems);

    // Re-signing with another key is caught by the trusted key.
    let forger = key(9);
    tamper(dir.path(), 2, |e| {
        e.key = forger.public_key();
        e.hash = e.computed_hash();
        e.signature = forger.sign(&e.hash.0);
    });
    let report = verified(dir.path(), &[key(7).public_key()]);
    assert!(report.problems.iter().any(|p| p.contains("entry 2 is signed by")), "{:?}", report.problems);
}

#[test]
fn a_removed_entry_leaves_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for n in 0..5 {
            sign_in(&log, &format!("user{n}"));
        }
    }
    {
        let store = Store::open(dir.path(), &[ENTRIES_TABLE, OPEN_TABLE]).unwrap();
        let mut batch = WriteBatch::new();
        batch.delete(ENTRIES_TABLE, seq_key(1).to_vec());
        batch.delete(ENTRIES_TABLE, seq_key(0).to_vec());
        store.commit(batch).unwrap();
    }
    let report = verified(dir.path(), &[]);
    assert!(report.problems.iter().any(|p| p.contains("entries 0 to 1 are missing")), "{:?}", report.problems);
    assert_eq!(report.entries, 3);
}

#[test]
fn an_intent_a_crash_left_open_is_closed_as_interrupted_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let seq = {
        let log = open(dir.path());
        let intent = log.begin(Record::new("steppe-officer", "bank", "open_account", "950505400019", "")).unwrap();
        // The process stops here: the action ran or not, its outcome was never written.
        intent.seq()
    };
    let report = verified(dir.path(), &[]);
    assert!(report.ok() && report.open_intents == 1, "{report:?}");

    let log = open(dir.path());
    let page = log.page(0, 10).unwrap();
    assert_eq!(page.total, 2);
    let closed = &page.entries[0];
    assert_eq!((closed.outcome, closed.intent), (Outcome::Interrupted, Some(seq)));
    assert_eq!((closed.actor.as_str(), closed.action.as_str()), ("steppe-officer", "open_account"));
    drop(log);
    let report = verified(dir.path(), &[]);
    assert!(report.ok() && report.open_intents == 0, "{report:?}");
    assert_eq!(open(dir.path()).total(), 2, "closed once");
}

#[test]
fn pages_come_from_disk_newest_first_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let written = PAGE_MAX as u64 + 37;
    {
        let log = open(dir.path());
        for n in 0..written {
            sign_in(&log, &format!("user{n}"));
        }
    }
    let log = open(dir.path());
    assert_eq!(log.total(), written, "a start reads the last entry");
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = log.page(offset, PAGE_MAX).unwrap();
        assert!(page.entries.len() <= PAGE_MAX);
        if page.entries.is_empty() {
            break;
        }
        offset += page.entries.len() as u64;
        seen.extend(page.entries.into_iter().map(|e| e.seq));
    }
    assert_eq!(seen, (0..written).rev().collect::<Vec<_>>());
    assert_eq!(log.page(0, 0).unwrap_err().code, ErrorCode::MalformedInput);
    assert_eq!(log.page(0, PAGE_MAX + 1).unwrap_err().code, ErrorCode::MalformedInput);
    assert!(log.page(u64::MAX, 5).unwrap().entries.is_empty());
}

#[test]
fn names_and_texts_are_stored_sanitized() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let name = "admin\n2026-12-07 sign_in operator OK\u{1b}[2J";
    let long = "x".repeat(10 * DETAIL_CHARS_MAX);
    log.record(&Record::new(name, "operator", "sign_in", name, &long), Outcome::Failed).unwrap();
    let entry = &log.page(0, 1).unwrap().entries[0];
    assert_eq!(entry.actor, "admin?2026-12-07?sign_in?operator?OK??2J");
    assert!(!entry.target.chars().any(char::is_control));
    assert_eq!(entry.detail.chars().count(), DETAIL_CHARS_MAX);
    assert_eq!(sanitize_actor(&"é".repeat(100)), "?".repeat(ACTOR_CHARS_MAX));
}

#[test]
fn a_new_key_is_recorded_and_both_verify() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        sign_in(&log, "operator");
    }
    {
        let log = AuditLog::open(dir.path(), key(8), clock()).unwrap();
        assert_eq!(log.page(0, 1).unwrap().entries[0].action, "audit_key_changed");
        sign_in(&log, "operator");
    }
    let report = verified(dir.path(), &[key(7).public_key(), key(8).public_key()]);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.keys, vec![key(7).public_key(), key(8).public_key()]);
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 8;
    let per_thread = 50;
    {
        let log = Arc::new(open(dir.path()));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..per_thread {
                        let _: u32 = log
                            .audited(Record::new(&format!("t{t}"), "api", "pay", &n.to_string(), ""), || Ok(1))
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }
    let report = verified(dir.path(), &[key(7).public_key()]);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, threads * per_thread * 2);
}

#[test]
fn a_start_refuses_a_last_entry_that_does_not_match_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        sign_in(&log, "operator");
        sign_in(&log, "treasury");
    }
    tamper(dir.path(), 1, |e| e.ok_flip());
    let error = AuditLog::open(dir.path(), key(7), clock()).err().unwrap();
    assert_eq!(error.code, ErrorCode::StorageFailure);
    assert!(error.message.contains("audit verify"), "{}", error.message);
}

impl Entry {
    fn ok_flip(&mut self) {
        self.outcome = if self.outcome == Outcome::Ok { Outcome::Failed } else { Outcome::Ok };
    }
}

#[test]
fn a_retired_key_signing_after_its_epoch_is_found_even_when_trusted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        sign_in(&log, "operator");
    }
    {
        let log = AuditLog::open(dir.path(), key(8), clock()).unwrap();
        sign_in(&log, "operator");
        sign_in(&log, "treasury");
    }
    // Whoever kept the retired key re-signs the newest entry with it.
    let retired = key(7);
    tamper(dir.path(), 3, |e| {
        e.key = retired.public_key();
        e.hash = e.computed_hash();
        e.signature = retired.sign(&e.hash.0);
    });
    let report = verified(dir.path(), &[key(7).public_key(), key(8).public_key()]);
    assert!(
        report.problems.iter().any(|p| p.contains("entry 3 is signed by") && p.contains("not by the key of its epoch")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_last_entry_at_the_end_of_the_sequence_is_refused_and_verify_still_ends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        sign_in(&log, "operator");
    }
    {
        // A row far past the others, sealed as the platform would seal it.
        let store = Store::open(dir.path(), &[ENTRIES_TABLE, OPEN_TABLE]).unwrap();
        let mut entry: Entry = decode(&store.get(ENTRIES_TABLE, &seq_key(0)).unwrap().unwrap()).unwrap();
        entry.seq = u64::MAX;
        entry.hash = entry.computed_hash();
        entry.signature = key(7).sign(&entry.hash.0);
        let mut batch = WriteBatch::new();
        batch.put(ENTRIES_TABLE, seq_key(u64::MAX).to_vec(), encode(&entry).unwrap());
        batch.put(ENTRIES_TABLE, vec![0, 0, 0, 0, 0, 0, 0, 0, 9], vec![1, 2, 3]);
        store.commit(batch).unwrap();
    }
    let error = AuditLog::open(dir.path(), key(7), clock()).err().unwrap();
    assert_eq!(error.code, ErrorCode::StorageFailure, "never wraps to entry 0: {}", error.message);
    let report = verified(dir.path(), &[]);
    assert!(report.problems.iter().any(|p| p.contains("not 8 bytes")), "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.contains("entries 1 to")), "{:?}", report.problems);
}

#[test]
fn text_that_would_reorder_or_break_a_line_is_stored_as_spaces() {
    for hidden in ['\u{2028}', '\u{2029}', '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\u{85}'] {
        assert_eq!(sanitize(&format!("a{hidden}b"), 10), "a b", "{:?}", hidden);
    }
    assert_eq!(sanitize("Серикова Дана", 20), "Серикова Дана");
}

#[test]
fn many_open_intents_are_all_closed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let intents = OPEN_CLOSED_PER_COMMIT as u64 * 2 + 3;
    {
        let log = open(dir.path());
        for n in 0..intents {
            let _ = log.begin(Record::new("api-client", "api", "POST", &n.to_string(), "")).unwrap();
        }
    }
    let log = open(dir.path());
    assert_eq!(log.total(), intents * 2);
    let report = log.check(&[]).unwrap();
    assert!(report.ok() && report.open_intents == 0, "{report:?}");
}
