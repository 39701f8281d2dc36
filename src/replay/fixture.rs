//! The fixture format: one JSON object per line with exactly the keys
//! `log_group`, `log_stream`, `timestamp`, `ingestion_time`, `event_id`,
//! `message` (timestamps in ms since the epoch); gzip-compressed when the
//! file name ends in `.gz`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ReplayError;
use crate::event::RawEvent;
use crate::time::EpochMs;

/// One captured (or generated) CloudWatch event. A key it does not have is
/// an error (a misspelt optional key would otherwise be dropped unseen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureEvent {
    pub log_group: String,
    pub log_stream: String,
    /// Event time, ms since the epoch.
    pub timestamp: EpochMs,
    /// When CloudWatch ingested it, ms since the epoch.
    #[serde(default)]
    pub ingestion_time: Option<EpochMs>,
    pub event_id: String,
    pub message: String,
    /// The line of the fixture file it was read from (1-based; 0 when it
    /// was not read from a file). Not a key of the line itself.
    #[serde(skip)]
    pub line: usize,
}

impl From<RawEvent> for FixtureEvent {
    fn from(e: RawEvent) -> Self {
        FixtureEvent {
            log_group: e.log_group,
            log_stream: e.log_stream,
            timestamp: e.timestamp_ms,
            ingestion_time: e.ingestion_time_ms,
            event_id: e.event_id,
            message: e.message,
            line: 0,
        }
    }
}

impl From<FixtureEvent> for RawEvent {
    fn from(e: FixtureEvent) -> Self {
        RawEvent {
            log_group: e.log_group,
            log_stream: e.log_stream,
            event_id: e.event_id,
            timestamp_ms: e.timestamp,
            ingestion_time_ms: e.ingestion_time,
            message: e.message,
            origin: Default::default(),
        }
    }
}

fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Reads a whole text file, gunzipped when its name ends in `.gz` (as
/// `capture` writes one), for commands that take fixture lines as text.
pub fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bytes = if is_gzip(path) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot read {}: not gzip ({e})", path.display()))?;
        out
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "cannot read {}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Reads a whole fixture. Blank lines are skipped; a bad line is an error
/// naming the file and the line.
pub fn read_fixture(path: &Path) -> Result<Vec<FixtureEvent>, ReplayError> {
    read_fixture_checked(path, |_| Ok(()))
}

/// [`read_fixture`], with `check` run on every event as it is read: what it
/// refuses is an error naming the file and the line, before anything is
/// done with the fixture (a replay into CloudWatch checks the names there).
pub fn read_fixture_checked(
    path: &Path,
    check: impl Fn(&FixtureEvent) -> Result<(), String>,
) -> Result<Vec<FixtureEvent>, ReplayError> {
    // The file the user named: not there, or not theirs to read, is a usage
    // error (exit 2) like a bad line.
    let file = File::open(path)
        .map_err(|e| ReplayError::Usage(format!("cannot open {}: {e}", path.display())))?;
    let reader: Box<dyn Read> = if is_gzip(path) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut events = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        // Not gzip, or not UTF-8, from this line on.
        let line = line.map_err(|e| ReplayError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("cannot read the line (not gzip, or not UTF-8 text?): {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut event: FixtureEvent =
            serde_json::from_str(&line).map_err(|e| ReplayError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!(
                    "{}; each line is a JSON object with log_group, log_stream, timestamp, ingestion_time, event_id and message",
                    crate::errors::plain(&e.to_string())
                ),
            })?;
        event.line = i + 1;
        check(&event).map_err(|message| ReplayError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        })?;
        events.push(event);
    }
    Ok(events)
}

enum Sink {
    Stdout(std::io::Stdout),
    Plain(BufWriter<File>),
    // Boxed: the encoder's state is a few hundred bytes.
    Gzip(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

/// Writes fixture lines to a file (gzip for `.gz`) or standard output.
pub struct FixtureWriter {
    path: Option<PathBuf>,
    /// Where the file is written until [`FixtureWriter::finish`] renames it
    /// to `path`: a capture that fails leaves no file that looks complete
    /// (the partial one is removed when the writer is dropped).
    partial: Option<PathBuf>,
    sink: Option<Sink>,
    /// Lines written so far.
    pub written: usize,
}

impl FixtureWriter {
    /// Creates `path` (replacing it once finished), or writes to stdout
    /// when `None`.
    pub fn create(path: Option<&Path>) -> Result<FixtureWriter, ReplayError> {
        let (sink, partial) = match path {
            None => (Sink::Stdout(std::io::stdout()), None),
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| ReplayError::Io {
                        path: dir.to_path_buf(),
                        action: "create directory",
                        source,
                    })?;
                }
                let mut name = p.file_name().unwrap_or_default().to_os_string();
                name.push(".partial");
                let partial = p.with_file_name(name);
                let file = File::create(&partial).map_err(|source| ReplayError::Io {
                    path: partial.clone(),
                    action: "create",
                    source,
                })?;
                let buffered = BufWriter::new(file);
                let sink = if is_gzip(p) {
                    Sink::Gzip(Box::new(flate2::write::GzEncoder::new(
                        buffered,
                        flate2::Compression::default(),
                    )))
                } else {
                    Sink::Plain(buffered)
                };
                (sink, Some(partial))
            }
        };
        Ok(FixtureWriter {
            path: path.map(Path::to_path_buf),
            partial,
            sink: Some(sink),
            written: 0,
        })
    }

    fn io_error(&self, source: std::io::Error) -> ReplayError {
        // Standard output closed by its reader (`cwtap capture | head`):
        // it had what it wanted, so the command ends quietly, as `outln!` does.
        if self.path.is_none() && source.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        ReplayError::Io {
            path: self.path.clone().unwrap_or_else(|| PathBuf::from("-")),
            action: "write",
            source,
        }
    }

    /// Appends one event as one line.
    pub fn write(&mut self, event: &FixtureEvent) -> Result<(), ReplayError> {
        let mut line = serde_json::to_vec(event).map_err(|e| self.io_error(e.into()))?;
        line.push(b'\n');
        let result = match &mut self.sink {
            Some(Sink::Stdout(s)) => s.lock().write_all(&line),
            Some(Sink::Plain(w)) => w.write_all(&line),
            Some(Sink::Gzip(w)) => w.write_all(&line),
            None => Ok(()),
        };
        result.map_err(|e| self.io_error(e))?;
        self.written += 1;
        Ok(())
    }

    /// Flushes (and ends the gzip stream), then gives the file its name:
    /// the file is complete after this.
    pub fn finish(mut self) -> Result<usize, ReplayError> {
        let written = self.written;
        let path = self.path.clone();
        let err = |source| ReplayError::Io {
            path: path.clone().unwrap_or_else(|| PathBuf::from("-")),
            action: "write",
            source,
        };
        match self.sink.take() {
            None => {}
            Some(Sink::Stdout(s)) => {
                if let Err(e) = s.lock().flush() {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        std::process::exit(0);
                    }
                    return Err(err(e));
                }
            }
            Some(Sink::Plain(mut w)) => {
                w.flush().map_err(err)?;
                w.get_ref().sync_data().map_err(err)?;
            }
            Some(Sink::Gzip(w)) => {
                let mut inner = w.finish().map_err(err)?;
                inner.flush().map_err(err)?;
                inner.get_ref().sync_data().map_err(err)?;
            }
        }
        if let (Some(partial), Some(path)) = (self.partial.take(), &self.path) {
            std::fs::rename(&partial, path).map_err(|source| ReplayError::Io {
                path: path.clone(),
                action: "rename the finished file into",
                source,
            })?;
        }
        Ok(written)
    }
}

impl Drop for FixtureWriter {
    /// Not finished (an error, shutdown): the partial file goes.
    fn drop(&mut self) {
        if let Some(partial) = self.partial.take() {
            self.sink = None;
            let _ = std::fs::remove_file(partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: i64) -> FixtureEvent {
        FixtureEvent {
            log_group: "/aws/lambda/a".into(),
            log_stream: "s".into(),
            timestamp: 1_795_161_600_000 + i,
            ingestion_time: Some(1_795_161_600_500 + i),
            event_id: format!("{i:056}"),
            message: format!("line {i}\twith tab and é"),
            line: 0,
        }
    }

    #[test]
    fn a_fixture_round_trips_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["f.ndjson", "f.ndjson.gz"] {
            let path = dir.path().join(name);
            let mut w = FixtureWriter::create(Some(&path)).unwrap();
            for i in 0..100 {
                w.write(&event(i)).unwrap();
            }
            assert_eq!(w.finish().unwrap(), 100);
            let back = read_fixture(&path).unwrap();
            let numbered = |i: i64| FixtureEvent {
                line: i as usize + 1,
                ..event(i)
            };
            assert_eq!(back, (0..100).map(numbered).collect::<Vec<_>>());
        }
        let gz = std::fs::read(dir.path().join("f.ndjson.gz")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    }

    #[test]
    fn lines_keep_exactly_the_documented_keys_in_order() {
        let line = serde_json::to_string(&event(1)).unwrap();
        let keys: Vec<&str> = [
            "log_group",
            "log_stream",
            "timestamp",
            "ingestion_time",
            "event_id",
            "message",
        ]
        .to_vec();
        let mut last = 0;
        for k in keys {
            let at = line.find(&format!("\"{k}\"")).unwrap();
            assert!(at >= last, "{k} out of order in {line}");
            last = at;
        }
    }

    #[test]
    fn the_shipped_fixture_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda-demo.ndjson");
        let events = read_fixture(&path).unwrap();
        assert_eq!(events.len(), 313);
    }

    #[test]
    fn a_bad_line_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.ndjson");
        let good = serde_json::to_string(&event(1)).unwrap();
        std::fs::write(&path, format!("{good}\n\n{{\"log_group\": 3}}\n")).unwrap();
        let e = read_fixture(&path).unwrap_err().to_string();
        assert!(e.contains("bad.ndjson:3"), "{e}");
    }
}
