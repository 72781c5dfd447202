#!/usr/bin/env bash
# Build the coordinator and node images (deploy/Containerfile), and for the compose consortium
# on a machine without a registry, a PostgreSQL image from Debian packages.
#
#   deploy/build-images.sh                      # debootstrap'd base (built if missing), podman
#   BASE=docker.io/library/python:3.11-slim-bookworm deploy/build-images.sh   # a normal machine
#
# Environment: ENGINE (podman; docker works with BASE set to a registry image), BASE,
# TAG (the project version), STAGE_WHEELS (1 where /opt/wheels exists: every wheel is fetched on
# this machine from the hashed lock with this machine's pip settings and the build downloads
# nothing; 0: the build's pip reads the package index), POSTGRES=1 to build medfed-postgres too,
# PRUNE=1 to remove dangling images afterwards,
# MEDFED_DEPLOY_CACHE (/var/tmp/medfed-deploy: base rootfs tarball, wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

ENGINE=${ENGINE:-podman}
LOCAL_BASE=localhost/medfed-base:bookworm
BASE=${BASE:-$LOCAL_BASE}
CACHE=${MEDFED_DEPLOY_CACHE:-/var/tmp/medfed-deploy}
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${TAG:-$VERSION}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ "$REVISION" != unknown && -n "$(git status --porcelain -- src requirements pyproject.toml deploy/Containerfile 2>/dev/null)" ]]; then
    REVISION="$REVISION-dirty"
fi
STAGE_WHEELS=${STAGE_WHEELS:-$([[ -d /opt/wheels ]] && echo 1 || echo 0)}

if [[ "$ENGINE" == podman ]]; then
    # shellcheck source=deploy/engine.sh
    source deploy/engine.sh
    FORMAT=(--format docker)
else
    FORMAT=()
fi

if [[ "$BASE" == "$LOCAL_BASE" ]]; then
    BASE_IMAGE=$LOCAL_BASE deploy/base/build-base.sh
fi

# The wheels the build installs: every runtime pin of the lock, its hash checked by pip here and
# again in the build. Hard links from the cache: the build context holds no copy.
mkdir -p build/deploy
rm -rf build/deploy/wheels
mkdir -p build/deploy/wheels
NO_INDEX=0
if [[ "$STAGE_WHEELS" == 1 ]]; then
    "$PYTHON" deploy/runtime_requirements.py requirements/lock.txt pyproject.toml > build/deploy/runtime.txt
    mkdir -p "$CACHE/wheels"
    # pip checks every hash while downloading; a stamp named by the requirements' own hash lets
    # a rebuild skip that (the build's pip checks the hashes again).
    stamp="$CACHE/wheels/.complete-$(sha256sum build/deploy/runtime.txt | cut -c1-16)"
    if [[ ! -f "$stamp" ]]; then
        "$PYTHON" -m pip download -q --no-deps --require-hashes --only-binary=:all: \
            -r build/deploy/runtime.txt -d "$CACHE/wheels" 2>&1 | { grep -v "is ignored" || true; }
        [[ "${PIPESTATUS[0]}" == 0 ]] && touch "$stamp"
    fi
    ln "$CACHE"/wheels/*.whl build/deploy/wheels/ 2>/dev/null || cp "$CACHE"/wheels/*.whl build/deploy/wheels/
    NO_INDEX=1
fi

build() {
    local target=$1 image=$2
    shift 2
    echo "== $image ($target, FROM $BASE)"
    "$ENGINE" build "${FORMAT[@]}" -f deploy/Containerfile --target "$target" \
        --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
        --build-arg PIP_NO_INDEX="$NO_INDEX" "$@" \
        --label org.opencontainers.image.version="$VERSION" \
        --label org.opencontainers.image.revision="$REVISION" \
        -t "localhost/$image:$TAG" -t "localhost/$image:latest" "$here"
}
build coordinator medfed-coordinator
build node medfed-node

if [[ "${POSTGRES:-0}" == 1 ]]; then
    echo "== medfed-postgres (FROM $BASE, Debian's postgresql)"
    "$ENGINE" build "${FORMAT[@]}" -f deploy/postgres/Containerfile --build-arg BASE="$BASE" \
        -t localhost/medfed-postgres:15 deploy/postgres
fi
# PRUNE=1: drop dangling images (an earlier build's layers); off by default, since it drops every
# dangling image of this engine, not only medfed's.
if [[ "${PRUNE:-0}" == 1 ]]; then
    "$ENGINE" image prune -f >/dev/null
fi
"$ENGINE" images --filter reference='localhost/medfed-*'
