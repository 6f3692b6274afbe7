#!/usr/bin/env bash
# Router benchmark suite: builds `ferry` and `ferry-load`, starts routers
# (one router; a line of three), drives them with ferry-load and writes the
# figures into benches/RESULTS.md between the `router` markers (the codec
# block is left alone).
#
#   bash benches/run.sh            full run (about 3 minutes on 2 cores)
#   bash benches/run.sh --quick    short run (under a minute): fewer messages,
#                                  shorter open-loop runs; numbers are noisier
#
# Needs cargo, python3 (standard library only) and Linux (/proc). Raises the
# soft file-descriptor limit (ulimit -n) up to the hard one for the 10,000
# idle connections. Set KEEP_OUT=1 to keep the raw JSON, logs and router
# configs (the directory is printed). See benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
case "${1:-}" in
"") ;;
--quick) MODE=quick ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: bash benches/run.sh [--quick]" >&2
    exit 2
    ;;
esac

if [[ $MODE == full ]]; then
    COUNT=1000000     # 100 B closed-loop runs (1 KiB: half as many, 64 KiB: 1/50)
    DUR=10            # open-loop latency runs, seconds
    MANY_DUR=20       # 1,000 producers, seconds
    MC_COUNT=100000   # multicast messages (each delivered to 10 consumers)
    LINE_COUNT=300000 # 3-router line, closed loop
    REPS=3            # closed-loop runs are repeated; the median is shown
else
    COUNT=100000
    DUR=3
    MANY_DUR=5
    MC_COUNT=20000
    LINE_COUNT=50000
    REPS=1
fi
EQ_RATE=50000 # open-loop rate at which one router and the line are compared
IDLE=10000    # idle connections for the memory figure
MANY=1000     # producers in the many-producers scenario
MANY_RATE=10  # msg/s each
MC_CONSUMERS=10

# File descriptors: ferry-load and the router each hold one per connection.
NEED=$((IDLE + 256))
SOFT=$(ulimit -Sn)
HARD=$(ulimit -Hn)
if [[ $SOFT != unlimited && $SOFT -lt $NEED ]]; then
    if [[ $HARD == unlimited || $HARD -ge $NEED ]]; then
        ulimit -n "$NEED"
    else
        ulimit -n "$HARD"
    fi
fi
FDS=$(ulimit -n)
if [[ $FDS != unlimited && $FDS -lt $NEED ]]; then
    IDLE=$((FDS - 256))
    echo "run.sh: ulimit -n is $FDS (hard $HARD): holding $IDLE idle connections, not 10,000" >&2
fi
if [[ $FDS != unlimited && $FDS -lt $((MANY + 256)) ]]; then
    echo "run.sh: ulimit -n is $FDS, too low for $MANY producers" >&2
    exit 1
fi

cargo build --release --locked -p ferry-router -p ferry-benches >&2
FERRY=target/release/ferry
LOAD=target/release/ferry-load
OUT=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${KEEP_OUT:-} ]]; then echo "run.sh: raw results kept in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_router NAME CLIENT_PORT CONFIG: writes $OUT/NAME.toml, starts
# `ferry run` on it, waits until CLIENT_PORT accepts; the pid goes to
# $OUT/NAME.pid.
start_router() {
    local name=$1 port=$2 pid
    printf '%s\n' "$3" >"$OUT/$name.toml"
    "$FERRY" run --config "$OUT/$name.toml" 2>"$OUT/$name.log" &
    pid=$!
    PIDS+=("$pid")
    echo "$pid" >"$OUT/$name.pid"
    for _ in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: router $name exited:" >&2
            cat "$OUT/$name.log" >&2
            exit 1
        fi
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "run.sh: router $name is not listening on $port" >&2
    exit 1
}

stop_router() {
    local pid
    pid=$(cat "$OUT/$1.pid")
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

pid_of() { cat "$OUT/$1.pid"; }

# User+system CPU clock ticks of the given processes, summed.
ticks() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}

# Machine-wide busy and steal clock ticks (all CPUs), from /proc/stat.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

FAILED=()
# run NAME "ROUTER PIDS" ferry-load ARGS...: the JSON report goes to
# $OUT/NAME.json, the progress lines to NAME.log, the command to NAME.cmd,
# the routers' CPU ticks over the run to NAME.cpu.
run() {
    local name=$1 pids=$2 before after rc=0
    shift 2
    local cmd=("$LOAD" "$@" --json)
    printf '%s\n' "${cmd[*]}" >"$OUT/$name.cmd"
    local busy0 busy1 TIMEFORMAT='%3R %3U %3S'
    # shellcheck disable=SC2086
    before=$(ticks $pids)
    busy0=$(busy)
    { time "${cmd[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log"; } 2>"$OUT/$name.time" || rc=$?
    busy1=$(busy)
    # shellcheck disable=SC2086
    after=$(ticks $pids)
    echo $((after - before)) >"$OUT/$name.cpu"
    echo "$rc" >"$OUT/$name.rc"
    # What the rest of the machine did meanwhile: busy CPU not spent by
    # the routers or ferry-load, and hypervisor steal, in cores.
    # (`time`: wall, user and system seconds of ferry-load.)
    echo "$busy0 $busy1 $(tail -n 1 "$OUT/$name.time") $((after - before))" | awk -v hz="$(getconf CLK_TCK)" '{
        wall = $5; if (wall <= 0) wall = 1e-9
        other = (($3 - $1) / hz - ($6 + $7) - $8 / hz) / wall
        printf "%.3f %.3f\n", (other > 0 ? other : 0), ($4 - $2) / hz / wall
    }' >"$OUT/$name.other"
    python3 - "$OUT/$name.json" "$name" "$rc" "$(cat "$OUT/$name.other")" <<'PY' >&2
import json, sys
path, name, rc, other = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"  {name:<22} no report (exit {rc}): {e}")
    sys.exit()
lat = r.get("latency") or {}
miss = r.get("lost") if r.get("lost") is not None else r.get("dropped")
print(f"  {name:<22} {r['msgs_per_s']:>11,.0f} msg/s  p50 {lat.get('p50_us', '-')} µs  "
      f"p99 {lat.get('p99_us', '-')} µs  missing {miss if miss is not None else '-'}  "
      f"(others {other.split()[0]} cores)"
      + (f"  ERROR {r['error']}" if r.get("error") else ""))
PY
    if [[ $rc != 0 ]]; then
        FAILED+=("$name")
        tail -n 5 "$OUT/$name.log" >&2
    fi
}

# runs NAME "ROUTER PIDS" ARGS...: `run` $REPS times (NAME.1, NAME.2, ...);
# the run with the median msg/s becomes NAME, and NAME.reps lists every
# run's msg/s.
runs() {
    local name=$1 k
    shift
    for k in $(seq "$REPS"); do run "$name.$k" "$@"; done
    python3 - "$OUT" "$name" "$REPS" <<'PY'
import json, shutil, sys
out, name, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rates = []
for k in range(1, reps + 1):
    try:
        rates.append((json.load(open(f"{out}/{name}.{k}.json"))["msgs_per_s"], k))
    except Exception:
        rates.append((0.0, k))
median = sorted(rates)[len(rates) // 2][1]
for ext in ("json", "cpu", "cmd", "rc", "log", "other"):
    shutil.copy(f"{out}/{name}.{median}.{ext}", f"{out}/{name}.{ext}")
json.dump([r for r, _ in rates], open(f"{out}/{name}.reps", "w"))
PY
}

json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

START_TIME=$(date -u +%Y-%m-%dT%H:%MZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "run.sh: $MODE run, results in $OUT" >&2

# --- generator ceiling: in-process sink, no router ---------------------------
echo "generator ceiling (in-process sink)" >&2
runs sink-100-unsettled "" --sink --size 100 --count "$COUNT"
runs sink-100-presettled "" --sink --size 100 --count "$COUNT" --settle presettled
runs sink-64k-unsettled "" --sink --size 65536 --count $((COUNT / 50))
runs sink-multicast "" --sink --size 100 --count "$MC_COUNT" --consumers "$MC_CONSUMERS" --multicast

# --- one router ---------------------------------------------------------------
PORT=$(free_port)
start_router single "$PORT" "[router]
id = \"R\"

[[listener]]
host = \"127.0.0.1\"
port = $PORT

[[address]]
prefix = \"multicast\"
distribution = \"multicast\"

[log]
level = \"warn\""
R=$(pid_of single)
URL=amqp://127.0.0.1:$PORT
sleep 0.5
IDLE_RSS=$(kib "$R" VmRSS)

echo "single router" >&2
runs r-100-unsettled "$R" --url "$URL" --size 100 --count "$COUNT"
runs r-100-presettled "$R" --url "$URL" --size 100 --count "$COUNT" --settle presettled
runs r-1k-unsettled "$R" --url "$URL" --size 1024 --count $((COUNT / 2))
runs r-1k-presettled "$R" --url "$URL" --size 1024 --count $((COUNT / 2)) --settle presettled
runs r-64k-unsettled "$R" --url "$URL" --size 65536 --count $((COUNT / 50))
runs r-64k-presettled "$R" --url "$URL" --size 65536 --count $((COUNT / 50)) --settle presettled
SAT=$(json_field "$OUT/r-100-unsettled.json" msgs_per_s | cut -d. -f1)
run r-latency-half "$R" --url "$URL" --size 100 --rate $((SAT / 2)) --duration "$DUR"
run r-latency-10k "$R" --url "$URL" --size 100 --rate 10000 --duration "$DUR"
# CPU per message at a rate the line also sustains (compared below).
runs r-equal-rate "$R" --url "$URL" --size 100 --rate "$EQ_RATE" --duration "$DUR"

echo "multicast 1 -> $MC_CONSUMERS" >&2
runs mc-unsettled "$R" --url "$URL" --address multicast.load --size 100 --count "$MC_COUNT" \
    --consumers "$MC_CONSUMERS" --multicast
runs mc-presettled "$R" --url "$URL" --address multicast.load --size 100 --count "$MC_COUNT" \
    --consumers "$MC_CONSUMERS" --multicast --settle presettled

echo "$MANY producers at $MANY_RATE msg/s each" >&2
# Ferry never promises producers more credit than the consumers granted,
# and tops each producer up to its link window (250): for all 1,000 to hold
# credit at once the consumer must grant 250,000. The second run keeps
# ferry-load's default consumer credit (1,000).
run many-producers "$R" --url "$URL" --size 100 --producers "$MANY" --rate $((MANY * MANY_RATE)) \
    --duration "$MANY_DUR" --credit 250000
run many-producers-credit1k "$R" --url "$URL" --size 100 --producers "$MANY" \
    --rate $((MANY * MANY_RATE)) --duration "$((MANY_DUR / 2))"
PEAK_RSS=$(kib "$R" VmHWM)

echo "$IDLE idle connections" >&2
"$LOAD" --url "$URL" --idle "$IDLE" --hold 600 2>"$OUT/idle.log" &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
printf '%s\n' "$LOAD --url $URL --idle $IDLE --hold 600" >"$OUT/idle.cmd"
for _ in $(seq 1200); do
    grep -q "idle connections open" "$OUT/idle.log" 2>/dev/null && break
    kill -0 "$IDLE_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q "idle connections open" "$OUT/idle.log" || {
    echo "run.sh: the idle connections did not open" >&2
    cat "$OUT/idle.log" >&2
    exit 1
}
sleep 1
CONN_RSS=$(kib "$R" VmRSS)
kill "$IDLE_PID"
wait "$IDLE_PID" 2>/dev/null || true
stop_router single

# --- a line of three routers: A - B - C ---------------------------------------
echo "3-router line" >&2
PA=$(free_port)
PB=$(free_port)
PC=$(free_port)
PI=$(free_port)
mesh_config() { # id client_port extra
    printf '[router]\nid = "%s"\nmode = "interior"\n\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n\n%s\n[[address]]\nprefix = "multicast"\ndistribution = "multicast"\n\n[log]\nlevel = "warn"' "$1" "$2" "$3"
}
start_router B "$PB" "$(mesh_config B "$PB" "[[listener]]
host = \"127.0.0.1\"
port = $PI
role = \"inter-router\"
")"
for id in A C; do
    p=$PA
    [[ $id == C ]] && p=$PC
    start_router "$id" "$p" "$(mesh_config "$id" "$p" "[[connector]]
host = \"127.0.0.1\"
port = $PI
role = \"inter-router\"
cost = 1
")"
done
MESH="$(pid_of A) $(pid_of B) $(pid_of C)"
# ferry-load starts the clock once the producer on A has credit, that is
# once A has learnt (through B) of the consumer on C.
runs line-unsettled "$MESH" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "amqp://127.0.0.1:$PC" \
    --size 100 --count "$LINE_COUNT"
run line-latency-10k "$MESH" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "amqp://127.0.0.1:$PC" \
    --size 100 --rate 10000 --duration "$DUR"
runs line-equal-rate "$MESH" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "amqp://127.0.0.1:$PC" \
    --size 100 --rate "$EQ_RATE" --duration "$DUR"
runs line-presettled "$MESH" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "amqp://127.0.0.1:$PC" \
    --size 100 --count "$LINE_COUNT" --settle presettled
# Multicast: the producer on A, 10 consumers spread over A, B and C (4, 3, 3);
# the producers wait 2 s for every router to learn of every consumer.
ALL="amqp://127.0.0.1:$PA,amqp://127.0.0.1:$PB,amqp://127.0.0.1:$PC"
runs line-mc-unsettled "$MESH" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "$ALL" \
    --address multicast.load --size 100 --count "$MC_COUNT" --consumers "$MC_CONSUMERS" --multicast --start-delay 2
runs line-mc-presettled "$MESH" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "$ALL" \
    --address multicast.load --size 100 --count "$MC_COUNT" --consumers "$MC_CONSUMERS" --multicast \
    --settle presettled --start-delay 2
for id in A B C; do stop_router "$id"; done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- RESULTS.md -------------------------------------------------------------------
python3 - "$OUT" "$MODE" "$IDLE_RSS" "$CONN_RSS" "$PEAK_RSS" "$IDLE" "$START_TIME" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$MANY" "$MANY_RATE" "$REPS" "$EQ_RATE" "$DUR" <<'PY'
import json, os, re, sys

(out, mode, idle_rss, conn_rss, peak_rss, idle_n, when, load_before, load_after,
 many, many_rate, reps, eq_rate, dur) = sys.argv[1:]
hz = os.sysconf("SC_CLK_TCK")
cores = os.cpu_count()
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), os.uname().machine)
ids = {}  # run name -> row number

def load(n):
    try:
        r = json.load(open(f"{out}/{n}.json"))
    except Exception as e:
        r = {"error": f"no report: {e}", "msgs_per_s": 0, "received": 0, "sent": 0}
    r["rc"] = int(open(f"{out}/{n}.rc").read())
    r["router_cpu_s"] = int(open(f"{out}/{n}.cpu").read()) / hz
    r["cmd"] = open(f"{out}/{n}.cmd").read().strip()
    r["other"], r["steal"] = map(float, open(f"{out}/{n}.other").read().split())
    ids.setdefault(n, len(ids) + 1)
    r["id"] = ids[n]
    return r

def n0(x):
    return f"{x:,.0f}"

def rate(n, key="msgs_per_s"):
    """msg/s, with the range over the repetitions (closed-loop rows)."""
    r = load(n)
    text = n0(r.get(key) or 0)
    try:
        reps = json.load(open(f"{out}/{n}.reps"))
    except FileNotFoundError:
        return text
    if key == "msgs_per_s" and len(reps) > 1:
        text += f" ({n0(min(reps))}–{n0(max(reps))})"
    return text

def lat(r, k):
    l = r.get("latency")
    return f"{l[k]:,}" if l else "–"

def per_msg(cpu_s, r):
    moved = r.get("received") or 0
    return f"{cpu_s / moved * 1e6:.2f}" if moved and cpu_s is not None else "–"

def missing(r):
    if r.get("lost") is not None:
        s = f"{r['lost']:,}" if r["lost"] == 0 else f"**{r['lost']:,} LOST**"
        away = {k: r.get(k, 0) for k in ("rejected", "released", "modified", "unsettled")}
        extra = ", ".join(f"{v:,} {k}" for k, v in away.items() if v)
        return s + (f" ({extra})" if extra else "")
    if r.get("dropped") is not None:
        d, e = r["dropped"], r.get("expected") or 0
        return f"dropped {d:,} ({d * 100 / e:.2f} %)" if d and e else "dropped 0"
    return "–"

def label(r, text):
    if r.get("error") or r["rc"]:
        return f"{text} — **FAILED: {r.get('error') or 'exit ' + str(r['rc'])}**"
    return text

HEAD = ("| # | scenario | msg/s | MB/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs "
        "| router CPU µs/msg | ferry-load CPU µs/msg | lost |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")

def row(n, text, cpu=True):
    r = load(n)
    return r, (f"| {r['id']} | {label(r, text)} | {rate(n)} | {r.get('mb_per_s', 0):.1f} "
               f"| {lat(r, 'p50_us')} | {lat(r, 'p90_us')} | {lat(r, 'p99_us')} | {lat(r, 'p999_us')} "
               f"| {lat(r, 'max_us')} | {per_msg(r['router_cpu_s'], r) if cpu else '–'} "
               f"| {per_msg(r.get('generator_cpu_s'), r)} | {missing(r)} |")

MC = 10
MC_HEAD = ("| # | scenario | delivered msg/s | per consumer msg/s | messages per consumer (min–max) "
           "| p50 µs | p99 µs | p99.9 µs | max µs | router CPU µs/copy | ferry-load CPU µs/copy | lost |\n"
           "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")

def mc_row(n, text):
    r = load(n)
    pc = r.get("per_consumer") or [{"received": 0, "msgs_per_s": 0}]
    rates = [c["msgs_per_s"] for c in pc]
    counts = [c["received"] for c in pc]
    return (f"| {r['id']} | {label(r, text)} | {rate(n)} | {n0(sum(rates) / len(rates))} "
            f"| {min(counts):,}–{max(counts):,} | {lat(r, 'p50_us')} | {lat(r, 'p99_us')} "
            f"| {lat(r, 'p999_us')} | {lat(r, 'max_us')} | {per_msg(r['router_cpu_s'], r)} "
            f"| {per_msg(r.get('generator_cpu_s'), r)} | {missing(r)} |")

used = []
def commands(*names):
    lines = ["", "Commands (ports vary from run to run):", "", "```"]
    for n in names:
        r = load(n)
        used.append(n)
        lines.append(f"#{r['id']}: {r['cmd']}")
    return lines + ["```"]

L = ["<!-- router:begin -->", "## Router", ""]
quick = " --quick" if mode == "quick" else ""
L += [
    f"Produced by `bash benches/run.sh{quick}` ({mode} run, {when}) on a machine with "
    f"**{cores} cores** (`nproc`; {model}). Every figure below was measured on those "
    f"{cores} cores, shared by the router(s), `ferry-load` and the kernel, so each is a "
    "lower bound for a router with the machine to itself. Load average (1/5/15 min) "
    f"{load_before} before the run and {load_after} after it: other jobs on this machine "
    "may have taken CPU during the run.",
    "",
    "- **msg/s**: messages received by the consumers per second (a multicast copy counts "
    "once per consumer), from the start (every producer attached, one with credit) to the "
    "last message received. MB/s: body bytes. "
    + ("Closed-loop rows were run 3 times: the run with the median msg/s is shown, the "
       "range of the 3 in parentheses. " if mode == "full" else "Each row is a single run. ")
    + "Open-loop rows (`--rate`) are single runs.",
    "- **latency**: one-way, from the send stamp in the message to its arrival at the "
    "consumer, over every message. Closed loop (no `--rate`): the actual send time, so it "
    "includes the time queued behind a full window. Open loop (`--rate`): the earlier of "
    "the intended and the actual send time, so time a producer was held back (no credit, "
    "full window) counts (coordinated omission).",
    "- **router CPU µs/msg**: the router processes' user+system time from "
    f"`/proc/PID/stat` over the run (clock ticks of 1/{hz} s), divided by the messages "
    "received; µs per message is also seconds per million messages. For the line, the "
    "three routers summed. **ferry-load CPU**: the same for the generator (from "
    "`/proc/self/stat`).",
    "- **lost**: unsettled runs, messages sent and not received by a consumer, less those "
    "the router settled without accepting (shown if any): must be 0. Pre-settled runs: "
    "**dropped**, which AMQP allows for at-most-once delivery. Every message carries a "
    "producer id and sequence number: duplicates do not hide losses.",
    "",
]

L += ["### Generator ceiling (in-process sink, no router)", "",
      f"`ferry-load --sink` on {cores} cores: producers send to, and consumers receive "
      "from, a trivial AMQP peer inside the same process (the `ferry_proto` engine: every "
      "message accepted at once; consumers sent as many stamped messages as the producers "
      "send; the two sides run at once, independently). The generator does the same work as against a router, and the peer's CPU "
      "counts against it: these are lower bounds of what ferry-load can drive.", "",
      "| # | scenario | producer side: sent msg/s | consumer side: received msg/s | received MB/s | ferry-load CPU µs/msg received (with the peer) |",
      "|---:|---|---:|---:|---:|---:|"]
sink = {}
for n, text in [("sink-100-unsettled", "1 producer, 1 consumer, 100 B unsettled"),
                ("sink-100-presettled", "1 producer, 1 consumer, 100 B pre-settled"),
                ("sink-64k-unsettled", "1 producer, 1 consumer, 64 KiB unsettled"),
                ("sink-multicast", "1 producer, 10 consumers each receiving every message, 100 B unsettled")]:
    r = load(n)
    sink[n] = r
    L.append(f"| {r['id']} | {label(r, text)} | {n0(r.get('send_msgs_per_s', 0))} | {rate(n)} "
             f"| {r.get('mb_per_s', 0):.1f} | {per_msg(r.get('generator_cpu_s'), r)} |")
L += commands("sink-100-unsettled", "sink-100-presettled", "sink-64k-unsettled", "sink-multicast")

L += ["", "### One router", "",
      f"One `ferry` on {cores} cores; `ferry-load` with one producer and one consumer "
      "connection on the same machine. Closed loop: unsettled with up to 1,000 in flight "
      "(`--window`), consumer credit 1,000.", "", HEAD]
single = {}
for n, text in [("r-100-unsettled", "100 B unsettled, closed loop"),
                ("r-100-presettled", "100 B pre-settled, closed loop"),
                ("r-1k-unsettled", "1 KiB unsettled, closed loop"),
                ("r-1k-presettled", "1 KiB pre-settled, closed loop"),
                ("r-64k-unsettled", "64 KiB unsettled, closed loop"),
                ("r-64k-presettled", "64 KiB pre-settled, closed loop"),
                ("r-latency-half", "100 B unsettled, open loop at 50 % of #{} ({} msg/s)"),
                ("r-latency-10k", "100 B unsettled, open loop at 10,000 msg/s")]:
    if n == "r-latency-half":
        text = text.format(ids["r-100-unsettled"], n0(json.load(open(f"{out}/{n}.json")).get("target_rate") or 0))
    r, line = row(n, text)
    single[n] = r
    L.append(line)
ceil_u, ceil_p = sink["sink-100-unsettled"], sink["sink-100-presettled"]
def ratio(a, b):
    return f"{a['msgs_per_s'] / b['msgs_per_s']:.2f}" if b.get("msgs_per_s") else "–"
L += ["",
      f"Against the generator's ceiling measured in the same run: 100 B unsettled "
      f"{ratio(single['r-100-unsettled'], ceil_u)} × (#{single['r-100-unsettled']['id']} / "
      f"#{ceil_u['id']}), pre-settled {ratio(single['r-100-presettled'], ceil_p)} × "
      f"(#{single['r-100-presettled']['id']} / #{ceil_p['id']}); 64 KiB unsettled "
      f"{ratio(single['r-64k-unsettled'], sink['sink-64k-unsettled'])} × "
      f"(#{single['r-64k-unsettled']['id']} / #{sink['sink-64k-unsettled']['id']})."]
L += commands(*single)

L += ["", "Memory (same router, `VmRSS`/`VmHWM` from `/proc/PID/status`):", "",
      "| what | router RSS |", "|---|---:|",
      f"| idle, just started | {int(idle_rss) / 1024:.1f} MiB |",
      f"| peak (`VmHWM`) after every run above and the multicast and {int(many):,}-producer runs below | {int(peak_rss) / 1024:.1f} MiB |",
      f"| with {int(idle_n):,} idle AMQP connections (each with a session) held by `ferry-load --idle` | {int(conn_rss) / 1024:.1f} MiB |",
      f"| per idle connection | {(int(conn_rss) - int(idle_rss)) / int(idle_n):.1f} KiB |",
      "", "```", f"{open(f'{out}/idle.cmd').read().strip()}   # killed once the RSS is read", "```",
      "", "The router of this and the next two sections, started with "
      "`target/release/ferry run --config single.toml`:", "",
      "```toml", open(f"{out}/single.toml").read().strip(), "```"]

L += ["", f"### Multicast 1 → 10 (one router)", "",
      f"Same router, {cores} cores: one producer to `multicast.load` (a multicast address), "
      "10 consumers, each of which must receive every message (`--multicast`). msg/s counts "
      "every copy delivered; per consumer is each consumer's rate.", "",
      MC_HEAD]
for n, text in [("mc-unsettled", "100 B unsettled, closed loop"),
                ("mc-presettled", "100 B pre-settled, closed loop")]:
    L.append(mc_row(n, text))
mc_ceiling = sink["sink-multicast"]
L += ["", f"Generator ceiling for this shape (#{mc_ceiling['id']}): {n0(mc_ceiling['msgs_per_s'])} "
      f"copies/s received; ratio {ratio(load('mc-unsettled'), mc_ceiling)} × for #{load('mc-unsettled')['id']}."]
L += commands("mc-unsettled", "mc-presettled")

L += ["", f"### {int(many):,} producers at {int(many_rate)} msg/s each (one router)", "",
      f"Same router, {cores} cores: {int(many):,} producer connections (tokio tasks in one "
      f"`ferry-load` process), open loop at {int(many) * int(many_rate):,} msg/s in all, "
      "staggered evenly; one consumer. Ferry never promises producers more credit than the "
      "consumers granted and tops each producer up to its link window (250), so the "
      f"consumer must grant {int(many) * 250:,} credit for every producer to hold credit at "
      "once; the second row keeps ferry-load's default (1,000).", "", HEAD]
for n, text in [("many-producers", f"{int(many):,} × {int(many_rate)} msg/s, 100 B unsettled, consumer credit 250,000"),
                ("many-producers-credit1k", f"{int(many):,} × {int(many_rate)} msg/s, 100 B unsettled, consumer credit 1,000")]:
    L.append(row(n, text)[1])
L += commands("many-producers", "many-producers-credit1k")

L += ["", "### Three routers in a line: A - B - C", "",
      f"Three `ferry` processes on the same {cores} cores; A and C connect to B's "
      "inter-router listener. The producer is on A, the consumer on C: every message "
      "crosses two inter-router hops. Router CPU is the three routers' together.", "", HEAD]
for n, text in [("line-unsettled", "A → B → C, 100 B unsettled, closed loop"),
                ("line-presettled", "A → B → C, 100 B pre-settled, closed loop"),
                ("line-latency-10k", "A → B → C, 100 B unsettled, open loop at 10,000 msg/s")]:
    L.append(row(n, text)[1])
one, line = load("r-100-unsettled"), load("line-unsettled")
cpu_us = lambda r: r["router_cpu_s"] / max(r.get("received") or 0, 1) * 1e6

def median_cpu_us(n):
    """Router CPU µs per message of each repetition of `n`, and their median."""
    per = []
    for k in range(1, int(reps) + 1):
        try:
            got = json.load(open(f"{out}/{n}.{k}.json")).get("received") or 0
            ticks = int(open(f"{out}/{n}.{k}.cpu").read())
        except Exception:
            continue
        if got:
            per.append(ticks / hz / got * 1e6)
    per.sort()
    return per, (per[len(per) // 2] if per else float("nan"))

eq_one, eq_one_m = median_cpu_us("r-equal-rate")
eq_line, eq_line_m = median_cpu_us("line-equal-rate")
eq_line_m /= 3
L += ["", f"Router CPU per message per router: {cpu_us(line) / 3:.2f} µs in the line (#{line['id']}, "
      f"three routers summed, divided by 3) against {cpu_us(one):.2f} µs for one router "
      f"(#{one['id']}): {cpu_us(line) / 3 / max(cpu_us(one), 1e-9):.2f} ×. These two ran at "
      "different rates (the line shares 2 cores among three routers), and CPU per message "
      "falls as the rate rises (batching), so the fair comparison is at one rate:",
      "",
      f"At the same open-loop rate, {int(eq_rate):,} msg/s of 100 B unsettled for {dur} s "
      f"({len(eq_one)} runs each, medians): **{eq_line_m:.2f} µs per message per router in the "
      f"line** (runs: {', '.join(f'{x / 3:.2f}' for x in eq_line)}) against **{eq_one_m:.2f} µs "
      f"for one router** (runs: {', '.join(f'{x:.2f}' for x in eq_one)}): "
      f"**{eq_line_m / max(eq_one_m, 1e-9):.2f} ×**."]
L += commands("line-unsettled", "line-presettled", "line-latency-10k", "line-equal-rate", "r-equal-rate")
L += ["", f"Multicast 1 → {MC} across the line: the producer on A, the consumers spread over A, B "
      "and C (4, 3, 3); every consumer must receive every message. msg/s counts every copy.", "", MC_HEAD]
for n, text in [("line-mc-unsettled", "A → A, B, C, 100 B unsettled, closed loop"),
                ("line-mc-presettled", "A → A, B, C, 100 B pre-settled, closed loop")]:
    L.append(mc_row(n, text))
L += commands("line-mc-unsettled", "line-mc-presettled")
L += ["", "Routers (ports vary), started B first with `target/release/ferry run --config B.toml`, "
      "then A and C likewise:", ""]
for id in "BAC":
    L += [f"`{id}.toml`:", "", "```toml", open(f"{out}/{id}.toml").read().strip(), "```", ""]

shown = [load(n) for n in ids]
worst = max(shown, key=lambda r: r["other"])
busy_rows = [f"#{r['id']}" for r in shown if r["other"] > 0.2]
steal = max(r["steal"] for r in shown)
L += ["### Noise", "",
      f"CPU used by other processes on the machine (busy time from `/proc/stat` minus the "
      f"routers' and ferry-load's) averaged {sum(r['other'] for r in shown) / len(shown):.2f} "
      f"cores over the {len(shown)} rows shown, at most {worst['other']:.2f} cores "
      f"(#{worst['id']}); "
      + (f"rows with more than 0.2 cores taken by others: {', '.join(busy_rows)}. "
         if busy_rows else "no row had more than 0.2 cores taken by others. ")
      + f"Hypervisor steal: at most {steal:.2f} cores.", ""]

L += ["Reference (from issue 7, not measured here): Qpid Dispatch Router on a 2-core machine "
      "with a Proton C client, 100 B: ~110,000 msg/s unsettled, ~200,000 pre-settled "
      "(dropping 1–5 %), ~8.5 µs router CPU per message, p50 ≈ 140 µs, p99 ≈ 290 µs, "
      "22–27 MB RSS.",
      "<!-- router:end -->"]

block = "\n".join(L)
path = "benches/RESULTS.md"
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
if "<!-- router:begin -->" in text:
    text = re.sub(r"<!-- router:begin -->.*?<!-- router:end -->", lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
print(block)
PY

if ((${#FAILED[@]})); then
    echo "run.sh: FAILED: ${FAILED[*]}" >&2
    exit 1
fi
for f in "$OUT"/*.json; do
    python3 - "$f" <<'PY' || LOSS=1
import json, sys
r = json.load(open(sys.argv[1]))
if r.get("lost"):
    print(f"run.sh: {sys.argv[1]}: {r['lost']} messages LOST", file=sys.stderr)
    sys.exit(1)
PY
done
[[ -z ${LOSS:-} ]] || exit 1
