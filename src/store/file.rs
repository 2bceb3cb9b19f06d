//! The local store: `<dir>/<stack>.json` (see `state::write_atomic`) and an exclusive
//! `flock` on `<dir>/<stack>.lock`, which the OS releases when the holder dies, so a
//! killed run never blocks the next one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::errors::{Error, Result};

pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl FileStore {
    pub fn new(dir: &Path, stack: &str) -> FileStore {
        FileStore {
            path: dir.join(format!("{stack}.json")),
            lock_path: dir.join(format!("{stack}.lock")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text; None when there is none.
    pub fn read(&self) -> Result<Option<String>> {
        let mut text = String::new();
        match File::open(&self.path) {
            Ok(mut f) => f
                .read_to_string(&mut text)
                .map_err(|e| self.unreadable(e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.unreadable(e)),
        };
        Ok(Some(text))
    }

    fn unreadable(&self, e: std::io::Error) -> Error {
        Error::State {
            path: self.path.display().to_string(),
            message: format!("cannot read it: {e}"),
        }
    }

    /// Takes the stack's lock, waiting for it up to `wait` (0: fail at once).
    pub async fn lock(&self, wait: Duration) -> Result<FileLock> {
        let started = Instant::now();
        loop {
            match FileLock::try_acquire(&self.lock_path)? {
                Ok(lock) => return Ok(lock),
                Err(holder) if started.elapsed() < wait => {
                    crate::report::info(&format!("waiting for the lock held by {holder}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(holder) => {
                    return Err(Error::Locked(format!(
                        "stack is locked by {holder} (lock file {}); wait for that run to finish{}",
                        self.lock_path.display(),
                        if wait.is_zero() {
                            ", or pass --lock-wait SECONDS".to_string()
                        } else {
                            format!(" (waited {}s)", wait.as_secs())
                        }
                    )))
                }
            }
        }
    }
}

impl FileStore {
    /// Whether another process holds the lock now (probed without taking it for more
    /// than an instant, and without writing to the lock file).
    pub fn is_locked(&self) -> Result<bool> {
        let file = match File::open(&self.lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(Error::io(
                    format!("opening lock file {}", self.lock_path.display()),
                    e,
                ))
            }
        };
        match file.try_lock() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(
                format!("locking {}", self.lock_path.display()),
                e,
            )),
        }
    }
}

/// The stacks with a state file in `dir` (none when it does not exist).
pub fn stacks_in(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("reading state directory {}", dir.display()),
                e,
            ))
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stack) = name.strip_suffix(".json") {
            if crate::config::validate_stack(stack).is_ok() {
                names.push(stack.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// An exclusive lock per stack, held for the whole run.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// The lock, or who holds it.
    fn try_acquire(path: &Path) -> Result<std::result::Result<FileLock, String>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating state directory {}", dir.display()), e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Ok(Err(if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                }));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let info = format!(
            "pid {} on {host} since {} (unix time {since})",
            std::process::id(),
            crate::report::utc_timestamp(since)
        );
        let _ = file.set_len(0);
        let _ = (&file).write_all(info.as_bytes());
        let _ = file.sync_all();
        Ok(Ok(FileLock { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_lock_fails_and_names_the_holder_or_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path(), "s");
        let first = store.lock(Duration::ZERO).await.unwrap();
        let err = store
            .lock(Duration::ZERO)
            .await
            .expect_err("second lock must fail");
        assert_eq!(err.exit_code(), 4);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let err = store.lock(Duration::from_millis(300)).await.unwrap_err();
        assert!(err.to_string().contains("waited"), "{err}");
        // Released while a second run waits: it gets the lock.
        let waiter = async { store.lock(Duration::from_secs(5)).await };
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(first);
        };
        let (got, ()) = tokio::join!(waiter, release);
        got.expect("the waiter takes the lock once it is free");
    }
}
