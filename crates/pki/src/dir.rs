//! The authority's directory on disk, as `dtenge ca` keeps it:
//!
//! ```text
//! ca.key.pem             the root's key (PKCS#8; readable by its owner only)
//! ca.crt.pem             the root certificate, which every participant trusts
//! crl.pem                the current revocation list: the only record of what is revoked
//! issued/<serial>.crt.pem  every certificate issued, named by its serial
//! ```
//!
//! Every file is written whole to a temporary name, synced and renamed, so a crash leaves the
//! old file or the new one. One operator runs `dtenge ca` at a time (the NBK's CA is one
//! machine): two at once could issue one serial twice, and the second rename would win.

use crate::{
    certificate_pem, key_from_pem, key_to_pem, pem_contents, read_certificate, read_revocation_list,
    revocation_list_pem, Authority, Certified, Issue, PkiError, Reason, Result, Revocation, RevocationList, Subject,
    PARTICIPANT_VALIDITY_DAYS,
};
use dtenge_core::crypto::{PublicKey, SecretKey};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CA_KEY_FILE: &str = "ca.key.pem";
pub const CA_CERT_FILE: &str = "ca.crt.pem";
pub const CRL_FILE: &str = "crl.pem";
pub const ISSUED_DIR: &str = "issued";
/// Most certificates one CA directory lists: a bound on `list` and on the serial search.
const ISSUED_MAX: usize = 100_000;

/// The authority with its directory.
pub struct CaDir {
    path: PathBuf,
    authority: Authority,
}

/// One issued certificate and whether it is revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub certified: Certified,
    pub revoked: Option<Revocation>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

/// Write `bytes` to `path` whole: a temporary file, synced, renamed over it, the directory
/// synced, so that a crash or a full disk never leaves half a key or half a certificate where
/// a participant reads it. `owner_only` makes it readable by its owner only (a key).
pub fn write_atomically(path: &Path, bytes: &[u8], owner_only: bool) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A temporary file left by a crash: removed, so that the one made below is new and takes
    // the mode asked for (an existing file keeps its own).
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if owner_only {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = owner_only;
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io(path))
}

impl CaDir {
    /// A new authority in `path`, which must not hold one: the root key `key`, its certificate
    /// and an empty revocation list, numbered 1.
    pub fn init(path: &Path, key: SecretKey, now_s: i64) -> Result<CaDir> {
        if path.join(CA_KEY_FILE).exists() || path.join(CA_CERT_FILE).exists() {
            return Err(PkiError::Directory {
                path: path.display().to_string(),
                reason: "already holds a certificate authority; refusing to replace its root".into(),
            });
        }
        fs::create_dir_all(path.join(ISSUED_DIR)).map_err(io(path))?;
        let authority = Authority::create(key, now_s)?;
        write_atomically(&path.join(CA_KEY_FILE), key_to_pem(authority.key()).as_bytes(), true)?;
        write_atomically(&path.join(CA_CERT_FILE), certificate_pem(authority.cert_der()).as_bytes(), false)?;
        let dir = CaDir { path: path.to_path_buf(), authority };
        dir.write_revocation_list(1, &[], now_s)?;
        Ok(dir)
    }

    /// The authority kept in `path`.
    pub fn open(path: &Path) -> Result<CaDir> {
        let missing = |what: &str| PkiError::Directory {
            path: path.display().to_string(),
            reason: format!("has no {what}: run `dtenge ca init` first"),
        };
        if !path.join(CA_KEY_FILE).exists() {
            return Err(missing(CA_KEY_FILE));
        }
        let key = key_from_pem(&read_text(&path.join(CA_KEY_FILE))?)?;
        let cert = pem_contents(&read_text(&path.join(CA_CERT_FILE))?, "CERTIFICATE").map_err(PkiError::Certificate)?;
        Ok(CaDir { path: path.to_path_buf(), authority: Authority::from_parts(key, cert)? })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cert_der(&self) -> &[u8] {
        self.authority.cert_der()
    }

    /// The current revocation list, DER.
    pub fn revocation_list_der(&self) -> Result<Vec<u8>> {
        pem_contents(&read_text(&self.path.join(CRL_FILE))?, "X509 CRL").map_err(PkiError::RevocationList)
    }

    pub fn revocation_list(&self) -> Result<RevocationList> {
        read_revocation_list(&self.revocation_list_der()?)
    }

    fn write_revocation_list(&self, number: u64, revoked: &[Revocation], now_s: i64) -> Result<Vec<u8>> {
        let der = self.authority.revocation_list(number, revoked, now_s)?;
        write_atomically(&self.path.join(CRL_FILE), revocation_list_pem(&der).as_bytes(), false)?;
        Ok(der)
    }

    /// Every certificate issued, by serial, as DER.
    fn issued(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let dir = self.path.join(ISSUED_DIR);
        let mut issued = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(serial) = name.strip_suffix(".crt.pem").and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            if issued.len() == ISSUED_MAX {
                return Err(PkiError::Directory {
                    path: dir.display().to_string(),
                    reason: format!("holds over {ISSUED_MAX} certificates"),
                });
            }
            let der = pem_contents(&read_text(&entry.path())?, "CERTIFICATE").map_err(PkiError::Certificate)?;
            issued.push((serial, der));
        }
        issued.sort_by_key(|(serial, _)| *serial);
        Ok(issued)
    }

    /// Certify `key` for `subject` (a participant, reachable at `dns_names`, or an API
    /// client). Returns the certificate, DER, and keeps a copy under `issued/`.
    pub fn issue(&self, subject: &Subject, key: PublicKey, dns_names: &[String], now_s: i64) -> Result<Vec<u8>> {
        // Serial 1 is the root's.
        let serial = self.issued()?.last().map_or(2, |(serial, _)| serial + 1);
        let der = self.authority.issue(&Issue {
            subject,
            key,
            dns_names,
            serial,
            now_s,
            validity_days: PARTICIPANT_VALIDITY_DAYS,
        })?;
        let path = self.path.join(ISSUED_DIR).join(format!("{serial}.crt.pem"));
        write_atomically(&path, certificate_pem(&der).as_bytes(), false)?;
        Ok(der)
    }

    /// Revoke the certificate `serial`: a new revocation list, numbered one past the current
    /// one. Revoking a revoked certificate changes nothing and returns the current list.
    pub fn revoke(&self, serial: u64, reason: Reason, now_s: i64) -> Result<Vec<u8>> {
        if !self.issued()?.iter().any(|(s, _)| *s == serial) {
            return Err(PkiError::UnknownSerial(serial));
        }
        let current = self.revocation_list()?;
        if current.is_revoked(serial) {
            return self.revocation_list_der();
        }
        let mut revoked: Vec<Revocation> = current.revoked.values().copied().collect();
        revoked.push(Revocation { serial, at_s: now_s, reason });
        self.write_revocation_list(current.number + 1, &revoked, now_s)
    }

    /// The same revocations under a new number and a new validity: what the CA does before
    /// the current list's next update.
    pub fn renew_revocation_list(&self, now_s: i64) -> Result<Vec<u8>> {
        let current = self.revocation_list()?;
        let revoked: Vec<Revocation> = current.revoked.values().copied().collect();
        self.write_revocation_list(current.number + 1, &revoked, now_s)
    }

    /// Every certificate issued, oldest first, with its revocation if any.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let revocations = self.revocation_list()?;
        self.issued()?
            .into_iter()
            .map(|(serial, der)| {
                let certified = read_certificate(&der)?;
                if certified.serial != serial {
                    return Err(PkiError::Directory {
                        path: self.path.display().to_string(),
                        reason: format!("issued/{serial}.crt.pem holds serial {}", certified.serial),
                    });
                }
                Ok(Listed { revoked: revocations.revoked.get(&serial).copied(), certified })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_wire::RoleId;

    const NOW_S: i64 = 1_796_000_000;

    #[test]
    fn init_issue_revoke_and_list_keep_one_record_in_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ca");
        let ca = CaDir::init(&path, SecretKey::from_seed([1; 32]), NOW_S).unwrap();
        assert!(CaDir::init(&path, SecretKey::from_seed([9; 32]), NOW_S).is_err(), "a root is never replaced");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path.join(CA_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the root key is its owner's only");
        }
        let bank = Subject::Role(RoleId::Bank("bank-a".into()));
        let first = ca.issue(&bank, SecretKey::from_seed([2; 32]).public_key(), &["localhost".into()], NOW_S).unwrap();
        let second =
            ca.issue(&Subject::Role(RoleId::Notary), SecretKey::from_seed([3; 32]).public_key(), &[], NOW_S).unwrap();
        assert_eq!(read_certificate(&first).unwrap().serial, 2);
        assert_eq!(read_certificate(&second).unwrap().serial, 3);

        let ca = CaDir::open(&path).unwrap();
        assert_eq!(ca.revocation_list().unwrap().number, 1);
        ca.revoke(2, Reason::KeyCompromise, NOW_S + 60).unwrap();
        let again = ca.revoke(2, Reason::Superseded, NOW_S + 120).unwrap();
        assert_eq!(read_revocation_list(&again).unwrap().number, 2, "a second revocation changes nothing");
        assert!(matches!(ca.revoke(77, Reason::Unspecified, NOW_S), Err(PkiError::UnknownSerial(77))));

        let listed = ca.list().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].certified.subject, bank);
        assert_eq!(listed[0].revoked, Some(Revocation { serial: 2, at_s: NOW_S + 60, reason: Reason::KeyCompromise }));
        assert_eq!(listed[1].revoked, None);

        let renewed = read_revocation_list(&ca.renew_revocation_list(NOW_S + 3_600).unwrap()).unwrap();
        assert_eq!(renewed.number, 3);
        assert!(renewed.is_revoked(2));
        assert!(CaDir::open(&tmp.path().join("none")).is_err());
    }
}
