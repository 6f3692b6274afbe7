#!/usr/bin/env bash
# Attach storm (issue #19, IoT senders): N idle connections, each with a
# sending link on one shared address, opened 64 at a time by ferry-load
# (`--idle N --idle-link sender`), without a consumer and beside one that
# grants 1,000 credits. Reports the time ferry-load took to open them all
# and the router's CPU time (user + system, /proc/PID/stat) from its start
# until then. This checkout's router, and with REV another revision's,
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

# round VERSION CONSUMER(yes|no): one row of the table.
round() {
    local port cons=
    port=$(free_port)
    printf '[router]\nid = "R"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n[log]\nlevel = "warn"\n' \
        "$port" >"$OUT/r.toml"
    FERRY=${BIN[$1]} start_ferry "$OUT/r.toml" "$port"
    if [[ $2 == yes ]]; then
        "$LOAD" --url "amqp://127.0.0.1:$port" --producers 0 --consumers 1 \
            --address telemetry --credit 1000 --duration 600 >/dev/null 2>&1 &
        cons=$!
        PIDS+=("$cons")
        sleep 1
    fi
    "$LOAD" --url "amqp://127.0.0.1:$port" --idle "$N" --hold 1 --idle-link sender \
        --address telemetry >"$OUT/idle.log" 2>&1 || true
    local opened
    opened=$(grep -o 'open: [0-9]* (in [0-9.]* s)' "$OUT/idle.log" || echo "not all opened: $(tail -1 "$OUT/idle.log")")
    echo "| $1 (${BIN[$1]}) | $2 | $opened | $(cpu_s "$FERRY_PID") s |"
    [[ -n $cons ]] && kill "$cons" 2>/dev/null
    kill "$FERRY_PID"
    wait "$FERRY_PID" 2>/dev/null || true
}

echo "| router | consumer beside | $N senders | router CPU |"
echo "|---|---|---|---:|"
for consumer in no yes; do
    for v in "${VERSIONS[@]}"; do round "$v" "$consumer"; done
done
