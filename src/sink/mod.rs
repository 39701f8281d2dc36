//! Outputs. Each takes a batch of [`Record`]s and reports, per record,
//! whether it is done with it (accepted, or rejected for good) before the
//! pipeline may checkpoint them. A sink retries what can succeed later for as
//! long as it takes (the sources stop pulling meanwhile: backpressure) unless
//! shutdown is requested.
//!
//! Each output owns its config section: its YAML types, validation and
//! construction live in its module, which exports one [`OutputKind`]; the
//! list [`OUTPUTS`] is the one place outputs are registered. A new output is
//! a module and a line there.

pub mod ndjson;
pub mod otlp;
pub mod vectadb;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{AgentConfig, Invalid, Sections};
use crate::event::Record;
use crate::shutdown::Shutdown;

/// Every output, by its config section name.
pub const OUTPUTS: &[OutputKind] = &[vectadb::OUTPUT, otlp::OUTPUT, ndjson::OUTPUT];

/// An output kind: the top-level config section it owns and how it reads it.
pub struct OutputKind {
    /// The section name (`vectadb`, `ndjson`, ...).
    pub name: &'static str,
    /// Reads and validates the section; `None` when the file has none.
    pub load: LoadSection,
}

/// How an output reads its section.
pub type LoadSection = fn(&Sections<'_>) -> Result<Option<Arc<dyn OutputConfig>>, Invalid>;

/// A validated output section.
pub trait OutputConfig: std::fmt::Debug + Send + Sync {
    /// One line for `cwtap check` and the start-up log (never a secret).
    fn describe(&self) -> String;

    /// Builds the sink.
    fn build(&self, agent: &AgentConfig) -> Result<Arc<dyn Sink>, SinkError>;

    /// What `cwtap check --online` does: builds the sink and asks its
    /// health. An output whose building leaves something behind (a file)
    /// checks without building.
    fn check_online<'a>(
        &'a self,
        agent: &'a AgentConfig,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.build(agent)?.health(shutdown).await })
    }
}

/// What became of one batch. Indices are positions in the batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Stored downstream.
    pub accepted: Vec<usize>,
    /// Refused for good (400/415/422, or failed too often); counted and logged.
    pub rejected: Vec<usize>,
    /// Shutdown came before the rest of the batch was delivered; the records
    /// in neither list are not checkpointed and will be read again.
    pub abandoned: bool,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Unhealthy(String),
    #[error("{0}")]
    Open(String),
}

/// An output.
pub trait Sink: Send + Sync {
    /// Delivers `batch`, retrying transient failures until done or shutdown.
    fn deliver<'a>(&'a self, batch: &'a [Record], shutdown: &'a Shutdown)
    -> BoxFuture<'a, Outcome>;

    /// Checks the output is reachable before the agent starts.
    fn health<'a>(&'a self, shutdown: &'a Shutdown) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Most records one `deliver` call should carry now. It may change
    /// from one call to the next (VectaDB's follows the server's answers),
    /// so a source asks again for each batch it fills.
    fn batch_size(&self) -> usize;

    /// About the most bytes one request carries (records as JSON, see
    /// [`Record::json_size_hint`]): a source ends a batch there too, so that
    /// large events make smaller batches, each one request and one
    /// checkpoint, not many requests held for one checkpoint.
    fn batch_bytes(&self) -> usize {
        usize::MAX
    }
}

/// A whole number of seconds an HTTP output's setting `key` gives (a
/// timeout, a backoff cap), or `default`: 0 would mean no time at all.
pub(crate) fn whole_secs(
    value: Option<u64>,
    default: std::time::Duration,
    key: &str,
) -> Result<std::time::Duration, crate::config::Invalid> {
    match value {
        None => Ok(default),
        Some(0) => Err(crate::config::invalid(key, "must be at least 1 (seconds)")),
        Some(s) => Ok(std::time::Duration::from_secs(s)),
    }
}

/// The certificates of a PEM bundle, for an HTTP output's trusted roots.
/// Read when the config loads (so that `check` and a reload catch a bad
/// file) and again when the output is built; the error says what is wrong
/// with the file, the caller names the setting.
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A folder holding `ca.pem` (a self-signed certificate) and `key.pem` (its
/// key), for the tests of settings that name such files.
#[cfg(test)]
pub(crate) fn pem_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).expect("write ca.pem");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
        .expect("write key.pem");
    std::fs::write(dir.path().join("not.pem"), "not a certificate\n").expect("write not.pem");
    dir
}
