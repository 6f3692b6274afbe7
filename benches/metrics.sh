#!/usr/bin/env bash
# What the HTTP endpoint costs: one router with `[http]`, scraped
# (`GET /metrics`) every second while the load runs, and one without
# `[http]`, driven by the same ferry-load runs (100 B, unsettled and
# pre-settled), interleaved. Both are the same binary, whose message path
# always counts (atomics): this measures the endpoint and its scrapes, on
# top of counting that both routers do. Writes the figures into
# benches/RESULTS.md between the `metrics` markers, and checks the scraped
# counters against what ferry-load sent.
#
#   bash benches/metrics.sh            full run (about 5 minutes on 2 cores)
#   bash benches/metrics.sh --quick    one round, fewer messages
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=500000
REPS=5
if [[ ${1:-} == --quick ]]; then COUNT=100000 REPS=1; fi

NAME=metrics.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

OFF=$(free_port)
ON=$(free_port)
HTTP=$(free_port)
printf '[router]\nid = "off"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$OFF" >"$OUT/off.toml"
printf '[router]\nid = "on"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n[[address]]\nprefix = "load"\ndistribution = "balanced"\n[http]\nhost = "127.0.0.1"\nport = %s\n' \
    "$ON" "$HTTP" >"$OUT/on.toml"
start_ferry "$OUT/off.toml" "$OFF"
start_ferry "$OUT/on.toml" "$ON"

# The scraper: one process for the whole run (a Python start during a
# run would cost more than its scrapes), which GETs /metrics at once and
# then every second while the file $OUT/scraping exists (during the runs against the router
# with [http]), appending one line per scrape (its size in bytes) to
# $OUT/scrapes.
python3 - "$HTTP" "$OUT" <<'PY' &
import os, sys, time, urllib.request
port, out = sys.argv[1], sys.argv[2]
last = 0.0
while True:
    if os.path.exists(f"{out}/scraping") and time.monotonic() - last >= 1.0:
        last = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            size = len(r.read())
        with open(f"{out}/scrapes", "a") as f:
            f.write(f"{size}\n")
    time.sleep(0.05)
PY
PIDS+=($!)

# load NAME ROUTER ARGS...
load() {
    local name=$1 r=$2 port=$OFF
    shift 2
    if [[ $r == on ]]; then
        port=$ON
        touch "$OUT/scraping"
    fi
    local cmd=("$LOAD" --url "amqp://127.0.0.1:$port" --progress 0 --json "$@")
    printf '%s\n' "${cmd[*]}" >"$OUT/$name.cmd"
    "${cmd[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log" || echo "metrics.sh: $name failed" >&2
    rm -f "$OUT/scraping"
}
for k in $(seq "$REPS"); do
    for r in off on; do
        echo "metrics.sh: round $k, $r" >&2
        load "named.$r.$k" "$r" --size 100 --count "$COUNT"
        load "presettled.$r.$k" "$r" --size 100 --count "$COUNT" --settle presettled
    done
done
python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$HTTP/metrics').read().decode())" \
    >"$OUT/final.prom"

TABLE=$(python3 - "$OUT" "$REPS" "$(nproc)" "$COUNT" <<'PY'
import json, re, statistics, sys
out, reps, cores, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def rates(kind, r):
    return [json.load(open(f"{out}/{kind}.{r}.{k}.json"))["msgs_per_s"] for k in range(1, reps + 1)]
try:
    scrapes = [int(n) for n in open(f"{out}/scrapes").read().split()]
except FileNotFoundError:
    scrapes = []
# What the scrapes saw, against what was sent: every message went out to
# ferry-load's consumer on the `load` prefix.
final = open(f"{out}/final.prom").read()
out_total = sum(float(v) for v in re.findall(r'^ferry_deliveries_out_total\{prefix="load",role="normal"\} (\S+)$', final, re.M))
sent = 2 * reps * count
lines = [f"One router with `[http]` scraped (`GET /metrics`) every second during its runs, one without "
         f"`[http]` (the same binary: both count on the message path), the same ferry-load runs against "
         f"each, interleaved, on {cores} cores; medians of {reps} rounds, 100 B messages.", "",
         "| | no endpoint, msg/s | endpoint + scrapes, msg/s | with / without |", "| --- | ---: | ---: | ---: |"]
for kind, label in (("named", "unsettled"), ("presettled", "pre-settled")):
    p, q = statistics.median(rates(kind, "off")), statistics.median(rates(kind, "on"))
    lines.append(f"| {label} | {p:,.0f} | {q:,.0f} | {q / p:.3f} |")
lines += ["", "Per round: " + "; ".join(
    f"{kind} {r}: " + ", ".join(f"{x:,.0f}" for x in rates(kind, r))
    for kind in ("named", "presettled") for r in ("off", "on")),
    "", f"{len(scrapes)} scrapes of about {int(statistics.median(scrapes or [0])):,} bytes each; "
    f"`ferry_deliveries_out_total{{prefix=\"load\",role=\"normal\"}}` at the end: {out_total:,.0f} "
    f"(ferry-load sent {sent:,} to that router).", "", "```text"]
lines += [open(f"{out}/{n}.1.cmd").read().strip().replace(out, "$OUT") for n in ("named.on", "presettled.on")]
lines.append("```")
print("\n".join(lines))
PY
)
echo "$TABLE"
echo "$TABLE" | write_section metrics "The HTTP endpoint scraped every second against none: \`bash benches/metrics.sh\`"
