//! The local store: `<dir>/<region>/<stack>.json` (see `state::write_atomic`) and an
//! exclusive `flock` on `<dir>/<region>/<stack>.lock`, which the OS releases when the
//! holder dies, so a killed run never blocks the next one. The kernel's lock cannot be
//! lost while its holder lives, so a local run needs no fence (see `fence`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::errors::{Error, Result};

pub struct FileStore {
    region: String,
    path: PathBuf,
    lock_path: PathBuf,
    /// Where the older layout kept them: `<dir>/<stack>.json`, `.lock`.
    legacy_path: PathBuf,
    legacy_lock_path: PathBuf,
    locked: AtomicBool,
}

impl FileStore {
    pub fn new(dir: &Path, region: &str, stack: &str) -> FileStore {
        let here = dir.join(region);
        FileStore {
            region: region.to_string(),
            path: here.join(format!("{stack}.json")),
            lock_path: here.join(format!("{stack}.lock")),
            legacy_path: dir.join(format!("{stack}.json")),
            legacy_lock_path: dir.join(format!("{stack}.lock")),
            locked: AtomicBool::new(false),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn legacy_path(&self) -> &Path {
        &self.legacy_path
    }

    pub fn holds_lock(&self) -> bool {
        self.locked.load(Ordering::SeqCst)
    }

    /// The older layout's state file, if any (no version: a file has none).
    pub fn read_legacy(&self) -> Result<Option<(String, Option<String>)>> {
        read_text(&self.legacy_path).map(|t| t.map(|t| (t, None)))
    }

    /// Moves an older-layout state here (under this run's lock), unless an older
    /// provision holds the old lock.
    pub fn move_legacy(&self, bytes: &[u8]) -> Result<()> {
        let old_lock = match FileLock::try_acquire(&self.legacy_lock_path)? {
            Ok(lock) => lock,
            Err(holder) => {
                return Err(Error::Locked(format!(
                    "the state {} is in the older layout and {holder} holds its old lock {}; let that run finish, then run again (the state then moves to {})",
                    self.legacy_path.display(),
                    self.legacy_lock_path.display(),
                    self.path.display()
                )))
            }
        };
        crate::state::write_atomic(&self.path, bytes)?;
        let removed = fs::remove_file(&self.legacy_path);
        drop(old_lock);
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!(
                    "removing the moved state file {}",
                    self.legacy_path.display()
                ),
                e,
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text; None when there is none.
    pub fn read(&self) -> Result<Option<String>> {
        read_text(&self.path)
    }

    /// Takes the stack's lock, waiting for it up to `wait` (0: fail at once).
    pub async fn lock(&self, wait: Duration) -> Result<FileLock> {
        let started = Instant::now();
        let mut told = false;
        loop {
            match FileLock::try_acquire(&self.lock_path)? {
                Ok(lock) => {
                    self.locked.store(true, Ordering::SeqCst);
                    return Ok(lock);
                }
                Err(holder) if started.elapsed() < wait => {
                    super::say_waiting(&mut told, &holder, wait);
                    crate::interrupt::sleep(Duration::from_millis(200)).await?;
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

fn read_text(path: &Path) -> Result<Option<String>> {
    let unreadable = |e: std::io::Error| Error::State {
        path: path.display().to_string(),
        message: format!("cannot read it: {e}"),
    };
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_string(&mut text).map_err(unreadable)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    Ok(Some(text))
}

/// The regions `dir` holds a state of `stack` for (`<dir>/<region>/<stack>.json`).
pub fn regions_with(dir: &Path, stack: &str) -> Result<Vec<String>> {
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
    let mut regions: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join(format!("{stack}.json")).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|r| crate::names::validate_region(r).is_ok())
        .collect();
    regions.sort();
    Ok(regions)
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
            if crate::names::validate_stack(stack).is_ok() {
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
        let store = FileStore::new(dir.path(), "us-east-1", "s");
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
