//! Where the `Recorder`'s bytes go: a file at once, S3 behind the run, or nowhere.

use std::path::PathBuf;

use futures_util::future::BoxFuture;

use super::s3;
use crate::errors::{Error, Result};
use crate::state;

/// Where the bytes of the state go.
pub enum Sink {
    /// Written at once, atomically: cheap, and what crash safety rests on.
    File(PathBuf),
    /// Written behind the run (see `Behind`).
    S3(Behind),
    /// Nowhere: a dry run, `status`.
    None,
}

impl state::Save for Sink {
    fn write(&self, bytes: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        Box::pin(Sink::write(self, bytes))
    }
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Sink::flush(self))
    }
    fn delete(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Sink::delete(self))
    }
}

impl Sink {
    pub async fn write(&self, bytes: Vec<u8>) -> Result<()> {
        match self {
            Sink::File(path) => state::write_atomic(path, &bytes),
            Sink::S3(b) => b.write(bytes),
            Sink::None => Ok(()),
        }
    }

    /// Waits until everything written has landed (or says why it did not).
    pub async fn flush(&self) -> Result<()> {
        match self {
            Sink::S3(b) => b.flush().await,
            _ => Ok(()),
        }
    }

    pub async fn delete(&self) -> Result<()> {
        match self {
            Sink::File(path) => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(
                    format!("removing state file {}", path.display()),
                    e,
                )),
            },
            Sink::S3(b) => {
                b.flush().await?;
                b.store.delete().await
            }
            Sink::None => Ok(()),
        }
    }
}

/// State writes to S3 behind the run: a request each, which would otherwise sit on the
/// critical path (a resource's id is recorded before its children start). One writer
/// sends them in order, skipping those a newer one already covers; every write stays
/// conditional (a 412 stops the run: the next `write` and the final `flush` report it).
/// Killed before the last write lands, a rerun finds what is missing from the state by
/// its tags, as without a state.
pub struct Behind {
    store: s3::S3Store,
    queue: tokio::sync::mpsc::UnboundedSender<Queued>,
    /// The first failure: (a lost race, exit 4; else exit 1), and what it said.
    failed: std::sync::Arc<std::sync::Mutex<Option<(bool, String)>>>,
}

enum Queued {
    Write(Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Behind {
    pub(super) fn start(store: s3::S3Store) -> Behind {
        let (queue, mut rx) = tokio::sync::mpsc::unbounded_channel::<Queued>();
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (writer, failure) = (store.clone(), failed.clone());
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let (mut latest, mut waiting) = (None, Vec::new());
                match first {
                    Queued::Write(b) => latest = Some(b),
                    Queued::Flush(tx) => waiting.push(tx),
                }
                // Everything queued meanwhile: only the newest state matters.
                while let Ok(next) = rx.try_recv() {
                    match next {
                        Queued::Write(b) => latest = Some(b),
                        Queued::Flush(tx) => waiting.push(tx),
                    }
                }
                let ok = failure.lock().expect("failure").is_none();
                if let (Some(bytes), true) = (latest, ok) {
                    if let Err(e) = writer.write(bytes).await {
                        let lost_race = matches!(e, Error::Locked(_));
                        *failure.lock().expect("failure") = Some((lost_race, e.to_string()));
                    }
                }
                for tx in waiting {
                    let _ = tx.send(());
                }
            }
        });
        Behind {
            store,
            queue,
            failed,
        }
    }

    fn failure(&self) -> Result<()> {
        match self.failed.lock().expect("failure").clone() {
            None => Ok(()),
            Some((true, message)) => Err(Error::Locked(message)),
            Some((false, message)) => Err(Error::Http(message)),
        }
    }

    fn write(&self, bytes: Vec<u8>) -> Result<()> {
        self.failure()?;
        let _ = self.queue.send(Queued::Write(bytes));
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.queue.send(Queued::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        self.failure()
    }
}
