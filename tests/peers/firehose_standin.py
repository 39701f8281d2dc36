#!/usr/bin/env python3
"""Amazon Data Firehose stand-in for cwtap's integration tests.

Reads CloudWatch Logs subscription records from a Kinesis data stream (moto),
buffers them into Firehose HTTP endpoint delivery requests and POSTs them to
one or more target URLs, following the "HTTP endpoint delivery request and
response specifications" of the Amazon Data Firehose developer guide:

* headers X-Amz-Firehose-Protocol-Version: 1.0, X-Amz-Firehose-Request-Id (a
  UUID, the same on every attempt of one request), X-Amz-Firehose-Source-Arn,
  X-Amz-Firehose-Access-Key (when configured, verbatim, <= 4096 bytes),
  X-Amz-Firehose-Common-Attributes (JSON {"commonAttributes": {...}}, when
  configured), Content-Type: application/json, Content-Encoding: gzip when
  compression is on (absent otherwise);
* body {"requestId", "timestamp" (ms), "records": [{"data": base64}]}, the
  same bytes on every attempt;
* success is only status 200 with Content-Type application/json, no
  Content-Encoding, a Content-Length, a body of at most 1 MiB that is a JSON
  object whose requestId equals the request's and whose timestamp is an
  integer. Anything else (other 2xx, 3xx, 4xx, 5xx, a malformed answer, a
  connection error, no answer within the request timeout) is a failure and is
  retried with the same request id and body, with exponential back-off
  (initial 1 s, x2, jitter 15 %, cap 120 s by default) for as long as the
  retry duration allows; 413 is a permanent failure (not retried).

Subcommands (see README.md beside this file, or --help):

  run    the Kinesis -> HTTP pipeline (the default when the first argument is
         an option)
  send   POST one hand-made request body (a file) with Firehose headers
  build  write a request body from CloudWatch Logs payloads, optionally with
         malformed or CONTROL_MESSAGE records, for `send`

Only loopback addresses are accepted for every URL (targets and Kinesis).
Standard library plus boto3 (for `run`).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import ipaddress
import json
import os
import queue
import random
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

PROTOCOL_VERSION = "1.0"
MAX_ACCESS_KEY_BYTES = 4096
MAX_RECORDS_PER_REQUEST = 10_000
MAX_RECORD_DATA_BYTES = 1_024_000
MAX_RESPONSE_BODY_BYTES = 1 << 20
DEFAULT_SOURCE_ARN = "arn:aws:firehose:us-east-1:123456789012:deliverystream/cwtap-standin"
ID_DIGITS = 56  # AWS CloudWatch Logs event ids are 56-digit strings

BAD_KINDS = ("base64", "gzip", "json", "schema", "control", "empty", "bomb")


# ------------------------------------------------------------------ helpers


def now_ms() -> int:
    return int(time.time() * 1000)


def check_loopback(url: str) -> None:
    """Raises ValueError unless `url` is http(s) to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url}: only http:// and https:// URLs are supported")
    host = parts.hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"{url}: only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed")


class JsonLog:
    """Thread-safe JSON-lines writer (a no-op without a path)."""

    def __init__(self, path: Optional[str], echo: bool = False):
        self._f = open(path, "a", encoding="utf-8") if path else None
        self._echo = echo
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "ts": now_ms(), **fields}, separators=(",", ":"))
        with self._lock:
            if self._f:
                self._f.write(line + "\n")
                self._f.flush()
            if self._echo:
                print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            if self._f:
                self._f.close()
                self._f = None


def write_ready_file(path: str, info: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.replace(tmp, path)


# ------------------------------------------------------------------ records


def gzip_bytes(raw: bytes) -> bytes:
    """gzip with mtime 0, so the same input always gives the same bytes."""
    return gzip.compress(raw, mtime=0)


def encode_cwl_payload(payload: dict) -> bytes:
    """A CloudWatch Logs subscription payload as the gzip bytes AWS sends."""
    return gzip_bytes(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def control_payload(ts: Optional[int] = None) -> dict:
    """A CONTROL_MESSAGE record, shaped like the ones CloudWatch Logs sends to
    check that a destination is reachable."""
    return {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [
            {
                "id": "",
                "timestamp": now_ms() if ts is None else ts,
                "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose.",
            }
        ],
    }


def bad_record_data(kind: str) -> str:
    """The `data` field (already base64 text, or not) of a malformed record."""
    if kind == "base64":
        return "%%% this is not base64 %%%"
    if kind == "gzip":
        return base64.b64encode(b"this is not gzip data").decode()
    if kind == "json":
        return base64.b64encode(gzip_bytes(b'{"messageType": "DATA_MESSAGE", not json')).decode()
    if kind == "schema":
        # Valid gzip JSON, but not a subscription payload: no logEvents.
        return base64.b64encode(
            encode_cwl_payload({"messageType": "DATA_MESSAGE", "owner": "123456789012"})
        ).decode()
    if kind == "control":
        return base64.b64encode(encode_cwl_payload(control_payload())).decode()
    if kind == "empty":
        return ""  # Firehose permits empty records
    if kind == "bomb":
        # 20 MiB of spaces before a valid payload: ~20 kB of gzip that
        # inflates past what any CloudWatch Logs record holds.
        payload = json.dumps(control_payload()).encode()
        return base64.b64encode(gzip_bytes(b" " * (20 << 20) + payload)).decode()
    raise ValueError(f"unknown bad-record kind {kind!r} (one of {', '.join(BAD_KINDS)})")


def _shard_number(shard_id: str) -> int:
    digits = "".join(c for c in shard_id if c.isdigit())
    return int(digits) if digits else 0


def unique_event_id(shard_id: str, seq: str, index: int, ts: int, tag: int = 0) -> str:
    """A 56-digit event id, deterministic in (tag, shard, sequence number,
    index), so the same Kinesis record always gets the same ids.

    Layout: timestamp ms (19) | tag (3) | shard number (4) | sequence (24) |
    index in the record (6).
    """
    if seq.isdigit() and len(seq) <= 24:
        seq_part = int(seq)
    else:
        seq_part = int(hashlib.sha256(seq.encode()).hexdigest(), 16) % 10**24
    ts_part = abs(int(ts)) % 10**19
    out = (
        f"{ts_part:019d}{tag % 1000:03d}{_shard_number(shard_id) % 10**4:04d}"
        f"{seq_part:024d}{index % 10**6:06d}"
    )
    assert len(out) == ID_DIGITS
    return out


@dataclass
class Record:
    """One Kinesis record, as it will be delivered (data = raw bytes)."""

    shard: str
    seq: str
    data: bytes
    info: dict = field(default_factory=dict)


def transform_record(shard: str, seq: str, raw: bytes, ids: str, tag: int) -> tuple[bytes, dict]:
    """Applies the --ids mode to one record. Returns (data, info for the log).

    Records that are not gzip JSON subscription payloads, and CONTROL_MESSAGE
    records, are passed through unchanged.
    """
    info: dict = {"shard": shard, "seq": seq}
    try:
        payload = json.loads(gzip.decompress(raw))
    except Exception as e:  # not a CloudWatch Logs payload: pass through
        info.update(decode_error=str(e)[:200])
        return raw, info
    if not isinstance(payload, dict):
        info.update(decode_error="payload is not a JSON object")
        return raw, info
    events = payload.get("logEvents") if isinstance(payload.get("logEvents"), list) else []
    info.update(
        message_type=payload.get("messageType"),
        log_group=payload.get("logGroup"),
        log_stream=payload.get("logStream"),
        events=len(events),
    )
    if ids == "keep" or payload.get("messageType") != "DATA_MESSAGE":
        info["ids"] = [e.get("id") for e in events if isinstance(e, dict)]
        return raw, info
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            continue
        if ids == "string":
            e["id"] = str(e.get("id"))
        else:
            e["id"] = unique_event_id(shard, seq, i, e.get("timestamp") or 0, tag)
    info["ids"] = [e.get("id") for e in events if isinstance(e, dict)]
    return encode_cwl_payload(payload), info


# ------------------------------------------------------------------ requests


def build_body(records_b64: list[str], request_id: Optional[str] = None,
               timestamp: Optional[int] = None) -> dict:
    return {
        "requestId": request_id or str(uuid.uuid4()),
        "timestamp": now_ms() if timestamp is None else timestamp,
        "records": [{"data": d} for d in records_b64],
    }


def firehose_headers(request_id: str, *, access_key: Optional[str], source_arn: str,
                     common_attributes: Optional[dict], gzip_on: bool) -> dict:
    h = {
        "X-Amz-Firehose-Protocol-Version": PROTOCOL_VERSION,
        "X-Amz-Firehose-Request-Id": request_id,
        "X-Amz-Firehose-Source-Arn": source_arn,
        "Content-Type": "application/json",
        "User-Agent": "Amazon Kinesis Data Firehose Agent/1.0 (cwtap test stand-in)",
    }
    if access_key is not None:
        if len(access_key.encode()) > MAX_ACCESS_KEY_BYTES:
            raise ValueError(f"access key longer than {MAX_ACCESS_KEY_BYTES} bytes")
        h["X-Amz-Firehose-Access-Key"] = access_key
    if common_attributes is not None:
        h["X-Amz-Firehose-Common-Attributes"] = json.dumps(
            {"commonAttributes": common_attributes}, separators=(",", ":"))
    if gzip_on:
        h["Content-Encoding"] = "gzip"
    return h


@dataclass
class AttemptResult:
    ok: bool
    status: int  # 0 when no HTTP answer
    error: Optional[str]
    elapsed_ms: int
    response: Optional[Any] = None


def validate_response(status: int, headers: dict, body: bytes, request_id: str) -> Optional[str]:
    """None if this is a successful Firehose answer, else why not."""
    if status != 200:
        return f"status {status}"
    ctype = headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        return f"content-type {ctype!r} is not application/json"
    enc = headers.get("content-encoding")
    if enc and enc.strip().lower() != "identity":
        return f"response has Content-Encoding {enc!r}"
    if body and "content-length" not in headers:
        return "response has a body but no Content-Length"
    if len(body) > MAX_RESPONSE_BODY_BYTES:
        return "response body over 1 MiB"
    try:
        doc = json.loads(body)
    except Exception:
        return "response body is not JSON"
    if not isinstance(doc, dict):
        return "response body is not a JSON object"
    if doc.get("requestId") != request_id:
        return f"response requestId {doc.get('requestId')!r} does not match"
    ts = doc.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool):
        return "response timestamp missing or not an integer"
    return None


def post_once(url: str, payload: bytes, headers: dict, request_id: str, timeout: float,
              ssl_context: Optional[ssl.SSLContext] = None) -> AttemptResult:
    """One POST attempt with a hard overall deadline of `timeout` seconds."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    start = time.monotonic()
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=timeout,
            context=ssl_context or ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    box: dict = {}

    def work() -> None:
        try:
            conn.request("POST", path, body=payload, headers=headers)
            resp = conn.getresponse()
            body = resp.read(MAX_RESPONSE_BODY_BYTES + 1)
            box["resp"] = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        except Exception as e:  # connection refused, reset, socket timeout...
            box["err"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():  # the overall deadline passed: cut the connection
        try:
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        t.join(2)
        elapsed = int((time.monotonic() - start) * 1000)
        return AttemptResult(False, 0, f"timeout after {timeout} s", elapsed)
    conn.close()
    elapsed = int((time.monotonic() - start) * 1000)
    if "err" in box:
        return AttemptResult(False, 0, box["err"], elapsed)
    status, rheaders, body = box["resp"]
    problem = validate_response(status, rheaders, body, request_id)
    try:
        parsed: Any = json.loads(body) if body else None
    except Exception:
        parsed = body[:500].decode("utf-8", "replace")
    return AttemptResult(problem is None, status, problem, elapsed, parsed)


@dataclass
class RetryPolicy:
    retry_duration: float = 300.0
    timeout: float = 180.0
    backoff_initial: float = 1.0
    backoff_max: float = 120.0
    backoff_jitter: float = 0.15
    retry_same_url: bool = False

    def backoff(self, retry_number: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2 ** retry_number))
        if self.backoff_jitter:
            base *= random.uniform(1 - self.backoff_jitter, 1 + self.backoff_jitter)
        return max(0.0, base)


class UrlRing:
    """Round-robin over target URLs, as a load balancer in front of N nodes."""

    def __init__(self, urls: list[str]):
        self.urls = list(urls)
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            u = self.urls[self._next % len(self.urls)]
            self._next += 1
            return u


def deliver(payload: bytes, headers: dict, request_id: str, ring: UrlRing, policy: RetryPolicy,
            log: JsonLog, *, request_no: int, records: int, stop: threading.Event,
            deadline: float, ssl_context: Optional[ssl.SSLContext] = None,
            extra: Optional[dict] = None) -> tuple[str, int, Optional[str]]:
    """Sends one request until it succeeds, fails permanently, or the retry
    duration / overall deadline passes. Returns (outcome, attempts, last_error)
    with outcome in delivered | permanent_failure | gave_up | aborted."""
    first = time.monotonic()
    attempt = 0
    url = ring.take()
    last_error: Optional[str] = None
    while True:
        attempt += 1
        if attempt > 1 and not policy.retry_same_url:
            url = ring.take()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stop.is_set():
            return "aborted", attempt - 1, last_error or "stopped"
        timeout = min(policy.timeout, remaining)
        res = post_once(url, payload, headers, request_id, timeout, ssl_context)
        last_error = res.error
        log.write("attempt", request_id=request_id, request_no=request_no, attempt=attempt,
                  url=url, status=res.status, ok=res.ok, error=res.error, records=records,
                  bytes=len(payload), elapsed_ms=res.elapsed_ms, response=res.response,
                  **(extra or {}))
        if res.ok:
            return "delivered", attempt, None
        if res.status == 413:
            return "permanent_failure", attempt, res.error
        delay = policy.backoff(attempt - 1)
        since_first = time.monotonic() - first
        if since_first + delay >= policy.retry_duration:
            return "gave_up", attempt, last_error
        if time.monotonic() + delay >= deadline:
            return "aborted", attempt, last_error
        if stop.wait(delay):
            return "aborted", attempt, last_error


# ------------------------------------------------------------------ kinesis


class KinesisReader(threading.Thread):
    """Polls every shard of one stream; puts Records on `out`."""

    def __init__(self, client: Any, stream: str, start_at: str, checkpoint: dict,
                 out: "queue.Queue[Record]", poll: float, stop: threading.Event, log: JsonLog,
                 transform: Callable[[str, str, bytes], tuple[bytes, dict]], log_records: bool):
        super().__init__(daemon=True, name="kinesis-reader")
        self.client, self.stream, self.start_at = client, stream, start_at
        self.checkpoint = dict(checkpoint)
        self.out, self.poll, self.stop, self.log = out, poll, stop, log
        self.transform, self.log_records = transform, log_records
        self.ready = threading.Event()
        self.last_new = time.monotonic()
        self.records_read = 0
        self._busy = threading.Event()  # set while a GetRecords batch is handed over
        self._shards: dict[str, dict] = {}
        self._last_error = ""

    def shard_ids(self) -> list[str]:
        return sorted(list(self._shards))

    def busy(self) -> bool:
        return self._busy.is_set()

    def _err(self, what: str, e: Exception) -> None:
        msg = f"{what}: {type(e).__name__}: {e}"[:500]
        if msg != self._last_error:  # do not flood the log with one error
            self.log.write("kinesis_error", error=msg)
            self._last_error = msg

    def _iterator(self, shard: str, after: Optional[str]) -> Optional[str]:
        kw: dict = {"StreamName": self.stream, "ShardId": shard}
        if after is not None:
            kw.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif self.start_at == "latest":
            kw.update(ShardIteratorType="LATEST")
        else:
            kw.update(ShardIteratorType="TRIM_HORIZON")
        return self.client.get_shard_iterator(**kw)["ShardIterator"]

    def _list_shards(self) -> None:
        ids: list[str] = []
        kw: dict = {"StreamName": self.stream}
        while True:
            page = self.client.list_shards(**kw)
            ids += [s["ShardId"] for s in page.get("Shards", [])]
            token = page.get("NextToken")
            if not token:
                break
            kw = {"NextToken": token}
        for sid in ids:
            if sid not in self._shards:
                after = self.checkpoint.get(sid)
                self._shards[sid] = {"iter": self._iterator(sid, after), "last": after}
                self.log.write("shard", shard=sid, start="AFTER_SEQUENCE_NUMBER" if after
                               else self.start_at.upper(), after=after)
        if not self.ready.is_set():
            self.ready.set()

    def run(self) -> None:
        last_list = -1e9
        while not self.stop.is_set():
            try:
                if time.monotonic() - last_list > 5.0 or not self._shards:
                    self._list_shards()
                    last_list = time.monotonic()
            except Exception as e:
                self._err("ListShards", e)
                self.stop.wait(0.5)
                continue
            for sid, st in list(self._shards.items()):
                if self.stop.is_set():
                    break
                try:
                    if st["iter"] is None:
                        if st.get("closed"):
                            continue
                        st["iter"] = self._iterator(sid, st["last"])
                    self._busy.set()
                    resp = self.client.get_records(ShardIterator=st["iter"], Limit=1000)
                    for r in resp.get("Records", []):
                        seq = r["SequenceNumber"]
                        data, info = self.transform(sid, seq, r["Data"])
                        info["partition_key"] = r.get("PartitionKey")
                        info["bytes"] = len(data)
                        if len(data) > MAX_RECORD_DATA_BYTES:
                            info["oversize"] = True
                        self.out.put(Record(sid, seq, data, info))
                        if self.log_records:
                            self.log.write("record", **info)
                        st["last"] = seq
                        self.records_read += 1
                        self.last_new = time.monotonic()
                    nxt = resp.get("NextShardIterator")
                    if nxt is None:
                        st["closed"] = True
                    st["iter"] = nxt
                except Exception as e:
                    self._err(f"GetRecords {sid}", e)
                    st["iter"] = None  # re-acquire AFTER_SEQUENCE_NUMBER the last seen
                finally:
                    self._busy.clear()
            self.stop.wait(self.poll)


# ------------------------------------------------------------------ run


def parse_injections(specs: list[str]) -> dict[int, list[tuple[int, str]]]:
    """KIND:REQ[:IDX] -> {REQ: [(IDX, KIND)]}; REQ counts delivery requests
    from 1; IDX (default 0) is the record position, clamped to the end."""
    out: dict[int, list[tuple[int, str]]] = {}
    for s in specs or []:
        parts = s.split(":")
        if len(parts) not in (2, 3) or parts[0] not in BAD_KINDS:
            raise ValueError(f"--inject {s!r}: want KIND:REQ[:IDX], KIND one of {', '.join(BAD_KINDS)}")
        req, idx = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        out.setdefault(req, []).append((idx, parts[0]))
    return out


def parse_common_attributes(items: list[str], as_json: Optional[str]) -> Optional[dict]:
    if as_json is not None:
        doc = json.loads(as_json)
        return doc.get("commonAttributes", doc) if isinstance(doc, dict) else doc
    if not items:
        return None
    attrs = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise ValueError(f"--common-attribute {it!r}: want KEY=VALUE")
        attrs[k] = v
    return attrs


def make_ssl_context(args: argparse.Namespace) -> Optional[ssl.SSLContext]:
    if getattr(args, "insecure", False):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if getattr(args, "ca_file", None):
        return ssl.create_default_context(cafile=args.ca_file)
    return None


def load_checkpoint(path: Optional[str]) -> dict:
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def save_checkpoint(path: Optional[str], cp: dict) -> None:
    if path:
        write_ready_file(path, cp)


def cmd_run(args: argparse.Namespace) -> int:
    import boto3  # only `run` needs it
    from botocore.config import Config

    for u in args.url + [args.kinesis_endpoint]:
        check_loopback(u)
    if args.max_records < 1 or args.max_records > MAX_RECORDS_PER_REQUEST:
        raise ValueError(f"--max-records must be 1..{MAX_RECORDS_PER_REQUEST}")
    injections = parse_injections(args.inject)
    common = parse_common_attributes(args.common_attribute, args.common_attributes_json)
    ssl_ctx = make_ssl_context(args)
    ids_mode = "unique" if args.unique_ids else args.ids
    log = JsonLog(args.log, echo=args.verbose)
    backup = JsonLog(args.backup) if args.backup else None
    policy = RetryPolicy(args.retry_duration, args.timeout, args.backoff_initial,
                         args.backoff_max, args.backoff_jitter, args.retry_same_url)
    ring = UrlRing(args.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    deadline = started + args.max_runtime

    client = boto3.client(
        "kinesis", endpoint_url=args.kinesis_endpoint, region_name=args.region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}))
    checkpoint = load_checkpoint(args.checkpoint)
    q: "queue.Queue[Record]" = queue.Queue()
    reader = KinesisReader(
        client, args.stream, args.start, checkpoint, q, args.poll_interval, stop, log,
        lambda sid, seq, raw: transform_record(sid, seq, raw, ids_mode, args.id_tag),
        not args.no_record_log)
    log.write("start", pid=os.getpid(), urls=args.url, stream=args.stream, ids=ids_mode,
              gzip=args.gzip, max_records=args.max_records, max_bytes=args.max_bytes,
              interval=args.interval, retry_duration=args.retry_duration, timeout=args.timeout,
              source_arn=args.source_arn, access_key_set=args.access_key is not None,
              common_attributes=common, injections={str(k): v for k, v in injections.items()})
    reader.start()
    ready_written = not args.ready_file

    buffer: list[Record] = []
    buffer_bytes = 0
    first_buffered = 0.0
    request_no = 0
    totals = {"requests": 0, "delivered_requests": 0, "delivered_records": 0,
              "failed_requests": 0, "failed_records": 0, "attempts": 0}
    reason = "?"
    while True:
        if stop.is_set():
            reason = "signal"
            break
        if time.monotonic() >= deadline:
            reason = "max_runtime"
            break
        if not ready_written and reader.ready.is_set():
            write_ready_file(args.ready_file, {"pid": os.getpid(), "stream": args.stream,
                                               "shards": reader.shard_ids()})
            ready_written = True
        try:
            while True:
                r = q.get_nowait()
                if not buffer:
                    first_buffered = time.monotonic()
                buffer.append(r)
                buffer_bytes += len(r.data)
        except queue.Empty:
            pass
        full = len(buffer) >= args.max_records or buffer_bytes >= args.max_bytes
        due = bool(buffer) and time.monotonic() - first_buffered >= args.interval
        if full or due:
            batch: list[Record] = []
            size = 0
            while buffer and len(batch) < args.max_records and (
                    not batch or size + len(buffer[0].data) <= args.max_bytes):
                rec = buffer.pop(0)
                batch.append(rec)
                size += len(rec.data)
            buffer_bytes -= size
            if buffer:
                first_buffered = time.monotonic()
            request_no += 1
            datas = [base64.b64encode(r.data).decode() for r in batch]
            injected = []
            for idx, kind in sorted(injections.get(request_no, [])):
                pos = min(max(idx, 0), len(datas))
                datas.insert(pos, bad_record_data(kind))
                injected.append({"kind": kind, "index": pos})
            body = build_body(datas)
            rid = body["requestId"]
            raw = json.dumps(body, separators=(",", ":")).encode()
            payload = gzip_bytes(raw) if args.gzip else raw
            headers = firehose_headers(rid, access_key=args.access_key, source_arn=args.source_arn,
                                       common_attributes=common, gzip_on=args.gzip)
            extra = {"injected": injected} if injected else {}
            outcome, attempts, err = deliver(
                payload, headers, rid, ring, policy, log, request_no=request_no,
                records=len(datas), stop=stop, deadline=deadline, ssl_context=ssl_ctx, extra=extra)
            kin = [[r.shard, r.seq] for r in batch]
            log.write(outcome, request_id=rid, request_no=request_no, attempts=attempts,
                      records=len(datas), kinesis_records=len(batch), error=err, kinesis=kin,
                      **extra)
            totals["requests"] += 1
            totals["attempts"] += attempts
            if outcome == "delivered":
                totals["delivered_requests"] += 1
                totals["delivered_records"] += len(batch)
            else:
                totals["failed_requests"] += 1
                totals["failed_records"] += len(batch)
                if backup is not None and outcome != "aborted":
                    backup.write("backup", request_id=rid, reason=outcome, error=err,
                                 records=[{"shard": r.shard, "seq": r.seq,
                                           "data": base64.b64encode(r.data).decode()}
                                          for r in batch])
            if outcome == "aborted":
                buffer = batch + buffer  # not delivered: still pending at exit
                buffer_bytes += size
                continue
            # Firehose moves on after a delivery or a backup: checkpoint.
            for r in batch:
                checkpoint[r.shard] = r.seq
            save_checkpoint(args.checkpoint, checkpoint)
            continue
        idle_for = time.monotonic() - max(reader.last_new, started)
        if (args.stop_after_idle is not None and not buffer and q.empty() and not reader.busy()
                and idle_for >= args.stop_after_idle):
            reason = "idle"
            break
        time.sleep(0.02)

    stop.set()
    reader.join(5)
    pending = len(buffer) + q.qsize()
    log.write("stop", reason=reason, pending_records=pending, records_read=reader.records_read,
              runtime_s=round(time.monotonic() - started, 3), **totals)
    log.close()
    if backup is not None:
        backup.close()
    if reason == "max_runtime" or pending:
        return 1
    return 0


# ------------------------------------------------------------------ send / build


def cmd_send(args: argparse.Namespace) -> int:
    for u in args.url:
        check_loopback(u)
    with open(args.file, "rb") as f:
        raw = f.read()
    request_id = args.request_id
    if request_id is None:
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict) and isinstance(doc.get("requestId"), str):
                request_id = doc["requestId"]
        except Exception:
            pass
    request_id = request_id or str(uuid.uuid4())
    common = parse_common_attributes(args.common_attribute, args.common_attributes_json)
    headers = firehose_headers(request_id, access_key=args.access_key, source_arn=args.source_arn,
                               common_attributes=common, gzip_on=args.gzip)
    for h in args.header or []:
        k, sep, v = h.partition(":")
        if not sep:
            raise ValueError(f"--header {h!r}: want 'Name: value'")
        for existing in [x for x in headers if x.lower() == k.strip().lower()]:
            del headers[existing]
        headers[k.strip()] = v.strip()
    for name in args.omit_header or []:
        for existing in [x for x in headers if x.lower() == name.lower()]:
            del headers[existing]
    payload = gzip_bytes(raw) if args.gzip else raw
    log = JsonLog(args.log)
    policy = RetryPolicy(args.retry_duration, args.timeout, args.backoff_initial,
                         args.backoff_max, args.backoff_jitter, args.retry_same_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        n = len(json.loads(raw).get("records", []))
    except Exception:
        n = -1
    outcome, attempts, err = deliver(
        payload, headers, request_id, UrlRing(args.url), policy, log, request_no=1, records=n,
        stop=stop, deadline=time.monotonic() + args.max_runtime, ssl_context=make_ssl_context(args))
    result = {"event": outcome, "request_id": request_id, "attempts": attempts, "error": err}
    log.write(outcome, request_id=request_id, attempts=attempts, error=err, records=n)
    log.close()
    print(json.dumps(result), flush=True)
    return 0 if outcome == "delivered" else 1


def _load_payloads(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def cmd_build(args: argparse.Namespace) -> int:
    datas: list[str] = []
    for p in args.payload or []:
        for payload in _load_payloads(p):
            datas.append(base64.b64encode(encode_cwl_payload(payload)).decode())
    datas += list(args.raw_data or [])
    for spec in args.bad or []:
        kind, _, idx = spec.partition(":")
        pos = min(max(int(idx or len(datas)), 0), len(datas))
        datas.insert(pos, bad_record_data(kind))
    body = build_body(datas, args.request_id, args.timestamp)
    text = json.dumps(body, separators=(",", ":"))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)
    return 0


# ------------------------------------------------------------------ CLI


def _delivery_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", action="append", required=True,
                   help="target URL; repeat for round-robin over several (a load balancer)")
    p.add_argument("--access-key", help="X-Amz-Firehose-Access-Key value (verbatim)")
    p.add_argument("--source-arn", default=DEFAULT_SOURCE_ARN, help="X-Amz-Firehose-Source-Arn")
    p.add_argument("--common-attribute", action="append", default=[], metavar="KEY=VALUE",
                   help="adds X-Amz-Firehose-Common-Attributes (repeatable)")
    p.add_argument("--common-attributes-json", metavar="JSON",
                   help="the commonAttributes object as JSON (instead of --common-attribute)")
    p.add_argument("--gzip", action="store_true", help="gzip the body (Content-Encoding: gzip)")
    p.add_argument("--timeout", type=float, default=180.0,
                   help="seconds to wait for each answer (default 180, Firehose's 3 minutes)")
    p.add_argument("--retry-duration", type=float, default=300.0,
                   help="seconds after the first attempt during which retries may start "
                        "(default 300; 0 = one attempt)")
    p.add_argument("--backoff-initial", type=float, default=1.0)
    p.add_argument("--backoff-max", type=float, default=120.0)
    p.add_argument("--backoff-jitter", type=float, default=0.15, help="fraction, e.g. 0.15")
    p.add_argument("--retry-same-url", action="store_true",
                   help="retries go to the request's first URL (default: the next URL)")
    p.add_argument("--ca-file", help="CA bundle to verify an https target")
    p.add_argument("--insecure", action="store_true", help="do not verify an https target")
    p.add_argument("--log", help="JSON-lines log of what was done")
    p.add_argument("--max-runtime", type=float, default=600.0,
                   help="hard stop after this many seconds (default 600)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="firehose_standin.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")

    run = sub.add_parser("run", help="Kinesis (moto) -> Firehose HTTP endpoint delivery")
    _delivery_options(run)
    run.add_argument("--kinesis-endpoint", required=True, help="moto's URL, e.g. http://127.0.0.1:5000")
    run.add_argument("--stream", required=True, help="Kinesis stream name")
    run.add_argument("--region", default="us-east-1")
    run.add_argument("--start", choices=("trim_horizon", "latest"), default="trim_horizon")
    run.add_argument("--checkpoint", help="JSON file of the last sequence number per shard "
                     "handled; read at start (AFTER_SEQUENCE_NUMBER), written after each request")
    run.add_argument("--poll-interval", type=float, default=0.2, help="seconds between GetRecords rounds")
    run.add_argument("--max-records", type=int, default=500, help="records per request (buffering hint, <= 10000)")
    run.add_argument("--max-bytes", type=int, default=1 << 20,
                     help="record bytes per request, before base64 (buffering hint; default 1 MiB)")
    run.add_argument("--interval", type=float, default=1.0,
                     help="seconds a record may wait in the buffer (buffering hint; default 1)")
    run.add_argument("--ids", choices=("keep", "string", "unique"), default="keep",
                     help="logEvent ids: keep moto's (JSON numbers); string = the same as digit "
                          "strings (equal to moto's FilterLogEvents eventId); unique = 56-digit "
                          "strings derived from shard, sequence number and index")
    run.add_argument("--unique-ids", action="store_true", help="same as --ids unique")
    run.add_argument("--id-tag", type=int, default=0,
                     help="0..999, mixed into unique ids (give each stand-in reading another stream its own)")
    run.add_argument("--inject", "--inject-bad", action="append", default=[], metavar="KIND:REQ[:IDX]",
                     help=f"insert one extra record of KIND ({', '.join(BAD_KINDS)}) at index IDX "
                          "of the REQ-th request (1-based); repeatable")
    run.add_argument("--backup", help="JSON-lines file for records given up on (Firehose's S3 backup)")
    run.add_argument("--stop-after-idle", type=float, default=None, metavar="SECS",
                     help="stop when no new Kinesis record came for SECS and nothing is pending")
    run.add_argument("--ready-file", help="written (JSON) once the stream's shards are listed")
    run.add_argument("--no-record-log", action="store_true", help="do not log each Kinesis record")
    run.add_argument("--verbose", action="store_true", help="echo the log to stderr")

    send = sub.add_parser("send", help="POST one crafted request body with Firehose headers")
    _delivery_options(send)
    send.add_argument("--file", required=True, help="the JSON body to send (verbatim bytes)")
    send.add_argument("--request-id", help="header request id (default: the body's requestId)")
    send.add_argument("--header", action="append", metavar="'Name: value'",
                      help="add or replace a header (repeatable)")
    send.add_argument("--omit-header", action="append", metavar="NAME", help="drop a header (repeatable)")
    send.set_defaults(retry_duration=0.0, timeout=30.0, max_runtime=300.0)

    build = sub.add_parser("build", help="write a request body for `send`")
    build.add_argument("--payload", action="append", metavar="FILE",
                       help="CloudWatch Logs payload(s): a JSON object, an array, or JSON lines; "
                            "each becomes one gzip+base64 record")
    build.add_argument("--raw-data", action="append", metavar="TEXT",
                       help="a record `data` string, verbatim (repeatable)")
    build.add_argument("--bad", action="append", metavar="KIND[:IDX]",
                       help=f"insert a record of KIND ({', '.join(BAD_KINDS)}) at IDX (default: the end)")
    build.add_argument("--request-id")
    build.add_argument("--timestamp", type=int)
    build.add_argument("--out", help="output file (default stdout)")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            return cmd_run(args)
        if args.cmd == "send":
            return cmd_send(args)
        if args.cmd == "build":
            return cmd_build(args)
    except ValueError as e:
        print(f"firehose_standin: {e}", file=sys.stderr)
        return 2
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
