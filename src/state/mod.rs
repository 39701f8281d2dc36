//! The SQLite state file: per log group the covered time range (the cursor),
//! counters and the last error, and the ids of recently delivered events.
//!
//! A checkpoint moves the cursor and records the delivered ids in one
//! transaction, and is only written after the output acknowledged those events.
//! The file runs in WAL mode; its schema is versioned with `PRAGMA
//! user_version`, and a file from a newer cwtap is refused. Every call runs on
//! tokio's blocking pool, never on the async executor.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::time::EpochMs;
use crate::trace::{self, Assignment, TraceInput, TraceSummary};

/// Schema migrations; entry `i` brings a file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: groups and delivered ids.
    "CREATE TABLE groups (
        log_group          TEXT PRIMARY KEY,
        covered_from_ms    INTEGER NOT NULL,
        cursor_ms          INTEGER NOT NULL,
        events_delivered   INTEGER NOT NULL DEFAULT 0,
        events_rejected    INTEGER NOT NULL DEFAULT 0,
        late_events        INTEGER NOT NULL DEFAULT 0,
        observed_delay_ms  INTEGER NOT NULL DEFAULT 0,
        last_poll_ms       INTEGER,
        last_error         TEXT,
        last_error_ms      INTEGER,
        updated_ms         INTEGER NOT NULL
    );
    CREATE TABLE delivered (
        log_group     TEXT NOT NULL,
        event_id      TEXT NOT NULL,
        timestamp_ms  INTEGER NOT NULL,
        PRIMARY KEY (log_group, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX delivered_by_time ON delivered (log_group, timestamp_ms);",
    // 2: trace grouping.
    crate::trace::SCHEMA,
    // 3: the time between a group's last two polls.
    "ALTER TABLE groups ADD COLUMN poll_interval_ms INTEGER;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "state file {path} has schema version {found}, newer than this cwtap understands ({SCHEMA_VERSION}); use a newer cwtap or another agent.state_path"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("state file {path}: the database worker stopped unexpectedly")]
    Worker { path: PathBuf },
}

/// The range of event timestamps of one group that has been delivered:
/// `[covered_from_ms, cursor_ms)`, late arrivals aside (those are caught by
/// re-reading behind `cursor_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub covered_from_ms: EpochMs,
    pub cursor_ms: EpochMs,
}

/// One group's row, for `cwtap status` and for resuming.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub log_group: String,
    pub coverage: Coverage,
    pub events_delivered: u64,
    pub events_rejected: u64,
    pub late_events: u64,
    pub observed_delay_ms: i64,
    pub last_poll_ms: Option<EpochMs>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<EpochMs>,
    /// Time between the last two polls of the running agent.
    pub poll_interval_ms: Option<i64>,
}

/// What one acknowledged delivery changes, written in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Checkpoint {
    pub log_group: String,
    /// Ids (with timestamps) of the events the output acknowledged or
    /// rejected for good; they will not be sent again.
    pub ids: Vec<(String, EpochMs)>,
    pub delivered: u64,
    pub rejected: u64,
    /// Events found behind the cursor that had not been delivered: late arrivals.
    pub late: u64,
    /// The new covered range, when a scan window was completed.
    pub coverage: Option<Coverage>,
    /// Delivered ids older than this are dropped: no scan re-reads them.
    pub prune_before_ms: Option<EpochMs>,
    pub observed_delay_ms: Option<i64>,
    /// The same events' grouping facts, applied to the trace state in the
    /// same transaction.
    pub traces: Vec<TraceInput>,
}

/// A handle on the state file; cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// One call on the blocking pool at a time: the connection serves one
    /// anyway, and callers queued here wait without holding a pool thread
    /// (hundreds of group pollers would otherwise park as many threads on
    /// the connection's lock, each with its own allocator arena).
    gate: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish()
    }
}

impl StateStore {
    /// Opens (creating with mode 0600 if needed) and migrates the state file.
    /// Blocking: call before the runtime starts or through `spawn_blocking`.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        let sql = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Io {
                path: path.to_path_buf(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        create_private(path).map_err(|e| StateError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        // Must happen outside any transaction: inside one SQLite ignores it.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(sql)?;
            tx.execute_batch(migration).map_err(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(StateStore {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
            gate: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// Opens an existing state file without creating one (for `status`).
    pub fn open_existing(path: &Path) -> Result<Option<StateStore>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        StateStore::open(path).map(Some)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| StateError::Worker { path: path.clone() })?;
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| StateError::Worker { path: path.clone() })?;
        result.map_err(|source| StateError::Sqlite { path, source })
    }

    /// Blocking variant of [`StateStore::with`], for synchronous commands.
    fn with_blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard).map_err(|source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    pub async fn group(&self, log_group: &str) -> Result<Option<GroupState>, StateError> {
        let name = log_group.to_string();
        self.with(move |c| read_group(c, &name)).await
    }

    /// Every group's row, ordered by name.
    pub fn all_groups_blocking(&self) -> Result<Vec<GroupState>, StateError> {
        self.with_blocking(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {GROUP_COLUMNS} FROM groups ORDER BY log_group"
            ))?;
            let rows = stmt.query_map([], row_to_group)?;
            rows.collect()
        })
    }

    /// Sets a group's covered range, creating its row if needed.
    pub async fn set_coverage(
        &self,
        log_group: &str,
        coverage: Coverage,
    ) -> Result<(), StateError> {
        let name = log_group.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO groups (log_group, covered_from_ms, cursor_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (log_group) DO UPDATE SET
                   covered_from_ms = excluded.covered_from_ms,
                   cursor_ms = excluded.cursor_ms,
                   updated_ms = excluded.updated_ms",
                params![
                    name,
                    coverage.covered_from_ms,
                    coverage.cursor_ms,
                    crate::time::now_ms()
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Ids delivered for `log_group` with a timestamp at or after `since_ms`.
    pub async fn delivered_ids(
        &self,
        log_group: &str,
        since_ms: EpochMs,
    ) -> Result<HashSet<String>, StateError> {
        let name = log_group.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT event_id FROM delivered WHERE log_group = ?1 AND timestamp_ms >= ?2",
            )?;
            let rows = stmt.query_map(params![name, since_ms], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await
    }

    /// Writes one checkpoint atomically.
    pub async fn commit(&self, checkpoint: Arc<Checkpoint>) -> Result<(), StateError> {
        self.with(move |c| commit_tx(c, &checkpoint)).await
    }

    /// Where `events` would land in the trace state as it is committed now,
    /// without changing it (the transaction is rolled back).
    pub async fn resolve_traces(
        &self,
        events: Vec<TraceInput>,
    ) -> Result<Vec<Assignment>, StateError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let out = trace::apply(&tx, &events, crate::time::now_ms())?;
            tx.rollback()?;
            Ok(out)
        })
        .await
    }

    /// Closes idle traces: by wall clock (`run`) or by event time (`backfill`).
    pub async fn close_idle_traces(
        &self,
        before_ms: EpochMs,
        by_event_time: bool,
    ) -> Result<usize, StateError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let n = trace::close_idle(&tx, before_ms, by_event_time)?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// Closed traces whose summary is not delivered yet.
    pub async fn pending_summaries(&self, limit: usize) -> Result<Vec<TraceSummary>, StateError> {
        self.with(move |c| trace::pending_summaries(c, limit)).await
    }

    /// Records summaries as delivered: (trace key, revision).
    pub async fn mark_summaries_sent(&self, sent: Vec<(String, i64)>) -> Result<(), StateError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            trace::mark_sent(&tx, &sent)?;
            tx.commit()
        })
        .await
    }

    /// Records the outcome of a poll: `None` clears the last error;
    /// `interval` is the time since the previous poll, when there was one.
    pub async fn record_poll(
        &self,
        log_group: &str,
        error: Option<String>,
        interval: Option<std::time::Duration>,
    ) -> Result<(), StateError> {
        let name = log_group.to_string();
        let interval_ms = interval.map(|i| i.as_millis() as i64);
        self.with(move |c| {
            let now = crate::time::now_ms();
            match error {
                None => c.execute(
                    "UPDATE groups SET last_poll_ms = ?2, last_error = NULL, last_error_ms = NULL,
                         poll_interval_ms = COALESCE(?3, poll_interval_ms) WHERE log_group = ?1",
                    params![name, now, interval_ms],
                ),
                Some(e) => c.execute(
                    "UPDATE groups SET last_poll_ms = ?2, last_error = ?3, last_error_ms = ?2,
                         poll_interval_ms = COALESCE(?4, poll_interval_ms) WHERE log_group = ?1",
                    params![name, now, e, interval_ms],
                ),
            }
            .map(|_| ())
        })
        .await
    }
}

const GROUP_COLUMNS: &str = "log_group, covered_from_ms, cursor_ms, events_delivered, events_rejected, \
     late_events, observed_delay_ms, last_poll_ms, last_error, last_error_ms, poll_interval_ms";

fn row_to_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupState> {
    Ok(GroupState {
        log_group: r.get(0)?,
        coverage: Coverage {
            covered_from_ms: r.get(1)?,
            cursor_ms: r.get(2)?,
        },
        events_delivered: r.get::<_, i64>(3)? as u64,
        events_rejected: r.get::<_, i64>(4)? as u64,
        late_events: r.get::<_, i64>(5)? as u64,
        observed_delay_ms: r.get(6)?,
        last_poll_ms: r.get(7)?,
        last_error: r.get(8)?,
        last_error_ms: r.get(9)?,
        poll_interval_ms: r.get(10)?,
    })
}

fn read_group(c: &Connection, name: &str) -> rusqlite::Result<Option<GroupState>> {
    c.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE log_group = ?1"),
        [name],
        row_to_group,
    )
    .optional()
}

fn commit_tx(c: &mut Connection, cp: &Checkpoint) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO delivered (log_group, event_id, timestamp_ms) VALUES (?1, ?2, ?3)",
        )?;
        for (id, ts) in &cp.ids {
            insert.execute(params![cp.log_group, id, ts])?;
        }
    }
    tx.execute(
        "UPDATE groups SET events_delivered = events_delivered + ?2,
                           events_rejected = events_rejected + ?3,
                           late_events = late_events + ?4,
                           updated_ms = ?5
         WHERE log_group = ?1",
        params![
            cp.log_group,
            cp.delivered as i64,
            cp.rejected as i64,
            cp.late as i64,
            crate::time::now_ms()
        ],
    )?;
    if let Some(cov) = cp.coverage {
        tx.execute(
            "UPDATE groups SET covered_from_ms = ?2, cursor_ms = ?3 WHERE log_group = ?1",
            params![cp.log_group, cov.covered_from_ms, cov.cursor_ms],
        )?;
    }
    if let Some(delay) = cp.observed_delay_ms {
        tx.execute(
            "UPDATE groups SET observed_delay_ms = ?2 WHERE log_group = ?1",
            params![cp.log_group, delay],
        )?;
    }
    if !cp.traces.is_empty() {
        trace::apply(&tx, &cp.traces, crate::time::now_ms())?;
    }
    if let Some(before) = cp.prune_before_ms {
        // Only ids inside the covered range can go: ids below it belong to a
        // backfill window still in progress.
        tx.execute(
            "DELETE FROM delivered WHERE log_group = ?1 AND timestamp_ms < ?2
               AND timestamp_ms >= (SELECT covered_from_ms FROM groups WHERE log_group = ?1)",
            params![cp.log_group, before],
        )?;
    }
    tx.commit()
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoint_moves_cursor_and_ids_together_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = StateStore::open(&path).unwrap();
        store
            .set_coverage(
                "/g",
                Coverage {
                    covered_from_ms: 1000,
                    cursor_ms: 1000,
                },
            )
            .await
            .unwrap();
        store
            .commit(Arc::new(Checkpoint {
                log_group: "/g".into(),
                ids: vec![("a".into(), 1500), ("b".into(), 1900)],
                delivered: 2,
                coverage: Some(Coverage {
                    covered_from_ms: 1000,
                    cursor_ms: 2000,
                }),
                ..Default::default()
            }))
            .await
            .unwrap();
        drop(store);
        let store = StateStore::open(&path).unwrap();
        let g = store.group("/g").await.unwrap().unwrap();
        assert_eq!(g.coverage.cursor_ms, 2000);
        assert_eq!(g.events_delivered, 2);
        let ids = store.delivered_ids("/g", 1600).await.unwrap();
        assert_eq!(ids, HashSet::from(["b".to_string()]));
        let mode: String = store
            .with_blocking(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn pruning_keeps_ids_below_the_covered_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.db")).unwrap();
        store
            .set_coverage(
                "/g",
                Coverage {
                    covered_from_ms: 1000,
                    cursor_ms: 5000,
                },
            )
            .await
            .unwrap();
        store
            .commit(Arc::new(Checkpoint {
                log_group: "/g".into(),
                ids: vec![
                    ("backfilling".into(), 500),
                    ("old".into(), 1500),
                    ("recent".into(), 4500),
                ],
                prune_before_ms: Some(4000),
                ..Default::default()
            }))
            .await
            .unwrap();
        let ids = store.delivered_ids("/g", 0).await.unwrap();
        assert_eq!(
            ids,
            HashSet::from(["backfilling".to_string(), "recent".to_string()])
        );
    }

    #[test]
    fn newer_schema_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = StateStore::open(&path).unwrap_err();
        assert!(matches!(err, StateError::NewerSchema { .. }));
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn state_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        StateStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
