//! The encrypted key store: the keys of a data directory without an HSM.
//!
//! One file, `keys.store`, JSON: the key-derivation parameters and salt, and the entries
//! sealed with AES-256-GCM under a key derived from the passphrase with Argon2id. The entries
//! are 32-byte secrets by label. A new entry rewrites the file whole (a fresh nonce each time)
//! and renames it into place, so a crash leaves the old store or the new one.

use dtenge_core::{Error, ErrorCode, Result};
use dtenge_env::Entropy;
use parking_lot::Mutex;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The key store's file in the data directory.
pub const STORE_FILE: &str = "keys.store";
const FORMAT: &str = "dtenge-key-store/1";
/// Argon2id at OWASP's recommended minimum (19 MiB, 2 passes): about 50 ms here, paid once
/// per start.
const KDF_MEMORY_KIB: u32 = 19 * 1024;
const KDF_PASSES: u32 = 2;
/// The most work a store's file may ask for: 1 GiB, 16 passes, 16 lanes.
const KDF_MEMORY_KIB_MAX: u32 = 1024 * 1024;
const KDF_PASSES_MAX: u32 = 16;
const KDF_LANES_MAX: u32 = 16;
/// The most entries a store holds: the platform's own keys, a few per bank.
const ENTRIES_MAX: usize = 1024;
/// The shortest passphrase accepted.
pub const PASSPHRASE_LEN_MIN: usize = 12;

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    kdf: Kdf,
    /// Hex, 12 bytes.
    nonce: String,
    /// Hex: the entries' JSON sealed, with the tag.
    sealed: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    /// Hex, 16 bytes.
    salt: String,
}

/// An open key store.
pub struct KeyStore {
    path: PathBuf,
    kdf: Kdf,
    key: LessSafeKey,
    /// Label -> secret.
    entries: Mutex<BTreeMap<String, [u8; 32]>>,
}

impl KeyStore {
    /// Open `dir/keys.store` with `passphrase`, or create it empty.
    pub fn open(dir: &Path, passphrase: &str) -> Result<KeyStore> {
        let path = dir.join(STORE_FILE);
        let failed = |what: String| Error::new(ErrorCode::StorageFailure, format!("{}: {what}", path.display()));
        if passphrase.len() < PASSPHRASE_LEN_MIN {
            return Err(failed(format!("a key store's passphrase has at least {PASSPHRASE_LEN_MIN} characters")));
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(failed(e.to_string())),
        };
        let Some(text) = text else {
            let mut salt = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
                .map_err(|_| failed("no randomness for the salt".into()))?;
            let kdf = Kdf {
                algorithm: "argon2id".into(),
                memory_kib: KDF_MEMORY_KIB,
                passes: KDF_PASSES,
                lanes: 1,
                salt: hex::encode(salt),
            };
            let key = derive(passphrase, &kdf).map_err(failed)?;
            let store = KeyStore { path: path.clone(), kdf, key, entries: Mutex::new(BTreeMap::new()) };
            store.write(&store.entries.lock()).map_err(failed)?;
            return Ok(store);
        };
        let file: File = serde_json::from_str(&text).map_err(|e| failed(format!("not a key store: {e}")))?;
        if file.format != FORMAT {
            return Err(failed(format!("format {:?}, not {FORMAT:?}", file.format)));
        }
        let key = derive(passphrase, &file.kdf).map_err(failed)?;
        let nonce: [u8; 12] = hex::decode(&file.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| failed("a nonce that is not 12 bytes of hex".into()))?;
        let mut sealed = hex::decode(&file.sealed).map_err(|_| failed("sealed entries that are not hex".into()))?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(FORMAT.as_bytes()), &mut sealed)
            .map_err(|_| failed("does not open with this passphrase (or was altered)".into()))?;
        let hex_entries: BTreeMap<String, String> =
            serde_json::from_slice(plain).map_err(|e| failed(format!("entries that do not parse: {e}")))?;
        let mut entries = BTreeMap::new();
        for (label, secret) in hex_entries {
            let secret: [u8; 32] = hex::decode(&secret)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| failed(format!("entry {label} is not 32 bytes")))?;
            entries.insert(label, secret);
        }
        Ok(KeyStore { path, kdf: file.kdf, key, entries: Mutex::new(entries) })
    }

    /// The secret named `label`, drawn from `entropy` and stored on first use.
    pub fn secret(&self, label: &str, entropy: &Entropy) -> Result<[u8; 32]> {
        let mut entries = self.entries.lock();
        if let Some(secret) = entries.get(label) {
            return Ok(*secret);
        }
        if entries.len() >= ENTRIES_MAX {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!("{}: full ({ENTRIES_MAX} entries)", self.path.display()),
            ));
        }
        let secret = entropy.seed32();
        entries.insert(label.to_string(), secret);
        if let Err(what) = self.write(&entries) {
            entries.remove(label);
            return Err(Error::new(ErrorCode::StorageFailure, format!("{}: {what}", self.path.display())));
        }
        Ok(secret)
    }

    /// Store `secret` under `label`: refused (`MALFORMED_INPUT`) when the label holds another.
    pub fn import(&self, label: &str, secret: [u8; 32]) -> Result<[u8; 32]> {
        let mut entries = self.entries.lock();
        match entries.get(label) {
            Some(held) if *held == secret => return Ok(secret),
            Some(_) => {
                return Err(Error::new(
                    ErrorCode::MalformedInput,
                    format!("{}: {label} holds another key already", self.path.display()),
                ))
            }
            None => {}
        }
        if entries.len() >= ENTRIES_MAX {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!("{}: full ({ENTRIES_MAX} entries)", self.path.display()),
            ));
        }
        entries.insert(label.to_string(), secret);
        if let Err(what) = self.write(&entries) {
            entries.remove(label);
            return Err(Error::new(ErrorCode::StorageFailure, format!("{}: {what}", self.path.display())));
        }
        Ok(secret)
    }

    /// Move the secret `label` to `<label>@retired-<n>` (the first `n` free) and draw a new
    /// one under `label`, in one write: `MALFORMED_INPUT` if there is none to rotate.
    pub fn rotate(&self, label: &str, entropy: &Entropy) -> Result<[u8; 32]> {
        let mut entries = self.entries.lock();
        let Some(old) = entries.get(label).copied() else {
            return Err(Error::new(
                ErrorCode::MalformedInput,
                format!("{}: no {label} to rotate", self.path.display()),
            ));
        };
        if entries.len() >= ENTRIES_MAX {
            return Err(Error::new(
                ErrorCode::StorageFailure,
                format!("{}: full ({ENTRIES_MAX} entries)", self.path.display()),
            ));
        }
        let retired = (1..=ENTRIES_MAX)
            .map(|n| format!("{label}@retired-{n}"))
            .find(|name| !entries.contains_key(name))
            .expect("fewer entries than ENTRIES_MAX");
        let new = entropy.seed32();
        let before = entries.clone();
        entries.insert(retired, old);
        entries.insert(label.to_string(), new);
        if let Err(what) = self.write(&entries) {
            *entries = before;
            return Err(Error::new(ErrorCode::StorageFailure, format!("{}: {what}", self.path.display())));
        }
        Ok(new)
    }

    /// The labels of the secrets it holds.
    pub fn labels(&self) -> Vec<String> {
        self.entries.lock().keys().cloned().collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "an encrypted key store, {} (AES-256-GCM under an Argon2id key from its passphrase)",
            self.path.display()
        )
    }

    fn write(&self, entries: &BTreeMap<String, [u8; 32]>) -> std::result::Result<(), String> {
        let hex_entries: BTreeMap<&str, String> = entries.iter().map(|(l, s)| (l.as_str(), hex::encode(s))).collect();
        let mut sealed = serde_json::to_vec(&hex_entries).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| "no randomness for the nonce".to_string())?;
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(FORMAT.as_bytes()), &mut sealed)
            .map_err(|_| "the entries do not seal".to_string())?;
        let file = File {
            format: FORMAT.into(),
            kdf: self.kdf.clone(),
            nonce: hex::encode(nonce),
            sealed: hex::encode(sealed),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
        crate::write_private(&self.path, text.as_bytes())
    }
}

fn derive(passphrase: &str, kdf: &Kdf) -> std::result::Result<LessSafeKey, String> {
    if kdf.algorithm != "argon2id" {
        return Err(format!("key derivation {:?}, not argon2id", kdf.algorithm));
    }
    // The file says how much work opening it takes: bounded, so that an altered file cannot
    // make a start take gigabytes or hours.
    if kdf.memory_kib > KDF_MEMORY_KIB_MAX || kdf.passes > KDF_PASSES_MAX || kdf.lanes > KDF_LANES_MAX {
        return Err(format!(
            "key derivation of {} KiB, {} passes, {} lanes: beyond {KDF_MEMORY_KIB_MAX} KiB, {KDF_PASSES_MAX}, {KDF_LANES_MAX}",
            kdf.memory_kib, kdf.passes, kdf.lanes
        ));
    }
    let salt = hex::decode(&kdf.salt).map_err(|_| "a salt that is not hex".to_string())?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32)).map_err(|e| e.to_string())?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon.hash_password_into(passphrase.as_bytes(), &salt, &mut key).map_err(|e| e.to_string())?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| "an AES-256 key".to_string())?;
    Ok(LessSafeKey::new(unbound))
}

/// The passphrase kept at `path`, drawn from `entropy` and written there (mode 0600) if it is
/// not there yet. Two processes starting at once agree: the file is linked into place only if
/// none is there, and each then reads the one that is.
pub fn read_or_create_passphrase(path: &Path, entropy: &Entropy) -> Result<String> {
    let failed = |e: String| Error::new(ErrorCode::StorageFailure, format!("{}: {e}", path.display()));
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        }
        // A name of this call's own: tests start many platforms at once in one process, from
        // the same seed as often as not (two of them once collided on a fresh machine).
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let partial = path.with_extension(format!(
            "{}.{call}.{}.partial",
            std::process::id(),
            hex::encode(&entropy.seed32()[..8])
        ));
        crate::write_private(&partial, hex::encode(entropy.seed32()).as_bytes()).map_err(failed)?;
        let linked = std::fs::hard_link(&partial, path);
        let _ = std::fs::remove_file(&partial);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSPHRASE: &str = "correct horse battery";

    #[test]
    fn a_secret_comes_back_after_reopening_and_is_not_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let entropy = Entropy::from_seed(1);
        let store = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        let secret = store.secret("node:central", &entropy).unwrap();
        assert_eq!(store.secret("node:central", &entropy).unwrap(), secret, "drawn once");
        let other = store.secret("secret:custody:steppe", &entropy).unwrap();
        assert_ne!(other, secret);
        drop(store);
        let reopened = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        assert_eq!(reopened.secret("node:central", &entropy).unwrap(), secret);
        assert_eq!(reopened.secret("secret:custody:steppe", &entropy).unwrap(), other);
        let bytes = std::fs::read(dir.path().join(STORE_FILE)).unwrap();
        for needle in
            [secret.to_vec(), hex::encode(secret).into_bytes(), other.to_vec(), hex::encode(other).into_bytes()]
        {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "a secret in the clear");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(STORE_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn another_passphrase_or_an_altered_file_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        store.secret("node:oracle", &Entropy::from_seed(2)).unwrap();
        drop(store);
        let refused = KeyStore::open(dir.path(), "incorrect horse battery").err().unwrap();
        assert_eq!(refused.code, ErrorCode::StorageFailure);
        assert!(refused.message.contains("does not open with this passphrase"), "{refused}");
        let path = dir.path().join(STORE_FILE);
        let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let sealed = file["sealed"].as_str().unwrap().to_string();
        let flipped = if sealed.starts_with('0') { "1" } else { "0" };
        file["sealed"] = serde_json::Value::String(format!("{flipped}{}", &sealed[1..]));
        std::fs::write(&path, file.to_string()).unwrap();
        assert!(KeyStore::open(dir.path(), PASSPHRASE).is_err(), "altered");
        file["kdf"]["memory_kib"] = serde_json::json!(u32::MAX);
        std::fs::write(&path, file.to_string()).unwrap();
        let greedy = KeyStore::open(dir.path(), PASSPHRASE).err().unwrap();
        assert!(greedy.message.contains("beyond"), "{greedy}");
        let short = KeyStore::open(tempfile::tempdir().unwrap().path(), "short").err().unwrap();
        assert!(short.message.contains("at least"), "{short}");
    }

    #[test]
    fn an_imported_key_stays_and_a_taken_label_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        assert_eq!(store.import("node:notary", [5; 32]).unwrap(), [5; 32]);
        assert_eq!(store.import("node:notary", [5; 32]).unwrap(), [5; 32], "the same key again");
        let refused = store.import("node:notary", [6; 32]).err().unwrap();
        assert_eq!(refused.code, ErrorCode::MalformedInput);
        drop(store);
        let reopened = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        assert_eq!(reopened.secret("node:notary", &Entropy::from_seed(1)).unwrap(), [5; 32]);
        assert_eq!(reopened.labels(), vec!["node:notary".to_string()]);
    }

    #[test]
    fn a_rotation_keeps_the_old_secret_retired_and_draws_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let entropy = Entropy::from_seed(8);
        let store = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        assert!(store.rotate("node:oracle", &entropy).is_err(), "nothing to rotate");
        let first = store.secret("node:oracle", &entropy).unwrap();
        let second = store.rotate("node:oracle", &entropy).unwrap();
        let third = store.rotate("node:oracle", &entropy).unwrap();
        assert!(first != second && second != third);
        drop(store);
        let reopened = KeyStore::open(dir.path(), PASSPHRASE).unwrap();
        assert_eq!(reopened.secret("node:oracle", &entropy).unwrap(), third);
        assert_eq!(reopened.secret("node:oracle@retired-1", &entropy).unwrap(), first);
        assert_eq!(reopened.secret("node:oracle@retired-2", &entropy).unwrap(), second);
    }

    #[test]
    fn two_starts_at_once_agree_on_the_sandbox_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dtenge").join("sandbox-passphrase");
        let first = read_or_create_passphrase(&path, &Entropy::from_seed(3)).unwrap();
        let second = read_or_create_passphrase(&path, &Entropy::from_seed(4)).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        // Threads of one process racing on a new file agree too.
        let path = dir.path().join("racing").join("sandbox-passphrase");
        let read: Vec<String> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8u64)
                .map(|n| {
                    let path = path.clone();
                    // Half of them from one seed, as platforms started by tests are.
                    let seed = if n % 2 == 0 { 10 } else { 10 + n };
                    scope.spawn(move || read_or_create_passphrase(&path, &Entropy::from_seed(seed)).unwrap())
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(read.iter().all(|p| *p == read[0]), "{read:?}");
    }
}
