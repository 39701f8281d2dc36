//! Backoff between retries, shared by the CloudWatch reader and the sinks:
//! capped exponential delays (from `backon`) with full jitter, each sleep racing
//! the shutdown signal.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::shutdown::Shutdown;

/// The delays of one retry sequence.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    /// Delays start at `min` and double up to `max`; there is no limit on the
    /// number of delays (callers count their attempts).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max.max(min))
            .with_factor(2.0)
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
        }
    }

    /// The next delay: uniform in [0, capped exponential] ("full jitter").
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.delays.next().unwrap_or(Duration::from_secs(1));
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ms))
    }

    /// Sleeps the next delay; false if shutdown came first.
    pub async fn sleep(&mut self, shutdown: &Shutdown) -> bool {
        let delay = self.next_delay();
        shutdown.sleep(delay).await
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_below_a_growing_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let caps = [100u64, 200, 400, 800, 800, 800];
        for cap in caps {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(cap), "{d:?} above cap {cap}ms");
        }
        // Full jitter spreads delays over [0, cap]: over many draws at the cap,
        // some must fall in the lower half.
        let low = (0..200)
            .filter(|_| b.next_delay() < Duration::from_millis(400))
            .count();
        assert!(low > 0, "no delay fell in the lower half of the cap");
    }
}
