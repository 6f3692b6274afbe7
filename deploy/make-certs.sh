#!/usr/bin/env bash
# Makes the certificates of a Ferry mesh with the openssl CLI: a CA for the
# mesh alone (ECDSA P-256) and, per router id, a key and a certificate signed
# by it that name the router (subject CN = the id; DNS subjectAltNames = the
# id, when it is a DNS name, and every host name other routers dial it by),
# for both ends of a connection (extendedKeyUsage serverAuth, clientAuth).
#
# Usage:
#   deploy/make-certs.sh [options] OUTDIR ID[=NAME,NAME…]…
#   deploy/make-certs.sh --compose [options] [OUTDIR]    default deploy/certs
#   deploy/make-certs.sh --k8s [--namespace NS] [--replicas N] [options] [OUTDIR]
#                                                        default deploy/k8s/certs
# --compose: routers A … E of deploy/compose.yaml, dialed as router-a … router-e,
#   and its edge routers edge-1, edge-2 (profile "edge"; named by their id);
#   and, once, the password of the broker of deploy/compose.broker.yaml
#   (not a certificate: OUTDIR/broker/password and user.conf, below).
# --k8s: routers ferry-0 … ferry-(N-1) (N = --replicas, default 5) of
#   deploy/k8s, dialed as ferry-K.ferry-mesh, also named
#   ferry-K.ferry-mesh.NS.svc and ….svc.cluster.local (NS = --namespace,
#   default "default").
# Options:
#   --owner UID:GID  owner of the private keys (mode 0600). Default 10001:10001,
#                    the image's user, for files bind-mounted into containers
#                    (needs root); with --k8s, you (kustomize reads the files,
#                    the pod gets them from a Secret).
#   --days N         validity of the router certificates (default 365)
#
# Writes (never commit it; deploy/.gitignore and deploy/k8s/.gitignore keep
# the default folders out):
#   OUTDIR/ca.pem          the mesh CA's certificate
#   OUTDIR/ca.key          the mesh CA's key (0600, yours): issues more
#                          certificates; mount it nowhere
#   OUTDIR/ID/cert.pem     router ID's certificate
#   OUTDIR/ID/key.pem      its key (0600, --owner)
#   OUTDIR/ID/ca.pem       a copy of the CA certificate
#   OUTDIR/broker/password   --compose: the broker's password (0600, --owner),
#                            random, kept if there: the routers read it
#   OUTDIR/broker/user.conf  the same for RabbitMQ (default_user ferry)
# A folder OUTDIR/ID is what one router mounts (compose: at /etc/ferry/tls).
#
# An existing CA in OUTDIR is used again, and a router's files are replaced
# (written beside, then renamed into place): run it again for one id to
# rotate that router's certificate, which the router picks up within 2 s.
set -euo pipefail

usage() { sed -n '8,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "make-certs: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
preset=""
namespace=default
replicas=5
owner=""
days=365
while (($#)); do
    case $1 in
        --compose) preset=compose ;;
        --k8s) preset=k8s ;;
        --namespace) namespace=${2:?}; shift ;;
        --replicas) replicas=${2:?}; shift ;;
        --owner) owner=${2:?}; shift ;;
        --days) days=${2:?}; shift ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) echo "make-certs: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
    shift
done

specs=()
case $preset in
    compose)
        out=${1:-$repo/deploy/certs}
        (($# <= 1)) || usage
        for r in a b c d e; do
            specs+=("${r^^}=router-$r")
        done
        # Edge routers: nobody dials them; the id (a DNS name) is their name.
        specs+=(edge-1 edge-2)
        ;;
    k8s)
        out=${1:-$repo/deploy/k8s/certs}
        (($# <= 1)) || usage
        [[ $replicas =~ ^[1-9][0-9]*$ ]] || die "--replicas: a number, not '$replicas'"
        [[ $namespace =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "--namespace: not a namespace name: '$namespace'"
        for ((i = 0; i < replicas; i++)); do
            specs+=("ferry-$i=ferry-$i.ferry-mesh,ferry-$i.ferry-mesh.$namespace.svc,ferry-$i.ferry-mesh.$namespace.svc.cluster.local")
        done
        : "${owner:=$(id -u):$(id -g)}"
        ;;
    *)
        (($# >= 2)) || usage
        out=$1
        shift
        specs=("$@")
        ;;
esac
: "${owner:=10001:10001}"
[[ $owner =~ ^[0-9]+:[0-9]+$ ]] || die "--owner: UID:GID in numbers, not '$owner'"
[[ $days =~ ^[1-9][0-9]*$ ]] || die "--days: a number, not '$days'"
command -v openssl >/dev/null || die "needs the openssl command (Debian: apt-get install openssl)"
if [[ $owner != "$(id -u):$(id -g)" && $(id -u) != 0 ]]; then
    die "the keys must belong to $owner (the container's user) and only root can give them away:
  run it as root (sudo), or make them yours, --owner $(id -u):$(id -g), and run the
  containers as you: FERRY_UID=$(id -u) FERRY_GID=$(id -g) docker-compose -f deploy/compose.yaml up -d"
fi

# A DNS name as webpki takes it: labels of letters, digits and inner hyphens.
is_dns() { [[ $1 =~ ^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$ ]]; }

ids=()
declare -A names=()
for spec in "${specs[@]}"; do
    id=${spec%%=*}
    [[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "'$id' is not a router id (1-64 letters, digits, '.', '-', '_')"
    [[ $id != ca ]] || die "'ca' cannot be a router id here (OUTDIR/ca.pem is the CA)"
    sans=()
    if is_dns "$id"; then
        sans+=("DNS:$id")
    else
        echo "make-certs: $id is not a DNS name: it is named by the subject CN only" >&2
    fi
    if [[ $spec == *=* ]]; then
        IFS=, read -r -a extra <<<"${spec#*=}"
        for n in "${extra[@]}"; do
            is_dns "$n" || die "'$n' (for $id) is not a DNS name"
            sans+=("DNS:$n")
        done
    fi
    ((${#sans[@]})) || die "$id: no DNS name to put in the certificate"
    ids+=("$id")
    names[$id]=$(IFS=,; echo "${sans[*]}")
done

mkdir -p "$out"
chmod 755 "$out"
# Made in OUTDIR, so that files are renamed into place (atomically), not copied.
work=$(mktemp -d "$out/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077

cat >"$work/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[router]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $ENV::FERRY_SANS
CNF
export FERRY_SANS=DNS:unused
cnf=$work/openssl.cnf

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }

if [[ -f $out/ca.pem && -f $out/ca.key ]]; then
    echo "make-certs: using the CA in $out/ca.pem" >&2
else
    echo "make-certs: new mesh CA in $out/ca.pem" >&2
    newkey "$work/ca.key"
    openssl req -config "$cnf" -new -x509 -key "$work/ca.key" -sha256 -days 3650 \
        -subj "/CN=Ferry mesh CA $(date -u +%Y-%m-%d)" -extensions ca -set_serial "$(serial)" \
        -out "$work/ca.pem"
    chmod 644 "$work/ca.pem"
    mv "$work/ca.key" "$out/ca.key"
    mv "$work/ca.pem" "$out/ca.pem"
fi

for id in "${ids[@]}"; do
    dir=$out/$id
    mkdir -p "$dir"
    chmod 755 "$dir"
    newkey "$work/key.pem"
    openssl req -config "$cnf" -new -key "$work/key.pem" -subj "/CN=$id" -out "$work/req.pem"
    FERRY_SANS=${names[$id]} openssl x509 -req -in "$work/req.pem" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
        -sha256 -days "$days" -set_serial "$(serial)" -extfile "$cnf" -extensions router \
        -out "$work/cert.pem" 2>/dev/null
    openssl verify -CAfile "$out/ca.pem" -purpose sslserver "$work/cert.pem" >/dev/null
    openssl verify -CAfile "$out/ca.pem" -purpose sslclient "$work/cert.pem" >/dev/null
    chmod 644 "$work/cert.pem"
    chmod 600 "$work/key.pem"
    chown "$owner" "$work/key.pem" "$work/cert.pem"
    cp "$out/ca.pem" "$work/ca.pem"
    chmod 644 "$work/ca.pem"
    # Into place by rename, key and certificate one after the other (a
    # router may be reading them; one that sees a new key with the old
    # certificate keeps what it has and reads both again at its next check).
    for f in ca.pem key.pem cert.pem; do
        mv -f "$work/$f" "$dir/$f"
    done
    echo "make-certs: $dir: CN=$id ${names[$id]//DNS:/}" >&2
done

# compose.broker.yaml's broker: a user for the routers, made once (RabbitMQ
# creates it at its first start only, so a new password would not reach it).
if [[ $preset == compose && ! -f $out/broker/password ]]; then
    mkdir -p "$out/broker"
    chmod 755 "$out/broker"
    password=$(openssl rand -hex 24)
    printf '%s\n' "$password" >"$work/password"
    printf '# Made by deploy/make-certs.sh: the broker'"'"'s user, created at its first start.\ndefault_user = ferry\ndefault_pass = %s\n' \
        "$password" >"$work/user.conf"
    chmod 600 "$work/password" "$work/user.conf"
    chown "$owner" "$work/password" "$work/user.conf"
    mv "$work/user.conf" "$work/password" "$out/broker/"
    echo "make-certs: $out/broker: the broker's password (user ferry)" >&2
fi
