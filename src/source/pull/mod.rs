//! Pulling one log group: scan windows page by page (FilterLogEvents, or
//! GetLogEvents stream by stream: see [`pager`]), drop events already
//! delivered, parse, hand batches to the sink, and checkpoint each
//! acknowledged batch; the cursor moves only when a whole window is
//! delivered. See [`plan`] for how windows are chosen.

pub mod pager;
pub mod plan;
pub mod progress;

use std::collections::HashSet;
use std::sync::Arc;

use crate::cloudwatch::budget::{self, Priority};
use crate::cloudwatch::{CloudWatch, CloudWatchError};
use crate::config::{AgentConfig, GroupConfig};
use crate::event::OutEvent;
use crate::obs;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::state::{Checkpoint, Coverage, StateError, StateStore};
use crate::time::now_ms;
use crate::trace::{Assignment, KeyField, TraceInput};
use pager::Pager;
use plan::{Overlap, Target, Window, initial_coverage, next_window, overlap_ms};
use progress::GroupProgress;
use serde_json::Value;

/// What every group poller shares.
pub struct Context {
    pub cloudwatch: CloudWatch,
    pub sink: Arc<dyn Sink>,
    pub state: StateStore,
    pub agent: AgentConfig,
}

/// A concrete log group and the config entry that selected it.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub config: Arc<GroupConfig>,
}

/// How a group's poller ended.
#[derive(Debug)]
pub enum GroupEnd {
    /// The backfill target was reached.
    Done,
    /// Shutdown was requested; everything acknowledged is checkpointed.
    ShutDown,
    /// The backfill could not finish.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{events} events were delivered but their checkpoint could not be written ({source}); they will be delivered again at the next start"
    )]
    Uncommitted { events: usize, source: StateError },
}

enum ScanEnd {
    Complete,
    Interrupted,
}

/// Polls one group until `target` is reached (backfill) or shutdown (live).
pub async fn run_group(
    ctx: Arc<Context>,
    group: GroupSpec,
    target: Target,
    mut progress: GroupProgress,
    shutdown: Shutdown,
) -> GroupEnd {
    let name = group.name.as_str();
    obs::readiness().group_started(name);
    let agent = &ctx.agent;
    let lookback_ms = agent.lookback.as_millis() as i64;
    let existing = match ctx.state.group(name).await {
        Ok(g) => g,
        Err(e) => return GroupEnd::Failed(e.to_string()),
    };
    let mut coverage = initial_coverage(
        existing.as_ref().map(|g| g.coverage),
        target,
        now_ms(),
        lookback_ms,
    );
    let mut delay_ms = existing.as_ref().map(|g| g.observed_delay_ms).unwrap_or(0);
    if existing.as_ref().map(|g| g.coverage) != Some(coverage) {
        if let Some(old) = existing
            .as_ref()
            .filter(|g| g.coverage.cursor_ms < coverage.covered_from_ms)
        {
            tracing::warn!(group = name, previous_cursor = %crate::time::format_ms(old.coverage.cursor_ms),
                since = %crate::time::format_ms(coverage.covered_from_ms),
                "backfill starts after this group's checkpoint; the gap between is not read");
        }
        if let Err(e) = ctx.state.set_coverage(name, coverage).await {
            return GroupEnd::Failed(e.to_string());
        }
    }
    progress.update(coverage);
    let max_window_ms = agent.max_window.as_millis() as i64;
    let late_ms = agent.late_arrival.as_millis() as i64;
    let cap_ms = agent.max_late_arrival.as_millis() as i64;
    let poll_ms = agent.poll_interval.as_millis() as i64;
    // The first poll of a run is a sweep: it re-reads the whole late bound.
    let mut last_sweep_ms = i64::MIN / 2;
    // Polls in a row that found nothing new: the interval doubles with each,
    // up to `max_idle_poll_interval`.
    let mut idle_polls = 0u32;
    let mut last_poll_started: Option<std::time::Instant> = None;

    loop {
        let started = std::time::Instant::now();
        let interval = last_poll_started.map(|t| started - t);
        last_poll_started = Some(started);
        if let Some(i) = interval {
            obs::metrics().poll_interval(name, i);
        }
        let delivered_before = progress.delivered();
        let polled: Result<(), ScanError> = async {
            let mut first_window = true;
            loop {
                let late_eff = overlap_ms(late_ms, delay_ms, agent.adaptive_late_arrival, cap_ms);
                // A sweep counts only once its window is complete: a sweep
                // cut short by an error is tried again at the next poll.
                let mut sweep_at = None;
                let overlap = match target {
                    // A backfill re-reads the whole bound behind its checkpoint.
                    Target::Backfill { .. } => late_eff,
                    Target::Live => {
                        let o = Overlap::new(late_eff, delay_ms, poll_ms);
                        let now = now_ms();
                        if first_window && now - last_sweep_ms >= o.sweep_every_ms {
                            sweep_at = Some(now);
                            o.sweep_ms
                        } else {
                            o.short_ms
                        }
                    }
                };
                first_window = false;
                let Some(window) = next_window(coverage, target, now_ms(), overlap, max_window_ms)
                else {
                    return Ok(());
                };
                let caught_up = window.end_ms - coverage.cursor_ms < max_window_ms;
                // A group with windows still to read after this one has a
                // backlog: its calls go before those of caught-up groups.
                let priority = if window.end_ms < now_ms() - poll_ms {
                    Priority::Backlog
                } else {
                    Priority::Idle
                };
                let before = progress.delivered();
                let scanned = budget::with_priority(
                    priority,
                    scan(
                        &ctx,
                        &group,
                        coverage,
                        window,
                        &mut delay_ms,
                        &mut progress,
                        &shutdown,
                    ),
                )
                .await?;
                match scanned {
                    ScanEnd::Interrupted => return Ok(()),
                    ScanEnd::Complete => {
                        if let Some(at) = sweep_at {
                            // After the first sweep of a run, groups started
                            // together would all sweep in the same second;
                            // dating it back by up to half a period spreads
                            // them. Sweeping earlier than due keeps the
                            // guarantee (see `plan::Overlap`).
                            let spread = if last_sweep_ms == i64::MIN / 2 {
                                let every =
                                    Overlap::new(late_eff, delay_ms, poll_ms).sweep_every_ms;
                                rand::random_range(0..(every / 2).max(1))
                            } else {
                                0
                            };
                            last_sweep_ms = at - spread;
                        }
                        coverage = window.then;
                        progress.update(coverage);
                        progress.window_done(window, progress.delivered() - before);
                    }
                }
                if shutdown.is_triggered() || (target == Target::Live && caught_up) {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e @ ScanError::Uncommitted { .. }) = &polled {
            tracing::error!(group = name, error = %e, "stopped with an unwritten checkpoint");
            progress.finish("failed");
            return GroupEnd::Failed(format!("{name}: {e}"));
        }
        if shutdown.is_triggered() {
            progress.finish("stopped");
            return GroupEnd::ShutDown;
        }
        let error = polled.as_ref().err().map(|e| e.to_string());
        if let Err(e) = ctx.state.record_poll(name, error.clone(), interval).await {
            tracing::error!(group = name, error = %e, "cannot record the poll in the state file");
        } else if error.is_none() {
            obs::readiness().group_polled(name);
        }
        match (target, polled) {
            (Target::Backfill { .. }, Ok(())) => {
                progress.finish("done");
                return GroupEnd::Done;
            }
            (Target::Backfill { .. }, Err(e)) => {
                progress.finish("failed");
                return GroupEnd::Failed(e.to_string());
            }
            (Target::Live, Ok(())) => {}
            (
                Target::Live,
                Err(ScanError::CloudWatch(e @ CloudWatchError::GroupNotFound { .. })),
            ) => {
                tracing::warn!(group = name, error = %e, "log group missing; will look again next poll");
            }
            (Target::Live, Err(e)) => {
                tracing::error!(group = name, error = %e, "poll failed; nothing was lost, retrying next poll");
            }
        }
        let found_nothing = error.is_none() && progress.delivered() == delivered_before;
        idle_polls = if found_nothing { idle_polls + 1 } else { 0 };
        if !shutdown.sleep(idle_interval(agent, idle_polls)).await {
            return GroupEnd::ShutDown;
        }
    }
}

/// How far behind the cursor delivered ids are kept: as far as any window
/// (a sweep at the largest adaptive bound) re-reads.
fn retention_ms(agent: &AgentConfig) -> i64 {
    let bound = if agent.adaptive_late_arrival {
        agent.max_late_arrival
    } else {
        agent.late_arrival
    };
    Overlap::retention_ms(
        bound.as_millis() as i64,
        agent.poll_interval.as_millis() as i64,
    )
}

/// How long a group waits before its next poll after `idle_polls` polls in a
/// row found nothing: the poll interval, doubling per idle poll beyond the
/// first, up to `max_idle_poll_interval`.
fn idle_interval(agent: &AgentConfig, idle_polls: u32) -> std::time::Duration {
    let doublings = idle_polls.saturating_sub(1).min(16);
    agent
        .poll_interval
        .saturating_mul(1 << doublings)
        .min(agent.max_idle_poll_interval)
        .max(agent.poll_interval)
}

/// Scans one window; on `Complete` every event of it is delivered and the
/// cursor checkpointed.
async fn scan(
    ctx: &Context,
    group: &GroupSpec,
    coverage: Coverage,
    window: Window,
    delay_ms: &mut i64,
    progress: &mut GroupProgress,
    shutdown: &Shutdown,
) -> Result<ScanEnd, ScanError> {
    let name = group.name.as_str();
    let retention_ms = retention_ms(&ctx.agent);
    // Ids delivered earlier in this window (overlap, or a run cut short).
    let seen: HashSet<String> = ctx.state.delivered_ids(name, window.start_ms).await?;
    let going_up = window.then.cursor_ms > coverage.cursor_ms;
    let mut pager = Pager::new(&ctx.cloudwatch, group, window);
    let batch_size = ctx.sink.batch_size();
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_size);
    let mut window_delay = 0i64;
    let mut pages = 0u64;
    loop {
        let page = match pager.next(shutdown).await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(CloudWatchError::ShutDown) => return Ok(ScanEnd::Interrupted),
            Err(e) => return Err(e.into()),
        };
        pages += 1;
        obs::metrics().events_pulled(name, page.events.len());
        let mut reread = 0;
        for raw in page.events {
            if raw.timestamp_ms < window.start_ms || raw.timestamp_ms >= window.end_ms {
                continue;
            }
            if seen.contains(&raw.event_id) {
                reread += 1;
                continue;
            }
            if let Some(ingested) = raw.ingestion_time_ms {
                window_delay = window_delay.max(ingested - raw.timestamp_ms);
            }
            let late = going_up && raw.timestamp_ms < coverage.cursor_ms;
            let parsed = group.config.rules.parse(&raw.message);
            if parsed.rule.is_none() {
                obs::metrics().event_fallback(name);
            }
            let trace = ctx.agent.group_traces.then(|| {
                TraceInput::from_parsed(&raw.log_group, &raw.log_stream, raw.timestamp_ms, &parsed)
            });
            batch.push(Pending {
                event: OutEvent::build(raw, parsed, group.config.agent_id.as_deref()),
                late,
                trace,
            });
            if batch.len() >= batch_size {
                let full = std::mem::take(&mut batch);
                if let ScanEnd::Interrupted =
                    deliver(ctx, name, full, None, progress, shutdown).await?
                {
                    return Ok(ScanEnd::Interrupted);
                }
            }
        }
        obs::metrics().overlap_rereads(name, reread);
        // Only the pager knows the end: an empty page is not it. A group
        // with more pages to read has a backlog: its next call goes first.
        if pager.is_done() {
            break;
        }
        budget::set_priority(Priority::Backlog);
        if shutdown.is_triggered() {
            return Ok(ScanEnd::Interrupted);
        }
    }
    // Lateness seen lately. A live poll lets it decay slowly (10% a poll) so
    // one quiet poll does not shrink the re-read window at once; a backfill's
    // windows are history and only ever raise it.
    *delay_ms =
        if going_up && window.end_ms >= now_ms() - ctx.agent.poll_interval.as_millis() as i64 {
            window_delay.max(*delay_ms - *delay_ms / 10)
        } else {
            window_delay.max(*delay_ms)
        };
    tracing::debug!(
        group = name,
        pages,
        start = window.start_ms,
        end = window.end_ms,
        "window scanned"
    );
    let finish = Finish {
        coverage: window.then,
        prune_before_ms: window.then.cursor_ms - retention_ms,
        observed_delay_ms: *delay_ms,
    };
    deliver(ctx, name, batch, Some(finish), progress, shutdown).await
}

/// The cursor move that completes a window.
struct Finish {
    coverage: Coverage,
    prune_before_ms: i64,
    observed_delay_ms: i64,
}

/// An event on its way: the delivered shape, whether it was caught behind
/// the cursor, and its grouping facts (when traces are grouped).
struct Pending {
    event: OutEvent,
    late: bool,
    trace: Option<TraceInput>,
}

/// Puts each event's trace key where the downstream expects it.
pub(crate) fn stamp_trace_keys(
    events: &mut [OutEvent],
    assignments: Vec<Assignment>,
    key_field: KeyField,
) {
    for (event, a) in events.iter_mut().zip(assignments) {
        if let Some(r) = a.request_id {
            event
                .properties
                .entry("request_id")
                .or_insert(Value::String(r));
        }
        let Some(key) = a.trace_key else { continue };
        event
            .properties
            .insert("trace_key".into(), Value::String(key.clone()));
        match key_field {
            KeyField::SessionId => event.session_id = Some(key),
            KeyField::TraceId => event.trace_id = Some(key),
            KeyField::None => {}
        }
    }
}

/// Delivers a batch and checkpoints what the sink acknowledged, with the
/// window's cursor move when `finish` is given and all was delivered.
async fn deliver(
    ctx: &Context,
    name: &str,
    batch: Vec<Pending>,
    finish: Option<Finish>,
    progress: &mut GroupProgress,
    shutdown: &Shutdown,
) -> Result<ScanEnd, ScanError> {
    let mut events = Vec::with_capacity(batch.len());
    let mut late = Vec::with_capacity(batch.len());
    let mut traces = Vec::with_capacity(batch.len());
    for p in batch {
        events.push(p.event);
        late.push(p.late);
        traces.push(p.trace);
    }
    let inputs: Vec<TraceInput> = traces.iter().flatten().cloned().collect();
    if !inputs.is_empty() && inputs.len() == events.len() {
        // Where the events land given the committed trace state; the state
        // itself changes only in the checkpoint below.
        let assignments = ctx.state.resolve_traces(inputs).await?;
        stamp_trace_keys(&mut events, assignments, ctx.agent.trace_key_field);
    }
    let outcome = if events.is_empty() {
        Default::default()
    } else {
        ctx.sink.deliver(&events, shutdown).await
    };
    // In batch order: grouping depends on it (START before the lines it brackets).
    let mut done: Vec<usize> = outcome
        .accepted
        .iter()
        .chain(&outcome.rejected)
        .copied()
        .collect();
    done.sort_unstable();
    let mut checkpoint = Checkpoint {
        log_group: name.to_string(),
        ids: done
            .iter()
            .map(|&i| (events[i].source.log_id.clone(), events[i].timestamp_ms))
            .collect(),
        delivered: outcome.accepted.len() as u64,
        rejected: outcome.rejected.len() as u64,
        late: done.iter().filter(|&&i| late[i]).count() as u64,
        traces: done.iter().filter_map(|&i| traces[i].take()).collect(),
        ..Checkpoint::default()
    };
    if !outcome.abandoned
        && let Some(f) = finish
    {
        checkpoint.coverage = Some(f.coverage);
        checkpoint.prune_before_ms = Some(f.prune_before_ms);
        checkpoint.observed_delay_ms = Some(f.observed_delay_ms);
    }
    if checkpoint.late > 0 {
        tracing::info!(
            group = name,
            late = checkpoint.late,
            "late events caught by the re-read window"
        );
    }
    let delivered = checkpoint.delivered;
    let counts = (checkpoint.rejected, checkpoint.late);
    let cursor_ms = checkpoint.coverage.map(|c| c.cursor_ms);
    let started = std::time::Instant::now();
    commit_until_written(ctx, name, checkpoint, shutdown).await?;
    obs::metrics().checkpoint_commit(started.elapsed());
    obs::metrics().checkpointed(name, delivered, counts.0, counts.1);
    if let Some(cursor_ms) = cursor_ms {
        let lag_ms = (now_ms() - cursor_ms).max(0) as u64;
        obs::metrics().group_lag(name, std::time::Duration::from_millis(lag_ms));
    }
    progress.add_delivered(delivered);
    Ok(if outcome.abandoned {
        ScanEnd::Interrupted
    } else {
        ScanEnd::Complete
    })
}

/// Commits `checkpoint`, retrying while the state file cannot be written
/// (disk full, I/O error). Its events are already delivered: giving up and
/// polling on would deliver them again and move on without a record, so the
/// group stops advancing here, says so, and goes on once a write succeeds.
/// Only shutdown ends the wait, with [`ScanError::Uncommitted`].
async fn commit_until_written(
    ctx: &Context,
    name: &str,
    checkpoint: Checkpoint,
    shutdown: &Shutdown,
) -> Result<(), ScanError> {
    let checkpoint = Arc::new(checkpoint);
    let mut backoff = crate::retry::Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    let mut failures = 0u32;
    loop {
        let error = match ctx.state.commit(Arc::clone(&checkpoint)).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        group = name,
                        failures,
                        "state file writable again: checkpoint written, pulling resumes"
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
                group = name,
                error = %error,
                events = checkpoint.ids.len(),
                failures,
                "cannot write the checkpoint: this group stops advancing until the state file can be written; the events just delivered are held and will not be sent again"
            );
        }
        obs::readiness().state_error(Some(error.to_string()));
        if !backoff.sleep(shutdown).await {
            return Err(ScanError::Uncommitted {
                events: checkpoint.ids.len(),
                source: error,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_groups_back_off_doubling_up_to_the_maximum() {
        let config = crate::config::Config::from_yaml(
            "ndjson: {path: out.ndjson}\nlog_groups: [{name: /g}]\n\
             agent: {poll_interval_secs: 5, max_idle_poll_interval_secs: 60}\n",
            std::path::Path::new("test.yaml"),
        )
        .unwrap();
        let agent = &config.agent;
        let secs: Vec<u64> = (0..7).map(|n| idle_interval(agent, n).as_secs()).collect();
        assert_eq!(secs, [5, 5, 10, 20, 40, 60, 60]);
    }
}
