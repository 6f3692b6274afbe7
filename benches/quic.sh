#!/usr/bin/env bash
# QUIC against TCP between two routers over a lossy link (issue #15).
#
# Routers A and B in network namespaces of their own, joined by one veth
# pair with `tc netem` on both ends (DELAY each way, LOSS each way). A
# dials B over TLS-over-TCP in one round and over QUIC in the next (same
# routers, same link, same certificates; rounds interleaved). In each
# round, on A -> B:
#   - "bulk": a producer sending BULK-byte messages back to back (2 in
#     flight) to a consumer on B;
#   - "small": a producer of SMALL-byte messages at RATE msg/s to a
#     consumer on B, whose one-way latency is what this measures.
# Then, without loss or delay, the throughput of 100-byte messages (one
# unsettled producer, window 100) over each transport.
#
# Needs root, iproute2 and openssl. Usage:
#   sudo benches/quic.sh            # writes its section of benches/RESULTS.md
#   ROUNDS=1 SECS=10 PROFILE=debug benches/quic.sh   # a quick try (no RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=quic
# shellcheck source=benches/lib.sh
source benches/lib.sh

DELAY=${DELAY:-5ms}
LOSS=${LOSS:-1%}
SECS=${SECS:-30}
RATE=${RATE:-200}
SMALL=${SMALL:-100}
BULK=${BULK:-67108864}
ROUNDS=${ROUNDS:-2}
COUNT=${COUNT:-200000}

tag="fq$$"
A="$tag-a" B="$tag-b"
nets() {
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
}
trap 'cleanup; nets' EXIT
nets
ip netns add "$A"
ip netns add "$B"
ip link add "$tag-a0" type veth peer name "$tag-b0"
ip link set "$tag-a0" netns "$A"
ip link set "$tag-b0" netns "$B"
ip -n "$A" addr add 10.77.0.1/30 dev "$tag-a0"
ip -n "$B" addr add 10.77.0.2/30 dev "$tag-b0"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$tag-a0" up
ip -n "$B" link set "$tag-b0" up

# Loss and delay on both ends of the link (each way), or none: `tc netem`
# where the kernel has it; else loss alone, dropped at random by iptables
# (`statistic` match), and the delay is left out (said in the results).
NETEM=yes
tc qdisc add dev lo root netem delay 0ms 2>/dev/null && tc qdisc del dev lo root || NETEM=no
shape() {
    local ns dev p
    p=$(python3 -c "print(float('${LOSS%\%}') / 100)")
    for ns in "$A" "$B"; do
        dev="$tag-${ns: -1}0"
        tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
        ip netns exec "$ns" iptables -F INPUT
        [[ $1 == lossy ]] || continue
        if [[ $NETEM == yes ]]; then
            tc -n "$ns" qdisc add dev "$dev" root netem delay "$DELAY" loss "$LOSS" limit 100000
        else
            ip netns exec "$ns" iptables -A INPUT -i "$dev" -m statistic --mode random --probability "$p" -j DROP
        fi
    done
}
[[ $NETEM == yes ]] || { echo "quic: this kernel has no netem: loss $LOSS by iptables, no delay" >&2; DELAY=0ms; }

deploy/make-certs.sh --owner "$(id -u):$(id -g)" "$OUT/certs" A B >/dev/null
profile() {
    cat <<EOF
[[tls]]
name = "mesh"
cert = "$OUT/certs/$1/cert.pem"
key = "$OUT/certs/$1/key.pem"
ca = "$OUT/certs/$1/ca.pem"

[limits]
max_message_size = 134217728
max_in_flight_bytes_per_producer = 268435456
EOF
}
cat >"$OUT/b.toml" <<EOF
[router]
id = "B"
mode = "interior"

[[listener]]
host = "127.0.0.1"
port = 5672

[[listener]]
host = "10.77.0.2"
port = 55672
role = "inter-router"
tls = "mesh"
client_cert = "required"

[[listener]]
host = "10.77.0.2"
port = 55672
role = "inter-router"
tls = "mesh"
client_cert = "required"
transport = "quic"

$(profile B)
EOF
a_toml() {
    cat <<EOF
[router]
id = "A"
mode = "interior"

[[listener]]
host = "127.0.0.1"
port = 5672

[[connector]]
host = "10.77.0.2"
port = 55672
role = "inter-router"
tls = "mesh"
server_name = "B"
transport = "$1"

$(profile A)
EOF
}

# inns NS CMD…: runs CMD in namespace NS.
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

start_in() { # NS CONFIG: ferry in NS, until it listens on 5672
    ip netns exec "$1" "$FERRY" run --config "$2" 2>"${2%.toml}.log" &
    PIDS+=("$!")
    FERRY_PID=$!
    for _ in $(seq 200); do
        inns "$1" bash -c 'echo >/dev/tcp/127.0.0.1/5672' 2>/dev/null && return 0
        sleep 0.05
    done
    echo "quic: ferry did not start in $1" >&2
    cat "${2%.toml}.log" >&2
    exit 1
}

# Waits until A logs its neighbour B.
connected() {
    for _ in $(seq 400); do
        grep -q "neighbour B connected" "$OUT/a.log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "quic: A did not connect to B" >&2
    cat "$OUT/a.log" >&2
    exit 1
}

load() { inns "$1" "$LOAD" --url amqp://127.0.0.1:5672 --json --progress 0 "${@:2}"; }

latency_round() { # TRANSPORT ROUND
    a_toml "$1" >"$OUT/a.toml"
    start_in "$A" "$OUT/a.toml"
    local a_pid=$FERRY_PID
    connected
    local r="$OUT/$1.$2"
    load "$B" --producers 0 --consumers 1 --address small --duration $((SECS + 15)) --quiet-ms 5000 >"$r.small.json" &
    local small_rx=$!
    load "$B" --producers 0 --consumers 1 --address bulk --duration $((SECS + 15)) --quiet-ms 5000 >"$r.bulk.json" &
    local bulk_rx=$!
    sleep 1
    load "$A" --producers 1 --consumers 0 --address bulk --size "$BULK" --window 2 --duration "$SECS" >/dev/null &
    local bulk_tx=$!
    sleep 2
    load "$A" --producers 1 --consumers 0 --address small --size "$SMALL" --rate "$RATE" --duration "$SECS" >/dev/null
    wait "$bulk_tx" "$small_rx" "$bulk_rx" || true
    kill "$a_pid"
    wait "$a_pid" 2>/dev/null || true
}

throughput_round() { # TRANSPORT ROUND
    a_toml "$1" >"$OUT/a.toml"
    start_in "$A" "$OUT/a.toml"
    local a_pid=$FERRY_PID
    connected
    load "$B" --producers 0 --consumers 1 --address tput --duration 20 >"$OUT/$1.$2.tput.json" &
    local rx=$!
    sleep 1
    load "$A" --producers 1 --consumers 0 --address tput --size 100 --window 100 --count "$COUNT" >"$OUT/$1.$2.tput-tx.json"
    wait "$rx" || true
    kill "$a_pid"
    wait "$a_pid" 2>/dev/null || true
}

start_in "$B" "$OUT/b.toml"
shape lossy
for round in $(seq "$ROUNDS"); do
    for t in tcp quic; do
        echo "quic: round $round, $t, lossy link" >&2
        latency_round "$t" "$round"
    done
done
shape clean
for round in $(seq "$ROUNDS"); do
    for t in tcp quic; do
        echo "quic: round $round, $t, clean link" >&2
        throughput_round "$t" "$round"
    done
done

python3 - "$OUT" "$ROUNDS" "$BULK" <<'PY' >"$OUT/summary.md"
import json, sys, statistics
out, rounds, bulk_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def get(path):
    try:
        return json.load(open(path))
    except Exception:
        return None
rows = []
for t in ("tcp", "quic"):
    small = [get(f"{out}/{t}.{r}.small.json") for r in range(1, rounds + 1)]
    bulk = [get(f"{out}/{t}.{r}.bulk.json") for r in range(1, rounds + 1)]
    tput = [get(f"{out}/{t}.{r}.tput-tx.json") for r in range(1, rounds + 1)]
    lat = [s["latency"] for s in small if s and s.get("latency")]
    p50 = statistics.median(l["p50_us"] for l in lat) if lat else None
    p99 = statistics.median(l["p99_us"] for l in lat) if lat else None
    mx = max(l["max_us"] for l in lat) if lat else None
    got = sum(s["received"] for s in small if s) if small else 0
    # The bulk consumer runs for a fixed time: bytes received over it.
    bulk_mb = [b["received"] * bulk_size / b["elapsed_s"] / 1e6 for b in bulk if b and b.get("elapsed_s")]
    rate = [x["msgs_per_s"] for x in tput if x and "msgs_per_s" in x]
    rows.append((t, p50, p99, mx, got, statistics.median(bulk_mb) if bulk_mb else None,
                 statistics.median(rate) if rate else None))
print("| transport | small p50 ms | small p99 ms | small max ms | small received | bulk MB/s beside them | 100 B msg/s, clean link |")
print("|---|---|---|---|---|---|---|")
f = lambda us: "–" if us is None else f"{us / 1000:.1f}"
for t, p50, p99, mx, got, mb, rate in rows:
    print(f"| {t} | {f(p50)} | {f(p99)} | {f(mx)} | {got} | {'–' if mb is None else f'{mb:.2f}'} | {'–' if rate is None else f'{rate:,.0f}'} |")
(_, _, tcp99, *_), (_, _, quic99, *_) = rows
if tcp99 and quic99:
    print(f"\nsmall-message p99, TCP / QUIC: {tcp99 / quic99:.1f}×")
(*_, tcp_rate), (*_, quic_rate) = rows
if tcp_rate and quic_rate:
    print(f"100 B throughput, QUIC / TCP: {quic_rate / tcp_rate:.2f}")
PY
cat "$OUT/summary.md"
if [[ $PROFILE == release ]]; then
    {
        echo "\`sudo benches/quic.sh\` ($(date -u +%Y-%m-%d), $(nproc) cores; link: delay $DELAY, loss $LOSS each way ($([[ $NETEM == yes ]] && echo "tc netem" || echo "iptables statistic; this kernel has no netem, so no delay"))); $ROUNDS rounds per transport, interleaved, medians; small: $SMALL B at $RATE msg/s for $SECS s beside a producer of $BULK-byte messages on another address; clean link: $COUNT messages of 100 B, window 100):"
        echo
        cat "$OUT/summary.md"
    } | write_section quic "QUIC against TCP between routers (#15)"
fi
