#!/usr/bin/env bash
# Installs what building and testing kvs-infer needs on a fresh Debian machine with Rust.
# Idempotent: each step checks first and does nothing when its part is already there.
# Used by scripts/demo.sh and scripts/test.sh; safe to run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || { log "error: $1 is required ($2)"; exit 1; }
}

need_cmd cargo "install Rust with rustup"

# Debian packages: only installed when missing (root, or sudo when available).
APT_PACKAGES=()
missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_apt+=("$pkg")
done
if ((${#missing_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Debian packages: ${missing_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi

log "ok"
