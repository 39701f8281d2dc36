use super::*;
use crate::trace::{SummaryPolicy, TraceInput};

fn group_checkpoint(ids: Vec<(&str, EpochMs)>, position: GroupPosition) -> Arc<Checkpoint> {
    Arc::new(Checkpoint::Group {
        account: "default".into(),
        log_group: "/g".into(),
        delivered: ids.len() as u64,
        ids: ids.into_iter().map(|(i, t)| (i.to_string(), t)).collect(),
        rejected: 0,
        late: 0,
        position,
    })
}

#[tokio::test]
async fn checkpoint_moves_cursor_and_ids_together_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = StateStore::open(&path).unwrap();
    store
        .set_coverage(
            "default",
            "/g",
            Coverage {
                covered_from_ms: 1000,
                cursor_ms: 1000,
            },
        )
        .await
        .unwrap();
    // Ids are kept per batch: a query by time returns whole batches, and
    // pruning drops a batch once all of it is behind the bound.
    store
        .commit(
            group_checkpoint(vec![("a", 1500)], GroupPosition::default()),
            None,
        )
        .await
        .unwrap();
    store
        .commit(
            group_checkpoint(
                vec![("b", 1900), ("c", 1950)],
                GroupPosition {
                    coverage: Some(Coverage {
                        covered_from_ms: 1000,
                        cursor_ms: 2000,
                    }),
                    api_calls: 3,
                    events_read: 7,
                    ..Default::default()
                },
            ),
            None,
        )
        .await
        .unwrap();
    drop(store);
    let store = StateStore::open(&path).unwrap();
    let g = store.group("default", "/g").await.unwrap().unwrap();
    assert_eq!(g.coverage.cursor_ms, 2000);
    assert_eq!(g.events_delivered, 3);
    assert_eq!((g.api_calls, g.events_read), (3, 7));
    let ids = store.delivered_ids("default", "/g", 1600).await.unwrap();
    assert_eq!(ids, HashSet::from(["b".to_string(), "c".to_string()]));
    let ids = store.delivered_ids("default", "/g", 1000).await.unwrap();
    assert_eq!(ids.len(), 3);
    let mode: String = store
        .with_blocking(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
        .unwrap();
    assert_eq!(mode, "wal");
    // A new file has 8 KiB pages, and its WAL is copied back every 16 MB.
    let pragma = |store: &StateStore, name: &'static str| -> i64 {
        store
            .with_blocking(|c| c.pragma_query_value(None, name, |r| r.get(0)))
            .unwrap()
    };
    assert_eq!(pragma(&store, "page_size"), 8192);
    assert_eq!(pragma(&store, "wal_autocheckpoint"), 2048);
    // Trace rows are kept by rowid (migration 10), the key in an index.
    let trace_state: String = store
        .with_blocking(|c| {
            c.query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'trace_state'",
                [],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert!(
        trace_state.contains("trace_key     TEXT NOT NULL UNIQUE")
            && !trace_state.contains("WITHOUT ROWID"),
        "{trace_state}"
    );
    // Commits are fsynced unless `agent.state_fsync: false`: FULL is 2,
    // NORMAL 1.
    let synchronous = |store: &StateStore| -> i64 {
        store
            .with_blocking(|c| c.pragma_query_value(None, "synchronous", |r| r.get(0)))
            .unwrap()
    };
    assert_eq!(synchronous(&store), 2);
    store.set_fsync(false).unwrap();
    assert_eq!(synchronous(&store), 1);
    store.set_fsync(true).unwrap();
    assert_eq!(synchronous(&store), 2);
}

#[tokio::test]
async fn pruning_keeps_ids_below_the_covered_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("s.db")).unwrap();
    store
        .set_coverage(
            "default",
            "/g",
            Coverage {
                covered_from_ms: 1000,
                cursor_ms: 5000,
            },
        )
        .await
        .unwrap();
    for (id, ts) in [("backfilling", 500), ("old", 1500), ("old-too", 3900)] {
        store
            .commit(
                group_checkpoint(vec![(id, ts)], GroupPosition::default()),
                None,
            )
            .await
            .unwrap();
    }
    store
        .commit(
            group_checkpoint(
                vec![("straddling", 3950), ("recent", 4500)],
                GroupPosition {
                    prune_before_ms: Some(4000),
                    ..Default::default()
                },
            ),
            None,
        )
        .await
        .unwrap();
    let ids = store.delivered_ids("default", "/g", 0).await.unwrap();
    assert_eq!(
        ids,
        HashSet::from([
            "backfilling".to_string(),
            "straddling".to_string(),
            "recent".to_string()
        ])
    );
}

#[tokio::test]
async fn pushed_ids_are_remembered_until_their_window_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("s.db")).unwrap();
    let pushed = |ids: &[(&str, &str)], at: EpochMs, prune: EpochMs| {
        Arc::new(Checkpoint::Pushed {
            ids: ids
                .iter()
                .map(|(g, i)| (g.to_string(), i.to_string()))
                .collect(),
            received_ms: at,
            prune_before_ms: prune,
        })
    };
    store
        .commit(pushed(&[("/a", "1"), ("/b", "1")], 1_000, 0), None)
        .await
        .unwrap();
    let asked = Arc::new(vec![
        ("/a".to_string(), "1".to_string()),
        ("/a".to_string(), "2".to_string()),
        ("/b".to_string(), "1".to_string()),
    ]);
    let seen = store.pushed_already(Arc::clone(&asked)).await.unwrap();
    assert_eq!(seen, HashSet::from([0, 2]));
    store
        .commit(pushed(&[("/a", "2")], 5_000, 2_000), None)
        .await
        .unwrap();
    let seen = store.pushed_already(asked).await.unwrap();
    assert_eq!(seen, HashSet::from([1]), "ids older than the window go");
}

#[tokio::test]
async fn trace_changes_are_written_with_the_checkpoint_and_loaded_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = StateStore::open(&path).unwrap();
    let traces = Mutex::new(Traces::new());
    let input = |ts, r: &'static str, kind: Option<&'static str>| TraceInput {
        log_group: "/aws/lambda/f",
        log_stream: "s",
        timestamp_ms: ts,
        request_id: Some(r),
        trace_id: Some("T"),
        event_type: kind,
        ..TraceInput::default()
    };
    {
        let mut t = lock(&traces);
        t.apply(&input(1, "R", Some("lambda_start")), 100);
        t.apply(&input(2, "R", None), 100);
    }
    store
        .commit(Arc::new(Checkpoint::Traces), Some(&traces))
        .await
        .unwrap();
    drop(store);
    let store = StateStore::open(&path).unwrap();
    let stored = store.load_traces_blocking(0).unwrap();
    assert_eq!(stored.traces.len(), 1);
    assert_eq!(stored.traces[0].0, "t:T");
    assert_eq!(stored.traces[0].1.event_count, 2);
    assert_eq!(
        stored.brackets,
        vec![(
            ("/aws/lambda/f".to_string(), "s".to_string()),
            "R".to_string()
        )]
    );
    // A restarted working set continues the same trace.
    let mut again = Traces::new();
    again.restore(stored.traces, stored.brackets);
    let bare = TraceInput {
        log_group: "/aws/lambda/f",
        log_stream: "s",
        timestamp_ms: 3,
        ..TraceInput::default()
    };
    assert_eq!(again.apply(&bare, 200).trace_key.as_deref(), Some("t:T"));
}

#[tokio::test]
async fn a_failed_transaction_gives_its_trace_changes_back_and_the_file_converges_on_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = StateStore::open(&path).unwrap();
    let traces = Mutex::new(Traces::new());
    let span = |ts, span: &'static str| TraceInput {
        log_group: "/g",
        log_stream: "s",
        timestamp_ms: ts,
        trace_id: Some("T"),
        span_id: Some(span),
        ..TraceInput::default()
    };
    let commit = || store.commit(Arc::new(Checkpoint::Traces), Some(&traces));
    lock(&traces).apply(&span(1, "a"), 100);
    commit().await.unwrap();
    // The next transaction fails in SQLite itself (a trigger aborts the
    // journal's insert): span "b" is not in the file.
    lock(&store.conn)
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON trace_journal
             BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
        )
        .unwrap();
    lock(&traces).apply(&span(2, "b"), 100);
    assert!(commit().await.is_err());
    lock(&store.conn)
        .execute_batch("DROP TRIGGER fail")
        .unwrap();
    // Had "c" been written as an update of the file's version, "b" would
    // be missing from it.
    lock(&traces).apply(&span(3, "c"), 100);
    commit().await.unwrap();
    let in_memory = lock(&traces).get("t:T").cloned().unwrap();
    assert_eq!(in_memory.spans.len(), 3);
    drop(store);
    let stored = StateStore::open(&path)
        .unwrap()
        .load_traces_blocking(0)
        .unwrap();
    assert_eq!(stored.traces.len(), 1);
    assert_eq!(stored.traces[0].1, in_memory);
}

#[tokio::test]
async fn settled_traces_load_cold_and_come_back_by_any_alias() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = StateStore::open(&path).unwrap();
    let traces = Mutex::new(Traces::new());
    {
        let mut t = lock(&traces);
        for ts in [1, 2] {
            t.apply(
                &TraceInput {
                    log_group: "/g",
                    log_stream: "s",
                    timestamp_ms: ts,
                    trace_id: Some("T"),
                    request_id: Some("R"),
                    ..TraceInput::default()
                },
                100,
            );
        }
        t.close_idle(i64::MAX, true);
        let due = t.pending_summaries(SummaryPolicy::MultiEvent, 10);
        t.mark_sent(&[(due[0].trace_key.clone(), due[0].revision)]);
    }
    store
        .commit(Arc::new(Checkpoint::Traces), Some(&traces))
        .await
        .unwrap();
    let stored = store.load_traces_blocking(1_000).unwrap();
    assert!(stored.traces.is_empty());
    let mut cold: Vec<String> = stored.cold.iter().map(|(a, _)| a.to_string()).collect();
    cold.sort();
    assert_eq!(cold, vec!["r:R".to_string(), "t:T".to_string()]);
    // By the request id (not the trace's key): found by the scan.
    let back = store.load_cold_traces(vec!["r:R".into()]).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, "t:T");
    assert_eq!(store.prune_traces(1_000).await.unwrap(), 1);
    assert!(
        store
            .load_cold_traces(vec!["t:T".into()])
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_version_3_file_with_traces_is_migrated_and_keeps_every_trace_fact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..3] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO groups (log_group, covered_from_ms, cursor_ms, events_delivered, updated_ms)
                 VALUES ('/g', 1000, 2000, 5, 0);
             INSERT INTO delivered VALUES ('/g', 'e1', 1500);
             INSERT INTO traces (trace_key, first_ts, last_ts, event_count, error_count, services,
                 log_groups, open_requests, lambda, last_seen_ms, closed, revision, summary_sent)
                 VALUES ('t:T', 10, 20, 3, 1, '[\"api\"]', '[\"/g\"]', '[]',
                         '{\"R\":{\"duration_ms\":12.5,\"cold_start\":true,\"start\":\"1970-01-01T00:00:00.010Z\"}}',
                         99, 1, 1, 0);
             INSERT INTO trace_aliases VALUES ('t:T', 't:T'), ('r:R', 't:T');
             INSERT INTO trace_spans VALUES ('t:T', 'a', NULL, 'api', 10), ('t:T', 'b', 'a', NULL, 12);
             INSERT INTO lambda_brackets VALUES ('/g', 's', 'R2');",
        )
        .unwrap();
    }
    let store = StateStore::open(&path).unwrap();
    // The file keeps the page size it was made with; the WAL is still
    // copied back every 16 MB.
    let pragma = |name: &'static str| -> i64 {
        store
            .with_blocking(|c| c.pragma_query_value(None, name, |r| r.get(0)))
            .unwrap()
    };
    assert_eq!(
        (pragma("page_size"), pragma("wal_autocheckpoint")),
        (4096, 4096)
    );
    let g = store.all_groups_blocking().unwrap();
    assert_eq!(
        g[0].account, "default",
        "what was there is the default account's"
    );
    assert_eq!(g[0].coverage.cursor_ms, 2000);
    assert_eq!(g[0].events_delivered, 5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ids = rt
        .block_on(store.delivered_ids("default", "/g", 0))
        .unwrap();
    assert_eq!(ids, HashSet::from(["e1".to_string()]));
    let stored = store.load_traces_blocking(0).unwrap();
    assert_eq!(stored.traces.len(), 1);
    let (key, t) = &stored.traces[0];
    assert_eq!(key, "t:T");
    assert_eq!(
        (t.first_ts, t.last_ts, t.event_count, t.error_count),
        (10, 20, 3, 1)
    );
    assert_eq!(t.services, vec![Name::from("api")]);
    assert_eq!(t.log_groups, vec![Name::from("/g")]);
    assert!(t.closed && !t.summary_sent);
    assert_eq!(t.revision, 1);
    assert_eq!(t.lambda["R"].duration_ms, Some(12.5));
    assert_eq!(t.lambda["R"].cold_start, Some(true));
    let mut aliases = t.aliases.clone();
    aliases.sort();
    assert_eq!(aliases, vec![Name::from("r:R"), Name::from("t:T")]);
    assert_eq!(t.spans.len(), 2);
    let b = t.spans.iter().find(|s| &*s.span_id == "b").unwrap();
    assert_eq!(b.parent_span_id.as_deref(), Some("a"));
    assert_eq!(stored.brackets.len(), 1);
}

#[test]
fn a_version_6_file_with_json_trace_rows_is_read_and_its_traces_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    let json = |key: &str, count: u64| {
        format!(
            r#"{{"first_ts":10,"last_ts":20,"event_count":{count},"error_count":0,"services":["api"],"log_groups":["/g"],"aliases":["{key}","r:R-{key}"],"last_seen_ms":99,"closed":false,"revision":0,"summary_sent":false}}"#
        )
    };
    {
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..6] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute(
            "INSERT INTO trace_state VALUES ('t:folded', 99, 0, ?1)",
            [json("t:folded", 3)],
        )
        .unwrap();
        // A journal row of version 6: its trace record holds JSON.
        let changes = Changes {
            traces: vec![crate::trace::StoredTrace {
                key: "t:journal".into(),
                last_seen_ms: 99,
                settled: false,
                update: false,
                data: json("t:journal", 4).into_bytes(),
            }],
            ..Changes::default()
        };
        // Version 6's journal: rows without a part (migration 9 keeps them).
        for (_, row) in journal::encode(&changes) {
            conn.execute("INSERT INTO trace_journal (data) VALUES (?1)", [row])
                .unwrap();
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = StateStore::open(&path).unwrap();
    // An evicted trace coming back from a JSON row: by its key, and by an
    // alias that is not its key (the scan).
    let cold = rt
        .block_on(store.load_cold_traces(vec!["t:folded".into(), "r:R-t:journal".into()]))
        .unwrap();
    let mut cold: Vec<(&str, u64)> = cold
        .iter()
        .map(|(k, t)| (k.as_str(), t.event_count))
        .collect();
    cold.sort();
    assert_eq!(cold, vec![("t:folded", 3), ("t:journal", 4)]);
    let mut stored = store.load_traces_blocking(0).unwrap().traces;
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    let counts: Vec<(&str, u64)> = stored
        .iter()
        .map(|(k, t)| (k.as_str(), t.event_count))
        .collect();
    assert_eq!(counts, vec![("t:folded", 3), ("t:journal", 4)]);
    // An event for one of them: the trace goes on, written as protobuf.
    let mut traces = Traces::new();
    traces.restore(stored, []);
    traces.apply(
        &TraceInput {
            log_group: "/g",
            log_stream: "s",
            timestamp_ms: 30,
            trace_id: Some("folded"),
            ..TraceInput::default()
        },
        100,
    );
    let traces = Mutex::new(traces);
    rt.block_on(store.commit(Arc::new(Checkpoint::Traces), Some(&traces)))
        .unwrap();
    drop(store);
    let store = StateStore::open(&path).unwrap();
    let again = store.load_traces_blocking(0).unwrap().traces;
    let folded = again.iter().find(|(k, _)| k == "t:folded").unwrap();
    assert_eq!(folded.1.event_count, 4);
    assert_eq!(folded.1.last_ts, 30);
    let kind: Vec<u8> = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT substr(data, 1, 1) FROM trace_state WHERE trace_key = 't:folded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, vec![crate::trace::PROTOBUF_ROW]);
}

#[test]
fn processes_opening_a_new_file_at_once_migrate_it_once() {
    // `cwtap status` while `cwtap run` starts: both open (and would
    // migrate) the same new file; every opener must succeed.
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let start = Arc::new(std::sync::Barrier::new(6));
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let (path, start) = (path.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    StateStore::open(&path).map(|_| ())
                })
            })
            .collect();
        for opener in openers {
            let opened = opener.join().unwrap();
            assert!(opened.is_ok(), "round {round}: {opened:?}");
        }
        let version: i64 = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
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

#[tokio::test]
async fn two_accounts_keep_their_own_checkpoints_for_the_same_group_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("s.db")).unwrap();
    for (account, cursor) in [("default", 1_000), ("other", 5_000)] {
        store
            .set_coverage(
                account,
                "/aws/lambda/api",
                Coverage {
                    covered_from_ms: 0,
                    cursor_ms: cursor,
                },
            )
            .await
            .unwrap();
    }
    store
        .commit(
            Arc::new(Checkpoint::Group {
                account: "other".into(),
                log_group: "/aws/lambda/api".into(),
                ids: vec![("e".into(), 4_000)],
                delivered: 1,
                rejected: 0,
                late: 0,
                position: GroupPosition::default(),
            }),
            None,
        )
        .await
        .unwrap();
    let a = store
        .group("default", "/aws/lambda/api")
        .await
        .unwrap()
        .unwrap();
    let b = store
        .group("other", "/aws/lambda/api")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.coverage.cursor_ms, a.events_delivered), (1_000, 0));
    assert_eq!((b.coverage.cursor_ms, b.events_delivered), (5_000, 1));
    assert!(
        store
            .delivered_ids("default", "/aws/lambda/api", 0)
            .await
            .unwrap()
            .is_empty()
    );
}
