//! The web consoles (issue 5): the NBK operator's, the Treasury's, a bank back office's and a
//! client's, served by the same binary as the REST API.
//!
//! The browser talks only to this crate's routes (`/console/api/...`): each checks the
//! session's role and then calls the network in-process, so a role sees and does only what it
//! may, whatever the page sends. Users live in their own store (`console.db` beside the
//! roles' databases), as a separate console process would keep them. Every sign-in, every
//! action (an intent before it, its outcome after), every refusal and every read of clients'
//! data goes to the platform's audit trail (`dtenge-audit`, shared with the REST API).
//!
//! - [`auth`]: roles, Argon2id password hashes, sessions with expiry, CSRF tokens.
//! - [`web`]: the routes and the embedded pages (no front-end build step).

pub mod auth;
pub mod requests;
pub mod web;

use auth::{hash_password, verify_password, Role, Session, Sessions, Throttle, User};
use dtenge_api::platform::Platform;
use dtenge_api::types::Reconciliation;
use dtenge_core::crypto::Hash32;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_env::Entropy;
use dtenge_store::{Store, Table, WriteBatch};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub const USERS_TABLE: Table = Table("console_users");
/// Where a build before the audit trail (`dtenge-audit`) kept the console's log: moved into the
/// trail at the first start, then emptied.
pub const OLD_AUDIT_TABLE: Table = Table("console_audit");
/// Old entries moved into the trail per commit.
const OLD_AUDIT_MOVED_PER_COMMIT: usize = 1_000;
pub const RECONCILIATIONS_TABLE: Table = Table("console_reconciliations");
/// Reconciliation runs kept (newest); older ones are dropped from the history.
pub const RECONCILIATIONS_MAX: usize = 1_000;
/// The console's database directory, beside the network's.
pub const DATABASE_FILE: &str = "console.db";
/// Largest page of the audit log.
pub const AUDIT_PAGE_MAX: usize = dtenge_audit::PAGE_MAX;
/// Password checks (Argon2id, 19 MiB each) run at once at most: 400 concurrent bad sign-ins
/// grew an older build from 68 MB to 1.4 GB.
pub const PASSWORD_CHECKS_MAX: usize = 4;
/// Sign-ins waiting for a password check at most; more are refused at once (`RATE_LIMITED`).
pub const PASSWORD_CHECKS_WAITING_MAX: usize = 64;
/// How long a sign-in waits for a password check before it is refused.
pub const PASSWORD_CHECK_WAIT_MS_MAX: u64 = 5_000;

/// One line of a build before the audit trail: read once, to move it into the trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct OldAuditEntry {
    seq: u64,
    at_unix_ms: u64,
    username: String,
    role: String,
    action: String,
    target: String,
    detail: String,
    ok: bool,
}

/// The slots in which passwords are checked: at most [`PASSWORD_CHECKS_MAX`] at once, at most
/// [`PASSWORD_CHECKS_WAITING_MAX`] waiting, each at most [`PASSWORD_CHECK_WAIT_MS_MAX`].
#[derive(Default)]
struct PasswordChecks {
    state: Mutex<ChecksState>,
    freed: Condvar,
}

#[derive(Default)]
struct ChecksState {
    running: usize,
    waiting: usize,
    peak: usize,
}

/// A slot taken; given back when dropped.
struct CheckSlot<'a>(&'a PasswordChecks);

impl PasswordChecks {
    fn enter(&self) -> Result<CheckSlot<'_>> {
        let busy = || Error::new(ErrorCode::RateLimited, "too many sign-ins at once: try again in 1 s");
        let mut state = self.state.lock();
        if state.running >= PASSWORD_CHECKS_MAX {
            if state.waiting >= PASSWORD_CHECKS_WAITING_MAX {
                return Err(busy());
            }
            state.waiting += 1;
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PASSWORD_CHECK_WAIT_MS_MAX);
            while state.running >= PASSWORD_CHECKS_MAX {
                if self.freed.wait_until(&mut state, deadline).timed_out() {
                    break;
                }
            }
            assert!(state.waiting > 0 && state.waiting <= PASSWORD_CHECKS_WAITING_MAX);
            state.waiting -= 1;
            if state.running >= PASSWORD_CHECKS_MAX {
                return Err(busy());
            }
        }
        state.running += 1;
        state.peak = state.peak.max(state.running);
        assert!(state.running <= PASSWORD_CHECKS_MAX);
        Ok(CheckSlot(self))
    }
}

impl Drop for CheckSlot<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        assert!(state.running > 0);
        state.running -= 1;
        self.0.freed.notify_one();
    }
}

/// A demo user created on first start, with the password shown once.
#[derive(Clone, Debug, Serialize)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

/// The consoles' state.
pub struct Console {
    pub platform: Arc<Platform>,
    pub(crate) store: Store,
    entropy: Entropy,
    users: RwLock<BTreeMap<String, User>>,
    sessions: Mutex<Sessions>,
    /// Failed sign-ins per user and per address (`auth::Throttle`).
    throttle: Mutex<Throttle>,
    password_checks: PasswordChecks,
    /// What an unknown user's password is checked against, so that a sign-in costs the same
    /// whether the user exists or not (an older build answered an unknown one in 1.8 ms and a
    /// known one in 16.7 ms): the hash of a random password no one knows.
    unknown_user_hash: String,
    /// Reconciliation runs the operator started: (key = big-endian sequence, result).
    reconciliations: Mutex<Vec<(Vec<u8>, Reconciliation)>>,
    /// The Treasury's requests, in id order.
    requests: Mutex<Vec<requests::TreasuryRequest>>,
}

impl Console {
    /// Open the consoles' store under `data_dir`.
    pub fn open(platform: Arc<Platform>, data_dir: &Path, entropy: Entropy) -> Result<Console> {
        let store = Store::open(
            &data_dir.join(DATABASE_FILE),
            &[USERS_TABLE, RECONCILIATIONS_TABLE, requests::REQUESTS_TABLE],
        )?;
        let treasury_requests = store
            .scan_values::<requests::TreasuryRequest>(requests::REQUESTS_TABLE)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let reconciliations = store.scan_values::<Reconciliation>(RECONCILIATIONS_TABLE)?;
        let users = store.scan_values::<User>(USERS_TABLE)?.into_iter().map(|(_, u)| (u.username.clone(), u)).collect();
        move_old_audit(&store, platform.audit())?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&entropy.seed32()[..16]);
        let unknown_user_hash = hash_password(&Hash32(entropy.seed32()).to_hex(), salt)?;
        Ok(Console {
            platform,
            store,
            entropy,
            users: RwLock::new(users),
            sessions: Mutex::new(Sessions::default()),
            throttle: Mutex::new(Throttle::default()),
            password_checks: PasswordChecks::default(),
            unknown_user_hash,
            reconciliations: Mutex::new(reconciliations),
            requests: Mutex::new(treasury_requests),
        })
    }

    fn random_text(&self) -> String {
        Hash32(self.entropy.seed32()).to_hex()
    }

    /// Create (or replace) a user with `password`.
    pub fn put_user(&self, username: &str, display_name: &str, role: Role, password: &str) -> Result<()> {
        ensure!(
            !username.is_empty()
                && username.len() <= 64
                && username.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
            MalformedInput,
            "a username has 1 to 64 letters, digits, '-', '_' or '.'"
        );
        if let Role::BankOfficer { bank } | Role::Client { bank, .. } = &role {
            ensure!(self.platform.node_ids().contains(bank), UnknownAccount, "no node '{bank}'");
        }
        if let Role::Client { bank, client_id } = &role {
            self.platform.account_view(bank, client_id)?;
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&self.entropy.seed32()[..16]);
        let user = User {
            username: username.to_string(),
            display_name: display_name.to_string(),
            role,
            password_hash: hash_password(password, salt)?,
        };
        let mut batch = WriteBatch::new();
        batch.put_value(USERS_TABLE, username.as_bytes(), &user)?;
        self.store.commit(batch)?;
        self.users.write().insert(username.to_string(), user);
        self.sessions.lock().remove_user(username);
        Ok(())
    }

    /// On a console with no users yet, create one demo user per role (a client account at
    /// Steppe Bank included: Dana Serikova, not the Aigerim of the README's curl examples)
    /// with random passwords, and return them to be shown once.
    pub fn ensure_demo_users(&self) -> Result<Vec<DemoUser>> {
        if !self.users.read().is_empty() {
            return Ok(Vec::new());
        }
        let client_id = "950505400019";
        let request = dtenge_api::types::OpenAccount {
            kind: dtenge_node::ClientKind::Individual,
            client_id: client_id.into(),
            name: "Dana Serikova".into(),
            phone: Some("+77015550101".into()),
            public_key: None,
        };
        match self.platform.open_account(None, "steppe", request) {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::DuplicateAccount => {}
            Err(e) => return Err(e),
        }
        let mut demo = vec![
            ("operator".to_string(), "NBK operator", Role::Operator),
            ("treasury".to_string(), "Treasury officer", Role::Treasury),
            ("dana".to_string(), "Dana Serikova", Role::Client { bank: "steppe".into(), client_id: client_id.into() }),
        ];
        for bank in self.platform.node_ids() {
            if bank != dtenge_api::platform::NBK_ID && bank != dtenge_api::platform::TREASURY_ID {
                demo.push((format!("{bank}-officer"), "Bank officer", Role::BankOfficer { bank }));
            }
        }
        let mut created = Vec::with_capacity(demo.len());
        for (username, name, role) in demo {
            let password = self.random_text()[..20].to_string();
            self.put_user(&username, name, role.clone(), &password)?;
            created.push(DemoUser { username, password, role });
        }
        Ok(created)
    }

    /// Sign in: a new session's token and CSRF token, or `UNAUTHORIZED` (the same answer
    /// whether the user or the password is wrong). Audited either way.
    ///
    /// `source` is the client's address: failures are counted per user and per address, and
    /// an attempt too soon after them is refused with `RATE_LIMITED` before any password is
    /// checked (`auth::Throttle`). An unknown user's password is checked as a known one's is.
    pub fn login(&self, username: &str, password: &str, source: Option<IpAddr>) -> Result<(String, Session)> {
        let user = self.users.read().get(username).cloned();
        let role = user.as_ref().map(|u| u.role.console()).unwrap_or("unknown");
        let now_ms = self.platform.now_ms();
        // Checked and counted in one step (the guard ends with the statement), so attempts
        // made at once wait as attempts made one after another do.
        let begun = self.throttle.lock().begin(username, source, now_ms);
        if let Err(refused) = begun {
            if refused.audit {
                self.audit(username, role, "sign_in", username, &refused.error.message, false)?;
            }
            return Err(refused.error);
        }
        let hash = user.as_ref().map_or(self.unknown_user_hash.as_str(), |u| u.password_hash.as_str());
        let checked = match self.check_password(hash, password) {
            Ok(matched) => matched,
            Err(busy) => {
                // Never checked: no failure of the user's or its address's.
                self.throttle.lock().abandoned(username, source);
                return Err(busy);
            }
        };
        let ok = checked && user.is_some();
        if ok {
            self.throttle.lock().succeeded(username, source);
        }
        self.audit(username, role, "sign_in", username, if ok { "" } else { "wrong username or password" }, ok)?;
        let user = match (ok, user) {
            (true, Some(user)) => user,
            _ => return Err(Error::new(ErrorCode::Unauthorized, "wrong username or password")),
        };
        let token = self.random_text();
        let csrf = self.random_text();
        let now = self.platform.now_ms();
        let mut sessions = self.sessions.lock();
        sessions.create(&token, &user.username, user.role.clone(), csrf, now);
        let session = sessions.touch(&token, now)?;
        Ok((token, session))
    }

    /// Whole seconds `username` from `source` must wait before it may try to sign in again.
    pub fn sign_in_wait_s(&self, username: &str, source: Option<IpAddr>) -> u64 {
        self.throttle.lock().wait_s_for(username, source, self.platform.now_ms())
    }

    /// Check `password` against `hash` in one of [`PASSWORD_CHECKS_MAX`] slots.
    fn check_password(&self, hash: &str, password: &str) -> Result<bool> {
        let _slot = self.password_checks.enter()?;
        Ok(verify_password(hash, password))
    }

    /// Most password checks that ran at once since the console opened (a count of checks).
    pub fn password_checks_peak(&self) -> usize {
        self.password_checks.state.lock().peak
    }

    pub fn logout(&self, token: &str) -> Result<()> {
        let session = self.sessions.lock().touch(token, self.platform.now_ms());
        self.sessions.lock().remove(token);
        if let Ok(session) = session {
            self.audit(&session.username, session.role.console(), "sign_out", &session.username, "", true)?;
        }
        Ok(())
    }

    /// The session of `token`, refreshed.
    pub fn session(&self, token: &str) -> Result<Session> {
        self.sessions.lock().touch(token, self.platform.now_ms())
    }

    pub fn user(&self, username: &str) -> Option<User> {
        self.users.read().get(username).cloned()
    }

    /// Write something done at once (a sign-in, a read, a refusal) to the audit trail,
    /// durably, before the caller answers. Actions that change something go through
    /// [`dtenge_audit::AuditLog::audited`] instead: an intent first, the outcome after.
    pub fn audit(&self, username: &str, role: &str, action: &str, target: &str, detail: &str, ok: bool) -> Result<()> {
        let record = dtenge_audit::Record::new(username, role, action, target, detail);
        let outcome = if ok { dtenge_audit::Outcome::Ok } else { dtenge_audit::Outcome::Failed };
        self.platform.audit().record(&record, outcome).map(|_| ())
    }

    /// Keep a reconciliation the operator ran, for its history.
    pub fn record_reconciliation(&self, result: &Reconciliation) -> Result<()> {
        let mut runs = self.reconciliations.lock();
        let seq =
            runs.last().and_then(|(k, _)| k.as_slice().try_into().ok()).map(u64::from_be_bytes).map_or(0, |s| s + 1);
        let key = seq.to_be_bytes().to_vec();
        let mut batch = WriteBatch::new();
        batch.put_value(RECONCILIATIONS_TABLE, key.clone(), result)?;
        if runs.len() >= RECONCILIATIONS_MAX {
            batch.delete(RECONCILIATIONS_TABLE, runs[0].0.clone());
        }
        self.store.commit(batch)?;
        if runs.len() >= RECONCILIATIONS_MAX {
            runs.remove(0);
        }
        runs.push((key, result.clone()));
        Ok(())
    }

    /// The reconciliations the operator ran, newest first.
    pub fn reconciliations(&self) -> Vec<Reconciliation> {
        self.reconciliations.lock().iter().rev().map(|(_, r)| r.clone()).collect()
    }

    /// The audit trail, newest first, read from disk.
    pub fn audit_page(&self, offset: u64, limit: usize) -> Result<dtenge_audit::Page> {
        self.platform.audit().page(offset, limit)
    }
}

/// Move a build's console log from before the audit trail into the trail, oldest first, in
/// bounded chunks: each chunk written to the trail, then deleted from the old table. A start
/// stopped between the two moves that chunk again at the next start; each moved entry names
/// its old number, so a repeat shows as one.
fn move_old_audit(store: &Store, trail: &dtenge_audit::AuditLog) -> Result<()> {
    if !store.has_rows(OLD_AUDIT_TABLE)? {
        return Ok(());
    }
    let rows = store.scan(OLD_AUDIT_TABLE)?;
    for chunk in rows.chunks(OLD_AUDIT_MOVED_PER_COMMIT) {
        let mut records = Vec::with_capacity(chunk.len());
        let mut batch = WriteBatch::new();
        for (key, bytes) in chunk {
            let old: OldAuditEntry = dtenge_store::decode(bytes)?;
            let detail = format!(
                "moved from the console's log of a build before the trail (entry {}, at {} Unix ms): {}",
                old.seq, old.at_unix_ms, old.detail
            );
            let record = dtenge_audit::Record::new(&old.username, &old.role, &old.action, &old.target, &detail);
            let outcome = if old.ok { dtenge_audit::Outcome::Ok } else { dtenge_audit::Outcome::Failed };
            records.push((record, outcome));
            batch.delete(OLD_AUDIT_TABLE, key.clone());
        }
        trail.record_many(&records)?;
        store.commit(batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_env::ManualClock;

    fn platform(dir: &Path) -> Arc<Platform> {
        let clock = Arc::new(ManualClock::new(1_795_000_000_000));
        Arc::new(Platform::open(dir, clock, Entropy::from_seed(3)).unwrap())
    }

    #[test]
    fn users_audit_and_reconciliations_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let demo = {
            let console = Console::open(platform(dir.path()), dir.path(), Entropy::from_seed(4)).unwrap();
            let demo = console.ensure_demo_users().unwrap();
            assert_eq!(demo.len(), 6, "operator, treasury, a client and three bank officers");
            assert!(console.ensure_demo_users().unwrap().is_empty(), "created once");
            let operator = demo.iter().find(|u| u.username == "operator").unwrap();
            console.login("operator", &operator.password, None).unwrap();
            assert_eq!(console.login("operator", "wrong password!", None).unwrap_err().code, ErrorCode::Unauthorized);
            console.record_reconciliation(&console.platform.reconcile()).unwrap();
            demo
        };
        let console = Console::open(platform(dir.path()), dir.path(), Entropy::from_seed(5)).unwrap();
        for user in &demo {
            let (_, session) = console.login(&user.username, &user.password, None).unwrap();
            assert_eq!(session.role, user.role);
        }
        let audit = console.audit_page(0, 100).unwrap();
        assert_eq!(audit.total, 2 + demo.len() as u64, "two sign-ins before the restart, one per user after");
        assert!(audit.entries.iter().any(|e| e.action == "sign_in" && e.outcome == dtenge_audit::Outcome::Failed));
        assert_eq!(console.reconciliations().len(), 1);
        assert!(console.reconciliations()[0].ok);
    }
}
