# shellcheck shell=bash disable=SC2034
# Shared by the benchmark scripts (sourced, not run): the release build,
# a scratch directory and the processes to stop on exit, free ports, and
# writing a section of benches/RESULTS.md. Callers set NAME first.

# PROFILE=debug: a quick debug build, for trying a script out (figures
# from it are not comparable and do not belong in RESULTS.md).
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then
    cargo build --release --locked -p ferry-router -p ferry-benches >&2
else
    cargo build --locked -p ferry-router -p ferry-benches >&2
fi
FERRY=target/$PROFILE/ferry
LOAD=target/$PROFILE/ferry-load
OUT=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${KEEP_OUT:-} ]]; then echo "$NAME: raw results kept in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_ferry CONFIG PORT: runs `ferry run` on CONFIG (log beside it) and
# waits until PORT accepts; the pid is added to PIDS and put in FERRY_PID.
start_ferry() {
    "$FERRY" run --config "$1" 2>"${1%.toml}.log" &
    FERRY_PID=$!
    PIDS+=("$FERRY_PID")
    for _ in $(seq 200); do
        (echo >"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$NAME: ferry is not listening on $2" >&2
    cat "${1%.toml}.log" >&2
    exit 1
}

# write_section MARKER TITLE: replaces the text between MARKER's begin and
# end comments in benches/RESULTS.md with stdin (adding the section, under
# TITLE, at the end if it is not there yet).
# (The text goes through a file: python3 reads its script from stdin.)
write_section() {
    local text="$OUT/section.$1.md"
    cat >"$text"
    python3 - "$1" "$2" "$text" <<'PY'
import sys
marker, title, source = sys.argv[1:4]
text = open(source).read()
path = "benches/RESULTS.md"
doc = open(path).read()
begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
if begin not in doc:
    doc += f"\n## {title}\n\n{begin}\n{end}\n"
head, rest = doc.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + text + end + tail)
PY
}

# build_old REV: builds the router of revision REV in a scratch worktree
# (removed on exit) with its own target directory (AB_TARGET, kept between
# runs: a few minutes the first time); sets OLD_FERRY to the binary.
build_old() {
    OLD_SRC=$(mktemp -d)
    git worktree add -q --detach "$OLD_SRC" "$1"
    trap 'git worktree remove --force "$OLD_SRC"; cleanup' EXIT
    local target=${AB_TARGET:-${TMPDIR:-/tmp}/ferry-ab-target}
    echo "$NAME: building $1" >&2
    (cd "$OLD_SRC" && CARGO_TARGET_DIR=$target cargo build --release --locked -p ferry-router >&2)
    OLD_FERRY=$target/release/ferry
}
