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
    /// The `count` at which a refusal was last written to the audit log: one line per wait,
    /// not one per attempt refused.
    audited_at_count: u32,
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

/// A sign-in refused before its password was checked.
#[derive(Debug)]
pub struct Refused {
    pub error: Error,
    /// Whole seconds to wait (at least 1).
    pub wait_s: u64,
    /// The first refusal of this wait: worth an audit line (the others are not, or a flood of
    /// refusals would fill the audit log).
    pub audit: bool,
}

/// Back-off and lockout of sign-ins, per user and per source address. Pure: the time comes in.
///
/// After [`USER_FREE_FAILURES`] failures of a user (or [`SOURCE_FREE_FAILURES`] of an
/// address; an IPv6 address counts by its /64, what one subscriber gets), each next attempt
/// must wait 1 s, then 2 s, 4 s, ... up to a quarter of an hour, counted from the last failure:
/// about a dozen guesses in the first twenty minutes, then four an hour. An attempt is counted
/// as a failure when it begins ([`Throttle::begin`]), so attempts made at once wait as
/// attempts made one after the other do, and refused before its password is checked, so
/// guessing costs the console nothing; a success takes its count back and clears the user's.
/// Unknown usernames are counted as known ones are, so the answers do not tell them apart.
///
/// The price of a lockout per user: anyone can keep a user waiting by failing as that user.
/// Its password still works after the wait, and an operator sees the failures in the audit log.
#[derive(Default)]
pub struct Throttle {
    users: HashMap<String, Failures>,
    sources: HashMap<std::net::IpAddr, Failures>,
}

impl Throttle {
    /// Begin a sign-in of `username` from `source` at `now_ms`: refused when either must wait,
    /// else counted as a failure until [`Throttle::succeeded`] takes it back.
    pub fn begin(
        &mut self,
        username: &str,
        source: Option<std::net::IpAddr>,
        now_ms: u64,
    ) -> std::result::Result<(), Refused> {
        let (user, source) = (user_key(username), source.map(source_key));
        let wait_s = self.wait_s(&user, source, now_ms);
        if wait_s > 0 {
            let mut audit = false;
            let mut mark = |failures: Option<&mut Failures>| {
                if let Some(f) = failures {
                    if f.audited_at_count != f.count {
                        f.audited_at_count = f.count;
                        audit = true;
                    }
                }
            };
            mark(self.users.get_mut(&user));
            mark(source.and_then(|s| self.sources.get_mut(&s)));
            let error =
                Error::new(ErrorCode::RateLimited, format!("too many failed sign-ins: try again in {wait_s} s"));
            return Err(Refused { error, wait_s, audit });
        }
        // Every key remembered is kept waiting: fail closed rather than forget one.
        let full = || Refused {
            error: Error::new(ErrorCode::RateLimited, "too many failed sign-ins at once: try again in 60 s"),
            wait_s: 60,
            audit: false,
        };
        if !Throttle::count(&mut self.users, user.clone(), USER_FREE_FAILURES, now_ms) {
            return Err(full());
        }
        if let Some(source) = source {
            if !Throttle::count(&mut self.sources, source, SOURCE_FREE_FAILURES, now_ms) {
                if let Some(f) = self.users.get_mut(&user) {
                    f.count = f.count.saturating_sub(1);
                }
                return Err(full());
            }
        }
        Ok(())
    }

    /// The sign-in begun for `username` from `source` ended before its password was checked
    /// (the checks were busy): its count is taken back, it was no failure.
    pub fn abandoned(&mut self, username: &str, source: Option<std::net::IpAddr>) {
        if let Some(f) = self.users.get_mut(&user_key(username)) {
            f.count = f.count.saturating_sub(1);
        }
        if let Some(f) = source.and_then(|s| self.sources.get_mut(&source_key(s))) {
            f.count = f.count.saturating_sub(1);
        }
    }

    /// The sign-in begun for `username` from `source` succeeded: the user's failures are
    /// cleared and the address's count of this attempt taken back.
    pub fn succeeded(&mut self, username: &str, source: Option<std::net::IpAddr>) {
        self.users.remove(&user_key(username));
        if let Some(f) = source.and_then(|s| self.sources.get_mut(&source_key(s))) {
            f.count = f.count.saturating_sub(1);
        }
    }

    /// Whole seconds `username` from `source` must wait at `now_ms` (0: none).
    pub fn wait_s_for(&self, username: &str, source: Option<std::net::IpAddr>, now_ms: u64) -> u64 {
        self.wait_s(&user_key(username), source.map(source_key), now_ms)
    }

    fn wait_s(&self, user: &str, source: Option<std::net::IpAddr>, now_ms: u64) -> u64 {
        let free = |f: &&Failures| !f.forgotten(now_ms);
        let user = self.users.get(user).filter(free).map_or(0, |f| f.next_attempt_ms(USER_FREE_FAILURES));
        let from = source
            .and_then(|s| self.sources.get(&s))
            .filter(free)
            .map_or(0, |f| f.next_attempt_ms(SOURCE_FREE_FAILURES));
        user.max(from).saturating_sub(now_ms).div_ceil(1_000)
    }

    /// Count one failure under `key` (`free` failures before a wait); false when it cannot be
    /// remembered. At [`THROTTLED_MAX`] keys, the forgotten ones go, then the one with the
    /// fewest failures (the quietest of those) that is not kept waiting, which a flood of new
    /// names would otherwise flush out; when every one is kept waiting, none goes.
    fn count<K: std::hash::Hash + Eq + Clone>(
        failures: &mut HashMap<K, Failures>,
        key: K,
        free: u32,
        now_ms: u64,
    ) -> bool {
        if failures.len() >= THROTTLED_MAX && !failures.contains_key(&key) {
            failures.retain(|_, f| !f.forgotten(now_ms));
            if failures.len() >= THROTTLED_MAX {
                let least = failures
                    .iter()
                    .filter(|(_, f)| f.next_attempt_ms(free) <= now_ms)
                    .min_by_key(|(_, f)| (f.count, f.last_ms))
                    .map(|(k, _)| k.clone());
                match least {
                    Some(least) => {
                        failures.remove(&least);
                    }
                    None => return false,
                }
            }
        }
        let entry = failures.entry(key).or_insert(Failures { count: 0, last_ms: now_ms, audited_at_count: 0 });
        if entry.forgotten(now_ms) {
            *entry = Failures { count: 0, last_ms: now_ms, audited_at_count: 0 };
        }
        entry.count = entry.count.saturating_add(1);
        entry.last_ms = now_ms;
        assert!(failures.len() <= THROTTLED_MAX);
        true
    }
}

/// A username as the throttle counts it: its first 64 characters (no username is longer).
fn user_key(username: &str) -> String {
    username.chars().take(64).collect()
}

/// An address as the throttle counts it: IPv4 whole (also when it came mapped into IPv6, as
/// a dual-stack listener gives it), IPv6 by its /64.
fn source_key(source: std::net::IpAddr) -> std::net::IpAddr {
    match source.to_canonical() {
        v4 @ std::net::IpAddr::V4(_) => v4,
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
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

    /// A failed attempt: begun, never succeeded.
    fn fail(throttle: &mut Throttle, user: &str, source: Option<std::net::IpAddr>, now_ms: u64) {
        throttle.begin(user, source, now_ms).unwrap();
    }

    #[test]
    fn failed_sign_ins_make_the_user_and_then_the_address_wait_longer_each_time() {
        let mut throttle = Throttle::default();
        let here: Option<std::net::IpAddr> = Some("10.0.0.7".parse().unwrap());
        let mut now_ms = 1_000_000;
        for _ in 0..USER_FREE_FAILURES {
            fail(&mut throttle, "aigerim", here, now_ms);
        }
        // Now every failure doubles the wait, up to the lockout; one refusal per wait audited.
        let mut waits_ms = Vec::new();
        for _ in 0..14 {
            let refused = throttle.begin("aigerim", here, now_ms).unwrap_err();
            assert_eq!(refused.error.code, ErrorCode::RateLimited);
            assert!(refused.audit, "the first refusal of a wait is audited");
            assert!(!throttle.begin("aigerim", here, now_ms).unwrap_err().audit, "the next ones are not");
            let wait_ms = refused.wait_s * 1_000;
            assert_eq!(throttle.wait_s_for("aigerim", here, now_ms + wait_ms - 1), 1);
            waits_ms.push(wait_ms);
            now_ms += wait_ms;
            fail(&mut throttle, "aigerim", here, now_ms);
        }
        assert_eq!(&waits_ms[..4], &[1_000, 2_000, 4_000, 8_000]);
        assert_eq!(*waits_ms.last().unwrap(), SIGN_IN_WAIT_MS_MAX, "a lockout of a quarter of an hour");
        // Another user from another address is not slowed; from an address that failed often
        // enough it is, and an IPv6 address counts by its /64.
        throttle.begin("saule", Some("10.0.0.8".parse().unwrap()), now_ms).unwrap();
        throttle.succeeded("saule", Some("10.0.0.8".parse().unwrap()));
        for n in 0..SOURCE_FREE_FAILURES {
            fail(&mut throttle, &format!("guess{n}"), Some(format!("2001:db8::{n:x}").parse().unwrap()), now_ms);
        }
        let refused = throttle.begin("saule", Some("2001:db8::ffff".parse().unwrap()), now_ms).unwrap_err();
        assert_eq!(refused.error.code, ErrorCode::RateLimited);
        // A success clears the user's count and takes back its address's; a day without
        // failures forgets them.
        throttle.succeeded("aigerim", here);
        throttle.begin("aigerim", None, now_ms).unwrap();
        throttle.users.insert("bolat".into(), Failures { count: 11, last_ms: 0, audited_at_count: 0 });
        assert!(throttle.begin("bolat", None, 1_000).is_err(), "still waiting");
        throttle.begin("bolat", None, FAILURES_FORGOTTEN_MS).unwrap();
        // Many successes from one address (an office's NAT) never make it wait.
        for _ in 0..100 {
            throttle.begin("saule", Some("10.0.0.9".parse().unwrap()), now_ms).unwrap();
            throttle.succeeded("saule", Some("10.0.0.9".parse().unwrap()));
        }
    }

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_counts_as_itself_and_a_busy_refusal_is_no_failure() {
        let mut throttle = Throttle::default();
        for n in 0..SOURCE_FREE_FAILURES {
            fail(&mut throttle, &format!("guess{n}"), Some(format!("::ffff:10.0.0.{n}").parse().unwrap()), 5);
        }
        // Twenty addresses, not one: another IPv4 client is not slowed.
        throttle.begin("saule", Some("::ffff:10.0.1.1".parse().unwrap()), 5).unwrap();
        // Attempts that never had their password checked do not count.
        for _ in 0..10 {
            throttle.begin("aigerim", None, 5).unwrap();
            throttle.abandoned("aigerim", None);
        }
        throttle.begin("aigerim", None, 5).unwrap();
    }

    #[test]
    fn attempts_made_at_once_wait_as_attempts_made_one_after_another() {
        let mut throttle = Throttle::default();
        // Begun together, none finished yet: the fourth must wait already.
        for _ in 0..USER_FREE_FAILURES {
            throttle.begin("aigerim", None, 5).unwrap();
        }
        assert_eq!(throttle.begin("aigerim", None, 5).unwrap_err().error.code, ErrorCode::RateLimited);
        // A name longer than any username counts under the same key throughout.
        let long = "x".repeat(100);
        for _ in 0..USER_FREE_FAILURES {
            throttle.begin(&long, None, 5).unwrap();
        }
        assert!(throttle.begin(&long, None, 5).is_err());
    }

    #[test]
    fn a_flood_of_made_up_usernames_never_flushes_out_a_user_kept_waiting() {
        let mut throttle = Throttle::default();
        throttle
            .users
            .insert("aigerim".into(), Failures { count: USER_FREE_FAILURES + 5, last_ms: 0, audited_at_count: 0 });
        for n in 0..THROTTLED_MAX + 10 {
            fail(&mut throttle, &format!("user{n}"), None, 1 + n as u64);
        }
        assert_eq!(throttle.users.len(), THROTTLED_MAX);
        assert!(throttle.users.contains_key("aigerim"), "the user kept waiting stays");
        assert!(throttle.begin("aigerim", None, 1).is_err());
        // When every one remembered is kept waiting, a new name is refused, not counted.
        let mut full = Throttle::default();
        for n in 0..THROTTLED_MAX {
            full.users
                .insert(format!("w{n}"), Failures { count: USER_FREE_FAILURES + 1, last_ms: 0, audited_at_count: 0 });
        }
        assert_eq!(full.begin("newcomer", None, 1).unwrap_err().error.code, ErrorCode::RateLimited);
        assert_eq!(full.users.len(), THROTTLED_MAX);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
