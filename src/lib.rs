//! cwtap gets log events out of AWS CloudWatch Logs and into a trace store
//! (VectaDB's batch API), any OpenTelemetry backend (OTLP) or an NDJSON
//! file: parsed, grouped into traces, and
//! checkpointed so that a restart, a late event, throttling or an outage of
//! the output loses nothing.
//!
//! # The pipeline
//!
//! Every event takes one path, whatever its source and output:
//!
//! ```text
//!  source            prepare          group            deliver           commit
//!  (source/)   ──▶   (pipeline::      (trace/:     ──▶  (sink/: the  ──▶  (state/: position,
//!  pull: polls        prepare, with    trace keys,       output,          delivered ids,
//!  CloudWatch;        parse/ rules)    in memory)        retries,         trace changes,
//!  firehose:                                             backpressure)    counters; one
//!  receives pushes                                                        SQLite transaction)
//! ```
//!
//! [`pipeline`] runs the steps: a source hands it batches of prepared events
//! with the position it will have reached once they are delivered (a group's
//! covered range); `submit` groups them, delivers them, and commits the
//! position with the acknowledged ids in one transaction, then returns. A
//! Firehose request's position is its event ids: a retried request delivers
//! only what it did not deliver before.
//! Closed traces' summaries go through the same deliver and commit steps.
//!
//! Where to add things:
//! - a **source**: a module under [`source`] that prepares events and calls
//!   [`pipeline::Pipeline::submit`], and the command that runs it in [`app`];
//! - an **output**: a module under [`sink`] that owns its config section and
//!   implements [`sink::Sink`], and one line in [`sink::OUTPUTS`].
//!
//! # Layout
//!
//! - [`cli`], [`app`]: the command line (clap) and the commands as functions
//!   (run, backfill, check, status, parse-test); [`ops`]: the operator
//!   commands (admin, query, trace, fixtures) and their output.
//! - [`config`]: YAML -> validated [`config::Config`], `${VAR}` expansion;
//!   each output's section is read by its own module.
//! - [`source`]: where events come from ([`source::pull`]: group pollers,
//!   window planning and sizing, the cursor rules, backfill progress;
//!   [`source::firehose`]: the HTTP endpoint for Firehose, `cwtap serve`).
//! - [`cloudwatch`]: the only module that calls aws-sdk-cloudwatchlogs:
//!   reads (event pages read in one pass in front of the SDK's reader),
//!   the shared rate budget, retries, the write path, admin, Insights.
//! - [`pipeline`]: prepare -> group -> deliver -> commit.
//! - [`parse`]: parser rules (json, regex, kv), the rule sets shipped in
//!   `parsers/`, PII redaction, the session id search; an event's
//!   [`parse::Properties`] (a JSON message's object kept as its text, its
//!   values built only where a rule reads them).
//! - [`trace`]: grouping events into traces: pure logic over the in-memory
//!   working set; summaries.
//! - [`sink`]: the outputs behind [`sink::Sink`] (VectaDB, OTLP, NDJSON),
//!   each with its config section.
//! - [`state`]: the SQLite state file and every SQL statement: schema,
//!   migrations, checkpoints, the trace working set's durable copy.
//! - [`event`]: the raw CloudWatch event, the delivered event (and its JSON
//!   writer), the record an output is handed; the one-pass JSON reader of
//!   event pages and subscription messages.
//! - [`replay`]: fixtures: capture, replay (to CloudWatch, or through the
//!   pipeline to the output), generate.
//! - [`obs`]: the `/healthz`, `/readyz` and `/metrics` listener, the
//!   Prometheus metrics and the `cwtap health` probe (depends on nothing
//!   above it).
//! - [`retry`], [`shutdown`], [`time`], [`errors`]: backoff, the shutdown
//!   signal, time values, error chains.

pub mod app;
pub mod cli;
pub mod cloudwatch;
pub mod config;
pub mod errors;
pub mod event;
pub mod obs;
pub mod ops;
pub mod parse;
pub mod pipeline;
pub mod replay;
pub mod retry;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
pub mod trace;

/// Writes a command's output to standard output. A closed pipe (`cwtap
/// status | head -1`) ends the process quietly with success, as the reader
/// had what it wanted; another write error ends it with exit code 1. (The
/// standard `print!` panics on both.) Use it through [`out!`] and [`outln!`].
#[doc(hidden)]
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        write_stderr(format_args!(
            "cwtap: error: cannot write to standard output: {e}"
        ));
        std::process::exit(1);
    }
}

/// Writes a line to standard error. A closed or failing standard error (a
/// log reader that went away) loses the line and nothing else: the
/// standard `eprintln!` would panic, in whatever task was writing. Use it
/// through [`errln!`].
#[doc(hidden)]
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `eprintln!` that never panics ([`write_stderr`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::write_stderr(format_args!($($arg)*)) };
}

/// `print!` that ends the process quietly on a closed pipe ([`write_stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*)) };
}

/// `println!` that ends the process quietly on a closed pipe ([`write_stdout`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
