#!/usr/bin/env bash
# Cost of the rate limiter on the whole request path: two gatehouse instances in front of the same
# nginx upstream (compare.sh's), identical except that one has a per-IP limit that is never
# reached, measured round by round with wrk, interleaved so machine drift hits both alike.
#
# usage: bench/limiter_overhead.sh [--rounds 5] [--duration 8] [--connections 64] [--headers on|off]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=5 duration=8 conns=64 headers=on
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --headers) headers=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
bin=${GATEHOUSE_BIN:-$root/build/gatehouse}
peers=${PEERS_DIR:-$root/../shared/bench/peers}
PATH=$PATH:/usr/sbin
up=18090 off=18091 on=18092

dir=$(mktemp -d /tmp/gatehouse-limiter.XXXXXX)
chmod 755 "$dir"
sed -e "s#@DIR@#$dir#g" -e "s#@UPSTREAM_PORT@#$up#g" "$peers/upstream.conf" > "$dir/upstream.conf"
write_config() {  # name port [rate_limit block]
  cat > "$dir/$1.yaml" <<YAML
listen: 127.0.0.1:$2
admin_listen: off
workers: 1
upstreams: {app: {targets: ["127.0.0.1:$up"]}}
log: {access: $dir/$1-access.log, error: stderr, security: stderr}
$3
YAML
}
write_config off $off ""
hdrs=$([ "$headers" = on ] && echo "[ietf, x-ratelimit]" || echo none)
write_config on $on "rate_limit: {key: ip, limits: \"1000000000/minute\", headers: $hdrs}"

pids=()
cleanup() {
  [ -s "$dir/upstream.pid" ] && kill "$(cat "$dir/upstream.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
nginx -c "$dir/upstream.conf"
for n in off on; do
  "$bin" run --config "$dir/$n.yaml" > "$dir/$n.out" 2>&1 &
  pids+=($!)
done
for port in $up $off $on; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
done
curl -si "http://127.0.0.1:$on/" | grep -i ratelimit || true

: > "$dir/results"
for r in $(seq "$rounds"); do
  for n in off on; do
    port=$([ $n = off ] && echo $off || echo $on)
    out=$(wrk -t1 -c"$conns" -d"${duration}s" "http://127.0.0.1:$port/")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    echo "$n $rps" >> "$dir/results"
    printf 'round %s limiter-%-3s %10s req/s\n' "$r" "$n" "$rps"
  done
done
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_off=$(awk '$1=="off"{print $2}' "$dir/results" | median)
m_on=$(awk '$1=="on"{print $2}' "$dir/results" | median)
awk -v a="$m_on" -v b="$m_off" 'BEGIN{printf "median limiter-on %.0f  limiter-off %.0f  ratio on/off %.3f\n", a, b, a/b}'
