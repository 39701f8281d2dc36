#!/usr/bin/env bash
# End-to-end benchmark of cwtap against moto (CloudWatch Logs) and a local
# VectaDB stand-in, everything on 127.0.0.1. Run by hand, not in CI:
#
#   scripts/bench.sh [PHASE...]    (default: all = backfill live outage, ~6 minutes)
#
# backfill  seeds BENCH_EVENTS ~300-byte JSON events into moto, then times
#           `cwtap backfill` into NDJSON and into the receiver: events/s, CPU
#           seconds per 100,000 events, peak RSS, API calls per 10,000 events.
# compare   the same data, `cwtap backfill` (with and without trace grouping)
#           against the VectaDB CloudWatch agent (VECTADB_AGENT_BIN), as
#           shipped and with its per-event debug logging off (RUST_LOG=info),
#           each into a fresh receiver: CPU s per 100,000 events delivered,
#           peak RSS, wall time, events delivered, lost and duplicated,
#           FilterLogEvents calls. About 2 minutes.
# windows   "cost follows events": from a fresh moto each, `cwtap backfill
#           --since 7d` of sparse data with bursts (BENCH_SPARSE_*), of empty
#           groups (BENCH_EMPTY_GROUPS) and of a busy week (BENCH_BUSY_*), and
#           of scripts/demo.sh's fixture: FilterLogEvents calls per group
#           against the pages the events take, wall time, exactly-once.
#           Bounded by the rate budget: ~1 hour with 1-hour windows.
# pairs     the compare data, seeded once, read by `cwtap backfill` with each
#           of BENCH_PAIRS in turn, BENCH_PAIRS_ROUNDS times (alternating:
#           this machine's CPU seconds drift by a fifth within an hour, so
#           two binaries or settings are compared run against run on the
#           same seed): CPU s (user, system) and peak RSS of every run, and
#           that every run delivered every event once. Before each round
#           (and once in compare), the CPU s of a fixed workload shows how
#           fast the machine runs then (bench_tools.py calibrate).
# live      `cwtap run` on BENCH_GROUPS log groups while a writer puts
#           BENCH_RATE events/s into them: delivery latency p50/p99, peak RSS,
#           extra FilterLogEvents calls caused by the late-arrival re-reads.
# outage    the same, with the receiver answering 503 for BENCH_OUTAGE_SECS:
#           RSS every second, then delivery resumes with nothing lost.
#
# Sizes (environment):
#   BENCH_EVENTS=100000 BENCH_BACKFILL_GROUPS=4 BENCH_STREAMS=4 BENCH_SPAN_SECS=3600
#   BENCH_GROUPS=100 BENCH_RATE=1000 BENCH_WARMUP_SECS=20 BENCH_LIVE_SECS=150
#   BENCH_OUTAGE_PRE_SECS=20 BENCH_OUTAGE_SECS=60 BENCH_OUTAGE_POST_SECS=10
#   BENCH_DRAIN_SECS=150 (longest wait for the last events after the writer stops)
#   BENCH_POLL_SECS: agent.poll_interval_secs for live/outage (default: the
#     config default, 10 s)
#   BENCH_FILTER_RATE: aws.rate_limits.filter_log_events (calls/s), passed
#     only when this cwtap has that key (config.example.yaml mentions it)
#   CWTAP_BIN: the binary to measure (default: a release build, made here)
#   VECTADB_AGENT_BIN (compare): the VectaDB agent's binary (default:
#     /work/vectadb-target/release/vectadb-cloudwatch-agent);
#     BENCH_AGENT_WAIT_SECS=300: longest wait for its two poll cycles
#   windows: BENCH_WINDOWS="sparse empty busy demo" (the scenarios to run),
#     BENCH_SPARSE_GROUPS=3 BENCH_SPARSE_EVENTS=30000 (over 6 days),
#     BENCH_EMPTY_GROUPS=100, BENCH_BUSY_GROUPS=10 BENCH_BUSY_EVENTS=100000
#     (over 7 days), BENCH_WINDOWS_TIMEOUT=5400 (longest one backfill may run)
#   CWTAP_BENCH_PAGE_BYTES=1048576: moto's FilterLogEvents pages end past this
#     many bytes, as CloudWatch's end at 1 MB (0: moto's 10,000-event pages)
#   BENCH_AGENT_EXTRA: YAML lines added to the agent section of every cwtap
#     config, indented two spaces (e.g. "  state_fsync: false")
#   BENCH_PAIRS (pairs): `;`-separated LABEL=BINARY, each optionally followed
#     by @YAML, a line added to its config's agent section, then by +YAML,
#     settings added to its `vectadb` section (default: the one binary
#     measured; e.g. "before=/tmp/a;after=/tmp/b;untraced=/tmp/b@group_traces: false;
#     b500=/tmp/b+batch_size: 500"), BENCH_PAIRS_ROUNDS=3
#   BENCH_CALLGRIND=1 (compare): every process runs under valgrind's callgrind,
#     which counts the instructions it executes (all threads). Slow (~50x), but
#     unlike CPU seconds the count does not change with the machine's load.
#   BENCH_KEEP=1 keeps the work directory (configs, logs, receiver dumps).
#
# Writes the results as a markdown table to stdout (and $WORK/results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PHASES=("$@")
if ((${#PHASES[@]} == 0)); then PHASES=(all); fi
for phase in "${PHASES[@]}"; do
    case "$phase" in
    backfill | live | outage | compare | pairs | windows | all) ;;
    *)
        echo "usage: $0 [backfill|live|outage|compare|pairs|windows|all]..." >&2
        exit 2
        ;;
    esac
done

BENCH_EVENTS="${BENCH_EVENTS:-100000}"
BENCH_BACKFILL_GROUPS="${BENCH_BACKFILL_GROUPS:-4}"
BENCH_STREAMS="${BENCH_STREAMS:-4}"
BENCH_SPAN_SECS="${BENCH_SPAN_SECS:-3600}"
BENCH_GROUPS="${BENCH_GROUPS:-100}"
BENCH_RATE="${BENCH_RATE:-1000}"
BENCH_WARMUP_SECS="${BENCH_WARMUP_SECS:-20}"
BENCH_LIVE_SECS="${BENCH_LIVE_SECS:-150}"
BENCH_OUTAGE_PRE_SECS="${BENCH_OUTAGE_PRE_SECS:-20}"
BENCH_OUTAGE_SECS="${BENCH_OUTAGE_SECS:-60}"
BENCH_OUTAGE_POST_SECS="${BENCH_OUTAGE_POST_SECS:-10}"
BENCH_DRAIN_SECS="${BENCH_DRAIN_SECS:-150}"
BENCH_POLL_SECS="${BENCH_POLL_SECS:-}"
BENCH_FILTER_RATE="${BENCH_FILTER_RATE:-}"
VECTADB_AGENT_BIN="${VECTADB_AGENT_BIN:-/work/vectadb-target/release/vectadb-cloudwatch-agent}"
BENCH_AGENT_WAIT_SECS="${BENCH_AGENT_WAIT_SECS:-300}"
BENCH_PAIRS_ROUNDS="${BENCH_PAIRS_ROUNDS:-3}"
BENCH_WINDOWS="${BENCH_WINDOWS:-sparse empty busy demo}"
BENCH_SPARSE_GROUPS="${BENCH_SPARSE_GROUPS:-3}"
BENCH_SPARSE_EVENTS="${BENCH_SPARSE_EVENTS:-30000}"
BENCH_EMPTY_GROUPS="${BENCH_EMPTY_GROUPS:-100}"
BENCH_BUSY_GROUPS="${BENCH_BUSY_GROUPS:-10}"
BENCH_BUSY_EVENTS="${BENCH_BUSY_EVENTS:-100000}"
BENCH_WINDOWS_TIMEOUT="${BENCH_WINDOWS_TIMEOUT:-5400}"

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
PY="$CWTAP_VENV/bin/python"
TOOLS=("$PY" "$ROOT/scripts/bench_tools.py")

step() { printf '==> %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
tool() { "${TOOLS[@]}" "$@"; }
# A field of a one-line JSON object.
jget() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]); [v:=v[k] for k in sys.argv[2:]]; print(v)' "$@"; }
calc() { "$PY" -c "import math; print($1)"; }
# An epoch-ms time as RFC 3339 (UTC, milliseconds), the form --rebase takes.
rfc3339_ms() { "$PY" -c 'import sys, datetime as d; t = int(sys.argv[1]) / 1000
print(d.datetime.fromtimestamp(t, d.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")' "$1"; }
mb() { printf '%.1f MB' "$(calc "$1 * 1024 / 1e6")"; } # kB (ru_maxrss) as MB = 10^6 bytes
mb_bytes() { printf '%.1f MB' "$(calc "$1 / 1e6")"; } # bytes as MB

if [[ -z "${CWTAP_BIN:-}" ]]; then
    step "building cwtap (release)"
    cargo build --release --locked --quiet
    CWTAP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cwtap"
fi
CWTAP="$CWTAP_BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cwtap-bench.XXXXXX")"
RESULTS="$WORK/results.md"
PIDS=()     # every background process of this script
PIDFILES=() # children of the supervisor (cwtap), in case it is killed first

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do # 10 s, then KILL
        kill -0 "$pid" 2>/dev/null || break
        if [[ "$i" == 100 ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}
stop_all() {
    local pid f
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for f in "${PIDFILES[@]}"; do
        if [[ -s "$f" ]]; then stop_pid "$(cat "$f")"; fi
    done
    PIDS=()
    PIDFILES=()
}
cleanup() {
    stop_all
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port pid what
    local i
    for i in $(seq 1 300); do # 30 s
        if ! kill -0 "$2" 2>/dev/null; then break; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "error: $3 did not listen on 127.0.0.1:$1" >&2
    return 1
}

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

MOTO_PID=""
start_moto() { # dir
    local port
    port="$(tool freeport)"
    MOTO_RECORDING="$1/moto-recording.jsonl"
    # FilterLogEvents pages end at 1 MB as CloudWatch's do (moto's hold
    # 10,000 events whatever their size); CWTAP_BENCH_PAGE_BYTES=0 keeps
    # moto's pages.
    MOTO_RECORDER_FILEPATH="$MOTO_RECORDING" "${TOOLS[@]}" moto --host 127.0.0.1 --port "$port" \
        --page-bytes "${CWTAP_BENCH_PAGE_BYTES:-1048576}" >"$1/moto.log" 2>&1 &
    MOTO_PID=$!
    PIDS+=("$MOTO_PID")
    wait_port "$port" "$MOTO_PID" moto_server
    MOTO_URL="http://127.0.0.1:$port"
    export AWS_ENDPOINT_URL="$MOTO_URL"
}

RECEIVER_PID=""
start_receiver() {
    local port
    port="$(tool freeport)"
    "${TOOLS[@]}" receiver --port "$port" &
    RECEIVER_PID=$!
    PIDS+=("$RECEIVER_PID")
    wait_port "$port" "$RECEIVER_PID" receiver
    RECEIVER_URL="http://127.0.0.1:$port"
}
receiver_stats() { curl -sf "$RECEIVER_URL/_bench/stats"; }
receiver_dump() { curl -sf -X POST -H 'Content-Type: application/json' -d "{\"path\": \"$1\"}" "$RECEIVER_URL/_bench/dump" >/dev/null; }

# moto's request recorder, for counting the API calls of one run.
recorder_start() {
    curl -sf -X POST "$MOTO_URL/moto-api/recorder/reset-recording" >/dev/null
    curl -sf -X POST "$MOTO_URL/moto-api/recorder/start-recording" >/dev/null
}
recorder_stop() { curl -sf -X POST "$MOTO_URL/moto-api/recorder/stop-recording" >/dev/null; }

row() { printf '| %s | %s | %s | %s |\n' "$@" >>"$RESULTS"; }

# aws.rate_limits exists only in a cwtap that has the shared API rate budget.
RATE_BUDGET="none: this cwtap has no aws.rate_limits"
AWS_EXTRA=""
if grep -q 'rate_limits' "$ROOT/config.example.yaml"; then
    if [[ -n "$BENCH_FILTER_RATE" ]]; then
        AWS_EXTRA="  rate_limits: {filter_log_events: $BENCH_FILTER_RATE}"
        RATE_BUDGET="FilterLogEvents $BENCH_FILTER_RATE/s (BENCH_FILTER_RATE)"
    else
        RATE_BUDGET="the default of aws.rate_limits ($(grep -o 'filter_log_events: *[0-9.]*' "$ROOT/config.example.yaml" | head -1))"
    fi
elif [[ -n "$BENCH_FILTER_RATE" ]]; then
    echo "warning: BENCH_FILTER_RATE ignored: this cwtap has no aws.rate_limits" >&2
fi

# config DIR OUTPUT-YAML GROUPS-YAML [AGENT-EXTRA-YAML]
write_config() {
    cat >"$1/config.yaml" <<YAML
aws:
  region: us-east-1
$AWS_EXTRA
$2
log_groups:
$3
agent:
  state_path: $1/state.db
${4:-}
${BENCH_AGENT_EXTRA:-}
YAML
    "$CWTAP" check --config "$1/config.yaml" >/dev/null
}

cwtap_logs=(--log-format json --log-level "info,cwtap::source=debug")

# ------------------------------------------------------------ backfill

# Starts moto under DIR and puts the backfill data into it: BENCH_EVENTS
# events spread evenly over the last BENCH_SPAN_SECS, in BENCH_BACKFILL_GROUPS
# groups named PREFIX000... of BENCH_STREAMS streams each.
seed_backfill() { # dir prefix phase
    local dir="$1" seeded started seed_s
    step "$3: moto, $BENCH_EVENTS events over ${BENCH_SPAN_SECS}s in $BENCH_BACKFILL_GROUPS groups x $BENCH_STREAMS streams"
    start_moto "$dir"
    tool fixture --out "$dir/fixture.ndjson" --prefix "$2" --groups "$BENCH_BACKFILL_GROUPS" --streams "$BENCH_STREAMS" \
        --events "$BENCH_EVENTS" --span "$BENCH_SPAN_SECS" >/dev/null
    started="$(now_ms)"
    seeded="$("$CWTAP" --log-level warn replay "$dir/fixture.ndjson" --to cloudwatch --create --rebase now --speed max --json)"
    seed_s="$(calc "($(now_ms) - $started) / 1000")"
    if [[ "$(jget "$seeded" accepted)" != "$BENCH_EVENTS" ]]; then
        echo "error: moto accepted $(jget "$seeded" accepted) of $BENCH_EVENTS events" >&2
        return 1
    fi
    row "$3" "seeding $BENCH_EVENTS events, $BENCH_BACKFILL_GROUPS groups x $BENCH_STREAMS streams (cwtap replay --speed max)" \
        "$(printf '%.1f s' "$seed_s")" "moto PutLogEvents"
}

phase_backfill() {
    local dir="$WORK/backfill" since groups_yaml out
    mkdir -p "$dir"
    seed_backfill "$dir" /bench/backfill/ backfill
    since="$((BENCH_SPAN_SECS + 600))s"
    groups_yaml="  - prefix: /bench/backfill/
    parsers: [{use: json}]"

    # The default config into each output, then NDJSON without trace grouping
    # (agent.group_traces: false) to show what grouping costs.
    for out in ndjson vectadb "ndjson, group_traces: false"; do
        rm -f "$dir/state.db"* "$dir/events.ndjson"
        case "$out" in
        ndjson) write_config "$dir" "ndjson: {path: $dir/events.ndjson}" "$groups_yaml" ;;
        vectadb)
            start_receiver
            write_config "$dir" "vectadb: {endpoint: \"$RECEIVER_URL\"}" "$groups_yaml"
            ;;
        *) write_config "$dir" "ndjson: {path: $dir/events.ndjson}" "$groups_yaml" "  group_traces: false" ;;
        esac
        recorder_start
        local moto_cpu0 recv_cpu0=0 usage delivered summaries calls moto_cpu recv_cpu wall cpu
        moto_cpu0="$(tool cpu "$MOTO_PID")"
        if [[ -n "$RECEIVER_PID" ]]; then recv_cpu0="$(tool cpu "$RECEIVER_PID")"; fi
        step "backfill: cwtap backfill --since $since -> $out"
        tool supervise --out "$dir/usage.json" --stderr "$dir/cwtap-${out%%,*}.log" -- \
            "$CWTAP" "${cwtap_logs[@]}" backfill --config "$dir/config.yaml" --since "$since" --no-progress
        recorder_stop
        moto_cpu="$(calc "$(tool cpu "$MOTO_PID") - $moto_cpu0")"
        if [[ "$out" != vectadb ]]; then
            local counted
            counted="$(tool ndjson-count "$dir/events.ndjson")"
            delivered="$(jget "$counted" events)"
            summaries="$(jget "$counted" summaries)"
            recv_cpu=""
        else
            local stats
            stats="$(receiver_stats)"
            delivered="$(jget "$stats" events)"
            summaries="$(jget "$stats" summaries)"
            recv_cpu="$(calc "$(tool cpu "$RECEIVER_PID") - $recv_cpu0")"
            stop_pid "$RECEIVER_PID"
            RECEIVER_PID=""
        fi
        if [[ "$delivered" != "$BENCH_EVENTS" ]]; then
            echo "error: backfill to $out delivered $delivered of $BENCH_EVENTS events" >&2
            return 1
        fi
        usage="$(cat "$dir/usage.json")"
        calls="$(tool recording "$MOTO_RECORDING")"
        wall="$(jget "$usage" wall_s)"
        cpu="$(calc "$(jget "$usage" user_s) + $(jget "$usage" sys_s)")"
        local filter
        filter="$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1]).get("FilterLogEvents", 0))' "$calls")"
        row "backfill -> $out" "events/s (wall, whole process)" "$(printf '%.0f' "$(calc "$delivered / $wall")")" \
            "$delivered events + $summaries trace summaries in $(printf '%.1f' "$wall") s"
        row "backfill -> $out" "cwtap CPU s per 100,000 events (user+sys)" \
            "$(printf '%.2f' "$(calc "$cpu / $delivered * 100000")")" \
            "moto used $(printf '%.1f' "$moto_cpu") CPU s${recv_cpu:+, receiver $(printf '%.1f' "$recv_cpu") CPU s}"
        row "backfill -> $out" "cwtap peak RSS" "$(printf '%.1f MB' "$(calc "$(jget "$usage" maxrss_kb) * 1024 / 1e6")")" "getrusage ru_maxrss (VmHWM); MB = 10^6 bytes"
        row "backfill -> $out" "API calls per 10,000 events" "$(printf '%.2f' "$(calc "$filter / $delivered * 10000")")" \
            "counted at moto: $calls"
    done
    stop_all
}

# ------------------------------------------------------------ live and outage

# Starts moto, the receiver and `cwtap run` on BENCH_GROUPS groups under DIR;
# sets CWTAP_SUP (the supervisor's pid) and METRICS_URL.
start_agent() { # dir prefix
    local dir="$1" prefix="$2" mport poll_yaml="" i
    start_moto "$dir"
    start_receiver
    tool groups-fixture --out "$dir/groups.ndjson" --prefix "$prefix" --groups "$BENCH_GROUPS"
    "$CWTAP" --log-level warn replay "$dir/groups.ndjson" --to cloudwatch --create --rebase now --speed max --json >/dev/null
    mport="$(tool freeport)"
    METRICS_URL="http://127.0.0.1:$mport"
    if [[ -n "$BENCH_POLL_SECS" ]]; then poll_yaml="  poll_interval_secs: $BENCH_POLL_SECS"; fi
    write_config "$dir" "vectadb: {endpoint: \"$RECEIVER_URL\"}" "  - prefix: $prefix
    parsers: [{use: json}]" "  listen: 127.0.0.1:$mport
$poll_yaml"
    POLL_SECS="$("$CWTAP" check --config "$dir/config.yaml" | "$PY" -c '
import re, sys
m = re.search(r"poll every ([0-9.]+)(ms|s)\b", sys.stdin.read())
print("" if not m else float(m.group(1)) / (1000 if m.group(2) == "ms" else 1))')"
    POLL_SECS="${POLL_SECS:-${BENCH_POLL_SECS:-10}}"
    "${TOOLS[@]}" supervise --out "$dir/usage.json" --samples "$dir/rss.txt" --pidfile "$dir/cwtap.pid" \
        --stderr "$dir/cwtap.log" -- "$CWTAP" "${cwtap_logs[@]}" run --config "$dir/config.yaml" &
    CWTAP_SUP=$!
    PIDS+=("$CWTAP_SUP")
    PIDFILES+=("$dir/cwtap.pid")
    for i in $(seq 1 600); do # 60 s
        if curl -sf "$METRICS_URL/readyz" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$CWTAP_SUP" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "error: cwtap run did not become ready; its log: $dir/cwtap.log" >&2
    tail -20 "$dir/cwtap.log" >&2
    return 1
}

# Starts the writer: BENCH_RATE events/s for SECONDS into the groups, the
# first event's timestamp at the start; sets WRITER_PID, WRITE_START_MS, EXPECTED.
start_writer() { # dir prefix seconds
    local dir="$1" made span rebase
    made="$(tool fixture --out "$dir/live.ndjson" --prefix "$2" --groups "$BENCH_GROUPS" --rate "$BENCH_RATE" --seconds "$3")"
    EXPECTED="$(jget "$made" events)"
    span="$(jget "$made" span_ms)"
    WRITE_START_MS="$(now_ms)"
    rebase="$(rfc3339_ms "$((WRITE_START_MS + span))")"
    "$CWTAP" --log-level warn replay "$dir/live.ndjson" --to cloudwatch --rebase "$rebase" --speed 1 --json >"$dir/writer.json" 2>"$dir/writer.log" &
    WRITER_PID=$!
    PIDS+=("$WRITER_PID")
}

sleep_until() { # epoch ms
    local left
    left="$(($1 - $(now_ms)))"
    if ((left > 0)); then sleep "$(calc "$left / 1000")"; fi
}

# Waits until the receiver holds EXPECTED distinct events (or DRAIN seconds).
drain() {
    local deadline
    deadline="$(($(now_ms) + BENCH_DRAIN_SECS * 1000))"
    while (($(now_ms) < deadline)); do
        if (($(jget "$(receiver_stats)" distinct_seq) >= EXPECTED)); then return 0; fi
        sleep 0.5
    done
    echo "warning: not every event arrived within ${BENCH_DRAIN_SECS}s of the writer's end" >&2
}

writer_rate() { # dir seconds
    local report
    report="$(cat "$1/writer.json")"
    printf '%s of %s events accepted by moto' "$(jget "$report" accepted)" "$(jget "$report" events)"
}

phase_live() {
    local dir="$WORK/live" total t0 t1 m0 m1 done_ms usage delivery windows
    mkdir -p "$dir"
    step "live: moto, receiver, cwtap run on $BENCH_GROUPS groups"
    start_agent "$dir" /bench/live/
    total="$((BENCH_WARMUP_SECS + BENCH_LIVE_SECS))"
    step "live: writer at $BENCH_RATE events/s for ${total}s (the first ${BENCH_WARMUP_SECS}s are warm-up)"
    start_writer "$dir" /bench/live/ "$total"
    local moto_cpu0 recv_cpu0
    t0="$((WRITE_START_MS + BENCH_WARMUP_SECS * 1000))"
    t1="$((WRITE_START_MS + total * 1000))"
    sleep_until "$t0"
    m0="$(tool scrape "$METRICS_URL/metrics")"
    moto_cpu0="$(tool cpu "$MOTO_PID")"
    recv_cpu0="$(tool cpu "$RECEIVER_PID")"
    sleep_until "$t1"
    m1="$(tool scrape "$METRICS_URL/metrics")"
    local moto_cpu recv_cpu
    moto_cpu="$(calc "$(tool cpu "$MOTO_PID") - $moto_cpu0")"
    recv_cpu="$(calc "$(tool cpu "$RECEIVER_PID") - $recv_cpu0")"
    wait "$WRITER_PID" || true
    drain
    done_ms="$(now_ms)"
    stop_pid "$CWTAP_SUP"
    receiver_dump "$dir/received.jsonl"
    usage="$(cat "$dir/usage.json")"
    delivery="$(tool delivery "$dir/received.jsonl" --expected "$EXPECTED" --since-ms "$t0" --until-ms "$t1")"
    windows="$(tool windows "$dir/cwtap.log" --since-ms "$(jget "$m0" at_ms)" --until-ms "$(jget "$m1" at_ms)")"
    local calls zero pages rereads pulled newly secs
    secs="$(calc "($(jget "$m1" at_ms) - $(jget "$m0" at_ms)) / 1000")"
    calls="$(calc "int($(jget "$m1" cwtap_api_calls:FilterLogEvents) - $(jget "$m0" cwtap_api_calls:FilterLogEvents))")"
    rereads="$(calc "int($(jget "$m1" cwtap_overlap_rereads) - $(jget "$m0" cwtap_overlap_rereads))")"
    pulled="$(calc "int($(jget "$m1" cwtap_events_pulled) - $(jget "$m0" cwtap_events_pulled))")"
    newly="$(calc "int($(jget "$m1" cwtap_events_delivered) - $(jget "$m0" cwtap_events_delivered))")"
    zero="$(jget "$windows" zero_overlap_pages)"
    local p="live ($BENCH_GROUPS groups, $BENCH_RATE ev/s, poll ${POLL_SECS}s)"
    row "$p" "rate budget in force" "$RATE_BUDGET" ""
    row "$p" "delivery latency p50 / p99 (arrival - event timestamp)" \
        "$(printf '%.2f s / %.2f s' "$(calc "$(jget "$delivery" p50_ms) / 1000")" "$(calc "$(jget "$delivery" p99_ms) / 1000")")" \
        "$(jget "$delivery" latency_n) events of the last ${BENCH_LIVE_SECS}s; max $(printf '%.2f' "$(calc "$(jget "$delivery" max_ms) / 1000")") s; target p99 < poll + 2 s = $(calc "$POLL_SECS + 2") s"
    row "$p" "latency p50 / p99 from CloudWatch ingestion time" \
        "$(printf '%.2f s / %.2f s' "$(calc "$(jget "$delivery" ingest_p50_ms) / 1000")" "$(calc "$(jget "$delivery" ingest_p99_ms) / 1000")")" \
        "without the writer's own lag"
    row "$p" "cwtap peak RSS" "$(printf '%.1f MB' "$(calc "$(jget "$usage" maxrss_kb) * 1024 / 1e6")")" "target < 50 MB"
    row "$p" "cwtap CPU (user+sys), whole run" \
        "$(printf '%.1f s' "$(calc "$(jget "$usage" user_s) + $(jget "$usage" sys_s)")")" \
        "$(printf '%.0f s wall, %s events delivered: %.2f CPU s per 100,000 events' "$(jget "$usage" wall_s)" "$(jget "$delivery" received)" \
            "$(calc "($(jget "$usage" user_s) + $(jget "$usage" sys_s)) / max($(jget "$delivery" received), 1) * 100000")")"
    pages="$(jget "$windows" pages)"
    row "$p" "FilterLogEvents calls, steady state" "$calls in $(printf '%.0f' "$secs") s" \
        "cwtap_api_calls_total; $(jget "$windows" windows) windows scanned in it took $pages pages; $newly events delivered, $pulled pulled, $rereads re-read and skipped"
    row "$p" "extra calls from overlap re-reads" \
        "$(printf '%+d (%.1f%%)' "$((pages - zero))" "$(calc "100 * ($pages - $zero) / max($zero, 1)")")" \
        "$pages pages vs $zero for the same windows without re-reads (1 per 10,000 new events, >= 1 per window); target < 10%"
    row "$p" "events read again (re-read / delivered)" "$(printf '%.0f%%' "$(calc "100 * $rereads / max($newly, 1)")")" "data cost of the overlap"
    row "$p" "lost / duplicated" "$(jget "$delivery" lost) / $(jget "$delivery" duplicates)" \
        "$(writer_rate "$dir"); drained $(printf '%.1f' "$(calc "($done_ms - $t1) / 1000")") s after the writer's end"
    row "$p" "moto / receiver CPU, steady state" \
        "$(printf '%.0f%% / %.0f%% of a core' "$(calc "100 * $moto_cpu / $secs")" "$(calc "100 * $recv_cpu / $secs")")" ""
    stop_all
}

phase_outage() {
    local dir="$WORK/outage" total on_ms off_ms done_ms delivery usage stats
    mkdir -p "$dir"
    step "outage: moto, receiver, cwtap run on $BENCH_GROUPS groups"
    start_agent "$dir" /bench/outage/
    total="$((BENCH_OUTAGE_PRE_SECS + BENCH_OUTAGE_SECS + BENCH_OUTAGE_POST_SECS))"
    step "outage: writer at $BENCH_RATE events/s for ${total}s; receiver answers 503 from ${BENCH_OUTAGE_PRE_SECS}s for ${BENCH_OUTAGE_SECS}s"
    start_writer "$dir" /bench/outage/ "$total"
    on_ms="$((WRITE_START_MS + BENCH_OUTAGE_PRE_SECS * 1000))"
    off_ms="$((on_ms + BENCH_OUTAGE_SECS * 1000))"
    sleep_until "$on_ms"
    curl -sf -X POST "$RECEIVER_URL/_bench/outage/on" >/dev/null
    on_ms="$(now_ms)"
    sleep_until "$off_ms"
    curl -sf -X POST "$RECEIVER_URL/_bench/outage/off" >/dev/null
    off_ms="$(now_ms)"
    wait "$WRITER_PID" || true
    drain
    done_ms="$(now_ms)"
    stats="$(receiver_stats)"
    stop_pid "$CWTAP_SUP"
    receiver_dump "$dir/received.jsonl"
    usage="$(cat "$dir/usage.json")"
    delivery="$(tool delivery "$dir/received.jsonl" --expected "$EXPECTED")"
    local p="outage ($BENCH_GROUPS groups, $BENCH_RATE ev/s, 503 for ${BENCH_OUTAGE_SECS}s)"
    row "$p" "cwtap max RSS before / during / after the outage" \
        "$(tool rss "$dir/rss.txt" --since-ms 0 --until-ms "$on_ms") / $(tool rss "$dir/rss.txt" --since-ms "$on_ms" --until-ms "$off_ms") / $(tool rss "$dir/rss.txt" --since-ms "$off_ms" --until-ms "$((done_ms + 1))") MB" \
        "VmRSS sampled every second; peak over the run $(printf '%.1f' "$(calc "$(jget "$usage" maxrss_kb) * 1024 / 1e6")") MB"
    row "$p" "503 answers during the outage" "$(jget "$stats" requests 503)" "retried with backoff (cap vectadb.max_backoff_secs, default 60 s)"
    row "$p" "all delivered after the outage's end" "$(printf '%.1f s' "$(calc "($done_ms - $off_ms) / 1000")")" \
        "writer ran until $(printf '%.0f' "$(calc "$BENCH_OUTAGE_POST_SECS")") s after it"
    row "$p" "lost / duplicated" "$(jget "$delivery" lost) / $(jget "$delivery" duplicates)" \
        "$(writer_rate "$dir"); $(jget "$delivery" distinct_seq) distinct events received"
    stop_all
}

# ------------------------------------------------------------ compare

# The VectaDB agent's config for the compare data: the same groups (it takes
# names, not prefixes), its JSON rule (it has no Lambda rules), a lookback
# that reaches the oldest seeded event, everything else its defaults.
write_agent_config() { # dir
    local g
    {
        echo "aws: {region: us-east-1}"
        echo "vectadb: {endpoint: \"$RECEIVER_URL\", batch_size: 100, timeout_secs: 30}"
        echo "log_groups:"
        for g in $(seq 0 $((BENCH_BACKFILL_GROUPS - 1))); do
            printf '  - name: /bench/compare/%03d\n    parsers: [{name: json, type: json, priority: 10}]\n' "$g"
        done
        echo "agent: {poll_interval_secs: 10, lookback_secs: $((BENCH_SPAN_SECS + 600)), auto_create_traces: true, generate_embeddings: true}"
    } >"$1/agent.yaml"
}

# The rows of one compare run, from the receiver's records, the run's usage
# and moto's recording. The wall time is from the start of the process to the
# last event at the receiver: the agent never exits by itself.
compare_rows() { # dir name label note
    local dir="$1" delivery usage calls filter received wall cpu summaries
    summaries="$(jget "$(receiver_stats)" summaries)"
    receiver_dump "$dir/received-$2.jsonl"
    delivery="$(tool delivery "$dir/received-$2.jsonl" --expected "$BENCH_EVENTS")"
    usage="$(cat "$dir/usage-$2.json")"
    calls="$(tool recording "$MOTO_RECORDING")"
    filter="$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1]).get("FilterLogEvents", 0))' "$calls")"
    received="$(jget "$delivery" distinct_seq)"
    cpu="$(calc "$(jget "$usage" user_s) + $(jget "$usage" sys_s)")"
    wall="$(calc "($(jget "$delivery" last_arrival_ms) - $(jget "$usage" started_ms)) / 1000")"
    local p="compare: $3"
    row "$p" "events delivered / lost / duplicated" \
        "$received of $BENCH_EVENTS / $(jget "$delivery" lost) / $(jget "$delivery" duplicates)" \
        "$(jget "$delivery" received) records and $summaries trace summaries; duplicates by (log_group, log_id), $(jget "$delivery" seq_duplicates) by seq"
    local left=""
    if [[ "$2" == cwtap-* && -f "$dir/state.db" ]]; then
        left="; trace journal left unfolded: $(mb_bytes "$(jget "$(tool journal-left "$dir/state.db")" journal_bytes)")"
    fi
    row "$p" "CPU s per 100,000 events delivered (user+sys)" \
        "$(printf '%.2f' "$(calc "$cpu / max($received, 1) * 100000")")" "$(printf '%.2f CPU s in all' "$cpu")$4$left"
    row "$p" "peak RSS" "$(mb "$(jget "$usage" maxrss_kb)")" "getrusage ru_maxrss (VmHWM)"
    row "$p" "wall time to the last event at the receiver" "$(printf '%.1f s' "$wall")" \
        "$(printf '%.0f events/s; the process ran %.1f s' "$(calc "$received / max($wall, 0.001)")" "$(jget "$usage" wall_s)")"
    row "$p" "FilterLogEvents calls" "$filter" "counted at moto: $calls"
    if [[ -s "$dir/callgrind-$2.out" ]]; then
        local ir
        ir="$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind-$2.out")"
        row "$p" "instructions per event delivered (callgrind)" \
            "$(printf '%.0f' "$(calc "${ir:-0} / max($received, 1)")")" \
            "$(printf '%.0f M instructions in all, every thread' "$(calc "${ir:-0} / 1e6")")"
    fi
}

# `cwtap backfill` by BINARY of the compare data (seeded into moto under
# /bench/compare/) from a fresh state file into a fresh receiver, which is
# left running. EXTRA is a line for its config's agent section; what
# follows is a command prefix (callgrind).
# COMPARE_VECTADB, when set, is added to the config's `vectadb` section.
compare_backfill() { # dir name binary since extra [prefix...]
    local dir="$1" name="$2" bin="$3" since="$4" extra="$5"
    shift 5
    rm -f "$dir/state.db"*
    start_receiver
    write_config "$dir" "vectadb: {endpoint: \"$RECEIVER_URL\"${COMPARE_VECTADB:+, $COMPARE_VECTADB}}" "  - prefix: /bench/compare/
    parsers: [{use: json}, {use: lambda}]" "$extra"
    tool supervise --out "$dir/usage-$name.json" --stderr "$dir/$name.log" -- \
        "$@" "$bin" "${cwtap_logs[@]}" backfill --config "$dir/config.yaml" --since "$since" --no-progress
}

# The command prefix that runs NAME under callgrind (BENCH_CALLGRIND=1).
callgrind_wrap() { # dir name
    if [[ "${BENCH_CALLGRIND:-0}" == 1 ]]; then
        printf '%s\n' valgrind --tool=callgrind --quiet "--callgrind-out-file=$1/callgrind-$2.out"
    fi
}

phase_compare() {
    local dir="$WORK/compare" since variant name sup i errors cycles deadline label extra wrap
    mkdir -p "$dir"
    if [[ ! -x "$VECTADB_AGENT_BIN" ]]; then
        echo "error: no VectaDB agent at $VECTADB_AGENT_BIN (set VECTADB_AGENT_BIN)" >&2
        return 1
    fi
    seed_backfill "$dir" /bench/compare/ compare
    since="$((BENCH_SPAN_SECS + 600))s"
    row "compare" "machine speed: CPU s of a fixed workload" "$(tool calibrate)" \
        "scripts/bench_tools.py calibrate, before the runs; lower is faster (BENCHMARKS.md)"

    # cwtap as configured for the comparison, then without trace grouping
    # (the agent has none) to show what grouping costs.
    for variant in grouping nogrouping; do
        name="cwtap-$variant"
        label="cwtap backfill (json + lambda rules, trace grouping)"
        extra=""
        if [[ "$variant" == nogrouping ]]; then
            label="cwtap backfill (json + lambda rules, group_traces: false)"
            extra="  group_traces: false"
        fi
        step "compare: cwtap backfill --since $since -> receiver ($variant)"
        recorder_start
        mapfile -t wrap < <(callgrind_wrap "$dir" "$name")
        compare_backfill "$dir" "$name" "$CWTAP" "$since" "$extra" "${wrap[@]}"
        recorder_stop
        compare_rows "$dir" "$name" "$label" "; log $(du -k "$dir/$name.log" | cut -f1) kB"
        stop_pid "$RECEIVER_PID"
    done

    # The agent has no exit: it is done with the seeded data once its second
    # poll cycle ends (the windows after the first start after every seeded
    # event), and then stopped. As shipped it logs every event at debug level
    # (its default filter is "info,vectadb_cloudwatch_agent=debug" when
    # RUST_LOG is unset); RUST_LOG=info turns that off. It logs to stdout.
    for variant in shipped info; do
        name="agent-$variant"
        step "compare: VectaDB agent ($variant) -> receiver"
        start_receiver
        write_agent_config "$dir"
        recorder_start
        rm -f "$dir/$name.pid"
        mapfile -t wrap < <(callgrind_wrap "$dir" "$name")
        (
            # Its working directory: it reads a .env from there (dotenvy).
            cd "$dir"
            if [[ "$variant" == shipped ]]; then
                exec env -u RUST_LOG CONFIG_PATH="$dir/agent.yaml" "${TOOLS[@]}" supervise --out "$dir/usage-$name.json" \
                    --pidfile "$dir/$name.pid" --stdout "$dir/$name.log" --stderr "$dir/$name.err" -- "${wrap[@]}" "$VECTADB_AGENT_BIN"
            else
                exec env RUST_LOG=info CONFIG_PATH="$dir/agent.yaml" "${TOOLS[@]}" supervise --out "$dir/usage-$name.json" \
                    --pidfile "$dir/$name.pid" --stdout "$dir/$name.log" --stderr "$dir/$name.err" -- "${wrap[@]}" "$VECTADB_AGENT_BIN"
            fi
        ) &
        sup=$!
        PIDS+=("$sup")
        PIDFILES+=("$dir/$name.pid")
        deadline="$(($(now_ms) + BENCH_AGENT_WAIT_SECS * 1000))"
        cycles=0
        while (($(now_ms) < deadline)); do
            cycles="$(grep -c 'Poll cycle complete' "$dir/$name.log" 2>/dev/null || true)"
            if ((cycles >= 2)) || ! kill -0 "$sup" 2>/dev/null; then break; fi
            sleep 0.5
        done
        if ((cycles < 2)); then
            echo "warning: the VectaDB agent ($variant) ended $cycles poll cycles in ${BENCH_AGENT_WAIT_SECS}s; its log: $dir/$name.log $dir/$name.err" >&2
            tail -5 "$dir/$name.err" >&2 || true
        fi
        stop_pid "$sup"
        recorder_stop
        i="$(grep -c 'Reached safety limit' "$dir/$name.log" || true)"
        errors="$(grep -c '"level":"ERROR"' "$dir/$name.log" || true)"
        label="VectaDB agent, RUST_LOG=info"
        if [[ "$variant" == shipped ]]; then label="VectaDB agent, as shipped (per-event debug log)"; fi
        compare_rows "$dir" "$name" "$label" \
            "; $cycles poll cycles, $errors errors logged; log $(du -k "$dir/$name.log" | cut -f1) kB; its 10,000-event cap hit $i times"
        stop_pid "$RECEIVER_PID"
    done
    stop_all
}

# ------------------------------------------------------------ pairs

phase_pairs() {
    local dir="$WORK/pairs" since round v label rest bin extra name usage delivery cpu left
    local -a variants labels
    local -A cpu_of user_of sys_of rss_of exact_of left_of
    local calibration=
    mkdir -p "$dir"
    IFS=';' read -r -a variants <<<"${BENCH_PAIRS:-cwtap=$CWTAP}"
    seed_backfill "$dir" /bench/compare/ pairs
    since="$((BENCH_SPAN_SECS + 600))s"
    for round in $(seq 1 "$BENCH_PAIRS_ROUNDS"); do
        calibration+="${calibration:+, }$(tool calibrate)"
        for v in "${variants[@]}"; do
            label="${v%%=*}"
            rest="${v#*=}"
            COMPARE_VECTADB=""
            if [[ "$rest" == *+* ]]; then
                COMPARE_VECTADB="${rest#*+}"
                rest="${rest%%+*}"
            fi
            bin="${rest%%@*}"
            extra=""
            if [[ "$rest" == *@* ]]; then extra="  ${rest#*@}"; fi
            if ((round == 1)); then labels+=("$label"); fi
            name="pairs-$label-$round"
            step "pairs: round $round of $BENCH_PAIRS_ROUNDS, $label"
            compare_backfill "$dir" "$name" "$bin" "$since" "$extra"
            receiver_dump "$dir/received-$name.jsonl"
            stop_pid "$RECEIVER_PID"
            delivery="$(tool delivery "$dir/received-$name.jsonl" --expected "$BENCH_EVENTS")"
            usage="$(cat "$dir/usage-$name.json")"
            cpu="$(calc "$(jget "$usage" user_s) + $(jget "$usage" sys_s)")"
            cpu_of[$label]+="${cpu_of[$label]:+, }$(printf '%.2f' "$(calc "$cpu / max($(jget "$delivery" distinct_seq), 1) * 100000")")"
            user_of[$label]+="${user_of[$label]:+, }$(printf '%.2f' "$(jget "$usage" user_s)")"
            sys_of[$label]+="${sys_of[$label]:+, }$(printf '%.2f' "$(jget "$usage" sys_s)")"
            rss_of[$label]+="${rss_of[$label]:+, }$(mb "$(jget "$usage" maxrss_kb)")"
            exact_of[$label]+="${exact_of[$label]:+, }$(jget "$delivery" distinct_seq)/$(jget "$delivery" lost)/$(jget "$delivery" duplicates)"
            left="$(tool journal-left "$dir/state.db")"
            left_of[$label]+="${left_of[$label]:+, }$(mb_bytes "$(jget "$left" journal_bytes)")"
        done
    done
    COMPARE_VECTADB=""
    row "pairs" "machine speed before each round: CPU s of a fixed workload" "$calibration" \
        "scripts/bench_tools.py calibrate; lower is faster (BENCHMARKS.md)"
    for label in "${labels[@]}"; do
        row "pairs: $label" "CPU s per 100,000 events delivered, round by round" "${cpu_of[$label]}" \
            "user ${user_of[$label]}; system ${sys_of[$label]}"
        row "pairs: $label" "peak RSS, round by round" "${rss_of[$label]}" "getrusage ru_maxrss (VmHWM)"
        row "pairs: $label" "delivered / lost / duplicated, round by round" "${exact_of[$label]}" "of $BENCH_EVENTS"
        row "pairs: $label" "trace journal left unfolded at the end, round by round" "${left_of[$label]}" \
            "a fold starts at 8 MiB; a run that left one has not paid for that fold (BENCHMARKS.md)"
    done
    stop_all
}

# ------------------------------------------------------------ windows

# `cwtap backfill` over LABEL's data (already in moto) into NDJSON, bounded
# by BENCH_WINDOWS_TIMEOUT: FilterLogEvents calls per group against the
# pages the events take, wall time, exactly-once. MADE is the JSON with the
# events per group (sparse-fixture / create-groups); EXPECTED events in all.
windows_backfill() { # dir label groups-yaml since expected made [run-name]
    local dir="$1" run="${7:-backfill}" usage calls summary check wall calls_n rate p
    touch "$dir/events.ndjson"
    recorder_start
    step "windows: $2: cwtap backfill --since $4${7:+ ($7)}"
    write_config "$dir" "ndjson: {path: $dir/events.ndjson}" "$3"
    tool supervise --timeout "$BENCH_WINDOWS_TIMEOUT" --out "$dir/usage-$run.json" --stderr "$dir/cwtap-$run.log" -- \
        "$CWTAP" "${cwtap_logs[@]}" backfill --config "$dir/config.yaml" --since "$4" --no-progress || true
    recorder_stop
    usage="$(cat "$dir/usage-$run.json")"
    calls="$(tool recording "$MOTO_RECORDING" --by-group)"
    echo "$calls" >"$dir/calls-$run.json"
    summary="$(tool calls-summary "$calls" --per-group "$6")"
    check="$(tool ndjson-delivery "$dir/events.ndjson" --expected "$5")"
    wall="$(jget "$usage" wall_s)"
    calls_n="$(jget "$summary" calls)"
    rate="${BENCH_FILTER_RATE:-5}"
    p="windows: $2${7:+ ($7)}"
    if [[ "$(jget "$usage" timed_out)" == True ]]; then
        row "$p" "TIMED OUT" "after ${BENCH_WINDOWS_TIMEOUT}s" "the numbers below are up to then"
    elif [[ "$(jget "$usage" exit)" != 0 ]]; then
        row "$p" "FAILED" "exit $(jget "$usage" exit)" "its log: cwtap-$run.log"
    fi
    row "$p" "FilterLogEvents calls" "$calls_n" \
        "$(jget "$summary" groups) groups, per group min / median / max $(jget "$summary" min) / $(jget "$summary" median) / $(jget "$summary" max); other calls $(jget "$summary" other_ops)"
    row "$p" "pages the events take (sum of ceil(events / 10,000) per group)" "$(jget "$summary" pages)" \
        "$(jget "$summary" pages_min1) with at least one call per group; calls / that = $(printf '%.1f' "$(calc "$calls_n / max($(jget "$summary" pages_min1), 1)")")"
    row "$p" "wall time of cwtap backfill" "$(printf '%.1f s' "$wall")" \
        "$(printf 'calls / %s per s = %.1f s; CPU %.1f s; peak RSS %s' "$rate" "$(calc "$calls_n / $rate")" \
            "$(calc "$(jget "$usage" user_s) + $(jget "$usage" sys_s)")" "$(mb "$(jget "$usage" maxrss_kb)")")"
    row "$p" "delivered / lost / duplicated" "$(jget "$check" distinct_ids) of $5 / $(jget "$check" lost) / $(jget "$check" duplicates)" \
        "NDJSON log events${7:+ of every run so far}; duplicates by (log_group, log_id), $(jget "$check" seq_duplicates) by seq"
}

# One sparse scenario: GROUPS groups x 4 streams, EVENTS events over SPAN
# seconds ending 5 minutes ago (`cwtap backfill --since 7d` must cover all of
# them), BURSTS dense 10-minute bursts holding SHARE of the events.
windows_sparse() { # name label groups events span bursts share
    local dir="$WORK/windows-$1" prefix="/bench/w-$1/" made seeded started
    mkdir -p "$dir"
    start_moto "$dir"
    made="$(tool sparse-fixture --out "$dir/fixture.ndjson" --prefix "$prefix" --groups "$3" --streams 4 \
        --events "$4" --span "$5" --bursts "$6" --burst-share "$7" --burst-secs 600)"
    started="$(now_ms)"
    seeded="$("$CWTAP" --log-level warn replay "$dir/fixture.ndjson" --to cloudwatch --create \
        --rebase "$(rfc3339_ms "$(($(now_ms) - 300000))")" --speed max --json)"
    if [[ "$(jget "$seeded" accepted)" != "$4" ]]; then
        echo "error: moto accepted $(jget "$seeded" accepted) of $4 events" >&2
        return 1
    fi
    row "windows: $2" "seeding (cwtap replay --speed max)" "$(printf '%.1f s' "$(calc "($(now_ms) - $started) / 1000")")" \
        "$4 events, $3 groups x 4 streams; per group $(jget "$made" per_group); bursts $(jget "$made" bursts)"
    windows_backfill "$dir" "$2" "  - prefix: $prefix
    parsers: [{use: json}, {use: lambda}]" 7d "$4" "$made"
    stop_all
}

windows_empty() {
    local dir="$WORK/windows-empty" prefix="/bench/w-empty/" made
    mkdir -p "$dir"
    start_moto "$dir"
    made="$(tool create-groups --prefix "$prefix" --groups "$BENCH_EMPTY_GROUPS" --streams 1)"
    windows_backfill "$dir" "$BENCH_EMPTY_GROUPS empty groups" "  - prefix: $prefix
    parsers: [{use: json}, {use: lambda}]" 7d 0 "$made"
    stop_all
}

# scripts/demo.sh's backfill steps (its fixture and config; the release
# build here, where the demo builds a debug one): the first run and the
# second, which has nothing new to deliver.
windows_demo() {
    local dir="$WORK/windows-demo" fixture="$ROOT/tests/fixtures/lambda-demo.ndjson" made n run groups_yaml
    mkdir -p "$dir"
    start_moto "$dir"
    "$CWTAP" --log-level warn replay "$fixture" --to cloudwatch --create --rebase now --speed max --json >/dev/null
    n="$(grep -c . "$fixture")"
    made="$("$PY" -c 'import collections, json, sys
c = collections.Counter(json.loads(l)["log_group"] for l in open(sys.argv[1]) if l.strip())
print(json.dumps({"per_group": c}))' "$fixture")"
    groups_yaml="  - prefix: /aws/lambda/
    parsers: [{use: xray}, {use: lambda}, {use: json}]
  - prefix: /aws/apigateway/
    parsers: [{use: apigateway}]"
    for run in first second; do
        windows_backfill "$dir" "scripts/demo.sh data ($n events, 3 groups)" "$groups_yaml" 7d "$n" "$made" "$run"
    done
    stop_all
}

phase_windows() {
    local s
    for s in $BENCH_WINDOWS; do
        case "$s" in
        sparse) windows_sparse sparse "$BENCH_SPARSE_GROUPS groups, $BENCH_SPARSE_EVENTS events over 6 days" \
            "$BENCH_SPARSE_GROUPS" "$BENCH_SPARSE_EVENTS" $((6 * 86400)) 2 0.5 ;;
        empty) windows_empty ;;
        # 7 days less an hour, so that every event is inside --since 7d.
        busy) windows_sparse busy "$BENCH_BUSY_GROUPS groups, $BENCH_BUSY_EVENTS events over 7 days" \
            "$BENCH_BUSY_GROUPS" "$BENCH_BUSY_EVENTS" $((7 * 86400 - 3600)) 4 0.6 ;;
        demo) windows_demo ;;
        *)
            echo "error: unknown BENCH_WINDOWS scenario $s (sparse, empty, busy, demo)" >&2
            return 1
            ;;
        esac
    done
}

{
    echo "| phase | measure | result | notes |"
    echo "|---|---|---|---|"
} >"$RESULTS"
BENCH_STARTED="$(now_ms)"
for phase in "${PHASES[@]}"; do
    case "$phase" in
    all)
        phase_backfill
        phase_live
        phase_outage
        ;;
    *) "phase_$phase" ;;
    esac
done

echo
echo "cwtap $("$CWTAP" --version 2>/dev/null | awk '{print $2}'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), bench took $(($(($(now_ms) - BENCH_STARTED)) / 1000)) s${_RJEM_MALLOC_CONF:+, _RJEM_MALLOC_CONF=$_RJEM_MALLOC_CONF}"
echo
cat "$RESULTS"
