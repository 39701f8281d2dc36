//! A FilterLogEvents or GetLogEvents page read in one pass
//! ([`crate::event::read`]): the message, stream name and eventId are
//! unescaped once into their final strings, everything else is skipped.
//! A page this reader does not take (an escaped key, a timestamp that is
//! not an integer, text after the object) gives `None`, and the SDK's own
//! reader has the body.

use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsOutput;
use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, OutputLogEvent};

use crate::event::read::{Cursor, DEPTH};

/// About the fewest bytes an event of a page takes: its timestamps, ids
/// and stream name are about 150, a short message 100 more. A page is
/// read into a list sized for its text at this many bytes an event.
const EVENT_BYTES: usize = 256;

/// FilterLogEvents' response (AWS JSON 1.1).
pub(super) fn filter_page(text: &str) -> Option<FilterLogEventsOutput> {
    let mut c = Cursor::new(text);
    let mut events = None;
    let mut next_token = None;
    c.object(|c, key| {
        match key {
            "events" => events = c.list_sized(EVENT_BYTES, filtered)?,
            "nextToken" => next_token = c.string()?,
            _ => c.skip(DEPTH)?,
        }
        Some(())
    })?;
    c.end()?;
    Some(
        FilterLogEventsOutput::builder()
            .set_events(events)
            .set_next_token(next_token)
            .build(),
    )
}

/// GetLogEvents' response.
pub(super) fn get_page(text: &str) -> Option<GetLogEventsOutput> {
    let mut c = Cursor::new(text);
    let mut events = None;
    let (mut forward, mut backward) = (None, None);
    c.object(|c, key| {
        match key {
            "events" => events = c.list_sized(EVENT_BYTES, output)?,
            "nextForwardToken" => forward = c.string()?,
            "nextBackwardToken" => backward = c.string()?,
            _ => c.skip(DEPTH)?,
        }
        Some(())
    })?;
    c.end()?;
    Some(
        GetLogEventsOutput::builder()
            .set_events(events)
            .set_next_forward_token(forward)
            .set_next_backward_token(backward)
            .build(),
    )
}

/// One event of a FilterLogEvents page.
fn filtered(c: &mut Cursor<'_>) -> Option<FilteredLogEvent> {
    let (mut stream, mut id, mut e) = (None, None, Event::default());
    c.object(|c, key| {
        match key {
            "logStreamName" => stream = c.string()?,
            "eventId" => id = c.string()?,
            _ => e.member(c, key)?,
        }
        Some(())
    })?;
    Some(
        FilteredLogEvent::builder()
            .set_log_stream_name(stream)
            .set_timestamp(e.timestamp)
            .set_message(e.message)
            .set_ingestion_time(e.ingestion_time)
            .set_event_id(id)
            .build(),
    )
}

/// One event of a GetLogEvents page.
fn output(c: &mut Cursor<'_>) -> Option<OutputLogEvent> {
    let mut e = Event::default();
    c.object(|c, key| e.member(c, key))?;
    Some(
        OutputLogEvent::builder()
            .set_timestamp(e.timestamp)
            .set_message(e.message)
            .set_ingestion_time(e.ingestion_time)
            .build(),
    )
}

/// The members both calls' events have.
#[derive(Default)]
struct Event {
    timestamp: Option<i64>,
    message: Option<String>,
    ingestion_time: Option<i64>,
}

impl Event {
    /// Reads the member `key` into its place, or skips it.
    fn member(&mut self, c: &mut Cursor<'_>, key: &str) -> Option<()> {
        match key {
            "timestamp" => self.timestamp = c.int()?,
            "message" => self.message = c.string()?,
            "ingestionTime" => self.ingestion_time = c.int()?,
            _ => c.skip(DEPTH)?,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn message(body: &str) -> Option<Option<String>> {
        let page = filter_page(body)?;
        Some(page.events().first()?.message().map(str::to_owned))
    }

    #[test]
    fn what_is_not_plain_json_of_the_expected_shape_is_left_to_the_sdk() {
        let refused = [
            r#"{"events":[{"message":"a	b"}]}"#,
            r#"{"events":[{"message":"\x"}]}"#,
            r#"{"events":[{"message":"\u12"}]}"#,
            r#"{"events":[{"message":"\udc00"}]}"#,
            r#"{"events":[{"message":"\ud800\u0041"}]}"#,
            r#"{"events":[{"message":"open"#,
            r#"{"events":[{"timestamp":012}]}"#,
            r#"{"events":[{"timestamp":1.5}]}"#,
            r#"{"events":[{"timestamp":1e3}]}"#,
            r#"{"events":[{"timestamp":99999999999999999999}]}"#,
            r#"{"events":[{"timestamp":-}]}"#,
            r#"{"events":[{"mess\u0061ge":"m"}]}"#,
            r#"{"events":[{"message":"m",}]}"#,
            r#"{"events":[{"message":"m"}],"x":[1,]}"#,
            r#"{"events":[{"message":"m"}],"x":1.2.3}"#,
            r#"{"events":[{"message":"m"}],"x":tru}"#,
            r#"{"events":[{"message":"m"}]} {}"#,
            r#"{"events":[null]}"#,
            r#"{"events":{}}"#,
            "",
        ];
        for body in refused {
            assert!(filter_page(body).is_none(), "{body}");
        }
        let deep = format!(
            r#"{{"events":[],"x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(filter_page(&deep).is_none());
        let nested = format!(
            r#"{{"events":[],"x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(filter_page(&nested).is_some());
    }

    #[test]
    fn escapes_white_space_and_nulls_read_as_json_means_them() {
        assert_eq!(
            message(r#" { "events" : [ { "message" : "\"\\\/\b\f\n\r\t\u00e9\ud83e\udd80" } ] } "#),
            Some(Some("\"\\/\u{8}\u{c}\n\r\té🦀".to_string()))
        );
        // Plain text right after each kind of escape.
        assert_eq!(
            message(r#"{"events":[{"message":"\u00a1a\nb\ud83e\udd80c"}]}"#),
            Some(Some("¡a\nb🦀c".to_string()))
        );
        assert_eq!(message(r#"{"events":[{"message":null}]}"#), Some(None));
        // A key with an escape is read past where it is not cwtap's.
        assert_eq!(
            message(r#"{"x":{"\"":[{"\u0041":1}]},"events":[{"y":{"a\nb":0},"message":"m"}]}"#),
            Some(Some("m".to_string()))
        );
        let page = filter_page(r#"{"events":null,"nextToken":null}"#).unwrap();
        assert!(page.events().is_empty());
        assert_eq!(page.next_token(), None);
        let page = filter_page(
            r#"{"events":[{"timestamp":-9223372036854775808,"ingestionTime":0,"x":{"y":[true,false,null,-1.5e-3,"\"]"]}}]}"#,
        )
        .unwrap();
        assert_eq!(page.events()[0].timestamp(), Some(i64::MIN));
        assert_eq!(page.events()[0].ingestion_time(), Some(0));
    }

    proptest! {
        /// Any message, written by serde_json as CloudWatch writes it
        /// (escaped or, with `\u` escapes, all ASCII), reads back the same.
        #[test]
        fn any_message_reads_back_as_serde_json_reads_it(
            text in "(\\PC|[\"\\\\/\u{0}-\u{1f}\u{7f}-\u{10ffff}]){0,60}[a-z \"\\\\]{0,100}",
            ascii in any::<bool>(),
        ) {
            let mut quoted = serde_json::to_string(&text).unwrap();
            if ascii {
                quoted = quoted
                    .chars()
                    .map(|c| if c.is_ascii() { c.to_string() } else {
                        c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect()
                    })
                    .collect();
            }
            let body = format!(r#"{{"events":[{{"message":{quoted},"eventId":{quoted}}}],"nextToken":{quoted}}}"#);
            let expected: serde_json::Value = serde_json::from_str(&body).unwrap();
            let page = filter_page(&body).unwrap();
            prop_assert_eq!(page.events()[0].message(), expected["events"][0]["message"].as_str());
            prop_assert_eq!(page.events()[0].event_id(), Some(text.as_str()));
            prop_assert_eq!(page.next_token(), Some(text.as_str()));
        }

        /// Members cwtap does not read, of any JSON shape, anywhere in a
        /// page (compact or pretty-printed) are passed over: the events read
        /// are those serde_json reads.
        #[test]
        fn members_of_any_shape_are_skipped(
            extra in json_value(),
            timestamps in proptest::collection::vec(any::<i64>(), 0..4),
            pretty in any::<bool>(),
        ) {
            let events: Vec<serde_json::Value> = timestamps
                .iter()
                .enumerate()
                .map(|(i, ts)| serde_json::json!({
                    "x": extra, "logStreamName": format!("s{i}"), "timestamp": ts,
                    "message": format!("m\"{i}"), "eventId": i.to_string(), "y": [extra],
                }))
                .collect();
            let page = serde_json::json!({
                "searchedLogStreams": extra, "events": events, "nextToken": "t", "z": {"a": extra},
            });
            let body = if pretty {
                serde_json::to_string_pretty(&page).unwrap()
            } else {
                page.to_string()
            };
            let read = filter_page(&body).unwrap();
            let got: Vec<_> = read
                .events()
                .iter()
                .map(|e| (e.log_stream_name(), e.timestamp(), e.message(), e.event_id()))
                .collect();
            let expected: Vec<_> = events
                .iter()
                .map(|e| (
                    e["logStreamName"].as_str(),
                    e["timestamp"].as_i64(),
                    e["message"].as_str(),
                    e["eventId"].as_str(),
                ))
                .collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(read.next_token(), Some("t"));
        }
    }

    proptest! {
        /// No text makes the reader panic: it reads it or gives `None`.
        #[test]
        fn no_input_panics(
            text in "[{}\\[\\]\":,\\\\ \\tnultrfase0-9.+\\-Eéx\u{1}]{0,80}",
        ) {
            let _ = filter_page(&text);
            let _ = get_page(&text);
            let wrapped = format!(r#"{{"events":[{{"message":{text}}}]}}"#);
            let _ = filter_page(&wrapped);
        }
    }

    /// Any JSON value, a few levels deep.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
