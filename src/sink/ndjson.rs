//! NDJSON output: one event object per line (the shape VectaDB's batch API
//! takes), to a file (appended) or stdout. A batch counts as delivered once
//! written, flushed and (by default) fsynced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
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

/// Opens (creating it and its folder) the file to append to.
fn open_file(path: &Path) -> Result<File, SinkError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            SinkError::Open(format!(
                "ndjson.path: cannot create the folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SinkError::Open(format!("ndjson.path: cannot open {}: {e}", path.display())))
}

/// Whether `path` no longer names the open `file` (renamed or removed):
/// one stat per batch.
#[cfg(unix)]
fn moved(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() != named.dev() || open.ino() != named.ino(),
        (Ok(_), Err(e)) => e.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(not(unix))]
fn moved(_file: &File, _path: &Path) -> bool {
    false
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
            Some(path) => Target::File(BufWriter::new(open_file(path)?)),
        };
        Ok(NdjsonSink {
            config,
            target: Arc::new(Mutex::new(target)),
            key_field,
        })
    }

    fn write_blocking(
        target: &Mutex<Target>,
        path: Option<&Path>,
        bytes: &[u8],
        fsync: bool,
    ) -> std::io::Result<()> {
        let mut guard = target.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *guard {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Target::File(w) => {
                // Rotated away (logrotate renames the file, or removes it):
                // the next batch goes to a new file under the path.
                if let Some(path) = path
                    && moved(w.get_ref(), path)
                {
                    w.flush()?;
                    let file = open_file(path).map_err(|e| std::io::Error::other(e.to_string()))?;
                    tracing::info!(path = %path.display(), "the NDJSON file was moved or removed (rotated): writing to a new one");
                    *w = BufWriter::new(file);
                }
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
                let path = self.config.path.clone();
                let result = tokio::task::spawn_blocking(move || {
                    Self::write_blocking(&target, path.as_deref(), &data, fsync)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// logrotate's default: the file is renamed and the agent goes on. The
    /// next batch starts a new file under the path; nothing goes to the
    /// renamed one after the rename, nothing is lost.
    #[test]
    fn a_rotated_file_is_followed_by_a_new_one_under_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let target = Mutex::new(Target::File(BufWriter::new(open_file(&path).unwrap())));
        NdjsonSink::write_blocking(&target, Some(&path), b"a\n", false).unwrap();
        let rotated = dir.path().join("out.ndjson.1");
        std::fs::rename(&path, &rotated).unwrap();
        NdjsonSink::write_blocking(&target, Some(&path), b"b\n", false).unwrap();
        NdjsonSink::write_blocking(&target, Some(&path), b"c\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "a\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\nc\n");
        // Removed (logrotate's copy, then delete): the same.
        std::fs::remove_file(&path).unwrap();
        NdjsonSink::write_blocking(&target, Some(&path), b"d\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "d\n");
    }
}
