#!/usr/bin/env bash
# Instructions per message per router, one router against each router of
# a line A - B - C, counted by valgrind's callgrind: a count, not a time,
# so it is the same from run to run whatever else the machine does (CPU
# time on a shared 2-core machine moves by ±20 %).
#
#   bash benches/instructions.sh [FERRY_BINARY]
#
# Each setup runs twice, with LO and HI messages (100 B unsettled, closed
# loop, window 100), every router under callgrind; the difference of the
# two counts divided by HI - LO is the cost per message, start-up and
# shutdown cancelling out. Needs valgrind and python3. About 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."

LO=${LO:-5000}
HI=${HI:-25000}
cargo build --release -q -p ferry-router -p ferry-benches
FERRY=${1:-target/release/ferry}
LOAD=target/release/ferry-load
OUT=$(mktemp -d)
PIDS=()
# KEEP_OUT=1 keeps the callgrind outputs (for callgrind_annotate).
trap 'kill "${PIDS[@]}" 2>/dev/null || true; if [[ -n ${KEEP_OUT:-} ]]; then echo "kept: $OUT" >&2; else rm -rf "$OUT"; fi' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 600); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "instructions.sh: nothing listens on $1" >&2
    exit 1
}
# config ID CLIENT_PORT EXTRA
config() {
    printf '[router]\nid = "%s"\nmode = "interior"\n\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n\n%s\n[log]\nlevel = "warn"\n' "$1" "$2" "$3"
}
# start NAME CLIENT_PORT CONFIG: a router under callgrind.
start() {
    printf '%s' "$3" >"$OUT/$1.toml"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$1.cg" \
        "$FERRY" run --config "$OUT/$1.toml" 2>"$OUT/$1.log" &
    PIDS+=($!)
    echo $! >"$OUT/$1.pid"
    wait_port "$2"
}
# stop NAME...: SIGTERM, wait, print the instruction totals.
stop() {
    local n
    for n in "$@"; do kill -TERM "$(cat "$OUT/$n.pid")"; done
    for n in "$@"; do wait "$(cat "$OUT/$n.pid")" 2>/dev/null || true; done
    for n in "$@"; do awk '/^(summary|totals):/ {print $2; exit}' "$OUT/$n.cg"; done
}
inter() {
    printf '[[%s]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"\n%s' "$1" "$2" "$3"
}

single() { # messages -> instructions
    local p
    p=$(free_port)
    start S "$p" "$(config S "$p" "")"
    "$LOAD" --url "amqp://127.0.0.1:$p" --size 100 --count "$1" --window 100 --json >/dev/null 2>&1
    stop S
}
line() { # messages -> instructions of A, B, C
    local pa pb pc pi
    pa=$(free_port) pb=$(free_port) pc=$(free_port) pi=$(free_port)
    start B "$pb" "$(config B "$pb" "$(inter listener "$pi" "")")"
    start A "$pa" "$(config A "$pa" "$(inter connector "$pi" "cost = 1")")"
    start C "$pc" "$(config C "$pc" "$(inter connector "$pi" "cost = 1")")"
    sleep 2
    "$LOAD" --producer-url "amqp://127.0.0.1:$pa" --consumer-url "amqp://127.0.0.1:$pc" \
        --size 100 --count "$1" --window 100 --json >/dev/null 2>&1
    stop A B C
}

s1=$(single "$LO")
s2=$(single "$HI")
l1=$(line "$LO" | tr '\n' ' ')
l2=$(line "$HI" | tr '\n' ' ')
python3 - "$LO" "$HI" "$s1" "$s2" "$l1" "$l2" <<'PY'
import sys
lo, hi, s1, s2 = map(int, sys.argv[1:5])
l1, l2 = (list(map(int, a.split())) for a in sys.argv[5:7])
n = hi - lo
one = (s2 - s1) / n
a, b, c = ((y - x) / n for x, y in zip(l1, l2))
per = (a + b + c) / 3
print(f"instructions per message: one router {one:,.0f}; line A {a:,.0f}, B {b:,.0f}, "
      f"C {c:,.0f}, per router {per:,.0f}: {per / one:.2f} x one router")
PY
