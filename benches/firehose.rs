//! The cost of one event through `cwtap serve`, minus the network and the
//! state file: a Firehose request body (100 records of 100 ~300-byte JSON
//! lines, each record gzipped and base64, as CloudWatch Logs and Firehose
//! write them) decoded, every event prepared with the `json` and `lambda`
//! rules, grouped into traces and encoded as VectaDB's batch items.
//! Throughput is events per second on one core.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cwtap::config::{GroupConfig, GroupSelector, ReadMode, StreamFilter};
use cwtap::event::Record;
use cwtap::parse::spec::RawParser;
use cwtap::parse::{LoadOptions, RuleSet};
use cwtap::pipeline::prepare;
use cwtap::source::firehose::decode;
use cwtap::trace::{KeyField, TraceInput, Traces};

// The binary's allocator (src/main.rs), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "support/lines.rs"]
mod lines;

const RECORDS: usize = 100;
const EVENTS_PER_RECORD: usize = 100;

fn body() -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|r| {
            let events: Vec<serde_json::Value> = (0..EVENTS_PER_RECORD)
                .map(|e| {
                    let i = r * EVENTS_PER_RECORD + e;
                    serde_json::json!({
                        "id": format!("{:056}", 38_000_000_000_000u64 + i as u64),
                        "timestamp": 1_795_161_600_000i64 + i as i64,
                        "message": lines::json_line(i),
                    })
                })
                .collect();
            let message = serde_json::json!({
                "messageType": "DATA_MESSAGE",
                "owner": "123456789012",
                "logGroup": "/aws/lambda/checkout-api",
                "logStream": format!("2026/11/20/[$LATEST]{:032x}", r % 4),
                "subscriptionFilters": ["cwtap"],
                "logEvents": events,
            });
            serde_json::json!({"data": decode::encode_record(&message)})
        })
        .collect();
    serde_json::json!({"requestId": "bench", "timestamp": 1_795_161_600_000i64, "records": records})
        .to_string()
        .into_bytes()
}

fn group() -> GroupConfig {
    let parsers: Vec<RawParser> = ["json", "lambda"]
        .into_iter()
        .map(|s| RawParser {
            use_set: Some(s.into()),
            ..RawParser::default()
        })
        .collect();
    GroupConfig {
        key: "bench".into(),
        selector: GroupSelector::Prefix(String::new()),
        account: "default".into(),
        agent_id: None,
        filter_pattern: None,
        streams: StreamFilter::All,
        mode: ReadMode::Filter,
        rules: Arc::new(
            RuleSet::load(&parsers, "bench", &LoadOptions::default()).expect("rules load"),
        ),
    }
}

fn bench(c: &mut Criterion) {
    let body = body();
    let group = group();
    let events = RECORDS * EVENTS_PER_RECORD;
    let mut g = c.benchmark_group("firehose");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("decode_parse_group_encode_10000_json_300b", |b| {
        b.iter(|| {
            let request = decode::parse_request(black_box(&body)).expect("request");
            let (messages, _) = decode::decode_records(&request, usize::MAX).expect("records");
            let raw = decode::raw_events(messages, Some("us-east-1"));
            let mut traces = Traces::new();
            let mut bytes = 0usize;
            for e in raw {
                let mut event = prepare(e, &group);
                let a = traces.apply(
                    &TraceInput::from_fields(
                        &event.source.log_group,
                        &event.source.log_stream,
                        event.timestamp_ms,
                        &event.fields,
                        &event.properties,
                    ),
                    0,
                );
                event.set_trace(a.trace_key, a.bracket_request_id, KeyField::SessionId);
                bytes += Record::Event(event).to_json(KeyField::SessionId).len();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
