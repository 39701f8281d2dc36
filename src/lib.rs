//! cwtap pulls log events out of AWS CloudWatch Logs and delivers them to a
//! trace store (VectaDB's batch API) or an NDJSON file, losing nothing and
//! sending nothing twice.
//!
//! # The pipeline
//!
//! ```text
//! CloudWatch ──FilterLogEvents──▶ source ──▶ parse ──▶ sink ──ack──▶ state
//!   (cloudwatch/)                (source/)  (parse/)  (sink/)      (state/)
//! ```
//!
//! Per log group, the source scans time windows page by page, drops events
//! whose `eventId` was already delivered, runs the parser rules, and hands
//! batches to the sink. Only when the sink has acknowledged a batch are its
//! event ids (and, at the end of a window, the cursor) committed to SQLite, in
//! one transaction. Windows start a little behind the cursor so that events
//! CloudWatch ingests late are still read.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap).
//! - [`app`]: the commands as functions: run, backfill, check, status.
//! - [`config`]: YAML -> validated [`config::Config`], `${VAR}` expansion.
//! - [`cloudwatch`]: the only module that calls aws-sdk-cloudwatchlogs: reads,
//!   retries, the write path (`write`), admin (`admin`), Insights (`insights`).
//! - [`source`]: group pollers, window planning (the cursor rules), progress.
//! - [`parse`]: parser rules (json, regex, kv), the rule sets shipped in
//!   `parsers/`, PII redaction, and the session id search.
//! - [`event`]: the raw CloudWatch event and the delivered event shape.
//! - [`sink`]: outputs behind the [`sink::Sink`] trait: VectaDB, NDJSON.
//! - [`trace`]: grouping events into traces; trace state and summaries.
//! - [`state`]: the SQLite state file: schema, migrations, checkpoints.
//! - [`replay`]: fixtures: capture, replay (to CloudWatch or downstream), generate.
//! - [`obs`]: the `/healthz`, `/readyz` and `/metrics` listener, the
//!   Prometheus metrics and the `cwtap health` probe.
//! - [`ops`]: the operator commands (admin, query, trace, fixtures) and their
//!   table / JSON output.
//! - [`retry`], [`shutdown`], [`time`]: backoff, shutdown signal, time values.

pub mod app;
pub mod cli;
pub mod cloudwatch;
pub mod config;
pub mod event;
pub mod obs;
pub mod ops;
pub mod parse;
pub mod replay;
pub mod retry;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
pub mod trace;
