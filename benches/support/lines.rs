//! The log lines the benches share.

/// A JSON log line of about 300 bytes, varied like a busy service's (level,
/// time, service, message, request id, X-Ray trace id shared by five lines,
/// span id, duration, items, region).
pub fn json_line(i: usize) -> String {
    format!(
        r#"{{"level":"{}","time":"2026-11-20T08:{:02}:{:02}.{:03}Z","service":"checkout-api","msg":"order {} processed for customer","request_id":"5e5c4176-5df6-4817-b099-{:012x}","trace_id":"1-6afffe01-96d38ff58c3f846c{:08x}","span_id":"{:016x}","duration_ms":{}.{},"items":{},"region":"us-east-1"}}"#,
        ["info", "debug", "warn", "error"][i % 4],
        i / 60 % 60,
        i % 60,
        i % 1000,
        i,
        i * 7919,
        i / 5,
        i * 104729,
        i % 300,
        i % 10,
        i % 9 + 1
    )
}
