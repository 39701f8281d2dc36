//! Encoding cost of the outputs' request bodies for a batch of delivered
//! events built from ~300-byte structured log lines (parsed by the `json`
//! set, trace key stamped as `session_id`, as `cwtap run` sends them by
//! default): VectaDB's JSON body of one `POST /api/v1/events/batch`, and the
//! OTLP output's protobuf `ExportLogsServiceRequest` of one `POST /v1/logs`
//! (every event mapped to a log record, uncompressed). Throughput is
//! reported in events per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cwtap::event::{OutEvent, RawEvent, Record};
use cwtap::parse::RuleSet;
use cwtap::sink::otlp::encode_logs_body;
use cwtap::sink::vectadb::{VectadbConfig, encode_batch};
use cwtap::trace::KeyField;

#[path = "support/lines.rs"]
mod lines;
use lines::json_line;

// The binary's allocator (src/main.rs), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `n` events as the pipeline hands them to the sink.
fn events(n: usize) -> Vec<Record> {
    let rules = RuleSet::builtin("json").expect("built-in sets compile");
    (0..n)
        .map(|i| {
            let message = json_line(i);
            let parsed = rules.parse(&message);
            let raw = RawEvent {
                log_group: "/aws/lambda/checkout-api".into(),
                log_stream: "2026/11/20/[$LATEST]3f9c0a6e1b2d4c5e8f7a9b0c1d2e3f40".into(),
                event_id: format!("{:056}", 38_000_000_000_000u64 + i as u64),
                timestamp_ms: 1_795_161_600_000 + i as i64,
                ingestion_time_ms: Some(1_795_161_600_250 + i as i64),
                message,
                origin: Default::default(),
            };
            let mut event = OutEvent::build(raw, parsed, None);
            let key = format!(
                "t:{}",
                event.properties["trace_id"].as_str().unwrap_or_default()
            );
            event.set_trace(Some(key.into()), None, KeyField::SessionId);
            Record::Event(event)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let config = VectadbConfig::with_endpoint("http://127.0.0.1:8080");
    let messages: usize = (0..1000).map(|i| json_line(i).len()).sum();
    assert!(
        (250..=350).contains(&(messages / 1000)),
        "messages average {} bytes",
        messages / 1000
    );

    let mut group = c.benchmark_group("encode");
    // 100 is vectadb.batch_size's default; 500 is the NDJSON output's.
    for size in [100usize, 500] {
        let batch = events(size);
        let body = encode_batch(&batch, &config, KeyField::SessionId);
        eprintln!(
            "encode/vectadb_batch_{size}: body {} bytes, {} bytes per event",
            body.len(),
            body.len() / size
        );
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("vectadb_batch_{size}"), |b| {
            b.iter(|| {
                black_box(encode_batch(
                    black_box(&batch),
                    &config,
                    KeyField::SessionId,
                ))
            })
        });
    }
    // About otlp.batch_size's default (512, the OpenTelemetry SDKs' batch),
    // and the same events as vectadb_batch_500.
    {
        let size = 500usize;
        let batch = events(size);
        let body = encode_logs_body(&batch);
        eprintln!(
            "encode/otlp_logs_{size}: body {} bytes, {} bytes per event",
            body.len(),
            body.len() / size
        );
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("otlp_logs_{size}"), |b| {
            b.iter(|| black_box(encode_logs_body(black_box(&batch))))
        });
    }
    // One event as JSON: cwtap's writer against serde_json's derive on the
    // same struct (the bytes are the same; src/event/json.rs tests that).
    {
        let size = 500usize;
        let batch = events(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function("event_json_500", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(size * 800);
                for r in black_box(&batch) {
                    r.write_json(&mut out, KeyField::SessionId);
                }
                black_box(out)
            })
        });
        group.bench_function("event_json_serde_500", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(size * 800);
                for r in black_box(&batch) {
                    if let Record::Event(e) = r {
                        serde_json::to_writer(&mut out, e).expect("to a Vec");
                    }
                }
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
