//! The state file: what `provision` made, so the next run can find it fast.
//!
//! This module is the only one that reads or writes it. Writes are atomic (temp file,
//! fsync, rename, fsync of the directory) and the file is never truncated in place:
//! killed at any moment, the file on disk is either the old or the new version.
//! It holds resource ids and settings, never a secret. Mode 0600.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};

pub const SCHEMA: u32 = 1;

/// The stack's outputs, as printed by `up` and `outputs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    pub api_url: String,
    pub token_url: String,
    /// The first client's id.
    pub client_id: String,
    /// Every client: its configured name → its id (empty in files written before).
    #[serde(default)]
    pub clients: std::collections::BTreeMap<String, String>,
    pub scope: String,
    pub user_pool_id: String,
    pub region: String,
    pub stack: String,
    /// `rest` or `http` (files written before there was a choice: `rest`).
    #[serde(default = "rest")]
    pub front: String,
}

fn rest() -> String {
    "rest".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub schema: u32,
    pub stack: String,
    pub region: String,
    /// Known once a run has asked STS; a file for another account is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Resource kind → its id (name, ARN, pool id...), as recorded when made or adopted.
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
    /// The deployment stage `prod` serves and the hash of the definition it was made
    /// from: lets a rerun skip reading the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<Deployed>,
    /// Present after a successful `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    /// The front the last `up` built (written before it starts, so `down` knows to look
    /// for an API a killed switch made but did not record). None: `rest`, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    pub deployment_id: String,
    pub definition: String,
}

impl StateFile {
    pub fn new(stack: &str, region: &str, endpoint_url: Option<&str>) -> Self {
        StateFile {
            schema: SCHEMA,
            stack: stack.to_string(),
            region: region.to_string(),
            account: None,
            endpoint_url: endpoint_url.map(str::to_string),
            resources: BTreeMap::new(),
            deployed: None,
            outputs: None,
            front: None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.resources.get(key).map(String::as_str)
    }
}

/// Parses a state file's text (`name` says where it came from, for errors). Anything
/// unusable is an error (exit 2): we never guess, and never overwrite what we cannot read.
pub fn parse(text: &str, name: &str) -> Result<StateFile> {
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        state_err(
            name,
            format!("not valid JSON ({e}); move it away if it is not provision's"),
        )
    })?;
    match raw.get("schema").and_then(|s| s.as_u64()) {
        Some(v) if v == SCHEMA as u64 => {}
        Some(v) => {
            return Err(state_err(
                name,
                format!("schema version {v} is not {SCHEMA}, the one this provision reads; use the provision version that wrote it"),
            ))
        }
        None => {
            return Err(state_err(
                name,
                "not a provision state file (no `schema`); move it away or use another --state-dir".into(),
            ))
        }
    }
    serde_json::from_value(raw)
        .map_err(|e| state_err(name, format!("malformed ({e}); move it away and run again: `up` and `down` find the stack by its tags")))
}

/// Refuses a state file that belongs to another stack or region.
pub fn check_matches(state: &StateFile, path: &str, stack: &str, region: &str) -> Result<()> {
    if state.stack != stack {
        return Err(state_err(
            path,
            format!(
                "it is for stack `{}`, not `{stack}`; use --stack {} or another --state-dir",
                state.stack, state.stack
            ),
        ));
    }
    if state.region != region {
        return Err(state_err(
            path,
            format!(
                "it is for region {}, not {region}; pass --region {} or use another --state-dir",
                state.region, state.region
            ),
        ));
    }
    Ok(())
}

pub fn check_account(state: &StateFile, path: &str, account: &str) -> Result<()> {
    match &state.account {
        Some(a) if a != account => Err(state_err(
            path,
            format!(
                "it is for AWS account {a}, but the credentials are for account {account}; use the right credentials or another --state-dir"
            ),
        )),
        _ => Ok(()),
    }
}

fn state_err(path: &str, message: String) -> Error {
    Error::State {
        path: path.to_string(),
        message,
    }
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating state directory {}", dir.display()), e))?;
    }
    let tmp = tmp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("writing state file {}", path.display()), e)
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Where the `Recorder` saves: the state store's side of it (see `store::Sink`), named
/// here as a trait so that this module, which the store reads with, needs no store.
pub trait Save: Send + Sync {
    fn write(&self, bytes: Vec<u8>) -> BoxFuture<'_, Result<()>>;
    /// Waits until everything written has landed (or says why it did not).
    fn flush(&self) -> BoxFuture<'_, Result<()>>;
    fn delete(&self) -> BoxFuture<'_, Result<()>>;
}

/// The state of one run, saved to its store after each change. Shared by the
/// concurrent steps of `up`; a dry run records to no store.
pub struct Recorder {
    sink: Box<dyn Save>,
    inner: Mutex<StateFile>,
    /// Serializes writes, and holds what was last written (so a write that a later
    /// one already covered is skipped, and the newest always lands last).
    written: tokio::sync::Mutex<Option<Vec<u8>>>,
}

impl Recorder {
    pub fn new(sink: impl Save + 'static, state: StateFile) -> Self {
        Recorder {
            sink: Box::new(sink),
            inner: Mutex::new(state),
            written: tokio::sync::Mutex::new(None),
        }
    }

    pub fn deployed(&self) -> Option<Deployed> {
        self.inner.lock().expect("state lock").deployed.clone()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.inner
            .lock()
            .expect("state lock")
            .get(key)
            .map(str::to_string)
    }

    /// The recorded keys that start with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.inner
            .lock()
            .expect("state lock")
            .resources
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Nothing recorded: no state file (or one from a run that made nothing).
    pub fn is_empty(&self) -> bool {
        self.inner.lock().expect("state lock").resources.is_empty()
    }

    /// Applies `change` and saves the state when it changed anything.
    pub async fn update(&self, change: impl FnOnce(&mut StateFile)) -> Result<()> {
        {
            let mut state = self.inner.lock().expect("state lock");
            let before = state.clone();
            change(&mut state);
            if *state == before {
                return Ok(());
            }
        }
        let mut written = self.written.lock().await;
        let bytes = serde_json::to_vec_pretty(&*self.inner.lock().expect("state lock"))
            .expect("state serializes");
        if written.as_ref() == Some(&bytes) {
            return Ok(());
        }
        self.sink.write(bytes.clone()).await?;
        *written = Some(bytes);
        Ok(())
    }

    pub async fn set(&self, key: &str, id: &str) -> Result<()> {
        self.update(|s| {
            s.resources.insert(key.to_string(), id.to_string());
        })
        .await
    }

    pub async fn remove(&self, key: &str) -> Result<()> {
        self.update(|s| {
            s.resources.remove(key);
        })
        .await
    }

    /// Waits until every change has landed in the store (S3 writes go behind the run).
    pub async fn flush(&self) -> Result<()> {
        self.sink.flush().await
    }

    /// Deletes the state (after `down`).
    pub async fn delete_file(&self) -> Result<()> {
        let _written = self.written.lock().await;
        self.sink.delete().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sink;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> StateFile {
        let mut s = StateFile::new("m2m-api", "us-east-1", Some("http://127.0.0.1:4566"));
        s.account = Some("000000000000".into());
        s.resources
            .insert("user_pool".into(), "us-east-1_abc".into());
        s.outputs = Some(Outputs {
            api_url: "http://x/".into(),
            stack: "m2m-api".into(),
            ..Default::default()
        });
        s
    }

    #[tokio::test]
    async fn round_trip_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/m2m-api.json");
        let rec = Recorder::new(
            Sink::File(path.clone()),
            StateFile::new("m2m-api", "us-east-1", None),
        );
        let s = sample();
        rec.update(|st| *st = s.clone()).await.unwrap();
        let loaded = parse(&fs::read_to_string(&path).unwrap(), "s.json").unwrap();
        assert_eq!(loaded, s);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn atomic_replace_leaves_no_temp_file_and_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomic(&path, b"{\"schema\":1,\"stack\":\"a\",\"region\":\"us-east-1\",\"resources\":{\"x\":\"a-very-long-id-that-is-longer\"}}").unwrap();
        write_atomic(
            &path,
            b"{\"schema\":1,\"stack\":\"a\",\"region\":\"us-east-1\"}",
        )
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"schema\":1,\"stack\":\"a\",\"region\":\"us-east-1\"}"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["s.json"]);
    }

    #[test]
    fn unusable_files_are_refused_with_exit_2() {
        for (content, says) in [
            ("not json", "not valid JSON"),
            ("{\"hello\": 1}", "not a provision state file"),
            ("{\"schema\": 99, \"stack\": \"a\"}", "schema version 99"),
            ("{\"schema\": 1, \"stack\": 5}", "malformed"),
        ] {
            let err = parse(content, "s.json").unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(says), "{content}: {err}");
        }
    }

    #[test]
    fn foreign_stack_region_or_account_is_refused() {
        let s = sample();
        let p = "s.json";
        assert!(check_matches(&s, p, "m2m-api", "us-east-1").is_ok());
        assert!(check_matches(&s, p, "other", "us-east-1")
            .unwrap_err()
            .to_string()
            .contains("stack `m2m-api`"));
        assert!(check_matches(&s, p, "m2m-api", "eu-west-1")
            .unwrap_err()
            .to_string()
            .contains("--region us-east-1"));
        assert!(check_account(&s, p, "000000000000").is_ok());
        assert!(check_account(&s, p, "123456789012").is_err());
    }

    #[tokio::test]
    async fn dry_recorder_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let rec = Recorder::new(Sink::None, sample());
        rec.set("rest_api", "abc").await.unwrap();
        assert!(!path.exists());
        assert_eq!(rec.get("rest_api").as_deref(), Some("abc"));
    }
}
