//! The state file's schema migrations, as literal SQL: entry `i` brings a file
//! from version `i` to `i + 1`. A released migration is never edited: a
//! change is a new entry at the end (the tests open files of every earlier
//! version and check what they become).

pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: trace grouping, one row per trace with its aliases and spans beside.
    "CREATE TABLE traces (
        trace_key       TEXT PRIMARY KEY,
        first_ts        INTEGER NOT NULL,
        last_ts         INTEGER NOT NULL,
        event_count     INTEGER NOT NULL DEFAULT 0,
        error_count     INTEGER NOT NULL DEFAULT 0,
        services        TEXT NOT NULL DEFAULT '[]',
        log_groups      TEXT NOT NULL DEFAULT '[]',
        root_span       TEXT,
        open_requests   TEXT NOT NULL DEFAULT '[]',
        lambda          TEXT NOT NULL DEFAULT '{}',
        last_seen_ms    INTEGER NOT NULL,
        closed          INTEGER NOT NULL DEFAULT 0,
        revision        INTEGER NOT NULL DEFAULT 0,
        summary_sent    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX traces_open ON traces (closed, last_seen_ms);
    CREATE TABLE trace_aliases (
        alias      TEXT PRIMARY KEY,
        trace_key  TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX trace_aliases_by_trace ON trace_aliases (trace_key);
    CREATE TABLE trace_spans (
        trace_key       TEXT NOT NULL,
        span_id         TEXT NOT NULL,
        parent_span_id  TEXT,
        service         TEXT,
        first_ts        INTEGER NOT NULL,
        PRIMARY KEY (trace_key, span_id)
    ) WITHOUT ROWID;
    CREATE TABLE lambda_brackets (
        log_group   TEXT NOT NULL,
        log_stream  TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        PRIMARY KEY (log_group, log_stream)
    ) WITHOUT ROWID;",
    // 3: the time between a group's last two polls.
    "ALTER TABLE groups ADD COLUMN poll_interval_ms INTEGER;",
    // 4: a trace is one row holding all it knows (the working set is in
    // memory; the file is its durable copy, written once per change), and
    // the read cost per group; ids of events received by push.
    "CREATE TABLE trace_state (
        trace_key     TEXT PRIMARY KEY,
        last_seen_ms  INTEGER NOT NULL,
        settled       INTEGER NOT NULL,
        data          TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX trace_state_settled ON trace_state (settled, last_seen_ms);
    INSERT INTO trace_state (trace_key, last_seen_ms, settled, data)
    SELECT t.trace_key, t.last_seen_ms, (t.closed = 1 AND t.summary_sent = 1),
        json_object(
            'first_ts', t.first_ts,
            'last_ts', t.last_ts,
            'event_count', t.event_count,
            'error_count', t.error_count,
            'services', json(t.services),
            'log_groups', json(t.log_groups),
            'open_requests', json(t.open_requests),
            'lambda', json(t.lambda),
            -- json(): a subquery's value loses its JSON subtype.
            'spans', json((SELECT json_group_array(json_array(
                          s.span_id, s.parent_span_id, s.service, s.first_ts))
                      FROM trace_spans s WHERE s.trace_key = t.trace_key)),
            'aliases', json((SELECT json_group_array(a.alias)
                        FROM trace_aliases a WHERE a.trace_key = t.trace_key)),
            'last_seen_ms', t.last_seen_ms,
            'closed', json(CASE WHEN t.closed = 1 THEN 'true' ELSE 'false' END),
            'revision', t.revision,
            'summary_sent', json(CASE WHEN t.summary_sent = 1 THEN 'true' ELSE 'false' END))
    FROM traces t;
    DROP TABLE trace_spans;
    DROP TABLE trace_aliases;
    DROP TABLE traces;
    ALTER TABLE groups ADD COLUMN api_calls INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE groups ADD COLUMN events_read INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pushed (
        log_group    TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        received_ms  INTEGER NOT NULL,
        PRIMARY KEY (log_group, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX pushed_by_time ON pushed (received_ms);",
    // 5: checkpoints keyed by account as well as group: two accounts' (or
    // Regions') /aws/lambda/api never share a cursor. What was there is the
    // `default` account's, the name of a config without `accounts:`.
    "CREATE TABLE groups_v5 (
        account            TEXT NOT NULL,
        log_group          TEXT NOT NULL,
        covered_from_ms    INTEGER NOT NULL,
        cursor_ms          INTEGER NOT NULL,
        events_delivered   INTEGER NOT NULL DEFAULT 0,
        events_rejected    INTEGER NOT NULL DEFAULT 0,
        late_events        INTEGER NOT NULL DEFAULT 0,
        observed_delay_ms  INTEGER NOT NULL DEFAULT 0,
        last_poll_ms       INTEGER,
        last_error         TEXT,
        last_error_ms      INTEGER,
        updated_ms         INTEGER NOT NULL,
        poll_interval_ms   INTEGER,
        api_calls          INTEGER NOT NULL DEFAULT 0,
        events_read        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, log_group)
    );
    INSERT INTO groups_v5 (account, log_group, covered_from_ms, cursor_ms, events_delivered,
        events_rejected, late_events, observed_delay_ms, last_poll_ms, last_error, last_error_ms,
        updated_ms, poll_interval_ms, api_calls, events_read)
    SELECT 'default', log_group, covered_from_ms, cursor_ms, events_delivered,
        events_rejected, late_events, observed_delay_ms, last_poll_ms, last_error, last_error_ms,
        updated_ms, poll_interval_ms, api_calls, events_read
    FROM groups;
    DROP TABLE groups;
    ALTER TABLE groups_v5 RENAME TO groups;
    CREATE TABLE delivered_v5 (
        account       TEXT NOT NULL,
        log_group     TEXT NOT NULL,
        event_id      TEXT NOT NULL,
        timestamp_ms  INTEGER NOT NULL,
        PRIMARY KEY (account, log_group, event_id)
    ) WITHOUT ROWID;
    INSERT INTO delivered_v5 (account, log_group, event_id, timestamp_ms)
    SELECT 'default', log_group, event_id, timestamp_ms FROM delivered;
    DROP TABLE delivered;
    ALTER TABLE delivered_v5 RENAME TO delivered;
    CREATE INDEX delivered_by_time ON delivered (account, log_group, timestamp_ms);",
    // 6: a checkpoint writes a few rows, not one per event and per trace.
    // The ids a batch delivered share one row (separated by newlines; a
    // CloudWatch event id is digits); the trace changes of a checkpoint are
    // appended to a journal, folded into trace_state now and then (each
    // trace written once per fold, however often it changed).
    "CREATE TABLE delivered_batches (
        account    TEXT NOT NULL,
        log_group  TEXT NOT NULL,
        min_ts_ms  INTEGER NOT NULL,
        max_ts_ms  INTEGER NOT NULL,
        ids        TEXT NOT NULL
    );
    CREATE INDEX delivered_batches_by_time ON delivered_batches (account, log_group, max_ts_ms);
    INSERT INTO delivered_batches (account, log_group, min_ts_ms, max_ts_ms, ids)
    SELECT account, log_group, min(timestamp_ms), max(timestamp_ms), group_concat(event_id, char(10))
    FROM delivered GROUP BY account, log_group, timestamp_ms / 60000;
    DROP TABLE delivered;
    CREATE TABLE trace_journal (
        seq   INTEGER PRIMARY KEY,
        data  BLOB NOT NULL
    );",
    // 7: trace rows (trace_state.data, and the traces in trace_journal
    // rows) are written as protobuf (src/trace/codec.rs); the JSON rows
    // of version 6 stay as they are and are still read. No table changes:
    // the version keeps a cwtap that reads only JSON from opening the file.
    "-- trace rows may be protobuf from version 7 on",
    // 8: a trace the file holds is written as its update (what changed
    // since), journal record `U`, appended to its row at the fold: such a
    // row is the trace and its updates (src/trace/codec.rs, `SEGMENTS`).
    // No table changes: the version keeps a cwtap that cannot read those
    // rows from opening the file.
    "-- trace rows may be a trace and its updates from version 8 on",
    // 9: a checkpoint writes its journal records in parts, one row per
    // part (by a hash of the trace key), and a fold reads each part's
    // rows in its own pass (src/state/journal.rs, `PARTS`). `part` comes
    // before `data`, so that a pass skips the other parts' rows without
    // reading their data. Rows from before have no part.
    "CREATE TABLE trace_journal_v9 (
        seq   INTEGER PRIMARY KEY,
        part  INTEGER,
        data  BLOB NOT NULL
    );
    INSERT INTO trace_journal_v9 (seq, part, data) SELECT seq, NULL, data FROM trace_journal;
    DROP TABLE trace_journal;
    ALTER TABLE trace_journal_v9 RENAME TO trace_journal;",
    // 10: trace_state keeps its rows by rowid, the trace key in an index
    // of its own. A trace's row is hundreds of bytes: keyed by its text
    // (WITHOUT ROWID) each insert moved whole rows between pages as the
    // B-tree split, and a fold spent most of its time there.
    "CREATE TABLE trace_state_v10 (
        trace_key     TEXT NOT NULL UNIQUE,
        last_seen_ms  INTEGER NOT NULL,
        settled       INTEGER NOT NULL,
        data          TEXT NOT NULL
    );
    INSERT INTO trace_state_v10 (trace_key, last_seen_ms, settled, data)
    SELECT trace_key, last_seen_ms, settled, data FROM trace_state ORDER BY trace_key;
    DROP TABLE trace_state;
    ALTER TABLE trace_state_v10 RENAME TO trace_state;
    CREATE INDEX trace_state_settled ON trace_state (settled, last_seen_ms);",
];
