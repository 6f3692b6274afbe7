#!/usr/bin/env bash
# Runs deploy/check-manifests.py with what it needs: PyYAML and
# kubernetes-validate (the Kubernetes JSON schemas, offline), installed from
# PyPI into a virtual environment under target/ on first use.
#
# Usage: deploy/check-manifests.sh [--ferry BIN] [--image IMAGE] [--replicas N]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CARGO_TARGET_DIR:-$repo/target}/deploy-venv
if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "check-manifests.sh: installing kubernetes-validate and PyYAML into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        'kubernetes-validate==1.37.0' 'PyYAML>=6'
fi
exec "$venv/bin/python" "$repo/deploy/check-manifests.py" --require-schema "$@"
