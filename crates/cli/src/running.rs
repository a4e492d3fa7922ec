//! `up`'s mark on its data directory while it runs: an exclusive lock on `up.lock`, held by
//! the process (the operating system lets it go when the process ends, however it ends), and
//! the address its API serves at in `up.api`. `reconcile --data DIR` reads them to ask the
//! platform of DIR, and no other, and a second `up` on the same directory is refused at once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Under a data directory: locked while an `up` runs on it.
const LOCK_FILE: &str = "up.lock";
/// Under a data directory: the base URL of the `up` that runs on it.
const API_FILE: &str = "up.api";
/// Longest base URL read back.
const API_BYTES_MAX: u64 = 512;

/// An `up` running on a data directory; the lock goes with it.
#[derive(Debug)]
pub(crate) struct Running {
    _lock: File,
}

/// Take `data` for this `up`: refused if another one runs on it.
pub(crate) fn take(data: &Path) -> Result<Running, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let (lock, path) = lock_file(data)?;
    match lock.try_lock() {
        Ok(()) => {
            // Whatever it says is from a process that ended: gone until this one says where
            // it serves.
            match std::fs::remove_file(data.join(API_FILE)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", data.join(API_FILE).display())),
            }
            Ok(Running { _lock: lock })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let at = read_api(data).unwrap_or_else(|| "an address it did not write yet".into());
            Err(format!(
                "another `dtenge up` runs on {} (at {at}), or a `dtenge reconcile` reads it: wait for it to end",
                data.display()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

impl Running {
    /// Say where the platform of this directory serves (written whole, then renamed).
    pub(crate) fn serving_at(&self, data: &Path, base: &str) -> Result<(), String> {
        let (path, partial) = (data.join(API_FILE), data.join(format!("{API_FILE}.partial")));
        let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        let mut file = File::create(&partial).map_err(failed)?;
        file.write_all(base.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
        std::fs::rename(&partial, &path).map_err(failed)
    }
}

/// Who has a data directory.
#[derive(Debug)]
pub(crate) enum Holder {
    /// An `up` runs on it and serves at this base URL.
    Up(String),
    /// No `up` runs on it; this lock (when the directory has a lock file) keeps one from
    /// starting until dropped, so the directory's files can be read meanwhile.
    Nobody(Option<Running>),
}

/// Who has `data` now: the `up` running on it, or nobody (whatever `up.api` says then is from
/// a process that ended). Nobody's answer holds a shared lock: no `up` starts until it is
/// dropped, and other readers may hold one too.
pub(crate) fn holder(data: &Path) -> Result<Holder, String> {
    if !data.is_dir() {
        return Ok(Holder::Nobody(None));
    }
    // Created when missing (a directory of an older build), so that reading it is locked too.
    let (lock, path) = lock_file(data)?;
    match lock.try_lock_shared() {
        Ok(()) => Ok(Holder::Nobody(Some(Running { _lock: lock }))),
        Err(std::fs::TryLockError::WouldBlock) => read_api(data)
            .map(Holder::Up)
            .ok_or_else(|| format!("a `dtenge up` runs on {} but has not said where it serves yet", data.display())),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// `data`'s lock file, created when missing, and its path.
fn lock_file(data: &Path) -> Result<(File, std::path::PathBuf), String> {
    let path = data.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok((lock, path))
}

fn read_api(data: &Path) -> Option<String> {
    let file = File::open(data.join(API_FILE)).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, API_BYTES_MAX), &mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_served_while_its_up_holds_it_and_free_after() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(holder(&dir.path().join("none")).unwrap(), Holder::Nobody(None)), "no directory");
        assert!(matches!(holder(dir.path()).unwrap(), Holder::Nobody(Some(_))), "never run");
        let running = take(dir.path()).unwrap();
        assert!(holder(dir.path()).is_err(), "taken, no address yet");
        running.serving_at(dir.path(), "http://127.0.0.1:9").unwrap();
        assert!(matches!(holder(dir.path()).unwrap(), Holder::Up(at) if at == "http://127.0.0.1:9"));
        assert!(take(dir.path()).unwrap_err().contains("another `dtenge up` runs"));
        drop(running);
        let reading = holder(dir.path()).unwrap();
        assert!(matches!(reading, Holder::Nobody(Some(_))), "the address left behind is not believed");
        assert!(matches!(holder(dir.path()).unwrap(), Holder::Nobody(Some(_))), "two readers at once");
        assert!(take(dir.path()).is_err(), "no up starts while the files are read");
        drop(reading);
        let running = take(dir.path()).unwrap();
        assert!(holder(dir.path()).is_err(), "the address of the up before is gone at start");
        drop(running);
    }
}
