#!/usr/bin/env bash
# Debian packages the tests use: Chromium and ChromeDriver for the web-page test, and podman, runc and
# debootstrap for the container test (deploy/install-podman.sh). Installs only what is missing; needs
# root (CI runs as root). `make system-deps` runs it (and `make test` runs that first): no test installs.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
bash "$(dirname "$0")/../deploy/install-podman.sh"
