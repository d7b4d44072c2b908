#!/usr/bin/env bash
# Cached-path benchmark (issue 14): the same upstream reached directly, through nginx with
# proxy_cache (bench/cache-nginx.conf) and through gatehouse with its response cache
# (bench/compare-cache.yaml), one worker each, rounds interleaved like ../shared/bench/compare.sh.
# After the first request every answer is a hit; the figure to quote is the ratio.
#
# usage: bench/cache-compare.sh --gatehouse "CMD" [--path /] [--rounds 3] [--duration 8] [--connections 64]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peers=${PEERS:-$here/../../shared/bench/peers}
[ -d "$peers" ] || peers=/work/shared/bench/peers
gatehouse_cmd="" path="/" rounds=3 duration=8 conns=64
while [ $# -gt 0 ]; do
  case "$1" in
    --gatehouse) gatehouse_cmd=$2; shift 2 ;;
    --path) path=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
export UPSTREAM_PORT=${UPSTREAM_PORT:-18080} NGINX_PORT=${NGINX_PORT:-18081} GATEHOUSE_PORT=${GATEHOUSE_PORT:-18083}
PATH=$PATH:/usr/sbin
dir=$(mktemp -d /tmp/gatehouse-cache-bench.XXXXXX)
chmod 755 "$dir"
head -c 65536 /dev/urandom > "$dir/large.bin"
render() { sed -e "s#@DIR@#$dir#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" -e "s#@NGINX_PORT@#$NGINX_PORT#g" "$1" > "$2"; }
render "$peers/upstream.conf" "$dir/upstream.conf"
render "$here/cache-nginx.conf" "$dir/nginx.conf"

gatehouse_pid=""
cleanup() {
  for f in upstream nginx; do [ -s "$dir/$f.pid" ] && kill "$(cat "$dir/$f.pid")" 2>/dev/null || true; done
  [ -n "$gatehouse_pid" ] && kill "$gatehouse_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
nginx -c "$dir/upstream.conf"
nginx -c "$dir/nginx.conf"
systems=(direct:$UPSTREAM_PORT nginx:$NGINX_PORT)
if [ -n "$gatehouse_cmd" ]; then
  bash -c "exec $gatehouse_cmd" > "$dir/gatehouse.out" 2>&1 &
  gatehouse_pid=$!
  systems+=(gatehouse:$GATEHOUSE_PORT)
fi
for s in "${systems[@]}"; do
  port=${s#*:} ok=""
  for _ in $(seq 50); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port$path"; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "${s%%:*} on port $port does not answer $path" >&2; exit 1; }
done
# Both caches answer hits from here on (nginx says so in X-Cache, gatehouse in X-Cache).
for p in "$NGINX_PORT" ${gatehouse_pid:+$GATEHOUSE_PORT}; do
  curl -s -o /dev/null -D - "http://127.0.0.1:$p$path" | grep -i '^x-cache' | sed "s/^/port $p: /"
done

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v}'; }
: > "$dir/results"
for r in $(seq "$rounds"); do
  for s in "${systems[@]}"; do
    name=${s%%:*} port=${s#*:}
    out=$(wrk -t1 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$port$path")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    errs=$(awk '/Non-2xx|Socket errors/{printf "%s ", $0}' <<<"$out")
    echo "$name $rps $p99" >> "$dir/results"
    printf 'round %s %-9s %10s req/s  p99 %8s ms  %s\n' "$r" "$name" "$rps" "$p99" "$errs"
  done
done
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf '%-9s %12s %12s\n' system "median req/s" "median p99 ms"
declare -A rps p99
for s in "${systems[@]}"; do
  n=${s%%:*}
  rps[$n]=$(awk -v n="$n" '$1==n{print $2}' "$dir/results" | median)
  p99[$n]=$(awk -v n="$n" '$1==n{print $3}' "$dir/results" | median)
  printf '%-9s %12.0f %12.3f\n' "$n" "${rps[$n]}" "${p99[$n]}"
done
if [ -n "$gatehouse_pid" ]; then
  awk -v g="${rps[gatehouse]}" -v n="${rps[nginx]}" -v gp="${p99[gatehouse]}" -v np="${p99[nginx]}" 'BEGIN{
    printf "\ngatehouse/nginx throughput on hits %.2f   p99 %.2f\n", g/n, gp/np }'
fi
