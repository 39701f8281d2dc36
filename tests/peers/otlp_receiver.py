#!/usr/bin/env python3
"""OTLP/HTTP receiver for cwtap's integration tests.

Decodes every request with the official protobuf definitions (PyPI
`opentelemetry-proto`), as a backend or the OpenTelemetry Collector would, and
writes what it decoded as JSON lines. Faults can be scripted at start (flags)
or while it runs (POST /control).

Routes (127.0.0.1 only):
  POST /v1/logs     ExportLogsServiceRequest  -> ExportLogsServiceResponse
  POST /v1/traces   ExportTraceServiceRequest -> ExportTraceServiceResponse
  POST /control     JSON fault script (one object or a list; see README.md)
  GET  /health      200 {"status": "ok"}
  GET  /dump        every line recorded so far (JSON lines); ?kind=log|span|request

Requests must be Content-Type application/x-protobuf (415 otherwise);
Content-Encoding gzip (or identity/none) is accepted, anything else is 415.
Error answers carry a google.rpc.Status protobuf body, as OTLP/HTTP specifies.

Stops on SIGTERM/SIGINT, or after --max-runtime seconds.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import signal
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

PROTOBUF = "application/x-protobuf"

# google.rpc.Code values used in Status bodies
RPC_CODE = {400: 3, 404: 5, 413: 8, 415: 3, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}


def now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------ protobuf helpers


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def rpc_status(code: int, message: str) -> bytes:
    """google.rpc.Status{code=1, message=2} encoded by hand (the package does
    not ship google/rpc/status.proto)."""
    msg = message.encode("utf-8")
    out = b""
    if code:
        out += b"\x08" + _varint(code)
    if msg:
        out += b"\x12" + _varint(len(msg)) + msg
    return out


def any_value(v: Any) -> tuple[Any, str]:
    """An AnyValue as (plain JSON value, type name)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None, "empty"
    if kind == "string_value":
        return v.string_value, "string"
    if kind == "bool_value":
        return v.bool_value, "bool"
    if kind == "int_value":
        return v.int_value, "int"
    if kind == "double_value":
        return v.double_value, "double"
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode(), "bytes"
    if kind == "array_value":
        return [any_value(x)[0] for x in v.array_value.values], "array"
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value)[0] for kv in v.kvlist_value.values}, "kvlist"
    return None, kind


def attrs(kvs: Any) -> tuple[dict, dict]:
    """Repeated KeyValue -> ({key: value}, {key: type})."""
    values, types = {}, {}
    for kv in kvs:
        values[kv.key], types[kv.key] = any_value(kv.value)
    return values, types


def body_string(v: Any) -> tuple[Optional[str], str]:
    """A log body as a string: the string itself, else the JSON of the value."""
    value, typ = any_value(v)
    if typ == "string":
        return value, typ
    if typ == "empty":
        return None, typ
    return json.dumps(value, separators=(",", ":"), sort_keys=True), typ


def hexid(b: bytes) -> str:
    return b.hex()


def check_ids(trace_id: bytes, span_id: bytes, what: str) -> Optional[str]:
    """Ids of a wrong length are rejected when unmarshalling by the
    Collector's pdata: the whole request fails with 400."""
    if len(trace_id) not in (0, 16):
        return f"{what}: trace_id is {len(trace_id)} bytes, want 16"
    if len(span_id) not in (0, 8):
        return f"{what}: span_id is {len(span_id)} bytes, want 8"
    return None


def resource_doc(resource: Any, schema_url: str) -> dict:
    a, t = attrs(resource.attributes)
    return {"attributes": a, "attribute_types": t, "schema_url": schema_url,
            "dropped_attributes_count": resource.dropped_attributes_count}


def scope_doc(scope: Any, schema_url: str) -> dict:
    a, t = attrs(scope.attributes)
    return {"name": scope.name, "version": scope.version, "attributes": a,
            "attribute_types": t, "schema_url": schema_url}


def decode_logs(req: ExportLogsServiceRequest) -> tuple[list[dict], Optional[str]]:
    out = []
    for rl in req.resource_logs:
        res = resource_doc(rl.resource, rl.schema_url)
        for sl in rl.scope_logs:
            sc = scope_doc(sl.scope, sl.schema_url)
            for lr in sl.log_records:
                bad = check_ids(lr.trace_id, lr.span_id, "log record")
                if bad:
                    return [], bad
                a, t = attrs(lr.attributes)
                body, btype = body_string(lr.body)
                out.append({
                    "kind": "log",
                    "resource": res,
                    "scope": sc,
                    "time_unix_nano": lr.time_unix_nano,
                    "observed_time_unix_nano": lr.observed_time_unix_nano,
                    "severity_number": int(lr.severity_number),
                    "severity_text": lr.severity_text,
                    "body": body,
                    "body_type": btype,
                    "attributes": a,
                    "attribute_types": t,
                    "dropped_attributes_count": lr.dropped_attributes_count,
                    "flags": lr.flags,
                    "trace_id": hexid(lr.trace_id),
                    "span_id": hexid(lr.span_id),
                    "event_name": lr.event_name,
                })
    return out, None


def decode_traces(req: ExportTraceServiceRequest) -> tuple[list[dict], Optional[str]]:
    out = []
    for rs in req.resource_spans:
        res = resource_doc(rs.resource, rs.schema_url)
        for ss in rs.scope_spans:
            sc = scope_doc(ss.scope, ss.schema_url)
            for sp in ss.spans:
                bad = check_ids(sp.trace_id, sp.span_id, "span") or (
                    f"span: parent_span_id is {len(sp.parent_span_id)} bytes, want 8"
                    if len(sp.parent_span_id) not in (0, 8) else None)
                if bad:
                    return [], bad
                a, t = attrs(sp.attributes)
                events = []
                for ev in sp.events:
                    ea, et = attrs(ev.attributes)
                    events.append({"name": ev.name, "time_unix_nano": ev.time_unix_nano,
                                   "attributes": ea, "attribute_types": et})
                links = []
                for ln in sp.links:
                    la, lt = attrs(ln.attributes)
                    links.append({"trace_id": hexid(ln.trace_id), "span_id": hexid(ln.span_id),
                                  "trace_state": ln.trace_state, "attributes": la,
                                  "attribute_types": lt})
                out.append({
                    "kind": "span",
                    "resource": res,
                    "scope": sc,
                    "trace_id": hexid(sp.trace_id),
                    "span_id": hexid(sp.span_id),
                    "parent_span_id": hexid(sp.parent_span_id),
                    "trace_state": sp.trace_state,
                    "flags": sp.flags,
                    "name": sp.name,
                    "span_kind": int(sp.kind),
                    "span_kind_name": trace_pb2.Span.SpanKind.Name(sp.kind),
                    "start_time_unix_nano": sp.start_time_unix_nano,
                    "end_time_unix_nano": sp.end_time_unix_nano,
                    "attributes": a,
                    "attribute_types": t,
                    "dropped_attributes_count": sp.dropped_attributes_count,
                    "events": events,
                    "links": links,
                    "status": {"code": int(sp.status.code),
                               "code_name": trace_pb2.Status.StatusCode.Name(sp.status.code),
                               "message": sp.status.message},
                })
    return out, None


def marker_text(rec: dict) -> str:
    """The text a marker is looked for in: a log's body, a span's name."""
    return (rec.get("body") or "") if rec["kind"] == "log" else rec.get("name", "")


# ------------------------------------------------------------------ state


class Faults:
    """The fault script; every field is changed under the receiver's lock."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.down_until = 0.0            # 503 until (monotonic)
        self.down_retry_after: Optional[int] = None
        self.throttle_until = 0.0        # 429 until
        self.throttle_retry_after: Optional[int] = None
        self.statuses: list[int] = []    # next answers, in order
        self.status_retry_after: Optional[int] = None
        self.partial_left = 0            # partial successes still to give
        self.partial_marker: Optional[str] = None
        self.partial_count: Optional[int] = None
        self.partial_message = "rejected by test script"
        self.poison_marker: Optional[str] = None
        self.poison_status = 400
        self.delay = 0.0                 # seconds before answering

    def describe(self) -> dict:
        now = time.monotonic()
        return {
            "unavailable_for": max(0.0, round(self.down_until - now, 3)),
            "unavailable_retry_after": self.down_retry_after,
            "throttle_for": max(0.0, round(self.throttle_until - now, 3)),
            "throttle_retry_after": self.throttle_retry_after,
            "statuses": list(self.statuses),
            "partial_requests": self.partial_left,
            "partial_marker": self.partial_marker,
            "partial_count": self.partial_count,
            "partial_message": self.partial_message,
            "poison_marker": self.poison_marker,
            "poison_status": self.poison_status,
            "delay": self.delay,
        }

    def apply(self, cmd: dict) -> None:
        op = cmd.get("op")
        now = time.monotonic()
        if op == "reset":
            self.reset()
        elif op == "unavailable":
            self.down_until = now + float(cmd.get("seconds", 0))
            self.down_retry_after = cmd.get("retry_after")
        elif op == "throttle":
            self.throttle_until = now + float(cmd.get("seconds", 0))
            self.throttle_retry_after = cmd.get("retry_after")
        elif op == "status":
            self.statuses = [int(s) for s in cmd.get("codes", [])]
            self.status_retry_after = cmd.get("retry_after")
        elif op == "partial":
            self.partial_left = int(cmd.get("requests", 1))
            self.partial_marker = cmd.get("marker")
            self.partial_count = cmd.get("count")
            if self.partial_marker is None and self.partial_count is None:
                raise ValueError("partial needs a marker or a count")
            self.partial_message = cmd.get("message", "rejected by test script")
        elif op == "poison":
            self.poison_marker = cmd.get("marker")
            self.poison_status = int(cmd.get("status", 400))
        elif op == "delay":
            self.delay = float(cmd.get("seconds", 0))
        else:
            raise ValueError(f"unknown op {op!r}")


class State:
    def __init__(self, out_path: Optional[str]):
        self.lock = threading.Lock()
        self.faults = Faults()
        self.lines: list[str] = []
        self.kinds: list[str] = []
        self.request_no = 0
        self._out = open(out_path, "a", encoding="utf-8") if out_path else None

    def record(self, docs: list[dict]) -> None:
        """Appends lines; the caller holds the lock."""
        for d in docs:
            line = json.dumps(d, separators=(",", ":"))
            self.lines.append(line)
            self.kinds.append(d.get("kind", ""))
            if self._out:
                self._out.write(line + "\n")
        if self._out:
            self._out.flush()

    def close(self) -> None:
        with self.lock:
            if self._out:
                self._out.close()
                self._out = None


# ------------------------------------------------------------------ HTTP


ROUTES = {
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, decode_logs,
                 "rejected_log_records", "log"),
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, decode_traces,
                   "rejected_spans", "span"),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a Collector allows
    server_version = "cwtap-otlp-receiver/1"
    state: State  # set on the class by main()
    max_body: int = 20 << 20

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    # -------------------------------------------------------------- plumbing

    def _send(self, status: int, body: bytes, ctype: str, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _read_body(self) -> Optional[bytes]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > self.max_body:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        n = int(self.headers.get("Content-Length") or 0)
        if n > self.max_body:
            return None
        return self.rfile.read(n) if n else b""

    # -------------------------------------------------------------- GET

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/health":
            return self._json(200, {"status": "ok"})
        if parts.path == "/dump":
            kind = parse_qs(parts.query).get("kind", [None])[0]
            st = self.state
            with st.lock:
                lines = [l for l, k in zip(st.lines, st.kinds) if kind is None or k == kind]
            body = "".join(l + "\n" for l in lines).encode()
            return self._send(200, body, "application/x-ndjson")
        if parts.path == "/control":
            with self.state.lock:
                return self._json(200, self.state.faults.describe())
        return self._json(404, {"error": "not found"})

    # -------------------------------------------------------------- POST

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            return self._send(413, rpc_status(RPC_CODE[413], "request body too large"), PROTOBUF)
        if path == "/control":
            return self._control(raw)
        if path not in ROUTES:
            return self._json(404, {"error": "not found"})
        self._export(path, raw)

    def _control(self, raw: bytes) -> None:
        try:
            doc = json.loads(raw or b"{}")
            cmds = doc if isinstance(doc, list) else [doc]
            with self.state.lock:
                for c in cmds:
                    self.state.faults.apply(c)
                desc = self.state.faults.describe()
                self.state.record([{"kind": "control", "ts": now_ms(), "commands": cmds}])
        except (ValueError, TypeError, AttributeError) as e:
            return self._json(400, {"error": str(e)})
        self._json(200, desc)

    def _export(self, path: str, raw: bytes) -> None:
        req_cls, resp_cls, decode, rejected_field, kind = ROUTES[path]
        st = self.state
        with st.lock:
            st.request_no += 1
            n = st.request_no
            delay = st.faults.delay
        if delay:
            time.sleep(delay)
        info: dict = {
            "kind": "request", "request": n, "ts": now_ms(), "path": path,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "user_agent": self.headers.get("User-Agent"),
            "bytes": len(raw), "records": 0, "accepted": 0, "rejected": 0,
        }

        def answer(status: int, message: str, retry_after: Optional[int] = None,
                   docs: Optional[list] = None) -> None:
            info.update(status=status, error=message or None)
            with st.lock:
                st.record((docs or []) + [info])
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
            self._send(status, rpc_status(RPC_CODE.get(status, 2), message), PROTOBUF, headers)

        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != PROTOBUF:
            return answer(415, f"unsupported content type {ctype!r}; want {PROTOBUF}")
        enc = (self.headers.get("Content-Encoding") or "").strip().lower()
        if enc == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                return answer(400, f"bad gzip body: {e}")
        elif enc not in ("", "identity"):
            return answer(415, f"unsupported content encoding {enc!r}")

        # Scripted availability faults come before decoding, as a proxy or an
        # overloaded backend would answer.
        with st.lock:
            f = st.faults
            now = time.monotonic()
            scripted = f.statuses.pop(0) if f.statuses else None
            down = now < f.down_until
            throttled = now < f.throttle_until
        if scripted is not None:
            return answer(scripted, f"scripted status {scripted}", f.status_retry_after)
        if down:
            return answer(503, "unavailable (scripted)", f.down_retry_after)
        if throttled:
            return answer(429, "throttled (scripted)", f.throttle_retry_after)

        msg = req_cls()
        try:
            msg.ParseFromString(raw)
        except DecodeError as e:
            return answer(400, f"cannot decode {req_cls.__name__}: {e}")
        docs, bad = decode(msg)
        if bad:
            return answer(400, bad)
        info["records"] = len(docs)

        with st.lock:
            poison = f.poison_marker
            poison_status = f.poison_status
        if poison is not None and any(poison in marker_text(d) for d in docs):
            return answer(poison_status, f"record contains poison marker {poison!r}")

        rejected_idx: set[int] = set()
        message = ""
        with st.lock:
            if f.partial_left > 0 and docs:
                f.partial_left -= 1
                if f.partial_marker is not None:
                    rejected_idx = {i for i, d in enumerate(docs) if f.partial_marker in marker_text(d)}
                else:
                    k = max(0, min(int(f.partial_count or 0), len(docs)))
                    rejected_idx = set(range(len(docs) - k, len(docs)))
                message = f.partial_message
        for i, d in enumerate(docs):
            d["request"] = n
            d["accepted"] = i not in rejected_idx
        info["accepted"] = len(docs) - len(rejected_idx)
        info["rejected"] = len(rejected_idx)

        resp = resp_cls()
        if rejected_idx or message:
            setattr(resp.partial_success, rejected_field, len(rejected_idx))
            resp.partial_success.error_message = message
            info["partial_success"] = {rejected_field: len(rejected_idx), "error_message": message}
        info.update(status=200, error=None)
        with st.lock:
            st.record(docs + [info])
        self._send(200, resp.SerializeToString(), PROTOBUF)


# ------------------------------------------------------------------ main


def startup_commands(args: argparse.Namespace) -> list[dict]:
    cmds: list[dict] = []
    if args.unavailable_for:
        cmds.append({"op": "unavailable", "seconds": args.unavailable_for, "retry_after": args.retry_after})
    if args.throttle_for:
        cmds.append({"op": "throttle", "seconds": args.throttle_for, "retry_after": args.retry_after})
    if args.statuses:
        cmds.append({"op": "status", "codes": [int(s) for s in args.statuses.split(",") if s],
                     "retry_after": args.retry_after})
    if args.partial:
        cmds.append({"op": "partial", "requests": args.partial, "marker": args.partial_marker,
                     "count": args.partial_count, "message": args.partial_message})
    if args.poison_marker is not None:
        cmds.append({"op": "poison", "marker": args.poison_marker, "status": args.poison_status})
    if args.delay:
        cmds.append({"op": "delay", "seconds": args.delay})
    return cmds


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="otlp_receiver.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--out", help="JSON-lines file of decoded records and requests")
    ap.add_argument("--ready-file", help="written (JSON {port, url, pid}) once listening")
    ap.add_argument("--max-runtime", type=float, default=1800.0, help="stop after this many seconds")
    ap.add_argument("--max-body-bytes", type=int, default=20 << 20,
                    help="larger request bodies get 413 (default 20 MiB, the Collector's)")
    ap.add_argument("--unavailable-for", type=float, default=0, metavar="SECS",
                    help="answer 503 for the first SECS seconds")
    ap.add_argument("--throttle-for", type=float, default=0, metavar="SECS",
                    help="answer 429 for the first SECS seconds")
    ap.add_argument("--retry-after", type=int, default=None, metavar="SECS",
                    help="Retry-After header on scripted 503/429/statuses")
    ap.add_argument("--statuses", default="", metavar="CODES",
                    help="comma-separated statuses for the first requests, in order")
    ap.add_argument("--partial", type=int, default=0, metavar="N",
                    help="answer partial_success to the next N requests")
    ap.add_argument("--partial-marker", help="reject the records whose body (span: name) contains this")
    ap.add_argument("--partial-count", type=int, help="else reject the last K records of each request")
    ap.add_argument("--partial-message", default="rejected by test script")
    ap.add_argument("--poison-marker", help="answer --poison-status to any request with a record "
                                            "whose body (span: name) contains this; record nothing")
    ap.add_argument("--poison-status", type=int, default=400)
    ap.add_argument("--delay", type=float, default=0, help="seconds to wait before each answer")
    args = ap.parse_args(argv)

    state = State(args.out)
    try:
        with state.lock:
            for c in startup_commands(args):
                state.faults.apply(c)
    except ValueError as e:
        print(f"otlp_receiver: {e}", file=sys.stderr)
        return 2
    Handler.state = state
    Handler.max_body = args.max_body_bytes
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    stopping = threading.Event()

    def stop(*_: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(args.max_runtime, stop)
    timer.daemon = True
    timer.start()
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"port": port, "url": f"http://127.0.0.1:{port}", "pid": os.getpid()}, fh)
        os.replace(tmp, args.ready_file)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        timer.cancel()
        server.server_close()
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
