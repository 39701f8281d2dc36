//! Encoding cost of VectaDB batch bodies: the JSON body of one
//! `POST /api/v1/events/batch` for a batch of delivered events built from
//! ~300-byte structured log lines (parsed by the `json` set, trace key stamped
//! as `session_id`, as `cwtap run` sends them by default). Throughput is
//! reported in events per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cwtap::event::{OutEvent, RawEvent, Record};
use cwtap::parse::RuleSet;
use cwtap::sink::vectadb::{VectadbConfig, encode_batch};
use cwtap::trace::KeyField;

/// A JSON log line of about 300 bytes, varied like a busy service's (the same
/// shape as `benches/parse.rs`'s `json_300b`).
fn json_line(i: usize) -> String {
    format!(
        r#"{{"level":"{}","time":"2026-11-20T08:{:02}:{:02}.{:03}Z","service":"checkout-api","msg":"order {} processed for customer","request_id":"5e5c4176-5df6-4817-b099-{:012x}","trace_id":"1-6afffe01-96d38ff58c3f846c{:08x}","span_id":"{:016x}","duration_ms":{}.{},"items":{},"region":"us-east-1"}}"#,
        ["info", "debug", "warn", "error"][i % 4],
        i / 60 % 60,
        i % 60,
        i % 1000,
        i,
        i * 7919,
        i * 31,
        i * 104729,
        i % 300,
        i % 10,
        i % 9 + 1
    )
}

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
            event.set_trace(Some(key), None, KeyField::SessionId);
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
