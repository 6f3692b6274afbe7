#!/usr/bin/env bash
# Attach storm (issue #19, IoT senders): N idle connections, each with a
# sending link on one shared address, opened 64 at a time by ferry-load
# (`--idle N --idle-link sender`), without a consumer and beside one that
# grants 1,000 credits, on one router; then on A of a line A - B - C with
# the consumer on C (each of the senders on A holds no credit until found
# idle, and A's data link towards C carries their demand: docs/
# ARCHITECTURE.md, *Demand goes towards the consumers*). Reports the time
# ferry-load took to open them all and the routers' CPU time (user +
# system, /proc/PID/stat, summed) from their start until then. This
# checkout's router, and with REV another revision's,
# rounds interleaved. Prints a Markdown table (the figures in RESULTS.md
# are copied from it by hand).
#
#   bash benches/attach-storm.sh [N] [REV]     (default 10000 senders)
#   OLD_FERRY=path bash benches/attach-storm.sh N    another build as "old"
#
# `ulimit -n` must allow N descriptors (the script raises the soft limit);
# the router refuses connections beyond its limit, 16,384 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
REV=${2:-}

NAME=attach-storm.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh
ulimit -n "$(ulimit -Hn)"

declare -A BIN=([new]=$FERRY)
VERSIONS=(new)
if [[ -n $REV ]]; then
    build_old "$REV"
fi
if [[ -n ${OLD_FERRY:-} ]]; then
    BIN[old]=$OLD_FERRY
    VERSIONS=(new old)
fi

cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# router ID PORT VERSION [EXTRA]: starts a router (interior with EXTRA);
# its pid goes to ROUTERS.
router() {
    local mode=standalone
    [[ -n ${4:-} ]] && mode=interior
    printf '[router]\nid = "%s"\nmode = "%s"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n%s\n[log]\nlevel = "warn"\n' \
        "$1" "$mode" "$2" "${4:-}" >"$OUT/$1.toml"
    FERRY=${BIN[$3]} start_ferry "$OUT/$1.toml" "$2"
    ROUTERS+=("$FERRY_PID")
}

# round VERSION CONSUMER(yes|no) SHAPE(one|line): one row of the table.
round() {
    local port cons= cport inter
    ROUTERS=()
    port=$(free_port)
    cport=$port
    if [[ $3 == line ]]; then
        inter=$(free_port) cport=$(free_port)
        local listen connect
        listen=$(printf '[[listener]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"' "$inter")
        connect=$(printf '[[connector]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"' "$inter")
        router B "$(free_port)" "$1" "$listen"
        router A "$port" "$1" "$connect"
        router C "$cport" "$1" "$connect"
        sleep 2 # A learns of C through B
    else
        router R "$port" "$1"
    fi
    if [[ $2 == yes ]]; then
        "$LOAD" --url "amqp://127.0.0.1:$cport" --producers 0 --consumers 1 \
            --address telemetry --credit 1000 --duration 600 >/dev/null 2>&1 &
        cons=$!
        PIDS+=("$cons")
        sleep 1
    fi
    "$LOAD" --url "amqp://127.0.0.1:$port" --idle "$N" --hold 1 --idle-link sender \
        --address telemetry >"$OUT/idle.log" 2>&1 || true
    local opened cpu=0 r
    opened=$(grep -o 'open: [0-9]* (in [0-9.]* s)' "$OUT/idle.log" || echo "not all opened: $(tail -1 "$OUT/idle.log")")
    for r in "${ROUTERS[@]}"; do cpu=$(awk -v a="$cpu" -v b="$(cpu_s "$r")" 'BEGIN { printf "%.2f", a + b }'); done
    echo "| $1 (${BIN[$1]}) | $3 | $2 | $opened | $cpu s |"
    [[ -n $cons ]] && kill "$cons" 2>/dev/null
    for r in "${ROUTERS[@]}"; do kill "$r"; done
    for r in "${ROUTERS[@]}"; do wait "$r" 2>/dev/null || true; done
}

echo "| router | shape | consumer beside | $N senders | routers' CPU |"
echo "|---|---|---|---|---:|"
for shape in one line; do
    for consumer in no yes; do
        [[ $shape == line && $consumer == no ]] && continue
        for v in "${VERSIONS[@]}"; do round "$v" "$consumer" "$shape"; done
    done
done
