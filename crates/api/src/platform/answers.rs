//! The gateway's own idempotency: every answer given to a request with an idempotency key,
//! kept so that a retry gets the first answer, and a key reused with another request is
//! refused `IDEMPOTENCY_KEY_REUSED`.
//!
//! This is a memo, not the authority. A call that moves money hands its key to the role that
//! moves it (the payer's bank, central, the oracle), which answers a repeated key from its own
//! store. So a crash between the role's commit and this memo's loses nothing: the retry runs
//! again and the role answers it as the first time. Calls that move no money are idempotent by
//! their nature or keyed at their role.
//!
//! One row per key in the gateway's store (`gateway.db`): the request's 32-byte fingerprint,
//! `0xFF` and the time it was written (Unix ms, u64 LE), then the answer's JSON, the same
//! bytes the client got. Rows written before the retention window existed have no `0xFF` and
//! no time (JSON never starts with that byte).
//!
//! Rows are kept for the retention window ([`dtenge_store::retention`], default 7 days): each
//! write sweeps at most [`SWEEP_ROWS_PER_WRITE`] index rows, deleting the rows older than the
//! window whose keys are not in flight. A key swept is answered as new.

use super::Idem;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::retention::{RecordAge, Retention, Swept, IDEMPOTENCY_RETENTION_MS_MIN};
use dtenge_store::{Store, Table, WriteBatch};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Longest idempotency key, in bytes (the roles' limit too).
pub const IDEM_KEY_LEN_MAX: usize = 128;
/// Keys in flight at once: one per request being answered, bounded by the gateway's threads
/// many times over.
const IN_FLIGHT_MAX: usize = 65_536;
const ANSWERS: Table = Table("answers");
/// The answers' index by write time ([`Retention`]).
const ANSWERS_BY_TIME: Table = Table("answers_by_time");
const FINGERPRINT_BYTES: usize = 32;
/// After the fingerprint, a row with its write time (JSON never starts with 0xFF).
const TIMED: u8 = 0xFF;
const TIME_BYTES: usize = 8;
/// Index rows swept by each write: more than one, so the sweep outruns the writes.
pub const SWEEP_ROWS_PER_WRITE: usize = 8;

/// The time now, Unix ms: the gateway's clock.
pub type Now = Arc<dyn Fn() -> u64 + Send + Sync>;

pub struct Answers {
    store: Store,
    retention: Retention,
    retention_ms: u64,
    now: Now,
    /// Keys being answered now (shared with their [`KeyInFlight`] guards).
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// A key being answered: removed from the keys in flight when dropped, however the request
/// ends (an answer, an error, a panic unwinding, a client that went away).
pub struct KeyInFlight {
    in_flight: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for KeyInFlight {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.key);
    }
}

impl Answers {
    /// Open the memo in `dir`, keeping answers `retention_ms` (at least a minute) by `now`.
    pub fn open(dir: &Path, now: Now, retention_ms: u64) -> Result<Answers> {
        if retention_ms < IDEMPOTENCY_RETENTION_MS_MIN {
            return Err(Error::malformed(format!(
                "an idempotency retention of {retention_ms} ms; at least {IDEMPOTENCY_RETENTION_MS_MIN} ms"
            )));
        }
        let retention = Retention::new(ANSWERS, ANSWERS_BY_TIME);
        let store = Store::open(dir, &[ANSWERS, ANSWERS_BY_TIME])?;
        retention.migrate(&store, now())?;
        Ok(Answers { store, retention, retention_ms, now, in_flight: Arc::new(Mutex::new(HashSet::new())) })
    }

    /// Run `op` at most once per key: a key answered before gets its answer back; a key being
    /// answered right now is `REQUEST_IN_PROGRESS`. Without a key, `op` just runs.
    pub fn once<T, F>(&self, idem: Option<Idem>, op: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Option<&Idem>) -> Result<T>,
    {
        let Some(idem) = idem else { return op(None) };
        let _in_flight = self.enter(&idem)?;
        if let Some(answer) = self.answer(&idem)? {
            return Ok(answer);
        }
        let answer = op(Some(&idem))?;
        self.record(&idem, &answer)?;
        Ok(answer)
    }

    /// Take `idem`'s key as in flight until the guard is dropped: `MALFORMED_INPUT` for a key
    /// of the wrong length, `REQUEST_IN_PROGRESS` while it is in flight already.
    pub fn enter(&self, idem: &Idem) -> Result<KeyInFlight> {
        if idem.key.is_empty() || idem.key.len() > IDEM_KEY_LEN_MAX {
            return Err(Error::malformed(format!("an idempotency key has 1 to {IDEM_KEY_LEN_MAX} characters")));
        }
        let mut in_flight = self.in_flight.lock();
        if in_flight.len() >= IN_FLIGHT_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many requests in flight; ask again"));
        }
        if !in_flight.insert(idem.key.clone()) {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                format!("request with idempotency key '{}' is still being processed", idem.key),
            ));
        }
        Ok(KeyInFlight { in_flight: self.in_flight.clone(), key: idem.key.clone() })
    }

    /// The answer recorded for `idem`'s key, if any; `IDEMPOTENCY_KEY_REUSED` if the key came
    /// with another request.
    fn answer<T: DeserializeOwned>(&self, idem: &Idem) -> Result<Option<T>> {
        let Some(row) = self.store.get(ANSWERS, idem.key.as_bytes())? else { return Ok(None) };
        if row.len() < FINGERPRINT_BYTES {
            return Err(Error::storage(format!("the answer stored for key '{}' is cut short", idem.key)));
        }
        let (fingerprint, json) = row.split_at(FINGERPRINT_BYTES);
        let json = match json.split_first() {
            Some((&TIMED, timed)) if timed.len() >= TIME_BYTES => &timed[TIME_BYTES..],
            Some((&TIMED, _)) => {
                return Err(Error::storage(format!("the answer stored for key '{}' is cut short", idem.key)))
            }
            _ => json,
        };
        if fingerprint != &idem.fingerprint.0[..] {
            return Err(Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            ));
        }
        serde_json::from_slice(json)
            .map(Some)
            .map_err(|e| Error::storage(format!("the answer stored for key '{}' does not decode: {e}", idem.key)))
    }

    fn record<T: Serialize>(&self, idem: &Idem, answer: &T) -> Result<()> {
        let json = serde_json::to_vec(answer).map_err(|e| Error::internal(format!("answer to JSON: {e}")))?;
        let now_ms = (self.now)();
        let mut row = Vec::with_capacity(FINGERPRINT_BYTES + 1 + TIME_BYTES + json.len());
        row.extend_from_slice(&idem.fingerprint.0);
        row.push(TIMED);
        row.extend_from_slice(&now_ms.to_le_bytes());
        row.extend_from_slice(&json);
        let mut batch = WriteBatch::new();
        // The sweep first: its deletions never touch this key (in flight, so skipped).
        let _swept = self.sweep(&mut batch, now_ms, SWEEP_ROWS_PER_WRITE)?;
        batch.put(ANSWERS, idem.key.as_bytes(), row);
        self.retention.index(&mut batch, idem.key.as_bytes(), now_ms);
        self.store.commit(batch)
    }

    /// Plan into `batch` the deletion of answers older than the window (reading at most
    /// `rows_max` index rows), and hold their keys in flight until the returned guards drop:
    /// commit `batch` before. A key in flight now is skipped (its request is being answered).
    fn sweep(&self, batch: &mut WriteBatch, now_ms: u64, rows_max: usize) -> Result<(Swept, Vec<KeyInFlight>)> {
        let mut guards = Vec::new();
        let swept = self.retention.sweep(&self.store, batch, now_ms, self.retention_ms, rows_max, |key, row| {
            let key = String::from_utf8_lossy(key).into_owned();
            let mut in_flight = self.in_flight.lock();
            if !in_flight.insert(key.clone()) {
                return Ok(RecordAge::InFlight);
            }
            guards.push(KeyInFlight { in_flight: self.in_flight.clone(), key });
            Ok(RecordAge::Written(written_ms_of(row)))
        })?;
        Ok((swept, guards))
    }

    /// One sweep pass on its own (at most `rows_max` index rows), committed: the answers
    /// deleted. For tests and operators; writes sweep as they go.
    pub fn sweep_now(&self, rows_max: usize) -> Result<u64> {
        let now_ms = (self.now)();
        let mut batch = WriteBatch::new();
        let (swept, guards) = self.sweep(&mut batch, now_ms, rows_max)?;
        self.store.commit(batch)?;
        drop(guards);
        Ok(swept.records)
    }
}

/// The time a row was written, if it carries one.
fn written_ms_of(row: &[u8]) -> Option<u64> {
    let rest = row.get(FINGERPRINT_BYTES..)?;
    let (&TIMED, timed) = rest.split_first()? else { return None };
    Some(u64::from_le_bytes(timed.get(..TIME_BYTES)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::hash_parts;
    use std::cell::Cell;

    const WINDOW_MS: u64 = dtenge_store::retention::IDEMPOTENCY_RETENTION_MS_DEFAULT;

    fn open(dir: &Path) -> Answers {
        open_at(dir, Arc::new(dtenge_env::ManualClock::new(1_000)))
    }

    fn open_at(dir: &Path, clock: Arc<dtenge_env::ManualClock>) -> Answers {
        use dtenge_env::Clock as _;
        Answers::open(dir, Arc::new(move || clock.now_ms()), WINDOW_MS).unwrap()
    }

    fn idem(key: &str, body: &[u8]) -> Idem {
        Idem { key: key.into(), fingerprint: hash_parts(b"test", &[body]) }
    }

    #[test]
    fn a_key_is_answered_once_across_a_reopen_and_refused_with_another_request() {
        let dir = tempfile::tempdir().unwrap();
        let runs = Cell::new(0);
        let run = || {
            runs.set(runs.get() + 1);
            Ok(runs.get() * 10)
        };
        {
            let answers = open(dir.path());
            assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 10);
            assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 10);
            assert_eq!(answers.once(None, |_| run()).unwrap(), 20);
        }
        let answers = open(dir.path());
        assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 10);
        let reused = answers.once(Some(idem("k", b"b")), |_| run()).unwrap_err();
        assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn a_failure_is_not_recorded_and_a_bad_key_is_refused_before_the_operation() {
        let dir = tempfile::tempdir().unwrap();
        let answers = open(dir.path());
        let failed: Result<u32> = answers.once(Some(idem("k", b"a")), |_| Err(Error::malformed("no")));
        assert_eq!(failed.unwrap_err().code, ErrorCode::MalformedInput);
        assert_eq!(answers.once(Some(idem("k", b"a")), |_| Ok(7u32)).unwrap(), 7);
        let long = "x".repeat(IDEM_KEY_LEN_MAX + 1);
        let refused: Result<u32> = answers.once(Some(idem(&long, b"a")), |_| panic!("must not run"));
        assert_eq!(refused.unwrap_err().code, ErrorCode::MalformedInput);
        let empty: Result<u32> = answers.once(Some(idem("", b"a")), |_| panic!("must not run"));
        assert_eq!(empty.unwrap_err().code, ErrorCode::MalformedInput);
    }

    #[test]
    fn a_key_in_flight_is_request_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let answers = open(dir.path());
        let outer = answers
            .once(Some(idem("k", b"a")), |_| {
                let inner: Result<u32> = answers.once(Some(idem("k", b"a")), |_| Ok(1));
                Ok(inner.unwrap_err().code)
            })
            .unwrap();
        assert_eq!(outer, ErrorCode::RequestInProgress);
    }

    #[test]
    fn an_answer_is_kept_for_the_window_then_swept_and_its_key_runs_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(dtenge_env::ManualClock::new(1_000));
        let answers = open_at(dir.path(), clock.clone());
        let runs = Cell::new(0);
        let run = || {
            runs.set(runs.get() + 1);
            Ok(runs.get())
        };
        assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 1);
        clock.advance(WINDOW_MS - 1);
        assert_eq!(answers.sweep_now(16).unwrap(), 0);
        assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 1, "a retry within the window");
        clock.advance(1);
        assert_eq!(answers.sweep_now(16).unwrap(), 1);
        assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 2, "past the window: new");
        // And once swept again, another request may take the key.
        clock.advance(WINDOW_MS);
        assert_eq!(answers.sweep_now(16).unwrap(), 1);
        assert_eq!(answers.once(Some(idem("k", b"b")), |_| run()).unwrap(), 3);
    }

    #[test]
    fn a_key_in_flight_is_not_swept_and_a_sweep_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(dtenge_env::ManualClock::new(1_000));
        let answers = open_at(dir.path(), clock.clone());
        for i in 0..10 {
            assert_eq!(answers.once(Some(idem(&format!("k{i}"), b"a")), |_| Ok(i)).unwrap(), i);
        }
        clock.advance(WINDOW_MS);
        let retry = answers.enter(&idem("k0", b"a")).unwrap();
        assert_eq!(answers.sweep_now(4).unwrap(), 3, "k0 in flight; at most 4 rows read");
        assert_eq!(answers.sweep_now(4).unwrap(), 4);
        drop(retry);
        assert_eq!(answers.sweep_now(4).unwrap(), 2, "the last two, then k0 indexed again at the sweep");
        assert_eq!(answers.once(Some(idem("k0", b"a")), |_| Ok(99)).unwrap(), 0, "k0 kept");
        clock.advance(WINDOW_MS);
        assert_eq!(answers.sweep_now(4).unwrap(), 1);
        assert_eq!(answers.once(Some(idem("k0", b"a")), |_| Ok(99)).unwrap(), 99);
    }

    #[test]
    fn an_answer_written_before_the_window_existed_is_read_and_expires_a_window_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &[ANSWERS]).unwrap();
            let mut row = idem("old", b"a").fingerprint.0.to_vec();
            row.extend_from_slice(b"7");
            let mut batch = WriteBatch::new();
            batch.put(ANSWERS, b"old".to_vec(), row);
            store.commit(batch).unwrap();
        }
        let clock = Arc::new(dtenge_env::ManualClock::new(5_000));
        let answers = open_at(dir.path(), clock.clone());
        assert_eq!(answers.once(Some(idem("old", b"a")), |_| Ok(8u32)).unwrap(), 7);
        clock.advance(WINDOW_MS - 1);
        assert_eq!(answers.sweep_now(16).unwrap(), 0);
        clock.advance(1);
        assert_eq!(answers.sweep_now(16).unwrap(), 1);
        assert_eq!(answers.once(Some(idem("old", b"a")), |_| Ok(8u32)).unwrap(), 8);
    }

    /// Bytes of a row and its index row, and what 7 days hold at 1,000 keyed requests a
    /// second: `cargo test -p dtenge-api --lib answers::tests::disk_growth -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn disk_growth() {
        // A REST client's key as the gateway scopes it: `bank:steppe/` and a UUID.
        let key_bytes = "bank:steppe/".len() + 36;
        let answer = serde_json::json!({"tx_id": "ab".repeat(32), "seq": 123_456_789u64, "status": "COMMITTED"});
        let json_bytes = serde_json::to_vec(&answer).unwrap().len();
        let row = key_bytes + FINGERPRINT_BYTES + 1 + TIME_BYTES + json_bytes;
        let index = dtenge_store::retention::index_row_key_bytes(key_bytes);
        let per_key = row + index;
        let keys_7d: u64 = 1_000 * 86_400 * 7;
        println!(
            "gateway answers: {row} B row + {index} B index = {per_key} B/key (payload, before LSM overhead); \
             7 days at 1000/s = {keys_7d} keys = {:.1} GiB",
            (keys_7d * per_key as u64) as f64 / (1u64 << 30) as f64
        );
    }
}
