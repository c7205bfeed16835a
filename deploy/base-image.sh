#!/usr/bin/env bash
# Makes the local base image (default strata-base:bookworm) unless Docker
# already has it: a minimal Debian bookworm root filesystem made with
# debootstrap and loaded with `docker import`. No registry is needed; the
# packages come from the Debian mirror (DEBIAN_MIRROR).
#
#   deploy/base-image.sh [IMAGE]
#
# Needs root (debootstrap) and installs debootstrap when it is missing.
set -euo pipefail
IMAGE=${1:-${STRATA_BASE_IMAGE:-strata-base:bookworm}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
ROOT=$(mktemp -d /tmp/strata-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
# ca-certificates for TLS to object stores; curl for the HEALTHCHECK.
debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$ROOT" "$MIRROR" >/dev/null
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
  "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "made base image $IMAGE"
