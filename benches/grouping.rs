//! Trace grouping cost: events per second through `trace::apply` on an
//! in-memory SQLite database, for Lambda-shaped traffic (START, runtime lines
//! without ids, JSON lines with a trace id, REPORT) over interleaved streams.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cwtap::trace::{self, LambdaReport, TraceInput};

fn lambda_traffic(requests: usize) -> Vec<TraceInput> {
    let mut out = Vec::with_capacity(requests * 7);
    for r in 0..requests {
        let stream = format!("2026/11/20/[$LATEST]{:032x}", r % 4);
        let request = format!("{r:08x}-1111-2222-3333-444444444444");
        let trace_id = format!("1-6740a000-{r:024x}");
        let base = TraceInput {
            log_group: "/aws/lambda/checkout".into(),
            log_stream: stream,
            timestamp_ms: 1_795_161_600_000 + r as i64 * 50,
            service: Some("checkout".into()),
            ..TraceInput::default()
        };
        out.push(TraceInput {
            event_type: Some("lambda_start".into()),
            request_id: Some(request.clone()),
            ..base.clone()
        });
        for i in 0..4 {
            let mut line = base.clone();
            line.timestamp_ms += i + 1;
            if i % 2 == 0 {
                line.trace_id = Some(trace_id.clone());
                line.span_id = Some(format!("{r:08x}{i:08x}"));
            }
            out.push(line);
        }
        out.push(TraceInput {
            event_type: Some("lambda_end".into()),
            request_id: Some(request.clone()),
            ..base.clone()
        });
        out.push(TraceInput {
            event_type: Some("lambda_report".into()),
            request_id: Some(request),
            report: Some(LambdaReport {
                duration_ms: Some(12.0),
                ..LambdaReport::default()
            }),
            ..base
        });
    }
    out
}

fn grouping(c: &mut Criterion) {
    let events = lambda_traffic(300);
    let mut group = c.benchmark_group("grouping");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("lambda_traffic_2100_events", |b| {
        b.iter_batched(
            || {
                let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
                conn.execute_batch(trace::SCHEMA).expect("schema");
                conn
            },
            |mut conn| {
                let tx = conn.transaction().expect("tx");
                black_box(trace::apply(&tx, &events, 0).expect("apply"));
                tx.commit().expect("commit");
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, grouping);
criterion_main!(benches);
