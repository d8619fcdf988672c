#!/bin/sh
# bench/run.sh [--quick] [--only LIST] [--keep] — traceshim's benchmark suite.
#
# Builds a RELEASE build of the shim and the exporter in build-bench/ (meson
# --buildtype=release), compiles the benchmark programs of bench/ against it,
# and runs bench/driver.py: every benchmark traced and untraced side by side,
# alternating rounds, medians, ratios traced/untraced, and a targets summary.
# Results: <work dir>/results.json (the work dir is printed; default a new
# directory under /tmp, or $TRACESHIM_BENCH_DIR).
#
#   --quick      fewer and shorter rounds (~4 min instead of ~20)
#   --only LIST  comma-separated subset of
#                calls,nginx,python,node,https,exporter,metrics,processes
#                (nginx also runs the client and memory benchmarks)
#   --keep       keep the exporters' span files
#
# Needs: meson, ninja, cc, python3, nginx (nginx-light), wrk, taskset, openssl;
# node (nodejs) for the node row, skipped without it. Not part
# of the test command: it takes minutes and wants a quiet machine.
set -eu

src=$(cd "$(dirname -- "$0")/.." && pwd -P)
build=${TRACESHIM_BENCH_BUILD:-$src/build-bench}

missing=
for tool in meson ninja cc python3 nginx wrk taskset openssl; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing="$missing $tool"
done
if [ -n "$missing" ]; then
	echo "bench/run.sh: missing:$missing" >&2
	echo "  on Debian: apt-get install -y meson ninja-build gcc python3 nginx-light wrk util-linux openssl nodejs" >&2
	exit 1
fi

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$src" --buildtype=release -Dtests=false >/dev/null
fi
ninja -C "$build" hooks/libtraceshim.so exporter/traceshim-exporter shim/libtscommon.a >/dev/null

work=${TRACESHIM_BENCH_DIR:-$(mktemp -d /tmp/traceshim-bench.XXXXXX)}
mkdir -p "$work/bin"
cflags="-O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror"
cc $cflags -o "$work/bin/calls" "$src/bench/calls.c" -ldl -lpthread
cc $cflags -o "$work/bin/httpc" "$src/bench/httpc.c"
cc $cflags -I"$src/shim" -o "$work/bin/firehose" "$src/bench/firehose.c" "$build/shim/libtscommon.a"
cc $cflags -o "$work/bin/sink_http" "$src/bench/sink_http.c" -lpthread

exec python3 "$src/bench/driver.py" --src "$src" --bin "$work/bin" --work "$work" \
	--lib "$build/hooks/libtraceshim.so" --exporter "$build/exporter/traceshim-exporter" "$@"
