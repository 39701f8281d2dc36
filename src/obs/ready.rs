//! What `/readyz` answers: ready once the output's health check passed,
//! group discovery ran, and every group has completed a poll; not ready
//! again while the output is failing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

/// The readiness facts, process-wide like the metrics (see [`super::metrics`]).
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set when the output's startup health check passed; cleared while
    /// deliveries fail for want of an answer (transport error or 5xx).
    output_ok: AtomicBool,
    /// Why the output is not ok, for the `/readyz` body.
    output_reason: Mutex<String>,
    /// Deliveries under way: each ends by marking the output up or down.
    deliveries: AtomicUsize,
    /// Set once the configured groups were resolved (prefixes discovered).
    discovered: AtomicBool,
    /// What the last discovery could not resolve (a prefix whose listing
    /// failed, an account that is not usable): its groups are not polled.
    discovery_failures: Mutex<Vec<String>>,
    /// Every group being polled (by [`group_label`]), and whether it
    /// completed a poll without error.
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

    /// Whether the output is taken to be down with no delivery under way
    /// that would find out otherwise: then only a health check can.
    pub fn output_down_and_idle(&self) -> bool {
        !self.output_ok.load(Ordering::Relaxed) && self.deliveries.load(Ordering::Relaxed) == 0
    }

    /// A delivery is under way until the guard drops.
    pub fn delivering(&self) -> Delivering<'_> {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        Delivering(self)
    }

    /// The output failed to answer; `why` goes into the `/readyz` body.
    pub fn output_down(&self, why: &str) {
        if let Ok(mut reason) = self.output_reason.lock() {
            *reason = why.to_string();
        }
        self.output_ok.store(false, Ordering::Relaxed);
    }

    /// The configured groups have been resolved, but for `failures`
    /// (each says what and why); not ready while there are any.
    pub fn discovered(&self, failures: Vec<String>) {
        if let Ok(mut f) = self.discovery_failures.lock() {
            *f = failures;
        }
        self.discovered.store(true, Ordering::Relaxed);
    }

    /// A poller for `group` of `account` started.
    pub fn group_started(&self, account: &str, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.entry(group_label(account, group)).or_insert(false);
        }
    }

    /// The poller of `group` stopped (no longer selected, or restarting).
    pub fn group_stopped(&self, account: &str, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(&group_label(account, group));
        }
    }

    /// `group` completed a poll without error.
    pub fn group_polled(&self, account: &str, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(group_label(account, group), true);
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
        if let Ok(failures) = self.discovery_failures.lock()
            && !failures.is_empty()
        {
            why.push(format!("log groups not resolved: {}", failures.join("; ")));
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

/// A delivery under way ([`Readiness::delivering`]).
pub struct Delivering<'a>(&'a Readiness);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.0.deliveries.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A group as readiness and messages name it: `account/group` (as `cwtap
/// status` writes it) when it is read through a named account, else the
/// group. The same group of two accounts is two groups.
pub fn group_label(account: &str, group: &str) -> String {
    if account == crate::config::DEFAULT_ACCOUNT {
        group.to_string()
    } else {
        format!("{account}/{group}")
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
        r.discovered(Vec::new());
        r.group_started("default", "/a");
        r.group_started("default", "/b");
        r.group_polled("default", "/a");
        let why = r.check().unwrap_err();
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("/b") && !why[0].contains("/a"), "{why:?}");
        r.group_polled("default", "/b");
        assert!(r.check().is_ok());
    }

    #[test]
    fn a_failed_discovery_and_one_accounts_group_keep_it_unready() {
        let r = Readiness::default();
        r.output_up();
        r.discovered(vec![
            "log_groups[0]: prefix \"/x/\": connection refused".into(),
        ]);
        let why = r.check().unwrap_err();
        assert!(
            why[0].contains("prefix") && why[0].contains("connection refused"),
            "{why:?}"
        );
        r.discovered(Vec::new());
        assert!(r.check().is_ok());
        // The same group through two accounts: one polled is not both.
        r.group_started("a", "/g");
        r.group_started("b", "/g");
        r.group_polled("a", "/g");
        let why = r.check().unwrap_err();
        assert!(
            why[0].contains("b//g") && !why[0].contains("a//g"),
            "{why:?}"
        );
    }

    #[test]
    fn a_failing_output_makes_a_ready_agent_unready_and_says_why() {
        let r = Readiness::default();
        r.output_up();
        r.discovered(Vec::new());
        assert!(r.check().is_ok());
        r.output_down("VectaDB unreachable: connection refused");
        let why = r.check().unwrap_err();
        assert!(why[0].contains("connection refused"), "{why:?}");
        r.output_up();
        assert!(r.check().is_ok());
    }
}
