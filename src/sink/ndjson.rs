//! NDJSON output: one event object per line, to a file (appended) or stdout.
//! A batch counts as delivered once written, flushed and (by default) fsynced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{BoxFuture, Outcome, Sink, SinkError};
use crate::config::NdjsonConfig;
use crate::event::OutEvent;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;

enum Target {
    Stdout,
    File(BufWriter<File>),
}

pub struct NdjsonSink {
    config: NdjsonConfig,
    target: Arc<Mutex<Target>>,
}

impl NdjsonSink {
    pub fn open(config: NdjsonConfig) -> Result<NdjsonSink, SinkError> {
        let target = match &config.path {
            None => Target::Stdout,
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        SinkError::Open(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        SinkError::Open(format!(
                            "cannot open NDJSON output {}: {e}",
                            path.display()
                        ))
                    })?;
                Target::File(BufWriter::new(file))
            }
        };
        Ok(NdjsonSink {
            config,
            target: Arc::new(Mutex::new(target)),
        })
    }

    fn write_blocking(target: &Mutex<Target>, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
        let mut guard = target.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *guard {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Target::File(w) => {
                w.write_all(bytes)?;
                w.flush()?;
                if fsync {
                    w.get_ref().sync_data()?;
                }
                Ok(())
            }
        }
    }
}

impl Sink for NdjsonSink {
    fn deliver<'a>(
        &'a self,
        batch: &'a [OutEvent],
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut bytes = Vec::with_capacity(batch.len() * 512);
            for event in batch {
                // Serializing a Map of JSON values cannot fail.
                if serde_json::to_writer(&mut bytes, event).is_ok() {
                    bytes.push(b'\n');
                }
            }
            let bytes = Arc::new(bytes);
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            loop {
                let target = Arc::clone(&self.target);
                let data = Arc::clone(&bytes);
                let fsync = self.config.fsync;
                let result = tokio::task::spawn_blocking(move || {
                    Self::write_blocking(&target, &data, fsync)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                match result {
                    Ok(()) => {
                        return Outcome {
                            accepted: (0..batch.len()).collect(),
                            ..Outcome::default()
                        };
                    }
                    Err(error) => {
                        // A partial line may have been written; the retry writes
                        // the whole batch again after it, so readers must skip
                        // a line that does not parse (documented).
                        tracing::error!(%error, path = ?self.config.path, "writing NDJSON output failed, retrying");
                        if !backoff.sleep(shutdown).await {
                            return Outcome {
                                abandoned: true,
                                ..Outcome::default()
                            };
                        }
                    }
                }
            }
        })
    }

    fn health<'a>(&'a self, _shutdown: &'a Shutdown) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }
}
