//! The SQLite state file, and every SQL statement cwtap runs: per log group
//! the covered time range (the cursor), counters and the last error; the ids
//! of recently delivered events (one row per checkpointed batch, in
//! `delivered_batches`); the trace working set's durable copy (`trace_state`
//! plus the [`journal`] of recent changes).
//!
//! A checkpoint moves a source's position, records the delivered ids and
//! writes what changed in the trace working set, in one transaction, and is
//! only written after the output acknowledged those events. The file runs in
//! WAL mode; its schema is versioned with `PRAGMA user_version` (the
//! migrations below are literal SQL, applied in order), and a file from a
//! newer cwtap is refused. Every call runs on tokio's blocking pool, one at a
//! time, never on the async executor.

mod journal;
mod migrations;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::time::EpochMs;
use crate::trace::{Changes, Name, StreamKey, Trace, Traces, decode_stored};
use migrations::MIGRATIONS;

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

/// A group received through Firehose, as the state file knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedGroup {
    pub log_group: String,
    /// Delivered event ids kept for de-duplication (within the window).
    pub remembered: u64,
    pub last_received_ms: EpochMs,
}

/// One group's row, for `cwtap status` and for resuming.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    /// The account it is read from (`default` without `accounts:`).
    pub account: String,
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
    /// Read calls (FilterLogEvents, GetLogEvents, DescribeLogStreams) made
    /// for this group, and the events they returned (re-reads included).
    pub api_calls: u64,
    pub events_read: u64,
}

/// Where a pull source is in one group, written with the batch that got it
/// there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupPosition {
    /// The new covered range, when a scan window was completed.
    pub coverage: Option<Coverage>,
    /// Delivered ids older than this are dropped: no scan re-reads them.
    pub prune_before_ms: Option<EpochMs>,
    pub observed_delay_ms: Option<i64>,
    /// Calls made and events read since the last checkpoint.
    pub api_calls: u64,
    pub events_read: u64,
}

/// What one acknowledged delivery changes, written in one transaction (with
/// the trace working set's changes).
#[derive(Debug, Clone)]
pub enum Checkpoint {
    /// A batch pulled from one log group.
    Group {
        account: String,
        log_group: String,
        /// Ids (with timestamps) of the events the output acknowledged or
        /// rejected for good; they will not be sent again.
        ids: Vec<(String, EpochMs)>,
        delivered: u64,
        rejected: u64,
        /// Events found behind the cursor that had not been delivered.
        late: u64,
        position: GroupPosition,
    },
    /// Events received by push: `(log group, event id)`, kept until
    /// `received_ms + retention`; older ones are dropped now.
    Pushed {
        ids: Vec<(String, String)>,
        received_ms: EpochMs,
        prune_before_ms: EpochMs,
    },
    /// Nothing but the trace working set (summaries delivered, traces closed).
    Traces,
}

/// The trace working set as the state file holds it, for a start.
#[derive(Debug, Default)]
pub struct StoredTraces {
    /// Traces to hold in memory.
    pub traces: Vec<(String, Trace)>,
    /// Aliases of the traces left on disk, with when their trace was last
    /// seen (see [`Traces::remember_cold`]).
    pub cold: Vec<(Name, EpochMs)>,
    pub brackets: Vec<(StreamKey, String)>,
}

/// A handle on the state file; cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// One call on the blocking pool at a time: the connection serves one
    /// anyway, and callers queued here wait without holding a pool thread
    /// (hundreds of group pollers would otherwise park as many threads on
    /// the connection's lock, each with its own allocator arena). It also
    /// orders checkpoints: the trace changes a checkpoint takes are written
    /// before those the next one takes.
    gate: Arc<tokio::sync::Semaphore>,
    /// Checkpoints waiting for the gate: whoever gets it writes all of them
    /// in one transaction (group commit), and tells each how it went.
    waiting: Arc<Mutex<Vec<Waiting>>>,
    /// Bytes in the trace journal, not yet folded into `trace_state`.
    journal_bytes: Arc<AtomicUsize>,
    /// Trace changes a failed transaction did not write, for the next
    /// checkpoint to take back (also when the caller of the failed one
    /// has gone).
    unwritten: Arc<Mutex<Vec<Changes>>>,
}

/// A checkpoint waiting to be written, and where its outcome goes.
type Waiting = (
    Arc<Checkpoint>,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The page size of a new state file (see [`set_up`]).
const PAGE_SIZE: i64 = 8192;

/// WAL bytes after which a commit copies the WAL back into the file.
const WAL_CHECKPOINT_BYTES: i64 = 16 << 20;

/// Puts the state file in WAL mode and migrates it to [`SCHEMA_VERSION`].
fn set_up(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let sql = |source| StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    // A new file gets 8 KiB pages: each page the WAL takes or gives back
    // is a system call, and 8 KiB pages halve them against 4 KiB for about
    // 10% more bytes written (BENCHMARKS.md). A file made before keeps its
    // page size (SQLite changes it only in an empty file).
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(sql)?;
    // Must happen outside any transaction: inside one SQLite ignores it.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    // Every commit fsynced, unless told otherwise ([`StateStore::set_fsync`]).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    // Checkpoint the WAL into the file every 16 MB instead of every 1000
    // pages: a page rewritten by many transactions is copied back once.
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .map_err(sql)?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        WAL_CHECKPOINT_BYTES / page_size.max(512),
    )
    .map_err(sql)?;
    let version = |c: &Connection| -> Result<i64, StateError> {
        let found: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if found > SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                path: path.to_path_buf(),
                found,
            });
        }
        Ok(found)
    };
    if version(conn)? < SCHEMA_VERSION {
        // Another process (a `cwtap status` while `run` starts) may be
        // migrating the same file: the write lock first, then the
        // version again, so that only one of them migrates.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let from = version(&tx)?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            tx.execute_batch(migration).map_err(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        // Another process opening the same new file at the same moment (a
        // `cwtap status` while `run` starts) can make SQLite answer "busy"
        // at once instead of waiting (both switch it to WAL, or migrate
        // it): then the set-up is tried again, within the busy timeout.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match set_up(&mut conn, path) {
                Err(StateError::Sqlite {
                    source: rusqlite::Error::SqliteFailure(e, _),
                    ..
                }) if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                done => break done?,
            }
        }
        let journal_bytes = journal::size(&conn).map_err(sql)?;
        Ok(StateStore {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
            gate: Arc::new(tokio::sync::Semaphore::new(1)),
            waiting: Arc::new(Mutex::new(Vec::new())),
            journal_bytes: Arc::new(AtomicUsize::new(journal_bytes)),
            unwritten: Arc::new(Mutex::new(Vec::new())),
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

    /// Whether every commit is fsynced (`agent.state_fsync`, the default).
    /// Without it (`NORMAL` in WAL mode) the file stays consistent and a
    /// killed process loses no commit, but a power loss or OS crash can
    /// take back the commits the OS had not yet written out: their events
    /// are then read and delivered again. Blocking.
    pub fn set_fsync(&self, on: bool) -> Result<(), StateError> {
        let mode = if on { "FULL" } else { "NORMAL" };
        lock(&self.conn)
            .pragma_update(None, "synchronous", mode)
            .map_err(|e| self.sqlite(e))
    }

    fn sqlite(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self.gate.acquire().await.map_err(|_| StateError::Worker {
            path: self.path.clone(),
        })?;
        self.unqueued(f).await
    }

    /// [`Self::with`] for a caller that already holds the gate.
    async fn unqueued<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let result = tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(|_| StateError::Worker {
                path: self.path.clone(),
            })?;
        result.map_err(|source| self.sqlite(source))
    }

    /// Blocking variant of [`StateStore::with`], for synchronous commands.
    fn with_blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        f(&mut lock(&self.conn)).map_err(|source| self.sqlite(source))
    }

    pub async fn group(
        &self,
        account: &str,
        log_group: &str,
    ) -> Result<Option<GroupState>, StateError> {
        let (account, name) = (account.to_string(), log_group.to_string());
        self.with(move |c| read_group(c, &account, &name)).await
    }

    /// Every group's row, ordered by name.
    pub fn all_groups_blocking(&self) -> Result<Vec<GroupState>, StateError> {
        self.with_blocking(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {GROUP_COLUMNS} FROM groups ORDER BY account, log_group"
            ))?;
            let rows = stmt.query_map([], row_to_group)?;
            rows.collect()
        })
    }

    /// Per group received through Firehose (`cwtap serve`): how many
    /// delivered event ids are remembered (those within the de-duplication
    /// window) and when the last arrived. Ordered by group.
    pub fn pushed_groups_blocking(&self) -> Result<Vec<PushedGroup>, StateError> {
        self.with_blocking(|c| {
            let mut stmt = c.prepare(
                "SELECT log_group, COUNT(*), MAX(received_ms) FROM pushed
                 GROUP BY log_group ORDER BY log_group",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(PushedGroup {
                    log_group: r.get(0)?,
                    remembered: r.get::<_, i64>(1)?.max(0) as u64,
                    last_received_ms: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Sets a group's covered range, creating its row if needed.
    pub async fn set_coverage(
        &self,
        account: &str,
        log_group: &str,
        coverage: Coverage,
    ) -> Result<(), StateError> {
        let (account, name) = (account.to_string(), log_group.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO groups (account, log_group, covered_from_ms, cursor_ms, updated_ms)
                 VALUES (?5, ?1, ?2, ?3, ?4)
                 ON CONFLICT (account, log_group) DO UPDATE SET
                   covered_from_ms = excluded.covered_from_ms,
                   cursor_ms = excluded.cursor_ms,
                   updated_ms = excluded.updated_ms",
                params![
                    name,
                    coverage.covered_from_ms,
                    coverage.cursor_ms,
                    crate::time::now_ms(),
                    account
                ],
            )
            .map(|_| ())
        })
        .await
    }

    /// Ids delivered for `log_group` with a timestamp at or after `since_ms`.
    pub async fn delivered_ids(
        &self,
        account: &str,
        log_group: &str,
        since_ms: EpochMs,
    ) -> Result<HashSet<String>, StateError> {
        let (account, name) = (account.to_string(), log_group.to_string());
        self.with(move |c| {
            // Whole batches: a few ids from before `since_ms` do no harm.
            let mut stmt = c.prepare_cached(
                "SELECT ids FROM delivered_batches
                 WHERE account = ?3 AND log_group = ?1 AND max_ts_ms >= ?2",
            )?;
            let mut rows = stmt.query(params![name, since_ms, account])?;
            let mut ids = HashSet::new();
            while let Some(r) = rows.next()? {
                let batch = r.get_ref(0)?.as_str()?;
                ids.extend(
                    batch
                        .split('\n')
                        .filter(|i| !i.is_empty())
                        .map(str::to_string),
                );
            }
            Ok(ids)
        })
        .await
    }

    /// Of the pushed events `ids` (log group, event id), the positions of
    /// those already delivered.
    pub async fn pushed_already(
        &self,
        ids: Arc<Vec<(String, String)>>,
    ) -> Result<HashSet<usize>, StateError> {
        self.with(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT 1 FROM pushed WHERE log_group = ?1 AND event_id = ?2")?;
            let mut seen = HashSet::new();
            for (i, (group, id)) in ids.iter().enumerate() {
                if stmt.exists(params![group, id])? {
                    seen.insert(i);
                }
            }
            Ok(seen)
        })
        .await
    }

    /// Writes one checkpoint atomically, with whatever changed in `traces`
    /// since the last checkpoint. Checkpoints that arrive while another is
    /// being written are written together in the next transaction (one
    /// fsync, and a trace several of them touched written once); each
    /// caller returns once its own is written. If the write fails, the
    /// trace changes are given back, so the next checkpoint writes them.
    pub async fn commit(
        &self,
        checkpoint: Arc<Checkpoint>,
        traces: Option<&Mutex<Traces>>,
    ) -> Result<(), StateError> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        lock(&self.waiting).push((checkpoint, done));
        // Owned, and held by the transaction itself: if this caller goes
        // away, the next transaction still waits for this one to end.
        let permit =
            Arc::clone(&self.gate)
                .acquire_owned()
                .await
                .map_err(|_| StateError::Worker {
                    path: self.path.clone(),
                })?;
        // The transaction before ours may have taken ours too (a writer
        // answers every checkpoint it took before it lets the gate go).
        if let Ok(result) = outcome.try_recv() {
            return result.map_err(|message| self.failed(message));
        }
        let batch: Vec<Waiting> = std::mem::take(&mut *lock(&self.waiting));
        // Taken while holding the gate: transactions write trace changes in
        // the order they took them, so the file converges on memory. Changes
        // an earlier transaction failed to write come back first (their
        // traces are then written whole: an update needs what it follows).
        let changes = match traces {
            Some(t) => {
                let mut t = lock(t);
                self.take_back_unwritten(&mut t);
                t.take_changes()
            }
            None => Changes::default(),
        };
        let conn = Arc::clone(&self.conn);
        let journal_bytes = Arc::clone(&self.journal_bytes);
        let unwritten = Arc::clone(&self.unwritten);
        // The outcome goes to every checkpoint of the transaction from the
        // worker itself, so that it arrives even if this caller is dropped.
        let worker = tokio::task::spawn_blocking(move || {
            let checkpoints: Vec<&Checkpoint> = batch.iter().map(|(c, _)| c.as_ref()).collect();
            let journal = journal_bytes.load(Ordering::Relaxed);
            let written = commit_tx(&mut lock(&conn), &checkpoints, &changes, journal)
                .map(|size| journal_bytes.store(size, Ordering::Relaxed));
            if written.is_err() && !changes.is_empty() {
                lock(&unwritten).push(changes);
            }
            let outcome = written.map_err(|e| e.to_string());
            for (_, done) in batch {
                let _ = done.send(outcome.clone());
            }
            drop(permit);
        })
        .await;
        if worker.is_ok()
            && let Some(t) = traces
        {
            // Now rather than at the next checkpoint: until then the traces
            // are not dirty, and eviction could let them go unwritten.
            self.take_back_unwritten(&mut lock(t));
        }
        match outcome.await {
            Ok(result) => result.map_err(|message| self.failed(message)),
            Err(_) => Err(StateError::Worker {
                path: self.path.clone(),
            }),
        }
    }

    /// Gives the trace changes of failed transactions back to `traces`.
    fn take_back_unwritten(&self, traces: &mut Traces) {
        let lost: Vec<Changes> = std::mem::take(&mut *lock(&self.unwritten));
        for changes in lost {
            traces.restore_changes(changes);
        }
    }

    fn failed(&self, message: String) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            message,
        }
    }

    /// The trace working set to start from: traces seen since
    /// `hot_since_ms` (wall clock) or still open or unsummarised, in full;
    /// the others by their aliases only. Blocking (called at start).
    pub fn load_traces_blocking(&self, hot_since_ms: EpochMs) -> Result<StoredTraces, StateError> {
        let journal_bytes = Arc::clone(&self.journal_bytes);
        self.with_blocking(|c| {
            fold_now(c, &journal_bytes)?;
            let mut out = StoredTraces::default();
            let mut stmt = c.prepare("SELECT trace_key, last_seen_ms, settled, data FROM trace_state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                let seen: EpochMs = r.get(1)?;
                let settled: bool = r.get(2)?;
                let trace = match decode_stored(r.get_ref(3)?.as_bytes()?) {
                    Ok(trace) => trace,
                    Err(error) => {
                        tracing::warn!(trace_key = %key, %error, "unreadable trace row in the state file; it starts afresh");
                        continue;
                    }
                };
                if settled && seen < hot_since_ms {
                    out.cold
                        .extend(trace.aliases.into_iter().map(|a| (a, seen)));
                } else {
                    out.traces.push((key, trace));
                }
            }
            out.brackets = read_brackets(c)?;
            Ok(out)
        })
    }

    /// The traces that own `aliases`, read back for an event that needs
    /// an evicted trace.
    pub async fn load_cold_traces(
        &self,
        aliases: Vec<String>,
    ) -> Result<Vec<(String, Trace)>, StateError> {
        let journal_bytes = Arc::clone(&self.journal_bytes);
        self.with(move |c| {
            fold_now(c, &journal_bytes)?;
            // Aliases live inside the rows; the key of the trace an alias
            // names is usually the alias itself, else a scan finds it.
            let mut found: Vec<(String, Trace)> = Vec::new();
            let mut by_key =
                c.prepare_cached("SELECT data FROM trace_state WHERE trace_key = ?1")?;
            let mut missing = Vec::new();
            for alias in &aliases {
                let names = |t: &Trace| t.aliases.iter().any(|a| **a == **alias);
                if found.iter().any(|(_, t)| names(t)) {
                    continue;
                }
                // A blob (protobuf) or text (JSON of an earlier version).
                let data: Option<Vec<u8>> = by_key
                    .query_row([alias], |r| Ok(r.get_ref(0)?.as_bytes()?.to_vec()))
                    .optional()?;
                match data.and_then(|d| decode_stored(&d).ok()) {
                    Some(t) if names(&t) => found.push((alias.clone(), t)),
                    _ => missing.push(alias.clone()),
                }
            }
            if !missing.is_empty() {
                // The alias as a protobuf row holds it (raw bytes), or as a
                // JSON row of an earlier version does (a JSON string).
                let mut scan = c.prepare_cached(
                    "SELECT trace_key, data FROM trace_state
                     WHERE instr(data, ?1) > 0 OR instr(data, ?2) > 0",
                )?;
                for alias in missing {
                    let json = serde_json::to_string(&alias).unwrap_or_default();
                    let mut rows = scan.query(params![alias.as_bytes(), json])?;
                    while let Some(r) = rows.next()? {
                        let key: String = r.get(0)?;
                        if let Ok(t) = decode_stored(r.get_ref(1)?.as_bytes()?)
                            && t.aliases.iter().any(|a| **a == *alias)
                            && !found.iter().any(|(k, _)| *k == key)
                        {
                            found.push((key, t));
                        }
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// Deletes settled traces last seen before `before_ms` (wall clock).
    pub async fn prune_traces(&self, before_ms: EpochMs) -> Result<usize, StateError> {
        // Without folding first: a trace deleted here whose newer version
        // is still in the journal comes back with it at the next fold (a
        // settled trace this old has left memory, and one read back is
        // written whole, so its version there is whole), and one pruned
        // only there goes at the next prune.
        self.with(move |c| {
            c.execute(
                "DELETE FROM trace_state WHERE settled = 1 AND last_seen_ms < ?1",
                [before_ms],
            )
        })
        .await
    }

    /// Records the outcome of a poll: `None` clears the last error;
    /// `interval` is the time since the previous poll, when there was one.
    pub async fn record_poll(
        &self,
        account: &str,
        log_group: &str,
        error: Option<String>,
        interval: Option<std::time::Duration>,
    ) -> Result<(), StateError> {
        let (account, name) = (account.to_string(), log_group.to_string());
        let interval_ms = interval.map(|i| i.as_millis() as i64);
        self.with(move |c| {
            let now = crate::time::now_ms();
            match error {
                None => c.execute(
                    "UPDATE groups SET last_poll_ms = ?2, last_error = NULL, last_error_ms = NULL,
                         poll_interval_ms = COALESCE(?3, poll_interval_ms)
                     WHERE account = ?4 AND log_group = ?1",
                    params![name, now, interval_ms, account],
                ),
                Some(e) => c.execute(
                    "UPDATE groups SET last_poll_ms = ?2, last_error = ?3, last_error_ms = ?2,
                         poll_interval_ms = COALESCE(?4, poll_interval_ms)
                     WHERE account = ?5 AND log_group = ?1",
                    params![name, now, e, interval_ms, account],
                ),
            }
            .map(|_| ())
        })
        .await
    }
}

const GROUP_COLUMNS: &str = "account, log_group, covered_from_ms, cursor_ms, events_delivered, events_rejected, \
     late_events, observed_delay_ms, last_poll_ms, last_error, last_error_ms, poll_interval_ms, \
     api_calls, events_read";

fn row_to_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupState> {
    Ok(GroupState {
        account: r.get(0)?,
        log_group: r.get(1)?,
        coverage: Coverage {
            covered_from_ms: r.get(2)?,
            cursor_ms: r.get(3)?,
        },
        events_delivered: r.get::<_, i64>(4)? as u64,
        events_rejected: r.get::<_, i64>(5)? as u64,
        late_events: r.get::<_, i64>(6)? as u64,
        observed_delay_ms: r.get(7)?,
        last_poll_ms: r.get(8)?,
        last_error: r.get(9)?,
        last_error_ms: r.get(10)?,
        poll_interval_ms: r.get(11)?,
        api_calls: r.get::<_, i64>(12)? as u64,
        events_read: r.get::<_, i64>(13)? as u64,
    })
}

fn read_group(c: &Connection, account: &str, name: &str) -> rusqlite::Result<Option<GroupState>> {
    c.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE account = ?1 AND log_group = ?2"),
        [account, name],
        row_to_group,
    )
    .optional()
}

fn read_brackets(c: &Connection) -> rusqlite::Result<Vec<(StreamKey, String)>> {
    let mut stmt = c.prepare("SELECT log_group, log_stream, request_id FROM lambda_brackets")?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    rows.collect()
}

/// Folds the trace journal into `trace_state` (see [`journal`]) in a
/// transaction of its own, if it holds anything: before `trace_state` is read.
fn fold_now(c: &mut Connection, journal_bytes: &AtomicUsize) -> rusqlite::Result<()> {
    if journal_bytes.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let tx = c.transaction()?;
    journal::fold(&tx)?;
    tx.commit()?;
    journal_bytes.store(0, Ordering::Relaxed);
    Ok(())
}

/// Writes checkpoints and trace changes in one transaction; `journal` is
/// the trace journal's size before, and the size after is returned.
fn commit_tx(
    c: &mut Connection,
    checkpoints: &[&Checkpoint],
    changes: &Changes,
    mut journal: usize,
) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    for cp in checkpoints {
        write_checkpoint(&tx, cp)?;
    }
    write_brackets(&tx, changes)?;
    let rows = journal::encode(changes);
    for (part, row) in &rows {
        journal += journal::append(&tx, *part, row)?;
    }
    if !rows.is_empty() && journal >= journal::FOLD_BYTES {
        journal::fold(&tx)?;
        journal = 0;
    }
    tx.commit()?;
    Ok(journal)
}

fn write_checkpoint(tx: &rusqlite::Transaction<'_>, cp: &Checkpoint) -> rusqlite::Result<()> {
    match cp {
        Checkpoint::Group {
            account,
            log_group,
            ids,
            delivered,
            rejected,
            late,
            position,
        } => {
            if let (Some(min), Some(max)) = (
                ids.iter().map(|(_, ts)| *ts).min(),
                ids.iter().map(|(_, ts)| *ts).max(),
            ) {
                let mut joined = String::with_capacity(ids.iter().map(|(i, _)| i.len() + 1).sum());
                for (id, _) in ids {
                    joined.push_str(id);
                    joined.push('\n');
                }
                tx.prepare_cached(
                    "INSERT INTO delivered_batches (account, log_group, min_ts_ms, max_ts_ms, ids)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![account, log_group, min, max, joined])?;
            }
            tx.prepare_cached(
                "UPDATE groups SET events_delivered = events_delivered + ?2,
                                   events_rejected = events_rejected + ?3,
                                   late_events = late_events + ?4,
                                   api_calls = api_calls + ?5,
                                   events_read = events_read + ?6,
                                   updated_ms = ?7,
                                   covered_from_ms = COALESCE(?8, covered_from_ms),
                                   cursor_ms = COALESCE(?9, cursor_ms),
                                   observed_delay_ms = COALESCE(?10, observed_delay_ms)
                 WHERE account = ?11 AND log_group = ?1",
            )?
            .execute(params![
                log_group,
                *delivered as i64,
                *rejected as i64,
                *late as i64,
                position.api_calls as i64,
                position.events_read as i64,
                crate::time::now_ms(),
                position.coverage.map(|c| c.covered_from_ms),
                position.coverage.map(|c| c.cursor_ms),
                position.observed_delay_ms,
                account,
            ])?;
            if let Some(before) = position.prune_before_ms {
                // Only ids inside the covered range can go: ids below it
                // belong to a backfill window still in progress.
                tx.prepare_cached(
                    "DELETE FROM delivered_batches
                     WHERE account = ?3 AND log_group = ?1 AND max_ts_ms < ?2
                       AND min_ts_ms >= (SELECT covered_from_ms FROM groups
                                         WHERE account = ?3 AND log_group = ?1)",
                )?
                .execute(params![log_group, before, account])?;
            }
        }
        Checkpoint::Pushed {
            ids,
            received_ms,
            prune_before_ms,
        } => {
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO pushed (log_group, event_id, received_ms) VALUES (?1, ?2, ?3)",
                )?;
                for (group, id) in ids {
                    insert.execute(params![group, id, received_ms])?;
                }
            }
            tx.prepare_cached("DELETE FROM pushed WHERE received_ms < ?1")?
                .execute([prune_before_ms])?;
        }
        Checkpoint::Traces => {}
    }
    Ok(())
}

/// The Lambda brackets opened and closed: a small table, written directly.
fn write_brackets(tx: &rusqlite::Transaction<'_>, changes: &Changes) -> rusqlite::Result<()> {
    for ((group, stream), request) in &changes.brackets {
        match request {
            Some(r) => tx
                .prepare_cached(
                    "INSERT INTO lambda_brackets (log_group, log_stream, request_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (log_group, log_stream) DO UPDATE SET request_id = excluded.request_id",
                )?
                .execute(params![group, stream, r])?,
            None => tx
                .prepare_cached(
                    "DELETE FROM lambda_brackets WHERE log_group = ?1 AND log_stream = ?2",
                )?
                .execute(params![group, stream])?,
        };
    }
    Ok(())
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
mod tests;
