#!/usr/bin/env python3
"""Load an NDJSON fixture of captured CloudWatch Logs events into a CloudWatch
Logs endpoint (moto, LocalStack or, with care, real AWS).

Each fixture line is one JSON object with the keys log_group, log_stream,
timestamp (epoch ms), ingestion_time (epoch ms), event_id and message.
CloudWatch assigns its own event ids and ingestion times, so only log_group,
log_stream, timestamp and message are sent.

    scripts/load_fixture.py --endpoint http://127.0.0.1:5000 --region us-east-1 \\
        tests/fixtures/lambda-demo.ndjson --rebase-to-now

Needs boto3 (installed with `pip install 'moto[server]'`).
"""

import argparse
import json
import os
import sys
import time
from collections import defaultdict

# PutLogEvents limits: at most 10,000 events and 1,048,576 bytes per call,
# counting each event as its UTF-8 message plus 26 bytes. We stay at 1,000,000.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_000_000
EVENT_OVERHEAD = 26
# One call may not span more than 24 hours.
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
# With --rebase-to-now the newest event lands this long before now.
REBASE_MARGIN_MS = 60_000


def read_fixture(path):
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
                events.append(
                    {
                        "log_group": str(row["log_group"]),
                        "log_stream": str(row["log_stream"]),
                        "timestamp": int(row["timestamp"]),
                        "message": str(row["message"]),
                    }
                )
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"{path}:{n}: not a fixture event ({e})")
    return events


def batches(events):
    """Splits events (sorted by timestamp) into PutLogEvents-sized batches."""
    batch, size = [], 0
    for e in events:
        cost = len(e["message"].encode("utf-8")) + EVENT_OVERHEAD
        if cost > MAX_BATCH_BYTES:
            sys.exit(f"an event of {cost} bytes is larger than one PutLogEvents call allows")
        if batch and (
            len(batch) >= MAX_BATCH_EVENTS
            or size + cost > MAX_BATCH_BYTES
            or e["timestamp"] - batch[0]["timestamp"] >= MAX_BATCH_SPAN_MS
        ):
            yield batch
            batch, size = [], 0
        batch.append(e)
        size += cost
    if batch:
        yield batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="CloudWatch Logs endpoint URL")
    parser.add_argument("--region", default="us-east-1", help="AWS region (default: us-east-1)")
    parser.add_argument("--rebase-to-now", action="store_true",
                        help="shift timestamps so that the newest event is about 1 minute old")
    parser.add_argument("file", help="NDJSON fixture")
    args = parser.parse_args()

    # moto accepts any credentials; never fall through to a real profile lookup
    # that may prompt or fail.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    try:
        import boto3
    except ImportError:
        sys.exit("boto3 is missing: run this with .venv/bin/python (see scripts/venv.sh)")

    events = read_fixture(args.file)
    if not events:
        sys.exit(f"{args.file}: no events")

    if args.rebase_to_now:
        newest = max(e["timestamp"] for e in events)
        shift = int(time.time() * 1000) - REBASE_MARGIN_MS - newest
        for e in events:
            e["timestamp"] += shift

    client = boto3.client("logs", endpoint_url=args.endpoint, region_name=args.region)
    exists = client.exceptions.ResourceAlreadyExistsException

    streams = defaultdict(list)
    for e in events:
        streams[(e["log_group"], e["log_stream"])].append(e)

    groups = set()
    loaded = 0
    for (group, stream), stream_events in sorted(streams.items()):
        if group not in groups:
            try:
                client.create_log_group(logGroupName=group)
            except exists:
                pass
            groups.add(group)
        try:
            client.create_log_stream(logGroupName=group, logStreamName=stream)
        except exists:
            pass
        # Stable sort: events sharing a millisecond keep their fixture order.
        stream_events.sort(key=lambda e: e["timestamp"])
        for batch in batches(stream_events):
            resp = client.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": e["timestamp"], "message": e["message"]} for e in batch],
            )
            rejected = resp.get("rejectedLogEventsInfo")
            if rejected:
                sys.exit(f"{group} {stream}: CloudWatch rejected events: {rejected}")
            loaded += len(batch)

    print(f"loaded {loaded} events into {len(groups)} groups")


if __name__ == "__main__":
    main()
