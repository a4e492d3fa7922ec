//! Who may sign in, and the sessions they hold. Pure: time and random material come in as
//! arguments.
//!
//! - Passwords are hashed with **Argon2id** (RFC 9106; the `argon2` crate's defaults: 19 MiB,
//!   2 passes, 1 lane) into a PHC string with its own random salt. Only the hash is stored.
//! - A session is a random 256-bit token in an `HttpOnly; SameSite=Strict` cookie; the server
//!   keeps only the token's hash. It expires after [`SESSION_IDLE_MS`] without use and after
//!   [`SESSION_LIFETIME_MS`] in any case.
//! - Every session has its own CSRF token, which every state-changing request must echo in
//!   the `X-CSRF-Token` header (a page of another site can make the browser send the cookie,
//!   but cannot read the token).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use dtenge_core::crypto::{hash_parts, Hash32};
use dtenge_core::{ensure, Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A session ends after this long without a request.
pub const SESSION_IDLE_MS: u64 = 30 * 60 * 1000;
/// A session ends this long after sign-in, however active.
pub const SESSION_LIFETIME_MS: u64 = 12 * 3_600 * 1000;
/// Most sessions held at once; the oldest is dropped beyond it.
pub const SESSIONS_MAX: usize = 10_000;
/// Most sessions one user holds at once (a few browsers and devices); that user's oldest is
/// dropped beyond it, so that no user can push the others' sessions out of [`SESSIONS_MAX`].
pub const SESSIONS_PER_USER_MAX: usize = 8;
/// Failed sign-ins a user may make before each next attempt must wait.
pub const USER_FREE_FAILURES: u32 = 3;
/// Failed sign-ins one address may make, over all users, before it must wait: more than a
/// user's, since an office's NAT or a proxy speaks for many people.
pub const SOURCE_FREE_FAILURES: u32 = 20;
/// The first wait after the free failures; it doubles with each further failure ...
pub const SIGN_IN_WAIT_MS_MIN: u64 = 1_000;
/// ... up to this: a lockout of a quarter of an hour per failure from then on.
pub const SIGN_IN_WAIT_MS_MAX: u64 = 15 * 60 * 1_000;
/// Failures are forgotten after this long without another.
pub const FAILURES_FORGOTTEN_MS: u64 = 24 * 3_600 * 1_000;
/// Users and addresses with failures remembered at once; beyond it the one quiet longest is
/// forgotten (a bound on what a flood of made-up usernames can make the console keep).
pub const THROTTLED_MAX: usize = 100_000;
/// Shortest password accepted.
pub const PASSWORD_LEN_MIN: usize = 12;

/// What a user may see and do.
///
/// Externally tagged (`"operator"`, `{"bank_officer": {"bank": "steppe"}}`): users are stored
/// with bincode, which cannot read internally tagged enums.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The NBK's operator: monitoring, reconciliation, blocking, the calendar, the audit log.
    Operator,
    /// A Treasury officer: government agencies' accounts, holding and marking.
    Treasury,
    /// A bank's back-office officer, for that bank only.
    BankOfficer { bank: String },
    /// A client of a bank, for its own digital account only.
    Client { bank: String, client_id: String },
}

impl Role {
    /// The console this role lands on.
    pub fn console(&self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Treasury => "treasury",
            Role::BankOfficer { .. } => "bank",
            Role::Client { .. } => "client",
        }
    }
}

/// A user who may sign in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// Argon2id PHC string (algorithm, parameters, salt, hash).
    pub password_hash: String,
}

/// Hash `password` with Argon2id and the 16-byte `salt`.
pub fn hash_password(password: &str, salt: [u8; 16]) -> Result<String> {
    ensure!(
        password.chars().count() >= PASSWORD_LEN_MIN,
        MalformedInput,
        "a password has at least {PASSWORD_LEN_MIN} characters"
    );
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("password hash: {e}")))
}

/// Does `password` match the stored `hash`?
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A signed-in user's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub csrf: String,
    pub created_ms: u64,
    pub last_used_ms: u64,
}

impl Session {
    fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_used_ms) >= SESSION_IDLE_MS
            || now_ms.saturating_sub(self.created_ms) >= SESSION_LIFETIME_MS
    }
}

fn token_hash(token: &str) -> Hash32 {
    hash_parts(b"dtenge/console/session/v1", &[token.as_bytes()])
}

/// The live sessions, by the hash of their token.
#[derive(Default)]
pub struct Sessions {
    by_token: HashMap<Hash32, Session>,
}

impl Sessions {
    /// Start a session for `username` under `token` (random, from the caller). The user's
    /// oldest session ends beyond [`SESSIONS_PER_USER_MAX`]; the least recently used of all
    /// beyond [`SESSIONS_MAX`].
    pub fn create(&mut self, token: &str, username: &str, role: Role, csrf: String, now_ms: u64) {
        debug_assert!(token.len() >= 32 && csrf.len() >= 32);
        let mut own: Vec<(Hash32, u64)> =
            self.by_token.iter().filter(|(_, s)| s.username == username).map(|(k, s)| (*k, s.created_ms)).collect();
        if own.len() >= SESSIONS_PER_USER_MAX {
            own.sort_unstable_by_key(|(_, created_ms)| *created_ms);
            for (key, _) in &own[..=own.len() - SESSIONS_PER_USER_MAX] {
                self.by_token.remove(key);
            }
        }
        if self.by_token.len() >= SESSIONS_MAX {
            self.by_token.retain(|_, s| !s.expired(now_ms));
        }
        if self.by_token.len() >= SESSIONS_MAX {
            let oldest = self.by_token.iter().min_by_key(|(_, s)| s.last_used_ms).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.by_token.remove(&oldest);
            }
        }
        let session = Session { username: username.to_string(), role, csrf, created_ms: now_ms, last_used_ms: now_ms };
        self.by_token.insert(token_hash(token), session);
    }

    /// The session of `token`, refreshed, or `UNAUTHORIZED` if there is none or it expired.
    pub fn touch(&mut self, token: &str, now_ms: u64) -> Result<Session> {
        let key = token_hash(token);
        let expired = match self.by_token.get(&key) {
            None => return Err(Error::new(ErrorCode::Unauthorized, "sign in first")),
            Some(session) => session.expired(now_ms),
        };
        if expired {
            self.by_token.remove(&key);
            return Err(Error::new(ErrorCode::Unauthorized, "the session has expired: sign in again"));
        }
        let session = self.by_token.get_mut(&key).ok_or_else(|| Error::internal("session vanished"))?;
        session.last_used_ms = now_ms;
        Ok(session.clone())
    }

    pub fn remove(&mut self, token: &str) {
        self.by_token.remove(&token_hash(token));
    }

    /// End every session of `username` (e.g. after a password change).
    pub fn remove_user(&mut self, username: &str) {
        self.by_token.retain(|_, s| s.username != username);
    }
}

/// Failed sign-ins of one user or one address.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last_ms: u64,
}

impl Failures {
    /// When the next attempt may be made, after `free` failures without a wait.
    fn next_attempt_ms(&self, free: u32) -> u64 {
        if self.count < free {
            return 0;
        }
        let doublings = (self.count - free).min(32);
        let wait_ms = SIGN_IN_WAIT_MS_MIN.saturating_mul(1u64 << doublings).min(SIGN_IN_WAIT_MS_MAX);
        self.last_ms.saturating_add(wait_ms)
    }

    fn forgotten(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_ms) >= FAILURES_FORGOTTEN_MS
    }
}

/// Back-off and lockout of sign-ins, per user and per source address. Pure: the time comes in.
///
/// After [`USER_FREE_FAILURES`] failures of a user (or [`SOURCE_FREE_FAILURES`] of an
/// address), each next attempt must wait 1 s, then 2 s, 4 s, ... up to a quarter of an hour,
/// counted from the last failure: about a dozen guesses in the first twenty minutes, then four
/// an hour. An attempt made too early is refused before its password is checked, so guessing
/// costs the console nothing; a success clears the user's failures. Unknown usernames are
/// counted as known ones are, so the answers do not tell them apart.
#[derive(Default)]
pub struct Throttle {
    users: HashMap<String, Failures>,
    sources: HashMap<std::net::IpAddr, Failures>,
}

impl Throttle {
    /// `RATE_LIMITED`, naming the wait, when `username` or `source` must wait at `now_ms`.
    pub fn check(&self, username: &str, source: Option<std::net::IpAddr>, now_ms: u64) -> Result<()> {
        match self.wait_s(username, source, now_ms) {
            0 => Ok(()),
            wait_s => {
                Err(Error::new(ErrorCode::RateLimited, format!("too many failed sign-ins: try again in {wait_s} s")))
            }
        }
    }

    /// Whole seconds `username` from `source` must wait at `now_ms` (0: none).
    pub fn wait_s(&self, username: &str, source: Option<std::net::IpAddr>, now_ms: u64) -> u64 {
        let user = self.users.get(username).map_or(0, |f| f.next_attempt_ms(USER_FREE_FAILURES));
        let from = source.and_then(|s| self.sources.get(&s)).map_or(0, |f| f.next_attempt_ms(SOURCE_FREE_FAILURES));
        user.max(from).saturating_sub(now_ms).div_ceil(1_000)
    }

    /// Count a failed sign-in of `username` from `source`.
    pub fn failed(&mut self, username: &str, source: Option<std::net::IpAddr>, now_ms: u64) {
        // A username is at most 64 characters; a longer one is counted under its first 64.
        let username: String = username.chars().take(64).collect();
        Throttle::count(&mut self.users, username, now_ms);
        if let Some(source) = source {
            Throttle::count(&mut self.sources, source, now_ms);
        }
    }

    /// A successful sign-in clears the user's failures (not its address's).
    pub fn succeeded(&mut self, username: &str) {
        self.users.remove(username);
    }

    fn count<K: std::hash::Hash + Eq + Clone>(failures: &mut HashMap<K, Failures>, key: K, now_ms: u64) {
        if failures.len() >= THROTTLED_MAX && !failures.contains_key(&key) {
            failures.retain(|_, f| !f.forgotten(now_ms));
            if failures.len() >= THROTTLED_MAX {
                let quietest = failures.iter().min_by_key(|(_, f)| f.last_ms).map(|(k, _)| k.clone());
                if let Some(quietest) = quietest {
                    failures.remove(&quietest);
                }
            }
        }
        let entry = failures.entry(key).or_insert(Failures { count: 0, last_ms: now_ms });
        if entry.forgotten(now_ms) {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last_ms = now_ms;
        assert!(failures.len() <= THROTTLED_MAX);
    }
}

/// Compare two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery", [7; 16]).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterz"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_eq!(hash_password("short", [7; 16]).unwrap_err().code, ErrorCode::MalformedInput);
    }

    #[test]
    fn sessions_expire_when_idle_and_at_the_end_of_their_lifetime() {
        let mut sessions = Sessions::default();
        let token = "t".repeat(43);
        sessions.create(&token, "operator", Role::Operator, "c".repeat(43), 0);
        // Used every 20 minutes: alive until the lifetime ends.
        let mut now = 0;
        while now + 20 * 60_000 < SESSION_LIFETIME_MS {
            now += 20 * 60_000;
            assert_eq!(sessions.touch(&token, now).unwrap().username, "operator");
        }
        assert_eq!(sessions.touch(&token, SESSION_LIFETIME_MS).unwrap_err().code, ErrorCode::Unauthorized);
        // Idle for 30 minutes: gone.
        sessions.create(&token, "operator", Role::Operator, "c".repeat(43), 0);
        assert_eq!(sessions.touch(&token, SESSION_IDLE_MS).unwrap_err().code, ErrorCode::Unauthorized);
        assert_eq!(sessions.touch("unknown", 0).unwrap_err().code, ErrorCode::Unauthorized);
    }

    #[test]
    fn one_user_signing_in_again_and_again_pushes_out_only_its_own_oldest_sessions() {
        let mut sessions = Sessions::default();
        let token = |n: usize| format!("{n:043}");
        sessions.create(&"a".repeat(43), "aigerim", Role::Operator, "c".repeat(43), 0);
        // Another user signs in more often than the console holds sessions.
        for n in 0..SESSIONS_MAX + 100 {
            sessions.create(&token(n), "mallory", Role::Operator, "c".repeat(43), 1 + n as u64);
        }
        assert_eq!(sessions.touch(&"a".repeat(43), 1).unwrap().username, "aigerim", "pushed out by another user");
        let kept = (0..SESSIONS_MAX + 100).filter(|n| sessions.touch(&token(*n), 1).is_ok()).count();
        assert_eq!(kept, SESSIONS_PER_USER_MAX, "one user's sessions");
        assert!(sessions.touch(&token(SESSIONS_MAX + 99), 1).is_ok(), "the newest kept");
    }

    #[test]
    fn failed_sign_ins_make_the_user_and_then_the_address_wait_longer_each_time() {
        let mut throttle = Throttle::default();
        let here: Option<std::net::IpAddr> = Some("10.0.0.7".parse().unwrap());
        let mut now_ms = 1_000_000;
        for _ in 0..USER_FREE_FAILURES {
            throttle.check("aigerim", here, now_ms).unwrap();
            throttle.failed("aigerim", here, now_ms);
        }
        // Now every failure doubles the wait, up to the lockout.
        let mut waits_ms = Vec::new();
        for _ in 0..14 {
            let refused = throttle.check("aigerim", here, now_ms).unwrap_err();
            assert_eq!(refused.code, ErrorCode::RateLimited);
            let mut wait_ms = 0;
            while throttle.check("aigerim", here, now_ms + wait_ms).is_err() {
                wait_ms += 500;
            }
            waits_ms.push(wait_ms);
            now_ms += wait_ms;
            throttle.failed("aigerim", here, now_ms);
        }
        assert_eq!(&waits_ms[..4], &[1_000, 2_000, 4_000, 8_000]);
        assert_eq!(*waits_ms.last().unwrap(), SIGN_IN_WAIT_MS_MAX, "a lockout of a quarter of an hour");
        // Another user from another address is not slowed; from this address it is, once the
        // address has failed often enough.
        throttle.check("saule", Some("10.0.0.8".parse().unwrap()), now_ms).unwrap();
        for n in 0..SOURCE_FREE_FAILURES {
            throttle.failed(&format!("guess{n}"), Some("10.0.0.9".parse().unwrap()), now_ms);
        }
        assert_eq!(
            throttle.check("saule", Some("10.0.0.9".parse().unwrap()), now_ms).unwrap_err().code,
            ErrorCode::RateLimited
        );
        // A success clears the user's count; a day without failures forgets them.
        throttle.succeeded("aigerim");
        throttle.check("aigerim", None, now_ms).unwrap();
        throttle.failed("bolat", None, 0);
        for _ in 0..10 {
            throttle.failed("bolat", None, 0);
        }
        throttle.failed("bolat", None, FAILURES_FORGOTTEN_MS);
        throttle.check("bolat", None, FAILURES_FORGOTTEN_MS).unwrap();
    }

    #[test]
    fn a_flood_of_made_up_usernames_is_remembered_within_a_bound() {
        let mut throttle = Throttle::default();
        for n in 0..THROTTLED_MAX + 10 {
            throttle.failed(&format!("user{n}"), None, n as u64);
        }
        assert_eq!(throttle.users.len(), THROTTLED_MAX);
        assert!(!throttle.users.contains_key("user0"), "the quietest forgotten");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
