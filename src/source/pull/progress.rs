//! Backfill progress: a bar per group on a terminal (events/s and the share of
//! the time window covered), plain log lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plan::Window;
use crate::state::Coverage;
use crate::time::{EpochMs, format_ms};

/// Creates the per-group reporters of one run.
#[derive(Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
    range: Option<(EpochMs, EpochMs)>,
}

impl Progress {
    /// Bars when `interactive` and a backfill `range` is known; log lines otherwise.
    pub fn new(interactive: bool, range: Option<(EpochMs, EpochMs)>) -> Progress {
        let bars = (interactive && range.is_some())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        Progress { bars, range }
    }

    pub fn group(&self, name: &str) -> GroupProgress {
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(1000));
            bar.set_style(
                ProgressStyle::with_template("{prefix:40!} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        GroupProgress {
            name: name.to_string(),
            bar,
            range: self.range,
            delivered: 0,
            calls: 0,
            read: 0,
            started: Instant::now(),
        }
    }
}

/// One group's reporter.
pub struct GroupProgress {
    name: String,
    bar: Option<ProgressBar>,
    range: Option<(EpochMs, EpochMs)>,
    delivered: u64,
    /// Read calls made, and the events they returned.
    calls: u64,
    read: u64,
    started: Instant,
}

impl GroupProgress {
    /// A reporter that reports nothing but counts.
    pub fn quiet(name: &str) -> GroupProgress {
        Progress::new(false, None).group(name)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    fn rate(&self) -> f64 {
        self.delivered as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    /// Share of the backfill range covered, in per mille.
    fn covered(&self, cov: Coverage) -> u64 {
        let Some((since, until)) = self.range else {
            return 0;
        };
        let span = (until - since).max(1);
        let from = cov.covered_from_ms.max(since);
        let to = cov.cursor_ms.min(until);
        (((to - from).max(0) as f64 / span as f64) * 1000.0).round() as u64
    }

    pub fn add_delivered(&mut self, n: u64) {
        self.delivered += n;
    }

    /// `calls` read calls returned `events` events.
    pub fn add_read(&mut self, calls: u64, events: u64) {
        self.calls += calls;
        self.read += events;
    }

    /// Where the calls went: how many, and events read per call.
    fn cost(&self) -> String {
        format!(
            "{} calls, {:.0} ev/call",
            self.calls,
            self.read as f64 / self.calls.max(1) as f64
        )
    }

    pub fn update(&mut self, cov: Coverage) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.covered(cov));
            bar.set_message(format!(
                "{} events, {:.0}/s, {}",
                self.delivered,
                self.rate(),
                self.cost()
            ));
        }
    }

    pub fn window_done(&mut self, window: Window, events: u64) {
        if self.bar.is_none() {
            tracing::info!(
                group = %self.name,
                from = %format_ms(window.start_ms),
                to = %format_ms(window.end_ms),
                events,
                total = self.delivered,
                calls = self.calls,
                events_read = self.read,
                covered_pct = self.range.map(|_| self.covered(window.then) as f64 / 10.0),
                "window delivered"
            );
        }
    }

    pub fn finish(&mut self, how: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(format!(
                "{how}: {} events, {:.0}/s, {}",
                self.delivered,
                self.rate(),
                self.cost()
            ));
        }
    }
}
