//! The trace journal: how a checkpoint writes the trace working set's
//! changes cheaply.
//!
//! Upserting every changed trace into `trace_state` at every checkpoint
//! rewrites a random B-tree page per trace (trace keys are random), and a
//! trace changes at each of its events. Instead a checkpoint appends its
//! changes in order to `trace_journal`, one row per part ([`PARTS`], by a
//! hash of the trace key), and
//! [`fold`] writes the journal into `trace_state` once it has grown past
//! [`FOLD_BYTES`] (and before anything reads `trace_state`): each trace
//! once per fold, its latest version, in key order. The journal and the table together
//! are the durable copy at every commit.
//!
//! A row's `data` is a sequence of records, no escaping needed:
//!
//! ```text
//! b'T' key_len:u32 key last_seen_ms:i64 settled:u8 data_len:u32 data   (write)
//! b'U' key_len:u32 key last_seen_ms:i64 settled:u8 data_len:u32 data   (update)
//! b'D' key_len:u32 key                                                 (delete)
//! ```
//!
//! with integers little-endian; a write's `data` is the stored trace
//! ([`crate::trace::decode_stored`]), an update's what changed since the
//! trace's previous record, which the fold appends to the stored row
//! ([`crate::trace::extend_stored`]): most checkpoints write a few dozen
//! bytes per trace instead of the whole trace.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::trace::{Changes, extend_stored, push_update};

/// Journal bytes after which a checkpoint folds it into `trace_state`.
pub(super) const FOLD_BYTES: usize = 8 << 20;

/// The parts a checkpoint's journal records are written in: one row per
/// part, each trace's records always in the part of its key
/// ([`part_of`]). A fold then reads each part's rows once, in the pass
/// that writes those traces, instead of reading every row in every pass.
/// As many as a fold at [`FOLD_BYTES`] needs to hold at most
/// [`FOLD_HOLD_BYTES`] per pass.
pub(super) const PARTS: usize = FOLD_BYTES / FOLD_HOLD_BYTES;

/// The journal rows for `changes`' traces: (part, row) for each part that
/// has a record; none when nothing changed.
pub(super) fn encode(changes: &Changes) -> Vec<(usize, Vec<u8>)> {
    let part = |key: &str| part_of(key.as_bytes(), PARTS);
    let deleted: Vec<usize> = changes.deleted.iter().map(|k| part(k)).collect();
    let traces: Vec<usize> = changes.traces.iter().map(|t| part(&t.key)).collect();
    let mut size = [0usize; PARTS];
    for (key, &p) in changes.deleted.iter().zip(&deleted) {
        size[p] += 5 + key.len();
    }
    for (t, &p) in changes.traces.iter().zip(&traces) {
        size[p] += 18 + t.key.len() + t.data.len();
    }
    let mut rows: Vec<Vec<u8>> = size.iter().map(|&n| Vec::with_capacity(n)).collect();
    // Deletions first: a key merged away and then started afresh in the
    // same checkpoint is in both lists (and in the same part), and its new
    // row must win.
    for (key, &p) in changes.deleted.iter().zip(&deleted) {
        let out = &mut rows[p];
        out.push(b'D');
        put_str(out, key);
    }
    for (t, &p) in changes.traces.iter().zip(&traces) {
        let out = &mut rows[p];
        out.push(if t.update { b'U' } else { b'T' });
        put_str(out, &t.key);
        out.extend_from_slice(&t.last_seen_ms.to_le_bytes());
        out.push(u8::from(t.settled));
        put_bytes(out, &t.data);
    }
    rows.into_iter()
        .enumerate()
        .filter(|(_, row)| !row.is_empty())
        .collect()
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
    Update {
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
#[cfg(test)]
fn decode(row: &[u8]) -> Result<Vec<Record<'_>>, String> {
    decode_keys(row, |_| true)
}

/// The records of one row whose key `wanted` takes (given its bytes), in
/// order; the others are stepped over unread.
fn decode_keys(mut row: &[u8], wanted: impl Fn(&[u8]) -> bool) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = row.split_first() {
        row = rest;
        let key = take_bytes(&mut row)?;
        let key = if wanted(key) {
            Some(std::str::from_utf8(key).map_err(|e| format!("record is not UTF-8: {e}"))?)
        } else {
            None
        };
        match kind {
            b'D' => out.extend(key.map(|key| Record::Delete { key })),
            b'T' | b'U' => {
                let last_seen_ms = i64::from_le_bytes(take::<8>(&mut row)?);
                let settled = take::<1>(&mut row)?[0] != 0;
                let data = take_bytes(&mut row)?;
                let Some(key) = key else { continue };
                out.push(if kind == b'T' {
                    Record::Write {
                        key,
                        last_seen_ms,
                        settled,
                        data,
                    }
                } else {
                    Record::Update {
                        key,
                        last_seen_ms,
                        settled,
                        data,
                    }
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

/// Appends one row of a checkpoint, in `part`; returns its size.
pub(super) fn append(c: &Connection, part: usize, row: &[u8]) -> rusqlite::Result<usize> {
    c.prepare_cached("INSERT INTO trace_journal (part, data) VALUES (?1, ?2)")?
        .execute(params![part as i64, row])?;
    Ok(row.len())
}

/// Writes the journal into `trace_state`, the latest version of each trace
/// once, in key order (neighbouring keys share B-tree pages, so the writes
/// walk the table once instead of touching a random page per trace), then
/// empties it. Call inside a transaction. Returns the number of trace rows
/// written or deleted.
///
/// What a fold holds is bounded ([`FOLD_HOLD_BYTES`]), and a trace's
/// records are spread over the whole journal (its log groups are read at
/// different paces): held in one part, most traces would be written once
/// per part they appear in. So the traces are split by a hash of their key
/// into [`PARTS`] parts, one pass each, and each checkpoint wrote its
/// records in those parts already: a pass reads its own rows (and rows
/// from before the parts, by key). Every trace is written once, and the
/// journal is read once.
pub(super) fn fold(c: &Connection) -> rusqlite::Result<usize> {
    fold_holding(c, FOLD_HOLD_BYTES, PARTS)
}

/// [`fold`] in `parts` passes, each writing what it holds whenever it
/// holds more than `hold` bytes.
fn fold_holding(c: &Connection, hold: usize, parts: usize) -> rusqlite::Result<usize> {
    let mut traces = 0usize;
    let mut row_count = 0usize;
    for part in 0..parts {
        let (rows, written) = fold_part(c, hold, part, parts)?;
        row_count += rows;
        traces += written;
    }
    c.execute("DELETE FROM trace_journal", [])?;
    tracing::debug!(rows = row_count, parts, traces, "trace journal folded");
    Ok(traces)
}

/// Which of `parts` parts of a fold a trace key is in: a hash of its
/// bytes eight at a time (FxHash's mixing).
fn part_of(key: &[u8], parts: usize) -> usize {
    let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    let mut chunks = key.chunks_exact(8);
    let mut hash = (&mut chunks).fold(0, |h, c| {
        mix(h, u64::from_le_bytes(c.try_into().unwrap_or_default()))
    });
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = mix(hash, u64::from_le_bytes(last) ^ key.len() as u64);
    // The high bits are the well mixed ones.
    ((hash >> 32) % parts as u64) as usize
}

/// One pass of a fold over the journal, for the traces in `part` of
/// `parts`. Returns the rows read and the traces written.
fn fold_part(
    c: &Connection,
    hold: usize,
    part: usize,
    parts: usize,
) -> rusqlite::Result<(usize, usize)> {
    // Oldest row first, each row's records in order: the last one per key
    // wins. Rows are read one at a time, and only the latest version of
    // each trace is kept, up to `hold` bytes: then what is held is
    // written (the table then holds the journal up to that row, as the
    // next row's updates expect) and the fold goes on from there.
    let mut latest: Held = HashMap::default();
    let mut held = 0usize;
    let mut traces = 0usize;
    //
    // Rows written in these parts are read in their own pass only (`part`
    // comes before `data` in a row, so the others are passed over without
    // reading their data); rows from before the parts, or a fold in other
    // parts, are read in every pass and their records taken by key.
    let same_parts = parts == PARTS;
    let mut rows = c.prepare_cached(
        "SELECT seq, part, data FROM trace_journal
         WHERE NOT ?1 OR part IS NULL OR part = ?2 ORDER BY seq",
    )?;
    let mut rows = rows.query(params![same_parts, part as i64])?;
    let mut row_count = 0usize;
    while let Some(row) = rows.next()? {
        row_count += 1;
        let seq: i64 = row.get(0)?;
        let all_mine = parts == 1 || (same_parts && row.get::<_, Option<i64>>(1)?.is_some());
        let mine = |key: &[u8]| all_mine || part_of(key, parts) == part;
        let records = decode_keys(row.get_ref(2)?.as_blob()?, mine).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Blob,
                format!("trace_journal row {seq}: {e}").into(),
            )
        })?;
        for record in records {
            let key = match record {
                Record::Write { key, .. } | Record::Update { key, .. } | Record::Delete { key } => {
                    key
                }
            };
            held += match latest.get_mut(key) {
                Some(slot) => slot.set(&record),
                None => {
                    let mut slot = Latest::default();
                    let size = slot.set(&record);
                    latest.insert(key.to_string(), slot);
                    size + key.len() + LATEST_OVERHEAD
                }
            };
        }
        if held > hold {
            traces += write_latest(c, std::mem::take(&mut latest))?;
            held = 0;
        }
    }
    traces += write_latest(c, latest)?;
    Ok((row_count, traces))
}

/// How much a fold holds before it writes (traces' latest versions and
/// updates): a checkpoint's memory, not its speed (a trace written in two
/// parts of one fold costs one more row write).
const FOLD_HOLD_BYTES: usize = 2 << 20;

/// A [`Latest`]'s own size and its map entry's, roughly.
const LATEST_OVERHEAD: usize = 96;

/// What a fold holds: each trace's latest version, by key. Hashed, not
/// ordered: a trace's records are looked up many times while it is held,
/// and the keys are put in order once, when they are written.
type Held = HashMap<String, Latest, foldhash::fast::RandomState>;

/// Writes `latest` into `trace_state` in key order (neighbouring keys share
/// B-tree pages, so the writes walk the table once instead of touching a
/// random page per trace). Returns the number of traces written or deleted.
fn write_latest(c: &Connection, latest: Held) -> rusqlite::Result<usize> {
    let mut upsert = c.prepare_cached(
        "INSERT INTO trace_state (trace_key, last_seen_ms, settled, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (trace_key) DO UPDATE SET
           last_seen_ms = excluded.last_seen_ms, settled = excluded.settled, data = excluded.data",
    )?;
    let mut delete = c.prepare_cached("DELETE FROM trace_state WHERE trace_key = ?1")?;
    let mut stored = c.prepare_cached("SELECT data FROM trace_state WHERE trace_key = ?1")?;
    let traces = latest.len();
    let mut latest: Vec<(String, Latest)> = latest.into_iter().collect();
    latest.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, version) in latest {
        let (last_seen_ms, settled) = version.meta;
        let row = match version.kind {
            Kind::Delete => {
                delete.execute([&key])?;
                continue;
            }
            Kind::Whole => version.data,
            // Updates only: they follow the row the table holds.
            Kind::Updates => {
                let row: Option<Vec<u8>> = stored
                    .query_row([&key], |r| Ok(r.get_ref(0)?.as_bytes()?.to_vec()))
                    .optional()?;
                if row.is_none() {
                    tracing::warn!(trace_key = %key, "a trace update without its stored trace; the trace goes on from the update");
                }
                row.unwrap_or_default()
            }
        };
        let row = with_updates(&key, row, &version.updates).map_err(|message| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Blob,
                message.into(),
            )
        })?;
        upsert.execute(params![key, last_seen_ms, settled, row])?;
    }
    Ok(traces)
}

/// What the journal holds for one trace: its latest whole version
/// (`Whole`), or its deletion, or neither (`Updates`: the table's row is
/// the version); the updates after that version; and the latest
/// `last_seen_ms` and `settled`. A later version reuses the buffers of the
/// one it replaces.
#[derive(Default)]
struct Latest {
    kind: Kind,
    meta: (i64, bool),
    data: Vec<u8>,
    updates: Vec<u8>,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Kind {
    #[default]
    Updates,
    Whole,
    Delete,
}

impl Latest {
    /// Takes `record` as the latest; returns the bytes it added.
    fn set(&mut self, record: &Record<'_>) -> usize {
        match *record {
            Record::Delete { .. } => {
                self.kind = Kind::Delete;
                self.data.clear();
                self.updates.clear();
                0
            }
            Record::Write {
                last_seen_ms,
                settled,
                data,
                ..
            } => {
                self.kind = Kind::Whole;
                self.meta = (last_seen_ms, settled);
                self.data.clear();
                self.data.extend_from_slice(data);
                self.updates.clear();
                data.len()
            }
            Record::Update {
                key,
                last_seen_ms,
                settled,
                data,
            } => {
                if self.kind == Kind::Delete {
                    // Never written so: a trace written anew after a
                    // deletion is written whole.
                    tracing::warn!(trace_key = %key, "a trace update after its deletion; the trace goes on from the update");
                    self.kind = Kind::Whole;
                }
                self.meta = (last_seen_ms, settled);
                push_update(&mut self.updates, data);
                data.len() + 4
            }
        }
    }
}

/// `row` with `updates` appended; a row that cannot be read is replaced by
/// the updates alone (the trace goes on from them).
fn with_updates(key: &str, mut row: Vec<u8>, updates: &[u8]) -> Result<Vec<u8>, String> {
    if updates.is_empty() {
        return Ok(row);
    }
    if let Err(error) = extend_stored(&mut row, updates) {
        tracing::warn!(trace_key = %key, %error, "unreadable trace row in the state file; the trace goes on from its update");
        row.clear();
        extend_stored(&mut row, updates)?;
    }
    Ok(row)
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
            update: false,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn rows_decode_to_what_was_encoded_each_trace_in_its_part_deletions_first() {
        let changes = Changes {
            traces: vec![
                stored("t:é\n\t", "{\"a\":1}"),
                stored("r:2", ""),
                stored("t:gone", "again"),
            ],
            deleted: vec!["t:gone".into()],
            brackets: Vec::new(),
        };
        let rows = encode(&changes);
        let mut records: Vec<(usize, Record<'_>)> = Vec::new();
        for (part, row) in &rows {
            for record in decode(row).unwrap() {
                let key = match &record {
                    Record::Write { key, .. }
                    | Record::Update { key, .. }
                    | Record::Delete { key } => key,
                };
                assert_eq!(part_of(key.as_bytes(), PARTS), *part, "{key} in its part");
                records.push((*part, record));
            }
        }
        let gone = part_of(b"t:gone", PARTS);
        let written = |key, data| Record::Write {
            key,
            last_seen_ms: 7,
            settled: true,
            data,
        };
        let mut expected = vec![
            (
                part_of("t:é\n\t".as_bytes(), PARTS),
                written("t:é\n\t", b"{\"a\":1}"),
            ),
            (part_of(b"r:2", PARTS), written("r:2", b"")),
            // Deleted, then afresh: in that order, in one row.
            (gone, Record::Delete { key: "t:gone" }),
            (gone, written("t:gone", b"again")),
        ];
        // Row by row, in part order; in each row, in the order of `changes`
        // with deletions first.
        let order = |key: &str| changes.traces.iter().position(|t| &*t.key == key);
        expected.sort_by_key(|(part, r)| match r {
            Record::Delete { .. } => (*part, None),
            Record::Write { key, .. } | Record::Update { key, .. } => (*part, order(key)),
        });
        assert_eq!(records, expected);
        assert!(encode(&Changes::default()).is_empty());
        let (_, row) = &rows[0];
        assert!(decode(&row[..row.len() - 1]).is_err());
        assert!(decode(b"X\0\0\0\0").is_err());
    }

    /// Appends the rows of each of `changes`; returns their bytes.
    fn append_all(c: &Connection, changes: &[Changes]) -> usize {
        let mut bytes = 0;
        for changes in changes {
            for (part, row) in encode(changes) {
                bytes += append(c, part, &row).unwrap();
            }
        }
        bytes
    }

    /// A state file's tables, in memory.
    fn migrated() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        for m in super::super::MIGRATIONS {
            c.execute_batch(m).unwrap();
        }
        c
    }

    /// `trace_state`'s keys and rows, in key order.
    fn state_rows(c: &Connection) -> Vec<(String, Vec<u8>)> {
        c.prepare("SELECT trace_key, data FROM trace_state ORDER BY trace_key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn folding_keeps_the_latest_version_of_each_trace() {
        // As one part, and writing what it holds after every row.
        for (hold, parts) in [(FOLD_HOLD_BYTES, 1), (0, 1), (FOLD_HOLD_BYTES, 3), (0, 3)] {
            let c = migrated();
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
            let bytes = append_all(&c, &rows);
            assert_eq!(size(&c).unwrap(), bytes);
            let written = fold_holding(&c, hold, parts).unwrap();
            // Writing what it holds after every row: once per row and trace.
            assert_eq!(written, if hold == 0 { 2 + 3 + 1 } else { 3 });
            let state = state_rows(&c);
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

    #[test]
    fn a_fold_reads_each_parts_rows_in_its_pass_and_rows_from_before_in_every_pass() {
        let c = migrated();
        let versions = |n: usize, v: &str| Changes {
            traces: (0..n)
                .map(|t| stored(&format!("t:{t}"), &format!("{v}{t}")))
                .collect(),
            ..Changes::default()
        };
        // A row from before the parts: every trace's record in one row
        // (records delimit themselves, so the parts' rows joined are one).
        let old: Vec<u8> = encode(&versions(8, "old"))
            .into_iter()
            .flat_map(|(_, row)| row)
            .collect();
        c.execute("INSERT INTO trace_journal (data) VALUES (?1)", [&old])
            .unwrap();
        // Then newer versions of half of them, in parts.
        let newer = versions(4, "new");
        let parted = encode(&newer).len();
        assert!(parted > 1, "4 keys in {parted} part(s)");
        append_all(&c, &[newer]);
        let (mut read, mut written) = (0, 0);
        for part in 0..PARTS {
            let (r, w) = fold_part(&c, FOLD_HOLD_BYTES, part, PARTS).unwrap();
            read += r;
            written += w;
        }
        assert_eq!(
            read,
            PARTS + parted,
            "the old row in every pass, the others once"
        );
        assert_eq!(written, 8);
        let state = state_rows(&c);
        let expected: Vec<(String, Vec<u8>)> = (0..8)
            .map(|t| {
                let v = if t < 4 { "new" } else { "old" };
                (format!("t:{t}"), format!("{v}{t}").into_bytes())
            })
            .collect();
        assert_eq!(state, expected);
    }

    #[test]
    fn folding_in_parts_writes_each_trace_once_and_leaves_the_same_rows() {
        // 40 rows, each a new version of every one of 20 traces: held in one
        // part of 2 kB, a trace is written every few rows; in parts that
        // each hold their traces whole, once.
        let journal: Vec<Changes> = (0..40)
            .map(|row| Changes {
                traces: (0..20)
                    .map(|t| stored(&format!("t:{t:02}"), &format!("v{row}-{t}")))
                    .collect(),
                ..Changes::default()
            })
            .collect();
        let fold_with = |hold: usize, parts: usize| {
            let c = migrated();
            let bytes = append_all(&c, &journal);
            assert!(bytes > 2 * 2048);
            let written = fold_holding(&c, hold, parts).unwrap();
            assert_eq!(size(&c).unwrap(), 0);
            (written, state_rows(&c))
        };
        let (once, folded) = fold_with(2048, 1);
        assert!(
            once > 20,
            "one part of 2 kB writes traces more than once: {once}"
        );
        assert_eq!(folded.len(), 20);
        assert_eq!(folded[7], ("t:07".to_string(), b"v39-7".to_vec()));
        // Enough parts that each holds its traces whole (~2 kB of versions
        // per part; the hash spreads 20 keys only roughly evenly).
        assert_eq!(fold_with(2048, 20), (20, folded));
        // Every part gets some of many keys.
        let mut seen = [0usize; 4];
        for t in 0..400 {
            seen[part_of(format!("r:{t}").as_bytes(), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }

    #[test]
    fn folding_appends_updates_to_the_stored_trace_or_to_the_journals_write() {
        for (hold, parts) in [(FOLD_HOLD_BYTES, 1), (0, 1), (FOLD_HOLD_BYTES, 3), (0, 3)] {
            use crate::trace::{Trace, decode_stored};
            let c = migrated();
            let trace = |events: u64| -> Trace {
                let mut t = decode_stored(b"\x01").unwrap();
                t.event_count = events;
                t
            };
            let whole = |key: &str, events| {
                let mut data = Vec::new();
                crate::trace::encode_stored(&trace(events), &mut data);
                StoredTrace {
                    key: key.into(),
                    last_seen_ms: events as i64,
                    settled: false,
                    update: false,
                    data,
                }
            };
            // An update holds the scalars; one of 3 events is the message
            // `event_count: 3` (field 3, varint).
            let update = |key: &str, events: u8| StoredTrace {
                key: key.into(),
                last_seen_ms: i64::from(events),
                settled: events > 3,
                update: true,
                data: vec![0x18, events],
            };
            // In the table already, from an earlier fold.
            let stored = whole("t:stored", 1);
            c.execute(
                "INSERT INTO trace_state VALUES ('t:stored', 1, 0, ?1)",
                [&stored.data],
            )
            .unwrap();
            let rows = [
                Changes {
                    traces: vec![update("t:stored", 2), whole("t:new", 1)],
                    ..Changes::default()
                },
                Changes {
                    traces: vec![update("t:stored", 3), update("t:new", 2)],
                    ..Changes::default()
                },
                Changes {
                    traces: vec![update("t:new", 4)],
                    ..Changes::default()
                },
            ];
            append_all(&c, &rows);
            fold_holding(&c, hold, parts).unwrap();
            let read = |key: &str| -> (i64, bool, Trace) {
                c.query_row(
                    "SELECT last_seen_ms, settled, data FROM trace_state WHERE trace_key = ?1",
                    [key],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            decode_stored(r.get_ref(2)?.as_bytes()?).unwrap(),
                        ))
                    },
                )
                .unwrap()
            };
            let (seen, settled, t) = read("t:stored");
            assert_eq!((seen, settled, t.event_count), (3, false, 3));
            let (seen, settled, t) = read("t:new");
            assert_eq!((seen, settled, t.event_count), (4, true, 4));
            // Updates of a trace the table no longer holds (pruned meanwhile):
            // the trace goes on from them.
            c.execute("DELETE FROM trace_state", []).unwrap();
            let changes = Changes {
                traces: vec![update("t:stored", 9)],
                ..Changes::default()
            };
            append_all(&c, &[changes]);
            fold_holding(&c, hold, parts).unwrap();
            assert_eq!(read("t:stored").2.event_count, 9);
        }
    }
}
