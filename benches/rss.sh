#!/usr/bin/env bash
# Memory given back after bursts (issue #20 part 3): one router's resident
# memory (`VmRSS` of /proc/PID/status) just after start, with N idle
# connections open (ferry-load --idle; each with a session, then also
# with a receiver link on an address of its own), and 1, 2 and 5 s after
# they closed. Prints a Markdown table (not written into RESULTS.md: the
# figures there compare two builds).
#
#   bash benches/rss.sh [N]           N connections (default 5000)
#   FERRY_UNDER_TEST=path bash benches/rss.sh   measure another ferry
#
# `ulimit -n` must allow N descriptors (the script raises the soft limit).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-5000}
NAME=rss.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh
FERRY=${FERRY_UNDER_TEST:-$FERRY}
ulimit -n "$(ulimit -Hn)"

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

echo "| $N idle connections | started | open | 1 s after closing | 2 s after | 5 s after |"
echo "|---|---:|---:|---:|---:|---:|"
for what in session receiver; do
    PORT=$(free_port)
    printf '[router]\nid = "R"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n[log]\nlevel = "warn"\n' \
        "$PORT" >"$OUT/$what.toml"
    start_ferry "$OUT/$what.toml" "$PORT"
    sleep 1
    started=$(rss_mib "$FERRY_PID")
    link=()
    label="a session each"
    if [[ $what == receiver ]]; then
        link=(--idle-link receiver --address 'device/{i}' --credit 10)
        label="a session and a receiver on an address of its own each"
    fi
    "$LOAD" --url "amqp://127.0.0.1:$PORT" --idle "$N" --hold 3 "${link[@]}" 2>"$OUT/load.log" &
    load=$!
    until grep -q 'idle connections open' "$OUT/load.log"; do sleep 0.1; done
    # Idle: each connection quiet for over a second, after which it gives
    # back its empty buffers (ferry_proto's `QUIET`).
    sleep 2
    open=$(rss_mib "$FERRY_PID")
    wait "$load"
    after=()
    for t in 1 1 3; do
        sleep "$t"
        after+=("$(rss_mib "$FERRY_PID")")
    done
    echo "| $label | $started MiB | $open MiB | ${after[0]} MiB | ${after[1]} MiB | ${after[2]} MiB |"
    kill "$FERRY_PID"
    wait "$FERRY_PID" 2>/dev/null || true
done
