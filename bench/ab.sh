#!/usr/bin/env bash
# A/B throughput of two gatehouse configurations on loopback, against compare.sh's nginx upstream,
# interleaved round by round so machine drift hits both alike. The figure to quote is B/A.
#
# usage: bench/ab.sh --a CONFIG_A --b CONFIG_B [--bin build/gatehouse] [--path /] [--rounds 5]
#                    [--duration 6] [--connections 64]
#   Each config listens on 127.0.0.1:18083 (A) or 127.0.0.1:18084 (B) and proxies to 127.0.0.1:18080;
#   e.g. bench/ab.sh --a bench/compare.yaml --b bench/compare-resilience.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$here/../../shared/bench}
bin=build/gatehouse a="" b="" path=/ rounds=5 duration=6 conns=64
while [ $# -gt 0 ]; do
  case $1 in
    --a) a=$2; shift 2 ;;
    --b) b=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --path) path=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$a" ] && [ -n "$b" ] || { echo "usage: $0 --a CONFIG_A --b CONFIG_B" >&2; exit 2; }
PATH=$PATH:/usr/sbin
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk (see compare.sh)" >&2; exit 1; }

dir=$(mktemp -d /tmp/gatehouse-ab.XXXXXX)
chmod 755 "$dir"
head -c 65536 /dev/urandom > "$dir/large.bin"
sed -e "s#@DIR@#$dir#g" -e "s#@UPSTREAM_PORT@#18080#g" "$shared/peers/upstream.conf" > "$dir/upstream.conf"
sed -e "s#127.0.0.1:18083#127.0.0.1:18084#" -e "s#gatehouse-bench-access.log#gatehouse-bench-access-b.log#" "$b" > "$dir/b.yaml"
pids=()
cleanup() {
  [ -s "$dir/upstream.pid" ] && kill "$(cat "$dir/upstream.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
nginx -c "$dir/upstream.conf"
"$bin" run --config "$a" > "$dir/a.out" 2>&1 & pids+=($!)
"$bin" run --config "$dir/b.yaml" > "$dir/b.out" 2>&1 & pids+=($!)
for port in 18080 18083 18084; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port$path" && continue 2; sleep 0.2; done
  echo "port $port does not answer $path" >&2; tail -5 "$dir"/*.out >&2; exit 1
done
: > "$dir/results"
for r in $(seq "$rounds"); do
  for s in A:18083 B:18084; do
    out=$(wrk -t1 -c"$conns" -d"${duration}s" "http://127.0.0.1:${s#*:}$path")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/{printf "%s ", $0}' <<<"$out")
    echo "${s%%:*} $rps" >> "$dir/results"
    printf 'round %s %s %10s req/s  %s\n' "$r" "${s%%:*}" "$rps" "$errs"
  done
done
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ma=$(awk '$1=="A"{print $2}' "$dir/results" | median)
mb=$(awk '$1=="B"{print $2}' "$dir/results" | median)
awk -v a="$ma" -v b="$mb" 'BEGIN{printf "median A %.0f req/s   median B %.0f req/s   B/A %.3f\n", a, b, b/a}'
