#!/usr/bin/env bash
# bootstrap.sh — make this machine able to build and test traceshim, then build.
#
# Idempotent: installs only the Debian packages that are missing (one
# `apt-get update`, and only if something is missing), configures the meson
# build directory (or reconfigures it) and builds it.
#   BUILD_DIR   build directory (default: build)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-build}
cd "$root"

packages=(
  meson ninja-build pkg-config gcc make zlib1g-dev
  libunwind-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  python3 python3-protobuf libcurl4-openssl-dev libcriterion-dev
  curl nginx-light nodejs npm wrk clang libclang-rt-14-dev
  libssl-dev libgnutls28-dev openssl wget strace
  prometheus
  chromium
  dpkg-dev debootstrap systemd systemd-container
)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" && continue
  # NodeSource's nodejs package ships npm itself and conflicts with Debian's
  # npm package: a working npm is what is needed.
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "bootstrap: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -f "$build_dir/meson-private/coredata.dat" ]; then
  # Picks up changed options and meson files; a build dir made by another
  # meson version cannot be reconfigured and is made anew.
  meson setup --reconfigure "$build_dir" >/dev/null || meson setup --wipe "$build_dir"
else
  meson setup "$build_dir"
fi
ninja -C "$build_dir"
