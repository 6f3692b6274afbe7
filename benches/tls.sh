#!/usr/bin/env bash
# TLS against plain TCP on one router, in one run: throughput and latency
# of the same ferry-load runs over a plain listener and a TLS listener of
# the same router (100 B and 64 KiB, unsettled), the router's CPU per
# message at the same open-loop rate, and connections set up per second
# (TCP, then TLS with a full handshake each, then SASL and AMQP open).
# Writes the figures into benches/RESULTS.md between the `tls` markers.
#
#   bash benches/tls.sh            full run (about 4 minutes on 2 cores)
#   bash benches/tls.sh --quick    short run; numbers are noisier
#
# Needs cargo, openssl (the certificates) and python3 (standard library).
# KEEP_OUT=1 keeps the raw JSON and logs (the directory is printed).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=300000 # 100 B closed-loop messages (64 KiB: COUNT/30)
RATE=20000   # open-loop rate for latency and CPU per message, msg/s
DUR=10       # open-loop seconds
CONNS=4000   # connections for the set-up rate
REPS=3       # closed-loop and set-up runs repeated, interleaved; medians shown
if [[ ${1:-} == --quick ]]; then
    COUNT=50000 DUR=3 CONNS=1000 REPS=1
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NAME=tls.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

# A CA and a server certificate for localhost (ECDSA P-256).
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca.key" 2>/dev/null
openssl req -x509 -new -key "$OUT/ca.key" -subj "/CN=bench CA" -days 2 -out "$OUT/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/server.key" 2>/dev/null
openssl req -new -key "$OUT/server.key" -subj "/CN=localhost" -out "$OUT/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$OUT/ext"
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial \
    -days 2 -extfile "$OUT/ext" -out "$OUT/server.pem" 2>/dev/null

PLAIN=$(free_port)
TLS=$(free_port)
cat >"$OUT/ferry.toml" <<TOML
[router]
id = "bench"

[[tls]]
name = "server"
cert = "$OUT/server.pem"
key = "$OUT/server.key"

[[listener]]
host = "127.0.0.1"
port = $PLAIN

[[listener]]
host = "127.0.0.1"
port = $TLS
tls = "server"

[limits]
max_connections = $((CONNS * 2 + 100))
TOML
start_ferry "$OUT/ferry.toml" "$TLS"
ROUTER=$FERRY_PID

url() { if [[ $1 == tls ]]; then echo "amqps://127.0.0.1:$TLS"; else echo "amqp://127.0.0.1:$PLAIN"; fi; }
ticks() { awk '{print $14 + $15}' "/proc/$ROUTER/stat"; }

# load NAME TRANSPORT ARGS...: one ferry-load run; the report goes to
# NAME.json, the router's CPU ticks over it to NAME.cpu, the command to
# NAME.cmd.
load() {
    local name=$1 transport=$2 t0
    shift 2
    local cmd=("$LOAD" --url "$(url "$transport")" --ca "$OUT/ca.pem" --progress 0 --json "$@")
    printf '%s\n' "${cmd[*]}" >"$OUT/$name.cmd"
    t0=$(ticks)
    "${cmd[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log" || echo "tls.sh: $name failed" >&2
    echo $(($(ticks) - t0)) >"$OUT/$name.cpu"
}

# connect NAME TRANSPORT: opens CONNS idle connections, records the time
# and the router's CPU ticks.
connect() {
    local name=$1 transport=$2 t0
    local cmd=("$LOAD" --url "$(url "$transport")" --ca "$OUT/ca.pem" --no-tls-resumption
        --idle "$CONNS" --hold 0 --connect-concurrency 64 --progress 0)
    printf '%s\n' "${cmd[*]}" >"$OUT/$name.cmd"
    t0=$(ticks)
    "${cmd[@]}" >/dev/null 2>"$OUT/$name.log" || echo "tls.sh: $name failed" >&2
    echo $(($(ticks) - t0)) >"$OUT/$name.cpu"
}

for k in $(seq "$REPS"); do
    for t in plain tls; do
        echo "tls.sh: round $k, $t" >&2
        load "small.$t.$k" "$t" --size 100 --count "$COUNT"
        load "large.$t.$k" "$t" --size 65536 --count $((COUNT / 30))
        connect "conns.$t.$k" "$t"
    done
done
for t in plain tls; do
    load "open.$t" "$t" --size 100 --rate "$RATE" --duration "$DUR"
done

TABLE=$(python3 - "$OUT" "$REPS" "$COUNT" "$RATE" "$DUR" "$CONNS" "$(getconf CLK_TCK)" "$(nproc)" <<'PY'
import json, re, statistics, sys
out, reps, count, rate, dur, conns, hz, cores = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
def report(name): return json.load(open(f"{out}/{name}.json"))
def cmd(name): return open(f"{out}/{name}.cmd").read().strip().replace(out, "$OUT")
def rates(kind, t): return [report(f"{kind}.{t}.{k}")["msgs_per_s"] for k in range(1, reps + 1)]
def med(xs): return statistics.median(xs)
def conn_rate(t):
    rs = []
    for k in range(1, reps + 1):
        m = re.search(r"idle connections open: (\d+) \(in ([\d.]+) s\)", open(f"{out}/conns.{t}.{k}.log").read())
        rs.append(int(m.group(1)) / float(m.group(2)) if m else 0.0)
    return rs
def cpu_us(name, msgs): return int(open(f"{out}/{name}.cpu").read()) / hz * 1e6 / max(msgs, 1)
lines = []
def row(*cells): lines.append("| " + " | ".join(str(c) for c in cells) + " |")
lines.append(f"One router, one producer and one consumer (ferry-load, unsettled, credit 1,000), "
             f"on its plain listener and its TLS listener (TLS 1.3, ECDSA P-256, rustls with *ring*), "
             f"in one run on {cores} cores; closed-loop and set-up figures are medians of {reps} interleaved rounds.")
lines.append("")
row("", "plain TCP", "TLS", "TLS / plain")
row("---", "---:", "---:", "---:")
for kind, label in (("small", "100 B, msg/s"), ("large", "64 KiB, msg/s")):
    p, t = med(rates(kind, "plain")), med(rates(kind, "tls"))
    row(label, f"{p:,.0f}", f"{t:,.0f}", f"{t / p:.2f}")
po, to = report("open.plain"), report("open.tls")
for q in ("p50_us", "p99_us"):
    row(f"latency {q[:3]} at {rate:,} msg/s, µs", po["latency"][q], to["latency"][q],
        f"{to['latency'][q] / max(po['latency'][q], 1):.2f}")
pc, tc = cpu_us("open.plain", po["received"]), cpu_us("open.tls", to["received"])
row(f"router CPU per message at {rate:,} msg/s, µs", f"{pc:.2f}", f"{tc:.2f}", f"{tc / pc:.2f}")
lp = [cpu_us(f"small.plain.{k}", count) for k in range(1, reps + 1)]
lt = [cpu_us(f"small.tls.{k}", count) for k in range(1, reps + 1)]
row("router CPU per message, 100 B closed loop, µs", f"{med(lp):.2f}", f"{med(lt):.2f}", f"{med(lt) / med(lp):.2f}")
cp, ct = med(conn_rate("plain")), med(conn_rate("tls"))
row(f"connections set up per second ({conns:,}, 64 at once)", f"{cp:,.0f}", f"{ct:,.0f}", f"{ct / cp:.2f}")
def conn_cpu(t): return med([cpu_us(f"conns.{t}.{k}", conns) for k in range(1, reps + 1)])
ccp, cct = conn_cpu("plain"), conn_cpu("tls")
row("router CPU per connection set up, µs", f"{ccp:.0f}", f"{cct:.0f}", f"{cct / ccp:.2f}")
row(f"connections per second the router's CPU allows on {cores} cores", f"{cores * 1e6 / ccp:,.0f}",
    f"{cores * 1e6 / cct:,.0f}", "")
lines.append("")
lines.append("Each TLS connection is a full handshake (`--no-tls-resumption`: ECDHE X25519, the server's ECDSA "
             "signature, verified by the client), then SASL ANONYMOUS, AMQP open and begin. The client (ferry-load) "
             "runs on the same cores and pays its half of every handshake, so the measured rate is a lower bound; "
             "the last row is what the router's own CPU per connection would allow it. Per round (msg/s, "
             "connections/s):")
lines.append("")
for kind in ("small", "large"):
    for t in ("plain", "tls"):
        lines.append(f"- {kind} {t}: " + ", ".join(f"{r:,.0f}" for r in rates(kind, t)))
for t in ("plain", "tls"):
    lines.append(f"- connections {t}: " + ", ".join(f"{r:,.0f}" for r in conn_rate(t)))
lines.append("")
lines.append("```text")
for name in ("small.plain.1", "small.tls.1", "large.tls.1", "open.tls", "conns.tls.1"):
    lines.append(cmd(name))
lines.append("```")
print("\n".join(lines))
PY
)
echo "$TABLE"
echo "$TABLE" | write_section tls "TLS against plain TCP (\`bash benches/tls.sh\`)"
