#!/usr/bin/env bash
# Install what the container test needs (podman, runc, debootstrap) from Debian's packages when missing.
# Why runc: crun fails on these machines; podman is told `--runtime runc` everywhere.
# Needs root (CI runs as root). Waits for another apt run's dpkg lock instead of failing on it.
set -euo pipefail

missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-podman: podman, runc and debootstrap already present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-podman: missing ${missing[*]} and not root: cannot apt-get install them" >&2
    exit 1
fi
echo "install-podman: installing ${missing[*]} with apt"
apt_opts=(-o DPkg::Lock::Timeout=600 -qq)
apt-get "${apt_opts[@]}" update
DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y podman runc debootstrap
