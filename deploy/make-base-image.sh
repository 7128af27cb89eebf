#!/usr/bin/env bash
# Build the local Debian bookworm base image (localhost/debian:bookworm) when it is missing.
# Why: no container registry is reachable here, so there is no python:3.11-slim to pull; a minimal
# bookworm root file system from Debian's own mirror stands in for it (its python3 is 3.11).
# Usage: deploy/make-base-image.sh [IMAGE]   (IMAGE defaults to localhost/debian:bookworm)
set -euo pipefail

image="${1:-localhost/debian:bookworm}"
podman_cmd=(podman --runtime runc)

if "${podman_cmd[@]}" image exists "$image"; then
    echo "make-base-image: $image already exists"
    exit 0
fi

# The mirror that apt on this machine uses (deb822 sources first, then the one-line format).
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
    mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
    echo "make-base-image: no Debian mirror found in /etc/apt; set DEBIAN_MIRROR" >&2
    exit 1
fi

rootfs="$(mktemp -d /var/tmp/llmneo-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "make-base-image: debootstrap bookworm from $mirror"
start=$(date +%s)
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
# Lists and caches are not part of a base image; the Dockerfile runs apt-get update itself.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | "${podman_cmd[@]}" import --quiet - "$image" >/dev/null
echo "make-base-image: built $image in $(( $(date +%s) - start )) s"
