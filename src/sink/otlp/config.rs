//! The `otlp:` section: as written, validated, and built into the sink.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::OtlpSink;
use crate::config::{AgentConfig, Invalid, Sections, check_http_url, invalid, non_empty};
use crate::sink::{OutputConfig, OutputKind, Sink, SinkError};

/// The output's registration (see [`crate::sink::OUTPUTS`]).
pub const OUTPUT: OutputKind = OutputKind { name: "otlp", load };

/// The largest `max_batch_bytes` accepted: well under what OTLP receivers
/// take (the Collector's default limit is 20 MiB per request).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Headers cwtap sets itself; a configured one of these would corrupt the
/// request.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
];

/// `otlp:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// Base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/logs` and
    /// `/v1/traces` are appended.
    pub endpoint: String,
    /// Sent with every request (an API key, a tenant id).
    pub headers: Option<BTreeMap<String, String>>,
    /// `gzip` or `none`.
    pub compression: Option<String>,
    pub timeout_secs: Option<u64>,
    pub batch_size: Option<usize>,
    pub max_batch_bytes: Option<usize>,
    pub max_backoff_secs: Option<u64>,
    /// PEM file of CA certificates trusted besides the system roots.
    pub ca_file: Option<String>,
    /// Whether an empty export request must succeed before the agent starts.
    pub health_check: Option<bool>,
    /// Whether closed traces' Lambda invocations are exported as spans.
    pub traces: Option<bool>,
}

// Hand-written so that header values (API keys) never reach a log line
// through `{:?}`.
impl std::fmt::Debug for RawOtlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawOtlp")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.as_ref().map(|h| h.keys().collect::<Vec<_>>()),
            )
            .finish_non_exhaustive()
    }
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// One configured header: its value is a secret as far as cwtap knows.
#[derive(Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

/// The validated `otlp:` section.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Base URL, without a trailing slash.
    pub endpoint: String,
    /// Sent with every request; values are marked sensitive.
    pub headers: Vec<Header>,
    pub compression: Compression,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Most records (log records; a summary counts once) in one request.
    pub batch_size: usize,
    /// Bound on one request body before compression.
    pub max_batch_bytes: usize,
    /// Cap of the exponential backoff between retries of one request.
    pub max_backoff: Duration,
    /// PEM bundle of CA certificates trusted for an https endpoint besides
    /// the system roots; certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// Whether an empty `POST /v1/logs` must succeed before the agent starts.
    pub health_check: bool,
    /// Whether Lambda invocations of closed traces go out as spans.
    pub traces: bool,
}

impl OtlpConfig {
    /// The defaults, for `endpoint`.
    pub fn with_endpoint(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            headers: Vec::new(),
            compression: Compression::None,
            timeout: Duration::from_secs(10),
            // The OpenTelemetry SDKs' default export batch.
            batch_size: 512,
            max_batch_bytes: 4 * 1024 * 1024,
            max_backoff: Duration::from_secs(60),
            ca_file: None,
            health_check: true,
            traces: true,
        }
    }

    /// Where log records go.
    pub fn logs_url(&self) -> String {
        format!("{}/v1/logs", self.endpoint)
    }

    /// Where spans go.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint)
    }
}

fn load(sections: &Sections<'_>) -> Result<Option<Arc<dyn OutputConfig>>, Invalid> {
    let Some(o) = sections.get::<RawOtlp>("otlp")? else {
        return Ok(None);
    };
    let d = OtlpConfig::with_endpoint(o.endpoint.trim());
    check_http_url(&d.endpoint, "otlp.endpoint")?;
    for signal in ["/v1/logs", "/v1/traces"] {
        if d.endpoint.ends_with(signal) {
            return Err(invalid(
                "otlp.endpoint",
                format!(
                    "{:?} ends with {signal}: give the base URL (as OTEL_EXPORTER_OTLP_ENDPOINT), cwtap appends /v1/logs and /v1/traces",
                    d.endpoint
                ),
            ));
        }
    }
    let batch_size = o.batch_size.unwrap_or(d.batch_size);
    if batch_size == 0 {
        return Err(invalid("otlp.batch_size", "must be at least 1"));
    }
    let max_batch_bytes = o.max_batch_bytes.unwrap_or(d.max_batch_bytes);
    if !(1024..=MAX_BATCH_BYTES).contains(&max_batch_bytes) {
        return Err(invalid(
            "otlp.max_batch_bytes",
            format!("must be between 1024 and {MAX_BATCH_BYTES} bytes"),
        ));
    }
    let compression = match o.compression.as_deref().map(str::trim) {
        None | Some("none") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some(other) => {
            return Err(invalid(
                "otlp.compression",
                format!("{other:?} is not supported: use gzip or none"),
            ));
        }
    };
    let mut headers = Vec::new();
    for (name, value) in o.headers.unwrap_or_default() {
        let key = format!("otlp.headers.{name}");
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid(&key, "is not a valid HTTP header name"))?;
        if RESERVED_HEADERS.contains(&header_name.as_str()) {
            return Err(invalid(
                &key,
                "is set by cwtap itself and cannot be configured",
            ));
        }
        // The value is never shown: it may be a key.
        let mut header_value = HeaderValue::from_str(value.trim()).map_err(|_| {
            invalid(
                &key,
                "the value is not a valid HTTP header value (control characters or non-ASCII)",
            )
        })?;
        header_value.set_sensitive(true);
        headers.push(Header {
            name: header_name,
            value: header_value,
        });
    }
    let ca_file = non_empty(o.ca_file, "otlp.ca_file")?.map(|p| sections.base_dir.join(p));
    if let Some(path) = &ca_file {
        crate::sink::read_ca_file(path).map_err(|e| invalid("otlp.ca_file", e))?;
    }
    let timeout = crate::sink::whole_secs(o.timeout_secs, d.timeout, "otlp.timeout_secs")?;
    let max_backoff =
        crate::sink::whole_secs(o.max_backoff_secs, d.max_backoff, "otlp.max_backoff_secs")?;
    Ok(Some(Arc::new(OtlpConfig {
        headers,
        compression,
        timeout,
        batch_size,
        max_batch_bytes,
        max_backoff,
        ca_file,
        health_check: o.health_check.unwrap_or(d.health_check),
        traces: o.traces.unwrap_or(d.traces),
        ..d
    })))
}

impl OutputConfig for OtlpConfig {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|h| h.name.as_str()).collect();
        format!(
            "OTLP/HTTP at {} (logs to /v1/logs{}; batches of {} records, at most {} bytes; {}; headers: {})",
            self.endpoint,
            if self.traces {
                ", Lambda invocations as spans to /v1/traces"
            } else {
                ""
            },
            self.batch_size,
            self.max_batch_bytes,
            match self.compression {
                Compression::Gzip => "gzip",
                Compression::None => "uncompressed",
            },
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    }

    fn build(&self, agent: &AgentConfig) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(OtlpSink::new(self.clone(), agent)?))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn load(otlp: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(
            &format!("otlp: {otlp}\nlog_groups: [{{name: /a}}]\n"),
            Path::new("/etc/cwtap/c.yaml"),
        )
    }

    fn error(otlp: &str) -> (String, String) {
        match load(otlp) {
            Err(ConfigError::Invalid { key, message, .. }) => (key, message),
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_otlp_exporter_conventions() {
        let config = load("{endpoint: 'http://127.0.0.1:4318/'}").expect("loads");
        let shown = format!("{:?}", config.output);
        assert!(
            shown.contains("endpoint: \"http://127.0.0.1:4318\""),
            "{shown}"
        );
        assert!(shown.contains("batch_size: 512"), "{shown}");
        assert!(shown.contains("compression: None"), "{shown}");
        assert!(config.output.describe().contains("/v1/traces"));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        assert_eq!(error("{endpoint: 'ftp://x'}").0, "otlp.endpoint");
        let (key, message) = error("{endpoint: 'http://127.0.0.1:4318/v1/logs'}");
        assert_eq!(key, "otlp.endpoint");
        assert!(message.contains("base URL"), "{message}");
        assert_eq!(
            error("{endpoint: 'http://h', batch_size: 0}").0,
            "otlp.batch_size"
        );
        assert_eq!(
            error("{endpoint: 'http://h', max_batch_bytes: 10}").0,
            "otlp.max_batch_bytes"
        );
        assert_eq!(
            error("{endpoint: 'http://h', compression: zstd}").0,
            "otlp.compression"
        );
        assert_eq!(
            error("{endpoint: 'http://h', headers: {'bad name': x}}").0,
            "otlp.headers.bad name"
        );
        assert_eq!(
            error("{endpoint: 'http://h', headers: {Content-Type: x}}").0,
            "otlp.headers.Content-Type"
        );
        assert_eq!(
            error("{endpoint: 'http://h', ca_file: ' '}").0,
            "otlp.ca_file"
        );
        let (key, message) = error("{endpoint: 'http://h', batchsize: 5}");
        assert_eq!(key, "otlp");
        assert!(message.contains("batchsize"), "{message}");
    }

    #[test]
    fn header_values_never_show_in_debug_output_or_describe() {
        let dir = crate::sink::pem_files();
        let config = Config::from_yaml(
            "otlp: {endpoint: 'https://h', headers: {x-api-key: sk-do-not-print}, ca_file: ca.pem}\nlog_groups: [{name: /a}]\n",
            &dir.path().join("c.yaml"),
        )
        .expect("loads");
        let shown = format!("{:?} {}", config.output, config.output.describe());
        assert!(!shown.contains("sk-do-not-print"), "{shown}");
        assert!(shown.contains("x-api-key"), "{shown}");
        assert!(
            shown.contains(&format!("{}", dir.path().join("ca.pem").display())),
            "{shown}"
        );
        let (key, message) = error("{endpoint: 'https://h', ca_file: not-there.pem}");
        assert_eq!(key, "otlp.ca_file");
        assert!(
            message.contains("cannot read /etc/cwtap/not-there.pem"),
            "{message}"
        );
    }
}
