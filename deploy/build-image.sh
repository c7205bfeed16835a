#!/usr/bin/env bash
# Builds the strata image from binaries built on the host, over the local
# base image (made first by deploy/base-image.sh when missing).
#
#   deploy/build-image.sh [IMAGE] [PROFILE]     # default strata:dev, release
#
# PROFILE is the cargo profile directory (release or debug) whose
# stratad, strata and strata-s3-server are copied; build them first:
#   cargo build --release -p strata-broker -p strata-cli -p strata-tests --bins
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-strata:dev}
PROFILE=${2:-release}
TARGET=${CARGO_TARGET_DIR:-target}/$PROFILE
BASE=${STRATA_BASE_IMAGE:-strata-base:bookworm}
deploy/base-image.sh "$BASE"
CTX=$(mktemp -d /tmp/strata-image.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
mkdir "$CTX/bin"
for b in stratad strata strata-s3-server; do
  [ -x "$TARGET/$b" ] || { echo "missing $TARGET/$b: build the binaries first" >&2; exit 1; }
  cp "$TARGET/$b" "$CTX/bin/"
done
# Debug info is not needed in the image.
strip "$CTX"/bin/* 2>/dev/null || true
cp deploy/Dockerfile.prebuilt deploy/healthcheck.sh "$CTX/"
docker build -q --build-arg "BASE=$BASE" -f "$CTX/Dockerfile.prebuilt" -t "$IMAGE" "$CTX" >/dev/null
echo "built $IMAGE ($PROFILE binaries)"
