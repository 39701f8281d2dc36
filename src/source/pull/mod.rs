//! The pull source: one poller per log group scans time windows page by
//! page (FilterLogEvents, or GetLogEvents stream by stream: see [`pager`]),
//! drops events already delivered, prepares the rest and hands them to the
//! [`Pipeline`] in batches; the group's cursor moves with the batch that
//! completes a window. [`plan`] chooses the windows (the cursor rules and
//! their sizing), [`progress`] reports a backfill, [`reading`] keeps a
//! backfill's groups in step.
//!
//! A window's pages are read one ahead of the batches being delivered, so
//! a group whose output is busy still keeps its calls going, and a group
//! waiting on its output holds no call another group could use.

pub mod pager;
pub mod plan;
pub mod progress;
pub mod reading;

use std::collections::HashSet;
use std::sync::Arc;

use crate::cloudwatch::budget::{self, Priority};
use crate::cloudwatch::{CloudWatch, CloudWatchError, Page};
use crate::config::{AgentConfig, GroupConfig};
use crate::obs;
use crate::pipeline::{self, Batch, Pending, Pipeline, PipelineError, Position};
use crate::shutdown::Shutdown;
use crate::state::{Coverage, GroupPosition, StateError, StateStore};
use crate::time::{EpochMs, now_ms};
use pager::Pager;
use plan::{Overlap, Settled, Sizing, Target, Window, initial_coverage, next_window, overlap_ms};
use progress::GroupProgress;
use reading::Pace;
pub use reading::Reading;

/// What every group poller shares.
pub struct Context {
    pub pipeline: Arc<Pipeline>,
    pub state: StateStore,
    pub agent: AgentConfig,
    /// How far each running group has read in event time (a backfill's
    /// watermark and pace).
    pub reading: Arc<Reading>,
    /// Per account, one permit per page its groups hold in memory
    /// (`agent.max_pages_per_account`): a page reader takes one before its
    /// call and the page gives it back once all its events are prepared.
    /// Not one for all accounts: a throttled account's calls wait in their
    /// retries with their permits, and must not hold up another account.
    pub pages: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Context {
    /// The page permits of `account`'s groups.
    fn page_slots(&self, account: &str) -> Arc<tokio::sync::Semaphore> {
        let mut slots = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        let size = self.agent.max_pages_per_account;
        Arc::clone(
            slots
                .entry(account.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(size))),
        )
    }

    fn read_to(&self, group: &GroupSpec, ts: EpochMs) {
        self.reading.read_to(&reading_key(group), ts);
    }

    /// Counts `group` as reading from `ts` on: the watermark stays at or
    /// before it until the group reads further (or ends).
    pub fn reading_from(&self, group: &GroupSpec, ts: EpochMs) {
        self.read_to(group, ts);
    }

    fn group_ended(&self, group: &GroupSpec) {
        // The slowest group ending moves the watermark as much as reading.
        self.reading.ended(&reading_key(group));
    }
}

/// A group's key in [`Reading`].
fn reading_key(group: &GroupSpec) -> String {
    format!("{}/{}", group.account(), group.name)
}

/// A concrete log group, the config entry that selected it, and the
/// account it is read from.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub config: Arc<GroupConfig>,
    /// The account's client (its budget, its metrics label).
    pub cloudwatch: CloudWatch,
    /// What the group's events carry as their origin.
    pub origin: crate::event::Origin,
}

impl GroupSpec {
    /// The account's name: the group's checkpoints are keyed by it.
    pub fn account(&self) -> &str {
        self.cloudwatch.account()
    }
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
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

enum ScanEnd {
    Complete,
    Interrupted,
    /// The window was a probe and turned out dense: its first page was
    /// delivered and the rest is read again in smaller windows. Going up,
    /// the page's events come in timestamp order, so the coverage reaches
    /// the page's last timestamp (`Some`, checkpointed).
    Dense(Option<Coverage>),
}

/// Polls one group until `target` is reached (backfill) or shutdown (live).
///
/// `stop` ends the polling of this group alone (a reload): it is seen
/// between windows and between polls, so the batch in delivery finishes
/// and is committed; `shutdown` stops everything and gives deliveries in
/// flight the shutdown grace.
pub async fn run_group(
    ctx: Arc<Context>,
    group: GroupSpec,
    target: Target,
    progress: GroupProgress,
    shutdown: Shutdown,
    stop: Shutdown,
) -> GroupEnd {
    use tracing::Instrument;
    let name = group.name.as_str();
    obs::readiness().group_started(group.account(), name);
    obs::metrics().group_started(group.account(), name);
    // Through a named account, every line of this poller says which.
    let span = if group.account() == crate::config::DEFAULT_ACCOUNT {
        tracing::Span::none()
    } else {
        tracing::info_span!("poll", account = group.account())
    };
    let end = poll_group(&ctx, &group, target, progress, shutdown, stop)
        .instrument(span)
        .await;
    ctx.group_ended(&group);
    end
}

async fn poll_group(
    ctx: &Arc<Context>,
    group: &GroupSpec,
    target: Target,
    mut progress: GroupProgress,
    shutdown: Shutdown,
    stop: Shutdown,
) -> GroupEnd {
    let name = group.name.as_str();
    let agent = &ctx.agent;
    let lookback_ms = agent.lookback.as_millis() as i64;
    let account = group.account();
    let existing = match ctx.state.group(account, name).await {
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
        if let Err(e) = ctx.state.set_coverage(account, name, coverage).await {
            return GroupEnd::Failed(e.to_string());
        }
    }
    progress.update(coverage);
    ctx.read_to(group, coverage.cursor_ms);
    // A backfill, or a group far behind, read over the whole group starts
    // by trying its whole range (stream by stream, pages say nothing of how
    // dense a range is).
    let max_window_ms = agent.max_window.as_millis() as i64;
    let far_behind = match target {
        Target::Backfill { .. } => true,
        Target::Live => now_ms() - coverage.cursor_ms > 2 * max_window_ms,
    };
    // Only a backfill's windows use it (see `plan::Settled`).
    let mut settled = Settled::default();
    let mut sizing = if far_behind && group.config.mode == crate::config::ReadMode::Filter {
        Sizing::probing(max_window_ms)
    } else {
        Sizing::new(max_window_ms)
    };
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
            obs::metrics().poll_interval(account, name, i);
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
                let span_ms = sizing.span_ms();
                let read_at_ms = now_ms();
                let Some(mut window) = next_window(coverage, target, read_at_ms, overlap, span_ms)
                else {
                    return Ok(());
                };
                let going_up = window.then.cursor_ms > coverage.cursor_ms;
                if going_up && matches!(target, Target::Backfill { .. }) {
                    window.start_ms = settled.start(window.start_ms, coverage.cursor_ms, late_eff);
                }
                // A window that did not reach its whole span was cut short by
                // now (or the backfill's end): caught up.
                let caught_up = window.end_ms - coverage.cursor_ms < span_ms;
                // A group with windows still to read after this one has a
                // backlog: its calls go before those of caught-up groups.
                let priority = if window.end_ms < now_ms() - poll_ms {
                    Priority::Backlog
                } else {
                    Priority::Idle
                };
                let before = progress.delivered();
                let scanned = scan(
                    ctx,
                    group,
                    Scan {
                        coverage,
                        window,
                        priority,
                        probe: sizing.is_probing(),
                    },
                    &mut delay_ms,
                    &mut progress,
                    &shutdown,
                )
                .await?;
                match scanned {
                    (ScanEnd::Interrupted, _) => return Ok(()),
                    (ScanEnd::Dense(reached), _) => {
                        tracing::debug!(
                            group = name,
                            "range too dense for one window; reading it window by window"
                        );
                        sizing.dense(reached.map_or(0, |c| c.cursor_ms - coverage.cursor_ms));
                        if let Some(c) = reached {
                            // Under the bound the next window will use: the
                            // scan may have seen later events than before.
                            let late_now =
                                overlap_ms(late_ms, delay_ms, agent.adaptive_late_arrival, cap_ms);
                            settled.observe(window.start_ms, c.cursor_ms, read_at_ms, late_now);
                            coverage = c;
                            ctx.read_to(group, coverage.cursor_ms);
                            progress.update(coverage);
                        }
                        first_window = true;
                        continue;
                    }
                    (ScanEnd::Complete, read) => {
                        let reach = (window.then.cursor_ms - coverage.cursor_ms)
                            .max(coverage.covered_from_ms - window.then.covered_from_ms);
                        sizing.observe(reach, read.density_pages, read.events);
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
                        if going_up {
                            let late_now =
                                overlap_ms(late_ms, delay_ms, agent.adaptive_late_arrival, cap_ms);
                            settled.observe(window.start_ms, window.end_ms, read_at_ms, late_now);
                        }
                        coverage = window.then;
                        ctx.read_to(group, coverage.cursor_ms);
                        progress.update(coverage);
                        progress.window_done(window, progress.delivered() - before);
                    }
                }
                if shutdown.is_triggered()
                    || stop.is_triggered()
                    || (target == Target::Live && caught_up)
                {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e @ ScanError::Pipeline(PipelineError::Uncommitted { .. })) = &polled {
            tracing::error!(group = name, error = %e, "stopped with an unwritten checkpoint");
            progress.finish("failed");
            return GroupEnd::Failed(format!("{name}: {e}"));
        }
        if shutdown.is_triggered() || stop.is_triggered() {
            progress.finish("stopped");
            obs::readiness().group_stopped(account, name);
            obs::metrics().group_stopped(account, name);
            return GroupEnd::ShutDown;
        }
        let error = polled.as_ref().err().map(|e| e.to_string());
        if let Err(e) = ctx
            .state
            .record_poll(account, name, error.clone(), interval)
            .await
        {
            tracing::error!(group = name, error = %e, "cannot record the poll in the state file");
        } else if error.is_none() {
            obs::readiness().group_polled(account, name);
        }
        // A group that does not exist (yet, or any more) is looked for at
        // the idle pace, not every poll interval.
        let missing = matches!(
            &polled,
            Err(ScanError::CloudWatch(CloudWatchError::GroupNotFound { .. }))
        );
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
                // Said once, not at every look.
                if idle_polls == 0 {
                    tracing::warn!(group = name, error = %e, "log group missing; looking for it again at the idle poll interval (agent.max_idle_poll_interval_secs)");
                }
            }
            (Target::Live, Err(e)) => {
                tracing::error!(group = name, error = %e, "poll failed; nothing was lost, retrying next poll");
            }
        }
        let found_nothing =
            (error.is_none() || missing) && progress.delivered() == delivered_before;
        idle_polls = if found_nothing { idle_polls + 1 } else { 0 };
        let slept = tokio::select! {
            s = shutdown.sleep(idle_interval(agent, idle_polls)) => s,
            _ = stop.wait() => false,
        };
        if !slept {
            obs::readiness().group_stopped(account, name);
            obs::metrics().group_stopped(account, name);
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

/// What reading a window took: for [`Sizing`].
#[derive(Debug, Default, Clone, Copy)]
struct WindowRead {
    /// Pages of a paged scan over the group (0 stream by stream).
    density_pages: u64,
    /// Events the window's pages held, re-reads included.
    events: u64,
}

/// A page from the reader, with the calls made to get it.
struct Fetched {
    page: Page,
    calls: u64,
    last: bool,
    /// The page's place in its account's bound, given back with it.
    _permit: Option<PagePermit>,
}

/// A page's place in its account's bound ([`Context::page_slots`]). Dropped
/// with the page, it goes back to its group's reader while that reads on
/// (the group's next page takes it without waiting in line again behind
/// the account's other groups, as a backlog's calls go first in the rate
/// budget), else to the account.
struct PagePermit {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    back: tokio::sync::mpsc::UnboundedSender<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for PagePermit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            // A reader that has ended drops it: back to the account.
            let _ = self.back.send(permit);
        }
    }
}

/// Stops the page reader when the scan ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads `window`'s pages one ahead, in `priority`'s class (a group with
/// more pages to read has a backlog: its next call goes first). A page is
/// fetched only once its slot in the channel is free, so a group holds at
/// most two pages: the one being delivered and the next; only with a
/// permit of `pages`, so the groups sharing it hold at most its size; and,
/// in a backfill, only while the group is in step (`pace`).
fn read_ahead(
    cloudwatch: CloudWatch,
    group: &GroupSpec,
    window: Window,
    priority: Priority,
    pages: Arc<tokio::sync::Semaphore>,
    pace: Pace,
    shutdown: Shutdown,
) -> (
    tokio::sync::mpsc::Receiver<Result<Fetched, CloudWatchError>>,
    bool,
    AbortOnDrop,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (back, mut returned) = tokio::sync::mpsc::unbounded_channel();
    let mut pager = Pager::new(cloudwatch, group, window);
    let paged = pager.pages_measure_density();
    let task = tokio::spawn(budget::with_priority(priority, async move {
        loop {
            let Ok(slot) = tx.reserve().await else {
                return;
            };
            // In a backfill, not too far ahead of the slowest group.
            if !pace.in_step(&mut returned, &shutdown).await {
                slot.send(Err(CloudWatchError::ShutDown));
                return;
            }
            // The first page waits in line behind the account's other
            // groups; a next page takes the permit of the page before it
            // once that is delivered, or a free one if there is one sooner.
            // Shutdown ends the wait (the semaphore is never closed).
            let permit = match returned.try_recv() {
                Ok(permit) => Some(permit),
                Err(_) => tokio::select! {
                    Some(permit) = returned.recv() => Some(permit),
                    permit = Arc::clone(&pages).acquire_owned() => permit.ok(),
                    _ = shutdown.wait() => {
                        slot.send(Err(CloudWatchError::ShutDown));
                        return;
                    }
                },
            };
            let permit = permit.map(|permit| PagePermit {
                permit: Some(permit),
                back: back.clone(),
            });
            let before = pager.calls();
            let next = pager.next(&shutdown).await;
            let calls = pager.calls() - before;
            let (message, end) = match next {
                Ok(Some(page)) => {
                    let last = pager.is_done();
                    let fetched = Fetched {
                        page,
                        calls,
                        last,
                        _permit: permit,
                    };
                    (Ok(fetched), last)
                }
                Ok(None) => (
                    Ok(Fetched {
                        page: Page::default(),
                        calls,
                        last: true,
                        _permit: None,
                    }),
                    true,
                ),
                Err(e) => (Err(e), true),
            };
            slot.send(message);
            if end {
                return;
            }
            budget::set_priority(Priority::Backlog);
        }
    }));
    (rx, paged, AbortOnDrop(task))
}

/// What one scan reads: the window, the coverage it extends, the budget
/// class of its calls, and whether it is a probe of a whole range.
struct Scan {
    coverage: Coverage,
    window: Window,
    priority: Priority,
    probe: bool,
}

/// Scans one window; on `Complete` every event of it is delivered and the
/// cursor checkpointed.
async fn scan(
    ctx: &Context,
    group: &GroupSpec,
    scan: Scan,
    delay_ms: &mut i64,
    progress: &mut GroupProgress,
    shutdown: &Shutdown,
) -> Result<(ScanEnd, WindowRead), ScanError> {
    let Scan {
        coverage,
        window,
        priority,
        probe,
    } = scan;
    let name = group.name.as_str();
    let retention_ms = retention_ms(&ctx.agent);
    // Ids delivered earlier in this window (overlap, or a run cut short).
    let account = group.account();
    let seen: HashSet<String> = ctx
        .state
        .delivered_ids(account, name, window.start_ms)
        .await?;
    let going_up = window.then.cursor_ms > coverage.cursor_ms;
    let (mut pages_rx, paged, _reader) = read_ahead(
        group.cloudwatch.clone(),
        group,
        window,
        priority,
        ctx.page_slots(group.account()),
        Pace {
            reading: Arc::clone(&ctx.reading),
            group: reading_key(group),
        },
        shutdown.clone(),
    );
    let mut batch: Vec<Pending> = Vec::with_capacity(ctx.pipeline.batch_size());
    let mut batch_bytes = 0;
    let mut window_delay = 0i64;
    let mut read = WindowRead::default();
    let mut pages = 0u64;
    // Calls and events read since the last checkpoint, for `status`.
    let mut cost = GroupPosition::default();
    // Whether the pages so far came in timestamp order (CloudWatch's order;
    // checked, not assumed), and the last timestamp read: while they do,
    // every event before the last one delivered has been read, and a
    // backfill may close the traces idle since.
    let mut ordered = going_up;
    let mut read_ms = EpochMs::MIN;
    loop {
        let fetched = match pages_rx.recv().await {
            Some(Ok(f)) => f,
            Some(Err(CloudWatchError::ShutDown)) => return Ok((ScanEnd::Interrupted, read)),
            Some(Err(e)) => return Err(e.into()),
            // The reader stopped without a last page: only shutdown does that.
            None => return Ok((ScanEnd::Interrupted, read)),
        };
        pages += 1;
        cost.api_calls += fetched.calls;
        cost.events_read += fetched.page.events.len() as u64;
        read.events += fetched.page.events.len() as u64;
        progress.add_read(fetched.calls, fetched.page.events.len() as u64);
        // A probe with more than half a page and more to come is too much
        // for one window. This page is delivered; going up, pages come in
        // timestamp order (then ingestion time), so everything before the
        // page's last timestamp has been read, and the coverage gets there
        // (unless the page itself is out of order: then only its ids count).
        let dense = probe && !fetched.last && read.events > plan::PAGE_EVENTS / 2;
        let events = &fetched.page.events;
        let in_order = || {
            events
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        };
        let cut_ms = match events.last() {
            Some(last)
                if dense && going_up && last.timestamp_ms > coverage.cursor_ms && in_order() =>
            {
                Some(last.timestamp_ms)
            }
            _ => None,
        };
        let end_ms = cut_ms.unwrap_or(window.end_ms);
        ordered = ordered && events.first().is_none_or(|e| e.timestamp_ms >= read_ms) && in_order();
        if let Some(last) = events.last() {
            read_ms = read_ms.max(last.timestamp_ms);
        }
        obs::metrics().events_pulled(account, name, fetched.page.events.len());
        let mut reread = 0;
        for mut raw in fetched.page.events {
            if raw.timestamp_ms < window.start_ms || raw.timestamp_ms >= end_ms {
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
            let event_ms = raw.timestamp_ms;
            raw.origin = group.origin.clone();
            let event = pipeline::prepare(raw, &group.config);
            batch_bytes += event.json_size_hint();
            batch.push(Pending { event, late });
            // Asked at each event: the output's batch size may change after
            // a delivery (see `Sink::batch_size`).
            if ctx.pipeline.batch_full(batch.len(), batch_bytes) {
                batch_bytes = 0;
                let full = Batch {
                    events: std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(ctx.pipeline.batch_size()),
                    ),
                    position: Position::Group {
                        account: account.to_string(),
                        log_group: name.to_string(),
                        position: std::mem::take(&mut cost),
                    },
                };
                if let ScanEnd::Interrupted = deliver(ctx, full, progress, shutdown).await? {
                    return Ok((ScanEnd::Interrupted, read));
                }
                if ordered {
                    ctx.read_to(group, event_ms);
                }
            }
        }
        obs::metrics().overlap_rereads(account, name, reread);
        if dense {
            *delay_ms = window_delay.max(*delay_ms);
            let reached = cut_ms.map(|cursor_ms| Coverage {
                covered_from_ms: coverage.covered_from_ms,
                cursor_ms,
            });
            let rest = Batch {
                events: batch,
                position: Position::Group {
                    account: account.to_string(),
                    log_group: name.to_string(),
                    position: GroupPosition {
                        coverage: reached,
                        observed_delay_ms: Some(*delay_ms),
                        ..cost
                    },
                },
            };
            return Ok(match deliver(ctx, rest, progress, shutdown).await? {
                ScanEnd::Interrupted => (ScanEnd::Interrupted, read),
                _ => (ScanEnd::Dense(reached), read),
            });
        }
        // Only the pager knows the end: an empty page is not it.
        if fetched.last {
            break;
        }
        if shutdown.is_triggered() {
            return Ok((ScanEnd::Interrupted, read));
        }
    }
    read.density_pages = if paged { pages } else { 0 };
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
    let last = Batch {
        events: batch,
        position: Position::Group {
            account: account.to_string(),
            log_group: name.to_string(),
            position: GroupPosition {
                coverage: Some(window.then),
                prune_before_ms: Some(window.then.cursor_ms - retention_ms),
                observed_delay_ms: Some(*delay_ms),
                ..cost
            },
        },
    };
    let end = deliver(ctx, last, progress, shutdown).await?;
    if let ScanEnd::Complete = end {
        obs::metrics().group_cursor(account, name, window.then.cursor_ms);
    }
    Ok((end, read))
}

/// Hands a batch to the pipeline and counts what it delivered.
async fn deliver(
    ctx: &Context,
    batch: Batch,
    progress: &mut GroupProgress,
    shutdown: &Shutdown,
) -> Result<ScanEnd, ScanError> {
    let committed = ctx.pipeline.submit(batch, shutdown).await?;
    if committed.late > 0 {
        tracing::info!(
            late = committed.late,
            "late events caught by the re-read window"
        );
    }
    progress.add_delivered(committed.delivered);
    Ok(if committed.abandoned {
        ScanEnd::Interrupted
    } else {
        ScanEnd::Complete
    })
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
