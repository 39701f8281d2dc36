//! NDJSON output: one event object per line (the shape VectaDB's batch API
//! takes), to a file (appended) or stdout. A batch counts as delivered once
//! written, flushed and (by default) fsynced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::{BoxFuture, Outcome, OutputConfig, OutputKind, Sink, SinkError};
use crate::config::{AgentConfig, Invalid, Sections, invalid};
use crate::event::Record;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::trace::KeyField;

/// The output's registration (see [`crate::sink::OUTPUTS`]).
pub const OUTPUT: OutputKind = OutputKind {
    name: "ndjson",
    load,
};

/// `ndjson:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNdjson {
    pub path: String,
    pub batch_size: Option<usize>,
    pub fsync: Option<bool>,
}

/// The validated `ndjson:` section.
#[derive(Debug, Clone)]
pub struct NdjsonConfig {
    /// `None` is standard output.
    pub path: Option<PathBuf>,
    pub batch_size: usize,
    /// fsync after every batch, so an acknowledged batch survives a crash.
    pub fsync: bool,
}

fn load(sections: &Sections<'_>) -> Result<Option<Arc<dyn OutputConfig>>, Invalid> {
    let Some(n) = sections.get::<RawNdjson>("ndjson")? else {
        return Ok(None);
    };
    let path = n.path.trim();
    if path.is_empty() {
        return Err(invalid(
            "ndjson.path",
            "must be a file path or - for standard output",
        ));
    }
    let batch_size = n.batch_size.unwrap_or(500);
    if batch_size == 0 {
        return Err(invalid("ndjson.batch_size", "must be at least 1"));
    }
    Ok(Some(Arc::new(NdjsonConfig {
        path: (path != "-").then(|| PathBuf::from(path)),
        batch_size,
        fsync: n.fsync.unwrap_or(true),
    })))
}

impl OutputConfig for NdjsonConfig {
    fn describe(&self) -> String {
        match &self.path {
            None => "NDJSON on standard output".to_string(),
            Some(p) => format!("NDJSON file {}", p.display()),
        }
    }

    fn build(&self, agent: &AgentConfig) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(NdjsonSink::open(
            self.clone(),
            agent.trace_key_field,
        )?))
    }

    /// Whether the file could be written, without creating it or its folder.
    fn check_online<'a>(
        &'a self,
        _agent: &'a AgentConfig,
        _shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match &self.path {
                None => Ok(()),
                Some(path) => crate::config::writable(path, "ndjson.path").map_err(SinkError::Open),
            }
        })
    }
}

enum Target {
    Stdout,
    File(BufWriter<File>),
}

pub struct NdjsonSink {
    config: NdjsonConfig,
    target: Arc<Mutex<Target>>,
    key_field: KeyField,
}

impl NdjsonSink {
    pub fn open(config: NdjsonConfig, key_field: KeyField) -> Result<NdjsonSink, SinkError> {
        let target = match &config.path {
            None => Target::Stdout,
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        SinkError::Open(format!(
                            "ndjson.path: cannot create the folder {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        SinkError::Open(format!("ndjson.path: cannot open {}: {e}", path.display()))
                    })?;
                Target::File(BufWriter::new(file))
            }
        };
        Ok(NdjsonSink {
            config,
            target: Arc::new(Mutex::new(target)),
            key_field,
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
        batch: &'a [Record],
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut bytes = Vec::with_capacity(batch.len() * 512);
            for record in batch {
                record.write_json(&mut bytes, self.key_field);
                bytes.push(b'\n');
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
