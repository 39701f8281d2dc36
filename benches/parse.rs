//! Parsing throughput: one bench per shipped rule set over its fixture lines,
//! and the JSON path on ~300-byte structured log lines (with and without
//! redaction). Throughput is reported in events (messages) per second.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cwtap::parse::{RedactConfig, RuleSet, builtin_names};

// The binary's allocator (src/main.rs), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn fixture(set: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parsers")
        .join(format!("{set}.log"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.replace('↵', "\n"))
        .collect()
}

/// 1,000 JSON log lines of about 300 bytes, varied like a busy service's.
fn json_lines() -> Vec<String> {
    (0..1000)
        .map(|i| {
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
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for set in builtin_names() {
        let rules = RuleSet::builtin(set).expect("built-in sets compile");
        let lines = fixture(set);
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(format!("set/{set}"), |b| {
            b.iter(|| {
                for line in &lines {
                    black_box(rules.parse(black_box(line)));
                }
            })
        });
    }

    let lines = json_lines();
    let average = lines.iter().map(String::len).sum::<usize>() / lines.len();
    assert!(
        (250..=350).contains(&average),
        "json lines average {average} bytes"
    );
    group.throughput(Throughput::Elements(lines.len() as u64));
    let json = RuleSet::builtin("json").expect("built-in sets compile");
    group.bench_function("json_300b", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(json.parse(black_box(line)));
            }
        })
    });
    let redacting = RuleSet::builtin("json")
        .expect("built-in sets compile")
        .with_redaction(RedactConfig {
            emails: true,
            card_numbers: true,
            us_ssn: true,
            phone_numbers: true,
            fields: ["password", "secret", "token", "api_key", "authorization"]
                .map(String::from)
                .to_vec(),
        })
        .expect("redaction compiles");
    group.bench_function("json_300b_redacted", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(redacting.parse(black_box(line)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
