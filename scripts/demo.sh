#!/usr/bin/env bash
# End-to-end demo on a laptop, no AWS account needed:
#   moto (a local CloudWatch Logs) <- captured Lambda/API Gateway logs
#   cwtap backfill -> NDJSON file, twice (the second run delivers nothing new)
# then a summary of what was delivered and `cwtap status`.
#
# Needs Rust (cargo) and python3. Set CWTAP_DEMO_KEEP=1 to keep the temporary
# directory (config, state file, events.ndjson) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
FIXTURE="$ROOT/tests/fixtures/lambda-demo.ndjson"

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
PY="$CWTAP_VENV/bin/python"

step() { printf '\n==> %s\n' "$*" >&2; }

# Bounded runs when coreutils' timeout exists (it does on Linux).
bounded() {
    local secs="$1"
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout "$secs" "$@"
    else
        "$@"
    fi
}

step "building cwtap (debug)"
cargo build --locked --quiet
CWTAP="$ROOT/target/debug/cwtap"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cwtap-demo.XXXXXX")"
MOTO_PID=""
cleanup() {
    if [[ -n "$MOTO_PID" ]]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    if [[ "${CWTAP_DEMO_KEEP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
ENDPOINT="http://127.0.0.1:$PORT"

step "starting moto_server on $ENDPOINT"
"$CWTAP_MOTO_SERVER" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
up=0
for _ in $(seq 1 300); do # at most 30 s
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
        break
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        up=1
        break
    fi
    sleep 0.1
done
if [[ "$up" != 1 ]]; then
    echo "error: moto_server did not listen on $ENDPOINT within 30 s; its log:" >&2
    cat "$WORK/moto.log" >&2
    exit 1
fi

export AWS_ENDPOINT_URL="$ENDPOINT"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

step "loading $(wc -l <"$FIXTURE" | tr -d ' ') captured events (timestamps moved to the last ~20 minutes)"
bounded 120 "$CWTAP" replay "$FIXTURE" --to cloudwatch --create --rebase now --speed max
LOADED="$(grep -c . "$FIXTURE")"

OUT_DIR="$WORK/demo-out"
OUT="$OUT_DIR/events.ndjson"
CFG="$WORK/config.yaml"
cat >"$CFG" <<YAML
# Written by scripts/demo.sh. The endpoint comes from AWS_ENDPOINT_URL.
aws:
  region: us-east-1
ndjson:
  path: $OUT
log_groups:
  - prefix: /aws/lambda/
    parsers: [{use: xray}, {use: lambda}, {use: json}]
  - prefix: /aws/apigateway/
    parsers: [{use: apigateway}]
agent:
  state_path: $OUT_DIR/cwtap-state.db
YAML

step "cwtap check"
"$CWTAP" check --config "$CFG"

# Per-window progress lines are debug-level noise for a demo; keep the rest.
LOG=(--log-level "info,cwtap::source::pull::progress=warn")

# Log events delivered (trace summaries are counted apart).
count() { if [[ -f "$OUT" ]]; then grep -vc '"event_type":"trace_summary"' "$OUT" || true; else echo 0; fi; }

step "cwtap backfill --since 7d (first run)"
bounded 300 "$CWTAP" "${LOG[@]}" backfill --config "$CFG" --since 7d --no-progress
FIRST="$(count)"

step "cwtap backfill --since 7d (second run: everything is already delivered)"
bounded 300 "$CWTAP" "${LOG[@]}" backfill --config "$CFG" --since 7d --no-progress
SECOND="$(count)"

step "summary"
echo "loaded into moto:          $LOADED events"
echo "first backfill delivered:  $FIRST events"
echo "second backfill delivered: $((SECOND - FIRST)) events"
DUPS=0
"$PY" - "$OUT" <<'PY' || DUPS=1
import collections
import json
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    everything = [json.loads(line) for line in f if line.strip()]
events = [e for e in everything if e.get("event_type") != "trace_summary"]
summaries = [e for e in everything if e.get("event_type") == "trace_summary"]
ids = collections.Counter((e["source"]["log_group"], e["source"]["log_id"]) for e in events)
dups = sum(n - 1 for n in ids.values() if n > 1)
print(f"events in {sys.argv[1].rsplit('/', 2)[-2]}/events.ndjson: {len(events)} ({dups} duplicates)")
print("per log group:")
for group, n in sorted(collections.Counter(e["source"]["log_group"] for e in events).items()):
    print(f"  {group:<32} {n:>5}")
sessions = {e["session_id"] for e in events if e.get("session_id")}
print(f"traces (distinct session_id values): {len(sessions)}")
print(f"trace summaries delivered: {len(summaries)}")
rules = collections.Counter(e.get("event_type") or "-" for e in events)
print("event types:", ", ".join(f"{t} {n}" for t, n in rules.most_common()))
if summaries:
    s = max(summaries, key=lambda e: e["properties"]["event_count"])["properties"]
    print(f"largest trace: {s['trace_key']}: {s['event_count']} events, {s['error_count']} errors, "
          f"{s['duration_ms']} ms, services {', '.join(s['services'])}, groups {', '.join(s['log_groups'])}")
structured = sum(1 for e in events if not e["properties"].get("raw_log"))
print(f"parsed as JSON: {structured}, raw lines: {len(events) - structured}")
print("first 3 events:")
for e in events[:3]:
    print(json.dumps(e, indent=2, ensure_ascii=False))
sys.exit(1 if dups else 0)
PY

step "cwtap status"
"$CWTAP" status --config "$CFG"

if [[ "$FIRST" -eq 0 ]]; then
    echo "demo FAILED: no event was delivered" >&2
    exit 1
fi
if [[ "$SECOND" -ne "$FIRST" || "$DUPS" -ne 0 ]]; then
    echo "demo FAILED: events were delivered twice (second run added $((SECOND - FIRST)))" >&2
    exit 1
fi
if [[ "$FIRST" -ne "$LOADED" ]]; then
    echo "demo FAILED: $LOADED events were loaded but $FIRST delivered" >&2
    exit 1
fi
echo
echo "demo OK: all $FIRST events delivered once; nothing delivered twice."
