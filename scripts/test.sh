#!/usr/bin/env bash
# The one test command: installs moto (the CloudWatch Logs emulator the
# integration tests run against) into .venv on first use, then runs every test.
# Extra arguments go to cargo test, e.g. ./scripts/test.sh --test pull -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh

exec cargo test --locked "$@"
