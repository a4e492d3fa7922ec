//! Node keys in an HSM, reached through its PKCS#11 module (`cryptoki`; SoftHSM2 in tests).
//!
//! - A node key is an Ed25519 key pair generated in the token under the label
//!   `dtenge:<label>`: private half sensitive and not extractable, so it never leaves the
//!   device; every signature is made there (`CKM_EDDSA`). Ed25519 is deterministic, so a
//!   signature made in the HSM equals one made in memory with the same key.
//! - Secrets (a bank's data-encryption key, its own account's seed) are drawn from the HSM's
//!   generator and kept in `keys.wrapped` in the data directory, sealed with AES-256-GCM by the
//!   key-encryption key `dtenge:kek`, an AES key generated in the token that never leaves it.
//!   They are unwrapped into memory at start.
//!
//! The token is the operator's: initialized with its user PIN before the first start
//! (`softhsm2-util --init-token`, or the HSM vendor's tool); the platform logs in as its user
//! and creates only objects labelled `dtenge:`.
//!
//! A signature the HSM fails to make (the device gone, the session closed) stops the process
//! (see `dtenge_core::crypto::Sign`): what the roles acknowledged is durable, and a restart
//! opens a new session.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use dtenge_core::crypto::{Hash32, NodeKey, PublicKey, SecretKey, SigAlg, Sign, Signature, SignatureBytes};
use dtenge_core::{Error, ErrorCode, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The wrapped secrets' file in the data directory.
pub const WRAPPED_FILE: &str = "keys.wrapped";
const FORMAT: &str = "dtenge-wrapped-secrets/1";
/// The label prefix of every object the platform creates in the token: `dtenge:<vault>:<label>`,
/// `<vault>` the data directory's own id (drawn when its vault is first opened, kept in
/// `keys.wrapped`), so that participants sharing one token (a network HSM) never share or
/// rotate each other's keys.
const LABEL_PREFIX: &str = "dtenge:";
const KEK_LABEL: &str = "dtenge:kek";
/// Sessions signing at once: the roles' threads sign concurrently, and a PKCS#11 session
/// runs one operation at a time.
const SESSIONS: usize = 4;
/// The most retired key pairs kept per label.
const RETIRED_MAX: usize = 1024;
/// The DER encoding of Ed25519's object identifier (1.3.101.112): the key pair's curve.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// Where the HSM is.
#[derive(Clone)]
pub struct HsmConfig {
    /// The vendor's PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so` for SoftHSM2).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The token user's PIN.
    pub pin: String,
}

/// An open HSM: logged in, with a pool of sessions.
pub struct Hsm {
    config: HsmConfig,
    sessions: Arc<Sessions>,
    kek: ObjectHandle,
    wrapped_path: PathBuf,
    /// This data directory's id among the token's vaults.
    vault: String,
    /// Label -> secret, unwrapped.
    secrets: Mutex<BTreeMap<String, [u8; 32]>>,
    /// As stored in `keys.wrapped`.
    wrapped: Mutex<BTreeMap<String, Wrapped>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Wrapped {
    /// Hex, 12 bytes.
    iv: String,
    /// Hex: the secret sealed under the key-encryption key, with GCM's tag.
    sealed: String,
}

#[derive(Serialize, Deserialize)]
struct WrappedFile {
    format: String,
    /// The data directory's id, in its objects' labels.
    vault: String,
    kek: String,
    secrets: BTreeMap<String, Wrapped>,
}

/// The sessions, each used by one thread at a time. The module itself is kept alive by them
/// (`Session` holds the context).
struct Sessions {
    pool: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&Session) -> T) -> T {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.pool.len() {
            if let Some(session) = self.pool[(start + offset) % self.pool.len()].try_lock() {
                return f(&session);
            }
        }
        f(&self.pool[start % self.pool.len()].lock())
    }
}

fn failed(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("HSM: {what}"))
}

impl Hsm {
    /// Load `config.module`, find the token labelled `config.token`, log in as its user, and
    /// find (or generate) the key-encryption key; read the wrapped secrets of `dir`.
    pub fn open(dir: &Path, config: &HsmConfig) -> Result<Hsm> {
        let pkcs11 = Pkcs11::new(&config.module).map_err(|e| failed(format!("{}: {e}", config.module.display())))?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(format!("initialize: {e}"))),
        }
        let slots = pkcs11.get_slots_with_initialized_token().map_err(failed)?;
        let slot = slots
            .into_iter()
            .find(|slot| pkcs11.get_token_info(*slot).is_ok_and(|info| info.label().trim() == config.token))
            .ok_or_else(|| {
                failed(format!("no initialized token labelled {:?} in {}", config.token, config.module.display()))
            })?;
        let mut pool = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            pool.push(Mutex::new(pkcs11.open_rw_session(slot).map_err(failed)?));
        }
        // Login is per application, not per session: once logs every session in.
        match pool[0].lock().login(UserType::User, Some(&AuthPin::new(config.pin.clone().into()))) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(failed(format!("login to token {:?}: {e}", config.token))),
        }
        let sessions = Arc::new(Sessions { pool, next: AtomicUsize::new(0) });
        let kek = sessions.with(find_or_generate_kek)?;
        let wrapped_path = dir.join(WRAPPED_FILE);
        let (vault, wrapped) = match read_wrapped(&wrapped_path)? {
            Some(file) => (file.vault, file.secrets),
            None => {
                // A new vault: its id, from the token's generator, written before any object
                // is made under it.
                let mut id = [0u8; 8];
                sessions.with(|session| session.generate_random_slice(&mut id)).map_err(failed)?;
                let file = WrappedFile {
                    format: FORMAT.into(),
                    vault: hex::encode(id),
                    kek: KEK_LABEL.into(),
                    secrets: BTreeMap::new(),
                };
                write_wrapped(&wrapped_path, &file)?;
                (file.vault, file.secrets)
            }
        };
        let mut secrets = BTreeMap::new();
        for (label, item) in &wrapped {
            let secret = sessions.with(|session| unwrap(session, kek, label, item)).map_err(|e| {
                failed(format!(
                    "{}: {label} does not unwrap with this token's key-encryption key: {e}",
                    wrapped_path.display()
                ))
            })?;
            secrets.insert(label.clone(), secret);
        }
        Ok(Hsm {
            config: config.clone(),
            sessions,
            kek,
            wrapped_path,
            vault,
            secrets: Mutex::new(secrets),
            wrapped: Mutex::new(wrapped),
        })
    }

    /// The label in the token of this vault's object `label`.
    pub fn object_label(&self, label: &str) -> String {
        format!("{LABEL_PREFIX}{}:{label}", self.vault)
    }

    /// The node key `label`, generated in the token on first use.
    pub fn node_key(&self, label: &str) -> Result<NodeKey> {
        let object_label = self.object_label(label).into_bytes();
        let (private, public_key) = self.sessions.with(|session| -> Result<(ObjectHandle, PublicKey)> {
            let find = |class| {
                session.find_objects(&[Attribute::Class(class), Attribute::Label(object_label.clone())]).map_err(failed)
            };
            let (private, public) =
                match (find(ObjectClass::PRIVATE_KEY)?.as_slice(), find(ObjectClass::PUBLIC_KEY)?.as_slice()) {
                    ([private], [public]) => (*private, *public),
                    ([], []) => {
                        let (public, private) = generate_ed25519(session, &object_label)?;
                        tracing::info!(label, "node key generated in the HSM");
                        (private, public)
                    }
                    (private, public) => {
                        return Err(failed(format!(
                            "{} private and {} public objects labelled {label:?}: one key pair expected",
                            private.len(),
                            public.len()
                        )))
                    }
                };
            Ok((private, public_key_of(session, public)?))
        })?;
        let signer = HsmSigner { private, public_key, sessions: self.sessions.clone() };
        // A signature checked once at start: a key pair whose halves disagree is refused here,
        // not found by the first verifier.
        let probe = signer.sign(b"dtenge/keys/probe");
        dtenge_core::crypto::verify(&public_key, b"dtenge/keys/probe", &probe)
            .map_err(|_| failed(format!("the key pair {label:?} signs with another key than its public half")))?;
        Ok(NodeKey::new(Arc::new(signer)))
    }

    /// Relabel the key pair `label` to `<label>@retired-<n>` (the first `n` free) and generate
    /// a new one under `label`.
    pub fn rotate_node_key(&self, label: &str) -> Result<NodeKey> {
        let object_label = |name: &str| self.object_label(name).into_bytes();
        self.sessions.with(|session| -> Result<()> {
            let find = |name: &str| session.find_objects(&[Attribute::Label(object_label(name))]).map_err(failed);
            let held = find(label)?;
            if held.is_empty() {
                return Err(Error::new(ErrorCode::MalformedInput, format!("HSM: no node key {label} to rotate")));
            }
            let mut retired = None;
            for n in 1..=RETIRED_MAX {
                let name = format!("{label}@retired-{n}");
                if find(&name)?.is_empty() {
                    retired = Some(name);
                    break;
                }
            }
            let retired = retired.ok_or_else(|| failed(format!("{label} was rotated {RETIRED_MAX} times")))?;
            for object in held {
                session.update_attributes(object, &[Attribute::Label(object_label(&retired))]).map_err(failed)?;
            }
            Ok(())
        })?;
        tracing::info!(label, "node key rotated in the HSM");
        self.node_key(label)
    }

    /// Create the node key `label` in the token from `key` (sensitive, not extractable from
    /// then on), unless the token holds it already.
    pub fn import_node_key(&self, label: &str, key: &SecretKey) -> Result<NodeKey> {
        let object_label = self.object_label(label).into_bytes();
        let held = self.sessions.with(|session| {
            session
                .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Label(object_label.clone())])
                .map_err(failed)
        })?;
        if held.is_empty() {
            self.sessions.with(|session| -> Result<()> {
                let public = key.public_key();
                let mut point = vec![0x04, 0x20];
                point.extend_from_slice(&public.key.0);
                session
                    .create_object(&[
                        Attribute::Class(ObjectClass::PUBLIC_KEY),
                        Attribute::KeyType(KeyType::EC_EDWARDS),
                        Attribute::Token(true),
                        Attribute::Private(false),
                        Attribute::EcParams(ED25519_OID.to_vec()),
                        Attribute::EcPoint(point),
                        Attribute::Verify(true),
                        Attribute::Label(object_label.clone()),
                    ])
                    .map_err(failed)?;
                session
                    .create_object(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::KeyType(KeyType::EC_EDWARDS),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::EcParams(ED25519_OID.to_vec()),
                        Attribute::Value(key.seed().to_vec()),
                        Attribute::Label(object_label.clone()),
                    ])
                    .map_err(failed)?;
                Ok(())
            })?;
            tracing::info!(label, "node key imported into the HSM");
        }
        let imported = self.node_key(label)?;
        if imported.public_key() != key.public_key() {
            return Err(Error::new(ErrorCode::MalformedInput, format!("HSM: {label} holds another key already")));
        }
        Ok(imported)
    }

    /// The secret `label`: unwrapped at open, or drawn from the token's generator, wrapped
    /// under the key-encryption key and written to `keys.wrapped` on first use.
    pub fn secret(&self, label: &str) -> Result<[u8; 32]> {
        self.keep_secret(label, None)
    }

    /// Keep `secret` as the secret `label`, wrapped: refused (`MALFORMED_INPUT`) when the
    /// label holds another.
    pub fn import_secret(&self, label: &str, secret: [u8; 32]) -> Result<[u8; 32]> {
        self.keep_secret(label, Some(secret))
    }

    /// The secret `label` if held; else `given`, or one drawn from the token's generator,
    /// wrapped and written to `keys.wrapped`.
    fn keep_secret(&self, label: &str, given: Option<[u8; 32]>) -> Result<[u8; 32]> {
        let mut secrets = self.secrets.lock();
        if let Some(secret) = secrets.get(label) {
            if given.is_some_and(|given| given != *secret) {
                return Err(Error::new(
                    ErrorCode::MalformedInput,
                    format!("HSM: {label} holds another secret already"),
                ));
            }
            return Ok(*secret);
        }
        let (secret, item) = self.sessions.with(|session| -> Result<([u8; 32], Wrapped)> {
            let secret = match given {
                Some(secret) => secret,
                None => {
                    let mut secret = [0u8; 32];
                    session.generate_random_slice(&mut secret).map_err(failed)?;
                    secret
                }
            };
            let mut iv = [0u8; 12];
            session.generate_random_slice(&mut iv).map_err(failed)?;
            let mut gcm_iv = iv;
            let params = GcmParams::new(&mut gcm_iv, label.as_bytes(), 128.into()).map_err(failed)?;
            let sealed = session.encrypt(&Mechanism::AesGcm(params), self.kek, &secret).map_err(failed)?;
            Ok((secret, Wrapped { iv: hex::encode(iv), sealed: hex::encode(sealed) }))
        })?;
        let mut wrapped = self.wrapped.lock();
        wrapped.insert(label.to_string(), item);
        let file = WrappedFile {
            format: FORMAT.into(),
            vault: self.vault.clone(),
            kek: KEK_LABEL.into(),
            secrets: wrapped.clone(),
        };
        if let Err(e) = write_wrapped(&self.wrapped_path, &file) {
            wrapped.remove(label);
            return Err(e);
        }
        secrets.insert(label.to_string(), secret);
        Ok(secret)
    }

    pub fn describe(&self) -> String {
        format!(
            "an HSM through PKCS#11 ({}, token {:?}); secrets wrapped under its key-encryption key in {}",
            self.config.module.display(),
            self.config.token,
            self.wrapped_path.display()
        )
    }
}

/// Signs in the HSM.
struct HsmSigner {
    private: ObjectHandle,
    public_key: PublicKey,
    sessions: Arc<Sessions>,
}

impl Sign for HsmSigner {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, message: &[u8]) -> Signature {
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let signed = self.sessions.with(|session| session.sign(&mechanism, self.private, message));
        let sig: Option<[u8; 64]> = match signed {
            Ok(bytes) => bytes.try_into().ok(),
            Err(e) => {
                tracing::error!(error = %e, "the HSM did not sign");
                None
            }
        };
        // Abort, not panic: a panic would end only the thread that signed (a network link, a
        // TLS handshake, a gateway request) and the process would go on without it.
        let Some(sig) = sig else { stop("the HSM did not make an Ed25519 signature") };
        Signature { alg: SigAlg::Ed25519, sig: SignatureBytes(sig) }
    }
}

/// Stop the process at once: a node that cannot sign must not go on half working.
fn stop(why: &str) -> ! {
    eprintln!("{why}: the process stops; start it again when the HSM answers");
    std::process::abort()
}

fn generate_ed25519(session: &Session, label: &[u8]) -> Result<(ObjectHandle, ObjectHandle)> {
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::EcParams(ED25519_OID.to_vec()),
        Attribute::Verify(true),
        Attribute::Label(label.to_vec()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.to_vec()),
    ];
    session.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private).map_err(failed)
}

/// The Ed25519 public key of `public`: its `CKA_EC_POINT`, an octet string holding the 32
/// bytes (some modules give the 32 bytes bare).
fn public_key_of(session: &Session, public: ObjectHandle) -> Result<PublicKey> {
    let attributes = session.get_attributes(public, &[AttributeType::EcPoint]).map_err(failed)?;
    let point = attributes
        .into_iter()
        .find_map(|attribute| match attribute {
            Attribute::EcPoint(point) => Some(point),
            _ => None,
        })
        .ok_or_else(|| failed("a public key without its point"))?;
    let bytes: [u8; 32] = match point.as_slice() {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().expect("32 bytes"),
        raw if raw.len() == 32 => raw.try_into().expect("32 bytes"),
        other => return Err(failed(format!("an Ed25519 point of {} bytes", other.len()))),
    };
    Ok(PublicKey { alg: SigAlg::Ed25519, key: Hash32(bytes) })
}

fn find_or_generate_kek(session: &Session) -> Result<ObjectHandle> {
    let label = KEK_LABEL.as_bytes().to_vec();
    let found = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.clone())])
        .map_err(failed)?;
    match found.as_slice() {
        [kek] => Ok(*kek),
        [] => {
            let template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label),
            ];
            let kek = session.generate_key(&Mechanism::AesKeyGen, &template).map_err(failed)?;
            tracing::info!("key-encryption key generated in the HSM");
            Ok(kek)
        }
        many => Err(failed(format!("{} keys labelled {KEK_LABEL:?}: one expected", many.len()))),
    }
}

fn unwrap(session: &Session, kek: ObjectHandle, label: &str, item: &Wrapped) -> Result<[u8; 32]> {
    let mut iv: [u8; 12] = hex::decode(&item.iv)
        .ok()
        .and_then(|iv| iv.try_into().ok())
        .ok_or_else(|| failed("an IV that is not 12 bytes"))?;
    let sealed = hex::decode(&item.sealed).map_err(|_| failed("sealed bytes that are not hex"))?;
    let params = GcmParams::new(&mut iv, label.as_bytes(), 128.into()).map_err(failed)?;
    let secret = session.decrypt(&Mechanism::AesGcm(params), kek, &sealed).map_err(failed)?;
    secret.try_into().map_err(|_| failed("a secret that is not 32 bytes"))
}

fn read_wrapped(path: &Path) -> Result<Option<WrappedFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(format!("{}: {e}", path.display()))),
    };
    let file: WrappedFile = serde_json::from_str(&text).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let id_ok = file.vault.len() == 16 && file.vault.bytes().all(|b| b.is_ascii_hexdigit());
    if file.format != FORMAT || file.kek != KEK_LABEL || !id_ok {
        return Err(failed(format!(
            "{}: format {:?} under {:?}, vault {:?}",
            path.display(),
            file.format,
            file.kek,
            file.vault
        )));
    }
    Ok(Some(file))
}

fn write_wrapped(path: &Path, file: &WrappedFile) -> Result<()> {
    let text = serde_json::to_string_pretty(file).map_err(failed)?;
    crate::write_private(path, text.as_bytes()).map_err(|e| failed(format!("{}: {e}", path.display())))
}
