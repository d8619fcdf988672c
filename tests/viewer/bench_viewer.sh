#!/usr/bin/env bash
# bench_viewer.sh — the viewer's figures on a big trace file (docs/PERFORMANCE.md,
# "The viewer"). Not a test: it times things, so it is not registered in meson.
#   bash tests/viewer/bench_viewer.sh [FILE]   (default: makes /tmp/traceshim-big/traces.jsonl, 256 MiB)
# Prints wall and CPU seconds and peak RSS of each command, next to the cost of
# only parsing every line with json.loads in one process (the floor of any
# stdlib reader), all in one run, so the ratios hold on a loaded machine.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
show=$here/../../scripts/traceshim-show
file=${1:-}
if [ -z "$file" ]; then
  mkdir -p /tmp/traceshim-big
  file=/tmp/traceshim-big/traces.jsonl
  [ -s "$file" ] || /usr/bin/python3 "$here/make_big_file.py" "$file" --size 256M
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# t LABEL CMD...: one line of figures for CMD (children's CPU included: the
# forked readers are waited for).
t() {
  local label=$1
  shift
  /usr/bin/time -f "%e s wall  %U+%S s cpu  %M KiB max RSS" "$@" > /dev/null 2> "$out/err" || true
  printf '%-58s %s\n' "$label" "$(tail -n 1 "$out/err")"
}
echo "file: $file ($(stat -c %s "$file") bytes), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
t "cat FILE" cat "$file"
t "json.loads of every line, one process" /usr/bin/python3 -c 'import json, sys
for line in open(sys.argv[1], "rb"): json.loads(line)' "$file"
for i in 1 2 3; do t "show --last 10" /usr/bin/python3 "$show" "$file" --ascii --last 10; done
t "show --errors --last 20" /usr/bin/python3 "$show" "$file" --ascii --errors --last 20
t "show --min-duration 1s --last 20" /usr/bin/python3 "$show" "$file" --ascii --min-duration 1s --last 20
t "show --where url.path~^/slow/ --where 'status_code<300' --last 5" \
  /usr/bin/python3 "$show" "$file" --ascii --where 'url.path~^/slow/' --where 'http.response.status_code<300' --last 5
t "top" /usr/bin/python3 "$show" --mode top "$file"
t "show --html OUT --last 200" /usr/bin/python3 "$show" "$file" --html "$out/page.html" --last 200
t "show (every trace, into /dev/null)" /usr/bin/python3 "$show" "$file" --ascii
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
