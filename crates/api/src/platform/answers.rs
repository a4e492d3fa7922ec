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
//! then the answer's JSON, the same bytes the client got.

use super::Idem;
use dtenge_core::{Error, ErrorCode, Result};
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
const FINGERPRINT_BYTES: usize = 32;

pub struct Answers {
    store: Store,
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
    pub fn open(dir: &Path) -> Result<Answers> {
        Ok(Answers { store: Store::open(dir, &[ANSWERS])?, in_flight: Arc::new(Mutex::new(HashSet::new())) })
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
        let mut row = Vec::with_capacity(FINGERPRINT_BYTES + json.len());
        row.extend_from_slice(&idem.fingerprint.0);
        row.extend_from_slice(&json);
        let mut batch = WriteBatch::new();
        batch.put(ANSWERS, idem.key.as_bytes(), row);
        self.store.commit(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::hash_parts;
    use std::cell::Cell;

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
            let answers = Answers::open(dir.path()).unwrap();
            assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 10);
            assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 10);
            assert_eq!(answers.once(None, |_| run()).unwrap(), 20);
        }
        let answers = Answers::open(dir.path()).unwrap();
        assert_eq!(answers.once(Some(idem("k", b"a")), |_| run()).unwrap(), 10);
        let reused = answers.once(Some(idem("k", b"b")), |_| run()).unwrap_err();
        assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn a_failure_is_not_recorded_and_a_bad_key_is_refused_before_the_operation() {
        let dir = tempfile::tempdir().unwrap();
        let answers = Answers::open(dir.path()).unwrap();
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
        let answers = Answers::open(dir.path()).unwrap();
        let outer = answers
            .once(Some(idem("k", b"a")), |_| {
                let inner: Result<u32> = answers.once(Some(idem("k", b"a")), |_| Ok(1));
                Ok(inner.unwrap_err().code)
            })
            .unwrap();
        assert_eq!(outer, ErrorCode::RequestInProgress);
    }
}
