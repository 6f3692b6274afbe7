#!/usr/bin/env bash
# Everything deploy/ promises, tested for real (what CI runs):
#   1. builds the image (deploy/build-image.sh, tag ferry-router:test);
#   2. checks the Kubernetes manifests (schemas, structure, the Secret of
#      certificates, every router configuration through `ferry check-config`
#      on certificates made by deploy/make-certs.sh) and the compose file, and
#      runs the StatefulSet's pods as containers of the image to see them
#      form a mesh over mutual TLS (deploy/check-manifests.sh);
#   3. runs compose's edge profile: edge routers' uplinks over mutual TLS, a
#      stranger edge refused, traffic edge -> mesh -> edge while the first
#      edge's interior router is stopped (failover; deploy/edge-test.sh);
#   4. runs the chaos test against the compose mesh over mutual TLS, after
#      checking that strangers cannot join it and that a certificate is
#      rotated without a restart (deploy/chaos.sh).
# Removes the image, containers, networks and certificates it made, also on
# failure. About 6 minutes plus the release build. Needs Docker with
# docker-compose, cargo, openssl, python3 with venv and pip (PyPI), and
# Debian's python3-qpid-proton.
#
# Usage: deploy/test.sh [chaos.py options]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=ferry-router:test
trap 'docker rmi "$image" >/dev/null 2>&1 || true' EXIT

"$repo/deploy/build-image.sh" "$image"
"$repo/deploy/check-manifests.sh" --ferry "${CARGO_TARGET_DIR:-$repo/target}/release/ferry" --image "$image"
FERRY_EDGE_IMAGE=$image "$repo/deploy/edge-test.sh"
FERRY_CHAOS_IMAGE=$image "$repo/deploy/chaos.sh" "$@"
