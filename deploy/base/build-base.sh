#!/usr/bin/env bash
# Build the images' Debian base from Debian packages with debootstrap and import it as a local
# image. Hospitals' build machines often reach a Debian mirror but no image registry; on a normal
# machine skip this and pass BASE=docker.io/library/python:3.11-slim-bookworm to build-images.sh.
#
# Environment: SUITE (bookworm), MIRROR (default: the first Debian URI this machine's apt uses),
# BASE_IMAGE (localhost/medfed-base:bookworm), MEDFED_DEPLOY_CACHE (/var/tmp/medfed-deploy: the
# rootfs tarball is kept there, so a rebuild after `podman rmi` takes seconds), REBUILD=1 to
# debootstrap again.
set -euo pipefail

SUITE=${SUITE:-bookworm}
BASE_IMAGE=${BASE_IMAGE:-localhost/medfed-base:${SUITE}}
CACHE=${MEDFED_DEPLOY_CACHE:-/var/tmp/medfed-deploy}
# python3 and its venv module for the build stage; tzdata so logs can name a zone. Nothing else:
# the runtime stage adds no packages, and scanners read /var/lib/dpkg/status, which is kept.
PACKAGES=${PACKAGES:-python3,python3-venv,tzdata}

detect_mirror() {
    local uri
    uri=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        2>/dev/null | grep -m1 -E 'debian/?$|debian ' | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(detect_mirror)}

if [[ -z "${REBUILD:-}" ]] && podman image exists "$BASE_IMAGE"; then
    echo "base image $BASE_IMAGE exists (REBUILD=1 to build it again)"
    exit 0
fi

tarball="$CACHE/base-$SUITE.tar"
if [[ -n "${REBUILD:-}" || ! -f "$tarball" ]]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 2; }
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    echo "debootstrap $SUITE from $MIRROR (+ $PACKAGES)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR"
    # What a container never reads: documentation, manuals, translations, apt's caches.
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale,lintian} "$rootfs"/var/cache/apt/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$rootfs/etc/apt/sources.list"
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
fi

podman import \
    --change 'CMD ["/usr/bin/python3"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.opencontainers.image.title=medfed-base org.opencontainers.image.base.name=debian:$SUITE org.opencontainers.image.source=$MIRROR" \
    "$tarball" "$BASE_IMAGE"
echo "imported $BASE_IMAGE ($(du -h "$tarball" | cut -f1) tarball)"
