#!/usr/bin/env bash
# Edge routers (issue #16 part 1): 10,000 idle client connections spread
# over 4 edge routers attached to 2 interior routers, against the same
# connections on the 2 interior routers directly: each router's resident
# memory (`VmRSS` of /proc/PID/status) with the connections open. Each
# connection has a session, then (second row) also a receiver link on an
# address of its own (`device/...`): an edge then holds a link to its
# interior router per address, and the interior routers advertise every
# address into the mesh. Writes the "Edge routers" section of
# benches/RESULTS.md.
#
#   bash benches/edge.sh [N]     N connections in all (default 10000)
#
# `ulimit -n` must allow N descriptors in the load process (the script
# raises the soft limit).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000}
NAME=edge.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh
ulimit -n "$(ulimit -Hn)"

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# interior ID CLIENT_PORT EDGE_PORT INTER_PORT [DIAL_PORT]: its pid in
# FERRY_PID (as the edge's, below).
interior() {
    {
        printf '[router]\nid = "%s"\nmode = "interior"\n[log]\nlevel = "warn"\n' "$1"
        printf '[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$2"
        printf '[[listener]]\nhost = "127.0.0.1"\nport = %s\nrole = "edge"\n' "$3"
        printf '[[listener]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"\n' "$4"
        if [[ -n ${5:-} ]]; then
            printf '[[connector]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"\n' "$5"
        fi
    } >"$OUT/$1.toml"
    start_ferry "$OUT/$1.toml" "$2"
}

# edge ID CLIENT_PORT UPLINK_PORT...
edge() {
    local id=$1 port=$2
    shift 2
    {
        printf '[router]\nid = "%s"\nmode = "edge"\n[log]\nlevel = "warn"\n' "$id"
        printf '[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$port"
        for up in "$@"; do
            printf '[[connector]]\nhost = "127.0.0.1"\nport = %s\nrole = "edge"\n' "$up"
        done
    } >"$OUT/$id.toml"
    start_ferry "$OUT/$id.toml" "$port"
}

# open_idle WHAT URL... : N idle connections spread over the URLs (one
# ferry-load per URL), held until the load processes are killed.
LOADS=()
open_idle() {
    local what=$1
    shift
    local each=$((N / $#)) i=0 link=()
    LOADS=()
    for url in "$@"; do
        link=()
        if [[ $what == receiver ]]; then
            link=(--idle-link receiver --address "device/$i/{i}" --credit 10)
        fi
        "$LOAD" --url "$url" --idle "$each" --hold 3600 "${link[@]}" 2>"$OUT/load.$i.log" &
        LOADS+=($!)
        PIDS+=($!)
        i=$((i + 1))
    done
    for ((j = 0; j < i; j++)); do
        until grep -q 'idle connections open' "$OUT/load.$j.log"; do sleep 0.2; done
    done
    sleep 2 # the uplinks' links and the advertisements settle
}

stop() {
    kill "$@" 2>/dev/null || true
    wait "$@" 2>/dev/null || true
}

rows=()
for what in session receiver; do
    label="a session each"
    [[ $what == receiver ]] && label="a session and a receiver on an address of its own each"

    # Through 4 edges: I1 - I2 meshed; E1, E2 prefer I1, E3, E4 prefer I2.
    p=(); for _ in 1 2 3 4 5 6 7 8 9 10; do p+=("$(free_port)"); done
    interior I1 "${p[0]}" "${p[1]}" "${p[2]}"
    i1=$FERRY_PID
    interior I2 "${p[3]}" "${p[4]}" "${p[5]}" "${p[2]}"
    i2=$FERRY_PID
    edge E1 "${p[6]}" "${p[1]}" "${p[4]}"
    e1=$FERRY_PID
    edge E2 "${p[7]}" "${p[1]}" "${p[4]}"
    e2=$FERRY_PID
    edge E3 "${p[8]}" "${p[4]}" "${p[1]}"
    e3=$FERRY_PID
    edge E4 "${p[9]}" "${p[4]}" "${p[1]}"
    e4=$FERRY_PID
    sleep 2
    base=("$(rss_mib "$i1")" "$(rss_mib "$i2")" "$(rss_mib "$e1")")
    open_idle "$what" "amqp://127.0.0.1:${p[6]}" "amqp://127.0.0.1:${p[7]}" \
        "amqp://127.0.0.1:${p[8]}" "amqp://127.0.0.1:${p[9]}"
    edges=("$(rss_mib "$i1")" "$(rss_mib "$i2")" "$(rss_mib "$e1")" "$(rss_mib "$e2")" \
        "$(rss_mib "$e3")" "$(rss_mib "$e4")")
    stop "${LOADS[@]}"
    stop "$e1" "$e2" "$e3" "$e4" "$i1" "$i2"

    # The same connections on the 2 interior routers directly.
    p=(); for _ in 1 2 3 4 5 6; do p+=("$(free_port)"); done
    interior I1 "${p[0]}" "${p[1]}" "${p[2]}"
    i1=$FERRY_PID
    interior I2 "${p[3]}" "${p[4]}" "${p[5]}" "${p[2]}"
    i2=$FERRY_PID
    sleep 2
    open_idle "$what" "amqp://127.0.0.1:${p[0]}" "amqp://127.0.0.1:${p[3]}"
    direct=("$(rss_mib "$i1")" "$(rss_mib "$i2")")
    stop "${LOADS[@]}"
    stop "$i1" "$i2"

    rows+=("| $label | through 4 edges | ${edges[0]} / ${edges[1]} MiB | ${edges[2]} / ${edges[3]} / ${edges[4]} / ${edges[5]} MiB |")
    rows+=("| $label | on the 2 interiors | ${direct[0]} / ${direct[1]} MiB | — |")
    echo "$what: started I1 ${base[0]}, I2 ${base[1]}, E1 ${base[2]} MiB" >&2
done

{
    echo "\`bash benches/edge.sh $N\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), $(nproc) cores):"
    echo "$N idle client connections, resident memory of each router with them open"
    echo "(an idle router: about ${base[0]} MiB)."
    echo
    echo "| $N idle connections | where | interior I1 / I2 | edges E1 / E2 / E3 / E4 |"
    echo "|---|---|---:|---:|"
    printf '%s\n' "${rows[@]}"
    echo
} | tee /dev/stderr | write_section edge "Edge routers: idle connections through 4 edges (issue #16 part 1)"
