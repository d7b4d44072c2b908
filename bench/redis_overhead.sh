#!/usr/bin/env bash
# Cost of moving the rate limiter's counters to Redis: two gatehouse instances in front of the
# same nginx upstream (compare.sh's), identical except for `rate_limit.store` (memory vs a
# redis-server on loopback), both with a per-IP limit that is never reached; wrk rounds are
# interleaved so machine drift hits both alike. Then redis-benchmark runs the decision script
# itself (EVALSHA, unpipelined and pipelined) as the physical limit of this machine.
#
# usage: bench/redis_overhead.sh [--rounds 5] [--duration 8] [--connections 64] [--workers 1]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=5 duration=8 conns=64 workers=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
bin=${GATEHOUSE_BIN:-$root/build/gatehouse}
peers=${PEERS_DIR:-$root/../shared/bench/peers}
PATH=$PATH:/usr/sbin
up=18190 memory=18191 redis=18192 redis_port=18193

dir=$(mktemp -d /tmp/gatehouse-redis-bench.XXXXXX)
chmod 755 "$dir"
sed -e "s#@DIR@#$dir#g" -e "s#@UPSTREAM_PORT@#$up#g" "$peers/upstream.conf" > "$dir/upstream.conf"
write_config() {  # name port store
  cat > "$dir/$1.yaml" <<YAML
listen: 127.0.0.1:$2
admin_listen: off
workers: $workers
upstreams: {app: {targets: ["127.0.0.1:$up"]}}
log: {access: $dir/$1-access.log, error: stderr, security: stderr}
rate_limit: {key: ip, limits: "1000000000/minute", store: "$3"}
YAML
}
write_config memory $memory memory
write_config redis $redis "redis://127.0.0.1:$redis_port/0"

pids=()
cleanup() {
  [ -s "$dir/upstream.pid" ] && kill "$(cat "$dir/upstream.pid")" 2>/dev/null || true
  redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
nginx -c "$dir/upstream.conf"
redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$dir/redis.log" --dir "$dir"
for _ in $(seq 50); do redis-cli -p $redis_port ping >/dev/null 2>&1 && break; sleep 0.1; done
for n in memory redis; do
  "$bin" run --config "$dir/$n.yaml" > "$dir/$n.out" 2>&1 &
  pids+=($!)
done
for port in $up $memory $redis; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
done

: > "$dir/results"
for r in $(seq "$rounds"); do
  for n in memory redis; do
    port=$([ $n = memory ] && echo $memory || echo $redis)
    out=$(wrk -t1 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$port/")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    echo "$n $rps $p99" >> "$dir/results"
    printf 'round %s store-%-6s %10s req/s  p99 %s\n' "$r" "$n" "$rps" "$p99"
  done
done
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_mem=$(awk '$1=="memory"{print $2}' "$dir/results" | median)
m_red=$(awk '$1=="redis"{print $2}' "$dir/results" | median)
awk -v a="$m_red" -v b="$m_mem" \
  'BEGIN{printf "median store-redis %.0f  store-memory %.0f  ratio redis/memory %.3f\n", a, b, a/b}'
# Rounds are interleaved, so the ratio within a round is the least drift-sensitive figure.
awk '$1=="memory"{m=$2} $1=="redis"{print $2/m}' "$dir/results" | median |
  awk '{printf "median of per-round ratios redis/memory %.3f\n", $1}'
echo "redis decisions answered: $(redis-cli -p $redis_port info stats | awk -F: '/total_commands_processed/{print $2}' | tr -d '\r') commands; keys: $(redis-cli -p $redis_port dbsize)"

# The physical limit: the same script, one key, straight from redis-benchmark.
sha=$(redis-cli -p $redis_port script load "$(redis-cli -p $redis_port script load 'return 1' >/dev/null; \
  sed -n '/^constexpr std::string_view kScript = R"lua(/,/^)lua";/p' "$root/src/filters/rate_limit/store/redis_protocol.cpp" \
  | sed '1s/.*R"lua(//; $d')")
args=(EVALSHA "$sha" 1 "gatehouse:{ip=127.0.0.1}:bench" "" 0 1 1 0 0 0 "" 0 1000000000 60000000 1000000000)
for pipeline in 1 16; do
  rps=$(redis-benchmark -p $redis_port -n 200000 -c 50 -P $pipeline -q "${args[@]}" | tr '\r' '\n' | awk '/requests per second/{for(i=2;i<=NF;i++) if($i=="requests") print $(i-1)}' | tail -1)
  echo "redis-benchmark EVALSHA (-c 50 -P $pipeline): $rps decisions/s"
done
