//! Shutdown signalling: one [`ShutdownTrigger`] and any number of cloned
//! [`Shutdown`] listeners. Every sleep and retry in cwtap races it.

use std::time::Duration;

use tokio::sync::watch;

/// Whether shutdown was requested, and the most grace it leaves.
#[derive(Debug, Clone, Copy, Default)]
struct Fired {
    fired: bool,
    /// At most this long for in-flight work (a stop with a deadline of its
    /// own), whatever grace the work would otherwise get.
    grace_cap: Option<Duration>,
}

/// Fires the shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<Fired>);

/// Observes the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<Fired>);

/// A new trigger and its listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(Fired::default());
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_if_modified(|f| {
            let was = f.fired;
            f.fired = true;
            !was
        });
    }

    /// Fires, leaving in-flight work at most `grace` to finish.
    pub fn trigger_within(&self, grace: Duration) {
        self.0.send_replace(Fired {
            fired: true,
            grace_cap: Some(grace),
        });
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// A listener that never fires (one-shot library use, tests).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(Fired::default());
        // Keep the sender alive for the life of the program.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub fn is_triggered(&self) -> bool {
        self.0.borrow().fired
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone: treat it as shutdown.
        let _ = rx.wait_for(|f| f.fired).await;
    }

    /// Sleeps for `duration`; returns false if shutdown came first.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.wait() => false,
        }
    }

    /// Resolves `grace` after shutdown was requested: how long in-flight work
    /// may still finish.
    pub async fn deadline(&self, grace: Duration) {
        self.wait().await;
        let cap = self.0.borrow().grace_cap;
        tokio::time::sleep(cap.map_or(grace, |c| c.min(grace))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_with_a_deadline_caps_the_grace_of_work_in_flight() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_triggered());
        trigger.trigger_within(Duration::ZERO);
        assert!(shutdown.is_triggered());
        // An hour of grace asked, none left: over at once (the bound is
        // only there so that a broken cap fails instead of hanging).
        let capped = tokio::time::timeout(
            Duration::from_secs(60),
            shutdown.deadline(Duration::from_secs(3600)),
        )
        .await;
        assert!(capped.is_ok(), "the cap applies");
        // A plain trigger after it keeps the cap.
        trigger.trigger();
        assert!(
            tokio::time::timeout(
                Duration::from_secs(60),
                shutdown.deadline(Duration::from_secs(3600))
            )
            .await
            .is_ok()
        );
    }
}
