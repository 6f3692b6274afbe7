#!/usr/bin/env bash
# What the tenants' policy costs: one router without `[[vhost]]` and one
# with a policy of 100 address patterns and 10,000 users, driven by the
# same ferry-load runs (100 B, unsettled and pre-settled), interleaved.
# (ferry-load's senders are named links: their permission is checked at
# attach; anonymous senders, checked per message, are not measured here.) Writes the figures into benches/RESULTS.md between the
# `policy` markers.
#
#   bash benches/policy.sh            full run (about 5 minutes on 2 cores)
#   bash benches/policy.sh --quick    one round, fewer messages
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=500000
REPS=5
if [[ ${1:-} == --quick ]]; then COUNT=100000 REPS=1; fi

NAME=policy.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

PLAIN=$(free_port)
POLICED=$(free_port)
printf '[router]\nid = "plain"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$PLAIN" >"$OUT/plain.toml"
python3 - "$OUT/policed.toml" "$POLICED" <<'PY'
import sys
path, port = sys.argv[1], sys.argv[2]
users = ", ".join(f'"user{i}"' for i in range(10_000))
# 99 other addresses and prefixes, and the one the load uses.
patterns = [f'"other{i}.*"' if i % 2 else f'"other{i}"' for i in range(99)] + ['"load"']
open(path, "w").write(f"""[router]
id = "policed"

[[listener]]
host = "127.0.0.1"
port = {port}

[[vhost]]
name = "bench"

[[vhost.group]]
name = "load"
users = [{users}, "$anonymous"]
send = [{", ".join(patterns)}]
receive = [{", ".join(patterns)}]
""")
PY
start_ferry "$OUT/plain.toml" "$PLAIN"
start_ferry "$OUT/policed.toml" "$POLICED"

# load NAME ROUTER ARGS...
load() {
    local name=$1 r=$2 port=$PLAIN
    shift 2
    [[ $r == policed ]] && port=$POLICED
    local cmd=("$LOAD" --url "amqp://127.0.0.1:$port" --vhost bench --progress 0 --json "$@")
    printf '%s\n' "${cmd[*]}" >"$OUT/$name.cmd"
    "${cmd[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log" || echo "policy.sh: $name failed" >&2
}
for k in $(seq "$REPS"); do
    for r in plain policed; do
        echo "policy.sh: round $k, $r" >&2
        load "named.$r.$k" "$r" --size 100 --count "$COUNT"
        load "presettled.$r.$k" "$r" --size 100 --count "$COUNT" --settle presettled
    done
done

TABLE=$(python3 - "$OUT" "$REPS" "$(nproc)" <<'PY'
import json, statistics, sys
out, reps, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rates(kind, r):
    return [json.load(open(f"{out}/{kind}.{r}.{k}.json"))["msgs_per_s"] for k in range(1, reps + 1)]
lines = [f"One router without a policy and one with `[[vhost]]` bench (one group: 10,000 users and "
         f"`$anonymous`, 100 send and 100 receive patterns), the same ferry-load runs against each, "
         f"interleaved, on {cores} cores; medians of {reps} rounds, 100 B messages.", "",
         "| | no policy, msg/s | policy, msg/s | policy / none |", "| --- | ---: | ---: | ---: |"]
for kind, label in (("named", "unsettled"), ("presettled", "pre-settled")):
    p, q = statistics.median(rates(kind, "plain")), statistics.median(rates(kind, "policed"))
    lines.append(f"| {label} | {p:,.0f} | {q:,.0f} | {q / p:.3f} |")
lines += ["", "Per round: " + "; ".join(
    f"{kind} {r}: " + ", ".join(f"{x:,.0f}" for x in rates(kind, r))
    for kind in ("named", "presettled") for r in ("plain", "policed")), "", "```text"]
lines += [open(f"{out}/{n}.1.cmd").read().strip().replace(out, "$OUT") for n in ("named.policed", "presettled.policed")]
lines.append("```")
print("\n".join(lines))
PY
)
echo "$TABLE"
echo "$TABLE" | write_section policy "Tenants' policy against none (\`bash benches/policy.sh\`)"
