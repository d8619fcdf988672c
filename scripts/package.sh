#!/usr/bin/env bash
# package.sh — build the Debian package build/traceshim_<version>_<arch>.deb
# from a `meson install` of a prefix=/usr build (its own build directory,
# build/pkg, so the development build keeps its prefix and options).
#
#   bash scripts/package.sh           # prints the path of the .deb
#
# Depends: what dpkg-shlibdeps derives from the ELF files' NEEDED entries
# (libc6, libcurl4, libprotobuf-c1, zlib1g, with versions from their symbols
# files), plus what is not linked: libunwind8 (dlopen'ed by the shim for
# stack traces) and python3 (`traceshim show`). Binaries are stripped, and
# the package is checked for paths of the source or build tree. Needs
# dpkg-dev (scripts/bootstrap.sh installs it).
#   BUILD_DIR   where the .deb goes (default: build)
#   DEBFULLNAME, DEBEMAIL   the Maintainer field, as for Debian's own tools
#               (default: traceshim developers <traceshim@localhost>)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
out_dir=${BUILD_DIR:-build}
cd "$root"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd -P)
pkg_build=$out_dir/pkg
stage=$pkg_build/stage

for tool in meson ninja dpkg-deb dpkg-shlibdeps objdump; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (bash scripts/bootstrap.sh)" >&2; exit 1; }
done

# -ffile-prefix-map: no absolute path of this checkout in __FILE__ or debug
# info, whatever meson passes.
opts=(--prefix=/usr --buildtype=debugoptimized -Dtests=false "-Dc_args=-ffile-prefix-map=$root/=")
if [ -f "$pkg_build/meson-private/coredata.dat" ]; then
  meson setup --reconfigure "${opts[@]}" "$pkg_build" >/dev/null || meson setup --wipe "${opts[@]}" "$pkg_build" >/dev/null
else
  meson setup "${opts[@]}" "$pkg_build" >/dev/null
fi
ninja -C "$pkg_build" >/dev/null
rm -rf "$stage"
DESTDIR=$stage meson install -C "$pkg_build" --strip --quiet

version=$(meson introspect --projectinfo "$pkg_build" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
arch=$(dpkg --print-architecture)

# Debian policy: man pages compressed, no timestamps in the gzip header.
find "$stage/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +

# ELF files and what they need.
mapfile -t elves < <(find "$stage" -type f -exec sh -c 'head -c 4 "$1" | grep -q "^.ELF" && echo "$1"' _ {} \;)
[ "${#elves[@]}" -gt 0 ] || { echo "package.sh: no ELF files installed?" >&2; exit 1; }
shlib_dir=$pkg_build/shlibdeps
rm -rf "$shlib_dir"
mkdir -p "$shlib_dir/debian"
printf 'Source: traceshim\n\nPackage: traceshim\nArchitecture: any\n' >"$shlib_dir/debian/control"
shlibs=$(cd "$shlib_dir" && dpkg-shlibdeps -O "${elves[@]}" 2>"$shlib_dir/warnings" | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { cat "$shlib_dir/warnings" >&2; echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
depends="$shlibs, libunwind8, python3"

maintainer="${DEBFULLNAME:-traceshim developers} <${DEBEMAIL:-traceshim@localhost}>"

# A native package's changelog (Debian policy 12.7): one entry for this build,
# dated by the last commit so that two builds of one commit are identical.
when=$(git -C "$root" log -1 --format=%aD 2>/dev/null || date -R)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'traceshim (%s) unstable; urgency=medium\n\n  * Built from the traceshim repository at %s.\n\n -- %s  %s\n' \
  "$version" "$rev" "$maintainer" "$when" | gzip -9n >"$stage/usr/share/doc/traceshim/changelog.gz"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
  -e "s/@DEPENDS@/$depends/" -e "s|@MAINTAINER@|$maintainer|" packaging/debian/control.in >"$stage/DEBIAN/control"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"

# Nothing may point back into this checkout or its build directories.
if leaks=$(grep -rlaF -e "$root" -e "$out_dir" "$stage"); then
  echo "package.sh: build-tree paths inside the package:" >&2
  printf '  %s\n' "$leaks" >&2
  exit 1
fi

deb=$out_dir/traceshim_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
