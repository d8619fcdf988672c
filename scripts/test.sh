#!/usr/bin/env bash
# test.sh — bootstrap, build, run every meson test, and end with one line:
#   N passed, N failed[, N skipped]
# counted from <build>/meson-logs/testlog.json. Exits non-zero if a test failed
# (or the build did). Extra arguments go to `meson test` (e.g. --suite unit).
#   BUILD_DIR                  build directory (default: build)
#   TRACESHIM_TIMEOUT_MULTIPLIER  meson test --timeout-multiplier (default: 2; CI
#                              machines are slower than a developer's)
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-build}
cd "$root" || exit 1

if ! bash scripts/bootstrap.sh; then
  echo "test.sh: bootstrap (install or build) failed" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

testlog=$build_dir/meson-logs/testlog.json
rm -f "$testlog"
meson test -C "$build_dir" --print-errorlogs \
  --timeout-multiplier "${TRACESHIM_TIMEOUT_MULTIPLIER:-2}" "$@"
rc=$?

if [ ! -f "$testlog" ]; then
  echo "test.sh: meson test wrote no $testlog (exit $rc)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

/usr/bin/python3 - "$testlog" "$rc" <<'PY'
import json, sys
passed = failed = skipped = 0
failures = []
with open(sys.argv[1]) as f:
    for line in f:
        if not line.strip():
            continue
        t = json.loads(line)
        result = t.get("result", "")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, ...
            failed += 1
            failures.append("%s (%s)" % (t.get("name"), result))
if failures:
    print("failed: " + ", ".join(failures), file=sys.stderr)
if passed + failed == 0 and int(sys.argv[2]) != 0:
    failed = 1  # meson test failed before running anything
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed or int(sys.argv[2]) != 0 else 0)
PY
