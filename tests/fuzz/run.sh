#!/bin/sh
# run.sh [seconds] — build the libFuzzer targets of shim/proto with clang and
# run each for [seconds] (default 10). See README.md.
#   CLANG=...    compiler (default: clang, else clang-14)
#   FUZZ_OUT=... build/work directory (default: a fresh mktemp -d)
# The checked-in corpora (corpus/<target>/) are only read; new inputs go to
# $FUZZ_OUT/corpus/<target>, crash reproducers to $FUZZ_OUT/crash-<target>-*.
# Exit: 0 all clean, 1 a target failed, 77 no usable clang (meson: skipped).
set -u
secs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
targets="http_request http_response traceparent tracestate baggage header_value"

cc=${CLANG:-}
if [ -z "$cc" ]; then
	for c in clang clang-14; do
		command -v "$c" >/dev/null 2>&1 && { cc=$c; break; }
	done
fi
[ -n "$cc" ] || { echo "run.sh: no clang; skipping"; exit 77; }
out=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/traceshim-fuzz.XXXXXX")}
mkdir -p "$out"

flags="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I$root/shim"

# Probe: clang without libclang-rt (libFuzzer) is a skip, not a failure.
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}\n' \
	>"$out/probe.c"
if ! $cc $flags -o "$out/probe" "$out/probe.c" >"$out/probe.log" 2>&1; then
	echo "run.sh: $cc cannot link -fsanitize=fuzzer (libclang-rt missing?); skipping"
	exit 77
fi

# Build all targets in parallel (2 cores is the norm here).
pids=""
for t in $targets; do
	$cc $flags -o "$out/fuzz_$t" "$here/fuzz_$t.c" "$root"/shim/proto/*.c \
		>"$out/build_$t.log" 2>&1 &
	pids="$pids $!"
done
built=0
for p in $pids; do wait "$p" && built=$((built + 1)); done
ntargets=$(echo $targets | wc -w)
if [ "$built" -ne "$ntargets" ]; then
	cat "$out"/build_*.log
	echo "run.sh: build failed"
	exit 1
fi

passed=0
failed=0
for t in $targets; do
	mkdir -p "$out/corpus/$t"
	log="$out/fuzz_$t.log"
	if "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
		-print_final_stats=1 -artifact_prefix="$out/crash-$t-" \
		"$out/corpus/$t" "$here/corpus/$t" >"$log" 2>&1; then
		passed=$((passed + 1))
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
		echo "fuzz_$t: ok, ${execs:-?} execs in ${secs}s, $cov"
	else
		failed=$((failed + 1))
		echo "fuzz_$t: FAILED (log: $log)"
		grep -A30 -E 'ERROR|runtime error|deadly signal' "$log" | head -60
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
