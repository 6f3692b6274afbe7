#!/usr/bin/env bash
# Builds the ferry-router container image from local material only (no base
# image is pulled): compiles the release `ferry` binary and the health-check
# probe, lays out a root filesystem with them, the shared libraries `ldd`
# lists, the dynamic loader, /etc/passwd with the non-root user and the
# default configuration (and deploy/edge.toml, for an edge router) in
# target/deploy-image/rootfs (under $CARGO_TARGET_DIR if set), and runs
#   docker build -f deploy/Dockerfile -t IMAGE target/deploy-image
#
# Usage: deploy/build-image.sh [IMAGE]
#   IMAGE  the tag to build, default $FERRY_IMAGE or ferry-router:latest
#
# Needs cargo/rustc, binutils (strip), ldd and a Docker engine. The image
# holds the libraries of the machine that builds it, so it runs wherever
# that machine's architecture does.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${1:-${FERRY_IMAGE:-ferry-router:latest}}
target=${CARGO_TARGET_DIR:-$repo/target}
ctx=$target/deploy-image
rootfs=$ctx/rootfs

echo "build-image: cargo build --release (ferry)" >&2
(cd "$repo" && cargo build --release --locked -p ferry-router --bin ferry)

rm -rf "$ctx"
mkdir -p "$rootfs/usr/bin" "$rootfs/etc/ferry" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"

# The binary without its debug info (symbols stay, for backtraces).
strip --strip-debug -o "$rootfs/usr/bin/ferry" "$target/release/ferry"
# The health check: standard library only, so plain rustc builds it.
rustc --edition 2021 -O -C strip=symbols -o "$rootfs/usr/bin/ferry-probe" \
    "$repo/deploy/ferry-probe.rs"

# Shared libraries and the loader, at the paths the binaries ask for.
for bin in "$rootfs/usr/bin/ferry" "$rootfs/usr/bin/ferry-probe"; do
    ldd "$bin" | grep -o '/[^ ]*' | grep -v "^$rootfs"
done | sort -u | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
ferry:x:10001:10001:Ferry router:/nonexistent:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
ferry:x:10001:
GROUP
cp "$repo/deploy/ferry.toml" "$rootfs/etc/ferry/ferry.toml"
cp "$repo/deploy/edge.toml" "$rootfs/etc/ferry/edge.toml"
chmod -R a+rX "$rootfs"

echo "build-image: docker build -t $image" >&2
docker build -f "$repo/deploy/Dockerfile" -t "$image" "$ctx"
echo "build-image: built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'))" >&2
