//! Outputs. Each takes a batch of events and reports, per event, whether it is
//! done with it (accepted, or rejected for good) before the source may
//! checkpoint those events. A sink retries what can succeed later for as long
//! as it takes (the source stops pulling meanwhile: backpressure) unless
//! shutdown is requested.

pub mod ndjson;
pub mod vectadb;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{AgentConfig, OutputConfig};
use crate::event::OutEvent;
use crate::shutdown::Shutdown;

/// What became of one batch. Indices are positions in the batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Stored downstream.
    pub accepted: Vec<usize>,
    /// Refused for good (400/415/422, or failed too often); counted and logged.
    pub rejected: Vec<usize>,
    /// Shutdown came before the rest of the batch was delivered; the events in
    /// neither list are not checkpointed and will be read again.
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
    fn deliver<'a>(
        &'a self,
        batch: &'a [OutEvent],
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Outcome>;

    /// Checks the output is reachable before the agent starts.
    fn health<'a>(&'a self, shutdown: &'a Shutdown) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Most events one `deliver` call should carry.
    fn batch_size(&self) -> usize;
}

/// Builds the configured output.
pub fn build(output: &OutputConfig, agent: &AgentConfig) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match output {
        OutputConfig::Vectadb(v) => Arc::new(vectadb::VectadbSink::new(v.clone(), agent)?),
        OutputConfig::Ndjson(n) => Arc::new(ndjson::NdjsonSink::open(n.clone())?),
    })
}
