#!/usr/bin/env bash
# Container checks: hadolint on the Dockerfile, and docker-compose.yml
# validated against the compose-spec JSON schema (bundled with
# check-jsonschema). Both come from .venv (see scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh

"$CWTAP_VENV/bin/hadolint" Dockerfile
echo "hadolint: Dockerfile ok"
"$CWTAP_VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
