#!/usr/bin/env bash
# The router of this checkout against the router of another revision, in
# one run: the same ferry-load runs (100 B, unsettled and pre-settled)
# against each, interleaved; medians and ratios. The other revision is
# built in a scratch worktree with its own target directory (a few minutes
# the first time). Prints the table; writes nothing into RESULTS.md.
#
#   bash benches/ab.sh REV            five rounds of 500,000 messages
#   bash benches/ab.sh REV --quick    one round of 100,000
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: bash benches/ab.sh REV [--quick]}
COUNT=500000
REPS=5
if [[ ${2:-} == --quick ]]; then COUNT=100000 REPS=1; fi

NAME=ab.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

build_old "$REV"

NEW_PORT=$(free_port)
OLD_PORT=$(free_port)
printf '[router]\nid = "new"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$NEW_PORT" >"$OUT/new.toml"
printf '[router]\nid = "old"\n[[listener]]\nhost = "127.0.0.1"\nport = %s\n' "$OLD_PORT" >"$OUT/old.toml"
start_ferry "$OUT/new.toml" "$NEW_PORT"
FERRY=$OLD_FERRY start_ferry "$OUT/old.toml" "$OLD_PORT"

for k in $(seq "$REPS"); do
    for r in old new; do
        port=$NEW_PORT
        [[ $r == old ]] && port=$OLD_PORT
        echo "$NAME: round $k, $r" >&2
        "$LOAD" --url "amqp://127.0.0.1:$port" --progress 0 --json --size 100 --count "$COUNT" >"$OUT/named.$r.$k.json"
        "$LOAD" --url "amqp://127.0.0.1:$port" --progress 0 --json --size 100 --count "$COUNT" --settle presettled >"$OUT/presettled.$r.$k.json"
    done
done

python3 - "$OUT" "$REPS" "$REV" "$(git rev-parse --short HEAD)" <<'PY'
import json, statistics, sys
out, reps, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def rates(kind, r):
    return [json.load(open(f"{out}/{kind}.{r}.{k}.json"))["msgs_per_s"] for k in range(1, reps + 1)]
print(f"| 100 B, one router | {old}, msg/s | {new}, msg/s | new / old |")
print("| --- | ---: | ---: | ---: |")
for kind, label in (("named", "unsettled"), ("presettled", "pre-settled")):
    o, n = statistics.median(rates(kind, "old")), statistics.median(rates(kind, "new"))
    print(f"| {label} | {o:,.0f} | {n:,.0f} | {n / o:.3f} |")
for kind in ("named", "presettled"):
    for r in ("old", "new"):
        print(f"{kind} {r}: " + ", ".join(f"{x:,.0f}" for x in rates(kind, r)))
PY
