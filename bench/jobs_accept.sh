#!/usr/bin/env bash
# Accepted jobs per second through the binary (issue 13): wrk POSTs a small JSON body to an
# `async` route; every 202 is sent only after the store reported the job durable. The upstream
# sleeps 10 s and jobs.concurrency is 1, so the runner is nearly idle and what is measured is
# accepting (body read, owner hash, id, store commit, 202). SQLite, then Redis (a redis-server of
# its own, no persistence, on loopback).
#
# usage: bench/jobs_accept.sh [--duration 10] [--connections 32] [--store sqlite|redis|both]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=10 conns=32 stores=both
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --store) stores=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ "$stores" = both ] && stores="sqlite redis"
bin=${GATEHOUSE_BIN:-$root/build/gatehouse}
up=18190 gh=18191 rport=18192
dir=$(mktemp -d /tmp/gatehouse-jobs-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

cat > "$dir/slow.py" <<'PY'
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(10)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$dir/slow.py" $up & pids+=($!)

cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"prompt":"a story about a lighthouse keeper"}'
wrk.headers["Content-Type"] = "application/json"
LUA

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

printf '%-28s %s\n' store "wrk summary"
for store in $stores; do
  url="sqlite://$dir/jobs.db"
  if [ "$store" = redis ]; then
    redis-server --port $rport --save '' --appendonly no --daemonize no > "$dir/redis.log" 2>&1 &
    pids+=($!)
    wait_port $rport
    url="redis://127.0.0.1:$rport/0"
  fi
  cat > "$dir/$store.yaml" <<YAML
listen: 127.0.0.1:$gh
admin_listen: off
workers: 2
upstreams: {app: {targets: ["127.0.0.1:$up"]}}
jobs: {store: "$url", concurrency: 1, max_queued: 100000000}
routes:
  - {name: gen, match: {path_prefix: /gen, methods: [POST]}, upstream: app, mode: async}
log: {access: off, error: "$dir/$store-error.log"}
YAML
  (cd "$dir" && exec "$bin" run -c "$dir/$store.yaml") > "$dir/$store.out" 2>&1 &
  gpid=$!
  wait_port $gh
  out=$(wrk -t2 -c"$conns" -d"${duration}s" -s "$dir/post.lua" "http://127.0.0.1:$gh/gen")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  lat=$(awk '/Latency/ {print $2; exit}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-28s %s jobs/s, avg latency %s, non-2xx %s\n' "$store" "$rps" "$lat" "${non2xx:-0}"
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
done
