#!/usr/bin/env bash
# Message priority (AMQP 1.0 §3.2.1) against a backlog: a line of three
# routers A - B - C (plain TCP on loopback), a slow consumer on C
# (`--consume-rate`), a producer on A with a backlog of 100,000 messages
# of 1 KiB at priority 0, then, while the backlog drains, a second
# producer on A sending 100 messages a second at priority 9; the consumer
# reports the latency of each priority (`latency_by_priority`). The
# baseline runs the same with both at the same priority: the backlog
# without a header (priority 4), the urgent messages with a header saying
# 4, so that the consumer still tells them apart. Writes the figures into
# benches/RESULTS.md between the `priority` markers.
#
#   bash benches/priority.sh            every row once (about 3 minutes)
#
# Environment: RATE (consumer msg/s, 10000), COUNT (backlog, 100000),
# CREDIT (consumer credit, 10000).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-10000}
COUNT=${COUNT:-100000}
CREDIT=${CREDIT:-10000}
# The consumer's socket receive buffer: a slow reader's bounded window
# (left to Linux, loopback autotunes it to tens of megabytes, where the
# backlog would wait out of any router's reach).
RECV_BUFFER=${RECV_BUFFER:-262144}
SIZE=1024
URGENT_RATE=100
URGENT_COUNT=300
# The consumer stops after this many seconds (a consumer-only ferry-load
# runs for a duration): the backlog needs COUNT / RATE.
HOLD=$(python3 -c "print(int($COUNT / $RATE) + 10)")

NAME=priority.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

# line WINDOW: starts A - B - C with `link_credit_window = WINDOW`; sets
# A_PORT and C_PORT.
line() {
    local window=$1 b_inter a c b
    b_inter=$(free_port)
    A_PORT=$(free_port)
    b=$(free_port)
    C_PORT=$(free_port)
    local limits="[limits]\nlink_credit_window = $window\n"
    printf '[router]\nid = "B"\nmode = "interior"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n[[listener]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"\n'"$limits" \
        "$b" "$b_inter" >"$OUT/B.$window.toml"
    for r in A C; do
        local port=$A_PORT
        [[ $r == C ]] && port=$C_PORT
        printf '[router]\nid = "%s"\nmode = "interior"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n[[connector]]\nhost = "127.0.0.1"\nport = %s\nrole = "inter-router"\n'"$limits" \
            "$r" "$port" "$b_inter" >"$OUT/$r.$window.toml"
    done
    start_ferry "$OUT/B.$window.toml" "$b"
    ROUTERS=("$FERRY_PID")
    start_ferry "$OUT/A.$window.toml" "$A_PORT"
    ROUTERS+=("$FERRY_PID")
    start_ferry "$OUT/C.$window.toml" "$C_PORT"
    ROUTERS+=("$FERRY_PID")
}

# run NAME URGENT_PRIORITY: one run on the line started last; the backlog
# at priority 0 if the urgent messages are at 9, else without a header.
run() {
    local name=$1 urgent=$2 header=()
    [[ $urgent == 9 ]] && header=(--priority 0)
    local consumer=("$LOAD" --consumer-url "amqp://127.0.0.1:$C_PORT" --producers 0 --consumers 1
        --credit "$CREDIT" --consume-rate "$RATE" --recv-buffer "$RECV_BUFFER" --duration "$HOLD" --progress 0 --json)
    local backlog=("$LOAD" --producer-url "amqp://127.0.0.1:$A_PORT" --producers 1 --consumers 0
        --size "$SIZE" --count "$COUNT" --window "$COUNT" "${header[@]}" --progress 0 --json)
    local urgent=("$LOAD" --producer-url "amqp://127.0.0.1:$A_PORT" --producers 1 --consumers 0
        --size "$SIZE" --count "$URGENT_COUNT" --rate "$URGENT_RATE" --priority "$urgent" --progress 0 --json)
    printf '%s\n' "${consumer[*]}" "${backlog[*]}" "sleep 3" "${urgent[*]}" >"$OUT/$name.cmd"
    "${consumer[@]}" >"$OUT/$name.consumer.json" 2>"$OUT/$name.consumer.log" &
    local c=$!
    sleep 2 # the mesh learns of the consumer (the producers wait for credit anyway)
    "${backlog[@]}" >"$OUT/$name.backlog.json" 2>"$OUT/$name.backlog.log" &
    local b=$!
    sleep 3 # the backlog builds up
    "${urgent[@]}" >"$OUT/$name.urgent.json" 2>"$OUT/$name.urgent.log" || echo "$NAME: $name urgent failed" >&2
    wait "$b" || echo "$NAME: $name backlog failed" >&2
    wait "$c" || echo "$NAME: $name consumer failed" >&2
}

for window in ${WINDOWS:-250 10000}; do
    line "$window"
    for urgent in 9 4; do
        echo "$NAME: window $window, urgent messages at priority $urgent" >&2
        run "w$window.p$urgent" "$urgent"
    done
    kill "${ROUTERS[@]}" 2>/dev/null || true
done

TABLE=$(python3 - "$OUT" "$(nproc)" "$COUNT" "$RATE" "$CREDIT" ${WINDOWS:-250 10000} <<'PY'
import json, sys
out, cores, count, rate, credit = sys.argv[1:6]
windows = [int(w) for w in sys.argv[6:]]
def ms(us):
    return f"{us / 1000:,.0f}" if us >= 10000 else f"{us / 1000:,.1f}"
print(f"Machine: {cores} cores (shared). Backlog: {int(count):,} × 1 KiB, unsettled, one producer "
      f"on A; consumer on C taking {int(rate):,} msg/s with credit {int(credit):,}; the urgent "
      "producer (also on A, its own connection) starts 3 s after the backlog's, 100 msg/s open "
      "loop for 3 s. One run per row. Latency is one-way, from each message's send time (the "
      "backlog's: once it had credit, closed loop) to the consumer's read, in ms.")
print()
print("| `link_credit_window` | priorities (backlog, urgent) | urgent p50 | urgent p99 | urgent max | backlog p50 | backlog p99 | received | lost |")
print("|---|---|---|---|---|---|---|---|---|")
for window in windows:
    for p in (9, 4):
        name = f"w{window}.p{p}"
        try:
            c = json.load(open(f"{out}/{name}.consumer.json"))
            b = json.load(open(f"{out}/{name}.backlog.json"))
            u = json.load(open(f"{out}/{name}.urgent.json"))
        except Exception as e:
            print(f"| {window} | {p} | failed: {e} | | | | | | |")
            continue
        by = {l["priority"]: l for l in c.get("latency_by_priority", [])}
        l = by.get(p)
        # The backlog: priority 0, or (no header) every message read.
        a, which = (by[0], "0, 9") if p == 9 and 0 in by else (c.get("latency"), "4, 4")
        lost = (b["accepted"] + u["accepted"]) - c["received"]
        urgent = (f"{ms(l['p50_us'])} | {ms(l['p99_us'])} | {ms(l['max_us'])}" if l else "— | — | —")
        print(f"| {window} | {which} | {urgent} | "
              f"{ms(a['p50_us'])} | {ms(a['p99_us'])} | {c['received']:,} | {lost} |")
PY
)
read -r -a windows <<<"${WINDOWS:-250 10000}"
CMDS=$(sed 's|^|    |' "$OUT/w${windows[0]}.p9.cmd")
{
    echo "$TABLE"
    echo
    echo "In the rows at 4, 4 the backlog's latency is that of every message read (the"
    echo "backlog and the 300 urgent ones, which have a header only to be told apart)."
    echo "The commands of a run (window ${windows[0]}, urgent at priority 9; routers: \`ferry run\` on"
    echo "configurations that \`benches/priority.sh\` writes, \`[limits] link_credit_window\` as in the row):"
    echo
    echo "$CMDS"
    echo
    echo "Load average: $(cut -d' ' -f1-3 /proc/loadavg)."
} | write_section priority "Message priority against a backlog"
echo "$TABLE"
