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
    /// Start a session for `username` under `token` (random, from the caller).
    pub fn create(&mut self, token: &str, username: &str, role: Role, csrf: String, now_ms: u64) {
        debug_assert!(token.len() >= 32 && csrf.len() >= 32);
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
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
