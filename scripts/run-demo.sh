#!/usr/bin/env bash
# The demo behind `make run`: examples/demo_app.py on 127.0.0.1:8000, gatehouse in front of it on
# :8080 (admin on 127.0.0.1:9901) with examples/demo.yaml. Ctrl-C drains gatehouse, then the app
# is stopped.
#
# usage: scripts/run-demo.sh BINARY        e.g. scripts/run-demo.sh build/gatehouse
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BINARY" >&2
  exit 2
fi
binary=$1
case "$binary" in /*) ;; *) binary="$PWD/$binary" ;; esac
if [ ! -x "$binary" ]; then
  echo "run-demo: $1 is not an executable (build it with: make build)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."

app_port=8000
app_log=${TMPDIR:-/tmp}/gatehouse-demo-app.log
for port in "$app_port" 8080 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run-demo: port $port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

app_pid="" gatehouse_pid=""
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
  if [ -n "$gatehouse_pid" ] && kill -0 "$gatehouse_pid" 2>/dev/null; then
    kill -TERM "$gatehouse_pid" 2>/dev/null || true
    wait "$gatehouse_pid" 2>/dev/null || true
  fi
  if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
    kill -TERM "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 examples/demo_app.py "$app_port" >"$app_log" 2>&1 &
app_pid=$!
for _ in $(seq 100); do
  if curl -sf -o /dev/null "http://127.0.0.1:$app_port/"; then
    break
  fi
  if ! kill -0 "$app_pid" 2>/dev/null; then
    echo "run-demo: the demo app exited; its output:" >&2
    cat "$app_log" >&2
    exit 1
  fi
  sleep 0.1
done
if ! curl -sf -o /dev/null "http://127.0.0.1:$app_port/"; then
  echo "run-demo: the demo app does not answer on 127.0.0.1:$app_port (log: $app_log)" >&2
  exit 1
fi

cat <<BANNER

  demo app   http://127.0.0.1:$app_port  (pid $app_pid, log $app_log)
  gatehouse  http://127.0.0.1:8080       admin http://127.0.0.1:9901   config examples/demo.yaml

  Try, from another terminal:
    curl -s http://127.0.0.1:8080/
    curl -s -X POST http://127.0.0.1:8080/api/generate \\
         -H 'Content-Type: application/json' -d '{"prompt": "a lighthouse keeper"}'
    curl -N 'http://127.0.0.1:8080/api/generate/stream?prompt=a+lighthouse+keeper'
    curl -s http://127.0.0.1:8080/api/stories/1
    curl -si http://127.0.0.1:8080/health/ready
    curl -s http://127.0.0.1:9901/health/detailed
    curl -s http://127.0.0.1:9901/metrics | grep '^gatehouse_requests_total'

  Access log (JSON) below on stdout, error and security logs on stderr. Ctrl-C drains and stops.

BANNER

# gatehouse runs as a child we wait for, so Ctrl-C (which reaches the whole process group) or a
# SIGTERM sent to this script lets it drain; the app keeps serving until gatehouse has exited.
trap 'kill -INT "$gatehouse_pid" 2>/dev/null || true' INT
trap 'kill -TERM "$gatehouse_pid" 2>/dev/null || true' TERM
"$binary" run --config examples/demo.yaml &
gatehouse_pid=$!
status=0
while :; do
  wait "$gatehouse_pid" && status=0 || status=$?
  kill -0 "$gatehouse_pid" 2>/dev/null || break
done
gatehouse_pid=""
exit "$status"
