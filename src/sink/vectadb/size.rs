//! How many events a VectaDB request carries.
//!
//! The server handles a batch one event at a time: a trace lookup, an
//! insert and, with `generate_embeddings`, a call to its embedding provider
//! for each event (docs/design.md#delivery-to-vectadb). So a request's time
//! grows with its events, and one that outlasts `vectadb.timeout_secs` is
//! sent again, while the events the server had stored by then are stored
//! twice (it does not de-duplicate). Sending the same request again would
//! time out again, for ever.
//!
//! So the size follows the server. It starts at [`START`] events, doubles
//! after each answer, and is held to what the server's time per event (a
//! moving average over the answers) fits in a quarter of the timeout, and
//! to `vectadb.batch_size`. A request that times out sets the time per
//! event to at least the timeout spread over its events and halves the
//! size at once; its events go again in requests of the new size. A fast
//! server is sent `batch_size` events per request after a few requests: the
//! fewer requests (and checkpoints, one per batch a source hands over), the
//! less CPU per event.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::obs;

/// The first request's size (or `batch_size`, when smaller).
pub const START: usize = 10;

/// The share of the request timeout a request is sized to take.
const TARGET_SHARE: f64 = 0.25;

/// The weight of the newest answer in the time per event.
const WEIGHT: f64 = 0.3;

/// The current request size, shared by every delivery of the output.
#[derive(Debug)]
pub struct RequestSize {
    max: usize,
    timeout_ms: f64,
    current: AtomicUsize,
    /// The server's time per event in ms, once it has answered.
    per_event_ms: Mutex<Option<f64>>,
}

impl RequestSize {
    /// A size of at most `max` events for a server given `timeout` per
    /// request.
    pub fn new(max: usize, timeout: Duration) -> RequestSize {
        let max = max.max(1);
        obs::metrics().set_downstream_request_events(START.min(max));
        RequestSize {
            max,
            timeout_ms: timeout.as_secs_f64() * 1000.0,
            current: AtomicUsize::new(START.min(max)),
            per_event_ms: Mutex::new(None),
        }
    }

    /// How many events the next request should carry at most.
    pub fn get(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// The server answered a request of `events` events after `took`.
    pub fn answered(&self, events: usize, took: Duration) {
        if events == 0 {
            return;
        }
        let seen = took.as_secs_f64() * 1000.0 / events as f64;
        let mut per_event = self.per_event_ms.lock().unwrap_or_else(|p| p.into_inner());
        let estimate = match *per_event {
            Some(before) => before + WEIGHT * (seen - before),
            None => seen,
        };
        *per_event = Some(estimate);
        let next = next_size(self.get(), self.max, estimate, self.timeout_ms);
        self.set(next);
    }

    /// A request of `events` events got no answer within the timeout.
    pub fn timed_out(&self, events: usize) {
        let events = events.max(1);
        let at_least = self.timeout_ms / events as f64;
        let mut per_event = self.per_event_ms.lock().unwrap_or_else(|p| p.into_inner());
        *per_event = Some(per_event.map_or(at_least, |p| p.max(at_least)));
        let next = (events / 2).clamp(1, self.get().max(1));
        self.set(next);
    }

    fn set(&self, next: usize) {
        let before = self.current.swap(next, Ordering::Relaxed);
        if before != next {
            obs::metrics().set_downstream_request_events(next);
            tracing::debug!(before, next, "VectaDB request size");
        }
    }
}

/// The size after an answer: double `current`, within what `per_event_ms`
/// fits in [`TARGET_SHARE`] of `timeout_ms`, and within 1..=`max`.
fn next_size(current: usize, max: usize, per_event_ms: f64, timeout_ms: f64) -> usize {
    let doubled = current.saturating_mul(2);
    let fits = if per_event_ms > 0.0 {
        // Saturates for a tiny time per event (an `as` from a float does).
        (timeout_ms * TARGET_SHARE / per_event_ms) as usize
    } else {
        usize::MAX
    };
    doubled.min(fits).clamp(1, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_fast_server_gets_batch_size_after_a_few_doublings() {
        let size = RequestSize::new(300, Duration::from_secs(30));
        let mut seen = vec![size.get()];
        for _ in 0..6 {
            size.answered(size.get(), ms(2));
            seen.push(size.get());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
        // batch_size below the start: that is the first size too.
        assert_eq!(RequestSize::new(4, Duration::from_secs(30)).get(), 4);
    }

    #[test]
    fn a_slow_server_is_sent_what_fits_a_quarter_of_the_timeout() {
        // 200 ms per event against 30 s: 7.5 s hold 37 events.
        let size = RequestSize::new(300, Duration::from_secs(30));
        for _ in 0..20 {
            let n = size.get();
            size.answered(n, ms(200 * n as u64));
        }
        assert_eq!(size.get(), 37);
        // The server gets faster: the size follows, up to batch_size.
        for _ in 0..40 {
            let n = size.get();
            size.answered(n, ms(n as u64));
        }
        assert_eq!(size.get(), 300);
    }

    #[test]
    fn a_timeout_halves_the_size_and_holds_it_down() {
        let size = RequestSize::new(300, Duration::from_secs(30));
        for _ in 0..6 {
            size.answered(size.get(), ms(2));
        }
        assert_eq!(size.get(), 300);
        size.timed_out(300);
        assert_eq!(size.get(), 150);
        // Per event at least 30 s / 300 = 100 ms: after a fast answer the
        // average is still 70.3 ms, which fits 106 events in 7.5 s.
        size.answered(150, ms(150));
        assert_eq!(size.get(), 106);
        // A single event that times out stays a single event.
        let one = RequestSize::new(1, Duration::from_secs(1));
        one.timed_out(1);
        assert_eq!(one.get(), 1);
    }

    #[test]
    fn sizes_stay_within_one_and_batch_size() {
        assert_eq!(next_size(10, 300, 0.0, 30_000.0), 20);
        assert_eq!(next_size(200, 300, 1e-9, 30_000.0), 300);
        assert_eq!(next_size(10, 300, 60_000.0, 30_000.0), 1);
        assert_eq!(next_size(usize::MAX, 300, 1.0, 30_000.0), 300);
        let size = RequestSize::new(0, Duration::from_secs(30));
        size.answered(0, ms(5));
        assert_eq!(size.get(), 1);
    }
}
