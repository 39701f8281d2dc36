//! What `/readyz` answers: ready once the output's health check passed,
//! group discovery ran, and every group has completed a poll; not ready
//! again while the output is failing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

/// The readiness facts, process-wide like the metrics (see [`super::metrics`]).
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set when the output's startup health check passed; cleared while
    /// deliveries fail for want of an answer (transport error or 5xx).
    output_ok: AtomicBool,
    /// Why the output is not ok, for the `/readyz` body.
    output_reason: Mutex<String>,
    /// Set once the configured groups were resolved (prefixes discovered).
    discovered: AtomicBool,
    /// Every group being polled, and whether it completed a poll without error.
    groups: Mutex<BTreeMap<String, bool>>,
    /// Set while a checkpoint cannot be written, with the error.
    state_error: Mutex<Option<String>>,
}

static READINESS: LazyLock<Readiness> = LazyLock::new(|| Readiness {
    output_reason: Mutex::new("the output's health check has not passed yet".into()),
    ..Readiness::default()
});

/// The process-wide readiness.
pub fn readiness() -> &'static Readiness {
    &READINESS
}

impl Readiness {
    /// The output answered (health check or a delivery).
    pub fn output_up(&self) {
        self.output_ok.store(true, Ordering::Relaxed);
    }

    /// The output failed to answer; `why` goes into the `/readyz` body.
    pub fn output_down(&self, why: &str) {
        if let Ok(mut reason) = self.output_reason.lock() {
            *reason = why.to_string();
        }
        self.output_ok.store(false, Ordering::Relaxed);
    }

    /// The configured groups have been resolved once.
    pub fn discovered(&self) {
        self.discovered.store(true, Ordering::Relaxed);
    }

    /// A poller for `group` started.
    pub fn group_started(&self, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.entry(group.to_string()).or_insert(false);
        }
    }

    /// The poller of `group` stopped (no longer selected, or restarting).
    pub fn group_stopped(&self, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(group);
        }
    }

    /// `group` completed a poll without error.
    pub fn group_polled(&self, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(group.to_string(), true);
        }
    }

    /// A checkpoint could not be written (`Some`), or was written (`None`).
    pub fn state_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.state_error.lock() {
            *e = error;
        }
    }

    /// `Ok` when ready, else every reason why not.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if !self.output_ok.load(Ordering::Relaxed) {
            let reason = self
                .output_reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            why.push(format!("output not ready: {reason}"));
        }
        if let Ok(Some(e)) = self.state_error.lock().as_deref() {
            why.push(format!("state file not writable, pulling stopped: {e}"));
        }
        if !self.discovered.load(Ordering::Relaxed) {
            why.push("log groups not resolved yet".into());
        }
        if let Ok(groups) = self.groups.lock() {
            let waiting: Vec<&str> = groups
                .iter()
                .filter(|(_, polled)| !**polled)
                .map(|(name, _)| name.as_str())
                .collect();
            if !waiting.is_empty() {
                why.push(format!(
                    "no completed poll yet for {} group(s): {}",
                    waiting.len(),
                    waiting.join(", ")
                ));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_output_discovery_and_every_group_polled() {
        let r = Readiness::default();
        assert!(r.check().is_err());
        r.output_up();
        r.discovered();
        r.group_started("/a");
        r.group_started("/b");
        r.group_polled("/a");
        let why = r.check().unwrap_err();
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("/b") && !why[0].contains("/a"), "{why:?}");
        r.group_polled("/b");
        assert!(r.check().is_ok());
    }

    #[test]
    fn a_failing_output_makes_a_ready_agent_unready_and_says_why() {
        let r = Readiness::default();
        r.output_up();
        r.discovered();
        assert!(r.check().is_ok());
        r.output_down("VectaDB unreachable: connection refused");
        let why = r.check().unwrap_err();
        assert!(why[0].contains("connection refused"), "{why:?}");
        r.output_up();
        assert!(r.check().is_ok());
    }
}
