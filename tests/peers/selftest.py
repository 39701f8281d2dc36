#!/usr/bin/env python3
"""End-to-end self-test of firehose_standin.py and otlp_receiver.py.

Run with the repo's venv (moto_server, boto3 and opentelemetry-proto in it):

    .venv/bin/python tests/peers/selftest.py

Starts moto on a free 127.0.0.1 port, a scripted Firehose HTTP endpoint in
this process, and the two peers as subprocesses. Every wait is bounded.
Prints one line per check and ends with "N passed, N failed".
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
PY = sys.executable
STANDIN = str(HERE / "firehose_standin.py")
RECEIVER = str(HERE / "otlp_receiver.py")

RESULTS = {"passed": 0, "failed": 0}


def check(name: str, ok: bool, detail: object = "") -> bool:
    RESULTS["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok or detail == "" else f": {detail}"), flush=True)
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(limit: float, cond) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


# ------------------------------------------------------------------ fake endpoint


class Endpoint:
    """A scripted Firehose HTTP endpoint: `script` is a list of behaviours for
    the next requests (ok, status:N, wrong_id, no_ctype, delay:S, not_json);
    once empty, every request gets a proper 200."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[str] = []
        self.lock = threading.Lock()
        ep = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                with ep.lock:
                    action = ep.script.pop(0) if ep.script else "ok"
                    ep.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                        "raw": raw, "body": body, "action": action,
                                        "t": time.monotonic(), "port": self.server.server_address[1]})
                rid = self.headers.get("X-Amz-Firehose-Request-Id")
                status, ctype, doc = 200, "application/json", {"requestId": rid, "timestamp": int(time.time() * 1000)}
                if action.startswith("status:"):
                    status = int(action.split(":")[1])
                    doc["errorMessage"] = "scripted"
                elif action == "wrong_id":
                    doc["requestId"] = "not-the-right-one"
                elif action == "no_ctype":
                    ctype = "text/plain"
                elif action.startswith("delay:"):
                    time.sleep(float(action.split(":")[1]))
                out = b"not json" if action == "not_json" else json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/firehose?x=1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def decode_records(body: bytes) -> list[dict]:
    """Records of a request body: {'data': str, 'payload': dict|None, 'error': str|None}."""
    out = []
    for r in json.loads(body)["records"]:
        item = {"data": r["data"], "payload": None, "error": None}
        try:
            item["payload"] = json.loads(gzip.decompress(base64.b64decode(r["data"], validate=True)))
        except Exception as e:
            item["error"] = type(e).__name__
        out.append(item)
    return out


# ------------------------------------------------------------------ moto


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        ok = wait_until(30, lambda: socket.socket().connect_ex(("127.0.0.1", self.port)) == 0)
        assert ok, "moto did not listen"
        import boto3
        kw = dict(endpoint_url=self.url, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.logs = boto3.client("logs", **kw)
        self.kinesis = boto3.client("kinesis", **kw)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def standin(args: list[str], limit: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PY, STANDIN, *args], capture_output=True, text=True, timeout=limit)


# ------------------------------------------------------------------ firehose tests


def test_firehose(tmp: Path) -> None:
    moto = Moto()
    ep1, ep2 = Endpoint(), Endpoint()
    try:
        stream = "cwl-sub"
        moto.kinesis.create_stream(StreamName=stream, ShardCount=2)
        arn = moto.kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
        group = "/app/one"
        moto.logs.create_log_group(logGroupName=group)
        for s in ("a", "b"):
            moto.logs.create_log_stream(logGroupName=group, logStreamName=s)
        moto.logs.put_subscription_filter(logGroupName=group, filterName="all", filterPattern="",
                                          destinationArn=arn, roleArn="arn:aws:iam::123456789012:role/cwl")
        base = int(time.time() * 1000)
        sent = []
        for call in range(5):
            s = "a" if call % 2 == 0 else "b"
            events = [{"timestamp": base + call * 10 + i, "message": f"call {call} event {i}"} for i in range(4)]
            moto.logs.put_log_events(logGroupName=group, logStreamName=s, logEvents=events)
            sent += [e["message"] for e in events]

        # Scripted faults hit request 1 on its first three attempts:
        # 500, a 200 with the wrong requestId, then no answer within 1.5 s.
        ep1.script = ["status:500", "delay:3"]
        ep2.script = ["wrong_id"]
        log = str(tmp / "fh.log")
        ready = str(tmp / "fh.ready")
        cp = str(tmp / "fh.checkpoint")
        t0 = time.monotonic()
        p = standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream,
                     "--url", ep1.url, "--url", ep2.url, "--unique-ids", "--gzip",
                     "--access-key", "sekrit-key", "--common-attribute", "env=test",
                     "--max-records", "2", "--interval", "0.3", "--timeout", "1.5",
                     "--retry-duration", "30", "--backoff-initial", "0.05", "--backoff-jitter", "0",
                     "--inject", "control:1:0", "--inject", "gzip:2:1",
                     "--stop-after-idle", "2", "--max-runtime", "60",
                     "--log", log, "--ready-file", ready, "--checkpoint", cp])
        check("run exits 0 by itself (idle)", p.returncode == 0, p.stderr[-800:])
        check("run took a bounded time", time.monotonic() - t0 < 30, time.monotonic() - t0)
        check("ready file written", os.path.exists(ready))
        reqs = ep1.requests + ep2.requests
        reqs.sort(key=lambda r: r["t"])
        check("both round-robin targets got requests", bool(ep1.requests) and bool(ep2.requests))
        by_id: dict[str, list[dict]] = {}
        for r in reqs:
            by_id.setdefault(r["headers"]["x-amz-firehose-request-id"], []).append(r)
        first_id = reqs[0]["headers"]["x-amz-firehose-request-id"]
        first = by_id[first_id]
        check("request 1 retried with the same request id (4 attempts)", len(first) == 4,
              [r["action"] for r in first])
        check("every attempt of a request has identical body bytes",
              all(len({r["raw"] for r in rs}) == 1 for rs in by_id.values()))
        h = reqs[0]["headers"]
        check("headers: protocol version", h.get("x-amz-firehose-protocol-version") == "1.0", h)
        check("headers: access key verbatim", h.get("x-amz-firehose-access-key") == "sekrit-key")
        check("headers: source arn", h.get("x-amz-firehose-source-arn", "").startswith("arn:aws:firehose:"))
        check("headers: common attributes JSON",
              json.loads(h.get("x-amz-firehose-common-attributes", "{}")) == {"commonAttributes": {"env": "test"}})
        check("headers: content type / encoding",
              h.get("content-type") == "application/json" and h.get("content-encoding") == "gzip")
        b = json.loads(reqs[0]["body"])
        check("body requestId equals header", b["requestId"] == first_id)
        check("body timestamp is integer ms", isinstance(b["timestamp"], int) and b["timestamp"] > 1e12)

        delivered = [r for r in reqs if r["action"] == "ok"]
        check("each request delivered exactly once", len(delivered) == len(by_id),
              (len(delivered), len(by_id)))
        msgs, ids, controls, bad = [], [], 0, 0
        for r in delivered:
            for rec in decode_records(r["body"]):
                if rec["error"]:
                    bad += 1
                    continue
                pl = rec["payload"]
                if pl["messageType"] == "CONTROL_MESSAGE":
                    controls += 1
                    continue
                for e in pl["logEvents"]:
                    msgs.append(e["message"])
                    ids.append(e["id"])
        check("every event delivered once", Counter(msgs) == Counter(sent), (len(msgs), len(sent)))
        check("ids are unique 56-digit strings",
              len(set(ids)) == len(ids) and all(isinstance(i, str) and len(i) == 56 and i.isdigit() for i in ids),
              ids[:3])
        check("injected CONTROL_MESSAGE passed through", controls == 1, controls)
        check("injected bad gzip record present", bad == 1, bad)
        lines = read_jsonl(log)
        kinds = Counter(l["event"] for l in lines)
        check("log has attempts, delivered, records, stop",
              kinds["attempt"] >= 4 and kinds["delivered"] == len(by_id) and kinds["record"] == 5
              and kinds["stop"] == 1, dict(kinds))
        att = [l for l in lines if l["event"] == "attempt" and l["request_id"] == first_id]
        check("log shows the timeout as status 0 with an error",
              any(a["status"] == 0 and "timeout" in (a["error"] or "") for a in att),
              [(a["status"], a["error"]) for a in att])
        check("log shows the wrong requestId as a failure",
              any(a["status"] == 200 and not a["ok"] for a in att))
        stop = [l for l in lines if l["event"] == "stop"][0]
        check("stop reason idle, nothing pending", stop["reason"] == "idle" and stop["pending_records"] == 0, stop)
        cpd = json.load(open(cp))
        check("checkpoint has both shards", len(cpd) == 2, cpd)

        # Determinism: a second run from TRIM_HORIZON gives the same ids.
        ep3 = Endpoint()
        p2 = standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream, "--url", ep3.url,
                      "--unique-ids", "--interval", "0.2", "--stop-after-idle", "1.5", "--max-runtime", "30"])
        ids2 = [e["id"] for r in ep3.requests for rec in decode_records(r["body"]) for e in rec["payload"]["logEvents"]]
        check("re-read gives the same ids", p2.returncode == 0 and sorted(ids2) == sorted(ids), p2.stderr[-400:])
        ep3.close()

        # Checkpoint resume: nothing new, so nothing sent.
        ep4 = Endpoint()
        p3 = standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream, "--url", ep4.url,
                      "--checkpoint", cp, "--stop-after-idle", "1", "--max-runtime", "30"])
        check("resume from checkpoint sends nothing old", p3.returncode == 0 and not ep4.requests,
              len(ep4.requests))
        ep4.close()

        # --ids keep / string: what moto gives.
        ep5 = Endpoint()
        standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream, "--url", ep5.url,
                 "--ids", "string", "--interval", "0.2", "--stop-after-idle", "1.5", "--max-runtime", "30"])
        sids = [e["id"] for r in ep5.requests for rec in decode_records(r["body"]) for e in rec["payload"]["logEvents"]]
        fle = moto.logs.filter_log_events(logGroupName=group)["events"]
        check("--ids string equals moto's FilterLogEvents eventIds",
              sorted(sids) == sorted(e["eventId"] for e in fle), (sids[:4], [e["eventId"] for e in fle][:4]))
        ep5.close()

        # Retry duration exhausted -> gave_up, backup written, checkpoint moved.
        ep6 = Endpoint()
        ep6.script = ["status:503"] * 100
        log6, bk6 = str(tmp / "fh6.log"), str(tmp / "fh6.backup")
        p6 = standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream, "--url", ep6.url,
                      "--max-records", "100", "--interval", "0.2", "--retry-duration", "1",
                      "--backoff-initial", "0.1", "--backoff-jitter", "0", "--stop-after-idle", "1",
                      "--max-runtime", "30", "--log", log6, "--backup", bk6])
        l6 = read_jsonl(log6)
        gave = [l for l in l6 if l["event"] == "gave_up"]
        rids6 = {r["headers"]["x-amz-firehose-request-id"] for r in ep6.requests}
        check("retry duration: gave up after several attempts, one request id",
              len(gave) == 1 and gave[0]["attempts"] >= 3 and len(rids6) == 1, (gave, len(ep6.requests)))
        bk = read_jsonl(bk6)
        check("backup holds the given-up records", len(bk) == 1 and len(bk[0]["records"]) == 5, bk[:1])
        check("exit 0 (data went to backup)", p6.returncode == 0, p6.returncode)
        ep6.close()

        # 413 is permanent: one attempt.
        ep7 = Endpoint()
        ep7.script = ["status:413"]
        log7 = str(tmp / "fh7.log")
        standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream, "--url", ep7.url,
                 "--max-records", "100", "--interval", "0.2", "--stop-after-idle", "1",
                 "--max-runtime", "30", "--log", log7])
        l7 = read_jsonl(log7)
        check("413: permanent failure, not retried",
              len(ep7.requests) == 1 and any(l["event"] == "permanent_failure" for l in l7))
        ep7.close()

        # Non-JSON 200 and a text/plain 200 are failures.
        ep8 = Endpoint()
        ep8.script = ["not_json", "no_ctype"]
        standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream, "--url", ep8.url,
                 "--max-records", "100", "--interval", "0.2", "--backoff-initial", "0.05",
                 "--stop-after-idle", "1", "--max-runtime", "30"])
        check("malformed 200 answers are retried", len(ep8.requests) == 3
              and len({r["headers"]["x-amz-firehose-request-id"] for r in ep8.requests}) == 1,
              [r["action"] for r in ep8.requests])
        ep8.close()

        # Non-loopback targets are refused.
        p9 = standin(["run", "--kinesis-endpoint", moto.url, "--stream", stream,
                      "--url", "http://10.1.2.3/x", "--max-runtime", "5"])
        check("non-loopback URL refused with exit 2", p9.returncode == 2, p9.stderr)

        # build + send: a crafted body with a bad json record, 503 then 200.
        payload = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
                   "logStream": "a", "subscriptionFilters": ["all"],
                   "logEvents": [{"id": "1" * 56, "timestamp": base, "message": "hand made"}]}
        pf, bodyf = tmp / "payload.json", tmp / "body.json"
        pf.write_text(json.dumps(payload))
        pb = standin(["build", "--payload", str(pf), "--bad", "json:0", "--bad", "base64",
                      "--request-id", "11111111-2222-3333-4444-555555555555", "--out", str(bodyf)])
        body = json.loads(bodyf.read_text())
        check("build writes a body", pb.returncode == 0 and len(body["records"]) == 3
              and body["requestId"] == "11111111-2222-3333-4444-555555555555", pb.stderr)
        ep10 = Endpoint()
        ep10.script = ["status:503"]
        ps = standin(["send", "--url", ep10.url, "--file", str(bodyf), "--access-key", "k",
                      "--retry-duration", "10", "--backoff-initial", "0.05", "--omit-header",
                      "X-Amz-Firehose-Source-Arn", "--header", "X-Extra: 1"])
        res = json.loads(ps.stdout.strip().splitlines()[-1]) if ps.stdout.strip() else {}
        hs = [r["headers"] for r in ep10.requests]
        check("send: delivered on the 2nd attempt with the body's request id",
              ps.returncode == 0 and res.get("attempts") == 2
              and all(x["x-amz-firehose-request-id"] == body["requestId"] for x in hs), (ps.stdout, ps.stderr[-300:]))
        check("send: --omit-header / --header",
              all("x-amz-firehose-source-arn" not in x and x.get("x-extra") == "1" for x in hs))
        check("send: body sent verbatim", ep10.requests[-1]["body"] == bodyf.read_bytes())
        ep10.close()
        ep11 = Endpoint()
        ep11.script = ["status:500"]
        ps2 = standin(["send", "--url", ep11.url, "--file", str(bodyf)])
        check("send: one attempt by default, exit 1 on failure", ps2.returncode == 1 and len(ep11.requests) == 1)
        ep11.close()
    finally:
        ep1.close()
        ep2.close()
        moto.close()


# ------------------------------------------------------------------ OTLP tests


def otlp_tests(tmp: Path) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest, ExportLogsServiceResponse)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest, ExportTraceServiceResponse)
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, ArrayValue
    from opentelemetry.proto.trace.v1 import trace_pb2

    out, ready = str(tmp / "otlp.jsonl"), str(tmp / "otlp.ready")
    proc = subprocess.Popen([PY, RECEIVER, "--port", "0", "--out", out, "--ready-file", ready,
                             "--max-runtime", "120"], stderr=subprocess.PIPE, text=True)
    try:
        check("receiver writes its ready file", wait_until(15, lambda: os.path.exists(ready)))
        url = json.load(open(ready))["url"]

        def post(path, data, gz=True, ctype="application/x-protobuf"):
            body = gzip.compress(data) if gz else data
            req = urllib.request.Request(url + path, data=body, method="POST",
                                         headers={"Content-Type": ctype, **({"Content-Encoding": "gzip"} if gz else {})})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, dict(r.headers), r.read()
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers), e.read()

        def control(doc):
            req = urllib.request.Request(url + "/control", data=json.dumps(doc).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        def kv(k, **v):
            return KeyValue(key=k, value=AnyValue(**v))

        def logs_req(bodies):
            req = ExportLogsServiceRequest()
            rl = req.resource_logs.add()
            rl.resource.attributes.extend([kv("service.name", string_value="cwtap"),
                                           kv("cloud.provider", string_value="aws")])
            sl = rl.scope_logs.add()
            sl.scope.name, sl.scope.version = "cwtap", "0.1.0"
            for i, b in enumerate(bodies):
                lr = sl.log_records.add()
                lr.time_unix_nano = 1_700_000_000_000_000_000 + i
                lr.observed_time_unix_nano = 1_700_000_000_500_000_000 + i
                lr.severity_number = 17
                lr.severity_text = "ERROR"
                lr.body.string_value = b
                lr.attributes.extend([kv("aws.log.group.names", array_value=ArrayValue(values=[AnyValue(string_value="/g")])),
                                      kv("n", int_value=i), kv("ratio", double_value=0.5), kv("flag", bool_value=True)])
                lr.trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
                lr.span_id = bytes.fromhex("b7ad6b7169203331")
            return req.SerializeToString()

        st, hd, data = post("/v1/logs", logs_req(["one", "two", "three"]))
        resp = ExportLogsServiceResponse()
        resp.ParseFromString(data)
        check("logs: 200 + ExportLogsServiceResponse without partial_success",
              st == 200 and hd.get("Content-Type") == "application/x-protobuf" and not resp.HasField("partial_success"),
              (st, hd))
        recs = [json.loads(l) for l in open(out)]
        logs = [r for r in recs if r["kind"] == "log"]
        check("logs: three records decoded", len(logs) == 3, len(logs))
        l0 = logs[0]
        check("logs: fields", l0["body"] == "one" and l0["severity_number"] == 17 and l0["severity_text"] == "ERROR"
              and l0["time_unix_nano"] == 1_700_000_000_000_000_000
              and l0["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and l0["span_id"] == "b7ad6b7169203331"
              and l0["resource"]["attributes"]["service.name"] == "cwtap" and l0["scope"]["name"] == "cwtap", l0)
        check("logs: typed attributes", l0["attributes"] == {"aws.log.group.names": ["/g"], "n": 0, "ratio": 0.5, "flag": True}
              and l0["attribute_types"] == {"aws.log.group.names": "array", "n": "int", "ratio": "double", "flag": "bool"},
              l0["attributes"])
        reqline = [r for r in recs if r["kind"] == "request"][-1]
        check("logs: request line", reqline["path"] == "/v1/logs" and reqline["status"] == 200
              and reqline["records"] == 3 and reqline["content_encoding"] == "gzip", reqline)

        treq = ExportTraceServiceRequest()
        rs = treq.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", string_value="lambda-x"))
        ss = rs.scope_spans.add()
        ss.scope.name = "cwtap.xray"
        sp = ss.spans.add()
        sp.trace_id = bytes.fromhex("5759e988bd862e3fe1be46a994272793")
        sp.span_id = bytes.fromhex("53995c3f42cd8ad8")
        sp.name = "GET /items"
        sp.kind = trace_pb2.Span.SPAN_KIND_SERVER
        sp.start_time_unix_nano, sp.end_time_unix_nano = 1, 2
        sp.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        sp.status.message = "boom"
        sp.attributes.append(kv("http.response.status_code", int_value=500))
        st, _, data = post("/v1/traces", treq.SerializeToString(), gz=False)
        tresp = ExportTraceServiceResponse()
        tresp.ParseFromString(data)
        spans = [json.loads(l) for l in open(out) if '"kind":"span"' in l]
        check("traces: 200 and span decoded", st == 200 and len(spans) == 1 and spans[0]["name"] == "GET /items"
              and spans[0]["span_kind_name"] == "SPAN_KIND_SERVER" and spans[0]["status"]["code_name"] == "STATUS_CODE_ERROR"
              and spans[0]["attributes"]["http.response.status_code"] == 500, spans)

        control({"op": "unavailable", "seconds": 1, "retry_after": 2})
        st, hd, data = post("/v1/logs", logs_req(["x"]))
        check("unavailable: 503 with Retry-After", st == 503 and hd.get("Retry-After") == "2", (st, hd))
        time.sleep(1.1)
        st, _, _ = post("/v1/logs", logs_req(["x"]))
        check("unavailable: over after the window", st == 200, st)
        control({"op": "throttle", "seconds": 5, "retry_after": 1})
        st, hd, _ = post("/v1/logs", logs_req(["x"]))
        check("throttle: 429 with Retry-After", st == 429 and hd.get("Retry-After") == "1", (st, hd))
        control({"op": "reset"})
        control({"op": "status", "codes": [502, 500]})
        s1, s2, s3 = post("/v1/logs", logs_req(["x"]))[0], post("/v1/logs", logs_req(["x"]))[0], post("/v1/logs", logs_req(["x"]))[0]
        check("status script: 502, 500, then 200", (s1, s2, s3) == (502, 500, 200), (s1, s2, s3))

        control({"op": "partial", "requests": 1, "marker": "REJECT", "message": "bad records"})
        st, _, data = post("/v1/logs", logs_req(["fine", "REJECT me", "also fine", "REJECT too"]))
        resp = ExportLogsServiceResponse()
        resp.ParseFromString(data)
        check("partial: 200 with rejected_log_records=2",
              st == 200 and resp.partial_success.rejected_log_records == 2
              and resp.partial_success.error_message == "bad records", resp)
        st, _, data = post("/v1/logs", logs_req(["REJECT again"]))
        resp = ExportLogsServiceResponse()
        resp.ParseFromString(data)
        check("partial: only for the next N requests", st == 200 and not resp.HasField("partial_success"))
        recs = [json.loads(l) for l in open(out)]
        acc = {(r["body"], r["accepted"]) for r in recs if r["kind"] == "log" and r["request"] == recs[-4]["request"]}
        check("partial: rejected records marked accepted=false",
              ("REJECT me", False) in acc and ("fine", True) in acc, acc)
        control({"op": "partial", "requests": 1, "count": 1})
        st, _, data = post("/v1/logs", logs_req(["a", "b", "c"]))
        resp = ExportLogsServiceResponse()
        resp.ParseFromString(data)
        check("partial by count: last 1 rejected", resp.partial_success.rejected_log_records == 1)

        control({"op": "poison", "marker": "POISON"})
        before = sum(1 for l in open(out) if '"kind":"log"' in l)
        batch = ["a", "b", "POISON c", "d"]
        statuses = {}
        def isolate(items):
            s = post("/v1/logs", logs_req(items))[0]
            statuses[tuple(items)] = s
            if s == 400 and len(items) > 1:
                isolate(items[: len(items) // 2])
                isolate(items[len(items) // 2:])
        isolate(batch)
        after = [json.loads(l) for l in open(out)]
        stored = [r["body"] for r in after if r["kind"] == "log"][before:]
        check("poison: halving isolates the one record", sorted(stored) == ["a", "b", "d"]
              and statuses[("POISON c",)] == 400, (statuses, stored))
        control({"op": "poison", "marker": None})

        st, _, data = post("/v1/logs", b"\xff\xff\xff garbage", gz=False)
        check("undecodable protobuf: 400", st == 400, st)
        bad = ExportLogsServiceRequest()
        bad.resource_logs.add().scope_logs.add().log_records.add(trace_id=b"\x01\x02")
        st, _, data = post("/v1/logs", bad.SerializeToString())
        check("trace_id of the wrong length: 400", st == 400 and b"trace_id" in data, (st, data))
        st, _, _ = post("/v1/logs", logs_req(["x"]), ctype="application/json")
        check("JSON content type: 415", st == 415, st)
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            check("/health 200", r.status == 200)
        with urllib.request.urlopen(url + "/dump?kind=span", timeout=5) as r:
            check("/dump?kind=span", [json.loads(l)["kind"] for l in r.read().decode().splitlines()] == ["span"])
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        check("receiver stops on SIGTERM with exit 0", rc == 0, rc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="peers-selftest-") as d:
        tmp = Path(d)
        for name, fn in (("firehose", test_firehose), ("otlp", otlp_tests)):
            print(f"== {name}", flush=True)
            try:
                fn(tmp)
            except Exception as e:  # a crash is a failure, not a hang
                import traceback
                traceback.print_exc()
                check(f"{name} ran to the end", False, repr(e))
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
