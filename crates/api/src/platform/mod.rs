//! The platform as the gateway reaches it: the REST routes, the consoles and the demo
//! scenarios call the roles through this, and never their internals. It answers in the
//! gateway's shapes ([`crate::types`]).
//!
//! Today the roles run in this process ([`Assembly`]); when each runs on its own machine
//! (issue 18), the same calls go over the transport to the roles' clients.
//!
//! Idempotency is the roles': a money-moving call hands its key to the role that moves the
//! money (the payer's bank), which answers a repeated key from its own store. A call that
//! moves none is idempotent by its nature (an account claimed twice at the directory is one
//! account).
//!
//! The operations are grouped as the REST API groups them, one file each.

mod accounts;
mod answers;
mod cards;
mod central;
mod checkpoint;
mod holding;
mod notifications;
mod operator;
mod pages;
mod payments;
mod programmed;

use dtenge_assembly::{Assembly, BankHandle, BankSpec, Config, RoleKeys};
use dtenge_bank::IdemKey;
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_env::{Clock, Entropy};
use dtenge_node::NodeKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use accounts::{
    accounts_page, history_entries, history_line, plan_account, view as account_view, ACCOUNTS_PAGE_DEFAULT,
    ACCOUNTS_PAGE_MAX, HISTORY_PAGE_MAX, NAME_LEN_MAX, OPEN_ACCOUNTS_MAX,
};
pub use answers::{Answers, KeyInFlight, IDEM_KEY_LEN_MAX};
pub use cards::{buyer_of, merchant_of, program_of, purchase_of, role_mode};
pub use central::liquidity;
pub use holding::{
    confirm_occurrence, event_full_view, event_page, event_registration, event_view, hold_receipt, hold_views,
    occurrence_receipt, occurrence_terms, released, EVENT_VALIDITY_MS_MAX, PAGE_LIMIT_MAX,
};
pub use notifications::{notification_page, NOTICES_KEPT_MAX};
pub use operator::{block_reason, calendar_year, day_view, decision_applied, nbk_operation, REASON_LEN_MAX};
pub use pages::{check_list_limit, page_of, LIST_PAGE_DEFAULT, LIST_PAGE_MAX};
pub use payments::{applied_at, check_reference, Staged, Submitted, REFERENCE_LEN_MAX, REGISTRY_LINES_MAX};
pub use programmed::{
    at, check_split, contract_matches, contract_terms, invoice_matches, marking_page, registered_again,
    MARKINGS_PAGE_MAX, SPLIT_LINES_MAX,
};

/// The NBK's node id: its ABS and registry, where emissions and redemptions are recorded.
pub const NBK_ID: &str = "nbk";
/// The Treasury's node id.
pub const TREASURY_ID: &str = "treasury";
/// How long a call waits for its role's answer before it reports `REQUEST_IN_PROGRESS` (the
/// operation may still complete: the client asks again with the same idempotency key).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The file in which a build before issue 19 kept, in the clear, the seed every role's key
/// derived from: a data directory holding it is refused ([`Platform::open_with_keys`]).
pub const OLD_ROLE_KEYS_FILE: &str = "role-keys.seed";
/// The gateway's store, in the data directory: its memo of answers by idempotency key.
const GATEWAY_DIR: &str = "gateway.db";
/// The vault's label of the key that signs the audit trail (`dtenge audit verify` checks it).
pub const AUDIT_KEY_LABEL: &str = "audit";
/// The file name, in the data directory, of the old one-process store (the `dtenge-network`
/// crate's, deleted since): what `dtenge up` wrote before it ran the roles. The roles do not
/// read it, so [`Platform::open`] refuses a data directory that holds one.
pub const DATABASE_FILE: &str = "dtenge.db";

/// An idempotency key with the fingerprint of the request it was first used with.
#[derive(Clone, Debug)]
pub struct Idem {
    pub key: String,
    pub fingerprint: Hash32,
}

/// Whether `dir` holds a platform's data: its roles' stores and the vault's file of its keys.
pub fn holds_a_platform(dir: &Path) -> bool {
    let keys = [dtenge_keys::store::STORE_FILE, dtenge_keys::hsm::WRAPPED_FILE];
    dir.join("notary").is_dir() && keys.iter().any(|file| dir.join(file).is_file())
}

/// The network's participants as a gateway calls them.
pub struct Platform {
    assembly: Assembly,
    /// The data directory (`GET /metrics` states its size on disk).
    dir: std::path::PathBuf,
    clock: Arc<dyn Clock>,
    entropy: Entropy,
    /// The manual clock's advances by idempotency key (`holding.rs`): in memory, as the manual
    /// clock itself is.
    advances: holding::Advances,
    answers: answers::Answers,
    /// Who calls the REST API (`crate::access`).
    gate: crate::access::Gate,
    /// The gateway's counters (`GET /metrics`).
    metrics: crate::metrics::Metrics,
    /// Where the keys are: the roles' and the gateway's.
    vault: dtenge_keys::Vault,
    /// What the consoles' users and the REST API's callers did (`dtenge-audit`), signed with
    /// the vault's `audit` key.
    audit: Arc<dtenge_audit::AuditLog>,
}

impl Platform {
    /// Open (or create) the platform's roles under `dir`, a sandbox, with the keys the
    /// environment names (`dtenge_keys::KeyConfig::from_env`).
    pub fn open(dir: &Path, clock: Arc<dyn Clock>, entropy: Entropy) -> Result<Platform> {
        let keys = dtenge_keys::KeyConfig::from_env(true, &entropy)?;
        Platform::open_with_keys(dir, clock, entropy, &keys)
    }

    /// Open (or create) the platform's roles under `dir`: the notary, central, the directory,
    /// the oracle, three banks and the Treasury, their keys where `keys` says (an HSM or the
    /// encrypted key store, [`Platform::keys`] says which).
    ///
    /// A data directory of the one-process network is refused (`STORAGE_FAILURE`): its ledger
    /// is in a store the roles do not read, and the platform would start beside it with every
    /// account and token missing. So is one of a build before issue 19, which kept every key
    /// in the clear.
    pub fn open_with_keys(
        dir: &Path,
        clock: Arc<dyn Clock>,
        entropy: Entropy,
        keys: &dtenge_keys::KeyConfig,
    ) -> Result<Platform> {
        let old_keys = dir.join(OLD_ROLE_KEYS_FILE);
        if old_keys.exists() {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!(
                    "{} holds, in the clear, the seed of every role's key of a build before the keys moved to a \
                     vault: start the platform on a fresh data directory",
                    old_keys.display()
                ),
            ));
        }
        let network_store = dir.join(DATABASE_FILE);
        if network_store.exists() {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!(
                    "{} holds the one-process network's ledger, which the roles do not read: \
                     start the platform on a fresh data directory",
                    network_store.display()
                ),
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("{}: {e}", dir.display())))?;
        let vault = dtenge_keys::Vault::open(dir, keys)?;
        let bank = |id: &str, name: &str, kind| BankSpec { id: id.into(), name: name.into(), kind };
        let banks = vec![
            bank("steppe", "Steppe Bank", NodeKind::Bank),
            bank("tulpar", "Tulpar Bank", NodeKind::Bank),
            bank("sapa", "Sapa Bank", NodeKind::Bank),
            bank(TREASURY_ID, "Treasury", NodeKind::Treasury),
        ];
        let config = Config { keys: RoleKeys::from_vault(&vault, &banks, &entropy)?, banks };
        let gateway_key = SecretKey::from_seed(vault.secret("gateway", &entropy)?);
        let memo_clock = clock.clone();
        let answers = answers::Answers::open(
            &dir.join(GATEWAY_DIR),
            Arc::new(move || memo_clock.now_ms()),
            dtenge_store::retention::IDEMPOTENCY_RETENTION_MS_DEFAULT,
        )?;
        let nodes: Vec<String> = config.banks.iter().map(|b| b.id.clone()).collect();
        let gate = crate::access::open_sandbox(dir, &entropy, &nodes, gateway_key)?;
        let audit_clock = clock.clone();
        let audit = Arc::new(dtenge_audit::AuditLog::open(
            &dir.join(dtenge_audit::DATABASE_DIR),
            vault.node_key(AUDIT_KEY_LABEL, &entropy)?,
            Arc::new(move || audit_clock.now_ms()),
        )?);
        let now = clock.clone();
        let assembly = Assembly::start(dir, &config, Arc::new(move || now.now_ms()))?;
        Ok(Platform {
            assembly,
            dir: dir.to_path_buf(),
            clock,
            entropy,
            advances: holding::Advances::default(),
            answers,
            gate,
            metrics: Default::default(),
            vault,
            audit,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the roles' keys are, in a line for the operator (`dtenge up` prints it).
    pub fn keys(&self) -> String {
        self.vault.describe()
    }

    /// The key the gateway serves HTTPS with (`dtenge up --tls`): the vault's.
    pub fn tls_key(&self) -> Result<SecretKey> {
        Ok(SecretKey::from_seed(self.vault.secret("tls", &self.entropy)?))
    }

    /// The audit trail of the consoles and the REST API.
    pub fn audit(&self) -> &Arc<dtenge_audit::AuditLog> {
        &self.audit
    }

    /// The gateway's counters.
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Who calls the REST API: grants access tokens and authenticates requests.
    pub fn authenticator(&self) -> &dtenge_auth::Authenticator {
        self.gate.authenticator()
    }

    /// The roles themselves, for the operator's tools and the tests.
    pub fn assembly(&self) -> &Assembly {
        &self.assembly
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Every node a client can have an account at: the banks and the Treasury.
    pub fn node_ids(&self) -> Vec<String> {
        self.assembly.banks().iter().map(|b| b.id().to_string()).collect()
    }

    /// The bank (or Treasury) `node_id`, or `UNKNOWN_ACCOUNT`.
    pub(crate) fn bank(&self, node_id: &str) -> Result<&BankHandle> {
        self.assembly
            .bank(node_id)
            .ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no bank or Treasury '{node_id}'")))
    }

    /// The bank (or Treasury) `node_id`, refused `BANK_BLOCKED` while the NBK operator blocks
    /// it: checked first, as the network's `active_participant` did, so that a blocked bank's
    /// operation is refused for that whatever else is wrong with it.
    pub(crate) fn active_bank(&self, node_id: &str) -> Result<&BankHandle> {
        let bank = self.bank(node_id)?;
        self.ensure_not_blocked(node_id)?;
        Ok(bank)
    }

    /// `BANK_BLOCKED` while the NBK operator blocks `node_id` (central's decision, which the
    /// notary and every bank applied before the block was answered).
    pub(crate) fn ensure_not_blocked(&self, node_id: &str) -> Result<()> {
        match self.assembly.central().blocked_reason(node_id) {
            Some(reason) => Err(Error::new(
                ErrorCode::BankBlocked,
                format!("node '{node_id}' is blocked by the NBK operator: {reason}"),
            )),
            None => Ok(()),
        }
    }

    /// A new custodial key, from the platform's entropy.
    pub(crate) fn new_custodial_key(&self) -> SecretKey {
        SecretKey::from_seed(self.entropy.seed32())
    }

    /// Run `op` at most once per idempotency key, as every face calls a mutating operation:
    /// a retry gets the first answer, a key reused with another request is refused
    /// `IDEMPOTENCY_KEY_REUSED`, a key being answered is `REQUEST_IN_PROGRESS` (see
    /// `answers.rs` for why the roles stay the authority).
    pub fn once<T, F>(&self, idem: Option<Idem>, op: F) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnOnce(Option<&Idem>) -> Result<T>,
    {
        self.answers.once(idem, op)
    }

    pub fn shutdown(self) {
        self.assembly.shutdown();
    }
}

/// The gateway's idempotency key as the roles take it.
pub fn idem_key(idem: Option<&Idem>) -> Option<IdemKey> {
    idem.map(|i| IdemKey { key: i.key.clone(), fingerprint: i.fingerprint })
}

/// [`idem_key`], refused `MALFORMED_INPUT` unless it has 1 to [`IDEM_KEY_LEN_MAX`] bytes: checked
/// first, as the network's `once` did, before anything else of the request.
pub(crate) fn checked_key(idem: Option<&Idem>) -> Result<Option<IdemKey>> {
    if let Some(idem) = idem {
        if idem.key.is_empty() || idem.key.len() > IDEM_KEY_LEN_MAX {
            return Err(Error::malformed(format!("an idempotency key has 1 to {IDEM_KEY_LEN_MAX} characters")));
        }
    }
    Ok(idem_key(idem))
}

/// Wait for a role's answer, at most [`ANSWER_WAIT`].
pub(crate) fn wait<T>(answer: &impl dtenge_sync::RecvTimeout<Result<T>>) -> Result<T> {
    match answer.recv_timeout(ANSWER_WAIT) {
        Ok(result) => result,
        Err(dtenge_sync::RecvTimeoutError::Timeout) => Err(unanswered(true)),
        Err(dtenge_sync::RecvTimeoutError::Disconnected) => Err(unanswered(false)),
    }
}

/// A role's answer that did not come: not yet (`in_time` ran out), or never (the role stopped).
pub(crate) fn unanswered(in_time: bool) -> Error {
    if in_time {
        Error::new(
            ErrorCode::RequestInProgress,
            "the network has not answered yet; ask again with the same idempotency key",
        )
    } else {
        Error::new(ErrorCode::StorageFailure, "the role stopped before it answered; ask again")
    }
}

/// Take `idem`'s key as in flight until the guard is dropped, for an operation whose role
/// keeps its key and answers a repeat from its own store (transfers, client-signed
/// transactions): no memo is written, which would cost the hot path a second durable commit
/// per payment. The gateway's task holds the guard across its awaits.
impl Platform {
    pub fn enter_key(&self, idem: &Idem) -> Result<answers::KeyInFlight> {
        self.answers.enter(idem)
    }
}
