#!/usr/bin/env bash
# Container and deployment checks, all offline:
#   1. hadolint on the Dockerfile;
#   2. docker-compose.yml against the compose-spec JSON schema (bundled with
#      check-jsonschema);
#   3. every Kubernetes manifest under deploy/kubernetes/ against the
#      Kubernetes JSON schemas bundled with kubernetes-validate, in strict
#      mode (an unknown or misspelled field is an error), for the oldest and
#      the newest Kubernetes version the pinned package bundles; the
#      kustomization.yaml files (not Kubernetes objects) with a check of
#      their own, rendered with `kubectl kustomize` too when kubectl exists;
#   4. deploy/systemd/cwtap.service: a static check of its keys (always),
#      plus `systemd-analyze verify` when systemd-analyze exists.
# The tools come from .venv (see scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
PY="$CWTAP_VENV/bin/python"

_t0=0
step() { _t0=$(date +%s%N); }
done_step() { echo "$1 ($(( ($(date +%s%N) - _t0) / 1000000 )) ms)"; }

# ------------------------------------------------------------ container
step
"$CWTAP_VENV/bin/hadolint" Dockerfile
done_step "hadolint: Dockerfile ok"
step
"$CWTAP_VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
done_step "check-jsonschema: docker-compose.yml ok"

# ------------------------------------------------------------ kubernetes
# The oldest and the newest schema version that kubernetes-validate (pinned
# in scripts/venv.sh) bundles.
KUBE_VERSIONS=(1.25 1.37)

if [[ ! -x "$CWTAP_VENV/bin/kubernetes-validate" ]]; then
    echo "error: $CWTAP_VENV/bin/kubernetes-validate is missing: scripts/venv.sh must install 'kubernetes-validate==1.37.0'" >&2
    exit 1
fi

step
mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
if (( ${#manifests[@]} == 0 )); then
    echo "error: no manifests found under deploy/kubernetes" >&2
    exit 1
fi
for version in "${KUBE_VERSIONS[@]}"; do
    # kubernetes-validate exits 0 on a kind it has no schema for (a typo in
    # `kind:`) and on an empty file, only warning: anything but an INFO line
    # fails here, and every file must have passed at least one object.
    rc=0
    out=$("$CWTAP_VENV/bin/kubernetes-validate" --strict --kubernetes-version "$version" "${manifests[@]}" 2>&1) || rc=$?
    bad=$(grep -v '^INFO ' <<<"$out" || true)
    missing=()
    for f in "${manifests[@]}"; do
        grep -q "^INFO $f passed " <<<"$out" || missing+=("$f")
    done
    if (( rc != 0 )) || [[ -n "$bad" ]] || (( ${#missing[@]} > 0 )); then
        echo "$out" >&2
        (( ${#missing[@]} == 0 )) || echo "error: no object validated in: ${missing[*]}" >&2
        echo "error: Kubernetes manifests do not validate against $version (strict)" >&2
        exit 1
    fi
done
done_step "kubernetes-validate: ${#manifests[@]} manifests ok against ${KUBE_VERSIONS[*]} (strict)"

# The kustomizations, and the invariants the comments promise.
step
"$PY" - deploy/kubernetes <<'EOF'
import pathlib, sys
import yaml

root = pathlib.Path(sys.argv[1])
errors = []
# Top-level fields of kustomize.config.k8s.io/v1beta1 Kustomization.
KNOWN = {
    "apiVersion", "kind", "metadata", "resources", "components", "namespace",
    "namePrefix", "nameSuffix", "labels", "commonLabels", "commonAnnotations",
    "images", "replicas", "patches", "patchesStrategicMerge",
    "patchesJson6902", "configMapGenerator", "secretGenerator",
    "generatorOptions", "replacements", "vars", "crds", "configurations",
    "generators", "transformers", "validators", "openapi",
    "buildMetadata", "helmCharts", "helmGlobals", "sortOptions",
}
kustomizations = sorted(root.rglob("kustomization.yaml"))
if not kustomizations:
    errors.append(f"{root}: no kustomization.yaml")
listed = set()
for k in kustomizations:
    doc = yaml.safe_load(k.read_text())
    if not isinstance(doc, dict):
        errors.append(f"{k}: not a mapping")
        continue
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or doc.get("kind") != "Kustomization":
        errors.append(f"{k}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    for key in sorted(set(doc) - KNOWN):
        errors.append(f"{k}: unknown field {key!r}")
    resources = doc.get("resources") or []
    if not resources:
        errors.append(f"{k}: lists no resources")
    for r in resources:
        p = (k.parent / r).resolve()
        if not p.exists():
            errors.append(f"{k}: resource {r} does not exist")
        listed.add(p)
# Every manifest belongs to a kustomization (or it is never applied).
for m in sorted(root.rglob("*.yaml")):
    if m.name != "kustomization.yaml" and m.resolve() not in listed:
        errors.append(f"{m}: not listed in any kustomization.yaml")

# One agent per state file, and time to shut down cleanly (cwtap exits
# within 10 s of SIGTERM).
for m in sorted(root.rglob("*.yaml")):
    if m.name == "kustomization.yaml":
        continue
    for obj in yaml.safe_load_all(m.read_text()):
        if not obj:
            continue
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        if kind == "StatefulSet" and spec.get("replicas") != 1:
            errors.append(f"{m}: a StatefulSet of cwtap must have replicas: 1 (one writer per state file)")
        if kind in ("StatefulSet", "Job", "Deployment"):
            grace = (spec.get("template") or {}).get("spec", {}).get("terminationGracePeriodSeconds")
            if grace is None or grace < 15:
                errors.append(f"{m}: {kind} needs terminationGracePeriodSeconds >= 15")
        if kind == "Deployment":
            errors.append(f"{m}: cwtap run must be a StatefulSet, not a Deployment (one writer per state file)")

for e in errors:
    print("error:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
done_step "kustomization: ${#manifests[@]} manifests listed, invariants ok"

# When kubectl is there, kustomize must also render each kustomization, and
# the rendered objects must validate (this catches kustomize-level mistakes,
# e.g. a bad images: or patches: entry). Optional: the checks above are not.
if command -v kubectl >/dev/null 2>&1; then
    step
    while IFS= read -r k; do
        dir=$(dirname "$k")
        rendered=$(kubectl kustomize "$dir") || {
            echo "error: kubectl kustomize $dir failed" >&2
            exit 1
        }
        rc=0
        out=$("$CWTAP_VENV/bin/kubernetes-validate" --strict - <<<"$rendered" 2>&1) || rc=$?
        if (( rc != 0 )) || grep -qv '^INFO ' <<<"$out"; then
            echo "$out" >&2
            echo "error: kubectl kustomize $dir does not validate" >&2
            exit 1
        fi
    done < <(find deploy/kubernetes -name kustomization.yaml | sort)
    done_step "kubectl kustomize: renders validate"
else
    echo "kubectl kustomize: skipped (kubectl not installed; the checks above ran)"
fi

# ------------------------------------------------------------ systemd
UNIT=deploy/systemd/cwtap.service
# Static check, always: every key is a known directive of its section, the
# keys the unit depends on are there with their values. It runs whether or
# not systemd-analyze exists, so this step can never pass without a check.
step
"$PY" - "$UNIT" <<'EOF'
import sys

path = sys.argv[1]
KNOWN = {
    "Unit": {
        "Description", "Documentation", "Wants", "Requires", "Requisite",
        "BindsTo", "PartOf", "Upholds", "Conflicts", "Before", "After",
        "OnFailure", "OnSuccess", "StartLimitIntervalSec", "StartLimitBurst",
        "StartLimitAction", "ConditionPathExists", "AssertPathExists",
    },
    "Service": {
        # process
        "Type", "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload",
        "ExecStop", "ExecStopPost", "WorkingDirectory", "Environment",
        "EnvironmentFile", "User", "Group", "DynamicUser",
        "SupplementaryGroups", "UMask", "Restart", "RestartSec",
        "RestartPreventExitStatus", "SuccessExitStatus", "KillSignal",
        "KillMode", "FinalKillSignal", "SendSIGKILL", "TimeoutStartSec",
        "TimeoutStopSec", "TimeoutSec", "WatchdogSec", "NotifyAccess",
        "StandardOutput", "StandardError", "SyslogIdentifier", "LogLevelMax",
        # directories
        "StateDirectory", "StateDirectoryMode", "RuntimeDirectory",
        "RuntimeDirectoryMode", "CacheDirectory", "LogsDirectory",
        "ConfigurationDirectory", "ReadWritePaths", "ReadOnlyPaths",
        "InaccessiblePaths", "BindPaths", "BindReadOnlyPaths",
        # resources
        "LimitNOFILE", "MemoryHigh", "MemoryMax", "CPUQuota", "TasksMax",
        "Nice", "IOWeight",
        # sandboxing
        "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
        "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
        "PrivateNetwork", "PrivateUsers", "PrivateMounts", "PrivateIPC",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname",
        "ProtectProc", "ProcSubset", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
        "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC",
        "SystemCallFilter", "SystemCallErrorNumber",
        "SystemCallArchitectures", "DevicePolicy", "DeviceAllow",
        "IPAddressAllow", "IPAddressDeny", "KeyringMode",
    },
    "Install": {"WantedBy", "RequiredBy", "Alias", "Also"},
}
# key -> required value (None: present, any value).
REQUIRED = {
    "Unit": {"Description": None},
    "Service": {
        "ExecStart": "/usr/local/bin/cwtap run --config /etc/cwtap/config.yaml",
        "DynamicUser": "yes", "StateDirectory": "cwtap",
        "EnvironmentFile": "-/etc/cwtap/cwtap.env",
        "Restart": "on-failure", "TimeoutStopSec": "15", "KillSignal": "SIGTERM",
        "UMask": "0077", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "RestrictRealtime": "yes",
        "SystemCallFilter": "@system-service", "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    },
    "Install": {"WantedBy": "multi-user.target"},
}
BOOL = {"yes", "no", "true", "false", "on", "off", "1", "0"}
BOOLEANS = {"DynamicUser", "NoNewPrivileges", "PrivateTmp", "PrivateDevices",
            "PrivateNetwork", "PrivateUsers", "PrivateMounts", "PrivateIPC",
            "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
            "ProtectControlGroups", "ProtectClock", "ProtectHostname",
            "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
            "MemoryDenyWriteExecute", "RemoveIPC"}

errors, seen, section = [], {}, None
lines = open(path).read().split("\n")
i = 0
while i < len(lines):
    n, line = i + 1, lines[i].strip()
    while line.endswith("\\") and i + 1 < len(lines):  # continuation lines
        i += 1
        line = line[:-1] + " " + lines[i].strip()
    i += 1
    if not line or line[0] in "#;":
        continue
    if line.startswith("[") and line.endswith("]"):
        section = line[1:-1]
        if section not in KNOWN:
            errors.append(f"{path}:{n}: unknown section [{section}]")
        if section in seen:
            errors.append(f"{path}:{n}: section [{section}] repeated")
        seen.setdefault(section, {})
        continue
    if "=" not in line:
        errors.append(f"{path}:{n}: not a key=value line: {line}")
        continue
    if section is None:
        errors.append(f"{path}:{n}: key before any section")
        continue
    key, value = (s.strip() for s in line.split("=", 1))
    if key not in KNOWN.get(section, set()):
        errors.append(f"{path}:{n}: unknown key {key!r} in [{section}]")
    if key in BOOLEANS and value not in BOOL:
        errors.append(f"{path}:{n}: {key}= takes a boolean, not {value!r}")
    seen.setdefault(section, {}).setdefault(key, []).append(value)

for section, keys in REQUIRED.items():
    for key, want in keys.items():
        got = seen.get(section, {}).get(key)
        if got is None:
            errors.append(f"{path}: [{section}] lacks {key}=")
        elif want is not None and want not in got:
            errors.append(f"{path}: [{section}] {key}= should include {want!r}, has {got}")

for e in errors:
    print("error:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
done_step "unit file: $UNIT keys ok"

# systemd's own parser, when available: unknown keys, bad values, unknown
# syscall groups or address families. It needs ExecStart's binary to exist,
# so a copy of the unit points at a stub. It warns and exits 0 on most
# mistakes: any output is a failure here.
if command -v systemd-analyze >/dev/null 2>&1; then
    step
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    printf '#!/bin/sh\nexit 0\n' >"$tmp/cwtap"
    chmod +x "$tmp/cwtap"
    sed "s#/usr/local/bin/cwtap#$tmp/cwtap#g" "$UNIT" >"$tmp/cwtap.service"
    rc=0
    out=$(systemd-analyze verify --man=no "$tmp/cwtap.service" 2>&1) || rc=$?
    if (( rc != 0 )) || [[ -n "$out" ]]; then
        echo "${out//$tmp/deploy/systemd}" >&2
        echo "error: systemd-analyze verify $UNIT failed" >&2
        exit 1
    fi
    done_step "systemd-analyze verify: $UNIT ok"
else
    echo "systemd-analyze verify: skipped (systemd-analyze not installed; the static unit check ran)"
fi
