#!/usr/bin/env bash
# Chaos test of a mesh of Ferry routers in containers.
#
# Builds the image (deploy/build-image.sh, tag ferry-router:chaos), starts
# the compose mesh of routers A, B, C as project `ferry-chaos` (client ports
# 127.0.0.1:35681-35683), runs deploy/chaos.py from the host: an unsettled
# producer on A, a consumer on B and one on C, while routers are killed and
# restarted (`docker kill` / `docker start`) and cut off the network and
# reconnected (`docker network disconnect` / `connect`). It prints sent,
# accepted, received, released/modified, duplicates and lost (accepted,
# never received), and the time to resume after each fault; it fails if
# anything accepted was lost. Then it removes the containers, the network
# and the image, also on failure or interruption. About 3 minutes.
#
# Usage: deploy/chaos.sh [chaos.py options, e.g. --rounds 2 --rate 200]
# Environment:
#   FERRY_CHAOS_IMAGE   use this existing image (not built, not removed)
#   FERRY_CHAOS_PORTS   first host port (default 35681; uses three)
#   FERRY_CHAOS_OUT     folder for the report and router logs
#                       (default target/deploy-chaos)
# Needs Docker with docker-compose (or the compose plugin), cargo, and
# Debian's python3-qpid-proton for /usr/bin/python3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
project=ferry-chaos
out=${FERRY_CHAOS_OUT:-${CARGO_TARGET_DIR:-$repo/target}/deploy-chaos}
port0=${FERRY_CHAOS_PORTS:-35681}
python=${PYTHON:-/usr/bin/python3}
if [[ -n ${FERRY_CHAOS_IMAGE:-} ]]; then
    image=$FERRY_CHAOS_IMAGE
    own_image=false
else
    image=ferry-router:chaos
    own_image=true
fi
export FERRY_IMAGE=$image FERRY_PUBLISH_HOST=127.0.0.1
export FERRY_PORT_A=$port0 FERRY_PORT_B=$((port0 + 1)) FERRY_PORT_C=$((port0 + 2))

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    compose_cmd=(docker-compose)
fi
compose() { "${compose_cmd[@]}" -p "$project" -f "$repo/deploy/compose.yaml" "$@"; }
say() { echo "chaos.sh: $*" >&2; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    mkdir -p "$out"
    for s in router-a router-b router-c; do
        id=$(compose ps -q "$s" 2>/dev/null)
        [[ -n $id ]] && docker logs "$id" >"$out/$s.log" 2>&1
    done
    if ((rc != 0)); then
        say "failed (status $rc); last router log lines (all in $out):"
        for s in router-a router-b router-c; do
            [[ -f $out/$s.log ]] && tail -n 15 "$out/$s.log" | sed "s/^/  $s | /" >&2
        done
    fi
    say "cleaning up: containers, network$([[ $own_image == true ]] && echo ", image $image")"
    compose --profile five down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
    # Anything of the project that compose missed.
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f >/dev/null 2>&1
    docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null 2>&1
    if [[ $own_image == true ]]; then
        docker rmi "$image" >/dev/null 2>&1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$python" -c 'import proton' || { say "needs python3-qpid-proton for $python"; exit 2; }

rm -rf "$out"
mkdir -p "$out"
if [[ $own_image == true ]]; then
    say "building $image (log: $out/build.log)"
    "$repo/deploy/build-image.sh" "$image" >"$out/build.log" 2>&1 ||
        { tail -n 30 "$out/build.log" >&2; exit 1; }
fi

# A previous run that was killed hard may have left its mesh behind.
compose --profile five down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true

say "starting the mesh (project $project, ports $FERRY_PORT_A-$FERRY_PORT_C)"
compose up -d --no-build
ids=()
for s in router-a router-b router-c; do
    ids+=("$(compose ps -q "$s")")
done
network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "${ids[0]}")

deadline=$((SECONDS + 60))
for id in "${ids[@]}"; do
    until [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") == healthy ]]; do
        ((SECONDS < deadline)) || { say "router $id not healthy after 60 s"; exit 1; }
        sleep 0.5
    done
done
say "routers healthy; mesh network $network"

timeout --kill-after=10 240 "$python" "$repo/deploy/chaos.py" \
    --router "A=127.0.0.1:$FERRY_PORT_A,${ids[0]},router-a" \
    --router "B=127.0.0.1:$FERRY_PORT_B,${ids[1]},router-b" \
    --router "C=127.0.0.1:$FERRY_PORT_C,${ids[2]},router-c" \
    --network "$network" --json "$out/report.json" "$@"
