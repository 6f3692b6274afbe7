#!/usr/bin/env bash
# The false-outcome check (issue #19): a fresh line of three routers
# A - B - C for every run, a producer on A, a consumer on C that accepts
# every delivery and closes its connection right after the last one, under
# CPU contention. Every outcome the producer gets must be `accepted` and no
# message may reach the consumer twice: a `released` or `modified` here is
# a router telling the producer that a delivered message was not delivered.
#
#   bash benches/false-outcome.sh [RUNS]      # 200 runs by default
#
# Environment: COUNT (messages per run, 200000), SIZE (body bytes, 100),
# CREDIT (consumer credit, 1000), BUSY (busy `yes` processes for the
# contention, 2), RUN_TIMEOUT (seconds one run may take, 180), FERRY and
# FERRY_LOAD (binaries; built in release if unset), KEEP_OUT=1 (keep every
# run's report and router logs). One line per run on stdout, the totals at
# the end; exit status 1 if any run had an outcome other than `accepted`, a
# duplicate, a lost message or an error.
set -euo pipefail

RUNS=${1:-200}
COUNT=${COUNT:-200000}
SIZE=${SIZE:-100}
CREDIT=${CREDIT:-1000}
BUSY=${BUSY:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z ${FERRY:-} || -z ${FERRY_LOAD:-} ]]; then
    (cd "$ROOT" && cargo build --release -q -p ferry-router -p ferry-benches)
    FERRY=${FERRY:-$ROOT/target/release/ferry}
    FERRY_LOAD=${FERRY_LOAD:-$ROOT/target/release/ferry-load}
fi

OUT=$(mktemp -d -t ferry-false-outcome.XXXXXX)
PIDS=()     # routers of the current run
BUSY_PIDS=() # the contention
cleanup() {
    local p
    for p in "${PIDS[@]}" "${BUSY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${KEEP_OUT:-} ]]; then echo "false-outcome.sh: output kept in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_router DIR NAME CLIENT_PORT EXTRA_TOML: starts `ferry run` and waits
# until CLIENT_PORT accepts.
start_router() {
    local dir=$1 name=$2 port=$3 pid
    printf '[router]\nid = "%s"\nmode = "interior"\n\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n\n%s\n[log]\nlevel = "warn"\n' \
        "$name" "$port" "$4" >"$dir/$name.toml"
    "$FERRY" run --config "$dir/$name.toml" 2>"$dir/$name.log" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || { echo "router $name exited:" >&2; cat "$dir/$name.log" >&2; return 1; }
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "router $name is not listening on $port" >&2
    return 1
}

for _ in $(seq "$BUSY"); do
    yes >/dev/null &
    BUSY_PIDS+=("$!")
done

echo "false-outcome: $RUNS runs, $COUNT x $SIZE B, consumer credit $CREDIT, $BUSY busy processes, $(nproc) cores" >&2
for run in $(seq "$RUNS"); do
    dir=$OUT/run-$run
    mkdir -p "$dir"
    PA=$(free_port) PB=$(free_port) PC=$(free_port) PI=$(free_port)
    PIDS=()
    start_router "$dir" B "$PB" "[[listener]]
host = \"127.0.0.1\"
port = $PI
role = \"inter-router\"
"
    for id in A C; do
        p=$PA
        [[ $id == C ]] && p=$PC
        start_router "$dir" "$id" "$p" "[[connector]]
host = \"127.0.0.1\"
port = $PI
role = \"inter-router\"
cost = 1
"
    done
    # The consumer closes its connection right after its COUNT-th accept;
    # the producer waits for every outcome (at most --drain-secs).
    cmd=("$FERRY_LOAD" --producer-url "amqp://127.0.0.1:$PA" --consumer-url "amqp://127.0.0.1:$PC"
        --count "$COUNT" --size "$SIZE" --credit "$CREDIT" --close-after "$COUNT"
        --drain-secs 30 --progress 0 --json)
    echo "${cmd[*]}" >"$dir/cmd"
    timeout "$RUN_TIMEOUT" "${cmd[@]}" >"$dir/report.json" 2>"$dir/load.log" || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    python3 - "$run" "$dir/report.json" <<'EOF'
import json, sys
run, path = sys.argv[1], sys.argv[2]
try:
    r = json.load(open(path))
except Exception:
    print(f"run {run}: no report (timed out or crashed)  BAD")
    sys.exit(0)
f = {k: r.get(k) or 0 for k in ("accepted", "rejected", "released", "modified", "unsettled")}
dup, lost, err = r.get("duplicates") or 0, r.get("lost") or 0, r.get("error")
bad = (f["accepted"] != r.get("sent") or dup or lost or err
       or any(f[k] for k in ("rejected", "released", "modified", "unsettled")))
print(f"run {run}: sent {r.get('sent')}  received {r.get('received')}  "
      + "  ".join(f"{k} {v}" for k, v in f.items())
      + f"  duplicates {dup}  lost {lost}" + (f"  error {err!r}" if err else "")
      + ("  BAD" if bad else ""))
EOF
done | tee "$OUT/runs.txt"

python3 - "$OUT/runs.txt" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
tot = {}
for l in lines:
    for k, v in re.findall(r"(\w+) (\d+)", l.split(":", 1)[1]):
        tot[k] = tot.get(k, 0) + int(v)
bad = [l for l in lines if l.endswith("BAD") or "error" in l]
print(f"runs {len(lines)}, runs with a false outcome, duplicate, loss or error: {len(bad)}")
print("totals: " + "  ".join(f"{k} {v}" for k, v in tot.items()))
sys.exit(1 if bad or not lines else 0)
EOF
