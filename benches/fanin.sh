#!/usr/bin/env bash
# Fan-in (issue #16, fair credit): 1,000 producers at 10 msg/s each (100 B,
# unsettled, open loop, 10,000 msg/s in all) sharing one consumer that
# grants 1,000 credits (ferry-load's default; it tops up at half). One
# router, and a line A - B - C with the producers on A and the consumer on
# C. The router of this checkout against the router of another revision,
# in one run, rounds interleaved; the same ferry-load (this checkout's)
# drives both. Writes the "fanin" section of benches/RESULTS.md.
#
#   bash benches/fanin.sh REV [ROUNDS]      (default 3 rounds of 10 s each)
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: bash benches/fanin.sh REV [ROUNDS]}
ROUNDS=${2:-3}
SECS=10

NAME=fanin.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

build_old "$REV"
declare -A BIN=([new]=$FERRY [old]=$OLD_FERRY)

config() { # id client_port extra
    printf '[router]\nid = "%s"\nmode = "interior"\n\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n\n%s\n[log]\nlevel = "warn"\n' "$1" "$2" "$3"
}

# start NAME VERSION CONFIG PORT: a router; its pid goes to $OUT/NAME.pid.
start() {
    printf '%s\n' "$3" >"$OUT/$1.toml"
    FERRY=${BIN[$2]} start_ferry "$OUT/$1.toml" "$4"
    echo "$FERRY_PID" >"$OUT/$1.pid"
}

stop() {
    local p
    for p in "$@"; do kill "$(cat "$OUT/$p.pid")" 2>/dev/null || true; done
    for p in "$@"; do wait "$(cat "$OUT/$p.pid")" 2>/dev/null || true; done
}

# CPU seconds (user + system) of the routers named.
cpu() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$(cat "$OUT/$p.pid")/stat"))); done
    awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f\n", t / hz }'
}

LOAD_ARGS=(--size 100 --producers 1000 --rate 10000 --duration "$SECS" --progress 0 --json)

# one VERSION ROUND: one router.
one() {
    local port
    port=$(free_port)
    start "one-$1-$2" "$1" "$(config R "$port" "")" "$port"
    "$LOAD" --url "amqp://127.0.0.1:$port" "${LOAD_ARGS[@]}" >"$OUT/one.$1.$2.json"
    cpu "one-$1-$2" >"$OUT/one.$1.$2.cpu"
    stop "one-$1-$2"
}

# line VERSION ROUND: A - B - C.
line() {
    local pa pb pc pi id
    pa=$(free_port) pb=$(free_port) pc=$(free_port) pi=$(free_port)
    start "B-$1-$2" "$1" "$(config B "$pb" "[[listener]]
host = \"127.0.0.1\"
port = $pi
role = \"inter-router\"
")" "$pb"
    for id in A C; do
        local p=$pa
        [[ $id == C ]] && p=$pc
        start "$id-$1-$2" "$1" "$(config "$id" "$p" "[[connector]]
host = \"127.0.0.1\"
port = $pi
role = \"inter-router\"
")" "$p"
    done
    sleep 2 # A learns of C through B
    "$LOAD" --producer-url "amqp://127.0.0.1:$pa" --consumer-url "amqp://127.0.0.1:$pc" \
        "${LOAD_ARGS[@]}" >"$OUT/line.$1.$2.json"
    cpu "A-$1-$2" "B-$1-$2" "C-$1-$2" >"$OUT/line.$1.$2.cpu"
    stop "A-$1-$2" "B-$1-$2" "C-$1-$2"
}

for k in $(seq "$ROUNDS"); do
    for v in old new; do
        echo "$NAME: round $k, $v" >&2
        one "$v" "$k"
        line "$v" "$k"
    done
done

python3 - "$OUT" "$ROUNDS" "$REV" "$(git rev-parse --short HEAD)" "$SECS" <<'PY' | write_section fanin "Fan-in: 1,000 producers sharing one consumer (issue #16, fair credit)"
import json, statistics, sys
out, rounds, old, new, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def load(shape, v, k):
    j = json.load(open(f"{out}/{shape}.{v}.{k}.json"))
    cpu = float(open(f"{out}/{shape}.{v}.{k}.cpu").read())
    return j, cpu
def med(xs):
    return statistics.median(xs)
print(f"`bash benches/fanin.sh {old}` ({rounds} rounds of {secs} s, interleaved; medians), this checkout `{new}` against `{old}`, on 2 cores shared by the routers and `ferry-load`. 1,000 producer connections at 10 msg/s each (100 B, unsettled, open loop: latency counts from each message's scheduled time), one consumer granting 1,000 credits (topped up at half). Latency in ms, one way; router CPU summed over the routers, per message.")
print()
print("| shape | router | p50 | p90 | p99 | p99.9 | max | msg/s | router CPU µs/msg | lost |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for shape, label in (("one", "one router"), ("line", "A → B → C")):
    for v, name in (("old", old), ("new", new)):
        rows = [load(shape, v, k) for k in range(1, rounds + 1)]
        lat = lambda key: med([r[0]["latency"][key] for r in rows]) / 1000
        rate = med([r[0]["msgs_per_s"] for r in rows])
        cpu = med([r[1] / max(r[0]["received"], 1) * 1e6 for r in rows])
        lost = sum((r[0].get("lost") or 0) for r in rows)
        print(f"| {label} | `{name}` | {lat('p50_us'):,.1f} | {lat('p90_us'):,.1f} | {lat('p99_us'):,.1f} | {lat('p999_us'):,.1f} | {lat('max_us'):,.1f} | {rate:,.0f} | {cpu:.1f} | {lost} |")
print()
for shape in ("one", "line"):
    for v in ("old", "new"):
        p99 = [load(shape, v, k)[0]["latency"]["p99_us"] / 1000 for k in range(1, rounds + 1)]
        print(f"- {shape}, {v}: p99 per round " + ", ".join(f"{x:,.1f}" for x in p99) + " ms")
PY
