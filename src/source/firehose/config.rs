//! The `firehose:` section: where `cwtap serve` listens and what it accepts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::raw::DurationValue;
use crate::config::{
    GroupConfig, GroupSelector, Invalid, ReadMode, Secret, Sections, StreamFilter, duration,
    invalid, non_empty,
};
use crate::parse::RuleSet;
use crate::parse::spec::RawParser;

/// The section's name.
pub const SECTION: &str = "firehose";

/// Firehose's largest HTTP endpoint buffer is 64 MiB (uncompressed
/// records, base64 on top): the default bound of one request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 96 * 1024 * 1024;

/// `firehose:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirehose {
    /// `HOST:PORT` to listen on.
    pub listen: String,
    /// The access key configured on the delivery stream's HTTP endpoint.
    pub access_key: String,
    /// PEM certificate chain and private key: HTTPS instead of HTTP.
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_in_flight_requests: Option<usize>,
    pub max_in_flight_bytes: Option<usize>,
    pub request_timeout_secs: Option<DurationValue>,
    pub dedup_window_secs: Option<DurationValue>,
    /// Rules for log groups no `log_groups` entry selects.
    pub default_parsers: Option<Vec<RawParser>>,
}

// Hand-written so that the access key never reaches a log line.
impl std::fmt::Debug for RawFirehose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFirehose")
            .field("listen", &self.listen)
            .field("access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The validated `firehose:` section.
#[derive(Debug, Clone)]
pub struct FirehoseConfig {
    pub listen: SocketAddr,
    pub access_key: Secret,
    /// Certificate chain and key files, for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest request body, as received (compressed or not), and largest
    /// decompressed body.
    pub max_body_bytes: usize,
    /// Requests handled at once, and their decompressed bytes at most;
    /// beyond either a request is answered 503 (Firehose retries it).
    pub max_in_flight_requests: usize,
    pub max_in_flight_bytes: usize,
    /// A request not delivered by then is answered 503 (Firehose waits 3
    /// minutes, then retries).
    pub request_timeout: Duration,
    /// How long the ids of delivered events are kept: a retry arriving
    /// later than this delivers its events again.
    pub dedup_window: Duration,
    /// The rules of groups no `log_groups` entry selects.
    pub default_group: Arc<GroupConfig>,
}

pub(crate) fn load(sections: &Sections<'_>) -> Result<Option<Arc<FirehoseConfig>>, Invalid> {
    let Some(raw) = sections.get::<RawFirehose>(SECTION)? else {
        return Ok(None);
    };
    let listen = raw.listen.trim().parse::<SocketAddr>().map_err(|_| {
        invalid(
            "firehose.listen",
            format!(
                "{:?} is not an IP:PORT address (e.g. 0.0.0.0:8443)",
                raw.listen
            ),
        )
    })?;
    let access_key = non_empty(Some(raw.access_key), "firehose.access_key")?
        .map(Secret::new)
        .ok_or_else(|| invalid("firehose.access_key", "must not be empty"))?;
    if access_key.expose().len() > 4096 {
        return Err(invalid(
            "firehose.access_key",
            "is longer than the 4,096 bytes Firehose sends",
        ));
    }
    let file = |v: Option<String>, key: &str| -> Result<Option<PathBuf>, Invalid> {
        Ok(non_empty(v, key)?.map(|p| sections.base_dir.join(p)))
    };
    let tls = match (
        file(raw.tls_cert_file, "firehose.tls_cert_file")?,
        file(raw.tls_key_file, "firehose.tls_key_file")?,
    ) {
        (Some(c), Some(k)) => {
            super::server_tls(&c, &k)?;
            Some((c, k))
        }
        (None, None) => None,
        _ => {
            return Err(invalid(
                "firehose.tls_cert_file, firehose.tls_key_file",
                "give both (HTTPS) or neither (HTTP, TLS ended at a load balancer)",
            ));
        }
    };
    let positive = |v: Option<usize>, default: usize, key: &str| match v {
        None => Ok(default),
        Some(0) => Err(invalid(key, "must be at least 1")),
        Some(n) => Ok(n),
    };
    let max_body_bytes = positive(
        raw.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES,
        "firehose.max_body_bytes",
    )?;
    let max_in_flight_bytes = positive(
        raw.max_in_flight_bytes,
        4 * DEFAULT_MAX_BODY_BYTES,
        "firehose.max_in_flight_bytes",
    )?;
    if max_in_flight_bytes < max_body_bytes {
        return Err(invalid(
            "firehose.max_in_flight_bytes",
            "must not be smaller than firehose.max_body_bytes",
        ));
    }
    let request_timeout = duration(
        &raw.request_timeout_secs,
        "firehose.request_timeout_secs",
        Duration::from_secs(150),
    )?;
    if request_timeout.is_zero() || request_timeout >= Duration::from_secs(180) {
        return Err(invalid(
            "firehose.request_timeout_secs",
            "must be more than 0 and under 180 s (Firehose waits 3 minutes for an answer)",
        ));
    }
    let default_parsers = raw.default_parsers.unwrap_or_else(|| {
        ["lambda", "json"]
            .into_iter()
            .map(|set| RawParser {
                use_set: Some(set.into()),
                ..RawParser::default()
            })
            .collect()
    });
    let rules = RuleSet::load(&default_parsers, "firehose.default_parsers", sections.rules)
        .map_err(|e| e.into_pair())?;
    Ok(Some(Arc::new(FirehoseConfig {
        listen,
        access_key,
        tls,
        max_body_bytes,
        max_in_flight_requests: positive(
            raw.max_in_flight_requests,
            8,
            "firehose.max_in_flight_requests",
        )?,
        max_in_flight_bytes,
        request_timeout,
        dedup_window: {
            let window = duration(
                &raw.dedup_window_secs,
                "firehose.dedup_window_secs",
                Duration::from_secs(3 * 3600),
            )?;
            // Firehose retries for up to 2 hours: a shorter window lets a
            // late retry deliver again; none would make every retry do so.
            if window < Duration::from_secs(60) {
                return Err(invalid(
                    "firehose.dedup_window_secs",
                    "must be at least 60s (Firehose retries a request for up to its retry duration, at most 2 hours)",
                ));
            }
            window
        },
        default_group: Arc::new(GroupConfig {
            key: "firehose.default_parsers".into(),
            selector: GroupSelector::Prefix(String::new()),
            account: crate::config::DEFAULT_ACCOUNT.into(),
            agent_id: None,
            filter_pattern: None,
            streams: StreamFilter::All,
            mode: ReadMode::Filter,
            rules: Arc::new(rules),
        }),
    })))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml(yaml, Path::new("/etc/cwtap/c.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn tls_files_are_read_when_the_config_loads() {
        let dir = crate::sink::pem_files();
        let load = |cert: &str, key: &str| {
            let yaml = format!(
                "ndjson: {{path: '-'}}\nfirehose: {{listen: '127.0.0.1:1', access_key: k, tls_cert_file: {cert}, tls_key_file: {key}}}\n"
            );
            Config::from_yaml(&yaml, &dir.path().join("c.yaml")).map_err(|e| e.to_string())
        };
        let config = load("ca.pem", "key.pem").expect("a certificate and its key load");
        assert!(config.firehose.expect("firehose").tls.is_some());
        let e = load("ca.pem", "not.pem").unwrap_err();
        assert!(
            e.contains("firehose.tls_key_file") && e.contains("not.pem"),
            "{e}"
        );
        let e = load("not.pem", "key.pem").unwrap_err();
        assert!(
            e.contains("firehose.tls_cert_file") && e.contains("not.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_receive_only_config_needs_no_log_groups_and_names_bad_keys() {
        let config =
            load("ndjson: {path: '-'}\nfirehose: {listen: '127.0.0.1:8443', access_key: k}\n")
                .expect("loads");
        let f = config.firehose.expect("firehose section");
        assert_eq!(f.listen.port(), 8443);
        assert!(!f.default_group.rules.rule_names().is_empty());
        assert!(!format!("{f:?}").contains("access_key: Secret(\"k\")"));
        for (yaml, key) in [
            (
                "firehose: {listen: 'nowhere', access_key: k}",
                "firehose.listen",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: ''}",
                "firehose.access_key",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: k, tls_cert_file: c.pem}",
                "firehose.tls_cert_file",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: k, tls_cert_file: c.pem, tls_key_file: k.pem}",
                "firehose.tls_cert_file: /etc/cwtap/c.pem",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: k, request_timeout_secs: 200}",
                "firehose.request_timeout_secs",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: k, dedup_window_secs: 0}",
                "firehose.dedup_window_secs",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: k}\nagent: {listen: '127.0.0.1:1'}",
                "firehose.listen: 127.0.0.1:1 is agent.listen too",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', access_key: k, default_parsers: [{use: nope}]}",
                "firehose.default_parsers[0].use",
            ),
            (
                "firehose: {listen: '127.0.0.1:1', acess_key: k}",
                "acess_key",
            ),
        ] {
            let e = load(&format!("ndjson: {{path: '-'}}\n{yaml}\n")).unwrap_err();
            assert!(e.contains(key), "{yaml}: {e}");
        }
        // Without firehose:, log_groups stays required.
        assert!(
            load("ndjson: {path: '-'}\n")
                .unwrap_err()
                .contains("log_groups")
        );
    }
}
