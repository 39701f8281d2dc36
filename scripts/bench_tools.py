"""Helpers of scripts/bench.sh (standard library only, but for `moto`): fixtures,
a VectaDB stand-in receiver, moto with CloudWatch's page size, a process
supervisor that measures CPU time and RSS, the /metrics scraper, and the
analysis that turns what was recorded into numbers.

Run as `python3 bench_tools.py COMMAND ...`; see each command's --help.
"""

import argparse
import base64
import json
import math
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEVELS = ["info", "debug", "warn", "error"]
SERVICES = ["checkout-api", "payments", "inventory", "shipping"]


def message(seq, ts_ms):
    """A ~300-byte structured log line carrying an X-Ray trace id (5 events
    per trace) and `seq`, the event's number in the run (for loss checks)."""
    trace = seq // 5
    return json.dumps(
        {
            "level": LEVELS[seq % 4],
            "time": ts_ms,
            "service": SERVICES[seq % 4],
            "msg": f"order {seq} processed for customer {seq * 7919 % 100000}",
            "request_id": f"5e5c4176-5df6-4817-b099-{trace:012x}",
            "trace_id": f"1-6afffe01-96d38ff58c3f846c{trace:08x}",
            "span_id": f"{seq * 104729:016x}",
            "duration_ms": round(seq % 300 + 0.1 * (seq % 10), 1),
            "items": seq % 9 + 1,
            "region": "us-east-1",
            "seq": seq,
        },
        separators=(",", ":"),
    )


def fixture_line(group, stream, ts_ms, seq):
    return json.dumps(
        {
            "log_group": group,
            "log_stream": stream,
            "timestamp": ts_ms,
            "ingestion_time": None,
            "event_id": str(seq),
            "message": message(seq, ts_ms),
        },
        separators=(",", ":"),
    )


def cmd_fixture(a):
    """Backfill data: N events spread evenly over `span` seconds, round-robin
    over the groups, then over `streams` streams per group. Live data: `rate` events/s for
    `seconds`, each group getting its share once a second (groups staggered
    over the second), as a steady fleet of writers would."""
    base = 1_700_000_000_000  # rebased by `cwtap replay`
    with open(a.out, "w", encoding="utf-8") as f:
        if a.rate is None:
            step = a.span * 1000 / max(a.events, 1)
            for seq in range(a.events):
                g = seq % a.groups
                f.write(
                    fixture_line(f"{a.prefix}{g:03d}", f"stream-{seq // a.groups % a.streams}",
                                 base + int(seq * step), seq) + "\n")
            total = a.events
            newest = base + int((a.events - 1) * step)
        else:
            per_group = a.rate // a.groups
            seq = 0
            for second in range(a.seconds):
                for g in range(a.groups):
                    tick = base + second * 1000 + g * 1000 // a.groups
                    for j in range(per_group):
                        f.write(fixture_line(f"{a.prefix}{g:03d}", "stream-0", tick + j, seq) + "\n")
                        newest = tick + j
                        seq += 1
            total = seq
    # The newest event's distance from the first: `--rebase` puts the newest
    # event at a given time, so the first lands that much earlier.
    print(json.dumps({"events": total, "span_ms": newest - base}))


def cmd_groups_fixture(a):
    """One event per group (an hour old), to create the groups before a run."""
    with open(a.out, "w", encoding="utf-8") as f:
        for g in range(a.groups):
            f.write(fixture_line(f"{a.prefix}{g:03d}", "stream-0", 1_700_000_000_000, -1 - g) + "\n")


def cmd_sparse_fixture(a):
    """Data whose cost should follow its events, not its time span: N events
    over `span` seconds, `burst_share` of them in `bursts` dense bursts of
    `burst_secs` (each in one group, the groups taken in turn), the rest at
    uniformly random times in random groups; random streams. Seeded, so the
    same arguments give the same file. The newest event is at exactly `span`
    after the oldest possible time, so `--rebase T` puts every event in
    [T - span, T]. Prints the events per group (for the pages they need)."""
    rng = random.Random(a.seed)
    base = 1_700_000_000_000  # rebased by `cwtap replay`
    span_ms = a.span * 1000
    burst_ms = min(a.burst_secs * 1000, span_ms)
    in_bursts = int(a.events * a.burst_share) if a.bursts else 0
    starts = [rng.uniform(0, span_ms - burst_ms) for _ in range(a.bursts)]
    placed = []  # (offset ms, group)
    for i in range(in_bursts):
        b = i % a.bursts
        placed.append((starts[b] + rng.uniform(0, burst_ms), b % a.groups))
    for _ in range(a.events - in_bursts):
        placed.append((rng.uniform(0, span_ms), rng.randrange(a.groups)))
    placed.sort()
    if placed:
        placed[-1] = (span_ms, placed[-1][1])
    per_group = {f"{a.prefix}{g:03d}": 0 for g in range(a.groups)}
    with open(a.out, "w", encoding="utf-8") as f:
        for seq, (offset, g) in enumerate(placed):
            group = f"{a.prefix}{g:03d}"
            per_group[group] += 1
            f.write(fixture_line(group, f"stream-{rng.randrange(a.streams)}", base + int(offset), seq) + "\n")
    print(json.dumps({"events": len(placed), "span_ms": span_ms, "per_group": per_group,
                      "bursts": [{"group": f"{a.prefix}{b % a.groups:03d}", "at_s": round(s / 1000),
                                  "events": in_bursts // a.bursts + (b < in_bursts % a.bursts)}
                                 for b, s in enumerate(starts)]}))


def cmd_create_groups(a):
    """Empty log groups (with one empty stream each), through boto3 of the
    venv that runs moto; the endpoint comes from AWS_ENDPOINT_URL."""
    import boto3  # not standard library: only this command needs it

    logs = boto3.client("logs", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ.get("AWS_REGION", "us-east-1"))
    for g in range(a.groups):
        name = f"{a.prefix}{g:03d}"
        logs.create_log_group(logGroupName=name)
        for s in range(a.streams):
            logs.create_log_stream(logGroupName=name, logStreamName=f"stream-{s}")
    print(json.dumps({"events": 0, "per_group": {f"{a.prefix}{g:03d}": 0 for g in range(a.groups)}}))


# ------------------------------------------------------------ receiver


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.records = []  # (arrival_ms, group, log_id, timestamp, ingestion, seq)
        self.summaries = 0
        self.requests = {"2xx": 0, "503": 0, "other": 0}
        self.outage = False
        self.busy_s = 0.0  # time spent handling batch requests


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle
        # and the client's delayed ACK hold every answer back ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self.reply(200, {"status": "healthy", "version": "bench", "ontology_loaded": False,
                                 "ontology_namespace": None, "ontology_version": None})
            elif self.path == "/_bench/stats":
                with state.lock:
                    # Writer events only: the events that created the groups have negative seqs.
                    seqs = {r[5] for r in state.records if r[5] is not None and r[5] >= 0}
                    self.reply(200, {"events": len(state.records), "distinct_seq": len(seqs),
                                     "summaries": state.summaries, "requests": state.requests,
                                     "outage": state.outage, "busy_s": state.busy_s})
            else:
                self.reply(404, {"error": "NotFound"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.startswith("/_bench/outage/"):
                state.outage = self.path.endswith("/on")
                self.reply(200, {"outage": state.outage})
                return
            if self.path == "/_bench/dump":
                out = json.loads(body)["path"]
                with state.lock, open(out, "w", encoding="utf-8") as f:
                    for r in state.records:
                        f.write(json.dumps(r) + "\n")
                self.reply(200, {"written": len(state.records)})
                return
            if self.path != "/api/v1/events/batch":
                self.reply(404, {"error": "NotFound"})
                return
            started = time.perf_counter()
            if state.outage:
                with state.lock:
                    state.requests["503"] += 1
                self.reply(503, {"error": "DatabaseNotAvailable", "message": "bench outage"})
                return
            arrival = time.time() * 1000
            try:
                events = json.loads(body)["events"]
            except (ValueError, KeyError, TypeError):
                with state.lock:
                    state.requests["other"] += 1
                self.reply(400, {"error": "bad request"})
                return
            rows, summaries = [], 0
            for e in events:
                props = e.get("properties") or {}
                if e.get("event_type") == "trace_summary":
                    summaries += 1
                    continue
                src = e["source"]
                rows.append((arrival, src["log_group"], src["log_id"], e["timestamp"],
                             props.get("cloudwatch_ingestion_time"), props.get("seq")))
            with state.lock:
                state.records.extend(rows)
                state.summaries += summaries
                state.requests["2xx"] += 1
                state.busy_s += time.perf_counter() - started
            self.reply(200, {"ingested": len(events), "failed": 0, "trace_ids": [], "errors": []})

    return Handler


def cmd_receiver(a):
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(state))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


# ------------------------------------------------------------ supervisor


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cmd_supervise(a):
    """Runs the command; samples its VmRSS every `interval` seconds into
    `--samples` (epoch ms, kB); forwards SIGTERM/SIGINT; after `--timeout`
    seconds sends it SIGTERM (SIGKILL 10 s later); at exit writes its start
    (epoch ms), wall time, user and system CPU seconds, peak RSS (getrusage
    of the child, i.e. VmHWM) and whether it timed out as JSON to `--out`."""
    started = time.time()
    child = subprocess.Popen(a.cmd, stdout=open(a.stdout, "ab") if a.stdout else None,
                             stderr=open(a.stderr, "ab") if a.stderr else None)
    if a.pidfile:
        with open(a.pidfile, "w", encoding="ascii") as f:
            f.write(f"{child.pid}\n")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    samples = open(a.samples, "w", encoding="ascii") if a.samples else None
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss = proc_status(child.pid, "VmRSS")
            if rss is not None and samples:
                samples.write(f"{int(time.time() * 1000)} {rss}\n")
                samples.flush()
            stop.wait(a.interval)

    threading.Thread(target=sample, daemon=True).start()
    timed_out = threading.Event()
    if a.timeout:
        def expire():
            if stop.wait(a.timeout):
                return
            timed_out.set()
            child.terminate()
            if not stop.wait(10):
                child.kill()

        threading.Thread(target=expire, daemon=True).start()
    while True:
        try:
            _, status, usage = os.wait4(child.pid, 0)
            break
        except InterruptedError:
            continue
    stop.set()
    code = os.waitstatus_to_exitcode(status)
    with open(a.out, "w", encoding="ascii") as f:
        json.dump({"started_ms": int(started * 1000), "wall_s": time.time() - started,
                   "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                   "maxrss_kb": usage.ru_maxrss, "exit": code, "timed_out": timed_out.is_set()}, f)
    sys.exit(0 if code in (0, -signal.SIGTERM) and not timed_out.is_set() else 1)


def cmd_cpu(a):
    """User+system CPU seconds a process has used so far."""
    with open(f"/proc/{a.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))


def cmd_calibrate(_a):
    """CPU seconds of a fixed workload (JSON encoding and parsing, zlib,
    sorting: a single thread's compute and memory), the median of three:
    how fast this machine runs now, to read CPU seconds of runs measured in
    different hours against each other."""
    import zlib

    rng = random.Random(7)
    rows = [{"i": i, "msg": f"order {i} for customer {rng.randrange(10**6)}", "ms": rng.random()}
            for i in range(20_000)]
    blob = json.dumps(rows).encode() * 4
    numbers = [rng.random() for _ in range(300_000)]

    def once():
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(3):
            json.loads(json.dumps(rows))
        zlib.compress(blob, 6)
        sorted(numbers)
        after = resource.getrusage(resource.RUSAGE_SELF)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    times = sorted(once() for _ in range(3))
    print(f"{times[1]:.3f}")


def cmd_freeport(_a):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cmd_scrape(a):
    """The cwtap_ counters of /metrics, summed over labels except
    `operation`, as JSON."""
    text = urllib.request.urlopen(a.url, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(cwtap_[a-z_]+?)(?:_total)?(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if not m or line.startswith("#"):
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        op = re.search(r'operation="([^"]+)"', labels)
        key = f"{name}:{op.group(1)}" if op else name
        out[key] = out.get(key, 0) + value
    out["at_ms"] = int(time.time() * 1000)
    print(json.dumps(out))


# ------------------------------------------------------------ analysis


def parse_ms(rfc3339):
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def load_records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_delivery(a):
    """Loss and duplicate check of a receiver dump against the seqs 0..N-1,
    and latencies (arrival minus event timestamp, and minus CloudWatch
    ingestion time) of the events whose timestamp is in [from, to)."""
    records = load_records(a.records)
    seqs = [r[5] for r in records if r[5] is not None and r[5] >= 0]
    distinct = set(seqs)
    lost = a.expected - len(distinct & set(range(a.expected)))
    ids = [(r[1], r[2]) for r in records]
    arrivals = [r[0] for r in records]
    out = {"received": len(records), "distinct_seq": len(distinct), "lost": lost,
           "duplicates": len(ids) - len(set(ids)), "seq_duplicates": len(seqs) - len(distinct),
           "first_arrival_ms": min(arrivals, default=None), "last_arrival_ms": max(arrivals, default=None)}
    if a.since_ms is not None:
        lat, lat_ingest = [], []
        for r in records:
            ts = parse_ms(r[3])
            if a.since_ms <= ts < a.until_ms and r[5] is not None and r[5] >= 0:
                lat.append(r[0] - ts)
                if r[4]:
                    lat_ingest.append(r[0] - parse_ms(r[4]))
        lat.sort()
        lat_ingest.sort()
        out.update({"latency_n": len(lat), "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                    "max_ms": lat[-1] if lat else float("nan"),
                    "ingest_p50_ms": percentile(lat_ingest, 50), "ingest_p99_ms": percentile(lat_ingest, 99)})
    print(json.dumps(out))


def cmd_ndjson_count(a):
    events = summaries = 0
    with open(a.path, encoding="utf-8") as f:
        for line in f:
            if '"event_type":"trace_summary"' in line:
                summaries += 1
            elif line.strip():
                events += 1
    print(json.dumps({"events": events, "summaries": summaries}))


def cmd_ndjson_delivery(a):
    """Exactly-once check of an NDJSON output: log events (trace summaries
    left out) per group, duplicates by (log_group, log_id) and by `seq`, and
    the events lost: the seqs 0..N-1 missing, or for data without seqs, N
    minus the distinct ids."""
    ids, seqs, per_group = [], [], {}
    with open(a.path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or '"event_type":"trace_summary"' in line:
                continue
            e = json.loads(line)
            src = e["source"]
            ids.append((src["log_group"], src["log_id"]))
            per_group[src["log_group"]] = per_group.get(src["log_group"], 0) + 1
            seq = (e.get("properties") or {}).get("seq")
            if isinstance(seq, int):
                seqs.append(seq)
    distinct = set(seqs)
    if seqs:
        lost = a.expected - len(distinct & set(range(a.expected)))
    else:
        lost = max(a.expected - len(set(ids)), 0)
    print(json.dumps({"events": len(ids), "distinct_ids": len(set(ids)), "duplicates": len(ids) - len(set(ids)),
                      "seq_duplicates": len(seqs) - len(distinct), "lost": lost, "per_group": per_group}))


def cmd_recording(a):
    """FilterLogEvents (and other) calls in a moto recording; with
    --by-group, {"ops": those counts, "filter_by_group": FilterLogEvents
    calls per log group (from the recorded request bodies)}."""
    counts, by_group = {}, {}
    with open(a.path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            headers = entry.get("headers", {})
            target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "?")
            op = target.rsplit(".", 1)[-1]
            counts[op] = counts.get(op, 0) + 1
            if a.by_group and op == "FilterLogEvents":
                body = entry.get("body") or ""
                if entry.get("body_encoded"):
                    body = base64.b64decode(body).decode("utf-8")
                try:
                    req = json.loads(body)
                    group = req.get("logGroupName") or req.get("logGroupIdentifier") or "?"
                except ValueError:
                    group = "?"
                by_group[group] = by_group.get(group, 0) + 1
    print(json.dumps({"ops": counts, "filter_by_group": by_group} if a.by_group else counts))


def cmd_calls_summary(a):
    """Totals of a `recording --by-group` answer against the events each
    group holds (the per_group of a `sparse-fixture` or `create-groups`
    answer): FilterLogEvents calls in all and per group (min / median / max),
    and the pages the same events take at 10,000 events a page."""
    rec = json.loads(a.recording)
    per_group = json.loads(a.per_group)["per_group"] if a.per_group else {}
    calls = rec["filter_by_group"]
    groups = set(per_group) | set(calls)
    n = [calls.get(g, 0) for g in sorted(groups)] or [0]
    n.sort()
    events = [per_group.get(g, 0) for g in groups]
    print(json.dumps({"groups": len(groups), "calls": sum(n), "min": n[0], "median": n[len(n) // 2], "max": n[-1],
                      "pages": sum(math.ceil(e / 10_000) for e in events),
                      "pages_min1": sum(max(1, math.ceil(e / 10_000)) for e in events),
                      "other_ops": {k: v for k, v in rec["ops"].items() if k != "FilterLogEvents"}}))


def cmd_windows(a):
    """From cwtap's JSON log: the windows whose scan ended in [from, to), the
    FilterLogEvents pages they took, and the pages a poll without any re-read
    would have needed for the same new events (one per 10,000 new events, at
    least one per window). A window's "window scanned" line (pages) is paired
    with the next "window delivered" line of its group (new events)."""
    pending = {}  # group -> (scanned at, pages)
    pages = windows = needed = new_events = 0
    with open(a.log, encoding="utf-8") as f:
        for line in f:
            if '"window' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            fields = rec.get("fields", {})
            group = fields.get("group")
            if fields.get("message") == "window scanned":
                pending[group] = (parse_ms(rec["timestamp"]), int(fields.get("pages", 0)))
            elif fields.get("message") == "window delivered" and group in pending:
                at, n_pages = pending.pop(group)
                if not a.since_ms <= at < a.until_ms:
                    continue
                n = int(fields.get("events", 0))
                windows += 1
                pages += n_pages
                new_events += n
                needed += max(1, math.ceil(n / 10_000))
    print(json.dumps({"windows": windows, "pages": pages, "zero_overlap_pages": needed, "new_events": new_events}))


def cmd_rss(a):
    """Max VmRSS of the samples in [from, to), in MB (10^6 bytes; /proc reports kiB)."""
    best = 0
    with open(a.samples, encoding="ascii") as f:
        for line in f:
            at, kb = line.split()
            if a.since_ms <= int(at) < a.until_ms:
                best = max(best, int(kb))
    print(f"{best * 1024 / 1e6:.1f}")


def cmd_wal_frames(a):
    """What a state file's commits write, by table: frames per commit.

    Reads an `strace -f -xx -s 24 -e trace=pwrite64` log of a cwtap run.
    SQLite writes each WAL frame as a 24-byte header (the page number, then
    the database size in pages on a commit's last frame) and the page, so
    the headers give every commit's pages. Pages are named by the state
    file as it is at the end (SQLite's `dbstat`), so a page freed and used
    again counts under its last owner.
    """
    commits, frames = [], []
    pattern = re.compile(r'pwrite64\(\d+, "((?:\\x[0-9a-f]{2}){24})", 24,')
    with open(a.strace, encoding="ascii", errors="replace") as f:
        for line in f:
            m = pattern.search(line)
            if not m:
                continue
            header = bytes.fromhex(m.group(1).replace("\\x", ""))
            frames.append(int.from_bytes(header[0:4], "big"))
            if int.from_bytes(header[4:8], "big"):
                commits.append(frames)
                frames = []
    if not commits:
        sys.exit(f"{a.strace}: no WAL commit found (was it traced with -xx -s 24?)")
    owner = {1: "(page 1: the header)"}
    try:
        import sqlite3
        con = sqlite3.connect(f"file:{a.state}?mode=ro", uri=True)
        for name, page, kind in con.execute("SELECT name, pageno, pagetype FROM dbstat"):
            if page != 1:
                owner[page] = f"{name} ({kind})"
    except Exception as e:  # dbstat is a compile-time option of SQLite
        print(f"pages not named ({e})", file=sys.stderr)
    by_owner = {}
    for pages in commits:
        for page in pages:
            name = owner.get(page, "(free now)")
            by_owner[name] = by_owner.get(name, 0) + 1
    total = sum(len(c) for c in commits)
    print(f"commits {len(commits)}, frames {total}, "
          f"{total / len(commits):.1f} per commit (median {sorted(map(len, commits))[len(commits) // 2]})")
    for name, n in sorted(by_owner.items(), key=lambda kv: -kv[1]):
        print(f"{n:8d} {n / len(commits):6.2f}  {name}")


def cmd_journal_left(a):
    """The trace state a run left in its state file: `trace_state` rows, and
    the bytes of trace journal not yet folded into them (JSON)."""
    import sqlite3
    con = sqlite3.connect(f"file:{a.state}?mode=ro", uri=True)
    count = lambda sql: con.execute(sql).fetchone()[0] or 0
    print(json.dumps({
        "trace_state": count("SELECT count(*) FROM trace_state"),
        "journal_bytes": count("SELECT sum(length(data)) FROM trace_journal"),
    }))


def cmd_moto(a):
    """moto's server, with FilterLogEvents pages cut like CloudWatch's.

    CloudWatch ends a FilterLogEvents page at 10,000 events or 1 MB; moto
    only counts events, so a page of ~300-byte lines is 4-5 MB there and a
    reader holds several times what CloudWatch would send it. With
    `--page-bytes N` a page ends before the event that would take it past N
    bytes, counted as CloudWatch counts a PutLogEvents batch (the message's
    UTF-8 bytes + 26 per event; the read side is not documented further),
    and the next token resumes after the page's last event (moto's own
    token format). 0 keeps moto's pages.
    """
    from moto.logs import models
    from moto.server import main as moto_main

    if a.cloudwatch_ids:
        # CloudWatch's eventIds are 56-digit decimals (the event's
        # timestamp in the top bits, then bits that tell its stream and
        # place apart); moto's are a counter ("0", "1", ...). cwtap keeps
        # the ids it delivered in its state file, so their size is part of
        # what a checkpoint costs.
        original_init = models.LogEvent.__init__

        def with_cloudwatch_id(self, ingestion_time, log_event):
            original_init(self, ingestion_time, log_event)
            low = (self.event_id * 0x9E3779B97F4A7C15) & ((1 << 144) - 1)
            self.event_id = f"{(self.timestamp << 144) | low:056d}"

        models.LogEvent.__init__ = with_cloudwatch_id

    if a.page_bytes > 0:
        original = models.LogGroup.filter_log_events

        def capped(self, log_group_name, *args, **kwargs):
            events, token, searched = original(self, log_group_name, *args, **kwargs)
            size = 0
            for i, e in enumerate(events):
                size += len(e["message"].encode()) + 26
                if size > a.page_bytes and i > 0:
                    last = events[i - 1]
                    token = f"{log_group_name}@{last['logStreamName']}@{last['eventId']}"
                    return events[:i], token, searched
            return events, token, searched

        models.LogGroup.filter_log_events = capped
    sys.exit(moto_main(["-H", a.host, "-p", str(a.port)]))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("fixture")
    s.add_argument("--out", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--groups", type=int, required=True)
    s.add_argument("--events", type=int, default=0)
    s.add_argument("--span", type=int, default=3600, help="seconds (backfill data)")
    s.add_argument("--rate", type=int, help="events/s (live data)")
    s.add_argument("--seconds", type=int, default=0, help="duration (live data)")
    s.add_argument("--streams", type=int, default=2, help="streams per group (backfill data)")
    s.set_defaults(func=cmd_fixture)

    s = sub.add_parser("sparse-fixture")
    s.add_argument("--out", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--groups", type=int, required=True)
    s.add_argument("--streams", type=int, default=4)
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--span", type=int, required=True, help="seconds")
    s.add_argument("--bursts", type=int, default=2)
    s.add_argument("--burst-secs", type=int, default=600)
    s.add_argument("--burst-share", type=float, default=0.5, help="share of the events in bursts")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_sparse_fixture)

    s = sub.add_parser("create-groups")
    s.add_argument("--prefix", required=True)
    s.add_argument("--groups", type=int, required=True)
    s.add_argument("--streams", type=int, default=1)
    s.set_defaults(func=cmd_create_groups)

    s = sub.add_parser("groups-fixture")
    s.add_argument("--out", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--groups", type=int, required=True)
    s.set_defaults(func=cmd_groups_fixture)

    s = sub.add_parser("receiver")
    s.add_argument("--port", type=int, required=True)
    s.set_defaults(func=cmd_receiver)

    s = sub.add_parser("supervise")
    s.add_argument("--out", required=True)
    s.add_argument("--samples")
    s.add_argument("--interval", type=float, default=1.0)
    s.add_argument("--stdout")
    s.add_argument("--stderr")
    s.add_argument("--pidfile", help="where to write the child's pid")
    s.add_argument("--timeout", type=float, help="seconds; then SIGTERM (SIGKILL 10 s later)")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_supervise)

    s = sub.add_parser("cpu")
    s.add_argument("pid", type=int)
    s.set_defaults(func=cmd_cpu)

    s = sub.add_parser("calibrate")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("moto")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--page-bytes", type=int, default=1_048_576,
                   help="cut FilterLogEvents pages at this many bytes, as CloudWatch does (0: moto's pages)")
    s.add_argument("--moto-ids", dest="cloudwatch_ids", action="store_false",
                   help="keep moto's short eventIds instead of CloudWatch's 56-digit ones")
    s.set_defaults(func=cmd_moto)

    s = sub.add_parser("freeport")
    s.set_defaults(func=cmd_freeport)

    s = sub.add_parser("scrape")
    s.add_argument("url")
    s.set_defaults(func=cmd_scrape)

    s = sub.add_parser("delivery")
    s.add_argument("records")
    s.add_argument("--expected", type=int, required=True)
    s.add_argument("--since-ms", type=float)
    s.add_argument("--until-ms", type=float)
    s.set_defaults(func=cmd_delivery)

    s = sub.add_parser("ndjson-count")
    s.add_argument("path")
    s.set_defaults(func=cmd_ndjson_count)

    s = sub.add_parser("ndjson-delivery")
    s.add_argument("path")
    s.add_argument("--expected", type=int, required=True)
    s.set_defaults(func=cmd_ndjson_delivery)

    s = sub.add_parser("recording")
    s.add_argument("path")
    s.add_argument("--by-group", action="store_true")
    s.set_defaults(func=cmd_recording)

    s = sub.add_parser("calls-summary")
    s.add_argument("recording", help="the JSON of `recording --by-group`")
    s.add_argument("--per-group", help="the JSON of `sparse-fixture` (events per group)")
    s.set_defaults(func=cmd_calls_summary)

    s = sub.add_parser("windows")
    s.add_argument("log")
    s.add_argument("--since-ms", type=float, required=True)
    s.add_argument("--until-ms", type=float, required=True)
    s.set_defaults(func=cmd_windows)

    s = sub.add_parser("journal-left")
    s.add_argument("state", help="the state file the run wrote")
    s.set_defaults(func=cmd_journal_left)

    s = sub.add_parser("wal-frames")
    s.add_argument("strace", help="strace -f -xx -s 24 -e trace=pwrite64 log of the run")
    s.add_argument("state", help="the state file the run wrote")
    s.set_defaults(func=cmd_wal_frames)

    s = sub.add_parser("rss")
    s.add_argument("samples")
    s.add_argument("--since-ms", type=float, required=True)
    s.add_argument("--until-ms", type=float, required=True)
    s.set_defaults(func=cmd_rss)

    a = p.parse_args()
    if a.command == "supervise" and a.cmd and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    a.func(a)


if __name__ == "__main__":
    main()
