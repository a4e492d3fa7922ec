//! Where the platform's keys live.
//!
//! Two kinds of key, two treatments:
//! - **Node keys** (the NBK's, the notary's, the oracle's, each bank's attestation key) sign
//!   for a participant. With an HSM configured they are generated inside it, marked sensitive
//!   and not extractable, and every signature is made there through PKCS#11 ([`hsm`]). Without
//!   one (a laptop, the sandbox) they are kept in an encrypted key store ([`store`]), opened
//!   with a passphrase that is not in the data directory.
//! - **Secrets**: 32 bytes the platform needs in memory: a bank's data-encryption key, which
//!   seals its custodial clients' keys (envelope encryption: millions of client keys cannot each
//!   live in an HSM, `dtenge_node::Custody`), and the seed of a bank's own account. With an HSM
//!   they are kept wrapped (AES-256-GCM) under a key-encryption key that never leaves it;
//!   without one, in the encrypted key store.
//!
//! Nothing here writes a key in the clear: the data directory holds the key store's
//! ciphertext or the wrapped secrets, and a test scans every file of a platform's data
//! directory for every key it knows (`crates/cli/tests/operations.rs`).

pub mod hsm;
pub mod softhsm;
pub mod store;

use dtenge_core::crypto::{NodeKey, SecretKey};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_env::Entropy;
use std::path::{Path, PathBuf};

/// The environment variable holding the key store's passphrase.
pub const PASSPHRASE_ENV: &str = "DTENGE_KEY_PASSPHRASE";
/// The environment variable naming the HSM's PKCS#11 module: set, the node keys are the HSM's.
pub const HSM_MODULE_ENV: &str = "DTENGE_HSM_MODULE";
/// The environment variable naming the HSM's token (its label; `dtenge` when not set).
pub const HSM_TOKEN_ENV: &str = "DTENGE_HSM_TOKEN";
/// The environment variable holding the HSM user's PIN.
pub const HSM_PIN_ENV: &str = "DTENGE_HSM_PIN";
/// The token label used when [`HSM_TOKEN_ENV`] is not set.
pub const HSM_TOKEN_DEFAULT: &str = "dtenge";
/// The file, in the user's configuration directory, holding the sandbox's passphrase when
/// [`PASSPHRASE_ENV`] is not set.
pub const SANDBOX_PASSPHRASE_FILE: &str = "sandbox-passphrase";

/// How to reach the keys.
#[derive(Clone)]
pub enum KeyConfig {
    /// An HSM through its PKCS#11 module.
    Hsm(hsm::HsmConfig),
    /// The encrypted key store in the data directory, under `passphrase`; `from` says where
    /// the passphrase came from (what `up` prints).
    Store { passphrase: String, from: String },
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyConfig::Hsm(config) => write!(f, "Hsm({:?}, token {:?})", config.module, config.token),
            KeyConfig::Store { from, .. } => write!(f, "Store(passphrase from {from})"),
        }
    }
}

impl KeyConfig {
    /// The keys as the environment says, the one way every process is told:
    /// 1. [`HSM_MODULE_ENV`] set: the HSM's token [`HSM_TOKEN_ENV`], logged in with
    ///    [`HSM_PIN_ENV`];
    /// 2. else [`PASSPHRASE_ENV`] set: the encrypted key store under that passphrase;
    /// 3. else, in a sandbox only, the key store under a passphrase drawn once per user and
    ///    kept in the user's configuration directory (`$XDG_CONFIG_HOME/dtenge` or
    ///    `~/.config/dtenge`, mode 0600), outside every data directory, so that a copy of a
    ///    data directory alone opens no key. A production node without 1 or 2 is refused.
    pub fn from_env(sandbox: bool, entropy: &Entropy) -> Result<KeyConfig> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(module) = var(HSM_MODULE_ENV) {
            let pin = var(HSM_PIN_ENV).ok_or_else(|| {
                Error::new(
                    ErrorCode::MalformedInput,
                    format!("${HSM_MODULE_ENV} is set: the HSM's PIN is ${HSM_PIN_ENV}"),
                )
            })?;
            let token = var(HSM_TOKEN_ENV).unwrap_or_else(|| HSM_TOKEN_DEFAULT.to_string());
            return Ok(KeyConfig::Hsm(hsm::HsmConfig { module: module.into(), token, pin }));
        }
        if let Some(passphrase) = var(PASSPHRASE_ENV) {
            return Ok(KeyConfig::Store { passphrase, from: format!("${PASSPHRASE_ENV}") });
        }
        if !sandbox {
            return Err(Error::new(
                ErrorCode::MalformedInput,
                format!(
                    "a production node keeps its keys in an HSM (${HSM_MODULE_ENV}, ${HSM_TOKEN_ENV}, ${HSM_PIN_ENV}) \
                     or in the encrypted key store under ${PASSPHRASE_ENV}: neither is set"
                ),
            ));
        }
        let dir = config_dir().ok_or_else(|| {
            Error::new(
                ErrorCode::StorageFailure,
                format!("no HOME or XDG_CONFIG_HOME to keep the sandbox's key passphrase in: set {PASSPHRASE_ENV}"),
            )
        })?;
        let path = dir.join(SANDBOX_PASSPHRASE_FILE);
        let passphrase = store::read_or_create_passphrase(&path, entropy)?;
        Ok(KeyConfig::Store { passphrase, from: path.display().to_string() })
    }
}

fn config_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config"));
    xdg.or(home).map(|dir| dir.join("dtenge"))
}

/// The keys of one data directory, held by one process at a time.
pub struct Vault {
    kind: Kind,
    /// The exclusive lock on `keys.lock` while the vault is open: the files are rewritten
    /// whole, so a second writer (`dtenge key` beside a running node) would lose entries.
    _lock: std::fs::File,
}

/// The lock file of a data directory's vault.
pub const LOCK_FILE: &str = "keys.lock";

enum Kind {
    Hsm(hsm::Hsm),
    /// The key store, and where its passphrase came from.
    Store(Box<store::KeyStore>, String),
}

impl Vault {
    /// Open the keys of the data directory `dir` as `config` says: the HSM's token (and the
    /// secrets wrapped under its key-encryption key, `dir/keys.wrapped`), or the key store
    /// `dir/keys.store`, created on the first start.
    ///
    /// Refused while another process holds the vault open (a running node or platform).
    pub fn open(dir: &Path, config: &KeyConfig) -> Result<Vault> {
        let lock = lock(dir)?;
        let kind = match config {
            KeyConfig::Hsm(config) => Kind::Hsm(hsm::Hsm::open(dir, config)?),
            KeyConfig::Store { passphrase, from } => {
                Kind::Store(Box::new(store::KeyStore::open(dir, passphrase)?), from.clone())
            }
        };
        Ok(Vault { kind, _lock: lock })
    }

    /// The node key named `label`, generated on first use (in the HSM, or from `entropy` into
    /// the key store).
    pub fn node_key(&self, label: &str, entropy: &Entropy) -> Result<NodeKey> {
        check_label(label)?;
        match &self.kind {
            Kind::Hsm(hsm) => hsm.node_key(label),
            Kind::Store(store, _) => Ok(SecretKey::from_seed(store.secret(&format!("node:{label}"), entropy)?).into()),
        }
    }

    /// Replace the node key `label` with a new one (generated in the HSM, or drawn from
    /// `entropy` into the key store); the old one is kept under `<label>@retired-<n>`, signing
    /// nothing more. The procedure around it (certify the new key, tell the peers) is in
    /// docs/OPERATIONS.md, "Rotating a node key".
    pub fn rotate_node_key(&self, label: &str, entropy: &Entropy) -> Result<NodeKey> {
        check_label(label)?;
        match &self.kind {
            Kind::Hsm(hsm) => hsm.rotate_node_key(label),
            Kind::Store(store, _) => {
                let seed = store.rotate(&format!("node:{label}"), entropy)?;
                Ok(SecretKey::from_seed(seed).into())
            }
        }
    }

    /// Put `key` in the vault as the node key `label`: a key several participants share (the
    /// notary's, which every replica signs certificates with) is made once and imported into
    /// each one's vault; the operator destroys the file once every vault has it. Importing the key a label holds
    /// already changes nothing; another key under a taken label is refused.
    pub fn import_node_key(&self, label: &str, key: &SecretKey) -> Result<NodeKey> {
        check_label(label)?;
        match &self.kind {
            Kind::Hsm(hsm) => hsm.import_node_key(label, key),
            Kind::Store(store, _) => {
                let seed = store.import(&format!("node:{label}"), key.seed())?;
                Ok(SecretKey::from_seed(seed).into())
            }
        }
    }

    /// Keep `secret` as the secret `label` (a key made before the vault, a bank's own account
    /// key among them): importing the one a label holds changes nothing; another is refused.
    pub fn import_secret(&self, label: &str, secret: [u8; 32]) -> Result<[u8; 32]> {
        check_label(label)?;
        match &self.kind {
            Kind::Hsm(hsm) => hsm.import_secret(label, secret),
            Kind::Store(store, _) => store.import(&format!("secret:{label}"), secret),
        }
    }

    /// The 32-byte secret named `label`, drawn on first use (from the HSM's generator, or from
    /// `entropy`).
    pub fn secret(&self, label: &str, entropy: &Entropy) -> Result<[u8; 32]> {
        check_label(label)?;
        match &self.kind {
            Kind::Hsm(hsm) => hsm.secret(label),
            Kind::Store(store, _) => store.secret(&format!("secret:{label}"), entropy),
        }
    }

    /// Where the keys are, in a line for the operator.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Hsm(hsm) => hsm.describe(),
            Kind::Store(store, from) => format!(
                "NO HSM: {}, its passphrase from {from} (${HSM_MODULE_ENV} names an HSM's PKCS#11 module)",
                store.describe()
            ),
        }
    }

    pub fn is_hsm(&self) -> bool {
        matches!(self.kind, Kind::Hsm(_))
    }

    /// The label in the HSM's token of this vault's object `label` (`None` without an HSM).
    pub fn hsm_object_label(&self, label: &str) -> Option<String> {
        match &self.kind {
            Kind::Hsm(hsm) => Some(hsm.object_label(label)),
            Kind::Store(..) => None,
        }
    }
}

/// A label is a short printable name (`central`, `bank:steppe`, `node`): it comes from the
/// platform or from an operator's configuration and command line, so a bad one is refused.
fn check_label(label: &str) -> Result<()> {
    if label.is_empty() || label.len() > 64 || !label.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            ErrorCode::MalformedInput,
            format!("a key label has 1 to 64 printable characters without spaces, not {label:?}"),
        ));
    }
    Ok(())
}

/// Take `dir`'s vault lock, without waiting: `STORAGE_FAILURE` while another holds it.
fn lock(dir: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let failed = |what: String| Error::new(ErrorCode::StorageFailure, format!("{}: {what}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| failed(e.to_string()))?;
    // SAFETY: `flock` takes a descriptor this function owns, open until the lock is dropped.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if taken != 0 {
        return Err(failed("the keys are open in another process (a running node or platform): stop it first".into()));
    }
    Ok(file)
}

/// Write `bytes` to `path` whole or not at all, readable by the owner alone (the
/// platform's one way to write a file atomically: `dtenge_pki::write_atomically`).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    dtenge_pki::write_atomically(path, bytes, true).map_err(|e| e.to_string())
}
