//! Pages of log events read by cwtap's own reader ([`scan`]) instead of
//! the SDK's JSON tokenizer.
//!
//! The SDK unescapes a message character by character: on JSON log lines
//! (a `\"` every few bytes) reading a FilterLogEvents page was a fifth of
//! a backfill's instructions, more than the parser rules. For the two
//! calls that read events (FilterLogEvents and GetLogEvents) an
//! interceptor ([`Events`]) puts this module's reader in
//! front of the SDK's: a successful response's body is read here into the
//! SDK's own output type; anything else (an error response, a body this
//! reader does not take) goes to the SDK's reader as before. The call
//! itself (signing, endpoint, timeouts, the HTTP client) is the SDK's.

mod scan;

use std::sync::LazyLock;

use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEvents;
use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEvents;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, Error, Output,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::config_bag::{ConfigBag, FrozenLayer};

/// Which call's response the reader takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Filter,
    Get,
}

/// The interceptor that puts [`Reader`] in front of the SDK's reader for
/// one call (`.customize().interceptor(Events(Call::Filter))`).
#[derive(Debug)]
pub(crate) struct Events(pub(crate) Call);

impl Intercept for Events {
    fn name(&self) -> &'static str {
        "cwtap::cloudwatch::page::Events"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Looked up once the response is in, after every interceptor: the
        // interceptors' layer is the first place looked in.
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(Reader {
                call: self.0,
                sdk: None,
            }));
        Ok(())
    }
}

/// The SDK's own configuration of each call, which holds its reader.
static SDK_FILTER: LazyLock<Option<FrozenLayer>> =
    LazyLock::new(|| FilterLogEvents::new().config());
static SDK_GET: LazyLock<Option<FrozenLayer>> = LazyLock::new(|| GetLogEvents::new().config());

/// Reads a successful page; hands anything else to the SDK's reader (the
/// call's own, or `sdk` where given).
#[derive(Debug)]
struct Reader {
    call: Call,
    sdk: Option<SharedResponseDeserializer>,
}

impl Reader {
    fn sdk(&self) -> Option<&SharedResponseDeserializer> {
        if let Some(sdk) = &self.sdk {
            return Some(sdk);
        }
        let layer = match self.call {
            Call::Filter => &*SDK_FILTER,
            Call::Get => &*SDK_GET,
        };
        layer.as_ref()?.load::<SharedResponseDeserializer>()
    }
}

impl DeserializeResponse for Reader {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        if response.status().is_success()
            && let Some(body) = response.body().bytes()
            && let Some(output) = read(self.call, body)
        {
            return Ok(output);
        }
        match self.sdk() {
            Some(sdk) => sdk.deserialize_nonstreaming_with_config(response, cfg),
            None => Err(OrchestratorError::other(
                "the SDK's response reader for this call was not found",
            )),
        }
    }
}

/// A page body as the SDK's output type, `None` when it is not one this
/// reader takes.
fn read(call: Call, body: &[u8]) -> Option<Output> {
    // Checked as UTF-8 once, not string by string.
    let body = std::str::from_utf8(body).ok()?;
    match call {
        Call::Filter => scan::filter_page(body).map(Output::erase),
        Call::Get => scan::get_page(body).map(Output::erase),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsOutput;
    use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_smithy_types::body::SdkBody;

    fn filter(body: &str) -> FilterLogEventsOutput {
        read(Call::Filter, body.as_bytes())
            .expect("read")
            .downcast::<FilterLogEventsOutput>()
            .expect("the SDK's output type")
    }

    #[test]
    fn a_filter_page_keeps_every_field_and_every_escape_of_the_message() {
        let out = filter(
            r#"{"events":[
                {"logStreamName":"s1","timestamp":1700000000123,"message":"{\"a\":\"t\\\"q\"} \u00e9 \ud83e\udd80 \n\t\/","ingestionTime":1700000000200,"eventId":"3800"},
                {"logStreamName":"s2","timestamp":-5,"message":"","ingestionTime":null,"eventId":"3801","extra":[1,{"x":2}]}
              ],
              "searchedLogStreams":[{"logStreamName":"s1","searchedCompletely":true}],
              "nextToken":"tok"}"#,
        );
        let events = out.events();
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e.log_stream_name(), Some("s1"));
        assert_eq!(e.timestamp(), Some(1700000000123));
        assert_eq!(e.message(), Some("{\"a\":\"t\\\"q\"} é 🦀 \n\t/"));
        assert_eq!(e.ingestion_time(), Some(1700000000200));
        assert_eq!(e.event_id(), Some("3800"));
        assert_eq!(events[1].timestamp(), Some(-5));
        assert_eq!(events[1].ingestion_time(), None);
        assert_eq!(out.next_token(), Some("tok"));

        let last = filter(r#"{"events":[]}"#);
        assert!(last.events().is_empty());
        assert_eq!(last.next_token(), None);
    }

    #[test]
    fn a_get_page_keeps_both_tokens() {
        let out = read(
            Call::Get,
            br#"{"events":[{"timestamp":1,"message":"m","ingestionTime":2}],"nextForwardToken":"f/1","nextBackwardToken":"b/1"}"#,
        )
        .unwrap()
        .downcast::<GetLogEventsOutput>()
        .unwrap();
        assert_eq!(out.events()[0].message(), Some("m"));
        assert_eq!(out.events()[0].ingestion_time(), Some(2));
        assert_eq!(out.next_forward_token(), Some("f/1"));
        assert_eq!(out.next_backward_token(), Some("b/1"));
    }

    /// Counts the bodies handed on to it.
    #[derive(Debug, Default)]
    struct Sdk(Arc<AtomicUsize>);

    impl DeserializeResponse for Sdk {
        fn deserialize_nonstreaming_with_config(
            &self,
            _response: &HttpResponse,
            _cfg: &ConfigBag,
        ) -> Result<Output, OrchestratorError<Error>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Output::erase(FilterLogEventsOutput::builder().build()))
        }
    }

    #[test]
    fn the_sdks_reader_of_each_call_is_found() {
        for call in [Call::Filter, Call::Get] {
            assert!(Reader { call, sdk: None }.sdk().is_some(), "{call:?}");
        }
    }

    #[test]
    fn an_error_or_a_body_it_does_not_take_goes_to_the_sdks_reader() {
        let handed_on = Arc::new(AtomicUsize::new(0));
        let reader = Reader {
            call: Call::Filter,
            sdk: Some(SharedResponseDeserializer::new(Sdk(Arc::clone(&handed_on)))),
        };
        let response = |status: u16, body: &str| {
            HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body.to_string()))
        };
        let cfg = ConfigBag::base();
        let cases = [
            (200, r#"{"events":[],"nextToken":"n"}"#, 0),
            (
                400,
                r#"{"__type":"ThrottlingException","message":"slow down"}"#,
                1,
            ),
            (200, r#"{"events":[{"timestamp":"soon"}]}"#, 2),
            (200, r#"{"events":[{"message":"\ud800"}]}"#, 3),
            (200, "not json", 4),
        ];
        for (status, body, handed) in cases {
            let out = reader.deserialize_nonstreaming_with_config(&response(status, body), &cfg);
            assert!(out.is_ok(), "{body}");
            assert_eq!(handed_on.load(Ordering::SeqCst), handed, "{status} {body}");
        }
    }
}
