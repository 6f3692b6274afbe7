#!/usr/bin/env bash
# What metrics cost, counted in instructions (valgrind's callgrind: the
# same from run to run, unlike throughput on a shared 2-core machine):
#
# - counting: the message path's instructions per message of this router
#   against a revision before any metrics (`bash benches/instructions.sh`
#   on each binary; give the other binary as OLD_FERRY);
# - scraping: the instructions of one `GET /metrics`, from a router with
#   `[http]` that served LO messages and then S scrapes, against the same
#   with none; divided by the messages a router passes in one second
#   (ferry-load's unsettled rate against this router, measured here
#   without valgrind) it is the cost per message of a scrape a second.
#
#   bash benches/scrape-cost.sh                # scraping only
#   OLD_FERRY=path/to/ferry bash benches/scrape-cost.sh   # and counting
#
# Prints the figures; writes nothing into RESULTS.md. A few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

S=${S:-200}
LO=${LO:-20000}
NAME=scrape-cost.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

# grind SCRAPES: a router with [http] under callgrind, LO messages, then
# SCRAPES scrapes; prints its instruction total.
grind() {
    local p h pid
    p=$(free_port) h=$(free_port)
    printf '[router]\nid = "s"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n[[address]]\nprefix = "load"\ndistribution = "balanced"\n[http]\nhost = "127.0.0.1"\nport = %s\n[log]\nlevel = "warn"\n' \
        "$p" "$h" >"$OUT/s.toml"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/s$1.cg" \
        "$FERRY" run --config "$OUT/s.toml" 2>"$OUT/s$1.log" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 600); do
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
        sleep 0.1
    done
    "$LOAD" --url "amqp://127.0.0.1:$p" --size 100 --count "$LO" --window 100 --json >/dev/null 2>&1
    python3 - "$h" "$1" <<'PY'
import sys, urllib.request
port, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read()
PY
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$OUT/s$1.cg"
}

cargo build --release -q -p ferry-router -p ferry-benches
none=$(grind 0)
some=$(grind "$S")
P=$(free_port)
printf '[router]\nid = "r"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$P" >"$OUT/r.toml"
start_ferry "$OUT/r.toml" "$P"
rate=$("$LOAD" --url "amqp://127.0.0.1:$P" --progress 0 --json --size 100 --count 500000 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["msgs_per_s"])')
new=$(bash benches/instructions.sh "$FERRY" 2>/dev/null | sed -n 's/.*one router \([0-9,]*\);.*/\1/p' | tr -d ,)
python3 - "$none" "$some" "$S" "$rate" "$new" <<'PY'
import sys
none, some, s, rate, per_msg = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
scrape = (some - none) / s
print(f"one scrape of /metrics: {scrape:,.0f} instructions")
print(f"one router: {per_msg:,} instructions per message, {rate:,.0f} msg/s unsettled here")
extra = scrape / rate
print(f"a scrape a second at that rate: {extra:.2f} instructions per message, "
      f"{100 * extra / per_msg:.3f} % of a message's")
PY
if [[ -n ${OLD_FERRY:-} ]]; then
    old=$(bash benches/instructions.sh "$OLD_FERRY" 2>/dev/null | sed -n 's/.*one router \([0-9,]*\);.*/\1/p' | tr -d ,)
    python3 -c "import sys; o, n = int(sys.argv[1]), int(sys.argv[2]); print(f'counting: {n:,} against {o:,} instructions per message before metrics: {n / o:.3f}')" "$old" "$new"
fi
