//! How far each running group has read in event time. A backfill closes
//! the traces every group has read past (the watermark), and keeps its
//! groups in step so that what is open between the slowest group and the
//! fastest stays bounded.
//!
//! Without the pace, a backfill's groups do not read side by side: a group
//! whose next page is a backlog call goes before another group's first call
//! in the rate budget, so one group could read its whole range before the
//! next one starts. Every trace the groups read ahead of the slowest one
//! stays open (its other events may be in the groups behind), and a week of
//! history across many groups would be held in memory at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::shutdown::Shutdown;
use crate::time::EpochMs;

/// Per running group, the event time it has read to: its cursor, and
/// within a window the last event delivered while the pages come in
/// timestamp order (checked per page: an emulator may go stream by stream).
#[derive(Debug)]
pub struct Reading {
    up_to: Mutex<HashMap<String, EpochMs>>,
    /// Bumped whenever a group reads further or ends.
    moved: watch::Sender<u64>,
    /// How far a group may read ahead of the slowest running group
    /// (`None`: as far as it likes).
    ahead_ms: Option<i64>,
}

impl Reading {
    /// Groups read at their own pace (`run`: traces close by wall clock).
    pub fn unpaced() -> Reading {
        Reading::paced(None)
    }

    /// With `ahead_ms`, a group reads at most that far ahead of the slowest
    /// running group, in event time, before its next page (see
    /// [`Pace::in_step`]).
    pub fn paced(ahead_ms: Option<i64>) -> Reading {
        Reading {
            up_to: Mutex::new(HashMap::new()),
            moved: watch::channel(0).0,
            ahead_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EpochMs>> {
        self.up_to.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `group` has read everything up to `ts` (it never goes back).
    pub fn read_to(&self, group: &str, ts: EpochMs) {
        let mut map = self.lock();
        match map.get_mut(group) {
            Some(at) if ts <= *at => return,
            Some(at) => *at = ts,
            None => {
                map.insert(group.to_string(), ts);
            }
        }
        drop(map);
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// `group` stopped: it no longer holds the watermark back.
    pub fn ended(&self, group: &str) {
        if self.lock().remove(group).is_some() {
            self.moved.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The event time every running group has read past (`None`: no group
    /// running).
    pub fn watermark(&self) -> Option<EpochMs> {
        self.lock().values().min().copied()
    }

    /// Sees every move from now on ([`watch::Receiver::changed`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }

    /// Whether `group` has read further than the pace allows past the
    /// slowest running group.
    fn ahead(&self, group: &str) -> bool {
        let Some(ahead_ms) = self.ahead_ms else {
            return false;
        };
        let map = self.lock();
        let (Some(&mine), Some(&slowest)) = (map.get(group), map.values().min()) else {
            return false;
        };
        mine > slowest.saturating_add(ahead_ms)
    }
}

/// One group's place in [`Reading`]'s pace, for its page reader.
pub struct Pace {
    pub reading: Arc<Reading>,
    pub group: String,
}

impl Pace {
    /// Waits while the group is ahead of the slowest running group by more
    /// than the pace allows. Page permits coming back to the reader
    /// meanwhile go back to the account at once: the slower groups may need
    /// them to catch up. The slowest group never waits, so the wait always
    /// ends: it reads on, or ends. False if shutdown came first.
    pub async fn in_step(
        &self,
        returned: &mut mpsc::UnboundedReceiver<OwnedSemaphorePermit>,
        shutdown: &Shutdown,
    ) -> bool {
        if self.reading.ahead_ms.is_none() {
            return true;
        }
        let mut moved = self.reading.subscribe();
        while self.reading.ahead(&self.group) {
            while let Ok(permit) = returned.try_recv() {
                drop(permit);
            }
            tokio::select! {
                changed = moved.changed() => {
                    if changed.is_err() {
                        return true;
                    }
                }
                Some(permit) = returned.recv() => drop(permit),
                _ = shutdown.wait() => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn the_watermark_is_the_slowest_running_group() {
        let r = Reading::unpaced();
        assert_eq!(r.watermark(), None);
        r.read_to("a", 100);
        r.read_to("b", 50);
        r.read_to("b", 40); // never back
        assert_eq!(r.watermark(), Some(50));
        r.ended("b");
        assert_eq!(r.watermark(), Some(100));
    }

    #[tokio::test]
    async fn a_group_ahead_waits_until_the_slowest_catches_up_or_ends() {
        let reading = Arc::new(Reading::paced(Some(1_000)));
        reading.read_to("fast", 0);
        reading.read_to("slow", 0);
        reading.read_to("other", 0);
        let (_stop, shutdown) = crate::shutdown::channel();
        let (_back, mut returned) = mpsc::unbounded_channel();
        let pace = Pace {
            reading: Arc::clone(&reading),
            group: "fast".into(),
        };

        // Within the pace: no wait.
        reading.read_to("fast", 1_000);
        assert!(pace.in_step(&mut returned, &shutdown).await);

        // Past it: the wait lasts until the slowest group moves close enough.
        reading.read_to("fast", 5_000);
        {
            let mut wait = pin!(pace.in_step(&mut returned, &shutdown));
            assert!(poll_once(wait.as_mut()).is_pending());
            reading.read_to("slow", 3_000);
            reading.read_to("other", 3_000);
            assert!(poll_once(wait.as_mut()).is_pending(), "still 2 s ahead");
            reading.read_to("slow", 4_500);
            assert!(poll_once(wait.as_mut()).is_pending(), "`other` is behind");
            reading.ended("other");
            assert_eq!(poll_once(wait.as_mut()), Poll::Ready(true));
        }

        // The slowest group itself never waits.
        reading.read_to("fast", 9_000);
        let slow = Pace {
            reading: Arc::clone(&reading),
            group: "slow".into(),
        };
        assert!(slow.in_step(&mut returned, &shutdown).await);
    }

    #[tokio::test]
    async fn a_waiting_group_gives_its_page_permits_back_and_stops_on_shutdown() {
        let reading = Arc::new(Reading::paced(Some(0)));
        reading.read_to("fast", 10);
        reading.read_to("slow", 0);
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (back, mut returned) = mpsc::unbounded_channel();
        back.send(Arc::clone(&slots).acquire_owned().await.unwrap())
            .unwrap();
        assert_eq!(slots.available_permits(), 0);
        let (stop, shutdown) = crate::shutdown::channel();
        let pace = Pace {
            reading,
            group: "fast".into(),
        };
        let mut wait = pin!(pace.in_step(&mut returned, &shutdown));
        assert!(poll_once(wait.as_mut()).is_pending());
        assert_eq!(slots.available_permits(), 1, "the held permit went back");
        stop.trigger();
        assert_eq!(poll_once(wait.as_mut()), Poll::Ready(false));
    }
}
