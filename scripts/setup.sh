#!/usr/bin/env bash
# Everything a fresh machine needs, idempotent: Debian packages, the npm dependencies
# (Node 24 comes from the `node` npm package), and the Go-built binaries (cached by
# version in ~/.cache/vuln-patcher/bin, so only the first run pays the ~15 min build).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker-registry runc debootstrap umoci skopeo xz-utils openssl ca-certificates util-linux apache2-utils qemu-user-static chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# Debian starts it as a service on install; the environment runs its own on free ports.
systemctl stop docker-registry 2>/dev/null || true

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

command -v go >/dev/null || { echo "[setup] Go is required to build kube-apiserver, etcd, nats-server, BuildKit, copa and helm (go.dev/dl)" >&2; exit 1; }
scripts/build-tools.sh "$@"
