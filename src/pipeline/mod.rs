//! The one path every event takes, whatever its source:
//!
//! ```text
//! source ──RawEvent──▶ prepare ──▶ group ──▶ deliver ──ack──▶ commit
//!                      (parse,     (trace     (the output,     (position, delivered ids,
//!                       fields)     keys)      backpressure)    trace state, counters)
//! ```
//!
//! - [`prepare`]: the group's parser rules turn a [`RawEvent`] into an
//!   [`OutEvent`] (original data, canonical fields). Pure; a source calls it
//!   as it reads.
//! - [`Pipeline::submit`] takes a [`Batch`] of prepared events and a
//!   [`Position`] (what the source will have done once they are delivered:
//!   a group's covered range, a Firehose request) and runs the rest:
//!   grouping into traces in memory ([`crate::trace`]), delivery to the
//!   output ([`crate::sink`]; it retries until done or shutdown, so a
//!   slow output slows the sources), then one state-file transaction with
//!   the position, the ids of what the output acknowledged, the trace
//!   changes and the counters ([`crate::state`]). The source learns the
//!   batch is committed when `submit` returns.
//! - [`Pipeline::emit_summaries`] closes idle traces and delivers the
//!   summaries that are due, through the same deliver and commit steps.
//!
//! Without a state file (`replay --to downstream`, `parse-test`) nothing is
//! committed and the trace working set lives only in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::GroupConfig;
use crate::event::{OutEvent, RawEvent, Record};
use crate::obs;
use crate::shutdown::Shutdown;
use crate::sink::{Outcome, Sink};
use crate::state::{Checkpoint, GroupPosition, StateError, StateStore};
use crate::time::{EpochMs, now_ms};
use crate::trace::{KeyField, SummaryPolicy, TraceInput, Traces};

/// Why a batch could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{events} events were delivered but their checkpoint could not be written ({source}); they will be delivered again at the next start"
    )]
    Uncommitted { events: usize, source: StateError },
}

/// Parses one raw event with its group's rules into the delivered shape.
pub fn prepare(raw: RawEvent, group: &GroupConfig) -> OutEvent {
    let parsed = group.rules.parse(&raw.message);
    if parsed.rule.is_none() {
        obs::metrics().event_fallback(raw.origin.label(), &raw.log_group);
    }
    OutEvent::build(raw, parsed, group.agent_id.as_deref())
}

/// A prepared event on its way, and whether its source found it behind its
/// cursor (a late arrival).
#[derive(Debug)]
pub struct Pending {
    pub event: OutEvent,
    pub late: bool,
}

/// What the source will have done once a batch is delivered; written in the
/// batch's checkpoint.
#[derive(Debug, Clone)]
pub enum Position {
    /// Nothing is recorded (no state file).
    None,
    /// A pull source in one log group of one account. `position` counts
    /// only when every event of the batch is done (the output did not stop
    /// on shutdown).
    Group {
        account: String,
        log_group: String,
        position: GroupPosition,
    },
    /// Events received by push: their ids are kept until `prune_before_ms`
    /// of a later checkpoint passes `received_ms`.
    Pushed {
        received_ms: EpochMs,
        prune_before_ms: EpochMs,
    },
}

/// A batch a source hands the pipeline.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Pending>,
    pub position: Position,
}

/// What became of a batch, once committed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub delivered: u64,
    pub rejected: u64,
    pub late: u64,
    /// Shutdown came first: what is not counted above was not delivered and
    /// is not checkpointed.
    pub abandoned: bool,
}

/// How many idle traces [`Pipeline::emit_summaries`] closes, summarises and
/// commits at a time.
const CLOSE_CHUNK: usize = 2_000;

/// Which closed traces [`Pipeline::emit_summaries`] summarises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Every closed trace.
    All,
    /// Those whose last event is before this time: a backfill still
    /// reading, where a trace closed by its Lambda REPORT may yet meet
    /// events of groups that have not read that far.
    Before(EpochMs),
}

/// How trace grouping runs.
#[derive(Debug, Clone, Copy)]
pub struct TraceSettings {
    pub key_field: KeyField,
    pub summaries: SummaryPolicy,
    /// A trace without events for this long is closed.
    pub idle: Duration,
    /// Settled traces leave memory this long after their last event...
    pub evict_after: Duration,
    /// ...and the state file this long after it.
    pub retention: Duration,
}

/// The pipeline: one output, an optional state file, the trace working set.
pub struct Pipeline {
    sink: Arc<dyn Sink>,
    state: Option<StateStore>,
    /// `None` when events are not grouped into traces.
    traces: Option<Arc<Mutex<Traces>>>,
    settings: TraceSettings,
}

fn lock(traces: &Mutex<Traces>) -> std::sync::MutexGuard<'_, Traces> {
    traces.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipeline {
    /// A pipeline into `sink`. With `state`, the trace working set starts
    /// from the state file (blocking: call it before the runtime starts or
    /// on the blocking pool) and every batch is checkpointed there.
    pub fn new(
        sink: Arc<dyn Sink>,
        state: Option<StateStore>,
        group_traces: bool,
        settings: TraceSettings,
    ) -> Result<Pipeline, StateError> {
        let traces = if group_traces {
            let mut traces = Traces::new();
            if let Some(state) = &state {
                let hot_since = now_ms() - settings.evict_after.as_millis() as i64;
                let stored = state.load_traces_blocking(hot_since)?;
                traces.restore(stored.traces, stored.brackets);
                traces.remember_cold(stored.cold);
            }
            obs::metrics().set_open_traces(traces.open_count() as i64);
            Some(Arc::new(Mutex::new(traces)))
        } else {
            None
        };
        Ok(Pipeline {
            sink,
            state,
            traces,
            settings,
        })
    }

    /// The grouping step alone: delivers nowhere, keeps no state
    /// (`parse-test`).
    pub fn grouping_only(settings: TraceSettings) -> Pipeline {
        Pipeline {
            sink: Arc::new(Discard),
            state: None,
            traces: Some(Arc::new(Mutex::new(Traces::new()))),
            settings,
        }
    }

    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    pub fn state(&self) -> Option<&StateStore> {
        self.state.as_ref()
    }

    /// Most events a batch should hold: what one delivery carries.
    pub fn batch_size(&self) -> usize {
        self.sink.batch_size()
    }

    /// Whether a batch of `events` events and about `bytes` bytes
    /// ([`OutEvent::json_size_hint`] summed) is full: at the output's batch
    /// size now, or its bytes per request.
    pub fn batch_full(&self, events: usize, bytes: usize) -> bool {
        events >= self.sink.batch_size() || bytes >= self.sink.batch_bytes()
    }

    /// Runs `f` on the trace working set (for `parse-test`'s report).
    pub fn with_traces<T>(&self, f: impl FnOnce(&mut Traces) -> T) -> Option<T> {
        self.traces.as_ref().map(|t| f(&mut lock(t)))
    }

    /// The group step: assigns each event its trace, in order, and puts the
    /// key where the output expects it. Evicted traces an event needs are
    /// loaded back from the state file first.
    pub async fn group(&self, events: &mut [Pending]) -> Result<(), StateError> {
        let Some(traces) = &self.traces else {
            return Ok(());
        };
        fn input(e: &OutEvent) -> TraceInput<'_> {
            TraceInput::from_fields(
                &e.source.log_group,
                &e.source.log_stream,
                e.timestamp_ms,
                &e.fields,
                &e.properties,
            )
        }
        let assigned = {
            let inputs: Vec<TraceInput<'_>> = events.iter().map(|p| input(&p.event)).collect();
            if let Some(state) = &self.state {
                let cold = lock(traces).cold_aliases(&inputs);
                if !cold.is_empty() {
                    let loaded = state.load_cold_traces(cold).await?;
                    lock(traces).restore(loaded, []);
                }
            }
            let now = now_ms();
            let mut t = lock(traces);
            inputs.iter().map(|e| t.apply(e, now)).collect::<Vec<_>>()
        };
        for (p, a) in events.iter_mut().zip(assigned) {
            p.event
                .set_trace(a.trace_key, a.bracket_request_id, self.settings.key_field);
        }
        Ok(())
    }

    /// Groups, delivers and commits one batch.
    pub async fn submit(
        &self,
        batch: Batch,
        shutdown: &Shutdown,
    ) -> Result<Committed, PipelineError> {
        let Batch {
            mut events,
            position,
        } = batch;
        self.group(&mut events).await?;
        let mut late = Vec::with_capacity(events.len());
        let mut records: Vec<Record> = events
            .into_iter()
            .map(|p| {
                late.push(p.late);
                Record::Event(p.event)
            })
            .collect();
        let outcome = self.deliver(&records, shutdown).await;
        let mut done: Vec<usize> = outcome
            .accepted
            .iter()
            .chain(&outcome.rejected)
            .copied()
            .collect();
        done.sort_unstable();
        let committed = Committed {
            delivered: outcome.accepted.len() as u64,
            rejected: outcome.rejected.len() as u64,
            late: done.iter().filter(|&&i| late[i]).count() as u64,
            abandoned: outcome.abandoned,
        };
        let event = |i: usize| match &records[i] {
            Record::Event(e) => Some(e),
            Record::Summary(_) => None,
        };
        if outcome.abandoned {
            let left = records.len() - done.len();
            match &position {
                Position::Pushed { .. } => tracing::warn!(
                    events = left,
                    "delivery stopped (request timeout or shutdown) before the output took every event of this batch of a Firehose request: the request is answered with an error, and Firehose sends it again"
                ),
                Position::None => tracing::warn!(
                    events = left,
                    "shutdown came before the output took every event of a batch: they are not delivered (nothing is recorded; replay again to deliver them)"
                ),
                _ => tracing::warn!(
                    events = left,
                    "shutdown came before the output took every event of a batch: they are not checkpointed, and are read and delivered at the next start"
                ),
            }
        }
        // Counted once committed, per group.
        let mut per_group: BTreeMap<(&str, &str), (u64, u64, u64)> = BTreeMap::new();
        fn key(e: &OutEvent) -> (&str, &str) {
            (e.source.origin.label(), e.source.log_group.as_str())
        }
        for &i in &outcome.accepted {
            if let Some(e) = event(i) {
                per_group.entry(key(e)).or_default().0 += 1;
            }
        }
        for &i in &outcome.rejected {
            if let Some(e) = event(i) {
                per_group.entry(key(e)).or_default().1 += 1;
            }
        }
        for &i in &done {
            if late[i]
                && let Some(e) = event(i)
            {
                per_group.entry(key(e)).or_default().2 += 1;
            }
        }
        let per_group = per_group
            .into_iter()
            .map(|((a, g), n)| ((a.to_string(), g.to_string()), n))
            .collect::<Vec<_>>();
        // The records go once their ids are in the checkpoint: the ids are
        // taken out of them rather than copied.
        fn done_events<'a>(
            records: &'a mut [Record],
            done: &'a [usize],
        ) -> impl Iterator<Item = &'a mut OutEvent> {
            records
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| done.binary_search(i).is_ok())
                .filter_map(|(_, r)| match r {
                    Record::Event(e) => Some(e),
                    Record::Summary(_) => None,
                })
        }
        let checkpoint = match position {
            Position::None => None,
            Position::Group {
                account,
                log_group,
                mut position,
            } => {
                if outcome.abandoned {
                    position.coverage = None;
                    position.prune_before_ms = None;
                    position.observed_delay_ms = None;
                }
                Some(Checkpoint::Group {
                    account,
                    log_group,
                    ids: done_events(&mut records, &done)
                        .map(|e| (std::mem::take(&mut e.source.log_id), e.timestamp_ms))
                        .collect(),
                    delivered: committed.delivered,
                    rejected: committed.rejected,
                    late: committed.late,
                    position,
                })
            }
            Position::Pushed {
                received_ms,
                prune_before_ms,
            } => Some(Checkpoint::Pushed {
                ids: done_events(&mut records, &done)
                    .map(|e| {
                        (
                            std::mem::take(&mut e.source.log_group),
                            std::mem::take(&mut e.source.log_id),
                        )
                    })
                    .collect(),
                received_ms,
                prune_before_ms,
            }),
        };
        // The events are delivered and their ids are in the checkpoint: they
        // leave memory before the checkpoint transaction, which may wait for
        // the disk or fold the trace journal.
        drop(records);
        if let Some(checkpoint) = checkpoint {
            self.commit(checkpoint, done.len(), shutdown).await?;
        }
        for ((account, group), (delivered, rejected, late)) in per_group {
            obs::metrics().checkpointed(&account, &group, delivered, rejected, late);
        }
        Ok(committed)
    }

    async fn deliver(&self, records: &[Record], shutdown: &Shutdown) -> Outcome {
        if records.is_empty() {
            return Outcome::default();
        }
        // While it lasts, the delivery tells readiness how the output is.
        let _delivering = obs::readiness().delivering();
        self.sink.deliver(records, shutdown).await
    }

    /// Commits `checkpoint` (with the trace changes), retrying while the
    /// state file cannot be written (disk full, I/O error). Its events are
    /// already delivered: giving up and going on would deliver them again
    /// and move on without a record, so the source stops advancing here,
    /// says so, and goes on once a write succeeds. Only shutdown ends the
    /// wait, with [`PipelineError::Uncommitted`].
    async fn commit(
        &self,
        checkpoint: Checkpoint,
        events: usize,
        shutdown: &Shutdown,
    ) -> Result<(), PipelineError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let checkpoint = Arc::new(checkpoint);
        let mut backoff =
            crate::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut failures = 0u32;
        loop {
            let started = std::time::Instant::now();
            let error = match state
                .commit(Arc::clone(&checkpoint), self.traces.as_deref())
                .await
            {
                Ok(()) => {
                    obs::metrics().checkpoint_commit(started.elapsed());
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "state file writable again: checkpoint written, sources resume"
                        );
                        obs::readiness().state_error(None);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            failures += 1;
            if failures == 1 || failures.is_multiple_of(10) {
                tracing::error!(
                    error = %error,
                    events,
                    failures,
                    "cannot write the checkpoint: this source stops advancing until the state file can be written; the events just delivered are held and will not be sent again"
                );
            }
            obs::readiness().state_error(Some(error.to_string()));
            if !backoff.sleep(shutdown).await {
                return Err(PipelineError::Uncommitted {
                    events,
                    source: error,
                });
            }
        }
    }

    /// Closes traces idle since `idle_before_ms` (by wall clock, or with
    /// `by_event_time` by their last event's timestamp), delivers every
    /// summary that is due and commits them as sent; then lets settled,
    /// quiet traces leave memory and the state file. Returns the summaries
    /// delivered.
    ///
    /// The idle traces are closed `CLOSE_CHUNK` (2,000) at a time, each chunk
    /// summarised, committed and let go before the next: the end of a
    /// backfill closes every trace it holds, and written all at once they
    /// would be the process's peak memory.
    pub async fn emit_summaries(
        &self,
        idle_before_ms: EpochMs,
        by_event_time: bool,
        due: Due,
        shutdown: &Shutdown,
    ) -> Result<usize, PipelineError> {
        let Some(traces) = &self.traces else {
            return Ok(0);
        };
        let idle = lock(traces).idle(idle_before_ms, by_event_time);
        let mut total = 0;
        // At least one round: summaries left due by an earlier call go too.
        for chunk in idle
            .chunks(CLOSE_CHUNK)
            .chain(idle.is_empty().then_some(&[][..]))
        {
            let closed = lock(traces).close_if_idle(chunk, idle_before_ms, by_event_time);
            if closed > 0 {
                tracing::debug!(closed, "idle traces closed");
            }
            let (sent, abandoned) = self.deliver_summaries(traces, due, shutdown).await;
            total += sent;
            // Closing, and traces settled without a summary, are changes too.
            self.commit(Checkpoint::Traces, 0, shutdown).await?;
            if by_event_time {
                // A backfill reads history much faster than it happened:
                // its settled traces leave memory once the events read are
                // past their idle time, not after a wall-clock while.
                self.evict(traces, idle_before_ms, true);
            }
            if abandoned || shutdown.is_triggered() {
                break;
            }
        }
        if let Some(state) = &self.state {
            let now = now_ms();
            if !by_event_time {
                self.evict(
                    traces,
                    now - self.settings.evict_after.as_millis() as i64,
                    false,
                );
            }
            let forget_before = now - self.settings.retention.as_millis() as i64;
            lock(traces).forget_cold(forget_before);
            let pruned = state.prune_traces(forget_before).await?;
            if pruned > 0 {
                tracing::debug!(pruned, "settled traces left the state file");
            }
        }
        obs::metrics().set_open_traces(lock(traces).open_count() as i64);
        Ok(total)
    }

    /// Delivers the summaries due, a batch at a time, and records them as
    /// sent. Returns how many the output accepted, and whether delivery was
    /// abandoned (shutdown).
    async fn deliver_summaries(
        &self,
        traces: &Mutex<Traces>,
        due: Due,
        shutdown: &Shutdown,
    ) -> (usize, bool) {
        let before_ms = match due {
            Due::All => EpochMs::MAX,
            Due::Before(ms) => ms,
        };
        // The due traces are listed once; their summaries are built a
        // delivery at a time.
        let due = lock(traces).due_summaries(self.settings.summaries, before_ms);
        let mut total = 0;
        for keys in due.chunks(self.batch_size().max(1)) {
            if shutdown.is_triggered() {
                return (total, true);
            }
            let records: Vec<Record> = {
                let t = lock(traces);
                keys.iter()
                    .filter_map(|k| t.summary(k))
                    .map(|s| Record::Summary(Box::new(s)))
                    .collect()
            };
            let outcome = self.deliver(&records, shutdown).await;
            let sent: Vec<(String, i64)> = outcome
                .accepted
                .iter()
                .chain(&outcome.rejected)
                .filter_map(|&i| match &records[i] {
                    Record::Summary(s) => Some((s.trace_key.clone(), s.revision)),
                    Record::Event(_) => None,
                })
                .collect();
            total += outcome.accepted.len();
            lock(traces).mark_sent(&sent);
            if outcome.abandoned {
                return (total, true);
            }
        }
        (total, false)
    }

    /// Lets settled traces quiet since `before_ms` leave memory (written to
    /// the state file, which keeps them). Without a state file they stay.
    fn evict(&self, traces: &Mutex<Traces>, before_ms: EpochMs, by_event_time: bool) {
        if self.state.is_none() {
            return;
        }
        let evicted = lock(traces).evict(before_ms, by_event_time);
        if evicted > 0 {
            tracing::debug!(evicted, "settled traces left memory");
        }
    }
}

/// The output of [`Pipeline::grouping_only`]: takes everything, keeps nothing.
struct Discard;

impl Sink for Discard {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Record],
        _shutdown: &'a Shutdown,
    ) -> crate::sink::BoxFuture<'a, Outcome> {
        Box::pin(async move {
            Outcome {
                accepted: (0..batch.len()).collect(),
                ..Outcome::default()
            }
        })
    }

    fn health<'a>(
        &'a self,
        _shutdown: &'a Shutdown,
    ) -> crate::sink::BoxFuture<'a, Result<(), crate::sink::SinkError>> {
        Box::pin(async { Ok(()) })
    }

    fn batch_size(&self) -> usize {
        1_000
    }
}
