#!/usr/bin/env bash
# demo.sh — see traceshim work in one command:
#   1. bootstrap --demo (install what is missing for building and the demo, build),
#   2. serve a page with python3's http.server on a free 127.0.0.1 port, traced,
#   3. scripts/traceshim run -- curl -s http://localhost:PORT/
#   4. scripts/traceshim show --last 1   (the trace, from the exporter's file)
#
# The demo uses its own exporter, socket and trace file in a temporary
# directory (TRACESHIM_SOCKET / TRACESHIM_FILE), so it neither needs nor
# disturbs an exporter you run yourself; it stops its exporter and removes the
# directory at the end (TRACESHIM_DEMO_KEEP=1 keeps the directory and the file).
#   BUILD_DIR   build directory (default: build)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh --demo
export TRACESHIM_BUILDDIR=$root/${BUILD_DIR:-build}
traceshim=$root/scripts/traceshim

demo=$(mktemp -d "${TMPDIR:-/tmp}/traceshim-demo.XXXXXX")
export TRACESHIM_SOCKET=$demo/exporter.sock TRACESHIM_FILE=$demo/traces.jsonl
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  "$traceshim" stop >/dev/null 2>&1 || true
  if [ "${TRACESHIM_DEMO_KEEP:-}" = 1 ]; then
    echo "demo: kept $demo"
  else
    rm -rf "$demo"
  fi
}
trap cleanup EXIT

mkdir "$demo/www"
printf '<!doctype html>\n<title>traceshim demo</title>\n<p>Hello from the traceshim demo.</p>\n' >"$demo/www/index.html"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The server runs traced too: the trace crosses both processes.
"$traceshim" run -- python3 -m http.server --bind 127.0.0.1 --directory "$demo/www" "$port" >"$demo/http.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.05
done

echo "\$ scripts/traceshim run -- curl -s http://localhost:$port/"
"$traceshim" run -- curl -s "http://localhost:$port/"
echo

# The exporter writes a batch shortly after the process ends.
for _ in $(seq 100); do
  grep -q '"kind": *2' "$TRACESHIM_FILE" 2>/dev/null && break  # the server's span is there
  sleep 0.1
done
echo "\$ scripts/traceshim show --last 1"
"$traceshim" show --last 1
