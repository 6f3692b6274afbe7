#!/usr/bin/env bash
# Builds the ferry-broker container image, RabbitMQ 3.10 with its AMQP 1.0
# plugin, from local material only (no base image is pulled): the files
# Debian's rabbitmq-server and erlang-base packages installed on this
# machine (/usr/lib/rabbitmq, /usr/lib/erlang), the few commands RabbitMQ's
# start scripts and disk monitor run (sh, dirname, basename, readlink, df,
# getconf), the shared libraries `ldd` lists, the dynamic loader, the
# health-check probe (deploy/ferry-probe.rs, compiled with rustc) and the
# broker's configuration from deploy/broker/, laid out in
# target/broker-image/rootfs (under $CARGO_TARGET_DIR if set), then
#   docker build -f deploy/broker/Dockerfile -t IMAGE target/broker-image
#
# Usage: deploy/build-broker-image.sh [IMAGE]
#   IMAGE  the tag to build, default $FERRY_BROKER_IMAGE or ferry-broker:latest
#
# Needs rabbitmq-server (apt-get install rabbitmq-server; its service need
# not run), rustc, ldd and a Docker engine. Like ferry-router, the image
# holds the build machine's libraries and runs wherever that machine's
# architecture does. About 67 MB.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${1:-${FERRY_BROKER_IMAGE:-ferry-broker:latest}}
target=${CARGO_TARGET_DIR:-$repo/target}
ctx=$target/broker-image
rootfs=$ctx/rootfs
die() { echo "build-broker-image: $*" >&2; exit 1; }

[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] ||
    die "needs RabbitMQ installed on this machine: apt-get install rabbitmq-server"
[[ -d /usr/lib/erlang/bin ]] || die "needs Erlang (/usr/lib/erlang, Debian's erlang-base)"

rm -rf "$ctx"
mkdir -p "$rootfs/usr/lib" "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/etc/rabbitmq/conf.d" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"

# The Erlang runtime and the broker, as the packages installed them (the
# broker's bin/ links into its versioned folder: relative links, kept).
cp -a /usr/lib/erlang "$rootfs/usr/lib/erlang"
cp -a /usr/lib/rabbitmq "$rootfs/usr/lib/rabbitmq"
ln -s ../lib/erlang/bin/erl "$rootfs/usr/bin/erl"
# What the start scripts (sh) and the broker (its disk monitor, os:cmd) run.
# /bin/sh is the first one the scripts name; the others are found on PATH.
cp -L /bin/sh "$rootfs/bin/sh"
for cmd in dirname basename readlink df getconf; do
    cp -L "$(command -v "$cmd")" "$rootfs/usr/bin/$cmd"
done

# Shared libraries and the loader of every ELF file laid out, at the paths
# they are asked for.
# (ldd fails on the scripts among them: their lines are simply not there.)
find "$rootfs" -type f \( -perm -u+x -o -name '*.so' \) -print0 |
    { xargs -0 -n 50 ldd 2>/dev/null || true; } | grep -o '/[^ ]*\.so[^ ]*' | grep -v "^$rootfs" | sort -u |
    while read -r lib; do
        [[ -e $rootfs$lib ]] && continue
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done

# The health check: deploy/ferry-probe.rs, as in ferry-router's image (an
# AMQP header answered on 5672).
rustc --edition 2021 -O -C strip=symbols -o "$rootfs/usr/bin/ferry-probe" "$repo/deploy/ferry-probe.rs"
ldd "$rootfs/usr/bin/ferry-probe" | grep -o '/[^ ]*' | grep -v "^$rootfs" | while read -r lib; do
    [[ -e $rootfs$lib ]] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done

# The broker's user (uid/gid 10001, as ferry-router's: the same files can
# be given to both) and its configuration.
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
rabbitmq:x:10001:10001:RabbitMQ broker:/var/lib/rabbitmq:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
rabbitmq:x:10001:
GROUP
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
cp "$repo/deploy/broker/rabbitmq.conf" "$repo/deploy/broker/enabled_plugins" "$rootfs/etc/rabbitmq/"
chmod -R a+rX "$rootfs"
# The data folder, apart: the Dockerfile gives it to the broker's user.
# Writable by all too (sticky, as /tmp), so that the broker runs as another
# user as well (compose's FERRY_UID): a new volume takes this mode.
mkdir -p "$ctx/data/rabbitmq"
chmod 1777 "$ctx/data/rabbitmq"

echo "build-broker-image: docker build -t $image" >&2
docker build -f "$repo/deploy/broker/Dockerfile" -t "$image" "$ctx"
echo "build-broker-image: built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))" >&2
