#!/usr/bin/env bash
# Test of compose's edge profile: interior routers A, B, C and edge routers
# edge-1 (uplinks: router-a, then router-b) and edge-2 (router-b, then
# router-c), all joined by mutual TLS.
#
# Makes the certificates (deploy/make-certs.sh --compose, into the output
# folder), starts `docker-compose --profile edge` as project
# `ferry-edge-test` (client ports 127.0.0.1:35691-35695: A, B, C, edge-1,
# edge-2), and checks:
#   - each edge's uplink comes up over TLS to its first interior router, and
#     that router says the edge connected;
#   - an edge router that claims another id than its certificate names
#     (edge-2's certificate and key, id edge-x) is refused by the interior;
#   - traffic: deploy/edge-check.py, an at-least-once producer on edge-1 and
#     a consumer on edge-2 (edge -> mesh -> edge); once some messages are
#     accepted, router A (edge-1's uplink) is stopped (`docker stop`) under
#     load: edge-1 must fail over to router B, and every message must be
#     accepted and received (released or modified ones sent again).
# Each check prints an `edge: ok - …` or `edge: FAIL - …` line, then
# `edge: N passed, N failed`. Removes the containers, the network, the
# certificates (and the image it built) on exit, also on failure; router logs
# stay in the output folder. About a minute once the image is built.
#
# Usage: deploy/edge-test.sh
# Environment:
#   FERRY_EDGE_IMAGE   use this existing image (not built, not removed)
#   FERRY_EDGE_PORTS   first host port (default 35691; uses five)
#   FERRY_EDGE_OUT     folder for the router logs (default target/deploy-edge)
# Needs Docker with docker-compose (or the compose plugin), cargo, openssl,
# and Debian's python3-qpid-proton for /usr/bin/python3. Run as root, the
# keys are given to the image's user (10001); otherwise the containers run
# as you (FERRY_UID, FERRY_GID).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
project=ferry-edge-test
out=${FERRY_EDGE_OUT:-${CARGO_TARGET_DIR:-$repo/target}/deploy-edge}
port0=${FERRY_EDGE_PORTS:-35691}
python=${PYTHON:-/usr/bin/python3}
if [[ -n ${FERRY_EDGE_IMAGE:-} ]]; then
    image=$FERRY_EDGE_IMAGE
    own_image=false
else
    image=ferry-router:edge-test
    own_image=true
fi
export FERRY_IMAGE=$image FERRY_PUBLISH_HOST=127.0.0.1
export FERRY_PORT_A=$port0 FERRY_PORT_B=$((port0 + 1)) FERRY_PORT_C=$((port0 + 2))
export FERRY_PORT_EDGE_1=$((port0 + 3)) FERRY_PORT_EDGE_2=$((port0 + 4))
export FERRY_CERTS=$out/certs
if [[ $(id -u) == 0 ]]; then
    owner=10001:10001
else
    owner=$(id -u):$(id -g)
    export FERRY_UID FERRY_GID
    FERRY_UID=$(id -u) FERRY_GID=$(id -g)
fi
services=(router-a router-b router-c edge-1 edge-2)
stranger=$project-stranger

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    compose_cmd=(docker-compose)
fi
compose() { "${compose_cmd[@]}" -p "$project" -f "$repo/deploy/compose.yaml" --profile edge "$@"; }
say() { echo "edge-test.sh: $*" >&2; }

passed=0 failed=0
result() { # result OK WHAT [DETAIL]
    if [[ $1 == true ]]; then
        passed=$((passed + 1))
        echo "edge: ok   - $2"
    else
        failed=$((failed + 1))
        echo "edge: FAIL - $2${3:+: $3}"
    fi
}

declare -A ids=()
logs() { docker logs "${ids[$1]}" 2>&1; }

# wait_log SERVICE REGEX SECONDS: the first line of SERVICE's log that
# matches, once there is one (empty after SECONDS).
wait_log() {
    local line deadline=$((SECONDS + $3))
    while :; do
        line=$(grep -Em 1 "$2" <<<"$(logs "$1")" || true)
        if [[ -n $line || $SECONDS -ge $deadline ]]; then
            echo "${line#*: }"
            return
        fi
        sleep 0.5
    done
}

save_logs() {
    local s id
    for s in "${services[@]}"; do
        id=$(compose ps -q "$s" 2>/dev/null || true)
        if [[ -n $id ]]; then
            docker logs "$id" >"$out/$s.log" 2>&1 || true
        fi
    done
    docker logs "$stranger" >"$out/stranger.log" 2>&1 || true
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    mkdir -p "$out"
    save_logs
    docker rm -f "$stranger" >/dev/null 2>&1
    if ((rc != 0)); then
        say "failed (status $rc); last log lines (all in $out):"
        for s in "${services[@]}"; do
            [[ -f $out/$s.log ]] && tail -n 10 "$out/$s.log" | sed "s/^/  $s | /" >&2
        done
    fi
    say "cleaning up: containers, network$([[ $own_image == true ]] && echo ", image $image")"
    compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f >/dev/null 2>&1
    docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null 2>&1
    if [[ $own_image == true ]]; then
        docker rmi "$image" >/dev/null 2>&1
    fi
    rm -rf "$out/certs"
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

# A previous run that was killed hard may have left its containers behind.
compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
docker rm -f "$stranger" >/dev/null 2>&1 || true

say "certificates: $FERRY_CERTS (keys owned by $owner)"
"$repo/deploy/make-certs.sh" --compose --owner "$owner" "$FERRY_CERTS" 2>"$out/make-certs.log" ||
    { cat "$out/make-certs.log" >&2; exit 1; }

say "starting routers A, B, C and edges edge-1, edge-2 (project $project, ports $port0-$((port0 + 4)))"
compose up -d --no-build
for s in "${services[@]}"; do
    ids[$s]=$(compose ps -q "$s")
done
network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "${ids[router-a]}")

deadline=$((SECONDS + 60))
for s in "${services[@]}"; do
    until [[ $(docker inspect -f '{{.State.Health.Status}}' "${ids[$s]}") == healthy ]]; do
        ((SECONDS < deadline)) || { say "$s not healthy after 60 s"; exit 1; }
        sleep 0.5
    done
done
say "all healthy"

# The uplinks: each edge to its first interior router, over TLS.
for pair in edge-1:A:router-a edge-2:B:router-b; do
    IFS=: read -r e rid r <<<"$pair"
    line=$(wait_log "$e" "uplink to interior router $rid connected \(to [^)]*, TLS\)" 30)
    result "$([[ -n $line ]] && echo true)" "$e's uplink is up to router $rid over TLS${line:+ ($line)}" \
        "$(logs "$e" | grep uplink | tail -n 3)"
    line=$(wait_log "$r" "edge router $e connected \(from [^)]*, TLS\)" 10)
    result "$([[ -n $line ]] && echo true)" "router $rid says edge $e connected${line:+ ($line)}"
done

# A stranger: edge-2's real certificate and key, claiming to be edge-x.
say "a stranger dials router C's edge listener with edge-2's certificate, claiming to be edge-x"
docker run -d --name "$stranger" --network "$network" --read-only --user "$owner" \
    -v "$FERRY_CERTS/edge-2:/etc/ferry/tls:ro" -e FERRY_CONFIG=/etc/ferry/edge.toml \
    -e FERRY_ROUTER__ID=edge-x -e FERRY_CONNECTOR__0__HOST=router-c -e FERRY_CONNECTOR__0__PORT=5674 \
    -e FERRY_CONNECTOR__0__ROLE=edge -e FERRY_CONNECTOR__0__TLS=mesh "$image" >/dev/null
line=$(wait_log router-c "claims to be router edge-x but its certificate names edge-2" 20)
result "$([[ -n $line ]] && echo true)" "router C refuses edge-x, whose certificate names edge-2${line:+ ($line)}"
sleep 1
line=$(grep -m 1 "edge router edge-x connected" <<<"$(logs router-c)" || true)
if [[ -n $line ]]; then
    result false "router C admits no edge-x" "$line"
else
    result true "router C admits no edge-x"
fi
docker logs "$stranger" >"$out/stranger.log" 2>&1 || true
docker rm -f "$stranger" >/dev/null

# Traffic edge-1 -> mesh -> edge-2, router A stopped under it.
say "traffic: a producer on edge-1, a consumer on edge-2; router A stopped after 1000 accepted"
rc=0
timeout --kill-after=10 90 "$python" "$repo/deploy/edge-check.py" \
    --producer "127.0.0.1:$FERRY_PORT_EDGE_1" --consumer "127.0.0.1:$FERRY_PORT_EDGE_2" \
    --count 4000 --rate 1000 --at 1000 --run "docker stop -t 5 ${ids[router-a]} >/dev/null" \
    --timeout 60 | tee "$out/edge-check.log" || rc=$?
summary=$(grep -m 1 "^edge-check: \(ok\|FAIL\):" "$out/edge-check.log" || true)
result "$([[ $rc == 0 ]] && echo true)" "every message from edge-1 reaches edge-2, router A stopped under load${summary:+ (${summary#edge-check: ok: })}" \
    "${summary:-no summary (status $rc)}"
line=$(wait_log edge-1 "uplink to interior router A lost" 10)
result "$([[ -n $line ]] && echo true)" "edge-1 notices its uplink to A is lost${line:+ ($line)}"
line=$(wait_log edge-1 "uplink to interior router B connected \(to [^)]*, TLS\)" 10)
result "$([[ -n $line ]] && echo true)" "edge-1 fails over to router B${line:+ ($line)}"
line=$(wait_log router-b "edge router edge-1 connected" 10)
result "$([[ -n $line ]] && echo true)" "router B says edge-1 connected${line:+ ($line)}"
line=$(grep -m 1 "uplink to interior router B lost" <<<"$(logs edge-2)" || true)
if [[ -n $line ]]; then
    result false "edge-2 keeps its uplink to B" "$line"
else
    result true "edge-2 keeps its uplink to B"
fi

echo "edge: $passed passed, $failed failed"
((failed == 0))
