#!/usr/bin/env bash
# A brokered queue through one router against the broker directly, in one
# run: ferry-load's producer (100 B, unsettled, no consumer: each outcome
# is the broker's "stored") straight to RabbitMQ's AMQP 1.0 port
# (`/queue/bench.direct`, declared by ferry-load's link: not durable) and
# through a router whose `[[address]] queue.bench` is `distribution =
# "queue"` on that broker (`/queue/queue.bench`, declared durable by the
# router); then, through the router only, a producer and a consumer at
# once on `queue.cycle` (ferry-load's consumer does not get past its
# attach to RabbitMQ 3.10 directly: it waits for ever, not investigated).
# ferry-load's messages are not durable (no header), so no queue writes
# them to disk.
# Rounds interleaved, medians shown. Writes the figures into
# benches/RESULTS.md between the `broker` markers.
#
#   bash benches/broker.sh            full run (about 2 minutes on 2 cores)
#   bash benches/broker.sh --quick    one round of fewer messages
#
# Needs cargo, python3 and rabbitmq-server (Debian's, with its
# rabbitmq_amqp1_0 plugin); starts its own broker and epmd on free ports
# and stops them by pid. KEEP_OUT=1 keeps the raw JSON and logs.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=50000
REPS=3
if [[ ${1:-} == --quick ]]; then
    COUNT=10000 REPS=1
fi
NAME=broker.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
[[ -x $SERVER ]] || {
    echo "$NAME: $SERVER missing (apt-get install rabbitmq-server)" >&2
    exit 1
}
AMQP=$(free_port)
DIST=$(free_port)
EPMD=$(free_port)
ROUTER_PORT=$(free_port)
mkdir -p "$OUT/rabbit"
echo '[rabbitmq_amqp1_0].' >"$OUT/rabbit/enabled_plugins"
cat >"$OUT/rabbit/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$AMQP
loopback_users = none
default_user = bench
default_pass = bench
CONF
epmd -port "$EPMD" -address 127.0.0.1 &
PIDS+=($!)
HOME="$OUT/rabbit" RABBITMQ_NODENAME="bench$AMQP@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$AMQP RABBITMQ_DIST_PORT=$DIST ERL_EPMD_PORT=$EPMD \
    RABBITMQ_MNESIA_BASE="$OUT/rabbit/mnesia" RABBITMQ_LOG_BASE="$OUT/rabbit/log" \
    RABBITMQ_PID_FILE="$OUT/rabbit/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$OUT/rabbit/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$OUT/rabbit/rabbitmq" RABBITMQ_CONF_ENV_FILE="$OUT/rabbit/env.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$OUT/rabbit/advanced.config" \
    "$SERVER" >"$OUT/rabbit/server.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do
    (echo >"/dev/tcp/127.0.0.1/$AMQP") 2>/dev/null && break
    sleep 0.1
done
(echo >"/dev/tcp/127.0.0.1/$AMQP") 2>/dev/null || {
    echo "$NAME: rabbitmq-server did not start" >&2
    cat "$OUT/rabbit/server.out" >&2
    exit 1
}

cat >"$OUT/ferry.toml" <<TOML
[router]
id = "bench"

[[listener]]
host = "127.0.0.1"
port = $ROUTER_PORT

[[broker]]
name = "rabbit"
host = "127.0.0.1"
port = $AMQP
user = "bench"
password = "bench"

[[address]]
prefix = "queue.bench"
distribution = "queue"
broker = "rabbit"

[[address]]
prefix = "queue.cycle"
distribution = "queue"
broker = "rabbit"
TOML
start_ferry "$OUT/ferry.toml" "$ROUTER_PORT"
ROUTER=$FERRY_PID
for _ in $(seq 100); do
    grep -q 'broker rabbit connected' "$OUT/ferry.log" && break
    sleep 0.1
done
grep -q 'broker rabbit connected' "$OUT/ferry.log" || {
    echo "$NAME: the router did not connect to the broker" >&2
    cat "$OUT/ferry.log" >&2
    exit 1
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
BEAM=$(cat "$OUT/rabbit/pid")

# load NAME URL ADDRESS: one ferry-load run; its report to NAME.json, the
# router's and the broker's CPU ticks over it to NAME.cpu.
load() {
    local name=$1 url=$2 address=$3 r0 b0
    shift 3
    local cmd=("$LOAD" --url "$url" --address "$address" --size 100 --count "$COUNT"
        --progress 0 --json "$@")
    printf '%s\n' "${cmd[*]}" >"$OUT/$name.cmd"
    r0=$(ticks "$ROUTER")
    b0=$(ticks "$BEAM")
    timeout 300 "${cmd[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log" || echo "$NAME: $name failed" >&2
    echo "$(($(ticks "$ROUTER") - r0)) $(($(ticks "$BEAM") - b0))" >"$OUT/$name.cpu"
}

for k in $(seq "$REPS"); do
    echo "$NAME: round $k" >&2
    load "direct.$k" "amqp://bench:bench@127.0.0.1:$AMQP" /queue/bench.direct --consumers 0
    load "router.$k" "amqp://127.0.0.1:$ROUTER_PORT" queue.bench --consumers 0
    load "cycle.$k" "amqp://127.0.0.1:$ROUTER_PORT" queue.cycle
done

TABLE=$(python3 - "$OUT" "$REPS" "$COUNT" "$(getconf CLK_TCK)" "$(nproc)" <<'PY'
import json, statistics, sys
out, reps, count, hz, cores = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
def report(name):
    try:
        return json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        return None
def cmd(name): return open(f"{out}/{name}.cmd").read().strip().replace(out, "$OUT")
def cpu(name):
    r, b = map(int, open(f"{out}/{name}.cpu").read().split())
    return r / hz * 1e6 / count, b / hz * 1e6 / count
lines = []
def row(*cells): lines.append("| " + " | ".join(str(c) for c in cells) + " |")
lines.append(f"RabbitMQ 3.10.8 (Debian, `rabbitmq_amqp1_0`) and one router on the same {cores} cores; "
             f"ferry-load, {count:,} messages of 100 B, unsettled (window 1,000), not durable; "
             f"{reps} interleaved rounds, the median msg/s shown with the range. "
             f"**Stored**: one producer and no consumer, msg/s counts the broker's outcomes "
             f"(`accepted` = stored): straight to the broker (`/queue/bench.direct`, a queue "
             f"ferry-load's link declares, not durable) and through the router (`queue.bench`, "
             f"`distribution = \"queue\"`, the router's links on `/queue/queue.bench`, durable). "
             f"**Stored and delivered**: through the router only, a producer and a consumer (credit "
             f"1,000) at once on `queue.cycle`; each message crosses the router twice (to the broker, "
             f"back to the consumer). ferry-load's consumer does not get past its attach to RabbitMQ "
             f"3.10 directly (it waits for ever; not investigated), so there is no direct row for it. "
             f"Latency: stored rows, send to outcome is not measured (no consumer), so none.")
lines.append("")
row("path", "msg/s", "p50 µs", "p99 µs", "router CPU µs/msg", "broker CPU µs/msg", "lost / stored")
row("---", "---:", "---:", "---:", "---:", "---:", "---")
for kind, label in (("direct", "stored: ferry-load → RabbitMQ directly"),
                    ("router", "stored: ferry-load → ferry → RabbitMQ"),
                    ("cycle", "stored and delivered: ferry-load → ferry → RabbitMQ → ferry → ferry-load")):
    runs = [(k, report(f"{kind}.{k}")) for k in range(1, reps + 1)]
    ok = [(k, r) for k, r in runs if r]
    if not ok:
        row(label, "failed", "", "", "", "", "")
        continue
    ok.sort(key=lambda kr: kr[1]["msgs_per_s"])
    k, r = ok[len(ok) // 2]
    lo, hi = ok[0][1]["msgs_per_s"], ok[-1][1]["msgs_per_s"]
    rc, bc = cpu(f"{kind}.{k}")
    lost = r.get("lost")
    if lost is None:
        # No consumer: every message must come back accepted (stored).
        lost = f"{r['accepted']:,} of {r['sent']:,} accepted"
    if r.get("error"):
        lost = f"{lost} (error: {r['error']})"
    rng = f" ({lo:,.0f}–{hi:,.0f})" if len(ok) > 1 else ""
    lat = r.get("latency") or {}
    row(label, f"{r['msgs_per_s']:,.0f}{rng}", lat.get("p50_us", "–"), lat.get("p99_us", "–"),
        "–" if kind == "direct" else f"{rc:.2f}", f"{bc:.2f}", lost)
lines.append("")
lines.append("Commands (`$OUT` is the run's scratch directory; ports vary from run to run):")
lines.append("")
lines.append("```")
lines.append("bash benches/broker.sh" + ("" if reps > 1 else " --quick"))
lines.append(cmd("direct.1"))
lines.append(cmd("router.1"))
lines.append(cmd("cycle.1"))
lines.append("```")
print("\n".join(lines))
PY
)
{
    echo "Produced by \`bash benches/broker.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))."
    echo
    echo "$TABLE"
} | write_section broker "Brokered queue through one router against the broker directly (issue #16 part 3)"
echo "$TABLE"
