#!/usr/bin/env bash
# Builds the Qpid Proton C benchmark clients, ferry-proton-send and
# ferry-proton-recv, into target/proton/ (or $OUT_DIR) with cc and Debian's
# libqpid-proton-dev (bookworm: `apt-get install -y libqpid-proton11-dev`).
# Rebuilds only when a source is newer than the binary. Prints the directory
# of the binaries on stdout.
#
#   bash benches/proton/build.sh
set -euo pipefail
SRC=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${OUT_DIR:-$SRC/../../target/proton}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}

if ! pkg-config --exists libqpid-proton 2>/dev/null || [[ ! -f /usr/include/proton/proactor.h ]]; then
    echo "build.sh: Qpid Proton C is not installed (Debian: apt-get install -y libqpid-proton11-dev)" >&2
    exit 1
fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
read -r -a PROTON <<<"$(pkg-config --cflags --libs libqpid-proton)"
for prog in send recv; do
    bin=$OUT_DIR/ferry-proton-$prog
    if [[ ! -x $bin || $SRC/$prog.c -nt $bin || $SRC/common.h -nt $bin ]]; then
        # shellcheck disable=SC2086
        "$CC" $CFLAGS -std=gnu11 -Wall -Wextra -Werror -o "$bin" "$SRC/$prog.c" "${PROTON[@]}"
    fi
done
echo "$OUT_DIR"
