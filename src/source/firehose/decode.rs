//! Decoding what Firehose delivers: the request body (`{requestId,
//! timestamp, records: [{data}]}`, gzip when the stream compresses), and
//! each record, a CloudWatch Logs subscription message (base64 -> gzip ->
//! JSON `{messageType, owner, logGroup, logStream, subscriptionFilters,
//! logEvents: [{id, timestamp, message}]}`).

use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use crate::event::{Origin, RawEvent};
use crate::time::EpochMs;

/// Why a request or one of its records cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not valid gzip (with `Content-Encoding: gzip`).
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    /// Decompressed, the body is larger than allowed.
    #[error("the decompressed body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not a Firehose request.
    #[error(
        "the body is not a Firehose request ({{requestId, timestamp, records: [{{data}}]}}): {0}"
    )]
    Request(String),
    /// A record is not a CloudWatch Logs subscription message.
    #[error("record {index}: {reason}")]
    Record { index: usize, reason: RecordError },
}

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("data is not base64: {0}")]
    Base64(String),
    #[error("data is not gzip: {0}")]
    Gzip(String),
    #[error("data is not the json of a CloudWatch Logs subscription message: {0}")]
    Json(String),
}

impl RecordError {
    /// A short label for the rejects metric.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Base64(_) => "base64",
            RecordError::Gzip(_) => "gzip",
            RecordError::Json(_) => "json",
        }
    }
}

/// The body of one Firehose request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub request_id: String,
    pub timestamp: i64,
    pub records: Vec<Record>,
}

/// One record of a request.
#[derive(Debug, Deserialize)]
pub struct Record {
    /// Base64 of the record as the source wrote it.
    pub data: String,
}

/// A CloudWatch Logs subscription message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub log_group: String,
    #[serde(default)]
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    #[serde(default)]
    pub log_events: Vec<LogEvent>,
}

/// One event of a subscription message.
#[derive(Debug, Deserialize)]
pub struct LogEvent {
    /// The eventId FilterLogEvents gives the same event: digits, as a
    /// string (emulators send a number).
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    pub timestamp: EpochMs,
    pub message: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::Text(t) => t,
        Id::Number(n) => n.to_string(),
    })
}

/// Gunzips `data`, refusing more than `limit` bytes of output.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(out)
}

/// Parses a (decompressed) request body.
pub fn parse_request(body: &[u8]) -> Result<Request, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Request(e.to_string()))
}

/// Decodes one record's `data` into its subscription message.
pub fn decode_record(data: &str) -> Result<Message, RecordError> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| RecordError::Base64(e.to_string()))?;
    let mut json = Vec::with_capacity(gz.len() * 8);
    flate2::read::MultiGzDecoder::new(gz.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| RecordError::Gzip(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| RecordError::Json(e.to_string()))
}

/// Decodes every record of `request`: all or nothing, so that a request with
/// one bad record delivers none of its events.
pub fn decode_records(request: &Request) -> Result<Vec<Message>, DecodeError> {
    request
        .records
        .iter()
        .enumerate()
        .map(|(index, r)| {
            decode_record(&r.data).map_err(|reason| DecodeError::Record { index, reason })
        })
        .collect()
}

/// The Region of a Firehose delivery stream ARN
/// (`arn:aws:firehose:us-east-1:123456789012:deliverystream/name`).
pub fn region_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next()? == "arn").then_some(())?;
    parts.nth(2).filter(|r| !r.is_empty())
}

/// The events of the data messages (control messages carry none), in
/// record order, with the account (`owner`) and `region` as their origin.
pub fn raw_events(messages: Vec<Message>, region: Option<&str>) -> Vec<RawEvent> {
    let region: Option<Arc<str>> = region.map(Arc::from);
    let mut out = Vec::new();
    for m in messages {
        if m.message_type != "DATA_MESSAGE" {
            continue;
        }
        let origin = Origin {
            account: None,
            account_id: (!m.owner.is_empty()).then(|| Arc::from(m.owner.as_str())),
            region: region.clone(),
        };
        out.reserve(m.log_events.len());
        for e in m.log_events {
            out.push(RawEvent {
                log_group: m.log_group.clone(),
                log_stream: m.log_stream.clone(),
                event_id: e.id,
                timestamp_ms: e.timestamp,
                ingestion_time_ms: None,
                message: e.message,
                origin: origin.clone(),
            });
        }
    }
    out
}

/// A record's `data` for `message` (JSON, gzipped, base64): what CloudWatch
/// Logs writes. For tests and benches.
#[doc(hidden)]
pub fn encode_record(message: &serde_json::Value) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(message.to_string().as_bytes());
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data_message(events: serde_json::Value) -> serde_json::Value {
        json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/aws/lambda/f",
            "logStream": "2026/12/02/[$LATEST]abc",
            "subscriptionFilters": ["cwtap"],
            "logEvents": events,
        })
    }

    #[test]
    fn data_messages_become_raw_events_and_control_messages_none() {
        let body = json!({
            "requestId": "r-1",
            "timestamp": 1_795_161_600_000i64,
            "records": [
                {"data": encode_record(&data_message(json!([
                    {"id": "38000000000000000000000000000000000000000000000000000001", "timestamp": 1_795_161_600_001i64, "message": "a"},
                    {"id": 7, "timestamp": 1_795_161_600_002i64, "message": "b"}
                ])))},
                {"data": encode_record(&json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "", "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}))},
            ]
        });
        let request = parse_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(request.request_id, "r-1");
        let events = raw_events(
            decode_records(&request).unwrap(),
            region_of_arn("arn:aws:firehose:eu-west-1:123456789012:deliverystream/x"),
        );
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].event_id,
            "38000000000000000000000000000000000000000000000000000001"
        );
        assert_eq!(events[1].event_id, "7");
        assert_eq!(events[0].timestamp_ms, 1_795_161_600_001);
        assert_eq!(events[0].log_group, "/aws/lambda/f");
        assert_eq!(events[0].origin.account_id.as_deref(), Some("123456789012"));
        assert_eq!(events[0].origin.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn a_bad_record_is_named_by_its_index_and_kind() {
        let good = encode_record(&data_message(json!([])));
        let not_gzip = base64::engine::general_purpose::STANDARD.encode(b"plain text");
        let not_json = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(b"{not json").unwrap();
            base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
        };
        for (bad, kind) in [
            ("%%%", "base64"),
            (not_gzip.as_str(), "gzip"),
            (not_json.as_str(), "json"),
        ] {
            let body = json!({"requestId": "r", "timestamp": 1, "records": [{"data": good}, {"data": bad}]});
            let request = parse_request(body.to_string().as_bytes()).unwrap();
            match decode_records(&request) {
                Err(DecodeError::Record { index: 1, reason }) => assert_eq!(reason.reason(), kind),
                other => panic!("{kind}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_request(b"{\"records\": 5}"),
            Err(DecodeError::Request(_))
        ));
    }

    #[test]
    fn gunzip_refuses_output_past_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 100_000]).unwrap();
        let bomb = gz.finish().unwrap();
        assert_eq!(gunzip(&bomb, 1_000), Err(DecodeError::TooLarge(1_000)));
        assert_eq!(gunzip(&bomb, 100_000).unwrap().len(), 100_000);
        assert!(matches!(gunzip(b"nope", 10), Err(DecodeError::Gzip(_))));
    }
}
