//! The trace journal: how a checkpoint writes the trace working set's
//! changes cheaply.
//!
//! Upserting every changed trace into `trace_state` at every checkpoint
//! rewrites a random B-tree page per trace (trace keys are random), and a
//! trace changes at each of its events. Instead a checkpoint appends one
//! row to `trace_journal` holding its changes in order, and
//! [`fold`] writes the journal into `trace_state` once it has grown past
//! [`FOLD_BYTES`] (and before anything reads `trace_state`): each trace
//! once per fold, its latest version, in key order. The journal and the table together
//! are the durable copy at every commit.
//!
//! A row's `data` is a sequence of records, no escaping needed:
//!
//! ```text
//! b'T' key_len:u32 key last_seen_ms:i64 settled:u8 data_len:u32 data   (write)
//! b'D' key_len:u32 key                                                 (delete)
//! ```
//!
//! with integers little-endian; `data` is the stored trace
//! ([`crate::trace::decode_stored`]).

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use crate::trace::Changes;

/// Journal bytes after which a checkpoint folds it into `trace_state`.
pub(super) const FOLD_BYTES: usize = 8 << 20;

/// The journal row for `changes`' traces, or `None` when none changed.
pub(super) fn encode(changes: &Changes) -> Option<Vec<u8>> {
    if changes.traces.is_empty() && changes.deleted.is_empty() {
        return None;
    }
    let size: usize = changes
        .traces
        .iter()
        .map(|t| 18 + t.key.len() + t.data.len())
        .sum::<usize>()
        + changes.deleted.iter().map(|k| 5 + k.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    // Deletions first: a key merged away and then started afresh in the
    // same checkpoint is in both lists, and its new row must win.
    for key in &changes.deleted {
        out.push(b'D');
        put_str(&mut out, key);
    }
    for t in &changes.traces {
        out.push(b'T');
        put_str(&mut out, &t.key);
        out.extend_from_slice(&t.last_seen_ms.to_le_bytes());
        out.push(u8::from(t.settled));
        put_bytes(&mut out, &t.data);
    }
    Some(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// One record of a journal row.
#[derive(Debug, PartialEq)]
pub(super) enum Record<'a> {
    Write {
        key: &'a str,
        last_seen_ms: i64,
        settled: bool,
        data: &'a [u8],
    },
    Delete {
        key: &'a str,
    },
}

/// The records of one row, in order; `Err` names what is malformed.
pub(super) fn decode(mut row: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = row.split_first() {
        row = rest;
        let key = take_str(&mut row)?;
        match kind {
            b'D' => out.push(Record::Delete { key }),
            b'T' => {
                let last_seen_ms = i64::from_le_bytes(take::<8>(&mut row)?);
                let [settled] = take::<1>(&mut row)?;
                let data = take_bytes(&mut row)?;
                out.push(Record::Write {
                    key,
                    last_seen_ms,
                    settled: settled != 0,
                    data,
                });
            }
            other => return Err(format!("unknown record kind {other:#04x}")),
        }
    }
    Ok(out)
}

fn take<const N: usize>(row: &mut &[u8]) -> Result<[u8; N], String> {
    let (head, rest) = row
        .split_first_chunk::<N>()
        .ok_or_else(|| "record cut short".to_string())?;
    *row = rest;
    Ok(*head)
}

fn take_bytes<'a>(row: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = u32::from_le_bytes(take::<4>(row)?) as usize;
    if row.len() < len {
        return Err("record cut short".into());
    }
    let (bytes, rest) = row.split_at(len);
    *row = rest;
    Ok(bytes)
}

fn take_str<'a>(row: &mut &'a [u8]) -> Result<&'a str, String> {
    std::str::from_utf8(take_bytes(row)?).map_err(|e| format!("record is not UTF-8: {e}"))
}

/// Appends one checkpoint's row; returns its size.
pub(super) fn append(c: &Connection, row: &[u8]) -> rusqlite::Result<usize> {
    c.prepare_cached("INSERT INTO trace_journal (data) VALUES (?1)")?
        .execute([row])?;
    Ok(row.len())
}

/// Writes the journal into `trace_state`, the latest version of each trace
/// once, in key order (neighbouring keys share B-tree pages, so the writes
/// walk the table once instead of touching a random page per trace), then
/// empties it. Call inside a transaction. Returns the number of traces
/// written or deleted.
pub(super) fn fold(c: &Connection) -> rusqlite::Result<usize> {
    // Oldest row first, each row's records in order: the last one per key
    // wins. Rows are read one at a time, and only the latest version of
    // each trace is kept: a fold holds at most the journal's distinct
    // traces, never every row at once.
    let mut latest: BTreeMap<String, Latest> = BTreeMap::new();
    let mut rows = c.prepare("SELECT seq, data FROM trace_journal ORDER BY seq")?;
    let mut rows = rows.query([])?;
    let mut row_count = 0usize;
    while let Some(row) = rows.next()? {
        row_count += 1;
        let seq: i64 = row.get(0)?;
        let records = decode(row.get_ref(1)?.as_blob()?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Blob,
                format!("trace_journal row {seq}: {e}").into(),
            )
        })?;
        for record in records {
            let (key, version) = match record {
                Record::Write {
                    key,
                    last_seen_ms,
                    settled,
                    data,
                } => (key, Some((last_seen_ms, settled, data))),
                Record::Delete { key } => (key, None),
            };
            match latest.get_mut(key) {
                Some(slot) => slot.set(version),
                None => {
                    let mut slot = Latest::default();
                    slot.set(version);
                    latest.insert(key.to_string(), slot);
                }
            }
        }
    }
    let mut upsert = c.prepare_cached(
        "INSERT INTO trace_state (trace_key, last_seen_ms, settled, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (trace_key) DO UPDATE SET
           last_seen_ms = excluded.last_seen_ms, settled = excluded.settled, data = excluded.data",
    )?;
    let mut delete = c.prepare_cached("DELETE FROM trace_state WHERE trace_key = ?1")?;
    let traces = latest.len();
    for (key, version) in latest {
        match version.write {
            Some((last_seen_ms, settled)) => {
                upsert.execute(params![key, last_seen_ms, settled, version.data])?
            }
            None => delete.execute([key])?,
        };
    }
    c.execute("DELETE FROM trace_journal", [])?;
    tracing::debug!(rows = row_count, traces, "trace journal folded");
    Ok(traces)
}

/// The latest record of one trace in the journal: a write (its
/// `last_seen_ms`, `settled` and data) or, with `write` unset, a delete.
/// A later version reuses the buffer of the one it replaces.
#[derive(Default)]
struct Latest {
    write: Option<(i64, bool)>,
    data: Vec<u8>,
}

impl Latest {
    fn set(&mut self, version: Option<(i64, bool, &[u8])>) {
        self.data.clear();
        self.write = version.map(|(last_seen_ms, settled, data)| {
            self.data.extend_from_slice(data);
            (last_seen_ms, settled)
        });
    }
}

/// The journal's size in bytes.
pub(super) fn size(c: &Connection) -> rusqlite::Result<usize> {
    c.query_row(
        "SELECT COALESCE(SUM(length(data)), 0) FROM trace_journal",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::StoredTrace;

    fn stored(key: &str, data: &str) -> StoredTrace {
        StoredTrace {
            key: key.into(),
            last_seen_ms: 7,
            settled: true,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_row_decodes_to_what_was_encoded_deletions_first() {
        let changes = Changes {
            traces: vec![stored("t:é\n\t", "{\"a\":1}"), stored("r:2", "")],
            deleted: vec!["t:gone".into()],
            brackets: Vec::new(),
        };
        let row = encode(&changes).unwrap();
        assert_eq!(
            decode(&row).unwrap(),
            vec![
                Record::Delete { key: "t:gone" },
                Record::Write {
                    key: "t:é\n\t",
                    last_seen_ms: 7,
                    settled: true,
                    data: b"{\"a\":1}"
                },
                Record::Write {
                    key: "r:2",
                    last_seen_ms: 7,
                    settled: true,
                    data: b""
                },
            ]
        );
        assert!(encode(&Changes::default()).is_none());
        assert!(decode(&row[..row.len() - 1]).is_err());
        assert!(decode(b"X\0\0\0\0").is_err());
    }

    #[test]
    fn folding_keeps_the_latest_version_of_each_trace() {
        let c = Connection::open_in_memory().unwrap();
        for m in super::super::MIGRATIONS {
            c.execute_batch(m).unwrap();
        }
        c.execute(
            "INSERT INTO trace_state VALUES ('t:old', 1, 0, 'old'), ('t:merged', 1, 0, 'm')",
            [],
        )
        .unwrap();
        let rows = [
            Changes {
                traces: vec![stored("t:old", "v1"), stored("t:new", "n1")],
                ..Changes::default()
            },
            Changes {
                traces: vec![stored("t:old", "v2")],
                deleted: vec!["t:merged".into(), "t:new".into()],
                ..Changes::default()
            },
            Changes {
                // Deleted, then back as a new trace.
                traces: vec![stored("t:new", "n2")],
                ..Changes::default()
            },
        ];
        let mut bytes = 0;
        for changes in &rows {
            bytes += append(&c, &encode(changes).unwrap()).unwrap();
        }
        assert_eq!(size(&c).unwrap(), bytes);
        assert_eq!(fold(&c).unwrap(), 3);
        let mut state: Vec<(String, Vec<u8>)> = c
            .prepare("SELECT trace_key, data FROM trace_state ORDER BY trace_key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        state.sort();
        assert_eq!(
            state,
            vec![
                ("t:new".to_string(), b"n2".to_vec()),
                ("t:old".to_string(), b"v2".to_vec())
            ]
        );
        assert_eq!(size(&c).unwrap(), 0);
    }
}
