//! Which time window a group scans next. Pure functions, so the cursor rules
//! can be tested without CloudWatch.
//!
//! A group's [`Coverage`] is the range `[covered_from_ms, cursor_ms)` whose
//! events have been delivered. Going forward ("up"), a window starts
//! `overlap_ms` behind the cursor so that events ingested late, after the
//! cursor passed their timestamp, are read again; their ids tell which were
//! already delivered. A backfill reaching back before `covered_from_ms` first
//! fills downwards, window by window, so the covered range stays one piece.
//!
//! How long a window is follows what the windows before it held
//! ([`Sizing`]): calls are spent on pages of events, not on hours of history.
//! A window that came back in one page makes the next one twice as long, up
//! to the whole remaining range; a window that took more than two pages
//! makes the next one shorter, at most `agent.max_window_secs`. So an empty
//! week costs a handful of calls, and a crash can make cwtap re-read at
//! most one window: either one that fit in one page, or one of at most
//! `max_window_secs` (plus the pages it took to find out it was dense).

use crate::state::Coverage;
use crate::time::EpochMs;

/// What a run is trying to cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Keep up with now.
    Live,
    /// Cover `[since, until)` and stop.
    Backfill { since: EpochMs, until: EpochMs },
}

/// A window to scan: events with `start_ms <= timestamp < end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: EpochMs,
    pub end_ms: EpochMs,
    /// Where the covered range goes once the whole window is delivered.
    pub then: Coverage,
}

/// The coverage a group starts from when a run begins.
pub fn initial_coverage(
    existing: Option<Coverage>,
    target: Target,
    now: EpochMs,
    lookback_ms: i64,
) -> Coverage {
    let fresh = |at: EpochMs| Coverage {
        covered_from_ms: at,
        cursor_ms: at,
    };
    match (existing, target) {
        (Some(c), Target::Live) => c,
        (None, Target::Live) => fresh(now - lookback_ms),
        (None, Target::Backfill { since, .. }) => fresh(since),
        // Asked to start after what was covered: start where asked, the gap
        // between is not wanted.
        (Some(c), Target::Backfill { since, .. }) if since > c.cursor_ms => fresh(since),
        (Some(c), Target::Backfill { .. }) => c,
    }
}

/// The next window, at most `span_ms` beyond the covered range, or `None`
/// when the target is reached.
pub fn next_window(
    cov: Coverage,
    target: Target,
    now: EpochMs,
    overlap_ms: i64,
    span_ms: i64,
) -> Option<Window> {
    let up_to = match target {
        Target::Live => now,
        Target::Backfill { since, until } => {
            if since < cov.covered_from_ms {
                let start = since.max(cov.covered_from_ms - span_ms);
                return Some(Window {
                    start_ms: start,
                    end_ms: cov.covered_from_ms,
                    then: Coverage {
                        covered_from_ms: start,
                        cursor_ms: cov.cursor_ms,
                    },
                });
            }
            until.min(now)
        }
    };
    if cov.cursor_ms >= up_to {
        return None;
    }
    let start = cov.covered_from_ms.max(cov.cursor_ms - overlap_ms);
    let end = up_to.min(cov.cursor_ms.saturating_add(span_ms));
    Some(Window {
        start_ms: start,
        end_ms: end,
        then: Coverage {
            covered_from_ms: cov.covered_from_ms,
            cursor_ms: end,
        },
    })
}

/// Events one FilterLogEvents or GetLogEvents page holds at most.
pub const PAGE_EVENTS: u64 = 10_000;

/// The shortest window sizing goes down to.
pub const MIN_SPAN_MS: i64 = 1_000;

/// The length of a group's next window, from what its last windows held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    span_ms: i64,
    max_window_ms: i64,
    /// The first window of a long range: all of it at once, given up as
    /// soon as it turns out dense (see [`Sizing::probing`]).
    probing: bool,
}

impl Sizing {
    /// Starts at `max_window_ms` (`agent.max_window_secs`).
    pub fn new(max_window_ms: i64) -> Sizing {
        Sizing {
            span_ms: max_window_ms.max(MIN_SPAN_MS),
            max_window_ms: max_window_ms.max(MIN_SPAN_MS),
            probing: false,
        }
    }

    /// Starts with the whole range in one window: a sparse or empty range
    /// (most of a week-long backfill) then costs one call or a few. The scan
    /// gives the window up once it has read more than half a page with more
    /// to come ([`Sizing::dense`]), and sizing starts again at
    /// `max_window_ms`: a dense range costs one call more, and a crash still
    /// re-reads at most one window.
    pub fn probing(max_window_ms: i64) -> Sizing {
        Sizing {
            span_ms: i64::MAX / 4,
            probing: true,
            ..Sizing::new(max_window_ms)
        }
    }

    /// Whether the next window is the probe of a whole range.
    pub fn is_probing(&self) -> bool {
        self.probing
    }

    /// The probe found the range dense after reading one page that reached
    /// `reach_ms` past the covered range (0 when it could not tell): windows
    /// of about two such pages from here, at most `max_window`.
    pub fn dense(&mut self, reach_ms: i64) {
        self.probing = false;
        self.span_ms = if reach_ms > 0 {
            reach_ms
                .saturating_mul(2)
                .clamp(MIN_SPAN_MS, self.max_window_ms)
        } else {
            self.max_window_ms
        };
    }

    /// How far past the covered range the next window may reach.
    pub fn span_ms(&self) -> i64 {
        self.span_ms
    }

    /// Learns from a completed window: how much of the covered range it
    /// added (`reach_ms`; it reached the whole span unless the target or
    /// now cut it short), the pages it took (extra pages of a paged scan;
    /// 0 where pages do not measure density, as stream by stream) and the
    /// events it read.
    pub fn observe(&mut self, reach_ms: i64, pages: u64, events: u64) {
        if std::mem::take(&mut self.probing) {
            // The probe covered what it could reach; size from there.
            self.span_ms = self.max_window_ms.max(reach_ms.saturating_mul(2));
            return;
        }
        let heavy = pages.max(events.div_ceil(PAGE_EVENTS));
        if heavy <= 1 && events <= PAGE_EVENTS / 2 {
            // One page with room to spare: try twice as much, if this window
            // was as long as allowed (a window cut short by now says nothing).
            if reach_ms >= self.span_ms {
                self.span_ms = self.span_ms.saturating_mul(2);
            }
        } else if heavy > 2 {
            // Aim at about two pages, never above max_window.
            let scaled = (reach_ms.max(MIN_SPAN_MS) as i128 * 2 / heavy as i128) as i64;
            self.span_ms = scaled.clamp(MIN_SPAN_MS, self.max_window_ms);
        } else {
            self.span_ms = self.span_ms.min(self.max_window_ms);
        }
    }
}

/// The lateness a group is guaranteed against: at least the configured
/// late-arrival bound; when adaptive, twice the lateness seen lately, up to
/// the cap.
pub fn overlap_ms(
    late_arrival_ms: i64,
    observed_delay_ms: i64,
    adaptive: bool,
    cap_ms: i64,
) -> i64 {
    if adaptive {
        late_arrival_ms.max((observed_delay_ms.saturating_mul(2)).min(cap_ms))
    } else {
        late_arrival_ms
    }
}

/// How much of a backfill's history is read for good.
///
/// A backfill window re-reads the late-arrival bound behind the cursor, for
/// events ingested after the cursor passed them. But an event with timestamp
/// `t` is ingested by `t + late` at the latest, so a scan that started at
/// wall time `r` saw every event with a timestamp before `r - late` that
/// will ever exist. Once the windows of a run, one after the other from the
/// first, have scanned everything below some `t` that way, re-reading below
/// `t` finds nothing new: history read days after it happened needs no
/// overlap at all, and only the windows near now pay for one.
///
/// The first window of a run starts where [`next_window`] puts it: what the
/// run before did is not known. A window counts only if it started at or
/// below what is already settled (no gap) and completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Every event below this timestamp has been read for good, under the
    /// bound `late_ms`; `None` before the first window of the run.
    below_ms: Option<EpochMs>,
    late_ms: i64,
}

impl Settled {
    /// Where a window going up may start instead of `start_ms` (what the
    /// overlap asks for): never below it, never above the cursor. A bound
    /// grown since (adaptive lateness) moves the settled line back by as much.
    pub fn start(&self, start_ms: EpochMs, cursor_ms: EpochMs, late_ms: i64) -> EpochMs {
        match self.below_ms {
            None => start_ms,
            Some(below) => {
                let below = below.saturating_sub((late_ms - self.late_ms).max(0));
                start_ms.max(below.min(cursor_ms))
            }
        }
    }

    /// Learns from a completed window going up, `[start_ms, end_ms)`, whose
    /// scan began at wall time `read_at_ms`, under the bound `late_ms`.
    pub fn observe(
        &mut self,
        start_ms: EpochMs,
        end_ms: EpochMs,
        read_at_ms: EpochMs,
        late_ms: i64,
    ) {
        let below = match self.below_ms {
            // The first window of the run: it starts at what is settled.
            None => start_ms,
            Some(below) => below.saturating_sub((late_ms - self.late_ms).max(0)),
        };
        if start_ms > below {
            // A gap this window did not read: nothing more is settled.
            return;
        }
        self.below_ms = Some(below.max(end_ms.min(read_at_ms - late_ms)));
        self.late_ms = late_ms;
    }
}

/// How far behind the cursor a live poll re-reads.
///
/// Re-reading the whole late-arrival bound `late_ms` on every poll would read
/// each event `late / poll` times. Instead an ordinary poll re-reads a short
/// overlap (twice the lateness seen lately, at least two poll intervals and
/// 5 s), and every `late_ms / 2` a sweep re-reads `late_ms + late_ms / 2 +
/// poll_ms`. Why that is enough, however irregular the polls (idle backoff,
/// a shared rate budget): take an event with timestamp `t`, ingested at
/// `i = t + L` with `L <= late_ms`. Let `Q0` be the last completed sweep at or
/// before `i` (a run's first poll is a sweep) and `Q` the next completed
/// sweep, after `i`, so the event is visible to it. A sweep counts as done
/// only when its window completed (a failed one is tried again at the next
/// poll), and a poll that completed any window completed its first. So the
/// last poll `R` before `Q` that moved the cursor is `Q0` or a poll less than
/// `late/2` after `Q0` (else its first window would have been a completed
/// sweep between the two): `R < Q0 + late/2 <= i + late/2`. The cursor `Q`
/// starts from is at most `R`, so `Q`'s window starts at most
/// `i + late/2 - (late + late/2 + poll) = t + L - late - poll`, before `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub short_ms: i64,
    pub sweep_ms: i64,
    pub sweep_every_ms: i64,
}

impl Overlap {
    pub fn new(late_ms: i64, observed_delay_ms: i64, poll_ms: i64) -> Overlap {
        let sweep_every_ms = (late_ms / 2).max(1);
        Overlap {
            short_ms: late_ms.min(
                observed_delay_ms
                    .saturating_mul(2)
                    .max(2 * poll_ms)
                    .max(5_000),
            ),
            sweep_ms: late_ms + sweep_every_ms + poll_ms,
            sweep_every_ms,
        }
    }

    /// The largest re-read any poll can make for a lateness cap: delivered ids
    /// are kept that far behind the cursor.
    pub fn retention_ms(cap_ms: i64, poll_ms: i64) -> i64 {
        cap_ms + cap_ms / 2 + poll_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(from: i64, cursor: i64) -> Coverage {
        Coverage {
            covered_from_ms: from,
            cursor_ms: cursor,
        }
    }

    #[test]
    fn live_window_rereads_the_overlap_behind_the_cursor() {
        let w = next_window(cov(0, 10_000), Target::Live, 12_000, 3_000, 60_000).unwrap();
        assert_eq!((w.start_ms, w.end_ms), (7_000, 12_000));
        assert_eq!(w.then, cov(0, 12_000));
    }

    #[test]
    fn overlap_never_reaches_below_the_covered_range() {
        let w = next_window(cov(9_000, 10_000), Target::Live, 12_000, 3_000, 60_000).unwrap();
        assert_eq!(w.start_ms, 9_000);
    }

    #[test]
    fn long_ranges_are_cut_into_windows_of_at_most_max_window() {
        let target = Target::Backfill {
            since: 0,
            until: 250,
        };
        let mut c = initial_coverage(None, target, 1_000, 0);
        let mut ends = Vec::new();
        while let Some(w) = next_window(c, target, 1_000, 10, 100) {
            assert!(w.end_ms - c.cursor_ms <= 100);
            ends.push(w.end_ms);
            c = w.then;
        }
        assert_eq!(ends, vec![100, 200, 250]);
    }

    #[test]
    fn backfill_before_the_covered_range_fills_downwards_first() {
        let target = Target::Backfill {
            since: 0,
            until: 1_000,
        };
        let mut c = initial_coverage(Some(cov(250, 1_000)), target, 1_000, 0);
        let w = next_window(c, target, 1_000, 10, 100).unwrap();
        assert_eq!((w.start_ms, w.end_ms), (150, 250));
        c = w.then;
        assert_eq!(c, cov(150, 1_000));
        let mut n = 1;
        while let Some(w) = next_window(c, target, 1_000, 10, 100) {
            c = w.then;
            n += 1;
        }
        assert_eq!(c, cov(0, 1_000));
        assert_eq!(n, 3);
    }

    #[test]
    fn backfill_after_the_covered_range_starts_where_asked() {
        let target = Target::Backfill {
            since: 5_000,
            until: 6_000,
        };
        assert_eq!(
            initial_coverage(Some(cov(0, 1_000)), target, 9_000, 0),
            cov(5_000, 5_000)
        );
    }

    #[test]
    fn backfill_already_covered_has_nothing_to_do() {
        let target = Target::Backfill {
            since: 100,
            until: 900,
        };
        assert_eq!(next_window(cov(0, 1_000), target, 2_000, 10, 100), None);
    }

    #[test]
    fn ordinary_polls_reread_a_short_overlap_and_sweeps_cover_the_late_bound() {
        let o = Overlap::new(300_000, 1_000, 10_000);
        assert_eq!(o.short_ms, 20_000);
        assert_eq!(o.sweep_every_ms, 150_000);
        assert_eq!(o.sweep_ms, 460_000);
        // A slow group's short overlap follows its observed delay, never past the bound.
        assert_eq!(Overlap::new(300_000, 100_000, 10_000).short_ms, 200_000);
        assert_eq!(Overlap::new(300_000, 400_000, 10_000).short_ms, 300_000);
    }

    /// Simulates polls and sweeps against events of every lateness up to the
    /// bound and checks each is inside some window after it became visible.
    #[test]
    fn every_event_within_the_late_bound_is_inside_some_window_after_it_is_visible() {
        let (late, poll) = (60_000i64, 7_000i64);
        let o = Overlap::new(late, 0, poll);
        // Polls at irregular times (processing takes a while).
        let mut polls = Vec::new();
        let (mut t, mut last_sweep, mut cursor) = (1_000_000i64, i64::MIN / 2, 1_000_000i64);
        while t < 1_400_000 {
            let sweep = t - last_sweep >= o.sweep_every_ms;
            if sweep {
                last_sweep = t;
            }
            let start = cursor - if sweep { o.sweep_ms } else { o.short_ms };
            polls.push((t, start));
            cursor = t;
            t += poll + (t / 1000) % 3_000;
        }
        for ts in (1_050_000..1_200_000).step_by(997) {
            for lateness in (0..=late).step_by(1_499) {
                let visible = ts + lateness;
                let seen = polls
                    .iter()
                    .any(|&(at, start)| at >= visible && start <= ts);
                assert!(
                    seen,
                    "event at {ts} ingested {lateness} ms late is never read"
                );
            }
        }
    }

    #[test]
    fn a_probe_takes_the_whole_range_and_falls_back_to_max_window_when_dense() {
        let hour = 3_600_000;
        let mut s = Sizing::probing(hour);
        assert!(s.is_probing());
        let target = Target::Backfill {
            since: 0,
            until: 7 * 24 * hour,
        };
        let w = next_window(cov(0, 0), target, i64::MAX / 2, 0, s.span_ms()).unwrap();
        assert_eq!(w.end_ms, 7 * 24 * hour, "the whole week in one window");
        s.dense(0);
        assert!(!s.is_probing());
        assert_eq!(s.span_ms(), hour);
        // A probe whose first page reached 10 minutes: windows of 20.
        let mut s = Sizing::probing(hour);
        s.dense(hour / 6);
        assert_eq!(s.span_ms(), hour / 3);
        let mut s = Sizing::probing(hour);
        s.dense(2 * hour);
        assert_eq!(s.span_ms(), hour);
        let mut s = Sizing::probing(hour);
        s.observe(2 * hour, 1, 10);
        assert!(!s.is_probing());
        assert_eq!(s.span_ms(), 4 * hour);
    }

    #[test]
    fn history_read_long_after_it_happened_needs_no_overlap() {
        let (min, late) = (60_000, 300_000);
        let mut settled = Settled::default();
        // The first window of a run re-reads what the overlap asks, whatever
        // the bound (there is nothing to move back).
        assert_eq!(
            settled.start(10 * min - late, 10 * min, 3 * late),
            10 * min - late
        );
        assert_eq!(
            settled.start(10 * min - late, 10 * min, late),
            10 * min - late
        );
        // A first window read under a large bound still settles history.
        let mut first = Settled::default();
        first.observe(0, 10 * min, 100 * min, 3 * late);
        assert_eq!(
            first.start(10 * min - 3 * late, 10 * min, 3 * late),
            10 * min
        );
        // Read at 100 min: everything before 95 min is settled, so the
        // window [10, 70) min needs nothing behind 70 min again.
        settled.observe(10 * min - late, 70 * min, 100 * min, late);
        assert_eq!(settled.start(70 * min - late, 70 * min, late), 70 * min);
        // Near now it re-reads what the bound still allows: the window
        // [70, 99) min was read at 100 min; events after 95 min may come.
        settled.observe(70 * min, 99 * min, 100 * min, late);
        assert_eq!(settled.start(99 * min - late, 99 * min, late), 95 * min);
        // A larger bound (adaptive) moves the line back by the difference.
        assert_eq!(
            settled.start(99 * min - 2 * late, 99 * min, 2 * late),
            90 * min
        );
        // Never below what the overlap asks, never above the cursor.
        assert_eq!(settled.start(98 * min, 99 * min, late), 98 * min);
    }

    #[test]
    fn a_window_that_leaves_a_gap_settles_nothing() {
        let (min, late) = (60_000, 300_000);
        let mut settled = Settled::default();
        settled.observe(0, 10 * min, 100 * min, late);
        // Started above what was settled (10 min): [10, 20) min unread.
        settled.observe(20 * min, 30 * min, 100 * min, late);
        assert_eq!(settled.start(25 * min, 30 * min, late), 25 * min);
        assert_eq!(settled.start(0, 30 * min, late), 10 * min);
    }

    #[test]
    fn windows_grow_while_they_fit_in_a_page_and_shrink_when_dense() {
        let hour = 3_600_000;
        let mut s = Sizing::new(hour);
        // An empty week: 1h, 2h, 4h, ... covers 7 days in 8 windows.
        let (week, mut covered, mut windows) = (7 * 24 * hour, 0, 0);
        while covered < week {
            let reach = s.span_ms().min(week - covered);
            covered += reach;
            windows += 1;
            s.observe(reach, 1, 0);
        }
        assert_eq!(windows, 8);
        // A window cut short by now does not grow the next.
        let before = s.span_ms();
        s.observe(1_000, 1, 3);
        assert_eq!(s.span_ms(), before);
        // A dense window (5 pages) brings the span under max_window...
        s.observe(before, 5, 50_000);
        assert!(s.span_ms() <= hour);
        // ...and keeps shrinking towards ~2 pages per window.
        let dense = s.span_ms();
        s.observe(dense, 8, 80_000);
        assert_eq!(s.span_ms(), dense * 2 / 8);
        // Two pages: kept, capped at max_window.
        let mut s = Sizing::new(hour);
        s.observe(hour, 1, 0);
        assert_eq!(s.span_ms(), 2 * hour);
        s.observe(2 * hour, 2, 12_000);
        assert_eq!(s.span_ms(), hour);
        // Never below the floor.
        let mut s = Sizing::new(hour);
        s.observe(MIN_SPAN_MS, 1_000, 10_000_000);
        assert_eq!(s.span_ms(), MIN_SPAN_MS);
    }

    /// The late-arrival proof does not depend on window lengths: windows
    /// of varying size (grown while sparse, shrunk when dense), with the
    /// overlap behind each start, still see every event within the bound.
    #[test]
    fn every_late_event_is_seen_with_windows_of_varying_size() {
        let (late, poll) = (60_000i64, 7_000i64);
        let o = Overlap::new(late, 0, poll);
        let mut sizing = Sizing::new(5_000);
        // A group catching up (backlog far behind now), then live.
        let (mut now, mut last_sweep) = (2_000_000i64, i64::MIN / 2);
        let mut cov = Coverage {
            covered_from_ms: 1_000_000,
            cursor_ms: 1_000_000,
        };
        let mut reads: Vec<(i64, i64, i64)> = Vec::new(); // (read at, start, end)
        let mut step = 0u64;
        while now < 2_400_000 {
            let sweep = now - last_sweep >= o.sweep_every_ms;
            if sweep {
                last_sweep = now;
            }
            let overlap = if sweep { o.sweep_ms } else { o.short_ms };
            let mut first = true;
            loop {
                let o_ms = if first { overlap } else { o.short_ms };
                let span = sizing.span_ms();
                let Some(w) = next_window(cov, Target::Live, now, o_ms, span) else {
                    break;
                };
                first = false;
                reads.push((now, w.start_ms, w.end_ms));
                // Density varies: every third window is dense.
                step += 1;
                let (pages, events) = if step.is_multiple_of(3) {
                    (4, 35_000)
                } else {
                    (1, 10)
                };
                let reach = w.end_ms - cov.cursor_ms;
                sizing.observe(reach, pages, events);
                cov = w.then;
                now += 150; // each window takes a while
                if reach < span {
                    break; // caught up with now
                }
            }
            now += poll + (now / 1000) % 3_000;
        }
        for ts in (1_000_000..2_300_000).step_by(4_999) {
            for lateness in (0..=late).step_by(1_499) {
                let visible = ts + lateness;
                // Events visible before the live reads started were read by
                // the catch-up when their window came.
                let seen = reads
                    .iter()
                    .any(|&(at, start, end)| at >= visible && start <= ts && ts < end);
                assert!(
                    seen,
                    "event at {ts} ingested {lateness} ms late is never read"
                );
            }
        }
    }

    #[test]
    fn adaptive_overlap_grows_with_observed_delay_up_to_the_cap() {
        assert_eq!(overlap_ms(300, 10, true, 900), 300);
        assert_eq!(overlap_ms(300, 200, true, 900), 400);
        assert_eq!(overlap_ms(300, 10_000, true, 900), 900);
        assert_eq!(overlap_ms(300, 10_000, false, 900), 300);
    }
}
