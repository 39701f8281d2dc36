//! The `vectadb:` section: as written, validated, and built into the sink.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::VectadbSink;
use crate::config::{AgentConfig, Invalid, Secret, Sections, check_http_url, invalid, non_empty};
use crate::sink::{OutputConfig, OutputKind, Sink, SinkError, read_ca_file};

/// The output's registration (see [`crate::sink::OUTPUTS`]).
pub const OUTPUT: OutputKind = OutputKind {
    name: "vectadb",
    load,
};

/// The largest request body VectaDB accepts (axum's default limit).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// `vectadb:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVectadb {
    pub endpoint: String,
    pub api_key: Option<String>,
    pub batch_size: Option<usize>,
    pub timeout_secs: Option<u64>,
    pub max_batch_bytes: Option<usize>,
    pub max_backoff_secs: Option<u64>,
    pub max_item_retries: Option<u32>,
    pub health_check: Option<bool>,
    /// PEM file of CA certificates trusted besides the system roots.
    pub ca_file: Option<String>,
    /// The batch request's `options` (also accepted under `agent:`, where
    /// the VectaDB agent's config has them).
    pub auto_create_traces: Option<bool>,
    pub generate_embeddings: Option<bool>,
    pub extract_relationships: Option<bool>,
}

// Hand-written so that the API key never reaches a log line through `{:?}`.
impl std::fmt::Debug for RawVectadb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawVectadb")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// The validated `vectadb:` section.
#[derive(Debug, Clone)]
pub struct VectadbConfig {
    /// Base URL, without a trailing slash.
    pub endpoint: String,
    pub api_key: Option<Secret>,
    pub batch_size: usize,
    /// Bound on one request body; the server refuses bodies above 2 MiB.
    pub max_batch_bytes: usize,
    pub timeout: Duration,
    /// Cap of the exponential backoff between retries of one batch.
    pub max_backoff: Duration,
    /// How often an event the server reported failed (HTTP 200 with
    /// `errors`) is sent again before it is counted as rejected.
    pub max_item_retries: u32,
    /// Whether `GET /health` must answer before the agent starts.
    pub health_check: bool,
    /// PEM bundle of CA certificates trusted for an https endpoint besides
    /// the system roots (a private CA); certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// The `options` of every batch request.
    pub auto_create_traces: bool,
    pub generate_embeddings: bool,
    pub extract_relationships: bool,
}

impl VectadbConfig {
    /// The defaults, for `endpoint`.
    pub fn with_endpoint(endpoint: &str) -> VectadbConfig {
        VectadbConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            api_key: None,
            batch_size: 300,
            max_batch_bytes: BODY_LIMIT - 64 * 1024,
            timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            max_item_retries: 5,
            health_check: true,
            ca_file: None,
            auto_create_traces: true,
            generate_embeddings: true,
            extract_relationships: false,
        }
    }
}

fn load(sections: &Sections<'_>) -> Result<Option<Arc<dyn OutputConfig>>, Invalid> {
    let Some(v) = sections.get::<RawVectadb>("vectadb")? else {
        return Ok(None);
    };
    let d = VectadbConfig::with_endpoint(v.endpoint.trim());
    check_http_url(&d.endpoint, "vectadb.endpoint")?;
    let batch_size = v.batch_size.unwrap_or(d.batch_size);
    if batch_size == 0 {
        return Err(invalid("vectadb.batch_size", "must be at least 1"));
    }
    let max_batch_bytes = v.max_batch_bytes.unwrap_or(d.max_batch_bytes);
    if !(1024..=BODY_LIMIT).contains(&max_batch_bytes) {
        return Err(invalid(
            "vectadb.max_batch_bytes",
            format!("must be between 1024 and {BODY_LIMIT} (the server's body limit)"),
        ));
    }
    let ca_file = non_empty(v.ca_file, "vectadb.ca_file")?.map(|p| sections.base_dir.join(p));
    if let Some(path) = &ca_file {
        read_ca_file(path).map_err(|e| invalid("vectadb.ca_file", e))?;
    }
    // A key from a secret file often ends in a line break; one inside it
    // could not go in a header.
    let api_key = v
        .api_key
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    if api_key
        .as_deref()
        .is_some_and(|k| k.chars().any(|c| c.is_control() || !c.is_ascii()))
    {
        return Err(invalid(
            "vectadb.api_key",
            "holds a control character or non-ASCII text, which cannot go in an HTTP header",
        ));
    }
    let agent = sections.agent;
    let timeout = crate::sink::whole_secs(v.timeout_secs, d.timeout, "vectadb.timeout_secs")?;
    let max_backoff = crate::sink::whole_secs(
        v.max_backoff_secs,
        d.max_backoff,
        "vectadb.max_backoff_secs",
    )?;
    Ok(Some(Arc::new(VectadbConfig {
        api_key: api_key.map(Secret::new),
        batch_size,
        max_batch_bytes,
        timeout,
        max_backoff,
        max_item_retries: v.max_item_retries.unwrap_or(d.max_item_retries),
        health_check: v.health_check.unwrap_or(d.health_check),
        ca_file,
        auto_create_traces: v
            .auto_create_traces
            .or(agent.auto_create_traces)
            .unwrap_or(d.auto_create_traces),
        generate_embeddings: v
            .generate_embeddings
            .or(agent.generate_embeddings)
            .unwrap_or(d.generate_embeddings),
        extract_relationships: v
            .extract_relationships
            .or(agent.extract_relationships)
            .unwrap_or(d.extract_relationships),
        ..d
    })))
}

impl OutputConfig for VectadbConfig {
    fn describe(&self) -> String {
        format!(
            "VectaDB at {} (batches of {} events, at most {} bytes; api key {})",
            self.endpoint,
            self.batch_size,
            self.max_batch_bytes,
            if self.api_key.is_some() {
                "set"
            } else {
                "not set"
            }
        )
    }

    fn build(&self, agent: &AgentConfig) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(VectadbSink::new(self.clone(), agent)?))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn vectadb(yaml: &str, path: &str) -> String {
        let config = Config::from_yaml(yaml, Path::new(path)).expect("config loads");
        format!("{:?}", config.output)
    }

    #[test]
    fn a_relative_ca_file_is_read_from_the_config_files_folder_when_the_config_loads() {
        let dir = crate::sink::pem_files();
        let config = dir.path().join("c.yaml");
        let config = config.to_str().unwrap();
        let shown = vectadb(
            "vectadb: {endpoint: 'https://127.0.0.1:1', ca_file: ca.pem}\nlog_groups: [{name: /a}]\n",
            config,
        );
        assert!(
            shown.contains(&format!("{}", dir.path().join("ca.pem").display())),
            "{shown}"
        );
        // A file that is not there, or not a certificate, is a config error
        // (so `check` and a reload see it), naming the setting and the file.
        for (file, says) in [("nope.pem", "cannot read"), ("not.pem", "PEM certificate")] {
            let yaml = format!(
                "vectadb: {{endpoint: 'https://127.0.0.1:1', ca_file: {file}}}\nlog_groups: [{{name: /a}}]\n"
            );
            let e = Config::from_yaml(&yaml, Path::new(config))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("vectadb.ca_file") && e.contains(file) && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn the_api_key_loses_surrounding_white_space_and_must_fit_a_header() {
        let yaml = |key: &str| {
            format!(
                "vectadb: {{endpoint: 'http://127.0.0.1:1', api_key: {key:?}}}\nlog_groups: [{{name: /a}}]\n"
            )
        };
        let describe = |key: &str| {
            let config = Config::from_yaml(&yaml(key), Path::new("c.yaml")).expect("loads");
            config.output.describe()
        };
        assert!(describe("sk-1\n").contains("api key set"));
        assert!(describe(" \n").contains("api key not set"));
        let e = Config::from_yaml(&yaml("sk-do-not-print\nline-2"), Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vectadb.api_key") && e.contains("HTTP header"),
            "{e}"
        );
        assert!(!e.contains("sk-do-not-print"), "{e}");
    }

    #[test]
    fn options_come_from_the_section_or_from_agent_as_the_vectadb_agent_writes_them() {
        let defaults = vectadb(
            "vectadb: {endpoint: 'http://127.0.0.1:1'}\nlog_groups: [{name: /a}]\n",
            "c.yaml",
        );
        assert!(
            defaults.contains(
                "auto_create_traces: true, generate_embeddings: true, extract_relationships: false"
            ),
            "{defaults}"
        );
        let agent = vectadb(
            "vectadb: {endpoint: 'http://127.0.0.1:1'}\nlog_groups: [{name: /a}]\nagent: {generate_embeddings: false}\n",
            "c.yaml",
        );
        assert!(agent.contains("generate_embeddings: false"), "{agent}");
        let both = vectadb(
            "vectadb: {endpoint: 'http://127.0.0.1:1', generate_embeddings: true}\nlog_groups: [{name: /a}]\nagent: {generate_embeddings: false}\n",
            "c.yaml",
        );
        assert!(both.contains("generate_embeddings: true"), "{both}");
    }
}
