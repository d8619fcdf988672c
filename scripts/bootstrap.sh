#!/usr/bin/env bash
# bootstrap.sh — make this machine able to build traceshim (and test it), then build.
#
#   bash scripts/bootstrap.sh          the test profile (default; scripts/test.sh):
#                                      everything the test suite runs (nginx, node,
#                                      wrk, clang, CPython's test suite, ...)
#   bash scripts/bootstrap.sh --demo   the demo profile (scripts/demo.sh): only
#                                      what building and the demo need (a C
#                                      toolchain, the exporter's libraries,
#                                      python3, curl); the build skips the tests
#
# Idempotent: installs only the Debian packages that are missing (one
# `apt-get update`, and only if something is missing), configures the meson
# build directory (or reconfigures it) and builds it. Installing needs root:
# as another user it uses sudo; without sudo (or if sudo fails) it prints the
# exact command to run as root and exits with status 1.
#   BUILD_DIR   build directory (default: build)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-build}
cd "$root"

profile=test
case "${1:-}" in
  --demo) profile=demo ;;
  --test | "") ;;
  *) echo "usage: bash scripts/bootstrap.sh [--demo | --test]" >&2; exit 2 ;;
esac

# What building needs (and all the demo needs besides python3 and curl).
build_packages=(
  meson ninja-build pkg-config gcc zlib1g-dev
  libunwind-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev
)
demo_packages=(python3 curl)
# What the test suite needs on top.
test_packages=(
  make protobuf-compiler python3-protobuf libcriterion-dev
  nginx-light nodejs npm wrk clang libclang-rt-14-dev
  libssl-dev libgnutls28-dev openssl wget strace prometheus
  chromium
  dpkg-dev debootstrap systemd systemd-container
  libpython3.11-testsuite
)
packages=("${build_packages[@]}" "${demo_packages[@]}")
[ "$profile" = demo ] || packages+=("${test_packages[@]}")

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

# Says plainly what to run as root, and stops.
need_root() {
  cat >&2 <<EOF
bootstrap: these Debian packages are missing: ${missing[*]}
bootstrap: installing them needs root${1:+ ($1)}. As root, run:

    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}

bootstrap: then run this command again.
EOF
  exit 1
}

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || need_root "there is no sudo here"
    sudo=(sudo)
  fi
  echo "bootstrap: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq || need_root "${sudo:+sudo }apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    need_root "${sudo:+sudo }apt-get install failed"
fi

# The demo profile has no Criterion: a new build dir is made without the
# tests. An existing one keeps its setting, unless this is the test profile,
# which needs them.
tests_opt=()
if [ "$profile" = test ]; then
  tests_opt=(-Dtests=true)
elif [ ! -f "$build_dir/meson-private/coredata.dat" ]; then
  tests_opt=(-Dtests=false)
fi

if [ -f "$build_dir/meson-private/coredata.dat" ]; then
  # Picks up changed options and meson files; a build dir made by another
  # meson version cannot be reconfigured and is made anew.
  meson setup --reconfigure "${tests_opt[@]}" "$build_dir" >/dev/null ||
    meson setup --wipe "${tests_opt[@]}" "$build_dir"
else
  meson setup "${tests_opt[@]}" "$build_dir"
fi
ninja -C "$build_dir"
