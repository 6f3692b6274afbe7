#!/usr/bin/env bash
# Chaos test of a mesh of Ferry routers in containers, joined by mutual TLS.
#
# Builds the image (deploy/build-image.sh, tag ferry-router:chaos), makes
# the mesh's certificates (deploy/make-certs.sh --compose, into the output
# folder), starts the compose mesh of routers A, B, C as project
# `ferry-chaos` (client ports 127.0.0.1:35681-35683), checks that the mesh
# admits only its routers (strangers on the mesh network dialing router A's
# inter-router port: without TLS, with a certificate of their own making,
# with router B's certificate claiming another id; all refused, none gets an
# inter-router connection), rotates router C's certificate (new files, read
# without a restart), runs deploy/chaos.py from the host: an unsettled
# producer on A, a consumer on B and one on C, while routers are killed and
# restarted (`docker kill` / `docker start`) and cut off the network and
# reconnected (`docker network disconnect` / `connect`). It prints sent,
# accepted, received, released/modified, duplicates and lost (accepted,
# never received), and the time to resume after each fault; it fails if
# anything accepted was lost; and checks that every router's inter-router
# connections were with the mesh's routers only. Then it removes the
# containers, the network, the certificates and the image, also on failure
# or interruption. About 3 minutes.
#
# Usage: deploy/chaos.sh [chaos.py options, e.g. --rounds 2 --rate 200]
# Environment:
#   FERRY_CHAOS_IMAGE   use this existing image (not built, not removed)
#   FERRY_CHAOS_PORTS   first host port (default 35681; uses three)
#   FERRY_CHAOS_OUT     folder for the report and router logs
#                       (default target/deploy-chaos)
# Needs Docker with docker-compose (or the compose plugin), cargo, openssl,
# and Debian's python3-qpid-proton for /usr/bin/python3. Run as root, the
# keys are given to the image's user (10001); otherwise the containers run
# as you (FERRY_UID, FERRY_GID).
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
# The routers' certificates (compose mounts FERRY_CERTS/ID at /etc/ferry/tls).
export FERRY_CERTS=$out/certs
if [[ $(id -u) == 0 ]]; then
    owner=10001:10001
else
    owner=$(id -u):$(id -g)
    export FERRY_UID FERRY_GID
    FERRY_UID=$(id -u) FERRY_GID=$(id -g)
fi
intruders=(intruder-plain intruder-selfmade intruder-stolen)

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    compose_cmd=(docker-compose)
fi
compose() { "${compose_cmd[@]}" -p "$project" -f "$repo/deploy/compose.yaml" "$@"; }
say() { echo "chaos.sh: $*" >&2; }

save_logs() {
    local s id
    for s in router-a router-b router-c; do
        id=$(compose ps -q "$s" 2>/dev/null || true)
        if [[ -n $id ]]; then
            docker logs "$id" >"$out/$s.log" 2>&1 || true
        fi
    done
}

# The mesh's own checks: "mesh-auth: ok - …" or "mesh-auth: FAIL - …".
auth_passed=0 auth_failed=0
auth() { # auth OK WHAT [DETAIL]
    if [[ $1 == true ]]; then
        auth_passed=$((auth_passed + 1))
        echo "mesh-auth: ok   - $2"
    else
        auth_failed=$((auth_failed + 1))
        echo "mesh-auth: FAIL - $2${3:+: $3}"
    fi
}

# Strangers on the mesh network dial router A's inter-router port, each a
# Ferry router of the same image, with the image's configuration:
#   intruder-plain     without TLS (allow_unauthenticated_routers on its side)
#   intruder-selfmade  TLS with a certificate from a CA of its own making
#                      (made by make-certs.sh too, so even the CA's name is
#                      the mesh CA's; it trusts the mesh CA, which is no
#                      secret, so that its side of the handshake goes through)
#   intruder-stolen    TLS with router B's real certificate and key, claiming
#                      to be router intruder-stolen
# Router A must refuse all three, and no inter-router connection may come up.
check_intruders() {
    local n i log a_log found deadline
    local rids=(A B C)
    local -A ips=()
    say "intruders dial router A's inter-router port: without TLS, with a self-made and with B's certificate"
    "$repo/deploy/make-certs.sh" --owner "$owner" "$out/intruder-certs" intruder-selfmade 2>/dev/null
    cp "$out/certs/ca.pem" "$out/intruder-certs/intruder-selfmade/ca.pem"
    for n in "${intruders[@]}"; do
        local args=(-e "FERRY_ROUTER__ID=$n" -e FERRY_CONNECTOR__0__HOST=router-a -e FERRY_CONNECTOR__0__PORT=5673)
        case $n in
            intruder-plain) args+=(-v "$out/intruder-certs/intruder-selfmade:/etc/ferry/tls:ro"
                -e FERRY_CONNECTOR__0__ALLOW_UNAUTHENTICATED_ROUTERS=true) ;;
            intruder-selfmade) args+=(-v "$out/intruder-certs/intruder-selfmade:/etc/ferry/tls:ro"
                -e FERRY_CONNECTOR__0__TLS=mesh) ;;
            intruder-stolen) args+=(-v "$out/certs/B:/etc/ferry/tls:ro" -e FERRY_CONNECTOR__0__TLS=mesh) ;;
        esac
        docker run -d --name "$project-$n" --network "$network" --read-only \
            --user "$owner" "${args[@]}" "$image" >/dev/null
        ips[$n]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$project-$n")
    done
    # Until router A has refused each of them (or 30 s).
    deadline=$((SECONDS + 30))
    while :; do
        a_log=$(docker logs "${ids[0]}" 2>&1)
        found=0
        for n in intruder-plain intruder-selfmade; do
            grep -q "connection refused: TLS handshake failed.*peer=${ips[$n]}:" <<<"$a_log" && found=$((found + 1))
        done
        grep -q "claims to be router intruder-stolen but its certificate names B" <<<"$a_log" &&
            found=$((found + 1))
        ((found == 3 || SECONDS >= deadline)) && break
        sleep 0.5
    done
    sleep 2 # a moment more for anything that would come up after a refusal
    a_log=$(docker logs "${ids[0]}" 2>&1)
    for n in intruder-plain intruder-selfmade; do
        log=$(grep "connection refused: TLS handshake failed.*peer=${ips[$n]}:" <<<"$a_log" | head -n 1 || true)
        auth "$([[ -n $log ]] && echo true)" "router A refuses $n's TLS handshake${log:+ (${log#*connection refused: })}" \
            "no refusal of ${ips[$n]} in router A's log"
    done
    log=$(grep -m 1 "claims to be router intruder-stolen" <<<"$a_log" || true)
    auth "$([[ -n $log ]] && echo true)" "router A refuses intruder-stolen, whose certificate names B${log:+ (${log#*refused: })}" \
        "no such refusal in router A's log"
    # The first two never get a TLS session. (The third completes TLS with
    # B's certificate and reads router A's open, which A sends first, so its
    # own log says the connection came up, until A's close; what counts is
    # that the mesh never takes it in.)
    for n in "${intruders[@]}"; do
        log=$(docker logs "$project-$n" 2>&1)
        docker logs "$project-$n" >"$out/$n.log" 2>&1
        if [[ $n != intruder-stolen ]]; then
            if grep -Eq "neighbour [^ ]+ connected" <<<"$log"; then
                auth false "$n gets no inter-router connection" "$(grep -Em 1 'neighbour [^ ]+ connected' <<<"$log")"
            else
                auth true "$n gets no inter-router connection"
            fi
        fi
        docker rm -f "$project-$n" >/dev/null
    done
    if grep -Eq "neighbour intruder[^ ]* connected" <<<"$a_log"; then
        auth false "router A admits none of them" \
            "$(grep -Em 1 'neighbour intruder[^ ]* connected' <<<"$a_log")"
    else
        auth true "router A admits none of them"
    fi
    for i in 1 2; do
        log=$(docker logs "${ids[$i]}" 2>&1)
        if grep -q "intruder" <<<"$log"; then
            auth false "router ${rids[$i]} never hears of them" "$(grep -m 1 intruder <<<"$log")"
        else
            auth true "router ${rids[$i]} never hears of them"
        fi
    done
}

# Rotation as deploy/README.md tells it: a new certificate and key for
# router C written over its files (make-certs.sh renames them into place in
# the folder C mounts); C must read them within a few seconds, no restart.
# The faults that follow make C and its peers connect again with them.
check_rotation() {
    local before t0 n
    say "rotation: a new certificate and key for router C, over its files"
    before=$(docker logs "${ids[2]}" 2>&1 | grep -c "tls profile reloaded" || true)
    t0=$SECONDS
    "$repo/deploy/make-certs.sh" --owner "$owner" "$FERRY_CERTS" C=router-c 2>>"$out/make-certs.log"
    while :; do
        n=$(docker logs "${ids[2]}" 2>&1 | grep -c "tls profile reloaded" || true)
        ((n > before || SECONDS - t0 >= 10)) && break
        sleep 0.2
    done
    if ((n > before)); then
        auth true "router C reads its new certificate without a restart (within $((SECONDS - t0 + 1)) s)"
    else
        auth false "router C reads its new certificate without a restart" "no 'tls profile reloaded' in 10 s"
    fi
}

# Every router's inter-router connections (their whole logs) were with the
# other routers of the mesh, and only with them.
check_peers() {
    local s me want got
    save_logs
    for s in router-a router-b router-c; do
        me=${s#router-}
        want=$(printf '%s\n' A B C | grep -vx "${me^^}" | paste -sd ' ')
        got=$(grep -Eo 'neighbour [^ ]+ connected' "$out/$s.log" | sed 's/^neighbour //; s/ connected$//' | sort -u | paste -sd ' ')
        auth "$([[ $got == "$want" ]] && echo true)" \
            "router ${me^^}: inter-router connections only with the mesh's routers ($want)" "with: ${got:-none}"
    done
}

# shellcheck disable=SC2317  # run by the EXIT trap (shellcheck 0.9 misses it before a final exit)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    mkdir -p "$out"
    save_logs
    for n in "${intruders[@]}"; do
        docker rm -f "$project-$n" >/dev/null 2>&1
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
    rm -rf "$out/certs" "$out/intruder-certs"
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
for n in "${intruders[@]}"; do
    docker rm -f "$project-$n" >/dev/null 2>&1 || true
done

say "certificates: $FERRY_CERTS (keys owned by $owner)"
"$repo/deploy/make-certs.sh" --compose --owner "$owner" "$FERRY_CERTS" 2>"$out/make-certs.log" ||
    { cat "$out/make-certs.log" >&2; exit 1; }

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

check_intruders
check_rotation
if ((auth_failed)); then
    say "the mesh let a stranger in or did not say it refused one: no chaos run"
    echo "mesh-auth: $auth_passed passed, $auth_failed failed"
    exit 1
fi

rc=0
timeout --kill-after=10 240 "$python" "$repo/deploy/chaos.py" \
    --router "A=127.0.0.1:$FERRY_PORT_A,${ids[0]},router-a" \
    --router "B=127.0.0.1:$FERRY_PORT_B,${ids[1]},router-b" \
    --router "C=127.0.0.1:$FERRY_PORT_C,${ids[2]},router-c" \
    --network "$network" --json "$out/report.json" "$@" || rc=$?

check_peers
echo "mesh-auth: $auth_passed passed, $auth_failed failed"
((auth_failed == 0)) || rc=1
exit "$rc"
