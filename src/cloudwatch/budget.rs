//! The API rate budget: one limiter per CloudWatch Logs API, shared by every
//! poller of the process (one process talks to one Region with one set of
//! credentials, so this is the account's per-Region quota as cwtap sees it).
//!
//! - Every attempt, retries included, takes a slot first, so a throttling
//!   storm slows the retries down instead of multiplying them.
//! - The rate adapts (AIMD): a throttled answer halves it (at most once per
//!   second, however many calls were in flight), down to a floor of a
//!   twentieth of the configured rate; each successful call gives back a
//!   fiftieth of the configured rate, up to the configured rate.
//! - Callers with a backlog (the previous page ended with a token, or the
//!   group is behind by more than a window) take free slots before idle
//!   callers. An idle caller that has waited [`PROMOTE_AFTER`] is served as
//!   a backlog caller, so no group starves; within a class, callers are
//!   served first come, first served.
//!
//! A caller learns its class from the task-local [`PRIORITY`], set by the
//! group pollers (see [`with_priority`] and [`set_priority`]); outside a
//! poller every call is idle, which only matters when pollers compete.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::time::Instant;

use crate::config::RateLimits;
use crate::shutdown::Shutdown;

/// How long an idle caller waits before it is served as a backlog caller.
pub const PROMOTE_AFTER: Duration = Duration::from_secs(30);

/// A throttle halves the rate at most this often.
const DECREASE_EVERY: Duration = Duration::from_secs(1);

/// Who is asking for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// More pages are waiting (a page ended with a token, or the group is
    /// behind).
    Backlog,
    /// A routine poll of a caught-up group.
    Idle,
}

tokio::task_local! {
    /// The class of the calls made by the current task.
    pub static PRIORITY: Cell<Priority>;
}

/// Runs `fut` with its CloudWatch calls in class `priority`; the class can be
/// changed from inside with [`set_priority`].
pub async fn with_priority<F: std::future::Future>(priority: Priority, fut: F) -> F::Output {
    PRIORITY.scope(Cell::new(priority), fut).await
}

/// Changes the class of the current task's next calls (no-op outside
/// [`with_priority`]).
pub fn set_priority(priority: Priority) {
    let _ = PRIORITY.try_with(|p| p.set(priority));
}

fn current_priority() -> Priority {
    PRIORITY.try_with(|p| p.get()).unwrap_or(Priority::Idle)
}

/// The limiters of every rate-limited API.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    limiters: Arc<HashMap<&'static str, Arc<Limiter>>>,
}

impl Budget {
    /// The limiters of `account` (its own budget, its own metrics label).
    pub fn new(account: &str, limits: &RateLimits) -> Budget {
        let mut limiters = HashMap::new();
        for (operation, rate) in rates(limits) {
            let limiter = Limiter::new(operation, rate).for_account(account);
            crate::obs::metrics().api_rate(account, operation, limiter.max_rate());
            limiters.insert(operation, Arc::new(limiter));
        }
        Budget {
            limiters: Arc::new(limiters),
        }
    }

    /// Applies new rates (a reloaded config) to the running limiters.
    pub fn set_limits(&self, limits: &RateLimits) {
        for (operation, rate) in rates(limits) {
            if let Some(l) = self.limiters.get(operation) {
                l.set_max_rate(rate);
            }
        }
    }

    /// The limiter of `operation`, if it has one.
    pub fn limiter(&self, operation: &str) -> Option<&Arc<Limiter>> {
        self.limiters.get(operation)
    }

    /// Waits for a slot of `operation` in the current task's class; false if
    /// shutdown came first. Operations without a limiter go at once.
    pub async fn acquire(&self, operation: &str, shutdown: &Shutdown) -> bool {
        match self.limiters.get(operation) {
            Some(l) => l.acquire(current_priority(), shutdown).await,
            None => !shutdown.is_triggered(),
        }
    }

    /// Feeds a call's outcome back: `throttled` lowers the rate, a success
    /// raises it.
    pub fn record(&self, operation: &str, throttled: bool) {
        if let Some(l) = self.limiters.get(operation) {
            if throttled {
                l.throttled();
            } else {
                l.succeeded();
            }
        }
    }
}

/// Each rate-limited API with its configured rate.
fn rates(limits: &RateLimits) -> [(&'static str, f64); 4] {
    [
        ("FilterLogEvents", limits.filter_log_events),
        ("GetLogEvents", limits.get_log_events),
        ("DescribeLogGroups", limits.describe_log_groups),
        ("DescribeLogStreams", limits.describe_log_streams),
    ]
}

/// One API's limiter.
#[derive(Debug)]
pub struct Limiter {
    operation: &'static str,
    /// The account whose budget this is (metrics label).
    account: Arc<str>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The configured rate, and the floor throttling may bring it down to.
    max_rate: f64,
    min_rate: f64,
    rate: f64,
    /// The earliest instant the next slot may be taken.
    next_free: Instant,
    last_decrease: Option<Instant>,
    next_ticket: u64,
    /// Waiting tickets by class; an idle ticket with its arrival.
    backlog: BTreeSet<u64>,
    idle: BTreeMap<u64, Instant>,
}

/// Removes a waiter's ticket however its wait ends (slot, shutdown, drop).
struct Ticket<'a> {
    limiter: &'a Limiter,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.backlog.remove(&self.id);
        s.idle.remove(&self.id);
    }
}

impl Limiter {
    /// A limiter allowing `rate` calls per second (at least one call every
    /// 100 s, whatever is configured).
    pub fn new(operation: &'static str, rate: f64) -> Limiter {
        let max_rate = rate.max(0.01);
        Limiter {
            operation,
            account: Arc::from(crate::config::DEFAULT_ACCOUNT),
            state: Mutex::new(State {
                max_rate,
                min_rate: max_rate / 20.0,
                rate: max_rate,
                next_free: Instant::now(),
                last_decrease: None,
                next_ticket: 0,
                backlog: BTreeSet::new(),
                idle: BTreeMap::new(),
            }),
        }
    }

    /// The same limiter, labelled as `account`'s.
    pub fn for_account(mut self, account: &str) -> Limiter {
        self.account = Arc::from(account);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update
        // is a plain assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The API this limiter guards.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The current rate, in calls per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// The configured (maximum) rate.
    pub fn max_rate(&self) -> f64 {
        self.lock().max_rate
    }

    /// A new configured rate (a reloaded config): the current rate moves
    /// within the new bounds.
    pub fn set_max_rate(&self, rate: f64) {
        let mut s = self.lock();
        s.max_rate = rate.max(0.01);
        s.min_rate = s.max_rate / 20.0;
        s.rate = s.rate.clamp(s.min_rate, s.max_rate);
        let rate = s.rate;
        drop(s);
        crate::obs::metrics().api_rate(&self.account, self.operation, rate);
    }

    /// Waits for a slot; false if shutdown came first.
    pub async fn acquire(&self, priority: Priority, shutdown: &Shutdown) -> bool {
        let mut ticket = self.enqueue(priority, Instant::now());
        while let Some(wake_at) = self.try_take(&mut ticket, Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at)) => {}
                _ = shutdown.wait() => return false,
            }
        }
        true
    }

    /// Joins the queue of `priority` callers.
    fn enqueue(&self, priority: Priority, now: Instant) -> Ticket<'_> {
        let mut s = self.lock();
        let id = s.next_ticket;
        s.next_ticket += 1;
        match priority {
            Priority::Backlog => {
                s.backlog.insert(id);
            }
            Priority::Idle => {
                s.idle.insert(id, now);
            }
        }
        Ticket { limiter: self, id }
    }

    /// Takes the slot for `ticket` if it is free and the ticket's turn
    /// (`None`), else says when to look again.
    fn try_take(&self, ticket: &mut Ticket<'_>, now: Instant) -> Option<Instant> {
        let mut s = self.lock();
        // Idle callers that waited long enough join the backlog, in their
        // arrival order (ids grow with arrival).
        while let Some((&id, &arrived)) = s.idle.first_key_value() {
            if now.duration_since(arrived) < PROMOTE_AFTER {
                break;
            }
            s.idle.remove(&id);
            s.backlog.insert(id);
        }
        let turn = if s.backlog.contains(&ticket.id) {
            s.backlog.first() == Some(&ticket.id)
        } else {
            s.backlog.is_empty() && s.idle.first_key_value().map(|(id, _)| id) == Some(&ticket.id)
        };
        if turn && now >= s.next_free {
            s.next_free = now + Duration::from_secs_f64(1.0 / s.rate);
            s.backlog.remove(&ticket.id);
            s.idle.remove(&ticket.id);
            return None;
        }
        // Not this caller's turn, or not yet: look again when the next slot
        // frees (a slot taken meanwhile moves it on).
        Some(s.next_free.max(now + Duration::from_millis(1)))
    }

    /// A call was throttled: halve the rate (once per second at most) and
    /// push the next slot out accordingly.
    pub fn throttled(&self) {
        if let Some(rate) = self.throttled_at(Instant::now()) {
            crate::obs::metrics().api_rate(&self.account, self.operation, rate);
            tracing::info!(
                operation = self.operation,
                rate = format!("{rate:.2}/s"),
                "CloudWatch throttled; lowering the call rate"
            );
        }
    }

    /// [`Self::throttled`] at `now`; the new rate if it changed.
    fn throttled_at(&self, now: Instant) -> Option<f64> {
        let mut s = self.lock();
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < DECREASE_EVERY)
        {
            return None;
        }
        s.last_decrease = Some(now);
        s.rate = (s.rate / 2.0).max(s.min_rate);
        s.next_free = s.next_free.max(now + Duration::from_secs_f64(1.0 / s.rate));
        Some(s.rate)
    }

    /// A call succeeded: raise the rate by a fiftieth of the configured rate.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        if s.rate >= s.max_rate {
            return;
        }
        s.rate = (s.rate + s.max_rate / 50.0).min(s.max_rate);
        let rate = s.rate;
        drop(s);
        crate::obs::metrics().api_rate(&self.account, self.operation, rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slots_are_spaced_by_the_rate() {
        let l = Limiter::new("FilterLogEvents", 5.0);
        let t0 = Instant::now();
        let mut a = l.enqueue(Priority::Idle, t0);
        assert_eq!(l.try_take(&mut a, t0), None, "the first slot is free");
        let mut b = l.enqueue(Priority::Idle, t0);
        assert_eq!(l.try_take(&mut b, t0), Some(t0 + ms(200)));
        assert_eq!(l.try_take(&mut b, t0 + ms(199)), Some(t0 + ms(200)));
        assert_eq!(l.try_take(&mut b, t0 + ms(200)), None);
        let mut c = l.enqueue(Priority::Idle, t0);
        assert_eq!(l.try_take(&mut c, t0 + ms(250)), Some(t0 + ms(400)));
    }

    #[test]
    fn throttling_halves_the_rate_once_per_second_down_to_a_floor_and_successes_recover_it() {
        let l = Limiter::new("FilterLogEvents", 4.0);
        let t0 = Instant::now();
        assert_eq!(l.throttled_at(t0), Some(2.0));
        assert_eq!(l.throttled_at(t0 + ms(500)), None, "once per second");
        for i in 1..=10 {
            l.throttled_at(t0 + ms(1000 * i));
        }
        assert_eq!(l.rate(), 0.2, "floor: a twentieth of the configured rate");
        // Each success gives back 4/50 = 0.08/s: 48 successes reach 4.0.
        for _ in 0..47 {
            l.succeeded();
        }
        assert!(l.rate() < 4.0);
        l.succeeded();
        assert!((l.rate() - 4.0).abs() < 1e-9);
        l.succeeded();
        assert!(
            (l.rate() - 4.0).abs() < 1e-9,
            "never above the configured rate"
        );
    }

    #[test]
    fn a_throttle_pushes_the_next_slot_out() {
        let l = Limiter::new("FilterLogEvents", 10.0);
        let t0 = Instant::now();
        let mut a = l.enqueue(Priority::Idle, t0);
        assert_eq!(l.try_take(&mut a, t0), None);
        l.throttled_at(t0 + ms(50)); // 5/s: the next slot is 200 ms after the throttle
        let mut b = l.enqueue(Priority::Idle, t0);
        assert_eq!(l.try_take(&mut b, t0 + ms(100)), Some(t0 + ms(250)));
    }

    #[test]
    fn backlog_callers_go_first_in_arrival_order() {
        let l = Limiter::new("FilterLogEvents", 1.0);
        let t0 = Instant::now();
        let mut first = l.enqueue(Priority::Idle, t0);
        assert_eq!(l.try_take(&mut first, t0), None);
        let mut idle = l.enqueue(Priority::Idle, t0);
        let mut b1 = l.enqueue(Priority::Backlog, t0 + ms(1));
        let mut b2 = l.enqueue(Priority::Backlog, t0 + ms(2));
        let slot = t0 + ms(1000);
        assert!(
            l.try_take(&mut idle, slot).is_some(),
            "a backlog is waiting"
        );
        assert!(l.try_take(&mut b2, slot).is_some(), "b1 came first");
        assert_eq!(l.try_take(&mut b1, slot), None);
        assert!(l.try_take(&mut idle, slot + ms(1000)).is_some());
        assert_eq!(l.try_take(&mut b2, slot + ms(1000)), None);
        // No backlog left: the idle caller goes.
        assert_eq!(l.try_take(&mut idle, slot + ms(2000)), None);
    }

    #[test]
    fn an_idle_caller_that_waited_long_enough_is_served_before_newer_backlog() {
        let l = Limiter::new("FilterLogEvents", 1.0);
        let t0 = Instant::now();
        let mut idle = l.enqueue(Priority::Idle, t0);
        let mut backlog = l.enqueue(Priority::Backlog, t0 + ms(10));
        // Before PROMOTE_AFTER the backlog wins the free slot...
        assert!(l.try_take(&mut idle, t0 + ms(20)).is_some());
        assert_eq!(l.try_take(&mut backlog, t0 + ms(20)), None);
        let mut newer = l.enqueue(Priority::Backlog, t0 + ms(30));
        // ...after it, the idle caller is backlog too, and older than `newer`.
        let later = t0 + PROMOTE_AFTER;
        assert!(l.try_take(&mut newer, later).is_some());
        assert_eq!(l.try_take(&mut idle, later), None);
        assert_eq!(l.try_take(&mut newer, later + ms(1000)), None);
    }

    #[test]
    fn a_caller_that_gives_up_leaves_the_queue() {
        let l = Limiter::new("FilterLogEvents", 1.0);
        let t0 = Instant::now();
        let backlog = l.enqueue(Priority::Backlog, t0);
        let mut idle = l.enqueue(Priority::Idle, t0);
        assert!(
            l.try_take(&mut idle, t0).is_some(),
            "behind the backlog caller"
        );
        drop(backlog);
        assert_eq!(l.try_take(&mut idle, t0), None);
        let s = l.lock();
        assert!(s.backlog.is_empty() && s.idle.is_empty());
    }

    #[tokio::test]
    async fn shutdown_ends_a_wait() {
        let l = Arc::new(Limiter::new("FilterLogEvents", 0.01));
        let (trigger, shutdown) = crate::shutdown::channel();
        assert!(l.acquire(Priority::Backlog, &shutdown).await);
        // The next slot is 100 s away.
        let waiting = {
            let (l, shutdown) = (l.clone(), shutdown.clone());
            tokio::spawn(async move { l.acquire(Priority::Backlog, &shutdown).await })
        };
        tokio::task::yield_now().await;
        trigger.trigger();
        assert!(!waiting.await.unwrap());
        let s = l.lock();
        assert!(s.backlog.is_empty() && s.idle.is_empty());
    }
}
