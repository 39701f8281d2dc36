//! Decoding what Firehose delivers: the request body (`{requestId,
//! timestamp, records: [{data}]}`, gzip when the stream compresses), and
//! each record, a CloudWatch Logs subscription message (base64 -> gzip ->
//! JSON `{messageType, owner, logGroup, logStream, subscriptionFilters,
//! logEvents: [{id, timestamp, message}]}`).

use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use crate::event::read::{Cursor, DEPTH};
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
    #[error("data inflates to more than {0} bytes")]
    TooLarge(usize),
}

impl RecordError {
    /// A short label for the rejects metric.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Base64(_) => "base64",
            RecordError::Gzip(_) => "gzip",
            RecordError::Json(_) => "json",
            RecordError::TooLarge(_) => "record_too_large",
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
    // A visitor rather than an untagged enum, which would buffer every id
    // into serde's intermediate `Content` before trying each variant.
    struct Id;
    impl serde::de::Visitor<'_> for Id {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an event id (a string of digits or a number)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Id)
}

/// A subscription message read in one pass ([`crate::event::read`]: its
/// events' messages are most of its bytes, JSON-escaped); `None` for what
/// that reader does not take, and for anything the serde reader above
/// would refuse (a missing or repeated member, a `null` for a string).
fn read_message(json: &[u8]) -> Option<Message> {
    let mut c = Cursor::new(std::str::from_utf8(json).ok()?);
    let (mut message_type, mut owner, mut log_group, mut log_stream) = (None, None, None, None);
    let (mut filters, mut events) = (None, None);
    c.object(|c, key| {
        let string = |c: &mut Cursor<'_>, slot: &mut Option<String>| {
            let value = c.string()??;
            slot.is_none().then(|| *slot = Some(value))
        };
        match key {
            "messageType" => string(c, &mut message_type)?,
            "owner" => string(c, &mut owner)?,
            "logGroup" => string(c, &mut log_group)?,
            "logStream" => string(c, &mut log_stream)?,
            "subscriptionFilters" if filters.is_none() => {
                filters = Some(c.list(|c| c.string()?)??);
            }
            "logEvents" if events.is_none() => events = Some(c.list(read_event)??),
            "subscriptionFilters" | "logEvents" => return None,
            _ => c.skip(DEPTH)?,
        }
        Some(())
    })?;
    c.end()?;
    Some(Message {
        message_type: message_type?,
        owner: owner.unwrap_or_default(),
        log_group: log_group.unwrap_or_default(),
        log_stream: log_stream.unwrap_or_default(),
        subscription_filters: filters.unwrap_or_default(),
        log_events: events.unwrap_or_default(),
    })
}

/// One of a subscription message's `logEvents`.
fn read_event(c: &mut Cursor<'_>) -> Option<LogEvent> {
    let (mut id, mut timestamp, mut message) = (None, None, None);
    c.object(|c, key| {
        match key {
            "id" if id.is_none() => {
                id = Some(match c.peek()? {
                    // A number from an emulator: unsigned, as serde reads it.
                    b'0'..=b'9' => c.int()??.to_string(),
                    _ => c.string()??,
                });
            }
            "timestamp" if timestamp.is_none() => timestamp = Some(c.int()??),
            "message" if message.is_none() => message = Some(c.string()??),
            "id" | "timestamp" | "message" => return None,
            _ => c.skip(DEPTH)?,
        }
        Some(())
    })?;
    Some(LogEvent {
        id: id?,
        timestamp: timestamp?,
        message: message?,
    })
}

/// The largest subscription message one record may decode to. CloudWatch
/// Logs writes a record per batch of at most 1 MiB of events; with ids and
/// JSON escaping a message stays well under this, and a record that
/// inflates past it (a gzip bomb) is refused without inflating the rest.
pub const RECORD_LIMIT: usize = 16 * 1024 * 1024;

/// Inflates the gzip `data` (one or more members), refusing more than
/// `limit` bytes of output: `Err(None)` past the limit, `Err(Some(why))`
/// when it is not gzip.
fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, Option<String>> {
    // A gzip member ends with its uncompressed size (mod 2^32): the output
    // buffer is allocated once instead of grown and copied. It is only a
    // hint (a forged size is capped by the limit and by deflate's best
    // ratio of about 1032:1).
    let hint = match data.len() {
        n if n >= 18 => {
            let t = &data[n - 4..];
            u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize
        }
        _ => 0,
    };
    let cap = hint
        .min(data.len().saturating_mul(1032))
        .min(limit.saturating_add(1));
    let mut out = Vec::with_capacity(cap);
    // Read from the slice itself (a `BufRead`): the `read` decoder would
    // copy it through a 32 KB buffer, zeroed for every record.
    flate2::bufread::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Some(e.to_string()))?;
    if out.len() > limit {
        return Err(None);
    }
    Ok(out)
}

/// Gunzips `data`, refusing more than `limit` bytes of output.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    inflate(data, limit).map_err(|e| match e {
        Some(why) => DecodeError::Gzip(why),
        None => DecodeError::TooLarge(limit),
    })
}

/// Parses a (decompressed) request body.
pub fn parse_request(body: &[u8]) -> Result<Request, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Request(e.to_string()))
}

/// Decodes one record's `data` into its subscription message, and the
/// size it inflated to.
fn decode_record(data: &str) -> Result<(Message, usize), RecordError> {
    let gz = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| RecordError::Base64(e.to_string()))?;
    let json = inflate(&gz, RECORD_LIMIT).map_err(|e| match e {
        Some(why) => RecordError::Gzip(why),
        None => RecordError::TooLarge(RECORD_LIMIT),
    })?;
    // serde_json reads what the one-pass reader does not take, and names
    // what is wrong with it.
    let message = match read_message(&json) {
        Some(message) => message,
        None => serde_json::from_slice(&json).map_err(|e| RecordError::Json(e.to_string()))?,
    };
    // The id is the de-duplication key: an empty one would make every
    // later event without one a "duplicate" (control messages carry "").
    if message.message_type == "DATA_MESSAGE"
        && let Some(i) = message.log_events.iter().position(|e| e.id.is_empty())
    {
        return Err(RecordError::Json(format!("logEvents[{i}].id is empty")));
    }
    Ok((message, json.len()))
}

/// Decodes every record of `request`: all or nothing, so that a request with
/// one bad record delivers none of its events. The records may inflate to
/// `limit` bytes in all; past it, `TooLarge`. With the messages, the bytes
/// they inflated to.
pub fn decode_records(
    request: &Request,
    limit: usize,
) -> Result<(Vec<Message>, usize), DecodeError> {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(request.records.len());
    for (index, r) in request.records.iter().enumerate() {
        let (message, size) =
            decode_record(&r.data).map_err(|reason| DecodeError::Record { index, reason })?;
        total = total.saturating_add(size);
        if total > limit {
            return Err(DecodeError::TooLarge(limit));
        }
        out.push(message);
    }
    Ok((out, total))
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
            decode_records(&request, RECORD_LIMIT).unwrap().0,
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
    fn an_event_past_the_year_9999_is_delivered_with_its_number_not_a_panic() {
        // Any i64 is a valid timestamp in a pushed record; formatting it
        // once panicked past what RFC 3339 can write.
        let body = json!({
            "requestId": "r-far",
            "timestamp": 1_795_161_600_000i64,
            "records": [{"data": encode_record(&data_message(json!([
                {"id": "1", "timestamp": 253_402_300_800_000i64, "message": "{\"a\":1}"},
                {"id": "2", "timestamp": i64::MAX, "message": "text"}
            ])))}]
        });
        let request = parse_request(body.to_string().as_bytes()).unwrap();
        let raw = raw_events(decode_records(&request, RECORD_LIMIT).unwrap().0, None);
        let rules = crate::parse::RuleSet::builtin("json").unwrap();
        let out: Vec<serde_json::Value> = raw
            .into_iter()
            .map(|e| {
                let parsed = rules.parse(&e.message);
                let event = crate::event::OutEvent::build(e, parsed, None);
                let line =
                    crate::event::Record::Event(event).to_json(crate::trace::KeyField::SessionId);
                serde_json::from_slice(&line).unwrap()
            })
            .collect();
        assert_eq!(out[0]["timestamp"], "10000-01-01T00:00:00.000Z");
        assert_eq!(out[0]["properties"]["a"], 1);
        assert_eq!(out[1]["timestamp"], "292278994-08-17T07:12:55.807Z");
        assert_eq!(out[1]["source"]["log_id"], "2");
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
        let empty_id = encode_record(&data_message(
            json!([{"id": "", "timestamp": 1, "message": "no id"}]),
        ));
        for (bad, kind) in [
            ("%%%", "base64"),
            (not_gzip.as_str(), "gzip"),
            (not_json.as_str(), "json"),
            (empty_id.as_str(), "json"),
        ] {
            let body = json!({"requestId": "r", "timestamp": 1, "records": [{"data": good}, {"data": bad}]});
            let request = parse_request(body.to_string().as_bytes()).unwrap();
            match decode_records(&request, RECORD_LIMIT) {
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
    fn gzip_of_several_members_inflates_whole_and_a_cut_one_is_refused() {
        use std::io::Write;
        let member = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap()
        };
        let mut two = member(b"{\"a\":");
        two.extend(member(b"1}"));
        assert_eq!(gunzip(&two, RECORD_LIMIT).unwrap(), b"{\"a\":1}");
        let cut = &two[..two.len() - 3];
        assert!(matches!(
            gunzip(cut, RECORD_LIMIT),
            Err(DecodeError::Gzip(_))
        ));
        assert!(matches!(gunzip(&two, 3), Err(DecodeError::TooLarge(3))));
    }

    #[test]
    fn a_record_or_a_request_that_inflates_past_its_bound_is_refused() {
        use std::io::Write;
        let gzip_b64 = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(bytes).unwrap();
            base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
        };
        // 17 MiB of spaces in front of a valid message: 17 kB of base64.
        let mut bomb = vec![b' '; RECORD_LIMIT + (1 << 20)];
        bomb.extend_from_slice(data_message(json!([])).to_string().as_bytes());
        let good = encode_record(&data_message(json!([
            {"id": "1", "timestamp": 1, "message": "x".repeat(1000)}
        ])));
        let body = json!({"requestId": "r", "timestamp": 1, "records": [{"data": good}, {"data": gzip_b64(&bomb)}]});
        let request = parse_request(body.to_string().as_bytes()).unwrap();
        match decode_records(&request, usize::MAX) {
            Err(DecodeError::Record { index: 1, reason }) => {
                assert_eq!(reason, RecordError::TooLarge(RECORD_LIMIT));
                assert_eq!(reason.reason(), "record_too_large");
            }
            other => panic!("{other:?}"),
        }

        // Each record within its bound, the request past the total.
        let body =
            json!({"requestId": "r", "timestamp": 1, "records": [{"data": good}, {"data": good}]});
        let request = parse_request(body.to_string().as_bytes()).unwrap();
        let (messages, size) = decode_records(&request, usize::MAX).unwrap();
        assert_eq!(messages.len(), 2);
        assert!(size > 2000, "{size}");
        assert_eq!(
            decode_records(&request, size - 1).unwrap_err(),
            DecodeError::TooLarge(size - 1)
        );
        assert_eq!(decode_records(&request, size).unwrap().1, size);
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

    /// What the one-pass reader and serde_json make of `json`, which must
    /// agree: the same message, or the one-pass reader leaves it to serde.
    fn both(json: &str) -> (Option<String>, Result<String, String>) {
        let fast = read_message(json.as_bytes()).map(|m| format!("{m:?}"));
        let serde = serde_json::from_str::<Message>(json)
            .map(|m| format!("{m:?}"))
            .map_err(|e| e.to_string());
        (fast, serde)
    }

    #[test]
    fn the_one_pass_reader_reads_what_serde_reads_and_leaves_it_the_rest() {
        let read_alike = [
            data_message(json!([
                {"id": "3800", "timestamp": 1, "message": "{\"a\":\"\\u00e9\\n\"}\t"},
                {"id": 3801, "timestamp": -5, "message": "", "extra": [1, {"x": null}]},
            ]))
            .to_string(),
            r#"{"messageType":"CONTROL_MESSAGE","logEvents":[],"more":{"a":[true,false]}}"#.into(),
            r#"{"messageType":"DATA_MESSAGE"}"#.into(),
        ];
        for json in &read_alike {
            let (fast, serde) = both(json);
            assert_eq!(fast.as_deref(), Some(serde.as_deref().unwrap()), "{json}");
        }
        let left_to_serde = [
            r#"{"owner":"1"}"#,
            r#"{"messageType":null}"#,
            r#"{"messageType":"DATA_MESSAGE","messageType":"DATA_MESSAGE"}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[],"logEvents":[]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1}]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","id":"2","timestamp":1,"message":""}]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":-1,"timestamp":1,"message":""}]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1.5,"message":""}]}"#,
            r#"{"messageType":"DATA_MESSAGE","subscriptionFilters":null}"#,
            r#"{"messageType":"DATA_MESSAGE"} x"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":"\ud800"}]}"#,
        ];
        for json in left_to_serde {
            let (fast, serde) = both(json);
            assert_eq!(fast, None, "{json}");
            assert!(serde.is_err(), "{json}");
        }
    }

    proptest::proptest! {
        /// No record text makes the one-pass reader panic.
        #[test]
        fn no_record_text_panics(
            text in "[{}\\[\\]\":,\\\\ nultrfase0-9.\\-éx]{0,80}",
            member in "(messageType|logEvents|id|timestamp|message|owner)",
        ) {
            let _ = read_message(text.as_bytes());
            let json = format!(r#"{{"messageType":"DATA_MESSAGE","logEvents":[{{"{member}":{text}}}]}}"#);
            let _ = read_message(json.as_bytes());
        }
    }
}
