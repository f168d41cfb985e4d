#!/usr/bin/env bash
# Pin the Dockerfile's base image by digest.
#
#   bash scripts/pin-base-image.sh               # re-pin the current tag (newer base)
#   bash scripts/pin-base-image.sh python:3.13-slim-bookworm   # change the tag, and pin it
#
# Looks up the tag's current digest in the registry (the multi-platform index
# digest, so the pin holds for every architecture) with the first tool found:
# crane, docker buildx imagetools, skopeo.  Then rewrites
#   ARG PYTHON_IMAGE=python:X.Y-slim-bookworm@sha256:<digest>
# in the Dockerfile.  Commit the result; rerun it to take base-image security
# updates.  Changing the Python minor version also means: tox.ini must test it
# (tests/test_deploy.py checks) and constraints.txt should be regenerated
# (scripts/update-constraints.py --python X.Y).
#
# Environment: DOCKERFILE (default: the checkout's Dockerfile).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="${DOCKERFILE:-$ROOT/Dockerfile}"

current="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$DOCKERFILE")"
if [[ -z "$current" ]]; then
    echo "pin-base-image: no 'ARG PYTHON_IMAGE=' line in $DOCKERFILE" >&2
    exit 1
fi
tag="${1:-${current%%@*}}"

resolve() {
    local image="$1" raw
    if command -v crane >/dev/null 2>&1; then
        crane digest "$image"
    elif docker buildx version >/dev/null 2>&1; then
        docker buildx imagetools inspect "$image" --format '{{json .Manifest.Digest}}' | tr -d '"'
    elif command -v skopeo >/dev/null 2>&1; then
        raw="$(mktemp)"
        skopeo inspect --raw "docker://$image" >"$raw"
        skopeo manifest-digest "$raw"
        rm -f "$raw"
    else
        echo "pin-base-image: need crane, docker buildx or skopeo (and the registry)" >&2
        return 1
    fi
}

digest="$(resolve "$tag")"
if ! [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "pin-base-image: unexpected digest for $tag: '$digest'" >&2
    exit 1
fi
sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$tag@$digest|" "$DOCKERFILE"
echo "pin-base-image: $tag@$digest"
