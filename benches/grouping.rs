//! Trace grouping cost: events per second through `Traces::apply` on the
//! in-memory working set, for Lambda-shaped traffic (START, runtime lines
//! without ids, lines with a trace id, END, REPORT) over interleaved
//! streams, and for application JSON logs (a trace id shared by five lines,
//! each with a request id). `take_changes` (what a checkpoint then writes)
//! is measured on its own.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cwtap::trace::{LambdaReport, TraceInput, Traces};

// The binary's allocator (src/main.rs), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The strings an event's grouping facts borrow.
struct Owned {
    stream: String,
    event_type: Option<&'static str>,
    request: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    timestamp_ms: i64,
    report: Option<LambdaReport>,
}

impl Owned {
    fn input<'a>(&'a self, group: &'a str) -> TraceInput<'a> {
        TraceInput {
            log_group: group,
            log_stream: &self.stream,
            timestamp_ms: self.timestamp_ms,
            trace_id: self.trace_id.as_deref(),
            request_id: self.request.as_deref(),
            span_id: self.span_id.as_deref(),
            service: Some("checkout"),
            event_type: self.event_type,
            report: self.report,
            ..TraceInput::default()
        }
    }
}

fn lambda_traffic(requests: usize) -> Vec<Owned> {
    let mut out = Vec::with_capacity(requests * 7);
    for r in 0..requests {
        let stream = format!("2026/11/20/[$LATEST]{:032x}", r % 4);
        let request = format!("{r:08x}-1111-2222-3333-444444444444");
        let trace_id = format!("1-6740a000-{r:024x}");
        let ts = 1_795_161_600_000 + r as i64 * 50;
        let line = |i: i64, kind, request: Option<String>| Owned {
            stream: stream.clone(),
            event_type: kind,
            request,
            trace_id: None,
            span_id: None,
            timestamp_ms: ts + i,
            report: None,
        };
        out.push(line(0, Some("lambda_start"), Some(request.clone())));
        for i in 0..4 {
            let mut l = line(i + 1, None, None);
            if i % 2 == 0 {
                l.trace_id = Some(trace_id.clone());
                l.span_id = Some(format!("{r:08x}{i:08x}"));
            }
            out.push(l);
        }
        out.push(line(5, Some("lambda_end"), Some(request.clone())));
        let mut report = line(6, Some("lambda_report"), Some(request));
        report.report = Some(LambdaReport {
            duration_ms: Some(12.0),
            ..LambdaReport::default()
        });
        out.push(report);
    }
    out
}

fn json_traffic(events: usize) -> Vec<Owned> {
    (0..events)
        .map(|i| Owned {
            stream: format!("app/{}", i % 4),
            event_type: None,
            request: Some(format!("req-{i:08x}")),
            trace_id: Some(format!("1-6740a000-{:024x}", i / 5)),
            span_id: Some(format!("{i:016x}")),
            timestamp_ms: 1_795_161_600_000 + i as i64,
            report: None,
        })
        .collect()
}

fn grouping(c: &mut Criterion) {
    let mut group = c.benchmark_group("grouping");
    for (name, events, log_group) in [
        (
            "lambda_traffic_2100_events",
            lambda_traffic(300),
            "/aws/lambda/checkout",
        ),
        ("json_traffic_2000_events", json_traffic(2_000), "/app/api"),
    ] {
        let inputs: Vec<TraceInput<'_>> = events.iter().map(|e| e.input(log_group)).collect();
        group.throughput(Throughput::Elements(inputs.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                Traces::new,
                |mut traces| {
                    for e in &inputs {
                        black_box(traces.apply(e, 0));
                    }
                    traces
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let events = json_traffic(2_000);
    let inputs: Vec<TraceInput<'_>> = events.iter().map(|e| e.input("/app/api")).collect();
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("json_traffic_2000_events_take_changes", |b| {
        b.iter_batched(
            || {
                let mut traces = Traces::new();
                for e in &inputs {
                    traces.apply(e, 0);
                }
                traces
            },
            |mut traces| black_box(traces.take_changes()),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, grouping);
criterion_main!(benches);
